"""goloop: a drop-in asyncio event loop whose engine is written in Go.

``import goloop`` does not load the native extension (and so does not start
the Go runtime): the first loop does. A process may therefore import goloop,
fork workers, and let each worker run its own loop. See
docs/architecture.md, "Fork policy".
"""

import asyncio as __asyncio
import sys as _sys
import warnings as _warnings

from ._stats import LoopStats, SlowCallback, stats, track_slow_callbacks

__version__ = "0.1.0"
__all__ = (
    "new_event_loop",
    "install",
    "run",
    "EventLoopPolicy",
    "Loop",
    "stats",
    "track_slow_callbacks",
    "LoopStats",
    "SlowCallback",
)

_Loop = None


def _loop_class():
    global _Loop
    if _Loop is None:
        from .loop import Loop

        _Loop = Loop
    return _Loop


def __getattr__(name):
    # goloop.Loop loads the extension, so it is resolved lazily.
    if name == "Loop":
        return _loop_class()
    raise AttributeError(f"module 'goloop' has no attribute {name!r}")


def new_event_loop():
    """Return a new goloop event loop."""
    return _loop_class()()


class EventLoopPolicy(__asyncio.DefaultEventLoopPolicy):
    """Event loop policy whose loops are goloop loops.

    The preferred way to use goloop is ``goloop.run()`` or
    ``asyncio.run(main(), loop_factory=goloop.new_event_loop)``.
    """

    def _loop_factory(self):
        return new_event_loop()


def install():
    """Make goloop the default loop through the event loop policy."""
    if _sys.version_info[:2] >= (3, 12):
        _warnings.warn(
            "goloop.install() is deprecated in favor of goloop.run() starting with Python 3.12.",
            DeprecationWarning,
            stacklevel=1,
        )
    __asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, loop_factory=new_event_loop, debug=None, **run_kwargs):
    """Run a coroutine on a new goloop loop, like ``uvloop.run``."""
    if __asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if not __asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")

    async def wrapper():
        loop = __asyncio.get_running_loop()
        if not isinstance(loop, _loop_class()):
            raise TypeError("goloop.run() uses a non-goloop event loop")
        return await main

    if _sys.version_info[:2] >= (3, 12):
        return __asyncio.run(wrapper(), loop_factory=loop_factory, debug=debug, **run_kwargs)
    with __asyncio.Runner(loop_factory=loop_factory, debug=debug, **run_kwargs) as runner:
        return runner.run(wrapper())
