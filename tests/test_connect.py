"""Client connections (goloop.connect): create_connection, open_connection
and create_unix_connection against the stock loop.

Refused addresses, several addresses (each refused, or only one with a
listener), local_addr, happy eyeballs, all_errors (3.12+), cancellation
mid-connect, and what has happened by the time the call returns. Names
resolve through a getaddrinfo set on the loop instance (asyncio calls it
for a host that is not an IP address, and so does goloop), so one host
can stand for several loopback addresses (127.0.0.1 and 127.0.0.2).
"""

import asyncio
import contextvars
import gc
import os
import socket
import sys

import pytest
from loop_support import run_bounded, stock_factory, unix_path, with_loop

import goloop
from goloop import connect


@pytest.fixture
def native_calls(monkeypatch):
    """Counts goloop.connect.create_connection calls (the inlined path)."""
    calls = []
    real = connect.create_connection

    async def counted(*args, **kwargs):
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(connect, "create_connection", counted)
    return calls


def _native(lp, n):
    """How many connects take goloop's path on lp: none on the stock loop
    or in debug mode (goloop then runs asyncio's own create_connection)."""
    return n if isinstance(lp, goloop.Loop) and not lp.get_debug() else 0


def _free_port():
    """A port nobody listens on (bound and closed at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listener(host="127.0.0.1"):
    lsn = socket.socket()
    lsn.bind((host, 0))
    lsn.listen(16)
    lsn.setblocking(False)
    return lsn


def _fake_dns(lp, addrs):
    """Make 'multi.test' resolve to addrs (a list of (host, port))."""
    real = lp.getaddrinfo

    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        if host == "multi.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", a) for a in addrs]
        return await real(host, port, family=family, type=type, proto=proto, flags=flags)

    lp.getaddrinfo = getaddrinfo


class _Proto(asyncio.Protocol):
    def __init__(self):
        self.events = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def connection_lost(self, exc):
        self.events.append("lost")


def _describe(exc, ports):
    """An exception as (type, errno, message) with ports masked."""
    msg = str(exc)
    for p in ports:
        msg = msg.replace(str(p), "<port>")
    return type(exc), getattr(exc, "errno", None), msg


def _connect_outcome(lp, ports, **kwargs):
    async def main():
        try:
            transport, proto = await lp.create_connection(_Proto, **kwargs)
        except OSError as exc:
            return _describe(exc, ports)
        try:
            return "ok", transport.get_extra_info("peername")[0], list(proto.events)
        finally:
            transport.close()

    return run_bounded(lp, main())


def test_connect_refused_like_stock(loop, native_calls):
    port = _free_port()

    def scenario(lp):
        return _connect_outcome(lp, [port], host="127.0.0.1", port=port)

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is ConnectionRefusedError
    assert scenario(loop) == expected
    assert len(native_calls) == _native(loop, 1)


def test_connect_every_address_refused_like_stock(loop, native_calls):
    """Two addresses, both refused, with different messages: stock's
    'Multiple exceptions: ...'."""
    port = _free_port()

    def scenario(lp):
        _fake_dns(lp, [("127.0.0.2", port), ("127.0.0.1", port)])
        return _connect_outcome(lp, [port], host="multi.test", port=port)

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is OSError and expected[2].startswith("Multiple exceptions: ")
    assert scenario(loop) == expected
    assert len(native_calls) == _native(loop, 1)


def test_connect_same_error_twice_like_stock(loop):
    """Every address fails with the same message: that one exception."""
    port = _free_port()

    def scenario(lp):
        _fake_dns(lp, [("127.0.0.1", port), ("127.0.0.1", port)])
        return _connect_outcome(lp, [port], host="multi.test", port=port)

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is ConnectionRefusedError
    assert scenario(loop) == expected


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is new in 3.12")
def test_connect_all_errors_like_stock(loop):
    port = _free_port()

    def scenario(lp):
        _fake_dns(lp, [("127.0.0.2", port), ("127.0.0.1", port)])

        async def main():
            try:
                await lp.create_connection(_Proto, "multi.test", port, all_errors=True)
            except ExceptionGroup as group:  # noqa: F821 - 3.12+
                return str(group), [_describe(e, [port]) for e in group.exceptions]
            return "connected"

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0].startswith("create_connection failed")
    assert scenario(loop) == expected


@pytest.mark.parametrize("happy", [None, 0.05], ids=["sequential", "happy_eyeballs"])
def test_connect_listener_on_second_address_only_like_stock(loop, happy):
    """The first address refuses, the second listens: connected to it."""

    def scenario(lp):
        lsn = _listener("127.0.0.1")
        port = lsn.getsockname()[1]
        _fake_dns(lp, [("127.0.0.2", port), ("127.0.0.1", port)])
        try:
            return _connect_outcome(
                lp, [port], host="multi.test", port=port, happy_eyeballs_delay=happy
            )
        finally:
            lsn.close()

    expected = with_loop(stock_factory, scenario)
    assert expected == ("ok", "127.0.0.1", ["made"])
    assert scenario(loop) == expected


def test_happy_eyeballs_every_address_refused_like_stock(loop, native_calls):
    port = _free_port()

    def scenario(lp):
        _fake_dns(lp, [("127.0.0.2", port), ("127.0.0.1", port), ("127.0.0.3", port)])
        return _connect_outcome(lp, [port], host="multi.test", port=port, happy_eyeballs_delay=0.01)

    expected = with_loop(stock_factory, scenario)
    assert expected[2].startswith("Multiple exceptions: ")
    assert scenario(loop) == expected
    assert len(native_calls) == _native(loop, 1)


def test_happy_eyeballs_slow_first_address_loses_like_stock(loop):
    """The first address never answers (a listener whose accept queue is
    full drops the SYN); after the delay the second is tried and wins, and
    the first attempt's socket is closed."""

    def scenario(lp):
        full = socket.socket()
        full.bind(("127.0.0.2", 0))
        full.listen(0)
        fillers = []
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(full.getsockname())
            fillers.append(f)
        lsn = _listener("127.0.0.1")
        _fake_dns(lp, [full.getsockname(), lsn.getsockname()])

        async def main():
            before = len(os.listdir("/proc/self/fd"))
            transport, _ = await lp.create_connection(
                _Proto, "multi.test", 1, happy_eyeballs_delay=0.05
            )
            peer = transport.get_extra_info("peername")
            transport.close()
            for _ in range(3):
                await asyncio.sleep(0)
            return peer == lsn.getsockname(), len(os.listdir("/proc/self/fd")) - before

        try:
            return run_bounded(lp, main())
        finally:
            for s in fillers + [full, lsn]:
                s.close()

    expected = with_loop(stock_factory, scenario)
    assert expected == (True, 0)
    assert scenario(loop) == expected


