package alertd

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// ledgerConfig groups alerts by alertname for the webhook at {{HOOK}};
// group_wait lets alerts posted together go out in one notification.
const ledgerConfig = `
global:
  evaluation_interval: 1s
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "{{HOOK}}"
        send_resolved: true
`

func ledgerRoutes(h *hook) string { return strings.ReplaceAll(ledgerConfig, "{{HOOK}}", h.URL) }

// postAlerts posts a batch of alerts (a JSON array) to /api/v2/alerts.
func postAlerts(t *testing.T, a *testAlertd, body string) {
	t.Helper()
	code, resp := post(t, a.URL+"/api/v2/alerts", "application/json", body)
	require.Equal(t, http.StatusOK, code, resp)
}

// ledgerEvents returns GET /api/v1/ledger with the query.
func ledgerEvents(t *testing.T, a *testAlertd, query string) []Event {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/ledger?"+query)
	require.Equal(t, http.StatusOK, code, r.Error)
	var d struct {
		Events []Event `json:"events"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return d.Events
}

// waitEvents waits until the ledger holds n events of this type for the
// fingerprint and returns them.
func waitEvents(t *testing.T, a *testAlertd, fp, typ string, n int) []Event {
	t.Helper()
	var got []Event
	require.Eventually(t, func() bool {
		got = ledgerEvents(t, a, "fingerprint="+fp+"&event="+typ)
		return len(got) >= n
	}, 30*time.Second, 20*time.Millisecond, "the ledger never had %d %s events of %s", n, typ, fp)
	return got
}

// findAlert returns the alert with these labels in GET /api/v1/alerts.
func findAlert(t *testing.T, a *testAlertd, ls model.LabelSet) (alertJSON, bool) {
	t.Helper()
	for _, al := range a.alerts(t) {
		if al.Labels.Equal(ls) {
			return al, true
		}
	}
	return alertJSON{}, false
}

// incidentsOf returns GET /api/v1/incidents.
func incidentsOf(t *testing.T, a *testAlertd) []incident {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/incidents")
	require.Equal(t, http.StatusOK, code, r.Error)
	var d struct {
		Incidents []incident `json:"incidents"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return d.Incidents
}

// reportOf returns GET /api/v1/report with the query.
func reportOf(t *testing.T, a *testAlertd, query string) report {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/report?"+query)
	require.Equal(t, http.StatusOK, code, r.Error)
	var rep report
	require.NoError(t, json.Unmarshal(r.Data, &rep))
	return rep
}

// Two alerts of the same group are one incident, and their notification
// one page; a third joins the incident, an alert of another group opens
// another. Acknowledging an alert acknowledges its incident, and the
// incident closes when all its alerts resolved.
func TestIncidentGrouping(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, ledgerRoutes(h), nil, nil)
	disk1 := model.LabelSet{"alertname": "Disk", "device": "sda"}
	disk2 := model.LabelSet{"alertname": "Disk", "device": "sdb"}
	postAlerts(t, a, `[{"labels":{"alertname":"Disk","device":"sda"}},{"labels":{"alertname":"Disk","device":"sdb"}}]`)
	p := h.wait(t, "Disk", "firing", 30*time.Second)
	require.Len(t, p.Alerts, 2, "both alerts in one notification")
	fp1, fp2 := disk1.Fingerprint().String(), disk2.Fingerprint().String()
	paged1 := waitEvents(t, a, fp1, eventPaged, 1)
	paged2 := waitEvents(t, a, fp2, eventPaged, 1)
	require.Equal(t, paged1[0].Page, paged2[0].Page, "one page for both")
	require.Equal(t, "hook", paged1[0].Receiver)
	require.Equal(t, "webhook[0]", paged1[0].Integration)

	incs := incidentsOf(t, a)
	require.Len(t, incs, 1)
	in := incs[0]
	require.Equal(t, paged1[0].Incident, in.ID)
	require.ElementsMatch(t, []string{fp1, fp2}, in.Alerts)
	require.ElementsMatch(t, []string{fp1, fp2}, in.Firing)
	require.Equal(t, model.LabelSet{"alertname": "Disk"}, in.GroupLabels)
	require.Equal(t, `{}:{alertname="Disk"}`, in.GroupKey)
	require.Equal(t, p.GroupKey, in.GroupKey, "the incident is the notifier's group")
	require.Equal(t, 1, in.Pages)
	require.Nil(t, in.ClosedAt)
	require.False(t, in.Acknowledged)
	n, _ := metric(t, a.Registry(), "alertd_pages_total")
	require.Equal(t, 1.0, n)
	for _, ls := range []model.LabelSet{disk1, disk2} {
		al := waitAlert(t, a, ls)
		require.Contains(t, actions(al.History), "incident/grouped")
		require.Contains(t, al.History[slices.Index(actions(al.History), "incident/grouped")].Reason, "grouped into incident "+in.ID)
	}
	rep := reportOf(t, a, "")
	require.Equal(t, 1, rep.Pages.Total)
	require.Equal(t, 2, rep.AlertsFired)

	// A third alert of the group joins the incident; another group is
	// another incident.
	postAlerts(t, a, `[{"labels":{"alertname":"Disk","device":"sdc"}},{"labels":{"alertname":"Net"}}]`)
	fp3 := model.LabelSet{"alertname": "Disk", "device": "sdc"}.Fingerprint().String()
	grouped := waitEvents(t, a, fp3, eventGrouped, 1)
	require.Equal(t, in.ID, grouped[0].Incident)
	netFP := model.LabelSet{"alertname": "Net"}.Fingerprint().String()
	net := waitEvents(t, a, netFP, eventGrouped, 1)
	require.NotEqual(t, in.ID, net[0].Incident)

	// Acknowledging an alert acknowledges its incident.
	code, body := post(t, a.URL+"/api/v1/alerts/"+fp1+"/acknowledge", "application/json", `{"by":"alice","note":"looking"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"incidents":["`+in.ID+`"]`)
	al := waitAlert(t, a, disk1)
	last := al.History[slices.Index(actions(al.History), "acknowledge/acknowledged")]
	require.Equal(t, "acknowledged by alice: looking (incident "+in.ID+")", last.Reason)
	for _, got := range incidentsOf(t, a) {
		if got.ID == in.ID {
			require.True(t, got.Acknowledged)
			require.Equal(t, "alice", got.AcknowledgedBy)
			require.ElementsMatch(t, []string{fp1, fp2, fp3}, got.Firing)
		}
	}

	// All three resolve: the incident closes.
	end := time.Now().UTC().Format(time.RFC3339Nano)
	postAlerts(t, a, `[{"labels":{"alertname":"Disk","device":"sda"},"endsAt":"`+end+`"},{"labels":{"alertname":"Disk","device":"sdb"},"endsAt":"`+end+`"},{"labels":{"alertname":"Disk","device":"sdc"},"endsAt":"`+end+`"}]`)
	require.Eventually(t, func() bool {
		for _, got := range incidentsOf(t, a) {
			if got.ID == in.ID {
				return got.ClosedAt != nil && len(got.Firing) == 0
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the incident never closed")
	code, r := apiGet(t, a.URL+"/api/v1/incidents?state=open")
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, string(r.Data), in.ID)
	require.Contains(t, string(r.Data), net[0].Incident)
}

// The ledger survives a restart without losing or duplicating events: the
// alerts posted again after the restart are not recorded as firing again,
// the incident stays the same, and the events after the restart follow on.
// A torn last line (a crash mid-write) is cut off with a warning.
func TestLedgerRestart(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", ledgerRoutes(h))
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)

	batch := `[{"labels":{"alertname":"Disk","device":"sda"}},{"labels":{"alertname":"Disk","device":"sdb"}}]`
	postAlerts(t, a, batch)
	h.wait(t, "Disk", "firing", 30*time.Second)
	fp1 := model.LabelSet{"alertname": "Disk", "device": "sda"}.Fingerprint().String()
	fp2 := model.LabelSet{"alertname": "Disk", "device": "sdb"}.Fingerprint().String()
	waitEvents(t, a, fp1, eventPaged, 1)
	waitEvents(t, a, fp2, eventPaged, 1)
	code, body := post(t, a.URL+"/api/v1/alerts/"+fp1+"/acknowledge", "application/json", `{"by":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	code, body = post(t, a.URL+"/api/v1/alerts/"+fp1+"/feedback", "application/json", `{"verdict":"true_positive","by":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, "proposal", "no proposal for a true positive")
	incs := incidentsOf(t, a)
	require.Len(t, incs, 1)
	before := ledgerEvents(t, a, "")
	require.NoError(t, a.Stop())

	// A crash in the middle of a write.
	segs, err := filepath.Glob(filepath.Join(dir, "data", "ledger", "*.jsonl"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"seq":1000,"time":"2024-`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	o2, logs2 := newOptions(t, dir)
	b := start(t, dir, o2, logs2)
	require.Contains(t, logs2.String(), "Cutting off a torn or corrupt end of the ledger")
	require.Equal(t, before, ledgerEvents(t, b, ""), "the ledger lost events in the restart")
	require.Equal(t, incs, incidentsOf(t, b), "the incidents changed in the restart")

	// Posted again (with a new startsAt): nothing new, and no new page.
	postAlerts(t, b, batch)
	waitAlert(t, b, model.LabelSet{"alertname": "Disk", "device": "sda"})
	require.Never(t, func() bool { return len(ledgerEvents(t, b, "")) > len(before) }, 2*time.Second, 50*time.Millisecond,
		"alerts posted again after the restart were recorded again")

	// Both resolve: recorded once each, and the incident closes.
	end := time.Now().UTC().Format(time.RFC3339Nano)
	postAlerts(t, b, `[{"labels":{"alertname":"Disk","device":"sda"},"endsAt":"`+end+`"},{"labels":{"alertname":"Disk","device":"sdb"},"endsAt":"`+end+`"}]`)
	waitEvents(t, b, fp1, eventResolved, 1)
	waitEvents(t, b, fp2, eventResolved, 1)
	h.wait(t, "Disk", "resolved", 30*time.Second)

	counts := map[string]int{}
	var last uint64
	for _, e := range ledgerEvents(t, b, "") {
		require.Greater(t, e.Seq, last, "events out of order or duplicated: %+v", e)
		last = e.Seq
		counts[e.Fingerprint[:4]+" "+e.Event]++
	}
	require.Equal(t, map[string]int{
		fp1[:4] + " fired": 1, fp1[:4] + " grouped": 1, fp1[:4] + " paged": 1, fp1[:4] + " acknowledged": 1,
		fp1[:4] + " verdict": 1, fp1[:4] + " resolved": 1,
		fp2[:4] + " fired": 1, fp2[:4] + " grouped": 1, fp2[:4] + " paged": 1, fp2[:4] + " resolved": 1,
	}, counts)
	require.Eventually(t, func() bool {
		got := incidentsOf(t, b)
		return len(got) == 1 && got[0].ID == incs[0].ID && got[0].ClosedAt != nil
	}, 30*time.Second, 20*time.Millisecond)

	// The report reads across the restart; the counters count what this
	// process recorded.
	rep := reportOf(t, b, "")
	require.Equal(t, 1, rep.Pages.Total)
	require.Equal(t, 2, rep.AlertsFired)
	require.Equal(t, 2, rep.Resolved)
	require.Equal(t, 1, rep.Acknowledged)
	require.Equal(t, 2, rep.Precision.PagedAlerts)
	require.NotNil(t, rep.Precision.Ratio)
	require.Equal(t, 1.0, *rep.Precision.Ratio)
	fired, _ := metric(t, b.Registry(), "alertd_alert_events_total", "event", "fired")
	require.Zero(t, fired)
	resolved, _ := metric(t, b.Registry(), "alertd_alert_events_total", "event", "resolved")
	require.Equal(t, 2.0, resolved)
	pages, _ := metric(t, b.Registry(), "alertd_pages_total")
	require.Zero(t, pages, "the resolved notification is not a page")
	// The precision gauge is computed from the ledger, so it holds across
	// the restart: one paged alert with a verdict, a true positive.
	require.Eventually(t, func() bool {
		p, ok := metric(t, b.Registry(), "alertd_alert_precision_ratio")
		return ok && p == 1
	}, 30*time.Second, 20*time.Millisecond, "alertd_alert_precision_ratio was never 1")
}

// A false positive's feedback proposes a suppression rule; its preview
// shows the past alerts it would have kept quiet and the true positives
// among them; applied, it suppresses new alerts like them until deleted.
func TestSuppressionProposalPreviewApply(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, ledgerRoutes(h), nil, nil)
	drift := func(pod string) model.LabelSet {
		return model.LabelSet{"alertname": "Drift", "model": "fraud", "feature": "age", "pod": model.LabelValue(pod)}
	}
	postAlerts(t, a, `[{"labels":{"alertname":"Drift","model":"fraud","feature":"age","pod":"p1"}},{"labels":{"alertname":"Drift","model":"fraud","feature":"age","pod":"p2"}},{"labels":{"alertname":"Drift","model":"churn","feature":"age","pod":"p1"}}]`)
	h.wait(t, "Drift", "firing", 30*time.Second)
	waitEvents(t, a, drift("p1").Fingerprint().String(), eventPaged, 1)
	waitEvents(t, a, drift("p2").Fingerprint().String(), eventPaged, 1)

	code, body := post(t, a.URL+"/api/v1/alerts/"+drift("p2").Fingerprint().String()+"/feedback", "application/json", `{"verdict":"true_positive","by":"bob"}`)
	require.Equal(t, http.StatusOK, code, body)
	code, body = post(t, a.URL+"/api/v1/alerts/"+drift("p1").Fingerprint().String()+"/feedback", "application/json", `{"verdict":"false_positive","by":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	var fb struct {
		Data struct {
			Fingerprint string             `json:"fingerprint"`
			Verdict     string             `json:"verdict"`
			Proposal    suppressionRequest `json:"proposal"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &fb))
	prop := fb.Data.Proposal
	require.Equal(t, []string{`alertname="Drift"`, `feature="age"`, `model="fraud"`}, prop.Matchers, "pod is left out")
	require.Empty(t, prop.Condition, "pushed alerts have no value")
	require.Equal(t, "1w", prop.Duration)

	// Preview: both fraud alerts, one of them a confirmed true positive.
	propJSON, err := json.Marshal(prop)
	require.NoError(t, err)
	code, body = post(t, a.URL+"/api/v1/suppressions/preview", "application/json", string(propJSON))
	require.Equal(t, http.StatusOK, code, body)
	var pv struct {
		Data preview `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &pv))
	require.Equal(t, 2, pv.Data.Total)
	require.Equal(t, 2, pv.Data.Paged)
	require.Equal(t, 1, pv.Data.ConfirmedTruePositives)
	require.Equal(t, map[string]int{verdictTruePositive: 1, verdictFalsePositive: 1, verdictNotActionable: 0}, pv.Data.Verdicts)
	got := map[string]string{}
	for _, al := range pv.Data.Alerts {
		got[string(al.Labels["pod"])] = al.Verdict
		require.False(t, al.FiredAt.IsZero())
	}
	require.Equal(t, map[string]string{"p1": verdictFalsePositive, "p2": verdictTruePositive}, got)
	require.WithinDuration(t, time.Now().Add(-30*24*time.Hour), pv.Data.From, time.Minute, "default lookback 30d")

	// Apply: a new alert like them is suppressed by the "rule" stage.
	code, body = post(t, a.URL+"/api/v1/suppressions", "application/json", string(propJSON))
	require.Equal(t, http.StatusOK, code, body)
	var applied struct {
		Data struct {
			ID string `json:"suppressionID"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &applied))
	require.NotEmpty(t, applied.Data.ID)
	postAlerts(t, a, `[{"labels":{"alertname":"Drift","model":"fraud","feature":"age","pod":"p3"}}]`)
	p3 := waitAlert(t, a, drift("p3"))
	require.Equal(t, "suppressed", p3.State)
	require.Contains(t, actions(p3.History), "rule/suppressed")
	require.Contains(t, p3.History[slices.Index(actions(p3.History), "rule/suppressed")].Reason, "suppressed by rule "+applied.Data.ID)
	n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "rule")
	require.GreaterOrEqual(t, n, 1.0)
	sup := waitEvents(t, a, drift("p3").Fingerprint().String(), eventSuppressed, 1)
	require.Equal(t, "rule", sup[0].Reason)
	// The firing fraud alerts are suppressed too; the churn one is not.
	churn := waitAlert(t, a, model.LabelSet{"alertname": "Drift", "model": "churn", "feature": "age", "pod": "p1"})
	require.Equal(t, "firing", churn.State)
	p1 := waitAlert(t, a, drift("p1"))
	require.Equal(t, "suppressed", p1.State)

	code, body = get(t, a.URL+"/api/v1/suppressions")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"id":"`+applied.Data.ID+`"`)
	require.Contains(t, body, `"state":"active"`)

	// Deleting it releases them.
	req, err := http.NewRequest(http.MethodDelete, a.URL+"/api/v1/suppressions/"+applied.Data.ID, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool {
		al, ok := findAlert(t, a, drift("p3"))
		return ok && al.State == "firing"
	}, 30*time.Second, 20*time.Millisecond, "the alert was not released")
	waitEvents(t, a, drift("p3").Fingerprint().String(), eventReleased, 1)
	// p3, suppressed and then paged, is a suppressed-but-confirmed alert.
	waitEvents(t, a, drift("p3").Fingerprint().String(), eventPaged, 1)
	rep := reportOf(t, a, "")
	require.Contains(t, rep.SuppressedConfirmed.Fingerprints, drift("p3").Fingerprint().String())
	require.GreaterOrEqual(t, rep.Suppressed.ByReason["rule"], 1)
}

// Bad input to the ledger's endpoints gets a clear 4xx.
func TestLedgerAPIBadInput(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, ledgerRoutes(h), nil, nil)
	postAlert(t, a, `{"alertname":"X"}`)
	x := waitAlert(t, a, model.LabelSet{"alertname": "X"})
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"ack: unknown alert", "POST", "/api/v1/alerts/0123456789abcdef/acknowledge", `{"by":"a"}`, 404, "no alert with fingerprint 0123456789abcdef\n"},
		{"ack: bad fingerprint", "POST", "/api/v1/alerts/xyz/acknowledge", `{}`, 400, "invalid fingerprint \"xyz\": want 16 hex digits\n"},
		{"ack: bad JSON", "POST", "/api/v1/alerts/" + x.Fingerprint + "/acknowledge", `{"by":`, 400, "couldn't parse acknowledgement: unexpected EOF\n"},
		{"ack: unknown field", "POST", "/api/v1/alerts/" + x.Fingerprint + "/acknowledge", `{"who":"a"}`, 400, "couldn't parse acknowledgement: json: unknown field \"who\"\n"},
		{"preview: malformed matcher", "POST", "/api/v1/suppressions/preview", `{"matchers":["alertname=~\"(\""]}`, 400, "invalid matcher"},
		{"preview: no matchers", "POST", "/api/v1/suppressions/preview", `{"matchers":[]}`, 400, "a silence needs at least one matcher\n"},
		{"preview: bad lookback", "POST", "/api/v1/suppressions/preview", `{"matchers":["a=\"b\""],"lookback":"ages"}`, 400, "invalid lookback \"ages\": want a positive duration such as 30d\n"},
		{"apply: bad condition", "POST", "/api/v1/suppressions", `{"matchers":["a=\"b\""],"condition":"value ~ 3"}`, 400, "invalid condition \"value ~ 3\": want \"value OP NUMBER\" with OP one of <, <=, >, >=\n"},
		{"apply: unknown field", "POST", "/api/v1/suppressions", `{"matchers":["a=\"b\""],"until":"x"}`, 400, "couldn't parse suppression rule: json: unknown field \"until\"\n"},
		{"apply: bad JSON", "POST", "/api/v1/suppressions", `[`, 400, "couldn't parse suppression rule: unexpected EOF\n"},
		{"apply: expired", "POST", "/api/v1/suppressions", `{"matchers":["a=\"b\""],"expiresAt":"2001-01-01T00:00:00Z"}`, 400, "expiresAt must be in the future\n"},
		{"apply: both ends", "POST", "/api/v1/suppressions", `{"matchers":["a=\"b\""],"expiresAt":"2099-01-01T00:00:00Z","duration":"1h"}`, 400, "give expiresAt or duration, not both\n"},
		{"delete: unknown", "DELETE", "/api/v1/suppressions/nope", "", 404, "no suppression rule \"nope\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, a.URL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var b strings.Builder
			_, _ = io.Copy(&b, resp.Body)
			require.Equal(t, tc.code, resp.StatusCode, b.String())
			require.True(t, strings.HasPrefix(b.String(), tc.want), "%q does not start with %q", b.String(), tc.want)
		})
	}
	for _, tc := range []struct{ name, path, want string }{
		{"report: from after to", "/api/v1/report?from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", "invalid parameters: \"from\" must not be after \"to\""},
		{"report: bad from", "/api/v1/report?from=yesterday", "invalid parameter \"from\": cannot parse \"yesterday\" to a valid timestamp"},
		{"report: bad to", "/api/v1/report?to=x", "invalid parameter \"to\": cannot parse \"x\" to a valid timestamp"},
		{"ledger: bad event", "/api/v1/ledger?event=exploded", "invalid parameter \"event\": \"exploded\": want one of [pending fired suppressed released grouped paged acknowledged resolved verdict]"},
		{"ledger: bad fingerprint", "/api/v1/ledger?fingerprint=zz", "invalid parameter \"fingerprint\": \"zz\": want 16 hex digits"},
		{"incidents: bad state", "/api/v1/incidents?state=lost", "invalid parameter \"state\": \"lost\": want open or closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r := apiGet(t, a.URL+tc.path)
			require.Equal(t, http.StatusBadRequest, code)
			require.Equal(t, apiResponse{Status: "error", ErrorType: "bad_data", Error: tc.want}, r)
		})
	}
	// Unix times work, and an empty body acknowledges.
	rep := reportOf(t, a, "from="+url.QueryEscape("0")+"&to="+url.QueryEscape("1700000000"))
	require.Zero(t, rep.Pages.Total)
	code, body := post(t, a.URL+"/api/v1/alerts/"+x.Fingerprint+"/acknowledge", "application/json", "")
	require.Equal(t, http.StatusOK, code, body)
}

// A rule's alert that is pending is recorded as pending once, with the
// time it became pending.
func TestLedgerPending(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	rules := "groups:\n  - name: slow\n    rules:\n      - alert: Slow\n        expr: vector(1)\n        for: 1h\n"
	a := startAlertd(t, ledgerRoutes(h)+"rule_files: [rules.yml]\n", map[string]string{"rules.yml": rules}, nil)
	fp := model.LabelSet{"alertname": "Slow"}.Fingerprint().String()
	got := waitEvents(t, a, fp, eventPending, 1)
	require.Equal(t, SourceRule, got[0].Source)
	require.False(t, got[0].StartsAt.IsZero())
	require.NotNil(t, got[0].Value)
	require.Equal(t, 1.0, *got[0].Value)
	// Polled here rather than with require.Never, whose last check may
	// still be querying when it returns, and then finds alertd stopped.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.After(2 * time.Second); ; {
		select {
		case <-end:
			return
		case <-tick.C:
		}
		require.Len(t, ledgerEvents(t, a, "fingerprint="+fp), 1, "a pending alert was recorded more than once")
	}
}
