package drift

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestChoose(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cont := func(n int) []float64 { return draw(r, samplers[0], n) }
	few := func(n, k int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = float64(i % k)
		}
		return x
	}
	cats := func(n, k int) []string {
		x := make([]string, n)
		for i := range x {
			x[i] = string(rune('a' + i%k))
		}
		return x
	}
	for _, tc := range []struct {
		name string
		col  Column
		want Method
	}{
		{"numeric, small reference", Column{Num: cont(1000)}, MethodKS},
		{"numeric, large reference", Column{Num: cont(1001)}, MethodWasserstein},
		{"numeric, 5 values, small", Column{Num: few(500, 5)}, MethodChiSquare},
		{"numeric, 5 values, large", Column{Num: few(5000, 5)}, MethodJS},
		{"numeric, binary, small", Column{Num: few(500, 2)}, MethodZ},
		{"categorical, small", Column{Str: cats(500, 3)}, MethodChiSquare},
		{"categorical, binary, small", Column{Str: cats(500, 2)}, MethodZ},
		{"categorical, large", Column{Str: cats(5000, 2)}, MethodJS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.col.Name = "x"
			p, err := BuildProfile([]Column{tc.col}, BuildOptions{})
			require.NoError(t, err)
			require.Equal(t, tc.want, Choose(p.Features[0]))
			require.Contains(t, Applicable(p.Features[0]), tc.want)
		})
	}
}

func detectorFixture(t *testing.T, opts Options) (*Detector, *Profile) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 3))
	n := 5000
	city := make([]string, n)
	for i := range city {
		city[i] = []string{"paris", "oslo", "lima"}[r.IntN(3)]
	}
	p, err := BuildProfile([]Column{{Name: "x", Num: draw(r, samplers[0], n)}, {Name: "city", Str: city}, {Name: "y", Num: draw(r, samplers[4], n)}},
		BuildOptions{Prediction: "y"})
	require.NoError(t, err)
	d, err := NewDetector(p, opts)
	require.NoError(t, err)
	return d, p
}

func TestScore(t *testing.T) {
	d, p := detectorFixture(t, Options{Calibration: CalibratorOptions{Rounds: 499}})
	r := rand.New(rand.NewPCG(4, 4))
	f := p.Features[0]

	same, err := d.Score("x", windowOf(t, f, draw(r, samplers[0], 1000)))
	require.NoError(t, err)
	require.True(t, same.Ready)
	require.False(t, same.Drifted, same.Reason)
	require.Equal(t, MethodWasserstein, same.Method)
	require.Nil(t, same.PValue)
	require.Regexp(t, `^no drift: wasserstein 0\.\d+ ≤ 0\.\d+ \(calibrated at n=1000, α=0\.05\)$`, same.Reason)
	require.Len(t, same.Scores, 7)
	require.Equal(t, same.Scores[MethodWasserstein], same.Score)

	shifted, err := d.Score("x", windowOf(t, f, draw(r, samplers[1], 1000)))
	require.NoError(t, err)
	require.True(t, shifted.Drifted, shifted.Reason)
	require.Regexp(t, `^drift: wasserstein 0\.\d+ > 0\.\d+ \(calibrated at n=1000, α=0\.05\)$`, shifted.Reason)
	require.True(t, shifted.Tests[MethodKS].Drifted)
	require.NotNil(t, shifted.Tests[MethodKS].PValue)

	few, err := d.Score("x", windowOf(t, f, draw(r, samplers[0], 50)))
	require.NoError(t, err)
	require.False(t, few.Ready)
	require.False(t, few.Drifted)
	require.Equal(t, "not enough data: 50 values, want 100", few.Reason)

	// The result serialises, with p_value only for tests.
	b, err := json.Marshal(shifted)
	require.NoError(t, err)
	var top map[string]any
	require.NoError(t, json.Unmarshal(b, &top))
	require.NotContains(t, top, "p_value")
	require.Contains(t, top["tests"].(map[string]any)["ks"], "p_value")
	require.Equal(t, "wasserstein", top["method"])

	_, err = d.Score("nope", Counts{})
	require.EqualError(t, err, `unknown feature "nope"`)
	_, err = d.Score("x", Counts{Bins: []float64{1}})
	require.EqualError(t, err, `feature "x": 1 bins, want 202`)
}

