/* LoopCore: the native half of goloop.Loop.
 *
 * goloop.Loop (python/goloop/loop.py) subclasses this type and asyncio's
 * Unix SelectorEventLoop: everything that runs once per callback or once
 * per iteration is here (call_soon, call_at, the ready queue, the run loop,
 * fd dispatch, create_task); the slow paths (validation messages, debug
 * mode, exception reporting, executors, async generators, and for now the
 * transports) stay asyncio's own Python code.
 *
 * The run loop never crosses into Go: the wait (poll.c), fd registration
 * (epoll.c) and the timers (timers.c) are C; Go runs lookups on its
 * goroutines (resolve.c). */
#include "goloop.h"
#include <errno.h>
#include <math.h>
#include <unistd.h>

/* ---------- construction and GC ---------- */

static PyObject *loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    gl_loop *self = (gl_loop *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->engine = -1;
    self->wakefd = -1;
    self->internal_fd = -1;
    self->tlog_min = INFINITY;
    self->clock_resolution = 1e-9; /* BaseEventLoop.__init__ sets the clock's */
    self->epfd = -1;
    if (gl_engine_open(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    gl_live_add(self);
    return (PyObject *)self;
}

static int loop_traverse(gl_loop *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->ready.len; i++) {
        Py_VISIT(gl_ring_peek(&self->ready, i));
    }
    for (Py_ssize_t i = 0; i < self->tready.len; i++) {
        Py_VISIT(gl_ring_peek(&self->tready, i));
    }
    for (int32_t i = 0; i < self->ntslots; i++) {
        Py_VISIT(self->tslots[i]);
    }
    for (int32_t i = 0; i < self->ntfired; i++) {
        Py_VISIT(self->tfired[i]);
    }
    for (int fd = 0; fd < self->fdcap; fd++) {
        Py_VISIT(self->readers[fd]);
        Py_VISIT(self->writers[fd]);
        Py_VISIT(self->fileobjs[fd]);
    }
    Py_VISIT(self->lookups);
    return 0;
}

static int loop_clear(gl_loop *self)
{
    gl_ring_clear(&self->ready);
    gl_timers_clear(self);
    gl_io_clear(self);
    Py_CLEAR(self->lookups);
    return 0;
}

static void loop_dealloc(gl_loop *self)
{
    PyObject_GC_UnTrack(self);
    gl_live_remove(self);
    loop_clear(self);
    gl_engine_close(self);
    PyMem_Free(self->ready.buf);
    gl_timers_free(self);
    gl_io_free(self);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
}

/* ---------- argument helpers ---------- */

/* Parse (..., *args, context=None) keyword arguments of call_soon & co. */
static int parse_context(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames, PyObject **context)
{
    *context = NULL;
    if (kwnames == NULL) {
        return 0;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "context") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "BaseEventLoop.%s() got an unexpected keyword argument '%S'", fname,
                         name);
            return -1;
        }
        *context = args[nargs + i];
    }
    return 0;
}

