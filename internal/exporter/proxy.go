package exporter

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// ProxyOptions configure the reverse proxy in front of the model server.
type ProxyOptions struct {
	// Upstream is the model server's base URL, http or https.
	Upstream string
	// Timeout bounds a whole upstream round trip, or each read of a streamed
	// answer; past it the client gets 504.
	Timeout time.Duration
	// MaxBodySize bounds request and response bodies, in bytes.
	MaxBodySize int
	// MaxConns bounds the connections to the upstream.
	MaxConns int
	// IdleTimeout closes idle keep-alive connections, both sides.
	IdleTimeout time.Duration
	// ReadTimeout and WriteTimeout bound reading a client's request and
	// writing its response; 0 means no limit.
	ReadTimeout, WriteTimeout time.Duration
	// TLS configures the connections to an https Upstream: its CA, a client
	// certificate, the name to verify. The zero value verifies against the
	// system's CA certificates.
	TLS promconfig.TLSConfig
	// GRPCUpstream is the model server's gRPC endpoint, an http:// URL
	// (cleartext HTTP/2); empty for no gRPC proxy.
	GRPCUpstream string
	// ShutdownDelay is how long Run keeps the proxy serving after its
	// context is done, not ready and closing each client connection after
	// its response, before it stops.
	ShutdownDelay time.Duration
	// PlainSyscalls (--no-proxy.raw-syscalls) makes the reads and writes
	// of the proxy's TCP connections, to clients and to the model server
	// (and the shadow's), through net.Conn. By default, on Linux, they are
	// raw system calls (package rawio), which don't wake the runtime's
	// monitor thread: that costs a proxy that idles between requests about
	// a quarter of its CPU.
	PlainSyscalls bool
}

// maxHeaderSize bounds the headers of a request and of an answer, in bytes.
const maxHeaderSize = 16 << 10

// proxy is the transparent reverse proxy. Its handler is the sidecar's hot
// path: it times and counts the request, hands copies of the bodies to the
// capture queue without waiting, and never fails a request because of
// monitoring.
type proxy struct {
	client    *fasthttp.HostClient // the connections to the model server
	transport *transport           // the round trip on them
	server    *fasthttp.Server
	ln        net.Listener  // from listen: what serve serves and shutdown closes
	slack     time.Duration // of the client connections' deadlines
	raw       bool          // --proxy.raw-syscalls
	draining  atomic.Bool   // shutting down: every response closes its connection
	host      string        // upstream host:port, for requests that carry no Host
	upstream  string        // --proxy.upstream, for the logs
	failing   *warning      // the model server fails requests
	grpc      *grpcProxy    // nil without --proxy.grpc-upstream
	shadow    *shadow       // samples for the shadow; nil without --shadow.upstream
	// logPayloads: with --payload-log.url, a request's Ce-Id header is its
	// prediction id when the label join gives none (as KServe's logger
	// takes it). logHeaders: with --payload-log.metadata-header, the
	// request's header is captured for the parsers to pick them from.
	// logFailed: the payload log takes requests, so a failed prediction's
	// request is captured for it too.
	logPayloads, logHeaders, logFailed bool

	cfg     *atomic.Pointer[runtimeConfig]
	labels  *labels // nil unless labels are enabled
	models  *models
	queue   *queue
	metrics *collector.Metrics
	now     func() time.Time
	logger  *slog.Logger
}

