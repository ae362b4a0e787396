package payload

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fastFormats are the formats the fast path may serve.
var fastFormats = []Format{FormatKServeV1, FormatUnknown, FormatMLflow}

// fastOptions are parser options for the differential checks: small limits (to hit
// them) and the defaults.
var fastOptions = []Options{
	{MaxInstances: 4, MaxFeatures: 3, FeatureNames: []string{"a", "b"}, Output: "label"},
	{},
}

// treeParse parses req and resp on a fresh Parser with the tree path only.
func treeParse(opts Options, f Format, req, resp []byte) (*Batch, error) {
	p := NewParser(opts)
	b := &Batch{}
	b.Reset()
	p.reset(len(req) + len(resp))
	return b, p.parseTree(f, req, resp, b)
}

// fastPath is one single-pass path under test: its request and response
// scanners, what a declined request or response must also have left alone
// (beyond an empty Batch), and the bodies a reused Parser holds before the
// whole Parse is compared.
type fastPath struct {
	request          func(p *Parser, f Format, req []byte, b *Batch) bool
	response         func(p *Parser, resp []byte, b *Batch) bool
	declinedRequest  func(t *testing.T, p *Parser, b *Batch)
	declinedResponse func(t *testing.T, b *Batch)
	earlier          []earlierBody
}

// earlierBody is a body a Parser parsed before the one under test.
type earlierBody struct {
	f         Format
	req, resp string
}

// kserveFast is the KServe v1 fast path (fast.go).
var kserveFast = fastPath{
	request:  (*Parser).fastRequest,
	response: (*Parser).fastResponse,
	earlier: []earlierBody{
		{FormatKServeV1, `{"instances": [{"x": 1, "y": "z"}, [1, 2, 3, 4, 5]]}`, `{"predictions": [1, 2]}`},
	},
}

// check runs the fast path and the tree path on fresh Parsers and fails if the
// fast path does not decline and its result differs. It reports whether the fast
// path served the request and the response.
func (fp fastPath) check(t *testing.T, opts Options, f Format, req, resp []byte) (usedReq, usedResp bool) {
	t.Helper()
	wantReq, errReq := treeParse(opts, f, req, nil)
	want, wantErr := treeParse(opts, f, req, resp)

	p := NewParser(opts)
	var b Batch
	p.reset(len(req) + len(resp))
	usedReq = fp.request(p, f, req, &b)
	if !usedReq {
		require.Empty(t, b.Records, "a declined request left records")
		require.Empty(t, b.feats, "a declined request left features")
		require.Equal(t, FormatUnknown, b.Format)
		if fp.declinedRequest != nil {
			fp.declinedRequest(t, p, &b)
		}
	} else {
		require.NoError(t, errReq, "the fast path accepted a request the tree path rejects")
		requireSameBatch(t, wantReq, &b)
		if len(resp) > 0 {
			usedResp = fp.response(p, resp, &b)
			if usedResp {
				require.NoError(t, wantErr, "the fast path accepted a response the tree path rejects")
				requireSameBatch(t, want, &b)
			} else {
				requireSameBatch(t, wantReq, &b)
				if fp.declinedResponse != nil {
					fp.declinedResponse(t, &b)
				}
			}
		}
	}

	// Parse as a whole, on a Parser and Batch that held other bodies, agrees too.
	p = NewParser(opts)
	b = Batch{}
	for _, e := range fp.earlier {
		_ = p.Parse(e.f, []byte(e.req), []byte(e.resp), &b)
	}
	err := p.Parse(f, req, resp, &b)
	requireSameError(t, wantErr, err)
	requireSameBatch(t, want, &b)
	return usedReq, usedResp
}

func requireSameError(t *testing.T, want, got error) {
	t.Helper()
	if want == nil || got == nil {
		require.Equal(t, want == nil, got == nil, "error: want %v, got %v", want, got)
		return
	}
	var we, ge *Error
	require.True(t, errors.As(want, &we))
	require.True(t, errors.As(got, &ge))
	require.Equal(t, *we, *ge)
}

