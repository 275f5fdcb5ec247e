"""Stream connections, servers and transports.

create_connection / create_server / create_unix_* / connect_accepted_socket,
loop.sendfile, the Server object, asyncio streams, and the stream transport
API (write, flow control, extra info, BufferedProtocol). Every test runs on
the stock loop and on goloop against real sockets on 127.0.0.1, ::1 and Unix
paths; where the expected result is not obvious it is computed by running the
same scenario on the stock loop.
"""

import asyncio
import contextvars
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
from loop_support import (
    ADDR_KINDS,
    FACTORIES,
    Recorder,
    bind_address,
    ipv6_available,
    norm_repr,
    outcome,
    run_bounded,
    stock_factory,
    unix_path,
    with_loop,
)

PY313 = sys.version_info >= (3, 13)


@pytest.fixture(params=ADDR_KINDS)
def kind(request):
    return request.param


def need_ipv6():
    if not ipv6_available():
        pytest.skip("IPv6 unavailable on loopback")


# ---------------------------------------------------------------- protocols


class KeepOpen(Recorder):
    keep_open_on_eof = True


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(loop, kind, tmp_path, factory, name="s.sock", **kwargs):
    """Start a server of the given kind; returns (server, address to connect to)."""
    family, addr = bind_address(kind, tmp_path, name)
    if family == socket.AF_UNIX:
        server = await loop.create_unix_server(factory, addr, **kwargs)
    else:
        server = await loop.create_server(factory, addr[0], 0, **kwargs)
    return server, server.sockets[0].getsockname()


async def connect(loop, kind, addr, factory, **kwargs):
    if kind == "unix":
        return await loop.create_unix_connection(factory, addr, **kwargs)
    return await loop.create_connection(factory, addr[0], addr[1], **kwargs)


class Accepting:
    """Protocol factory remembering the protocols it made."""

    def __init__(self, cls=Recorder):
        self.cls = cls
        self.protocols = []
        self._taken = 0
        self._waiter = None

    def __call__(self):
        proto = self.cls()
        self.protocols.append(proto)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return proto

    async def next(self):
        """The next protocol made, once connection_made has run."""
        while len(self.protocols) <= self._taken:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        proto = self.protocols[self._taken]
        self._taken += 1
        await proto.made
        return proto


async def close_server(server):
    server.close()
    await server.wait_closed()


# ---------------------------------------------------------------- create_connection


def test_create_connection_echo_and_extra_info(loop, kind, tmp_path):
    async def main():
        server, addr = await serve(loop, kind, tmp_path, Echo)
        try:
            tr, proto = await connect(loop, kind, addr, Recorder)
            assert proto.made.done() and tr is proto.transport
            tr.write(b"ping")
            assert await proto.received(4) == b"ping"

            sock = tr.get_extra_info("socket")
            assert sock.fileno() >= 0
            assert sock.family == server.sockets[0].family
            assert sock.type == socket.SOCK_STREAM
            assert tr.get_extra_info("peername") == sock.getpeername()
            assert tr.get_extra_info("sockname") == sock.getsockname()
            if kind == "unix":
                assert tr.get_extra_info("peername") == addr
            else:
                assert tr.get_extra_info("peername")[:2] == addr[:2]
            assert tr.get_extra_info("no-such-key") is None
            assert tr.get_extra_info("no-such-key", "dflt") == "dflt"
            assert tr.get_protocol() is proto
            tr.close()
            assert await proto.lost is None
            assert proto.events == ["made", ("lost", None)]
        finally:
            await close_server(server)

    run_bounded(loop, main())


def test_create_connection_sock(loop, kind, tmp_path):
    async def main():
        server, addr = await serve(loop, kind, tmp_path, Echo)
        try:
            sock = socket.socket(server.sockets[0].family, socket.SOCK_STREAM)
            sock.connect(addr)  # a blocking connected socket; the loop makes it non-blocking
            if kind == "unix":
                tr, proto = await loop.create_unix_connection(Recorder, sock=sock)
            else:
                tr, proto = await loop.create_connection(Recorder, sock=sock)
            assert sock.getblocking() is False
            assert tr.get_extra_info("socket").fileno() == sock.fileno()
            tr.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
            assert await proto.received(3) == b"abc"
            tr.close()
            await proto.lost
            assert sock.fileno() == -1  # the transport closed it
        finally:
            await close_server(server)

    run_bounded(loop, main())


def test_create_connection_argument_errors_like_stock(loop):
    def scenario(lp):
        async def main():
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket()
            with udp, tcp:
                calls = [
                    lambda: lp.create_connection(asyncio.Protocol),
                    lambda: lp.create_connection(asyncio.Protocol, "127.0.0.1", 1, sock=tcp),
                    lambda: lp.create_connection(asyncio.Protocol, sock=udp),
                    lambda: lp.create_connection(
                        asyncio.Protocol, "127.0.0.1", 1, server_hostname="x"
                    ),
                    lambda: lp.create_connection(
                        asyncio.Protocol, "127.0.0.1", 1, ssl_handshake_timeout=1
                    ),
                    lambda: lp.create_unix_connection(asyncio.Protocol),
                    lambda: lp.create_unix_connection(asyncio.Protocol, "/x", sock=tcp),
                    lambda: lp.create_unix_connection(asyncio.Protocol, sock=udp),
                ]
                res = []
                for c in calls:
                    try:
                        await c()
                        res.append("ok")
                    except Exception as exc:
                        res.append((type(exc), re.sub(r"fd=\d+", "fd=N", str(exc))))
                return res

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is ValueError
    assert scenario(loop) == expected


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_create_connection_local_addr(loop, kind, tmp_path):
    async def main():
        factory = Accepting()
        server, addr = await serve(loop, kind, tmp_path, factory)
        try:
            tr, _ = await loop.create_connection(
                Recorder, addr[0], addr[1], local_addr=(addr[0], 0)
            )
            sproto = await factory.next()
            assert tr.get_extra_info("sockname")[0] == addr[0]
            assert tr.get_extra_info("sockname") == sproto.transport.get_extra_info("peername")
            tr.close()
        finally:
            await close_server(server)

    run_bounded(loop, main())


def test_create_connection_local_addr_errors_like_stock(loop, tmp_path):
    need_ipv6()

    def scenario(lp):
        async def main():
            server, addr = await serve(lp, "tcp4", tmp_path, Echo)
            try:
                out = []
                for local in (("::1", 0), ("127.0.0.1", -5)):
                    try:
                        await lp.create_connection(
                            asyncio.Protocol, "127.0.0.1", addr[1], local_addr=local
                        )
                        out.append("ok")
                    except Exception as exc:
                        out.append((type(exc), str(exc).replace(str(addr[1]), "P")))
                return out
            finally:
                await close_server(server)

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is OSError
    assert scenario(loop) == expected


def _fake_getaddrinfo(infos):
    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        assert host == "fake.invalid"
        return list(infos)

    return getaddrinfo


