package payload

import (
	"errors"
	"slices"
	"testing"
)

var fuzzSeeds = map[Format][][2]string{
	FormatKServeV1: {
		{`{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}`, `{"predictions": [1, 1]}`},
		{`{"instances": [1.0, 2.0, 5.0]}`, `{"predictions": [3.5, 4.0, 5.5]}`},
		{`{"instances": [{"tag": "foo", "signal": [1, 2, 3], "sensor": [[1, 2], [3, 4]]}]}`, `{"predictions": [{"label": "a", "scores": [0.9, 0.1]}]}`},
		{`{"inputs": {"tag": ["foo", "bar"], "signal": [[1, 2], [3, 4]]}}`, `{"outputs": {"classes": ["x", "y"], "probabilities": [[0.7, 0.3], [0.4, 0.6]]}}`},
		{`{"inputs": [[0.1, 0.2]]}`, `{"outputs": [[0.9]]}`},
		{`{"context": {"c": 1}, "examples": [{"x": 1}, {"x": 2}]}`, `{"result": [[["a", 0.8], ["b", 0.2]], [["a", 0.1], ["b", 0.9]]]}`},
		{`{"instances": [{"image": {"b64": "aW1n"}}]}`, `{"predictions": [{"p0": 0.1, "p1": NaN}]}`},
		{`{"instances": [[Infinity, -Infinity, NaN]]}`, `{"error": "boom"}`},
		{`{"instances": [1]}`, `[1]`},
	},
	FormatOIP: {
		{`{"id": "42", "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]}, {"name": "input1", "shape": [2], "datatype": "BOOL", "data": [true, false]}]}`,
			`{"id": "42", "outputs": [{"name": "output0", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 1.1, 2.0, 2.1]}]}`},
		{`{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}]}`,
			`{"model_name": "m", "parameters": {}, "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [1, 1]}]}`},
		{`{"parameters": {"content_type": "pd"}, "inputs": [{"name": "a", "shape": [2, 1], "datatype": "BYTES", "data": ["x", "y"]}, {"name": "b", "shape": [2], "datatype": "FP64", "data": [NaN, Infinity]}]}`,
			`{"outputs": [{"name": "label", "shape": [2], "datatype": "BYTES", "data": ["p", "q"]}, {"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]}`},
		{`{"inputs": [{"name": "x", "shape": [], "datatype": "BOOL", "data": 1}]}`, `{"outputs": [{"name": "label", "shape": [1, 1], "datatype": "BOOL", "data": [[false]]}]}`},
		{`{"inputs": [{"name": "x", "shape": [0, 3], "datatype": "FP16", "data": []}]}`, `{"error": "x"}`},
		// Triton's binary tensor data extension: the bytes follow the JSON.
		{`{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}, {"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}` +
			"\x00\x00\xc0\x3f\x00\x00\x00\xc0\x02\x00\x00\x00ab",
			`{"outputs": [{"name": "y", "shape": [1], "datatype": "FP16", "parameters": {"binary_data_size": 2}}]}` + "\x00\x3e"},
		{`{"inputs": [{"name": "x", "shape": [18446744073709551615, 2], "datatype": "FP32", "data": [1]}]}`, ``},
	},
	FormatMLflow: {
		// MLflow's scoring server also takes CSV.
		{"amount,country,new\n12.5,DE,True\n3,\"FR, Paris\",\n", `{"predictions": [0.1, 0.9]}`},
		{`{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}`, `{"predictions": [0, 1]}`},
		{`{"dataframe_split": {"index": [0], "columns": [0, "b", null], "data": [[1.5, "x", true]]}}`, `{"predictions": [{"label": "yes"}]}`},
		{`{"dataframe_records": [{"a": 1}, {"a": 2}], "params": {"k": 1}}`, `{"predictions": {"class": ["p", "q"], "score": [0.7, 0.2]}}`},
		{`{"inputs": [[1, 2], [3, 4]]}`, `{"predictions": [[0.1, 0.9], [0.6, 0.4]]}`},
		{`{"instances": [{"a": 1}]}`, `["yes"]`},
		{`{"columns": ["x"], "data": [[1]]}`, `[10.5]`},
		{`[{"x": 1}]`, `{"error_code": "BAD_REQUEST", "message": "m"}`},
	},
	FormatSeldon: {
		{`{"data": {"names": ["a", "b"], "ndarray": [[1, 2], [3, "x"]]}}`, `{"data": {"names": ["t:0", "t:1"], "ndarray": [[0.1, 0.9], [0.8, 0.2]]}, "meta": {"puid": "p"}}`},
		{`{"meta": {}, "data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3, 4]}}}`, `{"data": {"tensor": {"shape": [2, 1], "values": [0, 1]}}}`},
		{`{"jsonData": {"x": 1, "y": [1, 2]}}`, `{"jsonData": {"prediction": "a"}}`},
		{`{"strData": "hello"}`, `{"status": {"code": 500, "info": "boom", "status": "FAILURE"}}`},
		{`{"binData": "aGVsbG8="}`, `{"binData": "aGVsbG8="}`},
		// Seldon's Python wrapper takes a form too.
		{"--b\r\nContent-Disposition: form-data; name=\"binData\"; filename=\"x.png\"\r\n\r\n\x89PNG\r\n--b\r\n" +
			"Content-Disposition: form-data; name=\"data\"\r\n\r\n{\"ndarray\": [[1, 2]]}\r\n--b--\r\n", `{"data": {"ndarray": ["cat"]}}`},
		{`{"data": {"tensor": {"shape": [9223372036854775807, 9223372036854775807], "values": []}}}`, ``},
		{`{"data": {"names": ["a"], "tftensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "2"}, {"size": "1"}]}, "floatVal": [1, "NaN"]}}}`,
			`{"data": {"tftensor": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": 2}]}, "string_val": ["eWVz", "bm8="]}}}`},
		{`{"data": {"tftensor": {"dtype": 9, "tensorContent": "AQAAAAAAAAA=", "tensorShape": {"dim": [{"size": "1"}]}}}}`, ``},
	},
	FormatJSON: {
		{`{"age": 42, "city": "Oslo", "member": true, "referrer": null}`, `0.87`},
		{`{"user": {"age": 42, "geo": {"country": "NO"}}, "tags": ["a", "b"]}`, `{"prediction": "churn", "probabilities": [0.3, 0.7]}`},
		{`[{"x": 1}, {"x": 2}]`, `{"predictions": ["a", "b"], "probabilities": [[0.9, 0.1], [0.2, 0.8]]}`},
		{`[[1, 2], [3, 4]]`, `[0.1, 0.2]`},
		{`{"x": Infinity, "y": "Infinity"}`, `[0.2, 0.5, 0.3]`},
		{`{"caf\u00e9": "a\"b"}`, `{"label": "\u00e9"}`},
		{`{"x": 1}`, `{"a": "p", "b": "q"}`},
		// Generative models: whole answers and streams of server-sent events.
		{`{"model": "m", "messages": [{"role": "user", "content": "Hi"}]}`, `{"choices": [{"index": 0, "message": {"content": "Hello"}, "finish_reason": "stop"}]}`},
		{`{"text_input": "Hi"}`, "data: {\"text_output\": \"He\"}\n\ndata: {\"text_output\": \"llo\"}\n\n"},
		{`{"prompt": "Hi"}`, ": ping\r\n\r\nid: 1\r\ndata: {\"choices\": [{\"index\": 0,\r\ndata: \"finish_reason\": \"length\"}]}\r\n\r\ndata: [DONE]\r\n\r\n"},
		{`{"model": "llama3", "prompt": "Hi"}`, "{\"response\": \"a\", \"done\": false}\n{\"response\": \"\", \"done\": true, \"done_reason\": \"stop\", \"eval_count\": 1}\n"},
	},
}

