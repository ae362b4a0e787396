// Package lifecycle computes the delivery metrics of a model's lifecycle,
// DORA's four keys, from the deploy events CI posts to alertd
// (POST /api/v1/deployments) and the incidents alertd opened: deployment
// frequency, lead time for changes, change failure rate and time to
// restore. It is pure: the event lists and the time come in, numbers go
// out; no I/O, no clock, no goroutines.
//
// The definitions, per model and environment (deploys with no environment
// form their own group):
//
//   - A change is an event of kind deploy (a rollback is not a change).
//   - Deployment frequency is the number of changes with outcome success in
//     the window (now-Window, now], per day of the window.
//   - Lead time for changes is, for each change with outcome success and a
//     commit time, its time minus its commit time.
//   - A change is a change failure if (a) its outcome is failure or
//     rollback, or (b) the next event of its model and environment is a
//     rollback (kind rollback), or (c) an incident of its model opens at or
//     after it and before both the next change of its model and
//     environment and IncidentWindow after it. An incident is of a
//     model and environment when its alert carries that model label and
//     that environment label, or no environment label.
//   - Change failure rate is change failures / changes, over the changes in
//     the window.
//   - Time to restore is, for each change that failed by (a) or (b), the
//     time from it to the next event of its model and environment with
//     outcome success (a successful deploy or rollback); a failure not yet
//     restored has none. Failures found only by (c) do not count here, as
//     incidents leave alertd's ledger after its retention and the times
//     must only ever be added to.
package lifecycle

import (
	"math"
	"slices"
	"time"
)

// Outcomes and kinds of deploy events, as POST /api/v1/deployments takes
// them.
const (
	OutcomeSuccess  = "success"
	OutcomeFailure  = "failure"
	OutcomeRollback = "rollback"
	KindDeploy      = "deploy"
	KindRollback    = "rollback"
)

// Deployment is a deploy event.
type Deployment struct {
	Model, Environment, Version string
	// CommitTime is when the change was committed; zero if unknown.
	CommitTime time.Time
	// Time is when it was deployed.
	Time    time.Time
	Outcome string
	Kind    string
}

// Incident is an incident alertd opened for an alert of a model.
type Incident struct {
	// Model and Environment are the alert's model and environment labels;
	// Environment empty matches every environment of the model.
	Model, Environment string
	Time               time.Time
}

// Options configure Compute.
type Options struct {
	// Window is the span of the frequency and the change failure rate;
	// default 30 days.
	Window time.Duration
	// IncidentWindow is how long after a change an incident counts against
	// it; default 24h.
	IncidentWindow time.Duration
}

// Key is a model and environment.
type Key struct {
	Model, Environment string
}

// Failure reasons.
const (
	FailedOutcome  = "outcome"
	FailedRollback = "rolled_back"
	FailedIncident = "incident"
)

// Stats are the delivery metrics of a model and environment.
type Stats struct {
	// Changes and ChangeFailures count the changes in the window and those
	// that failed; Deployments those with outcome success.
	Changes, ChangeFailures, Deployments int
	// FrequencyPerDay is Deployments per day of the window.
	FrequencyPerDay float64
	// ChangeFailureRatio is ChangeFailures/Changes; NaN without changes.
	ChangeFailureRatio float64
	// LeadTimes and RestoreTimes are over all events, in event order.
	LeadTimes    []time.Duration
	RestoreTimes []time.Duration
	// Failures says why each failed change in the window failed, by its
	// index in the model's and environment's events ordered by time.
	Failures map[int]string
}

// Compute returns the stats of every model and environment with events at
// or before now.
func Compute(deps []Deployment, incs []Incident, now time.Time, o Options) map[Key]*Stats {
	if o.Window <= 0 {
		o.Window = 30 * 24 * time.Hour
	}
	if o.IncidentWindow <= 0 {
		o.IncidentWindow = 24 * time.Hour
	}
	groups := map[Key][]Deployment{}
	for _, d := range deps {
		if d.Time.After(now) {
			continue
		}
		k := Key{d.Model, d.Environment}
		groups[k] = append(groups[k], d)
	}
	out := make(map[Key]*Stats, len(groups))
	for k, evs := range groups {
		slices.SortStableFunc(evs, func(a, b Deployment) int { return a.Time.Compare(b.Time) })
		s := &Stats{Failures: map[int]string{}}
		for i, d := range evs {
			if d.Kind != KindDeploy {
				continue
			}
			if d.Outcome == OutcomeSuccess && !d.CommitTime.IsZero() && !d.CommitTime.After(d.Time) {
				s.LeadTimes = append(s.LeadTimes, d.Time.Sub(d.CommitTime))
			}
			why := ""
			switch {
			case d.Outcome == OutcomeFailure || d.Outcome == OutcomeRollback:
				why = FailedOutcome
			case i+1 < len(evs) && evs[i+1].Kind == KindRollback:
				why = FailedRollback
			}
			if why != "" {
				for _, n := range evs[i+1:] {
					if n.Outcome == OutcomeSuccess {
						s.RestoreTimes = append(s.RestoreTimes, n.Time.Sub(d.Time))
						break
					}
				}
			}
			if !d.Time.After(now.Add(-o.Window)) {
				continue
			}
			if why == "" && incidentAfter(k, d.Time, nextChange(evs, i, d.Time.Add(o.IncidentWindow)), incs, now) {
				why = FailedIncident
			}
			s.Changes++
			if d.Outcome == OutcomeSuccess {
				s.Deployments++
			}
			if why != "" {
				s.ChangeFailures++
				s.Failures[i] = why
			}
		}
		s.FrequencyPerDay = float64(s.Deployments) / (float64(o.Window) / float64(24*time.Hour))
		s.ChangeFailureRatio = math.NaN()
		if s.Changes > 0 {
			s.ChangeFailureRatio = float64(s.ChangeFailures) / float64(s.Changes)
		}
		out[k] = s
	}
	return out
}

// nextChange returns the time of the change after evs[i], or limit if
// there is none before it.
func nextChange(evs []Deployment, i int, limit time.Time) time.Time {
	for _, n := range evs[i+1:] {
		if n.Kind == KindDeploy && n.Time.Before(limit) {
			return n.Time
		}
	}
	return limit
}

// incidentAfter reports whether an incident of k opened in [from, to) and
// at or before now.
func incidentAfter(k Key, from, to time.Time, incs []Incident, now time.Time) bool {
	for _, in := range incs {
		if in.Model == k.Model && (in.Environment == "" || in.Environment == k.Environment) &&
			!in.Time.Before(from) && in.Time.Before(to) && !in.Time.After(now) {
			return true
		}
	}
	return false
}