def test_happy_eyeballs_and_interleave(loop, monkeypatch):
    """Address order: interleave reorders by family; happy eyeballs interleaves by default."""
    need_ipv6()

    async def main():
        srv4 = await loop.create_server(Echo, "127.0.0.1", 0)
        srv6 = await loop.create_server(Echo, "::1", 0)
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        try:
            stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            infos = [
                (socket.AF_INET, *stream, refused.getsockname()),
                (socket.AF_INET, *stream, srv4.sockets[0].getsockname()),
                (socket.AF_INET6, *stream, srv6.sockets[0].getsockname()),
            ]
            monkeypatch.setattr(loop, "getaddrinfo", _fake_getaddrinfo(infos))
            results = {}
            cases = {
                "sequential": {},
                "interleave": {"interleave": 1},
                "happy_eyeballs": {"happy_eyeballs_delay": 5.0},
                "happy_eyeballs_no_interleave": {"happy_eyeballs_delay": 5.0, "interleave": 0},
                "happy_eyeballs_zero_delay": {"happy_eyeballs_delay": 0},
            }
            for label, kw in cases.items():
                tr, proto = await loop.create_connection(Recorder, "fake.invalid", 1, **kw)
                results[label] = tr.get_extra_info("peername")[0]
                tr.write(b"x")
                assert await proto.received(1) == b"x"
                tr.close()
                await proto.lost
            return results
        finally:
            refused.close()
            await close_server(srv4)
            await close_server(srv6)

    assert run_bounded(loop, main()) == {
        "sequential": "127.0.0.1",
        "interleave": "::1",
        "happy_eyeballs": "::1",
        "happy_eyeballs_no_interleave": "127.0.0.1",
        "happy_eyeballs_zero_delay": "::1",
    }


