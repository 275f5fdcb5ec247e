/* Shared declarations of the C loop core (module goloop._goloop). */
#ifndef GOLOOP_H
#define GOLOOP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <sys/socket.h>
#include "engine_abi.h"

struct epoll_event;

/* ---- ready queue: a ring of owned Handle references (readyq.c) ---- */
typedef struct {
    PyObject **buf;
    Py_ssize_t head;
    Py_ssize_t len;
    Py_ssize_t cap; /* power of two */
} gl_ring;

int gl_ring_push(gl_ring *r, PyObject *item); /* steals item, even on failure */
int gl_ring_reserve(gl_ring *r, Py_ssize_t n); /* room for n more pushes, or -1 */
PyObject *gl_ring_pop(gl_ring *r);            /* new reference, NULL if empty */
/* The item k places behind the head (borrowed), or NULL. */
static inline PyObject *gl_ring_peek(const gl_ring *r, Py_ssize_t k)
{
    return k < r->len ? r->buf[(r->head + k) & (r->cap - 1)] : NULL;
}
void gl_ring_clear(gl_ring *r);
void gl_ring_shrink(gl_ring *r); /* frees an empty ring's buffer */
PyObject *gl_ring_to_list(gl_ring *r);

/* ---- goloop.stats(): the loop's counters (loop.c reads them out) ----
 * Plain increments on paths that run anyway, and per-run (not
 * per-iteration) clock reads; fds, timers and transports are counted from
 * the loop's own tables when a snapshot is taken, not maintained here. */
typedef struct {
    unsigned long long iterations;
    unsigned long long callbacks; /* handles run (cancelled ones are skipped, not counted) */
    unsigned long long bytes_in, bytes_out;         /* stream and datagram transports */
    unsigned long long datagrams_in, datagrams_out; /* out: sent or buffered by sendto() */
    unsigned long long accepted; /* connections the native accept path took */
    double poll_time;   /* seconds in epoll_wait, its events' dispatch included */
    double run_time;    /* seconds inside finished runs of the loop, polls included */
    double run_started; /* gl_monotonic() when the current run began, 0 if none */
    double slow_threshold; /* > 0: callbacks taking this long are reported (loop.c) */
    int c_engine;          /* the loop runs on the C fallback engine (backend.c) */
} gl_stats;

/* ---- timer entries (timers.c) ---- */
typedef struct {
    double when;
    int32_t slot; /* -1: cancelled */
    uint32_t seq; /* the loop's tlog_seq when scheduled */
} gl_tlog_entry;

typedef struct {
    double when;
    uint64_t seq; /* ties: the order scheduled in */
    int32_t slot;
} gl_theap_entry;

typedef struct {
    double when;
    PyObject *timer; /* borrowed: tfired holds it */
} gl_tdue_entry;

