package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	amsilence "github.com/prometheus/alertmanager/api/v2/client/silence"
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
	mutedFlushes := func() (mute, active float64) {
		mute, _ = metric(t, a.Registry(), "alertd_notifications_suppressed_total", "reason", "mute_time_interval")
		active, _ = metric(t, a.Registry(), "alertd_notifications_suppressed_total", "reason", "active_time_interval")
		return mute, active
	}
	require.Eventually(t, func() bool {
		n, m := mutedFlushes()
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
	// Two more flushes of each muted group: a flush counts its alert
	// before it reports it muted, and a group's flushes run one at a
	// time, so once a third is counted the two before it are recorded.
	n0, m0 := mutedFlushes()
	require.Eventually(t, func() bool {
		n, m := mutedFlushes()
		return n >= n0+3 && m >= m0+3
	}, 30*time.Second, 20*time.Millisecond, "the muted groups were not flushed again (group_interval: 1s)")
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

	// amtool's update posts the silence with its id: an active silence's
	// new end is an update in place, as in Alertmanager (v0.35), and the
	// id stays.
	other := run("silence", "add", "alertname=Other", "--comment=c", "--duration=1h")
	// (Debian's amtool 0.25 prints the updated silence, or with --quiet a
	// pointer, not its id: the query says which it is.)
	run("silence", "update", other, "--duration=2h", "--comment=longer")
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "--expired", "alertname=Other")), &sils))
	require.Empty(t, sils, "nothing expired")
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "alertname=Other")), &sils))
	require.Len(t, sils, 1)
	require.Equal(t, other, *sils[0].ID)
	require.Equal(t, "longer", *sils[0].Comment)
	require.Greater(t, time.Time(*sils[0].EndsAt), time.Now().Add(90*time.Minute), "for the new duration")
	// A new start is a new silence; the old one is expired.
	run("silence", "update", other, "--start="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "--expired", "alertname=Other")), &sils))
	require.Len(t, sils, 1)
	require.Equal(t, other, *sils[0].ID)
	require.NoError(t, json.Unmarshal([]byte(run("silence", "query", "-o", "json", "alertname=Other")), &sils))
	require.Len(t, sils, 1)
	require.NotEqual(t, other, *sils[0].ID)
	require.Equal(t, "pending", *sils[0].Status.State)

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

// v2Matcher is an Alertmanager API matcher: = or =~.
func v2Matcher(name, value string, regex bool) *models.Matcher {
	return &models.Matcher{Name: &name, Value: &value, IsRegex: &regex, IsEqual: new(true)}
}

// postV2Silence posts a silence to the Alertmanager API at base (alertd's
// or a real Alertmanager's) and returns the status and, on a 200, the id.
func postV2Silence(t *testing.T, base, id string, start, end time.Time, comment string, ms ...*models.Matcher) (int, string) {
	t.Helper()
	ps := models.PostableSilence{ID: id, Silence: models.Silence{Matchers: ms,
		StartsAt: dateTime(start), EndsAt: dateTime(end), CreatedBy: new("alice"), Comment: new(comment)}}
	b, err := json.Marshal(ps)
	require.NoError(t, err)
	code, body := post(t, base+"/api/v2/silences", "application/json", string(b))
	if code != http.StatusOK {
		return code, ""
	}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &out), body)
	return code, out.SilenceID
}

