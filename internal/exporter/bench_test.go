package exporter

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/quality"
)

// benchProxy returns a sidecar whose proxy talks to an in-memory fasthttp
// model server, so the benchmark measures the sidecar, not the loopback. The
// model server's answers are chunked when chunked is set. With shadow, every
// prediction is mirrored to the same model server as a shadow.
func benchProxy(b *testing.B, chunked, shadow bool) *Exporter {
	ln := fasthttputil.NewInmemoryListener()
	const answer = `{"predictions":[0.93]}`
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		if chunked {
			ctx.SetBodyStream(strings.NewReader(answer), -1)
			return
		}
		ctx.SetBodyString(answer)
	}}
	go srv.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { srv.Shutdown(); ln.Close() })
	var mod func(*Options)
	if shadow {
		mod = shadowOptions("http://shadow.internal:8080", nil)
	}
	e := startExporter(b, "http://model.internal:8080", mod)
	e.proxy.client.DialTimeout = dialLazyDeadlines(func(string, time.Duration) (net.Conn, error) {
		return ln.Dial()
	}, deadlineSlack(e.opts.Proxy.Timeout), true)
	if shadow {
		e.proxy.shadow.client.DialTimeout = dialLazyDeadlines(func(string, time.Duration) (net.Conn, error) {
			return ln.Dial()
		}, deadlineSlack(e.opts.Shadow.Timeout), true)
	}
	return e
}

func kserveBody(features int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"instances":[{`)
	for i := 0; i < features; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"f%d":%d.5`, i, i)
	}
	sb.WriteString(`}]}`)
	return []byte(sb.String())
}

