package anomaly

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// refMedian is the sort-based median the window must agree with.
func refMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func refMAD(xs []float64) float64 {
	m := refMedian(xs)
	d := make([]float64, len(xs))
	for i, x := range xs {
		d[i] = math.Abs(x - m)
	}
	return refMedian(d)
}

func refStd(xs []float64) float64 {
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return math.Sqrt(v / float64(len(xs)-1))
}

// TestWindowAgainstSort checks the rolling median, MAD, quantiles, standard
// deviation and history of the window against sort-based computations on
// the same values, for several sizes and value distributions (with many
// ties, as quantised metrics have).
func TestWindowAgainstSort(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	gens := map[string]func() float64{
		"normal":    func() float64 { return 100 + 5*r.NormFloat64() },
		"ties":      func() float64 { return float64(r.IntN(5)) },
		"heavytail": func() float64 { return 1 / (r.Float64() + 1e-3) },
	}
	for name, gen := range gens {
		for _, size := range []int{1, 2, 7, 64, 257} {
			w := newWindow(size)
			var all []float64
			for i := range 3 * size {
				x := gen()
				w.push(x)
				all = append(all, x)
				held := all[max(0, len(all)-size):]
				require.Equal(t, len(held), w.len())
				require.True(t, slices.IsSorted(w.sorted), "%s/%d: sorted", name, size)
				require.InDelta(t, refMedian(held), w.median(), 1e-9, "%s/%d/%d median", name, size, i)
				m := w.median()
				require.InDelta(t, refMAD(held), w.mad(m), 1e-9, "%s/%d/%d mad", name, size, i)
				s := slices.Sorted(slices.Values(held))
				require.Equal(t, s[0], w.quantile(0))
				require.Equal(t, s[len(s)-1], w.quantile(1))
				if len(held) > 1 {
					require.InDelta(t, refStd(held), w.std(), 1e-6*(1+refStd(held)), "%s/%d/%d std", name, size, i)
				}
				for k := range len(held) {
					require.Equal(t, held[len(held)-1-k], w.last(k))
				}
			}
		}
	}
}

func TestSearch(t *testing.T) {
	s := []float64{1, 2, 2, 2, 5, 8}
	for _, x := range []float64{0, 1, 1.5, 2, 3, 5, 8, 9} {
		want, _ := slices.BinarySearch(s, x)
		require.Equal(t, want, search(s, x), "x=%v", x)
	}
	require.Equal(t, 0, search(nil, 1))
}

func TestWindowRank(t *testing.T) {
	w := newWindow(8)
	require.Equal(t, 0.5, w.rank(1))
	for _, x := range []float64{1, 2, 2, 3} {
		w.push(x)
	}
	require.Equal(t, 0.0, w.rank(0))
	require.Equal(t, 0.5, w.rank(2)) // one below, two ties counted half
	require.Equal(t, 1.0, w.rank(4))
}

func TestNoveltyLearnsRepeats(t *testing.T) {
	var c novelty
	pattern := []float64{0.05, 0.05, 0.05, 0.95}
	var first, later float64
	for i := range 400 {
		r := c.add(pattern[i%len(pattern)])
		if i == 7 {
			first = r
		}
		later = r
	}
	require.Equal(t, 1.0, first)
	require.Less(t, later, 0.05)
	require.Equal(t, 1.0, c.add(0.5)) // a new level in this context is new
}

// TestWindowStdAfterExtremes checks the running standard deviation against
// the two-pass one after events that ruin running sums: a huge spike that
// enters and leaves the window, a level shift of many standard deviations,
// and values whose squares overflow.
func TestWindowStdAfterExtremes(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func(i int, noise float64) float64
	}{
		{"spike 1e12", func(i int, e float64) float64 {
			if i == 100 {
				return 1e12
			}
			return 100 + e
		}},
		{"spike -1e15", func(i int, e float64) float64 {
			if i == 100 {
				return -1e15
			}
			return e
		}},
		{"level shift 1e10", func(i int, e float64) float64 {
			if i >= 100 {
				return 1e10 + e
			}
			return e
		}},
		{"spike 1e160", func(i int, e float64) float64 {
			if i == 100 {
				return 1e160
			}
			return 100 + e
		}},
		{"values ±1e300", func(i int, e float64) float64 {
			if i == 100 || i == 101 {
				return math.Copysign(1e300, float64(i%2)-0.5)
			}
			return 100 + e
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 5))
			w := newWindow(64)
			var all []float64
			for i := range 400 {
				x := tc.at(i, r.NormFloat64())
				w.push(x)
				all = append(all, x)
				held := all[max(0, len(all)-64):]
				if i == 0 {
					continue
				}
				// The two-pass reference on values scaled down by 1e150,
				// so that it does not overflow.
				scaled := make([]float64, len(held))
				for j, x := range held {
					scaled[j] = x / 1e150
				}
				want := refStd(scaled)
				got := w.std()
				require.False(t, math.IsNaN(got), "point %d", i)
				if math.IsInf(want*1e150, 0) { // beyond float64
					require.Equal(t, math.MaxFloat64, got, "point %d", i)
					continue
				}
				require.InDelta(t, want, got/1e150, 1e-6*want, "point %d", i)
			}
		})
	}
}

