/* The socket stream transport's per-connection half in C: asyncio's
 * _SelectorSocketTransport.__init__ (with _SelectorTransport's and
 * _FlowControlMixin's), close(), _read_ready__on_eof(),
 * _call_connection_lost() and __del__, step for step and in the same
 * order.
 *
 * Why C: a server making a connection per request ran this as four Python
 * frames plus WeakValueDictionary.__setitem__ and KeyedRef (two more) and
 * three socket method calls; the whole per-connection Python was ~6.7 us of
 * the 10 us user time goloop spent per connection against uvloop's 4
 * (perf of benchmarks/net echo_server.py under loadgen -churn). Here the
 * socket's names come from getsockname(2) directly, the loop's transport
 * map gets asyncio's own KeyedRef without the Python frames, and the three
 * call_soon calls go straight to the ready queue. Closing was five more
 * frames (on_eof, close, _call_connection_lost twice, socket.close) and
 * __del__ one at every transport's death.
 *
 * Sockets that are not exact socket.socket objects (mocks, subclasses) and
 * loops or maps a subclass replaced take the Python calls asyncio makes. */
#include "stream.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static PyObject *TransportSocket;    /* asyncio.trsock.TransportSocket */
static PyObject *BufferedProtocol;   /* asyncio.protocols.BufferedProtocol */
static PyObject *set_nodelay;        /* goloop.stream.set_tcp_nodelay, looked up at first use */
static PyObject *set_result_unless_cancelled; /* asyncio.futures */
static PyTypeObject *WeakValueDictionary, *KeyedRef; /* weakref */
static PyObject *call_soon_descr;    /* LoopCore.call_soon */
static PyObject *set_protocol_descr; /* SocketTransportCore.set_protocol */
static PyObject *remove_reader_descr, *remove_writer_descr; /* LoopCore's */
static PyObject *close_descr, *on_eof_descr; /* SocketTransportCore's */
static PyObject *transport_del;      /* selector_events._SelectorSocketTransport.__del__ */
static PyObject *raw_socket_close;   /* _socket.socket.close */
static PyObject *set_limits_fn;      /* _FlowControlMixin._set_write_buffer_limits */
static PyObject *high_water_default, *low_water_default;
static int asserts_enabled; /* not python -O */
int gl_attach_takes_transport; /* Server._attach/_detach(transport): 3.13, 3.12.x */
static PyObject *str_socket, *str_sockname, *str_peername, *str_getsockname,
    *str_getpeername, *str_attach, *str_transports, *str_connection_made, *str_add_reader,
    *str_read_ready, *str_pending_removals, *str_commit_removals, *str_data, *str_remove,
    *str_key, *str_call_soon, *str_set_protocol, *str_remove_reader, *str_remove_writer,
    *str_close, *str_detach, *str_closed, *str_io_refs, *str_eof_received, *str_fatal_error,
    *str_on_eof_debug, *str_connection_lost, *str_set_exception, *str_call_connection_lost, *str_on_eof,
    *str_set_limits, *str_ensure_fd_no_transport;
static PyObject *ensure_fd_no_transport_fn; /* BaseSelectorEventLoop's */

/* Whether obj's method `name` is still the C one, descr (no subclass
 * overrides it), so C may do its work without the method call. */
static int method_is(PyObject *obj, PyObject *name, PyObject *descr)
{
    return _PyType_Lookup(Py_TYPE(obj), name) == descr;
}

/* Whether the transport's own method `name` is still the C one, descr: no
 * subclass overrides it and no instance attribute shadows it (asyncio
 * looks these up on self, so mock.patch.object(transport, name) sees the
 * calls). 0 with an exception on error. */
static int own_method_is(gl_stream *self, PyObject *name, PyObject *descr)
{
    if (!method_is((PyObject *)self, name, descr)) {
        return 0;
    }
    return self->dict == NULL || PyDict_Contains(self->dict, name) == 0;
}

/* Whether loop.<name> is the C core's descr: a goloop loop whose class does
 * not override it and whose instance does not shadow it (as
 * mock.patch.object(loop, name) does). 0 with an exception on error. */
static int loop_core_method(PyObject *loop, PyObject *name, PyObject *descr)
{
    if (!PyObject_TypeCheck(loop, &gl_LoopCoreType) || !method_is(loop, name, descr)) {
        return 0;
    }
    PyObject *dict = PyObject_GenericGetDict(loop, NULL);
    if (dict == NULL) {
        PyErr_Clear(); /* no instance dict: nothing can shadow the method */
        return 1;
    }
    int shadowed = PyDict_Contains(dict, name);
    Py_DECREF(dict);
    return shadowed == 0;
}

