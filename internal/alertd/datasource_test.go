package alertd

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// When the data source answers again, the rules take over the held alert,
// AlertdDatasourceDown resolves, and alertd_datasource_up is 1 again. The
// outage is a proxy in front of a real Prometheus answering 503.
func TestDatasourceRecovers(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	frontend := promFrontend(t, func(w http.ResponseWriter, _ *http.Request, _ string) bool {
		if !down.Load() {
			return false
		}
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
		return true
	})

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": `
groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`}, func(o *Options) { o.DatasourceURL = frontend.URL })
	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)

	down.Store(true)
	h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "AlwaysFiring", SourceRule)
		return ok && slices.Contains(actions(al.History), "datasource/held")
	}, 30*time.Second, 20*time.Millisecond)

	down.Store(false)
	resolved := h.wait(t, datasourceDownAlert, "resolved", 30*time.Second)
	require.Len(t, resolved.Alerts, 1)
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, v)
	own, ok := a.alert(t, datasourceDownAlert, SourceAlertd)
	require.True(t, ok)
	require.Equal(t, "resolved", own.State)
	require.Contains(t, actions(own.History), "intake/resolved")
	al, ok := a.alert(t, "AlwaysFiring", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State, "the rule's alert never resolved")
	require.Empty(t, h.matching("AlwaysFiring", "resolved"))
	require.Equal(t, "ok", findRule(t, a.rules(t), "AlwaysFiring").Health)
}

// A Mimir-like frontend: TLS with a private CA, the query API under
// /prometheus, a bearer token read from a file and the tenant in
// X-Scope-OrgID (http_headers), all from the datasource section as README
// says (Prometheus's http_config keys). The frontend forwards to a real
// Prometheus only what carries them.
func TestDatasourceTenantBehindPathPrefix(t *testing.T) {
	t.Parallel()
	var refused atomic.Int64
	frontend := httptest.NewTLSServer(promFrontendHandler(t, func(w http.ResponseWriter, r *http.Request, _ string) bool {
		if r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("X-Scope-OrgID") != "tenant-1" || !strings.HasPrefix(r.URL.Path, "/prometheus/api/v1/") {
			refused.Add(1)
			http.Error(w, "no org id", http.StatusUnauthorized)
			return true
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/prometheus")
		return false
	}))
	t.Cleanup(frontend.Close)
	dir := t.TempDir()
	writeFile(t, dir, "token", "s3cret\n")
	writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: frontend.Certificate().Raw})))

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, fmt.Sprintf(`
datasource:
  url: %s/prometheus
  authorization: {credentials_file: %s}
  http_headers: {X-Scope-OrgID: {values: [tenant-1]}}
  tls_config: {ca_file: %s}
`, frontend.URL, filepath.Join(dir, "token"), filepath.Join(dir, "ca.pem"))), map[string]string{"rules.yml": `
groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`}, nil)
	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)
	require.Zero(t, refused.Load())
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, v)
}

// The data source URL is a label and an annotation of AlertdDatasourceDown,
// which go to every receiver: a password in it (basic auth in the URL, as
// Prometheus's remote_write url allows) must not.
func TestDatasourceDownHidesPassword(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // connection refused from now on

	h := newHook(t)
	startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": `
groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`}, func(o *Options) { o.DatasourceURL = "http://alertd:hunter2@" + addr + "/select/0/prometheus" })
	p := h.wait(t, datasourceDownAlert, "firing", 60*time.Second)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	require.NotContains(t, string(b), "hunter2")
	require.Contains(t, string(b), `"datasource":"http://`+addr+`/select/0/prometheus"`)
}

// countingAPI answers every instant query with vector(1) and counts them.
func countingAPI(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"1"]}]}}`, time.Now().Unix())
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// A reload that changes datasource (moving from one Prometheus to a Thanos
// Query, a new timeout or credentials) takes effect, and the firing alert
// goes on firing; one that switches between the embedded engine and a
// remote API needs a restart and fails, keeping everything as it was.
func TestDatasourceReload(t *testing.T) {
	t.Parallel()
	first, firstN := countingAPI(t)
	second, secondN := countingAPI(t)
	h := newHook(t)
	rules := map[string]string{"rules.yml": alwaysFiringRules}
	a := startAlertd(t, routes(h, nil, "datasource: {url: "+first.URL+"}\n"), rules, nil)
	h.wait(t, "AlwaysFiring", "firing", 30*time.Second)

	writeFile(t, a.Dir, "alertd.yml", routes(h, nil, "datasource: {url: "+second.URL+", timeout: 5s}\n"))
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, func() bool { return secondN.Load() > 2 }, 30*time.Second, 20*time.Millisecond)
	n := firstN.Load()
	require.Eventually(t, func() bool { return secondN.Load() > 10 }, 30*time.Second, 20*time.Millisecond)
	require.LessOrEqual(t, firstN.Load(), n+1, "queries still go to the old data source")
	al, ok := a.alert(t, "AlwaysFiring", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State)

	writeFile(t, a.Dir, "alertd.yml", routes(h, nil, ""))
	code, body = post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "switching between the embedded engine and a remote data source needs a restart")
	v, _ := metric(t, a.Registry(), "alertd_config_last_reload_successful")
	require.Equal(t, 0.0, v)
	n = secondN.Load()
	require.Eventually(t, func() bool { return secondN.Load() > n+3 }, 30*time.Second, 20*time.Millisecond)
	require.Empty(t, h.matching("AlwaysFiring", "resolved"))
}

