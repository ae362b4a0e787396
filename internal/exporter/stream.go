package exporter

import (
	"cmp"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// stream passes an upstream body to the client as it arrives: a body of
// unknown length (chunked, or until the connection closes: token streams,
// server-sent events) or one larger than --capture.max-body-size. fasthttp
// writes it to the client after the handler returns, flushing each piece as
// it is read, and closes it when the body has ended or the client has gone.
//
// While it is read, the stream keeps the first bytes for the capture, up to
// --capture.max-body-size, stops a body over --proxy.max-body-size, and gives
// each read of the upstream --proxy.timeout: a stream may run for as long as
// the model server keeps talking. When it is closed it accounts for the
// request as the handler does for a body read whole.
type stream struct {
	p    *proxy
	up   *fasthttp.Response // the upstream's answer, which owns body
	body fasthttp.ReadCloserWithError
	conn *deadlineConn // the upstream connection, nil if not known

	m       *model // nil for a request that is not a prediction
	reqBody []byte
	status  int
	rq      request
	n       int    // bytes read
	buf     []byte // the body as read, for the capture, while keep
	keep    bool   // whether buf holds the whole body so far
	err     error  // why reading the upstream failed, or nil
}

var streamPool = sync.Pool{New: func() any { return new(stream) }}

func newStream(up *fasthttp.Response, body fasthttp.ReadCloserWithError, conn *deadlineConn) *stream {
	s := streamPool.Get().(*stream)
	s.up, s.body, s.conn = up, body, conn
	return s
}

// start hands the stream to the server as the body of ctx's response, with
// what the accounting of the prediction on m needs.
func (s *stream) start(p *proxy, m *model, ctx *fasthttp.RequestCtx, rq request) {
	s.p, s.m, s.rq = p, m, rq
	s.status = ctx.Response.StatusCode()
	s.reqBody = ctx.Request.Body() // valid until the server has written the response
	s.keep = m != nil && s.status < 300
	n := s.up.Header.ContentLength()
	if n < 0 {
		n = -1 // chunked to the client
	}
	ctx.Response.SetBodyStream(s, n)
	// The client sees the status and headers as soon as the model server
	// sent them, before the first piece of the body.
	ctx.Response.ImmediateHeaderFlush = true
}

func (s *stream) Read(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.conn != nil && s.p.timeout > 0 {
		s.conn.SetReadDeadline(time.Now().Add(s.p.timeout)) //nolint:errcheck // the read reports a failure
	}
	n, err := s.body.Read(b)
	if s.n+n > s.p.maxBody {
		// Nothing over the limit reaches the client.
		n, err = 0, fasthttp.ErrBodyTooLarge
	}
	s.n += n
	if s.keep {
		if len(s.buf)+n <= s.p.queue.maxBody {
			s.buf = append(s.buf, b[:n]...)
		} else {
			s.keep, s.buf = false, s.buf[:0]
		}
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

// CloseWithError is called by the server once it has written the body, or
// failed to: werr is why, or nil.
func (s *stream) CloseWithError(werr error) error {
	// A body not read to its end closes the upstream connection instead of
	// handing it back for reuse.
	s.body.CloseWithError(cmp.Or(s.err, werr)) //nolint:errcheck
	p, m := s.p, s.m
	switch {
	case m == nil:
	case s.err != nil:
		m.inFlight.Dec()
		reason, _, _ := classifyError(s.err)
		m.errors[reason].Inc()
		p.logger.Debug("Upstream stream failed", "reason", reason, "bytes", s.n, "err", s.err)
		p.account(m, s.reqBody, nil, -1, s.status, s.rq, p.now())
	case werr != nil:
		// The client went away: nothing of the model server's to count,
		// and nothing complete to capture.
		m.inFlight.Dec()
		p.logger.Debug("Client stopped reading a streamed response", "bytes", s.n, "err", werr)
		p.account(m, s.reqBody, nil, -1, s.status, s.rq, p.now())
	default:
		m.inFlight.Dec()
		p.account(m, s.reqBody, s.buf, s.n, s.status, s.rq, p.now())
	}
	fasthttp.ReleaseResponse(s.up)
	buf := s.buf[:0]
	if cap(buf) > 1<<20 {
		buf = nil
	}
	*s = stream{buf: buf}
	streamPool.Put(s)
	return nil
}

// connKey names an upstream TCP connection by its two ends.
type connKey struct{ local, remote netip.AddrPort }

func tcpConnKey(local, remote net.Addr) (connKey, bool) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return connKey{}, false
	}
	return connKey{l.AddrPort(), r.AddrPort()}, true
}

// connTable finds the upstream connection a response was read from, so that
// a stream can move its read deadline: fasthttp sets one deadline for the
// whole answer and gives no other way to the connection.
type connTable struct {
	mu    sync.Mutex
	conns map[connKey]*deadlineConn
}

// dial wraps dial so that its TCP connections are entered in the table while
// they are open.
func (t *connTable) dial(dial fasthttp.DialFuncWithTimeout) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := dial(addr, timeout)
		if err != nil {
			return nil, err
		}
		dc, ok := c.(*deadlineConn)
		if !ok {
			return c, nil
		}
		k, ok := tcpConnKey(c.LocalAddr(), c.RemoteAddr())
		if !ok {
			return c, nil
		}
		t.mu.Lock()
		if t.conns == nil {
			t.conns = make(map[connKey]*deadlineConn)
		}
		t.conns[k] = dc
		t.mu.Unlock()
		return &tableConn{deadlineConn: dc, t: t, k: k}, nil
	}
}

// lookup returns the connection resp was read from, or nil.
func (t *connTable) lookup(resp *fasthttp.Response) *deadlineConn {
	k, ok := tcpConnKey(resp.LocalAddr(), resp.RemoteAddr())
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns[k]
}

// tableConn leaves the table when it is closed.
type tableConn struct {
	*deadlineConn
	t *connTable
	k connKey
}

func (c *tableConn) Close() error {
	c.t.mu.Lock()
	if c.t.conns[c.k] == c.deadlineConn {
		delete(c.t.conns, c.k)
	}
	c.t.mu.Unlock()
	return c.deadlineConn.Close()
}
