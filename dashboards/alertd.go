//lint:file-ignore SA1019 Grafana provisions the classic dashboard JSON (schema v1) from files in every version we support; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// alertd's own metrics, as it exposes them on /metrics (see README,
// "alertd's own metrics"). The dashboards package may not import alertd's
// packages, so the names are repeated here; the tests check each against
// the running binary.
const (
	alertdBuildInfo            = "alertd_build_info"
	alertdAlerts               = "alertd_alerts"
	alertdAlertsReceived       = "alertd_alerts_received_total"
	alertdAlertsSuppressed     = "alertd_alerts_suppressed_total"
	alertdAlertEvents          = "alertd_alert_events_total"
	alertdPages                = "alertd_pages_total"
	alertdPrecision            = "alertd_alert_precision_ratio"
	alertdSuppressedConfirmed  = "alertd_suppressed_confirmed_total"
	alertdFeedback             = "alertd_feedback_total"
	alertdTimeToAcknowledge    = "alertd_time_to_acknowledge_seconds"
	alertdTimeToResolve        = "alertd_time_to_resolve_seconds"
	alertdAcknowledgements     = "alertd_acknowledgements_total"
	alertdNotifications        = "alertd_notifications_total"
	alertdNotificationsFailed  = "alertd_notifications_failed_total"
	alertdNotificationsMuted   = "alertd_notifications_suppressed_total"
	alertdNotificationLatency  = "alertd_notification_latency_seconds"
	alertdOutboxDeliveries     = "alertd_outbox_deliveries_total"
	alertdOutboxFailures       = "alertd_outbox_delivery_failures_total"
	alertdOutboxQueueDepth     = "alertd_outbox_queue_depth"
	alertdOutboxOldestPending  = "alertd_outbox_oldest_pending_age_seconds"
	alertdOutboxDeadLetters    = "alertd_outbox_dead_letters"
	alertdEscalations          = "alertd_escalations_total"
	alertdEscalationIncidents  = "alertd_escalation_incidents"
	alertdActionsTriggered     = "alertd_actions_triggered_total"
	alertdActionsRefused       = "alertd_actions_refused_total"
	alertdActionsVerification  = "alertd_actions_verification_total"
	alertdDeployments          = "alertd_deployments_total"
	alertdDeploymentFrequency  = "alertd_deployment_frequency_per_day"
	alertdChangeFailure        = "alertd_change_failure_ratio"
	alertdDeploymentLeadTime   = "alertd_deployment_lead_time_seconds"
	alertdTimeToRestore        = "alertd_time_to_restore_seconds"
	alertdConfigReloadSuccess  = "alertd_config_last_reload_successful"
	ruleEvaluationFailures     = "prometheus_rule_evaluation_failures_total"
	ruleEvaluations            = "prometheus_rule_evaluations_total"
	alertsSeries               = "ALERTS"
	alertdDeliveryLabels       = "model, environment"
	alertdDeliveryModelMatcher = `model=~"$model", environment=~"$environment"`
)

// aquery builds the label selectors of alertd's metrics.
type aquery struct {
	target string
}

// sel returns metric{target, matchers...}.
func (q aquery) sel(metric string, matchers ...string) string {
	return metric + "{" + strings.Join(append([]string{q.target}, matchers...), ", ") + "}"
}

// sum returns sum by (by) (fn(metric{…}[window])), or sum (…) when by is
// empty.
func (q aquery) sum(fn, by, metric, window string, matchers ...string) string {
	inner := fmt.Sprintf("%s(%s[%s])", fn, q.sel(metric, matchers...), window)
	if by == "" {
		return fmt.Sprintf("sum (%s)", inner)
	}
	return fmt.Sprintf("sum by (%s) (%s)", by, inner)
}

// mean is the mean of a histogram over window: from its native histogram,
// or from the classic _sum and _count series.
func (q aquery) mean(metric, window string) string {
	return fmt.Sprintf("histogram_avg(%s)\n  or\n%s\n  /\n%s",
		q.sum("increase", "", metric, window), q.sum("increase", "", metric+"_sum", window), q.sum("increase", "", metric+"_count", window))
}

// quantile is a quantile over window of a native histogram, falling back
// to the classic buckets.
func (q aquery) quantile(quantile, metric, by, window string) string {
	return fmt.Sprintf("histogram_quantile(%s, %s)\n  or\nhistogram_quantile(%s, %s)",
		quantile, q.sum("rate", by, metric, window), quantile, q.sum("rate", by+", le", metric+"_bucket", window))
}

