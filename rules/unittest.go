package rules

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"gopkg.in/yaml.v3"
)

// TestOptions configure RunTests.
type TestOptions struct {
	// Out receives the report, in the format of `promtool test rules`. Nil
	// discards it.
	Out io.Writer
	// Run selects the test groups whose name matches any of these regular
	// expressions (promtool's --run). Empty runs them all.
	Run []string
}

// RunTests runs the unit tests in each file, written in the format of
// `promtool test rules`, and reports whether all passed. An error means a
// file could not be read or parsed, or its rule files could not be loaded;
// it names the file and line, is also written to o.Out in that file's place,
// and the other files still run.
func RunTests(files []string, o TestOptions) (passed bool, err error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	run := make([]*regexp.Regexp, 0, len(o.Run))
	for _, s := range o.Run {
		re, err := regexp.Compile(s)
		if err != nil {
			return false, fmt.Errorf("invalid test group pattern %q: %w", s, err)
		}
		run = append(run, re)
	}

	passed = true
	var errs []error
	for _, f := range files {
		fmt.Fprintf(out, "Unit Testing:  %s\n", f)
		failures, err := runTestFile(f, run)
		if err != nil {
			errs = append(errs, err)
			failures = append(failures, "    "+indentLines(err.Error(), "    "))
		}
		if len(failures) == 0 {
			fmt.Fprint(out, "  SUCCESS\n\n")
			continue
		}
		passed = false
		fmt.Fprintln(out, "  FAILED:")
		for _, msg := range failures {
			fmt.Fprintf(out, "%s\n\n", msg)
		}
		fmt.Fprintln(out)
	}
	return passed, errors.Join(errs...)
}

// The PromQL engine is set up like a Prometheus server with default flags,
// so that a rule behaves in its test as it does in production.
const (
	testMaxSamples   = 50_000_000
	testQueryTimeout = 2 * time.Minute
)

// testLogger is handed to the Prometheus parts, which insist on one.
var testLogger = slog.New(slog.DiscardHandler)

// testFile is a unit test file: YAML fields as promtool names them, plus what
// validate derives from them.
type testFile struct {
	RuleFiles          []string     `yaml:"rule_files"`
	EvaluationInterval testDuration `yaml:"evaluation_interval"`
	GroupEvalOrder     []string     `yaml:"group_eval_order"`
	Tests              []testGroup  `yaml:"tests"`
	FuzzyCompare       bool         `yaml:"fuzzy_compare"`

	path   string
	parser parser.Parser
	rules  testRuleLoader // the parsed rule files, by path
	order  map[string]int // group name → rank in GroupEvalOrder
}

// testGroup is one entry of tests: input series and the checks run on them.
type testGroup struct {
	Name           string            `yaml:"name"`
	Interval       testDuration      `yaml:"interval"`
	InputSeries    []inputSeries     `yaml:"input_series"`
	AlertRuleTests []alertTest       `yaml:"alert_rule_test"`
	PromQLTests    []promqlTest      `yaml:"promql_expr_test"`
	ExternalLabels map[string]string `yaml:"external_labels"`
	ExternalURL    string            `yaml:"external_url"`
	StartTimestamp testTimestamp     `yaml:"start_timestamp"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`

	labels  labels.Labels
	samples []promql.Sample // timestamps relative to the start, in milliseconds
	values  int             // the values written, "_" included
}

