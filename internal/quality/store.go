package quality

import (
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// lazyBatch bounds the expired entries each Observe and Label removes on the
// side, so that a store nobody calls Expire on still drains.
const lazyBatch = 4

// maxClassSets bounds the distinct probability class lists kept per model;
// probabilities of predictions with further lists are dropped and counted.
const maxClassSets = 16

// Store holds pending predictions and joins labels to them. It is safe for
// concurrent use.
type Store struct {
	mu   sync.Mutex
	opts Options

	pending queue[entry]
	// index maps an id to its pending slot (≥ 0), or to −1 − its position in
	// recent. One map for both saves a lookup on every call, and turns
	// "remove, then remember" into an update in place.
	index map[string]int32

	models     []*model
	modelIndex map[string]uint32

	// recent is a ring of the last removed ids with why they were removed.
	recent     []tomb
	recentNext int
	// remembered counts the ids remembered so far: the one remembered
	// n-th (from 0) is at recent[n % MaxRecent] until MaxRecent more are.
	remembered uint64

	held      queue[heldLabel]
	heldIndex map[string]int32
	// heldRetrying counts the held labels given back with retries
	// (ReturnHeld): Stats.HeldRetrying.
	heldRetrying int
	// handOff leaves held labels past EarlyTTL to TakeExpiredHeld.
	handOff bool

	stats counters

	// copyMu makes Snapshot's copies take turns: they move the queues'
	// cursors. touched holds, while one copies, the ids that entered the
	// pending predictions, the held labels or the removed ids since it
	// began, which it may have copied twice; nil otherwise.
	copyMu  sync.Mutex
	touched map[string]struct{}
}

// entry is a pending prediction. It is kept small: the id is the only string,
// shared with the index map's key; model and class are interned.
type entry struct {
	id    string
	ext   *extra // probabilities and segments, when the prediction has any
	ts    int64  // capture time, Unix nanoseconds
	val   uint64 // class index, or math.Float64bits of the number
	model uint32
	flags uint8
	conf  uint16 // with flagConfidence, the confidence in units of 1/confScale
}

const (
	flagNumeric uint8 = 1 << iota
	flagOverflow
	flagConfidence
	flagSegmentOverflow // a segment's value was capped
)

// confScale is the denominator of entry.conf.
const confScale = math.MaxUint16

// extra is what only some predictions have.
type extra struct {
	set  uint32    // index in model.sets of the classes of p
	p    []float64 // class probabilities, or nil
	segs []segRef  // the prediction's segments, or nil
}

// segRef is a segment of a prediction: its name's index in model.segNames,
// and its value's in the matching model.segs.
type segRef struct{ name, value uint32 }

type heldLabel struct {
	label Label // Time set to the arrival time if the label had none
	recv  int64 // arrival, Unix nanoseconds, for EarlyTTL
	// reask is when HeldDue next returns the label, Unix nanoseconds; 0
	// until it first has.
	reask int64
	// retries and retryAt are a label's HeldLabel.Retries and Retry (Unix
	// nanoseconds, 0 for none) once ReturnHeld has given it back.
	retries uint8
	retryAt int64
}

type tomb struct {
	id  string
	why Reason // ReasonMatched, ReasonExpired or ReasonEvicted
}

type model struct {
	name    string
	classes interner // class values
	sets    [][]string
	// segNames are the segment names seen, segs the values of each.
	segNames []string
	segs     []interner
	// offset, when hasOffset, is the offset of the model's regression
	// labels (SetOffset); offsetUsed once an Outcome carried it.
	offset     float64
	hasOffset  bool
	offsetUsed bool
}

// interner interns the values of a label, capped: past the cap every new
// value is OtherClass.
type interner struct {
	values []string // OtherClass included once needed
	index  map[string]uint32
	other  int64 // index of OtherClass in values, -1 until needed
}

func newInterner() interner { return interner{index: map[string]uint32{}, other: -1} }

type counters struct {
	predictions, duplicatePredictions, invalidPredictions uint64
	expired, evicted                                      uint64
	heldExpired, heldEvicted                              uint64
	probabilitiesDropped                                  uint64
	labels                                                [numReasons]uint64
}

// New returns an empty Store bounded by opts.
func New(opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{
		opts:       opts,
		pending:    newQueue[entry](),
		index:      map[string]int32{},
		modelIndex: map[string]uint32{},
		held:       newQueue[heldLabel](),
		heldIndex:  map[string]int32{},
	}, nil
}

// Options returns the store's options, defaults filled in.
func (s *Store) Options() Options { return s.opts }

// Observe adds a pending prediction. If a held label was waiting for it, the
// two are joined at once and Observe returns the Outcome with ReasonMatched.
// Otherwise it returns ReasonPending, ReasonDuplicatePrediction (the first
// prediction with an id is kept, also while its id is remembered after it
// was matched, expired or evicted) or ReasonInvalidPrediction.
//
// Observe keeps a copy of p.ID and p.Probabilities, never p's own memory.
func (s *Store) Observe(now time.Time, p Prediction) (Outcome, Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now, lazyBatch)

	if !validPrediction(p) {
		s.stats.invalidPredictions++
		return Outcome{}, ReasonInvalidPrediction
	}
	// Keep the first prediction, even once it is gone and only remembered: a
	// label for the id then says what became of it, rather than joining a
	// later one.
	if _, ok := s.index[p.ID]; ok {
		s.stats.duplicatePredictions++
		return Outcome{}, ReasonDuplicatePrediction
	}
	// A prediction made after it reached the sidecar (a client's clock
	// ahead of ours) counts from now: pending predictions expire from the
	// oldest in arrival order, and one stamped in the future would hold
	// every later one past its TTL.
	ts := p.Time
	if ts.IsZero() || ts.After(now) {
		ts = now
	}
	mi, m := s.model(p.Model)
	// Copy the id so the store never pins a caller's request buffer.
	e := entry{id: strings.Clone(p.ID), ts: ts.UnixNano(), model: mi}
	if p.Value.Numeric {
		e.flags |= flagNumeric
		e.val = math.Float64bits(p.Value.Number)
	} else {
		idx, overflow := m.classes.intern(p.Value.Class, s.opts.MaxClasses)
		e.val = uint64(idx)
		if overflow {
			e.flags |= flagOverflow
		}
	}
	if len(p.Segments) > 0 {
		e.ext = &extra{segs: make([]segRef, 0, len(p.Segments))}
		for _, sg := range p.Segments {
			n := slices.Index(m.segNames, sg.Name)
			if n < 0 {
				if len(m.segNames) >= MaxSegmentNames {
					continue
				}
				n = len(m.segNames)
				m.segNames = append(m.segNames, strings.Clone(sg.Name))
				m.segs = append(m.segs, newInterner())
			}
			v, overflow := m.segs[n].intern(sg.Value, s.opts.MaxSegmentValues)
			e.ext.segs = append(e.ext.segs, segRef{name: uint32(n), value: v})
			if overflow {
				e.flags |= flagSegmentOverflow
			}
		}
	}
	if p.HasConfidence && len(p.Probabilities) == 0 {
		e.flags |= flagConfidence
		e.conf = uint16(math.Round(p.Confidence * confScale))
	}
	if len(p.Probabilities) > 0 {
		if set, ok := m.classSet(p.Classes); ok {
			if e.ext == nil {
				e.ext = &extra{}
			}
			e.ext.set, e.ext.p = set, slices.Clone(p.Probabilities)
		} else {
			s.stats.probabilitiesDropped++
		}
	}
	s.stats.predictions++

	if i, ok := s.heldIndex[p.ID]; ok {
		h := s.dropHeld(i)
		o, r := s.join(m, &e, h.label)
		s.stats.labels[r]++
		if r == ReasonMatched {
			s.remember(e.id, ReasonMatched)
			return o, ReasonMatched
		}
		// The held label did not fit the prediction: it is counted as
		// invalid, and the prediction waits for a proper one.
	}

	if s.pending.n >= s.opts.MaxEntries {
		s.removePending(s.pending.head, ReasonEvicted)
		s.stats.evicted++
	}
	s.index[e.id] = s.pending.push(e)
	s.touch(e.id)
	return Outcome{}, ReasonPending
}

