package payload

import (
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// The Open Inference Protocol over gRPC (KServe v2 and Triton's
// grpc_service.proto, service inference.GRPCInferenceService): a ModelInfer
// call sends one ModelInferRequest and gets one ModelInferResponse. Their
// protobuf bytes (the messages a gRPC server receives and sends, already
// out of their gRPC framing and compression) are read straight off the wire
// format, field by field, into the tensors the JSON form gives: same
// features, same predictions (oip.go).
//
//	message ModelInferRequest {
//	  string model_name = 1; string model_version = 2; string id = 3;
//	  map<string, InferParameter> parameters = 4;
//	  repeated InferInputTensor inputs = 5;
//	  repeated InferRequestedOutputTensor outputs = 6;
//	  repeated bytes raw_input_contents = 7;
//	}
//	message ModelInferResponse {
//	  string model_name = 1; string model_version = 2; string id = 3;
//	  map<string, InferParameter> parameters = 4;
//	  repeated InferOutputTensor outputs = 5;
//	  repeated bytes raw_output_contents = 6;
//	}
//	message InferInputTensor {  // and InferOutputTensor
//	  string name = 1; string datatype = 2; repeated int64 shape = 3;
//	  map<string, InferParameter> parameters = 4;
//	  InferTensorContents contents = 5;
//	}
//	message InferTensorContents {
//	  repeated bool bool_contents = 1; repeated int32 int_contents = 2;
//	  repeated int64 int64_contents = 3; repeated uint32 uint_contents = 4;
//	  repeated uint64 uint64_contents = 5; repeated float fp32_contents = 6;
//	  repeated double fp64_contents = 7; repeated bytes bytes_contents = 8;
//	}
//
// A raw_*_contents entry holds its tensor's elements as the binary data
// extension of the JSON form does (little-endian, BYTES elements each after
// its 4-byte length), and when there are any, there is one per tensor.
const (
	inferModelName    = 1
	inferModelVersion = 2
	inferID           = 3
	inferTensors      = 5
	rawInputContents  = 7
	rawOutputContents = 6

	tensorNameField     = 1
	tensorDatatypeField = 2
	tensorShapeField    = 3
	tensorContentsField = 5
)

// InferRequestIDs reads the model name, version and id of a ModelInfer
// request message. ok is false when msg is no well-formed protobuf.
func InferRequestIDs(msg []byte) (model, version, id []byte, ok bool) {
	ok = bytesFields(msg, func(num protowire.Number, v []byte) {
		switch num {
		case inferModelName:
			model = v
		case inferModelVersion:
			version = v
		case inferID:
			id = v
		}
	})
	if !ok {
		return nil, nil, nil, false
	}
	return model, version, id, true
}

// protoErr is a request that is no valid protobuf (invalid_protobuf), or a
// response (invalid_response).
func protoErr(mkErr errFunc, msg string) error {
	e := mkErr(ReasonInvalidProtobuf, msg)
	if e.Response {
		e.Reason = ReasonInvalidResponse
	}
	return e
}

// malformed reports what as no valid protobuf.
func malformed(mkErr errFunc, what string) error {
	return protoErr(mkErr, what+" is not valid protobuf")
}

// protoForm is a gRPC call whose messages hold named tensors, read as the
// OIP's JSON tensors are: collect puts the tensors of a request (or a
// response) into p.protoTensors, decode reads the i-th of them into
// p.elems.
type protoForm struct {
	format  Format
	collect func(p *Parser, msg []byte, response bool, mkErr errFunc) error
	decode  func(p *Parser, i int, field string, mkErr errFunc) (tensor, error)
}

// oipGRPCForm is the ModelInfer call's.
var oipGRPCForm = protoForm{
	format: FormatOIPGRPC,
	collect: func(p *Parser, msg []byte, response bool, mkErr errFunc) error {
		if response {
			return p.inferTensors(msg, rawOutputContents, "raw_output_contents", "outputs", mkErr)
		}
		return p.inferTensors(msg, rawInputContents, "raw_input_contents", "inputs", mkErr)
	},
	decode: (*Parser).protoTensor,
}

// parseProto is Parse for the gRPC form f. p and b have been reset.
func (p *Parser) parseProto(f protoForm, req, resp []byte, b *Batch) error {
	b.Format = f.format
	// Names and BYTES elements point into the Parser's memory, as the
	// results of the other formats do.
	p.fastReq = append(p.fastReq[:0], req...)
	p.nameBudget = 4*len(req) + 4096
	if err := f.collect(p, p.fastReq, false, reqErr); err != nil {
		return err
	}
	if len(p.protoTensors) == 0 {
		return reqErr(ReasonMissingField, "no inputs")
	}
	n := 0
	for i := range p.protoTensors {
		t, err := f.decode(p, i, "inputs", reqErr)
		if err == nil {
			err = p.addInput(t, i, &n)
		}
		if err != nil {
			return err
		}
	}
	if err := p.oipRecords(b, n); err != nil {
		b.Records, b.feats = b.Records[:0], b.feats[:0]
		return err
	}
	if len(resp) == 0 {
		return nil
	}
	if err := p.protoResponse(f, resp, b); err != nil {
		b.clearPredictions()
		return err
	}
	return nil
}

func (p *Parser) protoResponse(f protoForm, resp []byte, b *Batch) error {
	p.fastResp = append(p.fastResp[:0], resp...)
	if err := f.collect(p, p.fastResp, true, respErr); err != nil {
		return err
	}
	if len(p.protoTensors) == 0 {
		return respErr(ReasonMissingField, "no outputs")
	}
	return p.oipOutputs(b, len(p.protoTensors),
		func(i int) []byte { return p.protoTensors[i].name },
		func(i int) (tensor, error) { return f.decode(p, i, "outputs", respErr) })
}

// protoTensorMsg is an input or output tensor of a message, not yet read.
type protoTensorMsg struct {
	name, msg, raw []byte
	hasRaw         bool
}

// inferTensors collects the tensors (field 5) of msg and their raw contents
// (field rawField, named rawName) into p.protoTensors.
func (p *Parser) inferTensors(msg []byte, rawField protowire.Number, rawName, field string, mkErr errFunc) error {
	p.protoTensors = p.protoTensors[:0]
	raws := 0
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return malformed(mkErr, "the message")
		}
		msg = msg[n:]
		if typ == protowire.BytesType && (num == inferTensors || num == rawField) {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return malformed(mkErr, "the message")
			}
			msg = msg[n:]
			if num == inferTensors {
				p.protoTensors = append(p.protoTensors, protoTensorMsg{msg: v, name: fieldBytes(v, tensorNameField)})
			} else {
				if raws < len(p.protoTensors) {
					p.protoTensors[raws].raw, p.protoTensors[raws].hasRaw = v, true
				}
				raws++
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, msg); n < 0 {
			return malformed(mkErr, "the message")
		}
		msg = msg[n:]
	}
	if raws > 0 && raws != len(p.protoTensors) {
		return mkErr(ReasonShapeMismatch, rawName+" has "+strconv.Itoa(raws)+" entries for "+strconv.Itoa(len(p.protoTensors))+" "+field)
	}
	return nil
}

