package escalate

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Errors of the events.
var (
	ErrUnknownIncident = errors.New("unknown incident")
	ErrResolved        = errors.New("incident is resolved")
	ErrNotAcknowledged = errors.New("incident is not acknowledged")
	ErrNoPolicy        = errors.New("no escalation policy matches the incident")
)

// Options configure an Engine. Zero fields take their defaults.
type Options struct {
	// RetryAfter is how long Tick waits before returning an effect not
	// reported Done again, doubling with each attempt up to MaxRetryAfter.
	// Defaults 10s and 10m.
	RetryAfter    time.Duration
	MaxRetryAfter time.Duration
	// Retention, when above 0, is how long Tick keeps a resolved incident
	// once its effects are done; with 0, resolved incidents are kept until
	// Forget.
	Retention time.Duration
}

func (o *Options) setDefaults() {
	if o.RetryAfter <= 0 {
		o.RetryAfter = 10 * time.Second
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 10 * time.Minute
	}
	if o.MaxRetryAfter < o.RetryAfter {
		o.MaxRetryAfter = o.RetryAfter
	}
}

// Engine escalates incidents by policies. Create it with New.
type Engine struct {
	opts      Options
	policies  []*policy
	byName    map[string]*policy
	incidents map[string]*Incident
	// due holds the incidents Tick has to look at, by when (dueOf by
	// id), so that a Tick costs what is due, not every incident.
	// expired are the resolved incidents past the retention Tick
	// forgets once their effects are done.
	due     dueQueue
	dueOf   map[string]*due
	expired map[string]bool
	// outbox holds the effects not reported Done, in the order enqueued,
	// and holes: an effect reported Done leaves a zero Effect (no Key)
	// until holes are half of it. outboxAt indexes it by key, pending
	// counts each incident's effects in it.
	outbox   []Effect
	holes    int
	outboxAt map[string]int
	pending  map[string]int
	// changes counts the changes to what State returns (Changes).
	changes uint64
	// ticked is Tick's buffer of the incidents due.
	ticked []*due
}

// New returns an engine with these policies, in the order they are matched.
func New(policies []Policy, o Options) (*Engine, error) {
	o.setDefaults()
	e := &Engine{opts: o, incidents: map[string]*Incident{}, dueOf: map[string]*due{}, expired: map[string]bool{},
		outboxAt: map[string]int{}, pending: map[string]int{}}
	if err := e.SetPolicies(policies); err != nil {
		return nil, err
	}
	return e, nil
}

// SetPolicies replaces the policies. Incidents keep their policy by name
// and their step by index: one whose policy is gone stops escalating, but
// still notifies its resolution.
func (e *Engine) SetPolicies(policies []Policy) error {
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
	e.reschedule()
	return nil
}

