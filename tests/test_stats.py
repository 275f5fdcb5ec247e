"""goloop.stats() and goloop.track_slow_callbacks() (issue 14).

Stats are goloop's own API, so these tests run goloop loops; the stock
loop is there to get a clear TypeError. Counts are compared as deltas
between two snapshots, and only where the number is exact (no timing
enters a count). With PYTHONASYNCIODEBUG (make test-dbg's second run)
goloop gives sockets asyncio's own transports and accept path, which do
not count bytes, datagrams or accepts: those expectations are 0 then.
"""

import asyncio
import json
import socket
import sys
import time

import pytest
from loop_support import LOOP_DEBUG, check_child, run_bounded, run_python, stock_factory

import goloop

NATIVE_IO = not LOOP_DEBUG  # see the module docstring


@pytest.fixture
def loop():
    lp = goloop.new_event_loop()
    lp.set_debug(LOOP_DEBUG)
    try:
        yield lp
    finally:
        if not lp.is_closed():
            lp.close()


def delta(before, after):
    """The counters that moved between two snapshots, by name."""
    return {
        name: getattr(after, name) - getattr(before, name)
        for name in goloop.LoopStats._fields
        if isinstance(getattr(after, name), int) and getattr(after, name) != getattr(before, name)
    }


def run_soon(loop, *callbacks):
    """Queue callbacks then loop.stop, and run the loop until it stops."""
    for cb in callbacks:
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()


# ------------------------------------------------------------------- the API


@pytest.mark.parametrize("call", [goloop.stats, lambda lp: goloop.track_slow_callbacks(lp, 1)])
def test_stock_loop_is_a_type_error(call):
    lp = stock_factory()
    try:
        with pytest.raises(TypeError, match="goloop event loop, not asyncio"):
            call(lp)
    finally:
        lp.close()


def test_type_error_without_loading_the_extension():
    # No goloop loop exists yet, so none can be passed: the check must
    # not start the Go runtime to find that out (fork policy).
    code = """
import asyncio, json, sys
import goloop
lp = asyncio.new_event_loop()
try:
    goloop.stats(lp)
except TypeError as exc:
    print(json.dumps([str(exc), "goloop._goloop" in sys.modules]))
"""
    message, loaded = json.loads(check_child(run_python(code)))
    assert "goloop event loop" in message
    assert loaded is False


def test_fresh_loop(loop):
    st = goloop.stats(loop)
    assert isinstance(st, goloop.LoopStats)
    assert st.engine == "go"
    # the self-pipe is the loop's own: not a watched fd
    assert (st.fds, st.timers, st.transports, st.callbacks, st.accepted) == (0, 0, 0, 0, 0)
    assert (st.slow_threshold, st.slow_callbacks) == (None, ())
    with pytest.raises(AttributeError):
        st.callbacks = 1  # a snapshot, not a view


def test_engine_of_a_forked_child():
    code = """
import json, os, warnings
import goloop
goloop.new_event_loop().close()  # the Go runtime is now started
pid = os.fork()
if pid == 0:
    lp = goloop.new_event_loop()
    os.write(1, json.dumps(goloop.stats(lp).engine).encode() + b"\\n")
    lp.close()
    os._exit(0)
os.waitpid(pid, 0)
"""
    proc = run_python(code, python_args=("-W", "ignore::DeprecationWarning"))
    assert json.loads(check_child(proc)) == "c"


# ------------------------------------------------------------ counting


def test_callbacks_and_iterations(loop):
    before = goloop.stats(loop)
    cancelled = loop.call_soon(print)
    cancelled.cancel()
    run_soon(loop, lambda: None, lambda: None, lambda: None)
    # one iteration ran the three callbacks and stop; the cancelled one is skipped
    assert delta(before, goloop.stats(loop)) == {"iterations": 1, "callbacks": 4}


def test_a_chain_is_one_iteration_per_callback(loop):
    left = 5

    def step():
        nonlocal left
        left -= 1
        loop.call_soon(step if left else loop.stop)

    before = goloop.stats(loop)
    loop.call_soon(step)
    loop.run_forever()
    assert delta(before, goloop.stats(loop)) == {"iterations": 6, "callbacks": 6}