// An embedded alertd cannot become remote on reload either.
func TestDatasourceReloadEmbeddedToRemote(t *testing.T) {
	t.Parallel()
	api, n := countingAPI(t)
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), nil, nil)
	writeFile(t, a.Dir, "alertd.yml", routes(h, nil, "datasource: {url: "+api.URL+"}\n"))
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "switching between the embedded engine and a remote data source needs a restart")
	require.Zero(t, n.Load())
}

// Rules query a remote API at the group's evaluation time minus
// query_offset (the group's, or global rule_query_offset), sent as `time`
// with millisecond precision at least, as Prometheus's rule manager
// queries its own engine.
func TestDatasourceQueryOffset(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var times []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		if r.Form.Get("query") == "vector(1) > 2" {
			mu.Lock()
			times = append(times, r.Form.Get("time"))
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(api.Close)
	h := newHook(t)
	startAlertd(t, routes(h, nil, "datasource: {url: "+api.URL+"}\n"), map[string]string{"rules.yml": `
groups:
  - name: offset
    interval: 200ms
    query_offset: 1m
    rules:
      - alert: Never
        expr: vector(1) > 2
`}, nil)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(times) >= 3
	}, 30*time.Second, 20*time.Millisecond)
	mu.Lock()
	got := slices.Clone(times)
	mu.Unlock()
	for _, s := range got {
		f, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, s)
		ts := time.UnixMilli(int64(math.Round(f * 1000)))
		lag := time.Since(ts)
		// The offset plus the query's age when read here, which load
		// stretches; an offset applied twice would be a minute more.
		require.Greater(t, lag, time.Minute-time.Second, s)
		require.Less(t, lag, time.Minute+30*time.Second, s)
	}
}

// A --datasource.url alertd cannot query stops start-up, as the same URL in
// datasource.url does, instead of starting with a data source that is
// never up.
func TestDatasourceURLFlagChecked(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"prometheus:9090", "ftp://prometheus:9090", "http://"} {
		dir := t.TempDir()
		writeFile(t, dir, "alertd.yml", "")
		o, _ := newOptions(t, dir)
		o.DatasourceURL = u
		a, err := New(o)
		require.Nil(t, a)
		require.EqualError(t, err, fmt.Sprintf("invalid --datasource.url=%q: want http(s)://host[:port][/path]", u))
	}
}

// A frontend in front of a real Prometheus starts answering 429 with a
// Retry-After (as Mimir's and Thanos's query frontends do when
// overloaded): alertd sends nothing more until then, the rule's
// evaluations fail with that reason, the data source is down, and its
// alert is held rather than resolved.
func TestDatasourceRetryAfter(t *testing.T) {
	t.Parallel()
	var busy atomic.Bool
	var refused atomic.Int64
	frontend := promFrontend(t, func(w http.ResponseWriter, _ *http.Request, _ string) bool {
		if !busy.Load() {
			return false
		}
		refused.Add(1)
		w.Header().Set("Retry-After", "3600")
		http.Error(w, "too many outstanding requests", http.StatusTooManyRequests)
		return true
	})

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": alwaysFiringRules}, func(o *Options) { o.DatasourceURL = frontend.URL })
	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)

	busy.Store(true)
	require.Eventually(t, func() bool {
		return strings.Contains(findRule(t, a.rules(t), "AlwaysFiring").LastError, "not sent: the data source answered 429 Too Many Requests with Retry-After")
	}, 30*time.Second, 20*time.Millisecond)
	down := h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
	require.Contains(t, down.Alerts[0].Annotations["description"], "with Retry-After, and is not queried before")
	require.EqualValues(t, 1, refused.Load(), "queries went on after the Retry-After")
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Zero(t, v)
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "AlwaysFiring", SourceRule)
		return ok && al.State == "firing" && slices.Contains(actions(al.History), "datasource/held")
	}, 30*time.Second, 20*time.Millisecond)
	require.Empty(t, h.matching("AlwaysFiring", "resolved"))
	require.EqualValues(t, 1, refused.Load())
}

