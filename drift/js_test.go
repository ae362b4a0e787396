package drift

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, cur []float64
		want     float64
	}{
		// By hand: m = (¾, ¼); JSD = ½[½·log2(⅔) + ½·log2 2] + ½·log2(4/3)
		// = 3/2 - ¾·log2 3 = 0.311278…; the distance is its square root. scipy
		// 1.10 jensenshannon([.5, .5], [1, 0], base=2) gives the same.
		{"hand-computed", []float64{1, 1}, []float64{2, 0}, math.Sqrt(1.5 - 0.75*math.Log2(3))},
		// scipy 1.10: jensenshannon([.1, .2, .3, .4], [.4, .3, .2, .1], base=2).
		{"scipy", []float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, 0.39186816064715513},
		{"identical", []float64{3, 0, 5}, []float64{6, 0, 10}, 0},
		{"disjoint", []float64{3, 0, 5, 0}, []float64{0, 7, 0, 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, JS(tc.ref, tc.cur), 1e-12)
			require.InDelta(t, tc.want, JS(tc.cur, tc.ref), 1e-12, "symmetric")
		})
	}
	require.True(t, math.IsNaN(JS(nil, nil)))
}

// TestJSNormal checks the Jensen–Shannon distance of N(0,1) and N(μ,1) on fine bins
// against a numerical integral of the continuous divergence (Simpson's rule on
// [-12, 12+μ]), which is independent of the binning.
func TestJSNormal(t *testing.T) {
	edges := grid(-12, 14, 0.002)
	for _, mu := range []float64{0.1, 0.5, 1, 3} {
		pdf := func(x, m float64) float64 { return math.Exp(-(x-m)*(x-m)/2) / math.Sqrt(2*math.Pi) }
		f := func(x float64) float64 {
			p, q := pdf(x, 0), pdf(x, mu)
			m := (p + q) / 2
			var s float64
			if p > 0 {
				s += p * math.Log2(p/m)
			}
			if q > 0 {
				s += q * math.Log2(q/m)
			}
			return s / 2
		}
		const n = 20000
		a, b := -12.0, 12+mu
		h := (b - a) / n
		s := f(a) + f(b)
		for i := 1; i < n; i++ {
			w := 2.0
			if i%2 == 1 {
				w = 4
			}
			s += w * f(a+float64(i)*h)
		}
		want := math.Sqrt(s * h / 3)
		got := JS(normalBins(edges, 0, 1e12), normalBins(edges, mu, 1e12))
		require.InDelta(t, want, got, 1e-4, "μ=%v", mu)
	}
}
