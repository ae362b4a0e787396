package alertd

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertmanagertest"
)

// getV2 decodes GET /api/v2/alerts with the query.
func getV2(t *testing.T, a *testAlertd, query string) models.GettableAlerts {
	t.Helper()
	resp, err := http.Get(a.URL + "/api/v2/alerts?" + query)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out models.GettableAlerts
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

func v2Names(as models.GettableAlerts) []string {
	var names []string
	for _, a := range as {
		names = append(names, a.Labels["alertname"])
	}
	slices.Sort(names)
	return names
}

// Alertmanager's GET /api/v2/alerts and GET /api/v2/status answer as
// Alertmanager's do: amtool, Alertmanager's own client, reads alertd's
// alerts, filtered by state, matchers and receiver, and its status.
func TestAPIv2Read(t *testing.T) {
	t.Parallel()
	amtool := alertmanagertest.Amtool(t)
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
  - name: chat
    slack_configs: [{token: xoxb-not-shown, channel: "#ml"}]
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [model]
`), map[string]string{"rules.yml": "groups: []\n"}, nil)
	silenceID := createSilence(t, a, `{"matchers":["alertname=\"Silenced\""],"duration":"1h","createdBy":"alice"}`)
	postAlerts(t, a, `[{"labels":{"alertname":"Firing","model":"fraud"}},
		{"labels":{"alertname":"Critical","severity":"critical","model":"fraud"}},
		{"labels":{"alertname":"Inhibited","severity":"warning","model":"fraud"}},
		{"labels":{"alertname":"Silenced","model":"churn"}},
		{"labels":{"alertname":"Resolved"},"endsAt":"`+time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)+`"}]`)
	waitAlert(t, a, model.LabelSet{"alertname": "Silenced", "model": "churn"})

	all := getV2(t, a, "")
	require.Equal(t, []string{"Critical", "Firing", "Inhibited", "Silenced"}, v2Names(all), "resolved alerts are left out")
	for _, al := range all {
		require.Equal(t, "hook", *al.Receivers[0].Name)
		require.NoError(t, al.Validate(nil), "every field Alertmanager's schema requires")
		switch al.Labels["alertname"] {
		case "Firing", "Critical":
			require.Equal(t, "active", *al.Status.State)
		case "Inhibited":
			require.Equal(t, "suppressed", *al.Status.State)
			require.Equal(t, []string{model.LabelSet{"alertname": "Critical", "severity": "critical", "model": "fraud"}.Fingerprint().String()}, al.Status.InhibitedBy)
		case "Silenced":
			require.Equal(t, "suppressed", *al.Status.State)
			require.Equal(t, []string{silenceID}, al.Status.SilencedBy)
		}
	}
	require.Equal(t, []string{"Critical", "Firing"}, v2Names(getV2(t, a, "silenced=false&inhibited=false")))
	require.Equal(t, []string{"Inhibited", "Silenced"}, v2Names(getV2(t, a, "active=false")))
	require.Equal(t, []string{"Critical", "Inhibited"}, v2Names(getV2(t, a, `filter=model="fraud"&filter=alertname=~"[CI].*"`)))
	require.Empty(t, getV2(t, a, "receiver=nobody"))
	for _, bad := range []string{"active=maybe", `filter=alertname=~"("`, "receiver=("} {
		resp, err := http.Get(a.URL + "/api/v2/alerts?" + bad)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
	}

	// amtool, as an operator would run it.
	run := func(args ...string) string {
		cmd := exec.Command(amtool, append([]string{"--alertmanager.url=" + a.URL}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, stderr.String())
		return string(out)
	}
	var got models.GettableAlerts
	require.NoError(t, json.Unmarshal([]byte(run("alert", "query", "-o", "json")), &got))
	require.Equal(t, []string{"Critical", "Firing"}, v2Names(got), "amtool shows active alerts unless asked")
	require.NoError(t, json.Unmarshal([]byte(run("alert", "query", "-o", "json", "--silenced", "--inhibited", "model=fraud")), &got))
	require.Equal(t, []string{"Inhibited"}, v2Names(got), "amtool's state flags select those states only")
	status := run("config", "show")
	require.Contains(t, status, "receiver: hook")
	require.NotContains(t, status, "xoxb-not-shown")
	require.Contains(t, status, "token: <secret>")
	require.True(t, strings.Contains(run("alert", "query", "Firing"), "Firing"))
}
