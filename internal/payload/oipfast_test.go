package payload

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// oipFastOptions are parser options for the OIP differential checks: small limits
// (to hit them), an Output that the seeds name, and the defaults.
var oipFastOptions = []Options{
	{MaxInstances: 4, MaxFeatures: 3, FeatureNames: []string{"a", "b"}, Output: "label"},
	{MaxFeatures: 5, Output: "probabilities"},
	{},
}

// oipFast is the OIP fast path (oipfast.go). A declined request must also
// leave no tensors or names behind, and a declined response no scores.
var oipFast = fastPath{
	request:  (*Parser).fastOIPRequest,
	response: (*Parser).fastOIPResponse,
	declinedRequest: func(t *testing.T, p *Parser, b *Batch) {
		require.Zero(t, b.DroppedFeatures, "a declined request counted dropped features")
		require.Empty(t, p.tensors, "a declined request left tensors")
		require.Empty(t, p.tensorName, "a declined request left names")
		require.Empty(t, p.names, "a declined request left names in the arena")
	},
	declinedResponse: func(t *testing.T, b *Batch) {
		require.Empty(t, b.scores, "a declined response left scores")
	},
	earlier: append(slices.Clone(kserveFast.earlier), earlierBody{FormatOIP,
		`{"inputs": [{"name": "in", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}`,
		`{"outputs": [{"name": "out", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]}`}),
}

