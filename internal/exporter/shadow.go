package exporter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// ShadowOptions configure the mirroring of predictions to a shadow model
// server: a candidate model that gets a sample of the real requests, whose
// answers are compared with the model's and thrown away.
type ShadowOptions struct {
	// Upstream is the shadow model server's base URL, http or https; empty
	// mirrors no HTTP prediction.
	Upstream string
	// GRPCUpstream is the URL of the shadow's gRPC endpoint, http
	// (cleartext HTTP/2) or https; empty mirrors no gRPC prediction. The
	// gRPC proxy's unary prediction calls are mirrored to it, and the
	// requests of its streamed ones (shadowstream.go).
	GRPCUpstream string
	// SampleRatio is the share of the captured predictions mirrored, in
	// (0, 1].
	SampleRatio float64
	// Timeout bounds a mirrored request's round trip, or each read of a
	// streamed answer, as ProxyOptions.Timeout the model server's; a gRPC
	// stream's request, each wait for its next answer (shadowstream.go).
	Timeout time.Duration
	// Concurrency is the number of mirrored requests sent at once; as many
	// again may wait, and more are dropped. The comparisons of streams'
	// answers take the same senders, and wait for them.
	Concurrency int
	// MaxPending bounds the shadow's predictions waiting for their label,
	// with labels on.
	MaxPending int
	// Models are the models whose predictions are mirrored; empty mirrors
	// every model's.
	Models []string
	// TLS configures the connections to an https shadow, HTTP or gRPC, as
	// ProxyOptions.TLS those to the model server: the --shadow.* TLS flags.
	TLS promconfig.TLSConfig
}

// shadow mirrors sampled predictions to the shadow model server, off the
// hot path: the proxy only decides whether a request is sampled and copies
// its header with its bodies into the capture (the gRPC proxy its method
// and metadata with its messages); the parser that parses the model's
// answer (a streamed one's, once the stream has ended) hands the request on
// to the shadow's senders, which send it, read the shadow's answer (a
// streamed one piece by piece: readStream), parse it the same way and
// compare the two; a gRPC stream's
// requests go to the shadow as they come, on a stream of their own
// (shadowstream.go). Nothing of it reaches the client or waits for it.
type shadow struct {
	client  *fasthttp.HostClient // nil without --shadow.upstream
	rt      *transport           // the round trip on its connections, the proxy's
	host    string
	conn    *grpc.ClientConn // nil without --shadow.grpc-upstream
	models  map[string]bool  // nil: every model
	ratio   float64
	timeout time.Duration
	jobs    chan *shadowJob
	q       *queue // its byte budget bounds the requests waiting here too
	config  func() *runtimeConfig
	metrics collector.ShadowMetrics
	logger  *slog.Logger
	failing *warning
	wg      sync.WaitGroup
	// streams are the goroutines of the streams mirrored (shadowstream.go),
	// which hand over to the senders until they end.
	streams sync.WaitGroup
	closed  sync.Once
	// inFlight counts the requests handed over and not yet done with, so
	// that tests can tell when every one has been compared.
	inFlight atomic.Int64
	// pending keeps the shadow's predictions for their labels; nil without
	// labels.
	pending *shadowPending
	now     func() time.Time
	// overflow counts the classes of modelmon_shadow_class_pairs_total
	// replaced by __other__ (countClassPair).
	overflow prometheus.Counter
}

// shadowJob is one request to mirror and what the model answered to it.
type shadowJob struct {
	model  *model
	format payload.Format
	enc    contentEncoding // of the request body
	// buf is the request's header, its body as sent, then the prediction
	// id; for a gRPC call (grpc), its method and metadata
	// (appendShadowCall), its request message, then the id.
	buf    []byte
	grpc   bool
	hdrLen int
	idLen  int
	// held is what it holds of the capture queue's budget.
	held int
	// preds are the model's predictions, one per record.
	preds []shadowPrediction
	// stream, for a request of a streamed gRPC call (shadowstream.go),
	// holds both answers, the shadow's received already; buf is then the
	// request message alone.
	stream *streamAnswers
}

// streamAnswers are the model's and the shadow's answers to a request of a
// streamed call, its prediction id for labels, and when the shadow's
// answers came: its first and its last, after the request was sent, and
// the output tokens they add up to.
type streamAnswers struct {
	model, shadow, id []byte
	timing            answerTiming
}

// id is j's prediction id for labels, nil when it has none.
func (j *shadowJob) id() []byte {
	if j.stream != nil {
		return j.stream.id
	}
	return j.buf[len(j.buf)-j.idLen:]
}

