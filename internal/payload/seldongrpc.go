package payload

import (
	"math"
	"slices"
	"strconv"

	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/encoding/protowire"
)

// Seldon Core 1's gRPC API (proto/prediction.proto; services
// seldon.protos.Seldon, its executor's, and seldon.protos.Model, its
// Python wrapper's): Predict sends one SeldonMessage and gets one. The
// message is written out in its JSON form, which the JSON reader reads
// (seldon.go), so the two forms give the same records.
//
//	message SeldonMessage {
//	  Status status = 1; Meta meta = 2;
//	  oneof data_oneof { DefaultData data = 3; bytes binData = 4; string strData = 5;
//	                     google.protobuf.Value jsonData = 6; google.protobuf.Any customData = 7; }
//	}
//	message DefaultData {
//	  repeated string names = 1;
//	  oneof data_oneof { Tensor tensor = 2; google.protobuf.ListValue ndarray = 3; tensorflow.TensorProto tftensor = 4; }
//	}
//	message Tensor { repeated int32 shape = 1; repeated double values = 2; }
//	message Status { int32 code = 1; string info = 2; string reason = 3; StatusFlag status = 4; }
//	message Meta { string puid = 1; … }
//
// google.protobuf.Value, Struct and ListValue (struct.proto) are written as
// the JSON they stand for; a Struct's fields in the order of their names,
// the last of a name counting, as protobuf's maps have it.
const (
	seldonStatusField   = 1
	seldonMetaField     = 2
	seldonDataField     = 3
	seldonBinDataField  = 4
	seldonStrDataField  = 5
	seldonJSONDataField = 6

	seldonNamesField   = 1
	seldonTensorField  = 2
	seldonNdarrayField = 3
	seldonTftensor     = 4
	seldonShapeField   = 1
	seldonValuesField  = 2
	seldonStatusCode   = 1
	seldonStatusFlag   = 4
	seldonMetaPuid     = 1
	feedbackResponse   = 2
	feedbackReward     = 3
	feedbackTruth      = 4

	valueNull   = 1
	valueNumber = 2
	valueString = 3
	valueBool   = 4
	valueStruct = 5
	valueList   = 6

	// maxValueDepth bounds the nesting of Values, well below
	// fastjson.MaxDepth.
	maxValueDepth = 64
)

// SeldonPuid reads the prediction id a Seldon Core 1 gRPC message
// carries, its meta.puid (a client may set it in its request; Seldon's
// executor sets it in every answer); nil when it has none or is malformed.
func SeldonPuid(msg []byte) []byte {
	return fieldBytes(fieldBytes(msg, seldonMetaField), seldonMetaPuid)
}

// SeldonFeedbackGRPC is SeldonFeedback for the message of Seldon Core 1's
// gRPC SendFeedback call:
//
//	message Feedback { SeldonMessage request = 1; SeldonMessage response = 2; float reward = 3; SeldonMessage truth = 4; }
func (p *Parser) SeldonFeedbackGRPC(msg []byte, b *Batch) (Feedback, error) {
	b.Reset()
	p.reset(len(msg))
	var response, truth []byte
	hasTruth := false
	bits, ok := scalarField(msg, feedbackReward, protowire.Fixed32Type)
	if !ok || !bytesFields(msg, func(n protowire.Number, v []byte) {
		switch n {
		case feedbackResponse:
			response = v
		case feedbackTruth:
			truth, hasTruth = v, true
		}
	}) {
		return Feedback{}, malformed(reqErr, "the message")
	}
	reward := math.Float32frombits(uint32(bits))
	fb := Feedback{Puid: SeldonPuid(response)}
	var err error
	if fb.Reward, err = finiteReward(float64(reward)); err != nil {
		return Feedback{}, err
	}
	if !hasTruth {
		return fb, nil
	}
	p.protoTensors = p.protoTensors[:0]
	if p.scratch, err = p.seldonJSON(p.scratch[:0], truth, reqErr); err != nil {
		return Feedback{}, err
	}
	root, jerr := p.req.ParseBytes(p.scratch)
	if jerr != nil {
		return Feedback{}, reqErr(ReasonInvalidProtobuf, "the truth does not make a JSON SeldonMessage")
	}
	if err := p.seldonTruth(root, len(msg), FormatSeldonGRPC, b); err != nil {
		return Feedback{}, err
	}
	fb.Truth = true
	return fb, nil
}

