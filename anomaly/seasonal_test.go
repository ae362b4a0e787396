package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestShiftAlarmsOnce: after a level shift that persists, the seasonal
// detector and the ensemble alarm at the shift and then take it as the new
// normal, for good: from two seasons after the shift on, the seasonal
// detector expects the shifted series within a few noise units, and neither
// alarms again once the shift's first alarms have settled (settle points).
// Before, where the residual window held fewer than four seasons, the
// seasonal expectation (the median of the last three seasons, plus the
// median of the recent residuals) took the shift in twice: the residuals'
// median had taken it in within half a window of residuals, and two seasons
// after the shift the median of the seasons took it in too. It then
// expected the old level plus twice the shift, missing by the whole shift,
// and alarmed two seasons after it (the ensemble at 5-minute and 2-minute
// steps, the seasonal detector at 2-minute steps).
func TestShiftAlarmsOnce(t *testing.T) {
	const settle = 64
	for _, step := range []time.Duration{2 * time.Minute, 5 * time.Minute, 10 * time.Minute, time.Hour} {
		p := int(24 * time.Hour / step) // the season: a day
		for _, name := range []string{"seasonal", Default} {
			for _, delta := range []float64{20, 100, -100} {
				for seed := range uint64(3) {
					onset := max(spikeAt, 6*p)
					n := onset + 4*p + 600
					r := rand.New(rand.NewPCG(seed, 1))
					v, clean := make([]float64, n), make([]float64, n)
					for i := range v {
						clean[i] = 100 + 10*math.Sin(2*math.Pi*float64(i)/float64(p))
						if i >= onset {
							clean[i] += delta
						}
						v[i] = clean[i] + r.NormFloat64()
					}
					d, _ := New(name, Options{})
					found := false
					for i := range v {
						res := d.Update(t0.Add(time.Duration(i)*step), v[i])
						require.False(t, res.Score >= Threshold && i > onset+settle,
							"%s, season %d, shift %g, seed %d: alarm %d points after the shift (%s, expected %.1f, value %.1f)",
							name, p, delta, seed, i-onset, res.Detector, res.Expected, v[i])
						if res.Score >= Threshold && i >= onset {
							found = true
						}
						if name == "seasonal" && i >= onset+2*p {
							require.InDelta(t, clean[i], res.Expected, 5,
								"season %d, shift %g, seed %d: expected value %d points after the shift", p, delta, seed, i-onset)
						}
					}
					require.True(t, found, "%s, season %d, shift %g, seed %d: shift not found", name, p, delta, seed)
				}
			}
		}
	}
}
