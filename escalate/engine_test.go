package escalate

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// chain notifies l1, then l2 10m later, then runs an action 10m after that.
var chain = Policy{
	Name: "chain",
	Steps: []Step{
		{Notify: []string{"l1"}},
		{Wait: 10 * time.Minute},
		{Notify: []string{"l2"}},
		{Wait: 10 * time.Minute},
		{Action: "page-manager"},
	},
}

// timeout is chain with a 30m acknowledgement timeout.
var timeout = func() Policy {
	p := chain
	p.Name, p.AckTimeout = "timeout", 30*time.Minute
	return p
}()

// repeating notifies l1 and l2 5m apart, repeats that twice, then
// notifies the manager.
var repeating = Policy{
	Name: "repeating",
	Steps: []Step{
		{Notify: []string{"l1"}},
		{Wait: 5 * time.Minute},
		{Notify: []string{"l2"}},
		{Wait: 5 * time.Minute},
		{Repeat: 2},
		{Notify: []string{"manager", "l2"}},
	},
}

// step is one point of a scenario: at t0+at, do the event (if any), then
// Tick (unless noTick) and compare the effects, which are then reported
// Done.
type step struct {
	at     time.Duration
	do     func(e *Engine, now time.Time) error
	want   []string
	noTick bool
}

func open(alerts ...string) func(*Engine, time.Time) error {
	return func(e *Engine, now time.Time) error {
		_, err := e.Open(now, "inc", Subject{Labels: map[string]string{"alertname": "X"}}, alerts)
		return err
	}
}

func ack(by string) func(*Engine, time.Time) error {
	return func(e *Engine, now time.Time) error { return e.Acknowledge(now, "inc", by) }
}

func unack(e *Engine, now time.Time) error { return e.Unacknowledge(now, "inc", "bob") }

func resolve(e *Engine, now time.Time) error { return e.Resolve(now, "inc", "") }

func snooze(until time.Duration) func(*Engine, time.Time) error {
	return func(e *Engine, now time.Time) error { return e.Snooze(now, "inc", t0.Add(until), "carol") }
}

func escalateNow(e *Engine, now time.Time) error {
	return e.Escalate(now, "inc", "verification failed")
}

func alertsNow(alerts ...string) func(*Engine, time.Time) error {
	return func(e *Engine, now time.Time) error {
		_, err := e.AlertsChanged(now, "inc", alerts)
		return err
	}
}

// format writes an effect as "event level [receivers] @due" or "action
// name (step index) @due", due as an offset from t0.
func format(ef Effect) string {
	due := ef.Due.Sub(t0)
	if ef.Action != nil {
		return fmt.Sprintf("action %s (step %d) @%s", ef.Action.Name, ef.Action.Step, due)
	}
	n := ef.Notify
	return fmt.Sprintf("%s %d %v @%s", n.Event, n.Level, n.Receivers, due)
}

// play runs a scenario on a new engine and returns the keys of every
// effect, in order.
func play(t *testing.T, policies []Policy, steps []step) []string {
	t.Helper()
	e, err := New(policies, Options{})
	require.NoError(t, err)
	var keys []string
	for i, s := range steps {
		now := t0.Add(s.at)
		if s.do != nil {
			require.NoError(t, s.do(e, now), "step %d at %s", i, s.at)
		}
		if s.noTick {
			continue
		}
		var got []string
		for _, ef := range e.Tick(now) {
			got = append(got, format(ef))
			keys = append(keys, ef.Key)
			require.True(t, e.Done(ef.Key))
		}
		require.Equal(t, s.want, got, "step %d at %s", i, s.at)
	}
	return keys
}

