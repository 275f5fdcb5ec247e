"""Debug mode: flags, slow callbacks, thread checks and warnings."""

import asyncio
import gc
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import warnings

import pytest
from loop_support import (
    CHILD_PRELUDE,
    check_child,
    child_env,
    outcome,
    run_python,
    stock_factory,
    with_loop,
)


def test_default_debug_like_stock(loop_factory):
    lp, stock = loop_factory(), stock_factory()
    try:
        assert lp.get_debug() == stock.get_debug()
        assert lp.get_debug() == (sys.flags.dev_mode or bool(os.environ.get("PYTHONASYNCIODEBUG")))
    finally:
        lp.close()
        stock.close()


def test_fixture_loops_follow_PYTHONASYNCIODEBUG(loop):
    """The `loop` fixture's debug mode is PYTHONASYNCIODEBUG's (conftest), so
    `make test-dbg`'s second run really runs the suite in debug mode; there
    goloop's call_soon/call_later take the Python path, which records the
    handle's source traceback as stock does."""
    debug = bool(os.environ.get("PYTHONASYNCIODEBUG"))
    assert loop.get_debug() is debug
    handles = [loop.call_soon(print), loop.call_later(1, print)]
    assert [h._source_traceback is not None for h in handles] == [debug, debug]
    for h in handles:
        h.cancel()


def _nested(depth, fn):
    return _nested(depth - 1, fn) if depth else fn()


@pytest.mark.parametrize(
    "method",
    [
        "call_soon",
        "call_soon_threadsafe",
        "call_at",
        "call_later",
    ],
)
def test_source_traceback_from_deep_stack_like_stock(loop, method):
    """The frames a debug-mode handle records are stock's when the stack is
    deeper than asyncio.constants.DEBUG_STACK_DEPTH (found by `make test-dbg`:
    the logged traceback of a failing callback had one frame more)."""

    def scenario(lp):
        lp.set_debug(True)

        def make():
            if method.startswith("call_soon"):
                return getattr(lp, method)(print)
            return getattr(lp, method)(lp.time() + 10 if method == "call_at" else 10, print)

        handle = _nested(20, make)
        handle.cancel()
        return [(f.name, f.lineno) for f in handle._source_traceback]

    assert scenario(loop) == with_loop(stock_factory, scenario)


def test_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False
    loop.set_debug(1)
    assert loop.get_debug()


DEBUG_CHILD = (
    CHILD_PRELUDE
    + """
import json
loop = make_loop()
flag = loop.get_debug()
loop.close()

async def main():
    return asyncio.get_running_loop().get_debug()

if LOOP_NAME == "goloop":
    import goloop
    in_run = goloop.run(main())
else:
    in_run = asyncio.run(main())
print(json.dumps([flag, in_run]))
"""
)


@pytest.mark.parametrize(
    "env, python_args, expected",
    [
        pytest.param({}, (), [False, False], id="default"),
        pytest.param({"PYTHONASYNCIODEBUG": "1"}, (), [True, True], id="PYTHONASYNCIODEBUG"),
        pytest.param({}, ("-X", "dev"), [True, True], id="dev-mode"),
    ],
)
def test_debug_from_environment(loop_name, env, python_args, expected):
    proc = run_python(DEBUG_CHILD, loop_name, env=child_env(**env), python_args=python_args)
    assert json.loads(check_child(proc).splitlines()[-1]) == expected


# ---------------------------------------------------------------- slow callbacks


def _normalize(message):
    message = re.sub(r"took \d+\.\d{3} seconds", "took N seconds", message)
    message = re.sub(r"when=\d+(\.\d+)?", "when=T", message)
    message = re.sub(r"Task-\d+", "Task-N", message)
    return re.sub(r"0x[0-9a-f]+", "0xADDR", message)


def _slow(duration):
    time.sleep(duration)


async def _slow_coro(duration):
    time.sleep(duration)