// oipFastSeeds are bodies for the OIP fast path: ones it serves, and near misses.
var oipFastSeeds = [][2]string{
	{`{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}`,
		`{"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]}, {"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]}`},
	{`{"inputs": [{"name": "age", "shape": [3, 1], "datatype": "INT32", "data": [[31], [45], [62]]}]}`,
		`{"outputs": [{"name": "out", "shape": [3, 1], "datatype": "FP32", "data": [0.1, 0.5, 0.9]}]}`},
	{`{"inputs": [{"name": "img", "shape": [1, 2, 2], "datatype": "UINT8", "data": [[[1, 2], [3, 4]]]}]}`,
		`{"outputs": [{"name": "p", "shape": [1, 3], "datatype": "BOOL", "data": [true, 0, -0]}, {"name": "label", "shape": [1], "datatype": "BYTES", "data": ["cat"]}]}`},
	{`{"inputs": [{"name": "b", "shape": [4], "datatype": "BOOL", "data": [true, 0, -0, 2.5]}, {"name": "s", "shape": [4, 1], "datatype": "BYTES", "data": ["", "a", null, 1]}]}`,
		`{"outputs": [{"name": "label", "shape": [4], "datatype": "BOOL", "data": [1, 0, -0, null]}, {"name": "probabilities", "shape": [4, 1], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`},
	{`{"inputs": [{"name": "x", "shape": [0, 3], "datatype": "FP16", "data": []}]}`, `{"outputs": [{"name": "y", "shape": [0], "datatype": "FP32", "data": []}]}`},
	{`{"inputs": [{"name": "x", "shape": [2, 0], "datatype": "FP16", "data": [[], []]}]}`, `{"outputs": [{"name": "y", "shape": [2, 0], "datatype": "FP32", "data": []}, {"name": "label", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}`},
	{`{"inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": 1.5}]}`, `{"outputs": [{"name": "y", "shape": [], "datatype": "FP32", "data": [2]}]}`},
	{`{"inputs": []}`, `{"outputs": []}`},
	{`{"id": "1", "parameters": {"content_type": "pd", "x": [1, {"y": null}]}, "inputs": [{"parameters": {"content_type": "np"}, "name": "a", "shape": [2], "datatype": "FP32", "data": [1e3, -2.5E-1]}, {"name": "b", "datatype": "BYTES", "shape": [2, 1], "data": ["x", "y"]}], "outputs": [{"name": "o"}]}`,
		`{"model_name": "m", "model_version": null, "id": "1", "parameters": {"headers": null}, "outputs": [{"name": "label", "shape": [2, 1], "datatype": "BYTES", "parameters": null, "data": ["p", "q"]}, {"name": "probabilities", "shape": [2, 3], "datatype": "FP64", "data": [0.1, 0.2, 0.7, null, true, false]}]}`},
	{`{"inputs": [{"name": "x", "shape": [1, 20000], "datatype": "FP32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]}`},
	{`{"inputs": [{"name": "x", "name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1], "data": [2]}]}`},
	{`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "inputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [2]}]}`, `{"outputs": [], "outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]}`},
	{`{"inputs": [{"name": "x", "shape": [1], "datatype": "fp32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [NaN]}]}`},
	{`{"inputs": [{"name": "x", "shape": [1.0], "datatype": "FP32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": [-1], "datatype": "FP32", "data": [1]}]}`},
	{`{"inputs": [{"name": "x", "shape": [01, 1e0], "datatype": "FP32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1.2.3]}]}`},
	{`{"inputs": [{"name": "x", "shape": [18446744073709551615, 2], "datatype": "FP32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": []}]}`},
	{`{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, {"a": 1}]}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": {"a": 1}}]}`},
	{`{"inputs": [{"name": "x\"", "shape": [1], "datatype": "FP32", "data": ["\u00e9"]}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [Infinity]}]}`},
	{`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "z", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}`, `{"error": "boom"}`},
	{`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}`},
	{`{"inputs": [{"name": 1, "shape": [1], "datatype": "FP32", "data": [1]}]}`, `{"outputs": [{"name": "y", "shape": "1", "datatype": "FP32", "data": [1]}]}`},
	{`{"inputs": [{"name": "x", "shape": [5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}`, `{"outputs": [1, 2, 3, 4, 5]}`},
	{`{"inputs": [{"datatype": "BOOL", "name": "x", "shape": [1]}], "instances": [[1]]}`, `[1]`},
	{`{"inputs": [[1, 2]]}`, `{"predictions": [1]}`},
	{`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]} x`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}],}`},
	{`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],}]}`, `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]`},
}

func FuzzOIPFastPath(f *testing.F) {
	for _, s := range oipFastSeeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	for _, s := range fuzzSeeds[FormatOIP] {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Add(oipBenchReq, oipBenchResp)
	// Responses also meet requests of one to three instances, so that the fast
	// response path sees batch sizes that match.
	reqs := [][]byte{
		[]byte(`{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`),
		[]byte(`{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`),
		[]byte(`{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}`),
	}
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, opts := range oipFastOptions {
			for _, format := range []Format{FormatOIP, FormatUnknown, FormatKServeV1} {
				oipFast.check(t, opts, format, req, resp)
			}
			for _, r := range reqs {
				oipFast.check(t, opts, FormatOIP, r, resp)
			}
		}
	})
}

// TestOIPFastPathUsed checks that the OIP fast path serves typical bodies, rather
// than declining them, and agrees with the tree path on them.
func TestOIPFastPathUsed(t *testing.T) {
	iris := Options{FeatureNames: []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}}
	oipFast.checkUsed(t, []usedCase{
		{name: "benchmark body", format: FormatOIP, req: string(oipBenchReq), resp: string(oipBenchResp), response: true},
		{name: "benchmark body detected", req: string(oipBenchReq), resp: string(oipBenchResp), response: true},
		{name: "benchmark body, Output", opts: Options{Output: "probabilities"}, format: FormatOIP, req: string(oipBenchReq), resp: string(oipBenchResp), response: true},
		{name: "benchmark body, small limits", opts: Options{MaxFeatures: 7, MaxInstances: 8, FeatureNames: []string{"a"}}, format: FormatOIP,
			req: string(oipBenchReq), resp: string(oipBenchResp), response: true},
		{name: "iris nested", opts: iris, format: FormatOIP,
			req:      `{"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}]}`,
			resp:     `{"model_name": "sklearn-v2-iris", "model_version": null, "id": "823248cc", "parameters": {"content_type": null, "headers": null}, "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "parameters": null, "data": [1, 1]}]}`,
			response: true},
		{name: "two inputs", format: FormatOIP,
			req:  `{"id": "42", "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]}, {"name": "input1", "shape": [2], "datatype": "BOOL", "data": [true, false]}], "outputs": [{"name": "output0"}]}`,
			resp: `{"id": "42", "outputs": [{"name": "output0", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 1.1, 2.0, 2.1]}]}`, response: true},
		{name: "columns with parameters", format: FormatOIP,
			req:  `{"parameters": {"content_type": "pd"}, "inputs": [{"name": "a", "shape": [2, 1], "datatype": "BYTES", "data": ["x", "y"], "parameters": {"content_type": "str"}}, {"name": "b", "shape": [2], "datatype": "FP64", "data": [1.5, -0]}]}`,
			resp: `{"outputs": [{"name": "label", "shape": [2], "datatype": "BYTES", "data": ["p", "q"]}, {"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]}`, response: true},
		{name: "bool numbers", format: FormatOIP,
			req:  `{"inputs": [{"name": "b", "shape": [3], "datatype": "BOOL", "data": [0, -0, 7]}]}`,
			resp: `{"outputs": [{"name": "b", "shape": [3, 2], "datatype": "BOOL", "data": [0, 1, -0, 2, null, true]}]}`, response: true},
		{name: "scalar tensor", format: FormatOIP,
			req: `{"inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": 3}]}`, resp: `{"outputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [0.5]}]}`, response: true},
		{name: "empty batch", format: FormatOIP,
			req: `{"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]}`, resp: `{"outputs": [{"name": "y", "shape": [0], "datatype": "FP32", "data": []}]}`, response: true},
		{name: "no inputs", format: FormatOIP, req: `{"inputs": []}`},
		{name: "pretty printed", format: FormatOIP,
			req:  "{\n  \"inputs\": [\n    {\n      \"name\": \"x\",\n\t\"shape\": [1, 2],\r\n \"datatype\": \"FP32\", \"data\": [ 1 , 2 ]\n    }\n  ]\n}\n",
			resp: "{\n  \"outputs\": [ { \"name\" : \"y\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [0.25] } ]\n}\n", response: true},
		{name: "many features named from the arena", format: FormatOIP,
			req: `{"inputs": [{"name": "x", "shape": [1, 12], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}]}`},
		{name: "dropped features", opts: Options{MaxFeatures: 3}, format: FormatOIP,
			req: `{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}, {"name": "y", "shape": [2, 1], "datatype": "INT8", "data": [5, 6]}]}`},
		{name: "later output with a bad shape is skipped by both", format: FormatOIP,
			req:  `{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}`,
			resp: `{"outputs": [{"name": "y", "shape": [2], "datatype": "FP32", "data": [1, 2]}, {"name": "z", "shape": [3, 2], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}`, response: true},
	})
}

