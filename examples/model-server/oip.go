package main

import (
	"errors"
	"fmt"

	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

// oipDatatypes are the Open Inference Protocol tensor types the model reads.
var oipDatatypes = map[string]bool{
	"BOOL": true, "UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true, "FP16": true, "FP32": true, "FP64": true,
}

// decodeOIP reads an Open Inference Protocol v2 infer request. Its inputs are
// either one column per feature, named after the feature, with shape [N] or
// [N, 1] (MLServer's pandas codec), or a single tensor of another name with shape
// [N, F] (or [F] for one instance) whose rows list features in the model's order.
// Data may be flat, in row-major order, or nested.
func decodeOIP(v *fastjson.Value, sc *scratch) error {
	inputs, ok := array(v.Get("inputs"))
	if !ok {
		return errors.New(`"inputs": want an array`)
	}
	if len(inputs) == 0 {
		return errors.New(`"inputs" is empty`)
	}
	n := -1 // rows, once known
	for k, in := range inputs {
		if in.Type() != fastjson.TypeObject {
			return fmt.Errorf("inputs[%d]: want an object", k)
		}
		name := string(in.GetStringBytes("name"))
		if name == "" {
			return fmt.Errorf(`inputs[%d]: missing "name"`, k)
		}
		if dt := string(in.GetStringBytes("datatype")); !oipDatatypes[dt] {
			return fmt.Errorf("input %q: unsupported datatype %q", name, dt)
		}
		shape, err := oipShape(in.Get("shape"))
		if err != nil {
			return fmt.Errorf("input %q: %w", name, err)
		}
		data := in.Get("data")
		if data == nil {
			return fmt.Errorf(`input %q: missing "data"`, name)
		}
		if sc.vals, err = flatten(sc.vals[:0], data); err != nil {
			return fmt.Errorf("input %q: %w", name, err)
		}
		size := 1
		for _, d := range shape {
			size *= d
		}
		if size != len(sc.vals) {
			return fmt.Errorf("input %q: shape %v holds %d values, data has %d", name, shape, size, len(sc.vals))
		}

		i, isColumn := fraud.Index(name)
		if !isColumn {
			if len(inputs) > 1 {
				return fmt.Errorf("input %q is not a feature, so it must be the only input", name)
			}
			return decodeTensor(name, shape, sc)
		}
		if len(shape) != 1 && (len(shape) != 2 || shape[1] != 1) {
			return fmt.Errorf("input %q: a feature column has shape [N] or [N, 1], not %v", name, shape)
		}
		if n < 0 {
			n = shape[0]
			sc.rows(n)
		} else if shape[0] != n {
			return fmt.Errorf("input %q: %d rows, other inputs have %d", name, shape[0], n)
		}
		for r, val := range sc.vals {
			sc.xs[r][i] = val
		}
	}
	return nil
}

// decodeTensor reads sc.vals, a [F] or [N, F] tensor, into sc.xs.
func decodeTensor(name string, shape []int, sc *scratch) error {
	n, f := 1, shape[0]
	if len(shape) == 2 {
		n, f = shape[0], shape[1]
	}
	if f > fraud.NumFeatures {
		return fmt.Errorf("input %q: %d features, the model takes at most %d", name, f, fraud.NumFeatures)
	}
	sc.rows(n)
	for r := range n {
		copy(sc.xs[r][:], sc.vals[r*f:(r+1)*f])
	}
	return nil
}

// maxDim bounds each dimension of a shape, so that sizes cannot overflow.
const maxDim = 1 << 24

// oipShape reads a tensor shape: one or two non-negative integers, which is all
// the model reads.
func oipShape(v *fastjson.Value) ([]int, error) {
	dims, ok := array(v)
	if !ok || len(dims) == 0 || len(dims) > 2 {
		return nil, errors.New(`"shape": want an array of one or two dimensions`)
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		n, err := d.Int()
		if err != nil || n < 0 || n > maxDim {
			return nil, fmt.Errorf(`"shape": want integers from 0 to %d`, maxDim)
		}
		shape[i] = n
	}
	return shape, nil
}
