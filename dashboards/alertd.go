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
	alertdOutboxEnqueued       = "alertd_outbox_messages_enqueued_total"
	alertdOutboxDuplicates     = "alertd_outbox_duplicates_total"
	alertdOutboxDiscarded      = "alertd_outbox_dead_letters_discarded_total"
	alertdOutboxDuration       = "alertd_outbox_delivery_duration_seconds"
	alertdNotificationRequests = "alertd_notification_requests_total"
	alertdNotificationReqFails = "alertd_notification_requests_failed_total"
	alertdActionsEnqueueFailed = "alertd_actions_enqueue_failures_total"
	alertdActionsEnqueueRetry  = "alertd_actions_enqueue_retries_total"
	alertdActionsUnknown       = "alertd_actions_unknown_outcomes_total"
	alertdIntake               = "alertd_intake_alerts_total"
	alertdIntakeInvalid        = "alertd_intake_alerts_invalid_total"
	alertdUpstreamChecks       = "alertd_intake_alertmanager_checks_total"
	alertdUpstreamChecksFailed = "alertd_intake_alertmanager_checks_failed_total"
	alertdSlackRejected        = "alertd_slack_interactions_rejected_total"
	alertdLedgerWriteErrors    = "alertd_ledger_write_errors_total"
	alertdDatasourceUp         = "alertd_datasource_up"
	alertdDatasourceFailing    = "alertd_datasource_failing_rules"
	alertdDatasourceLastOK     = "alertd_datasource_last_success_timestamp_seconds"
	alertdDatasourceQueries    = "alertd_datasource_queries_total"
	alertdDatasourceFailed     = "alertd_datasource_queries_failed_total"
	alertdDatasourceWarnings   = "alertd_datasource_queries_with_warnings_total"
	alertdDatasourceHeld       = "alertd_datasource_held_alerts_total"
	alertdTemplateQueries      = "alertd_template_queries_total"
	alertdTemplateQueriesFail  = "alertd_template_queries_failed_total"
	alertdAnomalyEvaluations   = "alertd_anomaly_evaluations_total"
	alertdAnomalyFailures      = "alertd_anomaly_evaluation_failures_total"
	alertdAnomalyDropped       = "alertd_anomaly_series_dropped_total"
	alertdAnomalyResets        = "alertd_anomaly_resets_total"
	ruleGroupLastDuration      = "prometheus_rule_group_last_duration_seconds"
	ruleGroupInterval          = "prometheus_rule_group_interval_seconds"
	ruleGroupMissed            = "prometheus_rule_group_iterations_missed_total"
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
		WithPanel(defaultTimeseries("Alerts posted", "Alerts posted to the intake endpoints per second, and those rejected as malformed. Rejections mean a sender (an Alertmanager's webhook, a script) posts what alertd cannot read: its alerts are lost; look at alertd's log for the reason and fix the sender.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "endpoint", alertdIntake, "$__rate_interval"), "{{endpoint}}")).
			WithTarget(prometheusQuery(q.sum("rate", "endpoint", alertdIntakeInvalid, "$__rate_interval")+" > 0", "{{endpoint}} rejected"))).
		WithPanel(defaultTimeseries("Relaying Alertmanager checks", "Checks per second of the API of an Alertmanager that relays alerts to the webhook (intake.alertmanager_api), and those without a usable answer. While they fail alertd keeps to what the webhooks say, so alerts silenced or inhibited there may page here: check that Alertmanager is up and reachable at the configured URL.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "", alertdUpstreamChecks, "$__rate_interval"), "checks")).
			WithTarget(prometheusQuery(q.sum("rate", "", alertdUpstreamChecksFailed, "$__rate_interval")+" > 0", "failed"))).
		WithRow(dashboard.NewRowBuilder("Data source and queries")).
		WithPanel(defaultStat("Data source up", "Remote mode (--datasource.url): 0 while the latest evaluation of some rule or anomaly detector failed because the data source did not answer, asked to wait or answered in part. Their firing alerts are held firing meanwhile and new ones cannot fire: check the data source (Prometheus, Thanos, Mimir) and the network to it. Empty on the embedded data source.", "short").
			Min(0).Max(1).
			Thresholds(thresholds("red", 1.0, "green")).
			WithTarget(instantQuery(fmt.Sprintf("min (%s)", q.sel(alertdDatasourceUp)), "up"))).
		WithPanel(defaultStat("Rules failing on the data source", "Rules and anomaly detectors whose latest evaluation failed because the remote data source is down: a few of many points at a Thanos store or vmstorage node that fails some queries, all of them at the data source itself.", "short").
			Thresholds(thresholds("green", 1.0, "red")).
			WithTarget(instantQuery(fmt.Sprintf("sum (%s)", q.sel(alertdDatasourceFailing)), "failing"))).
		WithPanel(defaultStat("Since the data source last answered", "Time since the remote data source last answered a query. Longer than the rules' evaluation interval means every query fails: look at Data source queries for the reason.", "s").
			Thresholds(thresholds("green", 300.0, "red")).
			WithTarget(instantQuery(fmt.Sprintf("time() - max (%s > 0)", q.sel(alertdDatasourceLastOK)), "since"))).
		WithPanel(defaultStat("Template queries failed", "Queries of alerting rules' label and annotation templates (the query function) that failed in the time range: their notifications carry <error expanding template: …> instead of the value. Fix the query in the rule's template (alertd's log has the error).", "short").
			Thresholds(thresholds("green", 1.0, "orange")).
			WithTarget(instantQuery(q.sum("increase", "", alertdTemplateQueriesFail, "$__range"), "failed"))).
		WithPanel(defaultTimeseries("Data source queries", "Queries per second to the remote data source, failed ones by reason, and answers with warnings. unavailable, retry_after and partial_response mark it down when a rule's query fails so: check the data source's health and load; query is the query's own error (a bad rule, a Thanos store's limit): fix the rule. Warnings are partial answers (each is logged).", "short").
			WithTarget(prometheusQuery(q.sum("rate", "", alertdDatasourceQueries, "$__rate_interval"), "queries")).
			WithTarget(prometheusQuery(q.sum("rate", "reason", alertdDatasourceFailed, "$__rate_interval")+" > 0", "failed: {{reason}}")).
			WithTarget(prometheusQuery(q.sum("rate", "", alertdDatasourceWarnings, "$__rate_interval")+" > 0", "with warnings"))).
		WithPanel(defaultTimeseries("Alerts held for the data source", "Firing alerts kept firing per second, at each check, because their rule's latest evaluation failed for the data source, by why. They cannot resolve until the data source answers again: what they say may be stale.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "reason", alertdDatasourceHeld, "$__rate_interval")+" > 0", "{{reason}}"))).
		WithPanel(defaultTimeseries("Template queries", "Queries per second of alerting rules' templates (the query function), embedded or remote, and failed ones. Failures do not fail the rule nor mark the data source down, but the notification shows the error: fix the template's query.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "", alertdTemplateQueries, "$__rate_interval"), "queries")).
			WithTarget(prometheusQuery(q.sum("rate", "", alertdTemplateQueriesFail, "$__rate_interval")+" > 0", "failed"))).
		WithPanel(defaultTimeseries("Anomaly detectors", "Anomaly detector runs per second, failed ones, series left out over max_series and baselines reset by a new model version. Failures: the detector's query fails (alertd's log says why); dropped series: raise max_series or narrow the expr.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "detector", alertdAnomalyEvaluations, "$__rate_interval"), "{{detector}}")).
			WithTarget(prometheusQuery(q.sum("rate", "detector", alertdAnomalyFailures, "$__rate_interval")+" > 0", "{{detector}} failed")).
			WithTarget(prometheusQuery(q.sum("rate", "detector", alertdAnomalyDropped, "$__rate_interval")+" > 0", "{{detector}} series dropped")).
			WithTarget(prometheusQuery(q.sum("increase", "detector", alertdAnomalyResets, "1h")+" > 0", "{{detector}} resets (1h)"))).
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
		WithPanel(defaultTimeseries("Notification latency", "99th percentile of a notification's latency, by integration, and of an outbox delivery attempt, by receiver and integration. A rise near the integration's timeout precedes contextDeadlineExceeded failures: look at the receiver's side.", "s").
			WithTarget(prometheusQuery(q.quantile("0.99", alertdNotificationLatency, "integration", "$__rate_interval"), "{{integration}} p99")).
			WithTarget(prometheusQuery(q.quantile("0.99", alertdOutboxDuration, "receiver, integration", "$__rate_interval"), "{{receiver}} {{integration}} attempt p99"))).
		WithPanel(defaultTimeseries("Outbox deliveries", "Notifications stored in the durable outbox per second, deliveries from it by result, and failures by reason. Retries that do not turn into deliveries end as dead letters: look at the failures' reason.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "", alertdOutboxEnqueued, "$__rate_interval"), "enqueued")).
			WithTarget(prometheusQuery(q.sum("rate", "result", alertdOutboxDeliveries, "$__rate_interval"), "{{result}}")).
			WithTarget(prometheusQuery(q.sum("rate", "reason", alertdOutboxFailures, "$__rate_interval")+" > 0", "failed: {{reason}}"))).
		WithPanel(defaultTimeseries("Outbox backlog", "Messages waiting in the outbox, the age of the oldest, dead letters (given up on: redrive them, or discard them with DELETE /api/v1/outbox/dead_letters/{key}), and the dead letters discarded in the last hour.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum (%s)", q.sel(alertdOutboxQueueDepth)), "queued")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum (%s)", q.sel(alertdOutboxDeadLetters)), "dead letters")).
			WithTarget(prometheusQuery(q.sum("increase", "", alertdOutboxDiscarded, "1h")+" > 0", "discarded (1h)")).
			WithTarget(prometheusQuery(fmt.Sprintf("max (%s)", q.sel(alertdOutboxOldestPending)), "oldest pending (s)"))).
		WithPanel(defaultTimeseries("Notification attempts", "Notification requests per second, one per attempt, and failed attempts, by integration. Failed attempts are retried: they matter when they last (the receiver is down or refuses alertd), before they turn into dead letters.", "short").
			WithTarget(prometheusQuery(q.sum("rate", "integration", alertdNotificationRequests, "$__rate_interval"), "{{integration}}")).
			WithTarget(prometheusQuery(q.sum("rate", "integration", alertdNotificationReqFails, "$__rate_interval")+" > 0", "{{integration}} failed"))).
		WithPanel(defaultTimeseries("Outbox duplicates", "Messages per hour dropped because the outbox held their idempotency key, by integration and what became of the message held (pending, delivered, dead_lettered, discarded: a dead letter an operator discarded). A few after restarts or failovers are the outbox doing its job; a steady stream means a loop re-sending the same notifications or actions (two alertd sharing an outbox, a flapping route): find the sender.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "integration, state", alertdOutboxDuplicates, "1h")+" > 0", "{{integration}} ({{state}})"))).
		WithRow(dashboard.NewRowBuilder("Actions")).
		WithPanel(defaultTimeseries("Actions triggered", "Retrain and deploy requests sent into CI per day, by action and what triggered them.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, trigger", alertdActionsTriggered, "1d")+" > 0", "{{action}} ({{trigger}})"))).
		WithPanel(defaultTimeseries("Actions refused", "Triggers refused per day, by action and guardrail (cooldown, budget, rejected, expired).", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, reason", alertdActionsRefused, "1d")+" > 0", "{{action}} ({{reason}})"))).
		WithPanel(defaultTimeseries("Action verifications", "Verifications of sent actions per day: did the alerts that triggered them resolve?", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, result", alertdActionsVerification, "1d")+" > 0", "{{action}} {{result}}"))).
		WithPanel(defaultTimeseries("Actions not stored", "Actions decided sent whose message the outbox refused to store, per day, and the retries of those of alerts, schedules and rollbacks. Failures mean the outbox cannot write (a full disk under --storage.path): free space; escalation triggers are not retried, so check that their CI run happened.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action, trigger", alertdActionsEnqueueFailed, "1d")+" > 0", "{{action}} ({{trigger}}) refused")).
			WithTarget(prometheusQuery(q.sum("increase", "action, trigger", alertdActionsEnqueueRetry, "1d")+" > 0", "{{action}} ({{trigger}}) retried"))).
		WithPanel(defaultTimeseries("Actions of unknown outcome", "Requests sent in full to a CI without idempotency (GitHub, GitLab) that got no answer within the action's timeout, per day: not retried, as the CI may have started the run. Look at the CI, then redrive the request's dead letter (POST /api/v1/outbox/dead_letters/{key}/redrive) if the run did not start, or discard it if it did.", "short").
			WithTarget(prometheusQuery(q.sum("increase", "action", alertdActionsUnknown, "1d")+" > 0", "{{action}}"))).
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
			WithTarget(prometheusQuery(fmt.Sprintf("min by (job, instance) (%s)", q.sel(alertdConfigReloadSuccess)), "{{instance}}"))).
		WithPanel(defaultTimeseries("Rule group duration", "Each rule group's last evaluation time as a share of its interval, and evaluations skipped because the previous one ran long. Near 1, evaluations start to be skipped and alerts fire late: simplify the group's queries, split the group or lengthen its interval.", "percentunit").
			WithTarget(prometheusQuery(fmt.Sprintf("max by (rule_group) (%s)\n  /\nmax by (rule_group) (%s)", q.sel(ruleGroupLastDuration), q.sel(ruleGroupInterval)), "{{rule_group}}")).
			WithTarget(prometheusQuery(q.sum("increase", "rule_group", ruleGroupMissed, "1h")+" > 0", "{{rule_group}} missed (1h)"))).
		WithPanel(defaultTimeseries("Ledger write errors and rejected interactions", "Failed ledger writes or fsyncs per second (the events are retried; a lasting rate means the disk under --storage.path is full or failing, and the noise report and verdicts fall behind), and Slack button requests refused for a bad, stale or replayed signature (check the Slack app's signing secret, or someone is replaying requests).", "short").
			WithTarget(prometheusQuery(q.sum("rate", "", alertdLedgerWriteErrors, "$__rate_interval"), "ledger write errors")).
			WithTarget(prometheusQuery(q.sum("rate", "", alertdSlackRejected, "$__rate_interval")+" > 0", "Slack interactions rejected")))
	return b.Build()
}
