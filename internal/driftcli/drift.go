package driftcli

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/driftref"
)

// The keys DriftCommand adds to a feature's scores when both the reference and
// the current data are raw data.
const (
	// ScoreKSExact is the Kolmogorov–Smirnov statistic of the raw samples
	// (drift.KSExact).
	ScoreKSExact = "ks_exact"
	// ScoreWassersteinExact is the Wasserstein distance of the raw samples
	// (drift.WassersteinExact) over the reference's standard deviation, on the
	// scale of the binned "wasserstein" score.
	ScoreWassersteinExact = "wasserstein_exact"
)

// DriftCommand compares a batch of data with a reference: `exporter drift`. Its
// fields are the command's flags.
type DriftCommand struct {
	// Reference is a profile (.json) or training data (.csv, .jsonl, .ndjson),
	// whose profile is then built with Build. Empty: Model's
	// models[].drift.reference of Config, profiled as the sidecar profiles
	// it (its prediction_column unless Build.Prediction is given, and
	// drift's default options). With a profile or Config's reference,
	// Build's other fields must be zero or drift's defaults.
	Reference string
	// Current is the data to check: .csv, .jsonl or .ndjson; "-" is stdin.
	Current string
	// Format is "csv" or "jsonl", the format of whichever of Reference and
	// Current is "-", or of a file whose extension is none of those.
	Format string
	// Output is the report's format: "text" (default) or "json".
	Output string
	// FailOnDrift makes Run return ExitDrift when the dataset drifted.
	FailOnDrift bool
	// FailOnModelDrift makes Run return ExitDrift when the model drifted:
	// the model-level decision (drift.Detector.Model) over its features'
	// p-values, corrected by Correction. With FailOnDrift too, either
	// decision fails the run.
	FailOnModelDrift bool
	// Alpha is the false-alarm level of each feature's test (default 0.05).
	Alpha float64
	// Correction is the model-level decision's correction for testing
	// every feature: bonferroni, fdr or none. Empty: Config's, else
	// drift.DefaultCorrection.
	Correction string
	// CorrectionAlpha is that decision's level, in (0, 1). 0: Config's,
	// else Alpha.
	CorrectionAlpha float64
	// Config is an exporter configuration file whose drift correction
	// and correction_alpha the model-level decision takes, as the sidecar
	// does for Model (Config.DriftCorrection: the model's models[].drift,
	// else drift:'s), where Correction and CorrectionAlpha are not given.
	// Empty: none.
	Config string
	// Model is the model of Config whose correction, and reference where
	// Reference is empty, apply; it must be configured there. Empty:
	// drift:'s correction, and no reference.
	Model string
	// MinSamples is the number of values a feature needs to be scored
	// (default 100).
	MinSamples int64
	// Methods override the method of features: "FEATURE=METHOD" (comma-separated
	// lists are split).
	Methods []string
	// FixedThresholds decides with fixed thresholds instead of calibrated
	// ones: Evidently's 0.1 for the distances, Alpha for the tests' p-values.
	FixedThresholds bool
	// Build says how to read a raw reference and build its profile; its
	// Prediction also marks the prediction feature of a profile that has none.
	Build BuildFlags
}

// Run runs the command, writes the report to env.Stdout and returns the exit
// code: ExitError after printing the error to env.Stderr (also after the
// report, when it has Errors), ExitDrift if FailOnDrift and the dataset
// drifted or FailOnModelDrift and the model drifted, else ExitOK.
func (c *DriftCommand) Run(env Env) int {
	env = env.withDefaults()
	r, err := c.Report(env)
	if err != nil {
		return env.fail("drift", err)
	}
	if err := r.Write(env.Stdout, c.Output); err != nil {
		return env.fail("drift", fmt.Errorf("couldn't write the report: %w", err))
	}
	if len(r.Errors) > 0 {
		// A feature whose data broke is an error of the input, as Evidently
		// makes it, whatever --fail-on-drift and --fail-on-model-drift: the
		// report is written, and the check does not pass.
		for _, e := range r.Errors {
			env.fail("drift", errors.New(e))
		}
		return ExitError
	}
	if c.FailOnDrift && r.DatasetDrifted || c.FailOnModelDrift && r.Model.Drift {
		return ExitDrift
	}
	return ExitOK
}