// Label joins l to its prediction. It returns the Outcome and ReasonMatched,
// ReasonHeld when l waits in the early-label buffer for its prediction, or
// why l cannot be joined: ReasonUnknownID, ReasonExpired, ReasonEvicted,
// ReasonDuplicate or ReasonInvalid.
func (s *Store) Label(now time.Time, l Label) (Outcome, Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now, lazyBatch)
	return s.label(now, l)
}

// LabelIfKnown is Label for a label another replica received and did not
// know: it joins l, or says why not, only when this store knows its id (a
// pending prediction, one removed lately, or a held label), and then
// counts it as Label does. Else it returns ReasonUnknownID and false, and
// counts, holds and changes nothing: the label is the other replica's to
// keep.
func (s *Store) LabelIfKnown(now time.Time, l Label) (Outcome, Reason, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now, lazyBatch)
	if _, ok := s.index[l.ID]; !ok {
		if _, ok := s.heldIndex[l.ID]; !ok {
			return Outcome{}, ReasonUnknownID, false
		}
	}
	o, r := s.label(now, l)
	return o, r, true
}

func (s *Store) label(now time.Time, l Label) (Outcome, Reason) {
	if l.Time.IsZero() {
		l.Time = now
	}
	if l.ID == "" || !l.Value.valid() {
		return s.final(ReasonInvalid)
	}
	v, ok := s.index[l.ID]
	if ok && v >= 0 {
		i := v
		e := s.pending.at(i)
		if e.ts <= now.UnixNano()-int64(s.opts.TTL) {
			s.removePending(i, ReasonExpired)
			s.stats.expired++
			return s.final(ReasonExpired)
		}
		o, r := s.join(s.models[e.model], e, l)
		if r == ReasonMatched {
			s.removePending(i, ReasonMatched)
		}
		s.stats.labels[r]++
		return o, r
	}
	if ok {
		switch s.recent[-1-v].why {
		case ReasonMatched:
			return s.final(ReasonDuplicate)
		case ReasonExpired:
			return s.final(ReasonExpired)
		default:
			return s.final(ReasonEvicted)
		}
	}
	if _, ok := s.heldIndex[l.ID]; ok {
		return s.final(ReasonDuplicate)
	}
	if s.opts.MaxEarly == 0 {
		return s.final(ReasonUnknownID)
	}
	if s.held.n >= s.opts.MaxEarly {
		s.removeHeld(s.held.head)
		s.stats.heldEvicted++
	}
	l.ID = strings.Clone(l.ID)
	l.Model = strings.Clone(l.Model)
	l.Value.Class = strings.Clone(l.Value.Class)
	s.pushHeld(heldLabel{label: l, recv: now.UnixNano()}, false)
	return Outcome{}, ReasonHeld
}

