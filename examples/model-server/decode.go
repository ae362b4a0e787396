package main

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

// array returns the elements of v, or false when v is missing or not an array.
func array(v *fastjson.Value) ([]*fastjson.Value, bool) {
	if v == nil || v.Type() != fastjson.TypeArray {
		return nil, false
	}
	a, _ := v.Array()
	return a, true
}

// decodeRows reads rows, each one instance, into sc.xs. field names the rows in errors.
func decodeRows(field string, rows []*fastjson.Value, sc *scratch) error {
	if len(rows) == 0 {
		return fmt.Errorf("%q is empty", field)
	}
	sc.rows(len(rows))
	for r, row := range rows {
		if err := decodeInstance(row, &sc.xs[r]); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, r, err)
		}
	}
	return nil
}

// decodeInstance reads one instance into x: either an object of named features
// (unknown names are ignored) or an array of values in the model's feature order.
// Missing features stay 0.
func decodeInstance(v *fastjson.Value, x *fraud.Vector) error {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		var err error
		o.Visit(func(key []byte, v *fastjson.Value) {
			i, ok := fraud.Index(string(key))
			if !ok || err != nil {
				return
			}
			if x[i], err = number(v); err != nil {
				err = fmt.Errorf("feature %q: %w", key, err)
			}
		})
		return err
	case fastjson.TypeArray:
		a, _ := v.Array()
		if len(a) > fraud.NumFeatures {
			return fmt.Errorf("%d values, the model takes at most %d", len(a), fraud.NumFeatures)
		}
		for i, e := range a {
			var err error
			if x[i], err = number(e); err != nil {
				return fmt.Errorf("value %d: %w", i, err)
			}
		}
		return nil
	default:
		return fmt.Errorf("want an object or an array, got %s", v.Type())
	}
}

// number reads a feature value: a finite number, a boolean (1 or 0) or null (0).
func number(v *fastjson.Value) (float64, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
		f, err := v.Float64()
		if err != nil {
			return 0, err
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errors.New("not a finite number")
		}
		return f, nil
	case fastjson.TypeTrue:
		return 1, nil
	case fastjson.TypeFalse, fastjson.TypeNull:
		return 0, nil
	default:
		return 0, fmt.Errorf("want a number, got %s", v.Type())
	}
}

// flatten appends the numbers of v, a number or a nested array of numbers, to dst
// in row-major order.
func flatten(dst []float64, v *fastjson.Value) ([]float64, error) {
	if v.Type() != fastjson.TypeArray {
		f, err := number(v)
		return append(dst, f), err
	}
	a, _ := v.Array()
	for _, e := range a {
		var err error
		if dst, err = flatten(dst, e); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD, as encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, `\n`...)
			case c == '\r':
				dst = append(dst, `\r`...)
			case c == '\t':
				dst = append(dst, `\t`...)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
