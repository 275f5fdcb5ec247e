"""Futures, tasks, task factories, async generators, executors and asyncio helpers."""

import asyncio
import concurrent.futures
import contextvars
import functools
import gc
import sys
import threading
import warnings

import pytest
from loop_support import outcome, stock_factory, with_loop

var = contextvars.ContextVar("var", default="default")


# ---------------------------------------------------------------- futures


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, "value")
    assert loop.run_until_complete(fut) == "value"


def test_future_done_callbacks_run_through_loop(loop):
    def scenario(lp):
        seen = []
        fut = lp.create_future()
        fut.add_done_callback(lambda f: seen.append(("cb1", f.result())))
        fut.add_done_callback(lambda f: seen.append(("cb2", f.result())))
        fut.set_result(1)
        seen.append("set")  # callbacks are scheduled, not run inline
        lp.run_until_complete(asyncio.sleep(0))
        return seen

    got = scenario(loop)
    assert got == ["set", ("cb1", 1), ("cb2", 1)]
    assert got == with_loop(stock_factory, scenario)


def test_future_exception_and_cancel(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_exception, KeyError("k"))
    with pytest.raises(KeyError):
        loop.run_until_complete(fut)
    fut2 = loop.create_future()
    loop.call_soon(fut2.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut2)


# ---------------------------------------------------------------- tasks


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    task = loop.create_task(coro(), name="my-task")
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == "my-task"
    unnamed = loop.create_task(coro())
    assert unnamed.get_name().startswith("Task-")
    loop.run_until_complete(unnamed)


def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "from ctx")

    async def coro():
        before = var.get()
        var.set("changed in task")
        await asyncio.sleep(0)
        return before, var.get()

    task = loop.create_task(coro(), context=ctx)
    assert loop.run_until_complete(task) == ("from ctx", "changed in task")
    assert ctx[var] == "changed in task"
    assert var.get() == "default"


def test_task_copies_current_context(loop):
    async def child():
        var.set("child")
        return var.get()

    async def parent():
        var.set("parent")
        result = await loop.create_task(child())
        return result, var.get()

    assert loop.run_until_complete(parent()) == ("child", "parent")


def test_current_task_and_all_tasks(loop):
    async def inner():
        await asyncio.sleep(0.01)

    async def main():
        me = asyncio.current_task()
        others = [loop.create_task(inner()) for _ in range(3)]
        tasks = asyncio.all_tasks()
        await asyncio.gather(*others)
        return me, others, tasks

    me, others, tasks = loop.run_until_complete(main())
    assert me in tasks
    assert set(others) <= tasks
    assert asyncio.all_tasks(loop) == set()


def test_task_cancel(loop):
    log = []

    async def sleeper():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def main():
        t = loop.create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel("reason")
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert loop.run_until_complete(main()) is True
    assert log == ["cancelled"]


# ---------------------------------------------------------------- task factory


def test_task_factory(loop, stock_loop):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append((lp, kwargs.get("context")))
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def coro():
        return asyncio.current_task().get_name()

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    t = loop.create_task(coro(), name="named")
    assert loop.run_until_complete(t) == "named"
    ctx = contextvars.copy_context()
    loop.run_until_complete(loop.create_task(coro(), context=ctx))
    assert [c[0] for c in calls] == [loop, loop]
    assert calls[1][1] is ctx
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None

    expected = outcome(stock_loop.set_task_factory, 42)
    assert expected[0] is TypeError
    assert outcome(loop.set_task_factory, 42) == expected


def test_task_factory_used_by_asyncio_helpers(loop):
    made = []

    def factory(lp, coro, **kwargs):
        task = asyncio.Task(coro, loop=lp, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)

    async def child():
        return 1

    async def main():
        return await asyncio.gather(child(), child())

    assert loop.run_until_complete(main()) == [1, 1]
    assert len(made) == 3  # main + two children


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory needs 3.12")
def test_eager_task_factory_like_stock(loop):
    def scenario(lp):
        log = []

        async def no_await():
            log.append("no_await ran")
            return "eager result"

        async def with_await():
            log.append("with_await started")
            await asyncio.sleep(0)
            log.append("with_await resumed")
            return "lazy result"

        async def main():
            t1 = asyncio.create_task(no_await())
            log.append(("t1 done at once", t1.done()))
            t2 = asyncio.create_task(with_await())
            log.append(("t2 done at once", t2.done()))
            log.append(await t1)
            log.append(await t2)

        lp.set_task_factory(asyncio.eager_task_factory)
        lp.run_until_complete(main())
        return log

    got = scenario(loop)
    assert got[:2] == ["no_await ran", ("t1 done at once", True)]
    assert got == with_loop(stock_factory, scenario)


