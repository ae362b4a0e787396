package payload

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// torchMessages are TorchServe's PredictionsRequest and PredictionResponse,
// described as its inference.proto has them.
var torchMessages = func() protoreflect.FileDescriptor {
	const str, byt, msg = descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_BYTES, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	return testFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("torchserve_test.proto"), Package: proto.String("org.pytorch.serve.grpc.inference"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("PredictionsRequest"), NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("InputEntry"),
				Field:   []*descriptorpb.FieldDescriptorProto{descField("key", 1, str, false, ""), descField("value", 2, byt, false, "")},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}}},
				Field: []*descriptorpb.FieldDescriptorProto{descField("model_name", 1, str, false, ""), descField("model_version", 2, str, false, ""),
					descField("input", 3, msg, true, ".org.pytorch.serve.grpc.inference.PredictionsRequest.InputEntry")}},
			{Name: proto.String("PredictionResponse"), Field: []*descriptorpb.FieldDescriptorProto{descField("prediction", 1, byt, false, "")}},
		},
	})
}()

// torchRequest encodes a PredictionsRequest of model and version with
// the inputs, given as name, value pairs.
func torchRequest(t testing.TB, model, version string, inputs ...string) []byte {
	t.Helper()
	m := dynamicpb.NewMessage(torchMessages.Messages().ByName("PredictionsRequest"))
	set(m, "model_name", protoreflect.ValueOfString(model))
	if version != "" {
		set(m, "model_version", protoreflect.ValueOfString(version))
	}
	in := m.Mutable(m.Descriptor().Fields().ByName("input")).Map()
	for i := 0; i+1 < len(inputs); i += 2 {
		in.Set(protoreflect.ValueOfString(inputs[i]).MapKey(), protoreflect.ValueOfBytes([]byte(inputs[i+1])))
	}
	return marshal(t, m)
}

// torchResponse encodes a PredictionResponse.
func torchResponse(t testing.TB, prediction string) []byte {
	t.Helper()
	m := dynamicpb.NewMessage(torchMessages.Messages().ByName("PredictionResponse"))
	return marshal(t, set(m, "prediction", protoreflect.ValueOfBytes([]byte(prediction))))
}

func TestTorchServeGRPC(t *testing.T) {
	// A JSON body and answer give what the same bodies over HTTP give.
	for _, tc := range []struct{ body, prediction string }{
		{`{"instances": [[1, 2], [3, 4]]}`, `{"predictions": [0, 1]}`},
		{`{"age": 42, "city": "Oslo"}`, `{"prediction": "churn", "probability": 0.7}`},
		{`[{"x": 1}, {"x": 2}]`, `[0.25, 0.75]`},
	} {
		var overHTTP, overGRPC Batch
		require.NoError(t, NewParser(Options{}).Parse(FormatUnknown, []byte(tc.body), []byte(tc.prediction), &overHTTP))
		require.NoError(t, NewParser(Options{}).Parse(FormatTorchServeGRPC, torchRequest(t, "m", "", "data", tc.body), torchResponse(t, tc.prediction), &overGRPC))
		require.Equal(t, FormatTorchServeGRPC, overGRPC.Format)
		require.Equal(t, plain(&overHTTP).Records, plain(&overGRPC).Records, tc.body)
	}

	req := torchRequest(t, "m", "", "data", `{"x": 1}`)
	runProtoCases(t, FormatTorchServeGRPC, []protoCase{
		{"the body input", torchRequest(t, "m", "", "body", `{"x": 1}`, "other", `{"y": 2}`), nil, []plainRecord{rec("null", "", "x=1")}, ""},
		{"the only input", torchRequest(t, "m", "", "instances", `{"x": 1}`), nil, []plainRecord{rec("null", "", "x=1")}, ""},
		{"raw text and a JSON answer", torchRequest(t, "m", "", "data", "I loved this film"),
			torchResponse(t, `{"positive": 0.875, "negative": 0.125}`), []plainRecord{rec("null", "0.875 0.125")}, ""},
		{"an image and a text answer", torchRequest(t, "m", "", "data", "\x89PNG\r\n\x1a\n"), torchResponse(t, "tabby cat"),
			[]plainRecord{rec("null", "")}, ""},
		{"a JSON body and a text answer", req, torchResponse(t, "Positive"), []plainRecord{rec("null", "", "x=1")}, ""},
		{"inputs of other names", torchRequest(t, "m", "", "a", "1", "b", "2"), nil, nil, ReasonMissingField},
		{"a body that is broken JSON", torchRequest(t, "m", "", "data", `{"x": `), nil, nil, ReasonInvalidJSON},
		{"a request that is no protobuf", []byte{0x1a, 0x05, 1}, nil, nil, ReasonInvalidProtobuf},
		{"a response that is no protobuf", req, []byte{0x0a, 0x05, 1}, []plainRecord{rec("null", "", "x=1")}, ReasonInvalidResponse},
	})
}

func TestTorchServeRequestModel(t *testing.T) {
	model, version := TorchServeRequestModel(torchRequest(t, "resnet", "2.0", "data", "x"))
	require.Equal(t, "resnet", string(model))
	require.Equal(t, "2.0", string(version))
	model, version = TorchServeRequestModel([]byte{0x0a, 0x05, 'a'})
	require.Nil(t, model)
	require.Nil(t, version)
}

func FuzzTorchServeGRPC(f *testing.F) {
	f.Add(torchRequest(f, "m", "1", "data", `{"instances": [[1, 2]]}`), torchResponse(f, `{"predictions": [1]}`))
	f.Add(torchRequest(f, "m", "", "body", "raw text"), torchResponse(f, `{"label": "a"}`))
	f.Add(torchRequest(f, "m", "", "data", `[{"x": 1}]`, "other", "y"), []byte{})
	parsers := fuzzParsers()
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, p := range parsers {
			checkParse(t, p, FormatTorchServeGRPC, req, resp)
		}
		TorchServeRequestModel(req)
	})
}
