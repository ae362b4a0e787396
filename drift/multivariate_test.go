package drift

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// mvData is ten rows of three features that go together (b ≈ 2a, c ≈ −a)
// and one on its own (d).
var mvData = [][4]float64{
	{1, 2.1, -0.9, 5}, {2, 3.9, -2.2, 4.1}, {3, 6.2, -2.8, 6.3}, {4, 8.1, -4.1, 4.4}, {5, 9.8, -5.3, 5.7},
	{6, 12.3, -5.9, 4.9}, {7, 13.8, -7.2, 6.1}, {8, 16.1, -8.1, 5.2}, {9, 18.2, -8.8, 4.6}, {10, 19.7, -10.3, 5.5},
}

func mvColumns(rows [][4]float64) []Column {
	cols := []Column{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}
	for _, r := range rows {
		for j := range cols {
			cols[j].Num = append(cols[j].Num, r[j])
		}
	}
	return cols
}

// The PCA and the reconstruction errors agree with numpy 1.24.2: Z = (X −
// mean) / std(ddof=1); U, S, Vt = svd(Z); the first component explains
// 0.7596 of the variance (≥ 0.65: one kept); error = mean over features of
// (Z − Z V Vᵀ)².
func TestMultivariateNumpy(t *testing.T) {
	p, err := BuildProfile(mvColumns(mvData), BuildOptions{})
	require.NoError(t, err)
	mv := p.Multivariate
	require.NotNil(t, mv)
	require.Equal(t, []string{"a", "b", "c", "d"}, mv.Features)
	require.Len(t, mv.Components, 1)
	require.InDelta(t, 0.7595830458646784, mv.ExplainedVariance, 1e-12)
	want := []float64{0.004080719579950379, 0.35819608491813876, 0.7613804374140742, 0.22472296271709194, 0.1424235271789901,
		0.046274060094124964, 0.3237572631261562, 0.008116548527972504, 0.2924286046706822, 0.002372378990715617}
	for i, r := range mvData {
		require.InDelta(t, want[i], mv.Error(r[:]), 1e-12, "row %d", i)
	}
	require.InDelta(t, 0.2183557784386451, mv.Error([]float64{3, 2, 1, 5}), 1e-12, "a row off the subspace")
	f, ok := p.Feature(ReconstructionError)
	require.True(t, ok)
	require.Equal(t, int64(len(mvData)), f.Count)

	// The profile's JSON round trip keeps it.
	var b bytes.Buffer
	require.NoError(t, p.Save(&b))
	q, err := load(b.Bytes())
	require.NoError(t, err)
	require.Equal(t, mv, q.Multivariate)

	col, ok := mv.ErrorColumn(mvColumns(mvData))
	require.True(t, ok)
	require.InDeltaSlice(t, want, col.Num, 1e-12)
	_, ok = mv.ErrorColumn([]Column{{Name: "other", Num: []float64{1}}})
	require.False(t, ok)
	// A missing value counts as the mean: a row of means has no error.
	require.Zero(t, mv.Error([]float64{math.NaN(), math.NaN(), math.NaN(), math.NaN()}))
	// A row without any value has no error at all, as in the sidecar: it is
	// left out, not an error of 0 nor a missing value.
	cols := mvColumns(mvData[:3])
	for j := range cols {
		cols[j].Num[1] = math.NaN()
	}
	cols[2].Num[2] = math.Inf(1)
	col, ok = mv.ErrorColumn(cols)
	require.True(t, ok)
	require.InDeltaSlice(t, []float64{want[0], mv.Error([]float64{cols[0].Num[2], cols[1].Num[2], math.NaN(), cols[3].Num[2]})}, col.Num, 1e-12)

	// A feature read as text, for one value that is not a number, keeps
	// its numbers, as the sidecar reads a number sent as text.
	cols = mvColumns(mvData[:3])
	text := make([]string, 3)
	for i, v := range cols[1].Num {
		text[i] = " " + strconv.FormatFloat(v, 'g', -1, 64)
	}
	text[2] = "NA"
	cols[1] = Column{Name: cols[1].Name, Str: text}
	col, ok = mv.ErrorColumn(cols)
	require.True(t, ok)
	require.InDeltaSlice(t, []float64{want[0], want[1], mv.Error([]float64{cols[0].Num[2], math.NaN(), cols[2].Num[2], cols[3].Num[2]})}, col.Num, 1e-12)
}

