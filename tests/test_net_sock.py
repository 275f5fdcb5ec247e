"""Low-level socket coroutines (loop.sock_*), getaddrinfo and getnameinfo.

Every test runs on the stock loop and on goloop against real sockets on
127.0.0.1, ::1 and Unix paths; where the expected result is not obvious it
is computed by running the same scenario on the stock loop.
"""

import asyncio
import functools
import hashlib
import io
import os
import re
import socket
import ssl

import pytest
from loop_support import (
    ADDR_KINDS,
    bind_address,
    ipv6_available,
    outcome,
    run_bounded,
    stock_factory,
    waiting_data,
    with_loop,
)


@pytest.fixture(params=ADDR_KINDS)
def kind(request):
    return request.param


@pytest.fixture
def listener(kind, tmp_path):
    """A non-blocking listening stream socket of the kind under test."""
    family, addr = bind_address(kind, tmp_path)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind(addr)
    sock.listen(8)
    yield sock
    sock.close()


def _client_for(listener):
    sock = socket.socket(listener.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _connected_pair(loop, listener):
    """(client, server-side conn, accepted address) through sock_connect/sock_accept."""
    client = _client_for(listener)
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    await loop.sock_connect(client, listener.getsockname())
    conn, addr = await accept
    return client, conn, addr


async def _recv_exactly(loop, sock, n):
    chunks = []
    got = 0
    while got < n:
        data = await loop.sock_recv(sock, n - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


# ---------------------------------------------------------------- stream sockets


def test_sock_connect_accept_recv_sendall(loop, listener):
    async def main():
        client, conn, addr = await _connected_pair(loop, listener)
        with client, conn:
            assert conn.getblocking() is False
            assert addr == client.getsockname()
            if listener.family != socket.AF_UNIX:
                assert client.getpeername() == listener.getsockname()

            await loop.sock_sendall(client, b"hello ")
            await loop.sock_sendall(client, bytearray(b"world"))
            await loop.sock_sendall(client, memoryview(b"!!"))
            assert await _recv_exactly(loop, conn, 13) == b"hello world!!"

            # the other direction, with a receive pending before the data arrives
            pending = asyncio.ensure_future(loop.sock_recv(client, 100))
            await asyncio.sleep(0)
            assert not pending.done()
            await loop.sock_sendall(conn, b"pong")
            assert await pending == b"pong"

            # EOF
            conn.shutdown(socket.SHUT_WR)
            assert await loop.sock_recv(client, 100) == b""

    run_bounded(loop, main())


def test_sock_recv_into(loop, listener):
    async def main():
        client, conn, _ = await _connected_pair(loop, listener)
        with client, conn:
            buf = bytearray(16)
            pending = asyncio.ensure_future(loop.sock_recv_into(conn, buf))
            await asyncio.sleep(0)
            assert not pending.done()
            await loop.sock_sendall(client, b"abcdef")
            n = await pending
            assert buf[:n] == b"abcdef"[:n] and n > 0

            # fast path: data already there; a memoryview slice as target
            await loop.sock_sendall(client, b"XYZ")
            view = memoryview(buf)[4:]
            got = bytearray()
            while len(got) < 6 - n + 3:
                k = await loop.sock_recv_into(conn, view)
                got += view[:k]
            assert bytes(got) == b"abcdef"[n:] + b"XYZ"

            client.close()
            assert await loop.sock_recv_into(conn, buf) == 0

    run_bounded(loop, main())


def test_sock_sendall_large_with_concurrent_reader(loop, listener):
    payload = os.urandom(8 * 1024 * 1024 + 7)  # far more than the socket buffers

    async def main():
        client, conn, _ = await _connected_pair(loop, listener)
        with client, conn:

            async def reader():
                h = hashlib.sha256()
                buf = bytearray(256 * 1024)
                total = 0
                while True:
                    n = await loop.sock_recv_into(conn, buf)
                    if not n:
                        return total, h.hexdigest()
                    h.update(memoryview(buf)[:n])
                    total += n

            task = asyncio.ensure_future(reader())
            assert await loop.sock_sendall(client, payload) is None
            client.shutdown(socket.SHUT_WR)
            return await task

    assert run_bounded(loop, main()) == (len(payload), hashlib.sha256(payload).hexdigest())


def test_sock_connect_resolves_host_name(loop):
    async def main():
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            with socket.socket() as client:
                client.setblocking(False)
                await loop.sock_connect(client, ("localhost", lsock.getsockname()[1]))
                return client.getpeername() == lsock.getsockname()

    assert run_bounded(loop, main()) is True


def test_sock_connect_refused(loop, kind, tmp_path):
    family, addr = bind_address(kind, tmp_path)
    # A bound, non-listening socket holds the port/path: connecting is refused.
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.bind(addr)

    async def main():
        with socket.socket(family, socket.SOCK_STREAM) as client:
            client.setblocking(False)
            try:
                await loop.sock_connect(client, holder.getsockname())
            except OSError as exc:
                return type(exc), exc.errno
            return "connected"

    try:
        assert run_bounded(loop, main()) == (ConnectionRefusedError, 111)
    finally:
        holder.close()


def test_sock_accept_pending_then_connection(loop, listener):
    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not accept.done()
        client = socket.socket(listener.family, socket.SOCK_STREAM)
        with client:
            client.connect(listener.getsockname())  # blocking: the backlog completes it
            conn, _ = await accept
            with conn:
                client.sendall(b"x")
                return await loop.sock_recv(conn, 1)

    assert run_bounded(loop, main()) == b"x"


def test_sock_fd_used_by_transport_is_refused(loop, listener):
    """sock_recv (when it has to wait) and add_reader & co. on a transport's fd."""

    def norm(res):
        if res[0] is RuntimeError:
            msg = res[1].split(" is used by transport")[0]
            return RuntimeError, re.sub(r"\d+", "N", msg)
        return res

    def scenario(lp):
        async def main():
            client = _client_for(listener)
            accept = asyncio.ensure_future(lp.sock_accept(listener))
            await lp.sock_connect(client, listener.getsockname())
            conn, _ = await accept
            tr, _ = await lp.create_connection(asyncio.Protocol, sock=client)
            try:
                res = []
                # sock_sendall completes at once (no wait): not checked, as stock
                for coro in (lp.sock_recv(client, 1), lp.sock_sendall(client, b"x")):
                    try:
                        res.append(("ok", await coro))
                    except RuntimeError as exc:
                        res.append((RuntimeError, str(exc)))
                for method in (lp.add_reader, lp.add_writer):
                    res.append(outcome(method, client.fileno(), print))
                for method in (lp.remove_reader, lp.remove_writer):
                    res.append(outcome(method, client.fileno()))
                return [norm(r) for r in res]
            finally:
                tr.close()
                conn.close()

        return lp.run_until_complete(main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (RuntimeError, "File descriptor N")
    assert scenario(loop) == expected


# ---------------------------------------------------------------- cancellation


def test_cancelled_sock_recv_leaves_socket_usable(loop, listener):
    async def main():
        client, conn, _ = await _connected_pair(loop, listener)
        with client, conn:
            for method in ("sock_recv", "sock_recv_into"):
                arg = 10 if method == "sock_recv" else bytearray(10)
                task = asyncio.ensure_future(getattr(loop, method)(conn, arg))
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            # the socket still works through sock_recv...
            await loop.sock_sendall(client, b"after")
            assert await _recv_exactly(loop, conn, 5) == b"after"
            # ...and the fd is free for a plain reader
            fut = loop.create_future()
            loop.add_reader(conn, lambda: fut.done() or fut.set_result(conn.recv(10)))
            try:
                await loop.sock_sendall(client, b"raw")
                assert await fut == b"raw"
            finally:
                assert loop.remove_reader(conn) is True
            # and for a transport
            tr, proto = await loop.connect_accepted_socket(_Collect, conn)
            try:
                await loop.sock_sendall(client, b"tr")
                await proto.wait_for(b"tr")
            finally:
                tr.close()

    run_bounded(loop, main())


def test_two_pending_sock_recv_cancel_first_like_stock(loop, listener):
    """The second sock_recv replaces the first's reader; cancelling the first
    must not unregister the second."""

    def scenario(lp):
        async def main():
            client, conn, _ = await _connected_pair(lp, listener)
            with client, conn:
                first = asyncio.ensure_future(lp.sock_recv(conn, 10))
                await asyncio.sleep(0)
                second = asyncio.ensure_future(lp.sock_recv(conn, 10))
                await asyncio.sleep(0)
                first.cancel()
                await asyncio.sleep(0)
                await lp.sock_sendall(client, b"data")
                done, _ = await asyncio.wait({second}, timeout=5)
                return first.cancelled(), (second.result() if done else "second hangs")

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == (True, b"data")
    assert scenario(loop) == expected


def test_sock_recv_after_fd_number_reused(loop, listener):
    """A finished sock_recv leaves no stale registration behind: closing its
    socket and getting the same fd number for a new connection still
    delivers the new connection's data (goloop keeps the first socket's
    epoll registration between receives; see pybridge/io.c)."""

    async def main():
        seen = []
        for round_ in range(4):
            client, conn, _ = await _connected_pair(loop, listener)
            with client:
                await loop.sock_sendall(client, b"ping%d" % round_)
                seen.append((conn.fileno(), await _recv_exactly(loop, conn, 5)))
                # a pending receive the peer answers later
                task = asyncio.ensure_future(loop.sock_recv(conn, 10))
                await asyncio.sleep(0)
                await loop.sock_sendall(client, b"late")
                seen.append((conn.fileno(), await asyncio.wait_for(task, 5)))
                conn.close()
        return seen

    seen = run_bounded(loop, main())
    assert [data for _, data in seen] == [
        b"ping%d" % i if k == 0 else b"late" for i in range(4) for k in range(2)
    ]
    assert len({fd for fd, _ in seen}) <= 2  # the number was indeed reused


def test_sock_recv_then_other_watchers_on_the_same_fd_like_stock(loop, listener):
    """After sock_recv, the fd serves add_reader, add_writer, a second
    socket object on a dup of it, and data arriving while nobody waits."""

    def scenario(lp):
        async def main():
            out = []
            client, conn, _ = await _connected_pair(lp, listener)
            with client, conn:
                await lp.sock_sendall(client, b"one")
                out.append(await _recv_exactly(lp, conn, 3))
                # data nobody asked for yet, across a few loop iterations
                await lp.sock_sendall(client, b"two")
                for _ in range(3):
                    await asyncio.sleep(0)
                out.append(await _recv_exactly(lp, conn, 3))
                # a writer on the same fd
                fut = lp.create_future()
                lp.add_writer(conn, lambda: fut.done() or fut.set_result("writable"))
                out.append(await fut)
                out.append(lp.remove_writer(conn))
                await lp.sock_sendall(client, b"three")
                out.append(await _recv_exactly(lp, conn, 5))
                # a plain reader on the same fd
                fut = lp.create_future()
                lp.add_reader(conn, lambda: fut.done() or fut.set_result(conn.recv(10)))
                await lp.sock_sendall(client, b"four")
                out.append(await fut)
                out.append(lp.remove_reader(conn))
                out.append(lp.remove_reader(conn))
                # another socket object for the same connection
                other = socket.socket(fileno=os.dup(conn.fileno()))
                with other:
                    other.setblocking(False)
                    await lp.sock_sendall(client, b"five")
                    out.append(await _recv_exactly(lp, other, 4))
                await lp.sock_sendall(client, b"six")
                out.append(await _recv_exactly(lp, conn, 3))
                client.shutdown(socket.SHUT_WR)
                out.append(await lp.sock_recv(conn, 10))
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[-1] == b""
    assert scenario(loop) == expected


def test_sock_recv_into_buffers_like_stock(loop, listener):
    """Read-only and odd buffers, data already there or not yet: same
    results and errors as stock."""

    def scenario(lp):
        async def main():
            out = []
            client, conn, _ = await _connected_pair(lp, listener)
            with client, conn:
                for buf in (b"read-only", "text", bytearray(0)):
                    out.append(await outcome_async(lp.sock_recv_into(conn, buf)))
                out.append(await outcome_async(lp.sock_recv(conn, 0)))
                out.append(await outcome_async(lp.sock_recv(conn, -1)))
                await lp.sock_sendall(client, b"abcdef")
                await asyncio.sleep(0.05)
                view = memoryview(bytearray(8))[2:6]
                out.append((await lp.sock_recv_into(conn, view), bytes(view)))
                big = bytearray(16)
                task = asyncio.ensure_future(lp.sock_recv_into(conn, big))
                await asyncio.sleep(0)
                out.append(await lp.sock_recv_into(conn, bytearray(0)))
                await lp.sock_sendall(client, b"later")
                out.append((await asyncio.wait_for(task, 5), bytes(big)))
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is TypeError
    assert scenario(loop) == expected


async def outcome_async(aw):
    try:
        return ("ok", await aw)
    except Exception as exc:  # noqa: BLE001 - compared with the stock loop's
        return (type(exc), str(exc))


def test_sock_recv_then_dup_and_close_no_spin_like_stock(loop):
    """A socket whose open file lives on elsewhere (dup, fork) and is then
    closed must not leave the loop busy or waking a later socket that
    reuses the number (goloop keeps sock_recv's registration between
    receives, edge-triggered so an orphan cannot spin)."""
    import time

    def scenario(lp):
        async def main():
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            task = asyncio.ensure_future(lp.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"hi")
            got = await task
            keep = a.dup()
            a.close()
            b.send(b"unread")  # readable, on the dup only
            t0 = time.process_time()
            await asyncio.sleep(0.3)
            busy = time.process_time() - t0 > 0.15
            c, d = socket.socketpair()
            calls = []
            lp.add_reader(c.fileno(), calls.append, 1)
            await asyncio.sleep(0.1)
            lp.remove_reader(c.fileno())
            for s in (keep, b, c, d):
                s.close()
            return got, busy, len(calls) > 3

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == (b"hi", False, False)
    assert scenario(loop) == expected


def test_write_after_connection_lost_never_reaches_a_reused_fd_like_stock(loop):
    """close() with buffered data, the peer drains, connection_lost runs and
    the fd number is reused: a later write() must not send on the new
    socket (it fails as in stock)."""

    def scenario(lp):
        async def main():
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            lost = lp.create_future()

            class P(asyncio.Protocol):
                def connection_lost(self, exc):
                    lost.set_result(exc)

            tr, _ = await lp.create_connection(P, sock=a)
            tr.write(b"x" * 4_000_000)
            tr.close()
            got = 0
            while not lost.done():
                got += len(await lp.sock_recv(b, 1 << 20))
            c, d = socket.socketpair()
            result = outcome(tr.write, b"SECRET")
            leaked = waiting_data(c, d)
            for s in (b, c, d):
                s.close()
            return got, result[0], leaked

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == 4_000_000 and expected[2] == []
    assert scenario(loop) == expected


def test_cancelled_sock_accept_leaves_listener_usable(loop, listener):
    async def main():
        task = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        client, conn, _ = await _connected_pair(loop, listener)
        client.close()
        conn.close()
        return "ok"

    assert run_bounded(loop, main()) == "ok"


class _Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.event = asyncio.Event()

    def data_received(self, data):
        self.data += data
        self.event.set()

    async def wait_for(self, expected):
        while bytes(self.data) != expected:
            self.event.clear()
            await self.event.wait()


# ---------------------------------------------------------------- blocking sockets


def _blocking_checks(lp):
    a, b = socket.socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        a.settimeout(None)
        udp.settimeout(None)
        calls = {
            "sock_recv": lambda: lp.sock_recv(a, 1),
            "sock_recv_into": lambda: lp.sock_recv_into(a, bytearray(1)),
            "sock_recvfrom": lambda: lp.sock_recvfrom(udp, 1),
            "sock_recvfrom_into": lambda: lp.sock_recvfrom_into(udp, bytearray(1)),
            "sock_sendall": lambda: lp.sock_sendall(a, b"x"),
            "sock_sendto": lambda: lp.sock_sendto(udp, b"x", udp.getsockname()),
            "sock_connect": lambda: lp.sock_connect(a, ("127.0.0.1", 1)),
            "sock_accept": lambda: lp.sock_accept(a),
            "sock_sendfile": lambda: lp.sock_sendfile(a, io.BytesIO(b"x")),
        }
        return {name: outcome(lambda c=call: run_bounded(lp, c())) for name, call in calls.items()}
    finally:
        a.close()
        b.close()
        udp.close()


def test_blocking_socket_rejected_in_debug_mode(loop):
    def scenario(lp):
        lp.set_debug(True)
        return _blocking_checks(lp)

    expected = with_loop(stock_factory, scenario)
    assert expected["sock_recv"] == (ValueError, "the socket must be non-blocking")
    assert scenario(loop) == expected


def test_blocking_socket_not_checked_without_debug_like_stock(loop):
    """Outside debug mode the stock loop does not check; the calls just work."""

    def scenario(lp):
        lp.set_debug(False)
        a, b = socket.socketpair()
        with a, b:
            return [
                outcome(lambda: run_bounded(lp, lp.sock_sendfile(a, io.BytesIO(b"xy")))),
                outcome(lambda: run_bounded(lp, lp.sock_sendall(a, b"z"))),
                outcome(lambda: run_bounded(lp, lp.sock_recv(b, 10))),
            ]

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == ("ok", 2)
    assert scenario(loop) == expected


def test_ssl_socket_rejected(loop):
    def scenario(lp):
        ctx = ssl.create_default_context()
        raw = socket.socket()
        sslsock = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        with sslsock:
            sslsock.setblocking(False)
            return [
                outcome(lambda c=c: run_bounded(lp, c()))
                for c in (
                    lambda: lp.sock_recv(sslsock, 1),
                    lambda: lp.sock_sendall(sslsock, b"x"),
                    lambda: lp.sock_connect(sslsock, ("127.0.0.1", 1)),
                )
            ]

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is TypeError
    assert scenario(loop) == expected


# ---------------------------------------------------------------- datagram sockets

DGRAM_KINDS = ("udp4", "udp6", "unixdgram")


@pytest.fixture(params=DGRAM_KINDS)
def dgram_pair(request, tmp_path):
    """Two bound non-blocking datagram sockets of one family."""
    kind = {"udp4": "tcp4", "udp6": "tcp6", "unixdgram": "unix"}[request.param]
    family, addr_a = bind_address(kind, tmp_path, "a.sock")
    _, addr_b = bind_address(kind, tmp_path, "b.sock")
    a = socket.socket(family, socket.SOCK_DGRAM)
    b = socket.socket(family, socket.SOCK_DGRAM)
    for sock, addr in ((a, addr_a), (b, addr_b)):
        sock.setblocking(False)
        sock.bind(addr)
    yield a, b
    a.close()
    b.close()


def test_sock_sendto_recvfrom(loop, dgram_pair):
    a, b = dgram_pair

    async def main():
        # pending receive first, then data
        pending = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0)
        assert not pending.done()
        assert await loop.sock_sendto(a, b"one", b.getsockname()) == 3
        assert await pending == (b"one", a.getsockname())
        # data already there (fast path)
        await loop.sock_sendto(a, bytearray(b"two"), b.getsockname())
        await loop.sock_sendto(a, memoryview(b"three"), b.getsockname())
        assert await loop.sock_recvfrom(b, 100) == (b"two", a.getsockname())
        assert await loop.sock_recvfrom(b, 100) == (b"three", a.getsockname())
        # truncated datagram: bufsize smaller than the datagram
        await loop.sock_sendto(b, b"0123456789", a.getsockname())
        assert await loop.sock_recvfrom(a, 4) == (b"0123", b.getsockname())

    run_bounded(loop, main())


def test_sock_recvfrom_into(loop, dgram_pair):
    a, b = dgram_pair

    async def main():
        buf = bytearray(32)
        pending = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf))
        await asyncio.sleep(0)
        assert not pending.done()
        await loop.sock_sendto(a, b"datagram", b.getsockname())
        assert await pending == (8, a.getsockname())
        assert buf[:8] == b"datagram"
        # nbytes limits the write into the buffer
        await loop.sock_sendto(a, b"ABCDEFGH", b.getsockname())
        assert await loop.sock_recvfrom_into(b, buf, 3) == (3, a.getsockname())
        return bytes(buf[:8])

    assert run_bounded(loop, main()) == b"ABCagram"


