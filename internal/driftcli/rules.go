package driftcli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/drift"
)

// The metrics of the sidecar the rules read.
const (
	// metricBinTotal counts, per replica, the values of each coarse bin.
	metricBinTotal = "modelmon_feature_bin_total"
	// metricReferenceRatio is the reference share of each coarse bin.
	metricReferenceRatio = "modelmon_feature_reference_ratio"
	// metricReferenceValues is the reference's number of non-missing values.
	metricReferenceValues = "modelmon_feature_reference_values"
	// metricReferenceInfo names, by its digest label, the reference profile
	// of each feature the bin counters count against.
	metricReferenceInfo = "modelmon_feature_reference_info"
)

// Names of the recording rules. Window suffixes follow them: "5m" for the
// windows ("modelmon:feature_bin:share5m", "modelmon:feature_drift_psi:5m"),
// "total" or "_total" for the cumulative counters
// ("modelmon:feature_bin:share_total", "modelmon:feature_drift_psi:total").
const (
	// RuleReferenceCount is the reference count of each coarse bin.
	RuleReferenceCount = "modelmon:feature_bin_reference:count"
	// RulePSI is the PSI of each feature over the window of its suffix.
	RulePSI = "modelmon:feature_drift_psi:"
)

// DefaultWindows are the windows of RulesOptions.
var DefaultWindows = []time.Duration{5 * time.Minute, time.Hour, 24 * time.Hour}

// RulesOptions configure Rules.
type RulesOptions struct {
	// Model restricts the rules to the series of this model; empty takes
	// every model's.
	Model string
	// Windows are the windows of the windowed PSI (default DefaultWindows).
	Windows []time.Duration
}

