package drift

import (
	"errors"
	"fmt"
	"math"
)

// Options configure a Detector. Zero fields take their default.
type Options struct {
	// Alpha is the false-alarm level of every method (default 0.05).
	Alpha float64
	// MinSamples is the number of values (rows, for the missing-rate test) a
	// window needs before it is scored (default 100).
	MinSamples int64
	// Methods overrides the method that decides drift for the features it
	// names (default: Choose).
	Methods map[string]Method
	// Floor is a minimum effect size per method (default 0): a window drifts only
	// if its score is also at least the floor, e.g. Floor[MethodWasserstein] = 0.05
	// to ignore shifts under a twentieth of a standard deviation however large the
	// window.
	Floor map[Method]float64
	// Fixed decides with fixed thresholds, Evidently's (Method.DefaultThreshold)
	// or those in Thresholds, instead of calibrated ones. Their false-alarm rate
	// depends on the window's size.
	Fixed bool
	// Thresholds overrides the fixed thresholds when Fixed.
	Thresholds map[Method]float64
	// Share is the share of drifted features at which the dataset drifts
	// (default 0.5, Evidently's drift_share).
	Share float64
	// Calibration configures the Calibrator; its Alpha is Options.Alpha.
	Calibration CalibratorOptions
}

// DefaultOptions returns the defaults of Options.
func DefaultOptions() Options {
	c := DefaultCalibratorOptions()
	return Options{Alpha: c.Alpha, MinSamples: 100, Share: 0.5, Calibration: c}
}

// Detector scores windows of a profile's features and decides whether they
// drifted. It is safe for concurrent use.
type Detector struct {
	p    *Profile
	opts Options
	cal  *Calibrator
	// lambda is each feature's noncentrality for DetectablePSI, by name;
	// none for a feature with fewer than two coarse bins with reference
	// values.
	lambda map[string]float64
}

// Result is the drift decision of one feature over one window, with its reason.
type Result struct {
	Feature    string `json:"feature"`
	Kind       Kind   `json:"type"`
	Prediction bool   `json:"prediction,omitempty"`
	// Method is the method that decides Drifted; Score, Threshold and PValue are
	// its.
	Method    Method   `json:"method"`
	Score     float64  `json:"score"`
	Threshold float64  `json:"threshold"`
	PValue    *float64 `json:"p_value,omitempty"`
	Drifted   bool     `json:"drifted"`
	// Ready says the window had MinSamples values, so that it was scored.
	Ready bool `json:"ready"`
	// UnseenCategories says the window has values of categories the
	// reference lacks (a new class): a feature of two categories is then
	// decided by χ² rather than by z, which tests one category's share,
	// as Evidently, which counts the distinct values of both, decides.
	UnseenCategories bool `json:"unseen_categories,omitempty"`
	// N and Missing are the window's non-missing and missing values.
	N       int64  `json:"n"`
	Missing int64  `json:"missing"`
	Reason  string `json:"reason"`
	// DetectablePSI is the smallest shift over the feature's coarse bins
	// that the window could detect (DetectablePSI the function, at the
	// detector's alpha); nil for an empty window.
	DetectablePSI *float64 `json:"detectable_psi,omitempty"`
	// Scores holds every applicable statistic: the score of each method.
	Scores map[Method]float64 `json:"scores"`
	// Tests holds the decision of every applicable method.
	Tests map[Method]Test `json:"tests"`
}

// Test is the decision of one method.
type Test struct {
	Score float64 `json:"score"`
	// Threshold applies to the score for distances (drift when above) and to
	// the p-value for tests (drift when below).
	Threshold float64  `json:"threshold"`
	PValue    *float64 `json:"p_value,omitempty"`
	Drifted   bool     `json:"drifted"`
	// Calibrated says Threshold came from the Calibrator.
	Calibrated bool `json:"calibrated"`
}

// DatasetResult is the dataset-level decision: the dataset drifts when the share of
// drifted features reaches Threshold. Features not ready and the prediction column
// do not count.
type DatasetResult struct {
	Features  int     `json:"features"`
	Drifted   int     `json:"drifted"`
	Share     float64 `json:"share"`
	Threshold float64 `json:"threshold"`
	Drift     bool    `json:"drift"`
	Reason    string  `json:"reason"`
}