// Report reads the reference and the current data and scores every feature of
// the reference. Warnings go to env.Logger and into the report.
func (c *DriftCommand) Report(env Env) (*Report, error) {
	env = env.withDefaults()
	if err := checkOutput(c.Output); err != nil {
		return nil, err
	}
	switch {
	case c.Current == "":
		return nil, errors.New("--current is required")
	case c.Reference == "-" && c.Current == "-":
		return nil, errors.New("--reference and --current can't both be stdin (-)")
	}
	methods, err := ParseMethods("--method", c.Methods)
	if err != nil {
		return nil, err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	corr, corrAlpha, err := c.correction(cfg)
	if err != nil {
		return nil, err
	}

	refName, refCols, p, err := c.reference(env, cfg)
	if err != nil {
		return nil, err
	}
	for name := range methods {
		if _, ok := p.Feature(name); !ok {
			return nil, fmt.Errorf("--method: %s has no feature %q", refName, name)
		}
	}
	det, err := drift.NewDetector(p, c.detectorOptions(methods))
	if err != nil {
		return nil, fmt.Errorf("invalid options: %w", err)
	}

	curName, cur, err := readCurrent(env, c.Current, c.Format, p)
	if err != nil {
		return nil, err
	}
	var pred *drift.Feature
	if i := slices.IndexFunc(p.Features, func(f *drift.Feature) bool { return f.Prediction }); i >= 0 {
		pred = p.Features[i]
	}
	classes := c.classes(cfg)
	vectorWarn := ""
	if len(classes) == 0 {
		vectorWarn = vectorWarning(pred, cur, curName)
	}
	cur, unnamed := classColumns(pred, classes, cur)
	if !slices.ContainsFunc(p.Features, func(f *drift.Feature) bool { return findColumn(cur, f.Name) != nil }) {
		// Surely the wrong file, which must not pass a CI gate as "no drift".
		return nil, fmt.Errorf("%s: none of the reference's features is a column", curName)
	}
	if mv := p.Multivariate; mv != nil && findColumn(cur, drift.ReconstructionError) == nil {
		// The multivariate drift is scored on the current rows' errors.
		if col, ok := mv.ErrorColumn(cur); ok {
			cur = append(cur, col)
		}
	}
	r := &Report{Reference: refName, Current: curName, Features: []FeatureResult{}, Warnings: []string{}, Errors: []string{}}
	if unnamed > 0 {
		env.Logger.Warn("Predictions name no class of the reference, not counted (unnamed_class)", "file", curName, "feature", pred.Name, "count", unnamed)
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s: column %q: %d predictions give positions that models[].classes does not name; not counted (unnamed_class)", curName, pred.Name, unnamed))
	}
	if vectorWarn != "" {
		env.Logger.Warn("Prediction is a vector, and the reference's are class names: give the model's classes", "file", curName, "feature", pred.Name)
		r.Warnings = append(r.Warnings, vectorWarn)
	}
	for _, col := range cur {
		if _, ok := p.Feature(col.Name); !ok {
			env.Logger.Warn("Column of the current data is not in the reference, ignored", "file", curName, "column", col.Name)
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: column %q is not in the reference; ignored", curName, col.Name))
		}
	}

	results := make([]drift.Result, 0, len(p.Features))
	for _, f := range p.Features {
		col := findColumn(cur, f.Name)
		counts := drift.Counts{Bins: make([]float64, f.FineBins())}
		var totals drift.Totals
		if col == nil {
			env.Logger.Warn("Feature of the reference is missing from the current data, not scored", "file", curName, "feature", f.Name)
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: no column %q; the feature is not ready", curName, f.Name))
		} else if counts, totals, err = count(f, col); err != nil {
			return nil, err
		}
		res, err := det.Score(f.Name, counts)
		if err != nil {
			return nil, err
		}
		if col == nil {
			res.Reason = fmt.Sprintf("not ready: no column %q in %s", f.Name, curName)
		}
		results = append(results, res)
		fr := newFeatureResult(res, totals)
		if msg := unreadable(f, col, res, totals, c.minSamples()); msg != "" {
			fr.Error, fr.Reason = msg, "error: "+msg
			r.Errors = append(r.Errors, fmt.Sprintf("%s: column %q: %s", curName, f.Name, msg))
		} else if n := totals.Violations[drift.ViolationType]; n > 0 {
			env.Logger.Warn("Values of a numeric feature are not numbers, counted as missing", "file", curName, "feature", f.Name, "count", n)
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: column %q: %d values are not numbers; counted as missing", curName, f.Name, n))
		}
		if f == pred && unnamed > 0 {
			if fr.Violations == nil {
				fr.Violations = map[string]uint64{}
			}
			fr.Violations[ViolationUnnamedClass] = unnamed
		}
		if ref := findColumn(refCols, f.Name); ref != nil && col != nil && f.Kind == drift.Numeric {
			exact(f, ref, col, &fr)
		}
		r.Features = append(r.Features, fr)
	}
	ds := det.Dataset(results)
	r.DriftShare, r.DatasetDrifted, r.DatasetThreshold = ds.Share, ds.Drift, ds.Threshold
	r.ReadyFeatures, r.DriftedFeatures, r.Reason = ds.Features, ds.Drifted, ds.Reason
	// 0: the detector's alpha, --alpha (or its default).
	r.Model = det.Model(results, corr, corrAlpha)
	return r, nil
}

// loadConfig loads Config, nil when it is empty, and checks that it
// configures Model.
func (c *DriftCommand) loadConfig() (*config.Config, error) {
	switch {
	case c.Config == "" && c.Model != "":
		return nil, errors.New("--model needs --config.file")
	case c.Config == "":
		return nil, nil
	}
	cfg, err := config.LoadFile(c.Config)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.Model(c.Model); c.Model != "" && !ok {
		return nil, fmt.Errorf("--model: %s configures no model %q", c.Config, c.Model)
	}
	return cfg, nil
}

// classes returns Model's models[].classes of cfg (Config), nil without
// them: the order the sidecar reads a probability vector or class index
// of that model's prediction in.
func (c *DriftCommand) classes(cfg *config.Config) []string {
	if cfg == nil || c.Model == "" {
		return nil
	}
	m, _ := cfg.Model(c.Model)
	return m.Classes
}

// correction returns the model-level decision's correction and level (0:
// Alpha): Correction and CorrectionAlpha where given, each on its own,
// else Model's of cfg (Config, nil without one), as the sidecar takes
// them, else the defaults.
func (c *DriftCommand) correction(cfg *config.Config) (drift.Correction, float64, error) {
	if a := c.CorrectionAlpha; a != 0 && !(a > 0 && a < 1) {
		return "", 0, fmt.Errorf("--correction-alpha must be in (0, 1), got %g", a)
	}
	name, alpha := c.Correction, c.CorrectionAlpha
	if cfg != nil {
		// config.Validate has checked both.
		cn, ca := cfg.DriftCorrection(c.Model)
		if name == "" {
			name = cn
		}
		if alpha == 0 && ca != nil {
			alpha = *ca
		}
	}
	corr, err := drift.ParseCorrection(name)
	if err != nil {
		return "", 0, fmt.Errorf("--correction: %w", err)
	}
	return corr, alpha, nil
}

// Corrections names the values of --correction, the default first.
func Corrections() []string {
	var out []string
	for _, c := range drift.Corrections() {
		out = append(out, string(c))
	}
	return out
}

// minSamples is the detector's MinSamples.
func (c *DriftCommand) minSamples() int64 {
	if c.MinSamples == 0 {
		return drift.DefaultOptions().MinSamples
	}
	return c.MinSamples
}

// unreadable says why a numeric feature's current data broke, or returns "":
// the feature could not be decided for want of numbers, and most of its
// values are not numbers ("abc" where the reference has ages). The values
// that are not numbers count as missing, so the report would otherwise read
// "not enough data", as for a batch too small, while the column holds
// hundreds of values. Evidently fails such a column ("should contain
// numerical values only"); a few stray values beside enough numbers are a
// warning only.
func unreadable(f *drift.Feature, col *drift.Column, res drift.Result, t drift.Totals, minSamples int64) string {
	bad := int64(t.Violations[drift.ViolationType])
	if col == nil || f.Kind != drift.Numeric || res.Ready || f.Count == 0 || res.N >= minSamples || bad <= res.N {
		return ""
	}
	example := ""
	for _, s := range col.Str {
		if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); s != "" && err != nil && !isNonFinite(s) {
			example = s
			break
		}
	}
	if res.N == 0 {
		return fmt.Sprintf("none of its %d values is a number (such as %q), where the reference's are numbers", bad, example)
	}
	return fmt.Sprintf("%d of its %d values are not numbers (such as %q), where the reference's are numbers; the %d left are fewer than the %d needed", bad, bad+res.N, example, res.N, minSamples)
}

