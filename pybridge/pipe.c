/* The pipe transports' per-event half in C (asyncio's
 * unix_events._UnixReadPipeTransport and _UnixWritePipeTransport:
 * connect_read_pipe, connect_write_pipe and a child's stdin, stdout and
 * stderr).
 *
 * What runs once per read or write lives here: the read(2) into the
 * loop-wide scratch buffer and data_received; pause_reading and
 * resume_reading (a StreamReader pauses and resumes its pipe every time
 * its buffer passes 128 KiB: a child's stdout read in 256 KiB pieces does
 * both per read); write(), which writes at once when nothing is buffered
 * and otherwise appends to the C write buffer shared with the socket
 * transport (wbuf.c), and the flush once the fd is writable, with the
 * flow-control thresholds compared in C; and growing a pipe a write
 * finds full ("the pipe's capacity" below). Each runs as a native watch
 * (watch.c), not a Handle around a bound method. The constructors and the
 * rarer paths (close, abort, write_eof, errors, repr, __del__) are
 * asyncio's own code in python/goloop/pipes.py.
 *
 * Before each read or write the transport checks that its pipe object
 * still holds the fd (pipe_holds): a pipe the program closed under the
 * transport fails with EBADF, as os.write on the closed fd would, instead
 * of the syscall reaching whatever file reused the number. */
#include "goloop.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define GL_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5 /* asyncio.constants */
#define GL_PIPE_MAX_SIZE (256 * 1024)          /* _UnixReadPipeTransport.max_size */

typedef struct {
    PyObject_HEAD
    PyObject *extra; /* BaseTransport's slot */
    PyObject *loop;
    PyObject *pipe;
    PyObject *protocol;
    int fd;
    char closing, paused;
    Py_ssize_t max_size;
    PyObject *dict; /* instance attributes, created on first use */
} gl_rpipe;

typedef struct {
    PyObject_HEAD
    GL_FLOW_CONTROL_SLOTS /* the Python bases' slots (goloop.h) */
    PyObject *pipe;
    PyObject *protocol;
    int fd;
    int conn_lost;
    char closing; /* close() or write_eof() was called */
    gl_wbuf wb;
    int pipe_size;  /* the pipe's capacity: 0 not asked yet, -1 not growing it */
    int grown;      /* bytes of capacity this transport added (grow_left's) */
    PyObject *dict;
} gl_wpipe;

static PyObject *str_data_received, *str_eof_received, *str_fatal_error,
    *str_call_connection_lost, *str_maybe_pause, *str_maybe_resume;
static PyObject *logger; /* asyncio.log.logger */
static int asserts_enabled; /* not python -O: asyncio's asserts run */

/* ---- whether the pipe object still holds the fd ---- */

static PyTypeObject *FileIOType; /* io.FileIO: what subprocess pipes and os.fdopen(..., 0) are */
static int fileio_fd_ok;         /* its fd field read directly (checked at init) */
typedef struct {
    PyObject_HEAD
    int fd; /* Modules/_io/fileio.c: -1 once closed */
} fileio_head;

/* 1 when pipe is open on fd; 0 when it is None, closed or on another fd
 * (fileno() raising counts as closed: FileIO's ValueError). */
static int pipe_holds(PyObject *pipe, int fd)
{
    if (pipe == NULL || pipe == Py_None || fd < 0) {
        return 0;
    }
    if (fileio_fd_ok && Py_IS_TYPE(pipe, FileIOType)) {
        return ((fileio_head *)pipe)->fd == fd;
    }
    if (Py_IS_TYPE(pipe, gl_socket_type)) {
        return !gl_socket_closed(pipe) && gl_socket_fd(pipe) == fd;
    }
    PyObject *r = PyObject_CallMethodNoArgs(pipe, gl_str_fileno);
    long v = r != NULL ? PyLong_AsLong(r) : -1;
    Py_XDECREF(r);
    if (PyErr_Occurred()) {
        if (gl_exiting_exception()) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    return v == fd;
}

/* 0 when the pipe holds fd; else -1 with OSError(EBADF), or the
 * SystemExit/KeyboardInterrupt its fileno() raised. */
static int check_held(PyObject *pipe, int fd)
{
    int held = pipe_holds(pipe, fd);
    if (held > 0) {
        return 0;
    }
    if (held == 0) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
    }
    return -1;
}

