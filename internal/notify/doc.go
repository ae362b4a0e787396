// Package notify routes alertd's alerts to receivers and notifies them, with
// Alertmanager's own code so that configurations behave exactly as in
// alertmanager.yml.
//
// Alerts go into Alertmanager's in-memory alert store (provider/mem). Its
// dispatcher matches them against the routing tree (matchers, continue) and
// sorts them into aggregation groups (group_by, group_wait, group_interval).
// Each flush of a group goes, for every integration of the route's receiver,
// through Alertmanager's stages:
//
//	DedupStage       skip unless the group changed or repeat_interval passed (nflog)
//	RetryStage       send, retrying with backoff until the next flush is due
//	SetNotifiesStage record what was sent in the notification log
//
// RetryStage is wrapped to count alertd_notifications_total and
// alertd_notifications_failed_total{reason} and to report every
// notification to Options.OnNotify; each attempt is measured in
// alertd_notification_latency_seconds.
//
// webhook_configs use Alertmanager's webhook notifier (payload version 4).
// alertmanager_configs forward the alerts to another Alertmanager's API, see
// package alertmanager. Silences, inhibition and time intervals are not
// used: alertd suppresses alerts before they get here.
package notify
