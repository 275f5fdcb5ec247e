"""loop.getaddrinfo / loop.getnameinfo: socket's answers and errors.

socket.getaddrinfo / socket.getnameinfo called directly are the oracle:
the stock loop runs them in its thread pool, goloop runs libc's resolver on
goroutines of its Go engine (numeric answers inline), and both must return
what they return and raise what they raise, for every argument below.
"""

import asyncio
import socket
import threading
import time

import pytest
from loop_support import HANG_TIMEOUT, check_child, ipv6_available, outcome, run_bounded, run_python


class _Host(str):
    """A str subclass: socket encodes it like any str."""


HOSTS_NAMES = []
with open("/etc/hosts") as hosts:
    for line in hosts:
        fields = line.split("#")[0].split()
        HOSTS_NAMES.extend(fields[1:])

ADDRINFO_CASES = [
    ("127.0.0.1", 80),
    ("127.0.0.1", "80"),
    ("127.0.0.1", b"80"),
    (b"127.0.0.1", None),
    ("localhost", 80),
    ("localhost", "http"),
    ("localhost", "no-such-service"),
    ("localhost", 0, {"family": socket.AF_INET, "type": socket.SOCK_STREAM}),
    ("localhost", 443, {"proto": socket.IPPROTO_UDP}),
    ("localhost", 80, {"flags": socket.AI_CANONNAME}),
    ("localhost", 80, {"flags": socket.AI_NUMERICHOST}),
    ("127.0.0.1", 80, {"flags": socket.AI_CANONNAME}),
    (None, 8080, {"flags": socket.AI_PASSIVE}),
    (None, 8080),
    (None, None),
    ("", 80),
    ("127.1", 80),
    ("no-such-host.invalid", 80),
    ("localhost", 80, {"family": 12345}),
    ("localhost", 80, {"type": 12345}),
    ("localhost", 80, {"flags": 1 << 20}),
    ("localhost", 80, {"family": socket.AF_UNIX}),
    ("127.0.0.1", 80, {"family": socket.AF_INET6}),
    ("localhost", -1),
    ("localhost", 70000),
    ("bücher.example", 80),  # idna-encoded, then unknown
    # arguments socket.getaddrinfo rejects, with its own messages
    ("localhost", 80.5),
    ("localhost", True),
    (12, 80),
    (bytearray(b"localhost"), 80),
    ("localhost", 80, {"family": "x"}),
    ("localhost", 1 << 70),
    ("localhost", 80, {"flags": 1 << 40}),
    ("x" * 300, 80),
    ("\udcff", 80),
    # embedded NULs: libc sees the string up to the first one (and 3.13's
    # socket rejects a str port with one); a str subclass is not cached
    ("localhost", "80\x00x"),
    (b"127.0.0.1\x00junk", 80),
    ("127.0.0.1\x00", "80"),
    (_Host("localhost"), 80),
    (_Host("127.0.0.1"), b"80"),
    ("localhost", "８０"),  # not ASCII digits: a service name to libc
] + [(name, 80) for name in HOSTS_NAMES]
if ipv6_available():
    ADDRINFO_CASES += [("::1", 80), ("::1", 80, {"family": socket.AF_INET6}), ("fe80::1%lo", 80)]


def _case_id(case):
    return repr(case)[:60]


@pytest.mark.parametrize("case", ADDRINFO_CASES, ids=_case_id)
def test_getaddrinfo_matches_socket(loop, case):
    host, port, *kw = case
    kw = kw[0] if kw else {}
    expected = outcome(socket.getaddrinfo, host, port, **kw)  # result, or error + message
    got = outcome(run_bounded, loop, loop.getaddrinfo(host, port, **kw))
    assert repr(got) == repr(expected)  # repr: the enums, not just equal ints


