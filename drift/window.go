package drift

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// WindowOptions configure a Window. Zero fields take their default.
type WindowOptions struct {
	// Spans are the lengths of the sliding windows (default 5m, 1h, 24h).
	Spans []time.Duration
	// SubWindows is the number of sub-windows each span rotates through (default
	// 12): a span of length L covers the last SubWindows sub-windows of L/SubWindows,
	// the current one included, so between L·(1-1/SubWindows) and L of time.
	SubWindows int
}

// DefaultWindowOptions returns the defaults of WindowOptions.
func DefaultWindowOptions() WindowOptions {
	return WindowOptions{Spans: []time.Duration{5 * time.Minute, time.Hour, 24 * time.Hour}, SubWindows: 12}
}

// Window is the streaming state of one feature: for each span (e.g. 5m, 1h, 1d) a
// ring of sub-windows of fine-bin counts, rotated lazily as time advances, plus
// cumulative counts of the coarse bins, missing values and violations since it was
// created. Its memory is fixed at creation and does not grow with traffic.
//
// Non-finite values (NaN, ±Inf) and strings that are not numbers count as missing,
// as in the reference: they never enter the bins or sums.
//
// A Window is not safe for concurrent use. Give each worker its own and Merge them,
// or guard one with a mutex.
type Window struct {
	f       *Feature
	guide   *guide // f's, to find bins without going through f
	numeric bool
	nb      int
	sub     int
	spans   []span

	// The fast path: every span's current counts, valid for times in [start, end).
	cur        [][]uint32
	start, end int64

	total      []uint64 // cumulative counts per fine bin; Totals sums them by coarse bin
	missing    uint64
	violations [violationKinds]uint64
	late       uint64
}

type span struct {
	length     time.Duration
	sub        int64    // sub-window length in nanoseconds
	start, end int64    // bounds of the current sub-window, Unix nanoseconds
	epoch      int64    // index of the current sub-window: start/sub
	cur        int      // its slot: epoch mod len(slots)
	counts     []uint32 // its counts: slots[cur].counts
	valid      bool     // whether epoch is set
	slots      []slot
}

// slot holds one sub-window. Counts are uint32: a sub-window holds at most
// 4,294,967,295 values per bin (with the default 1d span, 50,000 values per second
// of one feature for two hours).
type slot struct {
	epoch   int64
	counts  []uint32
	missing uint32
	tails   [4]float64 // Counts.Below, Low, High, Above
}

// Counts is a feature's data over the fine bins: a Window's counts over one span, the
// reference (Feature.Reference), or a sum of them (Merge). Bins are the fine bins of
// a numeric feature or the categories and other bin of a categorical one.
type Counts struct {
	Bins    []float64
	Missing float64 // missing values, NaN and ±Inf included
	// Below, Low, High and Above are the sums of the values in the two lowest and
	// the two highest fine bins of a numeric feature: below the reference range,
	// in its first bin, in its last bin, above it. With them Wasserstein is exact
	// in the widest bins (see Wasserstein).
	Below, Low, High, Above float64
}

func (c *Counts) tails() [4]float64 { return [4]float64{c.Below, c.Low, c.High, c.Above} }

func (c *Counts) addTails(t [4]float64) {
	c.Below += t[0]
	c.Low += t[1]
	c.High += t[2]
	c.Above += t[3]
}

// N is the number of non-missing values.
func (c Counts) N() float64 {
	var n float64
	for _, x := range c.Bins {
		n += x
	}
	return n
}

// Merge adds o to c, e.g. the same window from several replicas.
func (c *Counts) Merge(o Counts) error {
	if len(c.Bins) != len(o.Bins) {
		return fmt.Errorf("can't merge counts of %d bins into %d", len(o.Bins), len(c.Bins))
	}
	for i, x := range o.Bins {
		c.Bins[i] += x
	}
	c.Missing += o.Missing
	c.addTails(o.tails())
	return nil
}

// Totals are a Window's cumulative counts since it was created: monotonic, for
// Prometheus counters.
type Totals struct {
	// Bins counts the values per coarse bin, in the order of Feature.Bins.
	Bins []uint64
	// Missing counts the values counted as missing: AddMissing, "", NaN, ±Inf
	// and non-numbers given to a numeric feature.
	Missing uint64
	// Violations counts the values per Violation, indexed by it.
	Violations [violationKinds]uint64
	// Late counts the values too old for every span, which were dropped.
	Late uint64
}

