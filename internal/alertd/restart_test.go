package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// restartRules has an alert that fires at once and one that must hold for
// 10s.
const restartRules = `
groups:
  - name: restart
    rules:
      - alert: FiresAtOnce
        expr: vector(1)
      - alert: HoldsTenSeconds
        expr: vector(1)
        for: 10s
`

// alertd restarts on the same storage path: the pending alert keeps the
// time it already spent pending (Prometheus's for-state restoration from
// ALERTS_FOR_STATE) and fires the rest of its 10s hold after the restart,
// not 10s after it; the group notified before the restart is not notified
// again (notification log).
//
// As in Prometheus, a group restores its alerts' state after its second
// evaluation (1s after the first at a 1s interval), and the alert then
// holds for the rest of its 10s. Stopping after 4s of pending leaves 6s
// for the poll and the stop to come before it would fire in the first
// alertd; the second waits as much for it to fire, so each second of
// margin costs one of run time.
//
// What tells the restored alert from a fresh one is its activeAt: the
// original one moved by the time alertd was down (ts − downAt in
// Prometheus's RestoreForState), 4s or more before the restore, where a
// fresh alert's is the second alertd's first evaluation. Its firing time
// is not compared: a stall of alertd on a loaded machine delays the
// evaluation it fires at as it would a fresh alert's.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, ""))
	writeFile(t, dir, "rules.yml", restartRules)
	o, logs := newOptions(t, dir)
	o.ForGracePeriod = time.Second
	o.OutageTolerance = time.Hour
	first := start(t, dir, o, logs)

	h.wait(t, "FiresAtOnce", "firing", 30*time.Second)
	// Stop once the evaluation 4s after HoldsTenSeconds became pending has
	// recorded its state: it is then 6s from firing, which leaves the poll
	// and the stop 6s, not the 1s of an evaluation interval, to come first
	// on a loaded machine.
	var activeAt time.Time
	require.Eventually(t, func() bool {
		gs := first.rules(t)
		require.Len(t, gs, 1)
		for _, al := range findRule(t, gs, "HoldsTenSeconds").Alerts {
			require.Equal(t, "pending", al.State, "HoldsTenSeconds fired before the restart")
			activeAt = *al.ActiveAt
			return !gs[0].LastEvaluation.Before(activeAt.Add(4 * time.Second))
		}
		return false
	}, 30*time.Second, 5*time.Millisecond, "HoldsTenSeconds was never pending for 4s")
	onceBefore, ok := first.alert(t, "FiresAtOnce", SourceRule)
	require.True(t, ok)
	require.NoError(t, first.Stop())
	require.Empty(t, h.matching("HoldsTenSeconds", ""), "HoldsTenSeconds was notified before the restart")
	notifiedBefore := len(h.matching("FiresAtOnce", ""))
	require.Equal(t, 1, notifiedBefore)

	// A rule new after the restart fires at the second alertd's first
	// evaluation: its start tells when that was.
	writeFile(t, dir, "rules.yml", restartRules+`
      - alert: FirstEvaluation
        expr: vector(1)
`)
	restart := time.Now()
	o2, logs2 := newOptions(t, dir)
	o2.ForGracePeriod, o2.OutageTolerance = o.ForGracePeriod, o.OutageTolerance
	second := start(t, dir, o2, logs2)
	var firedAt time.Time
	require.Eventually(t, func() bool {
		al, ok := second.alert(t, "HoldsTenSeconds", SourceRule)
		if ok && al.State == "firing" {
			firedAt = time.Now()
			return true
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "HoldsTenSeconds never fired after the restart")
	t.Logf("HoldsTenSeconds fired %s after the restart, was pending for %s before", firedAt.Sub(restart), restart.Sub(activeAt))

	// FirstEvaluation fired at the second alertd's first evaluation.
	// FiresAtOnce, firing all along, keeps its start from before the
	// restart, though the rule fired it again then.
	once, ok := second.alert(t, "FiresAtOnce", SourceRule)
	require.True(t, ok)
	require.True(t, once.StartsAt.Equal(onceBefore.StartsAt), "FiresAtOnce starts at %s after the restart, at %s before", once.StartsAt, onceBefore.StartsAt)
	held, ok := second.alert(t, "HoldsTenSeconds", SourceRule)
	require.True(t, ok)
	newRule, ok := second.alert(t, "FirstEvaluation", SourceRule)
	require.True(t, ok)
	firstEval, fired := newRule.StartsAt, held.StartsAt
	require.True(t, firstEval.After(restart), "FirstEvaluation's start %s is not the second alertd's first evaluation (restart at %s)", firstEval, restart)

	// HoldsTenSeconds's activeAt was restored: the original one moved by
	// the downtime, so later than the original, and earlier than the
	// second alertd's first evaluation, which a fresh alert's activeAt
	// would be. The restore comes right after the second evaluation, 1s
	// after the first: only a stall of 3s or more between them, which
	// Prometheus counts as downtime, would move it past. It fired when
	// the rest of its hold, from there, ran out.
	var restored time.Time
	for _, r := range findRule(t, second.rules(t), "HoldsTenSeconds").Alerts {
		restored = *r.ActiveAt
	}
	require.True(t, restored.After(activeAt) && restored.Before(firstEval), "activeAt %s was not restored (first %s, first evaluation after the restart %s)", restored, activeAt, firstEval)
	require.GreaterOrEqual(t, fired.Sub(restored), 10*time.Second, "HoldsTenSeconds fired before its hold ran out from its restored activeAt")

	// HoldsTenSeconds is notified for the first time; FiresAtOnce, firing
	// again after the restart with the same labels, is not notified again.
	// Another alert of FiresAtOnce's group fires now, long after the
	// second alertd's first evaluation put FiresAtOnce in the group: the
	// flush that notifies it, or one before, is the one that would have
	// notified FiresAtOnce again, and the group's notifications reach the
	// webhook in order (one outbox lane).
	h.wait(t, "HoldsTenSeconds", "firing", 30*time.Second)
	postAlert(t, second, `{"alertname":"FiresAtOnce","probe":"after-restart"}`)
	probed := func(p payload) bool {
		return slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["probe"] == "after-restart" })
	}
	require.Eventually(t, func() bool { return slices.ContainsFunc(h.matching("FiresAtOnce", "firing"), probed) },
		30*time.Second, 20*time.Millisecond, "the probe was not notified")
	again := slices.DeleteFunc(h.matching("FiresAtOnce", ""), probed)
	require.Len(t, again, notifiedBefore, "FiresAtOnce was notified again after the restart: %+v", again)
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
	a := start(t, dir, o, logs)

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
	require.NoError(t, a.Stop())
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

