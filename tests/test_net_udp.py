"""Datagram endpoints: create_datagram_endpoint, sendto, error_received.

Every test runs on the stock loop and on goloop against real sockets on
127.0.0.1, ::1 and Unix datagram paths; where the expected result is not
obvious it is computed by running the same scenario on the stock loop.
"""

import asyncio
import logging
import os
import re
import socket
import sys

import pytest
from loop_support import (
    bind_address,
    norm_repr,
    outcome,
    run_bounded,
    stock_factory,
    unix_path,
    with_loop,
)

KINDS = ("udp4", "udp6", "unixdgram")
_STREAM_KIND = {"udp4": "tcp4", "udp6": "tcp6", "unixdgram": "unix"}


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def dgram_address(kind, tmp_path, name):
    """(family, address to bind) for a datagram socket of the given kind."""
    return bind_address(_STREAM_KIND[kind], tmp_path, name)


def addr2(addr):
    """An address as create_datagram_endpoint/sendto take it ((host, port) for IP)."""
    return addr[:2] if isinstance(addr, tuple) else addr


def plain_socket(kind, tmp_path, name="peer.sock"):
    family, addr = dgram_address(kind, tmp_path, name)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.setblocking(False)  # read through the loop: never block the loop thread
    return sock


class DgramRecorder(asyncio.DatagramProtocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.events = []
        self.datagrams = []
        self.errors = []
        self.lost = loop.create_future()
        self._changed = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        self._changed.set()

    def error_received(self, exc):
        self.errors.append(exc)
        self.events.append(("error", type(exc)))
        self._changed.set()

    def connection_lost(self, exc):
        self.events.append(("lost", None if exc is None else type(exc)))
        self.lost.set_result(exc)
        self._changed.set()

    async def wait(self, predicate):
        while not predicate():
            self._changed.clear()
            await self._changed.wait()


# ---------------------------------------------------------------- endpoints


def test_local_addr_receive_and_reply(loop, kind, tmp_path):
    family, addr = dgram_address(kind, tmp_path, "ep.sock")
    peer = plain_socket(kind, tmp_path)

    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=addr, family=family if kind == "unixdgram" else 0
        )
        try:
            assert proto.events == ["made"]
            local = tr.get_extra_info("sockname")
            assert tr.get_extra_info("peername") is None
            sock = tr.get_extra_info("socket")
            assert sock.family == family and sock.type == socket.SOCK_DGRAM
            assert sock.getsockname() == local
            peer.sendto(b"hello", local)
            peer.sendto(b"x" * 60000 if kind != "unixdgram" else b"y" * 20000, local)
            await proto.wait(lambda: len(proto.datagrams) == 2)
            assert proto.datagrams[0] == (b"hello", peer.getsockname())
            assert len(proto.datagrams[1][0]) in (60000, 20000)
            tr.sendto(b"reply", peer.getsockname())
            tr.sendto(bytearray(b"ba"), peer.getsockname())
            tr.sendto(memoryview(b"mv"), peer.getsockname())
            assert tr.get_write_buffer_size() == 0
            got = [await loop.sock_recvfrom(peer, 100) for _ in range(3)]
            assert got == [(d, local) for d in (b"reply", b"ba", b"mv")]
            tr.close()
            assert tr.is_closing()
            assert await proto.lost is None
            return proto.events
        finally:
            tr.close()

    try:
        assert run_bounded(loop, main()) == ["made", ("lost", None)]
    finally:
        peer.close()


def test_remote_addr_connected_endpoint(loop, kind, tmp_path):
    peer = plain_socket(kind, tmp_path)
    family, local = dgram_address(kind, tmp_path, "ep.sock")

    async def main():
        kw = {"local_addr": local, "family": family} if kind == "unixdgram" else {}
        tr, proto = await loop.create_datagram_endpoint(
            DgramRecorder, remote_addr=addr2(peer.getsockname()), **kw
        )
        try:
            assert tr.get_extra_info("peername") == peer.getsockname()
            tr.sendto(b"one")
            tr.sendto(b"two", tr.get_extra_info("peername"))  # the connected address is allowed
            assert await loop.sock_recvfrom(peer, 10) == (b"one", tr.get_extra_info("sockname"))
            assert (await loop.sock_recvfrom(peer, 10))[0] == b"two"
            peer.sendto(b"back", tr.get_extra_info("sockname"))
            await proto.wait(lambda: proto.datagrams)
            assert proto.datagrams == [(b"back", peer.getsockname())]
        finally:
            tr.close()

    try:
        run_bounded(loop, main())
    finally:
        peer.close()


