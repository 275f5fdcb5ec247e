/* Timers: the slot table, the schedule log and the heap, all in C.
 *
 * call_at appends {when, slot} to the log (an array store: the cheapest
 * schedule), and the loop moves entries from the log's head into a 4-ary
 * heap at most GL_TIMER_MIGRATE per iteration, so no iteration pays for a
 * whole burst at once. When a timer in the log may be due (tlog_min, a
 * lower bound of the log's deadlines, is before the cut-off), one pass over
 * the log takes the due entries out and a stable radix sort orders them:
 * a burst that is due as a whole is sorted in one go (~30-50 ns a timer
 * here) instead of being pushed into and popped out of a heap one by one
 * (~25 + ~190 ns a timer at 100k: a pop misses the cache at every level).
 *
 * Timers leave the log only in insertion order, so every heap entry is
 * older than every log entry: merging the heap's due entries with the
 * log's, the heap wins ties and equal deadlines fire first in, first out,
 * as in asyncio's heapq of TimerHandles.
 *
 * The heap used to be the Go engine's, fed by an op log applied in one C->Go
 * call per iteration; that call applied a whole burst at once (100k
 * call_at: ~29-55 ms in the first iteration after them, before any I/O
 * callback ran) and firing a burst cost ~1.9 us a timer against rloop's
 * ~0.2 (docs/architecture.md, "Timers", has the measurements).
 *
 * twhere[slot] says where a scheduled timer's entry is, so cancel() takes
 * it out at once: > 0 the heap index + 1 (O(log n) removal), < 0 the log
 * index + 1, negated (the entry is marked dead and dropped when the log is
 * next compacted or migrated). */
#include "goloop.h"
#include <math.h>
#include <string.h>

/* Log entries moved into the heap per iteration, at most: ~0.1-0.25 ms of
 * heap pushes here. */
#define GL_TIMER_MIGRATE 4096
/* Below this, due entries are sorted by insertion instead of radix. */
#define GL_TIMER_SMALL_SORT 32

static int grow_array(void **p, size_t size, int32_t ncap)
{
    void *n = PyMem_Realloc(*p, (size_t)ncap * size);
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *p = n;
    return 0;
}

static int ensure_slots(gl_loop *loop)
{
    if (loop->ntslots < loop->tslots_cap) {
        return 0;
    }
    int32_t ncap = loop->tslots_cap ? loop->tslots_cap * 2 : 256;
    if (grow_array((void **)&loop->tslots, sizeof(PyObject *), ncap) < 0 ||
        grow_array((void **)&loop->tfree, sizeof(int32_t), ncap) < 0 ||
        grow_array((void **)&loop->twhere, sizeof(int32_t), ncap) < 0) {
        return -1;
    }
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
    loop->twhere[loop->ntslots] = 0;
    return loop->ntslots++;
}

static void slot_release(gl_loop *loop, int32_t slot)
{
    loop->tslots[slot] = NULL;
    loop->twhere[slot] = 0;
    loop->tfree[loop->ntfree++] = slot;
}

/* ---- the heap: 4-ary (a shallower tree, fewer cache-missing levels per
 * pop), keyed by (when, seq); seq is the order entries left the log in,
 * which is the order they were scheduled in. ---- */

#define HEAP_ARITY 4

