/* The interest bits of an fd registration, as io.c, epoll.c and watch.c
 * pass them around. C only: the Go engine registers no fds and, since the
 * timers moved to timers.c, shares no structures with C either. */
#ifndef GOLOOP_ENGINE_ABI_H
#define GOLOOP_ENGINE_ABI_H

#include <stdint.h>

#define GL_EVENT_READ 1u
#define GL_EVENT_WRITE 2u
#define GL_EVENT_EDGE 4u /* edge-triggered registration (EPOLLET) */

#endif