def test_slow_callback_warning_like_stock(loop, stock_loop, caplog):
    def scenario(lp):
        caplog.clear()
        lp.set_debug(True)
        lp.slow_callback_duration = 0.05
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            lp.call_soon(_slow, 0.1)
            lp.call_soon(_slow, 0)  # fast: no warning
            lp.call_later(0.001, _slow, 0.1)
            lp.run_until_complete(asyncio.sleep(0.01))
            lp.run_until_complete(_slow_coro(0.1))
        return [
            (r.levelno, _normalize(r.getMessage()))
            for r in caplog.records
            if "Executing" in r.getMessage()
        ]

    expected = scenario(stock_loop)
    assert len(expected) == 3
    assert expected[0][1].startswith("Executing <Handle _slow(0.1) at ")
    assert scenario(loop) == expected


def test_no_slow_callback_warning_without_debug(loop, caplog):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.01
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(_slow, 0.05)
        loop.run_until_complete(asyncio.sleep(0))
    assert not [r for r in caplog.records if "Executing" in r.getMessage()]


# ---------------------------------------------------------------- thread checks


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_non_threadsafe_call_from_other_thread_like_stock(loop, stock_loop, method):
    def scenario(lp):
        lp.set_debug(True)
        result = []
        done = lp.create_future()

        def call():
            if method == "call_soon":
                return lp.call_soon(print)
            if method == "call_later":
                return lp.call_later(3600, print)
            return lp.call_at(lp.time() + 3600, print)

        def worker():
            result.append(outcome(call))
            lp.call_soon_threadsafe(done.set_result, None)

        lp.call_soon(lambda: threading.Thread(target=worker).start())
        lp.run_until_complete(asyncio.wait_for(done, 10))
        return result

    expected = scenario(stock_loop)
    assert expected == [
        (
            RuntimeError,
            "Non-thread-safe operation invoked on an event loop other than the current one",
        )
    ]
    assert scenario(loop) == expected


def test_threadsafe_call_from_other_thread_allowed_in_debug(loop):
    loop.set_debug(True)
    done = loop.create_future()

    def worker():
        loop.call_soon_threadsafe(done.set_result, "ok")

    loop.call_soon(lambda: threading.Thread(target=worker).start())
    assert loop.run_until_complete(asyncio.wait_for(done, 10)) == "ok"


def test_calls_from_other_thread_allowed_when_not_running(loop):
    """The thread check only applies while the loop runs (stock behaviour)."""
    loop.set_debug(True)
    result = []
    t = threading.Thread(target=lambda: result.append(outcome(loop.call_soon, print)))
    t.start()
    t.join()
    assert result[0][0] == "ok"


# ---------------------------------------------------------------- exceptions


def test_debug_exception_context_has_source_traceback_like_stock(loop, stock_loop):
    def fail():
        raise ValueError("x")

    def scenario(lp):
        lp.set_debug(True)
        contexts = []
        lp.set_exception_handler(lambda _, ctx: contexts.append(ctx))
        lp.call_soon(fail)
        lp.call_later(0, fail)
        lp.run_until_complete(asyncio.sleep(0.005))
        return [(sorted(c), c["message"], c["source_traceback"][-1][2:]) for c in contexts]

    expected = scenario(stock_loop)
    assert len(expected) == 2
    assert "source_traceback" in expected[0][0]
    assert scenario(loop) == expected


# ---------------------------------------------------------------- warnings


async def _never_awaited():
    pass


def test_never_awaited_coroutine_warning_like_stock(loop):
    def scenario(lp):
        lp.set_debug(True)

        def make_and_drop():
            _never_awaited()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lp.call_soon(make_and_drop)
            lp.run_until_complete(asyncio.sleep(0))
            gc.collect()
        return [
            (w.category, str(w.message).splitlines()[0], "Coroutine created at" in str(w.message))
            for w in caught
            if "never awaited" in str(w.message)
        ]

    expected = with_loop(stock_factory, scenario)
    assert expected == [(RuntimeWarning, "coroutine '_never_awaited' was never awaited", True)]
    assert scenario(loop) == expected


