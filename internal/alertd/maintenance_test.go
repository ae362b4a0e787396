package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"
)

// createWindow posts a maintenance window and returns its id.
func createWindow(t *testing.T, a *testAlertd, body string) string {
	t.Helper()
	code, resp := post(t, a.URL+"/api/v1/maintenance_windows", "application/json", body)
	require.Equal(t, http.StatusOK, code, resp)
	var r struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &r))
	require.NotEmpty(t, r.Data.ID)
	return r.Data.ID
}

// windowStates returns the state of each window by name, from GET
// /api/v1/maintenance_windows.
func windowStates(t *testing.T, a *testAlertd) map[string]string {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/maintenance_windows")
	require.Equal(t, http.StatusOK, code)
	var ws []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &ws))
	out := map[string]string{}
	for _, w := range ws {
		out[w.Name] = w.State
	}
	return out
}

func deleteWindow(t *testing.T, a *testAlertd, id string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, a.URL+"/api/v1/maintenance_windows/"+id, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// A window applies within its time intervals (in their location), not
// outside them, and not once it expired.
func TestMaintenanceWindowState(t *testing.T) {
	var tis []timeinterval.TimeInterval
	require.NoError(t, yaml.UnmarshalStrict([]byte(`
- times: [{start_time: "02:00", end_time: "04:00"}]
  weekdays: ['monday:friday']
  location: Europe/Berlin
- days_of_month: ['-1']
  months: [december]
`), &tis))
	expires := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &maintenanceWindow{ID: "w", Name: "nightly", Matchers: []string{`model="fraud"`}, TimeIntervals: tis, ExpiresAt: &expires}
	var err error
	w.matchers, err = parseMatchers("a maintenance window", w.Matchers)
	require.NoError(t, err)
	m := &maintenance{&itemSet[maintenanceWindow, *maintenanceWindow]{items: map[string]*maintenanceWindow{"w": w}}}
	for _, tc := range []struct {
		name   string
		now    time.Time
		labels model.LabelSet
		state  string
	}{
		{"Tuesday 03:00 in Berlin", time.Date(2025, 6, 3, 1, 0, 0, 0, time.UTC), model.LabelSet{"model": "fraud"}, "active"},
		{"Tuesday 04:00 in Berlin", time.Date(2025, 6, 3, 2, 0, 0, 0, time.UTC), model.LabelSet{"model": "fraud"}, "inactive"},
		{"Tuesday 03:00 UTC", time.Date(2025, 6, 3, 3, 0, 0, 0, time.UTC), model.LabelSet{"model": "fraud"}, "inactive"},
		{"Saturday 03:00 in Berlin", time.Date(2025, 6, 7, 1, 0, 0, 0, time.UTC), model.LabelSet{"model": "fraud"}, "inactive"},
		{"last day of December", time.Date(2025, 12, 31, 12, 0, 0, 0, time.UTC), model.LabelSet{"model": "fraud"}, "active"},
		{"other model", time.Date(2025, 6, 3, 1, 0, 0, 0, time.UTC), model.LabelSet{"model": "churn"}, "active"},
		{"expired", time.Date(2026, 1, 6, 1, 0, 0, 0, time.UTC), model.LabelSet{"model": "fraud"}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.state, w.state(tc.now))
			al := &Alert{}
			al.Labels = tc.labels
			d := m.Process(t.Context(), tc.now, al)
			want := tc.state == "active" && tc.labels["model"] == "fraud"
			require.Equal(t, want, al.Suppressed)
			if want {
				require.Equal(t, Decision{Action: "suppressed", Reason: `in maintenance window "nightly" (w, expires at 2026-01-01T00:00:00Z)`}, d)
			}
		})
	}
}

