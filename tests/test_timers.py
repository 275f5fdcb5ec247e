"""Timer bursts: many call_at from one callback, as the stock loop orders them.

goloop keeps timers in a schedule log drained into a heap a bounded part
per iteration, sorts a due part of the log as a batch, and runs the
callbacks that were ready before the due timers take their turn (timers.c,
loop.c). These scenarios pin what stock asyncio does with the same calls:
order by (deadline, scheduling order), cancellation at any point, timers
made by timers and by the callbacks ahead of them, and I/O never queued
behind a burst. Every scenario runs on both loops; where the expected
result is not obvious it is computed on the stock loop.
"""

import contextvars
import gc
import json
import random
import socket
import weakref
from unittest import mock

import pytest
from loop_support import check_child, run_python, stock_factory

BURST = 20_000


def run_briefly(loop, n=1):
    for _ in range(n):
        loop.call_soon(loop.stop)
        loop.run_forever()


def run_until(loop, predicate, limit=5000):
    """Run the loop in steps of ~2 ms until predicate() holds."""
    for _ in range(limit):
        loop.call_later(0.002, loop.stop)
        loop.run_forever()
        if predicate():
            return
    raise AssertionError("condition never held")


def on_stock(scenario):
    lp = stock_factory()
    try:
        return scenario(lp)
    finally:
        lp.close()


def _deadlines(n, seed, span, grid=None):
    """n offsets in [0, span): distinct and at least span/2n apart unless grid
    makes them coarse (many equal deadlines). Closer offsets could round to
    one deadline once added to loop.time(), and stock orders ties arbitrarily."""
    rng = random.Random(seed)
    if grid:
        return [round(rng.random() * span / grid) * grid for _ in range(n)]
    step = span / (2 * n)
    return [k * step for k in rng.sample(range(2 * n), n)]


# ------------------------------------------------------------------ order


@pytest.mark.parametrize("grid", [None, 1e-4], ids=["distinct", "ties"])
def test_burst_fires_by_deadline(loop_name, loop, grid):
    """By deadline; equal deadlines in no promised order on stock (heapq is
    not stable), in scheduling order on goloop (docs/architecture.md)."""
    offsets = _deadlines(BURST, 1, 0.003, grid)
    whens = []  # base + offset: offsets 1e-11 apart can round to one deadline
    fired = []

    def burst():
        base = loop.time() - 0.01  # all due once the callback returns
        whens.extend(base + off for off in offsets)
        for i, when in enumerate(whens):
            loop.call_at(when, fired.append, i)

    loop.call_soon(burst)
    run_until(loop, lambda: len(fired) == BURST)
    assert sorted(fired) == list(range(BURST))
    assert [whens[i] for i in fired] == sorted(whens)
    if loop_name == "goloop":
        assert fired == sorted(range(BURST), key=lambda i: (whens[i], i))


def test_equal_deadlines_across_log_and_heap(loop_name, loop):
    """goloop: timers moved into its heap (a bounded number an iteration)
    keep their place ahead of later ones with the same deadline still in
    its log. Stock: all of them, in some order."""
    fired = []
    when = loop.time() + 0.3
    first = [loop.call_at(when, fired.append, ("a", i)) for i in range(6000)]
    run_briefly(loop, 2)  # goloop moves some of them into its heap
    later = [loop.call_at(when, fired.append, ("b", i)) for i in range(6000)]
    run_until(loop, lambda: len(fired) == len(first) + len(later))
    want = [("a", i) for i in range(6000)] + [("b", i) for i in range(6000)]
    assert sorted(fired) == want
    if loop_name == "goloop":
        assert fired == want


def test_nan_and_infinite_deadlines(loop):
    fired = []
    now = loop.time()
    loop.call_at(now + 0.001, fired.append, "soon")
    loop.call_at(float("inf"), fired.append, "never")
    loop.call_at(now - 1, fired.append, "past")
    run_until(loop, lambda: len(fired) == 2)
    run_briefly(loop, 3)
    assert fired == ["past", "soon"]
    assert [h._callback is None or h.cancelled() for h in loop._scheduled] == [False]


# ------------------------------------------------------------ cancellation


def _cancel_scenario(lp):
    """A due burst whose timers cancel others: due in the same batch, due
    later, and already run."""
    offsets = _deadlines(4000, 2, 0.003)
    handles = []
    fired = []

    def cb(i):
        fired.append(i)
        if i % 7 == 0:
            for j in (i + 1, i + 500, i - 3):  # maybe due now, maybe run already
                if 0 <= j < len(handles):
                    handles[j].cancel()

    def burst():
        base = lp.time() - 0.01
        handles.extend(lp.call_at(base + off, cb, i) for i, off in enumerate(offsets))
        for h in handles[::11]:
            h.cancel()  # cancelled before the burst runs at all

    lp.call_soon(burst)
    run_briefly(lp, 4)
    scheduled = [h for h in lp._scheduled if not h.cancelled()]
    return fired, len(scheduled), [h.cancelled() for h in handles]


