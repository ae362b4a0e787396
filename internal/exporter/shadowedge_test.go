package exporter

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// The shadow's round trip is the proxy's (transport): what the shadow model
// server receives, and when a mirrored request is sent again.

// predictionUpstream is a raw model server that answers every request with
// one prediction.
func predictionUpstream(t *testing.T) *rawUpstream {
	return newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"predictions\":[1]}")
		return true
	})
}

// wire is m as it crossed the wire, with its Host header replaced by host.
func (m *rawMessage) wire(host string) string {
	s := m.start + "\r\n"
	for _, h := range m.headers {
		if k, _, _ := strings.Cut(h, ":"); strings.EqualFold(k, "Host") {
			h = "Host: " + host
		}
		s += h + "\r\n"
	}
	return s + "\r\n" + string(m.body)
}

// The shadow model server gets a mirrored request byte for byte as the
// model server got it, but for its own Host: the chunked body with the
// length the model server got, header names in their case, an empty
// query's "?". And a request without a body (a prediction without one does
// not parse, so it is not mirrored today, but the sender is handed one)
// goes as the model server got it: without Content-Length when it came
// without (fasthttp would write Content-Length: 0 for a POST), with the
// Content-Length: 0 the client sent.
func TestShadowRequestAsSent(t *testing.T) {
	model, shadowUp := predictionUpstream(t), predictionUpstream(t)
	e := startExporter(t, model.URL(), shadowOptions(shadowUp.URL(), nil))
	shadowHost := strings.TrimPrefix(shadowUp.URL(), "http://")
	c, br := dialProxy(t, e)
	for _, tc := range []struct{ name, req string }{
		{"length", "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"instances\":[1]}"},
		{"chunked", "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ins\r\nc\r\ntances\":[1]}\r\n0\r\n\r\n"},
		{"names in their case", "POST /v1/models/m:predict?x=1&y HTTP/1.1\r\nhost: m\r\nx-trace-ID: a\r\nAccept: */*\r\nAccept: application/json\r\ncontent-length: 17\r\n\r\n{\"instances\":[1]}"},
		{"empty query", "POST /v1/models/m:predict? HTTP/1.1\r\nHost: m\r\nIdempotency-Key: 7\r\nContent-Length: 17\r\n\r\n{\"instances\":[1]}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(model.received())
			io.WriteString(c, tc.req)
			resp, err := readRaw(br)
			require.NoError(t, err)
			require.Equal(t, "HTTP/1.1 200 OK", resp.start)
			waitIdle(t, e)
			got, mirrored := model.received(), shadowUp.received()
			require.Len(t, got, n+1)
			require.Len(t, mirrored, n+1)
			require.Equal(t, got[n].wire(shadowHost), mirrored[n].wire(shadowHost))
			require.Equal(t, shadowHost, mirrored[n].header("Host"))
		})
	}
	m := map[string]string{"model": "m"}
	require.Equal(t, 4.0, metricValue(t, e, collector.ShadowPredictionsTotal, m))
	for _, r := range collector.ShadowErrorReasons {
		require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "m", "reason": r}), r)
	}

	// Without a body: what the model server got goes to the shadow's
	// senders as the proxy captures a request, its header as sent.
	mod := e.models.get([]byte("m"), 100)
	for _, tc := range []struct{ name, req string }{
		{"post without length", "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nAccept: */*\r\n\r\n"},
		{"post with length 0", "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(model.received())
			io.WriteString(c, tc.req)
			resp, err := readRaw(br)
			require.NoError(t, err)
			require.Equal(t, "HTTP/1.1 200 OK", resp.start)
			got := model.received()
			require.Len(t, got, n+1)
			require.Equal(t, tc.req, got[n].wire("m"), "the model server got the request as sent")

			n = len(shadowUp.received())
			e.shadow.offer(mod, modelConfig{}, payload.FormatKServeV1, false, encIdentity, []byte(got[n].wire("m")), nil, nil, nil)
			waitIdle(t, e)
			mirrored := shadowUp.received()
			require.Len(t, mirrored, n+1)
			require.Equal(t, got[n].wire(shadowHost), mirrored[n].wire(shadowHost))
		})
	}
}

