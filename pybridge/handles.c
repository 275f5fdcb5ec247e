/* Handles: goloop's callbacks are real asyncio.Handle / TimerHandle objects.
 *
 * Instead of a look-alike type, C allocates instances of asyncio's own
 * classes and fills their __slots__ directly (offsets read from the member
 * descriptors at import). So isinstance(h, asyncio.Handle), repr, cancel(),
 * get_context() and when() are asyncio's own code, while creating a handle
 * costs one allocation instead of a Python __init__ (~0.4 us on 3.11). */
#include "goloop.h"
#include <math.h>

gl_handle_offsets gl_off;
PyTypeObject *gl_HandleType;
PyTypeObject *gl_TimerHandleType;

int gl_slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        return -1;
    }
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        Py_DECREF(descr);
        PyErr_Format(PyExc_ImportError, "goloop: %s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    return 0;
}

/* goloop.TimerHandle subclasses asyncio.TimerHandle and adds one C field:
 * the timer's slot in the loop's slot table (+1; 0 = not scheduled), which
 * names the timer in the Go heap so cancel() is an O(log n) removal. */
static PyObject *stock_timer_cancel; /* asyncio.TimerHandle.cancel */

static void set_slot(PyObject *obj, Py_ssize_t off, PyObject *value);

/* TimerHandle.cancel for goloop's own loops: the same steps as asyncio's
 * (notify the loop, mark cancelled, drop callback and args) without three
 * Python-level calls; cancelling 50k timers went from 9.9 ms to ~2 ms.
 * Debug mode and foreign loops take asyncio's method. */
static PyObject *timer_cancel(PyObject *self, PyObject *unused)
{
    PyObject *loop = GL_SLOT(self, gl_off.loop);
    if (loop == NULL || !PyObject_TypeCheck(loop, &gl_LoopCoreType) ||
        ((gl_loop *)loop)->debug) {
        return PyObject_CallOneArg(stock_timer_cancel, self);
    }
    if (gl_handle_is_cancelled(self)) {
        Py_RETURN_NONE;
    }
    if (gl_timer_cancelled((gl_loop *)loop, self) < 0) {
        return NULL;
    }
    set_slot(self, gl_off.cancelled, Py_True);
    set_slot(self, gl_off.callback, Py_None);
    set_slot(self, gl_off.args, Py_None);
    Py_RETURN_NONE;
}

static PyMethodDef timer_methods[] = {
    {"cancel", timer_cancel, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject *make_timer_type(PyTypeObject *base)
{
    stock_timer_cancel = PyObject_GetAttrString((PyObject *)base, "cancel");
    if (stock_timer_cancel == NULL) {
        return NULL;
    }
    static PyType_Slot slots[] = {{Py_tp_methods, timer_methods}, {0, NULL}};
    static PyType_Spec spec = {
        .name = "goloop.TimerHandle",
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
        .slots = slots,
    };
    spec.basicsize = (int)(base->tp_basicsize + sizeof(Py_ssize_t));
    gl_off.timer_slot = base->tp_basicsize;
    PyObject *bases = PyTuple_Pack(1, (PyObject *)base);
    if (bases == NULL) {
        return NULL;
    }
    PyObject *type = PyType_FromSpecWithBases(&spec, bases);
    Py_DECREF(bases);
    return (PyTypeObject *)type;
}

int gl_handles_init(PyObject *module)
{
    PyObject *events = PyImport_ImportModule("asyncio.events");
    if (events == NULL) {
        return -1;
    }
    PyObject *handle = PyObject_GetAttrString(events, "Handle");
    PyObject *timer = PyObject_GetAttrString(events, "TimerHandle");
    Py_DECREF(events);
    if (handle == NULL || timer == NULL) {
        Py_XDECREF(handle);
        Py_XDECREF(timer);
        return -1;
    }
    gl_HandleType = (PyTypeObject *)handle;
    PyTypeObject *t = (PyTypeObject *)timer;
    if (gl_slot_offset(gl_HandleType, "_callback", &gl_off.callback) < 0 ||
        gl_slot_offset(gl_HandleType, "_args", &gl_off.args) < 0 ||
        gl_slot_offset(gl_HandleType, "_cancelled", &gl_off.cancelled) < 0 ||
        gl_slot_offset(gl_HandleType, "_loop", &gl_off.loop) < 0 ||
        gl_slot_offset(gl_HandleType, "_source_traceback", &gl_off.source_traceback) < 0 ||
        gl_slot_offset(gl_HandleType, "_repr", &gl_off.repr) < 0 ||
        gl_slot_offset(gl_HandleType, "_context", &gl_off.context) < 0 ||
        gl_slot_offset(t, "_when", &gl_off.when) < 0 ||
        gl_slot_offset(t, "_scheduled", &gl_off.scheduled) < 0) {
        Py_DECREF(timer);
        return -1;
    }
    gl_TimerHandleType = make_timer_type(t);
    Py_DECREF(timer);
    if (gl_TimerHandleType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "TimerHandle", (PyObject *)gl_TimerHandleType);
}

/* A new tuple of n borrowed items: a handle's args. */
PyObject *gl_tuple_from(PyObject *const *items, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(t, i, Py_NewRef(items[i]));
    }
    return t;
}

static void set_slot(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = GL_SLOT(obj, off);
    GL_SLOT(obj, off) = Py_NewRef(value);
    Py_XDECREF(old);
}

static int fill_handle(PyObject *h, gl_loop *loop, PyObject *callback, PyObject *args,
                       PyObject *context)
{
    if (context == NULL || context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            return -1;
        }
        GL_SLOT(h, gl_off.context) = context;
    } else {
        GL_SLOT(h, gl_off.context) = Py_NewRef(context);
    }
    GL_SLOT(h, gl_off.callback) = Py_NewRef(callback);
    GL_SLOT(h, gl_off.args) = Py_NewRef(args);
    GL_SLOT(h, gl_off.cancelled) = Py_NewRef(Py_False);
    GL_SLOT(h, gl_off.loop) = Py_NewRef((PyObject *)loop);
    GL_SLOT(h, gl_off.source_traceback) = Py_NewRef(Py_None);
    GL_SLOT(h, gl_off.repr) = Py_NewRef(Py_None);
    return 0;
}

