package exporter

import (
	"errors"
	"github.com/modelmon/modelmon/internal/rawio"
	"net"
	"os"
	"sync"
	"time"
)

// Deadlines on the proxy's connections are handed to the Go runtime lazily.
// fasthttp sets up to four of them for every proxied request (the client
// connection's idle deadline and its clearing, the upstream connection's write
// and read deadlines), and each is a timer update under the runtime's timer
// lock plus two clock reads: about 6 % of the sidecar's CPU per request at
// 16 connections, measured with and without them. A deadlineConn keeps the
// deadline the runtime holds when a new one lands no later than it and at most
// slack before it, and otherwise hands the runtime the new deadline plus slack,
// so that the deadlines of the next requests on the connection land inside it.
// A cleared deadline keeps the held one too. When the held deadline passes
// before the one asked for, or with none asked for, Read and Write hand the
// runtime the deadline asked for and carry on. So an operation never times out
// early, and never more than slack late.
const (
	// deadlineSlackShare is the part of the shortest timeout a deadline may
	// fire late by, and maxDeadlineSlack the most it may.
	deadlineSlackShare = 16
	maxDeadlineSlack   = time.Second
)

// deadlineSlack returns the slack for connections whose deadlines come from
// timeouts: a sixteenth of the shortest one that is set, at most a second.
func deadlineSlack(timeouts ...time.Duration) time.Duration {
	slack := maxDeadlineSlack
	for _, t := range timeouts {
		if t > 0 {
			slack = min(slack, t/deadlineSlackShare)
		}
	}
	return slack
}

// deadlineConn is a connection whose deadlines are handed to the runtime
// lazily; see above.
type deadlineConn struct {
	net.Conn
	slack  time.Duration
	rd, wd lazyDeadline
	// used is when a round trip last took this connection to the model
	// server from the pool (take); the pool orders its uses.
	used time.Time
	// written counts the bytes Write has written, for a round trip to
	// tell whether any of its request went out (transport.try).
	written int64
}

// newDeadlineConn wraps c; with raw, its reads and writes are raw system
// calls (rawio, --proxy.raw-syscalls).
func newDeadlineConn(c net.Conn, slack time.Duration, raw bool) *deadlineConn {
	if raw {
		c = rawio.Wrap(c)
	}
	return &deadlineConn{Conn: c, slack: slack}
}

// lazyDeadline is one direction's deadline: the one asked for and the one the
// runtime holds. The runtime's setter is called with mu held, so that
// concurrent setters leave the two consistent.
type lazyDeadline struct {
	mu   sync.Mutex
	want time.Time // asked for; zero: none
	held time.Time // held by the runtime; zero: none
}

// set records t as asked for and, unless the held deadline serves for it,
// hands the runtime t plus slack through apply.
func (d *lazyDeadline) set(t time.Time, slack time.Duration, apply func(time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want = t
	if t.IsZero() || !d.held.IsZero() && !d.held.Before(t) && d.held.Sub(t) <= slack {
		return nil
	}
	if err := apply(t.Add(slack)); err != nil {
		return err
	}
	d.held = t.Add(slack)
	return nil
}

// rearm is called after an operation timed out on the held deadline. It
// reports whether the deadline asked for is still ahead (or none is asked
// for), after handing it to the runtime; then the operation goes on.
func (d *lazyDeadline) rearm(now time.Time, apply func(time.Time) error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.want.IsZero() && !now.Before(d.want) {
		return false
	}
	if err := apply(d.want); err != nil {
		return false
	}
	d.held = d.want
	return true
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) ||
			!c.rd.rearm(time.Now(), c.Conn.SetReadDeadline) {
			return n, err
		}
	}
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	written := 0
	for {
		n, err := c.Conn.Write(b[written:])
		written += n
		c.written += int64(n)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) ||
			!c.wd.rearm(time.Now(), c.Conn.SetWriteDeadline) {
			return written, err
		}
	}
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.rd.set(t, c.slack, c.Conn.SetReadDeadline)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.wd.set(t, c.slack, c.Conn.SetWriteDeadline)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// deadlineListener hands out its connections as deadlineConns, with raw
// system calls when raw is set.
type deadlineListener struct {
	net.Listener
	slack time.Duration
	raw   bool
}

func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newDeadlineConn(c, l.slack, l.raw), nil
}
