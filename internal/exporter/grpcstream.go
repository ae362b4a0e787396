package exporter

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// modelStreamInfer is Triton's streaming prediction call: requests and
// answers both ways on one stream, zero, one or many answers to a request
// (payload/oipstream.go).
const modelStreamInfer = "/inference.GRPCInferenceService/ModelStreamInfer"

// maxStreamPending is the most requests of one ModelStreamInfer call that
// are followed at once, and streamBudget how many times
// --capture.max-body-size their messages, kept for the capture, may take.
// A decoupled model that never flags its last answer leaves each request
// pending until the call ends; past either, the oldest is closed as it
// stands. The messages all calls keep take from the capture queue's
// budget too (queue.hold): past it, a message is not kept.
const (
	maxStreamPending = 1024
	streamBudget     = 4
)

// streamCall follows the predictions of one ModelStreamInfer call: each
// request message is a prediction, counted when it goes to the model
// server and accounted when its last answer reaches the client. Its last
// answer is the one flagged triton_final_response, or the only one when
// the model flags none (a model that is not decoupled answers each request
// once). The answer captured with the request, for the parser, is the last
// that carried outputs; the response size is that of all its answers.
type streamCall struct {
	g      *grpcProxy
	client context.Context
	rc     *runtimeConfig
	md     metadata.MD
	trace  []byte // the call's traceparent's trace id, for exemplars

	mu      sync.Mutex
	pending []*streamPrediction // in the order they were sent
	kept    int                 // bytes the pending requests keep
	ended   bool
	// mirror mirrors the sampled requests to the gRPC shadow
	// (shadowstream.go); nil until the first.
	mirror *shadowStream
}

// streamPrediction is a request of a ModelStreamInfer call not yet fully
// answered.
type streamPrediction struct {
	m        *model
	req      []byte // nil when it is not kept: reqDrop says why
	reqSize  int
	name, id []byte // the model and id the request names, to match answers
	rq       request
	last     []byte // the last answer's ModelInferResponse with outputs
	// reqDrop and lastDrop are why the request, and that answer, were not
	// kept: collector.DropBodyTooLarge or DropQueueFull; "" when kept.
	reqDrop, lastDrop string
	lastAt            time.Time       // when the last answer reached the client
	respBytes         int             // of all its answers
	answers           streamedAnswers // whether they were streamed
	// mirror is the request as mirrored to the shadow, nil when it is not.
	mirror *mirroredRequest
}

// streamedAnswers counts the answers to a request of a ModelStreamInfer
// call, to tell whether they were streamed: a request answered by one
// message (final on its first answer, or the only one before the call
// ended) was not, as an HTTP answer read whole is not, whatever the number
// of tokens it reports. Once a second answer comes, the first was a
// stream's first token: its time is the request's time to first byte. The
// proxy and the shadow tell it alike, so that their histograms compare. A
// StreamPredictions call's answers are counted the same way for its time
// per output token (its first answer is its time to first byte anyway).
type streamedAnswers struct {
	n     int
	first time.Duration // the first answer's, after the request
}

// add counts an answer that came after the request by after, and returns
// the time to first byte when it is the second, the one that shows the
// answers streamed (ok).
func (a *streamedAnswers) add(after time.Duration) (firstByte time.Duration, ok bool) {
	a.n++
	switch a.n {
	case 1:
		a.first = after
	case 2:
		return a.first, true
	}
	return 0, false
}

// kept is how much of the capture's memory sp takes.
func (sp *streamPrediction) kept() int { return len(sp.req) + len(sp.last) }

func (g *grpcProxy) newStreamCall(client context.Context) *streamCall {
	md, _ := metadata.FromIncomingContext(client)
	return &streamCall{g: g, client: client, rc: g.p.cfg.Load(), md: md, trace: mdTraceID(md)}
}

func (c *streamCall) request(msg []byte) {
	p := c.g.p
	start := p.now()
	// The model and id as a ModelInfer request names them; named is the
	// name it names its model by (mdModel's), name its own model_name,
	// which answers carry.
	name, version, id, _ := payload.InferRequestIDs(msg)
	m, named := p.mdModel(c.rc, c.md, name, version)
	// A stream's metadata is the call's, not a request's: the id labels
	// join on is the one the request carries.
	sp := &streamPrediction{m: m, reqSize: len(msg), name: name, id: id,
		rq: request{format: payload.FormatOIPGRPC, id: id, traceID: c.trace, start: start}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return // the call is over: the message goes nowhere
	}
	sp.req, sp.reqDrop = c.keep(msg)
	m.requests.Inc()
	m.inFlight.Inc()
	c.pending = append(c.pending, sp)
	c.kept += sp.kept()
	c.sample(sp, modelStreamInfer, named)
	c.trim(sp)
}

