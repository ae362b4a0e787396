package payload

import (
	"bytes"
	"encoding/base64"
	"math"
	"strconv"

	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/encoding/protowire"
)

// Seldon Core 1's "tftensor" data: a tensorflow.TensorProto (tfgrpc.go), in
// protobuf's JSON mapping over HTTP and in its binary form over gRPC:
//
//	{"data": {"names": ["a", "b"], "tftensor": {"dtype": "DT_FLOAT",
//	  "tensorShape": {"dim": [{"size": "2"}, {"size": "2"}]}, "floatVal": [1, 2, 3, 4]}}}
//
// Both are read as TensorFlow Serving's tensors are, the JSON form once it
// is written in the binary one: the dtype's typed values or the tensor
// content, filled out to the shape as TensorFlow does. As in a "tensor",
// the first dimension is the instances, and the elements of each, flat in
// row-major order, are its positional features (or, in an answer, its
// prediction: one value, or scores).

// tftensorName names the tensor in errors: data["tftensor"].
var tftensorName = []byte("tftensor")

// tfDtypeNames are the names of the DataTypes of tfDtypes, as protobuf's
// JSON mapping writes an enum.
var tfDtypeNames = map[string]uint64{
	"DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5,
	"DT_INT8": 6, "DT_STRING": 7, "DT_INT64": 9, "DT_BOOL": 10, "DT_BFLOAT16": 14,
	"DT_UINT16": 17, "DT_HALF": 19, "DT_UINT32": 22, "DT_UINT64": 23,
}

// tfValFields are the typed value fields of a TensorProto by their JSON
// names (protobuf's parsers take the proto name too).
var tfValFields = map[string]struct {
	num   protowire.Number
	codec elemCodec
}{
	"floatVal": {5, codecFloat32}, "float_val": {5, codecFloat32},
	"doubleVal": {6, codecFloat64}, "double_val": {6, codecFloat64},
	"intVal": {7, codecInt32}, "int_val": {7, codecInt32},
	"stringVal": {8, codecBytes}, "string_val": {8, codecBytes},
	"int64Val": {10, codecInt64}, "int64_val": {10, codecInt64},
	"boolVal": {11, codecBool}, "bool_val": {11, codecBool},
	"halfVal": {13, codecUint32}, "half_val": {13, codecUint32},
	"uint32Val": {16, codecUint32}, "uint32_val": {16, codecUint32},
	"uint64Val": {17, codecUint64}, "uint64_val": {17, codecUint64},
}

// seldonTFTensor reads the "tftensor" of a DefaultData: its instances into
// b, or, for a response, their predictions.
func (p *Parser) seldonTFTensor(v *fastjson.Value, b *Batch, response bool, mkErr errFunc) error {
	var err error
	if p.tfProto, err = tensorProtoFromJSON(p.tfProto[:0], v, mkErr); err != nil {
		return err
	}
	values, n, width, err := p.tfTensorValues(p.tfProto, mkErr)
	if err != nil {
		return err
	}
	return p.seldonInstances(b, values, n, width, response, "tftensor")
}

// tfTensorValues reads the binary TensorProto msg of a DefaultData: its
// elements, flat in row-major order, its first dimension n (1 for a
// scalar), and the number of elements of each of the n.
func (p *Parser) tfTensorValues(msg []byte, mkErr errFunc) (values []*fastjson.Value, n, width int, err error) {
	start := len(p.protoTensors) // the stack of structJSON, over gRPC
	p.protoTensors = append(p.protoTensors, protoTensorMsg{name: tftensorName, msg: msg})
	defer func() { p.protoTensors = p.protoTensors[:start] }()
	p.fillBudget = tfMaxFill
	t, err := p.tfTensor(start, "data", mkErr)
	if err != nil {
		return nil, 0, 0, err
	}
	values = p.elems[t.start:]
	if t.isBool {
		for i, e := range values {
			values[i] = p.arena.NewFalse()
			if e.GetFloat64() != 0 {
				values[i] = p.arena.NewTrue()
			}
		}
	}
	return values, t.rows, t.k, nil
}

// tensorProtoFromJSON writes the TensorProto v, in protobuf's JSON mapping, in
// its binary form to dst. Fields it does not read are left out.
func tensorProtoFromJSON(dst []byte, v *fastjson.Value, mkErr errFunc) ([]byte, error) {
	o := v.GetObject()
	if o == nil {
		return dst, mkErr(ReasonTypeMismatch, `"tftensor" is not an object`)
	}
	var err error
	o.Visit(func(key []byte, f *fastjson.Value) {
		if err != nil {
			return
		}
		switch string(key) {
		case "dtype":
			var dt uint64
			if dt, err = tfDtypeJSON(f, mkErr); err == nil {
				dst = protowire.AppendVarint(protowire.AppendTag(dst, tfTensorDtype, protowire.VarintType), dt)
			}
		case "tensorShape", "tensor_shape":
			dst, err = tfShapeProto(dst, f, mkErr)
		case "tensorContent", "tensor_content":
			dst, err = appendBase64Field(dst, tfTensorContent, f, "tftensor."+string(key), mkErr)
		default:
			if vf, ok := tfValFields[string(key)]; ok {
				dst, err = tfValsProto(dst, vf.num, vf.codec, f, "tftensor."+string(key), mkErr)
			}
		}
	})
	return dst, err
}

