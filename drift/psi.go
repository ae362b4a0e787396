package drift

import "math"

// PSI returns the population stability index of cur against ref, two histograms of
// counts over the same bins:
//
//	PSI = Σ (c_i - r_i) · ln(c_i / r_i)
//
// where r_i and c_i are the bin shares after adding one to the counts of both
// histograms in every bin that is not empty in both (Fiddler's pseudo-count,
// "base_count=1", which keeps an empty bin finite). Bins empty in both carry no
// information and are left out: adding one there too, as Fiddler does, would give
// a window of 100 values a PSI above 0.1 from the reference's two empty
// out-of-range bins alone. PSI is the symmetrised Kullback–Leibler (Jeffreys)
// divergence: 0 for identical histograms, symmetric, unbounded above.
//
// Default threshold 0.1 (Evidently; the credit-scoring rule of thumb reads < 0.1
// as no shift, 0.1–0.25 as moderate and > 0.25 as major). Literature: Siddiqi,
// "Credit Risk Scorecards" (Wiley, 2006); Yurdakul, "Statistical properties of
// population stability index" (Western Michigan University, 2018), which shows that
// n·PSI is asymptotically χ² with k-1 degrees of freedom when nothing changed,
// which is why a fixed 0.1 false-alarms on small windows and the Detector
// calibrates it instead.
//
// PSI returns NaN if the lengths differ or either histogram is empty.
func PSI(ref, cur []float64) float64 {
	if len(ref) != len(cur) || len(ref) == 0 {
		return math.NaN()
	}
	return psi(ref, cur)
}

func psi(ref, cur []float64) float64 {
	var nr, nc, k float64
	for i, x := range ref {
		nr += x
		nc += cur[i]
		if x != 0 || cur[i] != 0 {
			k++
		}
	}
	if nr == 0 || nc == 0 {
		return math.NaN()
	}
	ir, ic := 1/(nr+k), 1/(nc+k)
	var s float64
	for i, x := range ref {
		if x == 0 && cur[i] == 0 {
			continue
		}
		r := (x + 1) * ir
		c := (cur[i] + 1) * ic
		s += (c - r) * math.Log(c/r)
	}
	return s
}

func sum(a []float64) float64 {
	var s float64
	for _, x := range a {
		s += x
	}
	return s
}