def test_coroutine_origin_tracking_follows_debug_like_stock(loop):
    def scenario(lp):
        depths = []

        async def main():
            depths.append(sys.get_coroutine_origin_tracking_depth())
            lp.set_debug(True)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            depths.append(sys.get_coroutine_origin_tracking_depth())

        lp.set_debug(False)
        lp.run_until_complete(main())
        depths.append(sys.get_coroutine_origin_tracking_depth())
        return depths

    before = sys.get_coroutine_origin_tracking_depth()
    expected = with_loop(stock_factory, scenario)
    assert expected[0] == before
    assert expected[1] > 0
    assert scenario(loop) == expected


def test_unclosed_loop_resource_warning_like_stock(loop_factory):
    def scenario(factory):
        lp = factory()
        lp.set_debug(False)
        class_name = type(lp).__name__
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del lp
            gc.collect()
        return [
            (w.category, str(w.message).replace(class_name, "LOOP"))
            for w in caught
            if issubclass(w.category, ResourceWarning)
        ]

    expected = scenario(stock_factory)
    assert expected == [
        (ResourceWarning, "unclosed event loop <LOOP running=False closed=False debug=False>")
    ]
    assert scenario(loop_factory) == expected


def test_closed_loop_no_resource_warning(loop_factory):
    lp = loop_factory()
    lp.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del lp
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_default_handler_shows_current_handle_origin_like_stock(loop, stock_loop, caplog):
    def report():
        asyncio.get_running_loop().call_exception_handler({"message": "from a callback"})

    def scenario(lp):
        caplog.clear()
        lp.set_debug(True)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            lp.call_soon(report)
            lp.call_later(0, report)
            lp.run_until_complete(asyncio.sleep(0.005))
        # First line, the "created at" header, and the innermost frame.
        return [
            (lines[0], lines[1].split(":", 1)[1], lines[-2:])
            for lines in (r.getMessage().splitlines() for r in caplog.records)
        ]

    expected = scenario(stock_loop)
    assert len(expected) == 2
    assert all(m[1] == " Handle created at (most recent call last):" for m in expected)
    assert scenario(loop) == expected


def test_debug_reader_handle_has_source_traceback_like_stock(loop, stock_loop):
    def scenario(lp):
        lp.set_debug(True)
        a, b = socket.socketpair()
        try:
            contexts = []
            lp.set_exception_handler(lambda _, ctx: contexts.append(ctx))

            def on_read():
                a.recv(10)
                lp.remove_reader(a)
                raise ValueError("reader failed")

            lp.add_reader(a, on_read)
            b.send(b"x")
            lp.run_until_complete(asyncio.sleep(0.02))
            return [
                (sorted(c), c.get("source_traceback", [None])[-1] is not None) for c in contexts
            ]
        finally:
            a.close()
            b.close()

    expected = scenario(stock_loop)
    assert expected == [(["exception", "handle", "message", "source_traceback"], True)]
    assert scenario(loop) == expected


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_debug_io_handle_repr_like_stock(loop, stock_loop, method):
    def scenario(lp):
        lp.set_debug(True)
        a, b = socket.socketpair()
        try:
            reprs = []

            def cb():
                getattr(lp, "remove_" + method[4:])(a)

            def record(handle):
                reprs.append(repr(handle))

            # The handle is reachable through the exception handler context.
            lp.set_exception_handler(lambda _, ctx: record(ctx["handle"]))

            def failing():
                cb()
                raise ValueError("x")

            b.send(b"x")
            getattr(lp, method)(a, failing)
            lp.run_until_complete(asyncio.sleep(0.02))
            return [_normalize(r) for r in reprs]
        finally:
            a.close()
            b.close()

    expected = scenario(stock_loop)
    assert len(expected) == 1
    assert "created at" in expected[0]
    assert scenario(loop) == expected
