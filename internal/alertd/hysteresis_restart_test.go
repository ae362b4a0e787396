package alertd

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// alertd restarts, on the same storage path, while a rule's
// alertd_keep_firing_while holds its alert between the thresholds, and
// stays down for longer than the rule's short `for`. The alert had been
// held by min_firing_duration, then paged.
//
// After the restart Prometheus's rule manager has the alert pending again
// (the hysteresis holds it from its ALERTS series), restores its for-state
// and fires it with a new start: alertd took that start, so the hold
// suppressed the alert once more, as if it had just begun (a suppressed
// and a released event in the ledger, a chain of escalation kept quiet),
// though it had fired and paged all along. alertd now keeps the start the
// ledger has for a rule's alert that never resolved: the alert keeps
// firing, with its start, no hold suppresses it again, and nobody is
// paged again.
func TestRestartKeepsHysteresisHold(t *testing.T) {
	t.Parallel()
	target := newExposition(t, "# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 5\n")
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, `
suppression:
  min_firing_duration: 4s
scrape_configs:
  - job_name: queue
    static_configs: [{targets: ["`+target.Addr+`"]}]
`))
	writeFile(t, dir, "rules.yml", `
groups:
  - name: queue
    rules:
      - alert: QueueTooDeep
        expr: queue_depth > 3
        for: 2s
        annotations:
          alertd_keep_firing_while: queue_depth > 1
`)
	o, logs := newOptions(t, dir)
	first := start(t, dir, o, logs)

	// Paged once the hold ends, then held between the thresholds.
	h.wait(t, "QueueTooDeep", "firing", 60*time.Second)
	target.set("# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 2\n")
	var before alertJSON
	require.Eventually(t, func() bool {
		var ok bool
		before, ok = first.alert(t, "QueueTooDeep", SourceRule)
		return ok && before.State == "firing" && before.Value == "2"
	}, 60*time.Second, 50*time.Millisecond, "the alert was not held at 2")
	require.Equal(t, "hold/suppressed", lastOf(before.History, "hold").Stage+"/"+lastOf(before.History, "hold").Action)
	require.NoError(t, first.Stop())

	// Down for longer than the rule's `for`; nobody hears of it.
	require.Never(t, func() bool { return len(h.all()) != 1 }, 5*time.Second, 100*time.Millisecond, "notified while alertd was down")

	o2, logs2 := newOptions(t, dir)
	second := start(t, dir, o2, logs2)
	var after alertJSON
	require.Eventually(t, func() bool {
		var ok bool
		after, ok = second.alert(t, "QueueTooDeep", SourceRule)
		return ok && after.State == "firing"
	}, 60*time.Second, 50*time.Millisecond, "the held alert did not fire again after the restart")
	require.Equal(t, "2", after.Value, "held between the thresholds")
	require.True(t, after.StartsAt.Equal(before.StartsAt), "the alert starts at %s after the restart, at %s before", after.StartsAt, before.StartsAt)
	require.Empty(t, lastOf(after.History, "hold").Action, "held again after the restart: %+v", after.History)
	require.Contains(t, after.History[0].Reason, "before alertd restarted")

	// Longer than the hold: not suppressed, not paged, not resolved. A
	// probe of the group starts now, after the alert restarted: the hold
	// keeps it for min_firing_duration, longer than it would have kept the
	// alert, and the flush that notifies it, or one before, would have
	// paged the alert again; the group's notifications reach the webhook
	// in order (one outbox lane).
	postAlert(t, second, `{"alertname":"QueueTooDeep","queue":"probe"}`)
	probed := func(p payload) bool {
		return slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["queue"] == "probe" })
	}
	require.Eventually(t, func() bool { return slices.ContainsFunc(h.all(), probed) }, 60*time.Second, 20*time.Millisecond,
		"the probe was not notified")
	require.Len(t, slices.DeleteFunc(h.all(), probed), 1, "notified again after the restart: %+v", h.all())
	for _, p := range h.all() {
		require.Equal(t, "firing", p.Status, "%+v", p)
	}
	al, ok := second.alert(t, "QueueTooDeep", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State, "%+v", al.History)
	require.True(t, al.StartsAt.Equal(before.StartsAt), "the alert starts at %s, at %s before the restart", al.StartsAt, before.StartsAt)
	require.Empty(t, lastOf(al.History, "hold").Action, "held again after the restart: %+v", al.History)
	v, _ := metric(t, second.Registry(), "alertd_alerts_suppressed_total", "reason", "hold")
	require.Equal(t, 1.0, v, "suppressed again after the restart (the probe was, once)")
	h.checkWire(t)
}
