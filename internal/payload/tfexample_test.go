package payload

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// tfNew is a new message of tfMessages; set sets a field of a message by
// name, and appendTo appends to a repeated one.
func tfNew(name string) *dynamicpb.Message {
	return dynamicpb.NewMessage(tfMessages.Messages().ByName(protoreflect.Name(name)))
}

func set(m *dynamicpb.Message, field string, v protoreflect.Value) *dynamicpb.Message {
	m.Set(m.Descriptor().Fields().ByName(protoreflect.Name(field)), v)
	return m
}

func appendTo(m *dynamicpb.Message, field string, v protoreflect.Value) {
	m.Mutable(m.Descriptor().Fields().ByName(protoreflect.Name(field))).List().Append(v)
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	return b
}

// tfExample is a tf.Example with the features of ex: a float64 is a
// FloatList of one value (so it must be a float32), an int an Int64List, a
// string a BytesList; a []float64, []int or []string a list of several.
func tfExample(ex map[string]any) *dynamicpb.Message {
	features := tfNew("Features")
	fmap := features.Mutable(features.Descriptor().Fields().ByName("feature")).Map()
	for name, v := range ex {
		list := func(kind string, vals ...protoreflect.Value) *dynamicpb.Message {
			l := tfNew(kind)
			l.Mutable(l.Descriptor().Fields().ByName("value")) // an empty list is still there
			for _, v := range vals {
				appendTo(l, "value", v)
			}
			return set(tfNew("Feature"), map[string]string{"FloatList": "float_list", "Int64List": "int64_list", "BytesList": "bytes_list"}[kind],
				protoreflect.ValueOfMessage(l))
		}
		var f *dynamicpb.Message
		switch v := v.(type) {
		case float64:
			f = list("FloatList", protoreflect.ValueOfFloat32(float32(v)))
		case int:
			f = list("Int64List", protoreflect.ValueOfInt64(int64(v)))
		case string:
			f = list("BytesList", protoreflect.ValueOfBytes([]byte(v)))
		case []float64:
			var vals []protoreflect.Value
			for _, x := range v {
				vals = append(vals, protoreflect.ValueOfFloat32(float32(x)))
			}
			f = list("FloatList", vals...)
		case []int:
			var vals []protoreflect.Value
			for _, x := range v {
				vals = append(vals, protoreflect.ValueOfInt64(int64(x)))
			}
			f = list("Int64List", vals...)
		case []string:
			var vals []protoreflect.Value
			for _, x := range v {
				vals = append(vals, protoreflect.ValueOfBytes([]byte(x)))
			}
			f = list("BytesList", vals...)
		default:
			panic("tfExample: " + name)
		}
		fmap.Set(protoreflect.ValueOfString(name).MapKey(), protoreflect.ValueOfMessage(f))
	}
	return set(tfNew("Example"), "features", protoreflect.ValueOfMessage(features))
}

// exampleRequest encodes the request of a call of format f on the examples
// of model, with their context when it is not nil.
func exampleRequest(t testing.TB, f Format, model string, examples []map[string]any, context map[string]any) []byte {
	t.Helper()
	var list *dynamicpb.Message
	kind := "example_list"
	if context != nil {
		list, kind = tfNew("ExampleListWithContext"), "example_list_with_context"
		set(list, "context", protoreflect.ValueOfMessage(tfExample(context)))
	} else {
		list = tfNew("ExampleList")
	}
	for _, ex := range examples {
		appendTo(list, "examples", protoreflect.ValueOfMessage(tfExample(ex)))
	}
	input := set(tfNew("Input"), kind, protoreflect.ValueOfMessage(list))
	spec := set(tfNew("ModelSpec"), "name", protoreflect.ValueOfString(model))
	var m *dynamicpb.Message
	switch f {
	case FormatTFServingClassifyGRPC:
		m = set(tfNew("ClassificationRequest"), "model_spec", protoreflect.ValueOfMessage(spec))
	case FormatTFServingRegressGRPC:
		m = set(tfNew("RegressionRequest"), "model_spec", protoreflect.ValueOfMessage(spec))
	default:
		m = tfNew("MultiInferenceRequest")
		for _, method := range []string{"tensorflow/serving/classify", "tensorflow/serving/regress"} {
			task := set(tfNew("InferenceTask"), "model_spec", protoreflect.ValueOfMessage(spec))
			appendTo(m, "tasks", protoreflect.ValueOfMessage(set(task, "method_name", protoreflect.ValueOfString(method))))
		}
	}
	return marshal(t, set(m, "input", protoreflect.ValueOfMessage(input)))
}

