package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	promconfig "github.com/prometheus/common/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // reads messages clients compress with gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// modelInfer is the Open Inference Protocol's prediction call over gRPC
// (KServe v2, Triton: inference.GRPCInferenceService), and tfPredict,
// tfClassify, tfRegress and tfMultiInference TensorFlow Serving's
// (tensorflow.serving.PredictionService).
const (
	modelInfer       = "/inference.GRPCInferenceService/ModelInfer"
	tfPredict        = "/tensorflow.serving.PredictionService/Predict"
	tfClassify       = "/tensorflow.serving.PredictionService/Classify"
	tfRegress        = "/tensorflow.serving.PredictionService/Regress"
	tfMultiInference = "/tensorflow.serving.PredictionService/MultiInference"
	// Seldon Core 1's, of its executor and of its Python wrapper, and their
	// feedback calls, whose truth gives labels.
	seldonPredict       = "/seldon.protos.Seldon/Predict"
	seldonModelPredict  = "/seldon.protos.Model/Predict"
	seldonSendFeedback  = "/seldon.protos.Seldon/SendFeedback"
	seldonModelFeedback = "/seldon.protos.Model/SendFeedback"
	// TorchServe's.
	torchPredictions = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
)

// unaryCall is a unary prediction call of a protocol: the format its
// messages are parsed in, and what its request names.
type unaryCall struct {
	format payload.Format
	// model is the model a request message names (in md, else in the
	// message itself), with its version set, the name it names it by
	// (modelNamed's), and the prediction id the message carries.
	model func(p *proxy, rc *runtimeConfig, md metadata.MD, msg []byte) (m *model, name, id []byte)
	// answerID, when not nil, is the prediction id an answer carries: a
	// call whose request has none takes it, rather than a new one.
	answerID func(resp []byte) []byte
}

// unaryCalls are the unary calls that are predictions, by method.
var unaryCalls = map[string]unaryCall{
	modelInfer: {format: payload.FormatOIPGRPC, model: func(p *proxy, rc *runtimeConfig, md metadata.MD, msg []byte) (*model, []byte, []byte) {
		name, version, id, _ := payload.InferRequestIDs(msg)
		m, name := p.mdModel(rc, md, name, version)
		return m, name, id
	}},
	tfPredict:          tfCall(payload.FormatTFServingGRPC),
	tfClassify:         tfCall(payload.FormatTFServingClassifyGRPC),
	tfRegress:          tfCall(payload.FormatTFServingRegressGRPC),
	tfMultiInference:   tfCall(payload.FormatTFServingMultiInferenceGRPC),
	seldonPredict:      seldonCall,
	seldonModelPredict: seldonCall,
	torchPredictions:   namedCall(payload.FormatTorchServeGRPC, payload.TorchServeRequestModel),
}

// seldonHeader is the metadata that names a Seldon deployment.
var seldonHeader = []byte("seldon")

// seldonCall is Seldon Core 1's Predict: the model is the deployment that
// the "seldon" metadata names (what its gateway routes by), the id the
// request's meta.puid, else the one Seldon's executor gives its answer.
var seldonCall = unaryCall{
	format: payload.FormatSeldonGRPC,
	model: func(p *proxy, rc *runtimeConfig, md metadata.MD, msg []byte) (*model, []byte, []byte) {
		m, name := p.modelNamed(rc, mdValue(md, seldonHeader), mdValue(md, rc.modelHeader))
		return m, name, payload.SeldonPuid(msg)
	},
	answerID: payload.SeldonPuid, // a SeldonMessage either way
}

// tfCall is a TensorFlow Serving call whose messages are of format f.
func tfCall(f payload.Format) unaryCall {
	return namedCall(f, func(msg []byte) (name, version []byte) { return payload.TFRequestModel(f, msg) })
}

