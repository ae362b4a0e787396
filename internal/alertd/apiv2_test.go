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
	return getV2JSON[models.GettableAlerts](t, a, "/api/v2/alerts?"+query)
}

// getV2JSON decodes what GET path answers, which must be a 200.
func getV2JSON[T any](t *testing.T, a *testAlertd, path string) T {
	t.Helper()
	resp, err := http.Get(a.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out T
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// amtoolOn returns a runner of Debian's amtool against a: its standard
// output, trimmed; the test fails with its standard error when it fails.
func amtoolOn(t *testing.T, a *testAlertd) func(args ...string) string {
	amtool := alertmanagertest.Amtool(t)
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command(amtool, append([]string{"--alertmanager.url=" + a.URL}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, stderr.String())
		return strings.TrimSpace(string(out))
	}
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

	// Groups: one per alertname (the route's group_by), each validated.
	resp, err := http.Get(a.URL + `/api/v2/alerts/groups?filter=model="fraud"`)
	require.NoError(t, err)
	var groups models.AlertGroups
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&groups))
	resp.Body.Close()
	var grouped []string
	for _, g := range groups {
		require.NoError(t, g.Validate(nil))
		require.Equal(t, "hook", *g.Receiver.Name)
		require.Len(t, g.Alerts, 1)
		require.Equal(t, map[string]string{"alertname": g.Alerts[0].Labels["alertname"]}, map[string]string(g.Labels))
		grouped = append(grouped, g.Labels["alertname"])
	}
	slices.Sort(grouped)
	require.Equal(t, []string{"Critical", "Firing", "Inhibited"}, grouped)

	resp, err = http.Get(a.URL + "/api/v2/receivers")
	require.NoError(t, err)
	var receivers []*models.Receiver
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&receivers))
	resp.Body.Close()
	require.Len(t, receivers, 2)
	require.Equal(t, []string{"hook", "chat"}, []string{*receivers[0].Name, *receivers[1].Name})

	// amtool, as an operator would run it.
	run := amtoolOn(t, a)
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

// getV2Groups returns GET /api/v2/alerts/groups with the query, each group
// validated against Alertmanager's schema.
func getV2Groups(t *testing.T, a *testAlertd, query string) models.AlertGroups {
	t.Helper()
	groups := getV2JSON[models.AlertGroups](t, a, "/api/v2/alerts/groups?"+query)
	for _, g := range groups {
		require.NoError(t, g.Validate(nil))
	}
	return groups
}

// A group whose route its time intervals mute says so in mutedBy, as
// Alertmanager's groups do, and muted=false leaves it out.
func TestAPIv2MutedGroups(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, `
rule_files: [rules.yml]
time_intervals:
  - name: always
    time_intervals: [{}]
  - name: never
    time_intervals: [{years: ['1900:1999']}]
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  routes:
    - matchers: [team="night"]
      receiver: hook
      mute_time_intervals: [always, never]
      labels: {channel: '#night-{{ .GroupLabels.alertname | toLower }}'}
    - matchers: [team="office"]
      receiver: hook
      active_time_intervals: [never]
    - receiver: hook
receivers:
  - name: hook
    webhook_configs: [{url: "`+h.URL+`"}]
`, map[string]string{"rules.yml": "groups: []\n"}, nil)
	postAlerts(t, a, `[{"labels":{"alertname":"Night","team":"night"}},
		{"labels":{"alertname":"Office","team":"office"}},
		{"labels":{"alertname":"Day","team":"day"}}]`)
	h.wait(t, "Day", "firing", 30*time.Second)

	mutedBy := map[string][]string{}
	for _, g := range getV2Groups(t, a, "") {
		require.Len(t, g.Alerts, 1)
		al := g.Alerts[0]
		mutedBy[al.Labels["alertname"]] = al.Status.MutedBy
		want := "active"
		if len(al.Status.MutedBy) > 0 {
			want = "suppressed"
		}
		require.Equal(t, want, *al.Status.State, al.Labels["alertname"])
	}
	require.Equal(t, map[string][]string{"Night": {"always"}, "Office": {"never"}, "Day": {}}, mutedBy)
	for _, g := range getV2Groups(t, a, "") {
		want := models.LabelSet{}
		if g.Labels["alertname"] == "Night" {
			want = models.LabelSet{"channel": "#night-night"}
		}
		require.Equal(t, want, g.RouteLabels, "the route's labels, rendered, as Alertmanager gives them")
	}
	groups := getV2Groups(t, a, "muted=false")
	require.Len(t, groups, 1)
	require.Equal(t, "Day", groups[0].Labels["alertname"])
	// GET /api/v2/alerts has no mutedBy, as in Alertmanager.
	for _, al := range getV2(t, a, "") {
		require.Equal(t, "active", *al.Status.State)
		require.Empty(t, al.Status.MutedBy)
	}

	// The muted flushes are counted, and nothing of them is sent.
	require.Eventually(t, func() bool {
		n, _ := metric(t, a.Registry(), "alertd_notifications_suppressed_total", "reason", "mute_time_interval")
		m, _ := metric(t, a.Registry(), "alertd_notifications_suppressed_total", "reason", "active_time_interval")
		return n >= 1 && m >= 1
	}, 30*time.Second, 20*time.Millisecond)
	for _, p := range h.all() {
		require.Equal(t, "Day", p.GroupLabels["alertname"], "only the unmuted group is notified")
	}
	// The alerts' history says why, once for a run of muted flushes.
	for name, why := range map[string]string{
		"Night":  "not sent to hook: the route is inside its mute_time_intervals always; its first flush outside them notifies",
		"Office": "not sent to hook: the route is outside all its active_time_intervals never; its first flush inside one notifies",
	} {
		var muted []Decision
		require.Eventually(t, func() bool {
			muted = muted[:0]
			for _, d := range waitAlert(t, a, model.LabelSet{"alertname": model.LabelValue(name), "team": model.LabelValue(strings.ToLower(name))}).History {
				if d.Action == "muted" {
					muted = append(muted, d)
				}
			}
			return len(muted) > 0
		}, 30*time.Second, 20*time.Millisecond)
		require.Equal(t, "notify", muted[0].Stage)
		require.Equal(t, why, muted[0].Reason)
	}
	time.Sleep(2500 * time.Millisecond) // two more flushes (group_interval: 1s)
	for _, al := range a.alerts(t) {
		n := 0
		for _, d := range al.History {
			if d.Action == "muted" {
				n++
			}
		}
		require.LessOrEqual(t, n, 1, "%s: %v", al.Labels, al.History)
	}

	resp, err := http.Get(a.URL + "/api/v2/alerts/groups?muted=perhaps")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// Alertmanager's silences API: amtool adds, queries and expires silences
