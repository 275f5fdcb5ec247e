"""Child processes: loop.subprocess_exec / subprocess_shell and
asyncio.create_subprocess_*, with the stock loop as the oracle.

On goloop the child is started by the Go engine and reaped through a pidfd
the loop watches (goloop.process); calls Go cannot make exactly as Popen
take asyncio's own path. Each scenario runs on the loop under test and on
the stock loop, and the outcomes (output, return codes, the child's view of
its fds, directory, environment, session, ids and signals, exceptions with
errno, message and filename) must be equal.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import warnings

import pytest
from loop_support import HANG_TIMEOUT, check_child, run_python, stock_factory

import goloop

PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL
STDOUT = asyncio.subprocess.STDOUT

#: A shell snippet printing what a child sees of its own setup. $$ is the
#: shell itself (a dash or bash started as the child, no subshell).
PROBE = (
    'echo "cwd=$(pwd)"; echo "foo=${FOO-unset}"; '
    "grep -E '^(SigIgn|SigBlk|Uid|Gid|Groups|Umask):' /proc/$$/status; "
    "set -- $(cut -d' ' -f1,5,6 /proc/$$/stat); "
    'echo "pid=$1"; echo "pgrp=$2"; echo "sid=$3"; '
    'echo "fds=$(ls /proc/$$/fd | sort -n | tr "\\n" " ")"'
)


def run(loop, coro, timeout=HANG_TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def on_both(loop, scenario):
    """scenario(loop) -> coroutine; its outcome on loop and on a stock loop
    (a value, or the exception's type, args, errno, strerror, filename)."""
    results = []
    for lp in (loop, stock_factory()):
        try:
            results.append(("ok", run(lp, scenario(lp))))
        except Exception as exc:
            results.append(
                (
                    "raised",
                    type(exc),
                    exc.args,
                    getattr(exc, "errno", None),
                    getattr(exc, "strerror", None),
                    getattr(exc, "filename", None),
                )
            )
        finally:
            if lp is not loop:
                lp.close()
    return results


def probe_state(text):
    """PROBE's output as a dict, with the child's own pid and the parent's
    process group and session replaced by names (they differ per run)."""
    state = {}
    for line in text.splitlines():
        key, _, value = line.partition("=") if "=" in line.split(":")[0] else line.partition(":")
        state[key.strip()] = value.strip()
    pid, pgrp, sid = state.pop("pid"), state.pop("pgrp"), state.pop("sid")
    names = {pid: "child", str(os.getpgrp()): "parent's", str(os.getsid(0)): "parent's"}
    state["pgrp"] = names.get(pgrp, pgrp)
    state["sid"] = names.get(sid, sid)
    return state


async def probe(loop, shell_cmd=PROBE, **kwargs):
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", shell_cmd, stdout=PIPE, stderr=PIPE, **kwargs
    )
    out, err = await proc.communicate()
    return proc.returncode, probe_state(out.decode()), err


def go_path(loop, proc):
    """Whether the child was started by goloop's Go path."""
    from goloop import process

    return isinstance(proc._transport, process.SubprocessTransport)


class ExitProtocol(asyncio.SubprocessProtocol):
    """Resolves .exited with the return code in process_exited()."""

    def __init__(self):
        self.exited = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def process_exited(self):
        self.exited.set_result(self.transport.get_returncode())


# ---------------------------------------------------------------- basics


def test_exec_output_and_exit_codes(loop, loop_name):
    async def scenario(lp):
        out = []
        for code in (0, 3, 255):
            proc = await asyncio.create_subprocess_exec(
                sys.executable if code == 255 else "/bin/sh",
                *(["-c", "import sys; sys.exit(255)"] if code == 255 else ["-c", f"exit {code}"]),
            )
            out.append(await proc.wait())
        proc = await asyncio.create_subprocess_exec("echo", "a b", "c", stdout=PIPE)
        out.append(await proc.communicate())
        out.append(proc.returncode)
        return out

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", [0, 3, 255, (b"a b c\n", None), 0])


def test_go_path_taken(loop, loop_name):
    async def scenario():
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        return go_path(loop, proc)

    assert run(loop, scenario()) is (loop_name == "goloop")


