"""loop.sock_* waits (pybridge/sockops.c): each call's EAGAIN wait,
cancellation mid-wait, a peer that resets, and a socket closed during the
wait whose fd number a new socket takes, compared with the stock loop.

Every scenario runs on the stock loop and on goloop (the `loop` fixture);
where the outcome is not fixed by the test itself it is computed on the
stock loop first. On goloop the tests also check that the wait is the
native one (a SockOp in the fd table), so a fallback to asyncio's own
code would not pass unnoticed.
"""

import array
import asyncio
import os
import socket
import struct

import pytest
from loop_support import outcome, run_bounded, stock_factory, with_loop

import goloop


def _is_goloop(lp):
    return isinstance(lp, goloop.Loop)


def _assert_native_wait(lp, fd, write):
    """On goloop, fd's reader/writer is sockops.c's op, not a Handle (in
    debug mode goloop takes asyncio's own sock_* code, as stock)."""
    if not _is_goloop(lp) or lp.get_debug():
        return
    _, _, reader, writer, _ = lp._fd_registration(fd)
    entry = writer if write else reader
    assert type(entry).__name__ == "FdWatch", entry
    assert type(entry._callback).__name__ == "SockOp", entry._callback


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
    return a, b


def _listener():
    lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsn.setblocking(False)
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(8)
    return lsn


def _fill(sock):
    """Send until the socket's buffers are full; the byte count."""
    total = 0
    chunk = b"f" * 65536
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def _drain(sock):
    total = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)


def _rst(sock):
    """Close with an RST (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------- reads that wait


READS = ("recv", "recv_into", "recvfrom", "recvfrom_into")


def _read_call(lp, name, sock):
    if name == "recv":
        return lp.sock_recv(sock, 100)
    if name == "recv_into":
        buf = bytearray(100)
        return _with_buf(lp.sock_recv_into(sock, buf), buf)
    if name == "recvfrom":
        return lp.sock_recvfrom(sock, 100)
    buf = bytearray(100)
    return _with_buf(lp.sock_recvfrom_into(sock, buf), buf)


async def _with_buf(aw, buf):
    result = await aw
    n = result if isinstance(result, int) else result[0]
    return result, bytes(buf[:n])


def _read_socks(name):
    """(the socket read, its peer, the peer's address as recvfrom shows it)."""
    if name.startswith("recvfrom"):
        a, b = _udp_pair()
        return a, b, b.getsockname()
    a, b = _pair()
    return a, b, None


def _send_to(peer, sock, data):
    if peer.type == socket.SOCK_DGRAM:
        peer.sendto(data, sock.getsockname())
    else:
        peer.send(data)


@pytest.mark.parametrize("name", READS)
def test_read_waits_then_gets_data(loop, name):
    """Nothing there: the call waits (natively on goloop), then returns the
    data sent later, as stock."""

    def scenario(lp):
        async def main():
            sock, peer, _ = _read_socks(name)
            with sock, peer:
                task = asyncio.ensure_future(_read_call(lp, name, sock))
                await asyncio.sleep(0)
                assert not task.done()
                _assert_native_wait(lp, sock.fileno(), write=False)
                _send_to(peer, sock, b"hello")
                first = await task
                # data already there: answered without a wait
                _send_to(peer, sock, b"again")
                await asyncio.sleep(0.01)
                second = await _read_call(lp, name, sock)
                return _addr_free(first, peer), _addr_free(second, peer)

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert scenario(loop) == expected


def _addr_free(result, peer):
    """Results with the peer's (ephemeral) address replaced by a marker."""
    if isinstance(result, tuple):
        return tuple(
            "<peer>" if peer.type == socket.SOCK_DGRAM and x == peer.getsockname() else x
            for x in (_addr_free(r, peer) if isinstance(r, tuple) else r for r in result)
        )
    return result


@pytest.mark.parametrize("name", READS)
def test_cancelled_read_takes_no_data(loop, name):
    """A read cancelled mid-wait stops watching the fd: data that comes
    after the cancel stays in the socket for the next reader."""

    async def main():
        sock, peer, _ = _read_socks(name)
        with sock, peer:
            task = asyncio.ensure_future(_read_call(loop, name, sock))
            await asyncio.sleep(0)
            task.cancel()
            _send_to(peer, sock, b"kept")  # ready in the same iteration as the cancel
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.01)
            assert loop._selector.get_map().get(sock.fileno()) is None
            return sock.recv(100)

    assert run_bounded(loop, main()) == b"kept"


