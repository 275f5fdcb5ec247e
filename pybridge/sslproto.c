/* The per-record half of goloop's TLS protocol (SSLProtocolCore).
 *
 * goloop.sslproto.SSLProtocol derives from this type and from asyncio's
 * sslproto.SSLProtocol: its state lives where asyncio's code keeps it (the
 * instance's attributes), the handshake, shutdown, timeouts and errors are
 * asyncio's Python, and these methods replace asyncio's on the path every
 * record takes: get_buffer/buffer_updated feeding the incoming MemoryBIO,
 * the SSLObject.read loop into the app protocol's data_received,
 * _write_appdata/_do_write through SSLObject.write, and the outgoing BIO
 * into the socket transport, with the flow-control checks in between.
 * Each is asyncio's method (identical in 3.11.2 to 3.13.0) step for step;
 * where it reaches a rare branch (a closed connection's writes, a buffer to
 * grow, a flow-control change, a BufferedProtocol app) it calls asyncio's
 * Python. For the exact ssl.SSLObject, read and write call the _ssl object
 * under it, as SSLObject.read/write themselves do: one Python frame less
 * per call. The attributes these methods read are fields of the instance
 * (below), shared with asyncio's Python through member descriptors.
 *
 * The app transport's write, is_closing and get_write_buffer_size, which
 * protocols call per write, are C too (SSLTransportCore, at the end). */

#include "goloop.h"

static struct {
    PyObject *do_handshake, *wrapped, *flushing, *shutdown, *unwrapped; /* SSLProtocolState */
    PyObject *again;             /* SSLAgainErrors */
    PyObject *write_appdata;     /* asyncio's SSLProtocol._write_appdata */
    PyObject *get_buffer;        /* asyncio's SSLProtocol.get_buffer */
    PyTypeObject *sslobject;     /* ssl.SSLObject */
    PyTypeObject *protocol;      /* goloop.sslproto.SSLProtocol */
    PyObject *bytes_like;        /* (bytes, bytearray, memoryview) */
    PyObject *fatal_message;
    PyObject *empty; /* b"", whose join() makes one data_received argument */
} S;

/* The attributes the per-record path reads, by asyncio's names: fields of
 * the instance, which asyncio's Python reads and sets through member
 * descriptors. In the instance __dict__ each read from C was a type lookup
 * along the MRO and a dict lookup: 22% of the instructions of a 1 KiB echo
 * round trip (client and server on one loop, callgrind), 107k -> 88k per
 * round trip with the fields (uvloop 72k). */
enum {
    F_STATE,
    F_SSLOBJ,
    F_INCOMING,
    F_OUTGOING,
    F_TRANSPORT,
    F_APP_PROTOCOL,
    F_WRITE_BACKLOG,
    F_WRITE_BUFFER_SIZE,
    F_SSL_BUFFER,
    F_SSL_BUFFER_VIEW,
    F_APP_READING_PAUSED,
    F_APP_PROTOCOL_IS_BUFFER,
    F_SSL_WRITING_PAUSED,
    F_APP_WRITING_PAUSED,
    F_SSL_READING_PAUSED,
    F_OUTGOING_HIGH_WATER,
    F_OUTGOING_LOW_WATER,
    F_INCOMING_HIGH_WATER,
    F_INCOMING_LOW_WATER,
    NFIELDS
};

static const char *const field_names[NFIELDS] = {
    "_state",
    "_sslobj",
    "_incoming",
    "_outgoing",
    "_transport",
    "_app_protocol",
    "_write_backlog",
    "_write_buffer_size",
    "_ssl_buffer",
    "_ssl_buffer_view",
    "_app_reading_paused",
    "_app_protocol_is_buffer",
    "_ssl_writing_paused",
    "_app_writing_paused",
    "_ssl_reading_paused",
    "_outgoing_high_water",
    "_outgoing_low_water",
    "_incoming_high_water",
    "_incoming_low_water",
};

typedef struct {
    PyObject_HEAD
    PyObject *f[NFIELDS];
} gl_sslproto;

#define FIELDS(o) (((gl_sslproto *)(o))->f)

static PyMemberDef core_members[NFIELDS + 1];

