package goloop

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

func TestCLayouts(t *testing.T) {
	assert.Equal(t, uintptr(8), unsafe.Sizeof(Event{}))
	assert.Equal(t, uintptr(4), unsafe.Offsetof(Event{}.Mask))

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

func TestEngineCloseIdempotent(t *testing.T) {
	e, err := NewEngine()
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.NoError(t, e.Close())
}

func TestEngineRefusesWakeFD(t *testing.T) {
	e := newTestEngine(t)
	assert.ErrorIs(t, e.SetInterest(e.WakeFD(), 0), unix.EINVAL)
	assert.ErrorIs(t, e.SetInterest(e.WakeFD(), EventWrite), unix.EINVAL)
	// Still registered: a wake-up still interrupts a blocking Poll.
	require.NoError(t, wakeFrom(e.WakeFD()))
	var res PollResult
	e.Poll(true, 5000, nil, make([]Event, 4), nil, &res)
	assert.Zero(t, res.NEvents)
}

func TestEngineSetInterestReportsEvents(t *testing.T) {
	e := newTestEngine(t)
	pp := newPipe(t)
	require.NoError(t, e.SetInterest(pp.r, EventRead))
	writeByte(t, pp.w)
	events := make([]Event, 4)
	var res PollResult
	e.Poll(true, 1000, nil, events, nil, &res)
	require.Equal(t, int32(1), res.NEvents)
	assert.Equal(t, Event{Fd: int32(pp.r), Mask: EventRead}, events[0])
	assert.Zero(t, res.HasDeadline)
	assert.Same(t, &e.timers, e.Timers())
}

func TestEngineTimersExpireInOrder(t *testing.T) {
	e := newTestEngine(t)
	now := MonotonicNow()
	ops := []TimerOp{
		{Slot: 3, Kind: TimerAdd, When: now + 0.030},
		{Slot: 1, Kind: TimerAdd, When: now + 0.010},
		{Slot: 4, Kind: TimerAdd, When: now + 0.010}, // tie: FIFO after 1
		{Slot: 2, Kind: TimerAdd, When: now + 0.020},
		{Slot: 0, Kind: TimerAdd, When: now - 1}, // already due
	}
	total := len(ops)
	var got []int32
	expired := make([]int32, 8)
	var res PollResult
	for i := 0; len(got) < total; i++ {
		require.Less(t, i, 100, "timers did not all expire")
		e.Poll(true, -1, ops, nil, expired, &res)
		ops = nil
		got = append(got, expired[:res.NExpired]...)
	}
	assert.Equal(t, []int32{0, 1, 4, 2, 3}, got)
	assert.Zero(t, res.HasDeadline)
}

func TestEnginePollBlocksUntilNextDeadline(t *testing.T) {
	e := newTestEngine(t)
	start := time.Now()
	when := MonotonicNow() + 0.050
	ops := []TimerOp{{Slot: 7, Kind: TimerAdd, When: when}}
	expired := make([]int32, 4)
	var res PollResult
	polls := 0
	// Normally one Poll: the timeout is rounded up, so the timer has
	// expired on return. A spurious EINTR may add an iteration; a timeout
	// not derived from the deadline would spin (0) or hang (-1).
	for res.NExpired == 0 {
		polls++
		require.LessOrEqual(t, polls, 5, "Poll is not sleeping until the deadline")
		e.Poll(true, -1, ops, nil, expired, &res)
		ops = nil
	}
	elapsed := time.Since(start)

	require.Equal(t, int32(1), res.NExpired)
	assert.Equal(t, int32(7), expired[0])
	assert.GreaterOrEqual(t, elapsed, 45*time.Millisecond)
	assert.Less(t, elapsed, time.Second)
	assert.Zero(t, res.HasDeadline)
	assert.Zero(t, res.More)
}

func TestEnginePollHonoursMaxTimeout(t *testing.T) {
	e := newTestEngine(t)
	when := MonotonicNow() + 10
	e.Poll(false, -1, []TimerOp{{Slot: 1, Kind: TimerAdd, When: when}}, nil, nil, &PollResult{})
	var res PollResult
	longest := blockedFor(t, 3, 15*time.Millisecond, func() {
		e.Poll(true, 20, nil, nil, make([]int32, 4), &res)
	})
	assert.Zero(t, res.NExpired)
	assert.Equal(t, int32(1), res.HasDeadline)
	assert.Equal(t, when, res.NextDeadline)
	assert.GreaterOrEqual(t, longest, 15*time.Millisecond)
	assert.Less(t, longest, 2*time.Second)

	start := time.Now()
	e.Poll(false, -1, nil, nil, make([]int32, 4), &res)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "block=false never waits")
}