// NewWindow returns the streaming state of f.
func NewWindow(f *Feature, opts WindowOptions) (*Window, error) {
	if f == nil || f.nbins == 0 {
		return nil, errors.New("feature not prepared: use one from a validated Profile")
	}
	d := DefaultWindowOptions()
	if opts.Spans == nil {
		opts.Spans = d.Spans
	}
	if opts.SubWindows == 0 {
		opts.SubWindows = d.SubWindows
	}
	if len(opts.Spans) == 0 {
		return nil, errors.New("no spans")
	}
	if opts.SubWindows < 1 {
		return nil, fmt.Errorf("sub-windows must be at least 1, got %d", opts.SubWindows)
	}
	w := &Window{f: f, guide: &f.guide, numeric: f.Kind == Numeric, nb: f.nbins, sub: opts.SubWindows, total: make([]uint64, f.nbins)}
	for _, l := range opts.Spans {
		if l <= 0 || int64(l)%int64(opts.SubWindows) != 0 {
			return nil, fmt.Errorf("span %v must be positive and a multiple of %d sub-windows", l, opts.SubWindows)
		}
		s := span{length: l, sub: int64(l) / int64(opts.SubWindows), slots: make([]slot, opts.SubWindows)}
		counts := make([]uint32, opts.SubWindows*w.nb)
		for j := range s.slots {
			s.slots[j] = slot{epoch: math.MinInt64, counts: counts[j*w.nb : (j+1)*w.nb : (j+1)*w.nb]}
		}
		w.spans = append(w.spans, s)
	}
	w.cur = make([][]uint32, len(w.spans))
	return w, nil
}

// Feature returns the feature w counts.
func (w *Window) Feature() *Feature { return w.f }

// Spans returns the lengths of w's spans.
func (w *Window) Spans() []time.Duration {
	out := make([]time.Duration, len(w.spans))
	for i, s := range w.spans {
		out[i] = s.length
	}
	return out
}

// Add counts the numeric value v at time now and returns its violation, if any. For
// a categorical feature, v is counted as the category strconv.FormatFloat(v, 'g', -1,
// 64) (booleans arrive as 0 and 1).
//
// Its cost is a lookup of v's bin (a table of cells over the fine edges, then a
// branch-free binary search among the few edges of v's cell) and one increment
// per span; it does not allocate. Sub-windows rotate when now passes the current
// one; values older than a span are dropped from it (Totals.Late counts those
// dropped from every span).
func (w *Window) Add(now time.Time, v float64) Violation {
	if !w.numeric || v-v != 0 { // categorical, NaN or ±Inf
		return w.addOther(now, v)
	}
	// guide.find, inlined.
	g := w.guide
	var i int
	if c := int((v - g.lo) * g.scale); v >= g.lo && v < g.hi && int(g.first[c+1])-int(g.first[c]) <= 4 {
		f := int(g.first[c])
		e := g.edges[f : f+4 : f+4]
		i = f + b2i(e[0] <= v) + b2i(e[1] <= v) + b2i(e[2] <= v) + b2i(e[3] <= v)
	} else {
		i = g.find(v)
	}
	t := now.UnixNano()
	if t >= w.start && t < w.end {
		// The current sub-window of every span: the common case.
		for _, c := range w.cur {
			c[i]++
		}
	} else {
		w.addBinSlow(t, i)
	}
	w.total[i]++
	if i <= 1 || i >= w.nb-2 { // the outer bins
		return w.tail(t, i, v)
	}
	return ViolationNone
}

// tail adds v to the sums of the two lowest and two highest bins, and counts an
// out-of-range value.
func (w *Window) tail(t int64, i int, v float64) Violation {
	for k := range w.spans {
		s := &w.spans[k]
		j := s.slotFor(t)
		if j < 0 {
			continue
		}
		sl := &s.slots[j]
		switch {
		case i == 0:
			sl.tails[0] += v
		case i == w.nb-1:
			sl.tails[3] += v
		default:
			// The first and the last in-range bin are the same bin when there is
			// one in-range bin.
			if i == 1 {
				sl.tails[1] += v
			}
			if i == w.nb-2 {
				sl.tails[2] += v
			}
		}
	}
	if i != 0 && i != w.nb-1 {
		return ViolationNone
	}
	w.violations[ViolationOutOfRange]++
	return ViolationOutOfRange
}

