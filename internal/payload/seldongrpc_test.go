package payload

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// seldonMessages is Seldon Core 1's SeldonMessage and the messages it
// holds, described field by field as proto/prediction.proto has them
// (a oneof's fields declared as plain fields: they encode the same), with
// google.protobuf.Value and ListValue from the protobuf module's own
// struct.proto: an encoder the parser does not share.
var seldonMessages = func() protoreflect.FileDescriptor {
	const (
		str, byt, msg = descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_BYTES, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		i32, f64, enm = descriptorpb.FieldDescriptorProto_TYPE_INT32, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, descriptorpb.FieldDescriptorProto_TYPE_ENUM
	)
	field := descField
	return testFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("seldon_test.proto"), Package: proto.String("seldon.protos"), Syntax: proto.String("proto3"),
		Dependency: []string{"google/protobuf/struct.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("StatusFlag"), Value: []*descriptorpb.EnumValueDescriptorProto{
			{Name: proto.String("SUCCESS"), Number: proto.Int32(0)}, {Name: proto.String("FAILURE"), Number: proto.Int32(1)}}}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Status"), Field: []*descriptorpb.FieldDescriptorProto{field("code", 1, i32, false, ""), field("info", 2, str, false, ""),
				field("reason", 3, str, false, ""), field("status", 4, enm, false, ".seldon.protos.StatusFlag")}},
			{Name: proto.String("Meta"), Field: []*descriptorpb.FieldDescriptorProto{field("puid", 1, str, false, "")}},
			{Name: proto.String("Tensor"), Field: []*descriptorpb.FieldDescriptorProto{field("shape", 1, i32, true, ""), field("values", 2, f64, true, "")}},
			{Name: proto.String("DefaultData"), Field: []*descriptorpb.FieldDescriptorProto{field("names", 1, str, true, ""),
				field("tensor", 2, msg, false, ".seldon.protos.Tensor"), field("ndarray", 3, msg, false, ".google.protobuf.ListValue")}},
			{Name: proto.String("SeldonMessage"), Field: []*descriptorpb.FieldDescriptorProto{field("status", 1, msg, false, ".seldon.protos.Status"),
				field("meta", 2, msg, false, ".seldon.protos.Meta"), field("data", 3, msg, false, ".seldon.protos.DefaultData"),
				field("binData", 4, byt, false, ""), field("strData", 5, str, false, ""), field("jsonData", 6, msg, false, ".google.protobuf.Value")}},
		},
	})
}()

// seldonProto encodes the JSON SeldonMessage js as its protobuf.
func seldonProto(t testing.TB, js string) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(js), &m))
	newMsg := func(name string) *dynamicpb.Message {
		return dynamicpb.NewMessage(seldonMessages.Messages().ByName(protoreflect.Name(name)))
	}
	sm := newMsg("SeldonMessage")
	if st, ok := m["status"].(map[string]any); ok {
		s := newMsg("Status")
		set(s, "code", protoreflect.ValueOfInt32(int32(st["code"].(float64))))
		if st["status"] == "FAILURE" {
			set(s, "status", protoreflect.ValueOfEnum(1))
		}
		set(sm, "status", protoreflect.ValueOfMessage(s))
	}
	if meta, ok := m["meta"].(map[string]any); ok && meta["puid"] != nil {
		puid := meta["puid"].(string)
		set(sm, "meta", protoreflect.ValueOfMessage(set(newMsg("Meta"), "puid", protoreflect.ValueOfString(puid))))
	}
	if d, ok := m["data"].(map[string]any); ok {
		dd := newMsg("DefaultData")
		names, _ := d["names"].([]any)
		for _, n := range names {
			appendTo(dd, "names", protoreflect.ValueOfString(n.(string)))
		}
		if nd, ok := d["ndarray"].([]any); ok {
			l, err := structpb.NewList(nd)
			require.NoError(t, err)
			set(dd, "ndarray", protoreflect.ValueOfMessage(l.ProtoReflect()))
		}
		if tn, ok := d["tensor"].(map[string]any); ok {
			tm := newMsg("Tensor")
			for _, s := range tn["shape"].([]any) {
				appendTo(tm, "shape", protoreflect.ValueOfInt32(int32(s.(float64))))
			}
			for _, v := range tn["values"].([]any) {
				f, ok := v.(float64)
				if !ok { // JSON has no NaN: the cases spell it as a string
					f = map[string]float64{"NaN": math.NaN(), "inf": math.Inf(1), "-inf": math.Inf(-1)}[v.(string)]
				}
				appendTo(tm, "values", protoreflect.ValueOfFloat64(f))
			}
			set(dd, "tensor", protoreflect.ValueOfMessage(tm))
		}
		set(sm, "data", protoreflect.ValueOfMessage(dd))
	}
	if j, ok := m["jsonData"]; ok {
		v, err := structpb.NewValue(j)
		require.NoError(t, err)
		set(sm, "jsonData", protoreflect.ValueOfMessage(v.ProtoReflect()))
	}
	if s, ok := m["strData"].(string); ok {
		set(sm, "strData", protoreflect.ValueOfString(s))
	}
	return marshal(t, sm)
}

