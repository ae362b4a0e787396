package exporter

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	promModel "github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/internal/readmetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's coarse clock, its compressors' goroutines (the tests
		// compress bodies with them) and the HTTP client's idle connections
		// outlive a test by design.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp/stackless.funcWorker"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp/fasthttputil.(*pipeConn).Read"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// startExporter runs a whole sidecar on loopback in front of upstream.
func startExporter(t testing.TB, upstream string, mod func(*Options)) *Exporter {
	t.Helper()
	addrs := []string{"127.0.0.1:0"}
	webCfg := ""
	o := Options{
		ProxyListenAddress:     "127.0.0.1:0",
		Proxy:                  ProxyOptions{Upstream: upstream, Timeout: 5 * time.Second},
		Web:                    &toolkit.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &webCfg},
		DisableExporterMetrics: true,
		Logger:                 promslog.NewNopLogger(),
	}
	if mod != nil {
		mod(&o)
	}
	e, err := New(o)
	require.NoError(t, err)
	require.NoError(t, e.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			// What the sidecar still waits for, for a stop that times out.
			buf := make([]byte, 1<<20)
			t.Logf("goroutines when Stop failed:\n%s", buf[:runtime.Stack(buf, true)])
			require.NoError(t, err)
		}
	})
	// Whatever a test made the exporter expose is documented.
	t.Cleanup(func() { requireMetricsDocumented(t, e) })
	return e
}

// waitIdle waits until every capture offered so far has been parsed, and
// every request it mirrored to the shadow model server compared.
func waitIdle(t testing.TB, e *Exporter) {
	t.Helper()
	require.Eventually(t, func() bool {
		return e.queue.enqueued.Load() == e.queue.handled.Load() &&
			(e.shadow == nil || e.shadow.inFlight.Load() == 0)
	}, 10*time.Second, time.Millisecond)
}

// stepClock is a clock that moves one millisecond each time it is read, so
// the durations the proxy measures are the same in every run.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// requireMetricsDocumented fails t unless README.md's metrics reference names
// every family the exporter exposes now on /metrics. startExporter calls it
// when a test ends.
func requireMetricsDocumented(t testing.TB, e *Exporter) {
	t.Helper()
	readmetest.Load(t).RequireGathered(t, e.gatherer(context.Background()))
}

// scrape fetches the exposition and returns the families whose names start
// with prefix, parsed with expfmt.
func scrape(t testing.TB, e *Exporter, prefix string) map[string]*familyText {
	t.Helper()
	resp, err := http.Get("http://" + e.WebAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(promModel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	out := map[string]*familyText{}
	for name, mf := range fams {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		var buf bytes.Buffer
		_, err := expfmt.MetricFamilyToText(&buf, mf)
		require.NoError(t, err)
		out[name] = &familyText{text: buf.String()}
	}
	return out
}

type familyText struct{ text string }

func joinFamilies(fams map[string]*familyText, skip ...string) string {
	names := make([]string, 0, len(fams))
	for n := range fams {
		if contains(skip, n) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(fams[n].text)
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// metricValue returns the value of the sample of name with exactly the given
// labels in the sidecar's current exposition, or 0 when there is none.
func metricValue(t testing.TB, e *Exporter, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.WebAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(promModel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	base := name
	for _, suf := range []string{"_count", "_sum"} {
		if strings.HasSuffix(name, suf) {
			if _, ok := fams[strings.TrimSuffix(name, suf)]; ok {
				base = strings.TrimSuffix(name, suf)
			}
		}
	}
	mf, ok := fams[base]
	if !ok {
		return 0
	}
next:
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil && strings.HasSuffix(name, "_sum"):
			return m.Histogram.GetSampleSum()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return 0
}

// rawRequest is an HTTP/1.1 message as it crossed the wire: the start line,
// the header lines in order and case, and the body.
type rawMessage struct {
	start   string
	headers []string
	body    []byte
}

// readRaw reads one HTTP/1.1 message with a Content-Length or chunked body
// (or none) from r without normalising anything but the chunks.
func readRaw(r *bufio.Reader) (*rawMessage, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	m := &rawMessage{start: strings.TrimRight(line, "\r\n")}
	n := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		m.headers = append(m.headers, line)
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "content-length") {
			if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return nil, err
			}
		}
	}
	if containsFold(m.headers, "Transfer-Encoding: chunked") {
		if m.body, err = io.ReadAll(httputil.NewChunkedReader(r)); err != nil {
			return nil, err
		}
		if err := skipTrailer(r); err != io.EOF {
			return nil, err
		}
		return m, nil
	}
	m.body = make([]byte, n)
	_, err = io.ReadFull(r, m.body)
	return m, err
}

// without returns the header lines except those named (case-insensitive).
// header returns the value of the first header called name, or "".
func (m *rawMessage) header(name string) string {
	for _, h := range m.headers {
		if k, v, _ := strings.Cut(h, ":"); strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (m *rawMessage) without(names ...string) []string {
	var out []string
	for _, h := range m.headers {
		k, _, _ := strings.Cut(h, ":")
		if !containsFold(names, k) {
			out = append(out, h)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// rawUpstream is a model server speaking raw HTTP/1.1, recording what it
// received exactly and answering with what respond returns.
type rawUpstream struct {
	ln      net.Listener
	mu      sync.Mutex
	got     []*rawMessage
	respond func(req *rawMessage, conn net.Conn) bool // false closes the connection
	wg      sync.WaitGroup
}

func newRawUpstream(t testing.TB, respond func(req *rawMessage, conn net.Conn) bool) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u := &rawUpstream{ln: ln, respond: respond}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					m, err := readRaw(br)
					if err != nil {
						return
					}
					u.mu.Lock()
					u.got = append(u.got, m)
					u.mu.Unlock()
					if !u.respond(m, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *rawUpstream) URL() string { return "http://" + u.ln.Addr().String() }

func (u *rawUpstream) received() []*rawMessage {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*rawMessage(nil), u.got...)
}

// rawRoundTrip writes req on a new connection and reads one response.
func rawRoundTrip(t testing.TB, addr, req string) *rawMessage {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	m, err := readRaw(bufio.NewReader(c))
	require.NoError(t, err)
	return m
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func writeGolden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test -update")
	require.Equal(t, string(want), got, fmt.Sprintf("exposition differs from %s (go test -update rewrites it)", path))
}
