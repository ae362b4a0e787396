package payload

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReasons(t *testing.T) {
	r := Reasons()
	require.Equal(t, []Reason{"empty_body", "invalid_json", "unknown_format", "missing_field", "shape_mismatch",
		"type_mismatch", "too_many_instances", "invalid_response", "invalid_protobuf"}, r)
	r[0] = "changed"
	require.Equal(t, ReasonEmptyBody, Reasons()[0])
}

func TestError(t *testing.T) {
	var b Batch
	err := NewParser(Options{}).Parse(FormatKServeV1, []byte(`{"instances": [1]}`), []byte(`{"predictions": [1, 2]}`), &b)
	require.EqualError(t, err, `shape_mismatch: response: "predictions" has 2 predictions for 1 instances`)
	var pe *Error
	require.True(t, errors.As(fmt.Errorf("parse payload: %w", err), &pe))
	require.Equal(t, ReasonShapeMismatch, pe.Reason)
	require.True(t, pe.Response)

	err = NewParser(Options{}).Parse(FormatUnknown, []byte(`{"a": secret}`), nil, &b)
	require.EqualError(t, err, "invalid_json: request: not valid JSON")
	require.True(t, errors.As(err, &pe))
	require.False(t, pe.Response)
}

func TestNaNAndInfinity(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		name, req string
		want      []float64
	}{
		{"python", `[NaN, Infinity, -Infinity, 1.5]`, []float64{nan, inf, -inf, 1.5}},
		{"lowercase", `[nan, inf, -inf, +inf]`, []float64{nan, inf, -inf, inf}},
		{"mixed case", `[NAN, INFINITY, -infinity, +Infinity]`, []float64{nan, inf, -inf, inf}},
		{"no spaces", `[Infinity,-Infinity,NaN]`, []float64{inf, -inf, nan}},
		{"overflow", `[1e400, -1e400]`, []float64{inf, -inf}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			req := `{"instances": [` + tc.req + `]}`
			resp := `{"predictions": [` + tc.req + `]}`
			require.NoError(t, NewParser(Options{}).Parse(FormatUnknown, []byte(req), []byte(resp), &b))
			require.Len(t, b.Records, 1)
			r := b.Records[0]
			require.Len(t, r.Features, len(tc.want))
			require.Len(t, r.Scores, len(tc.want))
			for i, w := range tc.want {
				require.Equal(t, KindNumber, r.Features[i].Value.Kind)
				if math.IsNaN(w) {
					require.True(t, math.IsNaN(r.Features[i].Value.Num), "feature %d", i)
					require.True(t, math.IsNaN(r.Scores[i]), "score %d", i)
					continue
				}
				require.Equal(t, w, r.Features[i].Value.Num, "feature %d", i)
				require.Equal(t, w, r.Scores[i], "score %d", i)
			}
		})
	}

	t.Run("strings are left alone", func(t *testing.T) {
		var b Batch
		req := `{"note": "Infinity and beyond", "x": Infinity, "nan": "NaN", "esc": "\"Infinity"}`
		require.NoError(t, NewParser(Options{}).Parse(FormatJSON, []byte(req), nil, &b))
		require.Equal(t, []string{`note="Infinity and beyond"`, "x=+Inf", `nan="NaN"`, `esc="\"Infinity"`}, plain(&b).Records[0].Features)
		require.Equal(t, `{"note": "Infinity and beyond", "x": Infinity, "nan": "NaN", "esc": "\"Infinity"}`, req)
	})
	t.Run("Infinity does not rescue other errors", func(t *testing.T) {
		var b Batch
		err := NewParser(Options{}).Parse(FormatJSON, []byte(`{"x": Infinity, "y": }`), nil, &b)
		require.Equal(t, ReasonInvalidJSON, reasonOf(t, err))
	})
}

