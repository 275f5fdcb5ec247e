"""Child processes started by the Go engine and reaped through a pidfd.

``loop.subprocess_exec`` / ``subprocess_shell`` (and so
``asyncio.create_subprocess_*``) on a goloop loop do not call
``subprocess.Popen`` and use no child watcher. This module turns Popen's
arguments into bytes and fds exactly as ``subprocess.Popen`` does, and
``_goloop._spawn`` (pybridge/process.c) has the Go engine start the child
with ``syscall.ForkExec`` (a vfork-style clone; goloop/process_linux.go),
which also returns a pidfd. The loop watches that pidfd: when it becomes
readable the child has exited, and ``waitid(P_PIDFD)`` on the loop thread
reaps it and hands the exit status to asyncio's own transport machinery
(``base_subprocess``: ``_process_exited``, the pipe transports, ``wait()``,
``communicate()``), one ``call_soon`` later, as stock's watchers do. No
Python thread and no SIGCHLD handler is involved.

Calls Go's ForkExec cannot make exactly as Popen does take asyncio's own
path (Popen plus the policy's child watcher): ``preexec_fn``, ``umask``,
``restore_signals=False``, ``pipesize``, ``pass_fds`` with
``close_fds=False``, ``user``/``group``/``extra_groups`` together with
``cwd`` (Go changes directory after the credentials, Popen before) or in a
process whose real and saved ids differ, ``extra_groups=[]``, a PATH with
relative entries together with ``cwd``, a child watcher other than the
default ones (set with ``set_child_watcher``), a ``subprocess.Popen``
replaced by the program (stock calls the replacement), and loops in a child forked
after the Go runtime started (no Go there). So does a spawn that fails: a
missing program found while searching PATH here, or any error the child
reports, is raised by asyncio's path, i.e. by Popen itself, with its exact
exception, errno, message and filename.
"""

import os
import subprocess
import sys
import warnings
from asyncio import events, unix_events
from asyncio.log import logger

from . import _goloop

__all__ = ("make_subprocess_transport",)

# Popen's keyword arguments after stdin/stdout/stderr/shell/bufsize, which
# asyncio's subprocess_exec/_shell pass on as they come.
_POPEN_KWARGS = frozenset(
    (
        "executable",
        "preexec_fn",
        "close_fds",
        "cwd",
        "env",
        "startupinfo",
        "creationflags",
        "restore_signals",
        "start_new_session",
        "pass_fds",
        "user",
        "group",
        "extra_groups",
        "umask",
        "pipesize",
        "process_group",
    )
)
_UNIX_SHELL = "/system/bin/sh" if hasattr(sys, "getandroidapilevel") else "/bin/sh"
_MAX_ID = 0x7FFFFFFF  # larger ids (valid up to 2**32 - 2) take asyncio's path
_STOCK_WATCHERS = tuple(
    getattr(unix_events, name)
    for name in ("ThreadedChildWatcher", "PidfdChildWatcher")
    if hasattr(unix_events, name)
)
_WAIT_FLAGS = os.WEXITED | os.WNOHANG


def _pidfd_works():
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


_PIDFD = _pidfd_works()


# Popen as asyncio's transport finds it: a program (or a test) that
# replaces subprocess.Popen gets its replacement called by stock, so by
# goloop too (asyncio's path).
_POPEN = subprocess.Popen


def _default_watcher():
    """Whether stock would reap through the policy's default watcher (or
    one of the same kinds: they wait for one pid each and work with any
    loop), so goloop may reap its children itself. A watcher the program
    installed of another kind (a mock, the SIGCHLD-based ones, which may
    waitpid(-1) and take our children's statuses) keeps stock's path."""
    policy = events.get_event_loop_policy()
    if not isinstance(policy, unix_events._UnixDefaultEventLoopPolicy):
        return False
    watcher = getattr(policy, "_watcher", None)
    return watcher is None or type(watcher) in _STOCK_WATCHERS


def _fs(value):
    """os.fsencode, or None where Popen would raise (stock then raises)."""
    try:
        b = os.fsencode(value)
    except (TypeError, ValueError):
        return None
    return None if b"\0" in b else b


