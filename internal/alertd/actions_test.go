package alertd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	act "github.com/modelmon/modelmon/internal/actions"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/notify/notifytest"
	"github.com/modelmon/modelmon/internal/outbox"
)

// ciRequest is a request a fake CI received.
type ciRequest struct {
	Method, Path string
	Header       http.Header
	Body         string
	// SignatureErr is the webhook signature's check, when the CI has a
	// secret.
	SignatureErr error
}

// fakeCI is a loopback CI API: it keeps every request and answers with
// status (204 unless set).
type fakeCI struct {
	URL    string
	status atomic.Int32
	mu     sync.Mutex
	got    []ciRequest
}

func newFakeCI(t *testing.T, verifier *act.Verifier, now func() time.Time) *fakeCI {
	t.Helper()
	ci := &fakeCI{}
	ci.status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := ciRequest{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: string(b)}
		if verifier != nil {
			req.SignatureErr = verifier.Verify(r.Header, b, now())
		}
		ci.mu.Lock()
		ci.got = append(ci.got, req)
		ci.mu.Unlock()
		w.WriteHeader(int(ci.status.Load()))
	}))
	t.Cleanup(srv.Close)
	ci.URL = srv.URL
	return ci
}

func (ci *fakeCI) requests() []ciRequest {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return slices.Clone(ci.got)
}

// waitRequests waits until the CI got n requests and returns them.
func (ci *fakeCI) waitRequests(t *testing.T, n int) []ciRequest {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqualf(c, len(ci.requests()), n, "the CI got %d requests, want %d", len(ci.requests()), n)
	}, 30*time.Second, 10*time.Millisecond)
	return ci.requests()
}

// startActionsAlertd starts alertd on the configuration cfg(dir) with the
// test clock; before runs between New and Start.
func startActionsAlertd(t *testing.T, clock *testClock, cfg func(dir string) string, before func(*Alertd)) *testAlertd {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", cfg(dir))
	return restartActionsAlertd(t, clock, dir, before)
}

// restartActionsAlertd starts alertd on the configuration and storage
// startActionsAlertd left in dir.
func restartActionsAlertd(t *testing.T, clock *testClock, dir string, before func(*Alertd)) *testAlertd {
	t.Helper()
	return runActionsAlertd(t, clock, dir, nil, before)
}

// runActionsAlertd is restartActionsAlertd with mod applied to the
// options first.
func runActionsAlertd(t *testing.T, clock *testClock, dir string, mod func(*Options), before func(*Alertd)) *testAlertd {
	t.Helper()
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	if mod != nil {
		mod(&o)
	}
	return startWith(t, dir, o, logs, before)
}

