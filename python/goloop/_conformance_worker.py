"""Worker for ``goloop.conformance``: runs one ``test.test_asyncio`` module.

Started by the runner as ``python -P _conformance_worker.py ...`` (by path, so
that a stock run never imports the ``goloop`` package).  It makes the loop
under test the loop every test gets, imports the test module, and runs its
tests one by one in id order, streaming one JSON object per line to the file
descriptor given with ``--fd``:

    {"event": "tests", "ids": [...]}              all test ids, in run order
    {"event": "start", "id": ...}                 a test starts
    {"event": "result", "id": ..., "status": ..., "exercised": ..., ...}
    {"event": "fixture", "id": ..., "status": ..., "message": ...}
    {"event": "module_error", "message": ...}     the module did not load

Tests whose ids are listed in ``--skip-file`` (already reported by an earlier
worker that crashed or hung) are not run again.
"""

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
import traceback
import unittest

STATUS_RANK = {"pass": 0, "skip": 1, "fail": 2, "error": 3}

# Private attributes of the stock loop that the test harness itself reads
# (test_asyncio.utils.TestCase.close_loop: ``loop._default_executor``), with
# the value a loop without them gets.  Without this, nearly every test that
# uses the harness errors in its cleanup whatever the loop does.
HARNESS_SHIMS = {"_default_executor": None}


class LoopCounter:
    """Counts the event loops of the kind under test created so far."""

    created = 0


def make_loop_class(kind, shims=True):
    """Return the loop class to install: a counting subclass of the loop.

    ``stock`` is the interpreter's own ``_UnixSelectorEventLoop``; any other
    kind is a module whose ``Loop`` class is the loop under test (``goloop``,
    ``uvloop``, ...).  The ``selector`` argument that tests pass to
    ``asyncio.SelectorEventLoop`` is kept for stock and ignored otherwise.
    With ``shims``, the class gets the ``HARNESS_SHIMS`` the loop lacks.
    """
    if kind == "stock":
        base = asyncio.unix_events._UnixSelectorEventLoop
    else:
        base = importlib.import_module(kind).Loop
    pass_selector = kind == "stock"

    class ConformanceLoop(base):
        def __init__(self, selector=None):
            LoopCounter.created += 1
            if pass_selector:
                super().__init__(selector)
            else:
                super().__init__()

    ConformanceLoop.__name__ = ConformanceLoop.__qualname__ = "Conformance" + base.__name__.lstrip(
        "_"
    )
    for name, value in HARNESS_SHIMS.items():
        if shims and not hasattr(base, name):
            setattr(ConformanceLoop, name, value)
    return ConformanceLoop


def install_loop(loop_class):
    """Make ``loop_class`` the loop every asyncio entry point creates.

    The default policy's factory is patched on the class, because tests reset
    the policy (``set_event_loop_policy(None)``) and get a fresh instance.
    """
    unix_events = asyncio.unix_events
    for name in (
        "_UnixDefaultEventLoopPolicy",
        "_DefaultEventLoopPolicy",
        "DefaultEventLoopPolicy",
    ):
        for module in (unix_events, asyncio.events):
            policy_class = getattr(module, name, None)
            if isinstance(policy_class, type):
                policy_class._loop_factory = loop_class
    for module in (asyncio, unix_events):
        for name in ("SelectorEventLoop", "_UnixSelectorEventLoop", "EventLoop"):
            if hasattr(module, name):
                setattr(module, name, loop_class)


def flatten(suite):
    """Yield the test cases of a (nested) test suite."""
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from flatten(test)
        else:
            yield test


def short_error(err):
    """The first line of ``Type: message`` for an exc_info triple."""
    text = "".join(traceback.format_exception_only(err[0], err[1])).strip()
    return text.splitlines()[0][:300] if text else err[0].__name__