def _user_id(value, lookup, attr):
    # Popen's conversion of user=/group=: a name, or an int >= 0
    if isinstance(value, str):
        try:
            return getattr(lookup(value), attr)
        except KeyError:
            return None
    if isinstance(value, int) and 0 <= value <= _MAX_ID:
        return value
    return None


def _credentials(user, group, extra_groups):
    """(uid, gid, groups) for Go, -1/None for what is not set; None when
    Go cannot make Popen's calls (setreuid/setregid of real and effective
    ids, setgroups only when given) or an argument is one Popen rejects."""
    if user is None and group is None and extra_groups is None:
        return -1, -1, None
    ruid, euid, suid = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    if not (ruid == euid == suid and rgid == egid == sgid):
        return None  # Go's setuid/setgid would leave other ids than Popen's
    uid = gid = -1
    groups = None
    if user is not None:
        import pwd

        if (uid := _user_id(user, pwd.getpwnam, "pw_uid")) is None:
            return None
    if group is not None or extra_groups is not None:
        import grp

        if group is not None and (gid := _user_id(group, grp.getgrnam, "gr_gid")) is None:
            return None
        if extra_groups is not None:
            if isinstance(extra_groups, (str, bytes)):
                return None
            try:
                names = list(extra_groups)
            except TypeError:
                return None
            if not names:
                return None
            groups = []
            for g in names:
                if (gid_ := _user_id(g, grp.getgrnam, "gr_gid")) is None:
                    return None
                groups.append(gid_)
            groups = tuple(groups)
    return uid, gid, groups


def _truth(value):
    try:
        return bool(value)
    except Exception:
        return None


def _find_program(executable, env, cwd):
    """The path Popen's child would execve: executable itself when it has a
    directory part, else the first regular executable file of that name on
    the child's PATH (the child tries each in turn and runs the first that
    execs). None when none is found (Popen then raises FileNotFoundError,
    or PermissionError, through asyncio's path) or when the search depends
    on the child's cwd."""
    if os.path.dirname(executable):
        return executable
    path = os.get_exec_path(env)
    for directory in path:
        directory = os.fsencode(directory)
        if cwd is not None and not directory.startswith(b"/"):
            return None  # relative to the child's cwd: let Popen's child look
        candidate = os.path.join(directory, executable)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return None


class _Spec:
    """Popen's arguments, converted and checked as Popen converts them."""

    __slots__ = (
        "args",
        "audit_executable",
        "path",
        "argv",
        "env",
        "env_list",
        "cwd",
        "close_fds",
        "pass_fds",
        "setsid",
        "pgid",
        "uid",
        "gid",
        "groups",
    )


_DEFAULT_OPTIONS = (True, (), False, -1, (-1, -1, None))


def _options(kwargs):
    """(close_fds, pass_fds, setsid, pgid, (uid, gid, groups)) from Popen's
    keyword arguments, or None for asyncio's own path."""
    if not kwargs.keys() <= _POPEN_KWARGS:
        return None  # Popen raises TypeError
    get = kwargs.get
    if (
        get("preexec_fn") is not None
        or get("startupinfo") is not None
        or get("creationflags", 0) != 0
    ):
        return None
    umask = get("umask", -1)
    if type(umask) is not int or umask >= 0:
        return None
    pipesize = get("pipesize", -1)
    if pipesize is not None and (type(pipesize) is not int or pipesize > 0):
        return None
    restore = _truth(get("restore_signals", True))
    close_fds = _truth(get("close_fds", True))
    setsid = _truth(get("start_new_session", False))
    if not restore or close_fds is None or setsid is None:
        return None
    pass_fds = get("pass_fds", ())
    try:
        pass_fds = tuple(sorted(set(pass_fds)))
    except TypeError:
        return None
    if pass_fds:
        if not close_fds:
            return None  # Popen warns, then closes anyway
        if not all(type(fd) is int and 0 <= fd <= 0x7FFFFFFF for fd in pass_fds):
            return None
    pgid = get("process_group")
    if pgid is None:
        pgid = -1
    elif type(pgid) is not int or not -0x80000000 <= pgid <= 0x7FFFFFFF:
        return None
    cred = _credentials(get("user"), get("group"), get("extra_groups"))
    if cred is None or (get("cwd") is not None and cred != (-1, -1, None)):
        return None
    return close_fds, pass_fds, setsid, pgid, cred


