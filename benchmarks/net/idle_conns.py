"""Server memory per idle TCP connection, for each loop.

For each loop, a fresh echo server (echo_server.py, --mode, default
protocol; ``go`` = the native Go echo server) listens on 127.0.0.1; a
client process then opens --conns (10,000) TCP connections to it and keeps
them open without sending anything.  Reported: the server's VmRSS (from
/proc/<pid>/status) before the first connection and once the server holds
all of them (counted from /proc/<pid>/fd, then --settle seconds), and the
difference in KiB per connection.  RLIMIT_NOFILE's soft limit is raised to
the hard limit in server and client; a hard limit too low for --conns is
reported and the count lowered to fit.

    python benchmarks/net/idle_conns.py [--loops asyncio,uvloop,rloop,goloop,go]
        [--conns 10000] [--mode protocol] [--reps 1]

Writes benchmarks/results/idle.json and idle.md.
"""

import argparse
import socket
import statistics
import sys
import tempfile
import time

import netcommon as nc
import netreport as nr

GO = "go"
COLUMNS = (*nc.LOOPS, GO)
ECHO_SERVER = nc.HERE / "echo_server.py"


# --------------------------------------------------------------- client


HOLD_SECONDS = 300  # the client exits by itself after this long


def client(addr, count):
    """Open ``count`` connections, print CONNECTED, hold them (until killed)."""
    nc.raise_nofile()
    _, host, port = nc.parse_addr(addr)
    conns = []
    for _ in range(count):
        conns.append(socket.create_connection((host, port), timeout=10))
    nc.say("CONNECTED", len(conns))
    time.sleep(HOLD_SECONDS)
    for sock in conns:
        sock.close()
    return 0


# --------------------------------------------------------------- driver


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="server RSS per idle TCP connection")
    p.add_argument("--loops", default=",".join(COLUMNS), help="comma-separated (%(default)s)")
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--mode", default="protocol", help="echo_server.py mode (protocol)")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--settle", type=float, default=0.5, help="seconds before reading RSS")
    p.add_argument("--json", default=str(nc.RESULTS / "idle.json"), help="'' = none")
    p.add_argument("--markdown", default=str(nc.RESULTS / "idle.md"), help="'' = none")
    p.add_argument("--client", nargs=2, metavar=("ADDR", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.loops = [n.strip() for n in args.loops.split(",") if n.strip()]
    unknown = set(args.loops) - set(COLUMNS)
    if unknown:
        p.error(f"unknown loops: {', '.join(sorted(unknown))}")
    return args


def server_cmd(name, mode, goecho):
    if name == GO:
        return [goecho, "-addr", "tcp:127.0.0.1:0"]
    return [sys.executable, str(ECHO_SERVER), "--loop", name, "--mode", mode]


def wait_fds(pid, target, timeout):
    deadline = time.monotonic() + timeout
    while (count := nc.proc_fd_count(pid)) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"server holds {count} descriptors, expected {target}")
        time.sleep(0.05)
    return count


def measure(args, name, count, goecho):
    server = nc.Child(server_cmd(name, args.mode, goecho), 0, nc.python_env())
    try:
        status, info = nc.wait_ready(server, 20)
        if status != "ok":
            return {"status": status, "error": info}
        time.sleep(args.settle)
        return hold(args, server, info, count)
    except (TimeoutError, OSError) as exc:
        return {"status": "failed", "error": nc.describe(exc)}
    finally:
        server.stop()


def hold(args, server, addr, count):
    base_fds, rss0 = nc.proc_fd_count(server.pid), nc.proc_rss_kib(server.pid)
    cmd = [sys.executable, __file__, "--client", addr, str(count)]
    started = time.perf_counter()
    holder = nc.Child(cmd, 1)
    try:
        line = holder.next_line(120)
        if not (line or "").startswith("CONNECTED"):
            return {"status": "failed", "error": f"client: {holder.error_tail()}"}
        fds = wait_fds(server.pid, base_fds + count, 30)
        connect_s = time.perf_counter() - started
        time.sleep(args.settle)
        rss1 = nc.proc_rss_kib(server.pid)
    finally:
        holder.stop()
    per_conn = (rss1 - rss0) / count
    return {
        "status": "ok",
        "sample": {
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "fds": fds,
            "kib_per_conn": per_conn,
            "connect_seconds": connect_s,
        },
    }


# ------------------------------------------------------------ the runs


def run_all(args, count, goecho):
    cells = {name: {"status": "ok", "samples": [], "errors": []} for name in args.loops}
    for rep in range(1, args.reps + 1):
        for name in args.loops:
            cell = cells[name]
            if cell["status"] != "ok":
                continue
            result = measure(args, name, count, goecho)
            if result["status"] != "ok":
                nr.record_error(cell, result["status"], result["error"], {"label": name})
                continue
            cell["samples"].append({"rep": rep} | result["sample"])
            _progress(rep, name, result["sample"])
    return cells


def _progress(rep, name, s):
    print(
        f"[rep {rep}] {name:<8} RSS {s['rss_before_kib'] / 1024:.1f} -> "
        f"{s['rss_after_kib'] / 1024:.1f} MiB, {s['kib_per_conn']:.2f} KiB/conn "
        f"(connected in {s['connect_seconds']:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def _median(cell, key):
    return statistics.median(s[key] for s in cell["samples"])


def render(args, cells, count, notes, meta):
    head = ["loop", "RSS before (MiB)", f"RSS with {count:,} conns (MiB)", "KiB / conn"]
    head.append("seconds to hold all")
    rows = []
    for name, cell in cells.items():
        if not cell["samples"]:
            label = "FAILED" if cell["status"] == "failed" else "n/a"
            rows.append([name, label, label, label, label])
            continue
        before, after = _median(cell, "rss_before_kib"), _median(cell, "rss_after_kib")
        per_conn, secs = _median(cell, "kib_per_conn"), _median(cell, "connect_seconds")
        rows.append(
            [name, f"{before / 1024:.1f}", f"{after / 1024:.1f}", f"{per_conn:.2f}", f"{secs:.1f}"]
        )
    out = [f"## Server memory per idle TCP connection ({args.mode} mode)", ""]
    out += nr.table(head, rows)
    out += [
        "",
        f"Median of {args.reps} run(s); VmRSS of the server process; `go` = native "
        "Go echo server (a goroutine and a 256 KiB buffer per connection). Seconds to "
        "hold all: from starting the client (one blocking connect after another) until the "
        "server holds every connection's descriptor.",
        "",
    ]
    out += [f"- {note}" for note in notes]
    for name, cell in cells.items():
        out += [f"- {name}: {cell['status']}: {e['error']}" for e in cell["errors"][:1]]
    return out + ["", nc.machine_line(meta), f"Wall time: {meta['wall_seconds']} s."]


def main(argv=None):
    args = parse_args(argv)
    if args.client:
        return client(args.client[0], int(args.client[1]))
    started = time.perf_counter()
    count, note = nc.fit_conns(args.conns)
    notes = [note] if note else []
    meta = nc.metadata_doc(args, {n: nc.probe_loop(n) for n in args.loops if n != GO})
    with tempfile.TemporaryDirectory(prefix="goloop-idle-") as tmp:
        goecho = nc.build_go(nc.HERE / "goecho", tmp) if GO in args.loops else None
        cells = run_all(args, count, goecho)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = "\n".join(render(args, cells, count, notes, meta)) + "\n"
    doc = {"meta": meta, "conns": count, "notes": notes, "results": cells}
    return nc.write_report(args, text, doc, cells.values())


if __name__ == "__main__":
    sys.exit(main())
