package exporter

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
)

// The proxy passes method, path, query, headers (in order and case, hop-by-hop
// aside) and body through unchanged, both ways.
func TestProxyIsTransparent(t *testing.T) {
	body := make([]byte, 70000)
	_, err := rand.Read(body)
	require.NoError(t, err)
	respBody := append([]byte("\x00\x01binary\xff"), body[:1000]...)
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		fmt.Fprintf(c, "HTTP/1.1 201 Created\r\nX-Resp-Case: Q\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Type: image/png\r\nKeep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n", len(respBody))
		c.Write(respBody)
		return true
	})
	e := startExporter(t, up.URL(), nil)

	for _, tc := range []struct {
		name, method, target string
	}{
		{"post with query", "POST", "/v1/models/fraud:predict?x=1&x=2&y=%20z"},
		{"odd path kept as sent", "PUT", "/a//b/../c/%2F?q"},
		{"delete", "DELETE", "/v2/repository/models/m/unload"},
		{"get", "GET", "/v2/models/fraud/versions/3/infer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: model.local\r\nx-lower-case: b\r\nX-Multi: 1\r\nX-Multi: 2\r\nConnection: keep-alive, X-Hop-Private\r\nX-Hop-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nContent-Type: application/octet-stream\r\nUser-Agent: test/1\r\nContent-Length: %d\r\n\r\n", tc.method, tc.target, len(body))
			n := len(up.received())
			resp := rawRoundTrip(t, e.ProxyAddr(), req+string(body))

			got := up.received()
			require.Len(t, got, n+1)
			in := got[n]
			require.Equal(t, tc.method+" "+tc.target+" HTTP/1.1", in.start)
			require.ElementsMatch(t, []string{
				"Host: model.local", "x-lower-case: b", "X-Multi: 1", "X-Multi: 2",
				"Content-Type: application/octet-stream", "User-Agent: test/1",
			}, in.without("Content-Length"))
			require.Equal(t, body, in.body)

			require.Equal(t, "HTTP/1.1 201 Created", resp.start)
			// fasthttp re-serialises cookies, so Set-Cookie is the one header
			// whose name comes out in canonical case.
			require.ElementsMatch(t, []string{
				"X-Resp-Case: Q", "Set-Cookie: a=1", "Set-Cookie: b=2", "Content-Type: image/png",
			}, resp.without("Content-Length"))
			require.Equal(t, respBody, resp.body)
		})
	}
}

// Bodies of 100 MB pass through whole, in both directions; the capture is
// skipped as too large and counted, and nothing else breaks.
func TestProxyHugeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("Content-Type", "application/json")
		// Echo a body as large as the request.
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for n > 0 {
			k := min(n, int64(len(chunk)))
			w.Write(chunk[:k])
			n -= k
		}
	}))
	defer up.Close()
	e := startExporter(t, up.URL, nil)

	const size = 100 << 20
	body := bytes.Repeat([]byte(`{"instances":[[1,2,3]]}`), size/23)
	sum := sha256.Sum256(body)
	resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/big:predict", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, fmt.Sprintf("%x", sum), resp.Header.Get("X-Sum"))
	require.EqualValues(t, len(body), n)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_capture_dropped_total", map[string]string{"model": "big", "reason": "body_too_large"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "big"}))
}

