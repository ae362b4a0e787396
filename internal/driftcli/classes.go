package driftcli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/predclass"
)

// ViolationUnnamedClass is the report's violation of a prediction that
// gives only positions models[].classes does not name, which the sidecar
// counts in modelmon_feature_values_invalid_total{reason="unnamed_class"}:
// left out of the feature's values, as the sidecar leaves it out of its
// windows.
const ViolationUnnamedClass = "unnamed_class"

// classColumns reads the current data's prediction as the sidecar reads a
// prediction that gives only positions for a reference whose prediction
// f is categorical (class names): by classes, models[].classes, in their
// order, by predclass's rule. A number that is not one of f's categories
// is the class predclass.Number gives it. A vector, which the readers
// flatten into the columns NAME.0, NAME.1, …, is the class predclass.Of
// gives it, and the column NAME takes its place. A prediction whose
// positions classes does not name is left out and counted in unnamed. cols is cur unchanged where there is nothing to
// read so: a numeric f, no classes, no column NAME nor NAME.0.
func classColumns(f *drift.Feature, classes []string, cur []drift.Column) (cols []drift.Column, unnamed uint64) {
	if f == nil || f.Kind != drift.Categorical || len(classes) == 0 {
		return cur, 0
	}
	var names []string
	var texts []string
	if col := findColumn(cur, f.Name); col != nil {
		names, texts = append(names, f.Name), columnText(col)
	}
	var parts []*drift.Column
	for k := 0; ; k++ {
		name := f.Name + "." + strconv.Itoa(k)
		c := findColumn(cur, name)
		if c == nil {
			break
		}
		parts, names = append(parts, c), append(names, name)
	}
	if len(names) == 0 {
		return cur, 0
	}
	rows := len(texts)
	if len(parts) > 0 {
		rows = parts[0].Len()
	}
	out := drift.Column{Name: f.Name, Str: make([]string, 0, rows)}
	vec := make([]float64, len(parts))
	for i := range rows {
		s := ""
		if texts != nil {
			s = texts[i]
		}
		switch x, err := strconv.ParseFloat(strings.TrimSpace(s), 64); {
		case isNonFinite(s):
			// A NaN or an infinity the data gave as a number names
			// no class.
			unnamed++
			continue
		case s != "" && (f.HasCategory(s) || err != nil || !isFinite(x)):
			// A name: counted as it is.
		case s != "":
			var ok bool
			if s, ok = predclass.Number(classes, x); !ok {
				unnamed++
				continue
			}
		case len(parts) > 0:
			// The row's vector ends at its last value: a shorter one
			// than other rows' has none in their last columns.
			n := 0
			for k, c := range parts {
				if vec[k] = cellNumber(c, i); !drift.IsNA(vec[k]) {
					n = k + 1
				}
			}
			if n > 0 {
				var ok bool
				if s, ok = predclass.Of(classes, vec[:n]); !ok {
					unnamed++
					continue
				}
			}
		}
		out.Str = append(out.Str, s) // "": no prediction, missing
	}
	return replaceColumns(cur, names, out), unnamed
}

// columnText returns the values of a column as text: a categorical
// column's, or a numeric column's numbers in their shortest form (drift.NA
// as "").
func columnText(c *drift.Column) []string {
	if c.Str != nil {
		return c.Str
	}
	out := make([]string, len(c.Num))
	for i, x := range c.Num {
		if !drift.IsNA(x) {
			out[i] = drift.FormatNumber(x)
		}
	}
	return out
}

// cellNumber returns row i of c as a number: drift.NA when it is missing
// or no number.
func cellNumber(c *drift.Column, i int) float64 {
	if c.Num != nil {
		return c.Num[i]
	}
	s := c.Str[i]
	if v, ok := drift.NonFinite(s); ok {
		return v
	}
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if s == "" || err != nil {
		return drift.NA()
	}
	return x
}

// replaceColumns returns cols without the columns named names, and with
// col where the first of them was.
func replaceColumns(cols []drift.Column, names []string, col drift.Column) []drift.Column {
	out := make([]drift.Column, 0, len(cols))
	placed := false
	for _, c := range cols {
		switch {
		case !slices.Contains(names, c.Name):
			out = append(out, c)
		case !placed:
			out, placed = append(out, col), true
		}
	}
	return out
}

// vectorWarning returns the warning for a prediction feature f that the
// current data give as a vector (the columns NAME.0, NAME.1, …), where
// the reference's are class names and there are no classes to read it
// by, or "".
func vectorWarning(f *drift.Feature, cur []drift.Column, curName string) string {
	if f == nil || f.Kind != drift.Categorical || findColumn(cur, f.Name+".0") == nil {
		return ""
	}
	return fmt.Sprintf("%s: the prediction %q is given as a vector (%s.0, %s.1, …), and the reference's are class names: give --config.file and --model of a model whose models[].classes names its classes, in their order", curName, f.Name, f.Name, f.Name)
}
