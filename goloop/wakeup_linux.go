package goloop

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Wakeup is an eventfd (EFD_NONBLOCK|EFD_CLOEXEC) that other threads write
// to in order to interrupt a blocked Poll. C code may write the 8-byte
// counter increment to FD() directly instead of calling Wake.
//
// Wake and FD may be called from any thread; Drain and Close belong to the
// loop thread, and Close must not race with Wake.
type Wakeup struct {
	fd int
	// drainBuf receives counter reads. Keeping it in the struct rather than
	// on the stack stops it escaping when the race detector instruments
	// unix.Read, so Drain never allocates. Only the loop thread uses it.
	drainBuf [8]byte
}

// wakeIncrement is the 8-byte counter increment (1, host-endian, as
// eventfd requires). Wakers only read it, so sharing it is race-free, and
// as a package variable it never needs a per-call allocation.
var wakeIncrement = func() (b [8]byte) {
	binary.NativeEndian.PutUint64(b[:], 1)
	return b
}()

// NewWakeup creates the eventfd.
func NewWakeup() (*Wakeup, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &Wakeup{fd: fd}, nil
}

// FD returns the eventfd, or -1 after Close.
func (w *Wakeup) FD() int { return w.fd }

// Wake adds 1 to the counter, making the fd readable. EAGAIN means the
// counter is saturated, so the fd is already readable and the wake-up
// cannot be lost.
func (w *Wakeup) Wake() error {
	for {
		_, err := unix.Write(w.fd, wakeIncrement[:])
		switch err {
		case nil, unix.EAGAIN:
			return nil
		case unix.EINTR:
			continue
		default:
			return err
		}
	}
}

// Drain resets the counter so the fd stops being readable. One read already
// zeroes it; reading until EAGAIN also absorbs wake-ups racing with the
// drain, which is harmless: the loop is awake and will see the work they
// announce, since wakers queue work before writing.
func (w *Wakeup) Drain() {
	for {
		_, err := unix.Read(w.fd, w.drainBuf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // EAGAIN: empty; anything else: nothing useful to do
		}
	}
}

// Close closes the eventfd. Calling it again is a no-op.
func (w *Wakeup) Close() error {
	if w.fd < 0 {
		return nil
	}
	err := unix.Close(w.fd)
	w.fd = -1
	return err
}
