package payload

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// pbTensor is an OIP tensor, encoded below both as protobuf (with protowire,
// the protobuf module's own encoder) and as the JSON form, so that the two
// parsers can be held to the same result.
type pbTensor struct {
	name, dt string
	shape    []int64
	data     []any // float64, bool or string elements
	raw      bool  // sent as raw_*_contents rather than typed contents
}

func (t pbTensor) proto() []byte {
	var b []byte
	b = protowire.AppendTag(b, tensorNameField, protowire.BytesType)
	b = protowire.AppendString(b, t.name)
	b = protowire.AppendTag(b, tensorDatatypeField, protowire.BytesType)
	b = protowire.AppendString(b, t.dt)
	var shape []byte
	for _, d := range t.shape {
		shape = protowire.AppendVarint(shape, uint64(d))
	}
	b = protowire.AppendTag(b, tensorShapeField, protowire.BytesType)
	b = protowire.AppendBytes(b, shape)
	if !t.raw {
		b = protowire.AppendTag(b, tensorContentsField, protowire.BytesType)
		b = protowire.AppendBytes(b, t.contents())
	}
	return b
}

// contents is InferTensorContents: packed numbers, or one field per string.
func (t pbTensor) contents() []byte {
	field := contentsField([]byte(t.dt))
	var packed, b []byte
	for _, e := range t.data {
		switch x := e.(type) {
		case string:
			b = protowire.AppendTag(b, field, protowire.BytesType)
			b = protowire.AppendString(b, x)
		case bool:
			packed = protowire.AppendVarint(packed, protowire.EncodeBool(x))
		case float64:
			switch field {
			case 6:
				packed = protowire.AppendFixed32(packed, math.Float32bits(float32(x)))
			case 7:
				packed = protowire.AppendFixed64(packed, math.Float64bits(x))
			default:
				packed = protowire.AppendVarint(packed, uint64(int64(x)))
			}
		}
	}
	if packed != nil {
		b = protowire.AppendTag(b, field, protowire.BytesType)
		b = protowire.AppendBytes(b, packed)
	}
	return b
}

// rawContents is the tensor's raw_*_contents entry: little-endian elements.
func (t pbTensor) rawContents() []byte {
	var b []byte
	for _, e := range t.data {
		switch x := e.(type) {
		case string:
			b = binary.LittleEndian.AppendUint32(b, uint32(len(x)))
			b = append(b, x...)
		case bool:
			b = append(b, map[bool]byte{false: 0, true: 1}[x])
		case float64:
			switch t.dt {
			case "FP16": // the test values are exact in half precision
				b = binary.LittleEndian.AppendUint16(b, toHalf(x))
			case "FP32":
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(x)))
			case "FP64":
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
			case "INT32":
				b = binary.LittleEndian.AppendUint32(b, uint32(int32(x)))
			case "UINT32":
				b = binary.LittleEndian.AppendUint32(b, uint32(x))
			case "INT64":
				b = binary.LittleEndian.AppendUint64(b, uint64(int64(x)))
			case "UINT8":
				b = append(b, byte(x))
			}
		}
	}
	return b
}

// toHalf encodes a small integer or half-integer as IEEE 754 half precision.
func toHalf(x float64) uint16 {
	if x == 0 {
		return 0
	}
	bits := math.Float32bits(float32(x))
	sign := uint16(bits>>16) & 0x8000
	exp := int((bits>>23)&0xff) - 127 + 15
	return sign | uint16(exp)<<10 | uint16((bits>>13)&0x3ff)
}

func (t pbTensor) json() map[string]any {
	return map[string]any{"name": t.name, "datatype": t.dt, "shape": t.shape, "data": t.data}
}

// inferMessage encodes a ModelInferRequest (tensorsField 5, raw 7) or a
// ModelInferResponse (5, raw 6).
func inferMessage(model string, rawField protowire.Number, tensors ...pbTensor) []byte {
	var b []byte
	b = protowire.AppendTag(b, inferModelName, protowire.BytesType)
	b = protowire.AppendString(b, model)
	b = protowire.AppendTag(b, inferID, protowire.BytesType)
	b = protowire.AppendString(b, "req-1")
	for _, t := range tensors {
		b = protowire.AppendTag(b, inferTensors, protowire.BytesType)
		b = protowire.AppendBytes(b, t.proto())
	}
	for _, t := range tensors {
		if t.raw {
			b = protowire.AppendTag(b, rawField, protowire.BytesType)
			b = protowire.AppendBytes(b, t.rawContents())
		}
	}
	return b
}