// final counts a label that cannot be joined, with its final reason.
func (s *Store) final(r Reason) (Outcome, Reason) {
	s.stats.labels[r]++
	return Outcome{}, r
}

// join computes the Outcome of l for e, or says why l does not fit e.
func (s *Store) join(m *model, e *entry, l Label) (Outcome, Reason) {
	numeric := e.flags&flagNumeric != 0
	probs := e.ext != nil && e.ext.p != nil
	if !numeric && l.Value.Numeric && probs {
		// A class's index among the prediction's probabilities names it,
		// as scikit-learn's labels 0 and 1 name classes_[0] and [1].
		if c, ok := classAt(m.sets[e.ext.set], l.Value.Number); ok {
			l.Value = Class(c)
		}
	}
	if (l.Model != "" && l.Model != m.name && m.name != s.opts.OverflowModel) || l.Value.Numeric != numeric {
		return Outcome{}, ReasonInvalid
	}
	o := Outcome{ID: l.ID, Model: m.name, Delay: time.Duration(max(l.Time.UnixNano()-e.ts, 0))}
	if e.ext != nil && e.ext.segs != nil {
		o.Segments = make([]Segment, len(e.ext.segs))
		for k, r := range e.ext.segs {
			o.Segments[k] = Segment{Name: m.segNames[r.name], Value: m.segs[r.name].values[r.value]}
		}
		o.SegmentOverflow = e.flags&flagSegmentOverflow != 0
	}
	if numeric {
		o.Regression = true
		o.PredictedValue = math.Float64frombits(e.val)
		o.ActualValue = l.Value.Number
		d := o.PredictedValue - o.ActualValue
		o.AbsError, o.SquaredError = math.Abs(d), d*d
		if !m.hasOffset {
			m.offset, m.hasOffset = o.ActualValue, true // the first label
		}
		m.offsetUsed = true
		o.Offset = m.offset
		return o, ReasonMatched
	}
	o.Predicted, o.PredictedIndex = m.classes.values[e.val], int(e.val)
	o.PredictedOverflow = e.flags&flagOverflow != 0
	idx, overflow := m.classes.intern(l.Value.Class, s.opts.MaxClasses)
	o.Actual, o.ActualIndex, o.ActualOverflow = m.classes.values[idx], int(idx), overflow
	o.ActualClass = l.Value.Class
	o.Correct = o.Predicted == o.Actual
	if probs {
		o.HasProbabilities = true
		classes := m.sets[e.ext.set]
		o.Brier, o.LogLoss = scoreProbabilities(e.ext.p, classes, l.Value.Class)
		if !o.PredictedOverflow {
			o.Confidence, o.HasConfidence = probabilityOf(e.ext.p, classes, o.Predicted)
		}
	} else if e.flags&flagConfidence != 0 && !o.PredictedOverflow {
		o.Confidence, o.HasConfidence = float64(e.conf)/confScale, true
	}
	return o, ReasonMatched
}

