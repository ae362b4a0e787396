package exporter

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/quality"
)

// capture is one request/response pair copied off the hot path for parsing.
type capture struct {
	model   *model
	format  payload.Format
	enc     bodyEncodings
	timing  answerTiming
	buf     []byte // request body, response body, the prediction id, then the shadow header
	reqLen  int
	respLen int
	// hdrLen is the length of the request's header when the request is
	// to be mirrored to the shadow model server (mirror), or its headers go
	// into the payload log's metadata, else 0. A gRPC call's (format.GRPC)
	// is its method and metadata (appendShadowCall), when mirrored.
	hdrLen int
	mirror bool
	kind   captureKind
}

// captureKind says what a capture holds.
type captureKind uint8

const (
	// capturePrediction: a prediction's request and its answer.
	capturePrediction captureKind = iota
	// captureFeedback: Seldon Core 1's feedback, whose truth is labels
	// (worker.feedback), not a prediction.
	captureFeedback
	// captureFailed: the request of a prediction that failed, captured for
	// the payload log alone (as KServe's logger logs it), not parsed.
	captureFailed
)

// id is the prediction id the capture came with.
func (c *capture) id() []byte { return c.buf[c.reqLen+c.respLen : len(c.buf)-c.hdrLen] }

// header is the request's header, when the capture keeps it: nil unless the
// request is to be mirrored or its headers are logged.
func (c *capture) header() []byte {
	if c.hdrLen == 0 {
		return nil
	}
	return c.buf[len(c.buf)-c.hdrLen:]
}

// answerTiming is when the answer of a capture came: its last byte and, for
// a streamed one, its first byte of body, after the request (0: not
// streamed). outputTokens is what the answers of a gRPC stream say they
// add up to, when only the last is captured (0: they don't say).
type answerTiming struct {
	elapsed, firstByte time.Duration
	outputTokens       int64
}

var capturePool = sync.Pool{New: func() any { return new(capture) }}

// queue is the bounded hand-off between the proxy and the parsers. The proxy
// never waits on it: when it is full, or over its byte budget, the capture is
// dropped and counted.
type queue struct {
	ch    chan *capture
	bytes atomic.Int64
	// enqueued and handled count captures in and out, so tests and Stop can
	// tell when everything offered has been parsed.
	enqueued, handled atomic.Int64
	maxBytes          int64
	maxBody           int
	full, tooLarge    *warning // captures dropped, logged
}

func newQueue(size int, maxBytes int64, maxBody int, logger *slog.Logger) *queue {
	return &queue{
		ch: make(chan *capture, size), maxBytes: maxBytes, maxBody: maxBody,
		full:     newWarning(logger, "Capture queue full: payloads are proxied but not parsed, so drift and quality miss them; raise --capture.workers or --capture.max-queue-bytes"),
		tooLarge: newWarning(logger, "Payload larger than --capture.max-body-size: proxied but not parsed"),
	}
}

// offer copies the bodies and enqueues them, or counts why it did not.
// hdr is the request's header when it is to be mirrored to the shadow model
// server (mirror) or its headers logged, else nil.
func (q *queue) offer(m *model, f payload.Format, enc bodyEncodings, t answerTiming, req, resp, id, hdr []byte, mirror bool) {
	q.offerCapture(capturePrediction, m, f, enc, t, req, resp, id, hdr, mirror)
}

// offerFailed is offer for the request of a failed prediction, for the
// payload log (captureFailed).
func (q *queue) offerFailed(m *model, f payload.Format, enc contentEncoding, req, id, hdr []byte) {
	q.offerCapture(captureFailed, m, f, bodyEncodings{req: enc}, answerTiming{}, req, nil, id, hdr, false)
}

// offerFeedback is offer for the body of a Seldon feedback request (f
// FormatSeldon, or FormatSeldonGRPC for a SendFeedback call's message), and
// the id header it came with.
func (q *queue) offerFeedback(m *model, f payload.Format, enc bodyEncodings, body, id []byte) {
	q.offerCapture(captureFeedback, m, f, enc, answerTiming{}, body, nil, id, nil, false)
}

func (q *queue) offerCapture(kind captureKind, m *model, f payload.Format, enc bodyEncodings, t answerTiming, req, resp, id, hdr []byte, mirror bool) {
	n := len(req) + len(resp) + len(id) + len(hdr)
	if len(req) > q.maxBody || len(resp) > q.maxBody {
		q.dropTooLarge(m)
		return
	}
	if !q.hold(n) {
		q.dropFull(m)
		return
	}
	c := capturePool.Get().(*capture)
	c.model, c.format, c.enc, c.timing, c.reqLen, c.respLen, c.hdrLen, c.mirror, c.kind = m, f, enc, t, len(req), len(resp), len(hdr), mirror, kind
	c.buf = append(append(append(append(c.buf[:0], req...), resp...), id...), hdr...)
	q.enqueued.Add(1)
	select {
	case q.ch <- c:
	default:
		q.enqueued.Add(-1)
		q.bytes.Add(-int64(n))
		q.release(c)
		q.dropFull(m)
	}
}