/* ---- the loop core object (loop.c) ---- */
typedef struct gl_loop_s {
    PyObject_HEAD
    struct gl_loop_s *live_prev, *live_next; /* all live loops, see gcexpose.c */
    gl_ring ready;
    gl_ring tready; /* due timers of this iteration, run after ready (loop.c) */
    double ready_shrink_at; /* when an oversized empty ready ring is freed */
    int closed;
    int stopping;
    int debug;
    int engine;   /* Go engine id, -1 once closed or when fallback is used */
    struct gl_fallback *fallback; /* C engine in a child forked after Go started */
    int wakefd;   /* the engine's eventfd, written by call_soon_threadsafe */
    int polling;  /* set while the loop thread waits in Go without the GIL */
    Py_ssize_t threadsafe_queued; /* call_soon_threadsafe handles since run_ready */
    int running;  /* inside _run_until_stopped / _run_once */
    gl_stats stats;

    /* timers (timers.c): slot table of scheduled TimerHandles, the
     * schedule log and the heap */
    PyObject **tslots;
    int32_t ntslots, tslots_cap;
    int32_t *tfree;
    int32_t ntfree;
    int32_t *twhere; /* slot -> heap index + 1, -(log index + 1), or 0 */
    gl_tlog_entry *tlog;
    int32_t tlog_head, tlog_len, tlog_cap, tlog_dead;
    double tlog_min; /* a lower bound of the log's deadlines */
    uint32_t tlog_seq; /* counts timers scheduled (wraps) */
    gl_theap_entry *theap;
    int32_t theap_len, theap_cap;
    uint64_t theap_seq;
    gl_tdue_entry *tscratch; /* 2 * tscratch_cap entries, for sorting */
    int32_t tscratch_cap;
    /* the timers the last expiry fired, in the order taken (the log's in
     * the order scheduled), a reference each, released in that order once
     * they have run (timers.c: gl_timers_release_fired) */
    PyObject **tfired;
    int32_t ntfired, tfired_cap;
    uint32_t tfired_gen; /* counts releases of tfired */
    double clock_resolution; /* _clock_resolution: added to "now" for due timers */
    /* time() not the C core's (loop.c: time_overridden): timers fall due
     * by what it returns, as in BaseEventLoop._run_once */
    int time_shadowed;               /* an instance attribute, noticed as it is set */
    int time_type_overridden;        /* by the class, as of time_type_version */
    unsigned int time_type_version;  /* the class's tp_version_tag when last looked */

    /* fd watching (io.c) */
    PyObject **readers;
    PyObject **writers;
    PyObject **parked; /* weakref to the socket whose read interest stays in epoll (io.c) */
    PyObject **fileobjs; /* the object an fd was registered by, if not the int (io.c) */
    int fdcap;
    int nfds;        /* fds with any interest registered */
    int internal_fd; /* self-pipe fd not counted as user I/O, or -1 */
    int epfd;                /* the engine's epoll fd; poll.c waits on it */
    unsigned char *epregs;   /* fd -> registered in epfd (epoll.c) */
    int epregs_cap;
    struct epoll_event *ebuf; /* epoll_wait output, grown when it fills */
    int ebuf_cap;

    /* name resolution on goroutines (resolve.c) */
    struct gl_resolver *resolver; /* completion list, made on first lookup */
    PyObject *lookups;            /* request id -> future, loop thread only */
    unsigned long long lookup_seq;
} gl_loop;

extern PyTypeObject gl_LoopCoreType;

/* ---- asyncio.Handle / TimerHandle slots (handles.c) ---- */
typedef struct {
    Py_ssize_t callback, args, cancelled, loop, source_traceback, repr, context;
    Py_ssize_t when, scheduled;
    Py_ssize_t timer_slot; /* our C field in goloop's TimerHandle subclass */
} gl_handle_offsets;

extern gl_handle_offsets gl_off;
extern PyTypeObject *gl_HandleType;      /* asyncio.events.Handle */
extern PyTypeObject *gl_TimerHandleType; /* goloop subclass of asyncio.events.TimerHandle */

#define GL_SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))
#define GL_TIMER_SLOT(obj) (*(Py_ssize_t *)((char *)(obj) + gl_off.timer_slot))

/* Prefetch what running and freeing a handle touches, ahead of time, in
 * two steps: the handle's own lines (with the GC header in front of it),
 * then, once those have arrived, the objects it points to that are its
 * alone (the copied context, a timer's deadline float). The ready queue
 * holds a burst of timers in deadline order, which is random in memory:
 * without this every handle, context and float is a cache miss in turn. */
static inline void gl_handle_prefetch(PyObject *h)
{
    if (h != NULL) {
        __builtin_prefetch((char *)h - 16, 1);
        __builtin_prefetch((char *)h + 48, 1);
        __builtin_prefetch((char *)h + 112, 1);
    }
}
void gl_handle_prefetch_refs(PyObject *h);
int gl_handles_init(PyObject *module);
PyObject *gl_tuple_from(PyObject *const *items, Py_ssize_t n);
PyObject *gl_handle_new(gl_loop *loop, PyObject *callback, PyObject *args, PyObject *context);
PyObject *gl_handle_new_queued(gl_loop *loop, PyObject *callback, PyObject *args,
                               PyObject *context); /* untracked, maybe recycled */