// Expire removes up to Options.ExpireBatch expired predictions and held
// labels and returns how many it removed; call it again while that equals the
// batch. Expiry walks from the oldest capture, so a prediction captured with
// an older Time than ones before it may wait for them (Label still checks
// each entry's own TTL).
func (s *Store) Expire(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expire(now, s.opts.ExpireBatch)
}

func (s *Store) expire(now time.Time, budget int) int {
	n := 0
	cutoff := now.UnixNano() - int64(s.opts.TTL)
	for n < budget && s.pending.head >= 0 && s.pending.at(s.pending.head).ts <= cutoff {
		s.removePending(s.pending.head, ReasonExpired)
		s.stats.expired++
		n++
	}
	cutoff = now.UnixNano() - int64(s.opts.EarlyTTL)
	for n < budget && !s.handOff && s.held.head >= 0 && s.held.at(s.held.head).recv <= cutoff {
		s.removeHeld(s.held.head)
		s.stats.heldExpired++
		n++
	}
	return n
}

// removePending removes slot i; its id is remembered (in index) with why.
func (s *Store) removePending(i int32, why Reason) {
	e := s.pending.remove(i)
	s.remember(e.id, why)
}

// SetHandOff makes the held labels whose EarlyTTL has passed leave the
// store through TakeExpiredHeld, uncounted, rather than end as
// ReasonUnknownID: for a caller that asks other replicas about them first.
func (s *Store) SetHandOff(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handOff = on
}

// HeldLabel is a held label whose EarlyTTL has passed, as TakeExpiredHeld
// takes it and ReturnHeld gives it back.
type HeldLabel struct {
	Label
	// Retries counts the times the label's end was put off: it was given
	// back to be taken again at its Retry (the caller could not ask every
	// other replica about it). The caller bounds it; the store keeps it, in
	// snapshots too, up to MaxHeldRetries.
	Retries int
	// Retry is when TakeExpiredHeld takes the label again; zero, or a time
	// past, for its next call.
	Retry time.Time
}

// MaxHeldRetries bounds HeldLabel.Retries.
const MaxHeldRetries = math.MaxUint8

// TakeExpiredHeld removes at most max held labels whose EarlyTTL has passed,
// oldest first, and returns them, uncounted: CountUnknown counts those no
// replica could join. Those ReturnHeld gave back come first, each once its
// Retry has come.
func (s *Store) TakeExpiredHeld(now time.Time, max int) []HeldLabel {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []HeldLabel
	t := now.UnixNano()
	cutoff := t - int64(s.opts.EarlyTTL)
	for i := s.held.head; i >= 0 && len(out) < max; {
		h := s.held.at(i)
		next := s.held.slots[i].next
		if h.recv > cutoff {
			break // and so is every label after it, received later
		}
		if h.retryAt <= t {
			d := s.dropHeld(i)
			hl := HeldLabel{Label: d.label, Retries: int(d.retries)}
			if d.retryAt != 0 {
				hl.Retry = time.Unix(0, d.retryAt)
			}
			out = append(out, hl)
		}
		i = next
	}
	return out
}

