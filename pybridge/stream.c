/* The socket stream transport's hot paths in C (asyncio's
 * selector_events._SelectorSocketTransport, per-event half).
 *
 * What runs once per read or write lives here: the recv into a loop-wide
 * scratch buffer, the protocol call (data_received, or get_buffer +
 * recv_into + buffer_updated), the send that usually writes everything at
 * once, the write buffer and the flow-control threshold checks. The
 * per-connection steps every connection takes (constructor, close, EOF,
 * connection_lost) are C too, in stream_conn.c; the rarer ones (errors,
 * abort, repr, sendfile waiters) are asyncio's own Python code, borrowed
 * method by method in python/goloop/stream.py, so messages and version
 * differences follow the running interpreter.
 *
 * Why C and not Go: a read is one recv syscall plus a Python call. A Go
 * call per read would add a C->Go crossing (~57 ns) and Go's syscall
 * entry/exit bookkeeping to a path whose whole loop-side user CPU at 1 KiB
 * is ~0.7 us per request (make bench-net; the native Go echo server spends
 * 0.6-0.7 us), and a Go-owned buffer would cost a copy on the way to the
 * Python bytes. Go keeps what is per-iteration: the epoll registration
 * behind gl_io_watch (called when reading starts/stops, not per event).
 *
 * The type subclasses asyncio's transports._FlowControlMixin (created
 * with PyType_FromSpecWithBases), so its instances are asyncio.Transport,
 * ReadTransport and WriteTransport instances and asyncio's flow-control
 * code works on them; the struct starts with those classes' slots. */
#include "stream.h"
#include <errno.h>
#include <sys/socket.h>

#define GL_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5 /* asyncio.constants */


/* recv() target shared by every transport: the loop thread holds the GIL
 * from the recv to the copy into the bytes object, so one buffer serves
 * all loops. The copy is what uvloop does too; allocating a max_size
 * bytes object per read as socket.recv does costs an mmap/munmap pair
 * per read once it exceeds glibc's mmap threshold. */
char gl_scratch[GL_SCRATCH_SIZE];

static PyObject *str_data_received, *str_get_buffer, *str_buffer_updated, *str_fatal_error,
    *str_maybe_pause, *str_maybe_resume, *str_call_connection_lost,
    *str_set_result, *str_set_exception, *minus_one;
static PyObject *logger; /* asyncio.log.logger */

int gl_flow_control_traverse(gl_flow_control *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->extra);
    Py_VISIT(self->high_water);
    Py_VISIT(self->loop);
    Py_VISIT(self->low_water);
    Py_VISIT(self->protocol_paused);
    return 0;
}

void gl_flow_control_clear(gl_flow_control *self)
{
    Py_CLEAR(self->extra);
    Py_CLEAR(self->high_water);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->low_water);
    Py_CLEAR(self->protocol_paused);
}

static int stream_traverse(gl_stream *self, visitproc visit, void *arg)
{
    int r = gl_flow_control_traverse((gl_flow_control *)self, visit, arg);
    if (r != 0) {
        return r;
    }
    Py_VISIT(self->sock);
    Py_VISIT(self->protocol);
    Py_VISIT(self->server);
    Py_VISIT(self->empty_waiter);
    Py_VISIT(self->dict);
    Py_VISIT(self->names.sock);
    return 0;
}

static int stream_clear(gl_stream *self)
{
    gl_flow_control_clear((gl_flow_control *)self);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->server);
    Py_CLEAR(self->empty_waiter);
    Py_CLEAR(self->dict);
    Py_CLEAR(self->names.sock);
    return 0;
}

static void stream_dealloc(gl_stream *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (tp->tp_finalize != NULL && PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected by __del__ */
    }
    stream_clear(self);
    gl_wbuf_free(&self->wb);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *stream_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    gl_stream *self = (gl_stream *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        return NULL;
    }
    self->fd = -1;
    self->max_size = GL_SCRATCH_SIZE;
    return (PyObject *)self;
}

/* The loop core, or NULL once _call_connection_lost dropped it. */
static gl_loop *loop_of(gl_stream *self)
{
    if (self->loop == NULL || !PyObject_TypeCheck(self->loop, &gl_LoopCoreType)) {
        return NULL;
    }
    return (gl_loop *)self->loop;
}

