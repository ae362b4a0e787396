package payload

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
)

// seldonTFCases are TensorProtos of each dtype read, and the elements the
// same data has as a Seldon "tensor".
var seldonTFCases = []struct {
	name string
	in   pbTensor
	out  pbTensor
}{
	{"DT_FLOAT rows, scores", pbTensor{dt: "FP32", shape: []int64{2, 3}, data: []any{1.5, -2.0, 3.25, 4.0, 5.0, 6.5}},
		pbTensor{dt: "FP32", shape: []int64{2, 2}, data: []any{0.25, 0.75, 0.5, 0.5}}},
	{"DT_DOUBLE and DT_INT64, a prediction each", pbTensor{dt: "FP64", shape: []int64{2, 1}, data: []any{0.1, 1e300}},
		pbTensor{dt: "INT64", shape: []int64{2}, data: []any{-7.0, 1e15}}},
	{"DT_INT32 of three dimensions", pbTensor{dt: "INT32", shape: []int64{1, 2, 2}, data: []any{1.0, -2.0, 3.0, 4.0}},
		pbTensor{dt: "UINT32", shape: []int64{1}, data: []any{4000000000.0}}},
	{"DT_STRING and DT_BOOL", pbTensor{dt: "BYTES", shape: []int64{2, 1}, data: []any{"Oslo", "Rome \"centro\""}},
		pbTensor{dt: "BOOL", shape: []int64{2}, data: []any{true, false}}},
	{"DT_HALF and DT_UINT64", pbTensor{dt: "FP16", shape: []int64{1, 2}, data: []any{0.5, -1.5}},
		pbTensor{dt: "UINT64", shape: []int64{1, 1}, data: []any{1e15}}},
	{"tensor_content", pbTensor{dt: "FP32", shape: []int64{2, 2}, data: []any{1.0, 2.0, 3.0, 4.0}, raw: true},
		pbTensor{dt: "FP64", shape: []int64{2}, data: []any{0.125, 0.875}, raw: true}},
	{"a scalar is one instance", pbTensor{dt: "INT32", data: []any{3.0}}, pbTensor{dt: "FP32", data: []any{0.5}}},
	{"an empty batch", pbTensor{dt: "FP32", shape: []int64{0, 4}, data: []any{}}, pbTensor{dt: "FP32", shape: []int64{0}, data: []any{}}},
}

// seldonTensorJSON is the Seldon "tensor" of t's elements: its shape (a
// scalar's is [1]) and its values.
func seldonTensorJSON(t *testing.T, pt pbTensor) string {
	shape := pt.shape
	if len(shape) == 0 {
		shape = []int64{1}
	}
	b, err := json.Marshal(map[string]any{"shape": shape, "values": pt.data})
	require.NoError(t, err)
	return string(b)
}

// A "tftensor" gives the records its elements give as a "tensor": in the
// JSON form of a TensorProto, as protobuf's own JSON encoder writes it
// (field names in lowerCamelCase, or their proto names), and over gRPC.
func TestSeldonTFTensor(t *testing.T) {
	for _, tc := range seldonTFCases {
		t.Run(tc.name, func(t *testing.T) {
			names := `"names": ["a", "b"], `
			var want Batch
			require.NoError(t, NewParser(Options{}).Parse(FormatSeldon,
				[]byte(`{"data": {`+names+`"tensor": `+seldonTensorJSON(t, tc.in)+`}}`),
				[]byte(`{"data": {"tensor": `+seldonTensorJSON(t, tc.out)+`}}`), &want))
			if len(tc.in.shape) == 0 || tc.in.shape[0] > 0 {
				require.NotEmpty(t, want.Records)
			}
			for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
				in, err := opts.Marshal(tfTensorProto(tc.in))
				require.NoError(t, err)
				out, err := opts.Marshal(tfTensorProto(tc.out))
				require.NoError(t, err)
				var got Batch
				require.NoError(t, NewParser(Options{}).Parse(FormatSeldon,
					[]byte(`{"data": {`+names+`"tftensor": `+string(in)+`}}`), []byte(`{"data": {"tftensor": `+string(out)+`}}`), &got), "%s", in)
				require.Equal(t, plain(&want).Records, plain(&got).Records, "%s → %s", in, out)
			}
			var got Batch
			require.NoError(t, NewParser(Options{}).Parse(FormatSeldonGRPC,
				seldonTFMessage(t, []string{"a", "b"}, tc.in), seldonTFMessage(t, nil, tc.out), &got))
			require.Equal(t, plain(&want).Records, plain(&got).Records)
		})
	}
}

