package payloadlog

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/outbox"
)

// metrics are the payload log's metrics.
type metrics struct {
	sent     *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	failures *prometheus.CounterVec
	spooled  prometheus.Counter
	splits   prometheus.Counter
	duration prometheus.Histogram
	gauges   []prometheus.Collector
}

func newMetrics(l *Logger) *metrics {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: collector.PayloadLogSentTotal,
			Help: "The total number of payload events the payload log's receiver accepted, by type: request or response.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: collector.PayloadLogDroppedTotal,
			Help: "The total number of payload events not sent, by reason: queue_full (no spool), spool_full, rejected (by the receiver, with a 4xx), shutdown (no spool) or spool_error.",
		}, []string{"reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: collector.PayloadLogFailuresTotal,
			Help: "The total number of failed attempts to send a payload event, by reason: timeout, connection, http_4xx, http_5xx, rate_limited, tls (a certificate the client does not trust, a failed TLS handshake) or other.",
		}, []string{"reason"}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: collector.PayloadLogSpooledTotal,
			Help: "The total number of payload events written to the spool directory, to be sent from there.",
		}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: collector.PayloadLogSplitsTotal,
			Help: "The total number of batches of payload events sent in parts: again in halves because the receiver rejected them whole (a 4xx other than 408 and 429, such as 400 or 413), or event by event while it refuses every event.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                            collector.PayloadLogDuration,
			Help:                            "The duration of attempts to send a payload event, in seconds.",
			Buckets:                         []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}),
	}
	locked := func(f func() float64) func() float64 {
		return func() float64 {
			l.mu.Lock()
			defer l.mu.Unlock()
			return f()
		}
	}
	m.gauges = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: collector.PayloadLogQueueBytes,
			Help: "The bytes of payload events held in memory for sending.",
		}, locked(func() float64 { return float64(l.queueBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: collector.PayloadLogQueueMaxBytes,
			Help: "The most bytes of payload events held in memory (--payload-log.max-queue-bytes).",
		}, func() float64 { return float64(l.o.MaxQueueBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: collector.PayloadLogBatchMaxEvents,
			Help: "The most payload events a batch takes now: --payload-log.batch-size, or fewer for a while after the receiver refused a batch as too large (413).",
		}, func() float64 { return float64(l.limit.current()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: collector.PayloadLogSpoolBytes,
			Help: "The bytes of the spool directory's files of payload events not yet sent.",
		}, locked(func() float64 { return float64(l.spoolBytes) })),
	}
	if l.o.SpoolDir != "" {
		m.gauges = append(m.gauges, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: collector.PayloadLogSpoolMaxBytes,
			Help: "The most bytes of payload events in the spool directory (--payload-log.max-spool-bytes).",
		}, func() float64 { return float64(l.o.MaxSpoolBytes) }))
	}
	for _, t := range []string{"request", "response"} {
		m.sent.WithLabelValues(t)
	}
	for _, r := range []string{DropQueueFull, DropSpoolFull, DropRejected, DropShutdown, DropSpoolError} {
		m.dropped.WithLabelValues(r)
	}
	for _, r := range outbox.Reasons() {
		m.failures.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range append([]prometheus.Collector{m.sent, m.dropped, m.failures, m.spooled, m.splits, m.duration}, m.gauges...) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
