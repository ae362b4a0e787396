package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	promqlengine "github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/driftcli"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// panelExpr returns the query of the panel titled title in dashboard whose
// expression holds has, its variables replaced by vars.
func panelExpr(t *testing.T, queries []dashQuery, vars map[string]string, dashboard, title, has string) string {
	t.Helper()
	var expr string
	for _, q := range queries {
		if q.dashboard == dashboard && strings.HasPrefix(q.where, "panel \""+title+"\" ") && strings.Contains(q.expr, has) {
			require.Empty(t, expr, "%s: two queries with %s", title, has)
			expr = q.expr
		}
	}
	require.NotEmpty(t, expr, "no query with %s in panel %q", has, title)
	return withVariables(t, expr, vars)
}

// withVariables returns expr, a dashboard's query, with its variables
// replaced by vars.
func withVariables(t *testing.T, expr string, vars map[string]string) string {
	t.Helper()
	return variableRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := variableRE.FindStringSubmatch(m)
		v, ok := vars[sub[1]+sub[2]]
		require.True(t, ok, "%s: no value for %s", expr, m)
		return v
	})
}

// tablePanel is what a table panel's JSON says of its columns and order.
type tablePanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Transformations []struct {
		ID      string `json:"id"`
		Options struct {
			RenameByName map[string]string `json:"renameByName"`
		} `json:"options"`
	} `json:"transformations"`
	Options struct {
		SortBy []struct {
			DisplayName string `json:"displayName"`
			Desc        bool   `json:"desc"`
		} `json:"sortBy"`
	} `json:"options"`
}

