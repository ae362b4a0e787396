package escalate

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Boundaries of time in the chain: what wins when two things fall due at
// the same instant, and a snooze given in another time zone.
func TestEngineBoundaries(t *testing.T) {
	// ackAtStep acknowledges with a timeout that ends exactly when the
	// second level is due.
	ackAtStep := chain
	ackAtStep.Name, ackAtStep.AckTimeout = "ack-at-step", 10*time.Minute
	newYork, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		policies []Policy
		steps    []step
	}{
		{"an acknowledgement timing out when the next step is due re-triggers from the first step", []Policy{ackAtStep}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 0, do: ack("alice"), want: []string{"acknowledge 1 [l1] @0s"}},
			{at: 10*time.Minute - time.Nanosecond},
			{at: 10 * time.Minute, want: []string{"trigger 1 [l1] @10m0s"}},
			{at: 20 * time.Minute, want: []string{"escalate 2 [l2] @20m0s"}},
		}},
		{"a wait ends at its due time, not a moment before", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: 10*time.Minute - time.Nanosecond},
			{at: 10 * time.Minute, want: []string{"escalate 2 [l2] @10m0s"}},
		}},
		{"a snooze ending when the next step is due re-triggers from the first step", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: snooze(10 * time.Minute)},
			{at: 10*time.Minute - time.Nanosecond},
			{at: 10 * time.Minute, want: []string{"trigger 1 [l1] @10m0s"}},
		}},
		{"an acknowledgement timing out when the snooze ends re-triggers once", []Policy{timeout}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Minute, do: ack("alice"), want: []string{"acknowledge 1 [l1] @1m0s"}},
			{at: 2 * time.Minute, do: snooze(31 * time.Minute)},
			{at: 31 * time.Minute, want: []string{"trigger 1 [l1] @31m0s"}},
			{at: 41 * time.Minute, want: []string{"escalate 2 [l2] @41m0s"}},
		}},
		{"a snooze until a time in New York ends at that instant", []Policy{chain}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			// t0 is 09:00 UTC on 2026-03-02, 04:00 EST; 05:00 EST is t0+1h.
			{at: time.Minute, do: func(e *Engine, now time.Time) error {
				return e.Snooze(now, "inc", time.Date(2026, 3, 2, 5, 0, 0, 0, newYork), "carol")
			}},
			{at: 59 * time.Minute},
			{at: time.Hour, want: []string{"trigger 1 [l1] @1h0m0s"}},
		}},
		{"the repeats run exactly as many times as set, each at its due time", []Policy{repeating}, []step{
			{at: 0, do: open("a"), want: []string{"trigger 1 [l1] @0s"}},
			{at: time.Hour, want: []string{"escalate 2 [l2] @5m0s", "repeat 1 [l1] @10m0s", "repeat 2 [l2] @15m0s",
				"repeat 1 [l1] @20m0s", "repeat 2 [l2] @25m0s", "escalate 3 [manager l2] @30m0s"}},
			{at: 10 * time.Hour},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			play(t, tc.policies, tc.steps)
		})
	}
}

// A wait spans a restart: the state saved mid-wait, in JSON as alertd
// writes it, and restored hours later runs the step at its due time, once;
// a snooze until a time in another zone survives it too.
func TestEngineWaitAcrossRestart(t *testing.T) {
	e, err := New([]Policy{chain}, Options{})
	require.NoError(t, err)
	_, err = e.Open(t0, "inc", Subject{}, []string{"a"})
	require.NoError(t, err)
	for _, ef := range e.Tick(t0) {
		e.Done(ef.Key)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	// 10:30 CET is 09:30 UTC, t0+30m.
	require.NoError(t, e.Snooze(t0.Add(time.Minute), "inc", time.Date(2026, 3, 2, 10, 30, 0, 0, berlin), "carol"))
	b, err := json.Marshal(e.State())
	require.NoError(t, err)

	restored, err := New([]Policy{chain}, Options{})
	require.NoError(t, err)
	var st State
	require.NoError(t, json.Unmarshal(b, &st))
	require.NoError(t, restored.Restore(st))
	require.Empty(t, restored.Tick(t0.Add(29*time.Minute)), "still snoozed")
	var got []string
	for _, ef := range restored.Tick(t0.Add(45 * time.Minute)) {
		got = append(got, format(ef))
		restored.Done(ef.Key)
	}
	require.Equal(t, []string{"trigger 1 [l1] @30m0s", "escalate 2 [l2] @40m0s"}, got)
}