def test_sock_recvfrom_into_nbytes_too_large_like_stock(loop, dgram_pair):
    a, b = dgram_pair

    def scenario(lp):
        async def main():
            await lp.sock_sendto(a, b"xx", b.getsockname())
            try:
                return "ok", await lp.sock_recvfrom_into(b, bytearray(4), 10)
            except ValueError as exc:
                return ValueError, str(exc)
            finally:
                # drain, so the other loop's run sees an empty queue
                try:
                    b.recv(100)
                except BlockingIOError:
                    pass

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert scenario(loop) == expected


def test_cancelled_sock_recvfrom_leaves_socket_usable(loop, dgram_pair):
    a, b = dgram_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(b, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await loop.sock_sendto(a, b"z", b.getsockname())
        return await loop.sock_recvfrom(b, 10)

    assert run_bounded(loop, main()) == (b"z", a.getsockname())


# ---------------------------------------------------------------- sock_sendfile


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 11)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_sock_sendfile_whole_file(loop, listener, data_file):
    path, data = data_file

    async def main():
        client, conn, _ = await _connected_pair(loop, listener)
        with client, conn, open(path, "rb") as f:
            reader = asyncio.ensure_future(_recv_exactly(loop, conn, len(data)))
            sent = await loop.sock_sendfile(client, f)
            return sent, f.tell(), await reader

    sent, pos, received = run_bounded(loop, main())
    assert (sent, pos) == (len(data), len(data))
    assert received == data