// findTable returns the table panel titled title in dashboard, from the JSON
// the builders produce.
func findTable(t *testing.T, dashboard, title string) tablePanel {
	t.Helper()
	files, err := Build(DefaultOptions())
	require.NoError(t, err)
	for _, f := range files {
		if f.Name != dashboard {
			continue
		}
		b, err := Marshal(f.Dashboard)
		require.NoError(t, err)
		var d struct {
			Panels []tablePanel `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(b, &d))
		for _, p := range d.Panels {
			if p.Title == title {
				return p
			}
		}
	}
	t.Fatalf("no panel %q in %s", title, dashboard)
	return tablePanel{}
}

// column returns the query of the table's column named name (the value
// column "Value #<refId>" its organize transformation renames so), its
// variables replaced by vars.
func (p tablePanel) column(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	for _, tr := range p.Transformations {
		for from, to := range tr.Options.RenameByName {
			if to != name {
				continue
			}
			for _, tg := range p.Targets {
				if from == "Value #"+tg.RefID {
					return withVariables(t, tg.Expr, vars)
				}
			}
		}
	}
	t.Fatalf("no column %q in panel %q", name, p.Title)
	return ""
}

// mixedVariables are the values the dashboards' variables take in
// TestMixedModelPanelsMatchRules: model mix, every version, and windows
// longer than the test.
var mixedVariables = map[string]string{
	"namespace": ".*", "job": "modelmon", "model": "mix", "version": ".*",
	"__range": "1h", "__rate_interval": "1h",
}

// A model that predicts both numbers and classes: the panels that compute
// its MAE over the time range and the shadow's gains from the raw counters
// divide as the recording rules do, by the numeric pairs for errors and by
// the class pairs for accuracy, not by every label joined. Under a real
// Prometheus scraping a real sidecar, with the shipped rules loaded, mix
// answers each request with four numbers (scikit-learn's r2_score example:
// absolute errors 0.5, 0.5, 0 and 1) and two classes (one right), and its
// shadow with numbers off by 0, 0.5, 0 and 0 and both classes right. So
// MAE 0.5 (over every label joined, 1/3), the shadow's MAE gain (2 − 0.5)
// / 4 = 0.375 (0.25) and its accuracy gain (2 − 1) / 2 = 0.5 (1/6).
//
// Its inputs all fall in one segment value, and its classes are counted by
// it (segment_classes): the segment table's count beside the accuracy is
// the class labels it is over, a third of the labels joined, and the
// numeric labels beside MAE the other two thirds. By class, "yes" is
// predicted once a request, right, and labelled twice (precision 1, recall
// 0.5, F1 2/3); "no" is predicted once, wrong, and never labelled
// (precision 0, no recall, F1 0).
func TestMixedModelPanelsMatchRules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the exporter under Prometheus")
	}
	prometheustest.Binary(t)
	bin, err := buildBinaries()
	require.NoError(t, err)

	answer := func(body string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(s.Close)
		return s
	}
	upstream := answer(`{"predictions":[2.5, 0.0, 2, 8, "yes", "no"]}`)
	shadow := answer(`{"predictions":[3, 0.0, 2, 7, "yes", "yes"]}`)
	proxy, web := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: mix
    feature_names: [x]
    segments: [{feature: x, buckets: [10]}]
    segment_classes: 2
`), 0o644))
	start(t, filepath.Join(bin, "exporter"), web, "--config.file="+cfg,
		"--proxy.upstream="+upstream.URL, "--proxy.listen-address="+proxy, "--web.listen-address="+web,
		"--labels.enabled", "--shadow.upstream="+shadow.URL, "--shadow.sample-ratio=1")

	// Each batch is one request of six predictions, its shadow's answer,
	// and their labels. The counters' increases over a window are
	// extrapolated alike when every one of them has its first sample at
	// the same scrape and grows by the same share of it: so the first
	// batch is counted before Prometheus starts, and the second, the
	// same, after it has scraped the first.
	batch := func(id string) {
		t.Helper()
		require.Equal(t, 200, post(t, "http://"+proxy+"/v1/models/mix:predict", "application/json",
			`{"instances":[[1],[2],[3],[4],[5],[6]]}`, "X-Request-Id", id))
		require.Eventually(t, func() bool {
			return scrape(t, web)[collector.ShadowPendingPredictions].GetMetric()[0].GetGauge().GetValue() == 6
		}, 10*time.Second, 10*time.Millisecond, "the shadow did not answer")
		var labels []string
		for i, l := range []string{"3", "-0.5", "2", "7", `"yes"`, `"yes"`} {
			labels = append(labels, `{"id":"`+id+`/`+strconv.Itoa(i)+`","label":`+l+`}`)
		}
		require.Equal(t, 200, post(t, "http://"+web+"/v1/labels", "application/json", "["+strings.Join(labels, ",")+"]"))
		require.Eventually(t, func() bool {
			return scrape(t, web)[collector.ShadowPendingPredictions].GetMetric()[0].GetGauge().GetValue() == 0
		}, 10*time.Second, 10*time.Millisecond, "the labels were not joined")
	}
	batch("a")
	fams := scrape(t, web)
	value := func(name string) float64 {
		for _, m := range fams[name].GetMetric() {
			return m.GetCounter().GetValue()
		}
		return -1
	}
	require.Equal(t, 6.0, value(collector.LabelsMatchedTotal))
	require.Equal(t, 4.0, value(collector.RegressionOutcomesTotal))
	require.Equal(t, 6.0, value(collector.ShadowLabelsMatchedTotal))
	require.Equal(t, 4.0, value(collector.ShadowRegressionOutcomesTotal))

	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{web},
		RuleFiles: []string{"../deploy/prometheus/quality.rules.yml", "../rules/shadow.rules.yml"}})
	prom.WaitFor(t, `sum(modelmon_labels_matched_total{model="mix"})`, 6, 30*time.Second)
	batch("b")
	prom.WaitFor(t, `sum(modelmon_shadow_labels_matched_total{model="mix"})`, 12, 30*time.Second)
	prom.WaitFor(t, `sum(modelmon_labels_matched_total{model="mix"})`, 12, 30*time.Second)

	// The rules, once evaluated on the second batch.
	rules := map[string]float64{
		`modelmon:mae:total{model="mix"}`:                               0.5,
		`model:modelmon_shadow_mae_gain:ratio_rate1d{model="mix"}`:      0.375,
		`model:modelmon_shadow_accuracy_gain:ratio_rate1d{model="mix"}`: 0.5,
	}
	for expr, want := range rules {
		require.Eventually(t, func() bool {
			v, err := prom.QueryScalar(expr)
			return err == nil && v > want-1e-9 && v < want+1e-9
		}, 30*time.Second, 200*time.Millisecond, "%s: want %v", expr, want)
	}

	queries := dashboardQueries(t)
	panel := func(dashboard, title, has string) float64 {
		t.Helper()
		v, err := prom.QueryScalar(panelExpr(t, queries, mixedVariables, dashboard, title, has))
		require.NoError(t, err)
		return v
	}
	require.InDelta(t, 0.5, panel("model-quality.json", "Mean absolute error", "[$__range]"), 1e-9, "MAE over the time range")
	require.InDelta(t, math.Sqrt(1.5/4), panel("model-quality.json", "Root mean squared error", "[$__range]"), 1e-9, "RMSE over the time range")
	require.InDelta(t, 0.375, panel("model-overview.json", "Shadow against labels", collector.ShadowAbsoluteErrorTotal), 1e-9, "the shadow's MAE gain")
	require.InDelta(t, 0.5, panel("model-overview.json", "Shadow against labels", collector.ShadowCorrectTotal), 1e-9, "the shadow's accuracy gain")

	// The tables by segment, each column by its name. Counts over the hour
	// are extrapolated, alike for counters scraped together: they are
	// compared as ratios, to the labels joined in the segment value.
	bySegment := findTable(t, "model-quality.json", "Quality by segment (1h)")
	byClass := findTable(t, "model-quality.json", "Classes by segment (1h)")
	require.Len(t, byClass.Options.SortBy, 1)
	require.Equal(t, "F1", byClass.Options.SortBy[0].DisplayName, "worst F1 first")
	require.False(t, byClass.Options.SortBy[0].Desc, "worst F1 first")
	// values queries a table's columns, or ratios of them, by class (""
	// for none), to 9 places; nil on an error. Under require.Eventually,
	// which runs it in another goroutine: it must not fail the test.
	values := func(expr string) map[string]float64 {
		v, err := prom.Query(expr)
		if err != nil {
			return nil
		}
		out := map[string]float64{}
		for _, s := range v {
			out[s.Metric["segment_value"]+" "+s.Metric["class"]] = math.Round(s.Value*1e9) / 1e9
		}
		return out
	}
	perLabel := func(column string) string {
		return "(" + bySegment.column(t, column, mixedVariables) + `) / on (model, segment, segment_value) modelmon:segment_labels:increase1h{model="mix"}`
	}
	col := func(name string) string { return byClass.column(t, name, mixedVariables) }
	columns := map[string]string{
		"class labels per label joined":   perLabel("class labels"),
		"numeric labels per label joined": perLabel("numeric labels"),
		"accuracy":                        bySegment.column(t, "accuracy", mixedVariables),
		"precision":                       col("precision"),
		"recall":                          col("recall"),
		"F1":                              col("F1"),
		"labels per prediction":           "(" + col("labels") + ") / on (model, segment, segment_value, class) (" + col("predictions") + ")",
	}
	const v = "(-inf,10] "
	want := map[string]map[string]float64{
		"class labels per label joined":   {v: 0.333333333},
		"numeric labels per label joined": {v: 0.666666667},
		"accuracy":                        {v: 0.5},
		"precision":                       {v + "yes": 1, v + "no": 0},
		"recall":                          {v + "yes": 0.5},
		"F1":                              {v + "yes": 0.666666667, v + "no": 0},
		"labels per prediction":           {v + "yes": 2, v + "no": 0},
	}
	var got map[string]map[string]float64
	require.Eventually(t, func() bool {
		got = map[string]map[string]float64{}
		for name, expr := range columns {
			got[name] = values(expr)
		}
		return reflect.DeepEqual(want, got)
	}, 30*time.Second, 200*time.Millisecond, "the tables by segment: want %v, last got %v", want, &got)
}

