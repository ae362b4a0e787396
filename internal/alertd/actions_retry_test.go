package alertd

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/outbox"
)

// savedSlot returns the slot of a schedule in actions.json.
func savedSlot(t *testing.T, dir, action string) time.Time {
	t.Helper()
	var st actionState
	_, err := readJSON(filepath.Join(dir, "data", "actions.json"), &st)
	require.NoError(t, err)
	return st.Slots[action]
}

// A scheduled run is in the outbox or still due, never lost: a crash at
// its enqueue (the outbox refuses it, and alertd stops before it retries)
// leaves its slot due, and alertd restarted on the same storage delivers
// the run once, with the slot's key. A crash just after the enqueue,
// before the slot is saved run, repeats the run after the restart with the
// same key, which the outbox does not send again.
func TestActionScheduleCrashAtEnqueue(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	// Half past an hour: the hourly slots stay put while the test runs.
	now := time.Now()
	clock.skip(now.Truncate(time.Hour).Add(30 * time.Minute).Sub(now))
	ci := newFakeCI(t, nil, clock.Now)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", `
actions:
  - name: nightly
    type: webhook
    url: `+ci.URL+`/hooks/nightly
    secret: hook-secret
    trigger:
      schedule: {every: 1h, labels: {model: fraud}}
`)
	const prefix = "action/nightly/schedule/"
	var (
		refuse  atomic.Bool
		started <-chan string
	)
	refuse.Store(true)
	a := restartActionsAlertd(t, clock, dir, func(a *Alertd) {
		var release func()
		started, release = gateEnqueue(t, a, prefix, &refuse)
		release()
	})
	require.Eventually(t, func() bool { return !savedSlot(t, dir, "nightly").IsZero() }, 30*time.Second, 10*time.Millisecond,
		"the schedule's first slot was never recorded")
	first := savedSlot(t, dir, "nightly")

	// The next slot comes; its action never reaches the outbox.
	clock.skip(time.Hour)
	slot := first.Add(time.Hour)
	key := firstKey(t, started)
	require.Equal(t, fmt.Sprintf("%s%d", prefix, slot.Unix()), key)
	require.NoError(t, a.Stop())
	require.Equal(t, first, savedSlot(t, dir, "nightly"), "the slot was saved run, its action not in the outbox")
	require.Empty(t, ci.requests())

	// Restarted on the same storage: the run is still due, and delivered
	// once, with the slot's key.
	b := restartActionsAlertd(t, clock, dir, nil)
	got := ci.waitRequests(t, 1)
	require.Equal(t, key, got[0].Header.Get("Idempotency-Key"))
	run := waitRequest(t, b, "nightly", nil, inRequestState(stateDelivered), "the run was not delivered")
	require.Equal(t, key, run.Key)
	require.Eventually(t, func() bool { return savedSlot(t, dir, "nightly").Equal(slot) }, 30*time.Second, 10*time.Millisecond,
		"the slot was not saved run")
	require.NoError(t, b.Stop())
	require.Len(t, ci.requests(), 1, "run twice")

	// The slot after: alertd crashes just after the enqueue, before the
	// slot is saved run (the hook returns an error once the outbox holds
	// the message).
	crashed := make(chan string, 16)
	errCrash := errors.New("crashed")
	c := restartActionsAlertd(t, clock, dir, func(a *Alertd) {
		enqueue := a.actions.enqueue
		a.actions.enqueue = func(ms ...*outbox.Message) error {
			if err := enqueue(ms...); err != nil {
				return err
			}
			for _, m := range ms {
				if strings.HasPrefix(m.Key, prefix) {
					select {
					case crashed <- m.Key:
					default:
					}
					return errCrash
				}
			}
			return nil
		}
	})
	clock.skip(time.Hour)
	next := slot.Add(time.Hour)
	key2 := firstKey(t, crashed)
	require.Equal(t, fmt.Sprintf("%s%d", prefix, next.Unix()), key2)
	require.Equal(t, key2, ci.waitRequests(t, 2)[1].Header.Get("Idempotency-Key"))
	require.NoError(t, c.Stop())
	require.Equal(t, slot, savedSlot(t, dir, "nightly"))

	// After the restart the slot is due, runs with the same key, and the
	// outbox, which delivered that key, does not send it again.
	restartActionsAlertd(t, clock, dir, nil)
	require.Eventually(t, func() bool { return savedSlot(t, dir, "nightly").Equal(next) }, 30*time.Second, 10*time.Millisecond,
		"the slot did not run after the restart")
	require.Never(t, func() bool { return len(ci.requests()) > 2 }, 3*time.Second, 50*time.Millisecond, "a run was sent twice")
}