// TestOIPFastPathDeclines checks that the OIP fast path declines bodies it cannot
// read exactly as the tree path does, and that Parse still gives the tree path's result.
func TestOIPFastPathDeclines(t *testing.T) {
	deep := `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ` +
		strings.Repeat("[", maxSkipDepth) + "1" + strings.Repeat("]", maxSkipDepth) + `}]}`
	tensor := func(fields string) string { return `{"inputs": [{` + fields + `}]}` }
	requests := []struct {
		name   string
		opts   Options
		format Format
		req    string
	}{
		{name: "escape in name", req: tensor(`"name": "x\"", "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "escape in data", req: tensor(`"name": "x", "shape": [1], "datatype": "BYTES", "data": ["\u00e9"]`)},
		{name: "escape in key", req: tensor(`"nam\u0065": "x", "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "escape in skipped field", req: `{"id": "a\"b", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`},
		{name: "NaN", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [NaN]`)},
		{name: "Infinity", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [-Infinity]`)},
		{name: "malformed number", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1.2.3]`)},
		{name: "malformed dropped number", opts: Options{MaxFeatures: 1}, req: tensor(`"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 1.2.3]`)},
		{name: "object in data", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [{"a": 1}]`)},
		{name: "deep data", req: deep},
		{name: "missing data (binary extension)", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}`)},
		{name: "missing name", req: tensor(`"shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "missing shape", req: tensor(`"name": "x", "datatype": "FP32", "data": [1]`)},
		{name: "missing datatype", req: tensor(`"name": "x", "shape": [1], "data": [1]`)},
		{name: "name not a string", req: tensor(`"name": 1, "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "unknown datatype", req: tensor(`"name": "x", "shape": [1], "datatype": "fp32", "data": [1]`)},
		{name: "shape not an array", req: tensor(`"name": "x", "shape": 1, "datatype": "FP32", "data": [1]`)},
		{name: "negative dimension", req: tensor(`"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]`)},
		{name: "fractional dimension", req: tensor(`"name": "x", "shape": [1.0], "datatype": "FP32", "data": [1]`)},
		{name: "exponent dimension", req: tensor(`"name": "x", "shape": [1e0], "datatype": "FP32", "data": [1]`)},
		{name: "shape mismatch", req: tensor(`"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]`)},
		{name: "shape overflow", req: tensor(`"name": "x", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": []`)},
		{name: "too many instances", opts: Options{MaxInstances: 2}, req: tensor(`"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]`)},
		{name: "batch sizes differ", req: `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "y", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}`},
		{name: "duplicate name", req: tensor(`"name": "x", "name": "y", "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "duplicate data", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "data": [2]`)},
		{name: "duplicate inputs", req: `{"inputs": [], "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`},
		{name: "inputs not an array", req: `{"inputs": {"x": [1]}}`},
		{name: "tensor not an object", req: `{"inputs": [[1, 2]]}`},
		{name: "no inputs", req: `{"id": "x"}`},
		{name: "empty inputs detected", format: FormatUnknown, req: `{"inputs": []}`},
		{name: "top-level array", req: `[{"name": "x"}]`},
		{name: "empty body", req: ``},
		{name: "trailing comma", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1,]`)},
		{name: "trailing garbage", req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1]`) + ` x`},
		{name: "truncated", req: `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]`},
		{name: "KServe format", format: FormatKServeV1, req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "MLflow format", format: FormatMLflow, req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "JSON format", format: FormatJSON, req: tensor(`"name": "x", "shape": [1], "datatype": "FP32", "data": [1]`)},
	}
	for _, tc := range requests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.format
			if f == FormatUnknown && !strings.HasPrefix(tc.name, "empty inputs detected") {
				f = FormatOIP
			}
			usedReq, _ := oipFast.check(t, tc.opts, f, []byte(tc.req), nil)
			require.False(t, usedReq, "the fast path served the request")
		})
	}

	out := func(fields string) string { return `{"outputs": [{` + fields + `}]}` }
	responses := []struct {
		name string
		opts Options
		resp string
	}{
		{name: "error", resp: `{"error": "boom"}`},
		{name: "no outputs", resp: `{"id": "x"}`},
		{name: "empty outputs", resp: `{"outputs": []}`},
		{name: "outputs not an array", resp: `{"outputs": {"y": [1, 2]}}`},
		{name: "duplicate outputs", resp: `{"outputs": [], "outputs": []}`},
		{name: "output not an object", resp: `{"outputs": [1, 2]}`},
		{name: "too few", resp: out(`"name": "y", "shape": [1], "datatype": "FP32", "data": [1]`)},
		{name: "too many", resp: out(`"name": "y", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]`)},
		{name: "shape mismatch", resp: out(`"name": "y", "shape": [2], "datatype": "FP32", "data": [1, 2, 3]`)},
		{name: "NaN", resp: out(`"name": "y", "shape": [2], "datatype": "FP32", "data": [NaN, 1]`)},
		{name: "malformed number", resp: out(`"name": "y", "shape": [2], "datatype": "FP32", "data": [1.2.3, 1]`)},
		{name: "escape", resp: out(`"name": "y", "shape": [2], "datatype": "BYTES", "data": ["a\nb", "c"]`)},
		{name: "binary data", resp: out(`"name": "y", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}`)},
		{name: "Output not found", opts: Options{Output: "z"}, resp: out(`"name": "y", "shape": [2], "datatype": "FP32", "data": [1, 2]`)},
		{name: "later output malformed", resp: `{"outputs": [{"name": "y", "shape": [2], "datatype": "FP32", "data": [1, 2]}, {"name": "z", "shape": [2], "data": [1, 2]}]}`},
		{name: "bare array", resp: `[1, 2]`},
		{name: "blank", resp: " "},
		{name: "truncated", resp: `{"outputs": []`},
	}
	for _, tc := range responses {
		t.Run("response "+tc.name, func(t *testing.T) {
			req := []byte(`{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}`)
			usedReq, usedResp := oipFast.check(t, tc.opts, FormatOIP, req, []byte(tc.resp))
			require.True(t, usedReq, "the fast path declined the request")
			require.False(t, usedResp, "the fast path served the response")
		})
	}
}

// BenchmarkOIPTree is BenchmarkOIP on the tree path only, for comparison.
func BenchmarkOIPTree(b *testing.B) {
	p := NewParser(Options{})
	var batch Batch
	parse := func() {
		batch.Reset()
		p.reset(len(oipBenchReq) + len(oipBenchResp))
		if err := p.parseTree(FormatOIP, oipBenchReq, oipBenchResp, &batch); err != nil {
			b.Fatal(err)
		}
	}
	parse()
	b.ReportAllocs()
	b.SetBytes(int64(len(oipBenchReq) + len(oipBenchResp)))
	for b.Loop() {
		parse()
	}
}
