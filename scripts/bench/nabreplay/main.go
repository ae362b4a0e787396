// Command nabreplay measures alertd's noise reduction on labelled data: it
// loads the Numenta Anomaly Benchmark series into a TSDB, replays them with
// `alertd replay` through three configurations — a naive static-threshold
// rule, alertd's anomaly scoring alone, and alertd's pipeline (anomaly
// scoring and suppression) — and scores every page against NAB's anomaly
// windows: a page inside a window is a true positive, outside a false one;
// a window with at least one page is detected. It prints a Markdown table
// for BENCHMARKS.md. Run by `make bench-nab-replay`.
//
// The static rule is what an operator sets from a look at a quiet period:
// per series, fire outside mean ± 3σ of the first 15% of the series (NAB's
// probationary period), at every evaluation (`for: 0`). The pipeline's
// configuration is in pipeline.yml; its rule and thresholds are the same
// for every series. Each series is replayed at its own sampling interval
// (the median gap between samples) as its evaluation interval, with the
// lookback equal to it, so that each sample is seen once.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "embed"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/modelmon/modelmon/internal/anomalycli"
)

//go:embed pipeline.yml
var pipelineConfig string

//go:embed pipeline.rules.yml
var pipelineRules string

// alertdBin is the alertd binary that replays.
var alertdBin string

// pipelineDir, when set, holds the rule files of a -pipeline configuration.
var pipelineDir string

// staticConfig is the static rule's configuration; the rules are written
// per run.
const staticConfig = `global:
  evaluation_interval: 5m
rule_files: [static.rules.yml]
route:
  receiver: oncall
  group_by: [file]
receivers:
  - name: oncall
`

// probation is the share of each series an operator looks at to set a
// static threshold, as NAB's probationary period.
const probation = 0.15

func main() {
	data := flag.String("data", "../shared/bench/nab/data", "NAB data directory (<category>/<file>.csv).")
	windows := flag.String("labels", "../shared/bench/nab/labels/combined_windows.json", "NAB anomaly windows.")
	only := flag.String("files", "", "Comma-separated <category>/<file>.csv to run; default all.")
	details := flag.Bool("details", false, "Print the counts per file too.")
	flag.StringVar(&alertdBin, "alertd", "bin/alertd", "The alertd binary.")
	pipeline := flag.String("pipeline", "", "An alertd configuration to replay instead of the built-in pipeline.yml; its rule files are read relative to it.")
	flag.Parse()
	if *pipeline != "" {
		b, err := os.ReadFile(*pipeline)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nabreplay:", err)
			os.Exit(1)
		}
		pipelineConfig, pipelineDir = string(b), filepath.Dir(*pipeline)
	}
	res, err := run(context.Background(), *data, *windows, splitList(*only))
	if err != nil {
		fmt.Fprintln(os.Stderr, "nabreplay:", err)
		os.Exit(1)
	}
	if *details {
		res.writeDetails(os.Stdout)
	}
	res.writeTable(os.Stdout)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// series is one NAB file.
type series struct {
	key     string // <category>/<file>.csv
	t       []time.Time
	v       []float64
	windows [][2]time.Time
}

// score counts one configuration's pages against the windows.
type score struct {
	Pages, TP, FP          int
	Windows, Detected      int
	Suppressed, Grouped    int
	Firings                int
	perFile                map[string][3]int // pages, tp, fp
	suppressedByStageByKey map[string]int
}

func (s *score) precision() float64 { return ratio(s.TP, s.Pages) }
func (s *score) recall() float64    { return ratio(s.Detected, s.Windows) }

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// result is the whole run.
type result struct {
	files                 int
	points                int
	static, scored, piped *score
	elapsed               time.Duration
	staticSigma           float64
}

