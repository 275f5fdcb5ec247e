"""An aiohttp application, served by the tests in-process (make_app), by
gunicorn with aiohttp's worker (gunicorn_app), or, run as a script, by
web.run_app on the loop named in argv[1]: ``python aiohttp_app.py goloop
PORT``. GOLOOP_START_GO_AT_IMPORT=1: as in asgi_app.py."""

import asyncio
import json
import os
import sys

from aiohttp import WSMsgType, web

if os.environ.get("GOLOOP_START_GO_AT_IMPORT") == "1":  # as asgi_app.py's
    import goloop

    goloop.new_event_loop().close()

WS_CLOSES = web.AppKey("ws_closes", list)
FILE = web.AppKey("file", str)


def loop_info():
    loop = asyncio.get_running_loop()
    cls = type(loop)
    engine = None
    if cls.__module__.startswith("goloop"):
        import goloop

        engine = goloop.stats(loop).engine
    return {"pid": os.getpid(), "loop": f"{cls.__module__}.{cls.__qualname__}", "engine": engine}


async def hello(request):  # benchmarks/integration.py's request
    return web.Response(text="Hello, World!")


async def info(request):
    data = loop_info()
    data["connection"] = id(request.transport)  # (a Unix socket's peer has no name)
    return web.json_response(data)


async def echo(request):
    body = await request.read()
    return web.Response(
        body=body, headers={"x-chunked": str(request.headers.get("transfer-encoding"))}
    )


async def file(request):
    # FileResponse: loop.sendfile() where the transport allows it
    return web.FileResponse(request.app[FILE])


async def stream(request):
    n, size = int(request.query["n"]), int(request.query["size"])
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(n):
        await resp.write(bytes([65 + i % 26]) * size)
    await resp.write_eof()
    return resp


async def slow(request):
    print(f"slow-start {os.getpid()}", file=sys.stderr, flush=True)
    await asyncio.sleep(float(request.query["d"]))
    return web.Response(text="done after " + request.query["d"])


async def ws_echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            if msg.data == "close":
                await ws.close(code=4000, message=b"asked to")
            else:
                await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    request.app[WS_CLOSES].append(ws.close_code)
    return ws


def make_app(file_path=None):
    app = web.Application(client_max_size=16 << 20)
    app[WS_CLOSES] = []
    if file_path:
        app[FILE] = file_path
    app.add_routes(
        [
            web.get("/", hello),
            web.get("/info", info),
            web.post("/echo", echo),
            web.get("/stream", stream),
            web.get("/file", file),
            web.get("/slow", slow),
            web.get("/ws", ws_echo),
        ]
    )
    return app


async def on_startup(app):
    print(f"startup {json.dumps(loop_info())}", file=sys.stderr, flush=True)


async def on_shutdown(app):
    print("shutdown", file=sys.stderr, flush=True)


async def on_cleanup(app):
    print("cleanup", file=sys.stderr, flush=True)


async def gunicorn_app():
    """gunicorn aiohttp_app:gunicorn_app -k workers.Aiohttp...Worker"""
    app = make_app()
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def main():
    loop_name, port = sys.argv[1], int(sys.argv[2])
    if loop_name == "goloop":
        import goloop

        loop = goloop.new_event_loop()
    elif loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    elif loop_name == "rloop":
        import rloop

        loop = rloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    app = make_app()
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    web.run_app(app, host="127.0.0.1", port=port, loop=loop, shutdown_timeout=15, print=None)
    print("run_app returned", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