// fuzzParsers returns a Parser with small limits (to exercise them) and one with defaults.
func fuzzParsers() []*Parser {
	return []*Parser{
		NewParser(Options{MaxInstances: 4, MaxFeatures: 3, FeatureNames: []string{"a", "b"}, Output: "label"}),
		NewParser(Options{}),
	}
}

func fuzzFormat(f *testing.F, format Format) {
	for _, ff := range []Format{FormatKServeV1, FormatOIP, FormatMLflow, FormatSeldon, FormatJSON} {
		for _, s := range fuzzSeeds[ff] {
			if ff == format || format == FormatUnknown {
				f.Add([]byte(s[0]), []byte(s[1]))
			}
		}
	}
	parsers := fuzzParsers()
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, p := range parsers {
			checkParse(t, p, format, req, resp)
		}
	})
}

// checkParse parses req and resp and checks the invariants that hold for any input.
func checkParse(t *testing.T, p *Parser, format Format, req, resp []byte) {
	origReq, origResp := slices.Clone(req), slices.Clone(resp)
	var b Batch
	err := p.Parse(format, req, resp, &b)
	if !slices.Equal(req, origReq) || !slices.Equal(resp, origResp) {
		t.Fatal("Parse modified its input")
	}
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not *Error", err)
		}
		if !slices.Contains(Reasons(), pe.Reason) {
			t.Fatalf("reason %q is not in Reasons()", pe.Reason)
		}
		if !pe.Response && len(b.Records) != 0 {
			t.Fatalf("request error %v left %d records", err, len(b.Records))
		}
		if pe.Response {
			for _, r := range b.Records {
				if r.Prediction.Kind != KindMissing || r.Scores != nil {
					t.Fatalf("response error %v left a prediction", err)
				}
			}
		}
	}
	features, scores := 0, 0
	for _, r := range b.Records {
		features += len(r.Features)
		scores += len(r.Scores)
	}
	// A TensorProto with fewer values than its shape is filled out, as
	// TensorFlow reads it, within a budget per message (tfMaxFill): those
	// elements come on top of what the bytes hold.
	if features > 2*len(req)+4096+p.filled {
		t.Fatalf("%d features from a %d-byte request and %d elements filled", features, len(req), p.filled)
	}
	if scores > len(resp)+p.filled {
		t.Fatalf("%d scores from a %d-byte response and %d elements filled", scores, len(resp), p.filled)
	}
	if len(b.Records) > p.maxInstances {
		t.Fatalf("%d records, more than MaxInstances %d", len(b.Records), p.maxInstances)
	}
	for i, r := range b.Records {
		if len(r.Features) > p.maxFeatures {
			t.Fatalf("record %d has %d features, more than MaxFeatures %d", i, len(r.Features), p.maxFeatures)
		}
		if r.Scores != nil && len(r.Scores) == 0 {
			t.Fatalf("record %d has empty non-nil Scores", i)
		}
		for _, f := range r.Features {
			if f.Name == nil || f.Value.Kind > KindBool {
				t.Fatalf("record %d has a bad feature %+v", i, f)
			}
		}
		if r.Prediction.Kind > KindBool {
			t.Fatalf("record %d has a bad prediction %+v", i, r.Prediction)
		}
	}
	if limit := 5*len(req) + 4096; len(p.names) > limit {
		t.Fatalf("name arena holds %d bytes for a %d-byte body", len(p.names), len(req))
	}

	// Parsing is deterministic, whatever the Parser and Batch parsed before.
	want := plain(&b)
	_ = p.Parse(FormatJSON, []byte(`{"x": {"y": [1, 2]}, "z": "s"}`), []byte(`{"prediction": [0.5, 0.5]}`), &b)
	err2 := p.Parse(format, req, resp, &b)
	if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
		t.Fatalf("second parse returned %v, first %v", err2, err)
	}
	if got := plain(&b); !equalPlain(got, want) {
		t.Fatalf("second parse gave %+v, first %+v", got, want)
	}
}

