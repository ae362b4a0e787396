package drift

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ReadOptions tune ReadCSV and ReadJSONL.
type ReadOptions struct {
	// Columns keeps only these columns, in this order; each must exist. Empty
	// keeps every column.
	Columns []string
	// Numeric forces these columns numeric: a value that is not a number is an
	// error.
	Numeric []string
	// Categorical forces these columns categorical, e.g. zip codes.
	Categorical []string
	// Missing are the CSV values read as missing (default: those IsCSVMissing
	// reports). In JSONL, null, "" and an absent key are missing, and any
	// other string is a string.
	Missing []string
	// Comma is the CSV field separator (default ',').
	Comma rune
}

// ReadCSV reads reference data from CSV with a header row, for BuildProfile. name
// is the file's name, for errors, which read like `train.csv:17: column "age":
// ragged row (4 fields, want 5)`.
//
// Booleans (true, True, TRUE, false, False, FALSE) are read as 1 and 0, as in
// JSON Lines. A column is numeric if every non-missing value parses as a number
// (strconv.ParseFloat: "1e3", "-0.5", "Inf"), else categorical, unless
// ReadOptions force it. The values IsCSVMissing reports (or ReadOptions.Missing)
// are missing, NA in a numeric column; ±Inf in a numeric column are numbers,
// which BuildProfile counts as missing too.
func ReadCSV(name string, r io.Reader, opts ReadOptions) ([]Column, error) {
	cr := csv.NewReader(skipBOM(r))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file", name)
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	header = slices.Clone(header)
	if opts.Comma == 0 && len(header) == 1 {
		// Excel in many locales writes ";" between fields (and "," in
		// numbers): read with ",", each row would be one text column.
		for _, sep := range []string{";", "\t", "|"} {
			if strings.Contains(header[0], sep) {
				return nil, fmt.Errorf("%s:1: one column named %q: fields must be separated by commas, not %q", name, header[0], sep)
			}
		}
	}
	isMissing := IsCSVMissing
	if opts.Missing != nil {
		isMissing = func(s string) bool { return slices.Contains(opts.Missing, s) }
	}
	t, err := newTable(header, opts, func(format string, args ...any) error {
		return fmt.Errorf("%s:1: %s", name, fmt.Sprintf(format, args...))
	})
	if err != nil {
		return nil, err
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			if len(rec) < len(header) {
				return nil, fmt.Errorf("%s:%d: column %q: ragged row (%d fields, want %d)", name, line, header[len(rec)], len(rec), len(header))
			}
			return nil, fmt.Errorf("%s:%d: ragged row (%d fields, want %d)", name, line, len(rec), len(header))
		}
		for i, c := range t.byField {
			if c == nil {
				continue
			}
			v := rec[i]
			if isMissing(v) {
				v = ""
			}
			if b, ok := csvBools[v]; ok {
				v = b
			}
			if err := c.add(v); err != nil {
				l, _ := cr.FieldPos(i)
				return nil, fmt.Errorf("%s:%d: column %q: %w", name, l, c.name, err)
			}
		}
		t.rows++
	}
	if t.rows == 0 {
		return nil, fmt.Errorf("%s: no rows after the header", name)
	}
	return t.columns()
}

// IsCSVMissing reports whether a CSV field is a missing value: empty, or one of
// the markers pandas.read_csv reads as NaN by default ("NA", "N/A", "n/a",
// "#N/A", "#N/A N/A", "#NA", "<NA>", "NULL", "null", "None", "NaN", "-NaN",
// "nan", "-nan", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN"), matched exactly.
// CSV has no null, and its NaN is pandas' missing value, so a CSV file reads as
// the pipeline that trained the model read it, and as MLflow's scoring server
// reads a CSV request (with pandas): ReadCSV and the sidecar read CSV so. JSON
// has null: there a string is a string, "NA" and "NaN" included.
func IsCSVMissing(s string) bool {
	switch s {
	case "", "NA", "N/A", "n/a", "#N/A", "#N/A N/A", "#NA", "<NA>", "NULL", "null", "None",
		"NaN", "-NaN", "nan", "-nan", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN":
		return true
	}
	return false
}

// skipBOM returns r without the UTF-8 byte order mark it may start with, as
// Excel's "CSV UTF-8" and PowerShell write. It goes before the CSV reader:
// a BOM before a quoted first field ("\ufeff\"age\",...") is a bare quote to
// encoding/csv.
func skipBOM(r io.Reader) *bufio.Reader {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && string(b) == "\ufeff" {
		_, _ = br.Discard(3) // the bytes were peeked
	}
	return br
}

// csvBools are the booleans of CSV, as pandas (True, False) and others write
// them, read as 1 and 0: as JSON Lines, Parquet and the sidecar read booleans,
// so that a boolean column of training data in CSV is the same feature as the
// booleans of a model's JSON traffic.
var csvBools = map[string]string{"true": "1", "True": "1", "TRUE": "1", "false": "0", "False": "0", "FALSE": "0"}

