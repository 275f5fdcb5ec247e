"""run_forever / run_until_complete / stop / close, and their misuse."""

import asyncio
import threading

import pytest
from loop_support import FACTORIES, outcome, stock_factory, with_loop


async def _coro(value=None):
    return value


def _with_coro(fn):
    """fn(coroutine), closing the coroutine whatever fn does with it."""
    coro = _coro()
    try:
        return fn(coro)
    finally:
        coro.close()


# ---------------------------------------------------------------- basics


def test_run_until_complete_returns_result(loop):
    assert loop.run_until_complete(_coro(42)) == 42
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "fut")
    assert loop.run_until_complete(fut) == "fut"
    task = loop.create_task(_coro("task"))
    assert loop.run_until_complete(task) == "task"
    # An already finished future returns at once.
    assert loop.run_until_complete(task) == "task"


def test_run_until_complete_generic_awaitable(loop):
    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    assert loop.run_until_complete(Awaitable()) == "awaited"


def test_run_until_complete_propagates_exception(loop):
    async def fail():
        await asyncio.sleep(0)
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        loop.run_until_complete(fail())
    assert not loop.is_running()
    assert loop.run_until_complete(_coro(1)) == 1


def test_run_forever_and_stop(loop):
    states = []

    def cb():
        states.append(loop.is_running())
        loop.stop()

    assert not loop.is_running()
    loop.call_soon(cb)
    loop.run_forever()
    assert states == [True]
    assert not loop.is_running()
    assert not loop.is_closed()
    # It can run again.
    loop.call_later(0.001, loop.stop)
    loop.run_forever()


def test_stop_from_another_thread(loop):
    started = threading.Event()

    def worker():
        started.wait(10)
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=worker)
    t.start()
    loop.call_soon(started.set)
    guard = loop.call_later(10, loop.stop)  # hang detector only
    loop.run_forever()
    t.join()
    assert not guard.cancelled()
    guard.cancel()


def test_stop_before_run_forever_runs_one_iteration(loop):
    def scenario(lp):
        seen = []

        def first():
            seen.append("first")
            lp.call_soon(seen.append, "scheduled by first")

        lp.call_soon(first)
        lp.call_soon(seen.append, "second")
        lp.stop()
        lp.run_forever()
        after_first_run = list(seen)
        lp.call_soon(lp.stop)
        lp.run_forever()
        return after_first_run, seen

    got = scenario(loop)
    assert got[0] == ["first", "second"]
    assert got[1] == ["first", "second", "scheduled by first"]
    assert got == with_loop(stock_factory, scenario)


def test_stop_twice_before_run(loop):
    loop.stop()
    loop.stop()
    loop.run_forever()
    assert not loop.is_running()


def test_stop_before_run_until_complete_like_stock(loop, stock_loop):
    def scenario(lp):
        lp.stop()
        fut = lp.create_future()
        return outcome(lp.run_until_complete, fut)

    expected = scenario(stock_loop)
    assert expected == (RuntimeError, "Event loop stopped before Future completed.")
    assert scenario(loop) == expected


def test_stop_inside_run_until_complete_like_stock(loop, stock_loop):
    async def main(lp):
        lp.stop()
        await asyncio.sleep(10)

    def scenario(lp):
        task = lp.create_task(main(lp))
        result = outcome(lp.run_until_complete, task)
        task.cancel()
        lp.run_until_complete(asyncio.sleep(0))
        return result

    expected = scenario(stock_loop)
    assert expected[0] is RuntimeError
    assert scenario(loop) == expected


def test_close(loop):
    seen = []
    loop.call_soon(seen.append, "never")
    loop.call_later(0, seen.append, "never")
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    assert loop.is_closed()
    assert seen == []


# ---------------------------------------------------------------- closed loop


def _dummy():
    pass


CLOSED_CALLS = {
    "call_soon": lambda lp: lp.call_soon(_dummy),
    "call_soon_threadsafe": lambda lp: lp.call_soon_threadsafe(_dummy),
    "call_later": lambda lp: lp.call_later(1, _dummy),
    "call_at": lambda lp: lp.call_at(1, _dummy),
    "run_forever": lambda lp: lp.run_forever(),
    "run_until_complete": lambda lp: _with_coro(lp.run_until_complete),
    "create_task": lambda lp: _with_coro(lp.create_task),
    "run_in_executor": lambda lp: lp.run_in_executor(None, _dummy),
    "add_reader": lambda lp: lp.add_reader(0, _dummy),
    "add_writer": lambda lp: lp.add_writer(1, _dummy),
    "remove_reader": lambda lp: lp.remove_reader(0),
    "remove_writer": lambda lp: lp.remove_writer(1),
    "add_signal_handler": lambda lp: lp.add_signal_handler(10, _dummy),
    "set_debug": lambda lp: lp.set_debug(True),
    "time": lambda lp: type(lp.time()),
    "create_future": lambda lp: type(lp.create_future()).__name__,
    "stop": lambda lp: lp.stop(),
}


