package drift

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func benchFeature(b testing.TB, n int) *Feature {
	r := rand.New(rand.NewPCG(1, 2))
	return numericProfile(b, draw(r, samplers[0], n)).Features[0]
}

// BenchmarkAdd counts one value into a feature's window with the default spans (5m,
// 1h, 1d of 12 sub-windows each) and 200 fine bins. Values are random, so the
// binary search's branches would be unpredictable if it had any; time advances by a
// millisecond per value, so sub-windows rotate as they would live.
func BenchmarkAdd(b *testing.B) {
	f := benchFeature(b, 100_000)
	w, _ := NewWindow(f, WindowOptions{})
	r := rand.New(rand.NewPCG(3, 4))
	vals := make([]float64, 1<<10)
	for i := range vals {
		vals[i] = r.NormFloat64()
	}
	times := make([]time.Time, 1<<10)
	for i := range times {
		times[i] = t0.Add(time.Duration(i) * time.Millisecond)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.Add(times[i&(1<<10-1)], vals[i&(1<<10-1)])
		i++
	}
}

// BenchmarkBin finds the fine bin of a value: the guide table, or the binary search
// (upperBound) it saves.
func BenchmarkBin(b *testing.B) {
	f := benchFeature(b, 100_000)
	r := rand.New(rand.NewPCG(3, 4))
	vals := make([]float64, 1<<10)
	for i := range vals {
		vals[i] = r.NormFloat64()
	}
	for _, bm := range []struct {
		name string
		fn   func(float64) int
	}{{"guide", f.bin}, {"binary-search", func(v float64) int { return upperBound(f.Numeric.Edges, v) }}} {
		b.Run(bm.name, func(b *testing.B) {
			s, i := 0, 0
			for b.Loop() {
				s += bm.fn(vals[i&(1<<10-1)])
				i++
			}
			_ = s
		})
	}
}

// BenchmarkAddBytes counts one category given as bytes, as the payload parser
// delivers it.
func BenchmarkAddBytes(b *testing.B) {
	cats := []string{"paris", "oslo", "lima", "tokyo", "nairobi", "quito", "perth", "rome"}
	var col []string
	for i := range 1000 {
		col = append(col, cats[i*i%len(cats)])
	}
	p, _ := BuildProfile([]Column{{Name: "city", Str: col}}, BuildOptions{})
	w, _ := NewWindow(p.Features[0], WindowOptions{})
	keys := make([][]byte, len(cats))
	for i, c := range cats {
		keys[i] = []byte(c)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.AddBytes(t0, keys[i%len(keys)])
		i++
	}
}

// BenchmarkStatistics measures each statistic on a window of 1000 values against a
// reference of 100,000: the coarse ones on 12 bins, KS and Wasserstein on 202.
func BenchmarkStatistics(b *testing.B) {
	f := benchFeature(b, 100_000)
	r := rand.New(rand.NewPCG(5, 6))
	ref := f.reference()
	cur := windowOf(b, f, draw(r, samplers[1], 1000))
	rc, cc := f.Coarse(ref.Bins), f.Coarse(cur.Bins)
	var sink float64
	for _, bm := range []struct {
		name string
		fn   func()
	}{
		{"psi", func() { sink = PSI(rc, cc) }},
		{"jensenshannon", func() { sink = JS(rc, cc) }},
		{"hellinger", func() { sink = Hellinger(rc, cc) }},
		{"chisquare", func() { sink, _, _ = ChiSquare(rc, cc) }},
		{"ks", func() { sink, _ = KS(ref.Bins, cur.Bins) }},
		{"wasserstein", func() { sink = Wasserstein(f.Numeric.Edges, ref, cur) }},
		{"missing", func() { sink, _ = MissingRate(10, 100_010, 3, 1003) }},
		{"all", func() {
			var m measure
			measureAll(f, &ref, &cur, newScratch(f), &m)
			sink = m.score[0]
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bm.fn()
			}
		})
	}
	_ = sink
}

// BenchmarkScore is Detector.Score for one numeric feature, every statistic and the
// decision, with its thresholds already calibrated.
func BenchmarkScore(b *testing.B) {
	f := benchFeature(b, 100_000)
	p := &Profile{Version: 1, Features: []*Feature{f}}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	d, _ := NewDetector(p, DefaultOptions())
	r := rand.New(rand.NewPCG(7, 8))
	cur := windowOf(b, f, draw(r, samplers[0], 1000))
	if _, err := d.Score("x", cur); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		d.Score("x", cur)
	}
}

// BenchmarkCalibrate measures one threshold computation: 1999 simulated windows of
// 1000 values against a reference of 50,000.
func BenchmarkCalibrate(b *testing.B) {
	f := benchFeature(b, 50_000)
	p := &Profile{Version: 1, Features: []*Feature{f}}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, _ := NewCalibrator(p, CalibratorOptions{})
		c.Thresholds("x", 1000, 1000)
	}
}

// BenchmarkMemory reports the memory of a numeric feature's window: per span (one
// window length of 12 sub-windows) and for the default three spans.
func BenchmarkMemory(b *testing.B) {
	f := benchFeature(b, 100_000)
	var w *Window
	for b.Loop() {
		w, _ = NewWindow(f, WindowOptions{})
	}
	b.ReportMetric(float64(w.SpanBytes()), "bytes/feature/window")
	b.ReportMetric(float64(w.Bytes()), "bytes/feature")
	b.ReportMetric(math.NaN(), "ns/op") // not a time measurement
}
