package alertd

import (
	"bufio"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	act "github.com/modelmon/modelmon/internal/actions"
	"github.com/modelmon/modelmon/internal/outbox"
)

// slowCI reads each request in full and counts it; while slow is set it
// answers only after wait (longer than the action's timeout), else at
// once with status.
type slowCI struct {
	URL    string
	slow   atomic.Bool
	status int
	wait   time.Duration
	mu     sync.Mutex
	bodies []string
}

func newSlowCI(t *testing.T, status int, wait time.Duration) *slowCI {
	t.Helper()
	ci := &slowCI{status: status, wait: wait}
	ci.slow.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ci.mu.Lock()
		ci.bodies = append(ci.bodies, string(b))
		ci.mu.Unlock()
		if ci.slow.Load() {
			select {
			case <-time.After(ci.wait):
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(ci.status)
	}))
	t.Cleanup(srv.Close)
	ci.URL = srv.URL
	return ci
}

func (ci *slowCI) got() []string {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return append([]string(nil), ci.bodies...)
}

// A request sent in full whose answer does not come within the action's
// timeout is not retried when the CI has no idempotency (GitHub, GitLab):
// the CI got it once, the request's outcome is unknown, counted, logged,
// and a redrive of its dead letter sends it again. Airflow and Argo, whose
// dag_run_id and workflow name make a repeat harmless, are retried with
// the same run id and name.
// A connection refused (nothing sent) is retried whatever the type.
func TestActionTimeoutAfterSendNotRetried(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	cis := map[string]*slowCI{
		"gh-repo":     newSlowCI(t, http.StatusNoContent, 3*time.Second),
		"gh-workflow": newSlowCI(t, http.StatusNoContent, 3*time.Second),
		"gitlab":      newSlowCI(t, http.StatusCreated, 3*time.Second),
		// Airflow answers a repeat of the run id with 409, the Argo Server
		// a repeat of the workflow's name.
		"argo":    newSlowCI(t, http.StatusConflict, 3*time.Second),
		"airflow": newSlowCI(t, http.StatusConflict, 3*time.Second),
	}
	// A port nothing listens on: connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + l.Addr().String()
	require.NoError(t, l.Close())

	cfg := classifyDrift + `
actions:
  - name: gh-repo
    type: github_repository_dispatch
    url: ` + cis["gh-repo"].URL + `
    repository: acme/models
    token: ghp_SECRET
    timeout: 300ms
    trigger: {matchers: ['category="data_quality"']}
  - name: gh-workflow
    type: github_workflow_dispatch
    url: ` + cis["gh-workflow"].URL + `
    repository: acme/models
    workflow: retrain.yml
    token: ghp_SECRET
    timeout: 300ms
    trigger: {matchers: ['category="data_quality"']}
  - name: gitlab
    type: gitlab_pipeline
    url: ` + cis["gitlab"].URL + `
    project: acme/models
    trigger_token: glptt-SECRET
    timeout: 300ms
    trigger: {matchers: ['category="data_quality"']}
  - name: argo
    type: argo_workflow
    url: ` + cis["argo"].URL + `
    namespace: ml
    workflow_template: retrain
    timeout: 300ms
    trigger: {matchers: ['category="data_quality"']}
  - name: airflow
    type: airflow_dag_run
    url: ` + cis["airflow"].URL + `
    dag_id: retrain
    timeout: 300ms
    trigger: {matchers: ['category="data_quality"']}
  - name: refused
    type: github_repository_dispatch
    url: ` + refused + `
    repository: acme/models
    token: ghp_SECRET
    timeout: 300ms
    trigger: {matchers: ['category="data_quality"']}
`
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", cfg)
	a := runActionsAlertd(t, clock, dir, func(o *Options) {
		o.Outbox.InitialBackoff, o.Outbox.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	}, nil)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)

	for _, name := range []string{"gh-repo", "gh-workflow", "gitlab"} {
		req := waitRequest(t, a, name, ls, inRequestState(stateUnknown), name+": outcome not unknown")
		require.Equal(t, 1, req.Attempts, name)
		require.Contains(t, req.LastError, outcomeUnknownPrefix, name)
		require.Contains(t, req.LastError, "context deadline exceeded", name)
		v, ok := metric(t, a.Registry(), "alertd_actions_unknown_outcomes_total", "action", name)
		require.True(t, ok)
		require.Equal(t, 1.0, v, name)
	}
	// Airflow and Argo: retried with the same run id and workflow name
	// until they answer (409: the run or workflow exists), delivered.
	for _, name := range []string{"airflow", "argo"} {
		cis[name].slow.Store(false)
		waitRequest(t, a, name, ls, inRequestState(stateDelivered), name+": not delivered")
		bodies := cis[name].got()
		require.GreaterOrEqual(t, len(bodies), 2, name+": not retried")
		var first struct {
			DAGRunID      string `json:"dag_run_id"`
			SubmitOptions struct {
				Name string `json:"name"`
			} `json:"submitOptions"`
		}
		require.NoError(t, json.Unmarshal([]byte(bodies[0]), &first))
		id := `"dag_run_id":"` + first.DAGRunID + `"`
		if name == "argo" {
			require.NotEmpty(t, first.SubmitOptions.Name)
			id = `"name":"` + first.SubmitOptions.Name + `"`
		}
		for _, b := range bodies {
			require.Contains(t, b, id, name)
		}
	}
	// Refused connections are retried: nothing was sent.
	waitRequest(t, a, "refused", ls, func(r actionRequest) bool {
		return r.State == stateSent && r.Attempts >= 3 && strings.Contains(r.LastError, "connection refused")
	}, "refused: not retried")
	for _, name := range []string{"airflow", "argo", "refused"} {
		v, _ := metric(t, a.Registry(), "alertd_actions_unknown_outcomes_total", "action", name)
		require.Equal(t, 0.0, v, name)
	}
	// No retry came meanwhile: the CIs without idempotency got one request
	// each.
	for _, name := range []string{"gh-repo", "gh-workflow", "gitlab"} {
		require.Len(t, cis[name].got(), 1, name)
	}
	require.Contains(t, a.logs.String(), `level=WARN msg="Action outcome unknown, not retried: the request was sent and no answer came" component=actions action=gh-repo`)
	require.Contains(t, a.logs.String(), "alertname=ModelFeatureDrift")

	// An operator who checked the CI sends it again: a redrive of its
	// dead letter, with the same key.
	gh := waitRequest(t, a, "gh-repo", ls, inRequestState(stateUnknown), "")
	cis["gh-repo"].slow.Store(false)
	code, body := post(t, a.URL+"/api/v1/outbox/dead_letters/"+url.PathEscape(gh.Key)+"/redrive", "", "")
	require.Equal(t, http.StatusOK, code, body)
	waitRequest(t, a, "gh-repo", ls, inRequestState(stateDelivered), "gh-repo: the redrive was not delivered")
	require.Len(t, cis["gh-repo"].got(), 2)
	require.Len(t, cis["gh-workflow"].got(), 1)
}

