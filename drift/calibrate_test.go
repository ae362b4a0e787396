package drift

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGrid(t *testing.T) {
	c := &Calibrator{opts: CalibratorOptions{PerDecade: 20}}
	for _, tc := range []struct{ n, want int64 }{
		{0, 0}, {1, 1}, {99, 89}, {100, 100}, {101, 100}, {999, 891}, {1000, 1000}, {1121, 1000}, {1122, 1122},
		{1_000_000, 1_000_000}, {1_999_999, 1_995_262},
	} {
		require.Equal(t, tc.want, c.Grid(tc.n), "n=%d", tc.n)
	}
	// Rounding down: g ≤ n, and the next grid size is above n.
	for n := int64(1); n < 100_000; n = n*11/10 + 1 {
		g := c.Grid(n)
		require.LessOrEqual(t, g, n)
		require.Greater(t, c.Grid(n*113/100+1), g, "n=%d", n)
	}
}

// scenario is a feature whose windows come from the reference distribution itself.
type scenario struct {
	name    string
	refN    int
	n       int     // window size (rows)
	missing float64 // missing rate, in the reference and the windows
	num     func(r *rand.Rand) float64
	cat     func(r *rand.Rand) string
	topK    int
}

func (s scenario) column(r *rand.Rand, rows int, shift float64) Column {
	c := Column{Name: "x"}
	for range rows {
		miss := r.Float64() < s.missing
		if s.num != nil {
			v := s.num(r) + shift
			if miss {
				v = math.NaN()
			}
			c.Num = append(c.Num, v)
		} else {
			v := s.cat(r)
			if miss {
				v = ""
			}
			c.Str = append(c.Str, v)
		}
	}
	return c
}

// categories draws from a skewed distribution over 12 categories, two of them rare.
func categories(r *rand.Rand) string {
	u := r.Float64()
	for i, p := range []float64{0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02, 0.015, 0.003, 0.002} {
		if u < p {
			return fmt.Sprintf("c%02d", i)
		}
		u -= p
	}
	return "c12"
}

// rates runs windows windows of s through a Window and a calibrated Detector and
// returns the share of them each method flagged. shift moves numeric values by
// that many reference standard deviations.
func rates(t *testing.T, s scenario, windows int, shift float64, seed uint64) (map[Method]float64, *Detector) {
	return ratesWith(t, s, windows, shift, seed, Options{Calibration: CalibratorOptions{Seed: seed}})
}

func ratesWith(t *testing.T, s scenario, windows int, shift float64, seed uint64, opts Options) (map[Method]float64, *Detector) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	p, err := BuildProfile([]Column{s.column(r, s.refN, 0)}, BuildOptions{TopK: s.topK})
	require.NoError(t, err)
	d, err := NewDetector(p, opts)
	require.NoError(t, err)
	f := p.Features[0]
	w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Minute}, SubWindows: 1})
	require.NoError(t, err)
	std := 1.0
	if f.Kind == Numeric {
		std = f.Numeric.Std
	}
	flagged := map[Method]float64{}
	now := t0
	for range windows {
		now = now.Add(time.Minute) // a new window
		col := s.column(r, s.n, shift*std)
		for i := range s.n {
			switch {
			case col.Num != nil && !math.IsNaN(col.Num[i]):
				w.Add(now, col.Num[i])
			case col.Str != nil && col.Str[i] != "":
				w.AddCategory(now, col.Str[i])
			default:
				w.AddMissing(now)
			}
		}
		res, err := d.Score("x", w.Counts(now, 0))
		require.NoError(t, err)
		require.True(t, res.Ready, res.Reason)
		for m, test := range res.Tests {
			flagged[m] += 0 // every method appears, flagged or not
			if test.Drifted {
				flagged[m] += 1 / float64(windows)
			}
		}
	}
	return flagged, d
}

func formatRates(r map[Method]float64) string {
	var sb strings.Builder
	for _, m := range Methods() {
		if v, ok := r[m]; ok {
			fmt.Fprintf(&sb, " %s=%.4f", m, v)
		}
	}
	return sb.String()
}

