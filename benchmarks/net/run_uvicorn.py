"""uvicorn benchmark: a plain ASGI app (asgi_app.py) under wrk, per loop and
per way the listening socket is made.

uvicorn (``--http httptools``, no access log, log level warning) runs in a
fresh process pinned to CPU 0, one process, no workers; the runner waits
until it accepts connections, checks a keep-alive request pair (status,
body), then wrk, pinned to CPU 1 (one thread, --conns connections, default
50 as in issue 10), warms it up for --warmup seconds and measures for
--duration seconds while the server's CPU time is read from /proc.
Reported: requests/s, wrk's p50 latency, server CPU µs per request, and
ratios to --baseline in the same mode.  Repetitions interleaved, loop order
shuffled per mode and repetition; medians with spread.

Loops are picked with uvicorn's own ``--loop``: ``asyncio``, ``uvloop``,
and the loop-factory import strings ``rloop:new_event_loop`` and
``goloop:new_event_loop`` (uvicorn >= 0.36 calls such a string as the
loop factory).

Modes (--modes):

- ``loop``: the loop binds.  ``python -m uvicorn asgi_app:app --host
  127.0.0.1 --port P``: uvicorn passes host and port to
  ``loop.create_server()``, which makes the socket from getaddrinfo
  (proto IPPROTO_TCP).  This is single-process ``uvicorn app:app``.
- ``sockets``: uvicorn is handed a socket.  The runner binds
  ``socket.socket(socket.AF_INET)`` (proto 0) and uvicorn_sockets.py runs
  ``uvicorn.Server(config).run(sockets=[sock])`` on it, so
  ``loop.create_server(sock=...)`` gets a proto-0 TCP socket and the
  accepted sockets inherit proto 0; asyncio then skips TCP_NODELAY.  That
  is the path of gunicorn's uvicorn worker (gunicorn binds
  ``socket.socket(family, SOCK_STREAM)``) and of ``uvicorn --workers N`` /
  ``--reload`` up to uvicorn 0.54, whose ``Config.bind_socket()`` made
  ``socket.socket(family=family)``; uvicorn 0.55 binds with
  ``proto=IPPROTO_TCP`` there, so ``--workers`` no longer takes this path
  and is not used here (it would also need CPU summed over the workers).
- ``fd``: ``python -m uvicorn --fd N`` with the same proto-0 socket.
  uvicorn wraps the fd as ``socket.fromfd(fd, AF_UNIX, SOCK_STREAM)``, so
  every loop sees a Unix-domain socket object (proto 0): asyncio, uvloop
  and rloop trust it and leave TCP_NODELAY off; goloop asks the kernel
  for the socket's real family and sets it.

    python benchmarks/net/run_uvicorn.py [--quick] [--reps 3] [--duration 2]
        [--loops asyncio,uvloop,rloop,goloop] [--modes loop,sockets,fd] [--conns 50]

Needs wrk (Debian package ``wrk``), uvicorn and httptools (PyPI) in the
Python that runs it; without them it says so and exits 0 without
measuring.  Writes benchmarks/results/uvicorn.json and uvicorn.md.
"""

import argparse
import socket
import sys
import time
from importlib import metadata

import netcommon as nc
import netreport as nr

BODY = b"Hello, World!"
LOOP_ARG = {
    "asyncio": "asyncio",
    "uvloop": "uvloop",
    "rloop": "rloop:new_event_loop",
    "goloop": "goloop:new_event_loop",
}
MODES = {
    "loop": "loop binds",
    "sockets": "uvicorn binds (proto 0)",
    "fd": "uvicorn --fd",
}
MODE_NOTES = {
    "loop": "`uvicorn asgi_app:app --host --port`: loop.create_server(host, port), "
    "socket from getaddrinfo (proto 6)",
    "sockets": "uvicorn.Server.run(sockets=[socket.socket(AF_INET)]) (proto 0): gunicorn's "
    "uvicorn worker, and uvicorn --workers/--reload up to 0.54",
    "fd": "`uvicorn --fd N`: uvicorn wraps the fd as socket.fromfd(fd, AF_UNIX, SOCK_STREAM); "
    "only goloop asks the kernel and sees TCP",
}
HOST = "127.0.0.1"
UVICORN = ["-m", "uvicorn", "asgi_app:app", "--app-dir", str(nc.HERE), "--http", "httptools"]
UVICORN += ["--no-access-log", "--log-level", "warning"]
SOCKETS_DRIVER = nc.HERE / "uvicorn_sockets.py"
START_TIMEOUT = 30.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="uvicorn + plain ASGI app benchmark over event loops")
    nc.add_wrk_options(p, nc.LOOPS, "uvicorn", conns=50)
    p.add_argument(
        "--modes",
        type=nc.csv_choices(MODES),
        default=",".join(MODES),
        help="comma-separated (%(default)s)",
    )
    return nc.finish_wrk_options(p, p.parse_args(argv), nc.LOOPS)


