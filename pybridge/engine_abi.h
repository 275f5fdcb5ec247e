/* Structures shared by the C loop core and the Go engine through memory.
 *
 * The layouts match goloop.TimerOp and goloop.PollResult in the Go package
 * byte for byte, so Go reads and writes these C arrays in place: one C->Go
 * call moves every timer change since the last one and returns every
 * expired timer, instead of one call (~50 ns each, measured here) per
 * timer. GL_EVENT_* are the interest bits io.c and epoll.c pass around
 * (C only: the Go engine registers no fds). */
#ifndef GOLOOP_ENGINE_ABI_H
#define GOLOOP_ENGINE_ABI_H

#include <stdint.h>

#define GL_EVENT_READ 1u
#define GL_EVENT_WRITE 2u
#define GL_EVENT_EDGE 4u /* edge-triggered registration (EPOLLET) */

#define GL_TIMER_ADD 0
#define GL_TIMER_REMOVE 1

typedef struct {
    int32_t slot;
    int32_t kind;
    double when;
} gl_timer_op;

typedef struct {
    int32_t nevents;
    int32_t nexpired;
    int32_t more;
    int32_t has_deadline;
    double next_deadline;
    int32_t err;
    int32_t pad;
} gl_poll_result;

#endif
