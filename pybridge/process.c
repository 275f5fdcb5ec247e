/* Child processes started by the Go engine (issue 11).
 *
 * loop.subprocess_exec/_shell on a goloop loop start the child through
 * _goloop._spawn: process.py turns Popen's arguments into bytes and fds
 * exactly as subprocess.Popen does, this file turns those into a C request
 * (process.h), and the Go engine runs it with syscall.ForkExec (process.go,
 * goloop.Spawn: a vfork-style clone whose child makes only raw system calls
 * before execve) and a pidfd, which the loop then watches for the exit
 * (process.py). No Python thread, no child watcher, no SIGCHLD handler.
 *
 * close_fds: Python makes every fd it opens close-on-exec, so the child
 * keeps only fds the program made inheritable (os.set_inheritable, dup2)
 * or inherited itself. Popen's child closes those; Go's does not, so the
 * scan below lists them (/proc/self/fd) and the request marks each one
 * "closed in the child" (-1), which Go's child honours with close(2). */
#include "goloop.h"
#include "process.h"
#include "_cgo_export.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int is_kept(int fd, const int *keep, Py_ssize_t nkeep)
{
    for (Py_ssize_t i = 0; i < nkeep; i++) {
        if (keep[i] == fd) {
            return 1;
        }
    }
    return 0;
}

/* Appends to *out the inheritable fds >= 3 not in keep (the fds Popen's
 * close_fds would close in the child). 0, or an errno. */
static int inheritable_fds(const int *keep, Py_ssize_t nkeep, int **out, Py_ssize_t *nout)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return errno ? errno : ENOSYS;
    }
    int self = dirfd(d), err = 0;
    Py_ssize_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end != '\0' || end == e->d_name || fd < 3 || fd == self || is_kept((int)fd, keep, nkeep)) {
            continue;
        }
        int flags = fcntl((int)fd, F_GETFD);
        if (flags < 0 || (flags & FD_CLOEXEC)) {
            continue;
        }
        if (*nout == cap) {
            cap = cap ? cap * 2 : 16;
            int *n = realloc(*out, cap * sizeof(int));
            if (n == NULL) {
                err = ENOMEM;
                break;
            }
            *out = n;
        }
        (*out)[(*nout)++] = (int)fd;
    }
    closedir(d);
    return err;
}

/* Fills argv-style arrays with pointers into the bytes objects of seq
 * (a tuple or list of bytes, kept alive by the caller). */
static char **bytes_array(PyObject *seq, int *n)
{
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    char **arr = PyMem_Calloc(len + 1, sizeof(char *));
    if (arr == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *b = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(b)) {
            PyMem_Free(arr);
            PyErr_SetString(PyExc_TypeError, "_spawn: bytes expected");
            return NULL;
        }
        arr[i] = PyBytes_AS_STRING(b);
    }
    *n = (int)len;
    return arr;
}

static int as_int(PyObject *o, int *v)
{
    long l = PyLong_AsLong(o);
    if (l == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (l < INT_MIN || l > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "signed integer is greater than maximum");
        return -1;
    }
    *v = (int)l;
    return 0;
}

/* _spawn(path, argv, env, cwd, stdio, close_fds, pass_fds, setsid, pgid,
 *        uid, gid, groups) -> (pid, pidfd)
 *
 * path, argv's items, env's items and cwd are bytes (env and cwd may be
 * None: the current environment, no chdir); stdio is the three fds the
 * child gets as 0, 1 and 2 (i itself: inherited); pass_fds a tuple of
 * ints; pgid, uid and gid are -1 when not set, groups None when not set.
 * Raises OSError with the child's errno when the spawn fails (process.py
 * then lets asyncio's own path make the call, raising as stock does), and
 * returns None in a child forked after the Go runtime started (no Go). */