type alertTest struct {
	EvalTime  testDuration `yaml:"eval_time"`
	Alertname string       `yaml:"alertname"`
	ExpAlerts []expAlert   `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

type promqlTest struct {
	Expr       string       `yaml:"expr"`
	EvalTime   testDuration `yaml:"eval_time"`
	ExpSamples []expSample  `yaml:"exp_samples"`
}

type expSample struct {
	Labels    string    `yaml:"labels"`
	Value     testValue `yaml:"value"`
	Histogram string    `yaml:"histogram"` // in series notation; Value is then ignored

	sample exprSample
}

// testDuration is a model.Duration whose decoding errors carry their line.
type testDuration model.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *testDuration) UnmarshalYAML(n *yaml.Node) error {
	v, err := model.ParseDuration(n.Value)
	if err != nil {
		return yamlTypeError(n, "%v", err)
	}
	*d = testDuration(v)
	return nil
}

func (d testDuration) String() string { return model.Duration(d).String() }

// testTimestamp is an RFC 3339 time or a Unix time in seconds, as promtool's
// start_timestamp.
type testTimestamp struct{ time.Time }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *testTimestamp) UnmarshalYAML(n *yaml.Node) error {
	if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
		sec, frac := math.Modf(f)
		t.Time = time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC()
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, n.Value)
	if err != nil {
		return yamlTypeError(n, "invalid start_timestamp %q: want RFC 3339 or Unix seconds", n.Value)
	}
	t.Time = v
	return nil
}

// testValue is a float that also accepts Go's spellings of NaN and
// infinities ("NaN", "+Inf"), which YAML reads as strings.
type testValue float64

// UnmarshalYAML implements yaml.Unmarshaler.
func (v *testValue) UnmarshalYAML(n *yaml.Node) error {
	var f float64
	if err := n.Decode(&f); err == nil {
		*v = testValue(f)
		return nil
	}
	f, err := strconv.ParseFloat(n.Value, 64)
	if err != nil {
		return yamlTypeError(n, "invalid sample value %q", n.Value)
	}
	*v = testValue(f)
	return nil
}

// yamlTypeError is an error that yaml.v3 collects with its own, so that one
// decode reports every bad field.
func yamlTypeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: "+format, append([]any{n.Line}, args...)...)}}
}

// runTestFile runs the selected test groups of one file. It returns the
// failures in report form, and an error if the file can't be run at all.
func runTestFile(path string, run []*regexp.Regexp) ([]string, error) {
	tf, err := loadTestFile(path)
	if err != nil {
		return nil, err
	}
	var failures []string
	for i := range tf.Tests {
		tg := &tf.Tests[i]
		if !testSelected(tg.Name, run) {
			continue
		}
		f, err := tf.runGroup(tg)
		failures = append(failures, f...)
		if err != nil {
			return failures, fmt.Errorf("%s: tests[%d]: %w", path, i, err)
		}
	}
	return failures, nil
}

func testSelected(name string, run []*regexp.Regexp) bool {
	if len(run) == 0 {
		return true
	}
	return slices.ContainsFunc(run, func(re *regexp.Regexp) bool { return re.MatchString(name) })
}

var (
	testYAMLLineRE     = regexp.MustCompile(`^line (\d+): (.*)$`)
	testUnknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// loadTestFile reads, decodes and checks a test file, and loads its rule
// files. Every problem found is reported, each as "file:line: message".
func loadTestFile(path string) (*testFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't read test file: %w", err)
	}
	tf := &testFile{path: path, parser: parser.NewParser(parser.Options{})}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(tf); err != nil && !errors.Is(err, io.EOF) {
		msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
		if te, ok := errors.AsType[*yaml.TypeError](err); ok {
			msgs = te.Errors
		}
		errs := make([]error, 0, len(msgs))
		for _, m := range msgs {
			line := 0
			if sm := testYAMLLineRE.FindStringSubmatch(m); sm != nil {
				line, _ = strconv.Atoi(sm[1])
				m = sm[2]
			}
			if sm := testUnknownFieldRE.FindStringSubmatch(m); sm != nil {
				m = fmt.Sprintf("unknown field %q", sm[1])
			}
			errs = append(errs, atLine(path, line, m))
		}
		return nil, errors.Join(errs...)
	}
	// Decoding again into nodes gives the line of each element, for the
	// checks that follow (the decoder above reports only its own errors).
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, atLine(path, 0, err.Error())
	}
	if err := tf.validate(&doc); err != nil {
		return nil, err
	}
	return tf, nil
}

func atLine(path string, line int, msg string) error {
	if line > 0 {
		return fmt.Errorf("%s:%d: %s", path, line, msg)
	}
	return fmt.Errorf("%s: %s", path, msg)
}

// validate fills in defaults, parses everything that can be parsed before a
// test runs (series, expressions, expected samples, rule files) and reports
// each problem with its line.
func (tf *testFile) validate(doc *yaml.Node) error {
	var errs []error
	report := func(path []any, format string, args ...any) {
		errs = append(errs, atLine(tf.path, yamlLine(doc, path...), fmt.Sprintf(format, args...)))
	}

	if tf.EvaluationInterval == 0 {
		tf.EvaluationInterval = testDuration(time.Minute)
	}
	tf.order = make(map[string]int, len(tf.GroupEvalOrder))
	for i, name := range tf.GroupEvalOrder {
		if _, ok := tf.order[name]; ok {
			report([]any{"group_eval_order", i}, "group_eval_order: group %q is listed twice", name)
		}
		tf.order[name] = i
	}

	tf.rules = testRuleLoader{parser: tf.parser, files: map[string]*rulefmt.RuleGroups{}}
	var ruleFiles []string
	for i, pattern := range tf.RuleFiles {
		if pattern != "" && !filepath.IsAbs(pattern) {
			pattern = filepath.Join(filepath.Dir(tf.path), pattern)
		}
		matches, err := filepath.Glob(pattern)
		switch {
		case err != nil:
			report([]any{"rule_files", i}, "rule_files: invalid pattern %q: %v", tf.RuleFiles[i], err)
		case len(matches) == 0:
			report([]any{"rule_files", i}, "rule_files: %q matches no file", tf.RuleFiles[i])
		}
		for _, m := range matches {
			rgs, ruleErrs := rulefmt.ParseFile(m, false, model.UTF8Validation, tf.parser, testLogger)
			if len(ruleErrs) > 0 {
				// rulefmt's errors start with the rule file and give its line.
				errs = append(errs, ruleErrs...)
				continue
			}
			tf.rules.files[m] = rgs
			ruleFiles = append(ruleFiles, m)
		}
	}
	tf.RuleFiles = ruleFiles

	for i := range tf.Tests {
		tg := &tf.Tests[i]
		at := func(path ...any) []any { return append([]any{"tests", i}, path...) }
		if tg.Interval == 0 {
			tg.Interval = tf.EvaluationInterval
		}
		seen := map[uint64]int{}
		for j := range tg.InputSeries {
			is := &tg.InputSeries[j]
			if err := is.parse(tf.parser, time.Duration(tg.Interval)); err != nil {
				report(at("input_series", j, err.field), "input_series: %v", err)
				continue
			}
			if k, ok := seen[is.labels.Hash()]; ok {
				report(at("input_series", j, "series"), "input_series: series %s is already defined at line %d",
					is.labels, yamlLine(doc, at("input_series", k)...))
			}
			seen[is.labels.Hash()] = j
		}
		for j, t := range tg.AlertRuleTests {
			if t.Alertname == "" {
				report(at("alert_rule_test", j), "alert_rule_test: alertname is required")
			}
		}
		for j := range tg.PromQLTests {
			pt := &tg.PromQLTests[j]
			if _, err := tf.parser.ParseExpr(pt.Expr); err != nil {
				report(at("promql_expr_test", j, "expr"), "promql_expr_test: invalid expr %q: %v", pt.Expr, err)
			}
			for k := range pt.ExpSamples {
				es := &pt.ExpSamples[k]
				if err := es.parse(tf.parser); err != nil {
					report(at("promql_expr_test", j, "exp_samples", k, err.field), "exp_samples: %v", err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// testFieldError is a problem with one field of a list element.
type testFieldError struct {
	field string
	err   error
}

func (e *testFieldError) Error() string { return e.err.Error() }

// parse reads the series and its values in promtool's expanding notation
// ("0+10x100", "1 _ stale _x3", "{{schema:0 sum:5 count:4 buckets:[1 2 1]}}").
func (is *inputSeries) parse(p parser.Parser, interval time.Duration) *testFieldError {
	desc := is.Series + " " + is.Values
	lset, vals, err := p.ParseSeriesDesc(desc)
	if err != nil {
		// The error's position tells which of the two fields is wrong.
		var perrs parser.ParseErrors
		if errors.As(err, &perrs) && len(perrs) > 0 {
			pe := perrs[0]
			if int(pe.PositionRange.Start) > len(is.Series) {
				return &testFieldError{"values", fmt.Errorf("invalid values %q for %s: %w", is.Values, is.Series, pe.Err)}
			}
			return &testFieldError{"series", fmt.Errorf("invalid series %q: %w", is.Series, pe.Err)}
		}
		return &testFieldError{"series", fmt.Errorf("invalid series %q: %w", desc, err)}
	}
	if lset.IsEmpty() {
		return &testFieldError{"series", fmt.Errorf("series %q has no labels", is.Series)}
	}
	is.labels, is.values = lset, len(vals)
	for i, v := range vals {
		if v.Omitted {
			continue
		}
		is.samples = append(is.samples, promql.Sample{T: int64(i) * interval.Milliseconds(), F: v.Value, H: v.Histogram})
	}
	return nil
}

// ParseInputSeries reads an input series of a test in promtool's format,
// its labels and its values in the expanding notation, as `promtool test
// rules` does: the labels, the samples (timestamps from 0, interval apart,
// in milliseconds; values written "_" left out), and the number of values
// written. For tests of other kinds (alertd test policy).
func ParseInputSeries(p parser.Parser, series, values string, interval time.Duration) (labels.Labels, []promql.Sample, int, error) {
	is := inputSeries{Series: series, Values: values}
	if err := is.parse(p, interval); err != nil {
		return labels.EmptyLabels(), nil, 0, err
	}
	return is.labels, is.samples, is.values, nil
}

// parse reads the expected labels and histogram.
func (es *expSample) parse(p parser.Parser) *testFieldError {
	lset, err := p.ParseMetric(es.Labels)
	if err != nil {
		return &testFieldError{"labels", fmt.Errorf("invalid labels %q: %w", es.Labels, err)}
	}
	es.sample = exprSample{labels: lset, value: float64(es.Value)}
	if es.Histogram == "" {
		return nil
	}
	_, vals, err := p.ParseSeriesDesc("{} " + es.Histogram)
	switch {
	case err != nil:
		return &testFieldError{"histogram", fmt.Errorf("invalid histogram %q: %w", es.Histogram, err)}
	case len(vals) != 1 || vals[0].Histogram == nil:
		return &testFieldError{"histogram", fmt.Errorf("invalid histogram %q: want one histogram", es.Histogram)}
	}
	es.sample.histogram = vals[0].Histogram.TestExpression()
	return nil
}

// yamlLine returns the line of the YAML node at path, a list of mapping keys
// and sequence indexes, or of its deepest existing ancestor.
func yamlLine(doc *yaml.Node, path ...any) int {
	if len(doc.Content) == 0 {
		return 0
	}
	n := doc.Content[0]
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return n.Line
}

// testRuleLoader is a rules.GroupLoader of Prometheus that serves the rule
// files validate has already parsed, so that test groups don't read them again.
type testRuleLoader struct {
	parser parser.Parser
	files  map[string]*rulefmt.RuleGroups
}

// Load implements rules.GroupLoader.
func (l testRuleLoader) Load(identifier string, _ bool, _ model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	rgs, ok := l.files[identifier]
	if !ok {
		return nil, []error{fmt.Errorf("%s: rule file not loaded", identifier)}
	}
	return rgs, nil
}

// Parse implements rules.GroupLoader.
func (l testRuleLoader) Parse(query string) (parser.Expr, error) {
	return l.parser.ParseExpr(query)
}

// rank orders the groups for evaluation: first those named in
// group_eval_order, in that order, then the others as they appear in the rule
// files. (promtool leaves the others in random order; any fixed order is one
// it could have picked.)
func (tf *testFile) rank(g *promrules.Group) []int {
	if i, ok := tf.order[g.Name()]; ok {
		return []int{0, i, 0}
	}
	file := slices.Index(tf.RuleFiles, g.File())
	pos := slices.IndexFunc(tf.rules.files[g.File()].Groups, func(rg rulefmt.RuleGroup) bool { return rg.Name == g.Name() })
	return []int{1, file, pos}
}

// runGroup runs one test group on a fresh storage: it loads the input series
// step by step, evaluates every rule group at each step, and checks alerts
// and expressions at their eval_time. It returns the failures, and an error
// if the group could not be set up.
func (tf *testFile) runGroup(tg *testGroup) (failures []string, err error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "alertd-test-rules-")
	if err != nil {
		return nil, fmt.Errorf("couldn't create storage directory: %w", err)
	}
	defer os.RemoveAll(dir)
	db, err := tsdb.Open(dir, testLogger, nil, testStorageOptions(), nil)
	if err != nil {
		return nil, fmt.Errorf("couldn't open storage: %w", err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("couldn't close storage: %w", cerr)
		}
	}()
	interval := time.Duration(tf.EvaluationInterval)
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:                   testLogger,
		MaxSamples:               testMaxSamples,
		Timeout:                  testQueryTimeout,
		NoStepSubqueryIntervalFn: func(int64) int64 { return interval.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   tf.parser,
	})
	defer engine.Close()

	hyst := &Hysteresis{Query: promrules.EngineQueryFunc(engine, db), Logger: testLogger}
	m := promrules.NewManager(&promrules.ManagerOptions{
		QueryFunc:    hyst.QueryFunc,
		AppendableV2: db,
		Queryable:    db,
		Context:      ctx,
		NotifyFunc:   func(context.Context, string, ...*promrules.Alert) {},
		Logger:       testLogger,
		Parser:       tf.parser,
		GroupLoader:  tf.rules,
	})
	groupMap, errs := m.LoadGroups(time.Duration(tg.Interval), labels.FromMap(tg.ExternalLabels), tg.ExternalURL, nil, false, tf.RuleFiles...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	groups := make([]*promrules.Group, 0, len(groupMap))
	for _, g := range groupMap {
		groups = append(groups, g)
		for _, r := range g.Rules() {
			if ar, ok := r.(*promrules.AlertingRule); ok {
				// As if restored from a previous run, so the ALERTS series
				// is written from the first evaluation.
				ar.SetRestored(true)
			}
		}
	}
	slices.SortFunc(groups, func(a, b *promrules.Group) int { return slices.Compare(tf.rank(a), tf.rank(b)) })

	start := time.Unix(0, 0).UTC()
	if !tg.StartTimestamp.IsZero() {
		start = tg.StartTimestamp.Time
	}
	prefix := ""
	if tg.Name != "" {
		prefix = fmt.Sprintf("    name: %s,\n", tg.Name)
	}

	// Alert tests sorted by eval_time, stable so that tests at one time are
	// reported in file order.
	alertTests := slices.Clone(tg.AlertRuleTests)
	slices.SortStableFunc(alertTests, func(a, b alertTest) int { return cmp.Compare(a.EvalTime, b.EvalTime) })
	loader := newInputLoader(tg.InputSeries, start)
	end := start.Add(tg.maxEvalTime())
	next := 0
	for ts := start; !ts.After(end); ts = ts.Add(interval) {
		if err := loader.appendTill(ctx, db, ts); err != nil {
			return append(failures, fmt.Sprintf("%s    time: %s, err: couldn't load input series: %v", prefix, ts.Sub(start), err)), nil
		}
		var evalFailures []string
		for _, g := range groups {
			g.Eval(WithGroup(ctx, g), ts)
			for _, r := range g.Rules() {
				if err := r.LastError(); err != nil {
					evalFailures = append(evalFailures, fmt.Sprintf("%s    rule: %s, time: %s, err: %v", prefix, r.Name(), ts.Sub(start), err))
				}
			}
		}
		if len(evalFailures) > 0 {
			// Later steps would build on a broken evaluation.
			return append(failures, evalFailures...), nil
		}
		// An alert test at eval_time is checked against the last evaluation
		// at or before it, as in promtool.
		for next < len(alertTests) && start.Add(time.Duration(alertTests[next].EvalTime)).Before(ts.Add(interval)) {
			if msg := checkAlerts(alertTests[next], groups); msg != "" {
				failures = append(failures, prefix+msg)
			}
			next++
		}
	}

	for _, pt := range tg.PromQLTests {
		if msg := checkExpr(ctx, pt, engine, db, start, tf.FuzzyCompare); msg != "" {
			failures = append(failures, prefix+msg)
		}
	}
	return failures, nil
}

