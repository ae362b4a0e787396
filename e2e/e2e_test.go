package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/actions"
	"github.com/modelmon/modelmon/internal/alertmanagertest"
	"github.com/modelmon/modelmon/internal/notify/notifytest"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// build compiles the main package at pkg (relative to the module root) into
// dir and returns the binary's path.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, "../"+pkg).CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// start runs bin with args until the test ends, its output in dir/<name>.log,
// which is printed if the test fails.
func start(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log (tail):\n%s", name, b)
		}
	})
}

// waitReady waits for url to answer 200.
func waitReady(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "%s did not become ready", url)
}

// getJSON decodes the "data" of an alertd API answer into v.
func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	var body struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false
	}
	return json.Unmarshal(body.Data, v) == nil
}

// scrapeValue returns the value of the sample of the unlabelled metric name
// on the /metrics page at url.
func scrapeValue(t *testing.T, url, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, false
	}
	f, ok := families[name]
	if !ok || len(f.GetMetric()) != 1 {
		return 0, false
	}
	m := f.GetMetric()[0]
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

// retrainCI stands in for the CI a retrain webhook starts: it verifies
// each request's signature and counts the distinct idempotency keys.
type retrainCI struct {
	verifier *actions.Verifier

	mu       sync.Mutex
	keys     map[string]int
	bad      int
	payloads []map[string]any
}

func (c *retrainCI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.verifier.Verify(r.Header, b, time.Now()); err != nil {
		c.bad++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var p map[string]any
	_ = json.Unmarshal(b, &p)
	c.payloads = append(c.payloads, p)
	c.keys[r.Header.Get("Idempotency-Key")]++
	w.WriteHeader(http.StatusAccepted)
}

func (c *retrainCI) counts() (keys, bad int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys), c.bad
}

type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Source      string            `json:"source"`
}

type incident struct {
	ID          string            `json:"id"`
	GroupLabels map[string]string `json:"groupLabels"`
	Escalation  *struct {
		Policy   string   `json:"policy"`
		Level    int      `json:"level"`
		Notified []string `json:"notified"`
	} `json:"escalation"`
}

type actionRequest struct {
	Action string `json:"action"`
	State  string `json:"state"`
	Model  string `json:"model"`
}

// story is what both end-to-end tests share: the binaries, the example model
// server and the sidecar in front of it, local stand-ins for Slack and for
// the CI a retrain webhook starts, and the traffic whose amount shifts 10s
// after startTraffic.
type story struct {
	t      *testing.T
	dir    string
	alertd string
	slack  *notifytest.Slack
	ci     *retrainCI
	ciURL  string
	// metricsAddr is the sidecar's /metrics listener.
	metricsAddr  string
	begin        time.Time
	startTraffic func()
}

const retrainSecret = "e2e-secret"

// driftRules is the drift alert of the stories: the sidecar's PSI over its
// 12s window above 0.2 for 2s.
const driftRules = `groups:
  - name: drift
    rules:
      - alert: ModelFeatureDrift
        expr: avg by (model, feature, window) (modelmon_feature_drift_psi{window="12s"}) > 0.2
        for: 2s
        labels: {severity: warning, category: drift}
        annotations: {summary: "Feature {{ $labels.feature }} of model {{ $labels.model }} drifted."}
`

