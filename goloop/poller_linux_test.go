package goloop

import (
	"math"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func newTestPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := NewPoller()
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// pipeFDs is a non-blocking pipe closed at the end of the test (fds set to
// -1 by closeFD are skipped).
type pipeFDs struct{ r, w int }

func newPipe(t *testing.T) *pipeFDs {
	t.Helper()
	var fds [2]int
	require.NoError(t, unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	p := &pipeFDs{r: fds[0], w: fds[1]}
	t.Cleanup(func() {
		closeFD(&p.r)
		closeFD(&p.w)
	})
	return p
}

func closeFD(fd *int) {
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

func writeByte(t *testing.T, fd int) {
	t.Helper()
	_, err := unix.Write(fd, []byte{'x'})
	require.NoError(t, err)
}

// waitEvents polls once and returns the reported events, sorted by fd.
func waitEvents(t *testing.T, p *Poller, timeoutMs int) []Event {
	t.Helper()
	events := make([]Event, 64)
	n, err := p.Wait(timeoutMs, events)
	require.NoError(t, err)
	got := events[:n]
	slices.SortFunc(got, func(a, b Event) int { return int(a.Fd - b.Fd) })
	return got
}

func TestPollerReadReadiness(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	require.NoError(t, p.SetInterest(pp.r, EventRead))
	assert.Empty(t, waitEvents(t, p, 0))

	writeByte(t, pp.w)
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 1000))
	// Level-triggered: still reported until drained.
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 0))
	_, err := unix.Read(pp.r, make([]byte, 8))
	require.NoError(t, err)
	assert.Empty(t, waitEvents(t, p, 0))
}

func TestPollerEdgeTriggeredReportsEachArrivalOnce(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	require.NoError(t, p.SetInterest(pp.r, EventRead|EventEdge))
	writeByte(t, pp.w)
	// The edge bit is not an event: reported as a plain read, once.
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 1000))
	assert.Empty(t, waitEvents(t, p, 0), "undrained, but no new edge")
	writeByte(t, pp.w)
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 1000))
	// Back to level-triggered with a plain mask.
	require.NoError(t, p.SetInterest(pp.r, EventRead))
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 0))
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 0))
	// The edge bit alone unregisters, like mask 0.
	require.NoError(t, p.SetInterest(pp.r, EventEdge))
	assert.Empty(t, waitEvents(t, p, 0))
}

func TestPollerWriteReadiness(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	require.NoError(t, p.SetInterest(pp.w, EventWrite))
	assert.Equal(t, []Event{{Fd: int32(pp.w), Mask: EventWrite}}, waitEvents(t, p, 0))
}

func TestPollerInterestChangeAndRemoval(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	writeByte(t, pp.w) // r readable, w writable

	require.NoError(t, p.SetInterest(pp.w, EventRead))
	assert.Empty(t, waitEvents(t, p, 0), "write end never readable")

	require.NoError(t, p.SetInterest(pp.w, EventWrite|EventRead))
	require.NoError(t, p.SetInterest(pp.r, EventRead|EventWrite))
	assert.Equal(t, []Event{
		{Fd: int32(pp.r), Mask: EventRead},
		{Fd: int32(pp.w), Mask: EventWrite},
	}, waitEvents(t, p, 0))

	require.NoError(t, p.SetInterest(pp.r, 0))
	assert.Equal(t, []Event{{Fd: int32(pp.w), Mask: EventWrite}}, waitEvents(t, p, 0))
	require.NoError(t, p.SetInterest(pp.w, 0))
	assert.Empty(t, waitEvents(t, p, 0))

	require.NoError(t, p.SetInterest(pp.w, 0), "removing twice is fine")
	require.NoError(t, p.SetInterest(pp.r, EventRead), "re-adding after removal")
	assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 0))
}

