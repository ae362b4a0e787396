package exporter

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/promslog"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"
)

// payloadLogOptions send every captured prediction to url.
func payloadLogOptions(url string, mod func(*PayloadLogOptions)) func(*Options) {
	return func(o *Options) {
		o.PayloadLog = PayloadLogOptions{URL: url, Source: "http://pod-a:8081/", Extensions: map[string]string{"namespace": "prod"}}
		if mod != nil {
			mod(&o.PayloadLog)
		}
	}
}

// events waits for n events at the receiver and returns them by id and type
// ("<id> request", "<id> response").
func events(t *testing.T, sink *recordingServer, n int) map[string]seenRequest {
	t.Helper()
	require.Eventually(t, func() bool { return len(sink.received()) >= n }, 10*time.Second, time.Millisecond,
		"the payload log's receiver got %d events of %d", len(sink.received()), n)
	out := map[string]seenRequest{}
	for _, r := range sink.received() {
		typ := strings.TrimPrefix(r.header.Get("Ce-Type"), "org.kubeflow.serving.inference.")
		out[r.header.Get("Ce-Id")+" "+typ] = r
	}
	require.Len(t, out, len(sink.received()), "an event came twice")
	return out
}

// The receiver gets each captured prediction as two CloudEvents, a request
// and a response under one id, with the bodies as the model server got and
// gave them (decoded when compressed); a failed prediction, as in KServe,
// its request alone.
func TestPayloadLog(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "broken") {
			http.Error(w, "model not loaded", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	sink := newRecordingServer(t, nil, func(http.ResponseWriter, *http.Request) bool { return true })
	e := startExporter(t, model.URL, payloadLogOptions(sink.URL, nil))

	status, answer := predict(t, e, "fraud", `{"instances": [{"amount": 1}]}`, "Ce-Id", "req-1")
	require.Equal(t, 200, status)
	require.Equal(t, `{"predictions": ["legit"]}`, answer)
	status, _ = predict(t, e, "fraud", string(gzipped(t, `{"instances": [{"amount": 2}]}`)), "Content-Encoding", "gzip", "Ce-Id", "req-2")
	require.Equal(t, 200, status)
	status, _ = predict(t, e, "broken", `{"instances": [{"amount": 3}]}`, "Ce-Id", "req-3")
	require.Equal(t, 503, status)
	status, _ = predict(t, e, "fraud", `{"instances": [{"amount": 4}]}`)
	require.Equal(t, 200, status)
	waitIdle(t, e)

	got := events(t, sink, 7)
	req := got["req-1 request"]
	require.Equal(t, `{"instances": [{"amount": 1}]}`, string(req.body))
	require.Equal(t, "POST", req.method)
	require.Equal(t, "1.0", req.header.Get("Ce-Specversion"))
	require.Equal(t, "http://pod-a:8081/", req.header.Get("Ce-Source"))
	require.Equal(t, "fraud", req.header.Get("Ce-Modelname"))
	require.Equal(t, "prod", req.header.Get("Ce-Namespace"))
	require.Equal(t, "application/json", req.header.Get("Content-Type"))
	_, err := time.Parse(time.RFC3339Nano, req.header.Get("Ce-Time"))
	require.NoError(t, err)
	require.Equal(t, `{"predictions": ["legit"]}`, string(got["req-1 response"].body))
	require.Equal(t, `{"instances": [{"amount": 2}]}`, string(got["req-2 request"].body), "decoded")
	require.Equal(t, `{"instances": [{"amount": 3}]}`, string(got["req-3 request"].body), "a failed prediction's request")
	require.NotContains(t, got, "req-3 response", "a failed prediction's answer")
	// The prediction without an id got one, for its request and response.
	var generated []string
	for k := range got {
		if !strings.HasPrefix(k, "req-") {
			generated = append(generated, k)
		}
	}
	require.Len(t, generated, 2)
	id, _, _ := strings.Cut(generated[0], " ")
	require.Contains(t, got, id+" request")
	require.Contains(t, got, id+" response")
	require.Equal(t, `{"instances": [{"amount": 4}]}`, string(got[id+" request"].body))
	// The receiver has an event before its sender counts it sent.
	require.Eventually(t, func() bool {
		return metricValue(t, e, "modelmon_payload_log_events_sent_total", map[string]string{"type": "request"}) == 4 &&
			metricValue(t, e, "modelmon_payload_log_events_sent_total", map[string]string{"type": "response"}) == 3
	}, 10*time.Second, time.Millisecond)

	// With --payload-log.mode=response, a failed prediction logs nothing.
	sink = newRecordingServer(t, nil, func(http.ResponseWriter, *http.Request) bool { return true })
	e = startExporter(t, model.URL, payloadLogOptions(sink.URL, func(p *PayloadLogOptions) { p.Mode = PayloadLogResponse }))
	status, _ = predict(t, e, "broken", `{"instances": [{"amount": 5}]}`, "Ce-Id", "req-5")
	require.Equal(t, 503, status)
	status, _ = predict(t, e, "fraud", `{"instances": [{"amount": 6}]}`, "Ce-Id", "req-6")
	require.Equal(t, 200, status)
	waitIdle(t, e)
	require.Equal(t, []string{"req-6 response"}, slices.Collect(maps.Keys(events(t, sink, 1))))
}

// With labels, an event's id is the prediction's id for the label join:
// the one the client sent, or the one the sidecar gave it in the answer.
func TestPayloadLogLabelIDs(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, nil)
	sink := newRecordingServer(t, nil, func(http.ResponseWriter, *http.Request) bool { return true })
	e := startExporter(t, model.URL, func(o *Options) {
		payloadLogOptions(sink.URL, func(p *PayloadLogOptions) { p.Mode = PayloadLogRequest })(o)
		o.Labels = LabelsOptions{Enabled: true}
	})
	req, err := http.NewRequest("POST", "http://"+e.ProxyAddr()+"/v1/models/fraud:predict", strings.NewReader(`{"instances": [{"amount": 1}]}`))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	given := resp.Header.Get("X-Request-Id")
	require.NotEmpty(t, given)
	status, _ := predict(t, e, "fraud", `{"instances": [{"amount": 2}]}`, "X-Request-Id", "mine")
	require.Equal(t, 200, status)
	got := events(t, sink, 2)
	require.Contains(t, got, given+" request")
	require.Contains(t, got, "mine request")
	require.NotContains(t, got, "mine response", "--payload-log.mode=request")
}

