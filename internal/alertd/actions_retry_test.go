package alertd

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/outbox"
)

// savedSlot returns the slot of a schedule in actions.json.
func savedSlot(t *testing.T, dir, action string) time.Time {
	t.Helper()
	return savedState(t, dir).Slots[action]
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
	rf, hook := refuseEnqueue(t, prefix)
	a := restartActionsAlertd(t, clock, dir, hook)
	require.Eventually(t, func() bool { return !savedSlot(t, dir, "nightly").IsZero() }, 30*time.Second, 10*time.Millisecond,
		"the schedule's first slot was never recorded")
	first := savedSlot(t, dir, "nightly")

	// The next slot comes; its action never reaches the outbox.
	clock.skip(time.Hour)
	slot := first.Add(time.Hour)
	key := firstKey(t, rf.started)
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
		a.actions.enqueue = func(ms ...*outbox.Message) ([]outbox.Dropped, error) {
			dropped, err := enqueue(ms...)
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				if strings.HasPrefix(m.Key, prefix) {
					select {
					case crashed <- m.Key:
					default:
					}
					return nil, errCrash
				}
			}
			return dropped, nil
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

// retrainConfig is a retrain triggered by drift alerts, with a cooldown
// of an hour.
func retrainConfig(ci *fakeCI) string {
	return classifyDrift + `
actions:
  - name: retrain
    type: webhook
    url: ` + ci.URL + `/hooks/retrain
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
    cooldown: 1h
`
}

// githubRetrain is a retrain by GitHub's repository_dispatch at url,
// triggered by drift alerts, with the action's extra key ("timeout: 5s")
// if any.
func githubRetrain(url, extra string) string {
	if extra != "" {
		extra = "\n    " + extra
	}
	return classifyDrift + `
actions:
  - name: retrain
    type: github_repository_dispatch
    url: ` + url + `
    repository: acme/models
    token: ghp_SECRET` + extra + `
    trigger: {matchers: ['category="data_quality"']}
`
}

// An alert's action the outbox refused is retried while the alert fires:
// delivered without the alert being sent again (an Alertmanager's
// repeat_interval may be hours), with the same key, the retries counted.
func TestActionOutboxRefusalRetried(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	rf, hook := refuseEnqueue(t, "action/retrain/")
	a := startActionsAlertd(t, clock, func(string) string { return retrainConfig(ci) }, hook)
	postAlertJSON(t, a, al)
	refused := firstKey(t, rf.started)
	got := waitFor(t, a, ls, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "failed" }, "no failure in the history")
	require.Contains(t, lastOf(got.History, "action").Reason, ") not sent: "+errNoSpace.Error()+"; retried while the alert fires")

	// The disk has room again; the alert is not sent again.
	rf.refuse.Store(false)
	sent := waitRequest(t, a, "retrain", ls, inRequestState(stateDelivered), "not retried")
	require.Equal(t, refused, sent.Key)
	reqs := ci.waitRequests(t, 1)
	require.Equal(t, refused, reqs[0].Header.Get("Idempotency-Key"))
	got = waitFor(t, a, ls, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "delivered" }, "no delivery in the history")
	var actions []Decision
	for _, d := range got.History {
		if d.Stage == "action" {
			actions = append(actions, d)
		}
	}
	require.Len(t, actions, 4, "%+v", actions)
	require.Equal(t, []string{"triggered", "failed", "triggered", "delivered"},
		[]string{actions[0].Action, actions[1].Action, actions[2].Action, actions[3].Action}, "the retry's decision is recorded before its delivery")
	require.Regexp(t, `after \d+ refusals of the outbox`, actions[2].Reason)
	// Logged once the send is decided, which may come just after the delivery.
	require.Eventually(t, func() bool { return strings.Contains(a.logs.String(), "Action triggered after the outbox refused it") },
		30*time.Second, 10*time.Millisecond, "the retry was not logged")
	for _, name := range []string{"alertd_actions_enqueue_failures_total", "alertd_actions_enqueue_retries_total"} {
		v, _ := metric(t, a.Registry(), name, "action", "retrain", "trigger", "alert")
		require.GreaterOrEqual(t, v, 1.0, name)
	}
	v, _ := metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", "alert")
	require.Equal(t, 1.0, v)
	require.Never(t, func() bool { return len(ci.requests()) > 1 }, 3*time.Second, 50*time.Millisecond, "sent twice")
	require.Zero(t, pendingRetries(a.Alertd))
}