// TestFalseAlarms is the calibration guarantee: when windows are drawn from the
// reference distribution itself (not from the profile's bins), every method flags
// at most α (+1 point for the sampling error of the test: 0.5 point is one standard
// error at 2,000 windows) of them.
func TestFalseAlarms(t *testing.T) {
	windows, slack := 2000, 0.01
	if !heavy() {
		windows, slack = 300, 0.04
	}
	for _, s := range []scenario{
		{name: "normal, 50k reference, windows of 1000, 5% missing", refN: 50_000, n: 1000, missing: 0.05,
			num: func(r *rand.Rand) float64 { return r.NormFloat64() }},
		{name: "zero-inflated heavy tail, windows of 200", refN: 20_000, n: 200, missing: 0.01,
			num: samplers[8].draw},
		{name: "discrete counts, windows of 5000", refN: 20_000, n: 5000,
			num: samplers[7].draw},
		{name: "categorical with rare categories, top 8, windows of 300", refN: 20_000, n: 300, missing: 0.002,
			cat: categories, topK: 8},
		{name: "binary, windows of 150", refN: 5_000, n: 150,
			cat: func(r *rand.Rand) string { return map[bool]string{true: "yes", false: "no"}[r.Float64() < 0.1] }},
	} {
		t.Run(s.name, func(t *testing.T) {
			got, _ := rates(t, s, windows, 0, 42)
			t.Logf("false-alarm rates at α=0.05 over %d windows:%s", windows, formatRates(got))
			for m, v := range got {
				require.LessOrEqual(t, v, 0.05+slack, "method %s", m)
			}
		})
	}
}

// TestFixedThresholds shows why the Detector calibrates: Evidently's fixed
// thresholds flag windows of 100 values drawn from the reference far more often
// than 5%, and would need a shift of a tenth of a standard deviation to flag any
// window of 10,000.
func TestFixedThresholds(t *testing.T) {
	windows := 500
	if !heavy() {
		windows = 100
	}
	normal := func(r *rand.Rand) float64 { return r.NormFloat64() }
	for _, n := range []int{100, 10_000} {
		s := scenario{refN: 50_000, n: n, num: normal}
		got, _ := ratesWith(t, s, windows, 0, 3, Options{Fixed: true})
		t.Logf("fixed thresholds, n=%d, no drift:%s", n, formatRates(got))
		if n == 100 {
			require.Greater(t, got[MethodPSI], 0.05)
			require.Greater(t, got[MethodJS], 0.05)
		}
		got, _ = ratesWith(t, s, windows, 0.05, 3, Options{Fixed: true})
		cal, _ := rates(t, s, windows, 0.05, 3)
		t.Logf("n=%d, a 0.05-std shift: fixed%s; calibrated%s", n, formatRates(got), formatRates(cal))
	}
}

// TestPower checks that a shift of half a standard deviation in windows of 1000
// is found in at least 95% of windows by the default method, and reports every
// method's power at that shift and at a tenth of it.
func TestPower(t *testing.T) {
	windows := 500
	if !heavy() {
		windows = 100
	}
	s := scenario{name: "normal", refN: 50_000, n: 1000, num: func(r *rand.Rand) float64 { return r.NormFloat64() }}
	for _, shift := range []float64{0.5, 0.1} {
		got, d := rates(t, s, windows, shift, 7)
		t.Logf("power at a %.1f-std shift, n=1000, over %d windows:%s", shift, windows, formatRates(got))
		if shift == 0.5 {
			m := d.Method(d.Profile().Features[0])
			require.Equal(t, MethodWasserstein, m)
			require.GreaterOrEqual(t, got[m], 0.95)
		}
	}
}

