package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rejected returns, for each p-value, whether it is below t, as 0 or 1.
func rejected(p []float64, t float64) []int {
	out := make([]int, len(p))
	for i, v := range p {
		if v < t {
			out[i] = 1
		}
	}
	return out
}

// TestCorrectionStatsmodels compares the tests each correction rejects with
// statsmodels 0.13.5's multipletests(p, alpha, method) ("bonferroni",
// "fdr_bh"), on the 15 p-values of Benjamini and Hochberg's (1995) section 4
// example, where Bonferroni rejects 3 and their procedure 4 (as the paper
// says), and on p-values drawn by numpy (default_rng(20251125): uniform
// null p-values with a few below 0.01 among them, rounded to 6 digits).
// None is on a critical value, where multipletests, which rejects p ≤ the
// critical value, and Alibi Detect (p <) differ.
func TestCorrectionStatsmodels(t *testing.T) {
	bh95 := []float64{0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000}
	case0 := []float64{0.297506, 0.68186, 0.091661, 0.859316, 0.00106}
	case2 := []float64{0.769293, 0.824516, 0.897409, 0.664908, 2.1e-05, 0.897886, 0.569696, 0.612355, 0.288238, 0.873334, 0.327661, 0.569352, 0.003642, 0.469568, 0.952348, 0.759361, 0.00752, 0.544596, 0.410366, 0.00011, 0.606699, 0.702272, 1.5e-05, 0.005715, 0.871852, 0.450038, 0.412909, 0.817503, 0.327451, 0.394334}
	case3 := []float64{0.340461, 0.479276, 0.945792, 0.392942, 0.745462, 0.646586, 0.679268, 0.383673, 0.66433, 0.168835, 0.120805, 0.829893, 0.520883, 0.328489, 0.229039, 0.706996, 0.693487, 0.004374, 0.03513, 0.019347, 0.127818, 0.822655, 0.670383, 0.621339, 0.150861, 0.784584, 0.404705, 0.958608, 0.099956, 0.002888, 0.179337, 0.154724, 0.021492, 0.073023, 0.449404, 0.815359, 0.473777, 0.000872, 0.084673, 0.599713, 0.679869, 0.838554, 0.679222, 0.236906, 0.856862, 0.007497, 0.709117, 0.582248, 0.396295, 0.001025}
	// at returns a vector of len n with 1 at the given indexes.
	at := func(n int, idx ...int) []int {
		out := make([]int, n)
		for _, i := range idx {
			out[i] = 1
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		p     []float64
		alpha float64
		c     Correction
		want  []int
	}{
		{"BH95 bonferroni", bh95, 0.05, CorrectionBonferroni, at(15, 0, 1, 2)},
		{"BH95 fdr", bh95, 0.05, CorrectionFDR, at(15, 0, 1, 2, 3)},
		{"case0 bonferroni", case0, 0.05, CorrectionBonferroni, at(5, 4)},
		{"case0 fdr", case0, 0.1, CorrectionFDR, at(5, 4)},
		{"case2 bonferroni 0.05", case2, 0.05, CorrectionBonferroni, at(30, 4, 19, 22)},
		{"case2 fdr 0.05", case2, 0.05, CorrectionFDR, at(30, 4, 12, 16, 19, 22, 23)},
		{"case2 fdr 0.1", case2, 0.1, CorrectionFDR, at(30, 4, 12, 16, 19, 22, 23)},
		{"case3 bonferroni 0.05", case3, 0.05, CorrectionBonferroni, at(50, 37)},
		{"case3 bonferroni 0.1", case3, 0.1, CorrectionBonferroni, at(50, 37, 49)},
		{"case3 fdr 0.05", case3, 0.05, CorrectionFDR, at(50, 29, 37, 49)},
		{"case3 fdr 0.1", case3, 0.1, CorrectionFDR, at(50, 17, 29, 37, 45, 49)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, rejected(tc.p, tc.c.Threshold(tc.p, tc.alpha)))
		})
	}
	// The paper's procedure stops at k = 4: 0.0095 < 0.05·4/15.
	require.InDelta(t, 0.05*4/15, CorrectionFDR.Threshold(bh95, 0.05), 1e-15)
	require.InDelta(t, 0.05/15, CorrectionBonferroni.Threshold(bh95, 0.05), 1e-15)
}