// sample mirrors sp's request, of a call of method, to the shadow, when it
// is sampled: by the name it names its model by, as a unary call's is.
// Only what the capture may keep is (a request too large for it is not);
// one that finds the capture queue full is dropped.
func (c *streamCall) sample(sp *streamPrediction, method string, name []byte) {
	sh := c.g.shadow
	if sh == nil || sp.reqDrop == collector.DropBodyTooLarge || !sh.sample(sp.m, name) {
		return
	}
	if sp.req == nil {
		sh.metrics.Dropped.WithLabelValues(sp.m.name).Inc()
		return
	}
	if c.mirror == nil {
		c.mirror = sh.newStream(method, sp.rq.format, c.md)
	}
	sp.mirror = c.mirror.add(sp.m, sp.req, sp.id, sp.name, sp.rq.id)
}

func (c *streamCall) answer(msg []byte) {
	at := c.g.p.now()
	r, ok := payload.ReadStreamResponse(msg)
	if !ok {
		return // no answer to read: the parser has no part in streams
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.match(r)
	if i < 0 {
		return // no request of ours to answer
	}
	sp := c.pending[i]
	if firstByte, ok := sp.answers.add(at.Sub(sp.rq.start)); ok {
		// The first of a decoupled model's several answers: an LLM's
		// first token, as the first byte of an HTTP stream is. Its time
		// per output token runs from it.
		sp.rq.firstByte = firstByte
		c.g.p.metrics.FirstByte.WithLabelValues(sp.m.name).Observe(firstByte.Seconds())
	}
	sp.respBytes += len(msg)
	sp.lastAt = at
	if r.Error == nil && r.Outputs {
		// Triton's vLLM backend gives the tokens each answer adds.
		if n, ok := payload.OutputCount(r.Response, "num_output_tokens"); ok {
			sp.rq.outputTokens += n
		}
		c.keepLast(sp, r.Response)
	}
	if r.Error == nil && r.Final == 0 {
		c.trim(sp)
		return // more to come
	}
	c.remove(i)
	var err error
	if r.Error != nil {
		err = status.Error(streamErrorCode(r), string(r.Error))
	}
	c.close(sp, err)
}

// streamErrorCode is the status an error answer of a ModelStreamInfer call
// stands for, as Triton gives it none: an error of the inference itself is
// the model server's (INTERNAL); one it rejected the request with before
// the model saw it is the request's (INVALID_ARGUMENT), unless its message
// is one of Triton's for a server that can't take requests now (a model
// not ready, a full queue, shutting down: UNAVAILABLE).
func streamErrorCode(r payload.StreamResponse) codes.Code {
	if !r.Rejected {
		return codes.Internal
	}
	msg := bytes.ToLower(r.Error)
	for _, s := range tritonUnavailable {
		if bytes.Contains(msg, []byte(s)) {
			return codes.Unavailable
		}
	}
	return codes.InvalidArgument
}

// tritonUnavailable are the words of Triton's errors for a request it
// can't take now, lower case.
var tritonUnavailable = []string{"is not at ready state", "maximum queue size", "shutting down", "no available version", "unavailable"}

// keep is msg when the capture may keep it, else nil and why not: it is
// larger than the capture, or the capture queue has no room left for it.
func (c *streamCall) keep(msg []byte) ([]byte, string) {
	q := c.g.p.queue
	switch {
	case len(msg) > q.maxBody:
		return nil, collector.DropBodyTooLarge
	case !q.hold(len(msg)):
		return nil, collector.DropQueueFull
	}
	return msg, ""
}

// keepLast makes answer, when the capture may keep it, the one captured
// with sp's request, in place of the one kept before.
func (c *streamCall) keepLast(sp *streamPrediction, answer []byte) {
	c.kept -= len(sp.last)
	c.g.p.queue.unhold(len(sp.last))
	sp.last, sp.lastDrop = c.keep(answer)
	c.kept += len(sp.last)
}

// trim closes the oldest pending requests, but not keep, while there are
// too many or they keep too much.
func (c *streamCall) trim(keep *streamPrediction) {
	budget := streamBudget * c.g.p.queue.maxBody
	for len(c.pending) > 1 && (len(c.pending) > maxStreamPending || c.kept > budget) {
		i := 0
		if c.pending[0] == keep {
			i = 1
		}
		sp := c.pending[i]
		c.remove(i)
		c.close(sp, nil)
	}
}

// remove takes the i-th request off the pending ones.
func (c *streamCall) remove(i int) {
	c.unkeep(c.pending[i])
	c.pending = append(c.pending[:i], c.pending[i+1:]...)
}

// unkeep gives back what sp's kept messages took: it is closed next.
func (c *streamCall) unkeep(sp *streamPrediction) {
	c.kept -= sp.kept()
	c.g.p.queue.unhold(sp.kept())
}

// match is the index of the pending request an answer is for, -1 for none:
// the one with its id; an answer without one (a server that does not echo
// ids), the oldest of its model, else the oldest.
func (c *streamCall) match(r payload.StreamResponse) int {
	return matchAnswer(c.pending, r, func(sp *streamPrediction) ([]byte, []byte) { return sp.id, sp.name })
}

// end closes the requests still pending when the call ends: those answered
// at all as answered, the others by how the call ended.
func (c *streamCall) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	for _, sp := range c.pending {
		c.unkeep(sp)
		if sp.respBytes > 0 && err == nil {
			c.close(sp, nil)
			continue
		}
		c.close(sp, err)
	}
	c.pending = nil
	if c.mirror != nil {
		c.mirror.close()
	}
}

