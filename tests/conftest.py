"""Shared fixtures: every behaviour test runs on the stock loop and on goloop.

The stock loop (asyncio.SelectorEventLoop, what asyncio.new_event_loop()
returns on Linux with the default policy) is the oracle: tests compute the
expected behaviour by running the same scenario on it.

A test that exposes a goloop bug is marked ``@pytest.mark.goloop_bug("...")``:
its goloop parametrization becomes ``xfail(strict=True, reason="goloop bug:
...")`` while the stock parametrization must still pass.
"""

import asyncio
import gc
import warnings

import pytest
from loop_support import FACTORIES, LOOP_DEBUG, stock_factory

LOOP_NAMES = ("asyncio", "goloop")

# The integration tier (make integration) needs packages the main suite's
# venvs do not have, and runs from its own rootdir (tests/integration/pytest.ini).
collect_ignore = ["integration"]


def pytest_report_header(config):
    return f"loops' debug mode: {'on' if LOOP_DEBUG else 'off'} (PYTHONASYNCIODEBUG)"


def pytest_addoption(parser):
    parser.addoption(
        "--goloop-only",
        action="store_true",
        help="deselect the stock loop's parametrizations (loop_name 'asyncio'): they run "
        "no goloop code, so the memory checks of goloop's C layer (make test-dbg, "
        "test-asan) leave them to the plain runs; goloop's still compare with stock",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "goloop_bug(reason): known goloop divergence from the stock loop; the goloop "
        "parametrization is xfail(strict=True)",
    )


def _loop_param(item):
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return callspec.params.get("loop_name")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--goloop-only"):
        stock = [item for item in items if _loop_param(item) == "asyncio"]
        if stock:
            config.hook.pytest_deselected(items=stock)
            items[:] = [item for item in items if _loop_param(item) != "asyncio"]
    for item in items:
        marker = item.get_closest_marker("goloop_bug")
        if marker is None:
            continue
        if _loop_param(item) == "goloop":
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"goloop bug: {reason}"))


@pytest.fixture(params=LOOP_NAMES)
def loop_name(request):
    """ "asyncio" or "goloop"."""
    return request.param


@pytest.fixture
def loop_factory(loop_name):
    """A zero-argument callable returning a new loop of the loop under test."""
    return FACTORIES[loop_name]


def _close(loop):
    if not loop.is_closed():
        loop.close()


@pytest.fixture
def loop(loop_factory):
    """A fresh loop of the kind under test, closed after the test.

    Debug mode is LOOP_DEBUG whatever else the environment says (-X dev), so
    results depend only on PYTHONASYNCIODEBUG; tests about debug mode set it
    themselves.
    """
    lp = loop_factory()
    lp.set_debug(LOOP_DEBUG)
    try:
        yield lp
    finally:
        _close(lp)


@pytest.fixture
def stock_loop():
    """A stock asyncio loop used as the oracle (debug mode as `loop`'s)."""
    lp = stock_factory()
    lp.set_debug(LOOP_DEBUG)
    try:
        yield lp
    finally:
        _close(lp)


@pytest.fixture(autouse=True)
def _isolation(request):
    """Leave no policy, current loop or running loop behind."""
    if "conformance" in request.node.path.parts:  # not ours
        yield
        return
    yield
    running = asyncio._get_running_loop()
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop_policy(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
    assert running is None, "a test left a running loop behind"
