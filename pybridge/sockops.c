/* The loop's sock_* calls in C for plain non-blocking sockets (asyncio:
 * selector_events' sock_recv, sock_recv_into, sock_recvfrom,
 * sock_recvfrom_into, sock_sendall, sock_sendto, sock_connect and
 * sock_accept, their _sock_* callbacks and _sock_read_done /
 * _sock_write_done).
 *
 * asyncio tries the syscall, and when it finds nothing to do yet it
 * raises and catches BlockingIOError, makes a future, registers a reader
 * or writer Handle on a bound method and adds a functools.partial
 * done-callback that removes it again. Here the first try reports
 * "nothing yet" without an exception (the *_now functions return None),
 * and the wait is a native watch whose owner, a small op object, retries
 * the syscall and resolves the future. The done-callback is kept for what
 * it is for (a cancelled future must stop watching the fd at once: no
 * data is taken, nothing more is sent after the cancel) and removed again
 * when the op resolves the future itself, so a completed operation
 * schedules only the waiting task's wake-up.
 *
 * The op holds the socket, as asyncio's Handle does, and makes its
 * syscall only while the socket still owns fd: a program may close the
 * socket during the wait, and the next socket made gets the same number
 * (an event can still arrive for it: a dup of the closed socket keeps its
 * registration alive). asyncio's sock.recv (send, getsockopt, ...) then
 * fails with EBADF; so does this, instead of reaching the new owner.
 *
 * Reads (recv, recv_into, recvfrom, recvfrom_into, accept) wait through
 * io.c's parked, edge-triggered read interest: each of them tries its
 * syscall before waiting. A connect, tried before it waits too, waits
 * edge-triggered and parks its registration when done, so the transport
 * or sock_recv that follows on the socket needs no DEL + ADD (io.c). The
 * other writes (sendall, sendto) wait on a plain level-triggered writer,
 * as asyncio's do.
 *
 * What the *_now functions cannot do exactly as socket's methods (a
 * family sockaddr.c does not build addresses for, a send buffer that
 * is not plain bytes) they answer with NotImplemented before any
 * syscall, and loop.py takes asyncio's own path. */
#include "stream.h"
#include <errno.h>

enum {
    OP_RECV,
    OP_RECV_INTO,
    OP_RECVFROM,
    OP_RECVFROM_INTO,
    OP_ACCEPT,
    OP_SENDALL, /* the first writer kind */
    OP_SENDTO,
    OP_CONNECT, /* the connects last */
    OP_CONNECT_STREAM,
};
#define OP_WRITES(kind) ((kind) >= OP_SENDALL)
#define OP_CONNECTS(kind) ((kind) >= OP_CONNECT)

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *fut;
    PyObject *sock;    /* an exact socket.socket */
    PyObject *sockref; /* weakref to the socket, for parking (io.c) */
    PyObject *obj;     /* recv_into's buffer, sendall/sendto's data, the protocol factory */
    PyObject *ttype;   /* the transport type a connected stream gets */
    PyObject *addr;    /* sendto's and connect's address */
    Py_buffer view;    /* sendall's data, while has_view */
    int has_view;
    int kind;
    int fd;
    Py_ssize_t n; /* bytes to receive; sendall's position */
} gl_sockop;

static PyObject *str_done, *str_add_done_callback, *str_remove_done_callback,
    *str_set_result, *str_set_exception, *str_sendto, *str_close;
/* asyncio.tasks' current_task, _enter_task and _leave_task (_asyncio's C
 * functions where the interpreter has them): connected_stream runs the
 * protocol factory as the connecting task. */
static PyObject *current_task_fn, *enter_task_fn, *leave_task_fn;

static void release_view(gl_sockop *self)
{
    if (self->has_view) {
        self->has_view = 0;
        PyBuffer_Release(&self->view);
    }
}

static int sockop_traverse(gl_sockop *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->fut);
    Py_VISIT(self->sock);
    Py_VISIT(self->sockref);
    Py_VISIT(self->obj);
    Py_VISIT(self->addr);
    Py_VISIT(self->ttype);
    if (self->has_view) {
        Py_VISIT(self->view.obj);
    }
    return 0;
}

