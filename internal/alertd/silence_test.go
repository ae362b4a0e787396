package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func createSilence(t *testing.T, a *testAlertd, body string) string {
	t.Helper()
	code, resp := post(t, a.URL+"/api/v1/silences", "application/json", body)
	require.Equal(t, http.StatusOK, code, resp)
	var r struct {
		Data struct {
			SilenceID string `json:"silenceID"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &r))
	require.NotEmpty(t, r.Data.SilenceID)
	return r.Data.SilenceID
}

// A silence created through the API keeps the alerts it selects from
// notifications, with the reason in their history, until it expires; then
// they are released and notified. A silence created while an alert fires
// suppresses it too, and silences survive a restart.
func TestSilences(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, ""))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)

	// The silence ends 3s after alertd creates it, so no sooner than 3s
	// after this.
	silenced := time.Now()
	id := createSilence(t, a, `{"matchers":["alertname=\"Noisy\""],"duration":"3s","createdBy":"alice","comment":"maintenance"}`)
	postAlert(t, a, `{"alertname":"Noisy","model":"fraud"}`)
	noisy := waitAlert(t, a, model.LabelSet{"alertname": "Noisy", "model": "fraud"})
	require.Equal(t, "suppressed", noisy.State)
	last := noisy.History[len(noisy.History)-1]
	require.Equal(t, "silence", last.Stage)
	require.Equal(t, "suppressed", last.Action)
	require.Contains(t, last.Reason, "silenced by "+id+" until ")
	require.Contains(t, last.Reason, ", created by alice: maintenance")
	n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "silence")
	require.Equal(t, 1.0, n)

	// Released and notified once the silence ends, and not before: timed
	// from before the silence was created, however slowly the machine went
	// since, its first notification cannot arrive sooner than 3s after.
	h.wait(t, "Noisy", "firing", 30*time.Second)
	require.GreaterOrEqual(t, time.Since(silenced), 3*time.Second, "a silenced alert was notified")
	noisy = waitAlert(t, a, noisy.Labels)
	require.Equal(t, "firing", noisy.State)
	require.Contains(t, actions(noisy.History), "pipeline/released")

	// An alert already firing and notified, then silenced.
	postAlert(t, a, `{"alertname":"Loud"}`)
	h.wait(t, "Loud", "firing", 30*time.Second)
	loudID := createSilence(t, a, `{"matchers":["{alertname=\"Loud\"}"],"duration":"1h","createdBy":"bob"}`)
	loud := waitAlert(t, a, model.LabelSet{"alertname": "Loud"})
	require.Equal(t, "suppressed", loud.State)

	// Restart: the silence still applies.
	require.NoError(t, a.Stop())
	b := start(t, dir, o, logs)
	code, body := get(t, b.URL+"/api/v1/silences")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"id":"`+loudID+`"`)
	require.Contains(t, body, `"state":"active"`)
	before := len(h.matching("Loud", "firing"))
	postAlert(t, b, `{"alertname":"Loud"}`)
	loud = waitAlert(t, b, model.LabelSet{"alertname": "Loud"})
	require.Equal(t, "suppressed", loud.State)
	require.Never(t, func() bool { return len(h.matching("Loud", "firing")) > before }, 1500*time.Millisecond, 50*time.Millisecond,
		"the silence no longer applied after the restart")

	// Expiring it through the API releases the alert.
	req, err := http.NewRequest(http.MethodDelete, b.URL+"/api/v1/silences/"+loudID, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool {
		al, ok := b.alert(t, "Loud", SourcePrometheus)
		return ok && al.State == "firing" && slices.Contains(actions(al.History), "pipeline/released")
	}, 30*time.Second, 20*time.Millisecond)
}

// Bad silences get a clear error; overlapping silences both apply, the one
// ending last named.
func TestSilencesBadInputAndOverlap(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	for _, tc := range []struct{ name, body, want string }{
		{"malformed matcher", `{"matchers":["alertname=~\"(\""],"duration":"1h"}`, "invalid matcher"},
		{"no matchers", `{"matchers":[],"duration":"1h"}`, "a silence needs at least one matcher\n"},
		{"matches everything", `{"matchers":["foo=\"\""],"duration":"1h"}`, "matchers must not match the empty label set: at least one needs a non-empty value\n"},
		{"no end", `{"matchers":["a=\"b\""]}`, "a silence needs endsAt or duration\n"},
		{"end and duration", `{"matchers":["a=\"b\""],"duration":"1h","endsAt":"2099-01-01T00:00:00Z"}`, "give endsAt or duration, not both\n"},
		{"ended", `{"matchers":["a=\"b\""],"endsAt":"2001-01-01T00:00:00Z"}`, "endsAt must be after startsAt and in the future\n"},
		{"bad duration", `{"matchers":["a=\"b\""],"duration":"soon"}`, "invalid duration \"soon\""},
		{"unknown field", `{"matchers":["a=\"b\""],"duration":"1h","who":"x"}`, "couldn't parse silence: json: unknown field \"who\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, a.URL+"/api/v1/silences", "application/json", tc.body)
			require.Equal(t, http.StatusBadRequest, code)
			require.True(t, strings.HasPrefix(body, tc.want) || strings.Contains(body, tc.want), body)
		})
	}
	req, err := http.NewRequest(http.MethodDelete, a.URL+"/api/v1/silences/nope", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	createSilence(t, a, `{"matchers":["alertname=\"Both\""],"duration":"1h"}`)
	longer := createSilence(t, a, `{"matchers":["alertname=~\"B.*\""],"duration":"2h"}`)
	postAlert(t, a, `{"alertname":"Both"}`)
	both := waitAlert(t, a, model.LabelSet{"alertname": "Both"})
	require.Equal(t, "suppressed", both.State)
	require.Contains(t, both.History[len(both.History)-1].Reason, "silenced by "+longer)
}

// A silence with expireOnResolve ends once the alerts it silenced have
// resolved, long before its end; one that has silenced nothing yet stays.
func TestSilenceExpireOnResolve(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	ack := createSilence(t, a, `{"matchers":["alertname=\"Acked\""],"duration":"1h","createdBy":"alice","comment":"looking","expireOnResolve":true}`)
	waiting := createSilence(t, a, `{"matchers":["alertname=\"NotYet\""],"duration":"1h","expireOnResolve":true}`)
	postAlert(t, a, `{"alertname":"Acked","model":"a"}`)
	postAlert(t, a, `{"alertname":"Acked","model":"b"}`)
	require.Equal(t, "suppressed", waitAlert(t, a, model.LabelSet{"alertname": "Acked", "model": "a"}).State)

	state := func(id string) string {
		code, body := get(t, a.URL+"/api/v1/silences")
		require.Equal(t, http.StatusOK, code)
		var r struct {
			Data []struct {
				ID              string    `json:"id"`
				State           string    `json:"state"`
				ExpireOnResolve bool      `json:"expireOnResolve"`
				SilencedAt      time.Time `json:"silencedAt"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &r))
		for _, s := range r.Data {
			if s.ID == id {
				require.True(t, s.ExpireOnResolve)
				if s.State == "active" && s.SilencedAt.IsZero() {
					return "active, nothing silenced"
				}
				return s.State
			}
		}
		t.Fatalf("no silence %s", id)
		return ""
	}
	require.Eventually(t, func() bool { return state(ack) == "active" }, 10*time.Second, 20*time.Millisecond, "the silence never saw its alerts fire")

	// One of the two resolves: the silence stays.
	resolved := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	postAlertJSON(t, a, `{"labels":{"alertname":"Acked","model":"a"},"endsAt":"`+resolved+`"}`)
	require.Never(t, func() bool { return state(ack) != "active" }, 2500*time.Millisecond, 50*time.Millisecond, "expired while an alert still fired")
	// Both: it expires, and the other stays as it was.
	postAlertJSON(t, a, `{"labels":{"alertname":"Acked","model":"b"},"endsAt":"`+resolved+`"}`)
	require.Eventually(t, func() bool { return state(ack) == "expired" }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "active, nothing silenced", state(waiting))
	// Logged once the silences are saved, after the list shows it expired.
	require.Eventually(t, func() bool { return strings.Contains(a.logs.String(), "every alert it silenced has resolved") },
		10*time.Second, 20*time.Millisecond, "the expiry was not logged")

	// The next firing of the alert is notified.
	postAlert(t, a, `{"alertname":"Acked","model":"a"}`)
	h.wait(t, "Acked", "firing", 30*time.Second)
}

// With suppression.notify_resolved, an alert notified firing and silenced
// since is notified when it resolves; without, as in Alertmanager, it is
// not.
func TestSilencedResolutionNotified(t *testing.T) {
	t.Parallel()
	for _, notify := range []bool{false, true} {
		t.Run(fmt.Sprint("notify_resolved=", notify), func(t *testing.T) {
			t.Parallel()
			h := newHook(t)
			extra := ""
			if notify {
				extra = "suppression:\n  notify_resolved: true\n"
			}
			a := startAlertd(t, routes(h, nil, extra), map[string]string{"rules.yml": "groups: []\n"}, nil)
			postAlert(t, a, `{"alertname":"Paged","model":"fraud"}`)
			h.wait(t, "Paged", "firing", 30*time.Second)
			createSilence(t, a, `{"matchers":["alertname=\"Paged\"","model=\"fraud\""],"duration":"1h","createdBy":"alice","comment":"acknowledged"}`)
			require.Eventually(t, func() bool {
				return waitAlert(t, a, model.LabelSet{"alertname": "Paged", "model": "fraud"}).State == "suppressed"
			}, 10*time.Second, 20*time.Millisecond)
			postAlertJSON(t, a, `{"labels":{"alertname":"Paged","model":"fraud"},"endsAt":"`+time.Now().Add(-time.Second).UTC().Format(time.RFC3339)+`"}`)
			if notify {
				p := h.wait(t, "Paged", "resolved", 30*time.Second)
				require.Equal(t, "resolved", p.Alerts[0].Status)
				return
			}
			// Another alert of the group fires after it resolved: the
			// flush that notifies it, or one before, took the resolution,
			// and the group's notifications reach the webhook in order.
			postAlert(t, a, `{"alertname":"Paged","model":"other"}`)
			require.Eventually(t, func() bool {
				for _, p := range h.matching("Paged", "firing") {
					if slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "other" }) {
						return true
					}
				}
				return false
			}, 30*time.Second, 20*time.Millisecond, "other notified")
			for _, p := range h.all() {
				require.False(t, slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "fraud" && x.Status == "resolved" }),
					"a silenced alert's resolution was notified without notify_resolved: %+v", p)
			}
		})
	}
}

// With suppression.notify_resolved, an alert notified firing and silenced
// since, which its source keeps posting with a later endsAt as a
// Prometheus does, is not told resolved when the end it had when it was
// silenced passes: the notifier's copy of it moves on too.
func TestSilencedAlertRefreshedNotResolved(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "suppression:\n  notify_resolved: true\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	post := func() {
		t.Helper()
		postAlertJSON(t, a, `{"labels":{"alertname":"Refreshed","model":"fraud"},"endsAt":"`+time.Now().Add(2*time.Second).UTC().Format(time.RFC3339Nano)+`"}`)
	}
	post()
	h.wait(t, "Refreshed", "firing", 30*time.Second)
	createSilence(t, a, `{"matchers":["alertname=\"Refreshed\""],"duration":"1h","createdBy":"alice","comment":"acknowledged"}`)
	require.Eventually(t, func() bool {
		return waitAlert(t, a, model.LabelSet{"alertname": "Refreshed", "model": "fraud"}).State == "suppressed"
	}, 10*time.Second, 20*time.Millisecond)
	// Posted again every half second, for thrice the time it had left.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); <-tick.C {
		post()
		require.Zero(t, h.notifications("Refreshed", "resolved"), "its resolution was notified while it fires")
	}
	require.Equal(t, "suppressed", waitAlert(t, a, model.LabelSet{"alertname": "Refreshed", "model": "fraud"}).State)
}

// With suppression.notify_resolved, the resolution of an alert that was
// suppressed all along goes to nobody, though its group was notified of
// other alerts: a receiver is told an alert resolved only when it was told
// the alert fired.
//
// A flush of the group comes between the two resolutions: the one that
// notifies c, which fires after b resolved. The dispatcher takes the
// alerts in the order they came, so the flush that notifies c, or one
// before it, took b's resolution; and the group's notifications go out one
// at a time, in order (one outbox lane), so whatever a flush sent of it
// reached the webhook before c's notification did.
func TestSilencedResolutionNotSentUnlessNotifiedFiring(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "suppression:\n  notify_resolved: true\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	createSilence(t, a, `{"matchers":["alertname=\"Grouped\"","model=\"b\""],"duration":"1h","createdBy":"alice","comment":"known"}`)
	postAlert(t, a, `{"alertname":"Grouped","model":"a"}`)
	h.wait(t, "Grouped", "firing", 30*time.Second)
	postAlert(t, a, `{"alertname":"Grouped","model":"b"}`)
	require.Eventually(t, func() bool {
		return waitAlert(t, a, model.LabelSet{"alertname": "Grouped", "model": "b"}).State == "suppressed"
	}, 10*time.Second, 20*time.Millisecond)
	past := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	postAlertJSON(t, a, `{"labels":{"alertname":"Grouped","model":"b"},"endsAt":"`+past+`"}`)
	postAlert(t, a, `{"alertname":"Grouped","model":"c"}`)
	noB := func() {
		t.Helper()
		for _, p := range h.all() {
			for _, x := range p.Alerts {
				require.NotEqual(t, "b", x.Labels["model"], "the resolution of an alert never notified firing was sent: %+v", p)
			}
		}
	}
	require.Eventually(t, func() bool {
		for _, p := range h.matching("Grouped", "firing") {
			if slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "c" }) {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "c notified")
	noB()
	postAlerts(t, a, `[{"labels":{"alertname":"Grouped","model":"a"},"endsAt":"`+past+`"},
		{"labels":{"alertname":"Grouped","model":"c"},"endsAt":"`+past+`"}]`)
	h.wait(t, "Grouped", "resolved", 30*time.Second)
	noB()
}

// With suppression.notify_resolved, an alert notified firing and silenced
// since is still owed its resolution after its group was notified again
// without it (another alert fired meanwhile).
func TestSilencedResolutionOwedAcrossNotifications(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "suppression:\n  notify_resolved: true\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	postAlert(t, a, `{"alertname":"Owed","model":"a"}`)
	postAlert(t, a, `{"alertname":"Owed","model":"b"}`)
	require.Eventually(t, func() bool {
		for _, p := range h.matching("Owed", "firing") {
			if len(p.Alerts) == 2 {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "both alerts notified firing")
	createSilence(t, a, `{"matchers":["alertname=\"Owed\"","model=\"b\""],"duration":"1h","createdBy":"alice","comment":"acknowledged"}`)
	require.Eventually(t, func() bool {
		return waitAlert(t, a, model.LabelSet{"alertname": "Owed", "model": "b"}).State == "suppressed"
	}, 10*time.Second, 20*time.Millisecond)
	// The group is notified again, b muted.
	postAlert(t, a, `{"alertname":"Owed","model":"c"}`)
	require.Eventually(t, func() bool {
		for _, p := range h.matching("Owed", "firing") {
			if slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "c" }) {
				require.False(t, slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "b" }), "a muted alert was notified")
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "c notified")
	past := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	postAlertJSON(t, a, `{"labels":{"alertname":"Owed","model":"b"},"endsAt":"`+past+`"}`)
	require.Eventually(t, func() bool {
		for _, p := range h.all() {
			if slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "b" && x.Status == "resolved" }) {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "b's resolution never came: %v", h.all())
}

// An expired silence stays listed, and in silences.json, for
// --silences.retention (120h, Alertmanager's --data.retention) after it
// ends, whatever --alerts.resolved-retention (1h) says, and across a
// restart; then it is forgotten. A silences.json written by an earlier
// alertd, without the fields added since, is read and kept as long. Each
// check that one is still kept waits for the pass of the loop that forgets
// another, so the garbage collection has run on the moved clock.
func TestSilenceRetention(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, ""))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	o.ResolvedRetention = time.Hour
	first := start(t, dir, o, logs)
	url := first.URL
	stored := filepath.Join(dir, "data", "silences.json")
	expired := func(comment string) string {
		now := clock.Now()
		code, id := postV2Silence(t, url, "", now, now.Add(time.Hour), comment, v2Matcher("alertname", comment, false))
		require.Equal(t, http.StatusOK, code)
		deleteV2Silence(t, url, id)
		return id
	}
	listed := func(base string) map[string]string {
		out := map[string]string{}
		for _, s := range getV2Silences(t, base, "") {
			out[*s.ID] = *s.Status.State
		}
		return out
	}
	gone := func(base, id, msg string) {
		t.Helper()
		require.Eventually(t, func() bool { _, ok := listed(base)[id]; return !ok }, 30*time.Second, 20*time.Millisecond, msg)
	}
	inFile := func(id string) bool {
		b, err := os.ReadFile(stored)
		require.NoError(t, err)
		return strings.Contains(string(b), `"id":"`+id+`"`)
	}
	// The garbage collection writes the file once it has forgotten a
	// silence, not before.
	leavesFile := func(id string) {
		t.Helper()
		require.Eventually(t, func() bool { return !inFile(id) }, 30*time.Second, 20*time.Millisecond, "a forgotten silence is still in silences.json")
	}

	// a ends now, b 118h later; 2h after b's end, a is past 120h.
	a := expired("A")
	clock.skip(118 * time.Hour)
	b := expired("B")
	clock.skip(2*time.Hour + time.Minute)
	gone(url, a, "a silence that ended more than 120h ago is still listed")
	require.Equal(t, "expired", listed(url)[b], "a silence that ended 2h ago is no longer listed")
	leavesFile(a)
	require.True(t, inFile(b))

	// A silences.json from before, as an earlier alertd wrote it (no
	// updatedAt, annotations or expireOnResolve): one silence that ended
	// 90m ago, which that alertd forgot after an hour, and one past 120h.
	require.NoError(t, first.Stop())
	var file []map[string]any
	b0, err := os.ReadFile(stored)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b0, &file))
	legacy := func(id string, ended time.Duration) map[string]any {
		end := clock.Now().Add(-ended).UTC()
		return map[string]any{"id": id, "matchers": []string{`alertname="` + id + `"`},
			"startsAt": end.Add(-time.Hour), "endsAt": end, "createdBy": "bob", "comment": "from before", "source": "api"}
	}
	file = append(file, legacy("legacykept", 90*time.Minute), legacy("legacyold", 121*time.Hour))
	out, err := json.Marshal(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stored, out, 0o600))

	// After the restart: the old one goes, the others stay.
	second := start(t, dir, o, logs)
	gone(second.URL, "legacyold", "a silence of the old file that ended more than 120h ago is still listed")
	require.Equal(t, map[string]string{b: "expired", "legacykept": "expired"}, listed(second.URL),
		"the restart or the old file lost a silence that ended within 120h")

	// 120h after b's end, b goes; the legacy one, which ended later, stays
	// until its own 120h have passed.
	clock.skip(118 * time.Hour)
	gone(second.URL, b, "a silence that ended more than 120h ago is still listed after a restart")
	require.Equal(t, map[string]string{"legacykept": "expired"}, listed(second.URL))
	leavesFile(b)
	clock.skip(time.Hour)
	gone(second.URL, "legacykept", "a silence of the old file that ended more than 120h ago is still listed")
	leavesFile("legacykept")
}

// SilenceRetention, not ResolvedRetention, decides when expired silences
// are forgotten: a long retention of resolved alerts keeps no silence
// past its own.
func TestSilenceRetentionOption(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, func(o *Options) {
		clock.options()(o)
		o.ResolvedRetention = 200 * time.Hour
		o.SilenceRetention = 3 * time.Hour
	})
	now := clock.Now()
	code, id := postV2Silence(t, a.URL, "", now, now.Add(time.Hour), "short", v2Matcher("alertname", "X", false))
	require.Equal(t, http.StatusOK, code)
	deleteV2Silence(t, a.URL, id)
	clock.skip(3*time.Hour + time.Minute)
	require.Eventually(t, func() bool { return len(getV2Silences(t, a.URL, "")) == 0 }, 30*time.Second, 20*time.Millisecond,
		"an expired silence outlived --silences.retention")
}