static int check_closed(gl_loop *self)
{
    if (self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

/* The TypeError CPython raises for missing positional arguments; `names`
 * are the required parameters, `nargs` how many were given. */
static PyObject *missing_args(const char *fname, const char *const *names, int nnames,
                              Py_ssize_t nargs)
{
    int missing = nnames - (int)nargs;
    if (missing == 1) {
        PyErr_Format(PyExc_TypeError,
                     "BaseEventLoop.%s() missing 1 required positional argument: '%s'", fname,
                     names[nnames - 1]);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "BaseEventLoop.%s() missing %d required positional arguments: '%s' and '%s'",
                     fname, missing, names[0], names[1]);
    }
    return NULL;
}

static const char *const names_callback[] = {"callback"};
static const char *const names_when[] = {"when", "callback"};
static const char *const names_delay[] = {"delay", "callback"};

/* Parse (required..., *args, context=None) the way the Python signatures
 * of call_soon & co. would, with the same TypeError messages. */
static int parse_call(const char *fname, const char *const *names, int nnames,
                      PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames,
                      Py_ssize_t *nargs, PyObject **context)
{
    *nargs = PyVectorcall_NARGS(nargsf);
    if (parse_context(fname, args, *nargs, kwnames, context) < 0) {
        return -1;
    }
    if (*nargs < nnames) {
        missing_args(fname, names, nnames, *nargs);
        return -1;
    }
    return 0;
}

/* ---------- call_soon family ---------- */

static PyObject *push_ready_handle(gl_loop *self, PyObject *callback, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *context, PyObject *method)
{
    PyObject *cbargs = gl_tuple_from(args, nargs);
    if (cbargs == NULL) {
        return NULL;
    }
    PyObject *handle;
    if (self->debug) {
        /* asyncio's checks, messages and source tracebacks: Python. */
        handle = PyObject_CallMethodObjArgs((PyObject *)self, gl_str_call_soon_slow, callback,
                                            cbargs, context ? context : Py_None, method, NULL);
        Py_DECREF(cbargs);
        return handle;
    }
    handle = gl_handle_new_queued(self, callback, cbargs, context);
    Py_DECREF(cbargs);
    if (handle == NULL) {
        return NULL;
    }
    gl_handle_untrack_args(handle);
    if (gl_ring_push(&self->ready, Py_NewRef(handle)) < 0) {
        Py_DECREF(handle);
        return NULL;
    }
    return handle;
}

static PyObject *str_call_soon, *str_call_soon_threadsafe, *str_time, *str_call_at, *str_call_later,
    *str_slow_callback;
static PyObject *time_descr; /* LoopCore.time */

/* Whether loop.time is not the C core's: a subclass overrides it or an
 * instance attribute shadows it (mock.patch.object(loop, "time"), as
 * test tools that fake the loop's clock do). Then due timers, the poll
 * timeout and call_later go by what it returns, as in stock asyncio. The
 * instance is watched where attributes are set (loop_setattro) and the
 * class looked up again only when its version tag changed, so this is a
 * couple of compares per iteration. */
static int time_overridden(gl_loop *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (tp->tp_version_tag == 0 || tp->tp_version_tag != self->time_type_version) {
        self->time_type_overridden = _PyType_Lookup(tp, str_time) != time_descr;
        self->time_type_version = tp->tp_version_tag; /* the lookup assigns one */
    }
    return self->time_shadowed || self->time_type_overridden;
}

/* *now = self.time() as a double, for an overridden time(). */
static int call_time(gl_loop *self, double *now)
{
    PyObject *t = PyObject_CallMethodNoArgs((PyObject *)self, str_time);
    if (t == NULL) {
        return -1;
    }
    *now = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return *now == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int loop_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    if (PyObject_GenericSetAttr(self, name, value) < 0) {
        return -1;
    }
    if (PyUnicode_Check(name) && PyUnicode_Compare(name, str_time) == 0) {
        ((gl_loop *)self)->time_shadowed = value != NULL;
    }
    return 0;
}

static PyObject *loop_call_soon(gl_loop *self, PyObject *const *args, Py_ssize_t nargsf,
                                PyObject *kwnames)
{
    Py_ssize_t nargs;
    PyObject *context;
    if (parse_call("call_soon", names_callback, 1, args, nargsf, kwnames, &nargs, &context) < 0) {
        return NULL;
    }
    if (check_closed(self) < 0) {
        return NULL;
    }
    return push_ready_handle(self, args[0], args + 1, nargs - 1, context, str_call_soon);
}

/* loop.call_soon(callback, *args) for C callers that drop the Handle. */
int gl_call_soon(gl_loop *self, PyObject *callback, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_closed(self) < 0) {
        return -1;
    }
    PyObject *handle = push_ready_handle(self, callback, args, nargs, NULL, str_call_soon);
    Py_XDECREF(handle);
    return handle == NULL ? -1 : 0;
}

/* Wake the loop if it sleeps in Go. The flag is read and written under the
 * GIL, so a loop about to sleep has already set it; an extra wake-up only
 * costs one empty iteration. */
static void wake(gl_loop *self)
{
    if (self->polling && self->wakefd >= 0) {
        /* One write wakes the loop; until it runs again, further callers
         * (a producer thread holding the GIL for its whole switch
         * interval) need not pay a syscall each. */
        self->polling = 0;
        uint64_t one = 1;
        ssize_t r;
        do {
            r = write(self->wakefd, &one, sizeof(one));
        } while (r < 0 && errno == EINTR);
    }
}

