import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple, TypeVar

_T = TypeVar("_T")

__version__: str
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

class Loop(asyncio.SelectorEventLoop):
    def __init__(self) -> None: ...

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def _loop_factory(self) -> Loop: ...

def new_event_loop() -> Loop: ...
def install() -> None: ...
def run(
    main: Coroutine[Any, Any, _T],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = ...,
    debug: bool | None = ...,
    **run_kwargs: Any,
) -> _T: ...

class SlowCallback(NamedTuple):
    seconds: float
    callback: str
    filename: str | None
    lineno: int | None

class LoopStats(NamedTuple):
    engine: str
    iterations: int
    callbacks: int
    poll_time: float
    busy_time: float
    fds: int
    timers: int
    transports: int
    bytes_in: int
    bytes_out: int
    datagrams_in: int
    datagrams_out: int
    accepted: int
    slow_threshold: float | None
    slow_callbacks: tuple[SlowCallback, ...]

def stats(loop: asyncio.AbstractEventLoop) -> LoopStats: ...
def track_slow_callbacks(
    loop: asyncio.AbstractEventLoop, threshold: float | None, *, keep: int = ...
) -> None: ...
