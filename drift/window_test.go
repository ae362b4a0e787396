package drift

import (
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// tiny is a numeric feature over 1, 2, 3 and 4 (one bin per value).
func tiny(t *testing.T) *Feature {
	t.Helper()
	p, err := BuildProfile([]Column{{Name: "x", Num: []float64{1, 2, 3, 4, math.NaN()}}}, BuildOptions{})
	require.NoError(t, err)
	return p.Features[0]
}

func TestWindowRotation(t *testing.T) {
	f := tiny(t)
	w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Minute, time.Hour}, SubWindows: 6})
	require.NoError(t, err)
	s := time.Unix(1_700_000_000, 0) // a multiple of 10s
	at := func(d time.Duration) time.Time { return s.Add(d) }
	n := func(now time.Time, span int) float64 { c := w.Counts(now, span); return c.N() }

	// The minute span covers the current sub-window of 10s and the 5 before it.
	w.Add(at(0), 1)
	w.Add(at(15*time.Second), 2)
	require.Equal(t, 2.0, n(at(59*time.Second), 0), "[0s, 60s)")
	w.Add(at(65*time.Second), 3)
	require.Equal(t, 2.0, n(at(65*time.Second), 0), "[10s, 70s): the value at 0s has expired")
	require.Equal(t, 1.0, n(at(70*time.Second), 0), "[20s, 80s)")
	require.Equal(t, 0.0, n(at(2*time.Minute), 0))
	require.Equal(t, 3.0, n(at(2*time.Minute), 1), "the hour still has them")
	require.Equal(t, 1.0, n(at(15*time.Second), 0), "reading in the past leaves out later sub-windows")

	// A late value within the span goes to its own sub-window, an older one is
	// dropped from that span only.
	w.Add(at(30*time.Second), 4)
	require.Equal(t, 3.0, n(at(65*time.Second), 0))
	w.Add(at(-30*time.Minute), 4)
	require.Equal(t, 3.0, n(at(65*time.Second), 0))
	require.Equal(t, 5.0, n(at(65*time.Second), 1))
	require.Equal(t, uint64(0), w.Totals().Late)
	w.Add(at(-2*time.Hour), 4)
	require.Equal(t, uint64(1), w.Totals().Late)
	require.Equal(t, uint64(6), sumU(w.Totals().Bins), "totals count every value")

	// A jump far ahead clears everything.
	w.Add(at(10*time.Hour), 1)
	require.Equal(t, 1.0, n(at(10*time.Hour), 0))
	require.Equal(t, 1.0, n(at(10*time.Hour), 1))
}

func sumU(a []uint64) uint64 {
	var s uint64
	for _, x := range a {
		s += x
	}
	return s
}