// HeldDue returns copies of at most max held labels that are due to be
// asked of the other replicas again, oldest first, and leaves them held:
// for a caller that asks, while a label waits, whether its prediction has
// come to another replica since. A label is due once it has been held for
// first, and then each time its time held has doubled since it last was,
// but not in the last first of its EarlyTTL, which TakeExpiredHeld covers.
// ForgetHeld drops those another replica joined.
func (s *Store) HeldDue(now time.Time, first time.Duration, max int) []Label {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Label
	t := now.UnixNano()
	for i := s.held.head; i >= 0 && len(out) < max; i = s.held.slots[i].next {
		h := s.held.at(i)
		age := t - h.recv
		if age < int64(first) {
			break // and so is every label after it, received later
		}
		due := h.reask
		if due == 0 {
			due = h.recv + int64(first)
		}
		if t < due || age > int64(s.opts.EarlyTTL-first) {
			continue
		}
		h.reask = h.recv + 2*age
		out = append(out, h.label)
	}
	return out
}

// ForgetHeld drops the held labels of lbs, uncounted: another replica has
// joined them (HeldDue). Those no longer held are skipped.
func (s *Store) ForgetHeld(lbs []Label) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lbs {
		if i, ok := s.heldIndex[l.ID]; ok {
			s.dropHeld(i)
		}
	}
}

// ReturnHeld gives back labels TakeExpiredHeld took that are not to end
// yet: no other replica was asked about them after all (the caller is
// stopping, or busy), or not every one could be, and the caller puts their
// end off (a Retry, with Retries counted up). Each is held again ahead of
// the others, uncounted, as a label whose time ended at now, keeping its
// Retries and Retry: the next TakeExpiredHeld from its Retry on takes it
// first, and a snapshot keeps it. While the store is full, those given back
// are the first evicted, as the oldest. One whose id the store has come to
// know meanwhile (its prediction came, or another label for it) is
// labelled as Label would instead; ReturnHeld returns the outcomes of those
// that joined.
func (s *Store) ReturnHeld(now time.Time, lbs []HeldLabel) []Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	var joined []Outcome
	recv := now.UnixNano() - int64(s.opts.EarlyTTL)
	for _, l := range slices.Backward(lbs) { // lbs[0], the oldest, ends first in line
		_, known := s.index[l.ID]
		if _, held := s.heldIndex[l.ID]; known || held {
			if o, r := s.label(now, l.Label); r == ReasonMatched {
				joined = append(joined, o)
			}
			continue
		}
		if s.held.n >= s.opts.MaxEarly {
			// Labels held meanwhile filled the store: the oldest, this
			// one, is evicted, as Label evicts it.
			s.stats.heldEvicted++
			s.stats.labels[ReasonUnknownID]++
			continue
		}
		h := heldLabel{label: l.Label, recv: recv, retries: uint8(min(max(l.Retries, 0), MaxHeldRetries))}
		if !l.Retry.IsZero() {
			h.retryAt = l.Retry.UnixNano()
		}
		s.pushHeld(h, true)
	}
	return joined
}

// CountUnknown counts n labels taken by TakeExpiredHeld that no replica
// could join, as held labels that expired.
func (s *Store) CountUnknown(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.heldExpired += uint64(n)
	s.stats.labels[ReasonUnknownID] += uint64(n)
}

// removeHeld drops a held label whose prediction never came: its final
// reason is unknown_id.
func (s *Store) removeHeld(i int32) {
	s.dropHeld(i)
	s.stats.labels[ReasonUnknownID]++
}

// pushHeld holds h, last in line or, with front, first.
func (s *Store) pushHeld(h heldLabel, front bool) {
	if h.retries > 0 {
		s.heldRetrying++
	}
	if front {
		s.heldIndex[h.label.ID] = s.held.pushFront(h)
	} else {
		s.heldIndex[h.label.ID] = s.held.push(h)
	}
	s.touch(h.label.ID)
}

