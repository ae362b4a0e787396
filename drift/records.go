package drift

import (
	"fmt"
	"slices"
)

// MaxColumns is the most columns ReadJSONL and Records make. Their columns
// come from the data, not from a header: each key of an object, and each
// element of an array (a list or map of Parquet), is a column, and each
// column holds a value, missing or not, for every row. Objects whose keys
// change from line to line, or long arrays, would make a column of each,
// and a compressed Parquet file of a few megabytes can hold lists of
// millions of elements. It is the number of features of a record the
// sidecar reads (its payload parser's default MaxFeatures): features past
// it are not counted there.
const MaxColumns = 10000

// Records builds reference data from records of named values, for readers of
// formats whose records nest (Parquet, with its lists and maps), as
// ReadJSONL builds it from JSON objects flattened: a column is made when its
// name first appears, in that order; a name absent from a record is missing
// there, as is "" (NA in a numeric column); and a column that holds only
// missing values while columns named after it and a dot exist ("a" beside
// "a.0" or "a.b": the nulls of a list or an object that other records
// have) is left out, as ReadJSONL leaves out {"a": null} beside {"a": [1]},
// unless ReadOptions name it. A record makes at most MaxColumns columns in
// all. name is the file's name, for errors, which read like
// `train.parquet: row 17: column "age": "abc" is not a number`.
type Records struct {
	name string
	t    *table
}

// NewRecords starts reading records.
func NewRecords(name string, opts ReadOptions) *Records {
	return &Records{name: name, t: &table{byName: map[string]*colBuf{}, keep: opts.Columns, opts: opts}}
}

// Set sets the value of the column name in the current record; "" is
// missing. kind is the kind of the column if Set makes it, unless
// ReadOptions force one: Numeric, Categorical, or "" for the kind ReadCSV
// would find from its values.
func (r *Records) Set(name string, kind Kind, value string) error {
	if err := r.t.set(name, kind, value); err != nil {
		return fmt.Errorf("%s: row %d: %w", r.name, r.t.rows+1, err)
	}
	return nil
}

// End ends the current record.
func (r *Records) End() {
	r.t.rows++
	r.t.next = 0
}

// Columns returns the columns read, for BuildProfile.
func (r *Records) Columns() ([]Column, error) {
	if r.t.rows == 0 {
		return nil, fmt.Errorf("%s: no rows", r.name)
	}
	if err := r.t.missing(); err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	r.t.dropNullParents()
	return r.t.columns()
}

// set sets the value of the column key in the current row, t.rows, and
// makes the column if it is new; kind, unless ReadOptions force one, is
// its kind then.
func (t *table) set(key string, kind Kind, v string) error {
	// Records mostly name their columns in the same order: the column
	// after the last one set is likely the one.
	var c *colBuf
	if t.next < len(t.cols) && t.cols[t.next].name == key {
		c = t.cols[t.next]
	} else if c = t.byName[key]; c == nil {
		var err error
		if c, err = t.make(key, kind); c == nil {
			return err
		}
	}
	t.next = c.index + 1
	if len(c.ends) > t.rows {
		return fmt.Errorf("column %q: duplicate key", key)
	}
	c.pad(t.rows)
	if err := c.add(v); err != nil {
		return fmt.Errorf("column %q: %w", key, err)
	}
	return nil
}

// make makes the column key, of the given kind unless ReadOptions force
// one; nil if ReadOptions leave it out.
func (t *table) make(key string, kind Kind) (*colBuf, error) {
	if len(t.keep) > 0 && !slices.Contains(t.keep, key) {
		return nil, nil
	}
	if len(t.cols) >= MaxColumns {
		return nil, fmt.Errorf("column %q: more than %d columns: each key, and each element of an array, list or map, is one", key, MaxColumns)
	}
	c := t.add(key)
	if c.kind == "" {
		c.kind = kind
	}
	return c, nil
}

// missing reports a column ReadOptions name that no record had.
func (t *table) missing() error {
	for _, list := range [][]string{t.opts.Columns, t.opts.Numeric, t.opts.Categorical} {
		for _, want := range list {
			if t.byName[want] == nil {
				return fmt.Errorf("missing column %q", want)
			}
		}
	}
	return nil
}
