package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// modelInfer is the Open Inference Protocol's prediction call over gRPC
// (KServe v2, Triton: inference.GRPCInferenceService).
const modelInfer = "/inference.GRPCInferenceService/ModelInfer"

// grpcProxy is the proxy for gRPC clients (--proxy.grpc-upstream): HTTP/2 on
// both sides, cleartext (h2c, as gRPC inside a pod usually is), every call
// passed through with its headers, messages
// and trailers as they come, streams included. Its ModelInfer calls are
// predictions, timed, counted and captured like those of the HTTP proxy,
// whose models, configuration, queue and metrics it shares; every other call
// (health, metadata, ModelStreamInfer) is passed through and counted in
// modelmon_passthrough_requests_total. It is built on net/http, which
// speaks HTTP/2: fasthttp does not.
type grpcProxy struct {
	p        *proxy
	upstream string
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	server   *http.Server
	maxBody  int           // --proxy.max-body-size, of a ModelInfer request
	timeout  time.Duration // --proxy.timeout, of a ModelInfer call
}

func newGRPCProxy(p *proxy, o ProxyOptions, logger *slog.Logger) (*grpcProxy, error) {
	u, err := url.Parse(o.GRPCUpstream)
	switch {
	case err != nil:
		return nil, fmt.Errorf("couldn't parse --proxy.grpc-upstream=%q: %w", o.GRPCUpstream, err)
	case u.Scheme != "http" || u.Host == "":
		// gRPC to a model server in the same pod is cleartext; TLS to it
		// is not supported yet.
		return nil, fmt.Errorf("--proxy.grpc-upstream=%q must be an http:// URL with a host (cleartext HTTP/2)", o.GRPCUpstream)
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("--proxy.grpc-upstream=%q must not have a path", o.GRPCUpstream)
	}
	g := &grpcProxy{p: p, upstream: o.GRPCUpstream, maxBody: o.MaxBodySize, timeout: o.Timeout}
	g.tr = &http.Transport{
		DialContext:     (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout: o.IdleTimeout,
		Protocols:       new(http.Protocols),
	}
	g.tr.Protocols.SetUnencryptedHTTP2(true)
	g.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = u.Scheme, u.Host
			pr.Out.Host = pr.In.Host
			// Rewrite drops these from the request; the proxy is transparent.
			for _, h := range [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport: g.tr,
		// An answer with a body (no length over HTTP/2) is flushed a
		// message at a time whatever this says. One without, a gRPC error's
		// trailers-only answer, must not be: flushing its headers first would
		// turn its status into headers a client does not read as the end.
		FlushInterval: 0,
		BufferPool:    bufferPool{},
		ErrorHandler:  g.fail,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	g.server = &http.Server{
		Handler:           g,
		Protocols:         new(http.Protocols),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       o.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	g.server.Protocols.SetHTTP1(true)
	g.server.Protocols.SetUnencryptedHTTP2(true)
	return g, nil
}

// bufferPool lends the reverse proxy its copy buffers, which it would
// otherwise allocate per call.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// grpcCall is the response writer of a ModelInfer call: it keeps a copy of
// the answer's messages for the capture, up to limit bytes, and the reason
// the call failed in the proxy, if it did.
type grpcCall struct {
	http.ResponseWriter
	m      *model
	buf    []byte
	n      int // bytes of the answer's body
	limit  int
	reason string // why the proxy failed the call, "" if it did not
}

func (c *grpcCall) Write(b []byte) (int, error) {
	c.n += len(b)
	if len(c.buf)+len(b) <= c.limit {
		c.buf = append(c.buf, b...)
	}
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush each message at once.
func (c *grpcCall) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (g *grpcProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != modelInfer {
		g.p.metrics.Passthrough.Inc()
		g.rp.ServeHTTP(w, r)
		return
	}
	start := g.p.now()
	rc := g.p.cfg.Load()
	// A ModelInfer request is a single message: it is read whole, to name
	// its model before it goes.
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(g.maxBody)+1))
	if err != nil {
		return // the client has gone
	}
	if len(body) > g.maxBody {
		grpcError(w, codes.ResourceExhausted, "modelmon: the request is larger than --proxy.max-body-size")
		return
	}
	model, version, id, _ := payload.InferRequestIDs(body)
	if len(model) == 0 && len(rc.modelHeader) > 0 {
		model = []byte(r.Header.Get(string(rc.modelHeader)))
	}
	if len(model) == 0 {
		model = rc.defaultModel
	}
	if len(version) == 0 && len(rc.versionHeader) > 0 {
		version = []byte(r.Header.Get(string(rc.versionHeader)))
	}
	m := g.p.models.get(model, rc.cfg.Limits.MaxModels)
	if len(version) > 0 {
		m.setVersion(version)
	}
	if l := g.p.labels; l != nil && len(id) == 0 {
		// The id labels must carry: the request's, from its metadata, or
		// a new one, returned in the answer's.
		if id = []byte(r.Header.Get(string(l.header))); len(id) == 0 {
			id = l.newID()
			w.Header().Set(string(l.header), string(id))
		}
	}
	m.requests.Inc()
	m.inFlight.Inc()

	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if g.timeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), g.timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	call := &grpcCall{ResponseWriter: w, m: m, limit: g.p.queue.maxBody}
	upStart := g.p.now()
	defer func() {
		// The reverse proxy ends a call it can't finish (the model server
		// gone mid-answer) by panicking with http.ErrAbortHandler, which
		// resets the stream: the call is accounted for first.
		v := recover()
		switch {
		case v == nil || call.reason != "":
		case r.Context().Err() != nil:
			call.reason = "canceled" // the client went away
		default:
			call.reason = collector.ErrorConnection
			m.errors[call.reason].Inc()
		}
		g.account(m, r, body, id, call, start, upStart)
		if v != nil {
			panic(v)
		}
	}()
	g.rp.ServeHTTP(call, r)
}

// account records a ModelInfer call once it has ended.
func (g *grpcProxy) account(m *model, r *http.Request, body, id []byte, call *grpcCall, start, upStart time.Time) {
	upEnd := g.p.now()
	m.inFlight.Dec()
	status, respSize := http.StatusOK, call.n
	if call.reason != "" {
		status, respSize = http.StatusBadGateway, -1
	} else if code := grpcStatus(call.Header()); code != codes.OK {
		status = grpcHTTPStatus(code)
		g.p.countStatus(status, m)
	}
	rq := request{format: payload.FormatOIPGRPC, id: id, start: start, overhead: upStart.Sub(start)}
	if tp := r.Header.Get("Traceparent"); tp != "" {
		rq.traceID = parseTraceparent([]byte(tp))
	}
	if status == http.StatusOK && (compressed(r.Header) || compressed(call.Header())) {
		// The parser reads uncompressed messages only.
		g.p.metrics.PayloadErrors.WithLabelValues(m.name, "content_encoding").Inc()
		status = http.StatusNoContent // accounted for, not captured
	}
	g.p.account(m, body, call.buf, respSize, status, rq, upEnd)
}

// compressed reports whether the messages these headers go with may be
// compressed (grpc-encoding other than identity).
func compressed(h http.Header) bool {
	enc := h.Get("Grpc-Encoding")
	return enc != "" && enc != "identity"
}

// grpcStatus is the status of a call from its trailers (or, for a call
// that failed at once, its headers); a missing status is an Unknown error.
func grpcStatus(h http.Header) codes.Code {
	s := h.Get(http.TrailerPrefix + "Grpc-Status")
	if s == "" {
		s = h.Get("Grpc-Status")
	}
	c, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return codes.Unknown
	}
	return codes.Code(c)
}