// fieldBytes returns the last value of the bytes field num of msg, nil when
// it has none or is malformed (which reading it in full then reports).
func fieldBytes(msg []byte, num protowire.Number) []byte {
	var last []byte
	if !bytesFields(msg, func(n protowire.Number, v []byte) {
		if n == num {
			last = v
		}
	}) {
		return nil
	}
	return last
}

// firstFieldBytes returns the first value of the bytes field num of msg,
// nil when it has none or is malformed.
func firstFieldBytes(msg []byte, num protowire.Number) []byte {
	var first []byte
	found := false
	if !bytesFields(msg, func(n protowire.Number, v []byte) {
		if n == num && !found {
			first, found = v, true
		}
	}) {
		return nil
	}
	return first
}

// protoTensor reads the i-th tensor of p.protoTensors and appends its
// elements to p.elems.
func (p *Parser) protoTensor(i int, field string, mkErr errFunc) (tensor, error) {
	pt := &p.protoTensors[i]
	at := field + "[" + strconv.Itoa(i) + "]"
	var t tensor
	var dt, contents []byte
	p.dims = p.dims[:0]
	msg := pt.msg
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return t, malformed(mkErr, at)
		}
		msg = msg[n:]
		switch {
		case num == tensorDatatypeField && typ == protowire.BytesType:
			dt, n = protowire.ConsumeBytes(msg)
		case num == tensorContentsField && typ == protowire.BytesType:
			contents, n = protowire.ConsumeBytes(msg)
		case num == tensorShapeField && typ == protowire.BytesType: // packed
			var packed []byte
			if packed, n = protowire.ConsumeBytes(msg); n >= 0 {
				for len(packed) > 0 {
					d, m := protowire.ConsumeVarint(packed)
					if m < 0 {
						return t, malformed(mkErr, at+".shape")
					}
					p.dims = append(p.dims, d)
					packed = packed[m:]
				}
			}
		case num == tensorShapeField && typ == protowire.VarintType:
			var d uint64
			if d, n = protowire.ConsumeVarint(msg); n >= 0 {
				p.dims = append(p.dims, d)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return t, malformed(mkErr, at)
		}
		msg = msg[n:]
	}
	for _, d := range p.dims {
		if int64(d) < 0 {
			return t, mkErr(ReasonTypeMismatch, at+".shape has a negative dimension")
		}
	}
	switch {
	case len(pt.name) == 0:
		return t, mkErr(ReasonMissingField, at+" has no name")
	case len(dt) == 0:
		return t, mkErr(ReasonMissingField, at+" has no datatype")
	case !knownDatatype(dt):
		return t, mkErr(ReasonTypeMismatch, at+" has an unknown datatype")
	}
	t.name = pt.name
	t.isBool = string(dt) == "BOOL"
	t.start = len(p.elems)
	t.numeric = true
	var err error
	if pt.hasRaw {
		err = p.appendBinary(&t, string(dt), pt.raw, at, mkErr)
	} else {
		err = p.appendContents(&t, dt, contents, at, mkErr)
	}
	if err != nil {
		return t, err
	}
	return t, p.shapeTensor(&t, at, mkErr)
}