// actionRequests returns GET /api/v1/actions/requests.
func actionRequests(t *testing.T, a *testAlertd) []actionRequest {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/actions/requests")
	require.Equal(t, http.StatusOK, code)
	var d struct {
		Requests []actionRequest `json:"requests"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return d.Requests
}

// waitRequest waits for the request of the action for the alert with
// these labels (any, if nil) to satisfy ok.
func waitRequest(t *testing.T, a *testAlertd, action string, ls model.LabelSet, ok func(actionRequest) bool, msg string) actionRequest {
	t.Helper()
	var got actionRequest
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		last := actionRequests(t, a)
		for _, r := range last {
			if r.Action == action && (ls == nil || slices.Contains(r.Alerts, ls.Fingerprint().String())) && ok(r) {
				got = r
				return
			}
		}
		assert.Failf(c, "no such request", "requests: %+v", last)
	}, 30*time.Second, 10*time.Millisecond, msg)
	return got
}

func inRequestState(state string) func(actionRequest) bool {
	return func(r actionRequest) bool { return r.State == state }
}

// driftAlert is a drift alert as rules/drift.rules.yml fires it.
func driftAlert(m, feature string) (model.LabelSet, string) {
	ls := model.LabelSet{"alertname": "ModelFeatureDrift", "model": model.LabelValue(m), "feature": model.LabelValue(feature),
		"window": "1h", "severity": "warning", "category": "drift"}
	b, _ := json.Marshal(map[string]any{"labels": ls, "annotations": map[string]string{
		"summary": fmt.Sprintf("Feature %s of model %s drifted (PSI 0.14).", feature, m)}})
	return ls, string(b)
}

// escalations records the calls of the escalateIncident hook.
type escalations struct {
	mu    sync.Mutex
	calls []string
}

func (e *escalations) hook(_ context.Context, alerts []*Alert, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var fps []string
	for _, al := range alerts {
		fps = append(fps, al.Fingerprint.String())
	}
	e.calls = append(e.calls, strings.Join(fps, ",")+": "+reason)
	return nil
}

func (e *escalations) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// classifyDrift makes the classifier call drift alerts data quality
// problems that need a retrain.
const classifyDrift = `
intake:
  resolve_timeout: 24h
classification:
  rules:
    - matchers: ['alertname="ModelFeatureDrift"']
      category: data_quality
      action: retrain
`

// The must-show path: a drift alert (category data_quality) triggers a
// retrain through GitHub's repository_dispatch on a loopback CI; a second
// drift alert of the same model within the cooldown is refused and the
// refusal recorded; and since the first alert does not resolve within
// verify.within, the incident escalates.
func TestActionDriftAlertToGitHub(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	esc := &escalations{}
	const token = "ghp_0123456789abcdefSECRET"
	a := startActionsAlertd(t, clock, func(dir string) string {
		writeFile(t, dir, "github.token", token+"\n")
		return classifyDrift + `
actions:
  - name: retrain
    type: github_repository_dispatch
    url: ` + ci.URL + `
    repository: acme/models
    event_type: retrain-model
    token_file: github.token
    trigger:
      matchers: ['category="data_quality"', 'action="retrain"']
    cooldown: 1h
    verify:
      within: 30m
`
	}, func(a *Alertd) { a.escalateIncident = esc.hook })

	// The drift alert fires: the retrain goes to GitHub.
	ls1, alert1 := driftAlert("fraud", "amount")
	postAlertJSON(t, a, alert1)
	got := ci.waitRequests(t, 1)[0]
	sent := waitRequest(t, a, "retrain", ls1, inRequestState(stateDelivered), "the retrain was not delivered")
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "/repos/acme/models/dispatches", got.Path)
	require.Equal(t, "Bearer "+token, got.Header.Get("Authorization"), "the token, from its file, trimmed")
	require.Equal(t, "application/vnd.github+json", got.Header.Get("Accept"))
	require.Equal(t, "2022-11-28", got.Header.Get("X-GitHub-Api-Version"))
	require.Equal(t, "application/json", got.Header.Get("Content-Type"))
	require.Equal(t, "modelmon-alertd", got.Header.Get("User-Agent"))
	require.Equal(t, sent.Key, got.Header.Get("Idempotency-Key"))
	require.True(t, strings.HasPrefix(sent.Key, "action/retrain/alert/"+ls1.Fingerprint().String()+"/"), sent.Key)
	var body struct {
		EventType     string            `json:"event_type"`
		ClientPayload map[string]string `json:"client_payload"`
	}
	dec := json.NewDecoder(strings.NewReader(got.Body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&body), got.Body)
	require.Equal(t, "retrain-model", body.EventType)
	require.Equal(t, map[string]string{
		"model":           "fraud",
		"alertname":       "ModelFeatureDrift",
		"category":        "data_quality", // the classifier's, not the label's "drift"
		"action":          "retrain",
		"modelmon_action": "retrain",
		"trigger":         "alert",
		"idempotency_key": sent.Key,
	}, body.ClientPayload)
	require.Equal(t, "fraud", sent.Model)
	require.Equal(t, verifyPending, sent.Verification)
	require.WithinDuration(t, sent.SentAt.Add(30*time.Minute), *sent.VerifyBy, 0)
	al := waitFor(t, a, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "delivered" }, "no delivery in the history")
	i := slices.IndexFunc(al.History, func(d Decision) bool { return d.Stage == "action" && d.Action == "triggered" })
	require.GreaterOrEqual(t, i, 0, "no trigger in the history: %v", actions(al.History))
	require.Contains(t, al.History[i].Reason, `action "retrain" (github_repository_dispatch) sent by alert (request `+sent.ID+`, idempotency key `+sent.Key+`); the alert must resolve by `)
	v, _ := metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", "alert")
	require.Equal(t, 1.0, v)

	// A second drift alert of the same model within the hour: refused,
	// and recorded with its reason in the alert's history and the API.
	ls2, alert2 := driftAlert("fraud", "age")
	postAlertJSON(t, a, alert2)
	refused := waitRequest(t, a, "retrain", ls2, inRequestState(stateRefused), "the second trigger was not refused")
	require.Contains(t, refused.Reason, `cooldown: triggered for model "fraud" at `)
	al2 := waitFor(t, a, ls2, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "refused" }, "no refusal in the history")
	require.Contains(t, lastOf(al2.History, "action").Reason, `action "retrain" (request `+refused.ID+`) refused: cooldown`)
	v, _ = metric(t, a.Registry(), "alertd_actions_refused_total", "action", "retrain", "reason", "cooldown")
	require.Equal(t, 1.0, v)
	require.Len(t, ci.requests(), 1, "the cooldown holds the second trigger")

	// The same alert, posted again, does not trigger again.
	postAlertJSON(t, a, alert1)
	require.Len(t, actionRequests(t, a), 2)

	// 31 minutes on, the first alert still fires: the verification fails
	// and the incident escalates.
	clock.skip(31 * time.Minute)
	failed := waitRequest(t, a, "retrain", ls1, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not fail")
	require.Equal(t, "escalated the incident", failed.FollowUp)
	calls := esc.all()
	require.Len(t, calls, 1)
	require.Equal(t, ls1.Fingerprint().String()+`: action "retrain" (request `+sent.ID+`) failed verification: the alert still fires 30m after it was sent`, calls[0])
	al = waitFor(t, a, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "verification_failed" }, "no verification in the history")
	require.Contains(t, lastOf(al.History, "action").Reason, "; escalated the incident")
	v, _ = metric(t, a.Registry(), "alertd_actions_verification_total", "action", "retrain", "result", "failed")
	require.Equal(t, 1.0, v)
	v, _ = metric(t, a.Registry(), "alertd_actions_verification_total", "action", "retrain", "result", "resolved")
	require.Zero(t, v)
	require.Len(t, ci.requests(), 1)

	// The token shows nowhere: not in the API, the history or the log.
	for _, p := range []string{"/api/v1/actions", "/api/v1/actions/requests", "/api/v1/alerts"} {
		_, b := get(t, a.URL+p)
		require.NotContains(t, b, token, p)
	}
	require.NotContains(t, a.logs.String(), token)
	_, b := get(t, a.URL+"/api/v1/actions")
	require.Contains(t, b, `"credentials":["token_file"]`)
}

// A resolved alert verifies its action; the daily budget refuses the
// triggers beyond it; and the generic webhook's requests are signed.
func TestActionBudgetVerifiedAndSignedWebhook(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	verifier := &act.Verifier{Secret: "hook-secret"}
	ci := newFakeCI(t, verifier, clock.Now)
	ci.status.Store(http.StatusAccepted)
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
actions:
  - name: retrain
    type: webhook
    url: ` + ci.URL + `/hooks/retrain
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
    cooldown: 0s
    daily_budget: 2
    verify: {within: 30m}
`
	}, nil)
	var lss []model.LabelSet
	for _, m := range []string{"fraud", "churn", "ltv"} {
		ls, al := driftAlert(m, "amount")
		lss = append(lss, ls)
		postAlertJSON(t, a, al)
		waitRequest(t, a, "retrain", ls, func(actionRequest) bool { return true }, "no request for "+m)
	}
	reqs := ci.waitRequests(t, 2)
	for _, r := range reqs {
		require.NoError(t, r.SignatureErr, "signed with the secret")
		require.Equal(t, "/hooks/retrain", r.Path)
		require.Regexp(t, `^sha256=[0-9a-f]{64}$`, r.Header.Get("X-Modelmon-Signature"))
		require.NotEmpty(t, r.Header.Get("Idempotency-Key"))
		require.Empty(t, r.Header.Get("Authorization"))
	}
	refused := waitRequest(t, a, "retrain", lss[2], inRequestState(stateRefused), "the third was not refused")
	require.Contains(t, refused.Reason, "budget: triggered 2 times today (UTC), the daily budget is 2")
	v, _ := metric(t, a.Registry(), "alertd_actions_refused_total", "action", "retrain", "reason", "budget")
	require.Equal(t, 1.0, v)
	_, b := get(t, a.URL+"/api/v1/actions")
	require.Contains(t, b, `"dailyBudget":2,"usedToday":2`)

	// The first alert resolves: its action is verified.
	_, body := driftAlert("fraud", "amount")
	resolved := strings.TrimSuffix(body, "}") + fmt.Sprintf(`,"endsAt":%q}`, clock.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano))
	postAlertJSON(t, a, resolved)
	waitRequest(t, a, "retrain", lss[0], func(r actionRequest) bool { return r.Verification == verifyResolved }, "not verified")
	v, _ = metric(t, a.Registry(), "alertd_actions_verification_total", "action", "retrain", "result", "resolved")
	require.Equal(t, 1.0, v)
	require.Len(t, ci.requests(), 2)
}

