//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write call read(2) and write(2)
// through syscall.RawSyscall, inside the callbacks of syscall.RawConn's Read
// and Write. Those park the goroutine on the runtime's network poller while
// the socket is not ready, and honour the connection's deadlines, as
// net.Conn's own Read and Write do. The socket is non-blocking, so a call
// never holds its thread for longer than the kernel's copy.
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
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.rb))), uintptr(len(c.rb)))
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

// write is the write callback: it writes until all of wb is written or
// write(2) fails, and reports false, to wait for the socket to be writable,
// when write(2) says EAGAIN.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wb) {
		p := c.wb[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
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
		return 0, c.opError("read", e)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, as net.Conn's Write does, or returns how much it
// wrote and why it stopped.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	c.wb, c.wn, c.werr = b, 0, 0
	err := c.rc.Write(c.writeFn)
	n, e := c.wn, c.werr
	c.wb = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, rename(err, "write")
	case e != 0:
		return n, c.opError("write", e)
	}
	return n, nil
}

func (c *Conn) opError(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, e)}
}

// rename gives RawConn's errors, whose operations are "raw-read" and
// "raw-write", the operation net.Conn's would have.
func rename(err error, op string) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
	}
	return err
}
