"""The public API of the goloop package, and running goloop through asyncio's APIs."""

import ast
import asyncio
import contextvars
import gc
import inspect
import os
import sys
import unittest
import warnings

import pytest
from loop_support import outcome

import goloop

PKG_DIR = os.path.dirname(os.path.abspath(goloop.__file__))


# ---------------------------------------------------------------- module API


def test_all_names_exist():
    assert set(goloop.__all__) >= {"new_event_loop", "install", "run", "EventLoopPolicy", "Loop"}
    for name in goloop.__all__:
        assert getattr(goloop, name) is not None


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="module 'goloop' has no attribute 'no_such_name'"):
        goloop.no_such_name  # noqa: B018


def test_new_event_loop_returns_a_fresh_goloop_loop():
    a = goloop.new_event_loop()
    b = goloop.new_event_loop()
    try:
        assert a is not b
        assert isinstance(a, goloop.Loop)
        assert isinstance(a, asyncio.AbstractEventLoop)
        assert not a.is_running()
        assert not a.is_closed()
    finally:
        a.close()
        b.close()


def test_loop_class_is_instantiable():
    cls = goloop.Loop
    assert isinstance(cls, type)
    assert issubclass(cls, asyncio.AbstractEventLoop)
    lp = cls()
    try:
        assert lp.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        lp.close()


def test_loop_has_every_abstract_event_loop_method():
    stock = asyncio.SelectorEventLoop
    for name, member in inspect.getmembers(asyncio.AbstractEventLoop):
        if name.startswith("_") or not callable(member):
            continue
        assert callable(getattr(goloop.Loop, name, None)), name
        # Coroutine methods stay coroutine methods, plain methods stay plain.
        assert inspect.iscoroutinefunction(getattr(goloop.Loop, name)) == (
            inspect.iscoroutinefunction(getattr(stock, name))
        ), name


def test_repr_like_stock(loop):
    class_name = type(loop).__name__
    assert repr(loop) == f"<{class_name} running=False closed=False debug={loop.get_debug()}>"
    loop.set_debug(True)
    seen = []
    loop.call_soon(lambda: seen.append(repr(loop)))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [f"<{class_name} running=True closed=False debug=True>"]
    loop.close()
    assert repr(loop) == f"<{class_name} running=False closed=True debug=True>"


# ---------------------------------------------------------------- policy


def test_event_loop_policy_creates_goloop_loops():
    policy = goloop.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    a = policy.new_event_loop()
    b = policy.new_event_loop()
    try:
        assert isinstance(a, goloop.Loop)
        assert isinstance(b, goloop.Loop)
        assert a is not b
    finally:
        a.close()
        b.close()


def test_installed_policy_is_used_by_asyncio_run():
    async def main():
        return type(asyncio.get_running_loop())

    asyncio.set_event_loop_policy(goloop.EventLoopPolicy())
    try:
        assert asyncio.run(main()) is goloop.Loop
    finally:
        asyncio.set_event_loop_policy(None)
    # And without it, asyncio.run is back to the stock loop.
    assert not issubclass(asyncio.run(main()), goloop.Loop)


def test_install_sets_policy():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        goloop.install()
    try:
        assert isinstance(asyncio.get_event_loop_policy(), goloop.EventLoopPolicy)
    finally:
        asyncio.set_event_loop_policy(None)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    if sys.version_info >= (3, 12):
        assert len(deprecations) == 1
        assert "goloop.run()" in str(deprecations[0].message)
    else:
        assert deprecations == []


# ---------------------------------------------------------------- goloop.run