// shadowPrediction is what a record predicts, as the comparison reads it.
type shadowPrediction struct {
	class   string
	isClass bool
	// x is a regression's value or a binary classifier's score.
	x   float64
	isX bool
}

// newShadow returns the shadow of o. maxBody bounds its HTTP answers, as
// --proxy.max-body-size the model server's; what it keeps of them to parse,
// --capture.max-body-size (q's), as the capture of the model server's.
// With raw, its connections make raw system calls, as the proxy's
// (--proxy.raw-syscalls).
func newShadow(o ShadowOptions, raw bool, q *queue, maxBody int, config func() *runtimeConfig, m collector.ShadowMetrics, overflow prometheus.Counter, now func() time.Time, logger *slog.Logger) (*shadow, error) {
	if !(o.SampleRatio > 0 && o.SampleRatio <= 1) {
		return nil, fmt.Errorf("--shadow.sample-ratio must be in (0, 1], not %v", o.SampleRatio)
	}
	if o.Concurrency < 1 {
		return nil, fmt.Errorf("--shadow.concurrency must be at least 1, not %d", o.Concurrency)
	}
	if o.Timeout <= 0 {
		return nil, fmt.Errorf("--shadow.timeout must be positive, not %v", o.Timeout)
	}
	if o.MaxPending < 1 {
		return nil, fmt.Errorf("--shadow.max-pending must be at least 1, not %d", o.MaxPending)
	}
	var models map[string]bool
	for _, name := range o.Models {
		if name == "" {
			return nil, errors.New("--shadow.model must not be empty")
		}
		if models == nil {
			models = map[string]bool{}
		}
		models[name] = true
	}
	s := &shadow{
		models:   models,
		ratio:    o.SampleRatio,
		timeout:  o.Timeout,
		jobs:     make(chan *shadowJob, o.Concurrency),
		q:        q,
		config:   config,
		metrics:  m,
		now:      now,
		overflow: overflow,
		logger:   logger,
		failing:  newWarning(logger, "Requests to the shadow model server fail: its predictions are not compared (modelmon_shadow_errors_total counts each by reason); the model's clients are not affected"),
	}
	if o.Upstream != "" {
		u, addr, err := parseUpstream("--shadow.upstream", o.Upstream)
		if err != nil {
			return nil, err
		}
		s.client, s.host = transparentClient(addr, u.Scheme == "https", o.Concurrency, o.Timeout, raw), u.Host
		if u.Scheme == "https" {
			if s.client.TLSConfig, err = upstreamTLS(o.TLS, "--shadow.", "--shadow.upstream", o.Upstream, u.Hostname(), logger); err != nil {
				return nil, err
			}
		}
		// The proxy's round trip: an answer of known length within the
		// capture is read whole, any other comes as a stream, read piece
		// by piece (readStream).
		s.rt = &transport{timeout: o.Timeout, bufferMax: q.maxBody, maxBody: maxBody, logger: logger}
	}
	if o.GRPCUpstream != "" {
		var err error
		// Its answers up to what the parser would parse; the requests were
		// captured, so they are no larger. grpc-go's transparent retries of
		// its calls are counted, by the model of each (transparentRetries,
		// withRetries).
		if s.conn, _, err = dialGRPC("--shadow.grpc-upstream", o.GRPCUpstream, "--shadow.", o.TLS, q.maxBody, new(connWatch), logger,
			grpc.WithStatsHandler(transparentRetries{})); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// sample reports whether to mirror a prediction of model m, which the
// request names name (modelNamed). --shadow.model names a model as its
// clients do: one past limits.max_models, whose predictions count under
// __other__ with the others past it, or one whose name was cut to a label
// value, is mirrored by its name, and its shadow metrics carry m's label.
// It runs on the hot path, of the HTTP proxy and of the gRPC proxy's unary
// calls and streams.
func (s *shadow) sample(m *model, name []byte) bool {
	if s.models != nil && !s.models[m.name] && (m.name == string(name) || !s.models[string(name)]) {
		return false
	}
	return s.ratio >= 1 || rand.Float64() < s.ratio
}

// initModel creates m's shadow counters at 0 when its predictions are
// mirrored, the failures by each reason, as newModel creates the model's
// own: a counter whose labels are known is exported from the start, so
// that rate() and increase() see its first mirrored request. It runs as m
// is made known: a model of the configuration before any traffic, another
// when traffic names it. A model is told mirrored by its label here, as a
// request's is by its name (sample): one mirrored by the name its clients
// gave past limits.max_models shows its counters at its first request.
func (s *shadow) initModel(m *model) {
	if s.models != nil && !s.models[m.name] {
		return
	}
	sm := s.metrics
	for _, c := range []*prometheus.CounterVec{sm.Requests, sm.Predictions, sm.Disagreements, sm.Dropped, sm.Retries} {
		c.WithLabelValues(m.name)
	}
	for _, r := range collector.ShadowErrorReasons {
		sm.Errors.WithLabelValues(m.name, r)
	}
}

// start starts the senders.
func (s *shadow) start(n int) {
	for range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sd := shadowSender{s: s, parsers: parserCache{}}
			for j := range s.jobs {
				sd.send(j)
				s.q.unhold(j.held)
				s.inFlight.Add(-1)
			}
		}()
	}
}