def _listen_queue(port):
    """(accept queue length, backlog) of the TCP socket listening on port, from `ss`."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    return int(out[1]), int(out[2])  # State Recv-Q Send-Q ...


def _stalled_listener():
    """A listener whose accept queue is full: new connection attempts stay pending.

    Returns (listener, fillers). Linux drops SYNs to a listener whose accept
    queue is full, so a connect() to it neither succeeds nor fails for seconds.
    """
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(8):
        queued, backlog = _listen_queue(port)
        if queued > backlog:
            return lsock, fillers
        c = socket.socket()
        c.settimeout(5)
        c.connect(lsock.getsockname())  # completes: the queue is not full yet
        fillers.append(c)
    for c in fillers:
        c.close()
    lsock.close()
    pytest.skip("could not fill a listener's accept queue")


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_happy_eyeballs_delay_starts_next_attempt(loop, monkeypatch):
    """The first address stalls; after happy_eyeballs_delay the next one is tried."""

    async def main():
        good = await loop.create_server(Echo, "127.0.0.1", 0)
        stalled, fillers = _stalled_listener()
        try:
            stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            infos = [
                (socket.AF_INET, *stream, stalled.getsockname()),
                (socket.AF_INET, *stream, good.sockets[0].getsockname()),
            ]
            monkeypatch.setattr(loop, "getaddrinfo", _fake_getaddrinfo(infos))
            # without happy eyeballs the first attempt blocks the second
            seq = asyncio.ensure_future(loop.create_connection(Recorder, "fake.invalid", 1))
            done, _ = await asyncio.wait({seq}, timeout=0.2)
            seq.cancel()
            await asyncio.wait({seq})
            assert not done, "the first address did not stall"
            tr, proto = await loop.create_connection(
                Recorder, "fake.invalid", 1, happy_eyeballs_delay=0.05
            )
            peer = tr.get_extra_info("peername")
            tr.write(b"he")
            assert await proto.received(2) == b"he"
            tr.close()
            await proto.lost
            return peer == good.sockets[0].getsockname()
        finally:
            for c in fillers:
                c.close()
            stalled.close()
            await close_server(good)

    assert run_bounded(loop, main()) is True


def test_all_addresses_refused_like_stock(loop, monkeypatch):
    need_ipv6()

    def scenario(lp, patch):
        async def main():
            r4 = socket.socket()
            r4.bind(("127.0.0.1", 0))
            r6 = socket.socket(socket.AF_INET6)
            r6.bind(("::1", 0))
            ports = (str(r4.getsockname()[1]), str(r6.getsockname()[1]))
            stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            infos = [
                (socket.AF_INET, *stream, r4.getsockname()),
                (socket.AF_INET6, *stream, r6.getsockname()),
            ]
            patch(lp, "getaddrinfo", _fake_getaddrinfo(infos))
            variants = [{}, {"happy_eyeballs_delay": 1.0}]
            if sys.version_info >= (3, 12):
                variants.append({"all_errors": True})
            out = []
            try:
                for kw in variants:
                    try:
                        await lp.create_connection(asyncio.Protocol, "fake.invalid", 1, **kw)
                        out.append("ok")
                    except Exception as exc:
                        msg = str(exc)
                        for p in ports:
                            msg = msg.replace(p, "P")
                        subs = [type(e) for e in getattr(exc, "exceptions", ())]
                        out.append((type(exc), msg, subs))
            finally:
                r4.close()
                r6.close()
            return out

        return run_bounded(lp, main())

    with pytest.MonkeyPatch.context() as mp:
        expected = with_loop(stock_factory, lambda lp: scenario(lp, mp.setattr))
    assert expected[0][0] is OSError and "Multiple exceptions" in expected[0][1]
    assert scenario(loop, monkeypatch.setattr) == expected


# ---------------------------------------------------------------- create_server


def test_create_server_multiple_hosts(loop):
    need_ipv6()

    async def main():
        factory = Accepting()
        server = await loop.create_server(factory, ["127.0.0.1", "::1"], 0)
        try:
            families = sorted(s.family for s in server.sockets)
            assert families == sorted([socket.AF_INET, socket.AF_INET6])
            for s in server.sockets:
                addr = s.getsockname()
                tr, proto = await loop.create_connection(Recorder, addr[0], addr[1])
                sproto = await factory.next()
                assert sproto.transport.get_extra_info("sockname")[:2] == addr[:2]
                sproto.transport.write(b"hi")
                assert await proto.received(2) == b"hi"
                tr.close()
            return len(factory.protocols)
        finally:
            await close_server(server)

    assert run_bounded(loop, main()) == 2


def test_create_server_sock(loop, kind, tmp_path):
    family, addr = bind_address(kind, tmp_path)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(addr)

    async def main():
        if kind == "unix":
            server = await loop.create_unix_server(Echo, sock=sock)
        else:
            server = await loop.create_server(Echo, sock=sock)
        try:
            assert [s.fileno() for s in server.sockets] == [sock.fileno()]
            tr, proto = await connect(loop, kind, sock.getsockname(), Recorder)
            tr.write(b"via sock=")
            assert await proto.received(9) == b"via sock="
            tr.close()
        finally:
            await close_server(server)

    run_bounded(loop, main())


def _sockopts(server):
    s = server.sockets[0]
    return (
        bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)),
        bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)),
    )


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_create_server_reuse_options_like_stock(loop, kind, tmp_path):
    def scenario(lp):
        async def main():
            out = []
            for kw in (
                {},
                {"reuse_address": True},
                {"reuse_address": False},
                {"reuse_port": True},
                {"reuse_port": False},
            ):
                server, _ = await serve(lp, kind, tmp_path, Echo, **kw)
                out.append(_sockopts(server))
                await close_server(server)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[1] == (True, False) and expected[3][1] is True
    assert scenario(loop) == expected


@pytest.mark.parametrize("kind", ["tcp4", "tcp6"])
def test_create_server_reuse_port_shares_port_like_stock(loop, kind, tmp_path):
    def scenario(lp):
        async def main():
            first, addr = await serve(lp, kind, tmp_path, Echo, reuse_port=True)
            try:
                second = await lp.create_server(Echo, addr[0], addr[1], reuse_port=True)
                shared = second.sockets[0].getsockname()[1] == addr[1]
                await close_server(second)
                try:
                    await lp.create_server(Echo, addr[0], addr[1])
                    clash = "ok"
                except OSError as exc:
                    clash = (type(exc), exc.errno, str(exc).replace(str(addr[1]), "P"))
                return shared, clash
            finally:
                await close_server(first)

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is True and expected[1][0] is OSError
    assert scenario(loop) == expected


def _listen_backlog(port):
    """The listen backlog of the TCP socket listening on port, from `ss`."""
    return _listen_queue(port)[1]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_create_server_backlog(loop):
    def scenario(lp):
        async def main():
            out = []
            for kw in ({}, {"backlog": 5}, {"backlog": 1}):
                server = await lp.create_server(Echo, "127.0.0.1", 0, **kw)
                out.append(_listen_backlog(server.sockets[0].getsockname()[1]))
                await close_server(server)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[1:] == [5, 1]
    assert scenario(loop) == expected


def test_start_serving_false_then_start_serving(loop, kind, tmp_path):
    async def main():
        factory = Accepting()
        server, addr = await serve(loop, kind, tmp_path, factory, start_serving=False)
        try:
            assert server.is_serving() is False
            assert len(server.sockets) == 1
            # bound but not listening yet: connections are refused, as stock
            with pytest.raises(ConnectionRefusedError):
                await connect(loop, kind, addr, Recorder)
            assert factory.protocols == []
            await server.start_serving()
            assert server.is_serving() is True
            tr, proto = await connect(loop, kind, addr, Recorder)
            sproto = await factory.next()
            tr.write(b"late")
            assert await sproto.received(4) == b"late"
            await server.start_serving()  # idempotent
            assert server.is_serving() is True
            tr.close()
            await sproto.lost
        finally:
            await close_server(server)

    run_bounded(loop, main())


def test_serve_forever_starts_a_non_serving_server(loop, kind, tmp_path):
    async def main():
        server, addr = await serve(loop, kind, tmp_path, Echo, start_serving=False)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        tr, proto = await connect(loop, kind, addr, Recorder)
        tr.write(b"x")
        assert await proto.received(1) == b"x"
        tr.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        await server.wait_closed()

    run_bounded(loop, main())


# ---------------------------------------------------------------- Server object


def test_server_close_and_wait_closed_like_stock(loop, kind, tmp_path):
    """close() stops accepting; existing connections live on; when wait_closed returns."""

    def scenario(lp):
        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            log = [("serving", server.is_serving(), len(server.sockets))]
            tr, proto = await connect(lp, kind, addr, Recorder)
            sproto = await factory.next()
            server.close()
            log.append(("closed", server.is_serving(), len(server.sockets)))
            server.close()  # idempotent
            try:
                t2, _ = await connect(lp, kind, addr, Recorder)
                log.append("new connection accepted")
                t2.close()
            except OSError as exc:
                log.append(("new connection", type(exc)))
            # the existing connection still works
            sproto.transport.write(b"still here")
            log.append(await proto.received(10))
            # does wait_closed wait for the live connection?
            wc = asyncio.ensure_future(server.wait_closed())
            for _ in range(10):
                await asyncio.sleep(0)
            log.append(("wait_closed done with a live connection", wc.done()))
            tr.close()
            await sproto.lost
            await wc
            log.append(("after", server.is_serving(), server.sockets))
            await server.wait_closed()  # again: returns at once
            return log, sproto.events

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][1][:2] == ("closed", False)
    assert scenario(loop) == expected


def test_serve_forever_cancelled_like_stock(loop, kind, tmp_path):
    """Cancelling serve_forever() closes the server (and, 3.12+, waits for clients)."""

    def scenario(lp):
        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            log = []
            task = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0)
            log.append(("serving", server.is_serving()))
            try:
                await server.serve_forever()
            except RuntimeError as exc:
                log.append((RuntimeError, "already being awaited" in str(exc)))
            tr, proto = await connect(lp, kind, addr, Recorder)
            sproto = await factory.next()
            tr.write(b"abc")
            log.append(await sproto.received(3))
            task.cancel()
            for _ in range(5):
                await asyncio.sleep(0.01)
            log.append(("done with a live connection", task.done()))
            log.append(("after cancel", server.is_serving(), server.sockets))
            tr.close()
            await sproto.lost
            await asyncio.wait({task})
            log.append(("cancelled", task.cancelled()))
            try:
                await server.serve_forever()
            except RuntimeError as exc:
                log.append((RuntimeError, str(exc).endswith("is closed")))
            await server.wait_closed()
            return log

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert ("cancelled", True) in expected
    assert scenario(loop) == expected


def test_server_async_with(loop, kind, tmp_path):
    async def main():
        server, addr = await serve(loop, kind, tmp_path, Echo)
        async with server as s:
            assert s is server
            assert server.is_serving()
            assert server.get_loop() is loop
            tr, proto = await connect(loop, kind, addr, Recorder)
            tr.write(b"ctx")
            assert await proto.received(3) == b"ctx"
            tr.close()
            await proto.lost
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        with pytest.raises(OSError):
            await connect(loop, kind, addr, Recorder)

    run_bounded(loop, main())


@pytest.mark.skipif(not PY313, reason="Server.close_clients/abort_clients are 3.13+")
@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_server_close_abort_clients_like_stock(loop, kind, tmp_path, method):
    def scenario(lp):
        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            tr, proto = await connect(lp, kind, addr, Recorder)
            sproto = await factory.next()
            server.close()
            # leave unsent data in the server's buffer: close flushes it, abort drops it
            sproto.transport.pause_reading()
            getattr(server, method)()
            await proto.lost
            await sproto.lost
            await server.wait_closed()
            return proto.events, sproto.events, len(proto.data) > 0

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert ("lost", None) in expected[1]
    assert scenario(loop) == expected


# ---------------------------------------------------------------- Unix specifics


def test_unix_server_abstract_namespace(loop):
    name = f"\0goloop-test-{os.getpid()}-{id(loop)}"

    async def main():
        factory = Accepting()
        server = await loop.create_unix_server(factory, name)
        try:
            assert server.sockets[0].getsockname() == name.encode()
            tr, proto = await loop.create_unix_connection(Recorder, name)
            assert tr.get_extra_info("peername") == name.encode()
            sproto = await factory.next()
            sproto.transport.write(b"abstract")
            assert await proto.received(8) == b"abstract"
            tr.close()
        finally:
            await close_server(server)
        # abstract names vanish with the socket
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(Recorder, name)

    run_bounded(loop, main())


def test_unix_server_socket_file_lifecycle_like_stock(loop, tmp_path):
    """Stale socket files are replaced; on 3.13+ the file is removed on close."""
    path = unix_path(tmp_path)

    def scenario(lp):
        async def main():
            out = []
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(path)
            stale.close()
            out.append(("stale exists", os.path.exists(path)))
            server = await lp.create_unix_server(Echo, path)
            out.append(("serving", server.is_serving()))
            await close_server(server)
            out.append(("file after close", os.path.exists(path)))
            if PY313:
                server = await lp.create_unix_server(Echo, path, cleanup_socket=False)
                await close_server(server)
                out.append(("cleanup_socket=False", os.path.exists(path)))
            if os.path.exists(path):
                os.unlink(path)
            # a regular file in the way is not removed
            with open(path, "w") as f:
                f.write("x")
            try:
                await lp.create_unix_server(Echo, path)
                out.append("ok")
            except OSError as exc:
                out.append((type(exc), exc.errno, str(exc).replace(path, "PATH")))
            out.append(("regular file kept", os.path.isfile(path)))
            os.unlink(path)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert ("file after close", not PY313) in expected
    assert scenario(loop) == expected


def test_unix_connection_errors_like_stock(loop, tmp_path):
    missing = unix_path(tmp_path, "missing.sock")
    stale_path = unix_path(tmp_path, "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(stale_path)
    stale.close()

    def scenario(lp):
        out = []
        for p in (missing, stale_path):
            r = outcome(lambda p=p: run_bounded(lp, lp.create_unix_connection(Recorder, p)))
            out.append((r[0], r[1].replace(str(tmp_path), "TMP")))
        return out

    expected = with_loop(stock_factory, scenario)
    assert [r[0] for r in expected] == [FileNotFoundError, ConnectionRefusedError]
    assert scenario(loop) == expected


# ---------------------------------------------------------------- connect_accepted_socket


def test_connect_accepted_socket(loop, kind, tmp_path):
    family, addr = bind_address(kind, tmp_path)
    lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.bind(addr)
    lsock.listen(1)

    async def main():
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect(lsock.getsockname())
        conn, _ = lsock.accept()
        tr, proto = await loop.connect_accepted_socket(Recorder, conn)
        assert conn.getblocking() is False
        assert proto.events == ["made"]
        client.sendall(b"accepted")
        assert await proto.received(8) == b"accepted"
        tr.write(b"back")
        client.setblocking(False)
        assert await loop.sock_recv(client, 10) == b"back"
        client.close()
        assert await proto.eof is None
        await proto.lost
        return proto.events

    try:
        assert run_bounded(loop, main()) == ["made", "eof", ("lost", None)]
    finally:
        lsock.close()


def test_connect_accepted_socket_errors_like_stock(loop):
    def scenario(lp):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with udp:
            return [
                outcome(lambda: run_bounded(lp, lp.connect_accepted_socket(Recorder, udp))),
                outcome(
                    lambda: run_bounded(
                        lp, lp.connect_accepted_socket(Recorder, udp, ssl_handshake_timeout=1)
                    )
                ),
            ]

    expected = with_loop(stock_factory, scenario)
    expected = [(r[0], re.sub(r"fd=\d+", "fd=N", r[1])) for r in expected]
    assert expected[0][0] is ValueError
    got = [(r[0], re.sub(r"fd=\d+", "fd=N", r[1])) for r in scenario(loop)]
    assert got == expected


# ---------------------------------------------------------------- loop.sendfile


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(4 * 1024 * 1024 + 3)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_loop_sendfile_on_transport(loop, kind, tmp_path, data_file):
    path, data = data_file

    async def main():
        factory = Accepting()
        server, addr = await serve(loop, kind, tmp_path, factory)
        try:
            tr, proto = await connect(loop, kind, addr, Recorder)
            sproto = await factory.next()
            tr.write(b"HEAD")  # data written before sendfile goes first
            with open(path, "rb") as f:
                sent = await loop.sendfile(tr, f)
                pos = f.tell()
            tr.write(b"TAIL")
            with open(path, "rb") as f:
                sent2 = await loop.sendfile(tr, f, offset=10, count=1000)
                pos2 = f.tell()
            total = 4 + len(data) + 4 + 1000
            received = await sproto.received(total)
            tr.close()
            return sent, pos, sent2, pos2, received
        finally:
            await close_server(server)

    sent, pos, sent2, pos2, received = run_bounded(loop, main())
    assert (sent, pos, sent2, pos2) == (len(data), len(data), 1000, 1010)
    assert received == b"HEAD" + data + b"TAIL" + data[10:1010]


def test_loop_sendfile_fallback_and_errors_like_stock(loop, kind, tmp_path):
    payload = os.urandom(200_000)

    def scenario(lp):
        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            out = []
            try:
                tr, _ = await connect(lp, kind, addr, Recorder)
                sproto = await factory.next()
                out.append(await lp.sendfile(tr, io.BytesIO(payload), 7))
                out.append(await sproto.received(len(payload) - 7) == payload[7:])
                try:
                    await lp.sendfile(tr, io.BytesIO(payload), fallback=False)
                except Exception as exc:
                    out.append((type(exc).__name__, str(exc)))
                tr.close()
                try:
                    await lp.sendfile(tr, io.BytesIO(payload))
                except Exception as exc:
                    out.append((type(exc).__name__, str(exc)))
                return out
            finally:
                await close_server(server)

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[:2] == [len(payload) - 7, True]
    assert scenario(loop) == expected


# ---------------------------------------------------------------- asyncio streams


def test_streams_open_connection_start_server(loop, kind, tmp_path):
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        body = await reader.readexactly(5)
        writer.write(body[::-1])
        rest = await reader.read()  # until EOF
        writer.write(b"%d" % len(rest))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        family, addr = bind_address(kind, tmp_path)
        if kind == "unix":
            server = await asyncio.start_unix_server(handle, addr)
            reader, writer = await asyncio.open_unix_connection(addr)
        else:
            server = await asyncio.start_server(handle, addr[0], 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(addr[0], port)
        try:
            assert writer.get_extra_info("peername") is not None
            assert writer.can_write_eof()
            writer.write(b"hello\n")
            writer.write(b"abcde")
            writer.writelines([b"x" * 100_000, b"y" * 3])
            await writer.drain()
            writer.write_eof()
            assert await reader.readline() == b"HELLO\n"
            assert await reader.readexactly(5) == b"edcba"
            assert await reader.read() == b"100003"
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()
            assert writer.is_closing()
        finally:
            server.close()
            await server.wait_closed()

    run_bounded(loop, main())


def test_streams_limit_and_incomplete_read_like_stock(loop, kind, tmp_path):
    def scenario(lp):
        async def handle(reader, writer):
            writer.write(b"a" * 100 + b"\nshort")
            writer.close()

        async def main():
            family, addr = bind_address(kind, tmp_path)
            if kind == "unix":
                server = await asyncio.start_unix_server(handle, addr)
                reader, writer = await asyncio.open_unix_connection(addr, limit=10)
            else:
                server = await asyncio.start_server(handle, addr[0], 0)
                port = server.sockets[0].getsockname()[1]
                reader, writer = await asyncio.open_connection(addr[0], port, limit=10)
            out = []
            try:
                await reader.readuntil(b"\n")
            except Exception as exc:
                out.append((type(exc), str(exc)))
            try:
                await reader.readexactly(1000)
            except asyncio.IncompleteReadError as exc:
                out.append((type(exc), len(exc.partial) > 0))
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is asyncio.LimitOverrunError
    assert scenario(loop) == expected


# ---------------------------------------------------------------- transports


async def _pair(loop, kind, tmp_path, client_cls=Recorder, server_cls=Recorder, **kw):
    """(server, client transport, client protocol, server protocol)."""
    factory = Accepting(server_cls)
    server, addr = await serve(loop, kind, tmp_path, factory)
    tr, proto = await connect(loop, kind, addr, client_cls, **kw)
    sproto = await factory.next()
    return server, tr, proto, sproto


def test_transport_isinstance(loop, kind, tmp_path):
    async def main():
        server, tr, _, sproto = await _pair(loop, kind, tmp_path)
        try:
            for t in (tr, sproto.transport):
                assert isinstance(t, asyncio.Transport)
                assert isinstance(t, asyncio.ReadTransport)
                assert isinstance(t, asyncio.WriteTransport)
                assert isinstance(t, asyncio.BaseTransport)
                assert not isinstance(t, asyncio.DatagramTransport)
            tr.close()
        finally:
            await close_server(server)

    run_bounded(loop, main())


def _accepted_view(kind, tr, client):
    """What a server-side transport shows, with run-specific values
    (ports, fd numbers) replaced by how they relate to the client's."""
    sock = tr.get_extra_info("socket")
    peer, name = tr.get_extra_info("peername"), tr.get_extra_info("sockname")
    return {
        "peer": (type(peer).__name__, peer == client.getsockname()),
        "name": (type(name).__name__, name == client.getpeername()),
        "elements": [type(x).__name__ for x in peer] if isinstance(peer, tuple) else None,
        "socket": (type(sock).__name__, sock.family, sock.type, sock.proto),
        "timeout": sock.gettimeout(),
        "fd": sock.fileno() == tr._sock_fd >= 0,
        "repr": _norm_repr(sock).split(", laddr")[0],
        "weak": tr._loop._transports.get(tr._sock_fd) is tr,
    }


