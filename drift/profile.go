package drift

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Version is the only profile format version Load accepts.
const Version = 1

// Kind is the type of a feature: numeric or categorical.
type Kind string

// The kinds of Feature.
const (
	Numeric     Kind = "numeric"
	Categorical Kind = "categorical"
)

// Profile is the reference profile of a model's inputs and output, built from its
// training data: one Feature per column. The zero value is not usable; get one from
// BuildProfile or Load.
type Profile struct {
	Version  int        `json:"version"`
	Features []*Feature `json:"features"`
	// Multivariate is the PCA of the numeric input features behind the
	// ReconstructionError feature; nil without one.
	Multivariate *Multivariate `json:"multivariate,omitempty"`

	index map[string]int
}

// Feature is the reference profile of one column. Kind says which of Numeric or
// Categorical is set.
type Feature struct {
	Name string `json:"name"`
	Kind Kind   `json:"type"`
	// Prediction marks the model's output column.
	Prediction bool `json:"prediction,omitempty"`
	// Count is the number of non-missing values in the reference.
	Count int64 `json:"count"`
	// Missing is the number of missing values: empty, null (IsCSVMissing's
	// markers in CSV), NaN and ±Inf.
	Missing int64 `json:"missing"`
	// Unique is the number of distinct non-missing values.
	Unique int64 `json:"unique"`

	Numeric     *NumericProfile     `json:"numeric,omitempty"`
	Categorical *CategoricalProfile `json:"categorical,omitempty"`

	// Derived by init, never serialised.
	nbins     int            // fine bins (numeric) or categories+other (categorical)
	ncoarse   int            // coarse bins
	coarseOf  []int          // fine bin → coarse bin
	refFine   []float64      // reference counts per fine bin
	refCoarse []float64      // reference counts per coarse bin
	catIndex  map[string]int // category → bin; rare categories map to the other bin
	top       int            // coarse bin with the largest reference count
	guide     guide          // speeds up bin
}