// class is a class of a classification: its label and score.
type class struct {
	label string
	score float64
}

// classificationResult has a Classifications per example.
func classificationResult(examples ...[]class) *dynamicpb.Message {
	r := tfNew("ClassificationResult")
	for _, classes := range examples {
		c := tfNew("Classifications")
		for _, cl := range classes {
			m := set(tfNew("Class"), "label", protoreflect.ValueOfString(cl.label))
			appendTo(c, "classes", protoreflect.ValueOfMessage(set(m, "score", protoreflect.ValueOfFloat32(float32(cl.score)))))
		}
		appendTo(r, "classifications", protoreflect.ValueOfMessage(c))
	}
	return r
}

// regressionResult has a Regression per example.
func regressionResult(values ...float64) *dynamicpb.Message {
	r := tfNew("RegressionResult")
	for _, v := range values {
		appendTo(r, "regressions", protoreflect.ValueOfMessage(set(tfNew("Regression"), "value", protoreflect.ValueOfFloat32(float32(v)))))
	}
	return r
}

// response encodes a ClassificationResponse or RegressionResponse of result.
func response(t testing.TB, name string, result *dynamicpb.Message) []byte {
	t.Helper()
	return marshal(t, set(tfNew(name), "result", protoreflect.ValueOfMessage(result)))
}

// multiResponse encodes a MultiInferenceResponse of the results, each a
// ClassificationResult or a RegressionResult.
func multiResponse(t testing.TB, results ...*dynamicpb.Message) []byte {
	t.Helper()
	m := tfNew("MultiInferenceResponse")
	for _, r := range results {
		field := "regression_result"
		if r.Descriptor().Name() == "ClassificationResult" {
			field = "classification_result"
		}
		appendTo(m, "results", protoreflect.ValueOfMessage(set(tfNew("InferenceResult"), field, protoreflect.ValueOfMessage(r))))
	}
	return marshal(t, m)
}

// sortedFeatures is b's records with their features in name order.
func sortedFeatures(b *Batch) []plainRecord {
	recs := plain(b).Records
	for _, r := range recs {
		slices.Sort(r.Features)
	}
	return recs
}

