/* Timers, C side: the slot table and the timer op log.
 *
 * The heap itself lives in the Go engine (goloop/timerheap.go). C never
 * calls Go to schedule or cancel: call_at appends {slot, ADD, when} to the
 * op log and TimerHandle.cancel appends {slot, REMOVE}; the next
 * glEngineExpireTimers applies the whole log at once. That keeps call_later at zero
 * C->Go crossings (one would cost ~57 ns) and cancel at O(log n) in Go,
 * where asyncio leaves cancelled timers in its heap until they surface.
 * The slot table maps the slots Go reports back to the TimerHandle objects,
 * which Go never sees. */
#include "goloop.h"
#include <math.h>

static int ensure_slots(gl_loop *loop)
{
    if (loop->ntslots < loop->tslots_cap) {
        return 0;
    }
    int32_t ncap = loop->tslots_cap ? loop->tslots_cap * 2 : 256;
    PyObject **ns = PyMem_Realloc(loop->tslots, ncap * sizeof(PyObject *));
    if (ns == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->tslots = ns;
    int32_t *nf = PyMem_Realloc(loop->tfree, ncap * sizeof(int32_t));
    if (nf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->tfree = nf;
    loop->tslots_cap = ncap;
    return 0;
}

static int32_t slot_alloc(gl_loop *loop)
{
    if (loop->ntfree > 0) {
        return loop->tfree[--loop->ntfree];
    }
    if (ensure_slots(loop) < 0) {
        return -1;
    }
    loop->tslots[loop->ntslots] = NULL;
    return loop->ntslots++;
}

static void slot_release(gl_loop *loop, int32_t slot)
{
    loop->tslots[slot] = NULL;
    loop->tfree[loop->ntfree++] = slot;
}

static int push_op(gl_loop *loop, int32_t slot, int32_t kind, double when)
{
    if (loop->nops == loop->ops_cap) {
        int32_t ncap = loop->ops_cap ? loop->ops_cap * 2 : 256;
        gl_timer_op *n = PyMem_Realloc(loop->ops, ncap * sizeof(gl_timer_op));
        if (n == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        loop->ops = n;
        loop->ops_cap = ncap;
    }
    gl_timer_op *op = &loop->ops[loop->nops++];
    op->slot = slot;
    op->kind = kind;
    op->when = when;
    return 0;
}

int gl_timer_schedule(gl_loop *loop, PyObject *timer, double when)
{
    int32_t slot = slot_alloc(loop);
    if (slot < 0) {
        return -1;
    }
    if (push_op(loop, slot, GL_TIMER_ADD, when) < 0) {
        slot_release(loop, slot);
        return -1;
    }
    loop->tslots[slot] = Py_NewRef(timer);
    GL_TIMER_SLOT(timer) = slot + 1;
    gl_handle_set_scheduled(timer, 1);
    if (when < loop->ops_min_when) {
        loop->ops_min_when = when;
    }
    return 0;
}

int gl_timer_cancelled(gl_loop *loop, PyObject *timer)
{
    if (!PyObject_TypeCheck(timer, gl_TimerHandleType)) {
        return 0;
    }
    Py_ssize_t slot1 = GL_TIMER_SLOT(timer);
    if (slot1 <= 0 || slot1 > loop->ntslots || loop->tslots[slot1 - 1] != timer) {
        return 0;
    }
    int32_t slot = (int32_t)(slot1 - 1);
    if (push_op(loop, slot, GL_TIMER_REMOVE, 0.0) < 0) {
        return -1;
    }
    GL_TIMER_SLOT(timer) = 0;
    slot_release(loop, slot);
    gl_handle_set_scheduled(timer, 0);
    gl_handle_release(timer);
    return 0;
}

/* Move timers that Go reports expired onto the ready queue, in Go's
 * (deadline, FIFO) order, dropping cancelled ones as asyncio does. */
int gl_timer_expire(gl_loop *loop, const int32_t *slots, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        int32_t slot = slots[i];
        if (slot < 0 || slot >= loop->ntslots) {
            continue;
        }
        PyObject *timer = loop->tslots[slot];
        if (timer == NULL) {
            continue;
        }
        slot_release(loop, slot);
        GL_TIMER_SLOT(timer) = 0;
        gl_handle_set_scheduled(timer, 0);
        if (gl_handle_is_cancelled(timer)) {
            gl_handle_release(timer);
        } else if (gl_ring_push(&loop->ready, timer) < 0) {
            return -1;
        }
    }
    return 0;
}

void gl_timers_clear(gl_loop *loop)
{
    for (int32_t i = 0; i < loop->ntslots; i++) {
        PyObject *timer = loop->tslots[i];
        if (timer != NULL) {
            loop->tslots[i] = NULL;
            GL_TIMER_SLOT(timer) = 0;
            gl_handle_release(timer);
        }
    }
    loop->ntslots = 0;
    loop->ntfree = 0;
    loop->nops = 0;
    loop->ops_min_when = INFINITY;
    loop->go_has_deadline = 0;
}

PyObject *gl_timers_to_list(gl_loop *loop)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (int32_t i = 0; i < loop->ntslots; i++) {
        if (loop->tslots[i] != NULL && PyList_Append(list, loop->tslots[i]) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

void gl_timers_free(gl_loop *loop)
{
    gl_timers_clear(loop);
    PyMem_Free(loop->tslots);
    PyMem_Free(loop->tfree);
    PyMem_Free(loop->ops);
    PyMem_Free(loop->expired);
    loop->tslots = NULL;
    loop->tfree = NULL;
    loop->ops = NULL;
    loop->expired = NULL;
    loop->tslots_cap = loop->ops_cap = loop->expired_cap = 0;
}