// The shadow's answer is read whole whatever its framing, as the parser
// parses it whole, not streamed as the proxy streams the model server's
// answers of unknown length: chunked, or until the connection closes. One
// over --capture.max-body-size is not compared, however it comes.
func TestShadowAnswerFraming(t *testing.T) {
	const prediction = `{"predictions":[1]}`
	large := `{"predictions":[1],"pad":"` + strings.Repeat("x", 300) + `"}`
	chunked := func(body string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	}
	for _, tc := range []struct {
		name, answer string
		close        bool
		reason       string // of the error, or "" when compared
	}{
		{name: "length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n" + prediction},
		{name: "chunked", answer: chunked(prediction)},
		{name: "until the connection closes", answer: "HTTP/1.1 200 OK\r\n\r\n" + prediction, close: true},
		{name: "length too large", answer: fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(large), large), reason: collector.ErrorInvalidResponse},
		{name: "chunked too large", answer: chunked(large), reason: collector.ErrorInvalidResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shadowUp := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
				io.WriteString(c, tc.answer)
				return !tc.close
			})
			e := startExporter(t, predictionUpstream(t).URL(), func(o *Options) {
				shadowOptions(shadowUp.URL(), nil)(o)
				o.CaptureMaxBodySize = 256
			})
			for range 2 {
				status, body := predict(t, e, "m", `{"instances":[1]}`)
				require.Equal(t, 200, status)
				require.Equal(t, prediction, body)
				waitIdle(t, e)
			}
			m := map[string]string{"model": "m"}
			if tc.reason == "" {
				require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPredictionsTotal, m))
			} else {
				require.Zero(t, metricValue(t, e, collector.ShadowPredictionsTotal, m))
				require.Equal(t, 2.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "m", "reason": tc.reason}))
			}
			require.Zero(t, metricValue(t, e, collector.ShadowRetriesTotal, m))
		})
	}
}

// predictionRacer is a raw shadow model server that answers the first
// request of each connection with one prediction, then reads the next one
// and closes the connection without answering it: its keep-alive timeout
// ran out as the request went out (keepAliveRacer).
func predictionRacer(t *testing.T) *rawUpstream {
	var mu sync.Mutex
	seen := map[net.Conn]int{}
	return newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		mu.Lock()
		seen[c]++
		n := seen[c]
		mu.Unlock()
		if n > 1 {
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"predictions\":[1]}")
		return true
	})
}

// A mirrored request whose kept-alive connection to the shadow ends before
// any answer is sent again, once, on another connection, by the proxy's
// rule (retryable) and counted in modelmon_shadow_retries_total: one that
// carries an Idempotency-Key or X-Idempotency-Key header, as the model
// server's would be. A prediction without one, which may have reached the
// candidate, is not: it counts as a connection error.
func TestShadowRetriesOnReusedConnection(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		retried      bool
	}{
		{"prediction", "", false},
		{"idempotency key", "Idempotency-Key: 8e03978e-40d5-43e8-bc93-6894a57f9324", true},
		{"x-idempotency-key", "x-idempotency-key: 42", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shadowUp := predictionRacer(t)
			e := startExporter(t, predictionUpstream(t).URL(), shadowOptions(shadowUp.URL(), nil))
			c, br := dialProxy(t, e)
			header := ""
			if tc.header != "" {
				header = tc.header + "\r\n"
			}
			for range 2 {
				io.WriteString(c, "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\n"+header+"Content-Length: 17\r\n\r\n{\"instances\":[1]}")
				resp, err := readRaw(br)
				require.NoError(t, err)
				require.Equal(t, "HTTP/1.1 200 OK", resp.start)
				// One at a time: the second goes on the first's connection.
				waitIdle(t, e)
			}
			m := map[string]string{"model": "m"}
			want := map[bool]int{true: 3, false: 2}[tc.retried]
			require.Len(t, shadowUp.received(), want, "requests the shadow read")
			for _, got := range shadowUp.received() {
				require.Equal(t, `{"instances":[1]}`, string(got.body))
				if tc.header != "" {
					require.Contains(t, got.headers, tc.header)
				}
			}
			require.Equal(t, 2.0, metricValue(t, e, collector.ShadowRequestsTotal, m))
			require.Equal(t, map[bool]float64{true: 1, false: 0}[tc.retried], metricValue(t, e, collector.ShadowRetriesTotal, m))
			require.Equal(t, map[bool]float64{true: 0, false: 1}[tc.retried],
				metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "m", "reason": collector.ErrorConnection}))
			require.Equal(t, map[bool]float64{true: 2, false: 1}[tc.retried], metricValue(t, e, collector.ShadowPredictionsTotal, m))
			require.Zero(t, metricValue(t, e, collector.UpstreamRetriesTotal, nil), "the model server's connection was fine")
		})
	}
}