/* ---- helpers ---- */

static gl_loop *core_of(PyObject *loop)
{
    return loop != NULL && PyObject_TypeCheck(loop, &gl_LoopCoreType) ? (gl_loop *)loop : NULL;
}

static int call_method0(PyObject *obj, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(obj, name);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The pending exception goes to self._fatal_error(exc, message), as
 * asyncio's `except ... as exc: self._fatal_error(exc, message)`;
 * SystemExit and KeyboardInterrupt propagate. */
static int fatal(PyObject *self, const char *message)
{
    if (gl_exiting_exception()) {
        return -1;
    }
    PyObject *exc = gl_take_exception();
    PyObject *msg = PyUnicode_FromString(message);
    PyObject *r = msg ? PyObject_CallMethodObjArgs(self, str_fatal_error, exc, msg, NULL) : NULL;
    Py_XDECREF(msg);
    Py_XDECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* logger.<level>(fmt, self) when the loop is in debug mode, as asyncio's
 * transports log their state changes there. */
static int debug_log(PyObject *self, gl_loop *loop, const char *level, const char *fmt)
{
    if (loop == NULL || !loop->debug) {
        return 0;
    }
    PyObject *r = PyObject_CallMethod(logger, level, "sO", fmt, self);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* os.read / os.write with PEP 475's EINTR retry: the byte count; -1 when
 * the fd would block (EAGAIN), -2 with an exception set. */
static Py_ssize_t io_retry(int write_, int fd, char *buf, Py_ssize_t len)
{
    for (;;) {
        ssize_t n = write_ ? write(fd, buf, (size_t)len) : read(fd, buf, (size_t)len);
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

static int on_ready(PyObject *owner, int write);

/* ==== the read side ==== */

/* What os.read(fd, max_size) returns: one read per event, into the
 * scratch buffer, copied out into a bytes object of the size read (a
 * max_size above the buffer gets a bytes object of its own). NULL with
 * *again set when nothing is there, NULL with an exception on error.
 *
 * One read, as stock's: reading on while a streaming writer kept adding
 * (up to max_size in one data_received) made fewer, larger deliveries,
 * and they cost more than they saved. A child's 64 MiB stdout through a
 * StreamReader (benchmarks/processes.py, read row, 9 runs each, loop
 * process CPU, median, load average 13): 126.5 ms reading on, 73.2 ms
 * with one read (rloop 77.7); per 256 MiB the reads were the same
 * (~4.6k, the pipe near full each time), but reading on made chunks
 * past the StreamReader's 128 KiB pause mark (2,027 epoll_ctl for the
 * pauses and resumes, against 19) and past glibc's mmap threshold
 * (26.7k page faults and 647 brk, against 3.6k and 39; perf stat).
 * Reading straight into a bytes object (no copy), sized by FIONREAD or
 * shrunk after the read, measured the same within the noise, and the
 * shrink is what once cost a brk pair per read (see docs/architecture.md,
 * "Pipes"). */
static PyObject *read_bytes(gl_rpipe *self, int *again)
{
    *again = 0;
    if (check_held(self->pipe, self->fd) < 0) {
        return NULL;
    }
    Py_ssize_t cap = self->max_size;
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "negative length");
        return NULL;
    }
    int own = cap > GL_SCRATCH_SIZE;
    PyObject *data = own ? PyBytes_FromStringAndSize(NULL, cap) : NULL;
    if (own && data == NULL) {
        return NULL;
    }
    Py_ssize_t n = io_retry(0, self->fd, own ? PyBytes_AS_STRING(data) : gl_scratch, cap);
    if (n < 0) {
        *again = n == -1;
        Py_XDECREF(data);
        return NULL;
    }
    if (!own) {
        return PyBytes_FromStringAndSize(gl_scratch, n);
    }
    if (n < cap) {
        (void)_PyBytes_Resize(&data, n);
    }
    return data;
}

/* The peer closed its end: stop reading, then eof_received() and
 * _call_connection_lost(None) one callback each, as asyncio does. */
static int read_eof(gl_rpipe *self)
{
    gl_loop *loop = core_of(self->loop);
    if (debug_log((PyObject *)self, loop, "info", "%r was closed by peer") < 0) {
        return -1;
    }
    self->closing = 1;
    if (loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute '_remove_reader'");
        return -1;
    }
    if (gl_io_unwatch(loop, self->fd, 0) < 0) {
        return -1;
    }
    PyObject *eof = self->protocol ? PyObject_GetAttr(self->protocol, str_eof_received) : NULL;
    if (eof == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute 'eof_received'");
        }
        return -1;
    }
    int r = gl_call_soon(loop, eof, NULL, 0);
    Py_DECREF(eof);
    PyObject *lost = r == 0 ? PyObject_GetAttr((PyObject *)self, str_call_connection_lost) : NULL;
    if (lost == NULL) {
        return -1;
    }
    PyObject *none = Py_None;
    r = gl_call_soon(loop, lost, &none, 1);
    Py_DECREF(lost);
    return r;
}

static int read_ready(gl_rpipe *self)
{
    int again;
    PyObject *data = read_bytes(self, &again);
    if (data == NULL) {
        return again ? 0 : fatal((PyObject *)self, "Fatal read error on pipe transport");
    }
    if (PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        return read_eof(self);
    }
    /* asyncio lets an error in data_received propagate to the loop's
     * handler ("Exception in callback ..."): so does the watch */
    PyObject *protocol = Py_XNewRef(self->protocol);
    PyObject *r = protocol ? PyObject_CallMethodOneArg(protocol, str_data_received, data) : NULL;
    if (protocol == NULL) {
        PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute 'data_received'");
    }
    Py_XDECREF(protocol);
    Py_DECREF(data);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int rpipe_watch(gl_rpipe *self)
{
    gl_loop *loop = core_of(self->loop);
    if (loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute '_add_reader'");
        return -1;
    }
    return gl_io_watch(loop, self->fd, 0, (PyObject *)self, on_ready, 1);
}

static PyObject *rpipe_read_ready(gl_rpipe *self, PyObject *unused)
{
    return read_ready(self) < 0 ? NULL : Py_NewRef(Py_None);
}

/* _add_reader(fd, callback): what the constructor schedules; reading
 * starts unless paused or closed by then (asyncio 3.11.3+'s is_reading
 * check), with a native watch in place of a Handle on callback. */
static PyObject *rpipe_add_reader(gl_rpipe *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->paused || self->closing) {
        Py_RETURN_NONE;
    }
    return rpipe_watch(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *rpipe_pause_reading(gl_rpipe *self, PyObject *unused)
{
    if (self->paused || self->closing) {
        Py_RETURN_NONE;
    }
    self->paused = 1;
    gl_loop *loop = core_of(self->loop);
    if (loop != NULL && gl_io_unwatch(loop, self->fd, 0) < 0) {
        return NULL;
    }
    if (debug_log((PyObject *)self, loop, "debug", "%r pauses reading") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *rpipe_resume_reading(gl_rpipe *self, PyObject *unused)
{
    if (self->closing || !self->paused) {
        Py_RETURN_NONE;
    }
    self->paused = 0;
    if (rpipe_watch(self) < 0 ||
        debug_log((PyObject *)self, core_of(self->loop), "debug", "%r resumes reading") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ==== the write side ==== */

static int watch_writes(gl_wpipe *self, int on)
{
    gl_loop *loop = core_of(self->loop);
    if (loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, on ? "'NoneType' object has no attribute '_add_writer'"
                                                  : "'NoneType' object has no attribute '_remove_writer'");
        return -1;
    }
    if (on) {
        return gl_io_watch(loop, self->fd, 1, (PyObject *)self, on_ready, 1);
    }
    return gl_io_unwatch(loop, self->fd, 1) < 0 ? -1 : 0;
}

/* ---- the pipe's capacity ----
 *
 * A write that fills the pipe doubles its capacity (F_SETPIPE_SZ), up to
 * GL_PIPE_GROW_MAX: a writer that keeps a pipe full (a child's stdin fed
 * faster than it reads) then writes and waits less often. Writing 64 MiB
 * in 256 KiB pieces to `wc -c` through a 64 KiB pipe made ~1,060 writes
 * and ~1,070 epoll_waits per 64 MiB and cost 65.1 ms of loop CPU; grown
 * to 1 MiB at the first full write, ~300 writes and ~95 waits, 29.2 ms
 * (rloop 45.0, uvloop 21.5, whose libuv gives children a socketpair;
 * benchmarks/processes.py, write row, 7 runs each, median, load average
 * 14); to 256 KiB or 512 KiB, 30.9 and 28.8. Doubling, as here, measured
 * 17.1 ms against uvloop's 17.5 in a later run side by side
 * (docs/architecture.md, "Pipes").
 *
 * The kernel counts pipe pages per user: past fs.pipe-user-pages-soft
 * (16384 pages by default) an unprivileged user's new pipes get 2 pages
 * and F_SETPIPE_SZ fails with EPERM, as it does above fs.pipe-max-size
 * (1 MiB by default). So the growth is bounded: doubling only as far as
 * a pipe backs up, at most GL_PIPE_GROW_MAX a pipe, and the whole process
 * adds at most a quarter of the soft limit (GL_PIPE_GROW_BUDGET at most),
 * given back when the transport goes. A pipe the kernel refuses to grow
 * (EPERM, or not a pipe at all: a socket, a tty) keeps its capacity, and
 * the transport stops asking. The budget is only touched with the GIL
 * held. */
#define GL_PIPE_GROW_MAX (1024 * 1024)
#define GL_PIPE_GROW_BUDGET (16 * 1024 * 1024)

static Py_ssize_t grow_left = -1; /* the process's budget left; -1 not read yet */

static Py_ssize_t grow_budget(void)
{
    Py_ssize_t budget = GL_PIPE_GROW_BUDGET;
    FILE *f = fopen("/proc/sys/fs/pipe-user-pages-soft", "re");
    long pages = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld", &pages) != 1) {
            pages = 0;
        }
        fclose(f);
    }
    /* 0 is no soft limit */
    if (pages > 0 && pages / 4 * sysconf(_SC_PAGESIZE) < budget) {
        budget = pages / 4 * sysconf(_SC_PAGESIZE);
    }
    return budget;
}

/* Doubles the pipe's capacity if the bounds allow: 1 when it grew. */
static int grow_pipe(gl_wpipe *self)
{
    if (self->pipe_size == 0) {
        self->pipe_size = fcntl(self->fd, F_GETPIPE_SZ);
        if (self->pipe_size <= 0) {
            self->pipe_size = -1;
        }
    }
    if (self->pipe_size < 0 || self->pipe_size > GL_PIPE_GROW_MAX / 2) {
        return 0;
    }
    if (grow_left < 0) {
        grow_left = grow_budget();
    }
    int want = self->pipe_size * 2;
    if (want - self->pipe_size > grow_left) {
        return 0; /* asked again once other transports gave theirs back */
    }
    int got = fcntl(self->fd, F_SETPIPE_SZ, want);
    if (got < self->pipe_size) {
        self->pipe_size = -1;
        return 0;
    }
    grow_left -= got - self->pipe_size;
    self->grown += got - self->pipe_size;
    self->pipe_size = got;
    return 1;
}

static void release_growth(gl_wpipe *self)
{
    grow_left += self->grown;
    self->grown = 0;
}

/* os.write(fd, p[:len]) on the pipe: bytes written (0 when it would
 * block), -1 with an exception. A write the pipe had no room for grows
 * the pipe and writes the rest at once if it could. */
static Py_ssize_t write_some(gl_wpipe *self, const char *p, Py_ssize_t len)
{
    if (check_held(self->pipe, self->fd) < 0) {
        return -1;
    }
    Py_ssize_t n = io_retry(1, self->fd, (char *)p, len);
    if (n == -2) {
        return -1;
    }
    n = n < 0 ? 0 : n;
    if (n < len && grow_pipe(self)) {
        Py_ssize_t more = io_retry(1, self->fd, (char *)p + n, len - n);
        if (more == -2) {
            if (n == 0 || gl_exiting_exception()) {
                return -1;
            }
            PyErr_Clear(); /* the next write meets the error, as stock's would */
        }
        n += more < 0 ? 0 : more;
    }
    return n;
}

/* _write_ready: flush the buffer once the fd is writable. */
static int write_ready(gl_wpipe *self)
{
    if (self->wb.len == 0) {
        if (asserts_enabled) {
            PyErr_SetString(PyExc_AssertionError, "Data should not be empty");
            return -1;
        }
    }
    Py_ssize_t n = write_some(self, self->wb.buf + self->wb.start, self->wb.len);
    if (n < 0) {
        if (gl_exiting_exception()) {
            return -1;
        }
        PyObject *exc = gl_take_exception();
        gl_wbuf_consume(&self->wb, self->wb.len);
        self->conn_lost++;
        /* asyncio removes the writer here: _fatal_error's _close does not,
         * the buffer being empty by then. When the pipe no longer holds
         * the fd, the number may be another file's, whose interest change
         * fails (ENOENT; the loop's tables then forget the fd, as
         * selectors' modify does): not this transport's error. */
        int r = watch_writes(self, 0);
        if (r < 0 && PyErr_ExceptionMatches(PyExc_OSError) && pipe_holds(self->pipe, self->fd) == 0) {
            PyErr_Clear();
            r = 0;
        }
        if (r == 0) {
            gl_restore_exception(exc);
            return fatal((PyObject *)self, "Fatal write error on pipe transport");
        }
        Py_XDECREF(exc);
        return r;
    }
    if (n < self->wb.len) {
        gl_wbuf_consume(&self->wb, n);
        return 0;
    }
    gl_wbuf_consume(&self->wb, n);
    if (watch_writes(self, 0) < 0) {
        return -1;
    }
    if (gl_flow_under_low((gl_flow_control *)self, 0) &&
        call_method0((PyObject *)self, str_maybe_resume) < 0) { /* may write more */
        return -1;
    }
    /* asyncio closes here even when resume_writing() wrote more and then
     * closed, losing that data (a README-listed difference): the write
     * re-armed the writer, whose last flush closes instead. */
    if (self->closing && self->wb.len == 0) {
        gl_loop *loop = core_of(self->loop);
        if (loop == NULL) {
            PyErr_SetString(PyExc_AttributeError,
                            "'NoneType' object has no attribute '_remove_reader'");
            return -1;
        }
        if (gl_io_unwatch(loop, self->fd, 0) < 0) {
            return -1;
        }
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_call_connection_lost, Py_None);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    return 0;
}

static int warn_lost_write(gl_wpipe *self)
{
    if (self->conn_lost >= GL_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
        PyObject *r = PyObject_CallMethod(logger, "warning", "s",
                                          "pipe closed by peer or os.write(pipe, data) raised "
                                          "exception.");
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    self->conn_lost++;
    return 0;
}

static PyObject *wpipe_write(gl_wpipe *self, PyObject *data)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data) &&
        asserts_enabled) {
        PyObject *rep = PyObject_Repr(data); /* assert isinstance(...), repr(data) */
        if (rep != NULL) {
            PyErr_SetObject(PyExc_AssertionError, rep);
            Py_DECREF(rep);
        }
        return NULL;
    }
    Py_ssize_t size = PyObject_Length(data); /* `if not data: return` */
    if (size < 0) {
        return NULL;
    }
    if (size == 0) {
        Py_RETURN_NONE;
    }
    if (self->conn_lost || self->closing) {
        return warn_lost_write(self) < 0 ? NULL : Py_NewRef(Py_None);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        /* a non-contiguous memoryview: os.write fails on it inside
         * asyncio's try block, bytearray's += outside it */
        if (self->wb.len == 0) {
            self->conn_lost++;
            return fatal((PyObject *)self, "Fatal write error on pipe transport") < 0
                       ? NULL
                       : Py_NewRef(Py_None);
        }
        return NULL;
    }
    const char *p = view.buf;
    Py_ssize_t len = view.len;
    int r = 0;
    if (self->wb.len == 0) {
        /* Attempt to send it right away first (as asyncio). */
        Py_ssize_t n = write_some(self, p, len);
        if (n < 0) {
            self->conn_lost++;
            r = fatal((PyObject *)self, "Fatal write error on pipe transport");
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
    if (r == 0 && gl_flow_over_high((gl_flow_control *)self, self->wb.len)) {
        r = call_method0((PyObject *)self, str_maybe_pause);
    }
done:
    PyBuffer_Release(&view);
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *wpipe_write_ready(gl_wpipe *self, PyObject *unused)
{
    return write_ready(self) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *wpipe_get_write_buffer_size(gl_wpipe *self, PyObject *unused)
{
    return PyLong_FromSsize_t(self->wb.len);
}

static PyObject *wpipe_clear_write_buffer(gl_wpipe *self, PyObject *unused)
{
    gl_wbuf_consume(&self->wb, self->wb.len);
    Py_RETURN_NONE;
}

static int on_ready(PyObject *owner, int write)
{
    return write ? write_ready((gl_wpipe *)owner) : read_ready((gl_rpipe *)owner);
}

/* ==== the types ==== */

static int rpipe_traverse(gl_rpipe *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->extra);
    Py_VISIT(self->loop);
    Py_VISIT(self->pipe);
    Py_VISIT(self->protocol);
    Py_VISIT(self->dict);
    return 0;
}

static int rpipe_clear(gl_rpipe *self)
{
    Py_CLEAR(self->extra);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->pipe);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->dict);
    return 0;
}

static int wpipe_traverse(gl_wpipe *self, visitproc visit, void *arg)
{
    int r = gl_flow_control_traverse((gl_flow_control *)self, visit, arg);
    if (r != 0) {
        return r;
    }
    Py_VISIT(self->pipe);
    Py_VISIT(self->protocol);
    Py_VISIT(self->dict);
    return 0;
}

static int wpipe_clear(gl_wpipe *self)
{
    gl_flow_control_clear((gl_flow_control *)self);
    Py_CLEAR(self->pipe);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->dict);
    return 0;
}

/* Both deallocs: the finalizer (the Python class's __del__: asyncio's
 * ResourceWarning for an unclosed pipe) may resurrect the object. */
static int finalize_from_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    PyTypeObject *tp = Py_TYPE(self);
    return tp->tp_finalize != NULL && PyObject_CallFinalizerFromDealloc(self) < 0 ? -1 : 0;
}

static void rpipe_dealloc(gl_rpipe *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (finalize_from_dealloc((PyObject *)self) < 0) {
        return;
    }
    rpipe_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static void wpipe_dealloc(gl_wpipe *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (finalize_from_dealloc((PyObject *)self) < 0) {
        return;
    }
    wpipe_clear(self);
    gl_wbuf_free(&self->wb);
    release_growth(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *rpipe_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    gl_rpipe *self = (gl_rpipe *)tp->tp_alloc(tp, 0);
    if (self != NULL) {
        self->fd = -1;
        self->max_size = GL_PIPE_MAX_SIZE;
    }
    return (PyObject *)self;
}

static PyObject *wpipe_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    gl_wpipe *self = (gl_wpipe *)tp->tp_alloc(tp, 0);
    if (self != NULL) {
        self->fd = -1;
    }
    return (PyObject *)self;
}

/* `_fileno`: the int, or None (asyncio's constructor sets None when it
 * rejects the fd). */
static PyObject *fileno_get(PyObject *self, void *offset)
{
    int fd = *(int *)((char *)self + (size_t)offset);
    return fd < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(fd);
}

static int fileno_set(PyObject *self, PyObject *value, void *offset)
{
    int fd = -1;
    if (value != NULL && value != Py_None) {
        long v = PyLong_AsLong(value);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (v < INT_MIN || v > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
            return -1;
        }
        fd = (int)v;
    }
    *(int *)((char *)self + (size_t)offset) = fd;
    return 0;
}

static PyMethodDef rpipe_methods[] = {
    {"_read_ready", (PyCFunction)rpipe_read_ready, METH_NOARGS, NULL},
    {"_add_reader", (PyCFunction)(void (*)(void))rpipe_add_reader, METH_FASTCALL, NULL},
    {"pause_reading", (PyCFunction)rpipe_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)rpipe_resume_reading, METH_NOARGS, NULL},
    {NULL},
};

static PyGetSetDef rpipe_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_fileno", fileno_get, fileno_set, NULL, (void *)offsetof(gl_rpipe, fd)},
    {NULL},
};

static PyMemberDef rpipe_members[] = {
    {"_loop", T_OBJECT, offsetof(gl_rpipe, loop), 0, NULL},
    {"_pipe", T_OBJECT, offsetof(gl_rpipe, pipe), 0, NULL},
    {"_protocol", T_OBJECT, offsetof(gl_rpipe, protocol), 0, NULL},
    {"_closing", T_BOOL, offsetof(gl_rpipe, closing), 0, NULL},
    {"_paused", T_BOOL, offsetof(gl_rpipe, paused), 0, NULL},
    {"max_size", T_PYSSIZET, offsetof(gl_rpipe, max_size), 0, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(gl_rpipe, dict), READONLY, NULL},
    {NULL},
};

static PyType_Slot rpipe_slots[] = {
    {Py_tp_doc, "C core of goloop's read-pipe transport (pybridge/pipe.c)."},
    {Py_tp_new, rpipe_new},
    {Py_tp_dealloc, rpipe_dealloc},
    {Py_tp_traverse, rpipe_traverse},
    {Py_tp_clear, rpipe_clear},
    {Py_tp_methods, rpipe_methods},
    {Py_tp_members, rpipe_members},
    {Py_tp_getset, rpipe_getset},
    {0, NULL},
};

static PyType_Spec rpipe_spec = {
    .name = "goloop._goloop.ReadPipeTransportCore",
    .basicsize = sizeof(gl_rpipe),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = rpipe_slots,
};

static PyMethodDef wpipe_methods[] = {
    {"write", (PyCFunction)wpipe_write, METH_O, "Write bytes-like data (asyncio semantics)."},
    {"_write_ready", (PyCFunction)wpipe_write_ready, METH_NOARGS, NULL},
    {"get_write_buffer_size", (PyCFunction)wpipe_get_write_buffer_size, METH_NOARGS, NULL},
    {"_clear_write_buffer", (PyCFunction)wpipe_clear_write_buffer, METH_NOARGS, NULL},
    {NULL},
};

static PyGetSetDef wpipe_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_fileno", fileno_get, fileno_set, NULL, (void *)offsetof(gl_wpipe, fd)},
    {NULL},
};

