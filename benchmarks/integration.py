"""The integration tier's deployments and clients side by side: stock
asyncio, uvloop, rloop and goloop, requests (or operations) per second and CPU
per request of the process(es) running the loop, with ratios to uvloop.

Servers (wrk -t1 on CPU 1, --conns connections, GET / of the apps in
tests/integration/apps; server CPU summed over every process of the
server's session: master and workers):

- ``uvicorn --workers 2`` (httptools, no access log)
- ``gunicorn -w 2`` with uvicorn's worker class
- ``gunicorn -w 2 --preload`` with the Go runtime started in the master,
  so goloop's workers run its post-fork C engine
- aiohttp ``web.run_app`` (one process)

(single-process uvicorn, ``--fd`` and sockets handed to uvicorn are
benchmarks/net/run_uvicorn.py's, in make bench-net.)

Clients (a fresh child process per loop and repetition; CPU of that
process per operation, after a warm-up):

- asyncpg ``fetchval("SELECT $1::int")`` and psycopg (async)
  ``execute`` + ``fetchone`` over PostgreSQL's Unix socket
- redis-py asyncio ``GET`` over TCP
- httpx and aiohttp's client ``GET /`` against aiohttp's server on uvloop
  (the same server for every client loop)

PostgreSQL and redis-server are started in temporary directories
(tests/integration/services.py). Repetitions are interleaved and the loop
order shuffled per repetition; medians, ± half the range relative to the
median.

    python benchmarks/integration.py [--quick] [--reps 3] [--duration 3]
        [--loops asyncio,uvloop,rloop,goloop] [--rows uvicorn-workers,...]

Needs wrk (Debian) and tests/integration/requirements.txt. Writes
benchmarks/results/integration.md (and .json).
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
INTEG = REPO / "tests" / "integration"
APPS = INTEG / "apps"
sys.path[:0] = [str(HERE / "net"), str(INTEG)]

import netcommon as nc  # noqa: E402
import services  # noqa: E402

LOOPS = ("asyncio", "uvloop", "rloop", "goloop")
LOOP_OPTION = {
    "asyncio": "asyncio",
    "uvloop": "uvloop",
    "rloop": "rloop:new_event_loop",
    "goloop": "goloop:new_event_loop",
}
WORKER = {
    "asyncio": "AsyncioWorker",
    "uvloop": "UvloopWorker",
    "rloop": "RloopWorker",
    "goloop": "GoloopWorker",
}
SERVER_ROWS = {
    "uvicorn-workers": "uvicorn --workers 2",
    "gunicorn": "gunicorn -w 2, uvicorn worker",
    "gunicorn-preload": "gunicorn -w 2 --preload (Go started in the master)",
    "aiohttp-server": "aiohttp web.run_app",
}
CLIENT_ROWS = {
    "asyncpg": "asyncpg fetchval (Unix socket)",
    "psycopg": "psycopg async execute+fetchone (Unix socket)",
    "redis": "redis-py asyncio GET (TCP)",
    "httpx": "httpx AsyncClient GET",
    "aiohttp-client": "aiohttp ClientSession GET",
}
OPS = {"asyncpg": 4000, "psycopg": 3000, "redis": 5000, "httpx": 500, "aiohttp-client": 3000}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loops", default=",".join(LOOPS))
    p.add_argument("--rows", default=",".join([*SERVER_ROWS, *CLIENT_ROWS]))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="1 repetition of 1 s, 1/4 of the ops")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "integration"))
    args = p.parse_args(argv)
    args.loops = args.loops.split(",")
    args.rows = args.rows.split(",")
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 1, 0
        for k in OPS:
            OPS[k] //= 4
    return args


# ------------------------------------------------------------------ servers


def session_cpu(leader):
    """user+sys seconds of every live process in the leader's session."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat[3]) == leader:  # the session id (field 6)
            total += (int(stat[11]) + int(stat[12])) / nc.CLK_TCK
    return total


