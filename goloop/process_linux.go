package goloop

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

var catchXFSZ sync.Once

// Spawn starts a child process with syscall.ForkExec: a vfork-style clone
// (CLONE_VM|CLONE_VFORK) whose child makes only raw system calls before
// execve, so it is safe in a process whose other threads hold locks (the
// Python interpreter's, libc's malloc). The parent is suspended until the
// child has called execve or failed, and ForkExec reports a failure as the
// child's errno. pidfd is the child's pid file descriptor (CLONE_PIDFD,
// close-on-exec), which the caller owns: the loop reaps the child through it.
//
// The child's signal dispositions are Popen's with restore_signals=True:
// Go's child resets every signal the Go runtime handles to SIG_DFL before
// execve, which covers SIGPIPE (Go handles it in a c-shared library), but
// Python also ignores SIGXFSZ, which Go does not handle, so Spawn makes Go
// handle it (and drop it) first: the parent then still gets EFBIG rather
// than a signal from a write beyond RLIMIT_FSIZE, as with SIG_IGN, while
// its children start with the default action, as Popen's do.
func Spawn(argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (pid, pidfd int, err error) {
	catchXFSZ.Do(func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGXFSZ)
		go func() {
			for range c {
			}
		}()
	})
	pidfd = -1
	sys.PidFD = &pidfd
	pid, err = syscall.ForkExec(argv0, argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: sys})
	if err != nil {
		return 0, -1, err
	}
	return pid, pidfd, nil
}

// ReapLater takes ownership of pidfd and reaps its process once it exits:
// the fate of a child whose loop closed first. The wait is on Go's own
// poller (the pidfd becomes readable at exit), so a thousand orphans cost
// no thread each; waitid then collects the exit status, which nobody is
// left to read, so the child leaves no zombie behind.
func ReapLater(pidfd int) {
	if err := syscall.SetNonblock(pidfd, true); err != nil {
		go func() { // cannot use the poller: wait on a thread of its own
			var info unix.Siginfo
			for unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil) == syscall.EINTR {
			}
			syscall.Close(pidfd)
		}()
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	go func() {
		defer f.Close()
		rc, err := f.SyscallConn()
		if err != nil {
			return
		}
		_ = rc.Read(func(fd uintptr) bool {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED, nil)
			return err != syscall.EAGAIN && err != syscall.EINTR
		})
	}()
}