PyObject *gl_timer_handle_new(gl_loop *loop, PyObject *when, PyObject *callback,
                              PyObject *args, PyObject *context);
int gl_handle_is_cancelled(PyObject *handle);
void gl_handle_untrack(PyObject *handle);
void gl_handle_untrack_args(PyObject *handle); /* its fresh argument tuple, if ours alone */
void gl_handle_release(PyObject *handle); /* DECREF, re-tracking if still shared */
int gl_handle_weakly_referenced(PyObject *handle);
void gl_handle_drop_refs(PyObject *handle); /* callback, args, context: of one only we hold */
/* How long burst leftovers (recycled handles, a grown ready ring) may sit
 * unused before an idle loop gives them back (handles.c, loop.c). */
#define GL_IDLE_TRIM_PERIOD 1.0 /* seconds */
double gl_handle_freelist_trim(double now); /* idle trim; next look or INFINITY */
void gl_handle_freelist_expect(Py_ssize_t n); /* n handles from other threads due */
void gl_handle_set_scheduled(PyObject *timer, int scheduled);
int gl_handle_run(gl_loop *loop, PyObject *handle);
int gl_report_callback_error(gl_loop *loop, PyObject *handle);
int gl_exiting_exception(void); /* SystemExit or KeyboardInterrupt pending */
/* var = the interned string s; false on failure (for && chains in inits) */
#define GL_INTERN(var, s) ((var = PyUnicode_InternFromString(s)) != NULL)
PyObject *gl_take_exception(void);
void gl_restore_exception(PyObject *exc); /* steals exc; sets it pending again */
void gl_chain_exception(PyObject *exc);   /* steals exc; the pending one's __context__ */
int gl_slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out); /* __slots__ member */

/* ---- native fd watchers (watch.c) ---- */
typedef int (*gl_watch_fn)(PyObject *owner, int write);
typedef struct {
    PyObject_HEAD
    PyObject *owner;   /* e.g. the transport */
    PyObject *context; /* copied at registration, as asyncio's reader Handle does */
    PyObject *loop;
    gl_watch_fn fn;
    char write;
    char cancelled;
    char edge; /* registered edge-triggered, nothing changed fd's interest since (io.c) */
} gl_watch;

extern PyTypeObject gl_WatchType;
#define GL_IS_WATCH(o) Py_IS_TYPE((o), &gl_WatchType)
PyObject *gl_watch_new(gl_loop *loop, PyObject *owner, gl_watch_fn fn, int write,
                       int with_context);
int gl_watch_run(gl_loop *loop, PyObject *watch);

/* ---- timers (timers.c) ---- */
int gl_timer_schedule(gl_loop *loop, PyObject *timer, double when);
int gl_timer_cancelled(gl_loop *loop, PyObject *timer);
int gl_timer_expire(gl_loop *loop, double end, uint32_t cutoff);
void gl_timer_release_run(PyObject *timer);
void gl_timers_release_fired(gl_loop *loop);
double gl_timer_earliest(gl_loop *loop);
int gl_timer_pending_work(gl_loop *loop);
void gl_timers_clear(gl_loop *loop);
void gl_timers_trim(gl_loop *loop);
PyObject *gl_timers_to_list(gl_loop *loop);
void gl_timers_free(gl_loop *loop);

/* ---- fd watching (io.c) ---- */
PyObject *gl_io_add(gl_loop *loop, int write, PyObject *const *args, Py_ssize_t nargs);
PyObject *gl_io_remove(gl_loop *loop, int write, PyObject *fileobj);
int gl_io_init(void);
PyObject *gl_io_set(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs);
PyObject *gl_io_registration(gl_loop *loop, PyObject *fd);
PyObject *gl_io_registrations(gl_loop *loop);
int gl_io_watch(gl_loop *loop, int fd, int write, PyObject *owner, gl_watch_fn fn,
                int with_context);