// parseSeldonGRPC is Parse for FormatSeldonGRPC. p and b have been reset.
func (p *Parser) parseSeldonGRPC(req, resp []byte, b *Batch) error {
	b.Format = FormatSeldonGRPC
	p.protoTensors = p.protoTensors[:0] // the stack of structJSON
	var err error
	if p.scratch, err = p.seldonJSON(p.scratch[:0], req, reqErr); err != nil {
		return err
	}
	root, jerr := p.req.ParseBytes(p.scratch)
	if jerr != nil {
		return reqErr(ReasonInvalidProtobuf, "the message does not make a JSON SeldonMessage")
	}
	p.nameBudget = 4*len(req) + 4096
	p.copyBudget = len(req) + 4096
	if err := p.seldonRequest(root, b); err != nil {
		b.Records, b.feats = b.Records[:0], b.feats[:0]
		return err
	}
	if len(resp) == 0 {
		return nil
	}
	if p.fastResp, err = p.seldonJSON(p.fastResp[:0], resp, respErr); err != nil {
		return err
	}
	if root, jerr = p.resp.ParseBytes(p.fastResp); jerr != nil {
		return respErr(ReasonInvalidResponse, "the message does not make a JSON SeldonMessage")
	}
	if err := p.seldonResponse(root, b); err != nil {
		b.clearPredictions()
		return err
	}
	return nil
}

// seldonJSON appends the JSON form of the SeldonMessage msg to dst. The
// form can be several times the message: the Parser counts it as a body,
// so that a large one is not kept past the next call (Parser.reset).
func (p *Parser) seldonJSON(dst, msg []byte, mkErr errFunc) (out []byte, err error) {
	defer func() { p.lastSize = max(p.lastSize, cap(out)) }()
	var status, data []byte
	kind := protowire.Number(0)
	ok := bytesFields(msg, func(n protowire.Number, v []byte) {
		switch n {
		case seldonStatusField:
			status = v
		case seldonDataField, seldonBinDataField, seldonStrDataField, seldonJSONDataField:
			kind, data = n, v
		}
	})
	if !ok {
		return dst, malformed(mkErr, "the message")
	}
	w := jsonWriter{b: append(dst, '{'), limit: len(dst) + 8*len(msg) + 4096}
	if status != nil {
		code, _ := varintField(status, seldonStatusCode)
		flag, valid := varintField(status, seldonStatusFlag)
		if !valid {
			return dst, malformed(mkErr, "status")
		}
		w.key(`"status":{"code":`)
		w.b = strconv.AppendInt(w.b, int64(int32(code)), 10)
		w.b = append(w.b, `,"status":`...)
		if flag == 0 {
			w.b = append(w.b, `"SUCCESS"`...)
		} else {
			w.b = append(w.b, `"FAILURE"`...)
		}
		w.b = append(w.b, '}')
	}
	switch kind {
	case seldonDataField:
		w.key(`"data":`)
		err = p.seldonDataJSON(&w, data, mkErr)
	case seldonJSONDataField:
		w.key(`"jsonData":`)
		err = p.valueJSON(&w, data, 0, mkErr)
	case seldonStrDataField:
		w.key(`"strData":`)
		w.str(data)
	case seldonBinDataField:
		w.key(`"binData":""`) // its bytes are no features
	}
	if err != nil {
		return dst, err
	}
	w.b = append(w.b, '}')
	if len(w.b) > w.limit {
		return dst, mkErr(ReasonShapeMismatch, "the message makes too large a JSON form")
	}
	return w.b, nil
}

// seldonDataJSON writes a DefaultData.
func (p *Parser) seldonDataJSON(w *jsonWriter, msg []byte, mkErr errFunc) error {
	var body []byte
	kind := protowire.Number(0)
	w.b = append(w.b, `{"names":[`...)
	names := 0
	ok := bytesFields(msg, func(n protowire.Number, v []byte) {
		switch n {
		case seldonNamesField:
			if names > 0 {
				w.b = append(w.b, ',')
			}
			w.str(v)
			names++
		case seldonTensorField, seldonNdarrayField, seldonTftensor:
			kind, body = n, v
		}
	})
	if !ok {
		return malformed(mkErr, "data")
	}
	w.b = append(w.b, ']')
	switch kind {
	case seldonTensorField:
		w.b = append(w.b, `,"tensor":{"shape":[`...)
		first := true
		if readContents(body, seldonShapeField, codecInt32, nil, func(f float64) {
			w.sep(&first)
			w.b = strconv.AppendInt(w.b, int64(f), 10)
		}) != contentsRead {
			return malformed(mkErr, "data.tensor.shape")
		}
		w.b = append(w.b, `],"values":[`...)
		first = true
		if readContents(body, seldonValuesField, codecFloat64, nil, func(f float64) {
			w.sep(&first)
			w.num(f)
		}) != contentsRead {
			return malformed(mkErr, "data.tensor.values")
		}
		w.b = append(w.b, "]}"...)
	case seldonNdarrayField:
		w.b = append(w.b, `,"ndarray":`...)
		if err := p.listJSON(w, body, 0, mkErr); err != nil {
			return err
		}
	case seldonTftensor:
		// Read here, and written as the "tensor" of its elements.
		values, n, width, err := p.tfTensorValues(body, mkErr)
		if err != nil {
			return err
		}
		w.b = append(w.b, `,"tensor":{"shape":[`...)
		w.b = strconv.AppendInt(w.b, int64(n), 10)
		w.b = append(w.b, ',')
		w.b = strconv.AppendInt(w.b, int64(width), 10)
		w.b = append(w.b, `],"values":[`...)
		first := true
		for _, v := range values {
			w.sep(&first)
			switch v.Type() {
			case fastjson.TypeString:
				w.str(v.GetStringBytes())
			case fastjson.TypeTrue:
				w.b = append(w.b, "true"...)
			case fastjson.TypeFalse:
				w.b = append(w.b, "false"...)
			default:
				w.num(v.GetFloat64())
			}
		}
		w.b = append(w.b, "]}"...)
	}
	w.b = append(w.b, '}')
	return nil
}