/* self.<field>: a new reference, or NULL with asyncio's AttributeError. */
static PyObject *get(PyObject *self, int i)
{
    PyObject *v = FIELDS(self)[i];
    if (v == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                     Py_TYPE(self)->tp_name, field_names[i]);
        return NULL;
    }
    return Py_NewRef(v);
}

/* bool(self.<field>): 1, 0 or -1 */
static int flag(PyObject *self, int i)
{
    PyObject *v = FIELDS(self)[i];
    if (v == Py_True || v == Py_False) {
        return v == Py_True;
    }
    v = get(self, i);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

static PyObject *str_max_size, *str_control_app_writing, *str_control_ssl_reading,
    *str_do_handshake, *str_do_flush, *str_do_shutdown, *str_do_read__buffered,
    *str_data_received, *str_call_eof_received, *str_start_shutdown, *str_fatal_error, *str_write,
    *str_read, *str_pending, *str_append, *str_join, *str_sslobj, *str_ssl_protocol, *str_closed,
    *str_write_appdata, *str_get_write_buffer_size;

static int init_names(void)
{
#define NAME(var, text)                                     \
    if ((var = PyUnicode_InternFromString(text)) == NULL) { \
        return -1;                                          \
    }
    NAME(str_max_size, "max_size")
    NAME(str_control_app_writing, "_control_app_writing")
    NAME(str_control_ssl_reading, "_control_ssl_reading")
    NAME(str_do_handshake, "_do_handshake")
    NAME(str_do_flush, "_do_flush")
    NAME(str_do_shutdown, "_do_shutdown")
    NAME(str_do_read__buffered, "_do_read__buffered")
    NAME(str_data_received, "data_received")
    NAME(str_call_eof_received, "_call_eof_received")
    NAME(str_start_shutdown, "_start_shutdown")
    NAME(str_fatal_error, "_fatal_error")
    NAME(str_write, "write")
    NAME(str_read, "read")
    NAME(str_pending, "pending")
    NAME(str_append, "append")
    NAME(str_join, "join")
    NAME(str_sslobj, "_sslobj")
    NAME(str_ssl_protocol, "_ssl_protocol")
    NAME(str_closed, "_closed")
    NAME(str_write_appdata, "_write_appdata")
    NAME(str_get_write_buffer_size, "_get_write_buffer_size")
#undef NAME
    S.fatal_message = PyUnicode_InternFromString("Fatal error on SSL protocol");
    S.empty = PyBytes_FromStringAndSize(NULL, 0);
    return S.fatal_message == NULL || S.empty == NULL ? -1 : 0;
}

static int ready(void)
{
    if (S.again == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "goloop: _ssl_setup() was not called");
        return -1;
    }
    return 0;
}

