package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/readmetest"
)

// buildBinary compiles the exporter once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "exporter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// The binary starts on its defaults, proxies, serves metrics, and exits 0 on
// SIGTERM.
func TestBinaryLifecycle(t *testing.T) {
	bin := buildBinary(t)
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"predictions":[1]}`)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go upstream.Serve(ln) //nolint:errcheck
	defer upstream.Close()

	proxy, web := freePort(t), freePort(t)
	logs := &prometheustest.SyncBuffer{}
	cmd := exec.Command(bin, "--proxy.upstream=http://"+ln.Addr().String(), "--proxy.listen-address="+proxy, "--web.listen-address="+web)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill() //nolint:errcheck

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + web + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "the exporter did not become ready")

	resp, err := http.Post("http://"+proxy+"/v1/models/m:predict", "application/json", strings.NewReader(`{"instances":[[1]]}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, `{"predictions":[1]}`, string(b))

	resp, err = http.Get("http://" + web + "/metrics")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `modelmon_requests_total{model="m"} 1`)
	require.Contains(t, string(b), `modelmon_exporter_build_info{`)
	require.Contains(t, string(b), `go_goroutines `)
	readmetest.Load(t).RequireMetrics(t, string(b))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), logs.String())
	require.Contains(t, logs.String(), "Shutting down")
}

func TestConfigCheck(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yml"), filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(good, []byte("default_model: a\n"), 0o644))
	require.NoError(t, os.WriteFile(bad, []byte("default_model: a\nnope: 1\n"), 0o644))

	out, err := exec.Command(bin, "--config.check", "--config.file="+good).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "Configuration is valid")

	out, err = exec.Command(bin, "--config.check", "--config.file="+bad).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `bad.yml:2: unknown field \"nope\"`)

	// A bad configuration at start-up is an error, not a silent default.
	out, err = exec.Command(bin, "--config.file="+bad, "--proxy.listen-address="+freePort(t), "--web.listen-address="+freePort(t)).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "couldn't load configuration (--config.file=")
}

// README.md documents every flag and command of exporter: users' scripts
// and CI jobs call them by these names.
func TestREADMEDocumentsFlags(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--help-long").CombinedOutput()
	require.NoError(t, err, string(out))
	readmetest.Load(t).RequireFlagsAndCommands(t, "exporter", string(out))
}
