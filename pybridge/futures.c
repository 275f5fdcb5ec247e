/* create_future / create_task without a Python frame.
 *
 * asyncio's versions are two-line Python methods, but they run once per
 * task or future; calling the (C) Future and Task types directly saves
 * the frame and the attribute lookups (~0.3 us per task on 3.11). Anything
 * unusual (a task factory, debug mode, keyword-only spellings) goes to
 * asyncio's own BaseEventLoop.create_task, so behaviour and messages stay
 * the stock ones. Future and Task are looked up in their modules on each
 * call because tests and libraries patch them. */
#include "goloop.h"

static PyObject *futures_module, *tasks_module, *stock_create_task;
static PyObject *str_Future, *str_Task, *str_task_factory, *kw_loop, *kw_loop_name_context;

int gl_futures_init(void)
{
    futures_module = PyImport_ImportModule("asyncio.futures");
    tasks_module = PyImport_ImportModule("asyncio.tasks");
    PyObject *base = PyImport_ImportModule("asyncio.base_events");
    PyObject *cls = base ? PyObject_GetAttrString(base, "BaseEventLoop") : NULL;
    stock_create_task = cls ? PyObject_GetAttrString(cls, "create_task") : NULL;
    Py_XDECREF(cls);
    Py_XDECREF(base);
    str_Future = PyUnicode_InternFromString("Future");
    str_Task = PyUnicode_InternFromString("Task");
    str_task_factory = PyUnicode_InternFromString("_task_factory");
    kw_loop = Py_BuildValue("(s)", "loop");
    kw_loop_name_context = Py_BuildValue("(sss)", "loop", "name", "context");
    if (!futures_module || !tasks_module || !stock_create_task || !str_Future || !str_Task ||
        !str_task_factory || !kw_loop || !kw_loop_name_context) {
        return -1;
    }
    return 0;
}

PyObject *gl_loop_create_future(gl_loop *self, PyObject *unused)
{
    PyObject *future_type = PyObject_GetAttr(futures_module, str_Future);
    if (future_type == NULL) {
        return NULL;
    }
    PyObject *args[1] = {(PyObject *)self};
    PyObject *fut = PyObject_Vectorcall(future_type, args, 0, kw_loop);
    Py_DECREF(future_type);
    return fut;
}

/* The fast path applies to create_task(coro) and create_task(coro,
 * name=..., context=...) with no task factory, outside debug mode. */
static int fast_task_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                          PyObject **name, PyObject **context)
{
    *name = Py_None;
    *context = Py_None;
    if (nargs != 1) {
        return 0;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "name") == 0) {
            *name = args[nargs + i];
        } else if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
            *context = args[nargs + i];
        } else {
            return 0;
        }
    }
    return 1;
}

static PyObject *slow_create_task(gl_loop *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject **stack = PyMem_Malloc((nargs + nkw + 1) * sizeof(PyObject *));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < nargs + nkw; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *r = PyObject_Vectorcall(stock_create_task, stack, nargs + 1, kwnames);
    PyMem_Free(stack);
    return r;
}

PyObject *gl_loop_create_task(gl_loop *self, PyObject *const *args, Py_ssize_t nargsf,
                              PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *name, *context;
    if (self->debug || !fast_task_args(args, nargs, kwnames, &name, &context)) {
        return slow_create_task(self, args, nargs, kwnames);
    }
    PyObject *factory = PyObject_GetAttr((PyObject *)self, str_task_factory);
    if (factory == NULL) {
        PyErr_Clear();
        return slow_create_task(self, args, nargs, kwnames);
    }
    int has_factory = factory != Py_None;
    Py_DECREF(factory);
    if (has_factory) {
        return slow_create_task(self, args, nargs, kwnames);
    }
    if (self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    PyObject *task_type = PyObject_GetAttr(tasks_module, str_Task);
    if (task_type == NULL) {
        return NULL;
    }
    PyObject *call[4] = {args[0], (PyObject *)self, name, context};
    PyObject *task = PyObject_Vectorcall(task_type, call, 1, kw_loop_name_context);
    Py_DECREF(task_type);
    return task;
}
