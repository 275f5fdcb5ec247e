"""add_signal_handler / remove_signal_handler, and Ctrl+C."""

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from loop_support import (
    CHILD_PRELUDE,
    HANG_TIMEOUT,
    check_child,
    child_env,
    outcome,
    run_python,
    stock_factory,
    with_loop,
)


async def _coro_fn():
    pass


def _noop(*args):
    pass


@pytest.fixture(autouse=True)
def _restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    signal.set_wakeup_fd(-1)


# ---------------------------------------------------------------- validation


BAD_SIGNALS = {
    "str": "SIGUSR1",
    "float": 10.0,
    "None": None,
    "zero": 0,
    "negative": -1,
    "NSIG": signal.NSIG,
    "huge": 10**6,
}


@pytest.mark.parametrize("method", ["add_signal_handler", "remove_signal_handler"])
@pytest.mark.parametrize("sig", list(BAD_SIGNALS.values()), ids=list(BAD_SIGNALS))
def test_invalid_signal_like_stock(loop, stock_loop, method, sig):
    args = (sig, _noop) if method == "add_signal_handler" else (sig,)
    expected = outcome(getattr(stock_loop, method), *args)
    assert expected[0] in (TypeError, ValueError)
    assert outcome(getattr(loop, method), *args) == expected


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signal_like_stock(loop, stock_loop, sig):
    expected = outcome(stock_loop.add_signal_handler, sig, _noop)
    assert expected[0] is RuntimeError
    assert outcome(loop.add_signal_handler, sig, _noop) == expected
    assert loop.remove_signal_handler(sig) is stock_loop.remove_signal_handler(sig) is False


@pytest.mark.parametrize("kind", ["coroutine function", "coroutine"])
def test_coroutine_callback_rejected_like_stock(loop, stock_loop, kind):
    def attempt(lp):
        cb = _coro_fn if kind == "coroutine function" else _coro_fn()
        try:
            return outcome(lp.add_signal_handler, signal.SIGUSR1, cb)
        finally:
            if asyncio.iscoroutine(cb):
                cb.close()

    expected = attempt(stock_loop)
    assert expected[0] is TypeError
    assert attempt(loop) == expected
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_add_signal_handler_outside_main_thread_like_stock(loop, stock_loop):
    def attempt(lp):
        result = []
        t = threading.Thread(
            target=lambda: result.append(outcome(lp.add_signal_handler, signal.SIGUSR1, _noop))
        )
        t.start()
        t.join()
        return result[0]

    expected = attempt(stock_loop)
    assert expected[0] is RuntimeError
    assert attempt(loop) == expected


def test_remove_unregistered_returns_false(loop):
    assert loop.remove_signal_handler(signal.SIGUSR2) is False


# ---------------------------------------------------------------- delivery


def test_handler_runs_after_kill(loop):
    fut = loop.create_future()
    seen = []

    def handler(*args):
        seen.append((args, asyncio.get_running_loop() is loop))
        if not fut.done():
            fut.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler, "arg", 2)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.run_until_complete(asyncio.wait_for(fut, HANG_TIMEOUT))
    assert seen == [(("arg", 2), True)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_two_signals_and_replacement(loop):
    seen = []
    done = loop.create_future()

    def record(tag):
        seen.append(tag)
        if len(seen) == 2 and not done.done():
            done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, record, "replaced")
    loop.add_signal_handler(signal.SIGUSR1, record, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, record, "usr2")
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR2)
    loop.run_until_complete(asyncio.wait_for(done, HANG_TIMEOUT))
    assert seen == ["usr1", "usr2"]


def test_signal_from_other_thread_wakes_idle_loop(loop_name):
    """The loop waits with no timer; a signal sent by another thread wakes it."""
    code = (
        CHILD_PRELUDE
        + """
import os, signal, threading, time
loop = make_loop()
fut = loop.create_future()
loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result("signalled"))

def worker():
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGUSR1)

threading.Thread(target=worker).start()
print(loop.run_until_complete(fut))
loop.close()
"""
    )
    out = check_child(run_python(code, loop_name, timeout=HANG_TIMEOUT))
    assert out.split() == ["signalled"]


def test_close_removes_signal_handlers_like_stock(loop_factory):
    def scenario(factory):
        lp = factory()
        lp.add_signal_handler(signal.SIGUSR1, _noop)
        during = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN)
        lp.close()
        return during, signal.getsignal(signal.SIGUSR1), signal.set_wakeup_fd(-1)

    expected = scenario(stock_factory)
    assert expected == (True, signal.SIG_DFL, -1)
    assert scenario(loop_factory) == expected


def test_remove_sigint_handler_restores_default_int_handler(loop, stock_loop):
    def scenario(lp):
        lp.add_signal_handler(signal.SIGINT, _noop)
        lp.remove_signal_handler(signal.SIGINT)
        return signal.getsignal(signal.SIGINT)

    expected = scenario(stock_loop)
    assert expected is signal.default_int_handler
    assert scenario(loop) is expected


def test_running_leaves_wakeup_fd_alone(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            signal.set_wakeup_fd(a.fileno())
            lp.run_until_complete(asyncio.sleep(0.001))
            restored = signal.set_wakeup_fd(-1)
            lp.run_until_complete(asyncio.sleep(0.001))
            return restored == a.fileno(), signal.set_wakeup_fd(-1)
        finally:
            a.close()
            b.close()

    expected = with_loop(stock_factory, scenario)
    assert expected == (True, -1)
    assert scenario(loop) == expected


# ---------------------------------------------------------------- Ctrl+C

CTRL_C_CHILD = """
import asyncio, sys
LOOP_NAME, SCENARIO = sys.argv[1], sys.argv[2]

async def main():
    loop = asyncio.get_running_loop()
    if SCENARIO == "handler_removed":  # the loop gave back signal.set_wakeup_fd()
        import signal
        loop.add_signal_handler(signal.SIGUSR1, print)
        loop.remove_signal_handler(signal.SIGUSR1)
    print("ready", flush=True)
    if SCENARIO == "sleep":
        await asyncio.sleep(30)
    elif SCENARIO == "busy":  # callbacks always ready: the loop never blocks
        while True:
            await asyncio.sleep(0)
    else:  # no timer at all: the loop waits in the poller with no deadline
        await loop.create_future()

if SCENARIO == "run_forever":
    if LOOP_NAME == "goloop":
        import goloop
        loop = goloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    loop.call_soon(lambda: print("ready", flush=True))
    loop.run_forever()
elif LOOP_NAME == "goloop":
    import goloop
    goloop.run(main())
else:
    asyncio.run(main())
"""


def _wait_for_line(proc, timeout):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return None
    return proc.stdout.readline()


def _sigint_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("scenario", ["sleep", "future", "busy", "handler_removed", "run_forever"])
def test_ctrl_c_interrupts_running_loop(loop_name, scenario):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_CHILD), loop_name, scenario],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        # SIGINT at its default, as in a terminal: a suite started in the
        # background by a non-interactive shell inherits SIGINT ignored,
        # and Python then installs no KeyboardInterrupt handler at all.
        preexec_fn=_sigint_default,
    )
    try:
        line = _wait_for_line(proc, HANG_TIMEOUT)
        assert line is not None and line.strip() == "ready", proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl+C did not stop the loop (hang)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in err, err
    # An uncaught KeyboardInterrupt makes Python exit through SIGINT.
    assert proc.returncode == -signal.SIGINT, err