PyObject *gl_handle_new(gl_loop *loop, PyObject *callback, PyObject *args, PyObject *context)
{
    PyObject *h = gl_HandleType->tp_alloc(gl_HandleType, 0);
    if (h == NULL) {
        return NULL;
    }
    if (fill_handle(h, loop, callback, args, context) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

/* The argument tuple call_soon/call_at made for a handle goes off the GC's
 * lists with it while nothing else holds it. A tracked one is what made
 * call_soon(cb, i, f) slower than call_soon(cb, i, 2): a batch of 1000
 * queued tuples sat in generation 0 at each collection; with a function
 * in them the collector could not untrack them (it does for tuples of
 * atomic values), so they were promoted and set off full collections
 * (perf of `call_soon(cb, i, f)`: 20% in gc_collect_main, visit_decref and
 * visit_reachable). */
void gl_handle_untrack_args(PyObject *handle)
{
    PyObject *args = GL_SLOT(handle, gl_off.args);
    if (args != NULL && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) > 0 &&
        Py_REFCNT(args) == 1 && PyObject_GC_IsTracked(args)) {
        PyObject_GC_UnTrack(args);
    }
}

/* Handles queued by call_soon/call_at are taken off the cyclic GC's lists
 * while the loop owns them: they are reachable from the loop anyway, and
 * tracking ~1000 short-lived objects per batch made gen0/gen1 collections
 * 60% of a call_soon benchmark (perf, 3.11). gl_handle_release puts a
 * handle back under the GC if anything else still holds it, so cycles
 * through a handle that outlives the loop's ownership are still found. */
void gl_handle_untrack(PyObject *handle)
{
    PyObject_GC_UnTrack(handle);
    gl_handle_untrack_args(handle);
    /* A context copied for this handle alone goes with it. */
    PyObject *ctx = GL_SLOT(handle, gl_off.context);
    if (ctx != NULL && PyContext_CheckExact(ctx) && Py_REFCNT(ctx) == 1 &&
        PyObject_GC_IsTracked(ctx)) {
        PyObject_GC_UnTrack(ctx);
    }
}

/* Recycled asyncio.Handle objects for call_soon. A handle the loop holds
 * the only reference to when it has run is emptied and kept instead of
 * freed: the next call_soon skips the allocator, the GC link/unlink and
 * subtype_dealloc's walk over the slots. Only untracked, exact Handles
 * without weak references qualify, so nothing outside can see the reuse.
 *
 * The list keeps 256, and more only for bursts queued from other threads:
 * a thread calling call_soon_threadsafe queues ~40k handles per GIL switch
 * interval, and with 256 kept the rest went through fresh pymalloc arenas,
 * their page faults and munmap each time: 199 ns per callback against
 * rloop's 133, and 124 ns with the list allowed to hold the burst (3M
 * callbacks from one thread, the body of `benchmarks/micro.py threadsafe`;
 * perf showed the page faults and munmap). Bursts the loop thread makes
 * itself (accepting a backlog of connections) do not raise the limit:
 * handles kept there would only push the transports and protocols made
 * next into fresh memory (+0.02 KiB per idle connection in
 * benchmarks/net/idle_conns.py). What a whole trim period leaves unused
 * above GL_HANDLE_FREELIST_FLOOR is freed when a loop goes idle, so a burst
 * does not pin its memory (gl_handle_freelist_trim). */
#define GL_HANDLE_FREELIST 65536
#define GL_HANDLE_FREELIST_FLOOR 256
static PyObject *handle_freelist[GL_HANDLE_FREELIST];
static int handle_freelist_len;
static int handle_freelist_cap = GL_HANDLE_FREELIST_FLOOR; /* current limit */
static int handle_freelist_low;       /* fewest kept since the period began */
static double handle_freelist_period; /* when it began */

/* 3.12+ keep a class's weak reference list before the object (managed:
 * a negative tp_weaklistoffset, -32 for asyncio.Handle), 3.11 in a slot
 * (72); the list's address is the object's plus the offset either way. */
int gl_handle_weakly_referenced(PyObject *handle)
{
    Py_ssize_t wl = Py_TYPE(handle)->tp_weaklistoffset;
    return wl != 0 && *(PyObject **)((char *)handle + wl) != NULL;
}

static int recyclable(PyObject *handle)
{
    return Py_REFCNT(handle) == 1 && Py_IS_TYPE(handle, gl_HandleType) &&
           !PyObject_GC_IsTracked(handle) && handle_freelist_len < handle_freelist_cap &&
           !gl_handle_weakly_referenced(handle);
}

static void empty_handle(PyObject *handle)
{
    Py_CLEAR(GL_SLOT(handle, gl_off.callback));
    Py_CLEAR(GL_SLOT(handle, gl_off.args));
    Py_CLEAR(GL_SLOT(handle, gl_off.context));
    Py_CLEAR(GL_SLOT(handle, gl_off.loop));
    Py_CLEAR(GL_SLOT(handle, gl_off.source_traceback));
    Py_CLEAR(GL_SLOT(handle, gl_off.repr));
    Py_CLEAR(GL_SLOT(handle, gl_off.cancelled));
}

PyObject *gl_handle_new_queued(gl_loop *loop, PyObject *callback, PyObject *args,
                               PyObject *context)
{
    if (handle_freelist_len == 0) {
        PyObject *h = gl_handle_new(loop, callback, args, context);
        if (h != NULL) {
            gl_handle_untrack(h);
        }
        return h;
    }
    PyObject *h = handle_freelist[--handle_freelist_len];
    if (handle_freelist_len < handle_freelist_low) {
        handle_freelist_low = handle_freelist_len;
    }
    if (fill_handle(h, loop, callback, args, context) < 0) {
        empty_handle(h);
        handle_freelist[handle_freelist_len++] = h;
        return NULL;
    }
    gl_handle_untrack(h);
    return h;
}

/* What the loop untracked goes back under the GC before the loop lets go:
 * the context (it must be tracked before it can die: Context's dealloc
 * untracks unconditionally), and an argument tuple someone else took
 * (handle._args), or that of a handle that outlives the loop's hold
 * (shared). */
static void retrack_context(PyObject *handle)
{
    PyObject *ctx = GL_SLOT(handle, gl_off.context);
    if (ctx != NULL && PyContext_CheckExact(ctx) && !PyObject_GC_IsTracked(ctx)) {
        PyObject_GC_Track(ctx);
    }
}

static void retrack_args(PyObject *handle, int shared)
{
    PyObject *args = GL_SLOT(handle, gl_off.args);
    if (args != NULL && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) > 0 &&
        (Py_REFCNT(args) > 1 || shared) && !PyObject_GC_IsTracked(args)) {
        PyObject_GC_Track(args);
    }
}

