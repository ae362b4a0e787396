package actions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// The types of actions: one preset per CI system, and the generic signed
// webhook.
const (
	// TypeGitHubRepositoryDispatch creates a repository_dispatch event:
	// POST {url}/repos/{owner}/{repo}/dispatches with event_type and
	// client_payload (at most 10 top-level properties); GitHub answers 204.
	TypeGitHubRepositoryDispatch = "github_repository_dispatch"
	// TypeGitHubWorkflowDispatch runs a workflow with a workflow_dispatch
	// trigger: POST {url}/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches
	// with ref and inputs (which the workflow must declare); GitHub answers 204.
	TypeGitHubWorkflowDispatch = "github_workflow_dispatch"
	// TypeGitLabPipeline triggers a pipeline with a trigger token:
	// POST {url}/api/v4/projects/{id}/trigger/pipeline, form fields token,
	// ref and variables[KEY]; GitLab answers 201.
	TypeGitLabPipeline = "gitlab_pipeline"
	// TypeArgoWorkflow submits a workflow from a WorkflowTemplate through
	// the Argo Server: POST {url}/api/v1/workflows/{namespace}/submit with
	// resourceKind, resourceName and submitOptions.parameters ("name=value").
	// submitOptions.name derives from the idempotency key (ArgoWorkflowName),
	// so the Argo Server answers a repeat with 409 (the workflow exists),
	// which counts as delivered.
	TypeArgoWorkflow = "argo_workflow"
	// TypeAirflowDAGRun triggers a DAG run through Airflow 2's stable REST
	// API: POST {url}/api/v1/dags/{dag_id}/dagRuns with dag_run_id and conf.
	// The dag_run_id derives from the idempotency key, so Airflow itself
	// answers a repeat with 409, which counts as delivered.
	TypeAirflowDAGRun = "airflow_dag_run"
	// TypeWebhook posts JSON to any URL, signed (see Sign and Verify).
	TypeWebhook = "webhook"
)

// Types returns the action types.
func Types() []string {
	return []string{TypeGitHubRepositoryDispatch, TypeGitHubWorkflowDispatch, TypeGitLabPipeline, TypeArgoWorkflow, TypeAirflowDAGRun, TypeWebhook}
}

// Idempotent reports whether the receiver of an action of type typ drops
// a repeat of a request with the same idempotency key, so that resending
// one whose outcome is unknown (sent in full, no answer before the
// timeout) cannot start a second run: Airflow refuses a second DAG run
// with the same dag_run_id, and Kubernetes, under the Argo Server, a
// second workflow of the same name (both 409, taken as delivered); the
// generic webhook's receivers are asked to keep the Idempotency-Keys they
// acted on. GitHub's dispatches and GitLab's pipeline trigger document no
// idempotency (and ignore Idempotency-Key): a repeat runs again.
func Idempotent(typ string) bool {
	return typ == TypeAirflowDAGRun || typ == TypeArgoWorkflow || typ == TypeWebhook
}

// DefaultURL returns the API base URL a type defaults to; "" when the
// type has none and the URL is required.
func DefaultURL(typ string) string {
	switch typ {
	case TypeGitHubRepositoryDispatch, TypeGitHubWorkflowDispatch:
		return "https://api.github.com"
	case TypeGitLabPipeline:
		return "https://gitlab.com"
	}
	return ""
}

// GitHubMaxClientPayload is the most top-level properties GitHub accepts
// in a repository_dispatch client_payload (its REST API description,
// maxProperties: 10).
const GitHubMaxClientPayload = 10

// Headers every request carries.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	userAgent            = "modelmon-alertd"
)

// Data is what the input and payload templates see.
type Data struct {
	// Action is the action's name; Trigger what triggered it: alert,
	// escalation, schedule or rollback.
	Action  string
	Trigger string
	// Key is the idempotency key of the delivery.
	Key string
	// Time is when the action was triggered.
	Time time.Time
	// Labels are the labels of the alert that triggered the action (the
	// labels all its alerts share, for an escalation), with the
	// classifier's category, priority and action in place of labels of
	// those names; a schedule's configured labels.
	Labels map[string]string
	// Alerts are the fingerprints of the alerts that triggered it.
	Alerts []string
}

