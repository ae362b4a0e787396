package drift

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNoncentralChiSquareScipy compares with scipy 1.10.1's
// ncx2.sf(x, df, nc).
func TestNoncentralChiSquareScipy(t *testing.T) {
	for _, tc := range []struct {
		x      float64
		df     int
		lambda float64
		want   float64
	}{
		{3, 4, 2.5, 0.7882947743443095},
		{15, 9, 10, 0.6691644013109425},
		{0.5, 1, 0.1, 0.5010181803136823},
		{40, 19, 30, 0.752104689441988},
		{200, 9, 150, 0.05583062389573186},
	} {
		require.InDelta(t, tc.want, NoncentralChiSquareSurvival(tc.x, tc.df, tc.lambda), 1e-12, "%+v", tc)
	}
	require.Equal(t, 1.0, NoncentralChiSquareSurvival(0, 3, 5))
	require.InDelta(t, 0.05, NoncentralChiSquareSurvival(16.918977604620448, 9, 0), 1e-12, "λ = 0 is the central χ²")
}

// TestNoncentralityForPower compares with the λ scipy 1.10.1 solves for
// (brentq on ncx2.sf(chi2.ppf(1 − α, df), df, λ) − 0.8), which are those
// of Cohen's power tables to their two decimals (df 1: 7.85, df 4: 11.94,
// df 9: 15.65 at α 0.05).
func TestNoncentralityForPower(t *testing.T) {
	for _, tc := range []struct {
		df          int
		alpha, want float64
	}{
		{1, 0.05, 7.848860509326198},
		{1, 0.01, 11.678968148570743},
		{4, 0.05, 11.935285837704692},
		{4, 0.01, 16.74928137406778},
		{9, 0.05, 15.649797895188202},
		{9, 0.01, 21.42855746842088},
		{19, 0.05, 20.55537539647113},
		{19, 0.01, 27.64729567222127},
	} {
		require.InDelta(t, tc.want, NoncentralityForPower(tc.df, tc.alpha, DetectionPower), 1e-8, "%+v", tc)
	}
	for _, bad := range [][3]float64{{0, 0.05, 0.8}, {3, 0, 0.8}, {3, 0.05, 1}, {3, 0.5, 0.4}} {
		require.True(t, math.IsNaN(NoncentralityForPower(int(bad[0]), bad[1], bad[2])), "%v", bad)
	}
}

// A shift of exactly DetectablePSI is found by the χ² test about
// DetectionPower of the time, by simulation: 2,000 windows of 500 values
// over 10 bins, against a reference of a million.
func TestDetectablePSIPower(t *testing.T) {
	const k, n, m, trials = 10, 500, 1e6, 2000
	lambda := NoncentralityForPower(k-1, 0.05, DetectionPower)
	w2 := DetectablePSI(lambda, n, m)
	// q uniform; p moves mass from the first half of the bins to the
	// second by d each, so that Σ (p − q)² / q = w².
	q := make([]float64, k)
	p := make([]float64, k)
	d := math.Sqrt(w2 / (k / 0.1))
	for i := range q {
		q[i] = 0.1
		p[i] = 0.1 - d
		if i >= k/2 {
			p[i] = 0.1 + d
		}
	}
	var chi2 float64
	for i := range p {
		chi2 += (p[i] - q[i]) * (p[i] - q[i]) / q[i]
	}
	require.InDelta(t, w2, chi2, 1e-12)

	ref := make([]float64, k)
	for i := range ref {
		ref[i] = q[i] * m
	}
	r := rand.New(rand.NewPCG(7, 8))
	cur := make([]float64, k)
	found := 0
	for range trials {
		clear(cur)
		for range n {
			u, i := r.Float64(), 0
			for i < k-1 && u > p[i] {
				u -= p[i]
				i++
			}
			cur[i]++
		}
		if _, pv, _ := ChiSquare(ref, cur); pv < 0.05 {
			found++
		}
	}
	// Binomial(2000, 0.8): standard deviation 0.009.
	require.InDelta(t, DetectionPower, float64(found)/trials, 0.04, "found %d of %d", found, trials)
	// The PSI of that shift is about w².
	var psi float64
	for i := range p {
		psi += (p[i] - q[i]) * math.Log(p[i]/q[i])
	}
	require.InDelta(t, w2, psi, 0.05*w2)
}

func TestDetectablePSI(t *testing.T) {
	require.Equal(t, math.Inf(1), DetectablePSI(10, 0, 100))
	require.Equal(t, math.Inf(1), DetectablePSI(10, 100, 0))
	require.InDelta(t, 15.65*(1.0/1000+1.0/5000), DetectablePSI(15.65, 1000, 5000), 1e-15)
	require.Less(t, DetectablePSI(15.65, 2000, 5000), DetectablePSI(15.65, 1000, 5000), "more values, smaller shifts")
}