// Seldon's gRPC messages give the records their JSON form gives.
func TestSeldonGRPCMatchesJSON(t *testing.T) {
	for _, tc := range []struct{ name, req, resp string }{
		{"ndarray with names", `{"data": {"names": ["a", "b", "c", "d"], "ndarray": [[1.5, "x", true, null], [-2, "y", false, null]]}}`,
			`{"meta": {"puid": "p"}, "data": {"names": ["t:0", "t:1"], "ndarray": [[0.25, 0.75], [0.5, 0.5]]}}`},
		{"ndarray of scalars", `{"data": {"ndarray": [1, 2, 3]}}`, `{"data": {"ndarray": ["a", "b", "c"]}}`},
		{"nested rows", `{"data": {"ndarray": [[[1, 2], [3, 4]]]}}`, `{"data": {"ndarray": [[1]]}}`},
		{"tensor", `{"data": {"names": ["x", "y"], "tensor": {"shape": [2, 2], "values": [1, 2, 3, 4]}}}`,
			`{"data": {"tensor": {"shape": [2, 1], "values": [0.125, 0.875]}}}`},
		{"jsonData", `{"jsonData": {"user": {"age": 42, "geo": {"country": "NO"}}, "tags": ["a", "b"], "vip": true}}`,
			`{"jsonData": {"prediction": "churn", "probabilities": [0.3, 0.7]}}`},
		{"strData", `{"strData": "Hello \"world\"\n"}`, `{"strData": "Bonjour"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fromJSON, fromProto Batch
			require.NoError(t, NewParser(Options{}).Parse(FormatSeldon, []byte(tc.req), []byte(tc.resp), &fromJSON))
			require.NoError(t, NewParser(Options{}).Parse(FormatSeldonGRPC, seldonProto(t, tc.req), seldonProto(t, tc.resp), &fromProto))
			require.Equal(t, FormatSeldonGRPC, fromProto.Format)
			require.NotEmpty(t, fromJSON.Records)
			require.Equal(t, sortedFeatures(&fromJSON), sortedFeatures(&fromProto))
		})
	}
}

func TestSeldonGRPC(t *testing.T) {
	req := seldonProto(t, `{"data": {"ndarray": [[1, 2]]}}`)
	unanswered := []plainRecord{rec("null", "", "0=1", "1=2")}
	// A Value nested 70 deep, and one whose number is a varint.
	deep := []any{1.0}
	for range 70 {
		deep = []any{deep}
	}
	tooDeep, err := structpb.NewValue(deep)
	require.NoError(t, err)
	jsonData := func(v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, seldonJSONDataField, protowire.BytesType), v)
	}
	varintNumber := protowire.AppendVarint(protowire.AppendTag(nil, valueNumber, protowire.VarintType), 3)
	// A Struct with a key twice: the last counts.
	entry := func(key string, v float64) []byte {
		b := protowire.AppendBytes(protowire.AppendTag(nil, mapKey, protowire.BytesType), []byte(key))
		val := protowire.AppendFixed64(protowire.AppendTag(nil, valueNumber, protowire.Fixed64Type), math.Float64bits(v))
		b = protowire.AppendBytes(protowire.AppendTag(b, mapValue, protowire.BytesType), val)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
	}
	twice := append(append(entry("x", 1), entry("y", 2)...), entry("x", 3)...)
	structValue := protowire.AppendBytes(protowire.AppendTag(nil, valueStruct, protowire.BytesType), twice)
	runProtoCases(t, FormatSeldonGRPC, []protoCase{
		{"a request", req, seldonProto(t, `{"data": {"tensor": {"shape": [1, 3], "values": ["NaN", "inf", "-inf"]}}}`),
			[]plainRecord{rec("null", "NaN +Inf -Inf", "0=1", "1=2")}, ""},
		{"no response", req, nil, unanswered, ""},
		{"a failure status", req, seldonProto(t, `{"status": {"code": 500, "status": "FAILURE"}}`), unanswered, ReasonInvalidResponse},
		{"a struct with a key twice", jsonData(structValue), nil, []plainRecord{rec("null", "", "x=3", "y=2")}, ""},
		{"values nested too deep", jsonData(marshal(t, tooDeep)), nil, nil, ReasonTypeMismatch},
		{"a number that is a varint", jsonData(varintNumber), nil, nil, ReasonTypeMismatch},
		{"a request that is no protobuf", []byte{0x1a, 0x05, 1}, nil, nil, ReasonInvalidProtobuf},
		{"no data", seldonProto(t, `{"meta": {"puid": "p"}}`), nil, nil, ReasonMissingField},
		{"a response that is no protobuf", req, []byte{0x1a, 0x05, 1}, unanswered, ReasonInvalidResponse},
	})
}

func TestSeldonPuid(t *testing.T) {
	require.Equal(t, "p-7", string(SeldonPuid(seldonProto(t, `{"meta": {"puid": "p-7"}, "data": {"ndarray": [1]}}`))))
	require.Nil(t, SeldonPuid(seldonProto(t, `{"data": {"ndarray": [1]}}`)))
	require.Nil(t, SeldonPuid([]byte{0x12, 0x05}))
}

func FuzzSeldonGRPC(f *testing.F) {
	for _, s := range fuzzSeeds[FormatSeldon] {
		if s[1] != "" && s[0][len(s[0])-1] == '}' {
			f.Add(seldonProto(f, s[0]), seldonProto(f, s[1]))
		}
	}
	for _, tc := range seldonTFCases {
		f.Add(seldonTFMessage(f, []string{"a"}, tc.in), seldonTFMessage(f, nil, tc.out))
	}
	parsers := fuzzParsers()
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, p := range parsers {
			checkParse(t, p, FormatSeldonGRPC, req, resp)
		}
		SeldonPuid(req)
		// The request as a SendFeedback call's message.
		var b Batch
		fb, err := parsers[1].SeldonFeedbackGRPC(req, &b)
		checkFeedback(t, fb, err, &b)
	})
}

func TestSeldonFeedbackGRPC(t *testing.T) {
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	response := field(feedbackResponse, seldonProto(t, `{"meta": {"puid": "p-1"}, "data": {"ndarray": [[0.9], [0.1]]}}`))
	truth := field(feedbackTruth, seldonProto(t, `{"data": {"names": ["y"], "ndarray": [["cat"], ["dog"]]}}`))
	reward := func(r float32) []byte {
		return protowire.AppendFixed32(protowire.AppendTag(nil, feedbackReward, protowire.Fixed32Type), math.Float32bits(r))
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name    string
		msg     []byte
		want    Feedback
		records []plainRecord
		reason  Reason
	}{
		{"a truth per instance", cat(response, reward(1), truth), Feedback{Puid: []byte("p-1"), Reward: 1, Truth: true},
			[]plainRecord{rec("null", "", `y="cat"`), rec("null", "", `y="dog"`)}, ""},
		{"no response", truth, Feedback{Truth: true}, []plainRecord{rec("null", "", `y="cat"`), rec("null", "", `y="dog"`)}, ""},
		{"a reward alone", cat(response, reward(-0.5)), Feedback{Puid: []byte("p-1"), Reward: -0.5}, nil, ""},
		{"a NaN reward", cat(response, reward(float32(math.NaN())), truth), Feedback{}, nil, ReasonTypeMismatch},
		{"a truth that is no SeldonMessage", cat(response, reward(1), field(feedbackTruth, []byte{0x0a})), Feedback{}, nil, ReasonInvalidProtobuf},
		{"a reward cut short", cat(response, reward(1)[:3]), Feedback{}, nil, ReasonInvalidProtobuf},
		{"no protobuf", []byte{0x22, 0x09, 1}, Feedback{}, nil, ReasonInvalidProtobuf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			fb, err := NewParser(Options{FeatureNames: []string{"configured"}}).SeldonFeedbackGRPC(tc.msg, &b)
			require.Equal(t, tc.reason, reasonOf(t, err), "%v", err)
			require.Equal(t, tc.want, fb)
			require.Equal(t, tc.records, plain(&b).Records)
		})
	}
}

// seldonBenchJSON is a Seldon request of one row of 20 named numeric
// features, and its answer of class probabilities.
func seldonBenchJSON() (req, resp string) {
	names, row := "", ""
	for i := range 20 {
		if i > 0 {
			names, row = names+", ", row+", "
		}
		names += `"f` + strconv.Itoa(i) + `"`
		row += strconv.FormatFloat(float64(i)*1.618, 'f', 4, 64)
	}
	return `{"data": {"names": [` + names + `], "ndarray": [[` + row + `]]}}`,
		`{"meta": {"puid": "p"}, "data": {"names": ["t:0", "t:1"], "ndarray": [[0.13, 0.87]]}}`
}

func BenchmarkSeldon(b *testing.B) {
	req, resp := seldonBenchJSON()
	benchmarkParse(b, FormatSeldon, []byte(req), []byte(resp))
}

// BenchmarkSeldonGRPC is BenchmarkSeldon's messages as protobuf, written
// out in JSON before they are read.
func BenchmarkSeldonGRPC(b *testing.B) {
	req, resp := seldonBenchJSON()
	benchmarkParse(b, FormatSeldonGRPC, seldonProto(b, req), seldonProto(b, resp))
}