// testStorageOptions sets up the TSDB as Prometheus's own test storage does:
// one long head block, so that samples of any age can be appended, and no
// retention.
func testStorageOptions() *tsdb.Options {
	opts := tsdb.DefaultOptions()
	opts.MinBlockDuration = (24 * time.Hour).Milliseconds()
	opts.MaxBlockDuration = (24 * time.Hour).Milliseconds()
	opts.RetentionDuration = 0
	opts.WALSegmentSize = -1 // no write-ahead log: the data is thrown away
	return opts
}

// maxEvalTime is the latest eval_time of the group's tests.
func (tg *testGroup) maxEvalTime() time.Duration {
	var d testDuration
	for _, at := range tg.AlertRuleTests {
		d = max(d, at.EvalTime)
	}
	for _, pt := range tg.PromQLTests {
		d = max(d, pt.EvalTime)
	}
	return time.Duration(d)
}

// inputLoader appends the input series to storage as the clock advances.
// Loading all of them up front would put the head block's end past the
// evaluation time and make TSDB reject the rules' own samples as too old.
type inputLoader struct {
	series []inputSeries
	refs   []storage.SeriesRef
	next   []int // index of each series' first sample not yet appended
	start  int64
}

func newInputLoader(series []inputSeries, start time.Time) *inputLoader {
	return &inputLoader{
		series: series,
		refs:   make([]storage.SeriesRef, len(series)),
		next:   make([]int, len(series)),
		start:  start.UnixMilli(),
	}
}

