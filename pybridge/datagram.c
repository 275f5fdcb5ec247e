/* The datagram transport's per-datagram half in C (asyncio's
 * selector_events._SelectorDatagramTransport: _read_ready and the sendto
 * fast path).
 *
 * Why: asyncio's _read_ready calls sock.recvfrom(256 KiB), and socket.recvfrom
 * allocates a 256 KiB bytes object per datagram before shrinking it. Above
 * glibc's mmap threshold that is an mmap, page faults and a munmap per
 * datagram: 20 us of server CPU per 1 KiB UDP echo (18.9 us of it system
 * time) against uvloop's 5.1 (`python benchmarks/net/run_echo.py --quick
 * --transports udp`, before this file). Here recvfrom goes into the
 * scratch buffer the stream transports share, and one right-sized bytes
 * object is copied out, as uvloop does.
 *
 * The peer's address is built for AF_INET, AF_INET6 and AF_UNIX exactly as
 * socket.recvfrom builds it (sockaddr.c: host, port, and flow info and scope
 * id for IPv6; a path str, abstract-namespace bytes or None for Unix);
 * other families get asyncio's transport. The last few senders' addresses
 * (those whose sockaddr fits the cache: any IP one, Unix paths of up to 25
 * bytes) are kept with their raw sockaddrs, so a reply (sendto(data, addr)
 * with that very object, what a request/response server does) skips
 * parsing it again; any other sendto is asyncio's.
 *
 * The type is a mixin base of python/goloop/datagram.py's DatagramTransport,
 * ahead of _SelectorDatagramTransport, whose per-transport code (init,
 * close, buffering, errors) stays asyncio's own. */
#include "goloop.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* A recent sender: its address tuple and the sockaddr it came from. */
#define GL_DGRAM_PEERS 8
typedef struct {
    PyObject *addr; /* NULL: slot unused */
    socklen_t len;
    union {
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } sa;
} gl_peer;

typedef struct {
    PyObject_HEAD
    GL_FLOW_CONTROL_SLOTS /* the Python bases' slots (goloop.h) */
    int fd;
    gl_peer peers[GL_DGRAM_PEERS]; /* recent senders */
    int next_peer;                 /* the slot the next new sender takes */
} gl_dgram;

static PyObject *str_sock, *str_conn_lost, *str_closing, *str_paused, *str_max_size,
    *str_protocol, *str_address, *str_buffer, *str_extra, *str_peername, *str_datagram_received,
    *str_error_received, *str_fatal_error;
static PyObject *stock_read_ready, *stock_sendto; /* _SelectorDatagramTransport's */

static void forget_peers(gl_dgram *self)
{
    for (int i = 0; i < GL_DGRAM_PEERS; i++) {
        Py_CLEAR(self->peers[i].addr);
    }
}

static int dgram_traverse(gl_dgram *self, visitproc visit, void *arg)
{
    for (int i = 0; i < GL_DGRAM_PEERS; i++) {
        Py_VISIT(self->peers[i].addr);
    }
    return gl_flow_control_traverse((gl_flow_control *)self, visit, arg);
}

static int dgram_clear(gl_dgram *self)
{
    gl_flow_control_clear((gl_flow_control *)self);
    forget_peers(self);
    return 0;
}

static void dgram_dealloc(gl_dgram *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (tp->tp_finalize != NULL && PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected by __del__ */
    }
    dgram_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *dgram_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    gl_dgram *self = (gl_dgram *)tp->tp_alloc(tp, 0);
    if (self != NULL) {
        self->fd = -1;
    }
    return (PyObject *)self;
}

/* ---- addresses ---- */

/* The address tuple for sa, reusing the one made for the same sender
 * recently (tuples of str and ints: nobody can tell they are shared). A
 * server answering a few busy peers builds no tuple per datagram; glibc's
 * inet_ntop formats with sprintf and was the largest user-space cost. */
static PyObject *peer_address(gl_dgram *self, const struct sockaddr_storage *sa, socklen_t len)
{
    if (len == 0 || len > sizeof(self->peers[0].sa)) {
        return gl_sockaddr_to_py(sa, len);
    }
    for (int i = 0; i < GL_DGRAM_PEERS; i++) {
        gl_peer *p = &self->peers[i];
        if (p->addr != NULL && p->len == len && memcmp(&p->sa, sa, len) == 0) {
            return Py_NewRef(p->addr);
        }
    }
    PyObject *addr = gl_sockaddr_to_py(sa, len);
    if (addr == NULL) {
        return NULL;
    }
    gl_peer *p = &self->peers[self->next_peer];
    self->next_peer = (self->next_peer + 1) % GL_DGRAM_PEERS;
    Py_XSETREF(p->addr, Py_NewRef(addr));
    memcpy(&p->sa, sa, len);
    p->len = len;
    return addr;
}

