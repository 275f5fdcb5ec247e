"""Run CPython's own ``test.test_asyncio`` suite against an event loop.

Each test module runs twice in its own worker process: once with the stock
loop and once with the loop under test installed as *the* loop every test
gets (see ``_conformance_worker``).  A test counts when it passed under
stock *and* a stock loop was created during it ("exercised"); it is a pass
for the loop under test when it passes there too.

    python -m goloop.conformance [--loop goloop|uvloop] [--modules ...]
        [--all] [--timeout 60] [--jobs 2] [--json out.json]
        [--markdown out.md] [--ratchet FILE] [--update-ratchet]

Exit status: 0, or 1 when a test listed in the ratchet file did not pass.
"""

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ._conformance_worker import HARNESS_SHIMS

DEFAULT_MODULES = (
    "test_tasks",
    "test_futures",
    "test_futures2",
    "test_locks",
    "test_queues",
    "test_runners",
    "test_timeouts",
    "test_waitfor",
    "test_taskgroups",
    "test_pep492",
    "test_context",
    "test_threads",
    "test_eager_task_factory",
    "test_unix_events",
    "test_events",
)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_conformance_worker.py")
STOCK = "stock"
MAX_RESTARTS = 50
SHOWN_FAILURES = 4

_stopping = threading.Event()
_active = set()
_active_lock = threading.Lock()


# --------------------------------------------------------------- modules


def available_modules():
    """Names of the ``test.test_asyncio`` test modules of this interpreter."""
    spec = importlib.util.find_spec("test.test_asyncio")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = pkgutil.iter_modules(spec.submodule_search_locations)
    return sorted(m.name for m in found if m.name.startswith("test_"))


def select_modules(args):
    present = set(available_modules())
    if args.all:
        return sorted(present), []
    wanted = args.modules or DEFAULT_MODULES
    return ([m for m in wanted if m in present], [m for m in wanted if m not in present])


# ------------------------------------------------------------ one worker


@dataclasses.dataclass
class ModuleRun:
    """Everything known about one module under one loop kind."""

    module: str
    kind: str
    order: list = None
    tests: dict = dataclasses.field(default_factory=dict)
    fixtures: list = dataclasses.field(default_factory=list)
    error: str = None
    skipped: bool = False
    restarts: int = 0
    seconds: float = 0.0

    def pending(self):
        return [t for t in self.order or () if t not in self.tests]

    def handle(self, event, current):
        """Apply one worker event; return the id of the running test."""
        kind = event.get("event")
        if kind == "tests":
            self.order = event["ids"]
        elif kind == "start":
            return event["id"]
        elif kind == "result":
            self.tests[event["id"]] = _test_record(event)
            return None
        elif kind == "fixture":
            self.fixtures.append(event)
        elif kind == "module_error":
            self.error, self.skipped = event["message"], event["skipped"]
        return current

    def blame(self, current, status, message):
        """Record a hang/crash; return True when the worker should restart."""
        if self.order is None:
            self.error = f"{message} before listing its tests"
            return False
        pending = self.pending()
        victim = current or (pending[0] if pending else None)
        if victim is None:
            return False
        if current is None:
            message += " (outside a test)"
        self.tests[victim] = _test_record({"status": status, "exercised": None, "message": message})
        self.restarts += 1
        if self.restarts <= MAX_RESTARTS:
            return bool(self.pending())
        for test_id in self.pending():
            self.tests[test_id] = _test_record(
                {"status": "crash", "message": "not run: too many restarts"}
            )
        return False

    def worker_exited(self, current, returncode):
        """The stream ended; return True when the worker should restart."""
        if self.error is not None:
            return False
        if current is None and self.order is not None and not self.pending():
            return False
        return self.blame(current, "crash", f"worker exited ({_describe_rc(returncode)})")


def _test_record(event):
    return {
        "status": event["status"],
        "exercised": event.get("exercised"),
        "loops": event.get("loops", 0),
        "duration": event.get("duration"),
        "message": event.get("message", ""),
    }


def _describe_rc(returncode):
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            pass
    return f"status {returncode}"


class EventReader:
    """Reads JSON lines from a pipe, with a timeout for each line."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""

    def next(self, timeout):
        """The next event; None at end of stream; TimeoutError if slow."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {}