// namedCall is a call whose messages are of format f, and whose requests
// name their model and version (read by names) but carry no id, as
// TensorFlow Serving's and TorchServe's do.
func namedCall(f payload.Format, names func(msg []byte) (name, version []byte)) unaryCall {
	return unaryCall{format: f, model: func(p *proxy, rc *runtimeConfig, md metadata.MD, msg []byte) (*model, []byte, []byte) {
		name, version := names(msg)
		m, name := p.mdModel(rc, md, name, version)
		return m, name, nil
	}}
}

// grpcProxy is the proxy for gRPC clients (--proxy.grpc-upstream, cleartext
// HTTP/2 or TLS with the --proxy.upstream-* flags), built on
// grpc-go: a server that takes every call, of any service, and passes it to
// the model server over one client connection, its messages as bytes (a raw
// codec: nothing is decoded on the way), its metadata, status and trailers
// as they come, streams both ways included. Its ModelInfer calls (and
// TensorFlow Serving's Predict, Classify, Regress and MultiInference calls,
// Seldon Core 1's Predict and TorchServe's Predictions) are predictions, timed, counted and
// captured like those of the HTTP proxy,
// whose models, configuration, queue and metrics it shares, and so are the
// requests of Triton's ModelStreamInfer calls and TorchServe's
// StreamPredictions calls (grpcstream.go); every other
// call (health, metadata) is passed through and counted in
// modelmon_passthrough_requests_total.
//
// fasthttp speaks HTTP/1.1 only. Go's own HTTP/2 reverse proxy was tried
// first: it passes HTTP/2 through untouched, but added twice the latency
// to a call (BENCHMARKS.md).
type grpcProxy struct {
	p         *proxy
	upstream  string
	conn      *grpc.ClientConn // to the model server
	watch     *connWatch       // conn's connections
	tls       bool             // over TLS
	newServer func() *grpc.Server
	timeout   time.Duration // --proxy.timeout, of a unary prediction call
	maxMsg    int           // --proxy.max-body-size, of a message either way
	// shadow takes a sample of the prediction calls, to mirror
	// (shadowgrpc.go, shadowstream.go); nil without
	// --shadow.grpc-upstream.
	shadow *shadow

	handoff  *handoff // the listener (grpcdrain.go)
	mu       sync.Mutex
	servers  []*grpc.Server // the one taking connections last
	stopping bool
	serving  sync.WaitGroup // the servers' Serve and drain goroutines
}

// rawCodec passes messages through as their bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	// data is the transport's buffer, reused once Unmarshal returns; and a
	// message given to SendMsg may still be read after it returns, so
	// each message gets its own copy.
	*v.(*[]byte) = bytes.Clone(data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func newGRPCProxy(p *proxy, o ProxyOptions, logger *slog.Logger) (*grpcProxy, error) {
	watch := new(connWatch)
	// grpc-go's transparent retries of its calls count with the HTTP
	// proxy's retries (transparentRetries).
	conn, isTLS, err := dialGRPC("--proxy.grpc-upstream", o.GRPCUpstream, "--proxy.upstream-", o.TLS, o.MaxBodySize, watch, logger,
		grpc.WithStatsHandler(transparentRetries{p.metrics.UpstreamRetries}))
	if err != nil {
		return nil, err
	}
	g := &grpcProxy{p: p, upstream: o.GRPCUpstream, conn: conn, watch: watch, timeout: o.Timeout, maxMsg: o.MaxBodySize, tls: isTLS}
	g.newServer = func() *grpc.Server {
		return grpc.NewServer(
			grpc.ForceServerCodec(rawCodec{}),
			grpc.UnknownServiceHandler(g.handle),
			grpc.MaxRecvMsgSize(o.MaxBodySize), grpc.MaxSendMsgSize(o.MaxBodySize),
		)
	}
	return g, nil
}

// dialGRPC sets up the client connection to the gRPC endpoint that flag
// names, at raw: cleartext HTTP/2 for http://, TLS for https://, with the
// TLS flags that begin with prefix (--proxy.upstream-, --shadow.) in o,
// verified against its host. Its calls pass messages as their bytes
// (rawCodec), up to maxMsg each way, and are not retried once sent: a
// prediction may have reached the model. grpc-go still retries, on its own
// and whatever the options, a call the server did not take (refused with
// REFUSED_STREAM, or past the last a GOAWAY let through): a transparent
// retry, which a stats.Handler among opts sees (transparentRetries). It
// connects on the first call; w watches its connections.
func dialGRPC(flag, raw, prefix string, o promconfig.TLSConfig, maxMsg int, w *connWatch, logger *slog.Logger, opts ...grpc.DialOption) (conn *grpc.ClientConn, isTLS bool, err error) {
	u, host, err := parseUpstream(flag, raw)
	if err != nil {
		return nil, false, err
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		cfg, err := upstreamTLS(o, prefix, flag, raw, u.Hostname(), logger)
		if err != nil {
			return nil, false, err
		}
		creds = handshakeCreds{credentials.NewTLS(cfg), w}
	}
	conn, err = grpc.NewClient("passthrough:///"+host, append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithNoProxy(),             // reached directly, as over HTTP, not through $HTTP_PROXY
		grpc.WithContextDialer(w.dial), // its connections watched (connWatch)
		grpc.WithDisableRetry(),        // a prediction may have reached the model
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
	}, opts...)...)
	if err != nil {
		return nil, false, fmt.Errorf("couldn't set up %s=%q: %w", flag, raw, err)
	}
	return conn, u.Scheme == "https", nil
}

