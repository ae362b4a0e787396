// Package collector holds the metrics the modelmon sidecar exposes: the direct
// instrumentation of proxied and pushed traffic (Metrics), and the collectors
// that compute their metrics at scrape time (model information, the capture
// queue, and later drift and quality), run in parallel like node_exporter's.
//
// Every collector registers itself in init() with Register; the exporter turns
// Registered() into --[no-]collector.<name> flags and passes the enabled set to
// NewExporter, so no collector parses flags of its own.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoData tells the scrape that a collector had nothing to report; it is
// logged at debug level only and does not mark the collector failed.
var ErrNoData = errors.New("collector returned no data")

// Collector exposes one group of metrics about the model server.
type Collector interface {
	// Update sends current metrics to ch. It must return once ctx is done.
	Update(ctx context.Context, ch chan<- prometheus.Metric) error
}

// ModelInfo is what the sidecar knows of one model it serves.
type ModelInfo struct {
	Name    string
	Version string
	// FeatureImportance is the configured importance of the model's
	// features, by name (models[].feature_importance).
	FeatureImportance map[string]float64
}

// QueueStats describes the capture queue between the hot path and the parsers.
type QueueStats struct {
	Length, Capacity int
	Bytes, MaxBytes  int64
}

// Source is what scrape-time collectors read from the running sidecar. Its
// methods must be safe for concurrent use and cheap.
type Source interface {
	// Models returns the models seen so far with their current version.
	Models() []ModelInfo
	// CaptureQueue returns the current state of the capture queue.
	CaptureQueue() QueueStats
}

// Factory builds a collector reading from src.
type Factory func(logger *slog.Logger, src Source) (Collector, error)

type registration struct {
	enabled bool
	factory Factory
}

var (
	factoriesMu sync.Mutex
	factories   = map[string]registration{}
)

// Register makes a collector known under name. It is called from init();
// registering a name twice is a programmer error and panics.
func Register(name string, enabledByDefault bool, f Factory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	if _, ok := factories[name]; ok {
		panic(fmt.Sprintf("collector %q registered twice", name))
	}
	factories[name] = registration{enabled: enabledByDefault, factory: f}
}

// Registered returns every registered collector's name and whether it is
// enabled by default, sorted by name.
func Registered() []Registration {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	out := make([]Registration, 0, len(factories))
	for name, r := range factories {
		out = append(out, Registration{Name: name, EnabledByDefault: r.enabled})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Registration names a registered collector.
type Registration struct {
	Name             string
	EnabledByDefault bool
}

var (
	scrapeDurationDesc = prometheus.NewDesc(
		prometheus.BuildFQName(Namespace, "scrape", "collector_duration_seconds"),
		"The time a collector took to collect its metrics at this scrape, in seconds.",
		[]string{"collector"}, nil,
	)
	scrapeSuccessDesc = prometheus.NewDesc(
		prometheus.BuildFQName(Namespace, "scrape", "collector_success"),
		"Whether a collector succeeded at this scrape (1) or failed (0).",
		[]string{"collector"}, nil,
	)
)

// Exporter runs the enabled collectors in parallel at each scrape. It
// implements prometheus.Collector.
type Exporter struct {
	collectors map[string]Collector
	logger     *slog.Logger
	// Timeout bounds a scrape when the request carries no deadline.
	timeout time.Duration
}

// NewExporter builds the collectors named in enabled (nil means every one
// enabled by default) reading from src.
func NewExporter(enabled map[string]bool, src Source, logger *slog.Logger) (*Exporter, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{collectors: map[string]Collector{}, logger: logger, timeout: 10 * time.Second}
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	for name, r := range factories {
		on := r.enabled
		if enabled != nil {
			on = enabled[name]
		}
		if !on {
			continue
		}
		c, err := r.factory(logger.With("collector", name), src)
		if err != nil {
			return nil, fmt.Errorf("couldn't create collector %q: %w", name, err)
		}
		e.collectors[name] = c
	}
	return e, nil
}

// Names returns the names of the enabled collectors, sorted.
func (e *Exporter) Names() []string {
	names := make([]string, 0, len(e.collectors))
	for n := range e.collectors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// WithContext returns a prometheus.Collector that runs this exporter's
// collectors under ctx, so a scrape's deadline reaches them.
func (e *Exporter) WithContext(ctx context.Context) prometheus.Collector {
	return scoped{e: e, ctx: ctx}
}

// Describe implements the prometheus.Collector interface. It describes
// nothing: the enabled collectors' metrics are only known at scrape time, so
// this is an unchecked collector.
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect implements the prometheus.Collector interface.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	e.collect(ctx, ch)
}

func (e *Exporter) collect(ctx context.Context, ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for name, c := range e.collectors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.run(ctx, name, c, ch)
		}()
	}
	wg.Wait()
}

func (e *Exporter) run(ctx context.Context, name string, c Collector, ch chan<- prometheus.Metric) {
	begin := time.Now()
	err := c.Update(ctx, ch)
	duration := time.Since(begin)
	success := 1.0
	switch {
	case err == nil:
		e.logger.Debug("Collector succeeded", "collector", name, "duration_seconds", duration.Seconds())
	case errors.Is(err, ErrNoData):
		e.logger.Debug("Collector returned no data", "collector", name, "duration_seconds", duration.Seconds(), "err", err)
	default:
		e.logger.Error("Collector failed", "collector", name, "duration_seconds", duration.Seconds(), "err", err)
		success = 0
	}
	ch <- prometheus.MustNewConstMetric(scrapeDurationDesc, prometheus.GaugeValue, duration.Seconds(), name)
	ch <- prometheus.MustNewConstMetric(scrapeSuccessDesc, prometheus.GaugeValue, success, name)
}

type scoped struct {
	e   *Exporter
	ctx context.Context
}

func (s scoped) Describe(ch chan<- *prometheus.Desc) { s.e.Describe(ch) }
func (s scoped) Collect(ch chan<- prometheus.Metric) { s.e.collect(s.ctx, ch) }
