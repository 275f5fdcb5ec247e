package goloop

import (
	"errors"

	"golang.org/x/sys/unix"
)

// PollResult is written by ExpireTimers and PopExpired. Layout must match C
// `struct {int32_t nevents; int32_t nexpired; int32_t more;
// int32_t has_deadline; double next_deadline; int32_t err; int32_t _pad;}`.
type PollResult struct {
	NEvents      int32 // unused by the engine since C waits for I/O (poll.c)
	NExpired     int32
	More         int32   // 1 if more timers had expired than fit in `expired`
	HasDeadline  int32   // 1 if timers remain pending after the pop
	NextDeadline float64 // earliest pending deadline (valid if HasDeadline)
	Err          int32   // errno for C to raise (the bridge's EBADF for a dead engine), else 0
	_            int32
}

// Engine is a loop's Go half: its timer heap, plus the epoll set and the
// wake-up eventfd it creates for the C core. C registers fds on the epoll
// set and waits on it itself (pybridge/epoll.c, poll.c: through Go each
// epoll_ctl spaced out as a server makes them cost ~1.5 us, and a wait
// inside Go cost Go-scheduler syscalls around every epoll_wait), and C
// writes and drains the eventfd; the engine only makes them. It is driven
// from one thread (the loop thread).
type Engine struct {
	epfd   int
	wakeFD int
	timers TimerHeap
	// end is the expiry bound of the last ExpireTimers. PopExpired reuses it
	// so one loop iteration has one cut-off, like asyncio's _run_once
	// end_time.
	end float64
}

// NewEngine creates the epoll set (EPOLL_CLOEXEC) and the wake-up eventfd
// (EFD_NONBLOCK|EFD_CLOEXEC), registered level-triggered for read with the
// fd in the event's data, which is how poll.c tells it from a user fd.
func NewEngine() (*Engine, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	e := &Engine{epfd: epfd, wakeFD: -1}
	e.wakeFD, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(e.wakeFD)}
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, e.wakeFD, &ev)
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close closes both fds. Calling it again is a no-op.
func (e *Engine) Close() error {
	return errors.Join(closeFD(&e.wakeFD), closeFD(&e.epfd))
}

func closeFD(fd *int) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	return err
}

// WakeFD returns the eventfd other threads write to wake the loop's wait
// (call_soon_threadsafe, finished lookups); C drains it.
func (e *Engine) WakeFD() int { return e.wakeFD }

// EpollFD returns the epoll set the C core registers fds on and waits on.
func (e *Engine) EpollFD() int { return e.epfd }

// ExpireTimers applies ops and pops the timers due before end (the
// caller's clock reading plus asyncio's clock resolution) into expired,
// filling the timer fields of res (see PopExpired). It never blocks: C
// waits on EpollFD itself and makes at most one short Go call per
// iteration, and none while no timer changed or fell due.
func (e *Engine) ExpireTimers(ops []TimerOp, end float64, expired []int32, res *PollResult) {
	e.timers.Apply(ops)
	e.end = end
	*res = PollResult{}
	e.PopExpired(expired, res)
}

// PopExpired pops more timers that expired by the cut-off of the last
// ExpireTimers (used when res.More was set). It updates only the timer
// fields of res (NExpired, More, HasDeadline, NextDeadline). Pending ops are not applied: collect
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
