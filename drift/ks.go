package drift

import (
	"math"
	"slices"
)

// KS returns the two-sample Kolmogorov–Smirnov statistic of two histograms of
// counts over the same ordered bins, and its p-value:
//
//	D = max_k | R_k/n - C_k/m |,  R_k, C_k the counts of bins 0..k,
//
// the largest gap between the two empirical CDFs at the bin edges. On the fine
// bins of a Profile, D is within 1/Bins (0.005 by default) below the exact
// statistic of the raw data (see BuildProfile), so its p-value is at least the
// exact one: the test stays conservative.
//
// The p-value is KSPValue(D, n, m). The default level is 0.05 (Evidently, Alibi
// Detect). Literature: Smirnov, "Table for estimating the goodness of fit of
// empirical distributions", Ann. Math. Stat. 19(2), 1948; Stephens, "Use of the
// Kolmogorov–Smirnov, Cramér–von Mises and related statistics without extensive
// tables", J. R. Stat. Soc. B 32(1), 1970.
//
// KS returns NaN values if the lengths differ or either histogram is empty.
func KS(ref, cur []float64) (d, p float64) {
	if len(ref) != len(cur) || len(ref) == 0 {
		return math.NaN(), math.NaN()
	}
	n, m := sum(ref), sum(cur)
	if n == 0 || m == 0 {
		return math.NaN(), math.NaN()
	}
	d = ksBinned(ref, cur, n, m)
	return d, KSPValue(d, n, m)
}

func ksBinned(ref, cur []float64, n, m float64) float64 {
	var r, c, d float64
	in, im := 1/n, 1/m
	for i, x := range ref {
		r += x
		c += cur[i]
		d = max(d, math.Abs(r*in-c*im))
	}
	return min(d, 1)
}

// KSPValue returns the asymptotic two-sided p-value of a two-sample
// Kolmogorov–Smirnov statistic d for samples of n and m values: Q_KS(λ) with
// λ = (√nₑ + 0.12 + 0.11/√nₑ)·d and nₑ = n·m/(n+m), Stephens' (1970) small-sample
// correction of the Kolmogorov distribution Q_KS(λ) = 2 Σ_{j≥1} (-1)^{j-1} e^{-2j²λ²}
// (as in Numerical Recipes' kstwo). It is accurate to a few percent for nₑ ≥ 4.
func KSPValue(d, n, m float64) float64 {
	if n <= 0 || m <= 0 || math.IsNaN(d) {
		return math.NaN()
	}
	ne := math.Sqrt(n * m / (n + m))
	return kolmogorovQ((ne + 0.12 + 0.11/ne) * d)
}

// kolmogorovQ is the survival function of the Kolmogorov distribution.
func kolmogorovQ(x float64) float64 {
	switch {
	case x <= 0:
		return 1
	case x < 1.18:
		// Q = 1 - (√(2π)/x) Σ_{j≥1} exp(-(2j-1)²π²/(8x²)); converges fast for small x.
		y := math.Exp(-math.Pi * math.Pi / (8 * x * x))
		var s float64
		for j := 1; j <= 20; j++ {
			t := math.Pow(y, float64((2*j-1)*(2*j-1)))
			s += t
			if t < 1e-17*s {
				break
			}
		}
		return min(max(1-math.Sqrt(2*math.Pi)/x*s, 0), 1)
	}
	var s float64
	sign := 1.0
	for j := 1; j <= 100; j++ {
		t := math.Exp(-2 * float64(j*j) * x * x)
		s += sign * t
		sign = -sign
		if t < 1e-17 {
			break
		}
	}
	return min(max(2*s, 0), 1)
}

// KSExact returns the two-sample Kolmogorov–Smirnov statistic of the raw samples a
// and b (NaNs are left out) and its two-sided p-value: exact when
// len(a)·len(b) ≤ 1,000,000, by counting the lattice paths that stay inside the
// band |i/n - j/m| < D (Hodges, "The significance probability of the Smirnov
// two-sample test", Arkiv för Matematik 3, 1958), which is what scipy's
// ks_2samp(method="exact") computes; asymptotic (KSPValue) otherwise. With ties the
// exact p-value is conservative.
func KSExact(a, b []float64) (d, p float64) {
	x, y := sortedFinite(a), sortedFinite(b)
	n, m := len(x), len(y)
	if n == 0 || m == 0 {
		return math.NaN(), math.NaN()
	}
	// dn = max |i·m - j·n| over the points where both CDFs are evaluated, after
	// each run of ties; D = dn/(n·m).
	var dn int64
	i, j := 0, 0
	for i < n || j < m {
		var v float64
		switch {
		case j == m || i < n && x[i] <= y[j]:
			v = x[i]
		default:
			v = y[j]
		}
		for i < n && x[i] == v {
			i++
		}
		for j < m && y[j] == v {
			j++
		}
		dn = max(dn, abs64(int64(i)*int64(m)-int64(j)*int64(n)))
	}
	d = float64(dn) / (float64(n) * float64(m))
	if int64(n)*int64(m) <= 1_000_000 {
		return d, ksExactP(n, m, dn)
	}
	return d, KSPValue(d, float64(n), float64(m))
}

// ksExactP returns P(D ≥ dn/(n·m)) under the null hypothesis: 1 minus the share
// of the C(n+m, n) monotone lattice paths from (0, 0) to (n, m) that keep
// |i·m - j·n| < dn. u[j] holds the share of paths to (i, j) that stay inside, so
// u(i, j) = u(i-1, j)·i/(i+j) + u(i, j-1)·j/(i+j): every term is in [0, 1] and
// nothing overflows.
func ksExactP(n, m int, dn int64) float64 {
	if dn == 0 {
		return 1
	}
	inside := func(i, j int) bool { return abs64(int64(i)*int64(m)-int64(j)*int64(n)) < dn }
	u := make([]float64, m+1)
	u[0] = 1
	for j := 1; j <= m; j++ {
		if inside(0, j) {
			u[j] = u[j-1]
		}
	}
	for i := 1; i <= n; i++ {
		if !inside(i, 0) {
			u[0] = 0 // else it stays: the single path along the axis
		}
		for j := 1; j <= m; j++ {
			if !inside(i, j) {
				u[j] = 0
				continue
			}
			t := float64(i + j)
			u[j] = u[j]*float64(i)/t + u[j-1]*float64(j)/t
		}
	}
	return min(max(1-u[m], 0), 1)
}

func sortedFinite(a []float64) []float64 {
	out := make([]float64, 0, len(a))
	for _, v := range a {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