// dropHeld takes the i-th held label out of the store, uncounted.
func (s *Store) dropHeld(i int32) heldLabel {
	h := s.held.remove(i)
	delete(s.heldIndex, h.label.ID)
	if h.retries > 0 {
		s.heldRetrying--
	}
	return h
}

// remember records that id was removed and why, forgetting the oldest record
// once MaxRecent are kept.
func (s *Store) remember(id string, why Reason) {
	s.touch(id)
	s.remembered++
	t := tomb{id: id, why: why}
	if len(s.recent) < s.opts.MaxRecent {
		s.index[id] = -1 - int32(len(s.recent))
		s.recent = append(s.recent, t)
		return
	}
	pos := s.recentNext
	if old := s.recent[pos].id; s.index[old] == -1-int32(pos) {
		delete(s.index, old)
	}
	s.recent[pos] = t
	s.index[id] = -1 - int32(pos)
	s.recentNext = (pos + 1) % len(s.recent)
}

// touch notes that id entered the pending predictions, the held labels or
// the removed ids, if a snapshot is copying the store.
func (s *Store) touch(id string) {
	if s.touched != nil {
		s.touched[id] = struct{}{}
	}
}

// SetOffset makes c, a finite number, the offset of model's regression
// labels: the value the Outcomes joined from then on carry in Offset. The
// sidecar sums the labels less their offset, Σ(y − c) and Σ(y − c)², from
// which the labels' variance is exact to float64's precision when c is
// near their mean: summed as they are, the squares of labels whose mean is
// far larger than their spread lose it all. A model given none takes its
// first regression label's value, and a snapshot keeps it, so that a
// restart keeps the offset too.
//
// An offset is fixed once an Outcome of the model carried it, until the
// store is created or restored again: every sum of one process is of one
// offset. SetOffset then changes nothing, and reports false, unless c is
// that offset.
func (s *Store) SetOffset(model string, c float64) bool {
	if math.IsNaN(c) || math.IsInf(c, 0) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, m := s.model(model)
	if m.offsetUsed {
		return m.offset == c
	}
	m.offset, m.hasOffset = c, true
	return true
}

// SetClasses makes classes, in their order, the first of model's class
// values (Outcome.PredictedIndex and ActualIndex, and the classes kept
// below Options.MaxClasses), so that stores given the same list agree on
// them whatever order traffic brings the classes in. An empty class,
// OtherClass, and a class listed twice are skipped, and the list is cut at
// MaxClasses. The classes the store knew already and that are not listed
// follow, in their order; those that no longer fit below MaxClasses become
// OtherClass, and so do the pending predictions of them, whose labels are
// then joined as overflow. A pending prediction that was OtherClass stays
// so, listed or not: the store did not keep its class. SetClasses reports
// whether it changed the order; a store whose first classes are those
// already, in that order (a snapshot of a store given the same list), is
// left as it is.
//
// It waits for a Snapshot that is copying the store, as the copy's
// predictions name classes by their index.
func (s *Store) SetClasses(model string, classes []string) bool {
	if len(classes) == 0 {
		return false
	}
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	mi, m := s.model(model)
	first := make([]string, 0, min(len(classes), s.opts.MaxClasses))
	for _, c := range classes {
		if len(first) == s.opts.MaxClasses {
			break
		}
		if c != "" && c != OtherClass && !slices.Contains(first, c) {
			first = append(first, c)
		}
	}
	old := m.classes
	known := 0 // the classes old names, OtherClass left out
	for i, v := range old.values {
		if int64(i) == old.other {
			continue
		}
		if known < len(first) && v != first[known] {
			break
		}
		known++
	}
	if known >= len(first) {
		return false
	}
	// A new list, not the old one changed: a snapshot's copy of the
	// models may still be writing the old one.
	next := newInterner()
	for _, c := range first {
		next.intern(c, s.opts.MaxClasses)
	}
	remap := make([]uint32, len(old.values))
	for i, v := range old.values {
		if int64(i) == old.other {
			continue
		}
		remap[i], _ = next.intern(v, s.opts.MaxClasses)
	}
	if old.other >= 0 {
		remap[old.other], _ = next.intern(OtherClass, s.opts.MaxClasses)
	}
	for i := s.pending.head; i >= 0; i = s.pending.slots[i].next {
		e := &s.pending.slots[i].v
		if e.model != mi || e.flags&flagNumeric != 0 {
			continue
		}
		e.val = uint64(remap[e.val])
		if int64(e.val) == next.other {
			e.flags |= flagOverflow
		}
	}
	m.classes = next
	return true
}