// start serves the calls of ln's connections.
func (g *grpcProxy) start(ln net.Listener) {
	g.handoff = newHandoff(ln)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.serveLocked(g.handoff.current())
}

// serveLocked starts a server on v. g.mu is held.
func (g *grpcProxy) serveLocked(v *view) {
	srv := g.newServer()
	g.servers = append(g.servers, srv)
	g.serving.Add(1)
	go func() {
		defer g.serving.Done()
		if err := srv.Serve(v); err != nil && !g.isStopping() {
			g.p.logger.Error("gRPC proxy server stopped", "err", err)
		}
	}()
}

func (g *grpcProxy) isStopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping
}

// drain sends every client connected so far a GOAWAY, while a new server
// takes the new connections (--proxy.shutdown-delay): calls in flight, and
// streams, go on until they end or the sidecar stops.
func (g *grpcProxy) drain() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping || len(g.servers) == 0 {
		return
	}
	old := g.servers[len(g.servers)-1]
	g.serveLocked(g.handoff.take())
	g.serving.Add(1)
	go func() {
		defer g.serving.Done()
		time.Sleep(takeoverGrace)
		old.GracefulStop()
	}()
}

// stop stops taking calls and waits for those in flight, until ctx is done:
// then it ends them.
func (g *grpcProxy) stop(ctx context.Context) error {
	g.mu.Lock()
	g.stopping = true
	servers := g.servers
	g.mu.Unlock()
	var stopped sync.WaitGroup
	for _, srv := range servers {
		stopped.Add(1)
		go func() {
			defer stopped.Done()
			srv.GracefulStop()
		}()
	}
	if g.handoff != nil {
		g.handoff.Close()
	}
	done := make(chan struct{})
	go func() {
		stopped.Wait()
		g.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, srv := range servers {
			srv.Stop()
		}
		<-done
		return ctx.Err()
	}
}

// everyStream is the description of any call: the raw forwarding below
// treats unary calls as streams of one message each way.
var everyStream = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// handle takes every call the server gets.
func (g *grpcProxy) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	if call, ok := unaryCalls[method]; ok {
		return g.predict(ss, method, call)
	}
	switch method {
	case modelStreamInfer:
		return g.forward(ss, method, g.newStreamCall(ss.Context()))
	case torchStreamPredictions:
		return g.forward(ss, method, g.newTorchStream(ss.Context()))
	}
	g.p.metrics.Passthrough.Inc()
	if method == seldonSendFeedback || method == seldonModelFeedback {
		return g.forward(ss, method, g.newFeedbackTap(ss.Context()))
	}
	return g.forward(ss, method, nil)
}

