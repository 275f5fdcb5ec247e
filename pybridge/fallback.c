/* The C fallback engine, for processes forked after Go started.
 *
 * Same contract as goloop.Engine (goloop/engine_linux.go) as the loop uses
 * it: an epoll set with an eventfd wake-up registered (registration and
 * the wait are epoll.c's and poll.c's, and the timers timers.c's, shared
 * by both engines). It exists only because the Go runtime cannot run in
 * such a child; everywhere else the Go engine is used. */
#include "goloop.h"
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct gl_fallback {
    int epfd;
    int evfd;
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
    free(fb);
}