@pytest.mark.parametrize(
    "cmd",
    [
        "echo 'single quoted $HOME' \"double $((1+2))\" back\\ slash",
        b"printf '%s|' a 'b c' \"d\"; echo",
        "echo $0; exit 7",
    ],
)
def test_shell_quoting(loop, cmd):
    async def scenario(lp):
        proc = await asyncio.create_subprocess_shell(cmd, stdout=PIPE)
        return await proc.communicate(), proc.returncode

    mine, stock = on_both(loop, scenario)
    assert mine == stock


def test_shell_executable(loop):
    async def scenario(lp):
        proc = await asyncio.create_subprocess_shell(
            "echo $0 $BASH_VERSION | cut -c1-4", stdout=PIPE, executable="/bin/bash"
        )
        return await proc.communicate()

    mine, stock = on_both(loop, scenario)
    assert mine == stock


def test_transport_api(loop, loop_name):
    async def scenario(lp):
        transport, protocol = await lp.subprocess_exec(
            ExitProtocol, "cat", stdin=PIPE, stdout=PIPE, stderr=DEVNULL
        )
        popen = transport.get_extra_info("subprocess")
        facts = [
            transport.get_pid() == popen.pid > 0,
            transport.get_returncode(),
            isinstance(popen, subprocess.Popen),
            [transport.get_pipe_transport(fd) is not None for fd in (0, 1, 2)],
            popen.poll(),
        ]
        transport.get_pipe_transport(0).close()  # cat sees EOF and exits
        facts.append(await protocol.exited)
        facts.append(popen.returncode)
        transport.close()
        return facts

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", [True, None, True, [True, True, False], None, 0, 0])


def test_close_kills_running_child(loop):
    async def scenario(lp):
        transport, protocol = await lp.subprocess_exec(ExitProtocol, "sleep", "30")
        transport.close()
        return await protocol.exited

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", -signal.SIGKILL)


# ---------------------------------------------------------------- stdio


@pytest.mark.parametrize("case", ["pipes", "devnull", "stderr_to_stdout", "files", "fds"])
def test_stdio(loop, tmp_path, case):
    script = "read line; echo out:$line; echo err:$line >&2"

    async def scenario(lp):
        files = []
        if case == "pipes":
            kw = dict(stdin=PIPE, stdout=PIPE, stderr=PIPE)
        elif case == "devnull":
            kw = dict(stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        elif case == "stderr_to_stdout":
            kw = dict(stdin=PIPE, stdout=PIPE, stderr=STDOUT)
        else:
            src = tmp_path / "in.txt"
            src.write_bytes(b"from-file\n")
            fin = open(src, "rb")
            fout = open(tmp_path / f"out-{id(lp)}.txt", "wb")
            ferr = open(tmp_path / f"err-{id(lp)}.txt", "wb")
            files = [fin, fout, ferr]
            if case == "files":
                kw = dict(stdin=fin, stdout=fout, stderr=ferr)
            else:
                kw = dict(stdin=fin.fileno(), stdout=fout.fileno(), stderr=ferr.fileno())
        try:
            proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", script, **kw)
            data = b"from-pipe\n" if kw["stdin"] == PIPE else None
            out = await proc.communicate(data)
        finally:
            for f in files:
                f.close()
        if files:
            out = (
                (tmp_path / f"out-{id(lp)}.txt").read_bytes(),
                (tmp_path / f"err-{id(lp)}.txt").read_bytes(),
            )
        return out, proc.returncode

    mine, stock = on_both(loop, scenario)
    assert mine == stock
    assert mine[0] == "ok"


def test_huge_output_and_input(loop):
    size = 16 * 1024 * 1024

    async def scenario(lp):
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, _ = await proc.communicate(b"x" * size)
        return len(out), out.count(b"x"), proc.returncode

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", (size, size, 0))


def test_pipes_closed_early(loop):
    # the child closes its stdout at once and exits later; a second child
    # exits without reading a large stdin (BrokenPipeError is ignored by
    # communicate, as stock does)
    async def scenario(lp):
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", "exec 1>&-; sleep 0.1; exit 4", stdout=PIPE
        )
        first = await proc.stdout.read(), await proc.wait()
        proc = await asyncio.create_subprocess_exec("true", stdin=PIPE, stdout=PIPE)
        second = await proc.communicate(b"y" * (4 * 1024 * 1024)), proc.returncode
        return first, second

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", ((b"", 4), ((b"", None), 0)))