func TestWindowInvalid(t *testing.T) {
	f := tiny(t)
	w, err := NewWindow(f, WindowOptions{})
	require.NoError(t, err)
	for _, tc := range []struct {
		add  func() Violation
		want Violation
	}{
		{func() Violation { return w.Add(t0, 2) }, ViolationNone},
		{func() Violation { return w.Add(t0, math.NaN()) }, ViolationNaN},
		{func() Violation { return w.Add(t0, math.Inf(1)) }, ViolationInf},
		{func() Violation { return w.Add(t0, math.Inf(-1)) }, ViolationInf},
		{func() Violation { return w.Add(t0, 0.5) }, ViolationOutOfRange},
		{func() Violation { return w.Add(t0, 9) }, ViolationOutOfRange},
		{func() Violation { return w.AddMissing(t0) }, ViolationNone},
		{func() Violation { return w.AddCategory(t0, "") }, ViolationNone},
		{func() Violation { return w.AddCategory(t0, "3") }, ViolationNone},
		{func() Violation { return w.AddCategory(t0, "abc") }, ViolationType},
		{func() Violation { return w.AddBytes(t0, []byte("4")) }, ViolationNone},
	} {
		require.Equal(t, tc.want, tc.add())
	}
	c := w.Counts(t0, 0)
	require.Equal(t, 5.0, c.N(), "NaN, Inf and non-numbers never enter the bins")
	require.Equal(t, 6.0, c.Missing)
	require.Equal(t, 0.5, c.Below)
	require.Equal(t, 9.0, c.Above)
	require.Equal(t, 0.0, c.Low, "no value in the first in-range bin, {1}")
	require.Equal(t, 4.0, c.High)
	for _, v := range []float64{c.Below, c.Low, c.High, c.Above} {
		require.False(t, math.IsNaN(v) || math.IsInf(v, 0))
	}
	tot := w.Totals()
	require.Equal(t, uint64(6), tot.Missing)
	require.Equal(t, uint64(1), tot.Violations[ViolationNaN])
	require.Equal(t, uint64(2), tot.Violations[ViolationInf])
	require.Equal(t, uint64(2), tot.Violations[ViolationOutOfRange])
	require.Equal(t, uint64(1), tot.Violations[ViolationType])
	require.Equal(t, uint64(0), tot.Violations[ViolationMissing], "the reference had a missing value")

	// Scoring such a window works and is finite.
	p := &Profile{Version: 1, Features: []*Feature{f}}
	require.NoError(t, p.Validate())
	d, err := NewDetector(p, Options{Fixed: true, MinSamples: 1})
	require.NoError(t, err)
	res, err := d.Score("x", c)
	require.NoError(t, err)
	for m, s := range res.Scores {
		require.False(t, math.IsNaN(s), "%s", m)
	}
}

// TestWindowConstant: a constant reference has one in-range bin, which is both the
// first and the last; values on either side are out of range.
func TestWindowConstant(t *testing.T) {
	p, err := BuildProfile([]Column{{Name: "k", Num: []float64{7, 7, 7}}}, BuildOptions{})
	require.NoError(t, err)
	f := p.Features[0]
	require.Equal(t, 3, f.FineBins())
	w, _ := NewWindow(f, WindowOptions{})
	require.Equal(t, ViolationOutOfRange, w.Add(t0, 6))
	require.Equal(t, ViolationNone, w.Add(t0, 7))
	require.Equal(t, ViolationOutOfRange, w.Add(t0, 8))
	c := w.Counts(t0, 0)
	require.Equal(t, Counts{Bins: []float64{1, 1, 1}, Below: 6, Low: 7, High: 7, Above: 8}, c)
	require.InDelta(t, 2.0/3, Wasserstein(f.Numeric.Edges, f.Reference(), c), 1e-12)
}

func TestWindowCategorical(t *testing.T) {
	p, err := BuildProfile([]Column{{Name: "c", Str: []string{"a", "a", "b", "c", "d"}}}, BuildOptions{TopK: 2})
	require.NoError(t, err)
	f := p.Features[0]
	w, err := NewWindow(f, WindowOptions{})
	require.NoError(t, err)
	require.Equal(t, ViolationNone, w.AddCategory(t0, "a"))
	require.Equal(t, ViolationNone, w.AddBytes(t0, []byte("b")))
	require.Equal(t, ViolationNone, w.AddCategory(t0, "d"), "rare but seen")
	require.Equal(t, ViolationUnseenCategory, w.AddCategory(t0, "zzz"))
	require.Equal(t, ViolationUnseenCategory, w.AddBytes(t0, []byte("zz")))
	require.Equal(t, ViolationMissing, w.AddMissing(t0), "no missing value in the reference")
	require.Equal(t, ViolationMissing, w.AddBytes(t0, nil))
	require.Equal(t, ViolationUnseenCategory, w.Add(t0, 1), "numbers are formatted")
	require.Equal(t, ViolationNaN, w.Add(t0, math.NaN()))
	c := w.Counts(t0, 2)
	require.Equal(t, []float64{1, 1, 4}, c.Bins)
	require.Equal(t, 3.0, c.Missing)
	require.Equal(t, []uint64{1, 1, 4}, w.Totals().Bins)
}

