package notify

import (
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertmanagertest"
)

// forwardConfig routes everything to the Alertmanager at {{URL}}, flushing
// every 200ms so that a real process answers within the test.
const forwardConfig = `
route:
  receiver: am
  group_by: [alertname]
  group_wait: 0s
  group_interval: 200ms
  repeat_interval: 1h
receivers:
  - name: am
    alertmanager_configs:
      - url: "{{URL}}"`

// startReal runs a Notifier in real time until the test ends.
func startReal(t *testing.T, o Options) *Notifier {
	t.Helper()
	n, err := New(o)
	require.NoError(t, err)
	n.Run()
	t.Cleanup(n.Stop)
	return n
}

// driftAlert is an alert that started a minute ago, ending at endsAt.
// Times are in milliseconds, as the Alertmanager API keeps them.
func driftAlert(startsAt, endsAt time.Time) *alert.Alert {
	return alert.New(model.Alert{
		Labels:       model.LabelSet{"alertname": "ModelDrift", "model": "fraud", "severity": "page"},
		Annotations:  model.LabelSet{"summary": "Feature amount drifted", "runbook_url": "http://runbooks/drift"},
		StartsAt:     startsAt,
		EndsAt:       endsAt,
		GeneratorURL: "http://alertd.example/graph?g0.expr=psi",
	}, time.Time{}, false)
}

func TestForwardToAlertmanager(t *testing.T) {
	am := alertmanagertest.Start(t, "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	var got notifications
	n := startReal(t, Options{Config: load(t, forwardConfig, am.URL), OnNotify: got.add})

	startsAt := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	require.NoError(t, n.Put(driftAlert(startsAt, time.Now().Add(time.Hour))))

	var alerts models.GettableAlerts
	require.Eventually(t, func() bool {
		var err error
		alerts, err = am.Alerts(t.Context())
		return err == nil && len(alerts) == 1
	}, 10*time.Second, 20*time.Millisecond, "the alert never showed up in Alertmanager")
	a := alerts[0]
	require.Equal(t, models.LabelSet{"alertname": "ModelDrift", "model": "fraud", "severity": "page"}, a.Labels)
	require.Equal(t, models.LabelSet{"summary": "Feature amount drifted", "runbook_url": "http://runbooks/drift"}, a.Annotations)
	require.True(t, startsAt.Equal(time.Time(*a.StartsAt)), "startsAt %s, want %s", a.StartsAt, startsAt)
	require.Equal(t, "http://alertd.example/graph?g0.expr=psi", a.GeneratorURL.String())
	require.Equal(t, "active", *a.Status.State)
	// Firing alerts last until alertd would have sent them again.
	require.Greater(t, time.Time(*a.EndsAt), time.Now().Add(2*time.Hour))
	// OnNotify runs once the delivery has returned, which may be a moment
	// after the Alertmanager lists the alert.
	var ns []Notification
	require.Eventually(t, func() bool { ns = got.get(); return len(ns) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "alertmanager[0]", ns[0].Integration)
	require.NoError(t, ns[0].Err)

	// Resolved: the Alertmanager gets an endsAt in the past and its API
	// stops listing the alert.
	require.NoError(t, n.Put(driftAlert(startsAt, time.Now())))
	require.Eventually(t, func() bool {
		alerts, err := am.Alerts(t.Context())
		return err == nil && len(alerts) == 0
	}, 10*time.Second, 20*time.Millisecond, "the alert never resolved in Alertmanager")
}

// TestAlertmanagerChain forwards to a real Alertmanager that notifies a
// webhook: what arrives there is what alertd sent, grouped and resolved by
// Alertmanager.
func TestAlertmanagerChain(t *testing.T) {
	hook := newReceiver(t)
	am := alertmanagertest.Start(t, `
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 200ms
receivers:
  - name: hook
    webhook_configs:
      - url: "`+hook.URL+`"
        send_resolved: true
`)
	n := startReal(t, Options{Config: load(t, forwardConfig, am.URL)})

	startsAt := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	require.NoError(t, n.Put(driftAlert(startsAt, time.Now().Add(time.Hour))))
	var ps []payload
	require.Eventually(t, func() bool {
		ps = append(ps, hook.next()...)
		return len(ps) > 0
	}, 10*time.Second, 20*time.Millisecond, "Alertmanager never notified the webhook")
	p := ps[0]
	require.Equal(t, "firing", p.Status)
	require.Equal(t, "hook", p.Receiver)
	require.Len(t, p.Alerts, 1)
	require.Equal(t, map[string]string{"alertname": "ModelDrift", "model": "fraud", "severity": "page"}, p.Alerts[0].Labels)
	require.Equal(t, "Feature amount drifted", p.Alerts[0].Annotations["summary"])
	require.True(t, startsAt.Equal(p.Alerts[0].StartsAt), "startsAt %s, want %s", p.Alerts[0].StartsAt, startsAt)

	endsAt := time.Now().Truncate(time.Millisecond)
	require.NoError(t, n.Put(driftAlert(startsAt, endsAt)))
	require.Eventually(t, func() bool {
		for _, p := range hook.next() {
			if p.Status == "resolved" {
				ps = []payload{p}
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "Alertmanager never sent the resolved alert")
	require.Len(t, ps[0].Alerts, 1)
	require.Equal(t, "resolved", ps[0].Alerts[0].Status)
	require.True(t, endsAt.Equal(ps[0].Alerts[0].EndsAt), "endsAt %s, want %s", ps[0].Alerts[0].EndsAt, endsAt)
	require.False(t, ps[0].Alerts[0].EndsAt.After(time.Now()))
}
