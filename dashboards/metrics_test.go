package dashboards

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

// pendingAlertdMetrics are alertd metrics the dashboards use before alertd
// exposes them (a metric of a feature in the making). The test fails once
// one of them is exposed, so that it is taken off this list and checked
// like the others.
var pendingAlertdMetrics = map[string]bool{}

// buildBinaries compiles the exporter and alertd once for the tests of this
// package.
var buildBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "modelmon-dashboards-")
	if err != nil {
		return "", err
	}
	for _, name := range []string{"exporter", "alertd"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "github.com/modelmon/modelmon/cmd/"+name).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
		}
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := buildBinaries(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// waitExposed waits until the exposition at web has a line that starts
// with sample, for at most 10s.
func waitExposed(web, sample string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get("http://" + web + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, sample+" ") {
				return
			}
		}
	}
}

// process is a binary run for a test, killed when the test ends.
type process struct {
	cmd *exec.Cmd
	out *strings.Builder
	mu  *sync.Mutex
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// start runs bin and waits until web answers /-/ready.
func start(t *testing.T, bin, web string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &strings.Builder{}, mu: &sync.Mutex{}}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out.String())
			p.mu.Unlock()
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + web + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 20*time.Millisecond, "%s did not become ready", bin)
	return p
}

func post(t *testing.T, url, contentType, body string, header ...string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// scrape reads web's /metrics in the protobuf format, which carries native
// histograms.
func scrape(t *testing.T, web string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+web+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	fams := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		fams[mf.GetName()] = &mf
	}
	return fams
}

// exposed is what a binary exposes: each series name a query may use and
// whether it has a model label.
type exposed struct {
	names    map[string]bool
	native   map[string]bool // histograms with native buckets, by family name
	classic  map[string]bool // names of the classic histograms' series
	modelled map[string]bool // names whose series have a model label
}

func exposition(fams map[string]*dto.MetricFamily) exposed {
	e := exposed{names: map[string]bool{}, native: map[string]bool{}, classic: map[string]bool{}, modelled: map[string]bool{}}
	for name, mf := range fams {
		names := []string{name}
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			names = []string{name + "_bucket", name + "_sum", name + "_count"}
			for _, n := range names {
				e.classic[n] = true
			}
			for _, m := range mf.GetMetric() {
				if m.GetHistogram().Schema != nil {
					e.native[name] = true
					names = append(names, name)
					break
				}
			}
		}
		model := false
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				model = model || l.GetName() == "model"
			}
		}
		for _, n := range names {
			e.names[n] = true
			e.modelled[n] = model
		}
	}
	return e
}