def test_sock_argument(loop, kind, tmp_path):
    family, addr = dgram_address(kind, tmp_path, "ep.sock")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(addr)
    peer = plain_socket(kind, tmp_path)

    async def main():
        tr, proto = await loop.create_datagram_endpoint(DgramRecorder, sock=sock)
        try:
            assert sock.getblocking() is False
            assert tr.get_extra_info("socket").fileno() == sock.fileno()
            peer.sendto(b"via sock", sock.getsockname())
            await proto.wait(lambda: proto.datagrams)
            assert proto.datagrams == [(b"via sock", peer.getsockname())]
        finally:
            tr.close()
        await proto.lost
        return sock.fileno()

    try:
        assert run_bounded(loop, main()) == -1  # the transport closed it
    finally:
        peer.close()


@pytest.mark.parametrize("kind", ["udp4", "udp6"])
def test_family_without_addresses(loop, kind, tmp_path):
    peer = plain_socket(kind, tmp_path)
    family = peer.family

    async def main():
        tr, proto = await loop.create_datagram_endpoint(DgramRecorder, family=family)
        try:
            sock = tr.get_extra_info("socket")
            assert sock.family == family
            tr.sendto(b"unbound", peer.getsockname())  # binds implicitly
            data, addr = await loop.sock_recvfrom(peer, 100)
            assert data == b"unbound"
            assert addr[1] == sock.getsockname()[1]
            peer.sendto(b"answer", addr)
            await proto.wait(lambda: proto.datagrams)
            assert proto.datagrams == [(b"answer", peer.getsockname())]
        finally:
            tr.close()

    try:
        run_bounded(loop, main())
    finally:
        peer.close()


def test_argument_errors_like_stock(loop, tmp_path):
    path = unix_path(tmp_path, "x.sock")

    def scenario(lp):
        tcp = socket.socket()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp_addr = udp.getsockname()
        calls = [
            lambda: lp.create_datagram_endpoint(asyncio.DatagramProtocol),
            lambda: lp.create_datagram_endpoint(asyncio.DatagramProtocol, sock=tcp),
            lambda: lp.create_datagram_endpoint(
                asyncio.DatagramProtocol, sock=udp, local_addr=("127.0.0.1", 0)
            ),
            lambda: lp.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0), reuse_address=True
            ),
            lambda: lp.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0), family=socket.AF_INET6
            ),
            lambda: lp.create_datagram_endpoint(
                asyncio.DatagramProtocol,
                local_addr=("127.0.0.1", 0),
                remote_addr=("::1", 9),
                family=socket.AF_INET,
            ),
            lambda: lp.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr="not-a-tuple"),
            lambda: lp.create_datagram_endpoint(
                asyncio.DatagramProtocol, family=socket.AF_UNIX, local_addr=("127.0.0.1", 0)
            ),
            lambda: lp.create_datagram_endpoint(
                asyncio.DatagramProtocol, family=socket.AF_UNIX, remote_addr=path
            ),
        ]
        try:
            out = []
            for c in calls:
                r = outcome(lambda c=c: run_bounded(lp, c()))
                if r[0] == "ok":
                    r[1][0].close()
                    r = ("ok", None)
                else:
                    msg = re.sub(r"fd=\d+", "fd=N", r[1]).replace(str(tmp_path), "TMP")
                    r = (r[0], msg.replace(str(udp_addr[1]), "P"))
                out.append(r)
            return out
        finally:
            tcp.close()
            udp.close()

    expected = with_loop(stock_factory, scenario)
    assert expected[1][0] is ValueError
    assert scenario(loop) == expected


# ---------------------------------------------------------------- socket options


def _opts(tr):
    s = tr.get_extra_info("socket")
    return (
        bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)),
        bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)),
    )


