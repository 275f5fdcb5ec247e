package goloop

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// popAll pops every timer (end = +Inf) and returns the slots in order.
func popAll(h *TimerHeap) []int32 {
	out := make([]int32, h.Len())
	n := h.PopExpired(math.Inf(1), out)
	return out[:n]
}

// checkHeap verifies the heap property and the slot->index map.
func checkHeap(t *testing.T, h *TimerHeap) {
	t.Helper()
	for i := range h.items {
		if i > 0 {
			parent := (i - 1) / heapArity
			require.False(t, h.items[i].before(&h.items[parent]), "heap order broken at %d", i)
		}
		require.Equal(t, int32(i), h.pos[h.items[i].slot], "pos broken for slot %d", h.items[i].slot)
	}
	present := 0
	for _, p := range h.pos {
		if p >= 0 {
			present++
		}
	}
	require.Equal(t, len(h.items), present)
}

func TestTimerHeapOrdering(t *testing.T) {
	var h TimerHeap
	whens := []float64{5, 1, 9, 3, 7, 2, 8, 0.5, 6, 4}
	for i, w := range whens {
		h.Add(int32(i), w)
	}
	checkHeap(t, &h)
	require.Equal(t, len(whens), h.Len())
	when, ok := h.Peek()
	require.True(t, ok)
	assert.Equal(t, 0.5, when)
	assert.Equal(t, []int32{7, 1, 5, 3, 9, 0, 8, 4, 6, 2}, popAll(&h))
	assert.Zero(t, h.Len())
	_, ok = h.Peek()
	assert.False(t, ok)
}

func TestTimerHeapFIFOOnEqualWhen(t *testing.T) {
	var h TimerHeap
	slots := []int32{5, 3, 9, 1, 0, 12, 7, 2, 30, 4, 6}
	for _, s := range slots {
		h.Add(s, 10)
	}
	h.Add(20, 9) // an earlier timer added last still comes first
	assert.Equal(t, append([]int32{20}, slots...), popAll(&h))
}

func TestTimerHeapRemove(t *testing.T) {
	fill := func() *TimerHeap {
		h := &TimerHeap{}
		for i := range int32(20) {
			h.Add(i, float64(i))
		}
		return h
	}
	without := func(drop ...int32) []int32 {
		var want []int32
		for i := range int32(20) {
			if !slices.Contains(drop, i) {
				want = append(want, i)
			}
		}
		return want
	}
	cases := map[string]int32{"top": 0, "middle": 7, "bottom": 19}
	for name, slot := range cases {
		t.Run(name, func(t *testing.T) {
			h := fill()
			require.True(t, h.Remove(slot))
			checkHeap(t, h)
			assert.False(t, h.Remove(slot), "second remove")
			assert.Equal(t, without(slot), popAll(h))
		})
	}
	t.Run("last array element", func(t *testing.T) {
		h := fill()
		slot := h.items[len(h.items)-1].slot
		require.True(t, h.Remove(slot))
		checkHeap(t, h)
		assert.Equal(t, without(slot), popAll(h))
	})
	t.Run("absent", func(t *testing.T) {
		h := fill()
		assert.False(t, h.Remove(-1))
		assert.False(t, h.Remove(1000))
		assert.Equal(t, 20, h.Len())
	})
}

func TestTimerHeapSlotReuse(t *testing.T) {
	var h TimerHeap
	h.Add(1, 10)
	h.Add(2, 20)
	require.True(t, h.Remove(1))
	h.Add(1, 30)
	checkHeap(t, &h)
	assert.Equal(t, []int32{2, 1}, popAll(&h))
	h.Add(2, 5) // reuse after pop
	assert.Equal(t, []int32{2}, popAll(&h))
}

func TestTimerHeapAddPresentSlotReschedules(t *testing.T) {
	var h TimerHeap
	h.Add(1, 10)
	h.Add(2, 20)
	h.Add(1, 30)
	checkHeap(t, &h)
	assert.Equal(t, 2, h.Len())
	assert.Equal(t, []int32{2, 1}, popAll(&h))
}

func TestTimerHeapIgnoresNegativeSlot(t *testing.T) {
	var h TimerHeap
	h.Add(-3, 1)
	assert.Zero(t, h.Len())
}

func TestTimerHeapNaNIsDue(t *testing.T) {
	var h TimerHeap
	h.Add(1, 5)
	h.Add(2, math.NaN())
	out := make([]int32, 4)
	require.Equal(t, 1, h.PopExpired(0, out))
	assert.Equal(t, int32(2), out[0])
}

func TestTimerHeapApply(t *testing.T) {
	var h TimerHeap
	h.Apply([]TimerOp{
		{Slot: 1, Kind: TimerAdd, When: 10},
		{Slot: 2, Kind: TimerAdd, When: 20},
		{Slot: 1, Kind: TimerRemove},
		{Slot: 1, Kind: TimerAdd, When: 30},
		{Slot: 3, Kind: TimerRemove}, // absent: no-op
		{Slot: 4, Kind: 99, When: 1}, // unknown kind: ignored
	})
	checkHeap(t, &h)
	require.Equal(t, 2, h.Len())
	assert.Equal(t, []int32{2, 1}, popAll(&h))

	h.Apply([]TimerOp{
		{Slot: 7, Kind: TimerAdd, When: 1},
		{Slot: 7, Kind: TimerRemove},
	})
	assert.Zero(t, h.Len())
}