func TestEnginePollTimeout(t *testing.T) {
	e := newTestEngine(t)
	now := func() float64 { return 1000 }
	day := maxSelectTimeoutMs

	reads := 0
	counting := func() float64 { reads++; return 1000 }
	assert.Equal(t, 0, e.pollTimeout(false, -1, counting))
	assert.Equal(t, -1, e.pollTimeout(true, -1, counting), "no timers, no cap: forever")
	assert.Zero(t, reads, "the clock is only read for a pending deadline")
	assert.Equal(t, -1, e.pollTimeout(true, -7, now))
	assert.Equal(t, 250, e.pollTimeout(true, 250, now))
	assert.Equal(t, 0, e.pollTimeout(true, 0, now))
	assert.Equal(t, math.MaxInt32, e.pollTimeout(true, math.MaxInt, now), "fits epoll's C int")

	e.timers.Add(1, now()+0.0501)
	assert.Equal(t, 51, e.pollTimeout(true, -1, now), "rounded up to whole ms")
	assert.Equal(t, 10, e.pollTimeout(true, 10, now))
	assert.Equal(t, 0, e.pollTimeout(false, -1, now))
	e.timers.Clear()

	e.timers.Add(1, now()+0.0000001)
	assert.Equal(t, 1, e.pollTimeout(true, -1, now), "sub-ms waits 1 ms, not 0")
	e.timers.Clear()

	e.timers.Add(1, now()-5)
	assert.Equal(t, 0, e.pollTimeout(true, -1, now), "past deadline")
	e.timers.Clear()

	e.timers.Add(1, now()+1e7)
	assert.Equal(t, day, e.pollTimeout(true, -1, now), "clamped to 24 h")
	assert.Equal(t, 5000, e.pollTimeout(true, 5000, now))
}

func TestEngineOpsAppliedBeforeWait(t *testing.T) {
	e := newTestEngine(t)
	expired := make([]int32, 4)
	var res PollResult

	// A due timer in the log must make a blocking-forever Poll return.
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Poll(true, -1, []TimerOp{{Slot: 2, Kind: TimerAdd, When: MonotonicNow() - 0.001}}, nil, expired, &res)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		require.NoError(t, wakeFrom(e.WakeFD()))
		<-done
		t.Fatal("the due timer in ops did not shorten the wait")
	}
	require.Equal(t, int32(1), res.NExpired)
	assert.Equal(t, int32(2), expired[0])

	// Add then remove in the same log: nothing pending afterwards.
	far := MonotonicNow() + 100
	e.Poll(false, -1, []TimerOp{
		{Slot: 5, Kind: TimerAdd, When: far},
		{Slot: 6, Kind: TimerAdd, When: far + 1},
		{Slot: 5, Kind: TimerRemove},
	}, nil, expired, &res)
	assert.Zero(t, res.NExpired)
	assert.Equal(t, int32(1), res.HasDeadline)
	assert.Equal(t, far+1, res.NextDeadline)
}

func TestEngineMoreThenPopExpired(t *testing.T) {
	e := newTestEngine(t)
	past := MonotonicNow() - 1
	var ops []TimerOp
	for i := range int32(5) {
		ops = append(ops, TimerOp{Slot: i, Kind: TimerAdd, When: past + float64(i)*1e-3})
	}
	future := MonotonicNow() + 100
	ops = append(ops, TimerOp{Slot: 9, Kind: TimerAdd, When: future})

	pp := newPipe(t)
	require.NoError(t, e.SetInterest(pp.w, EventWrite))
	events := make([]Event, 4)
	expired := make([]int32, 2)
	var res PollResult
	e.Poll(true, -1, ops, events, expired, &res)
	require.Equal(t, int32(2), res.NExpired)
	assert.Equal(t, []int32{0, 1}, expired)
	assert.Equal(t, int32(1), res.More)
	assert.Equal(t, int32(1), res.NEvents)

	e.PopExpired(expired, &res)
	require.Equal(t, int32(2), res.NExpired)
	assert.Equal(t, []int32{2, 3}, expired)
	assert.Equal(t, int32(1), res.More)

	e.PopExpired(expired, &res)
	require.Equal(t, int32(1), res.NExpired)
	assert.Equal(t, int32(4), expired[0])
	assert.Zero(t, res.More)
	assert.Equal(t, int32(1), res.HasDeadline)
	assert.Equal(t, future, res.NextDeadline)
	assert.Equal(t, int32(1), res.NEvents, "PopExpired leaves the Poll's event count")

	// Exactly filling the buffer is not "more".
	e.Poll(false, -1, []TimerOp{{Slot: 1, Kind: TimerAdd, When: past}, {Slot: 2, Kind: TimerAdd, When: past}}, nil, expired, &res)
	assert.Equal(t, int32(2), res.NExpired)
	assert.Zero(t, res.More)
}

