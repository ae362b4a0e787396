package drift

import (
	"fmt"
	"math"
	"slices"
)

// Method is a drift statistic, named as in Evidently.
type Method string

// The methods. Distances (PSI, JS, Hellinger, Wasserstein) drift when their score
// exceeds the threshold; tests (KS, ChiSquare, Z, Missing) when their p-value falls
// below it.
const (
	MethodPSI         Method = "psi"
	MethodJS          Method = "jensenshannon"
	MethodHellinger   Method = "hellinger"
	MethodKS          Method = "ks"
	MethodWasserstein Method = "wasserstein"
	MethodChiSquare   Method = "chisquare"
	MethodZ           Method = "z"
	// MethodMissing tests the change of the missing rate (MissingRate).
	MethodMissing Method = "missing"
)

// Methods lists every method, in a fixed order.
func Methods() []Method {
	return []Method{MethodPSI, MethodJS, MethodHellinger, MethodKS, MethodWasserstein, MethodChiSquare, MethodZ, MethodMissing}
}

const nMethods = 8

const (
	iPSI = iota
	iJS
	iHellinger
	iKS
	iWasserstein
	iChiSquare
	iZ
	iMissing
)

func (m Method) index() int { return slices.Index(Methods(), m) }

// HasPValue reports whether m is a test, decided by its p-value.
func (m Method) HasPValue() bool {
	switch m {
	case MethodKS, MethodChiSquare, MethodZ, MethodMissing:
		return true
	}
	return false
}

// DefaultThreshold is m's fixed threshold, Evidently's default: 0.1 for the
// distances, a p-value of 0.05 for the tests.
func (m Method) DefaultThreshold() float64 {
	if m.HasPValue() {
		return 0.05
	}
	return 0.1
}

// Choose returns the default method of f, Evidently's rule: with at most 1000
// reference values, KS for numeric features with more than 5 distinct values,
// otherwise χ² (Z for at most two values); with more, Wasserstein (normed) for
// numeric features with more than 5 distinct values, otherwise Jensen–Shannon.
// Evidently counts distinct values over reference and current data; a profile
// only knows the reference's.
func Choose(f *Feature) Method {
	small := f.Count <= 1000
	switch {
	case f.Kind == Numeric && f.Unique > 5 && small:
		return MethodKS
	case f.Kind == Numeric && f.Unique > 5:
		return MethodWasserstein
	case small && f.Unique <= 2:
		return MethodZ
	case small:
		return MethodChiSquare
	}
	return MethodJS
}

// Applicable lists the methods that apply to f: every distance and χ² on the bins,
// KS and Wasserstein for numeric features, Z for features with at most two distinct
// values, and the missing-rate test. A feature without reference values has only
// the missing-rate test.
func Applicable(f *Feature) []Method {
	if f.Count == 0 {
		return []Method{MethodMissing}
	}
	out := []Method{MethodPSI, MethodJS, MethodHellinger}
	if f.Kind == Numeric {
		out = append(out, MethodKS, MethodWasserstein)
	}
	out = append(out, MethodChiSquare)
	if f.Unique <= 2 {
		out = append(out, MethodZ)
	}
	return append(out, MethodMissing)
}

// unseenCategories reports whether cur, over the fine bins of f, has values
// in a category the reference lacks: f is categorical and cur's other bin,
// empty in the reference, is not.
func unseenCategories(f *Feature, ref, cur *Counts) bool {
	if f.Kind != Categorical {
		return false
	}
	other := len(ref.Bins) - 1
	return ref.Bins[other] == 0 && cur.Bins[other] > 0
}

func applicable(f *Feature, m Method) bool { return slices.Contains(Applicable(f), m) }

func checkMethod(m Method) error {
	if m.index() < 0 {
		return fmt.Errorf("unknown method %q", m)
	}
	return nil
}

// measure holds every statistic of one comparison, by method index.
type measure struct {
	ok    [nMethods]bool
	score [nMethods]float64
	p     [nMethods]float64
}

// scratch holds the buffers of measureAll, so that calibration allocates nothing
// per round.
type scratch struct{ rc, cc []float64 }

func newScratch(f *Feature) *scratch {
	return &scratch{rc: make([]float64, f.ncoarse), cc: make([]float64, f.ncoarse)}
}

// measureAll computes every applicable statistic of cur against ref, both over
// f's fine bins. Distribution statistics need values on both sides, the missing
// test needs rows.
func measureAll(f *Feature, ref, cur *Counts, sc *scratch, m *measure) {
	*m = measure{}
	nr, nc := sum(ref.Bins), sum(cur.Bins)
	if rows := nc + cur.Missing; rows > 0 && nr+ref.Missing > 0 {
		m.ok[iMissing] = true
		m.score[iMissing], m.p[iMissing] = MissingRate(ref.Missing, nr+ref.Missing, cur.Missing, rows)
	}
	if f.Count == 0 || nr == 0 || nc == 0 {
		return
	}
	rc, cc := ref.Bins, cur.Bins
	if f.Kind == Numeric {
		rc, cc = sc.rc, sc.cc
		f.coarsen(ref.Bins, rc)
		f.coarsen(cur.Bins, cc)
		d := ksBinned(ref.Bins, cur.Bins, nr, nc)
		m.ok[iKS], m.score[iKS], m.p[iKS] = true, d, KSPValue(d, nr, nc)
		m.ok[iWasserstein] = true
		m.score[iWasserstein] = wasserstein(f.Numeric.Edges, ref, cur) / math.Max(f.Numeric.Std, 0.001)
	}
	m.ok[iPSI], m.score[iPSI] = true, psi(rc, cc)
	m.ok[iJS], m.score[iJS] = true, js(rc, cc)
	m.ok[iHellinger], m.score[iHellinger] = true, hellinger(rc, cc)
	chi := chiSquare
	if f.Kind == Categorical {
		chi = chiSquareCategorical
	}
	stat, p, _ := chi(rc, cc)
	m.ok[iChiSquare], m.score[iChiSquare], m.p[iChiSquare] = true, stat, p
	if f.Unique <= 2 {
		t := f.top
		z, p := ZTest(rc[t], nr, cc[t], nc)
		m.ok[iZ], m.score[iZ], m.p[iZ] = true, math.Abs(z), p
	}
}
