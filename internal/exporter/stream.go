package exporter

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httputil"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// transport is the proxy's round trip to the model server, on the
// connections of its fasthttp HostClient (AcquireConn, the pooled readers and
// writers, ReleaseConn). It is fasthttp's own round trip with three
// differences. It reads an answer's body whole only when its length is known
// and at most bufferMax (--capture.max-body-size); any other body, of unknown
// length (chunked, or until the connection closes: token streams, server-sent
// events) or larger, it leaves on the connection as the response's body
// stream, a *stream, for the proxy to pass on as it arrives. The proxy
// calls it with the client's own response, which the answer is read into,
// rather than through HostClient.Do, which would reset that response's
// settings (no default Date, Content-Type or Server) and refuse an https
// upstream for a request that came in over http. And it sends a request
// again, once, only when that is safe (retryable).
//
// The shadow's senders make their round trips to the shadow model server
// with a transport of their own, so that a mirrored request goes as the
// model server's went and is sent again by the same rule, and its answer
// comes as the model server's would: a streamed one as a *stream, which the
// sender reads itself (shadowSender.readStream).
//
// fasthttp's own streaming (HostClient.StreamResponseBody) streams every
// answer or none, at four allocations per request, and gives no way to the
// connection to move a stream's read deadline.
type transport struct {
	timeout   time.Duration // of the whole round trip, its retry included, or of each read of a stream
	bufferMax int
	maxBody   int // --proxy.max-body-size
	// retries counts the requests RoundTrip sends again; logger says why,
	// at debug.
	retries prometheus.Counter
	logger  *slog.Logger
}

// maxInterim bounds the 1xx answers read before the final one, as fasthttp
// does.
const maxInterim = 100

// RoundTrip sends req to hc's server and reads its answer into resp, and
// counts in t.retries a request it sent again.
func (t *transport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	retried, err := t.roundTrip(hc, req, resp)
	if retried {
		t.retries.Inc()
	}
	return false, err
}

// roundTrip is RoundTrip without the count: it reports whether it sent req
// a second time (retried), for its caller to count, as the shadow does by
// model.
func (t *transport) roundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retried bool, err error) {
	now := time.Now()
	var deadline time.Time
	if t.timeout > 0 {
		deadline = now.Add(t.timeout)
	}
	again, err := t.try(hc, req, resp, now, deadline, false)
	if !again {
		return false, err
	}
	t.logger.Debug("Sending a request upstream again on another connection", "method", string(req.Header.Method()), "err", err)
	_, err = t.try(hc, req, resp, time.Now(), deadline, true)
	return true, err
}

