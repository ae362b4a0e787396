package drift

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// ReconstructionError names the profile's derived feature that carries
// multivariate drift: each record's PCA reconstruction error.
const ReconstructionError = "__reconstruction_error__"

// DefaultExplainedVariance is the share of the reference's variance the
// kept principal components explain, by default.
const DefaultExplainedVariance = 0.65

// Multivariate is a principal component analysis of the reference's
// numeric input features, to detect drift that no single feature shows: a
// change in how features go together. A record is standardised with the
// reference's means and standard deviations, projected on the components
// that explain ExplainedVariance of the reference's variance and
// reconstructed from them; its reconstruction error is the mean squared
// difference (Error). As NannyML's data reconstruction drift does, the
// error's distribution over the reference is the baseline: the profile
// keeps it as the numeric feature ReconstructionError, so that every
// statistic, window and calibrated decision of a feature applies to it.
// When the correlations between features break, records no longer lie near
// the reference's principal subspace and their error grows, even though
// every feature's own distribution may be unchanged.
type Multivariate struct {
	// Features are the numeric input features, in the order of Mean,
	// Scale and the components' entries.
	Features []string  `json:"features"`
	Mean     []float64 `json:"mean"`
	// Scale holds the standard deviations; 1 for a constant feature.
	Scale []float64 `json:"scale"`
	// Components are the kept principal components: orthonormal, one per
	// row, in the standardised space.
	Components [][]float64 `json:"components"`
	// ExplainedVariance is the share of the reference's variance they
	// explain.
	ExplainedVariance float64 `json:"explained_variance"`
}

// Error returns the reconstruction error of a record whose values x are in
// Features' order; a missing value (NaN) counts as the reference's mean.
// It is the mean over features of the squared difference between the
// standardised record and its projection: (|z|² − |Cz|²) / d for the
// orthonormal components C.
func (m *Multivariate) Error(x []float64) float64 {
	var zz float64
	for i, v := range x {
		if z := (v - m.Mean[i]) / m.Scale[i]; z-z == 0 {
			zz += z * z
		}
	}
	var tt float64
	for _, c := range m.Components {
		var t float64
		for i, v := range x {
			if z := (v - m.Mean[i]) / m.Scale[i]; z-z == 0 {
				t += c[i] * z
			}
		}
		tt += t * t
	}
	return math.Max(zz-tt, 0) / float64(len(x))
}

// validate checks m against the profile's features.
func (m *Multivariate) validate(p *Profile) error {
	d := len(m.Features)
	if d < 2 {
		return errors.New("multivariate: fewer than two features")
	}
	if len(m.Mean) != d || len(m.Scale) != d {
		return fmt.Errorf("multivariate: %d features but %d means and %d scales", d, len(m.Mean), len(m.Scale))
	}
	if len(m.Components) == 0 || len(m.Components) > d {
		return fmt.Errorf("multivariate: %d components for %d features", len(m.Components), d)
	}
	for i, name := range m.Features {
		f, ok := p.Feature(name)
		if !ok || f.Kind != Numeric || f.Prediction {
			return fmt.Errorf("multivariate: %q is not a numeric input feature of the profile", name)
		}
		if !(m.Scale[i] > 0) || math.IsInf(m.Scale[i], 0) || math.IsNaN(m.Mean[i]) || math.IsInf(m.Mean[i], 0) {
			return fmt.Errorf("multivariate: feature %q: mean %v and scale %v must be finite, the scale > 0", name, m.Mean[i], m.Scale[i])
		}
	}
	for j, c := range m.Components {
		if len(c) != d {
			return fmt.Errorf("multivariate: component %d has %d entries, want %d", j, len(c), d)
		}
		for _, v := range c {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("multivariate: component %d is not finite", j)
			}
		}
	}
	if f, ok := p.Feature(ReconstructionError); !ok || f.Kind != Numeric {
		return fmt.Errorf("multivariate: no numeric feature %q", ReconstructionError)
	}
	return nil
}

