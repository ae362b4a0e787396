package alertd

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/modelmon/modelmon/anomaly"
	"github.com/modelmon/modelmon/internal/alertconfig"
)

// The series anomaly detectors write, per scored series.
const (
	anomalyScoreMetric    = "alertd_anomaly_score"
	anomalyExpectedMetric = "alertd_anomaly_expected"
	anomalyLowerMetric    = "alertd_anomaly_band_lower"
	anomalyUpperMetric    = "alertd_anomaly_band_upper"
)

// queryRangeFunc runs a range query; used to replay history into detectors.
type queryRangeFunc func(ctx context.Context, q string, start, end time.Time, step time.Duration) (promql.Matrix, error)

// instantQueryFunc runs an instant query.
type instantQueryFunc = promrules.QueryFunc

// anomalySeries is one scored series.
type anomalySeries struct {
	out      labels.Labels // the output labels: detector, the series' labels, extra labels
	model    string
	det      anomaly.Detector
	last     anomaly.Result
	lastSeen time.Time
	written  bool
	// missed counts the evaluations in a row the series was missing.
	missed int
}

// anomalyRunner evaluates one configured detector every interval.
type anomalyRunner struct {
	cfg        *alertconfig.AnomalyDetector
	query      instantQueryFunc
	queryRange queryRangeFunc
	app        storage.AppendableV2
	metrics    *anomalyMetrics
	logger     *slog.Logger

	mu       sync.Mutex
	series   map[uint64]*anomalySeries
	versions map[string]string
	replayed bool
	// lastErr is the error of the latest evaluation, at evaluatedAt.
	lastErr     error
	evaluatedAt time.Time
}

// anomalyMetrics are the detectors' own metrics.
type anomalyMetrics struct {
	evaluations *prometheus.CounterVec
	failures    *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	resets      *prometheus.CounterVec
}

func newAnomalyMetrics(reg prometheus.Registerer) *anomalyMetrics {
	m := &anomalyMetrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_anomaly_evaluations_total",
			Help: "The total number of evaluations of an anomaly detector's expression.",
		}, []string{"detector"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_anomaly_evaluation_failures_total",
			Help: "The total number of evaluations of an anomaly detector that failed (query or storage).",
		}, []string{"detector"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_anomaly_series_dropped_total",
			Help: "The total number of series samples not scored because the detector already scores max_series series.",
		}, []string{"detector"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_anomaly_resets_total",
			Help: "The total number of series whose history a detector forgot because their model changed version.",
		}, []string{"detector"}),
	}
	reg.MustRegister(m.evaluations, m.failures, m.dropped, m.resets)
	return m
}

// deleteDetector deletes the series of a detector a reload removed, as
// Prometheus wants the series of what is gone; its runner is stopped, so
// nothing counts there any more. A detector added again starts at 0.
func (m *anomalyMetrics) deleteDetector(name string) {
	for _, v := range []*prometheus.CounterVec{m.evaluations, m.failures, m.dropped, m.resets} {
		v.DeleteLabelValues(name)
	}
}

func newAnomalyRunner(cfg *alertconfig.AnomalyDetector, q instantQueryFunc, qr queryRangeFunc, app storage.AppendableV2, m *anomalyMetrics, logger *slog.Logger) *anomalyRunner {
	m.evaluations.WithLabelValues(cfg.Name)
	m.failures.WithLabelValues(cfg.Name)
	m.dropped.WithLabelValues(cfg.Name)
	m.resets.WithLabelValues(cfg.Name)
	return &anomalyRunner{
		cfg: cfg, query: q, queryRange: qr, app: app, metrics: m,
		logger:   logger.With("detector", cfg.Name),
		series:   map[uint64]*anomalySeries{},
		versions: map[string]string{},
	}
}

func (r *anomalyRunner) interval() time.Duration { return time.Duration(r.cfg.Interval) }

// run evaluates every interval, aligned to the interval like rule groups,
// until ctx is done.
func (r *anomalyRunner) run(ctx context.Context, now func() time.Time) {
	iv := r.interval()
	for {
		next := now().Truncate(iv).Add(iv)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := r.eval(ctx, next)
		if err != nil {
			r.metrics.failures.WithLabelValues(r.cfg.Name).Inc()
			r.logger.Warn("Anomaly detector evaluation failed", "err", err)
		}
		r.mu.Lock()
		r.lastErr, r.evaluatedAt = err, next
		r.mu.Unlock()
	}
}