// seldonTFMessage is a SeldonMessage whose data has names and the
// TensorProto of pt.
func seldonTFMessage(t testing.TB, names []string, pt pbTensor) []byte {
	var data []byte
	for _, n := range names {
		data = protowire.AppendString(protowire.AppendTag(data, seldonNamesField, protowire.BytesType), n)
	}
	data = protowire.AppendBytes(protowire.AppendTag(data, seldonTftensor, protowire.BytesType), marshal(t, tfTensorProto(pt)))
	return protowire.AppendBytes(protowire.AppendTag(nil, seldonDataField, protowire.BytesType), data)
}

func TestSeldonTFTensorErrors(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name:   "TensorFlow's reading: one value fills the shape",
			format: FormatSeldon,
			req:    `{"data": {"tftensor": {"dtype": 1, "tensor_shape": {"dim": [{"size": 2}, {"size": "2"}]}, "floatVal": ["NaN"]}}}`,
			want:   []plainRecord{rec("null", "", "0=NaN", "1=NaN"), rec("null", "", "0=NaN", "1=NaN")},
		},
		{
			name:   "base64 of the URL alphabet, unpadded",
			format: FormatSeldon,
			req:    `{"data": {"tftensor": {"dtype": "DT_STRING", "tensorShape": {"dim": [{"size": "1"}]}, "stringVal": ["Pz8-", "Pz8"]}}}`,
			want:   []plainRecord{rec("null", "", `0="??>"`)},
		},
		{name: "not an object", format: FormatSeldon, req: `{"data": {"tftensor": [1]}}`, reason: ReasonTypeMismatch},
		{name: "a dtype not read", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_COMPLEX64", "floatVal": [1]}}}`, reason: ReasonTypeMismatch},
		{name: "no dtype", format: FormatSeldon, req: `{"data": {"tftensor": {"floatVal": [1]}}}`, reason: ReasonMissingField},
		{name: "a dtype that is no name", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": true}}}`, reason: ReasonTypeMismatch},
		{name: "a shape that is not of sizes", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [2]}}}}`, reason: ReasonTypeMismatch},
		{name: "a size that is no integer", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "two"}]}}}}`, reason: ReasonTypeMismatch},
		{name: "an unknown size", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "-1"}]}, "floatVal": [1]}}}`, reason: ReasonTypeMismatch},
		{name: "values of another type", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "floatVal": [true]}}}`, reason: ReasonTypeMismatch},
		{name: "values that are no array", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_INT64", "int64Val": "1"}}}`, reason: ReasonTypeMismatch},
		{name: "a string that is no base64", format: FormatSeldon, req: `{"data": {"tftensor": {"dtype": "DT_STRING", "stringVal": ["%%"]}}}`, reason: ReasonTypeMismatch},
		{name: "content cut short", format: FormatSeldon,
			req: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "2"}]}, "tensorContent": "AACAPw=="}}}`, reason: ReasonShapeMismatch},
		{name: "a shape too large to fill", format: FormatSeldon,
			req: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "1099511627776"}, {"size": "2"}]}, "floatVal": [5]}}}`, reason: ReasonShapeMismatch},
		{name: "more instances than allowed", opts: Options{MaxInstances: 2}, format: FormatSeldon,
			req: `{"data": {"tftensor": {"dtype": "DT_INT32", "tensorShape": {"dim": [{"size": "3"}]}, "intVal": [1, 2, 3]}}}`, reason: ReasonTooManyInstances},
		{name: "an answer of another batch size", format: FormatSeldon,
			req:  `{"data": {"ndarray": [[1], [2]]}}`,
			resp: `{"data": {"tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "1"}]}, "floatVal": [0.5]}}}`,
			want: []plainRecord{rec("null", "", "0=1"), rec("null", "", "0=2")}, reason: ReasonShapeMismatch},
	})
}