static int sockop_clear(gl_sockop *self)
{
    release_view(self);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->fut);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->sockref);
    Py_CLEAR(self->obj);
    Py_CLEAR(self->addr);
    Py_CLEAR(self->ttype);
    return 0;
}

static void sockop_dealloc(gl_sockop *self)
{
    PyObject_GC_UnTrack(self);
    sockop_clear(self);
    PyObject_GC_Del(self);
}

static int call1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *r = PyObject_CallMethodOneArg(obj, name, arg);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The op is finished (done, cancelled, failed): stop watching fd, and let
 * go of sendall's data (asyncio's Handle and its memoryview go with
 * remove_writer). */
static int stop_watching(gl_sockop *op)
{
    release_view(op);
    int w = OP_WRITES(op->kind);
    return gl_io_unwatch_owner((gl_loop *)op->loop, op->fd, w, (PyObject *)op) < 0 ? -1 : 0;
}

/* ---- the syscalls, as socket's methods make them ---- */

/* recvfrom(fd, n) into a new bytes object: (data, address) as
 * socket.recvfrom returns it; NULL with *again set when nothing is there. */
static PyObject *recvfrom_bytes(int fd, Py_ssize_t n, int *again)
{
    *again = 0;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recvfrom");
        return NULL;
    }
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    PyObject *data = NULL;
    Py_ssize_t got;
    if (n <= GL_SCRATCH_SIZE) {
        got = gl_recv_retry(fd, gl_scratch, n, &sa, &salen);
        if (got >= 0) {
            data = PyBytes_FromStringAndSize(gl_scratch, got);
        }
    } else {
        data = PyBytes_FromStringAndSize(NULL, n);
        if (data == NULL) {
            return NULL;
        }
        got = gl_recv_retry(fd, PyBytes_AS_STRING(data), n, &sa, &salen);
        if (got < 0) {
            Py_CLEAR(data);
        } else if (got < n && _PyBytes_Resize(&data, got) < 0) {
            return NULL;
        }
    }
    if (got < 0) {
        *again = got == -1;
        return NULL;
    }
    PyObject *addr = data ? gl_sockaddr_to_py(&sa, salen) : NULL;
    if (addr == NULL) {
        Py_XDECREF(data);
        return NULL;
    }
    PyObject *r = PyTuple_Pack(2, data, addr);
    Py_DECREF(data);
    Py_DECREF(addr);
    return r;
}

/* socket.recvfrom_into(buf, nbytes): (count, address). */
static PyObject *recvfrom_into(int fd, PyObject *buf, Py_ssize_t nbytes, int *again)
{
    *again = 0;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "recvfrom_into() argument 1 must be read-write bytes-like object, "
                     "not %.200s",
                     Py_TYPE(buf)->tp_name);
        return NULL;
    }
    if (nbytes < 0 || nbytes > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, nbytes < 0
                                              ? "negative buffersize in recvfrom_into"
                                              : "nbytes is greater than the length of the buffer");
        return NULL;
    }
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    Py_ssize_t got = gl_recv_retry(fd, view.buf, nbytes ? nbytes : view.len, &sa, &salen);
    PyBuffer_Release(&view);
    if (got < 0) {
        *again = got == -1;
        return NULL;
    }
    PyObject *addr = gl_sockaddr_to_py(&sa, salen);
    return addr ? Py_BuildValue("(nN)", got, addr) : NULL;
}

/* send(2) with PEP 475's EINTR retry: bytes sent, 0 on EAGAIN, -1 with an
 * exception. MSG_NOSIGNAL: Python ignores SIGPIPE, so socket.send's EPIPE
 * is the same, and a program that restored SIGPIPE is not killed here. */
