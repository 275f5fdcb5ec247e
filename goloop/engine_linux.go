package goloop

import (
	"errors"
	"math"

	"golang.org/x/sys/unix"
)

// maxSelectTimeoutMs is asyncio's MAXIMUM_SELECT_TIMEOUT (24 h) in ms.
const maxSelectTimeoutMs = 24 * 3600 * 1000

// clockResolution is what asyncio adds to "now" when collecting expired
// timers (BaseEventLoop._clock_resolution, time.get_clock_info's 1e-9).
const clockResolution = 1e-9

// PollResult is written by Poll. Layout must match C
// `struct {int32_t nevents; int32_t nexpired; int32_t more;
// int32_t has_deadline; double next_deadline; int32_t err; int32_t _pad;}`.
type PollResult struct {
	NEvents      int32
	NExpired     int32
	More         int32   // 1 if more timers had expired than fit in `expired`
	HasDeadline  int32   // 1 if timers remain pending after the pop
	NextDeadline float64 // earliest pending deadline (valid if HasDeadline)
	Err          int32   // errno of a failed epoll_wait (not EINTR), else 0
	_            int32
}

// Engine ties the poller, the wake-up eventfd and the timer heap together.
// It is driven from one thread (the loop thread); only WakeFD and writes to
// that fd may come from other threads.
type Engine struct {
	poller *Poller
	wakeup *Wakeup
	timers TimerHeap
	wakeFD int
	// end is the expiry bound of the last Poll. PopExpired reuses it so one
	// loop iteration has one cut-off, like asyncio's _run_once end_time.
	end float64
}

// NewEngine creates the poller and the wake-up fd, registered for read.
func NewEngine() (*Engine, error) {
	p, err := NewPoller()
	if err != nil {
		return nil, err
	}
	w, err := NewWakeup()
	if err != nil {
		p.Close()
		return nil, err
	}
	if err := p.SetInterest(w.FD(), EventRead); err != nil {
		w.Close()
		p.Close()
		return nil, err
	}
	return &Engine{poller: p, wakeup: w, wakeFD: w.FD()}, nil
}

// Close releases both fds. Calling it again is a no-op.
func (e *Engine) Close() error {
	return errors.Join(e.wakeup.Close(), e.poller.Close())
}

// WakeFD returns the eventfd other threads write to wake a blocked Poll.
func (e *Engine) WakeFD() int { return e.wakeFD }

// SetInterest sets the interest of a user fd (see Poller.SetInterest). The
// wake-up fd is refused with EINVAL: changing it would break wake-ups.
func (e *Engine) SetInterest(fd int, mask uint32) error {
	if fd == e.wakeFD {
		return unix.EINVAL
	}
	return e.poller.SetInterest(fd, mask)
}

// EpollFD returns the epoll fd, for a caller that does the blocking wait
// itself. The CPython bridge does: blocking inside a Go call makes the Go
// scheduler hand the P off and take it back around every wait (measured
// with strace on a 1 KiB echo server: ~1.7 futex, ~1 nanosleep (sysmon)
// and ~1 clock_gettime syscall per epoll_wait, and 30% more system CPU per
// request than the stock asyncio loop). Registration (SetInterest) and the
// timers stay here; readiness is read from this fd by the caller.
func (e *Engine) EpollFD() int { return e.poller.FD() }

// ExpireTimers applies ops and pops the timers due before end (the
// caller's clock reading plus clockResolution) into expired, filling the
// timer fields of res (see PopExpired). It never blocks, so a caller that
// waits on EpollFD itself makes at most one short Go call per iteration,
// and none while no timer changed or fell due.
func (e *Engine) ExpireTimers(ops []TimerOp, end float64, expired []int32, res *PollResult) {
	e.timers.Apply(ops)
	e.end = end
	*res = PollResult{}
	e.PopExpired(expired, res)
}

// Timers returns the engine's timer heap.
func (e *Engine) Timers() *TimerHeap { return &e.timers }

// Poll runs one loop iteration: it applies ops, waits for I/O (up to the
// next deadline when block is set), drains and hides the wake-up fd, then
// pops the timers that expired. res must not be nil.
func (e *Engine) Poll(block bool, maxTimeoutMs int, ops []TimerOp, events []Event, expired []int32, res *PollResult) {
	e.timers.Apply(ops)
	timeout := e.pollTimeout(block, maxTimeoutMs, MonotonicNow)
	*res = PollResult{}
	// One extra raw slot so a pending wake-up never costs the caller an
	// event slot. If it was not needed, the surplus user event is dropped;
	// level triggering reports it again on the next Poll.
	n, err := e.poller.waitRaw(timeout, len(events)+1)
	if err != nil {
		res.Err = errnoOf(err)
	}
	res.NEvents = int32(e.collect(n, events))
	e.end = MonotonicNow() + clockResolution
	e.PopExpired(expired, res)
}

// PopExpired pops more timers that expired by the cut-off of the last Poll,
// without waiting (used when res.More was set). It updates only the timer
// fields of res (NExpired, More, HasDeadline, NextDeadline); NEvents and
// Err keep the values from that Poll. Pending ops are not applied: collect
// every batch before running callbacks, as asyncio moves all expired
// handles to its ready queue first.
func (e *Engine) PopExpired(expired []int32, res *PollResult) {
	n := e.timers.PopExpired(e.end, expired)
	res.NExpired = int32(n)
	res.More = 0
	if next, ok := e.timers.Peek(); ok {
		res.HasDeadline = 1
		res.NextDeadline = next
		if n == len(expired) && next < e.end {
			res.More = 1
		}
	} else {
		res.HasDeadline = 0
		res.NextDeadline = 0
	}
}

// pollTimeout computes the epoll_wait timeout in ms, following asyncio's
// _run_once (deadline minus now, clamped to [0, 24 h]) and selectors'
// rounding up to whole ms, so Poll never wakes before the deadline and then
// spins. maxTimeoutMs >= 0 additionally caps it. The clock is read only
// when a deadline is pending: without the Linux vDSO a read is a syscall.
func (e *Engine) pollTimeout(block bool, maxTimeoutMs int, now func() float64) int {
	if !block {
		return 0
	}
	next, ok := e.timers.Peek()
	if !ok {
		// epoll_wait takes a C int; a larger value would wrap negative.
		return min(max(maxTimeoutMs, -1), math.MaxInt32)
	}
	ms := math.Ceil((next - now()) * 1e3)
	switch {
	case !(ms > 0): // also catches NaN
		ms = 0
	case ms > maxSelectTimeoutMs:
		ms = maxSelectTimeoutMs
	}
	timeout := int(ms)
	if maxTimeoutMs >= 0 {
		timeout = min(timeout, maxTimeoutMs)
	}
	return timeout
}

// collect converts the raw epoll events into events, dropping the wake-up
// fd (draining it if it fired). It returns the number of user events.
func (e *Engine) collect(n int, events []Event) int {
	raw := e.poller.buf[:n]
	k := 0
	for i := range raw {
		ev := &raw[i]
		if int(ev.Fd) == e.wakeFD {
			e.wakeup.Drain()
			continue
		}
		m := readiness(ev.Events, uint32(ev.Pad))
		if m == 0 || k == len(events) {
			continue
		}
		events[k] = Event{Fd: ev.Fd, Mask: m}
		k++
	}
	return k
}

// errnoOf extracts the errno for C. Every error here is a bare unix.Errno
// from a syscall; EIO is only a fallback.
func errnoOf(err error) int32 {
	if errno, ok := err.(unix.Errno); ok {
		return int32(errno)
	}
	return int32(unix.EIO)
}