def test_run_returns_result_on_a_goloop_loop():
    seen = {}

    async def main(x):
        seen["loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        return x * 2

    assert goloop.run(main(21)) == 42
    assert isinstance(seen["loop"], goloop.Loop)
    assert seen["loop"].is_closed()
    assert asyncio._get_running_loop() is None


def test_run_propagates_exceptions():
    async def main():
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        goloop.run(main())


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug_flag(debug):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert goloop.run(main(), debug=debug) is debug


def test_run_custom_loop_factory():
    made = []

    def factory():
        lp = goloop.new_event_loop()
        made.append(lp)
        return lp

    async def main():
        return asyncio.get_running_loop()

    assert goloop.run(main(), loop_factory=factory) is made[0]
    assert len(made) == 1


def test_run_rejects_non_goloop_loop_factory():
    async def main():
        return 1

    with pytest.raises(TypeError, match="non-goloop event loop"):
        goloop.run(main(), loop_factory=asyncio.SelectorEventLoop)


@pytest.mark.parametrize("arg", [1, None, asyncio.sleep, "coro"])
def test_run_rejects_non_coroutine_like_asyncio_run(arg):
    expected = outcome(asyncio.run, arg)
    assert expected[0] is ValueError
    assert outcome(goloop.run, arg) == expected


def test_run_inside_running_loop_like_asyncio_run():
    async def noop():
        pass

    def attempt(run):
        coro = noop()
        try:
            return outcome(run, coro)
        finally:
            coro.close()

    async def main():
        return attempt(asyncio.run), attempt(goloop.run)

    expected, got = goloop.run(main())
    assert expected[0] is RuntimeError
    assert got == expected


def test_run_inside_running_loop_warns_like_asyncio_run():
    async def noop():
        pass

    def attempt(run):
        coro = noop()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = outcome(run, coro)
            finally:
                coro.close()  # the caller cleans up its own coroutine
            gc.collect()
        return result, [(w.category, str(w.message)) for w in caught]

    async def main():
        return attempt(asyncio.run), attempt(goloop.run)

    expected, got = asyncio.run(main())
    assert expected[0][0] is RuntimeError
    assert got == expected


def test_run_finalizes_async_generators(loop_name):
    log = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            log.append("finalized")

    async def main():
        g = agen()
        await g.__anext__()
        main.gen = g  # keep it alive and suspended past main()
        log.append("main done")

    runner = goloop.run if loop_name == "goloop" else asyncio.run
    runner(main())
    assert log == ["main done", "finalized"]


def test_run_cancels_remaining_tasks(loop_name):
    log = []

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def main():
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    runner = goloop.run if loop_name == "goloop" else asyncio.run
    runner(main())
    assert log == ["cancelled"]


# ------------------------------------------------- asyncio's runners with goloop


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) needs 3.12")
def test_asyncio_run_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=goloop.new_event_loop) is goloop.Loop


def test_asyncio_runner_with_loop_factory(loop_name, loop_factory):
    var = contextvars.ContextVar("var", default="unset")

    async def first():
        var.set("set in first run")
        return asyncio.get_running_loop()

    async def second():
        return asyncio.get_running_loop(), var.get()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        lp1 = runner.run(first())
        lp2, value = runner.run(second())
        assert runner.get_loop() is lp1 is lp2
        assert isinstance(lp1, goloop.Loop) == (loop_name == "goloop")
        # The runner keeps one context across runs.
        assert value == "set in first run"
    assert lp1.is_closed()


def _run_test_case(case_class):
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case_class)
    result = unittest.TestResult()
    suite.run(result)
    return result


def test_isolated_async_test_case_with_goloop_policy():
    seen = []

    class Case(unittest.IsolatedAsyncioTestCase):
        async def asyncSetUp(self):
            seen.append(("setup", type(asyncio.get_running_loop())))

        async def test_it(self):
            seen.append(("test", type(asyncio.get_running_loop())))
            await asyncio.sleep(0.001)

    asyncio.set_event_loop_policy(goloop.EventLoopPolicy())
    try:
        result = _run_test_case(Case)
    finally:
        asyncio.set_event_loop_policy(None)
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 1
    assert seen == [("setup", goloop.Loop), ("test", goloop.Loop)]


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="IsolatedAsyncioTestCase.loop_factory needs 3.13"
)
def test_isolated_async_test_case_loop_factory():
    seen = []

    class Case(unittest.IsolatedAsyncioTestCase):
        loop_factory = staticmethod(goloop.new_event_loop)

        async def test_it(self):
            seen.append(type(asyncio.get_running_loop()))
            await asyncio.sleep(0.001)

    result = _run_test_case(Case)
    assert result.wasSuccessful(), result.errors + result.failures
    assert seen == [goloop.Loop]


# ---------------------------------------------------------------- type stubs


def _stub_path():
    path = os.path.join(PKG_DIR, "__init__.pyi")
    if not os.path.exists(path):
        pytest.skip("python/goloop/__init__.pyi not present")
    return path


def test_py_typed_marker_present():
    if not os.path.exists(os.path.join(PKG_DIR, "py.typed")):
        pytest.skip("python/goloop/py.typed not present")
    assert os.path.exists(_stub_path())


def test_stub_declares_public_api():
    with open(_stub_path(), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    declared = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            declared[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    declared[target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.asname:  # `import x as x` re-exports
                    declared[alias.asname] = node
    for name in (*goloop.__all__, "__version__"):
        assert name in declared, f"{name} missing from the stub"
    for name in goloop.__all__:
        node = declared[name]
        if not isinstance(node, ast.FunctionDef):
            continue
        runtime = inspect.signature(getattr(goloop, name))
        a = node.args
        stub_params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
        runtime_params = [
            p.name
            for p in runtime.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert stub_params == runtime_params, name