// getV2Silences lists the silences of the Alertmanager API at base.
func getV2Silences(t *testing.T, base, query string) models.GettableSilences {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/silences?" + query)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out models.GettableSilences
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// getV2SilenceByID gets one silence of the Alertmanager API at base.
func getV2SilenceByID(t *testing.T, base, id string) *models.GettableSilence {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/silence/" + id)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out models.GettableSilence
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return &out
}

// deleteV2Silence expires a silence through the Alertmanager API at base.
func deleteV2Silence(t *testing.T, base, id string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, base+"/api/v2/silence/"+id, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// Posting a silence with its id updates it in place, keeping the id, when
// Alertmanager's canUpdate allows it, and otherwise expires it and creates
// a new one; a new silence starts no earlier than now; an update in place
// survives a restart. POST /api/v1/silences with an id does the same, and
// an update without expireOnResolve keeps the silence's.
func TestAPIv2SilenceUpdate(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, ""))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	first := start(t, dir, o, logs)
	url := first.URL
	x := v2Matcher("alertname", "X", false)
	ms := func(t0 time.Time) time.Time { return t0.Truncate(time.Millisecond) } // as the API writes it
	now := clock.Now().UTC().Truncate(time.Second)

	// Pending: anything but the matchers may change, the start not to the
	// past.
	code, pending := postV2Silence(t, url, "", now.Add(time.Hour), now.Add(2*time.Hour), "planned", x)
	require.Equal(t, http.StatusOK, code)
	before := clock.Now()
	_, id := postV2Silence(t, url, pending, now.Add(30*time.Minute), now.Add(3*time.Hour), "moved", x)
	require.Equal(t, pending, id, "a pending silence's new times are an update")
	s := getV2SilenceByID(t, url, pending)
	require.Equal(t, "moved", *s.Comment)
	require.Equal(t, now.Add(30*time.Minute), time.Time(*s.StartsAt).UTC())
	require.Equal(t, "pending", *s.Status.State)
	require.False(t, time.Time(*s.UpdatedAt).Before(ms(before)), "updatedAt is the update's time")

	before = clock.Now()
	_, active := postV2Silence(t, url, pending, now.Add(-time.Minute), now.Add(3*time.Hour), "started early", x)
	after := clock.Now()
	require.NotEqual(t, pending, active, "a pending silence's start moved to the past is a new silence")
	require.Equal(t, "expired", *getV2SilenceByID(t, url, pending).Status.State)
	s = getV2SilenceByID(t, url, active)
	require.Equal(t, "active", *s.Status.State)
	started := time.Time(*s.StartsAt)
	require.False(t, started.Before(ms(before)) || started.After(after), "the start moved up to now: %s", started)

	// Active: the same start (to the second: the API rounds it to the
	// millisecond) and a later end, a new author and comment, is an update.
	_, id = postV2Silence(t, url, active, started, now.Add(5*time.Hour), "extended", x)
	require.Equal(t, active, id)
	s = getV2SilenceByID(t, url, active)
	require.Equal(t, "extended", *s.Comment)
	require.Equal(t, now.Add(5*time.Hour), time.Time(*s.EndsAt).UTC())

	_, kept := postV2Silence(t, url, "", now.Add(-time.Hour), now.Add(time.Hour), "kept", v2Matcher("alertname", "K", true))
	_, id = postV2Silence(t, url, kept, time.Time(*getV2SilenceByID(t, url, kept).StartsAt), now.Add(6*time.Hour), "kept longer", v2Matcher("alertname", "K", true))
	require.Equal(t, kept, id)

	// A new start, or new matchers, is a new silence; the old one expires.
	_, moved := postV2Silence(t, url, active, started.Add(-time.Hour), now.Add(5*time.Hour), "restarted", x)
	require.NotEqual(t, active, moved)
	require.Equal(t, "expired", *getV2SilenceByID(t, url, active).Status.State)
	s = getV2SilenceByID(t, url, moved)
	_, other := postV2Silence(t, url, moved, time.Time(*s.StartsAt), now.Add(5*time.Hour), "other", v2Matcher("alertname", "Y", false))
	require.NotEqual(t, moved, other)
	expired := getV2SilenceByID(t, url, moved)
	require.Equal(t, "expired", *expired.Status.State)

	// Expired: never updated, and left as it was.
	clock.skip(time.Minute)
	_, again := postV2Silence(t, url, moved, now.Add(time.Hour), now.Add(2*time.Hour), "again", x)
	require.NotEqual(t, moved, again)
	require.Equal(t, expired, getV2SilenceByID(t, url, moved))

	// An unknown id is a 404, as in Alertmanager.
	code, _ = postV2Silence(t, url, "nope", now.Add(time.Hour), now.Add(2*time.Hour), "c", x)
	require.Equal(t, http.StatusNotFound, code)

	// POST /api/v1/silences with an id follows the same rules, and an
	// update that does not say expireOnResolve keeps it.
	v1 := createSilence(t, first, fmt.Sprintf(`{"matchers":["alertname=\"Z\""],"startsAt":%q,"duration":"1h","createdBy":"bob","comment":"ack","expireOnResolve":true}`,
		now.Add(time.Hour).Format(time.RFC3339)))
	_, id = postV2Silence(t, url, v1, now.Add(2*time.Hour), now.Add(3*time.Hour), "ack, later", v2Matcher("alertname", "Z", false))
	require.Equal(t, v1, id)
	require.Equal(t, v1, createSilence(t, first, fmt.Sprintf(`{"id":%q,"matchers":["{alertname=\"Z\"}"],"startsAt":%q,"duration":"2h","createdBy":"bob","comment":"ack, longer"}`,
		v1, now.Add(2*time.Hour).Format(time.RFC3339))), "the same matchers, written otherwise")
	v1Silence := func(base, id string) map[string]any {
		code, body := get(t, base+"/api/v1/silences")
		require.Equal(t, http.StatusOK, code)
		var r struct{ Data []map[string]any }
		require.NoError(t, json.Unmarshal([]byte(body), &r))
		for _, s := range r.Data {
			if s["id"] == id {
				return s
			}
		}
		t.Fatalf("no silence %s in %s", id, body)
		return nil
	}
	require.Equal(t, true, v1Silence(url, v1)["expireOnResolve"])
	require.Equal(t, "ack, longer", v1Silence(url, v1)["comment"])
	v1b := createSilence(t, first, fmt.Sprintf(`{"id":%q,"matchers":["alertname=\"Z\""],"startsAt":%q,"duration":"2h","createdBy":"bob","comment":"c"}`,
		v1, now.Add(-time.Hour).Format(time.RFC3339)))
	require.NotEqual(t, v1, v1b)
	require.Equal(t, true, v1Silence(url, v1b)["expireOnResolve"], "kept by the replacement too")
	require.Equal(t, "expired", v1Silence(url, v1)["state"])

	// The silence updated in place keeps its id and its update across a
	// restart.
	require.NoError(t, first.Stop())
	b := start(t, dir, o, logs)
	s = getV2SilenceByID(t, b.URL, kept)
	require.Equal(t, "kept longer", *s.Comment)
	require.Equal(t, "active", *s.Status.State)
	require.Equal(t, now.Add(6*time.Hour), time.Time(*s.EndsAt).UTC())
	require.Equal(t, "extended", *getV2SilenceByID(t, b.URL, active).Comment)
	require.Equal(t, "ack, longer", v1Silence(b.URL, v1)["comment"])
}