static PyObject *loop_call_soon_threadsafe(gl_loop *self, PyObject *const *args,
                                           Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs;
    PyObject *context;
    if (parse_call("call_soon_threadsafe", names_callback, 1, args, nargsf, kwnames, &nargs, &context) < 0) {
        return NULL;
    }
    if (check_closed(self) < 0) {
        return NULL;
    }
    PyObject *handle = push_ready_handle(self, args[0], args + 1, nargs - 1, context,
                                         str_call_soon_threadsafe);
    if (handle != NULL) {
        self->threadsafe_queued++;
        wake(self);
    }
    return handle;
}

/* method: "call_at" or "call_later", for the debug path's source traceback */
static PyObject *schedule_at(gl_loop *self, PyObject *when, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *context, PyObject *method)
{
    if (check_closed(self) < 0) {
        return NULL;
    }
    PyObject *cbargs = gl_tuple_from(args + 1, nargs - 1);
    if (cbargs == NULL) {
        return NULL;
    }
    if (self->debug) {
        PyObject *t = PyObject_CallMethodObjArgs((PyObject *)self, gl_str_call_at_slow, when,
                                                 args[0], cbargs, context ? context : Py_None,
                                                 method, NULL);
        Py_DECREF(cbargs);
        return t;
    }
    double w = PyFloat_AsDouble(when);
    if (w == -1.0 && PyErr_Occurred()) {
        Py_DECREF(cbargs);
        return NULL;
    }
    PyObject *timer = gl_timer_handle_new(self, when, args[0], cbargs, context);
    Py_DECREF(cbargs);
    if (timer == NULL) {
        return NULL;
    }
    if (gl_timer_schedule(self, timer, w) < 0) {
        Py_DECREF(timer);
        return NULL;
    }
    gl_handle_untrack(timer);
    return timer;
}

