"""The integration tier: real servers and clients on the stock loop, goloop
and uvloop (the third column where a wheel exists).

Each test runs one scenario per loop and asserts exact data and behaviour,
which the stock loop's parametrization must also pass, so a goloop
difference from stock fails. Tests that need a server start a real one:
uvicorn/gunicorn/aiohttp in child processes, PostgreSQL and redis-server
once per session in temporary directories (removed at exit).
"""

import asyncio
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest

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


# ------------------------------------------------------------ PostgreSQL
def _as_user():
    """initdb and postgres refuse to run as root: run them as nobody then."""
    if os.geteuid() != 0:
        return None, None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@dataclass
class Postgres:
    sockdir: str
    port: int
    user: str = "postgres"
    database: str = "postgres"

    def dsn(self, via):
        host = self.sockdir if via == "unix" else "127.0.0.1"
        return f"postgresql://{self.user}@/{self.database}?host={host}&port={self.port}"


@pytest.fixture(scope="session")
def postgres():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not bins:
        pytest.fail("no PostgreSQL server: apt-get install postgresql (make integration does)")
    bindir = os.path.dirname(bins[-1])
    base = tempfile.mkdtemp(prefix="goloop-pg-")
    uid, gid = _as_user()
    if uid is not None:
        os.chown(base, uid, gid)
    data = os.path.join(base, "data")
    user_kw = {"user": uid, "group": gid} if uid is not None else {}
    subprocess.run(
        [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"],
        check=True,
        capture_output=True,
        **user_kw,
    )
    port = free_port()
    log = os.path.join(base, "postgres.log")
    with open(log, "w") as out:
        if uid is not None:
            os.chown(log, uid, gid)
        proc = subprocess.Popen(
            [
                f"{bindir}/postgres",
                "-D",
                data,
                "-k",
                base,
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **user_kw,
        )
    pg = Postgres(base, port)
    try:
        wait_for(
            lambda: (
                subprocess.run(
                    [f"{bindir}/pg_isready", "-q", "-h", base, "-p", str(port)]
                ).returncode
                == 0
            ),
            "PostgreSQL ready",
            proc=proc,
            log=log,
        )
        yield pg
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------- Redis
@dataclass
class Redis:
    port: int
    unixsocket: str


@pytest.fixture(scope="session")
def redis_server():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("no redis-server: apt-get install redis-server (make integration does)")
    base = tempfile.mkdtemp(prefix="goloop-redis-")
    port = free_port()
    sock = os.path.join(base, "redis.sock")
    log = os.path.join(base, "redis.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                sock,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                base,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: os.path.exists(sock), "redis-server ready", proc=proc, log=log)
        yield Redis(port, sock)
    finally:
        proc.terminate()
        try:
            proc.wait(HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def python_cmd(*args):
    return [sys.executable, *args]