def test_timers_pending(loop):
    a = loop.call_later(3600, print)
    loop.call_at(loop.time() + 3600, print)
    assert goloop.stats(loop).timers == 2
    a.cancel()
    assert goloop.stats(loop).timers == 1
    fired = []
    loop.call_later(0, fired.append, 1)
    loop.call_later(0, loop.stop)
    assert goloop.stats(loop).timers == 3
    loop.run_forever()
    assert fired == [1]
    assert goloop.stats(loop).timers == 1


def test_fds_watched(loop):
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, print)
        loop.add_writer(a, print)  # the same fd: watched once
        loop.add_writer(b, print)
        assert goloop.stats(loop).fds == 2
        loop.remove_reader(a)
        loop.remove_writer(a)
        assert goloop.stats(loop).fds == 1
        loop.remove_writer(b)
        assert goloop.stats(loop).fds == 0
    finally:
        a.close()
        b.close()


def test_time_polling_and_busy(loop):
    before = goloop.stats(loop)
    run_bounded(loop, asyncio.sleep(0.01))  # the loop waits in epoll_wait for the timer
    after = goloop.stats(loop)
    assert after.poll_time > before.poll_time
    assert after.busy_time >= before.busy_time >= 0

    async def inside():
        await asyncio.sleep(0)
        return goloop.stats(loop)

    during = run_bounded(loop, inside())  # the current run counts up to now
    assert during.busy_time + during.poll_time >= after.busy_time + after.poll_time


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def test_tcp_bytes_accepts_transports(loop):
    payload = b"x" * 100_000

    async def scenario():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        during = goloop.stats(loop)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return during

    before = goloop.stats(loop)
    during = run_bounded(loop, scenario())
    assert during.transports - before.transports == 2  # the client's and the server's
    after = goloop.stats(loop)
    moved = 2 * len(payload) if NATIVE_IO else 0  # out by each end, in by each end
    assert after.bytes_in - before.bytes_in == moved
    assert after.bytes_out - before.bytes_out == moved
    assert after.accepted - before.accepted == (1 if NATIVE_IO else 0)
    assert after.transports == 0
    assert after.fds == 0


class Replier(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)  # a reply: goloop's fast path


class Collector(asyncio.DatagramProtocol):
    def __init__(self, want):
        self.got = []
        self.done = asyncio.get_running_loop().create_future()
        self.want = want

    def datagram_received(self, data, addr):
        self.got.append(data)
        if len(self.got) == self.want and not self.done.done():
            self.done.set_result(None)


