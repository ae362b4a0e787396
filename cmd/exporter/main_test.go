package main

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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

// sidecar is the exporter binary running in front of a model server.
type sidecar struct {
	cmd              *exec.Cmd
	proxy, web, grpc string // the addresses it listens on
	logs             *prometheustest.SyncBuffer
	exited           chan struct{} // closed when it has exited, with err
	err              error
}

// wait waits until the binary has exited, and returns why (exec.Cmd.Wait).
func (s *sidecar) wait() error {
	<-s.exited
	return s.err
}

// runSidecar starts bin with args in front of a model server that answers
// every request with one prediction, and waits until it is ready.
func runSidecar(t *testing.T, bin string, args ...string) *sidecar {
	t.Helper()
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"predictions":[1]}`)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go upstream.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { upstream.Close() })

	// Every listener on port 0: the binary logs the addresses it got, so no
	// port is picked here and perhaps taken before the binary binds it.
	s := &sidecar{logs: &prometheustest.SyncBuffer{}}
	s.cmd = exec.Command(bin, append([]string{"--proxy.upstream=http://" + ln.Addr().String(),
		"--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0", "--proxy.grpc-listen-address=127.0.0.1:0"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	require.NoError(t, s.cmd.Start())
	s.exited = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.cmd.Process.Kill() }) //nolint:errcheck
	ok := assert.Eventually(t, func() bool {
		select {
		case <-s.exited:
			return true
		default:
		}
		logs := s.logs.String()
		s.proxy, s.web, s.grpc = loggedAddr(logs, "Proxying predictions"), loggedAddr(logs, "Serving metrics and the push API"), loggedAddr(logs, "Proxying gRPC calls")
		return s.proxy != "" && s.web != "" && s.ready() == 200
	}, 20*time.Second, 20*time.Millisecond, "the exporter did not become ready")
	select {
	case <-s.exited:
		ok = false
	default:
	}
	if !ok {
		t.Fatalf("the exporter did not become ready; its output:\n%s", s.logs.String())
	}
	return s
}

// loggedAddr is the listen_address the binary logged with msg, or "".
func loggedAddr(logs, msg string) string {
	m := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `" .*?listen_address=(\S+)`).FindStringSubmatch(logs)
	if m == nil {
		return ""
	}
	return m[1]
}

// ready is the status of /-/ready, 0 when it can't be reached.
func (s *sidecar) ready() int {
	resp, err := http.Get("http://" + s.web + "/-/ready")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// predict sends a prediction through the proxy on a new keep-alive
// connection.
func (s *sidecar) predict() (*http.Response, string, error) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Post("http://"+s.proxy+"/v1/models/m:predict", "application/json", strings.NewReader(`{"instances":[[1]]}`))
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// The binary starts on its defaults, proxies, serves metrics, and exits 0 on
// SIGTERM.
func TestBinaryLifecycle(t *testing.T) {
	s := runSidecar(t, buildBinary(t))
	_, body, err := s.predict()
	require.NoError(t, err)
	require.Equal(t, `{"predictions":[1]}`, body)

	resp, err := http.Get("http://" + s.web + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `modelmon_requests_total{model="m"} 1`)
	require.Contains(t, string(b), `modelmon_exporter_build_info{`)
	require.Contains(t, string(b), `go_goroutines `)
	readmetest.Load(t).RequireMetrics(t, string(b))

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, s.wait(), s.logs.String())
	require.Contains(t, s.logs.String(), "Shutting down")
}

// The sidecar sets GOMEMLIMIT from the memory limit it finds (the
// container's, else the machine's), in proportion to
// --auto-gomemlimit.ratio; --no-auto-gomemlimit and a GOMEMLIMIT in the
// environment leave the runtime's own. go_gc_gomemlimit_bytes shows it.
func TestBinaryMemoryLimit(t *testing.T) {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skipf("GOMEMLIMIT=%s is set in the environment, and takes precedence", v)
	}
	bin := buildBinary(t)
	limit := func(args ...string) float64 {
		s := runSidecar(t, bin, args...)
		defer s.cmd.Process.Kill() //nolint:errcheck
		resp, err := http.Get("http://" + s.web + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		require.NoError(t, err)
		mf := fams["go_gc_gomemlimit_bytes"]
		require.NotNil(t, mf, "go_gc_gomemlimit_bytes")
		return mf.GetMetric()[0].GetGauge().GetValue()
	}
	noLimit := float64(math.MaxInt64)
	half, quarter := limit("--auto-gomemlimit.ratio=0.5"), limit("--auto-gomemlimit.ratio=0.25")
	require.Less(t, half, noLimit)
	require.InDelta(t, half/2, quarter, 2, "the same limit found, at half the ratio")
	// No more than half the machine's memory (less in a container with a limit).
	meminfo, err := os.ReadFile("/proc/meminfo")
	require.NoError(t, err)
	var totalKB float64
	for _, line := range strings.Split(string(meminfo), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" {
			totalKB, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	require.Positive(t, totalKB)
	require.LessOrEqual(t, half, totalKB*1024/2+1)
	require.InDelta(t, 0.9/0.5*half, limit(), 2, "0.9 by default")

	require.Equal(t, noLimit, limit("--no-auto-gomemlimit"))
	t.Setenv("GOMEMLIMIT", "100MiB")
	require.Equal(t, float64(100<<20), limit())
}

// With --proxy.shutdown-delay the sidecar keeps proxying after SIGTERM, for
// the endpoints to drop the pod: /-/ready fails, each response closes its
// connection. It stops when the delay has passed, or at a second signal.
func TestBinaryShutdownDelay(t *testing.T) {
	bin := buildBinary(t)
	t.Run("the delay passes", func(t *testing.T) {
		s := runSidecar(t, bin, "--proxy.shutdown-delay=1500ms")
		resp, _, err := s.predict()
		require.NoError(t, err)
		require.False(t, resp.Close, "a keep-alive connection before the signal")

		start := time.Now()
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
		require.Eventually(t, func() bool { return s.ready() == http.StatusServiceUnavailable }, 5*time.Second, 10*time.Millisecond)
		resp, body, err := s.predict()
		require.NoError(t, err, "still proxying during the delay")
		require.Equal(t, `{"predictions":[1]}`, body)
		require.True(t, resp.Close, "the response closes its connection")

		require.NoError(t, s.wait(), s.logs.String())
		require.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond)
		require.Contains(t, s.logs.String(), "Draining")
		_, _, err = s.predict()
		require.Error(t, err, "stopped after the delay")
	})
	t.Run("a second signal", func(t *testing.T) {
		s := runSidecar(t, bin, "--proxy.shutdown-delay=1m")
		start := time.Now()
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
		require.Eventually(t, func() bool { return s.ready() == http.StatusServiceUnavailable }, 5*time.Second, 10*time.Millisecond)
		_, _, err := s.predict()
		require.NoError(t, err)
		require.NoError(t, s.cmd.Process.Signal(syscall.SIGINT))
		require.NoError(t, s.wait(), s.logs.String())
		require.Less(t, time.Since(start), 30*time.Second)
	})
}