// contentsField is the field of InferTensorContents that holds a tensor of
// datatype dt, 0 for those only raw contents carry (FP16, BF16).
func contentsField(dt []byte) protowire.Number {
	switch string(dt) {
	case "BOOL":
		return 1
	case "INT8", "INT16", "INT32":
		return 2
	case "INT64":
		return 3
	case "UINT8", "UINT16", "UINT32":
		return 4
	case "UINT64":
		return 5
	case "FP32":
		return 6
	case "FP64":
		return 7
	case "BYTES":
		return 8
	}
	return 0
}

// contentsCodecs are how the fields of InferTensorContents encode their
// elements, by field number.
var contentsCodecs = [...]elemCodec{1: codecBool, 2: codecInt32, 3: codecInt64, 4: codecUint32,
	5: codecUint64, 6: codecFloat32, 7: codecFloat64, 8: codecBytes}

// appendContents appends the elements of an InferTensorContents of
// datatype dt to p.elems, as values of the parser's arena.
func (p *Parser) appendContents(t *tensor, dt, contents []byte, at string, mkErr errFunc) error {
	want := contentsField(dt)
	return p.appendValues(t, contents, want, contentsCodecs[want], at+".contents", string(dt), mkErr)
}

// appendValues appends the elements that field want of msg holds, encoded
// as codec, to p.elems, as values of the parser's arena; dt names their
// datatype in errors.
func (p *Parser) appendValues(t *tensor, msg []byte, want protowire.Number, codec elemCodec, at, dt string, mkErr errFunc) error {
	if codec == codecBytes {
		t.numeric = false
	}
	switch readContents(msg, want, codec,
		func(v []byte) { p.elems = append(p.elems, p.arena.NewStringBytes(v)) },
		func(f float64) { p.elems = append(p.elems, p.arena.NewNumberFloat64(f)) }) {
	case contentsMalformed:
		return malformed(mkErr, at)
	case contentsWrongType:
		return mkErr(ReasonTypeMismatch, at+" has the wrong wire type for "+dt)
	}
	return nil
}

