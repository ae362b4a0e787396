package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// The gRPC proxy's streamed prediction calls, Triton's ModelStreamInfer
// and TorchServe's StreamPredictions, are mirrored to the gRPC shadow on
// streams of their own: one per client stream, opened when the first of
// its requests is sampled. A sampled request goes on it as it goes to the
// model server, in the client's order, from a queue the client's stream
// never waits on (add); the shadow's answers are paired with the requests
// as the proxy pairs the model server's (matchAnswer). Once both answers
// to a request are complete, the pair goes to the shadow's senders, which
// compare them as they compare a unary call's.

// shadowStream mirrors the sampled requests of one client stream. Its
// sender (run) sends them in order on a stream it opens to the shadow,
// whose receiver (receive) pairs the answers, and hands the requests whose
// answers are both complete over to the shadow's senders, waiting for
// them as the client's stream never does; a stream that fails fails the
// requests waiting on it, and the next request opens another.
type shadowStream struct {
	s      *shadow
	method string
	format payload.Format
	md     metadata.MD // the call's; the shadow gets what shadowMD keeps
	// once is TorchServe's StreamPredictions: one request, whose answers
	// stream until the call ends.
	once bool
	wake chan struct{} // the sender has something to do
	// timer fails a request on the stream open to the shadow that has
	// waited --shadow.timeout for its next answer, or ends the stream when
	// its later answers could not be told from the others' (expire).
	timer *time.Timer

	mu      sync.Mutex
	queued  []*mirroredRequest // not sent yet, in order
	waiting []*mirroredRequest // sent on cur, their answers not complete, in order
	ready   []*mirroredRequest // both answers complete, to hand over
	cur     *shadowCall        // the stream open to the shadow, nil when none
	started bool               // the sender runs
	closing bool               // the client's stream ended: no more requests
	sentAll bool               // and all its requests were sent
	armed   bool               // timer is set
}

// shadowCall is one stream open to the shadow.
type shadowCall struct {
	cs     grpc.ClientStream
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed once its receiver has accounted for its end
	err    error         // how it ended, once it has
	// ids and noIDs tell whether the shadow's answers on it carried an id
	// (the request's, as Triton echoes it), and whether any did not.
	ids, noIDs bool
}

// pairsByID reports whether the shadow's later answers to r will be known
// by its id, not paired by order: r has one, and every answer on call so
// far carried one.
func (call *shadowCall) pairsByID(r *mirroredRequest) bool {
	return len(r.id) > 0 && call.ids && !call.noIDs
}

// mirroredRequest is a request of a client stream mirrored to the shadow,
// until both its answers are complete.
type mirroredRequest struct {
	m        *model
	req      []byte
	id, name []byte // the id and the model the request names, to pair answers
	labelID  []byte // its prediction id for labels; nil without them
	held     int    // of the capture queue's budget, for what it keeps
	sent     time.Time
	progress time.Time // when it was sent, or last answered
	answered bool      // the shadow answered it at all
	// firstByte is when the shadow's first answer to it came, after sent,
	// once it is known streamed (answers): 0 for one answered once, as the
	// proxy tells the model's; tokens, the output tokens its answers add
	// up to (num_output_tokens), 0 when they don't say. Its time per
	// output token is told from them.
	firstByte time.Duration
	answers   streamedAnswers
	tokens    int64
	// shadow is the shadow's last answer with outputs, model the model's:
	// what is compared. A side that could not keep its answer for want of
	// room (lost) leaves nothing to compare, counted as dropped.
	shadow, model         []byte
	shadowLost, modelLost bool
	shadowDone, modelDone bool
	done                  bool // handed over or given up: nothing more to do
}

// errShadowTimeout fails a request that waited --shadow.timeout for the
// shadow's next answer, and ends the stream open to the shadow when that
// request's later answers could not be told from the others'; errShadowIdle
// ends one that has nothing more to carry.
var (
	errShadowTimeout = errors.New("no answer from the shadow within --shadow.timeout")
	errShadowIdle    = errors.New("the client's stream ended, and the shadow has answered all of it")
)

// newStream is the mirror of a client stream of method, whose messages are
// of format f and whose metadata is md.
func (s *shadow) newStream(method string, f payload.Format, md metadata.MD) *shadowStream {
	return &shadowStream{s: s, method: method, format: f, md: md, once: method == torchStreamPredictions, wake: make(chan struct{}, 1)}
}