// feedbackTap watches a Seldon SendFeedback call: a passthrough call whose
// message, once the call ends, goes to the parsers as the HTTP feedback's
// body does, for its reward and the labels its truth gives.
type feedbackTap struct {
	g  *grpcProxy
	m  *model
	id []byte // the id header

	mu       sync.Mutex // request runs in forward's goroutine for the client's messages
	msg      []byte
	answered atomic.Bool
}

func (g *grpcProxy) newFeedbackTap(ctx context.Context) *feedbackTap {
	md, _ := metadata.FromIncomingContext(ctx)
	rc := g.p.cfg.Load()
	m, _ := g.p.modelNamed(rc, mdValue(md, seldonHeader), mdValue(md, rc.modelHeader))
	t := &feedbackTap{g: g, m: m}
	if g.p.labels != nil {
		t.id = mdValue(md, g.p.labels.header)
	}
	return t
}

func (t *feedbackTap) request(msg []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.msg == nil {
		t.msg = msg
	}
}

func (t *feedbackTap) answer([]byte) { t.answered.Store(true) }

func (t *feedbackTap) end(err error) {
	t.mu.Lock()
	msg := t.msg
	t.mu.Unlock()
	deadline := clientDeadline(err)
	if deadline && (t.answered.Load() || msg == nil) {
		// Answered, or not asked, when the client's deadline passed.
		err = context.Canceled
	}
	t.g.passthroughEnd(err)
	if msg != nil && !deadline && !errors.Is(err, context.Canceled) {
		t.g.p.queue.offerFeedback(t.m, payload.FormatSeldonGRPC, bodyEncodings{}, msg, t.id)
	}
}

// outgoing is the context of the call to the model server: the client's
// metadata (the transport's own headers aside) and deadline, and over
// cleartext its :authority (over TLS the authority must be the name the
// model server's certificate carries).
func (g *grpcProxy) outgoing(ctx context.Context) (context.Context, []grpc.CallOption) {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	var opts []grpc.CallOption
	if a := md.Get(":authority"); len(a) > 0 && !g.tls {
		opts = append(opts, grpc.CallAuthority(a[0]))
	}
	for k := range md {
		if strings.HasPrefix(k, ":") {
			delete(md, k)
		}
	}
	return metadata.NewOutgoingContext(ctx, md), opts
}

// callTap watches the messages of a call that forward passes through.
type callTap interface {
	// request is a client's message, before it goes to the model server.
	request(msg []byte)
	// answer is one of the model server's, once the client has it.
	answer(msg []byte)
	// end is the call's outcome, once: nil, the model server's error
	// status, a *proxyFailure (of context.DeadlineExceeded when the
	// client's deadline passed: clientDeadline), or context.Canceled for
	// the client's going away.
	end(err error)
}

// deadlineGrace is how long before a call's deadline a cancel from its
// client counts as that deadline (pastDeadline).
const deadlineGrace = 50 * time.Millisecond

// pastDeadline reports whether the call whose context is ctx was ended by
// its client's deadline (grpc-timeout): past it, or cancelled within
// deadlineGrace of it. A client's gRPC library cancels its call
// (RST_STREAM) the moment its deadline passes, and that cancel may reach
// the sidecar a moment before the deadline passes here too: the deadline
// came with the call, and counts from when the call arrived.
func pastDeadline(ctx context.Context) bool {
	switch err := ctx.Err(); {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) <= deadlineGrace
}

// clientDeadline reports whether a call's outcome (callTap.end) is its
// client's deadline (grpc-timeout), passed before the call ended.
func clientDeadline(outcome error) bool {
	var pf *proxyFailure
	return errors.As(outcome, &pf) && errors.Is(pf.err, context.DeadlineExceeded)
}

