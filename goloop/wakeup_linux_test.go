package goloop

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func newTestWakeup(t *testing.T) *Wakeup {
	t.Helper()
	w, err := NewWakeup()
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	return w
}

// readable reports whether fd is readable right now.
func readable(t *testing.T, fd int) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	for err == unix.EINTR {
		n, err = unix.Poll(fds, 0)
	}
	require.NoError(t, err)
	return n == 1 && fds[0].Revents&unix.POLLIN != 0
}

func TestWakeupWakeAndDrain(t *testing.T) {
	w := newTestWakeup(t)
	assert.False(t, readable(t, w.FD()))
	for range 3 {
		require.NoError(t, w.Wake())
	}
	assert.True(t, readable(t, w.FD()))
	w.Drain()
	assert.False(t, readable(t, w.FD()))
	w.Drain() // draining an empty counter is fine
}

func TestWakeupFlags(t *testing.T) {
	w := newTestWakeup(t)
	fl, err := unix.FcntlInt(uintptr(w.FD()), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, fl&unix.O_NONBLOCK)
	fd, err := unix.FcntlInt(uintptr(w.FD()), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, fd&unix.FD_CLOEXEC)
}

func TestWakeupDirectWriteFromC(t *testing.T) {
	// C writes the 8-byte host-endian increment itself.
	w := newTestWakeup(t)
	var buf [8]byte
	binary.NativeEndian.PutUint64(buf[:], 1)
	_, err := unix.Write(w.FD(), buf[:])
	require.NoError(t, err)
	assert.True(t, readable(t, w.FD()))
	w.Drain()
	assert.False(t, readable(t, w.FD()))
}

func TestWakeupSaturatedCounterIsFine(t *testing.T) {
	w := newTestWakeup(t)
	var buf [8]byte
	binary.NativeEndian.PutUint64(buf[:], 0xffff_ffff_ffff_fffe) // the maximum
	_, err := unix.Write(w.FD(), buf[:])
	require.NoError(t, err)
	assert.NoError(t, w.Wake(), "EAGAIN swallowed")
	w.Drain()
	assert.False(t, readable(t, w.FD()))
}

func TestWakeupConcurrentWakers(t *testing.T) {
	w := newTestWakeup(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				assert.NoError(t, w.Wake())
			}
		})
	}
	wg.Wait()
	assert.True(t, readable(t, w.FD()))
	w.Drain()
	assert.False(t, readable(t, w.FD()))
}

func TestWakeupClose(t *testing.T) {
	w, err := NewWakeup()
	require.NoError(t, err)
	require.NoError(t, w.Close())
	assert.Equal(t, -1, w.FD())
	assert.NoError(t, w.Close(), "idempotent")
	assert.ErrorIs(t, w.Wake(), unix.EBADF)
}

func TestWakeupDoesNotAllocate(t *testing.T) {
	w := newTestWakeup(t)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_ = w.Wake()
		w.Drain()
	}))
}

func TestWakeupUnblocksPoll(t *testing.T) {
	e := newTestEngine(t)
	var woken atomic.Bool
	done := make(chan PollResult, 1)
	go func() {
		var res PollResult
		// Repeat only on a spurious early return (EINTR from a runtime
		// signal) that happened before the wake-up was even sent.
		for !woken.Load() {
			e.Poll(true, -1, nil, make([]Event, 8), make([]int32, 8), &res)
		}
		done <- res
	}()
	time.Sleep(20 * time.Millisecond) // let it block (not required for correctness)
	woken.Store(true)
	require.NoError(t, wakeFrom(e.WakeFD()))

	select {
	case res := <-done:
		assert.Zero(t, res.NEvents, "the wake-up fd is never reported")
		assert.Zero(t, res.Err)
	case <-time.After(time.Second):
		t.Fatal("Poll was not woken within a second")
	}
	var res PollResult
	e.Poll(false, 0, nil, make([]Event, 8), nil, &res)
	assert.Zero(t, res.NEvents)
	assert.False(t, readable(t, e.WakeFD()), "drained")
}

func TestWakeupFDNeverReported(t *testing.T) {
	e := newTestEngine(t)
	pp := newPipe(t)
	require.NoError(t, e.SetInterest(pp.w, EventWrite))
	require.NoError(t, wakeFrom(e.WakeFD()))

	events := make([]Event, 1) // room for one: the wake-up must not take it
	var res PollResult
	e.Poll(false, 0, nil, events, nil, &res)
	require.Equal(t, int32(1), res.NEvents)
	assert.Equal(t, Event{Fd: int32(pp.w), Mask: EventWrite}, events[0])
	for range 3 {
		e.Poll(false, 0, nil, events, nil, &res)
		require.Equal(t, int32(1), res.NEvents)
		assert.Equal(t, int32(pp.w), events[0].Fd)
	}
}

// wakeFrom wakes like another thread would: through the fd only.
func wakeFrom(fd int) error {
	return (&Wakeup{fd: fd}).Wake()
}
