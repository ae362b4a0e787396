package alertd

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
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

// postToAM posts alerts named Relayed, one per model, to a real
// Alertmanager; "resolved:<model>" posts that one resolved.
func postToAM(t *testing.T, am *alertmanagertest.Server, models ...string) {
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

// relayingAM starts a real Alertmanager whose one route, by alertname,
// sends to alertd's webhook as receiver alertd.
func relayingAM(t *testing.T, a *testAlertd, sendResolved bool) *alertmanagertest.Server {
	t.Helper()
	return alertmanagertest.Start(t, relayConfig(a, sendResolved))
}

// relayConfig is the configuration of relayingAM's Alertmanager.
func relayConfig(a *testAlertd, sendResolved bool) string {
	return fmt.Sprintf(`
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
        send_resolved: %t
`, a.URL, sendResolved)
}

// An alert an Alertmanager silences drops out of its group's
// notifications to alertd's webhook: when the next one leaves it out,
// alertd asks the Alertmanager's API, learns that it silences the alert,
// and shows it suppressed, with the silence's id, author and comment,
// instead of resolving it. When the silence ends, the Alertmanager
// notifies it again and alertd releases it.
func TestAlertmanagerSilenceUpstream(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	// No periodic check here: the left-out alert is what makes alertd ask.
	a := startAlertd(t, routes(h, nil, "intake:\n  alertmanager_api: {check_interval: 1h}\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	am := relayingAM(t, a, true)
	labels := func(m string) model.LabelSet {
		return model.LabelSet{"alertname": "Relayed", "model": model.LabelValue(m)}
	}

	postToAM(t, am, "fraud", "churn")
	relayed(t, a, "Relayed", "fraud")
	relayed(t, a, "Relayed", "churn")
	h.wait(t, "Relayed", "firing", 30*time.Second)

	// Silenced in the Alertmanager: its next notification of the group,
	// for a new alert, leaves fraud out.
	code, id := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "maintenance of fraud", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	postToAM(t, am, "ltv")
	relayed(t, a, "Relayed", "ltv")
	fraud := waitFor(t, a, labels("fraud"), suppressedUpstream, "not suppressed")
	d := lastOf(fraud.History, "upstream")
	require.Equal(t, "suppressed", d.Action)
	require.Regexp(t, "^"+regexp.QuoteMeta("silenced in the Alertmanager at "+am.URL+" by "+id+" until ")+
		`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`+regexp.QuoteMeta(", created by alice: maintenance of fraud; it notifies alertd again once it no longer does")+"$", d.Reason)
	require.NotContains(t, actions(fraud.History), "intake/resolved")
	require.Zero(t, h.notifications("Relayed", "resolved"), "nothing resolved")
	checks, _ := metric(t, a.Registry(), "alertd_intake_alertmanager_checks_total")
	failed, _ := metric(t, a.Registry(), "alertd_intake_alertmanager_checks_failed_total")
	require.Equal(t, 1.0, checks)
	require.Zero(t, failed)
	for _, ga := range getV2(t, a, "") {
		if ga.Labels["model"] == "fraud" {
			require.Equal(t, "suppressed", *ga.Status.State, "GET /api/v2/alerts shows it suppressed")
		}
	}

	// The silence ends: the Alertmanager notifies fraud again, which
	// releases it.
	deleteV2Silence(t, am.URL, id)
	fraud = waitFor(t, a, labels("fraud"), inState("firing"), "not released")
	require.Equal(t, "released", lastOf(fraud.History, "pipeline").Action)
	require.Contains(t, lastOf(fraud.History, "pipeline").Reason, "notified again by the Alertmanager")
	for _, m := range []string{"churn", "ltv"} {
		require.Equal(t, "firing", relayed(t, a, "Relayed", m).State, m)
	}
}

// An alert silenced in an Alertmanager needs no notification for alertd
// to learn it: its checks every intake.alertmanager_api.check_interval
// find it silenced there. Resolved there while silenced, it is sent to
// nobody; the checks find it gone and resolve it.
func TestAlertmanagerChecksFollowSilence(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "intake:\n  resolve_timeout: 1s\n  alertmanager_api: {check_interval: 200ms}\n"),
		map[string]string{"rules.yml": "groups: []\n"}, nil)
	am := relayingAM(t, a, true)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}

	postToAM(t, am, "fraud")
	relayed(t, a, "Relayed", "fraud")
	h.wait(t, "Relayed", "firing", 30*time.Second)
	code, id := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "on it", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	al := waitFor(t, a, fraud, inState("suppressed"), "not suppressed")
	require.Contains(t, lastOf(al.History, "upstream").Reason, "silenced in the Alertmanager at "+am.URL+" by "+id)

	postToAM(t, am, "resolved:fraud")
	al = waitFor(t, a, fraud, inState("resolved"), "not resolved")
	last := lastOf(al.History, "intake")
	require.Equal(t, "resolved", last.Action)
	require.Equal(t, "no longer fires in the Alertmanager at "+am.URL+" for receiver alertd: 2 checks of its API in a row (GET /api/v2/alerts) did not list it", last.Reason)
	// Two flushes of its group.
	require.Never(t, func() bool { return h.notifications("Relayed", "resolved") > 0 }, 2*time.Second, 50*time.Millisecond,
		"silenced since it was notified: its resolution is not")
}

