package driftcli

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/modelmon/modelmon/drift"
)

// ProfileCommand builds a reference profile from training data: `exporter
// profile`. Its fields are the command's flags.
type ProfileCommand struct {
	// Input is the training data, CSV, JSON Lines or Parquet by its
	// extension (.csv, .jsonl, .ndjson, .parquet) or Format; "-" is stdin.
	Input string
	// Format is "csv", "jsonl" or "parquet", the format of stdin or of a file whose
	// extension is none of those.
	Format string
	// Output is where the profile goes; "-" is stdout.
	Output string
	// Build holds the options of the profile: the prediction column, the
	// number of bins and of top categories.
	Build BuildFlags
	// Config and Model are an exporter configuration file and the model
	// of it the profile is for: a categorical prediction's classes must
	// then all be Model's models[].classes (checkClasses). Empty: none.
	Config, Model string
}

// BuildFlags are the flags that say how to read training data and build a
// profile from it, shared by profile and drift.
type BuildFlags struct {
	// Prediction names the column that holds the model's output.
	Prediction string
	// Bins, CoarseBins and TopCategories are drift.BuildOptions' Bins, Coarse
	// and TopK; 0 takes drift's default.
	Bins, CoarseBins, TopCategories int
	// ExplainedVariance and NoMultivariate are drift.BuildOptions'.
	ExplainedVariance float64
	NoMultivariate    bool
	// Numeric and Categorical force the type of these columns (comma-separated
	// lists are split).
	Numeric, Categorical []string
}

// unused returns an error naming the first of b's flags that says how to
// build a profile with another value than drift's default, for a
// reference that is built already or otherwise (what names it): such a
// flag would be ignored. Prediction, which marks a profile's prediction,
// is not one.
func (b BuildFlags) unused(what string) error {
	d := drift.DefaultBuildOptions()
	var flag string
	switch {
	case b.Bins != 0 && b.Bins != d.Bins:
		flag = fmt.Sprintf("--bins=%d", b.Bins)
	case b.CoarseBins != 0 && b.CoarseBins != d.Coarse:
		flag = fmt.Sprintf("--coarse-bins=%d", b.CoarseBins)
	case b.TopCategories != 0 && b.TopCategories != d.TopK:
		flag = fmt.Sprintf("--top-categories=%d", b.TopCategories)
	case b.ExplainedVariance != 0 && b.ExplainedVariance != drift.DefaultExplainedVariance:
		flag = fmt.Sprintf("--explained-variance=%g", b.ExplainedVariance)
	case b.NoMultivariate:
		flag = "--no-multivariate"
	case len(b.Numeric) > 0:
		flag = fmt.Sprintf("--numeric=%q", strings.Join(b.Numeric, ","))
	case len(b.Categorical) > 0:
		flag = fmt.Sprintf("--categorical=%q", strings.Join(b.Categorical, ","))
	default:
		return nil
	}
	return fmt.Errorf("%s applies to training data given with --reference, and the reference is %s: leave it out, or give the training data with --reference", flag, what)
}

func (b BuildFlags) readOptions() drift.ReadOptions {
	return drift.ReadOptions{Numeric: splitList(b.Numeric), Categorical: splitList(b.Categorical)}
}

func (b BuildFlags) buildOptions() drift.BuildOptions {
	return drift.BuildOptions{Bins: b.Bins, Coarse: b.CoarseBins, TopK: b.TopCategories, Prediction: b.Prediction,
		ExplainedVariance: b.ExplainedVariance, NoMultivariate: b.NoMultivariate}
}

// build reads the data file path and builds its profile.
func (b BuildFlags) build(env Env, path, format string) (name string, cols []drift.Column, p *drift.Profile, err error) {
	opts := b.readOptions()
	name, cols, err = readData(env, path, format, opts)
	if err != nil {
		return name, nil, nil, err
	}
	for _, c := range cols {
		if c.Str != nil && !slices.Contains(opts.Categorical, c.Name) {
			warnMostlyNumbers(env, name, c)
		}
	}
	p, err = drift.BuildProfile(cols, b.buildOptions())
	if err != nil {
		return name, nil, nil, fmt.Errorf("%s: couldn't build the profile: %w", name, err)
	}
	return name, cols, p, nil
}