func TestTimerHeapPopExpired(t *testing.T) {
	var h TimerHeap
	for i := range int32(6) {
		h.Add(i, float64(i+1)) // 1..6
	}
	out := make([]int32, 10)
	// Strictly before end: the timer at 3 is not expired at end = 3.
	require.Equal(t, 2, h.PopExpired(3, out))
	assert.Equal(t, []int32{0, 1}, out[:2])

	small := make([]int32, 2)
	require.Equal(t, 2, h.PopExpired(100, small), "stops when out is full")
	assert.Equal(t, []int32{2, 3}, small)
	require.Equal(t, 2, h.PopExpired(100, small))
	assert.Equal(t, []int32{4, 5}, small)
	assert.Zero(t, h.PopExpired(100, small))
	assert.Zero(t, h.PopExpired(100, nil))
}

func TestTimerHeapClear(t *testing.T) {
	var h TimerHeap
	for i := range int32(10) {
		h.Add(i, float64(i))
	}
	h.Clear()
	assert.Zero(t, h.Len())
	checkHeap(t, &h)
	assert.False(t, h.Remove(3))
	h.Add(3, 1)
	assert.Equal(t, []int32{3}, popAll(&h))
}

// refTimer is the reference model: a timer with its insertion order.
type refTimer struct {
	when float64
	seq  int
	slot int32
}

func TestTimerHeapRandomizedAgainstReference(t *testing.T) {
	const slots = 64
	rng := rand.New(rand.NewPCG(1, 2))
	var h TimerHeap
	ref := map[int32]refTimer{}
	seq := 0
	sorted := func() []refTimer {
		all := make([]refTimer, 0, len(ref))
		for _, r := range ref {
			all = append(all, r)
		}
		slices.SortFunc(all, func(a, b refTimer) int {
			if a.when != b.when {
				if a.when < b.when {
					return -1
				}
				return 1
			}
			return a.seq - b.seq
		})
		return all
	}
	out := make([]int32, 16)
	for op := range 10_000 {
		slot := int32(rng.IntN(slots))
		switch r := rng.IntN(10); {
		case r < 5: // add (few distinct deadlines -> many ties)
			if _, ok := ref[slot]; ok {
				continue
			}
			when := float64(rng.IntN(50))
			h.Add(slot, when)
			seq++
			ref[slot] = refTimer{when, seq, slot}
		case r < 8: // remove, present or not
			_, ok := ref[slot]
			require.Equal(t, ok, h.Remove(slot), "op %d", op)
			delete(ref, slot)
		default: // pop with a random cut-off into a random-size buffer
			end := float64(rng.IntN(50))
			buf := out[:rng.IntN(len(out)+1)]
			n := h.PopExpired(end, buf)
			want := []int32{}
			for _, r := range sorted() {
				if r.when >= end || len(want) == len(buf) {
					break
				}
				want = append(want, r.slot)
			}
			require.Equal(t, want, slices.Clone(buf[:n]), "op %d", op)
			for _, s := range want {
				delete(ref, s)
			}
		}
		require.Equal(t, len(ref), h.Len())
		if op%97 == 0 {
			checkHeap(t, &h)
		}
		if all := sorted(); len(all) > 0 {
			when, ok := h.Peek()
			require.True(t, ok)
			require.Equal(t, all[0].when, when)
		}
	}
	want := []int32{}
	for _, r := range sorted() {
		want = append(want, r.slot)
	}
	assert.Equal(t, want, popAll(&h))
}

func TestTimerHeapDoesNotAllocateAfterWarmUp(t *testing.T) {
	var h TimerHeap
	for i := range int32(256) {
		h.Add(i, float64(i))
	}
	h.Clear()
	out := make([]int32, 64)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range int32(128) {
			h.Add(i, float64(i%7))
		}
		for i := int32(0); i < 128; i += 3 {
			h.Remove(i)
		}
		for h.PopExpired(math.Inf(1), out) > 0 {
		}
	})
	assert.Zero(t, allocs)

	allocs = testing.AllocsPerRun(100, func() {
		h.Apply([]TimerOp{{Slot: 3, Kind: TimerAdd, When: 1}, {Slot: 3, Kind: TimerRemove}})
	})
	assert.Zero(t, allocs)
}

func BenchmarkTimerAddRemove(b *testing.B) {
	var h TimerHeap
	const pending = 1000
	for i := range int32(pending) {
		h.Add(i, float64(i))
	}
	when := 0.0
	b.ReportAllocs()
	for b.Loop() {
		when += 0.37
		h.Add(pending, math.Mod(when, pending))
		h.Remove(pending)
	}
}

func BenchmarkTimerAddPop(b *testing.B) {
	var h TimerHeap
	const pending = 1000
	for i := range int32(pending) {
		h.Add(i, float64(i))
	}
	out := make([]int32, 1)
	when := float64(pending)
	b.ReportAllocs()
	for b.Loop() {
		h.PopExpired(math.Inf(1), out)
		h.Add(out[0], when)
		when++
	}
}