@pytest.mark.parametrize("kind", ["udp4", "udp6"])
def test_reuse_port_and_allow_broadcast_like_stock(loop, kind, tmp_path):
    family, addr = dgram_address(kind, tmp_path, "ep.sock")

    def scenario(lp):
        async def main():
            out = []
            for kw in (
                {},
                {"reuse_port": True},
                {"allow_broadcast": True},
                {"reuse_port": False, "allow_broadcast": False},
            ):
                tr, _ = await lp.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=addr, **kw
                )
                out.append(_opts(tr))
                tr.close()
            # two endpoints share a port with reuse_port
            tr1, p1 = await lp.create_datagram_endpoint(
                DgramRecorder, local_addr=addr, reuse_port=True
            )
            port = tr1.get_extra_info("sockname")[1]
            tr2, p2 = await lp.create_datagram_endpoint(
                DgramRecorder, local_addr=(addr[0], port), reuse_port=True
            )
            out.append(tr2.get_extra_info("sockname")[1] == port)
            tr2.close()
            # without it, the port is taken
            try:
                tr3, _ = await lp.create_datagram_endpoint(
                    DgramRecorder, local_addr=(addr[0], port)
                )
                tr3.close()
                out.append("ok")
            except OSError as exc:
                out.append((type(exc), exc.errno))
            tr1.close()
            await p1.lost
            await p2.lost
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[:3] == [(False, False), (True, False), (False, True)]
    assert scenario(loop) == expected


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ["udp4", "udp6"])
def test_error_received_port_unreachable_like_stock(loop, kind, tmp_path):
    """Connected UDP to a closed port: ICMP unreachable -> error_received."""
    family, addr = dgram_address(kind, tmp_path, "x")

    def scenario(lp):
        closed = socket.socket(family, socket.SOCK_DGRAM)
        closed.bind(addr)
        target = addr2(closed.getsockname())
        closed.close()

        async def main():
            tr, proto = await lp.create_datagram_endpoint(DgramRecorder, remote_addr=target)
            try:
                tr.sendto(b"anyone?")
                await proto.wait(lambda: proto.errors)
                err = proto.errors[0]
                still_open = not tr.is_closing()
                tr.sendto(b"again")  # the transport stays usable
                await proto.wait(lambda: len(proto.errors) >= 2)
                return type(err), err.errno, still_open, proto.events[:3]
            finally:
                tr.close()

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is ConnectionRefusedError
    assert scenario(loop) == expected