PyObject *gl_spawn(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "_spawn takes 12 arguments");
        return NULL;
    }
    if (gl_forked) {
        Py_RETURN_NONE;
    }
    PyObject *path = args[0], *env = args[2], *cwd = args[3], *stdio = args[4],
             *pass = args[6], *groups = args[11];
    if (!PyBytes_Check(path) || !PyTuple_Check(args[1]) ||
        (env != Py_None && !PyTuple_Check(env) && !PyList_Check(env)) ||
        (cwd != Py_None && !PyBytes_Check(cwd)) || !PyTuple_Check(stdio) ||
        PyTuple_GET_SIZE(stdio) != 3 || !PyTuple_Check(pass) ||
        (groups != Py_None && !PyTuple_Check(groups))) {
        PyErr_SetString(PyExc_TypeError, "_spawn: bad argument types");
        return NULL;
    }
    gl_spawn_req req;
    memset(&req, 0, sizeof(req));
    int close_fds = PyObject_IsTrue(args[5]), setsid = PyObject_IsTrue(args[7]);
    int pgid, uid, gid;
    if (close_fds < 0 || setsid < 0 || as_int(args[8], &pgid) < 0 || as_int(args[9], &uid) < 0 ||
        as_int(args[10], &gid) < 0) {
        return NULL;
    }
    Py_ssize_t npass = PyTuple_GET_SIZE(pass), ninh = 0;
    int *passv = NULL, *inh = NULL, *files = NULL, err = 0;
    unsigned int *groupv = NULL;
    PyObject *ret = NULL;
    req.path = PyBytes_AS_STRING(path);
    req.dir = cwd == Py_None ? NULL : PyBytes_AS_STRING(cwd);
    req.setsid = setsid;
    req.pgid = pgid;
    req.ngroups = -1;
    if ((req.argv = bytes_array(args[1], &req.argc)) == NULL) {
        goto done;
    }
    if (env != Py_None) {
        if ((req.envp = bytes_array(env, &req.envc)) == NULL) {
            goto done;
        }
    } else {
        /* The environment as it is now (os.environ's changes reach it
         * through putenv, under the GIL, held here) */
        int n = 0;
        while (environ[n] != NULL) {
            n++;
        }
        if ((req.envp = PyMem_Calloc(n + 1, sizeof(char *))) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(req.envp, environ, n * sizeof(char *));
        req.envc = n;
    }
    if (uid >= 0 || gid >= 0 || groups != Py_None) {
        req.cred = 1;
        req.uid = uid >= 0 ? (unsigned int)uid : getuid();
        req.gid = gid >= 0 ? (unsigned int)gid : getgid();
        if (groups != Py_None) {
            Py_ssize_t ng = PyTuple_GET_SIZE(groups);
            if ((groupv = PyMem_Calloc(ng + 1, sizeof(unsigned int))) == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            for (Py_ssize_t i = 0; i < ng; i++) {
                unsigned long g = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(groups, i));
                if (g == (unsigned long)-1 && PyErr_Occurred()) {
                    goto done;
                }
                groupv[i] = (unsigned int)g;
            }
            req.groups = groupv;
            req.ngroups = (int)ng;
        }
    }
    if ((passv = PyMem_Calloc(npass + 1, sizeof(int))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int maxfd = 2;
    for (Py_ssize_t i = 0; i < npass; i++) {
        if (as_int(PyTuple_GET_ITEM(pass, i), &passv[i]) < 0) {
            goto done;
        }
        if (passv[i] > maxfd) {
            maxfd = passv[i];
        }
    }
    if (close_fds && (err = inheritable_fds(passv, npass, &inh, &ninh)) != 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < ninh; i++) {
        if (inh[i] > maxfd) {
            maxfd = inh[i];
        }
    }
    req.nfiles = maxfd + 1;
    if ((files = PyMem_Malloc(req.nfiles * sizeof(int))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < req.nfiles; i++) {
        files[i] = -1; /* an inheritable fd close_fds closes (or none) */
    }
    for (int i = 0; i < 3; i++) {
        if (as_int(PyTuple_GET_ITEM(stdio, i), &files[i]) < 0) {
            goto done;
        }
        if (files[i] == i) {
            /* Inherited as is: Popen's child leaves it alone, so a closed
             * or close-on-exec fd is not there after execve. Go's child
             * would clear the flag (or fail on a closed fd). */
            int flags = fcntl(i, F_GETFD);
            if (flags < 0 || (flags & FD_CLOEXEC)) {
                files[i] = -1;
            }
        }
    }
    for (Py_ssize_t i = 0; i < npass; i++) {
        if (passv[i] >= 3) {
            files[passv[i]] = passv[i];
        }
    }
    req.files = files;
    req.pidfd = -1;
    Py_BEGIN_ALLOW_THREADS
    err = (int)glProcessSpawn(&req);
    Py_END_ALLOW_THREADS
    if (err != 0) {
        goto fail;
    }
    if (req.pidfd < 0) {
        /* Go falls back to no pidfd when clone refuses CLONE_PIDFD */
        req.pidfd = (int)syscall(SYS_pidfd_open, req.pid, 0);
        if (req.pidfd < 0) {
            /* cannot happen for our own unreaped child on a kernel with
             * pidfd_open; otherwise kill and reap it, and fail the spawn */
            int e = errno;
            kill(req.pid, SIGKILL);
            while (waitpid(req.pid, NULL, 0) < 0 && errno == EINTR) {
            }
            err = e;
            goto fail;
        }
    }
    ret = Py_BuildValue("ii", req.pid, req.pidfd);
    goto done;
fail:
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
done:
    PyMem_Free(req.argv);
    PyMem_Free(req.envp);
    PyMem_Free(groupv);
    PyMem_Free(passv);
    PyMem_Free(files);
    free(inh);
    return ret;
}

/* _reap_later(pidfd): the Go engine reaps the child behind pidfd (a dup
 * the caller hands over) when it exits: a child that outlived its loop. */
PyObject *gl_reap_later(PyObject *module, PyObject *arg)
{
    int fd;
    if (as_int(arg, &fd) < 0) {
        return NULL;
    }
    if (gl_forked) {
        PyErr_SetString(PyExc_RuntimeError, "no Go engine in a forked child");
        return NULL;
    }
    glProcessReapLater(fd);
    Py_RETURN_NONE;
}
