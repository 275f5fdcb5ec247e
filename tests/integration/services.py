"""A PostgreSQL and a redis-server in temporary directories, as context
managers: the integration tier's session fixtures (conftest.py) and
benchmarks/integration.py start them this way. Debian's packages
(postgresql, redis-server; make integration installs them)."""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

TIMEOUT = 60.0


class ServiceError(RuntimeError):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what, proc, log):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return
        time.sleep(0.05)
    with open(log) as f:
        raise ServiceError(f"{what}: not within {TIMEOUT} s (rc={proc.poll()})\n{f.read()}")


def _stop(proc, sig):
    proc.send_signal(sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _as_user():
    """initdb and postgres refuse to run as root: as root, run them as nobody."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("nobody")
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@dataclass
class Postgres:
    sockdir: str
    port: int
    user: str = "postgres"
    database: str = "postgres"

    def dsn(self, via):
        """via: "unix", "tcp" (127.0.0.1) or "localhost" (a name the client
        resolves, through the loop's getaddrinfo)."""
        host = {"unix": self.sockdir, "tcp": "127.0.0.1"}.get(via, via)
        return f"postgresql://{self.user}@/{self.database}?host={host}&port={self.port}"


@contextlib.contextmanager
def postgres():
    """A throwaway cluster (trust auth, no fsync) on a Unix socket in its
    directory and on 127.0.0.1; removed on exit."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not bins:
        raise ServiceError("no PostgreSQL server: apt-get install postgresql")
    bindir = os.path.dirname(bins[-1])
    base = tempfile.mkdtemp(prefix="goloop-pg-")  # short: the socket path has a limit
    try:
        user = _as_user()
        if user:
            os.chown(base, user["user"], user["group"])
        data = os.path.join(base, "data")
        initdb = [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        done = subprocess.run([*initdb, "-N"], capture_output=True, text=True, **user)
        if done.returncode:
            raise ServiceError(f"initdb failed:\n{done.stdout}{done.stderr}")
        port = free_port()
        log = os.path.join(base, "postgres.log")
        with open(log, "w") as out:
            if user:
                os.chown(log, user["user"], user["group"])
            proc = subprocess.Popen(
                [f"{bindir}/postgres", "-D", data, "-k", base, "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **user,
            )  # fmt: skip
        try:
            isready = [f"{bindir}/pg_isready", "-q", "-h", base, "-p", str(port)]
            _wait(lambda: subprocess.run(isready).returncode == 0, "PostgreSQL", proc, log)
            yield Postgres(base, port)
        finally:
            _stop(proc, signal.SIGINT)  # fast shutdown
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Redis:
    port: int
    unixsocket: str


@contextlib.contextmanager
def redis():
    """redis-server without persistence on 127.0.0.1 and a Unix socket."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ServiceError("no redis-server: apt-get install redis-server")
    base = tempfile.mkdtemp(prefix="goloop-redis-")
    try:
        port = free_port()
        sock = os.path.join(base, "redis.sock")
        log = os.path.join(base, "redis.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", sock,
                 "--save", "", "--appendonly", "no", "--dir", base],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            _wait(lambda: os.path.exists(sock), "redis-server", proc, log)
            yield Redis(port, sock)
        finally:
            _stop(proc, signal.SIGTERM)
    finally:
        shutil.rmtree(base, ignore_errors=True)
