package goloop

// maxOffloaded bounds the blocking calls Offload runs at once. A cgo call
// that blocks (libc's resolver waiting on DNS) pins an OS thread, so 1,000
// concurrent lookups would otherwise mean 1,000 threads; Go's own net
// package caps its cgo lookups the same way. Stock asyncio runs lookups in
// a thread pool of min(32, CPUs + 4) and libuv in 4 threads: 64 keeps more
// lookups in flight than either while the thread count stays bounded.
const maxOffloaded = 64

var offloadSlots = make(chan struct{}, maxOffloaded)

// Offload runs f, a call that may block for long (libc's resolver), on a
// goroutine, at most maxOffloaded at a time; later calls wait their turn in
// the order the scheduler gives them. f must not touch Python objects: its
// result goes back to the loop through memory and the engine's eventfd.
func Offload(f func()) {
	go func() {
		offloadSlots <- struct{}{}
		defer func() { <-offloadSlots }()
		f()
	}()
}
