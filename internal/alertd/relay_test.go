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

// relayed waits until alertd holds the alert named name of the model
// from an Alertmanager, and returns it.
func relayed(t *testing.T, a *testAlertd, name, m string) alertJSON {
	t.Helper()
	return waitFor(t, a, model.LabelSet{"alertname": model.LabelValue(name), "model": model.LabelValue(m)},
		func(al alertJSON) bool { return al.Source == SourceAlertmanager }, "not relayed")
}

// A real Alertmanager whose webhook receiver has send_resolved: false
// never sends an alert resolved, but each notification of a group lists
// the group's alerts that still fire: alertd resolves the alert a later
// notification of its group leaves out, instead of keeping it firing for
// intake.alertmanager_resolve_timeout.
func TestAlertmanagerWithoutSendResolved(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
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
        send_resolved: false
`, a.URL))
	postToAM := func(models ...string) {
		t.Helper()
		var alerts []string
		for _, m := range models {
			extra := ""
			if name, ok := strings.CutPrefix(m, "resolved:"); ok {
				m, extra = name, `,"endsAt":"`+time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)+`"`
			}
			alerts = append(alerts, `{"labels":{"alertname":"Relayed","model":"`+m+`"}`+extra+`}`)
		}
		resp, err := http.Post(am.URL+"/api/v2/alerts", "application/json", strings.NewReader("["+strings.Join(alerts, ",")+"]"))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	firing := func(al alertJSON) bool { return al.State == "firing" }
	resolved := func(al alertJSON) bool { return al.State == "resolved" }
	leftOutReason := "left out of a later notification of its group {}:{alertname=\"Relayed\"} by the Alertmanager at "

	postToAM("fraud", "churn")
	relayed(t, a, "Relayed", "fraud")
	relayed(t, a, "Relayed", "churn")

	// fraud resolves in the Alertmanager, which sends nothing for it; its
	// next notification of the group (for a new alert) leaves it out.
	postToAM("resolved:fraud")
	postToAM("ltv")
	relayed(t, a, "Relayed", "ltv")
	fraud := waitFor(t, a, model.LabelSet{"alertname": "Relayed", "model": "fraud"}, resolved, "not resolved")
	last := lastOf(fraud.History, "intake")
	require.Equal(t, "resolved", last.Action)
	require.Contains(t, last.Reason, leftOutReason, "resolved by the rule: the Alertmanager did not send it resolved")
	require.Contains(t, last.Reason, "(receiver alertd)")
	for _, m := range []string{"churn", "ltv"} {
		al := relayed(t, a, "Relayed", m)
		require.True(t, firing(al), "%s: %v", m, al.History)
	}

	// Every alert of the group resolves: the Alertmanager sends nothing
	// then, but the group's next notification, for a new alert, leaves
	// them out.
	postToAM("resolved:churn", "resolved:ltv")
	postToAM("fraud")
	require.Eventually(t, func() bool {
		al := relayed(t, a, "Relayed", "fraud")
		return firing(al)
	}, 30*time.Second, 20*time.Millisecond, "fraud fires again")
	for _, m := range []string{"churn", "ltv"} {
		al := waitFor(t, a, model.LabelSet{"alertname": "Relayed", "model": model.LabelValue(m)}, resolved, "not resolved")
		require.Contains(t, lastOf(al.History, "intake").Reason, leftOutReason)
	}
}

// webhookPayload is an Alertmanager's webhook payload of firing alerts
// named G, one per model, for the group with that key of the receiver of
// the Alertmanager at externalURL; truncated says how many max_alerts
// left out.
func webhookPayload(externalURL, receiver, groupKey string, truncated int, models ...string) string {
	var alerts []string
	for _, m := range models {
		alerts = append(alerts, `{"status":"firing","labels":{"alertname":"G","model":"`+m+`"},"annotations":{},`+
			`"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z"}`)
	}
	return fmt.Sprintf(`{"version":"4","status":"firing","receiver":%q,"groupKey":%q,"externalURL":%q,"truncatedAlerts":%d,`+
		`"groupLabels":{"alertname":"G"},"commonLabels":{},"commonAnnotations":{},"alerts":[%s]}`,
		receiver, groupKey, externalURL, truncated, strings.Join(alerts, ","))
}

// Which notifications resolve the alerts they leave out: only a later
// complete notification of the same group of the same Alertmanager's
// receiver, and only once every group that held the alert left it out.
// What the groups held survives a restart.
func TestWebhookLeftOutAlertsResolve(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	// The Alertmanagers are made up: alertd does not ask them.
	writeFile(t, dir, "alertd.yml", routes(h, nil, "intake:\n  alertmanager_api: {check_interval: 0s}\n"))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)
	const am1, am2 = "http://am1.example:9093", "http://am2.example:9093"
	send := func(a *testAlertd, body string) {
		t.Helper()
		code, resp := post(t, a.URL+endpointWebhook, "application/json", body)
		require.Equal(t, http.StatusOK, code, resp)
	}
	state := func(a *testAlertd, m string) string {
		t.Helper()
		return relayed(t, a, "G", m).State
	}

	send(a, webhookPayload(am1, "r", "{}:{alertname=\"G\"}", 0, "a", "b", "c"))
	send(a, webhookPayload(am1, "r", "{}/{team=\"x\"}:{alertname=\"G\"}", 0, "c"))
	// Other groups, another Alertmanager, a truncated list: none of them
	// says anything of a, b or c.
	send(a, webhookPayload(am1, "r", "{}:{alertname=\"H\"}", 0, "x"))
	send(a, webhookPayload(am2, "r", "{}:{alertname=\"G\"}", 0, "x"))
	send(a, webhookPayload(am1, "other", "{}:{alertname=\"G\"}", 0, "x"))
	send(a, webhookPayload(am1, "r", "{}:{alertname=\"G\"}", 2, "a"))
	for _, m := range []string{"a", "b", "c"} {
		require.Equal(t, "firing", state(a, m), m)
	}

	require.NoError(t, a.Stop())
	b := start(t, dir, o, logs)
	for _, m := range []string{"a", "b", "c"} {
		require.Equal(t, "firing", state(b, m), "%s is restored", m)
	}

	// The group's next complete notification leaves out b and c: b
	// resolves; c, still held by its other group, fires on until that
	// group leaves it out too.
	send(b, webhookPayload(am1, "r", "{}:{alertname=\"G\"}", 0, "a"))
	require.Equal(t, "firing", state(b, "a"))
	require.Equal(t, "resolved", state(b, "b"))
	require.Equal(t, "firing", state(b, "c"))
	require.Equal(t, "left out of a later notification of its group {}:{alertname=\"G\"} by the Alertmanager at "+am1+
		" (receiver r), which lists every alert of the group that still fires there", lastOf(relayed(t, b, "G", "b").History, "intake").Reason)
	send(b, webhookPayload(am1, "r", "{}/{team=\"x\"}:{alertname=\"G\"}", 0, "d"))
	require.Equal(t, "resolved", state(b, "c"))

	// An alert that fires again belongs to the groups that notify it from
	// then on.
	send(b, webhookPayload(am1, "r", "{}/{team=\"x\"}:{alertname=\"G\"}", 0, "b", "d"))
	require.Equal(t, "firing", state(b, "b"))
	send(b, webhookPayload(am1, "r", "{}:{alertname=\"G\"}", 0, "a"))
	require.Equal(t, "firing", state(b, "b"), "its group of before is no longer its group")
	send(b, webhookPayload(am1, "r", "{}/{team=\"x\"}:{alertname=\"G\"}", 0, "d"))
	require.Equal(t, "resolved", state(b, "b"))
}