@pytest.mark.parametrize("method", sorted(CLOSED_CALLS))
def test_methods_on_closed_loop_like_stock(loop, stock_loop, method):
    call = CLOSED_CALLS[method]
    stock_loop.close()
    loop.close()
    expected = outcome(call, stock_loop)
    assert outcome(call, loop) == expected


def test_run_until_complete_on_closed_loop(loop):
    loop.close()
    coro = _coro()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()


# ---------------------------------------------------------------- re-entrancy


def test_run_forever_while_running_like_stock(loop, stock_loop):
    def scenario(lp):
        result = []

        def cb():
            result.append(outcome(lp.run_forever))
            result.append(outcome(_with_coro, lp.run_until_complete))
            lp.stop()

        lp.call_soon(cb)
        lp.run_forever()
        return result

    expected = scenario(stock_loop)
    assert expected[0] == (RuntimeError, "This event loop is already running")
    assert scenario(loop) == expected


def test_run_from_another_thread_while_running_like_stock(loop, stock_loop):
    def scenario(lp):
        result = []

        def worker():
            result.append(outcome(lp.run_forever))
            lp.call_soon_threadsafe(lp.stop)

        lp.call_soon(lambda: threading.Thread(target=worker).start())
        guard = lp.call_later(10, lp.stop)  # hang detector only
        lp.run_forever()
        guard.cancel()
        return result

    expected = scenario(stock_loop)
    assert expected[0][0] is RuntimeError
    assert scenario(loop) == expected


@pytest.mark.parametrize("inner_name", ["asyncio", "goloop"])
def test_running_another_loop_in_same_thread_like_stock(loop_factory, inner_name):
    def scenario(outer_factory):
        outer = outer_factory()
        inner = FACTORIES[inner_name]()
        result = []

        def cb():
            result.append(outcome(_with_coro, inner.run_until_complete))
            result.append(outcome(inner.run_forever))
            outer.stop()

        try:
            outer.call_soon(cb)
            outer.run_forever()
            # Both loops still work afterwards.
            result.append(inner.run_until_complete(_coro("inner ok")))
            result.append(outer.run_until_complete(_coro("outer ok")))
        finally:
            outer.close()
            inner.close()
        return result

    expected = scenario(stock_factory)
    assert expected[0] == (
        RuntimeError,
        "Cannot run the event loop while another loop is running",
    )
    assert scenario(loop_factory) == expected


def test_close_while_running_like_stock(loop, stock_loop):
    def scenario(lp):
        result = []

        def cb():
            result.append(outcome(lp.close))
            result.append(lp.is_closed())
            lp.stop()

        lp.call_soon(cb)
        lp.run_forever()
        return result

    expected = scenario(stock_loop)
    assert expected == [(RuntimeError, "Cannot close a running event loop"), False]
    assert scenario(loop) == expected
    assert not loop.is_closed()


@pytest.mark.parametrize("arg", [1, None, "str", _dummy, [1]])
def test_run_until_complete_non_awaitable_like_stock(loop, stock_loop, arg):
    expected = outcome(stock_loop.run_until_complete, arg)
    assert expected[0] is TypeError
    assert outcome(loop.run_until_complete, arg) == expected
    assert loop.run_until_complete(_coro("still usable")) == "still usable"


@pytest.mark.parametrize("other_name", ["asyncio", "goloop"])
def test_run_until_complete_foreign_future_like_stock(loop, stock_loop, other_name):
    def scenario(lp):
        other = FACTORIES[other_name]()
        try:
            fut = other.create_future()
            return outcome(lp.run_until_complete, fut)
        finally:
            other.close()

    expected = scenario(stock_loop)
    assert expected[0] is ValueError
    assert scenario(loop) == expected


# ---------------------------------------------------------------- callbacks misuse