def _accepted_extra_info_scenario(kind, tmp_path, bind_client):
    def scenario(lp):
        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            family = server.sockets[0].family
            client = socket.socket(family, socket.SOCK_STREAM)
            if bind_client:
                client.bind(f"\0goloop-test-{os.getpid()}-{id(lp)}".encode())
            try:
                client.setblocking(False)
                await lp.sock_connect(client, addr)
                sproto = await factory.next()
                return _accepted_view(kind, sproto.transport, client)
            finally:
                client.close()
                await close_server(server)

        return run_bounded(lp, main())

    return scenario


def test_accepted_transport_extra_info_like_stock(loop, kind, tmp_path):
    """A server-side transport: peername from accept, sockname, its socket
    object (non-blocking), exactly as stock shows them (for Unix sockets an
    unnamed client: '' from accept)."""
    scenario = _accepted_extra_info_scenario(kind, tmp_path, bind_client=False)
    expected = with_loop(stock_factory, scenario)
    assert expected["timeout"] == 0.0 and expected["peer"][1] and expected["weak"]
    assert scenario(loop) == expected


def test_accepted_transport_extra_info_abstract_client_like_stock(loop, tmp_path):
    """The same for a Unix client bound in the abstract namespace (bytes)."""
    scenario = _accepted_extra_info_scenario("unix", tmp_path, bind_client=True)
    expected = with_loop(stock_factory, scenario)
    assert expected["peer"] == ("bytes", True)
    assert scenario(loop) == expected


