"""goloop.Loop: the native loop core plus asyncio's own slow paths.

The class combines ``_goloop.LoopCore`` (C: ready queue, handles, timers,
the run loop and fd dispatch over the Go engine) with asyncio's Unix
selector loop (Python: tasks, futures, executors, async generators,
exception handling, and for now sockets, transports, pipes and
subprocesses). Everything that class does through ``_add_reader`` and
friends lands on the C core, so asyncio's own transports run on the Go
poller unchanged, with the stock validation and messages.
"""

import errno
import inspect
import os
import signal
import socket
import sys
import threading
from asyncio import (
    base_events,
    constants,
    events,
    format_helpers,
    selector_events,
    trsock,
    unix_events,
)

from . import _goloop, connect, process, resolve
from ._selector import EngineSelector
from .datagram import FAMILIES as _DATAGRAM_FAMILIES
from .datagram import DatagramTransport
from .pipes import ReadPipeTransport, WritePipeTransport
from .sslproto import SSLProtocol
from .stream import SocketTransport, raw_family, raw_proto, raw_type, set_tcp_nodelay


def _accept_raw(listener):
    """socket.socket.accept for a plain non-blocking listening socket,
    without its two enum conversions (family, type) per connection; the
    accepted socket is made exactly as socket.accept makes it (the caller
    then makes it non-blocking, so its blocking-mode fix-up is moot)."""
    fd, addr = listener._accept()
    conn = socket.socket(raw_family(listener), raw_type(listener), raw_proto(listener), fileno=fd)
    return conn, addr


# The socket methods asyncio's transports do their I/O with. goloop's
# transports make those syscalls in C instead, so a socket whose class or
# instance replaces one of them gets asyncio's transport, which calls it.
_STREAM_IO = ("recv", "recv_into", "send", "sendmsg")
_DATAGRAM_IO = ("recvfrom", "sendto", "send")


def _native_io(sock, names):
    """Whether sock's methods `names` are socket.socket's own: not replaced
    by its class (a subclass, a mock) or on the instance (mock.patch.object
    on a subclass instance)."""
    cls = type(sock)
    if cls is socket.socket:  # no instance dict: nothing to shadow them
        return True
    own = getattr(sock, "__dict__", {})
    return all(
        getattr(cls, name, None) is getattr(socket.socket, name) and name not in own
        for name in names
    )


# listen()'s backlog for create_server and create_unix_server when the
# caller passes none (stock: 100); the kernel caps it at
# net.core.somaxconn. A burst of 10,000 connects from one client
# (benchmarks/net/conn_burst.py, 2-CPU VM under load) overflowed a
# 100-connection queue on every loop, whatever their accept batch: 5k-18k
# dropped SYNs and 2.3-3.5 s to hold them all (retransmits after 1 s);
# with 4096, 0-36 drops and 0.6 s. Accepting until EAGAIN instead of 100
# per wake-up changed nothing measurable at either backlog.
LISTEN_BACKLOG = socket.SOMAXCONN


def _backlog_signature(stock):
    """stock's signature with LISTEN_BACKLOG as backlog's default."""
    sig = inspect.signature(stock)
    return sig.replace(
        parameters=[
            p.replace(default=LISTEN_BACKLOG) if p.name == "backlog" else p
            for p in sig.parameters.values()
        ]
    )


