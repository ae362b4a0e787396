package alertd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// A series scraped by the embedded engine gets a spike: the anomaly
// detector's alertd_anomaly_score rises (in the TSDB and on /metrics), and an
// ordinary alerting rule on it fires and is notified.
func TestAnomalyDetectorSpike(t *testing.T) {
	t.Parallel()
	gauge := func(v float64) string {
		return fmt.Sprintf("# TYPE model_latency_seconds gauge\nmodel_latency_seconds{model=\"fraud\"} %g\n", v)
	}
	target := newExposition(t, gauge(0.1))
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["`+target.Addr+`"]
anomaly_detectors:
  - name: latency
    expr: model_latency_seconds
    interval: 1s
    min_history: 10
    history: 0s
    labels: {team: ml}
`), map[string]string{"rules.yml": `
groups:
  - name: anomaly
    rules:
      - alert: LatencyAnomaly
        expr: max_over_time(alertd_anomaly_score{detector="latency"}[5s]) > 0.9
        annotations:
          summary: 'latency of {{ $labels.model }} is anomalous (score {{ $value }})'
`}, nil)

	// A noisy baseline, one value a second, for the detector to learn.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				target.set(gauge(0.1 + 0.002*float64(i%5)))
			}
		}
	}()
	// min_history is 10 points: wait until the series has 15 (evaluations
	// before the first scrape score nothing).
	require.Eventually(t, func() bool {
		n, ok := queryValue(t, a, `count_over_time(alertd_anomaly_expected{detector="latency"}[1m])`)
		return ok && n >= 15
	}, 60*time.Second, 100*time.Millisecond, "the detector did not score 15 points")
	v, ok := queryValue(t, a, `alertd_anomaly_expected{detector="latency", model="fraud", team="ml", job="app"}`)
	require.True(t, ok)
	require.InDelta(t, 0.104, v, 0.005, "the detector learnt the baseline")
	score, ok := queryValue(t, a, `alertd_anomaly_score{detector="latency"}`)
	require.True(t, ok)
	require.Less(t, score, 0.9, "the baseline is not anomalous")
	require.Empty(t, h.matching("LatencyAnomaly", "firing"))

	close(stop)
	<-done
	target.set(gauge(5))
	p := h.wait(t, "LatencyAnomaly", "firing", 60*time.Second)
	require.Equal(t, "fraud", p.Alerts[0].Labels["model"])
	require.Equal(t, "latency", p.Alerts[0].Labels["detector"])
	score, ok = queryValue(t, a, `max_over_time(alertd_anomaly_score{detector="latency"}[1m])`)
	require.True(t, ok)
	require.Greater(t, score, 0.9)

	v, ok = metric(t, a.Registry(), "alertd_anomaly_score", "detector", "latency", "model", "fraud", "team", "ml", "job", "app", "instance", target.Addr)
	require.True(t, ok, "the score is on /metrics too")
	require.GreaterOrEqual(t, v, 0.0)
	n, _ := metric(t, a.Registry(), "alertd_anomaly_evaluations_total", "detector", "latency")
	require.Positive(t, n)
}

// queryValue evaluates a one-series instant query now on alertd's engine.
func queryValue(t *testing.T, a *testAlertd, q string) (float64, bool) {
	t.Helper()
	vec, err := a.query(t.Context(), q, time.Now())
	require.NoError(t, err)
	if len(vec) != 1 {
		return 0, false
	}
	return vec[0].F, true
}

// The runner replays the expression's history into new detectors, so its
// first evaluation already scores; a model's new version (from
// modelmon_model_info) resets the baselines of that model's series only.
func TestAnomalyRunnerReplayAndVersionReset(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			latency{model="a"} 0.1+0x120
			latency{model="b"} 0.2+0x120
			modelmon_model_info{model="a", version="v1"} 1x60
			modelmon_model_info{model="a", version="v2"} _x61 1x59
			modelmon_model_info{model="b", version="v1"} 1x120
	`)
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
	qr := func(ctx context.Context, q string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
		qry, err := engine.NewRangeQuery(ctx, st, nil, q, start, end, step)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Matrix()
	}
	hist := model.Duration(time.Hour)
	reset := true
	cfg := &alertconfig.AnomalyDetector{Name: "lat", Expr: "latency", Interval: model.Duration(time.Minute),
		Algorithm: "mad", MinHistory: 10, History: &hist, MaxSeries: 1, ResetOnNewVersion: &reset}
	reg := prometheus.NewRegistry()
	r := newAnomalyRunner(cfg, promrules.EngineQueryFunc(engine, st), qr, st, newAnomalyMetrics(reg), slog.New(slog.DiscardHandler))

	at := func(m int) time.Time { return time.Unix(0, 0).Add(time.Duration(m) * time.Minute) }
	require.NoError(t, r.eval(t.Context(), at(59)))
	require.Len(t, r.series, 1, "max_series caps the scored series")
	dropped, _ := metric(t, reg, "alertd_anomaly_series_dropped_total", "detector", "lat")
	require.Equal(t, 1.0, dropped)
	var a *anomalySeries
	for _, as := range r.series {
		a = as
	}
	require.Equal(t, "a", a.model)
	require.False(t, a.last.Learning, "an hour of replayed history is enough to score at once")
	require.Equal(t, labels.FromStrings("detector", "lat", "model", "a"), a.out)

	require.NoError(t, r.eval(t.Context(), at(60)))
	require.False(t, a.last.Learning)
	require.NoError(t, r.eval(t.Context(), at(62)))
	require.True(t, a.last.Learning, "model a changed version: its baseline starts over")
	resets, _ := metric(t, reg, "alertd_anomaly_resets_total", "detector", "lat")
	require.Equal(t, 1.0, resets)

	qry, err := engine.NewInstantQuery(t.Context(), st, nil, `alertd_anomaly_score{detector="lat", model="a"}`, at(62))
	require.NoError(t, err)
	res := qry.Exec(t.Context())
	require.NoError(t, res.Err)
	vec, err := res.Vector()
	require.NoError(t, err)
	require.Len(t, vec, 1, "scores are written to storage")
}

