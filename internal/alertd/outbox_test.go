package alertd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/notify/notifytest"
	"github.com/modelmon/modelmon/internal/notify/slack"
)

// pushAlert posts one firing alert to alertd's /api/v2/alerts.
func pushAlert(t *testing.T, a *testAlertd, labels, annotations map[string]string) {
	t.Helper()
	b, err := json.Marshal([]map[string]any{{"labels": labels, "annotations": annotations}})
	require.NoError(t, err)
	code, body := post(t, a.URL+"/api/v2/alerts", "application/json", string(b))
	require.Equal(t, http.StatusOK, code, body)
}

// The outbox API: a notification the receiver rejects becomes a dead
// letter, shown without secrets, and a redrive delivers it.
func TestOutboxAPI(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		status = http.StatusBadRequest
		got    []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if status == http.StatusOK {
			got = append(got, r.Header.Get("Idempotency-Key"))
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("no such hook"))
	}))
	t.Cleanup(srv.Close)
	a := startAlertd(t, fmt.Sprintf(`
route: {receiver: hook, group_wait: 0s, group_interval: 1s}
receivers:
  - name: hook
    webhook_configs: [{url: "%s/hook?token=s3cret"}]
`, srv.URL), nil, nil)
	pushAlert(t, a, map[string]string{"alertname": "Drift"}, nil)

	var dead struct {
		DeadLetters []deadLetterJSON `json:"deadLetters"`
	}
	require.Eventually(t, func() bool {
		_, r := apiGet(t, a.URL+"/api/v1/outbox/dead_letters")
		require.NoError(t, json.Unmarshal(r.Data, &dead))
		return len(dead.DeadLetters) == 1
	}, 30*time.Second, 20*time.Millisecond)
	d := dead.DeadLetters[0]
	require.Equal(t, "hook", d.Receiver)
	require.Equal(t, "webhook", d.Integration)
	require.Equal(t, 1, d.Attempts)
	require.Equal(t, "unexpected status code 400: no such hook", d.LastError)
	_, body := get(t, a.URL+"/api/v1/outbox/dead_letters")
	require.NotContains(t, body, "s3cret")
	require.Contains(t, string(d.Payload), `"alertname":"Drift"`)

	code, r := apiGet(t, a.URL+"/api/v1/outbox")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"pending":0,"oldestAgeSeconds":0,"deadLetters":1,"receivers":[{"receiver":"hook","integration":"webhook","entry":0,"pending":0,"oldestAgeSeconds":0,"deadLetters":1}]}`, string(r.Data))
	v, ok := metric(t, a.Registry(), "alertd_outbox_dead_letters", "receiver", "hook", "integration", "webhook", "entry", "0")
	require.True(t, ok)
	require.Equal(t, 1.0, v)

	code, body = post(t, a.URL+"/api/v1/outbox/dead_letters/nope/redrive", "", "")
	require.Equal(t, http.StatusNotFound, code, body)
	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	code, body = post(t, a.URL+"/api/v1/outbox/dead_letters/"+url.PathEscape(d.Key)+"/redrive", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{d.Key}, got, "the webhook gets the idempotency key")
	require.Eventually(t, func() bool {
		_, r = apiGet(t, a.URL+"/api/v1/outbox")
		return string(r.Data) == `{"deadLetters":0,"oldestAgeSeconds":0,"pending":0,"receivers":[]}`
	}, 30*time.Second, 20*time.Millisecond, "delivered: nothing pending")
}

// The outbox's queue, dead letters and attempts are by entry of a
// receiver's integration: of two webhooks, the one that refuses its
// notifications is told apart from the one that takes them, and each
// configured entry's series exist at 0 before its first message.
func TestOutboxMetricsByEntry(t *testing.T) {
	t.Parallel()
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such hook", http.StatusBadRequest)
	}))
	t.Cleanup(refuse.Close)
	h := newHook(t)
	a := startAlertd(t, fmt.Sprintf(`
