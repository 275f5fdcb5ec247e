"""call_soon / call_later / call_at, handles, the clock and exception handling."""

import asyncio
import contextvars
import json
import logging
import random
import re
import sys
import threading
import time

import pytest
from loop_support import (
    CHILD_PRELUDE,
    LOOP_DEBUG,
    check_child,
    outcome,
    run_python,
    stock_factory,
    with_loop,
)

var = contextvars.ContextVar("var", default="default")


def run_briefly(loop, n=1):
    """Run n loop iterations."""
    for _ in range(n):
        loop.call_soon(loop.stop)
        loop.run_forever()


# ---------------------------------------------------------------- call_soon


def test_call_soon_fifo_and_args(loop):
    seen = []
    for i in range(200):
        loop.call_soon(seen.append, (i, f"x{i}"))
    handle = loop.call_soon(lambda *a: seen.append(a), 1, "two", None)
    assert isinstance(handle, asyncio.Handle)
    run_briefly(loop)
    assert seen == [(i, f"x{i}") for i in range(200)] + [(1, "two", None)]


def test_call_soon_no_args_and_return_value_ignored(loop):
    seen = []

    def cb():
        seen.append("called")
        return "ignored"

    loop.call_soon(cb)
    run_briefly(loop)
    assert seen == ["called"]


def test_callbacks_scheduled_by_callbacks_run_next_iteration(loop):
    def scenario(lp):
        seen = []

        def a():
            seen.append("a")
            lp.call_soon(seen.append, "c")

        lp.call_soon(a)
        lp.call_soon(seen.append, "b")
        lp.call_soon(lp.stop)
        lp.call_soon(seen.append, "after stop, same iteration")
        lp.run_forever()
        first = list(seen)
        run_briefly(lp)
        return first, seen

    got = scenario(loop)
    assert got[0] == ["a", "b", "after stop, same iteration"]
    assert got == with_loop(stock_factory, scenario)


def test_call_soon_unexpected_keyword_like_stock(loop, stock_loop):
    expected = outcome(stock_loop.call_soon, print, foo=1)
    assert expected[0] is TypeError
    got = outcome(loop.call_soon, print, foo=1)
    assert got[0] is TypeError


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_unexpected_keyword_message_like_stock(loop, stock_loop, method):
    args = (print,) if method.startswith("call_soon") else (1, print)
    expected = outcome(getattr(stock_loop, method), *args, foo=1)
    assert outcome(getattr(loop, method), *args, foo=1) == expected


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_missing_arguments_message_like_stock(loop, stock_loop, method):
    expected = outcome(getattr(stock_loop, method))
    assert expected[0] is TypeError
    assert outcome(getattr(loop, method)) == expected


# ---------------------------------------------------------------- contexts


def test_each_callback_gets_a_copy_of_the_current_context(loop):
    seen = []

    def mutate():
        var.set("mutated")
        seen.append(("mutate", var.get()))

    def read(tag):
        seen.append((tag, var.get()))

    token = var.set("outer")
    try:
        loop.call_soon(mutate)
        loop.call_soon(read, "soon")
        loop.call_later(0, read, "later")
        loop.call_at(loop.time(), read, "at")
        loop.call_soon_threadsafe(read, "threadsafe")
    finally:
        var.reset(token)
    # Changing the context after scheduling does not affect the copies.
    var.set("changed after scheduling")
    try:
        loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        var.set("default")
    assert sorted(seen) == sorted(
        [
            ("mutate", "mutated"),
            ("soon", "outer"),
            ("later", "outer"),
            ("at", "outer"),
            ("threadsafe", "outer"),
        ]
    )
    assert var.get() == "default"


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_explicit_context_is_used_and_shared(loop, method):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    seen = []

    def cb(tag):
        seen.append((tag, var.get()))
        var.set(f"set by {tag}")

    def schedule(tag):
        if method in ("call_soon", "call_soon_threadsafe"):
            return getattr(loop, method)(cb, tag, context=ctx)
        if method == "call_later":
            return loop.call_later(0, cb, tag, context=ctx)
        return loop.call_at(loop.time(), cb, tag, context=ctx)

    h = schedule("first")
    if sys.version_info >= (3, 12):  # Handle.get_context() is new in 3.12
        assert h.get_context() is ctx
    schedule("second")
    loop.run_until_complete(asyncio.sleep(0.01))
    # Both callbacks ran in the same explicit context, in order.
    assert seen == [("first", "in ctx"), ("second", "set by first")]
    assert ctx[var] == "set by second"
    assert var.get() == "default"


