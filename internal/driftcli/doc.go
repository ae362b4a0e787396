// Package driftcli implements the offline drift commands of the exporter
// binary: profile (build a reference profile from training data), drift
// (compare a batch of data with a reference, for a CI gate) and rules (write
// the Prometheus recording rules that compute fleet-wide PSI from the
// sidecars' bin counters).
//
// cmd/exporter only binds flags to the fields of ProfileCommand, DriftCommand
// and RulesCommand and calls their Run method, which returns the process's
// exit code: 0 on success, 1 when drift --fail-on-drift finds the dataset
// drifted or --fail-on-model-drift the model, 2 on any error (bad flags, unreadable or invalid input, a failed
// write; for drift, also a numeric feature of the current data most of whose
// values are not numbers, after the report). The statistics are package drift's; this package reads files,
// feeds drift, and formats what it returns.
package driftcli
