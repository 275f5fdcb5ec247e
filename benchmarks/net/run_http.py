"""HTTP benchmark: hello-world keep-alive requests/s and server CPU per request.

Each loop's http_server.py (httptools parser; ``go`` = a native Go
net/http server, gohttp/) runs in a fresh process pinned to CPU 0; wrk,
pinned to CPU 1 (one thread, --conns keep-alive connections), first warms
it up for --warmup seconds, then measures for --duration seconds while the
server's user and system CPU time is read from /proc/<pid>/stat before and
after.  Before any load, one request pair on one connection checks the
response (status, body, keep-alive).  Repetitions interleaved, loop order
shuffled per repetition; median with spread, ratios vs --baseline.

    python benchmarks/net/run_http.py [--quick] [--reps 3] [--duration 2]
        [--loops asyncio,uvloop,rloop,goloop,go] [--conns 8]

Needs wrk (Debian package ``wrk``) and httptools (PyPI) in the Python that
runs the servers; without them it says so and exits 0 without measuring.
Writes benchmarks/results/http.json and http.md.
"""

import argparse
import http.client
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import netcommon as nc
import netreport as nr

GO = "go"
COLUMNS = (*nc.LOOPS, GO)
HTTP_SERVER = nc.HERE / "http_server.py"
BODY = b"Hello, World!"
QUICK = {"reps": 1, "duration": 1, "warmup": 0}
FULL = {"reps": 3, "duration": 2, "warmup": 1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="HTTP hello-world benchmark over event loops")
    p.add_argument("--loops", default=",".join(COLUMNS), help="comma-separated (%(default)s)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--duration", type=int, default=None, help="whole seconds measured (2)")
    p.add_argument("--warmup", type=int, default=None, help="whole seconds of warm-up (1)")
    p.add_argument("--conns", type=int, default=8, help="keep-alive connections (8)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 rep of 1 s, no warm-up")
    p.add_argument("--baseline", choices=COLUMNS, default="uvloop")
    p.add_argument("--json", default=str(nc.RESULTS / "http.json"), help="'' = none")
    p.add_argument("--markdown", default=str(nc.RESULTS / "http.md"), help="'' = none")
    p.add_argument(
        "--busy",
        type=float,
        default=0.2,
        help="re-measure when others used more than this much CPU in the window (0.2)",
    )
    p.add_argument("--retries", type=int, default=2, help="re-measurements when busy (2)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    args.loops = [n.strip() for n in args.loops.split(",") if n.strip()]
    if set(args.loops) - set(COLUMNS):
        p.error(f"unknown loops: {', '.join(sorted(set(args.loops) - set(COLUMNS)))}")
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps < 1 or args.duration < 1 or args.warmup < 0 or args.conns < 1:
        p.error("--reps, --duration (whole seconds), --conns must be >= 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


def missing_tools():
    """Why the benchmark cannot run here, or None."""
    if shutil.which("wrk") is None:
        return "wrk not found (Debian: apt-get install wrk)"
    cmd = [sys.executable, "-c", "import httptools"]
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        return f"httptools not importable by {sys.executable} (pip install httptools)"
    return None


# ---------------------------------------------------------- one sample


def check_response(addr):
    """Two GETs on one connection: 200, the body, connection kept alive."""
    _, host, port = nc.parse_addr(addr)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or body != BODY or resp.will_close:
                return f"bad response: {resp.status} {body[:40]!r} close={resp.will_close}"
    finally:
        conn.close()
    return None


WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text):
    """(requests, seconds, errors) from wrk's report."""
    total = WRK_TOTAL.search(text)
    if total is None:
        raise ValueError(f"no request count in wrk output: {text.strip()[-200:]!r}")
    sockets = WRK_SOCKET.search(text)
    errors = sum(map(int, sockets.groups())) if sockets else 0
    non2xx = WRK_NON2XX.search(text)
    errors += int(non2xx.group(1)) if non2xx else 0
    return int(total.group(1)), float(total.group(2)) * UNIT[total.group(3)], errors


def run_wrk(args, addr, seconds):
    """Run wrk on CPU 1; (report text, its CPU (user, sys) in seconds)."""
    url = f"http://{addr.removeprefix('tcp:')}/"
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.conns}", f"-d{seconds}s"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [*cmd, "--timeout", "5s", url], capture_output=True, text=True, timeout=seconds + 30
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise OSError(f"wrk exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return proc.stdout, (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def server_cmd(name, gohttp):
    if name == GO:
        return [gohttp, "-addr", "tcp:127.0.0.1:0"]
    return [sys.executable, str(HTTP_SERVER), "--loop", name]


def measure(args, name, gohttp):
    server = nc.Child(server_cmd(name, gohttp), 0, nc.python_env())
    try:
        status, addr = nc.wait_ready(server, 20)
        if status != "ok":
            return {"status": status, "error": addr}
        problem = check_response(addr)
        if problem:
            return {"status": "failed", "error": problem}
        return load(args, server, addr)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"status": "failed", "error": nc.describe(exc)}
    finally:
        server.stop()


