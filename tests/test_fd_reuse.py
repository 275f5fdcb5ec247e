"""Registrations that outlive their socket: closed sockets and reused fds.

A program may close a socket while the loop still watches its fd (a
pending ``sock_recv``, a reader it forgot to remove), and the kernel hands
the number to the next socket at once. Data must never reach the wrong
socket: whatever keeps an fd across a wait must find out that its socket
no longer owns that fd. Each scenario runs on the stock loop (the oracle)
and on goloop, which must agree with it; debug mode (asyncio's own
``_add_reader`` & co. through goloop's selector view) is covered too.
"""

import asyncio
import os
import socket

import pytest
from loop_support import run_bounded, stock_factory, waiting_data, with_loop


def pair_on_fd(fd):
    """A connected socket pair whose first socket has file descriptor fd
    (free at the call): what the kernel does when the next socket is made
    right after a close, made certain."""
    a, b = socket.socketpair()
    if a.fileno() != fd:
        os.dup2(a.fileno(), fd)
        a.close()
        a = socket.socket(fileno=fd)
    a.setblocking(False)
    return a, b


def close_under_a_dup(a, a_peer):
    """Close a while a dup keeps its file, and so its registration, alive,
    give its fd to a new socket pair, and send to both sockets' peers:
    (the new socket, its peer, the dup's fd)."""
    fd = a.fileno()
    keep = os.dup(fd)
    a.close()
    b, b_peer = pair_on_fd(fd)
    b_peer.send(b"for b")
    a_peer.send(b"for a")  # an event for fd, from a's file
    return b, b_peer, keep


def outcome_of(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as exc:  # the type and errno are the outcome
        return type(exc).__name__, getattr(exc, "errno", None)


def run_both(loop, scenario, debug=False):
    """(stock's result, the loop under test's result) for scenario(lp)."""

    def run(lp):
        lp.set_debug(debug)
        return scenario(lp)

    return with_loop(stock_factory, run), run(loop)


@pytest.mark.parametrize("debug", [False, True])
def test_sock_recv_on_closed_socket_keeps_off_the_fds_next_owner(loop, debug):
    """sock_recv(a) waits, a is closed, the next socket gets a's fd and a
    writer is added for it: stock's interest change fails (the kernel
    dropped a's registration at close) and the new socket keeps its data;
    goloop re-armed the registration and the old receive took the bytes."""

    def scenario(lp):
        async def main():
            a, a_peer = socket.socketpair()
            a.setblocking(False)
            fd = a.fileno()
            recv = asyncio.ensure_future(lp.sock_recv(a, 100))
            await asyncio.sleep(0)
            a.close()
            b, b_peer = pair_on_fd(fd)
            added = outcome_of(lp.add_writer, b, lambda: None)
            b_peer.send(b"for b")
            await asyncio.sleep(0.05)
            removed = lp.remove_writer(b)
            state = recv.done()
            recv.cancel()
            out = (added, removed, state, waiting_data(b))
            for s in (a_peer, b, b_peer):
                s.close()
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario, debug)
    assert expected == (("FileNotFoundError", 2), False, False, [b"for b"])
    assert got == expected


def test_sock_recv_on_closed_socket_fails_like_its_recv(loop):
    """The registration of a closed socket survives while another fd (a
    dup) keeps the file open, so its events still come, under a number the
    next socket may own: stock's wait calls ``a.recv`` and fails with EBADF;
    goloop's received from the fd number, the new owner's data."""

    def scenario(lp):
        async def main():
            a, a_peer = socket.socketpair()
            a.setblocking(False)
            recv = asyncio.ensure_future(lp.sock_recv(a, 100))
            await asyncio.sleep(0)
            b, b_peer, keep = close_under_a_dup(a, a_peer)
            try:
                await asyncio.wait_for(recv, 1)
                result = "received"
            except OSError as exc:
                result = (type(exc).__name__, exc.errno)
            out = (result, waiting_data(b))
            for s in (a_peer, b, b_peer):
                s.close()
            os.close(keep)
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario)
    assert expected == (("OSError", 9), [b"for b"])
    assert got == expected


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("direction", ["reader", "writer"])
def test_remove_after_close_finds_the_socket(loop, debug, direction):
    """remove_reader(sock)/remove_writer(sock) after the program closed
    sock: stock finds the registration by the object itself (selectors'
    _fileobj_lookup) and returns True; goloop raised ValueError and left
    the fd registered for the next socket with that number."""

    def scenario(lp):
        add = getattr(lp, f"add_{direction}")
        remove = getattr(lp, f"remove_{direction}")

        async def main():
            a, a_peer = socket.socketpair()
            a.setblocking(False)
            fd = a.fileno()
            stale = []
            add(a, stale.append, "a")
            a.close()
            removed = outcome_of(remove, a)
            again = outcome_of(remove, a)
            b, b_peer = pair_on_fd(fd)
            fired = lp.create_future()
            add(b, lambda: fired.done() or fired.set_result("b"))
            b_peer.send(b"x")
            who = await asyncio.wait_for(fired, 1)
            remove(b)
            out = (removed, again, who, stale, fd in lp._selector.get_map())
            for s in (a_peer, b, b_peer):
                s.close()
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario, debug)
    assert expected == (("ok", True), ("ValueError", None), "b", [], False)
    assert got == expected