// try makes one attempt at the round trip: RoundTrip's, on a connection
// taken at now, until deadline. A retry checks every pooled connection
// before it takes it, not only one that sat idle. When it fails, again
// reports whether the request may be sent again (retryable).
func (t *transport) try(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, now, deadline time.Time, retry bool) (again bool, err error) {
	wait := t.timeout
	if retry && !deadline.IsZero() {
		if wait = deadline.Sub(now); wait <= 0 {
			return false, fasthttp.ErrTimeout
		}
	}
	cc, err := hc.AcquireConn(wait, req.ConnectionClose())
	var dc *deadlineConn
	reused := false
	for err == nil {
		dc = upstreamConn(cc.Conn())
		var closed bool
		if reused, closed = dc.take(now, retry); !closed {
			break
		}
		// The model server has left it: take the next one, or dial.
		hc.CloseConn(cc)
		cc, err = hc.AcquireConn(wait, req.ConnectionClose())
	}
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	if err = conn.SetWriteDeadline(deadline); err != nil {
		hc.CloseConn(cc)
		return false, err
	}
	written := dc.sent()
	bw := hc.AcquireWriter(conn)
	err = writeRequest(req, bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	writeErr := err
	// Nothing of the request reached the model server: its first write
	// failed, on a connection the model server had already left.
	nothingSent := writeErr != nil && dc != nil && dc.sent() == written
	if err != nil {
		if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
			hc.CloseConn(cc)
			return false, fasthttp.ErrTimeout
		}
		// A model server may answer before it has read the whole body and
		// close the connection (a 413 for a body too large, a 401): the
		// rest of the body can't be written, but the answer may be there
		// to read, and it is the client's, not a 502.
	}

	if err = conn.SetReadDeadline(deadline); err != nil {
		hc.CloseConn(cc)
		return false, err
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	br := hc.AcquireReader(conn)
	fail := func(err error) (bool, error) {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return false, err
	}
	if err = resp.Header.Read(br); err != nil {
		// fasthttp's io.EOF: the connection ended, or failed, before the
		// first byte of an answer.
		again = err == io.EOF && !retry && retryable(req, reused, nothingSent)
		if writeErr != nil {
			err = writeErr
		}
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return again, err
	}
	for n := 0; isInterim(resp.StatusCode()); n++ {
		if n >= maxInterim {
			return fail(errors.New("too many 1xx informational responses"))
		}
		if err = resp.Header.Read(br); err != nil {
			return fail(err)
		}
	}
	// After a 101 the connection speaks another protocol (the proxy drops
	// Upgrade, so only a model server that ignores that sends one).
	closeConn := req.ConnectionClose() || resp.ConnectionClose() || resp.StatusCode() == fasthttp.StatusSwitchingProtocols || writeErr != nil
	n := resp.Header.ContentLength()
	switch {
	case req.Header.IsHead() || noBody(resp.StatusCode()):
	case n > t.maxBody:
		return fail(fasthttp.ErrBodyTooLarge)
	case n >= 0 && n <= t.bufferMax:
		if err = resp.ReadBody(br, t.maxBody); err != nil {
			return fail(err)
		}
	default:
		s := streamPool.Get().(*stream)
		s.conn, s.br = conn, br
		s.done = func(reuse bool) {
			hc.ReleaseReader(br)
			if reuse {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
		}
		s.timeout, s.maxBody, s.closeConn = t.timeout, t.maxBody, closeConn
		switch {
		case n >= 0:
			s.left = n
		case n == -1:
			s.chunks = httputil.NewChunkedReader(br)
		default:
			// Until the connection closes; it can't be used again.
			s.left, s.closeConn = -1, true
		}
		if n < 0 {
			n = -1 // chunked to the client
		}
		resp.SetBodyStream(s, n)
		return false, nil
	}
	hc.ReleaseReader(br)
	if closeConn {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// writeRequest writes req as fasthttp's Request.Write does, with one
// difference: a request without a body that came without Content-Length or
// Transfer-Encoding goes without Content-Length, as it came. fasthttp's
// server, as it reads such a request, gives it a Content-Length of 0 (but
// for a GET or HEAD), which Request.Write writes out (RFC 9110 8.6: a
// client should not send Content-Length in a request without content when
// its method gives content no meaning, as OPTIONS and DELETE don't). A
// Content-Length: 0 the client sent, a POST's with an empty body, goes on.
//
// Such a request is its header alone: Request.Write would add nothing
// else, the proxy having set its Host and its request target
// (targetAsSent).
//
// The shadow's copy of a request (shadow.go) is its header as the model
// server got it, read back alone, without a body: one that came without
// Content-Length has -2 (identity) for it whatever its method, which
// Request.Write would turn into Content-Length: 0 all the same.
func writeRequest(req *fasthttp.Request, w *bufio.Writer) error {
	// A GET or HEAD that came without Content-Length has -2 too, which
	// Request.Write leaves out.
	cl := req.Header.ContentLength()
	bodiless := cl == 0 || cl == -2 && !req.Header.IsGet() && !req.Header.IsHead()
	if !bodiless || req.IsBodyStream() || len(req.Body()) > 0 ||
		len(req.Header.Host()) == 0 || hasFraming(req.Header.RawHeaders()) {
		return req.Write(w)
	}
	req.Header.DelBytes(hdrContentLength)
	return req.Header.Write(w)
}

var hdrContentLength = []byte("Content-Length")

// hasFraming reports whether raw, a request's header block as it came,
// has a Content-Length or Transfer-Encoding line.
func hasFraming(raw []byte) bool {
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue // the blank line at the end, or a folded value
		}
		if i := bytes.IndexByte(line, ':'); i > 0 && isFraming(bytes.TrimRight(line[:i], " \t")) {
			return true
		}
	}
	return false
}

// retryable reports whether a request whose connection to the model server
// ended, or failed, before the first byte of an answer may be sent again, on
// another connection: as nginx (a cached connection, proxy_next_upstream
// error) and Go's net/http Transport do, when the connection had carried an
// answer before (reused: a model server may close a kept-alive connection
// at any moment, its keep-alive timeout passed, while a request goes out on
// it), and its body is all in memory, to be sent whole again. Then the request
// is sent again when its method is idempotent (RFC 9110 9.2.2): sent twice,
// it does what it does once. A POST, a prediction, may have reached the model
// and taken effect (an answer lost with the connection, a prompt billed, a
// feedback counted twice), so it is not, unless none of it was sent at all
// (nothingSent: the first write failed, the connection already reset), as
// net/http retries a request that wrote nothing (nothingWrittenError) and
// nginx one it had not sent: the model server can't have seen any of it.
// A request of any method that carries an Idempotency-Key or
// X-Idempotency-Key header is sent again too, as net/http takes it for
// idempotent (Request.isReplayable): its client says that the model server
// takes it sent twice, with the same key, as sent once.
func retryable(req *fasthttp.Request, reused, nothingSent bool) bool {
	if !reused || req.IsBodyStream() {
		return false
	}
	return nothingSent || idempotent(req.Header.Method()) || hasIdempotencyKey(&req.Header)
}

var (
	hdrIdempotencyKey  = []byte("Idempotency-Key")
	hdrXIdempotencyKey = []byte("X-Idempotency-Key")
)

// hasIdempotencyKey reports whether h has an Idempotency-Key or
// X-Idempotency-Key header, in any case, even empty, as net/http's
// Header.has does.
func hasIdempotencyKey(h *fasthttp.RequestHeader) bool {
	for k := range h.All() {
		if bytes.EqualFold(k, hdrIdempotencyKey) || bytes.EqualFold(k, hdrXIdempotencyKey) {
			return true
		}
	}
	return false
}

// idempotent reports whether method is one of RFC 9110's idempotent
// methods; method names are case-sensitive.
func idempotent(method []byte) bool {
	switch string(method) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions, fasthttp.MethodTrace,
		fasthttp.MethodPut, fasthttp.MethodDelete:
		return true
	}
	return false
}

// idleCheckAfter is how long a connection to the model server must have sat
// in the pool before it is checked for a close that came meanwhile. Under
// load connections go back out within a millisecond and are not checked;
// model servers close idle ones after seconds (uvicorn 5 s, gunicorn 2 s).
const idleCheckAfter = 10 * time.Millisecond

// upstreamConn is the deadlineConn under c, a connection to the model
// server (dialLazyDeadlines), or nil.
func upstreamConn(c net.Conn) *deadlineConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	dc, _ := c.(*deadlineConn)
	return dc
}

