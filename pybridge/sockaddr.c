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
    /* NUL-terminated within len; the caller zeroed the storage, so an
     * unnamed peer (len == sizeof(sa_family_t)) is "". */
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
    memset(&sa, 0, sizeof(sa));
    int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
                 : getsockname(fd, (struct sockaddr *)&sa, &len);
    if (r < 0) {
        Py_RETURN_NONE;
    }
    return gl_sockaddr_to_py(&sa, len);
}

PyTypeObject *gl_socket_type; /* socket.socket */
PyObject *gl_raw_family, *gl_raw_type, *gl_raw_proto;

int gl_socket_fd(PyObject *sock)
{
    PyObject *fdobj = PyObject_CallMethodNoArgs(sock, gl_str_fileno);
    long fd = fdobj ? PyLong_AsLong(fdobj) : -1;
    Py_XDECREF(fdobj);
    return (int)fd;
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
    PyObject *d = ((PyTypeObject *)raw)->tp_dict;
    gl_raw_family = Py_XNewRef(PyDict_GetItemString(d, "family"));
    gl_raw_type = Py_XNewRef(PyDict_GetItemString(d, "type"));
    gl_raw_proto = Py_XNewRef(PyDict_GetItemString(d, "proto"));
    Py_DECREF(raw);
    if (!gl_raw_family || !gl_raw_type || !gl_raw_proto) {
        PyErr_SetString(PyExc_ImportError, "goloop: _socket.socket lacks family/type/proto");
        return -1;
    }
    return 0;
}
