// Package rules loads Prometheus rule files and evaluates them with
// Prometheus's own rule manager, so alertd keeps Prometheus's alert
// semantics exactly: pending → firing after `for`, `keep_firing_for`,
// resolved alerts re-sent for 15 minutes, `endsAt` refreshed on every resend,
// the ALERTS and ALERTS_FOR_STATE series, and `for` state restored after a
// restart with the outage tolerance and grace period.
//
// What this package adds is what alertd needs around that manager: checking
// rule files as promtool does, a query function for a remote
// Prometheus-compatible API that reports whether the data source is up, the
// rule groups' status for the API, and a runner for unit tests written in
// `promtool test rules` format.
package rules
