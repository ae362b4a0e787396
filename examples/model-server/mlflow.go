package main

import (
	"errors"
	"fmt"

	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

// mlflowFields are the keys of an MLflow scoring request, of which a request
// has exactly one.
var mlflowFields = []string{"dataframe_split", "dataframe_records", "instances", "inputs"}

// decodeMLflow reads an MLflow /invocations request:
//
//	{"dataframe_split": {"columns": [...], "data": [[...], ...]}}
//	{"dataframe_records": [{...}, ...]}
//	{"instances": [...]}                        rows, as in KServe v1
//	{"inputs": [...]} or {"inputs": {"amount": [...], ...}}   rows or columns
func decodeMLflow(v *fastjson.Value, sc *scratch) error {
	var field string
	for _, f := range mlflowFields {
		if v.Exists(f) {
			if field != "" {
				return fmt.Errorf("request has both %q and %q", field, f)
			}
			field = f
		}
	}
	if field == "" {
		return errors.New(`request has none of "dataframe_split", "dataframe_records", "instances" or "inputs"`)
	}
	body := v.Get(field)
	switch field {
	case "dataframe_split":
		return decodeDataframeSplit(body, sc)
	case "inputs":
		if o, err := body.Object(); err == nil {
			return decodeColumns(o, sc)
		}
	}
	a, ok := array(body)
	if !ok {
		return fmt.Errorf("%q: want an array", field)
	}
	return decodeRows(field, a, sc)
}

// decodeDataframeSplit reads pandas' "split" orientation. Without "columns", rows
// are in the model's feature order.
func decodeDataframeSplit(v *fastjson.Value, sc *scratch) error {
	if v.Type() != fastjson.TypeObject {
		return errors.New(`"dataframe_split": want an object`)
	}
	data, ok := array(v.Get("data"))
	if !ok {
		return errors.New(`"dataframe_split.data": want an array`)
	}
	columns := v.Get("columns")
	if columns == nil {
		return decodeRows("dataframe_split.data", data, sc)
	}
	names, ok := array(columns)
	if !ok {
		return errors.New(`"dataframe_split.columns": want an array`)
	}
	index := make([]int, len(names)) // feature position of each column, -1 if unknown
	for c, n := range names {
		name, err := n.StringBytes()
		if err != nil {
			return fmt.Errorf("dataframe_split.columns[%d]: want a string", c)
		}
		var ok bool
		if index[c], ok = fraud.Index(string(name)); !ok {
			index[c] = -1
		}
	}
	if len(data) == 0 {
		return errors.New(`"dataframe_split.data" is empty`)
	}
	sc.rows(len(data))
	for r, row := range data {
		vals, ok := array(row)
		if !ok {
			return fmt.Errorf("dataframe_split.data[%d]: want an array", r)
		}
		if len(vals) != len(names) {
			return fmt.Errorf("dataframe_split.data[%d]: %d values for %d columns", r, len(vals), len(names))
		}
		for c, val := range vals {
			if index[c] < 0 {
				continue
			}
			var err error
			if sc.xs[r][index[c]], err = number(val); err != nil {
				return fmt.Errorf("dataframe_split.data[%d]: column %q: %w", r, names[c].GetStringBytes(), err)
			}
		}
	}
	return nil
}

// decodeColumns reads {"feature": [values...], ...}; all known columns must have
// the same length. Unknown columns are ignored.
func decodeColumns(o *fastjson.Object, sc *scratch) error {
	n := -1
	var err error
	o.Visit(func(key []byte, v *fastjson.Value) {
		i, ok := fraud.Index(string(key))
		if !ok || err != nil {
			return
		}
		vals, ok := array(v)
		if !ok {
			err = fmt.Errorf("inputs.%s: want an array", key)
			return
		}
		if n < 0 {
			n = len(vals)
			sc.rows(n)
		} else if len(vals) != n {
			err = fmt.Errorf("inputs.%s: %d values, other columns have %d", key, len(vals), n)
			return
		}
		for r, val := range vals {
			if sc.xs[r][i], err = number(val); err != nil {
				err = fmt.Errorf("inputs.%s[%d]: %w", key, r, err)
				return
			}
		}
	})
	if err == nil && n < 0 {
		err = errors.New(`"inputs" has no known feature`)
	}
	return err
}
