package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// benchSeries is a daily-seasonal series at 5-minute steps with noise and
// occasional spikes.
func benchSeries(n int) []float64 {
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float64, n)
	for i := range v {
		v[i] = 50 + 20*math.Sin(2*math.Pi*float64(i)/288) + r.NormFloat64()
		if r.IntN(500) == 0 {
			v[i] += 30
		}
	}
	return v
}

func BenchmarkUpdate(b *testing.B) {
	vals := benchSeries(1 << 16)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range Algorithms() {
		b.Run(name, func(b *testing.B) {
			d, err := New(name, Options{})
			if err != nil {
				b.Fatal(err)
			}
			// Warm up past the learning phase and a few seasons.
			for i := range 4096 {
				d.Update(t0.Add(time.Duration(i)*5*time.Minute), vals[i%len(vals)])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := 4096 + i
				d.Update(t0.Add(time.Duration(j)*5*time.Minute), vals[j%len(vals)])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(Size(d)), "bytes/series")
		})
	}
}
