package quality

// copyChunk is how many pending predictions, held labels or removed ids a
// snapshot copies per hold of the store's lock: about 5 µs
// (BenchmarkSnapshot's hold-ns).
const copyChunk = 1024

// storeCopy is what Snapshot writes: the store's options, models, pending
// predictions, held labels and removed ids, oldest first.
type storeCopy struct {
	opts    Options
	models  []model
	pending []entry
	held    []heldLabel
	recent  []tomb
}

// snapshotCopy returns a copy of what Snapshot writes. It copies a chunk
// at a time, letting go of the lock in between, so that Observe and Label
// wait for one chunk at most, however much the store holds: holding it
// while encoding them all took about 30 ms per million pending predictions.
//
// The copy is not of one instant, but all it holds was in the store when
// it was copied, and it is as good for a restart. A prediction, held label
// or removed id added meanwhile is in it once the copy reaches it; one
// removed after it was copied is in it, as in a snapshot taken just before.
// One that moved meanwhile, from a place the copy had passed to one it had
// not (a prediction matched, a held label joined, an id forgotten and
// added again), is in it once, where it went: a restore would refuse a
// prediction or a held label twice, and a label both held and matched
// would be counted twice. The models are copied last, so that they know
// every class and segment the copied predictions name; the options do not
// change.
func (s *Store) snapshotCopy() *storeCopy {
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	k := s.startCopy()
	for done := false; !done; {
		done = k.step()
		k.keep()
	}
	return k.finish()
}

// The parts of the store a copier copies, in turn.
const (
	copyingPending = iota
	copyingHeld
	copyingRecent
	copyingModels
	copied
)

// copier copies the store for a snapshot, a step at a time, each under the
// lock once. Only one copies at a time (copyMu).
type copier struct {
	s     *Store
	c     storeCopy
	phase int
	// next is the count, in Store.remembered, of the next removed id to
	// copy.
	next uint64
	// The chunk a step copied, appended to c outside the lock.
	pending []entry
	held    []heldLabel
	recent  []tomb
	// touched is Store.touched, once the copy is done.
	touched map[string]struct{}
}

// startCopy starts a copy of the store.
func (s *Store) startCopy() *copier {
	k := &copier{s: s, pending: make([]entry, 0, copyChunk), held: make([]heldLabel, 0, copyChunk), recent: make([]tomb, 0, copyChunk)}
	s.mu.Lock()
	defer s.mu.Unlock()
	k.c.opts = s.opts
	k.c.pending = make([]entry, 0, s.pending.n+s.pending.n/8)
	k.c.held = make([]heldLabel, 0, s.held.n+s.held.n/8)
	k.c.recent = make([]tomb, 0, len(s.recent)+len(s.recent)/8)
	s.pending.startCopy()
	s.held.startCopy()
	s.touched = map[string]struct{}{}
	return k
}

// step copies the next chunk under the lock, for keep to add to the copy,
// and reports whether the copy is done.
func (k *copier) step() bool {
	s := k.s
	s.mu.Lock()
	done := false
	switch k.phase {
	case copyingPending:
		k.pending, done = s.pending.copyTo(k.pending[:0], copyChunk)
	case copyingHeld:
		k.held, done = s.held.copyTo(k.held[:0], copyChunk)
	case copyingRecent:
		k.recent, k.next, done = s.copyRecent(k.recent[:0], k.next)
	case copyingModels:
		k.c.models = s.copyModels()
		k.touched, s.touched = s.touched, nil
		done = true
	}
	s.mu.Unlock()
	if done {
		k.phase++
	}
	return k.phase == copied
}

// keep adds the chunk step copied to the copy. Appending may grow the
// copy, which copies it: not under the lock.
func (k *copier) keep() {
	k.c.pending = append(k.c.pending, k.pending...)
	k.c.held = append(k.c.held, k.held...)
	k.c.recent = append(k.c.recent, k.recent...)
	k.pending, k.held, k.recent = k.pending[:0], k.held[:0], k.recent[:0]
}

// copyRecent appends to out at most copyChunk removed ids, oldest first,
// from the one remembered next-th on (those forgotten since are skipped),
// and returns it with the count to go on from and whether it reached the
// newest.
func (s *Store) copyRecent(out []tomb, next uint64) ([]tomb, uint64, bool) {
	next = max(next, s.remembered-uint64(len(s.recent)))
	end := min(next+copyChunk, s.remembered)
	for n := next; n < end; n++ {
		out = append(out, s.recent[n%uint64(s.opts.MaxRecent)])
	}
	return out, end, end == s.remembered
}

// copyModels returns a copy of the models as they are now. Their lists of
// classes, class lists, segments and segment values are only ever appended
// to, or replaced whole (SetClasses, which waits for a copy under way):
// the copy keeps each list's length now, and its values do not change
// after.
func (s *Store) copyModels() []model {
	out := make([]model, len(s.models))
	for i, m := range s.models {
		c := model{name: m.name, classes: m.classes.frozen(), sets: m.sets[:len(m.sets):len(m.sets)],
			segNames: m.segNames[:len(m.segNames):len(m.segNames)], segs: make([]interner, len(m.segs)),
			offset: m.offset, hasOffset: m.hasOffset}
		for k := range m.segs {
			c.segs[k] = m.segs[k].frozen()
		}
		out[i] = c
	}
	return out
}

// frozen returns in's values and OtherClass index as they are now, without
// its index map.
func (in *interner) frozen() interner {
	return interner{values: in.values[:len(in.values):len(in.values)], other: in.other}
}

// finish returns the copy, each id that moved while it was copied only
// where it was copied last, and at most MaxRecent removed ids, the newest.
func (k *copier) finish() *storeCopy {
	c := &k.c
	if len(k.touched) > 0 {
		// The copy went through the pending predictions, then the held
		// labels, then the removed ids, each oldest first: an id's last
		// copy is the latest.
		last := make(map[string]int, len(k.touched))
		n := 0
		see := func(id string) {
			if _, ok := k.touched[id]; ok {
				last[id] = n
			}
			n++
		}
		for i := range c.pending {
			see(c.pending[i].id)
		}
		for i := range c.held {
			see(c.held[i].label.ID)
		}
		for i := range c.recent {
			see(c.recent[i].id)
		}
		n = 0
		c.pending = keepLast(c.pending, func(e *entry) string { return e.id }, last, &n)
		c.held = keepLast(c.held, func(h *heldLabel) string { return h.label.ID }, last, &n)
		c.recent = keepLast(c.recent, func(t *tomb) string { return t.id }, last, &n)
	}
	if n := c.opts.MaxRecent; len(c.recent) > n {
		c.recent = c.recent[len(c.recent)-n:]
	}
	return c
}

// keepLast keeps the items whose id has no entry in last, or whose
// position, counted in *n from where the items before them left it, is the
// one there.
func keepLast[T any](items []T, id func(*T) string, last map[string]int, n *int) []T {
	out := items[:0]
	for i := range items {
		if at, ok := last[id(&items[i])]; !ok || at == *n {
			out = append(out, items[i])
		}
		*n++
	}
	clear(items[len(out):]) // holds no memory
	return out
}