// Rules returns a Prometheus rule file (YAML) whose recording rules compute,
// for every feature of p, its PSI against the reference over each window and
// since the sidecars started ("total"), from the bin counters of all the
// replicas summed, exactly as drift.PSI computes it on the coarse bins.
//
// drift.PSI adds a pseudo-count of one to every bin that is non-empty in
// either histogram, leaves out the bins empty in both, and compares the shares
// (count+1)/(N+k), k the number of bins kept. In PromQL, per window:
//
//	modelmon:feature_bin_reference:count       round(ratio × reference values), max over replicas
//	modelmon:feature_bin:increase5m            Σ over replicas of increase(bin counter[5m]), 0 where a bin has no series
//	modelmon:feature_bin:pseudo_count5m        count + 1, on the bins where count + reference > 0
//	modelmon:feature_bin_reference:pseudo_count5m   reference + 1, on the same bins
//	modelmon:feature_bin:share5m               pseudo count over its sum per feature: (count+1)/(N+k)
//	modelmon:feature_bin_reference:share5m     the same for the reference
//	modelmon:feature_drift_psi:5m              Σ (share - reference share) · ln(share / reference share)
//
// A feature has no PSI (drift.PSI's NaN) when the window or the reference has
// no value. The total variant sums the counters themselves
// (modelmon:feature_bin:total), so it counts since each replica started.
//
// A sidecar whose reference changes (a reload, a restart with another
// profile) starts its bin counters again under the same bin labels but other
// edges, and exposes another digest in modelmon_feature_reference_info: a
// window over which the replicas showed more than one digest of a feature
// (present_over_time) would add counts of old and new bins and compare them
// with the new shares, so modelmon:feature_bin:increase5m leaves that feature
// out until the window has passed the change, and modelmon:feature_bin:total
// leaves it out while the replicas count against different references. Without
// the info series (older sidecars), nothing is left out.
func Rules(p *drift.Profile, opts RulesOptions) ([]byte, error) {
	if p == nil || len(p.Features) == 0 {
		return nil, errors.New("the profile has no features")
	}
	windows := opts.Windows
	if windows == nil {
		windows = DefaultWindows
	}
	if len(windows) == 0 {
		return nil, errors.New("no windows")
	}
	var suffixes []string
	for _, w := range windows {
		if w <= 0 || w%time.Millisecond != 0 {
			return nil, fmt.Errorf("window %v must be a positive number of milliseconds", w)
		}
		s := model.Duration(w).String()
		if slices.Contains(suffixes, s) {
			return nil, fmt.Errorf("window %s given twice", s)
		}
		suffixes = append(suffixes, s)
	}

	sel := selector(p, opts.Model)
	group := ruleGroup{Name: "modelmon_drift_psi"}
	if opts.Model != "" {
		group.Name += ":" + opts.Model
	}
	group.add(RuleReferenceCount, fmt.Sprintf(`round(
  max by (model, feature, bin) (%s%s)
  * on (model, feature) group_left
  max by (model, feature) (%s%s)
)`, metricReferenceRatio, sel, metricReferenceValues, sel))
	// The features whose replicas counted against more than one reference
	// over the window, or now.
	references := "count by (model, feature) (count by (model, feature, digest) (%s))"
	for _, s := range suffixes {
		counts := fmt.Sprintf("sum by (model, feature, bin) (increase(%s%s[%s]))", metricBinTotal, sel, s)
		changed := fmt.Sprintf(references, fmt.Sprintf("present_over_time(%s%s[%s])", metricReferenceInfo, sel, s))
		group.addPSI(s, "increase"+s, counts, changed)
	}
	group.addPSI("_total", "total", fmt.Sprintf("sum by (model, feature, bin) (%s%s)", metricBinTotal, sel),
		fmt.Sprintf(references, metricReferenceInfo+sel))

	var b bytes.Buffer
	b.WriteString(header(p, opts.Model, suffixes))
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(ruleFile{Groups: []ruleGroup{group}}); err != nil {
		return nil, fmt.Errorf("couldn't encode the rules: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("couldn't encode the rules: %w", err)
	}
	return b.Bytes(), nil
}

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

func (g *ruleGroup) add(record, expr string) {
	g.Rules = append(g.Rules, rule{Record: record, Expr: expr})
}

// addPSI adds the rules of one window: suffix names the shares and PSI
// ("5m", "_total"), countName the summed counts ("increase5m", "total"),
// computed by counts, leaving out the features for which references, the
// number of references the replicas counted against, is above one. Rules of
// a group run in order at the same time, so each sees what the ones before it
// recorded in this round.
func (g *ruleGroup) addPSI(suffix, countName, counts, references string) {
	var (
		ref      = RuleReferenceCount
		cur      = "modelmon:feature_bin:" + countName
		pseudo   = "modelmon:feature_bin:pseudo_count" + suffix
		refPs    = "modelmon:feature_bin_reference:pseudo_count" + suffix
		share    = "modelmon:feature_bin:share" + suffix
		refShare = "modelmon:feature_bin_reference:share" + suffix
		psi      = RulePSI + strings.TrimPrefix(suffix, "_")
	)
	// A bin without a series (no value counted yet) counts 0, so that a bin of
	// the reference the window did not see still gets its pseudo-count. "or"
	// binds looser than "unless".
	g.add(cur, fmt.Sprintf("(\n  %s\nor\n  0 * %s\n)\nunless on (model, feature)\n(%s > 1)", counts, ref, references))
	// The bins non-empty on either side, of the features with values on both
	// sides (else drift.PSI is NaN: no series). "and" binds looser than the
	// comparison and the arithmetic, and is left-associative.
	g.add(pseudo, fmt.Sprintf(`(%[1]s + 1)
  and on (model, feature, bin)
(%[1]s + on (model, feature, bin) %[2]s > 0)
  and on (model, feature)
(sum by (model, feature) (%[1]s) > 0)
  and on (model, feature)
(sum by (model, feature) (%[2]s) > 0)`, cur, ref))
	g.add(refPs, fmt.Sprintf("(%s + 1)\n  and on (model, feature, bin)\n%s", ref, pseudo))
	// Σ(count+1) over the bins kept is N + k.
	for _, s := range [][2]string{{share, pseudo}, {refShare, refPs}} {
		g.add(s[0], fmt.Sprintf("%[1]s\n  / on (model, feature) group_left\nsum by (model, feature) (%[1]s)", s[1]))
	}
	g.add(psi, fmt.Sprintf(`sum by (model, feature) (
    (%[1]s - on (model, feature, bin) %[2]s)
  * on (model, feature, bin)
    ln(%[1]s / on (model, feature, bin) %[2]s)
)`, share, refShare))
}

// selector restricts the sidecar's series to p's features and, if set, to
// model.
func selector(p *drift.Profile, modelName string) string {
	names := make([]string, len(p.Features))
	for i, f := range p.Features {
		names[i] = regexp.QuoteMeta(f.Name)
	}
	var m []string
	if modelName != "" {
		m = append(m, "model="+strconv.Quote(modelName))
	}
	m = append(m, "feature=~"+strconv.Quote(strings.Join(names, "|")))
	return "{" + strings.Join(m, ", ") + "}"
}

func header(p *drift.Profile, modelName string, windows []string) string {
	var b strings.Builder
	b.WriteString("# Fleet-wide PSI of each feature against its reference profile, from the\n")
	b.WriteString("# modelmon sidecars' bin counters summed over replicas, over " + strings.Join(windows, ", ") + "\n")
	b.WriteString("# and since start (total). Generated by `exporter rules`; regenerate it when\n")
	b.WriteString("# the profile changes.\n")
	if modelName != "" {
		fmt.Fprintf(&b, "# Model: %s.\n", strings.ReplaceAll(modelName, "\n", " "))
	}
	names := make([]string, len(p.Features))
	for i, f := range p.Features {
		names[i] = strconv.Quote(f.Name)
	}
	b.WriteString("# Features: " + strings.Join(names, ", ") + ".\n")
	return b.String()
}

// RulesCommand writes the recording rules of a profile: `exporter rules`. Its
// fields are the command's flags.
type RulesCommand struct {
	// Profile is the reference profile (JSON).
	Profile string
	// Model restricts the rules to one model's series; empty takes every
	// model's.
	Model string
	// Windows is a comma-separated list of Prometheus durations (default
	// "5m,1h,1d").
	Windows string
	// Output is where the rule file goes; "-" (the default) is stdout.
	Output string
}

// Run runs the command and returns the exit code: ExitOK, or ExitError after
// printing the error to env.Stderr.
func (c *RulesCommand) Run(env Env) int {
	env = env.withDefaults()
	if err := c.run(env); err != nil {
		return env.fail("rules", err)
	}
	return ExitOK
}

func (c *RulesCommand) run(env Env) error {
	if c.Profile == "" {
		return errors.New("--profile is required")
	}
	windows, err := parseWindows(c.Windows)
	if err != nil {
		return err
	}
	p, err := drift.LoadFile(c.Profile)
	if err != nil {
		return err
	}
	out, err := Rules(p, RulesOptions{Model: c.Model, Windows: windows})
	if err != nil {
		return err
	}
	output := c.Output
	if output == "" {
		output = "-"
	}
	return writeOutput(env, output, func(w io.Writer) error {
		_, err := w.Write(out)
		return err
	})
}

// parseWindows parses --windows: "5m,1h,1d"; empty is DefaultWindows.
func parseWindows(s string) ([]time.Duration, error) {
	list := splitList([]string{s})
	if len(list) == 0 {
		return DefaultWindows, nil
	}
	out := make([]time.Duration, 0, len(list))
	for _, w := range list {
		d, err := model.ParseDuration(w)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--windows=%q: %q is not a positive duration such as 5m, 1h or 1d", s, w)
		}
		out = append(out, time.Duration(d))
	}
	return out, nil
}