def test_sendto_errors_like_stock(loop, kind, tmp_path):
    peer = plain_socket(kind, tmp_path)
    family, other = dgram_address(kind, tmp_path, "other.sock")
    other_sock = socket.socket(family, socket.SOCK_DGRAM)
    other_sock.bind(other)
    _, local = dgram_address(kind, tmp_path, "ep.sock")

    def norm(r):
        if r[0] == "ok":
            return r
        msg = r[1]
        for a in (peer.getsockname(), other_sock.getsockname()):
            msg = msg.replace(repr(addr2(a)), "ADDR")
        return r[0], msg

    def scenario(lp):
        async def main():
            kw = {"local_addr": local, "family": family} if kind == "unixdgram" else {}
            tr, proto = await lp.create_datagram_endpoint(
                DgramRecorder, remote_addr=addr2(peer.getsockname()), **kw
            )
            try:
                out = [
                    norm(outcome(tr.sendto, "text")),
                    norm(outcome(tr.sendto, 123)),
                    norm(outcome(tr.sendto, b"x", addr2(other_sock.getsockname()))),
                ]
                # an empty datagram, then a marker: which arrive?
                tr.sendto(b"")
                tr.sendto(b"marker")
                first = await lp.sock_recv(peer, 100)
                if first == b"":
                    first = (b"", await lp.sock_recv(peer, 100))
                out.append(first)
                out.append(proto.events)
                return out
            finally:
                tr.close()

        return run_bounded(lp, main())

    try:
        expected = with_loop(stock_factory, scenario)
        assert expected[0][0] is TypeError
        assert scenario(loop) == expected
    finally:
        peer.close()
        other_sock.close()


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "unconnected"])
def test_sendto_after_close_like_stock(loop, caplog, connected):
    """sendto on a closed endpoint: a connected one ignores it and, after 5
    such calls, logs "socket.send() raised exception."; as stock either way."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))

    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))

        async def main():
            kw = {"remote_addr": peer.getsockname()} if connected else {}
            tr, proto = await lp.create_datagram_endpoint(
                DgramRecorder, local_addr=("127.0.0.1", 0), **kw
            )
            tr.close()
            await proto.lost
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="asyncio"):
                results = [outcome(tr.sendto, b"x", peer.getsockname()) for _ in range(8)]
                await asyncio.sleep(0)
            msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
            return results, msgs, proto.events

        result = run_bounded(lp, main())
        return result, [(c["message"], type(c.get("exception"))) for c in contexts]

    try:
        expected = with_loop(stock_factory, scenario)
        if connected:
            # close() counts as the first lost write; the 5th and later warn
            assert expected[0][1] == ["socket.send() raised exception."] * 4
        assert scenario(loop) == expected
    finally:
        peer.close()


class Replier(DgramRecorder):
    """Replies to every datagram with sendto(reply, addr), addr being the
    very tuple datagram_received got (goloop's reply fast path)."""

    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        if data == b"empty":
            reply = b""
        elif data == b"bytearray":
            reply = bytearray(b"BA")
        else:
            reply = data.upper()
        self.transport.sendto(reply, addr)


@pytest.mark.parametrize("npeers", [2, 11])
def test_replies_to_alternating_peers_like_stock(loop, kind, tmp_path, npeers):
    """Datagrams from several peers in turn (more than goloop remembers, in
    the second case) are attributed and answered to the right one, whatever
    the reply's type, and a reply after close() is handled as stock does."""
    peers = [plain_socket(kind, tmp_path, f"peer{i}.sock") for i in range(npeers)]
    family, local = dgram_address(kind, tmp_path, "ep.sock")

    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))

        async def main():
            tr, proto = await lp.create_datagram_endpoint(Replier, local_addr=local, family=family)
            where = tr.get_extra_info("sockname")
            got = []
            try:
                msgs = [b"a", b"b", b"c", b"bytearray", b"empty", b"d"]
                msgs += [b"m%d" % i for i in range(2 * npeers)]
                for i, msg in enumerate(msgs):
                    peer = peers[i % npeers]
                    peer.sendto(msg, where)
                    await proto.wait(lambda n=i + 1: len(proto.datagrams) == n)
                    if msg != b"empty" or sys.version_info >= (3, 13):  # 3.13 sends b""
                        data, sender = await lp.sock_recvfrom(peer, 100)
                        got.append((i % npeers, data, sender == where))
                senders = [
                    addr == peers[i % npeers].getsockname()
                    for i, (_, addr) in enumerate(proto.datagrams)
                ]
                last = proto.datagrams[-1][1]
                tr.close()
                await proto.lost
                after = outcome(tr.sendto, b"late", last)
                await asyncio.sleep(0)
                return got, senders, after, proto.events
            finally:
                tr.close()

        result = run_bounded(lp, main())
        reports = [(norm_repr(c["message"]), type(c.get("exception"))) for c in contexts]
        return result, reports

    try:
        expected = with_loop(stock_factory, scenario)
        assert all(expected[0][1])
        assert scenario(loop) == expected
    finally:
        for peer in peers:
            peer.close()


def test_max_size_truncates_like_stock(loop, kind, tmp_path):
    """A transport's max_size (asyncio reads at most that much per datagram)
    is honoured when changed on the instance."""
    peer = plain_socket(kind, tmp_path)
    family, local = dgram_address(kind, tmp_path, "ep.sock")

    def scenario(lp):
        async def main():
            tr, proto = await lp.create_datagram_endpoint(
                DgramRecorder, local_addr=local, family=family
            )
            try:
                where = tr.get_extra_info("sockname")
                peer.sendto(b"0123456789", where)
                await proto.wait(lambda: len(proto.datagrams) == 1)
                tr.max_size = 4
                peer.sendto(b"abcdefghij", where)
                await proto.wait(lambda: len(proto.datagrams) == 2)
                return [d for d, _ in proto.datagrams]
            finally:
                tr.close()

        return run_bounded(lp, main())

    try:
        expected = with_loop(stock_factory, scenario)
        assert expected == [b"0123456789", b"abcd"]
        assert scenario(loop) == expected
    finally:
        peer.close()


