package outbox

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a delivery attempt, the values of the result label.
const (
	resultDelivered    = "delivered"
	resultRetried      = "retried"
	resultDeadLettered = "dead_lettered"
)

var results = []string{resultDelivered, resultRetried, resultDeadLettered}

// metrics are the outbox's metrics, by receiver and integration: the
// entries of an integration (lanes) are summed, which keeps the series
// bounded by the configuration's receivers and integration types.
type metrics struct {
	enqueued   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	failures   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	gauges     *gauges
}

func newMetrics(o *Outbox) *metrics {
	labels := []string{"receiver", "integration"}
	return &metrics{
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_messages_enqueued_total",
			Help: "The total number of messages stored in the outbox for delivery (duplicates of a held or delivered key are not counted).",
		}, labels),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_deliveries_total",
			Help: "The total number of delivery attempts, by result: delivered, retried (failed, tried again later) or dead_lettered.",
		}, append(labels, "result")),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_delivery_failures_total",
			Help: "The total number of failed delivery attempts, by reason: timeout, connection, http_4xx, http_5xx, rate_limited or other.",
		}, append(labels, "reason")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "alertd_outbox_delivery_duration_seconds",
			Help:                            "The duration of delivery attempts in seconds.",
			Buckets:                         []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, labels),
		gauges: &gauges{o: o, known: map[seriesKey]bool{}},
	}
}

// InitializeFor pre-creates the metrics of a receiver's integration at 0,
// so that they exist before its first message.
func (o *Outbox) InitializeFor(receiver, integration string) {
	m := o.metrics
	m.enqueued.WithLabelValues(receiver, integration)
	m.duration.WithLabelValues(receiver, integration)
	for _, r := range results {
		m.deliveries.WithLabelValues(receiver, integration, r)
	}
	for _, r := range reasons {
		m.failures.WithLabelValues(receiver, integration, r)
	}
	o.mu.Lock()
	m.gauges.known[seriesKey{receiver, integration}] = true
	o.mu.Unlock()
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	cols := []prometheus.Collector{m.enqueued, m.deliveries, m.failures, m.duration, m.gauges}
	for i, c := range cols {
		if err := reg.Register(c); err != nil {
			for _, done := range cols[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("couldn't register outbox metrics: %w", err)
		}
	}
	return nil
}

var (
	depthDesc = prometheus.NewDesc("alertd_outbox_queue_depth",
		"The number of messages waiting in the outbox for delivery.", []string{"receiver", "integration"}, nil)
	ageDesc = prometheus.NewDesc("alertd_outbox_oldest_pending_age_seconds",
		"The age in seconds of the oldest message waiting for delivery; 0 when none waits.", []string{"receiver", "integration"}, nil)
	deadDesc = prometheus.NewDesc("alertd_outbox_dead_letters",
		"The number of dead letters: messages given up on, waiting to be redriven.", []string{"receiver", "integration"}, nil)
)

// seriesKey identifies the series of a receiver's integration.
type seriesKey struct{ receiver, integration string }

// gauges computes the queue gauges from the outbox at scrape time.
type gauges struct {
	o     *Outbox
	known map[seriesKey]bool // guarded by o.mu
}

// Describe implements prometheus.Collector.
func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- ageDesc
	ch <- deadDesc
}

// Collect implements prometheus.Collector.
func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	o := g.o
	now := o.opts.Now()
	type stat struct {
		depth, dead int
		age         float64
	}
	o.mu.Lock()
	stats := map[seriesKey]*stat{}
	for k := range g.known {
		stats[k] = &stat{}
	}
	get := func(receiver, integration string) *stat {
		k := seriesKey{receiver, integration}
		if stats[k] == nil {
			stats[k] = &stat{}
		}
		return stats[k]
	}
	for k, l := range o.lanes {
		s := get(k.receiver, k.integration)
		s.depth += len(l.queue)
		for _, r := range l.queue {
			s.age = max(s.age, now.Sub(r.Created).Seconds())
		}
	}
	for _, r := range o.dead {
		get(r.Receiver, r.Integration).dead++
	}
	o.mu.Unlock()
	for k, s := range stats {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(s.depth), k.receiver, k.integration)
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, s.age, k.receiver, k.integration)
		ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(s.dead), k.receiver, k.integration)
	}
}