def _names_read_late_scenario(kind, tmp_path):
    def scenario(lp):
        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            try:
                ctr, _ = await connect(lp, kind, addr, asyncio.Protocol)
                sproto = await factory.next()
                str_ = sproto.transport
                client_name = ctr.get_extra_info("socket").getsockname()
                # both ends gone before anyone reads a name
                ctr.close()
                str_.close()
                await asyncio.sleep(0.01)
                views = []
                for tr in (ctr, str_):
                    extra = tr._extra
                    views.append(
                        {
                            "keys": list(extra),
                            "same_dict": tr._extra is extra,
                            "same_socket": tr.get_extra_info("socket")
                            is tr.get_extra_info("socket"),
                            "peer_is_none": tr.get_extra_info("peername") is None,
                            "name_types": [
                                type(tr.get_extra_info(k)).__name__
                                for k in ("peername", "sockname")
                            ],
                        }
                    )
                views.append(str_.get_extra_info("peername") == client_name)
                views.append(ctr.get_extra_info("sockname") == client_name)
                str_._extra = {"mine": 1}
                views.append((str_.get_extra_info("mine"), str_.get_extra_info("peername")))
                return views
            finally:
                await close_server(server)

        return run_bounded(lp, main())

    return scenario


def test_transport_names_read_after_close_like_stock(loop, kind, tmp_path):
    """The names asyncio's constructor stores in ``_extra`` are the ones taken
    when the connection was made, even when first read after both ends have
    closed (goloop builds ``_extra`` on first read for TCP: the addresses
    are kept from accept/getsockname time); key order, identity of the dict
    and of the TransportSocket, and replacing ``_extra`` as on stock."""
    scenario = _names_read_late_scenario(kind, tmp_path)
    expected = with_loop(stock_factory, scenario)
    assert expected[2] is True and expected[3] is True
    assert scenario(loop) == expected


def test_accept_uses_overridden_transport_factory(loop_name, kind, tmp_path):
    """A loop subclass overriding _make_socket_transport sees every
    accepted connection, as with stock."""
    base = type(FACTORIES[loop_name]())
    made = []

    class Counting(base):
        def _make_socket_transport(self, sock, protocol, waiter=None, **kw):
            made.append(kw.get("extra", {}).get("peername") is not None)
            return super()._make_socket_transport(sock, protocol, waiter, **kw)

    lp = Counting()
    try:

        async def main():
            factory = Accepting()
            server, addr = await serve(lp, kind, tmp_path, factory)
            try:
                tr, _ = await connect(lp, kind, addr, Recorder)
                await factory.next()
                tr.close()
            finally:
                await close_server(server)

        run_bounded(lp, main())
    finally:
        lp.close()
    assert sorted(made) == [False, True]  # the client's transport and the accepted one


_conn_var = contextvars.ContextVar("conn", default="unset")


def test_protocol_callbacks_context_like_stock(loop, kind, tmp_path):
    """Protocol callbacks run in a context captured per connection: a
    ContextVar set in data_received persists for that connection only and
    never leaks into the task that runs the server."""

    class Tagging(Recorder):
        def connection_made(self, transport):
            self.seen = [_conn_var.get()]
            super().connection_made(transport)

        def data_received(self, data):
            self.seen.append(_conn_var.get())
            _conn_var.set(bytes(data[:1]).decode())
            super().data_received(data)

        def eof_received(self):
            self.seen.append(_conn_var.get())
            return super().eof_received()

    def scenario(lp):
        async def main():
            factory = Accepting(Tagging)
            server, addr = await serve(lp, kind, tmp_path, factory)
            clients = []
            for tag in (b"a", b"b"):
                tr, proto = await connect(lp, kind, addr, Recorder)
                sproto = await factory.next()
                clients.append((tr, sproto))
                tr.write(tag * 3)
                await sproto.received(3)
            for tr, sproto in clients:
                tr.write(b"z")
                await sproto.received(4)
                tr.write_eof()
                await sproto.eof
                tr.close()
            outer = _conn_var.get()
            await close_server(server)
            return outer, [sproto.seen for _, sproto in clients]

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == ("unset", [["unset", "unset", "a", "z"], ["unset", "unset", "b", "z"]])
    assert scenario(loop) == expected