// fakeStore is a Thanos Query or a VictoriaMetrics vmselect in front of
// two stores (Thanos stores, vmstorage nodes), of which the one holding
// model="a" can go down. Its answers are those of the real thing, byte for
// byte. The query of the rule ModelErrors selects model_errors_total,
// which is on that store, > 0 while errors is set; absentExpr is 1 while
// the store is down and answers are partial; badJoinExpr is a many-to-many
// match, an execution error of the query's own.
type fakeStore struct {
	*httptest.Server
	down, errors atomic.Bool
	// params are the parameters of the latest query.
	params atomic.Value
}

const (
	modelErrorsExpr = "model_errors_total > 0"
	absentExpr      = "absent(model_errors_total)"
	badJoinExpr     = "model_errors_total * on(model) model_info"
)

// storeRules are rules fakeStore answers for.
const storeRules = `
groups:
  - name: models
    interval: 100ms
    rules:
      - alert: ModelErrors
        expr: ` + modelErrorsExpr + `
`

// thanosStoreError is what a Thanos Query's proxy says when the store of
// model="a" does not answer (gRPC Unavailable), as Thanos prints it.
const thanosStoreError = `receive series from Addr: 127.0.0.1:10901 LabelSets: {prometheus=\"monitoring/k8s\", prometheus_replica=\"prometheus-k8s-0\"} MinTime: 1699996400000 MaxTime: 9223372036854775807: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:10901: connect: connection refused\"`

