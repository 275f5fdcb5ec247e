"""Echo benchmark: request/response throughput and server CPU per request.

For every message size x transport x server mode, each loop's echo server
(echo_server.py, a fresh process per measurement, pinned to CPU 0) is
driven by the Go load generator (loadgen/, pinned to CPU 1): --conns
connections, each sending one message and waiting for the whole, verified
echo before the next.  After --warmup, the measured window lasts
--duration; the server's user and system CPU time (/proc/<pid>/stat) is
sampled as the window opens and closes.  The native Go echo server
(goecho/, column ``go``) is the physical limit; it has no modes, so it is
measured once per size x transport and shown on every mode row.

Repetitions are interleaved (every cell once per repetition, loops in a
shuffled order per row).  Reported: median requests/s with the spread,
median server CPU µs per request (user + system), ratios vs --baseline.

    python benchmarks/net/run_echo.py [--quick] [--reps 3] [--duration 1.5]
        [--loops asyncio,uvloop,rloop,goloop,go] [--modes protocol,...]
        [--sizes 1k,10k,100k] [--transports tcp,unix,udp] [--only '1k-tcp-*']

Over udp each request is one datagram, so only the modes with a datagram
form (protocol = DatagramProtocol, sock = sock_recvfrom/sock_sendto) and
sizes up to one datagram are run. "churn" is TCP with a new connection per
request (connect, send, read the echo, close), at 1 KiB: the server's
per-connection work (accept, transport, registration, teardown).

"tls" is TCP with TLS (the server's ssl= an SSLContext, the load generator
a crypto/tls client verifying a certificate made for the run), at 1 KiB
and 64 KiB; "tlschurn" a new TLS connection per 1 KiB request (a full
handshake each). They are not in the default --transports: make bench-net
runs them as a run of their own (with --conns 10, results/tls.md).

Writes benchmarks/results/net.json and net.md (see --json / --markdown).
Exit status 1 when any cell FAILED (n/a for an unsupported API is not a
failure).
"""

import argparse
import fnmatch
import json
import random
import shutil
import sys
import tempfile
import time

import netcommon as nc
import netreport as nr

SIZES = {"1k": 1024, "10k": 10 * 1024, "64k": 64 * 1024, "100k": 100 * 1024}
TRANSPORTS = ("tcp", "unix", "udp", "churn", "tls", "tlschurn")
DEFAULT_TRANSPORTS = ("tcp", "unix", "udp", "churn")
TLS_TRANSPORTS = ("tls", "tlschurn")
# The sizes each transport runs at: churn rows measure per-connection work,
# TLS rows one record (1 KiB) and a run of full 16 KiB records (64 KiB).
TRANSPORT_SIZES = {
    "churn": ("1k",),
    "tls": ("1k", "64k"),
    "tlschurn": ("1k",),
}
PLAIN_SIZES = ("1k", "10k", "100k")
MODES = ("protocol", "buffered", "streams", "sock")
DATAGRAM_MODES = ("protocol", "sock")  # DatagramProtocol, sock_recvfrom/sock_sendto
TLS_MODES = ("protocol", "buffered", "streams")  # ssl= on a server
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
GO = "go"
COLUMNS = (*nc.LOOPS, GO)
ECHO_SERVER = nc.HERE / "echo_server.py"
QUICK = {"reps": 1, "duration": 0.3, "warmup": 0.1}
FULL = {"reps": 3, "duration": 1.5, "warmup": 0.3}


# ----------------------------------------------------------- arguments


def _patterns(text):
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="echo benchmark over event loops")
    p.add_argument("--loops", type=nc.csv_choices(COLUMNS), default=list(COLUMNS))
    p.add_argument("--modes", type=nc.csv_choices(MODES), default=list(MODES))
    p.add_argument("--sizes", type=nc.csv_choices(SIZES), default=list(SIZES))
    p.add_argument(
        "--transports", type=nc.csv_choices(TRANSPORTS), default=list(DEFAULT_TRANSPORTS)
    )
    p.add_argument(
        "--only", type=_patterns, default=None, help="row globs, e.g. '1k-tcp-protocol,*-unix-*'"
    )
    p.add_argument("--reps", type=int, default=None, help="repetitions (3; 1 with --quick)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds (1.5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds (0.3)")
    p.add_argument("--conns", type=int, default=8, help="concurrent connections (8)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 rep of 0.3 s")
    p.add_argument("--baseline", choices=COLUMNS, default="uvloop")
    p.add_argument("--json", default=str(nc.RESULTS / "net.json"), help="'' = none")
    p.add_argument("--markdown", default=str(nc.RESULTS / "net.md"), help="'' = none")
    nc.add_busy_options(p)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps < 1 or args.duration <= 0 or args.warmup < 0 or args.conns < 1:
        p.error("--reps, --duration, --conns must be positive, --warmup >= 0")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


