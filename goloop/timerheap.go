package goloop

import "math"

// TimerOp is one entry of the timer operation log. C appends to the log
// without crossing into Go; the engine applies it at the start of Poll.
//
// Layout must match C `struct {int32_t slot; int32_t kind; double when;}`
// (16 bytes).
type TimerOp struct {
	Slot int32
	Kind int32   // TimerAdd or TimerRemove
	When float64 // seconds on CLOCK_MONOTONIC; ignored for TimerRemove
}

// Kinds of TimerOp.
const (
	TimerAdd    int32 = 0
	TimerRemove int32 = 1
)

// timerEntry is one heap element. seq breaks ties between equal deadlines
// so that timers with the same when fire in insertion order (FIFO), as
// asyncio's heapq of TimerHandle effectively does.
type timerEntry struct {
	when float64
	seq  uint64
	slot int32
}

// before is the heap order: (when, seq) lexicographically.
func (a *timerEntry) before(b *timerEntry) bool {
	return a.when < b.when || (a.when == b.when && a.seq < b.seq)
}

// heapArity is 4, as in the Go runtime's timer heap: a shallower tree means
// fewer cache-missing levels on sift-down, which dominates PopExpired.
const heapArity = 4

// TimerHeap is a min-heap of timers keyed by (when, insertion sequence).
//
// Timers are identified by small non-negative int32 slots chosen by the
// caller; pos maps a slot to its heap index so Remove is O(log n). Memory is
// proportional to the largest slot ever used. Once items and pos have grown,
// no operation allocates.
//
// The zero value is an empty heap ready to use. It is not safe for
// concurrent use.
type TimerHeap struct {
	items []timerEntry
	pos   []int32 // slot -> index in items, -1 when absent
	seq   uint64
}

// Add schedules slot at when. The slot must not be present; if it is
// anyway, the timer is rescheduled (as if removed and re-added) rather than
// corrupting the heap, because a panic here would take the Python process
// down. Negative slots are ignored for the same reason. A NaN deadline is
// treated as already due (-Inf): asyncio pops a NaN handle as soon as it
// reaches the heap top, and a NaN at the top would otherwise never expire
// and block every later timer.
func (h *TimerHeap) Add(slot int32, when float64) {
	if slot < 0 {
		return
	}
	if math.IsNaN(when) {
		when = math.Inf(-1)
	}
	h.ensureSlot(slot)
	if h.pos[slot] >= 0 {
		h.removeAt(int(h.pos[slot]))
	}
	h.seq++
	h.items = append(h.items, timerEntry{when: when, seq: h.seq, slot: slot})
	i := len(h.items) - 1
	h.pos[slot] = int32(i)
	h.up(i)
}

// Remove unschedules slot and reports whether it was present.
func (h *TimerHeap) Remove(slot int32) bool {
	if !h.has(slot) {
		return false
	}
	h.removeAt(int(h.pos[slot]))
	return true
}

// Len returns the number of pending timers.
func (h *TimerHeap) Len() int { return len(h.items) }

// Peek returns the earliest deadline.
func (h *TimerHeap) Peek() (when float64, ok bool) {
	if len(h.items) == 0 {
		return 0, false
	}
	return h.items[0].when, true
}

// PopExpired pops timers with when < end, earliest first, into out and
// returns how many it popped. It stops early when out is full.
func (h *TimerHeap) PopExpired(end float64, out []int32) int {
	n := 0
	for n < len(out) && len(h.items) > 0 && h.items[0].when < end {
		out[n] = h.items[0].slot
		h.removeAt(0)
		n++
	}
	return n
}

// Apply applies the log in order. Removing an absent slot is a no-op, so
// C may log a cancel without knowing whether the timer already fired.
// Unknown kinds are ignored.
func (h *TimerHeap) Apply(ops []TimerOp) {
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case TimerAdd:
			h.Add(op.Slot, op.When)
		case TimerRemove:
			h.Remove(op.Slot)
		}
	}
}

// Clear removes every timer, keeping the allocated capacity.
func (h *TimerHeap) Clear() {
	for i := range h.items {
		h.pos[h.items[i].slot] = -1
	}
	h.items = h.items[:0]
	h.seq = 0 // the heap is empty, so no tie can involve an older entry
}

func (h *TimerHeap) has(slot int32) bool {
	return slot >= 0 && int(slot) < len(h.pos) && h.pos[slot] >= 0
}

// ensureSlot grows pos so slot is addressable. Growth at least doubles, so
// callers that number slots densely pay an amortized O(1).
func (h *TimerHeap) ensureSlot(slot int32) {
	if int(slot) < len(h.pos) {
		return
	}
	n := max(int(slot)+1, 2*len(h.pos), 16)
	grown := make([]int32, n)
	copy(grown, h.pos)
	for i := len(h.pos); i < n; i++ {
		grown[i] = -1
	}
	h.pos = grown
}

// removeAt deletes items[i], moving the last element into the hole and
// restoring the heap property around it.
func (h *TimerHeap) removeAt(i int) {
	last := len(h.items) - 1
	h.pos[h.items[i].slot] = -1
	moved := h.items[last]
	h.items = h.items[:last]
	if i == last {
		return
	}
	h.place(i, moved)
	if !h.down(i) {
		h.up(i)
	}
}

// place stores e at index i and records its position.
func (h *TimerHeap) place(i int, e timerEntry) {
	h.items[i] = e
	h.pos[e.slot] = int32(i)
}

// up sifts items[i] towards the root, shifting parents down into the hole
// instead of swapping, which halves the writes.
func (h *TimerHeap) up(i int) {
	e := h.items[i]
	for i > 0 {
		parent := (i - 1) / heapArity
		if !e.before(&h.items[parent]) {
			break
		}
		h.place(i, h.items[parent])
		i = parent
	}
	h.place(i, e)
}

// down sifts items[i] towards the leaves and reports whether it moved.
func (h *TimerHeap) down(i int) bool {
	start := i
	e := h.items[i]
	n := len(h.items)
	for {
		child := h.minChild(i, n)
		if child < 0 || !h.items[child].before(&e) {
			break
		}
		h.place(i, h.items[child])
		i = child
	}
	h.place(i, e)
	return i != start
}

// minChild returns the index of i's earliest child, or -1 for a leaf.
func (h *TimerHeap) minChild(i, n int) int {
	first := i*heapArity + 1
	if first >= n {
		return -1
	}
	best := first
	for c := first + 1; c < first+heapArity && c < n; c++ {
		if h.items[c].before(&h.items[best]) {
			best = c
		}
	}
	return best
}
