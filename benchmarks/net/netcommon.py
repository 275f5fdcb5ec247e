"""Helpers shared by the network benchmark servers and runners.

Stdlib only.  Servers print one ``READY <addr>`` line once they listen
(with the real port when asked for port 0), ``UNSUPPORTED <reason>`` when
the loop lacks an API the mode needs (exit status 3), or
``UNAVAILABLE <reason>`` when the loop cannot be imported (exit status 3).
"""

import asyncio
import hashlib
import http.client
import importlib
import json
import os
import platform
import queue
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE.parent / "results"

sys.path.insert(0, str(HERE.parent))
import netreport as nr  # noqa: E402
from benchutil import cpu_model, csv_choices, describe  # noqa: E402, F401 (re-exported)

LOOPS = ("asyncio", "uvloop", "rloop", "goloop")
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXIT_UNSUPPORTED = 3

# ------------------------------------------------------------- servers


def make_loop(name):
    """A fresh event loop of the named implementation (asyncio = stock)."""
    if name not in LOOPS:
        raise ValueError(f"unknown loop {name!r}")
    if name == "asyncio":
        return asyncio.new_event_loop()
    return importlib.import_module(name).new_event_loop()


def serve_on_loop(name, serve, *args):
    """A server's main: raise the fd limit, make the named loop (printing
    UNAVAILABLE when it cannot be imported) and run ``serve(loop, *args)``
    on it; the exit status."""
    raise_nofile()
    try:
        loop = make_loop(name)
    except ImportError as exc:
        say("UNAVAILABLE", describe(exc))
        return EXIT_UNSUPPORTED
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(loop, *args))
    finally:
        loop.close()


def loop_version(name):
    if name == "asyncio":
        return platform.python_version()
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get(name), "__version__", "unknown")


def raise_nofile():
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


FD_MARGIN = 64  # descriptors a process needs besides its connections


def fit_conns(wanted):
    """(count, note): as many of ``wanted`` connections as RLIMIT_NOFILE's
    hard limit allows (raised to it), and why if fewer (else None)."""
    _soft, hard = raise_nofile()
    if hard >= wanted + FD_MARGIN:
        return wanted, None
    count = max(hard - FD_MARGIN, 0)
    return count, (
        f"RLIMIT_NOFILE hard limit {hard} is too low for {wanted:,} connections "
        f"(+{FD_MARGIN} spare descriptors): measured {count:,} instead"
    )


def parse_addr(text):
    """``tcp:HOST:PORT`` -> ("tcp", HOST, PORT) (``udp:`` likewise);
    ``unix:PATH`` -> ("unix", PATH)."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return ("unix", rest)
    host, _, port = rest.rpartition(":")
    if kind in ("tcp", "udp") and host and port.isdigit():
        return (kind, host, int(port))
    raise ValueError(f"bad address {text!r} (want tcp:HOST:PORT, udp:HOST:PORT or unix:PATH)")


def format_addr(sock):
    """The ``tcp:`` / ``udp:`` / ``unix:`` address a socket is bound to."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    return f"{kind}:{host}:{port}"


def install_stop(loop, event):
    """Set ``event`` on SIGTERM / SIGINT (else the default action kills us)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, event.set)
        except (NotImplementedError, RuntimeError, AttributeError):
            return False
    return True


def say(*words):
    print(*words, flush=True)


# ------------------------------------------------------- /proc sampling


def proc_cpu(pid):
    """(utime, stime) of a process in seconds, all threads, from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def system_cpu(cpus=(0, 1)):
    """Seconds the given CPUs spent in (user + system, irq + softirq, steal)."""
    names = {f"cpu{n}" for n in cpus}
    busy = irq = steal = 0
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] in names:
            user, nice, system, _idle, _iowait, hard, soft, stolen = map(int, fields[1:9])
            busy += user + nice + system
            irq += hard + soft
            steal += stolen
    return busy / CLK_TCK, irq / CLK_TCK, steal / CLK_TCK


def proc_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"no VmRSS for pid {pid}")


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# ------------------------------------------------------ child processes