// forward passes a call of any kind through: the client's messages to the
// model server in one goroutine, the model server's back in this one. tap,
// when not nil, watches them; else the call is not a prediction, and its
// failure counts as a passthrough error.
func (g *grpcProxy) forward(ss grpc.ServerStream, method string, tap callTap) (err error) {
	var failure error // the model server was not reached
	clientGone := false
	var halfClosed atomic.Bool // the client has sent all its messages
	answered := false          // the model server has sent one
	defer func() {
		outcome := err
		cerr := ss.Context().Err()
		_, hasDeadline := ss.Context().Deadline()
		switch {
		case pastDeadline(ss.Context()) || hasDeadline && cerr == nil && !clientGone && status.Code(err) == codes.DeadlineExceeded:
			// The client's deadline passed before the call ended (the
			// model server's DEADLINE_EXCEEDED is that deadline, which
			// went to it with the call). A stream's taps tell which of its
			// requests were waiting for the model server; any other call
			// was waiting for it when the model server could not be
			// reached, or the client had sent all and had no answer yet,
			// and was the client's doing otherwise.
			outcome = &proxyFailure{context.DeadlineExceeded}
			if tap == nil && failure == nil && (!halfClosed.Load() || answered) {
				outcome = context.Canceled
			}
		case cerr != nil || clientGone:
			outcome = context.Canceled
		case failure != nil:
			outcome = &proxyFailure{failure}
		}
		if tap != nil {
			tap.end(outcome)
		} else {
			g.passthroughEnd(outcome)
		}
	}()
	// A watched call's first message is read before the model server is
	// called, so that a call it can't take still counts that request, as
	// failed, rather than none.
	var (
		first    []byte
		firstErr error
		read     bool // first and firstErr are the client's first message
	)
	if tap != nil {
		read = true
		if firstErr = ss.RecvMsg(&first); firstErr != nil && !errors.Is(firstErr, io.EOF) {
			return firstErr // gone, or past --proxy.max-body-size
		}
	}
	ctx, opts := g.outgoing(ss.Context())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := g.conn.NewStream(ctx, everyStream, method, opts...)
	if err != nil {
		if read && firstErr == nil {
			tap.request(first)
		}
		failure = err
		return g.failure(ss.Context(), nil, err)
	}
	go func() {
		msg, err := first, firstErr
		if !read {
			err = ss.RecvMsg(&msg)
		}
		for ; err == nil; err = ss.RecvMsg(&msg) {
			if tap != nil {
				tap.request(msg)
			}
			if cs.SendMsg(&msg) != nil {
				return // RecvMsg below gets the model server's status
			}
		}
		if errors.Is(err, io.EOF) {
			halfClosed.Store(true)
			_ = cs.CloseSend()
		} else {
			cancel() // the client is gone
		}
	}()
	// The model server's headers go to the client as soon as they come,
	// before any message (a server stream may send them long before).
	var upErr, sendErr error
	headers := make(chan struct{})
	go func() {
		defer close(headers)
		var md metadata.MD
		if md, upErr = cs.Header(); upErr == nil && md != nil {
			sendErr = ss.SendHeader(md)
		}
	}()
	for {
		var msg []byte
		err := cs.RecvMsg(&msg)
		<-headers // ss is not safe for SendHeader and SendMsg at once
		switch {
		case upErr != nil: // the model server was not reached
			failure = upErr
			return g.failure(ss.Context(), nil, upErr)
		case sendErr != nil: // the client is gone
			clientGone = true
			return sendErr
		}
		if err != nil {
			switch {
			case grpcTooLarge(err, g.maxMsg):
				failure = errAnswerTooLarge
				return g.failure(ss.Context(), nil, failure)
			case connLost(cs, err):
				failure = connLostError{err}
				return g.failure(ss.Context(), nil, failure)
			}
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // the model server's own status
		}
		answered = true
		if err := ss.SendMsg(&msg); err != nil {
			clientGone = true
			return err
		}
		if tap != nil {
			tap.answer(msg)
		}
	}
}