// defaultLabels are the labels the default inputs carry, when present.
var defaultLabels = []string{"model", "version", "alertname", "category", "action"}

// defaultInputs are the inputs of a type whose receiver accepts any keys,
// when none are configured: the labels above, the action's name, the
// trigger and the idempotency key.
func defaultInputs(d Data) map[string]string {
	in := map[string]string{"modelmon_action": d.Action, "trigger": d.Trigger, "idempotency_key": d.Key}
	for _, l := range defaultLabels {
		if v := d.Labels[l]; v != "" {
			in[l] = v
		}
	}
	return in
}

// Target is a configured action: where its requests go and what they
// carry. Secrets are not part of it; Request.HTTP adds them when sending.
type Target struct {
	Name string
	Type string
	// URL is the API's base URL (the full URL for a webhook).
	URL string
	// Repository is "owner/name" (GitHub); EventType the
	// repository_dispatch event type; Workflow the workflow file name or
	// id; Ref the branch or tag (GitHub workflow_dispatch, GitLab).
	Repository, EventType, Workflow, Ref string
	// Project is the GitLab project's id or path.
	Project string
	// Namespace and WorkflowTemplate name the Argo WorkflowTemplate.
	Namespace, WorkflowTemplate string
	// DAGID names the Airflow DAG.
	DAGID string
	// Inputs are templates of the client_payload, workflow inputs,
	// pipeline variables, workflow parameters or DAG run conf, by key;
	// nil takes the defaults where the receiver accepts any key.
	Inputs map[string]*template.Template
	// Payload is the template of a webhook's JSON body; nil sends the
	// default body.
	Payload *template.Template
}

// ParseTemplate parses an input or payload template. Templates see Data;
// a missing label is empty, and the json function quotes a value as JSON.
func ParseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=zero").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(text)
}

// Request is an HTTP request of an action as the outbox keeps it: no
// secrets, no signature. HTTP adds them at each attempt.
type Request struct {
	Type   string            `json:"type"`
	Method string            `json:"method"`
	URL    string            `json:"url"`
	Header map[string]string `json:"header"`
	Body   string            `json:"body"`
}

