package exporter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/statefile"
)

// shadowSnapshotPending returns the shadow's pending predictions of every
// kind: classes, numbers, both (a binary classifier's class and score), a
// batch, one taken, one added again and one of another model.
func shadowSnapshotPending(t0 time.Time) *shadowPending {
	sp := newShadowPending(100, time.Hour)
	class := func(c string) shadowPrediction { return shadowPrediction{class: c, isClass: true} }
	sp.add(t0, "fraud", []byte("old"), []shadowPrediction{class("a")})
	sp.add(t0.Add(30*time.Minute), "fraud", []byte("b"), []shadowPrediction{class("a"), class("b"), {}})
	sp.add(t0.Add(30*time.Minute), "house", []byte("h"), []shadowPrediction{{x: -2.5, isX: true}})
	sp.add(t0.Add(31*time.Minute), "churn", []byte("c"), []shadowPrediction{{class: "leave", isClass: true, x: 0.75, isX: true}})
	sp.add(t0.Add(31*time.Minute), "fraud", []byte("again"), []shadowPrediction{class("a")})
	sp.add(t0.Add(32*time.Minute), "fraud", []byte("again"), []shadowPrediction{class("b")})
	sp.add(t0.Add(32*time.Minute), "fraud", []byte("taken"), []shadowPrediction{class("a")})
	sp.take("fraud", "taken")
	return sp
}

// requirePending takes every id of want from sp and requires that nothing
// else waits.
func requirePending(t *testing.T, sp *shadowPending, model string, want map[string]shadowPrediction) {
	t.Helper()
	for id, p := range want {
		got, ok := sp.take(model, id)
		require.True(t, ok, id)
		require.Equal(t, p, got, id)
	}
}

// The shadow's pending predictions read back from their snapshot are those
// written, in the same order, with the same times.
func TestShadowSnapshotRoundTrip(t *testing.T) {
	t0 := time.Unix(1800000000, 0)
	sp := shadowSnapshotPending(t0)
	var buf bytes.Buffer
	require.NoError(t, sp.snapshot(&buf))
	require.Equal(t, "MMSP\x01", buf.String()[:5])

	r, read, err := restoreShadowPending(bytes.NewReader(buf.Bytes()), t0.Add(40*time.Minute), 100, time.Hour)
	require.NoError(t, err)
	require.Equal(t, 6, read)
	require.Equal(t, 6, r.len())

	// A second snapshot of what was restored is identical: order and times
	// are kept.
	var again bytes.Buffer
	require.NoError(t, r.snapshot(&again))
	require.Equal(t, buf.Bytes(), again.Bytes())

	_, ok := r.take("house", "old")
	require.False(t, ok, "a prediction belongs to its model")
	requirePending(t, r, "fraud", map[string]shadowPrediction{
		"old":   {class: "a", isClass: true},
		"b/0":   {class: "a", isClass: true},
		"b/1":   {class: "b", isClass: true},
		"again": {class: "b", isClass: true},
	})
	requirePending(t, r, "house", map[string]shadowPrediction{"h": {x: -2.5, isX: true}})
	requirePending(t, r, "churn", map[string]shadowPrediction{"c": {class: "leave", isClass: true, x: 0.75, isX: true}})
	require.Zero(t, r.len())

	// Restored, they are bounded as live: "old" expires with its time, not
	// at restore plus the TTL.
	r, _, err = restoreShadowPending(bytes.NewReader(buf.Bytes()), t0.Add(40*time.Minute), 100, time.Hour)
	require.NoError(t, err)
	r.add(t0.Add(61*time.Minute), "fraud", []byte("new"), []shadowPrediction{{class: "a", isClass: true}})
	_, ok = r.take("fraud", "old")
	require.False(t, ok)
	require.Equal(t, 6, r.len())

	// An empty snapshot restores as empty.
	buf.Reset()
	require.NoError(t, newShadowPending(1, time.Hour).snapshot(&buf))
	r, read, err = restoreShadowPending(&buf, t0, 1, time.Hour)
	require.NoError(t, err)
	require.Zero(t, read)
	require.Zero(t, r.len())
}

