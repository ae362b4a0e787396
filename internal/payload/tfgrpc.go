package payload

import (
	"bytes"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// TensorFlow Serving's gRPC API (tensorflow_serving/apis/predict.proto,
// service tensorflow.serving.PredictionService): a Predict call sends one
// PredictRequest and gets one PredictResponse. As for the OIP's messages
// (oipgrpc.go), their protobuf bytes are read field by field into the
// tensors the OIP's JSON form gives, so the features and predictions are
// those of the same tensors sent to Triton.
//
//	message PredictRequest {
//	  ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2;
//	  repeated string output_filter = 3; …
//	}
//	message PredictResponse {
//	  map<string, TensorProto> outputs = 1; ModelSpec model_spec = 2;
//	}
//	message ModelSpec {
//	  string name = 1;
//	  oneof version_choice { google.protobuf.Int64Value version = 2; string version_label = 4; }
//	  string signature_name = 3;
//	}
//	message TensorProto {
//	  DataType dtype = 1; TensorShapeProto tensor_shape = 2; int32 version_number = 3;
//	  bytes tensor_content = 4;
//	  repeated float float_val = 5; repeated double double_val = 6;
//	  repeated int32 int_val = 7; repeated bytes string_val = 8;
//	  repeated int64 int64_val = 10; repeated bool bool_val = 11;
//	  repeated int32 half_val = 13; repeated uint32 uint32_val = 16;
//	  repeated uint64 uint64_val = 17; …
//	}
//	message TensorShapeProto { message Dim { int64 size = 1; string name = 2; } repeated Dim dim = 2; … }
//
// A map field is a repeated entry message, its key field 1 and its value
// field 2, in no set order: the tensors are read in the order of their
// names. tensor_content, when set, holds the elements as the OIP's raw
// contents do (little-endian); else the typed field of the dtype does,
// and TensorFlow's own reading applies: no element fills the tensor with
// zeros, fewer than its shape repeat the last, more are cut to it.
const (
	tfModelSpec      = 1
	tfRequestInputs  = 2
	tfResponseOutput = 1

	tfSpecName         = 1
	tfSpecVersion      = 2
	tfSpecVersionLabel = 4

	tfTensorDtype   = 1
	tfTensorShape   = 2
	tfTensorContent = 4
	tfShapeDim      = 2
	tfDimSize       = 1

	// tfMaxFill is how many elements beyond those sent the tensors of a
	// message may fill with a repeated last value, all together, so that a
	// small message can't make huge tensors.
	tfMaxFill = 1 << 16
)

// tfDtype is a TensorFlow DataType the parser reads: the OIP datatype of
// its elements, and the TensorProto field that holds them typed.
type tfDtype struct {
	datatype string
	field    protowire.Number
	codec    elemCodec
}

// tfDtypes are the DataTypes by their enum number (types.proto); the
// complex, quantized, resource and variant types are not read.
var tfDtypes = [...]tfDtype{
	1:  {"FP32", 5, codecFloat32},   // DT_FLOAT
	2:  {"FP64", 6, codecFloat64},   // DT_DOUBLE
	3:  {"INT32", 7, codecInt32},    // DT_INT32
	4:  {"UINT8", 7, codecInt32},    // DT_UINT8
	5:  {"INT16", 7, codecInt32},    // DT_INT16
	6:  {"INT8", 7, codecInt32},     // DT_INT8
	7:  {"BYTES", 8, codecBytes},    // DT_STRING
	9:  {"INT64", 10, codecInt64},   // DT_INT64
	10: {"BOOL", 11, codecBool},     // DT_BOOL
	14: {"BF16", 13, codecBFloat16}, // DT_BFLOAT16
	17: {"UINT16", 7, codecInt32},   // DT_UINT16
	19: {"FP16", 13, codecHalf},     // DT_HALF
	22: {"UINT32", 16, codecUint32}, // DT_UINT32
	23: {"UINT64", 17, codecUint64}, // DT_UINT64
}

// TFRequestModel reads the model name and version of the request message
// of a TensorFlow Serving gRPC call of format f: its model_spec (the
// version as a number, or its label), or, for MultiInference, its first
// task's, which TensorFlow Serving runs the request on. Both are nil when
// the message does not say, or is malformed.
func TFRequestModel(f Format, msg []byte) (model, version []byte) {
	if f == FormatTFServingMultiInferenceGRPC {
		msg = firstFieldBytes(msg, multiTasks)
	}
	spec := fieldBytes(msg, tfModelSpec)
	if !bytesFields(spec, func(n protowire.Number, v []byte) {
		switch n {
		case tfSpecName:
			model = v
		case tfSpecVersion: // google.protobuf.Int64Value
			version = nil
			if x, ok := varintField(v, 1); ok {
				version = strconv.AppendInt(nil, int64(x), 10)
			}
		case tfSpecVersionLabel:
			version = v
		}
	}) {
		return nil, nil
	}
	return model, version
}

// tfGRPCForm is the Predict call's.
var tfGRPCForm = protoForm{
	format: FormatTFServingGRPC,
	collect: func(p *Parser, msg []byte, response bool, mkErr errFunc) error {
		if response {
			return p.tfTensors(msg, tfResponseOutput, mkErr)
		}
		return p.tfTensors(msg, tfRequestInputs, mkErr)
	},
	decode: (*Parser).tfTensor,
}

// tfTensors collects the entries of the map<string, TensorProto> field num
// of msg into p.protoTensors, in the order of their names; of entries with
// the same name, the last counts, as protobuf's maps have it.
func (p *Parser) tfTensors(msg []byte, num protowire.Number, mkErr errFunc) error {
	p.protoTensors = p.protoTensors[:0]
	p.fillBudget = tfMaxFill
	var ok bool
	if p.protoTensors, ok = appendMapEntries(p.protoTensors[:0], msg, num); !ok {
		return malformed(mkErr, "the message")
	}
	p.protoTensors = lastOfEachName(p.protoTensors)
	return nil
}

// appendMapEntries appends the entries of the map field num of msg to dst,
// in the message's order: each key as the name, its value's bytes as the
// message. ok is false when msg is no valid protobuf.
func appendMapEntries(dst []protoTensorMsg, msg []byte, num protowire.Number) (entries []protoTensorMsg, ok bool) {
	bad := false
	ok = bytesFields(msg, func(n protowire.Number, entry []byte) {
		if n != num || bad {
			return
		}
		e := protoTensorMsg{name: []byte{}}
		bad = !bytesFields(entry, func(n protowire.Number, v []byte) {
			switch n {
			case mapKey:
				e.name = v
			case mapValue:
				e.msg = v
			}
		})
		dst = append(dst, e)
	})
	return dst, ok && !bad
}

// lastOfEachName sorts the entries of a protobuf map by name, in place, and
// keeps the last entry of each name, as protobuf's maps have it.
func lastOfEachName(entries []protoTensorMsg) []protoTensorMsg {
	// Sorted stably, the entries of a name keep their order: the last of
	// each run is the one that counts.
	slices.SortStableFunc(entries, func(a, b protoTensorMsg) int { return bytes.Compare(a.name, b.name) })
	kept := entries[:0]
	for i, t := range entries {
		if i+1 < len(entries) && bytes.Equal(t.name, entries[i+1].name) {
			continue
		}
		kept = append(kept, t)
	}
	return kept
}

// tfTensor reads the TensorProto of p.protoTensors[i] and appends its
// elements to p.elems.
func (p *Parser) tfTensor(i int, field string, mkErr errFunc) (tensor, error) {
	pt := &p.protoTensors[i]
	at := field + `["` + string(pt.name) + `"]`
	var t tensor
	var content []byte
	shapeOK := true
	p.dims = p.dims[:0] // no tensor_shape is a scalar's, as in TensorFlow
	dtype, ok := varintField(pt.msg, tfTensorDtype)
	ok = ok && bytesFields(pt.msg, func(n protowire.Number, v []byte) {
		switch n {
		case tfTensorContent:
			content = v
		case tfTensorShape:
			p.dims = p.dims[:0]
			shapeOK = p.tfShape(v)
		}
	})
	switch {
	case !ok:
		return t, malformed(mkErr, at)
	case !shapeOK:
		return t, malformed(mkErr, at+".tensor_shape")
	}
	var dt tfDtype
	if dtype < uint64(len(tfDtypes)) {
		dt = tfDtypes[dtype]
	}
	switch {
	case len(pt.name) == 0:
		return t, mkErr(ReasonMissingField, field+" has a tensor with no name")
	case dtype == 0:
		return t, mkErr(ReasonMissingField, at+" has no dtype")
	case dt.datatype == "":
		return t, mkErr(ReasonTypeMismatch, at+" has a dtype ("+strconv.FormatUint(dtype, 10)+") that is not read")
	}
	for _, d := range p.dims {
		if int64(d) < 0 {
			return t, mkErr(ReasonTypeMismatch, at+".tensor_shape has a dimension of unknown size")
		}
	}
	t.name = pt.name
	t.isBool = dt.datatype == "BOOL"
	t.start = len(p.elems)
	t.numeric = true
	var err error
	switch {
	case len(content) > 0 && dt.codec == codecBytes:
		err = mkErr(ReasonTypeMismatch, at+" has a DT_STRING tensor_content, which is not read")
	case len(content) > 0:
		err = p.appendBinary(&t, dt.datatype, content, at, mkErr)
	default:
		if err = p.appendValues(&t, pt.msg, dt.field, dt.codec, at, dt.datatype, mkErr); err == nil {
			err = p.tfFill(&t, at, mkErr)
		}
	}
	if err != nil {
		return t, err
	}
	return t, p.shapeTensor(&t, at, mkErr)
}

// tfShape appends the dimensions of a TensorShapeProto to p.dims.
func (p *Parser) tfShape(shape []byte) bool {
	ok := true
	return bytesFields(shape, func(n protowire.Number, dim []byte) {
		if n != tfShapeDim {
			return
		}
		size, valid := varintField(dim, tfDimSize)
		ok = ok && valid
		p.dims = append(p.dims, size)
	}) && ok
}

// tfFill gives t, whose typed elements have been appended, as many as its
// shape has, as TensorFlow reads a TensorProto: none fill it with zeros
// (empty strings), fewer repeat the last, more are cut to the shape.
func (p *Parser) tfFill(t *tensor, at string, mkErr errFunc) error {
	budget := uint64(p.fillBudget)
	size := uint64(1)
	for _, d := range p.dims {
		if d != 0 && size > (budget+uint64(len(p.elems)))/d {
			size = budget + uint64(len(p.elems)) + 1 // too large: refused below
			break
		}
		size *= d
	}
	got := uint64(len(p.elems) - t.start)
	switch {
	case got == size:
		return nil
	case got > size:
		clear(p.elems[t.start+int(size):])
		p.elems = p.elems[:t.start+int(size)]
		return nil
	case size-got > budget:
		return mkErr(ReasonShapeMismatch, at+" has "+strconv.FormatUint(got, 10)+" elements, too few to fill its shape")
	}
	p.fillBudget -= int(size - got)
	p.filled += int(size - got)
	fill := p.arena.NewNumberInt(0)
	if !t.numeric {
		fill = p.arena.NewString("")
	}
	if got > 0 {
		fill = p.elems[len(p.elems)-1]
	}
	for ; got < size; got++ {
		p.elems = append(p.elems, fill)
	}
	return nil
}