// Build renders the request of a trigger.
func (t *Target) Build(d Data) (*Request, error) {
	in, err := t.inputs(d)
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(t.URL, "/")
	r := &Request{Type: t.Type, Method: http.MethodPost, Header: map[string]string{"Content-Type": "application/json", "Accept": "application/json"}}
	var body any
	switch t.Type {
	case TypeGitHubRepositoryDispatch:
		if in == nil {
			in = defaultInputs(d)
		}
		if len(in) > GitHubMaxClientPayload {
			return nil, fmt.Errorf("client_payload has %d properties, GitHub accepts at most %d", len(in), GitHubMaxClientPayload)
		}
		r.URL = base + "/repos/" + t.Repository + "/dispatches"
		body = struct {
			EventType     string            `json:"event_type"`
			ClientPayload map[string]string `json:"client_payload"`
		}{t.EventType, in}
		githubHeaders(r)
	case TypeGitHubWorkflowDispatch:
		r.URL = base + "/repos/" + t.Repository + "/actions/workflows/" + url.PathEscape(t.Workflow) + "/dispatches"
		body = struct {
			Ref    string            `json:"ref"`
			Inputs map[string]string `json:"inputs,omitempty"`
		}{t.Ref, in}
		githubHeaders(r)
	case TypeGitLabPipeline:
		if in == nil {
			in = map[string]string{}
			for k, v := range defaultInputs(d) {
				in["MODELMON_"+strings.ToUpper(k)] = v
			}
		}
		r.URL = base + "/api/v4/projects/" + url.PathEscape(t.Project) + "/trigger/pipeline"
		r.Header["Content-Type"] = "application/x-www-form-urlencoded"
		form := url.Values{"ref": {t.Ref}}
		for k, v := range in {
			form.Set("variables["+k+"]", v)
		}
		r.Body = form.Encode()
		return r, nil
	case TypeArgoWorkflow:
		params := []string{}
		for _, k := range slices.Sorted(maps.Keys(in)) {
			params = append(params, k+"="+in[k])
		}
		r.URL = base + "/api/v1/workflows/" + url.PathEscape(t.Namespace) + "/submit"
		type submitOptions struct {
			Name       string   `json:"name"`
			Parameters []string `json:"parameters"`
		}
		body = struct {
			Namespace     string        `json:"namespace"`
			ResourceKind  string        `json:"resourceKind"`
			ResourceName  string        `json:"resourceName"`
			SubmitOptions submitOptions `json:"submitOptions"`
		}{t.Namespace, "WorkflowTemplate", t.WorkflowTemplate, submitOptions{ArgoWorkflowName(t.WorkflowTemplate, d.Key), params}}
	case TypeAirflowDAGRun:
		if in == nil {
			in = defaultInputs(d)
		}
		r.URL = base + "/api/v1/dags/" + url.PathEscape(t.DAGID) + "/dagRuns"
		body = struct {
			DAGRunID string            `json:"dag_run_id"`
			Conf     map[string]string `json:"conf"`
		}{AirflowRunID(d.Key), in}
	case TypeWebhook:
		r.URL = t.URL
		if t.Payload != nil {
			var b bytes.Buffer
			if err := t.Payload.Execute(&b, d); err != nil {
				return nil, fmt.Errorf("couldn't render the payload: %w", err)
			}
			if !json.Valid(b.Bytes()) {
				return nil, errors.New("the payload template did not render valid JSON")
			}
			r.Body = b.String()
			return r, nil
		}
		if in == nil {
			in = defaultInputs(d)
		}
		body = struct {
			Action  string            `json:"action"`
			Trigger string            `json:"trigger"`
			Key     string            `json:"idempotency_key"`
			Time    time.Time         `json:"time"`
			Labels  map[string]string `json:"labels"`
			Alerts  []string          `json:"alerts"`
			Inputs  map[string]string `json:"inputs"`
		}{d.Action, d.Trigger, d.Key, d.Time.UTC(), nonNil(d.Labels), nonNilSlice(d.Alerts), in}
	default:
		return nil, fmt.Errorf("unknown action type %q", t.Type)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	r.Body = string(b)
	return r, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// githubHeaders sets the media type and API version GitHub's REST API
// documents for every request.
func githubHeaders(r *Request) {
	r.Header["Accept"] = "application/vnd.github+json"
	r.Header["X-GitHub-Api-Version"] = "2022-11-28"
}

// inputs renders the input templates; nil when none are configured.
func (t *Target) inputs(d Data) (map[string]string, error) {
	if t.Inputs == nil {
		return nil, nil
	}
	out := make(map[string]string, len(t.Inputs))
	for k, tmpl := range t.Inputs {
		var b strings.Builder
		if err := tmpl.Execute(&b, d); err != nil {
			return nil, fmt.Errorf("couldn't render input %q: %w", k, err)
		}
		out[k] = b.String()
	}
	return out, nil
}

// AirflowRunID is the dag_run_id of the delivery with this idempotency key:
// Airflow's run ids allow only [A-Za-z0-9_.~:+-], and a repeat of the same
// id is refused with 409, which makes the trigger idempotent at Airflow too.
func AirflowRunID(key string) string {
	h := sha256.Sum256([]byte(key))
	return "modelmon-" + hex.EncodeToString(h[:12])
}

// ArgoWorkflowName is the name of the workflow that the delivery with this
// idempotency key submits from the WorkflowTemplate template: the
// template's name, cut to 40 characters, then 16 hex digits of the key's
// hash. Kubernetes refuses a second workflow of the same name, which the
// Argo Server answers with 409, so a repeat starts no second run (while
// the first workflow exists: one deleted, by its TTL say, runs again). The
// name is a DNS-1123 subdomain within the 63 characters a label value
// takes, as Argo gives the workflow's name to its pods' labels.
func ArgoWorkflowName(template, key string) string {
	prefix := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, template)
	prefix = strings.Trim(prefix[:min(len(prefix), 40)], "-")
	h := sha256.Sum256([]byte(key))
	if prefix == "" {
		prefix = "modelmon"
	}
	return prefix + "-" + hex.EncodeToString(h[:8])
}

// Credentials are an action's secrets, read when sending.
type Credentials struct {
	// Token is sent as a bearer token (GitHub, Argo, Airflow, webhook), or
	// as the password of basic auth with Username (Airflow).
	Token    string
	Username string
	// TriggerToken is GitLab's pipeline trigger token.
	TriggerToken string
	// Secret signs a webhook's body.
	Secret string
}

// HTTP returns the request to send now: r with the credentials, the
// idempotency key and, for a webhook, the signature of its body at now.
func (r *Request) HTTP(ctx context.Context, c Credentials, key string, now time.Time) (*http.Request, error) {
	body := r.Body
	if r.Type == TypeGitLabPipeline {
		body = url.Values{"token": {c.TriggerToken}}.Encode() + "&" + body
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderIdempotencyKey, key)
	switch {
	case r.Type == TypeGitLabPipeline:
		// The trigger token, in the body, is the only credential.
	case c.Username != "":
		req.SetBasicAuth(c.Username, c.Token)
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if r.Type == TypeWebhook {
		ts, sig := Sign(c.Secret, []byte(body), now)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, sig)
	}
	return req, nil
}

// StatusError is a response that did not deliver the action.
type StatusError struct {
	Status int
	// Body is the start of the response's body.
	Body string
	// Retry says whether a later attempt may succeed (429, 5xx, 408);
	// RetryAfter is the receiver's Retry-After, if it gave one.
	Retry      bool
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("unexpected status %d", e.Status)
	}
	return fmt.Sprintf("unexpected status %d: %s", e.Status, e.Body)
}