// requireSameBatch compares two Batches bit for bit, including NaN payloads, the
// sign of zero and whether names, strings and scores are nil. Whether an empty
// Record.Features is nil depends on the Batch's history, even on the tree path.
func requireSameBatch(t *testing.T, want, got *Batch) {
	t.Helper()
	require.Equal(t, want.Format, got.Format, "format")
	require.Equal(t, want.DroppedFeatures, got.DroppedFeatures, "dropped features")
	require.Equal(t, len(want.Records), len(got.Records), "records")
	for i := range want.Records {
		w, g := want.Records[i], got.Records[i]
		require.Equal(t, len(w.Features), len(g.Features), "record %d: features", i)
		for j := range w.Features {
			require.True(t, sameBytes(w.Features[j].Name, g.Features[j].Name),
				"record %d feature %d: name %q, want %q", i, j, g.Features[j].Name, w.Features[j].Name)
			requireSameValue(t, w.Features[j].Value, g.Features[j].Value, "record %d feature %d", i, j)
		}
		requireSameValue(t, w.Prediction, g.Prediction, "record %d prediction", i)
		require.Equal(t, w.Scores == nil, g.Scores == nil, "record %d: nil scores", i)
		require.Equal(t, len(w.Scores), len(g.Scores), "record %d: scores", i)
		for j := range w.Scores {
			require.Equal(t, math.Float64bits(w.Scores[j]), math.Float64bits(g.Scores[j]), "record %d score %d", i, j)
		}
		require.Equal(t, len(w.ScoreLabels), len(g.ScoreLabels), "record %d: score labels", i)
		for j := range w.ScoreLabels {
			require.True(t, sameBytes(w.ScoreLabels[j], g.ScoreLabels[j]), "record %d score label %d", i, j)
		}
		require.Equal(t, w.HasConfidence, g.HasConfidence, "record %d: has confidence", i)
		require.Equal(t, math.Float64bits(w.Confidence), math.Float64bits(g.Confidence), "record %d: confidence", i)
	}
}

func requireSameValue(t *testing.T, want, got Value, format string, args ...any) {
	t.Helper()
	where := fmt.Sprintf(format, args...)
	require.Equal(t, want.Kind, got.Kind, where)
	require.Equal(t, math.Float64bits(want.Num), math.Float64bits(got.Num), where)
	require.True(t, sameBytes(want.Str, got.Str), "%s: string %q, want %q", where, got.Str, want.Str)
}

