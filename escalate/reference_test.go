package escalate

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// refEngine is the engine as it was before it kept its due steps in a
// priority queue: Tick sorted every incident's id and advanced each. It is
// kept, test-only, as the reference TestEngineSameAsReference compares the
// engine with.
type refEngine struct {
	opts      Options
	policies  []*policy
	byName    map[string]*policy
	incidents map[string]*Incident
	outbox    []Effect
	// changes counts the changes to what State returns (Changes).
	changes uint64
}

// New returns an engine with these policies, in the order they are matched.
func newRefEngine(policies []Policy, o Options) (*refEngine, error) {
	o.setDefaults()
	e := &refEngine{opts: o, incidents: map[string]*Incident{}}
	if err := e.SetPolicies(policies); err != nil {
		return nil, err
	}
	return e, nil
}

// SetPolicies replaces the policies. Incidents keep their policy by name
// and their step by index: one whose policy is gone stops escalating, but
// still notifies its resolution.
func (e *refEngine) SetPolicies(policies []Policy) error {
	ps := make([]*policy, 0, len(policies))
	byName := make(map[string]*policy, len(policies))
	for i := range policies {
		p, err := compile(&policies[i])
		if err != nil {
			return fmt.Errorf("policy %d (%q): %w", i, policies[i].Name, err)
		}
		if byName[p.Name] != nil {
			return fmt.Errorf("policy %d (%q): name is not unique", i, p.Name)
		}
		byName[p.Name] = p
		ps = append(ps, p)
	}
	e.policies, e.byName = ps, byName
	return nil
}

// Match returns the name of the first policy that matches s, if any.
func (e *refEngine) Match(s Subject) (string, bool) {
	for _, p := range e.policies {
		if p.matches(s) {
			return p.Name, true
		}
	}
	return "", false
}

// Open records an incident that opened at now with these firing alerts and
// returns the policy that escalates it, "" when none matches (the incident
// is still kept, for acknowledgements). Its chain starts at now, at the
// next Tick. Opening an incident already known changes nothing.
func (e *refEngine) Open(now time.Time, id string, s Subject, alerts []string) (string, error) {
	if id == "" {
		return "", errors.New("incident without an id")
	}
	if in := e.incidents[id]; in != nil {
		return in.Policy, nil
	}
	name, _ := e.Match(s)
	in := &Incident{ID: id, Policy: name, OpenedAt: now, Alerts: normalize(alerts)}
	if name != "" {
		in.NextAt = now
	}
	e.incidents[id] = in
	e.changes++
	return name, nil
}

// AlertsChanged records the incident's firing alerts at now. When one fires
// that its acknowledgement does not cover, the acknowledgement expires and
// the chain re-triggers (after the snooze, if snoozed); it returns true
// then. Alerts that stop firing change nothing else: what is left was
// acknowledged.
func (e *refEngine) AlertsChanged(now time.Time, id string, alerts []string) (bool, error) {
	in, err := e.open(id)
	if err != nil {
		return false, err
	}
	alerts = normalize(alerts)
	if slices.Equal(alerts, in.Alerts) {
		return false, nil
	}
	in.Alerts = alerts
	e.changes++
	if !in.Acked {
		return false, nil
	}
	var added []string
	for _, a := range alerts {
		if _, ok := slices.BinarySearch(in.AckedAlerts, a); !ok {
			added = append(added, a)
		}
	}
	if len(added) == 0 {
		return false, nil
	}
	why := fmt.Sprintf("acknowledgement by %s expired: alerts %v started firing since", who(in.AckedBy), added)
	e.endAck(in, now, why)
	return true, nil
}

// Acknowledge records that by acknowledged the incident at now: its chain
// stops until the acknowledgement ends, and the receivers notified so far
// are told. With the policy's ack timeout, the acknowledgement ends then.
// Acknowledging an acknowledged incident changes nothing.
func (e *refEngine) Acknowledge(now time.Time, id, by string) error {
	in, err := e.open(id)
	if err != nil {
		return err
	}
	if in.Acked {
		return nil
	}
	in.Acked, in.AckedBy, in.AckedAt, in.AckedAlerts = true, by, now, cloneStrings(in.Alerts)
	e.changes++
	in.AckUntil = time.Time{}
	if p := e.byName[in.Policy]; p != nil && p.AckTimeout > 0 {
		in.AckUntil = now.Add(p.AckTimeout)
	}
	if len(in.Notified) > 0 {
		e.enqueue(in, now, in.Step, fmt.Sprintf("acknowledged by %s", who(by)),
			&Notify{Receivers: cloneStrings(in.Notified), Step: in.Step, Level: in.Level, Event: EventAcknowledge}, nil)
	}
	return nil
}

