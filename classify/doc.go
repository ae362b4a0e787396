// Package classify gives every alert a category, a priority and an action, and
// estimates the probability that it is a false positive from operator feedback.
// It is a pure library: no network, no logging, no goroutines, no wall clock
// (time is passed in); every decision comes back with its reason.
//
// # Rules first
//
// A Classifier holds rules from configuration, evaluated in order; the first
// whose matchers and conditions all hold decides. Matchers use Alertmanager's
// syntax (`alertname="X"`, `severity=~"warning|critical"`, `{a="b", c!="d"}`),
// regular expressions anchored at both ends. Conditions bound the alert's value
// and anomaly score, how long it has been firing, and the time of day and
// weekday in a given location. A rule that leaves its category, priority or
// action empty takes the default for it.
//
// # Defaults
//
// When no rule matches, the category comes from the alert's `category` label
// (the label modelmon's shipped rules set):
//
//	availability, performance, system_health, system  → system_health
//	drift, accuracy, model_performance, model          → model_performance
//	data_quality, data                                 → data_quality
//	business                                           → business
//	anything else or missing                           → general
//
// The priority comes from the `severity` label:
//
//	critical, page, emergency  → critical
//	error, high, major         → high
//	warning, ticket, medium    → medium
//	info, low, none            → low
//	anything else or missing   → medium
//
// and the action from both: critical is an immediate intervention, low is
// monitored, a high model-performance alert asks for a retrain, and anything
// else is investigated.
//
// # Learned false-positive probability
//
// A Model is an online logistic regression over hashed sparse features of the
// alert (its labels, source, value and anomaly score buckets, how long it has
// fired, flaps, a recent deploy, time of day, and the fingerprint's verdict
// history), updated by stochastic gradient descent with L2 decay and a fixed
// learning rate on each verdict an operator gives. It is deterministic: the
// same verdicts in the same order give the same weights. Each estimate lists
// the features that moved it most. Without feedback it returns the prior, and
// Confident reports false until enough verdicts have been seen.
package classify
