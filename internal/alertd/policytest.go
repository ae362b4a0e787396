package alertd

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/escalate"
	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/rules"
)

// PolicyTestFile is a test of a whole alerting policy, `alertd test policy`:
// series in, the pages and suppressions of the configuration's rules,
// anomaly detectors, classification, suppression stages and routes out, and
// the steps of its escalation policies. The series are promtool's notation;
// the configuration runs as `alertd replay` runs it, over the test's range.
type PolicyTestFile struct {
	// Config is alertd's configuration file, relative to the test file.
	Config string `yaml:"config"`
	// Interval is the series' sample interval (default 1m); EvaluationInterval
	// the replay's step (default the configuration's).
	Interval           model.Duration `yaml:"interval"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	Tests              []PolicyTest   `yaml:"tests"`
}

// PolicyTest is one scenario.
type PolicyTest struct {
	Name           string           `yaml:"name"`
	StartTimestamp time.Time        `yaml:"start_timestamp"`
	InputSeries    []policySeries   `yaml:"input_series"`
	Duration       model.Duration   `yaml:"duration"` // default: the longest series
	ExpFirings     []ExpectedFiring `yaml:"exp_firings"`
	// Acknowledgements are operators' acknowledgements of the escalated
	// incidents, at their times; each must acknowledge one.
	Acknowledgements []PolicyAcknowledgement `yaml:"acknowledgements"`
	// ExpEscalations, when given (even empty), are checked one to one
	// against the escalation steps; left out, escalations are not checked.
	ExpEscalations []ExpectedEscalation `yaml:"exp_escalations"`
	ExpSummary     *ExpectedSummary     `yaml:"exp_summary"`
}

// PolicyAcknowledgement acknowledges, at a time (after the start), the
// open escalated incidents whose opening alert has the labels (a subset),
// of the receiver's routes when one is given (an alert in several routes
// is in an incident of each), by someone: as POST
// /api/v1/incidents/{id}/acknowledge would. The files of `alertd replay
// --acknowledgements` list them too.
type PolicyAcknowledgement struct {
	At       AckTime           `yaml:"at"`
	Labels   map[string]string `yaml:"labels"`
	Receiver string            `yaml:"receiver"`
	By       string            `yaml:"by"`
}

type policySeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// ExpectedFiring is a firing the test expects: its alertname and labels (a
// subset of the alert's), when it fired and, if given, resolved (durations
// from the start; "never" for one that still fires at the end), and, if
// given, its outcome (paged, grouped, suppressed, unrouted) and the stage
// that suppressed it.
type ExpectedFiring struct {
	Alertname    string            `yaml:"alertname"`
	Labels       map[string]string `yaml:"labels"`
	FiredAt      model.Duration    `yaml:"fired_at"`
	ResolvedAt   string            `yaml:"resolved_at"`
	Outcome      string            `yaml:"outcome"`
	SuppressedBy string            `yaml:"suppressed_by"`
}

// ExpectedEscalation is an escalation step the test expects: when it fell
// due (a duration from the start) and its event (trigger, escalate,
// repeat, resolve, or action for an action step), and, if given, its
// policy, level, receivers (in any order), iteration, action, and labels (a
// subset of those of the alert that opened the incident).
type ExpectedEscalation struct {
	At        model.Duration    `yaml:"at"`
	Labels    map[string]string `yaml:"labels"`
	Policy    string            `yaml:"policy"`
	Event     string            `yaml:"event"`
	Level     int               `yaml:"level"`
	Receivers []string          `yaml:"receivers"`
	Iteration *int              `yaml:"iteration"`
	Action    string            `yaml:"action"`
}

// ExpectedSummary checks the replay's counts, those given.
type ExpectedSummary struct {
	Pages       *int `yaml:"pages"`
	Grouped     *int `yaml:"grouped"`
	Suppressed  *int `yaml:"suppressed"`
	Escalations *int `yaml:"escalations"`
}

// RunPolicyTests runs the policy tests of each file and writes a report in
// the manner of `promtool test rules`; passed is false when a test failed.
// An error is a file that can't be read, parsed or run; it is reported too,
// and the other files still run.
func RunPolicyTests(ctx context.Context, files []string, out io.Writer, logger *slog.Logger) (passed bool, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	passed = true
	var errs []error
	for _, f := range files {
		fmt.Fprintf(out, "Unit Testing:  %s\n", f)
		failures, ferr := runPolicyFile(ctx, f, logger)
		switch {
		case ferr != nil:
			fmt.Fprintf(out, "  FAILED:\n    %v\n\n", ferr)
			errs = append(errs, ferr)
			passed = false
		case len(failures) > 0:
			fmt.Fprintf(out, "  FAILED:\n%s\n\n", strings.Join(failures, "\n"))
			passed = false
		default:
			fmt.Fprintf(out, "  SUCCESS\n\n")
		}
	}
	return passed, errors.Join(errs...)
}

func runPolicyFile(ctx context.Context, path string, logger *slog.Logger) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tf PolicyTestFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if tf.Config == "" {
		return nil, fmt.Errorf("%s: config is required", path)
	}
	if !filepath.IsAbs(tf.Config) {
		tf.Config = filepath.Join(filepath.Dir(path), tf.Config)
	}
	interval := time.Duration(cmp.Or(tf.Interval, model.Duration(time.Minute)))
	var failures []string
	for i, tc := range tf.Tests {
		name := cmp.Or(tc.Name, fmt.Sprintf("tests[%d]", i))
		msgs, err := tc.run(ctx, tf.Config, interval, time.Duration(tf.EvaluationInterval), logger)
		if err != nil {
			return nil, fmt.Errorf("%s: test %q: %w", path, name, err)
		}
		for _, m := range msgs {
			failures = append(failures, fmt.Sprintf("    name: %s,\n%s", name, m))
		}
	}
	return failures, nil
}

