package drift

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWassersteinExactScipy compares with scipy 1.10.1's wasserstein_distance.
func TestWassersteinExactScipy(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []float64
		want float64
	}{
		{"scipy docs", []float64{0, 1, 3}, []float64{5, 6, 8}, 5},
		{"unequal sizes", []float64{0.61, 0.29, 0.06, 0.59, -1.73, -0.74, 0.51}, []float64{2.2, 1.66, 1.38, 0.2, 0.36, 0.0, 0.96, 1.56, 0.44}, 1.0319047619047619},
		{"ties", []float64{1, 2, 2, 3, 5, 8}, []float64{2, 3, 3, 4, 6, 9, 9, 10}, 2.25},
		{"identical", []float64{3, 1, 2}, []float64{1, 2, 3}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, WassersteinExact(tc.a, tc.b), 1e-12)
			require.InDelta(t, tc.want, WassersteinExact(tc.b, tc.a), 1e-12, "symmetric")
		})
	}
}

func TestWassersteinBinned(t *testing.T) {
	edges := []float64{0, 1, 2, 3}
	// One value in each bin, at its middle (the sums of the outer bins say so).
	uniform03 := Counts{Bins: []float64{0, 1, 1, 1, 0}, Low: 0.5, High: 2.5}
	for _, tc := range []struct {
		name     string
		ref, cur Counts
		want     float64
	}{
		// Uniform on [0, 3) against uniform on [1, 3): CDFs x/3 and (x-1)/2 on
		// [1, 3), 0 before: ∫₀¹ x/3 + ∫₁³ |x/3 - (x-1)/2| = 1/6 + ∫₁³ (3-x)/6 = 1/6 + 1/3.
		{"hand-computed", uniform03, Counts{Bins: []float64{0, 0, 1, 1, 0}, High: 2.5}, 0.5},
		{"identical", Counts{Bins: []float64{0, 2, 1, 1, 0}, Low: 1, High: 2.5}, Counts{Bins: []float64{0, 4, 2, 2, 0}, Low: 2, High: 5}, 0},
		// The first in-range bin with its sum known: the reference's values at
		// 0.9 instead of spread over [0, 1) moves ∫₀¹ F_r by 0.4/3 … exact.
		{"sums in the outer bins", Counts{Bins: []float64{0, 1, 1, 1, 0}, Low: 0.9, High: 2.5}, uniform03, 0.4 / 3},
		// Everything below the range, at -1 and -3: exact, mean distance to the
		// reference (uniform on [0, 3), mean 1.5) is 1.5 + 2.
		{"below range", uniform03, Counts{Bins: []float64{2, 0, 0, 0, 0}, Below: -4}, 3.5},
		// Everything above the range, at 5: 5 - 1.5.
		{"above range", uniform03, Counts{Bins: []float64{0, 0, 0, 0, 3}, Above: 15}, 3.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, Wasserstein(edges, tc.ref, tc.cur), 1e-12)
			require.InDelta(t, tc.want, Wasserstein(edges, tc.cur, tc.ref), 1e-12, "symmetric")
		})
	}
	require.True(t, math.IsNaN(Wasserstein(edges, Counts{Bins: []float64{1}}, Counts{Bins: []float64{1}})))
}

// TestWassersteinNormal checks W1 between N(0,1) and N(μ,1), which is |μ|, from a
// profile of 100,000 values and windows of 20,000, and against WassersteinExact on
// the same raw data.
func TestWassersteinNormal(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 100_000
	if !heavy() {
		n = 20_000
	}
	a := draw(r, samplers[0], n)
	p := numericProfile(t, a)
	f := p.Features[0]
	for _, mu := range []float64{0, 0.1, 0.5, 1, 2, -3} {
		b := make([]float64, 20_000)
		for i := range b {
			b[i] = r.NormFloat64() + mu
		}
		c := windowOf(t, f, b)
		got := Wasserstein(f.Numeric.Edges, f.Reference(), c)
		t.Logf("μ=%v binned %v exact %v", mu, got, WassersteinExact(a, b))
		require.InDelta(t, math.Abs(mu), got, 0.02, "μ=%v", mu)
		require.InDelta(t, WassersteinExact(a, b), got, 0.01, "μ=%v binned vs exact", mu)
	}
}

// TestWassersteinStreamingError checks W1 from a window's fine bins against
// WassersteinExact on the raw data, in reference standard deviations (the scale of
// the "wasserstein" score), for several distributions, heavy tails included.
func TestWassersteinStreamingError(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	n := 50_000
	if !heavy() {
		n = 10_000
	}
	var worst float64
	for _, ref := range samplers {
		for _, cur := range []sampler{ref, samplers[1]} {
			a, b := draw(r, ref, n), draw(r, cur, n/5)
			f := numericProfile(t, a).Features[0]
			got := Wasserstein(f.Numeric.Edges, f.Reference(), windowOf(t, f, b))
			want := WassersteinExact(a, b)
			e := math.Abs(got-want) / f.Numeric.Std
			worst = max(worst, e)
			require.Less(t, e, 0.02, "%s vs %s: binned %v exact %v", ref.name, cur.name, got, want)
		}
	}
	t.Logf("largest |W1 binned - W1 exact| / std: %.5f", worst)
}