def _prepare(args, shell, kwargs):
    """A _Spec for the Go path, or None for asyncio's own path."""
    if kwargs:
        options = _options(kwargs)
        if options is None:
            return None
        get = kwargs.get
        executable, env, cwd = get("executable"), get("env"), get("cwd")
    else:  # the common call: Popen's defaults
        options = _DEFAULT_OPTIONS
        executable = env = cwd = None
    # Popen's argument list
    if isinstance(args, (str, bytes)):
        args = [args]
    elif isinstance(args, os.PathLike):
        if shell:
            return None  # Popen raises TypeError
        args = [args]
    else:
        try:
            args = list(args)
        except TypeError:
            return None
    if shell:
        args = [_UNIX_SHELL, "-c", *args]
        if executable:
            args[0] = executable
    if not args:
        return None
    if executable is None:
        executable = args[0]
    argv = tuple(_fs(a) for a in args)
    b_executable = _fs(executable)
    if b_executable is None or None in argv:
        return None
    env_list = None
    if env is not None:
        try:
            env_list = []
            for k, v in env.items():
                k = os.fsencode(k)
                if b"=" in k:
                    return None
                env_list.append(k + b"=" + os.fsencode(v))
        except Exception:
            return None
        if any(b"\0" in e for e in env_list):
            return None
    b_cwd = None
    if cwd is not None and (b_cwd := _fs(cwd)) is None:
        return None
    try:
        path = _find_program(b_executable, env, b_cwd)
    except Exception:
        return None
    if path is None:
        return None
    spec = _Spec()
    spec.args = args
    spec.audit_executable = executable
    spec.path = path
    spec.argv = argv
    spec.env = env
    spec.env_list = env_list
    spec.cwd = cwd
    spec.close_fds, spec.pass_fds, spec.setsid, spec.pgid, cred = options
    spec.uid, spec.gid, spec.groups = cred
    return spec