def test_happy_eyeballs_cancelled_closes_every_attempt(loop):
    """create_connection with happy eyeballs cancelled while two attempts
    wait: both sockets are closed."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(full.getsockname())
        fillers.append(f)
    _fake_dns(loop, [full.getsockname(), full.getsockname()])

    async def main():
        before = len(os.listdir("/proc/self/fd"))
        task = asyncio.ensure_future(
            loop.create_connection(_Proto, "multi.test", 1, happy_eyeballs_delay=0.01)
        )
        await asyncio.sleep(0.1)
        waited = not task.done()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, OSError):
            pass
        for _ in range(3):
            await asyncio.sleep(0)
        return waited, len(os.listdir("/proc/self/fd")) - before

    try:
        waited, leaked = run_bounded(loop, main())
    finally:
        for s in fillers + [full]:
            s.close()
    assert leaked == 0
    if not waited:
        pytest.skip("the kernel completed the connects at once")


def test_connect_interleave_order_like_stock(loop):
    """interleave reorders the addresses by family before connecting."""

    def scenario(lp):
        lsn = _listener("127.0.0.1")
        port = lsn.getsockname()[1]
        _fake_dns(lp, [("127.0.0.2", port), ("127.0.0.3", port), ("127.0.0.1", port)])
        try:
            return _connect_outcome(lp, [port], host="multi.test", port=port, interleave=2)
        finally:
            lsn.close()

    assert scenario(loop) == with_loop(stock_factory, scenario)


def test_connect_local_addr_like_stock(loop, native_calls):
    def scenario(lp):
        lsn = _listener()
        port = lsn.getsockname()[1]
        local_port = _free_port()

        async def main():
            transport, _ = await lp.create_connection(
                _Proto, "127.0.0.1", port, local_addr=("127.0.0.2", local_port)
            )
            name = transport.get_extra_info("sockname")
            transport.close()
            # the same local address again while the first is in TIME_WAIT
            # or still bound: stock's bind error, or a connection
            with socket.socket() as busy:
                busy.bind(("127.0.0.3", 0))
                busy.listen(1)
                taken = busy.getsockname()
                try:
                    await lp.create_connection(_Proto, "127.0.0.1", port, local_addr=taken)
                    second = "connected"
                except OSError as exc:
                    second = _describe(exc, [port, taken[1]])
            # only local addresses of another family
            try:
                await lp.create_connection(_Proto, "127.0.0.1", port, local_addr=("::1", 0))
                third = "connected"
            except OSError as exc:
                third = _describe(exc, [port])
            return name == ("127.0.0.2", local_port), second, third

        try:
            return run_bounded(lp, main())
        finally:
            lsn.close()

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is True
    assert "error while attempting to bind on address" in expected[1][2]
    assert scenario(loop) == expected
    assert len(native_calls) == _native(loop, 3)


def test_connect_returns_after_connection_made_like_stock(loop):
    """By the time create_connection returns, connection_made has run, and
    the transport is reading (data sent at once arrives)."""

    def scenario(lp):
        lsn = _listener()

        async def main():
            transport, proto = await lp.create_connection(_Proto, *lsn.getsockname())
            events = list(proto.events)
            conn, _ = lsn.accept()
            with conn:
                conn.send(b"hi")
                got = []
                proto.data_received = got.append
                for _ in range(50):
                    if got:
                        break
                    await asyncio.sleep(0.01)
                transport.close()
                await asyncio.sleep(0)
                return events, got, proto.events

        try:
            return run_bounded(lp, main())
        finally:
            lsn.close()

    expected = with_loop(stock_factory, scenario)
    assert expected == (["made"], [b"hi"], ["made", "lost"])
    assert scenario(loop) == expected


def test_cancelled_connect_closes_its_socket(loop):
    """create_connection cancelled while the connect waits (a listener
    whose accept queue is full drops the SYN): the socket is closed, no fd
    is left behind."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(0)
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(lsn.getsockname())
        fillers.append(f)

    async def main():
        before = len(os.listdir("/proc/self/fd"))
        task = asyncio.ensure_future(loop.create_connection(_Proto, *lsn.getsockname()))
        await asyncio.sleep(0.05)
        waited = not task.done()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except OSError:
            pass
        await asyncio.sleep(0)
        return waited, len(os.listdir("/proc/self/fd")) - before

    try:
        waited, leaked = run_bounded(loop, main())
    finally:
        for s in fillers + [lsn]:
            s.close()
    assert leaked == 0
    if not waited:
        pytest.skip("the kernel completed the connect at once")