// appendTill appends every sample at or before ts.
func (l *inputLoader) appendTill(ctx context.Context, db storage.AppendableV2, ts time.Time) error {
	app := db.AppenderV2(ctx)
	till := ts.UnixMilli()
	for i, is := range l.series {
		for ; l.next[i] < len(is.samples); l.next[i]++ {
			s := is.samples[l.next[i]]
			t := l.start + s.T
			if t > till {
				break
			}
			ref, err := app.Append(l.refs[i], is.labels, 0, t, s.F, nil, s.H, storage.AppendV2Options{})
			if err != nil {
				return errors.Join(fmt.Errorf("series %s at %s: %w", is.labels, time.Duration(s.T)*time.Millisecond, err), app.Rollback())
			}
			l.refs[i] = ref
		}
	}
	return app.Commit()
}

// alertResult is one alert as the report shows it.
type alertResult struct {
	labels, annotations labels.Labels
}

func (a alertResult) String() string {
	return "Labels:" + a.labels.String() + "\nAnnotations:" + a.annotations.String()
}

func compareAlerts(a, b alertResult) int {
	if c := labels.Compare(a.labels, b.labels); c != 0 {
		return c
	}
	return labels.Compare(a.annotations, b.annotations)
}

func alertsString(as []alertResult) string {
	if len(as) == 0 {
		return "[]"
	}
	var b strings.Builder
	b.WriteString("[")
	for i, a := range as {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n%d:%s", i, indentLines("\n"+a.String(), "  "))
	}
	b.WriteString("\n]")
	return b.String()
}