def _callback_misuse_args(kind):
    async def coro_fn():
        pass

    if kind == "coroutine":
        return coro_fn()
    if kind == "coroutine function":
        return coro_fn
    return {"int": 1, "str": "x", "None": None}[kind]


def _schedule(lp, method, callback):
    if method in ("call_soon", "call_soon_threadsafe"):
        return getattr(lp, method)(callback)
    if method == "call_later":
        return lp.call_later(1, callback)
    return lp.call_at(lp.time() + 1, callback)


@pytest.mark.parametrize("kind", ["coroutine", "coroutine function", "int", "str", "None"])
@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_debug_mode_rejects_bad_callbacks_like_stock(loop, stock_loop, method, kind):
    def scenario(lp):
        lp.set_debug(True)
        callback = _callback_misuse_args(kind)
        try:
            return outcome(_schedule, lp, method, callback)
        finally:
            if asyncio.iscoroutine(callback):
                callback.close()

    expected = scenario(stock_loop)
    assert expected[0] is TypeError
    assert scenario(loop) == expected


def test_non_debug_non_callable_reported_when_run_like_stock(loop, stock_loop):
    def scenario(lp):
        contexts = []
        lp.set_debug(False)
        lp.set_exception_handler(lambda _, ctx: contexts.append(ctx))
        lp.call_soon(1)
        lp.call_soon(lp.stop)
        lp.run_forever()
        return [(c["message"], type(c["exception"]), str(c["exception"])) for c in contexts]

    expected = scenario(stock_loop)
    assert len(expected) == 1
    assert scenario(loop) == expected


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp: lp.call_later(None, _dummy), id="call_later-None"),
        pytest.param(lambda lp: lp.call_at(None, _dummy), id="call_at-None"),
        pytest.param(lambda lp: lp.call_later("1", _dummy), id="call_later-str"),
    ],
)
def test_bad_delays_like_stock(loop, stock_loop, call, debug):
    loop.set_debug(debug)
    stock_loop.set_debug(debug)
    expected = outcome(call, stock_loop)
    assert expected[0] is TypeError
    assert outcome(call, loop) == expected


def test_call_later_accepts_int_and_negative_delays(loop):
    seen = []
    loop.call_later(0, seen.append, "zero")
    loop.call_later(-1, seen.append, "negative")
    loop.call_later(False, seen.append, "bool")
    loop.run_until_complete(asyncio.sleep(0.005))
    assert sorted(seen) == ["bool", "negative", "zero"]


# ---------------------------------------------------------------- threads and subclasses


def test_loop_runs_in_a_worker_thread(loop_factory):
    result = {}

    def worker():
        lp = loop_factory()
        try:

            async def main():
                fut = lp.create_future()
                lp.call_later(0.005, fut.set_result, "timer")
                value = await fut
                in_executor = await lp.run_in_executor(None, pow, 3, 3)
                return value, in_executor, threading.current_thread() is not threading.main_thread()

            result["value"] = lp.run_until_complete(main())
        finally:
            lp.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    assert not t.is_alive(), "loop in worker thread hung"
    assert result["value"] == ("timer", 27, True)


def test_loops_in_several_threads_at_once(loop_factory):
    n = 4
    results = [None] * n
    barrier = threading.Barrier(n)

    def worker(i):
        lp = loop_factory()
        try:

            async def main():
                barrier.wait(10)
                total = 0
                for k in range(50):
                    await asyncio.sleep(0.0005)
                    total += k
                return total

            results[i] = lp.run_until_complete(main())
        finally:
            lp.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert results == [sum(range(50))] * n


def test_subclass_overrides_are_used(loop):
    base = type(loop)
    calls = []

    class Sub(base):
        def call_exception_handler(self, context):
            calls.append(("handler", context["message"].split(" at ")[0]))

        def call_soon(self, callback, *args, context=None):
            calls.append(("call_soon", getattr(callback, "__name__", "?")))
            return super().call_soon(callback, *args, context=context)

    def fail():
        raise ValueError("x")

    lp = Sub()
    try:
        lp.call_soon(fail)
        fut = lp.create_future()
        fut.add_done_callback(lambda f: None)
        fut.set_result(None)  # futures schedule their callbacks with loop.call_soon
        lp.run_until_complete(asyncio.sleep(0))
    finally:
        lp.close()
    assert ("call_soon", "fail") in calls
    message = "Exception in callback test_subclass_overrides_are_used.<locals>.fail()"
    assert ("handler", message) in calls
    assert sum(1 for c in calls if c[0] == "call_soon") >= 2