func (w *Window) addOther(now time.Time, v float64) Violation {
	if v-v != 0 {
		return w.addNonFinite(now, v)
	}
	return w.AddCategory(now, strconv.FormatFloat(v, 'g', -1, 64))
}

func (w *Window) addNonFinite(now time.Time, v float64) Violation {
	w.countMissing(now.UnixNano())
	viol := ViolationInf
	if math.IsNaN(v) {
		viol = ViolationNaN
	}
	w.violations[viol]++
	return viol
}

// AddCategory counts the category s at time now and returns its violation, if any.
// "" is a missing value. For a numeric feature, s is parsed as a number.
func (w *Window) AddCategory(now time.Time, s string) Violation {
	f := w.f
	if s == "" {
		return w.AddMissing(now)
	}
	if w.numeric {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			w.countMissing(now.UnixNano())
			w.violations[ViolationType]++
			return ViolationType
		}
		return w.Add(now, v)
	}
	i, ok := f.category(s)
	viol := ViolationNone
	if !ok {
		i = w.nb - 1
		if f.Categorical.Closed {
			viol = ViolationUnseenCategory
		}
	}
	w.addBin(now.UnixNano(), i)
	w.violate(viol)
	return viol
}

// AddBytes is AddCategory for a category in a byte slice, without allocating for
// categorical features.
func (w *Window) AddBytes(now time.Time, b []byte) Violation {
	if !w.numeric && len(b) > 0 {
		i, ok := w.f.catIndex[string(b)] // no allocation: the compiler special-cases map lookups
		if ok {
			w.addBin(now.UnixNano(), i)
			return ViolationNone
		}
	}
	return w.AddCategory(now, string(b))
}

// AddMissing counts a missing value at time now. It returns ViolationMissing if the
// feature is not nullable.
func (w *Window) AddMissing(now time.Time) Violation {
	w.countMissing(now.UnixNano())
	viol := w.f.CheckMissing()
	w.violate(viol)
	return viol
}

func (w *Window) violate(v Violation) {
	if v != ViolationNone {
		w.violations[v]++
	}
}

// addBin counts bin i at time t in every span, and in the totals.
func (w *Window) addBin(t int64, i int) {
	if t >= w.start && t < w.end {
		// The current sub-window of every span: the common case.
		for _, c := range w.cur {
			c[i]++
		}
	} else {
		w.addBinSlow(t, i)
	}
	w.total[i]++
}

func (w *Window) addBinSlow(t int64, i int) {
	late := 0
	for k := range w.spans {
		s := &w.spans[k]
		if j := s.slotFor(t); j >= 0 {
			s.slots[j].counts[i]++
		} else {
			late++
		}
	}
	if late == len(w.spans) {
		w.late++
	}
	w.sync()
}

// sync updates what the fast path of addBin uses after spans rotated: the current
// counts of each span, and the time range in which they are all current.
func (w *Window) sync() {
	w.start, w.end = math.MinInt64, math.MaxInt64
	for k := range w.spans {
		s := &w.spans[k]
		w.cur[k] = s.counts
		if !s.valid {
			w.start, w.end = 0, 0
			continue
		}
		w.start, w.end = max(w.start, s.start), min(w.end, s.end)
	}
}

func (w *Window) countMissing(t int64) {
	late := 0
	for k := range w.spans {
		s := &w.spans[k]
		j := s.slotFor(t)
		if j < 0 {
			late++
			continue
		}
		s.slots[j].missing++
	}
	if late == len(w.spans) {
		w.late++
	}
	w.missing++
	w.sync()
}

// slotFor returns the slot of time t, rotating the ring if t is past the current
// sub-window, or -1 if t is older than the span.
func (s *span) slotFor(t int64) int {
	if s.valid && t >= s.start && t < s.end {
		return s.cur
	}
	e := floorDiv(t, s.sub)
	n := int64(len(s.slots))
	switch {
	case !s.valid || e > s.epoch:
		s.advance(e)
		return s.cur
	case e <= s.epoch-n:
		return -1
	}
	return int(floorMod(e, n))
}

