"""python -m goloop --version / info, run against the installed extension."""

import importlib.metadata
import json
import platform
import re
import subprocess
import sys

from loop_support import check_child, child_env, run_python

import goloop

#: Python 3.12+ warns when forking a process that has threads (the Go runtime's).
NO_FORK_WARNING = ("-W", "ignore::DeprecationWarning")


def goloop_main(*args):
    return subprocess.run(
        [sys.executable, "-m", "goloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )


def test_version():
    proc = goloop_main("--version")
    assert check_child(proc) == f"goloop {goloop.__version__}\n"


def test_metadata_version_is_goloop_version():
    # pyproject.toml reads the version from goloop.__version__ (one source)
    assert importlib.metadata.version("goloop") == goloop.__version__


def test_info():
    out = check_child(goloop_main("info"))
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {name: value.strip() for name, value in fields.items()}
    assert fields["goloop"] == goloop.__version__
    assert re.fullmatch(r"go1\.\d+(\.\d+)?\S*", fields["go"]), fields["go"]
    assert fields["python"].startswith(f"CPython {platform.python_version()} ")
    assert fields["engine"] == "Go"
    assert fields["extension"].endswith(".so")


def test_no_command_is_an_error():
    proc = goloop_main()
    assert proc.returncode == 2
    assert "info" in proc.stderr


def test_info_in_forked_child():
    # A child forked after the Go runtime started runs loops on the C engine,
    # and info() says so.
    code = """
    import json, os
    from goloop.__main__ import info
    parent = dict(info())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(dict(info())).encode())
        os._exit(0)
    os.close(w)
    child = json.loads(os.read(r, 65536))
    os.waitpid(pid, 0)
    print(json.dumps({"parent": parent, "child": child}))
    """
    res = json.loads(check_child(run_python(code, python_args=NO_FORK_WARNING)))
    assert res["parent"]["engine"] == "Go"
    assert res["child"]["engine"].startswith("C (fork-safe")
    assert res["child"]["go"] == res["parent"]["go"]