func TestMalformed(t *testing.T) {
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	for _, tc := range []struct {
		name      string
		format    Format
		req, resp string
		reason    Reason
		records   int
	}{
		{"empty request", FormatUnknown, ``, ``, ReasonEmptyBody, 0},
		{"blank request", FormatJSON, " \n\t", ``, ReasonEmptyBody, 0},
		{"truncated object", FormatUnknown, `{"instances": [[1, 2], [3`, ``, ReasonInvalidJSON, 0},
		{"truncated string", FormatUnknown, `{"a": "b`, ``, ReasonInvalidJSON, 0},
		{"trailing garbage", FormatUnknown, `{"a": 1} x`, ``, ReasonInvalidJSON, 0},
		{"single quotes", FormatUnknown, `{'a': 1}`, ``, ReasonInvalidJSON, 0},
		{"bare word", FormatUnknown, `{"a": yes}`, ``, ReasonInvalidJSON, 0},
		{"bad number", FormatJSON, `{"a": 1-2}`, ``, ReasonInvalidJSON, 0},
		{"bad number in OIP data", FormatOIP, `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [--1]}]}`, ``, ReasonInvalidJSON, 0},
		{"deep nesting", FormatUnknown, deep, ``, ReasonInvalidJSON, 0},
		{"instances wrong type", FormatKServeV1, `{"instances": "abc"}`, ``, ReasonTypeMismatch, 0},
		{"oip input not object", FormatOIP, `{"inputs": [1]}`, ``, ReasonTypeMismatch, 0},
		{"oip name not string", FormatOIP, `{"inputs": [{"name": 1, "shape": [1], "datatype": "FP32", "data": [1]}]}`, ``, ReasonTypeMismatch, 0},
		{"oip shape float", FormatOIP, `{"inputs": [{"name": "x", "shape": [1.5], "datatype": "FP32", "data": [1]}]}`, ``, ReasonTypeMismatch, 0},
		{"oip shape string", FormatOIP, `{"inputs": [{"name": "x", "shape": ["1"], "datatype": "FP32", "data": [1]}]}`, ``, ReasonTypeMismatch, 0},
		{"oip no shape", FormatOIP, `{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}`, ``, ReasonMissingField, 0},
		{"invalid format value", Format(99), `{"a": 1}`, ``, ReasonUnknownFormat, 0},
		{"blank response", FormatUnknown, `{"a": 1}`, " \r\n", ReasonEmptyBody, 1},
		{"truncated response", FormatUnknown, `{"instances": [1]}`, `{"predictions": [1`, ReasonInvalidResponse, 1},
		{"html response", FormatUnknown, `{"instances": [1]}`, `<html>502 Bad Gateway</html>`, ReasonInvalidResponse, 1},
		{"bad number in response", FormatUnknown, `{"instances": [1]}`, `{"predictions": [1e]}`, ReasonInvalidResponse, 1},
		{"oip response not object", FormatOIP, `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`, `[1]`, ReasonTypeMismatch, 1},
		{"oip outputs empty", FormatOIP, `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`, `{"outputs": []}`, ReasonMissingField, 1},
		{"oip output bad shape", FormatOIP, `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`,
			`{"outputs": [{"name": "y", "shape": [2], "datatype": "FP32", "data": [1]}]}`, ReasonShapeMismatch, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			err := NewParser(Options{}).Parse(tc.format, []byte(tc.req), []byte(tc.resp), &b)
			require.Equal(t, tc.reason, reasonOf(t, err), "error: %v", err)
			require.Len(t, b.Records, tc.records)
			for _, r := range b.Records {
				require.Equal(t, KindMissing, r.Prediction.Kind)
				require.Nil(t, r.Scores)
			}
		})
	}
}

func TestResponseOptional(t *testing.T) {
	var b Batch
	p := NewParser(Options{})
	require.NoError(t, p.Parse(FormatUnknown, []byte(`{"instances": [[1]]}`), nil, &b))
	require.Len(t, b.Records, 1)
	require.NoError(t, p.Parse(FormatUnknown, []byte(`{"instances": [[1]]}`), []byte{}, &b))
	require.Len(t, b.Records, 1)
}