// pendingRetries returns how many alert triggers wait for a retry.
func pendingRetries(a *Alertd) int {
	a.actions.mu.Lock()
	defer a.actions.mu.Unlock()
	return len(a.actions.retries)
}

// A retry is a trigger made anew: the guardrails apply as they stand. The
// alert whose action the outbox refused is refused by the cooldown that
// another alert of its model took meanwhile, and that is recorded.
func TestActionOutboxRefusalRetryGuarded(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls1, al1 := driftAlert("fraud", "amount")
	ls2, al2 := driftAlert("fraud", "age")
	rf, hook := refuseEnqueue(t, "action/retrain/alert/"+ls1.Fingerprint().String()+"/")
	a := startActionsAlertd(t, clock, func(string) string { return retrainConfig(ci) }, hook)
	postAlertJSON(t, a, al1)
	firstKey(t, rf.started)
	waitFor(t, a, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "failed" }, "no failure in the history")
	postAlertJSON(t, a, al2)
	waitRequest(t, a, "retrain", ls2, inRequestState(stateDelivered), "the other alert's action was not delivered")

	rf.refuse.Store(false)
	req := waitRequest(t, a, "retrain", ls1, inRequestState(stateRefused), "the retry was not refused by the cooldown")
	require.Contains(t, req.Reason, "cooldown")
	got := waitFor(t, a, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "refused" }, "no refusal in the history")
	require.Contains(t, lastOf(got.History, "action").Reason, "cooldown")
	require.Never(t, func() bool { return len(ci.requests()) > 1 }, 3*time.Second, 50*time.Millisecond, "the cooldown did not hold")
}

// Retries are bounded: an alert's action the outbox keeps refusing is
// given up after the outbox's max age, and the history says so.
func TestActionOutboxRefusalGivenUp(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", classifyDrift+`
actions:
  - name: retrain
    type: webhook
    url: `+ci.URL+`/hooks/retrain
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
`)
	rf, hook := refuseEnqueue(t, "action/retrain/")
	a := runActionsAlertd(t, clock, dir, maxAge(time.Hour), hook)
	postAlertJSON(t, a, al)
	firstKey(t, rf.started)
	firstKey(t, rf.started) // a retry, refused too
	clock.skip(time.Hour)
	got := waitFor(t, a, ls, func(al alertJSON) bool {
		return strings.Contains(lastOf(al.History, "action").Reason, "given up after")
	}, "not given up")
	require.Equal(t, "failed", lastOf(got.History, "action").Action)
	// The history is written before the log line: wait for it.
	require.Eventually(t, func() bool {
		return strings.Contains(a.logs.String(), "Gave up on an action the outbox refused")
	}, 10*time.Second, 10*time.Millisecond, "no log line for the action given up")
	require.Zero(t, pendingRetries(a.Alertd))
	rf.refuse.Store(false)
	require.Never(t, func() bool { return len(ci.requests()) > 0 }, 3*time.Second, 50*time.Millisecond, "retried after it was given up")
}

// maxAge sets the outbox's max age, which bounds the actions' retries.
func maxAge(d time.Duration) func(*Options) {
	return func(o *Options) { o.Outbox.MaxAge = d }
}

// crashAfterEnqueue makes the enqueues of the action messages whose key
// starts with prefix crash once the outbox holds the message: the caller
// never learns it was stored, and the request is forgotten, as a crash
// before the state file was saved would leave it. The keys come on the
// channel. The process then looks nothing up in the outbox, as a crashed
// one would not: its retries of the trigger, until the test stops it, get
// to the enqueue and crash again.
func crashAfterEnqueue(a *Alertd, prefix string) <-chan string {
	crashed := make(chan string, 16)
	enqueue := a.actions.enqueue
	a.actions.held = nil
	a.actions.enqueue = func(ms ...*outbox.Message) ([]outbox.Dropped, error) {
		dropped, err := enqueue(ms...)
		if err != nil || !strings.HasPrefix(ms[0].Key, prefix) {
			return dropped, err
		}
		select {
		case crashed <- ms[0].Key:
		default:
		}
		return nil, errors.New("crashed")
	}
	return crashed
}

// startCrashingRetrain starts an actions alertd with one action, retrain
// (more: further keys of it), that crashes just after it enqueues a
// message whose key starts with prefix (crashAfterEnqueue); it posts al
// and returns the alertd and the message's key once the receiver got it.
func startCrashingRetrain(t *testing.T, clock *testClock, ci *fakeCI, more, prefix, al string) (*testAlertd, string) {
	t.Helper()
	var crashed <-chan string
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
actions:
  - name: retrain
    type: webhook
    url: ` + ci.URL + `/hooks/retrain
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
` + more
	}, func(a *Alertd) { crashed = crashAfterEnqueue(a, prefix) })
	postAlertJSON(t, a, al)
	key := firstKey(t, crashed)
	require.Equal(t, key, ci.waitRequests(t, 1)[0].Header.Get("Idempotency-Key"))
	return a, key
}