# ---------------------------------------------------------- one sample


def listening_socket():
    """A bound, not yet listening TCP socket made the way gunicorn (and
    uvicorn <= 0.54's bind_socket) make theirs: proto left at 0."""
    sock = socket.socket(socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


def free_port():
    with socket.socket(socket.AF_INET) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start(mode, name):
    """Start uvicorn for (mode, loop); (Child, port)."""
    loop = LOOP_ARG[name]
    if mode == "loop":
        port = free_port()
        cmd = [sys.executable, *UVICORN, "--loop", loop, "--host", HOST, "--port", str(port)]
        return nc.Child(cmd, 0, nc.python_env()), port
    with listening_socket() as sock:
        fd = str(sock.fileno())
        if mode == "fd":
            cmd = [sys.executable, *UVICORN, "--loop", loop, "--fd", fd]
        else:
            cmd = [sys.executable, str(SOCKETS_DRIVER), fd, loop]
        return nc.Child(cmd, 0, nc.python_env(), pass_fds=(sock.fileno(),)), sock.getsockname()[1]


def accepting(port):
    """Wait until uvicorn accepts connections on the port (it prints nothing)."""

    def ready(server):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                return "failed", f"uvicorn exited: {server.error_tail()}"
            try:
                socket.create_connection((HOST, port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            return "ok", (HOST, port)
        return "failed", f"uvicorn not accepting after {START_TIMEOUT:g} s: {server.error_tail()}"

    return ready


def measure(args, key):
    mode, name = key
    server, port = start(mode, name)
    return nc.measure_http(server, accepting(port), BODY, args)


# ------------------------------------------------------------ the report


def fmt_p50(cell):
    text = nr.status_text(cell)
    return text if text is not None else f"{nr.median(cell, 'p50_ms'):.2f} ms"


def render(args, cells, loop_info, meta):
    base = args.baseline
    head = ["mode", "loop", "requests/s", f"rps/{base}", "p50 latency"]
    head += ["server CPU µs/request (user+sys)", f"CPU/{base}"]
    rows = []
    for mode in args.modes:
        for name in args.loops:
            cell, ref = cells[mode, name], cells.get((mode, base))
            rps_r = nr.ratio(cell, ref, "rps") if ref else None
            cpu_r = nr.ratio(cell, ref, "cpu_us") if ref else None
            rows.append([MODES[mode], name, nr.fmt_rps(cell), nr.fmt_ratio(rps_r)])
            rows[-1] += [fmt_p50(cell), nr.fmt_cpu(cell), nr.fmt_ratio(cpu_r)]
    out = ["## uvicorn + plain ASGI app (httptools)", ""]
    out += [
        f"uvicorn {meta['packages'].get('uvicorn')}, one process, --http httptools, "
        f"--no-access-log; wrk -t1 -c{args.conns}, median of {args.reps} fresh-server runs "
        f"of {args.duration} s (after {args.warmup} s warm-up); server on CPU 0, wrk on "
        "CPU 1; ± = half the (max - min) range relative to the median; p50 from wrk "
        "--latency. Modes: see run_uvicorn.py's docstring.",
        "",
    ]
    out += nr.table(head, rows, left=2)
    out += ["", *(f"- {MODES[m]}: {MODE_NOTES[m]}." for m in args.modes)]
    labelled = {f"{mode} {name}": cells[mode, name] for mode in args.modes for name in args.loops}
    return out + nc.report_footer(labelled, loop_info, meta)


def main(argv=None):
    args = parse_args(argv)
    why = nc.missing_http_tools(("httptools", "uvicorn"))
    if why:
        print(f"uvicorn benchmark skipped: {why}", file=sys.stderr)
        return 0
    started = time.perf_counter()
    loop_info = {n: nc.probe_loop(n) for n in args.loops}
    meta = nc.metadata_doc(args, loop_info)
    meta["packages"] |= {m: metadata.version(m) for m in ("uvicorn", "httptools")}
    cells = {(mode, n): nr.new_cell() for mode in args.modes for n in args.loops}
    for (_, name), cell in cells.items():
        if not loop_info[name]["available"]:
            cell["status"] = "unavailable"
    rows = [[(mode, name) for name in args.loops] for mode in args.modes]
    nc.run_interleaved(args, cells, rows, lambda key: measure(args, key))
    for cell in cells.values():
        nr.summarize(cell)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = "\n".join(render(args, cells, loop_info, meta)) + "\n"
    results = {mode: {n: cells[mode, n] for n in args.loops} for mode in args.modes}
    return nc.write_report(
        args, text, {"meta": meta, "loops": loop_info, "results": results}, cells.values()
    )


if __name__ == "__main__":
    sys.exit(main())
