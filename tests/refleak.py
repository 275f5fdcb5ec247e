"""Reference-leak hunt for goloop's C layer, in the style of regrtest's -R.

Run under a debug CPython (sys.gettotalrefcount exists only with Py_DEBUG):

    cd tests && python3.11-dbg refleak.py [--warmups 3] [--runs 3] [WORKLOAD ...]

Each workload creates a goloop loop, repeats one scenario (timers and a
timer burst, tasks,
goloop.stats and slow-callback tracking, the sock_* calls, echo over
TCP/Unix/UDP with each protocol kind, every way a transport closes, TLS)
``--repeat`` times and closes its loop. As in CPython's
Lib/test/libregrtest/refleak.py, a workload is run ``warmups + runs`` times;
after each run the interpreter's caches are cleared and the GC run, and the
growth of sys.gettotalrefcount(), sys.getallocatedblocks() and the number of
open fds is recorded. The warm-up runs are ignored (first-time imports,
interned strings, free lists, the Go engine's start). regrtest's tolerance
for noise applies: references or blocks leak only when *every* measured run
grew (a leak of one object per iteration grows each run by at least
--repeat, while noise such as [3, 0, 0] or [8, -8, 1] does not); fds leak
when any measured run changed their number.

Not a pytest module (not collected: pytest only picks up test_*.py) because
it needs a debug interpreter and a quiet process: `make test-refleak` runs it.
Exit status 0 when nothing leaked, 1 otherwise; per-workload deltas are
printed either way.
"""

import argparse
import asyncio
import collections.abc
import copyreg
import gc
import linecache
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from inspect import isabstract

import goloop

LOCALHOST = "127.0.0.1"
WORKLOADS = {}


def workload(fn):
    WORKLOADS[fn.__name__] = fn
    return fn


def run(coro_fn, repeat):
    """Run coro_fn() repeat times on one new goloop loop, then close it."""
    loop = goloop.new_event_loop()
    try:
        for _ in range(repeat):
            loop.run_until_complete(asyncio.wait_for(coro_fn(), 30))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


# --------------------------------------------------------------- workloads


@workload
def timers(repeat):
    async def once():
        loop = asyncio.get_running_loop()
        fired = []
        done = loop.create_future()
        loop.call_later(0, fired.append, 1)
        loop.call_at(loop.time() + 0.001, fired.append, 2)
        for h in [loop.call_later(10, fired.append, 3) for _ in range(5)]:
            h.cancel()
        h = loop.call_at(loop.time() + 10, fired.append, 4, context=None)
        h.when(), h.cancelled(), repr(h)
        h.cancel()
        h.cancel()  # twice
        loop.call_later(0.002, done.set_result, None)
        await done
        late = loop.call_later(0, fired.append, 5)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        late.cancel()  # after it ran
        assert sorted(fired) == [1, 2, 5], fired

    run(once, repeat)


@workload
def timer_burst(repeat):
    """timers.c's log, heap and sorted batches: a due burst with cancels
    from inside, timers made by timers and by the callbacks ahead of them,
    pending timers moved into the heap and cancelled there, and call_soon's
    untracked argument tuples, one of them kept by the caller."""

    async def once():
        loop = asyncio.get_running_loop()
        fired = []
        handles = []

        def cb(i):
            fired.append(i)
            if i % 10 == 0 and i + 1 < len(handles):
                handles[i + 1].cancel()
            if i == 0:
                loop.call_at(loop.time() - 1, fired.append, -1)

        base = loop.time() - 0.01
        handles.extend(loop.call_at(base + (i * 7919 % 600) * 1e-6, cb, i) for i in range(600))
        far = [loop.call_at(loop.time() + 10 + i * 1e-6, fired.append, i) for i in range(5000)]
        kept = loop.call_soon(fired.append, ("kept", object()))._args
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for h in far:  # some in the heap by now, the rest in the log
            h.cancel()
        await asyncio.sleep(0.001)
        assert 540 <= len(fired) <= 602 and kept[0][0] == "kept", len(fired)

    run(once, repeat)


