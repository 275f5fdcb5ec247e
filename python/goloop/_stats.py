"""goloop.stats() and goloop.track_slow_callbacks(): what a loop has done.

The counters live in the C loop core (pybridge/goloop.h, ``gl_stats``):
plain increments on paths that run anyway, so they are always on. Timing
each callback is not free, so the slowest callbacks are kept only between
``track_slow_callbacks(loop, threshold)`` and ``track_slow_callbacks(loop,
None)``.

This module does not load the native extension: asking for the stats of
a loop that is not goloop's raises TypeError without starting Go.
"""

import heapq
import itertools
import sys
from asyncio import format_helpers
from typing import NamedTuple

SLOW_CALLBACKS_KEPT = 10


class SlowCallback(NamedTuple):
    """One callback that ran at least the tracking threshold."""

    seconds: float  #: how long it ran
    callback: str  #: what ran, as asyncio's debug mode names it
    filename: str | None  #: where its code is (a task: where its coroutine is now)
    lineno: int | None


class LoopStats(NamedTuple):
    """A snapshot of one goloop loop's counters (see goloop.stats)."""

    engine: str  #: "go", or "c": the fork-safe C engine of a child forked after Go started
    iterations: int  #: loop iterations (BaseEventLoop._run_once equivalents)
    callbacks: int  #: handles run: call_soon/call_at callbacks, task steps, fd callbacks
    poll_time: float  #: seconds waiting for I/O (epoll_wait, its events' dispatch included)
    busy_time: float  #: seconds running, minus poll_time: callbacks and the loop's own work
    fds: int  #: file descriptors watched for the user (the loop's self-pipe not counted)
    timers: int  #: call_later/call_at timers scheduled and not yet run or cancelled
    transports: int  #: socket transports open (not closing) on this loop
    bytes_in: int  #: received by goloop's stream and datagram transports
    bytes_out: int  #: sent by goloop's stream transports, taken by its datagram sendto()
    datagrams_in: int
    datagrams_out: int  #: taken by sendto(): sent, or buffered to be sent
    accepted: int  #: connections accepted by goloop's native accept path
    slow_threshold: float | None  #: track_slow_callbacks()'s threshold, None when off
    slow_callbacks: tuple[SlowCallback, ...]  #: the slowest seen while tracking, slowest first


def _loop_core(loop):
    """loop if it is a goloop loop (open or closed), else TypeError."""
    goloop_loop = sys.modules.get("goloop.loop")  # no goloop loop exists before it
    if goloop_loop is None or not isinstance(loop, goloop_loop.Loop):
        raise TypeError(
            f"goloop stats need a goloop event loop, not {type(loop).__module__}."
            f"{type(loop).__qualname__}"
        )
    return loop


def stats(loop):
    """Return a LoopStats snapshot of a goloop loop's counters.

    Counts are totals since the loop was created; a closed loop keeps its
    final counts (with no fds or timers pending). Callable from the
    loop's own callbacks (busy_time then includes the current run so far)
    and, being a read of plain integers, from another thread, where the
    numbers are each current but not taken at one instant. Raises
    TypeError for a loop that is not goloop's.
    """
    core = _loop_core(loop)
    engine, iterations, callbacks, poll, busy, fds, timers, *io = core._stats()
    transports = getattr(core, "_transports", None) or {}
    tracker = core._slow_tracker
    return LoopStats(
        engine,
        iterations,
        callbacks,
        poll,
        busy,
        fds,
        timers,
        # asyncio's fd -> transport map (weak values), closed ones included
        sum(1 for t in list(transports.values()) if not t.is_closing()),
        *io,
        tracker.threshold if tracker else None,
        tracker.slowest() if tracker else (),
    )


def track_slow_callbacks(loop, threshold, *, keep=SLOW_CALLBACKS_KEPT):
    """Keep the `keep` slowest callbacks that run at least `threshold` seconds.

    Until called again with threshold None (or 0), each callback of the
    goloop loop is timed (two clock reads) and one that took at least
    `threshold` seconds is recorded with where its code is; stats(loop)
    then lists the slowest. Calling it again restarts the record. Takes
    effect from the loop's next iteration when called from a callback.
    """
    core = _loop_core(loop)
    if threshold is not None and threshold < 0:
        raise ValueError(f"threshold must be >= 0 or None, got {threshold!r}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep!r}")
    core._slow_tracker = _SlowTracker(float(threshold), keep) if threshold else None
    core._set_slow_threshold(float(threshold or 0))


class _SlowTracker:
    """The slowest callbacks seen, as a min-heap of at most `keep`."""

    def __init__(self, threshold, keep):
        self.threshold = threshold
        self.keep = keep
        self.heap = []
        self.order = itertools.count()  # ties: the heap never compares entries

    def record(self, handle, seconds):
        """Called by the loop core for a callback over the threshold."""
        if len(self.heap) >= self.keep and seconds <= self.heap[0][0]:
            return
        # Described now: the record keeps strings, never the handle (a
        # task step's handle would keep the task alive).
        entry = (seconds, next(self.order), _describe(handle, seconds))
        if len(self.heap) < self.keep:
            heapq.heappush(self.heap, entry)
        else:
            heapq.heapreplace(self.heap, entry)

    def slowest(self):
        return tuple(e[2] for e in sorted(self.heap, reverse=True))


def _describe(handle, seconds):
    """A SlowCallback for handle: a task's step is named by the task and
    placed where its coroutine now is (the await it stopped at); any other
    callback by asyncio's callback format and where its function is."""
    callback = handle._callback
    owner = getattr(callback, "__self__", None)
    coro = owner.get_coro() if hasattr(owner, "get_coro") else None
    if hasattr(coro, "cr_code"):
        frame = coro.cr_frame  # None once the coroutine finished
        lineno = frame.f_lineno if frame is not None else coro.cr_code.co_firstlineno
        return SlowCallback(seconds, repr(owner), coro.cr_code.co_filename, lineno)
    name = format_helpers._format_callback(callback, handle._args, None)
    source = format_helpers._get_function_source(getattr(callback, "__func__", callback))
    return SlowCallback(seconds, name, *(source or (None, None)))
