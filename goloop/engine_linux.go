package goloop

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Engine is a loop's Go half: the epoll set and the wake-up eventfd it
// creates for the C core. C registers fds on the epoll
// set and waits on it itself (pybridge/epoll.c, poll.c: through Go each
// epoll_ctl spaced out as a server makes them cost ~1.5 us, and a wait
// inside Go cost Go-scheduler syscalls around every epoll_wait), and C
// writes and drains the eventfd; the engine only makes them. It is driven
// from one thread (the loop thread).
type Engine struct {
	epfd   int
	wakeFD int
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
