// Package e2e holds the end-to-end tests of the whole product, as `make run`
// shows it: real processes of the example model server, the sidecar
// (cmd/exporter), the traffic generator and alertd (cmd/alertd), with a
// feature's distribution shifting partway through, and local stand-ins for
// Slack and a CI webhook. TestDriftStory runs alertd on its embedded engine;
// TestDriftStoryWithPrometheusAndAlertmanager puts a real Prometheus (scraping
// the sidecar, evaluating the rule, alertd's data source) and a real
// Alertmanager (receiving from alertd) into the chain. It has no code of its
// own.
package e2e
