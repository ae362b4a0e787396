package drift

import "math"

// Hellinger returns the Hellinger distance between the shares of two histograms of
// counts over the same bins:
//
//	H = sqrt( ½ Σ (sqrt(r_i) - sqrt(c_i))² ) = sqrt(1 - Σ sqrt(r_i·c_i)),
//
// computed in the first form, which does not cancel for close shares. It is a
// metric in [0, 1]: 0 for identical shares, 1 for disjoint ones. For two normal
// distributions with equal variance and means μ apart (in standard deviations),
// H² = 1 - exp(-μ²/8).
//
// Default threshold 0.1 (Evidently; whylogs flags 0.15 as possible drift and 0.4 as
// drift). Literature: Hellinger, "Neue Begründung der Theorie quadratischer Formen
// von unendlichvielen Veränderlichen", J. reine angew. Math. 136, 1909; Le Cam and
// Yang, "Asymptotics in Statistics", Springer, 2000.
//
// Hellinger returns NaN if the lengths differ or either histogram is empty.
func Hellinger(ref, cur []float64) float64 {
	if len(ref) != len(cur) || len(ref) == 0 {
		return math.NaN()
	}
	return hellinger(ref, cur)
}

func hellinger(ref, cur []float64) float64 {
	nr, nc := sum(ref), sum(cur)
	if nr == 0 || nc == 0 {
		return math.NaN()
	}
	var s float64
	for i, x := range ref {
		d := math.Sqrt(x/nr) - math.Sqrt(cur[i]/nc)
		s += d * d
	}
	return math.Sqrt(min(s/2, 1))
}