// refWinsorisedStd is the two-pass standard deviation of xs with its k
// smallest values clamped to the median less winsorReach times the
// median's distance to the next smallest, and its k largest likewise.
func refWinsorisedStd(xs []float64, k int) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	m := refMedian(s)
	lo, hi := m-winsorReach*(m-s[k]), m+winsorReach*(s[n-1-k]-m)
	for i := range k {
		s[i], s[n-1-i] = math.Max(s[i], lo), math.Min(s[n-1-i], hi)
	}
	return refStd(s)
}

// TestWindowWinsorisedStd checks the winsorised standard deviation against
// the two-pass one, for windows that winsorise none, one, two and three
// values on each side, through the events TestWindowStdAfterExtremes
// lists: the running sums then lose what the winsorised values held, and
// the direct sum must take over.
func TestWindowWinsorisedStd(t *testing.T) {
	extremes := map[int]float64{300: 1e12, 700: -1e15, 1100: 1e160, 1500: 1e300, 1501: -1e300, 1900: 1e6, 1901: 1e6, 1902: 1e6}
	for _, size := range []int{300, 512, 1024, 1600} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 5))
			w := newWindow(size)
			var all []float64
			for i := range 4000 {
				x := 100 + r.NormFloat64()
				if e, ok := extremes[i]; ok {
					x = e
				}
				if i >= 2500 { // a level shift of 1e10 noise units
					x += 1e10
				}
				w.push(x)
				all = append(all, x)
				if i < 1 || i%3 != 0 {
					continue
				}
				held := all[max(0, len(all)-size):]
				// The reference on values scaled down by 1e150, so that
				// it does not overflow.
				scaled := make([]float64, len(held))
				for j, x := range held {
					scaled[j] = x / 1e150
				}
				want := refWinsorisedStd(scaled, len(held)/winsorPer)
				got := w.winsorisedStd()
				require.False(t, math.IsNaN(got), "point %d", i)
				if math.IsInf(want*1e150, 0) { // beyond float64
					require.Equal(t, math.MaxFloat64, got, "point %d", i)
					continue
				}
				require.InDelta(t, want, got/1e150, 1e-6*want, "point %d", i)
			}
		})
	}
}

// TestWindowWinsorisedStdEdges: the direct sum's special cases.
func TestWindowWinsorisedStdEdges(t *testing.T) {
	f := func(want float64, xs ...float64) {
		t.Helper()
		w := newWindow(len(xs))
		for _, x := range xs {
			w.push(x)
		}
		require.Equal(t, want, w.winsorisedStd())
	}
	n := winsorPer // one value winsorised on each side
	constant := slices.Repeat([]float64{42}, n)
	f(0, constant...)
	spiked := slices.Clone(constant)
	spiked[n/2] = 1e300 // winsorised to 42
	f(0, spiked...)
	// A spread that overflows float64: the median is 1.7e308 (an odd
	// count: the mean of two such middle values overflows), and the
	// values kept reach -1.7e308.
	f(math.MaxFloat64, append(slices.Repeat([]float64{-1.7e308}, n/2), slices.Repeat([]float64{1.7e308}, n/2+1)...)...)
}

// Values near ±MaxFloat64 are finite, and so are their median and
// quantiles: neither the sum of the two middle values nor the difference
// the interpolation takes may overflow.
func TestWindowExtremesStayFinite(t *testing.T) {
	for _, xs := range [][]float64{
		{math.MaxFloat64, math.MaxFloat64 / 2},
		{-math.MaxFloat64, -math.MaxFloat64 / 2},
		{-math.MaxFloat64, math.MaxFloat64},
		{-math.MaxFloat64, math.MaxFloat64, 1, 2},
	} {
		w := newWindow(len(xs))
		for _, x := range xs {
			w.push(x)
		}
		for _, v := range []float64{w.median(), w.quantile(0.1), w.quantile(0.5), w.quantile(0.9)} {
			require.False(t, math.IsInf(v, 0) || math.IsNaN(v), "%v: %v", xs, v)
		}
	}
	w := newWindow(2)
	w.push(math.MaxFloat64)
	w.push(math.MaxFloat64 / 2)
	require.Equal(t, math.MaxFloat64*0.75, w.median())
	require.Equal(t, math.MaxFloat64*0.75, w.quantile(0.5))
}
