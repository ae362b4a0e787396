package exporter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promModel "github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
)

// A scripted run with every feature on gives exactly the exposition in
// testdata/exposition-full.prom: labels joined to a classifier's and a
// regressor's predictions, by segment and by segment class, with a peer
// that is down; a shadow model server that answers, fails, falls behind and
// drops a kept-alive connection; drift against a reference; the payload log
// with a spool; a gRPC call; the push API; Seldon's feedback; a streamed
// generative answer, and the shadow's, streamed too; and a model that lists
// its classes and has no traffic, whose class counters read 0. `make checkmetrics` lints it with promtool, and
// TestMetricsCovered (internal/readmetest) checks that every family the
// README's metrics tables name is in it or in another linted exposition,
// so a new family is linted once a test shows it here.
func TestExpositionFullGolden(t *testing.T) {
	dir := t.TempDir()
	// The training data of fraud's drift reference: small integers and few
	// rows, so that its bins and digests are exact on every platform.
	var train strings.Builder
	train.WriteString("amount,country,score\n")
	for i := range 40 {
		fmt.Fprintf(&train, "%d,%s,%d\n", 10+i%4, []string{"DE", "FR"}[i%2], i%2)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fraud.csv"), []byte(train.String()), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: fraud
    version: v7
    classes: [legit, fraud]
    calibration_bins: 2
    segments: [country]
    segment_classes: 2
    feature_importance: {amount: 0.6, country: 0.4}
    drift: {reference: fraud.csv, prediction_column: score}
  - name: price
    segments: [{feature: rooms, buckets: [2]}]
    score_buckets: [5, 10]
    error_buckets: [1, 5]
    label_offset: 8
  - name: topics
    classes: [sports, news]
labels:
  peers: [`+deadAddr(t)+`]
  timeout: 2s
`), 0o644))

	// The chat answers stream, from the model server and the shadow alike:
	// each sends its next token once the sidecar has read its first.
	var sidecar atomic.Pointer[Exporter]
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/feedback"):
			io.WriteString(w, `{"meta": {}}`)
		case r.URL.Path == "/v1/chat/completions":
			w.Header().Set("Content-Type", "text/event-stream")
			for i, ev := range []string{
				`{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`,
				`{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`,
				"[DONE]",
			} {
				if i == 1 {
					observedOnce(t, sidecar.Load().metrics.FirstByte, "llm")
				}
				io.WriteString(w, "data: "+ev+"\n\n")
				w.(http.Flusher).Flush()
			}
		case strings.Contains(r.URL.Path, "/fraud:"):
			io.WriteString(w, `{"predictions": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]}`)
		default:
			io.WriteString(w, `{"predictions": [7]}`)
		}
	}))
	t.Cleanup(model.Close)
	candidate, release := fullShadow(t, func() { observedOnce(t, sidecar.Load().shadow.metrics.FirstByte, "llm") })
	sink := newRecordingServer(t, nil, func(http.ResponseWriter, *http.Request) bool { return true })

	clock := &stepClock{t: time.Unix(1700000000, 0)}
	det := drift.DefaultOptions()
	det.MinSamples = 3
	e := startExporter(t, model.URL, func(o *Options) {
		o.Now = clock.Now
		o.ConfigFile = cfg
		o.StoragePath = filepath.Join(dir, "data")
		o.CaptureMaxBodySize = 1 << 10
		o.Labels = LabelsOptions{Enabled: true}
		o.Drift = DriftOptions{Windows: []time.Duration{5 * time.Minute}, Detector: det}
		o.Proxy.GRPCUpstream = grpcModelServer(t)
		o.GRPCListenAddress = "127.0.0.1:0"
		shadowOptions(candidate.URL(), func(s *ShadowOptions) { s.Concurrency = 1; s.Models = []string{"fraud", "price", "llm"} })(o)
		payloadLogOptions(sink.URL, func(p *PayloadLogOptions) { p.SpoolDir = filepath.Join(dir, "spool") })(o)
	})
	sidecar.Store(e)
	proxy := "http://" + e.ProxyAddr()
	step := func(model, body string, headers ...string) {
		t.Helper()
		st, _ := predict(t, e, model, body, headers...)
		require.Equal(t, 200, st)
		waitIdle(t, e)
	}

	// Predictions, labelled below, and compared with the shadow's.
	step("fraud", `{"instances": [{"amount": 10, "country": "DE"}, {"amount": 11, "country": "FR"}, {"amount": 12, "country": "DE"}]}`, "X-Request-Id", "f0")
	step("fraud", `{"instances": [{"amount": 13, "country": "FR"}, {"amount": 10, "country": "DE"}, {"amount": 11}]}`, "X-Request-Id", "f1")
	step("price", `{"instances": [{"rooms": 1}]}`, "X-Request-Id", "p0")
	step("price", `{"instances": [{"rooms": 3}]}`, "X-Request-Id", "p1")
	// The shadow fails one, and drops a kept-alive connection under one
	// it then sends again.
	step("price", `{"instances": [{"rooms": 2}]}`, "X-Shadow", "fail")
	step("price", `{"instances": [{"rooms": 2}]}`, "X-Shadow", "close", "Idempotency-Key", "k1")
	// The shadow holds one; with --shadow.concurrency=1 the next waits and
	// the one after is dropped.
	st, _ := predict(t, e, "price", `{"instances": [{"rooms": 2}]}`, "X-Shadow", "hold")
	require.Equal(t, 200, st)
	// It is the shadow's eighth request: f0, f1, p0, p1, the failed one,
	// the one sent again (twice) and this one.
	require.Eventually(t, func() bool { return len(candidate.received()) == 8 }, 10*time.Second, time.Millisecond)
	for range 2 {
		st, _ := predict(t, e, "price", `{"instances": [{"rooms": 2}]}`)
		require.Equal(t, 200, st)
	}
	require.Eventually(t, func() bool { return e.queue.enqueued.Load() == e.queue.handled.Load() }, 10*time.Second, time.Millisecond)
	release()
	waitIdle(t, e)

	// A body past --capture.max-body-size, and one that does not parse.
	step("fraud", `{"instances": [`+strings.Repeat(`{"amount": 10}, `, 100)+`{"amount": 10}]}`)
	step("fraud", `{"instances": [{"amount": 1`)
	// A streamed chat answer, compared with the shadow's, Seldon's
	// feedback, a gRPC call.
	st, _ = do(t, "POST", proxy+"/v1/chat/completions", `{"model":"llm","messages":[],"stream":true}`)
	require.Equal(t, 200, st)
	// Parsed once the sidecar has written its last byte, which may be
	// after the client has read it.
	require.Eventually(t, func() bool {
		return metricValue(t, e, "modelmon_generations_total", map[string]string{"model": "llm", "finish_reason": "stop"}) == 1
	}, 10*time.Second, time.Millisecond)
	waitIdle(t, e)
	st, _ = do(t, "POST", proxy+"/seldon/prod/bandit/api/v1.0/feedback", `{"reward": 0.5}`)
	require.Equal(t, 200, st)
	req := inferCall("tensor", "1", inferTensor("x", []uint64{1, 2}, 1.5, 2.5))
	var resp []byte
	require.NoError(t, grpcClient(t, e.GRPCAddr()).Invoke(context.Background(), modelInfer, &req, &resp))
	// Pushed observations, one of them rejected.
	pushRecordsRaw(t, e,
		`{"model":"price","id":"p2","features":{"rooms":4},"prediction":12}`,
		`{"model":"price","bogus":1}`)
	waitIdle(t, e)

	// Labels: joined, held (asked of the peer, which is down), rejected.
	_, lr := postLabels(t, e, strings.Join([]string{
		`{"id":"f0/0","label":"legit"}`, `{"id":"f0/1","label":"fraud"}`, `{"id":"f0/2","label":"fraud"}`,
		`{"id":"f1/0","label":"legit"}`, `{"id":"f1/1","label":"legit"}`,
		`{"id":"p0","label":8}`, `{"id":"p1","label":10}`, `{"id":"p2","label":3.5}`,
		`{"id":"later","label":1}`, `{"label":1}`,
	}, "\n"))
	require.Equal(t, append(slices.Repeat([]string{"matched"}, 8), "held"), lr.Results)
	// The request and the answer of each of the 12 predictions captured
	// (the one past --capture.max-body-size is not, nor is the feedback)
	// reach the payload log's receiver.
	events(t, sink, 24)
	require.Eventually(t, func() bool {
		return metricValue(t, e, "modelmon_payload_log_events_sent_total", map[string]string{"type": "request"})+
			metricValue(t, e, "modelmon_payload_log_events_sent_total", map[string]string{"type": "response"}) == 24
	}, 10*time.Second, time.Millisecond)

	writeGolden(t, "testdata/exposition-full.prom", maskedExposition(t, e))
}

// fullShadow is the shadow model server of TestExpositionFullGolden. It
// answers fraud's and price's predictions with its own, but for requests
// with an X-Shadow header: fail answers 500; close, on a kept-alive
// connection, closes it without an answer; hold waits for release. It
// streams its chat answers, which stop for another reason than the
// model's, its first token before firstRead returns, the others after.
func fullShadow(t *testing.T, firstRead func()) (_ *rawUpstream, release func()) {
	hold := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	var mu sync.Mutex
	served := map[net.Conn]int{}
	u := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		mu.Lock()
		served[c]++
		n := served[c]
		mu.Unlock()
		body := `{"predictions": [9]}`
		if strings.Contains(req.start, "/fraud:") {
			body = `{"predictions": [[0.8, 0.2], [0.7, 0.3], [0.6, 0.4]]}`
		}
		switch {
		case strings.Contains(req.start, "/v1/chat/completions"):
			writeEvents(c, []string{
				`{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`,
				`{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`,
				"[DONE]",
			}, func(i int) {
				if i == 1 {
					firstRead()
				}
			}, 0)
			return true
		case containsFold(req.headers, "X-Shadow: fail"):
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
			return true
		case containsFold(req.headers, "X-Shadow: close") && n > 1:
			return false
		case containsFold(req.headers, "X-Shadow: hold"):
			<-hold
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	t.Cleanup(release) // before the server's own cleanup waits for its connections
	return u, release
}

// maskedExposition is e's exposition in the text format, every family's
// name sorted, with what depends on the machine or on real time masked:
// families in seconds (durations and timestamps) read as if every value
// were 0, their counts kept; the build's labels read "masked"; a value that
// is not a whole number is rounded to 6 significant digits, so that the
// last bits of the drift statistics' floating-point arithmetic, which may
// differ between platforms, don't show.
func maskedExposition(t *testing.T, e *Exporter) string {
	t.Helper()
	resp, err := http.Get("http://" + e.WebAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(promModel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	var b bytes.Buffer
	for _, n := range names {
		mf := fams[n]
		for _, m := range mf.Metric {
			if n == "modelmon_exporter_build_info" {
				for _, lp := range m.Label {
					lp.Value = strPtr("masked")
				}
			}
			if strings.HasSuffix(n, "_seconds") {
				maskMetric(m)
			}
			roundMetric(m)
		}
		_, err := expfmt.MetricFamilyToText(&b, mf)
		require.NoError(t, err)
	}
	return b.String()
}

func strPtr(s string) *string { return &s }

// maskMetric makes m read as if every value it was given were 0.
func maskMetric(m *dto.Metric) {
	zero := 0.0
	switch {
	case m.Gauge != nil:
		m.Gauge.Value = &zero
	case m.Counter != nil:
		m.Counter.Value = &zero
	case m.Untyped != nil:
		m.Untyped.Value = &zero
	case m.Histogram != nil:
		h := m.Histogram
		h.SampleSum = &zero
		for _, bk := range h.Bucket {
			bk.CumulativeCount = h.SampleCount
		}
	case m.Summary != nil:
		m.Summary.SampleSum = &zero
		for _, q := range m.Summary.Quantile {
			q.Value = &zero
		}
	}
}

// roundMetric rounds m's values that are not whole numbers to 6
// significant digits.
func roundMetric(m *dto.Metric) {
	round := func(p *float64) {
		if p == nil || *p == math.Trunc(*p) || math.IsInf(*p, 0) || math.IsNaN(*p) {
			return
		}
		*p, _ = strconv.ParseFloat(strconv.FormatFloat(*p, 'g', 6, 64), 64)
	}
	switch {
	case m.Gauge != nil:
		round(m.Gauge.Value)
	case m.Counter != nil:
		round(m.Counter.Value)
	case m.Untyped != nil:
		round(m.Untyped.Value)
	case m.Histogram != nil:
		round(m.Histogram.SampleSum)
	case m.Summary != nil:
		round(m.Summary.SampleSum)
		for _, q := range m.Summary.Quantile {
			round(q.Value)
		}
	}
}