// A payload log receiver that is down fails no prediction; with a spool, the
// events wait on disk across a restart and reach the receiver once it is up.
func TestPayloadLogReceiverDown(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	spool := filepath.Join(t.TempDir(), "spool")
	o := payloadLogOptions("http://"+addr+"/", func(p *PayloadLogOptions) { p.SpoolDir = spool; p.MaxQueueBytes = 200 })

	opts := Options{}
	o(&opts)
	e, err := New(withLoopback(model.URL, opts))
	require.NoError(t, err)
	require.NoError(t, e.Start())
	for i := range 20 {
		status, answer := predict(t, e, "fraud", `{"instances": [{"amount": 1}]}`, "Ce-Id", "p-"+string(rune('a'+i)))
		require.Equal(t, 200, status)
		require.Equal(t, `{"predictions": ["legit"]}`, answer)
	}
	waitIdle(t, e)
	require.Eventually(t, func() bool {
		return metricValue(t, e, "modelmon_payload_log_send_failures_total", map[string]string{"reason": "connection"}) > 0
	}, 10*time.Second, time.Millisecond)
	require.Positive(t, metricValue(t, e, "modelmon_payload_log_events_spooled_total", nil))
	// The payload log tries the receiver until the deadline, then spools
	// what is left; the deadline also bounds the rest of Stop, which must
	// be done well inside it on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, e.Stop(ctx))
	files, err := filepath.Glob(filepath.Join(spool, "*.spool"))
	require.NoError(t, err)
	require.NotEmpty(t, files)

	// The receiver comes up; the sidecar restarts on the same spool.
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	sink := &recordingServer{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sink.mu.Lock()
		sink.seen = append(sink.seen, seenRequest{header: r.Header.Clone()})
		sink.mu.Unlock()
	})}
	go srv.Serve(ln)
	defer srv.Close()
	startExporter(t, model.URL, o)
	got := events(t, sink, 40)
	for i := range 20 {
		id := "p-" + string(rune('a'+i))
		require.Contains(t, got, id+" request")
		require.Contains(t, got, id+" response")
	}
}

// Options a test sidecar on loopback takes (startExporter's).
func withLoopback(upstream string, o Options) Options {
	addrs := []string{"127.0.0.1:0"}
	webCfg := ""
	o.ProxyListenAddress = "127.0.0.1:0"
	o.Proxy = ProxyOptions{Upstream: upstream, Timeout: 5 * time.Second}
	o.Web = &toolkit.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &webCfg}
	o.DisableExporterMetrics = true
	o.Logger = promslog.NewNopLogger()
	return o
}

func TestPayloadLogOptions(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*PayloadLogOptions)
		want string
	}{
		{func(p *PayloadLogOptions) { p.Mode = "both" }, `invalid payload log mode "both"`},
		{func(p *PayloadLogOptions) { p.URL = "broker:8080/events" }, `invalid --payload-log.url "broker:8080/events": an http:// or https:// URL with a host`},
		{func(p *PayloadLogOptions) { p.SampleRatio = 1.5 }, "sample ratio 1.5"},
		{func(p *PayloadLogOptions) { p.Extensions = map[string]string{"Namespace": "x"} }, `extension "Namespace"`},
		{func(p *PayloadLogOptions) { p.Extensions = map[string]string{"modelname": "x"} }, "the sidecar's own"},
	} {
		o := withLoopback("http://127.0.0.1:1", Options{})
		payloadLogOptions("http://127.0.0.1:1/", tc.mod)(&o)
		_, err := New(o)
		require.ErrorContains(t, err, tc.want)
	}
}

