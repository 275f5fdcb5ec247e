/* A server's accept loop for plain (non-TLS) connections: what
 * python/goloop/loop.py's Loop._accept_connection does for each pending
 * connection (asyncio's accept loop minus its Task per connection), in C.
 *
 * Per connection that is accept4(2), the socket.socket object, the
 * protocol factory and the transport constructor (stream_conn.c). Done
 * from Python it was four frames, an enum conversion per address field,
 * a setblocking() ioctl and a BlockingIOError raised and caught to end
 * every batch; here the connection arrives non-blocking (SOCK_NONBLOCK, and
 * the socket object is told so: timeout 0.0, as setblocking(False) leaves
 * it), the peer address stays a sockaddr until read, and EAGAIN ends the
 * batch without an exception.
 *
 * Errors other than "no more connections" leave the loop at once and
 * return False: the caller's Python loop (loop.py) then meets the same
 * error in its accept() and handles it as asyncio does (EMFILE: report,
 * pause accepting, retry later; others raised). */
#include "stream.h"
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

static PyObject *empty_tuple, *str_peername;

/* Accept one connection: a new socket.socket (and in *sa, *len its peer's
 * address), or NULL with *err set to accept4's errno, or NULL with an
 * exception (*err 0). Shared with sock_accept (sockops.c). */
