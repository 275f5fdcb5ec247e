/* loop.getaddrinfo / loop.getnameinfo without a Python thread.
 *
 * Stock asyncio runs socket.getaddrinfo in its default ThreadPoolExecutor:
 * a Python thread, a concurrent.futures.Future and a call_soon_threadsafe
 * per lookup. Here a lookup is a C request (resolve.h) that the Go engine
 * runs on a goroutine (resolve.go, goloop.Offload), calling the resolver
 * socket.getaddrinfo calls (libc's: the same answers in the same order).
 * The goroutine pushes the finished request onto the loop's completion
 * list and writes the engine's eventfd; the loop thread drains the list
 * when that eventfd fires (poll.c) and resolves each request's future.
 * Goroutines touch only C memory: the futures stay in the loop's `lookups`
 * dict, keyed by request id, and only the loop thread reads it.
 *
 * A request can outlive its loop (libc's resolver cannot be interrupted),
 * so the completion list is its own reference-counted object: closing the
 * loop detaches it (wakefd = -1 under its mutex, so a late goroutine never
 * writes to an fd number the process may have reused since) and whoever
 * drops the last reference frees it. Results are built as socketmodule.c
 * builds them (tuples, addresses, socket.gaierror / OSError) and as
 * socket.py's getaddrinfo wraps them (the family and type as enums).
 *
 * The arguments are encoded here too, as socketmodule.c encodes them, and
 * an IP address with a numeric port is answered at once (libc does no
 * lookup for it): in Python this per-lookup work (argument checks, IDNA
 * cache, enum conversion of each answer) was ~8 us of the ~60 us a
 * lookup of 'localhost' cost with 100 in flight. */
#include "goloop.h"
#include "resolve.h"
#include "_cgo_export.h"
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

struct gl_resolver {
    pthread_mutex_t mu;
    Py_ssize_t refs;       /* the loop's, plus one per request not yet freed */
    int wakefd;            /* the engine's eventfd; -1 once the loop let go */
    gl_resolve_req *done;  /* finished requests, newest first */
    /* requests made since the last gl_resolve_flush, oldest first: the
     * loop thread's alone, never seen by a goroutine */
    gl_resolve_req *pending, **pending_tail;
};

static PyObject *gaierror; /* socket.gaierror */
/* int -> socket.AddressFamily / socket.SocketKind member, as socket.py's
 * _intenum_converter maps them (values the enums lack stay ints) */
static PyObject *families, *kinds;
/* socket.getaddrinfo as goloop.resolve saw it at import, and the module
 * whose `socket` attribute stock's loop calls it through */
static PyObject *own_getaddrinfo, *base_events;
/* host -> its IDNA encoding (~5 us a call), for exact str hosts; errors
 * are not kept, so they are raised again each time, as socket raises them */
static PyObject *idna_cache;
#define IDNA_CACHE_MAX 1024

/* socketmodule.c's set_gaierror: OSError from errno for EAI_SYSTEM, else
 * socket.gaierror(error, gai_strerror(error)). Returns NULL. */