// hold takes n bytes of the queue's budget for a message a gRPC stream
// keeps until its prediction is captured, so that the streams' messages and
// the captures waiting share --capture.max-queue-bytes. False when there is
// no room: the message is not kept.
func (q *queue) hold(n int) bool {
	if q.bytes.Add(int64(n)) > q.maxBytes {
		q.bytes.Add(-int64(n))
		return false
	}
	return true
}

// unhold gives back what hold took.
func (q *queue) unhold(n int) { q.bytes.Add(-int64(n)) }

// drop counts a capture dropped for reason: one of collector.DropQueueFull
// and collector.DropBodyTooLarge.
func (q *queue) drop(m *model, reason string) {
	if reason == collector.DropQueueFull {
		q.dropFull(m)
		return
	}
	q.dropTooLarge(m)
}

// dropFull counts a capture dropped because the parsers are behind.
func (q *queue) dropFull(m *model) {
	m.dropped[collector.DropQueueFull].Inc()
	q.full.warn(func() []any { return []any{"model", m.name, "queue_size", cap(q.ch), "max_queue_bytes", q.maxBytes} })
}

// dropTooLarge counts a capture dropped because a body is over
// --capture.max-body-size.
func (q *queue) dropTooLarge(m *model) {
	m.dropped[collector.DropBodyTooLarge].Inc()
	q.tooLarge.warn(func() []any { return []any{"model", m.name, "max_body_size", q.maxBody} })
}

func (q *queue) release(c *capture) {
	c.model = nil
	if cap(c.buf) > 1<<20 {
		c.buf = nil // don't let one huge body pin memory in the pool
	}
	capturePool.Put(c)
}

func (q *queue) stats() collector.QueueStats {
	return collector.QueueStats{Length: len(q.ch), Capacity: cap(q.ch), Bytes: q.bytes.Load(), MaxBytes: q.maxBytes}
}

// worker parses captures until the queue is closed.
type worker struct {
	q       *queue
	obs     *observer
	parsers parserCache
	batch   payload.Batch
	logger  *slog.Logger
	// batchDelay is the pause after draining the queue.
	batchDelay time.Duration
	// idParser and idBuf read ids from bodies (models[].id_path).
	idParser fastjson.Parser
	idBuf    []byte
	// codec decodes compressed bodies.
	codec fasthttp.Response
	// feedbackParser reads Seldon's feedback, with no feature names.
	feedbackParser *payload.Parser
	// shadow takes the requests to mirror; nil without --shadow.upstream
	// and --shadow.grpc-upstream.
	shadow *shadow
	// payloadLog sends the bodies on; nil without --payload-log.url.
	payloadLog *payloadLog
}

func (w *worker) run() {
	for c := range w.q.ch {
		// A capture readies the parser as the next goroutine to run: ahead
		// of the proxy goroutines the same network poll woke, which would
		// wait for it. Yield first, so that the burst is proxied, then
		// parsed in one go: the captures offered meanwhile find no parser
		// to wake, and parsing no longer adds to the burst's latency.
		runtime.Gosched()
		w.done(c)
		// Drain what else is queued, then, with a batch delay, pause so that
		// the next wake-up finds a batch: the parser then wakes once per
		// batchDelay instead of once per capture. Without one (the default)
		// it parks on the channel until the next capture.
		for {
			select {
			case c, ok := <-w.q.ch:
				if !ok {
					return
				}
				w.done(c)
				continue
			default:
			}
			break
		}
		if w.batchDelay > 0 {
			time.Sleep(w.batchDelay)
		}
	}
}

func (w *worker) done(c *capture) {
	w.handle(c)
	w.q.bytes.Add(-int64(len(c.buf)))
	w.q.release(c)
	w.q.handled.Add(1)
}