// reference loads the reference profile, or builds it from raw data, whose
// columns it then also returns (nil for a profile): Reference's, else
// Model's of cfg (modelReference).
func (c *DriftCommand) reference(env Env, cfg *config.Config) (name string, cols []drift.Column, p *drift.Profile, err error) {
	if c.Reference == "" {
		return c.modelReference(cfg)
	}
	if !isProfile(c.Reference) {
		return c.Build.build(env, c.Reference, c.Format)
	}
	if err := c.Build.unused(fmt.Sprintf("a profile (%s), built already", c.Reference)); err != nil {
		return "", nil, nil, err
	}
	if p, err = drift.LoadFile(c.Reference); err != nil {
		return "", nil, nil, err
	}
	if err := markPrediction(p, c.Build.Prediction); err != nil {
		return "", nil, nil, err
	}
	return c.Reference, nil, p, nil
}

// modelReference loads Model's models[].drift.reference of cfg (Config),
// as the sidecar does when the configuration loads (driftref.Load): the
// profile the sidecar decides that model's drift on. Build's other flags
// than Prediction, given with another value than the default, are an
// error (BuildFlags.unused). Build.Prediction, given, wins over its
// prediction_column.
func (c *DriftCommand) modelReference(cfg *config.Config) (name string, cols []drift.Column, p *drift.Profile, err error) {
	if cfg == nil || c.Model == "" {
		return "", nil, nil, errors.New("--reference is required, or --config.file and --model of a model with models[].drift.reference")
	}
	m, _ := cfg.Model(c.Model) // loadConfig has checked it is there
	if m.Drift == nil || m.Drift.Reference == "" {
		return "", nil, nil, fmt.Errorf("--reference is required: model %q of %s has no models[].drift.reference", c.Model, c.Config)
	}
	path, prediction := m.Drift.Reference, m.Drift.PredictionColumn
	// The point of the model's reference is the profile the sidecar
	// decides on, which has no such flags: rebuilt otherwise, it would be
	// another.
	if err := c.Build.unused(fmt.Sprintf("model %q's models[].drift.reference of --config.file, profiled as the sidecar profiles it", c.Model)); err != nil {
		return "", nil, nil, err
	}
	if c.Build.Prediction != "" {
		prediction = c.Build.Prediction
	}
	if p, cols, err = driftref.Load(path, prediction); err != nil {
		return "", nil, nil, fmt.Errorf("--config.file=%q: model %q: couldn't load models[].drift.reference=%q: %w", c.Config, c.Model, path, err)
	}
	// A profile has its own prediction: --prediction marks it, as for
	// --reference's.
	if err := markPrediction(p, c.Build.Prediction); err != nil {
		return "", nil, nil, err
	}
	return path, cols, p, nil
}

