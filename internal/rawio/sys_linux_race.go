//go:build linux && race

package rawio

import (
	"errors"
	"syscall"
)

// Under the race detector, syscall.Read and syscall.Write tell it that
// what one goroutine wrote to any descriptor happens before what another
// reads after it (their ioSync): a test that talks to a Conn over
// loopback relies on that. A raw call would not tell it, and the detector
// would report races that are none. So race builds make the calls through
// syscall.Read and syscall.Write: the same callbacks, loops and errors,
// with the runtime's bookkeeping of system calls.

// sysRead is read(2) through syscall.Read.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errno(err)
}

// sysWrite is write(2) through syscall.Write.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errno(err)
}

func errno(err error) syscall.Errno {
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO
	}
	return e
}