# ---------------------------------------------------------------- async generators


def test_shutdown_asyncgens_finalizes_suspended_generators(loop):
    log = []

    async def agen(tag):
        try:
            yield 1
            yield 2
        finally:
            log.append((tag, asyncio.get_running_loop() is loop))

    gens = []

    async def main():
        for tag in ("a", "b"):
            g = agen(tag)
            await g.__anext__()
            gens.append(g)

    loop.run_until_complete(main())
    assert log == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert sorted(log) == [("a", True), ("b", True)]


def test_asyncgen_finalized_by_gc_while_running(loop):
    log = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            log.append(asyncio.get_running_loop() is loop)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert log == [True]


def test_asyncgen_after_shutdown_like_stock(loop, stock_loop):
    async def agen():
        yield 1

    def scenario(lp):
        lp.run_until_complete(lp.shutdown_asyncgens())

        async def use():
            g = agen()
            await g.__anext__()
            await g.aclose()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lp.run_until_complete(use())
        return sorted(
            (w.category, str(w.message).split(" was ", 1)[-1])
            for w in caught
            if issubclass(w.category, ResourceWarning)
        )

    expected = scenario(stock_loop)
    assert expected
    assert scenario(loop) == expected


# ---------------------------------------------------------------- executors


def test_run_in_executor_default(loop):
    main_thread = threading.get_ident()

    def work(a, b, *, c):
        return a + b + c, threading.get_ident()

    fut = loop.run_in_executor(None, functools.partial(work, 1, 2, c=3))
    assert isinstance(fut, asyncio.Future)
    result, tid = loop.run_until_complete(fut)
    assert result == 6
    assert tid != main_thread


def test_run_in_executor_args_and_exception(loop):
    def fail(msg):
        raise OSError(msg)

    assert loop.run_until_complete(loop.run_in_executor(None, pow, 2, 10)) == 1024
    with pytest.raises(OSError, match="from thread"):
        loop.run_until_complete(loop.run_in_executor(None, fail, "from thread"))


def test_run_in_executor_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom-pool") as ex:
        name = loop.run_until_complete(
            loop.run_in_executor(ex, lambda: threading.current_thread().name)
        )
    assert name.startswith("custom-pool")


def test_run_in_executor_many_concurrent(loop):
    async def main():
        futs = [loop.run_in_executor(None, pow, i, 2) for i in range(200)]
        return await asyncio.gather(*futs)

    assert loop.run_until_complete(main()) == [i * i for i in range(200)]


def test_run_in_executor_coroutine_debug_like_stock(loop, stock_loop):
    async def coro_fn():
        pass

    def scenario(lp):
        lp.set_debug(True)
        return outcome(lp.run_in_executor, None, coro_fn)

    expected = scenario(stock_loop)
    assert expected[0] is TypeError
    assert scenario(loop) == expected


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="default-pool")
    loop.set_default_executor(ex)
    name = loop.run_until_complete(
        loop.run_in_executor(None, lambda: threading.current_thread().name)
    )
    assert name.startswith("default-pool")
    loop.run_until_complete(loop.shutdown_default_executor())


@pytest.mark.parametrize(
    "make_executor",
    [
        pytest.param(lambda: concurrent.futures.ProcessPoolExecutor(1), id="process-pool"),
        pytest.param(lambda: object(), id="object"),
        pytest.param(lambda: None, id="None"),
    ],
)
def test_set_default_executor_rejects_non_thread_pool_like_stock(loop, stock_loop, make_executor):
    ex = make_executor()
    try:
        with warnings.catch_warnings(record=True) as stock_warnings:
            warnings.simplefilter("always")
            expected = outcome(stock_loop.set_default_executor, ex)
        with warnings.catch_warnings(record=True) as got_warnings:
            warnings.simplefilter("always")
            got = outcome(loop.set_default_executor, ex)
    finally:
        if isinstance(ex, concurrent.futures.Executor):
            ex.shutdown(wait=True)
    assert got == expected
    assert [(w.category, str(w.message)) for w in got_warnings] == [
        (w.category, str(w.message)) for w in stock_warnings
    ]


