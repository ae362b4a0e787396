package drift

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHellinger(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, cur []float64
		want     float64
	}{
		// By hand: H² = 1 - Σ√(p·q) = 1 - √½.
		{"hand-computed", []float64{1, 1}, []float64{2, 0}, math.Sqrt(1 - math.Sqrt(0.5))},
		// By hand: Σ√(p·q) = √(.1·.4)+√(.2·.3)+√(.3·.2)+√(.4·.1) = 2·0.2 + 2·0.244949
		{"hand-computed 4 bins", []float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, math.Sqrt(1 - 0.4 - 2*math.Sqrt(0.06))},
		{"identical", []float64{3, 0, 5}, []float64{6, 0, 10}, 0},
		{"disjoint", []float64{3, 0, 5, 0}, []float64{0, 7, 0, 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, Hellinger(tc.ref, tc.cur), 1e-12)
			require.InDelta(t, tc.want, Hellinger(tc.cur, tc.ref), 1e-12, "symmetric")
		})
	}
	require.True(t, math.IsNaN(Hellinger([]float64{1}, []float64{0})))
}

// TestHellingerNormal checks the closed form H² = 1 - exp(-μ²/8) between N(0,1) and
// N(μ,1), on fine bins.
func TestHellingerNormal(t *testing.T) {
	edges := grid(-12, 14, 0.001)
	for _, mu := range []float64{0.1, 0.5, 1, 3} {
		want := math.Sqrt(1 - math.Exp(-mu*mu/8))
		got := Hellinger(normalBins(edges, 0, 1e12), normalBins(edges, mu, 1e12))
		require.InDelta(t, want, got, 1e-4, "μ=%v", mu)
	}
}