// A crash just after an action's enqueue, before its request is saved:
// after the restart, the same trigger (the alert taken in again) finds
// its key in the outbox, which delivered it before the crash. It is not
// sent, counted or recorded sent a second time: the request is
// delivered, sent when it was, and the history says it was not sent
// again.
func TestActionOutboxDuplicateAfterRestart(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	const prefix = "action/retrain/alert/"
	a, key := startCrashingRetrain(t, clock, ci, "    verify: {within: 1h, on_failure: escalate}\n", prefix, al)
	require.True(t, strings.HasPrefix(key, prefix), key)
	require.NoError(t, a.Stop())
	require.NotContains(t, savedActionKeys(t, a), key, "the crash lost the request")
	restarted := clock.Now()

	// Restarted on the same storage; the alert is taken in again.
	b := restartActionsAlertd(t, clock, a.Dir, nil)
	postAlertJSON(t, b, strings.Replace(al, "PSI 0.14", "PSI 0.15", 1))
	req := waitRequest(t, b, "retrain", ls, inRequestState(stateDelivered), "the request does not say its message was delivered")
	require.Equal(t, key, req.Key)
	require.True(t, req.SentAt.Before(restarted), "sent at %s, after the restart at %s", req.SentAt, restarted)
	require.WithinDuration(t, req.SentAt.Add(time.Hour), *req.VerifyBy, 0)
	require.True(t, req.DeliveredAt.Before(restarted))
	got := waitFor(t, b, ls, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "already_sent" }, "the history does not say it was sent already")
	require.Contains(t, lastOf(got.History, "action").Reason, "not sent again: the outbox holds its idempotency key "+key+" from before a restart, delivered at ")
	for _, d := range got.History {
		if d.Stage == "action" && d.Time.After(restarted) {
			require.NotEqual(t, "triggered", d.Action, "recorded sent again: %+v", d)
		}
	}
	v, _ := metric(t, b.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", "alert")
	require.Zero(t, v, "counted sent again")
	require.Eventually(t, func() bool { return slices.Contains(savedActionKeys(t, b), key) }, 30*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return len(ci.requests()) > 1 }, 2*time.Second, 50*time.Millisecond, "sent twice")
}

