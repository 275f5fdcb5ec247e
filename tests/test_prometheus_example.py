"""examples/prometheus_uvicorn.py: goloop.stats() scraped from a real uvicorn.

uvicorn runs the example app in a child process, as its docstring says
(``--loop goloop:new_event_loop``, or ``--loop asyncio`` for the stock
loop, which gets a 503), and the test scrapes /metrics over HTTP and
checks the text exposition format line by line.
"""

import http.client
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from loop_support import HANG_TIMEOUT, child_env

import goloop

uvicorn = pytest.importorskip("uvicorn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "prometheus_uvicorn.py")


def load_example():
    spec = importlib.util.spec_from_file_location("prometheus_uvicorn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOOP_OPTION = {"asyncio": "asyncio", "goloop": "goloop:new_event_loop"}

# The text format's lines (version 0.0.4): comments, and samples
# `name{label="value",...} value`.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?\}})? (\S+)")
HELP = re.compile(rf"# HELP ({NAME}) .+")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge)")


def parse_exposition(text):
    """{name: [(labels, value)]} of valid text, AssertionError otherwise."""
    assert text.endswith("\n")
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert HELP.fullmatch(line), line
            continue
        if line.startswith("# TYPE "):
            m = TYPE.fullmatch(line)
            assert m and m[1] not in types, line
            types[m[1]] = m[2]
            continue
        m = SAMPLE.fullmatch(line)
        assert m, line
        name, labels, value = m.groups()
        assert name in types, f"{name} has no TYPE line before it"
        if types[name] == "counter":
            assert name.endswith("_total") and float(value) >= 0, line
        samples.setdefault(name, []).append((labels, float(value)))
    return samples


def test_render_escapes_and_ranks():
    slow = (
        goloop.SlowCallback(0.5, "cb()", 'dir\\"odd"\nname.py', 7),
        goloop.SlowCallback(0.2, "other()", None, None),
    )
    stats = goloop.LoopStats("go", *range(1, 13), 0.1, slow)
    samples = parse_exposition(load_example().render(stats))
    assert samples["goloop_slow_callback_seconds"] == [
        ('rank="1",location="dir\\\\\\"odd\\"\\nname.py:7"', 0.5),
        ('rank="2",location="unknown"', 0.2),
    ]
    assert samples["goloop_slow_callback_threshold_seconds"] == [(None, 0.1)]
    assert samples["goloop_accepted_connections_total"] == [(None, 12.0)]


class Uvicorn:
    """The example app under uvicorn on 127.0.0.1, on a free port."""

    def __init__(self, loop_option):
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.prometheus_uvicorn:app",
            "--loop",
            loop_option,
            "--port",
            "0",
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=child_env(), stderr=subprocess.PIPE, text=True
        )
        self.log = []
        deadline = time.monotonic() + HANG_TIMEOUT * 3
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.log.append(line)
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m[1])
                return
            if not line:  # exited
                break
        self.close()
        pytest.fail("uvicorn did not start:\n" + "".join(self.log))

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG_TIMEOUT)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.getheader("content-type"), resp.read().decode()
        finally:
            conn.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(HANG_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture
def server(loop_name):
    srv = Uvicorn(LOOP_OPTION[loop_name])
    try:
        yield srv
    finally:
        srv.close()


def test_metrics_from_uvicorn(server, loop_name):
    for _ in range(3):
        assert server.get("/")[0] == 200
    status, ctype, body = server.get("/metrics")
    if loop_name == "asyncio":
        assert status == 503
        assert "--loop goloop:new_event_loop" in body
        return
    assert status == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_exposition(body)
    value = {name: got[0][1] for name, got in samples.items() if len(got) == 1}
    assert samples["goloop_info"] == [('engine="go"', 1.0)]
    assert value["goloop_accepted_connections_total"] == 4  # three GET / and this one
    assert value["goloop_open_transports"] >= 1  # this request's connection
    assert value["goloop_watched_fds"] >= 2  # the listener and this connection
    assert value["goloop_received_bytes_total"] > 0
    assert value["goloop_sent_bytes_total"] > 0  # the three responses
    assert value["goloop_callbacks_total"] >= value["goloop_iterations_total"] > 0
    assert value["goloop_slow_callback_threshold_seconds"] == 0.1