class _OddBuffer(asyncio.BufferedProtocol):
    """get_buffer returns what the test says; records what happens."""

    def __init__(self, make):
        self.make = make
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()
        self.buf = bytearray(4)

    def connection_made(self, transport):
        self.events.append("made")

    def get_buffer(self, sizehint):
        self.events.append(("get_buffer", sizehint))
        return self.make(self)

    def buffer_updated(self, nbytes):
        self.events.append(("updated", bytes(self.buf[:nbytes])))

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(None)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.buf,
        lambda p: memoryview(p.buf)[:2],
        lambda p: bytearray(),
        lambda p: b"read-only",
        lambda p: 42,
    ],
    ids=["bytearray", "memoryview-slice", "empty", "readonly", "not-a-buffer"],
)
def test_buffered_protocol_get_buffer_results_like_stock(loop, tmp_path, make):
    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))

        async def main():
            proto = None

            def factory():
                nonlocal proto
                proto = _OddBuffer(make)
                return proto

            server, addr = await serve(lp, "tcp4", tmp_path, factory)
            client = socket.create_connection(addr)
            client.sendall(b"hello")
            client.shutdown(socket.SHUT_WR)
            while proto is None:
                await asyncio.sleep(0.005)
            await asyncio.wait_for(proto.lost, 5)
            client.close()
            await close_server(server)
            reports = [(c["message"], type(c.get("exception")).__name__) for c in contexts]
            return proto.events, reports

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert scenario(loop) == expected


def test_transport_socket_options_like_stock(loop, kind, tmp_path):
    """Socket state set up by the transports (TCP_NODELAY, non-blocking, ...)."""

    def opts(tr):
        sock = tr.get_extra_info("socket")
        out = [
            sock.gettimeout(),
            bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
        ]
        if sock.family != socket.AF_UNIX:
            out.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        return out

    def scenario(lp):
        async def main():
            server, tr, proto, sproto = await _pair(lp, kind, tmp_path)
            try:
                return opts(tr), opts(sproto.transport)
            finally:
                tr.close()
                await close_server(server)

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] == 0.0
    assert scenario(loop) == expected


def test_transport_write_errors_like_stock(loop, kind, tmp_path):
    def scenario(lp):
        async def main():
            server, tr, proto, sproto = await _pair(lp, kind, tmp_path)
            out = [tr.can_write_eof()]
            try:
                for data in ("text", 123, None, [b"x"]):
                    out.append(outcome(tr.write, data))
                out.append(outcome(tr.writelines, ["a", "b"]))
                out.append(outcome(tr.write, b""))
                out.append(tr.get_write_buffer_size())
                tr.write(b"end")
                tr.write_eof()
                out.append(("closing after write_eof", tr.is_closing()))
                out.append(outcome(tr.write, b"more"))
                out.append(outcome(tr.writelines, [b"more"]))
                out.append(outcome(tr.write_eof))  # twice: no-op
                await sproto.eof
                out.append(await sproto.received(3))
                sproto.transport.write(b"reply after eof")
                out.append(await proto.received(15))
                sproto.transport.close()
                await proto.lost
                await sproto.lost
                return out, proto.events, sproto.events
            finally:
                tr.close()
                await close_server(server)

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is True and expected[0][1][0] is TypeError
    assert scenario(loop) == expected


def test_transport_close_flushes_abort_discards(loop, kind, tmp_path):
    async def main():
        big = os.urandom(8 * 1024 * 1024)
        server, tr, proto, sproto = await _pair(loop, kind, tmp_path)
        try:
            # close(): everything written before is delivered, then EOF
            tr.write(big)
            assert tr.get_write_buffer_size() > 0  # more than the kernel buffers take
            tr.close()
            assert tr.is_closing()
            tr.close()  # idempotent
            assert await sproto.received(len(big)) == big
            await sproto.eof
            assert await proto.lost is None
            assert proto.events == ["made", "pause_writing", "resume_writing", ("lost", None)]
            await sproto.lost

            # abort(): connection_lost(None) right away, buffered data dropped
            sp = Accepting()
            server2, addr2 = await serve(loop, kind, tmp_path, sp, name="t2.sock")
            tr2, proto2 = await connect(loop, kind, addr2, Recorder)
            sproto2 = await sp.next()
            sproto2.transport.pause_reading()
            tr2.write(big)
            assert tr2.get_write_buffer_size() > 0
            tr2.abort()
            assert tr2.is_closing()
            assert await proto2.lost is None
            assert tr2.get_write_buffer_size() == 0
            sproto2.transport.resume_reading()
            await sproto2.lost
            assert len(sproto2.data) < len(big)
            await close_server(server2)
            return proto2.events
        finally:
            await close_server(server)

    assert run_bounded(loop, main()) == ["made", "pause_writing", ("lost", None)]


def test_transport_pause_resume_reading_like_stock(loop, kind, tmp_path):
    def scenario(lp):
        async def main():
            server, tr, proto, sproto = await _pair(lp, kind, tmp_path)
            st = sproto.transport
            out = [st.is_reading()]
            st.pause_reading()
            out.append(st.is_reading())
            out.append(outcome(st.pause_reading))  # twice
            tr.write(b"while paused")
            for _ in range(5):
                await asyncio.sleep(0.01)
            out.append(("received while paused", bytes(sproto.data)))
            st.resume_reading()
            out.append(st.is_reading())
            out.append(outcome(st.resume_reading))  # twice
            out.append(await sproto.received(12))
            st.close()
            out.append(("reading after close", st.is_reading()))
            out.append(outcome(st.pause_reading))
            out.append(outcome(st.resume_reading))
            await sproto.lost
            await proto.lost
            await close_server(server)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[:2] == [True, False]
    assert scenario(loop) == expected


def test_transport_write_buffer_limits_like_stock(loop, kind, tmp_path):
    def scenario(lp):
        async def main():
            server, tr, proto, sproto = await _pair(lp, kind, tmp_path)
            out = [tr.get_write_buffer_limits()]
            for kw in (
                {"high": 100},
                {"low": 100},
                {"high": 100, "low": 10},
                {"high": 0},
                {"high": 10, "low": 20},
                {"high": -1},
                {"low": -1},
                {},
            ):
                out.append(outcome(tr.set_write_buffer_limits, **kw))
                out.append(tr.get_write_buffer_limits())
            tr.close()
            await close_server(server)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (16384, 65536)
    assert scenario(loop) == expected


