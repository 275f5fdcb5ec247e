"""Helpers shared by the test modules (imported as a plain module)."""

import asyncio
import os
import re
import subprocess
import sys
import textwrap

import pytest

import goloop

#: Directory that holds the goloop package the tests imported, so that child
#: interpreters import the very same goloop.
GOLOOP_PATH = os.path.dirname(os.path.dirname(os.path.abspath(goloop.__file__)))

#: Generous bound used only to turn a hang into a failure.
HANG_TIMEOUT = 10.0


def stock_factory():
    """The stock loop: what asyncio.new_event_loop() gives on Linux by default."""
    return asyncio.SelectorEventLoop()


FACTORIES = {"asyncio": stock_factory, "goloop": goloop.new_event_loop}


def waiting_data(*socks):
    """What each socket has waiting to be read (non-blocking; sockets with
    nothing waiting are left out): where a test checks no bytes leaked."""
    got = []
    for sock in socks:
        sock.setblocking(False)
        try:
            got.append(sock.recv(100))
        except BlockingIOError:
            pass
    return got


def outcome(fn, *args, **kwargs):
    """Run fn and describe what happened: ("ok", result) or (exc type, message)."""
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # report any exception, even SystemExit
        return type(exc), str(exc)
    return "ok", result


def norm_repr(text):
    """A transport/handle description without fds and with one name for each
    transport class (asyncio's _SelectorSocketTransport and
    _SelectorDatagramTransport, goloop's SocketTransport and
    DatagramTransport): they differ in name only."""
    text = re.sub(r"fd=\d+", "fd=N", text)
    # reprlib cuts long reprs in callback descriptions at a width that
    # depends on the class name's length.
    text = re.sub(r"<_?\w*Soc[^()]*\.\.\.[^()]*>", "<SocketTransport...>", text)
    text = re.sub(r"\b_?\w*DatagramTransport\b", "DatagramTransport", text)
    return re.sub(r"\b_?\w*SocketTransport\b", "SocketTransport", text)


#: Debug mode of the loops the fixtures and with_loop hand out: off, unless
#: the suite is run with PYTHONASYNCIODEBUG set (the variable asyncio itself
#: reads), which is how `make test-dbg` runs it a second time with goloop on
#: its Python (debug) paths. -X dev alone does not turn it on here.
LOOP_DEBUG = bool(os.environ.get("PYTHONASYNCIODEBUG"))

# Under AddressSanitizer (make test-asan preloads libasan) freed memory sits in
# ASan's quarantine, up to 256 MiB by default, so that use-after-free is
# caught: RSS grows by design. RSS bounds are checked by the runs without
# ASan (test-py-*, test-dbg).
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def with_loop(factory, scenario):
    """Run scenario(loop) on a fresh loop from factory (debug mode LOOP_DEBUG),
    then close it."""
    lp = factory()
    lp.set_debug(LOOP_DEBUG)
    try:
        return scenario(lp)
    finally:
        if not lp.is_closed():
            lp.close()


def child_env(**extra):
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = GOLOOP_PATH + (os.pathsep + old if old else "")
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    env.update(extra)
    return env


def run_python(code, *args, timeout=HANG_TIMEOUT * 3, env=None, python_args=()):
    """Run `code` in a fresh interpreter; a hang fails the test instead of the suite."""
    cmd = [sys.executable, *python_args, "-c", textwrap.dedent(code), *args]
    try:
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env if env is not None else child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"child interpreter did not finish within {timeout} s (hang)\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        )


def check_child(proc):
    """Assert a child succeeded, showing its output otherwise."""
    assert proc.returncode == 0, (
        f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


#: Code snippet defining make_loop() for child interpreters; argv[1] is the loop name.
CHILD_PRELUDE = """
import asyncio
import sys

LOOP_NAME = sys.argv[1]

def make_loop():
    if LOOP_NAME == "goloop":
        import goloop
        return goloop.new_event_loop()
    return asyncio.SelectorEventLoop()
"""


# ---------------------------------------------------------------- networking
# Used by the test_net_* modules. Traffic stays on loopback and Unix sockets.

#: Address kinds the network tests run over.
ADDR_KINDS = ("tcp4", "tcp6", "unix")


def run_bounded(loop, aw, timeout=HANG_TIMEOUT):
    """Run aw to completion on loop; the timeout only turns a hang into a failure."""
    return loop.run_until_complete(asyncio.wait_for(aw, timeout))


def ipv6_available():
    """Whether ::1 can be bound (IPv6 enabled on loopback)."""
    import socket

    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def unix_path(tmp_path, name="s.sock"):
    """A Unix socket path under tmp_path (checked to fit in sun_path)."""
    path = str(tmp_path / name)
    assert len(os.fsencode(path)) < 100, f"tmp_path too long for a Unix socket: {path}"
    return path


def bind_address(kind, tmp_path, name="s.sock"):
    """(family, address) to bind a listening socket of the given kind to.

    Skips the test for "tcp6" when IPv6 is unavailable.
    """
    import socket

    if kind == "tcp4":
        return socket.AF_INET, ("127.0.0.1", 0)
    if kind == "tcp6":
        if not ipv6_available():
            pytest.skip("IPv6 unavailable on loopback")
        return socket.AF_INET6, ("::1", 0)
    if kind == "unix":
        return socket.AF_UNIX, unix_path(tmp_path, name)
    raise ValueError(kind)


class Recorder(asyncio.Protocol):
    """Records callbacks; futures for the interesting ones."""

    keep_open_on_eof = False

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self._changed = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data):
        assert self.made.done() and not self.eof.done() and not self.lost.done()
        self.data += data
        self._changed.set()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        self._changed.set()
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.events.append(("lost", None if exc is None else type(exc)))
        self.lost.set_result(exc)
        self._changed.set()

    def pause_writing(self):
        self.events.append("pause_writing")

    def resume_writing(self):
        self.events.append("resume_writing")

    async def received(self, n):
        """Wait until at least n bytes arrived (or the connection ended)."""
        while len(self.data) < n and not self.lost.done():
            self._changed.clear()
            await self._changed.wait()
        return bytes(self.data)