// stop sends what waits, once no parser and no client stream hands over
// any more, and stops the senders once the streams mirrored have ended.
func (s *shadow) stop() {
	s.streams.Wait()
	s.closed.Do(func() { close(s.jobs) })
	s.wg.Wait()
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	if s.conn != nil {
		s.conn.Close()
	}
}

// offer hands a request the model has answered (its header, its body as
// sent with Content-Encoding enc, its prediction id for labels, and recs,
// the records parsed from it and the model's answer) to the senders, or
// counts it dropped when they are behind. A gRPC call's (isGRPC) header is
// its method and metadata (appendShadowCall), its body its request
// message. It runs in a parser and does not wait.
func (s *shadow) offer(m *model, mc modelConfig, f payload.Format, isGRPC bool, enc contentEncoding, hdr, body, id []byte, recs []payload.Record) {
	if s.pending == nil {
		id = nil
	}
	n := len(hdr) + len(body) + len(id)
	if !s.q.hold(n) {
		s.metrics.Dropped.WithLabelValues(m.name).Inc()
		return
	}
	j := &shadowJob{model: m, format: f, grpc: isGRPC, enc: enc, hdrLen: len(hdr), idLen: len(id), held: n, preds: make([]shadowPrediction, len(recs))}
	j.buf = append(append(append(make([]byte, 0, n), hdr...), body...), id...)
	for i := range recs {
		j.preds[i] = readShadowPrediction(mc.classes, &recs[i])
	}
	s.inFlight.Add(1)
	select {
	case s.jobs <- j:
	default:
		s.inFlight.Add(-1)
		s.q.unhold(n)
		s.metrics.Dropped.WithLabelValues(m.name).Inc()
	}
}

// readShadowPrediction reads what a record predicts, as readPrediction
// reads it for the label join.
func readShadowPrediction(classes []string, r *payload.Record) shadowPrediction {
	var binary [2]float64
	pv, ok := readPrediction(classes, r, &binary)
	if !ok {
		return shadowPrediction{}
	}
	sp := shadowPrediction{isClass: pv.isClass}
	if pv.isClass {
		sp.class = pv.className()
	}
	sp.x, sp.isX = pv.numeric()
	return sp
}

// shadowSender sends mirrored requests one at a time.
type shadowSender struct {
	s       *shadow
	parsers parserCache
	batch   payload.Batch
	codec   fasthttp.Response
	req     fasthttp.Request
	resp    fasthttp.Response
	// hr and br read a request's header back.
	hr bytes.Reader
	br *bufio.Reader
	// piece is what a streamed answer is read into (readStream).
	piece []byte
}

// errShadowHeader is a mirrored request's header that does not read back;
// it would be a bug.
var errShadowHeader = errors.New("the request's header could not be read back")

// send mirrors j's request and compares the shadow's answer.
func (sd *shadowSender) send(j *shadowJob) {
	s := sd.s
	m := j.model
	defer func() {
		if r := recover(); r != nil {
			s.metrics.Errors.WithLabelValues(m.name, collector.ErrorInvalidResponse).Inc()
			s.logger.Error("Recovered from a panic while comparing a shadow prediction", "model", m.name, "panic", r)
		}
	}()
	if j.stream != nil {
		sd.compareStream(j) // shadowstream.go
		return
	}
	hdr, body := j.buf[:j.hdrLen], j.buf[j.hdrLen:len(j.buf)-j.idLen]
	if j.grpc {
		sd.call(j, hdr, body) // shadowgrpc.go
		return
	}
	sd.sendHTTP(j, hdr, body)
}