def test_open_connection_echo(loop):
    async def handler(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"line\n")
        got = await reader.readline()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got

    assert run_bounded(loop, main()) == b"line\n"


def test_unix_connection_like_stock(loop, tmp_path):
    def scenario(lp):
        path = unix_path(tmp_path, "u.sock")

        async def main():
            out = []
            try:
                await lp.create_unix_connection(_Proto, path)
            except OSError as exc:
                out.append(_describe(exc, []))
            server = await lp.create_unix_server(asyncio.Protocol, path)
            transport, proto = await lp.create_unix_connection(_Proto, path)
            out.append(list(proto.events))
            transport.close()
            for _ in range(10):  # the server side sees EOF and closes too
                await asyncio.sleep(0.01)
            server.close()
            await server.wait_closed()
            return out

        try:
            return run_bounded(lp, main())
        finally:
            if os.path.exists(path):
                os.unlink(path)

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is FileNotFoundError
    assert scenario(loop) == expected


def test_connect_argument_errors_like_stock(loop):
    def scenario(lp):
        out = []
        for kwargs in (
            {"host": "127.0.0.1", "port": 1, "server_hostname": "x"},
            {"host": "127.0.0.1", "port": 1, "ssl_handshake_timeout": 1},
            {"host": "127.0.0.1", "port": 1, "sock": socket.socket()},
            {},
            {"host": "127.0.0.1", "port": "no-such-service"},
        ):
            try:
                run_bounded(lp, lp.create_connection(_Proto, **kwargs))
                out.append("ok")
            except Exception as exc:  # noqa: BLE001 - compared with stock
                out.append(type(exc))
            if "sock" in kwargs:
                kwargs["sock"].close()
        return out

    assert scenario(loop) == with_loop(stock_factory, scenario)


