package exporter

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// HTTP/1.1 edge cases: the proxy stays transparent, or does what README.md
// says it does instead.

// okUpstream is a raw model server that answers every request 200 "ok".
func okUpstream(t *testing.T) *rawUpstream {
	return newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
}

// The model server gets the client's Host as sent (its case kept), and the
// upstream's host:port only when the client sent none (HTTP/1.0).
func TestProxyHost(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	rawRoundTrip(t, e.ProxyAddr(), "GET /a HTTP/1.1\r\nHost: model.example:8080\r\n\r\n")
	rawRoundTrip(t, e.ProxyAddr(), "GET /b HTTP/1.1\r\nHost: Model.Example\r\n\r\n")
	rawRoundTrip(t, e.ProxyAddr(), "GET /c HTTP/1.0\r\n\r\n")
	got := up.received()
	require.Len(t, got, 3)
	require.Equal(t, []string{"Host: model.example:8080"}, got[0].headers)
	require.Equal(t, []string{"Host: Model.Example"}, got[1].headers)
	require.Equal(t, "GET /c HTTP/1.0", got[2].start)
	require.Equal(t, []string{"Host: " + strings.TrimPrefix(up.URL(), "http://")}, got[2].headers)
}

// Headers an answer's Connection header names are hop-by-hop, as the
// request's are (RFC 9110 7.6.1): the client does not get them.
func TestProxyResponseConnectionTokens(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		conn := "keep-alive, X-Private"
		if strings.Contains(req.start, "/close") {
			conn = "close, X-Private"
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nConnection: %s\r\nX-Private: secret\r\nx-private: again\r\nX-Public: 1\r\nContent-Length: 2\r\n\r\nok", conn)
		return !strings.Contains(req.start, "/close")
	})
	e := startExporter(t, up.URL(), nil)
	for _, path := range []string{"/keep", "/close"} {
		t.Run(path, func(t *testing.T) {
			resp := rawRoundTrip(t, e.ProxyAddr(), "GET "+path+" HTTP/1.1\r\nHost: m\r\n\r\n")
			require.Equal(t, "HTTP/1.1 200 OK", resp.start)
			require.Equal(t, []string{"Content-Length: 2", "X-Public: 1"}, resp.headers)
			require.Equal(t, "ok", string(resp.body))
		})
	}
}

// A client's Connection header that names Host, Content-Length or
// Transfer-Encoding does not make them hop-by-hop, as it does other
// headers: the model server gets the client's Host and the body framed
// whole, as behind nginx, which ignores such names.
func TestProxyConnectionNamesFraming(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	for _, tc := range []struct{ name, req string }{
		{"length", "POST /v1/models/m:predict HTTP/1.1\r\nHost: model.example\r\nConnection: Host, Content-Length, Transfer-Encoding, X-A\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked", "POST /v1/models/m:predict HTTP/1.1\r\nHost: model.example\r\nConnection: keep-alive, transfer-encoding,host\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(up.received())
			resp := rawRoundTrip(t, e.ProxyAddr(), tc.req)
			require.Equal(t, "HTTP/1.1 200 OK", resp.start)
			got := up.received()
			require.Len(t, got, n+1)
			require.Equal(t, []string{"Host: model.example", "Content-Length: 5"}, got[n].headers)
			require.Equal(t, "hello", string(got[n].body))
		})
	}
}

