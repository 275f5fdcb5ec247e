package goloop

import "golang.org/x/sys/unix"

// MonotonicNow returns CLOCK_MONOTONIC as float64 seconds.
//
// It is the clock behind Python's time.monotonic() on Linux, so deadlines
// computed in Python and in Go are directly comparable.
func MonotonicNow() float64 {
	var ts unix.Timespec
	// CLOCK_MONOTONIC cannot fail with a valid pointer; on a broken kernel
	// ts stays zero, which only makes timers look late, never crashes.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return nsToSeconds(ts.Nano())
}

// nsToSeconds converts nanoseconds to seconds exactly the way CPython's
// _PyTime_AsSecondsDouble does (whole seconds converted directly, otherwise
// one division of the rounded nanosecond count), so a value read here and
// one read by time.monotonic() at the same instant are bit-identical.
func nsToSeconds(ns int64) float64 {
	const nsPerSec = 1_000_000_000
	if ns%nsPerSec == 0 {
		return float64(ns / nsPerSec)
	}
	return float64(ns) / 1e9
}