def plan_groups(args):
    """[(size, transport, [row ids])], rows named SIZE-TRANSPORT-MODE."""
    groups = []
    for size in args.sizes:
        for transport in args.transports:
            modes = args.modes
            if transport == "udp":
                if SIZES[size] > MAX_DATAGRAM:
                    continue
                modes = [m for m in modes if m in DATAGRAM_MODES]
            if size not in TRANSPORT_SIZES.get(transport, PLAIN_SIZES):
                continue
            if transport in TLS_TRANSPORTS:
                modes = [m for m in modes if m in TLS_MODES]
            rows = [f"{size}-{transport}-{mode}" for mode in modes]
            if args.only:
                rows = [r for r in rows if any(fnmatch.fnmatch(r, g) for g in args.only)]
            if rows:
                groups.append((size, transport, rows))
    return groups


def native_row(size, transport):
    return f"{size}-{transport}-native"


# ---------------------------------------------------------- one sample


class Tools:
    """Go binaries built for this run, a directory for Unix sockets, and a
    self-signed certificate for "localhost" when TLS rows run."""

    def __init__(self, tls):
        self.dir = tempfile.mkdtemp(prefix="goloop-net-")
        self.loadgen = nc.build_go(nc.HERE / "loadgen", self.dir)
        self.goecho = nc.build_go(nc.HERE / "goecho", self.dir)
        self.cert = self.key = None
        if tls:
            self.cert, self.key = f"{self.dir}/cert.pem", f"{self.dir}/key.pem"
            nc.make_certificate(self.cert, self.key)
        self.seq = 0

    def address(self, transport):
        self.seq += 1
        if transport == "unix":
            return f"unix:{self.dir}/echo{self.seq}.sock"
        return f"{'udp' if transport == 'udp' else 'tcp'}:127.0.0.1:0"

    def server_cmd(self, column, mode, addr, tls):
        if column == GO:
            cmd = [self.goecho, "-addr", addr]
            return [*cmd, "-tls", f"{self.cert},{self.key}"] if tls else cmd
        cmd = [sys.executable, str(ECHO_SERVER), "--loop", column, "--mode", mode]
        cmd += ["--addr", addr]
        return [*cmd, "--tls", f"{self.cert},{self.key}"] if tls else cmd

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(args, tools, job):
    """One fresh server + one load generator run -> a result dict."""
    transport = job["transport"]
    tls = transport in TLS_TRANSPORTS
    addr = tools.address(transport)
    cmd = tools.server_cmd(job["column"], job["mode"], addr, tls)
    server = nc.Child(cmd, 0, nc.python_env())
    try:
        status, info = nc.wait_ready(server, 20)
        if status != "ok":
            return {"status": status, "error": info}
        churn = transport in ("churn", "tlschurn")
        return drive(args, tools, server, info, SIZES[job["size"]], churn, tls)
    finally:
        server.stop()


def _loadgen_cmd(args, tools, addr, size, churn, tls):
    bound = args.warmup + args.duration + 30
    return [
        tools.loadgen,
        *("-addr", addr, "-size", str(size), "-conns", str(args.conns)),
        *("-warmup", f"{args.warmup}s", "-duration", f"{args.duration}s"),
        *("-events", "-timeout", f"{bound}s"),
        *(("-churn",) if churn else ()),
        *(("-tls", tools.cert) if tls else ()),
    ]


def _read_event(gen, timeout):
    line = gen.next_line(timeout)
    if line is None:
        return {"event": "eof", "error": f"load generator died: {gen.error_tail()}"}
    return json.loads(line)


