"""A burst of new TCP connections against a server started with defaults.

For each loop, a fresh server process (pinned to CPU 0) listens on
127.0.0.1 the way users start one: ``loop.create_server(factory, host, 0)``
(``--api protocol``) or ``asyncio.start_server(cb, host, 0)`` (``--api
streams``), with every other argument left at its default (backlog 100).
A client process (pinned to CPU 1) then opens --conns (10,000) connections
as fast as it can: a non-blocking socket and a connect() each, all in one
pass, then sends one byte on each as its handshake finishes and holds the
connections.

Reported, median of --reps runs:

- seconds from the client's first connect() until the server has seen
  ``connection_made`` (or the streams callback) for every connection
  (both processes read CLOCK_MONOTONIC);
- the server's CPU over that window (utime + stime from /proc);
- ListenOverflows and ListenDrops from /proc/net/netstat over the window
  (system-wide counters: a SYN or handshake-completing ACK dropped because
  the accept queue was full; the client retransmits it after ~1 s).

    python benchmarks/net/conn_burst.py [--loops asyncio,uvloop,rloop,goloop]
        [--conns 10000] [--api protocol|streams] [--reps 3]

Writes benchmarks/results/conn_burst.json and conn_burst.md.
"""

import argparse
import asyncio
import os
import random
import select
import socket
import statistics
import sys
import time
from pathlib import Path

import netcommon as nc
import netreport as nr

HOLD_SECONDS = 120  # the client exits by itself after this long
NETSTAT_KEYS = ("ListenOverflows", "ListenDrops")


# --------------------------------------------------------------- server


