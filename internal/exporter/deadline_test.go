package exporter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelmon/modelmon/internal/rawio"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestDeadlineSlack(t *testing.T) {
	for _, tc := range []struct {
		timeouts []time.Duration
		want     time.Duration
	}{
		{nil, time.Second},
		{[]time.Duration{0, 0}, time.Second},
		{[]time.Duration{60 * time.Second, 90 * time.Second}, time.Second},
		{[]time.Duration{90 * time.Second, 800 * time.Millisecond, 0}, 50 * time.Millisecond},
		{[]time.Duration{300 * time.Millisecond}, 18750 * time.Microsecond},
	} {
		if got := deadlineSlack(tc.timeouts...); got != tc.want {
			t.Errorf("deadlineSlack(%v) = %v, want %v", tc.timeouts, got, tc.want)
		}
	}
}

// countingConn counts the deadlines handed to the connection under a
// deadlineConn.
type countingConn struct {
	net.Conn
	reads, writes atomic.Int64
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.reads.Add(1)
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.writes.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

// tcpPair returns the two ends of a loopback TCP connection, the first under
// a deadlineConn with slack over a countingConn.
func tcpPair(t *testing.T, slack time.Duration) (*deadlineConn, *countingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	counted := &countingConn{Conn: c}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return newDeadlineConn(counted, slack, true), counted, peer
}

func TestDeadlineConnKeepsHeldDeadline(t *testing.T) {
	c, counted, _ := tcpPair(t, 100*time.Millisecond)
	start := time.Now()
	// Deadlines a request apart, as fasthttp sets them: the runtime gets
	// the first, plus slack, and the ones that land inside it keep it.
	for i := range 50 {
		d := start.Add(time.Minute + time.Duration(i)*time.Millisecond)
		if err := c.SetReadDeadline(d); err != nil {
			t.Fatal(err)
		}
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := c.SetWriteDeadline(d); err != nil {
			t.Fatal(err)
		}
	}
	if r, w := counted.reads.Load(), counted.writes.Load(); r != 1 || w != 1 {
		t.Errorf("the runtime got %d read and %d write deadlines for 50 requests within the slack, want 1 each", r, w)
	}
	// Past the slack, the runtime gets the new one.
	if err := c.SetReadDeadline(start.Add(time.Minute + 200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// Earlier than the held one by more than the slack: so does this one.
	if err := c.SetReadDeadline(start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if r := counted.reads.Load(); r != 3 {
		t.Errorf("the runtime got %d read deadlines, want 3", r)
	}
}

func TestDeadlineConnTimesOutWithinSlack(t *testing.T) {
	const slack = 50 * time.Millisecond
	c, _, _ := tcpPair(t, slack)
	start := time.Now()
	deadline := start.Add(150 * time.Millisecond)
	if err := c.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	// A later deadline inside the slack keeps the held one.
	if err := c.SetReadDeadline(deadline.Add(-20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// The peer never writes: only a deadline ends the Read. How late past
	// the slack it ends is the machine's load; that it ends at all is the
	// deadline's doing (one lost would hold it until the connection closes).
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	var err error
	select {
	case err = <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("Read never timed out")
	}
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want a timeout", err)
	}
	if took < 130*time.Millisecond {
		t.Errorf("Read timed out after %v, before the deadline asked for (130ms)", took)
	}
}

func TestDeadlineConnClearedDeadlineDoesNotFire(t *testing.T) {
	c, counted, peer := tcpPair(t, 10*time.Millisecond)
	// An idle deadline, cleared once the request's first byte came: the
	// runtime still holds it, and a read past it must go on.
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		peer.Write([]byte("late")) //nolint:errcheck
	}()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "late" {
		t.Fatalf("ReadFull = %q, %v; want \"late\", nil", buf, err)
	}
	if r := counted.reads.Load(); r != 2 {
		t.Errorf("the runtime got %d read deadlines, want 2 (the idle one, then none once it fired)", r)
	}
}

func TestDeadlineConnMovedDeadlineDoesNotFireEarly(t *testing.T) {
	c, _, peer := tcpPair(t, 10*time.Millisecond)
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		peer.Write([]byte("x")) //nolint:errcheck
	}()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("Read = %v before the deadline asked for", err)
	}
}

func TestDeadlineConnWriteGoesOnPastClearedDeadline(t *testing.T) {
	c, _, peer := tcpPair(t, 10*time.Millisecond)
	if err := c.SetWriteDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	// More than the socket buffers hold, so the write blocks until the peer
	// reads, which it starts to well after the held deadline.
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(data))))
		got <- b
	}()
	n, err := c.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("the peer read %d bytes, not the %d written", len(b), len(data))
	}
}