// tfDtypeJSON reads a DataType: its name, or its number.
func tfDtypeJSON(v *fastjson.Value, mkErr errFunc) (uint64, error) {
	if s, err := v.StringBytes(); err == nil {
		if dt, ok := tfDtypeNames[string(s)]; ok {
			return dt, nil
		}
		return 0, mkErr(ReasonTypeMismatch, `"tftensor" has a dtype (`+strconv.Quote(string(s))+") that is not read")
	}
	dt, err := v.Uint64()
	if err != nil {
		return 0, mkErr(ReasonTypeMismatch, `"tftensor" has a "dtype" that is neither a name nor a number`)
	}
	return dt, nil
}

// tfShapeProto appends the TensorShapeProto v, {"dim": [{"size": "2"}, …]}.
func tfShapeProto(dst []byte, v *fastjson.Value, mkErr errFunc) ([]byte, error) {
	bad := func() error {
		return mkErr(ReasonTypeMismatch, `"tftensor" has a "tensorShape" that is not {"dim": [{"size": …}, …]}`)
	}
	o := v.GetObject()
	if o == nil {
		return dst, bad()
	}
	var dims []*fastjson.Value
	if d := o.Get("dim"); d != nil {
		var err error
		if dims, err = d.Array(); err != nil {
			return dst, bad()
		}
	}
	// Each Dim is {size = 1}: the sizes first, for the length of the
	// message, then the message.
	size := func(d *fastjson.Value) (uint64, error) {
		if d.Type() != fastjson.TypeObject {
			return 0, bad()
		}
		s := d.Get("size")
		if s == nil {
			return 0, nil
		}
		x, err := intJSON(s)
		if err != nil {
			return 0, bad()
		}
		return uint64(x), nil
	}
	n := 0
	for _, d := range dims {
		x, err := size(d)
		if err != nil {
			return dst, err
		}
		dim := 1 + protowire.SizeVarint(x)
		n += 1 + protowire.SizeBytes(dim)
	}
	dst = protowire.AppendVarint(protowire.AppendTag(dst, tfTensorShape, protowire.BytesType), uint64(n))
	for _, d := range dims {
		x, _ := size(d)
		dst = protowire.AppendVarint(protowire.AppendTag(dst, tfShapeDim, protowire.BytesType), uint64(1+protowire.SizeVarint(x)))
		dst = protowire.AppendVarint(protowire.AppendTag(dst, tfDimSize, protowire.VarintType), x)
	}
	return dst, nil
}

// tfValsProto appends the elements of the JSON array v as field num,
// one field an element, encoded as codec says.
func tfValsProto(dst []byte, num protowire.Number, codec elemCodec, v *fastjson.Value, at string, mkErr errFunc) ([]byte, error) {
	a, err := v.Array()
	if err != nil {
		return dst, mkErr(ReasonTypeMismatch, `"`+at+`" is not an array`)
	}
	bad := func() error { return mkErr(ReasonTypeMismatch, `"`+at+`" has an element that is not of its type`) }
	for _, e := range a {
		if codec == codecBytes {
			if dst, err = appendBase64Field(dst, num, e, at, mkErr); err != nil {
				return dst, err
			}
			continue
		}
		dst = protowire.AppendTag(dst, num, codec.wireType())
		switch codec {
		case codecFloat32, codecFloat64:
			f, err := floatJSON(e)
			if err != nil {
				return dst, bad()
			}
			if codec == codecFloat32 {
				dst = protowire.AppendFixed32(dst, math.Float32bits(float32(f)))
			} else {
				dst = protowire.AppendFixed64(dst, math.Float64bits(f))
			}
		case codecBool:
			b, err := e.Bool()
			if err != nil {
				return dst, bad()
			}
			dst = protowire.AppendVarint(dst, protowire.EncodeBool(b))
		case codecUint32, codecUint64:
			x, err := e.Uint64()
			if e.Type() == fastjson.TypeString {
				x, err = strconv.ParseUint(string(e.GetStringBytes()), 10, 64)
			}
			if err != nil {
				return dst, bad()
			}
			dst = protowire.AppendVarint(dst, x)
		default: // int32, int64
			x, err := intJSON(e)
			if err != nil {
				return dst, bad()
			}
			dst = protowire.AppendVarint(dst, uint64(x))
		}
	}
	return dst, nil
}

// appendBase64Field appends the bytes of v, a string in base64 (standard
// or URL-safe, padded or not, as protobuf's JSON mapping takes bytes), as
// field num.
func appendBase64Field(dst []byte, num protowire.Number, v *fastjson.Value, at string, mkErr errFunc) ([]byte, error) {
	s, err := v.StringBytes()
	if err != nil {
		return dst, mkErr(ReasonTypeMismatch, `"`+at+`" has a value that is not a base64 string`)
	}
	enc := base64.RawStdEncoding
	if bytes.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(enc.DecodedLen(len(s))))
	start := len(dst)
	dst = append(dst, make([]byte, enc.DecodedLen(len(s)))...)
	if _, err := enc.Decode(dst[start:], s); err != nil {
		return dst[:start], mkErr(ReasonTypeMismatch, `"`+at+`" has a value that is not a base64 string`)
	}
	return dst, nil
}

// floatJSON reads a float of protobuf's JSON mapping: a number, or a string
// that holds one ("NaN", "Infinity" and "-Infinity" too).
func floatJSON(v *fastjson.Value) (float64, error) {
	if v.Type() == fastjson.TypeString {
		return strconv.ParseFloat(string(v.GetStringBytes()), 64)
	}
	return v.Float64()
}

// intJSON reads an integer of protobuf's JSON mapping: a number, or a
// string that holds one (as 64-bit integers are written).
func intJSON(v *fastjson.Value) (int64, error) {
	if v.Type() == fastjson.TypeString {
		return strconv.ParseInt(string(v.GetStringBytes()), 10, 64)
	}
	return v.Int64()
}
