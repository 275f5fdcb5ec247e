package goloop

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMonotonicNowAdvancesWithWallTime(t *testing.T) {
	start := time.Now()
	a := MonotonicNow()
	time.Sleep(20 * time.Millisecond)
	b := MonotonicNow()
	elapsed := time.Since(start).Seconds()
	require.Greater(t, a, 0.0)
	assert.GreaterOrEqual(t, b-a, 0.015)
	assert.LessOrEqual(t, b-a, elapsed+0.001)
}

func TestMonotonicNowNonDecreasing(t *testing.T) {
	prev := MonotonicNow()
	for range 1000 {
		now := MonotonicNow()
		require.GreaterOrEqual(t, now, prev)
		prev = now
	}
}

func TestNsToSecondsMatchesCPython(t *testing.T) {
	// Expected values follow _PyTime_AsSecondsDouble: exact for whole
	// seconds, otherwise float64(ns) / 1e9.
	assert.Equal(t, 12.0, nsToSeconds(12_000_000_000))
	assert.Equal(t, 0.0, nsToSeconds(0))
	assert.Equal(t, float64(int64(123456789012345))/1e9, nsToSeconds(123456789012345))
	assert.Equal(t, 1.5, nsToSeconds(1_500_000_000))
}

func TestMonotonicNowDoesNotAllocate(t *testing.T) {
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = MonotonicNow() }))
}

func BenchmarkMonotonicNow(b *testing.B) {
	for b.Loop() {
		_ = MonotonicNow()
	}
}
