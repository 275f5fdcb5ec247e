"""Micro-benchmark bodies for goloop (one measurement per process).

Usage:
    python benchmarks/micro.py <bench> <loop> [--quick] [--timeout S]
    python benchmarks/micro.py --probe <loop>
    python benchmarks/micro.py --list

Prints exactly one JSON object on stdout.  A measurement looks like
``{"status": "ok", "elapsed": 0.41, "ops": 500000, ...}``; ``status`` is
``ok``, ``failed`` (a correctness check failed or the body crashed),
``unsupported`` (the loop lacks an API the body needs) or ``unavailable``
(the loop cannot be imported / created).  Exit status is 0 only for ``ok``.

Each body is a factory ``f(loop, n) -> (run, check, ops)``: ``run()`` is
the timed part, ``check()`` verifies afterwards that every callback ran
exactly as expected (after the loop has kept iterating a little longer, so
late or duplicate calls are caught too).  The same body runs once at 1/10
size as a warm-up on the same loop before the timed run.  Loop creation is
never timed.  A body whose callbacks never all run would wait forever; a
watchdog thread then reports ``failed`` and exits the process.
"""

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from importlib import metadata

from benchutil import describe

BATCH = 1000  # callbacks queued per batch (call_soon rows)
TASKS = 1000  # concurrent tasks (sleep(0) row)
GATHER = 100  # tasks per gather() call (create_task + gather row)
TIMER_STEP = 1e-8  # distinct timer offsets: 100k timers span 1 ms
SETTLE = 0.01  # seconds the loop keeps running after run() to catch extras

LOOPS = ("asyncio", "uvloop", "rloop", "goloop", "goloop+stats")
# goloop+stats: goloop with goloop.track_slow_callbacks() on, i.e. every
# callback timed (its counters are always on, so plain goloop is the
# "stats, not tracking" column). asyncio's debug-mode default: no callback
# of these bodies reaches it, so the rows time the timing, not the record.
SLOW_THRESHOLD = 0.1


class CheckFailed(Exception):
    """A benchmark's correctness check did not hold."""


class Unsupported(Exception):
    """The loop under test lacks an API the benchmark needs."""


# --------------------------------------------------------------- loops


def make_loop(name):
    """Create a fresh event loop of the named implementation."""
    if name not in LOOPS:
        raise ValueError(f"unknown loop {name!r}")
    module = importlib.import_module(_module(name))
    factory = getattr(module, "new_event_loop", None)
    if factory is None:
        raise ImportError(f"module {name!r} has no new_event_loop()")
    loop = factory()
    if name == "goloop+stats":
        module.track_slow_callbacks(loop, SLOW_THRESHOLD)
    return loop


def _module(name):
    """The package providing loop `name`."""
    return name.partition("+")[0]


def loop_version(name):
    """Version string of the package providing the loop."""
    if name == "asyncio":
        return sys.version.split()[0]
    name = _module(name)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        module = sys.modules.get(name)
        return getattr(module, "__version__", "unknown")


def _is_unsupported(exc, loop):
    if isinstance(exc, NotImplementedError):
        return True
    return isinstance(exc, AttributeError) and exc.obj is loop


def _install_handler(loop, errors):
    """Record callback exceptions and stop the loop so nothing hangs."""

    def handler(*args):  # rloop 0.5 passes (context), asyncio (loop, context)
        errors.append(args[-1])
        loop.stop()

    loop.set_exception_handler(handler)


def bail(result):
    """Print a final result from any thread and exit now (loop may hang)."""
    print(json.dumps(result), flush=True)
    os._exit(1)


def _start_watchdog(seconds):
    error = f"watchdog: no result after {seconds:g} s (callbacks lost?)"
    timer = threading.Timer(seconds, bail, [{"status": "failed", "error": error}])
    timer.daemon = True
    timer.start()


def _raise_recorded(loop, errors):
    if not errors:
        return
    ctx = errors[0]
    exc = ctx.get("exception")
    if exc is not None and _is_unsupported(exc, loop):
        raise Unsupported(describe(exc)) from exc
    detail = describe(exc) if exc is not None else "no exception"
    raise CheckFailed(f"callback error: {ctx.get('message')}: {detail}")


