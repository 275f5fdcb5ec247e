package main

/*
#include "process.h"
*/
import "C"

import (
	"syscall"
	"unsafe"

	"github.com/goloop-dev/goloop/goloop"
)

func goStrings(p **C.char, n C.int) []string {
	if p == nil {
		return nil
	}
	src := unsafe.Slice(p, int(n))
	out := make([]string, len(src))
	for i, s := range src {
		out[i] = C.GoString(s)
	}
	return out
}

// glProcessSpawn starts the child process.c describes in req (goloop.Spawn:
// a vfork-style clone, with a pidfd) and stores its pid and pidfd there.
// One crossing per spawn: a spawn costs tens of microseconds of system
// time, the crossing ~1.5 us. Returns 0, or the errno of the failure
// (the child's, from before or at execve).
//
//export glProcessSpawn
func glProcessSpawn(req *C.gl_spawn_req) C.int {
	sys := &syscall.SysProcAttr{Setsid: req.setsid != 0}
	if req.pgid >= 0 {
		sys.Setpgid = true
		sys.Pgid = int(req.pgid)
	}
	if req.cred != 0 {
		cred := &syscall.Credential{Uid: uint32(req.uid), Gid: uint32(req.gid), NoSetGroups: req.ngroups < 0}
		if req.ngroups > 0 {
			groups := unsafe.Slice(req.groups, int(req.ngroups))
			cred.Groups = make([]uint32, len(groups))
			for i, g := range groups {
				cred.Groups[i] = uint32(g)
			}
		}
		sys.Credential = cred
	}
	files := make([]uintptr, int(req.nfiles))
	for i, fd := range unsafe.Slice(req.files, int(req.nfiles)) {
		files[i] = uintptr(int(fd)) // -1 becomes ^0: closed in the child
	}
	dir := ""
	if req.dir != nil {
		dir = C.GoString(req.dir)
	}
	pid, pidfd, err := goloop.Spawn(C.GoString(req.path), goStrings(req.argv, req.argc),
		goStrings(req.envp, req.envc), dir, files, sys)
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return C.int(errno)
		}
		return C.int(syscall.EINVAL)
	}
	req.pid = C.int(pid)
	req.pidfd = C.int(pidfd)
	return 0
}

// glProcessReapLater hands a child's pidfd to Go, which reaps the child
// when it exits (goloop.ReapLater): children that outlive their loop.
//
//export glProcessReapLater
func glProcessReapLater(pidfd C.int) {
	goloop.ReapLater(int(pidfd))
}