static inline int heap_before(const gl_theap_entry *a, const gl_theap_entry *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static inline void heap_place(gl_loop *loop, int32_t i, gl_theap_entry e)
{
    loop->theap[i] = e;
    loop->twhere[e.slot] = i + 1;
}

static void heap_up(gl_loop *loop, int32_t i)
{
    gl_theap_entry e = loop->theap[i];
    while (i > 0) {
        int32_t parent = (i - 1) / HEAP_ARITY;
        if (!heap_before(&e, &loop->theap[parent])) {
            break;
        }
        heap_place(loop, i, loop->theap[parent]);
        i = parent;
    }
    heap_place(loop, i, e);
}

static void heap_down(gl_loop *loop, int32_t i)
{
    gl_theap_entry e = loop->theap[i];
    int32_t n = loop->theap_len;
    for (;;) {
        int32_t first = i * HEAP_ARITY + 1;
        if (first >= n) {
            break;
        }
        int32_t best = first;
        int32_t last = first + HEAP_ARITY < n ? first + HEAP_ARITY : n;
        for (int32_t c = first + 1; c < last; c++) {
            if (heap_before(&loop->theap[c], &loop->theap[best])) {
                best = c;
            }
        }
        if (!heap_before(&loop->theap[best], &e)) {
            break;
        }
        heap_place(loop, i, loop->theap[best]);
        i = best;
    }
    heap_place(loop, i, e);
}

static void heap_remove_at(gl_loop *loop, int32_t i)
{
    int32_t last = --loop->theap_len;
    if (i == last) {
        return;
    }
    gl_theap_entry moved = loop->theap[last];
    heap_place(loop, i, moved);
    heap_down(loop, i);
    if (loop->theap[i].slot == moved.slot) {
        heap_up(loop, i); /* it did not go down: it may have to go up */
    }
}

static int heap_push(gl_loop *loop, double when, int32_t slot)
{
    if (loop->theap_len == loop->theap_cap) {
        int32_t ncap = loop->theap_cap ? loop->theap_cap * 2 : 256;
        if (grow_array((void **)&loop->theap, sizeof(gl_theap_entry), ncap) < 0) {
            return -1;
        }
        loop->theap_cap = ncap;
    }
    int32_t i = loop->theap_len++;
    loop->theap[i] = (gl_theap_entry){.when = when, .seq = loop->theap_seq++, .slot = slot};
    heap_up(loop, i);
    return 0;
}

/* ---- the log ---- */

/* Drop dead entries and the migrated head, keeping order; recomputes the
 * exact minimum. */
static void log_compact(gl_loop *loop)
{
    int32_t w = 0;
    double min = INFINITY;
    for (int32_t i = loop->tlog_head; i < loop->tlog_len; i++) {
        gl_tlog_entry e = loop->tlog[i];
        if (e.slot < 0) {
            continue;
        }
        loop->tlog[w] = e;
        loop->twhere[e.slot] = -(w + 1);
        w++;
        if (e.when < min) {
            min = e.when;
        }
    }
    loop->tlog_head = 0;
    loop->tlog_len = w;
    loop->tlog_dead = 0;
    loop->tlog_min = min;
}

static int log_append(gl_loop *loop, double when, int32_t slot)
{
    if (loop->tlog_len == loop->tlog_cap) {
        /* Reclaim first when at least half is dead or migrated: a loop
         * that schedules and cancels (timeouts) without iterating would
         * otherwise grow the log by every timer it ever made. */
        int32_t unused = loop->tlog_head + loop->tlog_dead;
        if (unused > 0 && unused >= loop->tlog_len / 2) {
            log_compact(loop);
        } else {
            int32_t ncap = loop->tlog_cap ? loop->tlog_cap * 2 : 256;
            if (grow_array((void **)&loop->tlog, sizeof(gl_tlog_entry), ncap) < 0) {
                return -1;
            }
            loop->tlog_cap = ncap;
        }
    }
    int32_t i = loop->tlog_len++;
    loop->tlog[i] = (gl_tlog_entry){.when = when, .slot = slot, .seq = loop->tlog_seq++};
    loop->twhere[slot] = -(i + 1);
    if (when < loop->tlog_min) {
        loop->tlog_min = when;
    }
    return 0;
}

int gl_timer_schedule(gl_loop *loop, PyObject *timer, double when)
{
    int32_t slot = slot_alloc(loop);
    if (slot < 0) {
        return -1;
    }
    /* asyncio pops a NaN handle as soon as it reaches the heap's top; one
     * that never compared as due would hold back every later timer. */
    if (isnan(when)) {
        when = -INFINITY;
    }
    if (log_append(loop, when, slot) < 0) {
        slot_release(loop, slot);
        return -1;
    }
    loop->tslots[slot] = Py_NewRef(timer);
    GL_TIMER_SLOT(timer) = slot + 1;
    gl_handle_set_scheduled(timer, 1);
    return 0;
}

/* Take a slot's entry out of the log or the heap. */
static void unlink_entry(gl_loop *loop, int32_t slot)
{
    int32_t w = loop->twhere[slot];
    if (w > 0) {
        heap_remove_at(loop, w - 1);
    } else if (w < 0) {
        loop->tlog[-w - 1].slot = -1;
        loop->tlog_dead++;
    }
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
    unlink_entry(loop, slot);
    GL_TIMER_SLOT(timer) = 0;
    slot_release(loop, slot);
    gl_handle_set_scheduled(timer, 0);
    gl_handle_release(timer);
    return 0;
}

/* The earliest deadline a timer may have (the log's is a lower bound: a
 * cancelled or migrated entry can make it early, which costs one pass over
 * the log, never a late timer); INFINITY with none. */
double gl_timer_earliest(gl_loop *loop)
{
    double earliest = loop->tlog_min;
    if (loop->theap_len > 0 && loop->theap[0].when < earliest) {
        earliest = loop->theap[0].when;
    }
    return earliest;
}

/* ---- sorting the log's due entries (stable: equal deadlines keep the
 * order they were scheduled in) ---- */

/* The bits of a double as an unsigned key with the same order. */
static inline uint64_t when_key(double when)
{
    uint64_t u;
    memcpy(&u, &when, sizeof(u));
    return (u >> 63) ? ~u : u | 0x8000000000000000ull;
}

static void insertion_sort(gl_tdue_entry *a, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        gl_tdue_entry e = a[i];
        int32_t j = i;
        while (j > 0 && a[j - 1].when > e.when) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = e;
    }
}

