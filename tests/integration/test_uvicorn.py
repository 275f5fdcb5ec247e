"""uvicorn run the ways people run it, and gunicorn with uvicorn's worker.

One server per (deployment, loop), shared by the module's tests; the last
test shuts it down with SIGTERM while requests are in flight. The client is
the standard library (blocking sockets, http.client) and websockets' sync
client, so only the server's loop differs between parametrizations.

Deployments: ``uvicorn asgi_app:app --loop goloop:new_event_loop`` (one
process), ``--workers 2`` (multiprocessing's spawn: each worker starts Go),
``--fd`` (a listening socket the test made), ``--ssl-keyfile`` (TLS),
``--http h11 --uds`` (the pure-Python protocol on a Unix socket), gunicorn
with uvicorn's worker class (pre-fork, 2 workers), and gunicorn
``--preload`` with the Go runtime started in the master before the fork,
so goloop's workers run on its post-fork C engine.
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import threading
import time

import pytest
from conftest import (
    APPS,
    HANG_TIMEOUT,
    LOOP_NAMES,
    LOOP_TYPE,
    Server,
    free_port,
    python_cmd,
    wait_for,
)

websockets_sync = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosedError  # noqa: E402

LOOP_OPTION = {"asyncio": "asyncio", "uvloop": "uvloop", "goloop": "goloop:new_event_loop"}
WORKER_CLASS = {"asyncio": "AsyncioWorker", "uvloop": "UvloopWorker", "goloop": "GoloopWorker"}
MODES = ("single", "workers2", "fd", "tls", "uds-h11", "gunicorn", "gunicorn-preload")
WORKERS = {"workers2": 2, "gunicorn": 2, "gunicorn-preload": 2}  # others: 1


def start(mode, loop_name, tmp_path, cert):
    port = free_port()
    env = {}
    pass_fds = ()
    if mode.startswith("gunicorn"):
        cmd = python_cmd(
            "-m",
            "gunicorn",
            "asgi_app:app",
            "-k",
            f"workers.{WORKER_CLASS[loop_name]}",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--graceful-timeout",
            "15",
        )
        if mode == "gunicorn-preload":
            cmd.append("--preload")
            env["GOLOOP_START_GO_AT_IMPORT"] = "1"
    else:
        cmd = python_cmd(
            "-m",
            "uvicorn",
            "asgi_app:app",
            "--loop",
            LOOP_OPTION[loop_name],
            "--http",
            "httptools",
            "--ws",
            "websockets",
            "--lifespan",
            "on",
        )
        if mode == "fd":
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            port = listener.getsockname()[1]
            listener.set_inheritable(True)
            pass_fds = (listener.fileno(),)
            cmd += ["--fd", str(listener.fileno())]
        elif mode == "uds-h11":
            # uvicorn's pure-Python HTTP protocol on a Unix socket
            port = str(tmp_path / "uvicorn.sock")
            cmd[cmd.index("httptools")] = "h11"
            cmd += ["--uds", port]
        else:
            cmd += ["--port", str(port)]
        if mode == "tls":
            cmd += ["--ssl-keyfile", cert[0], "--ssl-certfile", cert[1]]
        if mode == "workers2":
            cmd += ["--workers", "2"]
    server = Server(cmd, port, tmp_path, env=env, pass_fds=pass_fds, cwd=APPS)
    if pass_fds:
        listener.close()  # the child has its own copy
    server.mode = mode
    server.workers = WORKERS.get(mode, 1)
    server.cert = cert[1]
    server.wait_log("lifespan-startup", count=server.workers)
    # (a single uvicorn binds its socket after lifespan startup)
    wait_for(lambda: can_connect(server), "server listening", proc=server.proc, log=server.log)
    return server


@pytest.fixture(
    scope="module",
    # uvloop, the third column, in the single-process deployment only: the
    # tier's time budget (the stock loop is the oracle in every mode)
    params=[(m, n) for m in MODES for n in LOOP_NAMES if n != "uvloop" or m == "single"],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def server(request, tmp_path_factory, cert):
    mode, loop_name = request.param
    srv = start(mode, loop_name, tmp_path_factory.mktemp(f"{mode}-{loop_name}"), cert)
    srv.loop_name = loop_name
    try:
        yield srv
    finally:
        srv.kill()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=HANG_TIMEOUT)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(HANG_TIMEOUT)
        self.sock.connect(self.path)


def client_tls(server):
    return ssl.create_default_context(cafile=server.cert)


def connect(server):
    if server.mode == "uds-h11":
        return UnixHTTPConnection(server.port)
    if server.mode == "tls":
        return http.client.HTTPSConnection(
            "127.0.0.1", server.port, timeout=HANG_TIMEOUT, context=client_tls(server)
        )
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_TIMEOUT)


def raw_connect(server):
    if server.mode == "uds-h11":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(server.port)
        return sock
    return socket.create_connection(("127.0.0.1", server.port), timeout=HANG_TIMEOUT)


def can_connect(server):
    try:
        raw_connect(server).close()
    except OSError:
        return False
    return True


def ws_connect(server):
    if server.mode == "uds-h11":
        return websockets_sync.unix_connect(
            server.port, "ws://localhost/ws", open_timeout=HANG_TIMEOUT
        )
    scheme, kw = ("wss", {"ssl": client_tls(server)}) if server.mode == "tls" else ("ws", {})
    return websockets_sync.connect(
        f"{scheme}://127.0.0.1:{server.port}/ws", open_timeout=HANG_TIMEOUT, **kw
    )


def check_loop(server, info):
    assert info["loop"].startswith(LOOP_TYPE[server.loop_name]), info
    if server.loop_name == "goloop":
        # spawned workers and gunicorn's forks without --preload start Go;
        # forks of a master that started Go get the C engine
        assert info["engine"] == ("c" if server.mode == "gunicorn-preload" else "go"), info


def test_workers_run_the_loop(server):
    lines = [ln for ln in server.text().splitlines() if ln.startswith("lifespan-startup ")]
    infos = [json.loads(ln.split(" ", 1)[1]) for ln in lines]
    assert len({i["pid"] for i in infos}) == server.workers
    for info in infos:
        check_loop(server, info)


def test_keep_alive(server):
    conn = connect(server)
    try:
        seen, socks = [], set()
        for _ in range(5):
            conn.request("GET", "/info")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("connection") is None  # kept open
            seen.append(json.loads(resp.read()))
            socks.add(id(conn.sock))  # http.client would have reconnected
        sock_name = conn.sock.getsockname()
    finally:
        conn.close()
    assert len(socks) == 1
    if server.mode != "uds-h11":  # (a Unix client has no address)
        assert {i["client_port"] for i in seen} == {sock_name[1]}
    assert {i["pid"] for i in seen} == {seen[0]["pid"]}
    assert {i["http_version"] for i in seen} == {"1.1"}
    check_loop(server, seen[0])


def chunks():
    for i in range(64):
        yield bytes([i]) * (1 + i * 997 % 9000)


def test_chunked_request_body(server):
    expected = b"".join(chunks())
    conn = connect(server)
    try:
        conn.request("POST", "/echo", body=chunks(), encode_chunked=True)
        resp = conn.getresponse()
        got = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert len(got) == len(expected)
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()


def test_large_body_both_ways(server):
    body = os.urandom(1 << 16) * 48  # 3 MiB: flow control on both sides
    conn = connect(server)
    try:
        conn.request("POST", "/echo", body=body)
        resp = conn.getresponse()
        got = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert resp.getheader("content-length") == str(len(body))
    assert got == body


def test_chunked_response(server):
    conn = connect(server)
    try:
        conn.request("GET", "/stream?n=200&size=1500")
        resp = conn.getresponse()
        assert resp.getheader("transfer-encoding") == "chunked"
        got = resp.read()
        # the connection is still usable after a chunked response
        conn.request("GET", "/info")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert got == b"".join(bytes([65 + i % 26]) * 1500 for i in range(200))


def test_pipelined_requests(server):
    """Three requests in one write: answered in order on the one connection."""
    sock = raw_connect(server)
    if server.mode == "tls":
        sock = client_tls(server).wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
            b"GET /stream?n=3&size=4 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n"
            b"\r\nlast"
        )
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    heads_and_bodies = [part.split(b"\r\n\r\n", 1) for part in got.split(b"HTTP/1.1 ")[1:]]
    assert [h.split(b"\r\n", 1)[0] for h, _ in heads_and_bodies] == [b"200 OK"] * 3, got
    assert [b for _, b in heads_and_bodies] == [
        b"first",
        b"4\r\nAAAA\r\n4\r\nBBBB\r\n4\r\nCCCC\r\n0\r\n\r\n",
        b"last",
    ], got


def test_slow_reader(server):
    """An 8 MiB chunked response to a client that stops reading for a while:
    the server's writes back up (pause_writing) and resume intact."""
    conn = connect(server)
    try:
        conn.request("GET", "/stream?n=500&size=16384")
        resp = conn.getresponse()
        first = resp.read(16384)
        time.sleep(0.3)
        rest = resp.read()
    finally:
        conn.close()
    got = first + rest
    assert len(got) == 500 * 16384
    assert got == b"".join(bytes([65 + i % 26]) * 16384 for i in range(500))