// model returns the index and state of the named model, adding it if new.
func (s *Store) model(name string) (uint32, *model) {
	if i, ok := s.modelIndex[name]; ok {
		return i, s.models[i]
	}
	i := uint32(len(s.models))
	m := &model{name: strings.Clone(name), classes: newInterner()}
	s.modelIndex[m.name] = i
	s.models = append(s.models, m)
	return i, m
}

// intern returns the index of v, or of OtherClass (and true) once max
// values are known. A value named OtherClass shares its index.
func (in *interner) intern(v string, max int) (uint32, bool) {
	if i, ok := in.index[v]; ok {
		return i, false
	}
	if v != OtherClass && len(in.index) < max {
		i := uint32(len(in.values))
		c := strings.Clone(v)
		in.values = append(in.values, c)
		in.index[c] = i
		return i, false
	}
	if in.other < 0 {
		in.other = int64(len(in.values))
		in.values = append(in.values, OtherClass)
	}
	return uint32(in.other), v != OtherClass
}

// classSet returns the index of the interned copy of classes.
func (m *model) classSet(classes []string) (uint32, bool) {
	for i := len(m.sets) - 1; i >= 0; i-- {
		if slices.Equal(m.sets[i], classes) {
			return uint32(i), true
		}
	}
	if len(m.sets) >= maxClassSets {
		return 0, false
	}
	c := make([]string, len(classes))
	for i, s := range classes {
		c[i] = strings.Clone(s)
	}
	m.sets = append(m.sets, c)
	return uint32(len(m.sets) - 1), true
}

func validPrediction(p Prediction) bool {
	if p.ID == "" || p.Model == "" || !p.Value.valid() {
		return false
	}
	if len(p.Probabilities) > 0 && len(p.Probabilities) != len(p.Classes) {
		return false
	}
	if p.HasConfidence && (p.Value.Numeric || !(p.Confidence >= 0 && p.Confidence <= 1)) {
		return false
	}
	for _, x := range p.Probabilities {
		if !(x >= 0 && x <= 1) { // also rejects NaN
			return false
		}
	}
	return true
}

// Stats are cumulative counts since the store was created or restored, and
// current sizes.
type Stats struct {
	// Pending is the number of pending predictions, Held of held labels.
	Pending, Held int
	// HeldRetrying is the number of held labels, of Held, that ReturnHeld
	// gave back with Retries: their end is put off.
	HeldRetrying int
	// Predictions counts accepted predictions.
	Predictions          uint64
	DuplicatePredictions uint64
	InvalidPredictions   uint64
	// Expired and Evicted count pending predictions removed by TTL and MaxEntries.
	Expired, Evicted uint64
	// HeldExpired and HeldEvicted count held labels dropped by EarlyTTL and
	// MaxEarly; each is also counted in Labels as unknown_id.
	HeldExpired, HeldEvicted uint64
	// ProbabilitiesDropped counts predictions whose probabilities were dropped
	// because their model already had too many distinct class lists.
	ProbabilitiesDropped uint64
	// Labels counts labels by final reason (never ReasonHeld).
	Labels map[Reason]uint64
}

// Stats returns the store's counts.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Pending:              s.pending.n,
		Held:                 s.held.n,
		HeldRetrying:         s.heldRetrying,
		Predictions:          s.stats.predictions,
		DuplicatePredictions: s.stats.duplicatePredictions,
		InvalidPredictions:   s.stats.invalidPredictions,
		Expired:              s.stats.expired,
		Evicted:              s.stats.evicted,
		HeldExpired:          s.stats.heldExpired,
		HeldEvicted:          s.stats.heldEvicted,
		ProbabilitiesDropped: s.stats.probabilitiesDropped,
		Labels:               make(map[Reason]uint64, 6),
	}
	for _, r := range LabelReasons() {
		st.Labels[r] = s.stats.labels[r]
	}
	return st
}

// Len returns the number of pending predictions.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending.n
}