// NumericProfile is the part of a Feature specific to numeric columns.
//
// The fine bins are half-open intervals cut by Edges: bin 0 is (-Inf, Edges[0]),
// bin i is [Edges[i-1], Edges[i]), and the last bin is [Edges[len-1], +Inf).
// Edges[0] is Min and Edges[len-1] is the smallest float64 above Max, so the
// first and last bins hold the values below and above the reference range and
// have a reference count of 0. A bin [a, b) where b is the float64 right after a
// holds the single value a (see BuildProfile for when those appear).
type NumericProfile struct {
	Mean float64 `json:"mean"`
	// Std is the population standard deviation (ddof 0, as numpy's default).
	Std float64 `json:"std"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	// Edges cut the fine bins; strictly increasing.
	Edges []float64 `json:"edges"`
	// Counts holds the reference count of each fine bin: len(Edges)+1 values.
	Counts []int64 `json:"counts"`
	// Coarse is the subset of Edges that cuts the coarse bins, first and last
	// edge included.
	Coarse []float64 `json:"coarse_edges"`
	// Tails are the means of the reference values in the first and in the last
	// in-range bin, the widest ones, which make Wasserstein exact there.
	Tails []float64 `json:"tail_means"`
}

// CategoricalProfile is the part of a Feature specific to categorical columns.
// Its bins are Categories, in order, then one "other" bin.
type CategoricalProfile struct {
	// Categories are the top categories by count (ties by value).
	Categories []Category `json:"categories"`
	// Other is the number of reference values that are not in Categories.
	Other int64 `json:"other"`
	// Rare lists the other categories seen in the reference, when Closed.
	Rare []string `json:"rare,omitempty"`
	// Closed says that Categories and Rare hold every category of the
	// reference, so that any other value is an unseen category.
	Closed bool `json:"closed"`
}

// Category is one category of a categorical feature and its reference count.
type Category struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// Bin describes one coarse bin of a feature, as the sidecar exports it.
type Bin struct {
	// Label is the bin's index for numeric features ("0" is below the
	// reference range), the category for categorical ones and "__other__" for
	// their other bin.
	Label string
	// Lower and Upper bound a numeric bin: Lower ≤ v < Upper.
	Lower, Upper float64
	Count        int64   // reference count
	Share        float64 // reference count over Count of the feature
}

// OtherLabel is the label of the other bin of a categorical feature. A
// category of that name in the data is never one of Categories: BuildProfile
// counts it in the other bin (and lists it in Rare), and a profile that
// gives it a bin of its own is invalid, so that the label names one bin.
const OtherLabel = "__other__"

// Load reads a profile in JSON, checks it and prepares it for use. Unknown fields
// and versions other than Version are errors.
func Load(r io.Reader) (*Profile, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("couldn't read profile: %w", err)
	}
	return load(data)
}

// LoadFile reads a profile from a file; errors name the file.
func LoadFile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func load(data []byte) (*Profile, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, jsonError(data, err)
	}
	if head.Version == nil {
		return nil, errors.New("profile has no version (want 1)")
	}
	if *head.Version != Version {
		return nil, fmt.Errorf("profile version %d is not supported (want %d)", *head.Version, Version)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, jsonError(data, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// jsonError adds the line of a JSON syntax or type error.
func jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return fmt.Errorf("invalid profile: %w", err)
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	return fmt.Errorf("line %d: invalid profile: %w", line, err)
}

// Save writes p as indented JSON.
func (p *Profile) Save(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// Feature returns the feature called name.
func (p *Profile) Feature(name string) (*Feature, bool) {
	i, ok := p.index[name]
	if !ok {
		return nil, false
	}
	return p.Features[i], true
}

// Validate checks p and prepares it for use. Load and BuildProfile call it; call it
// after building or changing a Profile by hand.
func (p *Profile) Validate() error {
	if p.Version != Version {
		return fmt.Errorf("profile version %d is not supported (want %d)", p.Version, Version)
	}
	p.index = make(map[string]int, len(p.Features))
	for i, f := range p.Features {
		if f == nil {
			return fmt.Errorf("feature %d: null", i)
		}
		if f.Name == "" || !utf8.ValidString(f.Name) {
			return fmt.Errorf("feature %d: empty or invalid name %q", i, f.Name)
		}
		if _, dup := p.index[f.Name]; dup {
			return fmt.Errorf("feature %q: duplicate name", f.Name)
		}
		p.index[f.Name] = i
		if err := f.init(); err != nil {
			return fmt.Errorf("feature %q: %w", f.Name, err)
		}
		f.top = 0
		for i, c := range f.refCoarse {
			if c > f.refCoarse[f.top] {
				f.top = i
			}
		}
	}
	if p.Multivariate != nil {
		return p.Multivariate.validate(p)
	}
	return nil
}

// init checks f and computes its derived fields.
func (f *Feature) init() error {
	if f.Count < 0 || f.Missing < 0 || f.Unique < 0 {
		return errors.New("negative count")
	}
	switch f.Kind {
	case Numeric:
		if f.Categorical != nil || f.Numeric == nil {
			return errors.New(`type "numeric" needs "numeric" and no "categorical"`)
		}
		return f.initNumeric()
	case Categorical:
		if f.Numeric != nil || f.Categorical == nil {
			return errors.New(`type "categorical" needs "categorical" and no "numeric"`)
		}
		return f.initCategorical()
	default:
		return fmt.Errorf("unknown type %q (want numeric or categorical)", f.Kind)
	}
}

func (f *Feature) initNumeric() error {
	n := f.Numeric
	for _, v := range []float64{n.Mean, n.Std, n.Min, n.Max} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("non-finite statistic")
		}
	}
	if len(n.Counts) != len(n.Edges)+1 {
		return fmt.Errorf("%d counts for %d edges (want %d)", len(n.Counts), len(n.Edges), len(n.Edges)+1)
	}
	var sum int64
	for i, c := range n.Counts {
		if c < 0 {
			return fmt.Errorf("bin %d: negative count", i)
		}
		sum += c
	}
	if sum != f.Count {
		return fmt.Errorf("bin counts add up to %d, want count %d", sum, f.Count)
	}
	f.nbins = len(n.Counts)
	f.refFine = make([]float64, f.nbins)
	for i, c := range n.Counts {
		f.refFine[i] = float64(c)
	}
	if len(n.Edges) == 0 {
		// No reference values: one bin, nothing to compare against.
		if f.Count != 0 || len(n.Coarse) != 0 || len(n.Tails) != 0 {
			return errors.New("no edges but values, coarse edges or tail means")
		}
		f.guide = newGuide(nil)
		f.ncoarse = 1
		f.coarseOf = []int{0}
		f.refCoarse = []float64{0}
		return nil
	}
	if n.Std < 0 || n.Min > n.Max {
		return errors.New("inconsistent min, max or std")
	}
	for i, e := range n.Edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return fmt.Errorf("edge %d is not finite", i)
		}
		if i > 0 && e <= n.Edges[i-1] {
			return fmt.Errorf("edges not increasing at %d", i)
		}
	}
	last := len(n.Edges) - 1
	if n.Edges[0] != n.Min || last < 1 || n.Edges[last-1] > n.Max || n.Edges[last] <= n.Max {
		return errors.New("edges must start at min and end just above max")
	}
	if n.Counts[0] != 0 || n.Counts[len(n.Counts)-1] != 0 {
		return errors.New("the below- and above-range bins must be empty in the reference")
	}
	if len(n.Coarse) < 2 || n.Coarse[0] != n.Edges[0] || n.Coarse[len(n.Coarse)-1] != n.Edges[last] {
		return errors.New("coarse edges must start and end with the fine edges")
	}
	if len(n.Tails) != 2 ||
		!(n.Tails[0] >= n.Edges[0] && n.Tails[0] < n.Edges[1]) ||
		!(n.Tails[1] >= n.Edges[last-1] && n.Tails[1] <= n.Max) {
		return errors.New("tail means must be two, each inside its bin")
	}
	f.coarseOf = make([]int, f.nbins)
	j := 0 // coarse edges consumed
	for i := range f.nbins {
		// Fine bin i starts at Edges[i-1]; it opens coarse bin j+1 when that
		// edge is the next coarse edge.
		if i > 0 && j < len(n.Coarse) && n.Edges[i-1] == n.Coarse[j] {
			j++
		}
		f.coarseOf[i] = j
	}
	if j != len(n.Coarse) {
		return errors.New("coarse edges must be increasing and a subset of the edges")
	}
	f.guide = newGuide(n.Edges)
	f.ncoarse = len(n.Coarse) + 1
	f.refCoarse = make([]float64, f.ncoarse)
	for i, c := range n.Counts {
		f.refCoarse[f.coarseOf[i]] += float64(c)
	}
	return nil
}

func (f *Feature) initCategorical() error {
	c := f.Categorical
	f.nbins = len(c.Categories) + 1
	f.ncoarse = f.nbins
	f.coarseOf = make([]int, f.nbins)
	f.refFine = make([]float64, f.nbins)
	f.catIndex = make(map[string]int, len(c.Categories)+len(c.Rare))
	sum := c.Other
	for i, cat := range c.Categories {
		if cat.Count < 0 {
			return fmt.Errorf("category %q: negative count", cat.Value)
		}
		if _, dup := f.catIndex[cat.Value]; dup {
			return fmt.Errorf("category %q: duplicate", cat.Value)
		}
		if cat.Value == OtherLabel {
			// Its bin and the other bin would have one label.
			return fmt.Errorf("category %q: the other bin's label, not a category (rare, or in other)", cat.Value)
		}
		f.catIndex[cat.Value] = i
		f.coarseOf[i] = i
		f.refFine[i] = float64(cat.Count)
		sum += cat.Count
	}
	if c.Other < 0 {
		return errors.New("negative other count")
	}
	if sum != f.Count {
		return fmt.Errorf("category counts add up to %d, want count %d", sum, f.Count)
	}
	if len(c.Rare) > 0 && !c.Closed {
		return errors.New("rare categories are listed only when closed")
	}
	if c.Other > 0 && c.Closed && len(c.Rare) == 0 {
		return errors.New("closed with an other count needs its rare categories")
	}
	other := len(c.Categories)
	for _, v := range c.Rare {
		if _, dup := f.catIndex[v]; dup {
			return fmt.Errorf("category %q: duplicate", v)
		}
		f.catIndex[v] = other
	}
	f.coarseOf[other] = other
	f.refFine[other] = float64(c.Other)
	f.refCoarse = f.refFine
	return nil
}

// Nullable reports whether the reference had missing values. A missing value of a
// feature that is not nullable is a ViolationMissing.
func (f *Feature) Nullable() bool { return f.Missing > 0 }

// MissingRate is the share of missing values in the reference.
func (f *Feature) MissingRate() float64 {
	if f.Count+f.Missing == 0 {
		return 0
	}
	return float64(f.Missing) / float64(f.Count+f.Missing)
}

// FineBins is the number of fine bins: what a Window counts into.
func (f *Feature) FineBins() int { return f.nbins }

// CoarseBins is the number of coarse bins: what Totals and Bins hold.
func (f *Feature) CoarseBins() int { return f.ncoarse }

// Reference returns the reference as Counts over the fine bins.
func (f *Feature) Reference() Counts {
	c := f.reference()
	c.Bins = slices.Clone(c.Bins)
	return c
}

// reference returns the reference as Counts, sharing f's memory.
func (f *Feature) reference() Counts {
	c := Counts{Bins: f.refFine, Missing: float64(f.Missing)}
	if f.Kind == Numeric && f.Count > 0 {
		c.Low = f.refFine[1] * f.Numeric.Tails[0]
		c.High = f.refFine[f.nbins-2] * f.Numeric.Tails[1]
	}
	return c
}

// Shares returns the reference share of every fine bin.
func (f *Feature) Shares() []float64 { return shares(f.refFine) }

// Coarse sums fine-bin counts into the coarse bins.
func (f *Feature) Coarse(fine []float64) []float64 {
	out := make([]float64, f.ncoarse)
	f.coarsen(fine, out)
	return out
}

func (f *Feature) coarsen(fine, out []float64) {
	clear(out)
	for i, c := range fine {
		out[f.coarseOf[i]] += c
	}
}

// Bins describes the coarse bins with their reference counts and shares.
func (f *Feature) Bins() []Bin {
	out := make([]Bin, f.ncoarse)
	sh := shares(f.refCoarse)
	for i := range out {
		out[i] = Bin{Count: int64(f.refCoarse[i]), Share: sh[i], Lower: math.Inf(-1), Upper: math.Inf(1)}
		switch {
		case f.Kind == Categorical && i < len(f.Categorical.Categories):
			out[i].Label = f.Categorical.Categories[i].Value
		case f.Kind == Categorical:
			out[i].Label = OtherLabel
		default:
			out[i].Label = strconv.Itoa(i)
			if c := f.Numeric.Coarse; len(c) > 0 {
				if i > 0 {
					out[i].Lower = c[i-1]
				}
				if i < len(c) {
					out[i].Upper = c[i]
				}
			}
		}
	}
	return out
}

func shares(c []float64) []float64 {
	out := make([]float64, len(c))
	var t float64
	for _, x := range c {
		t += x
	}
	if t == 0 {
		return out
	}
	for i, x := range c {
		out[i] = x / t
	}
	return out
}