// An action that needs approval waits; the approve endpoint sends it, the
// reject endpoint refuses it.
func TestActionApproval(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
actions:
  - name: deploy
    type: argo_workflow
    url: ` + ci.URL + `
    namespace: ml
    workflow_template: retrain-and-deploy
    inputs:
      model: '{{ .Labels.model }}'
    trigger:
      matchers: ['category="data_quality"']
    approval: {required: true, timeout: 2h}
`
	}, nil)
	ls1, al1 := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al1)
	pending := waitRequest(t, a, "deploy", ls1, inRequestState(stateAwaitingApproval), "not awaiting approval")
	require.Contains(t, pending.Reason, "POST /api/v1/actions/requests/"+pending.ID+"/approve or /reject")
	h := waitFor(t, a, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "awaiting_approval" }, "not in the history")
	require.Contains(t, lastOf(h.History, "action").Reason, "awaiting approval until ")
	require.Empty(t, ci.requests())

	code, resp := post(t, a.URL+"/api/v1/actions/requests/"+pending.ID+"/approve", "application/json", `{"by":"alice"}`)
	require.Equal(t, http.StatusOK, code, resp)
	got := ci.waitRequests(t, 1)[0]
	require.Equal(t, "/api/v1/workflows/ml/submit", got.Path)
	approved := waitRequest(t, a, "deploy", ls1, inRequestState(stateDelivered), "not delivered")
	require.JSONEq(t, `{"namespace":"ml","resourceKind":"WorkflowTemplate","resourceName":"retrain-and-deploy","submitOptions":{"name":"`+
		act.ArgoWorkflowName("retrain-and-deploy", approved.Key)+`","parameters":["model=fraud"]}}`, got.Body)
	require.Equal(t, "alice", approved.DecidedBy)
	h = waitFor(t, a, ls1, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "delivered" }, "not in the history")
	require.Contains(t, actions(h.History), "action/triggered")
	v, _ := metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "deploy", "trigger", "alert")
	require.Equal(t, 1.0, v)

	// Deciding again is a conflict; an unknown request is not found.
	code, _ = post(t, a.URL+"/api/v1/actions/requests/"+pending.ID+"/reject", "application/json", "")
	require.Equal(t, http.StatusConflict, code)
	code, _ = post(t, a.URL+"/api/v1/actions/requests/nope/approve", "application/json", "")
	require.Equal(t, http.StatusNotFound, code)

	ls2, al2 := driftAlert("churn", "amount")
	postAlertJSON(t, a, al2)
	pending = waitRequest(t, a, "deploy", ls2, inRequestState(stateAwaitingApproval), "not awaiting approval")
	code, resp = post(t, a.URL+"/api/v1/actions/requests/"+pending.ID+"/reject", "application/json", `{"by":"bob"}`)
	require.Equal(t, http.StatusOK, code, resp)
	rejected := waitRequest(t, a, "deploy", ls2, inRequestState(stateRejected), "not rejected")
	require.Equal(t, "rejected by bob", rejected.Reason)
	v, _ = metric(t, a.Registry(), "alertd_actions_refused_total", "action", "deploy", "reason", "rejected")
	require.Equal(t, 1.0, v)

	// One nobody decides on expires.
	ls3, al3 := driftAlert("ltv", "amount")
	postAlertJSON(t, a, al3)
	waitRequest(t, a, "deploy", ls3, inRequestState(stateAwaitingApproval), "not awaiting approval")
	clock.skip(2*time.Hour + time.Minute)
	waitRequest(t, a, "deploy", ls3, inRequestState(stateExpired), "not expired")
	v, _ = metric(t, a.Registry(), "alertd_actions_refused_total", "action", "deploy", "reason", "expired")
	require.Equal(t, 1.0, v)
	require.Len(t, ci.requests(), 1)
}