func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d:%d: %w", name, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// table accumulates columns while reading.
type table struct {
	cols    []*colBuf
	byField []*colBuf // by CSV field; nil for dropped fields
	byName  map[string]*colBuf
	keep    []string // ReadOptions.Columns
	rows    int
	opts    ReadOptions
	next    int // the index in cols of the column after the last one set
}

// colBuf holds one column's values as text, one after the other, until its kind is
// known: the size of the data itself, not a string header per value.
type colBuf struct {
	name    string
	index   int  // in table.cols
	kind    Kind // forced kind, or ""
	text    []byte
	ends    []uint32 // ends[i] is where value i ends in text; "" is missing
	numeric bool     // every value so far is a number or missing
}

func newTable(header []string, opts ReadOptions, errf func(string, ...any) error) (*table, error) {
	t := &table{byName: map[string]*colBuf{}, keep: opts.Columns, opts: opts}
	seen := map[string]bool{}
	for i, h := range header {
		if h == "" && i == 0 && len(header) > 1 {
			// pandas' to_csv writes its index so, unless told index=False.
			return nil, errf("column 1: empty name (an index, as pandas' to_csv writes by default? write the file with index=False)")
		}
		if h == "" {
			return nil, errf("column %d: empty name", i+1)
		}
		if !utf8.ValidString(h) {
			return nil, errf("column %d: name %q is not valid UTF-8", i+1, h)
		}
		if seen[h] {
			return nil, errf("column %q: duplicate name", h)
		}
		seen[h] = true
	}
	for _, want := range opts.Columns {
		if !seen[want] {
			return nil, errf("missing column %q", want)
		}
	}
	for _, forced := range [][]string{opts.Numeric, opts.Categorical} {
		for _, want := range forced {
			if !seen[want] {
				return nil, errf("missing column %q", want)
			}
		}
	}
	t.byField = make([]*colBuf, len(header))
	for i, h := range header {
		if len(opts.Columns) == 0 || slices.Contains(opts.Columns, h) {
			t.byField[i] = t.add(h)
		}
	}
	return t, nil
}

// add starts a column.
func (t *table) add(name string) *colBuf {
	c := &colBuf{name: name, index: len(t.cols), numeric: true}
	switch {
	case slices.Contains(t.opts.Numeric, name):
		c.kind = Numeric
	case slices.Contains(t.opts.Categorical, name):
		c.kind = Categorical
	}
	t.cols = append(t.cols, c)
	t.byName[name] = c
	return c
}

var errTooLarge = errors.New("more than 4 GiB of text")

// add appends one value; "" is missing.
func (c *colBuf) add(v string) error {
	if v != "" && c.kind != Categorical && c.numeric {
		// A NaN or an infinity given as a number (FormatNumber) is one.
		if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil && !isNonFinite(v) {
			if c.kind == Numeric {
				return fmt.Errorf("%q is not a number", v)
			}
			c.numeric = false
		}
	}
	if len(c.text)+len(v) > math.MaxUint32 {
		return errTooLarge
	}
	c.text = append(c.text, v...)
	c.ends = append(c.ends, uint32(len(c.text)))
	return nil
}

func isNonFinite(s string) bool {
	_, ok := NonFinite(s)
	return ok
}

// pad appends missing values up to n values.
func (c *colBuf) pad(n int) {
	for len(c.ends) < n {
		c.ends = append(c.ends, uint32(len(c.text)))
	}
}

// columns turns the buffers into Columns.
func (t *table) columns() ([]Column, error) {
	cols := t.cols
	if len(t.keep) > 0 {
		cols = cols[:0:0]
		for _, name := range t.keep {
			cols = append(cols, t.byName[name])
		}
	}
	out := make([]Column, 0, len(cols))
	for _, c := range cols {
		c.pad(t.rows)
		col := Column{Name: c.name}
		start := uint32(0)
		if c.kind == Numeric || c.kind == "" && c.numeric {
			col.Num = make([]float64, len(c.ends))
			for i, end := range c.ends {
				v := NA()
				if end > start {
					b := c.text[start:end]
					var ok bool
					if b[0] == 0 { // a NaN or an infinity given as a number
						v, ok = NonFinite(string(b))
					}
					if !ok {
						v, _ = strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
					}
				}
				col.Num[i] = v
				start = end
			}
		} else {
			col.Str = make([]string, len(c.ends))
			intern := map[string]string{}
			for i, end := range c.ends {
				b := c.text[start:end]
				s, ok := intern[string(b)]
				if !ok && len(intern) < 1<<16 {
					s = string(b)
					intern[s] = s
				} else if !ok {
					s = string(b)
				}
				col.Str[i] = s
				start = end
			}
		}
		c.text, c.ends = nil, nil
		out = append(out, col)
	}
	return out, nil
}
