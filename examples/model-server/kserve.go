package main

import (
	"errors"

	"github.com/valyala/fastjson"
)

// decodeKServe reads a KServe v1 predict request: {"instances": [...]}, each
// instance an object of named features or an array of values. TensorFlow
// Serving's row form {"inputs": [...]} is accepted too.
func decodeKServe(v *fastjson.Value, sc *scratch) error {
	field := "instances"
	rows := v.Get(field)
	if rows == nil {
		field = "inputs"
		rows = v.Get(field)
	}
	if rows == nil {
		return errors.New(`missing "instances"`)
	}
	a, ok := array(rows)
	if !ok {
		return errors.New(`"` + field + `": want an array`)
	}
	return decodeRows(field, a, sc)
}