def test_client_disconnect_reaches_app(server):
    before = server.text().count("watch-http.disconnect")
    conn = connect(server)
    conn.request("GET", "/watch")
    resp = conn.getresponse()
    assert resp.read(8) == b"watching"
    conn.close()
    server.wait_log("watch-http.disconnect", count=before + 1, timeout=HANG_TIMEOUT)


def get_json(server, path):
    conn = connect(server)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def test_subprocess_in_worker(server):
    assert get_json(server, "/subprocess") == ["FROM THE APP\n", 3]


def test_resolve_in_worker(server):
    infos = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert get_json(server, "/resolve") == sorted(repr(i) for i in infos)


def test_websocket(server):
    big = os.urandom(200_000)
    with ws_connect(server) as ws:
        ws.send("héllo")
        assert ws.recv(HANG_TIMEOUT) == "héllo"
        ws.send(big)
        assert ws.recv(HANG_TIMEOUT) == big
        for i in range(50):
            ws.send(f"msg {i}")
        assert [ws.recv(HANG_TIMEOUT) for _ in range(50)] == [f"msg {i}" for i in range(50)]
        ws.send("close")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(HANG_TIMEOUT)
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "asked to")


def test_graceful_shutdown_sigterm(server):
    """Runs last for each server (pytest keeps file order within a
    module-scoped parametrization): SIGTERM with three requests in flight;
    each completes, the server exits as on stock and runs lifespan shutdown."""
    results = [None] * 3

    def request(i):
        conn = connect(server)
        try:
            conn.request("GET", "/slow?d=1")
            resp = conn.getresponse()
            results[i] = (resp.status, resp.read())
        except Exception as exc:  # reported by the assertion below
            results[i] = repr(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    server.wait_log("slow-start", count=3, timeout=HANG_TIMEOUT)
    rc = server.stop()
    for t in threads:
        t.join(HANG_TIMEOUT)
    log = server.text()
    assert results == [(200, b"done after 1")] * 3, log
    # a single uvicorn process re-raises the signal it handled once shut
    # down (death by SIGTERM, on every loop); uvicorn's and gunicorn's
    # supervisors exit 0
    assert rc == (-signal.SIGTERM if server.workers == 1 else 0), log
    assert log.count("lifespan-shutdown") == server.workers, log
    with pytest.raises(ConnectionRefusedError):
        raw_connect(server).close()


@pytest.mark.parametrize("loop_name", ["asyncio", "goloop"])
def test_gunicorn_preload_recycles_workers(loop_name, tmp_path):
    """gunicorn --preload --max-requests: each worker exits after 3 requests
    and the master (Go started, for goloop) forks a fresh one; every fork
    serves on the loop, goloop's on its C engine."""
    port = free_port()
    cmd = python_cmd(
        "-m", "gunicorn", "asgi_app:app", "-k", f"workers.{WORKER_CLASS[loop_name]}",
        "-b", f"127.0.0.1:{port}", "-w", "1", "--preload", "--max-requests", "3",
    )  # fmt: skip
    server = Server(cmd, port, tmp_path, env={"GOLOOP_START_GO_AT_IMPORT": "1"}, cwd=APPS)
    server.mode, server.loop_name = "gunicorn-preload", loop_name
    try:
        server.wait_log("lifespan-startup")
        infos = []
        for worker in range(2):
            if worker:  # uvicorn checks the limit every 0.1 s: wait for the next fork
                server.wait_log("lifespan-startup", count=worker + 1)
            for _ in range(3):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_TIMEOUT)
                try:
                    conn.request("GET", "/info")
                    resp = conn.getresponse()
                    assert resp.status == 200
                    infos.append(json.loads(resp.read()))
                finally:
                    conn.close()
        for info in infos:
            check_loop(server, info)
        pids = [i["pid"] for i in infos]
        assert len(set(pids)) == 2, pids  # three requests per worker
        assert server.stop() == 0
    finally:
        server.kill()


@pytest.mark.parametrize("loop_name", ["asyncio", "goloop"])  # (the tier's time budget)
def test_keep_alive_timeout(loop_name, tmp_path):
    """--timeout-keep-alive 1: an idle kept-alive connection is closed by
    the server (a timer on the loop, then the transport's close)."""
    port = free_port()
    cmd = python_cmd(
        "-m", "uvicorn", "asgi_app:app", "--loop", LOOP_OPTION[loop_name], "--port", str(port),
        "--http", "httptools", "--timeout-keep-alive", "1",
    )  # fmt: skip
    server = Server(cmd, port, tmp_path, cwd=APPS)
    server.mode = "single"
    try:
        server.wait_log("Uvicorn running on")
        sock = raw_connect(server)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"Hello, World!"):
                got += sock.recv(4096)
            assert got.startswith(b"HTTP/1.1 200 OK\r\n")
            sock.settimeout(HANG_TIMEOUT)
            assert sock.recv(4096) == b""  # closed by the server, not by our timeout
    finally:
        server.kill()