func TestCorrectionProperties(t *testing.T) {
	const alpha = 0.05
	t.Run("one test is not corrected", func(t *testing.T) {
		for _, p := range []float64{0.001, 0.049, 0.05, 0.2} {
			for _, c := range Corrections() {
				require.Equal(t, alpha, c.Threshold([]float64{p}, alpha), "%s at p=%v", c, p)
			}
		}
	})
	t.Run("no test", func(t *testing.T) {
		for _, c := range Corrections() {
			require.Equal(t, alpha, c.Threshold(nil, alpha))
		}
	})
	t.Run("equal p-values", func(t *testing.T) {
		// BH rejects all K when p < α (p_(K) = p < α·K/K), none otherwise;
		// Bonferroni all when p < α/K.
		p := slices.Repeat([]float64{0.03}, 10)
		require.Equal(t, slices.Repeat([]int{1}, 10), rejected(p, CorrectionFDR.Threshold(p, alpha)))
		require.Equal(t, make([]int, 10), rejected(p, CorrectionBonferroni.Threshold(p, alpha)))
		require.Equal(t, slices.Repeat([]int{1}, 10), rejected(p, CorrectionNone.Threshold(p, alpha)))
		p = slices.Repeat([]float64{0.06}, 10)
		for _, c := range Corrections() {
			require.Equal(t, make([]int, 10), rejected(p, c.Threshold(p, alpha)), c)
		}
		p = slices.Repeat([]float64{0.004}, 10)
		require.Equal(t, slices.Repeat([]int{1}, 10), rejected(p, CorrectionBonferroni.Threshold(p, alpha)))
	})
	t.Run("on a critical value", func(t *testing.T) {
		// As Alibi Detect: not below, not rejected.
		require.Equal(t, []int{0, 0}, rejected([]float64{0.025, 0.5}, CorrectionBonferroni.Threshold([]float64{0.025, 0.5}, alpha)))
		p := []float64{0.05, 0.05}
		require.Equal(t, []int{0, 0}, rejected(p, CorrectionFDR.Threshold(p, alpha)))
		require.Equal(t, 0.025, CorrectionFDR.Threshold(p, alpha))
	})
	t.Run("NaN is not rejected", func(t *testing.T) {
		p := []float64{math.NaN(), 0.001, 0.02, math.NaN()}
		// K = 4: Bonferroni 0.0125; BH: 0.001 < 0.0125, 0.02 < 0.025.
		require.Equal(t, 0.0125, CorrectionBonferroni.Threshold(p, alpha))
		require.Equal(t, 0.025, CorrectionFDR.Threshold(p, alpha))
		require.Equal(t, []int{0, 1, 1, 0}, rejected(p, CorrectionFDR.Threshold(p, alpha)))
	})
	t.Run("random", func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 7))
		for range 2000 {
			p := make([]float64, 1+r.IntN(60))
			for i := range p {
				p[i] = r.Float64()
				if r.IntN(4) == 0 {
					p[i] *= 0.01
				}
			}
			b, f := CorrectionBonferroni.Threshold(p, alpha), CorrectionFDR.Threshold(p, alpha)
			// BH rejects whatever Bonferroni does, and never more than the
			// uncorrected tests.
			require.GreaterOrEqual(t, f, b)
			require.LessOrEqual(t, f, alpha)
			// It does not depend on the order of the tests.
			q := slices.Clone(p)
			r.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
			require.Equal(t, f, CorrectionFDR.Threshold(q, alpha))
			// Step-up: the k rejected are the k smallest, and the k-th is
			// below α·k/K while no later one is below its critical value.
			s := slices.Clone(p)
			slices.Sort(s)
			k := 0
			for i, v := range s {
				if v < alpha/(float64(len(s))/float64(i+1)) {
					k = i + 1
				}
			}
			n := 0
			for _, v := range p {
				if v < f {
					n++
				}
			}
			require.Equal(t, k, n)
		}
	})
}

// TestCorrectionFalseAlarms draws the p-values of K = 50 features none of
// which drifted (uniform and independent) and counts the windows in which the
// model is declared drifted: 1 − 0.95^50 = 92 % without correction, at most
// α with Bonferroni (α·(1 − …) ≈ 4.9 %) and with Benjamini–Hochberg, which
// under this global null rejects anything with probability exactly α.
func TestCorrectionFalseAlarms(t *testing.T) {
	const k, trials, alpha = 50, 20000, 0.05
	r := rand.New(rand.NewPCG(11, 13))
	alarms := map[Correction]int{}
	p := make([]float64, k)
	for range trials {
		for i := range p {
			p[i] = r.Float64()
		}
		for _, c := range Corrections() {
			th := c.Threshold(p, alpha)
			if slices.ContainsFunc(p, func(v float64) bool { return v < th }) {
				alarms[c]++
			}
		}
	}
	rate := func(c Correction) float64 { return float64(alarms[c]) / trials }
	// Binomial standard error at 0.05 over 20000 trials: 0.0015.
	require.InDelta(t, 1-math.Pow(1-alpha, k), rate(CorrectionNone), 0.01)
	require.InDelta(t, 1-math.Pow(1-alpha/k, k), rate(CorrectionBonferroni), 0.005)
	require.InDelta(t, alpha, rate(CorrectionFDR), 0.005)
}

