//go:build unix

package exporter

import (
	"net"
	"syscall"
)

// peerClosed reports whether the peer of an idle connection has closed it,
// reset it, or sent something unasked, any of which makes it unfit for the
// next request. It peeks without blocking and consumes nothing.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var closed bool
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case nil:
			closed = true // 0 bytes: the peer's FIN; more: bytes nobody asked for
		case syscall.EAGAIN, syscall.EINTR:
		default:
			closed = true // ECONNRESET and the like
		}
		return true
	})
	return closed || err != nil
}