/* The recent sender whose tuple addr is (by identity), or NULL. */
static gl_peer *known_peer(gl_dgram *self, PyObject *addr)
{
    for (int i = 0; i < GL_DGRAM_PEERS; i++) {
        if (self->peers[i].addr == addr) {
            return &self->peers[i];
        }
    }
    return NULL;
}

/* ---- small helpers ---- */

/* 1 if any of the three attributes is true, 0 if none, -1 on error. */
static int any_attr_true(PyObject *self, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *names[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        int r = gl_attr_true(self, names[i]);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

static PyObject *call_protocol(PyObject *self, PyObject *method, PyObject *a, PyObject *b)
{
    PyObject *protocol = PyObject_GetAttr(self, str_protocol);
    if (protocol == NULL) {
        return NULL;
    }
    /* No PY_VECTORCALL_ARGUMENTS_OFFSET: args[-1] is not ours to lend. */
    PyObject *args[3] = {protocol, a, b};
    PyObject *r = PyObject_VectorcallMethod(method, args, b ? 3 : 2, NULL);
    Py_DECREF(protocol);
    return r;
}

/* The pending exception, handled as asyncio's except clauses do:
 * OSError -> protocol.error_received, SystemExit/KeyboardInterrupt
 * propagate, anything else -> _fatal_error(exc, message). */
static PyObject *handle_error(PyObject *self, const char *message)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return NULL;
    }
    int os_error = PyErr_ExceptionMatches(PyExc_OSError);
    PyObject *exc = gl_take_exception();
    PyObject *r;
    if (os_error) {
        r = call_protocol(self, str_error_received, exc, NULL);
    } else {
        PyObject *msg = PyUnicode_FromString(message);
        r = msg ? PyObject_CallMethodObjArgs(self, str_fatal_error, exc, msg, NULL) : NULL;
        Py_XDECREF(msg);
    }
    Py_DECREF(exc);
    return r;
}

