package drift

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPSI(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, cur []float64
		want     float64
		tol      float64
	}{
		// By hand: add one to every count, r = (51, 51)/102 = (½, ½), c = (26, 76)/102;
		// (26/102-½)·ln(52/102) + (76/102-½)·ln(152/102) = 0.165129… + 0.097771…
		{"hand-computed", []float64{50, 50}, []float64{25, 75}, 0.2629011770256983, 1e-12},
		// Bins empty in both are left out: the same value.
		{"empty bins", []float64{0, 50, 0, 50, 0}, []float64{0, 25, 0, 75, 0}, 0.2629011770256983, 1e-12},
		{"identical", []float64{10, 20, 30}, []float64{10, 20, 30}, 0, 0},
		// Same shares, different totals: only the add-one separates them,
		// r = (11, 21, 31)/63 and c = (21, 41, 61)/123 (numpy).
		{"identical shares", []float64{10, 20, 30}, []float64{20, 40, 60}, 0.00011714864406934646, 1e-15},
		// Disjoint: the add-one keeps it finite, ln((n+1)/1)-ish per bin.
		{"disjoint", []float64{1000, 0}, []float64{0, 1000}, 2 * (1000.0 / 1002) * math.Log(1001), 1e-9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, PSI(tc.ref, tc.cur), tc.tol)
			require.InDelta(t, tc.want, PSI(tc.cur, tc.ref), tc.tol, "symmetric")
		})
	}
	require.True(t, math.IsNaN(PSI([]float64{1}, []float64{1, 2})))
	require.True(t, math.IsNaN(PSI([]float64{0, 0}, []float64{1, 2})))
}

// TestPSINormal checks PSI between N(0,1) and N(μ,1) discretised on fine edges
// against the closed form: PSI is Jeffreys' divergence KL(p‖q) + KL(q‖p), which is
// μ² for two unit-variance normals. Counts are probabilities times 10¹², so the
// add-one is negligible. On the deciles of N(0,1) it is less (binning loses
// information) and increasing in μ.
func TestPSINormal(t *testing.T) {
	edges := grid(-12, 12, 0.001)
	for _, mu := range []float64{0.1, 0.5, 1, 2} {
		got := PSI(normalBins(edges, 0, 1e12), normalBins(edges, mu, 1e12))
		require.InDelta(t, mu*mu, got, 1e-4*math.Max(1, mu*mu), "μ=%v", mu)
	}
	deciles := []float64{-1.2815515655446004, -0.8416212335729143, -0.5244005127080407, -0.2533471031357997, 0,
		0.2533471031357997, 0.5244005127080407, 0.8416212335729143, 1.2815515655446004}
	prev := 0.0
	for _, mu := range []float64{0.1, 0.5, 1, 2} {
		got := PSI(normalBins(deciles, 0, 1e12), normalBins(deciles, mu, 1e12))
		require.Less(t, got, mu*mu)
		require.Greater(t, got, prev)
		prev = got
	}
}