def test_read_stdout_after_exit(loop):
    async def scenario(lp):
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", "head -c 20000 /dev/zero", stdout=PIPE
        )
        rc = await proc.wait()
        return rc, len(await proc.stdout.read())

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", (0, 20000))


# ---------------------------------------------------------------- Popen args


def test_cwd_and_env(loop, tmp_path):
    async def scenario(lp):
        out = []
        for cwd in (str(tmp_path), os.fsencode(tmp_path), tmp_path):
            rc, state, _ = await probe(lp, cwd=cwd)
            out.append(state["cwd"])
        rc, state, _ = await probe(lp, env={"FOO": "bar", "PATH": os.environ["PATH"]})
        out.append(state["foo"])
        os.environ["FOO"] = "from-os.environ"  # putenv: env=None sees it
        try:
            rc, state, _ = await probe(lp)
        finally:
            del os.environ["FOO"]
        out.append(state["foo"])
        rc, state, _ = await probe(lp)
        out.append(state["foo"])
        return out

    mine, stock = on_both(loop, scenario)
    assert mine == stock
    assert mine[1][3:] == ["bar", "from-os.environ", "unset"]


def test_program_found_on_env_path(loop, tmp_path):
    prog = tmp_path / "myprog"
    prog.write_text("#!/bin/sh\necho found $0\n")
    prog.chmod(0o755)
    notexec = tmp_path / "noexec" / "myprog"
    notexec.parent.mkdir()
    notexec.write_text("#!/bin/sh\necho wrong\n")

    async def scenario(lp):
        env = {"PATH": f"{notexec.parent}:/nonexistent:{tmp_path}"}
        proc = await asyncio.create_subprocess_exec("myprog", stdout=PIPE, env=env)
        return await proc.communicate()

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", (f"found {prog}\n".encode(), None))


def _inheritable_pipe():
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    return r, w


@pytest.mark.parametrize(
    "kwargs", [{}, {"close_fds": False}, {"pass_fds": "one"}, {"pass_fds": "both"}]
)
def test_close_fds_and_pass_fds(loop, kwargs):
    async def scenario(lp):
        r, w = _inheritable_pipe()
        cloexec_r, cloexec_w = os.pipe()
        try:
            kw = dict(kwargs)
            if kw.get("pass_fds") == "one":
                kw["pass_fds"] = [w]
            elif kw.get("pass_fds") == "both":
                kw["pass_fds"] = (w, cloexec_w)
            rc, state, _ = await probe(lp, **kw)
            seen = state["fds"].split()
            return rc, [str(fd) in seen for fd in (r, w, cloexec_r, cloexec_w)]
        finally:
            for fd in (r, w, cloexec_r, cloexec_w):
                os.close(fd)

    mine, stock = on_both(loop, scenario)
    assert mine == stock


def test_pass_fds_bad_fd(loop):
    async def scenario(lp):
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        proc = await asyncio.create_subprocess_exec("true", pass_fds=[w])
        return await proc.wait()

    mine, stock = on_both(loop, scenario)
    assert mine == stock


@pytest.mark.parametrize(
    "kwargs",
    [{"start_new_session": True}, {"process_group": 0}, {"start_new_session": False}, {}],
)
def test_session_and_process_group(loop, kwargs):
    if "process_group" in kwargs and sys.version_info < (3, 11):
        pytest.skip("process_group is new in 3.11")

    async def scenario(lp):
        rc, state, _ = await probe(lp, **kwargs)
        return rc, state["pgrp"], state["sid"]

    mine, stock = on_both(loop, scenario)
    assert mine == stock


@pytest.mark.parametrize("restore", [True, False])
def test_restore_signals(loop, restore):
    async def scenario(lp):
        rc, state, _ = await probe(lp, restore_signals=restore)
        # The signals restore_signals is about. (Not the rest of the masks:
        # stock's vfork children sometimes start with every signal blocked
        # on 3.11, or glibc's internal signals 32 and 33 ignored on 3.13,
        # whatever the loop.)
        ignored = int(state["SigIgn"], 16)
        return rc, [bool(ignored >> (sig - 1) & 1) for sig in (signal.SIGPIPE, signal.SIGXFSZ)]

    mine, stock = on_both(loop, scenario)
    assert mine == stock


