"""Client connections: loop.create_connection without asyncio's layers.

asyncio's create_connection awaits a coroutine per step (``_ensure_resolved``
twice, ``_connect_sock``, ``sock_connect``, ``_create_connection_transport``)
and a future per wait (the connect, then the transport's "connection made"
waiter). Here the steps are inlined in one coroutine: a numeric address is
taken as ``_ensure_resolved`` would take it without awaiting anything, the
socket is made in C (``_goloop._socket``), the connect is tried with
``connect_ex`` (no BlockingIOError raised and caught) and waited on
through sockops.c's native watch (for one numeric address its callback
also makes the transport), and a transport made here is awaited by
yielding one loop iteration (its ``connection_made`` was queued first, so
it has run when the coroutine resumes, as stock's waiter guarantees)
instead of through a waiter future. create_unix_connection with a path
is inlined the same way (``unix_connect``).

The order of side effects, the exceptions and their messages are
asyncio's, per interpreter version (3.12 added ``all_errors``, 3.13
changed the bind-failure message). Loops whose connect steps are replaced (a
subclass, ``mock.patch.object`` on the loop, a patched
``asyncio.base_events.socket``), debug mode and TLS take
asyncio's own code (``Loop.create_connection`` decides; see
``native_ok``). Happy eyeballs races the addresses with callbacks
(``_Race``) instead of asyncio.staggered's Task per attempt.
"""

import errno
import functools
import inspect
import os
import socket
import sys
import types
from asyncio import base_events, staggered

from . import _goloop
from .stream import SocketTransport

# connect()'s errnos for "in progress" (BlockingIOError, InterruptedError:
# asyncio waits for writability on these).
CONNECT_PENDING = frozenset(
    (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR)
)

# Loop attributes asyncio's create_connection reaches through self; an
# instance attribute of one of these names (mock.patch.object) means the
# program wants its replacement called.
_STEPS = (
    "_ensure_resolved",
    "_connect_sock",
    "sock_connect",
    "_create_connection_transport",
    "_make_socket_transport",
    "_socket_transport",
    "create_future",
)

_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
# socket.socket as imported: while it is still the module's, client
# sockets are made by _goloop._socket (no socket.py __init__ frame); a
# replaced one (mock.patch("socket.socket")) is called, as asyncio calls it.
_SOCKET = socket.socket
_UNIX_INFO = (socket.AF_UNIX, socket.SOCK_STREAM, 0, "", "")
_bind_detail_str = None  # see bind_error_detail


def bind_error_detail(exc):
    """The end of _connect_sock's bind-failure message: exc.strerror.lower()
    up to 3.12.x, str(exc).lower() in 3.13 (read from the running
    interpreter's asyncio, on the first bind failure, where available)."""
    global _bind_detail_str
    if _bind_detail_str is None:
        try:
            src = inspect.getsource(base_events.BaseEventLoop._connect_sock)
            _bind_detail_str = "str(exc).lower()" in src
        except (OSError, TypeError):
            _bind_detail_str = sys.version_info >= (3, 13)
    return str(exc).lower() if _bind_detail_str else exc.strerror.lower()


@types.coroutine
def one_iteration():
    """Give the loop one iteration (a bare yield: the Task reschedules its
    step with call_soon, behind the callbacks already queued)."""
    yield


def native_ok(loop, own_class_methods):
    """Whether loop's connect steps are goloop's and asyncio's own, so the
    inlined path does what they would. own_class_methods: the caller's
    check that its class replaces none of them."""
    if loop._debug or not own_class_methods or base_events.socket is not socket:
        return False
    own = vars(loop)
    # a lookup per name: intersecting with the instance dict's keys walked
    # them all, per connection
    for name in _STEPS:
        if name in own:
            return False
    return True


def numeric_infos(address, family, proto):
    """_ensure_resolved's answer when it needs no lookup, else None."""
    host, port = address[:2]
    info = base_events._ipaddr_info(host, port, family, socket.SOCK_STREAM, proto, *address[2:])
    return None if info is None else [info]


def _new_socket(addr_info):
    """The socket _connect_sock makes for addr_info. SOCK_NONBLOCK: made
    non-blocking (timeout 0.0, its type still SOCK_STREAM) as asyncio's
    setblocking(False) leaves it, without that call's ioctl;
    plain_transport skips the second one."""
    family, type_, proto, _, _ = addr_info
    if socket.socket is _SOCKET and _NONBLOCK:
        return _goloop._socket(family, type_ | _NONBLOCK, proto)
    sock = socket.socket(family=family, type=type_ | _NONBLOCK, proto=proto)
    if not _NONBLOCK:
        sock.setblocking(False)
    return sock


