package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFineBins checks the bins of BuildProfile: every fine bin holds at most
// 1/Bins of the reference unless it holds a single value, there are at most
// 2·Bins+1 of them plus the out-of-range bins, the coarse edges are fine edges,
// and counts add up.
func TestFineBins(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	for _, s := range samplers {
		for _, n := range []int{1, 7, 199, 200, 1000, 12_345} {
			x := draw(r, s, n)
			p := numericProfile(t, x)
			f := p.Features[0]
			e := f.Numeric.Edges
			require.Equal(t, int64(n), f.Count)
			require.Len(t, f.Numeric.Counts, len(e)+1)
			require.LessOrEqual(t, len(e)+1, 2*200+1+2)
			capacity := max(1, int64(n)/200)
			for i := 1; i < len(e); i++ {
				single := e[i] == math.Nextafter(e[i-1], math.Inf(1))
				if !single {
					require.LessOrEqual(t, f.Numeric.Counts[i], capacity, "%s n=%d bin %d", s.name, n, i)
				}
			}
			for _, c := range f.Numeric.Coarse {
				require.True(t, slices.Contains(e, c))
			}
			require.LessOrEqual(t, len(f.Numeric.Coarse), max(10, int(f.Unique))+1)
			// Every value falls in a bin whose bounds hold it.
			for _, v := range x {
				i := f.bin(v)
				require.True(t, i > 0 && i < len(e), "in range")
				require.True(t, e[i-1] <= v && v < e[i])
			}
		}
	}
}

func TestBuildNumeric(t *testing.T) {
	p, err := BuildProfile([]Column{{Name: "age", Num: []float64{25, 31, 40, 25, 60, 31, math.NaN(), math.Inf(1)}}}, BuildOptions{})
	require.NoError(t, err)
	f := p.Features[0]
	require.Equal(t, int64(6), f.Count)
	require.Equal(t, int64(2), f.Missing, "NaN and Inf are missing")
	require.Equal(t, int64(4), f.Unique)
	n := f.Numeric
	require.Equal(t, 25.0, n.Min)
	require.Equal(t, 60.0, n.Max)
	require.InDelta(t, 35.333333333333336, n.Mean, 1e-12)
	// numpy.std([25, 31, 40, 25, 60, 31]) (ddof 0).
	require.InDelta(t, 12.119772641798562, n.Std, 1e-12)
	// Four values, four single-value bins and the gaps between them.
	next := func(v float64) float64 { return math.Nextafter(v, math.Inf(1)) }
	require.Equal(t, []float64{25, next(25), 31, next(31), 40, next(40), 60, next(60)}, n.Edges)
	require.Equal(t, []int64{0, 2, 0, 2, 0, 1, 0, 1, 0}, n.Counts)
	require.Equal(t, []float64{25, next(25), next(31), next(40), next(60)}, n.Coarse)
	require.Equal(t, []float64{25, 60}, n.Tails)
	require.Equal(t, 6, f.CoarseBins())
	bins := f.Bins()
	require.Equal(t, Bin{Label: "1", Lower: 25, Upper: next(25), Count: 2, Share: 2.0 / 6}, bins[1])
	require.Equal(t, "5", bins[5].Label)
	require.Equal(t, math.Inf(1), bins[5].Upper)
}

// TestBuildTies checks a heavy tie (40% zeros) among continuous values: the zero
// gets its own bin, and the KS bound holds around it.
func TestBuildTies(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	x := draw(r, samplers[8], 10_000)
	f := numericProfile(t, x).Features[0]
	i := f.bin(0)
	require.Equal(t, 0.0, f.Numeric.Edges[i-1])
	require.Equal(t, math.Nextafter(0, 1), f.Numeric.Edges[i])
	require.InDelta(t, 4000, f.Numeric.Counts[i], 200)
}

func TestBuildCategorical(t *testing.T) {
	vals := strings.Split("a,b,a,c,,a,b,d,e,a,b,c", ",")
	p, err := BuildProfile([]Column{{Name: "city", Str: vals}, {Name: "__prediction__", Str: vals}},
		BuildOptions{TopK: 2, MaxCategories: 10, Prediction: "__prediction__"})
	require.NoError(t, err)
	f := p.Features[0]
	require.Equal(t, int64(11), f.Count)
	require.Equal(t, int64(1), f.Missing)
	require.Equal(t, int64(5), f.Unique)
	require.Equal(t, []Category{{"a", 4}, {"b", 3}}, f.Categorical.Categories)
	require.Equal(t, int64(4), f.Categorical.Other)
	require.Equal(t, []string{"c", "d", "e"}, f.Categorical.Rare)
	require.True(t, f.Categorical.Closed)
	require.False(t, f.Prediction)
	require.True(t, p.Features[1].Prediction)
	require.Equal(t, []string{"a", "b", OtherLabel}, []string{f.Bins()[0].Label, f.Bins()[1].Label, f.Bins()[2].Label})

	p, err = BuildProfile([]Column{{Name: "city", Str: vals}}, BuildOptions{TopK: 2, MaxCategories: 4})
	require.NoError(t, err)
	require.False(t, p.Features[0].Categorical.Closed)
	require.Nil(t, p.Features[0].Categorical.Rare)
}

