package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// onset is where the synthetic anomalies start: after five clean days, so
// that every model is past its warm-up and has seen several seasons.
const onset = 5 * 288

// synthetic returns a daily-seasonal series (see seasonalSeries) of 8 days
// with one anomaly from onset on, as its change to the clean series.
type synthetic struct {
	name string
	// apply changes v (the clean series, noise in noise) from onset on.
	apply func(v, noise []float64)
	// delay is the most points after onset the default detector may take
	// to score at or above Threshold.
	delay int
}

var synthetics = []synthetic{
	{"spike", func(v, _ []float64) { v[onset] += 12 }, 0}, // 12 noise units
	{"level shift", func(v, _ []float64) { // +6 noise units
		for i := onset; i < len(v); i++ {
			v[i] += 6
		}
	}, 12},
	{"seasonal break", func(v, _ []float64) { // the daily cycle stops: flat at the level
		for i := onset; i < len(v); i++ {
			v[i] -= 10 * math.Sin(2*math.Pi*float64(i)/288)
		}
	}, 48},
	{"trend change", func(v, _ []float64) { // +0.1 noise units per point
		for i := onset; i < len(v); i++ {
			v[i] += 0.1 * float64(i-onset)
		}
	}, 96},
	{"variance change", func(v, noise []float64) { // noise ×4
		for i := onset; i < len(v); i++ {
			v[i] += 3 * noise[i]
		}
	}, 24},
}

// TestSyntheticAnomalies: the default detector finds each kind of anomaly
// within its stated delay, and raises nothing before it.
func TestSyntheticAnomalies(t *testing.T) {
	for _, s := range synthetics {
		t.Run(s.name, func(t *testing.T) {
			for seed := range uint64(5) {
				r := rand.New(rand.NewPCG(seed, 1))
				n := 8 * 288
				v, noise := make([]float64, n), make([]float64, n)
				for i := range v {
					noise[i] = r.NormFloat64()
					v[i] = 100 + 10*math.Sin(2*math.Pi*float64(i)/288) + noise[i]
				}
				s.apply(v, noise)
				d, _ := New(Default, Options{})
				found := -1
				for i := range v {
					res := d.Update(at(i), v[i])
					if res.Score >= Threshold {
						require.GreaterOrEqual(t, i, onset, "seed %d: false alarm at %d (%s)", seed, i, res.Detector)
						if found < 0 {
							found = i - onset
							require.False(t, math.IsNaN(res.Expected))
							require.NotEmpty(t, res.Detector)
							t.Logf("seed %d: found after %d points by %s", seed, found, res.Detector)
						}
					}
				}
				require.GreaterOrEqual(t, found, 0, "seed %d: not found", seed)
				require.LessOrEqual(t, found, s.delay, "seed %d", seed)
			}
		})
	}
}