// Match returns the name of the first policy that matches s, if any.
func (e *Engine) Match(s Subject) (string, bool) {
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
func (e *Engine) Open(now time.Time, id string, s Subject, alerts []string) (string, error) {
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
	e.schedule(in)
	return name, nil
}

// AlertsChanged records the incident's firing alerts at now. When one fires
// that its acknowledgement does not cover, the acknowledgement expires and
// the chain re-triggers (after the snooze, if snoozed); it returns true
// then. Alerts that stop firing change nothing else: what is left was
// acknowledged.
func (e *Engine) AlertsChanged(now time.Time, id string, alerts []string) (bool, error) {
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
	e.schedule(in)
	return true, nil
}

// Acknowledge records that by acknowledged the incident at now: its chain
// stops until the acknowledgement ends, and the receivers notified so far
// are told. With the policy's ack timeout, the acknowledgement ends then.
// Acknowledging an acknowledged incident changes nothing.
func (e *Engine) Acknowledge(now time.Time, id, by string) error {
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
	e.schedule(in)
	return nil
}

// Unacknowledge takes the incident's acknowledgement back at now: the chain
// re-triggers from its first step (once the snooze is over, if snoozed).
func (e *Engine) Unacknowledge(now time.Time, id, by string) error {
	in, err := e.open(id)
	if err != nil {
		return err
	}
	if !in.Acked {
		return ErrNotAcknowledged
	}
	e.endAck(in, now, fmt.Sprintf("acknowledgement by %s taken back by %s", who(in.AckedBy), who(by)))
	e.schedule(in)
	return nil
}

// Snooze stops the incident's chain until until. Then, unless an
// acknowledgement is in force, the chain re-triggers from its first step.
func (e *Engine) Snooze(now time.Time, id string, until time.Time, by string) error {
	in, err := e.open(id)
	if err != nil {
		return err
	}
	if !until.After(now) {
		return fmt.Errorf("snooze until %s: not in the future", until.UTC().Format(time.RFC3339))
	}
	in.SnoozedUntil, in.SnoozedBy = until, by
	e.changes++
	e.schedule(in)
	return nil
}

// Escalate moves the incident's chain on at now, as if its current wait
// had ended: the next step runs at once (a retrain whose verification
// failed escalates its incident). An acknowledged incident's
// acknowledgement ends and its chain re-triggers; a chain that has run to
// its end starts over. A snoozed incident stays snoozed.
func (e *Engine) Escalate(now time.Time, id, why string) error {
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
	e.schedule(in)
	return nil
}

// Resolve stops the incident's chain at now and tells every receiver
// notified so far, acknowledged and snoozed or not. Resolving a resolved
// incident changes nothing.
func (e *Engine) Resolve(now time.Time, id, by string) error {
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
	e.schedule(in)
	return nil
}

// Tick runs every step due by now, each at its own due time, and returns
// the effects due: those the steps produced and those returned before but
// not reported Done whose retry time has come. It also forgets resolved
// incidents past the retention, if there is one.
//
// It looks only at the incidents due by now, taken from a priority queue,
// and runs them in the order of their ids, as it did when it went through
// every incident sorted by id.
func (e *Engine) Tick(now time.Time) []Effect {
	ticked := e.ticked[:0]
	for len(e.due) > 0 && !e.due[0].at.After(now) {
		ticked = append(ticked, heap.Pop(&e.due).(*due))
	}
	slices.SortFunc(ticked, func(a, b *due) int { return strings.Compare(a.id, b.id) })
	for _, d := range ticked {
		in := e.incidents[d.id]
		if in.Resolved {
			// Past its retention: forgotten once its effects are
			// done (prune).
			e.expired[d.id] = true
			delete(e.dueOf, d.id)
			continue
		}
		e.advance(in, now)
		e.schedule(in)
	}
	clear(ticked)
	e.ticked = ticked[:0]
	e.prune()
	var out []Effect
	for i := range e.outbox {
		ef := &e.outbox[i]
		if ef.Key == "" || ef.RetryAt.After(now) {
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
func (e *Engine) Done(key string) bool {
	i, ok := e.outboxAt[key]
	if !ok {
		return false
	}
	id := e.outbox[i].Incident
	if e.pending[id]--; e.pending[id] == 0 {
		delete(e.pending, id)
	}
	delete(e.outboxAt, key)
	e.outbox[i] = Effect{}
	e.holes++
	if e.holes > len(e.outbox)/2 {
		e.compact()
	}
	e.changes++
	return true
}

// compact takes the holes out of the outbox.
func (e *Engine) compact() {
	e.outbox = slices.DeleteFunc(e.outbox, func(ef Effect) bool { return ef.Key == "" })
	e.holes = 0
	for i, ef := range e.outbox {
		e.outboxAt[ef.Key] = i
	}
}

// Incident returns a copy of the incident's state.
func (e *Engine) Incident(id string) (Incident, bool) {
	in := e.incidents[id]
	if in == nil {
		return Incident{}, false
	}
	return *in.clone(), true
}

// Incidents returns copies of the incidents, sorted by id.
func (e *Engine) Incidents() []Incident {
	out := make([]Incident, 0, len(e.incidents))
	for _, in := range e.incidents {
		out = append(out, *in.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Pending returns the number of the incident's effects not reported Done.
func (e *Engine) Pending(id string) int { return e.pending[id] }

// Effects returns copies of the effects not reported Done, in the order
// they were enqueued.
func (e *Engine) Effects() []Effect {
	out := make([]Effect, 0, len(e.outbox)-e.holes)
	for _, ef := range e.outbox {
		if ef.Key != "" {
			out = append(out, ef.clone())
		}
	}
	return out
}

// Changes returns the number of changes to the state so far: while it
// returns the same number, State returns the same state, so a caller that
// keeps the state in a file need not encode it again. A Tick with nothing
// due changes nothing.
func (e *Engine) Changes() uint64 { return e.changes }

// State returns a copy of the whole state.
func (e *Engine) State() State {
	s := State{Incidents: make([]*Incident, 0, len(e.incidents)), Outbox: make([]Effect, 0, len(e.outbox)-e.holes)}
	for _, in := range e.incidents {
		s.Incidents = append(s.Incidents, in.clone())
	}
	sort.Slice(s.Incidents, func(i, j int) bool { return s.Incidents[i].ID < s.Incidents[j].ID })
	for _, ef := range e.outbox {
		if ef.Key != "" {
			s.Outbox = append(s.Outbox, ef.clone())
		}
	}
	return s
}

// Restore replaces the state with s, as State returned it (possibly
// through JSON).
func (e *Engine) Restore(s State) error {
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
	outboxAt := make(map[string]int, len(s.Outbox))
	pending := map[string]int{}
	for _, ef := range s.Outbox {
		if (ef.Notify == nil) == (ef.Action == nil) || ef.Key == "" {
			return fmt.Errorf("effect %q of incident %s: want a key and exactly one of notify and action", ef.Key, ef.Incident)
		}
		if _, ok := outboxAt[ef.Key]; ok {
			// Not one the engine wrote: keep the first, as enqueue
			// would have.
			continue
		}
		outboxAt[ef.Key] = len(outbox)
		pending[ef.Incident]++
		outbox = append(outbox, ef.clone())
	}
	e.incidents, e.outbox, e.outboxAt, e.pending, e.holes = incidents, outbox, outboxAt, pending, 0
	e.reschedule()
	e.changes++
	return nil
}

// open returns the incident with this id, not resolved.
func (e *Engine) open(id string) (*Incident, error) {
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
func (e *Engine) endAck(in *Incident, t time.Time, why string) {
	e.changes++
	in.Acked, in.AckedBy, in.AckedAt, in.AckUntil, in.AckedAlerts = false, "", time.Time{}, time.Time{}, nil
	if t.Before(in.SnoozedUntil) {
		in.Retrigger = why
		return
	}
	e.retrigger(in, t, why)
}

// retrigger starts a new run of the chain at t, from its first step.
func (e *Engine) retrigger(in *Incident, t time.Time, why string) {
	e.changes++
	in.Iteration++
	in.Repeats, in.RepeatedTo, in.RunReason, in.Retrigger, in.Step, in.Level = nil, 0, why, "", 0, 0
	in.NextAt = time.Time{}
	if e.byName[in.Policy] != nil {
		in.NextAt = t
	}
}

// advance runs what is due of the incident's chain by now.
func (e *Engine) advance(in *Incident, now time.Time) {
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
func (e *Engine) run(p *policy, in *Incident, t time.Time) {
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
func (e *Engine) enqueue(in *Incident, t time.Time, step int, why string, n *Notify, a *Action) {
	ev := EventAction
	if n != nil {
		ev = n.Event
	}
	key := Key(in.ID, in.Policy, in.Iteration, step, ev)
	if _, ok := e.outboxAt[key]; ok {
		return
	}
	e.outboxAt[key] = len(e.outbox)
	e.pending[in.ID]++
	e.outbox = append(e.outbox, Effect{Key: key, Incident: in.ID, Policy: in.Policy, Iteration: in.Iteration,
		Due: t, Reason: why, Notify: n, Action: a, RetryAt: t})
}

// backoff is how long to wait after an effect's nth attempt.
func (e *Engine) backoff(n int) time.Duration {
	d := e.opts.RetryAfter
	for i := 1; i < n && d < e.opts.MaxRetryAfter; i++ {
		d *= 2
	}
	return min(d, e.opts.MaxRetryAfter)
}

// prune forgets resolved incidents past the retention (expired) whose
// effects are all done.
func (e *Engine) prune() {
	if len(e.expired) == 0 {
		return
	}
	for id := range e.expired {
		if e.pending[id] == 0 {
			delete(e.incidents, id)
			delete(e.expired, id)
			e.unschedule(id)
			e.changes++
		}
	}
}

// Forget forgets a resolved incident whose effects are all done, and
// reports whether it did.
func (e *Engine) Forget(id string) bool {
	in := e.incidents[id]
	if in == nil || !in.Resolved || e.Pending(id) > 0 {
		return false
	}
	delete(e.incidents, id)
	delete(e.expired, id)
	e.unschedule(id)
	e.changes++
	return true
}

// normalize returns the alerts sorted, without duplicates.
func normalize(alerts []string) []string {
	out := slices.Clone(alerts)
	slices.Sort(out)
	return slices.Compact(out)
}

func who(by string) string {
	if by == "" {
		return "someone"
	}
	return by
}