// passthroughEnd counts a call that is not a prediction by its outcome, as
// callTap.end has it: the model server not reached, or its error status.
func (g *grpcProxy) passthroughEnd(outcome error) {
	var pf *proxyFailure
	switch {
	case outcome == nil || errors.Is(outcome, context.Canceled) || status.Code(outcome) == codes.Canceled:
		// Done, or given up by the client (or by the sidecar, for it).
	case errors.As(outcome, &pf):
		reason, _ := g.failureStatus(pf.err)
		g.p.countError(nil, reason)
	default:
		g.p.countStatus(grpcHTTPStatus(status.Code(outcome)), nil)
	}
}

// predict proxies a unary prediction call: one request message, one
// answer.
func (g *grpcProxy) predict(ss grpc.ServerStream, method string, call unaryCall) error {
	start := g.p.now()
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err // past --proxy.max-body-size: ResourceExhausted
	}
	rc := g.p.cfg.Load()
	md, _ := metadata.FromIncomingContext(ss.Context())
	m, name, id := call.model(g.p, rc, md, req)
	var idHeader metadata.MD
	if l := g.p.labels; l != nil && len(id) == 0 {
		// The id labels must carry: the request's, from its metadata, the
		// answer's (call.answerID), or a new one, returned in the answer's.
		if id = mdValue(md, l.header); len(id) == 0 && call.answerID == nil {
			id = l.newID()
			idHeader = metadata.Pairs(string(l.header), string(id))
		}
	}
	m.requests.Inc()
	m.inFlight.Inc()
	rq := request{format: call.format, id: id, traceID: mdTraceID(md), start: start}

	ctx, opts := g.outgoing(ss.Context())
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	upStart := g.p.now()
	rq.overhead = upStart.Sub(start)
	resp, err := g.roundTrip(ctx, ss, method, req, idHeader, opts)
	upEnd := g.p.now()
	m.inFlight.Dec()
	st, respSize := 200, len(resp)
	var mirror *[]byte
	switch {
	case err == nil:
		// Only what account captures (an answer) reaches the shadow.
		if g.shadow != nil && g.shadow.sample(m, name) {
			mirror = shadowCalls.Get().(*[]byte)
			*mirror = appendShadowCall((*mirror)[:0], method, md)
			rq.header, rq.mirror = *mirror, true
		}
	case errors.As(err, new(*proxyFailure)):
		err = g.failure(ss.Context(), m, err.(*proxyFailure).err)
		st, respSize = 502, -1
	case ss.Context().Err() != nil:
		st, respSize = 499, -1 // the client went away: not the model server's doing
	case errors.Is(err, io.EOF):
		// The model server ended the call OK without an answer. The client
		// gets just that, and its own gRPC library the error it would
		// calling the model server directly (grpc-go's INTERNAL
		// "cardinality violation"): for us, the model server's failure.
		err, st, respSize = nil, 500, -1
		g.p.countStatus(st, m)
	default:
		// The model server's own status: the caller's error or its own,
		// as the HTTP status gRPC maps it to says.
		st = grpcHTTPStatus(status.Code(err))
		g.p.countStatus(st, m)
	}
	if g.p.labels != nil && len(rq.id) == 0 && call.answerID != nil {
		rq.id = call.answerID(resp)
	}
	g.p.account(m, req, resp, respSize, st, rq, upEnd)
	if mirror != nil {
		shadowCalls.Put(mirror) // the capture has its copy
	}
	return err
}

// proxyFailure is a call the model server did not answer, unlike an error
// status it sent.
type proxyFailure struct{ err error }

func (f *proxyFailure) Error() string { return f.err.Error() }

