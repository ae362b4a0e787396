package quality

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// maxBytesPerEntry is the documented bound on the memory of one pending
// classification prediction with a 16-byte id (see the package comment).
const maxBytesPerEntry = 200

// ids returns n distinct 16-byte ids.
func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%016x", i)
	}
	return out
}

// bytesPerEntry fills a store with n pending predictions with 16-byte ids and
// returns the heap growth per entry, measured after GC.
func bytesPerEntry(t testing.TB, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newStore(t, Options{MaxEntries: n})
	classes := []string{"cat", "dog", "bird"}
	var id [16]byte
	for i := range n {
		// Observe keeps its own copy of the id, so this one is garbage.
		p := Prediction{ID: string(strconv.AppendUint(id[:0:16], uint64(1e15)+uint64(i), 16)), Model: "m", Value: Class(classes[i%3])}
		p.Time = t0
		s.Observe(t0, p)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(t, n, s.Len())
	runtime.KeepAlive(s)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestMemoryPerEntry checks that 1,000,000 pending predictions stay within
// maxBytesPerEntry each.
func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 1,000,000 predictions")
	}
	got := bytesPerEntry(t, 1_000_000)
	t.Logf("%.1f bytes per pending prediction at 1,000,000", got)
	require.Less(t, got, float64(maxBytesPerEntry))
}

func BenchmarkMemoryPerEntry(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(bytesPerEntry(b, 1_000_000), "bytes/entry")
	}
}

// BenchmarkObserve adds predictions to a growing store ("growing", map and
// slice growth included) and to a full one, where each evicts the oldest.
func BenchmarkObserve(b *testing.B) {
	b.Run("growing", func(b *testing.B) {
		b.ReportAllocs()
		s := newStore(b, Options{MaxEntries: 1 << 20})
		id := ids(b.N)
		b.ResetTimer()
		for i := range b.N {
			s.Observe(t0, Prediction{ID: id[i], Model: "m", Value: Class("cat")})
		}
	})
	b.Run("full=100000", func(b *testing.B) {
		b.ReportAllocs()
		const n = 100_000
		s := newStore(b, Options{MaxEntries: n})
		id := ids(b.N + n)
		for i := range n {
			s.Observe(t0, Prediction{ID: id[i], Model: "m", Value: Class("cat")})
		}
		b.ResetTimer()
		for i := range b.N {
			if _, r := s.Observe(t0, Prediction{ID: id[n+i], Model: "m", Value: Class("cat")}); r != ReasonPending {
				b.Fatal(r)
			}
		}
	})
}

func BenchmarkLabel(b *testing.B) {
	for _, n := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprint("pending=", n), func(b *testing.B) {
			b.ReportAllocs()
			s := newStore(b, Options{MaxEntries: n})
			id := ids(b.N + n)
			for i := range n {
				s.Observe(t0, Prediction{ID: id[i], Model: "m", Value: Class("cat")})
			}
			later := t0.Add(time.Minute)
			b.ResetTimer()
			// Each label joins the oldest pending prediction and a new one
			// replaces it, so the store stays at n: the timed loop is Label
			// then Observe; BenchmarkObserve gives the share of the latter.
			for i := range b.N {
				if _, r := s.Label(later, Label{ID: id[i], Value: Class("dog")}); r != ReasonMatched {
					b.Fatal(r)
				}
				s.Observe(later, Prediction{ID: id[n+i], Model: "m", Value: Class("cat")})
			}
		})
	}
}

func BenchmarkLabelOnly(b *testing.B) {
	b.ReportAllocs()
	s := newStore(b, Options{MaxEntries: max(b.N, 1)})
	id := ids(b.N)
	for i := range b.N {
		s.Observe(t0, Prediction{ID: id[i], Model: "m", Value: Class("cat")})
	}
	later := t0.Add(time.Minute)
	b.ResetTimer()
	for i := range b.N {
		if _, r := s.Label(later, Label{ID: id[i], Value: Class("dog")}); r != ReasonMatched {
			b.Fatal(r)
		}
	}
}

func BenchmarkLabelParallel(b *testing.B) {
	b.ReportAllocs()
	s := newStore(b, Options{MaxEntries: 1 << 20})
	b.RunParallel(func(pb *testing.PB) {
		var i int
		buf := make([]byte, 0, 32)
		prefix := fmt.Sprintf("%p-", pb)
		for pb.Next() {
			id := string(strconv.AppendInt(append(buf[:0], prefix...), int64(i), 10))
			i++
			s.Observe(t0, Prediction{ID: id, Model: "m", Value: Class("cat")})
			s.Label(t0, Label{ID: id, Value: Class("cat")})
		}
	})
}

// BenchmarkSnapshot writes 100,000 pending predictions. Observe and Label
// wait only while it copies a chunk of them under the lock: hold-ns is how
// long it holds the lock at once (the median; max-hold-ns the longest,
// which a busy machine's scheduler stretches), locked-ns how long in all.
func BenchmarkSnapshot(b *testing.B) {
	b.ReportAllocs()
	s := newStore(b, Options{})
	for _, id := range ids(100_000) {
		s.Observe(t0, Prediction{ID: id, Model: "m", Value: Class("cat")})
	}
	var size int
	for b.Loop() {
		w := &countWriter{}
		if err := s.Snapshot(w); err != nil {
			b.Fatal(err)
		}
		size = w.n
	}
	b.ReportMetric(float64(size)/100_000, "bytes/entry")

	// The copy's holds of the lock, timed apart as snapshotCopy makes them.
	var holds []time.Duration
	var held time.Duration
	const copies = 10
	for range copies {
		k := s.startCopy()
		for done := false; !done; {
			start := time.Now()
			done = k.step()
			d := time.Since(start)
			holds, held = append(holds, d), held+d
			k.keep()
		}
		k.finish()
	}
	slices.Sort(holds)
	b.ReportMetric(float64(holds[len(holds)/2].Nanoseconds()), "hold-ns")
	b.ReportMetric(float64(holds[len(holds)-1].Nanoseconds()), "max-hold-ns")
	b.ReportMetric(float64(held.Nanoseconds())/copies, "locked-ns")
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