def test_umask_and_preexec_fn_take_asyncios_path(loop, loop_name):
    def pre():
        os.environ.get("X")  # runs in the child

    async def scenario(lp):
        rc, state, _ = await probe(lp, umask=0o027)
        proc = await asyncio.create_subprocess_exec("true", preexec_fn=pre)
        return rc, state["Umask"], await proc.wait(), go_path(lp, proc)

    mine, stock = on_both(loop, scenario)
    assert mine == stock == ("ok", (0, "0027", 0, False))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user and groups")
@pytest.mark.parametrize(
    "kwargs",
    [
        {"user": "nobody"},
        {"user": 65534, "group": 65534},
        {"group": "nogroup"},
        {"user": "nobody", "group": "nogroup", "extra_groups": ["nogroup", 0]},
        {"extra_groups": [1, 2]},
        {"user": "no-such-user-here"},
        {"user": -1},
        {"extra_groups": []},
        {"user": "nobody", "cwd": "/"},
    ],
)
def test_user_and_groups(loop, kwargs):
    async def scenario(lp):
        rc, state, _ = await probe(lp, **kwargs)
        return rc, state["Uid"], state["Gid"], state["Groups"]

    mine, stock = on_both(loop, scenario)
    assert mine == stock


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "what", ["missing", "missing_path", "bad_cwd", "cwd_file", "noexec", "enoexec", "directory"]
)
def test_spawn_errors(loop, tmp_path, what):
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF\x00garbage")
    garbage.chmod(0o755)

    async def scenario(lp):
        kw = {}
        if what == "missing":
            args = ["no-such-program-here"]
        elif what == "missing_path":
            args = [str(tmp_path / "nope")]
        elif what == "bad_cwd":
            args, kw = ["true"], {"cwd": str(tmp_path / "nowhere")}
        elif what == "cwd_file":
            args, kw = ["true"], {"cwd": plain}
        elif what == "noexec":
            args = [str(plain)]
        elif what == "enoexec":
            args = [str(garbage)]
        else:
            args = [str(tmp_path)]
        proc = await asyncio.create_subprocess_exec(*args, **kw)
        return await proc.wait()

    mine, stock = on_both(loop, scenario)
    assert mine == stock
    assert mine[0] == "raised"


def test_bad_arguments(loop):
    async def scenario(lp):
        out = []
        for kw in (
            {"args": ["true", 1]},
            {"args": ["tr\0ue"]},
            {"args": ["true"], "env": {"A=B": "1"}},
            {"args": ["true"], "nonsense": 1},
            {"args": ["true"], "pass_fds": [-1]},
            {"args": ["true"], "startupinfo": 1},
        ):
            args = kw.pop("args")
            try:
                proc = await asyncio.create_subprocess_exec(*args, **kw)
                out.append(await proc.wait())
            except Exception as exc:
                out.append((type(exc), str(exc)))
        return out

    mine, stock = on_both(loop, scenario)
    assert mine == stock


# ---------------------------------------------------------------- signals


def test_signals(loop):
    async def scenario(lp):
        out = []
        for method in ("terminate", "kill", "send_signal"):
            proc = await asyncio.create_subprocess_exec("sleep", "30")
            if method == "send_signal":
                proc.send_signal(signal.SIGUSR1)
            else:
                getattr(proc, method)()
            out.append(await proc.wait())
        # (without an LD_PRELOAD'ed sanitizer that would catch the SIGSEGV)
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "kill -SEGV $$", env=env)
        out.append(await proc.wait())
        return out

    mine, stock = on_both(loop, scenario)
    assert (
        mine
        == stock
        == (
            "ok",
            [-signal.SIGTERM, -signal.SIGKILL, -signal.SIGUSR1, -signal.SIGSEGV],
        )
    )


def test_signal_after_transport_closed(loop):
    async def scenario(lp):
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        proc._transport.close()
        try:
            proc.kill()
        except ProcessLookupError:
            return "ProcessLookupError"
        return "no error"

    mine, stock = on_both(loop, scenario)
    assert mine == stock


# ---------------------------------------------------------------- lifetime


def _zombies():
    """Our children that are zombies (State Z in /proc/<pid>/stat)."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(name))
    return found


def _wait_gone(pid, timeout=HANG_TIMEOUT):
    """Wait until pid is no more (reaped); False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


