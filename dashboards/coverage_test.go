package dashboards

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/readmetest"
)

// offDashboards are the families README's metrics tables name that no
// dashboard shows, and why: each other family must be read by some
// dashboard query, directly or through a recording rule it reads, so that
// a metric a change adds is placed on a dashboard or listed here.
var offDashboards = map[string]string{
	// Build and reload details: the reload's success is on the dashboards.
	"modelmon_exporter_build_info":                                   "build information, nothing to act on",
	"modelmon_exporter_config_last_reload_success_timestamp_seconds": "Sidecar configuration reloads shows whether the last reload succeeded",
	"alertd_config_last_reload_success_timestamp_seconds":            "Configuration reloads shows whether the last reload succeeded",
	"modelmon_scrape_collector_duration_seconds":                     "Sidecar collectors shows their failures; their duration is for debugging a slow scrape",
	"modelmon_capture_queue_bytes":                                   "Capture queue shows its length against its capacity, and drops say when either bound is hit",
	"modelmon_capture_queue_max_bytes":                               "a configured bound, shown by the drops when it is hit",
	// Drift: the inputs of the fleet-wide rules and the per-test detail of
	// the decision the Feature drift table shows.
	"modelmon_feature_bin_total":                "the input of the fleet-wide PSI rules of `exporter rules`, whose results are the dashboards' to read where they are loaded",
	"modelmon_feature_reference_ratio":          "the reference's bins, the other input of those rules",
	"modelmon_feature_reference_values":         "a property of the reference profile, not of traffic",
	"modelmon_feature_drift_ks_p_value":         "per-test detail of the decision the Feature drift table shows (drifted, by method)",
	"modelmon_feature_drift_chisquare_p_value":  "per-test detail of the decision the Feature drift table shows (drifted, by method)",
	"modelmon_feature_drift_z_p_value":          "per-test detail of the decision the Feature drift table shows (drifted, by method)",
	"modelmon_feature_drift_missing_p_value":    "per-test detail of the decision; Missing rate change shows the change itself",
	"modelmon_feature_drift_threshold":          "the calibrated threshold of the decision the Feature drift table shows",
	"modelmon_feature_drift_wasserstein_normed": "another distance beside PSI, Jensen–Shannon, Hellinger and KS, which the dashboard shows",
	// Quality and shadow: sums the dashboards' ratios do not need.
	"modelmon_label_peers":                           "configuration (--labels.peers discovery); Labels asked of other replicas shows whether asking them works",
	"modelmon_shadow_prediction_discordant_total":    "Shadow class pairs shows the same disagreements, by class",
	"modelmon_shadow_prediction_squared_error_total": "Shadow against labels compares the mean absolute errors",
	"modelmon_shadow_squared_difference_total":       "Shadow mean absolute difference shows the difference",
	"modelmon_payload_log_batch_max_events":          "the batch size in force, which Payload log delivery's splits explain",
	"modelmon_payload_log_spool_max_bytes":           "a configured bound; Payload log backlog shows the spool and drops say when it is full",
	// alertd: anomaly detectors' results are series of their own, read where
	// their alerts point; Alertmanager's and the rule manager's internals.
	"alertd_anomaly_score":                                  "each scored series' result; detectors' alerts fire on it, and Explore shows the series an alert names",
	"alertd_anomaly_expected":                               "each scored series' expected value, beside its score",
	"alertd_anomaly_band_lower":                             "each scored series' band, beside its score",
	"alertd_anomaly_band_upper":                             "each scored series' band, beside its score",
	"alertd_dispatcher_alerts_redelivered_total":            "a self-repair of the dispatcher: each count is a race it caught, nothing to act on",
	"alertmanager_alerts":                                   "Alertmanager's alert store; alertd_alerts shows the alerts alertd holds, by state",
	"alertmanager_alerts_per_alert_limit":                   "Alertmanager's limit, not configured by alertd",
	"alertmanager_alerts_subscriber_channel_writes_total":   "Alertmanager's internals",
	"prometheus_rule_group_duration_seconds":                "Rule group duration shows each group's last duration against its interval",
	"prometheus_rule_evaluation_duration_seconds":           "Rule group duration shows each group's last duration against its interval",
	"prometheus_rule_group_duration_histogram_seconds":      "Rule group duration shows each group's last duration against its interval",
	"prometheus_rule_evaluation_duration_histogram_seconds": "Rule group duration shows each group's last duration against its interval",
}

// dashboardFamilies returns the series names the dashboards' queries read:
// those they select, and those the recording rules they select read, down
// to the raw series.
func dashboardFamilies(t *testing.T) map[string]bool {
	t.Helper()
	recorded := recordingRules(t)
	read := map[string]bool{}
	var add func(name string)
	add = func(name string) {
		if read[name] {
			return
		}
		read[name] = true
		for _, expr := range recorded[name] {
			e, err := promql.ParseExpr(expr)
			require.NoError(t, err, "%s: %s", name, expr)
			for _, vs := range selectors(e) {
				add(vs.Name)
			}
		}
	}
	for _, q := range dashboardQueries(t) {
		for _, vs := range selectors(q.parsed) {
			add(vs.Name)
		}
	}
	return read
}

// Every family of README's metrics tables, `prefix*` rows aside, is read by
// a dashboard or is in offDashboards with the reason it is not; and every
// family in offDashboards is documented and on no dashboard.
func TestMetricsOnDashboards(t *testing.T) {
	read := dashboardFamilies(t)
	onDashboard := func(family string) bool {
		return read[family] || read[family+"_bucket"] || read[family+"_sum"] || read[family+"_count"]
	}
	documented := map[string]bool{}
	var missing []string
	for _, name := range readmetest.Load(t).TableMetrics() {
		if strings.HasSuffix(name, "*") {
			continue
		}
		documented[name] = true
		if !onDashboard(name) && offDashboards[name] == "" {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	require.Empty(t, slices.Compact(missing), "README.md documents these families, but no dashboard reads them: "+
		"add a panel for them, or say in offDashboards why an operator does not need them")
	for name := range offDashboards {
		require.True(t, documented[name], "offDashboards names %s, which no metrics table of README.md names", name)
		require.False(t, onDashboard(name), "offDashboards names %s, which a dashboard reads: take it off the list", name)
	}
}
