/* Waiting for I/O: epoll_wait on the engine's epoll fd, in C.
 *
 * The engine creates the epoll set and owns the timers; fds are registered
 * from C (epoll.c) and the blocking wait happens here, with the GIL
 * released and no Go frame on the stack. Blocking inside a Go call made the Go scheduler hand
 * its P off and take it back around every wait: strace of a 1 KiB echo
 * server showed ~1.7 futex, ~1 nanosleep (sysmon) and ~1 clock_gettime
 * syscall per epoll_wait, and 30% more system CPU per request than the
 * stock asyncio loop. Here a wait is exactly one epoll_wait. */
#include "goloop.h"
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

static int grow_buffer(gl_loop *loop)
{
    int ncap = loop->ebuf_cap ? loop->ebuf_cap * 2 : 256;
    struct epoll_event *n = PyMem_Realloc(loop->ebuf, ncap * sizeof(struct epoll_event));
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->ebuf = n;
    loop->ebuf_cap = ncap;
    return 0;
}

static void drain_wakeup(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) > 0) {
    }
}

/* Readiness as selectors.EpollSelector reports it: any bit other than
 * EPOLLIN means writable, any other than EPOLLOUT readable (so EPOLLERR
 * and EPOLLHUP wake both directions). */
static uint32_t readiness(uint32_t ev)
{
    return ((ev & ~(uint32_t)EPOLLOUT) ? GL_EVENT_READ : 0) |
           ((ev & ~(uint32_t)EPOLLIN) ? GL_EVENT_WRITE : 0);
}

int gl_poll_io(gl_loop *loop, int timeout_ms)
{
    if (loop->ebuf == NULL && grow_buffer(loop) < 0) {
        return -1;
    }
    if (loop->resolver != NULL) {
        gl_resolve_flush(loop); /* the lookups this iteration began, into Go at once */
    }
    int n, err;
    if (timeout_ms != 0) {
        loop->polling = 1;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(loop->epfd, loop->ebuf, loop->ebuf_cap, timeout_ms);
        err = errno;
        Py_END_ALLOW_THREADS
        loop->polling = 0;
    } else {
        n = epoll_wait(loop->epfd, loop->ebuf, loop->ebuf_cap, 0);
        err = errno;
    }
    if (n < 0) {
        if (err == EINTR) {
            return 0; /* signal handlers run right after, as for select() */
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int fd = loop->ebuf[i].data.fd;
        if (fd == loop->wakefd) {
            drain_wakeup(fd);
            if (loop->resolver != NULL) {
                gl_resolve_drain(loop); /* lookups finished in Go wake it too */
            }
        } else if (gl_io_dispatch_fd(loop, fd, readiness(loop->ebuf[i].events)) < 0) {
            return -1;
        }
    }
    return n == loop->ebuf_cap ? grow_buffer(loop) : 0;
}
