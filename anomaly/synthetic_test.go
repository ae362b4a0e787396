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

// stationarySeries returns n points at 5-minute steps: level 100, Gaussian
// noise of standard deviation 1, nothing else.
func stationarySeries(n int, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float64, n)
	for i := range v {
		v[i] = 100 + r.NormFloat64()
	}
	return v
}

// spikeAt is where the spike tests put their spike: past every warm-up
// (the ensemble's range term trusts its range after 600 points) and with
// full windows.
const spikeAt = 3000

// hugeSpike is the spike: 1e6 times the noise scale.
const hugeSpike = 1e6

// shiftDelay is how many points a detector may take to find a level shift
// of 6 noise units, as the default detector must in TestSyntheticAnomalies.
const shiftDelay = 12

// findShift feeds v to a new detector of the named algorithm and returns
// how many points after onset it first scores at or above Threshold, or -1
// when it does not within shiftDelay points.
func findShift(name string, v []float64, onset int) int {
	d, _ := New(name, Options{})
	for i := range onset + shiftDelay + 1 {
		if d.Update(at(i), v[i]).Score >= Threshold && i >= onset {
			return i - onset
		}
	}
	return -1
}

// TestBlindAfterHugeSpike: one value 1e6 times the noise scale must not
// blind a detector to a later anomaly (a level shift of ±6 noise units,
// which it finds within shiftDelay points on the same series without the
// spike) for more than blind points. Before, every detector missed such a
// shift for about a window after the spike (some 1,020 points): the spike
// inflated the standard deviation in their noise scale about 30,000 times
// for as long as it was in the window; and on its own, the ensemble's
// decayed peak of recent surprises damped every score for about 400 points.
func TestBlindAfterHugeSpike(t *testing.T) {
	gaps := []int{1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 384, 512, 768, 1024, 1280}
	for _, tc := range []struct {
		name  string
		blind int // the latest start after the spike a shift may be missed
	}{
		{"mad", 0},
		{"seasonal", 0},
		{"cusum", 0},
		// The refractory period after the spike's alert, then the peak it
		// leaves, capped at peakCap (about 100 points).
		{Default, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			missed := 0 // the latest gap at which a shift was missed
			for _, gap := range gaps {
				for seed := range uint64(3) {
					for _, delta := range []float64{6, -6} {
						onset := spikeAt + gap
						v := stationarySeries(onset+shiftDelay+1, seed)
						for i := onset; i < len(v); i++ {
							v[i] += delta
						}
						require.GreaterOrEqual(t, findShift(tc.name, v, onset), 0,
							"seed %d, shift %+g at %d: missed even without the spike", seed, delta, onset)
						v[spikeAt] += hugeSpike
						if findShift(tc.name, v, onset) < 0 {
							missed = gap
						}
					}
				}
			}
			t.Logf("latest shift missed: %d points after the spike (0: none)", missed)
			require.LessOrEqual(t, missed, tc.blind, "a shift this many points after the spike was missed")
		})
	}
}

// TestRangeAfterHugeSpike: a level that rises slowly past every value
// seen (10 noise units over 2,000 points), which the level model takes in
// as it rises, is found by the ensemble's range term; one value 1e6 times
// the noise scale (of the same sign) before it must not change when. Before,
// the spike stretched the range of all values seen for good, and the range
// term found no such rise after it, however long after (3,000 points here):
// the ensemble missed it in 15 of these 18 runs (the likelihood term found
// the other 3).
func TestRangeAfterHugeSpike(t *testing.T) {
	const rise, rate = 2000, 0.005 // points, noise units per point
	for _, gap := range []int{128, 1024, 3000} {
		for _, sign := range []float64{1, -1} {
			for seed := range uint64(3) {
				onset := spikeAt + gap
				v := stationarySeries(onset+rise, seed)
				for i := onset; i < len(v); i++ {
					v[i] += sign * rate * float64(i-onset)
				}
				find := func(v []float64) (int, string) {
					d := NewEnsemble(Options{})
					for i := range v {
						if r := d.Update(at(i), v[i]); r.Score >= Threshold && i >= onset {
							return i - onset, r.Detector
						}
					}
					return -1, ""
				}
				clean, by := find(v)
				require.GreaterOrEqual(t, clean, 0, "gap %d, sign %g, seed %d: rise missed even without the spike", gap, sign, seed)
				t.Logf("gap %d, sign %+g, seed %d: found after %d points by %s", gap, sign, seed, clean, by)
				v[spikeAt] += sign * hugeSpike
				spiked, _ := find(v)
				require.Equal(t, clean, spiked, "gap %d, sign %g, seed %d: after the spike", gap, sign, seed)
			}
		}
	}
}