// TestSmallReferencePValues checks the tests Evidently picks for small references
// (≤ 1000 values) at their nominal level, without calibration: over references and
// windows redrawn each time (the guarantee of a two-sample test), the binned KS
// and χ² p-values fall below 0.05 at most 5% (+1 point) of the time. The binned KS
// is conservative, as the bound D_b ≤ D says.
func TestSmallReferencePValues(t *testing.T) {
	trials, slack := 2000, 0.01
	if !heavy() {
		trials, slack = 300, 0.04
	}
	r := rand.New(rand.NewPCG(9, 9))
	for _, s := range []scenario{
		{name: "normal, 1000 and 1000", refN: 1000, n: 1000, num: func(r *rand.Rand) float64 { return r.NormFloat64() }},
		{name: "exponential, 300 and 100", refN: 300, n: 100, num: samplers[4].draw},
		{name: "categorical, 800 and 200", refN: 800, n: 200, cat: categories, topK: 20},
	} {
		t.Run(s.name, func(t *testing.T) {
			var ks, chi, power float64
			for range trials {
				p, err := BuildProfile([]Column{s.column(r, s.refN, 0)}, BuildOptions{})
				require.NoError(t, err)
				f := p.Features[0]
				cur := Counts{Bins: make([]float64, f.FineBins())}
				if f.Kind == Numeric {
					cur = windowOf(t, f, s.column(r, s.n, 0).Num)
				} else {
					w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Hour}})
					require.NoError(t, err)
					for _, v := range s.column(r, s.n, 0).Str {
						w.AddCategory(t0, v)
					}
					cur = w.Counts(t0, 0)
				}
				ref := f.reference()
				var m measure
				measureAll(f, &ref, &cur, newScratch(f), &m)
				if m.ok[iKS] && m.p[iKS] < 0.05 {
					ks++
				}
				if m.p[iChiSquare] < 0.05 {
					chi++
				}
				if f.Kind == Numeric {
					shifted := windowOf(t, f, s.column(r, s.n, 0.5*f.Numeric.Std).Num)
					measureAll(f, &ref, &shifted, newScratch(f), &m)
					if m.p[iKS] < 0.05 {
						power++
					}
				}
			}
			n := float64(trials)
			if s.num != nil {
				t.Logf("rate of p < 0.05 over %d trials: ks=%.4f chisquare=%.4f; KS power at a 0.5-std shift: %.4f", trials, ks/n, chi/n, power/n)
			} else {
				t.Logf("rate of p < 0.05 over %d trials: chisquare=%.4f", trials, chi/n)
			}
			require.LessOrEqual(t, ks/n, 0.05+slack)
			require.LessOrEqual(t, chi/n, 0.05+slack)
		})
	}
}

// TestThresholdsDeterministic: the same seed gives the same thresholds whatever
// the order they are asked in.
func TestThresholdsDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	p, err := BuildProfile([]Column{{Name: "a", Num: draw(r, samplers[0], 5000)}, {Name: "b", Num: draw(r, samplers[3], 5000)}}, BuildOptions{})
	require.NoError(t, err)
	opts := CalibratorOptions{Seed: 3, Rounds: 199}
	c1, err := NewCalibrator(p, opts)
	require.NoError(t, err)
	c2, err := NewCalibrator(p, opts)
	require.NoError(t, err)
	a1, _ := c1.Thresholds("a", 510, 510)
	b1, _ := c1.Thresholds("b", 510, 510)
	b2, _ := c2.Thresholds("b", 550, 560)
	a2, _ := c2.Thresholds("a", 520, 540)
	require.Equal(t, a1, a2)
	require.Equal(t, b1, b2)
	require.Equal(t, int64(501), a1.N)
	// Larger windows, lower thresholds for the distances.
	big, _ := c1.Thresholds("a", 5000, 5000)
	for _, m := range []Method{MethodPSI, MethodJS, MethodHellinger, MethodWasserstein} {
		require.Less(t, big.Value[m], a1.Value[m], "%s", m)
	}
	_, err = c1.Thresholds("nope", 1, 1)
	require.EqualError(t, err, `unknown feature "nope"`)
	_, err = NewCalibrator(p, CalibratorOptions{Rounds: 10})
	require.EqualError(t, err, "10 rounds are too few for alpha 0.05: need at least 45")
	_, err = NewCalibrator(p, CalibratorOptions{Rounds: 45})
	require.NoError(t, err)
	require.Equal(t, 88, order(0.05, 1999))
	require.Equal(t, 0, order(0.05, 19))
}

// TestFalseAlarmsConstant: a constant feature never drifts when its windows
// hold the same constant. Before, with a constant that binary floating point
// does not hold exactly (0.1), the Wasserstein score of such a window was the
// rounding of the sums of its values divided by the Std floor (about 1e-12,
// 1e-8 for 123456.789), above the calibrated threshold: every window drifted.
func TestFalseAlarmsConstant(t *testing.T) {
	for _, c := range []float64{7, 0.1, -0.3, 123456.789, 1e-7} {
		s := scenario{name: fmt.Sprint(c), refN: 5000, n: 200, num: func(*rand.Rand) float64 { return c }}
		got, _ := rates(t, s, 50, 0, 42)
		for m, v := range got {
			require.Zero(t, v, "constant %v, method %s", c, m)
		}
	}
}
