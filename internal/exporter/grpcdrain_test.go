package exporter

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// The handoff gives each connection to the view that is current when it
// comes: the old one, once closed, gets none; when no view takes them any
// more they are closed; and once the listener closes, a view says so.
func TestHandoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := newHandoff(ln)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func(v *view) net.Conn {
		type accepted struct {
			c   net.Conn
			err error
		}
		got := make(chan accepted, 1)
		go func() {
			c, err := v.Accept()
			got <- accepted{c, err}
		}()
		select {
		case a := <-got:
			require.NoError(t, a.err)
			t.Cleanup(func() { a.c.Close() })
			return a.c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection")
			return nil
		}
	}

	first := h.current()
	c := dial()
	s := accept(first)
	require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String())

	second := h.take()
	require.NoError(t, first.Close())
	_, err = first.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
	c = dial()
	s = accept(second)
	require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String(), "the new view takes it")
	require.Equal(t, ln.Addr(), second.Addr())

	// No view takes connections: they are closed.
	require.NoError(t, second.Close())
	c = dial()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "%v", err)

	require.NoError(t, h.Close())
	_, err = h.take().Accept()
	require.ErrorIs(t, err, net.ErrClosed, "the listener's error")
}

// A connection offered to a view that closes before it takes it goes to
// the next one. The listener is a channel, so that synctest.Wait tells
// when the handoff holds the connection, offering it to the view.
func TestHandoffWaitingConnGoesToNextView(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
		h := newHandoff(ln)
		defer h.Close()
		second := h.take()
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		ln.conns <- s
		synctest.Wait() // accepted, and offered to second
		third := h.take()
		require.NoError(t, second.Close())
		got := make(chan net.Conn, 1)
		go func() {
			conn, _ := third.Accept()
			got <- conn
		}()
		synctest.Wait()
		select {
		case conn := <-got:
			require.Equal(t, s, conn)
		default:
			t.Fatal("the connection offered to a closed view never reached the next one")
		}
	})
}

// chanListener is a listener whose connections come from a channel.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