def test_context_none_means_current_context(loop):
    seen = []
    token = var.set("current")
    try:
        loop.call_soon(lambda: seen.append(var.get()), context=None)
    finally:
        var.reset(token)
    run_briefly(loop)
    assert seen == ["current"]


# ---------------------------------------------------------------- timers


def test_call_later_orders_by_deadline(loop):
    seen = []
    for delay in (0.03, 0.01, 0.02, 0.0, 0.015):
        loop.call_later(delay, seen.append, delay)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert seen == [0.0, 0.01, 0.015, 0.02, 0.03]


def test_equal_deadlines_fire_fifo(loop_name, loop):
    seen = []
    when = loop.time() + 0.01
    for i in range(100):
        loop.call_at(when, seen.append, i)
    loop.run_until_complete(asyncio.sleep(0.03))
    assert sorted(seen) == list(range(100))
    if loop_name == "asyncio":
        # The stock loop keeps timers in a heapq, which is not stable: it
        # does not promise FIFO order for equal deadlines. goloop does.
        return
    assert seen == list(range(100))


def test_equal_delays_fire_fifo(loop):
    seen = []
    for i in range(50):
        loop.call_later(0, seen.append, i)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == list(range(50))


def test_timers_interleave_with_call_soon_like_stock(loop):
    def scenario(lp):
        seen = []
        past = lp.time() - 1
        lp.call_at(past, seen.append, "at-past-1")
        lp.call_soon(seen.append, "soon-1")
        lp.call_later(-5, seen.append, "later-negative")
        lp.call_at(past, seen.append, "at-past-2")
        lp.call_soon(seen.append, "soon-2")
        lp.run_until_complete(asyncio.sleep(0.005))
        return seen

    got = scenario(loop)
    assert sorted(got) == sorted(["at-past-1", "soon-1", "later-negative", "at-past-2", "soon-2"])
    assert got == with_loop(stock_factory, scenario)


def test_timer_does_not_fire_early(loop):
    fired = {}
    handles = []
    for delay in (0.0, 0.005, 0.02):
        h = loop.call_later(delay, lambda d=delay: fired.setdefault(d, loop.time()))
        handles.append((delay, h))
    loop.run_until_complete(asyncio.sleep(0.04))
    resolution = 1e-6
    for delay, h in handles:
        assert fired[delay] >= h.when() - resolution


def test_when_returns_deadline(loop):
    when = loop.time() + 100
    h = loop.call_at(when, print)
    assert isinstance(h, asyncio.TimerHandle)
    assert h.when() == when
    t0 = loop.time()
    h2 = loop.call_later(50, print)
    t1 = loop.time()
    assert t0 + 50 <= h2.when() <= t1 + 50
    h.cancel()
    h2.cancel()


def test_call_at_accepts_int_deadline(loop):
    seen = []
    h = loop.call_at(int(loop.time()), seen.append, "int")
    assert h.when() == int(h.when())
    run_briefly(loop, 2)
    assert seen == ["int"]


def test_timer_handles_compare_like_stock(loop):
    when = loop.time() + 100
    a = loop.call_at(when, print)
    b = loop.call_at(when + 1, print)
    assert a < b
    assert b > a
    assert a <= a
    assert a == a
    assert a != b
    a.cancel()
    b.cancel()


# ---------------------------------------------------------------- cancel


def test_cancel_call_soon(loop):
    seen = []
    h = loop.call_soon(seen.append, "cancelled")
    loop.call_soon(seen.append, "kept")
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    assert h.cancelled()
    run_briefly(loop)
    assert seen == ["kept"]


def test_cancel_timer(loop):
    seen = []
    h = loop.call_later(0.001, seen.append, "cancelled")
    loop.call_later(0.002, seen.append, "kept")
    h.cancel()
    assert h.cancelled()
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["kept"]


def test_cancel_from_another_callback(loop):
    seen = []
    victims = {}
    loop.call_soon(lambda: victims["soon"].cancel())
    victims["soon"] = loop.call_soon(seen.append, "soon victim")
    # Two timers due at the same time: the first cancels the second, which is
    # already expired when the first runs.
    when = loop.time() + 0.001
    loop.call_at(when, lambda: victims["at"].cancel())
    victims["at"] = loop.call_at(when, seen.append, "at victim")
    # A timer far in the future cancelled by a callback.
    victims["far"] = loop.call_later(0.02, seen.append, "far victim")
    loop.call_later(0.005, lambda: victims["far"].cancel())
    loop.call_later(0.002, seen.append, "survivor")
    loop.run_until_complete(asyncio.sleep(0.04))
    assert seen == ["survivor"]
    assert all(h.cancelled() for h in victims.values())


