// Package e2e holds the end-to-end test of the whole product, as `make run`
// shows it: real processes of the example model server, the sidecar
// (cmd/exporter), the traffic generator and alertd (cmd/alertd), with a
// feature's distribution shifting partway through, and local stand-ins for
// Slack and a CI webhook. It has no code of its own.
package e2e