@workload
def callbacks(repeat):
    async def once():
        loop = asyncio.get_running_loop()
        got = []
        done = loop.create_future()
        loop.call_soon(got.append, "soon")
        loop.call_soon(got.append, "ctx", context=__import__("contextvars").copy_context())
        loop.call_soon(got.append, "cancelled").cancel()
        loop.call_soon_threadsafe(got.append, "threadsafe")

        def from_thread():
            loop.call_soon_threadsafe(got.append, "thread")
            loop.call_soon_threadsafe(done.set_result, None)

        t = threading.Thread(target=from_thread)
        t.start()
        await done
        t.join()

        def boom():
            raise ValueError("callback error")  # goes to the exception handler

        loop.set_exception_handler(lambda lp, ctx: got.append("handled"))
        loop.call_soon(boom)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
        assert sorted(got) == ["ctx", "handled", "soon", "thread", "threadsafe"], got

    run(once, repeat)


@workload
def stats(repeat):
    """goloop.stats() and slow-callback tracking (C's timed run path)."""

    async def once():
        loop = asyncio.get_running_loop()
        goloop.track_slow_callbacks(loop, 1e-9, keep=3)  # every callback is "slow"
        await asyncio.sleep(0)  # tracking starts with the next iteration
        got = []
        loop.call_soon(got.append, 1)
        loop.call_soon(got.append, 2).cancel()

        def boom():
            raise ValueError("callback error")

        loop.set_exception_handler(lambda lp, ctx: got.append("handled"))
        loop.call_soon(boom)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
        st = goloop.stats(loop)
        goloop.track_slow_callbacks(loop, None)
        assert got == [1, "handled"], got
        assert len(st.slow_callbacks) == 3, st

    run(once, repeat)


@workload
def tasks(repeat):
    async def child(i):
        await asyncio.sleep(0)
        if i == 2:
            raise KeyError(i)
        return i

    async def sleeper():
        await asyncio.sleep(10)

    async def once():
        loop = asyncio.get_running_loop()
        res = await asyncio.gather(*(child(i) for i in range(4)), return_exceptions=True)
        assert res[:2] == [0, 1] and isinstance(res[2], KeyError), res
        t = loop.create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        fut = loop.create_future()
        loop.call_soon(fut.set_exception, OSError("x"))
        try:
            await fut
        except OSError:
            pass
        try:
            await asyncio.wait_for(sleeper(), 0.001)
        except TimeoutError:
            pass
        await loop.run_in_executor(None, sum, [1, 2])

    loop = goloop.new_event_loop()
    try:
        for _ in range(repeat):
            loop.run_until_complete(once())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@workload
def sock_tcp(repeat):
    async def once():
        loop = asyncio.get_running_loop()
        with socket.socket() as lsock:
            lsock.bind((LOCALHOST, 0))
            lsock.listen()
            lsock.setblocking(False)
            with socket.socket() as csock:
                csock.setblocking(False)
                accepted = loop.create_task(loop.sock_accept(lsock))
                await loop.sock_connect(csock, lsock.getsockname())
                ssock, _ = await accepted
                with ssock:
                    await loop.sock_sendall(csock, b"x" * 300_000)  # more than a buffer
                    got = 0
                    buf = bytearray(65536)
                    while got < 300_000:
                        if got % 2:
                            got += len(await loop.sock_recv(ssock, 65536))
                        else:
                            got += await loop.sock_recv_into(ssock, buf)
                    # a recv that has to wait, then one cancelled while waiting
                    pending = loop.create_task(loop.sock_recv(csock, 10))
                    await asyncio.sleep(0)
                    await loop.sock_sendall(ssock, b"pong")
                    assert await pending == b"pong"
                    pending = loop.create_task(loop.sock_recv_into(csock, buf))
                    await asyncio.sleep(0)
                    pending.cancel()
                    try:
                        await pending
                    except asyncio.CancelledError:
                        pass
                    ssock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                ssock.close()  # reset: the next recv fails
                try:
                    await loop.sock_recv(csock, 10)
                except ConnectionResetError:
                    pass
        # a refused connect: the error path
        with socket.socket() as probe:
            probe.bind((LOCALHOST, 0))
            closed_addr = probe.getsockname()
        with socket.socket() as csock:
            csock.setblocking(False)
            try:
                await loop.sock_connect(csock, closed_addr)
            except ConnectionRefusedError:
                pass

    run(once, repeat)