def test_datagram_received_raising_like_stock(loop, kind, tmp_path):
    """An exception in datagram_received goes to the exception handler as a
    callback error; the endpoint stays open (stock behaviour)."""
    peer = plain_socket(kind, tmp_path)
    family, local = dgram_address(kind, tmp_path, "ep.sock")

    class Raising(DgramRecorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"raise":
                raise ZeroDivisionError("boom")

    def scenario(lp):
        contexts = []
        reported = lp.create_future()

        def handler(_lp, ctx):
            contexts.append(ctx)
            if not reported.done():
                reported.set_result(None)

        lp.set_exception_handler(handler)

        async def main():
            tr, proto = await lp.create_datagram_endpoint(Raising, local_addr=local, family=family)
            try:
                peer.sendto(b"raise", tr.get_extra_info("sockname"))
                await reported
                closing = tr.is_closing()
                peer.sendto(b"after", tr.get_extra_info("sockname"))
                await proto.wait(lambda: len(proto.datagrams) == 2)
                return closing, [d for d, _ in proto.datagrams], proto.events
            finally:
                tr.close()

        result = run_bounded(lp, main())
        summary = [(norm_repr(c["message"]), type(c.get("exception")), sorted(c)) for c in contexts]
        return result, summary

    try:
        expected = with_loop(stock_factory, scenario)
        assert expected[1][0][1] is ZeroDivisionError
        assert scenario(loop) == expected
    finally:
        peer.close()


def test_datagram_transport_isinstance_and_abort(loop, kind, tmp_path):
    family, local = dgram_address(kind, tmp_path, "ep.sock")

    def scenario(lp):
        async def main():
            tr, proto = await lp.create_datagram_endpoint(
                DgramRecorder, local_addr=local, family=family
            )
            # The stock selector datagram transport is (oddly) an
            # asyncio.Transport and not an asyncio.DatagramTransport.
            kinds = [
                isinstance(tr, cls)
                for cls in (
                    asyncio.BaseTransport,
                    asyncio.DatagramTransport,
                    asyncio.Transport,
                    asyncio.ReadTransport,
                    asyncio.WriteTransport,
                )
            ]
            assert tr.get_protocol() is proto
            tr.abort()
            closing = tr.is_closing()
            return kinds, closing, await proto.lost, proto.events

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is True
    assert expected[1:] == (True, None, ["made", ("lost", None)])
    assert scenario(loop) == expected


# ------------------------------------------- goloop's native datagram path
# Each scenario runs on the stock loop first; goloop must give the same.


class FirstSender(DgramRecorder):
    """Records like DgramRecorder; `first` resolves to the first sender's
    address tuple (the tuple goloop's reply fast path recognises)."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.first = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        if not self.first.done():
            self.first.set_result(addr)

    def error_received(self, exc):
        super().error_received(exc)
        return "a value sendto() must not return"


def _ip_peer():
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    return peer


async def _received(lp, sock, n):
    """The datagrams waiting on sock (up to n, 0.2 s for each)."""
    got = []
    for _ in range(n):
        try:
            got.append(await asyncio.wait_for(lp.sock_recv(sock, 100), 0.2))
        except TimeoutError:
            break
    return got


async def _answered_endpoint(lp, **kw):
    """(peer, transport, protocol, addr): an endpoint that has received one
    datagram from peer, addr being the tuple it reported for peer."""
    peer = _ip_peer()
    tr, proto = await lp.create_datagram_endpoint(FirstSender, **kw)
    peer.sendto(b"hello", tr.get_extra_info("sockname"))
    return peer, tr, proto, await proto.first


def _oracle(loop, scenario):
    expected = with_loop(stock_factory, scenario)
    assert scenario(loop) == expected
    return expected


def test_reply_after_close_on_connected_endpoint_like_stock(loop):
    """A connected endpoint drops sendto() after close(), even to the
    address it just received from."""

    def scenario(lp):
        async def main():
            peer = _ip_peer()
            tr, proto = await lp.create_datagram_endpoint(
                FirstSender, remote_addr=peer.getsockname()
            )
            peer.sendto(b"hello", tr.get_extra_info("sockname"))
            addr = await proto.first
            tr.close()
            result = tr.sendto(b"after close", addr)
            got = await _received(lp, peer, 1)
            peer.close()
            return result, got

        return run_bounded(lp, main())

    assert _oracle(loop, scenario) == (None, [])


class _FullOnce:
    """A socket whose first sendto() finds the socket buffer full."""

    def __init__(self, sock):
        self.sock, self.calls = sock, 0

    def sendto(self, *args):
        self.calls += 1
        if self.calls == 1:
            raise BlockingIOError
        return self.sock.sendto(*args)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_reply_queues_behind_buffered_datagrams_like_stock(loop):
    def scenario(lp):
        async def main():
            peer, tr, proto, addr = await _answered_endpoint(lp, local_addr=("127.0.0.1", 0))
            real, tr._sock = tr._sock, _FullOnce(tr._sock)
            tr.sendto(bytearray(b"1"), addr)  # asyncio's path: buffered
            tr.sendto(b"2", addr)  # must not overtake it
            got = await _received(lp, peer, 2)
            tr._sock = real
            tr.close()
            peer.close()
            return got

        return run_bounded(lp, main())

    assert _oracle(loop, scenario) == [b"1", b"2"]


def test_reply_after_user_closed_the_socket_like_stock(loop):
    """The socket passed as sock= is closed by the user and its fd number
    reused: sendto() must not write to the new socket."""

    def scenario(lp):
        async def main():
            sock = _ip_peer()
            tr, proto = await lp.create_datagram_endpoint(FirstSender, sock=sock)
            peer = _ip_peer()
            peer.sendto(b"hello", sock.getsockname())
            addr = await proto.first
            fd = sock.fileno()
            sock.close()
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            other.bind(("127.0.0.1", 0))
            reused = other.fileno() == fd
            tr.sendto(b"reply", addr)
            got = await _received(lp, peer, 1)
            await asyncio.sleep(0)
            other.close()
            peer.close()
            tr.abort()
            return reused, got, [type(e) for e in proto.errors]

        return run_bounded(lp, main())

    assert _oracle(loop, scenario)[1] == []


def test_reply_error_returns_none_like_stock(loop):
    """sendto() of an oversized datagram reports EMSGSIZE through
    error_received and returns None."""

    def scenario(lp):
        async def main():
            peer, tr, proto, addr = await _answered_endpoint(lp, local_addr=("127.0.0.1", 0))
            result = tr.sendto(b"x" * 70000, addr)
            tr.close()
            peer.close()
            return result, [type(e) for e in proto.errors]

        return run_bounded(lp, main())

    assert _oracle(loop, scenario) == (None, [OSError])


def test_two_endpoints_forwarding_keep_stock_order(loop):
    """Endpoint A forwards every datagram to endpoint B on the same loop:
    B's deliveries interleave with A's as in stock, although more datagrams
    are already waiting for A."""
    log = []

    class B(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            log.append("B" + data.decode())

    class A(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            log.append("A" + data.decode())
            self.transport.sendto(data, self.forward_to)

    def scenario(lp):
        async def main():
            log.clear()
            trb, _ = await lp.create_datagram_endpoint(B, local_addr=("127.0.0.1", 0))
            tra, pa = await lp.create_datagram_endpoint(A, local_addr=("127.0.0.1", 0))
            pa.forward_to = trb.get_extra_info("sockname")
            src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(4):
                src.sendto(b"%d" % i, tra.get_extra_info("sockname"))
            while len(log) < 8:
                await asyncio.sleep(0.01)
            tra.close()
            trb.close()
            src.close()
            return list(log)

        return run_bounded(lp, main())

    assert _oracle(loop, scenario)[0] == "A0"


@pytest.mark.parametrize("sender", ["path", "abstract", "unnamed"])
def test_unix_datagram_sender_addresses_and_replies_like_stock(loop, tmp_path, sender):
    """A Unix datagram endpoint sees each sender's address as stock does
    (a path str, abstract-namespace bytes, None for an unbound sender) and
    replies to the bound ones through transport.sendto(data, addr)."""

    def scenario(lp):
        async def main():
            path = unix_path(tmp_path, f"srv-{id(lp)}.sock")
            tr, proto = await lp.create_datagram_endpoint(
                DgramRecorder, local_addr=path, family=socket.AF_UNIX
            )
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            if sender == "path":
                peer.bind(unix_path(tmp_path, f"peer-{id(lp)}.sock"))
            elif sender == "abstract":
                peer.bind(f"\0goloop-dgram-{os.getpid()}-{id(lp)}".encode())
            peer.setblocking(False)
            try:
                for i in range(3):
                    peer.sendto(b"ping%d" % i, path)
                await proto.wait(lambda: len(proto.datagrams) == 3)
                addrs = [addr for _, addr in proto.datagrams]
                shape = [type(a).__name__ for a in addrs]
                same = [a == peer.getsockname() or a is None for a in addrs]
                replies = []
                if addrs[0] is not None:
                    for data, addr in proto.datagrams:
                        tr.sendto(data.upper(), addr)
                    for _ in range(3):
                        replies.append(await lp.sock_recv(peer, 100))
                return shape, same, replies, proto.errors
            finally:
                tr.close()
                peer.close()

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert all(expected[1])
    assert scenario(loop) == expected