@pytest.mark.parametrize("name", ("recv", "recv_into"))
def test_read_peer_reset_like_stock(loop, name):
    """The peer resets the connection during the wait: the same error."""

    def scenario(lp):
        async def main():
            lsn = _listener()
            with lsn:
                client = socket.socket()
                client.setblocking(False)
                accept = asyncio.ensure_future(lp.sock_accept(lsn))
                await lp.sock_connect(client, lsn.getsockname())
                conn, _ = await accept
                with conn:
                    task = asyncio.ensure_future(_read_call(lp, name, conn))
                    await asyncio.sleep(0)
                    client.send(b"x")
                    got = await task
                    task = asyncio.ensure_future(_read_call(lp, name, conn))
                    await asyncio.sleep(0)
                    _rst(client)
                    try:
                        return got, await task
                    except OSError as exc:
                        return got, type(exc), exc.errno

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[1] is ConnectionResetError
    assert scenario(loop) == expected


@pytest.mark.parametrize("name", READS + ("accept",))
def test_read_socket_closed_and_fd_reused_during_wait_like_stock(loop, name):
    """The waiting socket is closed while a dup keeps its open file (and
    epoll registration) alive, and a new socket takes its fd number. When
    the old file becomes ready the wait fails with EBADF (what sock.recv
    says once closed) and the new socket's data is not taken."""

    def scenario(lp):
        async def main():
            if name == "accept":
                sock = _listener()
                peer = None
            else:
                sock, peer, _ = _read_socks(name)
            addr = sock.getsockname()
            call = lp.sock_accept(sock) if name == "accept" else _read_call(lp, name, sock)
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0)
            fd = sock.fileno()
            keep = sock.dup()
            sock.close()
            # the next socket made takes the number
            new, new_peer = _pair()
            if new.fileno() != fd:
                raise AssertionError("fd number not reused")
            new_peer.send(b"for the new socket")
            await asyncio.sleep(0.01)
            # the old open file becomes ready
            if name == "accept":
                client = socket.socket()
                client.setblocking(False)
                try:
                    client.connect(addr)
                except BlockingIOError:
                    pass
            else:
                client = None
                _send_to(peer, keep, b"for the old socket")
            try:
                result = ("ok", await asyncio.wait_for(task, 0.5))
            except TimeoutError:
                result = "still waiting"
            except OSError as exc:
                result = (type(exc), exc.errno)
            left = new.recv(100)
            for s in (keep, new, new_peer, peer, client):
                if s is not None:
                    s.close()
            return result, left

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == ((OSError, 9), b"for the new socket")
    assert scenario(loop) == expected


# ------------------------------------------------------------- sock_sendall


def test_sendall_waits_until_all_sent(loop):
    """Buffers full: the rest is sent as the peer reads, all in order."""

    async def main():
        a, b = _pair()
        with a, b:
            data = os.urandom(4 << 20)
            task = asyncio.ensure_future(loop.sock_sendall(a, data))
            await asyncio.sleep(0)
            assert not task.done()
            _assert_native_wait(loop, a.fileno(), write=True)
            got = bytearray()
            while len(got) < len(data):
                got += await loop.sock_recv(b, 1 << 20)
            assert await task is None
            return bytes(got) == data

    assert run_bounded(loop, main()) is True