@workload
def sock_waits(repeat):
    """The sock_* waits of sockops.c: sendall that waits, is cancelled or
    fails; accept and sendto that wait; a socket closed during its wait
    (EBADF); argument errors."""

    def fill(sock):
        while True:
            try:
                sock.send(b"f" * 65536)
            except BlockingIOError:
                return

    def drain(sock):
        while True:
            try:
                if not sock.recv(1 << 20):
                    return
            except BlockingIOError:
                return

    async def once():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            fill(a)
            sending = loop.create_task(loop.sock_sendall(a, bytearray(100_000)))
            await asyncio.sleep(0)
            drain(b)
            while not sending.done():
                await asyncio.sleep(0)
                drain(b)
            await sending
            fill(a)
            sending = loop.create_task(loop.sock_sendall(a, b"c" * 100_000))
            await asyncio.sleep(0)
            sending.cancel()
            try:
                await sending
            except asyncio.CancelledError:
                pass
            for bad in ("text", memoryview(b"abcd")[::2]):
                try:
                    await loop.sock_sendall(a, bad)
                except (TypeError, BufferError):
                    pass
            try:
                await loop.sock_recvfrom_into(b, b"read-only")
            except TypeError:
                pass
            # closed while waiting, the fd number reused: EBADF
            waiting = loop.create_task(loop.sock_recv(b, 10))
            await asyncio.sleep(0)
            keep = b.dup()
            b.close()
            c, d = socket.socketpair()
            drain(keep)
            a.send(b"x")
            try:
                await waiting
            except OSError:
                pass
            for s in (keep, c, d):
                s.close()
        with socket.socket() as lsock:
            lsock.bind((LOCALHOST, 0))
            lsock.listen()
            lsock.setblocking(False)
            accepting = loop.create_task(loop.sock_accept(lsock))
            await asyncio.sleep(0)
            with socket.socket() as csock:
                csock.setblocking(False)
                await loop.sock_connect(csock, lsock.getsockname())
                conn, _ = await accepting
                conn.close()
            accepting = loop.create_task(loop.sock_accept(lsock))
            await asyncio.sleep(0)
            accepting.cancel()
            try:
                await accepting
            except asyncio.CancelledError:
                pass
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "r.sock")
            r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            with r, w:
                r.bind(path)
                r.setblocking(False)
                w.setblocking(False)
                queued = 0
                while True:
                    try:
                        w.sendto(b"q", path)
                        queued += 1
                    except BlockingIOError:
                        break
                sending = loop.create_task(loop.sock_sendto(w, b"last", path))
                await asyncio.sleep(0)
                for _ in range(queued + 1):
                    await loop.sock_recv(r, 10)
                await sending

    run(once, repeat)


def _raising_factory():
    raise ValueError("refleak: no protocol")


