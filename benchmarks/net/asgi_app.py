"""A plain ASGI hello-world app for run_uvicorn.py: ``asgi_app:app``.

Every HTTP request gets 200 with ``content-type: text/plain`` and a
``content-length`` body, sent as uvicorn's usual two events (the start with
the headers, then the body).  The lifespan scope is answered so that
uvicorn starts without a warning.  No framework, no middleware.
"""

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
END = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    await send(START)
    await send(END)