static PyMemberDef wpipe_members[] = {
    {"_pipe", T_OBJECT, offsetof(gl_wpipe, pipe), 0, NULL},
    {"_protocol", T_OBJECT, offsetof(gl_wpipe, protocol), 0, NULL},
    {"_conn_lost", T_INT, offsetof(gl_wpipe, conn_lost), 0, NULL},
    {"_closing", T_BOOL, offsetof(gl_wpipe, closing), 0, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(gl_wpipe, dict), READONLY, NULL},
    {NULL},
};

static PyType_Slot wpipe_slots[] = {
    {Py_tp_doc, "C core of goloop's write-pipe transport (pybridge/pipe.c)."},
    {Py_tp_new, wpipe_new},
    {Py_tp_dealloc, wpipe_dealloc},
    {Py_tp_traverse, wpipe_traverse},
    {Py_tp_clear, wpipe_clear},
    {Py_tp_methods, wpipe_methods},
    {Py_tp_members, wpipe_members},
    {Py_tp_getset, wpipe_getset},
    {0, NULL},
};

static PyType_Spec wpipe_spec = {
    .name = "goloop._goloop.WritePipeTransportCore",
    .basicsize = sizeof(gl_wpipe),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = wpipe_slots,
};

/* ---- module init ---- */

/* Whether a FileIO's fd is the int right after its object header (and -1
 * once closed), so pipe_holds may read it without a call; otherwise
 * every check calls fileno(). */