class StreamingResult(unittest.TestResult):
    """A test result that writes one JSON line per event to a stream."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.pid = os.getpid()
        self.started = set()
        self.fixtures = []
        self._current = None

    def emit(self, **event):
        if os.getpid() != self.pid:  # a forked child must stay silent
            return
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()

    def startTest(self, test):
        super().startTest(test)
        self._begin(test)
        self.emit(event="start", id=test.id())

    def _begin(self, test):
        self.started.add(test.id())
        self._current = {
            "id": test.id(),
            "status": "pass",
            "message": "",
            "loops": LoopCounter.created,
            "t0": time.monotonic(),
        }

    def stopTest(self, test):
        super().stopTest(test)
        if self._current is None:  # 3.12.1 skips without startTest()
            self._begin(test)
        cur, self._current = self._current, None
        loops = LoopCounter.created - cur["loops"]
        self.emit(
            event="result",
            id=cur["id"],
            status=cur["status"],
            exercised=loops > 0,
            loops=loops,
            duration=round(time.monotonic() - cur["t0"], 3),
            message=cur["message"],
        )

    def _record(self, test, status, message=""):
        owner = getattr(test, "test_case", test)  # a _SubTest's test
        if self._current is None and isinstance(test, unittest.TestCase) and owner is test:
            self._begin(test)  # 3.12.1 skips without startTest()
        cur = self._current
        if cur is None or owner.id() != cur["id"]:
            self._fixture(test, status, message)
            return
        if owner is not test and status == "skip":
            return  # a skipped subtest does not make the test a skip
        if STATUS_RANK[status] > STATUS_RANK[cur["status"]]:
            cur["status"], cur["message"] = status, message

    def _fixture(self, test, status, message):
        """An outcome outside a test: setUpClass, setUpModule, teardowns."""
        desc = str(test)
        self.fixtures.append((desc, status, message))
        self.emit(event="fixture", id=desc, status=status, message=message)

    def addSuccess(self, test):
        super().addSuccess(test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "fail", short_error(err))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", short_error(err))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skip", str(reason)[:300])

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "fail", "unexpected success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is None:
            return
        failed = issubclass(err[0], test.failureException)
        self._record(
            test, "fail" if failed else "error", f"{subtest._subDescription()}: {short_error(err)}"
        )

    def report_unstarted(self, ids):
        """Report tests that unittest never started (a fixture failed)."""
        for test_id in ids:
            if test_id in self.started:
                continue
            status, message = self._fixture_outcome(test_id)
            self.emit(
                event="result",
                id=test_id,
                status=status,
                exercised=False,
                loops=0,
                duration=0.0,
                message=message,
            )

    def _fixture_outcome(self, test_id):
        class_id = test_id.rsplit(".", 1)[0]
        for desc, status, message in self.fixtures:
            if "setUp" in desc and (class_id in desc or "Module" in desc):
                return status, f"not run: {desc}: {message}"
        return "error", "not run"


def load_tests(module_name):
    module = importlib.import_module(f"test.test_asyncio.{module_name}")
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    tests = {test.id(): test for test in flatten(suite)}
    return [tests[test_id] for test_id in sorted(tests)]


def read_ids(path):
    if not path:
        return set()
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def run(args, stream):
    result = StreamingResult(stream)
    try:
        install_loop(make_loop_class(args.loop, shims=not args.no_shims))
        tests = load_tests(args.module)
    except unittest.SkipTest as exc:
        result.emit(event="module_error", skipped=True, message=str(exc))
        return 0
    except BaseException:  # a failing loop or module import is reported
        result.emit(event="module_error", skipped=False, message=traceback.format_exc())
        return 2
    if args.only_file:
        only = read_ids(args.only_file)
        tests = [test for test in tests if test.id() in only]
    result.emit(event="tests", ids=[test.id() for test in tests])
    skip = read_ids(args.skip_file)
    todo = [test for test in tests if test.id() not in skip]
    unittest.TestSuite(todo).run(result)
    result.report_unstarted([test.id() for test in todo])
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", required=True, help="'stock' or a module with a Loop class")
    parser.add_argument(
        "--module", required=True, help="test.test_asyncio module name, e.g. test_tasks"
    )
    parser.add_argument(
        "--fd", type=int, required=True, help="file descriptor to stream JSON lines to"
    )
    parser.add_argument("--skip-file", help="file of test ids not to run")
    parser.add_argument("--only-file", help="file of the test ids to run (default: all)")
    parser.add_argument(
        "--no-shims", action="store_true", help="do not add HARNESS_SHIMS to the loop class"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.set_inheritable(args.fd, False)  # keep it out of tests' subprocesses
    with os.fdopen(args.fd, "w", encoding="utf-8") as stream:
        code = run(args, stream)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: leftover threads or loops must not hang us.
    os._exit(code)


if __name__ == "__main__":
    main()
