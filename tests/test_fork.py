"""Fork policy: `import goloop` starts nothing; forked children of a process
that started the Go runtime refuse goloop (quickly) but can use the stock loop.

Every scenario runs in a fresh interpreter (run_python) so that a hang fails
the test instead of hanging the suite, and so that the pytest process itself
never forks.
"""

import json

from loop_support import check_child, run_python

FORK_TIMEOUT = 60
#: Python 3.12+ warns when forking a process that has threads (the Go runtime's).
NO_FORK_WARNING = ("-W", "ignore::DeprecationWarning")

#: Helpers for the child interpreters: wait for a forked pid with a deadline.
WAIT_HELPERS = """
import os, signal, time

def wait_child(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hang"
        time.sleep(0.01)
"""


def _json_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout
    return json.loads(lines[-1])


def test_import_does_not_load_extension():
    code = """
import json, sys, warnings
import goloop
state = {"import": "goloop._goloop" in sys.modules}
goloop.__version__, goloop.run, goloop.new_event_loop, goloop.install
policy = goloop.EventLoopPolicy()
state["policy"] = "goloop._goloop" in sys.modules
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    goloop.install()
state["install"] = "goloop._goloop" in sys.modules
loop = goloop.new_event_loop()
state["new_event_loop"] = "goloop._goloop" in sys.modules
loop.close()
print(json.dumps(state))
"""
    state = _json_line(check_child(run_python(code)))
    assert state == {
        "import": False,
        "policy": False,
        "install": False,
        "new_event_loop": True,
    }


def test_prefork_workers_each_run_goloop():
    code = (
        WAIT_HELPERS
        + """
import asyncio, json, sys, traceback
import goloop

async def work(i):
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, i)
    value = await fut
    squared = await loop.run_in_executor(None, pow, value, 2)
    return isinstance(loop, goloop.Loop), squared

pids = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok, squared = goloop.run(work(i + 2))
            code = 0 if ok and squared == (i + 2) ** 2 else 3
        except BaseException:
            traceback.print_exc()
            code = 2
        finally:
            os._exit(code)
    pids.append(pid)
codes = [wait_child(pid) for pid in pids]
loaded_in_parent = "goloop._goloop" in sys.modules
parent_ok = goloop.run(work(5)) == (True, 25)
print(json.dumps({"codes": codes, "loaded_in_parent": loaded_in_parent,
                  "parent_ok": parent_ok}))
"""
    )
    state = _json_line(check_child(run_python(code, timeout=FORK_TIMEOUT)))
    assert state == {"codes": [0, 0], "loaded_in_parent": False, "parent_ok": True}


CHILD_AFTER_GO = (
    WAIT_HELPERS
    + """
import asyncio, json, multiprocessing, sys, traceback
import goloop

async def answer():
    await asyncio.sleep(0.001)
    return 42

goloop.run(answer())                 # the Go runtime is now started
pre_fork_loop = goloop.new_event_loop()

def grandchild():
    assert asyncio.run(answer()) == 42
    sys.exit(0 if goloop.run(answer()) == 42 else 5)


def run_new_loop():
    loop = goloop.new_event_loop()
    try:
        assert loop.run_until_complete(answer()) == 42
    finally:
        loop.close()

def attempt(fn):
    try:
        fn()
    except BaseException as exc:
        return [type(exc).__name__, str(exc)]
    return ["ok", None]

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    res = {}
    try:
        res["new_event_loop"] = attempt(run_new_loop)
        res["run"] = attempt(lambda: goloop.run(answer()))
        res["pre_fork_run"] = attempt(
            lambda: pre_fork_loop.run_until_complete(asyncio.sleep(0)))
        res["pre_fork_add_reader"] = attempt(lambda: pre_fork_loop.add_reader(w, print))
        res["pre_fork_close"] = attempt(pre_fork_loop.close)
        res["stock"] = asyncio.run(answer())
        ctx = multiprocessing.get_context("fork")
        p = ctx.Process(target=grandchild)
        p.start()
        p.join(10)
        if p.exitcode is None:
            p.kill()
            p.join()
        res["multiprocessing"] = p.exitcode
    except BaseException:
        res["error"] = traceback.format_exc()
    os.write(w, json.dumps(res).encode())
    os._exit(0)
os.close(w)
code = wait_child(pid, 30)
data = b""
while chunk := os.read(r, 65536):
    data += chunk
res = json.loads(data or b"{}")
res["child_exit"] = code
res["parent_still_works"] = pre_fork_loop.run_until_complete(answer())
pre_fork_loop.close()
print(json.dumps(res))
"""
)


def test_forked_child_after_go_started():
    proc = run_python(
        CHILD_AFTER_GO,
        timeout=FORK_TIMEOUT,
        python_args=NO_FORK_WARNING,
    )
    res = _json_line(check_child(proc))
    assert "error" not in res, res["error"]
    assert res["child_exit"] == 0
    # Loops created in the child work (on the C fallback engine) ...
    assert res["new_event_loop"] == ["ok", None]
    assert res["run"] == ["ok", None]
    # ... while the loop inherited from the parent refuses to enter Go.
    for key in ("pre_fork_run", "pre_fork_add_reader"):
        exc_type, message = res[key]
        assert exc_type == "RuntimeError", (key, res[key])
        assert "fork" in message, (key, message)
    assert res["pre_fork_close"] == ["ok", None]
    assert res["stock"] == 42
    assert res["multiprocessing"] == 0
    assert res["parent_still_works"] == 42


def test_fork_from_running_loop_parent_continues():
    code = (
        WAIT_HELPERS
        + """
import asyncio, json
import goloop

async def main():
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.001)
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    code = await loop.run_in_executor(None, wait_child, pid)
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "timers still fire")
    return code, await fut

print(json.dumps(goloop.run(main())))
"""
    )
    proc = run_python(code, timeout=FORK_TIMEOUT, python_args=NO_FORK_WARNING)
    out = check_child(proc)
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines, out
    assert json.loads(lines[-1]) == [7, "timers still fire"]


def test_forked_child_runs_new_loops():
    """Loops made in a post-Go child run timers, fds and threadsafe calls."""
    code = (
        WAIT_HELPERS
        + """
import asyncio, json, socket, threading
import goloop

async def work():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    got = loop.create_future()
    loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(16)))
    loop.call_later(0.01, b.send, b"ping")
    data = await got
    loop.remove_reader(a)
    a.close()
    b.close()
    fut = loop.create_future()
    threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, "ts")).start()
    timers = [loop.call_later(0.001 * (i % 5), lambda: None) for i in range(500)]
    for t in timers[::2]:
        t.cancel()
    await asyncio.sleep(0.01)
    return data.decode(), await fut

goloop.run(asyncio.sleep(0))
pid = os.fork()
if pid == 0:
    ok = all(goloop.run(work()) == ("ping", "ts") for _ in range(3))
    os._exit(0 if ok else 3)
print(json.dumps({"code": wait_child(pid, 10)}))
"""
    )
    proc = run_python(code, timeout=FORK_TIMEOUT, python_args=NO_FORK_WARNING)
    assert _json_line(check_child(proc)) == {"code": 0}