// A crash just after an action's enqueue, before its request is saved;
// alertd stays down past the alert's endsAt, so it is not restored, and
// after the restart another alert of the same model triggers the action
// first and takes the cooldown the lost request held. The first alert,
// sent again by its source (the same startsAt, so the same key), finds
// its key in the outbox before the guardrails: its request is delivered,
// as its message was before the crash, not refused by the cooldown; the
// history says it was not sent again, and nothing is sent or counted
// twice.
func TestActionOutboxHeldBeforeGuardrailsAfterRestart(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls1, al1 := driftAlert("fraud", "amount")
	ls2, al2 := driftAlert("fraud", "age")
	startsAt := clock.Now().UTC()
	// As Prometheus sends an alert: its start, and an end a few
	// evaluations ahead that each resend pushes back.
	sent := func(al string) string {
		return strings.TrimSuffix(al, "}") + fmt.Sprintf(`,"startsAt":%q,"endsAt":%q}`,
			startsAt.Format(time.RFC3339Nano), clock.Now().Add(5*time.Minute).UTC().Format(time.RFC3339Nano))
	}
	a, key := startCrashingRetrain(t, clock, ci, "    cooldown: 1h\n", "action/retrain/alert/"+ls1.Fingerprint().String()+"/", sent(al1))
	require.NoError(t, a.Stop())
	require.NotContains(t, savedActionKeys(t, a), key, "the crash lost the request")
	clock.skip(10 * time.Minute)
	restarted := clock.Now()

	// Restarted on the same storage: the other alert of the model takes
	// the cooldown, then the first is sent again.
	b := restartActionsAlertd(t, clock, a.Dir, nil)
	postAlertJSON(t, b, sent(al2))
	other := waitRequest(t, b, "retrain", ls2, inRequestState(stateDelivered), "the other alert's action was not delivered")
	clock.skip(time.Minute)
	postAlertJSON(t, b, sent(strings.Replace(al1, "PSI 0.14", "PSI 0.15", 1)))
	req := waitRequest(t, b, "retrain", ls1, func(actionRequest) bool { return true }, "the first alert made no request")
	require.Equal(t, stateDelivered, req.State, "%s", req.Reason)
	require.Equal(t, key, req.Key)
	require.True(t, req.SentAt.Before(restarted), "sent at %s, after the restart at %s", req.SentAt, restarted)
	require.True(t, req.DeliveredAt.Before(restarted))
	got := waitFor(t, b, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "already_sent" }, "the history does not say it was sent already")
	require.Contains(t, lastOf(got.History, "action").Reason, "not sent again: the outbox holds its idempotency key "+key+" from before a restart, delivered at ")
	v, _ := metric(t, b.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", triggerAlert)
	require.Equal(t, 1.0, v, "counted sent again")
	v, _ = metric(t, b.Registry(), "alertd_actions_refused_total", "action", "retrain", "reason", "cooldown")
	require.Zero(t, v, "refused")
	require.Contains(t, b.logs.String(), "Action in the outbox already, not sent again")

	// The cooldown holds, from the other alert's request: a third alert
	// of the model is refused.
	ls3, al3 := driftAlert("fraud", "country")
	postAlertJSON(t, b, sent(al3))
	refused := waitRequest(t, b, "retrain", ls3, inRequestState(stateRefused), "the third alert was not refused")
	require.Contains(t, refused.Reason, `triggered for model "fraud" at `+other.SentAt.UTC().Format(time.RFC3339))
	require.Eventually(t, func() bool { return slices.Contains(savedActionKeys(t, b), key) }, 30*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return len(ci.requests()) > 2 }, 2*time.Second, 50*time.Millisecond, "sent again")
}

