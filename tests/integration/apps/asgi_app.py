"""The ASGI app the uvicorn and gunicorn tests serve (plain ASGI, no framework).

Routes: GET / (a fixed text: the benchmark's), GET /info (this process, its
running loop and goloop's engine, the client's address), POST /echo (the
request body back, chunked or not), GET /stream?n=&size= (a chunked
response of n chunks), GET /watch (logs the http.disconnect it receives
when the client closes), GET /subprocess (a child process with pipes), GET /resolve
(loop.getaddrinfo("localhost")), GET /slow?d= (answers after d seconds: the
graceful-shutdown test's requests in flight), and the WebSocket /ws
(echoes text and bytes; the text "close" closes with 4000).

GOLOOP_START_GO_AT_IMPORT=1 starts the Go runtime when the module is
imported (gunicorn --preload imports it in the master, before the fork), so
gunicorn's forked workers run goloop on its post-fork C engine.
"""

import asyncio
import json
import os
import socket
import sys
from urllib.parse import parse_qs

if os.environ.get("GOLOOP_START_GO_AT_IMPORT") == "1":
    import goloop

    goloop.new_event_loop().close()


def loop_info():
    loop = asyncio.get_running_loop()
    cls = type(loop)
    engine = None
    if cls.__module__.startswith("goloop"):
        import goloop

        engine = goloop.stats(loop).engine
    return {"pid": os.getpid(), "loop": f"{cls.__module__}.{cls.__qualname__}", "engine": engine}


async def read_body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks), len(chunks)


async def respond(send, status, body, ctype=b"application/octet-stream"):
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def http(scope, receive, send):
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/":  # benchmarks/integration.py's request
        await respond(send, 200, b"Hello, World!", b"text/plain")
    elif path == "/info":
        info = loop_info()
        info["client_port"] = scope["client"][1] if scope.get("client") else None
        info["http_version"] = scope["http_version"]
        await respond(send, 200, json.dumps(info).encode(), b"application/json")
    elif path == "/echo":
        body, _ = await read_body(receive)
        await respond(send, 200, body)
    elif path == "/stream":
        n, size = int(query["n"]), int(query["size"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(n):
            chunk = bytes([65 + i % 26]) * size
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/subprocess":
        # a child process from inside a worker (on goloop's C engine after
        # gunicorn --preload's fork): pipes both ways and the exit status
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; d = sys.stdin.read(); print(d.upper()); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate(b"from the app")
        await respond(send, 200, json.dumps([out.decode(), proc.returncode]).encode())
    elif path == "/resolve":
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        await respond(send, 200, json.dumps(sorted(repr(i) for i in infos)).encode())
    elif path == "/watch":
        # streams until the client goes away, which the app must be told
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"watching", "more_body": True})
        message = await receive()
        print(f"watch-{message['type']}", file=sys.stderr, flush=True)
    elif path == "/slow":
        print(f"slow-start {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(query["d"]))
        await respond(send, 200, b"done after " + query["d"].encode())
    else:
        await respond(send, 404, b"not found")


async def websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4000, "reason": "asked to"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            print(f"lifespan-startup {json.dumps(loop_info())}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print(f"lifespan-shutdown {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    handler = {"http": http, "websocket": websocket, "lifespan": lifespan}[scope["type"]]
    await handler(scope, receive, send)