def _full_listener():
    """A listener whose accept queue is full (fillers hold it), so a new
    connect to it waits: (listener, fillers)."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(0)
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(lsn.getsockname())
        fillers.append(f)
    return lsn, fillers


def test_cancelled_connect_fd_reuse_gets_only_its_own_data(loop):
    """A connect cancelled while it waits closes its socket; the next
    connection made (likely on the same fd number) gets its own data and
    nothing of the cancelled one's wait (no stray callback, no error)."""
    lsn, fillers = _full_listener()
    good = _listener()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    async def main():
        task = asyncio.ensure_future(loop.create_connection(_Proto, *lsn.getsockname()))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, OSError):
            pass
        # the old SYN's fate no longer matters: let the listener take it
        for f in fillers:
            f.close()
        transport, proto = await loop.create_connection(_Proto, *good.getsockname())
        conn, _ = good.accept()
        with conn:
            conn.send(b"new")
            got = []
            proto.data_received = got.append
            for _ in range(50):
                if got:
                    break
                await asyncio.sleep(0.01)
            transport.close()
            await asyncio.sleep(0)
        return got, proto.events

    try:
        got, events = run_bounded(loop, main())
    finally:
        for s in fillers + [lsn, good]:
            s.close()
    assert (got, events, errors) == ([b"new"], ["made", "lost"], [])


@pytest.mark.parametrize("clients", [1, 3, 9])
def test_server_accepts_every_pending_connection_like_stock(loop, clients):
    """Connections queued before the server's loop looks (a batch of one,
    a small batch, one past the accept loop's polls) are all accepted and
    made, and an empty queue ends the batch without an error."""

    def scenario(lp):
        made = []

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                made.append(transport)

        async def main():
            server = await lp.create_server(Server, "127.0.0.1", 0)
            addr = server.sockets[0].getsockname()
            socks = [socket.create_connection(addr) for _ in range(clients)]
            for _ in range(100):
                if len(made) == clients:
                    break
                await asyncio.sleep(0.01)
            count = len(made)
            for t in made:
                t.close()
            for s in socks:
                s.close()
            server.close()
            await server.wait_closed()
            return count

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == clients
    assert scenario(loop) == expected


def test_connect_refused_error_has_no_context_like_stock(loop):
    """The refused connect's OSError (and 3.12's ExceptionGroup) is raised
    as asyncio raises it: outside the handler that caught it, so with no
    __context__ chained to it."""
    port = _free_port()

    def scenario(lp):
        out = []
        kwargs = [{}]
        if sys.version_info >= (3, 12):
            kwargs.append({"all_errors": True})
        for kw in kwargs:
            try:
                run_bounded(lp, lp.create_connection(_Proto, "127.0.0.1", port, **kw))
            except (OSError, Exception) as exc:  # noqa: BLE001 - compared with stock
                out.append((type(exc), exc.__context__ is None, exc.__cause__ is None))
        return out

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (ConnectionRefusedError, True, True)
    assert scenario(loop) == expected


def _connect_kinds(tmp_path):
    """(name, start(lp, factory)) for a TCP and a Unix client connection to
    a listener of the caller's loop; start returns (awaitable, closer)."""

    async def tcp(lp, factory):
        server = await lp.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        return server, lp.create_connection(factory, "127.0.0.1", port)

    async def unix(lp, factory):
        path = unix_path(tmp_path, "f.sock")
        if os.path.exists(path):
            os.unlink(path)
        server = await lp.create_unix_server(asyncio.Protocol, path)
        return server, lp.create_unix_connection(factory, path)

    return (("tcp", tcp), ("unix", unix))


