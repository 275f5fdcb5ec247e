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
    return check_fd_field();
}
