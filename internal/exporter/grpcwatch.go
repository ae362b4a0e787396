package exporter

import (
	"context"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// connWatch follows the connections grpc-go makes to a model server, for two
// things grpc-go tells a call that failed only in the text of its
// UNAVAILABLE status ("error reading from server: EOF", "transport is
// closing", "authentication handshake failed"), in no error a program can
// test: that the connection the call was on was lost, and that the last
// connection attempt failed its TLS handshake. The watch sees both first
// hand, as it dials the connections (grpc.WithContextDialer) and wraps
// their TLS credentials (handshakeCreds), so that a status the model
// server sent is never taken for either, whatever grpc-go's words.
type connWatch struct {
	// handshakeFailed is whether the TLS handshake of the last connection
	// attempt failed; a new attempt clears it.
	handshakeFailed atomic.Bool
}

// grpcDialer is the dialer grpc-go uses by default: TCP keep-alive on, with
// the system's timings.
var grpcDialer = net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}

// dial makes a connection to the model server at addr, watched.
func (w *connWatch) dial(ctx context.Context, addr string) (net.Conn, error) {
	w.handshakeFailed.Store(false)
	c, err := grpcDialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c}, nil
}

// watchedConn is a connection to the model server that records that its
// reads failed: the model server closed or reset it, or it was closed
// under its calls. Its local address carries it to the calls on it
// (connLost).
type watchedConn struct {
	net.Conn
	failed atomic.Bool
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

func (c *watchedConn) LocalAddr() net.Addr { return watchedAddr{c.Conn.LocalAddr(), c} }

// watchedAddr is a watchedConn's local address, which grpc-go gives each
// call on the connection in its peer.Peer.
type watchedAddr struct {
	net.Addr
	c *watchedConn
}

// connLost reports whether err, with which the call cs to the model
// server ended, is the loss of its connection: an UNAVAILABLE on a
// connection that failed. grpc-go ends each call on a connection it lost
// with an UNAVAILABLE of its own, after the failed read; a status the model
// server sent came on a connection that worked.
func connLost(cs grpc.ClientStream, err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	p, ok := peer.FromContext(cs.Context())
	if !ok {
		return false
	}
	a, ok := p.LocalAddr.(watchedAddr)
	return ok && a.c.failed.Load()
}

// handshakeCreds are TLS credentials that record in their connWatch
// whether each handshake failed, for whatever reason (an unknown CA, the
// wrong name, an alert, a connection closed midway), as grpc-go's
// "authentication handshake failed" says.
type handshakeCreds struct {
	credentials.TransportCredentials
	w *connWatch
}

func (c handshakeCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.w.handshakeFailed.Store(err != nil)
	return conn, info, err
}

func (c handshakeCreds) Clone() credentials.TransportCredentials {
	return handshakeCreds{c.TransportCredentials.Clone(), c.w}
}

// connLostError is a call's error that connLost took for the loss of its
// connection.
type connLostError struct{ err error }

func (e connLostError) Error() string { return e.err.Error() }
func (e connLostError) Unwrap() error { return e.err }
