package alertd

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertmanagertest"
)

// A real Alertmanager delivers its notifications to alertd's webhook intake:
// the alert enters alertd's pipeline with source "alertmanager", is routed
// and notified, and resolves when the Alertmanager sends it resolved.
func TestAlertmanagerSendsAlerts(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), nil, nil)
	am := alertmanagertest.Start(t, fmt.Sprintf(`
route:
  receiver: alertd
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: alertd
    webhook_configs:
      - url: %s/api/v1/webhook/alertmanager
        send_resolved: true
`, a.URL))

	postToAM := func(endsAt string) {
		t.Helper()
		body := `[{"labels":{"alertname":"FromAlertmanager","severity":"page","model":"fraud"},` +
			`"annotations":{"summary":"relayed by a real Alertmanager"},"generatorURL":"http://prometheus.example/graph"` + endsAt + `}]`
		resp, err := http.Post(am.URL+"/api/v2/alerts", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	postToAM("")

	p := h.wait(t, "FromAlertmanager", "firing", 60*time.Second)
	require.Equal(t, map[string]string{"alertname": "FromAlertmanager", "severity": "page", "model": "fraud"}, p.CommonLabels)
	require.Equal(t, map[string]string{"summary": "relayed by a real Alertmanager"}, p.CommonAnnotations)
	require.Len(t, p.Alerts, 1)
	require.Equal(t, "http://prometheus.example/graph", p.Alerts[0].GeneratorURL)

	al, ok := a.alert(t, "FromAlertmanager", SourceAlertmanager)
	require.True(t, ok, "the alert is in alertd's API with source alertmanager")
	require.Equal(t, "firing", al.State)
	require.Equal(t, model.LabelSet{"alertname": "FromAlertmanager", "severity": "page", "model": "fraud"}, al.Labels)
	require.GreaterOrEqual(t, len(al.History), 1)
	require.Equal(t, "intake/received", actions(al.History)[0])
	require.Contains(t, al.History[0].Reason, "posted to /api/v1/webhook/alertmanager by 127.0.0.1:")
	require.Contains(t, al.History[0].Reason, "(Alertmanager/")

	// Resolve it in the Alertmanager: it sends the resolved notification to
	// alertd, which resolves the alert and notifies its own receiver.
	postToAM(`,"endsAt":"` + time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano) + `"`)
	h.wait(t, "FromAlertmanager", "resolved", 60*time.Second)
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "FromAlertmanager", SourceAlertmanager)
		return ok && al.State == "resolved"
	}, 30*time.Second, 20*time.Millisecond)
	al, _ = a.alert(t, "FromAlertmanager", SourceAlertmanager)
	require.Contains(t, actions(al.History), "intake/resolved")
}

// An Alertmanager sends a firing alert to its webhooks without an end time
// and sends it again only at repeat_interval (4h by default): alertd keeps
// it firing for intake.alertmanager_resolve_timeout (8h5m), or until the
// Alertmanager says it resolved, instead of letting it time out after
// intake.resolve_timeout and paging "resolved" meanwhile.
func TestAlertmanagerAlertsOutliveResolveTimeout(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "intake:\n  resolve_timeout: 1s\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	am := alertmanagertest.Start(t, fmt.Sprintf(`
route:
  receiver: alertd
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: alertd
    webhook_configs:
      - url: %s/api/v1/webhook/alertmanager
`, a.URL))
	postToAM := func(extra string) {
		t.Helper()
		resp, err := http.Post(am.URL+"/api/v2/alerts", "application/json",
			strings.NewReader(`[{"labels":{"alertname":"Relayed","model":"fraud"}`+extra+`}]`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	postToAM("")
	h.wait(t, "Relayed", "firing", 60*time.Second)

	// Well past resolve_timeout, with no new webhook from the Alertmanager.
	time.Sleep(3 * time.Second)
	al, ok := a.alert(t, "Relayed", SourceAlertmanager)
	require.True(t, ok)
	require.Equal(t, "firing", al.State, "%v", al.History)
	require.WithinDuration(t, time.Now().Add(8*time.Hour+5*time.Minute), al.EndsAt, time.Minute, "intake.alertmanager_resolve_timeout")
	require.Zero(t, h.notifications("Relayed", "resolved"), "no resolve is sent while the Alertmanager has it firing")
	require.Equal(t, []string{"Relayed"}, v2Names(getV2(t, a, "")))

	// The Alertmanager resolves it: alertd does too.
	postToAM(`,"endsAt":"` + time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano) + `"`)
	h.wait(t, "Relayed", "resolved", 60*time.Second)
	al, _ = a.alert(t, "Relayed", SourceAlertmanager)
	require.Equal(t, "resolved", al.State)
}