// A crash just after an action's enqueue, before its request is saved;
// the receiver refuses the action (400), and an operator discards its dead
// letter. After the restart the same trigger (the alert taken in again)
// finds the discarded key in the outbox: the action is not sent again
// against the operator's decision, nor counted sent; the request is
// failed, with the receiver's error, and the history says it was
// discarded.
func TestActionDiscardedNotSentAgainAfterRestart(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ci.status.Store(http.StatusBadRequest)
	ls, al := driftAlert("fraud", "amount")
	const prefix = "action/retrain/alert/"
	a, key := startCrashingRetrain(t, clock, ci, "", prefix, al)
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(a.notify.Outbox().DeadLetters(), func(m outbox.Message) bool { return m.Key == key })
	}, 30*time.Second, 10*time.Millisecond, "the action was not dead-lettered")
	req, err := http.NewRequest(http.MethodDelete, a.URL+"/api/v1/outbox/dead_letters/"+url.PathEscape(key), nil)
	require.NoError(t, err)
	code, body := do(t, req)
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, a.Stop())
	require.NotContains(t, savedActionKeys(t, a), key, "the crash lost the request")

	// Restarted on the same storage; the alert is taken in again.
	b := restartActionsAlertd(t, clock, a.Dir, nil)
	postAlertJSON(t, b, strings.Replace(al, "PSI 0.14", "PSI 0.15", 1))
	got := waitRequest(t, b, "retrain", ls, func(actionRequest) bool { return true }, "the alert made no request")
	require.Equal(t, stateFailed, got.State, "%+v", got)
	require.Equal(t, key, got.Key)
	require.Equal(t, "unexpected status 400", got.LastError)
	hist := waitFor(t, b, ls, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "discarded" }, "the history does not say it was discarded")
	require.Contains(t, lastOf(hist.History, "action").Reason, "not sent again: the outbox holds its idempotency key "+key+" from before a restart, given up (unexpected status 400) and its dead letter discarded at ")
	v, _ := metric(t, b.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", triggerAlert)
	require.Zero(t, v, "counted sent again")
	v, _ = metric(t, b.Registry(), "alertd_outbox_duplicates_total", "receiver", "retrain", "integration", "action", "state", "discarded")
	require.Equal(t, 0.0, v, "dropped at the enqueue: the trigger looks the key up first")
	require.Eventually(t, func() bool { return slices.Contains(savedActionKeys(t, b), key) }, 30*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return len(ci.requests()) > 1 }, 2*time.Second, 50*time.Millisecond, "a discarded action was sent again")
}

// deployConfig is a deploy whose failed verification does onFailure
// (escalate, or the name of an action).
func deployConfig(ci *fakeCI, onFailure string) string {
	return classifyDrift + `
actions:
  - name: deploy
    type: webhook
    url: ` + ci.URL + `/hooks/deploy
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
    verify: {within: 30m, on_failure: ` + onFailure + `}
`
}

// rollbackAction is the rollback of rollbackConfig, its last action.
func rollbackAction(ci *fakeCI) string {
	return `  - name: rollback
    type: webhook
    url: ` + ci.URL + `/hooks/rollback
    secret: hook-secret
`
}

// rollbackConfig is a deploy whose failed verification runs a rollback.
func rollbackConfig(ci *fakeCI) string {
	return deployConfig(ci, "rollback") + rollbackAction(ci)
}

// ciPaths counts the requests a fake CI got by path.
func ciPaths(ci *fakeCI) map[string]int {
	out := map[string]int{}
	for _, r := range ci.requests() {
		out[r.Path]++
	}
	return out
}