int gl_io_unwatch(gl_loop *loop, int fd, int write);
int gl_io_unwatch_owner(gl_loop *loop, int fd, int write, PyObject *owner);
int gl_io_park(gl_loop *loop, int fd, int write, PyObject *owner, PyObject *sockref);
int gl_io_watch_of(gl_loop *loop, int fd, int write, PyObject *sock, PyObject *owner,
                   gl_watch_fn fn, PyObject **sockref);
int gl_io_dispatch_fd(gl_loop *loop, int fd, uint32_t mask);
int gl_poll_io(gl_loop *loop, int timeout_ms); /* poll.c */
void gl_io_clear(gl_loop *loop);
void gl_io_free(gl_loop *loop);

/* ---- socket stream transport core (stream.c) ---- */
int gl_stream_init(PyObject *module);

/* sockaddr.c: addresses as the socket module shows them */
int gl_sockaddr_supported(int family); /* AF_INET, AF_INET6, AF_UNIX */
PyObject *gl_sockaddr_to_py(const struct sockaddr_storage *sa, socklen_t len);
PyObject *gl_socket_name(int fd, int peer); /* get{sock,peer}name; None on error */
extern PyTypeObject *gl_socket_type;                      /* socket.socket */
extern PyObject *gl_raw_family, *gl_raw_type, *gl_raw_proto; /* _socket.socket's */
long gl_socket_int(PyObject *descr, PyObject *sock); /* e.g. (gl_raw_family, sock) */
int gl_socket_fd(PyObject *sock); /* sock.fileno(); -1 when closed, or -1 + exception */
int gl_socket_closed(PyObject *sock); /* a closed/detached socket object; no call made */
/* socket.socket(family, type, proto[, fileno]) as socket.py makes it, without its __init__ frame */
PyObject *gl_socket_new(PyObject *family, PyObject *type, PyObject *proto, PyObject *fileno);
PyObject *gl_socket_new_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int gl_sockaddr_init(void);
int gl_accept_init(void);
PyObject *gl_accept_one(int lfd, PyObject *family, PyObject *type, PyObject *proto,
                        struct sockaddr_storage *sa, socklen_t *len, int *err); /* accept.c */