func newStory(t *testing.T) *story {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test of real processes; skipped with -short")
	}
	s := &story{t: t, dir: t.TempDir()}
	var (
		modelServer = build(t, s.dir, "examples/model-server")
		exporter    = build(t, s.dir, "cmd/exporter")
		traffic     = build(t, s.dir, "examples/traffic")
	)
	s.alertd = build(t, s.dir, "cmd/alertd")
	s.slack = notifytest.NewSlack(t)
	s.ci = &retrainCI{verifier: &actions.Verifier{Secret: retrainSecret}, keys: map[string]int{}}
	ciSrv := httptest.NewServer(s.ci)
	t.Cleanup(ciSrv.Close)
	s.ciURL = ciSrv.URL + "/retrain"

	modelAddr, proxyAddr := freeAddr(t), freeAddr(t)
	s.metricsAddr = freeAddr(t)
	start(t, s.dir, "model-server", modelServer, "--listen-address="+modelAddr, "--delay=1ms")
	waitReady(t, "http://"+modelAddr+"/v2/health/ready")
	start(t, s.dir, "exporter", exporter, "--proxy.upstream=http://"+modelAddr, "--proxy.listen-address="+proxyAddr,
		"--web.listen-address="+s.metricsAddr, "--config.file=../examples/modelmon.yml",
		"--drift.learn-samples=1000", "--drift.windows=12s,1h")
	waitReady(t, "http://"+s.metricsAddr+"/-/ready")
	s.startTraffic = func() {
		s.begin = time.Now()
		start(t, s.dir, "traffic", traffic, "--target=http://"+proxyAddr, "--rate=40", "--malformed-ratio=0", "--drift-period=0",
			"--drift.feature=amount", "--drift.shift=1.5", "--drift.start=10s", "--seed=1")
	}
	return s
}

