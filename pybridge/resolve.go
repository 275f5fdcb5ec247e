package main

/*
#include "resolve.h"
*/
import "C"

import "github.com/goloop-dev/goloop/goloop"

// glResolveStart runs each name-resolution request (resolve.c) on the list
// from req on a goroutine: the libc resolver blocks for as long as DNS
// takes, so it runs off the loop thread, as stock asyncio's executor
// thread does, without a Python thread, a concurrent.futures.Future or a
// call_soon_threadsafe per lookup. The loop calls it once per iteration
// with every request that iteration made. Each goroutine touches only its
// C request; resolve.c hands the result to the loop through its completion
// list and the engine's eventfd.
//
//export glResolveStart
func glResolveStart(req *C.gl_resolve_req) {
	for req != nil {
		// Read before the goroutine starts: a finished request's next
		// links it into the completion list.
		r, next := req, req.next
		goloop.Offload(func() { C.gl_resolve_run(r) })
		req = next
	}
}