/* PyContext's fields (Include/internal/pycore_context.h, the same in
 * 3.11-3.13), read to tell whether a context's death would free anything
 * but itself. */
typedef struct {
    PyObject_HEAD
    PyObject *ctx_prev;
    PyObject *ctx_vars;
    PyObject *ctx_weakreflist;
    int ctx_entered;
} gl_context_fields;

/* Whether freeing ctx later instead of now is invisible: only the handle
 * holds it, nothing refers to it weakly, and its variables are held
 * elsewhere too (as those of a context copied for a handle are, by the
 * context it was copied from, until that one sets a variable). */
static int context_dies_alone(PyObject *ctx)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
    const gl_context_fields *c = (const gl_context_fields *)ctx;
    return PyContext_CheckExact(ctx) && Py_REFCNT(ctx) == 1 && c->ctx_weakreflist == NULL &&
           !c->ctx_entered && c->ctx_vars != NULL && Py_REFCNT(c->ctx_vars) > 1;
#else
    (void)ctx;
    return 0;
#endif
}

/* A fired timer's handle nobody else holds (nor refers to weakly) has
 * run: it lets go of its callback and arguments now, as stock drops the
 * handle before the next callback runs, and the loop keeps the rest
 * (timers.c frees the shell later, in the order the timers were
 * scheduled). So does its context when freeing it later is invisible
 * (context_dies_alone): freeing a burst's contexts in deadline order
 * missed the cache on each one's pymalloc pool header. */