@pytest.mark.parametrize("error", [ValueError("no protocol"), ConnectionResetError(104, "x")])
def test_connect_protocol_factory_error_like_stock(loop, tmp_path, error):
    """A protocol factory that raises (after the connect succeeded): the
    exception comes out of create_connection / create_unix_connection as
    it is (an OSError too: not a connect error, not grouped), as stock."""

    def factory():
        raise error

    def scenario(lp):
        async def main():
            out = []
            for name, start in _connect_kinds(tmp_path):
                server, connecting = await start(lp, factory)
                try:
                    await connecting
                    out.append((name, "ok"))
                except Exception as exc:  # noqa: BLE001 - compared with stock
                    out.append((name, type(exc), str(exc), exc is error))
                    # its traceback holds the client socket (left open, as
                    # stock leaves it): collected, the socket closes and the
                    # server's side sees EOF, which 3.12's wait_closed awaits
                    exc.__traceback__ = None
                gc.collect()
                server.close()
                await server.wait_closed()
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][3] is True
    assert scenario(loop) == expected


def test_connect_cancelled_by_its_protocol_factory_like_stock(loop, tmp_path):
    """The factory cancels the connecting task: the transport it got is
    closed (connection_made, then connection_lost), CancelledError comes
    out, no fd is left open; as stock."""

    def scenario(lp):
        async def main():
            out = []
            state = {}

            def factory():
                state["task"].cancel()
                state["protos"].append(_Proto())
                return state["protos"][-1]

            for name, start in _connect_kinds(tmp_path):
                protos = state["protos"] = []
                server, connecting = await start(lp, factory)
                before = len(os.listdir("/proc/self/fd"))
                task = state["task"] = asyncio.ensure_future(connecting)
                try:
                    await task
                    out.append((name, "ok"))
                except asyncio.CancelledError:
                    out.append((name, "cancelled"))
                for _ in range(50):  # the server's side closes on EOF, later
                    if len(os.listdir("/proc/self/fd")) <= before:
                        break
                    await asyncio.sleep(0.01)
                out.append([p.events for p in protos])
                out.append(len(os.listdir("/proc/self/fd")) - before)
                server.close()
                await server.wait_closed()
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[:3] == [("tcp", "cancelled"), [["made", "lost"]], 0]
    assert scenario(loop) == expected


def test_connect_protocol_factory_runs_as_the_connecting_task_like_stock(loop, tmp_path):
    """Inside the protocol factory asyncio.current_task() is the task that
    called create_connection / create_unix_connection, and its context is
    that task's, as stock (goloop calls the factory from the connect's own
    I/O callback, with the task entered as the current one)."""
    var = contextvars.ContextVar("var", default="unset")

    def scenario(lp):
        async def main():
            out = []
            seen = []

            def factory():
                seen.append((asyncio.current_task(), var.get()))
                return _Proto()

            for name, start in _connect_kinds(tmp_path):
                server, connecting = await start(lp, factory)
                var.set(name)
                tr, _ = await connecting
                me = asyncio.current_task()
                out.append((name, [(task is me, value) for task, value in seen]))
                seen.clear()
                assert asyncio.current_task() is me
                tr.close()
                server.close()
                await server.wait_closed()
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == [("tcp", [(True, "tcp")]), ("unix", [(True, "unix")])]
    assert scenario(loop) == expected


def test_connect_socket_like_stock(loop, tmp_path):
    """The client socket behind the transport (get_extra_info('socket'))
    looks as stock's: family, type, proto, timeout, the names."""

    def scenario(lp):
        async def main():
            out = []
            for name, start in _connect_kinds(tmp_path):
                server, connecting = await start(lp, _Proto)
                transport, proto = await connecting
                sock = transport.get_extra_info("socket")
                out.append(
                    (
                        name,
                        type(sock).__name__,
                        sock.family,
                        sock.type,
                        sock.proto,
                        sock.gettimeout(),
                        sock.getpeername() == transport.get_extra_info("peername"),
                        sock.getsockname() == transport.get_extra_info("sockname"),
                        proto.events,
                    )
                )
                transport.close()
                server.close()
                await server.wait_closed()
            return out

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0][1:6] == ("TransportSocket", socket.AF_INET, socket.SOCK_STREAM, 6, 0.0)
    assert scenario(loop) == expected