func inferJSON(field string, tensors ...pbTensor) []byte {
	var ts []any
	for _, t := range tensors {
		ts = append(ts, t.json())
	}
	b, err := json.Marshal(map[string]any{field: ts})
	if err != nil {
		panic(err)
	}
	return b
}

var grpcCases = []struct {
	name      string
	in, out   []pbTensor
	outFields []string
}{
	{name: "one FP32 input, a prediction per row",
		in:  []pbTensor{{name: "x", dt: "FP32", shape: []int64{2, 3}, data: []any{1.5, 2.0, 3.0, 4.0, 5.0, 6.5}}},
		out: []pbTensor{{name: "y", dt: "FP32", shape: []int64{2}, data: []any{0.25, 0.75}}}},
	{name: "inputs of every typed kind, a label and probabilities",
		in: []pbTensor{
			{name: "age", dt: "INT64", shape: []int64{2}, data: []any{42.0, -7.0}},
			{name: "city", dt: "BYTES", shape: []int64{2, 1}, data: []any{"Oslo", "Rome"}},
			{name: "member", dt: "BOOL", shape: []int64{2}, data: []any{true, false}},
			{name: "score", dt: "FP64", shape: []int64{2}, data: []any{0.1, 1e300}},
			{name: "n", dt: "INT32", shape: []int64{2, 2}, data: []any{1.0, -2.0, 3.0, 4.0}},
			{name: "u", dt: "UINT32", shape: []int64{2}, data: []any{7.0, 4000000000.0}},
		},
		out: []pbTensor{
			{name: "label", dt: "BYTES", shape: []int64{2}, data: []any{"churn", "stay"}},
			{name: "probabilities", dt: "FP32", shape: []int64{2, 2}, data: []any{0.25, 0.75, 0.5, 0.5}},
		}},
	{name: "raw contents, FP16 included",
		in: []pbTensor{
			{name: "img", dt: "FP16", shape: []int64{1, 3}, data: []any{0.5, -1.5, 2.0}, raw: true},
			{name: "id", dt: "INT32", shape: []int64{1}, data: []any{12.0}, raw: true},
			{name: "tag", dt: "BYTES", shape: []int64{1}, data: []any{"a b"}, raw: true},
		},
		out: []pbTensor{{name: "p", dt: "FP64", shape: []int64{1, 2}, data: []any{0.125, 0.875}, raw: true}}},
	{name: "an empty batch",
		in:  []pbTensor{{name: "x", dt: "FP32", shape: []int64{0, 4}, data: []any{}}},
		out: []pbTensor{{name: "y", dt: "FP32", shape: []int64{0}, data: []any{}}}},
}

// The gRPC form of a call gives the records its JSON form gives.
func TestOIPGRPCMatchesJSON(t *testing.T) {
	for _, tc := range grpcCases {
		t.Run(tc.name, func(t *testing.T) {
			requireSameRecords(t, tc.in, tc.out, FormatOIPGRPC,
				inferMessage("m", rawInputContents, tc.in...), inferMessage("m", rawOutputContents, tc.out...))
		})
	}
}

// requireSameRecords checks that a call in the gRPC format f, req and
// resp, gives the records of the tensors in and out in the OIP's JSON form.
func requireSameRecords(t *testing.T, in, out []pbTensor, f Format, req, resp []byte) {
	t.Helper()
	var fromJSON, fromGRPC Batch
	p := NewParser(Options{})
	require.NoError(t, p.Parse(FormatOIP, inferJSON("inputs", in...), inferJSON("outputs", out...), &fromJSON))
	want := plain(&fromJSON)
	require.NoError(t, p.Parse(f, req, resp, &fromGRPC))
	got := plain(&fromGRPC)
	require.Equal(t, f.String(), got.Format)
	require.Equal(t, want.Records, got.Records)
	if len(in[0].shape) > 0 && in[0].shape[0] > 0 {
		require.NotEmpty(t, got.Records)
	}
}