func (c *DriftCommand) detectorOptions(methods map[string]drift.Method) drift.Options {
	opts := drift.Options{Alpha: c.Alpha, MinSamples: c.MinSamples, Methods: methods, Fixed: c.FixedThresholds}
	if c.FixedThresholds && c.Alpha != 0 {
		// drift's fixed thresholds of the tests are 0.05 whatever
		// Options.Alpha: make them Alpha, as --alpha says.
		opts.Thresholds = map[drift.Method]float64{}
		for _, m := range drift.Methods() {
			if m.HasPValue() {
				opts.Thresholds[m] = c.Alpha
			}
		}
	}
	return opts
}

// readCurrent reads the current data. The types of its columns follow the
// profile rather than what the values look like: a categorical feature whose
// values all happen to be numbers is read again as text, so that "007" stays
// the category "007" the reference has, not the number 7. (drift.ReadOptions
// can't force the type of a column that may be absent, so this takes a second
// read, only when needed.)
func readCurrent(env Env, path, format string, p *drift.Profile) (string, []drift.Column, error) {
	format, err := dataFormat(path, format)
	if err != nil {
		return "", nil, err
	}
	name, data, err := readAll(env, path)
	if err != nil {
		return name, nil, err
	}
	cols, err := parseData(name, format, data, drift.ReadOptions{})
	if err != nil {
		return name, nil, err
	}
	var text []string
	for _, col := range cols {
		if f, ok := p.Feature(col.Name); ok && f.Kind == drift.Categorical && col.Num != nil {
			text = append(text, col.Name)
		}
	}
	if len(text) > 0 {
		cols, err = parseData(name, format, data, drift.ReadOptions{Categorical: text})
	}
	return name, cols, err
}

func findColumn(cols []drift.Column, name string) *drift.Column {
	for i := range cols {
		if cols[i].Name == name {
			return &cols[i]
		}
	}
	return nil
}

