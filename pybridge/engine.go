// Command pybridge is the cgo layer that turns the goloop engine into the
// CPython extension module goloop._goloop (built with -buildmode=c-shared).
//
// This file, resolve.go and process.go are the whole C->Go surface: an
// engine is created once per loop, a batch of name lookups is started once
// per iteration that made any, and a child process once per spawn; the run
// loop itself never crosses. Interest changes (epoll_ctl) and the wait are
// made from C (epoll.c, poll.c): spaced out as a server makes them, each
// crossing cost ~1.5 us of Go scheduler work, not the ~50 ns of a call made
// back to back. The timers are C's too (timers.c): a burst of 100k call_at
// applied to Go's heap in one crossing stalled the next iteration for
// ~29-55 ms. Everything that happens once per callback (handles, the ready
// queue, invoking callbacks) stays on the C side: a C->Go call costs ~50 ns
// here (benchmarks/crossing.py), against a per-callback budget of ~100 ns.
package main

/*
#include "engine_abi.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/goloop-dev/goloop/goloop"
	"golang.org/x/sys/unix"
)

// maxEngines bounds the number of live loops in one process; the C side
// holds an engine's index in this table, not a Go pointer.
const maxEngines = 1 << 16

var (
	engines   [maxEngines]atomic.Pointer[goloop.Engine]
	enginesMu sync.Mutex
	freeIDs   []int32
	nextID    int32
)

func allocID(e *goloop.Engine) int32 {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	var id int32
	if n := len(freeIDs); n > 0 {
		id = freeIDs[n-1]
		freeIDs = freeIDs[:n-1]
	} else if nextID < maxEngines {
		id = nextID
		nextID++
	} else {
		return -1
	}
	engines[id].Store(e)
	return id
}

func releaseID(id int32) *goloop.Engine {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	e := engines[id].Swap(nil)
	if e != nil {
		freeIDs = append(freeIDs, id)
	}
	return e
}

func errnoOf(err error) C.int {
	if err == nil {
		return 0
	}
	if en, ok := err.(unix.Errno); ok {
		return C.int(en)
	}
	return C.int(unix.EIO)
}

// glGoVersion returns runtime.Version() (the Go release the extension was
// built with) as a C string the caller frees; module.c publishes it as
// goloop._goloop.go_version for `python -m goloop info`.
//
//export glGoVersion
func glGoVersion() *C.char {
	return C.CString(runtime.Version())
}

// glEngineNew creates an engine and stores its eventfd in *wakefd and its
// epoll fd in *epfd (the C side waits on it itself, see poll.c); it returns
// the engine id, or -errno.
//
//export glEngineNew
func glEngineNew(wakefd *C.int, epfd *C.int) C.int {
	e, err := goloop.NewEngine()
	if err != nil {
		return -errnoOf(err)
	}
	id := allocID(e)
	if id < 0 {
		_ = e.Close()
		return -C.int(unix.EMFILE)
	}
	*wakefd = C.int(e.WakeFD())
	*epfd = C.int(e.EpollFD())
	return C.int(id)
}

//export glEngineFree
func glEngineFree(id C.int) {
	if id < 0 || id >= maxEngines {
		return
	}
	if e := releaseID(int32(id)); e != nil {
		_ = e.Close()
	}
}

func main() {}