// A rollback the outbox refused is retried, also after a restart (it is
// in actions.json): the verification that ran it stays pending until the
// rollback is in the outbox, then settles as failed, saying the rollback
// ran; refusals and retries are counted with trigger="rollback", and the
// history says what happened.
func TestActionRollbackOutboxRefusalRetried(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	rf, hook := refuseEnqueue(t, "action/rollback/")
	a := startActionsAlertd(t, clock, func(string) string { return rollbackConfig(ci) }, hook)
	postAlertJSON(t, a, al)
	deploy := waitRequest(t, a, "deploy", ls, inRequestState(stateDelivered), "the deploy was not delivered")

	// The alert still fires after 30 minutes: the rollback, refused.
	clock.skip(31 * time.Minute)
	key := firstKey(t, rf.started)
	require.Equal(t, "action/rollback/rollback/"+deploy.ID, key)
	got := waitFor(t, a, ls, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "failed" }, "no failure in the history")
	require.Contains(t, lastOf(got.History, "action").Reason,
		") not sent: "+errNoSpace.Error()+"; retried, the verification of request "+deploy.ID+" pending until the outbox takes it")
	v, _ := metric(t, a.Registry(), "alertd_actions_enqueue_failures_total", "action", "rollback", "trigger", "rollback")
	require.GreaterOrEqual(t, v, 1.0)
	require.Eventually(t, func() bool {
		st := savedState(t, a.Dir)
		return len(st.Rollbacks) == 1 && st.Rollbacks[0].Request == deploy.ID && st.Rollbacks[0].Key == key
	}, 30*time.Second, 10*time.Millisecond, "the rollback's retry is not saved")
	pending, ok := a.actions.get(deploy.ID)
	require.True(t, ok)
	require.Equal(t, verifyPending, pending.Verification, "settled while its rollback is not in the outbox")
	require.Empty(t, pending.FollowUp)
	require.NoError(t, a.Stop())
	require.Zero(t, ciPaths(ci)["/hooks/rollback"])

	// Restarted on the same storage, the disk has room: the rollback is
	// retried, sent once, and the verification settles.
	b := restartActionsAlertd(t, clock, a.Dir, nil)
	rb := waitRequest(t, b, "rollback", ls, inRequestState(stateDelivered), "the rollback was not retried after the restart")
	require.Equal(t, key, rb.Key)
	require.Equal(t, triggerRollback, rb.Trigger)
	failed := waitRequest(t, b, "deploy", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not settle")
	require.Regexp(t, `^ran "rollback", after \d+ refusals of the outbox$`, failed.FollowUp)
	// The history, in time order whenever the outbox delivered the
	// rollback: it triggered, the verification failed, it was delivered.
	got = waitFor(t, b, ls, func(al alertJSON) bool {
		return slices.ContainsFunc(al.History, func(d Decision) bool { return d.Action == "verification_failed" }) &&
			slices.ContainsFunc(al.History, func(d Decision) bool {
				return d.Action == "delivered" && strings.Contains(d.Reason, `action "rollback"`)
			})
	}, "no verification failure or rollback delivery in the history")
	last := requireLastActions(t, got.History, "triggered", "verification_failed", "delivered")
	require.Contains(t, last[0].Reason, `action "rollback" (webhook) sent by rollback`)
	require.Regexp(t, `after \d+ refusals of the outbox$`, last[0].Reason)
	require.Contains(t, last[1].Reason, `failed verification: the alert still fires 30m after it was sent; ran "rollback", after `)
	require.Contains(t, last[2].Reason, `action "rollback" (request `+rb.ID+`) delivered`)
	for name, want := range map[string]float64{"alertd_actions_triggered_total": 1, "alertd_actions_enqueue_retries_total": 1} {
		v, _ := metric(t, b.Registry(), name, "action", "rollback", "trigger", "rollback")
		require.Equal(t, want, v, name)
	}
	require.Eventually(t, func() bool {
		st := savedState(t, a.Dir)
		return len(st.Rollbacks) == 0
	}, 30*time.Second, 10*time.Millisecond, "the rollback's retry is still saved")
	require.Never(t, func() bool { return ciPaths(ci)["/hooks/rollback"] > 1 }, 2*time.Second, 50*time.Millisecond, "rolled back twice")
}

// A rollback the outbox keeps refusing is given up after the outbox's max
// age: the verification then settles as failed, saying so.
func TestActionRollbackOutboxRefusalGivenUp(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", rollbackConfig(ci))
	rf, hook := refuseEnqueue(t, "action/rollback/")
	a := runActionsAlertd(t, clock, dir, maxAge(time.Hour), hook)
	postAlertJSON(t, a, al)
	waitRequest(t, a, "deploy", ls, inRequestState(stateDelivered), "the deploy was not delivered")
	clock.skip(31 * time.Minute)
	firstKey(t, rf.started)
	firstKey(t, rf.started) // a retry, refused too
	clock.skip(time.Hour)
	failed := waitRequest(t, a, "deploy", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "not given up")
	require.Regexp(t, `^couldn't run "rollback": given up after \d+ refusals of the outbox in 1h\S*: action "rollback" \(request \w+\) not sent: `+
		regexp.QuoteMeta(errNoSpace.Error())+`$`, failed.FollowUp)
	require.Contains(t, a.logs.String(), "Gave up on an action the outbox refused")
	rf.refuse.Store(false)
	require.Never(t, func() bool { return ciPaths(ci)["/hooks/rollback"] > 0 }, 2*time.Second, 50*time.Millisecond, "retried after it was given up")
}