// An approval request sent to PagerDuty opens an incident (a trigger
// event); once the request is approved, rejected or expired, alertd
// resolves that incident: a resolve event with the same dedup_key.
func TestApprovalResolvesPagerDutyIncident(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	pd := notifytest.NewPagerDuty(t)
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
route: {receiver: none, group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: none
  - name: leads
    pagerduty_configs: [{url: "` + pd.URL + `", routing_key: R0UT1NG}]
actions:
  - name: deploy
    type: webhook
    url: ` + ci.URL + `/deploy
    secret: s3cret
    trigger:
      matchers: ['category="data_quality"']
    approval: {required: true, timeout: 2h, receivers: [leads]}
`
	}, nil)
	// events waits for the PagerDuty events of the request's incident
	// to be actions, and returns them.
	events := func(req actionRequest, actions ...string) []map[string]any {
		t.Helper()
		var got []map[string]any
		var gotActions []string
		require.Eventually(t, func() bool {
			got, gotActions = nil, nil
			for _, e := range pd.Events() {
				if e["dedup_key"] == notice.Hash("action/"+req.ID) {
					got = append(got, e)
					gotActions = append(gotActions, e["event_action"].(string))
				}
			}
			return slices.Equal(gotActions, actions)
		}, 30*time.Second, 10*time.Millisecond, "request %s: want the PagerDuty events %v", req.ID, actions)
		return got
	}
	awaiting := func(m string) actionRequest {
		t.Helper()
		ls, al := driftAlert(m, "amount")
		postAlertJSON(t, a, al)
		req := waitRequest(t, a, "deploy", ls, inRequestState(stateAwaitingApproval), "not awaiting approval")
		trigger := events(req, "trigger")[0]
		require.Contains(t, trigger["payload"].(map[string]any)["summary"], "ActionAwaitingApproval")
		return req
	}

	approved := awaiting("fraud")
	code, resp := post(t, a.URL+"/api/v1/actions/requests/"+approved.ID+"/approve", "application/json", `{"by":"alice"}`)
	require.Equal(t, http.StatusOK, code, resp)
	resolve := events(approved, "trigger", "resolve")[1]
	require.Equal(t, "R0UT1NG", resolve["routing_key"])
	ci.waitRequests(t, 1)

	rejected := awaiting("churn")
	code, resp = post(t, a.URL+"/api/v1/actions/requests/"+rejected.ID+"/reject", "application/json", `{"by":"bob"}`)
	require.Equal(t, http.StatusOK, code, resp)
	events(rejected, "trigger", "resolve")

	expired := awaiting("ltv")
	clock.skip(2*time.Hour + time.Minute)
	waitRequest(t, a, "deploy", nil, func(r actionRequest) bool { return r.ID == expired.ID && r.State == stateExpired }, "not expired")
	events(expired, "trigger", "resolve")

	require.Len(t, ci.requests(), 1, "only the approved request is sent")
	events(approved, "trigger", "resolve") // and nothing more for it
}

// An escalation step runs an action through runAction; when its alert
// does not resolve, the configured rollback action runs; a scheduled
// action runs at its slots.
func TestActionRunActionRollbackAndSchedule(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	a := startActionsAlertd(t, clock, func(dir string) string {
		writeFile(t, dir, "trigger.token", "glptt-SECRET\n")
		return classifyDrift + `
actions:
  - name: deploy
    type: github_workflow_dispatch
    url: ` + ci.URL + `
    repository: acme/models
    workflow: deploy.yml
    token: ghp_SECRET
    inputs:
      model: '{{ .Labels.model }}'
    verify: {within: 30m, on_failure: rollback}
  - name: rollback
    type: gitlab_pipeline
    url: ` + ci.URL + `
    project: acme/ml
    ref: release
    trigger_token_file: trigger.token
  - name: nightly
    type: airflow_dag_run
    url: ` + ci.URL + `
    dag_id: retrain
    trigger:
      schedule: {every: 1h, labels: {model: fraud}}
`
	}, nil)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	waitFor(t, a, ls, inState("firing"), "not firing")

	stored, ok := a.store.get(ls.Fingerprint())
	require.True(t, ok)
	require.NoError(t, a.runAction(t.Context(), "deploy", []*Alert{stored}, "incident-1/step-2"))
	require.NoError(t, a.runAction(t.Context(), "deploy", []*Alert{stored}, "incident-1/step-2"), "the same step again does nothing")
	got := ci.waitRequests(t, 1)[0]
	require.Equal(t, "/repos/acme/models/actions/workflows/deploy.yml/dispatches", got.Path)
	require.JSONEq(t, `{"ref":"main","inputs":{"model":"fraud"}}`, got.Body)
	sent := waitRequest(t, a, "deploy", ls, inRequestState(stateDelivered), "not delivered")
	require.Equal(t, "escalation", sent.Trigger)
	require.Equal(t, "action/deploy/escalation/incident-1/step-2", sent.Key)
	require.ErrorIs(t, a.runAction(t.Context(), "nope", nil, "k"), errNoAction)
	require.ErrorIs(t, a.runAction(t.Context(), "deploy", []*Alert{stored}, "incident-1/step-3"), errActionRefused, "cooldown")

	// The alert still fires after 30 minutes: the rollback runs.
	clock.skip(31 * time.Minute)
	rb := waitRequest(t, a, "rollback", ls, inRequestState(stateDelivered), "no rollback")
	require.Equal(t, "rollback", rb.Trigger)
	var rbReq ciRequest
	for _, r := range ci.requests() {
		if strings.HasSuffix(r.Path, "/trigger/pipeline") {
			rbReq = r
		}
	}
	require.Equal(t, "/api/v4/projects/acme%2Fml/trigger/pipeline", rbReq.Path)
	require.Equal(t, "application/x-www-form-urlencoded", rbReq.Header.Get("Content-Type"))
	require.Contains(t, rbReq.Body, "token=glptt-SECRET&ref=release&")
	require.Contains(t, rbReq.Body, "variables%5BMODELMON_MODEL%5D=fraud")
	failed := waitRequest(t, a, "deploy", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "not failed")
	require.Equal(t, `ran "rollback"`, failed.FollowUp)
	v, _ := metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "rollback", "trigger", "rollback")
	require.Equal(t, 1.0, v)

	// The schedule: its first slot passes without a run, the next runs it.
	clock.skip(time.Hour)
	nightly := waitRequest(t, a, "nightly", nil, inRequestState(stateDelivered), "the schedule did not run")
	require.Equal(t, "schedule", nightly.Trigger)
	require.Equal(t, "fraud", nightly.Model)
	v, _ = metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "nightly", "trigger", "schedule")
	require.Equal(t, 1.0, v)
	for _, s := range []string{"ghp_SECRET", "glptt-SECRET"} {
		_, b := get(t, a.URL+"/api/v1/actions/requests")
		require.NotContains(t, b, s)
		_, b = get(t, a.URL+"/api/v1/actions")
		require.NotContains(t, b, s)
		require.NotContains(t, a.logs.String(), s)
	}
}

// The history of an alert whose action failed verification and ran its
// rollback reads in time order, the same whether the outbox delivered the
// rollback before the verification failure was recorded or after: the
// rollback triggered, the verification failed, the rollback delivered.
func TestActionRollbackHistoryInOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		deliveredFirst bool
	}{
		{name: "delivered before the verification failure is recorded", deliveredFirst: true},
		{name: "delivered after", deliveredFirst: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := &testClock{}
			ci := newFakeCI(t, nil, clock.Now)
			ls, al := driftAlert("fraud", "amount")
			// The rollback's endpoint answers once the verification
			// failure is recorded, or at once.
			answer := make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(answer) }) }
			rb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tc.deliveredFirst {
					<-answer
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(rb.Close)
			t.Cleanup(release)
			cfg := strings.Replace(rollbackConfig(ci), ci.URL+"/hooks/rollback", rb.URL+"/hooks/rollback", 1)
			a := startActionsAlertd(t, clock, func(string) string { return cfg }, func(a *Alertd) {
				if !tc.deliveredFirst {
					return
				}
				// The rollback's enqueue returns once its delivery is
				// in the alert's history, before the loop records what
				// it decided.
				enqueue := a.actions.enqueue
				a.actions.enqueue = func(ms ...*outbox.Message) ([]outbox.Dropped, error) {
					dropped, err := enqueue(ms...)
					if err == nil && len(ms) > 0 && strings.HasPrefix(ms[0].Key, "action/rollback/") {
						for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
							if al, ok := a.store.get(ls.Fingerprint()); ok && lastOf(al.History, "action").Action == "delivered" &&
								strings.Contains(lastOf(al.History, "action").Reason, `action "rollback"`) {
								break
							}
						}
					}
					return dropped, err
				}
			})
			postAlertJSON(t, a, al)
			waitRequest(t, a, "deploy", ls, inRequestState(stateDelivered), "the deploy was not delivered")

			// The alert still fires after 30 minutes: the rollback runs.
			clock.skip(31 * time.Minute)
			waitFor(t, a, ls, func(al alertJSON) bool {
				return slices.ContainsFunc(al.History, func(d Decision) bool { return d.Action == "verification_failed" })
			}, "no verification failure in the history")
			release()
			got := waitFor(t, a, ls, func(al alertJSON) bool {
				return slices.ContainsFunc(al.History, func(d Decision) bool {
					return d.Action == "delivered" && strings.Contains(d.Reason, `action "rollback"`)
				})
			}, "the rollback's delivery is not in the history")
			last := requireLastActions(t, got.History, "triggered", "verification_failed", "delivered")
			require.Contains(t, last[0].Reason, `action "rollback" (webhook) sent by rollback`)
			require.Contains(t, last[1].Reason, `failed verification: the alert still fires 30m after it was sent; ran "rollback"`)
			require.False(t, last[2].Time.Before(last[1].Time), "%+v", last)
			require.Equal(t, 1, ciPaths(ci)["/hooks/deploy"])
		})
	}
}

// A receiver that keeps refusing (4xx) fails the request without retries;
// its state survives a restart, so the cooldown still holds.
func TestActionPermanentFailureAndRestart(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ci.status.Store(http.StatusUnprocessableEntity)
	cfg := githubRetrain(ci.URL, "")
	a := startActionsAlertd(t, clock, func(string) string { return cfg }, nil)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	failed := waitRequest(t, a, "retrain", ls, inRequestState(stateFailed), "not failed")
	require.Equal(t, "unexpected status 422", failed.LastError)
	require.Equal(t, 1, failed.Attempts)
	require.NoError(t, a.Stop())

	// The same storage, a new alertd: the request is still there.
	o, logs := newOptions(t, a.Dir)
	o.Now = clock.Now
	b := start(t, a.Dir, o, logs)
	reqs := actionRequests(t, b)
	require.Len(t, reqs, 1)
	require.Equal(t, failed.ID, reqs[0].ID)
	ls2, al2 := driftAlert("fraud", "age")
	postAlertJSON(t, b, al2)
	waitRequest(t, b, "retrain", ls2, inRequestState(stateRefused), "the cooldown did not survive the restart")
	_, err := os.Stat(filepath.Join(a.Dir, "data", "actions.json"))
	require.NoError(t, err)
}

// A failed verification escalates the incident for real: its escalation
// chain moves on at once, and the next level is paged long before its
// wait would have ended.
func TestActionVerificationEscalatesChain(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	l1, l2 := newHook(t), newHook(t)
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
route: {receiver: none, group_by: [model], group_wait: 0s, group_interval: 1s}
receivers:
  - name: none
  - name: l1
    webhook_configs: [{url: "` + l1.URL + `"}]
  - name: l2
    webhook_configs: [{url: "` + l2.URL + `"}]
escalation_policies:
  - name: ml
    matchers: ['category="data_quality"']
    steps:
      - notify: [l1]
      - wait: 4h
      - notify: [l2]
actions:
  - name: retrain
    type: github_repository_dispatch
    url: ` + ci.URL + `
    repository: acme/models
    event_type: retrain-model
    token: t0ken
    trigger:
      matchers: ['action="retrain"']
    verify:
      within: 30m
`
	}, nil)
	ls, alert := driftAlert("fraud", "amount")
	postAlertJSON(t, a, alert)
	ci.waitRequests(t, 1)
	waitEscalationEvents(t, l1, "trigger")
	require.Empty(t, l2.all())

	clock.skip(31 * time.Minute)
	failed := waitRequest(t, a, "retrain", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not fail")
	require.Equal(t, "escalated the incident", failed.FollowUp)
	waitEscalationEvents(t, l2, "escalate")
	in := waitIncident(t, a, settled(2), "level 2 never settled")
	require.Equal(t, []string{"l1", "l2"}, in.Escalation.Notified)
	require.Contains(t, escalationReasons(t, a, ls), "failed verification")
}