def test_sock_sendfile_offset_count(loop, listener, data_file):
    path, data = data_file

    async def main():
        client, conn, _ = await _connected_pair(loop, listener)
        with client, conn, open(path, "rb") as f:
            reader = asyncio.ensure_future(_recv_exactly(loop, conn, len(data)))
            sent = await loop.sock_sendfile(client, f, 1000, 200_000)
            pos = f.tell()
            client.shutdown(socket.SHUT_WR)
            return sent, pos, await reader

    assert run_bounded(loop, main()) == (200_000, 201_000, data[1000:201_000])


def test_sock_sendfile_fallback_like_stock(loop, tmp_path):
    """A file object without a real fd: fallback=True sends, fallback=False raises."""
    payload = os.urandom(300_000)

    def scenario(lp):
        async def one(fallback):
            a, b = socket.socketpair()
            with a, b:
                a.setblocking(False)
                b.setblocking(False)
                src = io.BytesIO(payload)
                reader = asyncio.ensure_future(_recv_exactly(lp, b, len(payload)))
                try:
                    sent = await lp.sock_sendfile(a, src, 5, None, fallback=fallback)
                except Exception as exc:
                    reader.cancel()
                    return type(exc).__name__, str(exc)
                a.shutdown(socket.SHUT_WR)
                got = await reader
                return sent, src.tell(), got == payload[5:]

        return run_bounded(lp, one(True)), run_bounded(lp, one(False))

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (len(payload) - 5, len(payload), True)
    assert expected[1][0] == "SendfileNotAvailableError"
    assert scenario(loop) == expected


