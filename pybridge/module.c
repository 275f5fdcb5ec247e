/* Module goloop._goloop: loaded on first use of a loop, never by
 * `import goloop`, because loading it starts the Go runtime (see fork
 * policy in docs/architecture.md). */
#include "goloop.h"
#include "_cgo_export.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

volatile int gl_forked = 0;

PyObject *gl_str_cancel, *gl_str_run, *gl_str_callback_error, *gl_str_call_soon_slow,
    *gl_str_call_at_slow, *gl_str_run_handle_debug, *gl_str_fileno;

int gl_loop_init_strings(void);
int gl_loop_init_type(void); /* after PyType_Ready(&gl_LoopCoreType) */

/* Go's threads do not survive fork(): in the child any goroutine or GC
 * activity hangs forever. A child of a process that started Go therefore
 * never enters Go again: loops it inherited refuse to run, and loops it
 * creates use the C fallback engine (backend.c). */
static void after_fork_child(void)
{
    gl_forked = 1;
}

/* The truth of self.<name>: 1, 0 or -1 with an exception set. */
int gl_attr_true(PyObject *self, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(self, name);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

int gl_check_not_forked(void)
{
    if (gl_forked) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goloop cannot run this event loop in a process forked after the loop "
                        "was created: its Go engine's threads do not survive fork(). Create a "
                        "new loop in the child (it runs on goloop's fork-safe C engine), or "
                        "start workers with multiprocessing's 'spawn' or 'forkserver' method.");
        return -1;
    }
    return 0;
}

double gl_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static PyObject *mod_forked(PyObject *mod, PyObject *unused)
{
    return PyBool_FromLong(gl_forked);
}

/* _bench_crossing(n, release_gil): average ns of one C->Go call, optionally
 * wrapped in the GIL release/re-acquire that gopy's generated wrappers do
 * on every call. The call is glResolveStart with an empty list: the loop's
 * own per-iteration crossing when that iteration started name lookups,
 * minus the goroutines. Used by benchmarks/crossing.py for the README's
 * binding-cost table. */
static PyObject *mod_bench_crossing(PyObject *mod, PyObject *args)
{
    long n;
    int release;
    if (!PyArg_ParseTuple(args, "lp", &n, &release)) {
        return NULL;
    }
    if (gl_check_not_forked() < 0) {
        return NULL;
    }
    double t0 = gl_monotonic();
    for (long i = 0; i < n; i++) {
        if (release) {
            Py_BEGIN_ALLOW_THREADS
            glResolveStart(NULL);
            Py_END_ALLOW_THREADS
        } else {
            glResolveStart(NULL);
        }
    }
    double dt = gl_monotonic() - t0;
    return PyFloat_FromDouble(n > 0 ? dt * 1e9 / (double)n : 0.0);
}

static PyMethodDef module_methods[] = {
    {"_bench_crossing", mod_bench_crossing, METH_VARARGS, NULL},
    {"forked", mod_forked, METH_NOARGS,
     "True in a child forked after this process started the Go runtime."},
    {"_spawn", (PyCFunction)(void (*)(void))gl_spawn, METH_FASTCALL,
     "Start a child process through the Go engine (process.c)."},
    {"_reap_later", gl_reap_later, METH_O,
     "Hand a child's pidfd to the Go engine, which reaps it (process.c)."},
    {"_accept_stream", (PyCFunction)(void (*)(void))gl_accept_stream, METH_FASTCALL,
     "A server's accept loop for plain connections (accept.c)."},
    {"_socket", (PyCFunction)(void (*)(void))gl_socket_new_py, METH_FASTCALL,
     "socket.socket(family, type, proto) without socket.py's __init__ frame (sockaddr.c)."},
    {"_gc_callback", (PyCFunction)(void (*)(void))gl_gc_callback, METH_FASTCALL,
     "gc.callbacks hook: queued handles are visible to full collections."},
    {NULL},
};

static int register_gc_callback(PyObject *m)
{
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *callbacks = gc ? PyObject_GetAttrString(gc, "callbacks") : NULL;
    PyObject *hook = PyObject_GetAttrString(m, "_gc_callback");
    int r = (callbacks && hook) ? PyList_Append(callbacks, hook) : -1;
    Py_XDECREF(gc);
    Py_XDECREF(callbacks);
    Py_XDECREF(hook);
    return r;
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "goloop._goloop",
    .m_doc = "The native core of goloop: C loop core over the Go engine.",
    .m_size = -1,
    .m_methods = module_methods,
};

static int init_strings(void)
{
    gl_str_cancel = PyUnicode_InternFromString("cancel");
    gl_str_run = PyUnicode_InternFromString("_run");
    gl_str_callback_error = PyUnicode_InternFromString("_callback_error");
    gl_str_call_soon_slow = PyUnicode_InternFromString("_call_soon_slow");
    gl_str_call_at_slow = PyUnicode_InternFromString("_call_at_slow");
    gl_str_run_handle_debug = PyUnicode_InternFromString("_run_handle_debug");
    gl_str_fileno = PyUnicode_InternFromString("fileno");
    if (!gl_str_cancel || !gl_str_run || !gl_str_callback_error || !gl_str_call_soon_slow ||
        !gl_str_call_at_slow || !gl_str_run_handle_debug || !gl_str_fileno) {
        return -1;
    }
    return gl_loop_init_strings();
}

PyMODINIT_FUNC PyInit__goloop(void)
{
    if (init_strings() < 0 || gl_futures_init() < 0 || gl_io_init() < 0 || gl_sockops_init() < 0 ||
        gl_sockaddr_init() < 0 || gl_accept_init() < 0 || gl_resolve_init() < 0 ||
        PyType_Ready(&gl_LoopCoreType) < 0 || gl_sockops_add_methods(&gl_LoopCoreType) < 0 ||
        gl_loop_init_type() < 0 ||
        PyType_Ready(&gl_WatchType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (gl_handles_init(m) < 0 || gl_stream_init(m) < 0 || gl_datagram_init(m) < 0 ||
        gl_pipe_init(m) < 0 || gl_sslproto_init(m) < 0 || register_gc_callback(m) < 0 ||
        PyModule_AddObjectRef(m, "LoopCore", (PyObject *)&gl_LoopCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    char *go_version = glGoVersion();
    int added = PyModule_AddStringConstant(m, "go_version", go_version);
    free(go_version);
    if (added < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static int atfork_done = 0;
    if (!atfork_done && pthread_atfork(NULL, NULL, after_fork_child) == 0) {
        atfork_done = 1;
    }
    return m;
}
