// Package dashboards builds modelmon's Grafana dashboards as code, with the
// grafana-foundation-sdk, and writes them as the JSON files Grafana
// provisions (json/*.json, loaded by provisioning/dashboards.yml).
//
// There is one builder file per dashboard: the sidecar's traffic and latency
// (overview.go), data drift (drift.go), model quality from joined labels
// (quality.go) and the alert engine (alertd.go). Defaults and the query
// helpers shared by all are in common.go. Every query takes its label
// selector from Options and the dashboards' template variables, so a
// dashboard shows the data source, namespace, job, model and version picked
// at its top.
//
// The package knows the sidecar's metric names from package collector and
// nothing else of modelmon; the tests check every name a query uses against
// what the real binaries expose on /metrics. Regenerate the JSON with
// `make dashboards` (or `go generate ./dashboards`).
package dashboards

//go:generate go run ./cmd/generate -out json
