package alertd

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/internal/notify/notifytest"
	"github.com/modelmon/modelmon/internal/notify/webhook"
	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/readmetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// HTTP clients (Go's default one, the notifiers', the data
		// source's) keep idle connections after a test.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		// The sidecar's proxy (fasthttp) keeps a coarse clock and cleans
		// its connection pools after a test, by design.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	)
}

// externalURL is every test alertd's --web.external-url: notifications and
// generator URLs carry it.
var externalURL = &url.URL{Scheme: "http", Host: "alertd.example:9109"}

// testAlertd is an alertd running in-process on a loopback port.
type testAlertd struct {
	*Alertd
	// URL is its base URL, e.g. http://127.0.0.1:40123.
	URL string
	// Dir holds its configuration and rule files.
	Dir  string
	logs *alertdLog
}

// alertdLog is what a test alertd logs, shown if the test fails. An alertd
// restarted with the same options logs on into its predecessor's.
type alertdLog struct {
	prometheustest.SyncBuffer
	// shown is set once the log has been shown, so that the alertds
	// sharing it do not show it again.
	shown atomic.Bool
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// newOptions returns the options of a test alertd with its configuration
// in dir/alertd.yml: loopback, one-second resends and grace period, and a
// log kept for when the test fails.
func newOptions(t *testing.T, dir string) (Options, *alertdLog) {
	t.Helper()
	addrs := []string{"127.0.0.1:0"}
	webCfg := ""
	logs := &alertdLog{}
	return Options{
		ConfigFile:     filepath.Join(dir, "alertd.yml"),
		Web:            &toolkit.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &webCfg},
		ExternalURL:    externalURL,
		StoragePath:    filepath.Join(dir, "data"),
		ResendDelay:    time.Second,
		ForGracePeriod: time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

// startAlertd writes cfg as alertd.yml and the given rule files into a
// temporary directory, starts alertd on them and stops it when the test
// ends. mod may change the options.
func startAlertd(t *testing.T, cfg string, ruleFiles map[string]string, mod func(*Options)) *testAlertd {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", cfg)
	for name, content := range ruleFiles {
		writeFile(t, dir, name, content)
	}
	o, logs := newOptions(t, dir)
	if mod != nil {
		mod(&o)
	}
	return start(t, dir, o, logs)
}

// start starts alertd with o and stops it when the test ends; a test that
// restarts alertd may stop it first (Stop is idempotent).
func start(t *testing.T, dir string, o Options, logs *alertdLog) *testAlertd {
	t.Helper()
	return startWith(t, dir, o, logs, nil)
}

// startWith is start with before, if not nil, called on the new alertd
// before it starts.
func startWith(t *testing.T, dir string, o Options, logs *alertdLog, before func(*Alertd)) *testAlertd {
	t.Helper()
	a, err := New(o)
	require.NoError(t, err)
	if before != nil {
		before(a)
	}
	require.NoError(t, a.Start())
	ta := &testAlertd{Alertd: a, URL: "http://" + a.Addr(), Dir: dir, logs: logs}
	t.Cleanup(func() {
		require.NoError(t, a.Stop())
		// The last alertd started is the first stopped here: its log
		// has what those before it that shared it wrote.
		if t.Failed() && !logs.shown.Swap(true) {
			t.Logf("log of the alertd at %s:\n%s", ta.URL, logs.String())
		}
	})
	// Whatever a test made alertd expose is documented.
	t.Cleanup(func() { readmetest.Load(t).RequireGathered(t, a.Registry()) })
	resp, err := http.Get(ta.URL + strings.TrimRight(o.RoutePrefix, "/") + "/-/healthy")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return ta
}

// apiResponse is Prometheus's API envelope.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// get fetches u and returns the status code and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// post sends body to u and returns the status code and body.
func post(t *testing.T, u, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, contentType, strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// apiGet fetches a query API endpoint and decodes its envelope.
func apiGet(t *testing.T, u string) (int, apiResponse) {
	t.Helper()
	code, body := get(t, u)
	var r apiResponse
	require.NoError(t, json.Unmarshal([]byte(body), &r), "body: %s", body)
	return code, r
}

// alerts returns GET /api/v1/alerts.
func (a *testAlertd) alerts(t *testing.T) []alertJSON {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/alerts")
	require.Equal(t, http.StatusOK, code)
	var d struct {
		Alerts []alertJSON `json:"alerts"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return d.Alerts
}

// alert returns the alert named name with the given source in GET
// /api/v1/alerts, if there is one.
func (a *testAlertd) alert(t *testing.T, name string, src Source) (alertJSON, bool) {
	t.Helper()
	for _, al := range a.alerts(t) {
		if string(al.Labels["alertname"]) == name && al.Source == src {
			return al, true
		}
	}
	return alertJSON{}, false
}

// rules returns GET /api/v1/rules.
func (a *testAlertd) rules(t *testing.T) []groupJSON {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/rules")
	require.Equal(t, http.StatusOK, code)
	var d struct {
		Groups []groupJSON `json:"groups"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return d.Groups
}

// metric returns the value of the gauge, counter or untyped sample name
// with exactly these label pairs in g, and whether it is exposed.
func metric(t *testing.T, g prometheus.Gatherer, name string, labelPairs ...string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	want := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		want[labelPairs[i]] = labelPairs[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
					continue samples
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			default:
				return m.GetUntyped().GetValue(), true
			}
		}
	}
	return 0, false
}

// payload and payloadAlert are the webhook payload as a receiver decodes it.
type (
	payload      = notifytest.Payload
	payloadAlert = notifytest.PayloadAlert
)

// The keys of a webhook payload and of each of its alerts, as Alertmanager
// sends them.
var (
	payloadKeys = []string{"alerts", "commonAnnotations", "commonLabels", "externalURL", "groupKey",
		"groupLabels", "notification_reason", "receiver", "routeLabels", "status", "truncatedAlerts", "version"}
	payloadAlertKeys = []string{"annotations", "endsAt", "fingerprint", "generatorURL", "labels", "startsAt", "status"}
)

// keys returns the sorted keys of a JSON object.
func keys(b json.RawMessage) ([]string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// hook is a real webhook receiver: it keeps every payload it gets, its
// idempotency key, and the keys of the JSON objects, to check the wire
// format.
type hook struct {
	URL string

	mu        sync.Mutex
	got       []payload
	idem      []string // got's Idempotency-Key headers
	bad       []string
	keys      [][]string
	alertKeys [][]string
}

func newHook(t *testing.T) *hook {
	t.Helper()
	h := &hook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var p payload
		var raw struct {
			Alerts []json.RawMessage `json:"alerts"`
		}
		err1, err2 := json.Unmarshal(b, &p), json.Unmarshal(b, &raw)
		top, err3 := keys(b)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err1 != nil || err2 != nil || err3 != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			h.bad = append(h.bad, r.Method+" "+r.Header.Get("Content-Type")+" "+string(b))
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		h.keys = append(h.keys, top)
		for _, a := range raw.Alerts {
			k, err := keys(a)
			if err != nil {
				h.bad = append(h.bad, string(b))
			}
			h.alertKeys = append(h.alertKeys, k)
		}
		h.got = append(h.got, p)
		h.idem = append(h.idem, r.Header.Get(webhook.IdempotencyKeyHeader))
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// all returns every payload received so far.
func (h *hook) all() []payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// matching returns the payloads received so far whose group has this
// alertname and this status ("" for any).
func (h *hook) matching(alertname, status string) []payload {
	var out []payload
	for _, p := range h.all() {
		if p.GroupLabels["alertname"] == alertname && (status == "" || p.Status == status) {
			out = append(out, p)
		}
	}
	return out
}

// notifications counts the distinct notifications received so far of the
// group alertname with this status ("" for any). Delivery is at least once:
// a message whose attempt a shutdown cut short after the receiver had it is
// sent again after the restart, with the same Idempotency-Key, and counts
// once here.
func (h *hook) notifications(alertname, status string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	for i, p := range h.got {
		if p.GroupLabels["alertname"] == alertname && (status == "" || p.Status == status) {
			k := h.idem[i]
			if k == "" { // without a key, every request is its own
				k = strconv.Itoa(i)
			}
			seen[k] = true
		}
	}
	return len(seen)
}

// wait waits for a payload of the group alertname with status and returns
// the first one.
func (h *hook) wait(t *testing.T, alertname, status string, timeout time.Duration) payload {
	t.Helper()
	var got []payload
	require.Eventually(t, func() bool {
		got = h.matching(alertname, status)
		return len(got) > 0
	}, timeout, 20*time.Millisecond, "no %s notification of %s reached the webhook; got %v", status, alertname, h.all())
	return got[0]
}

// checkWire checks that every payload had exactly Alertmanager's keys and
// that nothing malformed arrived.
func (h *hook) checkWire(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Empty(t, h.bad, "malformed webhook requests")
	for _, k := range h.keys {
		require.Equal(t, payloadKeys, k)
	}
	for _, k := range h.alertKeys {
		require.Equal(t, payloadAlertKeys, k)
	}
}

// exposition serves a text exposition the test can change, as a scrape
// target.
type exposition struct {
	Addr string
	mu   sync.Mutex
	text string
}

func newExposition(t *testing.T, text string) *exposition {
	t.Helper()
	e := &exposition{text: text}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, e.text)
	}))
	t.Cleanup(srv.Close)
	e.Addr = strings.TrimPrefix(srv.URL, "http://")
	return e
}

func (e *exposition) set(text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.text = text
}

// generator is the generator URL alertd gives the alerts of expr.
func generator(expr string) string {
	return externalURL.String() + "/graph?g0.expr=" + url.QueryEscape(expr) + "&g0.tab=1"
}

// zeroTimestamps returns the data of a query response with the timestamps
// of its samples set to 0, to compare it with a literal.
func zeroTimestamps(t *testing.T, data json.RawMessage) string {
	t.Helper()
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value,omitempty"`
			Values [][]any           `json:"values,omitempty"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(data, &d))
	for i := range d.Result {
		if len(d.Result[i].Value) == 2 {
			d.Result[i].Value[0] = 0
		}
		for j := range d.Result[i].Values {
			d.Result[i].Values[j][0] = 0
		}
	}
	b, err := json.Marshal(d)
	require.NoError(t, err)
	return string(b)
}

// actions returns the "stage/action" of each decision of a history.
func actions(h []Decision) []string {
	out := make([]string, 0, len(h))
	for _, d := range h {
		out = append(out, d.Stage+"/"+d.Action)
	}
	return out
}