def test_transport_flow_control_callbacks(loop, kind, tmp_path):
    """pause_writing when the buffer passes high, resume_writing once below low."""
    high, low = 64 * 1024, 16 * 1024
    chunk = os.urandom(256 * 1024)

    async def main():
        server, tr, proto, sproto = await _pair(loop, kind, tmp_path)
        try:
            tr.set_write_buffer_limits(high=high, low=low)
            assert tr.get_write_buffer_limits() == (low, high)
            sproto.transport.pause_reading()  # the peer stops reading
            sent = 0
            while "pause_writing" not in proto.events:
                assert sent < 256 * 1024 * 1024, "pause_writing never called"
                tr.write(chunk)
                sent += len(chunk)
                await asyncio.sleep(0)
            assert tr.get_write_buffer_size() > high
            assert proto.events == ["made", "pause_writing"]
            sproto.transport.resume_reading()
            received = await sproto.received(sent)
            assert len(received) == sent
            expected = hashlib.sha256(chunk * (sent // len(chunk))).digest()
            assert hashlib.sha256(received).digest() == expected
            assert proto.events == ["made", "pause_writing", "resume_writing"]
            assert tr.get_write_buffer_size() == 0
            # high=0: any buffered byte pauses, an empty buffer resumes
            tr.set_write_buffer_limits(high=0)
            assert tr.get_write_buffer_limits() == (0, 0)
            sproto.transport.pause_reading()
            while proto.events.count("pause_writing") < 2:
                tr.write(chunk)
                sent += len(chunk)
                await asyncio.sleep(0)
            sproto.transport.resume_reading()
            await sproto.received(sent)
            while proto.events.count("resume_writing") < 2:
                await asyncio.sleep(0.001)
            assert tr.get_write_buffer_size() == 0
            tr.close()
            await proto.lost
            return proto.events
        finally:
            await close_server(server)

    assert run_bounded(loop, main()) == [
        "made",
        "pause_writing",
        "resume_writing",
        "pause_writing",
        "resume_writing",
        ("lost", None),
    ]


class _Buffered(asyncio.BufferedProtocol):
    def __init__(self, size=1000):
        loop = asyncio.get_running_loop()
        self.buf = bytearray(size)
        self.data = bytearray()
        self.sizehints = []
        self.events = []
        self.lost = loop.create_future()
        self._changed = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def get_buffer(self, sizehint):
        self.sizehints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self.data += self.buf[:nbytes]
        self._changed.set()

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", None if exc is None else type(exc)))
        self.lost.set_result(exc)
        self._changed.set()

    async def received(self, n):
        while len(self.data) < n and not self.lost.done():
            self._changed.clear()
            await self._changed.wait()
        return bytes(self.data)


def test_buffered_protocol(loop, kind, tmp_path):
    payload = os.urandom(300_000)

    async def main():
        server, tr, proto, sproto = await _pair(loop, kind, tmp_path, client_cls=_Buffered)
        try:
            sproto.transport.write(payload)
            sproto.transport.write_eof()
            assert await proto.received(len(payload)) == payload
            await proto.lost
            assert all(h == -1 or h > 0 for h in proto.sizehints)
            return proto.events
        finally:
            await close_server(server)

    assert run_bounded(loop, main()) == ["made", "eof", ("lost", None)]


def test_buffered_protocol_bad_buffers_like_stock(loop, kind, tmp_path):
    """get_buffer returning an empty buffer or raising: fatal error, as stock."""

    class Empty(_Buffered):
        def get_buffer(self, sizehint):
            return bytearray()

    class Raising(_Buffered):
        def get_buffer(self, sizehint):
            raise ZeroDivisionError("no buffer")

    class RaisingUpdate(_Buffered):
        def buffer_updated(self, nbytes):
            raise ZeroDivisionError("bad update")

    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))

        async def main():
            out = []
            for cls in (Empty, Raising, RaisingUpdate):
                server, tr, proto, sproto = await _pair(lp, kind, tmp_path, client_cls=cls)
                sproto.transport.write(b"data")
                exc = await proto.lost
                out.append((cls.__name__, type(exc), str(exc), proto.events))
                await sproto.lost
                await close_server(server)
            return out

        result = run_bounded(lp, main())
        summary = [
            (c["message"], type(c.get("exception")), c.get("protocol").__class__.__name__)
            for c in contexts
        ]
        return result, summary

    expected = with_loop(stock_factory, scenario)
    assert len(expected[1]) == 3
    assert scenario(loop) == expected


def _norm_repr(obj):
    text = norm_repr(repr(obj))
    return re.sub(r"bufsize=\d+", "bufsize=B", text)


def test_transport_repr_like_stock(loop, kind, tmp_path):
    """Reprs show the polling state the loop has registered for the transport."""

    def scenario(lp):
        async def main():
            server, tr, proto, sproto = await _pair(lp, kind, tmp_path)
            out = [_norm_repr(tr)]
            tr.pause_reading()
            out.append(_norm_repr(tr))
            tr.resume_reading()
            out.append(_norm_repr(tr))
            sproto.transport.pause_reading()
            while not tr.get_write_buffer_size():
                tr.write(b"x" * 1024 * 1024)
            out.append(_norm_repr(tr))  # write=<polling, ...>
            tr.close()
            out.append(_norm_repr(tr))  # closing, still flushing
            sproto.transport.resume_reading()
            await proto.lost
            out.append(_norm_repr(tr))  # closed
            await close_server(server)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert "read=polling" in expected[0] and "read=idle" in expected[1]
    assert scenario(loop) == expected