// escalationReasons joins the reasons of the escalate stage's decisions in
// an alert's history.
func escalationReasons(t *testing.T, a *testAlertd, ls model.LabelSet) string {
	t.Helper()
	al := waitFor(t, a, ls, func(alertJSON) bool { return true }, "no alert")
	var out []string
	for _, d := range al.History {
		if d.Stage == "escalate" {
			out = append(out, d.Reason)
		}
	}
	return strings.Join(out, "\n")
}

// An action whose CI keeps failing with 5xx is retried until the outbox's
// max age, then dead-lettered: its request is failed, not sent forever,
// and its alerts' history says so.
func TestActionGivenUpAfterMaxAge(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ci.status.Store(http.StatusBadGateway)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", githubRetrain(ci.URL, ""))
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	o.Outbox.InitialBackoff, o.Outbox.MaxBackoff, o.Outbox.MaxAge = 10*time.Millisecond, 20*time.Millisecond, 300*time.Millisecond
	a := start(t, dir, o, logs)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	failed := waitRequest(t, a, "retrain", ls, inRequestState(stateFailed), "not failed after the outbox gave up")
	require.Contains(t, failed.LastError, "unexpected status 502")
	require.Len(t, a.notify.Outbox().DeadLetters(), 1)
	require.GreaterOrEqual(t, len(ci.requests()), 2, "retried before giving up")
}