func TestEngine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policies []Policy
		steps    []step
	}{
		{"chain runs to its end", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 9 * time.Minute},
			{at: 10 * time.Minute, want: []string{"escalate 2 [l2] @10m0s"}},
			{at: 19*time.Minute + 59*time.Second},
			{at: 20 * time.Minute, want: []string{"action page-manager (step 4) @20m0s"}},
			{at: 10 * time.Hour},
		}},
		{"steps missed while not ticked run at their own due times", []Policy{chain}, []step{
			{at: 0, do: open("a"), noTick: true},
			{at: 25 * time.Minute, want: []string{"trigger 1 [l1] @0s", "escalate 2 [l2] @10m0s", "action page-manager (step 4) @20m0s"}},
		}},
		{"acknowledgement stops the chain, resolve still notifies", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 5 * time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @5m0s"}},
			{at: 6 * time.Minute, do: ack("bob")},
			{at: 10 * time.Minute},
			{at: 5 * time.Hour},
			{at: 5*time.Hour + time.Minute, do: resolve, want: []string{"resolve 1 [l1] @5h1m0s"}},
			{at: 6 * time.Hour, do: resolve},
		}},
		{"resolve while acknowledged notifies every level notified", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 10 * time.Minute, want: []string{"escalate 2 [l2] @10m0s"}},
			{at: 11 * time.Minute, do: ack("alice"), want: []string{"acknowledge 2 [l1 l2] @11m0s"}},
			{at: 12 * time.Minute, do: resolve, want: []string{"resolve 2 [l1 l2] @12m0s"}},
			{at: 2 * time.Hour},
		}},
		{"acknowledgement timeout re-triggers from the start", []Policy{timeout}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 5 * time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @5m0s"}},
			{at: 34 * time.Minute},
			{at: 35 * time.Minute, want: []string{"trigger 1 [l1] @35m0s"}},
			{at: 45 * time.Minute, want: []string{"escalate 2 [l2] @45m0s"}},
			{at: 46 * time.Minute, do: ack("bob"), want: []string{"acknowledge 2 [l1 l2] @46m0s"}},
			{at: 80 * time.Minute, do: resolve, want: []string{"resolve 2 [l1 l2] @1h20m0s"}},
			{at: 3 * time.Hour},
		}},
		{"unacknowledge re-triggers from the start", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @1m0s"}},
			{at: 3 * time.Minute, do: unack, want: []string{"trigger 1 [l1] @3m0s"}},
			{at: 10 * time.Minute},
			{at: 13 * time.Minute, want: []string{"escalate 2 [l2] @13m0s"}},
		}},
		{"a new alert firing expires the acknowledgement", []Policy{chain}, []step{
			{at: 0, do: open("a", "b"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @1m0s"}},
			{at: 2 * time.Minute, do: alertsNow("a")},
			{at: 3 * time.Minute, do: alertsNow("b", "a")},
			{at: 4 * time.Minute, do: alertsNow("a", "b", "c"), want: []string{"trigger 1 [l1] @4m0s"}},
			{at: 14 * time.Minute, want: []string{"escalate 2 [l2] @14m0s"}},
		}},
		{"escalating skips the current wait", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 3 * time.Minute, do: escalateNow, want: []string{"escalate 2 [l2] @3m0s"}},
			{at: 12 * time.Minute},
			{at: 13 * time.Minute, want: []string{"action page-manager (step 4) @13m0s"}},
		}},
		{"escalating an acknowledged incident ends the acknowledgement", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @1m0s"}},
			{at: 2 * time.Minute, do: escalateNow, want: []string{"trigger 1 [l1] @2m0s"}},
		}},
		{"escalating a finished chain starts it over", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 20 * time.Minute, want: []string{"escalate 2 [l2] @10m0s", "action page-manager (step 4) @20m0s"}},
			{at: 30 * time.Minute, do: escalateNow, want: []string{"trigger 1 [l1] @30m0s"}},
		}},
		{"snooze holds the chain, then re-triggers it", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 2 * time.Minute, do: snooze(20 * time.Minute)},
			{at: 10 * time.Minute},
			{at: 19 * time.Minute},
			{at: 21 * time.Minute, want: []string{"trigger 1 [l1] @20m0s"}},
			{at: 30 * time.Minute, want: []string{"escalate 2 [l2] @30m0s"}},
		}},
		{"an acknowledgement outlives the snooze", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 2 * time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @2m0s"}},
			{at: 3 * time.Minute, do: snooze(20 * time.Minute)},
			{at: 2 * time.Hour},
		}},
		{"unacknowledged while snoozed: one re-trigger when the snooze ends", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: snooze(20 * time.Minute)},
			{at: 2 * time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @2m0s"}},
			{at: 3 * time.Minute, do: unack},
			{at: 19 * time.Minute},
			{at: 20 * time.Minute, want: []string{"trigger 1 [l1] @20m0s"}},
			{at: 30 * time.Minute, want: []string{"escalate 2 [l2] @30m0s"}},
		}},
		{"acknowledgement timing out during a snooze ends with it", []Policy{timeout}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @1m0s"}},
			{at: 2 * time.Minute, do: snooze(time.Hour)},
			{at: 59 * time.Minute},
			{at: 61 * time.Minute, want: []string{"trigger 1 [l1] @1h0m0s"}},
		}},
		{"resolve while snoozed", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: snooze(time.Hour)},
			{at: 2 * time.Minute, do: resolve, want: []string{"resolve 1 [l1] @2m0s"}},
			{at: 2 * time.Hour},
		}},
		{"resolve before anyone was notified notifies no one", []Policy{{Name: "late", Steps: []Step{{Wait: time.Hour}, {Notify: []string{"l1"}}}}}, []step{
			{at: 0, do: open("a")},
			{at: time.Minute, do: resolve},
			{at: 2 * time.Hour},
		}},
		{"repeat runs the chain again, then goes on", []Policy{repeating}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 5 * time.Minute, want: []string{"escalate 2 [l2] @5m0s"}},
			{at: 10 * time.Minute, want: []string{"repeat 1 [l1] @10m0s"}},
			{at: 15 * time.Minute, want: []string{"repeat 2 [l2] @15m0s"}},
			{at: 25 * time.Minute, want: []string{"repeat 1 [l1] @20m0s", "repeat 2 [l2] @25m0s"}},
			{at: 30 * time.Minute, want: []string{"escalate 3 [manager l2] @30m0s"}},
			{at: 5 * time.Hour},
			{at: 6 * time.Hour, do: resolve, want: []string{"resolve 3 [l1 l2 manager] @6h0m0s"}},
		}},
		{"a re-trigger gets the repeats back", []Policy{repeating}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 10 * time.Minute, want: []string{"escalate 2 [l2] @5m0s", "repeat 1 [l1] @10m0s"}},
			{at: 11 * time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1 l2] @11m0s"}},
			{at: 12 * time.Minute, do: unack, want: []string{"trigger 1 [l1] @12m0s"}},
			{at: 42 * time.Minute, want: []string{"escalate 2 [l2] @17m0s", "repeat 1 [l1] @22m0s", "repeat 2 [l2] @27m0s",
				"repeat 1 [l1] @32m0s", "repeat 2 [l2] @37m0s", "escalate 3 [manager l2] @42m0s"}},
		}},
		{"no policy matches: nothing escalates", []Policy{{Name: "other", Matchers: []string{`alertname="Other"`}, Steps: chain.Steps}}, []step{
			{at: 0, do: open("a")},
			{at: time.Minute, do: ack("alice")},
			{at: 2 * time.Hour, do: resolve},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := play(t, tc.policies, tc.steps)
			seen := map[string]bool{}
			for _, k := range keys {
				require.False(t, seen[k], "key %s twice", k)
				seen[k] = true
			}
			// The same history gives the same keys.
			require.Equal(t, keys, play(t, tc.policies, tc.steps))
		})
	}
}

