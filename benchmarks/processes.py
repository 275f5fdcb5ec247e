"""Child processes through the loop, side by side: CPU per operation and rate.

Run: python benchmarks/processes.py [--loops asyncio,uvloop,rloop,goloop]
     [--reps 3] [--json benchmarks/results/processes.json]
(Not named subprocess.py: run as a script, it would shadow the stdlib
module asyncio imports.) Prints a markdown table. Each cell is the median
of --reps fresh processes (loops interleaved). CPU is the loop process's
own (time.process_time: every thread of the process that runs the loop,
so asyncio's watcher threads count, and not the children's CPU, which is
the same programs for every loop), per operation, in microseconds; a loop
that cannot run a row shows n/a. Every child's exit status and every byte
are checked. The "pipe" row has no child: connect_write_pipe and
connect_read_pipe on the two ends of one os.pipe(), on the same loop, 64 KiB
writes with the writer's flow control engaged (a plain Protocol each side,
so the transports' own cost shows, not a StreamReader's).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

ROWS = {
    # name: (label, operations per run)
    "seq": ("spawn + wait of /bin/true, one at a time", 300),
    "par": ("spawn + wait of /bin/true, 50 at a time", 500),
    "read": ("read 64 MiB from a child's stdout", 3),
    "write": ("write 64 MiB to a child's stdin", 3),
    "pipe": ("64 MiB through os.pipe(): connect_write_pipe to connect_read_pipe", 3),
}
MIB64 = 64 * 1024 * 1024
CHUNK = 256 * 1024

CHILD = """
import asyncio, json, os, sys, time
row, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
loop = asyncio.new_event_loop() if kind == "asyncio" else __import__(kind).new_event_loop()
asyncio.set_event_loop(loop)
PIPE, DEVNULL = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
MIB64, CHUNK = %d, %d

async def true():
    proc = await asyncio.create_subprocess_exec("/bin/true")
    if await proc.wait() != 0:
        raise SystemExit("bad exit")

async def seq(count):
    for _ in range(count):
        await true()

async def par(count):
    for _ in range(count // 50):
        await asyncio.gather(*(true() for _ in range(50)))

async def read(count):
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(
            "head", "-c", str(MIB64), "/dev/zero", stdout=PIPE)
        got = 0
        while data := await proc.stdout.read(CHUNK):
            got += len(data)
        if await proc.wait() != 0 or got != MIB64:
            raise SystemExit("short read")

async def write(count):
    block = b"x" * CHUNK
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", "exec wc -c", stdin=PIPE, stdout=PIPE)
        for _ in range(MIB64 // CHUNK):
            proc.stdin.write(block)
            await proc.stdin.drain()
        proc.stdin.close()
        out = await proc.stdout.read()
        if await proc.wait() != 0 or int(out) != MIB64:
            raise SystemExit("short write")

class PipeReader(asyncio.Protocol):
    def __init__(self):
        self.got, self.lost = 0, loop.create_future()
    def data_received(self, data):
        self.got += len(data)
    def connection_lost(self, exc):
        self.lost.set_result(exc)

class PipeWriter(asyncio.Protocol):
    def __init__(self):
        self.resumed, self.lost = None, loop.create_future()
    def pause_writing(self):
        self.resumed = loop.create_future()
    def resume_writing(self):
        self.resumed.set_result(None)
    def connection_lost(self, exc):
        self.lost.set_result(exc)

async def pipe(count):
    block = b"x" * (64 * 1024)
    for _ in range(count):
        r, w = os.pipe()
        rt, rp = await loop.connect_read_pipe(PipeReader, open(r, "rb", 0))
        wt, wp = await loop.connect_write_pipe(PipeWriter, open(w, "wb", 0))
        for _ in range(MIB64 // len(block)):
            wt.write(block)
            if wp.resumed is not None and not wp.resumed.done():
                await wp.resumed
        wt.close()
        await wp.lost
        await rp.lost
        if rp.got != MIB64:
            raise SystemExit("short pipe")

body = {"seq": seq, "par": par, "read": read, "write": write, "pipe": pipe}[row]
loop.run_until_complete(body(max(1, n // 10) if row in ("seq", "par") else 1))  # warm-up
wall, cpu = time.perf_counter(), time.process_time()
loop.run_until_complete(body(n))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
loop.close()
print(json.dumps({"ops_per_s": n / wall, "cpu_us": cpu / n * 1e6}))
""" % (MIB64, CHUNK)


def measure(row, kind):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CHILD, row, kind, str(ROWS[row][1])],
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
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "processes.json"))
    args = parser.parse_args()
    loops = args.loops.split(",")
    rows = args.rows.split(",")
    samples = {(row, kind): [] for row in rows for kind in loops}
    for _ in range(args.reps):
        for row in rows:
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
    print("| operation | " + " | ".join(loops) + " | goloop CPU/uvloop | goloop CPU/rloop |")
    print("|---|" + "---:|" * (len(loops) + 2))
    for row in rows:
        label = ROWS[row][0]
        cells = table.get(row, {})
        shown = [
            f"{cells[k]['cpu_us']:.0f} µs, {cells[k]['ops_per_s']:.1f}/s" if k in cells else "n/a"
            for k in loops
        ]
        ratios = [
            f"{cells['goloop']['cpu_us'] / cells[base]['cpu_us']:.2f}"
            if "goloop" in cells and base in cells
            else "n/a"
            for base in ("uvloop", "rloop")
        ]
        print(f"| {label} | " + " | ".join(shown + ratios) + " |")
    print(
        f"\nCPU µs per operation of the loop's own process (all its threads, not the "
        f"children) and operations/s; median of {args.reps} fresh processes; "
        f"`python benchmarks/processes.py`."
    )


if __name__ == "__main__":
    main()