// --payload-log.metadata-header puts the request's values of those headers
// into each event's metadata attribute, as KServe's logger does; keeping
// the request's header for it mirrors nothing to a shadow that does not
// sample the request.
func TestPayloadLogMetadata(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.Contains(r.URL.Path, "broken"):
			http.Error(w, "model not loaded", http.StatusServiceUnavailable)
		case strings.Contains(r.URL.Path, "streamed"):
			// No length: the sidecar passes the answer on as it comes.
			w.Header().Set("Content-Type", "text/event-stream")
			for _, tok := range []string{"le", "git"} {
				io.WriteString(w, "data: "+tok+"\n\n")
				w.(http.Flusher).Flush()
			}
		default:
			return false
		}
		return true
	})
	candidate := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, nil)
	sink := newRecordingServer(t, nil, func(http.ResponseWriter, *http.Request) bool { return true })
	e := startExporter(t, model.URL, func(o *Options) {
		payloadLogOptions(sink.URL, func(p *PayloadLogOptions) { p.MetadataHeaders = []string{"X-User-Id", "x-tenant"} })(o)
		shadowOptions(candidate.URL, func(s *ShadowOptions) { s.SampleRatio = 1e-12 })(o)
	})
	status, _ := predict(t, e, "fraud", `{"instances": [{"amount": 1}]}`, "Ce-Id", "m-1", "X-User-Id", "u1", "X-Tenant", "t1", "X-Other", "no")
	require.Equal(t, 200, status)
	status, _ = predict(t, e, "fraud", `{"instances": [{"amount": 2}]}`, "Ce-Id", "m-2")
	require.Equal(t, 200, status)
	status, _ = predict(t, e, "broken", `{"instances": [{"amount": 3}]}`, "Ce-Id", "m-3", "X-User-Id", "u3")
	require.Equal(t, 503, status)
	status, answer := predict(t, e, "streamed", `{"instances": [{"amount": 4}]}`, "Ce-Id", "m-4", "X-User-Id", "u4")
	require.Equal(t, 200, status)
	require.Equal(t, "data: le\n\ndata: git\n\n", answer)
	waitIdle(t, e)
	got := events(t, sink, 7)
	require.Equal(t, `{"X-Tenant":["t1"],"X-User-Id":["u1"]}`, got["m-1 request"].header.Get("Ce-Metadata"))
	require.Equal(t, `{"X-Tenant":["t1"],"X-User-Id":["u1"]}`, got["m-1 response"].header.Get("Ce-Metadata"))
	require.Equal(t, `{}`, got["m-2 request"].header.Get("Ce-Metadata"))
	require.Equal(t, `{"X-User-Id":["u3"]}`, got["m-3 request"].header.Get("Ce-Metadata"), "a failed prediction's")
	require.Equal(t, `{"X-User-Id":["u4"]}`, got["m-4 request"].header.Get("Ce-Metadata"), "a streamed answer's")
	require.Equal(t, `{"X-User-Id":["u4"]}`, got["m-4 response"].header.Get("Ce-Metadata"))
	require.Equal(t, "data: le\n\ndata: git\n\n", string(got["m-4 response"].body))
	require.Empty(t, candidate.received(), "a request the shadow did not sample was mirrored")

	o := withLoopback("http://127.0.0.1:1", Options{})
	payloadLogOptions("http://127.0.0.1:1/", func(p *PayloadLogOptions) { p.MetadataHeaders = []string{"X Bad"} })(&o)
	_, err := New(o)
	require.ErrorContains(t, err, `invalid payload log metadata header "X Bad"`)
}

// An https payload log receiver is verified against --payload-log.ca-file
// under --payload-log.server-name, and gets the client certificate of
// --payload-log.cert-file.
func TestPayloadLogHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	got := make(chan string, 10)
	sink, cliCert, cliKey := mtlsServer(t, dir, ca, "sink.internal", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Ce-Id") + " " + r.TLS.PeerCertificates[0].Subject.CommonName
	}))
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, nil)
	e := startExporter(t, model.URL, payloadLogOptions(sink.URL, func(p *PayloadLogOptions) {
		p.Mode = PayloadLogRequest
		p.TLS = promconfig.TLSConfig{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey, ServerName: "sink.internal"}
	}))
	status, _ := predict(t, e, "fraud", `{"instances": [{"amount": 1}]}`, "Ce-Id", "tls-1")
	require.Equal(t, 200, status)
	select {
	case s := <-got:
		require.Equal(t, "tls-1 sidecar", s)
	case <-time.After(10 * time.Second):
		t.Fatal("the https receiver got nothing")
	}

	o := withLoopback(model.URL, Options{})
	payloadLogOptions(sink.URL, func(p *PayloadLogOptions) { p.TLS = promconfig.TLSConfig{CertFile: cliCert} })(&o)
	_, err := New(o)
	require.ErrorContains(t, err, "--payload-log.cert-file and --payload-log.key-file go together")
}