/* goloop.stats()'s bytes_in (in) or bytes_out: n bytes moved. */
static void count_bytes(gl_stream *self, int in, Py_ssize_t n)
{
    gl_loop *loop = loop_of(self);
    if (loop != NULL) {
        *(in ? &loop->stats.bytes_in : &loop->stats.bytes_out) += (unsigned long long)n;
    }
}

static int is_none(PyObject *o)
{
    return o == NULL || o == Py_None;
}

/* 1 with asyncio's AttributeError when an attribute was deleted (v NULL) */
int gl_stream_missing(gl_stream *self, PyObject *v, const char *name)
{
    if (v != NULL) {
        return 0;
    }
    PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                 Py_TYPE(self)->tp_name, name);
    return 1;
}

/* After _call_connection_lost the socket is closed and _sock is None, and
 * a user may close the socket object under a live transport: either way
 * self->fd may by now name someone else's socket, so no syscall may use
 * it. asyncio fails on `self._sock.send` there (AttributeError on None,
 * EBADF from a closed socket); so does this. */
static int sock_gone(gl_stream *self, const char *method)
{
    if (is_none(self->sock)) {
        PyErr_Format(PyExc_AttributeError, "'NoneType' object has no attribute '%s'", method);
        return 1;
    }
    if (gl_socket_closed(self->sock)) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        return 1;
    }
    return 0;
}

/* ---- errors: asyncio's _fatal_error, with SystemExit/KeyboardInterrupt
 * propagating as in `except (SystemExit, KeyboardInterrupt): raise` ---- */

