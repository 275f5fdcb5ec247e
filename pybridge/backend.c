/* The engine behind a loop: the Go engine, or the C fallback.
 *
 * A loop normally drives the Go engine (engine.go). In a child forked
 * after this process started the Go runtime, Go cannot run (its threads
 * did not survive fork; any goroutine or GC activity hangs), so loops
 * created there use the C fallback engine (fallback.c), which implements
 * the same contract with epoll and a binary heap. Loops inherited from the
 * parent are Go-backed and refuse to run in the child. */
#include "goloop.h"
#include "_cgo_export.h"
#include <errno.h>

int gl_engine_open(gl_loop *loop)
{
    int wakefd = -1, epfd = -1;
    if (gl_forked) {
        loop->fallback = gl_fallback_open(&wakefd, &epfd);
        if (loop->fallback == NULL) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        loop->stats.c_engine = 1;
    } else {
        int id = glEngineNew(&wakefd, &epfd);
        if (id < 0) {
            errno = -id;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        loop->engine = id;
    }
    loop->wakefd = wakefd;
    loop->epfd = epfd;
    return 0;
}

int gl_engine_usable(gl_loop *loop)
{
    if (loop->fallback == NULL && gl_forked) {
        return gl_check_not_forked();
    }
    if (loop->fallback == NULL && loop->engine < 0) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

void gl_engine_close(gl_loop *loop)
{
    gl_resolve_close(loop); /* first: a late lookup must not write to a closed eventfd */
    if (loop->fallback != NULL) {
        gl_fallback_close(loop->fallback);
        loop->fallback = NULL;
    } else if (loop->engine >= 0 && !gl_forked) {
        glEngineFree(loop->engine);
    }
    /* A Go engine inherited through fork is leaked, never entered. */
    gl_epoll_forget(loop);
    loop->engine = -1;
    loop->wakefd = -1;
    loop->epfd = -1;
}

/* Both engines: epoll_ctl from C (epoll.c says why not through Go). */
int gl_engine_set_interest(gl_loop *loop, int fd, uint32_t mask)
{
    /* An epoll set inherited through fork is shared with the parent. */
    if (loop->epfd < 0 || (loop->fallback == NULL && (gl_forked || loop->engine < 0))) {
        return EBADF;
    }
    return gl_epoll_set_interest(loop, fd, mask);
}
