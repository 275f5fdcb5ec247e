"""The integration tier: real servers and clients on the stock loop, goloop
and uvloop (the third column where a wheel exists).

Each test runs one scenario per loop and asserts exact data and behaviour,
which the stock loop's parametrization must also pass, so a goloop
difference from stock fails. Tests that need a server start a real one:
uvicorn/gunicorn/aiohttp in child processes, PostgreSQL and redis-server
once per session in temporary directories (removed at exit).
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import services

import goloop

try:
    import uvloop
except ImportError:  # no wheel for this interpreter
    uvloop = None

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")

#: Bounds that only turn a hang into a failure.
HANG_TIMEOUT = 20.0
START_TIMEOUT = 60.0

FACTORIES = {"asyncio": asyncio.SelectorEventLoop, "goloop": goloop.new_event_loop}
if uvloop is not None:
    FACTORIES["uvloop"] = uvloop.new_event_loop
LOOP_NAMES = tuple(FACTORIES)

#: What type(loop) of each loop name is called (module.qualname prefix).
LOOP_TYPE = {"asyncio": "asyncio.", "goloop": "goloop.", "uvloop": "uvloop."}


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("goloop_bug")
        callspec = getattr(item, "callspec", None)
        if marker and callspec and callspec.params.get("loop_name") == "goloop":
            item.add_marker(pytest.mark.xfail(strict=True, reason="goloop bug: " + marker.args[0]))


@pytest.fixture(params=LOOP_NAMES)
def loop_name(request):
    return request.param


def run(loop_name, main, timeout=HANG_TIMEOUT):
    """Run main() on a new loop of loop_name (asyncio.Runner: async
    generators and the default executor shut down as asyncio.run does),
    checking that it really is that loop."""

    async def checked():
        loop_type = type(asyncio.get_running_loop())
        assert f"{loop_type.__module__}.".startswith(LOOP_TYPE[loop_name]), loop_type
        return await asyncio.wait_for(main(), timeout)

    with asyncio.Runner(loop_factory=FACTORIES[loop_name]) as runner:
        return runner.run(checked())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what, timeout=START_TIMEOUT, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    detail = open(log).read() if log else ""
    pytest.fail(f"{what}: not within {timeout} s (rc={proc and proc.poll()})\n{detail}")


class Server:
    """A child process serving HTTP on 127.0.0.1:port; its stdout and
    stderr go to a log file (read by the tests, shown on failure)."""

    def __init__(self, cmd, port, tmp_path, env=None, pass_fds=(), cwd=APPS):
        self.port = port
        self.log = str(tmp_path / "server.log")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        full_env.pop("PYTHONASYNCIODEBUG", None)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,
            )

    def text(self):
        with open(self.log) as f:
            return f.read()

    def wait_log(self, needle, count=1, timeout=START_TIMEOUT):
        wait_for(
            lambda: self.text().count(needle) >= count,
            f"{count} x {needle!r} in the server's log",
            timeout,
            self.proc,
            self.log,
        )

    def stop(self, sig=signal.SIGTERM):
        """Signal the server and wait for it; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(HANG_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                pytest.fail(f"server ignored {sig!r}\n{self.text()}")
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        else:  # reap workers a dead master left behind
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    """(key, certificate) files: self-signed for 127.0.0.1 (openssl)."""
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(d / "key.pem"), str(d / "cert.pem")


# ------------------------------------------- PostgreSQL and redis-server
@pytest.fixture(scope="session")
def postgres():
    try:
        with services.postgres() as pg:
            yield pg
    except services.ServiceError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def redis_server():
    try:
        with services.redis() as server:
            yield server
    except services.ServiceError as exc:
        pytest.fail(str(exc))


def python_cmd(*args):
    return [sys.executable, *args]