// Check classifies a response of an action of type typ at now: nil when it
// delivered the action (2xx; 409 from Airflow or the Argo Server, whose
// run or workflow with this id or name exists already), else a *StatusError, to retry for 408, 429, 5xx and
// GitHub's rate limits (a 403 too), after the time the receiver asks.
func Check(typ string, resp *http.Response, body []byte, now time.Time) error {
	if resp.StatusCode/100 == 2 || ((typ == TypeAirflowDAGRun || typ == TypeArgoWorkflow) && resp.StatusCode == http.StatusConflict) {
		return nil
	}
	e := &StatusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	if len(e.Body) > 512 {
		e.Body = e.Body[:512] + "…"
	}
	switch {
	case isGitHub(typ) && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests) &&
		githubRateLimited(resp.Header, body):
		e.Retry = true
		e.RetryAfter = githubRetryAfter(resp.Header, now)
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode >= 500:
		e.Retry = true
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

func isGitHub(typ string) bool {
	return typ == TypeGitHubRepositoryDispatch || typ == TypeGitHubWorkflowDispatch
}

// githubRateLimited reports whether a 403 or 429 of GitHub's REST API is
// a rate limit, as its troubleshooting page describes them: the primary
// limit sets x-ratelimit-remaining to 0, a secondary one sets retry-after
// or only says so in its message. Any other 403 (a token without the
// permission) is not.
func githubRateLimited(h http.Header, body []byte) bool {
	return h.Get("X-RateLimit-Remaining") == "0" || h.Get("Retry-After") != "" ||
		strings.Contains(strings.ToLower(string(body)), "rate limit")
}

// githubRetryAfter is when GitHub's REST API says to retry a rate-limited
// request: after retry-after, else at x-ratelimit-reset when no request
// remains, else in a minute.
func githubRetryAfter(h http.Header, now time.Time) time.Duration {
	if d := retryAfter(h.Get("Retry-After"), now); d > 0 {
		return d
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil && time.Unix(s, 0).After(now) {
			return time.Unix(s, 0).Sub(now)
		}
	}
	return time.Minute
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