func TestOIPGRPC(t *testing.T) {
	x := pbTensor{name: "x", dt: "FP32", shape: []int64{1, 2}, data: []any{1.0, 2.0}}
	y := pbTensor{name: "y", dt: "INT64", shape: []int64{1}, data: []any{1.0}}
	req, resp := inferMessage("m", rawInputContents, x), inferMessage("m", rawOutputContents, y)
	ok := []plainRecord{rec("1", "", "x_0=1", "x_1=2")}

	// Numbers sent one per field, not packed, are valid protobuf too.
	var unpacked []byte
	for _, v := range []float32{1, 2} {
		unpacked = protowire.AppendTag(unpacked, 6, protowire.Fixed32Type)
		unpacked = protowire.AppendFixed32(unpacked, math.Float32bits(v))
	}
	var xu []byte
	xu = protowire.AppendTag(xu, tensorNameField, protowire.BytesType)
	xu = protowire.AppendString(xu, "x")
	xu = protowire.AppendTag(xu, tensorDatatypeField, protowire.BytesType)
	xu = protowire.AppendString(xu, "FP32")
	for _, d := range []uint64{1, 2} {
		xu = protowire.AppendTag(xu, tensorShapeField, protowire.VarintType)
		xu = protowire.AppendVarint(xu, d)
	}
	xu = protowire.AppendTag(xu, tensorContentsField, protowire.BytesType)
	xu = protowire.AppendBytes(xu, unpacked)
	unpackedReq := protowire.AppendBytes(protowire.AppendTag(nil, inferTensors, protowire.BytesType), xu)
	bad := pbTensor{name: "x", dt: "FP8", shape: []int64{1}, data: []any{1.0}}
	short := pbTensor{name: "x", dt: "FP32", shape: []int64{1, 3}, data: []any{1.0, 2.0}}
	noName := pbTensor{dt: "FP32", shape: []int64{1}, data: []any{1.0}}
	rawX := x
	rawX.raw = true
	oneRawOfTwo := inferMessage("m", rawInputContents, rawX, y)
	// y is not raw: the request has one raw entry for two inputs.
	runProtoCases(t, FormatOIPGRPC, []protoCase{
		{"a call", req, resp, ok, ""},
		{"no response", req, nil, []plainRecord{rec("null", "", "x_0=1", "x_1=2")}, ""},
		{"unpacked numbers", unpackedReq, resp, ok, ""},
		{"no inputs", nil, resp, nil, ReasonMissingField},
		{"cut short", req[:len(req)-1], resp, nil, ReasonInvalidProtobuf},
		{"not protobuf", []byte{0xff, 0xff, 0xff}, resp, nil, ReasonInvalidProtobuf},
		{"only a model name", []byte{0x0a, 0x01, 'm'}, resp, nil, ReasonMissingField},
		{"an unknown datatype", inferMessage("m", rawInputContents, bad), resp, nil, ReasonTypeMismatch},
		{"fewer elements than the shape", inferMessage("m", rawInputContents, short), resp, nil, ReasonShapeMismatch},
		{"no name", inferMessage("m", rawInputContents, noName), resp, nil, ReasonMissingField},
		{"raw contents for some inputs only", oneRawOfTwo, resp, nil, ReasonShapeMismatch},
		{"a response cut short", req, resp[:len(resp)-2], []plainRecord{rec("null", "", "x_0=1", "x_1=2")}, ReasonInvalidResponse},
		{"a response that is no protobuf", req, []byte{0x2a, 0x05, 1}, []plainRecord{rec("null", "", "x_0=1", "x_1=2")}, ReasonInvalidResponse},
		{"a response without outputs", req, []byte{0x0a, 0x01, 'm'}, []plainRecord{rec("null", "", "x_0=1", "x_1=2")}, ReasonMissingField},
	})
}

// protoCase is a call in one of the gRPC formats, and what parsing it
// gives: its records, and the reason of its error ("" for none).
type protoCase struct {
	name      string
	req, resp []byte
	want      []plainRecord
	reason    Reason
}

// runProtoCases parses each case in format f.
func runProtoCases(t *testing.T, f Format, cases []protoCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			err := NewParser(Options{}).Parse(f, tc.req, tc.resp, &b)
			require.Equal(t, tc.reason, reasonOf(t, err), "%v", err)
			require.Equal(t, tc.want, plain(&b).Records)
		})
	}
}

func TestInferRequestIDs(t *testing.T) {
	model, version, id, ok := InferRequestIDs(inferMessage("fraud", rawInputContents, grpcCases[0].in...))
	require.True(t, ok)
	require.Equal(t, "fraud", string(model))
	require.Empty(t, version)
	require.Equal(t, "req-1", string(id))

	var b []byte
	b = protowire.AppendTag(b, inferModelVersion, protowire.BytesType)
	b = protowire.AppendString(b, "3")
	b = protowire.AppendTag(b, 4, protowire.BytesType) // parameters: skipped
	b = protowire.AppendBytes(b, []byte{0x0a, 0x01, 'k'})
	b = protowire.AppendTag(b, inferModelName, protowire.BytesType)
	b = protowire.AppendString(b, "churn")
	model, version, _, ok = InferRequestIDs(b)
	require.True(t, ok)
	require.Equal(t, "churn", string(model))
	require.Equal(t, "3", string(version))

	for _, msg := range [][]byte{{0xff}, {0x0a, 0x09, 'a'}, {0x2a, 0x80}} {
		_, _, _, ok := InferRequestIDs(msg)
		require.False(t, ok, "%x", msg)
	}
	_, _, _, ok = InferRequestIDs(nil)
	require.True(t, ok, "an empty message is a valid one, with every field unset")
}