func TestEngineErrors(t *testing.T) {
	e, err := New([]Policy{chain}, Options{})
	require.NoError(t, err)
	require.ErrorIs(t, e.Acknowledge(t0, "nope", "alice"), ErrUnknownIncident)
	require.ErrorIs(t, e.Resolve(t0, "nope", ""), ErrUnknownIncident)
	_, err = e.AlertsChanged(t0, "nope", nil)
	require.ErrorIs(t, err, ErrUnknownIncident)
	_, err = e.Open(t0, "", Subject{}, nil)
	require.EqualError(t, err, "incident without an id")

	p, err := e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	require.Equal(t, "chain", p)
	p, err = e.Open(t0.Add(time.Hour), "inc", Subject{}, []string{"b"})
	require.NoError(t, err)
	require.Equal(t, "chain", p, "opening again changes nothing")
	in, _ := e.Incident("inc")
	require.Equal(t, t0, in.OpenedAt)
	require.Equal(t, []string{"a"}, in.Alerts)

	require.ErrorIs(t, e.Unacknowledge(t0, "inc", "bob"), ErrNotAcknowledged)
	require.EqualError(t, e.Snooze(t0, "inc", t0, "carol"), "snooze until 2026-03-02T09:00:00Z: not in the future")
	require.NoError(t, e.Resolve(t0, "inc", ""))
	require.ErrorIs(t, e.Acknowledge(t0, "inc", "alice"), ErrResolved)
	require.ErrorIs(t, e.Snooze(t0, "inc", t0.Add(time.Hour), "carol"), ErrResolved)
}