def test_cancel_after_run_is_harmless(loop):
    seen = []
    h = loop.call_soon(seen.append, 1)
    t = loop.call_later(0, seen.append, 2)
    loop.run_until_complete(asyncio.sleep(0.005))
    h.cancel()
    t.cancel()
    run_briefly(loop)
    assert seen == [1, 2]


def test_many_cancelled_timers(loop):
    seen = []
    base = loop.time()
    handles = []
    for i in range(1000):
        when = base + 0.001 * (i % 7)
        handles.append(loop.call_at(when, seen.append, (when, i)))
    for h in handles[::3]:
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0.02))
    assert sorted(i for _, i in seen) == [i for i in range(1000) if i % 3]
    deadlines = [when for when, _ in seen]
    assert deadlines == sorted(deadlines)


# ---------------------------------------------------------------- repr


def _make_handles(lp):
    def callback(*args):
        pass

    soon = lp.call_soon(callback, 1, "a")
    later = lp.call_at(1234.5, callback)
    cancelled = lp.call_soon(callback)
    cancelled.cancel()
    return [repr(soon), repr(later), repr(cancelled)]


@pytest.mark.parametrize("debug", [False, True])
def test_handle_repr_like_stock(loop, stock_loop, debug):
    loop.set_debug(debug)
    stock_loop.set_debug(debug)
    got = _make_handles(loop)
    expected = _make_handles(stock_loop)
    assert got == expected
    assert got[0].startswith("<Handle ")
    assert got[1].startswith("<TimerHandle when=1234.5 ")
    if debug:
        assert all(" created at " in r for r in got[:2])
        assert re.search(r"created at .*test_callbacks\.py:\d+>$", got[0])


# ---------------------------------------------------------------- clock


def test_time_is_monotonic_and_close_to_time_monotonic(loop):
    samples = []
    for _ in range(1000):
        before = time.monotonic()
        t = loop.time()
        after = time.monotonic()
        samples.append(t)
        assert before - 0.001 <= t <= after + 0.001
    assert samples == sorted(samples)
    assert isinstance(samples[0], float)


def test_clock_resolution_like_stock(loop, stock_loop):
    assert loop._clock_resolution == stock_loop._clock_resolution


# ---------------------------------------------------------------- threads


def test_call_soon_threadsafe_wakes_idle_loop(loop_name):
    """The loop blocks with no timer and no fd; another thread wakes it."""
    code = (
        CHILD_PRELUDE
        + """
import threading, time
loop = make_loop()
fut = loop.create_future()

def worker():
    time.sleep(0.2)
    loop.call_soon_threadsafe(fut.set_result, "woken")

threading.Thread(target=worker).start()
print(loop.run_until_complete(fut))
loop.close()
"""
    )
    out = check_child(run_python(code, loop_name, timeout=10))
    assert out.split() == ["woken"]