// sendHTTP sends a mirrored HTTP request, its header and body as sent.
func (sd *shadowSender) sendHTTP(j *shadowJob, hdr, body []byte) {
	s, m := sd.s, j.model
	req, resp := &sd.req, &sd.resp
	req.Reset()
	resp.Reset()
	defer func() {
		req.Reset()
		resp.Reset()
	}()
	req.Header.DisableNormalizing()
	sd.hr.Reset(hdr)
	if sd.br == nil {
		sd.br = bufio.NewReaderSize(&sd.hr, maxHeaderSize)
	}
	sd.br.Reset(&sd.hr)
	if err := req.Header.Read(sd.br); err != nil {
		s.metrics.Errors.WithLabelValues(m.name, collector.ErrorInvalidResponse).Inc()
		s.logger.Error("Could not mirror a request", "model", m.name, "err", fmt.Errorf("%w: %w", errShadowHeader, err))
		return
	}
	// The body went upstream whole, with its length.
	req.Header.Del("Transfer-Encoding")
	req.SetBodyRaw(body)
	req.Header.SetHost(s.host)
	asSent(req)
	targetAsSent(req)

	s.metrics.Requests.WithLabelValues(m.name).Inc()
	start := time.Now()
	// The proxy's round trip: the request goes as the model server's went
	// (without a Content-Length it did not get: writeRequest), on a
	// connection checked if it sat idle, and is sent again by the same
	// rule (retryable).
	retried, err := s.rt.roundTrip(s.client, req, resp)
	if retried {
		s.metrics.Retries.WithLabelValues(m.name).Inc()
	}
	if err != nil {
		reason, _, _ := classifyError(err)
		sd.fail(m, reason, err)
		return
	}
	code := resp.StatusCode()
	var t answerTiming
	var answer []byte // the answer's body as kept, until resp is reset
	st, streamed := resp.BodyStream().(*stream)
	if streamed && code < 400 {
		if answer, t.firstByte, err = sd.readStream(m, st, &resp.Header, start); err != nil {
			reason, _, _ := classifyError(err)
			sd.fail(m, reason, fmt.Errorf("the shadow model server's streamed answer failed: %w", err))
			return
		}
	} else if !streamed {
		answer = resp.Body()
	}
	t.elapsed = time.Since(start)
	s.metrics.Duration.WithLabelValues(m.name).Observe(t.elapsed.Seconds())
	switch {
	case code >= 500:
		sd.fail(m, collector.ErrorUpstream5xx, fmt.Errorf("the shadow model server answered %d", code))
		return
	case code >= 400:
		sd.fail(m, collector.ErrorUpstream4xx, fmt.Errorf("the shadow model server answered %d", code))
		return
	}
	reqBody, err := decode(&sd.codec, j.enc, body, s.q.maxBody)
	if err == nil {
		answer, err = decode(&sd.codec, encodingOf(resp.Header.ContentEncoding()), answer, s.q.maxBody)
	}
	if err != nil {
		sd.fail(m, collector.ShadowInvalidPayload, fmt.Errorf("could not decode a body: %w", err))
		return
	}
	sd.compare(j, reqBody, answer, t)
}

// readStream reads a streamed answer of the shadow model server (st, its
// header h) to its end, as the proxy passes the model server's on to the
// client: --shadow.timeout for each next piece, the transport's maxBody
// for all of it. It keeps it as the proxy keeps the model server's for the
// capture: whole while it fits in --capture.max-body-size, then the head
// and tail of a stream of events or JSON lines; another that outgrows it
// could not be parsed, and is not read further (fasthttp.ErrBodyTooLarge).
// It observes when the first byte of the body came after start, and
// returns what it kept, valid until resp is reset, and that time once a
// later read brought more of the body (firstByte), what its time per
// output token runs from, as the proxy tells the model server's
// (stream.Read): 0 for a body that came in one read, or not at all.
func (sd *shadowSender) readStream(m *model, st *stream, h *fasthttp.ResponseHeader, start time.Time) (body []byte, firstByte time.Duration, err error) {
	st.keepFor(sd.s.q.maxBody, framingOf(h))
	if sd.piece == nil {
		sd.piece = make([]byte, shadowPieceSize)
	}
	var ttfb time.Duration
	for first := true; ; {
		n, rerr := st.Read(sd.piece)
		switch {
		case n == 0:
		case first:
			first, ttfb = false, time.Since(start)
			sd.s.metrics.FirstByte.WithLabelValues(m.name).Observe(ttfb.Seconds())
		default:
			firstByte = ttfb // the body came in pieces
		}
		switch {
		case !st.keep:
			return nil, firstByte, fasthttp.ErrBodyTooLarge
		case rerr == io.EOF:
			return st.captured(), firstByte, nil
		case rerr != nil:
			return nil, firstByte, rerr
		}
	}
}

// shadowPieceSize is the most a sender reads of a streamed answer at once,
// as fasthttp's server reads the proxy's streams (its copy buffer).
const shadowPieceSize = 4 << 10