// At restore, the predictions past the TTL as at now are dropped, and then
// the oldest beyond the maximum, as live.
func TestShadowSnapshotRestoreBounds(t *testing.T) {
	t0 := time.Unix(1800000000, 0)
	var buf bytes.Buffer
	require.NoError(t, shadowSnapshotPending(t0).snapshot(&buf))
	data := buf.Bytes()

	for _, tc := range []struct {
		name string
		now  time.Time
		max  int
		ttl  time.Duration
		want []string // of model fraud, but for "h" and "c"
	}{
		{"as saved", t0.Add(time.Hour - time.Second), 100, time.Hour, []string{"old", "b/0", "b/1", "h", "c", "again"}},
		{"past the TTL", t0.Add(time.Hour), 100, time.Hour, []string{"b/0", "b/1", "h", "c", "again"}},
		{"a shorter TTL", t0.Add(40 * time.Minute), 100, 10 * time.Minute, []string{"c", "again"}},
		{"all past the TTL", t0.Add(2 * time.Hour), 100, time.Hour, nil},
		{"beyond the maximum", t0.Add(time.Hour), 3, time.Hour, []string{"h", "c", "again"}},
		{"both", t0.Add(40 * time.Minute), 1, time.Hour, []string{"again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, read, err := restoreShadowPending(bytes.NewReader(data), tc.now, tc.max, tc.ttl)
			require.NoError(t, err)
			require.Equal(t, 6, read)
			require.Equal(t, len(tc.want), r.len())
			for _, id := range tc.want {
				model := map[string]string{"h": "house", "c": "churn"}[id]
				if model == "" {
					model = "fraud"
				}
				_, ok := r.take(model, id)
				require.True(t, ok, id)
			}
		})
	}
}

// A snapshot that is damaged in any way is refused with an error, never
// read in part.
func TestShadowSnapshotCorrupt(t *testing.T) {
	t0 := time.Unix(1800000000, 0)
	var buf bytes.Buffer
	require.NoError(t, shadowSnapshotPending(t0).snapshot(&buf))
	good := buf.Bytes()

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	badVersion := bytes.Clone(good)
	badVersion[4] = 2
	withCRC := func(body []byte) []byte { return binary.BigEndian.AppendUint32(body, statefile.Checksum(body)) }
	// One prediction each: of a name past those so far, of none, of a
	// class past the names; then one id twice.
	badModel := withCRC([]byte("MMSP\x01\x01\x01i\x05\x00\x01\x00"))
	noValue := withCRC([]byte("MMSP\x01\x01\x01i\x00\x01m\x00\x00"))
	badClass := withCRC([]byte("MMSP\x01\x01\x01i\x00\x01m\x00\x01\x05"))
	twice := withCRC([]byte("MMSP\x01\x02\x01i\x00\x01m\x00\x01\x01\x01i\x01\x00\x01\x01"))

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "corrupt shadow pending snapshot: missing header"},
		{"the label store's", []byte("MMQS\x02\x00\x00\x00\x00"), "corrupt shadow pending snapshot: missing header"},
		{"version", badVersion, "corrupt shadow pending snapshot: unsupported version 2"},
		{"truncated", good[:len(good)-3], fmt.Sprintf("corrupt shadow pending snapshot: checksum mismatch (truncated or altered, %d bytes)", len(good)-3)},
		{"flipped bit", flipped, fmt.Sprintf("corrupt shadow pending snapshot: checksum mismatch (truncated or altered, %d bytes)", len(good))},
		{"model", badModel, `corrupt shadow pending snapshot: bad prediction "i"`},
		{"no value", noValue, `corrupt shadow pending snapshot: bad prediction "i"`},
		{"class", badClass, `corrupt shadow pending snapshot: bad class of prediction "i"`},
		{"an id twice", twice, `corrupt shadow pending snapshot: bad prediction "i"`},
		{"trailing bytes", withCRC(append(bytes.Clone(good[:len(good)-4]), 0)), "corrupt shadow pending snapshot: 1 trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, _, err := restoreShadowPending(bytes.NewReader(tc.data), t0, 100, time.Hour)
			require.Nil(t, sp)
			require.ErrorIs(t, err, errShadowCorrupt)
			require.EqualError(t, err, tc.want)
		})
	}

	// Every body cut short, its checksum mended, fails cleanly.
	for n := 5; n < len(good)-4; n++ {
		sp, _, err := restoreShadowPending(bytes.NewReader(withCRC(bytes.Clone(good[:n]))), t0, 100, time.Hour)
		require.Nil(t, sp)
		require.ErrorIs(t, err, errShadowCorrupt, "body cut to %d", n)
	}
}

// FuzzShadowSnapshot checks that no input makes the restore panic, and that
// whatever it accepts can be used and saved again.
func FuzzShadowSnapshot(f *testing.F) {
	t0 := time.Unix(1800000000, 0)
	var buf bytes.Buffer
	require.NoError(f, shadowSnapshotPending(t0).snapshot(&buf))
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		// Most mutations fail the checksum; mend it so the decoder is
		// exercised.
		if len(data) >= 9 {
			body := bytes.Clone(data[:len(data)-4])
			data = binary.BigEndian.AppendUint32(body, statefile.Checksum(body))
		}
		sp, _, err := restoreShadowPending(bytes.NewReader(data), t0, 3, time.Hour)
		if err != nil {
			require.Nil(t, sp)
			return
		}
		require.LessOrEqual(t, sp.len(), 3)
		sp.add(t0, "fraud", []byte("x"), []shadowPrediction{{class: "a", isClass: true}})
		var out bytes.Buffer
		require.NoError(t, sp.snapshot(&out))
	})
}

