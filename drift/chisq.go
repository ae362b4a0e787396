package drift

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// ChiSquare returns Pearson's χ² test of homogeneity of two histograms of counts
// over the same bins (a 2×k contingency table, as scipy's chi2_contingency and
// Alibi Detect's ChiSquareDrift compute it, without Yates' correction):
//
//	χ² = Σ_{rows, bins} (O - E)² / E,  E = row total · bin total / grand total,
//
// with k-1 degrees of freedom, and its p-value P(χ²_{k-1} ≥ χ²).
//
// A bin empty in the reference (an out-of-range bin, the other bin of a feature
// whose categories are all known) is merged into the bin before it (the first bin
// into the one after): a single stray value in such a bin would otherwise have an
// expected count near n/N and, alone, make χ² huge. The merged table is still a
// test of homogeneity, on a partition that the reference alone fixes, and a new
// category that takes a real share of traffic still shows as an excess in the bin
// it joined. Without empty reference bins this is scipy's statistic.
//
// The Detector does not merge the other bin of a categorical feature
// (chiSquareCategorical): there a value in a bin the reference lacks is a
// category the reference never had, a new class, which must show as drift
// and not hide in the bin of the category it took its share from.
//
// Default level 0.05 (Evidently, Alibi Detect). Literature: Pearson, "On the
// criterion that a given system of deviations…", Phil. Mag. 50(302), 1900; Agresti,
// "Categorical Data Analysis", 3rd ed., Wiley, 2013, §3.2.
//
// ChiSquare returns NaN values if the lengths differ or either histogram is empty.
func ChiSquare(ref, cur []float64) (stat, p float64, dof int) {
	if len(ref) != len(cur) || len(ref) == 0 {
		return math.NaN(), math.NaN(), 0
	}
	return chiSquare(ref, cur)
}

func chiSquare(ref, cur []float64) (stat, p float64, dof int) {
	return chiSquareOver(ref, cur, chiGroups)
}

// chiSquareCategorical is scipy's chi2_contingency (without Yates'
// correction) over the bins of a categorical feature that are not empty on
// both sides: a category the reference lacks (its other bin, empty there)
// is a column of its own.
func chiSquareCategorical(ref, cur []float64) (stat, p float64, dof int) {
	return chiSquareOver(ref, cur, func(ref, cur []float64, fn func(r, c float64)) {
		for i, r := range ref {
			if r > 0 || cur[i] > 0 {
				fn(r, cur[i])
			}
		}
	})
}

// chiSquareOver is χ² over the groups of bins that groups gives.
func chiSquareOver(ref, cur []float64, groups func(ref, cur []float64, fn func(r, c float64))) (stat, p float64, dof int) {
	var nr, nc float64
	k := 0
	groups(ref, cur, func(r, c float64) {
		nr += r
		nc += c
		k++
	})
	if nr == 0 || nc == 0 {
		return math.NaN(), math.NaN(), 0
	}
	if k < 2 {
		return 0, 1, 0
	}
	t := nr + nc
	groups(ref, cur, func(r, c float64) {
		col := r + c
		er, ec := nr*col/t, nc*col/t
		stat += (r-er)*(r-er)/er + (c-ec)*(c-ec)/ec
	})
	dof = k - 1
	return stat, chiSquareP(stat, dof), dof
}

// chiGroups calls fn with the counts of each group of bins: a bin with a
// reference count and the bins without one that follow it; bins without one
// before the first such bin join its group. With no reference count at all, fn
// gets one group.
func chiGroups(ref, cur []float64, fn func(r, c float64)) {
	first := 0
	for first < len(ref)-1 && ref[first] <= 0 {
		first++
	}
	var gr, gc float64
	for i := range ref {
		if i > first && ref[i] > 0 {
			fn(gr, gc)
			gr, gc = 0, 0
		}
		gr += ref[i]
		gc += cur[i]
	}
	fn(gr, gc)
}

func chiSquareP(stat float64, dof int) float64 {
	if stat <= 0 {
		return 1
	}
	return distuv.ChiSquared{K: float64(dof)}.Survival(stat)
}