// fakeThanos answers as Thanos Query's pkg/api does (a json.Encoder, so a
// final newline; 422 for execution errors; Cache-Control: no-store on
// errors and warnings). With the store down, partial_response=false (what
// alertd sends; the Thanos ruler's "abort") aborts the query, and
// partial_response=true answers what the other store holds, with a
// warning.
func fakeThanos(t *testing.T) *fakeStore {
	t.Helper()
	s := &fakeStore{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		s.params.Store(r.Form)
		w.Header().Set("Content-Type", "application/json")
		down := s.down.Load()
		switch {
		case down && r.Form.Get("partial_response") != "true":
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = `+thanosStoreError+`"}`+"\n")
		case strings.Contains(r.Form.Get("query"), "model_info"): // badJoinExpr, as the rule manager prints it
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"found duplicate series for the match group {model=\"a\"} on the right hand-side of the operation: [{__name__=\"model_info\", model=\"a\", version=\"1\"}, {__name__=\"model_info\", model=\"a\", version=\"2\"}];many-to-many matching not allowed: matching labels must be unique on one side"}`+"\n")
		case down && r.Form.Get("query") == absentExpr:
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%s,"1"]}],"analysis":{}},"warnings":["`+thanosStoreError+`"]}`+"\n", r.Form.Get("time"))
		case down:
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[],"analysis":{}},"warnings":["`+thanosStoreError+`"]}`+"\n")
		case s.errors.Load():
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"model":"a"},"value":[%s,"3"]}],"analysis":{}}}`+"\n", r.Form.Get("time"))
		default:
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[],"analysis":{}}}`+"\n")
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// fakeVMSelect answers as a VictoriaMetrics vmselect does
// (app/vmselect/prometheus/query_response.qtpl, written with stripspace:
// the spaces after "metric": and "value": are its own). With the vmstorage
// node of model="a" down it ignores deny_partial_response=1, as an older
// vmselect with -search.denyPartialResponse off or a proxy dropping the
// parameter does, and answers what the other node holds with
// "isPartial":true. badJoinExpr gets its error answer: 422, typed by that
// status (lib/httpserver's SendPrometheusError and
// PrometheusErrorResponse), with QueryHandler's and promql's words.
func fakeVMSelect(t *testing.T) *fakeStore {
	t.Helper()
	s := &fakeStore{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		s.params.Store(r.Form)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case s.down.Load():
			fmt.Fprint(w, `{"status":"success","isPartial":true,"data":{"resultType":"vector","result":[]},"stats":{"seriesFetched": "0","executionTimeMsec": 1}}`)
		case strings.Contains(r.Form.Get("query"), "model_info"): // badJoinExpr
			ts, err := strconv.ParseFloat(r.Form.Get("time"), 64)
			require.NoError(t, err)
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprintf(w, `{"status":"error","errorType":"422","error":"error when executing query=\"%[1]s\" for (time=%[2]d, step=300000): cannot evaluate \"%[1]s\": duplicate time series on the right side of `+"`* on(model)`"+`: {model=\"a\", version=\"1\"} and {model=\"a\", version=\"2\"}"}`, badJoinExpr, int64(ts*1000))
		case s.errors.Load():
			fmt.Fprintf(w, `{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[{"metric": {"model":"a"},"value": [%s,"3"]}]},"stats":{"seriesFetched": "1","executionTimeMsec": 1}}`, r.Form.Get("time"))
		default:
			fmt.Fprint(w, `{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[]},"stats":{"seriesFetched": "0","executionTimeMsec": 0}}`)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// While a store is down, Thanos refuses to answer without it and
// VictoriaMetrics answers without it ("isPartial":true): either way the
// rules would see model="a" gone. alertd counts the data source down for
// a partial_response reason, holds the firing alert (held, not resolved,
// over more than its validity), raises AlertdDatasourceDown, counts and
// logs it. When the store is back and the errors are gone, the alert
// resolves as usual. A Thanos 422 about the query itself (BadJoin) stays
// that rule's error, with the data source up.
func TestDatasourcePartialAnswersHoldAlerts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		store func(*testing.T) *fakeStore
		rules string
		param string // the parameter asking not to answer partial data
		err   string // the rule's error while the store is down
	}{
		{"thanos", fakeThanos, storeRules + "      - alert: BadJoin\n        expr: " + badJoinExpr + "\n", "partial_response=false", "the data source refused to answer with part of the data (a store failed, partial_response=false): execution: expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10901"},
		{"victoriametrics", fakeVMSelect, storeRules + "      - alert: BadJoin\n        expr: " + badJoinExpr + "\n", "deny_partial_response=1", "the data source answered with part of the data (isPartial: some of its storage nodes did not answer); the answer is not used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := tc.store(t)
			store.errors.Store(true)
			h := newHook(t)
			a := startAlertd(t, routes(h, nil, "datasource: {url: "+store.URL+"}\n"), map[string]string{"rules.yml": tc.rules}, nil)
			h.wait(t, "ModelErrors", "firing", 30*time.Second)
			badJoin := map[string]string{"thanos": "many-to-many matching not allowed", "victoriametrics": "duplicate time series on the right side of `* on(model)`"}[tc.name]
			require.Eventually(t, func() bool {
				return strings.Contains(findRule(t, a.rules(t), "BadJoin").LastError, badJoin)
			}, 30*time.Second, 20*time.Millisecond)
			failed, _ := metric(t, a.Registry(), "alertd_datasource_queries_failed_total", "reason", "query")
			require.Positive(t, failed)
			v, _ := metric(t, a.Registry(), "alertd_datasource_up")
			require.Equal(t, 1.0, v, "a bad query is the rule's error")
			require.Empty(t, h.matching(datasourceDownAlert, ""))
			k, v2, _ := strings.Cut(tc.param, "=")
			require.Equal(t, v2, store.params.Load().(url.Values).Get(k))

			store.down.Store(true)
			down := h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
			require.Contains(t, down.Alerts[0].Annotations["description"], tc.err)
			require.Contains(t, down.Alerts[0].Annotations["description"], "Rule alerts are held in their last state until it answers in full.")
			require.Contains(t, findRule(t, a.rules(t), "ModelErrors").LastError, tc.err)
			require.Eventually(t, func() bool {
				al, ok := a.alert(t, "ModelErrors", SourceRule)
				return ok && al.State == "firing" && slices.ContainsFunc(al.History, func(d Decision) bool {
					return d.Stage == "datasource" && d.Action == "held" && strings.HasPrefix(d.Reason, "kept firing: the data source answers only part of the data since ")
				})
			}, 30*time.Second, 20*time.Millisecond, "the rule's alert was never held")
			// Longer than the alert's validity (4 resend delays) without
			// the hold: still firing, never resolved.
			require.Never(t, func() bool {
				return len(h.matching("ModelErrors", "resolved")) > 0
			}, 6*time.Second, 100*time.Millisecond, "a resolved notification went out while the data source answered in part")
			al, ok := a.alert(t, "ModelErrors", SourceRule)
			require.True(t, ok)
			require.Equal(t, "firing", al.State)
			v, _ = metric(t, a.Registry(), "alertd_datasource_up")
			require.Zero(t, v)
			held, _ := metric(t, a.Registry(), "alertd_datasource_held_alerts_total", "reason", "partial_response")
			require.Positive(t, held)
			held, _ = metric(t, a.Registry(), "alertd_datasource_held_alerts_total", "reason", "unavailable")
			require.Zero(t, held)
			failed, _ = metric(t, a.Registry(), "alertd_datasource_queries_failed_total", "reason", "partial_response")
			require.Positive(t, failed)
			require.Contains(t, a.logs.String(), `msg="Data source answered with part of the data; the query fails and the data source counts as down" component=datasource query="`+modelErrorsExpr+`"`)

			store.errors.Store(false)
			store.down.Store(false)
			h.wait(t, "ModelErrors", "resolved", 30*time.Second)
			h.wait(t, datasourceDownAlert, "resolved", 30*time.Second)
			v, _ = metric(t, a.Registry(), "alertd_datasource_up")
			require.Equal(t, 1.0, v)
		})
	}
}

// A data source URL with partial_response=true lets Thanos's partial
// answers through (its "warn" strategy), as the operator asked: they are
// used, so that absent() of what the store down holds fires, and their
// warnings are counted and logged; the data source is up.
func TestDatasourcePartialResponseAllowed(t *testing.T) {
	t.Parallel()
	thanos := fakeThanos(t)
	thanos.down.Store(true)
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "datasource: {url: \""+thanos.URL+"?partial_response=true\"}\n"), map[string]string{"rules.yml": `
groups:
  - name: absent
    interval: 100ms
    rules:
      - alert: NoErrorsSeries
        expr: ` + absentExpr + `