// A mirrored prediction none of which reached the shadow, its first write
// failing on a kept-alive connection the shadow had reset, is sent again on
// another connection, as the proxy sends the model server's
// (TestTransportRetriesUnsent): the shadow can't have seen it.
func TestShadowRetriesUnsent(t *testing.T) {
	shadowUp := predictionUpstream(t)
	e := startExporter(t, predictionUpstream(t).URL(), shadowOptions(shadowUp.URL(), nil))
	var mu sync.Mutex
	var conns []*faultConn
	e.shadow.client.DialTimeout = dialLazyDeadlines(func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		fc := &faultConn{Conn: c, failAfter: -1}
		mu.Lock()
		conns = append(conns, fc)
		mu.Unlock()
		return fc, nil
	}, deadlineSlack(e.opts.Shadow.Timeout), true)
	for i := range 2 {
		if i > 0 {
			mu.Lock()
			conns[len(conns)-1].fail(0)
			mu.Unlock()
		}
		status, _ := predict(t, e, "m", `{"instances":[1]}`)
		require.Equal(t, 200, status)
		waitIdle(t, e)
	}
	m := map[string]string{"model": "m"}
	require.Len(t, shadowUp.received(), 2)
	require.Len(t, conns, 2)
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRetriesTotal, m))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPredictionsTotal, m))
	for _, r := range collector.ShadowErrorReasons {
		require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "m", "reason": r}), r)
	}
}

// A shadow that closes idle keep-alive connections (its keep-alive
// timeout): a mirrored request that comes after it goes on a new connection
// instead of into the closed one, as the model server's does
// (TestProxyUpstreamClosesIdleConnections), and is compared, not counted as
// an error. Sampled predictions come seconds apart when the sample ratio is
// low.
func TestShadowClosesIdleConnections(t *testing.T) {
	var conns atomic.Int64
	shadowUp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"predictions":[1]}`)
	}))
	shadowUp.Config.IdleTimeout = 100 * time.Millisecond
	shadowUp.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	shadowUp.Start()
	t.Cleanup(shadowUp.Close)
	e := startExporter(t, predictionUpstream(t).URL(), shadowOptions(shadowUp.URL, nil))
	for i := range 3 {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		status, _ := predict(t, e, "m", `{"instances":[1]}`)
		require.Equal(t, 200, status)
		waitIdle(t, e)
	}
	m := map[string]string{"model": "m"}
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowPredictionsTotal, m))
	for _, r := range collector.ShadowErrorReasons {
		require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "m", "reason": r}), r)
	}
	require.Zero(t, metricValue(t, e, collector.ShadowRetriesTotal, m), "a connection closed while idle is not a retry")
	require.EqualValues(t, 3, conns.Load(), "a new connection for each request")
}

// A shadow on IPv6 is reached, as the model server is
// (TestProxyIPv6Upstream): fasthttp's default dialer knows only IPv4.
func TestShadowIPv6Upstream(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	shadowUp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"predictions":[1]}`)
	}))
	shadowUp.Listener.Close()
	shadowUp.Listener = ln
	shadowUp.Start()
	defer shadowUp.Close()
	e := startExporter(t, predictionUpstream(t).URL(), shadowOptions(shadowUp.URL, nil))
	status, _ := predict(t, e, "m", `{"instances":[1]}`)
	require.Equal(t, 200, status)
	waitIdle(t, e)
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, map[string]string{"model": "m"}))
}
