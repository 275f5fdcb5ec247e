"""gunicorn worker classes: uvicorn's UvicornWorker on each loop under test
(gunicorn -k workers.GoloopWorker ...)."""

from uvicorn.workers import UvicornWorker


class AsyncioWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "asyncio", "http": "httptools"}


class UvloopWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "uvloop", "http": "httptools"}


class GoloopWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "goloop:new_event_loop", "http": "httptools"}
