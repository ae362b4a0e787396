package drift

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// stateOpts are the options of the windows these tests encode: a minute and
// an hour of six sub-windows.
var stateOpts = WindowOptions{Spans: []time.Duration{time.Minute, time.Hour}, SubWindows: 6}

// filledWindow returns a window of f that counted values over 20 minutes,
// missing and out-of-range ones among them, and the time of the last.
func filledWindow(t *testing.T, f *Feature, seed uint64) (*Window, time.Time) {
	t.Helper()
	w, err := NewWindow(f, stateOpts)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(seed, 1))
	now := t0
	for range 500 {
		now = now.Add(time.Duration(rng.IntN(5000)) * time.Millisecond)
		switch rng.IntN(10) {
		case 0:
			w.AddMissing(now)
		case 1:
			w.Add(now, math.NaN())
		case 2:
			w.Add(now, 100*rng.Float64()-50) // mostly out of range
		default:
			w.Add(now, float64(1+rng.IntN(4)))
		}
	}
	return w, now
}

// requireSameCounts checks that a and b give the same counts in every span
// at each of times.
func requireSameCounts(t *testing.T, a, b *Window, times ...time.Time) {
	t.Helper()
	for _, now := range times {
		for k := range a.Spans() {
			require.Equal(t, a.Counts(now, k), b.Counts(now, k), "span %d at %s", k, now.Sub(t0))
		}
	}
}

// A window restored from its state counts as the original does, then and
// as time goes on; its cumulative counts start again at zero.
func TestWindowStateRoundTrip(t *testing.T) {
	f := tiny(t)
	orig, end := filledWindow(t, f, 1)
	state, err := orig.MarshalBinary()
	require.NoError(t, err)

	restored, err := NewWindow(f, stateOpts)
	require.NoError(t, err)
	require.NoError(t, restored.UnmarshalBinary(state))
	requireSameCounts(t, orig, restored, end, end.Add(-30*time.Second), end.Add(40*time.Second), end.Add(50*time.Minute), end.Add(2*time.Hour))
	require.Zero(t, restored.Totals().Missing)
	require.Equal(t, make([]uint64, f.CoarseBins()), restored.Totals().Bins)

	// The same values later, and a late one, go to the same sub-windows.
	for i, v := range []float64{2, 3, math.NaN(), -7, 4} {
		now := end.Add(time.Duration(i*17) * time.Second)
		require.Equal(t, orig.Add(now, v), restored.Add(now, v))
	}
	late := end.Add(-45 * time.Second)
	orig.Add(late, 1)
	restored.Add(late, 1)
	requireSameCounts(t, orig, restored, end.Add(70*time.Second), end.Add(30*time.Minute))

	again, err := restored.MarshalBinary()
	require.NoError(t, err)
	want, err := orig.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, want, again)

	// An unused window's state leaves an empty window that counts.
	empty, _ := NewWindow(f, stateOpts)
	state, err = empty.MarshalBinary()
	require.NoError(t, err)
	w, _ := NewWindow(f, stateOpts)
	require.NoError(t, w.UnmarshalBinary(state))
	require.Zero(t, w.Counts(t0, 0).N())
	w.Add(t0, 2)
	require.Equal(t, 1.0, w.Counts(t0, 0).N())
	require.Equal(t, 1.0, w.Counts(t0, 1).N())
}

func TestWindowStateCategorical(t *testing.T) {
	p, err := BuildProfile([]Column{{Name: "c", Str: []string{"a", "a", "b", "c", "d"}}}, BuildOptions{TopK: 2})
	require.NoError(t, err)
	f := p.Features[0]
	orig, _ := NewWindow(f, stateOpts)
	for i, s := range []string{"a", "b", "zzz", "", "a"} {
		orig.AddCategory(t0.Add(time.Duration(i)*time.Second), s)
	}
	state, err := orig.MarshalBinary()
	require.NoError(t, err)
	restored, _ := NewWindow(f, stateOpts)
	require.NoError(t, restored.UnmarshalBinary(state))
	requireSameCounts(t, orig, restored, t0.Add(5*time.Second))
	require.Equal(t, []float64{2, 1, 1}, restored.Counts(t0.Add(5*time.Second), 0).Bins)
}

// State of another shape, and damaged state, are refused and leave the
// window as it was.
func TestWindowStateRefused(t *testing.T) {
	f := tiny(t)
	orig, end := filledWindow(t, f, 2)
	state, err := orig.MarshalBinary()
	require.NoError(t, err)

	other, _ := BuildProfile([]Column{{Name: "x", Num: []float64{1, 2}}}, BuildOptions{})
	for name, w := range map[string]func() (*Window, error){
		"other spans": func() (*Window, error) {
			return NewWindow(f, WindowOptions{Spans: []time.Duration{time.Minute, 2 * time.Hour}, SubWindows: 6})
		},
		"fewer spans": func() (*Window, error) {
			return NewWindow(f, WindowOptions{Spans: []time.Duration{time.Minute}, SubWindows: 6})
		},
		"other sub-windows": func() (*Window, error) { return NewWindow(f, WindowOptions{Spans: stateOpts.Spans, SubWindows: 12}) },
		"other bins":        func() (*Window, error) { return NewWindow(other.Features[0], stateOpts) },
	} {
		dst, err := w()
		require.NoError(t, err, name)
		require.ErrorIs(t, dst.UnmarshalBinary(state), ErrWindowMismatch, name)
	}

	// Every truncation and a few damaged bytes fail without touching the
	// window, which keeps counting.
	dst, _ := filledWindow(t, f, 3)
	before, _ := dst.MarshalBinary()
	for n := range len(state) {
		require.Error(t, dst.UnmarshalBinary(state[:n]), "truncated to %d", n)
	}
	require.Error(t, dst.UnmarshalBinary(append(bytes.Clone(state), 0)), "trailing byte")
	bad := bytes.Clone(state)
	bad[0] = 9
	require.EqualError(t, dst.UnmarshalBinary(bad), "unsupported window state version 9")
	after, _ := dst.MarshalBinary()
	require.Equal(t, before, after)

	// A sub-window moved out of its ring is refused.
	w, _ := NewWindow(f, stateOpts)
	w.Add(end, 1)
	w.spans[0].slots[0].epoch -= 6
	moved, _ := w.MarshalBinary()
	fresh, _ := NewWindow(f, stateOpts)
	require.ErrorContains(t, fresh.UnmarshalBinary(moved), "out of its ring")
}

func FuzzWindowState(f *testing.F) {
	p, err := BuildProfile([]Column{{Name: "x", Num: []float64{1, 2, 3, 4, math.NaN()}}}, BuildOptions{})
	if err != nil {
		f.Fatal(err)
	}
	feat := p.Features[0]
	w, _ := NewWindow(feat, stateOpts)
	for i := range 50 {
		w.Add(t0.Add(time.Duration(i)*7*time.Second), float64(i%6))
	}
	state, _ := w.MarshalBinary()
	f.Add(state)
	empty, _ := NewWindow(feat, stateOpts)
	state, _ = empty.MarshalBinary()
	f.Add(state)
	f.Fuzz(func(t *testing.T, data []byte) {
		w, _ := NewWindow(feat, stateOpts)
		if err := w.UnmarshalBinary(data); err != nil {
			return
		}
		// Whatever it took counts on, and encodes to what it read.
		for k := range w.Spans() {
			w.Counts(t0, k)
		}
		w.Add(t0.Add(time.Hour), 2)
		if _, err := w.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}