// The proxy's timeouts, through fasthttp and lazily held deadlines: a request
// whose body comes slowly is not cut by the idle timeout, requests on one
// keep-alive connection each get the whole upstream timeout, and an idle
// client connection is closed once the idle timeout (plus slack) is over.
func TestProxyDeadlines(t *testing.T) {
	// The timeout leaves each request most of a second to spare on a loaded
	// machine; eight requests of work together outlast it.
	const idle, timeout, work, requests = 150 * time.Millisecond, time.Second, 150 * time.Millisecond, 8
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		time.Sleep(work)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.body), req.body)
		return true
	})
	e := startExporter(t, up.URL(), func(o *Options) {
		o.Proxy.Timeout = timeout
		o.Proxy.IdleTimeout = idle
	})
	c, err := net.Dial("tcp", e.ProxyAddr())
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)

	post := func(body string) {
		t.Helper()
		_, err := fmt.Fprintf(c, "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		require.NoError(t, err)
		resp, err := readRaw(br)
		require.NoError(t, err)
		require.Equal(t, "HTTP/1.1 200 OK", strings.TrimSpace(resp.start))
		require.Equal(t, body, string(resp.body))
	}
	// Requests on the same connection, each well inside the timeout and
	// together longer than it.
	for i := range requests {
		post(fmt.Sprintf("request-%d", i))
	}

	// The idle timeout is armed while a keep-alive connection waits for its
	// next request, and must not cut one whose body comes slowly: half the
	// body, a pause past the idle timeout, then the rest.
	_, err = io.WriteString(c, "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
	require.NoError(t, err)
	time.Sleep(3 * idle)
	// The last request's idle wait starts after the body's end reaches the
	// sidecar and the upstream has worked on it, so the connection can close
	// no sooner than work+idle after this point. Timing from when the
	// response arrives would not do: the sidecar may arm the idle timeout
	// before the client has read the answer.
	sent := time.Now()
	_, err = io.WriteString(c, "56789")
	require.NoError(t, err)
	resp, err := readRaw(br)
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK", strings.TrimSpace(resp.start))
	require.Equal(t, "0123456789", string(resp.body))
	require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "m", "reason": "timeout"}))

	// Idle now: the sidecar closes the connection after the idle timeout,
	// never before it.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	require.GreaterOrEqual(t, time.Since(sent), work+idle)
}

// The proxy's connections, to clients (its listener's) and to the model
// server and the shadow (their dials'), make raw system calls on Linux
// unless --no-proxy.raw-syscalls.
func TestRawSyscallsOption(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw system calls are Linux's")
	}
	up := okUpstream(t)
	upAddr := strings.TrimPrefix(up.URL(), "http://")
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			e := startExporter(t, up.URL(), func(o *Options) {
				o.Proxy.PlainSyscalls = plain
				o.Shadow.Upstream = up.URL()
			})
			check := func(what string, c net.Conn) {
				t.Helper()
				dc, ok := c.(*deadlineConn)
				require.True(t, ok, "%s: %T, want a *deadlineConn", what, c)
				_, raw := dc.Conn.(*rawio.Conn)
				require.Equal(t, !plain, raw, "%s: a %T under the deadlines", what, dc.Conn)
				c.Close()
			}
			for what, hc := range map[string]*fasthttp.HostClient{"model server": e.proxy.client, "shadow": e.shadow.client} {
				c, err := hc.DialTimeout(upAddr, time.Second)
				require.NoError(t, err)
				check(what, c)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			dl := deadlineListener{Listener: ln, raw: e.proxy.raw}
			go func() {
				if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
					c.Close()
				}
			}()
			c, err := dl.Accept()
			require.NoError(t, err)
			check("client", c)
		})
	}
}