// Upstream failures give the client a short 502/504, are counted by reason,
// and the sidecar keeps serving.
func TestProxyUpstreamFailures(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	healthy := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n{\"predictions\":[1]}"
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		switch {
		case strings.Contains(req.start, "/slow:"):
			<-release
			return false
		case strings.Contains(req.start, "/dies:"):
			// Headers promise 1000 bytes, 10 arrive, then the connection drops.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
			return false
		case strings.Contains(req.start, "/reset:"):
			c.(*net.TCPConn).SetLinger(0)
			return false
		case strings.Contains(req.start, "/garbage:"):
			io.WriteString(c, "THIS IS NOT HTTP\r\n\r\n")
			return false
		case strings.Contains(req.start, "/fail:"):
			io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
			return true
		case strings.Contains(req.start, "/bad:"):
			io.WriteString(c, "HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 3\r\n\r\nbad")
			return true
		}
		io.WriteString(c, healthy)
		return true
	})
	// The timeout bounds every round trip here, not only the slow one's: the
	// healthy answers must come well inside it on a loaded machine, under
	// the race detector.
	e := startExporter(t, up.URL(), func(o *Options) { o.Proxy.Timeout = 2 * time.Second })

	post := func(model string) (int, string) {
		resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/"+model+":predict", "application/json", strings.NewReader(`{"instances":[[1]]}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	passthrough := map[string]float64{} // the errors counted so far, by reason
	for _, tc := range []struct {
		model, reason string
		status        int
		body          string
	}{
		{"slow", "timeout", 504, "did not answer in time"},
		{"dies", "connection", 502, "modelmon:"},
		{"reset", "connection", 502, "modelmon:"},
		{"garbage", "invalid_response", 502, "modelmon:"},
		{"fail", "upstream_5xx", 503, "busy"},
		{"bad", "upstream_4xx", 422, "bad"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			status, body := post(tc.model)
			require.Equal(t, tc.status, status)
			require.Contains(t, body, tc.body)
			require.Less(t, len(body), 200, "error bodies are short")
			require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": tc.model, "reason": tc.reason}))

			// A request that is not a prediction fails alike, and counts
			// as a passthrough error.
			status, body = do(t, "GET", "http://"+e.ProxyAddr()+"/health/"+tc.model+":", "")
			require.Equal(t, tc.status, status)
			require.Contains(t, body, tc.body)
			passthrough[tc.reason]++
			for _, r := range collector.ErrorReasons {
				require.Equal(t, passthrough[r], metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": r}), r)
			}
			// The sidecar stays up.
			status, _ = post("fine")
			require.Equal(t, 200, status)
		})
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	logger, logs := testLogger()
	e := startExporter(t, "http://"+addr, func(o *Options) { o.Logger = logger })
	for i := 0; i < 3; i++ {
		resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/m:predict", "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadGateway, resp.StatusCode)
		require.Equal(t, "modelmon: could not reach the model server\n", string(b))
	}
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": "connection"}))
	require.Equal(t, 1, strings.Count(logs.String(), `msg="Requests to the model server fail`), logs.String())
	require.Contains(t, logs.String(), `reason=connection`)
	require.Contains(t, logs.String(), `upstream=http://`+addr+` times=1`)
}

// A model server that closes idle keep-alive connections (its keep-alive
// timeout, as uvicorn's 5 s or gunicorn's 2 s) or one that closes a connection
// after each answer without saying so: the next request, seconds later, goes
// on a new connection instead of into the closed one, and gets its answer,
// not a 502. Over TLS too, where the server's close comes as an alert first.
func TestProxyUpstreamClosesIdleConnections(t *testing.T) {
	prediction := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"predictions":[1]}`)
	})
	// A Go model server that closes connections idle for 100 ms, and counts
	// the connections it accepts.
	idleTimeout := func(useTLS bool) func(t *testing.T) (string, func() int64, func(*Options)) {
		return func(t *testing.T) (string, func() int64, func(*Options)) {
			up := httptest.NewUnstartedServer(prediction)
			up.Config.IdleTimeout = 100 * time.Millisecond
			var n atomic.Int64
			up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					n.Add(1)
				}
			}
			if !useTLS {
				up.Start()
				t.Cleanup(up.Close)
				return up.URL, n.Load, nil
			}
			up.StartTLS()
			t.Cleanup(up.Close)
			return up.URL, n.Load, func(o *Options) { o.Proxy.TLS.InsecureSkipVerify = true }
		}
	}
	for _, tc := range []struct {
		name string
		up   func(t *testing.T) (url string, conns func() int64, o func(*Options))
	}{
		{"idle timeout", idleTimeout(false)},
		{"idle timeout over TLS", idleTimeout(true)},
		{"closed after each answer", func(t *testing.T) (string, func() int64, func(*Options)) {
			up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"predictions\":[1]}")
				return false // and close, with no Connection: close
			})
			return up.URL(), func() int64 { return int64(len(up.received())) }, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, conns, o := tc.up(t)
			e := startExporter(t, url, o)
			for i := range 4 {
				if i > 0 {
					time.Sleep(250 * time.Millisecond)
				}
				st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{"instances":[[1]]}`)
				require.Equal(t, 200, st, "request %d: %s", i, body)
				require.Equal(t, `{"predictions":[1]}`, body)
			}
			for _, r := range collector.ErrorReasons {
				require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": r}), r)
			}
			require.EqualValues(t, 4, conns(), "a new connection for each request")
		})
	}
}