// alertd restarts while alerts relayed by an Alertmanager and pushed by a
// Prometheus fire. An Alertmanager sends them again only at repeat_interval
// and this test's sources send nothing again: alertd restores them from
// --storage.path with their end times, so past the restart's grace period
// they still fire, their incidents stay open and no receiver is told they
// resolved. They then resolve when the Alertmanager says so, or when their
// lifetime (intake.alertmanager_resolve_timeout) ends.
func TestRestartKeepsPushedAlerts(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	// The grace period is 4s: for-grace-period, resend delay, evaluation
	// interval and resolve_timeout, 1s each.
	writeFile(t, dir, "alertd.yml", routes(h, nil, "intake:\n  resolve_timeout: 1s\n  alertmanager_resolve_timeout: 25s\n"))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	first := start(t, dir, o, logs)

	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	relayed := func(name, status, endsAt string) string {
		return `{"status":"` + status + `","labels":{"alertname":"` + name + `"},"annotations":{"summary":"relayed"},` +
			`"startsAt":"` + startsAt.Format(time.RFC3339Nano) + `"` + endsAt + `}`
	}
	// Grouped by alertname, as the Alertmanager's route would: each
	// notification of a group lists all its firing alerts.
	for _, name := range []string{"Relayed", "RelayedExpires"} {
		code, body := post(t, first.URL+endpointWebhook, "application/json",
			`{"version":"4","status":"firing","receiver":"alertd","groupKey":"{}:{alertname=\"`+name+`\"}","alerts":[`+
				relayed(name, "firing", "")+`]}`)
		require.Equal(t, http.StatusOK, code, body)
	}
	pushedEnd := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	postAlerts(t, first, `[{"labels":{"alertname":"Pushed"},"startsAt":"`+startsAt.Format(time.RFC3339Nano)+`","endsAt":"`+pushedEnd.Format(time.RFC3339Nano)+`"}]`)

	// The webhook's delivery is on disk at once: an Alertmanager does not
	// send it again for hours, so a crash must not lose it.
	var kept pushedState
	ok, err := readJSON(pushedAlertsPath(o.StoragePath), &kept)
	require.NoError(t, err)
	require.True(t, ok, "pushed_alerts.json was not written on the webhook's delivery")
	require.GreaterOrEqual(t, len(kept.Alerts), 2)

	names := []string{"Relayed", "RelayedExpires", "Pushed"}
	before := map[string]alertJSON{}
	for _, name := range names {
		h.wait(t, name, "firing", 30*time.Second)
	}
	incs := openIncidents(t, first)
	require.Len(t, incs, 3)
	for _, name := range names {
		src := SourceAlertmanager
		if name == "Pushed" {
			src = SourcePrometheus
		}
		al, ok := first.alert(t, name, src)
		require.True(t, ok)
		before[name] = al
	}
	require.True(t, pushedEnd.Equal(before["Pushed"].EndsAt))
	require.NoError(t, first.Stop())

	o2, logs2 := newOptions(t, dir)
	second := start(t, dir, o2, logs2)
	require.Contains(t, logs2.String(), "Restored the pushed alerts that were firing")
	check := func(name string) {
		t.Helper()
		al, ok := second.alert(t, name, before[name].Source)
		require.True(t, ok, "%s was not restored", name)
		require.Equal(t, "firing", al.State, "%s: %v", name, al.History)
		require.True(t, before[name].StartsAt.Equal(al.StartsAt), "%s: startsAt %s, want %s", name, al.StartsAt, before[name].StartsAt)
		require.True(t, before[name].EndsAt.Equal(al.EndsAt), "%s: endsAt %s, want %s", name, al.EndsAt, before[name].EndsAt)
		require.Equal(t, before[name].Annotations, al.Annotations)
		require.Equal(t, before[name].History[0], al.History[0], "how it first arrived")
		require.Equal(t, "intake/restored", actions(al.History)[1])
	}
	for _, name := range names {
		check(name)
	}

	// Past the grace period (4s, and the loop's 1s tick) nothing resolved:
	// not in the ledger, not for the receivers, and the incidents stay
	// open. Nor is anything notified firing again.
	require.Never(t, func() bool {
		for _, name := range names {
			if h.notifications(name, "resolved") > 0 || h.notifications(name, "firing") > 1 {
				return true
			}
			if len(ledgerEvents(t, second, "fingerprint="+before[name].Fingerprint+"&event="+eventResolved)) > 0 {
				return true
			}
		}
		return false
	}, 7*time.Second, 100*time.Millisecond, "a restored alert resolved or paged again after the restart")
	for _, name := range names {
		check(name)
	}
	require.Equal(t, incs, openIncidents(t, second), "the open incidents changed in the restart")

	// The Alertmanager says Relayed resolved.
	endsAt := time.Now().UTC().Truncate(time.Millisecond)
	code, body := post(t, second.URL+endpointWebhook, "application/json",
		`{"version":"4","status":"resolved","receiver":"alertd","groupKey":"{}:{alertname=\"Relayed\"}","alerts":[`+
			relayed("Relayed", "resolved", `,"endsAt":"`+endsAt.Format(time.RFC3339Nano)+`"`)+`]}`)
	require.Equal(t, http.StatusOK, code, body)
	p := h.wait(t, "Relayed", "resolved", 30*time.Second)
	require.True(t, endsAt.Equal(p.Alerts[0].EndsAt), "endsAt %s, want %s", p.Alerts[0].EndsAt, endsAt)

	// RelayedExpires resolves when its lifetime since its delivery before
	// the restart ends, not a lifetime after the restart.
	p = h.wait(t, "RelayedExpires", "resolved", 60*time.Second)
	require.True(t, before["RelayedExpires"].EndsAt.Equal(p.Alerts[0].EndsAt), "endsAt %s, want %s", p.Alerts[0].EndsAt, before["RelayedExpires"].EndsAt)
	al, ok := second.alert(t, "Pushed", SourcePrometheus)
	require.True(t, ok)
	require.Equal(t, "firing", al.State)
	require.Eventually(t, func() bool { return len(openIncidents(t, second)) == 1 }, 30*time.Second, 20*time.Millisecond,
		"the resolved alerts' incidents never closed")
	h.checkWire(t)
}

// openIncidents returns the IDs of the open incidents, by their alerts'
// fingerprints.
func openIncidents(t *testing.T, a *testAlertd) map[string]string {
	t.Helper()
	open := map[string]string{}
	for _, in := range incidentsOf(t, a) {
		if in.ClosedAt == nil {
			open[strings.Join(in.Alerts, ",")] = in.ID
		}
	}
	return open
}