func TestStatus(t *testing.T) {
	e, err := New([]Policy{timeout}, Options{})
	require.NoError(t, err)
	status := func(now time.Time) Status {
		in, ok := e.Incident("inc")
		require.True(t, ok)
		return in.Status(now)
	}
	_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	require.Equal(t, StatusActive, status(t0))
	require.NoError(t, e.Acknowledge(t0, "inc", "alice"))
	in, _ := e.Incident("inc")
	require.Equal(t, t0.Add(30*time.Minute), in.AckUntil)
	require.Equal(t, "alice", in.AckedBy)
	require.Equal(t, StatusAcknowledged, status(t0))
	require.NoError(t, e.Snooze(t0, "inc", t0.Add(time.Hour), "carol"))
	require.Equal(t, StatusSnoozed, status(t0))
	require.NoError(t, e.Resolve(t0, "inc", "dave"))
	require.Equal(t, StatusResolved, status(t0))
	in, _ = e.Incident("inc")
	require.Equal(t, "dave", in.ResolvedBy)
}

// An effect not reported Done comes back with the same key, backing off;
// resolved incidents are forgotten once past the retention and done.
func TestEngineRetriesAndPrunes(t *testing.T) {
	e, err := New([]Policy{chain}, Options{RetryAfter: 10 * time.Second, MaxRetryAfter: 30 * time.Second, Retention: time.Hour})
	require.NoError(t, err)
	_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	attempts := func(at time.Duration) []int {
		var out []int
		for _, ef := range e.Tick(t0.Add(at)) {
			require.Equal(t, Key("inc", "chain", 0, 0, EventTrigger), ef.Key)
			out = append(out, ef.Attempts)
		}
		return out
	}
	require.Equal(t, []int{1}, attempts(0))
	require.Empty(t, attempts(9*time.Second))
	require.Equal(t, []int{2}, attempts(10*time.Second))
	require.Empty(t, attempts(29*time.Second))
	require.Equal(t, []int{3}, attempts(30*time.Second))
	require.Equal(t, []int{4}, attempts(60*time.Second), "capped at 30s")
	require.True(t, e.Done(Key("inc", "chain", 0, 0, EventTrigger)))
	require.False(t, e.Done(Key("inc", "chain", 0, 0, EventTrigger)))
	require.Empty(t, attempts(2*time.Minute))

	require.NoError(t, e.Resolve(t0.Add(5*time.Minute), "inc", ""))
	efs := e.Tick(t0.Add(5 * time.Minute))
	require.Len(t, efs, 1)
	e.Tick(t0.Add(2 * time.Hour))
	_, ok := e.Incident("inc")
	require.True(t, ok, "kept while its resolution is not done")
	require.True(t, e.Done(efs[0].Key))
	e.Tick(t0.Add(2 * time.Hour))
	_, ok = e.Incident("inc")
	require.False(t, ok)

	// Without a retention, resolved incidents stay until forgotten.
	e, err = New([]Policy{chain}, Options{})
	require.NoError(t, err)
	_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	require.False(t, e.Forget("inc"), "not resolved")
	e.Tick(t0)
	require.NoError(t, e.Resolve(t0, "inc", ""))
	e.Tick(t0.Add(1000 * time.Hour))
	require.False(t, e.Forget("inc"), "effects not done")
	for _, ef := range e.State().Outbox {
		e.Done(ef.Key)
	}
	require.True(t, e.Forget("inc"))
	require.False(t, e.Forget("inc"))
}

