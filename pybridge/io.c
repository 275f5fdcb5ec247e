/* fd watching, C side: reader/writer handles per fd.
 *
 * The handles live in flat arrays indexed by fd, so dispatching a ready fd
 * is an array load; an interest change is one epoll_ctl (epoll.c).
 * Semantics follow selector_events.BaseSelectorEventLoop._add_reader & co. */
#include "goloop.h"
#include <errno.h>

/* asyncio's own _add_reader & co. (selector_events), used in debug mode so
 * handles get asyncio's source tracebacks; they reach our tables through
 * EngineSelector.register/modify/unregister -> gl_io_set. */
static PyObject *stock_add[2], *stock_remove[2];

int gl_io_init(void)
{
    PyObject *mod = PyImport_ImportModule("asyncio.selector_events");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "BaseSelectorEventLoop") : NULL;
    Py_XDECREF(mod);
    if (cls == NULL) {
        return -1;
    }
    stock_add[0] = PyObject_GetAttrString(cls, "_add_reader");
    stock_add[1] = PyObject_GetAttrString(cls, "_add_writer");
    stock_remove[0] = PyObject_GetAttrString(cls, "_remove_reader");
    stock_remove[1] = PyObject_GetAttrString(cls, "_remove_writer");
    Py_DECREF(cls);
    return (stock_add[0] && stock_add[1] && stock_remove[0] && stock_remove[1]) ? 0 : -1;
}

static PyObject *call_stock(PyObject *func, gl_loop *loop, PyObject *const *args,
                            Py_ssize_t nargs)
{
    PyObject *all = PyTuple_New(nargs + 1);
    if (all == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(all, 0, Py_NewRef((PyObject *)loop));
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(all, i + 1, Py_NewRef(args[i]));
    }
    PyObject *r = PyObject_Call(func, all, NULL);
    Py_DECREF(all);
    return r;
}

/* selectors._fileobj_to_fd, with the same errors. */
static int fileobj_to_fd(PyObject *obj)
{
    long fd;
    if (PyLong_Check(obj)) {
        fd = PyLong_AsLong(obj);
        if (fd == -1 && PyErr_Occurred()) {
            return -2;
        }
    } else {
        PyObject *r = PyObject_CallMethodNoArgs(obj, gl_str_fileno);
        PyObject *n = r ? PyNumber_Long(r) : NULL;
        Py_XDECREF(r);
        if (n == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R", obj);
            }
            return -2;
        }
        fd = PyLong_AsLong(n);
        Py_DECREF(n);
        if (fd == -1 && PyErr_Occurred()) {
            return -2;
        }
    }
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -2;
    }
    if (fd > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "file descriptor out of range");
        return -2;
    }
    return (int)fd;
}

/* selectors' _fileobj_lookup: the fd of fileobj, or, when that fails
 * with ValueError (a socket closed since: fileno() is -1), the fd it was
 * registered under, found by identity; else fileobj_to_fd's error. */
static int fileobj_lookup(gl_loop *loop, PyObject *fileobj)
{
    int fd = fileobj_to_fd(fileobj);
    if (fd >= 0 || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return fd;
    }
    for (int i = 0; i < loop->fdcap; i++) {
        if (loop->fileobjs[i] == fileobj) {
            PyErr_Clear();
            return i;
        }
    }
    return -2;
}

