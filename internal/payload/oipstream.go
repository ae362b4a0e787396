package payload

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Triton's ModelStreamInfer call (inference.GRPCInferenceService) is a
// stream both ways: the client sends ModelInferRequests, as ModelInfer
// does, and the server answers each with as many ModelStreamInferResponses
// as it likes, in any order; a decoupled model (an LLM sending its tokens
// as they come, speech recognition) sends zero, one or many per request.
// The answers name the request by its id, and flag the last one with the
// parameter triton_final_response.
//
//	message ModelStreamInferResponse {
//	  string error_message = 1;
//	  ModelInferResponse infer_response = 2;
//	}
//	message InferParameter {
//	  oneof parameter_choice {
//	    bool bool_param = 1; int64 int64_param = 2; string string_param = 3;
//	    double double_param = 4; uint64 uint64_param = 5;
//	  }
//	}
const (
	streamErrorMessage  = 1
	streamInferResponse = 2

	inferParameters = 4
	mapKey          = 1
	mapValue        = 2
	boolParam       = 1
)

// FinalResponse is Triton's parameter that flags a request's last answer.
const FinalResponse = "triton_final_response"

// StreamResponse is what a ModelStreamInfer answer says of the request it
// answers.
type StreamResponse struct {
	// Error is the error_message, nil when there is none.
	Error []byte
	// Response is the ModelInferResponse, which FormatOIPGRPC parses.
	Response []byte
	// Model, Version and ID are those of Response.
	Model, Version, ID []byte
	// Final is the triton_final_response parameter: 1 for true, 0 for
	// false, -1 when the answer does not carry it.
	Final int8
	// Outputs tells whether Response carries output tensors (a decoupled
	// model's last answer may carry only the final flag).
	Outputs bool
	// Rejected tells that Error came before the request reached the model.
	// Triton answers a request it does not take (an unknown model, inputs
	// that do not fit, a full queue) with the request's id alone in
	// Response, and an error of the inference itself with the model's name
	// and the final flag.
	Rejected bool
}

// ReadStreamResponse reads a ModelStreamInfer answer. ok is false when msg
// is no well-formed protobuf.
func ReadStreamResponse(msg []byte) (r StreamResponse, ok bool) {
	r.Final = -1
	ok = bytesFields(msg, func(num protowire.Number, v []byte) {
		switch num {
		case streamErrorMessage:
			r.Error = v
		case streamInferResponse:
			r.Response = v
		}
	})
	if !ok || r.Response == nil {
		return r, ok
	}
	ok = bytesFields(r.Response, func(num protowire.Number, v []byte) {
		switch num {
		case inferModelName:
			r.Model = v
		case inferModelVersion:
			r.Version = v
		case inferID:
			r.ID = v
		case inferTensors:
			r.Outputs = true
		case inferParameters:
			if f, isFinal := finalParam(v); isFinal {
				r.Final = f
			}
		}
	})
	r.Rejected = ok && r.Error != nil && len(r.Model) == 0 && r.Final < 0
	return r, ok
}

// finalParam reads an entry of a parameters map: when it is
// triton_final_response, isFinal is true and f its value, 1 or 0.
func finalParam(entry []byte) (f int8, isFinal bool) {
	var key, value []byte
	bytesFields(entry, func(num protowire.Number, v []byte) {
		switch num {
		case mapKey:
			key = v
		case mapValue:
			value = v
		}
	})
	if string(key) != FinalResponse {
		return 0, false
	}
	x, ok := varintField(value, boolParam)
	if !ok {
		return 0, false
	}
	if x != 0 {
		f = 1
	}
	return f, true
}

// varintField is the last value of the varint field num of msg, 0 when it
// has none; ok is false when msg is malformed.
func varintField(msg []byte, num protowire.Number) (x uint64, ok bool) {
	return scalarField(msg, num, protowire.VarintType)
}

// scalarField is the last value of the field num of msg of wire type typ
// (varint, fixed32 or fixed64), 0 when it has none; ok is false when msg
// is malformed.
func scalarField(msg []byte, num protowire.Number, typ protowire.Type) (x uint64, ok bool) {
	for len(msg) > 0 {
		n, t, m := protowire.ConsumeTag(msg)
		if m < 0 {
			return 0, false
		}
		msg = msg[m:]
		if n == num && t == typ {
			switch typ {
			case protowire.Fixed32Type:
				var v uint32
				v, m = protowire.ConsumeFixed32(msg)
				x = uint64(v)
			case protowire.Fixed64Type:
				x, m = protowire.ConsumeFixed64(msg)
			default:
				x, m = protowire.ConsumeVarint(msg)
			}
			if m < 0 {
				return 0, false
			}
			msg = msg[m:]
			continue
		}
		if m = protowire.ConsumeFieldValue(n, t, msg); m < 0 {
			return 0, false
		}
		msg = msg[m:]
	}
	return x, true
}

// bytesFields calls f with each length-delimited field of msg, in order,
// and skips the others. It reports whether msg is well-formed protobuf.
func bytesFields(msg []byte, f func(num protowire.Number, v []byte)) bool {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return false
		}
		msg = msg[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return false
			}
			f(num, v)
			msg = msg[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, msg); n < 0 {
			return false
		}
		msg = msg[n:]
	}
	return true
}

// OutputCount is the sum of the elements of the integer output tensor name
// of a ModelInferResponse (typed contents or raw), as the vLLM backend's
// num_output_tokens gives the tokens each answer of a stream adds. ok is
// false when resp has no such tensor, or it is not of integers that are
// counts (tokenCount), or is malformed.
func OutputCount(resp []byte, name string) (n int64, ok bool) {
	var tensor, raw []byte
	index, tensors, raws := -1, 0, 0
	if !bytesFields(resp, func(num protowire.Number, v []byte) {
		switch num {
		case inferTensors:
			if index < 0 && string(fieldBytes(v, tensorNameField)) == name {
				index, tensor = tensors, v
			}
			tensors++
		case rawOutputContents:
			if raws == index {
				raw = v
			}
			raws++
		}
	}) || index < 0 || raws > 0 && raws != tensors {
		return 0, false
	}
	dt := fieldBytes(tensor, tensorDatatypeField)
	want := contentsField(dt)
	if want < 2 || want > 5 { // the integer datatypes
		return 0, false
	}
	ok = true
	add := func(f float64) {
		x, whole := tokenCount(f)
		ok = ok && whole
		n += x
	}
	if raws > 0 {
		w := datatypeWidth(string(dt))
		if len(raw)%w != 0 {
			return 0, false
		}
		for ; len(raw) > 0; raw = raw[w:] {
			add(binaryElement(string(dt), raw))
		}
	} else if readContents(fieldBytes(tensor, tensorContentsField), want, contentsCodecs[want], nil, add) != contentsRead {
		return 0, false
	}
	if !ok {
		return 0, false
	}
	return n, true
}
