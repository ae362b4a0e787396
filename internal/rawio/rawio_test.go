//go:build linux

package rawio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// tcpPair returns the two ends of a loopback TCP connection, each a *Conn.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	acc := <-ch
	if acc.err != nil {
		t.Fatal(acc.err)
	}
	a, b = Wrap(c), Wrap(acc.c)
	if _, ok := a.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", c, a)
	}
	return a, b
}

// TestConn runs x/net's conformance tests of net.Conn: reads and writes,
// concurrent ones, deadlines past, present and future, Close during a read.
func TestConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, c2 = tcpPair(t)
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

func TestWrapOther(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if c := Wrap(p1); c != p1 {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", c)
	}
}

// A write larger than the socket buffers is written in full, across
// EAGAINs, while the peer reads slowly.
func TestLargeWrite(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	want := make([]byte, 32<<20)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		n, err := a.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		errc <- err
		a.Close()
	}()
	var got bytes.Buffer
	buf := make([]byte, 1000) // reads smaller than the writes
	for {
		n, err := b.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes that differ from the %d written", got.Len(), len(want))
	}
}

// A peer that resets the connection gives ECONNRESET, in a *net.OpError,
// as net.Conn does: the proxy counts upstream errors by it.
func TestReset(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	if err := b.(*Conn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	_, err := a.Read(make([]byte, 10))
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after the peer's reset: %#v, want a read *net.OpError of ECONNRESET", err)
	}
	_, err = a.Write([]byte("x"))
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("Write after the peer's reset: %#v, want a write *net.OpError of EPIPE or ECONNRESET", err)
	}
}

// A read past its deadline fails as net.Conn's does, and a read on a
// closed connection with net.ErrClosed.
func TestDeadlineAndClose(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close()
	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := a.Read(make([]byte, 10))
	var ne net.Error
	var oe *net.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read past its deadline: %#v, want a read timeout", err)
	}
	a.Close()
	if _, err := a.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// BenchmarkPingPong is a request and its answer over loopback, on *Conns
// and on the net.Conns they wrap.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			x, y := tcpPair(b)
			defer x.Close()
			defer y.Close()
			if !raw {
				x, y = x.(*Conn).TCPConn, y.(*Conn).TCPConn
			}
			go func() {
				buf := make([]byte, 512)
				for {
					n, err := y.Read(buf)
					if err != nil {
						return
					}
					if _, err := y.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
			msg := make([]byte, 512)
			buf := make([]byte, 512)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := x.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(x, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