func run(ctx context.Context, dataDir, windowsFile string, only []string) (*result, error) {
	all, err := load(dataDir, windowsFile, only)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nabreplay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tsdbDir := filepath.Join(dir, "tsdb")
	if err := writeTSDB(ctx, tsdbDir, all); err != nil {
		return nil, err
	}
	staticFile, pipelineFile := filepath.Join(dir, "static.yml"), filepath.Join(dir, "pipeline.yml")
	if err := os.WriteFile(staticFile, []byte(staticConfig), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pipelineFile, []byte(pipelineConfig), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pipeline.rules.yml"), []byte(pipelineRules), 0o644); err != nil {
		return nil, err
	}
	if pipelineDir != "" {
		// The configuration's own rule files, next to it.
		rules, err := filepath.Glob(filepath.Join(pipelineDir, "*.rules.yml"))
		if err != nil {
			return nil, err
		}
		for _, f := range rules {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
				return nil, err
			}
		}
	}
	// The pipeline without its suppression section: what anomaly scoring
	// alone does.
	scoringFile := filepath.Join(dir, "scoring.yml")
	scoring, _, _ := strings.Cut(pipelineConfig, "\nsuppression:")
	if err := os.WriteFile(scoringFile, []byte(scoring+"\n"), 0o644); err != nil {
		return nil, err
	}
	res := &result{files: len(all), staticSigma: 3, static: newScore(), scored: newScore(), piped: newScore()}
	start := time.Now()
	for _, s := range all {
		res.points += len(s.t)
		// The static rule of this series only: the others select nothing
		// in its range, and would only cost time.
		if err := os.WriteFile(filepath.Join(dir, "static.rules.yml"), []byte(staticRules([]*series{s}, res.staticSigma)), 0o644); err != nil {
			return nil, err
		}
		step := medianStep(s.t)
		for _, c := range []struct {
			file string
			sc   *score
		}{{staticFile, res.static}, {scoringFile, res.scored}, {pipelineFile, res.piped}} {
			r, err := replay(ctx, c.file, tsdbDir, s.t[0], s.t[len(s.t)-1], step)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", s.key, filepath.Base(c.file), err)
			}
			c.sc.add(s, r)
		}
	}
	res.elapsed = time.Since(start)
	return res, nil
}

func newScore() *score {
	return &score{perFile: map[string][3]int{}, suppressedByStageByKey: map[string]int{}}
}

// add scores the replay of one series: its firings of the alert on that
// series.
func (sc *score) add(s *series, r *replayResult) {
	detected := make([]bool, len(s.windows))
	pf := sc.perFile[s.key]
	for _, f := range r.Firings {
		if string(f.Labels["file"]) != s.key {
			continue
		}
		sc.Firings++
		switch f.Outcome {
		case "grouped":
			sc.Grouped++
			continue
		case "suppressed":
			sc.Suppressed++
			sc.suppressedByStageByKey[f.SuppressedBy]++
			continue
		case "paged":
		default:
			continue
		}
		sc.Pages++
		pf[0]++
		hit := false
		for i, w := range s.windows {
			if !f.NotifiedAt.Before(w[0]) && !f.NotifiedAt.After(w[1]) {
				detected[i], hit = true, true
			}
		}
		if hit {
			sc.TP++
			pf[1]++
		} else {
			sc.FP++
			pf[2]++
		}
	}
	sc.perFile[s.key] = pf
	sc.Windows += len(s.windows)
	for _, d := range detected {
		if d {
			sc.Detected++
		}
	}
}

// replayResult is the part of `alertd replay --output json` the scoring
// reads.
type replayResult struct {
	Firings []struct {
		Labels       map[string]string `json:"labels"`
		Outcome      string            `json:"outcome"`
		NotifiedAt   time.Time         `json:"notified_at"`
		SuppressedBy string            `json:"suppressed_by"`
	} `json:"firings"`
}

// replay runs `alertd replay` of one configuration over one series' range,
// at its sampling interval, with the lookback equal to it.
func replay(ctx context.Context, cfg, tsdbDir string, from, to time.Time, step time.Duration) (*replayResult, error) {
	cmd := exec.CommandContext(ctx, alertdBin, "replay", "--config", cfg, "--storage.tsdb.path", tsdbDir,
		"--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano),
		"--step", step.String(), "--query.lookback-delta", step.String(), "--output", "json", "--log.level", "warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var c struct {
		A replayResult `json:"a"`
	}
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, fmt.Errorf("reading the replay's report: %w", err)
	}
	return &c.A, nil
}

// medianStep is the median gap between a series' samples.
func medianStep(t []time.Time) time.Duration {
	gaps := make([]time.Duration, 0, len(t))
	for i := 1; i < len(t); i++ {
		if d := t[i].Sub(t[i-1]); d > 0 {
			gaps = append(gaps, d)
		}
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// staticRules writes one alerting rule per series: outside mean ± k·σ of
// its first 15%.
func staticRules(all []*series, k float64) string {
	var b strings.Builder
	b.WriteString("groups:\n  - name: static\n    rules:\n")
	for _, s := range all {
		n := max(2, int(float64(len(s.v))*probation))
		mean, sd := meanSD(s.v[:n])
		sel := fmt.Sprintf(`nab_value{file=%q}`, s.key)
		fmt.Fprintf(&b, "      - alert: NABValueOutsideStaticThreshold\n        expr: %s > %s or %s < %s\n",
			sel, strconv.FormatFloat(mean+k*sd, 'g', -1, 64), sel, strconv.FormatFloat(mean-k*sd, 'g', -1, 64))
	}
	return b.String()
}

func meanSD(v []float64) (float64, float64) {
	var sum float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)))
}