func (w *worker) handle(c *capture) {
	defer func() {
		if r := recover(); r != nil {
			w.obs.metrics.PayloadErrors.WithLabelValues(c.model.name, "internal_error").Inc()
			w.logger.Error("Recovered from a panic while parsing a payload", "model", c.model.name, "panic", r)
		}
	}()
	req, resp := c.buf[:c.reqLen], c.buf[c.reqLen:c.reqLen+c.respLen]
	if c.enc != (bodyEncodings{}) {
		var err error
		if req, resp, err = w.decode(c, req, resp); err != nil {
			return
		}
	}
	if c.kind == captureFeedback {
		w.feedback(c, req)
		return
	}
	rc := w.obs.config()
	mc := rc.models[c.model.name]
	f := c.format
	// models[].format names an HTTP body's format; a gRPC call's messages
	// are in the one its method gives, whatever the model's HTTP bodies are.
	if mc.format != payload.FormatUnknown && !c.format.GRPC() {
		f = mc.format
	}
	if w.payloadLog != nil {
		w.payloadLog.log(c, f, req, resp)
	}
	if c.kind == captureFailed {
		return
	}
	p := w.parsers.get(c.model.name, mc, rc)
	err := p.Parse(f, req, resp, &w.batch)
	if err != nil {
		reason := "invalid_json"
		var pe *payload.Error
		if errors.As(err, &pe) {
			reason = string(pe.Reason)
		}
		w.obs.metrics.PayloadErrors.WithLabelValues(c.model.name, reason).Inc()
		w.logger.Debug("Could not parse payload", "model", c.model.name, "format", f.String(), "err", err)
	}
	if w.batch.Generation.Answered {
		if c.timing.outputTokens > 0 {
			w.batch.Generation.OutputTokens = c.timing.outputTokens
		}
		c.model.countGeneration(w.batch.Generation, w.batch.Records, c.timing)
	}
	if len(w.batch.Records) > 0 {
		c.model.parsedCounter(w.batch.Format).Inc()
		w.obs.observe(c.model, mc, w.batch.Generation.Answered, w.batch.Records)
		var id []byte
		if w.obs.labels != nil {
			id = c.id()
			if mc.idPath != nil {
				if x := w.bodyID(req, mc.idPath); x != nil {
					id = x
				} else if x := w.bodyID(resp, mc.idPath); x != nil {
					id = x
				}
			}
			if len(id) > 0 {
				w.obs.labels.observe(w.obs.now(), c.model.name, id, mc, w.batch.Records)
			}
		}
		if hdr := c.header(); hdr != nil && c.mirror && w.shadow != nil && err == nil {
			w.shadow.offer(c.model, mc, f, c.format.GRPC(), c.enc.req, hdr, c.buf[:c.reqLen], id, w.batch.Records)
		}
	}
}

// feedback reads a Seldon Core 1 feedback request: its reward goes to
// modelmon_feedback_reward, and its truth, with --labels.enabled, gives
// labels of the prediction it names: the id Seldon gave it (its answer's
// meta.puid), else the request's id header; instance i of a truth of n > 1
// labels "<id>/<i>", as observe names the instances of a batch. A feedback
// that can't be read counts in modelmon_payload_errors_total, a truth that
// can't be a label in modelmon_labels_rejected_total.
func (w *worker) feedback(c *capture, body []byte) {
	if w.feedbackParser == nil {
		w.feedbackParser = payload.NewParser(payload.Options{})
	}
	read := w.feedbackParser.SeldonFeedback
	if c.format == payload.FormatSeldonGRPC {
		read = w.feedbackParser.SeldonFeedbackGRPC
	}
	fb, err := read(body, &w.batch)
	if err != nil {
		reason := payload.ReasonInvalidJSON
		var pe *payload.Error
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		w.obs.metrics.PayloadErrors.WithLabelValues(c.model.name, string(reason)).Inc()
		w.logger.Debug("Could not read Seldon feedback", "model", c.model.name, "format", c.format.String(), "err", err)
		return
	}
	w.obs.metrics.FeedbackReward.WithLabelValues(c.model.name).Observe(fb.Reward)
	l := w.obs.labels
	if l == nil || !fb.Truth {
		return
	}
	reject := func(reason string, err error) {
		l.metrics.rejected.WithLabelValues(reason).Inc()
		w.logger.Debug("Could not take a label from Seldon feedback", "model", c.model.name, "reason", reason, "err", err)
	}
	id := fb.Puid
	if len(id) == 0 {
		id = c.id()
	}
	if len(id) == 0 {
		reject(rejectMissingID, errors.New("the feedback has no response.meta.puid and no id header"))
		return
	}
	now := w.obs.now()
	askPeers := l.peers.active()
	var unknown []quality.Label
	for i, r := range w.batch.Records {
		lb := quality.Label{ID: string(id), Time: now}
		if len(w.batch.Records) > 1 {
			lb.ID += "/" + strconv.Itoa(i)
		}
		v, ok := truthValue(r)
		if !ok {
			reject(rejectInvalidLabel, fmt.Errorf("truth %d is not one class or finite number", i))
			continue
		}
		lb.Value = v
		if !askPeers {
			l.labelHere(now, lb)
		} else if _, known := l.labelKnown(now, lb); !known {
			unknown = append(unknown, lb)
		}
	}
	if len(unknown) > 0 {
		// The feedback may be about a prediction another replica made.
		l.forward(unknown, func(answers []peerAnswer) {
			for i, a := range answers {
				if a != answerFound {
					l.labelHere(now, unknown[i])
				}
			}
		})
	}
}