@workload
def client_connections(repeat):
    """create_connection's inlined path (goloop.connect): connected,
    refused (one and two addresses), local_addr, a protocol factory that
    raises, a Unix connection, and a connect cancelled while it waits."""

    async def once():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, LOCALHOST, port)
        transport.close()
        transport, _ = await loop.create_connection(
            asyncio.Protocol, LOCALHOST, port, local_addr=(LOCALHOST, 0)
        )
        transport.close()
        with socket.socket() as probe:
            probe.bind((LOCALHOST, 0))
            closed_port = probe.getsockname()[1]
        try:
            await loop.create_connection(asyncio.Protocol, LOCALHOST, closed_port)
        except ConnectionRefusedError:
            pass
        real = loop.getaddrinfo

        async def two(host, port_, **kw):
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", closed_port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (LOCALHOST, closed_port)),
            ]

        loop.getaddrinfo = two
        try:
            for delay in (None, 0.01):  # one after the other, then happy eyeballs
                try:
                    await loop.create_connection(
                        asyncio.Protocol, "two.test", closed_port, happy_eyeballs_delay=delay
                    )
                except OSError:
                    pass
        finally:
            loop.getaddrinfo = real
            del loop.getaddrinfo
        transport, _ = await loop.create_connection(
            asyncio.Protocol, LOCALHOST, port, happy_eyeballs_delay=0.01
        )
        transport.close()
        try:  # connected, and the factory raises (handed to the task by sockops.c)
            await loop.create_connection(_raising_factory, LOCALHOST, port)
        except ValueError:
            pass
        server.close()
        await server.wait_closed()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "c.sock")
            userver = await loop.create_unix_server(asyncio.Protocol, path)
            transport, _ = await loop.create_unix_connection(asyncio.Protocol, path)
            transport.close()
            userver.close()
            await userver.wait_closed()
        with socket.socket() as full:
            full.bind((LOCALHOST, 0))
            full.listen(0)
            fillers = []
            for _ in range(4):
                f = socket.socket()
                f.setblocking(False)
                f.connect_ex(full.getsockname())
                fillers.append(f)
            pending = loop.create_task(
                loop.create_connection(asyncio.Protocol, *full.getsockname())
            )
            await asyncio.sleep(0.01)
            pending.cancel()
            try:
                await pending
            except (asyncio.CancelledError, OSError):
                pass
            for f in fillers:
                f.close()

    run(once, repeat)


@workload
def resolve(repeat):
    """Lookups on goroutines (resolve.c): answers (inline and from Go), the
    argument encodings, errors, a cancelled one (dropped with the loop if
    it is still in Go, or not started yet, when the loop closes)."""

    async def once():
        loop = asyncio.get_running_loop()
        await loop.getaddrinfo("localhost", 80)
        await loop.getaddrinfo(LOCALHOST, 80)
        await loop.getnameinfo((LOCALHOST, 80))
        try:
            await loop.getaddrinfo("localhost", 80, family=12345)
        except socket.gaierror:
            pass
        await loop.getaddrinfo(b"localhost", "80", type=socket.SOCK_STREAM)
        await loop.getaddrinfo(LOCALHOST, b"80", flags=socket.AI_CANONNAME)
        try:
            await loop.getaddrinfo("\udcff", 80)  # the IDNA codec's error, from C
        except UnicodeError:
            pass
        cancelled = loop.create_task(loop.getaddrinfo("localhost", 81))
        await asyncio.sleep(0)
        cancelled.cancel()

    run(once, repeat)


@workload
def processes(repeat):
    """Children started in Go and reaped through their pidfd (process.c,
    process.py): pipes, an exit code, a kill, a spawn error (asyncio's path
    raises it), close_fds' scan with an inheritable fd open."""

    async def once():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        await proc.communicate(b"x" * 1000)
        proc = await asyncio.create_subprocess_shell("exit 3")
        await proc.wait()
        proc = await asyncio.create_subprocess_exec("sleep", "10")
        proc.kill()
        await proc.wait()
        try:
            await asyncio.create_subprocess_exec("/nonexistent/program")
        except FileNotFoundError:
            pass
        r, w = os.pipe()
        os.set_inheritable(r, True)
        try:
            proc = await asyncio.create_subprocess_exec("true", pass_fds=[w])
            await proc.wait()
        finally:
            os.close(r)
            os.close(w)

    run(once, repeat)
    # A child still running when its loop closes is reaped by the Go engine
    # on Go's poller, which the Go runtime opens at its first use (an epoll
    # fd and an eventfd, kept for the process's life): one such child per
    # run, so that happens in a warm-up run, and each run checks that the
    # reaped orphan leaves nothing behind.
    loop = goloop.new_event_loop()
    loop.run_until_complete(asyncio.create_subprocess_exec("sleep", "0.05"))
    loop.close()
    time.sleep(0.3)


