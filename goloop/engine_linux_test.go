package goloop

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine()
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// wakeFrom does what C does to wake the loop (loop.c, resolve.c): write the
// 8-byte counter increment to the eventfd.
func wakeFrom(fd int) error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, err := unix.Write(fd, one[:])
	return err
}

// epollReady waits up to timeoutMs on the engine's epoll set, as poll.c
// does, and returns the data.fd of each reported event.
func epollReady(t *testing.T, e *Engine, timeoutMs int) []int32 {
	t.Helper()
	events := make([]unix.EpollEvent, 8)
	n, err := unix.EpollWait(e.EpollFD(), events, timeoutMs)
	for err == unix.EINTR {
		n, err = unix.EpollWait(e.EpollFD(), events, timeoutMs)
	}
	require.NoError(t, err)
	fds := make([]int32, n)
	for i := range n {
		fds[i] = events[i].Fd
	}
	return fds
}

func TestEngineFDFlags(t *testing.T) {
	e := newTestEngine(t)
	for _, fd := range []int{e.EpollFD(), e.WakeFD()} {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.NoError(t, err)
		assert.NotZero(t, flags&unix.FD_CLOEXEC, "fd %d is inherited by children", fd)
	}
	fl, err := unix.FcntlInt(uintptr(e.WakeFD()), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, fl&unix.O_NONBLOCK, "C drains the eventfd until EAGAIN")
	assert.NotEqual(t, e.EpollFD(), e.WakeFD())
}

// The contract poll.c relies on: a write to WakeFD makes the epoll set
// report an event whose data is the eventfd's number, level-triggered
// until drained.
func TestEngineWakeFDIsRegisteredForRead(t *testing.T) {
	e := newTestEngine(t)
	assert.Empty(t, epollReady(t, e, 0), "nothing before a wake-up")
	require.NoError(t, wakeFrom(e.WakeFD()))
	require.NoError(t, wakeFrom(e.WakeFD()))
	assert.Equal(t, []int32{int32(e.WakeFD())}, epollReady(t, e, 1000))
	assert.Equal(t, []int32{int32(e.WakeFD())}, epollReady(t, e, 0), "level-triggered")

	var buf [8]byte
	n, err := unix.Read(e.WakeFD(), buf[:])
	require.NoError(t, err)
	require.Equal(t, 8, n)
	assert.Equal(t, uint64(2), binary.NativeEndian.Uint64(buf[:]), "wake-ups add up")
	_, err = unix.Read(e.WakeFD(), buf[:])
	assert.ErrorIs(t, err, unix.EAGAIN, "one read drains it")
	assert.Empty(t, epollReady(t, e, 0))
}

// Wakers are other threads (call_soon_threadsafe, lookups finishing on
// goroutines); run under -race.
func TestEngineConcurrentWakers(t *testing.T) {
	e := newTestEngine(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_ = wakeFrom(e.WakeFD())
			}
		})
	}
	wg.Wait()
	var buf [8]byte
	_, err := unix.Read(e.WakeFD(), buf[:])
	require.NoError(t, err)
	assert.Equal(t, uint64(800), binary.NativeEndian.Uint64(buf[:]))
}

func TestEngineCloseIdempotent(t *testing.T) {
	e, err := NewEngine()
	require.NoError(t, err)
	epfd, wakeFD := e.EpollFD(), e.WakeFD()
	require.NoError(t, e.Close())
	assert.Equal(t, -1, e.EpollFD())
	assert.Equal(t, -1, e.WakeFD())
	for _, fd := range []int{epfd, wakeFD} {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		assert.ErrorIs(t, err, unix.EBADF, "fd %d left open", fd)
	}
	require.NoError(t, e.Close())
}