// errNoSpace is the error of an outbox whose disk is full.
var errNoSpace = errors.New("outbox: couldn't store messages: no space left on device")

// gateEnqueue makes the outbox enqueues of the actions' messages whose key
// has the given prefix wait until release is called (or the test ends),
// as on a slow disk, or fail with errNoSpace while refuse is set; started
// receives each such key as its enqueue begins. The other messages go
// through. Call it between New and Start.
func gateEnqueue(t *testing.T, a *Alertd, prefix string, refuse *atomic.Bool) (started <-chan string, release func()) {
	t.Helper()
	begun := make(chan string, 16)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	enqueue := a.actions.enqueue
	a.actions.enqueue = func(ms ...*outbox.Message) ([]outbox.Dropped, error) {
		for _, m := range ms {
			if !strings.HasPrefix(m.Key, prefix) {
				continue
			}
			begun <- m.Key
			if refuse != nil && refuse.Load() {
				return nil, errNoSpace
			}
			<-gate
		}
		return enqueue(ms...)
	}
	return begun, release
}

// enqueueRefusal is an outbox that refuses the actions' messages whose
// key has a prefix (refuseEnqueue) while refuse is set, with errNoSpace;
// started receives each such key as its enqueue begins.
type enqueueRefusal struct {
	refuse  atomic.Bool
	started <-chan string
}

// refuseEnqueue returns an enqueueRefusal, refusing, and the hook that
// installs it between New and Start (the before of startActionsAlertd).
// The messages it lets through are not held (gateEnqueue, released).
func refuseEnqueue(t *testing.T, prefix string) (*enqueueRefusal, func(*Alertd)) {
	t.Helper()
	rf := &enqueueRefusal{}
	rf.refuse.Store(true)
	return rf, func(a *Alertd) {
		var release func()
		rf.started, release = gateEnqueue(t, a, prefix, &rf.refuse)
		release()
	}
}

// firstKey returns the first key started receives.
func firstKey(t *testing.T, started <-chan string) string {
	t.Helper()
	select {
	case k := <-started:
		return k
	case <-time.After(30 * time.Second):
		t.Fatal("the action was never enqueued")
		return ""
	}
}

// requireLastActions checks that the last decisions of the action stage in
// h are want's, in order, and returns them.
func requireLastActions(t *testing.T, h []Decision, want ...string) []Decision {
	t.Helper()
	var actions []Decision
	for _, d := range h {
		if d.Stage == "action" {
			actions = append(actions, d)
		}
	}
	require.GreaterOrEqual(t, len(actions), len(want), "%+v", actions)
	last := actions[len(actions)-len(want):]
	for i, w := range want {
		require.Equal(t, w, last[i].Action, "%+v", last)
	}
	return last
}