@workload
def pipes(repeat):
    """The pipe transports (pipe.c, pipes.py): data both ways with the
    write buffer and pause/resume engaged, EOF, write_eof with data
    buffered, abort, the reader leaving mid-write (BrokenPipeError), late
    writes, a rejected non-pipe fd, and a read error (EBADF: the pipe
    closed under its transport)."""

    class Sink(asyncio.Protocol):
        def __init__(self):
            self.got = 0
            self.lost = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.got += len(data)
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.transport.resume_reading)

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def pair(loop, sink=Sink):
        r, w = os.pipe()
        rt, rp = await loop.connect_read_pipe(sink, open(r, "rb", 0))
        wt, wp = await loop.connect_write_pipe(Sink, open(w, "wb", 0))
        return rt, rp, wt, wp

    async def once():
        loop = asyncio.get_running_loop()
        rt, rp, wt, wp = await pair(loop)
        for _ in range(8):
            wt.write(b"p" * 100_000)
        wt.write_eof()
        await rp.lost
        await wp.lost
        rt, rp, wt, wp = await pair(loop)
        wt.write(b"a" * 300_000)
        wt.abort()
        for _ in range(7):
            wt.write(b"late")
        rt.close()
        await rp.lost
        await wp.lost
        r, w = os.pipe()
        wt, wp = await loop.connect_write_pipe(Sink, open(w, "wb", 0))
        wt.write(b"b" * 300_000)
        os.close(r)
        await wp.lost
        with tempfile.TemporaryFile() as f:
            try:
                await loop.connect_read_pipe(Sink, f)
            except ValueError:
                pass
        r, w = os.pipe()
        keep = os.dup(r)
        rt, rp = await loop.connect_read_pipe(Sink, open(r, "rb", 0))
        handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda lp, ctx: None)
        try:
            rt.get_extra_info("pipe").close()
            os.write(w, b"x")
            await rp.lost
        finally:
            loop.set_exception_handler(handler)
            os.close(keep)
            os.close(w)

    run(once, repeat)


@workload
def sock_udp(repeat):
    async def once():
        loop = asyncio.get_running_loop()
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind((LOCALHOST, 0))
            b.bind((LOCALHOST, 0))
            a.setblocking(False)
            b.setblocking(False)
            buf = bytearray(100)
            pending = loop.create_task(loop.sock_recvfrom(b, 100))
            await asyncio.sleep(0)
            await loop.sock_sendto(a, b"one", b.getsockname())
            data, addr = await pending
            assert data == b"one" and addr == a.getsockname()
            await loop.sock_sendto(a, b"two", b.getsockname())
            n, addr = await loop.sock_recvfrom_into(b, buf)
            assert bytes(buf[:n]) == b"two"
            await loop.sock_sendto(a, b"three", b.getsockname())
            n, addr = await loop.sock_recvfrom_into(b, buf, 3)
            assert n == 3
            pending = loop.create_task(loop.sock_recvfrom_into(b, buf))
            await asyncio.sleep(0)
            pending.cancel()
            try:
                await pending
            except asyncio.CancelledError:
                pass

    run(once, repeat)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class BufferedEcho(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray(1000)

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.transport.write(bytes(self.buf[:nbytes]))


class Client(asyncio.Protocol):
    """Sends `payload`, collects the echo, reports how the connection ended."""

    def __init__(self, payload, eof_keeps_open=False):
        self.payload = payload
        self.got = bytearray()
        self.eof_keeps_open = eof_keeps_open
        loop = asyncio.get_running_loop()
        self.echoed = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data):
        self.got += data
        if len(self.got) >= len(self.payload) and not self.echoed.done():
            self.echoed.set_result(bytes(self.got))

    def eof_received(self):
        return self.eof_keeps_open

    def connection_lost(self, exc):
        if not self.echoed.done():
            self.echoed.set_result(bytes(self.got))
        self.lost.set_result(exc)