// A reload that removes an anomaly detector deletes its series of
// alertd_anomaly_evaluations_total and the rest; the detectors it keeps
// keep theirs. Added again, the detector starts at 0.
func TestAnomalyDetectorSeriesFollowReloads(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	detector := func(name, interval string) string {
		return "\n  - name: " + name + "\n    expr: vector(1)\n    interval: " + interval + "\n    history: 0s"
	}
	config := func(detectors ...string) string {
		return routes(h, nil, "\nanomaly_detectors:"+strings.Join(detectors, "")+"\n")
	}
	a := startAlertd(t, config(detector("kept", "1s"), detector("removed", "1s")), nil, nil)
	reload := func(detectors ...string) {
		t.Helper()
		writeFile(t, a.Dir, "alertd.yml", config(detectors...))
		code, body := post(t, a.URL+"/-/reload", "", "")
		require.Equal(t, http.StatusOK, code, body)
	}
	families := []string{"alertd_anomaly_evaluations_total", "alertd_anomaly_evaluation_failures_total",
		"alertd_anomaly_series_dropped_total", "alertd_anomaly_resets_total"}
	require.Eventually(t, func() bool {
		n, _ := metric(t, a.Registry(), "alertd_anomaly_evaluations_total", "detector", "removed")
		return n > 0
	}, 30*time.Second, 10*time.Millisecond, "the detector never evaluated")
	kept, _ := metric(t, a.Registry(), "alertd_anomaly_evaluations_total", "detector", "kept")

	reload(detector("kept", "1s"))
	for _, name := range families {
		_, ok := metric(t, a.Registry(), name, "detector", "removed")
		require.False(t, ok, "%s of the removed detector is still exposed", name)
		_, ok = metric(t, a.Registry(), name, "detector", "kept")
		require.True(t, ok, "%s of the kept detector is gone", name)
	}
	n, _ := metric(t, a.Registry(), "alertd_anomaly_evaluations_total", "detector", "kept")
	require.GreaterOrEqual(t, n, kept, "the kept detector's counter started over")

	// Added again, with an interval it does not reach in the test.
	reload(detector("kept", "1s"), detector("removed", "24h"))
	for _, name := range families {
		v, ok := metric(t, a.Registry(), name, "detector", "removed")
		require.True(t, ok, "%s of the detector added again is not exposed", name)
		require.Zero(t, v, "%s of the detector added again", name)
	}
}
