"""Name resolution through the loop, side by side: CPU per lookup and rate.

Run: python benchmarks/resolve.py [--loops asyncio,uvloop,rloop,goloop]
     [--reps 3] [--json benchmarks/results/resolve.json]
Prints a markdown table. Each cell is the median of --reps fresh processes
(loops interleaved); CPU is the whole process's (time.process_time: the
loop thread plus whatever threads the loop resolves on: asyncio's executor,
libuv's pool, goloop's goroutines), per lookup, in microseconds. Every
answer is checked against socket.getaddrinfo / socket.getnameinfo.

     python benchmarks/resolve.py --instructions [--loops socket,uvloop,goloop]
counts instructions per lookup instead, which a shared machine's noise
does not move: each cell runs under valgrind's callgrind twice, with n and
3n lookups, whole process and all threads, and the difference is divided
by the lookups it adds (the warm-up and start-up cancel out). The loop
"socket" calls socket.getaddrinfo / getnameinfo in a plain loop: libc's
own cost plus socket.py's wrapper, with no event loop at all.
"""

import argparse
import json
import os
import re
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
if kind == "socket":
    loop = None
elif kind == "asyncio":
    loop = asyncio.new_event_loop()
else:
    loop = __import__(kind).new_event_loop()

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

def plain(count):
    call = {
        "numeric": lambda: socket.getaddrinfo("127.0.0.1", 80),
        "localhost": lambda: socket.getaddrinfo("localhost", 80),
        "nameinfo": lambda: socket.getnameinfo(("127.0.0.1", 80), 0),
    }[row]
    for _ in range(count):
        call()

body = {"numeric": numeric, "localhost": localhost, "nameinfo": nameinfo}[row]
run = plain if loop is None else lambda count: loop.run_until_complete(body(count))
run(n // 10)  # warm-up: thread pools started, caches filled
wall, cpu = time.perf_counter(), time.process_time()
run(n)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
if loop is not None:
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


def instructions(row, kind, n):
    """Instructions per lookup of one cell under callgrind (see the module
    docstring), or None if a run failed."""
    env = dict(os.environ, PYTHONHASHSEED="0", GODEBUG="asyncpreemptoff=1")
    total = []
    for count in (n, 3 * n):
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "-c",
                CHILD,
                row,
                kind,
                str(count),
                str(IN_FLIGHT),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or match is None:
            return None
        total.append(int(match.group(1)))
    # each run makes count // 10 warm-up lookups, then count
    return (total[1] - total[0]) / (3 * n + 3 * n // 10 - n - n // 10)


def main_instructions(loops, n):
    print("| lookup | " + " | ".join(loops) + " |")
    print("|---|" + "---:|" * len(loops))
    for row, (label, _) in ROWS.items():
        cells = [instructions(row, kind, n) for kind in loops]
        shown = ["n/a" if c is None else f"{c / 1000:.1f}k" for c in cells]
        print(f"| {label} | " + " | ".join(shown) + " |")
    print(
        f"\nInstructions per lookup (callgrind, whole process, all threads; {n} and "
        f"{3 * n} lookups); `python benchmarks/resolve.py --instructions`."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default=None, help="default asyncio,uvloop,rloop,goloop")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "resolve.json"))
    parser.add_argument("--instructions", action="store_true", help="count, under callgrind")
    parser.add_argument("--n", type=int, default=1000, help="--instructions: smaller run")
    args = parser.parse_args()
    if args.instructions:
        main_instructions((args.loops or "socket,uvloop,goloop").split(","), args.n)
        return
    loops = (args.loops or "asyncio,uvloop,rloop,goloop").split(",")
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
