package alertd

import (
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelmon/modelmon/escalate"
	"github.com/modelmon/modelmon/internal/alertconfig"
)

// replayEscalation runs a configuration's escalation policies over the
// incidents a replay records, on the replay's clock, with alertd's own
// escalator (escalation_engine.go): the same sync with the incidents, the
// same engine, the same rule that a chain is quiet while every alert of its
// incident is suppressed. What alertd would carry out is recorded instead:
// notifications are not sent and actions do not run. Nobody acknowledges
// history, so a chain runs until its incident resolves or the chain ends.
type replayEscalation struct {
	x   *escalator
	rec *replayRecorder
	out []ReplayEscalation
}

// newReplayEscalation returns the escalation of a replay, nil when the
// configuration has no escalation policies.
func newReplayEscalation(cfg *alertconfig.Config, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time, rec *replayRecorder) (*replayEscalation, error) {
	policies := cfg.EscalationPolicies()
	if len(policies) == 0 {
		return nil, nil
	}
	x, err := newEscalator("", reg, logger.With("component", "escalation"), now)
	if err != nil {
		return nil, err
	}
	if err := x.setPolicies(policies); err != nil {
		return nil, err
	}
	return &replayEscalation{x: x, rec: rec}, nil
}

// before runs the steps that fell due since the last evaluation, before
// the evaluation at now changes anything: alertd's once-a-second loop runs
// them while the alerts still fire as they did. A step due at the very
// evaluation that resolves its incident does not run.
func (r *replayEscalation) before(now time.Time) {
	if r == nil {
		return
	}
	r.carryOut(r.x.tick(now.Add(-time.Nanosecond)))
}

// step tells the escalator about the incidents after the evaluation at
// now, as alertd syncs it with its ledger, and runs what is due.
func (r *replayEscalation) step(now time.Time) {
	if r == nil {
		return
	}
	r.x.sync(now, r.rec.incidents.list(now), r.rec.store.subject)
	r.carryOut(r.x.tick(now))
}

// carryOut records the effects due and reports them done. A notification
// of the chain whose incident's alerts are all suppressed is not sent by
// alertd, so it is not recorded.
func (r *replayEscalation) carryOut(effects []escalate.Effect) {
	for _, ef := range effects {
		r.x.done(ef.Key)
		in := r.rec.incidents.byID[ef.Incident]
		if in == nil {
			// Closed a day before: alertd would no longer know it either.
			continue
		}
		e := ReplayEscalation{Incident: in.GroupKey, Labels: r.rec.openedBy[in.ID], At: ef.Due, Policy: ef.Policy,
			Iteration: ef.Iteration, Reason: ef.Reason}
		switch {
		case ef.Action != nil:
			e.Event, e.Step, e.Action = string(escalate.EventAction), ef.Action.Step, ef.Action.Name
		case ef.Notify != nil:
			n := ef.Notify
			if chainEvent(n.Event) && r.rec.store.allSuppressed(in.Firing) {
				continue
			}
			e.Event, e.Level, e.Step, e.Receivers = string(n.Event), n.Level, n.Step, n.Receivers
		}
		r.out = append(r.out, e)
	}
}

// steps returns what the escalation recorded, in time order: one tick
// runs each incident's due steps in turn.
func (r *replayEscalation) steps() []ReplayEscalation {
	if r == nil {
		return nil
	}
	slices.SortStableFunc(r.out, func(a, b ReplayEscalation) int { return a.At.Compare(b.At) })
	return r.out
}