class _LogCollector(logging.Handler):
    """Formats asyncio's log records as they are emitted (reprs show the state then)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        msg = re.sub(r"0x[0-9a-f]+", "0xA", record.getMessage())
        self.messages.append(re.sub(r"\d+", "N", msg))


def test_debug_mode_transport_logs_like_stock(loop, kind, tmp_path):
    """In debug mode the transports log what they do, as stock."""

    def scenario(lp):
        lp.set_debug(True)
        # "Executing ... took N seconds" depends on the machine's load, not on
        # the transports: a busy CI host made one callback slow in one run.
        lp.slow_callback_duration = 60

        async def main():
            server, tr, proto, sproto = await _pair(lp, kind, tmp_path)
            tr.pause_reading()
            tr.resume_reading()
            sproto.transport.write(b"data")
            await proto.received(4)
            sproto.transport.write_eof()
            await proto.eof
            await proto.lost
            await close_server(server)

        logger = logging.getLogger("asyncio")
        collector = _LogCollector()
        old_level = logger.level
        logger.addHandler(collector)
        logger.setLevel(logging.DEBUG)
        try:
            run_bounded(lp, main())
        finally:
            logger.removeHandler(collector)
            logger.setLevel(old_level)
        return sorted(collector.messages)  # the order across fds is not pinned

    expected = with_loop(stock_factory, scenario)
    assert any(m.endswith("pauses reading") for m in expected)
    assert scenario(loop) == expected


def test_stop_inside_data_received_like_stock(loop):
    """Events from one poll all run in the iteration in which stop() is called,
    after the callbacks that were already scheduled."""

    def scenario(lp):
        log = []

        class StopOnData(asyncio.Protocol):
            def __init__(self, i):
                self.i = i

            def data_received(self, data):
                log.append((self.i, data))
                lp.stop()

        pairs = [socket.socketpair() for _ in range(3)]
        try:

            async def setup():
                trs = []
                for i, (a, _) in enumerate(pairs):
                    tr, _ = await lp.connect_accepted_socket(lambda i=i: StopOnData(i), a)
                    trs.append(tr)
                await asyncio.sleep(0)
                return trs

            trs = run_bounded(lp, setup())
            for _, b in pairs:
                b.send(b"x")
            lp.call_soon(log.append, "soon")
            guard = lp.call_later(10, lp.stop)  # hang detector
            lp.run_forever()
            guard.cancel()
            first_run = [log[0], sorted(log[1:])]
            for tr in trs:
                tr.close()
            run_bounded(lp, asyncio.sleep(0))
            return first_run
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    expected = with_loop(stock_factory, scenario)
    assert expected == ["soon", [(0, b"x"), (1, b"x"), (2, b"x")]]
    assert scenario(loop) == expected


def test_transports_on_high_fd_numbers(loop, kind, tmp_path):
    """Sockets whose fd numbers are in the thousands (a sparse fd table)."""
    import resource

    n_fillers = 3000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n_fillers + 200:
        pytest.skip(f"RLIMIT_NOFILE {soft} too low")
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(n_fillers)]

    async def main():
        server, addr = await serve(loop, kind, tmp_path, Echo)
        try:
            tr, proto = await connect(loop, kind, addr, Recorder)
            assert tr.get_extra_info("socket").fileno() > n_fillers
            tr.write(b"high")
            assert await proto.received(4) == b"high"
            tr.close()
            await proto.lost
        finally:
            await close_server(server)

    try:
        run_bounded(loop, main())
    finally:
        for fd in fillers:
            os.close(fd)


class _SocketSubclass(socket.socket):
    """Not an exact socket.socket: the transport takes asyncio's Python calls."""


class _SocketWithOwnRecv(socket.socket):
    """Replaces an I/O method: goloop makes asyncio's transport for it."""

    def recv(self, n):
        return super().recv(n)


@pytest.mark.parametrize("sock_type", [socket.socket, _SocketSubclass, _SocketWithOwnRecv])
def test_transport_sets_nodelay_like_uvloop(loop, loop_name, sock_type):
    """The transport constructor turns TCP_NODELAY on for TCP over IPv4 and
    IPv6, not UDP or Unix: on every TCP socket for goloop (uvloop's rule),
    only where proto is IPPROTO_TCP for stock (asyncio's _set_nodelay)."""
    tcp = socket.IPPROTO_TCP
    kinds = [
        (socket.AF_INET, socket.SOCK_STREAM, tcp),
        (socket.AF_INET, socket.SOCK_STREAM, 0),  # proto 0: stock leaves it alone
        (socket.AF_INET6, socket.SOCK_STREAM, tcp),
        (socket.AF_INET6, socket.SOCK_STREAM, 0),
        (socket.AF_INET, socket.SOCK_DGRAM, 0),
        (socket.AF_UNIX, socket.SOCK_STREAM, 0),
    ]
    if not ipv6_available():
        kinds = [k for k in kinds if k[0] != socket.AF_INET6]

    def scenario(lp):
        async def main():
            out = []
            for family, type_, proto in kinds:
                with sock_type(family, type_, proto) as sock:
                    sock.setblocking(False)
                    tr = lp._make_socket_transport(sock, asyncio.Protocol())
                    is_tcp = family != socket.AF_UNIX and type_ == socket.SOCK_STREAM
                    nodelay = socket.IPPROTO_TCP, socket.TCP_NODELAY
                    out.append(sock.getsockopt(*nodelay) if is_tcp else None)
                    out.append((tr.get_extra_info("sockname"), tr.get_extra_info("peername")))
                    tr.close()
                    await asyncio.sleep(0)
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == 1 and expected[2] == 0  # the oracle itself
    if loop_name == "goloop":
        for i, (family, type_, _proto) in enumerate(kinds):
            if type_ == socket.SOCK_STREAM and family != socket.AF_UNIX:
                expected[2 * i] = 1
    assert scenario(loop) == expected


def _as_unix(sock):
    """sock, as uvicorn --fd wraps the fd it is given (a socket object
    that says AF_UNIX, whatever the socket is)."""
    with sock:
        return socket.fromfd(sock.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)


def _nodelay_of_connections(factory, wrap=lambda sock: sock):
    """TCP_NODELAY of both ends of a connection made on a loop from factory
    over sockets the program made as socket.socket(AF_INET), proto 0 (and
    then wrapped): a listener passed as create_server(sock=...), as
    gunicorn and uvicorn --workers up to 0.54 do (--fd: _as_unix), and a
    client passed as create_connection(sock=...)."""

    def scenario(lp):
        async def main():
            accepted = lp.create_future()

            class Server(asyncio.Protocol):
                def connection_made(self, transport):
                    sock = transport.get_extra_info("socket")
                    accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

            listener = socket.socket(socket.AF_INET)
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            addr = listener.getsockname()
            server = await lp.create_server(Server, sock=wrap(listener))
            client = socket.socket(socket.AF_INET)
            client.connect(addr)
            client = wrap(client)
            client.setblocking(False)
            tr, _ = await lp.create_connection(asyncio.Protocol, sock=client)
            out = (
                await accepted,
                tr.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            )
            tr.close()
            server.close()
            await server.wait_closed()
            return out

        return run_bounded(lp, main())

    return with_loop(factory, scenario)


def test_nodelay_on_program_made_sockets_like_uvloop(loop_name, loop_factory):
    """gunicorn's uvicorn workers waited for delayed ACKs on goloop (1.0k
    requests/s against uvloop's 6.8k): their proto-0 sockets got no
    TCP_NODELAY. uvloop sets it on every TCP transport; goloop does too (a
    listed difference from stock, which sets it only for proto
    IPPROTO_TCP)."""
    try:
        import uvloop
    except ImportError:  # uvloop's behaviour, as its tcp.pyx sets it
        uvloop_result = (1, 1)
    else:
        uvloop_result = _nodelay_of_connections(uvloop.new_event_loop)
    assert uvloop_result == (1, 1)
    expected = uvloop_result if loop_name == "goloop" else (0, 0)
    assert _nodelay_of_connections(loop_factory) == expected


def test_nodelay_on_tcp_socket_object_that_says_unix(loop_name, loop_factory):
    """uvicorn --fd wraps the fd it is given as socket.fromfd(fd, AF_UNIX,
    SOCK_STREAM), TCP or not: stock and uvloop trust the object's family
    and leave TCP_NODELAY off (1.0k requests/s, delayed ACKs); goloop asks
    the kernel and sets it (a listed difference from both)."""
    try:
        import uvloop
    except ImportError:  # uvloop's behaviour: its UnixTransport sets nothing
        uvloop_result = (0, 0)
    else:
        uvloop_result = _nodelay_of_connections(uvloop.new_event_loop, _as_unix)
    assert uvloop_result == (0, 0)
    expected = (1, 1) if loop_name == "goloop" else (0, 0)
    assert _nodelay_of_connections(loop_factory, _as_unix) == expected
