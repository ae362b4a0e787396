package exporter

import (
	"errors"
	"net"
	"sync"
	"time"
)

// During --proxy.shutdown-delay the HTTP proxy closes each client connection
// after its response, so that clients open their next ones elsewhere while
// the pod is taken out of rotation. A gRPC client keeps its one connection
// for good, and moves only when it gets a GOAWAY: grpc-go sends one with
// GracefulStop, which also stops taking connections. So the gRPC listener
// hands its connections to one server at a time (handoff): when the delay
// starts, a new server takes the new connections, and the old one sends
// GOAWAY to the connections it has, lets their calls finish (streams may run
// on), and stops. When the delay ends, the new server stops the same way.

// takeoverGrace is how long the old server keeps running after the new one
// takes over, before it stops: long enough for a connection it accepted
// just before to reach the point where grpc-go drains it rather than drops
// it (the connection's HTTP/2 set-up).
const takeoverGrace = 100 * time.Millisecond

// handoff passes the connections of a listener to one view at a time.
type handoff struct {
	ln     net.Listener
	mu     sync.Mutex
	to     *view
	closed chan struct{} // the listener failed or was closed: err says why
	err    error
}

// view is the listener a grpc.Server serves: the connections handoff gives
// it while it is the current one.
type view struct {
	h     *handoff
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoff(ln net.Listener) *handoff {
	h := &handoff{ln: ln, closed: make(chan struct{})}
	h.to = h.newView()
	go h.run()
	return h
}

func (h *handoff) newView() *view {
	return &view{h: h, conns: make(chan net.Conn), done: make(chan struct{})}
}

// take makes a new view the current one, and returns it.
func (h *handoff) take() *view {
	v := h.newView()
	h.mu.Lock()
	h.to = v
	h.mu.Unlock()
	return v
}

func (h *handoff) current() *view {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.to
}

// run accepts connections and gives each to the current view, retrying
// with the next current one when a view closes before it takes one.
func (h *handoff) run() {
	var backoff time.Duration
	for {
		c, err := h.ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors and the like: wait, as net/http
				// and grpc-go do.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			h.err = err
			close(h.closed)
			return
		}
		backoff = 0
		for given := false; !given; {
			v := h.current()
			select {
			case v.conns <- c:
				given = true
			case <-v.done:
				if h.current() == v {
					// No view takes connections any more.
					c.Close()
					given = true
				}
			}
		}
	}
}

// Close closes the listener.
func (h *handoff) Close() error { return h.ln.Close() }

func (v *view) Accept() (net.Conn, error) {
	select {
	case <-v.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-v.conns:
		return c, nil
	case <-v.done:
		return nil, net.ErrClosed
	case <-v.h.closed:
		return nil, v.h.err
	}
}

// Close ends the view, not the listener.
func (v *view) Close() error {
	v.once.Do(func() { close(v.done) })
	return nil
}

func (v *view) Addr() net.Addr { return v.h.ln.Addr() }