// in alertd, and they act as alertd's own do.
func TestAPIv2Silences(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
silences:
  - matchers: ['team="infra"']
    ends_at: 2099-01-01T00:00:00Z
    comment: from the file
`), map[string]string{"rules.yml": "groups: []\n"}, nil)
	run := amtoolOn(t, a)

	id := run("silence", "add", "alertname=Noisy", `model=~"fr.*"`, "--author=alice", "--comment=retraining", "--duration=1h")
	require.Regexp(t, `^[0-9a-f]{16}$`, id)
	postAlert(t, a, `{"alertname":"Noisy","model":"fraud"}`)
	noisy := waitAlert(t, a, model.LabelSet{"alertname": "Noisy", "model": "fraud"})
	require.Equal(t, "suppressed", noisy.State)
	require.Contains(t, noisy.History[len(noisy.History)-1].Reason, "silenced by "+id)

	var sils models.GettableSilences
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json")), &sils))
	require.Len(t, sils, 2, "the file's silence and amtool's")
	for _, s := range sils {
		require.NoError(t, s.Validate(nil))
		if *s.ID != id {
			continue
		}
		require.Equal(t, "alice", *s.CreatedBy)
		require.Equal(t, "retraining", *s.Comment)
		require.Equal(t, "active", *s.Status.State)
		require.Len(t, s.Matchers, 2)
		require.True(t, *s.Matchers[1].IsRegex)
	}
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "alertname=Noisy")), &sils))
	require.Len(t, sils, 1, "filtered by the silences' equality matchers")

	// Expired by amtool: the alert is released and notified, and the
	// silence was updated when it ended.
	run("silence", "expire", id)
	h.wait(t, "Noisy", "firing", 30*time.Second)
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "--expired", "alertname=Noisy")), &sils))
	require.Len(t, sils, 1)
	require.Equal(t, time.Time(*sils[0].EndsAt), time.Time(*sils[0].UpdatedAt))

	// amtool's update posts the silence with its id: alertd replaces it.
	other := run("silence", "add", "alertname=Other", "--comment=c", "--duration=1h")
	run("silence", "update", other, "--duration=2h")
	states := map[string]string{}
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "--expired")), &sils))
	for _, s := range sils {
		states[*s.ID] = *s.Status.State
	}
	require.Equal(t, "expired", states[other])
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "alertname=Other")), &sils))
	require.Len(t, sils, 1, "the replacement, active")
	require.NotEqual(t, other, *sils[0].ID)
	require.Greater(t, time.Time(*sils[0].EndsAt), time.Now().Add(90*time.Minute), "for the new duration")

	// What Alertmanager's API refuses, alertd refuses.
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/api/v2/silences", `{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2099-01-01T00:00:00Z","endsAt":"2099-01-02T00:00:00Z","createdBy":"x"}`, 400},
		{"POST", "/api/v2/silences", `{"matchers":[{"name":"a","value":"","isRegex":false}],"startsAt":"2099-01-01T00:00:00Z","endsAt":"2099-01-02T00:00:00Z","createdBy":"x","comment":"c"}`, 400},
		{"POST", "/api/v2/silences", `{"id":"nope","matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2099-01-01T00:00:00Z","endsAt":"2099-01-02T00:00:00Z","createdBy":"x","comment":"c"}`, 404},
		{"POST", "/api/v2/silences", `{"matchers":`, 400},
		{"DELETE", "/api/v2/silence/nope", "", 404},
		{"GET", `/api/v2/silences?filter=a=~"("`, "", 400},
	} {
		req, err := http.NewRequest(tc.method, a.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.code, resp.StatusCode, "%s %s %s", tc.method, tc.path, tc.body)
	}
}