// buildMultivariate runs the PCA of cols' numeric input features (the
// prediction left out), keeping the components that explain variance of
// it, and returns it with each row's reconstruction error. It returns nil
// when there are fewer than two such features with spread, fewer rows than
// twice the features, or when more than half the components are needed to
// keep variance: features that do not go together.
func buildMultivariate(cols []Column, prediction string, variance float64) (*Multivariate, []float64, error) {
	m := &Multivariate{}
	var data [][]float64
	for _, c := range cols {
		if c.Num == nil || c.Name == prediction {
			continue
		}
		given := make([]float64, 0, len(c.Num))
		for _, v := range c.Num {
			if v-v == 0 {
				given = append(given, v)
			}
		}
		if len(given) < 2 {
			continue
		}
		mean, sd := stat.MeanStdDev(given, nil) // the sample standard deviation, as numpy's ddof=1
		if !(sd > 0) || math.IsInf(sd, 0) {
			continue // a constant feature has no correlation to break
		}
		m.Features = append(m.Features, c.Name)
		m.Mean = append(m.Mean, mean)
		m.Scale = append(m.Scale, sd)
		data = append(data, c.Num)
	}
	d := len(m.Features)
	if d < 2 {
		return nil, nil, nil
	}
	rows := len(data[0])
	if rows < 2*d {
		return nil, nil, nil
	}
	z := mat.NewDense(rows, d, nil)
	for j, col := range data {
		for i, v := range col {
			if s := (v - m.Mean[j]) / m.Scale[j]; s-s == 0 {
				z.Set(i, j, s) // a missing value stays 0: the mean
			}
		}
	}
	var pc stat.PC
	if !pc.PrincipalComponents(z, nil) {
		return nil, nil, errors.New("multivariate: the principal component analysis did not converge")
	}
	vars := pc.VarsTo(nil)
	var vecs mat.Dense
	pc.VectorsTo(&vecs)
	var total float64
	for _, v := range vars {
		total += v
	}
	var kept float64
	for j := 0; j < len(vars) && (j == 0 || kept/total < variance); j++ {
		c := make([]float64, d)
		for i := range c {
			c[i] = vecs.At(i, j)
		}
		m.Components = append(m.Components, c)
		kept += vars[j]
	}
	if 2*len(m.Components) > d {
		// More than half the components are needed: the features do not
		// go together enough for a subspace to say anything (independent
		// ones need about ExplainedVariance of them; all of them, and
		// every record reconstructs exactly).
		return nil, nil, nil
	}
	m.ExplainedVariance = kept / total
	// A row without a finite value of any of the features has no error, as
	// ErrorColumn and the sidecar give it none: the reference's errors are
	// those of the rows a window would count.
	errs := make([]float64, 0, rows)
	x := make([]float64, d)
	for i := range rows {
		given := false
		for j, col := range data {
			x[j] = col[i]
			given = given || col[i]-col[i] == 0
		}
		if given {
			errs = append(errs, m.Error(x))
		}
	}
	return m, errs, nil
}

// ErrorColumn returns the ReconstructionError column of data given as
// columns: each row's Error, with the values of m's features that a row
// lacks (no such column, a missing or non-numeric value) counted as the
// reference's mean. A row without a finite value of any of m's features has
// no error, as the sidecar computes none for a record without one: it is
// left out, so the column may be shorter than data. ok is false when data
// has none of m's features.
func (m *Multivariate) ErrorColumn(cols []Column) (col Column, ok bool) {
	idx := make([][]float64, len(m.Features))
	rows := 0
	for _, c := range cols {
		rows = max(rows, c.Len())
		for j, name := range m.Features {
			if c.Name != name {
				continue
			}
			idx[j], ok = c.Num, true
			if c.Str != nil {
				// A numeric feature read as text, for a value that is not
				// a number ("NA" in JSON): its numbers count, as the
				// sidecar counts a number sent as text.
				idx[j] = make([]float64, len(c.Str))
				for i, s := range c.Str {
					v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
					if err != nil {
						v = math.NaN()
					}
					idx[j][i] = v
				}
			}
		}
	}
	if !ok {
		return Column{}, false
	}
	col = Column{Name: ReconstructionError, Num: make([]float64, 0, rows)}
	x := make([]float64, len(m.Features))
	for i := range rows {
		given := false
		for j, v := range idx {
			x[j] = math.NaN()
			if i < len(v) {
				x[j] = v[i]
				given = given || v[i]-v[i] == 0
			}
		}
		if given {
			col.Num = append(col.Num, m.Error(x))
		}
	}
	return col, true
}