// No multivariate reference where it can't tell anything: one numeric
// input, a constant one, three that do not go together (two of three
// components needed), too few rows, or when left out.
func TestMultivariateNone(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	indep := make([]Column, 3)
	for j := range indep {
		indep[j].Name = string(rune('x' + j))
		for range 500 {
			indep[j].Num = append(indep[j].Num, r.NormFloat64())
		}
	}
	for name, tc := range map[string]struct {
		cols []Column
		opts BuildOptions
	}{
		"one feature":      {[]Column{{Name: "a", Num: []float64{1, 2, 3, 4, 5}}}, BuildOptions{}},
		"with prediction":  {[]Column{{Name: "a", Num: []float64{1, 2, 3, 4, 5}}, {Name: "p", Num: []float64{2, 4, 6, 8, 10}}}, BuildOptions{Prediction: "p"}},
		"independent":      {indep, BuildOptions{}},
		"too few rows":     {mvColumns(mvData[:7]), BuildOptions{}},
		"left out":         {mvColumns(mvData), BuildOptions{NoMultivariate: true}},
		"constant feature": {[]Column{{Name: "a", Num: []float64{1, 2, 3, 4, 5}}, {Name: "k", Num: []float64{7, 7, 7, 7, 7}}}, BuildOptions{}},
	} {
		p, err := BuildProfile(tc.cols, tc.opts)
		require.NoError(t, err, name)
		require.Nil(t, p.Multivariate, name)
		_, ok := p.Feature(ReconstructionError)
		require.False(t, ok, name)
	}
	_, err := BuildProfile(append(mvColumns(mvData), Column{Name: ReconstructionError, Num: make([]float64, len(mvData))}), BuildOptions{})
	require.ErrorContains(t, err, "the name is the multivariate drift's")
}

// The reason for a multivariate reference: data whose features each keep
// their distribution but no longer go together drifts in the
// reconstruction error, and in no feature. 5,000 reference rows of b =
// 2a + noise, c = −a + noise; a batch of 1,000 from the same process does
// not drift; one with b shuffled among its rows (each feature's
// distribution the same, b's relation to a gone) drifts in the
// reconstruction error only.
func TestMultivariateCorrelationBreak(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	gen := func(n int) [][4]float64 {
		rows := make([][4]float64, n)
		for i := range rows {
			a := r.NormFloat64()
			rows[i] = [4]float64{a, 2*a + 0.3*r.NormFloat64(), -a + 0.3*r.NormFloat64(), r.NormFloat64()}
		}
		return rows
	}
	p, err := BuildProfile(mvColumns(gen(5000)), BuildOptions{})
	require.NoError(t, err)
	require.NotNil(t, p.Multivariate)
	det, err := NewDetector(p, Options{Fixed: true})
	require.NoError(t, err)
	score := func(rows [][4]float64) map[string]Result {
		cols := mvColumns(rows)
		ec, ok := p.Multivariate.ErrorColumn(cols)
		require.True(t, ok)
		out := map[string]Result{}
		for _, c := range append(cols, ec) {
			f, _ := p.Feature(c.Name)
			res, err := det.Score(c.Name, windowOf(t, f, c.Num))
			require.NoError(t, err)
			out[c.Name] = res
		}
		return out
	}
	for name, res := range score(gen(1000)) {
		require.False(t, res.Drifted, "same process: %s %s", name, res.Reason)
	}
	broken := gen(1000)
	r.Shuffle(len(broken), func(i, j int) { broken[i][1], broken[j][1] = broken[j][1], broken[i][1] })
	got := score(broken)
	for _, name := range []string{"a", "b", "c", "d"} {
		require.False(t, got[name].Drifted, "%s keeps its distribution: %s", name, got[name].Reason)
	}
	require.True(t, got[ReconstructionError].Drifted, got[ReconstructionError].Reason)
	t.Logf("reconstruction error: %s", got[ReconstructionError].Reason)
}
