package collector

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	Register("capture", true, NewCaptureCollector)
}

var (
	queueLengthDesc = prometheus.NewDesc(CaptureQueueLength,
		"The number of captured payloads waiting to be parsed.", nil, nil)
	queueBytesDesc = prometheus.NewDesc(CaptureQueueBytes,
		"The bytes of captured payloads waiting to be parsed.", nil, nil)
	queueCapacityDesc = prometheus.NewDesc(CaptureQueueCapacity,
		"The capacity of the capture queue, in payloads.", nil, nil)
	queueMaxBytesDesc = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "capture", "queue_max_bytes"),
		"The capacity of the capture queue, in bytes.", nil, nil)
)

type captureCollector struct{ src Source }

// NewCaptureCollector returns a Collector exposing the state of the queue
// between the proxy's hot path and the payload parsers.
func NewCaptureCollector(_ *slog.Logger, src Source) (Collector, error) {
	return &captureCollector{src: src}, nil
}

// Update implements Collector.
func (c *captureCollector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	q := c.src.CaptureQueue()
	ch <- prometheus.MustNewConstMetric(queueLengthDesc, prometheus.GaugeValue, float64(q.Length))
	ch <- prometheus.MustNewConstMetric(queueBytesDesc, prometheus.GaugeValue, float64(q.Bytes))
	ch <- prometheus.MustNewConstMetric(queueCapacityDesc, prometheus.GaugeValue, float64(q.Capacity))
	ch <- prometheus.MustNewConstMetric(queueMaxBytesDesc, prometheus.GaugeValue, float64(q.MaxBytes))
	return nil
}