// elemCodec is how a repeated field of a protobuf message encodes the
// elements of a tensor.
type elemCodec uint8

const (
	codecNone     elemCodec = iota
	codecBool               // varint, 0 or 1
	codecInt32              // varint
	codecInt64              // varint
	codecUint32             // varint
	codecUint64             // varint
	codecFloat32            // fixed32
	codecFloat64            // fixed64
	codecBytes              // one field per element
	codecHalf               // varint holding the bits of an IEEE 754 half
	codecBFloat16           // varint holding the bits of a bfloat16
)

// wireType is the wire type of one unpacked element.
func (c elemCodec) wireType() protowire.Type {
	switch c {
	case codecFloat32:
		return protowire.Fixed32Type
	case codecFloat64:
		return protowire.Fixed64Type
	case codecBytes:
		return protowire.BytesType
	}
	return protowire.VarintType
}

// contentsResult is how reading an InferTensorContents went.
type contentsResult uint8

const (
	contentsRead      contentsResult = iota
	contentsMalformed                // no valid protobuf
	contentsWrongType                // its elements have the wrong wire type
)

// readContents reads the elements a message (an InferTensorContents, a
// TensorProto) holds in its field want, encoded as codec: each bytes
// element to str, each other one, as a number, to num. Proto3 packs
// repeated numbers, but an unpacked encoding is valid too and is read.
func readContents(contents []byte, want protowire.Number, codec elemCodec, str func([]byte), num func(float64)) contentsResult {
	for len(contents) > 0 {
		field, typ, n := protowire.ConsumeTag(contents)
		if n < 0 {
			return contentsMalformed
		}
		contents = contents[n:]
		if field != want {
			if n = protowire.ConsumeFieldValue(field, typ, contents); n < 0 {
				return contentsMalformed
			}
			contents = contents[n:]
			continue
		}
		var v []byte
		switch {
		case typ == protowire.BytesType:
			v, n = protowire.ConsumeBytes(contents)
		case typ == codec.wireType():
			n = protowire.ConsumeFieldValue(field, typ, contents)
			v = contents[:max(n, 0)]
		default:
			return contentsWrongType
		}
		if n < 0 {
			return contentsMalformed
		}
		contents = contents[n:]
		if codec == codecBytes {
			str(v)
			continue
		}
		// v is a packed run, or one unpacked element.
		for len(v) > 0 {
			var f float64
			var m int
			switch codec {
			case codecFloat32:
				var x uint32
				x, m = protowire.ConsumeFixed32(v)
				f = float64(math.Float32frombits(x))
			case codecFloat64:
				var x uint64
				x, m = protowire.ConsumeFixed64(v)
				f = math.Float64frombits(x)
			default:
				var x uint64
				x, m = protowire.ConsumeVarint(v)
				switch codec {
				case codecBool:
					f = float64(min(x, 1))
				case codecInt32:
					f = float64(int32(x))
				case codecInt64:
					f = float64(int64(x))
				case codecUint32:
					f = float64(uint32(x))
				case codecHalf:
					f = halfToFloat(uint16(x))
				case codecBFloat16:
					f = float64(math.Float32frombits(uint32(uint16(x)) << 16))
				default:
					f = float64(x)
				}
			}
			if m < 0 {
				return contentsMalformed
			}
			num(f)
			v = v[m:]
		}
	}
	return contentsRead
}