// A silence with expireOnResolve says so in GET /api/v2/silences and GET
// /api/v2/silence/{id}, and only such a silence carries the field, so a
// client that reads a silence back sees it while the others answer as
// Alertmanager's do. Alertmanager's Go client (its go-openapi models,
// which amtool decodes with) reads both answers, and its read-modify-write,
// which drops the field, keeps it; so does a script that posts the answer
// back whole, and one that posts it false clears it.
func TestAPIv2SilenceExpireOnResolve(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	now := time.Now().UTC().Truncate(time.Second)
	code, resp := post(t, a.URL+"/api/v2/silences", "application/json", fmt.Sprintf(
		`{"matchers":[{"name":"alertname","value":"Acked","isRegex":false}],"startsAt":%q,"endsAt":%q,"createdBy":"alice","comment":"on it","expireOnResolve":true}`,
		now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)))
	require.Equal(t, http.StatusOK, code, resp)
	var posted struct {
		SilenceID string `json:"silenceID"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &posted))
	ack := posted.SilenceID
	plain := createSilence(t, a, `{"matchers":["alertname=\"Plain\""],"duration":"1h","createdBy":"bob","comment":"c"}`)

	// The answers as a client reads them, field by field.
	one := func(id string) map[string]any {
		t.Helper()
		code, body := get(t, a.URL+"/api/v2/silence/"+id)
		require.Equal(t, http.StatusOK, code, body)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m), body)
		return m
	}
	require.Equal(t, true, one(ack)["expireOnResolve"], "posted through the API v2")
	require.NotContains(t, one(plain), "expireOnResolve")
	code, body := get(t, a.URL+"/api/v2/silences")
	require.Equal(t, http.StatusOK, code, body)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &list), body)
	require.Len(t, list, 2)
	for _, s := range list {
		if s["id"] == ack {
			require.Equal(t, true, s["expireOnResolve"])
		} else {
			require.NotContains(t, s, "expireOnResolve")
		}
	}
	// alertd replay --silences reads it from that answer.
	rs, err := ReadReplaySilences(strings.NewReader(body), now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, rs, 2)
	for _, s := range rs {
		require.Equal(t, s.ID == ack, s.ExpireOnResolve, s.ID)
	}

	// Alertmanager's client decodes both answers and updates the silence
	// in place with what it read: a new comment, the same times.
	u, err := url.Parse(a.URL)
	require.NoError(t, err)
	am := amclient.NewHTTPClientWithConfig(strfmt.Default, amclient.DefaultTransportConfig().WithHost(u.Host).WithBasePath("/api/v2").WithSchemes([]string{"http"}))
	all, err := am.Silence.GetSilences(amsilence.NewGetSilencesParams().WithContext(t.Context()))
	require.NoError(t, err)
	require.Len(t, all.Payload, 2)
	got, err := am.Silence.GetSilence(amsilence.NewGetSilenceParams().WithContext(t.Context()).WithSilenceID(strfmt.UUID(ack)))
	require.NoError(t, err)
	require.Equal(t, ack, *got.Payload.ID)
	require.Equal(t, "on it", *got.Payload.Comment)
	require.Equal(t, "active", *got.Payload.Status.State)
	got.Payload.Comment = new("still on it")
	ok, err := am.Silence.PostSilences(amsilence.NewPostSilencesParams().WithContext(t.Context()).
		WithSilence(&models.PostableSilence{ID: *got.Payload.ID, Silence: got.Payload.Silence}))
	require.NoError(t, err)
	require.Equal(t, ack, ok.Payload.SilenceID, "an update in place")
	s := one(ack)
	require.Equal(t, "still on it", s["comment"])
	require.Equal(t, true, s["expireOnResolve"], "an update without the field keeps it")

	// A script posts the answer back whole, id, status and updatedAt
	// included; then with the field false.
	repost := func(s map[string]any) {
		t.Helper()
		b, err := json.Marshal(s)
		require.NoError(t, err)
		code, resp := post(t, a.URL+"/api/v2/silences", "application/json", string(b))
		require.Equal(t, http.StatusOK, code, resp)
		require.JSONEq(t, fmt.Sprintf(`{"silenceID":%q}`, ack), resp)
	}
	s["comment"] = "whole"
	repost(s)
	s = one(ack)
	require.Equal(t, "whole", s["comment"])
	require.Equal(t, true, s["expireOnResolve"])
	s["expireOnResolve"] = false
	repost(s)
	require.NotContains(t, one(ack), "expireOnResolve")
}

// GET /api/v2/silences takes Alertmanager v0.35's parameters and sorts as
// its SortSilences: active ones by end, pending ones by start, expired
// ones by end, the latest first; filter keeps the silences that have each
// matcher it gives, with the same type and value.
func TestAPIv2SilenceList(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	a := startAlertd(t, routes(h, nil, `
silences:
  - matchers: ['team="infra"']
    starts_at: 2000-01-01T00:00:00Z
    ends_at: 2099-01-01T00:00:00Z
    comment: from the file
`), map[string]string{"rules.yml": "groups: []\n"}, clock.options())
	now := clock.Now()
	x, xRegex, team := v2Matcher("alertname", "X", false), v2Matcher("alertname", "X", true), v2Matcher("team", "a", false)
	for _, s := range []struct {
		comment    string
		start, end time.Duration
		ms         []*models.Matcher
	}{
		{"active 2h", 0, 2 * time.Hour, []*models.Matcher{x, team}},
		{"active 1h", 0, time.Hour, []*models.Matcher{xRegex}},
		{"pending 2h", 2 * time.Hour, 3 * time.Hour, []*models.Matcher{x}},
		{"pending 1h", time.Hour, 3 * time.Hour, []*models.Matcher{team}},
		{"expired first", 0, time.Hour, []*models.Matcher{x}},
		{"expired next", time.Hour, 2 * time.Hour, []*models.Matcher{x}},
	} {
		code, id := postV2Silence(t, a.URL, "", now.Add(s.start), now.Add(s.end), s.comment, s.ms...)
		require.Equal(t, http.StatusOK, code)
		if strings.HasPrefix(s.comment, "expired") {
			deleteV2Silence(t, a.URL, id)
			clock.skip(time.Second) // later expiries end later
		}
	}
	comments := func(query string) []string {
		var out []string
		for _, s := range getV2Silences(t, a.URL, query) {
			out = append(out, *s.Comment)
		}
		return out
	}
	require.Equal(t, []string{"active 1h", "active 2h", "from the file", "pending 1h", "pending 2h", "expired next", "expired first"}, comments(""))
	// GET /api/v1/silences lists them in the same order, as Alertmanager's
	// API v1 did.
	code, body := get(t, a.URL+"/api/v1/silences")
	require.Equal(t, http.StatusOK, code, body)
	var v1 struct{ Data []struct{ Comment string } }
	require.NoError(t, json.Unmarshal([]byte(body), &v1))
	var v1Comments []string
	for _, s := range v1.Data {
		v1Comments = append(v1Comments, s.Comment)
	}
	require.Equal(t, comments(""), v1Comments)
	require.Equal(t, []string{"pending 1h", "pending 2h", "expired next", "expired first"}, comments("active=false"))
	require.Equal(t, []string{"active 1h", "active 2h", "from the file"}, comments("pending=false&expired=false"))
	require.Empty(t, comments("active=false&pending=false&expired=false"))
	require.Equal(t, []string{"active 2h", "pending 2h", "expired next", "expired first"}, comments(`filter=alertname="X"`),
		"an equality filter: not the regular expression's silence")
	require.Equal(t, []string{"active 1h"}, comments(`filter=alertname=~"X"`))
	require.Equal(t, []string{"active 2h"}, comments(`filter=alertname="X"&filter=team="a"`))
	require.Equal(t, []string{"from the file"}, comments(`filter=team="infra"`))
	require.Empty(t, comments(`filter=team!="a"`))
	require.Empty(t, comments(`filter=alertname=~"X.*"`), "the same value, not one it matches")

	for _, q := range []string{`filter=a=~"("`, `filter={a="b"}`, "active=perhaps", "expired=2"} {
		code, body := get(t, a.URL+"/api/v2/silences?"+url.PathEscape(q))
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", q, body)
	}
}

// The same silence requests to alertd and to a real Alertmanager get the
// same answers: which updates keep the id, which make a new silence, where
// a new silence starts, and the order of GET /api/v2/silences. Debian's
// Alertmanager (0.25) compares an active silence's start to the
// nanosecond, where v0.35 compares it to the second, so the active
// silence updated here starts on a whole second in both. Ties are left
// out: Alertmanager leaves their order to chance, alertd orders them by id.
func TestAPIv2SilencesAsAlertmanager(t *testing.T) {
	t.Parallel()
	am := alertmanagertest.Start(t, "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)

	type outcome struct {
		Step  string
		Code  int
		Kept  bool
		State string // of the silence the answer names
	}
	scenario := func(base string) (steps []outcome, order []string) {
		now := time.Now().UTC().Truncate(time.Second)
		m := func(name string) *models.Matcher { return v2Matcher("alertname", name, false) }
		ids := map[string]string{}
		step := func(name, id string, start, end time.Time, comment string, ms ...*models.Matcher) string {
			code, got := postV2Silence(t, base, id, start, end, comment, ms...)
			o := outcome{Step: name, Code: code, Kept: got != "" && got == id}
			if got != "" {
				s := getV2SilenceByID(t, base, got)
				o.State = *s.Status.State
				if time.Time(*s.StartsAt).Before(now) {
					o.State += ", started before the test"
				}
			}
			steps = append(steps, o)
			ids[comment] = got
			return got
		}
		pending := step("new pending", "", now.Add(time.Hour), now.Add(2*time.Hour), "pending", m("P"))
		soon := step("new, starting in 4s", "", now.Add(4*time.Second), now.Add(time.Hour), "soon", m("S"))
		past := step("new, starting in the past", "", now.Add(-time.Hour), now.Add(2*time.Hour), "past", m("A"))
		gone := step("new, to expire", "", now, now.Add(time.Hour), "gone", m("E"))
		deleteV2Silence(t, base, gone)
		step("pending, new times", pending, now.Add(30*time.Minute), now.Add(3*time.Hour), "pending moved", m("P"))
		step("pending, start in the past", pending, now.Add(-time.Minute), now.Add(3*time.Hour), "pending started", m("P"))
		started := time.Time(*getV2SilenceByID(t, base, past).StartsAt)
		replaced := step("active, new start", past, started.Add(-time.Minute), now.Add(3*time.Hour), "past moved", m("A"))
		step("active, new matchers", replaced, time.Time(*getV2SilenceByID(t, base, replaced).StartsAt), now.Add(210*time.Minute), "past other", m("B"))
		step("expired", gone, now.Add(time.Hour), now.Add(2*time.Hour), "gone again", m("E"))
		step("unknown id", "4a1b2c3d-0000-4000-8000-000000000000", now.Add(time.Hour), now.Add(2*time.Hour), "unknown", m("U"))
		require.Eventually(t, func() bool { return *getV2SilenceByID(t, base, soon).Status.State == "active" },
			30*time.Second, 50*time.Millisecond)
		step("active, same start, new end and comment", soon, now.Add(4*time.Second), now.Add(4*time.Hour), "soon longer", m("S"))
		for _, s := range getV2Silences(t, base, "") {
			order = append(order, *s.Comment+" "+*s.Status.State)
		}
		return steps, order
	}
	amSteps, amOrder := scenario(am.URL)
	steps, order := scenario(a.URL)
	require.Equal(t, amSteps, steps)
	require.Equal(t, amOrder, order)
	t.Logf("as Alertmanager: %+v\n%q", steps, order)
}

// A silence's annotations (Alertmanager v0.35's API) are kept with it:
// GET /api/v2/silences, GET /api/v2/silence/{id} and GET /api/v1/silences
// return them, an update in place replaces them as Alertmanager's does,
// and they survive a restart. A silences file written before annotations
// were kept still reads.
func TestAPIv2SilenceAnnotations(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, ""))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	// A silence as an older alertd stored it: no annotations.
	now := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	writeFile(t, filepath.Join(dir, "data"), "silences.json", fmt.Sprintf(
		`[{"id":"0123456789abcdef","matchers":["alertname=\"Old\""],"startsAt":%q,"endsAt":%q,"createdBy":"carol","comment":"from before","source":"api"}]`,
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)))
	o, logs := newOptions(t, dir)
	first := start(t, dir, o, logs)
	url := first.URL
	old := getV2SilenceByID(t, url, "0123456789abcdef")
	require.Equal(t, "from before", *old.Comment)
	require.Nil(t, old.Annotations)

	postAnn := func(id string, ann models.LabelSet) string {
		t.Helper()
		// An update in place keeps the start the silence has, as a client
		// that read it back sends it: a start posted in the past became
		// the time alertd got it, a second boundary later on a slow run.
		start := dateTime(now)
		if id != "" {
			start = getV2SilenceByID(t, url, id).StartsAt
		}
		ps := models.PostableSilence{ID: id, Silence: models.Silence{Matchers: models.Matchers{v2Matcher("alertname", "X", false)},
			StartsAt: start, EndsAt: dateTime(now.Add(2 * time.Hour)), CreatedBy: new("alice"), Comment: new("planned"),
			Annotations: ann}}
		b, err := json.Marshal(ps)
		require.NoError(t, err)
		code, body := post(t, url+"/api/v2/silences", "application/json", string(b))
		require.Equal(t, http.StatusOK, code, body)
		var out struct {
			SilenceID string `json:"silenceID"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out), body)
		return out.SilenceID
	}
	id := postAnn("", models.LabelSet{"ticket": "OPS-1", "type": "planned"})
	require.Equal(t, models.LabelSet{"ticket": "OPS-1", "type": "planned"}, getV2SilenceByID(t, url, id).Annotations)
	var listed models.LabelSet
	for _, s := range getV2Silences(t, url, "") {
		if *s.ID == id {
			listed = s.Annotations
		}
	}
	require.Equal(t, models.LabelSet{"ticket": "OPS-1", "type": "planned"}, listed)

	// Updated in place: the posted annotations replace the silence's.
	require.Equal(t, id, postAnn(id, models.LabelSet{"ticket": "OPS-2"}))
	require.Equal(t, models.LabelSet{"ticket": "OPS-2"}, getV2SilenceByID(t, url, id).Annotations)

	v1Annotations := func(base, id string) any {
		code, body := get(t, base+"/api/v1/silences")
		require.Equal(t, http.StatusOK, code)
		var r struct{ Data []map[string]any }
		require.NoError(t, json.Unmarshal([]byte(body), &r))
		for _, s := range r.Data {
			if s["id"] == id {
				return s["annotations"]
			}
		}
		t.Fatalf("no silence %s in %s", id, body)
		return nil
	}
	require.Equal(t, map[string]any{"ticket": "OPS-2"}, v1Annotations(url, id))
	v1 := createSilence(t, first, `{"matchers":["alertname=\"Y\""],"duration":"1h","createdBy":"bob","annotations":{"change":"CHG-7"}}`)
	require.Equal(t, map[string]any{"change": "CHG-7"}, v1Annotations(url, v1))

	require.NoError(t, first.Stop())
	b := start(t, dir, o, logs)
	require.Equal(t, models.LabelSet{"ticket": "OPS-2"}, getV2SilenceByID(t, b.URL, id).Annotations, "kept across a restart")
	require.Equal(t, map[string]any{"change": "CHG-7"}, v1Annotations(b.URL, v1))
	require.Equal(t, "from before", *getV2SilenceByID(t, b.URL, "0123456789abcdef").Comment)
}
