/* Making queued handles visible to full garbage collections.
 *
 * Handles the loop owns alone are untracked (handles.c says why). Every
 * handle refers back to its loop, so an unclosed loop dropped with work
 * still queued would form a cycle the collector cannot see, and the loop,
 * its engine and its fds would never be freed, where the stock loop is
 * collected with a ResourceWarning. So around each full (generation 2)
 * collection, a gc.callbacks hook tracks every queued handle, context and
 * argument tuple for the duration, and untracks the loop-only ones afterwards. Younger
 * collections, the frequent ones, never pay for it, and neither do running
 * loops (the loop thread's stack keeps them alive): a full collection
 * during a 50k-callback burst would otherwise track and scan all of them. */
#include "goloop.h"

static gl_loop *live_loops;

void gl_live_add(gl_loop *loop)
{
    loop->live_prev = NULL;
    loop->live_next = live_loops;
    if (live_loops != NULL) {
        live_loops->live_prev = loop;
    }
    live_loops = loop;
}

void gl_live_remove(gl_loop *loop)
{
    if (loop->live_prev != NULL) {
        loop->live_prev->live_next = loop->live_next;
    } else if (live_loops == loop) {
        live_loops = loop->live_next;
    }
    if (loop->live_next != NULL) {
        loop->live_next->live_prev = loop->live_prev;
    }
    loop->live_prev = loop->live_next = NULL;
}

static void set_tracked(PyObject *obj, int track)
{
    if (obj == NULL || !PyObject_IS_GC(obj)) {
        return;
    }
    int tracked = PyObject_GC_IsTracked(obj);
    if (track && !tracked) {
        PyObject_GC_Track(obj);
    } else if (!track && tracked && Py_REFCNT(obj) == 1) {
        PyObject_GC_UnTrack(obj);
    }
}

static void expose_handle(PyObject *handle, int track)
{
    if (handle == NULL || GL_IS_WATCH(handle)) {
        return;
    }
    PyObject *ctx = GL_SLOT(handle, gl_off.context);
    if (ctx != NULL && PyContext_CheckExact(ctx)) {
        set_tracked(ctx, track);
    }
    PyObject *args = GL_SLOT(handle, gl_off.args);
    if (args != NULL && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) > 0) {
        set_tracked(args, track);
    }
    set_tracked(handle, track);
}

static void expose_loop(gl_loop *loop, int track)
{
    for (Py_ssize_t i = 0; i < loop->ready.len; i++) {
        expose_handle(gl_ring_peek(&loop->ready, i), track);
    }
    for (Py_ssize_t i = 0; i < loop->tready.len; i++) {
        expose_handle(gl_ring_peek(&loop->tready, i), track);
    }
    for (int32_t i = 0; i < loop->ntslots; i++) {
        expose_handle(loop->tslots[i], track);
    }
}

/* gc.callbacks entry: (phase, info). */
PyObject *gl_gc_callback(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[1])) {
        Py_RETURN_NONE;
    }
    PyObject *gen = PyDict_GetItemString(args[1], "generation");
    if (gen == NULL || PyLong_AsLong(gen) != 2) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int start = PyUnicode_Check(args[0]) && PyUnicode_CompareWithASCIIString(args[0], "start") == 0;
    for (gl_loop *loop = live_loops; loop != NULL; loop = loop->live_next) {
        if (!loop->running) {
            expose_loop(loop, start);
        }
    }
    Py_RETURN_NONE;
}