// sameBytes reports whether a and b hold the same bytes and are both nil or both not.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// fastSeeds are bodies for the fast path: ones it serves, and near misses it must decline.
var fastSeeds = [][2]string{
	{`{"instances": [{"a": 1}]}`, `{"predictions": [{"sequence": "x", "labels": ["b", "a"], "scores": [0.6, 0.4]}]}`},
	{`{"instances": [{"a": 1}, {"a": 2}]}`, `{"predictions": [{"label": "POSITIVE", "score": 0.98}, {"Class": true, "probability": "x", "score": 0.5}]}`},
	{`{"instances": [{"a": 1}]}`, `{"predictions": [{"score": 1.5, "label": "a"}]}`},
	{`{"instances": [{"a": 1}]}`, `{"predictions": [[{"label": "a", "score": 0.25}, {"label": "b", "score": 0.75}]]}`},
	{`{"instances": [{"a": 1, "b": "x", "c": true, "d": false, "e": null}]}`, `{"predictions": [0.5]}`},
	{`{"instances": [{"a": 1}, {"a": -2.5e3, "b": ""}, {}]}`, `{"predictions": [1, "cat", null]}`},
	{`{"signature_name": "serving_default", "id": "r1", "parameters": {"k": [1, {"x": null}], "s": "v"}, "instances": [[1, 2, 3]]}`, `{"model_name": "m", "predictions": [[0.1, 0.9]]}`},
	{` { "instances" : [ { "" : 0 , "a b" : -0 } ] } `, " {\"predictions\":[true]}\n"},
	{"{\"instances\":\t[\r\n1,\n2]}", `{"predictions": [false, 0]}`},
	{`{"instances": []}`, `{"predictions": []}`},
	{`{"instances": [{"a": 1, "a": 2}]}`, `{"predictions": [1], "predictions": [2]}`},
	{`{"instances": [{"a\"b": 1}]}`, `{"predictions": ["\u00e9"]}`},
	{`{"instances": [{"a": "x\\y"}]}`, `{"error": "boom"}`},
	{`{"instances": [{"a": {"b": 1}}]}`, `{"predictions": [{"label": "x"}]}`},
	{`{"instances": [{"a": 1}, {"a": 2}]}`, `{"predictions": [{"probabilities": [0.1, 0.9], "LABEL": "b", "label": "c", "error": 1}, {"class": [7], "scores": [true, null], "x": {"y": [1]}}]}`},
	{`{"instances": [{"a": 1}, {"a": 2}]}`, `{"predictions": [[0.1, 0.9], [[0.3]]], "outputs": 1}`},
	{`{"instances": [[1], [2]]}`, `{"predictions": [[["a", 0.8], ["b", 0.2]], {"p0": 1, "p1": 2}]}`},
	{`{"instances": [[1], [2]]}`, `{"predictions": [{"value": [], "y": ["z", 1], "logits": [1, "a"]}, {"error": "e"}]}`},
	{`{"instances": [{"a": [1, 2]}]}`, `{"predictions": [[1]]}`},
	{`{"instances": [{"a": NaN, "b": Infinity, "c": -Infinity, "d": nan, "e": -inf}]}`, `{"predictions": [NaN]}`},
	{`{"instances": [{"a": 1.2.3, "b": 1e, "c": +1, "d": .5, "e": 01, "f": 1E+2, "g": -0.0}]}`, `{"predictions": [1e400]}`},
	{`{"instances": [{"a": 18446744073709551616123, "b": 0.1000000000000000055511151231257827}]}`, `{"predictions": [123456789012345678901234567890]}`},
	{`{"instances": [1, 2, 3, 4, 5]}`, `{"predictions": [1, 2, 3, 4, 5]}`},
	{`{"instances": [[1, 2, 3, 4]]}`, `{"predictions": [1, 2]}`},
	{`{"instances": [{"a": 1}], "inputs": [[1]]}`, `{"predictions": 1}`},
	{`{"instances": [{"a": 1}], "instances": [{"b": 2}]}`, `{"outputs": [1]}`},
	{`{"instances": [{"a": 1},]}`, `{"predictions": [1,]}`},
	{`{"instances": [{"a": 1}]} x`, `{"predictions": [1]} x`},
	{`{"instances": [{"a": tru}]}`, `{"predictions": [nul]}`},
	{`{"instances": [{"a": 1}]`, `{"predictions": [1]`},
	{`{"instances": [{"a": "Infinity"}], "x": Infinity}`, `{"predictions": ["Infinity"], "p": Infinity}`},
	{`{"data": [[1]], "columns": ["a"], "instances": [{"a": 1}]}`, `[1]`},
	{`{"dataframe_split": {"columns": ["a"], "data": [[1]]}, "instances": [{"a": 1}]}`, `{"predictions": [1]}`},
	{`{"instances": [{"a": 1}], "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`, `{"predictions": [1]}`},
	{"{\"instances\": [{\"a\": \"\x00\xff\"}]}", "{\"predictions\": [\"\x01\"]}"},
	{"{\"instances\": [{\"a\": 1}]}\x00", "{\"predictions\": [1]}\x0b"},
	{`{"instances": {"a": 1}}`, `{"predictions": [1]}`},
	{`[{"a": 1}]`, `[1]`},
	{`{"instances": "x"}`, ``},
	{`{}`, `{}`},
	{``, ``},
}

