"""Name resolution through the loop, side by side: CPU per lookup and rate.

Run: python benchmarks/resolve.py [--loops asyncio,uvloop,rloop,goloop]
     [--reps 3] [--json benchmarks/results/resolve.json]
Prints a markdown table. Each cell is the median of --reps fresh processes
(loops interleaved); CPU is the whole process's (time.process_time: the
loop thread plus whatever threads the loop resolves on: asyncio's executor,
libuv's pool, goloop's goroutines), per lookup, in microseconds. Every
answer is checked against socket.getaddrinfo / socket.getnameinfo.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROWS = {
    # name: (label, lookups per run)
    "numeric": ("getaddrinfo('127.0.0.1', 80), one at a time", 20_000),
    "localhost": ("getaddrinfo('localhost', 80), 100 in flight", 20_000),
    "nameinfo": ("getnameinfo(('127.0.0.1', 80)), 100 in flight", 20_000),
}
IN_FLIGHT = 100

CHILD = """
import asyncio, json, socket, sys, time
row, kind, n, in_flight = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
loop = asyncio.new_event_loop() if kind == "asyncio" else __import__(kind).new_event_loop()

async def numeric(count):
    want = socket.getaddrinfo("127.0.0.1", 80)
    for _ in range(count):
        if await loop.getaddrinfo("127.0.0.1", 80) != want:
            raise SystemExit("wrong answer")

async def in_flight_batches(count, call, want):
    for _ in range(count // in_flight):
        for got in await asyncio.gather(*(call() for _ in range(in_flight))):
            if got != want:
                raise SystemExit("wrong answer")

async def localhost(count):
    want = socket.getaddrinfo("localhost", 80)
    await in_flight_batches(count, lambda: loop.getaddrinfo("localhost", 80), want)

async def nameinfo(count):
    want = socket.getnameinfo(("127.0.0.1", 80), 0)
    await in_flight_batches(count, lambda: loop.getnameinfo(("127.0.0.1", 80)), want)

body = {"numeric": numeric, "localhost": localhost, "nameinfo": nameinfo}[row]
loop.run_until_complete(body(n // 10))  # warm-up: thread pools started, caches filled
wall, cpu = time.perf_counter(), time.process_time()
loop.run_until_complete(body(n))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
loop.close()
print(json.dumps({"ops_per_s": n / wall, "cpu_us": cpu / n * 1e6}))
"""


def measure(row, kind):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, row, kind, str(ROWS[row][1]), str(IN_FLIGHT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,goloop")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "resolve.json"))
    args = parser.parse_args()
    loops = args.loops.split(",")
    samples = {(row, kind): [] for row in ROWS for kind in loops}
    for _ in range(args.reps):
        for row in ROWS:
            for kind in loops:
                result = measure(row, kind)
                if result is not None:
                    samples[row, kind].append(result)
    table = {}
    for (row, kind), runs in samples.items():
        if runs:
            table.setdefault(row, {})[kind] = {
                "cpu_us": statistics.median(r["cpu_us"] for r in runs),
                "ops_per_s": statistics.median(r["ops_per_s"] for r in runs),
            }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"reps": args.reps, "rows": table}, indent=1))
    print("| lookup | " + " | ".join(loops) + " | goloop CPU/uvloop | goloop CPU/rloop |")
    print("|---|" + "---:|" * (len(loops) + 2))
    for row, (label, _) in ROWS.items():
        cells = table.get(row, {})
        shown = [
            f"{cells[k]['cpu_us']:.1f} µs, {cells[k]['ops_per_s'] / 1000:.1f}k/s"
            if k in cells
            else "n/a"
            for k in loops
        ]
        ratios = [
            f"{cells['goloop']['cpu_us'] / cells[base]['cpu_us']:.2f}"
            if "goloop" in cells and base in cells
            else "—"
            for base in ("uvloop", "rloop")
        ]
        print(f"| {label} | " + " | ".join(shown + ratios) + " |")
    print(
        f"\nCPU µs per lookup (whole process, all threads) and lookups/s; median of "
        f"{args.reps} fresh processes; `python benchmarks/resolve.py`."
    )


if __name__ == "__main__":
    main()