// valueJSON writes a google.protobuf.Value: the last kind it holds; none
// is null.
func (p *Parser) valueJSON(w *jsonWriter, msg []byte, depth int, mkErr errFunc) error {
	if depth > maxValueDepth {
		return mkErr(ReasonTypeMismatch, "the message nests values more than "+strconv.Itoa(maxValueDepth)+" deep")
	}
	kind, typ := protowire.Number(0), protowire.Type(0)
	var body []byte
	var x uint64
	for len(msg) > 0 {
		n, t, m := protowire.ConsumeTag(msg)
		if m < 0 {
			return malformed(mkErr, "a value")
		}
		msg = msg[m:]
		m = protowire.ConsumeFieldValue(n, t, msg)
		if m < 0 {
			return malformed(mkErr, "a value")
		}
		if n >= valueNull && n <= valueList {
			kind, typ = n, t
			switch t {
			case protowire.BytesType:
				body, _ = protowire.ConsumeBytes(msg)
			case protowire.VarintType:
				x, _ = protowire.ConsumeVarint(msg)
			case protowire.Fixed64Type:
				x, _ = protowire.ConsumeFixed64(msg)
			}
		}
		msg = msg[m:]
	}
	want := protowire.BytesType
	switch kind {
	case valueNull, valueBool:
		want = protowire.VarintType
	case valueNumber:
		want = protowire.Fixed64Type
	}
	if kind != 0 && typ != want {
		return mkErr(ReasonTypeMismatch, "a value has the wrong wire type")
	}
	switch kind {
	case valueNumber:
		w.num(math.Float64frombits(x))
	case valueString:
		w.str(body)
	case valueBool:
		w.b = strconv.AppendBool(w.b, x != 0)
	case valueStruct:
		return p.structJSON(w, body, depth+1, mkErr)
	case valueList:
		return p.listJSON(w, body, depth+1, mkErr)
	default:
		w.b = append(w.b, "null"...)
	}
	return nil
}

// listJSON writes a ListValue.
func (p *Parser) listJSON(w *jsonWriter, msg []byte, depth int, mkErr errFunc) error {
	w.b = append(w.b, '[')
	first := true
	var err error
	if !bytesFields(msg, func(n protowire.Number, v []byte) {
		if n != 1 || err != nil {
			return
		}
		w.sep(&first)
		err = p.valueJSON(w, v, depth, mkErr)
	}) {
		return malformed(mkErr, "a list")
	}
	w.b = append(w.b, ']')
	return err
}

// structJSON writes a Struct: its fields in the order of their names, the
// last of a name counting.
func (p *Parser) structJSON(w *jsonWriter, msg []byte, depth int, mkErr errFunc) error {
	start := len(p.protoTensors)
	var ok bool
	if p.protoTensors, ok = appendMapEntries(p.protoTensors, msg, 1); !ok {
		return malformed(mkErr, "a struct")
	}
	// The entries of nested structs follow this one's in p.protoTensors.
	fields := lastOfEachName(slices.Clip(p.protoTensors[start:]))
	defer func() { p.protoTensors = p.protoTensors[:start] }()
	w.b = append(w.b, '{')
	for i, f := range fields {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(f.name)
		w.b = append(w.b, ':')
		if err := p.valueJSON(w, f.msg, depth, mkErr); err != nil {
			return err
		}
	}
	w.b = append(w.b, '}')
	return nil
}

// jsonWriter writes JSON into b.
type jsonWriter struct {
	b     []byte
	limit int
}

func (w *jsonWriter) key(k string) {
	if w.b[len(w.b)-1] != '{' {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, k...)
}

func (w *jsonWriter) sep(first *bool) {
	if !*first {
		w.b = append(w.b, ',')
	}
	*first = false
}

// num writes f; NaN and the infinities as the JSON reader takes them.
func (w *jsonWriter) num(f float64) {
	switch {
	case math.IsNaN(f):
		w.b = append(w.b, "NaN"...)
	case math.IsInf(f, 1):
		w.b = append(w.b, "inf"...)
	case math.IsInf(f, -1):
		w.b = append(w.b, "-inf"...)
	default:
		w.b = strconv.AppendFloat(w.b, f, 'g', -1, 64)
	}
}

// str writes s as a JSON string.
func (w *jsonWriter) str(s []byte) {
	w.b = append(w.b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			w.b = append(w.b, '\\', c)
		case c < 0x20:
			w.b = append(w.b, `\u00`...)
			w.b = append(w.b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			w.b = append(w.b, c)
		}
	}
	w.b = append(w.b, '"')
}