// The last alert of a group whose webhook has send_resolved: false to
// resolve is sent by nobody: the Alertmanager sends nothing once its group
// has no firing alert. alertd's checks find it no longer fires there and
// resolve it. Until then, firing there, it does not time out after
// intake.alertmanager_resolve_timeout.
func TestAlertmanagerLastAlertWithoutSendResolved(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "intake:\n  resolve_timeout: 1s\n  alertmanager_resolve_timeout: 2s\n  alertmanager_api: {check_interval: 200ms}\n"),
		map[string]string{"rules.yml": "groups: []\n"}, nil)
	am := relayingAM(t, a, false)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}

	postToAM(t, am, "fraud")
	relayed(t, a, "Relayed", "fraud")
	h.wait(t, "Relayed", "firing", 30*time.Second)
	require.Never(t, func() bool { return relayed(t, a, "Relayed", "fraud").State != "firing" }, 4*time.Second, 100*time.Millisecond,
		"it fires in the Alertmanager: it does not time out")

	postToAM(t, am, "resolved:fraud")
	al := waitFor(t, a, fraud, inState("resolved"), "not resolved")
	require.Contains(t, lastOf(al.History, "intake").Reason, "no longer fires in the Alertmanager at "+am.URL+" for receiver alertd")
	h.wait(t, "Relayed", "resolved", 30*time.Second)
	failed, _ := metric(t, a.Registry(), "alertd_intake_alertmanager_checks_failed_total")
	require.Zero(t, failed)
}

// An Alertmanager that can't be asked changes nothing: the alert a
// complete notification leaves out resolves, as it did before alertd
// asked, and the failed check is counted and logged.
func TestWebhookLeftOutAlertmanagerUnreachable(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	send := func(body string) {
		t.Helper()
		code, resp := post(t, a.URL+endpointWebhook, "application/json", body)
		require.Equal(t, http.StatusOK, code, resp)
	}
	send(webhookPayload(gone, "r", `{}:{alertname="G"}`, 0, "a", "b"))
	send(webhookPayload(gone, "r", `{}:{alertname="G"}`, 0, "a"))
	b := waitFor(t, a, model.LabelSet{"alertname": "G", "model": "b"}, inState("resolved"), "not resolved")
	require.Contains(t, lastOf(b.History, "intake").Reason, "left out of a later notification of its group")
	require.Contains(t, lastOf(b.History, "intake").Reason, "; its API could not say whether it silences or inhibits it (GET /api/v2/alerts: ")
	require.Equal(t, "firing", relayed(t, a, "G", "a").State)
	failed, _ := metric(t, a.Registry(), "alertd_intake_alertmanager_checks_failed_total")
	require.Equal(t, 1.0, failed)
	require.Contains(t, a.logs.String(), "Failed to ask an Alertmanager about the alerts it relays")
}

// An externalURL not in intake.alertmanager_api.urls is never asked: the
// webhook is taken at its word, as without the checks.
func TestWebhookExternalURLNotListed(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	a := startAlertd(t, routes(h, nil, "intake:\n  alertmanager_api: {urls: ['http://alertmanager.example:9093']}\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	send := func(body string) {
		t.Helper()
		code, resp := post(t, a.URL+endpointWebhook, "application/json", body)
		require.Equal(t, http.StatusOK, code, resp)
	}
	send(webhookPayload(srv.URL, "r", `{}:{alertname="G"}`, 0, "a", "b"))
	send(webhookPayload(srv.URL, "r", `{}:{alertname="G"}`, 0, "a"))
	b := waitFor(t, a, model.LabelSet{"alertname": "G", "model": "b"}, inState("resolved"), "not resolved")
	require.Contains(t, lastOf(b.History, "intake").Reason, "is not in intake.alertmanager_api.urls")
	require.Zero(t, asked.Load(), "an Alertmanager not listed was asked")
}

// What alertd learnt from an Alertmanager's API is kept with the alert in
// pushed_alerts.json: after a restart, the alert silenced upstream is
// restored suppressed, not paged.
func TestAlertmanagerSilenceUpstreamSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, "intake:\n  alertmanager_api: {check_interval: 1h}\n"))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)
	am := relayingAM(t, a, true)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}
	postToAM(t, am, "fraud", "churn")
	relayed(t, a, "Relayed", "churn")
	code, id := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "maintenance", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	postToAM(t, am, "ltv")
	waitFor(t, a, fraud, suppressedUpstream, "not suppressed")
	// alertd has notified ltv.
	require.Eventually(t, func() bool {
		for _, p := range h.matching("Relayed", "firing") {
			for _, x := range p.Alerts {
				if x.Labels["model"] == "ltv" {
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond)
	firing := h.notifications("Relayed", "firing")

	require.NoError(t, a.Stop())
	b := start(t, dir, o, logs)
	al := waitFor(t, b, fraud, inState("suppressed"), "not restored suppressed")
	require.Contains(t, actions(al.History), "intake/restored")
	require.Contains(t, lastOf(al.History, "upstream").Reason, "silenced in the Alertmanager at "+am.URL+" by "+id)
	require.Equal(t, "firing", relayed(t, b, "Relayed", "churn").State)
	require.Never(t, func() bool { return h.notifications("Relayed", "firing") != firing }, 2*time.Second, 50*time.Millisecond,
		"nothing is paged again")
}
