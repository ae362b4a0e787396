package drift

import (
	"math"
	"testing"
	"time"

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

// A category the reference never had (a new class of the prediction) is a
// bin of its own in the χ² test of a categorical feature, not merged into
// the bin before it, where it would hide when it takes its share from that
// bin's category: 50 % cat and 50 % dog becoming 50 % cat, 25 % dog and
// 25 % bird must drift. A binary feature's default test, z on one
// category's share, sees nothing there either: as Evidently counts the
// distinct values of reference and current data together, a window with a
// third value is decided by χ². Reference values from scipy 1.10.1:
//
//	python3 -c 'from scipy.stats import chi2_contingency; print(chi2_contingency([[500,500,0],[50,25,25]], correction=False)[:3])'
//	python3 -c 'from scipy.stats import chi2_contingency; print(chi2_contingency([[300,200,0],[60,30,10]], correction=False)[:3])'
func TestChiSquareNewCategory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref      map[string]int
		cur      map[string]int
		stat, p  float64
		chiSqDof int
	}{
		{"taken from the last category", map[string]int{"cat": 500, "dog": 500}, map[string]int{"cat": 50, "dog": 25, "bird": 25}, 261.90476190476187, 1.343085190183705e-57, 2},
		{"taken from both", map[string]int{"cat": 300, "dog": 200}, map[string]int{"cat": 60, "dog": 30, "bird": 10}, 52.173913043478265, 4.683588521433064e-12, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ref []string
			for _, v := range []string{"cat", "dog"} {
				for range tc.ref[v] {
					ref = append(ref, v)
				}
			}
			p, err := BuildProfile([]Column{{Name: "class", Str: ref}}, DefaultBuildOptions())
			require.NoError(t, err)
			f, ok := p.Feature("class")
			require.True(t, ok)
			require.Equal(t, MethodZ, Choose(f), "two classes in the reference")
			w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Hour}, SubWindows: 1})
			require.NoError(t, err)
			now := time.Unix(0, 0)
			for _, v := range []string{"cat", "dog", "bird"} {
				for range tc.cur[v] {
					w.AddCategory(now, v)
				}
			}
			det, err := NewDetector(p, Options{})
			require.NoError(t, err)
			r, err := det.Score("class", w.Counts(now, 0))
			require.NoError(t, err)
			require.InDelta(t, tc.stat, r.Scores[MethodChiSquare], 1e-9)
			require.InDelta(t, tc.p, *r.Tests[MethodChiSquare].PValue, 1e-15)
			require.Equal(t, MethodChiSquare, r.Method, "a third value: decided by χ², as Evidently decides")
			require.True(t, r.Drifted, r.Reason)
		})
	}
}