// add queues a request of model m for the shadow: req, naming id and
// name, with labelID its prediction id. It returns nil when the request is
// dropped, and counts it: the stream has maxStreamPending requests
// queued or waiting for the shadow already, or the capture queue's bytes
// are taken. It runs on the client's stream, and never waits.
func (ss *shadowStream) add(m *model, req, id, name, labelID []byte) *mirroredRequest {
	s := ss.s
	if s.pending == nil {
		labelID = nil
	}
	n := len(req) + len(labelID)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.queued)+len(ss.waiting) >= maxStreamPending || !s.q.hold(n) {
		s.metrics.Dropped.WithLabelValues(m.name).Inc()
		return nil
	}
	r := &mirroredRequest{m: m, req: req, id: id, name: name, labelID: labelID, held: n}
	s.inFlight.Add(1)
	ss.queued = append(ss.queued, r)
	if !ss.started {
		ss.started = true
		s.streams.Add(1)
		go ss.run()
	}
	ss.signal()
	return r
}

// answered hands over the model's answer to r, once the proxy has closed
// it: nil when there is none to compare (the model failed, answered
// nothing, or its answer was not kept for the capture; lost when that was
// for want of room). It runs on the client's stream, and never waits.
func (ss *shadowStream) answered(r *mirroredRequest, answer []byte, lost bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if r.done {
		return // the shadow failed it
	}
	r.modelDone, r.modelLost = true, lost
	if answer != nil {
		if ss.s.q.hold(len(answer)) {
			r.model = answer
			r.held += len(answer)
		} else {
			r.modelLost = true
		}
	}
	if r.shadowDone {
		ss.completeLocked(r)
	}
}

// close tells that the client's stream has ended: the stream open to the
// shadow is closed once what is queued has gone, and ended once the shadow
// has answered it.
func (ss *shadowStream) close() {
	ss.mu.Lock()
	ss.closing = true
	ss.mu.Unlock()
	ss.signal()
}

func (ss *shadowStream) signal() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// run sends the queued requests in order, and hands over those whose
// answers are complete, until the client's stream has ended and the
// shadow's with it.
func (ss *shadowStream) run() {
	defer ss.s.streams.Done()
	for {
		ss.mu.Lock()
		switch {
		case len(ss.ready) > 0:
			r := ss.ready[0]
			ss.ready[0] = nil
			ss.ready = ss.ready[1:]
			ss.mu.Unlock()
			ss.handOver(r)
		case len(ss.queued) > 0:
			r := ss.queued[0]
			ss.mu.Unlock()
			ss.send(r)
		case ss.closing && !ss.sentAll:
			// The shadow ends its stream once it has answered all of it; a
			// StreamPredictions call was closed with its request.
			ss.sentAll = true
			call := ss.cur
			ss.idleLocked()
			ss.mu.Unlock()
			if call != nil && !ss.once {
				_ = call.cs.CloseSend()
			}
		case ss.closing && ss.cur == nil && len(ss.waiting) == 0:
			ss.mu.Unlock()
			return
		default:
			ss.mu.Unlock()
			<-ss.wake
		}
	}
}

// send sends r, the first queued request, on the stream open to the
// shadow, opening one if there is none.
func (ss *shadowStream) send(r *mirroredRequest) {
	s := ss.s
	call, err := ss.open(r.m)
	ss.mu.Lock()
	ss.queued[0] = nil
	ss.queued = ss.queued[1:]
	s.metrics.Requests.WithLabelValues(r.m.name).Inc()
	switch {
	case err != nil:
		reason, _ := ss.failure(err, false)
		ss.failLocked(r, reason, err)
		ss.mu.Unlock()
		return
	case ss.cur != call:
		// The stream ended as it opened: its receiver has its status.
		reason, _ := ss.failure(call.err, call.timedOut())
		ss.failLocked(r, reason, call.err)
		ss.mu.Unlock()
		return
	}
	r.sent = time.Now()
	r.progress = r.sent
	ss.waiting = append(ss.waiting, r)
	ss.armLocked()
	ss.mu.Unlock()
	if err := call.cs.SendMsg(&r.req); err != nil {
		// The stream has ended: its receiver gets its status, and fails
		// the requests that waited on it, r too, before the next opens
		// another.
		<-call.done
		return
	}
	if ss.once {
		_ = call.cs.CloseSend()
	}
}

