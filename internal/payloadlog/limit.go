package payloadlog

import (
	"sync"
	"time"
)

// batchLimit is the most events a batch takes: Options.BatchSize, or less
// since the receiver refused a batch as too large (413).
//
// A 413 says the receiver's limit is below the refused batch, not by how
// much, nor for how long: a receiver's limit may be lowered for a while,
// and its limit is often in bytes, which events of different sizes reach
// at different counts. So the limit is not kept for good. Once it has held
// for a wait, one batch up to twice as large is tried (a probe); taken
// whole, it raises the limit to its size and the next probe follows at
// once, up to BatchSize, where the limit is gone. A 413 to the probe keeps
// the limit, and a 413 that lowers the limit puts the next probe a wait
// later; each of them doubles that wait, up to a most, so a receiver with
// a lasting limit sees a probe an hour at most (with the defaults), each
// costing one request more. Time, not a count of batches, decides, so that
// the probes are as rare whatever the traffic.
//
// All methods are safe to call at the same time; they take the time as an
// argument and hold no timer.
type batchLimit struct {
	mu sync.Mutex
	// max is Options.BatchSize; cur is the limit, max when there is none.
	max, cur int
	// first and most bound wait, how long the next probe will wait after
	// a 413; next is when it may come.
	first, most, wait time.Duration
	next              time.Time
	// probing: a probe is out, and no other is taken until it ends.
	probing bool
}

func newBatchLimit(max int, first, most time.Duration) *batchLimit {
	return &batchLimit{max: max, cur: max, first: first, most: most, wait: first}
}

// current is the limit.
func (b *batchLimit) current() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// take returns how many events the next batch may take. probe is the
// limit then, when the batch is a probe: up to twice it. The caller
// ends a probe with probed, once.
func (b *batchLimit) take(now time.Time) (n, probe int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur >= b.max || b.probing || now.Before(b.next) {
		return b.cur, 0
	}
	b.probing = true
	return min(2*b.cur, b.max), b.cur
}

// probed ends the probe taken when the limit was from: a batch of n events
// was delivered whole, or not (whole false: refused, split or cut short).
// Only a batch larger than from taken whole while the limit held says the
// receiver takes more: the limit becomes its size. raised reports it.
// Anything else leaves the limit and the next probe's time as they are:
// after a 413 to the probe, tooLarge has put it later; after an answer
// that says nothing of the size (a batch the queue had no more events
// for, an event refused alone), the next batch probes again.
func (b *batchLimit) probed(now time.Time, from, n int, whole bool) (raised bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if !whole || n <= from || b.cur != from {
		return false
	}
	b.cur = min(n, b.max)
	if b.cur == b.max {
		b.wait, b.next = b.first, time.Time{}
		return true
	}
	b.next = now
	return true
}

// tooLarge takes a 413 to a batch of n events that no event of it
// explains (none was refused alone as too large): batches of n are too
// large. The limit becomes n/2 when that is lower, since the halves of a
// batch go whole or are split and judged in turn; but a refused probe
// (probe true) says only that the probe's size was too large, not the
// limit's, which held: the limit stays. Either way the next probe waits,
// longer each time. lowered is the new limit, 0 when it stays.
func (b *batchLimit) tooLarge(now time.Time, n int, probe bool) (lowered int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lim := max(n/2, 1); !probe && lim < b.cur {
		b.cur, lowered = lim, lim
	} else if !probe {
		// A batch taken before another worker lowered the limit: its
		// refusal is the one that did.
		return 0
	}
	b.next = now.Add(b.wait)
	b.wait = min(2*b.wait, b.most)
	return lowered
}