// writeTSDB writes every series as nab_value{file=<key>} into a TSDB.
func writeTSDB(ctx context.Context, dir string, all []*series) error {
	for _, s := range all {
		w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, 2*s.t[len(s.t)-1].Sub(s.t[0]).Milliseconds()+1)
		if err != nil {
			return err
		}
		app := w.AppenderV2(ctx)
		ls := labels.FromStrings(model.MetricNameLabel, "nab_value", "file", s.key)
		var last int64 = math.MinInt64
		for i, t := range s.t {
			ms := t.UnixMilli()
			if ms <= last {
				// NAB repeats a few timestamps; a TSDB keeps one sample per time.
				continue
			}
			last = ms
			if _, err := app.Append(0, ls, 0, ms, s.v[i], nil, nil, storage.AppendV2Options{}); err != nil {
				return fmt.Errorf("%s: %w", s.key, err)
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
		if _, err := w.Flush(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return nil
}

// load reads the NAB files and their windows.
func load(dataDir, windowsFile string, only []string) ([]*series, error) {
	wb, err := os.ReadFile(windowsFile)
	if err != nil {
		return nil, err
	}
	var wins map[string][][2]string
	if err := json.Unmarshal(wb, &wins); err != nil {
		return nil, fmt.Errorf("%s: %w", windowsFile, err)
	}
	files, err := filepath.Glob(filepath.Join(dataDir, "*", "*.csv"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CSV files under %s/*/", dataDir)
	}
	var out []*series
	for _, f := range files {
		key := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		if len(only) > 0 && !slices.Contains(only, key) {
			continue
		}
		ws, ok := wins[key]
		if !ok {
			return nil, fmt.Errorf("%s has no entry in %s", key, windowsFile)
		}
		s, err := readSeries(f)
		if err != nil {
			return nil, err
		}
		s.key = key
		for _, w := range ws {
			a, err1 := anomalycli.ParseTimestamp(w[0])
			b, err2 := anomalycli.ParseTimestamp(w[1])
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("%s window %v: %w", key, w, err)
			}
			s.windows = append(s.windows, [2]time.Time{a, b})
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no file selected")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, nil
}

func readSeries(path string) (*series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	if _, err := r.Read(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &series{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		t, err := anomalycli.ParseTimestamp(rec[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		s.t, s.v = append(s.t, t), append(s.v, v)
	}
	if len(s.t) < 3 {
		return nil, fmt.Errorf("%s: too few rows", path)
	}
	return s, nil
}

// writeTable prints the comparison as Markdown.
func (r *result) writeTable(w io.Writer) {
	fmt.Fprintf(w, "NAB replay: %d series, %d points, the three configurations replayed in %s.\n\n", r.files, r.points, r.elapsed.Round(time.Second))
	fmt.Fprintln(w, "| configuration | pages | true positives | false positives | precision | windows detected | recall | suppressed | grouped |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	row := func(name string, s *score) {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.3f | %d / %d | %.3f | %d | %d |\n", name, s.Pages, s.TP, s.FP, s.precision(), s.Detected, s.Windows, s.recall(), s.Suppressed, s.Grouped)
	}
	row(fmt.Sprintf("static threshold (mean ± %g σ of the first 15%%)", r.staticSigma), r.static)
	row("alertd anomaly scoring, no suppression", r.scored)
	row("alertd pipeline: anomaly scoring + suppression (pipeline.yml)", r.piped)
	fmt.Fprintf(w, "\nFalse pages: %.1f× fewer; recall %.3f vs %.3f.\n", ratio(r.static.FP, r.piped.FP), r.piped.recall(), r.static.recall())
	if len(r.piped.suppressedByStageByKey) > 0 {
		var parts []string
		for k, v := range r.piped.suppressedByStageByKey {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "Pipeline firings suppressed, by stage: %s.\n", strings.Join(parts, ", "))
	}
}

// writeDetails prints pages, true and false positives per file.
func (r *result) writeDetails(w io.Writer) {
	keys := make([]string, 0, len(r.static.perFile))
	for k := range r.static.perFile {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "| file | static pages/TP/FP | scoring pages/TP/FP | pipeline pages/TP/FP |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, k := range keys {
		a, b, c := r.static.perFile[k], r.scored.perFile[k], r.piped.perFile[k]
		fmt.Fprintf(w, "| %s | %d/%d/%d | %d/%d/%d | %d/%d/%d |\n", k, a[0], a[1], a[2], b[0], b[1], b[2], c[0], c[1], c[2])
	}
	fmt.Fprintln(w)
}