// Past --proxy.max-conns a request waits for a connection to the model server
// to come free, as it would in the model server's own accept queue, rather
// than failing at once; one that waits out --proxy.timeout gets a 504.
func TestProxyMaxConnsQueues(t *testing.T) {
	var busy, most atomic.Int64
	release := make(chan struct{})
	stuckCame := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := busy.Add(1)
		defer busy.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if strings.Contains(r.URL.Path, "/stuck:") {
			stuckCame <- struct{}{}
			<-release
		}
		time.Sleep(100 * time.Millisecond)
		io.WriteString(w, `{"predictions":[1]}`)
	}))
	defer up.Close()
	defer close(release)

	e := startExporter(t, up.URL, func(o *Options) { o.Proxy.MaxConns = 1 })
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Go(func() { statuses[i], _ = do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{}`) })
	}
	wg.Wait()
	require.Equal(t, []int{200, 200, 200, 200}, statuses, "each waited its turn")
	require.EqualValues(t, 1, most.Load(), "one connection at a time")

	e = startExporter(t, up.URL, func(o *Options) { o.Proxy.MaxConns = 1; o.Proxy.Timeout = 300 * time.Millisecond })
	stuck := make(chan int)
	go func() { st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/stuck:predict", `{}`); stuck <- st }()
	select {
	case <-stuckCame: // the stuck request holds the only connection
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck request never reached the model server")
	}
	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/waits:predict", `{}`)
	require.Equal(t, 504, st)
	require.Equal(t, "modelmon: the model server did not answer in time\n", body)
	require.Equal(t, 504, <-stuck)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "waits", "reason": "timeout"}))
}

// Headers of up to 16 KiB pass both ways (a large token, a long trace
// header); an answer whose headers are larger gets a 502 and is counted.
func TestProxyLargeHeaders(t *testing.T) {
	big := strings.Repeat("a", 10<<10)
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		size := 10 << 10
		if strings.Contains(req.start, "/huge:") {
			size = 20 << 10
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok", strings.Repeat("b", size))
		return true
	})
	e := startExporter(t, up.URL(), nil)
	resp := rawRoundTrip(t, e.ProxyAddr(), "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer "+big+"\r\nContent-Length: 2\r\n\r\n{}")
	require.Equal(t, "HTTP/1.1 200 OK", resp.start)
	require.Contains(t, resp.headers, "X-Big: "+strings.Repeat("b", 10<<10))
	require.Contains(t, up.received()[0].headers, "Authorization: Bearer "+big)
	resp = rawRoundTrip(t, e.ProxyAddr(), "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer "+big+big+"\r\nContent-Length: 2\r\n\r\n{}")
	require.Equal(t, "HTTP/1.1 431 Request Header Fields Too Large", resp.start)
	require.Len(t, up.received(), 1, "not sent on")

	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/huge:predict", `{}`)
	require.Equal(t, 502, st)
	require.Equal(t, "modelmon: the model server sent an invalid response\n", body)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "huge", "reason": "invalid_response"}))
}

// A model server on IPv6 is reached: fasthttp's default dialer knows only
// IPv4.
func TestProxyIPv6Upstream(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"predictions":[1]}`)
	}))
	up.Listener.Close()
	up.Listener = ln
	up.Start()
	defer up.Close()
	e := startExporter(t, up.URL, nil)
	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{}`)
	require.Equal(t, 200, st, body)
	require.Equal(t, `{"predictions":[1]}`, body)
}

// /metrics negotiates OpenMetrics, and there the latency histogram carries
// the trace id of the request's traceparent as an exemplar.
func TestExemplarsAndOpenMetrics(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, nil)
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/fraud:predict", `{"instances":[[1]]}`,
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	require.Equal(t, 200, st)
	// A malformed traceparent is ignored, not an error.
	st, _ = do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/fraud:predict", `{"instances":[[1]]}`, "traceparent", "garbage")
	require.Equal(t, 200, st)

	req, err := http.NewRequest("GET", "http://"+e.WebAddr()+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/openmetrics-text")
	require.Contains(t, string(b), `# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"}`)
	require.True(t, strings.HasSuffix(string(b), "# EOF\n"))

	st, body := do(t, "GET", "http://"+e.WebAddr()+"/metrics", "")
	require.Equal(t, 200, st)
	require.NotContains(t, body, "trace_id", "the classic text format has no exemplars")
}

