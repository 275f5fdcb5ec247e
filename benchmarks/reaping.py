"""Spawning and reaping a child: where each costs least.

Run: python benchmarks/reaping.py
Spawning: 300 sequential spawn + wait of /bin/true, through the Go engine
(goloop._goloop._spawn: syscall.ForkExec with a pidfd, waitid on it) and
through subprocess.Popen + wait(), in the same process; CPU per child.

Reaping: the measurement that placed reaping on the loop thread (docs/architecture.md,
"Processes"): 200 children (`sleep 0.3`) started through the Go engine are
reaped either by the loop (their pidfds in its epoll set, waitid(P_PIDFD) in
a Python reader callback) or by goloop.ReapLater (a goroutine per child on
Go's own poller, waitid there: the path for children that outlive their
loop). CPU of the whole process per child (time.process_time, all threads),
median of 5 rounds. The Go path is a lower bound for reaping in Go: it does
not even hand the exit back to the loop (completion list, eventfd, wake-up).
"""

import os
import statistics
import time

import goloop
from goloop import _goloop

N = 200
SLEEP = (b"sleep", b"0.3")


def spawn_all():
    return [
        _goloop._spawn(
            b"/bin/sleep", SLEEP, None, None, (0, 1, 2), False, (), False, -1, -1, -1, None
        )
        for _ in range(N)
    ]


def loop_path():
    loop = goloop.new_event_loop()
    kids = spawn_all()
    cpu = time.process_time()
    left = [N]

    def ready(fd):
        os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
        loop._remove_reader(fd)
        os.close(fd)
        left[0] -= 1
        if not left[0]:
            loop.stop()

    for _pid, fd in kids:
        loop._add_reader(fd, ready, fd)
    loop.run_forever()
    cpu = time.process_time() - cpu
    loop.close()
    return cpu


def go_path():
    loop = goloop.new_event_loop()
    kids = spawn_all()
    cpu = time.process_time()
    for _pid, fd in kids:
        _goloop._reap_later(fd)
    for pid, _fd in kids:  # until Go reaped them all, looking rarely
        while True:
            try:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            time.sleep(0.05)
    cpu = time.process_time() - cpu
    loop.close()
    return cpu


def spawn_go(n=300):
    cpu = time.process_time()
    for _ in range(n):
        _pid, fd = _goloop._spawn(
            b"/bin/true", (b"/bin/true",), None, None, (0, 1, 2), True, (), False, -1, -1, -1, None
        )
        os.waitid(os.P_PIDFD, fd, os.WEXITED)
        os.close(fd)
    return (time.process_time() - cpu) / n * 1e6


def spawn_popen(n=300):
    import subprocess

    cpu = time.process_time()
    for _ in range(n):
        subprocess.Popen(["/bin/true"]).wait()
    return (time.process_time() - cpu) / n * 1e6


def main():
    goloop.new_event_loop().close()  # the Go runtime is up for both
    spawn = {"Go's ForkExec (_spawn)": [], "subprocess.Popen": []}
    for _ in range(5):
        spawn["Go's ForkExec (_spawn)"].append(spawn_go())
        spawn["subprocess.Popen"].append(spawn_popen())
    for name, runs in spawn.items():
        print(
            f"spawn + wait, {name}: {statistics.median(runs):.1f} µs CPU per child",
            [round(x) for x in runs],
        )
    res = {"pidfd on the loop thread": [], "goroutine on Go's poller": []}
    for _ in range(5):
        res["pidfd on the loop thread"].append(loop_path() / N * 1e6)
        res["goroutine on Go's poller"].append(go_path() / N * 1e6)
    for name, runs in res.items():
        print(f"{name}: {statistics.median(runs):.1f} µs CPU per child", [round(x) for x in runs])


if __name__ == "__main__":
    main()