// Unacknowledge takes the incident's acknowledgement back at now: the chain
// re-triggers from its first step (once the snooze is over, if snoozed).
func (e *refEngine) Unacknowledge(now time.Time, id, by string) error {
	in, err := e.open(id)
	if err != nil {
		return err
	}
	if !in.Acked {
		return ErrNotAcknowledged
	}
	e.endAck(in, now, fmt.Sprintf("acknowledgement by %s taken back by %s", who(in.AckedBy), who(by)))
	return nil
}

// Snooze stops the incident's chain until until. Then, unless an
// acknowledgement is in force, the chain re-triggers from its first step.
func (e *refEngine) Snooze(now time.Time, id string, until time.Time, by string) error {
	in, err := e.open(id)
	if err != nil {
		return err
	}
	if !until.After(now) {
		return fmt.Errorf("snooze until %s: not in the future", until.UTC().Format(time.RFC3339))
	}
	in.SnoozedUntil, in.SnoozedBy = until, by
	e.changes++
	return nil
}

// Escalate moves the incident's chain on at now, as if its current wait
// had ended: the next step runs at once (a retrain whose verification
// failed escalates its incident). An acknowledged incident's
// acknowledgement ends and its chain re-triggers; a chain that has run to
// its end starts over. A snoozed incident stays snoozed.
func (e *refEngine) Escalate(now time.Time, id, why string) error {
	in, err := e.open(id)
	if err != nil {
		return err
	}
	p := e.byName[in.Policy]
	if p != nil {
		e.changes++
	}
	switch {
	case p == nil:
		return ErrNoPolicy
	case in.Acked:
		e.endAck(in, now, why)
	case in.Step >= len(p.Steps):
		e.retrigger(in, now, why)
	default:
		in.NextAt, in.RunReason = now, why
	}
	return nil
}

// Resolve stops the incident's chain at now and tells every receiver
// notified so far, acknowledged and snoozed or not. Resolving a resolved
// incident changes nothing.
func (e *refEngine) Resolve(now time.Time, id, by string) error {
	in := e.incidents[id]
	if in == nil {
		return ErrUnknownIncident
	}
	if in.Resolved {
		return nil
	}
	in.Resolved, in.ResolvedAt, in.ResolvedBy, in.NextAt = true, now, by, time.Time{}
	e.changes++
	if len(in.Notified) > 0 {
		why := "resolved"
		if by != "" {
			why += " by " + by
		}
		e.enqueue(in, now, in.Step, why,
			&Notify{Receivers: cloneStrings(in.Notified), Step: in.Step, Level: in.Level, Event: EventResolve}, nil)
	}
	return nil
}

// Tick runs every step due by now, each at its own due time, and returns
// the effects due: those the steps produced and those returned before but
// not reported Done whose retry time has come. It also forgets resolved
// incidents past the retention, if there is one.
func (e *refEngine) Tick(now time.Time) []Effect {
	ids := make([]string, 0, len(e.incidents))
	for id := range e.incidents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if in := e.incidents[id]; !in.Resolved {
			e.advance(in, now)
		}
	}
	e.prune(now)
	var out []Effect
	for i := range e.outbox {
		ef := &e.outbox[i]
		if ef.RetryAt.After(now) {
			continue
		}
		ef.Attempts++
		ef.RetryAt = now.Add(e.backoff(ef.Attempts))
		e.changes++
		out = append(out, ef.clone())
	}
	return out
}

// Done reports an effect carried out: it leaves the outbox. It returns
// false for a key not in the outbox.
func (e *refEngine) Done(key string) bool {
	i := slices.IndexFunc(e.outbox, func(ef Effect) bool { return ef.Key == key })
	if i < 0 {
		return false
	}
	e.outbox = slices.Delete(e.outbox, i, i+1)
	e.changes++
	return true
}

// Incident returns a copy of the incident's state.
func (e *refEngine) Incident(id string) (Incident, bool) {
	in := e.incidents[id]
	if in == nil {
		return Incident{}, false
	}
	return *in.clone(), true
}

