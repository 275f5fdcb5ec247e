"""pytest-asyncio with each loop as the test loop: a small inner pytest run
(async tests and fixtures, a module-scoped loop shared by two tests, a
server fixture, an xfail) whose outcome must be the same on every loop."""

import subprocess
import sys
import textwrap

import pytest
from conftest import HANG_TIMEOUT, LOOP_TYPE

pytest.importorskip("pytest_asyncio")

CONFTEST = """
import asyncio
import os

LOOP = os.environ["INNER_LOOP"]


def pytest_asyncio_loop_factories(config, item):
    # pytest-asyncio 1.x's way to choose the loop (the event_loop_policy
    # fixture is deprecated)
    if LOOP == "goloop":
        import goloop

        return {"goloop": goloop.new_event_loop}
    if LOOP == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.SelectorEventLoop}
"""

TESTS = """
import asyncio
import os

import pytest
import pytest_asyncio

PREFIX = os.environ["INNER_LOOP_TYPE"]
seen = []


def loop_ok():
    cls = type(asyncio.get_running_loop())
    return f"{cls.__module__}.".startswith(PREFIX)


@pytest_asyncio.fixture
async def echo_server():
    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    seen.append("server closed")


@pytest.mark.asyncio
async def test_loop_is_the_policys():
    assert loop_ok()


@pytest.mark.asyncio
async def test_server_fixture(echo_server):
    assert loop_ok()
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server)
    writer.write(b"hello\\n")
    assert await reader.read() == b"HELLO\\n"
    writer.close()
    await writer.wait_closed()


def test_fixture_teardown_ran():
    assert seen == ["server closed"]


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_first():
    seen.append(asyncio.get_running_loop())


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_second():
    assert loop_ok()
    assert asyncio.get_running_loop() is seen[-1]


@pytest.mark.asyncio
@pytest.mark.xfail(raises=TimeoutError, strict=True)
async def test_timeout_is_reported():
    await asyncio.wait_for(asyncio.sleep(5), 0.05)


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 2, 3])
async def test_gather(n):
    assert await asyncio.gather(*(asyncio.sleep(0.001, i) for i in range(n))) == list(range(n))
"""


def test_inner_pytest_run(loop_name, tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    env = {"INNER_LOOP": loop_name, "INNER_LOOP_TYPE": LOOP_TYPE[loop_name]}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT * 3,
        env={**__import__("os").environ, **env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("8 passed, 1 xfailed"), proc.stdout
