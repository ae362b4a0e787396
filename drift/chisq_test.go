package drift

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestChiSquareScipy compares with scipy 1.10.1's chi2_contingency([ref, cur],
// correction=False); the first table is the example of its documentation.
func TestChiSquareScipy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, cur []float64
		stat, p  float64
		dof      int
	}{
		{"scipy docs", []float64{10, 10, 20}, []float64{20, 20, 20}, 2.7777777777777777, 0.24935220877729622, 2},
		{"3 bins", []float64{30, 50, 20}, []float64{45, 40, 15}, 4.825396825396825, 0.08957326253887996, 2},
		{"4 bins", []float64{120, 90, 40, 30}, []float64{100, 95, 55, 20}, 6.141950220897593, 0.10490461157793135, 3},
		{"2x2", []float64{12, 8}, []float64{5, 15}, 5.012787723785166, 0.025160759200408785, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stat, p, dof := ChiSquare(tc.ref, tc.cur)
			require.InDelta(t, tc.stat, stat, 1e-12)
			require.InDelta(t, tc.p, p, 1e-12)
			require.Equal(t, tc.dof, dof)
			stat2, p2, _ := ChiSquare(tc.cur, tc.ref)
			require.InDelta(t, stat, stat2, 1e-12, "symmetric")
			require.InDelta(t, p, p2, 1e-12)
		})
	}
}

func TestChiSquareProperties(t *testing.T) {
	stat, p, dof := ChiSquare([]float64{10, 20, 30}, []float64{1, 2, 3})
	require.InDelta(t, 0, stat, 1e-12)
	require.Equal(t, 1.0, p)
	require.Equal(t, 2, dof)

	// Bins empty in the reference join the bin before them (the first one the
	// bin after it).
	for _, tc := range []struct {
		name                 string
		ref, cur, mref, mcur []float64
	}{
		{"middle", []float64{10, 0, 20}, []float64{5, 3, 10}, []float64{10, 20}, []float64{8, 10}},
		{"first", []float64{0, 10, 20}, []float64{2, 5, 10}, []float64{10, 20}, []float64{7, 10}},
		{"last", []float64{10, 20, 0}, []float64{5, 10, 4}, []float64{10, 20}, []float64{5, 14}},
	} {
		s1, p1, d1 := ChiSquare(tc.ref, tc.cur)
		s2, p2, d2 := ChiSquare(tc.mref, tc.mcur)
		require.Equal(t, s2, s1, tc.name)
		require.Equal(t, p2, p1, tc.name)
		require.Equal(t, d2, d1, tc.name)
	}
	// One stray value beyond the range of a large reference barely moves it.
	ref := []float64{0, 5000, 5000, 5000, 5000, 0}
	_, p, _ = ChiSquare(ref, []float64{0, 25, 25, 25, 25, 0})
	require.Equal(t, 1.0, p)
	_, p, _ = ChiSquare(ref, []float64{0, 25, 25, 25, 24, 1})
	require.Greater(t, p, 0.99)
	// Disjoint supports: p ≈ 0.
	_, p, _ = ChiSquare([]float64{100, 100, 0, 0}, []float64{0, 0, 100, 100})
	require.Less(t, p, 1e-20)
	s, p, _ := ChiSquare([]float64{1, 2}, []float64{1})
	require.True(t, math.IsNaN(s) && math.IsNaN(p))
}

// TestChiSquareMergedScipy checks the statistic, p-value and degrees of freedom
// after empty reference bins are merged against scipy 1.10.1's
// chi2_contingency(table, correction=False) of the merged table, and that very
// large counts (float64 sums near 2^53) of the same shares score about 0.
func TestChiSquareMergedScipy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, cur []float64
		stat, p  float64
		dof      int
	}{
		// chi2_contingency([[10, 5], [7, 0]]): the empty middle bin joins the first.
		{"middle", []float64{10, 0, 5}, []float64{3, 4, 0}, 3.0196078431372553, 0.08226335631338141, 1},
		// chi2_contingency([[10, 5], [11, 7]]): both out-of-range bins merged.
		{"both ends", []float64{0, 10, 5, 0}, []float64{1, 10, 5, 2}, 0.1091269841269841, 0.7411402492243139, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stat, p, dof := ChiSquare(tc.ref, tc.cur)
			require.InDelta(t, tc.stat, stat, 1e-12)
			require.InDelta(t, tc.p, p, 1e-12)
			require.Equal(t, tc.dof, dof)
		})
	}
	big := []float64{1e15, 2e15, 3e15}
	stat, p, _ := ChiSquare(big, []float64{1e15 + 1, 2e15, 3e15})
	require.Less(t, stat, 1e-12)
	require.InDelta(t, 1, p, 1e-12)
	require.Less(t, PSI(big, []float64{1e6, 2e6, 3e6}), 1e-12)
	require.Less(t, Hellinger(big, []float64{1, 2, 3}), 1e-7)
	require.Less(t, JS(big, []float64{1, 2, 3}), 1e-7)
}