func newProxy(o ProxyOptions, cfg *atomic.Pointer[runtimeConfig], ms *models, q *queue, m *collector.Metrics, now func() time.Time, logger *slog.Logger) (*proxy, error) {
	u, host, err := parseUpstream("--proxy.upstream", o.Upstream)
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if u.Scheme == "https" {
		if tlsConfig, err = upstreamTLS(o.TLS, "--proxy.upstream-", "--proxy.upstream", o.Upstream, u.Hostname(), logger); err != nil {
			return nil, err
		}
	} else if g, err := url.Parse(o.GRPCUpstream); o.TLS != (promconfig.TLSConfig{}) && err == nil && g.Scheme != "https" {
		// (A --proxy.grpc-upstream that can't be parsed is reported below.)
		return nil, fmt.Errorf("the --proxy.upstream-* TLS flags need an https:// --proxy.upstream or --proxy.grpc-upstream, not %q", o.Upstream)
	}
	p := &proxy{
		slack:    deadlineSlack(o.IdleTimeout, o.ReadTimeout, o.WriteTimeout),
		raw:      !o.PlainSyscalls,
		host:     u.Host,
		upstream: o.Upstream,
		failing:  newWarning(logger, "Requests to the model server fail: the clients get 502 or 504 (modelmon_prediction_errors_total counts each by reason)"),
		cfg:      cfg,
		models:   ms,
		queue:    q,
		metrics:  m,
		now:      now,
		logger:   logger,
	}
	p.client = transparentClient(host, u.Scheme == "https", o.MaxConns, o.Timeout, !o.PlainSyscalls)
	p.client.TLSConfig = tlsConfig
	p.client.MaxIdleConnDuration = o.IdleTimeout
	p.transport = &transport{timeout: o.Timeout, bufferMax: q.maxBody, maxBody: o.MaxBodySize, retries: m.UpstreamRetries, logger: logger}
	if o.GRPCUpstream != "" {
		if p.grpc, err = newGRPCProxy(p, o, logger); err != nil {
			return nil, err
		}
	}
	p.server = &fasthttp.Server{
		Handler:                       p.handle,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		MaxRequestBodySize:            o.MaxBodySize,
		ReadTimeout:                   o.ReadTimeout,
		WriteTimeout:                  o.WriteTimeout,
		IdleTimeout:                   o.IdleTimeout,
		ReadBufferSize:                maxHeaderSize,
		Logger:                        fasthttpLogger{logger},
	}
	return p, nil
}

// transparentClient returns a client of the model server at addr that
// passes requests on as sent: the model server and a shadow of it see
// exactly what the client sent. Its requests go through a transport
// (stream.go), not HostClient.Do, for the proxy and the shadow alike: that
// round trip checks a connection that sat idle before it uses it, and
// sends a request again only when that is safe (retryable).
func transparentClient(addr string, isTLS bool, maxConns int, timeout time.Duration, raw bool) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:     addr,
		IsTLS:    isTLS,
		MaxConns: maxConns,
		// Past MaxConns a request waits for a free connection, within its
		// timeout, as it would in the model server's own accept queue.
		MaxConnWaitTimeout: timeout,
		// Response headers up to maxHeaderSize, as request headers (nginx
		// stops at 4 KiB by default, fasthttp at 4 KiB).
		ReadBufferSize:                maxHeaderSize,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		// Connections that count what is written to them and whose idle
		// close can be seen (transport.try), over IPv4 or IPv6.
		DialTimeout: dialLazyDeadlines(dialUpstream, deadlineSlack(timeout), raw),
	}
}

// asSent makes req go upstream as the client sent it: its path not
// normalised, its Host header as it is (fasthttp would write the host of
// the parsed URI instead: lowercased, and empty for a request that came
// without one), and without a Content-Type when it came without one, not
// with fasthttp's default.
func asSent(req *fasthttp.Request) {
	req.URI().DisablePathNormalizing = true
	req.UseHostHeader = true
	req.Header.SetNoDefaultContentType(true)
}