// take records now as when a round trip took the connection to the model
// server dc, and reports whether a round trip had taken it before (reused),
// and whether the model server has closed it (or sent on it unasked) since
// (closed), if that was idleCheckAfter or more before now, or always when
// check is set.
//
// fasthttp does not watch idle connections, as nginx and net/http do, so a
// request would be written into a connection whose server has gone (its
// keep-alive timeout passed, it restarted), and the client would get a 502
// for it: every other request of a model that gets one every few seconds. A
// prediction is not retried, as it may have reached the model; instead the
// connection is checked before it is used, without blocking, consuming
// anything, or costing the busy path more than a comparison.
func (dc *deadlineConn) take(now time.Time, check bool) (reused, closed bool) {
	if dc == nil {
		return false, false
	}
	used := dc.used
	dc.used = now
	reused = !used.IsZero()
	return reused, reused && (check || now.Sub(used) >= idleCheckAfter) && peerClosed(dc.Conn)
}

// sent is how many bytes have been written to dc, 0 for nil.
func (dc *deadlineConn) sent() int64 {
	if dc == nil {
		return 0
	}
	return dc.written
}

func isInterim(code int) bool {
	return code >= 100 && code < 200 && code != fasthttp.StatusSwitchingProtocols
}

// noBody reports whether an answer with this status has no body whatever
// its headers say (RFC 9110 6.4.1).
func noBody(code int) bool {
	return code < 200 || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified
}

