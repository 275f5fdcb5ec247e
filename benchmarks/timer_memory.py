"""RSS cost of 100k pending timers, per loop, each loop in a fresh process.

Run: python benchmarks/timer_memory.py [--loops asyncio,uvloop,rloop,goloop]
Prints a markdown table: RSS growth after scheduling 100k call_later timers
an hour away (so none fires), in bytes per timer, median of 3 runs.
"""

import argparse
import json
import statistics
import subprocess
import sys

N = 100_000

CHILD = (
    """
import asyncio, gc, json, sys
kind = sys.argv[1]
if kind == "asyncio":
    loop = asyncio.new_event_loop()
else:
    loop = __import__(kind).new_event_loop()

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

noop = lambda: None
warm = [loop.call_later(3600, noop) for _ in range(1000)]
for h in warm:
    h.cancel()
loop.run_until_complete(asyncio.sleep(0))
gc.collect()
before = rss()
timers = [loop.call_later(3600 + i * 1e-6, noop) for i in range(%d)]
loop.run_until_complete(asyncio.sleep(0))
gc.collect()
after = rss()
print(json.dumps({"bytes_per_timer": (after - before) / len(timers)}))
for h in timers:
    h.cancel()
loop.run_until_complete(asyncio.sleep(0))
loop.close()
"""
    % N
)


def measure(kind):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["bytes_per_timer"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,goloop")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    loops = args.loops.split(",")
    samples = {k: [] for k in loops}
    for _ in range(args.reps):
        for kind in loops:
            samples[kind].append(measure(kind))
    base = statistics.median(samples["uvloop"]) if "uvloop" in samples else None
    print(f"| loop | bytes per pending timer ({N // 1000}k timers) | vs uvloop |")
    print("|---|---:|---:|")
    for kind in loops:
        med = statistics.median(samples[kind])
        ratio = f"{med / base:.2f}" if base else "-"
        print(f"| {kind} | {med:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
