// Package prometheustest runs a real Prometheus server for tests: it scrapes
// the targets a test gives it and answers PromQL over its HTTP API.
//
// The server is the prometheus binary on PATH (Debian package prometheus).
// Without it a test is skipped with a message saying so, except under CI
// (CI=true), where .ci/run installs it and its absence is a failure.
package prometheustest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running Prometheus.
type Server struct {
	*Process
}

// Process is a server binary run for a test: Prometheus here, Alertmanager
// in alertmanagertest.
type Process struct {
	// URL is the base URL of its HTTP API, e.g. http://127.0.0.1:40123.
	URL  string
	name string
	cmd  *exec.Cmd
	log  *SyncBuffer
	stop sync.Once
}

// StartProcess runs bin with args, its output collected, and returns once
// url/-/ready answers 200. It is killed when the test ends, and its output
// is logged if the test failed.
func StartProcess(t testing.TB, name, bin, url string, args ...string) *Process {
	t.Helper()
	p := &Process{URL: url, name: name, log: &SyncBuffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("couldn't start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready at %s:\n%s", name, p.URL, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the process and waits for it to exit, as an outage would; the
// test's end does the same. Calls after the first do nothing.
func (p *Process) Stop() {
	p.stop.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
}

// Output returns what the process has logged so far.
func (p *Process) Output() string {
	return p.log.String()
}

// SyncBuffer collects a child process's output while the test may read it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Options configure the server.
type Options struct {
	// Targets are host:port addresses scraped as job "modelmon" under
	// /metrics, each with its own instance label.
	Targets []string
	// ScrapeInterval defaults to 1s.
	ScrapeInterval time.Duration
	// RuleFiles are loaded as rule_files; EvaluationInterval defaults to 1s.
	RuleFiles          []string
	EvaluationInterval time.Duration
	// NativeHistograms turns on the native-histograms feature.
	NativeHistograms bool
	// Alertmanagers are host:port addresses Prometheus sends its alerts to
	// (alerting.alertmanagers, api_version v2).
	Alertmanagers []string
	// AlertmanagerPathPrefix is the path prefix of the Alertmanagers' API.
	AlertmanagerPathPrefix string
	// Args are extra command-line flags, e.g. "--rules.alert.resend-delay=1s".
	Args []string
}

// Binary returns the path of the prometheus binary, or skips the test (fails
// it under CI) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	return binary(t, "prometheus", "apt-get install prometheus")
}

// Promtool returns the path of promtool, as Binary does.
func Promtool(t testing.TB) string {
	t.Helper()
	return binary(t, "promtool", "apt-get install prometheus")
}

func binary(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found on PATH (%s)", name, install)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + ": CI must install it")
		}
		t.Skip(msg + "; skipping")
	}
	return p
}

// Start runs Prometheus until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := Binary(t)
	if o.ScrapeInterval == 0 {
		o.ScrapeInterval = time.Second
	}
	if o.EvaluationInterval == 0 {
		o.EvaluationInterval = time.Second
	}
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		o.ScrapeInterval, o.ScrapeInterval, o.EvaluationInterval)
	if len(o.RuleFiles) > 0 {
		cfg.WriteString("rule_files:\n")
		for _, f := range o.RuleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&cfg, "  - %q\n", abs)
		}
	}
	if len(o.Alertmanagers) > 0 {
		cfg.WriteString("alerting:\n  alertmanagers:\n    - api_version: v2\n")
		if o.AlertmanagerPathPrefix != "" {
			fmt.Fprintf(&cfg, "      path_prefix: %q\n", o.AlertmanagerPathPrefix)
		}
		cfg.WriteString("      static_configs:\n        - targets:\n")
		for _, am := range o.Alertmanagers {
			fmt.Fprintf(&cfg, "            - %q\n", am)
		}
	}
	cfg.WriteString("scrape_configs:\n  - job_name: modelmon\n    static_configs:\n      - targets:\n")
	for _, target := range o.Targets {
		fmt.Fprintf(&cfg, "          - %q\n", target)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	args := []string{
		"--config.file=" + cfgFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=warn",
	}
	if o.NativeHistograms {
		args = append(args, "--enable-feature=native-histograms")
	}
	args = append(args, o.Args...)
	return &Server{StartProcess(t, "prometheus", bin, "http://"+addr, args...)}
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates expr now and returns the resulting vector.
func (s *Server) Query(expr string) ([]Sample, error) {
	resp, err := http.Get(s.URL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("couldn't decode query response: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q failed: %s", expr, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q returned a %s, want a vector", expr, r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, res := range r.Data.Result {
		str, _ := res.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("bad sample value %v: %w", res.Value[1], err)
		}
		out = append(out, Sample{Metric: res.Metric, Value: v})
	}
	return out, nil
}

// QueryScalar evaluates expr, which must return exactly one sample.
func (s *Server) QueryScalar(expr string) (float64, error) {
	v, err := s.Query(expr)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("query %q returned %d samples, want 1", expr, len(v))
	}
	return v[0].Value, nil
}

// WaitFor polls expr until it returns exactly one sample equal to want, and
// fails the test after timeout with the last value seen.
func (s *Server) WaitFor(t testing.TB, expr string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		v, err := s.QueryScalar(expr)
		if err == nil && v == want {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strconv.FormatFloat(v, 'g', -1, 64)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %v, last got %s (after %s)\nprometheus output:\n%s", expr, want, last, timeout, s.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of
// the call.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