// NewDetector returns a Detector for the features of p.
func NewDetector(p *Profile, opts Options) (*Detector, error) {
	if p == nil || p.index == nil {
		return nil, errors.New("profile not validated")
	}
	d := DefaultOptions()
	if opts.Alpha == 0 {
		opts.Alpha = d.Alpha
	}
	if opts.MinSamples == 0 {
		opts.MinSamples = d.MinSamples
	}
	if opts.Share == 0 {
		opts.Share = d.Share
	}
	if !(opts.Alpha > 0 && opts.Alpha < 1) {
		return nil, fmt.Errorf("alpha must be in (0, 1), got %v", opts.Alpha)
	}
	if opts.MinSamples < 1 {
		return nil, fmt.Errorf("min samples must be at least 1, got %d", opts.MinSamples)
	}
	if !(opts.Share > 0 && opts.Share <= 1) {
		return nil, fmt.Errorf("share must be in (0, 1], got %v", opts.Share)
	}
	for name, m := range opts.Methods {
		f, ok := p.Feature(name)
		if !ok {
			return nil, fmt.Errorf("method for unknown feature %q", name)
		}
		if err := checkMethod(m); err != nil {
			return nil, fmt.Errorf("feature %q: %w", name, err)
		}
		if !applicable(f, m) {
			return nil, fmt.Errorf("feature %q: method %q does not apply to a %s feature with %d distinct values", name, m, f.Kind, f.Unique)
		}
	}
	for _, mm := range []map[Method]float64{opts.Floor, opts.Thresholds} {
		for m := range mm {
			if err := checkMethod(m); err != nil {
				return nil, err
			}
		}
	}
	det := &Detector{p: p, opts: opts, lambda: map[string]float64{}}
	byDF := map[int]float64{}
	for i := range p.Features {
		f := p.Features[i]
		df := -1
		for _, c := range f.refCoarse {
			if c > 0 {
				df++
			}
		}
		if df < 1 {
			continue
		}
		l, ok := byDF[df]
		if !ok {
			l = NoncentralityForPower(df, opts.Alpha, DetectionPower)
			byDF[df] = l
		}
		det.lambda[f.Name] = l
	}
	if !opts.Fixed {
		if opts.Calibration.Alpha != 0 && opts.Calibration.Alpha != opts.Alpha {
			return nil, fmt.Errorf("calibration alpha %v differs from alpha %v", opts.Calibration.Alpha, opts.Alpha)
		}
		opts.Calibration.Alpha = opts.Alpha
		cal, err := NewCalibrator(p, opts.Calibration)
		if err != nil {
			return nil, err
		}
		det.cal = cal
	}
	return det, nil
}

// Profile returns the profile d scores against.
func (d *Detector) Profile() *Profile { return d.p }

// Calibrator returns d's calibrator, nil with Options.Fixed.
func (d *Detector) Calibrator() *Calibrator { return d.cal }

// Method returns the method that decides drift for f.
func (d *Detector) Method(f *Feature) Method {
	if m, ok := d.opts.Methods[f.Name]; ok {
		return m
	}
	return Choose(f)
}

