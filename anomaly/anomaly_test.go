package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const step = 5 * time.Minute

// at returns the timestamp of point i of a 5-minute series.
func at(i int) time.Time { return t0.Add(time.Duration(i) * step) }

// seasonal returns n points of a daily-seasonal series at 5-minute steps:
// level 100, daily amplitude 10, Gaussian noise of standard deviation 1.
func seasonalSeries(n int, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float64, n)
	for i := range v {
		v[i] = 100 + 10*math.Sin(2*math.Pi*float64(i)/288) + r.NormFloat64()
	}
	return v
}

// requireSame fails unless a and b are the same result, NaN fields
// included.
func requireSame(t *testing.T, a, b Result, msgAndArgs ...any) {
	t.Helper()
	same := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	if !same(a.Score, b.Score) || !same(a.Expected, b.Expected) || !same(a.Lower, b.Lower) || !same(a.Upper, b.Upper) ||
		a.Learning != b.Learning || a.Detector != b.Detector || a.Reason != b.Reason {
		require.Equal(t, a, b, msgAndArgs...)
	}
}

func TestAlgorithms(t *testing.T) {
	require.Equal(t, []string{"cusum", "ensemble", "mad", "seasonal"}, Algorithms())
	require.Contains(t, Algorithms(), Default)
	_, err := New("nope", Options{})
	require.EqualError(t, err, `unknown anomaly algorithm "nope" (have [cusum ensemble mad seasonal])`)
}

// TestConstantScoresZero: a constant series is never anomalous, and every
// detector learns first.
func TestConstantScoresZero(t *testing.T) {
	for _, name := range Algorithms() {
		t.Run(name, func(t *testing.T) {
			d, err := New(name, Options{})
			require.NoError(t, err)
			for i := range 3000 {
				r := d.Update(at(i), 42)
				require.Zero(t, r.Score, "point %d", i)
				require.False(t, math.IsNaN(r.Score))
				if i < 15 {
					require.True(t, r.Learning, "point %d", i)
				}
				if i > 2000 {
					require.False(t, r.Learning, "point %d", i)
					require.Equal(t, 42.0, r.Expected)
				}
			}
		})
	}
}

// TestWarmUp: no score from too little history.
func TestWarmUp(t *testing.T) {
	v := seasonalSeries(400, 3)
	v[50] = 1e6 // a huge spike during warm-up is not scored
	for _, name := range Algorithms() {
		t.Run(name, func(t *testing.T) {
			d, err := New(name, Options{MinHistory: 100})
			require.NoError(t, err)
			for i := range 100 {
				r := d.Update(at(i), v[i])
				require.True(t, r.Learning, "point %d", i)
				require.Zero(t, r.Score, "point %d", i)
				require.Equal(t, "learning", r.Reason)
			}
		})
	}
}

// TestSkippedPoints: NaN, infinite values, repeated and out-of-order
// timestamps score 0 with a reason and leave the state as it was: the
// detector then answers exactly as one that never saw them.
func TestSkippedPoints(t *testing.T) {
	v := seasonalSeries(1500, 5)
	for _, name := range Algorithms() {
		t.Run(name, func(t *testing.T) {
			clean, _ := New(name, Options{})
			dirty, _ := New(name, Options{})
			for i := range v {
				want := clean.Update(at(i), v[i])
				got := dirty.Update(at(i), v[i])
				requireSame(t, want, got, "point %d", i)
				if i%97 == 0 && i > 0 {
					for _, bad := range []struct {
						t      time.Time
						v      float64
						reason string
					}{
						{at(i).Add(time.Minute), math.NaN(), "value is NaN, skipped"},
						{at(i).Add(time.Minute), math.Inf(1), "value is not finite, skipped"},
						{at(i), v[i] + 1000, "timestamp repeats the previous one, skipped"},
						{at(i - 3), v[i] - 1000, "timestamp is before the previous one, skipped"},
					} {
						want := got
						want.Score, want.Detector, want.Reason = 0, name, bad.reason
						requireSame(t, want, dirty.Update(bad.t, bad.v))
					}
				}
			}
		})
	}
}

// TestGap: a gap in the timestamps is no anomaly in itself, and the
// seasonal phase stays aligned with the clock after it.
func TestGap(t *testing.T) {
	v := seasonalSeries(288*6, 9)
	for _, name := range []string{"seasonal", Default} {
		d, _ := New(name, Options{})
		for i := range v {
			if i >= 288*3 && i < 288*3+36 { // three hours missing
				continue
			}
			r := d.Update(at(i), v[i])
			require.Less(t, r.Score, Threshold, "%s: point %d", name, i)
		}
	}
}

func TestReset(t *testing.T) {
	v := seasonalSeries(2000, 13)
	for _, name := range Algorithms() {
		d, _ := New(name, Options{})
		for i := range v {
			d.Update(at(i), v[i]+float64(i))
		}
		d.Reset()
		fresh, _ := New(name, Options{})
		for i := range v {
			requireSame(t, fresh.Update(at(i), v[i]), d.Update(at(i), v[i]), "%s: point %d", name, i)
		}
	}
}

// TestCleanSeasonalMonth: a month of a clean daily-seasonal series raises
// no score at or above Threshold.
func TestCleanSeasonalMonth(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		v := seasonalSeries(30*288, seed)
		for _, name := range []string{Default, "seasonal"} {
			d, _ := New(name, Options{})
			hi := 0.0
			for i := range v {
				r := d.Update(at(i), v[i])
				require.GreaterOrEqual(t, r.Score, 0.0)
				require.LessOrEqual(t, r.Score, 1.0)
				hi = math.Max(hi, r.Score)
			}
			require.Less(t, hi, Threshold, "%s, seed %d", name, seed)
			t.Logf("%s, seed %d: highest score %.3f", name, seed, hi)
		}
	}
}

// TestHugeValues: finite values far beyond the series' range score 1, never
// NaN, and once they left the windows the detectors score as if they had
// never come. Before, a value whose square overflows (|v| ≳ 1e154) scored
// NaN and left NaN in the running sums for good (every later score 0, every
// band NaN), and a spike of 1e12 left the sums with too few correct bits.
func TestHugeValues(t *testing.T) {
	for _, huge := range []float64{1e12, -1e15, 1e160, 1e300, -1e300, math.MaxFloat64} {
		for _, name := range []string{"mad", "seasonal"} {
			v := seasonalSeries(4000, 7)
			clean, _ := New(name, Options{Window: 256})
			dirty, _ := New(name, Options{Window: 256})
			for i := range v {
				want := clean.Update(at(i), v[i])
				x := v[i]
				if i == 1000 {
					x = huge
				}
				got := dirty.Update(at(i), x)
				require.False(t, math.IsNaN(got.Score), "%s %g: point %d", name, huge, i)
				require.GreaterOrEqual(t, got.Score, 0.0)
				require.LessOrEqual(t, got.Score, 1.0)
				if i == 1000 {
					require.Equal(t, 1.0, got.Score, "%s %g: the huge value", name, huge)
				}
				// The window forgets it after 256 points, the seasonal
				// model's history three days later, its offsets (differences
				// with the last three days) 128 points and a block after
				// that, which leaves residuals that differ by a rank in the
				// offsets' medians in its window of 256, and the cached scale
				// scaleEvery points after that.
				if i > 1000+3*288+128+remedianBlock+256+scaleEvery {
					require.InDelta(t, want.Score, got.Score, 1e-9, "%s %g: point %d", name, huge, i)
					require.InDelta(t, want.Upper, got.Upper, 1e-9*math.Abs(want.Upper), "%s %g: point %d", name, huge, i)
				}
			}
		}
	}
}
