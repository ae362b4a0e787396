package exporter

import (
	"errors"
	"io"
	"net"
	"testing"
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

	// A connection waiting for a view that closes goes to the next one.
	c = dial()
	time.Sleep(50 * time.Millisecond) // accepted, and offered to second
	third := h.take()
	require.NoError(t, second.Close())
	s = accept(third)
	require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String())

	// No view takes connections: they are closed.
	require.NoError(t, third.Close())
	c = dial()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err), "%v", err)

	require.NoError(t, h.Close())
	_, err = h.take().Accept()
	require.ErrorIs(t, err, net.ErrClosed, "the listener's error")
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
