package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
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
	a1, err := New(o)
	require.NoError(t, err)
	require.NoError(t, a1.Start())
	a := &testAlertd{Alertd: a1, URL: "http://" + a1.Addr(), Dir: dir, logs: logs}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			require.NoError(t, a1.Stop())
		}
	})

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
	require.NoError(t, a1.Stop())
	stopped = true
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
	require.Contains(t, a.logs.String(), "every alert it silenced has resolved")

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
			createSilence(t, a, `{"matchers":["alertname=\"Paged\""],"duration":"1h","createdBy":"alice","comment":"acknowledged"}`)
			require.Eventually(t, func() bool {
				return waitAlert(t, a, model.LabelSet{"alertname": "Paged", "model": "fraud"}).State == "suppressed"
			}, 10*time.Second, 20*time.Millisecond)
			postAlertJSON(t, a, `{"labels":{"alertname":"Paged","model":"fraud"},"endsAt":"`+time.Now().Add(-time.Second).UTC().Format(time.RFC3339)+`"}`)
			if notify {
				p := h.wait(t, "Paged", "resolved", 30*time.Second)
				require.Equal(t, "resolved", p.Alerts[0].Status)
				return
			}
			require.Never(t, func() bool { return h.notifications("Paged", "resolved") > 0 }, 3*time.Second, 50*time.Millisecond,
				"a silenced alert's resolution was notified without notify_resolved")
		})
	}
}

// With suppression.notify_resolved, the resolution of an alert that was
// suppressed all along goes to nobody, though its group was notified of
// other alerts: a receiver is told an alert resolved only when it was told
// the alert fired.
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
	// A flush of the group comes between the two resolutions: a second,
	// and one more for a slow machine.
	time.Sleep(2 * time.Second)
	postAlertJSON(t, a, `{"labels":{"alertname":"Grouped","model":"a"},"endsAt":"`+past+`"}`)
	h.wait(t, "Grouped", "resolved", 30*time.Second)
	for _, p := range h.all() {
		for _, x := range p.Alerts {
			require.NotEqual(t, "b", x.Labels["model"], "the resolution of an alert never notified firing was sent: %+v", p)
		}
	}
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