// truthValue is the label an instance of Seldon's truth holds: its one
// value, a class (string or boolean) or a finite number.
func truthValue(r payload.Record) (quality.Value, bool) {
	if len(r.Features) != 1 {
		return quality.Value{}, false
	}
	switch v := r.Features[0].Value; v.Kind {
	case payload.KindNumber:
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			return quality.Value{}, false
		}
		return quality.Number(v.Num), true
	case payload.KindString:
		return quality.Class(labelValue(v.Str)), len(v.Str) > 0
	case payload.KindBool:
		return quality.Class(strconv.FormatBool(v.Num != 0)), true
	}
	return quality.Value{}, false
}

// decode decodes the compressed bodies of c, or counts why it can't: a
// coding that is unknown or does not decode is a payload error, a body over
// --capture.max-body-size once decoded a capture dropped as too large.
func (w *worker) decode(c *capture, req, resp []byte) (dreq, dresp []byte, err error) {
	if dreq, err = decode(&w.codec, c.enc.req, req, w.q.maxBody); err == nil {
		dresp, err = decode(&w.codec, c.enc.resp, resp, w.q.maxBody)
	}
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		w.q.dropTooLarge(c.model)
	case err != nil:
		w.obs.metrics.PayloadErrors.WithLabelValues(c.model.name, reasonContentEncoding).Inc()
		w.logger.Debug("Could not decode payload", "model", c.model.name, "request_encoding", c.enc.req, "response_encoding", c.enc.resp)
	}
	return dreq, dresp, err
}

// reasonContentEncoding counts in modelmon_payload_errors_total the bodies
// whose Content-Encoding is unknown or does not decode.
const reasonContentEncoding = "content_encoding"

// bodyID returns the string or number at path in a JSON body, or nil. The
// result is valid until the next call.
func (w *worker) bodyID(body []byte, path []string) []byte {
	v, err := w.idParser.ParseBytes(body)
	if err != nil {
		return nil
	}
	v = v.Get(path...)
	if v == nil {
		return nil
	}
	switch v.Type() {
	case fastjson.TypeString:
		return v.GetStringBytes()
	case fastjson.TypeNumber:
		return v.MarshalTo(w.idBuf[:0])
	}
	return nil
}

// parserEntry is a parser and the options it was built with.
type parserEntry struct {
	p    *payload.Parser
	opts payload.Options
}

// parserCache keeps a parser per model, for its feature names. It is not
// safe for concurrent use: each goroutine that parses has its own.
type parserCache map[string]parserEntry

