"""What frameworks' test suites do to loops, transports and sockets, pinned
against the stock loop: socket subclasses with their own I/O methods,
instance attributes and patches on transports, a patched or overridden
loop time(), and asyncio's borrowed methods wherever the running patch
release defines them."""

import asyncio
import inspect
import socket
import sys
import threading
import time
from asyncio import selector_events
from unittest import mock

import pytest
from loop_support import HANG_TIMEOUT, run_bounded, stock_factory, with_loop

import goloop
from goloop import stream

PY312 = sys.version_info >= (3, 12)


class Recorder(socket.socket):
    """A socket.socket subclass whose I/O methods log their calls."""

    __slots__ = ("calls",)

    def _log(self, name):
        self.calls.append(name)

    def recv(self, *args):
        self._log("recv")
        return super().recv(*args)

    def recv_into(self, *args):
        self._log("recv_into")
        return super().recv_into(*args)

    def send(self, *args):
        self._log("send")
        return super().send(*args)

    def sendmsg(self, *args):
        self._log("sendmsg")
        return super().sendmsg(*args)

    def recvfrom(self, *args):
        self._log("recvfrom")
        return super().recvfrom(*args)

    def sendto(self, *args):
        self._log("sendto")
        return super().sendto(*args)


class Plain(socket.socket):
    """A subclass that replaces none of socket.socket's methods."""


def adopt(cls, sock):
    """sock's fd as a non-blocking cls object (sock is detached)."""
    new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
    new.setblocking(False)
    if cls is Recorder:
        new.calls = []
    return new


class Collect(asyncio.Protocol):
    def __init__(self, lp, want):
        self.data = b""
        self.want = want
        self.done = lp.create_future()

    def data_received(self, data):
        self.data += data
        if len(self.data) >= self.want and not self.done.done():
            self.done.set_result(None)


class CollectBuffered(asyncio.BufferedProtocol):
    def __init__(self, lp, want):
        self.buf = bytearray(64)
        self.data = b""
        self.want = want
        self.done = lp.create_future()

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += bytes(self.buf[:nbytes])
        if len(self.data) >= self.want and not self.done.done():
            self.done.set_result(None)


def stream_io(lp, sock, protocol_cls, writelines=False):
    """Echo a few bytes each way over a transport on sock; what the socket
    object's own methods saw and what arrived."""
    a, b = socket.socketpair()
    with b:
        s = sock(a)
        pr = protocol_cls(lp, 3)
        tr, _ = run_bounded(lp, lp.connect_accepted_socket(lambda: pr, sock=s))
        b.sendall(b"abc")
        run_bounded(lp, pr.done)
        if writelines:
            tr.writelines([b"x", b"yz"])
        else:
            tr.write(b"xyz")
        b.settimeout(HANG_TIMEOUT)
        got = b.recv(10)
        tr.close()
        run_bounded(lp, asyncio.sleep(0))
    calls = getattr(s, "calls", None)
    if calls is None:  # an instance patch: the mocks' call counts
        calls = [n for n in ("recv", "recv_into", "send") if getattr(s, n).called]
    return sorted(set(calls)), pr.data, got


def test_socket_subclass_stream_io_methods_are_called(loop):
    def scenario(lp):
        return stream_io(lp, lambda a: adopt(Recorder, a), Collect)

    expected = with_loop(stock_factory, scenario)
    assert expected == (["recv", "send"], b"abc", b"xyz")
    assert scenario(loop) == expected


def test_socket_subclass_recv_into_is_called_for_buffered_protocols(loop):
    def scenario(lp):
        return stream_io(lp, lambda a: adopt(Recorder, a), CollectBuffered)

    expected = with_loop(stock_factory, scenario)
    assert expected == (["recv_into", "send"], b"abc", b"xyz")
    assert scenario(loop) == expected


def test_socket_subclass_writelines_goes_through_its_methods(loop):
    def scenario(lp):
        return stream_io(lp, lambda a: adopt(Recorder, a), Collect, writelines=True)

    expected = with_loop(stock_factory, scenario)
    assert expected == (["recv", "sendmsg" if PY312 else "send"], b"abc", b"xyz")
    assert scenario(loop) == expected


def test_socket_methods_patched_on_the_instance_are_called(loop):
    def patched(a):
        s = adopt(Plain, a)
        for name in ("recv", "recv_into", "send"):
            setattr(s, name, mock.Mock(wraps=getattr(s, name)))
        return s

    def scenario(lp):
        return stream_io(lp, patched, Collect)

    expected = with_loop(stock_factory, scenario)
    assert expected == (["recv", "send"], b"abc", b"xyz")
    assert scenario(loop) == expected


