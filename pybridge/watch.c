/* Native fd watchers: a C function registered in the loop's fd tables in
 * place of an asyncio.Handle.
 *
 * asyncio's transports register bound methods (`_read_ready`) as reader
 * handles, so every readable event costs a Handle run through
 * Context.run and a Python method call before any real work. goloop's own
 * transports (stream.c) register a watch instead: the fd table entry is
 * this object, the ready queue carries it like any handle (same ordering
 * as stock: I/O callbacks run after the callbacks already queued), and
 * running it is one C call inside the context captured at registration,
 * as asyncio's reader Handle captures one. It quacks like a Handle where
 * asyncio looks (cancel, cancelled, _run, _callback, _args, repr) so
 * debug mode, selector views and exception reports keep working. */
#include "goloop.h"

static int watch_traverse(gl_watch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    Py_VISIT(self->context);
    Py_VISIT(self->loop);
    return 0;
}

static int watch_clear(gl_watch *self)
{
    Py_CLEAR(self->owner);
    Py_CLEAR(self->context);
    Py_CLEAR(self->loop);
    return 0;
}

static void watch_dealloc(gl_watch *self)
{
    PyObject_GC_UnTrack(self);
    watch_clear(self);
    PyObject_GC_Del(self);
}

/* with_context: capture the current context to run fn in, for watches
 * whose function runs user code (protocol callbacks); internal ones
 * (sock_recv's wait sets a future) skip the copy. */
PyObject *gl_watch_new(gl_loop *loop, PyObject *owner, gl_watch_fn fn, int write,
                       int with_context)
{
    gl_watch *w = PyObject_GC_New(gl_watch, &gl_WatchType);
    if (w == NULL) {
        return NULL;
    }
    w->owner = Py_NewRef(owner);
    w->loop = Py_NewRef((PyObject *)loop);
    w->context = with_context ? PyContext_CopyCurrent() : NULL;
    w->fn = fn;
    w->write = (char)write;
    w->cancelled = 0;
    w->edge = 0;
    if (with_context && w->context == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

/* Run the watch's function in its context; 0, or -1 with an exception
 * for the run loop to report (SystemExit/KeyboardInterrupt propagate). */
static int watch_call(gl_watch *self)
{
    if (self->cancelled) {
        return 0;
    }
    PyObject *owner = Py_NewRef(self->owner);
    PyObject *ctx = self->context;
    if (ctx == NULL) {
        int r = self->fn(owner, self->write);
        Py_DECREF(owner);
        return r;
    }
    Py_INCREF(ctx);
    int r = -1;
    if (PyContext_Enter(ctx) == 0) {
        r = self->fn(owner, self->write);
        if (PyContext_Exit(ctx) < 0) {
            r = -1;
        }
    }
    Py_DECREF(ctx);
    Py_DECREF(owner);
    return r;
}

int gl_watch_run(gl_loop *loop, PyObject *watch)
{
    if (watch_call((gl_watch *)watch) < 0) {
        return gl_report_callback_error(loop, watch);
    }
    return 0;
}

static PyObject *watch_cancel(gl_watch *self, PyObject *unused)
{
    self->cancelled = 1;
    Py_RETURN_NONE;
}

static PyObject *watch_cancelled(gl_watch *self, PyObject *unused)
{
    return PyBool_FromLong(self->cancelled);
}

/* Handle._run: errors are reported, not raised (used by debug mode). */
static PyObject *watch_run_method(gl_watch *self, PyObject *unused)
{
    if (!PyObject_TypeCheck(self->loop, &gl_LoopCoreType)) {
        PyErr_SetString(PyExc_RuntimeError, "watch without a loop");
        return NULL;
    }
    if (gl_watch_run((gl_loop *)self->loop, (PyObject *)self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static const char *watch_method_name(gl_watch *self)
{
    return self->write ? "_write_ready" : "_read_ready";
}

static PyObject *watch_get_callback(gl_watch *self, void *unused)
{
    if (self->cancelled) {
        Py_RETURN_NONE;
    }
    PyObject *cb = PyObject_GetAttrString(self->owner, watch_method_name(self));
    if (cb == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear(); /* an internal owner (sockops.c) is the callable */
        cb = Py_NewRef(self->owner);
    }
    return cb;
}

static PyObject *watch_get_args(gl_watch *self, void *unused)
{
    if (self->cancelled) {
        Py_RETURN_NONE;
    }
    return PyTuple_New(0);
}

static PyObject *watch_get_none(gl_watch *self, void *unused)
{
    Py_RETURN_NONE;
}

static PyObject *watch_get_context(gl_watch *self, PyObject *unused)
{
    return Py_NewRef(self->context ? self->context : Py_None);
}

static PyObject *watch_repr(gl_watch *self)
{
    return PyUnicode_FromFormat("<Handle %s%s.%s()>", self->cancelled ? "cancelled " : "",
                                Py_TYPE(self->owner)->tp_name, watch_method_name(self));
}

static PyMethodDef watch_methods[] = {
    {"cancel", (PyCFunction)watch_cancel, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)watch_cancelled, METH_NOARGS, NULL},
    {"get_context", (PyCFunction)watch_get_context, METH_NOARGS, NULL},
    {"_run", (PyCFunction)watch_run_method, METH_NOARGS, NULL},
    {NULL},
};

static PyGetSetDef watch_getset[] = {
    {"_callback", (getter)watch_get_callback, NULL, NULL, NULL},
    {"_args", (getter)watch_get_args, NULL, NULL, NULL},
    {"_source_traceback", (getter)watch_get_none, NULL, NULL, NULL},
    {"_repr", (getter)watch_get_none, NULL, NULL, NULL},
    {NULL},
};

PyTypeObject gl_WatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goloop._goloop.FdWatch",
    .tp_doc = "A native fd callback in the loop's fd table (see pybridge/watch.c).",
    .tp_basicsize = sizeof(gl_watch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)watch_traverse,
    .tp_clear = (inquiry)watch_clear,
    .tp_dealloc = (destructor)watch_dealloc,
    .tp_repr = (reprfunc)watch_repr,
    .tp_methods = watch_methods,
    .tp_getset = watch_getset,
};
