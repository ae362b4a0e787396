package alertd

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// restartRules has an alert that fires at once and one that must hold for
// 6s.
const restartRules = `
groups:
  - name: restart
    rules:
      - alert: FiresAtOnce
        expr: vector(1)
      - alert: HoldsSixSeconds
        expr: vector(1)
        for: 6s
`

// alertd restarts on the same storage path: the pending alert keeps the
// time it already spent pending (Prometheus's for-state restoration from
// ALERTS_FOR_STATE) and fires soon after the restart, not 6s after it; the
// group notified before the restart is not notified again (notification
// log).
//
// As in Prometheus, a group restores its alerts' state after its second
// evaluation (1s after the first at a 1s interval), and the alert then
// holds for the rest of its 6s. Stopping after 4s of pending leaves 2s, so
// it fires about 4s after the second alertd's first evaluation; a fresh
// alert would fire exactly 6s after it. The times compared are alertd's own
// evaluation times, not the test's clock: how long alertd takes to start on
// a loaded machine does not matter.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, ""))
	writeFile(t, dir, "rules.yml", restartRules)
	o, logs := newOptions(t, dir)
	o.ForGracePeriod = time.Second
	o.OutageTolerance = time.Hour
	a, err := New(o)
	require.NoError(t, err)
	require.NoError(t, a.Start())
	first := &testAlertd{Alertd: a, URL: "http://" + a.Addr(), Dir: dir, logs: logs}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			require.NoError(t, a.Stop())
		}
		if t.Failed() {
			t.Logf("first alertd's log:\n%s", logs.String())
		}
	})

	h.wait(t, "FiresAtOnce", "firing", 30*time.Second)
	// Stop once the evaluation 4s after HoldsSixSeconds became pending has
	// recorded its state: it is then 2s from firing, which leaves the poll
	// and the stop 2s, not the 1s of an evaluation interval, to come first
	// on a loaded machine.
	var activeAt time.Time
	require.Eventually(t, func() bool {
		gs := first.rules(t)
		require.Len(t, gs, 1)
		for _, al := range findRule(t, gs, "HoldsSixSeconds").Alerts {
			require.Equal(t, "pending", al.State, "HoldsSixSeconds fired before the restart")
			activeAt = *al.ActiveAt
			return !gs[0].LastEvaluation.Before(activeAt.Add(4 * time.Second))
		}
		return false
	}, 30*time.Second, 5*time.Millisecond, "HoldsSixSeconds was never pending for 4s")
	require.NoError(t, a.Stop())
	stopped = true
	require.Empty(t, h.matching("HoldsSixSeconds", ""), "HoldsSixSeconds was notified before the restart")
	notifiedBefore := len(h.matching("FiresAtOnce", ""))
	require.Equal(t, 1, notifiedBefore)

	restart := time.Now()
	o2, logs2 := newOptions(t, dir)
	o2.ForGracePeriod, o2.OutageTolerance = o.ForGracePeriod, o.OutageTolerance
	second := start(t, dir, o2, logs2)
	var firedAt time.Time
	require.Eventually(t, func() bool {
		al, ok := second.alert(t, "HoldsSixSeconds", SourceRule)
		if ok && al.State == "firing" {
			firedAt = time.Now()
			return true
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "HoldsSixSeconds never fired after the restart")
	t.Logf("HoldsSixSeconds fired %s after the restart, was pending for %s before", firedAt.Sub(restart), restart.Sub(activeAt))

	// Both alerts' firing times are alertd's evaluation times, on the same
	// 1s grid: FiresAtOnce fired at the second alertd's first evaluation,
	// HoldsSixSeconds when its hold ran out. A fresh alert would fire
	// exactly its 6s after that first evaluation; the restored one has 2s to
	// go after the restore at the second evaluation, so fires 4s after it,
	// or 5s if alertd itself falls up to 2s behind.
	once, ok := second.alert(t, "FiresAtOnce", SourceRule)
	require.True(t, ok)
	held, ok := second.alert(t, "HoldsSixSeconds", SourceRule)
	require.True(t, ok)
	firstEval, fired := once.StartsAt, held.StartsAt
	require.True(t, firstEval.After(restart), "FiresAtOnce's start %s is not the second alertd's first evaluation (restart at %s)", firstEval, restart)
	require.Less(t, fired.Sub(firstEval), 6*time.Second, "HoldsSixSeconds fired %s after the second alertd's first evaluation: its pending time was not restored", fired.Sub(firstEval))

	// Its activeAt was restored: the original one moved by the downtime,
	// so later than the original and earlier than the second alertd's
	// first evaluation, which a fresh alert's activeAt would be.
	var restored time.Time
	for _, r := range findRule(t, second.rules(t), "HoldsSixSeconds").Alerts {
		restored = *r.ActiveAt
	}
	require.True(t, restored.After(activeAt) && restored.Before(firstEval), "activeAt %s was not restored (first %s, first evaluation after the restart %s)", restored, activeAt, firstEval)

	// HoldsSixSeconds is notified for the first time; FiresAtOnce, firing
	// again after the restart with the same labels, is not notified again.
	h.wait(t, "HoldsSixSeconds", "firing", 30*time.Second)
	require.Never(t, func() bool {
		return len(h.matching("FiresAtOnce", "")) > notifiedBefore
	}, 3*time.Second, 50*time.Millisecond, "FiresAtOnce was notified again after the restart")
	al, ok := second.alert(t, "FiresAtOnce", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State)
	h.checkWire(t)
}

// alertd restarts in the middle of a min_firing_duration hold, a deploy
// hold and a maintenance window: after the restart each still applies
// (Prometheus posts its alerts again, with their start), and each alert is
// paged exactly once, when its hold ends.
func TestRestartKeepsSuppression(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, `
intake:
  resolve_timeout: 24h
suppression:
  min_firing_duration: 1h
  deploy: {hold: 2h}
`))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	a1, err := New(o)
	require.NoError(t, err)
	require.NoError(t, a1.Start())
	a := &testAlertd{Alertd: a1, URL: "http://" + a1.Addr(), Dir: dir, logs: logs}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			require.NoError(t, a1.Stop())
		}
	})

	postDeployment(t, a, `{"model":"fraud","version":"v2"}`)
	createWindow(t, a, fmt.Sprintf(`{"name":"migration","matchers":["alertname=\"InMaintenance\""],"time_intervals":[{"weekdays":["monday:sunday"]}],"expires_at":%q}`,
		clock.Now().Add(3*time.Hour).UTC().Format(time.RFC3339)))
	startsAt := clock.Now().UTC().Format(time.RFC3339Nano)
	alerts := map[string]model.LabelSet{
		"Held":          {"alertname": "Held"},
		"DeployHeld":    {"alertname": "DeployHeld", "model": "fraud"},
		"InMaintenance": {"alertname": "InMaintenance"},
	}
	names := []string{"Held", "DeployHeld", "InMaintenance"}
	send := func(a *testAlertd) {
		t.Helper()
		for _, name := range names {
			b, err := json.Marshal(alerts[name])
			require.NoError(t, err)
			postAlertJSON(t, a, fmt.Sprintf(`{"labels":%s,"startsAt":%q}`, b, startsAt))
		}
	}
	send(a)
	for _, name := range names {
		waitFor(t, a, alerts[name], inState("suppressed"), "not held before the restart")
	}

	// Restart 30m into the holds.
	clock.skip(30 * time.Minute)
	require.NoError(t, a1.Stop())
	stopped = true
	b := start(t, dir, o, logs)
	send(b)
	for _, name := range names {
		al := waitFor(t, b, alerts[name], inState("suppressed"), "not held after the restart")
		require.Equal(t, "hold/suppressed", lastOf(al.History, "hold").Stage+"/"+lastOf(al.History, "hold").Action)
	}
	al := waitFor(t, b, alerts["DeployHeld"], inState("suppressed"), "")
	require.Contains(t, lastOf(al.History, "deploy").Reason, `model "fraud" deployed version v2`)
	al = waitFor(t, b, alerts["InMaintenance"], inState("suppressed"), "")
	require.Contains(t, lastOf(al.History, "maintenance").Reason, `in maintenance window "migration"`)
	require.Empty(t, h.all(), "a held alert was paged")

	// Each hold ends in turn; each alert is paged when its own does.
	for i, name := range names {
		clock.skip(time.Hour)
		h.wait(t, name, "firing", 30*time.Second)
		waitFor(t, b, alerts[name], inState("firing"), "not released")
		for _, later := range names[i+1:] {
			require.Empty(t, h.matching(later, ""), "%s was paged before its hold ended", later)
		}
	}
	require.Never(t, func() bool {
		for _, name := range names {
			if len(h.matching(name, "")) != 1 {
				return true
			}
		}
		return false
	}, 2*time.Second, 50*time.Millisecond, "an alert was paged more than once: %+v", h.all())
	h.checkWire(t)
}