/* fn(self, *args, **kw) for asyncio's own method fn (vectorcall style). */
static PyObject *call_stock(PyObject *fn, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8], **stack = small;
    if (total + 1 > 8 && (stack = PyMem_Malloc((total + 1) * sizeof(PyObject *))) == NULL) {
        return PyErr_NoMemory();
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *r = PyObject_Vectorcall(fn, stack, nargs + 1, kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return r;
}

/* Whether self._sock is still open on the fd the transport was made for
 * (the user may have closed the socket passed as sock=, and the number
 * been reused): 1, 0 (then asyncio's code runs and meets the closed
 * socket as stock does), or -1 with an exception. */
static int sock_still_on_fd(gl_dgram *self)
{
    PyObject *sock = PyObject_GetAttr((PyObject *)self, str_sock);
    if (sock == NULL) {
        return -1;
    }
    int fd = sock == Py_None ? -1 : gl_socket_fd(sock);
    Py_DECREF(sock);
    if (fd == -1 && PyErr_Occurred()) {
        PyErr_Clear(); /* a socket-like object whose fileno() failed */
    }
    return fd >= 0 && fd == self->fd;
}

/* ---- reading ---- */

/* max_size when it fits the scratch buffer, 0 when asyncio's code must
 * read (an odd max_size), -1 on error. */
static Py_ssize_t read_size(PyObject *self)
{
    PyObject *v = PyObject_GetAttr(self, str_max_size);
    if (v == NULL) {
        return -1;
    }
    Py_ssize_t size = PyLong_CheckExact(v) ? PyLong_AsSsize_t(v) : 0;
    Py_DECREF(v);
    if (size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return (size > 0 && size <= GL_SCRATCH_SIZE) ? size : 0;
}

/* One datagram to the protocol: 1 if one was there, 0 if not, -1 on error
 * (with an exception). asyncio's _read_ready minus its _conn_lost check. */
static int read_one(gl_dgram *self, Py_ssize_t size)
{
    PyObject *me = (PyObject *)self, *r;
    struct sockaddr_storage sa;
    socklen_t len;
    Py_ssize_t n = gl_recv_retry(self->fd, gl_scratch, size, &sa, &len);
    if (n == -1) {
        return 0;
    }
    gl_stats *stats = n >= 0 ? gl_stats_of(self->loop) : NULL;
    if (stats != NULL) {
        stats->datagrams_in++;
        stats->bytes_in += (unsigned long long)n;
    }
    PyObject *data = n < 0 ? NULL : PyBytes_FromStringAndSize(gl_scratch, n);
    PyObject *addr = data ? peer_address(self, &sa, len) : NULL;
    if (addr == NULL) { /* recvfrom's or our error: asyncio's except clauses */
        Py_XDECREF(data);
        r = handle_error(me, "Fatal read error on datagram transport");
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    r = call_protocol(me, str_datagram_received, data, addr);
    Py_DECREF(data);
    Py_DECREF(addr);
    Py_XDECREF(r);
    return r == NULL ? -1 : 1;
}

/* Read on after a datagram only where stock asyncio's next loop iteration
 * could have done nothing but read this fd again (gl_loop_only_this_fd_next:
 * no callback queued, no timer due, no other fd watched) and the transport
 * is still reading. That saves an epoll_wait per datagram under
 * load (rloop reads until EAGAIN; libuv up to 32 per event). */
#define GL_DGRAM_BATCH 32
static int may_read_on(gl_dgram *self)
{
    if (self->loop == NULL || !PyObject_TypeCheck(self->loop, &gl_LoopCoreType) ||
        !gl_loop_only_this_fd_next((gl_loop *)self->loop, self->fd)) {
        return 0;
    }
    int r = any_attr_true((PyObject *)self, str_conn_lost, str_closing, str_paused);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    return sock_still_on_fd(self);
}

static PyObject *dgram_read_ready(gl_dgram *self, PyObject *unused)
{
    PyObject *me = (PyObject *)self;
    int lost = gl_attr_true(me, str_conn_lost);
    if (lost != 0) {
        return lost < 0 ? NULL : Py_NewRef(Py_None);
    }
    int same = sock_still_on_fd(self);
    if (same < 0) {
        return NULL;
    }
    Py_ssize_t size = same ? read_size(me) : 0;
    if (size <= 0) {
        return size < 0 ? NULL : call_stock(stock_read_ready, me, NULL, 0, NULL);
    }
    for (int i = 0; i < GL_DGRAM_BATCH; i++) {
        int r = read_one(self, size);
        if (r <= 0) {
            return r < 0 ? NULL : Py_NewRef(Py_None);
        }
        r = may_read_on(self);
        if (r <= 0) {
            return r < 0 ? NULL : Py_NewRef(Py_None);
        }
    }
    Py_RETURN_NONE;
}

/* ---- sending ---- */

/* The reply fast path applies when asyncio's sendto would go straight to
 * sock.sendto(data, addr) with nothing buffered: an unconnected, open
 * transport, non-empty bytes, and addr the very tuple of a recent sender
 * (who is then *peer; _forget_fd empties the list when the socket goes). */
static int fast_sendto_applies(gl_dgram *self, PyObject *data, PyObject *addr, gl_peer **peer)
{
    PyObject *me = (PyObject *)self;
    if (addr == NULL || (*peer = known_peer(self, addr)) == NULL || !PyBytes_CheckExact(data) ||
        PyBytes_GET_SIZE(data) == 0) {
        return 0;
    }
    int r = any_attr_true(me, str_address, str_conn_lost, str_buffer);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    int same = sock_still_on_fd(self);
    if (same <= 0) {
        return same;
    }
    PyObject *extra = PyObject_GetAttr(me, str_extra);
    if (extra == NULL) {
        return -1;
    }
    PyObject *name = PyDict_CheckExact(extra) ? PyDict_GetItemWithError(extra, str_peername) : NULL;
    int ok = PyDict_CheckExact(extra) && name == Py_None;
    Py_DECREF(extra);
    return PyErr_Occurred() ? -1 : ok;
}

/* asyncio's sendto, counted for goloop.stats() once it took the data
 * (positional, as the fast path's callers pass it): sent, buffered, or
 * dropped with its warning on a lost connection, which is not told apart
 * from outside; counted alike. */
static PyObject *sendto_stock(gl_dgram *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *r = call_stock(stock_sendto, (PyObject *)self, args, nargs, kwnames);
    gl_stats *stats = r != NULL && nargs >= 1 ? gl_stats_of(self->loop) : NULL;
    if (stats == NULL) {
        return r;
    }
    Py_buffer view;
    Py_ssize_t len = 0;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) == 0) {
        len = view.len;
        PyBuffer_Release(&view);
    } else {
        PyErr_Clear(); /* non-contiguous: asyncio took it, its size goes uncounted */
    }
    stats->datagrams_out++;
    stats->bytes_out += (unsigned long long)len;
    return r;
}

static PyObject *dgram_sendto(gl_dgram *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *me = (PyObject *)self;
    if (kwnames != NULL || nargs < 1 || nargs > 2) {
        /* keywords, or asyncio's TypeError for a bad call */
        return sendto_stock(self, args, nargs, kwnames);
    }
    PyObject *data = args[0], *addr = nargs > 1 ? args[1] : NULL;
    gl_peer *peer = NULL;
    int fast = fast_sendto_applies(self, data, addr, &peer);
    if (fast < 0) {
        return NULL;
    }
    if (!fast) {
        return sendto_stock(self, args, nargs, NULL);
    }
    ssize_t n;
    for (;;) {
        n = sendto(self->fd, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data), 0,
                   (struct sockaddr *)&peer->sa, peer->len);
        if (n >= 0) {
            gl_stats *stats = gl_stats_of(self->loop);
            if (stats != NULL) {
                stats->datagrams_out++;
                stats->bytes_out += (unsigned long long)n;
            }
            Py_RETURN_NONE;
        }
        if (errno != EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) { /* PEP 475: a handler's exception */
            break;
        }
    }
    if (!PyErr_Occurred()) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* Full socket buffer: asyncio's sendto retries and buffers. */
            return sendto_stock(self, args, nargs, NULL);
        }
        PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *r = handle_error(me, "Fatal write error on datagram transport");
    Py_XDECREF(r);
    return r == NULL ? NULL : Py_NewRef(Py_None);
}