// writeFile writes content to name in the story's directory and returns
// its path.
func (s *story) writeFile(name, content string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	require.NoError(s.t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// startAlertd runs alertd on addr with head (data source, rules, route) followed by
// the receivers, classification, escalation policy and retrain action of
// the story, and returns the base URL of its API.
func (s *story) startAlertd(addr, head, receivers string) string {
	s.t.Helper()
	config := s.writeFile("alertd.yml", head+fmt.Sprintf(`receivers:
  - name: ml-oncall
    slack_configs: [{api_url: %[1]q, token: xoxb-e2e, channel: "#ml-oncall"}]
  - name: ml-lead
    slack_configs: [{api_url: %[1]q, token: xoxb-e2e, channel: "#ml-lead"}]
%[2]sclassification:
  rules:
    - {name: drift, matchers: ['alertname="ModelFeatureDrift"'], category: data_quality, priority: high, action: retrain}
escalation_policies:
  - name: data-quality
    matchers: ['category="data_quality"']
    steps: [{notify: [ml-oncall]}, {wait: 5s}, {notify: [ml-lead]}]
actions:
  - name: retrain-fraud
    type: webhook
    url: %[3]q
    secret: %[4]q
    trigger: {matchers: ['category="data_quality"', 'action="retrain"', 'model="fraud"']}
    cooldown: 1h
`, s.slack.URL+"/api/", receivers, s.ciURL, retrainSecret))
	start(s.t, s.dir, "alertd", s.alertd, "--config.file="+config, "--web.listen-address="+addr,
		"--web.external-url=http://"+addr+"/", "--storage.path="+filepath.Join(s.dir, "alertd-data"))
	waitReady(s.t, "http://"+addr+"/-/ready")
	return "http://" + addr
}

func (s *story) step(name string) {
	s.t.Logf("%5.1fs %s", time.Since(s.begin).Seconds(), name)
}

// check follows the story through alertd at base: the drift alert on
// amount fires (from source) and is classified, its incident escalates to
// level 2 through the Slack-compatible API, and one signed retrain webhook
// is delivered. It returns the alert as alertd shows it.
func (s *story) check(base, source string) alert {
	t := s.t
	api := base + "/api/v1/"

	// 1. The drift alert fires, and 2. is classified.
	var drift alert
	require.Eventually(t, func() bool {
		var got struct{ Alerts []alert }
		if !getJSON(t, api+"alerts", &got) {
			return false
		}
		for _, a := range got.Alerts {
			if a.Labels["alertname"] == "ModelFeatureDrift" && a.Labels["feature"] == "amount" && a.State == "firing" {
				drift = a
				return true
			}
		}
		return false
	}, 90*time.Second, 250*time.Millisecond, "ModelFeatureDrift on amount did not fire")
	s.step("ModelFeatureDrift fires on amount")
	require.Equal(t, source, drift.Source)
	require.Equal(t, "data_quality", drift.Annotations["category"])
	require.Equal(t, "high", drift.Annotations["priority"])
	require.Equal(t, "retrain", drift.Annotations["action"])
	require.Equal(t, "drift", drift.Labels["category"], "the classification is in the annotations; the rule's label stays")

	// 3. Its incident escalates to level 2 of the policy.
	var inc incident
	require.Eventually(t, func() bool {
		var got struct{ Incidents []incident }
		if !getJSON(t, api+"incidents", &got) {
			return false
		}
		for _, i := range got.Incidents {
			if i.GroupLabels["alertname"] == "ModelFeatureDrift" && i.Escalation != nil && i.Escalation.Level >= 2 {
				inc = i
				return true
			}
		}
		return false
	}, 60*time.Second, 250*time.Millisecond, "the drift incident did not escalate to level 2")
	s.step("the incident escalates to level 2")
	require.Equal(t, "data-quality", inc.Escalation.Policy)
	require.ElementsMatch(t, []string{"ml-oncall", "ml-lead"}, inc.Escalation.Notified)

	// 4. Both levels reached the Slack-compatible API.
	require.Eventually(t, func() bool {
		posted := map[string]bool{}
		for _, c := range s.slack.Calls() {
			if c.Method == "chat.postMessage" && strings.Contains(c.Text, "ModelFeatureDrift") {
				posted[c.Channel] = true
			}
		}
		return posted["#ml-oncall"] && posted["#ml-lead"]
	}, 30*time.Second, 250*time.Millisecond, "Slack did not get the messages of both levels: %+v", s.slack.Calls())
	s.step("Slack got #ml-oncall and #ml-lead")
	for _, c := range s.slack.Calls() {
		require.Equal(t, "Bearer xoxb-e2e", c.Token)
	}

	// 5. The retrain webhook was received, signed, once.
	require.Eventually(t, func() bool {
		keys, _ := s.ci.counts()
		return keys >= 1
	}, 30*time.Second, 250*time.Millisecond, "the retrain webhook was not received")
	s.step("the retrain webhook is received and verified")
	var reqs struct{ Requests []actionRequest }
	require.Eventually(t, func() bool {
		return getJSON(t, api+"actions/requests?action=retrain-fraud", &reqs) && len(reqs.Requests) > 0
	}, 10*time.Second, 250*time.Millisecond)
	delivered := 0
	for _, r := range reqs.Requests {
		if r.State == "delivered" {
			delivered++
			require.Equal(t, "fraud", r.Model)
		} else {
			require.Equal(t, "refused", r.State, "another drifted feature of the model is held back by the cooldown")
		}
	}
	require.Equal(t, 1, delivered)
	keys, bad := s.ci.counts()
	require.Equal(t, 1, keys, "one retrain, however many features drifted")
	require.Zero(t, bad, "every request was correctly signed")
	s.ci.mu.Lock()
	require.Equal(t, "retrain-fraud", s.ci.payloads[0]["action"])
	require.Equal(t, "alert", s.ci.payloads[0]["trigger"])
	s.ci.mu.Unlock()
	return drift
}

// TestDriftStory runs what `make run` shows, on short intervals: the traffic's
// amount shifts 10s in, the sidecar's PSI of it jumps, ModelFeatureDrift
// fires in alertd's embedded engine, is classified data_quality/retrain,
// escalates to the second level of its policy through a Slack-compatible
// API, and triggers one signed retrain webhook.
func TestDriftStory(t *testing.T) {
	s := newStory(t)
	rules := s.writeFile("drift.rules.yml", driftRules)
	base := s.startAlertd(freeAddr(t), fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: modelmon
    static_configs: [{targets: [%q]}]
route: {receiver: none, group_by: [alertname, model], group_wait: 1s, group_interval: 5s, repeat_interval: 4h}
`, rules, s.metricsAddr), "  - name: none\n")
	s.startTraffic()
	s.check(base, "rule")
}

// amWebhook stands in for the receiver an Alertmanager sends to: it keeps
// the payloads.
type amWebhook struct {
	mu       sync.Mutex
	payloads []notifytest.Payload
}

func (h *amWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p notifytest.Payload
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.payloads = append(h.payloads, p)
	h.mu.Unlock()
}

// firing returns the firing alert named alertname with the label feature,
// from the payloads so far.
func (h *amWebhook) firing(alertname, feature string) (notifytest.PayloadAlert, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.payloads {
		for _, a := range p.Alerts {
			if a.Status == "firing" && a.Labels["alertname"] == alertname && a.Labels["feature"] == feature {
				return a, true
			}
		}
	}
	return notifytest.PayloadAlert{}, false
}

// TestDriftStoryWithPrometheusAndAlertmanager tells the same story as
// TestDriftStory in the arrangement of deploy/kubernetes: a real Prometheus
// scrapes the sidecar, evaluates the drift rule and sends its alerts to
// alertd as to its Alertmanager; alertd queries that Prometheus as its data
// source, classifies and escalates the alert to Slack, triggers the retrain,
// and forwards the alert with its classification to the team's real
// Alertmanager, which notifies its own webhook receiver.
func TestDriftStoryWithPrometheusAndAlertmanager(t *testing.T) {
	s := newStory(t)
	hook := &amWebhook{}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	am := alertmanagertest.Start(t, fmt.Sprintf(`route: {receiver: hook, group_by: [alertname, model], group_wait: 1s, group_interval: 5s, repeat_interval: 4h}
receivers:
  - name: hook
    webhook_configs: [{url: %q}]
`, hookSrv.URL))

	// alertd must listen before Prometheus sends to it: its address is
	// chosen first, Prometheus started, then alertd pointed at Prometheus.
	alertdAddr := freeAddr(t)
	prom := prometheustest.Start(t, prometheustest.Options{
		Targets:       []string{s.metricsAddr},
		RuleFiles:     []string{s.writeFile("drift.rules.yml", driftRules)},
		Alertmanagers: []string{alertdAddr},
		Args:          []string{"--rules.alert.resend-delay=1s"},
	})
	base := s.startAlertd(alertdAddr, fmt.Sprintf(`datasource: {url: %q}
route: {receiver: team-alertmanager, group_by: [alertname, model], group_wait: 1s, group_interval: 5s, repeat_interval: 4h}
`, prom.URL), fmt.Sprintf("  - name: team-alertmanager\n    alertmanager_configs: [{url: %q}]\n", am.URL))
	s.startTraffic()

	drift := s.check(base, "prometheus")

	// Prometheus itself holds the alert it evaluated.
	prom.WaitFor(t, `count(ALERTS{alertname="ModelFeatureDrift", feature="amount", alertstate="firing"})`, 1, 10*time.Second)

	// alertd read the same Prometheus as its data source.
	require.Eventually(t, func() bool {
		v, ok := scrapeValue(t, base+"/metrics", "alertd_datasource_up")
		return ok && v == 1
	}, 20*time.Second, 250*time.Millisecond, "alertd_datasource_up did not become 1")

	// The team's Alertmanager holds the alert with alertd's classification
	// and notified its receiver.
	require.Eventually(t, func() bool {
		alerts, err := am.Alerts(t.Context())
		if err != nil {
			return false
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "ModelFeatureDrift" && a.Labels["feature"] == "amount" &&
				a.Annotations["category"] == "data_quality" && a.Annotations["priority"] == "high" {
				return true
			}
		}
		return false
	}, 30*time.Second, 250*time.Millisecond, "Alertmanager does not hold the classified drift alert")
	s.step("Alertmanager holds the classified alert")
	var got notifytest.PayloadAlert
	require.Eventually(t, func() bool {
		var ok bool
		got, ok = hook.firing("ModelFeatureDrift", "amount")
		return ok
	}, 30*time.Second, 250*time.Millisecond, "Alertmanager's webhook receiver got no drift alert")
	s.step("Alertmanager's receiver is notified")
	require.Equal(t, "retrain", got.Annotations["action"])
	require.Equal(t, drift.Labels, got.Labels, "the labels pass through alertd and Alertmanager unchanged")
	require.NotEmpty(t, got.GeneratorURL)
}