// Score compares cur, a window's counts over the fine bins of feature, with the
// reference, and decides whether it drifted.
func (d *Detector) Score(feature string, cur Counts) (Result, error) {
	f, ok := d.p.Feature(feature)
	if !ok {
		return Result{}, fmt.Errorf("unknown feature %q", feature)
	}
	if len(cur.Bins) != f.nbins {
		return Result{}, fmt.Errorf("feature %q: %d bins, want %d", feature, len(cur.Bins), f.nbins)
	}
	ref := f.reference()
	var m measure
	measureAll(f, &ref, &cur, newScratch(f), &m)
	n, missing := cur.N(), cur.Missing
	r := Result{
		Feature: f.Name, Kind: f.Kind, Prediction: f.Prediction, Method: d.Method(f),
		N: int64(n), Missing: int64(missing), Scores: map[Method]float64{}, Tests: map[Method]Test{},
		UnseenCategories: unseenCategories(f, &ref, &cur),
	}
	if _, given := d.opts.Methods[f.Name]; !given && r.UnseenCategories && r.Method == MethodZ {
		r.Method = MethodChiSquare
	}
	minN := float64(d.opts.MinSamples)
	var th Thresholds
	if d.cal != nil {
		// Calibrate only what will be decided: windows below MinSamples are not.
		var cn, cr int64
		if n >= minN {
			cn = int64(n)
		}
		if n+missing >= minN {
			cr = int64(n + missing)
		}
		var err error
		if th, err = d.cal.Thresholds(f.Name, cn, cr); err != nil {
			return Result{}, err
		}
	}
	for _, meth := range Applicable(f) {
		j := meth.index()
		if !m.ok[j] {
			continue
		}
		t := Test{Score: m.score[j], Threshold: meth.DefaultThreshold()}
		if v, ok := d.opts.Thresholds[meth]; ok && d.opts.Fixed {
			t.Threshold = v
		}
		if v, ok := th.Value[meth]; ok && !math.IsNaN(v) {
			t.Threshold, t.Calibrated = v, true
		}
		ready := n >= minN
		if meth == MethodMissing {
			ready = n+missing >= minN
		}
		floor := d.opts.Floor[meth]
		if meth.HasPValue() {
			p := m.p[j]
			t.PValue = &p
			t.Drifted = ready && p < t.Threshold && t.Score >= floor
		} else {
			t.Threshold = math.Max(t.Threshold, floor)
			t.Drifted = ready && t.Score > t.Threshold
		}
		r.Scores[meth] = t.Score
		r.Tests[meth] = t
	}
	if l, ok := d.lambda[f.Name]; ok && n > 0 && f.Count > 0 {
		x := DetectablePSI(l, n, float64(f.Count))
		r.DetectablePSI = &x
	}
	t, ok := r.Tests[r.Method]
	switch {
	case f.Count == 0:
		r.Reason = "the reference has no values"
	case n < minN:
		r.Reason = fmt.Sprintf("not enough data: %d values, want %d", int64(n), d.opts.MinSamples)
	case !ok:
		r.Reason = fmt.Sprintf("%s does not apply", r.Method)
	default:
		r.Ready = true
		r.Score, r.Threshold, r.PValue, r.Drifted = t.Score, t.Threshold, t.PValue, t.Drifted
		r.Reason = reason(r.Method, t, th, d.opts.Floor[r.Method])
	}
	return r, nil
}

// reason explains a decision.
func reason(m Method, t Test, th Thresholds, floor float64) string {
	how := "fixed threshold"
	if t.Calibrated {
		how = fmt.Sprintf("calibrated at n=%d, α=%g", th.N, th.Alpha)
	}
	if m.HasPValue() {
		p := *t.PValue
		switch {
		case p >= t.Threshold:
			return fmt.Sprintf("no drift: %s p=%.4g ≥ %.4g (%s)", m, p, t.Threshold, how)
		case t.Score < floor:
			return fmt.Sprintf("no drift: %s p=%.4g < %.4g but score %.4g < floor %.4g (%s)", m, p, t.Threshold, t.Score, floor, how)
		}
		return fmt.Sprintf("drift: %s p=%.4g < %.4g (%s)", m, p, t.Threshold, how)
	}
	if t.Drifted {
		return fmt.Sprintf("drift: %s %.4g > %.4g (%s)", m, t.Score, t.Threshold, how)
	}
	return fmt.Sprintf("no drift: %s %.4g ≤ %.4g (%s)", m, t.Score, t.Threshold, how)
}

// Dataset decides whether the dataset drifted from its features' results:
// Evidently's rule, the share of drifted features at least Options.Share.
func (d *Detector) Dataset(results []Result) DatasetResult {
	out := DatasetResult{Threshold: d.opts.Share}
	for _, r := range results {
		// The multivariate reconstruction error is a verdict of its own,
		// not one more feature.
		if r.Prediction || !r.Ready || r.Feature == ReconstructionError {
			continue
		}
		out.Features++
		if r.Drifted {
			out.Drifted++
		}
	}
	if out.Features == 0 {
		out.Reason = "no feature ready"
		return out
	}
	out.Share = float64(out.Drifted) / float64(out.Features)
	out.Drift = out.Share >= out.Threshold
	verdict := "no drift"
	cmp := "<"
	if out.Drift {
		verdict, cmp = "drift", "≥"
	}
	out.Reason = fmt.Sprintf("%s: %d of %d features drifted, %.3g %s %.3g", verdict, out.Drifted, out.Features, out.Share, cmp, out.Threshold)
	return out
}
