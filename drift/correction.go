package drift

import (
	"fmt"
	"math"
	"slices"
)

// Correction is how a model's drift decision (Detector.Model) accounts for
// testing every feature at once. Each feature's own decision is taken at
// level α; a model of K independent features, none of which drifted, would
// show at least one drifted feature in 1 − (1 − α)^K of windows: 23 % for 5
// features, 92 % for 50 at α = 0.05.
type Correction string

// The corrections, named as Alibi Detect names them (KSDrift, ChiSquareDrift,
// TabularDrift: correction='bonferroni', its default, or 'fdr').
const (
	// CorrectionBonferroni tests each feature at α/K, so that the chance that
	// any feature of a model that did not drift is flagged, the family-wise
	// error rate, is at most α whatever the features' dependence.
	CorrectionBonferroni Correction = "bonferroni"
	// CorrectionFDR is Benjamini and Hochberg's step-up procedure at level
	// α: of the features it flags, the expected share that did not drift,
	// the false discovery rate, is at most α (for independent or positively
	// dependent tests). When no feature drifted, it flags one with
	// probability at most α, as Bonferroni does; when some did, it flags
	// more of them.
	CorrectionFDR Correction = "fdr"
	// CorrectionNone tests each feature at α: the model drifts when any
	// feature's p-value is below α.
	CorrectionNone Correction = "none"
)

// DefaultCorrection is Alibi Detect's default.
const DefaultCorrection = CorrectionBonferroni

// Corrections lists the corrections, default first.
func Corrections() []Correction {
	return []Correction{CorrectionBonferroni, CorrectionFDR, CorrectionNone}
}

// ParseCorrection returns the correction named s; empty is DefaultCorrection.
func ParseCorrection(s string) (Correction, error) {
	if s == "" {
		return DefaultCorrection, nil
	}
	c := Correction(s)
	if !slices.Contains(Corrections(), c) {
		return "", fmt.Errorf("unknown correction %q: want bonferroni, fdr or none", s)
	}
	return c, nil
}

// Threshold returns the p-value below which c, at level alpha, declares a
// test of p drifted: the tests with p-values below it are those the
// correction rejects, and the family drifts when any does. NaN p-values
// count as tests that are not rejected. With no p-value it is alpha.
//
//   - none: alpha.
//   - bonferroni: alpha/K, K = len(p).
//   - fdr: alpha·k/K for the largest k whose k-th smallest p-value is below
//     alpha·k/K (Benjamini and Hochberg, "Controlling the false discovery
//     rate", JRSS B 57(1), 1995); when there is none, alpha/K, the
//     smallest of those critical values, which a p-value needs to be below
//     to make the family drift on its own.
//
// A p-value equal to a critical value is not below it, as in Alibi Detect
// (statsmodels' multipletests rejects it): the features' decisions too drift
// only below their thresholds. For one test, every correction is alpha.
func (c Correction) Threshold(p []float64, alpha float64) float64 {
	k := len(p)
	if k == 0 || c == CorrectionNone {
		return alpha
	}
	if c != CorrectionFDR {
		return alpha / float64(k)
	}
	sorted := slices.Clone(p)
	slices.Sort(sorted) // NaNs first
	nan := 0
	for nan < k && math.IsNaN(sorted[nan]) {
		nan++
	}
	sorted = sorted[nan:]
	t := alpha / float64(k)
	for i, v := range sorted {
		if crit := alpha / (float64(k) / float64(i+1)); v < crit {
			t = crit
		}
	}
	return t
}

// TestMethod returns the test whose p-value stands for f in the model's
// decision when its own method is a distance: the test Choose picks for a
// reference of at most 1000 values, KS for a numeric feature with more than
// 5 distinct values, otherwise χ² (Z for at most two values). Alibi Detect's
// TabularDrift tests the same way: KS for numeric features, χ² for
// categorical ones.
func TestMethod(f *Feature) Method {
	switch {
	case f.Kind == Numeric && f.Unique > 5:
		return MethodKS
	case f.Unique <= 2:
		return MethodZ
	}
	return MethodChiSquare
}

// ModelResult is the model-level decision over one window: whether the
// model's inputs drifted, with its features' p-values corrected for
// testing them all (Correction).
type ModelResult struct {
	Correction Correction `json:"correction"`
	// Alpha is the level: the family-wise error rate (bonferroni), the false
	// discovery rate (fdr), or each feature's (none).
	Alpha float64 `json:"alpha"`
	// Features is the number of features tested, Drifted the number whose
	// p-value is below Threshold.
	Features  int     `json:"features"`
	Drifted   int     `json:"drifted"`
	Threshold float64 `json:"threshold"`
	Drift     bool    `json:"drift"`
	Reason    string  `json:"reason"`
}

// Model decides whether the model drifted from its features' results, at
// level alpha (0: the detector's Options.Alpha) with correction c: it drifts
// when at least one feature's p-value is below c.Threshold of them all, as
// Alibi Detect's univariate detectors decide for a batch.
//
// The features tested are those Dataset counts: ready, the prediction and
// the multivariate reconstruction error left out. A feature decided by a
// test (KS, χ², Z, missing) takes part with its p-value. One decided by a
// distance (PSI, Jensen–Shannon, Hellinger, Wasserstein: the default with
// more than 1000 reference values), which has none, takes part with the
// p-value of its TestMethod over the same window. The p-values are the
// tests' own (asymptotic, over the bins), not corrected by the calibration
// that may make a feature's own test stricter than α.
func (d *Detector) Model(results []Result, c Correction, alpha float64) ModelResult {
	if c == "" {
		c = DefaultCorrection
	}
	if alpha == 0 {
		alpha = d.opts.Alpha
	}
	out := ModelResult{Correction: c, Alpha: alpha}
	var ps []float64
	var names []string
	for _, r := range results {
		if r.Prediction || !r.Ready || r.Feature == ReconstructionError {
			continue
		}
		m := r.Method
		if !m.HasPValue() {
			f, ok := d.p.Feature(r.Feature)
			if !ok {
				continue
			}
			m = TestMethod(f)
			if m == MethodZ && r.UnseenCategories {
				m = MethodChiSquare // as Score decides such a window
			}
		}
		t, ok := r.Tests[m]
		if !ok || t.PValue == nil || math.IsNaN(*t.PValue) {
			continue
		}
		ps = append(ps, *t.PValue)
		names = append(names, r.Feature)
	}
	out.Features = len(ps)
	out.Threshold = c.Threshold(ps, alpha)
	if out.Features == 0 {
		out.Reason = "no feature ready"
		return out
	}
	var drifted []string
	minP, minName := math.Inf(1), ""
	for i, p := range ps {
		if p < out.Threshold {
			drifted = append(drifted, names[i])
		}
		if p < minP {
			minP, minName = p, names[i]
		}
	}
	out.Drifted = len(drifted)
	out.Drift = out.Drifted > 0
	if out.Drift {
		out.Reason = fmt.Sprintf("drift: %d of %d features' p-values below %.4g (%s, α=%g): %v", out.Drifted, out.Features, out.Threshold, c, alpha, drifted)
	} else {
		out.Reason = fmt.Sprintf("no drift: smallest p-value of %d features %.4g (%s) ≥ %.4g (%s, α=%g)", out.Features, minP, minName, out.Threshold, c, alpha)
	}
	return out
}
