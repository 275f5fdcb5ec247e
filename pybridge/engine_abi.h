/* Values shared by the C loop core and the Go engine.
 *
 * GL_EVENT_* are goloop.EventRead/EventWrite/EventEdge, the interest bits
 * of a registration. */
#ifndef GOLOOP_ENGINE_ABI_H
#define GOLOOP_ENGINE_ABI_H

#include <stdint.h>

#define GL_EVENT_READ 1u
#define GL_EVENT_WRITE 2u
#define GL_EVENT_EDGE 4u /* edge-triggered registration (EPOLLET) */

#endif
