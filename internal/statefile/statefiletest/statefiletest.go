// Package statefiletest fails the writes of statefile.WriteFile in tests,
// to check what a failed write leaves behind: the last file, whole, and no
// temporary file.
package statefiletest

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// FailWrites calls write, which is to write each of paths with
// statefile.WriteFile, with those writes failing on their first bytes as on
// a full disk: the temporary file each writes first (the path and ".tmp")
// leads to /dev/full. It then checks that each path holds what it held
// before, or is still missing, and that no temporary file is left, and
// returns write's error. Without /dev/full the test is skipped.
func FailWrites(t testing.TB, write func() error, paths ...string) error {
	t.Helper()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full to fail the writes with")
	}
	before := make([][]byte, len(paths))
	for i, p := range paths {
		before[i] = read(t, p)
		require.NoError(t, os.Symlink("/dev/full", p+".tmp"))
	}
	err := write()
	for i, p := range paths {
		require.Equal(t, before[i], read(t, p), "%s: a failed write leaves the last file as it was", p)
		// Lstat's: the link itself is gone, not only what it leads to.
		require.NoFileExists(t, p+".tmp", "what the failed write wrote is removed")
	}
	return err
}

// read returns the file at path, or nil when there is none.
func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	return b
}