// Each bucket of the latency histogram takes at most one exemplar per
// exemplarInterval, and the first request into a bucket always gives one.
func TestExemplarDue(t *testing.T) {
	m := newModel("fraud", collector.NewMetrics(prometheus.NewRegistry()))
	t0 := time.Unix(1700000000, 0)
	require.True(t, m.exemplarDue(0.002, t0), "first into the 2.5 ms bucket")
	require.False(t, m.exemplarDue(0.0021, t0.Add(exemplarInterval/2)), "same bucket, too soon")
	require.True(t, m.exemplarDue(0.2, t0.Add(exemplarInterval/2)), "first into the 250 ms bucket")
	require.True(t, m.exemplarDue(0.0025, t0.Add(exemplarInterval)), "2.5 ms bucket, interval passed")
	require.True(t, m.exemplarDue(0.001, t0.Add(exemplarInterval)), "first into the 1 ms bucket")
	require.True(t, m.exemplarDue(60, t0), "first into +Inf")
	require.False(t, m.exemplarDue(math.Inf(1), t0), "+Inf again, too soon")
}

// A chunked request body reaches the model server whole, with a length.
func TestProxyChunkedRequest(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	resp := rawRoundTrip(t, e.ProxyAddr(), "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ins\r\n9\r\ntances\":[\r\n5\r\n[1]]}\r\n0\r\n\r\n")
	require.Equal(t, "HTTP/1.1 200 OK", resp.start)
	got := up.received()
	require.Len(t, got, 1)
	require.Equal(t, `{"instances":[[1]]}`, string(got[0].body))
	require.Contains(t, got[0].headers, "Content-Length: 19")
}