// --proxy.grpc-upstream turns the gRPC proxy on: a real gRPC service (the
// standard health service, its generated client and server) answers through
// the binary, and the call is counted.
func TestBinaryGRPC(t *testing.T) {
	bin := buildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(srv.Stop)

	s := runSidecar(t, bin, "--proxy.grpc-upstream=http://"+ln.Addr().String())
	require.NotEmpty(t, s.grpc, s.logs.String())
	conn, err := grpc.NewClient("passthrough:///"+s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err, s.logs.String())
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Status)

	metrics, err := http.Get("http://" + s.web + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	require.Contains(t, string(b), "modelmon_passthrough_requests_total 1")
	require.Contains(t, s.logs.String(), "Proxying gRPC calls")
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
	// So is a value its type refuses, with its key.
	require.NoError(t, os.WriteFile(bad, []byte("models:\n  - name: a\n    slos: {availability: 0.99, period: 5x}\n"), 0o644))
	out, err = exec.Command(bin, "--config.check", "--config.file="+bad).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `bad.yml:3: models[0].slos.period: unknown unit \"x\" in duration \"5x\"`)

	// So are the per-segment class counts' bounds (models[].segment_classes).
	segClasses := filepath.Join(dir, "segment-classes.yml")
	require.NoError(t, os.WriteFile(segClasses, []byte("models:\n  - name: fraud\n    segments: [country]\n    segment_classes: 2\n"), 0o644))
	out, err = exec.Command(bin, "--config.check", "--config.file="+segClasses).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NoError(t, os.WriteFile(segClasses, []byte("models:\n  - name: fraud\n    segment_classes: 2\n"), 0o644))
	out, err = exec.Command(bin, "--config.check", "--config.file="+segClasses).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `segment-classes.yml:3: models[0].segment_classes needs models[0].segments`)

	// A model's drift reference is loaded too: CI catches a missing one.
	missing := filepath.Join(dir, "missing.yml")
	require.NoError(t, os.WriteFile(missing, []byte("models:\n  - name: fraud\n    drift: {reference: profiles/fraud.json}\n"), 0o644))
	out, err = exec.Command(bin, "--config.check", "--config.file="+missing).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `model \"fraud\"`)
	require.Contains(t, string(out), "no such file or directory")

	// So is --drift.reference, with the configuration file or without.
	noRef := filepath.Join(dir, "nope.json")
	for _, args := range [][]string{{"--config.file=" + good}, nil} {
		out, err = exec.Command(bin, append(args, "--config.check", "--drift.reference="+noRef)...).CombinedOutput()
		require.Error(t, err, string(out))
		require.Contains(t, string(out), `couldn't load --drift.reference=\"`+noRef+`\": stat `+noRef+`: no such file or directory`)
	}
	ref := filepath.Join(dir, "train.csv")
	require.NoError(t, os.WriteFile(ref, []byte("amount,label\n1,a\n2,b\n3,a\n"), 0o644))
	out, err = exec.Command(bin, "--config.check", "--drift.reference="+ref, "--drift.prediction-column=score").CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), `missing prediction column \"score\"`)
	out, err = exec.Command(bin, "--config.check", "--config.file="+good, "--drift.reference="+ref, "--drift.prediction-column=label").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "Configuration is valid")
	out, err = exec.Command(bin, "--config.check").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--config.check needs --config.file or --drift.reference")

	// A bad configuration at start-up is an error, not a silent default.
	out, err = exec.Command(bin, "--config.file="+bad, "--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0").CombinedOutput()
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
	readmetest.Load(t).RequireFlagDefaults(t, "exporter", string(out))
}