// close accounts for a request of the call: err is nil when it was
// answered (or the call ended well without an answer to it), else the
// model server's error status, a *proxyFailure (the client's deadline
// among them), or the client's going away.
func (c *streamCall) close(sp *streamPrediction, err error) {
	p, m := c.g.p, sp.m
	m.inFlight.Dec()
	if sp.mirror != nil {
		// The shadow compares what the capture has: an answer kept.
		var answer []byte
		if err == nil && sp.lastDrop == "" {
			answer = sp.last
		}
		c.mirror.answered(sp.mirror, answer, err == nil && sp.lastDrop == collector.DropQueueFull)
	}
	var pf *proxyFailure
	switch {
	case err == nil && sp.respBytes == 0:
		// A decoupled model may answer a request with nothing: no latency
		// to tell, nothing to capture.
		m.reqSize.Observe(float64(sp.reqSize))
	case err == nil:
		p.observe(m, sp.reqSize, sp.respBytes, sp.rq, sp.lastAt, sp.lastAt)
		switch {
		case sp.reqDrop != "":
			p.queue.drop(m, sp.reqDrop)
		case sp.lastDrop != "":
			p.queue.drop(m, sp.lastDrop)
		case sp.last != nil:
			p.capture(m, sp.req, sp.last, len(sp.last), sp.rq, sp.lastAt)
		}
	case errors.As(err, &pf):
		// The client's deadline is a timeout of the requests the model
		// server had not answered at all: one it was answering (a
		// decoupled model's, an LLM's tokens) was cut short by the
		// client, as one it leaves is.
		if deadline := clientDeadline(err); deadline && sp.respBytes == 0 || !deadline && c.client.Err() == nil {
			reason, _ := c.g.failureStatus(pf.err)
			m.errors[reason].Inc()
		}
		now := p.now()
		p.observe(m, sp.reqSize, -1, sp.rq, now, now)
	case c.client.Err() != nil || errors.Is(err, context.Canceled):
		// The client went away: not the model server's doing.
		now := p.now()
		p.observe(m, sp.reqSize, -1, sp.rq, now, now)
	default:
		p.countStatus(grpcHTTPStatus(status.Code(err)), m)
		end := p.now()
		if !sp.lastAt.IsZero() {
			end = sp.lastAt
		}
		p.observe(m, sp.reqSize, sp.respBytes, sp.rq, end, end)
	}
}

// torchStreamPredictions is TorchServe's server-streaming prediction call:
// one request, its answers streamed until the call ends (an LLM's tokens).
const torchStreamPredictions = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/StreamPredictions"

// torchStream follows a StreamPredictions call as one prediction: counted
// when its request goes to the model server, its time to first byte that of
// the first answer (its time per output token runs from it when a second
// came: streamedAnswers), and timed, sized and captured (with its last
// answer) when the call ends. It shares a ModelStreamInfer call's bookkeeping: the
// messages kept for the capture, and how a prediction is closed.
type torchStream struct {
	*streamCall
	sp *streamPrediction // nil until the request
}

func (g *grpcProxy) newTorchStream(client context.Context) *torchStream {
	return &torchStream{streamCall: g.newStreamCall(client)}
}

func (t *torchStream) request(msg []byte) {
	c := t.streamCall
	p := c.g.p
	start := p.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || t.sp != nil {
		return // the call is over, or sends one request only
	}
	name, version := payload.TorchServeRequestModel(msg)
	m, name := p.mdModel(c.rc, c.md, name, version)
	var id []byte
	if l := p.labels; l != nil {
		id = mdValue(c.md, l.header)
	}
	sp := &streamPrediction{m: m, reqSize: len(msg),
		rq: request{format: payload.FormatTorchServeGRPC, id: id, traceID: c.trace, start: start}}
	sp.req, sp.reqDrop = c.keep(msg)
	m.requests.Inc()
	m.inFlight.Inc()
	c.kept += sp.kept()
	t.sp = sp
	c.sample(sp, torchStreamPredictions, name)
}

func (t *torchStream) answer(msg []byte) {
	c := t.streamCall
	at := c.g.p.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	sp := t.sp
	if sp == nil || c.ended {
		return
	}
	after := at.Sub(sp.rq.start)
	if sp.respBytes == 0 {
		// The call streams, whatever its answers: its first is its time
		// to first byte.
		c.g.p.metrics.FirstByte.WithLabelValues(sp.m.name).Observe(after.Seconds())
	}
	if firstByte, ok := sp.answers.add(after); ok {
		// Its time per output token runs from its first answer, once a
		// second shows the tokens came apart: a call answered once
		// (a whole completion) has none, as a ModelStreamInfer request's.
		sp.rq.firstByte = firstByte
	}
	sp.respBytes += len(msg)
	sp.lastAt = at
	c.keepLast(sp, msg) // the last answer is the one captured
}

func (t *torchStream) end(err error) {
	c := t.streamCall
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if sp := t.sp; sp != nil {
		c.unkeep(sp)
		c.close(sp, err)
	}
	if c.mirror != nil {
		c.mirror.close()
	}
}