// An https model server is verified against --proxy.upstream-ca-file (the
// system's CA certificates without it) under --proxy.upstream-server-name,
// and gets the client certificate of --proxy.upstream-cert-file when it asks
// for one, read again for each new connection so that a renewed certificate
// is used. A handshake that fails is a 502, counted as a connection error.
func TestProxyHTTPSUpstream(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	srvCert, srvKey := ca.issue(t, dir, "model.internal", x509.ExtKeyUsageServerAuth, nil)
	cliCert, cliKey := ca.issue(t, dir, "sidecar", x509.ExtKeyUsageClientAuth, nil)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	require.NoError(t, err)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A new connection, and so a new handshake, for every request.
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions":["`+r.TLS.PeerCertificates[0].Subject.CommonName+`"]}`)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	up.StartTLS()
	defer up.Close()

	verified := promconfig.TLSConfig{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey, ServerName: "model.internal"}
	const handshake = "modelmon: the TLS handshake with the model server failed\n"
	for _, tc := range []struct {
		name string
		tls  promconfig.TLSConfig
		fail string // the client's body, empty when the request goes through
	}{
		{"verified, with a client certificate", verified, ""},
		{"an unknown CA", promconfig.TLSConfig{CertFile: cliCert, KeyFile: cliKey, ServerName: "model.internal"}, handshake},
		{"the certificate's name is not the upstream's host", promconfig.TLSConfig{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey}, handshake},
		// In TLS 1.3 the server checks the client's certificate after the
		// client has finished its handshake: all it sees is the connection
		// closed.
		{"no client certificate", promconfig.TLSConfig{CAFile: ca.file, ServerName: "model.internal"}, "modelmon: the model server closed the connection before a complete response\n"},
		{"insecure", promconfig.TLSConfig{InsecureSkipVerify: true, CertFile: cliCert, KeyFile: cliKey}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startExporter(t, up.URL, func(o *Options) { o.Proxy.TLS = tc.tls })
			st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{"instances":[[1]]}`)
			if tc.fail == "" {
				require.Equal(t, 200, st)
				require.Equal(t, `{"predictions":["sidecar"]}`, body)
				return
			}
			require.Equal(t, 502, st)
			require.Equal(t, tc.fail, body)
			require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": "connection"}))
		})
	}

	t.Run("a renewed client certificate", func(t *testing.T) {
		certs := t.TempDir()
		certFile, keyFile := filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key")
		renew := func(name string) {
			c, k := ca.issue(t, certs, name, x509.ExtKeyUsageClientAuth, nil)
			require.NoError(t, os.Rename(c, certFile))
			require.NoError(t, os.Rename(k, keyFile))
		}
		renew("sidecar-1")
		tlsCfg := verified
		tlsCfg.CertFile, tlsCfg.KeyFile = certFile, keyFile
		e := startExporter(t, up.URL, func(o *Options) { o.Proxy.TLS = tlsCfg })
		_, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{}`)
		require.Equal(t, `{"predictions":["sidecar-1"]}`, body)
		renew("sidecar-2")
		_, body = do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{}`)
		require.Equal(t, `{"predictions":["sidecar-2"]}`, body)
	})

	t.Run("a rotated CA", func(t *testing.T) {
		dir := t.TempDir()
		next := newTestCA(t, dir)
		var current atomic.Pointer[tls.Certificate]
		serve := func(ca *testCA) {
			c, k := ca.issue(t, dir, "model.internal", x509.ExtKeyUsageServerAuth, nil)
			pair, err := tls.LoadX509KeyPair(c, k)
			require.NoError(t, err)
			current.Store(&pair)
		}
		serve(ca)
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, `{"predictions":[1]}`)
		}))
		up.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }}
		up.StartTLS()
		defer up.Close()
		caFile := filepath.Join(dir, "ca.crt")
		trust := func(content []byte) {
			tmp := caFile + ".new"
			require.NoError(t, os.WriteFile(tmp, content, 0o644))
			require.NoError(t, os.Rename(tmp, caFile))
		}
		pem := func(ca *testCA) []byte {
			b, err := os.ReadFile(ca.file)
			require.NoError(t, err)
			return b
		}
		trust(pem(ca))
		e := startExporter(t, up.URL, func(o *Options) {
			o.Proxy.TLS = promconfig.TLSConfig{CAFile: caFile, ServerName: "model.internal"}
		})
		predict := func() (int, string) {
			return do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/m:predict", `{}`)
		}
		st, _ := predict()
		require.Equal(t, 200, st)

		serve(next) // the model server moves to a certificate of the new CA
		st, body := predict()
		require.Equal(t, 502, st)
		require.Equal(t, handshake, body)

		trust(append(pem(ca), pem(next)...)) // the bundle with both, as during a rotation
		st, _ = predict()
		require.Equal(t, 200, st, "the new CA is trusted without a restart")

		trust([]byte("half-written"))
		st, _ = predict()
		require.Equal(t, 200, st, "a file with no certificate leaves the last good CAs")
		require.NoError(t, os.Remove(caFile))
		st, _ = predict()
		require.Equal(t, 200, st, "so does a missing file")

		trust(pem(ca)) // the old CA alone: the new certificate is refused again
		st, _ = predict()
		require.Equal(t, 502, st)
		require.Equal(t, 1.0+1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": "connection"}))
	})
}

// The upstream TLS options are checked at start: files that can't be read,
// or TLS options for a plain-http model server, stop it with a clear error.
func TestProxyUpstreamTLSErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	cliCert, cliKey := ca.issue(t, dir, "sidecar", x509.ExtKeyUsageClientAuth, nil)
	for _, tc := range []struct {
		upstream string
		grpc     string // --proxy.grpc-upstream
		tls      promconfig.TLSConfig
		want     string // "" for no error
	}{
		{"https://127.0.0.1:1", "", promconfig.TLSConfig{CAFile: filepath.Join(dir, "missing.pem")}, "unable to read CA cert"},
		{"https://127.0.0.1:1", "", promconfig.TLSConfig{CAFile: cliKey}, "unable to use specified CA cert"},
		{"https://127.0.0.1:1", "", promconfig.TLSConfig{CertFile: cliCert}, "--proxy.upstream-cert-file and --proxy.upstream-key-file go together"},
		{"https://127.0.0.1:1", "", promconfig.TLSConfig{CertFile: cliCert, KeyFile: ca.file}, "unable to use specified client cert"},
		{"http://127.0.0.1:1", "", promconfig.TLSConfig{CAFile: ca.file}, "need an https:// --proxy.upstream"},
		{"http://127.0.0.1:1", "http://127.0.0.1:2", promconfig.TLSConfig{CAFile: ca.file}, "need an https:// --proxy.upstream or --proxy.grpc-upstream"},
		// The flags serve the one upstream that is https, whatever the case
		// of its scheme.
		{"http://127.0.0.1:1", "HTTPS://127.0.0.1:2", promconfig.TLSConfig{CAFile: ca.file}, ""},
	} {
		o := DefaultOptions()
		o.Proxy.Upstream, o.Proxy.GRPCUpstream, o.Proxy.TLS = tc.upstream, tc.grpc, tc.tls
		o.Logger = promslog.NewNopLogger()
		e, err := New(o)
		if tc.want == "" {
			require.NoError(t, err)
			e.proxy.grpc.conn.Close()
			continue
		}
		require.ErrorContains(t, err, tc.want)
	}
}

// A request that carries no Content-Type or User-Agent reaches the model
// server without them: the proxy adds none of fasthttp's defaults.
func TestProxyAddsNoRequestHeaders(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 299 Whatever Works\r\nLink: <a>\r\nLink: <b>\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	resp := rawRoundTrip(t, e.ProxyAddr(), "POST /v1/models/m:predict HTTP/1.1\r\nHost: model.local\r\nContent-Length: 3\r\n\r\nabc")
	got := up.received()
	require.Len(t, got, 1)
	require.Equal(t, []string{"Host: model.local", "Content-Length: 3"}, got[0].headers)
	require.Equal(t, "abc", string(got[0].body))
	require.Equal(t, "HTTP/1.1 299 Whatever Works", resp.start, "the reason phrase as sent")
	require.Equal(t, []string{"Content-Length: 2", "Link: <a>", "Link: <b>"}, resp.headers)
}

// A Stop right after Start can come before the goroutine serving the proxy
// has run. fasthttp's Shutdown then has no listener to close and returns at
// once; the proxy closes its listener all the same, so that the Serve that
// comes late returns rather than serving until the process ends (and Stop,
// waiting for it, timing out).
func TestProxyShutdownBeforeServe(t *testing.T) {
	e, err := New(Options{Proxy: ProxyOptions{Upstream: "http://127.0.0.1:1"}, DisableExporterMetrics: true})
	require.NoError(t, err)
	ln, err := e.proxy.listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	require.NoError(t, e.proxy.shutdown(context.Background()))
	c, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		c.Close()
	}
	require.Error(t, err, "the listener is closed at shutdown, whether Serve has taken it or not")
	require.NoError(t, e.proxy.serve(), "a Serve after shutdown returns at once")
}