// targetAsSent makes req go upstream with its request target as the client
// sent it. Once anything has parsed the request's URI (the route does),
// fasthttp writes a target rebuilt from it, which drops the "?" of an
// empty query (/p? would go as /p); a target set again leaves the URI
// unparsed, and Write takes it as it is. Two exceptions. A fragment, which
// has no place in a request target, is cut off, as fasthttp did. And an
// absolute-form target (GET http://model.example/p HTTP/1.1, as a client
// sends it to a forward proxy) goes on in origin form (/p), the model
// server being an origin server, with the target's host as the Host header
// in place of the client's (RFC 9112 3.2.1 and 3.2.2).
func targetAsSent(req *fasthttp.Request) {
	t := req.Header.RequestURI()
	if i := bytes.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	if len(t) > 0 && t[0] != '/' {
		if host, origin, ok := splitAbsolute(t); ok {
			if len(host) > 0 {
				req.Header.SetHostBytes(host)
			}
			t = origin
			if len(t) == 0 || t[0] != '/' {
				t = append([]byte{'/'}, t...) // the path of http://host or http://host?q
			}
		}
	}
	// t may alias the header's own target: SetRequestURIBytes copies it
	// over itself, as append does, with memmove.
	req.SetRequestURIBytes(t)
}

// splitAbsolute splits an absolute-form request target (scheme "://"
// authority path-abempty ["?" query]) into the authority's host[:port],
// without userinfo, and the rest; ok is false for any other target.
func splitAbsolute(t []byte) (host, rest []byte, ok bool) {
	i := bytes.Index(t, []byte("://"))
	if i <= 0 {
		return nil, nil, false
	}
	for j, c := range t[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return nil, nil, false
		}
	}
	t = t[i+len("://"):]
	end := len(t)
	if j := bytes.IndexAny(t, "/?"); j >= 0 {
		end = j
	}
	host, rest = t[:end], t[end:]
	if j := bytes.LastIndexByte(host, '@'); j >= 0 {
		host = host[j+1:]
	}
	return host, rest, true
}

// parseUpstream reads the URL of a model server (flag, its value raw): http
// or https, a host and no path. addr is its host:port, the scheme's port
// when it names none.
func parseUpstream(flag, raw string) (u *url.URL, addr string, err error) {
	u, err = url.Parse(raw)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("couldn't parse %s=%q: %w", flag, raw, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return nil, "", fmt.Errorf("%s=%q must be an http:// or https:// URL with a host", flag, raw)
	case u.Path != "" && u.Path != "/":
		return nil, "", fmt.Errorf("%s=%q must not have a path", flag, raw)
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	return u, addr, nil
}

// upstreamTLS is the TLS configuration of the connections to an https
// upstream (flag, its value url) on host: the flags that begin with prefix
// (--proxy.upstream-, --shadow.), with the CA file read again for each new
// connection (tlsca.go).
func upstreamTLS(o promconfig.TLSConfig, prefix, flag, url, host string, logger *slog.Logger) (*tls.Config, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("%scert-file and %skey-file go together: give both or neither", prefix, prefix)
	}
	cfg, err := promconfig.NewTLSConfig(&o)
	if err != nil {
		return nil, fmt.Errorf("couldn't set up TLS to %s=%q: %w", flag, url, err)
	}
	if o.CAFile != "" && !o.InsecureSkipVerify {
		name := o.ServerName
		if name == "" {
			name = host
		}
		if _, err = newUpstreamCA(o.CAFile, name, cfg, logger); err != nil {
			return nil, fmt.Errorf("couldn't set up TLS to %s=%q: %s: %w", flag, url, o.CAFile, err)
		}
	}
	return cfg, nil
}

// dialLazyDeadlines wraps dial so that the connections it makes hand their
// deadlines to the runtime lazily (deadline.go), and, with raw, make their
// reads and writes as raw system calls (rawio).
func dialLazyDeadlines(dial fasthttp.DialFuncWithTimeout, slack time.Duration, raw bool) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := dial(addr, timeout)
		if err != nil {
			return nil, err
		}
		return newDeadlineConn(c, slack, raw), nil
	}
}

