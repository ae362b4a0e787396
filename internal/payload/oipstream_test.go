package payload

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// param encodes an entry of a parameters map: key, and an InferParameter
// of field num holding v.
func param(key string, num protowire.Number, v uint64) []byte {
	var value, entry []byte
	value = protowire.AppendTag(value, num, protowire.VarintType)
	value = protowire.AppendVarint(value, v)
	entry = protowire.AppendTag(entry, mapKey, protowire.BytesType)
	entry = protowire.AppendString(entry, key)
	entry = protowire.AppendTag(entry, mapValue, protowire.BytesType)
	entry = protowire.AppendBytes(entry, value)
	var b []byte
	b = protowire.AppendTag(b, inferParameters, protowire.BytesType)
	return protowire.AppendBytes(b, entry)
}

// streamMessage encodes a ModelStreamInferResponse.
func streamMessage(errMsg string, resp []byte) []byte {
	var b []byte
	if errMsg != "" {
		b = protowire.AppendTag(b, streamErrorMessage, protowire.BytesType)
		b = protowire.AppendString(b, errMsg)
	}
	if resp != nil {
		b = protowire.AppendTag(b, streamInferResponse, protowire.BytesType)
		b = protowire.AppendBytes(b, resp)
	}
	return b
}

func TestReadStreamResponse(t *testing.T) {
	out := pbTensor{name: "text_output", dt: "BYTES", shape: []int64{1}, data: []any{"Hello"}}
	answer := inferMessage("llm", rawOutputContents, out)

	r, ok := ReadStreamResponse(streamMessage("", answer))
	require.True(t, ok)
	require.Equal(t, answer, r.Response)
	require.Equal(t, "llm", string(r.Model))
	require.Equal(t, "req-1", string(r.ID))
	require.Empty(t, r.Version)
	require.Nil(t, r.Error)
	require.True(t, r.Outputs)
	require.Equal(t, int8(-1), r.Final, "a model that is not decoupled does not flag its one answer")

	// A decoupled model's answers, among other parameters; the last may
	// carry the flag and no outputs.
	for _, tc := range []struct {
		msg     []byte
		final   int8
		outputs bool
	}{
		{append(append(inferMessage("llm", rawOutputContents, out), param("sequence_index", 2, 7)...), param(FinalResponse, boolParam, 0)...), 0, true},
		{append(param(FinalResponse, boolParam, 1), inferMessage("llm", rawOutputContents)...), 1, false},
		// Not a bool: the flag is false, as Triton's clients read it.
		{append(param(FinalResponse, 3, 1), inferMessage("llm", rawOutputContents)...), 0, false},
	} {
		r, ok := ReadStreamResponse(streamMessage("", tc.msg))
		require.True(t, ok)
		require.Equal(t, tc.final, r.Final)
		require.Equal(t, tc.outputs, r.Outputs)
		require.Equal(t, "req-1", string(r.ID))
	}

	// An error names the request when the server knows it.
	r, ok = ReadStreamResponse(streamMessage("in ensemble 'llm', unexpected shape", inferMessage("llm", rawOutputContents)))
	require.True(t, ok)
	require.Equal(t, "in ensemble 'llm', unexpected shape", string(r.Error))
	require.Equal(t, "req-1", string(r.ID))
	require.False(t, r.Rejected, "the model failed: it is named")
	r, ok = ReadStreamResponse(streamMessage("the model crashed", nil))
	require.True(t, ok)
	require.Nil(t, r.Response)
	require.Nil(t, r.ID)
	require.False(t, r.Rejected)
	// A request Triton rejected before the model saw it: its id alone, or
	// nothing when it had none.
	for _, id := range []string{"req-9", ""} {
		var resp []byte
		if id != "" {
			resp = protowire.AppendString(protowire.AppendTag(nil, inferID, protowire.BytesType), id)
		}
		r, ok = ReadStreamResponse(streamMessage("unexpected shape for input 'x'", append([]byte{}, resp...)))
		require.True(t, ok)
		require.True(t, r.Rejected, "id %q", id)
		require.Equal(t, id, string(r.ID))
	}

	for _, msg := range [][]byte{{0xff}, {0x12, 0x09, 'a'}, streamMessage("", []byte{0x2a, 0x80})} {
		_, ok := ReadStreamResponse(msg)
		require.False(t, ok, "%x", msg)
	}
	_, ok = ReadStreamResponse(nil)
	require.True(t, ok, "an empty message is a valid one, with every field unset")
}

func TestOutputCount(t *testing.T) {
	text := pbTensor{name: "text_output", dt: "BYTES", shape: []int64{1}, data: []any{"Hi"}}
	for _, tc := range []struct {
		name    string
		tensors []pbTensor
		want    int64
		ok      bool
	}{
		{"typed", []pbTensor{text, {name: "num_output_tokens", dt: "UINT32", shape: []int64{1}, data: []any{float64(7)}}}, 7, true},
		{"int32, several", []pbTensor{{name: "num_output_tokens", dt: "INT32", shape: []int64{2}, data: []any{float64(3), float64(4)}}, text}, 7, true},
		{"raw", []pbTensor{
			{name: "text_output", dt: "BYTES", shape: []int64{1}, data: []any{"Hi"}, raw: true},
			{name: "num_output_tokens", dt: "UINT32", shape: []int64{1}, data: []any{float64(300)}, raw: true},
		}, 300, true},
		{"raw int64", []pbTensor{{name: "num_output_tokens", dt: "INT64", shape: []int64{1}, data: []any{float64(1 << 40)}, raw: true}}, 1 << 40, true},
		{"negative", []pbTensor{{name: "num_output_tokens", dt: "INT32", shape: []int64{1}, data: []any{float64(-2)}}}, 0, false},
		{"negative raw", []pbTensor{{name: "num_output_tokens", dt: "INT32", shape: []int64{1}, data: []any{float64(-2)}, raw: true}}, 0, false},
		{"not integers", []pbTensor{{name: "num_output_tokens", dt: "FP32", shape: []int64{1}, data: []any{1.5}}}, 0, false},
		{"none", []pbTensor{text}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := OutputCount(inferMessage("llm", rawOutputContents, tc.tensors...), "num_output_tokens")
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, n)
		})
	}
	for _, msg := range [][]byte{{0xff}, {0x2a, 0x80}, nil} {
		_, ok := OutputCount(msg, "num_output_tokens")
		require.False(t, ok, "%x", msg)
	}
}