// The same panels through a rolling upgrade, as the rules take it
// (rules/quality.test.yml, rules/shadow.test.yml): a replica whose sidecar
// is from before the counters of numeric pairs has its labels joined in
// their stead, and so has one upgraded in place within the window. roll
// predicts numbers, on an old and a new replica, each joining 4 labels a
// minute with absolute errors summing to 5 (MAE 1.25), and with the shadow
// 4 more whose errors sum to 2 for the model and 1 for the shadow (MAE
// gain 0.25); inplace is one replica upgraded in place at 30m. rollclf
// predicts classes: each replica's shadow gets 2 of 4 labels a minute
// right and the model 1 (accuracy gain 0.25). Divided by the new
// replica's pairs alone, each read twice that.
func TestPanelsThroughRollingUpgrade(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
load 1m
  modelmon_model_info{job="modelmon",instance="old",model="roll",version="v1"} 1x60
  modelmon_model_info{job="modelmon",instance="new",model="roll",version="v2"} 1x60
  modelmon_model_info{job="modelmon",instance="p",model="inplace",version="v2"} 1x60
  modelmon_model_info{job="modelmon",instance="old",model="rollclf",version="v1"} 1x60
  modelmon_model_info{job="modelmon",instance="new",model="rollclf",version="v2"} 1x60
  modelmon_labels_matched_total{job="modelmon",instance="old",model="roll"} 0+4x60
  modelmon_prediction_absolute_error_total{job="modelmon",instance="old",model="roll"} 0+5x60
  modelmon_prediction_squared_error_total{job="modelmon",instance="old",model="roll"} 0+7x60
  modelmon_labels_matched_total{job="modelmon",instance="new",model="roll"} 0+4x60
  modelmon_prediction_regression_outcomes_total{job="modelmon",instance="new",model="roll"} 0+4x60
  modelmon_prediction_absolute_error_total{job="modelmon",instance="new",model="roll"} 0+5x60
  modelmon_prediction_squared_error_total{job="modelmon",instance="new",model="roll"} 0+7x60
  modelmon_labels_matched_total{job="modelmon",instance="p",model="inplace"} 0+4x30 4+4x29
  modelmon_prediction_regression_outcomes_total{job="modelmon",instance="p",model="inplace"} _x31 4+4x29
  modelmon_prediction_absolute_error_total{job="modelmon",instance="p",model="inplace"} 0+5x30 5+5x29
  modelmon_prediction_squared_error_total{job="modelmon",instance="p",model="inplace"} 0+7x30 7+7x29
  modelmon_shadow_labels_matched_total{job="modelmon",instance="old",model="roll"} 0+4x60
  modelmon_shadow_prediction_absolute_error_total{job="modelmon",instance="old",model="roll",source="model"} 0+2x60
  modelmon_shadow_prediction_absolute_error_total{job="modelmon",instance="old",model="roll",source="shadow"} 0+1x60
  modelmon_shadow_labels_matched_total{job="modelmon",instance="new",model="roll"} 0+4x60
  modelmon_shadow_prediction_regression_outcomes_total{job="modelmon",instance="new",model="roll"} 0+4x60
  modelmon_shadow_prediction_absolute_error_total{job="modelmon",instance="new",model="roll",source="model"} 0+2x60
  modelmon_shadow_prediction_absolute_error_total{job="modelmon",instance="new",model="roll",source="shadow"} 0+1x60
  modelmon_shadow_labels_matched_total{job="modelmon",instance="old",model="rollclf"} 0+4x60
  modelmon_shadow_prediction_correct_total{job="modelmon",instance="old",model="rollclf",source="model"} 0+1x60
  modelmon_shadow_prediction_correct_total{job="modelmon",instance="old",model="rollclf",source="shadow"} 0+2x60
  modelmon_shadow_labels_matched_total{job="modelmon",instance="new",model="rollclf"} 0+4x60
  modelmon_shadow_prediction_regression_outcomes_total{job="modelmon",instance="new",model="rollclf"} 0x60
  modelmon_shadow_prediction_correct_total{job="modelmon",instance="new",model="rollclf",source="model"} 0+1x60
  modelmon_shadow_prediction_correct_total{job="modelmon",instance="new",model="rollclf",source="shadow"} 0+2x60
`)
	engine := promqlengine.NewEngine(promqlengine.EngineOpts{MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	vars := map[string]string{"namespace": ".*", "job": "modelmon", "model": ".*", "version": ".*", "__range": "1h", "__rate_interval": "1h"}
	queries := dashboardQueries(t)
	panel := func(dashboard, title, has string) map[string]float64 {
		t.Helper()
		q, err := engine.NewInstantQuery(context.Background(), st, nil, panelExpr(t, queries, vars, dashboard, title, has), time.Unix(0, 0).Add(time.Hour))
		require.NoError(t, err)
		res := q.Exec(context.Background())
		require.NoError(t, res.Err)
		v, err := res.Vector()
		require.NoError(t, err)
		out := map[string]float64{}
		for _, s := range v {
			out[s.Metric.Get("model")] = s.F
		}
		return out
	}
	// To 9 places, so that a failure shows every value.
	round := func(v float64) float64 { return math.Round(v*1e9) / 1e9 }
	mae := panel("model-quality.json", "Mean absolute error", "[$__range]")
	require.Equal(t, map[string]float64{
		"MAE, old and new replica":          1.25,
		"MAE, upgraded in place":            1.25,
		"RMSE, old and new replica":         round(math.Sqrt(1.75)),
		"shadow MAE gain, old and new":      0.25,
		"shadow accuracy gain, old and new": 0.25,
	}, map[string]float64{
		"MAE, old and new replica":          round(mae["roll"]),
		"MAE, upgraded in place":            round(mae["inplace"]),
		"RMSE, old and new replica":         round(panel("model-quality.json", "Root mean squared error", "[$__range]")["roll"]),
		"shadow MAE gain, old and new":      round(panel("model-overview.json", "Shadow against labels", collector.ShadowAbsoluteErrorTotal)["roll"]),
		"shadow accuracy gain, old and new": round(panel("model-overview.json", "Shadow against labels", collector.ShadowCorrectTotal)["rollclf"]),
	})
}

// The table of absolute error quantiles by segment value, over the last
// hour: from the native histograms of a model without error_buckets
// (plain), from the classic buckets of one with them where Prometheus keeps
// no native histograms (price), each value a row. price's app has 4 errors
// a minute, 3 of at most 1 and one in (1, 5]: p50 2/3, p90 1 + 4·0.6 and
// p99 1 + 4·0.96 by linear interpolation; its web 2, one in (1, 5] and one
// past 5: p50 5, and p90 and p99 the last finite bound, 5. plain's app has
// 2 in (0.5, 1] and 2 in (1, 2] a minute: p50 1, the boundary.
func TestSegmentErrorQuantilesTable(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
load 1m
  modelmon_model_info{job="modelmon",instance="a",model="price",version="v1"} 1x60
  modelmon_model_info{job="modelmon",instance="a",model="plain",version="v1"} 1x60
  modelmon_segment_prediction_error_magnitude_bucket{job="modelmon",instance="a",model="price",segment="device",segment_value="app",le="1"} 0+3x60
  modelmon_segment_prediction_error_magnitude_bucket{job="modelmon",instance="a",model="price",segment="device",segment_value="app",le="5"} 0+4x60
  modelmon_segment_prediction_error_magnitude_bucket{job="modelmon",instance="a",model="price",segment="device",segment_value="app",le="+Inf"} 0+4x60
  modelmon_segment_prediction_error_magnitude_bucket{job="modelmon",instance="a",model="price",segment="device",segment_value="web",le="1"} 0x60
  modelmon_segment_prediction_error_magnitude_bucket{job="modelmon",instance="a",model="price",segment="device",segment_value="web",le="5"} 0+1x60
  modelmon_segment_prediction_error_magnitude_bucket{job="modelmon",instance="a",model="price",segment="device",segment_value="web",le="+Inf"} 0+2x60
  modelmon_segment_prediction_error_magnitude{job="modelmon",instance="a",model="plain",segment="device",segment_value="app"} {{schema:0 count:0 sum:0}}+{{schema:0 count:4 sum:5 buckets:[2 2]}}x60
`)
	engine := promqlengine.NewEngine(promqlengine.EngineOpts{MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	vars := map[string]string{"namespace": ".*", "job": "modelmon", "model": ".*", "version": ".*"}
	table := findTable(t, "model-quality.json", "Absolute error quantiles by segment (1h)")
	require.Len(t, table.Options.SortBy, 1)
	require.Equal(t, "p90", table.Options.SortBy[0].DisplayName, "largest p90 first")
	require.True(t, table.Options.SortBy[0].Desc, "largest p90 first")
	got := map[string]float64{}
	for _, column := range []string{"p50", "p90", "p99"} {
		q, err := engine.NewInstantQuery(context.Background(), st, nil, table.column(t, column, vars), time.Unix(0, 0).Add(time.Hour))
		require.NoError(t, err)
		res := q.Exec(context.Background())
		require.NoError(t, res.Err)
		v, err := res.Vector()
		require.NoError(t, err)
		for _, s := range v {
			require.Equal(t, "device", s.Metric.Get("segment"))
			got[s.Metric.Get("model")+" "+s.Metric.Get("segment_value")+" "+column] = math.Round(s.F*1e9) / 1e9
		}
	}
	require.Equal(t, map[string]float64{
		"price app p50": 0.666666667, "price app p90": 3.4, "price app p99": 4.84,
		"price web p50": 5, "price web p90": 5, "price web p99": 5,
		"plain app p50": 1, "plain app p90": got["plain app p90"], "plain app p99": got["plain app p99"],
	}, got)
	// plain's tail is in (1, 2].
	for _, c := range []string{"p90", "p99"} {
		require.Greater(t, got["plain app "+c], 1.0, c)
		require.LessOrEqual(t, got["plain app "+c], 2.0, c)
	}
}

// evalRecordingRules evaluates the recording rules of file at ts, in the
// file's order, and stores what each records at ts, as Prometheus's rule
// manager does: each rule sees what the rules before it recorded.
func evalRecordingRules(t *testing.T, engine *promqlengine.Engine, st storage.Storage, file string, ts time.Time) {
	t.Helper()
	rgs, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	require.Empty(t, errs, file)
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Record == "" {
				continue
			}
			v := instantVector(t, engine, st, r.Expr, ts)
			app := st.Appender(context.Background())
			for _, s := range v {
				b := labels.NewBuilder(s.Metric)
				b.Set(model.MetricNameLabel, r.Record)
				_, err := app.Append(0, b.Labels(), ts.UnixMilli(), s.F)
				require.NoError(t, err, r.Record)
			}
			require.NoError(t, app.Commit(), r.Record)
		}
	}
}

