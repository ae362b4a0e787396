// Package alertmanagertest runs a real Alertmanager for tests: it takes the
// configuration a test gives it and answers its HTTP API, so that tests can
// forward alerts to it and see what it holds and sends.
//
// The server is the prometheus-alertmanager binary (Debian package
// prometheus-alertmanager) on PATH or in /usr/bin, or an alertmanager binary
// on PATH. Without one a test is skipped with a message saying so, except
// under CI (CI=true), where its absence is a failure.
package alertmanagertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// debianBinary is where the Debian package installs Alertmanager.
const debianBinary = "/usr/bin/prometheus-alertmanager"

// Server is a running Alertmanager.
type Server struct {
	*prometheustest.Process
}

// Binary returns the path of the Alertmanager binary, or skips the test
// (fails it under CI) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus-alertmanager"); err == nil {
		return p
	}
	if _, err := os.Stat(debianBinary); err == nil {
		return debianBinary
	}
	if p, err := exec.LookPath("alertmanager"); err == nil {
		return p
	}
	missing(t, "neither prometheus-alertmanager nor alertmanager found on PATH or in /usr/bin (apt-get install prometheus-alertmanager)")
	return ""
}

// missing skips t for what msg says is missing, and fails it under CI,
// which must install it.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + ": CI must install it")
	}
	t.Skip(msg + "; skipping")
}

// Amtool returns the path of amtool, Alertmanager's command-line client
// (in Debian's prometheus-alertmanager), or skips the test (fails it under
// CI) when there is none.
func Amtool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("amtool"); err == nil {
		return p
	}
	missing(t, "amtool not found on PATH (apt-get install prometheus-alertmanager)")
	return ""
}

// Start runs Alertmanager with config (the content of alertmanager.yml) on
// a free port of 127.0.0.1, with clustering disabled, its storage in a
// temporary directory and its URL as its external URL (which its webhooks
// send as externalURL), and returns once it is ready. It is killed when the
// test ends, and its output is logged if the test failed.
func Start(t testing.TB, config string) *Server {
	t.Helper()
	return StartBehind(t, config, "")
}

// StartBehind runs Alertmanager as Start does, with externalURL as its
// external URL (its own URL when empty): the URL of a proxy in front of
// it, say, which its webhooks then send as externalURL. The Server's URL
// is still its own.
func StartBehind(t testing.TB, config, externalURL string) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := prometheustest.FreeAddr(t)
	if externalURL == "" {
		externalURL = "http://" + addr
	}
	return &Server{prometheustest.StartProcess(t, "alertmanager", bin, "http://"+addr,
		"--config.file="+cfgFile,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.external-url="+externalURL,
		"--cluster.listen-address=", // no gossip: a single instance
		"--log.level=warn",
	)}
}

// Alerts returns the alerts Alertmanager holds, from GET /api/v2/alerts.
// Like the API, it leaves out alerts whose endsAt has passed.
func (s *Server) Alerts(ctx context.Context) (models.GettableAlerts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v2/alerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("couldn't list alerts: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("couldn't list alerts: unexpected status %s", resp.Status)
	}
	var alerts models.GettableAlerts
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		return nil, fmt.Errorf("couldn't decode alerts: %w", err)
	}
	return alerts, nil
}