class BufferedClient(Client, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        self.buf = bytearray(max(sizehint, 1) if sizehint > 0 else 4096)
        return self.buf

    def buffer_updated(self, nbytes):
        self.data_received(bytes(self.buf[:nbytes]))


async def echo_once(server_proto, client_proto, unix_path=None):
    loop = asyncio.get_running_loop()
    payload = b"hello goloop " * 5000
    if unix_path:
        server = await loop.create_unix_server(server_proto, unix_path)
        tr, cl = await loop.create_unix_connection(lambda: client_proto(payload), unix_path)
    else:
        server = await loop.create_server(server_proto, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        tr, cl = await loop.create_connection(lambda: client_proto(payload), LOCALHOST, port)
    assert await cl.echoed == payload
    tr.get_extra_info("peername"), tr.get_write_buffer_size(), repr(tr)
    tr.close()
    await cl.lost
    server.close()
    await server.wait_closed()


@workload
def tcp_protocol(repeat):
    run(lambda: echo_once(Echo, Client), repeat)


@workload
def tcp_buffered_protocol(repeat):
    run(lambda: echo_once(BufferedEcho, BufferedClient), repeat)


@workload
def unix_protocols(repeat):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s")

        async def once():
            await echo_once(Echo, Client, path)
            await echo_once(BufferedEcho, BufferedClient, path)

        run(once, repeat)


async def _stream_handler(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def streams_echo(reader, writer):
    payload = b"stream " * 20000
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(len(payload))
    assert got == payload
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


@workload
def streams(repeat):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s")

        async def once():
            server = await asyncio.start_server(_stream_handler, LOCALHOST, 0)
            port = server.sockets[0].getsockname()[1]
            await streams_echo(*await asyncio.open_connection(LOCALHOST, port))
            server.close()
            await server.wait_closed()
            server = await asyncio.start_unix_server(_stream_handler, path)
            await streams_echo(*await asyncio.open_unix_connection(path))
            server.close()
            await server.wait_closed()

        run(once, repeat)


class DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class DatagramClient(asyncio.DatagramProtocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.got = loop.create_future()
        self.errors = []
        self.lost = loop.create_future()

    def datagram_received(self, data, addr):
        if not self.got.done():
            self.got.set_result(data)

    def error_received(self, exc):
        self.errors.append(exc)
        if not self.got.done():
            self.got.set_result(exc)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@workload
def udp(repeat):
    async def once():
        loop = asyncio.get_running_loop()
        str_, _ = await loop.create_datagram_endpoint(DatagramEcho, local_addr=(LOCALHOST, 0))
        addr = str_.get_extra_info("sockname")
        # unconnected client: sendto with an address
        ctr, cl = await loop.create_datagram_endpoint(DatagramClient, local_addr=(LOCALHOST, 0))
        ctr.sendto(b"ping", addr)
        assert await cl.got == b"ping"
        ctr.close()
        await cl.lost
        # connected client
        ctr, cl = await loop.create_datagram_endpoint(DatagramClient, remote_addr=addr)
        ctr.sendto(b"pong")
        assert await cl.got == b"pong"
        ctr.abort()
        await cl.lost
        str_.close()
        # connected to a closed port: error_received (ECONNREFUSED)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOCALHOST, 0))
            closed = probe.getsockname()
        ctr, cl = await loop.create_datagram_endpoint(DatagramClient, remote_addr=closed)
        ctr.sendto(b"lost")
        got = await cl.got
        assert isinstance(got, ConnectionRefusedError), got
        ctr.close()
        await cl.lost

    run(once, repeat)


class Server(asyncio.Protocol):
    """Server side of the close scenarios: does what `how` says once it has
    the client's first bytes, and records how its connection ended."""

    def __init__(self, how, ended):
        self.how = how
        self.ended = ended

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        tr = self.transport
        if self.how == "close":
            tr.write(data)
            tr.close()
        elif self.how == "abort":
            tr.write(data * 100000)  # a write buffer abort drops
            tr.abort()
        elif self.how == "write_eof":
            tr.write(data)
            tr.write_eof()
        elif self.how == "reset":
            tr.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0"
            )
            tr.abort()
        elif self.how == "raise":
            raise RuntimeError("protocol error")  # -> _fatal_error, connection_lost(exc)
        else:  # "echo": wait for the peer
            tr.write(data)

    def eof_received(self):
        return None  # close after the peer's EOF

    def connection_lost(self, exc):
        if not self.ended.done():
            self.ended.set_result(type(exc).__name__ if exc else None)


#: (server's way, client's way) -> (server's connection_lost exception,
#: client's), as stock asyncio has them
CLOSE_OUTCOMES = {
    ("close", None): (None, None),
    ("abort", None): (None, None),
    ("write_eof", None): (None, None),
    ("reset", None): (None, "ConnectionResetError"),
    ("raise", None): ("RuntimeError", None),
    ("echo", "eof"): (None, None),
    ("echo", "reset"): ("ConnectionResetError", None),
    ("echo", "close"): (None, None),
    ("echo", "server_close"): (None, None),
}


_TLS = {}


def _tls_contexts():
    """A server and a client SSLContext over a self-signed certificate for
    localhost, made once by the openssl CLI (the files go once loaded)."""
    if not _TLS:
        tmp = tempfile.mkdtemp(prefix="goloop-refleak-tls-")
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        try:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                 "-keyout", key, "-out", cert],
                check=True, capture_output=True,
            )  # fmt: skip
            _TLS["server"] = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            _TLS["server"].load_cert_chain(cert, key)
            _TLS["client"] = ssl.create_default_context(cafile=cert)
        finally:
            shutil.rmtree(tmp)
    return _TLS["server"], _TLS["client"]


class TLSBufferedEcho(asyncio.BufferedProtocol):
    """A BufferedProtocol app under TLS. A memoryview: asyncio's
    SSLProtocol reads the rest of a record into buf[offset:], a copy for
    a bytearray."""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = memoryview(bytearray(1000))

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.transport.write(bytes(self.buf[:nbytes]))


@workload
def tls(repeat):
    """goloop.sslproto (sslproto.c): TLS echo to Protocol and
    BufferedProtocol servers, writelines, writes queued behind flow
    control, writes after close, a bad certificate, an abrupt close."""
    server_ctx, client_ctx = _tls_contexts()
    payload = b"tls goloop " * 20000

    async def once():
        loop = asyncio.get_running_loop()
        for app in (Echo, TLSBufferedEcho):
            server = await loop.create_server(app, LOCALHOST, 0, ssl=server_ctx)
            port = server.sockets[0].getsockname()[1]
            transport, client = await loop.create_connection(
                lambda: Client(payload), LOCALHOST, port, ssl=client_ctx,
                server_hostname="localhost",
            )  # fmt: skip
            await client.echoed
            transport.writelines([b"a", b"b"])
            transport.close()
            await client.lost
            transport.write(b"late")  # counted as lost, as asyncio does
            transport, client = await loop.create_connection(
                lambda: Client(b"x"), LOCALHOST, port, ssl=client_ctx,
                server_hostname="localhost",
            )  # fmt: skip
            await client.echoed
            transport.abort()
            await client.lost
            try:
                await loop.create_connection(
                    asyncio.Protocol, LOCALHOST, port, ssl=ssl.create_default_context(),
                    server_hostname="localhost",
                )  # fmt: skip
            except ssl.SSLCertVerificationError:
                pass
            server.close()
            await server.wait_closed()

    run(once, repeat)


@workload
def transport_closes(repeat):
    async def one(how, client_does):
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        server = await loop.create_server(lambda: Server(how, ended), LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        tr, cl = await loop.create_connection(lambda: Client(b"abc"), LOCALHOST, port)
        await cl.echoed
        if client_does == "eof":
            tr.write_eof()  # peer EOF on the server side
        elif client_does == "reset":
            tr.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0"
            )
            tr.abort()
        elif client_does == "close":
            tr.close()
        elif client_does == "server_close":
            server.close()  # the listener; its connections end by...
            if hasattr(server, "close_clients"):
                server.close_clients()  # ... the server (3.13+)
            else:
                tr.close()  # ... the client (3.11, 3.12)
        client_end = await cl.lost
        tr.close()
        if how == "echo":
            # the server's transport outlives server.close() on 3.11/3.12;
            # it ends by the client's action
            await ended
        server.close()
        await server.wait_closed()
        return await ended, type(client_end).__name__ if client_end else None

    async def once():
        results = {}
        for how, client_does in [
            ("close", None),
            ("abort", None),
            ("write_eof", None),
            ("reset", None),
            ("raise", None),
            ("echo", "eof"),
            ("echo", "reset"),
            ("echo", "close"),
            ("echo", "server_close"),
        ]:
            results[how, client_does] = await one(how, client_does)
        assert results == CLOSE_OUTCOMES, results

    run(once, repeat)


# ------------------------------------------------------- regrtest's method


def dash_r_state():
    """What dash_R_cleanup restores (Lib/test/libregrtest/refleak.py); the
    ABC registries it also restores are not touched by these workloads, so
    only their caches are cleared."""
    return warnings.filters[:], copyreg.dispatch_table.copy(), sys.path_importer_cache.copy()


def dash_r_cleanup(state):
    """regrtest's dash_R_cleanup + clear_caches, the parts that apply here."""
    fs, ps, pic = state
    warnings.filters[:] = fs
    copyreg.dispatch_table.clear()
    copyreg.dispatch_table.update(ps)
    sys.path_importer_cache.clear()
    sys.path_importer_cache.update(pic)
    for abc in [getattr(collections.abc, a) for a in collections.abc.__all__]:
        if isabstract(abc):
            for obj in abc.__subclasses__() + [abc]:
                obj._abc_caches_clear()
    for mod in list(sys.modules.values()):
        if hasattr(mod, "__warningregistry__"):
            del mod.__warningregistry__
    re.purge()
    linecache.clearcache()
    typing = sys.modules.get("typing")
    if typing is not None:
        for f in typing._cleanups:
            f()
    sys._clear_type_cache()
    for _ in range(3):  # test.support.gc_collect
        gc.collect()


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def hunt(name, fn, repeat, warmups, runs):
    """regrtest's runtest_refleak for one workload: the deltas per run."""
    # bpo-31217: pooled ints, so recording a delta allocates nothing new
    int_pool = {value: value for value in range(-1000, 1000)}
    rc_deltas, alloc_deltas, fd_deltas = ([0] * (warmups + runs) for _ in range(3))
    state = dash_r_state()
    dash_r_cleanup(state)
    rc_before = alloc_before = fd_before = 0
    for i in range(warmups + runs):
        fn(repeat)
        dash_r_cleanup(state)
        alloc_after = sys.getallocatedblocks()
        rc_after = sys.gettotalrefcount()
        fd_after = fd_count()
        rc_deltas[i] = int_pool.setdefault(rc_after - rc_before, rc_after - rc_before)
        alloc_deltas[i] = int_pool.setdefault(
            alloc_after - alloc_before, alloc_after - alloc_before
        )
        fd_deltas[i] = int_pool.setdefault(fd_after - fd_before, fd_after - fd_before)
        rc_before, alloc_before, fd_before = rc_after, alloc_after, fd_after
    return rc_deltas[warmups:], alloc_deltas[warmups:], fd_deltas[warmups:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=", ".join(WORKLOADS))
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=50, help="scenarios per run")
    args = parser.parse_args()
    if not hasattr(sys, "gettotalrefcount"):
        sys.exit("refleak.py needs a debug build of Python (Py_DEBUG), e.g. python3.11-dbg")
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    asyncio.set_event_loop_policy(None)
    # transport_closes makes asyncio log "Fatal error: protocol.data_received()
    # call failed" with a traceback each time; the path runs all the same.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    leaked = []
    print(
        f"warm-up runs {args.warmups}, measured runs {args.runs}, scenarios per run {args.repeat}"
    )
    for name in args.workloads or WORKLOADS:
        rc, blocks, fds = hunt(name, WORKLOADS[name], args.repeat, args.warmups, args.runs)
        bad = [
            what
            for what, deltas, leak in [
                ("references", rc, all(d >= 1 for d in rc)),
                ("memory blocks", blocks, all(d >= 1 for d in blocks)),
                ("file descriptors", fds, any(fds)),
            ]
            if leak
        ]
        verdict = f"LEAKED {', '.join(bad)}" if bad else "ok"
        print(f"{name:22} refs {rc!s:18} blocks {blocks!s:18} fds {fds!s:12} {verdict}", flush=True)
        if bad:
            leaked.append(name)
    if leaked:
        print(f"FAILED: leaks in {', '.join(leaked)}")
        return 1
    print("no leaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
