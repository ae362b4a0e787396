// Package notify routes alertd's alerts to receivers and notifies them, with
// Alertmanager's own code so that configurations behave exactly as in
// alertmanager.yml, and delivers the notifications durably through the
// outbox.
//
// Alerts go into Alertmanager's in-memory alert store (provider/mem). Its
// dispatcher matches them against the routing tree (matchers, continue) and
// sorts them into aggregation groups (group_by, group_wait, group_interval).
// Each flush of a group goes, for every integration of the route's receiver,
// through Alertmanager's stages, with the send replaced by the outbox:
//
//	DedupStage       skip unless the group changed or repeat_interval passed (nflog)
//	enqueueStage     store the notification in the outbox (fsync'd), with an
//	                 idempotency key derived from receiver, integration, group,
//	                 the alerts' fingerprints, states and starts, and the
//	                 repeat_interval it falls in
//	SetNotifiesStage record what was enqueued in the notification log
//
// The outbox (package outbox) then delivers each notification with the
// integration's sender, in order for each integration entry (a receiver's
// second webhook_configs entry does not wait for its first: as in
// Alertmanager, an integration is its name and index), retrying with
// exponential backoff and full jitter (honouring Retry-After) for up to a
// day, across restarts, and dead-letters what fails for good. A flush
// repeated after a crash lost the notification log gets the same key, and
// the outbox drops it. Each delivery is reported to Options.OnNotify and
// counted in alertd_notifications_total and
// alertd_notifications_failed_total{reason}; each attempt in
// alertd_notification_requests_total and
// alertd_notification_latency_seconds.
//
// Integrations: webhook_configs post Alertmanager's webhook payload
// (version 4, package webhook) with an Idempotency-Key header;
// alertmanager_configs forward the alerts to another Alertmanager's API
// (package alertmanager); slack_configs post to Slack, threading an
// incident's notifications (package slack); pagerduty_configs send Events
// API v2 events with the group's dedup_key (package pagerduty).
// SendToReceiver notifies a receiver outside the routing tree, for
// escalations. Routes' mute_time_intervals and active_time_intervals mute
// a flush as in Alertmanager (TimeActiveStage, TimeMuteStage); silences
// and inhibition are not used here: alertd suppresses alerts before they
// get here.
package notify
