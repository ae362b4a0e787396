package alertd

import (
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/escalate"
	"github.com/modelmon/modelmon/internal/alertconfig"
)

// replayEscalation runs a configuration's escalation policies over the
// incidents a replay records, on the replay's clock, with alertd's own
// escalator (escalation_engine.go): the same sync with the incidents, the
// same engine, the same rule that a chain is quiet while every alert of its
// incident is suppressed. What alertd would carry out is recorded instead:
// notifications are not sent and actions do not run. History holds no
// acknowledgement: a chain runs until its incident resolves or the chain
// ends, unless the replay is given acknowledgements (a policy test's,
// --acknowledgements, the ledger's).
type replayEscalation struct {
	x   *escalator
	rec *replayRecorder
	out []ReplayEscalation
	// acks are the acknowledgements to make, in time order, from next on;
	// routes, for each, the routes of the incidents it may acknowledge
	// (nil: any).
	acks   []ReplayAcknowledgement
	routes [][]ackRoute
	next   int
	// incidents are the incidents the escalator decided about, by id, in
	// the order it first did (order).
	incidents map[string]*ReplayIncident
	order     []string
}

// ackRoute identifies the route of an incident: Alertmanager's route key
// (Route.Key()), the receiver, and the route's id (Route.ID()) when
// another route of the tree has the same key (incident.Route).
type ackRoute struct{ key, receiver, id string }

// newReplayEscalation returns the escalation of a replay, nil when the
// configuration has no escalation policies.
func newReplayEscalation(cfg *alertconfig.Config, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time, rec *replayRecorder, acks []ReplayAcknowledgement) (*replayEscalation, error) {
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
	r := &replayEscalation{x: x, rec: rec, acks: sortedAcks(acks), incidents: map[string]*ReplayIncident{}}
	r.routes = make([][]ackRoute, len(r.acks))
	for i := range r.acks {
		a := &r.acks[i]
		if a.LedgerIncident == "" {
			continue
		}
		r.routes[i] = ackRoutes(rec.routing, a)
		if r.routes[i] == nil {
			a.Scope = AckScopeAlerts
			logger.Debug("Acknowledged incident's route is not in the configuration, acknowledging every incident of its alerts",
				"ledger_incident", a.LedgerIncident, "route_key", a.RouteKey, "receiver", a.Receiver)
			continue
		}
		a.Scope = AckScopeRoute
	}
	return r, nil
}

// ackRoutes returns the routes of the tree that may be the route of the
// incident a acknowledged in alertd: those of its route key and receiver
// and, when several are and a has its route's id (Route.ID()), the one
// with that id if any, or else all of them (the ids hold the routes'
// positions, which the configurations may not share: byPosition narrows
// them down then). The routes are in the tree's order, the order an
// alert's routes match. It returns nil when there is none, or a does not
// say its route.
func ackRoutes(rt *routing, a *ReplayAcknowledgement) []ackRoute {
	if a.RouteKey == "" {
		return nil
	}
	var out []ackRoute
	rt.tree.Walk(func(m *dispatch.Route) {
		if m.Key() != a.RouteKey || m.RouteOpts.Receiver != a.Receiver {
			return
		}
		ar := ackRoute{key: m.Key(), receiver: m.RouteOpts.Receiver}
		if rt.shared[m.Key()] {
			ar.id = m.ID()
		}
		out = append(out, ar)
	})
	if len(out) > 1 && a.Route != "" {
		if i := slices.IndexFunc(out, func(ar ackRoute) bool { return ar.id == a.Route }); i >= 0 {
			return out[i : i+1]
		}
	}
	return out
}

// byPosition narrows the incidents an incident's acknowledgement from a
// ledger without route ids would acknowledge, when several of its routes
// (sibling routes with the same key and receiver) have one: to those of
// the acknowledged incident's group key when they are some, then to those
// of the first of those routes. An alertd that kept no route ids had one
// incident for such siblings' groups with one group key, which the first
// route keeps after an upgrade (incidents.find): only its chain was
// acknowledged.
func byPosition(a *ReplayAcknowledgement, routes []ackRoute, ins []*incident) []*incident {
	if a.LedgerIncident == "" || a.Route != "" || len(routes) < 2 || len(ins) < 2 {
		return ins
	}
	if a.GroupKey != "" {
		same := slices.DeleteFunc(slices.Clone(ins), func(in *incident) bool { return in.GroupKey != a.GroupKey })
		if len(same) > 0 {
			ins = same
		}
	}
	first := len(routes)
	routeOf := func(in *incident) int {
		return slices.Index(routes, ackRoute{key: in.routeKey(), receiver: in.Receiver, id: in.Route})
	}
	for _, in := range ins {
		first = min(first, routeOf(in))
	}
	return slices.DeleteFunc(ins, func(in *incident) bool { return routeOf(in) != first })
}