// The state is saved mid-chain, through JSON, and restored into a new
// engine ticked later: each step runs once, at its own due time, with the
// keys the first engine gives; an effect returned but not reported Done
// before the save comes back with its key.
func TestSaveRestoreMidChain(t *testing.T) {
	run := func(e *Engine, at time.Duration) []string {
		var out []string
		for _, ef := range e.Tick(t0.Add(at)) {
			out = append(out, format(ef)+" "+ef.Key)
			e.Done(ef.Key)
		}
		return out
	}
	start := func() *Engine {
		e, err := New([]Policy{timeout}, Options{})
		require.NoError(t, err)
		_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
		require.NoError(t, err)
		require.Len(t, run(e, 0), 1)
		return e
	}
	restore := func(e *Engine) *Engine {
		b, err := json.Marshal(e.State())
		require.NoError(t, err)
		var s State
		require.NoError(t, json.Unmarshal(b, &s))
		r, err := New([]Policy{timeout}, Options{})
		require.NoError(t, err)
		require.NoError(t, r.Restore(s))
		require.Equal(t, e.State(), r.State())
		return r
	}

	// The reference: no restart.
	ref := start()
	want := map[time.Duration][]string{}
	for _, at := range []time.Duration{5 * time.Minute, 12 * time.Minute, 25 * time.Minute} {
		want[at] = run(ref, at)
	}
	require.Len(t, want[12*time.Minute], 1)
	require.True(t, strings.HasPrefix(want[12*time.Minute][0], "escalate 2 [l2] @10m0s"))

	// Saved at 5m, restored and next ticked at 12m.
	e := start()
	require.Empty(t, run(e, 5*time.Minute))
	e = restore(e)
	require.Equal(t, want[12*time.Minute], run(e, 12*time.Minute))
	require.Empty(t, run(e, 12*time.Minute))
	e = restore(e)
	require.Equal(t, want[25*time.Minute], run(e, 25*time.Minute))

	// Saved while the escalation was out but not done: it comes back once
	// its retry is due, with the same key.
	e = start()
	out := e.Tick(t0.Add(10 * time.Minute))
	require.Len(t, out, 1)
	e = restore(e)
	require.Empty(t, e.Tick(t0.Add(10*time.Minute+time.Second)))
	again := e.Tick(t0.Add(11 * time.Minute))
	require.Len(t, again, 1)
	require.Equal(t, out[0].Key, again[0].Key)
	require.Equal(t, 2, again[0].Attempts)

	// Acknowledged, saved, and restored after the acknowledgement timed out.
	e = start()
	require.NoError(t, e.Acknowledge(t0.Add(time.Minute), "inc", "alice"))
	require.Len(t, run(e, time.Minute), 1)
	e = restore(e)
	require.Equal(t, []string{"trigger 1 [l1] @31m0s " + Key("inc", "timeout", 1, 0, EventTrigger)}, run(e, 40*time.Minute))

	require.EqualError(t, e.Restore(State{Incidents: []*Incident{{ID: "a"}, {ID: "a"}}}), "incident a is there twice")
	require.EqualError(t, e.Restore(State{Outbox: []Effect{{Key: "k", Incident: "a"}}}), `effect "k" of incident a: want a key and exactly one of notify and action`)
}

// Effects carry why they happen.
func TestEffectReasons(t *testing.T) {
	e, err := New([]Policy{timeout}, Options{})
	require.NoError(t, err)
	_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	reasons := func(at time.Duration) []string {
		var out []string
		for _, ef := range e.Tick(t0.Add(at)) {
			out = append(out, ef.Reason)
			e.Done(ef.Key)
		}
		return out
	}
	require.Equal(t, []string{`step 1 of policy "timeout": level 1`}, reasons(0))
	require.NoError(t, e.Acknowledge(t0.Add(time.Minute), "inc", "alice"))
	require.Equal(t, []string{"acknowledged by alice"}, reasons(time.Minute))
	require.Equal(t, []string{`step 1 of policy "timeout": level 1, re-triggered: acknowledgement by alice timed out`}, reasons(31*time.Minute))
	require.Equal(t, []string{`step 3 of policy "timeout": level 2, re-triggered: acknowledgement by alice timed out`}, reasons(41*time.Minute))
	require.Equal(t, []string{`step 5 of policy "timeout"`}, reasons(51*time.Minute))
	require.NoError(t, e.Resolve(t0.Add(time.Hour), "inc", "bob"))
	require.Equal(t, []string{"resolved by bob"}, reasons(time.Hour))
}