func TestParseCorrection(t *testing.T) {
	c, err := ParseCorrection("")
	require.NoError(t, err)
	require.Equal(t, CorrectionBonferroni, c)
	for _, want := range Corrections() {
		c, err := ParseCorrection(string(want))
		require.NoError(t, err)
		require.Equal(t, want, c)
	}
	_, err = ParseCorrection("holm")
	require.EqualError(t, err, `unknown correction "holm": want bonferroni, fdr or none`)
}

// TestDetectorModel decides a model of 4 inputs, 3 of them decided by a
// test and one by Wasserstein, which takes part with its KS p-value.
func TestDetectorModel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	cats := func(n int) []string {
		x := make([]string, n)
		for i := range x {
			x[i] = []string{"paris", "oslo", "lima"}[r.IntN(3)]
		}
		return x
	}
	p, err := BuildProfile([]Column{
		{Name: "a", Num: draw(r, samplers[0], 1000)},
		{Name: "b", Num: draw(r, samplers[0], 1000)},
		{Name: "city", Str: cats(1000)},
		{Name: "w", Num: draw(r, samplers[0], 1000)},
		{Name: "y", Num: draw(r, samplers[0], 1000)},
	}, BuildOptions{Prediction: "y"})
	require.NoError(t, err)
	d, err := NewDetector(p, Options{Methods: map[string]Method{"w": MethodWasserstein}, Calibration: CalibratorOptions{Rounds: 499}})
	require.NoError(t, err)
	w, _ := p.Feature("w")
	require.Equal(t, MethodWasserstein, d.Method(w))
	require.Equal(t, MethodKS, TestMethod(w))
	city, _ := p.Feature("city")
	require.Equal(t, MethodChiSquare, TestMethod(city))

	score := func(shift map[string]float64) []Result {
		var out []Result
		for _, f := range p.Features {
			var c Counts
			if f.Kind == Numeric {
				x := draw(r, samplers[0], 2000)
				for i := range x {
					x[i] += shift[f.Name]
				}
				c = windowOf(t, f, x)
			} else {
				w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Hour}})
				require.NoError(t, err)
				for _, v := range cats(2000) {
					w.AddBytes(t0, []byte(v))
				}
				c = w.Counts(t0, 0)
			}
			res, err := d.Score(f.Name, c)
			require.NoError(t, err)
			out = append(out, res)
		}
		return out
	}

	// Nothing drifted but the prediction, which does not count.
	m := d.Model(score(map[string]float64{"y": 3}), "", 0)
	require.Equal(t, ModelResult{Correction: CorrectionBonferroni, Alpha: 0.05, Features: 4, Threshold: 0.0125, Reason: m.Reason}, m)
	require.Contains(t, m.Reason, "no drift: smallest p-value of 4 features")

	// w shifted by half a standard deviation: its KS p-value is tiny.
	res := score(map[string]float64{"w": 0.5})
	m = d.Model(res, CorrectionFDR, 0.1)
	require.True(t, m.Drift, m.Reason)
	require.Equal(t, 1, m.Drifted)
	require.Equal(t, 4, m.Features)
	require.Equal(t, 0.1/4, m.Threshold)
	require.Contains(t, m.Reason, "[w]")

	// The same p-values give the same decision by hand.
	var ps []float64
	for _, x := range res {
		if x.Feature == "y" {
			continue
		}
		meth := x.Method
		if !meth.HasPValue() {
			meth = MethodKS
		}
		ps = append(ps, *x.Tests[meth].PValue)
	}
	require.Equal(t, CorrectionBonferroni.Threshold(ps, 0.05), d.Model(res, CorrectionBonferroni, 0).Threshold)

	// No feature ready.
	m = d.Model(nil, CorrectionNone, 0)
	require.Equal(t, ModelResult{Correction: CorrectionNone, Alpha: 0.05, Threshold: 0.05, Reason: "no feature ready"}, m)
}