// Incidents returns copies of the incidents, sorted by id.
func (e *refEngine) Incidents() []Incident {
	out := make([]Incident, 0, len(e.incidents))
	for _, in := range e.incidents {
		out = append(out, *in.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Pending returns the number of the incident's effects not reported Done.
func (e *refEngine) Pending(id string) int {
	n := 0
	for _, ef := range e.outbox {
		if ef.Incident == id {
			n++
		}
	}
	return n
}

// Effects returns copies of the effects not reported Done, in the order
// they were enqueued.
func (e *refEngine) Effects() []Effect {
	out := make([]Effect, 0, len(e.outbox))
	for _, ef := range e.outbox {
		out = append(out, ef.clone())
	}
	return out
}

// Changes returns the number of changes to the state so far: while it
// returns the same number, State returns the same state, so a caller that
// keeps the state in a file need not encode it again. A Tick with nothing
// due changes nothing.
func (e *refEngine) Changes() uint64 { return e.changes }

// State returns a copy of the whole state.
func (e *refEngine) State() State {
	s := State{Incidents: make([]*Incident, 0, len(e.incidents)), Outbox: make([]Effect, 0, len(e.outbox))}
	for _, in := range e.incidents {
		s.Incidents = append(s.Incidents, in.clone())
	}
	sort.Slice(s.Incidents, func(i, j int) bool { return s.Incidents[i].ID < s.Incidents[j].ID })
	for _, ef := range e.outbox {
		s.Outbox = append(s.Outbox, ef.clone())
	}
	return s
}

// Restore replaces the state with s, as State returned it (possibly
// through JSON).
func (e *refEngine) Restore(s State) error {
	incidents := make(map[string]*Incident, len(s.Incidents))
	for i, in := range s.Incidents {
		if in == nil || in.ID == "" {
			return fmt.Errorf("incident %d has no id", i)
		}
		if incidents[in.ID] != nil {
			return fmt.Errorf("incident %s is there twice", in.ID)
		}
		incidents[in.ID] = in.clone()
	}
	outbox := make([]Effect, 0, len(s.Outbox))
	for _, ef := range s.Outbox {
		if (ef.Notify == nil) == (ef.Action == nil) || ef.Key == "" {
			return fmt.Errorf("effect %q of incident %s: want a key and exactly one of notify and action", ef.Key, ef.Incident)
		}
		outbox = append(outbox, ef.clone())
	}
	e.incidents, e.outbox = incidents, outbox
	e.changes++
	return nil
}

// open returns the incident with this id, not resolved.
func (e *refEngine) open(id string) (*Incident, error) {
	in := e.incidents[id]
	if in == nil {
		return nil, ErrUnknownIncident
	}
	if in.Resolved {
		return nil, ErrResolved
	}
	return in, nil
}

// endAck ends the incident's acknowledgement at t: the chain re-triggers,
// unless snoozed, in which case it re-triggers when the snooze ends.
func (e *refEngine) endAck(in *Incident, t time.Time, why string) {
	e.changes++
	in.Acked, in.AckedBy, in.AckedAt, in.AckUntil, in.AckedAlerts = false, "", time.Time{}, time.Time{}, nil
	if t.Before(in.SnoozedUntil) {
		in.Retrigger = why
		return
	}
	e.retrigger(in, t, why)
}

// retrigger starts a new run of the chain at t, from its first step.
func (e *refEngine) retrigger(in *Incident, t time.Time, why string) {
	e.changes++
	in.Iteration++
	in.Repeats, in.RepeatedTo, in.RunReason, in.Retrigger, in.Step, in.Level = nil, 0, why, "", 0, 0
	in.NextAt = time.Time{}
	if e.byName[in.Policy] != nil {
		in.NextAt = t
	}
}

// advance runs what is due of the incident's chain by now.
func (e *refEngine) advance(in *Incident, now time.Time) {
	if !in.SnoozedUntil.IsZero() {
		if now.Before(in.SnoozedUntil) {
			return
		}
		end, pending := in.SnoozedUntil, in.Retrigger
		in.SnoozedUntil, in.SnoozedBy, in.Retrigger = time.Time{}, "", ""
		e.changes++
		if !in.Acked {
			why := "snooze ended"
			if pending != "" {
				why = pending + "; " + why
			}
			e.retrigger(in, end, why)
		} else if in.AckUntil.Before(end) && !in.AckUntil.IsZero() {
			// The acknowledgement timed out while snoozed: it ends
			// with the snooze.
			in.AckUntil = end
		}
	}
	if in.Acked {
		if in.AckUntil.IsZero() || now.Before(in.AckUntil) {
			return
		}
		e.endAck(in, in.AckUntil, fmt.Sprintf("acknowledgement by %s timed out", who(in.AckedBy)))
	}
	p := e.byName[in.Policy]
	if p == nil {
		return
	}
	for in.Step < len(p.Steps) && !in.NextAt.IsZero() && !in.NextAt.After(now) {
		e.run(p, in, in.NextAt)
	}
	if in.Step >= len(p.Steps) && !in.NextAt.IsZero() {
		in.NextAt = time.Time{}
		e.changes++
	}
}

// run runs the incident's next step at t, its due time.
func (e *refEngine) run(p *policy, in *Incident, t time.Time) {
	e.changes++
	i := in.Step
	s := p.Steps[i]
	switch {
	case s.Notify != nil:
		level := p.levels[i]
		ev := EventEscalate
		switch {
		case i < in.RepeatedTo:
			ev = EventRepeat
		case level == 1:
			ev = EventTrigger
		}
		why := fmt.Sprintf("%s: level %d", describe(p.Name, i), level)
		switch {
		case ev == EventRepeat:
			why += fmt.Sprintf(", repeat %d", in.Repeats[in.RepeatedTo])
		case in.RunReason != "":
			why += ", re-triggered: " + in.RunReason
		}
		e.enqueue(in, t, i, why, &Notify{Receivers: cloneStrings(s.Notify), Step: i, Level: level, Event: ev}, nil)
		for _, r := range s.Notify {
			if !slices.Contains(in.Notified, r) {
				in.Notified = append(in.Notified, r)
			}
		}
		in.Level = max(in.Level, level)
		in.Step++
	case s.Wait != 0:
		in.NextAt = t.Add(s.Wait)
		in.Step++
	case s.Repeat != 0:
		if in.Repeats[i] < s.Repeat {
			if in.Repeats == nil {
				in.Repeats = map[int]int{}
			}
			in.Repeats[i]++
			in.Iteration++
			in.RepeatedTo, in.Step, in.Level = i, 0, 0
			return
		}
		in.Step++
	case s.Action != "":
		e.enqueue(in, t, i, describe(p.Name, i), nil, &Action{Name: s.Action, Step: i})
		in.Step++
	}
}

// enqueue adds an effect due at t to the outbox, unless one with its key is
// already there.
func (e *refEngine) enqueue(in *Incident, t time.Time, step int, why string, n *Notify, a *Action) {
	ev := EventAction
	if n != nil {
		ev = n.Event
	}
	key := Key(in.ID, in.Policy, in.Iteration, step, ev)
	if slices.ContainsFunc(e.outbox, func(ef Effect) bool { return ef.Key == key }) {
		return
	}
	e.outbox = append(e.outbox, Effect{Key: key, Incident: in.ID, Policy: in.Policy, Iteration: in.Iteration,
		Due: t, Reason: why, Notify: n, Action: a, RetryAt: t})
}

// backoff is how long to wait after an effect's nth attempt.
func (e *refEngine) backoff(n int) time.Duration {
	d := e.opts.RetryAfter
	for i := 1; i < n && d < e.opts.MaxRetryAfter; i++ {
		d *= 2
	}
	return min(d, e.opts.MaxRetryAfter)
}

// prune forgets resolved incidents past the retention whose effects are
// all done.
func (e *refEngine) prune(now time.Time) {
	if e.opts.Retention <= 0 {
		return
	}
	for id, in := range e.incidents {
		if in.Resolved && now.Sub(in.ResolvedAt) >= e.opts.Retention && e.Pending(id) == 0 {
			delete(e.incidents, id)
			e.changes++
		}
	}
}

// Forget forgets a resolved incident whose effects are all done, and
// reports whether it did.
func (e *refEngine) Forget(id string) bool {
	in := e.incidents[id]
	if in == nil || !in.Resolved || e.Pending(id) > 0 {
		return false
	}
	delete(e.incidents, id)
	e.changes++
	return true
}