route: {receiver: hooks, group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: hooks
    webhook_configs: [{url: "%s/hook"}, {url: "%s"}, {url: "%s"}]
`, refuse.URL, h.URL, h.URL), nil, nil)
	for _, e := range []string{"0", "1", "2"} {
		for _, m := range []string{"alertd_outbox_dead_letters", "alertd_outbox_queue_depth", "alertd_outbox_oldest_pending_age_seconds"} {
			v, ok := metric(t, a.Registry(), m, "receiver", "hooks", "integration", "webhook", "entry", e)
			require.True(t, ok, "%s{entry=%q} is not pre-created", m, e)
			require.Zero(t, v)
		}
		v, ok := metric(t, a.Registry(), "alertd_outbox_deliveries_total", "receiver", "hooks", "integration", "webhook", "entry", e, "result", "delivered")
		require.True(t, ok, "deliveries of entry %s are not pre-created", e)
		require.Zero(t, v)
	}

	pushAlert(t, a, map[string]string{"alertname": "Drift"}, nil)
	h.wait(t, "Drift", "firing", 30*time.Second)
	require.Eventually(t, func() bool {
		dead, _ := metric(t, a.Registry(), "alertd_outbox_dead_letters", "receiver", "hooks", "integration", "webhook", "entry", "0")
		delivered, _ := metric(t, a.Registry(), "alertd_outbox_deliveries_total", "receiver", "hooks", "integration", "webhook", "entry", "1", "result", "delivered")
		return dead == 1 && delivered == 1
	}, 30*time.Second, 20*time.Millisecond)
	for metricName, want := range map[[2]string]float64{
		{"alertd_outbox_dead_letters", "1"}:     0,
		{"alertd_outbox_deliveries_total", "0"}: 1,
		{"alertd_outbox_deliveries_total", "1"}: 0,
	} {
		labels := []string{"receiver", "hooks", "integration", "webhook", "entry", metricName[1]}
		if metricName[0] == "alertd_outbox_deliveries_total" {
			labels = append(labels, "result", "dead_lettered")
		}
		v, ok := metric(t, a.Registry(), metricName[0], labels...)
		require.True(t, ok)
		require.Equal(t, want, v, "%s %v", metricName[0], labels)
	}
}

// signed builds Slack's interaction request for a button at ts.
func signed(t *testing.T, u, secret string, ts int64, action string, value string) *http.Request {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"type":    "block_actions",
		"user":    map[string]string{"id": "U1", "name": "alice"},
		"actions": []map[string]string{{"type": "button", "action_id": action, "block_id": "alertd_actions", "value": value}},
	})
	require.NoError(t, err)
	body := "payload=" + url.QueryEscape(string(payload))
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/slack/interactions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", slack.Sign(secret, ts, []byte(body)))
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// Slack's buttons: a signed request acknowledges, marks a false positive or
// resolves; bad, stale and replayed signatures are refused.
func TestSlackInteractions(t *testing.T) {
	t.Parallel()
	sl := notifytest.NewSlack(t)
	a := startAlertd(t, fmt.Sprintf(`
classification: {rules: []}
route: {receiver: team, group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: team
    slack_configs:
      - api_url: %s/api/
        token: xoxb-t0ken
        channel: ml
        signing_secret: s1gn1ng
`, sl.URL), nil, nil)
	pushAlert(t, a, map[string]string{"alertname": "Drift", "model": "fraud"}, map[string]string{"summary": "drifted"})
	require.Eventually(t, func() bool { return len(sl.Calls()) > 0 }, 30*time.Second, 20*time.Millisecond)
	c := sl.Calls()[0]
	var value string
	for _, b := range c.Blocks {
		for _, e := range asAny(b["elements"]) {
			if m := e.(map[string]any); m["action_id"] == slack.ActionAcknowledge {
				value = m["value"].(string)
			}
		}
	}
	require.NotEmpty(t, value, "the message has buttons")
	var v slack.ButtonValue
	require.NoError(t, json.Unmarshal([]byte(value), &v))
	require.Len(t, v.Fingerprints, 1)
	fp := v.Fingerprints[0]
	now := time.Now().Unix()

	code, body := do(t, signed(t, a.URL, "wrong", now, slack.ActionAcknowledge, value))
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "invalid Slack signature")
	code, body = do(t, signed(t, a.URL, "s1gn1ng", now-6*60, slack.ActionAcknowledge, value))
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "stale Slack request")

	ack := signed(t, a.URL, "s1gn1ng", now, slack.ActionAcknowledge, value)
	replay := ack.Clone(ack.Context())
	replay.Body, _ = ack.GetBody()
	code, body = do(t, ack)
	require.Equal(t, http.StatusOK, code, body)
	code, body = do(t, replay)
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.Contains(t, body, "replayed Slack request")
	rejected, _ := metric(t, a.Registry(), "alertd_slack_interactions_rejected_total")
	require.Equal(t, 3.0, rejected)

	al, ok := a.alert(t, "Drift", SourcePrometheus)
	require.True(t, ok)
	require.Equal(t, fp, al.Fingerprint)
	require.Contains(t, actions(al.History), "acknowledge/acknowledged")
	_, r := apiGet(t, a.URL+"/api/v1/incidents")
	require.Contains(t, string(r.Data), `"acknowledgedBy":"slack:alice"`)

	code, body = do(t, signed(t, a.URL, "s1gn1ng", now+1, slack.ActionFalsePositive, value))
	require.Equal(t, http.StatusOK, code, body)
	al, _ = a.alert(t, "Drift", SourcePrometheus)
	require.Contains(t, actions(al.History), "feedback/false_positive")
	fb, _ := metric(t, a.Registry(), "alertd_feedback_total", "verdict", "false_positive")
	require.Equal(t, 1.0, fb)

	// Resolve calls the hook with the incident and who pressed it.
	var resolved []string
	a.SetResolve(func(_ context.Context, id, by string) error {
		resolved = append(resolved, id+" "+by)
		return nil
	})
	code, body = do(t, signed(t, a.URL, "s1gn1ng", now+2, slack.ActionResolve, value))
	require.Equal(t, http.StatusOK, code, body)
	require.Len(t, resolved, 1)
	require.Regexp(t, `^[0-9a-f]{16} slack:alice$`, resolved[0])
}

func asAny(v any) []any { s, _ := v.([]any); return s }

// An action that needs approval asks for it in Slack: the message has
// Approve and Reject buttons, and Approve sends the action.
func TestSlackApprovesAction(t *testing.T) {
	t.Parallel()
	sl := notifytest.NewSlack(t)
	var ci atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { ci.Add(1) }))
	t.Cleanup(hook.Close)
	a := startAlertd(t, fmt.Sprintf(`
route: {receiver: none, group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: none
  - name: ml-leads
    slack_configs:
      - api_url: %s/api/
        token: xoxb-t0ken
        channel: ml-leads
        signing_secret: s1gn1ng
actions:
  - name: retrain
    type: webhook
    url: %s/retrain
    secret: s3cret
    trigger: {matchers: ['alertname="Drift"']}
    approval: {required: true, receivers: [ml-leads]}
`, sl.URL, hook.URL), nil, nil)
	pushAlert(t, a, map[string]string{"alertname": "Drift", "model": "fraud"}, nil)
	require.Eventually(t, func() bool { return len(sl.Calls()) > 0 }, 30*time.Second, 20*time.Millisecond)
	c := sl.Calls()[0]
	require.Equal(t, "ml-leads", c.Channel)
	require.Equal(t, "chat.postMessage", c.Method)
	buttons := map[string]string{}
	for _, b := range c.Blocks {
		for _, e := range asAny(b["elements"]) {
			m := e.(map[string]any)
			if id, ok := m["action_id"].(string); ok {
				buttons[id] = m["value"].(string)
			}
		}
	}
	require.Contains(t, buttons, slack.ActionApprove)
	require.Contains(t, buttons, slack.ActionReject)
	require.NotContains(t, buttons, slack.ActionAcknowledge, "an approval is no incident")
	var v slack.ButtonValue
	require.NoError(t, json.Unmarshal([]byte(buttons[slack.ActionApprove]), &v))
	require.NotEmpty(t, v.Request)
	require.Zero(t, ci.Load(), "nothing is sent before the approval")

	now := time.Now().Unix()
	code, body := do(t, signed(t, a.URL, "s1gn1ng", now, slack.ActionApprove, buttons[slack.ActionApprove]))
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, func() bool { return ci.Load() == 1 }, 30*time.Second, 20*time.Millisecond, "the approved action is sent")
	req, ok := a.actions.get(v.Request)
	require.True(t, ok)
	require.Equal(t, "slack:alice", req.DecidedBy)

	// The request no longer awaits approval: its message loses the
	// buttons, and its thread says why.
	require.Eventually(t, func() bool { return len(sl.Calls()) >= 3 }, 30*time.Second, 20*time.Millisecond)
	upd, reply := sl.Calls()[1], sl.Calls()[2]
	require.Equal(t, "chat.update", upd.Method)
	require.Equal(t, "1000.000001", upd.TS)
	for _, b := range upd.Blocks {
		require.NotEqual(t, "actions", b["type"], "buttons left on the decided request: %v", upd.Blocks)
	}
	require.Equal(t, "chat.postMessage", reply.Method)
	require.Equal(t, "1000.000001", reply.ThreadTS)
	require.Equal(t, "Request "+v.Request+" no longer awaits approval: approved by slack:alice.", reply.Text)

	// Rejecting it now is a conflict: it no longer awaits approval.
	code, body = do(t, signed(t, a.URL, "s1gn1ng", now+1, slack.ActionReject, buttons[slack.ActionReject]))
	require.Equal(t, http.StatusConflict, code, body)
}

// DELETE /api/v1/outbox/dead_letters/{key} discards a dead letter: it
// answers with the letter, which is gone from the list, the gauge and,
// after a restart on the same storage, the outbox file; it is counted,
// logged and recorded in its alert's history. The last dead letter of a
// receiver a reload removed takes the receiver's remaining series with it.
// An unknown key is a 404.
func TestOutboxDiscardDeadLetter(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such hook", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	cfg := `
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  routes: [{receiver: gone, matchers: ['alertname="Gone"']}]
receivers:
  - name: hook
    webhook_configs: [{url: "%[1]s/hook"}]
  - name: gone
    webhook_configs: [{url: "%[1]s/gone"}]
`
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", fmt.Sprintf(cfg, srv.URL))
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)
	pushAlert(t, a, map[string]string{"alertname": "Drift"}, nil)
	pushAlert(t, a, map[string]string{"alertname": "Gone"}, nil)

	deadLetters := func(a *testAlertd) map[string]deadLetterJSON {
		t.Helper()
		var dead struct {
			DeadLetters []deadLetterJSON `json:"deadLetters"`
		}
		_, r := apiGet(t, a.URL+"/api/v1/outbox/dead_letters")
		require.NoError(t, json.Unmarshal(r.Data, &dead))
		out := map[string]deadLetterJSON{}
		for _, d := range dead.DeadLetters {
			out[d.Receiver] = d
		}
		return out
	}
	require.Eventually(t, func() bool { return len(deadLetters(a)) == 2 }, 30*time.Second, 20*time.Millisecond)
	letters := deadLetters(a)
	discard := func(a *testAlertd, key string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodDelete, a.URL+"/api/v1/outbox/dead_letters/"+url.PathEscape(key), nil)
		require.NoError(t, err)
		return do(t, req)
	}

	code, body := discard(a, "nope")
	require.Equal(t, http.StatusNotFound, code, body)
	require.Equal(t, "no dead letter with key \"nope\"\n", body)

	hook := letters["hook"]
	code, body = discard(a, hook.Key)
	require.Equal(t, http.StatusOK, code, body)
	var r struct {
		Status string         `json:"status"`
		Data   deadLetterJSON `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.Equal(t, "success", r.Status)
	require.Equal(t, hook.Key, r.Data.Key)
	require.Equal(t, "hook", r.Data.Receiver)
	require.Equal(t, "unexpected status code 400: no such hook", r.Data.LastError)
	require.NotContains(t, deadLetters(a), "hook")
	v, ok := metric(t, a.Registry(), "alertd_outbox_dead_letters", "receiver", "hook", "integration", "webhook", "entry", "0")
	require.True(t, ok)
	require.Zero(t, v)
	v, _ = metric(t, a.Registry(), "alertd_outbox_dead_letters_discarded_total", "receiver", "hook", "integration", "webhook")
	require.Equal(t, 1.0, v)
	code, body = discard(a, hook.Key)
	require.Equal(t, http.StatusNotFound, code, "discarded already: %s", body)
	al, ok := a.alert(t, "Drift", SourcePrometheus)
	require.True(t, ok)
	require.Contains(t, actions(al.History), "notify/discarded")
	require.Contains(t, logs.String(), `msg="Dead letter discarded" key=`+hook.Key)

	// A reload removes gone: its dead letter keeps alertd_outbox_dead_letters
	// alone, and takes it along when it is discarded.
	writeFile(t, dir, "alertd.yml", fmt.Sprintf(`
route: {receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: hook
    webhook_configs: [{url: "%s/hook"}]
`, srv.URL))
	require.NoError(t, a.Reload())
	require.Equal(t, []string{"alertd_outbox_dead_letters"}, seriesOf(t, a, "gone"))
	code, body = discard(a, letters["gone"].Key)
	require.Equal(t, http.StatusOK, code, body)
	require.Empty(t, seriesOf(t, a, "gone"), "the removed receiver's series are left")
	require.NotContains(t, deadLetters(a), "gone")

	// Still gone after a restart on the same storage. (Gone, routed to
	// hook since the reload, may have a dead letter there of its own.)
	require.NoError(t, a.Stop())
	b := start(t, dir, o, logs)
	for _, d := range deadLetters(b) {
		require.NotContains(t, []string{hook.Key, letters["gone"].Key}, d.Key, "a discarded dead letter is back")
	}
	v, ok = metric(t, b.Registry(), "alertd_outbox_dead_letters", "receiver", "hook", "integration", "webhook", "entry", "0")
	require.True(t, ok)
	require.LessOrEqual(t, v, 1.0)
	require.Empty(t, seriesOf(t, b, "gone"))
}

// seriesOf returns the names of the alertd_outbox_ metrics a has series of
// for receiver.
func seriesOf(t *testing.T, a *testAlertd, receiver string) []string {
	t.Helper()
	mfs, err := a.Registry().Gather()
	require.NoError(t, err)
	var out []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "alertd_outbox_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			if slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "receiver" && l.GetValue() == receiver }) {
				out = append(out, mf.GetName())
				break
			}
		}
	}
	return out
}
