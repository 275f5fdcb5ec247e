package goloop

import (
	"math"

	"golang.org/x/sys/unix"
)

// Interest / readiness bits (same values in C).
const (
	EventRead  uint32 = 1
	EventWrite uint32 = 2
	// EventEdge asks SetInterest for an edge-triggered registration
	// (EPOLLET): readiness is reported once per change, not while it
	// lasts. goloop's C core uses it for sock_recv's waits (see
	// pybridge/io.c); it is not an event Wait reports.
	EventEdge uint32 = 4
)

// Event is one ready fd. Layout must match C
// `struct {int32_t fd; uint32_t mask;}`.
type Event struct {
	Fd   int32
	Mask uint32
}

// Raw epoll_event buffer bounds. The buffer starts small enough to stay
// cheap for an idle loop and doubles whenever a wait filled it, like
// Python's selectors sizing max_ev from the number of registered fds.
const (
	minRawEvents = 128
	maxRawEvents = 1 << 16
)

// Poller wraps an epoll instance in level-triggered mode (asyncio
// semantics: a ready fd keeps being reported until it is drained).
//
// It is not safe for concurrent use; the loop thread owns it.
type Poller struct {
	epfd int
	buf  []unix.EpollEvent // raw epoll_wait output, reused across calls
	// regs[fd] is the interest we believe the kernel holds for fd (0 for
	// none). It is only a hint choosing MOD or ADD first: every path falls
	// back to the other op, so a stale entry costs one syscall, never
	// correctness.
	regs []uint8
	// full is set when the last wait filled buf; the next wait doubles it.
	// Growing is deferred because the caller still reads the old buffer.
	full bool
}

// NewPoller creates the epoll instance (epoll_create1(EPOLL_CLOEXEC)).
func NewPoller() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &Poller{epfd: fd, buf: make([]unix.EpollEvent, minRawEvents)}, nil
}

// FD returns the epoll instance's fd, for a caller that waits on it
// outside Go (see Engine.EpollFD).
func (p *Poller) FD() int { return p.epfd }

// Close closes the epoll fd. Calling it again is a no-op.
func (p *Poller) Close() error {
	if p.epfd < 0 {
		return nil
	}
	err := unix.Close(p.epfd)
	p.epfd = -1
	return err
}

// SetInterest makes fd's registered interest equal mask (EventRead and/or
// EventWrite, plus EventEdge for edge-triggered; other bits are ignored).
// A mask without EventRead and EventWrite unregisters fd.
//
// Errors are unix.Errno values (EPERM for a regular file, EBADF for a bad
// fd, ...) so C can raise the matching OSError.
func (p *Poller) SetInterest(fd int, mask uint32) error {
	if fd < 0 || fd > math.MaxInt32 {
		return unix.EBADF // also keeps fd a valid regs index and int32
	}
	edge := mask&EventEdge != 0
	mask &= EventRead | EventWrite
	if mask == 0 {
		return p.unregister(fd)
	}
	// The interest travels in the event's user data (Pad) so Wait can mask
	// readiness with it without a lookup, as selectors does with key.events.
	ev := unix.EpollEvent{Events: epollBits(mask), Fd: int32(fd), Pad: int32(mask)}
	if edge {
		ev.Events |= unix.EPOLLET
	}
	op, fallbackOp, fallbackErr := unix.EPOLL_CTL_ADD, unix.EPOLL_CTL_MOD, error(unix.EEXIST)
	if p.registered(fd) {
		// The kernel silently drops registrations of closed fds and the
		// number may since have been reused, hence ENOENT -> ADD.
		op, fallbackOp, fallbackErr = unix.EPOLL_CTL_MOD, unix.EPOLL_CTL_ADD, unix.ENOENT
	}
	err := unix.EpollCtl(p.epfd, op, fd, &ev)
	if err == fallbackErr {
		err = unix.EpollCtl(p.epfd, fallbackOp, fd, &ev)
	}
	if err != nil {
		p.track(fd, 0)
		return err
	}
	p.track(fd, mask)
	return nil
}

// unregister issues EPOLL_CTL_DEL even for fds we do not believe are
// registered: it is cheap next to leaking a registration that then reports
// events for an fd the caller thinks is gone. ENOENT and EBADF are ignored
// because the fd may have been closed since it was registered (closing
// drops the registration), which Python's selectors tolerates too.
func (p *Poller) unregister(fd int) error {
	var ev unix.EpollEvent // pre-2.6.9 kernels reject a nil event for DEL
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, &ev)
	p.track(fd, 0)
	if err == unix.ENOENT || err == unix.EBADF {
		return nil
	}
	return err
}

func (p *Poller) registered(fd int) bool {
	return fd < len(p.regs) && p.regs[fd] != 0
}

// track records mask for fd, growing regs (amortized doubling) on demand.
func (p *Poller) track(fd int, mask uint32) {
	if fd >= len(p.regs) {
		if mask == 0 {
			return
		}
		grown := make([]uint8, max(fd+1, 2*len(p.regs), 64))
		copy(grown, p.regs)
		p.regs = grown
	}
	p.regs[fd] = uint8(mask)
}

// epollBits converts interest bits to level-triggered epoll flags.
func epollBits(mask uint32) uint32 {
	var ev uint32
	if mask&EventRead != 0 {
		ev |= unix.EPOLLIN
	}
	if mask&EventWrite != 0 {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// readiness maps epoll flags to Event bits exactly like Python's
// selectors.EpollSelector.select: any flag other than EPOLLIN means
// writable, any flag other than EPOLLOUT means readable (so EPOLLERR and
// EPOLLHUP wake both the reader and the writer), and the result is masked
// with the registered interest (selectors' `events & key.events`).
func readiness(flags, interest uint32) uint32 {
	var m uint32
	if flags&^unix.EPOLLIN != 0 {
		m |= EventWrite
	}
	if flags&^unix.EPOLLOUT != 0 {
		m |= EventRead
	}
	return m & interest
}

// Wait calls epoll_wait with timeoutMs (-1 = forever, 0 = poll) and fills
// events, returning how many it filled. EINTR returns (0, nil) so the caller
// regains control to run signal handlers. At most len(events) fds are
// reported; with level triggering, any others are reported next time.
func (p *Poller) Wait(timeoutMs int, events []Event) (int, error) {
	n, err := p.waitRaw(timeoutMs, len(events))
	if err != nil {
		return 0, err
	}
	k := 0
	for i := 0; i < n && k < len(events); i++ {
		if m := readiness(p.buf[i].Events, uint32(p.buf[i].Pad)); m != 0 {
			events[k] = Event{Fd: p.buf[i].Fd, Mask: m}
			k++
		}
	}
	return k, nil
}

// waitRaw runs epoll_wait into p.buf for at most limit events (at least
// one: epoll rejects maxevents 0, and a zero-capacity caller still wants
// the timeout and wake-up behaviour). It returns the raw count.
func (p *Poller) waitRaw(timeoutMs, limit int) (int, error) {
	if p.full {
		p.full = false
		p.buf = make([]unix.EpollEvent, min(2*len(p.buf), maxRawEvents))
	}
	raw := p.buf[:max(1, min(limit, len(p.buf)))]
	n, err := unix.EpollWait(p.epfd, raw, timeoutMs)
	if err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if n == len(p.buf) && len(p.buf) < maxRawEvents {
		p.full = true
	}
	return n, nil
}