static Py_ssize_t send_retry(int fd, const char *p, Py_ssize_t len)
{
    for (;;) {
        ssize_t n = send(fd, p, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0) {
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

/* sock.accept() + conn.setblocking(False): (conn, address). */
static PyObject *accept_conn(PyObject *sock, int fd, int *again)
{
    *again = 0;
    long fam = gl_socket_int(gl_raw_family, sock);
    long type = fam == -1 ? -1 : gl_socket_int(gl_raw_type, sock);
    if (type == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *family = PyLong_FromLong(fam);
    /* the type tells the new socket object it is non-blocking (accept.c) */
    PyObject *nbtype = family ? PyLong_FromLong(type | SOCK_NONBLOCK) : NULL;
    PyObject *proto =
        nbtype ? Py_TYPE(gl_raw_proto)->tp_descr_get(gl_raw_proto, sock, NULL) : NULL;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    PyObject *r = NULL;
    int err = 0;
    PyObject *conn = proto ? gl_accept_one(fd, family, nbtype, proto, &sa, &salen, &err) : NULL;
    if (conn != NULL) {
        PyObject *peer = gl_sockaddr_to_py(&sa, salen);
        r = peer ? PyTuple_Pack(2, conn, peer) : NULL;
        Py_DECREF(conn);
        Py_XDECREF(peer);
    } else if (err == EAGAIN || err == EWOULDBLOCK) {
        *again = 1;
    } else if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_XDECREF(family);
    Py_XDECREF(nbtype);
    Py_XDECREF(proto);
    return r;
}

/* sock.sendto(data, 0, address) (socket's own address parsing), with
 * BlockingIOError and InterruptedError as "again". */
static PyObject *sendto_call(gl_sockop *op, int *again)
{
    *again = 0;
    PyObject *flags = PyLong_FromLong(0);
    if (flags == NULL) {
        return NULL;
    }
    PyObject *args[4] = {op->sock, op->obj, flags, op->addr};
    PyObject *r = PyObject_VectorcallMethod(str_sendto, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    Py_DECREF(flags);
    if (r == NULL && (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                      PyErr_ExceptionMatches(PyExc_InterruptedError))) {
        PyErr_Clear();
        *again = 1;
    }
    return r;
}

/* _sock_connect_cb: SO_ERROR, raised as OSError(err, 'Connect call failed
 * {address}') (an OSError subclass by errno, as OSError(...) picks). */
static PyObject *connect_result(gl_sockop *op, int *again)
{
    *again = 0;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            *again = 1;
            return NULL;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (err == 0) {
        Py_RETURN_NONE;
    }
    PyObject *msg = PyUnicode_FromFormat("Connect call failed %S", op->addr);
    PyObject *exc = msg ? PyObject_CallFunction(PyExc_OSError, "iN", err, msg) : NULL;
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* One try of op's syscall: the future's result, or NULL with *again set
 * (keep waiting) or an exception. sendall sets *again until all is sent. */
static PyObject *attempt(gl_sockop *op, int *again)
{
    switch (op->kind) {
    case OP_RECV:
        return gl_recv_bytes(op->fd, op->n, again);
    case OP_RECV_INTO:
        return gl_recv_into(op->fd, op->obj, again);
    case OP_RECVFROM:
        return recvfrom_bytes(op->fd, op->n, again);
    case OP_RECVFROM_INTO:
        return recvfrom_into(op->fd, op->obj, op->n, again);
    case OP_ACCEPT:
        return accept_conn(op->sock, op->fd, again);
    case OP_SENDALL: {
        Py_ssize_t sent = send_retry(op->fd, (char *)op->view.buf + op->n, op->view.len - op->n);
        *again = 0;
        if (sent < 0) {
            return NULL;
        }
        op->n += sent;
        if (op->n < op->view.len) {
            *again = 1;
            return NULL;
        }
        Py_RETURN_NONE;
    }
    case OP_SENDTO:
        return sendto_call(op, again);
    default:
        return connect_result(op, again);
    }
}

/* The connect of a _sock_connect_stream op succeeded: what
 * _create_connection_transport does next (protocol_factory(), the
 * transport, whose constructor queues connection_made), here in the
 * connect's own callback rather than a loop iteration later in the
 * waiting task: the task's wake-up is queued behind connection_made, so
 * it resumes with connection_made run, as stock's waiter has it, one
 * iteration sooner. The future's result: (transport, protocol), or (None,
 * exception) for what the factory or the transport raised (connect.py
 * raises it in the task, where stock raises it). op->obj: (protocol_factory,
 * the connecting task or None, the context it ran in or None); the
 * factory and the transport's constructor run in that context with that
 * task entered as the loop's current task, as they run inside the task in
 * stock (asyncio.current_task() and contextvars in the factory are the
 * task's). */
static PyObject *connected_stream(gl_sockop *op)
{
    PyObject *factory = PyTuple_GET_ITEM(op->obj, 0), *task = PyTuple_GET_ITEM(op->obj, 1);
    PyObject *ctx = PyTuple_GET_ITEM(op->obj, 2);
    PyObject *protocol, *t = NULL;
    if (ctx != Py_None && PyContext_Enter(ctx) < 0) {
        return NULL; /* it is entered elsewhere: not while its task waits here */
    }
    PyObject *entered = task == Py_None
                            ? Py_NewRef(Py_None)
                            : PyObject_CallFunctionObjArgs(enter_task_fn, op->loop, task, NULL);
    if (entered != NULL) {
        Py_DECREF(entered);
        t = gl_stream_make(op->loop, op->sock, NULL, 0, factory, Py_None,
                           (PyTypeObject *)op->ttype, &protocol);
        PyObject *exc = gl_take_exception(); /* kept across _leave_task */
        PyObject *left = task == Py_None ? Py_NewRef(Py_None)
                                         : PyObject_CallFunctionObjArgs(leave_task_fn, op->loop,
                                                                        task, NULL);
        Py_XDECREF(left);
        if (left == NULL) {
            Py_XDECREF(exc);
        } else if (exc != NULL) {
            gl_restore_exception(exc);
        }
        if (left == NULL && t != NULL) {
            Py_CLEAR(t);
            Py_DECREF(protocol);
        }
    }
    if (ctx != Py_None) {
        PyObject *exc = gl_take_exception(); /* kept across the exit */
        if (PyContext_Exit(ctx) < 0) {
            Py_XDECREF(exc);
            if (t != NULL) {
                Py_DECREF(t);
                Py_DECREF(protocol);
            }
            return NULL;
        }
        if (exc != NULL) {
            gl_restore_exception(exc);
        }
    }
    if (t == NULL) {
        PyObject *exc = gl_take_exception();
        PyObject *r = exc ? PyTuple_Pack(2, Py_None, exc) : NULL;
        Py_XDECREF(exc);
        return r;
    }
    PyObject *r = PyTuple_Pack(2, t, protocol);
    Py_DECREF(t);
    Py_DECREF(protocol);
    return r;
}

/* 1 when the factory cancelled the waiting task (its future): the
 * transport just made is closed, as stock's `await waiter` handler
 * closes it; 0 when the future still waits; -1 with an exception. */
static int cancelled_meanwhile(gl_sockop *op, PyObject *made)
{
    PyObject *done = PyObject_CallMethodNoArgs(op->fut, str_done);
    int is_done = done ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    if (is_done != 1) {
        return is_done;
    }
    PyObject *t = PyTuple_GET_ITEM(made, 0);
    if (t != Py_None) {
        PyObject *r = PyObject_CallMethodNoArgs(t, str_close);
        Py_XDECREF(r);
        if (r == NULL) {
            return -1;
        }
    }
    return 1;
}

/* The fd is ready: asyncio's _sock_recv(fut, sock, n) & co. */
static int sockop_ready(PyObject *owner, int write)
{
    gl_sockop *op = (gl_sockop *)owner;
    PyObject *done = PyObject_CallMethodNoArgs(op->fut, str_done);
    if (done == NULL) {
        return -1;
    }
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done) { /* cancelled before its done-callback ran */
        return stop_watching(op);
    }
    int again = 0;
    int owned = gl_socket_fd(op->sock) == op->fd;
    PyObject *result = NULL;
    if (!owned) {
        if (!PyErr_Occurred()) {
            errno = EBADF; /* what sock.recv & co. say once sock is closed */
            PyErr_SetFromErrno(PyExc_OSError);
        }
    } else {
        result = attempt(op, &again);
    }
    if (result == NULL && again) {
        return 0; /* try again next time */
    }
    if (result == NULL && gl_exiting_exception()) {
        return -1;
    }
    PyObject *exc = result == NULL ? gl_take_exception() : NULL;
    int r;
    if (OP_WRITES(op->kind) && !OP_CONNECTS(op->kind)) {
        r = stop_watching(op);
    } else {
        /* a closed socket's registration is not parked for its fd's next owner */
        PyObject *park = owned ? op->sockref : NULL;
        r = gl_io_park((gl_loop *)op->loop, op->fd, OP_WRITES(op->kind), owner, park) < 0 ? -1
                                                                                          : 0;
    }
    if (r == 0) {
        r = call1(op->fut, str_remove_done_callback, owner);
    }
    if (r == 0 && result != NULL && op->kind == OP_CONNECT_STREAM) {
        Py_SETREF(result, connected_stream(op));
        r = result == NULL ? -1 : cancelled_meanwhile(op, result);
        if (r == 1) {
            r = 0;
            Py_CLEAR(result); /* nobody waits for it */
            goto out;
        }
    }
    if (r == 0) {
        r = result != NULL ? call1(op->fut, str_set_result, result)
                           : call1(op->fut, str_set_exception, exc);
    }
out:
    Py_XDECREF(result);
    Py_XDECREF(exc);
    return r;
}

/* The future's done-callback: _sock_read_done / _sock_write_done. */
static PyObject *sockop_call(gl_sockop *self, PyObject *args, PyObject *kw)
{
    if (stop_watching(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyTypeObject gl_SockOpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goloop._goloop.SockOp",
    .tp_doc = "A loop.sock_* call waiting on its fd (see pybridge/sockops.c).",
    .tp_basicsize = sizeof(gl_sockop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)sockop_traverse,
    .tp_clear = (inquiry)sockop_clear,
    .tp_dealloc = (destructor)sockop_dealloc,
    .tp_call = (ternaryfunc)sockop_call,
};

/* ---- argument helpers ---- */

static int check_nargs(Py_ssize_t nargs, Py_ssize_t want, const char *sig)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %s", sig);
        return -1;
    }
    return 0;
}

static int parse_fd(PyObject *arg, int *fd)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *fd = (int)v;
    return 0;
}

static int parse_size(PyObject *arg, Py_ssize_t *n)
{
    *n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    return (*n == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* Whether sockaddr.c builds this socket's addresses as socket does. */
static int family_supported(PyObject *sock, int *ok)
{
    long fam = gl_socket_int(gl_raw_family, sock);
    if (fam == -1 && PyErr_Occurred()) {
        return -1;
    }
    *ok = gl_sockaddr_supported((int)fam);
    return 0;
}

/* A result, or None for "nothing yet" (again) or NULL with an exception. */
static PyObject *now_result(PyObject *r, int again)
{
    if (r == NULL && again) {
        Py_RETURN_NONE;
    }
    return r;
}

/* sendall's data as socket.send and asyncio's memoryview(data) see it
 * alike: bytes, bytearray, or a one-dimensional byte memoryview (len()
 * counts bytes). 0 when it is something else. */
static int plain_bytes(PyObject *data)
{
    if (PyBytes_CheckExact(data) || PyByteArray_CheckExact(data)) {
        return 1;
    }
    if (!PyMemoryView_Check(data)) {
        return 0;
    }
    Py_buffer *v = PyMemoryView_GET_BUFFER(data);
    return v->itemsize == 1 && v->ndim == 1 && PyBuffer_IsContiguous(v, 'C');
}

/* ---- starting a wait ---- */

/* loop._ensure_fd_no_transport(fd), as asyncio calls it before a wait. */
static int ensure_no_transport(gl_loop *loop, int fd)
{
    PyObject *fdobj = PyLong_FromLong(fd);
    int r = fdobj ? gl_ensure_fd_no_transport((PyObject *)loop, fdobj, fd) : -1;
    Py_XDECREF(fdobj);
    return r;
}

static PyObject *start_wait(gl_loop *loop, int kind, PyObject *sock, int fd, Py_ssize_t n,
                            PyObject *obj, PyObject *addr, PyObject *ttype)
{
    if (ensure_no_transport(loop, fd) < 0) {
        return NULL;
    }
    PyObject *fut = gl_loop_create_future(loop, NULL);
    if (fut == NULL) {
        return NULL;
    }
    gl_sockop *op = PyObject_GC_New(gl_sockop, &gl_SockOpType);
    if (op == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    op->loop = Py_NewRef((PyObject *)loop);
    op->fut = Py_NewRef(fut);
    op->sock = Py_NewRef(sock);
    op->sockref = NULL;
    op->obj = Py_XNewRef(obj);
    op->addr = Py_XNewRef(addr);
    op->ttype = Py_XNewRef(ttype);
    op->has_view = 0;
    op->kind = kind;
    op->fd = fd;
    op->n = n;
    PyObject_GC_Track(op);
    int r = 0;
    if (kind == OP_SENDALL) {
        /* asyncio's memoryview(data): data is exported (a bytearray cannot
         * be resized) until the send ends or is cancelled */
        r = PyObject_GetBuffer(obj, &op->view, PyBUF_SIMPLE);
        op->has_view = r == 0;
    }
    if (r == 0) {
        r = OP_WRITES(kind) && !OP_CONNECTS(kind)
                ? gl_io_watch(loop, fd, 1, (PyObject *)op, sockop_ready, 0)
                : gl_io_watch_of(loop, fd, OP_CONNECTS(kind), sock, (PyObject *)op,
                                 sockop_ready, &op->sockref);
        if (r == 0 && call1(fut, str_add_done_callback, (PyObject *)op) < 0) {
            PyObject *exc = gl_take_exception(); /* keep it across the removal */
            if (stop_watching(op) < 0) {
                PyErr_Clear();
            }
            gl_restore_exception(exc);
            r = -1;
        }
    }
    if (r < 0) {
        release_view(op);
    }
    Py_DECREF(op);
    if (r < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* ---- the loop's methods (loop.py calls them; see GL_SOCKOPS_METHODS) ---- */

/* _sock_recv_now(fd, n): sock.recv(n), or None instead of BlockingIOError. */
static PyObject *sock_recv_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, again;
    Py_ssize_t n;
    if (check_nargs(nargs, 2, "(fd, nbytes)") < 0 || parse_fd(args[0], &fd) < 0 ||
        parse_size(args[1], &n) < 0) {
        return NULL;
    }
    PyObject *r = gl_recv_bytes(fd, n, &again);
    return now_result(r, again);
}

/* _sock_recv_wait(sock, fd, n): a future resolved by the next successful
 * recv on fd (sock.fileno()). */
static PyObject *sock_recv_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t n;
    if (check_nargs(nargs, 3, "(sock, fd, nbytes)") < 0 || parse_fd(args[1], &fd) < 0 ||
        parse_size(args[2], &n) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_RECV, args[0], fd, n, NULL, NULL, NULL);
}

/* _sock_recv_into_now(fd, buf): sock.recv_into(buf), or None. */
static PyObject *sock_recv_into_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, again;
    if (check_nargs(nargs, 2, "(fd, buffer)") < 0 || parse_fd(args[0], &fd) < 0) {
        return NULL;
    }
    PyObject *r = gl_recv_into(fd, args[1], &again);
    return now_result(r, again);
}

/* _sock_recv_into_wait(sock, fd, buf): the byte count of the next
 * successful recv_into. */
static PyObject *sock_recv_into_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (check_nargs(nargs, 3, "(sock, fd, buffer)") < 0 || parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_RECV_INTO, args[0], fd, 0, args[2], NULL, NULL);
}

/* _sock_recvfrom_now(sock, fd, n): sock.recvfrom(n), None, or
 * NotImplemented (a family whose addresses sockaddr.c does not build). */
static PyObject *sock_recvfrom_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, ok, again;
    Py_ssize_t n;
    if (check_nargs(nargs, 3, "(sock, fd, nbytes)") < 0 || family_supported(args[0], &ok) < 0 ||
        parse_fd(args[1], &fd) < 0 || parse_size(args[2], &n) < 0) {
        return NULL;
    }
    if (!ok) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *r = recvfrom_bytes(fd, n, &again);
    return now_result(r, again);
}

static PyObject *sock_recvfrom_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t n;
    if (check_nargs(nargs, 3, "(sock, fd, nbytes)") < 0 || parse_fd(args[1], &fd) < 0 ||
        parse_size(args[2], &n) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_RECVFROM, args[0], fd, n, NULL, NULL, NULL);
}

/* _sock_recvfrom_into_now(sock, fd, buf, nbytes): sock.recvfrom_into(buf,
 * nbytes), None, or NotImplemented (as above). */
static PyObject *sock_recvfrom_into_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, ok, again;
    Py_ssize_t n;
    if (check_nargs(nargs, 4, "(sock, fd, buffer, nbytes)") < 0 ||
        family_supported(args[0], &ok) < 0 || parse_fd(args[1], &fd) < 0 ||
        parse_size(args[3], &n) < 0) {
        return NULL;
    }
    if (!ok) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *r = recvfrom_into(fd, args[2], n, &again);
    return now_result(r, again);
}

static PyObject *sock_recvfrom_into_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t n;
    if (check_nargs(nargs, 4, "(sock, fd, buffer, nbytes)") < 0 || parse_fd(args[1], &fd) < 0 ||
        parse_size(args[3], &n) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_RECVFROM_INTO, args[0], fd, n, args[2], NULL, NULL);
}

/* _sock_sendall_native(sock, fd, data): sock.send(data) and, if that did not
 * send it all, a future for the rest (asyncio's _sock_sendall from the
 * position reached); None when all was sent; NotImplemented, before any
 * syscall, for data that is not plain bytes (see plain_bytes). */
static PyObject *sock_sendall(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (check_nargs(nargs, 3, "(sock, fd, data)") < 0 || parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    PyObject *data = args[2];
    if (!plain_bytes(data)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_ssize_t sent = send_retry(fd, view.buf, view.len);
    Py_ssize_t len = view.len;
    PyBuffer_Release(&view);
    if (sent < 0) {
        return NULL;
    }
    if (sent == len) {
        Py_RETURN_NONE;
    }
    return start_wait(loop, OP_SENDALL, args[0], fd, sent, data, NULL, NULL);
}

/* _sock_sendto_wait(sock, fd, data, address): a future for
 * sock.sendto(data, 0, address) once fd is writable. */
static PyObject *sock_sendto_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (check_nargs(nargs, 4, "(sock, fd, data, address)") < 0 || parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_SENDTO, args[0], fd, 0, args[2], args[3], NULL);
}

/* _sock_connect_wait(sock, fd, address): a future for the connection in
 * progress on fd (None, or its SO_ERROR as asyncio raises it). */
static PyObject *sock_connect_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (check_nargs(nargs, 3, "(sock, fd, address)") < 0 || parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_CONNECT, args[0], fd, 0, NULL, args[2], NULL);
}

/* _sock_connect_stream(sock, fd, address, protocol_factory,
 * transport_type): _sock_connect_wait whose future, once connected, has
 * the transport made and the result (transport, protocol) (see
 * connected_stream). sock: an exact socket.socket; transport_type:
 * SocketTransport, on a loop whose transport factory is Loop's. */
static PyObject *sock_connect_stream(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (check_nargs(nargs, 5, "(sock, fd, address, protocol_factory, transport_type)") < 0 ||
        parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], gl_socket_type) || !PyType_Check(args[4]) ||
        !gl_is_stream_type((PyTypeObject *)args[4])) {
        PyErr_SetString(PyExc_TypeError, "_sock_connect_stream: bad arguments");
        return NULL;
    }
    PyObject *task = PyObject_CallOneArg(current_task_fn, (PyObject *)loop);
    PyObject *ctx = PyThreadState_GET()->context; /* the running task's, entered */
    PyObject *obj = task ? PyTuple_Pack(3, args[3], task, ctx ? ctx : Py_None) : NULL;
    Py_XDECREF(task);
    if (obj == NULL) {
        return NULL;
    }
    PyObject *r = start_wait(loop, OP_CONNECT_STREAM, args[0], fd, 0, obj, args[2], args[4]);
    Py_DECREF(obj);
    return r;
}

