package collector

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	Register("model", true, NewModelCollector)
}

var modelInfoDesc = prometheus.NewDesc(ModelInfoMetric,
	"Information about a model the sidecar serves; always 1. The version label is the version last seen in its traffic or configuration.",
	[]string{"model", "version"}, nil)

var importanceDesc = prometheus.NewDesc(FeatureImportance,
	"The configured importance of a model's feature (models[].feature_importance, any scale): its drift weighs that much in the drift impact.",
	[]string{"model", "feature"}, nil)

type modelCollector struct{ src Source }

// NewModelCollector returns a Collector exposing modelmon_model_info for every
// model the sidecar has seen, and the importance of its features.
func NewModelCollector(_ *slog.Logger, src Source) (Collector, error) {
	return &modelCollector{src: src}, nil
}

// Update implements Collector.
func (c *modelCollector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	models := c.src.Models()
	if len(models) == 0 {
		return ErrNoData
	}
	for _, m := range models {
		ch <- prometheus.MustNewConstMetric(modelInfoDesc, prometheus.GaugeValue, 1, m.Name, m.Version)
		for f, v := range m.FeatureImportance {
			ch <- prometheus.MustNewConstMetric(importanceDesc, prometheus.GaugeValue, v, m.Name, f)
		}
	}
	return nil
}