// BenchmarkProxyHandle is one prediction through the proxy's handler: route,
// headers, upstream round trip (in memory), metrics and capture. Its "bare"
// case is the floor: the same round trip by a plain fasthttp client, with
// none of the sidecar's work, so the difference is what the sidecar adds. Its
// "chunked" case has the answer come chunked, so that the proxy streams it:
// the stream is read to its end and closed as fasthttp's server would. Its
// "shadow" case mirrors every prediction to a shadow model server: the
// handler copies the request's header, and the shadow's senders run beside
// it.
func BenchmarkProxyHandle(b *testing.B) {
	for _, tc := range []struct {
		name                         string
		trace, bare, chunked, shadow bool
	}{
		{name: "plain"}, {name: "traceparent", trace: true}, {name: "bare", bare: true},
		{name: "chunked", chunked: true}, {name: "shadow", shadow: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchProxy(b, tc.chunked, tc.shadow)
			body := kserveBody(20)
			var ctx fasthttp.RequestCtx
			handle := e.proxy.handle
			if tc.bare {
				// A fasthttp client as a bare proxy has it: answers read
				// whole, on the sidecar's connections to the model server.
				c := &fasthttp.HostClient{Addr: e.proxy.client.Addr, DialTimeout: e.proxy.client.DialTimeout}
				handle = func(ctx *fasthttp.RequestCtx) {
					if err := c.Do(&ctx.Request, &ctx.Response); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/v1/models/fraud:predict")
				ctx.Request.Header.SetHost("model.internal")
				ctx.Request.Header.SetContentType("application/json")
				if tc.trace {
					ctx.Request.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				}
				ctx.Request.SetBody(body)
				handle(&ctx)
				if s := ctx.Response.BodyStream(); s != nil {
					if _, err := io.Copy(io.Discard, s); err != nil {
						b.Fatal(err)
					}
					ctx.Response.CloseBodyStream() //nolint:errcheck
				}
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}

// BenchmarkCaptureOffer is the hot path's share of payload capture: copying
// both bodies into a pooled buffer and handing it to the parsers.
func BenchmarkCaptureOffer(b *testing.B) {
	e := startExporter(b, "http://127.0.0.1:1", nil)
	m := e.models.get([]byte("fraud"), 100)
	req, resp := kserveBody(20), []byte(`{"predictions":[0.93]}`)
	b.ReportAllocs()
	for b.Loop() {
		e.queue.offer(m, 0, bodyEncodings{}, answerTiming{}, req, resp, nil, nil, false)
	}
}

// BenchmarkParseRoute is the request-line inspection of every request.
func BenchmarkParseRoute(b *testing.B) {
	e := startExporter(b, "http://127.0.0.1:1", nil)
	rc := e.cfg.Load()
	method := []byte("POST")
	path := []byte("/v2/models/fraud/versions/3/infer")
	b.ReportAllocs()
	for b.Loop() {
		if r := parseRoute(method, path, rc); !r.predict {
			b.Fatal("not a prediction")
		}
	}
}

// BenchmarkWorkerHandle is a parser goroutine's cost per captured request of
// the proxy benchmark: parse both bodies, count, check every feature.
func BenchmarkWorkerHandle(b *testing.B) {
	body, err := os.ReadFile("../../scripts/bench/kserve.json")
	if err != nil {
		b.Fatal(err)
	}
	runWorker(b, startExporter(b, "http://127.0.0.1:1", nil), body)
}

// runWorker has a parser goroutine handle the capture of body and a one-value
// prediction, b.N times.
func runWorker(b *testing.B, e *Exporter, body []byte) {
	m := e.models.get([]byte("fraud"), 100)
	w := &worker{q: e.queue, obs: e.obs, parsers: parserCache{}, logger: e.logger, payloadLog: e.payloadLog}
	c := &capture{model: m, format: payload.FormatKServeV1}
	c.buf = append(append(c.buf, body...), `{"predictions":[0.93]}`...)
	c.reqLen, c.respLen = len(body), len(`{"predictions":[0.93]}`)
	// A capture the parser rejects would be timed as fast as one it
	// parses: check that it yields its prediction first.
	w.handle(c)
	if got := testutil.ToFloat64(m.predictions); got != 1 {
		b.Fatalf("one capture handled gave %v predictions, want 1 (payload errors: %d series)", got, testutil.CollectAndCount(e.metrics.PayloadErrors))
	}
	b.ReportAllocs()
	for b.Loop() {
		w.handle(c)
	}
}

// BenchmarkWorkerHandlePayloadLog is BenchmarkWorkerHandle with the payload
// log on: each capture also becomes two events (the bodies copied), offered
// to the queue that workers send to a receiver on loopback, in batches of up
// to 100. What a parser spends on it, beside the sending the workers do on
// other goroutines. A parser alone here hands over several hundred thousand
// captures a second, more than the workers send on two cores (dropped/op);
// the proxy in front of it gives a few tens of thousands.
func BenchmarkWorkerHandlePayloadLog(b *testing.B) {
	body, err := os.ReadFile("../../scripts/bench/kserve.json")
	if err != nil {
		b.Fatal(err)
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer sink.Close()
	e := startExporter(b, "http://127.0.0.1:1", func(o *Options) {
		o.PayloadLog = PayloadLogOptions{URL: sink.URL, BatchSize: 100}
	})
	runWorker(b, e, body)
	b.StopTimer()
	b.ReportMetric(metricValue(b, e, "modelmon_payload_log_events_dropped_total", map[string]string{"reason": "queue_full"})/float64(b.N), "dropped/op")
}

// BenchmarkWorkerHandleDrift is BenchmarkWorkerHandle with a drift reference
// over the request's 20 features: every value also goes into its windows.
// feature_values/s is what one parser goroutine sustains.
func BenchmarkWorkerHandleDrift(b *testing.B) {
	body, err := os.ReadFile("../../scripts/bench/kserve.json")
	if err != nil {
		b.Fatal(err)
	}
	// A reference over the benchmark body's features: each value ±50%.
	var obj struct {
		Instances []map[string]float64 `json:"instances"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		b.Fatal(err)
	}
	var cols []drift.Column
	for name, v := range obj.Instances[0] {
		c := drift.Column{Name: name}
		for i := 0; i < 2000; i++ {
			c.Num = append(c.Num, v*(0.5+float64(i)/2000))
		}
		cols = append(cols, c)
	}
	p, err := drift.BuildProfile(cols, drift.DefaultBuildOptions())
	if err != nil {
		b.Fatal(err)
	}
	ref := filepath.Join(b.TempDir(), "profile.json")
	f, err := os.Create(ref)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Save(f); err != nil {
		b.Fatal(err)
	}
	f.Close()

	e := startExporter(b, "http://127.0.0.1:1", func(o *Options) { o.Drift = DriftOptions{Reference: ref, Detector: drift.DefaultOptions()} })
	runWorker(b, e, body)
	b.ReportMetric(float64(b.N*len(cols))/b.Elapsed().Seconds(), "feature_values/s")
}

// BenchmarkLabelRecord is the metrics' share of a regression's label
// joined: what record adds once the store has matched it, for a model
// with classic buckets of its error (models[].error_buckets) and one with
// the native histogram alone.
func BenchmarkLabelRecord(b *testing.B) {
	for _, tc := range []struct{ name, model string }{{"native", "native"}, {"classic", "price"}} {
		b.Run(tc.name, func(b *testing.B) {
			e := startWithConfig(b, "http://127.0.0.1:1", "models:\n  - name: price\n    error_buckets: [0.5, 1, 2, 5]\n", labelsOn)
			l := e.obs.labels
			o := quality.Outcome{Model: tc.model, Regression: true, PredictedValue: 10, ActualValue: 11.5, AbsError: 1.5, SquaredError: 2.25, Delay: time.Minute}
			b.ReportAllocs()
			for b.Loop() {
				l.record(o)
			}
		})
	}
}