// The lock is free while a snapshot encodes and writes: the senders add
// and the label join takes meanwhile, and the snapshot holds what was
// pending when it was copied.
func TestShadowSnapshotOutsideTheLock(t *testing.T) {
	t0 := time.Unix(1800000000, 0)
	sp := newShadowPending(100_000, time.Hour)
	a := []shadowPrediction{{class: "a", isClass: true}}
	for i := range 3 * pendingCopyChunk { // more than one chunk, and more than a Writer's buffer
		sp.add(t0, "fraud", fmt.Appendf(nil, "r%d", i), a)
	}
	writes := 0
	w := writerFunc(func(p []byte) (int, error) {
		writes++
		require.True(t, sp.mu.TryLock(), "the lock is held while writing")
		sp.mu.Unlock()
		if writes == 1 {
			sp.add(t0, "fraud", []byte("new"), a)
			_, ok := sp.take("fraud", "r0")
			require.True(t, ok)
		}
		return len(p), nil
	})
	var buf bytes.Buffer
	require.NoError(t, sp.snapshot(io.MultiWriter(&buf, w)))
	require.Greater(t, writes, 1)

	r, read, err := restoreShadowPending(&buf, t0, 100_000, time.Hour)
	require.NoError(t, err)
	require.Equal(t, 3*pendingCopyChunk, read)
	_, ok := r.take("fraud", "r0")
	require.True(t, ok, "taken after the copy")
	_, ok = r.take("fraud", "new")
	require.False(t, ok, "added after the copy")
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Snapshots taken while the senders add and the label join takes, between
// the chunks of a copy too, each read back: every prediction untouched
// meanwhile is in it, and an id added again is in it once, with one of its
// predictions.
func TestShadowSnapshotWhileUsed(t *testing.T) {
	t0 := time.Unix(1800000000, 0)
	sp := newShadowPending(1_000_000, time.Hour)
	a := []shadowPrediction{{class: "a", isClass: true}}
	const stable = 4 * pendingCopyChunk
	for i := range stable {
		sp.add(t0, "fraud", fmt.Appendf(nil, "s%d", i), a)
		sp.add(t0, "fraud", fmt.Appendf(nil, "again%d", i), a)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			// Ids added again, from the oldest on, and others added
			// and joined.
			sp.add(t0, "fraud", fmt.Appendf(nil, "again%d", k%stable), []shadowPrediction{{class: strconv.Itoa(k), isClass: true}})
			sp.add(t0, "fraud", fmt.Appendf(nil, "new%d", k), a)
			sp.take("fraud", fmt.Sprintf("new%d", k-1))
		}
	})
	for range 20 {
		var buf bytes.Buffer
		require.NoError(t, sp.snapshot(&buf))
		r, _, err := restoreShadowPending(&buf, t0, 1_000_000, time.Hour)
		require.NoError(t, err, "each id once")
		for i := range stable {
			_, ok := r.take("fraud", fmt.Sprintf("s%d", i))
			require.True(t, ok, i)
		}
	}
	close(stop)
	wg.Wait()
}

// BenchmarkShadowSnapshot writes 100,000 of the shadow's pending
// predictions (--shadow.max-pending's default). The senders and the label
// join wait only while it copies a chunk of them under the lock: hold-ns
// is how long it holds the lock at once (the median; max-hold-ns the
// longest, which a busy machine's scheduler stretches), locked-ns how long
// in all.
func BenchmarkShadowSnapshot(b *testing.B) {
	b.ReportAllocs()
	t0 := time.Unix(1800000000, 0)
	sp := newShadowPending(100_000, time.Hour)
	preds := []shadowPrediction{{class: "legit", isClass: true}}
	for i := range 100_000 {
		sp.add(t0, "fraud", fmt.Appendf(nil, "6f1c2a9e0b7d-%d", i), preds)
	}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := sp.snapshot(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/100_000, "bytes/entry")

	// The copy's holds of the lock, timed apart as pendingCopy makes them.
	var holds []time.Duration
	var held time.Duration
	const copies = 10
	chunk := make([]shadowSaved, 0, pendingCopyChunk)
	for range copies {
		for next, done := uint64(0), false; !done; {
			start := time.Now()
			chunk, next, done = sp.copyChunk(chunk[:0], next)
			d := time.Since(start)
			holds, held = append(holds, d), held+d
		}
	}
	slices.Sort(holds)
	b.ReportMetric(float64(holds[len(holds)/2].Nanoseconds()), "hold-ns")
	b.ReportMetric(float64(holds[len(holds)-1].Nanoseconds()), "max-hold-ns")
	b.ReportMetric(float64(held.Nanoseconds())/copies, "locked-ns")
}