def load(args, server, addr):
    if args.warmup:
        run_wrk(args, addr, args.warmup)
    cpu0, sys0 = nc.proc_cpu(server.pid), nc.system_cpu()
    report, client_cpu = run_wrk(args, addr, args.duration)
    cpu1, sys1 = nc.proc_cpu(server.pid), nc.system_cpu()
    requests, seconds, errors = parse_wrk(report)
    if errors or not requests:
        return {"status": "failed", "error": f"wrk: {errors} errors, {requests} requests"}
    server_cpu = tuple(b - a for a, b in zip(cpu0, cpu1, strict=True))
    machine = tuple(b - a for a, b in zip(sys0, sys1, strict=True))
    sample = nr.cpu_sample(requests, seconds, server_cpu, client_cpu, machine)
    return {"status": "ok", "sample": sample}


# ------------------------------------------------------------ the runs


def run_all(args, cells, gohttp):
    rng = random.Random(args.seed)  # noqa: S311 - shuffling only
    for rep in range(1, args.reps + 1):
        order = list(args.loops)
        rng.shuffle(order)
        for name in order:
            cell = cells[name]
            if cell["status"] != "ok":
                continue
            result = nr.measure_quiet(
                lambda name=name: measure(args, name, gohttp), args.busy, args.retries
            )
            if result["status"] != "ok":
                nr.record_error(cell, result["status"], result["error"], {"label": name})
                continue
            cell["samples"].append({"rep": rep} | result["sample"])
            s = result["sample"]
            print(
                f"[rep {rep}/{args.reps}] {name:<8} {nr.fmt_rate(s['rps'])}/s "
                f"{s['cpu_us']:.1f} µs/request",
                file=sys.stderr,
                flush=True,
            )


def render(args, cells, loop_info, meta):
    head = ["loop", "requests/s", f"rps/{args.baseline}", "server CPU µs/request (user+sys)"]
    head.append(f"CPU/{args.baseline}")
    base = cells.get(args.baseline)
    rows = []
    for name in args.loops:
        cell = cells[name]
        rps_r = nr.ratio(cell, base, "rps") if base else None
        cpu_r = nr.ratio(cell, base, "cpu_us") if base else None
        rows.append([name, nr.fmt_rps(cell), nr.fmt_ratio(rps_r), nr.fmt_cpu(cell)])
        rows[-1].append(nr.fmt_ratio(cpu_r))
    out = ["## HTTP/1.1 keep-alive hello world (httptools)", ""]
    out += [
        f"wrk -t1 -c{args.conns}, median of {args.reps} fresh-server runs of "
        f"{args.duration} s (after {args.warmup} s warm-up); server on CPU 0, wrk on CPU 1; "
        "± = half the (max - min) range relative to the median. `go` = Go net/http "
        "(adds a Date header).",
        "",
    ]
    out += nr.table(head, rows)
    out += [""]
    for name in args.loops:
        if not loop_info[name]["available"]:
            out.append(f"- **{name} not available**: {loop_info[name]['note']}")
        out += [
            f"- {name}: {cells[name]['status']}: {e['error']}" for e in cells[name]["errors"][:1]
        ]
    notes = nr.utilisation_note(cells.values()), nr.busy_note(cells.values())
    out += [f"- {note}" for note in notes if note]
    return out + ["", nc.machine_line(meta), f"Wall time: {meta['wall_seconds']} s."]


def main(argv=None):
    args = parse_args(argv)
    why = missing_tools()
    if why:
        print(f"HTTP benchmark skipped: {why}", file=sys.stderr)
        return 0
    started = time.perf_counter()
    loop_info = {n: nc.probe_loop(n) for n in args.loops if n != GO}
    if GO in args.loops:
        loop_info[GO] = {"available": True, "version": nc.go_version(), "note": None}
    meta = nc.metadata_doc(args, loop_info)
    cells = {n: nr.new_cell() for n in args.loops}
    for name, cell in cells.items():
        if not loop_info[name]["available"]:
            cell["status"] = "unavailable"
    with tempfile.TemporaryDirectory(prefix="goloop-http-") as tmp:
        gohttp = nc.build_go(nc.HERE / "gohttp", tmp) if GO in args.loops else None
        run_all(args, cells, gohttp)
    for cell in cells.values():
        nr.summarize(cell)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = "\n".join(render(args, cells, loop_info, meta)) + "\n"
    print(text)
    if args.markdown:
        nc.write_file(args.markdown, text)
    if args.json:
        doc = {"meta": meta, "loops": loop_info, "results": cells}
        nc.write_file(args.json, json.dumps(doc, indent=2) + "\n")
    return 1 if any(c["status"] == "failed" for c in cells.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
