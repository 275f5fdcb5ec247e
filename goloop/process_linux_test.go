package goloop

import (
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const cldExited = 1 // si_code of a child that called exit

func waitPidfd(t *testing.T, pidfd int) unix.Siginfo {
	t.Helper()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("waitid: %v", err)
		}
		return info
	}
}

func TestSpawnReturnsPidfdAndExitStatus(t *testing.T) {
	pid, pidfd, err := Spawn("/bin/sh", []string{"sh", "-c", "exit 7"}, nil, "", []uintptr{0, 1, 2}, &syscall.SysProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(pidfd)
	if pid <= 0 || pidfd < 0 {
		t.Fatalf("pid %d pidfd %d", pid, pidfd)
	}
	info := waitPidfd(t, pidfd)
	// si_status follows si_pid and si_uid in the SIGCHLD part of siginfo_t
	status := *(*int32)(unsafe.Add(unsafe.Pointer(&info), 24))
	if info.Code != cldExited || status != 7 {
		t.Fatalf("code %d status %d, want exited 7", info.Code, status)
	}
}

func TestSpawnReportsExecErrno(t *testing.T) {
	_, _, err := Spawn("/nonexistent/program", []string{"x"}, nil, "", []uintptr{0, 1, 2}, &syscall.SysProcAttr{})
	if err != syscall.ENOENT {
		t.Fatalf("err %v, want ENOENT", err)
	}
	_, _, err = Spawn("/bin/true", []string{"true"}, nil, "/nonexistent/dir", []uintptr{0, 1, 2}, &syscall.SysProcAttr{})
	if err != syscall.ENOENT {
		t.Fatalf("bad dir: err %v, want ENOENT", err)
	}
}

func TestSpawnResetsSignalsPythonIgnores(t *testing.T) {
	// The process ignores SIGXFSZ as Python does, with a plain sigaction
	// the Go runtime does not know of; the child must not ignore it.
	act := struct {
		handler, flags, restorer, mask uint64
	}{handler: 1} // SIG_IGN
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGXFSZ),
		uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); e != 0 {
		t.Fatal(e)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, pidfd, err := Spawn("/bin/sh", []string{"sh", "-c", "grep SigIgn /proc/$$/status"}, nil, "",
		[]uintptr{0, w.Fd(), 2}, &syscall.SysProcAttr{})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(pidfd)
	buf := make([]byte, 256)
	n, _ := r.Read(buf)
	waitPidfd(t, pidfd)
	var ignored uint64
	for _, c := range string(buf[:n]) {
		switch {
		case c >= '0' && c <= '9':
			ignored = ignored<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			ignored = ignored<<4 | uint64(c-'a'+10)
		}
	}
	if ignored&(1<<(uint(syscall.SIGXFSZ)-1)) != 0 {
		t.Fatalf("SigIgn %x: SIGXFSZ ignored in the child", ignored)
	}
}

func TestReapLaterLeavesNoZombie(t *testing.T) {
	pid, pidfd, err := Spawn("/bin/sh", []string{"sh", "-c", "sleep 0.1"}, nil, "", []uintptr{0, 1, 2}, &syscall.SysProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	ReapLater(pidfd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// once reaped, the pid is no child of ours any more
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err == syscall.ECHILD {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d not reaped", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