// savedState returns actions.json in dir's storage.
func savedState(t *testing.T, dir string) actionState {
	t.Helper()
	var st actionState
	_, err := readJSON(filepath.Join(dir, "data", "actions.json"), &st)
	require.NoError(t, err)
	return st
}

// savedActionKeys returns the keys of the requests in actions.json.
func savedActionKeys(t *testing.T, a *testAlertd) []string {
	t.Helper()
	var keys []string
	for _, req := range savedState(t, a.Dir).Requests {
		keys = append(keys, req.Key)
	}
	return keys
}

// An action's message goes into the outbox (a bbolt commit, flushed to the
// disk) with no lock held: while one waits on a slow disk, another alert
// is taken in and its action decided, sent and delivered, and the alerts
// and actions can be listed. Until its message is in the outbox, the
// state file does not hold the waiting request, so a crash then would
// leave no request "sent" whose message is nowhere: after a restart the
// trigger, repeated with the same key, sends it.
func TestActionEnqueueOutsideTheLocks(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls1, alert1 := driftAlert("fraud", "amount")
	ls2, alert2 := driftAlert("churn", "amount")
	key1 := "action/retrain/alert/" + ls1.Fingerprint().String() + "/"
	var (
		started <-chan string
		release func()
	)
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
actions:
  - name: retrain
    type: webhook
    url: ` + ci.URL + `/hooks/retrain
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
`
	}, func(a *Alertd) { started, release = gateEnqueue(t, a, key1, nil) })

	var wg sync.WaitGroup
	t.Cleanup(func() {
		release()
		wg.Wait()
	})
	wg.Go(func() { postAlertJSON(t, a, alert1) })
	firstKey(t, started)

	within(t, "another alert", func() {
		code, body := post(t, a.URL+"/api/v2/alerts", "application/json", "["+alert2+"]")
		require.Equal(t, http.StatusOK, code, body)
	})
	within(t, "the alerts", func() { get(t, a.URL+"/api/v1/alerts") })
	within(t, "the actions' requests", func() { get(t, a.URL+"/api/v1/actions/requests") })
	second := waitRequest(t, a, "retrain", ls2, inRequestState(stateDelivered), "the second action was not delivered while the first waited")
	require.Equal(t, second.Key, ci.requests()[0].Header.Get("Idempotency-Key"))
	first := waitRequest(t, a, "retrain", ls1, inRequestState(stateSent), "the first action was not decided")
	require.True(t, strings.HasPrefix(first.Key, key1), first.Key)
	require.Eventually(t, func() bool { return slices.Contains(savedActionKeys(t, a), second.Key) }, 30*time.Second, 10*time.Millisecond)
	require.NotContains(t, savedActionKeys(t, a), first.Key, "saved as sent before its message is in the outbox")

	release()
	waitRequest(t, a, "retrain", ls1, inRequestState(stateDelivered), "the first action was not delivered")
	require.Len(t, ci.waitRequests(t, 2), 2)
	require.Eventually(t, func() bool { return slices.Contains(savedActionKeys(t, a), first.Key) }, 30*time.Second, 10*time.Millisecond)
	v, _ := metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", "alert")
	require.Equal(t, 2.0, v)
}

// An action whose message the outbox refuses is not sent: the failure is
// in its alert's history and the log, the request is forgotten rather
// than left "sent" or holding the guardrails, and the same trigger later
// sends it.
func TestActionOutboxRefusal(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	ls, al := driftAlert("fraud", "amount")
	rf, hook := refuseEnqueue(t, "action/retrain/")
	a := startActionsAlertd(t, clock, func(string) string { return retrainConfig(ci) }, hook)
	postAlertJSON(t, a, al)
	refused := firstKey(t, rf.started)
	got := waitFor(t, a, ls, func(al alertJSON) bool { return lastOf(al.History, "action").Action == "failed" }, "no failure in the history")
	require.Contains(t, lastOf(got.History, "action").Reason, `action "retrain" (request `)
	require.Contains(t, lastOf(got.History, "action").Reason, `) not sent: `+errNoSpace.Error())
	require.Contains(t, a.logs.String(), "Failed to send an action")
	// Forgotten between the retries of the refused send (each retry, also
	// refused, holds a request for the moment of its own decision).
	require.Eventually(t, func() bool { return len(actionRequests(t, a)) == 0 }, 30*time.Second, 10*time.Millisecond, "a request the outbox refused is forgotten")
	v, _ := metric(t, a.Registry(), "alertd_actions_triggered_total", "action", "retrain", "trigger", "alert")
	require.Zero(t, v)

	// The alert taken in again (updated: the store runs its stages again
	// only then, or when it refires or is released, or after a restart):
	// the same trigger, sent this time, the cooldown not held by the
	// refused one.
	rf.refuse.Store(false)
	postAlertJSON(t, a, strings.Replace(al, "PSI 0.14", "PSI 0.15", 1))
	sent := waitRequest(t, a, "retrain", ls, inRequestState(stateDelivered), "not sent when the outbox took it")
	require.Equal(t, refused, sent.Key)
	require.Len(t, ci.waitRequests(t, 1), 1)
}

// An approved request whose message the outbox has not taken yet is kept
// awaiting approval in the state file, so a crash then leaves it to be
// approved again rather than "sent" with no message; one the outbox
// refuses awaits approval again, and the approver is told.
func TestActionApprovalOutboxRefusal(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newFakeCI(t, nil, clock.Now)
	var (
		refuse  atomic.Bool
		started <-chan string
		release func()
	)
	a := startActionsAlertd(t, clock, func(string) string {
		return classifyDrift + `
actions:
  - name: deploy
    type: argo_workflow
    url: ` + ci.URL + `
    namespace: ml
    workflow_template: retrain-and-deploy
    trigger:
      matchers: ['category="data_quality"']
    approval: {required: true, timeout: 2h}
`
	}, func(a *Alertd) { started, release = gateEnqueue(t, a, "action/deploy/", &refuse) })
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	pending := waitRequest(t, a, "deploy", ls, inRequestState(stateAwaitingApproval), "not awaiting approval")
	savedRequestState := func() string {
		t.Helper()
		st := savedState(t, a.Dir)
		require.Len(t, st.Requests, 1)
		return st.Requests[0].State
	}
	require.Eventually(t, func() bool { return savedRequestState() == stateAwaitingApproval }, 30*time.Second, 10*time.Millisecond)

	refuse.Store(true)
	code, resp := post(t, a.URL+"/api/v1/actions/requests/"+pending.ID+"/approve", "application/json", `{"by":"alice"}`)
	firstKey(t, started)
	require.Equal(t, http.StatusInternalServerError, code, resp)
	require.Contains(t, resp, `action "deploy" (request `+pending.ID+`) not sent: `+errNoSpace.Error())
	again := waitRequest(t, a, "deploy", ls, inRequestState(stateAwaitingApproval), "not awaiting approval again")
	require.Empty(t, again.DecidedBy)
	require.Nil(t, again.SentAt)
	require.Equal(t, stateAwaitingApproval, savedRequestState())

	// Approved again, its enqueue on a slow disk: the file keeps it
	// awaiting approval until the message is in the outbox.
	refuse.Store(false)
	approved := make(chan struct{})
	go func() {
		defer close(approved)
		resp, err := http.Post(a.URL+"/api/v1/actions/requests/"+pending.ID+"/approve", "application/json", strings.NewReader(`{"by":"alice"}`))
		if err != nil {
			t.Errorf("approve: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("approve: %s", resp.Status)
		}
	}()
	firstKey(t, started)
	require.Equal(t, stateSent, waitRequest(t, a, "deploy", ls, inRequestState(stateSent), "not decided").State)
	a.actions.save(clock.Now())
	require.Equal(t, stateAwaitingApproval, savedRequestState(), "saved as sent before its message is in the outbox")
	release()
	<-approved
	waitRequest(t, a, "deploy", ls, inRequestState(stateDelivered), "not delivered")
	require.Eventually(t, func() bool { return savedRequestState() == stateDelivered }, 30*time.Second, 10*time.Millisecond)
}

// A configured action's outbox metrics exist at 0 before its first
// request, as a receiver's do, so that rate() sees its first delivery and
// an alert on dead letters its first one; an action a reload adds gets
// them at the reload, and one a reload removes loses them.
func TestActionOutboxMetricsAtZero(t *testing.T) {
	t.Parallel()
	cfg := func(names ...string) string {
		s := "actions:\n"
		for _, n := range names {
			s += fmt.Sprintf("  - name: %s\n    type: webhook\n    url: http://127.0.0.1:1/\n    secret: s\n    trigger:\n      matchers: ['action=%q']\n", n, n)
		}
		return s
	}
	type series struct {
		name   string
		labels []string
	}
	seriesOf := func(action string) []series {
		lane := []string{"receiver", action, "integration", integrationAction}
		entry := append(slices.Clone(lane), "entry", "0")
		return []series{
			{"alertd_outbox_messages_enqueued_total", lane},
			{"alertd_outbox_duplicates_total", append(slices.Clone(lane), "state", "dead_lettered")},
			{"alertd_outbox_delivery_failures_total", append(slices.Clone(lane), "reason", "http_5xx")},
			{"alertd_outbox_delivery_duration_seconds", lane}, // found, not its value
			{"alertd_outbox_deliveries_total", append(slices.Clone(entry), "result", "delivered")},
			{"alertd_outbox_deliveries_total", append(slices.Clone(entry), "result", "dead_lettered")},
			{"alertd_outbox_queue_depth", entry},
			{"alertd_outbox_oldest_pending_age_seconds", entry},
			{"alertd_outbox_dead_letters", entry},
		}
	}
	requireAtZero := func(a *testAlertd, action string) {
		t.Helper()
		for _, m := range seriesOf(action) {
			v, ok := metric(t, a.Registry(), m.name, m.labels...)
			require.True(t, ok, "%s%v is not pre-created", m.name, m.labels)
			require.Zero(t, v, "%s%v", m.name, m.labels)
		}
	}

	a := startAlertd(t, cfg("retrain"), nil, nil)
	requireAtZero(a, "retrain")

	writeFile(t, a.Dir, "alertd.yml", cfg("retrain", "deploy"))
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	requireAtZero(a, "deploy")

	writeFile(t, a.Dir, "alertd.yml", cfg("deploy"))
	code, body = post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	requireAtZero(a, "deploy")
	for _, m := range seriesOf("retrain") {
		_, ok := metric(t, a.Registry(), m.name, m.labels...)
		require.False(t, ok, "%s%v of the removed action is still exposed", m.name, m.labels)
	}
}

// A 302 to an action's POST makes the client follow with a GET without
// the body: whatever answers it 200 (a login page, a moved CI's front
// page) triggered nothing, and the request fails for good saying where it
// was redirected, rather than counting as delivered.
func TestActionRedirectedToGet(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	var gets atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
		}
	}))
	t.Cleanup(target.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/login", http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	cfg := githubRetrain(redirect.URL, "")
	a := startActionsAlertd(t, clock, func(string) string { return cfg }, nil)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	failed := waitRequest(t, a, "retrain", ls, inRequestState(stateFailed), "not failed")
	require.Equal(t, "redirected (302) to "+target.URL+", which the client followed with a GET without the request: configure the URL it redirects to", failed.LastError)
	require.Equal(t, int32(1), gets.Load())
}