// open is the stream open to the shadow, or a new one, opened within
// --shadow.timeout with the call's metadata; its transparent retries count
// for m, the model of the request that opened it.
func (ss *shadowStream) open(m *model) (*shadowCall, error) {
	ss.mu.Lock()
	call := ss.cur
	ss.mu.Unlock()
	if call != nil {
		return call, nil
	}
	s := ss.s
	ctx, cancel := context.WithCancelCause(context.Background())
	ctx = withRetries(metadata.NewOutgoingContext(ctx, shadowMD(ss.md)), s.metrics.Retries.WithLabelValues(m.name))
	t := time.AfterFunc(s.timeout, func() { cancel(errShadowTimeout) })
	cs, err := s.conn.NewStream(ctx, everyStream, ss.method)
	t.Stop()
	if err != nil {
		if errors.Is(context.Cause(ctx), errShadowTimeout) {
			err = errShadowTimeout
		}
		cancel(nil)
		return nil, fmt.Errorf("couldn't open a stream to the shadow: %w", err)
	}
	call = &shadowCall{cs: cs, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	ss.mu.Lock()
	ss.cur = call
	ss.mu.Unlock()
	s.streams.Add(1)
	go ss.receive(call)
	return call, nil
}

// receive reads the shadow's answers on call until it ends.
func (ss *shadowStream) receive(call *shadowCall) {
	defer ss.s.streams.Done()
	defer close(call.done)
	for {
		var msg []byte
		if err := call.cs.RecvMsg(&msg); err != nil {
			ss.ended(call, err)
			return
		}
		ss.answer(call, msg)
	}
}

// answer takes one of the shadow's answers on call: to the request it is
// paired with, as the proxy pairs the model server's (streamCall.answer),
// its last answer the one flagged final or the only one; StreamPredictions'
// answers are all its one request's, until the call ends.
func (ss *shadowStream) answer(call *shadowCall, msg []byte) {
	at := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.once {
		if len(ss.waiting) > 0 {
			r := ss.waiting[0]
			after := at.Sub(r.sent)
			if !r.answered {
				// Its first answer, as the proxy times the model server's
				// (torchStream.answer).
				ss.s.metrics.FirstByte.WithLabelValues(r.m.name).Observe(after.Seconds())
			}
			if firstByte, ok := r.answers.add(after); ok {
				r.firstByte = firstByte // its time per output token runs from it
			}
			r.progress, r.answered = at, true
			ss.keepLocked(r, msg)
		}
		return
	}
	a, ok := payload.ReadStreamResponse(msg)
	if !ok {
		return // nothing to read, as the proxy has it
	}
	if len(a.ID) > 0 {
		call.ids = true
	} else {
		call.noIDs = true
	}
	i := matchAnswer(ss.waiting, a, func(r *mirroredRequest) ([]byte, []byte) { return r.id, r.name })
	if i < 0 {
		return
	}
	r := ss.waiting[i]
	if firstByte, ok := r.answers.add(at.Sub(r.sent)); ok {
		// The first of a decoupled model's several answers, an LLM's
		// first token, as the proxy times the model server's
		// (streamCall.answer).
		r.firstByte = firstByte
		ss.s.metrics.FirstByte.WithLabelValues(r.m.name).Observe(firstByte.Seconds())
	}
	r.progress, r.answered = at, true
	if a.Error == nil && a.Outputs {
		if n, ok := payload.OutputCount(a.Response, "num_output_tokens"); ok {
			r.tokens += n
		}
		ss.keepLocked(r, a.Response)
	}
	if a.Error == nil && a.Final == 0 {
		return // more to come
	}
	ss.waiting = append(ss.waiting[:i], ss.waiting[i+1:]...)
	ss.s.metrics.Duration.WithLabelValues(r.m.name).Observe(at.Sub(r.sent).Seconds())
	if a.Error != nil {
		reason := collector.ErrorUpstream4xx
		if grpcHTTPStatus(streamErrorCode(a)) >= 500 {
			reason = collector.ErrorUpstream5xx
		}
		ss.failLocked(r, reason, fmt.Errorf("the shadow answered an error: %s", a.Error))
	} else {
		ss.shadowDoneLocked(r)
	}
	ss.idleLocked()
}

// ended takes the end of call: a shadow that ended it well has answered
// what it will, and its answers so far are the ones compared; one that
// failed it, or did not answer in time, fails what waited on it.
func (ss *shadowStream) ended(call *shadowCall, err error) {
	at := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	call.err = err
	if ss.cur == call {
		ss.cur = nil
	}
	waiting := ss.waiting
	ss.waiting = nil
	m := ss.s.metrics
	if errors.Is(err, io.EOF) {
		for _, r := range waiting {
			switch {
			case ss.once:
				m.Duration.WithLabelValues(r.m.name).Observe(at.Sub(r.sent).Seconds())
			case r.answered:
				m.Duration.WithLabelValues(r.m.name).Observe(r.progress.Sub(r.sent).Seconds())
			}
			ss.shadowDoneLocked(r)
		}
	} else {
		reason, answered := ss.failure(err, call.timedOut())
		for _, r := range waiting {
			if answered {
				m.Duration.WithLabelValues(r.m.name).Observe(at.Sub(r.sent).Seconds())
			}
			ss.failLocked(r, reason, err)
		}
	}
	call.cancel(nil)
	if ss.closing && ss.timer != nil {
		ss.timer.Stop()
		ss.armed = false
	}
	ss.signal() // the sender may be done
}

// failure is the reason a request counts as when the stream it went on
// failed with err, or did not open, and whether the shadow answered it
// with an error status: as a unary call's (shadowCallReason), but a stream
// that did not open in time, or that was ended for want of answers
// (timedOut), as timeout.
func (ss *shadowStream) failure(err error, timedOut bool) (reason string, answered bool) {
	if timedOut || errors.Is(err, errShadowTimeout) {
		return collector.ErrorTimeout, false
	}
	return shadowCallReason(err, ss.s.q.maxBody)
}

// timedOut reports whether call was ended for want of answers (expire).
func (call *shadowCall) timedOut() bool {
	return errors.Is(context.Cause(call.ctx), errShadowTimeout)
}

// armLocked sets the timer, unless it is set: a request now waits on the
// stream open to the shadow.
func (ss *shadowStream) armLocked() {
	if ss.armed {
		return
	}
	ss.armed = true
	if ss.timer == nil {
		ss.timer = time.AfterFunc(ss.s.timeout, ss.expire)
		return
	}
	ss.timer.Reset(ss.s.timeout)
}

// expire fails each request on the stream open to the shadow that has
// waited --shadow.timeout for its next answer, as timeout, as a streamed
// HTTP answer's wait for its next piece is bounded: the stream goes on,
// and so do the others' answers on it, the late request's own known by
// its id and left unpaired (matchAnswer). When its answers could instead
// be paired by order (it has no id, or the shadow's answers have not all
// carried theirs: pairsByID), they would be taken for the next request's:
// the stream is ended, and every request waiting on it counts as timeout
// (ended). It sets the timer for the next request that will have waited
// too long otherwise.
func (ss *shadowStream) expire() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.armed = false
	call := ss.cur
	if call == nil || len(ss.waiting) == 0 {
		return
	}
	now := time.Now()
	late := func(r *mirroredRequest) bool { return now.Sub(r.progress) >= ss.s.timeout }
	for _, r := range ss.waiting {
		if late(r) && !call.pairsByID(r) {
			call.cancel(errShadowTimeout)
			return
		}
	}
	next := ss.s.timeout
	waiting := ss.waiting[:0]
	for _, r := range ss.waiting {
		if late(r) {
			ss.failLocked(r, collector.ErrorTimeout, errShadowTimeout)
			continue
		}
		waiting = append(waiting, r)
		next = min(next, ss.s.timeout-now.Sub(r.progress))
	}
	clear(ss.waiting[len(waiting):])
	ss.waiting = waiting
	if len(waiting) > 0 {
		ss.armed = true
		ss.timer.Reset(next)
	}
	ss.idleLocked()
}