// compare parses the shadow's answer to j's request, both decoded, and
// compares its predictions with the model's. t is when the answer came; a
// streamed generative answer's time per output token is observed from it,
// over the output tokens t says a gRPC stream's answers add up to, as the
// parser counts the model's (0: those its answer reports).
func (sd *shadowSender) compare(j *shadowJob, reqBody, respBody []byte, t answerTiming) {
	s, m := sd.s, j.model
	rc := s.config()
	mc := rc.models[m.name]
	p := sd.parsers.get(m.name, mc, rc)
	err := p.Parse(j.format, reqBody, respBody, &sd.batch)
	if g := sd.batch.Generation; g.Answered {
		if t.outputTokens > 0 {
			g.OutputTokens = t.outputTokens
		}
		if tpot, ok := timePerOutputToken(g, t); ok {
			s.metrics.TimePerOutputToken.WithLabelValues(m.name).Observe(tpot)
		}
	}
	var pe *payload.Error
	switch {
	case errors.As(err, &pe) && pe.Reason == payload.ReasonShapeMismatch:
		sd.fail(m, collector.ShadowShapeMismatch, err)
		return
	case err == nil && len(sd.batch.Records) == 0:
		err = errors.New("the answer gives no predictions")
		fallthrough
	case err != nil:
		sd.fail(m, collector.ShadowInvalidPayload, err)
		return
	}
	recs := sd.batch.Records
	if len(recs) != len(j.preds) {
		sd.fail(m, collector.ShadowShapeMismatch, fmt.Errorf("the shadow gave %d predictions, the model %d", len(recs), len(j.preds)))
		return
	}
	sm := s.metrics
	var compared, disagreed, numeric int
	var absDiff, sqDiff float64
	theirs := make([]shadowPrediction, len(recs))
	for i := range recs {
		a, b := j.preds[i], readShadowPrediction(mc.classes, &recs[i])
		theirs[i] = b
		if !a.isClass && !a.isX && !b.isClass && !b.isX {
			continue // neither predicts anything to compare
		}
		compared++
		if a.isClass != b.isClass || a.class != b.class {
			disagreed++
		}
		if a.isClass || b.isClass {
			s.countClassPair(m, a, b)
		}
		if a.isX && b.isX {
			if d := a.x - b.x; d-d == 0 { // NaN and ±Inf would spoil the sums
				numeric++
				absDiff += math.Abs(d)
				sqDiff += d * d
			}
		}
	}
	sm.Predictions.WithLabelValues(m.name).Add(float64(compared))
	sm.Disagreements.WithLabelValues(m.name).Add(float64(disagreed))
	if numeric > 0 {
		// Only then: a classifier without scores shows no difference series.
		sm.AbsoluteDifference.WithLabelValues(m.name).Add(absDiff)
		sm.SquaredDifference.WithLabelValues(m.name).Add(sqDiff)
	}
	if id := j.id(); s.pending != nil && len(id) > 0 {
		s.pending.add(s.now(), m.name, id, theirs)
	}
	s.logger.Debug("Compared shadow predictions", "model", m.name, "predictions", compared, "disagreements", disagreed)
}

// countClassPair counts a compared pair of predictions, the model's a and
// the shadow's b, in modelmon_shadow_class_pairs_total. It holds m's lock
// while it does, so that a reload that starts the model's series again
// (model.setClasses) finds none counted by the classes before it.
func (s *shadow) countClassPair(m *model, a, b shadowPrediction) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.metrics.ClassPairs.WithLabelValues(m.name, s.classLabelLocked(m, a), s.classLabelLocked(m, b)).Inc()
}

// classLabelLocked is p's class as a label value of
// modelmon_shadow_class_pairs_total: NoClass when it gives none, __other__
// past the model's first maxPredictedClasses (model.paired: those of
// models[].classes first). The caller holds m's lock.
func (s *shadow) classLabelLocked(m *model, p shadowPrediction) string {
	if !p.isClass {
		return collector.NoClass
	}
	if !m.paired.admit(p.class) {
		s.overflow.Inc()
		return collector.OtherValue
	}
	return p.class
}

// fail counts a mirrored request whose answer is not compared, and logs why.
func (sd *shadowSender) fail(m *model, reason string, err error) { sd.s.fail(m, reason, err) }

// fail counts a mirrored request whose answer is not compared, and logs why.
func (s *shadow) fail(m *model, reason string, err error) {
	s.metrics.Errors.WithLabelValues(m.name, reason).Inc()
	s.logger.Debug("Shadow prediction not compared", "model", m.name, "reason", reason, "err", err)
	s.failing.warn(func() []any { return []any{"model", m.name, "reason", reason, "err", err} })
}