def _bind_local(sock, family, local_addr_infos, my_exceptions):
    """_connect_sock's bind to the first local address of sock's family."""
    if local_addr_infos is None:
        return
    for lfamily, _, _, _, laddr in local_addr_infos:
        # skip local addresses of different family
        if lfamily != family:
            continue
        try:
            sock.bind(laddr)
            break
        except OSError as exc:
            detail = bind_error_detail(exc)
            msg = f"error while attempting to bind on address {laddr!r}: {detail}"
            exc = OSError(exc.errno, msg)
            my_exceptions.append(exc)
    else:  # all bind attempts failed
        if my_exceptions:
            raise my_exceptions.pop()
        else:
            raise OSError(f"no matching local address with {family=} found")


async def connect_sock(loop, exceptions, addr_info, local_addr_infos=None, numeric=False):
    """BaseEventLoop._connect_sock with sock_connect inlined. numeric:
    addr_info is _ipaddr_info's own answer, which sock_connect's
    _ensure_resolved would give again unchanged."""
    my_exceptions = []
    exceptions.append(my_exceptions)
    address = addr_info[4]
    sock = None
    try:
        sock = _new_socket(addr_info)
        _bind_local(sock, addr_info[0], local_addr_infos, my_exceptions)
        if numeric:
            await _connect_resolved(loop, sock, address)
        else:
            await _sock_connect(loop, sock, address)
        return sock
    except OSError as exc:
        my_exceptions.append(exc)
        if sock is not None:
            sock.close()
        raise
    except:
        if sock is not None:
            sock.close()
        raise
    finally:
        exceptions = my_exceptions = None


async def _sock_connect(loop, sock, address):
    """Loop.sock_connect for the socket connect_sock just made."""
    if sock.family == socket.AF_INET or (base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
        host, port = address[:2]
        info = base_events._ipaddr_info(
            host, port, sock.family, sock.type, sock.proto, *address[2:]
        )
        if info is None:
            resolved = await loop._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=loop
            )
            info = resolved[0]
        address = info[4]
    await _connect_resolved(loop, sock, address)


async def _connect_resolved(loop, sock, address):
    """sock.connect(address) and its wait, the address as resolved."""
    err = sock.connect_ex(address)
    if err == 0:
        return
    if err not in CONNECT_PENDING:
        raise OSError(err, os.strerror(err))
    fut = loop._sock_connect_wait(sock, sock.fileno(), address)
    try:
        await fut
    finally:
        fut = None  # as asyncio: no cycle through the exception


def raise_connect_errors(exceptions, all_errors):
    """create_connection's report when every address failed."""
    exceptions = [exc for sub in exceptions for exc in sub]
    try:
        if all_errors:
            raise ExceptionGroup("create_connection failed", exceptions)  # noqa: F821 - 3.11+
        if len(exceptions) == 1:
            raise exceptions[0]
        # If they all have the same str(), raise one.
        model = str(exceptions[0])
        if all(str(exc) == model for exc in exceptions):
            raise exceptions[0]
        # Raise a combined exception so the user can see all
        # the various error messages.
        raise OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in exceptions)))
    finally:
        exceptions = None


def create_connection(
    loop,
    protocol_factory,
    host,
    port,
    family,
    proto,
    flags,
    local_addr,
    interleave,
    all_errors,
    happy_eyeballs_delay=None,
):
    """BaseEventLoop.create_connection for host/port without TLS (the
    caller checked its argument errors first, as asyncio does before
    anything else): the coroutine to await. happy_eyeballs_delay:
    staggered attempts, as asyncio.staggered.staggered_race makes them,
    without its Tasks."""
    info = base_events._ipaddr_info(host, port, family, socket.SOCK_STREAM, proto)
    if info is not None and local_addr is None:
        # One numeric address and nothing to bind: no lookup and no race
        # (a single attempt is all staggered_race would make).
        return _connect_numeric(loop, protocol_factory, info, all_errors)
    return _connect_general(
        loop,
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
        info,
    )


