"""Connection churn soak: does a server's RSS or fd count grow?

For each loop, a fresh echo server (echo_server.py, Protocol mode, pinned
to CPU 0) serves --cycles connect/request/close cycles from the Go load
generator (``loadgen -churn``, pinned to CPU 1: --conns workers, each
dialling, sending --size bytes, reading the whole echo back, checking it
and closing). The generator runs in segments of --every cycles; after
each one the server's VmRSS and open descriptors are read from /proc, so
the curve is sampled with no connection open (once the server's fd
count is steady).

    python benchmarks/net/churn.py [--loops goloop,uvloop] [--cycles 1000000]
        [--every 50000] [--conns 8] [--size 64]

Prints the curve (cycles, RSS, fds per loop) and the growth after the
first segment (the warm-up); writes benchmarks/results/churn.json and
churn.md.
"""

import argparse
import json
import sys
import tempfile
import time

import netcommon as nc
import netreport as nr

ECHO_SERVER = nc.HERE / "echo_server.py"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="RSS and fds over connection churn")
    p.add_argument("--loops", default="goloop,uvloop", help="comma-separated (%(default)s)")
    p.add_argument("--cycles", type=int, default=1_000_000)
    p.add_argument("--every", type=int, default=50_000, help="cycles per sample")
    p.add_argument("--conns", type=int, default=8, help="concurrent churning clients")
    p.add_argument("--size", type=int, default=64, help="request size in bytes")
    p.add_argument("--json", default=str(nc.RESULTS / "churn.json"), help="'' = none")
    p.add_argument("--markdown", default=str(nc.RESULTS / "churn.md"), help="'' = none")
    args = p.parse_args(argv)
    args.loops = [n.strip() for n in args.loops.split(",") if n.strip()]
    unknown = set(args.loops) - set(nc.LOOPS)
    if unknown:
        p.error(f"unknown loops: {', '.join(sorted(unknown))}")
    if args.every < 1 or args.cycles < args.every:
        p.error("--cycles must be at least --every, and --every positive")
    return args


def segment(args, loadgen, addr):
    """One loadgen -churn run of --every cycles: the cycles it completed."""
    cmd = [
        loadgen,
        *("-addr", addr, "-churn", "-prime=false", "-size", str(args.size)),
        *("-conns", str(args.conns), "-warmup", "0s", "-duration", "1h"),
        *("-requests", str(args.every), "-timeout", "1h"),
    ]
    gen = nc.Child(cmd, 1)
    try:
        line = gen.next_line(600)
        status = gen.proc.wait(30)
    finally:
        gen.stop()
    result = json.loads(line) if line and line.startswith("{") else {}
    if status != 0 or result.get("errors"):
        raise OSError(f"loadgen: {result.get('error') or gen.error_tail()}")
    return result["total_requests"]


def settled_fds(pid, timeout=5.0):
    """The server's open fd count once two reads 0.2 s apart agree: the
    load generator has exited, but the server may still be closing the
    last connections."""
    deadline = time.monotonic() + timeout
    count = nc.proc_fd_count(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        count, last = nc.proc_fd_count(pid), count
        if count == last:
            break
    return count


def soak(args, name, loadgen):
    cmd = [sys.executable, str(ECHO_SERVER), "--loop", name, "--mode", "protocol"]
    server = nc.Child(cmd, 0, nc.python_env())
    curve = []
    try:
        status, addr = nc.wait_ready(server, 20)
        if status != "ok":
            return {"status": status, "error": addr, "curve": curve}
        done, started = 0, time.perf_counter()
        while done < args.cycles:
            done += segment(args, loadgen, addr)
            fds = settled_fds(server.pid)
            point = {
                "cycles": done,
                "rss_kib": nc.proc_rss_kib(server.pid),
                "fds": fds,
                "seconds": round(time.perf_counter() - started, 1),
            }
            curve.append(point)
            print(
                f"{name:<8} {done:>9,} cycles  RSS {point['rss_kib'] / 1024:7.1f} MiB  "
                f"fds {point['fds']:>4}  {point['seconds']:7.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return {"status": "ok", "curve": curve}
    except (TimeoutError, OSError, ValueError) as exc:
        return {"status": "failed", "error": nc.describe(exc), "curve": curve}
    finally:
        server.stop()


def render(args, results, meta):
    names = list(results)
    head = ["cycles"]
    for name in names:
        head += [f"{name} RSS (MiB)", f"{name} fds"]
    longest = max(len(r["curve"]) for r in results.values())
    rows = []
    for i in range(longest):
        points = [r["curve"][i] if i < len(r["curve"]) else None for r in results.values()]
        cycles = next(p["cycles"] for p in points if p)
        row = [f"{cycles:,}"]
        for p in points:
            row += [f"{p['rss_kib'] / 1024:.1f}", str(p["fds"])] if p else ["", ""]
        rows.append(row)
    out = [f"## RSS and open fds over {args.cycles:,} connect/request/close cycles", ""]
    out += nr.table(head, rows)
    out += [
        "",
        f"Echo server in Protocol mode; `loadgen -churn -conns {args.conns} -size "
        f"{args.size}`, sampled every {args.every:,} cycles with no connection open.",
        "",
    ]
    for name, r in results.items():
        curve = r["curve"]
        if r["status"] != "ok":
            out.append(f"- {name}: {r['status']}: {r.get('error')}")
        if len(curve) >= 2:
            first, last = curve[0], curve[-1]
            growth = (last["rss_kib"] - first["rss_kib"]) / 1024
            out.append(
                f"- {name}: after the first sample, RSS {growth:+.1f} MiB and fds "
                f"{last['fds'] - first['fds']:+d} over {last['cycles'] - first['cycles']:,} "
                f"cycles ({last['seconds']:.0f} s in all)"
            )
    load = ", ".join(f"{x:.2f}" for x in meta["machine"]["load_avg"])
    return out + ["", nc.machine_line(meta), f"Load average at start: {load}."]


def main(argv=None):
    args = parse_args(argv)
    meta = nc.metadata_doc(args, {n: nc.probe_loop(n) for n in args.loops})
    with tempfile.TemporaryDirectory(prefix="goloop-churn-") as tmp:
        loadgen = nc.build_go(nc.HERE / "loadgen", tmp)
        results = {name: soak(args, name, loadgen) for name in args.loops}
    text = "\n".join(render(args, results, meta)) + "\n"
    print(text)
    if args.markdown:
        nc.write_file(args.markdown, text)
    if args.json:
        nc.write_file(args.json, json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 1 if any(r["status"] != "ok" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
