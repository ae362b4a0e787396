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