// A model server that answers before it has read the request's body (a 413
// for a body too large, a 401) and closes the connection: the client gets
// that answer, not a 502, though the rest of the body could not be sent.
func TestProxyEarlyAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo large")
			c.Close() // unread body on the socket: a reset
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	e := startExporter(t, "http://"+ln.Addr().String(), nil)
	body := bytes.Repeat([]byte("x"), 8<<20)
	for range 3 {
		resp := rawRoundTrip(t, e.ProxyAddr(), fmt.Sprintf("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		require.Equal(t, "HTTP/1.1 413 Payload Too Large", resp.start)
		require.Equal(t, "too large", string(resp.body))
	}
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": "upstream_4xx"}))
}

// A chunked request with a trailer, announced or not: the body reaches the
// model server whole; the trailer, like an answer's, is not passed on, and
// not merged into the header either (RFC 9110 6.5.1).
func TestProxyChunkedRequestTrailer(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	for _, announce := range []string{"Trailer: X-Sum\r\n", ""} {
		n := len(up.received())
		resp := rawRoundTrip(t, e.ProxyAddr(), "POST /x HTTP/1.1\r\nHost: x\r\n"+announce+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 9\r\n\r\n")
		require.Equal(t, "HTTP/1.1 200 OK", resp.start)
		got := up.received()
		require.Len(t, got, n+1)
		require.Equal(t, "hello", string(got[n].body))
		require.Equal(t, []string{"Host: x", "Content-Length: 5"}, got[n].headers, "announced: %q", announce)
	}
}

// dialProxy opens a raw connection to the proxy, closed when the test ends.
func dialProxy(t *testing.T, e *Exporter) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", e.ProxyAddr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	return c, bufio.NewReader(c)
}

// A client that sends Expect: 100-continue (curl does for a body over
// 1 KiB) gets 100 Continue before it sends its body, then the model server's
// answer; the model server gets the body whole. The expectation was the
// sidecar's to meet: the model server does not get the Expect header, as
// behind nginx.
func TestProxyExpectContinue(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	body := strings.Repeat("x", 2000)
	c, br := dialProxy(t, e)
	fmt.Fprintf(c, "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body))
	interim, err := readRaw(br)
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 100 Continue", interim.start)
	io.WriteString(c, body)
	resp, err := readRaw(br)
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK", resp.start)
	require.Equal(t, "ok", string(resp.body))
	got := up.received()
	require.Len(t, got, 1)
	require.Equal(t, body, string(got[0].body))
	require.Equal(t, []string{"Host: m", "Content-Length: 2000"}, got[0].headers)
}

// Repeated headers keep their values and the order among them, both ways:
// several Set-Cookie, Vary, WWW-Authenticate or Cache-Control lines each
// mean something together.
func TestProxyRepeatedHeaders(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\n"+
			"Vary: Accept\r\nSet-Cookie: z=1; Path=/\r\nVary: Accept-Encoding\r\n"+
			"WWW-Authenticate: Bearer realm=\"a\"\r\nSet-Cookie: a=2; HttpOnly\r\nWWW-Authenticate: Basic realm=\"b\"\r\n"+
			"Set-Cookie: z=3\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	resp := rawRoundTrip(t, e.ProxyAddr(), "GET /v2/health/ready HTTP/1.1\r\nHost: m\r\nAccept: a/b\r\nX-Order: 3\r\nAccept: c/d\r\nX-Order: 1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n")
	require.Equal(t, "HTTP/1.1 401 Unauthorized", resp.start)
	onlyOf := func(lines []string, name string) []string {
		var out []string
		for _, l := range lines {
			if k, _, _ := strings.Cut(l, ":"); strings.EqualFold(k, name) {
				out = append(out, l)
			}
		}
		return out
	}
	require.Equal(t, []string{"Vary: Accept", "Vary: Accept-Encoding"}, onlyOf(resp.headers, "Vary"))
	require.Equal(t, []string{`WWW-Authenticate: Bearer realm="a"`, `WWW-Authenticate: Basic realm="b"`}, onlyOf(resp.headers, "WWW-Authenticate"))
	// Cookies of the same name (two paths, say) are not merged.
	require.Equal(t, []string{"Set-Cookie: z=1; Path=/", "Set-Cookie: a=2; HttpOnly", "Set-Cookie: z=3"}, onlyOf(resp.headers, "Set-Cookie"))
	in := up.received()[0]
	require.Equal(t, []string{"Accept: a/b", "Accept: c/d"}, onlyOf(in.headers, "Accept"))
	require.Equal(t, []string{"X-Order: 3", "X-Order: 1"}, onlyOf(in.headers, "X-Order"))
	// fasthttp joins a request's Cookie lines into one, as RFC 6265 5.4
	// has a client send them and RFC 9113 8.2.3 has an HTTP/2 proxy do.
	require.Equal(t, []string{"Cookie: a=1; b=2"}, onlyOf(in.headers, "Cookie"))
}

// The request target reaches the model server byte for byte: no decoding,
// re-encoding or normalising of its path or query, an empty query's "?"
// kept. A fragment, which has no place in a request, is cut off.
func TestProxyRequestTargetAsSent(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	for _, target := range []string{
		"/p?a=%2F&b=+&c;d&a=1&e&=x&f=",
		"/p?a=%2f%2F%zz%",
		"/p?q=a?b/c",
		"//double//slash/",
		"/a/./b/../../c",
		"/%2e%2e/%2E/x%2Fy",
		"/caf%C3%A9/%20x+y",
		"/v1/models/m%3Apredict",
		"/p;matrix=1/q",
		"/p?",
		"/v2/models/m/ready?",
		"/?",
		"*",
	} {
		t.Run(target, func(t *testing.T) {
			n := len(up.received())
			resp := rawRoundTrip(t, e.ProxyAddr(), "OPTIONS "+target+" HTTP/1.1\r\nHost: m\r\n\r\n")
			require.Equal(t, "HTTP/1.1 200 OK", resp.start)
			got := up.received()
			require.Len(t, got, n+1)
			require.Equal(t, "OPTIONS "+target+" HTTP/1.1", got[n].start)
		})
	}
	for target, want := range map[string]string{"/p?#top": "/p?", "/p?a=1#x?y": "/p?a=1", "/p#": "/p"} {
		rawRoundTrip(t, e.ProxyAddr(), "GET "+target+" HTTP/1.1\r\nHost: m\r\n\r\n")
		got := up.received()
		require.Equal(t, "GET "+want+" HTTP/1.1", got[len(got)-1].start, target)
	}
	// A prediction with an empty query too, whose body goes with it.
	rawRoundTrip(t, e.ProxyAddr(), "POST /v1/models/m:predict? HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\n{}")
	got := up.received()
	require.Equal(t, "POST /v1/models/m:predict? HTTP/1.1", got[len(got)-1].start)
	require.Equal(t, "{}", string(got[len(got)-1].body))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "m"}))
}

