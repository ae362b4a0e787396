package escalate

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Event says why receivers are notified.
type Event string

// The events of Notify effects.
const (
	// EventTrigger is the first level of the chain: the incident opened,
	// or was re-triggered (acknowledgement timed out, taken back or
	// expired, snooze over).
	EventTrigger Event = "trigger"
	// EventEscalate is a later level.
	EventEscalate Event = "escalate"
	// EventRepeat is a level notified again by a repeat step.
	EventRepeat Event = "repeat"
	// EventAcknowledge tells the receivers notified so far that someone
	// acknowledged the incident.
	EventAcknowledge Event = "acknowledge"
	// EventResolve tells the receivers notified so far that the incident
	// resolved.
	EventResolve Event = "resolve"
	// EventAction keys Action effects, and names them where effects of
	// both kinds are listed (a replay's report).
	EventAction Event = "action"
)

// Status is an incident's state as far as escalation goes.
type Status string

// The statuses of incidents.
const (
	StatusActive       Status = "active"
	StatusAcknowledged Status = "acknowledged"
	StatusSnoozed      Status = "snoozed"
	StatusResolved     Status = "resolved"
)

// Statuses are the statuses of incidents not resolved, for metrics.
var Statuses = []Status{StatusActive, StatusAcknowledged, StatusSnoozed}

// Incident is the escalation state of one incident.
type Incident struct {
	ID string `json:"id"`
	// Policy escalates the incident; empty when none matched it.
	Policy   string    `json:"policy,omitempty"`
	OpenedAt time.Time `json:"openedAt"`
	// Alerts are the firing alerts, sorted.
	Alerts []string `json:"alerts,omitempty"`

	// Iteration counts the runs of the chain before the current one: each
	// repeat and each re-trigger starts a new one. Repeats counts, by the
	// index of each repeat step, the repeats it made since the chain was
	// (re-)triggered.
	Iteration int         `json:"iteration"`
	Repeats   map[int]int `json:"repeats,omitempty"`
	// RepeatedTo is the index of the repeat step that started the current
	// run: the steps before it are repeats; 0 when the run is a trigger.
	// RunReason says why the run was re-triggered, if it was.
	RepeatedTo int    `json:"repeatedTo,omitempty"`
	RunReason  string `json:"runReason,omitempty"`
	// Step is the index of the next step and NextAt its due time; NextAt
	// is zero once the chain has run to its end.
	Step   int       `json:"step"`
	NextAt time.Time `json:"nextAt,omitzero"`
	// Level is the highest level notified in the current run.
	Level int `json:"level,omitempty"`
	// Notified are the receivers notified so far, in the order first
	// notified: they get the acknowledgement and the resolution.
	Notified []string `json:"notified,omitempty"`

	Acked   bool      `json:"acked,omitempty"`
	AckedBy string    `json:"ackedBy,omitempty"`
	AckedAt time.Time `json:"ackedAt,omitzero"`
	// AckUntil is when the acknowledgement times out; zero: never.
	AckUntil time.Time `json:"ackUntil,omitzero"`
	// AckedAlerts are the alerts the acknowledgement covers: another
	// firing makes it expire.
	AckedAlerts []string `json:"ackedAlerts,omitempty"`

	SnoozedUntil time.Time `json:"snoozedUntil,omitzero"`
	SnoozedBy    string    `json:"snoozedBy,omitempty"`
	// Retrigger says why the chain re-triggers when the snooze ends: an
	// acknowledgement ended during it.
	Retrigger string `json:"retrigger,omitempty"`

	Resolved   bool      `json:"resolved,omitempty"`
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
	ResolvedBy string    `json:"resolvedBy,omitempty"`
}

// Status returns the incident's status at now: resolved, snoozed,
// acknowledged or active (escalating, or at the end of its chain).
func (in *Incident) Status(now time.Time) Status {
	switch {
	case in.Resolved:
		return StatusResolved
	case now.Before(in.SnoozedUntil):
		return StatusSnoozed
	case in.Acked:
		return StatusAcknowledged
	}
	return StatusActive
}

func (in *Incident) clone() *Incident {
	c := *in
	c.Alerts = cloneStrings(in.Alerts)
	c.Notified = cloneStrings(in.Notified)
	c.AckedAlerts = cloneStrings(in.AckedAlerts)
	c.Repeats = maps.Clone(in.Repeats)
	return &c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

// Notify is an effect that notifies receivers.
type Notify struct {
	Receivers []string `json:"receivers"`
	// Step is the index of the notify step; for acknowledge and resolve,
	// of the step the chain was at.
	Step  int   `json:"step"`
	Level int   `json:"level"`
	Event Event `json:"event"`
}

// Action is an effect that runs a named action.
type Action struct {
	Name string `json:"name"`
	// Step is the index of the action step.
	Step int `json:"step"`
}

// Effect is something due that the caller carries out, then reports Done.
// Exactly one of Notify and Action is set.
type Effect struct {
	// Key identifies the effect for deduplication: the same step of the
	// same run of the same incident has the same key, restart or not.
	Key       string `json:"key"`
	Incident  string `json:"incident"`
	Policy    string `json:"policy,omitempty"`
	Iteration int    `json:"iteration"`
	// Due is when the step fell due; Reason says why it happens.
	Due    time.Time `json:"due"`
	Reason string    `json:"reason"`
	Notify *Notify   `json:"notify,omitempty"`
	Action *Action   `json:"action,omitempty"`
	// Attempts counts the times Tick returned the effect; RetryAt is when
	// it returns it again unless reported Done.
	Attempts int       `json:"attempts,omitempty"`
	RetryAt  time.Time `json:"retryAt"`
}

func (e Effect) clone() Effect {
	if e.Notify != nil {
		n := *e.Notify
		n.Receivers = cloneStrings(n.Receivers)
		e.Notify = &n
	}
	if e.Action != nil {
		a := *e.Action
		e.Action = &a
	}
	return e
}

// Key returns the idempotency key of an effect: a hash of the incident, the
// policy, the iteration, the step and the event.
func Key(incident, policy string, iteration, step int, event Event) string {
	h := sha256.New()
	for _, s := range []string{incident, policy, strconv.Itoa(iteration), strconv.Itoa(step), string(event)} {
		// Length-prefixed, so no two tuples hash alike.
		h.Write([]byte(strconv.Itoa(len(s)) + ":" + s))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// State is the engine's whole state, for JSON.
type State struct {
	// Incidents are sorted by id.
	Incidents []*Incident `json:"incidents"`
	// Outbox holds the effects not yet reported Done, oldest first.
	Outbox []Effect `json:"outbox"`
}

// describe names a step for reasons: `step 3 of policy "pager"`.
func describe(policy string, step int) string {
	var b strings.Builder
	b.WriteString("step ")
	b.WriteString(strconv.Itoa(step + 1))
	b.WriteString(" of policy ")
	b.WriteString(strconv.Quote(policy))
	return b.String()
}