// stream is an upstream body passed to the client as it arrives. fasthttp's
// server writes it to the client after the handler returns, flushing each
// piece as it is read, and closes it when the body has ended or the client
// has gone.
//
// While it is read, the stream keeps the body for the capture as long as it
// fits in --capture.max-body-size (a stream of events or JSON lines that
// outgrows it, its head and tail: splice), stops one over
// --proxy.max-body-size, and
// gives each read of the upstream --proxy.timeout: a stream may run for as
// long as the model server keeps talking. When it is closed it hands the
// connection back for reuse if the body was read to its end (and closes it
// otherwise), and accounts for the request as the handler does for a body
// read whole. A shadow model server's streamed answer is one too, which
// the shadow's sender reads and keeps to compare (keepFor), passing it to
// no client.
type stream struct {
	// The upstream connection and how the body is framed on it.
	done      func(reuse bool) // releases the connection, for reuse or closed
	conn      net.Conn
	br        *bufio.Reader
	chunks    io.Reader // chunked: the decoded body
	left      int       // length known: bytes left; -1: until the connection closes
	timeout   time.Duration
	maxBody   int
	closeConn bool // the connection can't be used again
	eof       bool // the body was read to its end
	// The accounting of the request.
	p       *proxy
	m       *model // nil for a request that is not a prediction
	reqBody []byte
	status  int
	rq      request
	n       int           // bytes read
	first   time.Duration // when its first byte came, after rq.start: rq.firstByte once a later read brings more
	buf     []byte        // the body as read, for the capture, while keep
	keep    bool          // whether buf holds the whole body so far, or its head and tail
	keepMax int           // the most buf and tail keep together: --capture.max-body-size
	err     error         // why reading the upstream failed, or nil
	// A stream of events or JSON lines that outgrows the capture keeps its
	// head in buf and its tail in a ring, and is captured as the two.
	framing framing
	spliced bool   // buf is the head: the rest goes to tail
	tail    []byte // the ring, its capacity the most it keeps
	tailAt  int    // where the ring writes next
	tailLen int    // bytes in the ring
}

// framing is how a streamed answer is cut into pieces that parse alone.
type framing uint8

const (
	framingNone   framing = iota
	framingEvents         // server-sent events: OpenAI-style APIs, TGI, the OIP's generate_stream
	framingLines          // JSON lines: Ollama
)

// framingOf is the framing of an answer, by its headers: none when it is
// compressed, as a piece of a compressed body does not decompress alone.
func framingOf(h *fasthttp.ResponseHeader) framing {
	if ce := h.ContentEncoding(); len(ce) > 0 && !bytes.EqualFold(ce, []byte("identity")) {
		return framingNone
	}
	ct, _, _ := bytes.Cut(h.ContentType(), []byte(";"))
	ct = bytes.ToLower(bytes.TrimSpace(ct))
	switch string(ct) {
	case "text/event-stream":
		return framingEvents
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines":
		return framingLines
	}
	return framingNone
}

var streamPool = sync.Pool{New: func() any { return new(stream) }}

// start gives the stream, the body of ctx's response, what the accounting
// of the prediction on m needs.
func (s *stream) start(p *proxy, m *model, ctx *fasthttp.RequestCtx, rq request) {
	s.p, s.m, s.rq = p, m, rq
	s.status = ctx.Response.StatusCode()
	s.reqBody = ctx.Request.Body() // valid until the server has written the response
	s.keep = m != nil && s.status < 300
	s.keepMax = p.queue.maxBody
	s.framing = framingOf(&ctx.Response.Header)
	// The client sees the status and headers as soon as the model server
	// sent them, before the first piece of the body.
	ctx.Response.ImmediateHeaderFlush = true
}