// A category named like the other bin ("__other__") gets no bin of its own,
// however frequent: it is counted in the other bin, listed among the rare
// categories of a closed feature, and so neither an unseen category live nor a
// second bin labelled "__other__" in the bin counters.
func TestBuildCategoryNamedOther(t *testing.T) {
	vals := strings.Split("__other__,__other__,__other__,a,a,b,c", ",")
	p, err := BuildProfile([]Column{{Name: "city", Str: vals}}, BuildOptions{TopK: 2, MaxCategories: 10})
	require.NoError(t, err)
	f := p.Features[0]
	require.Equal(t, []Category{{"a", 2}, {"b", 1}}, f.Categorical.Categories)
	require.Equal(t, int64(4), f.Categorical.Other)
	require.Equal(t, []string{OtherLabel, "c"}, f.Categorical.Rare)
	var labels []string
	for _, b := range f.Bins() {
		labels = append(labels, b.Label)
	}
	require.Equal(t, []string{"a", "b", OtherLabel}, labels)
	require.Equal(t, ViolationNone, f.CheckCategory(OtherLabel))

	w, err := NewWindow(f, WindowOptions{})
	require.NoError(t, err)
	require.Equal(t, ViolationNone, w.AddCategory(t0, OtherLabel))
	require.Equal(t, ViolationNone, w.AddBytes(t0, []byte(OtherLabel)))
	require.Equal(t, []uint64{0, 0, 2}, w.Totals().Bins)

	// Where the reference had none, it is an unseen category, in the other bin.
	p, err = BuildProfile([]Column{{Name: "city", Str: []string{"a", "b"}}}, BuildOptions{})
	require.NoError(t, err)
	w, err = NewWindow(p.Features[0], WindowOptions{})
	require.NoError(t, err)
	require.Equal(t, ViolationUnseenCategory, w.AddBytes(t0, []byte(OtherLabel)))
	require.Equal(t, []uint64{0, 0, 1}, w.Totals().Bins)
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cols []Column
		opts BuildOptions
		err  string
	}{
		{"no columns", nil, BuildOptions{}, "no columns"},
		{"no name", []Column{{Num: []float64{1}}}, BuildOptions{}, "column 0: empty name"},
		{"bad name", []Column{{Name: "a\xff", Num: []float64{1}}}, BuildOptions{}, `column 0: name "a\xff" is not valid UTF-8`},
		{"both", []Column{{Name: "a", Num: []float64{1}, Str: []string{"x"}}}, BuildOptions{}, `column "a": set exactly one of Num and Str`},
		{"lengths", []Column{{Name: "a", Num: []float64{1}}, {Name: "b", Num: []float64{1, 2}}}, BuildOptions{}, `column "b": 2 values, want 1 like the others`},
		{"no rows", []Column{{Name: "a", Num: []float64{}}}, BuildOptions{}, "no rows"},
		{"prediction", []Column{{Name: "a", Num: []float64{1}}}, BuildOptions{Prediction: "y"}, `missing prediction column "y"`},
		{"duplicate", []Column{{Name: "a", Num: []float64{1}}, {Name: "a", Num: []float64{1}}}, BuildOptions{}, `feature "a": duplicate name`},
		{"bins", []Column{{Name: "a", Num: []float64{1}}}, BuildOptions{Bins: 1}, "bins must be at least 2, got 1"},
		{"coarse", []Column{{Name: "a", Num: []float64{1}}}, BuildOptions{Bins: 5, Coarse: 6}, "coarse bins (6) must not exceed bins (5)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildProfile(tc.cols, tc.opts)
			require.EqualError(t, err, tc.err)
		})
	}
}

// TestBuildEmptyColumn: a column with no value at all still gets a feature, with
// nothing to compare against.
func TestBuildEmptyColumn(t *testing.T) {
	p, err := BuildProfile([]Column{{Name: "a", Num: []float64{math.NaN(), math.NaN()}}, {Name: "b", Str: []string{"", ""}}}, BuildOptions{})
	require.NoError(t, err)
	for _, f := range p.Features {
		require.Equal(t, int64(0), f.Count)
		require.Equal(t, int64(2), f.Missing)
		require.Equal(t, []Method{MethodMissing}, Applicable(f))
	}
	require.Equal(t, ViolationOutOfRange, p.Features[0].Check(1))
}