// get returns the parser for a model, rebuilt when the model's configured
// feature names or the limits change on reload.
func (pc parserCache) get(name string, mc modelConfig, rc *runtimeConfig) *payload.Parser {
	// The parser's own feature cap stays at its default: limits.max_features
	// caps label values, and features past it still count under __other__.
	opts := payload.Options{
		FeatureNames: mc.featureNames,
		MaxInstances: rc.cfg.Limits.MaxInstances,
	}
	e, ok := pc[name]
	if !ok || !sameStrings(e.opts.FeatureNames, opts.FeatureNames) ||
		e.opts.MaxInstances != opts.MaxInstances || e.opts.MaxFeatures != opts.MaxFeatures {
		e = parserEntry{p: payload.NewParser(opts), opts: opts}
		pc[name] = e
	}
	return e.p
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// observer turns parsed or pushed records into metrics and drift windows. It
// is safe for concurrent use.
type observer struct {
	metrics *collector.Metrics
	config  func() *runtimeConfig
	drift   *driftConfig
	labels  *labels // nil unless labels are enabled
	now     func() time.Time
	logger  *slog.Logger
	// unnamedClass logs predictions whose class a categorical drift
	// reference can't be given (driftState.predictedClass).
	unnamedClass *warning
}

// observe counts the predictions of one payload, by class or score as mc
// reads them (unless generated is set: a generative model's finish reasons
// are counted apart), checks their features and adds them to the model's
// drift windows.
func (o *observer) observe(m *model, mc modelConfig, generated bool, recs []payload.Record) {
	m.predictions.Add(float64(len(recs)))
	max := o.config().cfg.Limits.MaxFeatures
	m.mu.Lock()
	defer m.mu.Unlock()
	// Only drift windows need the time: don't read the clock without them.
	var now time.Time
	if m.drift != nil || m.learn != nil {
		now = o.now()
	}
	for i := range recs {
		rec := &recs[i]
		if !generated {
			m.countRecordLocked(mc, rec)
		}
		ds := m.drift
		if ds != nil {
			ds.epoch++
		}
		for j := range rec.Features {
			ft := &rec.Features[j]
			f := m.featureAtLocked(j, ft.Name, max)
			var reason string
			if ds != nil {
				if k := ds.indexOf(f); k >= 0 {
					reason = ds.add(k, now, ft.Value)
					if reason != "" {
						f.countInvalid(m, reason)
					}
					ds.multivariate(k, ft.Value)
					continue
				}
			}
			switch v := ft.Value; {
			case v.Kind == payload.KindMissing:
				reason = collector.InvalidMissing
			case v.Kind == payload.KindNumber && math.IsNaN(v.Num):
				reason = collector.InvalidNaN
			case v.Kind == payload.KindNumber && math.IsInf(v.Num, 0):
				reason = collector.InvalidInf
			}
			if reason != "" {
				f.countInvalid(m, reason)
			}
		}
		if ds != nil {
			o.closeRecord(m, ds, mc.classes, rec, now)
			continue
		}
		if m.learn != nil {
			if m.learn.add(rec, mc.classes) {
				// Not guessed, as the live windows don't (closeRecord).
				m.featureNamedLocked(PredictionColumn).countInvalid(m, collector.InvalidUnnamedClass)
				o.unnamedClass.warn(func() []any {
					return []any{"model", m.name, "feature", PredictionColumn, "scores", len(rec.Scores),
						"hint", "set models[].classes to the classes of the model's probability vector, in its order"}
				})
			}
			if m.learn.n >= m.learn.target {
				o.finishLearning(m)
			}
		}
	}
}

// closeRecord counts the features of the profile the record lacked as
// missing, and the record's prediction.
func (o *observer) closeRecord(m *model, ds *driftState, classes []string, rec *payload.Record, now time.Time) {
	if ds.pred >= 0 {
		reason := ""
		if class, named := ds.predictedClass(classes, rec); !named {
			reason = ds.add(ds.pred, now, rec.Prediction)
		} else if class == "" {
			// Not guessed: counted, and said once.
			ds.seen[ds.pred] = ds.epoch
			reason = collector.InvalidUnnamedClass
			o.unnamedClass.warn(func() []any {
				return []any{"model", m.name, "feature", ds.profile.Features[ds.pred].Name, "scores", len(rec.Scores),
					"hint", "set models[].classes to the classes of the model's probability vector, in its order"}
			})
		} else {
			reason = ds.addClass(ds.pred, now, class)
		}
		if reason != "" {
			// Under the profile's name for the prediction, as its drift
			// gauges and `exporter drift` name it: the column the
			// training data held it in ("__prediction__" in a learned
			// profile).
			ds.featureLocked(m, ds.pred).countInvalid(m, reason)
		}
	}
	if ds.mv != nil {
		// The record's reconstruction error, from the values it gave (the
		// others count as the reference's means), checked as any value
		// is: one above the reference's range is a record unlike all of
		// its rows. A record without any has none, and no missing value
		// either: its features' own windows count what it lacked.
		if ds.mvN > 0 {
			if reason := ds.add(ds.mvErr, now, payload.Value{Kind: payload.KindNumber, Num: ds.mv.Error(ds.mvX)}); reason != "" {
				ds.featureLocked(m, ds.mvErr).countInvalid(m, reason)
			}
		} else {
			ds.seen[ds.mvErr] = ds.epoch
		}
		ds.resetRecord()
	}
	for k, seen := range ds.seen {
		if seen == ds.epoch || k == ds.pred {
			continue
		}
		if reason := ds.add(k, now, payload.Value{}); reason != "" {
			ds.featureLocked(m, k).countInvalid(m, reason)
		}
	}
}

// finishLearning freezes what the model's learner collected into its
// reference. The caller holds m.mu.
func (o *observer) finishLearning(m *model) {
	l := m.learn
	m.learn = nil
	ds, err := o.drift.learned(m.name, l)
	if err != nil {
		o.logger.Error("Could not learn a drift reference", "model", m.name, "records", l.n, "err", err)
		return
	}
	m.drift = ds
	o.logger.Info("Learned a drift reference", "model", m.name, "records", l.n, "features", len(ds.profile.Features))
}
