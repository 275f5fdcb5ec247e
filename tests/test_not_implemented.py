"""Networking methods: either implemented like stock, or a clear NotImplementedError.

goloop may ship with some networking methods not implemented yet; those
must raise ``NotImplementedError("goloop: <name> is not implemented yet")``
(and nothing else). Every method runs a small real scenario; when the method
is implemented, the scenario's result must equal the stock loop's.
"""

import asyncio
import inspect
import os
import socket
import ssl
import sys
import tempfile

import pytest
from loop_support import norm_repr, stock_factory, with_loop

NETWORK_METHODS = (
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_recvfrom_into",
    "sock_sendall",
    "sock_sendto",
    "sock_connect",
    "sock_accept",
    "sock_sendfile",
    "create_connection",
    "create_server",
    "create_unix_connection",
    "create_unix_server",
    "create_datagram_endpoint",
    "connect_accepted_socket",
    "connect_read_pipe",
    "connect_write_pipe",
    "subprocess_exec",
    "subprocess_shell",
    "sendfile",
    "start_tls",
)


def _nonblocking_pair(family=socket.AF_UNIX, kind=socket.SOCK_STREAM):
    a, b = socket.socketpair(family, kind)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    return a, b


async def _echo_once(reader, writer):
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()


class _Collect(asyncio.Protocol):
    def __init__(self):
        self.data = b""
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.done.set_result(self.data)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(self.data)


# --------------------------------------------------------- scenarios (one per method)


async def s_sock_recv(loop):
    a, b = _nonblocking_pair()
    with a, b:
        loop.call_later(0.01, b.send, b"hello")
        return await loop.sock_recv(a, 100)


async def s_sock_recv_into(loop):
    a, b = _nonblocking_pair()
    with a, b:
        buf = bytearray(10)
        loop.call_later(0.01, b.send, b"abc")
        n = await loop.sock_recv_into(a, buf)
        return bytes(buf[:n])


async def s_sock_recvfrom(loop):
    a, b = _udp_pair()
    with a, b:
        b.sendto(b"dgram", a.getsockname())
        data, addr = await loop.sock_recvfrom(a, 100)
        return data, addr == b.getsockname()


async def s_sock_recvfrom_into(loop):
    a, b = _udp_pair()
    with a, b:
        buf = bytearray(16)
        b.sendto(b"into", a.getsockname())
        n, addr = await loop.sock_recvfrom_into(a, buf)
        return bytes(buf[:n]), addr == b.getsockname()


async def s_sock_sendall(loop):
    a, b = _nonblocking_pair()
    with a, b:
        payload = b"x" * 300_000  # more than the socket buffer
        reader = loop.create_task(_drain(loop, b, len(payload)))
        await loop.sock_sendall(a, payload)
        return len(await reader)


async def _drain(loop, sock, n):
    data = b""
    while len(data) < n:
        chunk = await _recv_some(loop, sock)
        data += chunk
    return data


async def _recv_some(loop, sock):
    fut = loop.create_future()

    def on_readable():
        loop.remove_reader(sock)
        try:
            fut.set_result(sock.recv(65536))
        except BlockingIOError:
            fut.set_result(b"")

    loop.add_reader(sock, on_readable)
    return await fut


async def s_sock_sendto(loop):
    a, b = _udp_pair()
    with a, b:
        await loop.sock_sendto(b, b"sent", a.getsockname())
        return await _recv_some(loop, a)


async def s_sock_connect(loop):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.socket()
        client.setblocking(False)
        with client:
            await loop.sock_connect(client, srv.getsockname())
            return client.getpeername() == srv.getsockname()


async def s_sock_accept(loop):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        with client:
            loop.call_soon(lambda: client.connect_ex(srv.getsockname()))
            conn, addr = await loop.sock_accept(srv)
            with conn:
                return addr == client.getsockname()


async def s_sock_sendfile(loop):
    a, b = _nonblocking_pair()
    with a, b, tempfile.TemporaryFile() as f:
        f.write(b"file contents")
        f.seek(0)
        reader = loop.create_task(_drain(loop, b, 13))
        sent = await loop.sock_sendfile(a, f)
        return sent, await reader