// keepFor has the stream, an answer of the shadow model server, keep its
// body as start has the proxy's keep the model server's for the capture:
// whole while it fits in max, then, framed by f, its head and tail. Its
// reader is the shadow's sender (shadowSender.readStream); closing it
// accounts for no request.
func (s *stream) keepFor(max int, f framing) {
	s.keep, s.keepMax, s.framing = true, max, f
}

func (s *stream) Read(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.read(b)
	if s.n+n > s.maxBody {
		// Nothing over the limit reaches the client.
		n, err = 0, fasthttp.ErrBodyTooLarge
	}
	if n > 0 && s.m != nil {
		if s.n == 0 {
			// The first token of a stream: what a waiting user feels.
			s.first = s.p.now().Sub(s.rq.start)
			s.p.metrics.FirstByte.WithLabelValues(s.m.name).Observe(s.first.Seconds())
		} else {
			// A later read brought more: the body came in pieces, and its
			// time per output token runs from the first. One that came in
			// one read (a whole answer, chunked or events all the same)
			// has none, which would be 0 whatever the tokens it reports.
			s.rq.firstByte = s.first
		}
	}
	s.n += n
	if s.keep {
		s.keepPiece(b[:n])
	}
	if err != nil && err != io.EOF {
		s.err = err
		if n > 0 {
			// fasthttp writes out what was read and reads again before it
			// looks at the error: the next read returns it.
			err = nil
		}
	}
	return n, err
}

// keepPiece keeps the next piece of the body for the capture, while it
// fits, or spliced.
func (s *stream) keepPiece(b []byte) {
	switch {
	case s.spliced:
		s.toTail(b)
	case len(s.buf)+len(b) <= s.keepMax:
		s.buf = append(s.buf, b...)
	case s.framing != framingNone:
		s.splice(b)
	default:
		s.keep, s.buf = false, s.buf[:0]
	}
}

// splice starts keeping a stream that outgrew the capture as its head, up
// to half the capture cut after its last whole piece, and its tail in a
// ring of the other half; b is the read that outgrew it. A long LLM answer
// says how it finished and how many tokens it took at its end, and what it
// was asked at its start.
func (s *stream) splice(b []byte) {
	half := s.keepMax / 2
	head := s.buf[:min(len(s.buf), half)]
	cut := lastBoundary(head, s.framing)
	if cap(s.tail) < s.keepMax-cut || cap(s.tail) > s.keepMax {
		s.tail = make([]byte, s.keepMax-cut)
	}
	s.tail = s.tail[:s.keepMax-cut]
	s.tailAt, s.tailLen = 0, 0
	s.toTail(s.buf[cut:])
	s.toTail(b)
	s.buf, s.spliced = s.buf[:cut], true
}

// toTail writes b to the ring, over its oldest bytes.
func (s *stream) toTail(b []byte) {
	if len(b) >= len(s.tail) {
		b = b[len(b)-len(s.tail):]
	}
	for len(b) > 0 {
		n := copy(s.tail[s.tailAt:], b)
		b = b[n:]
		s.tailAt = (s.tailAt + n) % len(s.tail)
		s.tailLen = min(s.tailLen+n, len(s.tail))
	}
}

// captured is the body to capture: the body, or for a spliced stream its
// head and the whole pieces of its tail, after the first boundary.
func (s *stream) captured() []byte {
	if !s.spliced {
		return s.buf
	}
	head := len(s.buf)
	if s.tailLen < len(s.tail) {
		// The ring never came round: it starts where the head ends.
		return append(s.buf, s.tail[:s.tailLen]...)
	}
	s.buf = append(append(s.buf, s.tail[s.tailAt:]...), s.tail[:s.tailAt]...)
	start := firstBoundary(s.buf[head:], s.framing)
	if start < 0 {
		return s.buf[:head]
	}
	return append(s.buf[:head], s.buf[head+start:]...)
}