func FuzzOIPGRPC(f *testing.F) {
	for _, tc := range grpcCases {
		f.Add(inferMessage("m", rawInputContents, tc.in...), inferMessage("m", rawOutputContents, tc.out...))
	}
	f.Add([]byte{0x2a, 0x00}, []byte{})
	parsers := fuzzParsers()
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, p := range parsers {
			checkParse(t, p, FormatOIPGRPC, req, resp)
		}
		InferRequestIDs(req)
		ReadStreamResponse(resp)
		OutputCount(resp, "y")
	})
}

func BenchmarkOIPGRPC(b *testing.B) {
	in, out := grpcBenchTensors()
	benchmarkParse(b, FormatOIPGRPC, inferMessage("fraud", rawInputContents, in), inferMessage("fraud", rawOutputContents, out))
}

// A generative model behind the OIP's infer API (Triton's vLLM backend)
// answers a "text_output", which is no prediction: the prediction is its
// "finish_reason", and "num_input_tokens" and "num_output_tokens" are its
// token counts; the same over JSON and gRPC, raw contents or typed.
func TestOIPGeneration(t *testing.T) {
	prompt := []pbTensor{{name: "text_input", dt: "BYTES", shape: []int64{1}, data: []any{"Hi"}}}
	text := pbTensor{name: "text_output", dt: "BYTES", shape: []int64{1}, data: []any{"Hello there"}}
	for _, tc := range []struct {
		name          string
		out           []pbTensor
		prediction    string
		input, output int64
	}{
		{"text only", []pbTensor{text}, "null", -1, -1},
		{"the vLLM backend's additional outputs", []pbTensor{
			text,
			{name: "finish_reason", dt: "BYTES", shape: []int64{1}, data: []any{"length"}},
			{name: "num_output_tokens", dt: "UINT32", shape: []int64{1}, data: []any{float64(16)}},
			{name: "num_input_tokens", dt: "UINT32", shape: []int64{1}, data: []any{float64(5)}},
		}, `"length"`, 5, 16},
		{"raw contents", []pbTensor{
			{name: "text_output", dt: "BYTES", shape: []int64{1}, data: []any{"Hello there"}, raw: true},
			{name: "finish_reason", dt: "BYTES", shape: []int64{1}, data: []any{"stop"}, raw: true},
			{name: "num_output_tokens", dt: "INT32", shape: []int64{1}, data: []any{float64(3)}, raw: true},
		}, `"stop"`, -1, 3},
		{"text after the others", []pbTensor{
			{name: "finish_reason", dt: "BYTES", shape: []int64{1, 1}, data: []any{"stop"}},
			text,
		}, `"stop"`, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParser(Options{})
			for _, form := range []struct {
				f         Format
				req, resp []byte
			}{
				{FormatOIP, inferJSON("inputs", prompt...), inferJSON("outputs", tc.out...)},
				{FormatOIPGRPC, inferMessage("llm", rawInputContents, prompt...), inferMessage("llm", rawOutputContents, tc.out...)},
			} {
				var b Batch
				require.NoError(t, p.Parse(form.f, form.req, form.resp, &b), form.f)
				got := plain(&b)
				require.Equal(t, []plainRecord{{Features: []string{`text_input="Hi"`}, Prediction: tc.prediction}}, got.Records, form.f)
				require.Equal(t, Generation{Answered: true, InputTokens: tc.input, OutputTokens: tc.output}, b.Generation, form.f)
			}
		})
	}

	// Options.Output names the prediction: text_output is read as any output.
	var b Batch
	p := NewParser(Options{Output: "text_output"})
	require.NoError(t, p.Parse(FormatOIP, inferJSON("inputs", prompt...), inferJSON("outputs", text), &b))
	require.Equal(t, `"Hello there"`, plain(&b).Records[0].Prediction)
	require.False(t, b.Generation.Answered)
}
