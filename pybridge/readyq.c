/* The ready queue: a power-of-two ring of owned handle references.
 *
 * asyncio keeps a collections.deque; a flat ring in C makes call_soon an
 * array store and the run loop a pointer walk, with no crossing into Go
 * (a C->Go call per callback, ~57 ns here, would cost more than the rest of
 * call_soon together). */
#include "goloop.h"

static int ring_grow(gl_ring *r, Py_ssize_t need)
{
    Py_ssize_t ncap = r->cap ? r->cap * 2 : 64;
    while (ncap < need) {
        ncap *= 2;
    }
    PyObject **nbuf = PyMem_Malloc(ncap * sizeof(PyObject *));
    if (nbuf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < r->len; i++) {
        nbuf[i] = r->buf[(r->head + i) & (r->cap - 1)];
    }
    PyMem_Free(r->buf);
    r->buf = nbuf;
    r->head = 0;
    r->cap = ncap;
    return 0;
}

int gl_ring_reserve(gl_ring *r, Py_ssize_t n)
{
    return r->len + n > r->cap ? ring_grow(r, r->len + n) : 0;
}

int gl_ring_push(gl_ring *r, PyObject *item)
{
    if (r->len == r->cap && ring_grow(r, r->len + 1) < 0) {
        Py_DECREF(item);
        return -1;
    }
    r->buf[(r->head + r->len) & (r->cap - 1)] = item;
    r->len++;
    return 0;
}

PyObject *gl_ring_pop(gl_ring *r)
{
    if (r->len == 0) {
        return NULL;
    }
    PyObject *item = r->buf[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    return item;
}

void gl_ring_clear(gl_ring *r)
{
    PyObject *item;
    while ((item = gl_ring_pop(r)) != NULL) {
        gl_handle_release(item);
    }
}

void gl_ring_shrink(gl_ring *r)
{
    if (r->len == 0) {
        PyMem_Free(r->buf);
        r->buf = NULL;
        r->head = 0;
        r->cap = 0;
    }
}

PyObject *gl_ring_to_list(gl_ring *r)
{
    PyObject *list = PyList_New(r->len);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < r->len; i++) {
        PyObject *item = r->buf[(r->head + i) & (r->cap - 1)];
        PyList_SET_ITEM(list, i, Py_NewRef(item));
    }
    return list;
}