def test_cancel_inside_burst(loop):
    assert _cancel_scenario(loop) == on_stock(_cancel_scenario)


def test_cancel_pending_timers_in_log_and_heap(loop):
    """Cancel timers some of which goloop has moved into its heap and some
    it still has in its log; neither kind fires, the rest do, in order."""
    fired = []
    real_time = loop.time
    when = real_time() + 3600  # due only once the loop's clock is moved on
    handles = [loop.call_at(when + i * 1e-6, fired.append, i) for i in range(10_000)]
    run_briefly(loop)  # goloop moves 4096 into its heap
    for h in handles[::3]:
        h.cancel()
    pending = [h for h in loop._scheduled if not h.cancelled()]
    assert len(pending) == len(handles) - len(handles[::3])
    with mock.patch.object(loop, "time", lambda: real_time() + 3601):
        run_until(loop, lambda: len(fired) == len(pending))
    assert fired == [i for i in range(10_000) if i % 3]
    run_briefly(loop, 2)
    assert len(fired) == len(pending)


def test_cancelled_timer_cannot_fire_through_a_reused_slot(loop):
    fired = []
    now = loop.time()
    for _round in range(3):
        hs = [loop.call_at(now - 1, fired.append, "old") for _ in range(100)]
        for h in hs:
            h.cancel()
        loop.call_at(now + 10, fired.append, "late")  # reuses the slots
    run_briefly(loop, 3)
    assert fired == []


# --------------------------------------------- timers made while running


def _made_while_running(lp):
    """S (ready) and T1 (due) share an iteration; S schedules a past-due
    timer T2, which must wait for the next iteration as in stock, where the
    due timers were taken before S ran."""
    events = []

    def t1():
        events.append("T1")
        lp.call_at(lp.time() - 1, events.append, "T1-made-timer")
        lp.call_soon(events.append, "T1-made-soon")

    def s():
        events.append("S")
        lp.call_at(lp.time() - 1, events.append, "T2")
        lp.call_soon(events.append, "U")

    def setup():
        lp.call_at(lp.time() - 1, t1)
        lp.call_soon(s)

    lp.call_soon(setup)
    per_iteration = []
    for _ in range(4):
        run_briefly(lp)
        per_iteration.append(list(events))
        events.clear()
    return per_iteration


def test_timers_made_by_callbacks_wait_for_next_iteration(loop):
    got = _made_while_running(loop)
    assert got == on_stock(_made_while_running)
    assert got[1][:2] == ["S", "T1"]
    assert "T2" not in got[1]


def test_burst_of_timers_made_by_timers(loop):
    fired = []
    base = loop.time() - 0.01

    def child_when(k, j):  # distinct deadlines, interleaving the parents' children
        return base + (j % 7) * 1e-4 + k * 1e-6 + j * 1e-9

    def parent(k):
        fired.append(("p", k))
        for j in range(200):
            loop.call_at(child_when(k, j), fired.append, ("c", k, j))

    for k in range(50):
        loop.call_at(base - 1 + k * 1e-6, parent, k)
    run_until(loop, lambda: len(fired) == 50 + 50 * 200)
    assert fired[:50] == [("p", k) for k in range(50)], "children wait for the next iteration"
    children = fired[50:]
    assert children == sorted(children, key=lambda e: child_when(e[1], e[2]))


# ------------------------------------------------------------- I/O vs burst


def _io_during_burst(lp, delay):
    """Order of the first events after a burst's callback returns, with a
    socket it made readable: stock queues the I/O callback ahead of the
    due timers, and runs it in the very next iteration whether or not they
    are due."""
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    events = []
    n = 50_000

    def on_io():
        events.append("io")
        rsock.recv(16)
        lp.remove_reader(rsock.fileno())

    def burst():
        lp.add_reader(rsock.fileno(), on_io)
        base = lp.time() + delay
        for off in _deadlines(n, 3, 0.003):
            lp.call_at(base + off, events.append, "timer")
        lp.call_soon(events.append, "soon")
        wsock.send(b"x")

    lp.call_soon(burst)
    run_briefly(lp)  # the burst's callback
    run_briefly(lp)  # the next iteration
    first = list(events[:3])
    events.clear()
    rsock.close()
    wsock.close()
    return first


@pytest.mark.parametrize("delay", [-0.01, 3600.0], ids=["due", "not-due"])
def test_io_runs_in_the_iteration_after_a_burst(loop, delay):
    got = _io_during_burst(loop, delay)
    assert got == on_stock(lambda lp: _io_during_burst(lp, delay))
    assert got[:2] == ["soon", "io"]


# ------------------------------------------------------------ handle state


def test_fired_timer_is_no_longer_scheduled(loop):
    seen = []
    h = loop.call_at(loop.time() - 1, lambda: seen.append(h._scheduled))
    assert h._scheduled is True
    run_briefly(loop)
    assert seen == [False]
    assert h._scheduled is False
    assert h not in loop._scheduled
    h.cancel()  # after it ran: harmless
    assert h.cancelled()