// checkAlerts compares the firing alerts of every rule named at.Alertname,
// in any group, with the expected ones. It returns the failure in promtool's
// words, or "".
func checkAlerts(at alertTest, groups []*promrules.Group) string {
	var got []alertResult
	for _, g := range groups {
		for _, r := range g.Rules() {
			ar, ok := r.(*promrules.AlertingRule)
			if !ok || ar.Name() != at.Alertname {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == promrules.StateFiring {
					got = append(got, alertResult{labels: a.Labels.Copy(), annotations: a.Annotations.Copy()})
				}
			}
		}
	}
	exp := make([]alertResult, 0, len(at.ExpAlerts))
	for _, ea := range at.ExpAlerts {
		b := labels.NewBuilder(labels.FromMap(ea.ExpLabels))
		// The rule adds alertname; the test names it once for all alerts.
		b.Set(labels.AlertName, at.Alertname)
		exp = append(exp, alertResult{labels: b.Labels(), annotations: labels.FromMap(ea.ExpAnnotations)})
	}
	slices.SortFunc(got, compareAlerts)
	slices.SortFunc(exp, compareAlerts)
	if slices.EqualFunc(exp, got, func(a, b alertResult) bool { return compareAlerts(a, b) == 0 }) {
		return ""
	}
	const in = "            "
	return fmt.Sprintf("    alertname: %s, time: %s,\n        exp:%s,\n        got:%s",
		at.Alertname, at.EvalTime, indentLines(alertsString(exp), in), indentLines(alertsString(got), in))
}

