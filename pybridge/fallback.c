/* The C fallback engine, for processes forked after Go started.
 *
 * Same contract as goloop.Engine (goloop/engine_linux.go) as the loop uses
 * it: an epoll set with an eventfd wake-up registered (registration and
 * the wait are epoll.c's and poll.c's, shared by both engines), and a timer heap keyed by (deadline,
 * insertion order) with O(log n) removal by slot. It exists only because
 * the Go runtime cannot run in such a child; everywhere else the Go engine
 * is used. */
#include "goloop.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct {
    double when;
    uint64_t seq;
    int32_t slot;
} fb_timer;

struct gl_fallback {
    int epfd;
    int evfd;
    fb_timer *heap;
    int32_t n, cap;
    int32_t *pos; /* slot -> heap index + 1, 0 when absent */
    int32_t poscap;
    uint64_t seq;
    double last_end;
};

gl_fallback *gl_fallback_open(int *wakefd, int *epfd)
{
    gl_fallback *fb = calloc(1, sizeof(*fb));
    if (fb == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    fb->epfd = epoll_create1(EPOLL_CLOEXEC);
    fb->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fb->evfd};
    if (fb->epfd < 0 || fb->evfd < 0 || epoll_ctl(fb->epfd, EPOLL_CTL_ADD, fb->evfd, &ev) < 0) {
        int err = errno;
        gl_fallback_close(fb);
        errno = err;
        return NULL;
    }
    *wakefd = fb->evfd;
    *epfd = fb->epfd;
    return fb;
}

void gl_fallback_close(gl_fallback *fb)
{
    if (fb->epfd >= 0) {
        close(fb->epfd);
    }
    if (fb->evfd >= 0) {
        close(fb->evfd);
    }
    free(fb->heap);
    free(fb->pos);
    free(fb);
}

/* ---- indexed binary heap ---- */

static int before(const fb_timer *a, const fb_timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(gl_fallback *fb, int32_t i, fb_timer t)
{
    fb->heap[i] = t;
    fb->pos[t.slot] = i + 1;
}

static void sift_up(gl_fallback *fb, int32_t i)
{
    fb_timer t = fb->heap[i];
    while (i > 0) {
        int32_t parent = (i - 1) / 2;
        if (!before(&t, &fb->heap[parent])) {
            break;
        }
        place(fb, i, fb->heap[parent]);
        i = parent;
    }
    place(fb, i, t);
}

static void sift_down(gl_fallback *fb, int32_t i)
{
    fb_timer t = fb->heap[i];
    for (;;) {
        int32_t child = 2 * i + 1;
        if (child >= fb->n) {
            break;
        }
        if (child + 1 < fb->n && before(&fb->heap[child + 1], &fb->heap[child])) {
            child++;
        }
        if (!before(&fb->heap[child], &t)) {
            break;
        }
        place(fb, i, fb->heap[child]);
        i = child;
    }
    place(fb, i, t);
}

static void remove_at(gl_fallback *fb, int32_t i)
{
    fb->pos[fb->heap[i].slot] = 0;
    fb->n--;
    if (i == fb->n) {
        return;
    }
    fb_timer last = fb->heap[fb->n];
    place(fb, i, last);
    sift_down(fb, i);
    sift_up(fb, fb->pos[last.slot] - 1);
}

static int grow(void **p, int32_t *cap, int32_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    int32_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        ncap *= 2;
    }
    void *n = realloc(*p, (size_t)ncap * size);
    if (n == NULL) {
        return -1;
    }
    *p = n;
    *cap = ncap;
    return 0;
}

static void timer_remove(gl_fallback *fb, int32_t slot)
{
    if (slot >= 0 && slot < fb->poscap && fb->pos[slot] > 0) {
        remove_at(fb, fb->pos[slot] - 1);
    }
}

static void timer_add(gl_fallback *fb, int32_t slot, double when)
{
    if (slot < 0) {
        return;
    }
    int32_t oldcap = fb->poscap;
    if (grow((void **)&fb->pos, &fb->poscap, slot + 1, sizeof(int32_t)) < 0 ||
        grow((void **)&fb->heap, &fb->cap, fb->n + 1, sizeof(fb_timer)) < 0) {
        return; /* out of memory: the timer is dropped rather than crash */
    }
    for (int32_t i = oldcap; i < fb->poscap; i++) {
        fb->pos[i] = 0;
    }
    timer_remove(fb, slot);
    fb_timer t = {.when = isnan(when) ? -INFINITY : when, .seq = fb->seq++, .slot = slot};
    fb->heap[fb->n] = t;
    fb->pos[slot] = fb->n + 1;
    fb->n++;
    sift_up(fb, fb->n - 1);
}

/* ---- expiry ---- */

static void fill_deadline(gl_fallback *fb, gl_poll_result *res)
{
    res->has_deadline = fb->n > 0;
    res->next_deadline = fb->n > 0 ? fb->heap[0].when : 0.0;
}

void gl_fallback_pop_expired(gl_fallback *fb, int32_t *expired, int32_t cap,
                             gl_poll_result *res)
{
    int32_t k = 0;
    while (fb->n > 0 && fb->heap[0].when < fb->last_end && k < cap) {
        expired[k++] = fb->heap[0].slot;
        remove_at(fb, 0);
    }
    res->nexpired = k;
    res->more = fb->n > 0 && fb->heap[0].when < fb->last_end;
    fill_deadline(fb, res);
}

void gl_fallback_expire_timers(gl_fallback *fb, const gl_timer_op *ops, int32_t nops,
                               double end, int32_t *expired, int32_t cap, gl_poll_result *res)
{
    for (int32_t i = 0; i < nops; i++) {
        if (ops[i].kind == GL_TIMER_ADD) {
            timer_add(fb, ops[i].slot, ops[i].when);
        } else {
            timer_remove(fb, ops[i].slot);
        }
    }
    memset(res, 0, sizeof(*res));
    fb->last_end = end;
    gl_fallback_pop_expired(fb, expired, cap, res);
}