static PyObject *set_gaierror(int error, int sys_errno)
{
    if (error == EAI_SYSTEM) {
        errno = sys_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *v = Py_BuildValue("(is)", error, gai_strerror(error));
    if (v != NULL) {
        PyErr_SetObject(gaierror, v);
        Py_DECREF(v);
    }
    return NULL;
}
static PyObject *str_done, *str_set_result, *str_set_exception, *str_create_future,
    *str_socket, *str_getaddrinfo;

/* {int(member): member for member in enum_type} */
static PyObject *enum_table(PyObject *socket, const char *name)
{
    PyObject *type = PyObject_GetAttrString(socket, name);
    PyObject *it = type ? PyObject_GetIter(type) : NULL;
    PyObject *table = it ? PyDict_New() : NULL, *member;
    Py_XDECREF(type);
    if (table == NULL) {
        Py_XDECREF(it);
        return NULL;
    }
    while ((member = PyIter_Next(it)) != NULL) {
        PyObject *key = PyNumber_Long(member);
        int r = key ? PyDict_SetItem(table, key, member) : -1;
        Py_XDECREF(key);
        Py_DECREF(member);
        if (r < 0) {
            break;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_CLEAR(table);
    }
    return table;
}

int gl_resolve_init(void)
{
    if (!(GL_INTERN(str_done, "done") && GL_INTERN(str_set_result, "set_result") &&
          GL_INTERN(str_set_exception, "set_exception") &&
          GL_INTERN(str_create_future, "create_future") && GL_INTERN(str_socket, "socket") &&
          GL_INTERN(str_getaddrinfo, "getaddrinfo"))) {
        return -1;
    }
    PyObject *socket = PyImport_ImportModule("socket");
    PyObject *resolve = PyImport_ImportModule("goloop.resolve");
    if (socket != NULL && resolve != NULL) {
        gaierror = PyObject_GetAttrString(socket, "gaierror");
        families = enum_table(socket, "AddressFamily");
        kinds = enum_table(socket, "SocketKind");
        own_getaddrinfo = PyObject_GetAttrString(resolve, "_GETADDRINFO");
        base_events = PyImport_ImportModule("asyncio.base_events");
        idna_cache = PyDict_New();
    }
    Py_XDECREF(socket);
    Py_XDECREF(resolve);
    return gaierror && families && kinds && own_getaddrinfo && base_events && idna_cache ? 0
                                                                                       : -1;
}

static void req_free(gl_resolve_req *r)
{
    if (r->res != NULL) {
        freeaddrinfo(r->res);
    }
    free(r->node);
    free(r->service);
    free(r);
}

/* Drops n references; frees the resolver with the last. */
static void resolver_release(gl_resolver *q, Py_ssize_t n)
{
    pthread_mutex_lock(&q->mu);
    int last = (q->refs -= n) == 0;
    pthread_mutex_unlock(&q->mu);
    if (last) {
        pthread_mutex_destroy(&q->mu);
        free(q);
    }
}

void gl_resolve_run(gl_resolve_req *r)
{
    errno = 0;
    if (r->kind == GL_RESOLVE_ADDRINFO) {
        r->err = getaddrinfo(r->node, r->service, &r->hints, &r->res);
    } else {
        r->err = getnameinfo((struct sockaddr *)&r->sa, r->salen, r->host, sizeof(r->host),
                             r->serv, sizeof(r->serv), r->niflags);
    }
    r->sys_errno = errno;
    gl_resolver *q = r->owner;
    pthread_mutex_lock(&q->mu);
    int attached = q->wakefd >= 0;
    if (attached) {
        r->next = q->done;
        q->done = r;
        /* Only the request that makes the list non-empty writes: until the
         * loop takes the list (always right after it reads the eventfd,
         * poll.c) that write is still pending, so the others need none.
         * One write per lookup cost a syscall each (22,002 writes for
         * 22,000 lookups of 'localhost', 100 in flight; uvloop's
         * uv_async_send coalesces the same way: 878). An eventfd write
         * fails only when its counter is about to overflow, and then the
         * loop is already due to wake. */
        if (r->next == NULL) {
            uint64_t one = 1;
            (void)!write(q->wakefd, &one, sizeof(one));
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (!attached) {
        req_free(r);
        resolver_release(q, 1);
    }
}

/* A new request on this loop, its future stored under its id; NULL with
 * an exception set, or NULL without one when the loop cannot resolve in
 * Go (the fork-safe C engine, a closed loop): the caller then takes
 * asyncio's path. */
static gl_resolve_req *req_new(gl_loop *loop, PyObject *fut, int kind)
{
    if (loop->fallback != NULL || loop->engine < 0 || gl_forked) {
        return NULL;
    }
    if (loop->resolver == NULL) {
        gl_resolver *q = calloc(1, sizeof(*q));
        if (q == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        pthread_mutex_init(&q->mu, NULL);
        q->refs = 1;
        q->wakefd = loop->wakefd;
        loop->resolver = q;
    }
    if (loop->lookups == NULL && (loop->lookups = PyDict_New()) == NULL) {
        return NULL;
    }
    gl_resolve_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    r->kind = kind;
    r->id = ++loop->lookup_seq;
    r->owner = loop->resolver;
    PyObject *key = PyLong_FromUnsignedLongLong(r->id);
    if (key == NULL || PyDict_SetItem(loop->lookups, key, fut) < 0) {
        Py_XDECREF(key);
        free(r);
        return NULL;
    }
    Py_DECREF(key);
    return r;
}

/* Queues r for the next gl_resolve_flush, which starts every request the
 * iteration's callbacks made with one call into Go. */
static void req_start(gl_resolve_req *r)
{
    gl_resolver *q = r->owner;
    pthread_mutex_lock(&q->mu);
    q->refs++;
    pthread_mutex_unlock(&q->mu);
    r->next = NULL;
    *(q->pending ? q->pending_tail : &q->pending) = r;
    q->pending_tail = &r->next;
}

/* Starts the queued requests: one C->Go call per loop iteration however
 * many lookups its callbacks began (100 at once in benchmarks/resolve.py),
 * where a call per lookup crossed into Go 100 times an iteration.
 * poll.c calls it before every wait, and a loop with lookups in flight
 * always polls (loop.c), so a request waits for the end of the iteration
 * that made it, never for a later one. */
void gl_resolve_flush(gl_loop *loop)
{
    gl_resolver *q = loop->resolver;
    gl_resolve_req *list = q->pending;
    if (list != NULL) {
        q->pending = NULL;
        glResolveStart(list);
    }
}

/* socket.py's getaddrinfo answer for libc's list: (family, type, proto,
 * canonname, sockaddr) with the family and type as enums. libc lists each
 * address once per socket type (three times for 'localhost' without a
 * type), so an address equal to the previous one shares its tuple. */
static PyObject *addrinfo_list(struct addrinfo *res)
{
    PyObject *list = PyList_New(0), *addr = NULL;
    struct addrinfo *prev = NULL;
    for (struct addrinfo *ai = res; list != NULL && ai != NULL; prev = ai, ai = ai->ai_next) {
        if (addr == NULL || prev->ai_addrlen != ai->ai_addrlen ||
            memcmp(prev->ai_addr, ai->ai_addr, ai->ai_addrlen) != 0) {
            Py_XDECREF(addr);
            addr = gl_sockaddr_to_py((struct sockaddr_storage *)ai->ai_addr, ai->ai_addrlen);
        }
        PyObject *family = PyLong_FromLong(ai->ai_family);
        PyObject *kind = PyLong_FromLong(ai->ai_socktype);
        PyObject *item = NULL, *f = NULL, *k = NULL;
        if (addr != NULL && family != NULL && kind != NULL &&
            ((f = PyDict_GetItemWithError(families, family)) != NULL || !PyErr_Occurred()) &&
            ((k = PyDict_GetItemWithError(kinds, kind)) != NULL || !PyErr_Occurred())) {
            item = Py_BuildValue("OOisO", f ? f : family, k ? k : kind, ai->ai_protocol,
                                 ai->ai_canonname ? ai->ai_canonname : "", addr);
        }
        Py_XDECREF(family);
        Py_XDECREF(kind);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(item);
    }
    Py_XDECREF(addr);
    return list;
}

/* A getaddrinfo argument socket.getaddrinfo's "i" accepts as it is: an int
 * (bool and IntEnum members too) that fits a C int. */
static int c_int(PyObject *v, int *out)
{
    if (!PyLong_Check(v)) {
        return 0;
    }
    int overflow;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    if (overflow || x < INT_MIN || x > INT_MAX) {
        return 0;
    }
    *out = (int)x;
    return 1;
}

/* The host as socket.getaddrinfo hands it to libc: a new reference to
 * bytes, Py_None, or NULL with an exception (the IDNA codec's error). */
static PyObject *encode_host(PyObject *host)
{
    if (host == Py_None || PyBytes_Check(host)) {
        return Py_NewRef(host);
    }
    if (!PyUnicode_CheckExact(host)) { /* a subclass may hash or compare as it likes */
        return PyUnicode_AsEncodedString(host, "idna", NULL);
    }
    PyObject *node = PyDict_GetItemWithError(idna_cache, host);
    if (node != NULL || PyErr_Occurred()) {
        return Py_XNewRef(node);
    }
    node = PyUnicode_AsEncodedString(host, "idna", NULL);
    if (node != NULL) {
        if (PyDict_GET_SIZE(idna_cache) >= IDNA_CACHE_MAX) {
            PyDict_Clear(idna_cache);
        }
        if (PyDict_SetItem(idna_cache, host, node) < 0) {
            Py_CLEAR(node);
        }
    }
    return node;
}

/* Whether libc answers without any lookup: no host or an IP address, no
 * service or a number, and no canonical name asked for. */
static int is_numeric(const char *node, const char *service, int flags)
{
    if (flags & AI_CANONNAME) {
        return 0;
    }
    if (service != NULL) {
        if (*service == 0) {
            return 0;
        }
        for (const char *c = service; *c; c++) {
            if (*c < '0' || *c > '9') {
                return 0;
            }
        }
    }
    unsigned char buf[sizeof(struct in6_addr)];
    return node == NULL || inet_pton(AF_INET, node, buf) == 1 ||
           inet_pton(AF_INET6, node, buf) == 1;
}

/* Whether stock's loop would call socket's own getaddrinfo right now:
 * it calls whatever asyncio.base_events.socket.getaddrinfo is. */
static int calls_own_getaddrinfo(void)
{
    PyObject *socket = PyObject_GetAttr(base_events, str_socket);
    PyObject *fn = socket ? PyObject_GetAttr(socket, str_getaddrinfo) : NULL;
    Py_XDECREF(socket);
    Py_XDECREF(fn);
    PyErr_Clear(); /* asyncio's path then raises what stock raises */
    return fn == own_getaddrinfo;
}

/* _getaddrinfo(host, port, family, type, proto, flags): socket.getaddrinfo's
 * answer (a list) when libc needs no lookup; a future the lookup in Go
 * resolves with it otherwise; None where asyncio's path must take the call:
 * debug mode, socket.getaddrinfo replaced, arguments socket would reject or
 * convert in some other way (asyncio's path raises what stock raises), a
 * loop that cannot resolve in Go (see req_new). Errors in encoding the host
 * or port are raised here, as socket.getaddrinfo raises them. */
PyObject *gl_loop_getaddrinfo(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int v[4];
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_getaddrinfo takes 6 arguments");
        return NULL;
    }
    PyObject *host = args[0], *port = args[1];
    if (loop->debug || !calls_own_getaddrinfo()) {
        Py_RETURN_NONE;
    }
    for (int i = 0; i < 4; i++) {
        if (!c_int(args[2 + i], &v[i])) {
            Py_RETURN_NONE;
        }
    }
    PyObject *node, *ret = NULL;
    const char *service = NULL;
    char pbuf[30];
    if (host != Py_None && !PyBytes_Check(host) && !PyUnicode_Check(host)) {
        Py_RETURN_NONE;
    }
    if (PyLong_CheckExact(port)) { /* socket.getaddrinfo checks exactly, then "%ld" */
        int overflow;
        long value = PyLong_AsLongAndOverflow(port, &overflow);
        if (overflow) {
            Py_RETURN_NONE;
        }
        PyOS_snprintf(pbuf, sizeof(pbuf), "%ld", value);
        service = pbuf;
    } else if (!(PyUnicode_Check(port) || PyBytes_Check(port) || port == Py_None)) {
        Py_RETURN_NONE;
    }
    if ((node = encode_host(host)) == NULL) {
        return NULL;
    }
    if (PyUnicode_Check(port)) {
        service = PyUnicode_AsUTF8(port); /* raises as socket.getaddrinfo does */
        if (service == NULL) {
            goto done;
        }
    } else if (PyBytes_Check(port)) {
        service = PyBytes_AS_STRING(port);
    }
    const char *hptr = node == Py_None ? NULL : PyBytes_AS_STRING(node);
    int numeric = is_numeric(hptr, service, v[3]);
    if (!numeric && (loop->fallback != NULL || loop->engine < 0 || gl_forked)) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (PySys_Audit("socket.getaddrinfo", "OOiii", host, port, v[0], v[1], v[2]) < 0) {
        goto done;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = v[0];
    hints.ai_socktype = v[1];
    hints.ai_protocol = v[2];
    hints.ai_flags = v[3];
    if (numeric) {
        struct addrinfo *res = NULL;
        errno = 0;
        int error = getaddrinfo(hptr, service, &hints, &res);
        if (error) {
            set_gaierror(error, errno);
        } else {
            ret = addrinfo_list(res);
        }
        if (res != NULL) {
            freeaddrinfo(res);
        }
        goto done;
    }
    PyObject *fut = PyObject_CallMethodNoArgs((PyObject *)loop, str_create_future);
    if (fut == NULL) {
        goto done;
    }
    gl_resolve_req *r = req_new(loop, fut, GL_RESOLVE_ADDRINFO);
    if (r == NULL) {
        Py_DECREF(fut);
        if (!PyErr_Occurred()) { /* checked above; kept for req_new's contract */
            ret = Py_NewRef(Py_None);
        }
        goto done;
    }
    r->hints = hints;
    r->node = hptr ? strdup(hptr) : NULL;
    r->service = service ? strdup(service) : NULL;
    if ((hptr && r->node == NULL) || (service && r->service == NULL)) {
        PyObject *key = PyLong_FromUnsignedLongLong(r->id);
        if (key != NULL) {
            (void)PyDict_DelItem(loop->lookups, key);
            Py_DECREF(key);
        }
        req_free(r);
        Py_DECREF(fut);
        PyErr_NoMemory();
        goto done;
    }
    req_start(r);
    ret = fut;
done:
    Py_DECREF(node);
    return ret;
}

/* _getnameinfo_start(fut, sockaddr, flags): socket.getnameinfo's argument
 * checks and its numeric getaddrinfo of the address (AI_NUMERICHOST: no
 * lookup, so done here, raising what socket.getnameinfo raises), then the
 * getnameinfo itself in Go. True once the lookup runs in Go, False when
 * this loop cannot (see req_new): the caller then takes asyncio's path. */
PyObject *gl_loop_getnameinfo_start(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    const char *hostp;
    int port, flags;
    unsigned int flowinfo = 0, scope_id = 0;
    char pbuf[30];
    struct addrinfo hints, *res = NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_getnameinfo_start takes 3 arguments");
        return NULL;
    }
    PyObject *sa = args[1];
    if (!PyArg_Parse(args[2], "i", &flags)) {
        return NULL;
    }
    if (!PyTuple_Check(sa)) {
        PyErr_SetString(PyExc_TypeError, "getnameinfo() argument 1 must be a tuple");
        return NULL;
    }
    if (!PyArg_ParseTuple(sa, "si|II;getnameinfo(): illegal sockaddr argument", &hostp, &port,
                          &flowinfo, &scope_id)) {
        return NULL;
    }
    if (flowinfo > 0xfffff) {
        PyErr_SetString(PyExc_OverflowError, "getnameinfo(): flowinfo must be 0-1048575.");
        return NULL;
    }
    if (PySys_Audit("socket.getnameinfo", "(O)", sa) < 0) {
        return NULL;
    }
    PyOS_snprintf(pbuf, sizeof(pbuf), "%d", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM; /* make numeric port happy */
    hints.ai_flags = AI_NUMERICHOST;
    int error = getaddrinfo(hostp, pbuf, &hints, &res);
    if (error) {
        return set_gaierror(error, errno);
    }
    PyObject *ret = NULL;
    if (res->ai_next) {
        PyErr_SetString(PyExc_OSError, "sockaddr resolved to multiple addresses");
        goto done;
    }
    if (res->ai_family == AF_INET && PyTuple_GET_SIZE(sa) != 2) {
        PyErr_SetString(PyExc_OSError, "IPv4 sockaddr must be 2 tuple");
        goto done;
    }
    if (res->ai_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)res->ai_addr;
        sin6->sin6_flowinfo = htonl(flowinfo);
        sin6->sin6_scope_id = scope_id;
    }
    gl_resolve_req *r = req_new(loop, args[0], GL_RESOLVE_NAMEINFO);
    if (r == NULL) {
        if (!PyErr_Occurred()) {
            ret = Py_NewRef(Py_False);
        }
        goto done;
    }
    memcpy(&r->sa, res->ai_addr, res->ai_addrlen);
    r->salen = res->ai_addrlen;
    r->niflags = flags;
    req_start(r);
    ret = Py_NewRef(Py_True);
done:
    freeaddrinfo(res);
    return ret;
}

/* The request's outcome as socket.getaddrinfo/getnameinfo return or raise
 * it (socketmodule.c's set_gaierror for errors); NULL with the exception
 * set. */
static PyObject *req_result(gl_resolve_req *r)
{
    if (r->err != 0) {
        return set_gaierror(r->err, r->sys_errno);
    }
    if (r->kind == GL_RESOLVE_NAMEINFO) {
        return Py_BuildValue("ss", r->host, r->serv);
    }
    return addrinfo_list(r->res);
}

/* Resolves the future of one finished request, unless it is gone (the
 * awaiting task was cancelled). A failure to deliver (e.g. MemoryError
 * while setting the result) is reported, never raised into the poll. */
static void req_complete(gl_loop *loop, gl_resolve_req *r)
{
    PyObject *key = PyLong_FromUnsignedLongLong(r->id);
    PyObject *fut = NULL, *done = NULL, *value = NULL, *ok = NULL;
    if (key == NULL) {
        goto unraisable;
    }
    fut = loop->lookups ? Py_XNewRef(PyDict_GetItemWithError(loop->lookups, key)) : NULL;
    if (fut == NULL) {
        Py_DECREF(key);
        if (PyErr_Occurred()) {
            goto unraisable;
        }
        return; /* the loop was closed and forgot its lookups */
    }
    int r_del = PyDict_DelItem(loop->lookups, key);
    Py_DECREF(key);
    if (r_del < 0) {
        goto unraisable;
    }
    done = PyObject_CallMethodNoArgs(fut, str_done);
    if (done == NULL) {
        goto unraisable;
    }
    if (done == Py_False) {
        value = req_result(r);
        if (value != NULL) {
            ok = PyObject_CallMethodOneArg(fut, str_set_result, value);
        } else {
            PyObject *exc = gl_take_exception();
            ok = PyObject_CallMethodOneArg(fut, str_set_exception, exc);
            Py_DECREF(exc);
        }
        if (ok == NULL) {
            goto unraisable;
        }
    }
    goto out;
unraisable:
    PyErr_WriteUnraisable(fut);
out:
    Py_XDECREF(ok);
    Py_XDECREF(value);
    Py_XDECREF(done);
    Py_XDECREF(fut);
}

void gl_resolve_drain(gl_loop *loop)
{
    gl_resolver *q = loop->resolver;
    pthread_mutex_lock(&q->mu);
    gl_resolve_req *list = q->done;
    q->done = NULL;
    pthread_mutex_unlock(&q->mu);
    gl_resolve_req *fifo = NULL; /* completion order */
    while (list != NULL) {
        gl_resolve_req *r = list;
        list = r->next;
        r->next = fifo;
        fifo = r;
    }
    Py_ssize_t n = 0;
    while (fifo != NULL) {
        gl_resolve_req *r = fifo;
        fifo = r->next;
        req_complete(loop, r);
        req_free(r);
        n++;
    }
    if (n > 0) {
        resolver_release(q, n); /* never the last: the loop holds one */
    }
}

void gl_resolve_close(gl_loop *loop)
{
    gl_resolver *q = loop->resolver;
    loop->resolver = NULL;
    if (q == NULL || gl_forked) {
        /* In a forked child the goroutines are gone and one may have held
         * the mutex at fork: leave the resolver to the parent's memory. */
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->wakefd = -1;
    gl_resolve_req *lists[2] = {q->done, q->pending}; /* finished; never started */
    q->done = NULL;
    q->pending = NULL;
    pthread_mutex_unlock(&q->mu);
    Py_ssize_t n = 1; /* the loop's own reference */
    for (int i = 0; i < 2; i++) {
        while (lists[i] != NULL) {
            gl_resolve_req *r = lists[i];
            lists[i] = r->next;
            req_free(r);
            n++;
        }
    }
    resolver_release(q, n);
}