// sortedAcks returns a copy of acks in time order, for a replay to set
// the incidents each acknowledged: the caller's stay as they were, so
// that a comparison replays them again.
func sortedAcks(acks []ReplayAcknowledgement) []ReplayAcknowledgement {
	acks = slices.Clone(acks)
	for i := range acks {
		acks[i].Incidents = []string{}
	}
	slices.SortStableFunc(acks, func(a, b ReplayAcknowledgement) int { return a.At.Compare(b.At) })
	return acks
}

// before runs the steps that fell due since the last evaluation, before
// the evaluation at now changes anything: alertd's once-a-second loop runs
// them while the alerts still fire as they did. A step due at the very
// evaluation that resolves its incident does not run. The acknowledgements
// since the last evaluation come in their turn among the steps, and so do
// changes, the times in between that a silence or maintenance window began
// or ended, at which change looks again at the alerts (of a change and an
// acknowledgement at one time, the change first). r may be nil, without
// escalation policies: the changes are made all the same.
func (r *replayEscalation) before(now time.Time, changes []time.Time, change func(time.Time) error) error {
	for {
		// An acknowledgement at now sees what the evaluation at now
		// did (step).
		ack := r != nil && r.next < len(r.acks) && r.acks[r.next].At.Before(now)
		if len(changes) > 0 && (!ack || !r.acks[r.next].At.Before(changes[0])) {
			t := changes[0]
			changes = changes[1:]
			r.runBefore(t)
			if err := change(t); err != nil {
				return err
			}
			continue
		}
		if !ack {
			break
		}
		r.runBefore(r.acks[r.next].At)
		r.acknowledge(r.next)
		r.next++
	}
	r.runBefore(now)
	return nil
}

// runBefore runs the steps due before t.
func (r *replayEscalation) runBefore(t time.Time) {
	if r == nil {
		return
	}
	r.carryOut(r.x.tick(t.Add(-time.Nanosecond)))
}

// acknowledge acknowledges, by the i-th acknowledgement, the open,
// escalated, unacknowledged incidents whose opening alert has its labels,
// or, for an acknowledgement of alerts, those they are in (of its routes,
// for an incident's), at its time, as alertd's API does.
func (r *replayEscalation) acknowledge(i int) {
	a := &r.acks[i]
	x := r.x
	defer x.save() // after the unlock
	x.mu.Lock()
	defer x.mu.Unlock()
	var ins []*incident
	for _, in := range r.rec.incidents.list(a.At) {
		if in.ClosedAt == nil && r.acknowledges(a, r.routes[i], in) {
			ins = append(ins, in)
		}
	}
	for _, in := range byPosition(a, r.routes[i], ins) {
		if ein, ok := x.engine.Incident(in.ID); !ok || ein.Policy == "" || ein.Acked || ein.Resolved {
			continue
		}
		if x.engine.Acknowledge(a.At, in.ID, a.By) == nil {
			a.Incidents = append(a.Incidents, in.key())
			// As the API records it: an alert's acknowledgement, or
			// an incident's (from a file, or of an incident in the
			// ledger).
			d := incidentAckDecision(a.At, in.ID, incidentRequest{By: a.By}.reason())
			if a.Alerts != nil && a.LedgerIncident == "" {
				d = alertAckDecision(a.At, []string{in.ID}, a.By)
			}
			r.noteLocked(in, d)
		}
	}
}

// acknowledges reports whether a is for the incident: its opening
// alert has a's labels (and it is of a's receiver, if set) or, for an
// acknowledgement of alerts, one of them fires in it, and its route is
// one of routes unless they are nil.
func (r *replayEscalation) acknowledges(a *ReplayAcknowledgement, routes []ackRoute, in *incident) bool {
	if a.Alerts == nil {
		return labelsMatch(r.rec.openedBy[in.ID], a.Labels) && (a.Receiver == "" || in.Receiver == a.Receiver)
	}
	if routes != nil && !slices.Contains(routes, ackRoute{key: in.routeKey(), receiver: in.Receiver, id: in.Route}) {
		return false
	}
	return slices.ContainsFunc(a.Alerts, func(fp string) bool { return slices.Contains(in.Firing, fp) })
}