def _expect(what, got, want):
    if got != want:
        raise CheckFailed(f"{what}: got {got}, expected {want}")


# -------------------------------------------------------------- bodies


def _drive_batches(loop, batches, fill):
    """Run ``fill()`` once per loop iteration, ``batches`` times, then stop."""

    def spawn(left):
        fill()
        if left > 1:
            loop.call_soon(spawn, left - 1)
        else:
            loop.call_soon(loop.stop)

    loop.call_soon(spawn, batches)
    loop.run_forever()


def bench_call_soon(loop, n):
    """Batches of BATCH call_soon(cb) issued from one callback."""
    count = 0
    call_soon = loop.call_soon

    def cb():
        nonlocal count
        count += 1

    def fill():
        for _ in range(BATCH):
            call_soon(cb)

    def run():
        _drive_batches(loop, n // BATCH, fill)

    return run, lambda: _expect("callbacks run", count, n), n


def bench_call_soon_args(loop, n):
    """Like call_soon, with two positional args: call_soon(cb, a, b)."""
    count = 0
    call_soon = loop.call_soon

    def cb(a, b):
        nonlocal count
        count += a - b  # +1 per call; swapped or missing args break it

    def fill():
        for _ in range(BATCH):
            call_soon(cb, 2, 1)

    def run():
        _drive_batches(loop, n // BATCH, fill)

    return run, lambda: _expect("callbacks run (a - b summed)", count, n), n


def _unit():
    """The function call_soon(cb, i, f) passes (never called)."""


def bench_call_soon_12(loop, n):
    """call_soon(cb, 1, 2): two small ints (the call_soon_args row's reversed)."""
    count = 0
    call_soon = loop.call_soon

    def cb(a, b):
        nonlocal count
        count += b - a

    def fill():
        for _ in range(BATCH):
            call_soon(cb, 1, 2)

    def run():
        _drive_batches(loop, n // BATCH, fill)

    return run, lambda: _expect("callbacks run (b - a summed)", count, n), n


def bench_call_soon_if(loop, n):
    """call_soon(cb, i, f): an int and a function (the tuple stays a GC object)."""
    count = 0
    call_soon = loop.call_soon

    def cb(a, f):
        nonlocal count
        count += f is _unit

    def fill():
        for i in range(BATCH):
            call_soon(cb, i, _unit)

    def run():
        _drive_batches(loop, n // BATCH, fill)

    return run, lambda: _expect("callbacks run with f", count, n), n


def bench_call_soon_i2(loop, n):
    """call_soon(cb, i, 2): the loop counter and a constant."""
    total = 0
    call_soon = loop.call_soon

    def cb(a, b):
        nonlocal total
        total += a + b

    def fill():
        for i in range(BATCH):
            call_soon(cb, i, 2)

    def run():
        _drive_batches(loop, n // BATCH, fill)

    want = (n // BATCH) * (BATCH * (BATCH - 1) // 2 + 2 * BATCH)
    return run, lambda: _expect("sum of i + 2", total, want), n


BURST_SPAN = 0.003  # a burst's deadlines: random within 3 ms of its start


def _burst(loop, n, report):
    """One callback schedules n call_at timers, deadlines random within
    BURST_SPAN of its start (so all are due once it returns: n call_at take
    longer than 3 ms on every loop), while a socket it made readable waits.

    report: "schedule" times the call_at calls (CPU and wall); "first_io"
    the wait from the callback's return until the socket's reader runs
    (what one iteration's timer bookkeeping holds I/O up by); "fire" the
    time from its return until the loop has stopped after the last timer
    ran (so a loop that frees its fired handles after running them, as
    goloop does, pays for that too)."""
    rng = random.Random(12)  # noqa: S311 - benchmark data
    offsets = [rng.random() * BURST_SPAN for _ in range(n)]
    marks = {}
    fired = 0
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)

    def cb():
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    def on_io():
        if "io" not in marks:
            marks["io"] = (time.perf_counter(), time.process_time())
        rsock.recv(16)
        loop.remove_reader(rsock.fileno())

    def burst():
        loop.add_reader(rsock.fileno(), on_io)
        at = loop.call_at
        start = (time.perf_counter(), time.process_time())
        base = loop.time()
        for offset in offsets:
            at(base + offset, cb)
        end = (time.perf_counter(), time.process_time())
        wsock.send(b"x")
        marks["start"], marks["end"] = start, end

    def run():
        marks.clear()
        loop.call_soon(burst)
        loop.run_forever()
        marks["last"] = (time.perf_counter(), time.process_time())
        first, second = {"schedule": ("start", "end"), "first_io": ("end", "io")}.get(
            report, ("end", "last")
        )
        return tuple(b - a for a, b in zip(marks[first], marks[second], strict=True))

    def check():
        rsock.close()
        wsock.close()
        _expect("timers fired", fired, n)
        _expect("I/O callback ran", "io" in marks, True)

    return run, check, 1 if report == "first_io" else n


def bench_burst_schedule(loop, n):
    """A callback schedules n call_at (random deadlines within 3 ms)."""
    return _burst(loop, n, "schedule")


def bench_burst_first_io(loop, n):
    """After such a burst, the wait until an I/O callback ready all along runs."""
    return _burst(loop, n, "first_io")


def bench_burst_fire(loop, n):
    """After such a burst, the time until its last timer has run."""
    return _burst(loop, n, "fire")


def bench_chain(loop, n):
    """A callback that re-schedules itself once: one loop iteration each."""
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(cb)
        else:
            loop.stop()

    def run():
        loop.call_soon(cb)
        loop.run_forever()

    return run, lambda: _expect("chain length", count, n), n


def bench_call_later(loop, n):
    """Schedule n call_later timers, cancel the even ones, fire the rest."""
    fired = 0
    wrong = 0
    want = n // 2

    def cb(i):
        nonlocal fired, wrong
        fired += 1
        wrong += not i & 1
        if fired == want:
            loop.stop()

    def setup():
        later = loop.call_later
        handles = [later((i + 1) * TIMER_STEP, cb, i) for i in range(n)]
        for handle in handles[::2]:
            handle.cancel()

    def run():
        loop.call_soon(setup)
        loop.run_forever()

    def check():
        _expect("cancelled timers that fired", wrong, 0)
        _expect("timers fired", fired, want)

    return run, check, n


def bench_call_at(loop, n):
    """n call_at timers, half slightly in the past, half just ahead."""
    fired = 0

    def cb():
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    def setup():
        at = loop.call_at
        base = loop.time() - (n // 2) * TIMER_STEP
        for i in range(n):
            at(base + i * TIMER_STEP, cb)

    def run():
        loop.call_soon(setup)
        loop.run_forever()

    return run, lambda: _expect("timers fired", fired, n), n


def bench_threadsafe(loop, n):
    """Another thread submits n call_soon_threadsafe(cb); the loop counts."""
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            loop.stop()

    def produce():
        submit = loop.call_soon_threadsafe
        try:
            for _ in range(n):
                submit(cb)
        except Exception as exc:  # noqa: BLE001 - the loop would wait forever
            status = "unsupported" if _is_unsupported(exc, loop) else "failed"
            bail({"status": status, "error": f"in thread: {describe(exc)}"})

    def run():
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        loop.run_forever()
        thread.join()

    return run, lambda: _expect("callbacks run", count, n), n


def bench_sleep0(loop, n):
    """TASKS tasks each doing ``await asyncio.sleep(0)`` n // TASKS times."""
    count = 0
    rounds = n // TASKS

    async def worker():
        nonlocal count
        for _ in range(rounds):
            await asyncio.sleep(0)
            count += 1

    async def main():
        await asyncio.gather(*[loop.create_task(worker()) for _ in range(TASKS)])

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("sleeps completed", count, n), n


def bench_gather(loop, n):
    """create_task() GATHER trivial coroutines and gather() them, repeated."""
    count = 0

    async def trivial(i):
        nonlocal count
        count += 1
        return i

    async def main():
        create_task = loop.create_task
        for _ in range(n // GATHER):
            tasks = [create_task(trivial(i)) for i in range(GATHER)]
            results = await asyncio.gather(*tasks)
            if results[-1] != GATHER - 1:
                raise CheckFailed(f"gather returned {results[-1]!r}")

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("tasks run", count, n), n


def bench_future(loop, n):
    """Await a fresh future that a call_soon callback resolves, n times."""
    total = 0

    async def main():
        nonlocal total
        create_future = loop.create_future
        call_soon = loop.call_soon
        for i in range(n):
            fut = create_future()
            call_soon(fut.set_result, i)
            total += await fut

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("sum of results", total, n * (n - 1) // 2), n


def _tcp_pair():
    """A connected pair of non-blocking TCP sockets on 127.0.0.1."""
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(1)
        a = socket.create_connection(lsn.getsockname())
        b, _ = lsn.accept()
    for s in (a, b):
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


def bench_sock_echo(loop, n):
    """sock_sendall + sock_recv of 1 KiB each way over TCP, n round trips
    (the receive usually waits: the peer's data is not there yet)."""
    a, b = _tcp_pair()
    payload = b"x" * 1024
    got = 0

    async def peer():
        for _ in range(n):
            data = await loop.sock_recv(b, 65536)
            while len(data) < 1024:
                data += await loop.sock_recv(b, 65536)
            await loop.sock_sendall(b, data)

    async def main():
        nonlocal got
        task = loop.create_task(peer())
        for _ in range(n):
            await loop.sock_sendall(a, payload)
            data = await loop.sock_recv(a, 65536)
            while len(data) < 1024:
                data += await loop.sock_recv(a, 65536)
            got += len(data)
        await task
        a.close()
        b.close()

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("bytes echoed", got, n * 1024), n


def bench_sock_accept(loop, n):
    """sock_connect + sock_accept of a new TCP connection, then close both."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(128)
    lsn.setblocking(False)
    addr = lsn.getsockname()
    count = 0

    async def main():
        nonlocal count
        for _ in range(n):
            accept = asyncio.ensure_future(loop.sock_accept(lsn), loop=loop)
            client = socket.socket()
            client.setblocking(False)
            await loop.sock_connect(client, addr)
            conn, _ = await accept
            conn.close()
            client.close()
            count += 1
        lsn.close()

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("connections", count, n), n


def bench_sock_udp(loop, n):
    """sock_sendto + sock_recvfrom of a 100-byte datagram each way."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    addr_b = b.getsockname()
    payload = b"d" * 100
    got = 0

    async def peer():
        for _ in range(n):
            data, addr = await loop.sock_recvfrom(b, 2048)
            await loop.sock_sendto(b, data, addr)

    async def main():
        nonlocal got
        task = loop.create_task(peer())
        for _ in range(n):
            await loop.sock_sendto(a, payload, addr_b)
            data, _ = await loop.sock_recvfrom(a, 2048)
            got += len(data)
        await task
        a.close()
        b.close()

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("bytes echoed", got, n * 100), n


class _Quiet(asyncio.Protocol):
    pass


def bench_create_connection(loop, n):
    """Client create_connection to a local server (on the same loop), then
    close: a new connection per op."""
    count = 0

    async def main():
        nonlocal count
        server = await loop.create_server(_Quiet, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        for _ in range(n):
            transport, _ = await loop.create_connection(_Quiet, "127.0.0.1", port)
            transport.close()
            count += 1
        server.close()
        await server.wait_closed()

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("connections", count, n), n


def bench_open_connection(loop, n):
    """asyncio.open_connection to a local start_server server (on the same
    loop), then writer.close() + wait_closed(): streams on both ends."""
    count = 0

    async def handler(reader, writer):
        writer.close()

    async def main():
        nonlocal count
        server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        for _ in range(n):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            count += 1
        server.close()
        await server.wait_closed()

    def run():
        loop.run_until_complete(main())

    return run, lambda: _expect("connections", count, n), n


def bench_create_unix_connection(loop, n):
    """create_unix_connection to a local Unix server (on the same loop),
    then close: a new connection per op."""
    count = 0
    tmp = tempfile.mkdtemp(prefix="goloop-bench-")
    path = os.path.join(tmp, "s.sock")

    async def main():
        nonlocal count
        server = await loop.create_unix_server(_Quiet, path, backlog=1024)
        for _ in range(n):
            transport, _ = await loop.create_unix_connection(_Quiet, path)
            transport.close()
            count += 1
        server.close()
        await server.wait_closed()

    def run():
        try:
            loop.run_until_complete(main())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return run, lambda: _expect("connections", count, n), n


# name -> (body, title, full size, quick size); sizes target ~0.2-1 s on
# stock asyncio for the full size.
BENCHES = {
    "call_soon": (bench_call_soon, "call_soon(cb)", 1_000_000, 200_000),
    "call_soon_args": (
        bench_call_soon_args,
        "call_soon(cb, a, b)",
        1_000_000,
        200_000,
    ),
    "call_soon_12": (bench_call_soon_12, "call_soon(cb, 1, 2)", 1_000_000, 200_000),
    "call_soon_i2": (bench_call_soon_i2, "call_soon(cb, i, 2)", 1_000_000, 200_000),
    "call_soon_if": (bench_call_soon_if, "call_soon(cb, i, f)", 1_000_000, 200_000),
    "chain": (bench_chain, "callback chain", 600_000, 120_000),
    "call_later": (
        bench_call_later,
        "call_later schedule/cancel/fire",
        100_000,
        20_000,
    ),
    "call_at": (bench_call_at, "call_at firing", 100_000, 20_000),
    "burst_schedule": (bench_burst_schedule, "burst: 100k call_at", 100_000, 20_000),
    "burst_first_io": (bench_burst_first_io, "burst: wait for I/O after it", 100_000, 20_000),
    "burst_fire": (bench_burst_fire, "burst: firing it", 100_000, 20_000),
    "threadsafe": (
        bench_threadsafe,
        "call_soon_threadsafe (thread)",
        200_000,
        40_000,
    ),
    "sleep0": (bench_sleep0, "sleep(0) x 1000 tasks", 500_000, 100_000),
    "gather": (bench_gather, "create_task + gather", 200_000, 40_000),
    "future": (bench_future, "future round trip", 200_000, 40_000),
    "sock_echo": (bench_sock_echo, "sock_sendall + sock_recv 1 KiB", 50_000, 10_000),
    "sock_accept": (bench_sock_accept, "sock_connect + sock_accept", 10_000, 2_000),
    "sock_udp": (bench_sock_udp, "sock_sendto + sock_recvfrom", 50_000, 10_000),
    "create_connection": (
        bench_create_connection,
        "create_connection + close",
        10_000,
        2_000,
    ),
    "open_connection": (
        bench_open_connection,
        "open_connection + close",
        10_000,
        2_000,
    ),
    "create_unix_connection": (
        bench_create_unix_connection,
        "create_unix_connection + close",
        10_000,
        2_000,
    ),
}

# What one "op" is, per benchmark (for the report legend).
OP_UNITS = {
    "call_soon": "callback run",
    "call_soon_args": "callback run",
    "call_soon_12": "callback run",
    "call_soon_i2": "callback run",
    "call_soon_if": "callback run",
    "chain": "callback (= loop iteration)",
    "call_later": "timer scheduled (half cancelled, half fired)",
    "call_at": "timer fired",
    "burst_schedule": "call_at made by the burst's callback (the calls alone are timed)",
    "burst_first_io": (
        "the wait from the burst callback's return to the reader callback of a socket "
        "ready all along (ops/s = 1 / that wait; the size is the burst's timers)"
    ),
    "burst_fire": (
        "timer fired, timed from the burst callback's return to the loop's stop after the last"
    ),
    "threadsafe": "callback submitted by the thread and run",
    "sleep0": "sleep(0) completed",
    "gather": "task created and gathered",
    "future": "future created, resolved and awaited",
    "sock_echo": "round trip: 1 KiB each way, both ends on the loop",
    "sock_accept": "TCP connection connected, accepted and closed",
    "sock_udp": "round trip: a datagram each way, both ends on the loop",
    "create_connection": "client connection made and closed (server on the loop)",
    "open_connection": "stream connection opened and closed, waited for (server on the loop)",
    "create_unix_connection": "Unix client connection made and closed (server on the loop)",
}


# -------------------------------------------------------------- driver


def _settle(loop):
    """Keep the loop iterating briefly so late or duplicate calls show up.

    Uses call_soon only, the one API every benchmark already needs.
    """
    deadline = time.perf_counter() + SETTLE

    def spin():
        if time.perf_counter() < deadline:
            loop.call_soon(spin)
        else:
            loop.stop()

    loop.call_soon(spin)
    loop.run_forever()


def _timed(loop, body, n):
    errors = []
    _install_handler(loop, errors)
    run, check, ops = body(loop, n)
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    measured = run()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if measured is not None:  # the body timed its own part: (wall, cpu)
        elapsed, cpu = measured
    _raise_recorded(loop, errors)
    _settle(loop)
    _raise_recorded(loop, errors)
    check()
    return elapsed, cpu, ops


def _measure(loop, name, quick):
    body, _title, full, small = BENCHES[name]
    n = small if quick else full
    _timed(loop, body, n // 10)  # warm-up, same loop
    elapsed, cpu, ops = _timed(loop, body, n)
    return {
        "status": "ok",
        "elapsed": elapsed,
        "cpu_per_op": cpu / ops,  # the whole process's CPU (all threads)
        "ops": ops,
        "ops_per_s": ops / max(elapsed, 1e-9),
        "warmup_ops": n // 10,
    }


def _error(status, exc):
    return {"status": status, "error": describe(exc)}


def _create(loop_name):
    try:
        loop = make_loop(loop_name)
    except Exception as exc:  # noqa: BLE001 - any failure means unavailable
        return None, _error("unavailable", exc)
    asyncio.set_event_loop(loop)
    return loop, None


def measure(name, loop_name, quick=False):
    """Run one benchmark on a fresh loop; return the JSON-able result."""
    loop, failure = _create(loop_name)
    if failure:
        return failure
    try:
        return _measure(loop, name, quick)
    except Unsupported as exc:
        return {"status": "unsupported", "error": str(exc)}
    except CheckFailed as exc:
        return {"status": "failed", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - report, never crash silently
        status = "unsupported" if _is_unsupported(exc, loop) else "failed"
        return _error(status, exc)
    finally:
        _close(loop)


def _close(loop):
    with contextlib.suppress(Exception):  # closing is best effort here
        loop.close()


def probe(loop_name):
    """Check that a loop can be imported and created."""
    loop, failure = _create(loop_name)
    if failure:
        return failure
    _close(loop)
    path = getattr(sys.modules.get(_module(loop_name)), "__file__", None)
    return {"status": "ok", "version": loop_version(loop_name), "path": path}


def _parse(argv):
    p = argparse.ArgumentParser(description="run one micro-benchmark")
    p.add_argument("--list", action="store_true", help="list benches and loops")
    p.add_argument("--probe", metavar="LOOP", help="check that LOOP imports")
    p.add_argument("--quick", action="store_true", help="1/5 sizes")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="watchdog seconds (default: %(default)s)"
    )
    p.add_argument("bench", nargs="?", choices=list(BENCHES))
    p.add_argument("loop", nargs="?", choices=list(LOOPS))
    args = p.parse_args(argv)
    if not (args.list or args.probe) and not (args.bench and args.loop):
        p.error("need <bench> <loop>, --probe LOOP or --list")
    return args


def _main(argv):
    args = _parse(argv)
    if args.list:
        return {"status": "ok", "benches": list(BENCHES), "loops": list(LOOPS)}
    if args.probe:
        return probe(args.probe)
    _start_watchdog(args.timeout)
    result = measure(args.bench, args.loop, args.quick)
    result.update(bench=args.bench, loop=args.loop, quick=args.quick)
    return result


def main():
    result = _main(sys.argv[1:])
    print(json.dumps(result), flush=True)
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
