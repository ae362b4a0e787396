package drift

import "math"

// JS returns the Jensen–Shannon distance between the shares of two histograms of
// counts over the same bins: the square root of the Jensen–Shannon divergence in
// base 2,
//
//	JS = sqrt( ½ Σ r_i log2(r_i/m_i) + ½ Σ c_i log2(c_i/m_i) ),  m = (r + c)/2,
//
// with 0·log 0 = 0, so no pseudo-count is needed. It is a metric, symmetric, 0 for
// identical shares and 1 for disjoint ones.
//
// Default threshold 0.1 (Evidently's, which Evidently applies to the natural-log
// distance, whose range is [0, sqrt(ln 2)]; 0.1 there is 0.12 here). Literature:
// Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory
// 37(1), 1991; Endres and Schindelin, "A new metric for probability distributions",
// IEEE Trans. Inf. Theory 49(7), 2003 (the square root is a metric).
//
// JS returns NaN if the lengths differ or either histogram is empty.
func JS(ref, cur []float64) float64 {
	if len(ref) != len(cur) || len(ref) == 0 {
		return math.NaN()
	}
	return js(ref, cur)
}

func js(ref, cur []float64) float64 {
	nr, nc := sum(ref), sum(cur)
	if nr == 0 || nc == 0 {
		return math.NaN()
	}
	var s float64
	for i, x := range ref {
		r, c := x/nr, cur[i]/nc
		m := (r + c) / 2
		if r > 0 {
			s += r * math.Log2(r/m)
		}
		if c > 0 {
			s += c * math.Log2(c/m)
		}
	}
	return math.Sqrt(min(max(s/2, 0), 1))
}