static PyObject *loop_call_at(gl_loop *self, PyObject *const *args, Py_ssize_t nargsf,
                              PyObject *kwnames)
{
    Py_ssize_t nargs;
    PyObject *context;
    if (parse_call("call_at", names_when, 2, args, nargsf, kwnames, &nargs, &context) < 0) {
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    return schedule_at(self, args[0], args + 1, nargs - 1, context, str_call_at);
}

static PyObject *loop_call_later(gl_loop *self, PyObject *const *args, Py_ssize_t nargsf,
                                 PyObject *kwnames)
{
    Py_ssize_t nargs;
    PyObject *context;
    if (parse_call("call_later", names_delay, 2, args, nargsf, kwnames, &nargs, &context) < 0) {
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return NULL;
    }
    PyObject *now = time_overridden(self) ? PyObject_CallMethodNoArgs((PyObject *)self, str_time)
                                          : PyFloat_FromDouble(gl_monotonic());
    if (now == NULL) {
        return NULL;
    }
    PyObject *when = PyNumber_Add(now, args[0]);
    Py_DECREF(now);
    if (when == NULL) {
        return NULL;
    }
    PyObject *timer = schedule_at(self, when, args + 1, nargs - 1, context, str_call_later);
    Py_DECREF(when);
    return timer;
}

static PyObject *loop_time(gl_loop *self, PyObject *unused)
{
    return PyFloat_FromDouble(gl_monotonic());
}

static PyObject *loop_get_debug(gl_loop *self, PyObject *unused)
{
    return PyBool_FromLong(self->debug);
}

static PyObject *loop_timer_handle_cancelled(gl_loop *self, PyObject *timer)
{
    if (gl_timer_cancelled(self, timer) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Debug-mode slow path: schedule a TimerHandle that Python built. */
static PyObject *loop_schedule_timer(gl_loop *self, PyObject *timer)
{
    if (!PyObject_TypeCheck(timer, gl_TimerHandleType)) {
        PyErr_SetString(PyExc_TypeError, "a goloop TimerHandle is required");
        return NULL;
    }
    double w = PyFloat_AsDouble(GL_SLOT(timer, gl_off.when));
    if ((w == -1.0 && PyErr_Occurred()) || gl_timer_schedule(self, timer, w) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* BaseEventLoop._add_callback: queue a handle unless it is cancelled. */
static PyObject *loop_add_callback(gl_loop *self, PyObject *handle)
{
    if (!PyObject_TypeCheck(handle, gl_HandleType)) {
        PyErr_SetString(PyExc_AssertionError, "A Handle is required here");
        return NULL;
    }
    if (!gl_handle_is_cancelled(handle) && gl_ring_push(&self->ready, Py_NewRef(handle)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---------- fd watching ---------- */

static PyObject *loop_add_reader(gl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return gl_io_add(self, 0, args, nargs);
}

static PyObject *loop_add_writer(gl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return gl_io_add(self, 1, args, nargs);
}

static PyObject *loop_remove_reader(gl_loop *self, PyObject *fd)
{
    return gl_io_remove(self, 0, fd);
}

static PyObject *loop_remove_writer(gl_loop *self, PyObject *fd)
{
    return gl_io_remove(self, 1, fd);
}

static PyObject *loop_fd_registration(gl_loop *self, PyObject *fd)
{
    return gl_io_registration(self, fd);
}

static PyObject *loop_fd_set(gl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return gl_io_set(self, args, nargs);
}

static PyObject *loop_fd_registrations(gl_loop *self, PyObject *unused)
{
    return gl_io_registrations(self);
}

static PyObject *loop_set_internal_fd(gl_loop *self, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    self->internal_fd = (int)fd;
    Py_RETURN_NONE;
}

/* ---------- the run loop ---------- */

static int user_fds(gl_loop *self)
{
    int internal = self->internal_fd >= 0 && self->internal_fd < self->fdcap &&
                   (self->readers[self->internal_fd] || self->writers[self->internal_fd]);
    return self->nfds - internal;
}

/* The earliest deadline the loop may have (timers.c; a lower bound). */
static double earliest_deadline(gl_loop *self)
{
    return gl_timer_earliest(self);
}

/* Whether stock asyncio's next iteration could do nothing but run fd's
 * reader again: nothing queued, no stop pending, no timer due, and no
 * other fd watched (the self-pipe aside). A transport may then go on
 * reading where stock would go round the loop first (datagram.c), and the
 * callbacks still run in an order stock produces. With an overridden
 * time() the loop goes round: stock asks it once per iteration. */
int gl_loop_only_this_fd_next(gl_loop *self, int fd)
{
    return self->ready.len == 0 && self->tready.len == 0 && !self->stopping &&
           user_fds(self) == 1 && fd >= 0 &&
           fd < self->fdcap && self->readers[fd] != NULL &&
           !time_overridden(self) &&
           !(earliest_deadline(self) < gl_monotonic() + self->clock_resolution);
}

/* Memory a burst of callbacks left behind (recycled handles, a grown ready
 * ring) is given back once the loop has been idle-ish for a second; the
 * loop wakes for that at most once per burst. Returns when to look again,
 * INFINITY if nothing is left to give back. */
#define GL_READY_RING_KEEP 1024
static double trim_after_burst(gl_loop *self, double now)
{
    double due = gl_handle_freelist_trim(now);
    if (self->ready.cap <= GL_READY_RING_KEEP) {
        return due;
    }
    if (self->ready_shrink_at == 0) {
        self->ready_shrink_at = now + GL_IDLE_TRIM_PERIOD;
    } else if (now >= self->ready_shrink_at) {
        gl_ring_shrink(&self->ready);
        gl_timers_trim(self); /* a burst of timers grew the ring */
        self->ready_shrink_at = 0;
        return due;
    }
    return fmin(due, self->ready_shrink_at);
}

/* Whole ms from now until when, rounded up as selectors round the
 * timeout (0 if past, INFINITY if never). */
static double ms_until(double when, double now)
{
    if (when == INFINITY) {
        return INFINITY;
    }
    double ms = ceil((when - now) * 1e3);
    return ms > 0 ? ms : 0;
}

/* epoll_wait timeout in ms as BaseEventLoop._run_once and selectors
 * compute it: 0 with callbacks ready, else up to the next deadline rounded
 * up to whole ms (capped at 24 h), -1 (forever) with no timer. An
 * overridden time() is asked only when a timer is pending, as stock asks
 * it only then; the memory trim goes by the real clock, and so does
 * *now_out, when the poll starts (for stats.poll_time). */
static int poll_timeout(gl_loop *self, int has_work, int *timeout, double *now_out)
{
    double now = gl_monotonic();
    *now_out = now;
    if (has_work) {
        *timeout = 0;
        return 0;
    }
    double ms = ms_until(trim_after_burst(self, now), now);
    double earliest = earliest_deadline(self);
    if (earliest != INFINITY) {
        double timers_now = now;
        if (time_overridden(self) && call_time(self, &timers_now) < 0) {
            return -1;
        }
        ms = fmin(ms, ms_until(earliest, timers_now));
    }
    *timeout = ms == INFINITY ? -1 : ms > 86400000.0 ? 86400000 : (int)ms;
    return 0;
}

/* Whether this iteration has timer work (due timers, or log entries to
 * move into the heap), and *end, asyncio's end_time: self.time() +
 * self._clock_resolution. now: the monotonic clock if the caller just read
 * it, else 0. 1, 0, or -1 with an exception (an overridden time()). */
static int timers_due(gl_loop *self, double now, double *end)
{
    int pending = gl_timer_pending_work(self);
    if (!time_overridden(self)) {
        if (earliest_deadline(self) == INFINITY && !pending) {
            return 0; /* no timer: no clock read (stock asks time() only if overridden) */
        }
        *end = now > 0 ? now : gl_monotonic();
    } else if (call_time(self, end) < 0) {
        return -1;
    }
    *end += self->clock_resolution;
    return earliest_deadline(self) < *end || pending;
}

/* Run one ready handle; inline so that counting it adds no call to the
 * per-callback path. */
static inline int run_handle(gl_loop *self, PyObject *handle)
{
    if (gl_handle_is_cancelled(handle)) {
        return 0;
    }
    self->stats.callbacks++;
    if (self->debug) {
        PyObject *res = PyObject_CallMethodOneArg((PyObject *)self, gl_str_run_handle_debug,
                                                  handle);
        Py_XDECREF(res);
        return res == NULL ? -1 : 0;
    }
    if (GL_IS_WATCH(handle)) {
        return gl_watch_run(self, handle);
    }
    return gl_handle_run(self, handle);
}

/* run_handle timed, while goloop.track_slow_callbacks() is on: a handle
 * that took slow_threshold seconds or more goes to
 * Loop._slow_callback(handle, seconds), which keeps the slowest. */
static int run_handle_timed(gl_loop *self, PyObject *handle)
{
    double t0 = gl_monotonic();
    if (run_handle(self, handle) < 0) {
        return -1;
    }
    double took = gl_monotonic() - t0;
    double threshold = self->stats.slow_threshold; /* the callback may have changed it */
    if (threshold <= 0 || took < threshold) {
        return 0;
    }
    PyObject *seconds = PyFloat_FromDouble(took);
    PyObject *args[] = {(PyObject *)self, handle, seconds};
    PyObject *res = seconds ? PyObject_VectorcallMethod(str_slow_callback, args,
                                                        3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                            : NULL;
    Py_XDECREF(seconds);
    Py_XDECREF(res);
    return res == NULL ? -1 : 0;
}

/* How far ahead run_ready prefetches handles (gl_handle_prefetch). */
#define GL_PREFETCH_AHEAD 8

/* Let go of a handle run_ring has run (or skipped). batch: it is one of
 * the timers tfired holds (timers.c), freed later in the order taken. */
static inline void release_ran(PyObject *handle, int batch)
{
    if (batch) {
        gl_timer_release_run(handle);
    } else {
        gl_handle_release(handle);
    }
}

/* Run the first ntodo handles of ring; fired: it is the tready ring. While
 * the batch the last expiry took is still held (and no nested _run_once
 * has let it go), every handle on tready is one of it; once run, the
 * batch is let go. */
static int run_ring(gl_loop *self, gl_ring *ring, Py_ssize_t ntodo, int fired)
{
    uint32_t gen = self->tfired_gen;
    int r = 0;
    /* Looked at once per iteration (switching tracking from a callback
     * takes effect with the next one), and the loop written out twice:
     * gcc -O2 does not unswitch loops, and the test per callback cost the
     * call_soon row 4 instructions per op (benchmarks/instructions.py). */
    if (self->stats.slow_threshold > 0) {
        for (Py_ssize_t i = 0; i < ntodo && r == 0; i++) {
            PyObject *handle = gl_ring_pop(ring);
            if (handle == NULL) {
                break;
            }
            r = run_handle_timed(self, handle);
            release_ran(handle, fired && self->ntfired > 0 && self->tfired_gen == gen);
        }
    } else {
        for (Py_ssize_t i = 0; i < ntodo && r == 0; i++) {
            PyObject *handle = gl_ring_pop(ring);
            if (handle == NULL) {
                break;
            }
            gl_handle_prefetch(gl_ring_peek(ring, GL_PREFETCH_AHEAD));
            gl_handle_prefetch_refs(gl_ring_peek(ring, GL_PREFETCH_AHEAD / 2));
            r = run_handle(self, handle);
            release_ran(handle, fired && self->ntfired > 0 && self->tfired_gen == gen);
        }
    }
    if (fired) {
        gl_timers_release_fired(self);
    }
    return r;
}

/* Run what was ready when the iteration began: due timers an earlier
 * iteration could not finish (an exception stopped it), then the ready
 * queue. */
static int run_ready(gl_loop *self)
{
    if (self->threadsafe_queued > 0) {
        gl_handle_freelist_expect(self->threadsafe_queued);
        self->threadsafe_queued = 0;
    }
    Py_ssize_t ntodo = self->ready.len;
    if (self->tready.len > 0 && run_ring(self, &self->tready, self->tready.len, 1) < 0) {
        return -1;
    }
    return run_ring(self, &self->ready, ntodo, 0);
}

/* One iteration of BaseEventLoop._run_once: wait for I/O (skipped while
 * callbacks are ready and no user fd is watched), queue I/O callbacks,
 * then due timers, then run what was ready at that point.
 *
 * Stock asyncio moves the due timers to the end of its ready queue before
 * running any callback; here the callbacks ahead of them run first and
 * the due timers are taken afterwards, with the cut-off time read before
 * and only timers scheduled before the iteration began (timers.c): the
 * same callbacks in the same order, but an I/O callback does not wait for
 * the timers' bookkeeping (taking a due burst of 100k timers out of the
 * log and sorting them: ~8 ms here, the whole of which an I/O callback
 * ready at the same time waited for). */
static int run_once(gl_loop *self)
{
    if (gl_engine_usable(self) < 0) {
        return -1;
    }
    self->stats.iterations++;
    int has_work = self->ready.len > 0 || self->tready.len > 0 || self->stopping;
    double now = 0;
    /* With callbacks ready and nothing to watch the poll is skipped; but a
     * lookup finishing in Go (resolve.c) reports through the engine's
     * eventfd, so while any is in flight poll (without waiting) anyway, or
     * a loop kept busy by callbacks would never see it finish. */
    int watching = user_fds(self) > 0 || (self->lookups && PyDict_GET_SIZE(self->lookups) > 0);
    if (!(has_work && !watching)) {
        int timeout;
        double start;
        if (poll_timeout(self, has_work, &timeout, &start) < 0 || gl_poll_io(self, timeout) < 0) {
            return -1;
        }
        now = gl_monotonic(); /* timers_due would read it anyway */
        self->stats.poll_time += now - start;
    }
    double end;
    int due = timers_due(self, now, &end);
    /* Python-level signal handlers (SIGINT -> KeyboardInterrupt) run here,
     * as they do when select() returns EINTR in the stock loop. */
    if (due < 0 || PyErr_CheckSignals() < 0) {
        return -1;
    }
    uint32_t cutoff = self->tlog_seq;
    if (run_ready(self) < 0) {
        return -1;
    }
    if (!due) {
        return 0;
    }
    if (gl_timer_expire(self, end, cutoff) < 0) {
        return -1;
    }
    return run_ring(self, &self->tready, self->tready.len, 1);
}

/* The outermost run's start and end are the only clock reads the
 * stats add to an iteration without I/O: time running callbacks is the
 * run's time minus poll_time, not a sum over iterations. */
static void run_begin(gl_loop *self)
{
    if (self->running++ == 0) {
        self->stats.run_started = gl_monotonic();
    }
}

static void run_end(gl_loop *self)
{
    if (--self->running == 0) {
        self->stats.run_time += gl_monotonic() - self->stats.run_started;
        self->stats.run_started = 0;
    }
}

static PyObject *loop_run_once(gl_loop *self, PyObject *unused)
{
    run_begin(self);
    int r = run_once(self);
    run_end(self);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The body of run_forever: iterate until stop() (or an exception). */
static PyObject *loop_run_until_stopped(gl_loop *self, PyObject *unused)
{
    int r;
    run_begin(self);
    do {
        r = run_once(self);
    } while (r == 0 && !self->stopping);
    run_end(self);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _stats(): the raw snapshot goloop.stats() builds LoopStats from:
 * (engine, iterations, callbacks, poll_time, busy_time, fds, timers,
 *  bytes_in, bytes_out, datagrams_in, datagrams_out, accepted). */
static PyObject *loop_stats(gl_loop *self, PyObject *unused)
{
    const gl_stats *s = &self->stats;
    double run_time = s->run_time;
    if (s->run_started > 0) { /* asked from a callback: the run so far */
        run_time += gl_monotonic() - s->run_started;
    }
    double busy = run_time - s->poll_time;
    return Py_BuildValue("(sKKddiiKKKKK)", s->c_engine ? "c" : "go", s->iterations,
                         s->callbacks, s->poll_time, busy > 0 ? busy : 0.0, user_fds(self),
                         (int)(self->ntslots - self->ntfree), s->bytes_in, s->bytes_out,
                         s->datagrams_in, s->datagrams_out, s->accepted);
}

/* _set_slow_threshold(seconds): time each callback and report those
 * taking at least this long (run_handle_timed); 0 stops timing them. */
static PyObject *loop_set_slow_threshold(gl_loop *self, PyObject *arg)
{
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    self->stats.slow_threshold = v > 0 ? v : 0;
    Py_RETURN_NONE;
}

static PyObject *loop_close_core(gl_loop *self, PyObject *unused)
{
    loop_clear(self);
    gl_engine_close(self);
    Py_RETURN_NONE;
}

/* ---------- attributes asyncio's Python code reads and writes ---------- */

static PyObject *get_flag(gl_loop *self, void *offset)
{
    return PyBool_FromLong(*(int *)((char *)self + (Py_ssize_t)offset));
}

static int set_flag(gl_loop *self, PyObject *value, void *offset)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    *(int *)((char *)self + (Py_ssize_t)offset) = v;
    return 0;
}

/* Due timers not yet run come first: stock has them at the front. */
static PyObject *get_ready(gl_loop *self, void *unused)
{
    PyObject *list = gl_ring_to_list(&self->tready);
    PyObject *rest = list ? gl_ring_to_list(&self->ready) : NULL;
    if (rest == NULL || PyList_SetSlice(list, PyList_GET_SIZE(list), PyList_GET_SIZE(list), rest) < 0) {
        Py_XDECREF(list);
        Py_XDECREF(rest);
        return NULL;
    }
    Py_DECREF(rest);
    return list;
}

static PyObject *get_scheduled(gl_loop *self, void *unused)
{
    return gl_timers_to_list(self);
}

static PyObject *get_clock_resolution(gl_loop *self, void *unused)
{
    return PyFloat_FromDouble(self->clock_resolution);
}

static int set_clock_resolution(gl_loop *self, PyObject *value, void *unused)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    self->clock_resolution = v;
    return 0;
}

/* BaseEventLoop.__init__ assigns a deque and a list; the queues are ours. */
static int ignore_set(gl_loop *self, PyObject *value, void *unused)
{
    return 0;
}

static PyGetSetDef loop_getset[] = {
    {"_closed", (getter)get_flag, (setter)set_flag, NULL, (void *)offsetof(gl_loop, closed)},
    {"_stopping", (getter)get_flag, (setter)set_flag, NULL,
     (void *)offsetof(gl_loop, stopping)},
    {"_debug", (getter)get_flag, (setter)set_flag, NULL, (void *)offsetof(gl_loop, debug)},
    {"_ready", (getter)get_ready, (setter)ignore_set, "snapshot of the ready queue", NULL},
    {"_scheduled", (getter)get_scheduled, (setter)ignore_set, "snapshot of pending timers",
     NULL},
    {"_clock_resolution", (getter)get_clock_resolution, (setter)set_clock_resolution,
     "what the timers add to time() to find those due", NULL},
    {NULL},
};

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef loop_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon, FASTKW, NULL},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))loop_call_soon_threadsafe, FASTKW,
     NULL},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later, FASTKW, NULL},
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at, FASTKW, NULL},
    {"time", (PyCFunction)loop_time, METH_NOARGS, NULL},
    {"create_future", (PyCFunction)gl_loop_create_future, METH_NOARGS, NULL},
    {"create_task", (PyCFunction)(void (*)(void))gl_loop_create_task, FASTKW, NULL},
    {"get_debug", (PyCFunction)loop_get_debug, METH_NOARGS, NULL},
    {"_timer_handle_cancelled", (PyCFunction)loop_timer_handle_cancelled, METH_O, NULL},
    {"_schedule_timer", (PyCFunction)loop_schedule_timer, METH_O, NULL},
    {"_add_callback", (PyCFunction)loop_add_callback, METH_O, NULL},
    {"_add_reader", (PyCFunction)(void (*)(void))loop_add_reader, METH_FASTCALL, NULL},
    {"_add_writer", (PyCFunction)(void (*)(void))loop_add_writer, METH_FASTCALL, NULL},
    {"_remove_reader", (PyCFunction)loop_remove_reader, METH_O, NULL},
    {"_remove_writer", (PyCFunction)loop_remove_writer, METH_O, NULL},
    {"_fd_registration", (PyCFunction)loop_fd_registration, METH_O, NULL},
    {"_fd_set", (PyCFunction)(void (*)(void))loop_fd_set, METH_FASTCALL, NULL},
    {"_fd_registrations", (PyCFunction)loop_fd_registrations, METH_NOARGS, NULL},
    {"_set_internal_fd", (PyCFunction)loop_set_internal_fd, METH_O, NULL},
    {"_run_once", (PyCFunction)loop_run_once, METH_NOARGS, NULL},
    {"_run_until_stopped", (PyCFunction)loop_run_until_stopped, METH_NOARGS, NULL},
    {"_close_core", (PyCFunction)loop_close_core, METH_NOARGS, NULL},
    {"_stats", (PyCFunction)loop_stats, METH_NOARGS, NULL},
    {"_set_slow_threshold", (PyCFunction)loop_set_slow_threshold, METH_O, NULL},
    {"_getaddrinfo", (PyCFunction)(void (*)(void))gl_loop_getaddrinfo, METH_FASTCALL, NULL},
    {"_getnameinfo_start", (PyCFunction)(void (*)(void))gl_loop_getnameinfo_start,
     METH_FASTCALL, NULL},
    {NULL},
};

PyTypeObject gl_LoopCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goloop._goloop.LoopCore",
    .tp_basicsize = sizeof(gl_loop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = loop_new,
    .tp_dealloc = (destructor)loop_dealloc,
    .tp_traverse = (traverseproc)loop_traverse,
    .tp_clear = (inquiry)loop_clear,
    .tp_methods = loop_methods,
    .tp_getset = loop_getset,
    .tp_setattro = loop_setattro,
};

int gl_loop_init_strings(void)
{
    str_call_soon = PyUnicode_InternFromString("call_soon");
    str_call_soon_threadsafe = PyUnicode_InternFromString("call_soon_threadsafe");
    str_time = PyUnicode_InternFromString("time");
    str_call_at = PyUnicode_InternFromString("call_at");
    str_call_later = PyUnicode_InternFromString("call_later");
    str_slow_callback = PyUnicode_InternFromString("_slow_callback");
    return (str_call_soon && str_call_soon_threadsafe && str_time && str_call_at &&
            str_call_later && str_slow_callback)
               ? 0
               : -1;
}

int gl_loop_init_type(void)
{
    time_descr = _PyType_Lookup(&gl_LoopCoreType, str_time); /* the type keeps it */
    if (time_descr == NULL) {
        PyErr_SetString(PyExc_ImportError, "goloop: LoopCore has no time");
        return -1;
    }
    return 0;
}