async def s_create_connection(loop):
    server = await asyncio.start_server(_echo_once, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(_Collect, "127.0.0.1", port)
        description = norm_repr(repr(transport))
        transport.write(b"ping")
        data = await proto.done
        transport.close()
        return data, description


async def s_create_server(loop):
    server = await loop.create_server(lambda: _EchoProto(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"echo me")
        data = await reader.read(100)
        writer.close()
        await writer.wait_closed()
        return data


class _EchoProto(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)
        self.transport.close()


async def s_create_unix_server(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")
        server = await loop.create_unix_server(lambda: _EchoProto(), path)
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"unix")
            data = await reader.read(100)
            writer.close()
            await writer.wait_closed()
            return data


async def s_create_unix_connection(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")
        server = await asyncio.start_unix_server(_echo_once, path)
        async with server:
            transport, proto = await loop.create_unix_connection(_Collect, path)
            transport.write(b"unix conn")
            data = await proto.done
            transport.close()
            return data


class _DatagramCollect(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        if not self.received.done():
            self.received.set_result(data)


async def s_create_datagram_endpoint(loop):
    transport, proto = await loop.create_datagram_endpoint(
        _DatagramCollect, local_addr=("127.0.0.1", 0)
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"udp", transport.get_extra_info("sockname"))
            return await proto.received
    finally:
        transport.close()


async def s_connect_accepted_socket(loop):
    a, b = _nonblocking_pair()
    with b:
        transport, proto = await loop.connect_accepted_socket(_Collect, a)
        b.send(b"accepted")
        b.shutdown(socket.SHUT_WR)
        data = await proto.done
        transport.close()
        return data


async def s_connect_read_pipe(loop):
    r, w = os.pipe()
    with open(r, "rb", buffering=0) as rf:
        transport, proto = await loop.connect_read_pipe(_Collect, rf)
        os.write(w, b"piped")
        os.close(w)
        data = await proto.done
        transport.close()
        return data


async def s_connect_write_pipe(loop):
    r, w = os.pipe()
    with open(w, "wb", buffering=0) as wf:
        transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, wf)
        transport.write(b"to pipe")
        await asyncio.sleep(0.01)
        transport.close()
        await asyncio.sleep(0)
    with open(r, "rb") as rf:
        return rf.read()


async def s_subprocess_exec(loop):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print('from child')", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.strip(), proc.returncode


async def s_subprocess_shell(loop):
    proc = await asyncio.create_subprocess_shell(
        "echo shell; exit 3", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.strip(), proc.returncode


async def s_sendfile(loop):
    received = []

    async def handler(reader, writer):
        received.append(await reader.read())
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(_Collect, "127.0.0.1", port)
        with tempfile.TemporaryFile() as f:
            f.write(b"sendfile payload")
            f.seek(0)
            sent = await loop.sendfile(transport, f)
        transport.write_eof()
        while not received:
            await asyncio.sleep(0.005)
        transport.close()
        return sent, received[0]


def _keycert():
    try:
        import test
    except ImportError:
        return None
    base = os.path.dirname(test.__file__)
    for path in (os.path.join(base, "certdata", "keycert.pem"), os.path.join(base, "keycert.pem")):
        if os.path.exists(path):
            return path
    return None


async def s_start_tls(loop):
    certfile = _keycert()
    if certfile is None:
        pytest.skip("no test certificate (test package not installed)")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certfile)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE

    async def handler(reader, writer):
        await writer.start_tls(server_ctx)
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await writer.start_tls(client_ctx)
        tls = writer.get_extra_info("sslcontext") is client_ctx
        writer.write(b"over tls")
        data = await reader.read(100)
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
        return tls, data


SCENARIOS = {name: globals()[f"s_{name}"] for name in NETWORK_METHODS}


def _run_scenario(lp, name):
    return lp.run_until_complete(asyncio.wait_for(SCENARIOS[name](lp), 20))


@pytest.mark.parametrize("name", NETWORK_METHODS)
def test_network_method_implemented_or_not_implemented(loop, name):
    assert inspect.iscoroutinefunction(getattr(loop, name))
    try:
        got = _run_scenario(loop, name)
    except NotImplementedError as exc:
        assert str(exc) == f"goloop: {name} is not implemented yet"
        return
    expected = with_loop(stock_factory, lambda lp: _run_scenario(lp, name))
    assert got == expected