def test_shutdown_default_executor_like_stock(loop, stock_loop):
    def scenario(lp):
        threads = []

        def record():
            threads.append(threading.current_thread())

        lp.run_until_complete(lp.run_in_executor(None, record))
        lp.run_until_complete(lp.shutdown_default_executor())
        joined = not threads[0].is_alive()
        return joined, outcome(lp.run_in_executor, None, record)

    expected = scenario(stock_loop)
    assert expected[0] is True
    assert expected[1][0] is RuntimeError
    assert scenario(loop) == expected


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="shutdown_default_executor(timeout=) needs 3.12"
)
def test_shutdown_default_executor_timeout_like_stock(loop, stock_loop):
    def scenario(lp):
        release = threading.Event()
        started = threading.Event()

        def blocker():
            started.set()
            release.wait(10)

        fut = lp.run_in_executor(None, blocker)
        started.wait(10)
        lp.call_later(0.3, release.set)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lp.run_until_complete(lp.shutdown_default_executor(timeout=0.05))
        release.set()
        lp.run_until_complete(fut)
        return [(w.category, str(w.message)) for w in caught]

    expected = scenario(stock_loop)
    if not expected:
        # Early 3.12 releases only bounded the final thread join by `timeout`.
        pytest.skip("this Python's shutdown_default_executor does not time out the shutdown")
    assert len(expected) == 1
    assert scenario(loop) == expected


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="shutdown_default_executor(timeout=) needs 3.12"
)
def test_shutdown_default_executor_timeout_not_reached(loop):
    loop.run_until_complete(loop.run_in_executor(None, pow, 2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop.run_until_complete(loop.shutdown_default_executor(timeout=10))


# ---------------------------------------------------------------- asyncio helpers


def test_gather(loop):
    async def value(v, delay):
        await asyncio.sleep(delay)
        return v

    async def fail():
        await asyncio.sleep(0)
        raise ValueError("failed")

    async def main():
        ordered = await asyncio.gather(value("a", 0.01), value("b", 0), value("c", 0.005))
        mixed = await asyncio.gather(value(1, 0), fail(), return_exceptions=True)
        return ordered, mixed

    ordered, mixed = loop.run_until_complete(main())
    assert ordered == ["a", "b", "c"]
    assert mixed[0] == 1
    assert isinstance(mixed[1], ValueError)


def test_wait_for(loop):
    async def slow():
        await asyncio.sleep(10)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(), 0.01)
        return await asyncio.wait_for(asyncio.sleep(0, "fast"), 10)

    assert loop.run_until_complete(main()) == "fast"


def test_timeout_context_manager(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        cm = asyncio.timeout(None)
        with pytest.raises(TimeoutError):
            async with cm:
                cm.reschedule(loop.time() + 0.01)
                await asyncio.sleep(10)
        return cm.expired()

    assert loop.run_until_complete(main()) is True


def test_timeout_at(loop):
    async def main():
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() + 0.02):
                await asyncio.sleep(10)
        return loop.time() - start

    elapsed = loop.run_until_complete(main())
    assert elapsed >= 0.02 - 1e-3


def test_sleep(loop):
    async def main():
        start = loop.time()
        value = await asyncio.sleep(0.02, "slept")
        return value, loop.time() - start

    value, elapsed = loop.run_until_complete(main())
    assert value == "slept"
    assert elapsed >= 0.02 - 1e-3


def test_sleep_zero_yields(loop):
    def scenario(lp):
        log = []

        async def worker(tag):
            for i in range(3):
                log.append((tag, i))
                await asyncio.sleep(0)

        async def main():
            await asyncio.gather(worker("a"), worker("b"))

        lp.run_until_complete(main())
        return log

    got = scenario(loop)
    assert got == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert got == with_loop(stock_factory, scenario)


def test_wait_first_completed(loop):
    async def main():
        fast = loop.create_task(asyncio.sleep(0.001, "fast"))
        slow = loop.create_task(asyncio.sleep(10, "slow"))
        done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
        slow.cancel()
        return done == {fast}, pending == {slow}

    assert loop.run_until_complete(main()) == (True, True)


def test_task_group(loop):
    async def child(i):
        await asyncio.sleep(0.001 * i)
        return i

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(i)) for i in range(5)]
        return [t.result() for t in tasks]

    assert loop.run_until_complete(main()) == list(range(5))


def test_queue_producer_consumer(loop):
    async def main():
        q = asyncio.Queue(maxsize=2)
        out = []

        async def producer():
            for i in range(20):
                await q.put(i)
            await q.put(None)

        async def consumer():
            while (item := await q.get()) is not None:
                out.append(item)

        await asyncio.gather(producer(), consumer())
        return out

    assert loop.run_until_complete(main()) == list(range(20))


def test_run_coroutine_threadsafe(loop):
    results = []

    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    def worker():
        fut = asyncio.run_coroutine_threadsafe(add(1, 2), loop)
        results.append(fut.result(10))
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=worker)
    loop.call_soon(t.start)
    guard = loop.call_later(10, loop.stop)  # hang detector only
    loop.run_forever()
    guard.cancel()
    t.join()
    assert results == [3]