# accept() errors asyncio answers by pausing the listener, not raising.
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Loop(_goloop.LoopCore, unix_events.SelectorEventLoop):
    """An asyncio event loop driven by goloop's Go engine."""

    def __init__(self):
        super().__init__(EngineSelector(self))
        self._slow_tracker = None  # goloop.track_slow_callbacks()
        # The self-pipe only carries signal numbers (call_soon_threadsafe
        # wakes the engine's eventfd), so it does not count as user I/O.
        self._set_internal_fd(self._ssock.fileno())

    # -- run ------------------------------------------------------------------

    def run_forever(self):
        """Run until stop() is called."""
        if hasattr(base_events.BaseEventLoop, "_run_forever_setup"):  # 3.13+
            try:
                self._run_forever_setup()
                self._run_native()
            finally:
                self._run_forever_cleanup()
            return
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_native()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def _run_native(self):
        claimed = self._claim_signal_wakeup()
        try:
            self._run_until_stopped()
        finally:
            if claimed:
                self._release_signal_wakeup()

    def _claim_signal_wakeup(self):
        """Route signals to the self-pipe while the loop runs.

        The Go runtime's threads may receive a process-directed signal
        (Ctrl+C) instead of the loop thread, and then epoll_wait is not
        interrupted. With the wakeup fd set, Python's C signal handler
        writes the signal number to the self-pipe, which wakes the poller;
        the loop then runs the Python-level handler right after the poll,
        as the stock loop does when select() returns EINTR.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        fd = self._csock.fileno()
        try:
            old = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            return False
        if old not in (-1, fd):
            signal.set_wakeup_fd(old)  # someone else's; leave it alone
            return False
        return old == -1

    def _release_signal_wakeup(self):
        if self._signal_handlers or self._csock is None:
            return  # add_signal_handler owns the wakeup fd now
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError):
            pass

    # -- slow paths called from C ---------------------------------------------

    def _call_soon_slow(self, callback, args, context, method):
        """call_soon & co. in debug mode: asyncio's checks and tracebacks."""
        if method != "call_soon_threadsafe":
            self._check_thread()
        self._check_callback(callback, method)
        handle = events.Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
            # Stock takes the stack (DEBUG_STACK_DEPTH frames) two frames
            # below the caller (call_soon, _call_soon) and drops both; here
            # only this method sits in between (call_soon is C), so a deep
            # stack would keep one frame more than stock's.
            del handle._source_traceback[: -(constants.DEBUG_STACK_DEPTH - 2)]
        self._add_callback(handle)
        return handle

    def _call_at_slow(self, when, callback, args, context, method):
        """call_at/call_later in debug mode: asyncio's checks and tracebacks."""
        self._check_thread()
        self._check_callback(callback, "call_at")
        timer = _goloop.TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
            # Stock's stack is taken below call_at (and call_later), which
            # it then drops: from a deep stack, one frame fewer than
            # DEBUG_STACK_DEPTH for call_at, two for call_later (C here).
            below = 2 if method == "call_later" else 1
            del timer._source_traceback[: -(constants.DEBUG_STACK_DEPTH - below - 1)]
        self._schedule_timer(timer)
        return timer

    def _slow_callback(self, handle, seconds):
        """A callback ran at least track_slow_callbacks()'s threshold."""
        if self._slow_tracker is not None:
            self._slow_tracker.record(handle, seconds)

    def _callback_error(self, handle, exc):
        """Handle._run's except branch, for a callback that raised."""
        cb = format_helpers._format_callback_source(
            handle._callback, handle._args, **_debug_kw(self)
        )
        context = {
            "message": f"Exception in callback {cb}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def _run_handle_debug(self, handle):
        """BaseEventLoop._run_once's debug branch: time each callback."""
        try:
            self._current_handle = handle
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                base_events.logger.warning(
                    "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
                )
        finally:
            self._current_handle = None
            # As in BaseEventLoop._run_once: a traceback may keep this
            # frame alive (f_back of the callback's frame), so drop the
            # handle or it keeps e.g. a finished task alive in a cycle.
            handle = None  # noqa: F841

    # -- transports -------------------------------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        if self._debug:  # asyncio's own, for its debug logging and tracebacks
            transport = super()._make_socket_transport(
                sock, protocol, waiter, extra=extra, server=server
            )
            set_tcp_nodelay(sock)  # uvloop's rule, as on goloop's own transport
            return transport
        return self._socket_transport(sock, protocol, waiter, extra, server)

    def _socket_transport(self, sock, protocol, waiter=None, extra=None, server=None):
        # asyncio 3.12+ refuses an fd that already has a transport here.
        if sys.version_info >= (3, 12):
            self._ensure_fd_no_transport(sock)
        if not _native_io(sock, _STREAM_IO):
            transport = selector_events._SelectorSocketTransport(
                self, sock, protocol, waiter, extra, server
            )
            set_tcp_nodelay(sock)  # uvloop's rule, as on goloop's own transport
            return transport
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _plain_transport_factory(self):
        """Whether transports come from SocketTransport unchanged (no
        subclass or instance patch replaces the factory methods), so C may
        make them."""
        cls, own = type(self), vars(self)
        return (
            cls._make_socket_transport is Loop._make_socket_transport
            and cls._socket_transport is Loop._socket_transport
            and "_make_socket_transport" not in own  # mock.patch.object(loop, ...)
            and "_socket_transport" not in own
        )

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if (
            self._debug
            or sock.family not in _DATAGRAM_FAMILIES
            or not _native_io(sock, _DATAGRAM_IO)
        ):
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        # asyncio 3.12+ refuses an fd that already has a transport here.
        if sys.version_info >= (3, 12):
            self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        # It loses no data on write() + close() from resume_writing()
        # (goloop.pipes, a README-listed difference).
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    # backlog is keyword-only in asyncio's create_server and
    # create_unix_server on every version: the rest passes through as is.
    async def create_server(self, *args, backlog=LISTEN_BACKLOG, **kwargs):
        return await super().create_server(*args, backlog=backlog, **kwargs)

    async def create_unix_server(self, *args, backlog=LISTEN_BACKLOG, **kwargs):
        return await super().create_unix_server(*args, backlog=backlog, **kwargs)

    create_server.__signature__ = _backlog_signature(base_events.BaseEventLoop.create_server)
    create_server.__doc__ = base_events.BaseEventLoop.create_server.__doc__
    create_unix_server.__signature__ = _backlog_signature(
        unix_events._UnixSelectorEventLoop.create_unix_server
    )
    create_unix_server.__doc__ = unix_events._UnixSelectorEventLoop.create_unix_server.__doc__

    def _accept_connection(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        """asyncio's accept loop, minus a Task per plain connection.

        asyncio wraps each accepted connection in a Task running
        ``_accept_connection2`` (protocol factory, transport, await the
        transport's "connection made" future). For a plain socket outside
        debug mode everything that Task does after its first step is wait,
        so goloop makes the protocol and transport at once: no Task,
        coroutine or future per connection, which halves the accept path's
        CPU and keeps a burst of accepts from fragmenting the heap with
        short-lived objects. TLS and debug mode take asyncio's own path.
        """
        if sslcontext is not None or self._debug:
            return super()._accept_connection(
                protocol_factory,
                sock,
                sslcontext,
                server,
                backlog,
                ssl_handshake_timeout,
                ssl_shutdown_timeout,
            )
        if type(sock) is socket.socket and self._plain_transport_factory():
            # The same loop in C (pybridge/accept.c); False: an accept
            # error (EMFILE & co.) for the loop below, which meets it again.
            if _goloop._accept_stream(
                self, sock, protocol_factory, server, backlog, SocketTransport
            ):
                return None
        accept = sock.accept if type(sock) is not socket.socket else lambda: _accept_raw(sock)
        for _ in range(backlog):
            try:
                conn, addr = accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return None  # the accept queue is empty
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise  # the loop logs it and goes on, as asyncio's
                self._pause_accepting(
                    exc,
                    protocol_factory,
                    sock,
                    sslcontext,
                    server,
                    backlog,
                    ssl_handshake_timeout,
                    ssl_shutdown_timeout,
                )
                return None
            try:
                self._make_socket_transport(
                    conn, protocol_factory(), extra={"peername": addr}, server=server
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                # asyncio reports these only in debug mode, which does not
                # come here; the socket is left to the garbage collector.
                pass
        return None

    def _pause_accepting(self, exc, protocol_factory, sock, *args):
        """asyncio's answer to EMFILE & co. on accept, given once: report
        it, stop watching the listener (Linux keeps reporting it ready)
        and start serving again after ACCEPT_RETRY_DELAY. asyncio's loop
        goes on after that and tries accept() up to `backlog` times, each
        failure reported with a retry timer of its own, and every timer
        re-arms the listener: 500-700 reports in 2.5 s out of descriptors with
        300 clients waiting (backlog 100), 40,960 with backlog 4096
        (tests/test_net_faults.py, the EMFILE storm)."""
        self.call_exception_handler(
            {
                "message": "socket.accept() out of system resource",
                "exception": exc,
                "socket": trsock.TransportSocket(sock),
            }
        )
        self._remove_reader(sock.fileno())
        self.call_later(
            constants.ACCEPT_RETRY_DELAY, self._start_serving, protocol_factory, sock, *args
        )

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        **timeouts,
    ):
        # asyncio's, with goloop's TLS protocol (goloop.sslproto: its
        # per-record path in C) over goloop's socket transport (records are
        # received straight into the protocol's buffer).
        if self._debug:
            transport = super()._make_ssl_transport(
                rawsock,
                protocol,
                sslcontext,
                waiter,
                server_side=server_side,
                server_hostname=server_hostname,
                extra=extra,
                server=server,
                **timeouts,
            )
            set_tcp_nodelay(rawsock)
            return transport
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts
        )
        self._socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _native_sock_io(self, sock):
        """Whether goloop's C sock_* paths (pybridge/sockops.c) may serve
        sock: a plain non-blocking socket outside debug mode. Others (SSL
        sockets, subclasses, blocking sockets, debug mode) take asyncio's
        own sock_* code, with its checks and messages."""
        return not self._debug and type(sock) is socket.socket and sock.gettimeout() == 0

    # Each of these is asyncio's method step for step: try the syscall, and
    # if there is nothing to do yet, wait on the fd. The try reports
    # "nothing yet" as None instead of raising BlockingIOError, the wait is
    # a native watch resolving the future (no Handle, bound method or
    # partial), and NotImplemented from C (something socket's own method
    # would treat differently) sends the call to asyncio's code.

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from a non-blocking socket."""
        if not self._native_sock_io(sock):
            return await super().sock_recv(sock, n)
        fd = sock.fileno()
        data = self._sock_recv_now(fd, n)
        if data is not None:
            return data
        return await self._sock_recv_wait(sock, fd, n)

    async def sock_recv_into(self, sock, buf):
        """Receive into buf from a non-blocking socket; the byte count."""
        if not self._native_sock_io(sock):
            return await super().sock_recv_into(sock, buf)
        fd = sock.fileno()
        nbytes = self._sock_recv_into_now(fd, buf)
        if nbytes is not None:
            return nbytes
        return await self._sock_recv_into_wait(sock, fd, buf)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram of up to bufsize bytes: (data, address)."""
        if not self._native_sock_io(sock):
            return await super().sock_recvfrom(sock, bufsize)
        fd = sock.fileno()
        result = self._sock_recvfrom_now(sock, fd, bufsize)
        if result is NotImplemented:
            return await super().sock_recvfrom(sock, bufsize)
        if result is not None:
            return result
        return await self._sock_recvfrom_wait(sock, fd, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (byte count, address)."""
        if not self._native_sock_io(sock):
            return await super().sock_recvfrom_into(sock, buf, nbytes)
        size = nbytes or len(buf)  # asyncio: `if not nbytes: nbytes = len(buf)`
        fd = sock.fileno()
        result = self._sock_recvfrom_into_now(sock, fd, buf, size)
        if result is NotImplemented:
            return await super().sock_recvfrom_into(sock, buf, nbytes)
        if result is not None:
            return result
        return await self._sock_recvfrom_into_wait(sock, fd, buf, size)

    async def sock_sendall(self, sock, data):
        """Send all of data on a connected non-blocking socket."""
        if not self._native_sock_io(sock):
            return await super().sock_sendall(sock, data)
        fut = self._sock_sendall_native(sock, sock.fileno(), data)
        if fut is NotImplemented:
            return await super().sock_sendall(sock, data)
        if fut is not None:
            return await fut
        return None

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address; the byte count sent."""
        if not self._native_sock_io(sock):
            return await super().sock_sendto(sock, data, address)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_sendto_wait(sock, sock.fileno(), data, address)

    async def sock_connect(self, sock, address):
        """Connect a non-blocking socket to address."""
        if not self._native_sock_io(sock):
            return await super().sock_connect(sock, address)
        if sock.family == socket.AF_INET or (
            base_events._HAS_IPv6 and sock.family == socket.AF_INET6
        ):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            _, _, _, _, address = resolved[0]
        fd = sock.fileno()
        # sock.connect(address) without raising BlockingIOError: connect_ex
        # returns what connect would raise (its address errors still raise).
        err = sock.connect_ex(address)
        if err == 0:
            return None
        if err not in connect.CONNECT_PENDING:
            raise OSError(err, os.strerror(err))
        fut = self._sock_connect_wait(sock, fd, address)
        try:
            return await fut
        finally:
            fut = None  # as asyncio: no cycle through the exception

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address), conn non-blocking."""
        if not self._native_sock_io(sock):
            return await super().sock_accept(sock)
        fd = sock.fileno()
        result = self._sock_accept_now(sock, fd)
        if result is NotImplemented:
            return await super().sock_accept(sock)
        if result is not None:
            return result
        return await self._sock_accept_wait(sock, fd)

    # -- client connections (goloop.connect) ----------------------------------

    def _native_connect(self):
        """Whether goloop.connect may inline create_connection's steps:
        none of them replaced by a subclass or on the instance."""
        cls, base = type(self), base_events.BaseEventLoop
        own = (
            cls._ensure_resolved is base._ensure_resolved
            and cls._connect_sock is base._connect_sock
            and cls.sock_connect is Loop.sock_connect
            and cls._create_connection_transport is Loop._create_connection_transport
            and cls.create_future is Loop.create_future
            and cls._make_socket_transport is Loop._make_socket_transport
            and cls._socket_transport is Loop._socket_transport
        )
        return connect.native_ok(self, own)

    def _create_connection(
        self,
        protocol_factory,
        host,
        port,
        ssl,
        family,
        proto,
        flags,
        sock,
        local_addr,
        server_hostname,
        ssl_handshake_timeout,
        ssl_shutdown_timeout,
        happy_eyeballs_delay,
        interleave,
        all_errors,
    ):
        # The coroutine create_connection awaits (a plain function: a
        # coroutine frame less on each of the connect's task steps).
        if (
            ssl
            or sock is not None
            or server_hostname is not None
            or ssl_handshake_timeout is not None
            or ssl_shutdown_timeout is not None
            or (host is None and port is None)
            or not self._native_connect()
        ):
            kw = {"all_errors": all_errors} if sys.version_info >= (3, 12) else {}
            return super().create_connection(
                protocol_factory,
                host,
                port,
                ssl=ssl,
                family=family,
                proto=proto,
                flags=flags,
                sock=sock,
                local_addr=local_addr,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                happy_eyeballs_delay=happy_eyeballs_delay,
                interleave=interleave,
                **kw,
            )
        return connect.create_connection(
            self,
            protocol_factory,
            host,
            port,
            family,
            proto,
            flags,
            local_addr,
            interleave,
            all_errors,
            happy_eyeballs_delay,
        )

    if sys.version_info >= (3, 12):

        async def create_connection(
            self,
            protocol_factory,
            host=None,
            port=None,
            *,
            ssl=None,
            family=0,
            proto=0,
            flags=0,
            sock=None,
            local_addr=None,
            server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            happy_eyeballs_delay=None,
            interleave=None,
            all_errors=False,
        ):
            """Connect to a TCP server: (transport, protocol)."""
            return await self._create_connection(
                protocol_factory,
                host,
                port,
                ssl,
                family,
                proto,
                flags,
                sock,
                local_addr,
                server_hostname,
                ssl_handshake_timeout,
                ssl_shutdown_timeout,
                happy_eyeballs_delay,
                interleave,
                all_errors,
            )

    else:

        async def create_connection(
            self,
            protocol_factory,
            host=None,
            port=None,
            *,
            ssl=None,
            family=0,
            proto=0,
            flags=0,
            sock=None,
            local_addr=None,
            server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            happy_eyeballs_delay=None,
            interleave=None,
        ):
            """Connect to a TCP server: (transport, protocol)."""
            return await self._create_connection(
                protocol_factory,
                host,
                port,
                ssl,
                family,
                proto,
                flags,
                sock,
                local_addr,
                server_hostname,
                ssl_handshake_timeout,
                ssl_shutdown_timeout,
                happy_eyeballs_delay,
                interleave,
                False,
            )

    async def create_unix_connection(
        self,
        protocol_factory,
        path=None,
        *,
        ssl=None,
        sock=None,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Connect to a Unix stream server: (transport, protocol)."""
        if (
            path is None
            or ssl
            or sock is not None
            or server_hostname is not None
            or ssl_handshake_timeout is not None
            or ssl_shutdown_timeout is not None
            or not self._native_connect()
        ):
            # asyncio's, for its argument errors and TLS
            return await super().create_unix_connection(
                protocol_factory,
                path,
                ssl=ssl,
                sock=sock,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        return await connect.unix_connect(self, protocol_factory, path)

    create_unix_connection.__doc__ = (
        unix_events._UnixSelectorEventLoop.create_unix_connection.__doc__
    )

    async def _create_connection_transport(
        self,
        sock,
        protocol_factory,
        ssl,
        server_hostname,
        server_side=False,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        # asyncio's, minus the waiter future for a plain socket (see
        # goloop.connect.plain_transport); create_unix_connection and a
        # create_connection(sock=...) come here.
        if ssl or not self._native_connect():
            return await super()._create_connection_transport(
                sock,
                protocol_factory,
                ssl,
                server_hostname,
                server_side,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        return await connect.plain_transport(self, sock, protocol_factory)

    # -- name resolution --------------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo's answer, resolved on a goroutine of the Go
        engine instead of asyncio's thread pool; answered at once when
        libc needs no lookup (an IP address and a numeric port). Debug
        mode, the fork-safe C engine, a socket.getaddrinfo replaced by the
        program and arguments socket.getaddrinfo would reject take
        asyncio's path (pybridge/resolve.c decides)."""
        answer = self._getaddrinfo(host, port, family, type, proto, flags)
        if answer is None:
            return await super().getaddrinfo(
                host, port, family=family, type=type, proto=proto, flags=flags
            )
        if answer.__class__ is list:
            return answer
        return await answer

    async def getnameinfo(self, sockaddr, flags=0):
        """socket.getnameinfo's answer, the lookup on a goroutine of the Go
        engine (the argument checks, and the numeric parse of the address,
        are made here first, raising what socket.getnameinfo raises)."""
        if not self._debug and resolve.own_getnameinfo():
            fut = self.create_future()
            if self._getnameinfo_start(fut, sockaddr, flags):
                return await fut
        return await super().getnameinfo(sockaddr, flags)

    # -- subprocesses -----------------------------------------------------------

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        # Started by the Go engine and reaped through a pidfd on this loop
        # (goloop.process); asyncio's own path where that cannot be exact.
        transport = await process.make_subprocess_transport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, kwargs
        )
        if transport is not None:
            return transport
        return await super()._make_subprocess_transport(
            protocol, args, shell, stdin, stdout, stderr, bufsize, extra=extra, **kwargs
        )

    def close(self):
        super().close()
        process.orphan_children(self)  # reaped by the Go engine from now on

    # -- signals ----------------------------------------------------------------

    def add_signal_handler(self, sig, callback, *args):
        super().add_signal_handler(sig, callback, *args)
        # Signal numbers now arrive through the self-pipe: poll it even
        # while callbacks are ready, as for any user fd.
        self._set_internal_fd(-1)

    def remove_signal_handler(self, sig):
        removed = super().remove_signal_handler(sig)
        if not self._signal_handlers and self._ssock is not None:
            self._set_internal_fd(self._ssock.fileno())
        return removed


def _debug_kw(loop):
    # format_helpers._format_callback_source gained `debug` in 3.13.
    if sys.version_info >= (3, 13):
        return {"debug": loop.get_debug()}
    return {}