// An absolute-form request target, as a client configured with the sidecar
// as its HTTP proxy sends it, reaches the model server in origin form with
// the target's host as its Host, whatever Host the client sent (RFC 9112
// 3.2.2), its userinfo dropped; it is routed by its path.
func TestProxyAbsoluteFormTarget(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	for _, tc := range []struct{ req, start, host string }{
		{"GET http://model.example/v2/health/ready HTTP/1.1\r\nHost: other\r\n\r\n", "GET /v2/health/ready HTTP/1.1", "model.example"},
		{"POST http://Model.Example:8080/v1/models/m:predict?x=%2F HTTP/1.1\r\nHost: model.example:8080\r\nContent-Length: 2\r\n\r\n{}", "POST /v1/models/m:predict?x=%2F HTTP/1.1", "Model.Example:8080"},
		{"GET http://user:pw@model.example?q HTTP/1.1\r\nHost: model.example\r\n\r\n", "GET /?q HTTP/1.1", "model.example"},
		{"GET HTTPS://model.example HTTP/1.1\r\nHost: model.example\r\n\r\n", "GET / HTTP/1.1", "model.example"},
		{"GET http://[::1]:8080//a/../b? HTTP/1.1\r\nHost: x\r\n\r\n", "GET //a/../b? HTTP/1.1", "[::1]:8080"},
	} {
		t.Run(tc.start, func(t *testing.T) {
			n := len(up.received())
			resp := rawRoundTrip(t, e.ProxyAddr(), tc.req)
			require.Equal(t, "HTTP/1.1 200 OK", resp.start)
			got := up.received()
			require.Len(t, got, n+1)
			require.Equal(t, tc.start, got[n].start)
			require.Equal(t, tc.host, got[n].header("Host"))
			require.Empty(t, got[n].header("Authorization"))
		})
	}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "m"}))
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
}

