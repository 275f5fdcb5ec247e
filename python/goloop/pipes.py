"""Pipe transports: asyncio's own, with the one change that loses no data.

``connect_read_pipe``/``connect_write_pipe`` and the subprocess pipes use
asyncio's ``unix_events`` transports on goloop's poller. One case is
changed, on purpose (a difference from stock the README lists): stock's
write-pipe transport drops the tail of the data when a protocol calls
``write()`` and then ``close()`` from ``resume_writing()``. Its
``_write_ready`` flushes the buffer, resumes the protocol (which may buffer
more and close) and then, seeing the transport closing, closes the pipe
with the new data still buffered: 983,040 of 1,048,576 bytes arrive on
3.11.7, 3.12.1 and 3.13.0 with 64 KiB writes to a 64 KiB pipe. uvloop
delivers every byte; so does goloop, which closes only once the buffer is
empty (``write()`` has already re-armed the writer that empties it).
"""

import os
from asyncio import unix_events

__all__ = ("WritePipeTransport",)


class WritePipeTransport(unix_events._UnixWritePipeTransport):
    """asyncio's write-pipe transport, closing only when nothing is buffered."""

    def _write_ready(self):
        # asyncio's _write_ready (the same on 3.11.2 through 3.13), but for
        # the `not self._buffer` below.
        assert self._buffer, "Data should not be empty"

        try:
            n = os.write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            # Remove writer here, _fatal_error() doesn't it
            # because _buffer is empty.
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
        else:
            if n == len(self._buffer):
                self._buffer.clear()
                self._loop._remove_writer(self._fileno)
                self._maybe_resume_protocol()  # May append to buffer.
                # Stock closes here even when resume_writing() buffered more
                # and then closed; that data would be lost. write() re-armed
                # the writer, whose next call closes once it is all written.
                if self._closing and not self._buffer:
                    self._loop._remove_reader(self._fileno)
                    self._call_connection_lost(None)
                return
            elif n > 0:
                del self._buffer[:n]
