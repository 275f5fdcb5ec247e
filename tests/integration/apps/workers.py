"""gunicorn worker classes on each loop under test: uvicorn's UvicornWorker
(gunicorn -k workers.GoloopWorker ...) and aiohttp's GunicornWebWorker
(-k workers.AiohttpGoloopWorker ...)."""

import asyncio

from aiohttp.worker import GunicornWebWorker
from uvicorn.workers import UvicornWorker


class AsyncioWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "asyncio", "http": "httptools"}


class UvloopWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "uvloop", "http": "httptools"}


class RloopWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "rloop:new_event_loop", "http": "httptools"}


class GoloopWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "goloop:new_event_loop", "http": "httptools"}


class AiohttpAsyncioWorker(GunicornWebWorker):
    pass


class AiohttpGoloopWorker(GunicornWebWorker):
    # what aiohttp's GunicornUVLoopWebWorker does for uvloop: the policy
    # before init_process makes the worker's loop
    def init_process(self):
        import goloop

        asyncio.set_event_loop_policy(goloop.EventLoopPolicy())
        super().init_process()
