"""Instructions per op of the micro-benchmark bodies, under callgrind.

Timings on a shared machine move by more than the cost of a counter;
instruction counts do not. Each cell runs a body of micro.py (same code
as ``make bench-micro``) in a fresh process under
``valgrind --tool=callgrind``, collecting only inside the loop core's run
loop (``--toggle-collect=loop_run_until_stopped``: the callbacks and all
the loop does for them, not interpreter start-up), once with n ops and
once with 2n: the difference over n is the instructions per op, warm-up
cancelled out.

    cd benchmarks && python instructions.py --tree main=/path/to/main-checkout \\
        --tree stats=.. [--loops goloop,goloop+stats] [--n 20000] [--only call_soon,chain]

A tree is a checkout with goloop built in place (``python setup.py
build_ext --inplace``): its python/ directory goes on PYTHONPATH. A loop a
tree lacks (goloop+stats before goloop.track_slow_callbacks) is "n/a".
Prints a markdown table; the last columns are each cell relative to the
first tree's goloop cell.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import micro
from benchutil import csv_choices

WARMUP = 2000  # ops run before the measured ones: the same in both runs, so it cancels out
# threadsafe: its ops are made by another thread, outside the collected
# function, and how many iterations they take depends on thread timing.
DEFAULT_BENCHES = [b for b in micro.BENCHES if b != "threadsafe"]


def child(bench, loop_name, n):
    """Run one body (WARMUP ops, then n ops) without micro.py's settle phase."""
    loop = micro.make_loop(loop_name)
    try:
        body = micro.BENCHES[bench][0]
        for size in (WARMUP, n):
            run, check, _ops = body(loop, size)
            run()
            check()
    finally:
        loop.close()


def collected(tree, bench, loop_name, n):
    """Instructions callgrind collected for one child run, or None (n/a)."""
    # asyncpreemptoff: a preemption signal from the Go runtime's sysmon
    # crashed valgrind 3.19 in a call_soon run; without them three runs
    # of that cell collected the same count to the instruction.
    env = dict(
        os.environ,
        PYTHONPATH=str(Path(tree) / "python"),
        PYTHONHASHSEED="0",
        GODEBUG="asyncpreemptoff=1",
    )
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=loop_run_until_stopped",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        bench,
        loop_name,
        str(n),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or match is None:
        if "track_slow_callbacks" in proc.stderr:
            return None
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return int(match.group(1))


def per_op(tree, bench, loop_name, n):
    small = collected(tree, bench, loop_name, n)
    large = collected(tree, bench, loop_name, 2 * n) if small is not None else None
    return None if large is None else (large - small) / n


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[], help="NAME=PATH, in column order")
    p.add_argument("--loops", type=csv_choices(micro.LOOPS), default=["goloop", "goloop+stats"])
    p.add_argument("--only", type=csv_choices(list(micro.BENCHES)), default=DEFAULT_BENCHES)
    p.add_argument("--n", type=int, default=20000, help="ops of the smaller run")
    p.add_argument("--child", nargs=3, metavar=("BENCH", "LOOP", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and not args.tree:
        p.error("--tree NAME=PATH is required")
    return args


def main():
    args = parse_args()
    if args.child:
        bench, loop_name, n = args.child
        child(bench, loop_name, int(n))
        return
    trees = [t.split("=", 1) for t in args.tree]
    columns = [(name, path, lp) for name, path in trees for lp in args.loops]
    head = [f"{name} {lp}" for name, _path, lp in columns]
    rel_head = [f"{h} vs {head[0]}" for h in head[1:]]
    print("| benchmark | " + " | ".join(head + rel_head) + " |")
    print("|---|" + "---:|" * (2 * len(columns) - 1))
    for bench in args.only:
        cells = [per_op(path, bench, lp, args.n) for _name, path, lp in columns]
        base = cells[0]
        shown = ["n/a" if c is None else f"{c:,.0f}" for c in cells]
        rel = ["n/a" if c is None or not base else f"{c / base - 1:+.2%}" for c in cells[1:]]
        print(f"| {bench} | " + " | ".join(shown + rel) + " |", flush=True)


if __name__ == "__main__":
    main()