def test_udp_datagrams_and_bytes(loop):
    sent = [b"a", b"bb", b"ccc"]

    async def scenario():
        server, _ = await loop.create_datagram_endpoint(Replier, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(
            lambda: Collector(len(sent)), local_addr=("127.0.0.1", 0)
        )
        for data in sent:
            client.sendto(data, addr)  # not a reply: asyncio's sendto, counted
        await proto.done
        client.close()
        server.close()
        return proto.got

    before = goloop.stats(loop)
    assert run_bounded(loop, scenario()) == [d.upper() for d in sent]
    moved = delta(before, goloop.stats(loop))
    n, size = (2 * len(sent), 2 * sum(map(len, sent))) if NATIVE_IO else (0, 0)
    assert moved.get("datagrams_in", 0) == moved.get("datagrams_out", 0) == n
    assert moved.get("bytes_in", 0) == moved.get("bytes_out", 0) == size


def test_closed_loop_keeps_its_counts(loop):
    loop.call_later(3600, print)
    run_soon(loop, lambda: None)
    open_stats = goloop.stats(loop)
    assert open_stats.timers == 1
    loop.close()
    closed = goloop.stats(loop)
    assert (closed.iterations, closed.callbacks) == (open_stats.iterations, open_stats.callbacks)
    assert (closed.fds, closed.timers, closed.transports) == (0, 0, 0)


# ------------------------------------------------------ slow callbacks

SLOW = 0.02  # a slow callback sleeps this long ...
THRESHOLD = 0.01  # ... so it is always over this threshold, whatever the machine


def slow_callback():
    time.sleep(SLOW)


def test_slow_callbacks_off_by_default(loop):
    run_soon(loop, slow_callback)
    assert goloop.stats(loop).slow_callbacks == ()


def records_of(loop, name):
    """The slow-callback records whose description starts with name (other
    callbacks, e.g. loop.stop, may be recorded too on a loaded machine)."""
    return [r for r in goloop.stats(loop).slow_callbacks if r.callback.startswith(name)]


def test_slow_callback_recorded_with_its_location(loop):
    goloop.track_slow_callbacks(loop, THRESHOLD)
    run_soon(loop, slow_callback)
    assert goloop.stats(loop).slow_threshold == THRESHOLD
    (rec,) = records_of(loop, "slow_callback()")
    assert isinstance(rec, goloop.SlowCallback)
    assert rec.seconds >= SLOW
    assert rec.callback.startswith("slow_callback()")
    code = slow_callback.__code__
    assert (rec.filename, rec.lineno) == (code.co_filename, code.co_firstlineno)


def test_slow_task_step_located_at_its_await(loop):
    async def busy():
        time.sleep(SLOW)
        line = sys._getframe().f_lineno + 1
        await asyncio.sleep(0)
        return line

    goloop.track_slow_callbacks(loop, THRESHOLD)
    line = run_bounded(loop, loop.create_task(busy(), name="busy-task"))
    # the first step is the slow one; a loaded machine may add the second,
    # which ends the coroutine (it is then placed at its def line)
    places = {
        (r.filename, r.lineno) for r in records_of(loop, "<Task") if "busy-task" in r.callback
    }
    assert (__file__, line) in places


def test_keeps_the_slowest_first(loop):
    goloop.track_slow_callbacks(loop, 1e-9, keep=3)  # every callback qualifies
    run_soon(loop, *[lambda: None] * 10)
    kept = goloop.stats(loop).slow_callbacks
    assert len(kept) == 3
    assert [r.seconds for r in kept] == sorted((r.seconds for r in kept), reverse=True)


@pytest.mark.parametrize("off", [None, 0])
def test_turning_tracking_off(loop, off):
    goloop.track_slow_callbacks(loop, THRESHOLD)
    run_soon(loop, slow_callback)
    goloop.track_slow_callbacks(loop, off)
    st = goloop.stats(loop)
    assert (st.slow_threshold, st.slow_callbacks) == (None, ())
    run_soon(loop, slow_callback)
    assert goloop.stats(loop).slow_callbacks == ()
    goloop.track_slow_callbacks(loop, THRESHOLD)  # back on: a new record
    assert goloop.stats(loop).slow_callbacks == ()


def test_tracking_switched_on_inside_a_callback(loop):
    # It applies from the next iteration: the rest of this one is untimed.
    run_soon(loop, lambda: goloop.track_slow_callbacks(loop, THRESHOLD), slow_callback)
    assert goloop.stats(loop).slow_callbacks == ()
    run_soon(loop, slow_callback)
    assert len(records_of(loop, "slow_callback()")) == 1


@pytest.mark.parametrize(("threshold", "keep"), [(-1, 10), (0.1, 0)])
def test_bad_arguments(loop, threshold, keep):
    with pytest.raises(ValueError):
        goloop.track_slow_callbacks(loop, threshold, keep=keep)


def test_tracked_callback_that_raises(loop):
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx["exception"]))
    goloop.track_slow_callbacks(loop, 1e-9)

    def boom():
        raise ZeroDivisionError

    run_soon(loop, boom)
    assert [type(e) for e in errors] == [ZeroDivisionError]
    # reported like any callback (asyncio's Handle._run caught it)
    assert any(r.callback.endswith(".boom()") for r in goloop.stats(loop).slow_callbacks)
