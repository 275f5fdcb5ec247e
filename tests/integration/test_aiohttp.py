"""aiohttp's server and client, both on the loop under test (in-process,
over TCP and a Unix socket), and web.run_app in a child process on it."""

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import sys
import threading

import pytest
from conftest import APPS, HANG_TIMEOUT, LOOP_TYPE, Server, free_port, python_cmd, run, wait_for

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import WSMsgType, web  # noqa: E402

sys.path.insert(0, APPS)
from aiohttp_app import WS_CLOSES, make_app  # noqa: E402


async def serve(app, unix_path=None, ssl_context=None):
    runner = web.AppRunner(app)
    await runner.setup()
    if unix_path:
        site = web.UnixSite(runner, unix_path)
    else:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    if unix_path:
        return runner, "http://localhost"
    port = runner.addresses[0][1]
    return runner, f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"


def tls_contexts(cert):
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert[1], cert[0])
    return server, ssl.create_default_context(cafile=cert[1])


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=HANG_TIMEOUT).close()
    except OSError:
        return False
    return True


def chunks_expected(n, size):
    return b"".join(bytes([65 + i % 26]) * size for i in range(n))


@pytest.mark.parametrize("via", ["tcp", "unix", "tls"])
def test_http_client_and_server(loop_name, via, tmp_path, cert):
    body = os.urandom(1 << 16) * 32  # 2 MiB
    served = tmp_path / "served.bin"
    served.write_bytes(os.urandom(3 << 20))

    async def upload():
        for i in range(40):
            yield bytes([i]) * (1 + i * 4093 % 20000)

    async def main():
        unix_path = str(tmp_path / "a.sock") if via == "unix" else None
        server_tls, client_tls = tls_contexts(cert) if via == "tls" else (None, None)
        runner, base = await serve(make_app(str(served)), unix_path, server_tls)
        if unix_path:
            connector = aiohttp.UnixConnector(path=unix_path)
        else:
            connector = aiohttp.TCPConnector(limit=8, ssl=client_tls or True)
        out = {}
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                ports = []
                for _ in range(5):  # keep-alive: one connection for all
                    async with session.get(base + "/info") as resp:
                        info = await resp.json()
                        ports.append(info["connection"])
                        out["loop"] = info["loop"]
                out["one_connection"] = len(set(ports)) == 1
                async with session.post(base + "/echo", data=body) as resp:
                    got = await resp.read()
                    out["echo"] = (resp.status, got == body, resp.headers["x-chunked"])
                async with session.post(base + "/echo", data=upload()) as resp:
                    got = await resp.read()
                    out["chunked_upload"] = (
                        hashlib.sha256(got).hexdigest(),
                        len(got),
                        resp.headers["x-chunked"],
                    )
                async with session.get(base + "/stream?n=300&size=1000") as resp:
                    parts = [c async for c in resp.content.iter_chunked(4096)]
                    out["stream"] = (
                        resp.headers["transfer-encoding"],
                        b"".join(parts) == chunks_expected(300, 1000),
                    )

                async with session.get(base + "/file") as resp:
                    out["file"] = await resp.read() == served.read_bytes()
                ranged = {"Range": "bytes=1000-2999999"}
                async with session.get(base + "/file", headers=ranged) as resp:
                    part = await resp.read()
                    out["range"] = (resp.status, part == served.read_bytes()[1000:3000000])

                async def one(i):
                    async with session.post(base + "/echo", data=b"x" * i) as resp:
                        return len(await resp.read())

                out["concurrent"] = await asyncio.gather(*(one(i) for i in range(60)))
                timeout = aiohttp.ClientTimeout(total=0.3)
                try:
                    await session.get(base + "/slow?d=0.8", timeout=timeout)
                except Exception as exc:
                    out["timeout"] = type(exc)
        finally:
            await runner.cleanup()
        return out

    out = run(loop_name, main)
    expected_chunked = b"".join(bytes([i]) * (1 + i * 4093 % 20000) for i in range(40))
    assert out == {
        "loop": out["loop"],
        "one_connection": True,
        "echo": (200, True, "None"),
        "chunked_upload": (
            hashlib.sha256(expected_chunked).hexdigest(),
            len(expected_chunked),
            "chunked",
        ),
        "stream": ("chunked", True),
        "file": True,
        "range": (206, True),
        "concurrent": list(range(60)),
        "timeout": TimeoutError,  # total= elapsed: asyncio.TimeoutError
    }
    assert out["loop"].startswith(LOOP_TYPE[loop_name])