def _fd_of(value):
    """An fd as Popen takes it from an int or a file object; None where
    Popen would do something else (raise, or use a negative number)."""
    if type(value) is int:
        return value if value >= 0 else None
    fileno = getattr(value, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except Exception:
        return None
    return fd if type(fd) is int and fd >= 0 else None


class Process(subprocess.Popen):
    """The ``subprocess.Popen`` asyncio's transport holds (its
    ``get_extra_info('subprocess')``), for a child goloop started and
    reaps. Its status comes from the pidfd, never from waitpid(pid): the
    loop's reader is the one that reaps, and ``poll()`` only peeks
    (WNOWAIT). Signals go through the pidfd (pidfd_send_signal), so they
    can never reach another process that reused the pid."""

    def __init__(self, args, pid, pidfd, stdin, stdout, stderr):
        # What subprocess.Popen.__init__ sets, for a child already running.
        self._waitpid_lock = _NoLock
        self._input = None
        self._communication_started = False
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.pid = pid
        self.returncode = None
        self.encoding = None
        self.errors = None
        self.pipesize = -1
        self.text_mode = False
        self._sigint_wait_secs = 0.25
        self._closed_child_pipe_fds = True
        self._child_created = True
        self._pidfd = pidfd
        self._status = None  # the exit status once reaped

    def _set_exited(self, returncode):
        # the child is reaped: its pidfd is of no more use
        self._status = returncode
        fd, self._pidfd = self._pidfd, -1
        if fd >= 0:
            os.close(fd)

    def _peek(self):
        """The exit status without reaping, or None while running."""
        if self._status is not None:
            return self._status
        if self._pidfd < 0:
            return None
        try:
            info = os.waitid(os.P_PIDFD, self._pidfd, _WAIT_FLAGS | os.WNOWAIT)
        except ChildProcessError:
            return 0  # reaped by someone else: Popen's ECHILD answer
        except InterruptedError:
            return None
        return None if info is None else _returncode(info)

    def _internal_poll(self, _deadstate=None, *args, **kwargs):
        if self.returncode is None:
            status = self._peek()
            if status is not None:
                self.returncode = status
        return self.returncode

    def _wait(self, timeout):
        # Popen.wait() (blocking; asyncio's Process.wait() never calls it)
        import select

        if self.returncode is not None:
            return self.returncode
        if self._pidfd >= 0 and self._status is None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            ms = None if timeout is None else max(0, int(timeout * 1000))
            if not poller.poll(ms) and timeout is not None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        self._internal_poll()
        return self.returncode

    def send_signal(self, sig):
        """Signal the child unless it is known to have exited."""
        self.poll()
        if self.returncode is not None or self._status is not None or self._pidfd < 0:
            # as Popen: never signal a child already reaped (nor one whose
            # pidfd went with this object's finalization: its pid may be
            # reused by now)
            return
        try:
            import signal

            signal.pidfd_send_signal(self._pidfd, sig)
        except ProcessLookupError:
            pass

    def __del__(self, _warn=warnings.warn):
        # Popen's warning; but never Popen's _active list: the loop, or Go
        # once the loop is closed, reaps the child, not waitpid(pid).
        if self.returncode is None and self._status is None:
            _warn(f"subprocess {self.pid} is still running", ResourceWarning, source=self)
        fd, self._pidfd = self._pidfd, -1
        if fd >= 0:
            os.close(fd)


class _NoLockType:
    """Popen's _waitpid_lock: unused here (nothing calls waitpid)."""

    def acquire(self, blocking=True, timeout=-1):
        return True

    def release(self):
        pass

    __enter__ = acquire

    def __exit__(self, *exc):
        pass


_NoLock = _NoLockType()


def _returncode(info):
    # waitstatus_to_exitcode's answer, from waitid's siginfo
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status  # CLD_KILLED, CLD_DUMPED


class SubprocessTransport(unix_events._UnixSubprocessTransport):
    """asyncio's subprocess transport around a child goloop started."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, _goloop_proc=None, **kwargs):
        self._proc = _goloop_proc

    # 3.13's send_signal is os.kill(pid); 3.11's and 3.12's are Popen's.
    # Both go through the pidfd here (Process.send_signal).
    def send_signal(self, signal):
        self._check_proc()
        self._proc.send_signal(signal)

    def terminate(self):
        self._check_proc()
        self._proc.terminate()

    def kill(self):
        self._check_proc()
        self._proc.kill()


def _children(loop):
    children = getattr(loop, "_goloop_children", None)
    if children is None:
        children = loop._goloop_children = {}
    return children


def _pidfd_ready(loop, transport, proc):
    """The pidfd became readable: the child exited. Reap it here, on the
    loop thread, and report the exit as stock's watchers do (one call_soon
    later: 3.12+'s call_soon_threadsafe, 3.11's from the watcher thread)."""
    fd = proc._pidfd
    try:
        info = os.waitid(os.P_PIDFD, fd, _WAIT_FLAGS)
    except InterruptedError:
        return
    except ChildProcessError:
        # someone else reaped it (os.waitpid(-1), SIGCHLD ignored): what
        # stock's watchers report then
        logger.warning(
            "child process pid %d exit status already read:  will report returncode 255",
            proc.pid,
        )
        returncode = 255
    else:
        if info is None:
            return  # not exited after all
        returncode = _returncode(info)
        if loop.get_debug():
            logger.debug("process %s exited with returncode %s", proc.pid, returncode)
    loop._remove_reader(fd)
    _children(loop).pop(fd, None)
    proc._set_exited(returncode)
    loop.call_soon(transport._process_exited, returncode)


def orphan_children(loop):
    """loop was closed with children running: the Go engine reaps them
    when they exit (a dup of each pidfd; the Process keeps its own for
    poll() and signals), so none is left a zombie."""
    children = getattr(loop, "_goloop_children", None)
    if not children:
        return
    loop._goloop_children = {}
    if _goloop.forked():
        return
    for proc in children.values():
        if proc._pidfd >= 0:
            _goloop._reap_later(os.dup(proc._pidfd))


def _spawn(spec, stdin, stdout, stderr):
    """Start the child in Go. (Process, the fds to close on failure) or
    None when Go cannot (asyncio's path then makes the call)."""
    created = []  # fds made here: all closed on failure, child ends after
    devnull = -1

    def get_devnull():
        nonlocal devnull
        if devnull < 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            created.append(devnull)
        return devnull

    parent_ends = [None, None, None]
    child = [0, 1, 2]
    try:
        if stdin is not None:
            if stdin == subprocess.PIPE:
                r, w = os.pipe()
                created += (r, w)
                child[0], parent_ends[0] = r, w
            elif stdin == subprocess.DEVNULL:
                child[0] = get_devnull()
            elif (fd := _fd_of(stdin)) is not None:
                child[0] = fd
            else:
                return None
        c2pwrite = -1
        if stdout is not None:
            if stdout == subprocess.PIPE:
                r, w = os.pipe()
                created += (r, w)
                child[1], parent_ends[1] = w, r
            elif stdout == subprocess.DEVNULL:
                child[1] = get_devnull()
            elif (fd := _fd_of(stdout)) is not None:
                child[1] = fd
            else:
                return None
            c2pwrite = child[1]
        if stderr is not None:
            if stderr == subprocess.PIPE:
                r, w = os.pipe()
                created += (r, w)
                child[2], parent_ends[2] = w, r
            elif stderr == subprocess.STDOUT:
                if c2pwrite < 0:
                    return None  # Popen uses sys.__stdout__ then
                child[2] = c2pwrite
            elif stderr == subprocess.DEVNULL:
                child[2] = get_devnull()
            elif (fd := _fd_of(stderr)) is not None:
                child[2] = fd
            else:
                return None
        sys.audit("subprocess.Popen", spec.audit_executable, spec.args, spec.cwd, spec.env)
        try:
            started = _goloop._spawn(
                spec.path,
                spec.argv,
                spec.env_list,
                None if spec.cwd is None else os.fsencode(spec.cwd),
                tuple(child),
                spec.close_fds,
                spec.pass_fds,
                spec.setsid,
                spec.pgid,
                spec.uid,
                spec.gid,
                spec.groups,
            )
        except OSError:
            return None  # Popen makes the call again and raises as stock
        if started is None:
            return None
    except BaseException:
        for fd in created:
            os.close(fd)
        raise
    if started is None:
        for fd in created:
            os.close(fd)
        return None
    for fd in created:
        if fd not in parent_ends:
            os.close(fd)  # the child's ends and /dev/null
    pid, pidfd = started
    files = (
        None if parent_ends[0] is None else open(parent_ends[0], "wb", 0),
        None if parent_ends[1] is None else open(parent_ends[1], "rb", 0),
        None if parent_ends[2] is None else open(parent_ends[2], "rb", 0),
    )
    return Process(spec.args, pid, pidfd, *files)


async def make_subprocess_transport(
    loop, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, kwargs
):
    """The Go path of loop._make_subprocess_transport; None when the call
    must take asyncio's own path (see the module docstring)."""
    if (
        not _PIDFD
        or unix_events.subprocess.Popen is not _POPEN
        or _goloop.forked()
        or not _default_watcher()
    ):
        return None
    spec = _prepare(args, shell, kwargs)
    if spec is None:
        return None
    proc = _spawn(spec, stdin, stdout, stderr)
    if proc is None:
        return None
    waiter = loop.create_future()
    transp = SubprocessTransport(
        loop,
        protocol,
        args,
        shell,
        stdin,
        stdout,
        stderr,
        bufsize,
        waiter=waiter,
        extra=extra,
        _goloop_proc=proc,
    )
    _children(loop)[proc._pidfd] = proc
    loop._add_reader(proc._pidfd, _pidfd_ready, loop, transp, proc)
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transp.close()
        await transp._wait()
        raise
    return transp