async def _connect_general(
    loop,
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
    info,
):
    """create_connection's every other case: a lookup, several
    addresses, local_addr. info: _ipaddr_info's answer for (host, port),
    or None."""
    if happy_eyeballs_delay is not None and interleave is None:
        # If using happy eyeballs, default to interleave addresses by family
        interleave = 1
    infos = None if info is None else [info]
    numeric = infos is not None
    if not numeric:
        infos = await loop._ensure_resolved(
            (host, port),
            family=family,
            type=socket.SOCK_STREAM,
            proto=proto,
            flags=flags,
            loop=loop,
        )
    if not infos:
        raise OSError("getaddrinfo() returned empty list")

    if local_addr is not None:
        laddr_infos = numeric_infos(local_addr, family, proto)
        if laddr_infos is None:
            laddr_infos = await loop._ensure_resolved(
                local_addr,
                family=family,
                type=socket.SOCK_STREAM,
                proto=proto,
                flags=flags,
                loop=loop,
            )
        if not laddr_infos:
            raise OSError("getaddrinfo() returned empty list")
    else:
        laddr_infos = None

    if interleave:
        infos = base_events._interleave_addrinfos(infos, interleave)
    numeric = numeric and len(infos) == 1

    exceptions = []
    sock = None
    if happy_eyeballs_delay is None:
        for addrinfo in infos:
            try:
                sock = await connect_sock(loop, exceptions, addrinfo, laddr_infos, numeric)
                break
            except OSError:
                continue
    else:
        targets = _numeric_targets(infos)
        if targets is None:  # sock_connect would resolve one again: asyncio's race
            sock, _, _ = await staggered.staggered_race(
                (
                    functools.partial(loop._connect_sock, exceptions, addrinfo, laddr_infos)
                    for addrinfo in infos
                ),
                happy_eyeballs_delay,
                loop=loop,
            )
        else:
            race = _Race(loop, targets, laddr_infos, happy_eyeballs_delay, exceptions)
            sock = await race.run()
    if sock is None:
        try:
            raise_connect_errors(exceptions, all_errors)
        finally:
            exceptions = None
    return await plain_transport(loop, sock, protocol_factory, made_nonblocking=True)


async def _connect_numeric(loop, protocol_factory, info, all_errors):
    """create_connection for a single numeric address: _connect_sock's
    connect (sock_connect would take the address as it is) and
    _create_connection_transport's transport, in this one frame. A
    connect in progress is waited for by sockops.c's
    _sock_connect_stream, which makes the transport in the connect's own
    callback: the task resumes with connection_made run, one loop
    iteration sooner than through a transport made here."""
    address = info[4]
    sock = None
    failed = None
    made = None
    try:
        sock = _new_socket(info)
        err = sock.connect_ex(address)
        if err != 0:
            if err not in CONNECT_PENDING:
                raise OSError(err, os.strerror(err))
            fut = loop._sock_connect_stream(
                sock, sock.fileno(), address, protocol_factory, SocketTransport
            )
            try:
                made = await fut
            except OSError:
                raise
            except:
                # cancelled once connected: the transport owns the socket
                # and is closed, as stock's `await waiter` handler closes it
                if fut.done() and not fut.cancelled() and fut.result()[0] is not None:
                    fut.result()[0].close()
                    sock = None
                raise
            finally:
                fut = None  # as asyncio: no cycle through the exception
    except OSError as exc:
        if sock is not None:
            sock.close()
        failed = [[exc]]
    except:
        if sock is not None:
            sock.close()
        raise
    if failed is not None:
        # raised outside the handler, as asyncio raises it (no __context__)
        try:
            raise_connect_errors(failed, all_errors)
        finally:
            failed = None
    if made is not None:
        transport, protocol = made
        if transport is None:
            # what protocol_factory() or the transport raised, raised
            # here as stock raises it (the socket left as stock leaves it)
            try:
                raise protocol
            finally:
                made = protocol = None
        return transport, protocol
    protocol = protocol_factory()  # connected at once
    transport = _transport(loop, sock, protocol)
    try:
        await one_iteration()
    except:
        transport.close()
        raise
    return transport, protocol


def _transport(loop, sock, protocol):
    """loop._make_socket_transport(sock, protocol) for the socket this
    module made (an exact socket.socket), on a loop native_ok accepted
    (its transport factory is Loop's): SocketTransport itself, without
    the two factory frames."""
    if _ENSURE_NO_TRANSPORT:
        loop._ensure_fd_no_transport(sock)
    return SocketTransport(loop, sock, protocol, None, None, None)


# asyncio 3.12+ refuses an fd that already has a transport (Loop._socket_transport)
_ENSURE_NO_TRANSPORT = sys.version_info >= (3, 12)