def test_websocket(loop_name):
    big = os.urandom(1 << 20)

    async def main():
        app = make_app()
        runner, base = await serve(app)
        got = []
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(base + "/ws", heartbeat=5) as ws:
                    await ws.send_str("héllo")
                    got.append(await ws.receive_str())
                    await ws.send_bytes(big)
                    got.append(await ws.receive_bytes() == big)
                    for i in range(100):
                        await ws.send_str(f"m{i}")
                    got.append([await ws.receive_str() for _ in range(100)])
                    await ws.ping(b"are you there")
                    await ws.send_str("close")  # the server closes with 4000
                    msg = await ws.receive()
                    got.append((msg.type, msg.data, msg.extra))
                    got.append(ws.close_code)
                async with session.ws_connect(base + "/ws") as ws:
                    await ws.send_str("x")
                    got.append(await ws.receive_str())
                    await ws.close(code=4321, message=b"client done")
                    got.append(ws.close_code)
        finally:
            await runner.cleanup()
        got.append(app[WS_CLOSES])
        return got

    assert run(loop_name, main) == [
        "héllo",
        True,
        [f"m{i}" for i in range(100)],
        (WSMsgType.CLOSE, 4000, "asked to"),
        4000,
        "x",
        1000,  # the code of the server's answering close frame
        [1000, 4321],  # the server's close_code: the code the client sent
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("loop_name", ["asyncio", "goloop"])  # (the tier's time budget)
def test_run_app_graceful(loop_name, sig, tmp_path):
    """web.run_app(app, loop=...) in a child: it serves on that loop, and on
    SIGINT or SIGTERM finishes the request in flight, runs on_shutdown and on_cleanup,
    and returns."""
    port = free_port()
    server = Server(python_cmd("aiohttp_app.py", loop_name, str(port)), port, tmp_path)
    try:
        server.wait_log("startup ")
        # (on_startup runs before run_app binds)
        wait_for(lambda: can_connect(port), "run_app listening", proc=server.proc, log=server.log)
        line = next(ln for ln in server.text().splitlines() if ln.startswith("startup "))
        assert json.loads(line.split(" ", 1)[1])["loop"].startswith(LOOP_TYPE[loop_name])
        result = []

        def request():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_TIMEOUT)
            try:
                conn.request("GET", "/slow?d=1")
                resp = conn.getresponse()
                result.append((resp.status, resp.read()))
            except Exception as exc:  # reported by the assertion below
                result.append(repr(exc))
            finally:
                conn.close()

        thread = threading.Thread(target=request)
        thread.start()
        server.wait_log("slow-start", timeout=HANG_TIMEOUT)
        rc = server.stop(sig)  # run_app's loop.add_signal_handler
        thread.join(HANG_TIMEOUT)
        log = server.text()
        assert result == [(200, b"done after 1")], log
        assert rc == 0, log
        tail = [ln for ln in log.splitlines() if ln in ("shutdown", "cleanup", "run_app returned")]
        assert tail == ["shutdown", "cleanup", "run_app returned"], log
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=HANG_TIMEOUT).close()
    finally:
        server.kill()


@pytest.mark.parametrize("preload", [False, True], ids=["gunicorn", "gunicorn-preload"])
@pytest.mark.parametrize("loop_name", ["asyncio", "goloop"])
def test_gunicorn_aiohttp_worker(loop_name, preload, tmp_path):
    """gunicorn -w 2 with aiohttp's GunicornWebWorker on the loop (goloop
    through its policy, as aiohttp's uvloop worker does it); with --preload
    and Go started in the master, goloop's forks run the C engine. Requests,
    a WebSocket, and SIGTERM with a request in flight."""
    port = free_port()
    worker = {"asyncio": "AiohttpAsyncioWorker", "goloop": "AiohttpGoloopWorker"}[loop_name]
    cmd = python_cmd(
        "-m", "gunicorn", "aiohttp_app:gunicorn_app", "-k", f"workers.{worker}",
        "-b", f"127.0.0.1:{port}", "-w", "2", "--graceful-timeout", "15",
    )  # fmt: skip
    env = {}
    if preload:
        cmd.append("--preload")
        env["GOLOOP_START_GO_AT_IMPORT"] = "1"
    server = Server(cmd, port, tmp_path, env=env)
    try:
        server.wait_log("startup ", count=2)
        wait_for(lambda: can_connect(port), "gunicorn listening", proc=server.proc, log=server.log)
        lines = [ln for ln in server.text().splitlines() if ln.startswith("startup ")]
        infos = [json.loads(ln.split(" ", 1)[1]) for ln in lines]
        assert len({i["pid"] for i in infos}) == 2
        for info in infos:
            assert info["loop"].startswith(LOOP_TYPE[loop_name]), info
            if loop_name == "goloop":
                assert info["engine"] == ("c" if preload else "go"), info
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_TIMEOUT)
        try:
            seen = set()
            for _ in range(3):
                conn.request("POST", "/echo", body=b"z" * 100_000)
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, b"z" * 100_000)
                seen.add(id(conn.sock))
            assert len(seen) == 1
        finally:
            conn.close()
        ws_sync = pytest.importorskip("websockets.sync.client")
        with ws_sync.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=HANG_TIMEOUT) as ws:
            ws.send("héllo")
            assert ws.recv(HANG_TIMEOUT) == "héllo"
        result = []

        def request():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_TIMEOUT)
            try:
                c.request("GET", "/slow?d=1")
                r = c.getresponse()
                result.append((r.status, r.read()))
            except Exception as exc:  # reported by the assertion below
                result.append(repr(exc))
            finally:
                c.close()

        thread = threading.Thread(target=request)
        thread.start()
        server.wait_log("slow-start", timeout=HANG_TIMEOUT)
        rc = server.stop()
        thread.join(HANG_TIMEOUT)
        log = server.text()
        assert result == [(200, b"done after 1")], log
        assert rc == 0, log
        assert log.count("\ncleanup\n") == 2, log
    finally:
        server.kill()
