"""Helpers shared by the network benchmark servers and runners.

Stdlib only.  Servers print one ``READY <addr>`` line once they listen
(with the real port when asked for port 0), ``UNSUPPORTED <reason>`` when
the loop lacks an API the mode needs (exit status 3), or
``UNAVAILABLE <reason>`` when the loop cannot be imported (exit status 3).
"""

import asyncio
import hashlib
import importlib
import json
import os
import platform
import queue
import resource
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE.parent / "results"

sys.path.insert(0, str(HERE.parent))
from benchutil import cpu_model, csv_choices, describe  # noqa: E402, F401 (re-exported)

LOOPS = ("asyncio", "uvloop", "rloop", "goloop")
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXIT_UNSUPPORTED = 3

# ------------------------------------------------------------- servers


def make_loop(name):
    """A fresh event loop of the named implementation (asyncio = stock)."""
    if name not in LOOPS:
        raise ValueError(f"unknown loop {name!r}")
    if name == "asyncio":
        return asyncio.new_event_loop()
    return importlib.import_module(name).new_event_loop()


def serve_on_loop(name, serve, *args):
    """A server's main: raise the fd limit, make the named loop (printing
    UNAVAILABLE when it cannot be imported) and run ``serve(loop, *args)``
    on it; the exit status."""
    raise_nofile()
    try:
        loop = make_loop(name)
    except ImportError as exc:
        say("UNAVAILABLE", describe(exc))
        return EXIT_UNSUPPORTED
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(loop, *args))
    finally:
        loop.close()


def loop_version(name):
    if name == "asyncio":
        return platform.python_version()
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get(name), "__version__", "unknown")


def raise_nofile():
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def parse_addr(text):
    """``tcp:HOST:PORT`` -> ("tcp", HOST, PORT) (``udp:`` likewise);
    ``unix:PATH`` -> ("unix", PATH)."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return ("unix", rest)
    host, _, port = rest.rpartition(":")
    if kind in ("tcp", "udp") and host and port.isdigit():
        return (kind, host, int(port))
    raise ValueError(f"bad address {text!r} (want tcp:HOST:PORT, udp:HOST:PORT or unix:PATH)")


def format_addr(sock):
    """The ``tcp:`` / ``udp:`` / ``unix:`` address a socket is bound to."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    return f"{kind}:{host}:{port}"


def install_stop(loop, event):
    """Set ``event`` on SIGTERM / SIGINT (else the default action kills us)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, event.set)
        except (NotImplementedError, RuntimeError, AttributeError):
            return False
    return True


def say(*words):
    print(*words, flush=True)


# ------------------------------------------------------- /proc sampling


def proc_cpu(pid):
    """(utime, stime) of a process in seconds, all threads, from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def system_cpu(cpus=(0, 1)):
    """Seconds the given CPUs spent in (user + system, irq + softirq, steal)."""
    names = {f"cpu{n}" for n in cpus}
    busy = irq = steal = 0
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] in names:
            user, nice, system, _idle, _iowait, hard, soft, stolen = map(int, fields[1:9])
            busy += user + nice + system
            irq += hard + soft
            steal += stolen
    return busy / CLK_TCK, irq / CLK_TCK, steal / CLK_TCK


def proc_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"no VmRSS for pid {pid}")


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# ------------------------------------------------------ child processes


def python_env():
    """Environment for Python children: the repo's python/ on PYTHONPATH."""
    env = dict(os.environ)
    paths = [str(REPO / "python"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class Child:
    """A child process whose stdout lines are read by a thread.

    stderr goes to a temporary file, read back for error messages.
    """

    def __init__(self, cmd, cpu=None, env=None):
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self.cmd = cmd
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env
        )
        self.pid = self.proc.pid  # taskset execs: same pid as the program
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout):
        """The next stdout line, None at EOF; TimeoutError after ``timeout``."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output after {timeout:g} s") from None

    def error_tail(self, lines=3):
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip().splitlines()
        status = self.proc.poll()
        return " | ".join(text[-lines:]) or ("no stderr" if status is None else f"exit {status}")

    def stop(self, timeout=3.0):
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


def wait_ready(child, timeout):
    """Read the server's first line: ("ok", addr) / ("unsupported", why) / ("failed", why)."""
    try:
        line = child.next_line(timeout)
    except TimeoutError as exc:
        return "failed", f"server not ready: {exc}"
    word, _, rest = (line or "").partition(" ")
    if word == "READY":
        return "ok", rest
    if word in ("UNSUPPORTED", "UNAVAILABLE"):
        return word.lower(), rest
    child.proc.wait(1)
    return "failed", f"server did not start: {child.error_tail()}"


def probe_loop(name):
    """Import and create a loop in a child: {available, version, path, note}."""
    cmd = [sys.executable, str(HERE / "echo_server.py"), "--probe", name]
    child = Child(cmd, env=python_env())
    try:
        line = child.next_line(60) or ""
    except TimeoutError as exc:
        line = json.dumps({"error": f"probe: {exc}"})
    child.stop()
    result = json.loads(line) if line.startswith("{") else {"error": child.error_tail()}
    ok = result.get("status") == "ok"
    return {
        "available": ok,
        "version": result.get("version"),
        "path": result.get("path"),
        "note": None if ok else result.get("error", "probe failed"),
    }


# -------------------------------------------------------------- Go tools


def build_go(package, out_dir):
    """``go build`` one of the Go commands here into out_dir; its path."""
    out = Path(out_dir) / Path(package).name
    subprocess.run(
        ["go", "build", "-o", str(out), f"./{Path(package).relative_to(REPO)}"],
        cwd=REPO,
        check=True,
    )
    return str(out)


# ------------------------------------------------------------- metadata


def _run_text(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def go_version():
    return _run_text(["go", "env", "GOVERSION"])


def _extension_info():
    """Which build of goloop's extension the servers load (path, mtime, sha256)."""
    tag = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    path = REPO / "python" / "goloop" / f"_goloop{tag}"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return {"path": str(path), "mtime": mtime, "sha256": hashlib.sha256(data).hexdigest()[:16]}


def metadata_doc(args, loop_info):
    """Run metadata; ``loop_info`` = {name: probe_loop(name)} (others ignored)."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "arch": platform.machine(),
            "cpu": cpu_model(),
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg": os.getloadavg(),
        },
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "go": go_version(),
        "packages": {
            name: info.get("version") or "n/a"
            for name, info in loop_info.items()
            if name in LOOPS and name != "asyncio"
        },
        "git_commit": _run_text(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        "git_dirty": bool(
            _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "python"])
        ),
        "goloop_extension": _extension_info(),
        "argv": sys.argv[1:],
        "args": {k: v for k, v in vars(args).items() if k not in ("json", "markdown")},
    }


def machine_line(meta):
    m = meta["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    parts = [f"Machine: {m['arch']}, {m['cpu']}, {m['nproc']} CPUs", f"Python {meta['python']}"]
    ext = meta.get("goloop_extension")
    if ext and "goloop" in meta["packages"]:
        packages += f" (extension {ext['sha256']}, built {ext['mtime']})"
    return "; ".join(p for p in (*parts, meta["go"], packages, meta["date"]) if p)


def write_file(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


def now():
    return time.perf_counter()
