package payload

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// le appends values little endian, as Triton's clients write tensors: each
// value's Go type is its width.
func le(vals ...any) string {
	var b []byte
	for _, v := range vals {
		switch x := v.(type) {
		case uint8:
			b = append(b, x)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, x)
		case float32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		case int32:
			b = binary.LittleEndian.AppendUint32(b, uint32(x))
		case int64:
			b = binary.LittleEndian.AppendUint64(b, uint64(x))
		case float64:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		case string: // a BYTES element
			b = binary.LittleEndian.AppendUint32(b, uint32(len(x)))
			b = append(b, x...)
		}
	}
	return string(b)
}

// Triton's binary tensor data extension: the tensors' bytes follow the JSON,
// in order, for every datatype, in the request and in the response.
func TestOIPBinary(t *testing.T) {
	const inputs = `{"inputs":[` +
		`{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}},` +
		`{"name":"ids","shape":[2],"datatype":"INT64","parameters":{"binary_data_size":16}},` +
		`{"name":"flag","shape":[2],"datatype":"BOOL","parameters":{"binary_data_size":2}},` +
		`{"name":"h","shape":[2],"datatype":"FP16","parameters":{"binary_data_size":4}},` +
		`{"name":"bf","shape":[2],"datatype":"BF16","parameters":{"binary_data_size":4}},` +
		`{"name":"n","shape":[2],"datatype":"INT8","data":[-1,2]},` +
		`{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":13}}` +
		`],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
	bin := le(float32(1.5), float32(-2), float32(0.25), float32(8),
		int64(-7), int64(1<<40),
		uint8(1), uint8(0),
		uint16(0x3E00), uint16(0xC000), // FP16 1.5, -2
		uint16(0x4040), uint16(0x3F00), // BF16 3, 0.5
		"ab", "cde")
	const outputs = `{"model_name":"m","outputs":[{"name":"y","shape":[2],"datatype":"FP64","parameters":{"binary_data_size":16}}]}`
	want := []plainRecord{
		rec("0.75", "", "x_0=1.5", "x_1=-2", "ids=-7", "flag=true", "h=1.5", "bf=3", "n=-1", `s="ab"`),
		rec("0.125", "", "x_0=0.25", "x_1=8", "ids=1.099511627776e+12", "flag=false", "h=-2", "bf=0.5", "n=2", `s="cde"`),
	}
	runParseCases(t, []parseCase{
		{name: "request and response", format: FormatOIP, req: inputs + bin, resp: outputs + le(0.75, 0.125), want: want},
		{name: "detected", req: inputs + bin, resp: outputs + le(0.75, 0.125), want: want, wantFormat: FormatOIP},
		{
			name: "JSON data with a binary response", format: FormatOIP,
			req:  `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[2]}]}`,
			resp: `{"outputs":[{"name":"y","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}` + le(float32(0.5)),
			want: []plainRecord{rec("0.5", "", "x=2")},
		},
		{
			name: "less binary data than declared", format: FormatOIP,
			req:    `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}` + le(float32(1)),
			reason: ReasonShapeMismatch,
		},
		{
			name: "binary data that is not whole elements", format: FormatOIP,
			req:    `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":3}}]}` + "abc",
			reason: ReasonShapeMismatch,
		},
		{
			name: "elements that do not fill the shape", format: FormatOIP,
			req:    `{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":8}}]}` + le(float32(1), float32(2)),
			reason: ReasonShapeMismatch,
		},
		{
			name: "a BYTES element cut short", format: FormatOIP,
			req:    `{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}` + le(uint16(9), uint16(0)) + "ab",
			reason: ReasonShapeMismatch,
		},
		{
			name:   "bytes after a KServe v1 body",
			format: FormatKServeV1,
			req:    `{"instances":[[1,2]]}` + "\x00\x01",
			reason: ReasonInvalidJSON,
		},
	})
}

func TestJSONEnd(t *testing.T) {
	for b, want := range map[string]int{
		`{"a":"}{","b":[1,{"c":"\"}"}]}rest`: 30,
		"  {}\x00":                           4,
		`{"a":1`:                             -1,
		`[1]`:                                -1,
		``:                                   -1,
	} {
		require.Equal(t, want, jsonEnd([]byte(b)), b)
	}
}

// FP16 against the values of the IEEE 754 half-precision format.
func TestHalfToFloat(t *testing.T) {
	for h, want := range map[uint16]float64{
		0x0000: 0, 0x3C00: 1, 0xC000: -2, 0x7BFF: 65504, 0x0001: math.Ldexp(1, -24),
		0x0400: math.Ldexp(1, -14), 0x3555: 0.333251953125, 0x7C00: math.Inf(1), 0xFC00: math.Inf(-1),
	} {
		require.Equal(t, want, halfToFloat(h), "%#04x", h)
	}
	require.True(t, math.IsNaN(halfToFloat(0x7E00)))
}