/* self.<name>() ; 0, or -1 with the exception set. */
static int call0(PyObject *self, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(self, name);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* `except Exception as ex: self._fatal_error(ex, 'Fatal error on SSL
 * protocol')` around a step that failed; SystemExit and the like go on. */
static int to_fatal_error(PyObject *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *exc = gl_take_exception();
    PyObject *args[] = {self, exc, S.fatal_message};
    PyObject *r = PyObject_VectorcallMethod(str_fatal_error, args,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* sslobj.read(n) or sslobj.write(data): through the _ssl object under an
 * exact ssl.SSLObject, as its own method does. */
static PyObject *sslobj_call(PyObject *sslobj, PyObject *name, PyObject *arg)
{
    PyObject *target = sslobj;
    if (Py_TYPE(sslobj) == S.sslobject) {
        target = PyObject_GetAttr(sslobj, str_sslobj);
        if (target == NULL) {
            return NULL;
        }
    } else {
        Py_INCREF(target);
    }
    PyObject *r = PyObject_CallMethodOneArg(target, name, arg);
    Py_DECREF(target);
    return r;
}

/* size >= self.<limit> (op Py_GE) or size <= self.<limit> (Py_LE). */
static int crosses(PyObject *size, PyObject *self, int limit_field, int op)
{
    PyObject *limit = get(self, limit_field);
    if (limit == NULL) {
        return -1;
    }
    int r = PyObject_RichCompareBool(size, limit, op);
    Py_DECREF(limit);
    return r;
}

/* _control_app_writing / _control_ssl_reading: asyncio's method is called
 * only when the size crosses a water mark the paused flag has not seen
 * yet, which is when it does anything. */
static int control(PyObject *self, PyObject *size, int high, int low, int paused_field,
                   PyObject *method)
{
    int paused = flag(self, paused_field);
    if (paused < 0) {
        return -1;
    }
    int act = crosses(size, self, paused ? low : high, paused ? Py_LE : Py_GE);
    if (act <= 0) {
        return act;
    }
    return call0(self, method);
}

static PyObject *bio_pending(PyObject *self, int bio_field)
{
    PyObject *bio = get(self, bio_field);
    if (bio == NULL) {
        return NULL;
    }
    PyObject *pending = PyObject_GetAttr(bio, str_pending);
    Py_DECREF(bio);
    return pending;
}

/* _get_write_buffer_size(): outgoing.pending + _write_buffer_size */
static PyObject *write_buffer_size(PyObject *self)
{
    PyObject *pending = bio_pending(self, F_OUTGOING);
    if (pending == NULL) {
        return NULL;
    }
    PyObject *buffered = get(self, F_WRITE_BUFFER_SIZE);
    PyObject *size = buffered == NULL ? NULL : PyNumber_Add(pending, buffered);
    Py_DECREF(pending);
    Py_XDECREF(buffered);
    return size;
}

static int control_app_writing(PyObject *self)
{
    PyObject *size = write_buffer_size(self);
    if (size == NULL) {
        return -1;
    }
    int r = control(self, size, F_OUTGOING_HIGH_WATER, F_OUTGOING_LOW_WATER,
                    F_APP_WRITING_PAUSED, str_control_app_writing);
    Py_DECREF(size);
    return r;
}

static int control_ssl_reading(PyObject *self)
{
    PyObject *size = bio_pending(self, F_INCOMING);
    if (size == NULL) {
        return -1;
    }
    int r = control(self, size, F_INCOMING_HIGH_WATER, F_INCOMING_LOW_WATER,
                    F_SSL_READING_PAUSED, str_control_ssl_reading);
    Py_DECREF(size);
    return r;
}

static int process_outgoing(PyObject *self)
{
    int paused = flag(self, F_SSL_WRITING_PAUSED);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        PyObject *outgoing = get(self, F_OUTGOING);
        if (outgoing == NULL) {
            return -1;
        }
        PyObject *data = PyObject_CallMethodNoArgs(outgoing, str_read);
        Py_DECREF(outgoing);
        if (data == NULL) {
            return -1;
        }
        Py_ssize_t n = PyObject_Length(data);
        if (n > 0) {
            PyObject *transport = get(self, F_TRANSPORT);
            PyObject *r = NULL;
            if (transport != NULL) {
                r = PyObject_CallMethodOneArg(transport, str_write, data);
                Py_DECREF(transport);
            }
            Py_XDECREF(r);
            if (r == NULL) {
                n = -1;
            }
        }
        Py_DECREF(data);
        if (n < 0) {
            return -1;
        }
    }
    return control_app_writing(self);
}

/* self._write_buffer_size -= n */
static int shrink_write_buffer_size(PyObject *self, Py_ssize_t n)
{
    PyObject *size = get(self, F_WRITE_BUFFER_SIZE);
    if (size == NULL) {
        return -1;
    }
    PyObject *by = PyLong_FromSsize_t(n);
    PyObject *left = by == NULL ? NULL : PyNumber_InPlaceSubtract(size, by);
    Py_DECREF(size);
    Py_XDECREF(by);
    if (left == NULL) {
        return -1;
    }
    Py_XSETREF(FIELDS(self)[F_WRITE_BUFFER_SIZE], left);
    return 0;
}

/* One backlog entry through SSLObject.write: 1 written (whole or part), 0
 * when the SSLObject wants I/O (SSLAgainErrors), -1 on another error. */
static int write_one(PyObject *self, PyObject *backlog, PyObject *sslobj)
{
    PyObject *data = PySequence_GetItem(backlog, 0);
    if (data == NULL) {
        return -1;
    }
    PyObject *count_obj = sslobj_call(sslobj, str_write, data);
    if (count_obj == NULL) {
        Py_DECREF(data);
        if (PyErr_ExceptionMatches(S.again)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    Py_ssize_t count = PyLong_AsSsize_t(count_obj);
    Py_DECREF(count_obj);
    Py_ssize_t data_len = count == -1 && PyErr_Occurred() ? -1 : PyObject_Length(data);
    int r = -1;
    if (data_len < 0) {
        /* the error is set */
    } else if (count < data_len) {
        PyObject *rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
        if (rest != NULL && PySequence_SetItem(backlog, 0, rest) == 0) {
            r = shrink_write_buffer_size(self, count);
        }
        Py_XDECREF(rest);
    } else if (PySequence_DelItem(backlog, 0) == 0) {
        r = shrink_write_buffer_size(self, data_len);
    }
    Py_DECREF(data);
    return r < 0 ? -1 : 1;
}

static int do_write(PyObject *self)
{
    PyObject *backlog = get(self, F_WRITE_BACKLOG);
    if (backlog == NULL) {
        return -1;
    }
    PyObject *sslobj = get(self, F_SSLOBJ);
    int r = sslobj == NULL ? -1 : 1;
    while (r > 0) {
        r = PyObject_IsTrue(backlog);
        if (r > 0) {
            r = write_one(self, backlog, sslobj);
        }
    }
    Py_DECREF(backlog);
    Py_XDECREF(sslobj);
    return r < 0 ? -1 : process_outgoing(self);
}

/* _do_read__copied: every record the incoming BIO completes, in one
 * data_received call; close_notify (an empty read) starts the shutdown. */
static int read_copied(PyObject *self)
{
    PyObject *sslobj = get(self, F_SSLOBJ);
    if (sslobj == NULL) {
        return -1;
    }
    PyObject *max_size = PyObject_GetAttr(self, str_max_size);
    PyObject *first = NULL, *chunks = NULL;
    int eof = 0, failed = max_size == NULL;
    while (!failed) {
        PyObject *chunk = sslobj_call(sslobj, str_read, max_size);
        if (chunk == NULL) {
            if (PyErr_ExceptionMatches(S.again)) {
                PyErr_Clear();
            } else {
                failed = 1;
            }
            break;
        }
        int nonempty = PyObject_IsTrue(chunk);
        if (nonempty <= 0) {
            Py_DECREF(chunk);
            failed = nonempty < 0;
            eof = nonempty == 0;
            break;
        }
        if (first == NULL) {
            first = chunk;
            continue;
        }
        if (chunks == NULL && (chunks = PyList_New(0)) != NULL) {
            failed = PyList_Append(chunks, first) < 0;
        }
        failed = failed || chunks == NULL || PyList_Append(chunks, chunk) < 0;
        Py_DECREF(chunk);
    }
    Py_DECREF(sslobj);
    Py_XDECREF(max_size);
    PyObject *data = NULL;
    if (!failed && chunks != NULL) {
        data = PyObject_CallMethodOneArg(S.empty, str_join, chunks);
        failed = data == NULL;
    } else if (!failed && first != NULL) {
        data = Py_NewRef(first);
    }
    Py_XDECREF(first);
    Py_XDECREF(chunks);
    if (failed) {
        return -1;
    }
    if (data != NULL) {
        PyObject *app = get(self, F_APP_PROTOCOL);
        PyObject *r = NULL;
        if (app != NULL) {
            r = PyObject_CallMethodOneArg(app, str_data_received, data);
            Py_DECREF(app);
        }
        Py_DECREF(data);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    if (eof && (call0(self, str_call_eof_received) < 0 || call0(self, str_start_shutdown) < 0)) {
        return -1;
    }
    return 0;
}

static int do_read_steps(PyObject *self)
{
    int paused = flag(self, F_APP_READING_PAUSED);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        int buffered = flag(self, F_APP_PROTOCOL_IS_BUFFER);
        if (buffered < 0 || (buffered ? call0(self, str_do_read__buffered) : read_copied(self)) < 0) {
            return -1;
        }
        PyObject *backlog = get(self, F_WRITE_BACKLOG);
        if (backlog == NULL) {
            return -1;
        }
        int pending = PyObject_IsTrue(backlog);
        Py_DECREF(backlog);
        if (pending < 0 || (pending ? do_write(self) : process_outgoing(self)) < 0) {
            return -1;
        }
    }
    return control_ssl_reading(self);
}

static int do_read(PyObject *self)
{
    PyObject *state = get(self, F_STATE);
    if (state == NULL) {
        return -1;
    }
    int reading = state == S.wrapped || state == S.flushing;
    Py_DECREF(state);
    if (!reading || do_read_steps(self) == 0) {
        return 0;
    }
    return to_fatal_error(self);
}

static PyObject *none_or_null(int r)
{
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *m_do_read(PyObject *self, PyObject *unused)
{
    return ready() < 0 ? NULL : none_or_null(do_read(self));
}

static PyObject *m_do_write(PyObject *self, PyObject *unused)
{
    return ready() < 0 ? NULL : none_or_null(do_write(self));
}

static PyObject *m_process_outgoing(PyObject *self, PyObject *unused)
{
    return ready() < 0 ? NULL : none_or_null(process_outgoing(self));
}

static PyObject *m_get_buffer(PyObject *self, PyObject *n)
{
    if (ready() < 0) {
        return NULL;
    }
    /* The buffer made at __init__ holds max_size bytes: every request
     * the socket transport makes fits, and it is returned as is. */
    Py_ssize_t want = PyLong_AsSsize_t(n);
    if (want == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *max_size = PyObject_GetAttr(self, str_max_size);
    Py_ssize_t max = max_size == NULL ? -1 : PyLong_AsSsize_t(max_size);
    Py_XDECREF(max_size);
    PyObject *buffer = max == -1 && PyErr_Occurred() ? NULL : get(self, F_SSL_BUFFER);
    if (buffer == NULL) {
        return NULL;
    }
    Py_ssize_t have = PyObject_Length(buffer);
    Py_DECREF(buffer);
    if (have < 0) {
        return NULL;
    }
    if (want <= 0 || want > max) {
        want = max;
    }
    if (have < want) {
        return PyObject_CallFunctionObjArgs(S.get_buffer, self, n, NULL);
    }
    return get(self, F_SSL_BUFFER_VIEW);
}

static PyObject *m_buffer_updated(PyObject *self, PyObject *nbytes)
{
    if (ready() < 0) {
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(nbytes);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *view = get(self, F_SSL_BUFFER_VIEW);
    if (view == NULL) {
        return NULL;
    }
    PyObject *filled = PySequence_GetSlice(view, 0, n);
    Py_DECREF(view);
    if (filled == NULL) {
        return NULL;
    }
    PyObject *incoming = get(self, F_INCOMING);
    PyObject *r = NULL;
    if (incoming != NULL) {
        r = PyObject_CallMethodOneArg(incoming, str_write, filled);
        Py_DECREF(incoming);
    }
    Py_DECREF(filled);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    PyObject *state = get(self, F_STATE);
    if (state == NULL) {
        return NULL;
    }
    int done = 0;
    if (state == S.do_handshake) {
        done = call0(self, str_do_handshake);
    } else if (state == S.wrapped) {
        done = do_read(self);
    } else if (state == S.flushing) {
        done = call0(self, str_do_flush);
    } else if (state == S.shutdown) {
        done = call0(self, str_do_shutdown);
    }
    Py_DECREF(state);
    return none_or_null(done);
}

/* self._write_backlog.append(data); self._write_buffer_size += len(data) */
static int queue_write(PyObject *self, PyObject *backlog, PyObject *data)
{
    PyObject *r = PyObject_CallMethodOneArg(backlog, str_append, data);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    Py_ssize_t len = PyObject_Length(data);
    return len < 0 ? -1 : shrink_write_buffer_size(self, -len);
}

/* _write_appdata(list_of_data), or _write_appdata((one,)) when one is set
 * (the app transport's write, which so makes no tuple). */
static PyObject *write_appdata(PyObject *self, PyObject *list_of_data, PyObject *one)
{
    PyObject *state = get(self, F_STATE);
    if (state == NULL) {
        return NULL;
    }
    int closed = state == S.flushing || state == S.shutdown || state == S.unwrapped;
    Py_DECREF(state);
    if (closed) {
        /* asyncio's count of lost writes and its warning */
        PyObject *items = one == NULL ? Py_NewRef(list_of_data) : PyTuple_Pack(1, one);
        PyObject *r = items == NULL
                          ? NULL
                          : PyObject_CallFunctionObjArgs(S.write_appdata, self, items, NULL);
        Py_XDECREF(items);
        return r;
    }
    PyObject *backlog = get(self, F_WRITE_BACKLOG);
    int failed = backlog == NULL;
    if (!failed && one != NULL) {
        failed = queue_write(self, backlog, one) < 0;
    } else if (!failed) {
        PyObject *it = PyObject_GetIter(list_of_data);
        PyObject *data;
        failed = it == NULL;
        while (!failed && (data = PyIter_Next(it)) != NULL) {
            failed = queue_write(self, backlog, data) < 0;
            Py_DECREF(data);
        }
        failed = failed || PyErr_Occurred() != NULL;
        Py_XDECREF(it);
    }
    Py_XDECREF(backlog);
    if (failed) {
        return NULL;
    }
    state = get(self, F_STATE);
    if (state == NULL) {
        return NULL;
    }
    int wrapped = state == S.wrapped;
    Py_DECREF(state);
    if (wrapped && do_write(self) < 0 && to_fatal_error(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *m_write_appdata(PyObject *self, PyObject *list_of_data)
{
    return ready() < 0 ? NULL : write_appdata(self, list_of_data, NULL);
}

static PyObject *m_get_write_buffer_size(PyObject *self, PyObject *unused)
{
    return ready() < 0 ? NULL : write_buffer_size(self);
}

/* The app transport's (_SSLProtocolTransport's) calls a protocol makes per
 * write, asyncio's methods in C: for goloop's own SSLProtocol they go
 * straight to its C methods, otherwise through the protocol's. */

static PyObject *t_write(PyObject *self, PyObject *data)
{
    if (ready() < 0) {
        return NULL;
    }
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        /* isinstance() also answers for objects whose __class__ says so */
        int ok = PyObject_IsInstance(data, S.bytes_like);
        if (ok < 0) {
            return NULL;
        }
        if (!ok) {
            PyObject *name = PyType_GetName(Py_TYPE(data));
            if (name != NULL) {
                PyErr_Format(PyExc_TypeError, "data: expecting a bytes-like instance, got %U",
                             name);
                Py_DECREF(name);
            }
            return NULL;
        }
    }
    int nonempty = PyObject_IsTrue(data);
    if (nonempty <= 0) {
        return none_or_null(nonempty);
    }
    PyObject *proto = PyObject_GetAttr(self, str_ssl_protocol);
    if (proto == NULL) {
        return NULL;
    }
    PyObject *r;
    if (Py_TYPE(proto) == S.protocol) {
        r = write_appdata(proto, NULL, data);
    } else {
        PyObject *items = PyTuple_Pack(1, data);
        r = items == NULL ? NULL : PyObject_CallMethodOneArg(proto, str_write_appdata, items);
        Py_XDECREF(items);
    }
    Py_DECREF(proto);
    return r;
}

static PyObject *t_is_closing(PyObject *self, PyObject *unused)
{
    return PyObject_GetAttr(self, str_closed);
}

static PyObject *t_get_write_buffer_size(PyObject *self, PyObject *unused)
{
    if (ready() < 0) {
        return NULL;
    }
    PyObject *proto = PyObject_GetAttr(self, str_ssl_protocol);
    if (proto == NULL) {
        return NULL;
    }
    PyObject *r = Py_TYPE(proto) == S.protocol
                      ? write_buffer_size(proto)
                      : PyObject_CallMethodNoArgs(proto, str_get_write_buffer_size);
    Py_DECREF(proto);
    return r;
}

/* _ssl_setup(states, again, write_appdata, get_buffer, sslobject, protocol):
 * what asyncio's and ssl's modules give goloop.sslproto at import, and its
 * SSLProtocol class; states is (UNWRAPPED, DO_HANDSHAKE, WRAPPED, FLUSHING,
 * SHUTDOWN). */
static PyObject *ssl_setup(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *states;
    if (nargs != 6 || !PyTuple_Check(states = args[0]) || PyTuple_GET_SIZE(states) != 5 ||
        !PyType_Check(args[4]) || !PyType_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "_ssl_setup(states, again, write_appdata, get_buffer, sslobject, protocol)");
        return NULL;
    }
    PyObject *bytes_like = PyTuple_Pack(3, &PyBytes_Type, &PyByteArray_Type, &PyMemoryView_Type);
    if (bytes_like == NULL) {
        return NULL;
    }
    Py_XSETREF(S.bytes_like, bytes_like);
    Py_XSETREF(S.unwrapped, Py_NewRef(PyTuple_GET_ITEM(states, 0)));
    Py_XSETREF(S.do_handshake, Py_NewRef(PyTuple_GET_ITEM(states, 1)));
    Py_XSETREF(S.wrapped, Py_NewRef(PyTuple_GET_ITEM(states, 2)));
    Py_XSETREF(S.flushing, Py_NewRef(PyTuple_GET_ITEM(states, 3)));
    Py_XSETREF(S.shutdown, Py_NewRef(PyTuple_GET_ITEM(states, 4)));
    Py_XSETREF(S.write_appdata, Py_NewRef(args[2]));
    Py_XSETREF(S.get_buffer, Py_NewRef(args[3]));
    Py_XSETREF(S.sslobject, (PyTypeObject *)Py_NewRef(args[4]));
    Py_XSETREF(S.protocol, (PyTypeObject *)Py_NewRef(args[5]));
    Py_XSETREF(S.again, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"get_buffer", m_get_buffer, METH_O, NULL},
    {"buffer_updated", m_buffer_updated, METH_O, NULL},
    {"_do_read", m_do_read, METH_NOARGS, NULL},
    {"_write_appdata", m_write_appdata, METH_O, NULL},
    {"_do_write", m_do_write, METH_NOARGS, NULL},
    {"_process_outgoing", m_process_outgoing, METH_NOARGS, NULL},
    {"_get_write_buffer_size", m_get_write_buffer_size, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int core_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int i = 0; i < NFIELDS; i++) {
        Py_VISIT(FIELDS(self)[i]);
    }
    return 0;
}

static int core_clear(PyObject *self)
{
    for (int i = 0; i < NFIELDS; i++) {
        Py_CLEAR(FIELDS(self)[i]);
    }
    return 0;
}

static void core_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot core_slots[] = {
    {Py_tp_methods, core_methods},
    {Py_tp_members, core_members},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_doc, "The per-record methods of goloop.sslproto.SSLProtocol and the attributes "
                "they read (pybridge/sslproto.c)."},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "goloop._goloop.SSLProtocolCore",
    .basicsize = sizeof(gl_sslproto),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots,
};

static PyMethodDef transport_methods[] = {
    {"write", t_write, METH_O, NULL},
    {"is_closing", t_is_closing, METH_NOARGS, NULL},
    {"get_write_buffer_size", t_get_write_buffer_size, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot transport_slots[] = {
    {Py_tp_methods, transport_methods},
    {Py_tp_doc, "The per-write methods of goloop.sslproto._SSLProtocolTransport "
                "(pybridge/sslproto.c)."},
    {0, NULL},
};

static PyType_Spec transport_spec = {
    .name = "goloop._goloop.SSLTransportCore",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = transport_slots,
};

static int add_type(PyObject *module, PyType_Spec *spec, const char *name)
{
    PyObject *tp = PyType_FromSpec(spec);
    if (tp == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(module, name, tp);
    Py_DECREF(tp);
    return r;
}

static PyMethodDef setup_def = {"_ssl_setup", (PyCFunction)(void (*)(void))ssl_setup, METH_FASTCALL,
                                NULL};

int gl_sslproto_init(PyObject *module)
{
    if (init_names() < 0) {
        return -1;
    }
    for (int i = 0; i < NFIELDS; i++) {
        core_members[i] = (PyMemberDef){field_names[i], T_OBJECT_EX,
                                        offsetof(gl_sslproto, f) + i * sizeof(PyObject *), 0, NULL};
    }
    if (add_type(module, &core_spec, "SSLProtocolCore") < 0 ||
        add_type(module, &transport_spec, "SSLTransportCore") < 0) {
        return -1;
    }
    PyObject *setup = PyCFunction_NewEx(&setup_def, module, NULL);
    if (setup == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(module, "_ssl_setup", setup);
    Py_DECREF(setup);
    return r;
}