func FuzzKServeFastPath(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	for _, ff := range []Format{FormatKServeV1, FormatMLflow} {
		for _, s := range fuzzSeeds[ff] {
			f.Add([]byte(s[0]), []byte(s[1]))
		}
	}
	f.Add(kserveBenchReq, kserveBenchResp)
	if body, err := os.ReadFile("../../scripts/bench/kserve.json"); err == nil {
		f.Add(body, []byte(`{"predictions": [0.02]}`))
	}
	// Responses also meet requests of one to three instances, so that the fast
	// response path sees prediction counts that match.
	reqs := [][]byte{
		[]byte(`{"instances": [{"a": 1}]}`),
		[]byte(`{"instances": [{"a": 1}, {"a": 2}]}`),
		[]byte(`{"instances": [[1], [2], [3]]}`),
	}
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, opts := range fastOptions {
			for _, format := range fastFormats {
				kserveFast.check(t, opts, format, req, resp)
			}
			for _, r := range reqs {
				kserveFast.check(t, opts, FormatKServeV1, r, resp)
			}
		}
	})
}

// TestFastPathUsed checks that the fast path serves typical bodies, rather than
// declining them, and agrees with the tree path on them.
func TestFastPathUsed(t *testing.T) {
	benchFile, err := os.ReadFile("../../scripts/bench/kserve.json")
	require.NoError(t, err)
	iris := Options{FeatureNames: []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}}
	kserveFast.checkUsed(t, []usedCase{
		{name: "benchmark body", format: FormatKServeV1, req: string(kserveBenchReq), resp: string(kserveBenchResp), response: true},
		{name: "benchmark body detected", req: string(kserveBenchReq), resp: `{"predictions": ["fraud"]}`, response: true},
		{name: "scripts/bench/kserve.json", format: FormatKServeV1, req: string(benchFile), resp: `{"predictions": [0.02]}`, response: true},
		{name: "all scalar kinds", format: FormatKServeV1,
			req:  `{"instances": [{"a": 1, "b": "x", "c": true, "d": false, "e": null}, {"a": -2.5e-3, "b": "", "c": false}]}`,
			resp: `{"predictions": [1, "cat"]}`, response: true},
		{name: "iris arrays", opts: iris, format: FormatKServeV1,
			req:  `{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}`,
			resp: `{"predictions": [1, 1]}`, response: true},
		{name: "scalar instances", req: `{"instances": [1.0, 2.0, 5.0]}`, resp: `{"predictions": [3.5, 4.0, 5.5]}`, response: true},
		{name: "other fields", format: FormatKServeV1,
			req:  `{"id": "42", "signature_name": "serving_default", "parameters": {"top_k": 3, "labels": ["a", "b"]}, "instances": [{"x": 1}]}`,
			resp: `{"id": "42", "model_name": "m", "predictions": [0.7]}`, response: true},
		{name: "pretty printed", format: FormatKServeV1,
			req:  "{\n  \"instances\": [\n    {\n      \"x\": 1,\n\t\"y\": \"a b\"\r\n    }\n  ]\n}\n",
			resp: "{\n  \"predictions\": [\n    0.25\n  ]\n}\n", response: true},
		{name: "empty", format: FormatKServeV1, req: `{"instances": []}`, resp: `{"predictions": []}`, response: true},
		{name: "duplicate feature", format: FormatKServeV1, req: `{"instances": [{"x": 1, "x": 2}]}`, resp: `{"predictions": [null]}`, response: true},
		{name: "mlflow instances", format: FormatMLflow, req: `{"instances": [{"x": 1}], "params": {"k": 1}}`, resp: `{"predictions": [1]}`, response: true},
		{name: "no response", format: FormatKServeV1, req: `{"instances": [{"x": 1}]}`},
		{name: "object predictions", format: FormatKServeV1,
			req: `{"instances": [{"x": 1}, {"x": 2}, {"x": 3}]}`,
			resp: `{"predictions": [{"probabilities": [0.1, 0.9], "Label": "b", "label": "c", "error": {}},` +
				` {"scores": [true, false, null], "class": 7, "extra": {"k": [1]}}, {"value": [], "y": ["z"], "logits": [1, "a"]}]}`,
			response: true},
		{name: "array predictions", format: FormatKServeV1,
			req:  `{"instances": [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]}`,
			resp: `{"predictions": [[0.1, 0.9], [1], [], ["a", "b"]]}`, response: true},
		{name: "at the limits", opts: Options{MaxInstances: 2, MaxFeatures: 2}, format: FormatKServeV1,
			req: `{"instances": [{"x": 1, "y": 2}, [1, 2]]}`, resp: `{"predictions": [1, 2]}`, response: true},
	})
}