// grpcHTTPStatus is the HTTP status a gRPC status stands for (as gRPC's
// HTTP mapping and grpc-gateway give them), so that an error status counts
// as upstream_4xx or upstream_5xx as over HTTP: the caller's fault, or the
// model server's.
func grpcHTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError // Unknown, Internal, DataLoss, any other
}

// fail answers a call the model server did not answer with a gRPC error:
// Unavailable, or DeadlineExceeded past --proxy.timeout, with the HTTP
// proxy's message. A ModelInfer call's failure is counted by reason, unless
// its client went away.
func (g *grpcProxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	call, _ := w.(*grpcCall)
	if errors.Is(r.Context().Err(), context.Canceled) {
		if call != nil {
			call.reason = "canceled" // the client's doing, not counted
		}
		return
	}
	reason, status, msg := classifyError(err)
	if call != nil {
		call.reason = reason
		call.m.errors[reason].Inc()
	}
	g.p.logger.Debug("Upstream gRPC call failed", "reason", reason, "err", err, "path", r.URL.Path)
	g.p.failing.warn(func() []any { return []any{"reason", reason, "err", err, "upstream", g.upstream} })
	code := codes.Unavailable
	if status == http.StatusGatewayTimeout {
		code = codes.DeadlineExceeded
	}
	grpcError(w, code, strings.TrimSuffix(msg, "\n"))
}

// grpcError answers a call with a gRPC error and no message: a
// trailers-only response.
func grpcError(w http.ResponseWriter, code codes.Code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(code)))
	h.Set("Grpc-Message", url.PathEscape(msg))
	w.WriteHeader(http.StatusOK)
}