// A Classify or Regress call gives the records that the REST API's
// classify or regress gives for the same examples, in the order of their
// names (its "examples" and "context", its "results").
func TestTFServingExamplesMatchREST(t *testing.T) {
	for _, tc := range []struct {
		name     string
		examples []map[string]any
		context  map[string]any
		classes  [][]class // else regressions
		values   []float64
	}{
		{name: "numbers, strings and lists, classified",
			examples: []map[string]any{
				{"age": 42, "income": 1250.5, "city": "Oslo", "hist": []float64{1, 2.5, -3}},
				{"age": 1 << 40, "income": -0.125, "city": "", "hist": []float64{}, "tags": []string{"a", "b"}, "ids": []int{7, 8}},
			},
			classes: [][]class{{{"no", 0.25}, {"yes", 0.75}}, {{"no", 0.5}, {"yes", 0.5}}}},
		{name: "a context, regressed",
			examples: []map[string]any{{"x": 1.5}, {"x": 2.5, "y": "b"}, {}},
			context:  map[string]any{"country": "NO", "segment": 3, "w": []int{1, 2}},
			values:   []float64{0.5, 0, -7.25}},
		{name: "scores without labels, and a class alone",
			examples: []map[string]any{{"x": 1.0}, {"x": 2.0}},
			classes:  [][]class{{{"", 0.125}, {"", 0.875}}, {{"only", 0}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, name := FormatTFServingRegressGRPC, "RegressionResponse"
			result := regressionResult(tc.values...)
			var restResults any = tc.values
			if tc.classes != nil {
				f, name = FormatTFServingClassifyGRPC, "ClassificationResponse"
				result = classificationResult(tc.classes...)
				var pairs [][][]any
				for _, cs := range tc.classes {
					var p [][]any
					for _, c := range cs {
						p = append(p, []any{c.label, c.score})
					}
					pairs = append(pairs, p)
				}
				restResults = pairs
			}
			body := map[string]any{"examples": tc.examples}
			if tc.context != nil {
				body["context"] = tc.context
			}
			restReq, err := json.Marshal(body)
			require.NoError(t, err)
			restResp, err := json.Marshal(map[string]any{"results": restResults})
			require.NoError(t, err)
			var rest, grpc Batch
			require.NoError(t, NewParser(Options{}).Parse(FormatKServeV1, restReq, restResp, &rest))
			require.NoError(t, NewParser(Options{}).Parse(f, exampleRequest(t, f, "m", tc.examples, tc.context), response(t, name, result), &grpc))
			require.Equal(t, f, grpc.Format)
			require.Equal(t, sortedFeatures(&rest), sortedFeatures(&grpc))
			require.Equal(t, rest.DroppedFeatures, grpc.DroppedFeatures)
		})
	}
}

// exampleList encodes a request whose ExampleList holds examples given as
// their bytes.
func exampleList(examples ...[]byte) []byte {
	var list []byte
	for _, ex := range examples {
		list = protowire.AppendTag(list, listExamples, protowire.BytesType)
		list = protowire.AppendBytes(list, ex)
	}
	input := protowire.AppendTag(nil, inputExampleList, protowire.BytesType)
	input = protowire.AppendBytes(input, list)
	msg := protowire.AppendTag(nil, exRequestInput, protowire.BytesType)
	return protowire.AppendBytes(msg, input)
}

func TestTFServingExamples(t *testing.T) {
	two := []map[string]any{{"x": 1.0}, {"x": 2.0}}
	classify := exampleRequest(t, FormatTFServingClassifyGRPC, "m", two, nil)
	regress := exampleRequest(t, FormatTFServingRegressGRPC, "m", two, nil)
	multi := exampleRequest(t, FormatTFServingMultiInferenceGRPC, "m", two, nil)
	unanswered := []plainRecord{rec("null", "", "x=1"), rec("null", "", "x=2")}
	labels := classificationResult([]class{{"cat", 0.25}, {"dog", 0.75}}, []class{{"cat", 0.5}, {"dog", 0.5}})
	values := regressionResult(1.5, -2)
	classified := []plainRecord{rec(`"dog"`, "0.25 0.75", "x=1"), rec(`"cat"`, "0.5 0.5", "x=2")}

	// An example sent in two parts is merged, as protobuf merges a
	// message: the entries of its map add up, the last of a name counts.
	part1 := marshal(t, tfExample(map[string]any{"a": 1.0, "b": 2.0}))
	part2 := marshal(t, tfExample(map[string]any{"b": 5.0, "c": 3.0}))
	// A FloatList whose values are varints, and an Example that is cut short.
	wrongType := marshal(t, tfExample(map[string]any{"x": 1}))
	int64List := []byte{byte(protowire.EncodeTag(featureInt64List, protowire.BytesType)), 3, 0x0a, 1, 1}
	require.Equal(t, int64List, wrongType[len(wrongType)-len(int64List):], "an Int64List of one value, packed")
	wrongType[len(wrongType)-len(int64List)+2] = byte(protowire.EncodeTag(listValues, protowire.VarintType))
	wrongType[len(wrongType)-len(int64List)] = byte(protowire.EncodeTag(featureFloatList, protowire.BytesType))
	cut := marshal(t, tfExample(map[string]any{"x": 1.0}))
	cut = cut[:len(cut)-1]
	// A feature with no kind has no value.
	noKind := tfNew("Features")
	noKind.Mutable(noKind.Descriptor().Fields().ByName("feature")).Map().
		Set(protoreflect.ValueOfString("x").MapKey(), protoreflect.ValueOfMessage(tfNew("Feature")))
	empty := marshal(t, set(tfNew("Example"), "features", protoreflect.ValueOfMessage(noKind)))

	t.Run("classify", func(t *testing.T) {
		runProtoCases(t, FormatTFServingClassifyGRPC, []protoCase{
			{"classified", classify, response(t, "ClassificationResponse", labels), classified, ""},
			{"no response", classify, nil, unanswered, ""},
			{"the context gives way to the example", exampleRequest(t, FormatTFServingClassifyGRPC, "m",
				[]map[string]any{{"b": 5.0, "c": 3.0}, {"z": "s"}}, map[string]any{"a": 1.0, "b": 2.0}), nil,
				[]plainRecord{rec("null", "", "a=1", "b=5", "c=3"), rec("null", "", "a=1", "b=2", "z=\"s\"")}, ""},
			{"an example in two parts", exampleList(append(part1, part2...)), nil,
				[]plainRecord{rec("null", "", "a=1", "b=5", "c=3")}, ""},
			{"a feature with no kind", exampleList(empty), nil, []plainRecord{rec("null", "")}, ""},
			{"labels alone", classify, response(t, "ClassificationResponse",
				classificationResult([]class{{"top", 0}, {"second", 0}}, []class{})),
				[]plainRecord{rec(`"top"`, "0 0", "x=1"), rec("null", "", "x=2")}, ""},
			{"no examples", exampleRequest(t, FormatTFServingClassifyGRPC, "m", nil, nil), nil, nil, ReasonMissingField},
			{"no input", []byte{0x0a, 0x01, 'm'}, nil, nil, ReasonMissingField},
			{"a request that is no protobuf", []byte{0x12, 0x05, 1}, nil, nil, ReasonInvalidProtobuf},
			{"an example cut short", exampleList(cut), nil, nil, ReasonInvalidProtobuf},
			{"a list of the wrong wire type", exampleList(wrongType), nil, nil, ReasonTypeMismatch},
			{"a classification short", classify, response(t, "ClassificationResponse",
				classificationResult([]class{{"cat", 1}})), unanswered, ReasonShapeMismatch},
			{"a response that is no protobuf", classify, []byte{0x0a, 0x05, 1}, unanswered, ReasonInvalidResponse},
		})
	})
	t.Run("regress", func(t *testing.T) {
		runProtoCases(t, FormatTFServingRegressGRPC, []protoCase{
			{"regressed", regress, response(t, "RegressionResponse", values),
				[]plainRecord{rec("1.5", "", "x=1"), rec("-2", "", "x=2")}, ""},
			// proto3 leaves a value of 0 out: an empty Regression is 0.
			{"a value of 0", regress, response(t, "RegressionResponse", regressionResult(0, 0)),
				[]plainRecord{rec("0", "", "x=1"), rec("0", "", "x=2")}, ""},
			{"no result", regress, []byte{}, unanswered, ""},
			{"an empty result", regress, response(t, "RegressionResponse", regressionResult()), unanswered, ReasonShapeMismatch},
		})
	})
	t.Run("multi inference", func(t *testing.T) {
		runProtoCases(t, FormatTFServingMultiInferenceGRPC, []protoCase{
			// The first result gives the prediction, a classification the scores.
			{"classified, then regressed", multi, multiResponse(t, labels, values), classified, ""},
			{"regressed, then classified", multi, multiResponse(t, values, labels),
				[]plainRecord{rec("1.5", "0.25 0.75", "x=1"), rec("-2", "0.5 0.5", "x=2")}, ""},
			// A response with no results is empty, which is no response.
			{"an empty response", multi, multiResponse(t), unanswered, ""},
			{"no results", multi, []byte{0x10, 0x01}, unanswered, ReasonMissingField},
			{"a result short", multi, multiResponse(t, labels, regressionResult(1)), unanswered, ReasonShapeMismatch},
		})
	})
}

// A context copied into every example counts against the parser's copy
// budget, as the REST API's does: past it, the examples go without.
func TestTFServingExamplesContextBudget(t *testing.T) {
	context := map[string]any{}
	for i := 0; i < 1000; i++ {
		context["c"+strconv.Itoa(i)] = 1.0
	}
	examples := make([]map[string]any, 100)
	for i := range examples {
		examples[i] = map[string]any{"x": float64(i)}
	}
	req := exampleRequest(t, FormatTFServingRegressGRPC, "m", examples, context)
	var b Batch
	require.NoError(t, NewParser(Options{}).Parse(FormatTFServingRegressGRPC, req, nil, &b))
	require.Len(t, b.Records, 100)
	with := 0
	for _, r := range b.Records {
		switch len(r.Features) {
		case 1001:
			with++
		case 1:
		default:
			t.Fatalf("a record of %d features", len(r.Features))
		}
	}
	require.Positive(t, with)
	require.Less(t, with, 100)
	require.Equal(t, (100-with)*1000, b.DroppedFeatures)
	// The budget is the request's size and 4096 more.
	require.Equal(t, (len(req)+4096)/1000, with)
}

func TestTFRequestModelMultiInference(t *testing.T) {
	model, version := TFRequestModel(FormatTFServingMultiInferenceGRPC, exampleRequest(t, FormatTFServingMultiInferenceGRPC, "ranker", []map[string]any{{"x": 1.0}}, nil))
	require.Equal(t, "ranker", string(model))
	require.Nil(t, version)
	model, _ = TFRequestModel(FormatTFServingClassifyGRPC, exampleRequest(t, FormatTFServingClassifyGRPC, "churn", []map[string]any{{"x": 1.0}}, nil))
	require.Equal(t, "churn", string(model))
	model, _ = TFRequestModel(FormatTFServingMultiInferenceGRPC, []byte{0x0a, 0x03, 0x0a, 0x01})
	require.Nil(t, model)
}

func FuzzTFServingExamples(f *testing.F) {
	ex := []map[string]any{{"x": 1.0, "s": "a", "l": []int{1, 2}}, {"x": 2.0}}
	f.Add(uint8(0), exampleRequest(f, FormatTFServingClassifyGRPC, "m", ex, map[string]any{"c": 3}),
		response(f, "ClassificationResponse", classificationResult([]class{{"a", 0.5}}, []class{{"b", 1}})))
	f.Add(uint8(1), exampleRequest(f, FormatTFServingRegressGRPC, "m", ex, nil), response(f, "RegressionResponse", regressionResult(1, 2)))
	f.Add(uint8(2), exampleRequest(f, FormatTFServingMultiInferenceGRPC, "m", ex, nil),
		multiResponse(f, regressionResult(1, 2), classificationResult([]class{{"a", 0.5}}, []class{})))
	parsers := fuzzParsers()
	formats := []Format{FormatTFServingClassifyGRPC, FormatTFServingRegressGRPC, FormatTFServingMultiInferenceGRPC}
	f.Fuzz(func(t *testing.T, kind uint8, req, resp []byte) {
		format := formats[int(kind)%len(formats)]
		for _, p := range parsers {
			checkParse(t, p, format, req, resp)
		}
		TFRequestModel(format, req)
	})
}

func BenchmarkTFServingClassify(b *testing.B) {
	ex := map[string]any{}
	for i := 0; i < 20; i++ {
		ex["f"+strconv.Itoa(i)] = float64(i) + 0.5
	}
	benchmarkParse(b, FormatTFServingClassifyGRPC, exampleRequest(b, FormatTFServingClassifyGRPC, "fraud", []map[string]any{ex}, nil),
		response(b, "ClassificationResponse", classificationResult([]class{{"no", 0.25}, {"yes", 0.75}})))
}
