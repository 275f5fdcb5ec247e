/* Socket addresses as the socket module shows them (socketmodule.c's
 * makesockaddr), for the families goloop's C paths serve: AF_INET,
 * AF_INET6 and AF_UNIX. Shared by the datagram receive path (the sender of
 * each datagram) and the stream transports' per-connection setup (the
 * accepted peer, sockname, peername), which would otherwise call
 * socket.getsockname() & co. through Python once per connection.
 *
 * Also here: a socket's family, type and proto as ints. socket.socket's
 * properties convert them to enums on every read (~0.35 us each);
 * _socket.socket's own descriptors give the same ints. */
#include "goloop.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/un.h>

int gl_sockaddr_supported(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

static PyObject *unix_address(const struct sockaddr_storage *sa, socklen_t len)
{
    const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
    size_t pathlen = len - offsetof(struct sockaddr_un, sun_path);
    if (len > offsetof(struct sockaddr_un, sun_path) && a->sun_path[0] == 0) {
        return PyBytes_FromStringAndSize(a->sun_path, pathlen); /* abstract namespace */
    }
    /* a path, NUL-terminated within len (or filling it); an unnamed peer
     * (len == sizeof(sa_family_t), pathlen 0) is "", as in socket.accept */
    return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, strnlen(a->sun_path, pathlen));
}

PyObject *gl_sockaddr_to_py(const struct sockaddr_storage *sa, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (len == 0) {
        Py_RETURN_NONE;
    }
    switch (sa->ss_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
                             a->sin6_scope_id);
    }
    case AF_UNIX:
        return unix_address(sa, len);
    default:
        PyErr_Format(PyExc_RuntimeError, "goloop: unexpected address family %d",
                     (int)sa->ss_family);
        return NULL;
    }
}

/* getsockname(2) (peer == 0) or getpeername(2) of fd as the socket module
 * returns it; None where that call raises OSError (as the transport
 * constructor stores). */
PyObject *gl_socket_name(int fd, int peer)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
                 : getsockname(fd, (struct sockaddr *)&sa, &len);
    if (r < 0) {
        Py_RETURN_NONE;
    }
    return gl_sockaddr_to_py(&sa, len);
}

PyTypeObject *gl_socket_type; /* socket.socket */
static PyTypeObject *raw_socket_type; /* _socket.socket */
static int fd_field_ok;              /* its struct's first field is the fd */
PyObject *gl_raw_family, *gl_raw_type, *gl_raw_proto;

/* socketmodule.h's PySocketSockObject starts with the fd (SOCKET_T, an
 * int on Unix) right after the object header, -1 once closed or detached;
 * gl_sockaddr_init checks that against fileno() before trusting it. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
} socket_head;

/* sock.fileno(). For socket.socket and _socket.socket themselves (whose
 * fileno() is that field) the field is read: no method call on the
 * per-connection and per-datagram paths. Subclasses may override
 * fileno(), so they and other objects get the call. */
int gl_socket_fd(PyObject *sock)
{
    if (fd_field_ok && (Py_IS_TYPE(sock, gl_socket_type) || Py_IS_TYPE(sock, raw_socket_type))) {
        return ((socket_head *)sock)->sock_fd;
    }
    PyObject *fdobj = PyObject_CallMethodNoArgs(sock, gl_str_fileno);
    long fd = fdobj ? PyLong_AsLong(fdobj) : -1;
    Py_XDECREF(fdobj);
    return (int)fd;
}

int gl_socket_closed(PyObject *sock)
{
    if (fd_field_ok && PyObject_TypeCheck(sock, raw_socket_type)) {
        return ((socket_head *)sock)->sock_fd == -1;
    }
    return 0; /* not a socket object: its own methods will tell */
}

static int check_fd_field(void)
{
    PyObject *probe = PyObject_CallFunction((PyObject *)raw_socket_type, "ii", AF_UNIX, SOCK_DGRAM);
    if (probe == NULL) {
        PyErr_Clear(); /* no probe, no fast check: gl_socket_closed says "open" */
        return 0;
    }
    int fd = gl_socket_fd(probe); /* fileno(): fd_field_ok is still 0 */
    fd_field_ok = fd >= 0 && ((socket_head *)probe)->sock_fd == fd;
    PyObject *r = PyObject_CallMethod(probe, "close", NULL);
    Py_XDECREF(r);
    fd_field_ok = fd_field_ok && r != NULL && ((socket_head *)probe)->sock_fd == -1;
    Py_DECREF(probe);
    PyErr_Clear();
    return 0;
}