// TestExtremes: the range term's range leaves out one or two values far
// beyond the others, on either side, but not three, not a heavy tail's top
// and not a new level.
func TestExtremes(t *testing.T) {
	f := func(name string, vals []float64, lo, hi float64) {
		t.Helper()
		var x extremes
		for i := range 1000 {
			x.add(float64(i % 10)) // the core: 0 to 9
		}
		for _, v := range vals {
			x.add(v)
		}
		gotLo, gotHi := x.bounds()
		require.Equal(t, [2]float64{lo, hi}, [2]float64{gotLo, gotHi}, name)
	}
	f("none", nil, 0, 9)
	f("one huge", []float64{1e6}, 0, 9)
	f("one huge each side", []float64{1e6, -1e9}, 0, 9)
	f("two huge", []float64{1e6, 2e6}, 0, 9)
	f("two huge each side", []float64{1e6, -1e9, 2e6, -1e6}, 0, 9)
	f("three huge", []float64{1e6, 1e6, 1e6}, 0, 1e6)
	f("within reach", []float64{30, 36}, 0, 36)
	f("beyond reach, then one within", []float64{100, 30}, 0, 30)
	f("new level", []float64{1e6, 1e6 + 1, 1e6 + 2, 1e6 + 3}, 0, 1e6+3)
}

// TestEnsembleMembersAfterHugeSpike: what a huge spike does to each part of
// the ensemble, against an ensemble fed the same series without it. The
// level and seasonal noise scales (winsorised), the normalisation (a
// quantile of recent surprises) and the likelihood term's long-run
// statistics stay within 10% of the clean ensemble's throughout; the peak of
// recent surprises is back within 100 points (peakCap), and the range
// term's range is the clean ensemble's. Before, the level scale was off for
// 1,029 points, the seasonal one for 516 (the windows' lengths), the
// likelihood's statistics for 1,900 to more than 3,000 (fed the scores of a
// blinded level model), the peak for 390, and the range for good (see
// TestRangeAfterHugeSpike).
func TestEnsembleMembersAfterHugeSpike(t *testing.T) {
	for _, kind := range []string{"stationary", "seasonal"} {
		t.Run(kind, func(t *testing.T) {
			v := stationarySeries(spikeAt+2000, 1)
			if kind == "seasonal" {
				v = seasonalSeries(spikeAt+2000, 1)
			}
			clean, spiked := NewEnsemble(Options{}), NewEnsemble(Options{})
			for i := range v {
				x := v[i]
				if i == spikeAt {
					x += hugeSpike
				}
				clean.Update(at(i), v[i])
				spiked.Update(at(i), x)
				if i < spikeAt {
					continue
				}
				near := func(member string, want, got float64) {
					t.Helper()
					require.InDelta(t, want, got, 0.1*math.Abs(want)+1e-9, "%s, %d points after the spike", member, i-spikeAt)
				}
				near("level scale", scale(&clean.lvl, clean.lvl.median()), scale(&spiked.lvl, spiked.lvl.median()))
				near("seasonal scale", scale(&clean.seas.res, clean.seas.res.median()), scale(&spiked.seas.res, spiked.seas.res.median()))
				near("normalisation", clean.hist.quantile(surpriseQuantile), spiked.hist.quantile(surpriseQuantile))
				near("likelihood mean", clean.lik.mu, spiked.lik.mu)
				near("likelihood deviation", math.Sqrt(clean.lik.v2), math.Sqrt(spiked.lik.v2))
				if i > spikeAt+100 {
					near("peak", math.Max(clean.peak, 1), math.Max(spiked.peak, 1))
				}
				lo, hi := clean.ext.bounds()
				slo, shi := spiked.ext.bounds()
				require.Equal(t, [2]float64{lo, hi}, [2]float64{slo, shi}, "range, %d points after the spike", i-spikeAt)
			}
		})
	}
}

// TestHugeShiftIsNewNormal: a level shift that persists is a new normal,
// however large: a robust detector that took the new values for outliers
// would alarm for as long as they last. Each detector alarms at the shift
// and stops within a bounded number of points: the mad and seasonal
// detectors once the shifted values make up a few per cent of their window
// (their standard deviation then takes in the new level), the CUSUM once
// its rolling median has caught up (half a window), and the ensemble
// within its refractory period. Before, the ensemble alarmed once more two
// seasons later (two days at these 5-minute steps), when its seasonal
// model's expectation took the shift in a second time (TestShiftAlarmsOnce).
func TestHugeShiftIsNewNormal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		within int // the last alarm is at most this many points after the shift
	}{
		{"mad", 50},
		{"seasonal", 50},
		{"cusum", 1024/2 + 16},
		{Default, refractory},
	} {
		for _, delta := range []float64{100, 1e6, -1e6} {
			for seed := range uint64(3) {
				v := stationarySeries(spikeAt+3000, seed)
				for i := spikeAt; i < len(v); i++ {
					v[i] += delta
				}
				d, _ := New(tc.name, Options{})
				first, last := -1, -1
				for i := range v {
					if d.Update(at(i), v[i]).Score >= Threshold && i >= spikeAt {
						if first < 0 {
							first = i - spikeAt
						}
						last = i - spikeAt
					}
				}
				require.True(t, first >= 0 && first <= shiftDelay, "%s, shift %g, seed %d: found after %d points", tc.name, delta, seed, first)
				require.LessOrEqual(t, last, tc.within, "%s, shift %g, seed %d: last alarm", tc.name, delta, seed)
			}
		}
	}
}