// dialUpstream dials the model server over IPv4 or IPv6, as its address
// resolves (fasthttp's default dialer knows only IPv4: an upstream of
// http://[::1]:8080, or a name with only AAAA records in an IPv6 cluster,
// could not be reached). A failure to dial is a dialError.
func dialUpstream(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	if timeout > 0 {
		c, err = fasthttp.DialDualStackTimeout(addr, timeout)
	} else {
		c, err = fasthttp.DialDualStack(addr)
	}
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// dialError is a failure to connect to the model server: counted as
// connection, or timeout when it is one.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// listen opens the listener that serve serves and shutdown closes.
func (p *proxy) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p.ln = &closeOnceListener{Listener: ln}
	return p.ln, nil
}

// serve serves client connections from the listener until shutdown. Their
// deadlines are handed to the runtime lazily (deadline.go).
func (p *proxy) serve() error {
	return p.server.Serve(deadlineListener{Listener: p.ln, slack: p.slack, raw: p.raw})
}

// shutdown closes the listener, then waits until the connections in flight
// have ended or ctx is done.
//
// fasthttp's Shutdown closes only the listeners Serve has taken, and returns
// at once when it has taken none. A Stop right after Start can come before
// the goroutine that calls serve has run (a busy machine need not run it for
// a while); Serve would then take the listener after Shutdown and serve
// until the process ends, and Stop would wait for it until its deadline.
// Closed here, the listener makes such a late Serve return at once, and no
// connection is accepted after shutdown has begun.
func (p *proxy) shutdown(ctx context.Context) error {
	_ = p.ln.Close() // the error, if any, is Shutdown's to report
	return p.server.ShutdownWithContext(ctx)
}

// closeOnceListener is a listener that only its first Close closes: the
// proxy's shutdown closes it, and then fasthttp's Shutdown closes it again,
// which must not fail.
type closeOnceListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *closeOnceListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

var (
	hdrTraceparent = []byte("traceparent")
	hdrTrailer     = []byte("trailer")
	hdrExpect      = []byte("expect")
	hopHeaders     = [][]byte{
		[]byte("connection"), []byte("proxy-connection"), []byte("keep-alive"),
		[]byte("proxy-authenticate"), []byte("proxy-authorization"),
		[]byte("te"), []byte("trailer"), []byte("upgrade"),
	}
)