def test_due_timers_are_unscheduled_before_any_runs(loop):
    """Stock marks every timer due in an iteration unscheduled as it
    moves them to its ready queue, before the first of them runs."""
    seen = []
    when = loop.time() - 1
    later = []
    first = loop.call_at(when, lambda: seen.append([h._scheduled for h in later]))
    later.extend(loop.call_at(when + i * 1e-6, lambda: None) for i in range(1, 40))
    run_briefly(loop)
    assert seen == [[False] * 39]
    assert first._scheduled is False


def _released_between_timers(lp):
    """Whether what a fired timer alone held is gone before the next due
    timer runs (stock drops the handle before running the next), for its
    arguments, its callback and its context's variables."""

    class Obj:
        def __call__(self, *args):
            pass

    var = contextvars.ContextVar("v")
    seen = []
    refs = {}

    def schedule(kind, when):
        obj = Obj()
        refs[kind] = weakref.ref(obj)
        if kind == "args":
            lp.call_at(when, lambda o: None, obj)
        elif kind == "callback":
            lp.call_at(when, obj)
        else:
            ctx = contextvars.copy_context()
            ctx.run(var.set, obj)  # held by ctx's variables alone
            lp.call_at(when, lambda: None, context=ctx)

    def check(kind):
        gc.collect()  # the handle may be GC-tracked on the stock loop
        seen.append((kind, refs[kind]() is None))

    base = lp.time() - 10
    for i, kind in enumerate(("args", "callback", "context")):
        schedule(kind, base + i)
        lp.call_at(base + i + 0.5, check, kind)
    run_briefly(lp)
    return seen


def test_fired_timer_releases_its_references_before_the_next_runs(loop):
    got = _released_between_timers(loop)
    assert got == on_stock(_released_between_timers)
    assert got == [("args", True), ("callback", True), ("context", True)]


def test_fired_timer_held_elsewhere_keeps_its_state(loop):
    """A fired timer someone else holds keeps its callback, arguments and
    context after it ran, as stock's does; the loop lets go of its own
    references (no cycle through the loop keeps it alive)."""
    ran = []
    ctx = contextvars.copy_context()
    handles = [
        loop.call_at(loop.time() - 1, ran.append, i, context=ctx if i == 1 else None)
        for i in range(3)
    ]
    weak = weakref.ref(loop.call_at(loop.time() - 1, ran.append, 3))
    run_briefly(loop)
    assert ran == [0, 1, 2, 3]
    assert [h._args for h in handles] == [(0,), (1,), (2,)]
    assert all(h._callback == ran.append for h in handles)
    assert handles[1]._context is ctx
    assert isinstance(handles[0]._context, contextvars.Context)
    assert [h._scheduled for h in handles] == [False] * 3
    assert weak() is None


def test_argument_tuple_cycle_is_collected(loop):
    """The loop takes a handle's argument tuple off the GC while it alone
    holds it; one taken elsewhere must be collectable again."""

    class Box:
        pass

    box = Box()
    h = loop.call_soon(lambda b: None, box)
    args = h._args
    box.args = args  # box -> args -> box
    t = loop.call_at(loop.time() - 1, lambda b: None, box)
    targs = t._args
    box.targs = targs
    run_briefly(loop)
    ref = weakref.ref(box)
    del box, h, args, t, targs
    gc.collect()
    assert ref() is None


# ----------------------------------------------------------------- fork


def test_burst_in_forked_child_on_c_engine():
    """A child forked after Go started runs its loops on the C engine: the
    same timer code, checked against the stock loop in that child."""
    code = """
import asyncio, json, os, random
import goloop

def scenario(lp):
    rng = random.Random(5)
    offsets = [k * 1e-7 for k in rng.sample(range(30000), 5000)]  # no ties
    fired, handles = [], []
    def cb(i):
        fired.append(i)
        if i % 5 == 0 and i + 1 < len(handles):
            handles[i + 1].cancel()
    def burst():
        base = lp.time() - 0.01
        handles.extend(lp.call_at(base + o, cb, i) for i, o in enumerate(offsets))
        lp.call_at(lp.time() + 0.02, lp.stop)
    lp.call_soon(burst)
    lp.run_forever()
    return fired

goloop.run(asyncio.sleep(0))  # Go runtime started in the parent
pid = os.fork()
if pid == 0:
    lp = goloop.new_event_loop()
    engine = goloop.stats(lp).engine
    got = scenario(lp)
    lp.close()
    stock = asyncio.new_event_loop()
    want = scenario(stock)
    stock.close()
    ok = engine == "c" and got == want and len(got) > 4000
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status)}))
"""
    proc = run_python(code, python_args=("-W", "ignore::DeprecationWarning"))
    out = check_child(proc)
    assert json.loads(out.strip().splitlines()[-1]) == {"code": 0}