@pytest.mark.parametrize("debug", [False, True])
def test_remove_after_close_of_fd_registration(loop, debug):
    """Registered by number, the closed socket cannot be found again: stock
    raises ValueError from remove_reader(sock); remove_reader(fd) works."""

    def scenario(lp):
        async def main():
            a, a_peer = socket.socketpair()
            fd = a.fileno()
            lp.add_reader(fd, lambda: None)
            a.close()
            out = (outcome_of(lp.remove_reader, a), outcome_of(lp.remove_reader, fd))
            a_peer.close()
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario, debug)
    assert expected == (("ValueError", None), ("ok", True))
    assert got == expected


@pytest.mark.parametrize("debug", [False, True])
def test_selector_key_of_closed_socket(loop, debug):
    """loop._selector.get_key(sock) of a registered, since closed socket
    names the registered object and its old fd, as selectors do."""

    def scenario(lp):
        a, a_peer = socket.socketpair()
        fd = a.fileno()
        lp.add_reader(a, lambda: None)
        a.close()
        key = lp._selector.get_key(a)
        out = (key.fileobj is a, key.fd == fd, key.events)
        lp.remove_reader(a)
        a_peer.close()
        return out

    expected, got = run_both(loop, scenario, debug)
    assert expected == (True, True, 1)
    assert got == expected


@pytest.mark.parametrize("debug", [False, True])
def test_interest_change_on_reused_fd_drops_the_registration(loop, debug):
    """A reader of a closed socket, the fd reused, then a writer added and
    removed for the new socket: stock's modify fails and unregisters the
    fd (the stale reader is forgotten, never called); goloop re-armed it
    for the new socket's data."""

    def scenario(lp):
        async def main():
            a, a_peer = socket.socketpair()
            fd = a.fileno()
            stale = []
            lp.add_reader(fd, stale.append, "a")
            a.close()
            b, b_peer = pair_on_fd(fd)
            first = outcome_of(lp.add_writer, fd, lambda: None)
            second = outcome_of(lp.add_writer, fd, lambda: None)
            b_peer.send(b"for b")
            await asyncio.sleep(0.05)
            out = (first, second, stale, outcome_of(lp.remove_reader, fd), waiting_data(b))
            lp.remove_writer(fd)
            for s in (a_peer, b, b_peer):
                s.close()
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario, debug)
    assert expected == (("FileNotFoundError", 2), ("ok", None), [], ("ok", False), [b"for b"])
    assert got == expected


class _Plain(asyncio.Protocol):
    """Records the data and how the connection ended."""

    def __init__(self, lost):
        self.data, self.lost = [], lost

    def data_received(self, data):
        self.data.append(data)

    def connection_lost(self, exc):
        self.lost.set_result(type(exc).__name__ if exc else None)