void gl_handle_drop_refs(PyObject *handle)
{
    retrack_args(handle, 0);
    Py_CLEAR(GL_SLOT(handle, gl_off.callback));
    Py_CLEAR(GL_SLOT(handle, gl_off.args));
    PyObject *ctx = GL_SLOT(handle, gl_off.context);
    if (ctx != NULL && !context_dies_alone(ctx)) {
        retrack_context(handle);
        Py_CLEAR(GL_SLOT(handle, gl_off.context));
    }
}

void gl_handle_release(PyObject *handle)
{
    if (GL_IS_WATCH(handle)) {
        Py_DECREF(handle);
        return;
    }
    retrack_context(handle);
    retrack_args(handle, Py_REFCNT(handle) > 1);
    if (recyclable(handle)) {
        empty_handle(handle); /* may run finalizers, which may call call_soon */
        if (handle_freelist_len < handle_freelist_cap) {
            handle_freelist[handle_freelist_len++] = handle;
        } else {
            Py_DECREF(handle);
        }
        return;
    }
    if (Py_REFCNT(handle) > 1 && !PyObject_GC_IsTracked(handle)) {
        PyObject_GC_Track(handle);
    }
    Py_DECREF(handle);
}

/* A loop is about to run n handles queued from other threads: let the
 * list keep that many. */
void gl_handle_freelist_expect(Py_ssize_t n)
{
    if (n > handle_freelist_cap) {
        handle_freelist_cap = n < GL_HANDLE_FREELIST ? (int)n : GL_HANDLE_FREELIST;
    }
}

/* Called by a loop about to block: frees the handles the freelist kept
 * above its floor for a whole period without using them. Returns when it
 * wants to look again (the loop caps its wait there), or INFINITY. */
double gl_handle_freelist_trim(double now)
{
    if (handle_freelist_len <= GL_HANDLE_FREELIST_FLOOR) {
        handle_freelist_cap = GL_HANDLE_FREELIST_FLOOR;
        handle_freelist_low = handle_freelist_len;
        handle_freelist_period = now;
        return INFINITY;
    }
    double due = handle_freelist_period + GL_IDLE_TRIM_PERIOD;
    if (now < due) {
        return due;
    }
    int unused = handle_freelist_low - GL_HANDLE_FREELIST_FLOOR;
    while (unused-- > 0) {
        Py_DECREF(handle_freelist[--handle_freelist_len]);
    }
    handle_freelist_low = handle_freelist_len;
    handle_freelist_period = now;
    return handle_freelist_len > GL_HANDLE_FREELIST_FLOOR ? now + GL_IDLE_TRIM_PERIOD
                                                           : INFINITY;
}