// runExporter starts the sidecar in front of a model server, with drift
// (a reference learned from the first records) and labels, and drives
// enough traffic through it that its labelled series appear.
func runExporter(t *testing.T, bin string) exposed {
	t.Helper()
	proxy, web := freeAddr(t), freeAddr(t)
	// A token stream, from the model server and the shadow alike: its
	// next token goes once the sidecar has read its first (firstByte, the
	// histogram that times it, has an observation), so that it comes in
	// pieces and has a time per output token.
	streamChat := func(w http.ResponseWriter, r *http.Request, body []byte, firstByte string) bool {
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") || !strings.Contains(string(body), `"stream":true`) {
			return false
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i, ev := range []string{`{"choices":[{"index":0,"delta":{"content":"H"},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{"content":"i!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3}}`} {
			if i == 1 {
				waitExposed(web, firstByte+`_count{model="llm"}`)
			}
			_, _ = io.WriteString(w, "data: "+ev+"\n\n")
			w.(http.Flusher).Flush()
		}
		return true
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if streamChat(w, r, body, "modelmon_prediction_time_to_first_byte_seconds") {
			return
		}
		if strings.Contains(r.URL.Path, "broken") {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			_, _ = io.WriteString(w, `{"choices":[{"index":0,"message":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`)
			return
		}
		if strings.Contains(r.URL.Path, "clf") {
			_, _ = io.WriteString(w, `{"predictions":["yes"]}`)
			return
		}
		if strings.Contains(r.URL.Path, "stream") {
			// Chunked: the sidecar streams it.
			_, _ = io.WriteString(w, `{"predictions":`)
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, `[1]}`)
			return
		}
		_, _ = io.WriteString(w, `{"predictions":[1]}`)
	}))
	t.Cleanup(upstream.Close)
	// A shadow that fails one request and is slow to answer the others, so
	// that some of the requests mirrored to it are dropped.
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if streamChat(w, r, body, "modelmon_shadow_time_to_first_byte_seconds") {
			return
		}
		if strings.Contains(string(body), `"amount":0,`) {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "clf") {
			_, _ = io.WriteString(w, `{"predictions":["no"]}`)
			return
		}
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(w, `{"predictions":[2]}`)
	}))
	t.Cleanup(shadow.Close)
	payloadLog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(payloadLog.Close)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    feature_importance: {amount: 1, country: 0.5}\n  - name: reg\n    segments: [device]\n"), 0o644))
	start(t, filepath.Join(bin, "exporter"), web, "--config.file="+cfg,
		"--proxy.upstream="+upstream.URL, "--proxy.listen-address="+proxy, "--web.listen-address="+web,
		"--drift.learn-samples=20", "--drift.min-samples=5", "--labels.enabled",
		"--shadow.upstream="+shadow.URL, "--shadow.concurrency=1", "--payload-log.url="+payloadLog.URL)

	// A classifier's and a regression's predictions compared with the
	// shadow before the burst below keeps it busy, and labelled below; the
	// regression's by segment too (its device __missing__).
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/models/clf:predict", "application/json", `{"instances":[[1]]}`, "X-Request-Id", "k1"))
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/models/reg:predict", "application/json", `{"instances":[[1]]}`, "X-Request-Id", "g1"))
	require.Eventually(t, func() bool {
		return scrape(t, web)["modelmon_shadow_pending_predictions"].GetMetric()[0].GetGauge().GetValue() == 2
	}, 10*time.Second, 10*time.Millisecond, "the shadow did not answer the classifier's and the regression's predictions")
	// A token stream the shadow streams too, before the burst keeps it busy.
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/chat/completions", "application/json", `{"messages":[{"role":"user","content":"Hi"}],"stream":true}`, "X-Model-Name", "llm"))
	require.Eventually(t, func() bool {
		fams := scrape(t, web)
		return fams["modelmon_shadow_time_to_first_byte_seconds"] != nil && fams["modelmon_shadow_time_per_output_token_seconds"] != nil
	}, 10*time.Second, 10*time.Millisecond, "the shadow's token stream was not timed")
	for i := range 40 {
		body := fmt.Sprintf(`{"instances":[{"amount":%d,"country":"DE"}]}`, i)
		require.Equal(t, 200, post(t, "http://"+proxy+"/v1/models/fraud:predict", "application/json", body, "X-Request-Id", fmt.Sprintf("r%d", i)))
	}
	require.Equal(t, 500, post(t, "http://"+proxy+"/v1/models/broken:predict", "application/json", `{"instances":[[1]]}`))
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/models/stream:predict", "application/json", `{"instances":[[1]]}`))
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/models/fraud:predict", "application/json", `{"instances":`))
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/chat/completions", "application/json", `{"messages":[{"role":"user","content":"Hi"}]}`, "X-Model-Name", "llm"))
	require.Equal(t, 200, post(t, "http://"+proxy+"/v1/chat/completions", "application/json", `{"messages":[{"role":"user","content":"Hi"}],"stream":true}`, "X-Model-Name", "llm"))
	require.Equal(t, 200, post(t, "http://"+proxy+"/seldon/prod/bandit/api/v1.0/feedback", "application/json", `{"reward": 1}`))
	require.Equal(t, 200, post(t, "http://"+web+"/v1/observations", "application/json",
		`[{"model":"churn","version":"v1","id":"c1","features":{"x":1},"prediction":"yes"},{"model":"churn","version":"v1","id":"c2","features":{"x":2},"prediction":"no"},`+
			`{"model":"churn","version":"v1","id":"c3","features":{"x":3},"prediction":{"label":"yes","score":0.8}}]`))
	require.Equal(t, 200, post(t, "http://"+web+"/v1/labels", "application/json",
		`[{"id":"c1","label":"yes"},{"id":"c2","label":"yes"},{"id":"r1","label":1},{"id":"k1","label":"yes"},{"id":"g1","label":1.5}]`))

	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		fams = scrape(t, web)
		return fams["modelmon_feature_drift_psi"] != nil && fams["modelmon_payload_errors_total"] != nil &&
			fams["modelmon_prediction_time_to_first_byte_seconds"] != nil &&
			fams["modelmon_prediction_outcome_total"] != nil && fams["modelmon_generation_tokens_total"] != nil &&
			fams["modelmon_generation_time_per_output_token_seconds"] != nil && fams["modelmon_feedback_reward"] != nil &&
			fams["modelmon_shadow_errors_total"] != nil && fams["modelmon_shadow_dropped_total"] != nil &&
			fams["modelmon_shadow_disagreements_total"] != nil && fams["modelmon_shadow_absolute_difference_total"] != nil &&
			fams["modelmon_segment_prediction_error_magnitude"] != nil
	}, 30*time.Second, 50*time.Millisecond, "the sidecar's drift, payload and quality series did not appear")
	return exposition(fams)
}

