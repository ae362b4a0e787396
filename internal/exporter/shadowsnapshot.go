package exporter

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/modelmon/modelmon/internal/statefile"
)

// shadowPendingFile is the snapshot file of the shadow's pending
// predictions, under --storage.path beside the label join's
// labels.snapshot.
const shadowPendingFile = "shadow-pending.snapshot"

// Snapshot format of the shadow's pending predictions, version 1, in
// package statefile's encoding (varints, a string is its length then its
// bytes, times are Unix nanoseconds):
//
//	magic     "MMSP", then version byte 0x01
//	pending   count; per prediction, oldest first: id, model (a name),
//	          time, flags byte (1 a class, 2 a number), with flag 1 the
//	          class (a name), with flag 2 the number as 8 little-endian bytes
//	          of its float64 bits
//	trailer   CRC-32C (Castagnoli) of all bytes above, 4 bytes big-endian
//
// A name (models' and classes') is written once: the first time as 0 then
// the string, after that as its index among the names so far plus 1.
//
// The bounds (--shadow.max-pending, --labels.ttl) are not saved: those of
// the run that reads the file apply.
const (
	shadowSnapshotMagic   = "MMSP"
	shadowSnapshotVersion = 1

	shadowFlagClass  = 1
	shadowFlagNumber = 2
)

// errShadowCorrupt is wrapped by the errors of a snapshot that is
// truncated, fails its checksum, or does not decode.
var errShadowCorrupt = errors.New("corrupt shadow pending snapshot")

// snapshot writes the predictions waiting for their label to w in the
// format above. It copies them (pendingCopy) and encodes the copy, so that
// the lock is held only while copying, a chunk at a time.
func (sp *shadowPending) snapshot(w io.Writer) error {
	pending := sp.pendingCopy()
	e := statefile.NewWriter(w, shadowSnapshotMagic, shadowSnapshotVersion)
	names := nameWriter{e: e, index: map[string]uint64{}}
	e.Uvarint(uint64(len(pending)))
	for _, s := range pending {
		p := s.p
		e.Spill()
		e.Str(s.id)
		names.write(p.model)
		e.Varint(p.ts)
		var flags byte
		if p.pred.isClass {
			flags |= shadowFlagClass
		}
		if p.pred.isX {
			flags |= shadowFlagNumber
		}
		e.Byte(flags)
		if p.pred.isClass {
			names.write(p.pred.class)
		}
		if p.pred.isX {
			e.Float64(p.pred.x)
		}
	}
	if err := e.Close(); err != nil {
		return fmt.Errorf("couldn't write shadow pending snapshot: %w", err)
	}
	return nil
}

// shadowSaved is a pending prediction as a snapshot writes it.
type shadowSaved struct {
	id string
	p  shadowPair
}

// pendingCopyChunk is how many ids of the order pendingCopy copies per hold
// of the lock: about 0.1 ms (BenchmarkShadowSnapshot's hold-ns).
const pendingCopyChunk = 1024

// pendingCopy returns the predictions waiting for their label, oldest
// first. It copies them a chunk at a time, letting go of the lock in
// between, so that the senders adding the shadow's predictions and the
// label join taking them wait for one chunk at most, however many wait:
// holding it while encoding them all took about 15 ms per 100,000. The copy is not of one instant,
// but each prediction in it was pending when it was copied, and it is as
// good for a restart: one added meanwhile is in it when the copy reaches
// it; one joined or dropped after it was copied is in it, and waits after
// a restart for a label that has come, until --labels.ttl, as those of a
// snapshot taken just before its label do; one added again under its id
// is in it once, with its last prediction, as live.
func (sp *shadowPending) pendingCopy() []shadowSaved {
	sp.mu.Lock()
	n, began := len(sp.byID), sp.seq
	sp.mu.Unlock()
	out := make([]shadowSaved, 0, n+n/8)
	chunk := make([]shadowSaved, 0, pendingCopyChunk)
	var next uint64
	for done := false; !done; {
		chunk, next, done = sp.copyChunk(chunk[:0], next)
		out = append(out, chunk...) // growing it copies it: not under the lock
	}
	// An id added again since the copy began may have been copied
	// before too, with its earlier prediction, which the later replaced.
	var again map[string]uint64
	for _, s := range out {
		if s.p.seq > began {
			if again == nil {
				again = map[string]uint64{}
			}
			again[s.id] = s.p.seq
		}
	}
	if again != nil {
		out = slices.DeleteFunc(out, func(s shadowSaved) bool {
			last, ok := again[s.id]
			return ok && s.p.seq < last
		})
	}
	return out
}

