"""goloop's pipe transports (``connect_read_pipe``, ``connect_write_pipe``,
a child's stdin, stdout and stderr).

The per-event half (the read and ``data_received``, ``pause_reading`` /
``resume_reading``, ``write()``, the write buffer and its flush, the
flow-control thresholds) is C: ``_goloop.ReadPipeTransportCore`` and
``WritePipeTransportCore`` in pybridge/pipe.c, registered in the loop's fd
tables as native watches instead of Handles. The constructors are
asyncio's (``unix_events._UnixReadPipeTransport`` and
``_UnixWritePipeTransport``, identical from 3.11.3 to 3.13) line for line,
and the rarer paths are asyncio's methods borrowed as plain functions, or
asyncio's code with its Python buffer replaced by the C one, so messages
and warnings are stock's.

One case is changed, on purpose (a difference from stock the README
lists): stock's write-pipe transport drops the tail of the data when a
protocol calls ``write()`` and then ``close()`` from ``resume_writing()``.
Its ``_write_ready`` flushes the buffer, resumes the protocol (which may
buffer more and close) and then, seeing the transport closing, closes the
pipe with the new data still buffered: 983,040 of 1,048,576 bytes arrive
on 3.11.7, 3.12.1 and 3.13.0 with 64 KiB writes to a 64 KiB pipe. uvloop
delivers every byte; so does goloop, which closes only once the buffer is
empty. Debug mode uses these classes too (the C paths log what asyncio's
log there), so that no mode writes to an fd its pipe no longer holds.
"""

import os
import stat
import sys
from asyncio import futures, transports, unix_events
from asyncio.log import logger

from . import _goloop

__all__ = ("ReadPipeTransport", "WritePipeTransport")

_StockRead = unix_events._UnixReadPipeTransport
_StockWrite = unix_events._UnixWritePipeTransport

# Debian's 3.11.2 starts reading through the loop's _add_reader, whatever
# pause_reading() did in connection_made(); 3.11.3+ goes through the
# transport's _add_reader, which checks is_reading() first.
_CHECKS_READING = "is_reading" in vars(_StockRead)


class ReadPipeTransport(_goloop.ReadPipeTransportCore):
    """A read transport over a non-blocking pipe, socket or character device."""

    __slots__ = ("__weakref__",)

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        transports.ReadTransport.__init__(self, extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._pipe = pipe
        self._fileno = pipe.fileno()
        self._protocol = protocol
        self._closing = False
        self._paused = False

        mode = os.fstat(self._fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._pipe = None
            self._fileno = None
            self._protocol = None
            raise ValueError("Pipe transport is for pipes/sockets only.")

        os.set_blocking(self._fileno, False)

        self._loop.call_soon(self._protocol.connection_made, self)
        # only start reading when connection_made() has been called
        if _CHECKS_READING:
            self._loop.call_soon(self._add_reader, self._fileno, self._read_ready)
        else:
            self._loop.call_soon(self._loop._add_reader, self._fileno, self._read_ready)
        if waiter is not None:
            # only wake up the waiter when connection_made() has been called
            self._loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    # _read_ready, _add_reader, pause_reading and resume_reading are C.

    if _CHECKS_READING:
        is_reading = _StockRead.is_reading
    __repr__ = _StockRead.__repr__
    set_protocol = _StockRead.set_protocol
    get_protocol = _StockRead.get_protocol
    is_closing = _StockRead.is_closing
    close = _StockRead.close
    __del__ = _StockRead.__del__
    _fatal_error = _StockRead._fatal_error
    _close = _StockRead._close
    _call_connection_lost = _StockRead._call_connection_lost


class WritePipeTransport(_goloop.WritePipeTransportCore):
    """A write transport over a non-blocking pipe, socket or character device."""

    __slots__ = ("__weakref__",)

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        transports._FlowControlMixin.__init__(self, extra, loop)
        self._extra["pipe"] = pipe
        self._pipe = pipe
        self._fileno = pipe.fileno()
        self._protocol = protocol
        self._conn_lost = 0
        self._closing = False  # Set when close() or write_eof() called.

        mode = os.fstat(self._fileno).st_mode
        is_char = stat.S_ISCHR(mode)
        is_fifo = stat.S_ISFIFO(mode)
        is_socket = stat.S_ISSOCK(mode)
        if not (is_char or is_fifo or is_socket):
            self._pipe = None
            self._fileno = None
            self._protocol = None
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")

        os.set_blocking(self._fileno, False)
        self._loop.call_soon(self._protocol.connection_made, self)

        # On AIX, the reader trick (to be notified when the read end of the
        # socket is closed) only works for sockets. On other platforms it
        # works for pipes and sockets. (Exception: OS X 10.4?  Issue #19294.)
        if is_socket or (is_fifo and not sys.platform.startswith("aix")):
            # only start reading when connection_made() has been called
            self._loop.call_soon(self._loop._add_reader, self._fileno, self._read_ready)

        if waiter is not None:
            # only wake up the waiter when connection_made() has been called
            self._loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    # write, _write_ready and get_write_buffer_size are C.

    __repr__ = _StockWrite.__repr__
    can_write_eof = _StockWrite.can_write_eof
    set_protocol = _StockWrite.set_protocol
    get_protocol = _StockWrite.get_protocol
    is_closing = _StockWrite.is_closing
    close = _StockWrite.close
    __del__ = _StockWrite.__del__
    abort = _StockWrite.abort
    _fatal_error = _StockWrite._fatal_error
    _call_connection_lost = _StockWrite._call_connection_lost

    # asyncio's code with its Python buffer replaced by the C one.

    def _read_ready(self):
        # Pipe was closed by peer.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        if self.get_write_buffer_size():
            self._close(BrokenPipeError())
        else:
            self._close()

    def write_eof(self):
        if self._closing:
            return
        assert self._pipe
        self._closing = True
        if not self.get_write_buffer_size():
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)

    def _close(self, exc=None):
        self._closing = True
        if self.get_write_buffer_size():
            self._loop._remove_writer(self._fileno)
        self._clear_write_buffer()
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)