// labelsMatch reports whether ls has every label of sub.
func labelsMatch(ls, sub model.LabelSet) bool {
	for k, v := range sub {
		if ls[k] != v {
			return false
		}
	}
	return true
}

// acknowledged returns the acknowledgements made, with their incidents.
func (r *replayEscalation) acknowledged() []ReplayAcknowledgement {
	if r == nil {
		return nil
	}
	return r.acks
}

// step tells the escalator about the incidents after the evaluation at
// now, as alertd syncs it with its ledger, and runs what is due.
func (r *replayEscalation) step(now time.Time) {
	if r == nil {
		return
	}
	list := r.rec.incidents.list(now)
	notes := r.x.sync(now, list, r.rec.store.subject)
	r.x.mu.Lock()
	for _, n := range notes {
		if in := r.rec.incidents.byID[n.incident]; in != nil {
			r.noteLocked(in, n.d)
		}
	}
	r.x.mu.Unlock()
	r.carryOut(r.x.tick(now))
	// An acknowledgement at the evaluation's time acknowledges what it
	// paged.
	acked := false
	for ; r.next < len(r.acks) && !r.acks[r.next].At.After(now); r.next++ {
		r.acknowledge(r.next)
		acked = true
	}
	if acked {
		r.carryOut(r.x.tick(now))
	}
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
		e := ReplayEscalation{Incident: in.key(), Labels: r.rec.openedBy[in.ID], At: ef.Due, Policy: ef.Policy,
			Iteration: ef.Iteration, Reason: ef.Reason}
		var d Decision
		switch {
		case ef.Action != nil:
			e.Event, e.Step, e.Action = string(escalate.EventAction), ef.Action.Step, ef.Action.Name
			d = actionDecision(ef.Due, in.ID, ef)
		case ef.Notify != nil:
			n := ef.Notify
			if chainEvent(n.Event) && r.rec.store.allSuppressed(in.Firing) {
				r.note(in, suppressedDecision(ef.Due, in.ID, n))
				continue
			}
			e.Event, e.Level, e.Step, e.Receivers = string(n.Event), n.Level, n.Step, n.Receivers
			d = notifiedDecision(ef.Due, ef)
		}
		r.out = append(r.out, e)
		r.note(in, d)
	}
}

// note records a decision of the escalator in the incident's history, and
// its escalation state after it.
func (r *replayEscalation) note(in *incident, d Decision) {
	r.x.mu.Lock()
	defer r.x.mu.Unlock()
	r.noteLocked(in, d)
}

// noteLocked is note, called with r.x.mu held.
func (r *replayEscalation) noteLocked(in *incident, d Decision) {
	ri := r.incidents[in.ID]
	if ri == nil {
		ri = &ReplayIncident{ID: in.ID, Incident: in.key(), Labels: r.rec.openedBy[in.ID], Receiver: in.Receiver,
			OpenedAt: in.OpenedAt, History: []Decision{}}
		r.incidents[in.ID] = ri
		r.order = append(r.order, in.ID)
	}
	if in.ClosedAt != nil {
		ri.ClosedAt = *in.ClosedAt
	}
	ri.History = append(ri.History, d)
	if v := r.x.viewLocked(in.ID, d.Time); v != nil {
		ri.Escalation = reportState(v)
	}
}

// reportState is the escalation state of the API as a replay report
// has it: the same fields, the report's names.
func reportState(v *escalationJSON) *ReplayEscalationState {
	st := ReplayEscalationState(*v)
	return &st
}

// incidentHistories returns the incidents the escalator decided about, in
// the order they opened, with their escalation state at end for those it
// still knows.
func (r *replayEscalation) incidentHistories(end time.Time) []ReplayIncident {
	if r == nil {
		return nil
	}
	r.x.mu.Lock()
	defer r.x.mu.Unlock()
	out := make([]ReplayIncident, 0, len(r.order))
	for _, id := range r.order {
		ri := r.incidents[id]
		if v := r.x.viewLocked(id, end); v != nil {
			ri.Escalation = reportState(v)
		}
		if in := r.rec.incidents.byID[id]; in != nil && in.ClosedAt != nil {
			ri.ClosedAt = *in.ClosedAt
		}
		out = append(out, *ri)
	}
	slices.SortStableFunc(out, func(a, b ReplayIncident) int { return a.OpenedAt.Compare(b.OpenedAt) })
	return out
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
