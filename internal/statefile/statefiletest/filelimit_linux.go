package statefiletest

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// fileLimitTest names, in a child process's environment, the test it runs
// under a file size limit (WithFileLimit).
const fileLimitTest = "MODELMON_TEST_FILE_LIMIT"

// WithFileLimit runs body in a child process (the test, run again), where
// limit(n) caps the size of the files it writes at n bytes (RLIMIT_FSIZE):
// a write past the cap writes what fits, then fails with "file too large",
// as a write does on a disk that fills up partway through it, which
// /dev/full (FailWrites) can't show. limit(-1) lifts the cap. The cap is the
// child's alone, and the child's failures fail the test. The test must be
// a top-level one, and body all of it: the parent runs nothing else.
func WithFileLimit(t *testing.T, body func(limit func(n int64))) {
	t.Helper()
	if os.Getenv(fileLimitTest) != t.Name() {
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), fileLimitTest+"="+t.Name())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the test under a file size limit:\n%s", out)
		require.Contains(t, string(out), "--- PASS: "+t.Name()+" ", "the test under a file size limit did not run:\n%s", out)
		return
	}
	// The kernel signals a write past the cap; ignored, the write fails.
	signal.Ignore(syscall.SIGXFSZ)
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) })
	body(func(n int64) {
		t.Helper()
		lim := old
		if n >= 0 {
			lim.Cur = uint64(n)
		}
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim))
	})
}
