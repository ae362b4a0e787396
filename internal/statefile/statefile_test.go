package statefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

var errBad = errors.New("bad test file")

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	e := NewWriter(&buf, "TEST", 3)
	e.Byte(7)
	e.Uvarint(300)
	e.Varint(-2)
	e.Str("")
	e.Str("é")
	e.Float64(-0.5)
	e.Float64(math.Inf(1))
	long := strings.Repeat("x", 2*flushAt) // written out in more than one chunk
	for range 3 {
		e.Str(long)
		e.Spill()
	}
	require.NoError(t, e.Close())
	data := buf.Bytes()
	require.Equal(t, "TEST\x03", string(data[:5]))

	d, err := Open(data, "TEST", 3, errBad)
	require.NoError(t, err)
	require.Equal(t, byte(3), d.Version())
	require.Equal(t, byte(7), d.Byte())
	require.Equal(t, uint64(300), d.Uvarint())
	require.Equal(t, int64(-2), d.Varint())
	require.Empty(t, d.Str())
	require.Equal(t, "é", d.Str())
	require.Equal(t, -0.5, d.Float64())
	require.Equal(t, math.Inf(1), d.Float64())
	for range 3 {
		require.Equal(t, long, d.Str())
	}
	require.NoError(t, d.End())

	// Bytes left over are an error.
	d, err = Open(data, "TEST", 3, errBad)
	require.NoError(t, err)
	d.Byte()
	require.EqualError(t, d.End(), fmt.Sprintf("bad test file: %d trailing bytes", len(data)-len("TEST\x03\x07")-4))
}

// A file of an older version is read; reading past the end fails, and every
// read after it returns zero.
func TestReadPastTheEnd(t *testing.T) {
	var buf bytes.Buffer
	e := NewWriter(&buf, "TEST", 1)
	e.Uvarint(300)
	e.Uvarint(5) // a string's length, without the string
	require.NoError(t, e.Close())

	d, err := Open(buf.Bytes(), "TEST", 2, errBad)
	require.NoError(t, err)
	require.Equal(t, byte(1), d.Version())
	require.Equal(t, uint64(300), d.Uvarint())
	require.Empty(t, d.Str())
	require.EqualError(t, d.Err(), "bad test file: string of 5 bytes past the end")
	require.Zero(t, d.Byte())
	require.Zero(t, d.Float64())
	require.EqualError(t, d.End(), "bad test file: string of 5 bytes past the end")

	d, err = Open(buf.Bytes(), "TEST", 2, errBad)
	require.NoError(t, err)
	require.Zero(t, d.Items(), "300 items can't fit in 1 byte")
	require.EqualError(t, d.Err(), "bad test file: 300 items past the end")
}

func TestOpenDamaged(t *testing.T) {
	var buf bytes.Buffer
	e := NewWriter(&buf, "TEST", 2)
	e.Str("payload")
	require.NoError(t, e.Close())
	good := buf.Bytes()
	flipped := bytes.Clone(good)
	flipped[7] ^= 1

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "bad test file: missing header"},
		{"other magic", append([]byte("TSET"), good[4:]...), "bad test file: missing header"},
		{"newer", good, "bad test file: unsupported version 2"},
		{"truncated", good[:len(good)-1], "bad test file: checksum mismatch (truncated or altered, 16 bytes)"},
		{"flipped bit", flipped, "bad test file: checksum mismatch (truncated or altered, 17 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			latest := byte(2)
			if tc.name == "newer" {
				latest = 1
			}
			d, err := Open(tc.data, "TEST", latest, errBad)
			require.Nil(t, d)
			require.ErrorIs(t, err, errBad)
			require.EqualError(t, err, tc.want)
		})
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n > flushAt {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	e := NewWriter(&failWriter{}, "TEST", 1)
	for range 3 {
		e.Str(strings.Repeat("x", flushAt))
		e.Spill()
	}
	require.EqualError(t, e.Close(), "disk full")
}

// WriteFile replaces the file only with a complete one.
func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	write := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	require.NoError(t, WriteFile(path, write("first")))
	require.ErrorContains(t, WriteFile(path, func(w io.Writer) error {
		_ = write("half")(w)
		return errors.New("disk full")
	}), "disk full")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "first", string(got), "a failed write leaves the last file")
	require.NoFileExists(t, path+".tmp", "what the failed write wrote is removed")
	require.NoError(t, WriteFile(path, write("second")))
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "second", string(got))

	// A crash's temporary file is overwritten, not read.
	require.NoError(t, os.WriteFile(path+".tmp", []byte("torn by a crash, and longer"), 0o644))
	require.NoError(t, WriteFile(path, write("third")))
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "third", string(got))
	require.NoFileExists(t, path+".tmp")
}

// WriteFile flushes the new file to the disk before it renames it over the
// last one, then flushes the directory that holds the rename; a file that
// can't be flushed replaces nothing.
func TestWriteFileSyncs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
	var synced []string
	var failSync error
	fsync = func(f *os.File) error {
		// What path holds when each is flushed.
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		synced = append(synced, f.Name()+": "+string(got))
		if failSync != nil && f.Name() != dir {
			return failSync
		}
		return f.Sync()
	}
	t.Cleanup(func() { fsync = (*os.File).Sync })

	require.NoError(t, WriteFile(path, func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }))
	require.Equal(t, []string{path + ".tmp: old", dir + ": new"}, synced)

	synced, failSync = nil, errors.New("input/output error")
	require.EqualError(t, WriteFile(path, func(w io.Writer) error { _, err := io.WriteString(w, "newer"); return err }), "input/output error")
	require.Equal(t, []string{path + ".tmp: new"}, synced)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "new", string(got))
	require.NoFileExists(t, path+".tmp")
}

// Writes of one path at once (a periodic snapshot and the one at shutdown)
// take turns: each leaves a whole file, and none fails.
func TestWriteFileAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	const writers, writes = 4, 25
	contents := make([]string, writers)
	for i := range contents {
		// Longer than a Writer's chunk, so each is written in parts.
		contents[i] = strings.Repeat(string(rune('a'+i)), 3*flushAt/(i+1))
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*writes)
	for i := range writers {
		wg.Go(func() {
			for range writes {
				errs <- WriteFile(path, func(w io.Writer) error {
					e := NewWriter(w, "TEST", 1)
					for k := 0; k < len(contents[i]); k += 1 << 10 {
						e.Str(contents[i][k:min(k+1<<10, len(contents[i]))])
						e.Spill()
					}
					return e.Close()
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	d, err := Open(data, "TEST", 1, errBad)
	require.NoError(t, err, "a whole file")
	var got strings.Builder
	for d.Len() > 0 {
		got.WriteString(d.Str())
	}
	require.NoError(t, d.End())
	require.Contains(t, contents, got.String())
}