def _gai_errno(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as exc:
        return type(exc), exc.errno, exc.strerror
    return None


@pytest.mark.parametrize(
    "case",
    [("no-such-host.invalid", 80), ("localhost", 80, {"family": 12345}), ("", None)],
    ids=_case_id,
)
def test_getaddrinfo_error_attributes(loop, case):
    host, port, *kw = case
    kw = kw[0] if kw else {}
    expected = _gai_errno(socket.getaddrinfo, host, port, **kw)
    assert expected is not None

    async def lookup():
        return await loop.getaddrinfo(host, port, **kw)

    assert _gai_errno(run_bounded, loop, lookup()) == expected


NAMEINFO_CASES = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80), socket.NI_NUMERICSERV),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("127.0.0.1", 0), socket.NI_NAMEREQD),
    (("127.0.0.1", 80, 0), 0),
    (("localhost", 80), 0),
    (("127.0.0.1",), 0),
    (("127.0.0.1", "80"), 0),
    ("127.0.0.1", 0),
    ((b"127.0.0.1", 80), 0),
    (("127.0.0.1", 80), "x"),
    (("::1", 80, 1 << 20, 0), 0),
    (("::1", 80, 0, 0), socket.NI_NUMERICHOST),
    (("::1", 80), 0),
]


@pytest.mark.parametrize("case", NAMEINFO_CASES, ids=_case_id)
def test_getnameinfo_matches_socket(loop, case):
    sockaddr, flags = case
    expected = outcome(socket.getnameinfo, sockaddr, flags)
    got = outcome(run_bounded, loop, loop.getnameinfo(sockaddr, flags))
    assert got == expected


def test_cancelled_lookups_leave_the_others_alone(loop):
    async def main():
        tasks = [asyncio.ensure_future(loop.getaddrinfo("localhost", port)) for port in range(50)]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results

    results = run_bounded(loop, main())
    for port, result in enumerate(results):
        if port % 2 == 0:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert repr(result) == repr(socket.getaddrinfo("localhost", port))


def test_connections_resolve_names(loop):
    """create_server / create_connection / sock_connect take names."""

    async def main():
        server = await asyncio.start_server(
            lambda r, w: w.close(), "localhost", 0, family=socket.AF_INET
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("localhost", port)
        got_eof = await reader.read() == b""
        writer.close()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("localhost", port))
        sock.close()
        server.close()
        await server.wait_closed()
        return got_eof

    assert run_bounded(loop, main())


def test_goloop_lookups_use_no_python_thread(loop_name, loop):
    """100 lookups in flight, on goroutines: no executor, no new thread
    (threads other tests left behind may still be ending meanwhile)."""
    before = set(threading.enumerate())

    async def main():
        started = set()

        async def lookup(port):
            result = await loop.getaddrinfo("localhost", port)
            started.update(set(threading.enumerate()) - before)
            return result

        results = await asyncio.gather(*(lookup(port) for port in range(100)))
        return results, started

    results, started = run_bounded(loop, main())
    assert repr(results) == repr([socket.getaddrinfo("localhost", port) for port in range(100)])
    if loop_name == "goloop" and not loop.get_debug():  # debug mode: asyncio's path
        assert loop._default_executor is None
        assert started == set()
    else:
        assert loop._default_executor is not None
        assert started


def test_loop_closed_with_lookups_in_flight(loop_factory):
    """Lookups still running in Go when their loop closes are dropped, and
    the next loop (maybe given the same eventfd number) is not disturbed."""

    async def start():
        loop = asyncio.get_running_loop()
        for port in range(20):
            asyncio.ensure_future(loop.getaddrinfo("localhost", port))

    for _ in range(20):
        loop = loop_factory()
        try:
            loop.run_until_complete(start())
        finally:
            loop.close()
    loop = loop_factory()
    try:
        assert run_bounded(loop, loop.getaddrinfo("localhost", 80)) == socket.getaddrinfo(
            "localhost", 80
        )
    finally:
        loop.close()


def test_lookup_begun_as_the_loop_stops_completes_on_the_next_run(loop):
    """A lookup a callback begins in the loop's last iteration before it
    stops (goloop starts an iteration's lookups before its next wait)
    still completes, once the loop runs again."""
    lookups = []

    async def begin():
        lookups.append(asyncio.ensure_future(loop.getaddrinfo("localhost", 80)))
        lookups.append(asyncio.ensure_future(loop.getaddrinfo(b"127.0.0.1", "80")))

    loop.run_until_complete(begin())  # the lookups' tasks run as the loop stops
    got = run_bounded(loop, asyncio.gather(*lookups))
    assert repr(got) == repr(
        [socket.getaddrinfo("localhost", 80), socket.getaddrinfo(b"127.0.0.1", "80")]
    )