`}, nil)
	h.wait(t, "NoErrorsSeries", "firing", 30*time.Second)
	require.Eventually(t, func() bool {
		v, _ := metric(t, a.Registry(), "alertd_datasource_queries_with_warnings_total")
		return v >= 2
	}, 30*time.Second, 20*time.Millisecond)
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, v)
	require.Equal(t, 1, strings.Count(a.logs.String(), "Data source answered with warnings; the result may be incomplete"), "the same warnings are logged once")
	require.Contains(t, a.logs.String(), `warnings="receive series from Addr: 127.0.0.1:10901`)
}

// With one Thanos store down, Thanos refuses the queries that need it and
// answers the others in full. Only the rule whose query needs the store
// fails: its firing alert is held, the other rule's alert resolves as its
// condition goes, and the data source stays down across evaluation rounds,
// although the rule that answers is evaluated after the one that fails in
// every round (sampled every few milliseconds, longer than the held
// alert's validity). Once the store is back, the held alert resolves as
// its condition goes, and so does AlertdDatasourceDown.
func TestDatasourceDownPerRule(t *testing.T) {
	t.Parallel()
	const (
		storeAExpr = `model_errors_total{store="a"} > 0`
		storeBExpr = `model_errors_total{store="b"} > 0`
	)
	var aDown, aErrors, bErrors atomic.Bool
	aErrors.Store(true)
	bErrors.Store(true)
	thanos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		w.Header().Set("Content-Type", "application/json")
		q := r.Form.Get("query")
		switch {
		case q == storeAExpr && aDown.Load():
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = `+thanosStoreError+`"}`+"\n")
		case q == storeAExpr && aErrors.Load(), q == storeBExpr && bErrors.Load():
			store := "a"
			if q == storeBExpr {
				store = "b"
			}
			fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"model":"m","store":%q},"value":[%s,"3"]}],"analysis":{}}}`+"\n", store, r.Form.Get("time"))
		default:
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[],"analysis":{}}}`+"\n")
		}
	}))
	t.Cleanup(thanos.Close)
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "datasource: {url: "+thanos.URL+"}\n"), map[string]string{"rules.yml": `
groups:
  - name: stores
    interval: 100ms
    rules:
      - alert: StoreAErrors
        expr: ` + storeAExpr + `
      - alert: StoreBErrors
        expr: ` + storeBExpr + `
`}, nil)
	h.wait(t, "StoreAErrors", "firing", 30*time.Second)
	h.wait(t, "StoreBErrors", "firing", 30*time.Second)

	aDown.Store(true)
	bErrors.Store(false)
	down := h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
	require.Contains(t, down.Alerts[0].Annotations["description"], "rpc error: code = Aborted")
	require.Contains(t, down.Alerts[0].Annotations["description"], "Rule alerts are held in their last state until it answers in full. Failing: StoreAErrors.")
	h.wait(t, "StoreBErrors", "resolved", 30*time.Second)

	// For more than the alert's validity (4 resend delays) without the
	// hold, every few milliseconds.
	var samples, ups atomic.Int64
	require.Never(t, func() bool {
		samples.Add(1)
		v, _ := metric(t, a.Registry(), "alertd_datasource_up")
		n, _ := metric(t, a.Registry(), "alertd_datasource_failing_rules")
		if v != 0 || n != 1 {
			ups.Add(1)
		}
		return ups.Load() > 0 || len(h.matching("StoreAErrors", "resolved")) > 0
	}, 6*time.Second, 5*time.Millisecond, "the data source was up, or the failing rule's alert resolved")
	t.Logf("alertd_datasource_up sampled %d times, 1 in %d", samples.Load(), ups.Load())
	require.Empty(t, h.matching(datasourceDownAlert, "resolved"), "AlertdDatasourceDown flapped")
	al, ok := a.alert(t, "StoreAErrors", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State)
	require.True(t, slices.ContainsFunc(al.History, func(d Decision) bool {
		return d.Stage == "datasource" && d.Action == "held" && strings.HasPrefix(d.Reason, "kept firing: the data source answers only part of the data since ") && strings.Contains(d.Reason, "code = Aborted")
	}), "the failing rule's alert was never held: %v", al.History)
	bl, ok := a.alert(t, "StoreBErrors", SourceRule)
	require.True(t, ok)
	require.Equal(t, "resolved", bl.State)
	require.NotContains(t, actions(bl.History), "datasource/held")
	held, _ := metric(t, a.Registry(), "alertd_datasource_held_alerts_total", "reason", "partial_response")
	require.Positive(t, held)
	require.Equal(t, "ok", findRule(t, a.rules(t), "StoreBErrors").Health)
	require.Contains(t, findRule(t, a.rules(t), "StoreAErrors").LastError, "code = Aborted")

	aErrors.Store(false)
	aDown.Store(false)
	h.wait(t, "StoreAErrors", "resolved", 30*time.Second)
	h.wait(t, datasourceDownAlert, "resolved", 30*time.Second)
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, v)
	n, _ := metric(t, a.Registry(), "alertd_datasource_failing_rules")
	require.Zero(t, n)
}