// copyChunk appends to chunk the pending predictions of the next
// pendingCopyChunk ids of the order from seq next on, under the lock, and
// returns it with the seq to go on from and whether it reached the end.
// The order's seqs increase, so the copy goes on from where it was,
// wherever trim has moved the order since.
func (sp *shadowPending) copyChunk(chunk []shadowSaved, next uint64) ([]shadowSaved, uint64, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	order := sp.order[sp.head:]
	i, _ := slices.BinarySearchFunc(order, next, func(o pendingID, seq uint64) int { return cmp.Compare(o.seq, seq) })
	end := min(i+pendingCopyChunk, len(order))
	for _, o := range order[i:end] {
		if p, ok := sp.live(o); ok {
			chunk = append(chunk, shadowSaved{o.id, p})
		}
	}
	if end > i {
		next = order[end-1].seq + 1
	}
	return chunk, next, end == len(order)
}

// nameWriter writes names, each string once.
type nameWriter struct {
	e     *statefile.Writer
	index map[string]uint64 // plus 1
	// last is the name written last, most often the next one too.
	last  string
	lastK uint64
}

func (n *nameWriter) write(s string) {
	if k := n.lastK; k > 0 && s == n.last {
		n.e.Uvarint(k)
		return
	}
	k, ok := n.index[s]
	if ok {
		n.e.Uvarint(k)
	} else {
		k = uint64(len(n.index)) + 1
		n.index[s] = k
		n.e.Uvarint(0)
		n.e.Str(s)
	}
	n.last, n.lastK = s, k
}

// readName reads a name, adding a new one to names.
func readName(d *statefile.Reader, names *[]string) (string, bool) {
	k := d.Count()
	if d.Err() != nil {
		return "", false
	}
	if k == 0 {
		s := d.Str()
		*names = append(*names, s)
		return s, d.Err() == nil
	}
	if k > len(*names) {
		return "", false
	}
	return (*names)[k-1], true
}

// restoreShadowPending reads a snapshot written by snapshot into a new
// shadowPending bounded by max and ttl, as at now: the predictions past the
// TTL are dropped, and the oldest beyond max, as they would be live. read is
// the number the snapshot held. The whole input is read and checked first:
// on error, nothing is returned, and the error wraps errShadowCorrupt if
// the data is bad.
func restoreShadowPending(r io.Reader, now time.Time, max int, ttl time.Duration) (sp *shadowPending, read int, err error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, fmt.Errorf("couldn't read shadow pending snapshot: %w", err)
	}
	d, err := statefile.Open(data, shadowSnapshotMagic, shadowSnapshotVersion, errShadowCorrupt)
	if err != nil {
		return nil, 0, err
	}
	type saved struct {
		id string
		p  shadowPair
	}
	var pending []saved
	var names []string
	seen := map[string]bool{}
	for range d.Items() {
		id := d.Str()
		model, ok := readName(d, &names)
		ts, flags := d.Varint(), d.Byte()
		if d.Err() != nil {
			break
		}
		if !ok || id == "" || seen[id] || flags == 0 || flags&^(shadowFlagClass|shadowFlagNumber) != 0 {
			d.Fail("bad prediction %q", id)
			break
		}
		seen[id] = true
		p := shadowPair{model: model, ts: ts}
		if flags&shadowFlagClass != 0 {
			if p.pred.class, ok = readName(d, &names); !ok {
				d.Fail("bad class of prediction %q", id)
				break
			}
			p.pred.isClass = true
		}
		if flags&shadowFlagNumber != 0 {
			p.pred.x, p.pred.isX = d.Float64(), true
		}
		pending = append(pending, saved{id, p})
	}
	if err := d.End(); err != nil {
		return nil, 0, err
	}

	sp = newShadowPending(max, ttl)
	nowNano := now.UnixNano()
	cutoff := nowNano - int64(ttl)
	for _, s := range pending {
		if s.p.ts <= cutoff {
			continue
		}
		sp.put(s.id, s.p)
		sp.trim(nowNano)
	}
	return sp, len(pending), nil
}

// loadShadowPending returns the shadow's pending predictions, with those
// the last run left under storagePath (if any) restored as at now; they are
// saved there again by save. A snapshot that can't be read stops the start,
// as the label store's does: starting without it would silently lose the
// shadow's side of the labels still to come.
func loadShadowPending(storagePath string, max int, ttl time.Duration, now time.Time, logger *slog.Logger) (*shadowPending, error) {
	if storagePath == "" {
		return newShadowPending(max, ttl), nil
	}
	path := filepath.Join(storagePath, shadowPendingFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		sp := newShadowPending(max, ttl)
		sp.path = path
		return sp, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sp, read, err := restoreShadowPending(f, now, max, ttl)
	if err != nil {
		return nil, fmt.Errorf("couldn't restore the shadow's pending predictions from %s: %w", path, err)
	}
	sp.path = path
	logger.Info("Restored the shadow's pending predictions", "file", path, "pending", sp.len(), "dropped", read-sp.len())
	return sp, nil
}

// save writes the pending predictions for the next run, atomically.
func (sp *shadowPending) save() error {
	if sp.path == "" {
		return nil
	}
	return statefile.WriteFile(sp.path, sp.snapshot)
}