class _Buffered(_Plain, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        self.buf = bytearray(100)
        return self.buf

    def buffer_updated(self, nbytes):
        self.data.append(bytes(self.buf[:nbytes]))


@pytest.mark.parametrize("protocol", [_Plain, _Buffered])
def test_stream_transport_of_closed_socket_reads_nothing_of_the_next(loop, protocol):
    """The program closes a live transport's socket (a dup keeps its
    registration alive) and the next socket gets the fd: the transport's
    read fails with EBADF as stock's self._sock.recv does, and the new
    socket keeps its data."""

    def scenario(lp):
        async def main():
            a, a_peer = socket.socketpair()
            lost = lp.create_future()
            proto = protocol(lost)
            tr, _ = await lp.connect_accepted_socket(lambda: proto, a)
            await asyncio.sleep(0)
            b, b_peer, keep = close_under_a_dup(a, a_peer)
            out = (await asyncio.wait_for(lost, 1), proto.data, waiting_data(b))
            tr.close()
            for s in (a_peer, b, b_peer):
                s.close()
            os.close(keep)
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario)
    assert expected == ("OSError", [], [b"for b"])
    assert got == expected


def test_datagram_transport_of_closed_socket_reads_nothing_of_the_next(loop):
    """The same for a datagram endpoint: the read fails as stock's
    self._sock.recvfrom does (error_received), the new socket keeps its
    datagram."""

    def scenario(lp):
        async def main():
            a, a_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            errors = lp.create_future()

            class Proto(asyncio.DatagramProtocol):
                got = []

                def datagram_received(self, data, addr):
                    self.got.append(data)

                def error_received(self, exc):
                    errors.done() or errors.set_result(type(exc).__name__)

            tr, proto = await lp.create_datagram_endpoint(Proto, sock=a)
            await asyncio.sleep(0)
            b, b_peer, keep = close_under_a_dup(a, a_peer)
            out = (await asyncio.wait_for(errors, 1), proto.got, waiting_data(b))
            tr.abort()
            for s in (a_peer, b, b_peer):
                s.close()
            os.close(keep)
            return out

        return run_bounded(lp, main())

    expected, got = run_both(loop, scenario)
    assert expected == ("OSError", [], [b"for b"])
    assert got == expected


def _listening():
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(8)
    return lsn


@pytest.mark.parametrize("then", ["sock_recv", "sock_sendall", "transport"])
def test_after_sock_connect_the_socket_reads_and_writes_like_stock(loop, then):
    """What follows a completed connect on the same socket (goloop leaves
    the connect's registration parked for it) gets its events: a
    sock_recv, a sock_sendall, a transport made on the socket."""

    def scenario(lp):
        lsn = _listening()

        async def main():
            sock = socket.socket()
            sock.setblocking(False)
            await lp.sock_connect(sock, lsn.getsockname())
            conn, _ = lsn.accept()
            with conn, sock:
                if then == "sock_recv":
                    lp.call_later(0.02, conn.send, b"late")
                    return await lp.sock_recv(sock, 100)
                if then == "sock_sendall":
                    await lp.sock_sendall(sock, b"out")
                    return waiting_data(conn)
                got = []
                done = lp.create_future()

                class Proto(asyncio.Protocol):
                    def data_received(self, data):
                        got.append(data)
                        done.set_result(None)

                transport, _ = await lp.create_connection(Proto, sock=sock)
                conn.send(b"in")
                await asyncio.wait_for(done, 5)
                transport.close()
                return got

        try:
            return run_bounded(lp, main())
        finally:
            lsn.close()

    expected, got = run_both(loop, scenario)
    assert expected == {"sock_recv": b"late", "sock_sendall": [b"out"], "transport": [b"in"]}[then]
    assert got == expected


def test_connected_socket_closed_then_fd_reused_by_a_transport(loop):
    """A socket whose connect completed (its registration parked) is
    closed, and the fd number goes to a new connection's socket: the new
    transport reads its own data and nothing of the closed socket."""

    def scenario(lp):
        lsn = _listening()

        async def main():
            old = socket.socket()
            old.setblocking(False)
            await lp.sock_connect(old, lsn.getsockname())
            old_conn, _ = lsn.accept()
            fd = old.fileno()
            old.close()
            new, new_peer = pair_on_fd(fd)
            got = []
            done = lp.create_future()

            class Proto(asyncio.Protocol):
                def data_received(self, data):
                    got.append(data)
                    if not done.done():
                        done.set_result(None)

            transport, _ = await lp.create_connection(Proto, sock=new)
            new_peer.send(b"for new")
            await asyncio.wait_for(done, 5)
            await asyncio.sleep(0.02)
            transport.close()
            new_peer.close()
            old_conn.close()
            return got

        try:
            return run_bounded(lp, main())
        finally:
            lsn.close()

    expected, got = run_both(loop, scenario)
    assert expected == [b"for new"]
    assert got == expected