// idleLocked ends the stream open to the shadow once the client's stream
// has ended and the shadow has answered all that went on it: the shadow
// may keep it open, and nothing more goes on it.
func (ss *shadowStream) idleLocked() {
	if ss.closing && ss.cur != nil && len(ss.queued) == 0 && len(ss.waiting) == 0 {
		ss.cur.cancel(errShadowIdle)
	}
}

// keepLocked makes answer the shadow's answer to r, in place of the one
// kept before, when the capture queue has room for it.
func (ss *shadowStream) keepLocked(r *mirroredRequest, answer []byte) {
	q := ss.s.q
	q.unhold(len(r.shadow))
	r.held -= len(r.shadow)
	r.shadow, r.shadowLost = nil, true
	if q.hold(len(answer)) {
		r.shadow, r.shadowLost = answer, false
		r.held += len(answer)
	}
}

// shadowDoneLocked takes the shadow's answer to r as complete.
func (ss *shadowStream) shadowDoneLocked(r *mirroredRequest) {
	r.shadowDone = true
	if r.modelDone {
		ss.completeLocked(r)
	}
}

// completeLocked queues r, both its answers complete, for the sender to
// hand over, or counts it dropped when a side could not keep its answer.
// Without the model's answer, there is nothing to compare.
func (ss *shadowStream) completeLocked(r *mirroredRequest) {
	r.done = true
	switch {
	case r.modelLost || r.shadowLost:
		ss.s.metrics.Dropped.WithLabelValues(r.m.name).Inc()
		ss.releaseLocked(r)
	case r.model == nil:
		ss.releaseLocked(r)
	default:
		ss.ready = append(ss.ready, r)
		ss.signal()
	}
}