def test_call_soon_threadsafe_many_threads(loop):
    n_threads, per_thread = 8, 200
    seen = []
    done = loop.create_future()
    count = [0]

    def cb(tid, i):
        seen.append((tid, i))
        count[0] += 1
        if count[0] == n_threads * per_thread:
            done.set_result(None)

    def worker(tid):
        for i in range(per_thread):
            loop.call_soon_threadsafe(cb, tid, i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    loop.run_until_complete(asyncio.wait_for(done, 10))
    for t in threads:
        t.join()
    assert sorted(seen) == [(t, i) for t in range(n_threads) for i in range(per_thread)]
    for tid in range(n_threads):
        assert [i for t, i in seen if t == tid] == list(range(per_thread))


# ---------------------------------------------------------------- errors


def _fail(msg):
    raise ValueError(msg)


def test_callback_exception_goes_to_handler_and_loop_continues(loop, stock_loop):
    def scenario(lp):
        contexts = []
        seen = []
        lp.set_exception_handler(lambda lp_, ctx: contexts.append((lp_, ctx)))
        lp.call_soon(_fail, "soon")
        lp.call_soon(seen.append, "next")
        lp.call_later(0, _fail, "later")
        lp.run_until_complete(asyncio.sleep(0.005))
        return seen, contexts

    seen, contexts = scenario(loop)
    stock_seen, stock_contexts = scenario(stock_loop)
    assert seen == stock_seen == ["next"]
    assert len(contexts) == len(stock_contexts) == 2
    for (lp, ctx), (_, sctx) in zip(contexts, stock_contexts, strict=True):
        assert lp is loop
        keys = {"message", "exception", "handle"} | ({"source_traceback"} if LOOP_DEBUG else set())
        assert set(ctx) == set(sctx) == keys
        assert ctx["message"] == sctx["message"]
        assert ctx["message"].startswith("Exception in callback _fail(")
        assert type(ctx["exception"]) is ValueError
        assert ctx["exception"].args == sctx["exception"].args
        assert isinstance(ctx["handle"], asyncio.Handle)
        assert type(ctx["handle"]).__name__ == type(sctx["handle"]).__name__
        assert ctx["exception"].__traceback__ is not None


def test_default_exception_handler_logs(loop, stock_loop, caplog):
    def scenario(lp):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            lp.call_soon(_fail, "logged")
            lp.call_soon(lp.stop)
            lp.run_forever()
        return [(r.name, r.levelno, r.getMessage(), r.exc_info[0]) for r in caplog.records]

    # one line for both: in debug mode the message holds the source
    # traceback, whose frames include this test's line
    got, expected = [scenario(lp) for lp in (loop, stock_loop)]
    assert len(expected) == 1
    assert got == expected


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("runner", ["run_forever", "run_until_complete"])
def test_base_exceptions_propagate_and_loop_survives(loop, exc_type, runner):
    def scenario(lp):
        seen = []

        def boom():
            seen.append("boom")
            raise exc_type("stop here")

        lp.call_soon(seen.append, "before")
        lp.call_soon(boom)
        lp.call_soon(seen.append, "after")
        with pytest.raises(exc_type, match="stop here"):
            if runner == "run_forever":
                lp.run_forever()
            else:
                lp.run_until_complete(asyncio.sleep(10))
        state = (list(seen), lp.is_running(), lp.is_closed())
        # Still usable: the remaining callback runs on the next run.
        result = lp.run_until_complete(asyncio.sleep(0.001, "usable"))
        return state, result, seen

    got = scenario(loop)
    assert got[0] == (["before", "boom"], False, False)
    assert got[1] == "usable"
    assert "after" in got[2]
    assert got == with_loop(stock_factory, scenario)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_timer_callback(loop, exc_type):
    def boom():
        raise exc_type()

    loop.call_later(0.001, boom)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_exception_handler_get_set(loop, stock_loop):
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    expected = outcome(stock_loop.set_exception_handler, "not callable")
    assert expected[0] is TypeError
    assert outcome(loop.set_exception_handler, "not callable") == expected


def test_call_exception_handler_calls_custom_handler(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append((lp, ctx)))
    ctx = {"message": "custom", "extra": 1}
    loop.call_exception_handler(ctx)
    assert calls == [(loop, ctx)]


def test_default_exception_handler_format_like_stock(loop, stock_loop, caplog):
    def scenario(lp):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            try:
                raise RuntimeError("inner")
            except RuntimeError as exc:
                lp.default_exception_handler({"message": "msg", "exception": exc, "foo": 42})
            lp.default_exception_handler({"message": "no exc"})
        return [
            (r.levelno, r.getMessage(), r.exc_info[0] if r.exc_info else None)
            for r in caplog.records
        ]

    assert scenario(loop) == scenario(stock_loop)


def test_raising_exception_handler_is_logged_not_fatal(loop, stock_loop, caplog):
    def scenario(lp):
        caplog.clear()
        seen = []

        def bad_handler(lp_, ctx):
            raise ZeroDivisionError("handler failed")

        lp.set_exception_handler(bad_handler)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            lp.call_soon(_fail, "cb")
            lp.call_soon(seen.append, "continued")
            lp.run_until_complete(asyncio.sleep(0.001))
            lp.call_exception_handler({"message": "direct"})
        records = [
            (r.levelno, r.getMessage().splitlines()[0], r.exc_info[0]) for r in caplog.records
        ]
        return seen, records

    got = scenario(loop)
    expected = scenario(stock_loop)
    assert expected[0] == ["continued"]
    assert any("Unhandled error in exception handler" in m for _, m, _ in expected[1])
    assert got == expected


def test_non_context_object_as_context_like_stock(loop_name, stock_loop):
    """A bogus context= fails when the callback runs, through the exception handler.

    Runs in a child interpreter: a crash must fail the test, not the suite.
    """
    code = (
        CHILD_PRELUDE
        + """
import json
loop = make_loop()
reports = []
loop.set_exception_handler(
    lambda lp, ctx: reports.append([ctx["message"], type(ctx["exception"]).__name__]))
loop.call_soon(print, context=5)
loop.call_soon(print, context="not a context")
loop.call_soon(reports.append, ["next callback ran", None])
loop.call_soon(loop.stop)
loop.run_forever()
loop.close()
print(json.dumps(reports))
"""
    )
    reports = []
    stock_loop.set_exception_handler(
        lambda lp, ctx: reports.append([ctx["message"], type(ctx["exception"]).__name__])
    )
    stock_loop.call_soon(print, context=5)
    stock_loop.call_soon(print, context="not a context")
    stock_loop.call_soon(reports.append, ["next callback ran", None])
    stock_loop.call_soon(stock_loop.stop)
    stock_loop.run_forever()
    assert len(reports) == 3
    out = check_child(run_python(code, loop_name))
    assert json.loads(out.splitlines()[-1]) == reports


def test_timers_scheduled_by_callbacks_like_stock(loop):
    def scenario(lp):
        seen = []

        def first():
            seen.append("first")
            lp.call_at(lp.time() - 1, seen.append, "timer in the past")
            lp.call_soon(seen.append, "soon from first")
            lp.call_later(0, seen.append, "later 0")

        lp.call_soon(first)
        lp.call_soon(seen.append, "second")
        lp.run_until_complete(asyncio.sleep(0.005))
        return seen

    got = scenario(loop)
    assert got[:2] == ["first", "second"]
    assert sorted(got[2:]) == ["later 0", "soon from first", "timer in the past"]
    assert got == with_loop(stock_factory, scenario)


def test_random_timer_schedule_and_cancel(loop):
    rng = random.Random(1234)
    n = 1500
    fired = []
    handles = {}
    expected = set()
    done_ids = set()

    def fire(i):
        fired.append((handles[i].when(), i))
        # Sometimes cancel a later timer from inside a callback.
        victim = rng.randrange(n)
        if victim in expected and victim not in done_ids and victim != i:
            handles[victim].cancel()
            expected.discard(victim)
        done_ids.add(i)

    base = loop.time()
    for i in range(n):
        if rng.random() < 0.5:
            handles[i] = loop.call_at(base + rng.uniform(0, 0.03), fire, i)
        else:
            handles[i] = loop.call_later(rng.uniform(-0.01, 0.03), fire, i)
        expected.add(i)
    for i in rng.sample(range(n), n // 4):
        handles[i].cancel()
        expected.discard(i)
    loop.run_until_complete(asyncio.sleep(0.06))
    assert {i for _, i in fired} == expected
    whens = [w for w, _ in fired]
    assert whens == sorted(whens)
    assert all(h.cancelled() for i, h in handles.items() if i not in expected)


def test_wakeup_ping_pong_never_lost(loop_name):
    """Many wake-ups from another thread while the loop has nothing else to do."""
    code = (
        CHILD_PRELUDE
        + """
import threading
loop = make_loop()
rounds = 2000
box = {}
ready = threading.Semaphore(0)

def worker():
    for _ in range(rounds):
        ready.acquire()
        loop.call_soon_threadsafe(box["fut"].set_result, None)

t = threading.Thread(target=worker)
t.start()
for _ in range(rounds):
    box["fut"] = loop.create_future()
    loop.call_soon(ready.release)
    loop.run_until_complete(box["fut"])
t.join()
loop.close()
print("done")
"""
    )
    out = check_child(run_python(code, loop_name, timeout=20))
    assert out.split() == ["done"]


def test_exception_handler_context_like_stock(loop):
    def scenario(lp):
        seen = []

        def fail():
            var.set("changed by callback")
            raise ValueError("x")

        lp.set_exception_handler(lambda _, ctx: seen.append(var.get()))
        ctx = contextvars.copy_context()
        ctx.run(var.set, "callback context")
        lp.call_soon(fail, context=ctx)
        lp.call_soon(fail)
        token = var.set("run_forever caller")
        try:
            lp.run_until_complete(asyncio.sleep(0))
        finally:
            var.reset(token)
        return seen

    got = scenario(loop)
    if sys.version_info >= (3, 12):
        # 3.12+ runs a custom handler in the failing handle's context.
        assert got == ["changed by callback", "changed by callback"]
    else:
        assert got == ["run_forever caller", "run_forever caller"]
    assert got == with_loop(stock_factory, scenario)


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_nan_deadline_like_stock(loop, method):
    def scenario(lp):
        seen = []
        result = outcome(getattr(lp, method), float("nan"), seen.append, "nan")
        lp.run_until_complete(asyncio.sleep(0.005))
        return result[0], seen

    expected = with_loop(stock_factory, scenario)
    assert expected == ("ok", ["nan"])
    assert scenario(loop) == expected