def start_server(row, loop, port):
    py = sys.executable
    env = dict(os.environ)
    if row == "uvicorn-workers":
        cmd = [py, "-m", "uvicorn", "asgi_app:app", "--loop", LOOP_OPTION[loop],
               "--http", "httptools", "--workers", "2", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    elif row.startswith("gunicorn"):
        cmd = [py, "-m", "gunicorn", "asgi_app:app", "-k", f"workers.{WORKER[loop]}",
               "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
        if row == "gunicorn-preload":
            cmd.append("--preload")
            env["GOLOOP_START_GO_AT_IMPORT"] = "1"
    else:
        cmd = [py, "aiohttp_app.py", loop, str(port)]
    return subprocess.Popen(
        cmd, cwd=APPS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip


def wait_accepting(proc, port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-800:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if nc.check_http("127.0.0.1", port, b"Hello, World!") is None:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not answering")


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def measure_server(args, row, loop):
    port = services.free_port()
    proc = start_server(row, loop, port)
    try:
        wait_accepting(proc, port)
        time.sleep(0.5)  # every worker up (gunicorn's second fork, uvicorn's second spawn)
        url = f"http://127.0.0.1:{port}/"
        if args.warmup:
            nc.run_wrk(url, args.conns, args.warmup)
        cpu0 = session_cpu(proc.pid)
        text, _ = nc.run_wrk(url, args.conns, args.duration)
        cpu = session_cpu(proc.pid) - cpu0
        requests, seconds, errors, _ = nc.parse_wrk(text)
        if errors:
            raise RuntimeError(f"wrk saw {errors} errors")
        return {"rate": requests / seconds, "cpu_us": cpu / requests * 1e6}
    finally:
        stop(proc)


# ------------------------------------------------------------------ clients

CLIENT = r"""
import asyncio, json, sys, time

row, loop_name, n, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if loop_name == "goloop":
    import goloop
    factory = goloop.new_event_loop
elif loop_name == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
elif loop_name == "rloop":
    import rloop
    factory = rloop.new_event_loop
else:
    factory = asyncio.SelectorEventLoop


async def setup():
    if row == "asyncpg":
        import asyncpg
        conn = await asyncpg.connect(target)
        return (lambda i: conn.fetchval("SELECT $1::int", i)), conn.close
    if row == "psycopg":
        import psycopg
        conn = await psycopg.AsyncConnection.connect(target, autocommit=True)
        cur = conn.cursor()
        async def op(i):
            await cur.execute("SELECT %s::int", (i,))
            return await cur.fetchone()
        return op, conn.close
    if row == "redis":
        import redis.asyncio as redis
        r = redis.Redis.from_url(target)
        await r.set("bench", b"x" * 100)
        return (lambda i: r.get("bench")), r.aclose
    if row == "httpx":
        import httpx
        client = httpx.AsyncClient()
        return (lambda i: client.get(target)), client.aclose
    import aiohttp
    session = aiohttp.ClientSession()
    async def op(i):
        async with session.get(target) as resp:
            return await resp.read()
    return op, session.close


async def main():
    op, close = await setup()
    for i in range(n // 5):  # warm-up
        await op(i)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        await op(i)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    await close()
    print(json.dumps({"rate": n / wall, "cpu_us": cpu / n * 1e6}))


with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
"""


def measure_client(args, row, loop, targets):
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, row, loop, str(OPS[row]), targets[row]],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(proc.stderr[-800:])
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ report


def median_spread(values):
    values = sorted(values)
    med = values[len(values) // 2]
    return med, (values[-1] - values[0]) / 2 / med * 100 if med else 0.0


def render(args, results, meta):
    title = {**SERVER_ROWS, **CLIENT_ROWS}
    out = ["## Integration: deployments and clients side by side", ""]
    out += [
        f"{meta['when']}; {meta['machine']}; median of {args.reps} interleaved runs "
        f"(servers: wrk -t1 -c{args.conns} on CPU 1 for {args.duration:g} s after "
        f"{args.warmup:g} s, server CPU summed over master and workers; clients: "
        f"{', '.join(f'{k} {v}' for k, v in OPS.items())} operations after a 1/5 warm-up, "
        "CPU of the client process). Lower CPU/op is better; ratios to uvloop.",
        "",
        "| row | loop | req or op/s | ÷ uvloop | CPU µs/op | ÷ uvloop |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in args.rows:
        base = results.get((row, "uvloop"))
        for loop in args.loops:
            cell = results.get((row, loop))
            if not cell or "error" in cell:
                out.append(f"| {title[row]} | {loop} | failed: {cell and cell['error']} | | | |")
                continue
            rate, rate_sp = median_spread(cell["rate"])
            cpu, cpu_sp = median_spread(cell["cpu_us"])
            rr = cr = ""
            if base and "error" not in base:
                rr = f"{rate / median_spread(base['rate'])[0]:.2f}"
                cr = f"{cpu / median_spread(base['cpu_us'])[0]:.2f}"
            out.append(
                f"| {title[row]} | {loop} | {rate:,.0f} ±{rate_sp:.0f}% | {rr} "
                f"| {cpu:.1f} ±{cpu_sp:.0f}% | {cr} |"
            )
    out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items())]
    return "\n".join(out) + "\n"


def main(argv=None):
    args = parse_args(argv)
    packages = {}
    for name in ("goloop", "uvloop", "rloop", "uvicorn", "gunicorn", "aiohttp", "asyncpg",
                 "psycopg", "redis", "httpx"):  # fmt: skip
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            print(f"integration benchmark: {name} missing (pip install -r "
                  "tests/integration/requirements.txt)", file=sys.stderr)  # fmt: skip
            return 1
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "packages": packages,
    }
    results = {}
    started = time.perf_counter()
    with services.postgres() as pg, services.redis() as rd:
        ref_port = services.free_port()
        ref = start_server("aiohttp-server", "uvloop", ref_port)
        try:
            wait_accepting(ref, ref_port)
            targets = {
                "asyncpg": pg.dsn("unix"),
                "psycopg": pg.dsn("unix"),
                "redis": f"redis://127.0.0.1:{rd.port}",
                "httpx": f"http://127.0.0.1:{ref_port}/",
                "aiohttp-client": f"http://127.0.0.1:{ref_port}/",
            }
            for rep in range(args.reps):
                for row in args.rows:
                    loops = list(args.loops)
                    random.shuffle(loops)
                    for loop in loops:
                        cell = results.setdefault((row, loop), {"rate": [], "cpu_us": []})
                        try:
                            if row in SERVER_ROWS:
                                got = measure_server(args, row, loop)
                            else:
                                got = measure_client(args, row, loop, targets)
                        except Exception as exc:  # reported in the table
                            cell["error"] = str(exc).strip().splitlines()[-1][:120]
                            continue
                        cell["rate"].append(got["rate"])
                        cell["cpu_us"].append(got["cpu_us"])
                        line = f"rep {rep + 1} {row} {loop}: {got['rate']:,.0f}/s"
                        print(f"{line} {got['cpu_us']:.1f} µs/op", file=sys.stderr, flush=True)
        finally:
            stop(ref)
    meta["machine"] += f", {os.getloadavg()[0]:.1f} at the end"
    text = render(args, results, meta)
    text += f"\nTook {time.perf_counter() - started:.0f} s.\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(
        json.dumps({"meta": meta, "results": {f"{r} {lp}": c for (r, lp), c in results.items()}})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