func TestManyFeatures(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("{")
	for i := range 10000 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"feature_%05d": %d`, i, i)
	}
	sb.WriteString("}")
	req := []byte(sb.String())

	t.Run("default limit keeps all", func(t *testing.T) {
		var b Batch
		require.NoError(t, NewParser(Options{}).Parse(FormatUnknown, req, []byte(`{"prediction": 1}`), &b))
		require.Len(t, b.Records, 1)
		f := b.Records[0].Features
		require.Len(t, f, 10000)
		require.Zero(t, b.DroppedFeatures)
		require.Equal(t, "feature_00000", string(f[0].Name))
		require.Equal(t, "feature_09999", string(f[9999].Name))
		require.Equal(t, float64(9999), f[9999].Value.Num)
	})
	t.Run("MaxFeatures drops the rest", func(t *testing.T) {
		var b Batch
		require.NoError(t, NewParser(Options{MaxFeatures: 100}).Parse(FormatUnknown, req, nil, &b))
		require.Len(t, b.Records[0].Features, 100)
		require.Equal(t, 9900, b.DroppedFeatures)
		require.Equal(t, "feature_00099", string(b.Records[0].Features[99].Name))
	})
	t.Run("MaxFeatures counts nested leaves", func(t *testing.T) {
		var b Batch
		err := NewParser(Options{MaxFeatures: 2}).Parse(FormatJSON, []byte(`[{"a": 1, "b": {"c": [1, 2, {"d": 3}]}, "e": 4}, {"a": [[1], [2, 3]]}]`), nil, &b)
		require.NoError(t, err)
		require.Equal(t, []plainRecord{rec("null", "", "a=1", "b.c.0=1"), rec("null", "", "a.0.0=1", "a.1.0=2")}, plain(&b).Records)
		require.Equal(t, 3+1, b.DroppedFeatures)
	})
	t.Run("positional beyond MaxFeatures", func(t *testing.T) {
		var b Batch
		require.NoError(t, NewParser(Options{MaxFeatures: 2}).Parse(FormatKServeV1, []byte(`{"instances": [[1, 2, 3, [4, 5]]]}`), nil, &b))
		require.Equal(t, []plainRecord{rec("null", "", "0=1", "1=2")}, plain(&b).Records)
		require.Equal(t, 3, b.DroppedFeatures)
	})
}

func TestMaxInstances(t *testing.T) {
	p := NewParser(Options{MaxInstances: 3})
	for _, tc := range []struct {
		name, req string
		reason    Reason
	}{
		{"instances at cap", `{"instances": [1, 2, 3]}`, ""},
		{"instances over cap", `{"instances": [1, 2, 3, 4]}`, ReasonTooManyInstances},
		{"columnar over cap", `{"inputs": {"a": [1, 2, 3, 4]}}`, ReasonTooManyInstances},
		{"records over cap", `{"dataframe_records": [{}, {}, {}, {}]}`, ReasonTooManyInstances},
		{"split over cap", `{"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3], [4]]}}`, ReasonTooManyInstances},
		{"json over cap", `[{}, {}, {}, {}]`, ReasonTooManyInstances},
		{"oip over cap", `{"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`, ReasonTooManyInstances},
		{"oip empty rows over cap", `{"inputs": [{"name": "x", "shape": [1000000000, 0], "datatype": "FP32", "data": []}]}`, ReasonTooManyInstances},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			err := p.Parse(FormatUnknown, []byte(tc.req), nil, &b)
			require.Equal(t, tc.reason, reasonOf(t, err))
			if tc.reason != "" {
				require.Empty(t, b.Records)
			}
		})
	}

	t.Run("default", func(t *testing.T) {
		req := `{"instances": [` + strings.Repeat("1,", DefaultMaxInstances) + `1]}`
		var b Batch
		err := NewParser(Options{}).Parse(FormatUnknown, []byte(req), nil, &b)
		require.Equal(t, ReasonTooManyInstances, reasonOf(t, err))
	})
}