// advance makes e the current sub-window, clearing the slots of the sub-windows
// between the old current one and e.
func (s *span) advance(e int64) {
	n := int64(len(s.slots))
	from := s.epoch + 1
	if !s.valid || e-s.epoch >= n {
		from = e - n + 1
	}
	for ep := from; ep <= e; ep++ {
		sl := &s.slots[floorMod(ep, n)]
		clear(sl.counts)
		sl.epoch, sl.missing, sl.tails = ep, 0, [4]float64{}
	}
	s.epoch, s.valid = e, true
	s.cur = int(floorMod(e, n))
	s.counts = s.slots[s.cur].counts
	s.start = e * s.sub
	s.end = s.start + s.sub
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Counts returns the counts of span k (an index into Spans) as of now: the sum of
// its sub-windows that are at most SubWindows-1 sub-windows older than now's. It
// does not change w.
func (w *Window) Counts(now time.Time, k int) Counts {
	c := Counts{Bins: make([]float64, w.nb)}
	s := &w.spans[k]
	if !s.valid {
		return c
	}
	e := floorDiv(now.UnixNano(), s.sub)
	n := int64(len(s.slots))
	for j := range s.slots {
		sl := &s.slots[j]
		if sl.epoch > e || sl.epoch <= e-n {
			continue
		}
		for i, x := range sl.counts {
			c.Bins[i] += float64(x)
		}
		c.Missing += float64(sl.missing)
		c.addTails(sl.tails)
	}
	return c
}

// Totals returns w's cumulative counts.
func (w *Window) Totals() Totals {
	bins := make([]uint64, w.f.ncoarse)
	for i, x := range w.total {
		bins[w.f.coarseOf[i]] += x
	}
	return Totals{Bins: bins, Missing: w.missing, Violations: w.violations, Late: w.late}
}

// Merge adds o's counts into w, sub-window by sub-window, after moving both to the
// later of their current sub-windows (which drops what that expires). Both must
// count the same feature with the same options.
func (w *Window) Merge(o *Window) error {
	if w.f != o.f && (w.f.Name != o.f.Name || w.nb != o.nb) {
		return fmt.Errorf("can't merge the window of feature %q into that of %q", o.f.Name, w.f.Name)
	}
	if w.sub != o.sub || len(w.spans) != len(o.spans) {
		return errors.New("can't merge windows with different spans")
	}
	for k := range w.spans {
		if w.spans[k].length != o.spans[k].length {
			return errors.New("can't merge windows with different spans")
		}
	}
	for k := range w.spans {
		s, so := &w.spans[k], &o.spans[k]
		if !so.valid {
			continue
		}
		if !s.valid || so.epoch > s.epoch {
			s.advance(so.epoch)
		}
		n := int64(len(s.slots))
		for j := range so.slots {
			src := &so.slots[j]
			if src.epoch <= s.epoch-n || src.epoch > s.epoch {
				continue
			}
			dst := &s.slots[floorMod(src.epoch, n)]
			for i, x := range src.counts {
				dst.counts[i] += x
			}
			dst.missing += src.missing
			for i, x := range src.tails {
				dst.tails[i] += x
			}
		}
	}
	for i, x := range o.total {
		w.total[i] += x
	}
	w.missing += o.missing
	for i, x := range o.violations {
		w.violations[i] += x
	}
	w.late += o.late
	w.sync()
	return nil
}

// Reset empties w: its spans and its cumulative counts.
func (w *Window) Reset() {
	for k := range w.spans {
		s := &w.spans[k]
		s.valid = false
		s.start, s.end, s.counts = 0, 0, nil
		for j := range s.slots {
			sl := &s.slots[j]
			clear(sl.counts)
			sl.epoch, sl.missing, sl.tails = math.MinInt64, 0, [4]float64{}
		}
	}
	clear(w.total)
	w.missing, w.late = 0, 0
	w.violations = [violationKinds]uint64{}
	w.sync()
}

// Memory sizes, in bytes, on 64-bit platforms.
const (
	slotBytes = 8 + 24 + 4 + 4 + 4*8 // epoch, counts header, missing (+ padding), tails
	spanBytes = 8*6 + 24 + 8 + 24    // length, sub, start, end, epoch, cur, counts, valid (padded), slots header
)

// SpanBytes is the memory one span of w takes: its sub-windows' counters.
func (w *Window) SpanBytes() int {
	return spanBytes + w.sub*(slotBytes+4*w.nb)
}

// Bytes is the memory w takes: its spans and its cumulative counters.
func (w *Window) Bytes() int {
	return len(w.spans)*w.SpanBytes() + 8*len(w.total) + 24*len(w.cur) + 8*(8+violationKinds) + 24*3
}