func TestPollerClosedFDThenReusedNumber(t *testing.T) {
	p := newTestPoller(t)
	old := newPipe(t)
	require.NoError(t, p.SetInterest(old.r, EventRead))
	num := old.r
	closeFD(&old.r) // last reference: the kernel drops the registration

	// Put a fresh pipe's read end on the same fd number: the lowest free
	// number usually is num already, otherwise move it there.
	fresh := newPipe(t)
	if fresh.r != num {
		require.NoError(t, unix.Dup3(fresh.r, num, unix.O_CLOEXEC))
		closeFD(&fresh.r)
		fresh.r = num
	}

	// We still believe num is registered, so this tries MOD (ENOENT) first.
	require.True(t, p.registered(num))
	require.NoError(t, p.SetInterest(num, EventRead))
	writeByte(t, fresh.w)
	assert.Equal(t, []Event{{Fd: int32(num), Mask: EventRead}}, waitEvents(t, p, 1000))
}

func TestPollerUnknownButRegisteredFallsBackToMod(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	require.NoError(t, p.SetInterest(pp.w, EventRead))
	p.track(pp.w, 0) // forget it: the next call tries ADD and gets EEXIST
	require.NoError(t, p.SetInterest(pp.w, EventWrite))
	assert.Equal(t, []Event{{Fd: int32(pp.w), Mask: EventWrite}}, waitEvents(t, p, 0))
}

func TestPollerRemoveClosedFDIsIgnored(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	require.NoError(t, p.SetInterest(pp.r, EventRead))
	fd := pp.r
	closeFD(&pp.r)
	assert.NoError(t, p.SetInterest(fd, 0), "EBADF ignored")

	require.NoError(t, p.SetInterest(pp.w, EventWrite))
	require.NoError(t, unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, pp.w, &unix.EpollEvent{}))
	assert.NoError(t, p.SetInterest(pp.w, 0), "ENOENT ignored")
}

func TestPollerRegularFileIsEPERM(t *testing.T) {
	p := newTestPoller(t)
	f, err := os.CreateTemp(t.TempDir(), "regular")
	require.NoError(t, err)
	defer f.Close()
	err = p.SetInterest(int(f.Fd()), EventRead)
	var errno unix.Errno
	require.ErrorAs(t, err, &errno)
	assert.Equal(t, unix.EPERM, errno)
	assert.False(t, p.registered(int(f.Fd())))
}

func TestPollerBadFDIsEBADF(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	fd := pp.r
	closeFD(&pp.r)
	for _, bad := range []int{fd, -1, math.MaxInt} {
		err := p.SetInterest(bad, EventRead)
		var errno unix.Errno
		require.ErrorAs(t, err, &errno, "fd %d", bad)
		assert.Equal(t, unix.EBADF, errno, "fd %d", bad)
	}
}

func TestPollerHangUpReportsReadAndWrite(t *testing.T) {
	t.Run("read end after writer closed (EPOLLHUP)", func(t *testing.T) {
		p := newTestPoller(t)
		pp := newPipe(t)
		require.NoError(t, p.SetInterest(pp.r, EventRead|EventWrite))
		closeFD(&pp.w)
		assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead | EventWrite}}, waitEvents(t, p, 1000))
	})
	t.Run("write end after reader closed (EPOLLERR)", func(t *testing.T) {
		p := newTestPoller(t)
		pp := newPipe(t)
		require.NoError(t, p.SetInterest(pp.w, EventRead|EventWrite))
		closeFD(&pp.r)
		assert.Equal(t, []Event{{Fd: int32(pp.w), Mask: EventRead | EventWrite}}, waitEvents(t, p, 1000))
	})
	t.Run("masked by interest like selectors", func(t *testing.T) {
		p := newTestPoller(t)
		pp := newPipe(t)
		require.NoError(t, p.SetInterest(pp.r, EventRead))
		closeFD(&pp.w)
		assert.Equal(t, []Event{{Fd: int32(pp.r), Mask: EventRead}}, waitEvents(t, p, 1000))
	})
}

