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
 * builds them (tuples, addresses, socket.gaierror / OSError), with the
 * family and type left as ints for loop.py to turn into the same enums. */
#include "goloop.h"
#include "resolve.h"
#include "_cgo_export.h"
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

struct gl_resolver {
    pthread_mutex_t mu;
    Py_ssize_t refs;       /* the loop's, plus one per request not yet freed */
    int wakefd;            /* the engine's eventfd; -1 once the loop let go */
    gl_resolve_req *done;  /* finished requests, newest first */
};

static PyObject *gaierror; /* socket.gaierror */

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
static PyObject *str_done, *str_set_result, *str_set_exception;

int gl_resolve_init(void)
{
    if (!(GL_INTERN(str_done, "done") && GL_INTERN(str_set_result, "set_result") &&
          GL_INTERN(str_set_exception, "set_exception"))) {
        return -1;
    }
    PyObject *socket = PyImport_ImportModule("socket");
    if (socket == NULL) {
        return -1;
    }
    gaierror = PyObject_GetAttrString(socket, "gaierror");
    Py_DECREF(socket);
    return gaierror == NULL ? -1 : 0;
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
        uint64_t one = 1;
        /* an eventfd write fails only when its counter is about to
         * overflow, and then the loop is already due to wake */
        (void)!write(q->wakefd, &one, sizeof(one));
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

static void req_start(gl_resolve_req *r)
{
    gl_resolver *q = r->owner;
    pthread_mutex_lock(&q->mu);
    q->refs++;
    pthread_mutex_unlock(&q->mu);
    glResolveStart(r);
}

static char *dup_arg(PyObject *b)
{
    if (b == Py_None) {
        return NULL;
    }
    char *s = strdup(PyBytes_AS_STRING(b));
    if (s == NULL) {
        PyErr_NoMemory();
    }
    return s;
}

/* _getaddrinfo_start(fut, node, service, family, type, proto, flags):
 * node and service are bytes or None, as loop.py encodes them the way
 * socket.getaddrinfo does. True once the lookup runs in Go, False when
 * this loop cannot (see req_new). */
PyObject *gl_loop_getaddrinfo_start(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    int v[4];
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "_getaddrinfo_start takes 7 arguments");
        return NULL;
    }
    for (int i = 1; i < 3; i++) {
        if (args[i] != Py_None && !PyBytes_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "_getaddrinfo_start: bytes or None expected");
            return NULL;
        }
    }
    for (int i = 0; i < 4; i++) {
        if (!PyArg_Parse(args[3 + i], "i", &v[i])) { /* socket.getaddrinfo's "i" */
            return NULL;
        }
    }
    gl_resolve_req *r = req_new(loop, args[0], GL_RESOLVE_ADDRINFO);
    if (r == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    r->hints.ai_family = v[0];
    r->hints.ai_socktype = v[1];
    r->hints.ai_protocol = v[2];
    r->hints.ai_flags = v[3];
    r->node = dup_arg(args[1]);
    r->service = dup_arg(args[2]);
    if ((r->node == NULL && args[1] != Py_None) ||
        (r->service == NULL && args[2] != Py_None)) {
        PyObject *key = PyLong_FromUnsignedLongLong(r->id);
        if (key != NULL) {
            PyObject *exc = gl_take_exception();
            (void)PyDict_DelItem(loop->lookups, key);
            gl_restore_exception(exc);
            Py_DECREF(key);
        }
        req_free(r);
        return NULL;
    }
    req_start(r);
    Py_RETURN_TRUE;
}

/* _getnameinfo_start(fut, sockaddr, flags): socket.getnameinfo's argument
 * checks and its numeric getaddrinfo of the address (AI_NUMERICHOST: no
 * lookup, so done here, raising what socket.getnameinfo raises), then the
 * getnameinfo itself in Go. True / False as for _getaddrinfo_start. */
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
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (struct addrinfo *ai = r->res; ai != NULL; ai = ai->ai_next) {
        PyObject *addr = gl_sockaddr_to_py((struct sockaddr_storage *)ai->ai_addr, ai->ai_addrlen);
        if (addr == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyObject *item = Py_BuildValue("iiisN", ai->ai_family, ai->ai_socktype, ai->ai_protocol,
                                       ai->ai_canonname ? ai->ai_canonname : "", addr);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
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
    gl_resolve_req *list = q->done;
    q->done = NULL;
    pthread_mutex_unlock(&q->mu);
    Py_ssize_t n = 1; /* the loop's own reference */
    while (list != NULL) {
        gl_resolve_req *r = list;
        list = r->next;
        req_free(r);
        n++;
    }
    resolver_release(q, n);
}