// handle proxies one request.
func (p *proxy) handle(ctx *fasthttp.RequestCtx) {
	defer func() {
		// A bug in monitoring must not take the model down with it: fasthttp
		// does not recover handler panics, so one would end the process.
		if r := recover(); r != nil {
			p.logger.Error("Recovered from a panic in the proxy handler", "panic", r)
			if ctx.Response.StatusCode() == 0 || len(ctx.Response.Body()) == 0 {
				ctx.Response.SetStatusCode(fasthttp.StatusBadGateway)
				ctx.Response.SetBodyString("modelmon: internal error\n")
			}
		}
	}()
	start := p.now()
	req, resp := &ctx.Request, &ctx.Response
	rc := p.cfg.Load()
	r := parseRoute(req.Header.Method(), req.URI().PathOriginal(), rc)

	// One pass over the headers: model, version, trace id, hop-by-hop.
	var traceID, hdrModel, hdrVersion, connTokens, reqID, reqEnc []byte
	var hop [16][]byte
	nhop := 0
	for k, v := range req.Header.All() {
		switch {
		case len(k) == len(hdrTraceparent) && bytes.EqualFold(k, hdrTraceparent):
			traceID = parseTraceparent(v)
		case len(k) == len(hdrContentEncoding) && bytes.EqualFold(k, hdrContentEncoding):
			reqEnc = v
		case len(rc.modelHeader) > 0 && bytes.EqualFold(k, rc.modelHeader):
			hdrModel = v
		case len(rc.versionHeader) > 0 && bytes.EqualFold(k, rc.versionHeader):
			hdrVersion = v
		case p.labels != nil && bytes.EqualFold(k, p.labels.header):
			reqID = v
		case isHop(k), len(k) == len(hdrExpect) && bytes.EqualFold(k, hdrExpect):
			// The sidecar has met a client's Expect: 100-continue: it has
			// the body, which goes on at once (nginx drops Expect too).
			if bytes.EqualFold(k, hopHeaders[0]) {
				connTokens = v
			}
			if nhop < len(hop) {
				hop[nhop] = k
				nhop++
			}
		}
	}
	if len(connTokens) > 0 {
		// Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1),
		// but for those that frame the body or name the host: dropping
		// them would break the request or send it to the upstream's own
		// host, and nginx ignores such names too.
		for k := range req.Header.All() {
			if nhop < len(hop) && !isHop(k) && !isFraming(k) && !isHost(k) && listHas(connTokens, k) {
				hop[nhop] = k
				nhop++
			}
		}
	}
	closeClient := req.Header.ConnectionClose() || p.draining.Load()
	for i := 0; i < nhop; i++ {
		if bytes.EqualFold(hop[i], hdrTrailer) {
			// The fields of a chunked body's trailer go with it: fasthttp
			// would merge them into the header, which RFC 9110 6.5.1
			// forbids.
			for name := range req.Header.Trailers() {
				req.Header.DelBytes(name)
			}
		}
		req.Header.DelBytes(hop[i])
	}
	req.Header.ResetConnectionClose()
	if len(req.Header.Host()) == 0 {
		req.Header.SetHost(p.host)
	}

	if !r.predict {
		p.metrics.Passthrough.Inc()
		if s, _ := p.roundTrip(ctx, nil); s != nil {
			s.start(p, nil, ctx, request{})
		} else if r.feedback && bytes.Equal(req.Header.Method(), methodPOST) {
			// Seldon's feedback carries a reward and ground truth: the
			// parsers read them, off the hot path, as they parse
			// predictions.
			m, _ := p.modelNamed(rc, r.model, hdrModel)
			p.queue.offerFeedback(m, payload.FormatSeldon, bodyEncodings{req: encodingOf(reqEnc)}, req.Body(), reqID)
		}
		if closeClient {
			resp.SetConnectionClose()
		}
		return
	}

	var m *model
	var name []byte // the model's, as the request names it
	if len(r.model) == 0 && len(hdrModel) == 0 && r.bodyModel && len(reqEnc) == 0 {
		m, name = p.bodyModel(req.Body(), rc)
	}
	if m == nil {
		m, name = p.modelNamed(rc, r.model, hdrModel)
	}
	m.setVersionNamed(r.version, hdrVersion)
	// Sampled now, while name is the request's; mirrored only if account
	// captures it (a 2xx answer).
	mirror := p.shadow != nil && p.shadow.sample(m, name)
	m.requests.Inc()
	m.inFlight.Inc()
	upStart := p.now()
	s, ok := p.roundTrip(ctx, m)
	upEnd := p.now()
	if closeClient {
		resp.SetConnectionClose()
	}

	if p.labels != nil && len(reqID) == 0 {
		// The client learns the id its labels must carry.
		reqID = p.labels.newID()
		resp.Header.SetBytesKV(p.labels.header, reqID)
	}
	if p.logPayloads && len(reqID) == 0 {
		reqID = req.Header.PeekBytes(ceID)
	}
	rq := request{format: r.format, id: reqID, traceID: traceID, start: start, overhead: upStart.Sub(start)}
	if respEnc := resp.Header.ContentEncoding(); len(reqEnc) > 0 || len(respEnc) > 0 {
		rq.enc = bodyEncodings{encodingOf(reqEnc), encodingOf(respEnc)}
	}
	if p.logHeaders {
		rq.header = req.Header.Header()
	}
	if ok && mirror {
		// Valid until the server has written the response: a stream's
		// header is captured when it ends, as its request body is.
		rq.header, rq.mirror = req.Header.Header(), true
	}
	if s != nil {
		// The body is still to come: the stream accounts for the request
		// when it ends, and its capture is mirrored as any other.
		rq.overhead += p.now().Sub(upEnd)
		s.start(p, m, ctx, rq)
		return
	}
	m.inFlight.Dec()
	respBody, respSize := resp.Body(), -1
	if ok {
		respSize = len(respBody)
	}
	p.account(m, req.Body(), respBody, respSize, resp.StatusCode(), rq, upEnd)
}

