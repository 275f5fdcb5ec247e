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
 * it), the peer address is built from the sockaddr, and EAGAIN ends the
 * batch without an exception.
 *
 * Errors other than "no more connections" leave the loop at once and
 * return False: the caller then runs asyncio's own _accept_connection,
 * whose accept() meets the same error and handles it as stock does
 * (EMFILE: log, pause accepting, retry later). */
#include "stream.h"
#include <errno.h>
#include <sys/socket.h>

static PyObject *empty_tuple, *str_peername, *str_ensure_fd_no_transport, *kw_fileno;

/* Accept one connection: a new socket.socket (and *peer, its address), or
 * NULL with *err set to accept4's errno, or NULL with an exception (*err
 * 0). */
static PyObject *accept_one(int lfd, PyObject *family, PyObject *type, PyObject *proto,
                            PyObject **peer, int *err)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    int fd;
    do {
        fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    PyObject *fdobj = PyLong_FromLong(fd);
    PyObject *args[4] = {family, type, proto, fdobj};
    PyObject *conn = fdobj ? PyObject_Vectorcall((PyObject *)gl_socket_type, args, 3, kw_fileno)
                           : NULL;
    Py_XDECREF(fdobj);
    if (conn == NULL) {
        close(fd);
        return NULL;
    }
    *peer = gl_sockaddr_to_py(&sa, len);
    if (*peer == NULL) {
        Py_DECREF(conn);
        return NULL;
    }
    return conn;
}

/* loop._ensure_fd_no_transport(fd) (asyncio 3.12+ calls it here). */
static int ensure_no_transport(PyObject *loop, PyObject *conn)
{
    PyObject *r = PyObject_CallMethodOneArg(loop, str_ensure_fd_no_transport, conn);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* protocol_factory(), then the transport, as Loop._make_socket_transport
 * does outside debug mode. Failures are the caller's to swallow. */
static int make_transport(PyObject *loop, PyObject *conn, PyObject *peer, PyObject *factory,
                          PyObject *server, PyTypeObject *transport_type)
{
    if (PY_VERSION_HEX >= 0x030C0000 && ensure_no_transport(loop, conn) < 0) {
        return -1;
    }
    PyObject *protocol = PyObject_CallNoArgs(factory);
    PyObject *extra = protocol ? PyDict_New() : NULL;
    PyObject *t = NULL;
    if (extra != NULL && PyDict_SetItem(extra, str_peername, peer) == 0) {
        t = transport_type->tp_new(transport_type, empty_tuple, NULL);
    }
    int r = -1;
    if (t != NULL) {
        r = gl_stream_setup((gl_stream *)t, loop, conn, protocol, Py_None, extra, server);
    }
    Py_XDECREF(t);
    Py_XDECREF(extra);
    Py_XDECREF(protocol);
    return r;
}

/* _accept_stream(loop, listener, protocol_factory, server, backlog,
 * transport_type): True when the accept queue is drained or backlog
 * connections were taken, False when an accept error is left to asyncio. */
PyObject *gl_accept_stream(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyType_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "_accept_stream: bad arguments");
        return NULL;
    }
    PyObject *loop = args[0], *listener = args[1], *factory = args[2], *server = args[3];
    Py_ssize_t backlog = PyLong_AsSsize_t(args[4]);
    PyTypeObject *transport_type = (PyTypeObject *)args[5];
    PyObject *lfdobj = PyObject_CallMethodNoArgs(listener, gl_str_fileno);
    int lfd = lfdobj ? (int)PyLong_AsLong(lfdobj) : -1;
    Py_XDECREF(lfdobj);
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *family = Py_TYPE(gl_raw_family)->tp_descr_get(gl_raw_family, listener, NULL);
    PyObject *type = Py_TYPE(gl_raw_type)->tp_descr_get(gl_raw_type, listener, NULL);
    PyObject *proto = Py_TYPE(gl_raw_proto)->tp_descr_get(gl_raw_proto, listener, NULL);
    PyObject *result = NULL;
    if (family == NULL || type == NULL || proto == NULL ||
        !gl_sockaddr_supported((int)PyLong_AsLong(family))) {
        goto done;
    }
    /* the type tells the new socket object it is non-blocking (timeout 0) */
    PyObject *nbtype = PyLong_FromLong(PyLong_AsLong(type) | SOCK_NONBLOCK);
    if (nbtype == NULL) {
        goto done;
    }
    result = Py_True;
    for (Py_ssize_t i = 0; i < backlog; i++) {
        PyObject *peer = NULL;
        int err = 0;
        PyObject *conn = accept_one(lfd, family, nbtype, proto, &peer, &err);
        if (conn == NULL) {
            if (err == 0) {
                result = NULL;
            } else if (err != EAGAIN && err != EWOULDBLOCK && err != ECONNABORTED) {
                result = Py_False;
            }
            break;
        }
        int r = make_transport(loop, conn, peer, factory, server, transport_type);
        Py_DECREF(conn);
        Py_DECREF(peer);
        /* asyncio reports these only in debug mode, which does not come
         * here; the socket is left to the garbage collector. */
        if (r < 0 && !gl_exiting_exception()) {
            PyErr_Clear();
        } else if (r < 0) {
            result = NULL;
            break;
        }
    }
    Py_DECREF(nbtype);
    Py_XINCREF(result);
done:
    Py_XDECREF(family);
    Py_XDECREF(type);
    Py_XDECREF(proto);
    return result;
}

int gl_accept_init(void)
{
    empty_tuple = PyTuple_New(0);
    str_peername = PyUnicode_InternFromString("peername");
    str_ensure_fd_no_transport = PyUnicode_InternFromString("_ensure_fd_no_transport");
    kw_fileno = Py_BuildValue("(s)", "fileno");
    return (empty_tuple && str_peername && str_ensure_fd_no_transport && kw_fileno) ? 0 : -1;
}