func TestEnginePollReportsWaitError(t *testing.T) {
	e := newTestEngine(t)
	require.NoError(t, e.poller.Close()) // make epoll_wait fail with EBADF
	expired := make([]int32, 4)
	var res PollResult
	e.Poll(true, -1, []TimerOp{{Slot: 1, Kind: TimerAdd, When: MonotonicNow() - 1}}, make([]Event, 4), expired, &res)
	assert.Equal(t, int32(unix.EBADF), res.Err)
	assert.Zero(t, res.NEvents)
	assert.Equal(t, int32(1), res.NExpired, "timers are still popped")

	e.Poll(false, -1, nil, nil, expired, &res)
	assert.Equal(t, int32(unix.EBADF), res.Err)
	assert.Zero(t, res.NExpired, "result is rewritten each Poll")
}

func TestEnginePollDoesNotAllocate(t *testing.T) {
	e := newTestEngine(t)
	pp := newPipe(t)
	require.NoError(t, e.SetInterest(pp.w, EventWrite))
	events := make([]Event, 16)
	expired := make([]int32, 16)
	var res PollResult
	var now float64
	ops := make([]TimerOp, 3)
	run := func() {
		now = MonotonicNow()
		ops[0] = TimerOp{Slot: 1, Kind: TimerAdd, When: now - 1}
		ops[1] = TimerOp{Slot: 2, Kind: TimerAdd, When: now + 100}
		ops[2] = TimerOp{Slot: 2, Kind: TimerRemove}
		_ = wakeFrom(e.WakeFD())
		e.Poll(true, -1, ops, events, expired, &res)
		if res.NEvents != 1 || res.NExpired != 1 {
			panic("unexpected poll result")
		}
		e.PopExpired(expired, &res)
	}
	run() // warm up
	assert.Zero(t, testing.AllocsPerRun(200, run))
}

func TestEngineConcurrentWakes(t *testing.T) {
	// Exercised under -race: wakers only touch the fd.
	e := newTestEngine(t)
	fd := e.WakeFD()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				_ = wakeFrom(fd)
				time.Sleep(time.Millisecond)
			}
		})
	}
	var res PollResult
	for range 50 {
		e.Poll(true, 100, nil, make([]Event, 4), nil, &res)
		require.Zero(t, res.NEvents)
		require.Zero(t, res.Err)
	}
	stop.Store(true)
	wg.Wait()
}

func BenchmarkPollNoWait(b *testing.B) {
	e := newTestEngine(b)
	events := make([]Event, 64)
	expired := make([]int32, 64)
	var res PollResult
	b.ReportAllocs()
	for b.Loop() {
		e.Poll(false, -1, nil, events, expired, &res)
	}
}

func BenchmarkPollNoWaitWithTimers(b *testing.B) {
	e := newTestEngine(b)
	events := make([]Event, 64)
	expired := make([]int32, 64)
	var res PollResult
	ops := make([]TimerOp, 2)
	far := MonotonicNow() + 1e6
	for i := range int32(1000) {
		e.Timers().Add(i+10, far+float64(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		ops[0] = TimerOp{Slot: 1, Kind: TimerAdd, When: 0} // due at once
		ops[1] = TimerOp{Slot: 2, Kind: TimerAdd, When: far}
		e.Poll(false, -1, ops, events, expired, &res)
		e.Timers().Remove(2)
	}
}

func BenchmarkWakeAndPoll(b *testing.B) {
	e := newTestEngine(b)
	events := make([]Event, 64)
	var res PollResult
	b.ReportAllocs()
	for b.Loop() {
		_ = wakeFrom(e.WakeFD())
		e.Poll(true, -1, nil, events, nil, &res)
	}
}

func TestEngineSmallEventsBufferReportsEveryFdEventually(t *testing.T) {
	e := newTestEngine(t)
	for range 3 {
		pp := newPipe(t)
		require.NoError(t, e.SetInterest(pp.w, EventWrite))
	}
	require.NoError(t, wakeFrom(e.WakeFD()))
	events := make([]Event, 2)
	seen := map[int32]bool{}
	var res PollResult
	for range 3 {
		e.Poll(false, -1, nil, events, nil, &res)
		require.Equal(t, int32(2), res.NEvents)
		for _, ev := range events {
			require.NotEqual(t, int32(e.WakeFD()), ev.Fd)
			seen[ev.Fd] = true
		}
	}
	assert.Len(t, seen, 3)
	assert.False(t, readable(t, e.WakeFD()))
}

func TestEngineExpireTimersAppliesOpsAndPops(t *testing.T) {
	e, err := NewEngine()
	require.NoError(t, err)
	defer e.Close()
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
	assert.Positive(t, e.EpollFD())
}

func TestEngineExpireTimersAllocs(t *testing.T) {
	e, err := NewEngine()
	require.NoError(t, err)
	defer e.Close()
	ops := []TimerOp{{Slot: 0, Kind: TimerAdd, When: 1}, {Slot: 0, Kind: TimerRemove}}
	expired := make([]int32, 8)
	var res PollResult
	e.ExpireTimers(ops, 2, expired, &res)
	allocs := testing.AllocsPerRun(100, func() { e.ExpireTimers(ops, 2, expired, &res) })
	assert.Zero(t, allocs)
}