func TestScoreFixedAndOverrides(t *testing.T) {
	d, p := detectorFixture(t, Options{
		Fixed:      true,
		Methods:    map[string]Method{"x": MethodKS, "city": MethodPSI},
		Thresholds: map[Method]float64{MethodPSI: 0.2},
		Floor:      map[Method]float64{MethodKS: 0.5},
	})
	require.Nil(t, d.Calibrator())
	r := rand.New(rand.NewPCG(5, 5))
	res, err := d.Score("x", windowOf(t, p.Features[0], draw(r, samplers[1], 1000)))
	require.NoError(t, err)
	require.Equal(t, MethodKS, res.Method)
	require.Less(t, *res.PValue, 0.05)
	require.False(t, res.Drifted, "below the floor")
	require.Regexp(t, `^no drift: ks p=.* < 0\.05 but score 0\.\d+ < floor 0\.5 \(fixed threshold\)$`, res.Reason)

	w, _ := NewWindow(p.Features[1], WindowOptions{Spans: []time.Duration{time.Hour}})
	for range 300 {
		w.AddCategory(t0, "paris")
	}
	res, err = d.Score("city", w.Counts(t0, 0))
	require.NoError(t, err)
	require.Equal(t, MethodPSI, res.Method)
	require.Equal(t, 0.2, res.Threshold)
	require.True(t, res.Drifted)
	require.Equal(t, 0.1, res.Tests[MethodJS].Threshold, "Evidently's default")
}

func TestNewDetectorErrors(t *testing.T) {
	_, p := detectorFixture(t, Options{Fixed: true})
	for _, tc := range []struct {
		name string
		opts Options
		err  string
	}{
		{"alpha", Options{Alpha: 2}, "alpha must be in (0, 1), got 2"},
		{"share", Options{Share: -1}, "share must be in (0, 1], got -1"},
		{"unknown feature", Options{Methods: map[string]Method{"z": MethodKS}}, `method for unknown feature "z"`},
		{"unknown method", Options{Methods: map[string]Method{"x": "anderson"}}, `feature "x": unknown method "anderson"`},
		{"not applicable", Options{Methods: map[string]Method{"city": MethodKS}}, `feature "city": method "ks" does not apply to a categorical feature with 3 distinct values`},
		{"floor", Options{Floor: map[Method]float64{"mmd": 1}}, `unknown method "mmd"`},
		{"calibration alpha", Options{Alpha: 0.01, Calibration: CalibratorOptions{Alpha: 0.05}}, "calibration alpha 0.05 differs from alpha 0.01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDetector(p, tc.opts)
			require.EqualError(t, err, tc.err)
		})
	}
}

func TestDataset(t *testing.T) {
	d, _ := detectorFixture(t, Options{Fixed: true})
	res := []Result{
		{Feature: "a", Ready: true, Drifted: true},
		{Feature: "b", Ready: true},
		{Feature: "c", Ready: false, Drifted: false},
		{Feature: "y", Ready: true, Drifted: true, Prediction: true},
	}
	got := d.Dataset(res)
	require.Equal(t, DatasetResult{Features: 2, Drifted: 1, Share: 0.5, Threshold: 0.5, Drift: true,
		Reason: "drift: 1 of 2 features drifted, 0.5 ≥ 0.5"}, got)
	got = d.Dataset(res[1:])
	require.False(t, got.Drift)
	require.Equal(t, "no drift: 0 of 1 features drifted, 0 < 0.5", got.Reason)
	require.Equal(t, "no feature ready", d.Dataset(nil).Reason)
	require.True(t, strings.HasPrefix(d.Dataset(res).Reason, "drift"))
}
