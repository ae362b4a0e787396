//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// maxChunk bounds what one read(2) or write(2) moves. A raw call keeps its
// P (the runtime's right to run Go code) for its whole length, and a write
// on loopback does the receiver's work as well as the copy: with one P, a
// write of the megabytes a socket buffer may take would hold every other
// goroutine for as long as that takes. Write lets them run between chunks.
const maxChunk = 256 << 10

// Conn is a TCP connection whose Read and Write call read(2) and write(2)
// through syscall.RawSyscall, inside the callbacks of syscall.RawConn's Read
// and Write. Those park the goroutine on the runtime's network poller while
// the socket is not ready, and honour the connection's deadlines, as
// net.Conn's own Read and Write do. The socket is non-blocking, so a call
// never holds its thread for longer than the kernel's copy of at most
// maxChunk bytes.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	// One Read and one Write at a time use their half; RawConn's Read and
	// Write serialise on the descriptor's own locks, but the fields are set
	// before.
	rmu    sync.Mutex
	rb     []byte
	rn     int
	rerr   syscall.Errno
	readFn func(uintptr) bool

	wmu     sync.Mutex
	wb      []byte
	wn      int
	werr    syscall.Errno
	wshort  bool // write(2) wrote nothing and said nothing
	writeFn func(uintptr) bool
}

// Wrap returns c as a *Conn when it is a *net.TCPConn, and c itself
// otherwise (a TLS or Unix socket connection, say).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: tc, rc: rc}
	rw.readFn = rw.read
	rw.writeFn = rw.write
	return rw
}

// read is the read callback: it reports false, to wait for the socket to be
// readable, only when read(2) says EAGAIN.
func (c *Conn) read(fd uintptr) bool {
	p := c.rb[:min(len(c.rb), maxChunk)]
	for {
		n, e := sysRead(fd, p)
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

// write is the write callback: it writes at most maxChunk bytes, and
// reports false, to wait for the socket to be writable, when write(2) says
// EAGAIN. Write calls it until all is written.
func (c *Conn) write(fd uintptr) bool {
	for {
		p := c.wb[c.wn:]
		p = p[:min(len(p), maxChunk)]
		n, e := sysWrite(fd, p)
		switch {
		case e == 0 && n == 0 && len(p) > 0:
			// As internal/poll: a write that moves nothing and fails
			// nothing would loop for ever.
			c.wshort = true
			return true
		case e == 0:
			c.wn += int(n)
			return true
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false
		}
		c.werr = e
		return true
	}
}

// Read reads as net.Conn's Read does: io.EOF at the end, and its errors
// are *net.OpErrors, a deadline's matching os.ErrDeadlineExceeded.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		// As net.Conn's: a zero-length read reads nothing.
		return 0, nil
	}
	c.rmu.Lock()
	c.rb, c.rn, c.rerr = b, 0, 0
	err := c.rc.Read(c.readFn)
	n, e := c.rn, c.rerr
	c.rb = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, rename(err, "read")
	case e != 0:
		return 0, c.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, as net.Conn's Write does, or returns how much it
// wrote and why it stopped.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	c.wb, c.wn, c.werr, c.wshort = b, 0, 0, false
	var err error
	for {
		err = c.rc.Write(c.writeFn)
		if err != nil || c.werr != 0 || c.wshort || c.wn == len(b) {
			break
		}
		// More than maxChunk: let the other goroutines run between
		// chunks, as the runtime would during a blocking write.
		runtime.Gosched()
	}
	n, e, short := c.wn, c.werr, c.wshort
	c.wb = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, rename(err, "write")
	case e != 0:
		return n, c.opError("write", os.NewSyscallError("write", e))
	case short:
		return n, c.opError("write", io.ErrUnexpectedEOF)
	}
	return n, nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// rename gives RawConn's errors, whose operations are "raw-read" and
// "raw-write", the operation net.Conn's would have.
func rename(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}