/* _sock_accept_now(sock, fd): (conn, address) as sock.accept() +
 * conn.setblocking(False) leave them, None, or NotImplemented (as
 * recvfrom). */
static PyObject *sock_accept_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, ok, again;
    if (check_nargs(nargs, 2, "(sock, fd)") < 0 || family_supported(args[0], &ok) < 0 ||
        parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    if (!ok) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *r = accept_conn(args[0], fd, &again);
    return now_result(r, again);
}

static PyObject *sock_accept_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (check_nargs(nargs, 2, "(sock, fd)") < 0 || parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    return start_wait(loop, OP_ACCEPT, args[0], fd, 0, NULL, NULL, NULL);
}

#define FASTCALL(name, fn) {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL, NULL}
static PyMethodDef sockops_methods[] = {
    FASTCALL("_sock_recv_now", sock_recv_now),
    FASTCALL("_sock_recv_wait", sock_recv_wait),
    FASTCALL("_sock_recv_into_now", sock_recv_into_now),
    FASTCALL("_sock_recv_into_wait", sock_recv_into_wait),
    FASTCALL("_sock_recvfrom_now", sock_recvfrom_now),
    FASTCALL("_sock_recvfrom_wait", sock_recvfrom_wait),
    FASTCALL("_sock_recvfrom_into_now", sock_recvfrom_into_now),
    FASTCALL("_sock_recvfrom_into_wait", sock_recvfrom_into_wait),
    FASTCALL("_sock_sendall_native", sock_sendall),
    FASTCALL("_sock_sendto_wait", sock_sendto_wait),
    FASTCALL("_sock_connect_wait", sock_connect_wait),
    FASTCALL("_sock_connect_stream", sock_connect_stream),
    FASTCALL("_sock_accept_now", sock_accept_now),
    FASTCALL("_sock_accept_wait", sock_accept_wait),
    {NULL},
};