PyObject *gl_accept_stream(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int gl_datagram_init(PyObject *module);
int gl_pipe_init(PyObject *module); /* pipe.c */
int gl_sslproto_init(PyObject *module); /* sslproto.c: SSLProtocolCore, _ssl_setup */
int gl_loop_only_this_fd_next(gl_loop *loop, int fd); /* loop.c */
int gl_call_soon(gl_loop *loop, PyObject *callback, PyObject *const *args, Py_ssize_t nargs);
/* The counters of a transport's loop, or NULL (no loop, or not goloop's). */
static inline gl_stats *gl_stats_of(PyObject *loop)
{
    return loop != NULL && PyObject_TypeCheck(loop, &gl_LoopCoreType) ? &((gl_loop *)loop)->stats
                                                                        : NULL;
}

/* The C transport cores (stream.c, datagram.c) subclass asyncio's
 * transports._FlowControlMixin, so their structs start with its slots:
 * BaseTransport's `_extra`, then the mixin's four, in this order.
 * gl_flow_control_base() checks that layout and returns the class. */
#define GL_FLOW_CONTROL_SLOTS                                                                    \
    PyObject *extra;                                                                             \
    PyObject *high_water; /* int */                                                              \
    PyObject *loop;                                                                              \
    PyObject *low_water;       /* int */                                                         \
    PyObject *protocol_paused; /* bool */
typedef struct {
    PyObject_HEAD
    GL_FLOW_CONTROL_SLOTS
} gl_flow_control;
PyObject *gl_flow_control_base(void); /* new reference, NULL + exception */
/* Whether asyncio's _maybe_pause_protocol / _maybe_resume_protocol has
 * something to do with `size` bytes buffered (wbuf.c). */
int gl_flow_over_high(gl_flow_control *fc, Py_ssize_t size);
int gl_flow_under_low(gl_flow_control *fc, Py_ssize_t size);

/* A transport's unsent bytes, buf[start : start + len] (wbuf.c). */
typedef struct {
    char *buf;
    Py_ssize_t start, len, cap;
} gl_wbuf;
int gl_wbuf_append(gl_wbuf *b, const char *p, Py_ssize_t n); /* -1 + MemoryError */
void gl_wbuf_consume(gl_wbuf *b, Py_ssize_t n);
void gl_wbuf_free(gl_wbuf *b);
void gl_flow_control_clear(gl_flow_control *self);
int gl_flow_control_traverse(gl_flow_control *self, visitproc visit, void *arg);

/* recv() target shared by the transports (stream.c), GIL-protected. */
#define GL_SCRATCH_SIZE (256 * 1024)
extern char gl_scratch[GL_SCRATCH_SIZE];
Py_ssize_t gl_recv_retry(int fd, char *buf, Py_ssize_t len, struct sockaddr_storage *sa,
                         socklen_t *salen); /* stream.c; -1 EAGAIN, -2 exception */
PyObject *gl_recv_bytes(int fd, Py_ssize_t n, int *again);
PyObject *gl_recv_into(int fd, PyObject *buf, int *again);

/* ---- the sock_* calls' native waits (sockops.c) ---- */
int gl_sockops_init(void);
int gl_sockops_add_methods(PyTypeObject *type); /* LoopCore's _sock_* methods */

/* ---- child processes started by the Go engine (process.c) ---- */
PyObject *gl_spawn(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *gl_reap_later(PyObject *module, PyObject *arg);

/* ---- getaddrinfo / getnameinfo on goroutines (resolve.c) ---- */
int gl_resolve_init(void);
PyObject *gl_loop_getaddrinfo(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs);
PyObject *gl_loop_getnameinfo_start(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs);
void gl_resolve_drain(gl_loop *loop); /* on the engine's eventfd (poll.c) */
void gl_resolve_flush(gl_loop *loop); /* before each wait (poll.c) */
void gl_resolve_close(gl_loop *loop); /* before the engine's fds close */

/* ---- create_future / create_task (futures.c) ---- */
int gl_futures_init(void);
PyObject *gl_loop_create_future(gl_loop *self, PyObject *unused);
PyObject *gl_loop_create_task(gl_loop *self, PyObject *const *args, Py_ssize_t nargsf,
                              PyObject *kwnames);

/* ---- GC visibility of queued handles (gcexpose.c) ---- */
void gl_live_add(gl_loop *loop);
void gl_live_remove(gl_loop *loop);
PyObject *gl_gc_callback(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* ---- engine selection (backend.c) and the C fallback (fallback.c) ---- */
typedef struct gl_fallback gl_fallback;
int gl_engine_open(gl_loop *loop);
void gl_engine_close(gl_loop *loop);
int gl_engine_usable(gl_loop *loop);
int gl_engine_set_interest(gl_loop *loop, int fd, uint32_t mask); /* 0 or errno */
int gl_epoll_set_interest(gl_loop *loop, int fd, uint32_t mask);  /* epoll.c */
void gl_epoll_forget(gl_loop *loop);
gl_fallback *gl_fallback_open(int *wakefd, int *epfd);
void gl_fallback_close(gl_fallback *fb);

/* ---- misc (module.c) ---- */
extern volatile int gl_forked;  /* set in a child forked after the Go runtime started */
int gl_check_not_forked(void);
int gl_attr_true(PyObject *self, PyObject *name); /* self.<name>'s truth: 1, 0 or -1 */
double gl_monotonic(void);
extern PyObject *gl_str_cancel, *gl_str_run, *gl_str_callback_error,
    *gl_str_call_soon_slow, *gl_str_call_at_slow, *gl_str_run_handle_debug,
    *gl_str_fileno;

#endif