/* loop.call_soon(callback, *args), without the method call when the loop's
 * call_soon is the C core's. */
static int call_soon(PyObject *loop, PyObject *callback, PyObject *const *args, Py_ssize_t n)
{
    if (loop_core_method(loop, str_call_soon, call_soon_descr)) {
        return gl_call_soon((gl_loop *)loop, callback, args, n);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *stack[4] = {loop, callback, n > 0 ? args[0] : NULL, n > 1 ? args[1] : NULL};
    PyObject *h = PyObject_VectorcallMethod(str_call_soon, stack, 2 + n, NULL);
    Py_XDECREF(h);
    return h == NULL ? -1 : 0;
}

/* extra[key] = sock.getsockname() / getpeername(), None on OSError. */
static int store_name(PyObject *extra, PyObject *key, PyObject *sock, int fd, long family,
                      int peer)
{
    PyObject *name;
    if (family >= 0 && gl_sockaddr_supported((int)family)) {
        name = gl_socket_name(fd, peer);
    } else {
        name = PyObject_CallMethodNoArgs(sock, peer ? str_getpeername : str_getsockname);
        if (name == NULL && PyErr_ExceptionMatches(PyExc_OSError)) {
            PyErr_Clear();
            name = Py_NewRef(Py_None);
        }
    }
    if (name == NULL) {
        return -1;
    }
    int r = PyObject_SetItem(extra, key, name);
    Py_DECREF(name);
    return r;
}

/* TCP_NODELAY on every TCP stream socket, whatever its proto, as uvloop
 * does (asyncio's _set_nodelay wants proto == IPPROTO_TCP, which sockets
 * made as socket.socket(family) lack: see goloop.stream.set_tcp_nodelay,
 * which sockets other than exact socket.socket objects go through), and
 * whatever family the socket object claims: a socket object says AF_UNIX
 * when its maker said so (uvicorn --fd wraps the fd it is given with
 * socket.fromfd(fd, AF_UNIX, SOCK_STREAM), TCP or not), so for those the
 * kernel is asked (one getsockopt per Unix stream connection). */
static PyObject *import_attr(const char *module, const char *name);

static int nodelay(PyObject *sock, int fd, long family)
{
    if (family < 0) {
        if (set_nodelay == NULL) {
            /* goloop.stream imports this module, so not at init */
            set_nodelay = import_attr("goloop.stream", "set_tcp_nodelay");
            if (set_nodelay == NULL) {
                return -1;
            }
        }
        PyObject *r = PyObject_CallOneArg(set_nodelay, sock);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    if (family == AF_UNIX) {
        int domain;
        socklen_t len = sizeof(domain);
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0) {
            family = domain;
        }
    }
    if ((family != AF_INET && family != AF_INET6) || gl_socket_int(gl_raw_type, sock) != SOCK_STREAM) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        long proto = gl_socket_int(gl_raw_proto, sock);
        if (proto != IPPROTO_TCP) { /* asyncio would not have tried */
            return PyErr_Occurred() ? -1 : 0;
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* map[key] = value for a plain weakref.WeakValueDictionary: its
 * __setitem__, which is `if self._pending_removals:
 * self._commit_removals()` then `self.data[key] = KeyedRef(value,
 * self._remove, key)`. */
static int weak_value_set(PyObject *map, PyObject *key, PyObject *value)
{
    PyObject *pending = PyObject_GetAttr(map, str_pending_removals);
    int busy = pending ? PyObject_IsTrue(pending) : -1;
    Py_XDECREF(pending);
    if (busy < 0) {
        return -1;
    }
    if (busy) {
        PyObject *r = PyObject_CallMethodNoArgs(map, str_commit_removals);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    PyObject *remove = PyObject_GetAttr(map, str_remove);
    PyObject *data = remove ? PyObject_GetAttr(map, str_data) : NULL;
    PyObject *args = data ? PyTuple_Pack(2, value, remove) : NULL;
    PyObject *ref = args ? _PyWeakref_RefType.tp_new(KeyedRef, args, NULL) : NULL;
    int r = -1;
    if (ref != NULL && PyObject_SetAttr(ref, str_key, key) == 0) {
        r = PyObject_SetItem(data, key, ref);
    }
    Py_XDECREF(ref);
    Py_XDECREF(args);
    Py_XDECREF(data);
    Py_XDECREF(remove);
    return r;
}

/* loop._ensure_fd_no_transport(arg) (arg: fd, or the socket whose fd it
 * is, which the method's message shows), as asyncio calls it before a
 * sock_* wait or a new transport. The call is skipped when it would find
 * nothing: the method is asyncio's own (no subclass or instance attribute
 * replaces it) and loop._transports, a plain WeakValueDictionary, holds no
 * entry for fd. Each call was a Python frame plus
 * WeakValueDictionary.__getitem__'s, and a KeyError raised and caught. */
int gl_ensure_fd_no_transport(PyObject *loop, PyObject *arg, int fd)
{
    int own = method_is(loop, str_ensure_fd_no_transport, ensure_fd_no_transport_fn);
    PyObject *dict = own ? PyObject_GenericGetDict(loop, NULL) : NULL;
    if (dict == NULL) {
        PyErr_Clear(); /* no instance dict: nothing shadows the method */
    } else {
        own = !PyDict_Contains(dict, str_ensure_fd_no_transport);
        Py_DECREF(dict);
    }
    PyObject *map = own ? PyObject_GetAttr(loop, str_transports) : NULL;
    if (map != NULL && Py_IS_TYPE(map, WeakValueDictionary)) {
        PyObject *data = PyObject_GetAttr(map, str_data);
        PyObject *key = data && PyDict_CheckExact(data) ? PyLong_FromLong(fd) : NULL;
        int found = key ? PyDict_Contains(data, key) : -1;
        Py_XDECREF(key);
        Py_XDECREF(data);
        Py_DECREF(map);
        if (found == 0) {
            return 0;
        }
    } else {
        Py_XDECREF(map);
    }
    PyErr_Clear(); /* the method meets whatever went wrong here itself */
    PyObject *r = PyObject_CallMethodOneArg(loop, str_ensure_fd_no_transport, arg);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* loop._transports[fd] = self */
static int register_transport(PyObject *loop, int fd, PyObject *self)
{
    PyObject *map = PyObject_GetAttr(loop, str_transports);
    PyObject *key = map ? PyLong_FromLong(fd) : NULL;
    int r = -1;
    if (key != NULL) {
        r = Py_IS_TYPE(map, WeakValueDictionary) ? weak_value_set(map, key, self)
                                                  : PyObject_SetItem(map, key, self);
    }
    Py_XDECREF(key);
    Py_XDECREF(map);
    return r;
}

/* self._protocol (new reference), raising AttributeError as asyncio's
 * instance attribute does when the slot is empty (a set_protocol override
 * that stored nothing, `del transport._protocol`). */
PyObject *gl_stream_protocol(gl_stream *self)
{
    return gl_stream_missing(self, self->protocol, "_protocol") ? NULL : Py_NewRef(self->protocol);
}

static int set_protocol_fields(gl_stream *self, PyObject *protocol)
{
    int buffered = PyObject_IsInstance(protocol, BufferedProtocol);
    if (buffered < 0) {
        return -1;
    }
    self->buffered = (char)buffered;
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    self->protocol_connected = 1;
    return 0;
}

static int set_protocol(gl_stream *self, PyObject *protocol)
{
    if (own_method_is(self, str_set_protocol, set_protocol_descr)) {
        return set_protocol_fields(self, protocol);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_set_protocol, protocol);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int attach_to_server(PyObject *server, PyObject *self)
{
    if (server == Py_None) {
        return 0;
    }
    PyObject *r = gl_attach_takes_transport ? PyObject_CallMethodOneArg(server, str_attach, self)
                                         : PyObject_CallMethodNoArgs(server, str_attach);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The lazy extra. asyncio's constructor stores the socket's names in
 * `_extra` at once: for a TCP connection a dict, a TransportSocket and two
 * (host, port) tuples with their strings and ints, ~590 of the ~1,040
 * bytes tracemalloc counted per accepted connection, which almost nobody
 * reads (benchmarks/net/idle_conns.py: 1.22 KiB of RSS per idle connection
 * against rloop's 0.84). For TCP sockets the constructor keeps the two
 * addresses instead (taken when asyncio takes them, so a name read after
 * the peer left is still the one stock would show) and `_extra` is built,
 * in asyncio's key order, on first read. */
static void lazy_name(int fd, int peer, gl_inet_addr *addr, unsigned char *len)
{
    socklen_t n = sizeof(*addr);
    int r = peer ? getpeername(fd, &addr->sa, &n) : getsockname(fd, &addr->sa, &n);
    *len = (r < 0 || n > sizeof(*addr)) ? 0 : (unsigned char)n; /* 0: None, as stock */
}

static int extra_item(PyObject *extra, PyObject *key, gl_inet_addr *addr, unsigned char len)
{
    PyObject *v = len ? gl_sockaddr_to_py((struct sockaddr_storage *)addr, len)
                      : Py_NewRef(Py_None);
    int r = v ? PyDict_SetItem(extra, key, v) : -1;
    Py_XDECREF(v);
    return r;
}

int gl_stream_extra_ready(gl_stream *self)
{
    gl_lazy_names *n = &self->names;
    if (n->sock == NULL) {
        return 0;
    }
    PyObject *extra = PyDict_New();
    PyObject *trsock = extra ? PyObject_CallOneArg(TransportSocket, n->sock) : NULL;
    int r = trsock ? 0 : -1;
    if (r == 0 && n->peer_first) {
        r = extra_item(extra, str_peername, &n->peer, n->peer_len);
    }
    r = r < 0 ? -1 : PyDict_SetItem(extra, str_socket, trsock);
    r = r < 0 ? -1 : extra_item(extra, str_sockname, &n->local, n->local_len);
    if (r == 0 && !n->peer_first) {
        r = extra_item(extra, str_peername, &n->peer, n->peer_len);
    }
    Py_XDECREF(trsock);
    if (r < 0) {
        Py_XDECREF(extra);
        return -1;
    }
    Py_CLEAR(n->sock);
    Py_XSETREF(self->extra, extra);
    return 0;
}

/* _FlowControlMixin.__init__(extra, loop) and _SelectorTransport's first
 * half: extra, the write-buffer limits, the socket's names. An accepted
 * TCP connection comes with names.peer set (peer_first) and extra None. */
static int setup_base(gl_stream *self, PyObject *loop, PyObject *sock, PyObject *extra,
                      long family, int fd)
{
    int lazy = extra == Py_None && (family == AF_INET || family == AF_INET6) && fd >= 0;
    Py_CLEAR(self->names.sock);
    if (!lazy) {
        self->names.peer_first = 0;
    }
    Py_XSETREF(self->extra, lazy ? NULL : extra == Py_None ? PyDict_New() : Py_NewRef(extra));
    if (!lazy && self->extra == NULL) {
        return -1;
    }
    if (loop == Py_None && asserts_enabled) { /* `assert loop is not None` */
        PyErr_SetNone(PyExc_AssertionError);
        return -1;
    }
    Py_XSETREF(self->loop, Py_NewRef(loop));
    Py_XSETREF(self->protocol_paused, Py_NewRef(Py_False));
    if (own_method_is(self, str_set_limits, set_limits_fn)) {
        Py_XSETREF(self->high_water, Py_NewRef(high_water_default));
        Py_XSETREF(self->low_water, Py_NewRef(low_water_default));
    } else if (PyErr_Occurred()) {
        return -1;
    } else {
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, str_set_limits);
        Py_XDECREF(r);
        if (r == NULL) {
            return -1;
        }
    }
    if (lazy) {
        lazy_name(fd, 0, &self->names.local, &self->names.local_len);
        if (!self->names.peer_first) {
            lazy_name(fd, 1, &self->names.peer, &self->names.peer_len);
        }
        self->names.sock = Py_NewRef(sock);
        return 0;
    }
    PyObject *trsock = PyObject_CallOneArg(TransportSocket, sock);
    int r = trsock ? PyObject_SetItem(self->extra, str_socket, trsock) : -1;
    Py_XDECREF(trsock);
    if (r < 0 || store_name(self->extra, str_sockname, sock, fd, family, 0) < 0) {
        return -1;
    }
    int has_peer = PySequence_Contains(self->extra, str_peername);
    if (has_peer < 0 || (!has_peer && store_name(self->extra, str_peername, sock, fd, family, 1) < 0)) {
        return -1;
    }
    return 0;
}

/* The three callbacks the constructor schedules: connection_made, then
 * _add_reader (reading starts only after connection_made), then the
 * waiter. */
static int schedule_start(gl_stream *self, PyObject *loop, PyObject *waiter)
{
    PyObject *protocol = gl_stream_protocol(self);
    PyObject *made = protocol ? PyObject_GetAttr(protocol, str_connection_made) : NULL;
    Py_XDECREF(protocol);
    PyObject *me = (PyObject *)self;
    int r = made ? call_soon(loop, made, &me, 1) : -1;
    Py_XDECREF(made);
    if (r < 0) {
        return -1;
    }
    PyObject *add = PyObject_GetAttr(me, str_add_reader);
    PyObject *args[2] = {PyLong_FromLong(self->fd), PyObject_GetAttr(me, str_read_ready)};
    r = (add && args[0] && args[1]) ? call_soon(loop, add, args, 2) : -1;
    Py_XDECREF(add);
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (r < 0 || waiter == Py_None) {
        return r;
    }
    PyObject *wargs[2] = {waiter, Py_None};
    return call_soon(loop, set_result_unless_cancelled, wargs, 2);
}

int gl_stream_setup(gl_stream *self, PyObject *loop, PyObject *sock, PyObject *protocol,
                    PyObject *waiter, PyObject *extra, PyObject *server)
{
    /* family < 0: not an exact socket.socket, so use its Python methods */
    long family = Py_IS_TYPE(sock, gl_socket_type) ? gl_socket_int(gl_raw_family, sock) : -1;
    /* asyncio calls sock.fileno() after the names; a socket.socket's C
     * methods cannot tell the order, so the fd comes first for C to use */
    int fd = family >= 0 ? gl_socket_fd(sock) : -1;
    if (PyErr_Occurred() || setup_base(self, loop, sock, extra, family, fd) < 0 ||
        (family < 0 && (fd = gl_socket_fd(sock)) == -1 && PyErr_Occurred())) {
        return -1;
    }
    Py_XSETREF(self->sock, Py_NewRef(sock));
    self->fd = fd;
    self->protocol_connected = 0;
    if (set_protocol(self, protocol) < 0) {
        return -1;
    }
    Py_XSETREF(self->server, Py_NewRef(server));
    self->conn_lost = 0;
    self->closing = 0;
    self->paused = 0;
    if (attach_to_server(server, (PyObject *)self) < 0 ||
        register_transport(loop, fd, (PyObject *)self) < 0) {
        return -1;
    }
    self->eof = 0;
    Py_XSETREF(self->empty_waiter, Py_NewRef(Py_None));
    if (nodelay(sock, fd, family) < 0) {
        return -1;
    }
    return schedule_start(self, loop, waiter);
}

/* SocketTransport(loop, sock, protocol, waiter=None, extra=None, server=None) */
int gl_stream_tp_init(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "waiter", "extra", "server", NULL};
    PyObject *loop, *sock, *protocol, *waiter = Py_None, *extra = Py_None, *server = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|OOO:SocketTransport", kwlist, &loop, &sock,
                                     &protocol, &waiter, &extra, &server)) {
        return -1;
    }
    return gl_stream_setup((gl_stream *)self, loop, sock, protocol, waiter, extra, server);
}

PyObject *gl_stream_set_protocol(PyObject *self, PyObject *protocol)
{
    if (set_protocol_fields((gl_stream *)self, protocol) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- queries: one-line methods that streams call per request ---- */

PyObject *gl_stream_is_closing(gl_stream *self, PyObject *unused)
{
    return PyBool_FromLong(self->closing);
}

PyObject *gl_stream_get_protocol(gl_stream *self, PyObject *unused)
{
    return gl_stream_protocol(self);
}

/* ---- closing ---- */

/* loop._remove_reader(fd) / loop._remove_writer(fd) */
static int loop_remove(PyObject *loop, int write, int fd)
{
    PyObject *name = write ? str_remove_writer : str_remove_reader;
    PyObject *fdobj = PyLong_FromLong(fd);
    if (fdobj == NULL) {
        return -1;
    }
    PyObject *r = NULL;
    if (loop_core_method(loop, name, write ? remove_writer_descr : remove_reader_descr)) {
        r = gl_io_remove((gl_loop *)loop, write, fdobj);
    } else if (!PyErr_Occurred()) {
        r = PyObject_CallMethodOneArg(loop, name, fdobj);
    }
    Py_DECREF(fdobj);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* sock.close(); for a socket.socket that is socket.py's `self._closed =
 * True; if self._io_refs <= 0: _socket.socket.close(self)`. */
static int close_socket(PyObject *sock)
{
    if (!Py_IS_TYPE(sock, gl_socket_type)) {
        PyObject *r = PyObject_CallMethodNoArgs(sock, str_close);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    if (PyObject_SetAttr(sock, str_closed, Py_True) < 0) {
        return -1;
    }
    PyObject *refs = PyObject_GetAttr(sock, str_io_refs);
    long n = refs ? PyLong_AsLong(refs) : -1;
    Py_XDECREF(refs);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (n > 0) {
        return 0;
    }
    PyObject *r = PyObject_CallOneArg(raw_socket_close, sock);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int call_self(gl_stream *self, PyObject *name, PyObject *descr,
                     PyObject *(*fn)(gl_stream *, PyObject *), PyObject *arg)
{
    PyObject *me = (PyObject *)self;
    PyObject *r;
    if (own_method_is(self, name, descr)) {
        r = fn(self, arg);
    } else {
        r = PyErr_Occurred() ? NULL : PyObject_CallMethodNoArgs(me, name);
    }
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* close(): stop reading; once the buffer is flushed, connection_lost. */
PyObject *gl_stream_close(gl_stream *self, PyObject *unused)
{
    self->closed_by_close = 1;
    if (self->closing) {
        Py_RETURN_NONE;
    }
    self->closing = 1;
    /* held: a Python _remove_reader may drop the transport's reference */
    PyObject *loop = Py_NewRef(self->loop ? self->loop : Py_None);
    int r = loop_remove(loop, 0, self->fd);
    if (r == 0 && self->wb.len == 0) {
        self->conn_lost++;
        r = loop_remove(loop, 1, self->fd);
        PyObject *cb = r == 0 ? PyObject_GetAttr((PyObject *)self, str_call_connection_lost) : NULL;
        PyObject *none = Py_None;
        r = cb ? call_soon(loop, cb, &none, 1) : -1;
        Py_XDECREF(cb);
    }
    Py_DECREF(loop);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* The peer closed its end: protocol.eof_received(), then keep the
 * connection half-open or close it. */
PyObject *gl_stream_on_eof(gl_stream *self, PyObject *unused)
{
    gl_loop *loop = self->loop && PyObject_TypeCheck(self->loop, &gl_LoopCoreType)
                        ? (gl_loop *)self->loop
                        : NULL;
    if (loop == NULL || loop->debug) { /* asyncio's, with its debug log */
        return PyObject_CallMethodNoArgs((PyObject *)self, str_on_eof_debug);
    }
    PyObject *protocol = gl_stream_protocol(self);
    PyObject *keep = protocol ? PyObject_CallMethodNoArgs(protocol, str_eof_received) : NULL;
    Py_XDECREF(protocol);
    if (keep == NULL) {
        if (gl_exiting_exception()) {
            return NULL;
        }
        PyObject *exc = gl_take_exception();
        PyObject *msg = PyUnicode_FromString("Fatal error: protocol.eof_received() call failed.");
        PyObject *r = msg ? PyObject_CallMethodObjArgs((PyObject *)self, str_fatal_error, exc, msg,
                                                       NULL)
                          : NULL;
        Py_XDECREF(msg);
        Py_XDECREF(exc);
        Py_XDECREF(r);
        return r == NULL ? NULL : Py_NewRef(Py_None);
    }
    int keep_open = PyObject_IsTrue(keep);
    Py_DECREF(keep);
    if (keep_open < 0) {
        return NULL;
    }
    int r;
    if (keep_open) {
        PyObject *lp = Py_NewRef(self->loop ? self->loop : Py_None);
        r = loop_remove(lp, 0, self->fd);
        Py_DECREF(lp);
    } else {
        r = call_self(self, str_close, close_descr, gl_stream_close, NULL);
    }
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* What the read path calls at EOF: self._read_ready__on_eof(). */
int gl_stream_read_eof(gl_stream *self)
{
    return call_self(self, str_on_eof, on_eof_descr, gl_stream_on_eof, NULL);
}

/* _SelectorTransport's `finally:` half of _call_connection_lost. */
static int release_connection(gl_stream *self)
{
    if (self->sock == NULL || close_socket(self->sock) < 0) {
        if (self->sock == NULL) { /* asyncio: None.close() */
            PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute 'close'");
        }
        return -1;
    }
    Py_XSETREF(self->sock, Py_NewRef(Py_None));
    Py_XSETREF(self->protocol, Py_NewRef(Py_None));
    Py_XSETREF(self->loop, Py_NewRef(Py_None));
    PyObject *server = self->server;
    if (gl_stream_missing(self, server, "_server")) {
        return -1;
    }
    if (server == Py_None) {
        return 0;
    }
    PyObject *r = gl_attach_takes_transport
                      ? PyObject_CallMethodOneArg(server, str_detach, (PyObject *)self)
                      : PyObject_CallMethodNoArgs(server, str_detach);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    Py_XSETREF(self->server, Py_NewRef(Py_None));
    return 0;
}

/* _call_connection_lost(exc): protocol.connection_lost(exc), release the
 * socket, the loop and the server; a pending sendfile's waiter learns the
 * connection is gone. */
PyObject *gl_stream_call_connection_lost(gl_stream *self, PyObject *exc)
{
    PyObject *r = Py_NewRef(Py_None);
    if (self->protocol_connected) {
        Py_DECREF(r);
        PyObject *protocol = gl_stream_protocol(self);
        r = protocol ? PyObject_CallMethodOneArg(protocol, str_connection_lost, exc) : NULL;
        Py_XDECREF(protocol);
    }
    PyObject *pending = r == NULL ? gl_take_exception() : NULL;
    Py_XDECREF(r);
    if (release_connection(self) < 0) {
        if (pending != NULL) {
            gl_chain_exception(pending);
        }
        return NULL;
    }
    if (pending != NULL) {
        gl_restore_exception(pending);
        return NULL;
    }
    if (gl_stream_missing(self, self->empty_waiter, "_empty_waiter")) {
        return NULL;
    }
    if (self->empty_waiter != Py_None) {
        PyObject *err = PyObject_CallFunction(PyExc_ConnectionError, "s",
                                              "Connection is closed by peer");
        r = err ? PyObject_CallMethodOneArg(self->empty_waiter, str_set_exception, err) : NULL;
        Py_XDECREF(err);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

/* __del__: asyncio's (ResourceWarning, close the socket) for a transport
 * dropped unclosed; nothing to do, and no Python frame, for the others. */
void gl_stream_finalize(PyObject *self)
{
    PyObject *sock = ((gl_stream *)self)->sock;
    if (sock == NULL || sock == Py_None) {
        return;
    }
    PyObject *saved = gl_take_exception();
    PyObject *r = PyObject_CallOneArg(transport_del, self);
    if (r == NULL) {
        PyErr_WriteUnraisable(transport_del);
    }
    Py_XDECREF(r);
    if (saved != NULL) {
        gl_restore_exception(saved);
    }
}

/* ---- module init ---- */

static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    PyObject *v = m ? PyObject_GetAttrString(m, name) : NULL;
    Py_XDECREF(m);
    return v;
}

static PyObject *type_descr(PyObject *type, const char *name)
{
    PyObject *key = PyUnicode_FromString(name);
    PyObject *v = key ? _PyType_Lookup((PyTypeObject *)type, key) : NULL;
    Py_XDECREF(key);
    if (v == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_ImportError, "goloop: %s has no %s", ((PyTypeObject *)type)->tp_name,
                     name);
    }
    return Py_XNewRef(v);
}

static int init_attach_arity(void)
{
    PyObject *attach = import_attr("asyncio.base_events", "Server");
    PyObject *fn = attach ? PyObject_GetAttrString(attach, "_attach") : NULL;
    PyObject *code = fn ? PyObject_GetAttrString(fn, "__code__") : NULL;
    PyObject *argc = code ? PyObject_GetAttrString(code, "co_argcount") : NULL;
    gl_attach_takes_transport = argc ? PyLong_AsLong(argc) == 2 : 0;
    Py_XDECREF(argc);
    Py_XDECREF(code);
    Py_XDECREF(fn);
    Py_XDECREF(attach);
    return PyErr_Occurred() ? -1 : 0;
}

static int init_strings(void)
{
    return (GL_INTERN(str_socket, "socket") && GL_INTERN(str_sockname, "sockname") &&
            GL_INTERN(str_peername, "peername") &&
            GL_INTERN(str_getsockname, "getsockname") && GL_INTERN(str_getpeername, "getpeername") &&
            GL_INTERN(str_attach, "_attach") && GL_INTERN(str_transports, "_transports") &&
            GL_INTERN(str_connection_made, "connection_made") &&
            GL_INTERN(str_add_reader, "_add_reader") && GL_INTERN(str_read_ready, "_read_ready") &&
            GL_INTERN(str_pending_removals, "_pending_removals") &&
            GL_INTERN(str_commit_removals, "_commit_removals") && GL_INTERN(str_data, "data") &&
            GL_INTERN(str_remove, "_remove") && GL_INTERN(str_key, "key") &&
            GL_INTERN(str_call_soon, "call_soon") && GL_INTERN(str_set_protocol, "set_protocol") &&
            GL_INTERN(str_remove_reader, "_remove_reader") &&
            GL_INTERN(str_remove_writer, "_remove_writer") && GL_INTERN(str_close, "close") &&
            GL_INTERN(str_detach, "_detach") && GL_INTERN(str_closed, "_closed") &&
            GL_INTERN(str_io_refs, "_io_refs") && GL_INTERN(str_eof_received, "eof_received") &&
            GL_INTERN(str_fatal_error, "_fatal_error") &&
            GL_INTERN(str_on_eof_debug, "_read_ready__on_eof_debug") &&
            GL_INTERN(str_connection_lost, "connection_lost") &&
            GL_INTERN(str_set_exception, "set_exception") &&
            GL_INTERN(str_call_connection_lost, "_call_connection_lost") &&
            GL_INTERN(str_on_eof, "_read_ready__on_eof") &&
            GL_INTERN(str_set_limits, "_set_write_buffer_limits") &&
            GL_INTERN(str_ensure_fd_no_transport, "_ensure_fd_no_transport"))
               ? 0
               : -1;
}

static PyTypeObject *stream_core_type; /* SocketTransportCore */

int gl_is_stream_type(PyTypeObject *tp)
{
    return PyType_IsSubtype(tp, stream_core_type);
}

int gl_stream_conn_init(PyObject *core_type)
{
    stream_core_type = (PyTypeObject *)core_type;
    if (init_strings() < 0 || init_attach_arity() < 0) {
        return -1;
    }
    PyObject *flags = PySys_GetObject("flags"); /* borrowed */
    PyObject *optimize = flags ? PyObject_GetAttrString(flags, "optimize") : NULL;
    asserts_enabled = optimize != NULL && PyLong_AsLong(optimize) == 0;
    Py_XDECREF(optimize);
    if (PyErr_Occurred()) {
        return -1;
    }
    TransportSocket = import_attr("asyncio.trsock", "TransportSocket");
    BufferedProtocol = import_attr("asyncio.protocols", "BufferedProtocol");
    set_result_unless_cancelled = import_attr("asyncio.futures", "_set_result_unless_cancelled");
    WeakValueDictionary = (PyTypeObject *)import_attr("weakref", "WeakValueDictionary");
    KeyedRef = (PyTypeObject *)import_attr("weakref", "KeyedRef");
    if (!TransportSocket || !BufferedProtocol || !set_result_unless_cancelled ||
        !WeakValueDictionary || !KeyedRef) {
        return -1;
    }
    call_soon_descr = type_descr((PyObject *)&gl_LoopCoreType, "call_soon");
    set_protocol_descr = type_descr(core_type, "set_protocol");
    close_descr = type_descr(core_type, "close");
    on_eof_descr = type_descr(core_type, "_read_ready__on_eof");
    remove_reader_descr = type_descr((PyObject *)&gl_LoopCoreType, "_remove_reader");
    remove_writer_descr = type_descr((PyObject *)&gl_LoopCoreType, "_remove_writer");
    PyObject *raw = import_attr("_socket", "socket");
    raw_socket_close = raw ? type_descr(raw, "close") : NULL;
    Py_XDECREF(raw);
    PyObject *sel = import_attr("asyncio.selector_events", "BaseSelectorEventLoop");
    ensure_fd_no_transport_fn = sel ? type_descr(sel, "_ensure_fd_no_transport") : NULL;
    Py_XDECREF(sel);
    PyObject *fc = import_attr("asyncio.transports", "_FlowControlMixin");
    set_limits_fn = fc ? PyObject_GetAttrString(fc, "_set_write_buffer_limits") : NULL;
    Py_XDECREF(fc);
    /* through the concrete class's MRO: methods move between
     * _SelectorTransport and it across patch releases (stream.py) */
    PyObject *tr = import_attr("asyncio.selector_events", "_SelectorSocketTransport");
    transport_del = tr ? PyObject_GetAttrString(tr, "__del__") : NULL;
    Py_XDECREF(tr);
    high_water_default = PyLong_FromLong(64 * 1024); /* _set_write_buffer_limits() */
    low_water_default = PyLong_FromLong(16 * 1024);
    return (call_soon_descr && set_protocol_descr && close_descr && remove_reader_descr && on_eof_descr &&
            remove_writer_descr && raw_socket_close && transport_del && set_limits_fn &&
            high_water_default && low_water_default && ensure_fd_no_transport_fn)
               ? 0
               : -1;
}