def test_cancelled_sendall_sends_nothing_more_like_stock(loop):
    """sendall cancelled mid-wait: what was sent stays sent, nothing more
    is sent after the cancel, and the data's buffer is released (a
    bytearray can be resized again) as stock."""

    def scenario(lp):
        async def main():
            a, b = _pair()
            with a, b:
                filled = _fill(a)
                data = bytearray(b"d" * 100000)
                task = asyncio.ensure_future(lp.sock_sendall(a, data))
                await asyncio.sleep(0)
                resize_during = outcome(data.extend, b"x")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                got = _drain(b)
                for _ in range(5):  # writable now: a live watch would send
                    await asyncio.sleep(0.01)
                    got += _drain(b)
                resize_after = outcome(data.extend, b"x")
                return got == filled, resize_during[0], resize_after

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == (True, BufferError, ("ok", None))
    assert scenario(loop) == expected


def test_cancelled_sendall_keeps_partial_progress(loop):
    """Cancelled after part of the data went out: the peer has exactly a
    prefix of the data (stock: no way to know how much, but never bytes
    out of order), and the socket stays usable."""

    async def main():
        a, b = _pair()
        with a, b:
            data = bytes(range(256)) * 20000
            task = asyncio.ensure_future(loop.sock_sendall(a, data))
            await asyncio.sleep(0)
            got = bytearray()
            got += b.recv(100000)  # make room: the wait sends more
            for _ in range(3):
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while True:
                try:
                    chunk = b.recv(1 << 20)
                except BlockingIOError:
                    break
                got += chunk
            assert 100000 < len(got) < len(data)
            assert bytes(got) == data[: len(got)]
            await loop.sock_sendall(a, b"tail")
            return await loop.sock_recv(b, 10)

    assert run_bounded(loop, main()) == b"tail"


def test_sendall_peer_reset_like_stock(loop):
    def scenario(lp):
        async def main():
            lsn = _listener()
            with lsn:
                client = socket.socket()
                client.setblocking(False)
                accept = asyncio.ensure_future(lp.sock_accept(lsn))
                await lp.sock_connect(client, lsn.getsockname())
                conn, _ = await accept
                with client:
                    task = asyncio.ensure_future(lp.sock_sendall(client, b"z" * (16 << 20)))
                    await asyncio.sleep(0.01)
                    assert not task.done()
                    _rst(conn)
                    try:
                        return await task
                    except OSError as exc:
                        return type(exc), exc.errno

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] in (ConnectionResetError, BrokenPipeError)
    assert scenario(loop) == expected


def test_sendall_socket_closed_and_fd_reused_during_wait_like_stock(loop):
    """The sender is closed mid-wait (a dup keeps its file), a new socket
    takes its number; when the old file turns writable the send fails with
    EBADF and the new socket's peer receives nothing."""

    def scenario(lp):
        async def main():
            a, b = _pair()
            _fill(a)
            task = asyncio.ensure_future(lp.sock_sendall(a, b"s" * 100000))
            await asyncio.sleep(0)
            fd = a.fileno()
            keep = a.dup()
            a.close()
            new, new_peer = _pair()
            assert new.fileno() == fd
            _drain(b)  # the old file turns writable
            try:
                result = ("ok", await asyncio.wait_for(task, 0.5))
            except TimeoutError:
                result = "still waiting"
            except OSError as exc:
                result = (type(exc), exc.errno)
            try:
                leaked = new_peer.recv(100)
            except BlockingIOError:
                leaked = b""
            for s in (keep, b, new, new_peer):
                s.close()
            return result, leaked

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == ((OSError, 9), b"")
    assert scenario(loop) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"abc",
        bytearray(b"abc"),
        memoryview(b"xabcx")[1:4],
        memoryview(b"abcd")[::2],
        array.array("B", b"abc"),
        "text",
        5,
        [1, 2],
    ],
    ids=["empty", "bytes", "bytearray", "memoryview", "strided", "array", "str", "int", "list"],
)
def test_sendall_data_types_like_stock(loop, data):
    def scenario(lp):
        async def main():
            a, b = _pair()
            with a, b:
                try:
                    r = ("ok", await lp.sock_sendall(a, data))
                except Exception as exc:  # noqa: BLE001 - compared with stock
                    r = (type(exc), str(exc))
                await asyncio.sleep(0.01)
                try:
                    return r, b.recv(100)
                except BlockingIOError:
                    return r, None

        return run_bounded(lp, main())

    assert scenario(loop) == with_loop(stock_factory, scenario)


