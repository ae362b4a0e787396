package alertd

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
)

// The rule-evaluation benchmark: 1,000 alerting rules over 10,000 series,
// evaluated on the same data by Prometheus's own rule manager (its alerts
// going to Prometheus's notifier queue, as in a Prometheus server) and by
// alertd (its alerts going through alertd's pipeline into its notifier). One
// op is one evaluation of all 1,000 rules. scripts/bench-rules.sh runs both
// in one go and prints the ratio.

const (
	benchModels    = 1000 // one rule per model
	benchInstances = 10   // series per model: 10,000 in all
	benchGroups    = 10
	benchStep      = 15 * time.Second
	benchHistory   = 2 * time.Hour
)

var benchStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// writeBenchData fills a TSDB at dir with benchModels × benchInstances
// counters scraped every 15s for two hours. Odd models have a high error
// rate, so half the rules fire, ten alerts each.
func writeBenchData(tb testing.TB, dir string) {
	tb.Helper()
	db, err := tsdb.Open(dir, slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
	require.NoError(tb, err)
	defer db.Close()
	series := make([]labels.Labels, 0, benchModels*benchInstances)
	for m := range benchModels {
		for i := range benchInstances {
			series = append(series, labels.FromStrings("__name__", "modelmon_prediction_errors_total",
				"job", "modelmon", "model", fmt.Sprintf("m%04d", m), "instance", fmt.Sprintf("10.0.%d.%d:9108", m/250, i)))
		}
	}
	ctx := context.Background()
	for ts := benchStart; !ts.After(benchStart.Add(benchHistory)); ts = ts.Add(benchStep) {
		app := db.AppenderV2(ctx)
		n := ts.Sub(benchStart).Seconds()
		for k, ls := range series {
			rate := 0.01
			if (k/benchInstances)%2 == 1 {
				rate = 2
			}
			_, err := app.Append(0, ls, 0, ts.UnixMilli(), rate*n, nil, nil, storage.AppendV2Options{})
			require.NoError(tb, err)
		}
		require.NoError(tb, app.Commit())
	}
}

// writeBenchRules writes the 1,000 rules in benchGroups groups.
func writeBenchRules(tb testing.TB, path string) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("groups:\n")
	for g := range benchGroups {
		fmt.Fprintf(&b, "  - name: models-%d\n    interval: 15s\n    rules:\n", g)
		for m := g; m < benchModels; m += benchGroups {
			fmt.Fprintf(&b, `      - alert: ModelErrors%04d
        expr: rate(modelmon_prediction_errors_total{model="m%04d"}[5m]) > 1
        for: 1m
        labels: {severity: warning}
        annotations:
          summary: '{{ $labels.instance }}: {{ $value | humanize }} errors/s'
`, m, m)
		}
	}
	require.NoError(tb, os.WriteFile(path, []byte(b.String()), 0o600))
}

// benchGroupsEval evaluates every group at each of the benchmark's steps.
func benchEval(b *testing.B, groups []*promrules.Group) {
	ctx := context.Background()
	// Start where five minutes of rate are available, and restore state as
	// a group's first iteration does.
	ts := benchStart.Add(10 * time.Minute)
	for _, g := range groups {
		g.Eval(ctx, ts)
		g.RestoreForState(ts)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ts = benchStart.Add(10*time.Minute + time.Duration(i+1)*benchStep)
		if ts.After(benchStart.Add(benchHistory)) {
			b.Fatalf("ran past the data: use -benchtime=%dx or less", int(benchHistory/benchStep)-41)
		}
		for _, g := range groups {
			g.Eval(ctx, ts)
		}
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MiB")
	firing := 0
	for _, g := range groups {
		for _, r := range g.AlertingRules() {
			firing += r.ActiveAlertsCount()
		}
	}
	b.ReportMetric(float64(firing), "alerts")
}

func BenchmarkRuleEvaluation(b *testing.B) {
	dir := b.TempDir()
	ruleFile := filepath.Join(dir, "bench.rules.yml")
	writeBenchRules(b, ruleFile)
	ext, _ := url.Parse("http://alertd.example:9109")

	b.Run("prometheus", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "tsdb")
		writeBenchData(b, path)
		db, err := tsdb.Open(path, slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
		require.NoError(b, err)
		defer db.Close()
		engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute})
		nm := notifier.NewManager(&notifier.Options{QueueCapacity: 10000, Registerer: prometheus.NewRegistry()}, model.UTF8Validation, slog.New(slog.DiscardHandler))
		defer nm.Stop()
		m := promrules.NewManager(&promrules.ManagerOptions{
			NameValidationScheme: model.UTF8Validation,
			ExternalURL:          ext,
			QueryFunc:            promrules.EngineQueryFunc(engine, db),
			NotifyFunc:           promrules.SendAlerts(nm, ext.String()),
			Context:              context.Background(),
			AppendableV2:         db,
			Queryable:            db,
			Logger:               slog.New(slog.DiscardHandler),
			Registerer:           prometheus.NewRegistry(),
			OutageTolerance:      time.Hour,
			ForGracePeriod:       10 * time.Minute,
			ResendDelay:          time.Minute,
		})
		groups, errs := m.LoadGroups(15*time.Second, labels.EmptyLabels(), ext.String(), nil, false, ruleFile)
		require.Empty(b, errs)
		benchEval(b, sortedGroups(groups))
	})

	b.Run("alertd", func(b *testing.B) {
		dir := b.TempDir()
		writeBenchData(b, filepath.Join(dir, "tsdb"))
		cfg := filepath.Join(dir, "alertd.yml")
		require.NoError(b, os.WriteFile(cfg, []byte(`
global: {evaluation_interval: 15s}
route: {receiver: team, group_by: [alertname], group_wait: 1m}
receivers: [{name: team}]
`), 0o600))
		a, err := New(Options{ConfigFile: cfg, StoragePath: dir, ExternalURL: ext})
		require.NoError(b, err)
		defer a.Stop()
		// Start only the notifier; the groups, loaded by alertd's rule
		// manager (its storage, query function and pipeline), are stepped
		// by hand.
		a.notify.Run()
		groups, errs := a.rules.LoadGroups(15*time.Second, labels.EmptyLabels(), ext.String(), nil, false, ruleFile)
		require.Empty(b, errs)
		benchEval(b, sortedGroups(groups))
	})
}

func sortedGroups(m map[string]*promrules.Group) []*promrules.Group {
	out := make([]*promrules.Group, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	return out
}