// thanosSeriesLimit is what a Thanos Query asked with partial_response=false
// answers when a store gateway refuses the query for its
// --store.limits.request-series: its proxy aborts the query as for a store
// that is down (pkg/store/proxy.go: status.Error(codes.Aborted, warning),
// the warning "receive series from <store>: ..." of pkg/store/proxy_heap.go),
// with the store's error (pkg/store/bucket.go, Thanos v0.32.0 and later:
// httpgrpc.Errorf(codes.ResourceExhausted, "exceeded series limit: %s"),
// wrapping its Limiter's "limit %v violated (got %v)" of
// pkg/store/limiter.go).
const thanosSeriesLimit = `expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10905 LabelSets: {prometheus=\"monitoring/k8s\", prometheus_replica=\"prometheus-k8s-0\"} MinTime: 1699000000000 MaxTime: 1699996400000: rpc error: code = ResourceExhausted desc = fetch postings for block 01HF3V8PQ2N6Y1B0D2V7F5ZK8M: rpc error: code = ResourceExhausted desc = exceeded series limit: limit 10000 violated (got 12345)`

// A query a Thanos store refuses for its limits is too big, not a store
// down, although Thanos aborts it with the same gRPC code: the rule fails
// with that error, counted under reason="query"; the data source stays up,
// AlertdDatasourceDown does not fire, and the rule's firing alert is not
// held but times out as with any failing query, as in Prometheus.
func TestDatasourceThanosStoreLimitFailsTheRule(t *testing.T) {
	t.Parallel()
	const expr = `sum by (model) (rate(model_errors_total[30d])) > 0`
	var limited atomic.Bool
	thanos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		w.Header().Set("Content-Type", "application/json")
		if limited.Load() {
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"`+thanosSeriesLimit+`"}`+"\n")
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"model":"m"},"value":[%s,"3"]}],"analysis":{}}}`+"\n", r.Form.Get("time"))
	}))
	t.Cleanup(thanos.Close)
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "datasource: {url: "+thanos.URL+"}\n"), map[string]string{"rules.yml": `
groups:
  - name: big
    interval: 100ms
    rules:
      - alert: TooBig
        expr: ` + expr + `
`}, nil)
	h.wait(t, "TooBig", "firing", 30*time.Second)

	limited.Store(true)
	require.Eventually(t, func() bool {
		return strings.Contains(findRule(t, a.rules(t), "TooBig").LastError, "exceeded series limit: limit 10000 violated (got 12345)")
	}, 30*time.Second, 20*time.Millisecond)
	h.wait(t, "TooBig", "resolved", 30*time.Second)
	failed, _ := metric(t, a.Registry(), "alertd_datasource_queries_failed_total", "reason", "query")
	require.Positive(t, failed)
	partial, _ := metric(t, a.Registry(), "alertd_datasource_queries_failed_total", "reason", "partial_response")
	require.Zero(t, partial)
	up, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, up)
	held, _ := metric(t, a.Registry(), "alertd_datasource_held_alerts_total", "reason", "partial_response")
	require.Zero(t, held)
	require.Empty(t, h.matching(datasourceDownAlert, ""))
	al, ok := a.alert(t, "TooBig", SourceRule)
	require.True(t, ok)
	require.Equal(t, "resolved", al.State)
	require.NotContains(t, actions(al.History), "datasource/held")
	require.Contains(t, findRule(t, a.rules(t), "TooBig").LastError, "a Thanos store refused the query for its limits; select fewer series or a shorter range")
}