/* self._fatal_error(exc, message) */
static int call_fatal_error(gl_stream *self, PyObject *exc, const char *message)
{
    PyObject *msg = PyUnicode_FromString(message);
    PyObject *r = msg ? PyObject_CallMethodObjArgs((PyObject *)self, str_fatal_error, exc, msg,
                                                   NULL)
                      : NULL;
    Py_XDECREF(msg);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The pending exception goes to _fatal_error. */
static int fatal(gl_stream *self, const char *message)
{
    if (gl_exiting_exception()) {
        return -1;
    }
    PyObject *exc = gl_take_exception();
    int r = call_fatal_error(self, exc, message);
    Py_XDECREF(exc);
    return r;
}

static int call_method0(PyObject *obj, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(obj, name);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ---- reading ---- */

/* recvfrom (recv when sa is NULL) with PEP 475's EINTR retry: the byte
 * count; -1 with errno EAGAIN when nothing is there, -2 with a Python
 * exception set. Shared with datagram.c. */
Py_ssize_t gl_recv_retry(int fd, char *buf, Py_ssize_t len, struct sockaddr_storage *sa,
                         socklen_t *salen)
{
    for (;;) {
        if (sa != NULL) {
            *salen = sizeof(*sa);
        }
        ssize_t n = recvfrom(fd, buf, (size_t)len, 0, (struct sockaddr *)sa, salen);
        if (n >= 0) {
            return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -1;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -2;
        }
        if (PyErr_CheckSignals() < 0) {
            return -2;
        }
    }
}

static int read_eof(gl_stream *self)
{
    return gl_stream_read_eof(self);
}

/* Reads at least this large suggest a bulk transfer: the next read goes
 * straight into a new bytes object (no copy out of the scratch buffer),
 * capped below glibc's default mmap threshold so that the allocation
 * and its shrink to the received size stay in the heap, without
 * mmap/munmap. Measured on the 100 KiB echo: the copy was ~60% of the
 * server's user time. */
#define GL_DIRECT_READ_MIN (32 * 1024)
#define GL_DIRECT_READ_CAP (127 * 1024)

static PyObject *recv_direct(int fd, Py_ssize_t n, int *again)
{
    *again = 0;
    PyObject *data = PyBytes_FromStringAndSize(NULL, n);
    if (data == NULL) {
        return NULL;
    }
    Py_ssize_t got = gl_recv_retry(fd, PyBytes_AS_STRING(data), n, NULL, NULL);
    if (got < 0) {
        Py_DECREF(data);
        *again = got == -1;
        return NULL;
    }
    if (got < n) {
        (void)_PyBytes_Resize(&data, got);
    }
    return data;
}

/* recv up to n bytes from fd as a new bytes object (what socket.recv
 * returns); NULL with *again set when nothing is there, NULL with an
 * exception on error. Shared with the sock_recv path (sockops.c). */
PyObject *gl_recv_bytes(int fd, Py_ssize_t n, int *again)
{
    *again = 0;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    if (n == 0) { /* as socket.recv(0): no syscall */
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (n > GL_SCRATCH_SIZE) {
        return recv_direct(fd, n, again);
    }
    Py_ssize_t got = gl_recv_retry(fd, gl_scratch, n, NULL, NULL);
    if (got < 0) {
        *again = got == -1;
        return NULL;
    }
    return PyBytes_FromStringAndSize(gl_scratch, got);
}

/* socket.recv_into's error for a buffer it cannot write to. */
static void set_not_writable(PyObject *buf)
{
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "recv_into() argument 1 must be read-write bytes-like object, not %.200s",
                 Py_TYPE(buf)->tp_name);
}

/* socket.recv_into(buf) on fd: the byte count; NULL with *again set when
 * nothing is there, NULL with an exception on error. */
PyObject *gl_recv_into(int fd, PyObject *buf, int *again)
{
    *again = 0;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
        set_not_writable(buf);
        return NULL;
    }
    /* socket.recv_into returns 0 for an empty buffer without a syscall
     * (a 0-byte recv may report EAGAIN, which would wait for nothing). */
    Py_ssize_t got = view.len == 0 ? 0 : gl_recv_retry(fd, view.buf, view.len, NULL, NULL);
    PyBuffer_Release(&view);
    if (got < 0) {
        *again = got == -1;
        return NULL;
    }
    return PyLong_FromSsize_t(got);
}

static int read_data_received(gl_stream *self)
{
    int again = 0;
    Py_ssize_t cap = self->max_size;
    PyObject *data = NULL;
    if (sock_gone(self, "recv")) {
    } else if (self->last_read >= GL_DIRECT_READ_MIN && cap > GL_DIRECT_READ_CAP) {
        data = recv_direct(self->fd, GL_DIRECT_READ_CAP, &again);
    } else {
        data = gl_recv_bytes(self->fd, cap, &again);
    }
    self->last_read = data != NULL ? PyBytes_GET_SIZE(data) : 0;
    if (data == NULL) {
        return again ? 0 : fatal(self, "Fatal read error on socket transport");
    }
    count_bytes(self, 1, self->last_read);
    if (PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        return read_eof(self);
    }
    PyObject *protocol = gl_stream_protocol(self);
    PyObject *r = protocol ? PyObject_CallMethodOneArg(protocol, str_data_received, data) : NULL;
    Py_XDECREF(protocol);
    Py_DECREF(data);
    if (r == NULL) {
        return fatal(self, "Fatal error: protocol.data_received() call failed.");
    }
    Py_DECREF(r);
    return 0;
}

/* BufferedProtocol: recv straight into the protocol's buffer. */
static int read_get_buffer(gl_stream *self)
{
    PyObject *protocol = gl_stream_protocol(self);
    PyObject *buf = protocol ? PyObject_CallMethodOneArg(protocol, str_get_buffer, minus_one) : NULL;
    Py_ssize_t len = buf ? PyObject_Length(buf) : -1;
    if (len == 0) {
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    }
    if (len <= 0) {
        Py_XDECREF(buf);
        Py_XDECREF(protocol);
        return fatal(self, "Fatal error: protocol.get_buffer() call failed.");
    }
    int again = 0;
    PyObject *nbytes = sock_gone(self, "recv_into") ? NULL : gl_recv_into(self->fd, buf, &again);
    Py_DECREF(buf);
    int r = 0;
    if (nbytes == NULL) {
        r = again ? 0 : fatal(self, "Fatal read error on socket transport");
    } else if (PyLong_AsSsize_t(nbytes) == 0) {
        r = read_eof(self);
    } else {
        count_bytes(self, 1, PyLong_AsSsize_t(nbytes));
        PyObject *res = PyObject_CallMethodOneArg(protocol, str_buffer_updated, nbytes);
        if (res == NULL) {
            r = fatal(self, "Fatal error: protocol.buffer_updated() call failed.");
        }
        Py_XDECREF(res);
    }
    Py_XDECREF(nbytes);
    Py_DECREF(protocol);
    return r;
}

static int read_ready(gl_stream *self)
{
    if (self->conn_lost) {
        return 0;
    }
    return self->buffered ? read_get_buffer(self) : read_data_received(self);
}

/* send with EINTR retry: bytes sent, 0 on EAGAIN, -1 with an exception. */
static Py_ssize_t send_retry(gl_stream *self, const char *p, Py_ssize_t len)
{
    for (;;) {
        ssize_t n = send(self->fd, p, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0) {
            count_bytes(self, 0, n);
            return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

static int watch_writes(gl_stream *self, int on);

static int maybe_pause_protocol(gl_stream *self)
{
    return gl_flow_over_high((gl_flow_control *)self, self->wb.len)
               ? call_method0((PyObject *)self, str_maybe_pause)
               : 0;
}

/* _write_sendmsg / _write_send: flush the buffer once the fd is writable. */
static int write_ready(gl_stream *self)
{
    if (self->wb.len == 0 || self->conn_lost) {
        return 0;
    }
    Py_ssize_t n = sock_gone(self, "sendmsg")
                       ? -1
                       : send_retry(self, self->wb.buf + self->wb.start, self->wb.len);
    if (n < 0) {
        if (gl_exiting_exception()) {
            return -1;
        }
        PyObject *exc = gl_take_exception();
        int r = watch_writes(self, 0);
        if (r == 0) {
            gl_wbuf_consume(&self->wb, self->wb.len);
            r = call_fatal_error(self, exc, "Fatal write error on socket transport");
        }
        if (r == 0 && (r = -gl_stream_missing(self, self->empty_waiter, "_empty_waiter")) == 0 &&
            self->empty_waiter != Py_None) {
            PyObject *res = PyObject_CallMethodOneArg(self->empty_waiter, str_set_exception, exc);
            r = res == NULL ? -1 : 0;
            Py_XDECREF(res);
        }
        Py_XDECREF(exc);
        return r;
    }
    gl_wbuf_consume(&self->wb, n);
    if (gl_flow_under_low((gl_flow_control *)self, self->wb.len) &&
        call_method0((PyObject *)self, str_maybe_resume) < 0) {
        return -1;
    }
    if (self->wb.len > 0) {
        return 0;
    }
    if (watch_writes(self, 0) < 0) {
        return -1;
    }
    if (gl_stream_missing(self, self->empty_waiter, "_empty_waiter")) {
        return -1;
    }
    if (self->empty_waiter != Py_None) {
        PyObject *r = PyObject_CallMethodOneArg(self->empty_waiter, str_set_result, Py_None);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    if (self->closing) {
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_call_connection_lost,
                                                Py_None);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    if (self->eof) {
        if (sock_gone(self, "shutdown")) {
            return -1;
        }
        if (shutdown(self->fd, SHUT_WR) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    return 0;
}

/* ---- fd watching through the loop's tables ---- */

static int on_ready(PyObject *owner, int write)
{
    gl_stream *self = (gl_stream *)owner;
    return write ? write_ready(self) : read_ready(self);
}

static int watch_writes(gl_stream *self, int on)
{
    gl_loop *loop = loop_of(self);
    if (loop == NULL) {
        return 0;
    }
    if (on) {
        return gl_io_watch(loop, self->fd, 1, (PyObject *)self, on_ready, 1);
    }
    return gl_io_unwatch(loop, self->fd, 1) < 0 ? -1 : 0;
}

/* ---- Python-visible methods ---- */

static PyObject *stream_read_ready(gl_stream *self, PyObject *unused)
{
    if (read_ready(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stream_write_ready(gl_stream *self, PyObject *unused)
{
    if (write_ready(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _add_reader(fd, callback, *args): start reading unless paused or
 * closing, with a native watch in place of a Handle on callback. */
static PyObject *stream_add_reader(gl_stream *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->closing || self->paused) {
        Py_RETURN_NONE;
    }
    gl_loop *loop = loop_of(self);
    if (loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute '_add_reader'");
        return NULL;
    }
    if (gl_io_watch(loop, self->fd, 0, (PyObject *)self, on_ready, 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int check_writable(gl_stream *self, PyObject *data, const char *what)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.200s'",
                     Py_TYPE(data)->tp_name);
        return -1;
    }
    if (self->eof) {
        PyErr_Format(PyExc_RuntimeError, "Cannot call %s() after write_eof()", what);
        return -1;
    }
    if (gl_stream_missing(self, self->empty_waiter, "_empty_waiter")) {
        return -1;
    }
    if (self->empty_waiter != Py_None) {
        PyErr_Format(PyExc_RuntimeError, "unable to %s; sendfile is in progress", what);
        return -1;
    }
    return 0;
}

static int warn_lost_write(gl_stream *self)
{
    if (self->conn_lost >= GL_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
        PyObject *r = PyObject_CallMethod(logger, "warning", "s", "socket.send() raised exception.");
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    self->conn_lost++;
    return 0;
}

static PyObject *stream_write(gl_stream *self, PyObject *data)
{
    if (check_writable(self, data, "write") < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        /* e.g. a non-contiguous memoryview: asyncio's send() fails on it
         * inside its try block, so the error is a fatal write error */
        if (self->wb.len == 0 && !self->conn_lost) {
            return fatal(self, "Fatal write error on socket transport") < 0 ? NULL
                                                                            : Py_NewRef(Py_None);
        }
        return NULL;
    }
    const char *p = view.buf;
    Py_ssize_t len = view.len;
    int r = 0;
    if (len == 0) {
        goto done;
    }
    if (self->conn_lost) {
        r = warn_lost_write(self);
        goto done;
    }
    if (self->wb.len == 0) {
        /* Optimization (as asyncio's): try to send now. */
        Py_ssize_t n = sock_gone(self, "send") ? -1 : send_retry(self, p, len);
        if (n < 0) {
            r = fatal(self, "Fatal write error on socket transport");
            goto done;
        }
        if (n == len) {
            goto done;
        }
        p += n;
        len -= n;
        if (watch_writes(self, 1) < 0) {
            r = -1;
            goto done;
        }
    }
    r = gl_wbuf_append(&self->wb, p, len);
    if (r == 0) {
        r = maybe_pause_protocol(self);
    }
done:
    PyBuffer_Release(&view);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* writelines as asyncio 3.12+ does it: buffer everything, flush once,
 * watch for writability if something is left. */
static PyObject *stream_writelines_buffered(gl_stream *self, PyObject *seq)
{
    PyObject *fast = PySequence_Fast(seq, "writelines() argument must be iterable");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyObject_CheckBuffer(item)) {
            PyErr_Format(PyExc_TypeError,
                         "memoryview: a bytes-like object is required, not '%.200s'",
                         Py_TYPE(item)->tp_name);
            Py_DECREF(fast);
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, i), &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(fast);
            return NULL;
        }
        int r = gl_wbuf_append(&self->wb, view.buf, view.len);
        PyBuffer_Release(&view);
        if (r < 0) {
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    if (n == 0) {
        Py_RETURN_NONE;
    }
    if (write_ready(self) < 0 || (self->wb.len > 0 && watch_writes(self, 1) < 0)) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stream_get_write_buffer_size(gl_stream *self, PyObject *unused)
{
    return PyLong_FromSsize_t(self->wb.len);
}

static PyObject *stream_clear_write_buffer(gl_stream *self, PyObject *unused)
{
    gl_wbuf_consume(&self->wb, self->wb.len);
    Py_RETURN_NONE;
}

static PyMethodDef stream_methods[] = {
    {"write", (PyCFunction)stream_write, METH_O, "Write bytes-like data (asyncio semantics)."},
    {"_writelines_buffered", (PyCFunction)stream_writelines_buffered, METH_O, NULL},
    {"get_write_buffer_size", (PyCFunction)stream_get_write_buffer_size, METH_NOARGS, NULL},
    {"_clear_write_buffer", (PyCFunction)stream_clear_write_buffer, METH_NOARGS, NULL},
    {"_read_ready", (PyCFunction)stream_read_ready, METH_NOARGS, NULL},
    {"_write_ready", (PyCFunction)stream_write_ready, METH_NOARGS, NULL},
    {"_add_reader", (PyCFunction)(void (*)(void))stream_add_reader, METH_FASTCALL, NULL},
    {"set_protocol", (PyCFunction)gl_stream_set_protocol, METH_O, NULL},
    {"close", (PyCFunction)gl_stream_close, METH_NOARGS, "Close the transport (asyncio semantics)."},
    {"is_closing", (PyCFunction)gl_stream_is_closing, METH_NOARGS, NULL},
    {"get_protocol", (PyCFunction)gl_stream_get_protocol, METH_NOARGS, NULL},
    {"_read_ready__on_eof", (PyCFunction)gl_stream_on_eof, METH_NOARGS, NULL},
    {"_call_connection_lost", (PyCFunction)gl_stream_call_connection_lost, METH_O, NULL},
    {NULL},
};

/* Object attributes: getsets rather than T_OBJECT_EX members so that an
 * emptied one (`del transport._protocol`) raises the AttributeError
 * asyncio's instance-dict attribute does; 3.13's member descriptors name
 * the type's module in theirs. */
typedef struct {
    const char *name;
    size_t offset;
    int none_when_unset; /* asyncio's class has `_sock = None` */
} obj_attr;

static obj_attr attr_sock = {"_sock", offsetof(gl_stream, sock), 1},
                attr_protocol = {"_protocol", offsetof(gl_stream, protocol), 0},
                attr_server = {"_server", offsetof(gl_stream, server), 0},
                attr_empty_waiter = {"_empty_waiter", offsetof(gl_stream, empty_waiter), 0};

static PyObject **obj_slot(PyObject *self, obj_attr *a)
{
    return (PyObject **)((char *)self + a->offset);
}

static PyObject *obj_get(PyObject *self, void *closure)
{
    obj_attr *a = closure;
    PyObject *v = *obj_slot(self, a);
    if (v == NULL && a->none_when_unset) {
        Py_RETURN_NONE;
    }
    return gl_stream_missing((gl_stream *)self, v, a->name) ? NULL : Py_NewRef(v);
}

static int obj_set(PyObject *self, PyObject *value, void *closure)
{
    obj_attr *a = closure;
    PyObject **slot = obj_slot(self, a);
    if (value == NULL && gl_stream_missing((gl_stream *)self, *slot, a->name)) {
        return -1;
    }
    Py_XSETREF(*slot, Py_XNewRef(value));
    return 0;
}

/* `_extra`: built on first read where the constructor left it pending
 * (stream_conn.c, the lazy extra); setting or deleting it drops what was
 * pending, as it replaces asyncio's dict. */
static PyObject *extra_get(PyObject *self, void *closure)
{
    gl_stream *t = (gl_stream *)self;
    if (gl_stream_extra_ready(t) < 0 || gl_stream_missing(t, t->extra, "_extra")) {
        return NULL;
    }
    return Py_NewRef(t->extra);
}

static int extra_set(PyObject *self, PyObject *value, void *closure)
{
    gl_stream *t = (gl_stream *)self;
    if (value == NULL && gl_stream_extra_ready(t) < 0) {
        return -1;
    }
    if (value == NULL && gl_stream_missing(t, t->extra, "_extra")) {
        return -1;
    }
    Py_CLEAR(t->names.sock);
    Py_XSETREF(t->extra, Py_XNewRef(value));
    return 0;
}

static PyGetSetDef stream_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_extra", extra_get, extra_set, NULL, NULL},
    {"_sock", obj_get, obj_set, NULL, &attr_sock},
    {"_protocol", obj_get, obj_set, NULL, &attr_protocol},
    {"_server", obj_get, obj_set, NULL, &attr_server},
    {"_empty_waiter", obj_get, obj_set, NULL, &attr_empty_waiter},
    {NULL},
};

#define FLAG(name, field) {name, T_BOOL, offsetof(gl_stream, field), 0, NULL}
static PyMemberDef stream_members[] = {
    {"_sock_fd", T_INT, offsetof(gl_stream, fd), 0, NULL},
    {"_conn_lost", T_INT, offsetof(gl_stream, conn_lost), 0, NULL},
    FLAG("_closing", closing),
    FLAG("_eof", eof),
    FLAG("_paused", paused),
    FLAG("_protocol_connected", protocol_connected),
    FLAG("_buffered", buffered),
    FLAG("_closed_by_close", closed_by_close),
    {"max_size", T_PYSSIZET, offsetof(gl_stream, max_size), 0, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(gl_stream, dict), READONLY, NULL},
    {NULL},
};

static PyType_Slot stream_slots[] = {
    {Py_tp_doc, "C core of goloop's socket stream transport (pybridge/stream.c)."},
    {Py_tp_new, stream_new},
    {Py_tp_init, gl_stream_tp_init},
    {Py_tp_finalize, gl_stream_finalize},
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_methods, stream_methods},
    {Py_tp_members, stream_members},
    {Py_tp_getset, stream_getset},
    {0, NULL},
};

static PyType_Spec stream_spec = {
    .name = "goloop._goloop.SocketTransportCore",
    .basicsize = sizeof(gl_stream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = stream_slots,
};

static int init_names(void)
{
    if (!(GL_INTERN(str_data_received, "data_received") && GL_INTERN(str_get_buffer, "get_buffer") &&
          GL_INTERN(str_buffer_updated, "buffer_updated") &&
          GL_INTERN(str_fatal_error, "_fatal_error") &&
          GL_INTERN(str_maybe_pause, "_maybe_pause_protocol") &&
          GL_INTERN(str_maybe_resume, "_maybe_resume_protocol") &&
          GL_INTERN(str_call_connection_lost, "_call_connection_lost") &&
          GL_INTERN(str_set_result, "set_result") && GL_INTERN(str_set_exception, "set_exception"))) {
        return -1;
    }
    minus_one = PyLong_FromLong(-1);
    PyObject *log = PyImport_ImportModule("asyncio.log");
    logger = log ? PyObject_GetAttrString(log, "logger") : NULL;
    Py_XDECREF(log);
    return (minus_one && logger) ? 0 : -1;
}

static int slot_at(PyObject *base, const char *name, size_t offset)
{
    Py_ssize_t got;
    return gl_slot_offset((PyTypeObject *)base, name, &got) == 0 && got == (Py_ssize_t)offset;
}

PyObject *gl_flow_control_base(void)
{
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    PyObject *base = transports ? PyObject_GetAttrString(transports, "_FlowControlMixin") : NULL;
    Py_XDECREF(transports);
    if (base == NULL) {
        return NULL;
    }
    if (((PyTypeObject *)base)->tp_basicsize != sizeof(gl_flow_control) ||
        !slot_at(base, "_extra", offsetof(gl_flow_control, extra)) ||
        !slot_at(base, "_high_water", offsetof(gl_flow_control, high_water)) ||
        !slot_at(base, "_loop", offsetof(gl_flow_control, loop)) ||
        !slot_at(base, "_low_water", offsetof(gl_flow_control, low_water)) ||
        !slot_at(base, "_protocol_paused", offsetof(gl_flow_control, protocol_paused))) {
        PyErr_SetString(PyExc_ImportError, "goloop: unexpected asyncio._FlowControlMixin layout");
        Py_DECREF(base);
        return NULL;
    }
    return base;
}

int gl_stream_init(PyObject *module)
{
    if (init_names() < 0) {
        return -1;
    }
    /* _FlowControlMixin, not just Transport: asyncio's sendfile fallback
     * insists on it (uvloop fails test_sendfile for want of it). */
    PyObject *base = gl_flow_control_base();
    if (base == NULL) {
        return -1;
    }
    PyObject *tp = PyType_FromSpecWithBases(&stream_spec, base);
    Py_DECREF(base);
    if (tp == NULL) {
        return -1;
    }
    if (gl_stream_conn_init(tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    int r = PyModule_AddObjectRef(module, "SocketTransportCore", tp);
    Py_DECREF(tp);
    return r;
}
