package config

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reloader loads a configuration and applies it, keeping the running one when
// the new one is bad, and reports the outcome as
// <namespace>_config_last_reload_successful and
// <namespace>_config_last_reload_success_timestamp_seconds.
type Reloader[T any] struct {
	mu      sync.Mutex
	load    func() (*T, error)
	apply   func(*T) error
	logger  *slog.Logger
	success prometheus.Gauge
	stamp   prometheus.Gauge
	now     func() float64
}

// NewReloader returns a Reloader that builds a configuration with load and,
// when that works, hands it to apply. load must do all the fallible work;
// apply swaps it in. namespace prefixes the metrics ("modelmon_exporter",
// "alertd"). now returns the current Unix time in seconds.
func NewReloader[T any](reg prometheus.Registerer, namespace string, load func() (*T, error), apply func(*T) error, now func() float64, logger *slog.Logger) *Reloader[T] {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(reg)
	return &Reloader[T]{
		load:   load,
		apply:  apply,
		logger: logger,
		now:    now,
		success: f.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		stamp: f.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "The Unix time of the last successful configuration reload.",
		}),
	}
}

// Reload loads and applies the configuration. On error the running
// configuration stays in place.
func (r *Reloader[T]) Reload() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		if err != nil {
			r.success.Set(0)
			r.logger.Error("Failed to reload configuration, keeping the running one", "err", err)
			return
		}
		r.success.Set(1)
		r.stamp.Set(r.now())
		r.logger.Info("Configuration loaded")
	}()
	cfg, err := r.load()
	if err != nil {
		return err
	}
	if err := r.apply(cfg); err != nil {
		return fmt.Errorf("couldn't apply configuration: %w", err)
	}
	return nil
}