// warnMostlyNumbers warns of a categorical column of training data most of
// whose values look like numbers: a few markers of missing values
// the readers don't know ("n.a.", "?", or "NA" in JSON Lines, where a
// string is a string), or numbers written with
// thousands separators or decimal commas ("1,234.5", "1'234", "0,5"),
// would otherwise turn a numeric feature into a categorical one without a
// word.
func warnMostlyNumbers(env Env, file string, c drift.Column) {
	sep := strings.NewReplacer(",", "", "'", "", " ", "")
	var values, numeric, others int
	var example string
	for _, s := range c.Str {
		if s == "" || isNonFinite(s) { // missing in the profile
			continue
		}
		values++
		s = strings.TrimSpace(s)
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			numeric++
			continue
		}
		if others == 0 {
			example = s
		}
		others++
		if _, err := strconv.ParseFloat(sep.Replace(s), 64); err == nil {
			numeric++
		}
	}
	if others > 0 && 2*numeric > values {
		env.Logger.Warn("Column read as categorical, though most of its values look like numbers",
			"file", file, "column", c.Name, "values", values, "not_numbers", others, "example", example,
			"hint", "leave missing values empty and write numbers without thousands separators; --numeric names each value that is not a number, --categorical silences this")
	}
}

// Run runs the command and returns the exit code: ExitOK, or ExitError after
// printing the error to env.Stderr.
func (c *ProfileCommand) Run(env Env) int {
	env = env.withDefaults()
	summary, err := c.run(env)
	if err != nil {
		return env.fail("profile", err)
	}
	fmt.Fprintf(env.Stderr, "%s profile: %s\n", env.Prog, summary)
	return ExitOK
}

func (c *ProfileCommand) run(env Env) (summary string, err error) {
	if c.Input == "" || c.Output == "" {
		return "", errors.New("--input and --output are required")
	}
	classes, err := c.classes()
	if err != nil {
		return "", err
	}
	name, cols, p, err := c.Build.build(env, c.Input, c.Format)
	if err != nil {
		return "", err
	}
	if err := c.checkClasses(name, classes, p, cols); err != nil {
		return "", err
	}
	if err := writeOutput(env, c.Output, p.Save); err != nil {
		return "", err
	}
	out := c.Output
	if out == "-" {
		out = "stdout"
	}
	return fmt.Sprintf("wrote %s: %s from %d rows of %s", out, describe(p), cols[0].Len(), name), nil
}

// classes returns Model's models[].classes of Config, nil without them.
func (c *ProfileCommand) classes() ([]string, error) {
	dc := DriftCommand{Config: c.Config, Model: c.Model}
	switch cfg, err := dc.loadConfig(); {
	case err != nil:
		return nil, err
	case cfg != nil && c.Model == "":
		return nil, errors.New("--config.file needs --model, the model the profile is for")
	default:
		return dc.classes(cfg), nil
	}
}

// checkClasses fails a profile p, of the training data cols read from
// name, whose categorical prediction has a class that classes (Model's
// models[].classes) lacks: the sidecar reads the model's probability
// vectors and class indexes by those classes, so none would ever name it,
// and every prediction of it would count as another class, a drift.
func (c *ProfileCommand) checkClasses(name string, classes []string, p *drift.Profile, cols []drift.Column) error {
	i := slices.IndexFunc(p.Features, func(f *drift.Feature) bool { return f.Prediction })
	if len(classes) == 0 || i < 0 || p.Features[i].Kind != drift.Categorical {
		return nil
	}
	f := p.Features[i]
	col := findColumn(cols, f.Name)
	if col == nil {
		return nil
	}
	for _, s := range columnText(col) {
		if s != "" && !isNonFinite(s) && !slices.Contains(classes, s) {
			return fmt.Errorf("%s: the prediction %q has the class %q, which model %q's models[].classes in %s lacks (%s): the model's probability vectors and class indexes would never name it", name, f.Name, s, c.Model, c.Config, strings.Join(classes, ", "))
		}
	}
	return nil
}

// describe summarises p's features: "5 features (3 numeric, 2 categorical;
// prediction \"score\")".
func describe(p *drift.Profile) string {
	var num, cat int
	var pred []string
	for _, f := range p.Features {
		if f.Name == drift.ReconstructionError && p.Multivariate != nil {
			continue // described below
		}
		if f.Kind == drift.Numeric {
			num++
		} else {
			cat++
		}
		if f.Prediction {
			pred = append(pred, fmt.Sprintf("%q", f.Name))
		}
	}
	s := fmt.Sprintf("%d features (%d numeric, %d categorical", num+cat, num, cat)
	if len(pred) > 0 {
		s += "; prediction " + strings.Join(pred, ", ")
	}
	s += ")"
	if mv := p.Multivariate; mv != nil {
		s += fmt.Sprintf(" and multivariate drift over %d of them (%d principal components, %.0f%% of their variance)",
			len(mv.Features), len(mv.Components), 100*mv.ExplainedVariance)
	}
	return s
}
