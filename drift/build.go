package drift

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/modelmon/modelmon/drift/nonfinite"
)

// Column is one column of reference data, in memory. Exactly one of Num and Str is
// set: Num makes a numeric column, where NaN and ±Inf are missing values; Str makes a
// categorical column, where "" is a missing value, and so is a string NonFinite
// reads.
//
// The readers (ReadCSV, ReadJSONL, Rows) give a missing value of a numeric column
// as NA, a NaN that IsNA tells from the NaN of a value given as one (the text
// "NaN"), as R tells NA from NaN. A profile counts both as missing; data checked
// against one can tell them apart, as the sidecar does: a NaN is a ViolationNaN, a
// missing value a ViolationMissing only where the reference had none.
//
// In a categorical column, the readers give a NaN or an infinity that the data
// gave as a number (JSON Lines' bare NaN, Infinity and -Infinity, 1e999, a float
// of Parquet) as a string NonFinite reads, not as the text "NaN" or "+Inf": the
// sidecar counts such a number sent for a categorical feature as a "nan" or
// "inf" violation, and the string "NaN" as a category. A profile counts them as
// missing; data checked against one, as a NaN or ±Inf of a numeric column.
type Column struct {
	Name string
	Num  []float64
	Str  []string
}

// NonFinite returns the number that s, a value of a categorical Column,
// stands for when the data gave a NaN or an infinity as a number; ok is
// false for any other string, the text "NaN" among them.
func NonFinite(s string) (v float64, ok bool) { return nonfinite.Value(s) }

