/* loop.sock_recv's and sock_recv_into's wait in C (asyncio:
 * selector_events._sock_recv, _sock_recv_into and _sock_read_done).
 *
 * asyncio answers a sock_recv that finds no data by raising and catching
 * BlockingIOError, then registering a reader Handle on a bound method
 * with a functools.partial done-callback that removes it again. Here the
 * first recv reports "nothing yet" without an exception
 * (_sock_recv_now), and the wait is a native watch whose owner, a small
 * op object, receives into a new bytes object and resolves the future.
 * The done-callback is kept for what it is for (a cancelled future must
 * stop watching the fd at once) and removed again when the op resolves
 * the future itself, so a completed receive schedules only the waiting
 * task's wake-up.
 *
 * The op holds the socket, as asyncio's reader Handle does, and receives
 * only while the socket still owns fd: a program may close the socket
 * during the wait, and the next socket made gets the same number (an
 * event can still arrive for it: a dup of the closed socket keeps its
 * registration alive). asyncio's sock.recv then fails with EBADF; so does
 * this, instead of taking the new owner's data. */
#include "goloop.h"
#include <errno.h>

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *fut;
    PyObject *sock;    /* an exact socket.socket */
    PyObject *sockref; /* weakref to the socket, for parking (io.c) */
    PyObject *into;    /* sock_recv_into's buffer, NULL for sock_recv */
    int fd;
    Py_ssize_t n;
} gl_recvop;

static PyObject *str_done, *str_add_done_callback, *str_remove_done_callback,
    *str_set_result, *str_set_exception;

static int recvop_traverse(gl_recvop *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->fut);
    Py_VISIT(self->sock);
    Py_VISIT(self->sockref);
    Py_VISIT(self->into);
    return 0;
}

static int recvop_clear(gl_recvop *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->fut);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->sockref);
    Py_CLEAR(self->into);
    return 0;
}

static void recvop_dealloc(gl_recvop *self)
{
    PyObject_GC_UnTrack(self);
    recvop_clear(self);
    PyObject_GC_Del(self);
}

static int call1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *r = PyObject_CallMethodOneArg(obj, name, arg);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int stop_watching(gl_recvop *op)
{
    return gl_io_unwatch_owner((gl_loop *)op->loop, op->fd, 0, (PyObject *)op) < 0 ? -1 : 0;
}

/* The fd is readable: _sock_recv(fut, sock, n). */
static int recvop_ready(PyObject *owner, int write)
{
    gl_recvop *op = (gl_recvop *)owner;
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
    PyObject *data = NULL;
    if (!owned) {
        if (!PyErr_Occurred()) {
            errno = EBADF; /* what sock.recv says once sock is closed */
            PyErr_SetFromErrno(PyExc_OSError);
        }
    } else {
        data = op->into ? gl_recv_into(op->fd, op->into, &again)
                        : gl_recv_bytes(op->fd, op->n, &again);
    }
    if (data == NULL && again) {
        return 0; /* try again next time */
    }
    if (data == NULL && gl_exiting_exception()) {
        return -1;
    }
    PyObject *exc = data == NULL ? gl_take_exception() : NULL;
    /* a closed socket's registration is not parked for its fd's next owner */
    PyObject *park = owned ? op->sockref : NULL;
    int r = gl_io_park_reader((gl_loop *)op->loop, op->fd, owner, park) < 0 ? -1 : 0;
    if (r == 0) {
        r = call1(op->fut, str_remove_done_callback, owner);
    }
    if (r == 0) {
        r = data != NULL ? call1(op->fut, str_set_result, data)
                         : call1(op->fut, str_set_exception, exc);
    }
    Py_XDECREF(data);
    Py_XDECREF(exc);
    return r;
}