def worker_env():
    env = dict(os.environ)
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    paths = [p for p in dict.fromkeys(paths) if os.path.exists(p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def _write_ids(path, ids):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{test_id}\n" for test_id in ids)
    return path


def spawn_worker(run, workdir, log, options):
    """Start a worker for ``run``, skipping the tests it already has (and,
    with options.only, running only the module's tests listed there)."""
    cmd = [sys.executable, "-P", WORKER, "--loop", run.kind, "--module", run.module]
    if not options.shims:
        cmd.append("--no-shims")
    if options.only is not None:
        only = options.only.get(run.module, ())
        cmd += ["--only-file", _write_ids(os.path.join(workdir, "only-ids.txt"), only)]
    if run.tests:
        cmd += ["--skip-file", _write_ids(os.path.join(workdir, "skip-ids.txt"), run.tests)]
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [*cmd, "--fd", str(write_fd)],
            cwd=workdir,
            env=worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd


def kill_group(proc):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def pump(run, proc, reader, timeout):
    """Feed worker events into ``run``; return True to restart the worker."""
    current = None
    while True:
        try:
            event = reader.next(timeout)
        except TimeoutError:
            kill_group(proc)
            return run.blame(current, "timeout", f"no progress in {timeout}s")
        if event is None:
            return run.worker_exited(current, proc.wait())
        current = run.handle(event, current)


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    timeout: float = 60.0
    shims: bool = True
    log_dir: str = None
    only: dict = None  # {module: test ids}: run just these (None: every test)


def run_worker_once(run, options, log):
    workdir = tempfile.mkdtemp(prefix=f"goloop-conformance-{run.module}-")
    proc, read_fd = spawn_worker(run, workdir, log, options)
    with _active_lock:
        _active.add(proc)
    try:
        return pump(run, proc, EventReader(read_fd), options.timeout)
    finally:
        os.close(read_fd)
        kill_group(proc)  # also ends leftover grandchildren
        proc.wait()
        with _active_lock:
            _active.discard(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def run_module(module, kind, options):
    """Run one module under one loop kind, restarting after hangs/crashes."""
    run = ModuleRun(module, kind)
    start = time.monotonic()
    with _open_log(options.log_dir, module, kind) as log:
        while run_worker_once(run, options, log) and not _stopping.is_set():
            pass
    run.seconds = round(time.monotonic() - start, 1)
    return run


def _open_log(log_dir, module, kind):
    if not log_dir:
        return open(os.devnull, "wb")
    os.makedirs(log_dir, exist_ok=True)
    return open(os.path.join(log_dir, f"{module}.{kind}.log"), "wb")


def run_all(modules, kinds, jobs, options):
    """Run every module under each of ``kinds`` (STOCK and/or the loop
    under test): {(module, kind): run}."""
    work = [(m, k) for m in modules for k in kinds]
    runs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_module, m, k, options): (m, k) for m, k in work}
        try:
            for future in concurrent.futures.as_completed(futures):
                run = future.result()
                runs[futures[future]] = run
                _progress(run, len(runs), len(work))
        except BaseException:
            _abort(pool)
            raise
    return runs


def _abort(pool):
    _stopping.set()
    pool.shutdown(wait=False, cancel_futures=True)
    with _active_lock:
        for proc in _active:
            kill_group(proc)


def _progress(run, done, total):
    counts = {}
    for record in run.tests.values():
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if run.error is not None:
        detail = "module skipped" if run.skipped else "module error"
    print(
        f"[{done}/{total}] {run.module} ({run.kind}): {detail or 'no tests'} in {run.seconds}s",
        file=sys.stderr,
        flush=True,
    )


# ------------------------------------------------------------ comparison


def compare(stock, loop):
    """Compare one module's stock and loop runs."""
    counted = [t for t, r in stock.tests.items() if r["status"] == "pass" and r["exercised"]]
    passes, failures = [], {}
    for test_id in sorted(counted):
        record = loop.tests.get(test_id) or {"status": "missing", "message": ""}
        if record["status"] == "pass":
            passes.append(test_id)
        else:
            failures[test_id] = record
    return {
        "module": stock.module,
        "counted": len(counted),
        "passes": passes,
        "failures": failures,
        "skip_mismatches": _skip_mismatches(stock, loop),
        "unexercised_passes": [t for t in passes if not loop.tests[t]["exercised"]],
        "errors": {run.kind: run.error for run in (stock, loop) if run.error is not None},
        "skipped": stock.skipped and loop.skipped,
    }


def _skip_mismatches(stock, loop):
    """Tests skipped under one loop kind but not the other."""
    found = {}
    for test_id in sorted(set(stock.tests) & set(loop.tests)):
        statuses = (stock.tests[test_id]["status"], loop.tests[test_id]["status"])
        if (statuses[0] == "skip") != (statuses[1] == "skip"):
            found[test_id] = {"stock": statuses[0], "loop": statuses[1]}
    return found


def totals(comparisons):
    counted = sum(c["counted"] for c in comparisons)
    passes = sum(len(c["passes"]) for c in comparisons)
    return counted, passes


def percent(passes, counted):
    return f"{100.0 * passes / counted:.1f}" if counted else "-"


# --------------------------------------------------------------- reports


def short_name(test_id):
    """``test.test_asyncio.mod.Class.test_x`` -> ``Class.test_x``."""
    return ".".join(test_id.split(".")[3:]) or test_id


def _failure_label(test_id, record):
    label = short_name(test_id)
    if record["status"] != "fail":
        label += f" ({record['status']})"
    return label


def failure_summary(comparison, limit=SHOWN_FAILURES):
    labels = [_failure_label(t, r) for t, r in comparison["failures"].items()]
    if comparison["errors"]:
        labels.insert(0, "MODULE " + ("SKIPPED" if comparison["skipped"] else "ERROR"))
    if limit is not None and len(labels) > limit:
        labels = [*labels[:limit], f"+{len(labels) - limit} more"]
    return ", ".join(labels)


def table_rows(comparisons, loop):
    header = ["module", "stock-passing exercised", f"{loop} passes", "%", "failures"]
    rows = [
        [
            c["module"],
            str(c["counted"]),
            str(len(c["passes"])),
            percent(len(c["passes"]), c["counted"]),
            failure_summary(c),
        ]
        for c in comparisons
    ]
    counted, passes = totals(comparisons)
    rows.append(["TOTAL", str(counted), str(passes), percent(passes, counted), ""])
    return header, rows


def format_text_table(header, rows):
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [row[i].rjust(widths[i]) for i in range(1, 4)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def run_metadata(args, seconds):
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "loop": args.loop,
        "loop_version": _loop_version(args.loop),
        "harness_shims": sorted(HARNESS_SHIMS) if not args.no_shims else [],
        "timeout": args.timeout,
        "seconds": round(seconds, 1),
    }


def describe_environment(meta):
    shims = ", ".join(meta["harness_shims"]) or "none"
    return (
        f"Python {meta['python']} ({meta['implementation']}, "
        f"{meta['executable']}); loop under test: {meta['loop']} "
        f"{meta['loop_version']}; harness shims: {shims}; "
        f"per-test timeout {meta['timeout']:g}s"
    )


def _loop_version(loop):
    try:
        return importlib.metadata.version(loop)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(loop)  # e.g. an in-tree goloop
        return getattr(module, "__version__", "(version unknown)")


def notes_lines(comparisons):
    """Skip mismatches, module errors and unexercised passes, one a line."""
    lines = []
    for c in comparisons:
        for kind, error in c["errors"].items():
            what = "skipped" if c["skipped"] else "error"
            lines.append(f"{c['module']} ({kind}) module {what}: {error.strip().splitlines()[-1]}")
        for test_id, statuses in c["skip_mismatches"].items():
            lines.append(
                f"skip mismatch: {short_name(test_id)} in "
                f"{c['module']}: stock={statuses['stock']} "
                f"loop={statuses['loop']}"
            )
        if c["unexercised_passes"]:
            lines.append(
                f"{c['module']}: {len(c['unexercised_passes'])} passes created no loop under test"
            )
    return lines


def top_reasons(comparisons, limit=10):
    """The most common reasons counted tests did not pass: [(n, reason)]."""
    counts = collections.Counter()
    for c in comparisons:
        for record in c["failures"].values():
            lines = record["message"].strip().splitlines()
            reason = lines[-1][:160] if lines else ""
            counts[f"{record['status']}: {reason}".rstrip(": ")] += 1
    return [(n, reason) for reason, n in counts.most_common(limit)]


def text_report(comparisons, meta):
    header, rows = table_rows(comparisons, meta["loop"])
    parts = [describe_environment(meta), "", format_text_table(header, rows)]
    reasons = top_reasons(comparisons)
    if reasons:
        parts += ["", "Most common reasons for not passing:"]
        parts += [f"  {n:5d}  {reason}" for n, reason in reasons]
    notes = notes_lines(comparisons)
    if notes:
        parts += ["", "Notes:"] + [f"  {line}" for line in notes]
    parts += ["", f"Wall time: {meta['seconds']:.0f}s"]
    return "\n".join(parts)


def markdown_report(comparisons, meta):
    header, rows = table_rows(comparisons, meta["loop"])
    lines = [
        f"# asyncio conformance: {meta['loop']}",
        "",
        describe_environment(meta),
        "",
        f"Wall time: {meta['seconds']:.0f}s",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    reasons = top_reasons(comparisons)
    if reasons:
        lines += ["", "## Most common reasons for not passing", ""]
        lines += [f"- {n}: {_md_cell(reason)}" for n, reason in reasons]
    lines += _markdown_failures(comparisons)
    notes = notes_lines(comparisons)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_md_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _md_cell(text):
    return text.replace("|", "\\|")


def _markdown_failures(comparisons):
    lines = []
    for c in comparisons:
        if not c["failures"]:
            continue
        lines += ["", f"## {c['module']}: {len(c['failures'])} not passing", ""]
        for test_id, record in c["failures"].items():
            message = record["message"].strip().splitlines()
            detail = f": {message[-1][:160]}" if message else ""
            lines.append(f"- `{short_name(test_id)}` {record['status']}{_md_cell(detail)}")
    return lines


def json_report(comparisons, runs, meta):
    counted, passes = totals(comparisons)
    return {
        **meta,
        "total": {"counted": counted, "passes": passes},
        "modules": {c["module"]: _json_module(c, runs, meta["loop"]) for c in comparisons},
    }


def _json_module(comparison, runs, loop):
    module = comparison["module"]
    result = {
        "counted": comparison["counted"],
        "passes": len(comparison["passes"]),
        "failures": comparison["failures"],
        "skip_mismatches": comparison["skip_mismatches"],
        "errors": comparison["errors"],
    }
    for kind, label in ((STOCK, "stock"), (loop, "loop")):
        run = runs[module, kind]
        result[label] = {
            "seconds": run.seconds,
            "restarts": run.restarts,
            "fixtures": run.fixtures,
            "tests": run.tests,
        }
    return result


# --------------------------------------------------------------- ratchet


def read_ratchet(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def ratchet_module(test_id):
    """``test.test_asyncio.<module>.Class.test`` -> ``<module>``."""
    prefix, _, rest = test_id.partition("test.test_asyncio.")
    return None if prefix or not rest else rest.split(".", 1)[0]


def check_ratchet(required, runs, loop):
    """Check the ratchet tests of the modules run: (checked, {id: status})."""
    checked, broken = 0, {}
    for test_id in required:
        run = runs.get((ratchet_module(test_id), loop))
        if run is None:
            continue
        checked += 1
        record = run.tests.get(test_id)
        status = record["status"] if record else "missing"
        if status != "pass":
            broken[test_id] = status
    return checked, broken


def update_ratchet(path, required, comparisons, runs, loop):
    """Add newly passing exercised tests to the ratchet file."""
    new = set()
    for c in comparisons:
        run = runs[c["module"], loop]
        new.update(t for t in c["passes"] if run.tests[t]["exercised"])
    added = sorted(new - set(required))
    header = _ratchet_header(path, loop)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in header)
        f.writelines(t + "\n" for t in sorted(set(required) | new))
    return added


def _ratchet_header(path, loop):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.lstrip().startswith("#")]
    version = f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    return [
        f"# test.test_asyncio tests that must pass under {loop} on {version}",
        "# Checked by: python -m goloop.conformance --ratchet FILE",
        "# and extended (never shrunk) with --update-ratchet.",
    ]


def apply_ratchet(args, comparisons, runs):
    """Check (and maybe update) the ratchet; return the exit status."""
    required = read_ratchet(args.ratchet)
    checked, broken = check_ratchet(required, runs, args.loop)
    if args.update_ratchet:
        added = update_ratchet(args.ratchet, required, comparisons, runs, args.loop)
        print(f"Ratchet {args.ratchet}: added {len(added)} tests.")
    if not broken:
        print(
            f"Ratchet {args.ratchet}: {checked} listed tests checked, all "
            f"passed ({len(required) - checked} in modules not run)."
        )
        return 0
    print(
        f"RATCHET FAILED: {len(broken)} tests listed in {args.ratchet} "
        f"did not pass under {args.loop}:"
    )
    for test_id, status in sorted(broken.items()):
        print(f"  {test_id}: {status}")
    return 1


# ------------------------------------------------------------------ main


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m goloop.conformance",
        description="Run test.test_asyncio under a loop and compare with the stock loop.",
    )
    parser.add_argument(
        "--loop",
        default="goloop",
        help="module whose Loop class is tested (goloop, uvloop, ...); default goloop",
    )
    parser.add_argument(
        "--modules",
        nargs="+",
        metavar="MODULE",
        help="test.test_asyncio modules (default: a core set)",
    )
    parser.add_argument("--all", action="store_true", help="every test.test_asyncio module")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds without progress before a test is declared hung (default 60)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="workers in parallel (default 2)")
    parser.add_argument("--json", metavar="FILE", help="write JSON results")
    parser.add_argument("--markdown", metavar="FILE", help="write a markdown report")
    parser.add_argument("--ratchet", metavar="FILE", help="tests (one id a line) that must pass")
    parser.add_argument(
        "--update-ratchet", action="store_true", help="add newly passing tests to the ratchet file"
    )
    parser.add_argument(
        "--ratchet-only",
        action="store_true",
        help="only check --ratchet: run the tests it lists under the loop under test "
        "alone, without the stock runs the comparison needs (no report)",
    )
    parser.add_argument(
        "--no-shims",
        action="store_true",
        help="don't give the loop the private attributes "
        "the test harness reads (_default_executor)",
    )
    parser.add_argument("--log-dir", metavar="DIR", help="keep each worker's stdout/stderr here")
    args = parser.parse_args(argv)
    if args.update_ratchet and not args.ratchet:
        parser.error("--update-ratchet needs --ratchet FILE")
    if args.ratchet_only and (
        not args.ratchet or args.update_ratchet or args.json or args.markdown
    ):
        parser.error("--ratchet-only needs --ratchet FILE and makes no report or update")
    if args.loop == STOCK:
        parser.error("--loop must name the loop under test, not 'stock'")
    return args