// lastEval returns the time of the latest evaluation and its error (nil
// if it succeeded or none ran yet).
func (r *anomalyRunner) lastEval() (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evaluatedAt, r.lastErr
}

// eval scores the expression's series at ts and writes the results.
func (r *anomalyRunner) eval(ctx context.Context, ts time.Time) error {
	r.metrics.evaluations.WithLabelValues(r.cfg.Name).Inc()
	if !r.replayed {
		r.replayed = true
		if err := r.replay(ctx, ts); err != nil {
			r.logger.Warn("Couldn't replay history into the anomaly detector; it learns from now on", "err", err)
		}
	}
	if *r.cfg.ResetOnNewVersion {
		if err := r.checkVersions(ctx, ts); err != nil {
			r.logger.Debug("Couldn't read model versions", "err", err)
		}
	}
	vec, err := r.query(ctx, r.cfg.Expr, ts)
	if err != nil {
		return fmt.Errorf("query %q: %w", r.cfg.Expr, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range vec {
		if s.H != nil {
			continue
		}
		as := r.seriesFor(s.Metric)
		if as == nil {
			r.metrics.dropped.WithLabelValues(r.cfg.Name).Inc()
			continue
		}
		as.last = as.det.Update(ts, s.F)
		as.lastSeen = ts
	}
	return r.write(ctx, ts)
}

// seriesFor returns the state of the series with these labels, creating it
// if there is room. Called with r.mu held.
func (r *anomalyRunner) seriesFor(ls labels.Labels) *anomalySeries {
	ls = ls.DropReserved(func(n string) bool { return n == model.MetricNameLabel })
	h := ls.Hash()
	if as, ok := r.series[h]; ok {
		return as
	}
	if len(r.series) >= r.cfg.MaxSeries {
		return nil
	}
	det, err := anomaly.New(r.cfg.Algorithm, anomaly.Options{MinHistory: r.cfg.MinHistory})
	if err != nil {
		// The configuration was checked; an unknown algorithm is a bug.
		panic(err)
	}
	b := labels.NewBuilder(ls)
	for k, v := range r.cfg.Labels {
		b.Set(k, v)
	}
	b.Set("detector", r.cfg.Name)
	as := &anomalySeries{out: b.Labels(), model: ls.Get("model"), det: det}
	r.series[h] = as
	return as
}

// write appends the latest results, and stale markers for series that
// disappeared from the expression, to storage; series missing for longer
// than forgetAfter are forgotten. Called with r.mu held.
func (r *anomalyRunner) write(ctx context.Context, ts time.Time) error {
	app := r.app.AppenderV2(ctx)
	t := ts.UnixMilli()
	stale := math.Float64frombits(value.StaleNaN)
	for h, as := range r.series {
		gone := as.lastSeen.Before(ts)
		for _, m := range []struct {
			name string
			v    float64
		}{
			{anomalyScoreMetric, as.last.Score},
			{anomalyExpectedMetric, as.last.Expected},
			{anomalyLowerMetric, as.last.Lower},
			{anomalyUpperMetric, as.last.Upper},
		} {
			v := m.v
			switch {
			case gone:
				if !as.written {
					continue
				}
				v = stale
			case math.IsNaN(v):
				continue
			}
			ls := labels.NewBuilder(as.out).Set(model.MetricNameLabel, m.name).Labels()
			if _, err := app.Append(0, ls, 0, t, v, nil, nil, storage.AppendV2Options{}); err != nil {
				_ = app.Rollback()
				return fmt.Errorf("couldn't write %s: %w", m.name, err)
			}
		}
		switch {
		case !gone:
			as.written, as.missed = true, 0
		case as.missed >= forgetMissed && ts.Sub(as.lastSeen) > r.forgetAfter():
			delete(r.series, h)
		default:
			// Stale now, but a series that misses a few evaluations
			// (a failed scrape, a sparse series) keeps what it learnt.
			as.written = false
			as.missed++
		}
	}
	return app.Commit()
}

// forgetMissed is how many evaluations in a row a series must miss before
// its detector forgets it, and then only after forgetAfter.
const forgetMissed = 10

// forgetAfter is how long a series must be missing from the expression
// before its detector forgets it: the detector's history, as far back as
// it would replay on a restart, and at least 15m.
func (r *anomalyRunner) forgetAfter() time.Duration {
	return max(time.Duration(*r.cfg.History), 15*time.Minute)
}

// replay feeds the expression's history before ts into the detectors, so a
// restart (or a reload) does not start learning over.
func (r *anomalyRunner) replay(ctx context.Context, ts time.Time) error {
	hist := time.Duration(*r.cfg.History)
	if hist <= 0 || r.queryRange == nil {
		return nil
	}
	iv := r.interval()
	end := ts.Add(-iv)
	start := end.Add(-hist)
	m, err := r.queryRange(ctx, r.cfg.Expr, start, end, iv)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range m {
		as := r.seriesFor(s.Metric)
		if as == nil {
			continue
		}
		for _, p := range s.Floats {
			as.last = as.det.Update(time.UnixMilli(p.T), p.F)
			n++
		}
	}
	r.logger.Info("Replayed history into the anomaly detector", "series", len(r.series), "points", n, "from", start.UTC().Format(time.RFC3339))
	return nil
}

// checkVersions resets the series of models whose version changed since
// the last evaluation, per modelmon_model_info.
func (r *anomalyRunner) checkVersions(ctx context.Context, ts time.Time) error {
	vec, err := r.query(ctx, `max by (model, version) (modelmon_model_info)`, ts)
	if err != nil {
		return err
	}
	cur := map[string][]string{}
	for _, s := range vec {
		m := s.Metric.Get("model")
		cur[m] = append(cur[m], s.Metric.Get("version"))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for m, vs := range cur {
		slices.Sort(vs)
		v := strings.Join(vs, ",")
		old, seen := r.versions[m]
		r.versions[m] = v
		if !seen || old == v {
			continue
		}
		n := 0
		for _, as := range r.series {
			if as.model == m {
				as.det.Reset()
				n++
			}
		}
		if n > 0 {
			r.metrics.resets.WithLabelValues(r.cfg.Name).Add(float64(n))
			r.logger.Info("Model changed version, anomaly baselines start over", "model", m, "from", old, "to", v, "series", n)
		}
	}
	return nil
}

// anomalyCollector exposes the detectors' latest results on /metrics, so a
// Prometheus scraping alertd (as in remote mode) has them too. Series of
// different detectors carry different labels; a label a series lacks is
// exposed empty, which Prometheus treats as absent.
type anomalyCollector struct {
	runners func() []*anomalyRunner
}

// Describe implements prometheus.Collector; the collector is unchecked
// because its label names depend on the scored series.
func (c anomalyCollector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c anomalyCollector) Collect(ch chan<- prometheus.Metric) {
	type row struct {
		ls  labels.Labels
		res anomaly.Result
	}
	var rows []row
	names := map[string]bool{}
	for _, r := range c.runners() {
		r.mu.Lock()
		for _, as := range r.series {
			if !as.written {
				continue
			}
			rows = append(rows, row{as.out, as.last})
			as.out.Range(func(l labels.Label) { names[l.Name] = true })
		}
		r.mu.Unlock()
	}
	if len(rows) == 0 {
		return
	}
	keys := make([]string, 0, len(names))
	for n := range names {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	descs := map[string]*prometheus.Desc{
		anomalyScoreMetric:    prometheus.NewDesc(anomalyScoreMetric, "The anomaly score in [0, 1] of a series a detector scores, at its last evaluation.", keys, nil),
		anomalyExpectedMetric: prometheus.NewDesc(anomalyExpectedMetric, "The value an anomaly detector expected for a series at its last evaluation.", keys, nil),
		anomalyLowerMetric:    prometheus.NewDesc(anomalyLowerMetric, "The lower end of the band an anomaly detector considered ordinary at its last evaluation.", keys, nil),
		anomalyUpperMetric:    prometheus.NewDesc(anomalyUpperMetric, "The upper end of the band an anomaly detector considered ordinary at its last evaluation.", keys, nil),
	}
	vals := make([]string, len(keys))
	for _, rw := range rows {
		for i, k := range keys {
			vals[i] = rw.ls.Get(k)
		}
		for name, v := range map[string]float64{
			anomalyScoreMetric: rw.res.Score, anomalyExpectedMetric: rw.res.Expected,
			anomalyLowerMetric: rw.res.Lower, anomalyUpperMetric: rw.res.Upper,
		} {
			if math.IsNaN(v) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descs[name], prometheus.GaugeValue, v, vals...)
		}
	}
}