func TestWindowMerge(t *testing.T) {
	f := tiny(t)
	opts := WindowOptions{Spans: []time.Duration{time.Minute}, SubWindows: 6}
	a, _ := NewWindow(f, opts)
	b, _ := NewWindow(f, opts)
	all, _ := NewWindow(f, opts)
	for i, v := range []float64{1, 2, 3, 4, 0, 9, math.NaN()} {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		w := a
		if i%2 == 1 {
			w = b
		}
		w.Add(now, v)
		all.Add(now, v)
	}
	a.AddMissing(t0)
	all.AddMissing(t0)
	require.NoError(t, a.Merge(b))
	end := t0.Add(60 * time.Second)
	require.Equal(t, all.Counts(end, 0), a.Counts(end, 0))
	require.Equal(t, all.Totals(), a.Totals())

	other := tiny(t)
	other.Name = "y"
	o, _ := NewWindow(other, opts)
	require.EqualError(t, a.Merge(o), `can't merge the window of feature "y" into that of "x"`)
	o, _ = NewWindow(f, WindowOptions{Spans: []time.Duration{time.Hour}, SubWindows: 6})
	require.EqualError(t, a.Merge(o), "can't merge windows with different spans")

	c := all.Counts(end, 0)
	require.NoError(t, c.Merge(all.Counts(end, 0)))
	require.Equal(t, 2*all.Counts(end, 0).N(), c.N())
	require.EqualError(t, c.Merge(Counts{Bins: []float64{1}}), "can't merge counts of 1 bins into 9")

	a.Reset()
	require.Equal(t, 0.0, a.Counts(end, 0).N())
	require.Equal(t, Totals{Bins: make([]uint64, f.CoarseBins())}, a.Totals())
}

func TestNewWindowErrors(t *testing.T) {
	f := tiny(t)
	_, err := NewWindow(f, WindowOptions{Spans: []time.Duration{}})
	require.EqualError(t, err, "no spans")
	_, err = NewWindow(f, WindowOptions{Spans: []time.Duration{time.Second}, SubWindows: 7})
	require.EqualError(t, err, "span 1s must be positive and a multiple of 7 sub-windows")
	_, err = NewWindow(&Feature{}, WindowOptions{})
	require.EqualError(t, err, "feature not prepared: use one from a validated Profile")
}

// TestAddAllocs: the hot path allocates nothing, numeric or categorical.
func TestAddAllocs(t *testing.T) {
	f := benchFeature(t, 10_000)
	w, _ := NewWindow(f, WindowOptions{})
	now := t0
	v := 0.0
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		v += 0.37
		w.Add(now, math.Mod(v, 8)-4)
	}))
	p, _ := BuildProfile([]Column{{Name: "c", Str: []string{"a", "b"}}}, BuildOptions{})
	wc, _ := NewWindow(p.Features[0], WindowOptions{})
	b := []byte("a")
	require.Zero(t, testing.AllocsPerRun(1000, func() { wc.AddBytes(now, b) }))
}

func TestWindowMemory(t *testing.T) {
	f := benchFeature(t, 100_000)
	w, _ := NewWindow(f, WindowOptions{})
	require.Equal(t, 202, f.FineBins())
	// The size constants are the structs' sizes.
	require.Equal(t, uintptr(slotBytes), unsafe.Sizeof(slot{}))
	require.Equal(t, uintptr(spanBytes), unsafe.Sizeof(span{}))
	// 12 sub-windows of 202 uint32 counters and their headers: about 10 KiB.
	require.Equal(t, 104+12*(72+4*202), w.SpanBytes())
	require.Less(t, w.SpanBytes(), 11*1024)
	t.Logf("memory per feature: %d bytes per span, %d bytes with 3 spans and totals", w.SpanBytes(), w.Bytes())
}
