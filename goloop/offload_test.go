package goloop

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOffloadRunsAllWithinTheBound(t *testing.T) {
	const n = 5 * maxOffloaded
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Add(n)
	for range n {
		Offload(func() {
			defer wg.Done()
			now := running.Add(1)
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			<-release
			running.Add(-1)
		})
	}
	// Wait until the bound is reached: every slot taken by a blocked call.
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < maxOffloaded {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d slots in use", running.Load(), maxOffloaded)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != maxOffloaded {
		t.Fatalf("peak concurrency %d, want %d", p, maxOffloaded)
	}
}