def drive(args, tools, server, addr, size, churn, tls):
    gen = nc.Child(_loadgen_cmd(args, tools, addr, size, churn, tls), 1)
    try:
        marks = []
        for want, wait in (("start", args.warmup), ("stop", args.duration), ("result", 0)):
            event = _read_event(gen, wait + 20)
            if event.get("event") != want:
                return _failure(event, server)
            marks.append((nc.proc_cpu(server.pid), nc.proc_cpu(gen.pid), nc.system_cpu()))
        return _sample(event, marks)
    except (TimeoutError, OSError, ValueError) as exc:
        return _failure({"error": nc.describe(exc)}, server)
    finally:
        gen.stop()


def _delta(before, after):
    return tuple(b - a for a, b in zip(before, after, strict=True))


def _sample(result, marks):
    if result["errors"] or not result["requests"]:
        return {"status": "failed", "error": result.get("error", "no requests")}
    (s0, c0, m0), (s1, c1, m1) = marks[0], marks[1]
    deltas = _delta(s0, s1), _delta(c0, c1), _delta(m0, m1)
    sample = nr.cpu_sample(result["requests"], result["seconds"], *deltas)
    return {"status": "ok", "sample": sample}


def _failure(event, server):
    error = event.get("error", f"unexpected output {event}")
    tail = server.error_tail(2)
    status = "unsupported" if "NotImplementedError" in tail else "failed"
    return {"status": status, "error": f"{error}; server: {tail}"}


# ------------------------------------------------------------ the runs


def probe_loops(columns):
    info = {name: nc.probe_loop(name) for name in columns if name != GO}
    if GO in columns:
        info[GO] = {"available": True, "version": nc.go_version(), "note": None}
    return info


def new_cells(groups, columns, loop_info):
    cells = {}
    for size, transport, rows in groups:
        for row in rows:
            cells[row] = {c: nr.new_cell() for c in columns if c != GO}
        if GO in columns:
            cells[native_row(size, transport)] = {GO: nr.new_cell()}
    for row in cells.values():
        for name, cell in row.items():
            if not loop_info[name]["available"]:
                cell["status"] = "unavailable"
    return cells


def _jobs_for_row(args, rng, group, row):
    size, transport, rows = group
    mode = row.rsplit("-", 1)[1]
    columns = [c for c in args.loops if c != GO]
    if GO in args.loops and row == rows[0]:
        columns.append(GO)
    rng.shuffle(columns)
    for column in columns:
        cell_row = native_row(size, transport) if column == GO else row
        yield {
            "row": cell_row,
            "column": column,
            "size": size,
            "transport": transport,
            "mode": "native" if column == GO else mode,
        }


def run_all(args, tools, cells, groups):
    rng = random.Random(args.seed)  # noqa: S311 - shuffling only
    for rep in range(1, args.reps + 1):
        for group in groups:
            for row in group[2]:
                done = [
                    run_job(args, tools, cells, job, rep)
                    for job in _jobs_for_row(args, rng, group, row)
                ]
                _progress(rep, args.reps, row, [d for d in done if d])


def run_job(args, tools, cells, job, rep):
    """Measure one cell once (unless it already failed); (column, cell)."""
    cell = cells[job["row"]][job["column"]]
    if cell["status"] != "ok":  # a FAILED / n/a cell stays so
        return None
    result = nr.measure_quiet(lambda: measure(args, tools, job), args.busy, args.retries)
    _store(cell, result, job, rep)
    return job["column"], cell


def _store(cell, result, job, rep):
    where = {"rep": rep, "label": f"{job['column']} / {job['row']}"}
    if result["status"] == "ok":
        cell["samples"].append({"rep": rep} | result["sample"])
    else:
        nr.record_error(cell, result["status"], result["error"], where)


def _progress(rep, reps, row, done):
    parts = []
    for name, cell in done:
        if cell["status"] != "ok":
            parts.append(f"{name} {cell['status'].upper()}")
        elif cell["samples"] and cell["samples"][-1]["rep"] == rep:
            s = cell["samples"][-1]
            parts.append(f"{name} {nr.fmt_rate(s['rps'])}/s {s['cpu_us']:.1f}µs")
    print(f"[rep {rep}/{reps}] {row:<18} " + "  ".join(parts), file=sys.stderr, flush=True)


# ------------------------------------------------------------ rendering


def _row_cells(args, cells, size, transport, row):
    native = cells.get(native_row(size, transport), {})
    return {c: native.get(GO) if c == GO else cells[row].get(c) for c in args.loops}