# ------------------------------------------------------------- sock_sendto


def test_sendto_waits_when_buffer_full_like_stock(loop):
    """A full send queue (a Unix datagram peer that does not read): the
    datagram waits (natively on goloop) and goes out once the peer reads."""
    expected = with_loop(stock_factory, _sendto_full)
    assert expected == (True, 4, b"last")
    assert _sendto_full(loop) == expected


def _sendto_full(lp):
    """sock_sendto on a Unix datagram socket whose named peer's queue is full."""
    import tempfile

    async def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.sock")
            r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            with r, s:
                r.bind(path)
                r.setblocking(False)
                s.setblocking(False)
                n = 0
                while True:
                    try:
                        s.sendto(b"q" * 1000, path)
                        n += 1
                    except BlockingIOError:
                        break
                task = asyncio.ensure_future(lp.sock_sendto(s, b"last", path))
                await asyncio.sleep(0)
                waited = not task.done()
                if waited:
                    _assert_native_wait(lp, s.fileno(), write=True)
                got = []
                while len(got) <= n:
                    got.append(await lp.sock_recv(r, 2000))
                return waited, await task, got[-1]

    return run_bounded(lp, main())


def test_sendto_errors_like_stock(loop):
    def scenario(lp):
        async def main():
            a, b = _udp_pair()
            with a, b:
                out = []
                for addr in (("127.0.0.1",), "nope", ("no.such.host.invalid", 1), None):
                    try:
                        out.append(("ok", await lp.sock_sendto(a, b"x", addr)))
                    except Exception as exc:  # noqa: BLE001 - compared with stock
                        out.append(type(exc))
                return out

        return run_bounded(lp, main())

    assert scenario(loop) == with_loop(stock_factory, scenario)


def test_cancelled_sendto_sends_nothing(loop):
    async def main():
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.sock")
            r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            with r, s:
                r.bind(path)
                r.setblocking(False)
                s.setblocking(False)
                n = 0
                while True:
                    try:
                        s.sendto(b"q", path)
                        n += 1
                    except BlockingIOError:
                        break
                task = asyncio.ensure_future(loop.sock_sendto(s, b"cancelled", path))
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                got = []
                while True:
                    try:
                        got.append(r.recv(100))
                    except BlockingIOError:
                        break
                    await asyncio.sleep(0)
                await asyncio.sleep(0.01)
                got += [d for d in iter(lambda: _recv_or_none(r), None)]
                return len(got) == n and b"cancelled" not in got

    assert run_bounded(loop, main()) is True


def _recv_or_none(sock):
    try:
        return sock.recv(100)
    except BlockingIOError:
        return None


# ------------------------------------------------------------- sock_connect / sock_accept


def test_accept_waits_and_conn_like_stock(loop):
    """A pending accept, then a connection: the accepted socket is set up
    as sock.accept() + setblocking(False) leave it."""

    def scenario(lp):
        async def main():
            lsn = _listener()
            with lsn:
                task = asyncio.ensure_future(lp.sock_accept(lsn))
                await asyncio.sleep(0)
                _assert_native_wait(lp, lsn.fileno(), write=False)
                client = socket.socket()
                client.setblocking(False)
                with client:
                    await lp.sock_connect(client, lsn.getsockname())
                    conn, addr = await task
                    with conn:
                        return (
                            type(conn),
                            conn.family,
                            conn.type,
                            conn.proto,
                            conn.gettimeout(),
                            conn.getblocking(),
                            os.get_blocking(conn.fileno()),
                            conn.get_inheritable(),
                            addr == client.getsockname(),
                        )

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[-1] is True
    assert scenario(loop) == expected