// roundTrip makes a unary prediction call to the model server and passes its
// headers, answer and trailers to the client as they come. It returns the
// answer, or the model server's error status, io.EOF when it ended the call
// OK without an answer, or a *proxyFailure.
func (g *grpcProxy) roundTrip(ctx context.Context, ss grpc.ServerStream, method string, req []byte, idHeader metadata.MD, opts []grpc.CallOption) ([]byte, error) {
	cs, err := g.conn.NewStream(ctx, everyStream, method, opts...)
	if err != nil {
		return nil, &proxyFailure{err}
	}
	if err := cs.SendMsg(&req); err != nil && !errors.Is(err, io.EOF) {
		return nil, &proxyFailure{err}
	}
	_ = cs.CloseSend()
	var resp []byte
	err = cs.RecvMsg(&resp)
	if grpcTooLarge(err, g.maxMsg) {
		return nil, &proxyFailure{errAnswerTooLarge}
	}
	if connLost(cs, err) {
		err = connLostError{err}
	}
	if err != nil && (ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded || errors.As(err, new(connLostError))) {
		// Past --proxy.timeout (or the client's deadline, or gone). The
		// deadline goes to the model server with the call, so its own
		// DEADLINE_EXCEEDED may come a moment before ours.
		return nil, &proxyFailure{err}
	}
	md, herr := cs.Header()
	if herr != nil {
		// No headers, no status from the model server: it was not reached,
		// or did not answer in time.
		return nil, &proxyFailure{herr}
	}
	if md = metadata.Join(md, idHeader); len(md) > 0 {
		if err := ss.SendHeader(md); err != nil {
			return nil, err
		}
	}
	if err == nil {
		if err = ss.SendMsg(&resp); err == nil {
			var extra []byte
			if err = cs.RecvMsg(&extra); errors.Is(err, io.EOF) {
				err = nil
			} else if err == nil {
				err = status.Error(codes.Internal, "modelmon: the model server sent more than one answer to "+path.Base(method))
			}
		}
	}
	ss.SetTrailer(cs.Trailer())
	return resp, err
}

// failure is the status a client gets for a call the model server did not
// answer, with the HTTP proxy's messages. A unary prediction call's failure is
// counted on m by reason, unless its client went away. When the client's
// own deadline (grpc-timeout) passed first, that is the failure: the
// sidecar had the request, so the model server did not answer in time,
// and it counts as timeout, as past --proxy.timeout; the client's gRPC
// library reports its deadline itself.
func (g *grpcProxy) failure(client context.Context, m *model, err error) error {
	cerr := client.Err()
	switch {
	case cerr != nil && pastDeadline(client):
		err = context.DeadlineExceeded
	case cerr != nil:
		return status.FromContextError(cerr).Err()
	}
	reason, st := g.failureStatus(err)
	if m != nil {
		m.errors[reason].Inc()
	}
	g.p.logger.Debug("Upstream gRPC call failed", "reason", reason, "err", err)
	g.p.failing.warn(func() []any { return []any{"reason", reason, "err", err, "upstream", g.upstream} })
	if cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	return st
}

// errAnswerTooLarge is an answer of the model server that the sidecar did
// not read, being larger than --proxy.max-body-size.
var errAnswerTooLarge = errors.New("the model server's answer is larger than --proxy.max-body-size")

// grpcTooLarge reports whether err is grpc-go's own refusal to read a
// message larger than limit (grpc.MaxCallRecvMsgSize), not a status the
// other side sent.
//
// RESOURCE_EXHAUSTED alone does not tell them apart: a model server sends
// it too, for its quotas and load, and a grpc-go server for a request over
// its own receive limit, in the very words grpc-go's client uses for an
// answer over ours; and the client's status carries nothing else, no error
// to test, no detail. What tells is the limit in the words: grpc-go's
// three (rpc_util.go: the message as announced, after decompression by an
// encoding.Compressor, and by a legacy Decompressor), read whole, with
// limit as the max. A server that refused our request names its own limit,
// below ours, since the request was within ours (the proxy's server takes
// none larger, the capture mirrors none larger).
func grpcTooLarge(err error, limit int) bool {
	if err == nil {
		return false
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return false
	}
	msg := st.Message()
	var size, most int
	for _, f := range grpcTooLargeWords {
		if _, err := fmt.Sscanf(msg, f, &size, &most); err == nil && most == limit && size > most && msg == fmt.Sprintf(f, size, most) {
			return true
		}
	}
	_, err = fmt.Sscanf(msg, grpcTooLargeDecompressed, &most)
	return err == nil && most == limit && msg == fmt.Sprintf(grpcTooLargeDecompressed, most)
}

