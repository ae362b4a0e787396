package drift

import "fmt"

// Rows builds reference data row by row from a reader of another format (a
// typed one such as Parquet), as ReadCSV builds it from CSV: each value is
// text, "" is missing (NA in a numeric column) and any other text a value, and
// columns are numeric or categorical as ReadCSV decides, unless ReadOptions
// force them. name is the file's name, for
// errors, which read like `train.parquet: row 17: column "age": "abc" is not
// a number`.
type Rows struct {
	name string
	t    *table
}

// NewRows starts reading columns with the given names.
func NewRows(name string, header []string, opts ReadOptions) (*Rows, error) {
	t, err := newTable(header, opts, func(format string, args ...any) error {
		return fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	})
	if err != nil {
		return nil, err
	}
	return &Rows{name: name, t: t}, nil
}

// Add adds a row: one value per column of the header.
func (r *Rows) Add(values []string) error {
	if len(values) != len(r.t.byField) {
		return fmt.Errorf("%s: row %d: %d values, want %d", r.name, r.t.rows+1, len(values), len(r.t.byField))
	}
	for i, c := range r.t.byField {
		if c == nil {
			continue
		}
		if err := c.add(values[i]); err != nil {
			return fmt.Errorf("%s: row %d: column %q: %w", r.name, r.t.rows+1, c.name, err)
		}
	}
	r.t.rows++
	return nil
}

// Columns returns the columns read, for BuildProfile.
func (r *Rows) Columns() ([]Column, error) {
	if r.t.rows == 0 {
		return nil, fmt.Errorf("%s: no rows", r.name)
	}
	return r.t.columns()
}