// ceID is the CloudEvents id header.
var ceID = []byte("Ce-Id")

// modelNamed is the model a prediction names, and the name it names it
// by, first to last: name (by its path or message), hdr (the model
// header), the configuration's default_model. The name is the model's as
// clients give it, which its label value (m.name) is not once it is past
// limits.max_models (__other__) or cut (labelValue).
func (p *proxy) modelNamed(rc *runtimeConfig, name, hdr []byte) (*model, []byte) {
	if len(name) == 0 {
		name = hdr
	}
	if len(name) == 0 {
		name = rc.defaultModel
	}
	return p.models.get(name, rc.cfg.Limits.MaxModels), name
}

// bodyParsers read the model a generative model's request names.
var bodyParsers fastjson.ParserPool

// bodyModel is the model a request names in its JSON body's "model" field,
// as the APIs of generative models do (route.bodyModel), and that name (as
// modelNamed's; a copy, as the parser is used again, and nil without a
// shadow, which alone reads it); nil when it names none. These requests
// are few and slow, and the parse costs about a microsecond per kilobyte
// of prompt.
func (p *proxy) bodyModel(body []byte, rc *runtimeConfig) (*model, []byte) {
	fp := bodyParsers.Get()
	defer bodyParsers.Put(fp)
	v, err := fp.ParseBytes(body)
	if err != nil {
		return nil, nil
	}
	name := v.GetStringBytes("model")
	if len(name) == 0 {
		return nil, nil
	}
	m := p.models.get(name, rc.cfg.Limits.MaxModels)
	if p.shadow == nil {
		return m, nil
	}
	return m, bytes.Clone(name)
}

// request is what the accounting of a prediction needs besides its bodies.
type request struct {
	format   payload.Format
	id       []byte // the prediction id for labels, or nil
	traceID  []byte // for the latency exemplar, or nil
	start    time.Time
	overhead time.Duration // spent in the sidecar so far
	// firstByte is when the first byte of a streamed answer's body (a gRPC
	// stream's first answer) came, after start, once more came after it
	// (a later read, a second answer): what its time per output token runs
	// from. 0 before, and for an answer that came in one piece.
	firstByte time.Duration
	enc       bodyEncodings // of the bodies, for the parser to decode
	// outputTokens is what a gRPC stream's answers say they add up to
	// (num_output_tokens), when only the last is captured; 0 when unsaid.
	outputTokens int64
	// header is the request's header, as sent upstream, when the request
	// is to be mirrored to the shadow model server (mirror) or its headers
	// go into the payload log's metadata; nil otherwise.
	header []byte
	mirror bool
}

// account records a prediction once its answer is complete: its sizes, its
// latency and the sidecar's overhead, and the capture of its bodies (of its
// request alone, for the payload log, when it failed). respSize is the size
// of the upstream's body, -1 when it did not answer in full; respBody is
// that body, or shorter when a stream outgrew the capture. upEnd is when
// the answer was in.
func (p *proxy) account(m *model, reqBody, respBody []byte, respSize, status int, rq request, upEnd time.Time) {
	end := p.now()
	p.observe(m, len(reqBody), respSize, rq, upEnd, end)
	switch {
	case respSize >= 0 && status < 300:
		p.capture(m, reqBody, respBody, respSize, rq, end)
	case p.logFailed:
		p.queue.offerFailed(m, rq.format, rq.enc.req, reqBody, rq.id, rq.header)
	}
}

// observe records a prediction's sizes (respSize -1 when there was no full
// answer), its latency, from rq.start to end, and the sidecar's overhead.
func (p *proxy) observe(m *model, reqSize, respSize int, rq request, upEnd, end time.Time) {
	m.reqSize.Observe(float64(reqSize))
	if respSize >= 0 {
		m.respSize.Observe(float64(respSize))
	}
	d := end.Sub(rq.start).Seconds()
	if rq.traceID != nil && m.exemplarDue(d, end) {
		m.duration.(prometheus.ExemplarObserver).ObserveWithExemplar(d, prometheus.Labels{"trace_id": string(rq.traceID)})
	} else {
		m.duration.Observe(d)
	}
	p.metrics.Overhead.Observe((rq.overhead + end.Sub(upEnd)).Seconds())
}

