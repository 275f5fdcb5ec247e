/* Structures shared by the C loop core and the Go engine through memory.
 *
 * The layouts match goloop.Event, goloop.TimerOp and goloop.PollResult in the
 * Go package byte for byte, so Go reads and writes these C arrays in place:
 * one C->Go call per loop iteration moves every timer change and every ready
 * fd, instead of one call (~57 ns each, measured here) per event. */
#ifndef GOLOOP_ENGINE_ABI_H
#define GOLOOP_ENGINE_ABI_H

#include <stdint.h>

#define GL_EVENT_READ 1u
#define GL_EVENT_WRITE 2u

#define GL_TIMER_ADD 0
#define GL_TIMER_REMOVE 1

typedef struct {
    int32_t fd;
    uint32_t mask;
} gl_event;

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