static void check_fileio_layout(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    PyObject *f = PyObject_CallFunction((PyObject *)FileIOType, "is", fd, "rb");
    if (f == NULL) {
        PyErr_Clear();
        close(fd);
        return;
    }
    int ok = ((fileio_head *)f)->fd == fd;
    PyObject *r = PyObject_CallMethod(f, "close", NULL);
    Py_XDECREF(r);
    fileio_fd_ok = ok && r != NULL && ((fileio_head *)f)->fd == -1;
    Py_DECREF(f);
    PyErr_Clear();
}

/* The ReadTransport base: BaseTransport's `_extra` slot, then ours. */
static PyObject *read_transport_base(void)
{
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    PyObject *base = transports ? PyObject_GetAttrString(transports, "ReadTransport") : NULL;
    Py_XDECREF(transports);
    if (base == NULL) {
        return NULL;
    }
    Py_ssize_t off;
    if (((PyTypeObject *)base)->tp_basicsize != offsetof(gl_rpipe, loop) ||
        gl_slot_offset((PyTypeObject *)base, "_extra", &off) < 0 ||
        off != (Py_ssize_t)offsetof(gl_rpipe, extra)) {
        PyErr_SetString(PyExc_ImportError, "goloop: unexpected asyncio.ReadTransport layout");
        Py_DECREF(base);
        return NULL;
    }
    return base;
}