// capture hands a prediction's bodies to the parsers, unless the answer
// outgrew the capture (respBody shorter than respSize).
func (p *proxy) capture(m *model, reqBody, respBody []byte, respSize int, rq request, end time.Time) {
	if len(respBody) < respSize {
		p.queue.dropTooLarge(m)
		return
	}
	p.queue.offer(m, rq.format, rq.enc, answerTiming{end.Sub(rq.start), rq.firstByte, rq.outputTokens}, reqBody, respBody, rq.id, rq.header, rq.mirror)
}

// roundTrip sends the request upstream and leaves the answer, or an error
// response, in ctx.Response. It reports whether the upstream answered.
// Errors of predictions are counted on m when it is not nil.
//
// An answer whose body has a length up to --capture.max-body-size is read
// whole before the client gets any of it, so that a model server that fails
// half way through still gives the client a clear 502. Any other body is
// passed on as it arrives (transport): roundTrip then returns the stream,
// which the caller starts.
func (p *proxy) roundTrip(ctx *fasthttp.RequestCtx, m *model) (*stream, bool) {
	req, resp := &ctx.Request, &ctx.Response
	asSent(req)
	targetAsSent(req)
	if _, err := p.transport.RoundTrip(p.client, req, resp); err != nil {
		// Whatever part of an answer came is dropped, and with it the
		// server's settings: the error answer is the sidecar's own.
		resp.Reset()
		p.fail(resp, err, m)
		return nil, false
	}
	p.countStatus(resp.StatusCode(), m)
	dropHopHeaders(&resp.Header)
	s, _ := resp.BodyStream().(*stream)
	return s, true
}

// countStatus counts an upstream's error status (countError).
func (p *proxy) countStatus(code int, m *model) {
	switch {
	case code >= 500:
		p.countError(m, collector.ErrorUpstream5xx)
	case code >= 400:
		p.countError(m, collector.ErrorUpstream4xx)
	}
}

// countError counts a failed request by reason: a prediction on its model,
// a request that is not one (m nil) in modelmon_passthrough_errors_total.
func (p *proxy) countError(m *model, reason string) {
	if m == nil {
		p.metrics.PassthroughErrors.WithLabelValues(reason).Inc()
		return
	}
	m.errors[reason].Inc()
}

// fail answers the client for an upstream that did not answer, and counts why
// (countError).
func (p *proxy) fail(resp *fasthttp.Response, err error, m *model) {
	status, msg := p.countFailure(err, m)
	resp.SetStatusCode(status)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.SetBodyString(msg)
}

// countFailure counts why the upstream failed (countError), logs it with
// attrs, and returns the status and body the client gets for it
// (classifyError).
func (p *proxy) countFailure(err error, m *model, attrs ...any) (status int, body string) {
	reason, status, body := classifyError(err)
	p.countError(m, reason)
	p.logger.Debug("Upstream request failed", append([]any{"reason", reason, "err", err}, attrs...)...)
	p.failing.warn(func() []any { return []any{"reason", reason, "err", err, "upstream", p.upstream} })
	return status, body
}

