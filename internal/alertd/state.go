package alertd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/modelmon/modelmon/internal/statefile"
)

// writeJSON writes v as JSON to path, for the state alertd keeps under
// --storage.path: atomically and durably (statefile.WriteFile), so a failed
// write or a crash, a power cut included, leaves the last whole file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return statefile.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// stateFile is a JSON file under --storage.path that keeps a store's
// state. save writes it outside the lock that guards the state: that lock
// is taken by the pipeline's stages (or the escalation loop, or the
// intake), and a write flushes the file and its directory to the disk
// (statefile.WriteFile), which on a slow or busy disk takes long. Holding
// the lock meanwhile would stall every alert behind one API call.
type stateFile struct {
	path string
	// mu is taken before the store's lock and held until the write is
	// done: snapshots are taken and written in turn, so a later snapshot
	// is never overwritten by an earlier one.
	mu sync.Mutex
	// last is the encoding last written: a snapshot that encodes the same
	// is not written again.
	last []byte
	// taken is when the last snapshot was taken (trySaveEvery).
	taken time.Time
	// write is statefile.WriteFile; tests make it block or fail.
	write func(path string, write func(io.Writer) error) error
	// marshal is json.Marshal; tests count the encodings.
	marshal func(any) ([]byte, error)
}

func newStateFile(path string) *stateFile {
	return &stateFile{path: path, write: statefile.WriteFile, marshal: json.Marshal}
}

// save writes the state snapshot returns. snapshot runs, and its result
// is encoded, with lock held; the write happens once lock is released, so
// the stages that take lock go on meanwhile. snapshot returns nil when
// there is nothing to write. The caller must not hold lock. A save that
// waits for another's write takes its snapshot when its turn comes: the
// file ends with the latest state, and each save returns once a state as
// recent as the one it changed is written (or with its error).
func (f *stateFile) save(lock sync.Locker, snapshot func() any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saveLocked(lock, snapshot)
}

// trySave is save for a caller that saves again soon (a loop, at every
// pass): while another write is in progress it returns at once, leaving
// what it changed to its next call, rather than wait for the disk.
func (f *stateFile) trySave(lock sync.Locker, snapshot func() any) error {
	if !f.mu.TryLock() {
		return nil
	}
	defer f.mu.Unlock()
	return f.saveLocked(lock, snapshot)
}

// trySaveEvery is trySave at most once per interval: a loop that changes
// the state many times a second, such as the escalation loop carrying out
// the notifications of a batch of new incidents one by one, writes it whole
// once per interval instead of once per change, which for n changes of a
// state of n entries would write O(n²) bytes. A call within the interval
// of the last snapshot returns at once: its change goes with a later call,
// so the caller must call again (at its next pass), and save at shutdown.
// A snapshot that is nil (nothing changed) does not count: the first
// change after a quiet spell is written at the next call.
func (f *stateFile) trySaveEvery(interval time.Duration, lock sync.Locker, snapshot func() any) error {
	if !f.mu.TryLock() {
		return nil
	}
	defer f.mu.Unlock()
	if !f.taken.IsZero() && time.Since(f.taken) < interval {
		return nil
	}
	return f.saveLocked(lock, snapshot)
}

// saveLocked is save with f.mu held.
func (f *stateFile) saveLocked(lock sync.Locker, snapshot func() any) error {
	taken := time.Now()
	lock.Lock()
	v := snapshot()
	var (
		b   []byte
		err error
	)
	if v != nil {
		b, err = f.marshal(v)
	}
	lock.Unlock()
	if v == nil {
		return nil
	}
	f.taken = taken
	switch {
	case err != nil:
		return err
	case f.last != nil && bytes.Equal(b, f.last):
		return nil
	}
	if err := f.write(f.path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return err
	}
	f.last = b
	return nil
}

// readJSON reads path into v. A missing file is not an error: it reports
// false and leaves v as it is.
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}
