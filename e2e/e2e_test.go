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

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/actions"
	"github.com/modelmon/modelmon/internal/notify/notifytest"
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

// TestDriftStory runs what `make run` shows, on short intervals: the traffic's
// amount shifts 10s in, the sidecar's PSI of it jumps, ModelFeatureDrift
// fires, is classified data_quality/retrain, escalates to the second level of
// its policy through a Slack-compatible API, and triggers one signed retrain
// webhook.
func TestDriftStory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test of real processes; skipped with -short")
	}
	dir := t.TempDir()
	var (
		modelServer = build(t, dir, "examples/model-server")
		exporter    = build(t, dir, "cmd/exporter")
		alertd      = build(t, dir, "cmd/alertd")
		traffic     = build(t, dir, "examples/traffic")
	)

	slack := notifytest.NewSlack(t)
	const secret = "e2e-secret"
	ci := &retrainCI{verifier: &actions.Verifier{Secret: secret}, keys: map[string]int{}}
	ciSrv := httptest.NewServer(ci)
	t.Cleanup(ciSrv.Close)

	modelAddr, proxyAddr, webAddr, alertdAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, dir, "model-server", modelServer, "--listen-address="+modelAddr, "--delay=1ms")
	waitReady(t, "http://"+modelAddr+"/v2/health/ready")
	start(t, dir, "exporter", exporter, "--proxy.upstream=http://"+modelAddr, "--proxy.listen-address="+proxyAddr,
		"--web.listen-address="+webAddr, "--config.file=../examples/modelmon.yml",
		"--drift.learn-samples=1000", "--drift.windows=12s,1h")
	waitReady(t, "http://"+webAddr+"/-/ready")

	rules := filepath.Join(dir, "drift.rules.yml")
	require.NoError(t, os.WriteFile(rules, []byte(`groups:
  - name: drift
    rules:
      - alert: ModelFeatureDrift
        expr: avg by (model, feature, window) (modelmon_feature_drift_psi{window="12s"}) > 0.2
        for: 2s
        labels: {severity: warning, category: drift}
        annotations: {summary: "Feature {{ $labels.feature }} of model {{ $labels.model }} drifted."}
`), 0o600))
	config := filepath.Join(dir, "alertd.yml")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: modelmon
    static_configs: [{targets: [%q]}]
route: {receiver: none, group_by: [alertname, model], group_wait: 1s, group_interval: 5s, repeat_interval: 4h}
receivers:
  - name: none
  - name: ml-oncall
    slack_configs: [{api_url: %q, token: xoxb-e2e, channel: "#ml-oncall"}]
  - name: ml-lead
    slack_configs: [{api_url: %q, token: xoxb-e2e, channel: "#ml-lead"}]
classification:
  rules:
    - {name: drift, matchers: ['alertname="ModelFeatureDrift"'], category: data_quality, priority: high, action: retrain}
escalation_policies:
  - name: data-quality
    matchers: ['category="data_quality"']
    steps: [{notify: [ml-oncall]}, {wait: 5s}, {notify: [ml-lead]}]
actions:
  - name: retrain-fraud
    type: webhook
    url: %q
    secret: %q
    trigger: {matchers: ['category="data_quality"', 'action="retrain"', 'model="fraud"']}
    cooldown: 1h
`, rules, webAddr, slack.URL+"/api/", slack.URL+"/api/", ciSrv.URL+"/retrain", secret), 0o600))
	start(t, dir, "alertd", alertd, "--config.file="+config, "--web.listen-address="+alertdAddr,
		"--web.external-url=http://"+alertdAddr+"/", "--storage.path="+filepath.Join(dir, "alertd-data"))
	waitReady(t, "http://"+alertdAddr+"/-/ready")

	begin := time.Now()
	start(t, dir, "traffic", traffic, "--target=http://"+proxyAddr, "--rate=40", "--malformed-ratio=0", "--drift-period=0",
		"--drift.feature=amount", "--drift.shift=1.5", "--drift.start=10s", "--seed=1")
	api := "http://" + alertdAddr + "/api/v1/"
	step := func(name string) { t.Logf("%5.1fs %s", time.Since(begin).Seconds(), name) }

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
	step("ModelFeatureDrift fires on amount")
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
	step("the incident escalates to level 2")
	require.Equal(t, "data-quality", inc.Escalation.Policy)
	require.ElementsMatch(t, []string{"ml-oncall", "ml-lead"}, inc.Escalation.Notified)

	// 4. Both levels reached the Slack-compatible API.
	require.Eventually(t, func() bool {
		posted := map[string]bool{}
		for _, c := range slack.Calls() {
			if c.Method == "chat.postMessage" && strings.Contains(c.Text, "ModelFeatureDrift") {
				posted[c.Channel] = true
			}
		}
		return posted["#ml-oncall"] && posted["#ml-lead"]
	}, 30*time.Second, 250*time.Millisecond, "Slack did not get the messages of both levels: %+v", slack.Calls())
	step("Slack got #ml-oncall and #ml-lead")
	for _, c := range slack.Calls() {
		require.Equal(t, "Bearer xoxb-e2e", c.Token)
	}

	// 5. The retrain webhook was received, signed, once.
	require.Eventually(t, func() bool {
		keys, _ := ci.counts()
		return keys >= 1
	}, 30*time.Second, 250*time.Millisecond, "the retrain webhook was not received")
	step("the retrain webhook is received and verified")
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
	keys, bad := ci.counts()
	require.Equal(t, 1, keys, "one retrain, however many features drifted")
	require.Zero(t, bad, "every request was correctly signed")
	ci.mu.Lock()
	require.Equal(t, "retrain-fraud", ci.payloads[0]["action"])
	require.Equal(t, "alert", ci.payloads[0]["trigger"])
	ci.mu.Unlock()
}