def test_accept_errors_like_stock(loop):
    def scenario(lp):
        async def main():
            s = socket.socket()  # not listening
            s.setblocking(False)
            with s:
                try:
                    return await lp.sock_accept(s)
                except OSError as exc:
                    return type(exc), exc.errno

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is OSError
    assert scenario(loop) == expected


def test_connect_refused_like_stock(loop):
    def scenario(lp):
        async def main():
            lsn = _listener()
            addr = lsn.getsockname()
            lsn.close()  # nobody listens there now
            s = socket.socket()
            s.setblocking(False)
            with s:
                try:
                    return await lp.sock_connect(s, addr)
                except OSError as exc:
                    return type(exc), exc.errno, str(exc).replace(str(addr[1]), "<port>")

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is ConnectionRefusedError
    assert scenario(loop) == expected


def test_connect_errors_like_stock(loop):
    def scenario(lp):
        async def main():
            out = []
            for family, addr in (
                (socket.AF_INET, ("127.0.0.1",)),
                (socket.AF_INET, "x"),
                (socket.AF_UNIX, "/nonexistent/sock"),
                (socket.AF_INET, ("no.such.host.invalid", 80)),
            ):
                s = socket.socket(family)
                s.setblocking(False)
                with s:
                    try:
                        out.append(("ok", await lp.sock_connect(s, addr)))
                    except Exception as exc:  # noqa: BLE001 - compared with stock
                        out.append((type(exc), getattr(exc, "errno", None)))
            return out

        return run_bounded(lp, main())

    assert scenario(loop) == with_loop(stock_factory, scenario)


def test_cancelled_connect_and_accept_stop_watching(loop):
    async def main():
        lsn = _listener()
        with lsn:
            task = asyncio.ensure_future(loop.sock_accept(lsn))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            client = socket.socket()
            client.setblocking(False)
            with client:
                await loop.sock_connect(client, lsn.getsockname())
                await asyncio.sleep(0.01)
                # the cancelled accept did not take the connection
                conn, _ = lsn.accept()
                conn.close()
            # a connect that waits (a listener whose queue is full takes no
            # SYN), cancelled: its writer is removed
            assert loop._selector.get_map().get(lsn.fileno()) is None
        return "ok"

    assert run_bounded(loop, main()) == "ok"


def test_connect_socket_closed_and_fd_reused_during_wait(loop):
    """A connect in progress whose socket is closed (a dup keeps the
    file) while a new socket takes the number: the new socket's writability
    never resolves the old connect."""

    def scenario(lp):
        async def main():
            lsn = socket.socket()
            lsn.bind(("127.0.0.1", 0))
            lsn.listen(0)
            fillers = []
            # fill the accept queue so that connects stay in progress
            for _ in range(8):
                f = socket.socket()
                f.setblocking(False)
                try:
                    f.connect(lsn.getsockname())
                except BlockingIOError:
                    pass
                fillers.append(f)
            s = socket.socket()
            s.setblocking(False)
            task = asyncio.ensure_future(lp.sock_connect(s, lsn.getsockname()))
            await asyncio.sleep(0.05)
            if task.done():
                result = ("done early", outcome(task.result))
                for f in fillers + [s, lsn]:
                    f.close()
                return result
            fd = s.fileno()
            keep = s.dup()
            s.close()
            new, new_peer = _pair()
            assert new.fileno() == fd
            try:
                result = ("ok", await asyncio.wait_for(task, 0.3))
            except TimeoutError:
                result = "still waiting"
            except OSError as exc:
                result = (type(exc), exc.errno)
            for f in fillers + [keep, new, new_peer, lsn]:
                f.close()
            return result

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert scenario(loop) == expected