def _wait_zombie(pid, timeout=HANG_TIMEOUT):
    """Wait until pid is one of our zombies; False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid in _zombies():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_child_outlives_loop(loop_factory, loop_name):
    lp = loop_factory()
    r, w = os.pipe()

    async def start():
        # the child exits when w is closed, after the loop is gone
        return await asyncio.create_subprocess_exec("cat", stdin=r, stdout=DEVNULL)

    proc = run(lp, start())
    os.close(r)
    pid = proc.pid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lp.close()
        os.close(w)
        if loop_name == "asyncio" and sys.version_info >= (3, 12):
            # stock's pidfd watcher (3.12+) dropped the child with its loop:
            # it stays a zombie until someone reaps it; goloop's Go engine
            # does (the README lists the difference)
            assert _wait_zombie(pid)
            os.waitpid(pid, 0)
        assert _wait_gone(pid), f"child {pid} not reaped after its loop closed"
        del proc
    assert pid not in _zombies()


def test_1000_concurrent_children(loop, loop_name):
    # the stock loop (the oracle for the return codes) with fewer: a spawn
    # costs it a thread on 3.11 and milliseconds of wall time here
    n = 1000 if loop_name == "goloop" else 100
    task_count = len(os.listdir("/proc/self/task"))
    seen = {}

    async def scenario():
        r, w = os.pipe()
        try:
            # all block on one pipe: every child is in flight at once
            procs = []
            for _ in range(n):
                procs.append(
                    await asyncio.create_subprocess_exec("head", "-c1", stdin=r, stdout=DEVNULL)
                )
        finally:
            os.close(r)
        seen["threads"] = threading.active_count()
        seen["tasks"] = len(os.listdir("/proc/self/task"))
        seen["alive"] = sum(proc.returncode is None for proc in procs)
        os.write(w, b"x" * n)
        os.close(w)
        return await asyncio.gather(*(proc.wait() for proc in procs))

    codes = run(loop, scenario(), timeout=HANG_TIMEOUT * 12)
    assert codes == [0] * n
    assert seen["alive"] > n // 2  # most were in flight together
    assert _zombies() == []
    if loop_name == "goloop":
        # no Python thread per child, no watcher thread; Go's threads are
        # few and do not grow with the children
        assert seen["threads"] == 1
        assert seen["tasks"] <= task_count + 4


def test_custom_child_watcher_takes_asyncios_path(loop, loop_name):
    # a watcher the program installs that is not one of the defaults (a
    # SIGCHLD-based one) is used, as stock uses it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.SafeChildWatcher()
        asyncio.set_child_watcher(watcher)
        watcher.attach_loop(loop)

    async def scenario():
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 5")
        return await proc.wait(), go_path(loop, proc)

    try:
        assert run(loop, scenario()) == (5, False)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher.close()
            asyncio.set_child_watcher(None)


def test_after_fork_uses_asyncios_path():
    code = """
import asyncio, json, os, sys, warnings
import goloop

async def spawn():
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "echo $0; exit 6", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode().strip(), proc.returncode, type(proc._transport).__name__

# Go runs in this process, and spawned through Go before the fork
before = goloop.run(spawn())
pid = os.fork()
if pid == 0:
    try:
        after = goloop.run(spawn())
        stock = asyncio.run(spawn())
        print(json.dumps({"before": before, "after": after, "stock": stock,
                          "forked": goloop._goloop.forked()}))
        sys.stdout.flush()
    finally:
        os._exit(0)
os.waitpid(pid, 0)
"""
    out = check_child(run_python(code, python_args=("-W", "ignore::DeprecationWarning")))
    state = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert state["before"] == ["/bin/sh", 6, "SubprocessTransport"]
    assert state["forked"] is True
    assert state["after"] == ["/bin/sh", 6, "_UnixSubprocessTransport"]
    assert state["stock"] == ["/bin/sh", 6, "_UnixSubprocessTransport"]


def test_goloop_reaps_without_python_thread():
    # in a fresh interpreter: no thread ever started for children
    code = """
import asyncio, threading, goloop

async def main():
    procs = [await asyncio.create_subprocess_exec("sleep", "0.2") for _ in range(20)]
    during = threading.active_count()
    codes = await asyncio.gather(*(p.wait() for p in procs))
    return during, codes

during, codes = goloop.run(main())
print(during, set(codes), threading.active_count())
"""
    assert check_child(run_python(code)).split() == ["1", "{0}", "1"]
    assert goloop.Loop  # the extension loads in this process too