// handOver hands r over to the shadow's senders to compare its answers,
// waiting for one to take it: what waits meanwhile is bounded where it
// enters (add).
func (ss *shadowStream) handOver(r *mirroredRequest) {
	// In flight still, till the sender is done with it.
	ss.s.jobs <- &shadowJob{model: r.m, format: ss.format, grpc: true, buf: r.req, held: r.held,
		stream: &streamAnswers{model: r.model, shadow: r.shadow, id: r.labelID,
			timing: answerTiming{elapsed: r.progress.Sub(r.sent), firstByte: r.firstByte, outputTokens: r.tokens}}}
}

// failLocked counts r failed by the shadow, for reason.
func (ss *shadowStream) failLocked(r *mirroredRequest, reason string, err error) {
	r.done = true
	ss.s.fail(r.m, reason, err)
	ss.releaseLocked(r)
}

// releaseLocked gives back what r held: it is done with.
func (ss *shadowStream) releaseLocked(r *mirroredRequest) {
	ss.s.q.unhold(r.held)
	r.held = 0
	ss.s.inFlight.Add(-1)
}

// shadowMD is the metadata of md that goes to the shadow, as
// appendShadowCall keeps it for a unary call.
func shadowMD(md metadata.MD) metadata.MD {
	out := metadata.MD{}
	for k, vs := range md {
		if !grpcOwned(k) {
			out[k] = append([]string(nil), vs...)
		}
	}
	return out
}

// matchAnswer is the index among pending of the request a ModelStreamInfer
// answer r is for, -1 for none: the one with its id (names gives a
// request's id and the model it names); an answer without one (a server
// that does not echo ids), the oldest of its model, else the oldest.
func matchAnswer[T any](pending []T, r payload.StreamResponse, names func(T) (id, model []byte)) int {
	if len(r.ID) > 0 {
		for i, p := range pending {
			if id, _ := names(p); bytes.Equal(id, r.ID) {
				return i
			}
		}
		return -1 // closed already
	}
	for i, p := range pending {
		if _, model := names(p); len(r.Model) == 0 || bytes.Equal(model, r.Model) {
			return i
		}
	}
	if len(pending) > 0 {
		return 0
	}
	return -1
}

// compareStream compares the answers to a request of a streamed call, both
// received: the model's is parsed for its predictions first, as the parser
// parsed it for the capture. The shadow's time per output token is told
// as the parser tells the model's, from its stream's timing.
func (sd *shadowSender) compareStream(j *shadowJob) {
	s, m := sd.s, j.model
	rc := s.config()
	mc := rc.models[m.name]
	p := sd.parsers.get(m.name, mc, rc)
	if err := p.Parse(j.format, j.buf, j.stream.model, &sd.batch); err != nil || len(sd.batch.Records) == 0 {
		// Nothing to compare: the parser counted why.
		s.logger.Debug("Shadow prediction not compared: the model's answer gives none", "model", m.name, "err", err)
		return
	}
	if j.stream.shadow == nil {
		sd.fail(m, collector.ShadowInvalidPayload, errors.New("the shadow's answers carry no outputs"))
		return
	}
	j.preds = make([]shadowPrediction, len(sd.batch.Records))
	for i := range sd.batch.Records {
		j.preds[i] = readShadowPrediction(mc.classes, &sd.batch.Records[i])
	}
	sd.compare(j, j.buf, j.stream.shadow, j.stream.timing)
}