// instantVector evaluates expr at ts.
func instantVector(t *testing.T, engine *promqlengine.Engine, st storage.Queryable, expr string, ts time.Time) promqlengine.Vector {
	t.Helper()
	q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, ts)
	require.NoError(t, err, expr)
	res := q.Exec(context.Background())
	require.NoError(t, res.Err, expr)
	v, err := res.Vector()
	require.NoError(t, err, expr)
	return v
}

// The accuracy estimated without labels leaves out the confidence bins
// with fewer than min_samples labels in the last day, as
// ModelEstimatedAccuracyLow does, so that the panel shows the alert's
// value. Over a day of the sidecars' counters and the shipped rules, each
// model has 19 predictions a minute in the top bin, whose label a minute
// is right 9 times in 10. mixlate has 1 more a minute in the bottom bin,
// whose one label in the day was wrong: modelmon:estimated_accuracy:1h
// gives its accuracy, 0, to those predictions, (19·0.9 + 1·0)/20 = 0.855,
// while the panel, as the alert, estimates 0.9 over the top bin, 95 % of
// the predictions, as for steady, which has no thin bin. thin has only
// the bottom bin: no estimate, over none of its predictions. With
// min_samples 1, every bin a label reached counts, as in the rule.
func TestEstimatedAccuracyLeavesThinBinsOut(t *testing.T) {
	var series strings.Builder
	add := func(metric, model, bin, values string) {
		fmt.Fprintf(&series, "  %s{job=\"modelmon\",instance=\"a\",model=%q,bins=\"10\",bin=%q} %s\n", metric, model, bin, values)
	}
	// Counters over 1,500 minutes, each adding per a minute.
	counter := func(per string) string { return "0+" + per + "x1500" }
	for _, m := range []string{"mixlate", "steady", "thin"} {
		fmt.Fprintf(&series, "  %s{job=\"modelmon\",instance=\"a\",model=%q,version=\"v1\"} 1x1500\n", collector.ModelInfoMetric, m)
		if m != "thin" {
			add(collector.PredictionConfidenceBinTotal, m, "9", counter("19"))
			add(collector.ConfidenceOutcomesTotal, m, "9", counter("1"))
			add(collector.ConfidenceCorrectTotal, m, "9", counter("0.9"))
		}
		if m != "steady" {
			add(collector.PredictionConfidenceBinTotal, m, "0", counter("1"))
			add(collector.ConfidenceOutcomesTotal, m, "0", "0x1000 1x500")
			add(collector.ConfidenceCorrectTotal, m, "0", "0x1500")
		}
	}
	st := promqltest.LoadedStorage(t, "load 1m\n"+series.String())
	engine := promqlengine.NewEngine(promqlengine.EngineOpts{MaxSamples: 1e7, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	ts := time.Unix(0, 0).Add(1500 * time.Minute)
	evalRecordingRules(t, engine, st, "../deploy/prometheus/quality.rules.yml", ts)

	// To 6 places, by model: the day's increases are extrapolated.
	byModel := func(expr string) map[string]float64 {
		t.Helper()
		out := map[string]float64{}
		for _, s := range instantVector(t, engine, st, expr, ts) {
			out[s.Metric.Get("model")] = math.Round(s.F*1e6) / 1e6
		}
		return out
	}
	queries := dashboardQueries(t)
	panel := func(minSamples, has string) map[string]float64 {
		t.Helper()
		vars := map[string]string{"namespace": ".*", "job": "modelmon", "model": ".*", "version": ".*", "min_samples": minSamples}
		return byModel(panelExpr(t, queries, vars, "model-quality.json", "Accuracy estimated without labels", has))
	}
	const estimate, coverage = "modelmon:calibration_accuracy:1d", "  0 * "
	require.Equal(t, map[string]float64{"mixlate": 0.855, "steady": 0.9, "thin": 0}, byModel("modelmon:estimated_accuracy:1h"), "the rule counts every bin")

	require.Equal(t, map[string]float64{"mixlate": 0.9, "steady": 0.9}, panel(defaultMinSamples, estimate), "the thin bin moved the estimate")
	require.Equal(t, map[string]float64{"mixlate": 0.95, "steady": 1, "thin": 0}, panel(defaultMinSamples, coverage))
	require.Equal(t, byModel("modelmon:estimated_accuracy:1h"), panel("1", estimate), "min_samples 1: every bin a label reached")
	require.Equal(t, byModel("modelmon:estimated_accuracy_coverage:1h"), panel("1", coverage), "min_samples 1: every bin a label reached")

	// The alert's value is the panel's with the model's min_samples, the
	// default.
	c, err := config.Load("models:\n  - name: mixlate\n    alerts: {min_estimated_accuracy: 0.99}\n")
	require.NoError(t, err)
	b, err := driftcli.QualityAlerts(c)
	require.NoError(t, err)
	var alerts rulefmt.RuleGroups
	require.NoError(t, yaml.Unmarshal(b, &alerts))
	require.Len(t, alerts.Groups, 1)
	require.Len(t, alerts.Groups[0].Rules, 1)
	require.Equal(t, "ModelEstimatedAccuracyLow", alerts.Groups[0].Rules[0].Alert)
	require.Equal(t, map[string]float64{"mixlate": 0.9}, byModel(alerts.Groups[0].Rules[0].Expr), "the alert's value")
	require.Equal(t, strconv.Itoa(config.DefaultMinSamples), defaultMinSamples, "the min_samples variable's default")
}