def write_outputs(args, comparisons, runs, seconds):
    meta = run_metadata(args, seconds)
    print(text_report(comparisons, meta))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown_report(comparisons, meta))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(json_report(comparisons, runs, meta), f, indent=1, sort_keys=True)
            f.write("\n")


def main(argv=None):
    args = parse_args(argv)
    modules, absent = select_modules(args)
    if absent:
        print(f"Not on this interpreter, skipped: {' '.join(absent)}", file=sys.stderr)
    if not modules:
        print("No test modules to run.", file=sys.stderr)
        return 2
    start = time.monotonic()
    only = None
    if args.ratchet_only:
        # The ratchet is the check: tests it does not list (they never
        # created a loop, or fail on stock too) are not run. That skips
        # whole modules such as test_futures and test_runners (1 s alone,
        # but three of its tests hit the 60 s timeout in a CI run on a
        # loaded host) and most of test_tasks. A listed test that no longer exists is
        # "missing", a failure.
        only = collections.defaultdict(list)
        for test_id in read_ratchet(args.ratchet):
            only[ratchet_module(test_id)].append(test_id)
        modules = [m for m in modules if m in only]
    options = WorkerOptions(args.timeout, not args.no_shims, args.log_dir, only)
    kinds = (args.loop,) if args.ratchet_only else (STOCK, args.loop)
    runs = run_all(modules, kinds, args.jobs, options)
    seconds = time.monotonic() - start
    if args.ratchet_only:
        print(f"Wall time: {seconds:.0f}s")
        return apply_ratchet(args, None, runs)
    comparisons = [compare(runs[m, STOCK], runs[m, args.loop]) for m in modules]
    write_outputs(args, comparisons, runs, seconds)
    return apply_ratchet(args, comparisons, runs) if args.ratchet else 0


if __name__ == "__main__":
    sys.exit(main())