// Maintenance windows from the configuration and the API keep the alerts
// they select from notifications while active; overlapping windows both
// apply and are both named; a window outside its intervals does not apply;
// an expired or deleted window no longer does, and its alerts are released.
func TestMaintenanceWindows(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	a := startAlertd(t, routes(h, nil, `
intake:
  resolve_timeout: 24h
maintenance_windows:
  - name: always
    matchers: ['alertname=~"Nightly|Both"']
    time_intervals: [{weekdays: ['monday:sunday']}]
  - name: last century
    matchers: ['alertname="Other"']
    time_intervals: [{years: ['1900:1999']}]
`), map[string]string{"rules.yml": "groups: []\n"}, clock.options())

	// An alert firing (and paged) before a window selects it is muted
	// as soon as the window is created.
	postAlert(t, a, `{"alertname":"Early","model":"fraud"}`)
	h.wait(t, "Early", "firing", 30*time.Second)

	hour := createWindow(t, a, fmt.Sprintf(`{"name":"retraining","matchers":["model=\"fraud\""],
		"time_intervals":[{"weekdays":["monday:sunday"],"location":"UTC"}],"expires_at":%q}`, clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
	deleted := createWindow(t, a, `{"name":"deleted","matchers":["alertname=\"Deleted\""],"time_intervals":[{}]}`)
	early := waitFor(t, a, model.LabelSet{"alertname": "Early", "model": "fraud"}, inState("suppressed"), "a new window did not mute a firing alert")
	require.Contains(t, lastOf(early.History, "maintenance").Reason, `in maintenance window "retraining" (`+hour+", expires at ")

	postAlert(t, a, `{"alertname":"Nightly"}`)
	postAlert(t, a, `{"alertname":"Both","model":"fraud"}`)
	postAlert(t, a, `{"alertname":"Other"}`)
	postAlert(t, a, `{"alertname":"Deploying","model":"fraud"}`)
	postAlert(t, a, `{"alertname":"Deleted"}`)
	waitFor(t, a, model.LabelSet{"alertname": "Nightly"}, inState("suppressed"), "a config window did not apply")
	both := waitFor(t, a, model.LabelSet{"alertname": "Both", "model": "fraud"}, inState("suppressed"), "overlapping windows did not apply")
	reason := lastOf(both.History, "maintenance").Reason
	require.True(t, strings.HasPrefix(reason, `in maintenance windows "always" (config-`), reason)
	require.Contains(t, reason, `, "retraining" (`+hour)
	waitFor(t, a, model.LabelSet{"alertname": "Deleted"}, inState("suppressed"), "an API window did not apply")
	h.wait(t, "Other", "firing", 30*time.Second)
	require.Equal(t, map[string]string{"always": "active", "last century": "inactive", "retraining": "active", "deleted": "active"}, windowStates(t, a))
	n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "maintenance")
	require.Equal(t, 5.0, n)

	// Deleting a window expires it: its alert is released.
	require.Equal(t, http.StatusOK, deleteWindow(t, a, deleted))
	h.wait(t, "Deleted", "firing", 30*time.Second)
	require.Equal(t, "expired", windowStates(t, a)["deleted"])

	// The hour passes: the window expires, the alerts only it held are
	// released and paged once; the one the other window holds is not.
	clock.skip(time.Hour)
	h.wait(t, "Deploying", "firing", 30*time.Second)
	waitFor(t, a, model.LabelSet{"alertname": "Early", "model": "fraud"}, inState("firing"), "not released on expiry")
	require.Equal(t, "expired", windowStates(t, a)["retraining"])
	both = waitFor(t, a, model.LabelSet{"alertname": "Both", "model": "fraud"}, inState("suppressed"), "released while a window still holds it")
	reason = lastOf(both.History, "maintenance").Reason
	require.True(t, strings.HasPrefix(reason, `in maintenance window "always" (config-`), reason)
	require.Empty(t, h.matching("Nightly", ""))
	require.Empty(t, h.matching("Both", ""))
	require.Never(t, func() bool { return len(h.matching("Deploying", "firing")) > 1 }, time.Second, 50*time.Millisecond)
	h.checkWire(t)
}

// Bad maintenance windows get a 400 naming the field and the problem.
func TestMaintenanceWindowsBadInput(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
maintenance_windows:
  - name: from config
    matchers: ['a="b"']
    time_intervals: [{}]
`), map[string]string{"rules.yml": "groups: []\n"}, nil)
	const ti = `"time_intervals":[{"weekdays":["saturday"]}]`
	for _, tc := range []struct{ name, body, want string }{
		{"bad JSON", `{"name":"w",`, "couldn't parse maintenance window: unexpected EOF\n"},
		{"unknown field", `{"name":"w","matchers":["a=\"b\""],` + ti + `,"until":"x"}`, "couldn't parse maintenance window: json: unknown field \"until\"\n"},
		{"no name", `{"matchers":["a=\"b\""],` + ti + `}`, "missing field \"name\"\n"},
		{"no matchers", `{"name":"w",` + ti + `}`, "matchers: a maintenance window needs at least one matcher\n"},
		{"malformed matcher", `{"name":"w","matchers":["a=~\"(\""],` + ti + `}`, "matchers: invalid matcher \"a=~\\\"(\\\"\": error parsing regexp: missing closing ): `^(?:()$`\n"},
		{"matches everything", `{"name":"w","matchers":["a=\"\""],` + ti + `}`, "matchers: matchers must not match the empty label set: at least one needs a non-empty value\n"},
		{"no time intervals", `{"name":"w","matchers":["a=\"b\""]}`, "time_intervals: a maintenance window needs at least one time interval\n"},
		{"bad time", `{"name":"w","matchers":["a=\"b\""],"time_intervals":[{},{"times":[{"start_time":"25:00","end_time":"26:00"}]}]}`,
			"time_intervals[1]: couldn't parse timestamp 25:00, invalid format\n"},
		{"bad weekday", `{"name":"w","matchers":["a=\"b\""],"time_intervals":[{"weekdays":["someday"]}]}`, "time_intervals[0]: someday is not a valid weekday\n"},
		{"unknown interval field", `{"name":"w","matchers":["a=\"b\""],"time_intervals":[{"weekday":["monday"]}]}`, "time_intervals[0]: json: unknown field \"weekday\"\n"},
		{"bad location", `{"name":"w","matchers":["a=\"b\""],"time_intervals":[{"location":"Mars/Olympus"}]}`, "time_intervals[0]: unknown time zone Mars/Olympus\n"},
		{"expired", `{"name":"w","matchers":["a=\"b\""],` + ti + `,"expires_at":"2001-01-01T00:00:00Z"}`, "expires_at must be in the future\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, a.URL+"/api/v1/maintenance_windows", "application/json", tc.body)
			require.Equal(t, http.StatusBadRequest, code)
			require.Equal(t, tc.want, body)
		})
	}
	require.Equal(t, map[string]string{"from config": "active"}, windowStates(t, a), "nothing was created")
	require.Equal(t, http.StatusNotFound, deleteWindow(t, a, "nope"))
	code, r := apiGet(t, a.URL+"/api/v1/maintenance_windows")
	require.Equal(t, http.StatusOK, code)
	var ws []maintenanceWindow
	require.NoError(t, json.Unmarshal(r.Data, &ws))
	require.Equal(t, http.StatusBadRequest, deleteWindow(t, a, ws[0].ID), "a config window is removed from the file")
}