func TestReadinessMatchesSelectors(t *testing.T) {
	both := EventRead | EventWrite
	cases := []struct {
		flags uint32
		want  uint32
	}{
		{unix.EPOLLIN, EventRead},
		{unix.EPOLLOUT, EventWrite},
		{unix.EPOLLIN | unix.EPOLLOUT, both},
		{unix.EPOLLHUP, both},
		{unix.EPOLLERR, both},
		{unix.EPOLLIN | unix.EPOLLHUP, both},
		{unix.EPOLLOUT | unix.EPOLLERR, both},
		{0, 0},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, readiness(c.flags, both), "flags %#x", c.flags)
		assert.Equal(t, c.want&EventRead, readiness(c.flags, EventRead), "flags %#x", c.flags)
	}
}

func TestPollerWaitTimeout(t *testing.T) {
	p := newTestPoller(t)
	longest := blockedFor(t, 3, 40*time.Millisecond, func() {
		n, err := p.Wait(50, make([]Event, 4))
		require.NoError(t, err)
		require.Zero(t, n)
	})
	assert.GreaterOrEqual(t, longest, 40*time.Millisecond)
	assert.Less(t, longest, 2*time.Second)

	start := time.Now()
	_, err := p.Wait(0, make([]Event, 4))
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "timeout 0 polls")
}

// blockedFor runs wait until one call lasts at least enough (at most
// attempts times) and returns the longest duration. A blocking epoll_wait can legitimately return early with EINTR
// (the Go runtime's own SIGURG preemption signals), which Wait reports as
// zero events; one attempt blocking for the full timeout is enough to
// show the timeout is honoured.
func blockedFor(t *testing.T, attempts int, enough time.Duration, wait func()) time.Duration {
	t.Helper()
	var longest time.Duration
	for range attempts {
		start := time.Now()
		wait()
		longest = max(longest, time.Since(start))
		if longest >= enough {
			break
		}
	}
	return longest
}

func TestPollerWaitSmallEventsBuffer(t *testing.T) {
	p := newTestPoller(t)
	seen := map[int32]bool{}
	for range 3 {
		pp := newPipe(t)
		require.NoError(t, p.SetInterest(pp.w, EventWrite))
	}
	events := make([]Event, 2)
	for range 3 {
		n, err := p.Wait(0, events)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		for _, ev := range events[:n] {
			seen[ev.Fd] = true
		}
	}
	assert.Len(t, seen, 3, "level-triggered fds left out are reported later")

	n, err := p.Wait(0, nil)
	require.NoError(t, err)
	assert.Zero(t, n, "no room, nothing reported")
}

func TestPollerRawBufferGrowsWhenFull(t *testing.T) {
	p := newTestPoller(t)
	p.buf = p.buf[:2]
	for range 5 {
		pp := newPipe(t)
		require.NoError(t, p.SetInterest(pp.w, EventWrite))
	}
	events := make([]Event, 16)
	var counts []int
	for range 3 {
		n, err := p.Wait(0, events)
		require.NoError(t, err)
		counts = append(counts, n)
	}
	assert.Equal(t, []int{2, 4, 5}, counts)
	assert.Equal(t, 8, len(p.buf))
}

func TestPollerClose(t *testing.T) {
	p, err := NewPoller()
	require.NoError(t, err)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "idempotent")
	_, err = p.Wait(0, make([]Event, 1))
	assert.ErrorIs(t, err, unix.EBADF)
}

func TestPollerDoesNotAllocate(t *testing.T) {
	p := newTestPoller(t)
	pp := newPipe(t)
	writeByte(t, pp.w)
	require.NoError(t, p.SetInterest(pp.r, EventRead))
	require.NoError(t, p.SetInterest(pp.w, EventWrite))
	events := make([]Event, 8)
	allocs := testing.AllocsPerRun(100, func() {
		n, err := p.Wait(0, events)
		if err != nil || n != 2 {
			panic("unexpected wait result")
		}
	})
	assert.Zero(t, allocs, "Wait")
	allocs = testing.AllocsPerRun(100, func() {
		if p.SetInterest(pp.r, EventRead|EventWrite) != nil || p.SetInterest(pp.r, EventRead) != nil {
			panic("SetInterest failed")
		}
	})
	assert.Zero(t, allocs, "SetInterest on a tracked fd")
}