/* The future's done-callback: _sock_read_done. */
static PyObject *recvop_call(gl_recvop *self, PyObject *args, PyObject *kw)
{
    if (stop_watching(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyTypeObject gl_RecvOpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goloop._goloop.SockRecvOp",
    .tp_basicsize = sizeof(gl_recvop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)recvop_traverse,
    .tp_clear = (inquiry)recvop_clear,
    .tp_dealloc = (destructor)recvop_dealloc,
    .tp_call = (ternaryfunc)recvop_call,
};

static int parse_fd(PyObject *arg, int *fd)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *fd = (int)v;
    return 0;
}

static int parse_fd_n(PyObject *const *args, Py_ssize_t nargs, int *fd, Py_ssize_t *n)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, nbytes)");
        return -1;
    }
    if (parse_fd(args[0], fd) < 0) {
        return -1;
    }
    *n = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    return (*n == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* _sock_recv_now(fd, n): sock.recv(n), or None instead of BlockingIOError. */
PyObject *gl_loop_sock_recv_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t n;
    if (parse_fd_n(args, nargs, &fd, &n) < 0) {
        return NULL;
    }
    int again;
    PyObject *data = gl_recv_bytes(fd, n, &again);
    if (data == NULL && again) {
        Py_RETURN_NONE;
    }
    return data;
}

static PyObject *start_wait(gl_loop *loop, PyObject *sock, int fd, Py_ssize_t n, PyObject *into)
{
    PyObject *fut = gl_loop_create_future(loop, NULL);
    if (fut == NULL) {
        return NULL;
    }
    gl_recvop *op = PyObject_GC_New(gl_recvop, &gl_RecvOpType);
    if (op == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    op->loop = Py_NewRef((PyObject *)loop);
    op->fut = Py_NewRef(fut);
    op->sock = Py_NewRef(sock);
    op->sockref = NULL;
    op->into = Py_XNewRef(into);
    op->fd = fd;
    op->n = n;
    PyObject_GC_Track(op);
    int r = gl_io_watch_reader_of(loop, fd, sock, (PyObject *)op, recvop_ready, &op->sockref);
    if (r == 0 && call1(fut, str_add_done_callback, (PyObject *)op) < 0) {
        PyObject *type, *value, *tb; /* keep it across the removal */
        PyErr_Fetch(&type, &value, &tb);
        if (stop_watching(op) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, tb);
        r = -1;
    }
    Py_DECREF(op);
    if (r < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* _sock_recv_wait(sock, fd, n): a future resolved by the next
 * successful recv on fd (sock.fileno()). */
PyObject *gl_loop_sock_recv_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t n;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected (sock, fd, nbytes)");
        return NULL;
    }
    if (parse_fd_n(args + 1, 2, &fd, &n) < 0) {
        return NULL;
    }
    return start_wait(loop, args[0], fd, n, NULL);
}

/* _sock_recv_into_now(fd, buf): sock.recv_into(buf), or None instead of
 * BlockingIOError. */
PyObject *gl_loop_sock_recv_into_now(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, buffer)");
        return NULL;
    }
    if (parse_fd(args[0], &fd) < 0) {
        return NULL;
    }
    int again;
    PyObject *n = gl_recv_into(fd, args[1], &again);
    if (n == NULL && again) {
        Py_RETURN_NONE;
    }
    return n;
}

/* _sock_recv_into_wait(sock, fd, buf): a future resolved with the byte
 * count of the next successful recv_into. */
PyObject *gl_loop_sock_recv_into_wait(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected (sock, fd, buffer)");
        return NULL;
    }
    if (parse_fd(args[1], &fd) < 0) {
        return NULL;
    }
    return start_wait(loop, args[0], fd, 0, args[2]);
}

int gl_sockops_init(void)
{
    str_done = PyUnicode_InternFromString("done");
    str_add_done_callback = PyUnicode_InternFromString("add_done_callback");
    str_remove_done_callback = PyUnicode_InternFromString("remove_done_callback");
    str_set_result = PyUnicode_InternFromString("set_result");
    str_set_exception = PyUnicode_InternFromString("set_exception");
    if (!str_done || !str_add_done_callback || !str_remove_done_callback || !str_set_result ||
        !str_set_exception) {
        return -1;
    }
    return PyType_Ready(&gl_RecvOpType);
}