async def unix_connect(loop, protocol_factory, path):
    """create_unix_connection(protocol_factory, path) without TLS:
    asyncio's steps (os.fspath, the socket, sock_connect,
    _create_connection_transport) in this one frame, the socket made
    non-blocking by SOCK_NONBLOCK and the transport awaited as in
    _connect_numeric. A Unix connect to a listener with room in its
    queue completes at once."""
    path = os.fspath(path)
    sock = _new_socket(_UNIX_INFO)
    try:
        await _connect_resolved(loop, sock, path)
    except:
        sock.close()
        raise
    protocol = protocol_factory()
    transport = _transport(loop, sock, protocol)
    try:
        await one_iteration()
    except:
        transport.close()
        raise
    return transport, protocol


async def plain_transport(loop, sock, protocol_factory, made_nonblocking=False):
    """BaseEventLoop._create_connection_transport without TLS, minus its
    waiter future: goloop's transport queues connection_made in its
    constructor, so one iteration later it has run. made_nonblocking:
    connect_sock made sock non-blocking, so setblocking(False) is moot."""
    if not made_nonblocking:
        sock.setblocking(False)
    protocol = protocol_factory()
    transport = loop._make_socket_transport(sock, protocol)
    try:
        await one_iteration()
    except:
        transport.close()
        raise
    return transport, protocol


def _numeric_targets(infos):
    """[(addr_info, connect address)] when sock_connect would take every
    address as it is (no lookup), else None."""
    targets = []
    for info in infos:
        family, type_, proto, _, address = info
        if family == socket.AF_INET or (base_events._HAS_IPv6 and family == socket.AF_INET6):
            host, port = address[:2]
            resolved = base_events._ipaddr_info(host, port, family, type_, proto, *address[2:])
            if resolved is None:
                return None
            address = resolved[4]
        targets.append((info, address))
    return targets


class _Race:
    """asyncio.staggered.staggered_race over _connect_sock, with callbacks
    instead of a Task per attempt: an attempt starts when the one before
    it fails or has been connecting for `delay` seconds; the first
    connection wins and the others are cancelled (their sockets closed).
    Each attempt's errors go into `exceptions` as _connect_sock puts them.
    Unlike asyncio 3.11-3.12.1, a second attempt that also connected
    before it could be cancelled has its socket closed, not leaked."""

    def __init__(self, loop, targets, laddr_infos, delay, exceptions):
        self.loop = loop
        self.targets = targets
        self.laddr_infos = laddr_infos
        self.delay = delay
        self.exceptions = exceptions
        self.next = 0  # index of the next attempt to start
        self.timer = None
        self.pending = {}  # attempt index -> (sock, connect future, its errors)
        self.done = loop.create_future()  # the winning socket, or None

    async def run(self):
        try:
            self.start_next()
            return await self.done
        except BaseException:
            self.stop()
            if self.done.done() and not self.done.cancelled():
                sock = self.done.result()
                if sock is not None:
                    sock.close()
            raise

    def stop(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for _, fut, _ in list(self.pending.values()):
            fut.cancel()  # its done-callback closes the socket

    def start_next(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while not self.done.done() and self.next < len(self.targets):
            index = self.next
            self.next += 1
            info, address = self.targets[index]
            my_exceptions = []
            self.exceptions.append(my_exceptions)
            sock = None
            try:
                sock = _new_socket(info)
                _bind_local(sock, info[0], self.laddr_infos, my_exceptions)
                err = sock.connect_ex(address)
                if err != 0 and err not in CONNECT_PENDING:
                    raise OSError(err, os.strerror(err))
            except OSError as exc:
                my_exceptions.append(exc)
                if sock is not None:
                    sock.close()
                continue  # failed at once: the next starts now
            except BaseException as exc:
                if sock is not None:
                    sock.close()
                self.stop()
                self.done.set_exception(exc)
                return
            if err == 0:
                self.win(sock)
                return
            fut = self.loop._sock_connect_wait(sock, sock.fileno(), address)
            self.pending[index] = (sock, fut, my_exceptions)
            fut.add_done_callback(functools.partial(self.attempt_done, index))
            if self.next < len(self.targets):
                self.timer = self.loop.call_later(self.delay, self.start_next)
            return
        if not self.pending and not self.done.done():
            self.done.set_result(None)  # every attempt failed

    def attempt_done(self, index, fut):
        sock, _, my_exceptions = self.pending.pop(index)
        if self.done.done() or fut.cancelled():
            sock.close()
            return
        exc = fut.exception()
        if exc is None:
            self.win(sock)
            return
        my_exceptions.append(exc)
        sock.close()
        if index == self.next - 1:
            self.start_next()  # the latest attempt failed: the next now
        elif not self.pending and self.next == len(self.targets):
            self.done.set_result(None)

    def win(self, sock):
        self.done.set_result(sock)
        self.stop()
