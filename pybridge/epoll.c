/* epoll registration (epoll_ctl), in C for both engines.
 *
 * The Go engine creates the epoll set and its eventfd and keeps the timer
 * heap, but interest changes are epoll_ctl calls made here, as the wait is
 * (poll.c). Through Go each one cost far more than the ~57 ns of a C->Go
 * call made back to back: a server changes interest when a connection
 * starts reading and when it closes, tens of microseconds apart, and by
 * then sysmon has retaken the P the thread left in syscall state while it
 * ran Python, so each crossing takes Go's slow re-entry path and keeps
 * sysmon polling (nanosleep and futex wake-ups on the loop's CPU).
 * Measured here: an add_reader/remove_reader pair 50 us apart cost 3.1 us
 * more of CPU through Go than here, and a server answering one 1 KiB
 * request per new connection spent 42.2 us of CPU per connection with the
 * registrations in Go, 35.5 us with them here (uvloop 31.3; `python
 * benchmarks/net/run_echo.py --transports churn --modes protocol`).
 *
 * The registered state per fd is tracked so that the first try is the
 * right operation (ADD for a new fd, MOD for a known one). ADD may find EEXIST (a registration of this very file we
 * lost track of; then MOD). MOD finding ENOENT is not retried as ADD:
 * the kernel dropped the registration when its file was closed, so the
 * fd number may now be another socket's, and an ADD would hand that
 * socket's events to the closed one's callbacks. The error goes up, and
 * the caller forgets the registration, as selectors' modify does. */
#include "goloop.h"
#include <errno.h>
#include <sys/epoll.h>

static int track(gl_loop *loop, int fd, int registered)
{
    if (fd >= loop->epregs_cap) {
        if (!registered) {
            return 0;
        }
        int ncap = loop->epregs_cap ? loop->epregs_cap : 64;
        while (ncap <= fd) {
            ncap *= 2;
        }
        unsigned char *n = PyMem_Realloc(loop->epregs, (size_t)ncap);
        if (n == NULL) {
            return ENOMEM;
        }
        memset(n + loop->epregs_cap, 0, (size_t)(ncap - loop->epregs_cap));
        loop->epregs = n;
        loop->epregs_cap = ncap;
    }
    loop->epregs[fd] = (unsigned char)registered;
    return 0;
}

static int is_registered(gl_loop *loop, int fd)
{
    return fd < loop->epregs_cap && loop->epregs[fd];
}

/* DEL even when we believe fd is not registered (a leaked registration
 * would report events for an fd nobody watches); ENOENT and EBADF mean the
 * fd was closed, which dropped the registration. */
static int unregister(gl_loop *loop, int fd)
{
    struct epoll_event ev = {0}; /* pre-2.6.9 kernels reject NULL */
    int r = epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, &ev);
    int err = r < 0 ? errno : 0;
    (void)track(loop, fd, 0);
    return (err == ENOENT || err == EBADF) ? 0 : err;
}

int gl_epoll_set_interest(gl_loop *loop, int fd, uint32_t mask)
{
    if (fd < 0) {
        return EBADF;
    }
    if (fd == loop->wakefd) {
        return EINVAL;
    }
    if ((mask & (GL_EVENT_READ | GL_EVENT_WRITE)) == 0) {
        return unregister(loop, fd);
    }
    struct epoll_event ev = {.data.fd = fd};
    ev.events = ((mask & GL_EVENT_READ) ? EPOLLIN : 0) | ((mask & GL_EVENT_WRITE) ? EPOLLOUT : 0) |
                ((mask & GL_EVENT_EDGE) ? EPOLLET : 0);
    int known = is_registered(loop, fd);
    int r = epoll_ctl(loop->epfd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (r < 0 && !known && errno == EEXIST) {
        r = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (r < 0) {
        int err = errno;
        (void)track(loop, fd, 0);
        return err;
    }
    return track(loop, fd, 1);
}

void gl_epoll_forget(gl_loop *loop)
{
    PyMem_Free(loop->epregs);
    loop->epregs = NULL;
    loop->epregs_cap = 0;
}
