package goloop

import (
	"encoding/binary"
	"sync"
	"testing"
	"unsafe"

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

func TestCLayouts(t *testing.T) {
	assert.Equal(t, uintptr(16), unsafe.Sizeof(TimerOp{}))
	assert.Equal(t, uintptr(4), unsafe.Offsetof(TimerOp{}.Kind))
	assert.Equal(t, uintptr(8), unsafe.Offsetof(TimerOp{}.When))

	var r PollResult
	assert.Equal(t, uintptr(32), unsafe.Sizeof(r))
	assert.Equal(t, uintptr(4), unsafe.Offsetof(r.NExpired))
	assert.Equal(t, uintptr(8), unsafe.Offsetof(r.More))
	assert.Equal(t, uintptr(12), unsafe.Offsetof(r.HasDeadline))
	assert.Equal(t, uintptr(16), unsafe.Offsetof(r.NextDeadline))
	assert.Equal(t, uintptr(24), unsafe.Offsetof(r.Err))
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

func TestEngineExpireTimersInOrder(t *testing.T) {
	e := newTestEngine(t)
	const now = 1000.0
	ops := []TimerOp{
		{Slot: 3, Kind: TimerAdd, When: now + 0.030},
		{Slot: 1, Kind: TimerAdd, When: now + 0.010},
		{Slot: 4, Kind: TimerAdd, When: now + 0.010}, // tie: FIFO after 1
		{Slot: 2, Kind: TimerAdd, When: now + 0.020},
		{Slot: 0, Kind: TimerAdd, When: now - 1}, // already due
	}
	expired := make([]int32, 8)
	var res PollResult
	var got []int32
	for _, end := range []float64{now, now + 0.010, now + 0.025, now + 0.031} {
		e.ExpireTimers(ops, end, expired, &res)
		ops = nil
		got = append(got, expired[:res.NExpired]...)
	}
	assert.Equal(t, []int32{0, 1, 4, 2, 3}, got)
	assert.Zero(t, res.HasDeadline)
	assert.Zero(t, res.More)
}

func TestEngineExpireTimersAppliesOpsAndPops(t *testing.T) {
	e := newTestEngine(t)
	ops := []TimerOp{
		{Slot: 1, Kind: TimerAdd, When: 10},
		{Slot: 2, Kind: TimerAdd, When: 5},
		{Slot: 3, Kind: TimerAdd, When: 20},
		{Slot: 3, Kind: TimerRemove},
	}
	expired := make([]int32, 1)
	var res PollResult
	e.ExpireTimers(ops, 11, expired, &res)
	require.EqualValues(t, 1, res.NExpired)
	assert.Equal(t, int32(2), expired[0])
	assert.EqualValues(t, 1, res.More, "slot 1 is due too but did not fit")
	e.PopExpired(expired, &res)
	require.EqualValues(t, 1, res.NExpired)
	assert.Equal(t, int32(1), expired[0])
	assert.EqualValues(t, 0, res.More)
	assert.EqualValues(t, 0, res.HasDeadline, "slot 3 was removed")
}

func TestEngineExpireTimersReportsNextDeadline(t *testing.T) {
	e := newTestEngine(t)
	expired := make([]int32, 4)
	var res PollResult
	// Add then remove in the same log: only the other timer is pending.
	e.ExpireTimers([]TimerOp{
		{Slot: 5, Kind: TimerAdd, When: 100},
		{Slot: 6, Kind: TimerAdd, When: 101},
		{Slot: 5, Kind: TimerRemove},
	}, 1, expired, &res)
	assert.Zero(t, res.NExpired)
	assert.Equal(t, int32(1), res.HasDeadline)
	assert.Equal(t, 101.0, res.NextDeadline)
	assert.Zero(t, res.Err)
}

func TestEnginePopExpiredKeepsTheCutOff(t *testing.T) {
	e := newTestEngine(t)
	var ops []TimerOp
	for i := range int32(5) {
		ops = append(ops, TimerOp{Slot: i, Kind: TimerAdd, When: 1 + float64(i)*1e-3})
	}
	ops = append(ops,
		TimerOp{Slot: 9, Kind: TimerAdd, When: 100},
		TimerOp{Slot: 8, Kind: TimerAdd, When: 50})
	expired := make([]int32, 2)
	var res PollResult
	e.ExpireTimers(ops, 10, expired, &res)
	require.Equal(t, int32(2), res.NExpired)
	assert.Equal(t, []int32{0, 1}, expired)
	assert.Equal(t, int32(1), res.More)

	e.PopExpired(expired, &res)
	require.Equal(t, int32(2), res.NExpired)
	assert.Equal(t, []int32{2, 3}, expired)
	assert.Equal(t, int32(1), res.More)

	e.PopExpired(expired, &res)
	require.Equal(t, int32(1), res.NExpired)
	assert.Equal(t, int32(4), expired[0])
	assert.Zero(t, res.More, "slot 8 is pending but after the cut-off")
	assert.Equal(t, int32(1), res.HasDeadline)
	assert.Equal(t, 50.0, res.NextDeadline)

	// Exactly filling the buffer is not "more".
	e.ExpireTimers([]TimerOp{{Slot: 1, Kind: TimerAdd, When: 1}, {Slot: 2, Kind: TimerAdd, When: 1}}, 10, expired, &res)
	assert.Equal(t, int32(2), res.NExpired)
	assert.Zero(t, res.More)
}

func TestEngineExpireTimersAllocs(t *testing.T) {
	e := newTestEngine(t)
	ops := []TimerOp{{Slot: 0, Kind: TimerAdd, When: 1}, {Slot: 0, Kind: TimerRemove}}
	expired := make([]int32, 8)
	var res PollResult
	e.ExpireTimers(ops, 2, expired, &res)
	allocs := testing.AllocsPerRun(100, func() { e.ExpireTimers(ops, 2, expired, &res) })
	assert.Zero(t, allocs)
}

func BenchmarkExpireTimersWithTimers(b *testing.B) {
	e := newTestEngine(b)
	expired := make([]int32, 64)
	var res PollResult
	ops := make([]TimerOp, 3)
	const far = 1e6
	for i := range int32(1000) {
		e.timers.Add(i+10, far+float64(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		ops[0] = TimerOp{Slot: 1, Kind: TimerAdd, When: 0} // due at once
		ops[1] = TimerOp{Slot: 2, Kind: TimerAdd, When: far}
		ops[2] = TimerOp{Slot: 2, Kind: TimerRemove}
		e.ExpireTimers(ops, 1, expired, &res)
	}
}
