import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

__version__: str
__all__ = ("new_event_loop", "install", "run", "EventLoopPolicy", "Loop")

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