FORKED_CHILD = """
import asyncio, json, os, socket, sys, threading
import goloop

async def lookups():
    loop = asyncio.get_running_loop()
    names = await loop.getaddrinfo("localhost", 80)
    info = await loop.getnameinfo(("127.0.0.1", 80))
    return [names == socket.getaddrinfo("localhost", 80),
            info == socket.getnameinfo(("127.0.0.1", 80), 0)]

first = goloop.run(lookups())          # the Go runtime is running now
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    try:
        res = goloop.run(lookups())     # the child's loop: the C engine
    except BaseException as exc:
        res = repr(exc)
    os.write(w, json.dumps(res).encode())
    os._exit(0)
os.close(w)
data = b""
while chunk := os.read(r, 65536):
    data += chunk
os.waitpid(pid, 0)
print(json.dumps({"parent": first, "child": json.loads(data)}))
"""


def test_lookups_after_fork_take_asyncios_path():
    proc = run_python(FORKED_CHILD, timeout=HANG_TIMEOUT * 6, python_args=("-W", "ignore"))
    out = check_child(proc)
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    assert line == '{"parent": [true, true], "child": [true, true]}'


@pytest.mark.parametrize("loop_name", ["asyncio", "goloop"])
def test_audit_events(loop_name):
    """socket.getaddrinfo's and socket.getnameinfo's audit events fire."""
    code = """
import asyncio, socket, sys
import goloop
seen = []
sys.addaudithook(lambda event, args: event.startswith("socket.get") and seen.append(event))
factory = goloop.new_event_loop if sys.argv[1] == "goloop" else asyncio.SelectorEventLoop
loop = factory()
loop.run_until_complete(loop.getaddrinfo("localhost", 80))
loop.run_until_complete(loop.getnameinfo(("127.0.0.1", 80)))
loop.close()
print(sorted(set(seen)))
"""
    proc = run_python(code, loop_name)  # a child: audit hooks cannot be removed
    last = check_child(proc).strip().splitlines()[-1]
    assert last == "['socket.getaddrinfo', 'socket.getnameinfo']"


def test_replaced_socket_functions_are_called(loop, monkeypatch):
    """A program that replaces socket.getaddrinfo / getnameinfo (a DNS
    override, a test's mock) gets them called on goloop too, as on stock."""
    calls = []

    def fake_getaddrinfo(*args):
        calls.append(("getaddrinfo", args))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 80))]

    def fake_getnameinfo(*args):
        calls.append(("getnameinfo", args))
        return ("fake", "80")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(socket, "getnameinfo", fake_getnameinfo)

    async def main():
        return (
            await loop.getaddrinfo("example.test", 80),
            await loop.getnameinfo(("127.0.0.1", 80)),
        )

    assert run_bounded(loop, main()) == (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 80))],
        ("fake", "80"),
    )
    assert calls == [
        ("getaddrinfo", ("example.test", 80, 0, 0, 0, 0)),
        ("getnameinfo", (("127.0.0.1", 80), 0)),
    ]


def test_lookup_completes_while_callbacks_keep_the_loop_busy(loop):
    """A lookup finishes while tasks keep the ready queue non-empty and no
    fd is watched (stock: the executor's call_soon_threadsafe lands in the
    ready queue; goloop must still look at the engine's eventfd)."""

    async def main():
        lookup = asyncio.ensure_future(loop.getaddrinfo("localhost", 80))
        deadline = time.monotonic() + HANG_TIMEOUT / 2
        while not lookup.done() and time.monotonic() < deadline:
            await asyncio.sleep(0)
        return lookup.done() and lookup.result()

    assert repr(run_bounded(loop, main())) == repr(socket.getaddrinfo("localhost", 80))