func equalPlain(a, b plainBatch) bool {
	if a.Format != b.Format || a.Dropped != b.Dropped || len(a.Records) != len(b.Records) {
		return false
	}
	for i := range a.Records {
		x, y := a.Records[i], b.Records[i]
		if x.Prediction != y.Prediction || x.Scores != y.Scores || !slices.Equal(x.Features, y.Features) {
			return false
		}
	}
	return true
}

func FuzzKServeV1(f *testing.F) { fuzzFormat(f, FormatKServeV1) }

func FuzzOIP(f *testing.F) { fuzzFormat(f, FormatOIP) }

func FuzzMLflow(f *testing.F) { fuzzFormat(f, FormatMLflow) }

func FuzzJSON(f *testing.F) { fuzzFormat(f, FormatJSON) }

func FuzzSeldon(f *testing.F) { fuzzFormat(f, FormatSeldon) }

// FuzzDetect parses with format detection, and runs DetectPath on the request as a path.
func FuzzDetect(f *testing.F) {
	f.Add([]byte("/v2/models/m/versions/1/infer"), []byte(nil))
	f.Add([]byte("/v1/models/m:predict?x"), []byte(nil))
	f.Add([]byte("/invocations"), []byte(nil))
	f.Add([]byte("/seldon/ns/iris/api/v1.0/predictions"), []byte(nil))
	for _, seeds := range fuzzSeeds {
		for _, s := range seeds {
			f.Add([]byte(s[0]), []byte(s[1]))
		}
	}
	parsers := fuzzParsers()
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		if got := DetectPath(req); got > FormatJSON && got != FormatSeldon {
			t.Fatalf("DetectPath returned %d", got)
		}
		for _, p := range parsers {
			checkParse(t, p, FormatUnknown, req, resp)
		}
	})
}
