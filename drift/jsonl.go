package drift

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/modelmon/modelmon/drift/nonfinite"
)

// ReadJSONL reads reference data from JSON Lines, one object per line, for
// BuildProfile. name is the file's name, for errors, which read like
// `train.jsonl:3:14: invalid character 'x' looking for beginning of value`
// (file:line:byte) or `train.jsonl:5: column "age": "abc" is not a number`.
//
// Objects are flattened as the sidecar's payload parser does: {"a": {"b": 1, "c":
// [2, 3]}} gives the columns a.b, a.c.0 and a.c.1. Columns are ordered by first
// appearance; a key absent from a line, null and "" are missing. A null where
// other lines have an object or an array ({"a": null} beside {"a": {"b": 1}})
// means the members of that object are missing on that line: it makes no
// column "a" of its own, unless ReadOptions names one. Numbers are read
// as float64 (and as their shortest text in a categorical column, as the sidecar
// formats them), true and false as 1 and 0. The words NaN, Infinity and
// -Infinity that Python's json module writes (pandas' missing values among
// them) are numbers, as the push API reads them, as is a number too large
// for a float64 (1e999, infinite): NaN and ±Inf, which the checks count as
// "nan" and "inf" violations, as the sidecar does, in a categorical column
// too, where they are strings NonFinite reads and not the text "NaN" a
// JSON string gives. Types are inferred and forced as in ReadCSV.
// Blank lines are skipped. The lines make at most MaxColumns columns.
func ReadJSONL(name string, r io.Reader, opts ReadOptions) ([]Column, error) {
	br := skipBOM(r)
	t := &table{byName: map[string]*colBuf{}, keep: opts.Columns, opts: opts}
	var total int
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		total += len(line)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			if perr := t.addJSONLine(line); perr != nil {
				var le *lineError
				if errors.As(perr, &le) && le.offset >= 0 {
					return nil, fmt.Errorf("%s:%d:%d: %w", name, lineNo, le.offset, le.err)
				}
				return nil, fmt.Errorf("%s:%d: %w", name, lineNo, perr)
			}
		}
		if err != nil {
			break
		}
	}
	if total == 0 {
		return nil, fmt.Errorf("%s: empty file", name)
	}
	if t.rows == 0 {
		return nil, fmt.Errorf("%s: no rows", name)
	}
	if err := t.missing(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t.dropNullParents()
	return t.columns()
}

// dropNullParents drops the columns that are only the nulls of an object or
// array that other lines have: a column "a" with no value but missing ones
// while columns "a.b" or "a.0" exist. A line {"user": null} would otherwise
// make a feature "user" that is always missing, beside the user.age and
// user.country of the lines that have a user. A column ReadOptions names is
// kept.
func (t *table) dropNullParents() {
	named := func(n string) bool {
		return slices.Contains(t.opts.Columns, n) || slices.Contains(t.opts.Numeric, n) || slices.Contains(t.opts.Categorical, n)
	}
	// Column names sorted: the children of "a", named "a." and more, follow
	// it, though not at once ("a-b" sorts between "a" and "a.b").
	names := make([]string, 0, len(t.cols))
	for _, c := range t.cols {
		names = append(names, c.name)
	}
	slices.Sort(names)
	drop := map[string]bool{}
	for _, c := range t.cols {
		if len(c.text) > 0 || named(c.name) {
			continue // a value that is not missing, or asked for
		}
		prefix := c.name + "."
		i, _ := slices.BinarySearch(names, prefix)
		if i < len(names) && strings.HasPrefix(names[i], prefix) {
			drop[c.name] = true
		}
	}
	if len(drop) == 0 {
		return
	}
	t.cols = slices.DeleteFunc(t.cols, func(c *colBuf) bool { return drop[c.name] })
	for n := range drop {
		delete(t.byName, n)
	}
}

// lineError is a JSON syntax error at a byte offset of its line.
type lineError struct {
	offset int64
	err    error
}

func (e *lineError) Error() string { return e.err.Error() }

// addJSONLine adds the values of one line, a JSON object.
func (t *table) addJSONLine(line []byte) error {
	// A JSON array of objects, or objects pretty-printed over several
	// lines, are what people mistake for JSON Lines: say so rather than
	// report the syntax error of their first line.
	switch trimmed := bytes.TrimSpace(line); {
	case trimmed[0] == '[':
		return errors.New("a JSON array, not an object: JSON Lines has one object per line")
	case string(trimmed) == "{":
		return errors.New("an object split over several lines: JSON Lines has one object per line")
	}
	// NaN, Infinity and -Infinity become strings that stand for them,
	// which encoding/json decodes.
	q := nonfinite.Quote(line)
	// Unmarshal checks the syntax first: its errors have the byte offset in the line.
	if err := json.Unmarshal(q, new(json.RawMessage)); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &lineError{offset: nonfinite.Offset(q, se.Offset), err: err}
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(q))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(dec, q, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	var ferr error
	emit := func(key, v string) {
		if ferr == nil {
			ferr = t.set(key, "", v)
		}
	}
	if err := flattenObject(dec, q, "", emit); err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return syntaxError(dec, q, err)
		}
		return errors.New("data after the JSON object")
	}
	t.rows++
	t.next = 0
	return nil
}

// syntaxError is err of dec, reading q (a line as nonfinite.Quote returned
// it), with the byte offset in the line as written.
func syntaxError(dec *json.Decoder, q []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &lineError{offset: nonfinite.Offset(q, se.Offset), err: err}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &lineError{offset: nonfinite.Offset(q, dec.InputOffset()), err: errors.New("unexpected end of JSON")}
	}
	return err
}

// flattenObject reads the members of an object whose '{' was read, emitting
// prefix+key for scalars and recursing into objects and arrays.
func flattenObject(dec *json.Decoder, q []byte, prefix string, emit func(key, v string)) error {
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(dec, q, err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("object key is not a string")
		}
		if err := flattenValue(dec, q, prefix+key, emit); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	if err != nil {
		return syntaxError(dec, q, err)
	}
	return nil
}

func flattenValue(dec *json.Decoder, q []byte, key string, emit func(key, v string)) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(dec, q, err)
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return flattenObject(dec, q, key+".", emit)
		}
		for i := 0; dec.More(); i++ {
			if err := flattenValue(dec, q, key+"."+strconv.Itoa(i), emit); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return syntaxError(dec, q, err)
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("column %q: bad number %s", key, v)
		}
		emit(key, FormatNumber(f)) // 1e999 is +Inf
	case string:
		// A NaN, Infinity or -Infinity Quote put in a string is already
		// the text FormatNumber gives it: a number, not the text "NaN".
		emit(key, v)
	case bool:
		if v {
			emit(key, "1")
		} else {
			emit(key, "0")
		}
	case nil:
		emit(key, "")
	}
	return nil
}
