"""Helpers shared by the test modules (imported as a plain module)."""

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

import goloop

#: Directory that holds the goloop package the tests imported, so that child
#: interpreters import the very same goloop.
GOLOOP_PATH = os.path.dirname(os.path.dirname(os.path.abspath(goloop.__file__)))

#: Generous bound used only to turn a hang into a failure.
HANG_TIMEOUT = 10.0


def stock_factory():
    """The stock loop: what asyncio.new_event_loop() gives on Linux by default."""
    return asyncio.SelectorEventLoop()


FACTORIES = {"asyncio": stock_factory, "goloop": goloop.new_event_loop}


def outcome(fn, *args, **kwargs):
    """Run fn and describe what happened: ("ok", result) or (exc type, message)."""
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # report any exception, even SystemExit
        return type(exc), str(exc)
    return "ok", result


def with_loop(factory, scenario):
    """Run scenario(loop) on a fresh loop from factory (debug off), then close it."""
    lp = factory()
    lp.set_debug(False)
    try:
        return scenario(lp)
    finally:
        if not lp.is_closed():
            lp.close()


def child_env(**extra):
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = GOLOOP_PATH + (os.pathsep + old if old else "")
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    env.update(extra)
    return env


def run_python(code, *args, timeout=HANG_TIMEOUT * 3, env=None, python_args=()):
    """Run `code` in a fresh interpreter; a hang fails the test instead of the suite."""
    cmd = [sys.executable, *python_args, "-c", textwrap.dedent(code), *args]
    try:
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env if env is not None else child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"child interpreter did not finish within {timeout} s (hang)\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        )


def check_child(proc):
    """Assert a child succeeded, showing its output otherwise."""
    assert proc.returncode == 0, (
        f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


#: Code snippet defining make_loop() for child interpreters; argv[1] is the loop name.
CHILD_PRELUDE = """
import asyncio
import sys

LOOP_NAME = sys.argv[1]

def make_loop():
    if LOOP_NAME == "goloop":
        import goloop
        return goloop.new_event_loop()
    return asyncio.SelectorEventLoop()
"""