def test_socket_subclass_without_io_overrides_keeps_goloops_transport():
    lp = goloop.new_event_loop()
    lp.set_debug(False)  # debug mode (-X dev) gets asyncio's transport
    try:
        a, b = socket.socketpair()
        with b:
            tr = lp._make_socket_transport(adopt(Plain, a), asyncio.Protocol())
            tr.close()
            lp.run_until_complete(asyncio.sleep(0))
        assert type(tr) is stream.SocketTransport
    finally:
        lp.close()


def test_socket_subclass_sock_recv_calls_its_methods(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        with b:
            s = adopt(Recorder, a)
            b.sendall(b"hello")
            first = run_bounded(lp, lp.sock_recv(s, 2))
            buf = bytearray(3)
            n = run_bounded(lp, lp.sock_recv_into(s, buf))
            s.close()
        return s.calls, first, bytes(buf[:n])

    expected = with_loop(stock_factory, scenario)
    assert expected == (["recv", "recv_into"], b"he", b"llo")
    assert scenario(loop) == expected


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, lp):
        self.got = []
        self.done = lp.create_future()

    def datagram_received(self, data, addr):
        self.got.append(data)
        if not self.done.done():
            self.done.set_result(None)


@pytest.mark.parametrize("connected", [False, True])
def test_socket_subclass_datagram_io_methods_are_called(loop, connected):
    def scenario(lp):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            if connected:
                a.connect(b.getsockname())
            s = adopt(Recorder, a)
            pr = Datagrams(lp)
            tr, _ = run_bounded(lp, lp.create_datagram_endpoint(lambda: pr, sock=s))
            b.sendto(b"ping", s.getsockname())
            run_bounded(lp, pr.done)
            tr.sendto(b"pong", None if connected else b.getsockname())
            b.settimeout(HANG_TIMEOUT)
            reply = b.recv(10)
            tr.close()
            run_bounded(lp, asyncio.sleep(0))
        return sorted(set(s.calls)), pr.got, reply

    sent = "send" if connected else "sendto"
    expected = with_loop(stock_factory, scenario)
    assert expected == (["recvfrom", sent], [b"ping"], b"pong")
    assert scenario(loop) == expected


# -- instance attributes and patches on the stream transport ------------------


def connected_transport(lp, protocol):
    """A transport over one end of a socketpair, connection made; (transport, peer)."""
    a, b = socket.socketpair()
    tr, _ = run_bounded(lp, lp.connect_accepted_socket(lambda: protocol, sock=a))
    return tr, b


def test_transport_takes_arbitrary_attributes(loop):
    def scenario(lp):
        tr, peer = connected_transport(lp, asyncio.Protocol())
        with peer:
            tr.foo = 1
            seen = (tr.foo, tr.__dict__["foo"], vars(tr)["foo"])
            del tr.foo
            gone = hasattr(tr, "foo")
            tr.close()
            run_bounded(lp, asyncio.sleep(0))
        return seen, gone

    expected = with_loop(stock_factory, scenario)
    assert expected == ((1, 1, 1), False)
    assert scenario(loop) == expected


def test_transport_write_patched_on_the_instance(loop):
    """The patch sees write() and writelines()' own call to it (asyncio
    3.11's writelines joins and calls self.write; 3.12+'s does not)."""

    def scenario(lp):
        tr, peer = connected_transport(lp, asyncio.Protocol())
        with peer:
            with mock.patch.object(tr, "write", wraps=tr.write) as write:
                tr.write(b"ab")
                tr.writelines([b"c", b"d"])
                calls = write.call_args_list
            restored = "write" in vars(tr)
            tr.write(b"e")
            peer.settimeout(HANG_TIMEOUT)
            got = b""
            while len(got) < 5:
                got += peer.recv(10)
            tr.close()
            run_bounded(lp, asyncio.sleep(0))
        return [c.args for c in calls], restored, got

    expected = with_loop(stock_factory, scenario)
    assert expected[1:] == (False, b"abcde")
    assert scenario(loop) == expected


def test_transport_methods_patched_on_the_instance_see_eof(loop):
    """At EOF asyncio calls self._read_ready__on_eof(), which calls
    self.close(): instance patches see both calls."""

    class Lost(asyncio.Protocol):
        def __init__(self, lp):
            self.lost = lp.create_future()

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    def scenario(lp):
        pr = Lost(lp)
        tr, peer = connected_transport(lp, pr)
        with (
            mock.patch.object(tr, "_read_ready__on_eof", wraps=tr._read_ready__on_eof) as on_eof,
            mock.patch.object(tr, "close", wraps=tr.close) as close,
        ):
            peer.close()
            exc = run_bounded(lp, pr.lost)
            return on_eof.call_count, close.call_count, exc

    expected = with_loop(stock_factory, scenario)
    assert expected == (1, 1, None)
    assert scenario(loop) == expected


# -- a loop whose time() is patched or overridden -----------------------------

OFFSET = 1e6  # far from the monotonic clock: timers due by it never are by this


