"""Bulk transfer: 64 MiB each way through an echo server, byte-exact, with flow control.

The client writes 64 MiB to an echo server and hashes what comes back. Both
ends use small write-buffer limits and honour pause_writing/resume_writing;
the server pauses reading while its write buffer is over the high-water mark,
and the client does not read at first, so both sides' flow control is
guaranteed to engage (checked), not just likely.
"""

import asyncio
import hashlib
import os

import pytest
from loop_support import bind_address, run_bounded

SIZE = 64 * 1024 * 1024
CHUNK = 1024 * 1024
HIGH, LOW = 64 * 1024, 16 * 1024
TIMEOUT = 60.0  # hang detector only


@pytest.fixture(scope="module")
def payload():
    data = os.urandom(SIZE)
    return data, hashlib.sha256(data).hexdigest()


class FlowEcho(asyncio.Protocol):
    """Echoes everything; stops reading while its own write buffer is full."""

    def __init__(self, on_blocked):
        self.on_blocked = on_blocked
        self.pauses = 0
        self.received = 0
        self.eof = False

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH, low=LOW)

    def data_received(self, data):
        self.received += len(data)
        self.transport.write(data)

    def pause_writing(self):
        self.pauses += 1
        self.transport.pause_reading()
        self.on_blocked()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        self.eof = True
        self.on_blocked()
        # returning None closes the transport once the echo is flushed


class HashingClient(asyncio.Protocol):
    """Sends the payload with flow control and hashes what comes back.

    Reading starts paused and is resumed once the server has paused (its
    write buffer went over the high-water mark) and this side has either
    paused writing too or sent everything.
    """

    def __init__(self, payload):
        loop = asyncio.get_running_loop()
        self.payload = payload
        self.hash = hashlib.sha256()
        self.received = 0
        self.pauses = 0
        self.server_paused = False
        self.sent_all = False
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.lost = loop.create_future()
        self.events = []

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH, low=LOW)
        # Paused on the next loop step, not here: the stock transport of
        # Debian 12's 3.11.2 starts reading after connection_made even if
        # the protocol paused it there (its _SelectorTransport._add_reader
        # does not check is_reading(); 3.11.7's does). Nothing can arrive
        # before: the echo server has nothing to send until send_all().
        asyncio.get_running_loop().call_soon(transport.pause_reading)

    async def send_all(self):
        view = memoryview(self.payload)
        for off in range(0, len(view), CHUNK):
            await self.can_write.wait()
            self.transport.write(view[off : off + CHUNK])
        self.sent_all = True
        self.transport.write_eof()
        self._maybe_resume_reading()

    def server_paused_writing(self):
        self.server_paused = True
        self._maybe_resume_reading()

    def _maybe_resume_reading(self):
        if self.server_paused and (self.pauses or self.sent_all):
            self.transport.resume_reading()

    def data_received(self, data):
        self.hash.update(data)
        self.received += len(data)

    def pause_writing(self):
        self.pauses += 1
        self.can_write.clear()
        self._maybe_resume_reading()

    def resume_writing(self):
        self.can_write.set()

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(None)


@pytest.mark.parametrize("kind", ["tcp4", "tcp6", "unix"])
def test_echo_64mib_each_way(loop, kind, tmp_path, payload):
    data, digest = payload

    async def main():
        client_ref = []

        def on_server_pause():
            if client_ref:
                loop.call_soon(client_ref[0].server_paused_writing)

        servers = []

        def factory():
            proto = FlowEcho(on_server_pause)
            servers.append(proto)
            return proto

        family, addr = bind_address(kind, tmp_path)
        if kind == "unix":
            server = await loop.create_unix_server(factory, addr)
            tr, client = await loop.create_unix_connection(lambda: HashingClient(data), addr)
        else:
            server = await loop.create_server(factory, addr[0], 0)
            port = server.sockets[0].getsockname()[1]
            tr, client = await loop.create_connection(lambda: HashingClient(data), addr[0], port)
        client_ref.append(client)
        try:
            await client.send_all()
            await client.lost
            (sproto,) = servers
            return {
                "sent": SIZE,
                "server received": sproto.received,
                "server saw eof": sproto.eof,
                "client received": client.received,
                "digest": client.hash.hexdigest(),
                "server paused": sproto.pauses > 0,
                "client paused": client.pauses > 0,
                "client events": client.events,
            }
        finally:
            tr.close()
            server.close()
            await server.wait_closed()

    assert run_bounded(loop, main(), TIMEOUT) == {
        "sent": SIZE,
        "server received": SIZE,
        "server saw eof": True,
        "client received": SIZE,
        "digest": digest,
        "server paused": True,
        "client paused": True,
        "client events": ["eof", ("lost", None)],
    }


@pytest.mark.parametrize("kind", ["tcp4", "unix"])
def test_streams_echo_64mib_each_way(loop, kind, tmp_path, payload):
    """The same through asyncio streams: drain() on both ends, small limits."""
    data, digest = payload

    async def handle(reader, writer):
        writer.transport.set_write_buffer_limits(high=HIGH, low=LOW)
        while True:
            chunk = await reader.read(256 * 1024)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        family, addr = bind_address(kind, tmp_path)
        if kind == "unix":
            server = await asyncio.start_unix_server(handle, addr, limit=HIGH)
            reader, writer = await asyncio.open_unix_connection(addr, limit=HIGH)
        else:
            server = await asyncio.start_server(handle, addr[0], 0, limit=HIGH)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(addr[0], port, limit=HIGH)
        writer.transport.set_write_buffer_limits(high=HIGH, low=LOW)

        async def send():
            view = memoryview(data)
            for off in range(0, len(view), CHUNK):
                writer.write(view[off : off + CHUNK])
                await writer.drain()
            writer.write_eof()

        async def receive():
            h = hashlib.sha256()
            total = 0
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    return total, h.hexdigest()
                h.update(chunk)
                total += len(chunk)

        try:
            _, result = await asyncio.gather(send(), receive())
            return result
        finally:
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    assert run_bounded(loop, main(), TIMEOUT) == (SIZE, digest)


@pytest.mark.parametrize("kind", ["tcp4", "unix"])
def test_many_concurrent_connections(loop, kind, tmp_path):
    """300 clients at once (more fds ready per poll than one batch), each echoing 32 KiB."""
    n_clients = 300
    size = 32 * 1024

    async def handle(reader, writer):
        data = await reader.readexactly(size)
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(addr, i):
        if kind == "unix":
            reader, writer = await asyncio.open_unix_connection(addr)
        else:
            reader, writer = await asyncio.open_connection(*addr)
        data = (b"%05d" % i) * (size // 5) + b"x" * (size % 5)
        writer.write(data)
        echoed = await reader.read()
        writer.close()
        await writer.wait_closed()
        return echoed == data

    async def main():
        family, addr = bind_address(kind, tmp_path)
        if kind == "unix":
            server = await asyncio.start_unix_server(handle, addr, backlog=n_clients)
            target = addr
        else:
            server = await asyncio.start_server(handle, addr[0], 0, backlog=n_clients)
            target = server.sockets[0].getsockname()[:2]
        try:
            return await asyncio.gather(*(client(target, i) for i in range(n_clients)))
        finally:
            server.close()
            await server.wait_closed()

    assert run_bounded(loop, main(), TIMEOUT) == [True] * n_clients