// alertd is the alert engine's dashboard: its alerts, their noise,
// escalations, notifications, actions and the delivery metrics of the
// models' lifecycle.
func alertd(opts Options) (dashboard.Dashboard, error) {
	q := aquery{target: opts.AlertdSelector}
	delivery := alertdDeliveryModelMatcher
	b := newDashboard(opts, "modelmon-alertd", "modelmon / alertd",
		"The alert engine: alerts by state, what was suppressed and why, pages and their precision, escalations, notification delivery, actions into CI and the delivery metrics of the models' lifecycle.").
		WithVariable(datasourceVariable()).
		WithVariable(queryVariable("namespace", "Namespace", fmt.Sprintf("label_values(%s, namespace)", alertdBuildInfo))).
		WithVariable(queryVariable("job", "Job", fmt.Sprintf(`label_values(%s{namespace=~"$namespace"}, job)`, alertdBuildInfo))).
		WithVariable(queryVariable("model", "Model", fmt.Sprintf("label_values(%s, model)", q.sel(alertdDeploymentFrequency)))).
		WithVariable(queryVariable("environment", "Environment", fmt.Sprintf(`label_values(%s, environment)`, q.sel(alertdDeploymentFrequency, `model=~"$model"`)))).
		WithRow(dashboard.NewRowBuilder("Alerts")).
		WithPanel(defaultStat("Firing", "Alerts firing and not suppressed.", "short").
			Thresholds(thresholds("green", 1.0, "red")).
			WithTarget(instantQuery(fmt.Sprintf("sum (%s)", q.sel(alertdAlerts, `state="firing"`)), "firing"))).
		WithPanel(defaultStat("Suppressed", "Alerts a pipeline stage keeps from notifications.", "short").
			WithTarget(instantQuery(fmt.Sprintf("sum (%s)", q.sel(alertdAlerts, `state="suppressed"`)), "suppressed"))).
		WithPanel(defaultStat("Pages", "Pages in the time range: delivered incident notifications with firing alerts.", "short").
			WithTarget(instantQuery(q.sum("increase", "", alertdPages, "$__range"), "pages"))).
		WithPanel(defaultStat("Precision (7d)", "Share of the paged alerts with a verdict that operators confirmed as true positives over the last 7 days.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("red", 0.5, "orange", 0.8, "green")).
			WithTarget(instantQuery(fmt.Sprintf("max (%s)", q.sel(alertdPrecision)), "precision"))).
		WithPanel(stackedTimeseries("Alerts by state and priority", "Alerts alertd holds: firing, suppressed, and resolved within the retention, by the priority the classifier gave them (none: no classification).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (state, priority) (%s) > 0", q.sel(alertdAlerts)), "{{state}} {{priority}}"))).
		WithPanel(stackedTimeseries("Firing alerts by severity", "Firing alerts by the rules' severity and category labels (ALERTS of the engine that evaluates the rules: alertd's own or Prometheus).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf(`count by (severity, category) (%s{alertstate="firing", model=~"$model"})`, alertsSeries), "{{severity}} {{category}}"))).
		WithPanel(defaultTimeseries("Suppressed by reason", "Suppressions per hour, by the stage that kept the alert from notifications (silence, rule, hold, flap, deploy, learned, maintenance).", "short").
			WithTarget(prometheusQuery(q.sum("increase", "reason", alertdAlertsSuppressed, "1h")+" > 0", "{{reason}}"))).
		WithPanel(defaultTimeseries("Alerts received", "Alerts entering the pipeline new or changed per second, by source.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "source", alertdAlertsReceived, "$__rate_interval")+" > 0", "{{source}}"))).
		WithRow(dashboard.NewRowBuilder("Noise ledger")).
		WithPanel(defaultStat("Mean time to acknowledge", "Mean time from firing to the first acknowledgement, over the alerts acknowledged in the time range.", "s").
			WithTarget(instantQuery(q.mean(alertdTimeToAcknowledge, "$__range"), "MTTA"))).
		WithPanel(defaultStat("Mean time to resolve", "Mean time from firing to resolution, over the alerts resolved in the time range.", "s").
			WithTarget(instantQuery(q.mean(alertdTimeToResolve, "$__range"), "MTTR"))).
		WithPanel(defaultStat("Suppressed, then confirmed", "Suppressed alerts later paged or confirmed true positives in the time range: the cost of suppression.", "short").
			Thresholds(thresholds("green", 1.0, "orange")).
			WithTarget(instantQuery(q.sum("increase", "", alertdSuppressedConfirmed, "$__range"), "confirmed"))).
		WithPanel(defaultStat("Acknowledgements", "Acknowledgements in the time range.", "short").
			WithTarget(instantQuery(q.sum("increase", "", alertdAcknowledgements, "$__range"), "acknowledgements"))).
		WithPanel(defaultTimeseries("Pages per day", "Pages over the last 24 hours, and operators' verdicts.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "", alertdPages, "1d"), "pages")).
			WithTarget(prometheusQuery(q.sum("increase", "verdict", alertdFeedback, "1d"), "{{verdict}}"))).
		WithPanel(defaultTimeseries("Precision (7d)", "Share of paged alerts confirmed as true positives, over 7 days.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(fmt.Sprintf("max (%s)", q.sel(alertdPrecision)), "precision"))).
		WithPanel(defaultTimeseries("MTTA and MTTR (1d)", "Mean time to acknowledge and to resolve, over the last day.", "s").
			WithTarget(prometheusQuery(q.mean(alertdTimeToAcknowledge, "1d"), "MTTA")).
			WithTarget(prometheusQuery(q.mean(alertdTimeToResolve, "1d"), "MTTR"))).
		WithPanel(stackedTimeseries("Ledger events", "Events written to the ledger per second (pending, fired, suppressed, released, grouped, paged, acknowledged, resolved, verdict).", "short").
			WithTarget(prometheusQuery(q.sum("rate", "event", alertdAlertEvents, "$__rate_interval")+" > 0", "{{event}}"))).
		WithRow(dashboard.NewRowBuilder("Escalation")).
		WithPanel(defaultTimeseries("Escalations", "Escalation steps per hour, by policy and level.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "policy, level", alertdEscalations, "1h")+" > 0", "{{policy}} level {{level}}"))).
		WithPanel(stackedTimeseries("Incidents under escalation", "Incidents by escalation state.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (state) (%s)", q.sel(alertdEscalationIncidents)), "{{state}}"))).
		WithRow(dashboard.NewRowBuilder("Notifications")).
		WithPanel(defaultTimeseries("Notifications", "Notifications sent per second, after their retries, failed ones by reason, and alerts left out of flushes that routes' time intervals muted.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "integration", alertdNotifications, "$__rate_interval"), "{{integration}}")).
			WithTarget(prometheusQuery(q.sum("rate", "integration, reason", alertdNotificationsFailed, "$__rate_interval")+" > 0", "{{integration}} failed: {{reason}}")).
			WithTarget(prometheusQuery(q.sum("rate", "reason", alertdNotificationsMuted, "$__rate_interval")+" > 0", "muted: {{reason}}"))).
		WithPanel(defaultTimeseries("Notification latency", "99th percentile of a notification request's latency, by integration.", "s").
			WithTarget(prometheusQuery(q.quantile("0.99", alertdNotificationLatency, "integration", "$__rate_interval"), "{{integration}} p99"))).
		WithPanel(defaultTimeseries("Outbox deliveries", "Deliveries from the durable outbox per second, by result, and failures by reason.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "result", alertdOutboxDeliveries, "$__rate_interval"), "{{result}}")).
			WithTarget(prometheusQuery(q.sum("rate", "reason", alertdOutboxFailures, "$__rate_interval")+" > 0", "failed: {{reason}}"))).
		WithPanel(defaultTimeseries("Outbox backlog", "Messages waiting in the outbox, the age of the oldest, and dead letters (given up on).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum (%s)", q.sel(alertdOutboxQueueDepth)), "queued")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum (%s)", q.sel(alertdOutboxDeadLetters)), "dead letters")).
			WithTarget(prometheusQuery(fmt.Sprintf("max (%s)", q.sel(alertdOutboxOldestPending)), "oldest pending (s)"))).
		WithRow(dashboard.NewRowBuilder("Actions")).
		WithPanel(defaultTimeseries("Actions triggered", "Retrain and deploy requests sent into CI per day, by action and what triggered them.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, trigger", alertdActionsTriggered, "1d")+" > 0", "{{action}} ({{trigger}})"))).
		WithPanel(defaultTimeseries("Actions refused", "Triggers refused per day, by action and guardrail (cooldown, budget, rejected, expired).", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, reason", alertdActionsRefused, "1d")+" > 0", "{{action}} ({{reason}})"))).
		WithPanel(defaultTimeseries("Action verifications", "Verifications of sent actions per day: did the alerts that triggered them resolve?", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, result", alertdActionsVerification, "1d")+" > 0", "{{action}} {{result}}"))).
		WithRow(dashboard.NewRowBuilder("Delivery (model lifecycle)")).
		WithPanel(defaultStat("Deployment frequency", "Successful deployments per day over 30 days.", "short").
			WithTarget(instantQuery(fmt.Sprintf("sum by (%s) (%s)", alertdDeliveryLabels, q.sel(alertdDeploymentFrequency, delivery)), "{{model}} {{environment}}"))).
		WithPanel(defaultStat("Change failure rate", "Deployments of the last 30 days that failed, were rolled back, or were followed by an incident of the model within 24h.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("green", 0.15, "orange", 0.3, "red")).
			WithTarget(instantQuery(fmt.Sprintf("max by (%s) (%s)", alertdDeliveryLabels, q.sel(alertdChangeFailure, delivery)), "{{model}} {{environment}}"))).
		WithPanel(defaultStat("Lead time for changes", "Median time from commit to successful deployment, over the deploy log.", "s").
			WithTarget(instantQuery(fmt.Sprintf("histogram_quantile(0.5, max by (%s, le) (%s))", alertdDeliveryLabels, q.sel(alertdDeploymentLeadTime+"_bucket", delivery)), "{{model}} {{environment}}"))).
		WithPanel(defaultStat("Time to restore", "Median time from a failed or rolled-back deployment to the next success, over the deploy log.", "s").
			WithTarget(instantQuery(fmt.Sprintf("histogram_quantile(0.5, max by (%s, le) (%s))", alertdDeliveryLabels, q.sel(alertdTimeToRestore+"_bucket", delivery)), "{{model}} {{environment}}"))).
		WithPanel(defaultTimeseries("Deployment frequency and change failure rate", "Per model and environment, over 30 days.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("max by (%s) (%s)", alertdDeliveryLabels, q.sel(alertdDeploymentFrequency, delivery)), "{{model}} {{environment}} deploys/day")).
			WithTarget(prometheusQuery(fmt.Sprintf("max by (%s) (%s)", alertdDeliveryLabels, q.sel(alertdChangeFailure, delivery)), "{{model}} {{environment}} failure ratio"))).
		WithPanel(defaultTimeseries("Deployments recorded", "Deployments recorded per day, by source (api: posted by CI; model_info: a new version seen in modelmon_model_info).", "short").
			WithTarget(prometheusQuery(q.sum("increase", "source", alertdDeployments, "1d"), "{{source}}"))).
		WithPanel(defaultTimeseries("Lead time and time to restore", "Mean lead time for changes and mean time to restore, over the deploy log.", "s").
			WithTarget(prometheusQuery(fmt.Sprintf("max by (%[1]s) (%[2]s) / max by (%[1]s) (%[3]s)", alertdDeliveryLabels,
				q.sel(alertdDeploymentLeadTime+"_sum", delivery), q.sel(alertdDeploymentLeadTime+"_count", delivery)), "{{model}} {{environment}} lead time")).
			WithTarget(prometheusQuery(fmt.Sprintf("max by (%[1]s) (%[2]s) / max by (%[1]s) (%[3]s)", alertdDeliveryLabels,
				q.sel(alertdTimeToRestore+"_sum", delivery), q.sel(alertdTimeToRestore+"_count", delivery)), "{{model}} {{environment}} time to restore"))).
		WithRow(dashboard.NewRowBuilder("Engine")).
		WithPanel(defaultTimeseries("Rule evaluations", "Rule group evaluations per second, and failed ones.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "rule_group", ruleEvaluations, "$__rate_interval"), "{{rule_group}}")).
			WithTarget(prometheusQuery(q.sum("rate", "rule_group", ruleEvaluationFailures, "$__rate_interval")+" > 0", "{{rule_group}} failed"))).
		WithPanel(defaultTimeseries("Configuration reloads", "Whether the last configuration reload succeeded (0: alertd runs the previous configuration).", "short").
			Min(0).Max(1).
			WithTarget(prometheusQuery(fmt.Sprintf("min by (job, instance) (%s)", q.sel(alertdConfigReloadSuccess)), "{{instance}}")))
	return b.Build()
}