def faked_time(lp, how):
    """lp, or a loop of its class, whose time() runs OFFSET seconds ahead:
    patched on the instance or overridden by a subclass. (loop, undo)."""
    if how == "patch":
        patcher = mock.patch.object(lp, "time", lambda: time.monotonic() + OFFSET)
        patcher.start()
        return lp, patcher.stop

    class Ahead(type(lp)):
        def time(self):
            return time.monotonic() + OFFSET

    fake = Ahead()
    fake.set_debug(False)
    return fake, fake.close


def watchdog(lp):
    """Stop lp from another thread if a test's timers never fire (without
    one, a wait for a timer the loop thinks is 11 days away would hang)."""
    timer = threading.Timer(HANG_TIMEOUT, lp.call_soon_threadsafe, (lp.stop,))
    timer.start()
    return timer


def run_on_fake_clock(lp, how, scenario):
    fake, undo = faked_time(lp, how)
    guard = watchdog(fake)
    try:
        return scenario(fake)
    finally:
        guard.cancel()
        undo()


def fire_order(lp):
    """Timers scheduled by call_later and call_at against the fake clock
    fire, in order, without waiting out the offset."""
    fired = []
    done = lp.create_future()
    now = lp.time()
    lp.call_later(0.05, fired.append, "later")
    lp.call_at(now + 0.02, fired.append, "at")
    lp.call_at(now + 0.08, done.set_result, None)
    try:
        lp.run_until_complete(done)
    except RuntimeError as exc:  # the watchdog stopped the loop
        return fired, str(exc)
    return fired, "done"


@pytest.mark.parametrize("how", ["patch", "subclass"])
def test_timers_follow_an_overridden_time(loop, how):
    def scenario(lp):
        return run_on_fake_clock(lp, how, fire_order)

    expected = with_loop(stock_factory, scenario)
    assert expected == (["at", "later"], "done")
    assert scenario(loop) == expected


@pytest.mark.parametrize("how", ["patch", "subclass"])
def test_asyncio_sleep_and_timeout_on_an_overridden_time(loop, how):
    def scenario(lp):
        async def main():
            await asyncio.sleep(0.01)
            try:
                async with asyncio.timeout(0.02):  # loop.time() + 0.02
                    await asyncio.sleep(HANG_TIMEOUT * 2)
            except TimeoutError:
                return "timed out"
            return "slept"

        return run_on_fake_clock(lp, how, lambda fake: fake.run_until_complete(main()))

    expected = with_loop(stock_factory, scenario)
    assert expected == "timed out"
    assert scenario(loop) == expected


def test_clock_resolution_makes_timers_due_early(loop):
    """asyncio runs timers due before self.time() + self._clock_resolution."""

    def scenario(lp):
        ticks = iter(range(100, 10**6))  # each time() call: one second later
        lp._clock_resolution = 30.0
        fired = []
        with mock.patch.object(lp, "time", lambda: float(next(ticks))):
            lp.call_later(20.0, fired.append, "a")  # due at 120, end time >= 131
            lp.run_until_complete(asyncio.sleep(0))
        return fired

    expected = with_loop(stock_factory, scenario)
    assert expected == ["a"]
    assert scenario(loop) == expected


# -- asyncio's methods, borrowed from wherever this patch release has them ----


def test_borrowed_methods_are_the_ones_asyncios_socket_transport_runs():
    """Each asyncio function goloop's transport borrows is the one
    asyncio's own socket transport resolves to: methods move between
    _SelectorTransport and _SelectorSocketTransport within a minor version
    (3.11.2 has pause_reading & co. only on the latter, and
    asyncio.transports' NotImplementedError stubs above both)."""
    stock = selector_events._SelectorSocketTransport
    borrowed = {
        name: fn
        for name, fn in vars(stream.SocketTransport).items()
        if inspect.isfunction(fn) and fn.__module__.startswith("asyncio.")
    }
    assert {"pause_reading", "resume_reading", "is_reading", "abort"} <= set(borrowed)
    assert {name: getattr(stock, fn.__name__) for name, fn in borrowed.items()} == borrowed


def test_pause_and_resume_reading(loop):
    def scenario(lp):
        pr = Collect(lp, 3)
        tr, peer = connected_transport(lp, pr)
        with peer:
            states = [tr.is_reading()]
            tr.pause_reading()
            states.append(tr.is_reading())
            peer.sendall(b"abc")
            run_bounded(lp, asyncio.sleep(0.02))
            while_paused = pr.data
            tr.resume_reading()
            states.append(tr.is_reading())
            run_bounded(lp, pr.done)
            tr.close()
            states.append(tr.is_reading())
            run_bounded(lp, asyncio.sleep(0))
        return states, while_paused, pr.data

    expected = with_loop(stock_factory, scenario)
    assert expected == ([True, False, True, False], b"", b"abc")
    assert scenario(loop) == expected