PyObject *gl_timer_handle_new(gl_loop *loop, PyObject *when, PyObject *callback,
                              PyObject *args, PyObject *context)
{
    PyObject *h = gl_TimerHandleType->tp_alloc(gl_TimerHandleType, 0);
    if (h == NULL) {
        return NULL;
    }
    if (fill_handle(h, loop, callback, args, context) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    GL_SLOT(h, gl_off.when) = Py_NewRef(when);
    GL_SLOT(h, gl_off.scheduled) = Py_NewRef(Py_False);
    return h;
}

/* The header of the pymalloc pool an object sits in, which freeing it
 * reads and writes: pools are 16 KiB on 64-bit builds since 3.10 (a wrong
 * guess only wastes a prefetch). Pool headers share their cache sets, so
 * freeing a burst in deadline order misses on them all. */
#define GL_POOL_OF(p) ((void *)((uintptr_t)(p) & ~(uintptr_t)(16384 - 1)))

void gl_handle_prefetch_refs(PyObject *h)
{
    if (h == NULL || GL_IS_WATCH(h)) {
        return;
    }
    PyObject *ctx = GL_SLOT(h, gl_off.context);
    if (ctx != NULL) {
        __builtin_prefetch((char *)ctx - 16, 1);
        __builtin_prefetch((char *)ctx + 16, 1); /* PyContext_Enter's fields */
    }
    /* A fired timer and (mostly) its context are freed later, in the
     * order they were scheduled (timers.c): nothing of theirs is freed as
     * they run. */
    if (!Py_IS_TYPE(h, gl_TimerHandleType)) {
        if (ctx != NULL) {
            __builtin_prefetch(GL_POOL_OF(ctx), 1, 2);
        }
        __builtin_prefetch(GL_POOL_OF(h), 1, 2);
    }
}

void gl_handle_set_scheduled(PyObject *timer, int scheduled)
{
    set_slot(timer, gl_off.scheduled, scheduled ? Py_True : Py_False);
}

int gl_handle_is_cancelled(PyObject *handle)
{
    if (GL_IS_WATCH(handle)) {
        return ((gl_watch *)handle)->cancelled;
    }
    PyObject *c = GL_SLOT(handle, gl_off.cancelled);
    if (c == Py_False) {
        return 0;
    }
    if (c == Py_True) {
        return 1;
    }
    return c != NULL && PyObject_IsTrue(c) == 1;
}

/* True when the pending exception is one asyncio lets through its
 * `except (SystemExit, KeyboardInterrupt): raise` clauses. */
int gl_exiting_exception(void)
{
    return PyErr_ExceptionMatches(PyExc_SystemExit) ||
           PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

PyObject *gl_take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

void gl_restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

void gl_chain_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    _PyErr_ChainExceptions1(exc);
#else
    _PyErr_ChainExceptions(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Report an exception from a callback the way Handle._run does: through
 * the loop's exception handler, keeping only SystemExit and
 * KeyboardInterrupt fatal. The formatting is slow-path Python. */
int gl_report_callback_error(gl_loop *loop, PyObject *handle)
{
    if (gl_exiting_exception()) {
        return -1;
    }
    PyObject *exc = gl_take_exception();
    PyObject *r = PyObject_CallMethodObjArgs((PyObject *)loop, gl_str_callback_error,
                                             handle, exc, NULL);
    Py_XDECREF(exc);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Run one handle: Context.run(callback, *args) without building the
 * argument tuple again. Handles of unusual shape (a subclass, a foreign
 * context object) take asyncio's own Handle._run. */
int gl_handle_run(gl_loop *loop, PyObject *handle)
{
    PyObject *cb = GL_SLOT(handle, gl_off.callback);
    PyObject *args = GL_SLOT(handle, gl_off.args);
    PyObject *ctx = GL_SLOT(handle, gl_off.context);
    if (cb == NULL || args == NULL || ctx == NULL || !PyTuple_CheckExact(args) ||
        !PyContext_CheckExact(ctx)) {
        PyObject *r = PyObject_CallMethodNoArgs(handle, gl_str_run);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        return 0;
    }
    Py_INCREF(cb);
    Py_INCREF(args);
    Py_INCREF(ctx);
    PyObject *res = NULL;
    if (PyContext_Enter(ctx) == 0) {
        res = PyObject_Vectorcall(cb, &PyTuple_GET_ITEM(args, 0), PyTuple_GET_SIZE(args), NULL);
        if (PyContext_Exit(ctx) < 0) {
            Py_CLEAR(res);
        }
    }
    Py_DECREF(cb);
    Py_DECREF(args);
    Py_DECREF(ctx);
    if (res == NULL) {
        return gl_report_callback_error(loop, handle);
    }
    Py_DECREF(res);
    return 0;
}
