package drift

import "math"

// Wasserstein returns the first Wasserstein (earth mover's) distance between two
// histograms over a numeric feature's fine bins cut by edges (NumericProfile.Edges),
//
//	W1 = ∫ |F_r(x) - F_c(x)| dx,
//
// from the counts and the sums of values that Counts holds. Over a bin [a, b),
// ∫_a^b F = (b-a)·F(a⁻) + Σ_{a≤v<b} (b - v)/n, so where the sum of the values in the
// bin is known, ∫_a^b (F_r - F_c) is exact, and so is its absolute value when the
// CDFs do not cross inside the bin: below and above the reference range (where
// the reference has no values) and in the first and last in-range bins, which are
// the widest ones of equal-frequency bins, with heavy tails by orders of
// magnitude. Elsewhere both CDFs are taken as linear inside the bin (values spread
// evenly), with an error of at most the bin's width times the larger share of
// either side in it, small for narrow equal-frequency bins.
//
// The drift score of the "wasserstein" method is W1 / max(Std, 0.001) of the
// reference, Evidently's "wasserstein normed", with default threshold 0.1: a shift
// of a tenth of a standard deviation. For two normal distributions with the same
// variance W1 = |μ1 - μ2|. Literature: Vaserstein, "Markov processes over denumerable
// products of spaces", Probl. Peredachi Inf. 5(3), 1969; Villani, "Optimal
// Transport: Old and New", Springer, 2009 (W1 in one dimension as the L1 distance
// of the CDFs).
//
// Counts from a Window or Feature.Reference carry those sums; Counts built by
// hand must set Below, Low, High and Above for the bins that have values.
// Wasserstein returns NaN if the lengths do not match len(edges)+1 or either
// histogram is empty.
func Wasserstein(edges []float64, ref, cur Counts) float64 {
	if len(edges) == 0 || len(ref.Bins) != len(edges)+1 || len(cur.Bins) != len(edges)+1 {
		return math.NaN()
	}
	return wasserstein(edges, &ref, &cur)
}

func wasserstein(edges []float64, ref, cur *Counts) float64 {
	nr, nc := sum(ref.Bins), sum(cur.Bins)
	if nr == 0 || nc == 0 {
		return math.NaN()
	}
	// Below the range: ∫_{-∞}^{lo} (F_r - F_c) dx = Σ_{v<lo} (lo - v)/n on each side.
	lo, hi := edges[0], edges[len(edges)-1]
	last := len(edges)
	w := roundoff((ref.Bins[0]*lo-ref.Below)/nr-(cur.Bins[0]*lo-cur.Below)/nc, lo)
	// Above it: ∫_{hi}^{∞} ((1-F_c) - (1-F_r)) dx = Σ_{v≥hi} (v - hi)/n on each side.
	w += roundoff((ref.Above-ref.Bins[last]*hi)/nr-(cur.Above-cur.Bins[last]*hi)/nc, hi)
	// Bin k = [edges[k-1], edges[k]): the gap a at its start, b at its end.
	inr, inc := 1/nr, 1/nc
	var fr, fc float64 = ref.Bins[0] * inr, cur.Bins[0] * inc
	a := fr - fc
	if math.Abs(a) < 1e-12 {
		a = 0
	}
	for k := 1; k < last; k++ {
		rk, ck := ref.Bins[k], cur.Bins[k]
		fr += rk * inr
		fc += ck * inc
		b := fr - fc
		if math.Abs(b) < 1e-12 {
			b = 0 // rounding of the running sums, e.g. at the top where both reach 1
		}
		x0, x1 := edges[k-1], edges[k]
		width := x1 - x0
		aa, ab := math.Abs(a), math.Abs(b)
		switch {
		case a*b >= 0 && (k == 1 || k == last-1):
			// Sums known: exact when the CDFs do not cross in the bin.
			rs, cs := ref.High, cur.High
			if k == 1 {
				rs, cs = ref.Low, cur.Low
			}
			w += roundoff(width*a+(rk*x1-rs)/nr-(ck*x1-cs)/nc, x1)
		case a*b >= 0:
			w += width * (aa + ab) / 2
		default:
			// The line crosses zero: two triangles.
			w += width * (a*a + b*b) / (2 * (aa + ab))
		}
		a = b
	}
	return w
}

// roundoff returns |d|, or 0 when d, a difference of two means of values
// near x, is below what summing them could get wrong (1e-9 of |x|). A
// constant feature of 0.1 has W1 = 0 between any two windows, but the
// sums of its values, added up in different orders, differ in their last
// bits; without this, that rounding (divided by the Std floor 0.001) was a
// score above the calibrated threshold, and every window drifted.
func roundoff(d, x float64) float64 {
	if math.Abs(d) <= 1e-9*math.Abs(x) {
		return 0
	}
	return math.Abs(d)
}

// WassersteinExact returns the first Wasserstein distance between the raw samples a
// and b (NaNs are left out), as scipy.stats.wasserstein_distance computes it.
func WassersteinExact(a, b []float64) float64 {
	x, y := sortedFinite(a), sortedFinite(b)
	n, m := len(x), len(y)
	if n == 0 || m == 0 {
		return math.NaN()
	}
	var w float64
	i, j := 0, 0
	prev := math.Min(x[0], y[0])
	for i < n || j < m {
		var v float64
		switch {
		case j == m || i < n && x[i] <= y[j]:
			v = x[i]
		default:
			v = y[j]
		}
		// CDFs on [prev, v) are i/n and j/m.
		w += math.Abs(float64(i)/float64(n)-float64(j)/float64(m)) * (v - prev)
		for i < n && x[i] == v {
			i++
		}
		for j < m && y[j] == v {
			j++
		}
		prev = v
	}
	return w
}