// exprSample is one sample of a query result as the report shows it.
type exprSample struct {
	labels    labels.Labels
	value     float64
	histogram string // FloatHistogram.TestExpression, or "" for a float
}

func (r exprSample) String() string {
	if r.histogram != "" {
		return r.labels.String() + " " + r.histogram
	}
	return r.labels.String() + " " + strconv.FormatFloat(r.value, 'E', -1, 64)
}

func exprSamplesString(rs []exprSample) string {
	if len(rs) == 0 {
		return "nil"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// sameFloat compares floats exactly, NaN equal to NaN, or within one unit in
// the last place if fuzzy.
func sameFloat(a, b float64, fuzzy bool) bool {
	switch {
	case a == b, math.IsNaN(a) && math.IsNaN(b):
		return true
	case fuzzy:
		return math.Nextafter(a, math.Inf(-1)) == b || math.Nextafter(a, math.Inf(1)) == b
	}
	return false
}

// checkExpr evaluates the expression at its eval_time and compares the
// result, in any order, with the expected samples. It returns the failure
// in promtool's words, or "".
func checkExpr(ctx context.Context, pt promqlTest, engine *promql.Engine, db storage.Queryable, start time.Time, fuzzy bool) string {
	got, err := instantQuery(ctx, engine, db, pt.Expr, start.Add(time.Duration(pt.EvalTime)))
	if err != nil {
		return fmt.Sprintf("    expr: %q, time: %s, err: %v", pt.Expr, pt.EvalTime, err)
	}
	exp := make([]exprSample, 0, len(pt.ExpSamples))
	for _, es := range pt.ExpSamples {
		exp = append(exp, es.sample)
	}
	byLabels := func(a, b exprSample) int { return labels.Compare(a.labels, b.labels) }
	slices.SortFunc(got, byLabels)
	slices.SortFunc(exp, byLabels)
	equal := slices.EqualFunc(exp, got, func(e, g exprSample) bool {
		if !labels.Equal(e.labels, g.labels) || e.histogram != g.histogram {
			return false
		}
		return e.histogram != "" || sameFloat(e.value, g.value, fuzzy)
	})
	if equal {
		return ""
	}
	return fmt.Sprintf("    expr: %q, time: %s,\n        exp: %s\n        got: %s",
		pt.Expr, pt.EvalTime, exprSamplesString(exp), exprSamplesString(got))
}

// instantQuery runs an instant query and returns its vector or scalar result.
func instantQuery(ctx context.Context, engine *promql.Engine, db storage.Queryable, expr string, ts time.Time) ([]exprSample, error) {
	q, err := engine.NewInstantQuery(ctx, db, nil, expr, ts)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		out := make([]exprSample, 0, len(v))
		for _, s := range v {
			r := exprSample{labels: s.Metric, value: s.F}
			if s.H != nil {
				r.histogram = s.H.TestExpression()
			}
			out = append(out, r)
		}
		return out, nil
	case promql.Scalar:
		return []exprSample{{labels: labels.EmptyLabels(), value: v.V}}, nil
	}
	return nil, fmt.Errorf("expression returns a %s, want a vector or scalar", res.Value.Type())
}

// indentLines prefixes every line but the first with prefix.
func indentLines(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}