// run replays the configuration over the test's series and compares.
func (tc *PolicyTest) run(ctx context.Context, config string, interval, step time.Duration, logger *slog.Logger) ([]string, error) {
	for i, e := range tc.ExpFirings {
		if e.Alertname == "" {
			return nil, fmt.Errorf("exp_firings[%d]: alertname is required", i)
		}
		if e.ResolvedAt != "" && e.ResolvedAt != "never" {
			if _, err := model.ParseDuration(e.ResolvedAt); err != nil {
				return nil, fmt.Errorf("exp_firings[%d]: resolved_at %q: a duration or never", i, e.ResolvedAt)
			}
		}
		switch e.Outcome {
		case "", OutcomePaged, OutcomeGrouped, OutcomeSuppressed, OutcomeUnrouted:
		default:
			return nil, fmt.Errorf("exp_firings[%d]: outcome %q: paged, grouped, suppressed or unrouted", i, e.Outcome)
		}
	}
	for i := range tc.ExpEscalations {
		if err := tc.ExpEscalations[i].check(); err != nil {
			return nil, fmt.Errorf("exp_escalations[%d]: %w", i, err)
		}
	}
	if len(tc.Acknowledgements) > 0 {
		// Unlike a replay's, a test's acknowledgements must acknowledge.
		cfg, err := alertconfig.LoadFile(config)
		if err != nil {
			return nil, err
		}
		if len(cfg.EscalationPolicies()) == 0 {
			return nil, errors.New("acknowledgements need escalation policies: only an escalated incident can be acknowledged")
		}
	}
	start := tc.StartTimestamp
	if start.IsZero() {
		start = time.Unix(0, 0).UTC()
	}
	p := parser.NewParser(parser.Options{})
	type series struct {
		labels  labels.Labels
		samples []promql.Sample
	}
	var all []series
	longest := 0
	for _, is := range tc.InputSeries {
		ls, samples, n, err := rules.ParseInputSeries(p, is.Series, is.Values, interval)
		if err != nil {
			return nil, fmt.Errorf("input series %q: %w", is.Series, err)
		}
		all = append(all, series{ls, samples})
		longest = max(longest, n)
	}
	if longest == 0 {
		return nil, errors.New("no input series")
	}
	dur := time.Duration(tc.Duration)
	if dur <= 0 {
		dur = time.Duration(longest-1) * interval
	}
	dir, err := os.MkdirTemp("", "alertd-policy-test")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	blockSize := (dur + 2*time.Hour).Milliseconds()
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, blockSize)
	if err != nil {
		return nil, err
	}
	app := w.AppenderV2(ctx)
	for _, s := range all {
		var ref storage.SeriesRef
		for _, v := range s.samples {
			t := start.UnixMilli() + v.T
			if ref, err = app.Append(ref, s.labels, 0, t, v.F, nil, v.H, storage.AppendV2Options{}); err != nil {
				_ = w.Close()
				return nil, fmt.Errorf("series %s: %w", s.labels, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		_ = w.Close()
		return nil, err
	}
	if _, err := w.Flush(ctx); err != nil {
		_ = w.Close()
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	src, closeSrc, err := OpenReplaySource(dir, "", 0, commoncfg.HTTPClientConfig{})
	if err != nil {
		return nil, err
	}
	defer closeSrc()
	var acks []ReplayAcknowledgement
	for _, a := range tc.Acknowledgements {
		acks = append(acks, a.replay(start))
	}
	res, err := Replay(ctx, config, ReplayOptions{From: start, To: start.Add(dur), Step: step, Source: src, Acknowledgements: acks, Logger: logger})
	if err != nil {
		return nil, err
	}
	return tc.compare(res, start), nil
}

// compare matches the replay's firings with the expected ones, one to one:
// an expected firing not found, or a firing not expected, fails the test.
func (tc *PolicyTest) compare(res *ReplayResult, start time.Time) []string {
	describe := func(f ReplayFiring) string {
		resolved := "never"
		if !f.ResolvedAt.IsZero() {
			resolved = model.Duration(f.ResolvedAt.Sub(start)).String()
		}
		s := fmt.Sprintf("%s fired_at: %s, resolved_at: %s, outcome: %s", f.Labels, model.Duration(f.FiredAt.Sub(start)), resolved, f.Outcome)
		if f.SuppressedBy != "" {
			s += ", suppressed_by: " + f.SuppressedBy
		}
		return s
	}
	msgs := matchOneToOne("firing", tc.ExpFirings, res.Firings, func(e ExpectedFiring, f ReplayFiring) bool { return e.matches(f, start) }, describe)
	for _, a := range res.Acknowledgements {
		if len(a.Incidents) == 0 {
			of := a.Labels.String()
			if a.Receiver != "" {
				of += " of receiver " + a.Receiver
			}
			msgs = append(msgs, fmt.Sprintf("        acknowledgement at %s of %s acknowledged no open escalated incident", model.Duration(a.At.Sub(start)), of))
		}
	}
	if tc.ExpEscalations != nil {
		msgs = append(msgs, matchOneToOne("escalation", tc.ExpEscalations, res.Escalations,
			func(e ExpectedEscalation, got ReplayEscalation) bool { return e.matches(got, start) },
			func(e ReplayEscalation) string { return describeEscalation(e, start) })...)
	}
	if s := tc.ExpSummary; s != nil {
		check := func(what string, want *int, got int) {
			if want != nil && *want != got {
				msgs = append(msgs, fmt.Sprintf("        summary %s: exp %d, got %d", what, *want, got))
			}
		}
		suppressed := 0
		for _, n := range res.Summary.Suppressed {
			suppressed += n
		}
		check("pages", s.Pages, res.Summary.Pages)
		check("grouped", s.Grouped, res.Summary.Grouped)
		check("suppressed", s.Suppressed, suppressed)
		check("escalations", s.Escalations, res.Summary.Escalations)
	}
	return msgs
}

// matchOneToOne matches each expected item with one got that no other
// matched, and reports, in promtool's manner, each expected item not found
// with what there is, and each item got that was not expected; what names
// the items.
func matchOneToOne[E fmt.Stringer, G any](what string, exps []E, gots []G, matches func(E, G) bool, describe func(G) string) []string {
	var msgs []string
	used := make([]bool, len(gots))
	for _, exp := range exps {
		found := false
		for i, g := range gots {
			if !used[i] && matches(exp, g) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			msgs = append(msgs, fmt.Sprintf("        exp: %s, not among the %ss:\n%s", exp, what, itemList(gots, describe)))
		}
	}
	for i, g := range gots {
		if !used[i] {
			msgs = append(msgs, fmt.Sprintf("        got an unexpected %s: %s", what, describe(g)))
		}
	}
	return msgs
}

// itemList lists firings or escalations, one a line, or says there are
// none.
func itemList[T any](fs []T, describe func(T) string) string {
	if len(fs) == 0 {
		return "            (none)"
	}
	var lines []string
	for _, f := range fs {
		lines = append(lines, "            "+describe(f))
	}
	return strings.Join(lines, "\n")
}

func (e ExpectedFiring) matches(f ReplayFiring, start time.Time) bool {
	if string(f.Labels[model.AlertNameLabel]) != e.Alertname {
		return false
	}
	for k, v := range e.Labels {
		if string(f.Labels[model.LabelName(k)]) != v {
			return false
		}
	}
	if !f.FiredAt.Equal(start.Add(time.Duration(e.FiredAt))) {
		return false
	}
	switch e.ResolvedAt {
	case "":
	case "never":
		if !f.ResolvedAt.IsZero() {
			return false
		}
	default:
		d, err := model.ParseDuration(e.ResolvedAt)
		if err != nil || !f.ResolvedAt.Equal(start.Add(time.Duration(d))) {
			return false
		}
	}
	if e.Outcome != "" && e.Outcome != f.Outcome {
		return false
	}
	return e.SuppressedBy == "" || e.SuppressedBy == f.SuppressedBy
}

func (e ExpectedFiring) String() string {
	ls := model.LabelSet{model.AlertNameLabel: model.LabelValue(e.Alertname)}
	for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
		ls[model.LabelName(k)] = model.LabelValue(e.Labels[k])
	}
	s := fmt.Sprintf("%s fired_at: %s", ls, e.FiredAt)
	if e.ResolvedAt != "" {
		s += ", resolved_at: " + e.ResolvedAt
	}
	if e.Outcome != "" {
		s += ", outcome: " + e.Outcome
	}
	if e.SuppressedBy != "" {
		s += ", suppressed_by: " + e.SuppressedBy
	}
	return s
}

// escalationEvents are the events an expected escalation may have:
// acknowledge only with the test's acknowledgements.
var escalationEvents = []escalate.Event{escalate.EventTrigger, escalate.EventEscalate, escalate.EventRepeat, escalate.EventAcknowledge, escalate.EventResolve, escalate.EventAction}

// check validates an expected escalation; an action step's event may be
// left out.
func (e *ExpectedEscalation) check() error {
	if e.Event == "" && e.Action != "" {
		e.Event = string(escalate.EventAction)
	}
	switch {
	case e.Event == "":
		return errors.New("event is required")
	case !slices.Contains(escalationEvents, escalate.Event(e.Event)):
		return fmt.Errorf("event %q: trigger, escalate, repeat, acknowledge, resolve or action", e.Event)
	case e.Action != "" && e.Event != string(escalate.EventAction):
		return fmt.Errorf("action %q: only for event action, not %s", e.Action, e.Event)
	case e.Level < 0:
		return fmt.Errorf("level %d: levels start at 1", e.Level)
	}
	return nil
}

func (e ExpectedEscalation) matches(got ReplayEscalation, start time.Time) bool {
	if !got.At.Equal(start.Add(time.Duration(e.At))) || got.Event != e.Event {
		return false
	}
	for k, v := range e.Labels {
		if string(got.Labels[model.LabelName(k)]) != v {
			return false
		}
	}
	if e.Receivers != nil && !slices.Equal(slices.Sorted(slices.Values(e.Receivers)), slices.Sorted(slices.Values(got.Receivers))) {
		return false
	}
	return (e.Policy == "" || e.Policy == got.Policy) &&
		(e.Level == 0 || e.Level == got.Level) &&
		(e.Iteration == nil || *e.Iteration == got.Iteration) &&
		(e.Action == "" || e.Action == got.Action)
}

func (e ExpectedEscalation) String() string {
	labels := ""
	if len(e.Labels) > 0 {
		ls := model.LabelSet{}
		for k, v := range e.Labels {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
		labels = ls.String()
	}
	return escalationText(labels, e.At, e.Policy, e.Event, e.Level, e.Receivers, e.Iteration, e.Action)
}

// describeEscalation writes an escalation step as an expected one is
// written.
func describeEscalation(e ReplayEscalation, start time.Time) string {
	return escalationText(e.Labels.String(), model.Duration(e.At.Sub(start)), e.Policy, e.Event, e.Level, e.Receivers, &e.Iteration, e.Action)
}

// escalationText writes the fields of an escalation step that are set, in
// exp_escalations' words.
func escalationText(labels string, at model.Duration, policy, event string, level int, receivers []string, iteration *int, action string) string {
	s := "at: " + at.String()
	if labels != "" {
		s = labels + " " + s
	}
	if policy != "" {
		s += ", policy: " + policy
	}
	s += ", event: " + event
	if level != 0 {
		s += fmt.Sprintf(", level: %d", level)
	}
	if receivers != nil {
		s += fmt.Sprintf(", receivers: [%s]", strings.Join(receivers, ", "))
	}
	if iteration != nil {
		s += fmt.Sprintf(", iteration: %d", *iteration)
	}
	if action != "" {
		s += ", action: " + action
	}
	return s
}
