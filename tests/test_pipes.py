"""Pipe transports: connect_write_pipe / connect_read_pipe and subprocess pipes.

goloop uses asyncio's pipe transports with one deliberate difference (README,
"Known differences"): a protocol that calls ``write()`` and then ``close()``
from ``resume_writing()`` gets every byte delivered, as with uvloop, where
stock's write-pipe transport closes the pipe with the tail still buffered.
"""

import asyncio
import os
import sys

import pytest
from loop_support import HANG_TIMEOUT

TOTAL = 1 << 20  # 16 writes of 64 KiB into a 64 KiB pipe: flow control engages
CHUNK = 1 << 16


class ClosingFromResume(asyncio.Protocol):
    """Writes TOTAL bytes in CHUNKs, pausing when told; the last write and
    the close() come from resume_writing()."""

    def __init__(self, loop):
        self.sent = 0
        self.paused = False
        self.lost = loop.create_future()
        self.closed_from_resume = False

    def connection_made(self, transport):
        self.transport = transport
        self.pump()

    def pump(self, from_resume=False):
        while self.sent < TOTAL and not self.paused:
            self.transport.write(b"x" * CHUNK)
            self.sent += CHUNK
        if self.sent >= TOTAL and not self.transport.is_closing():
            self.closed_from_resume = from_resume
            self.transport.close()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.pump(from_resume=True)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def _drain_fd(loop, fd):
    """Read fd until EOF through the loop; the byte count."""
    os.set_blocking(fd, False)
    got = 0
    while True:
        ready = loop.create_future()
        loop.add_reader(fd, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            continue
        if not data:
            return got
        got += len(data)


def test_write_then_close_from_resume_writing_loses_nothing(loop, loop_name):
    async def main():
        rfd, wfd = os.pipe()
        try:
            transport, protocol = await loop.connect_write_pipe(
                lambda: ClosingFromResume(loop), os.fdopen(wfd, "wb", buffering=0)
            )
            got, exc = await asyncio.wait_for(
                asyncio.gather(_drain_fd(loop, rfd), protocol.lost), HANG_TIMEOUT
            )
        finally:
            os.close(rfd)
        return got, exc, protocol.closed_from_resume

    got, exc, closed_from_resume = loop.run_until_complete(main())
    assert exc is None
    assert closed_from_resume  # the scenario: close() came from resume_writing()
    if loop_name == "asyncio":
        # stock's loss, the reason goloop differs (65,536 bytes short here)
        assert got < TOTAL
    else:
        assert got == TOTAL


def test_subprocess_stdin_write_then_close_from_resume_writing(loop, loop_name):
    """The same through a child's stdin (subprocess pipes pass pause/resume
    on to the SubprocessProtocol); the child counts what it read."""
    counter = "import sys; print(len(sys.stdin.buffer.read()))"

    class Feeder(asyncio.SubprocessProtocol):
        def __init__(self):
            self.writer = ClosingFromResume(loop)
            self.exited = loop.create_future()

        def connection_made(self, transport):
            self.writer.connection_made(transport.get_pipe_transport(0))

        def pause_writing(self):
            self.writer.pause_writing()

        def resume_writing(self):
            self.writer.resume_writing()

        def process_exited(self):
            self.exited.set_result(None)

    async def main():
        out_r, out_w = os.pipe()
        try:
            transport, protocol = await loop.subprocess_exec(
                Feeder, sys.executable, "-c", counter, stdin=asyncio.subprocess.PIPE, stdout=out_w
            )
        finally:
            os.close(out_w)
        with os.fdopen(out_r, "rb") as out:
            await asyncio.wait_for(protocol.exited, HANG_TIMEOUT)
            transport.close()
            return int(out.read()), protocol.writer.closed_from_resume

    asyncio.set_event_loop(loop)  # 3.11's child watcher wants the current loop
    try:
        got, closed_from_resume = loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
    assert closed_from_resume
    if loop_name == "asyncio":
        # Stock loses the tail only when the write that empties its buffer
        # also makes room for resume_writing(): that depends on how fast the
        # child drains the pipe, so a clean run is possible there (CI saw one).
        assert got <= TOTAL
    else:
        assert got == TOTAL


@pytest.mark.parametrize("end", ["close", "write_eof"])
def test_close_with_buffered_data_flushes_then_loses_connection(loop, end):
    """The ordinary case is stock's: close()/write_eof() with data buffered
    writes it all, then connection_lost(None) once."""

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.lost = []

        def connection_lost(self, exc):
            self.lost.append(exc)

    async def main():
        rfd, wfd = os.pipe()
        try:
            transport, protocol = await loop.connect_write_pipe(
                Writer, os.fdopen(wfd, "wb", buffering=0)
            )
            transport.write(b"y" * (4 * CHUNK))
            assert transport.get_write_buffer_size() > 0
            getattr(transport, end)()
            assert transport.is_closing()
            got = await asyncio.wait_for(_drain_fd(loop, rfd), HANG_TIMEOUT)
            await asyncio.sleep(0)
        finally:
            os.close(rfd)
        return got, protocol.lost

    got, lost = loop.run_until_complete(main())
    assert got == 4 * CHUNK
    assert lost == [None]


def test_write_pipe_reader_closes_early(loop):
    """The reader going away mid-write: connection_lost(BrokenPipeError), as stock."""

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.lost = loop.create_future()

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        rfd, wfd = os.pipe()
        transport, protocol = await loop.connect_write_pipe(
            Writer, os.fdopen(wfd, "wb", buffering=0)
        )
        transport.write(b"z" * (4 * CHUNK))
        os.close(rfd)
        return await asyncio.wait_for(protocol.lost, HANG_TIMEOUT)

    exc = loop.run_until_complete(main())
    assert isinstance(exc, BrokenPipeError)