// An action's timeout longer than the outbox's own limit of an attempt
// is honoured: a CI that answers after the outbox's limit, within the
// action's timeout, gets one request, delivered.
func TestActionTimeoutAboveOutboxLimit(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	ci := newSlowCI(t, http.StatusNoContent, 700*time.Millisecond)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", githubRetrain(ci.URL, "timeout: 5s"))
	a := runActionsAlertd(t, clock, dir, func(o *Options) {
		// The outbox's limit, 30s by default, made short.
		o.Outbox.SendTimeout = 200 * time.Millisecond
		o.Outbox.InitialBackoff, o.Outbox.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	}, nil)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	req := waitRequest(t, a, "retrain", ls, func(r actionRequest) bool { return r.State != stateSent }, "not settled")
	require.Equal(t, stateDelivered, req.State, req.LastError)
	require.Len(t, ci.got(), 1)
}

// An action whose CI has a certificate alertd does not trust is retried
// (a certificate can be fixed), its failures counted under reason tls,
// and the problem logged once, at error, not at every retry.
func TestActionUntrustedCertificate(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	var got atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", githubRetrain(srv.URL, ""))
	a := runActionsAlertd(t, clock, dir, func(o *Options) {
		o.Outbox.InitialBackoff, o.Outbox.MaxBackoff = 20*time.Millisecond, 50*time.Millisecond
	}, nil)
	ls, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	req := waitRequest(t, a, "retrain", ls, func(r actionRequest) bool { return r.State == stateSent && r.Attempts >= 4 }, "not retried")
	require.Contains(t, req.LastError, "x509: certificate signed by unknown authority")
	require.Zero(t, got.Load(), "the handshake failed: nothing reached the handler")
	tlsFailures, _ := metric(t, a.Registry(), "alertd_outbox_delivery_failures_total", "receiver", "retrain", "integration", "action", "reason", "tls")
	require.GreaterOrEqual(t, tlsFailures, 3.0)
	other, _ := metric(t, a.Registry(), "alertd_outbox_delivery_failures_total", "receiver", "retrain", "integration", "action", "reason", "other")
	require.Zero(t, other)
	logs := a.logs.String()
	require.Equal(t, 1, strings.Count(logs, `level=ERROR msg="Action attempt failed: the CI's TLS certificate is not trusted`), logs)
	require.Equal(t, 1, strings.Count(logs, `level=ERROR msg="Delivery failed: the receiver's TLS certificate is not trusted`), logs)
	require.NotContains(t, logs, `msg="Action attempt failed, will retry later"`)
}

var _ outbox.AttemptTimeouter = (*actionRunner)(nil)

func TestIdempotentTypes(t *testing.T) {
	for _, typ := range act.Types() {
		want := typ == act.TypeAirflowDAGRun || typ == act.TypeArgoWorkflow || typ == act.TypeWebhook
		require.Equal(t, want, act.Idempotent(typ), typ)
	}
}

// Go's HTTP client replays a request that carries an Idempotency-Key on
// a new connection when the kept-alive one it was written to closes
// before any answer. A CI without idempotency may have started a run on
// it: the request is sent once, and its outcome is unknown.
func TestActionConnectionClosedAfterSendNotReplayed(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	// The CI answers the first request and keeps the connection; it reads
	// the second in full on that connection and closes it unanswered.
	var got atomic.Int32
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if got.Add(1) == 2 {
						return
					}
					if _, err := io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	clock := &testClock{}
	cfg := githubRetrain("http://"+l.Addr().String(), "")
	a := startActionsAlertd(t, clock, func(string) string { return cfg }, nil)
	fraud, al := driftAlert("fraud", "amount")
	postAlertJSON(t, a, al)
	waitRequest(t, a, "retrain", fraud, inRequestState(stateDelivered), "first request not delivered")
	churn, al := driftAlert("churn", "amount")
	postAlertJSON(t, a, al)
	req := waitRequest(t, a, "retrain", churn, inRequestState(stateUnknown), "second request's outcome not unknown")
	require.Equal(t, 1, req.Attempts)
	require.Equal(t, int32(2), got.Load(), "the closed request was sent again")
}
