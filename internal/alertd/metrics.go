package alertd

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/modelmon/modelmon/rules"
)

// metrics are alertd's own metrics beyond those of the embedded Prometheus
// parts (prometheus_rule_*, prometheus_tsdb_*, prometheus_target_*) and of
// the notifier (alertd_notifications_*).
type metrics struct {
	intake         *prometheus.CounterVec
	intakeInvalid  *prometheus.CounterVec
	datasourceHeld *prometheus.CounterVec
	slackRejected  prometheus.Counter
	// templateQueries and templateQueriesFailed count the queries of
	// alerting rules' templates (rules.TemplateQuery).
	templateQueries, templateQueriesFailed prometheus.Counter
}

// Intake endpoints, the values of the endpoint label.
const (
	endpointV2Alerts = "/api/v2/alerts"
	endpointWebhook  = "/api/v1/webhook/alertmanager"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		intake: f.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_intake_alerts_total",
			Help: "The total number of alerts posted to an intake endpoint, valid or not.",
		}, []string{"endpoint"}),
		intakeInvalid: f.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_intake_alerts_invalid_total",
			Help: "The total number of posted alerts, or whole requests, rejected as malformed.",
		}, []string{"endpoint"}),
		datasourceHeld: f.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_datasource_held_alerts_total",
			Help: "The total number of times a firing rule alert was kept firing because the data source could not be queried, by why.",
		}, []string{"reason"}),
		slackRejected: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_slack_interactions_rejected_total",
			Help: "The total number of Slack interaction requests rejected for a bad, stale or replayed signature.",
		}),
		templateQueries: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_template_queries_total",
			Help: "The total number of queries alerting rules' label and annotation templates ran with the query function.",
		}),
		templateQueriesFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_template_queries_failed_total",
			Help: "The total number of queries of alerting rules' templates that failed; the template expands to its error, and the data source's health is not changed.",
		}),
	}
	for _, e := range []string{endpointV2Alerts, endpointWebhook} {
		m.intake.WithLabelValues(e)
		m.intakeInvalid.WithLabelValues(e)
	}
	for _, r := range []string{rules.ReasonUnavailable, rules.ReasonRetryAfter, rules.ReasonPartialResponse} {
		m.datasourceHeld.WithLabelValues(r)
	}
	return m
}

// templateQuery counts a query of an alerting rule's templates that
// returned err. One alertd gave up on (a reload, shutdown) did not fail.
func (m *metrics) templateQuery(err error) {
	m.templateQueries.Inc()
	if err != nil && !errors.Is(err, context.Canceled) {
		m.templateQueriesFailed.Inc()
	}
}

// datasourceUp exposes the remote data source's state: up says whether
// no rule or detector's latest evaluation failed because it is down, and
// failing how many did.
func (m *metrics) datasourceUp(reg prometheus.Registerer, r *rules.Remote, up func() bool, failing func() int) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alertd_datasource_up",
			Help: "Whether the latest evaluation of every rule and anomaly detector got its answers from the remote data source (1) or some failed because it did not answer, asked to wait or answered in part (0).",
		}, func() float64 {
			if up() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alertd_datasource_failing_rules",
			Help: "The number of rules and anomaly detectors whose latest evaluation failed because the remote data source did not answer, asked to wait or answered in part.",
		}, func() float64 { return float64(failing()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "alertd_datasource_last_success_timestamp_seconds",
			Help: "The Unix time the remote data source last answered a query; 0 if never.",
		}, func() float64 {
			_, _, t, _ := r.Status()
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alertd_datasource_queries_with_warnings_total",
			Help: "The total number of queries the remote data source answered with warnings, such as a Thanos partial response; each is logged.",
		}, func() float64 { return float64(r.Warned()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "alertd_datasource_queries_total",
			Help: "The total number of queries alertd ran against the remote data source, including those a Retry-After kept from being sent.",
		}, func() float64 { return float64(r.Queries()) }),
	)
	for _, reason := range rules.Reasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "alertd_datasource_queries_failed_total",
			Help:        "The total number of queries to the remote data source that failed, by reason: unavailable, retry_after and partial_response mark it down, query is the query's own error.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(r.Failed(reason)) }))
	}
}