static PyObject *dgram_init_core(gl_dgram *self, PyObject *fd)
{
    long v = PyLong_AsLong(fd);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    self->fd = (int)v;
    Py_RETURN_NONE;
}

static PyObject *dgram_forget_fd(gl_dgram *self, PyObject *unused)
{
    self->fd = -1;
    forget_peers(self);
    Py_RETURN_NONE;
}

static PyMethodDef dgram_methods[] = {
    {"_read_ready", (PyCFunction)dgram_read_ready, METH_NOARGS, NULL},
    {"sendto", (PyCFunction)(void (*)(void))dgram_sendto, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_init_core", (PyCFunction)dgram_init_core, METH_O, NULL},
    {"_forget_fd", (PyCFunction)dgram_forget_fd, METH_NOARGS, NULL},
    {NULL},
};

static PyType_Slot dgram_slots[] = {
    {Py_tp_doc, "C core of goloop's datagram transport (pybridge/datagram.c)."},
    {Py_tp_new, dgram_new},
    {Py_tp_dealloc, dgram_dealloc},
    {Py_tp_traverse, dgram_traverse},
    {Py_tp_clear, dgram_clear},
    {Py_tp_methods, dgram_methods},
    {0, NULL},
};

static PyType_Spec dgram_spec = {
    .name = "goloop._goloop.DatagramTransportCore",
    .basicsize = sizeof(gl_dgram),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = dgram_slots,
};

static int init_names(void)
{
    return (GL_INTERN(str_sock, "_sock") && GL_INTERN(str_conn_lost, "_conn_lost") &&
            GL_INTERN(str_closing, "_closing") && GL_INTERN(str_paused, "_paused") &&
            GL_INTERN(str_max_size, "max_size") &&
            GL_INTERN(str_protocol, "_protocol") && GL_INTERN(str_address, "_address") &&
            GL_INTERN(str_buffer, "_buffer") && GL_INTERN(str_extra, "_extra") &&
            GL_INTERN(str_peername, "peername") &&
            GL_INTERN(str_datagram_received, "datagram_received") &&
            GL_INTERN(str_error_received, "error_received") &&
            GL_INTERN(str_fatal_error, "_fatal_error"))
               ? 0
               : -1;
}

int gl_datagram_init(PyObject *module)
{
    if (init_names() < 0) {
        return -1;
    }
    PyObject *se = PyImport_ImportModule("asyncio.selector_events");
    PyObject *stock = se ? PyObject_GetAttrString(se, "_SelectorDatagramTransport") : NULL;
    Py_XDECREF(se);
    stock_read_ready = stock ? PyObject_GetAttrString(stock, "_read_ready") : NULL;
    stock_sendto = stock ? PyObject_GetAttrString(stock, "sendto") : NULL;
    Py_XDECREF(stock);
    if (stock_read_ready == NULL || stock_sendto == NULL) {
        return -1;
    }
    PyObject *base = gl_flow_control_base();
    PyObject *tp = base ? PyType_FromSpecWithBases(&dgram_spec, base) : NULL;
    Py_XDECREF(base);
    if (tp == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(module, "DatagramTransportCore", tp);
    Py_DECREF(tp);
    return r;
}