/* socket.socket(family, type, proto[, fileno]) without socket.py's
 * __init__ frame: _socket.socket's own new and init (the socket(2) call
 * or the fd's adoption, the "socket.__new__" audit event, the timeout)
 * and the two slots socket.py's __init__ sets (_io_refs = 0, _closed =
 * False) written directly. Its Python __init__ (identical in 3.11.2 to
 * 3.13.0) cost ~3k instructions a socket (callgrind); accept makes one
 * per connection, create_connection another. A socket.socket whose
 * __init__ or __new__ the program replaced gets the ordinary call. */
static PyObject *socket_py_init; /* socket.socket.__init__ at import */
static Py_ssize_t io_refs_off, closed_off;
static PyObject *str_init;

PyObject *gl_socket_new(PyObject *family, PyObject *type, PyObject *proto, PyObject *fileno)
{
    PyObject *args[4] = {family, type, proto, fileno};
    Py_ssize_t n = fileno != NULL ? 4 : 3;
    PyObject *init = PyDict_GetItemWithError(gl_socket_type->tp_dict, str_init);
    if (init != socket_py_init || io_refs_off == 0 ||
        gl_socket_type->tp_new != raw_socket_type->tp_new) {
        return PyErr_Occurred() ? NULL
                                : PyObject_Vectorcall((PyObject *)gl_socket_type, args, n, NULL);
    }
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    PyObject *sock = gl_socket_type->tp_new(gl_socket_type, tuple, NULL);
    if (sock != NULL && raw_socket_type->tp_init(sock, tuple, NULL) < 0) {
        Py_CLEAR(sock);
    }
    Py_DECREF(tuple);
    if (sock != NULL) {
        PyObject **refs = (PyObject **)((char *)sock + io_refs_off);
        PyObject **closed = (PyObject **)((char *)sock + closed_off);
        Py_XSETREF(*refs, PyLong_FromLong(0));
        Py_XSETREF(*closed, Py_NewRef(Py_False));
    }
    return sock;
}

/* _goloop._socket(family, type, proto): gl_socket_new for Python
 * (connect.py's client sockets). */
PyObject *gl_socket_new_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_socket(family, type, proto)");
        return NULL;
    }
    return gl_socket_new(args[0], args[1], args[2], NULL);
}

static int socket_new_init(void)
{
    str_init = PyUnicode_InternFromString("__init__");
    if (str_init == NULL) {
        return -1;
    }
    socket_py_init = Py_XNewRef(PyDict_GetItemWithError(gl_socket_type->tp_dict, str_init));
    if (socket_py_init == NULL ||
        gl_slot_offset(gl_socket_type, "_io_refs", &io_refs_off) < 0 ||
        gl_slot_offset(gl_socket_type, "_closed", &closed_off) < 0) {
        /* not the socket.py this was written for: every socket is made by
         * the ordinary call */
        PyErr_Clear();
        io_refs_off = 0;
    }
    return 0;
}

long gl_socket_int(PyObject *descr, PyObject *sock)
{
    PyObject *v = Py_TYPE(descr)->tp_descr_get(descr, sock, NULL);
    long r = v ? PyLong_AsLong(v) : -1;
    Py_XDECREF(v);
    return r;
}

int gl_sockaddr_init(void)
{
    PyObject *m = PyImport_ImportModule("socket");
    gl_socket_type = m ? (PyTypeObject *)PyObject_GetAttrString(m, "socket") : NULL;
    Py_XDECREF(m);
    m = PyImport_ImportModule("_socket");
    PyObject *raw = m ? PyObject_GetAttrString(m, "socket") : NULL;
    Py_XDECREF(m);
    if (gl_socket_type == NULL || raw == NULL || !PyType_Check(raw)) {
        Py_XDECREF(raw);
        return -1;
    }
    raw_socket_type = (PyTypeObject *)Py_NewRef(raw);
    PyObject *d = ((PyTypeObject *)raw)->tp_dict;
    gl_raw_family = Py_XNewRef(PyDict_GetItemString(d, "family"));
    gl_raw_type = Py_XNewRef(PyDict_GetItemString(d, "type"));
    gl_raw_proto = Py_XNewRef(PyDict_GetItemString(d, "proto"));
    Py_DECREF(raw);
    if (!gl_raw_family || !gl_raw_type || !gl_raw_proto) {
        PyErr_SetString(PyExc_ImportError, "goloop: _socket.socket lacks family/type/proto");
        return -1;
    }
    return socket_new_init() < 0 ? -1 : check_fd_field();
}