async def serve(loop, api, count):
    held = 0

    def one_more():
        nonlocal held
        held += 1
        if held == count:
            nc.say("HELD", repr(time.monotonic()))

    class Holder(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            one_more()

    async def on_stream(reader, writer):
        one_more()
        await reader.read()
        writer.close()

    stop = asyncio.Event()
    nc.install_stop(loop, stop)
    if api == "streams":
        server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
    else:
        server = await loop.create_server(Holder, "127.0.0.1", 0)
    nc.say("READY", nc.format_addr(server.sockets[0]))
    await stop.wait()
    server.close()
    return 0


# --------------------------------------------------------------- client


def client(addr, count):
    """Connect ``count`` sockets at once, print STARTED <t> first and
    CONNECTED once every handshake finished; hold them until killed."""
    nc.raise_nofile()
    _, host, port = nc.parse_addr(addr)
    target = (host, port)
    kind = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    conns = []
    nc.say("STARTED", repr(time.monotonic()))
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, kind)
        sock.connect_ex(target)
        conns.append(sock)
    poller = select.epoll(count)
    for sock in conns:
        poller.register(sock.fileno(), select.EPOLLOUT)
    pending = count
    deadline = time.monotonic() + HOLD_SECONDS
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            poller.unregister(fd)
            pending -= 1
            # A request's first byte, as a real client sends: a handshake
            # whose last ACK the server dropped (accept queue full, and
            # no state kept under SYN cookies) completes when this
            # segment is retransmitted; a silent client would wait forever.
            os.write(fd, b"x")
    failed = sum(1 for s in conns if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    nc.say("CONNECTED", count - pending - failed)
    time.sleep(HOLD_SECONDS)
    return 0


# --------------------------------------------------------------- driver


def netstat():
    """TcpExt's listen counters from /proc/net/netstat."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
            return {k: table[k] for k in NETSTAT_KEYS}
    return dict.fromkeys(NETSTAT_KEYS, 0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="a burst of new connections, per loop")
    p.add_argument("--loops", default=",".join(nc.LOOPS), help="comma-separated (%(default)s)")
    p.add_argument("--conns", type=int, default=10_000)
    p.add_argument("--api", choices=("protocol", "streams"), default="protocol")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for HELD")
    p.add_argument("--json", default=str(nc.RESULTS / "conn_burst.json"), help="'' = none")
    p.add_argument("--markdown", default=str(nc.RESULTS / "conn_burst.md"), help="'' = none")
    p.add_argument("--serve", nargs=3, metavar=("LOOP", "API", "N"), help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=2, metavar=("ADDR", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.loops = [n.strip() for n in args.loops.split(",") if n.strip()]
    unknown = set(args.loops) - set(nc.LOOPS)
    if unknown:
        p.error(f"unknown loops: {', '.join(sorted(unknown))}")
    return args


def measure(args, name, count):
    cmd = [sys.executable, __file__, "--serve", name, args.api, str(count)]
    server = nc.Child(cmd, 0, nc.python_env())
    try:
        status, info = nc.wait_ready(server, 20)
        if status != "ok":
            return {"status": status, "error": info}
        time.sleep(0.3)  # let the server settle in its first wait
        return burst(args, server, info, count)
    except (TimeoutError, OSError, ValueError) as exc:
        return {"status": "failed", "error": nc.describe(exc)}
    finally:
        server.stop()


def burst(args, server, addr, count):
    cpu0, net0 = sum(nc.proc_cpu(server.pid)), netstat()
    base_fds = nc.proc_fd_count(server.pid)
    holder = nc.Child([sys.executable, __file__, "--client", addr, str(count)], 1)
    try:
        word, _, started = (holder.next_line(30) or "").partition(" ")
        if word != "STARTED":
            return {"status": "failed", "error": f"client: {holder.error_tail()}"}
        try:
            word, _, held = (server.next_line(args.timeout) or "").partition(" ")
        except TimeoutError:
            fds = nc.proc_fd_count(server.pid) - base_fds
            msg = f"the server holds {fds:,} of {count:,} after {args.timeout:g} s"
            return {"status": "failed", "error": msg}
        if word != "HELD":
            return {"status": "failed", "error": f"server: {server.error_tail()}"}
        cpu1, net1 = sum(nc.proc_cpu(server.pid)), netstat()
        word, _, connected = (holder.next_line(args.timeout) or "").partition(" ")
        if word != "CONNECTED" or int(connected) != count:
            return {"status": "failed", "error": f"client connected {connected or 0}/{count}"}
    finally:
        holder.stop()
    sample = {"held_seconds": float(held) - float(started), "server_cpu_seconds": cpu1 - cpu0}
    return {"status": "ok", "sample": sample | {k: net1[k] - net0[k] for k in NETSTAT_KEYS}}


def run_all(args, count):
    cells = {name: {"status": "ok", "samples": [], "errors": []} for name in args.loops}
    for rep in range(1, args.reps + 1):
        order = list(args.loops)
        random.shuffle(order)
        for name in order:
            cell = cells[name]
            if cell["status"] != "ok":
                continue
            result = measure(args, name, count)
            if result["status"] != "ok":
                nr.record_error(cell, result["status"], result["error"], {"label": name})
                continue
            cell["samples"].append({"rep": rep} | result["sample"])
            s = result["sample"]
            print(
                f"[rep {rep}] {name:<8} held in {s['held_seconds']:.3f} s, server CPU "
                f"{s['server_cpu_seconds']:.2f} s, overflows {s['ListenOverflows']}, "
                f"drops {s['ListenDrops']}",
                file=sys.stderr,
                flush=True,
            )
    return cells


def render(args, cells, count, notes, meta):
    head = ["loop", "seconds to hold all", "server CPU (s)", *NETSTAT_KEYS]
    rows = []
    for name, cell in cells.items():
        samples = cell["samples"]
        if not samples:
            rows.append([name] + ["FAILED" if cell["status"] == "failed" else "n/a"] * 4)
            continue

        def med(key, samples=samples):
            return statistics.median(s[key] for s in samples)

        rows.append(
            [
                name,
                f"{med('held_seconds'):.3f}",
                f"{med('server_cpu_seconds'):.2f}",
                *(f"{med(k):.0f}" for k in NETSTAT_KEYS),
            ]
        )
    out = [f"## A burst of {count:,} new connections ({args.api} API, default backlog)", ""]
    out += nr.table(head, rows)
    out += [
        "",
        f"Median of {args.reps} run(s). From the client's first connect() (all "
        f"{count:,} non-blocking, in one pass) until the server has made the last "
        "connection's protocol; server CPU over that window; TcpExt counters' deltas "
        "(system-wide) over that window.",
        "",
    ]
    out += [f"- {note}" for note in notes]
    for name, cell in cells.items():
        out += [f"- {name}: {cell['status']}: {e['error']}" for e in cell["errors"][:1]]
    load = ", ".join(f"{x:.2f}" for x in meta["machine"]["load_avg"])
    out += ["", nc.machine_line(meta), f"Load average at start: {load}."]
    return out + [f"Wall time: {meta['wall_seconds']} s."]


def main(argv=None):
    args = parse_args(argv)
    if args.client:
        return client(args.client[0], int(args.client[1]))
    if args.serve:
        name, api, count = args.serve
        return nc.serve_on_loop(name, serve, api, int(count))
    started = time.perf_counter()
    count, note = nc.fit_conns(args.conns)
    notes = [note] if note else []
    meta = nc.metadata_doc(args, {n: nc.probe_loop(n) for n in args.loops})
    cells = run_all(args, count)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = "\n".join(render(args, cells, count, notes, meta)) + "\n"
    doc = {"meta": meta, "conns": count, "notes": notes, "results": cells}
    return nc.write_report(args, text, doc, cells.values())


if __name__ == "__main__":
    sys.exit(main())