static int ensure_fd(gl_loop *loop, int fd)
{
    if (fd < loop->fdcap) {
        return 0;
    }
    int ncap = loop->fdcap ? loop->fdcap : 64;
    while (ncap <= fd) {
        ncap *= 2;
    }
    PyObject **r = PyMem_Realloc(loop->readers, ncap * sizeof(PyObject *));
    if (r == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->readers = r;
    PyObject **w = PyMem_Realloc(loop->writers, ncap * sizeof(PyObject *));
    if (w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->writers = w;
    PyObject **pk = PyMem_Realloc(loop->parked, ncap * sizeof(PyObject *));
    if (pk == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->parked = pk;
    PyObject **fo = PyMem_Realloc(loop->fileobjs, ncap * sizeof(PyObject *));
    if (fo == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    loop->fileobjs = fo;
    for (int i = loop->fdcap; i < ncap; i++) {
        loop->readers[i] = loop->writers[i] = loop->parked[i] = loop->fileobjs[i] = NULL;
    }
    loop->fdcap = ncap;
    return 0;
}

static uint32_t gl_fd_mask(gl_loop *loop, int fd)
{
    if (fd >= loop->fdcap) {
        return 0;
    }
    return (loop->readers[fd] ? GL_EVENT_READ : 0) | (loop->writers[fd] ? GL_EVENT_WRITE : 0);
}

/* Every interest change goes through here: it makes fd's registration
 * level-triggered again, so a sock_recv watch on fd can no longer be
 * parked (see unpark). Returns 0 or an errno. */
static int engine_interest(gl_loop *loop, int fd, uint32_t mask)
{
    for (int write = 0; write < 2 && fd < loop->fdcap; write++) {
        PyObject *entry = (write ? loop->writers : loop->readers)[fd];
        if (entry != NULL && GL_IS_WATCH(entry)) {
            ((gl_watch *)entry)->edge = 0;
        }
    }
    return gl_engine_set_interest(loop, fd, mask);
}

/* fd is no longer registered: drop its table entries without cancelling
 * them, as selectors' unregister drops a key (a Handle already in the
 * ready queue still runs, as in stock; watches check their socket). */
static void forget(gl_loop *loop, int fd)
{
    if (gl_fd_mask(loop, fd) != 0) {
        loop->nfds--;
    }
    Py_CLEAR(loop->readers[fd]);
    Py_CLEAR(loop->writers[fd]);
    Py_CLEAR(loop->fileobjs[fd]);
}

/* A failed change of a registration fd had forgets it, as selectors'
 * modify does before raising: the kernel dropped it when fd's file was
 * closed (ENOENT: the number is someone else's by now; EBADF: nobody's),
 * and a later ADD must not revive the old callbacks for the new file. */
static int set_interest(gl_loop *loop, int fd, uint32_t mask)
{
    if (gl_engine_usable(loop) < 0) {
        return -1;
    }
    int err = engine_interest(loop, fd, mask);
    if (err != 0) {
        forget(loop, fd);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* ---- parked read interest ----
 *
 * A completed sock_recv would remove its reader (EPOLL_CTL_DEL) only for
 * the next sock_recv on the same socket to add it again (EPOLL_CTL_ADD):
 * two syscalls per receive in a recv/send loop. Instead sock_recv's wait
 * registers the fd edge-triggered, and when the receive completes the
 * registration stays in epoll, "parked": the fd tables (and so every
 * asyncio-visible view) say nobody watches the fd, and parked[fd] holds a
 * weak reference to the socket. The next sock_recv on that same socket
 * object, still open on that fd, reuses the registration without a
 * syscall.
 *
 * Edge-triggered because sock_recv always tries recv before it waits:
 * data that arrives while parked is either read by that first recv or,
 * arriving after it, raises a new edge that reaches the waiting op. And
 * because a parked registration can outlive the fd number: when the
 * socket was dup'ed or inherited by a child, closing our fd does not
 * remove the registration and DEL can no longer name it; level-triggered,
 * it would then report readiness on every wait (a spinning loop),
 * edge-triggered it reports only new activity of that other copy, as
 * spurious wake-ups the fd's later users tolerate. Anything else that
 * touches fd's interest first brings epoll back in line with the tables
 * (one epoll_ctl, as stock would have done earlier) and makes the
 * registration level-triggered again, after which it is not parked. */
static void unpark(gl_loop *loop, int fd)
{
    if (fd >= loop->fdcap || loop->parked[fd] == NULL) {
        return;
    }
    Py_CLEAR(loop->parked[fd]);
    (void)engine_interest(loop, fd, gl_fd_mask(loop, fd));
}

/* Whether fd's parked registration is still its socket's: the socket
 * object is alive and still open on fd, so the number names the file the
 * registration was made for. */
static int parked_still_owned(gl_loop *loop, int fd)
{
    PyObject *ref = loop->parked[fd];
    if (ref == NULL) {
        return 0;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *sock = NULL;
    if (PyWeakref_GetRef(ref, &sock) <= 0) {
        PyErr_Clear();
        return 0;
    }
#else
    PyObject *sock = Py_NewRef(PyWeakref_GET_OBJECT(ref));
#endif
    int owned = sock != Py_None && gl_socket_fd(sock) == fd;
    Py_DECREF(sock);
    PyErr_Clear(); /* a socket that cannot say: not owned */
    return owned;
}

/* fd's first interest while it is parked. A completed connect (sockops.c)
 * parks its registration so that the transport made next starts reading
 * with one EPOLL_CTL_MOD instead of a DEL and an ADD (a syscall less per
 * client connection). When the socket no longer holds fd, or the kernel
 * dropped the registration anyway (fd closed behind the socket's back),
 * fd is registered anew, as unpark + install would: nothing else holds
 * it in the tables, so the new registration is the caller's. */
static int interest_from_parked(gl_loop *loop, int fd, uint32_t mask)
{
    if (parked_still_owned(loop, fd)) {
        Py_CLEAR(loop->parked[fd]);
        if (gl_engine_usable(loop) < 0) {
            return -1;
        }
        if (engine_interest(loop, fd, mask) == 0) {
            return 0;
        }
        (void)engine_interest(loop, fd, 0);
    } else {
        unpark(loop, fd);
    }
    return set_interest(loop, fd, mask);
}

static int cancel_handle(PyObject *handle)
{
    if (GL_IS_WATCH(handle)) {
        ((gl_watch *)handle)->cancelled = 1;
        Py_DECREF(handle);
        return 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs(handle, gl_str_cancel);
    Py_DECREF(handle);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* The object a new registration of fd is known by: what the program
 * passed, unless that is the number itself (NULL). */
static void set_fileobj(gl_loop *loop, int fd, PyObject *fileobj)
{
    Py_XSETREF(loop->fileobjs[fd],
               fileobj != NULL && !PyLong_Check(fileobj) ? Py_NewRef(fileobj) : NULL);
}

/* Make obj (a Handle or a watch) fd's callback for one direction; the
 * table takes its own reference and the one it replaces is cancelled.
 * fileobj: what the program named fd by (NULL: the number). */
static int install(gl_loop *loop, int fd, int write, PyObject *obj, PyObject *fileobj)
{
    uint32_t old = gl_fd_mask(loop, fd);
    uint32_t bit = write ? GL_EVENT_WRITE : GL_EVENT_READ;
    if (old == 0 && loop->parked[fd] != NULL) {
        if (interest_from_parked(loop, fd, bit) < 0) {
            return -1;
        }
    } else {
        unpark(loop, fd);
        if (!(old & bit) && set_interest(loop, fd, old | bit) < 0) {
            return -1;
        }
    }
    PyObject **table = write ? loop->writers : loop->readers;
    PyObject *prev = table[fd];
    table[fd] = Py_NewRef(obj);
    if (old == 0) {
        loop->nfds++;
        set_fileobj(loop, fd, fileobj);
    }
    return prev != NULL ? cancel_handle(prev) : 0;
}

/* _add_reader(fd, callback, *args) / _add_writer(...): returns the Handle. */
PyObject *gl_io_add(gl_loop *loop, int write, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() missing required arguments: 'fd' and 'callback'",
                     write ? "_add_writer" : "_add_reader");
        return NULL;
    }
    if (loop->debug) {
        return call_stock(stock_add[write], loop, args, nargs);
    }
    if (loop->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    int fd = fileobj_lookup(loop, args[0]);
    if (fd < 0 || ensure_fd(loop, fd) < 0) {
        return NULL;
    }
    PyObject *cbargs = gl_tuple_from(args + 2, nargs - 2);
    if (cbargs == NULL) {
        return NULL;
    }
    PyObject *handle = gl_handle_new(loop, args[1], cbargs, NULL);
    Py_DECREF(cbargs);
    if (handle == NULL) {
        return NULL;
    }
    if (install(loop, fd, write, handle, args[0]) < 0) {
        Py_DECREF(handle);
        return NULL;
    }
    return handle;
}

/* Drop fd's handle for one direction; 1 if there was one. As selectors
 * does, errors of the unregistration are ignored (the kernel dropped the
 * registration of an fd closed since), and a failed change of the other
 * direction's interest forgets the whole registration and raises, not
 * cancelling the handle (selectors' modify raises before _remove_reader
 * cancels). */
static int remove_fd(gl_loop *loop, int fd, int write)
{
    if (fd >= loop->fdcap) {
        return 0;
    }
    PyObject **table = write ? loop->writers : loop->readers;
    PyObject *handle = table[fd];
    if (handle == NULL) {
        return 0;
    }
    table[fd] = NULL;
    Py_CLEAR(loop->parked[fd]); /* the interest change below syncs epoll */
    uint32_t mask = gl_fd_mask(loop, fd);
    if (mask == 0) {
        (void)engine_interest(loop, fd, 0);
        loop->nfds--;
        Py_CLEAR(loop->fileobjs[fd]);
    } else if (set_interest(loop, fd, mask) < 0) {
        Py_DECREF(handle);
        return -1;
    }
    return cancel_handle(handle) < 0 ? -1 : 1;
}

/* Register a native watch (watch.c) for fd: _add_reader without a Handle. */
/* The checks before a native watch goes into fd's table slots. */
static int watch_target(gl_loop *loop, int fd)
{
    if (loop->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %d", fd);
        return -1;
    }
    return ensure_fd(loop, fd);
}

int gl_io_watch(gl_loop *loop, int fd, int write, PyObject *owner, gl_watch_fn fn,
                int with_context)
{
    if (watch_target(loop, fd) < 0) {
        return -1;
    }
    PyObject *w = gl_watch_new(loop, owner, fn, write, with_context);
    if (w == NULL) {
        return -1;
    }
    int r = install(loop, fd, write, w, NULL);
    Py_DECREF(w);
    return r;
}

/* _remove_reader(fd) / _remove_writer(fd) from C: 1 if removed. */
int gl_io_unwatch(gl_loop *loop, int fd, int write)
{
    if (loop->closed) {
        return 0;
    }
    return remove_fd(loop, fd, write);
}

/* Remove fd's watch only if it is still owner's (another callback may
 * have replaced it, as a replaced reader Handle is cancelled in asyncio). */
/* fd's watch for one direction if owner registered it, else NULL. */
static gl_watch *owned_watch(gl_loop *loop, int fd, int write, PyObject *owner)
{
    if (loop->closed || fd < 0 || fd >= loop->fdcap) {
        return NULL;
    }
    PyObject *entry = (write ? loop->writers : loop->readers)[fd];
    if (entry == NULL || !GL_IS_WATCH(entry) || ((gl_watch *)entry)->owner != owner) {
        return NULL;
    }
    return (gl_watch *)entry;
}

int gl_io_unwatch_owner(gl_loop *loop, int fd, int write, PyObject *owner)
{
    return owned_watch(loop, fd, write, owner) ? remove_fd(loop, fd, write) : 0;
}

/* A sock_recv or connect op is done with fd: drop its table entry but
 * leave the interest in epoll, parked for the same socket (see unpark). */
int gl_io_park(gl_loop *loop, int fd, int write, PyObject *owner, PyObject *sockref)
{
    gl_watch *w = owned_watch(loop, fd, write, owner);
    if (w == NULL) {
        return 0;
    }
    PyObject **table = write ? loop->writers : loop->readers;
    PyObject *other = write ? loop->readers[fd] : loop->writers[fd];
    if (sockref == NULL || other != NULL || !w->edge) {
        return remove_fd(loop, fd, write) < 0 ? -1 : 0;
    }
    table[fd] = NULL;
    loop->nfds--;
    Py_CLEAR(loop->fileobjs[fd]);
    Py_XSETREF(loop->parked[fd], Py_NewRef(sockref));
    return cancel_handle((PyObject *)w);
}

static int weakref_is(PyObject *ref, PyObject *obj)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *target = NULL;
    if (PyWeakref_GetRef(ref, &target) < 0) {
        PyErr_Clear();
        return 0;
    }
    int same = target == obj;
    Py_XDECREF(target);
    return same;
#else
    return PyWeakref_GET_OBJECT(ref) == obj;
#endif
}

/* sock_recv's wait (write 0) or a connect's (write 1): watch fd on behalf
 * of owner, edge-triggered so that the registration can be parked when
 * the op completes. When fd's read interest is parked for this very
 * socket object (which reports fd as its fileno, so it is the same open
 * file), a read reuses it: no syscall. A connect registers for reading
 * too (its events go to the tables' entries: the connect sees only
 * writability), so that what it parks is also a read registration for
 * the socket's sock_recv, and the transport made next changes it in
 * place (install). *sockref gets a new reference to the socket's weakref
 * (NULL if it has none), for parking when the op completes. */
int gl_io_watch_of(gl_loop *loop, int fd, int write, PyObject *sock, PyObject *owner,
                   gl_watch_fn fn, PyObject **sockref)
{
    *sockref = NULL;
    if (watch_target(loop, fd) < 0) {
        return -1;
    }
    PyObject *w = gl_watch_new(loop, owner, fn, write, 0);
    if (w == NULL) {
        return -1;
    }
    PyObject *ref = loop->parked[fd];
    if (!write && ref != NULL && loop->readers[fd] == NULL && loop->writers[fd] == NULL &&
        weakref_is(ref, sock)) {
        *sockref = ref; /* the parked registration and reference move to the op */
        loop->parked[fd] = NULL;
    } else {
        unpark(loop, fd);
        *sockref = PyWeakref_NewRef(sock, NULL);
        if (*sockref == NULL) {
            PyErr_Clear(); /* not weak-referenceable: no parking */
        }
        if (gl_fd_mask(loop, fd) != 0 || *sockref == NULL) {
            /* other watchers on fd, or no parking: a plain level-triggered watch */
            int r = install(loop, fd, write, w, NULL);
            Py_DECREF(w);
            if (r < 0) {
                Py_CLEAR(*sockref);
            }
            return r;
        }
        int err = gl_engine_usable(loop) < 0
                      ? -1
                      : gl_engine_set_interest(loop, fd,
                                               GL_EVENT_READ | GL_EVENT_EDGE |
                                                   (write ? GL_EVENT_WRITE : 0));
        if (err != 0) {
            if (err > 0) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            Py_DECREF(w);
            Py_CLEAR(*sockref);
            return -1;
        }
    }
    ((gl_watch *)w)->edge = 1;
    (write ? loop->writers : loop->readers)[fd] = w; /* the table takes our reference */
    loop->nfds++;
    return 0;
}

PyObject *gl_io_remove(gl_loop *loop, int write, PyObject *fileobj)
{
    if (loop->debug) {
        return call_stock(stock_remove[write], loop, &fileobj, 1);
    }
    if (loop->closed) {
        Py_RETURN_FALSE;
    }
    int fd = fileobj_lookup(loop, fileobj);
    if (fd < 0) {
        return NULL;
    }
    int r = remove_fd(loop, fd, write);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static int dispatch_one(gl_loop *loop, int fd, int write)
{
    PyObject *handle = (write ? loop->writers : loop->readers)[fd];
    if (handle == NULL) {
        return 0;
    }
    if (gl_handle_is_cancelled(handle)) {
        return remove_fd(loop, fd, write) < 0 ? -1 : 0;
    }
    return gl_ring_push(&loop->ready, Py_NewRef(handle));
}

/* selector_events._process_events for one ready fd. */
int gl_io_dispatch_fd(gl_loop *loop, int fd, uint32_t mask)
{
    if (fd < 0 || fd >= loop->fdcap) {
        return 0;
    }
    /* An event for a parked fd (edge-triggered: once per arrival) is data
     * the socket's next sock_recv reads before waiting: nothing to do. */
    if ((mask & GL_EVENT_READ) && dispatch_one(loop, fd, 0) < 0) {
        return -1;
    }
    if ((mask & GL_EVENT_WRITE) && dispatch_one(loop, fd, 1) < 0) {
        return -1;
    }
    return 0;
}

void gl_io_clear(gl_loop *loop)
{
    for (int fd = 0; fd < loop->fdcap; fd++) {
        Py_CLEAR(loop->readers[fd]);
        Py_CLEAR(loop->writers[fd]);
        Py_CLEAR(loop->parked[fd]);
        Py_CLEAR(loop->fileobjs[fd]);
    }
    loop->nfds = 0;
}

void gl_io_free(gl_loop *loop)
{
    gl_io_clear(loop);
    PyMem_Free(loop->readers);
    PyMem_Free(loop->writers);
    PyMem_Free(loop->parked);
    PyMem_Free(loop->fileobjs);
    PyMem_Free(loop->ebuf);
    loop->readers = loop->writers = loop->parked = loop->fileobjs = NULL;
    loop->ebuf = NULL;
    loop->fdcap = loop->ebuf_cap = 0;
}

/* _fd_set(fd, reader, writer): make fd's handles exactly these (None for
 * none), as EngineSelector.register/modify/unregister ask; unlike
 * _add_reader it cancels nothing (asyncio's caller does that). */
PyObject *gl_io_set(gl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_fd_set(fd, reader, writer)");
        return NULL;
    }
    int fd = fileobj_lookup(loop, args[0]);
    if (fd < 0 || ensure_fd(loop, fd) < 0) {
        return NULL;
    }
    PyObject *reader = args[1] == Py_None ? NULL : args[1];
    PyObject *writer = args[2] == Py_None ? NULL : args[2];
    unpark(loop, fd);
    uint32_t old = gl_fd_mask(loop, fd);
    uint32_t mask = (reader ? GL_EVENT_READ : 0) | (writer ? GL_EVENT_WRITE : 0);
    if (mask == 0) {
        (void)engine_interest(loop, fd, 0);
    } else if (mask != old && set_interest(loop, fd, mask) < 0) {
        return NULL;
    }
    if (old == 0 || mask == 0) {
        set_fileobj(loop, fd, mask != 0 ? args[0] : NULL);
    }
    Py_XSETREF(loop->readers[fd], Py_XNewRef(reader));
    Py_XSETREF(loop->writers[fd], Py_XNewRef(writer));
    loop->nfds += (mask != 0) - (old != 0);
    Py_RETURN_NONE;
}

/* (fd, events, reader, writer, registered object) of fileobj, for the
 * EngineSelector view; the registered object is the fd when the program
 * named it by number. */
PyObject *gl_io_registration(gl_loop *loop, PyObject *fileobj)
{
    int fd = fileobj_lookup(loop, fileobj);
    if (fd < 0) {
        return NULL;
    }
    int known = fd < loop->fdcap;
    PyObject *r = known && loop->readers[fd] ? loop->readers[fd] : Py_None;
    PyObject *w = known && loop->writers[fd] ? loop->writers[fd] : Py_None;
    PyObject *obj = known ? loop->fileobjs[fd] : NULL;
    if (obj != NULL) {
        return Py_BuildValue("(iIOOO)", fd, gl_fd_mask(loop, fd), r, w, obj);
    }
    return Py_BuildValue("(iIOOi)", fd, gl_fd_mask(loop, fd), r, w, fd);
}

PyObject *gl_io_registrations(gl_loop *loop)
{
    PyObject *list = PyList_New(0);
    for (int fd = 0; list != NULL && fd < loop->fdcap; fd++) {
        if (gl_fd_mask(loop, fd) == 0) {
            continue;
        }
        PyObject *n = PyLong_FromLong(fd);
        if (n == NULL || PyList_Append(list, n) < 0) {
            Py_XDECREF(n);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(n);
    }
    return list;
}