// count turns a column into f's fine-bin counts. drift has no helper from raw
// values to Counts, so this feeds a Window of one span in one sub-window, at one
// fixed time: the values are counted, missing and out-of-range values handled,
// and the tail sums Wasserstein needs kept, exactly as the sidecar does live.
func count(f *drift.Feature, col *drift.Column) (drift.Counts, drift.Totals, error) {
	const span = time.Hour
	w, err := drift.NewWindow(f, drift.WindowOptions{Spans: []time.Duration{span}, SubWindows: 1})
	if err != nil {
		return drift.Counts{}, drift.Totals{}, fmt.Errorf("feature %q: %w", f.Name, err)
	}
	now := time.Unix(0, 0)
	for _, v := range col.Num {
		// The readers give a missing value as drift.NA, and "NaN" as a NaN
		// that Add counts as missing and as a "nan" violation, as the
		// sidecar counts a NaN it is sent.
		if drift.IsNA(v) {
			w.AddMissing(now)
		} else {
			w.Add(now, v)
		}
	}
	for _, s := range col.Str {
		// A NaN or an infinity the data gave as a number, not as text, is
		// counted as the sidecar counts a number it is sent for a
		// categorical feature: as missing, and a "nan" or "inf" violation.
		if v, ok := drift.NonFinite(s); ok {
			w.Add(now, v)
			continue
		}
		w.AddCategory(now, s)
	}
	return w.Counts(now, 0), w.Totals(), nil
}

// exact adds the statistics of the raw samples to fr.
func exact(f *drift.Feature, ref, cur *drift.Column, fr *FeatureResult) {
	a, b := finiteValues(ref), finiteValues(cur)
	if len(a) == 0 || len(b) == 0 {
		return
	}
	d, p := drift.KSExact(a, b)
	if isFinite(d) {
		fr.Scores[ScoreKSExact] = d
		fr.KSExactPValue = finitePtr(p)
	}
	// The floor of the std is drift's, for the "wasserstein" score.
	if w := drift.WassersteinExact(a, b) / math.Max(f.Numeric.Std, 0.001); isFinite(w) {
		fr.Scores[ScoreWassersteinExact] = w
	}
}

// finiteValues returns the finite numbers of a column: the values of a numeric
// one, the values that parse as numbers of a categorical one. Missing values,
// NaN and ±Inf are left out, as the profile leaves them out of the bins.
func finiteValues(c *drift.Column) []float64 {
	out := make([]float64, 0, c.Len())
	for _, v := range c.Num {
		if isFinite(v) {
			out = append(out, v)
		}
	}
	for _, s := range c.Str {
		if v, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && isFinite(v) {
			out = append(out, v)
		}
	}
	return out
}

// isNonFinite reports whether s, a value of a categorical column, is a NaN
// or an infinity the data gave as a number.
func isNonFinite(s string) bool {
	_, ok := drift.NonFinite(s)
	return ok
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func finitePtr(v float64) *float64 {
	if !isFinite(v) {
		return nil
	}
	return &v
}

// markPrediction marks the feature name of a loaded profile as its prediction,
// which must agree with the profile's own.
func markPrediction(p *drift.Profile, name string) error {
	if name == "" {
		return nil
	}
	f, ok := p.Feature(name)
	if !ok {
		return fmt.Errorf("--prediction=%q: the profile has no such feature", name)
	}
	for _, g := range p.Features {
		if g.Prediction && g != f {
			return fmt.Errorf("--prediction=%q: the profile's prediction is %q", name, g.Name)
		}
	}
	f.Prediction = true
	return nil
}

// ParseMethods parses the values of a FEATURE=METHOD flag (flag names it in
// errors, e.g. "--method"): comma-separated or repeated.
func ParseMethods(flag string, specs []string) (map[string]drift.Method, error) {
	out := map[string]drift.Method{}
	for _, s := range splitList(specs) {
		i := strings.LastIndexByte(s, '=')
		if i <= 0 || i == len(s)-1 {
			return nil, fmt.Errorf("%s=%q: want FEATURE=METHOD", flag, s)
		}
		name, m := s[:i], drift.Method(s[i+1:])
		if !slices.Contains(drift.Methods(), m) {
			names := make([]string, 0, len(drift.Methods()))
			for _, m := range drift.Methods() {
				names = append(names, string(m))
			}
			return nil, fmt.Errorf("%s=%q: unknown method %q (want one of %s)", flag, s, m, strings.Join(names, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s=%q: feature %q has a method already", flag, s, name)
		}
		out[name] = m
	}
	return out, nil
}