/* Add the methods above to LoopCore (after PyType_Ready: they live here,
 * with the op type, rather than in loop.c's table). */
int gl_sockops_add_methods(PyTypeObject *type)
{
    for (PyMethodDef *def = sockops_methods; def->ml_name != NULL; def++) {
        PyObject *descr = PyDescr_NewMethod(type, def);
        int r = descr ? PyDict_SetItemString(type->tp_dict, def->ml_name, descr) : -1;
        Py_XDECREF(descr);
        if (r < 0) {
            return -1;
        }
    }
    PyType_Modified(type);
    return 0;
}

int gl_sockops_init(void)
{
    if (!(GL_INTERN(str_done, "done") && GL_INTERN(str_add_done_callback, "add_done_callback") &&
          GL_INTERN(str_remove_done_callback, "remove_done_callback") &&
          GL_INTERN(str_set_result, "set_result") &&
          GL_INTERN(str_set_exception, "set_exception") && GL_INTERN(str_sendto, "sendto") && GL_INTERN(str_close, "close"))) {
        return -1;
    }
    PyObject *tasks = PyImport_ImportModule("asyncio.tasks");
    if (tasks == NULL) {
        return -1;
    }
    current_task_fn = PyObject_GetAttrString(tasks, "current_task");
    enter_task_fn = current_task_fn ? PyObject_GetAttrString(tasks, "_enter_task") : NULL;
    leave_task_fn = enter_task_fn ? PyObject_GetAttrString(tasks, "_leave_task") : NULL;
    Py_DECREF(tasks);
    if (leave_task_fn == NULL) {
        return -1;
    }
    return PyType_Ready(&gl_SockOpType);
}