def test_sock_sendfile_bad_arguments_like_stock(loop, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")

    def scenario(lp):
        a, b = socket.socketpair()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with a, b, udp, open(path, "rb") as fb, open(path) as ft:
            for s in (a, udp):
                s.setblocking(False)
            cases = [
                (a, ft, 0, None),
                (udp, fb, 0, None),
                (a, fb, 0, "3"),
                (a, fb, 0, 0),
                (a, fb, 0, -1),
                (a, fb, "1", None),
                (a, fb, -1, None),
            ]
            return [outcome(lambda c=c: run_bounded(lp, lp.sock_sendfile(*c))) for c in cases]

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (ValueError, "file should be opened in binary mode")
    assert scenario(loop) == expected


# ---------------------------------------------------------------- name resolution

_GAI_CASES = [
    (("127.0.0.1", 80), {}),
    (("127.0.0.1", "80"), {"type": socket.SOCK_STREAM}),
    (("localhost", "http"), {"family": socket.AF_INET}),
    ((b"127.0.0.1", b"443"), {"proto": socket.IPPROTO_TCP}),
    (("127.0.0.1", None), {"type": socket.SOCK_DGRAM}),
    ((None, 0), {"flags": socket.AI_PASSIVE, "family": socket.AF_INET}),
    (("127.0.0.1", 8080), {"flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV}),
    (("localhost", 0), {"flags": socket.AI_CANONNAME}),
]
_GAI_CASES_V6 = [
    (("::1", 80), {}),
    (("::1", 80), {"family": socket.AF_INET6, "type": socket.SOCK_STREAM}),
    (("127.0.0.1", 80), {"family": socket.AF_INET6, "flags": socket.AI_V4MAPPED}),
]


@pytest.mark.parametrize(
    "args,kwargs",
    _GAI_CASES + _GAI_CASES_V6,
    ids=lambda v: repr(v) if isinstance(v, tuple) else None,
)
def test_getaddrinfo_matches_socket_module(loop, args, kwargs):
    if ":" in str(args[0]) or kwargs.get("family") == socket.AF_INET6:
        if not ipv6_available():
            pytest.skip("IPv6 unavailable on loopback")
    expected = socket.getaddrinfo(*args, **kwargs)
    assert run_bounded(loop, loop.getaddrinfo(*args, **kwargs)) == expected


_GNI_CASES = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("::1", 80, 0, 0), socket.NI_NUMERICHOST),
]


@pytest.mark.parametrize("sockaddr,flags", _GNI_CASES)
def test_getnameinfo_matches_socket_module(loop, sockaddr, flags):
    if ":" in sockaddr[0] and not ipv6_available():
        pytest.skip("IPv6 unavailable on loopback")
    expected = socket.getnameinfo(sockaddr, flags)
    assert run_bounded(loop, loop.getnameinfo(sockaddr, flags)) == expected


def test_resolution_errors_like_stock(loop):
    numeric = socket.AI_NUMERICHOST

    def scenario(lp):
        calls = [
            # bad host (no DNS: numeric-only lookup)
            lambda: lp.getaddrinfo("not-an-address", 80, flags=numeric),
            lambda: lp.getaddrinfo("999.1.1.1", 80, flags=numeric),
            # bad port / service
            lambda: lp.getaddrinfo("127.0.0.1", "no-such-service-xyz"),
            lambda: lp.getaddrinfo("127.0.0.1", 70000),
            lambda: lp.getaddrinfo("127.0.0.1", -1),
            lambda: lp.getaddrinfo("127.0.0.1", 1.5),
            # bad family / type / flags
            lambda: lp.getaddrinfo("127.0.0.1", 80, family=12345),
            lambda: lp.getaddrinfo("127.0.0.1", 80, family=socket.AF_INET6, flags=numeric),
            lambda: lp.getaddrinfo("127.0.0.1", 80, type=12345),
            lambda: lp.getaddrinfo("127.0.0.1", 80, family="inet"),
            lambda: lp.getaddrinfo(12345, 80),
            # getnameinfo
            lambda: lp.getnameinfo(("127.0.0.1",), 0),
            lambda: lp.getnameinfo(("127.0.0.1", 80), "x"),
            lambda: lp.getnameinfo("127.0.0.1", 0),
            lambda: lp.getnameinfo(("not-an-address", 80), socket.NI_NUMERICHOST),
        ]
        return [outcome(functools.partial(run_bounded, lp, c())) for c in calls]

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is socket.gaierror
    assert scenario(loop) == expected