def _table(args, cells, groups, fmt, metric):
    others = [c for c in args.loops if c != args.baseline]
    head = ["size", "transport", "mode", *args.loops, *(f"{c}/{args.baseline}" for c in others)]
    rows = []
    for size, transport, row_ids in groups:
        for row in row_ids:
            by_col = _row_cells(args, cells, size, transport, row)
            base = by_col.get(args.baseline)
            values = [fmt(by_col[c]) for c in args.loops]
            values += [nr.fmt_ratio(_ratio(by_col[c], base, metric)) for c in others]
            rows.append([size, transport, row.rsplit("-", 1)[1], *values])
    return nr.table(head, rows, left=3)


def _ratio(cell, base, metric):
    if cell is None or base is None:
        return None
    return nr.ratio(cell, base, metric)


def _notes(args, cells, loop_info):
    out = []
    for name in args.loops:
        if not loop_info[name]["available"]:
            out.append(f"- **{name} not available** (column n/a): {loop_info[name]['note']}")
    problems = {}  # same loop, status and error on several rows: one line
    for row, by_col in cells.items():
        for name, cell in by_col.items():
            if cell["status"] in ("failed", "unsupported") and cell["errors"]:
                key = (name, cell["status"], cell["errors"][0]["error"])
                problems.setdefault(key, []).append(row)
    for (name, status, error), rows in problems.items():
        label = "FAILED" if status == "failed" else "n/a (unsupported)"
        out.append(f"- {name} / {', '.join(rows)}: {label}: {error}")
    all_cells = [c for by_col in cells.values() for c in by_col.values()]
    out += [
        f"- {note}" for note in (nr.utilisation_note(all_cells), nr.busy_note(all_cells)) if note
    ]
    return out


def render(args, cells, groups, loop_info, meta):
    setup = (
        f"{args.conns} connections, request/response, every echoed byte verified; "
        f"median of {args.reps} fresh-server runs of {args.duration:g} s "
        f"(after {args.warmup:g} s warm-up); server on CPU 0, load generator on CPU 1; "
        "± = half the (max - min) range relative to the median."
    )
    out = ["## Echo: requests/s (higher is better)", "", setup, ""]
    out += _table(args, cells, groups, nr.fmt_rps, "rps")
    out += ["", "## Echo: server CPU µs per request, user+system (lower is better)", ""]
    out += _table(args, cells, groups, nr.fmt_cpu, "cpu_us")
    out += [
        "",
        f"`x/{args.baseline}`: ratio of medians (requests/s: >1 = faster; CPU: "
        f">1 = more CPU per request than {args.baseline}). `go` = native Go echo server "
        "(goroutine per connection, 256 KiB buffer): it has no modes, the same "
        "measurement is shown on every mode row of its size and transport. "
        "Server and load generator share one machine (one CPU each) and the kernel's "
        "loopback work, so requests/s also depends on the client and on wake-up latency; "
        "server CPU per request is the steadier comparison of the loops. Before each run "
        "one extra connection is opened, used and closed (a fresh server then starts "
        "from the allocator state of a long-running one).",
        "",
    ]
    out += _notes(args, cells, loop_info)
    return out + ["", nc.machine_line(meta), f"Wall time: {meta['wall_seconds']} s."]


# ----------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    groups = plan_groups(args)
    if not groups:
        print("error: no rows selected", file=sys.stderr)
        return 2
    loop_info = probe_loops(args.loops)
    meta = nc.metadata_doc(args, loop_info)
    cells = new_cells(groups, args.loops, loop_info)
    tools = Tools(any(g[1] in TLS_TRANSPORTS for g in groups))
    try:
        run_all(args, tools, cells, groups)
    finally:
        tools.close()
    for by_col in cells.values():
        for cell in by_col.values():
            nr.summarize(cell)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = "\n".join(render(args, cells, groups, loop_info, meta)) + "\n"
    print(text)
    if args.markdown:
        nc.write_file(args.markdown, text)
    if args.json:
        doc = {"meta": meta, "loops": loop_info, "sizes": SIZES, "results": cells}
        nc.write_file(args.json, json.dumps(doc, indent=2) + "\n")
    print(f"total wall time: {meta['wall_seconds']} s", file=sys.stderr)
    failed = [r for r, by_col in cells.items() for c in by_col.values() if c["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