// lastBoundary is the length of b up to the end of its last whole piece:
// events end in a blank line, JSON lines in a newline.
func lastBoundary(b []byte, f framing) int {
	if f == framingLines {
		return bytes.LastIndexByte(b, '\n') + 1
	}
	end := 0
	for _, sep := range []string{"\n\n", "\n\r\n", "\r\r"} {
		if i := bytes.LastIndex(b, []byte(sep)); i >= 0 {
			end = max(end, i+len(sep))
		}
	}
	return end
}

// firstBoundary is where the first whole piece of b starts, after the
// first boundary; -1 when b has none.
func firstBoundary(b []byte, f framing) int {
	if f == framingLines {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return i + 1
		}
		return -1
	}
	start := -1
	for _, sep := range []string{"\n\n", "\n\r\n", "\r\r"} {
		if i := bytes.Index(b, []byte(sep)); i >= 0 && (start < 0 || i+len(sep) < start) {
			start = i + len(sep)
		}
	}
	return start
}

// read reads the next piece of the body off the connection, giving the
// model server --proxy.timeout for it.
func (s *stream) read(b []byte) (int, error) {
	if s.eof {
		return 0, io.EOF
	}
	if s.timeout > 0 {
		if err := s.conn.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
			return 0, err
		}
	}
	var n int
	var err error
	switch {
	case s.chunks != nil:
		n, err = s.chunks.Read(b)
		if err == io.EOF {
			err = skipTrailer(s.br)
		}
	case s.left < 0:
		n, err = s.br.Read(b)
	default:
		if s.left == 0 {
			err = io.EOF
			break
		}
		n, err = s.br.Read(b[:min(len(b), s.left)])
		s.left -= n
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		} else if err == nil && s.left == 0 {
			err = io.EOF
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fasthttp.ErrTimeout
	}
	s.eof = err == io.EOF
	return n, err
}

// CloseWithError is called by the server once it has written the body, or
// failed to: werr is why, or nil.
func (s *stream) CloseWithError(werr error) error {
	// The connection is reused only after a body read to its end.
	s.done(s.eof && !s.closeConn && s.err == nil && werr == nil)
	if p, m := s.p, s.m; m != nil {
		m.inFlight.Dec()
		switch {
		case s.err != nil:
			// The client's answer is cut short, not replaced.
			p.countFailure(s.err, m, "streamed_bytes", s.n)
			p.account(m, s.reqBody, nil, -1, s.status, s.rq, p.now())
		case werr != nil:
			// The client went away: nothing of the model server's to
			// count, and nothing complete to capture.
			p.logger.Debug("Client stopped reading a streamed response", "bytes", s.n, "err", werr)
			p.account(m, s.reqBody, nil, -1, s.status, s.rq, p.now())
		case s.spliced && s.status < 300:
			// The capture is the stream's head and tail, not all of it.
			end := p.now()
			p.observe(m, len(s.reqBody), s.n, s.rq, end, end)
			body := s.captured()
			p.capture(m, s.reqBody, body, len(body), s.rq, end)
		default:
			p.account(m, s.reqBody, s.buf, s.n, s.status, s.rq, p.now())
		}
	} else if p != nil && s.err != nil {
		// A request that is not a prediction, its answer cut short.
		p.countFailure(s.err, nil, "streamed_bytes", s.n)
	}
	buf, tail := s.buf[:0], s.tail[:0]
	if cap(buf) > 1<<20 {
		buf = nil
	}
	if cap(tail) > 1<<20 {
		tail = nil
	}
	*s = stream{buf: buf, tail: tail}
	streamPool.Put(s)
	return nil
}

// skipTrailer reads the trailer that follows the last chunk, to its blank
// line, and returns io.EOF. Trailer fields are hop-by-hop here: the client
// has had its headers, and the proxy sends its own last chunk.
func skipTrailer(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err // a line longer than the buffer too
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return io.EOF
		}
	}
}
