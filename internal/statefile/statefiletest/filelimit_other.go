//go:build !linux

package statefiletest

import "testing"

// WithFileLimit skips the test: it caps file sizes with Linux's
// RLIMIT_FSIZE.
func WithFileLimit(t *testing.T, body func(limit func(n int64))) {
	t.Skip("no file size limit to fail writes partway through with")
}
