//go:build !linux

package rawio

import "net"

// Wrap returns c: only Linux has a Conn.
func Wrap(c net.Conn) net.Conn { return c }
