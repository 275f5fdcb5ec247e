/* The socket stream transport's C state, shared by stream.c (per-event
 * half: reads, writes, the write buffer) and stream_conn.c (per-connection
 * half: the constructor and the accept loop). */
#ifndef GOLOOP_STREAM_H
#define GOLOOP_STREAM_H
#include "goloop.h"
#include <netinet/in.h>

/* A TCP socket's address (AF_INET or AF_INET6), as get{sock,peer}name or
 * accept4 give it. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} gl_inet_addr;

/* The transport's `_extra` before anyone has read it (stream_conn.c: the
 * lazy extra): the names asyncio's constructor stores, still as addresses.
 * Pending while sock is set. */
typedef struct {
    PyObject *sock; /* for extra['socket'] (a TransportSocket around it) */
    gl_inet_addr local, peer;
    unsigned char local_len, peer_len; /* 0: the call failed, the name is None */
    char peer_first; /* accepted: asyncio's extra starts as {'peername': addr} */
} gl_lazy_names;

typedef struct {
    PyObject_HEAD
    GL_FLOW_CONTROL_SLOTS /* the Python bases' slots (goloop.h) */
    /* ours */
    PyObject *sock;
    PyObject *protocol;
    PyObject *server;
    PyObject *empty_waiter;
    int fd;
    int conn_lost;
    char closing, eof, paused, protocol_connected, buffered;
    char closed_by_close; /* close() was called (asyncio 3.12+ writelines errors) */
    Py_ssize_t max_size;
    Py_ssize_t last_read; /* bytes the previous recv returned */
    gl_wbuf wb; /* unsent bytes */
    /* instance attributes and patches (mock.patch.object(transport,
     * "write")), as asyncio's transports allow; created on first use */
    PyObject *dict;
    gl_lazy_names names;
} gl_stream;

int gl_stream_missing(gl_stream *self, PyObject *v, const char *name); /* AttributeError */
PyObject *gl_stream_protocol(gl_stream *self); /* self._protocol, new ref or NULL + error */
int gl_stream_extra_ready(gl_stream *self); /* build a pending `_extra`; -1 + exception */
int gl_stream_setup(gl_stream *self, PyObject *loop, PyObject *sock, PyObject *protocol,
                    PyObject *waiter, PyObject *extra, PyObject *server);
int gl_stream_tp_init(PyObject *self, PyObject *args, PyObject *kw);
PyObject *gl_stream_set_protocol(PyObject *self, PyObject *protocol);
PyObject *gl_stream_close(gl_stream *self, PyObject *unused);
PyObject *gl_stream_is_closing(gl_stream *self, PyObject *unused);
PyObject *gl_stream_get_protocol(gl_stream *self, PyObject *unused);
PyObject *gl_stream_on_eof(gl_stream *self, PyObject *unused);
PyObject *gl_stream_call_connection_lost(gl_stream *self, PyObject *exc);
int gl_stream_read_eof(gl_stream *self);
void gl_stream_finalize(PyObject *self);
int gl_stream_conn_init(PyObject *core_type);
int gl_is_stream_type(PyTypeObject *tp); /* SocketTransportCore or a subclass */
int gl_ensure_fd_no_transport(PyObject *loop, PyObject *arg, int fd); /* -1 + exception */
/* protocol_factory() and its transport over conn (accept.c); sa: the peer accept4 gave, or NULL */
PyObject *gl_stream_make(PyObject *loop, PyObject *conn, const struct sockaddr_storage *sa,
                         socklen_t len, PyObject *factory, PyObject *server,
                         PyTypeObject *transport_type, PyObject **protocol);

#endif
