package actions

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/require"
)

func mustTemplates(t *testing.T, in map[string]string) map[string]*template.Template {
	t.Helper()
	out := map[string]*template.Template{}
	for k, v := range in {
		tmpl, err := ParseTemplate(k, v)
		require.NoError(t, err)
		out[k] = tmpl
	}
	return out
}

// Each preset's request: method, URL, headers and body, and what HTTP adds
// when sending (credentials, idempotency key).
func TestPresetRequests(t *testing.T) {
	now := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	data := Data{Action: "retrain", Trigger: "alert", Key: "action/retrain/alert/abc/1", Time: now,
		Labels: map[string]string{"model": "fraud", "version": "v7", "alertname": "ModelFeatureDrift", "category": "data_quality", "action": "retrain", "feature": "amount"},
		Alerts: []string{"0123456789abcdef"}}
	creds := Credentials{Token: "ghp_s3cr3t", TriggerToken: "glptt-s3cr3t", Secret: "whs3cr3t"}
	for _, tc := range []struct {
		name   string
		target Target
		creds  Credentials
		url    string
		header map[string]string
		body   string
	}{
		{
			name:   "github repository_dispatch, default client_payload",
			target: Target{Type: TypeGitHubRepositoryDispatch, URL: "https://api.github.com", Repository: "acme/models", EventType: "retrain"},
			creds:  creds,
			url:    "https://api.github.com/repos/acme/models/dispatches",
			header: map[string]string{"Accept": "application/vnd.github+json", "X-Github-Api-Version": "2022-11-28", "Authorization": "Bearer ghp_s3cr3t", "Content-Type": "application/json"},
			body:   `{"event_type":"retrain","client_payload":{"action":"retrain","alertname":"ModelFeatureDrift","category":"data_quality","idempotency_key":"action/retrain/alert/abc/1","model":"fraud","modelmon_action":"retrain","trigger":"alert","version":"v7"}}`,
		},
		{
			name: "github workflow_dispatch, inputs",
			target: Target{Type: TypeGitHubWorkflowDispatch, URL: "https://github.example/api/v3/", Repository: "acme/models", Workflow: "retrain.yml", Ref: "main",
				Inputs: mustTemplates(t, map[string]string{"model": "{{ .Labels.model }}", "reason": "{{ .Labels.alertname }} on {{ .Labels.feature }}"})},
			creds:  creds,
			url:    "https://github.example/api/v3/repos/acme/models/actions/workflows/retrain.yml/dispatches",
			header: map[string]string{"Accept": "application/vnd.github+json", "X-Github-Api-Version": "2022-11-28", "Authorization": "Bearer ghp_s3cr3t"},
			body:   `{"ref":"main","inputs":{"model":"fraud","reason":"ModelFeatureDrift on amount"}}`,
		},
		{
			name:   "github workflow_dispatch, no inputs",
			target: Target{Type: TypeGitHubWorkflowDispatch, URL: "https://api.github.com", Repository: "acme/models", Workflow: "123456", Ref: "v1.2"},
			creds:  creds,
			url:    "https://api.github.com/repos/acme/models/actions/workflows/123456/dispatches",
			body:   `{"ref":"v1.2"}`,
		},
		{
			name: "gitlab pipeline trigger",
			target: Target{Type: TypeGitLabPipeline, URL: "https://gitlab.com", Project: "acme/ml/models", Ref: "main",
				Inputs: mustTemplates(t, map[string]string{"MODEL": "{{ .Labels.model }}"})},
			creds:  creds,
			url:    "https://gitlab.com/api/v4/projects/acme%2Fml%2Fmodels/trigger/pipeline",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""},
			body:   `token=glptt-s3cr3t&ref=main&variables%5BMODEL%5D=fraud`,
		},
		{
			name: "argo workflow from template",
			target: Target{Type: TypeArgoWorkflow, URL: "https://argo.example:2746", Namespace: "ml", WorkflowTemplate: "retrain",
				Inputs: mustTemplates(t, map[string]string{"model": "{{ .Labels.model }}", "version": "{{ .Labels.version }}"})},
			creds:  Credentials{Token: "argo-token"},
			url:    "https://argo.example:2746/api/v1/workflows/ml/submit",
			header: map[string]string{"Authorization": "Bearer argo-token", "Content-Type": "application/json"},
			body:   `{"namespace":"ml","resourceKind":"WorkflowTemplate","resourceName":"retrain","submitOptions":{"name":"` + ArgoWorkflowName("retrain", data.Key) + `","parameters":["model=fraud","version=v7"]}}`,
		},
		{
			name:   "airflow dag run, basic auth",
			target: Target{Type: TypeAirflowDAGRun, URL: "http://airflow:8080/", DAGID: "retrain_fraud", Inputs: mustTemplates(t, map[string]string{"model": "{{ .Labels.model }}"})},
			creds:  Credentials{Username: "alertd", Token: "pw"},
			url:    "http://airflow:8080/api/v1/dags/retrain_fraud/dagRuns",
			header: map[string]string{"Authorization": "Basic YWxlcnRkOnB3"},
			body:   `{"dag_run_id":"` + AirflowRunID(data.Key) + `","conf":{"model":"fraud"}}`,
		},
		{
			name:   "webhook, default body",
			target: Target{Type: TypeWebhook, URL: "https://ci.example/hooks/modelmon"},
			creds:  Credentials{Secret: "whs3cr3t"},
			url:    "https://ci.example/hooks/modelmon",
			header: map[string]string{"Authorization": "", HeaderTimestamp: "1748944800"},
			body: `{"action":"retrain","trigger":"alert","idempotency_key":"action/retrain/alert/abc/1","time":"2025-06-03T10:00:00Z",` +
				`"labels":{"action":"retrain","alertname":"ModelFeatureDrift","category":"data_quality","feature":"amount","model":"fraud","version":"v7"},` +
				`"alerts":["0123456789abcdef"],"inputs":{"action":"retrain","alertname":"ModelFeatureDrift","category":"data_quality","idempotency_key":"action/retrain/alert/abc/1","model":"fraud","modelmon_action":"retrain","trigger":"alert","version":"v7"}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.target.Build(data)
			require.NoError(t, err)
			req, err := r.HTTP(context.Background(), tc.creds, data.Key, now)
			require.NoError(t, err)
			require.Equal(t, http.MethodPost, req.Method)
			require.Equal(t, tc.url, req.URL.String())
			require.Equal(t, data.Key, req.Header.Get("Idempotency-Key"))
			require.Equal(t, "modelmon-alertd", req.Header.Get("User-Agent"))
			for k, v := range tc.header {
				require.Equal(t, v, req.Header.Get(k), "header %s", k)
			}
			b, err := io.ReadAll(req.Body)
			require.NoError(t, err)
			if strings.HasPrefix(tc.body, "{") {
				require.JSONEq(t, tc.body, string(b))
			} else {
				require.Equal(t, tc.body, string(b))
			}
			// What the outbox keeps has no secret.
			stored, err := json.Marshal(r)
			require.NoError(t, err)
			for _, s := range []string{"ghp_s3cr3t", "glptt-s3cr3t", "whs3cr3t", "argo-token"} {
				require.NotContains(t, string(stored), s)
			}
			if tc.target.Type == TypeWebhook {
				require.NoError(t, Verify("whs3cr3t", req.Header, b, now))
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	d := Data{Labels: map[string]string{"model": "m"}}
	in := map[string]string{}
	for _, k := range strings.Split("a b c d e f g h i j k", " ") {
		in[k] = "x"
	}
	_, err := (&Target{Type: TypeGitHubRepositoryDispatch, Inputs: mustTemplates(t, in)}).Build(d)
	require.EqualError(t, err, "client_payload has 11 properties, GitHub accepts at most 10")
	bad, err := ParseTemplate("payload", `{"model": {{ .Labels.model }}}`)
	require.NoError(t, err)
	_, err = (&Target{Type: TypeWebhook, URL: "http://x", Payload: bad}).Build(d)
	require.EqualError(t, err, "the payload template did not render valid JSON")
	good, err := ParseTemplate("payload", `{"model": {{ json .Labels.model }}, "missing": {{ json .Labels.nope }}}`)
	require.NoError(t, err)
	r, err := (&Target{Type: TypeWebhook, URL: "http://x", Payload: good}).Build(d)
	require.NoError(t, err)
	require.JSONEq(t, `{"model":"m","missing":""}`, r.Body)
}

// The signed webhook: a valid request, a bad signature, a stale one and
// a replay.
func TestSignature(t *testing.T) {
	now := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	body := []byte(`{"action":"retrain"}`)
	ts, sig := Sign("s3cr3t", body, now)
	require.Equal(t, "1748944800", ts)
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, sig)

	t.Run("valid", func(t *testing.T) {
		require.NoError(t, Verify("s3cr3t", h, body, now))
		require.NoError(t, Verify("s3cr3t", h, body, now.Add(4*time.Minute)), "within 5 minutes")
	})
	t.Run("bad signature", func(t *testing.T) {
		require.ErrorIs(t, Verify("other", h, body, now), ErrBadSignature)
		require.ErrorIs(t, Verify("s3cr3t", h, []byte(`{"action":"deploy"}`), now), ErrBadSignature, "body changed")
		h2 := h.Clone()
		h2.Set(HeaderTimestamp, "1748944801")
		require.ErrorIs(t, Verify("s3cr3t", h2, body, now), ErrBadSignature, "timestamp changed")
		h2 = h.Clone()
		h2.Set(HeaderSignature, strings.TrimPrefix(sig, "sha256="))
		require.ErrorIs(t, Verify("s3cr3t", h2, body, now), ErrBadSignature, "no sha256= prefix")
		require.ErrorIs(t, Verify("s3cr3t", http.Header{}, body, now), ErrNoSignature)
	})
	t.Run("stale", func(t *testing.T) {
		err := Verify("s3cr3t", h, body, now.Add(5*time.Minute+time.Second))
		require.ErrorIs(t, err, ErrStale)
		require.EqualError(t, err, "signed at 2025-06-03T10:00:00Z, 5m1s from now: signature timestamp outside the accepted window")
		require.ErrorIs(t, Verify("s3cr3t", h, body, now.Add(-6*time.Minute)), ErrStale, "from the future")
	})
	t.Run("replayed", func(t *testing.T) {
		v := &Verifier{Secret: "s3cr3t"}
		require.NoError(t, v.Verify(h, body, now))
		require.ErrorIs(t, v.Verify(h, body, now.Add(time.Minute)), ErrReplayed)
		require.ErrorIs(t, v.Verify(h, body, now.Add(10*time.Minute)), ErrStale, "later, the timestamp gives it away")
		// A retry is signed anew, with the same idempotency key.
		ts2, sig2 := Sign("s3cr3t", body, now.Add(time.Minute))
		h2 := http.Header{}
		h2.Set(HeaderTimestamp, ts2)
		h2.Set(HeaderSignature, sig2)
		require.NoError(t, v.Verify(h2, body, now.Add(time.Minute)))
	})
}

func TestGuard(t *testing.T) {
	now := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	g := Guard{Cooldown: time.Hour, DailyBudget: 3}
	require.Nil(t, g.Check("fraud", nil, now))

	past := []Attempt{{Model: "fraud", Time: now.Add(-30 * time.Minute)}}
	r := g.Check("fraud", past, now)
	require.Equal(t, ReasonCooldown, r.Reason)
	require.Equal(t, now.Add(30*time.Minute), r.Until)
	require.Equal(t, `cooldown: triggered for model "fraud" at 2025-06-03T09:30:00Z, less than the cooldown of 1h0m0s ago; allowed again at 2025-06-03T10:30:00Z`, r.Detail)
	require.Nil(t, g.Check("churn", past, now), "the cooldown is per model")
	require.Nil(t, g.Check("fraud", past, now.Add(30*time.Minute)), "over at its end")

	// Three today (UTC), one yesterday: the budget of 3 is used up.
	past = []Attempt{
		{Model: "a", Time: now.Add(-11 * time.Hour)}, // yesterday 23:00
		{Model: "b", Time: now.Add(-9 * time.Hour)},
		{Model: "c", Time: now.Add(-5 * time.Hour)},
		{Model: "d", Time: now.Add(-2 * time.Hour)},
	}
	require.Equal(t, 3, UsedToday(past, now))
	r = g.Check("e", past, now)
	require.Equal(t, ReasonBudget, r.Reason)
	require.Equal(t, time.Date(2025, 6, 4, 0, 0, 0, 0, time.UTC), r.Until)
	require.Equal(t, "budget: triggered 3 times today (UTC), the daily budget is 3; allowed again at 2025-06-04T00:00:00Z", r.Detail)
	require.Nil(t, g.Check("e", past, time.Date(2025, 6, 4, 0, 0, 0, 0, time.UTC)), "a new UTC day")
	require.Equal(t, ReasonCooldown, Guard{Cooldown: 3 * time.Hour, DailyBudget: 3}.Check("d", past, now).Reason, "cooldown first")
	require.Nil(t, Guard{DailyBudget: 10}.Check("d", past, now), "no cooldown")
}

func TestScheduleSlot(t *testing.T) {
	s := Schedule{Every: 24 * time.Hour, Offset: 2 * time.Hour}
	require.Equal(t, time.Date(2025, 6, 3, 2, 0, 0, 0, time.UTC), s.Slot(time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)))
	require.Equal(t, time.Date(2025, 6, 2, 2, 0, 0, 0, time.UTC), s.Slot(time.Date(2025, 6, 3, 1, 59, 0, 0, time.UTC)))
	require.Equal(t, time.Date(2025, 6, 3, 2, 0, 0, 0, time.UTC), s.Slot(time.Date(2025, 6, 3, 2, 0, 0, 0, time.UTC)), "a slot starts at its time")
	h := Schedule{Every: time.Hour}
	require.Equal(t, time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC), h.Slot(time.Date(2025, 6, 3, 10, 59, 59, 0, time.UTC)))
	require.Equal(t, time.Unix(-3600, 0).UTC(), h.Slot(time.Unix(-1, 0)), "before the epoch")
}

func TestVerifyOutcome(t *testing.T) {
	start := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	require.Equal(t, VerifyPending, VerifyOutcome(start, 30*time.Minute, false, start.Add(29*time.Minute)))
	require.Equal(t, VerifyResolved, VerifyOutcome(start, 30*time.Minute, true, start.Add(29*time.Minute)))
	require.Equal(t, VerifyFailed, VerifyOutcome(start, 30*time.Minute, false, start.Add(30*time.Minute)))
}

func TestCheck(t *testing.T) {
	now := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	resp := func(code int, h ...string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if len(h) == 2 {
			r.Header.Set(h[0], h[1])
		}
		return r
	}
	require.NoError(t, Check(TypeGitHubRepositoryDispatch, resp(204), nil, now))
	require.NoError(t, Check(TypeGitLabPipeline, resp(201), nil, now))
	require.NoError(t, Check(TypeAirflowDAGRun, resp(409), nil, now), "the run exists already")
	require.NoError(t, Check(TypeArgoWorkflow, resp(409), []byte("exists"), now), "the workflow exists already")
	var se *StatusError
	require.ErrorAs(t, Check(TypeGitLabPipeline, resp(409), []byte("exists"), now), &se)
	require.False(t, se.Retry)
	require.ErrorAs(t, Check(TypeGitHubWorkflowDispatch, resp(422), []byte(`{"message":"Unexpected inputs provided"}`), now), &se)
	require.False(t, se.Retry)
	require.EqualError(t, se, `unexpected status 422: {"message":"Unexpected inputs provided"}`)
	require.ErrorAs(t, Check(TypeWebhook, resp(503, "Retry-After", "120"), nil, now), &se)
	require.True(t, se.Retry)
	require.Equal(t, 2*time.Minute, se.RetryAfter)
	require.ErrorAs(t, Check(TypeWebhook, resp(429, "Retry-After", now.Add(time.Minute).Format(http.TimeFormat)), nil, now), &se)
	require.Equal(t, time.Minute, se.RetryAfter)
	require.ErrorAs(t, Check(TypeWebhook, resp(500), nil, now), &se)
	require.True(t, se.Retry)
	require.Zero(t, se.RetryAfter)
}

// GitHub answers a rate-limited request 403 (or 429), as its REST API's
// troubleshooting page says: x-ratelimit-remaining 0 with
// x-ratelimit-reset for the primary limit, retry-after or only a message
// for a secondary one. Those are retried when GitHub says; a 403 for
// missing permissions is not.
func TestCheckGitHubRateLimit(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	type reply struct {
		status int
		header map[string]string
		body   string
	}
	f := func(r reply, retry bool, after time.Duration) {
		t.Helper()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			for k, v := range r.header {
				w.Header().Set(k, v)
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(r.status)
			_, _ = io.WriteString(w, r.body)
		}))
		defer srv.Close()
		req, err := (&Request{Type: TypeGitHubRepositoryDispatch, Method: http.MethodPost, URL: srv.URL + "/repos/acme/models/dispatches", Body: "{}"}).
			HTTP(context.Background(), Credentials{Token: "ghp_x"}, "k", now)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var se *StatusError
		require.ErrorAs(t, Check(TypeGitHubRepositoryDispatch, resp, body, now), &se)
		require.Equal(t, retry, se.Retry, "retry")
		require.Equal(t, after, se.RetryAfter, "retry after")
	}
	reset := strconv.FormatInt(now.Add(17*time.Minute).Unix(), 10)
	f(reply{403, map[string]string{"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
		`{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}`},
		true, 17*time.Minute)
	f(reply{429, map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, `{"message":"API rate limit exceeded"}`},
		true, 17*time.Minute)
	f(reply{403, map[string]string{"Retry-After": "60", "X-RateLimit-Remaining": "4990"},
		`{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`},
		true, time.Minute)
	f(reply{403, map[string]string{"X-RateLimit-Remaining": "4990"},
		`{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`},
		true, time.Minute)
	f(reply{403, map[string]string{"X-RateLimit-Remaining": "4990"},
		`{"message":"Resource not accessible by personal access token","status":"403"}`},
		false, 0)
}

// An Argo workflow's name is a DNS-1123 subdomain of at most 63 characters,
// the same for the same key and template, and another for another key.
func TestArgoWorkflowName(t *testing.T) {
	dns1123 := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	for _, tmpl := range []string{"retrain", "Retrain_Fraud.v2", strings.Repeat("x", 80), "---", "", "a-"} {
		name := ArgoWorkflowName(tmpl, "key-1")
		require.Regexp(t, dns1123, name, tmpl)
		require.LessOrEqual(t, len(name), 63, tmpl)
		require.Equal(t, name, ArgoWorkflowName(tmpl, "key-1"), tmpl)
		require.NotEqual(t, name, ArgoWorkflowName(tmpl, "key-2"), tmpl)
	}
	require.True(t, strings.HasPrefix(ArgoWorkflowName("Retrain_Fraud.v2", "k"), "retrain-fraud-v2-"))
	require.True(t, strings.HasPrefix(ArgoWorkflowName("", "k"), "modelmon-"))
}