// An answer to HEAD has no body whatever its framing headers say, and the
// connection goes on with the next answer right after its head.
func TestProxyHeadChunked(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		if strings.HasPrefix(req.start, "HEAD") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n")
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	c, br := dialProxy(t, e)
	io.WriteString(c, "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	var head []string
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" {
			break
		}
		head = append(head, strings.TrimRight(line, "\r\n"))
	}
	require.Equal(t, "HTTP/1.1 200 OK", head[0])
	require.Contains(t, head, "X-A: 1")
	next, err := readRaw(br)
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK", next.start)
	require.Equal(t, "next", string(next.body))
}

// A chunked answer's trailer is not passed on (README: trailers are
// dropped), and the client is not promised one: the Trailer header goes too.
func TestProxyTrailerNotPromised(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	resp := rawRoundTrip(t, e.ProxyAddr(), "GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
	require.Equal(t, "abc", string(resp.body))
	require.ElementsMatch(t, []string{"X-A: 1", "Transfer-Encoding: chunked"}, resp.headers)
}

// A request with both Transfer-Encoding: chunked and a Content-Length (a
// smuggling attempt, or a confused client) goes on framed by its chunks,
// with the one Content-Length of what they held.
func TestProxyChunkedWithContentLength(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	resp := rawRoundTrip(t, e.ProxyAddr(), "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	require.Equal(t, "HTTP/1.1 200 OK", resp.start)
	got := up.received()
	require.Len(t, got, 1)
	require.Equal(t, "hello", string(got[0].body))
	require.Equal(t, []string{"Host: x", "Content-Length: 5"}, got[0].headers)
}

// A request without a body goes to the model server as it came: without
// Content-Length when it came without (fasthttp would add Content-Length: 0
// to all but a GET or HEAD; RFC 9110 8.6 says not to send it when the
// method gives content no meaning), and with the Content-Length: 0 it came
// with, a POST's or PUT's with an empty body. Byte for byte, on one
// kept-alive connection each way, whose framing the model server reads
// request after request.
func TestProxyBodilessRequestLength(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	c, br := dialProxy(t, e)
	for _, tc := range []struct{ name, req, want string }{
		{name: "get", req: "GET /v2/health/ready HTTP/1.1\r\nHost: m\r\nAccept: */*\r\n\r\n"},
		{name: "head", req: "HEAD /v2/health/ready HTTP/1.1\r\nHost: m\r\n\r\n"},
		{name: "options", req: "OPTIONS * HTTP/1.1\r\nHost: m\r\n\r\n"},
		{name: "options with a header like a length", req: "OPTIONS /v1/models/m HTTP/1.1\r\nHost: m\r\nX-Content-Length: 0\r\nOrigin: https://app\r\n\r\n"},
		{name: "delete", req: "DELETE /v1/sessions/7 HTTP/1.1\r\nHost: m\r\n\r\n"},
		{name: "post without length", req: "POST /v2/repository/index HTTP/1.1\r\nHost: m\r\n\r\n"},
		{name: "prediction without length", req: "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\n\r\n"},
		{name: "post with length 0", req: "POST /v2/repository/index HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
		{name: "prediction with length 0", req: "POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
		{name: "put with length 0", req: "PUT /v2/repository/models/m/load HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
		{name: "delete with length 0", req: "DELETE /v1/sessions/7 HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
		{name: "get with length 0", req: "GET /v2/health/ready HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
		// The length's name is fasthttp's, as for any body.
		{name: "length in lower case", req: "PUT /v2/repository/models/m/load HTTP/1.1\r\nHost: m\r\ncontent-length: 0\r\n\r\n",
			want: "PUT /v2/repository/models/m/load HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
		// An empty chunked body goes with its length, as any chunked
		// body does (TestProxyConnectionNamesFraming).
		{name: "empty chunked body", req: "DELETE /v1/sessions/7 HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			want: "DELETE /v1/sessions/7 HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(up.received())
			io.WriteString(c, tc.req)
			resp, err := readRaw(br)
			require.NoError(t, err)
			require.Equal(t, "HTTP/1.1 204 No Content", resp.start)
			got := up.received()
			require.Len(t, got, n+1)
			in := got[n]
			wire := in.start + "\r\n"
			for _, h := range in.headers {
				wire += h + "\r\n"
			}
			wire += "\r\n" + string(in.body)
			want := tc.want
			if want == "" {
				want = tc.req
			}
			require.Equal(t, want, wire)
		})
	}
}

// A 304 may carry a Content-Length (the length of what a 200 would have):
// it is passed on, and no body is read or sent.
func TestProxyNotModifiedLength(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1000\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	c, br := dialProxy(t, e)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\n\r\n")
	var head []string
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" {
			break
		}
		head = append(head, strings.TrimRight(line, "\r\n"))
	}
	require.Equal(t, "HTTP/1.1 304 Not Modified", head[0])
	require.ElementsMatch(t, []string{`ETag: "x"`, "Content-Length: 1000"}, head[1:])
}

// keepAliveRacer is a raw model server that answers the first answered
// requests of each connection and then reads the next one and closes the
// connection without answering it: its keep-alive timeout ran out as the
// request went out, the worst moment. open, when above 1, holds each
// connection's first answer until that many connections have a request,
// so that the proxy keeps that many.
func keepAliveRacer(t *testing.T, answered, open int) *rawUpstream {
	var mu sync.Mutex
	seen := map[net.Conn]int{}
	all := make(chan struct{})
	return newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		mu.Lock()
		seen[c]++
		n := seen[c]
		if n == 1 && len(seen) == open {
			close(all)
		}
		mu.Unlock()
		if n > answered {
			return false
		}
		if open > 1 {
			<-all
		}
		if strings.HasPrefix(req.start, "HEAD ") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
}

// count returns how many requests of u had the start line start.
func (u *rawUpstream) count(start string) int {
	n := 0
	for _, m := range u.received() {
		if m.start == start {
			n++
		}
	}
	return n
}

// A request that goes out on a kept-alive connection the model server
// closes before it answers (it read the request, or not) is sent again, once,
// on another connection, when its method is idempotent, as nginx and Go's
// net/http do: the client gets the answer. A POST (a prediction, which may
// have reached the model) or a PATCH is not: the client gets the 502. Unless
// it carries an Idempotency-Key or X-Idempotency-Key header, which net/http
// takes for idempotent too.
func TestProxyRetriesIdempotentOnReusedConnection(t *testing.T) {
	for _, tc := range []struct {
		method, target, body string
		retried              bool
		header               string // a header line the request carries too
	}{
		{"GET", "/v2/health/ready", "", true, ""},
		{"HEAD", "/v2/health/ready", "", true, ""},
		{"OPTIONS", "*", "", true, ""},
		{"PUT", "/v2/repository/models/m/load", "{}", true, ""},
		{"DELETE", "/v1/sessions/7", "", true, ""},
		{"TRACE", "/", "", true, ""},
		{"POST", "/v1/models/m:predict", `{"instances":[[1]]}`, false, ""},
		{"POST", "/v2/repository/index", "{}", false, ""},
		{"PATCH", "/v1/sessions/7", "{}", false, ""},
		{"POST", "/v1/models/m:predict", `{"instances":[[1]]}`, true, "Idempotency-Key: 8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{"POST", "/v1/chat/completions", `{"model":"m"}`, true, "x-idempotency-key: 42"},
		{"PATCH", "/v1/sessions/7", "{}", true, "Idempotency-Key: \"a\""},
		{"POST", "/v1/models/m:predict", `{"instances":[[1]]}`, false, "Idempotency-Keys: 1"},
	} {
		name := tc.method + " " + tc.target
		if tc.header != "" {
			name += " " + tc.header
		}
		t.Run(name, func(t *testing.T) {
			up := keepAliveRacer(t, 1, 1)
			e := startExporter(t, up.URL(), nil)
			c, br := dialProxy(t, e)
			io.WriteString(c, "GET /v2/health/live HTTP/1.1\r\nHost: m\r\n\r\n")
			first, err := readRaw(br)
			require.NoError(t, err)
			require.Equal(t, "HTTP/1.1 200 OK", first.start)

			// The same connection to the model server, reused.
			header := ""
			if tc.header != "" {
				header = tc.header + "\r\n"
			}
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: m\r\n%sContent-Length: %d\r\n\r\n%s", tc.method, tc.target, header, len(tc.body), tc.body)
			if tc.method == "HEAD" {
				line, err := br.ReadString('\n')
				require.NoError(t, err)
				require.Equal(t, "HTTP/1.1 200 OK\r\n", line)
			} else {
				resp, err := readRaw(br)
				require.NoError(t, err)
				if tc.retried {
					require.Equal(t, "HTTP/1.1 200 OK", resp.start)
					require.Equal(t, "ok", string(resp.body))
				} else {
					require.Equal(t, "HTTP/1.1 502 Bad Gateway", resp.start)
					require.Equal(t, "modelmon: the model server closed the connection before a complete response\n", string(resp.body))
				}
			}
			start := tc.method + " " + tc.target + " HTTP/1.1"
			want := map[bool]int{true: 2, false: 1}[tc.retried]
			require.Equal(t, want, up.count(start), "requests the model server read")
			for _, m := range up.received() {
				if m.start == start {
					require.Equal(t, tc.body, string(m.body))
					if tc.header != "" {
						require.Contains(t, m.headers, tc.header)
					}
				}
			}
			require.Equal(t, map[bool]float64{true: 1, false: 0}[tc.retried], metricValue(t, e, "modelmon_upstream_retries_total", nil))
			failed := metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "connection"}) +
				metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": "connection"})
			require.Equal(t, map[bool]float64{true: 0, false: 1}[tc.retried], failed)
		})
	}
}

// Only a request on a reused connection is sent again: a new connection
// that fails did not fail for a keep-alive timeout. And a request is sent
// again only once: when the second connection fails too (two kept-alive
// connections, each closed on its next request), the client gets the 502.
func TestProxyRetriesOnce(t *testing.T) {
	t.Run("new connection", func(t *testing.T) {
		up := keepAliveRacer(t, 0, 1)
		e := startExporter(t, up.URL(), nil)
		resp := rawRoundTrip(t, e.ProxyAddr(), "GET /v2/health/ready HTTP/1.1\r\nHost: m\r\n\r\n")
		require.Equal(t, "HTTP/1.1 502 Bad Gateway", resp.start)
		require.Equal(t, 1, up.count("GET /v2/health/ready HTTP/1.1"))
		require.Zero(t, metricValue(t, e, "modelmon_upstream_retries_total", nil))
	})
	t.Run("second connection fails too", func(t *testing.T) {
		up := keepAliveRacer(t, 1, 2)
		e := startExporter(t, up.URL(), nil)
		// Two requests at once: two connections, each answered once and
		// kept.
		done := make(chan *rawMessage, 2)
		for range 2 {
			go func() {
				c, err := net.Dial("tcp", e.ProxyAddr())
				if err != nil {
					done <- nil
					return
				}
				defer c.Close()
				io.WriteString(c, "GET /v2/health/live HTTP/1.1\r\nHost: m\r\n\r\n")
				m, _ := readRaw(bufio.NewReader(c))
				done <- m
			}()
		}
		for range 2 {
			m := <-done
			require.NotNil(t, m)
			require.Equal(t, "HTTP/1.1 200 OK", m.start)
		}
		resp := rawRoundTrip(t, e.ProxyAddr(), "GET /v2/health/ready HTTP/1.1\r\nHost: m\r\n\r\n")
		require.Equal(t, "HTTP/1.1 502 Bad Gateway", resp.start)
		require.Equal(t, 2, up.count("GET /v2/health/ready HTTP/1.1"))
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_upstream_retries_total", nil))
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "connection"}))
	})
}

// faultConn is a connection to the model server whose writes fail once
// failAfter is set (>= 0): after that many bytes, as a write into a
// connection the model server has reset fails. The model server then reads
// the end of the connection. It is not closed: a reset connection's
// deadlines can still be set, as the round trip does after the write.
type faultConn struct {
	net.Conn
	mu        sync.Mutex
	failAfter int // -1: no fault
}

func (c *faultConn) fail(after int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failAfter = after
}

func (c *faultConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	after := c.failAfter
	c.mu.Unlock()
	if after < 0 {
		return c.Conn.Write(b)
	}
	n := 0
	if after > 0 {
		n, _ = c.Conn.Write(b[:min(after, len(b))])
	}
	c.Conn.(*net.TCPConn).CloseWrite()
	return n, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
}

// Any request none of which was sent, its first write failing on a
// kept-alive connection, is sent again, a POST too: the model server can't
// have seen it (net/http's nothingWrittenError). A POST of which a part
// went out is not; a GET is.
func TestTransportRetriesUnsent(t *testing.T) {
	up := okUpstream(t)
	var mu sync.Mutex
	var conns []*faultConn
	hc := transparentClient(strings.TrimPrefix(up.URL(), "http://"), false, 4, 5*time.Second, true)
	hc.DialTimeout = dialLazyDeadlines(func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		fc := &faultConn{Conn: c, failAfter: -1}
		mu.Lock()
		conns = append(conns, fc)
		mu.Unlock()
		return fc, nil
	}, time.Millisecond, true)
	t.Cleanup(hc.CloseIdleConnections)
	retries := prometheus.NewCounter(prometheus.CounterOpts{Name: "retries"})
	tr := &transport{timeout: 5 * time.Second, bufferMax: 1 << 20, maxBody: 1 << 20, retries: retries, logger: promslog.NewNopLogger()}
	roundTrip := func(method string) (int, error) {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.Header.SetMethod(method)
		req.SetRequestURI("/v1/models/m:predict")
		req.Header.SetHost("m")
		req.SetBodyString(`{"instances":[[1]]}`)
		_, err := tr.RoundTrip(hc, &req, &resp)
		return resp.StatusCode(), err
	}
	last := func() *faultConn {
		mu.Lock()
		defer mu.Unlock()
		return conns[len(conns)-1]
	}
	posts := func() int { return up.count("POST /v1/models/m:predict HTTP/1.1") }

	st, err := roundTrip("POST")
	require.NoError(t, err)
	require.Equal(t, 200, st)
	last().fail(0)
	st, err = roundTrip("POST")
	require.NoError(t, err)
	require.Equal(t, 200, st)
	require.Equal(t, 2, posts())
	require.Len(t, conns, 2)
	require.Equal(t, 1.0, testutil.ToFloat64(retries))

	last().fail(10) // "POST /v1/m": the model server got a part
	_, err = roundTrip("POST")
	require.ErrorIs(t, err, syscall.EPIPE)
	require.Equal(t, 2, posts())
	require.Equal(t, 1.0, testutil.ToFloat64(retries))

	st, err = roundTrip("POST") // a new connection, to reuse
	require.NoError(t, err)
	require.Equal(t, 200, st)
	last().fail(10)
	st, err = roundTrip("PUT")
	require.NoError(t, err)
	require.Equal(t, 200, st)
	require.Equal(t, 1, up.count("PUT /v1/models/m:predict HTTP/1.1"))
	require.Equal(t, 2.0, testutil.ToFloat64(retries))
}