// dropHopHeaders removes the hop-by-hop headers from an upstream answer, those
// its Connection header names among them (RFC 9110 7.6.1), and its wish to
// close the connection: that was for the sidecar's connection to the model
// server, not the client's.
func dropHopHeaders(h *fasthttp.ResponseHeader) {
	h.ResetConnectionClose()
	var key [32]byte
	var connBuf [64]byte
	conn := connBuf[:0] // the Connection headers' tokens, once seen
	// One header a pass: deleting moves the others. The bound is for a
	// header fasthttp lists but won't delete.
	for range 64 {
		var hop []byte
		for k, v := range h.All() {
			if isHop(k) {
				if len(k) == len(hopHeaders[0]) && bytes.EqualFold(k, hopHeaders[0]) {
					conn = append(append(conn, ','), v...)
				}
				hop = append(key[:0], k...)
				break
			}
			if len(conn) > 0 && !isFraming(k) && listHas(conn, k) {
				hop = append(key[:0], k...)
				break
			}
		}
		if hop == nil {
			return
		}
		h.DelBytes(hop)
	}
}

// classifyError maps an upstream failure to the reason it is counted under,
// the status the client gets and a short body.
func classifyError(err error) (reason string, status int, body string) {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout(),
		// All --proxy.max-conns connections stayed busy for --proxy.timeout.
		errors.Is(err, fasthttp.ErrNoFreeConns):
		return collector.ErrorTimeout, fasthttp.StatusGatewayTimeout, "modelmon: the model server did not answer in time\n"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return collector.ErrorInvalidResponse, fasthttp.StatusBadGateway, "modelmon: the model server's response is larger than --proxy.max-body-size\n"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, fasthttp.ErrConnectionClosed):
		return collector.ErrorConnection, fasthttp.StatusBadGateway, "modelmon: could not reach the model server\n"
	}
	var verifyErr *tls.CertificateVerificationError
	var alertErr tls.AlertError
	var recordErr tls.RecordHeaderError
	var hostErr x509.HostnameError
	var authorityErr x509.UnknownAuthorityError
	if errors.As(err, &verifyErr) || errors.As(err, &alertErr) || errors.As(err, &recordErr) ||
		errors.As(err, &hostErr) || errors.As(err, &authorityErr) {
		return collector.ErrorConnection, fasthttp.StatusBadGateway, "modelmon: the TLS handshake with the model server failed\n"
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var dialErr *dialError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.As(err, &dialErr) {
		return collector.ErrorConnection, fasthttp.StatusBadGateway, "modelmon: could not reach the model server\n"
	}
	msg := err.Error()
	if strings.Contains(msg, "unexpected EOF") || strings.Contains(msg, "closed") || strings.Contains(msg, "EOF") {
		return collector.ErrorConnection, fasthttp.StatusBadGateway, "modelmon: the model server closed the connection before a complete response\n"
	}
	return collector.ErrorInvalidResponse, fasthttp.StatusBadGateway, "modelmon: the model server sent an invalid response\n"
}

// listHas reports whether the comma-separated list names token, ignoring case.
func listHas(list, token []byte) bool {
	for len(list) > 0 {
		var item []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			item, list = list, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(item), token) {
			return true
		}
	}
	return false
}

// isFraming reports whether k is a header that frames the body, which a
// Connection header can't make hop-by-hop: the proxy writes its own.
func isFraming(k []byte) bool {
	return bytes.EqualFold(k, []byte("content-length")) || bytes.EqualFold(k, []byte("transfer-encoding"))
}

// isHost reports whether k is the Host header, which a client's Connection
// header can't make hop-by-hop either: the model server gets the client's.
func isHost(k []byte) bool {
	return bytes.EqualFold(k, []byte("host"))
}

func isHop(k []byte) bool {
	if len(k) < 2 || len(k) > len("proxy-authorization") {
		return false
	}
	for _, h := range hopHeaders {
		if len(h) == len(k) && bytes.EqualFold(h, k) {
			return true
		}
	}
	return false
}

// parseTraceparent returns the trace id of a W3C traceparent header value
// ("00-<32 hex>-<16 hex>-<2 hex>"), or nil when it is malformed or all zero.
func parseTraceparent(v []byte) []byte {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return nil
	}
	id := v[3:35]
	zero := true
	for _, c := range id {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return nil
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return nil
	}
	return id
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug("Proxy server message", "msg", fmt.Sprintf(format, args...))
}