static int add_type(PyObject *module, PyType_Spec *spec, PyObject *base)
{
    if (base == NULL) {
        return -1;
    }
    PyObject *tp = PyType_FromSpecWithBases(spec, base);
    Py_DECREF(base);
    if (tp == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(module, strrchr(spec->name, '.') + 1, tp);
    Py_DECREF(tp);
    return r;
}

int gl_pipe_init(PyObject *module)
{
    if (!(GL_INTERN(str_data_received, "data_received") &&
          GL_INTERN(str_eof_received, "eof_received") &&
          GL_INTERN(str_fatal_error, "_fatal_error") &&
          GL_INTERN(str_call_connection_lost, "_call_connection_lost") &&
          GL_INTERN(str_maybe_pause, "_maybe_pause_protocol") &&
          GL_INTERN(str_maybe_resume, "_maybe_resume_protocol"))) {
        return -1;
    }
    PyObject *flags = PySys_GetObject("flags"); /* borrowed */
    PyObject *optimize = flags ? PyObject_GetAttrString(flags, "optimize") : NULL;
    asserts_enabled = optimize != NULL && PyLong_AsLong(optimize) == 0;
    Py_XDECREF(optimize);
    PyObject *m = PyImport_ImportModule("asyncio.log");
    logger = m ? PyObject_GetAttrString(m, "logger") : NULL;
    Py_XDECREF(m);
    m = logger ? PyImport_ImportModule("io") : NULL;
    FileIOType = m ? (PyTypeObject *)PyObject_GetAttrString(m, "FileIO") : NULL;
    Py_XDECREF(m);
    if (FileIOType == NULL || PyErr_Occurred()) {
        return -1;
    }
    check_fileio_layout();
    if (add_type(module, &rpipe_spec, read_transport_base()) < 0) {
        return -1;
    }
    return add_type(module, &wpipe_spec, gl_flow_control_base());
}