PyObject *gl_accept_one(int lfd, PyObject *family, PyObject *type, PyObject *proto,
                        struct sockaddr_storage *sa, socklen_t *len, int *err)
{
    int fd;
    for (;;) { /* PEP 475, as socket.accept */
        *len = sizeof(*sa);
        fd = accept4(lfd, (struct sockaddr *)sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0 || errno != EINTR) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    PyObject *fdobj = PyLong_FromLong(fd);
    PyObject *conn = fdobj ? gl_socket_new(family, type, proto, fdobj) : NULL;
    Py_XDECREF(fdobj);
    if (conn == NULL) {
        close(fd);
    }
    return conn;
}

/* protocol_factory(), then the transport, as Loop._make_socket_transport
 * does outside debug mode (3.12+ checks the fd has no live transport
 * first): the transport, and the protocol in *protocol, or NULL with an
 * exception. A connection accepted here (sa: its peer, from accept4) gets
 * extra={'peername': peer}: for TCP the transport keeps the address and
 * builds `_extra` on first read (stream_conn.c, the lazy extra). A client
 * connection (sa NULL, sockops.c) has no extra: the transport asks the
 * socket for both names, as asyncio's does. */
PyObject *gl_stream_make(PyObject *loop, PyObject *conn, const struct sockaddr_storage *sa,
                         socklen_t len, PyObject *factory, PyObject *server,
                         PyTypeObject *transport_type, PyObject **protocol)
{
    int inet = sa != NULL && (sa->ss_family == AF_INET || sa->ss_family == AF_INET6) &&
               len <= sizeof(gl_inet_addr);
    *protocol = PyObject_CallNoArgs(factory);
    PyObject *extra = NULL, *peer = NULL;
    if (*protocol != NULL && sa != NULL && !inet) {
        peer = gl_sockaddr_to_py(sa, len);
        extra = peer ? PyDict_New() : NULL;
        if (extra != NULL && PyDict_SetItem(extra, str_peername, peer) < 0) {
            Py_CLEAR(extra);
        }
    }
    PyObject *t = NULL;
    if ((sa == NULL || inet ? *protocol != NULL : extra != NULL) &&
        (PY_VERSION_HEX < 0x030C0000 ||
         gl_ensure_fd_no_transport(loop, conn, gl_socket_fd(conn)) == 0)) {
        t = transport_type->tp_new(transport_type, empty_tuple, NULL);
    }
    if (t != NULL) {
        gl_lazy_names *names = &((gl_stream *)t)->names;
        if (inet) {
            memcpy(&names->peer, sa, len);
            names->peer_len = (unsigned char)len;
            names->peer_first = 1;
        }
        if (gl_stream_setup((gl_stream *)t, loop, conn, *protocol, Py_None,
                            extra != NULL ? extra : Py_None, server) < 0) {
            Py_CLEAR(t);
        }
    }
    Py_XDECREF(extra);
    Py_XDECREF(peer);
    if (t == NULL) {
        Py_CLEAR(*protocol);
    }
    return t;
}

/* Whether lfd's accept queue holds a connection (or poll failed: then
 * accept4 says what is wrong).
 *
 * An accept4 that finds the queue empty allocates a socket and a file and
 * frees them again before it returns EAGAIN: 8.7 µs per call here, against
 * 1.6 µs for a poll of the listener (both from Python, benchmarks'
 * timing loop). A batch of one connection, the common case, paid that
 * EAGAIN on every readiness event. POLL_FIRST: past that many connections
 * in one batch the polls would cost more than the one failed accept4. */
#define POLL_FIRST 4
static int queue_nonempty(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

/* Accept up to backlog connections on lfd: Py_True when the queue is
 * drained, backlog were taken or a callback closed the listener, Py_False
 * when loop.py's Python loop should take over (an accept error), NULL
 * with an exception. */
static PyObject *accept_batch(PyObject *const *args, int lfd, Py_ssize_t backlog,
                              PyObject *family, PyObject *nbtype, PyObject *proto)
{
    PyObject *loop = args[0], *listener = args[1], *factory = args[2], *server = args[3];
    PyTypeObject *transport_type = (PyTypeObject *)args[5];
    for (Py_ssize_t i = 0; i < backlog; i++) {
        /* The factory may have closed the server, and the fd number been
         * reused: ask the socket each time. Then stop, without the EBADF
         * socket.accept() would raise: asyncio accepts the whole batch
         * before any factory runs (in a Task per connection), so its
         * factories never see the loop go on. */
        int fd = i == 0 ? lfd : gl_socket_fd(listener);
        if (fd != lfd) {
            return PyErr_Occurred() ? NULL : Py_NewRef(Py_True);
        }
        if (i > 0 && i <= POLL_FIRST && !queue_nonempty(lfd)) {
            return Py_NewRef(Py_True);
        }
        struct sockaddr_storage sa;
        socklen_t salen;
        int err = 0;
        PyObject *conn = gl_accept_one(lfd, family, nbtype, proto, &sa, &salen, &err);
        if (conn == NULL) {
            if (err == 0) {
                return NULL;
            }
            int empty = err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED;
            return Py_NewRef(empty ? Py_True : Py_False);
        }
        gl_stats *stats = gl_stats_of(loop);
        if (stats != NULL) {
            stats->accepted++;
        }
        PyObject *protocol;
        PyObject *t = gl_stream_make(loop, conn, &sa, salen, factory, server, transport_type,
                                     &protocol);
        Py_DECREF(conn);
        Py_XDECREF(protocol);
        Py_XDECREF(t);
        /* asyncio reports these only in debug mode, which does not come
         * here; the socket is left to the garbage collector. */
        if (t == NULL && gl_exiting_exception()) {
            return NULL;
        }
        PyErr_Clear();
    }
    return Py_NewRef(Py_True);
}

/* _accept_stream(loop, listener, protocol_factory, server, backlog,
 * transport_type): True when the accept queue is drained or backlog
 * connections were taken or the listener was closed meanwhile, False
 * when loop.py's Python loop should handle the listener (an accept
 * error, a family this file does not build addresses for). */
PyObject *gl_accept_stream(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyType_Check(args[5]) || !gl_is_stream_type((PyTypeObject *)args[5])) {
        PyErr_SetString(PyExc_TypeError, "_accept_stream: bad arguments");
        return NULL;
    }
    PyObject *listener = args[1];
    Py_ssize_t backlog = PyLong_AsSsize_t(args[4]);
    int lfd = backlog == -1 && PyErr_Occurred() ? -1 : gl_socket_fd(listener);
    if (PyErr_Occurred()) {
        return NULL;
    }
    long fam = gl_socket_int(gl_raw_family, listener);
    long type = fam == -1 ? -1 : gl_socket_int(gl_raw_type, listener);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (lfd < 0 || !gl_sockaddr_supported((int)fam)) {
        Py_RETURN_FALSE;
    }
    PyObject *family = PyLong_FromLong(fam);
    /* the type tells the new socket object it is non-blocking (timeout 0) */
    PyObject *nbtype = family ? PyLong_FromLong(type | SOCK_NONBLOCK) : NULL;
    PyObject *proto = nbtype ? Py_TYPE(gl_raw_proto)->tp_descr_get(gl_raw_proto, listener, NULL)
                             : NULL;
    PyObject *result = proto ? accept_batch(args, lfd, backlog, family, nbtype, proto) : NULL;
    Py_XDECREF(family);
    Py_XDECREF(nbtype);
    Py_XDECREF(proto);
    return result;
}

int gl_accept_init(void)
{
    empty_tuple = PyTuple_New(0);
    str_peername = PyUnicode_InternFromString("peername");
    return (empty_tuple && str_peername) ? 0 : -1;
}