// grpcTooLargeWords are grpc-go's words for a received message larger
// than the max, the size and the max in them; grpcTooLargeDecompressed
// names the max alone.
var grpcTooLargeWords = [...]string{
	"grpc: received message larger than max (%d vs. %d)",
	"grpc: message after decompression larger than max (%d vs. %d)",
}

const grpcTooLargeDecompressed = "grpc: received message after decompression larger than max %d"

// failureStatus is the reason a call the model server did not answer
// counts as, and the status its client gets: DeadlineExceeded past
// --proxy.timeout (or the client's deadline), ResourceExhausted for an
// answer larger than --proxy.max-body-size (invalid_response), else
// Unavailable: its connection lost (connLostError), a failed TLS handshake
// (connWatch), the model server not reached.
func (g *grpcProxy) failureStatus(err error) (reason string, st error) {
	reason, code, msg := collector.ErrorConnection, codes.Unavailable, "modelmon: could not reach the model server"
	switch {
	case errors.Is(err, errAnswerTooLarge):
		reason, code, msg = collector.ErrorInvalidResponse, codes.ResourceExhausted, "modelmon: the model server's response is larger than --proxy.max-body-size"
	case status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		reason, code, msg = collector.ErrorTimeout, codes.DeadlineExceeded, "modelmon: the model server did not answer in time"
	case errors.As(err, new(connLostError)):
		msg = "modelmon: the model server closed the connection before a complete response"
	case status.Code(err) == codes.Unavailable && g.watch.handshakeFailed.Load():
		msg = "modelmon: the TLS handshake with the model server failed"
	}
	return reason, status.Error(code, msg)
}

// mdModel is the model a gRPC request names, with its version set, and the
// name it names it by: name and version as its message has them, else the
// model and version headers of the call's metadata md (modelNamed,
// setVersionNamed).
func (p *proxy) mdModel(rc *runtimeConfig, md metadata.MD, name, version []byte) (*model, []byte) {
	m, name := p.modelNamed(rc, name, mdValue(md, rc.modelHeader))
	m.setVersionNamed(version, mdValue(md, rc.versionHeader))
	return m, name
}

// mdTraceID is the trace id of the W3C traceparent in md, nil when none.
func mdTraceID(md metadata.MD) []byte {
	if tp := md.Get("traceparent"); len(tp) > 0 {
		return parseTraceparent([]byte(tp[0]))
	}
	return nil
}

// mdValue is the first value of the metadata key, nil when there is none
// or no key is configured.
func mdValue(md metadata.MD, key []byte) []byte {
	if len(key) == 0 {
		return nil
	}
	if v := md.Get(string(key)); len(v) > 0 {
		return []byte(v[0])
	}
	return nil
}

// grpcHTTPStatus is the HTTP status a gRPC status stands for (as gRPC's
// HTTP mapping and grpc-gateway give them), so that an error status counts
// as upstream_4xx or upstream_5xx as over HTTP: the caller's fault, or the
// model server's. One exception: UNIMPLEMENTED, 501 in that mapping, is
// 404 here. A model server answers it for a method it does not have
// (grpc-go's "unknown service", Triton and TF Serving for an API they
// don't serve): the call is wrong, as a path the HTTP model server does
// not have is, and the HTTP proxy counts that 404 as upstream_4xx; an
// upstream_5xx would page for a model server that is fine.
func grpcHTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.Unauthenticated:
		return 401
	case codes.PermissionDenied:
		return 403
	case codes.NotFound, codes.Unimplemented:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.ResourceExhausted:
		return 429
	case codes.Unavailable:
		return 503
	case codes.DeadlineExceeded:
		return 504
	}
	return 500 // Unknown, Internal, DataLoss, any other
}