def python_env():
    """Environment for Python children: the repo's python/ on PYTHONPATH."""
    env = dict(os.environ)
    paths = [str(REPO / "python"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class Child:
    """A child process whose stdout lines are read by a thread.

    stderr goes to a temporary file, read back for error messages.
    """

    def __init__(self, cmd, cpu=None, env=None, pass_fds=()):
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self.cmd = cmd
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env, pass_fds=pass_fds
        )
        self.pid = self.proc.pid  # taskset execs: same pid as the program
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout):
        """The next stdout line, None at EOF; TimeoutError after ``timeout``."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output after {timeout:g} s") from None

    def error_tail(self, lines=3):
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip().splitlines()
        status = self.proc.poll()
        return " | ".join(text[-lines:]) or ("no stderr" if status is None else f"exit {status}")

    def stop(self, timeout=3.0):
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


def wait_ready(child, timeout):
    """Read the server's first line: ("ok", addr) / ("unsupported", why) / ("failed", why)."""
    try:
        line = child.next_line(timeout)
    except TimeoutError as exc:
        return "failed", f"server not ready: {exc}"
    word, _, rest = (line or "").partition(" ")
    if word == "READY":
        return "ok", rest
    if word in ("UNSUPPORTED", "UNAVAILABLE"):
        return word.lower(), rest
    child.proc.wait(1)
    return "failed", f"server did not start: {child.error_tail()}"


def probe_loop(name):
    """Import and create a loop in a child: {available, version, path, note}."""
    cmd = [sys.executable, str(HERE / "echo_server.py"), "--probe", name]
    child = Child(cmd, env=python_env())
    try:
        line = child.next_line(60) or ""
    except TimeoutError as exc:
        line = json.dumps({"error": f"probe: {exc}"})
    child.stop()
    result = json.loads(line) if line.startswith("{") else {"error": child.error_tail()}
    ok = result.get("status") == "ok"
    return {
        "available": ok,
        "version": result.get("version"),
        "path": result.get("path"),
        "note": None if ok else result.get("error", "probe failed"),
    }


# ------------------------------------------------ HTTP runners (wrk)

WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_P50 = re.compile(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\b", re.MULTILINE)
UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


WRK_QUICK = {"reps": 1, "duration": 1, "warmup": 0}
WRK_FULL = {"reps": 3, "duration": 2, "warmup": 1}


def add_wrk_options(p, columns, name, conns):
    """The command-line options every wrk runner has; results/<name>.json, .md."""
    p.add_argument("--loops", default=",".join(columns), help="comma-separated (%(default)s)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--duration", type=int, default=None, help="whole seconds measured (2)")
    p.add_argument("--warmup", type=int, default=None, help="whole seconds of warm-up (1)")
    p.add_argument("--conns", type=int, default=conns, help=f"keep-alive connections ({conns})")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 rep of 1 s, no warm-up")
    p.add_argument("--baseline", choices=columns, default="uvloop")
    p.add_argument("--json", default=str(RESULTS / f"{name}.json"), help="'' = none")
    p.add_argument("--markdown", default=str(RESULTS / f"{name}.md"), help="'' = none")
    add_busy_options(p)


def add_busy_options(p):
    """--busy, --retries (netreport.measure_quiet) and --seed (the loop order)."""
    p.add_argument(
        "--busy",
        type=float,
        default=0.2,
        help="re-measure when others used more than this much CPU in the window (0.2)",
    )
    p.add_argument("--retries", type=int, default=2, help="re-measurements when busy (2)")
    p.add_argument("--seed", type=int, default=None, help="seed for the loop order")


def finish_wrk_options(p, args, columns):
    """Split --loops, fill in the --quick / full defaults, check; args."""
    args.loops = [n.strip() for n in args.loops.split(",") if n.strip()]
    if set(args.loops) - set(columns):
        p.error(f"unknown loops: {', '.join(sorted(set(args.loops) - set(columns)))}")
    for key, value in (WRK_QUICK if args.quick else WRK_FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps < 1 or args.duration < 1 or args.warmup < 0 or args.conns < 1:
        p.error("--reps, --duration (whole seconds), --conns must be >= 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


def missing_http_tools(modules=("httptools",)):
    """Why an HTTP benchmark cannot run here (no wrk, a module the servers
    need not importable by this Python), or None."""
    if shutil.which("wrk") is None:
        return "wrk not found (Debian: apt-get install wrk)"
    for module in modules:
        cmd = [sys.executable, "-c", f"import {module}"]
        if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
            return f"{module} not importable by {sys.executable} (pip install {module})"
    return None


def check_http(host, port, body, timeout=5):
    """Two GETs on one connection: a problem string unless both are 200
    with ``body`` and keep the connection alive; None when all is well."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            resp = conn.getresponse()
            got = resp.read()
            if resp.status != 200 or got != body or resp.will_close:
                return f"bad response: {resp.status} {got[:40]!r} close={resp.will_close}"
    finally:
        conn.close()
    return None


def parse_wrk(text):
    """(requests, seconds, errors, p50 latency in ms or None) from wrk's report."""
    total = WRK_TOTAL.search(text)
    if total is None:
        raise ValueError(f"no request count in wrk output: {text.strip()[-200:]!r}")
    sockets = WRK_SOCKET.search(text)
    errors = sum(map(int, sockets.groups())) if sockets else 0
    non2xx = WRK_NON2XX.search(text)
    errors += int(non2xx.group(1)) if non2xx else 0
    p50 = WRK_P50.search(text)
    p50_ms = float(p50.group(1)) * UNIT[p50.group(2)] * 1e3 if p50 else None
    return int(total.group(1)), float(total.group(2)) * UNIT[total.group(3)], errors, p50_ms


def run_wrk(url, conns, seconds):
    """Run wrk (one thread, --latency) on CPU 1; (report text, its CPU (user, sys) in s)."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [*cmd, "--timeout", "5s", url], capture_output=True, text=True, timeout=seconds + 30
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise OSError(f"wrk exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return proc.stdout, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def wrk_sample(pid, host, port, args):
    """Warm the server (pid) up with wrk for args.warmup s, then measure
    args.duration s with args.conns connections while reading the server's
    CPU time: {"status": "ok", "sample": ...} or a failure."""
    url = f"http://{host}:{port}/"
    if args.warmup:
        run_wrk(url, args.conns, args.warmup)
    cpu0, sys0 = proc_cpu(pid), system_cpu()
    report, client_cpu = run_wrk(url, args.conns, args.duration)
    cpu1, sys1 = proc_cpu(pid), system_cpu()
    requests, seconds, errors, p50_ms = parse_wrk(report)
    if errors or not requests:
        return {"status": "failed", "error": f"wrk: {errors} errors, {requests} requests"}
    server_cpu = tuple(b - a for a, b in zip(cpu0, cpu1, strict=True))
    machine = tuple(b - a for a, b in zip(sys0, sys1, strict=True))
    sample = nr.cpu_sample(requests, seconds, server_cpu, client_cpu, machine)
    if p50_ms is not None:
        sample["p50_ms"] = p50_ms
    return {"status": "ok", "sample": sample}


def measure_http(server, ready, body, args):
    """One sample of an HTTP server child: ``ready(server)`` -> ("ok", (host,
    port)) or (status, why); check a response, run wrk_sample; the server is
    stopped in the end.  The result dict."""
    try:
        status, where = ready(server)
        if status != "ok":
            return {"status": status, "error": where}
        problem = check_http(*where, body)
        if problem:
            return {"status": "failed", "error": problem}
        return wrk_sample(server.pid, *where, args)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"status": "failed", "error": describe(exc)}
    finally:
        server.stop()


def run_interleaved(args, cells, rows, measure):
    """args.reps repetitions; each measures every row's cells once, the keys
    of a row in a new shuffled order (args.seed).  ``cells``: {key: cell};
    ``measure(key)`` -> result dict; a failed cell is not measured again."""
    rng = random.Random(args.seed)  # noqa: S311 - shuffling only
    for rep in range(1, args.reps + 1):
        for row in rows:
            order = list(row)
            rng.shuffle(order)
            for key in order:
                _measure_cell(args, cells[key], key, rep, measure)


def _measure_cell(args, cell, key, rep, measure):
    if cell["status"] != "ok":
        return
    result = nr.measure_quiet(lambda: measure(key), args.busy, args.retries)
    label = key if isinstance(key, str) else " ".join(key)
    if result["status"] != "ok":
        nr.record_error(cell, result["status"], result["error"], {"label": label, "rep": rep})
        return
    s = result["sample"]
    cell["samples"].append({"rep": rep} | s)
    print(
        f"[rep {rep}/{args.reps}] {label:<16} {nr.fmt_rate(s['rps'])}/s "
        f"{s['cpu_us']:.1f} µs/request",
        file=sys.stderr,
        flush=True,
    )


def report_footer(cells, loop_info, meta):
    """The lines under a runner's table: loops not available, each cell's
    first error ({label: cell}), the utilisation and busy notes, the machine
    and the wall time."""
    out = [
        f"- **{name} not available**: {info['note']}"
        for name, info in loop_info.items()
        if not info["available"]
    ]
    for label, cell in cells.items():
        out += [f"- {label}: {cell['status']}: {e['error']}" for e in cell["errors"][:1]]
    notes = nr.utilisation_note(cells.values()), nr.busy_note(cells.values())
    out += [f"- {note}" for note in notes if note]
    return [*out, "", machine_line(meta), f"Wall time: {meta['wall_seconds']} s."]


def write_report(args, text, doc, cells):
    """Print the markdown, write it to args.markdown and ``doc`` to args.json
    (either skipped when ''); the exit status: 1 when a cell failed."""
    print(text)
    if args.markdown:
        write_file(args.markdown, text)
    if args.json:
        write_file(args.json, json.dumps(doc, indent=2) + "\n")
    return 1 if any(c["status"] == "failed" for c in cells) else 0


# -------------------------------------------------------------- Go tools


def build_go(package, out_dir):
    """``go build`` one of the Go commands here into out_dir; its path."""
    out = Path(out_dir) / Path(package).name
    subprocess.run(
        ["go", "build", "-o", str(out), f"./{Path(package).relative_to(REPO)}"],
        cwd=REPO,
        check=True,
    )
    return str(out)


def make_certificate(certfile, keyfile):
    """A self-signed P-256 certificate for localhost and 127.0.0.1 (the
    openssl CLI): the TLS rows' server certificate and the client's CA."""
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", keyfile, "-out", certfile),
        ],
        check=True,
        capture_output=True,
    )


# ------------------------------------------------------------- metadata


def _run_text(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def go_version():
    return _run_text(["go", "env", "GOVERSION"])


def _extension_info():
    """Which build of goloop's extension the servers load (path, mtime, sha256)."""
    tag = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    path = REPO / "python" / "goloop" / f"_goloop{tag}"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return {"path": str(path), "mtime": mtime, "sha256": hashlib.sha256(data).hexdigest()[:16]}


def metadata_doc(args, loop_info):
    """Run metadata; ``loop_info`` = {name: probe_loop(name)} (others ignored)."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "arch": platform.machine(),
            "cpu": cpu_model(),
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg": os.getloadavg(),
        },
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "go": go_version(),
        "packages": {
            name: info.get("version") or "n/a"
            for name, info in loop_info.items()
            if name in LOOPS and name != "asyncio"
        },
        "git_commit": _run_text(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        "git_dirty": bool(
            _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "python"])
        ),
        "goloop_extension": _extension_info(),
        "argv": sys.argv[1:],
        "args": {k: v for k, v in vars(args).items() if k not in ("json", "markdown")},
    }


def machine_line(meta):
    m = meta["machine"]
    ext = meta.get("goloop_extension")
    packages = ", ".join(
        f"{k} {v} (extension {ext['sha256']}, built {ext['mtime']})"
        if k == "goloop" and ext
        else f"{k} {v}"
        for k, v in meta["packages"].items()
    )
    parts = [f"Machine: {m['arch']}, {m['cpu']}, {m['nproc']} CPUs", f"Python {meta['python']}"]
    return "; ".join(p for p in (*parts, meta["go"], packages, meta["date"]) if p)


def write_file(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


def now():
    return time.perf_counter()
