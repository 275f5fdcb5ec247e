/* The C transports' write buffer and flow-control thresholds, shared by
 * the socket stream transport (stream.c) and the write-pipe transport
 * (pipe.c).
 *
 * Unsent bytes sit in one contiguous buffer, so a flush is one write(2)
 * or send(2) of everything buffered. The thresholds are the Python ints
 * of asyncio's _FlowControlMixin (`_high_water`, `_low_water`), compared
 * here so that asyncio's _maybe_pause_protocol/_maybe_resume_protocol
 * (which call the protocol, with asyncio's error handling) are called
 * only when a threshold is crossed. */
#include "goloop.h"

#define GL_WBUF_MIN (16 * 1024)
#define GL_WBUF_KEEP (64 * 1024) /* an idle transport keeps at most this */

int gl_wbuf_append(gl_wbuf *b, const char *p, Py_ssize_t n)
{
    if (b->start + b->len + n > b->cap) {
        if (b->start > 0 && b->start >= b->len) {
            memmove(b->buf, b->buf + b->start, (size_t)b->len);
            b->start = 0;
        }
        Py_ssize_t need = b->start + b->len + n;
        if (need > b->cap) {
            Py_ssize_t ncap = b->cap ? b->cap : GL_WBUF_MIN;
            while (ncap < need) {
                ncap *= 2;
            }
            char *nb = PyMem_Realloc(b->buf, (size_t)ncap);
            if (nb == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            b->buf = nb;
            b->cap = ncap;
        }
    }
    memcpy(b->buf + b->start + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

void gl_wbuf_consume(gl_wbuf *b, Py_ssize_t n)
{
    b->start += n;
    b->len -= n;
    if (b->len == 0) {
        b->start = 0;
        if (b->cap > GL_WBUF_KEEP) {
            gl_wbuf_free(b);
        }
    }
}

void gl_wbuf_free(gl_wbuf *b)
{
    PyMem_Free(b->buf);
    b->buf = NULL;
    b->start = b->len = b->cap = 0;
}

/* A water mark as a size; -1 for a missing or odd one, which leaves the
 * decision to asyncio's method (it raises what stock raises). */
static Py_ssize_t water(PyObject *mark)
{
    Py_ssize_t v = mark != NULL && PyLong_CheckExact(mark) ? PyLong_AsSsize_t(mark) : -1;
    if (v < 0) {
        PyErr_Clear();
    }
    return v;
}

int gl_flow_over_high(gl_flow_control *fc, Py_ssize_t size)
{
    Py_ssize_t high = water(fc->high_water);
    return !((high >= 0 && size <= high) || fc->protocol_paused == Py_True);
}

int gl_flow_under_low(gl_flow_control *fc, Py_ssize_t size)
{
    Py_ssize_t low = water(fc->low_water);
    return fc->protocol_paused == Py_True && (low < 0 || size <= low);
}