// runAlertd starts alertd on its embedded engine with a rule that fires, a
// webhook receiver, an anomaly detector and an action, and gives it a deployment, a silenced
// alert and a verdict on a page, so that its labelled series appear. The
// precision is computed from the ledger at start and then every minute, so
// alertd is restarted once the verdict is in. A second alertd, in remote
// mode on the first, exposes the remote data source's metrics.
func runAlertd(t *testing.T, bin string) (exposed, string) {
	t.Helper()
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(receiver.Close)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.rules.yml"), []byte(`groups:
  - name: test
    rules:
      - alert: Always
        expr: vector(1)
        labels: {severity: warning, category: drift, model: fraud}
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alertd.yml"), []byte(`global: {evaluation_interval: 1s}
rule_files: [test.rules.yml]
route: {receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: hook
    webhook_configs: [{url: "`+receiver.URL+`/"}]
anomaly_detectors:
  - name: sawtooth
    expr: vector(time() % 5)
    algorithm: mad
    interval: 1s
    min_history: 2
    history: 0s
escalation_policies:
  - name: oncall
    matchers: ['alertname="Always"']
    steps: [{notify: [hook]}]
actions:
  - name: retrain
    type: webhook
    url: `+receiver.URL+`/retrain
    secret: s3cret
    trigger: {matchers: ['alertname="Never"']}
`), 0o644))
	web := freeAddr(t)
	base := "http://" + web
	args := []string{"--config.file=" + filepath.Join(dir, "alertd.yml"), "--web.listen-address=" + web,
		"--storage.path=" + filepath.Join(dir, "data"), "--rules.alert.resend-delay=1s"}
	first := start(t, filepath.Join(bin, "alertd"), web, args...)

	require.Equal(t, 200, post(t, base+"/api/v1/deployments", "application/json",
		`{"model":"fraud","version":"v2","environment":"prod","commit_time":"2025-06-03T09:12:00Z"}`))
	require.Equal(t, 200, post(t, base+"/api/v1/silences", "application/json",
		`{"matchers":["alertname=\"Pushed\""],"duration":"1h","createdBy":"test","comment":"dashboards"}`))
	require.Equal(t, 200, post(t, base+"/api/v2/alerts", "application/json", `[{"labels":{"alertname":"Pushed","model":"fraud"}}]`))
	var fingerprint string
	require.Eventually(t, func() bool {
		fams := scrape(t, web)
		if pages := fams[alertdPages]; pages == nil || pages.GetMetric()[0].GetCounter().GetValue() == 0 {
			return false
		}
		resp, err := http.Get(base + "/api/v1/alerts")
		require.NoError(t, err)
		defer resp.Body.Close()
		var alerts struct {
			Data struct {
				Alerts []struct {
					Labels      map[string]string `json:"labels"`
					Fingerprint string            `json:"fingerprint"`
				} `json:"alerts"`
			} `json:"data"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&alerts))
		for _, a := range alerts.Data.Alerts {
			if a.Labels["alertname"] == "Always" {
				fingerprint = a.Fingerprint
			}
		}
		return fingerprint != ""
	}, 30*time.Second, 50*time.Millisecond, "the rule's alert was not paged")
	require.Equal(t, 200, post(t, base+"/api/v1/alerts/"+fingerprint+"/feedback", "application/json", `{"verdict":"true_positive","by":"test"}`))

	// Counters start at 0 with each process: what the first one counted is
	// kept, and what the second computes from the ledger added.
	fams := scrape(t, web)
	require.NotNil(t, fams[alertdAlertsSuppressed], "the silenced alert was not counted")
	first.stop()
	start(t, filepath.Join(bin, "alertd"), web, args...)
	require.Eventually(t, func() bool {
		again := scrape(t, web)
		if again[alertdPrecision] == nil {
			return false
		}
		for name, mf := range again {
			if fams[name] == nil {
				fams[name] = mf
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "alertd_alert_precision_ratio did not appear")

	// The remote data source's metrics, of an alertd in remote mode: its
	// data source is the first, which answers PromQL.
	remoteWeb := freeAddr(t)
	start(t, filepath.Join(bin, "alertd"), remoteWeb, "--config.file="+filepath.Join(dir, "alertd.yml"), "--web.listen-address="+remoteWeb,
		"--storage.path="+filepath.Join(dir, "remote"), "--datasource.url="+base)
	for name, mf := range scrape(t, remoteWeb) {
		if fams[name] == nil {
			fams[name] = mf
		}
	}
	return exposition(fams), base
}

// Every series a dashboard query uses is one the binaries expose: the
// exporter's and alertd's, each started for real with a little traffic;
// recording rules of the repository's rule files; ALERTS from alertd's
// embedded engine. A bare histogram name must be a native histogram, and
// a selector of a metric with a model label must take it from the model
// variable.
func TestMetricsExposed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the exporter and alertd")
	}
	bin, err := buildBinaries()
	require.NoError(t, err)
	exporter := runExporter(t, bin)
	alertdExp, alertdURL := runAlertd(t, bin)
	recorded := recordingRules(t)

	// ALERTS is written by the engine that evaluates the rules: alertd's.
	require.Eventually(t, func() bool {
		resp, err := http.Get(alertdURL + "/api/v1/query?" + url.Values{"query": {`ALERTS{alertstate="firing"}`}}.Encode())
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `"alertname":"Always"`)
	}, 30*time.Second, 50*time.Millisecond, "no ALERTS series in alertd's engine")

	usedPending := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		for _, vs := range selectors(q.parsed) {
			name := vs.Name
			var e exposed
			switch {
			case isRecorded(name):
				require.NotEmpty(t, recorded[name], "%s: %s is not a recording rule of rules/ or deploy/prometheus/", q, name)
				continue
			case name == "ALERTS":
				continue
			case strings.HasPrefix(name, "modelmon_"):
				e = exporter
			case strings.HasPrefix(name, "alertd_"), strings.HasPrefix(name, "prometheus_"):
				if pendingAlertdMetrics[name] {
					usedPending[name] = true
					require.False(t, alertdExp.names[name], "%s is exposed now: remove it from pendingAlertdMetrics", name)
					continue
				}
				e = alertdExp
			default:
				t.Fatalf("%s: %s is neither the exporter's nor alertd's", q, name)
			}
			require.False(t, e.classic[name+"_bucket"] && !e.native[name], "%s: %s has no native histogram: use %s_bucket", q, name, name)
			require.True(t, e.names[name], "%s: %s is not exposed", q, name)
			if e.modelled[name] && !strings.HasPrefix(q.where, "variable") {
				require.True(t, usesVariable(vs, "model"), "%s: %s has a model label: select it with model=~\"$model\"", q, name)
			}
		}
	}
	for name := range pendingAlertdMetrics {
		require.True(t, usedPending[name], "%s is in pendingAlertdMetrics but no dashboard uses it", name)
	}
}