// usedCase is a body pair a fast path must serve.
type usedCase struct {
	name      string
	opts      Options
	format    Format
	req, resp string
	response  bool // the fast path serves the response too
}

// checkUsed checks that f serves each case's request, and its response when
// the case says so, agreeing with the tree path.
func (f fastPath) checkUsed(t *testing.T, cases []usedCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			usedReq, usedResp := f.check(t, tc.opts, tc.format, []byte(tc.req), []byte(tc.resp))
			require.True(t, usedReq, "the fast path declined the request")
			require.Equal(t, tc.response, usedResp, "the fast path served the response")
		})
	}
}

// TestFastPathDeclines checks that the fast path declines bodies it cannot read
// exactly as the tree path does, and that Parse still gives the tree path's result.
func TestFastPathDeclines(t *testing.T) {
	deep := `{"instances": [{"x": 1}], "x": ` + strings.Repeat("[", maxSkipDepth) + strings.Repeat("]", maxSkipDepth) + `}`
	requests := []struct {
		name   string
		opts   Options
		format Format
		req    string
	}{
		{name: "escape in key", req: `{"instances": [{"a\"b": 1}]}`},
		{name: "escape in string", req: `{"instances": [{"a": "\u00e9"}]}`},
		{name: "escaped top-level key", req: `{"instanc\u0065s": [{"a": 1}]}`},
		{name: "nested object", req: `{"instances": [{"a": {"b": 1}}]}`},
		{name: "nested array", req: `{"instances": [{"a": [1, 2]}]}`},
		{name: "array in array", req: `{"instances": [[[1, 2]]]}`},
		{name: "NaN", req: `{"instances": [{"a": NaN}]}`},
		{name: "nan", req: `{"instances": [{"a": nan}]}`},
		{name: "Infinity", req: `{"instances": [{"a": Infinity}]}`},
		{name: "-Infinity", req: `{"instances": [{"a": -Infinity}]}`},
		{name: "-inf", req: `{"instances": [[-inf]]}`},
		{name: "malformed number", req: `{"instances": [{"a": 1.2.3}]}`},
		{name: "plus sign", req: `{"instances": [{"a": +1}]}`},
		{name: "leading dot", req: `{"instances": [{"a": .5}]}`},
		{name: "lone minus", req: `{"instances": [{"a": -}]}`},
		{name: "number then word", req: `{"instances": [{"a": 1inf}]}`},
		{name: "too many instances", opts: Options{MaxInstances: 2}, req: `{"instances": [{"a": 1}, {"a": 2}, {"a": 3}]}`},
		{name: "too many features", opts: Options{MaxFeatures: 2}, req: `{"instances": [{"a": 1, "b": 2, "c": 3}]}`},
		{name: "too many positional features", opts: Options{MaxFeatures: 2}, req: `{"instances": [[1, 2, 3]]}`},
		{name: "inputs", req: `{"inputs": [[1]]}`},
		{name: "instances and inputs", req: `{"instances": [[1]], "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}`},
		{name: "examples", req: `{"examples": [{"x": 1}], "context": {"c": 1}}`},
		{name: "dataframe_split", format: FormatMLflow, req: `{"instances": [{"a": 1}], "dataframe_split": {"columns": ["a"], "data": [[1]]}}`},
		{name: "columns and data", req: `{"instances": [{"a": 1}], "columns": ["a"], "data": [[1]]}`},
		{name: "duplicate instances", req: `{"instances": [{"a": 1}], "instances": [{"b": 2}]}`},
		{name: "instances not an array", req: `{"instances": {"a": 1}}`},
		{name: "no instances", req: `{"id": "x"}`},
		{name: "empty object", req: `{}`},
		{name: "top-level array", format: FormatMLflow, req: `[{"a": 1}]`},
		{name: "empty body", req: ``},
		{name: "blank body", req: " \n"},
		{name: "trailing comma", req: `{"instances": [{"a": 1,}]}`},
		{name: "trailing garbage", req: `{"instances": [{"a": 1}]} x`},
		{name: "truncated", req: `{"instances": [{"a": 1}]`},
		{name: "bad literal", req: `{"instances": [{"a": tru}]}`},
		{name: "literal then word", req: `{"instances": [{"a": truex}]}`},
		{name: "control character as whitespace", req: "{\"instances\":\v[{\"a\": 1}]}"},
		{name: "escape in skipped field", req: `{"id": "a\"b", "instances": [{"a": 1}]}`},
		{name: "deep skipped field", req: deep},
		{name: "OIP format", format: FormatOIP, req: `{"instances": [{"a": 1}]}`},
		{name: "JSON format", format: FormatJSON, req: `{"instances": [{"a": 1}]}`},
	}
	for _, tc := range requests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.format
			if f == FormatUnknown {
				f = FormatKServeV1
			}
			usedReq, _ := kserveFast.check(t, tc.opts, f, []byte(tc.req), nil)
			require.False(t, usedReq, "the fast path served the request")
		})
	}

	responses := []struct {
		name string
		opts Options
		resp string
	}{
		{name: "label-score pairs", resp: `{"predictions": [[["a", 0.8], ["b", 0.2]], [["a", 0.1], ["b", 0.9]]]}`},
		{name: "nested array", resp: `{"predictions": [[[0.1, 0.9]], [1]]}`},
		{name: "object without prediction field", resp: `{"predictions": [{"p0": 0.1, "p1": 0.9}, {"p0": 1}]}`},
		{name: "empty object", resp: `{"predictions": [{}, {}]}`},
		{name: "error object", resp: `{"predictions": [{"error": "x"}, 1]}`},
		{name: "nested object", resp: `{"predictions": [{"label": {"name": "x"}}, 1]}`},
		{name: "malformed score", resp: `{"predictions": [{"label": "x", "scores": [0.1, 1.2.3]}, 1]}`},
		{name: "too few", resp: `{"predictions": [1]}`},
		{name: "too many", resp: `{"predictions": [1, 2, 3]}`},
		{name: "none", resp: `{"predictions": []}`},
		{name: "not an array", resp: `{"predictions": 1}`},
		{name: "outputs", resp: `{"outputs": [1, 2]}`},
		{name: "error", resp: `{"error": "boom"}`},
		{name: "NaN", resp: `{"predictions": [NaN, 1]}`},
		{name: "Infinity", resp: `{"predictions": [Infinity, 1]}`},
		{name: "malformed number", resp: `{"predictions": [1.2.3, 1]}`},
		{name: "escape", resp: `{"predictions": ["a\nb", 1]}`},
		{name: "duplicate predictions", resp: `{"predictions": [1, 2], "predictions": [3, 4]}`},
		{name: "bare array", resp: `[1, 2]`},
		{name: "blank", resp: " "},
		{name: "truncated", resp: `{"predictions": [1, 2]`},
		{name: "trailing garbage", resp: `{"predictions": [1, 2]}]`},
		{name: "object with Options.Output", opts: Options{Output: "label"}, resp: `{"predictions": [{"label": "x"}, {"label": "y"}]}`},
	}
	for _, tc := range responses {
		t.Run("response "+tc.name, func(t *testing.T) {
			usedReq, usedResp := kserveFast.check(t, tc.opts, FormatKServeV1, []byte(`{"instances": [{"a": 1}, {"a": 2}]}`), []byte(tc.resp))
			require.True(t, usedReq, "the fast path declined the request")
			require.False(t, usedResp, "the fast path served the response")
		})
	}
}
