"""goloop's socket stream transport (TCP and Unix sockets).

The per-event half (recv and the protocol call, send, the write buffer,
flow-control thresholds) is C: ``_goloop.SocketTransportCore`` in
pybridge/stream.c, registered in the loop's fd tables as a native watch
instead of a Handle; so are the steps every connection takes (constructor,
close, EOF, connection_lost: pybridge/stream_conn.c). The rarer
per-connection paths below are asyncio's own code: methods of
``selector_events._SelectorSocketTransport`` (found through its MRO) are
borrowed as plain functions wherever they do not touch asyncio's Python
write buffer, so messages and behaviour follow the running interpreter's
asyncio, version by version. The class derives from ``asyncio.Transport``,
so ``isinstance`` checks hold.
"""

import _socket
import socket
import sys
from asyncio import constants, selector_events, transports

from . import _goloop

_SocketTransport = selector_events._SelectorSocketTransport

# The abstract interfaces, whose methods raise NotImplementedError.
_INTERFACES = (
    transports.BaseTransport,
    transports.ReadTransport,
    transports.WriteTransport,
    transports.Transport,
)


def _borrow(name):
    """asyncio's ``_SelectorSocketTransport.<name>``, wherever in its MRO
    the running interpreter defines it: methods move between
    ``_SelectorTransport`` and ``_SelectorSocketTransport`` within a minor
    version (pause_reading & co. are on the latter in 3.11.2, on the former
    in 3.11.7). An abstract interface's NotImplementedError stub is not
    borrowed."""
    owner = next(c for c in _SocketTransport.__mro__ if name in vars(c))
    if owner in _INTERFACES:
        raise ImportError(f"goloop: asyncio's socket transport has no {name} of its own")
    return getattr(_SocketTransport, name)


# socket.socket's family and type properties convert to enums on every
# read (~0.35 us each); the C type's own descriptors give the same ints.
raw_family = _socket.socket.family.__get__
raw_type = _socket.socket.type.__get__
raw_proto = _socket.socket.proto.__get__


def set_tcp_nodelay(sock):
    """Turn TCP_NODELAY on for a TCP stream socket, whatever its proto.

    asyncio's ``base_events._set_nodelay`` sets it only when ``sock.proto
    == IPPROTO_TCP``, so a listening socket made as ``socket.socket(family)``
    (proto 0, as gunicorn's uvicorn workers and uvicorn ``--workers`` up to
    0.54 bind them)
    gives transports without it, and a response written in two pieces
    waits for the peer's delayed ACK (uvicorn: 1.0k requests/s against
    6.8k). uvloop sets it on every TCP transport; goloop follows uvloop (a
    listed difference from stock). Sockets that are not exact
    ``socket.socket`` objects come here (the C constructor sets it on
    plain ones itself, pybridge/stream_conn.c). A socket object that says
    AF_UNIX may be TCP all the same (``uvicorn --fd`` wraps the fd it is
    given as ``socket.fromfd(fd, AF_UNIX, SOCK_STREAM)``): the kernel is
    asked. A failure is an error only where asyncio would have tried too
    (proto IPPROTO_TCP).
    """
    family = sock.family
    if family == socket.AF_UNIX:
        try:
            family = sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        except OSError:
            return
    if family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        if sock.proto == socket.IPPROTO_TCP:
            raise


class SocketTransport(_goloop.SocketTransportCore):
    """A stream transport over a connected, non-blocking socket."""

    # State lives in the C core's slots; its __dict__ (instance attributes,
    # mock.patch.object) is only created when something is set on it, so an
    # idle connection costs one pointer for it.
    __slots__ = ("__weakref__",)

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    # __init__, set_protocol, close, _read_ready__on_eof,
    # _call_connection_lost, __del__, is_closing and get_protocol are C
    # (pybridge/stream_conn.c): asyncio's code step for step.

    # asyncio's own per-connection code, borrowed as is.
    __repr__ = _borrow("__repr__")
    abort = _borrow("abort")
    is_reading = _borrow("is_reading")
    pause_reading = _borrow("pause_reading")
    resume_reading = _borrow("resume_reading")
    _fatal_error = _borrow("_fatal_error")
    _read_ready__on_eof_debug = _borrow("_read_ready__on_eof")  # its debug log
    can_write_eof = _borrow("can_write_eof")
    get_write_buffer_limits = _borrow("get_write_buffer_limits")
    set_write_buffer_limits = _borrow("set_write_buffer_limits")
    _set_write_buffer_limits = _borrow("_set_write_buffer_limits")
    _maybe_pause_protocol = _borrow("_maybe_pause_protocol")
    _maybe_resume_protocol = _borrow("_maybe_resume_protocol")
    _reset_empty_waiter = _borrow("_reset_empty_waiter")

    # The rest is asyncio's code with its Python buffer replaced by the C one.

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self.get_write_buffer_size():
            self._clear_write_buffer()
            self._loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def write_eof(self):
        if self._closing or self._eof:
            return
        self._eof = True
        if not self.get_write_buffer_size():
            self._sock.shutdown(socket.SHUT_WR)

    if sys.version_info >= (3, 12):

        def writelines(self, list_of_data):
            if self._eof:
                raise RuntimeError("Cannot call writelines() after write_eof()")
            if self._empty_waiter is not None:
                raise RuntimeError("unable to writelines; sendfile is in progress")
            if not list_of_data:
                return
            if self._conn_lost:
                # asyncio 3.12+ raises here (its close() dropped
                # _write_ready, its connection_lost dropped _loop): the
                # same errors, without the writer it may leave spinning.
                if self._closed_by_close:
                    raise TypeError("'NoneType' object is not callable")
                if self._loop is None:
                    raise AttributeError("'NoneType' object has no attribute '_add_writer'")
                return
            self._writelines_buffered(list_of_data)

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self.get_write_buffer_size():
            self._empty_waiter.set_result(None)
        return self._empty_waiter
