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
import sys
import tempfile
import time

import netcommon as nc
import netreport as nr

GO = "go"
COLUMNS = (*nc.LOOPS, GO)
HTTP_SERVER = nc.HERE / "http_server.py"
BODY = b"Hello, World!"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="HTTP hello-world benchmark over event loops")
    nc.add_wrk_options(p, COLUMNS, "http", conns=8)
    return nc.finish_wrk_options(p, p.parse_args(argv), COLUMNS)


def server_cmd(name, gohttp):
    if name == GO:
        return [gohttp, "-addr", "tcp:127.0.0.1:0"]
    return [sys.executable, str(HTTP_SERVER), "--loop", name]


def ready(server):
    """The server's READY line: ("ok", (host, port)) or (status, why)."""
    status, addr = nc.wait_ready(server, 20)
    return (status, nc.parse_addr(addr)[1:]) if status == "ok" else (status, addr)


def measure(args, name, gohttp):
    server = nc.Child(server_cmd(name, gohttp), 0, nc.python_env())
    return nc.measure_http(server, ready, BODY, args)


# ------------------------------------------------------------ the report


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
    return out + [""] + nc.report_footer(cells, loop_info, meta)


def main(argv=None):
    args = parse_args(argv)
    why = nc.missing_http_tools()
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
        nc.run_interleaved(args, cells, [args.loops], lambda name: measure(args, name, gohttp))
    for cell in cells.values():
        nr.summarize(cell)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = "\n".join(render(args, cells, loop_info, meta)) + "\n"
    return nc.write_report(
        args, text, {"meta": meta, "loops": loop_info, "results": cells}, cells.values()
    )


if __name__ == "__main__":
    sys.exit(main())