func TestNameBudget(t *testing.T) {
	// Each leaf's flattened name repeats the long prefix; the arena stops growing at
	// its budget (about 4× the body) and the rest are dropped rather than allocated.
	long := strings.Repeat("k", 10000)
	var sb strings.Builder
	sb.WriteString(`{"` + long + `": {`)
	for i := range 2000 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"%d":1`, i)
	}
	sb.WriteString("}}")
	req := sb.String()

	p := NewParser(Options{})
	var b Batch
	require.NoError(t, p.Parse(FormatJSON, []byte(req), nil, &b))
	kept := len(b.Records[0].Features)
	require.Less(t, kept, 2000)
	require.Positive(t, kept)
	require.Equal(t, 2000-kept, b.DroppedFeatures)
	require.LessOrEqual(t, len(p.names), 4*len(req)+4096)
}

func TestBatchReuse(t *testing.T) {
	p := NewParser(Options{})
	var b Batch
	require.NoError(t, p.Parse(FormatUnknown, []byte(`{"instances": [[1, 2], [3, 4]]}`), []byte(`{"predictions": [[0.1, 0.9], [0.2, 0.8]]}`), &b))
	require.Len(t, b.Records, 2)
	require.NoError(t, p.Parse(FormatUnknown, []byte(`{"instances": [[5]]}`), []byte(`{"predictions": ["x"]}`), &b))
	require.Equal(t, []plainRecord{rec(`"x"`, "", "0=5")}, plain(&b).Records)
	b.Reset()
	require.Empty(t, b.Records)
	require.Equal(t, FormatUnknown, b.Format)
}

func TestSteadyStateAllocs(t *testing.T) {
	seldonReq, seldonResp := seldonBenchJSON()
	examples := []map[string]any{{"x": 1.0, "s": "a", "l": []int{1, 2}}, {"x": 2.0}}
	for _, tc := range []struct {
		name      string
		req, resp []byte
		format    Format
	}{
		{"kserve", kserveBenchReq, kserveBenchResp, FormatUnknown},
		{"oip", oipBenchReq, oipBenchResp, FormatUnknown},
		{"mlflow", []byte(`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}`), []byte(`{"predictions": [{"label": "p", "probabilities": [0.1, 0.9]}, {"label": "q", "probabilities": [0.3, 0.7]}]}`), FormatUnknown},
		{"json nested", []byte(`[{"user": {"age": 42, "geo": {"country": "NO"}}, "tags": ["a", "b"]}, {"user": {"age": 40, "geo": {"country": "SE"}}, "tags": ["c", "d"]}]`), []byte(`{"predictions": [1, 0]}`), FormatUnknown},
		{"infinity", []byte(`{"instances": [[Infinity, -Infinity, NaN]]}`), []byte(`{"predictions": [Infinity]}`), FormatUnknown},
		{"tf classify with a context", exampleRequest(t, FormatTFServingClassifyGRPC, "m", examples, map[string]any{"c": 3}),
			response(t, "ClassificationResponse", classificationResult([]class{{"a", 0.5}}, []class{{"b", 1}})), FormatTFServingClassifyGRPC},
		{"seldon", []byte(seldonReq), []byte(seldonResp), FormatUnknown},
		{"seldon grpc", seldonProto(t, `{"jsonData": {"user": {"age": 42}, "tags": ["a", "b"]}}`),
			seldonProto(t, `{"jsonData": {"prediction": "churn"}}`), FormatSeldonGRPC},
		{"seldon tftensor", []byte(`{"data": {"names": ["a", "b"], "tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "2"}, {"size": "2"}]}, "floatVal": [1, 2, 3, 4]}}}`),
			[]byte(`{"data": {"tftensor": {"dtype": "DT_STRING", "tensorShape": {"dim": [{"size": "2"}]}, "stringVal": ["eWVz", "bm8="]}}}`), FormatSeldon},
		{"seldon grpc tftensor", seldonTFMessage(t, []string{"a"}, seldonTFCases[0].in), seldonTFMessage(t, nil, seldonTFCases[0].out), FormatSeldonGRPC},
		{"torchserve grpc", torchRequest(t, "m", "", "data", `{"instances": [[1, 2]]}`), torchResponse(t, `{"predictions": [1]}`), FormatTorchServeGRPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParser(Options{})
			var b Batch
			require.NoError(t, p.Parse(tc.format, tc.req, tc.resp, &b))
			allocs := testing.AllocsPerRun(100, func() {
				_ = p.Parse(tc.format, tc.req, tc.resp, &b)
			})
			require.Zero(t, allocs)
		})
	}
}

func TestContextCopyBudget(t *testing.T) {
	// 2000 context features copied into 2000 examples would be 4M features from a
	// ~40 KB body; copies stop at a budget proportional to the body.
	var sb strings.Builder
	sb.WriteString(`{"context": {`)
	for i := range 2000 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"c%d":1`, i)
	}
	sb.WriteString(`}, "examples": [` + strings.Repeat(`{"x":1},`, 1999) + `{"x":1}]}`)
	req := sb.String()

	var b Batch
	require.NoError(t, NewParser(Options{}).Parse(FormatUnknown, []byte(req), nil, &b))
	require.Len(t, b.Records, 2000)
	total := 0
	for _, r := range b.Records {
		total += len(r.Features)
	}
	require.LessOrEqual(t, total, 2000+len(req)+4096)
	require.Equal(t, 2000+2000*2000, total+b.DroppedFeatures)
	require.Len(t, b.Records[0].Features, 2001)
	require.Len(t, b.Records[1999].Features, 1)
}
