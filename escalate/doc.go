// Package escalate runs escalation policies over incidents, in the spirit of
// Grafana OnCall's escalation chains and PagerDuty's acknowledgements. It is
// a pure library: no network, no logging, no goroutines, no wall clock. The
// caller feeds it events with the time they happened and steps it with Tick;
// what is due comes back as Effects for the caller to carry out.
//
// # Policies
//
// A Policy selects incidents with matchers in Alertmanager's syntax over the
// labels of the alert that opened the incident and two more fields from its
// classification, priority and category (`priority="critical"`,
// `category=~"model_performance|data_quality"`). The first policy that
// matches escalates the incident. Its steps run in order:
//
//	notify: [receivers]  notify the receivers; each notify step is one level (1, 2, …)
//	wait: 10m            the next step is due 10m later
//	repeat: 2            run the chain again from the start, at most 2 times
//	action: retrain      ask the caller to run a named action
//
// A policy's ack_timeout re-triggers an acknowledged incident that is not
// resolved in time, as PagerDuty's acknowledgement timeout does.
//
// # Incidents
//
// An incident is opened (Open), its set of firing alerts changes
// (AlertsChanged), an operator acknowledges it (Acknowledge), takes the
// acknowledgement back (Unacknowledge) or snoozes it (Snooze), and it
// resolves (Resolve). While acknowledged or snoozed its chain does not run.
// When the pause ends (unacknowledged, the acknowledgement timed out, an
// alert it did not cover started firing, the snooze passed with no
// acknowledgement in force) the chain starts over from its first step, as
// PagerDuty re-triggers an incident and OnCall restarts escalation. Resolve
// stops the chain and notifies every receiver notified so far, acknowledged
// or snoozed or not.
//
// # Effects, keys and state
//
// Tick(now) runs every step due by now, each at its own due time, and returns
// the effects that are due: Notify (receivers, step, level and event:
// trigger, escalate, repeat, acknowledge or resolve) and Action (name and
// step). Every effect has an idempotency key derived from the incident, the
// policy, the iteration of the chain, the step and the event, so running
// the same history again gives the same keys. Effects stay in the engine's
// outbox until the caller reports them Done; one not reported is returned
// again after a backoff, with the same key.
//
// The whole state (incidents, their step, iteration, due times,
// acknowledgements, snoozes and the outbox) is a plain value that encodes to
// JSON (State) and can be restored (Restore). Due times are stored, not
// recomputed from the time of a restart, so a restored engine ticked later
// runs each step exactly once, at the time it was due.
//
// An Engine is not safe for concurrent use.
package escalate