// A rollback the outbox refused whose action is removed before its retry
// (here by a restart without it; a reload does the same) is given up at
// that retry, which is not counted: the verification settles as failed,
// saying why. The rollback's series, which another request of it awaiting
// its verification would keep, show no retry.
func TestActionRollbackOfRemovedActionGivenUp(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	lsA, alA := driftAlert("fraud", "amount")
	lsB, alB := driftAlert("churn", "tenure")
	rf, hook := refuseEnqueue(t, "action/rollback/")
	rf.refuse.Store(false)
	a := startActionsAlertd(t, clock, func(string) string {
		return rollbackConfig(ci) + "    verify: {within: 2h, on_failure: escalate}\n"
	}, hook)

	// The first deploy fails verification; its rollback is sent, and
	// awaits its own verification.
	postAlertJSON(t, a, alA)
	waitRequest(t, a, "deploy", lsA, inRequestState(stateDelivered), "the first deploy was not delivered")
	clock.skip(31 * time.Minute)
	firstKey(t, rf.started)
	rbA := waitRequest(t, a, "rollback", lsA, func(r actionRequest) bool { return r.State == stateDelivered && r.Verification == verifyPending },
		"the first rollback was not delivered")

	// The second's rollback, the outbox refuses.
	rf.refuse.Store(true)
	postAlertJSON(t, a, alB)
	deployB := waitRequest(t, a, "deploy", lsB, inRequestState(stateDelivered), "the second deploy was not delivered")
	clock.skip(31 * time.Minute)
	require.Equal(t, "action/rollback/rollback/"+deployB.ID, firstKey(t, rf.started))
	require.Eventually(t, func() bool {
		st := savedState(t, a.Dir)
		return len(st.Rollbacks) == 1 && st.Rollbacks[0].Request == deployB.ID
	}, 30*time.Second, 10*time.Millisecond, "the rollback's retry is not saved")
	require.NoError(t, a.Stop())

	// Restarted without the rollback action, the disk has room: the
	// retry is given up, not counted.
	rf.refuse.Store(false)
	writeFile(t, a.Dir, "alertd.yml", deployConfig(ci, "escalate"))
	b := restartActionsAlertd(t, clock, a.Dir, nil)
	failed := waitRequest(t, b, "deploy", lsB, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not settle")
	require.Regexp(t, `^couldn't run "rollback": given up after \d+ refusals of the outbox: no such action "rollback" \(no longer configured\)$`, failed.FollowUp)
	got := waitFor(t, b, lsB, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "verification_failed" }, "no verification failure in the history")
	require.Contains(t, lastOf(got.History, "action").Reason, "; "+failed.FollowUp)
	pending, ok := b.actions.get(rbA.ID)
	require.True(t, ok)
	require.Equal(t, verifyPending, pending.Verification, "the first rollback's verification settled: its series are gone")
	// Nothing of it counted since the restart: the series are not made
	// again (a count would stay while the first rollback is open).
	require.Empty(t, actionSeries(t, b.Registry(), "rollback"), "the retry of a removed action was counted")
	require.Eventually(t, func() bool {
		st := savedState(t, a.Dir)
		return len(st.Rollbacks) == 0
	}, 30*time.Second, 10*time.Millisecond, "the rollback's retry is still saved")
	require.Equal(t, 1, ciPaths(ci)["/hooks/rollback"])
}

// A verification that fails after a reload removed the action its
// on_failure names runs nothing, and says why as a retry's give-up does.
func TestActionRollbackRemovedBeforeVerification(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	a := startActionsAlertd(t, clock, func(string) string { return rollbackConfig(ci) }, nil)
	postAlertJSON(t, a, al)
	waitRequest(t, a, "deploy", ls, inRequestState(stateDelivered), "the deploy was not delivered")

	// The rollback goes, and the deploy's verification, had it been
	// requested now, would escalate.
	reload(t, a, deployConfig(ci, "escalate"))
	clock.skip(31 * time.Minute)
	failed := waitRequest(t, a, "deploy", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not settle")
	require.Equal(t, `couldn't run "rollback": no such action "rollback" (no longer configured)`, failed.FollowUp)
	require.Zero(t, ciPaths(ci)["/hooks/rollback"])
}
