package main

/*
#include "resolve.h"
*/
import "C"

import "github.com/goloop-dev/goloop/goloop"

// glResolveStart runs one name-resolution request (resolve.c) on a
// goroutine: the libc resolver blocks for as long as DNS takes, so it runs
// off the loop thread, as stock asyncio's executor thread does, without a
// Python thread, a concurrent.futures.Future or a call_soon_threadsafe per
// lookup. The goroutine touches only the C request; resolve.c hands the
// result to the loop through its completion list and the engine's eventfd.
//
//export glResolveStart
func glResolveStart(req *C.gl_resolve_req) {
	goloop.Offload(func() { C.gl_resolve_run(req) })
}
