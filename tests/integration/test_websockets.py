"""The websockets library's own asyncio server and client, both on the loop
under test, over TCP and a Unix socket."""

import asyncio
import os

import pytest
from conftest import run

pytest.importorskip("websockets.asyncio.server")
from websockets.asyncio.client import connect, unix_connect  # noqa: E402
from websockets.asyncio.server import broadcast, serve, unix_serve  # noqa: E402
from websockets.exceptions import ConnectionClosedError  # noqa: E402


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_websockets_server_and_client(loop_name, via, tmp_path):
    big = os.urandom(1 << 20)
    path = str(tmp_path / "ws.sock")

    async def handler(ws):
        async for message in ws:
            if message == "broadcast":
                broadcast(server.connections, "to all")
            elif message == "close":
                await ws.close(4001, "bye")
            else:
                await ws.send(message)

    async def client():
        if via == "unix":
            return unix_connect(path, "ws://localhost/", max_size=None)
        port = server.sockets[0].getsockname()[1]
        return connect(f"ws://127.0.0.1:{port}/", max_size=None)

    async def main():
        nonlocal server
        if via == "unix":
            server = await unix_serve(handler, path, max_size=None)
        else:
            server = await serve(handler, "127.0.0.1", 0, max_size=None)
        out = {}
        async with server:
            async with await client() as a, await client() as b:
                await a.send(big)
                out["big"] = await a.recv() == big
                await asyncio.gather(*(b.send(f"m{i}") for i in range(200)))
                out["order"] = [await b.recv() for _ in range(200)] == [f"m{i}" for i in range(200)]
                latency = await (await a.ping(b"p"))
                out["ping"] = latency >= 0
                await a.send("broadcast")
                out["broadcast"] = (await a.recv(), await b.recv())
                await b.send("close")
                try:
                    await b.recv()
                except ConnectionClosedError as exc:
                    out["closed"] = (exc.rcvd.code, exc.rcvd.reason)
            server.close()
            await server.wait_closed()
        return out

    server = None
    assert run(loop_name, main) == {
        "big": True,
        "order": True,
        "ping": True,
        "broadcast": ("to all", "to all"),
        "closed": (4001, "bye"),
    }