/* LSD radix sort, 8 bits a pass, skipping the bytes every key shares (the
 * deadlines of a burst share their sign, exponent and high mantissa).
 * tmp holds n entries. Returns the sorted array: a or tmp. */
static gl_tdue_entry *radix_sort(gl_tdue_entry *a, gl_tdue_entry *tmp, int32_t n)
{
    static uint32_t counts[8][256];
    memset(counts, 0, sizeof(counts));
    for (int32_t i = 0; i < n; i++) {
        uint64_t k = when_key(a[i].when);
        for (int b = 0; b < 8; b++) {
            counts[b][(k >> (8 * b)) & 0xff]++;
        }
    }
    for (int b = 0; b < 8; b++) {
        uint64_t first = (when_key(a[0].when) >> (8 * b)) & 0xff;
        if (counts[b][first] == (uint32_t)n) {
            continue; /* every key has this byte */
        }
        uint32_t sum = 0;
        for (int d = 0; d < 256; d++) {
            uint32_t c = counts[b][d];
            counts[b][d] = sum;
            sum += c;
        }
        for (int32_t i = 0; i < n; i++) {
            uint32_t d = (uint32_t)(when_key(a[i].when) >> (8 * b)) & 0xff;
            tmp[counts[b][d]++] = a[i];
        }
        gl_tdue_entry *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

static int ensure_scratch(gl_loop *loop, int32_t n)
{
    if (n <= loop->tscratch_cap) {
        return 0;
    }
    int32_t ncap = loop->tscratch_cap ? loop->tscratch_cap : 256;
    while (ncap < n) {
        ncap *= 2;
    }
    /* two halves: the due entries and the radix sort's other buffer */
    PyMem_Free(loop->tscratch);
    loop->tscratch = PyMem_Malloc((size_t)ncap * 2 * sizeof(gl_tdue_entry));
    if (loop->tscratch == NULL) {
        loop->tscratch_cap = 0;
        PyErr_NoMemory();
        return -1;
    }
    loop->tscratch_cap = ncap;
    return 0;
}

/* Whether a log entry is due: before end, and scheduled before cutoff
 * (the tlog_seq when the iteration began: timers scheduled by the
 * callbacks run ahead of them wait for the next iteration, as in stock
 * asyncio, whose iteration takes its due timers before running any). */
static inline int log_due(const gl_tlog_entry *e, double end, uint32_t cutoff)
{
    return e->slot >= 0 && e->when < end && (int32_t)(e->seq - cutoff) < 0;
}

/* How many log entries are due before end and scheduled before cutoff. */
static int32_t count_due_in_log(gl_loop *loop, double end, uint32_t cutoff)
{
    int32_t ndue = 0;
    for (int32_t i = loop->tlog_head; i < loop->tlog_len; i++) {
        ndue += log_due(&loop->tlog[i], end, cutoff);
    }
    return ndue;
}

/* How many heap entries are due before end (the heap holds no timer
 * scheduled since the iteration began): a walk down the subtrees whose
 * roots are due. */
static int32_t count_due_in_heap(gl_loop *loop, int32_t i, double end)
{
    if (i >= loop->theap_len || !(loop->theap[i].when < end)) {
        return 0;
    }
    int32_t n = 1;
    for (int32_t c = i * HEAP_ARITY + 1; c <= i * HEAP_ARITY + HEAP_ARITY; c++) {
        n += count_due_in_heap(loop, c, end);
    }
    return n;
}

static int ensure_fired(gl_loop *loop, int32_t n)
{
    int32_t need = loop->ntfired + n;
    if (need <= loop->tfired_cap) {
        return 0;
    }
    int32_t ncap = loop->tfired_cap ? loop->tfired_cap : 256;
    while (ncap < need) {
        ncap *= 2;
    }
    if (grow_array((void **)&loop->tfired, sizeof(PyObject *), ncap) < 0) {
        return -1;
    }
    loop->tfired_cap = ncap;
    return 0;
}

/* The timer in slot leaves the timers for the tready ring (which takes
 * the slot's reference; room reserved): it is marked unscheduled at once,
 * as asyncio marks each due timer it moves to its ready queue before any
 * of them runs, and tfired takes a reference too (room reserved), so that
 * the timer is freed in the order it was taken, not the order it runs. */
static PyObject *take_slot(gl_loop *loop, int32_t slot)
{
    PyObject *timer = loop->tslots[slot];
    slot_release(loop, slot);
    GL_TIMER_SLOT(timer) = 0;
    gl_handle_set_scheduled(timer, 0);
    loop->tfired[loop->ntfired++] = Py_NewRef(timer);
    return timer;
}

/* Take the ndue live entries due before end out of the log (compacting
 * what stays) into the scratch buffer (room reserved), sorted, their
 * timers taken (take_slot) in the order they were scheduled: the order
 * their handles, contexts and deadline floats were allocated in, so this
 * pass walks memory forward instead of jumping around it in deadline
 * order. */
static gl_tdue_entry *take_due_from_log(gl_loop *loop, double end, uint32_t cutoff,
                                        int32_t ndue)
{
    gl_tdue_entry *due = loop->tscratch;
    int32_t k = 0, w = 0;
    double min = INFINITY;
    int sorted = 1;
    for (int32_t i = loop->tlog_head; i < loop->tlog_len; i++) {
        gl_tlog_entry e = loop->tlog[i];
        if (e.slot < 0) {
            continue;
        }
        if (log_due(&e, end, cutoff)) {
            sorted &= k == 0 || due[k - 1].when <= e.when;
            due[k++] = (gl_tdue_entry){.when = e.when, .timer = take_slot(loop, e.slot)};
        } else {
            loop->tlog[w] = e;
            loop->twhere[e.slot] = -(w + 1);
            w++;
            if (e.when < min) {
                min = e.when;
            }
        }
    }
    loop->tlog_head = 0;
    loop->tlog_len = w;
    loop->tlog_dead = 0;
    loop->tlog_min = min;
    if (!sorted) {
        if (ndue <= GL_TIMER_SMALL_SORT) {
            insertion_sort(due, ndue);
        } else {
            due = radix_sort(due, loop->tscratch + loop->tscratch_cap, ndue);
        }
    }
    return due;
}

/* Move the timers due before end and scheduled before cutoff onto the
 * loop's tready ring, earliest first (equal deadlines in the order
 * scheduled), then move up to GL_TIMER_MIGRATE log entries into the heap
 * (only the log holds timers scheduled since the iteration began). Room
 * for every due timer is made first, so on failure (no memory) nothing
 * has changed. */
int gl_timer_expire(gl_loop *loop, double end, uint32_t cutoff)
{
    /* A batch still held (a callback ran the loop's _run_once while its
     * batch ran) is let go before the next is taken. */
    gl_timers_release_fired(loop);
    int32_t nlog = 0;
    if (loop->tlog_min < end) {
        nlog = count_due_in_log(loop, end, cutoff);
        if (nlog == 0) {
            log_compact(loop); /* the minimum was stale: make it exact */
        }
    }
    int32_t nheap = count_due_in_heap(loop, 0, end);
    if (nlog + nheap > 0 &&
        (ensure_scratch(loop, nlog) < 0 || ensure_fired(loop, nlog + nheap) < 0 ||
         gl_ring_reserve(&loop->tready, nlog + nheap) < 0)) {
        return -1;
    }
    gl_tdue_entry *due = nlog > 0 ? take_due_from_log(loop, end, cutoff, nlog) : NULL;
    int32_t i = 0;
    for (;;) {
        int heap_due = loop->theap_len > 0 && loop->theap[0].when < end;
        if (heap_due && (i == nlog || loop->theap[0].when <= due[i].when)) {
            int32_t slot = loop->theap[0].slot;
            heap_remove_at(loop, 0);
            gl_ring_push(&loop->tready, take_slot(loop, slot));
        } else if (i < nlog) {
            gl_ring_push(&loop->tready, due[i++].timer);
        } else {
            break;
        }
    }
    /* Bounded migration: the log's oldest live entries into the heap. */
    int32_t moved = 0;
    while (loop->tlog_head < loop->tlog_len && moved < GL_TIMER_MIGRATE) {
        gl_tlog_entry e = loop->tlog[loop->tlog_head++];
        if (e.slot < 0) {
            loop->tlog_dead--;
            continue;
        }
        if (heap_push(loop, e.when, e.slot) < 0) {
            loop->tlog_head--;
            return -1;
        }
        moved++;
    }
    if (loop->tlog_head == loop->tlog_len) {
        loop->tlog_head = loop->tlog_len = loop->tlog_dead = 0;
        loop->tlog_min = INFINITY;
    }
    return 0;
}

/* A fired timer from the batch tfired holds has run, or was skipped as
 * cancelled. One nobody else holds (the loop's two references, no weak
 * reference) lets go of its callback, arguments and context now, as
 * stock drops the handle before the next callback runs, and its shell
 * waits for gl_timers_release_fired. */
void gl_timer_release_run(PyObject *timer)
{
    if (Py_REFCNT(timer) == 2 && !gl_handle_weakly_referenced(timer)) {
        gl_handle_drop_refs(timer);
    }
    Py_DECREF(timer); /* tfired still holds it */
}

/* Let go of the batch's references in the order the timers were taken:
 * freeing 100k handles, their deadline floats and the pymalloc pool
 * headers in deadline order (random in memory) was ~20% of firing a
 * burst; walked in scheduling order, memory is walked forward. */
void gl_timers_release_fired(gl_loop *loop)
{
    int32_t n = loop->ntfired;
    if (n == 0) {
        return;
    }
    /* Releasing runs finalizers, which may run the loop's _run_once and so
     * fire another batch: the array is taken out while it is walked. */
    PyObject **fired = loop->tfired;
    int32_t cap = loop->tfired_cap;
    loop->tfired = NULL;
    loop->ntfired = loop->tfired_cap = 0;
    loop->tfired_gen++;
    for (int32_t k = 0; k < n; k++) {
        if (k + 8 < n) {
            gl_handle_prefetch(fired[k + 8]);
        }
        gl_handle_release(fired[k]);
    }
    if (loop->tfired == NULL) {
        loop->tfired = fired;
        loop->tfired_cap = cap;
    } else {
        PyMem_Free(fired);
    }
}

int gl_timer_pending_work(gl_loop *loop)
{
    return loop->tlog_len > loop->tlog_head;
}

void gl_timers_clear(gl_loop *loop)
{
    gl_timers_release_fired(loop);
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
    loop->tlog_head = loop->tlog_len = loop->tlog_dead = 0;
    loop->tlog_min = INFINITY;
    loop->theap_len = 0;
    loop->theap_seq = 0;
    gl_ring_clear(&loop->tready);
}

/* Free the buffers a burst grew (the sort scratch; the log and heap when
 * empty), once the loop is idle (loop.c: trim_after_burst). */
void gl_timers_trim(gl_loop *loop)
{
    PyMem_Free(loop->tscratch);
    loop->tscratch = NULL;
    loop->tscratch_cap = 0;
    if (loop->tlog_len == 0 && loop->tlog_cap > GL_TIMER_MIGRATE) {
        PyMem_Free(loop->tlog);
        loop->tlog = NULL;
        loop->tlog_cap = 0;
    }
    if (loop->theap_len == 0 && loop->theap_cap > GL_TIMER_MIGRATE) {
        PyMem_Free(loop->theap);
        loop->theap = NULL;
        loop->theap_cap = 0;
    }
    if (loop->ntfired == 0) {
        PyMem_Free(loop->tfired);
        loop->tfired = NULL;
        loop->tfired_cap = 0;
    }
    gl_ring_shrink(&loop->tready);
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
    PyMem_Free(loop->twhere);
    PyMem_Free(loop->tlog);
    PyMem_Free(loop->theap);
    PyMem_Free(loop->tscratch);
    PyMem_Free(loop->tfired);
    PyMem_Free(loop->tready.buf);
    loop->tready.buf = NULL;
    loop->tready.cap = 0;
    loop->tslots = NULL;
    loop->tfree = NULL;
    loop->twhere = NULL;
    loop->tlog = NULL;
    loop->theap = NULL;
    loop->tscratch = NULL;
    loop->tfired = NULL;
    loop->tslots_cap = loop->tlog_cap = loop->theap_cap = loop->tscratch_cap = 0;
    loop->tfired_cap = 0;
}