// FormatNumber returns the text of x for Records.Set and Rows.Add: its
// shortest form, or, for a NaN or an infinity, the string NonFinite reads,
// which a numeric column reads as that number and a categorical one keeps
// apart from the text "NaN".
func FormatNumber(x float64) string {
	if s, ok := nonfinite.String(x); ok {
		return s
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// naBits is NA: a quiet NaN whose payload is 1954, as R's NA_real_.
const naBits = 0x7FF8_0000_0000_07A2

// NA returns the NaN that stands for a missing value in Column.Num.
func NA() float64 { return math.Float64frombits(naBits) }

// IsNA reports whether v is NA, not a number nor any other NaN.
func IsNA(v float64) bool { return math.Float64bits(v) == naBits }

// Len is the number of values in c.
func (c *Column) Len() int { return max(len(c.Num), len(c.Str)) }

// BuildOptions tune BuildProfile. Zero fields take their default.
type BuildOptions struct {
	// Bins is the number of fine, equal-frequency bins of numeric features
	// (default 200): each holds at most 1/Bins of the reference.
	Bins int
	// Coarse is the number of coarse bins of numeric features (default 10, the
	// deciles).
	Coarse int
	// Discrete is the number of distinct values up to which a numeric feature gets
	// one bin per value (default 20).
	Discrete int
	// TopK is the number of categories of a categorical feature that get their
	// own bin (default 20); the others share the other bin.
	TopK int
	// MaxCategories is the number of distinct categories up to which the
	// reference's set of categories is kept, to flag unseen ones (default 1000).
	MaxCategories int
	// Prediction names the column that holds the model's output, if any.
	Prediction string
	// ExplainedVariance is the share of the variance of the numeric input
	// features the principal components of Multivariate keep (default
	// DefaultExplainedVariance).
	ExplainedVariance float64
	// NoMultivariate leaves out Multivariate and its ReconstructionError
	// feature.
	NoMultivariate bool
}

// DefaultBuildOptions returns the defaults of BuildOptions.
func DefaultBuildOptions() BuildOptions {
	return BuildOptions{Bins: 200, Coarse: 10, Discrete: 20, TopK: 20, MaxCategories: 1000}
}

func (o *BuildOptions) defaults() error {
	d := DefaultBuildOptions()
	for _, p := range []struct {
		v   *int
		def int
		min int
		n   string
	}{
		{&o.Bins, d.Bins, 2, "bins"}, {&o.Coarse, d.Coarse, 2, "coarse bins"}, {&o.Discrete, d.Discrete, 0, "discrete values"},
		{&o.TopK, d.TopK, 1, "top categories"}, {&o.MaxCategories, d.MaxCategories, 1, "max categories"},
	} {
		if *p.v == 0 {
			*p.v = p.def
		}
		if *p.v < p.min {
			return fmt.Errorf("%s must be at least %d, got %d", p.n, p.min, *p.v)
		}
	}
	if o.Coarse > o.Bins {
		return fmt.Errorf("coarse bins (%d) must not exceed bins (%d)", o.Coarse, o.Bins)
	}
	if o.ExplainedVariance == 0 {
		o.ExplainedVariance = DefaultExplainedVariance
	}
	if !(o.ExplainedVariance > 0 && o.ExplainedVariance < 1) {
		return fmt.Errorf("explained variance must be in (0, 1), got %v", o.ExplainedVariance)
	}
	return nil
}

// BuildProfile builds the reference profile of cols, one Feature per column.
//
// # Numeric bins
//
// Fine bins are equal-frequency: scanning the sorted distinct values, a bin is
// closed before the value that would take it past c = max(1, ⌊N/Bins⌋) reference
// values, so every bin holds at most 1/Bins of the reference (for N ≥ Bins) and
// there are Bins of them for untied data. A value held by more than c reference
// values (a heavy tie, e.g. the zeros of an amount) gets a bin of its own, [a,
// next float64 after a), and the values after it start a new bin. With at most
// Discrete distinct values, every value gets such a bin, with a bin for the gap to
// the next value. There are at most 2·Bins+1 fine bins, plus the below- and
// above-range bins.
//
// Why this bounds the error of the streaming Kolmogorov–Smirnov statistic: the
// window knows the two empirical CDFs F_r and F_c only at the edges, so it
// computes D_b, the largest gap at an edge. Inside a bin [a, b) both CDFs are
// non-decreasing, so F_r(x) - F_c(x) ≤ F_r(b⁻) - F_c(a⁻) = (F_r(a⁻) - F_c(a⁻)) +
// m_r and F_c(x) - F_r(x) ≤ F_c(b⁻) - F_r(a⁻) = (F_c(b⁻) - F_r(b⁻)) + m_r, where m_r
// is the reference mass of the bin. Hence D_b ≤ D ≤ D_b + max m_r ≤ D_b + 1/Bins:
// 0.005 with the default 200 bins. A single-value bin has no interior, so it adds
// no error, and the empty gap bins after it add none either (m_r = 0).
//
// Coarse bins take, for each decile j/Coarse, the fine edge whose cumulative
// reference share is nearest (the first on ties), so their edges are a subset of
// the fine edges. A feature with at most Discrete distinct values gets one coarse
// bin per value instead: (previous value, value].
//
// # Categorical bins
//
// The TopK most frequent categories (ties by value) get a bin each; the rest share
// the other bin, and so does a category named OtherLabel ("__other__"), whatever
// its count, so that a bin label names one bin. Invalid UTF-8 in a category is
// replaced by U+FFFD, as JSON stores it (and as Window and Check look it up). If the reference has at most MaxCategories distinct categories, all
// of them are kept (Rare) so that live values outside them can be flagged as unseen.
func BuildProfile(cols []Column, opts BuildOptions) (*Profile, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, errors.New("no columns")
	}
	p := &Profile{Version: Version}
	rows := -1
	foundPrediction := opts.Prediction == ""
	for i := range cols {
		c := &cols[i]
		if c.Name == "" {
			return nil, fmt.Errorf("column %d: empty name", i)
		}
		if !utf8.ValidString(c.Name) {
			return nil, fmt.Errorf("column %d: name %q is not valid UTF-8", i, c.Name)
		}
		if (c.Num == nil) == (c.Str == nil) {
			return nil, fmt.Errorf("column %q: set exactly one of Num and Str", c.Name)
		}
		if rows >= 0 && c.Len() != rows {
			return nil, fmt.Errorf("column %q: %d values, want %d like the others", c.Name, c.Len(), rows)
		}
		rows = c.Len()
		var f *Feature
		if c.Num != nil {
			f = buildNumeric(c.Name, c.Num, opts)
		} else {
			f = buildCategorical(c.Name, c.Str, opts)
		}
		if c.Name == opts.Prediction {
			f.Prediction = true
			foundPrediction = true
		}
		p.Features = append(p.Features, f)
	}
	if rows == 0 {
		return nil, errors.New("no rows")
	}
	if !foundPrediction {
		return nil, fmt.Errorf("missing prediction column %q", opts.Prediction)
	}
	if !opts.NoMultivariate {
		mv, errs, err := buildMultivariate(cols, opts.Prediction, opts.ExplainedVariance)
		if err != nil {
			return nil, err
		}
		if mv != nil {
			for _, c := range cols {
				if c.Name == ReconstructionError {
					return nil, fmt.Errorf("column %q: the name is the multivariate drift's", ReconstructionError)
				}
			}
			p.Features = append(p.Features, buildNumeric(ReconstructionError, errs, opts))
			p.Multivariate = mv
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func buildNumeric(name string, vals []float64, opts BuildOptions) *Feature {
	x := make([]float64, 0, len(vals))
	for _, v := range vals {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			x = append(x, v)
		}
	}
	slices.Sort(x)
	f := &Feature{Name: name, Kind: Numeric, Count: int64(len(x)), Missing: int64(len(vals) - len(x)), Numeric: &NumericProfile{}}
	n := f.Numeric
	if len(x) == 0 {
		n.Counts = []int64{0}
		return f
	}
	// Distinct values and their counts.
	var u []float64
	var cnt []int64
	var sum float64
	for i, v := range x {
		sum += v
		if i == 0 || v != x[i-1] {
			u = append(u, v)
			cnt = append(cnt, 0)
		}
		cnt[len(cnt)-1]++
	}
	f.Unique = int64(len(u))
	n.Min, n.Max = x[0], x[len(x)-1]
	n.Mean = sum / float64(len(x))
	var ss float64
	for _, v := range x {
		d := v - n.Mean
		ss += d * d
	}
	n.Std = math.Sqrt(ss / float64(len(x)))
	// Clamp rounding so the mean stays in range (it can step out for tied values).
	n.Mean = min(max(n.Mean, n.Min), n.Max)

	discrete := len(u) <= opts.Discrete
	n.Edges = fineEdges(u, cnt, int64(len(x)), opts.Bins, discrete)
	n.Counts = make([]int64, len(n.Edges)+1)
	sums := make([]float64, len(n.Counts))
	j := 0
	for k, v := range u {
		for j < len(n.Edges) && n.Edges[j] <= v {
			j++
		}
		n.Counts[j] += cnt[k]
		sums[j] += float64(cnt[k]) * v
	}
	first, last := 1, len(n.Counts)-2
	n.Tails = []float64{
		min(max(sums[first]/float64(n.Counts[first]), n.Edges[first-1]), math.Nextafter(n.Edges[first], math.Inf(-1))),
		min(max(sums[last]/float64(n.Counts[last]), n.Edges[last-1]), n.Max),
	}
	if discrete {
		n.Coarse = discreteCoarse(n.Edges, u)
	} else {
		n.Coarse = coarseEdges(n.Edges, n.Counts, opts.Coarse)
	}
	return f
}

func next(v float64) float64 { return math.Nextafter(v, math.Inf(1)) }

// fineEdges cuts the sorted distinct values u (with counts cnt, n in all) into
// equal-frequency bins; see BuildProfile.
func fineEdges(u []float64, cnt []int64, n int64, bins int, discrete bool) []float64 {
	capacity := max(1, n/int64(bins))
	edges := []float64{u[0]}
	add := func(e float64) {
		if e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	var acc int64
	for k, v := range u {
		c := cnt[k]
		if discrete || c > capacity {
			add(v)
			add(next(v))
			acc = 0
			continue
		}
		if acc > 0 && acc+c > capacity {
			add(v)
			acc = 0
		}
		acc += c
	}
	add(next(u[len(u)-1]))
	return edges
}

// coarseEdges picks, for each j/k, the interior fine edge whose cumulative reference
// share is nearest, keeping the first and last edges.
func coarseEdges(edges []float64, counts []int64, k int) []float64 {
	// cum[i] is the reference share below edges[i].
	cum := make([]float64, len(edges))
	var total, acc int64
	for _, c := range counts {
		total += c
	}
	for i := range edges {
		acc += counts[i]
		cum[i] = float64(acc) / float64(total)
	}
	out := []float64{edges[0]}
	for j := 1; j < k; j++ {
		t := float64(j) / float64(k)
		// First interior edge with cum ≥ t, or its predecessor if nearer.
		lo, hi := 1, len(edges)-1
		i, _ := slices.BinarySearchFunc(cum[lo:hi], t, cmp.Compare[float64])
		i += lo
		if i > lo && (i == hi || t-cum[i-1] <= cum[i]-t) {
			i--
		}
		if i < hi && edges[i] > out[len(out)-1] {
			out = append(out, edges[i])
		}
	}
	return append(out, edges[len(edges)-1])
}

// discreteCoarse gives each distinct value a coarse bin (previous value, value],
// cut at the edge right after each value.
func discreteCoarse(edges, u []float64) []float64 {
	out := []float64{edges[0]}
	for _, v := range u {
		out = append(out, next(v))
	}
	return out
}

func buildCategorical(name string, vals []string, opts BuildOptions) *Feature {
	counts := make(map[string]int64)
	var missing int64
	for _, v := range vals {
		if _, nf := NonFinite(v); v == "" || nf {
			missing++
			continue
		}
		counts[strings.ToValidUTF8(v, "\uFFFD")]++ // as JSON will store it
	}
	cats := make([]Category, 0, len(counts))
	for v, c := range counts {
		cats = append(cats, Category{Value: v, Count: c})
	}
	slices.SortFunc(cats, func(a, b Category) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Value, b.Value)
	})
	f := &Feature{Name: name, Kind: Categorical, Count: int64(len(vals)) - missing, Missing: missing, Unique: int64(len(cats))}
	c := &CategoricalProfile{Categories: make([]Category, 0, min(opts.TopK, len(cats))), Closed: len(cats) <= opts.MaxCategories}
	for _, cat := range cats {
		// A category named like the other bin's label gets no bin of its
		// own (two bins would share a label): it is one of the others.
		if len(c.Categories) < opts.TopK && cat.Value != OtherLabel {
			c.Categories = append(c.Categories, cat)
			continue
		}
		c.Other += cat.Count
		if c.Closed {
			c.Rare = append(c.Rare, cat.Value)
		}
	}
	f.Categorical = c
	return f
}