// A reload that removes an incident's policy stops its chain; its
// resolution still notifies.
func TestPolicyRemoved(t *testing.T) {
	e, err := New([]Policy{chain}, Options{})
	require.NoError(t, err)
	_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	require.Len(t, e.Tick(t0), 1)
	require.NoError(t, e.SetPolicies(nil))
	require.Len(t, e.Tick(t0.Add(time.Hour)), 1, "the trigger, not done, comes back")
	pending := e.Effects()
	require.Len(t, pending, 1, "the trigger is still pending")
	require.Equal(t, "chain", pending[0].Policy)
	require.Equal(t, EventTrigger, pending[0].Notify.Event)
	require.Equal(t, 1, pending[0].Notify.Level)
	require.NoError(t, e.Resolve(t0.Add(2*time.Hour), "inc", ""))
	efs := e.Tick(t0.Add(2 * time.Hour))
	require.Len(t, efs, 2)
	require.Equal(t, EventResolve, efs[1].Notify.Event)
	for _, ef := range efs {
		require.True(t, e.Done(ef.Key))
	}
	require.Empty(t, e.Effects())
}

// Changes moves whenever State changes, and a Tick with nothing due leaves
// it: a caller that wrote the state at some count need not encode it again
// while the count stays.
func TestEngineChanges(t *testing.T) {
	snoozy := Policy{Name: "snoozy", Matchers: []string{`team="b"`}, AckTimeout: 30 * time.Minute,
		Steps: []Step{{Wait: 5 * time.Minute}, {Notify: []string{"l1"}}, {Repeat: 1}}}
	e, err := New([]Policy{snoozy, chain}, Options{Retention: time.Hour})
	require.NoError(t, err)
	state := func() string {
		b, err := json.Marshal(e.State())
		require.NoError(t, err)
		return string(b)
	}
	// do runs f and checks that Changes moved if, and only if, the
	// state did, as want says.
	do := func(what string, want bool, f func()) {
		t.Helper()
		before, n := state(), e.Changes()
		f()
		changed := state() != before
		require.Equal(t, want, changed, "%s: state changed", what)
		require.Equal(t, changed, e.Changes() != n, "%s: Changes moved", what)
	}
	tick := func(at time.Duration) func() {
		return func() {
			for _, ef := range e.Tick(t0.Add(at)) {
				e.Done(ef.Key)
			}
		}
	}
	do("open", true, func() { _, _ = e.Open(t0, "a", Subject{}, []string{"x"}) })
	do("open b", true, func() { _, _ = e.Open(t0, "b", Subject{Labels: map[string]string{"team": "b"}}, []string{"y"}) })
	do("open again", false, func() { _, _ = e.Open(t0, "a", Subject{}, []string{"x"}) })
	do("trigger and wait", true, tick(0))
	do("nothing due", false, tick(time.Minute))
	do("nothing due again", false, tick(2*time.Minute))
	do("wait over", true, tick(5*time.Minute))
	do("same alerts", false, func() { _, _ = e.AlertsChanged(t0, "a", []string{"x"}) })
	do("alerts changed", true, func() { _, _ = e.AlertsChanged(t0, "a", []string{"x", "z"}) })
	do("acknowledge", true, func() { require.NoError(t, e.Acknowledge(t0.Add(6*time.Minute), "b", "op")) })
	do("acknowledge again", false, func() { require.NoError(t, e.Acknowledge(t0.Add(6*time.Minute), "b", "op")) })
	do("acknowledgement sent", true, tick(7*time.Minute))
	do("acknowledged, nothing due", false, tick(8*time.Minute))
	do("snooze", true, func() { require.NoError(t, e.Snooze(t0.Add(7*time.Minute), "b", t0.Add(time.Hour), "op")) })
	do("chain a to its end", true, tick(30*time.Minute))
	do("snoozed, nothing due", false, tick(40*time.Minute))
	do("snooze over, acknowledgement timed out", true, tick(time.Hour))
	do("escalate", true, func() { require.NoError(t, e.Escalate(t0.Add(time.Hour), "a", "test")) })
	do("escalated", true, tick(time.Hour))
	do("unacknowledge", false, func() { require.Error(t, e.Unacknowledge(t0.Add(time.Hour), "b", "op")) })
	do("resolve", true, func() { require.NoError(t, e.Resolve(t0.Add(time.Hour), "a", "")) })
	do("resolve again", false, func() { require.NoError(t, e.Resolve(t0.Add(time.Hour), "a", "")) })
	do("resolution sent", true, tick(time.Hour))
	do("pruned", true, tick(3*time.Hour))
	do("done unknown", false, func() { require.False(t, e.Done("nope")) })
	do("restore", true, func() { require.NoError(t, e.Restore(State{})) })
}
