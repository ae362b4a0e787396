package notify

import (
	"fmt"
	"slices"
	"sync"
	"time"

	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
)

// Integration names, the values of the integration label.
const (
	integrationWebhook      = "webhook"
	integrationAlertmanager = "alertmanager"
	integrationSlack        = "slack"
	integrationPagerDuty    = "pagerduty"
)

// integrations are the integration types alertd builds, in the order a
// receiver's notifications go out, pre-created at 0: its own, then
// Alertmanager's others, which its notifiers send (amintegration.go).
var integrations = append([]string{integrationWebhook, integrationAlertmanager, integrationSlack, integrationPagerDuty}, alertmanagerIntegrations...)

// failureReasons are the values of alertd_notifications_failed_total's
// reason label: those of Alertmanager's bounded reasons (notify.Reason)
// that failureReason gives, as the outbox's reasons map to them. The
// others (authError, templateError, contextCanceled …) never occur: a 401
// is a clientError, a template error "other". Each integration's possible
// reasons (failureReasonsOf) are pre-created at 0.
var failureReasons = []string{
	amnotify.DefaultReason.String(),
	amnotify.ClientErrorReason.String(),
	amnotify.ServerErrorReason.String(),
	amnotify.ContextDeadlineExceededReason.String(),
	amnotify.RateLimitedReason.String(),
}

// failureReasonsOf returns the failure reasons an integration can give.
// Email speaks SMTP: Alertmanager's notifier gives every error its default
// reason, so it fails with "other", or a timeout, never with an HTTP
// status's reason.
func failureReasonsOf(integration string) []string {
	if integration == "email" {
		return []string{amnotify.DefaultReason.String(), amnotify.ContextDeadlineExceededReason.String()}
	}
	return failureReasons
}

// suppressedReasons are the values of alertd_notifications_suppressed_total's
// reason label, Alertmanager's for the same stages.
var suppressedReasons = []string{amnotify.SuppressedReasonMuteTimeInterval, amnotify.SuppressedReasonActiveTimeInterval}

// metrics are the notifier's own metrics, named like Alertmanager's
// notify/metrics.go under the alertd namespace.
type metrics struct {
	notifications  *prometheus.CounterVec
	failed         *prometheus.CounterVec
	requests       *prometheus.CounterVec
	requestsFailed *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	redelivered    prometheus.Counter
	suppressed     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alertd",
			Name:      "notifications_total",
			Help:      "The total number of notifications sent or attempted, each after its retries.",
		}, []string{"integration"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alertd",
			Name:      "notifications_failed_total",
			Help:      "The total number of notifications that failed after their retries, by reason.",
		}, []string{"integration", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alertd",
			Name:      "notification_requests_total",
			Help:      "The total number of notification requests, one per attempt.",
		}, []string{"integration"}),
		requestsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alertd",
			Name:      "notification_requests_failed_total",
			Help:      "The total number of failed notification requests, one per attempt.",
		}, []string{"integration"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:                       "alertd",
			Name:                            "notification_latency_seconds",
			Help:                            "The latency of notification requests in seconds, one observation per attempt.",
			Buckets:                         []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 15, 20},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"integration"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "alertd",
			Name:      "dispatcher_alerts_redelivered_total",
			Help:      "The total number of alerts re-delivered to the dispatcher because an aggregation group held an older version than the alert store.",
		}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "alertd",
			Name:      "notifications_suppressed_total",
			Help:      "The total number of alerts left out of a notification because the route's time intervals muted its flush, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range suppressedReasons {
		m.suppressed.WithLabelValues(r)
	}
	for _, i := range integrations {
		m.notifications.WithLabelValues(i)
		m.requests.WithLabelValues(i)
		m.requestsFailed.WithLabelValues(i)
		m.latency.WithLabelValues(i)
		for _, r := range failureReasonsOf(i) {
			m.failed.WithLabelValues(i, r)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.notifications, m.failed, m.requests, m.requestsFailed, m.latency, m.redelivered, m.suppressed}
}

// collectingRegisterer holds the collectors Alertmanager's packages register
// (with promauto or MustRegister, which panic on a conflict) until register
// hands them to the real registerer, which returns the conflict as an error.
type collectingRegisterer struct {
	mu         sync.Mutex
	collectors []prometheus.Collector
}

// Register implements prometheus.Registerer.
func (c *collectingRegisterer) Register(col prometheus.Collector) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.collectors = append(c.collectors, col)
	return nil
}

// MustRegister implements prometheus.Registerer.
func (c *collectingRegisterer) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		_ = c.Register(col)
	}
}

// Unregister implements prometheus.Registerer.
func (c *collectingRegisterer) Unregister(col prometheus.Collector) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.collectors, col)
	if i < 0 {
		return false
	}
	c.collectors = slices.Delete(c.collectors, i, i+1)
	return true
}

// register registers cols and what c collected on reg, all or none. A nil
// reg registers nothing.
func (c *collectingRegisterer) register(reg prometheus.Registerer, cols ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	c.mu.Lock()
	all := append(slices.Clone(c.collectors), cols...)
	c.mu.Unlock()
	for i, col := range all {
		if err := reg.Register(col); err != nil {
			for _, done := range all[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("couldn't register metrics: %w", err)
		}
	}
	return nil
}