// An anomaly detector's evaluations count as the rules' do: with no rules
// at all, a data source that refuses connections is down for the detector
// that cannot query it, and AlertdDatasourceDown names it.
func TestDatasourceDownAnomalyDetector(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // connection refused from now on

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
anomaly_detectors:
  - name: latency
    expr: model_latency_seconds
    interval: 1s
    history: 0s
`), nil, func(o *Options) { o.DatasourceURL = "http://" + addr })
	down := h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
	require.Contains(t, down.Alerts[0].Annotations["description"], "connection refused")
	require.Contains(t, down.Alerts[0].Annotations["description"], "Failing: detector latency.")
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Zero(t, v)
	n, _ := metric(t, a.Registry(), "alertd_datasource_failing_rules")
	require.Equal(t, 1.0, n)
}

// alwaysFiringRules is a rule file with one alert, AlwaysFiring, evaluated
// every 100ms: it fires as soon as the data source answers.
const alwaysFiringRules = `
groups:
  - name: always
    interval: 100ms
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`

// promFrontend starts a real Prometheus and, in front of it, a data source
// that shows each request to intercept first, with its query (the form
// body and the URL's query string together, as alertd sends either):
// intercept answers it and returns true, or returns false and the request,
// as intercept may have changed it, goes on to Prometheus. Tests use it to
// make a frontend (Thanos's, Mimir's, vmselect's) refuse or half-answer the
// queries they pick.
func promFrontend(t *testing.T, intercept func(w http.ResponseWriter, r *http.Request, query string) bool) *httptest.Server {
	t.Helper()
	frontend := httptest.NewServer(promFrontendHandler(t, intercept))
	t.Cleanup(frontend.Close)
	return frontend
}

// promFrontendHandler is promFrontend's handler, for a test that serves it
// itself (over TLS).
func promFrontendHandler(t *testing.T, intercept func(w http.ResponseWriter, r *http.Request, query string) bool) http.Handler {
	t.Helper()
	prom := prometheustest.Start(t, prometheustest.Options{})
	target, err := url.Parse(prom.URL)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if intercept(w, r, string(body)+r.URL.RawQuery) {
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// writePartialAnswer answers a query as VictoriaMetrics's vmselect does
// while a vmstorage node is down: success, with isPartial set.
func writePartialAnswer(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"success","isPartial":true,"data":{"resultType":"vector","result":[]}}`)
}
