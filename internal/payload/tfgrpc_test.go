package payload

import (
	"cmp"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/wrapperspb" // google/protobuf/wrappers.proto, for ModelSpec.version
)

// tfMessages are TensorFlow Serving's PredictRequest and PredictResponse
// and the messages they hold, described here field by field as
// tensorflow_serving/apis/predict.proto and model.proto and TensorFlow's
// tensor.proto and tensor_shape.proto have them, so that the protobuf
// module encodes test messages exactly as a TensorFlow Serving client does
// (packed repeated numbers, map entries): an encoder the parser does not
// share.
var tfMessages = func() protoreflect.FileDescriptor {
	field := descField
	const (
		str, byt, msg = descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_BYTES, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		i32, i64, u32 = descriptorpb.FieldDescriptorProto_TYPE_INT32, descriptorpb.FieldDescriptorProto_TYPE_INT64, descriptorpb.FieldDescriptorProto_TYPE_UINT32
		u64, f32, f64 = descriptorpb.FieldDescriptorProto_TYPE_UINT64, descriptorpb.FieldDescriptorProto_TYPE_FLOAT, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
		boo, enm      = descriptorpb.FieldDescriptorProto_TYPE_BOOL, descriptorpb.FieldDescriptorProto_TYPE_ENUM
	)
	mapEntry := func(name string) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name),
			Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, str, false, ""), field("value", 2, msg, false, ".tensorflow.TensorProto")},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}}
	}
	var dataTypes []*descriptorpb.EnumValueDescriptorProto
	for i, name := range []string{"DT_INVALID", "DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_UINT8", "DT_INT16", "DT_INT8", "DT_STRING",
		"DT_COMPLEX64", "DT_INT64", "DT_BOOL", "DT_QINT8", "DT_QUINT8", "DT_QINT32", "DT_BFLOAT16", "DT_QINT16", "DT_QUINT16",
		"DT_UINT16", "DT_COMPLEX128", "DT_HALF", "DT_RESOURCE", "DT_VARIANT", "DT_UINT32", "DT_UINT64"} {
		dataTypes = append(dataTypes, &descriptorpb.EnumValueDescriptorProto{Name: proto.String(name), Number: proto.Int32(int32(i))})
	}
	return testFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("tfserving_test.proto"), Package: proto.String("tensorflow"), Syntax: proto.String("proto3"),
		Dependency: []string{"google/protobuf/wrappers.proto"},
		EnumType:   []*descriptorpb.EnumDescriptorProto{{Name: proto.String("DataType"), Value: dataTypes}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("TensorShapeProto"),
				NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("Dim"),
					Field: []*descriptorpb.FieldDescriptorProto{field("size", 1, i64, false, ""), field("name", 2, str, false, "")}}},
				Field: []*descriptorpb.FieldDescriptorProto{field("dim", 2, msg, true, ".tensorflow.TensorShapeProto.Dim"), field("unknown_rank", 3, boo, false, "")}},
			{Name: proto.String("TensorProto"), Field: []*descriptorpb.FieldDescriptorProto{
				field("dtype", 1, enm, false, ".tensorflow.DataType"), field("tensor_shape", 2, msg, false, ".tensorflow.TensorShapeProto"),
				field("version_number", 3, i32, false, ""), field("tensor_content", 4, byt, false, ""),
				field("half_val", 13, i32, true, ""), field("float_val", 5, f32, true, ""), field("double_val", 6, f64, true, ""),
				field("int_val", 7, i32, true, ""), field("string_val", 8, byt, true, ""), field("int64_val", 10, i64, true, ""),
				field("bool_val", 11, boo, true, ""), field("uint32_val", 16, u32, true, ""), field("uint64_val", 17, u64, true, "")}},
			{Name: proto.String("ModelSpec"), Field: []*descriptorpb.FieldDescriptorProto{
				field("name", 1, str, false, ""), field("version", 2, msg, false, ".google.protobuf.Int64Value"),
				field("signature_name", 3, str, false, ""), field("version_label", 4, str, false, "")}},
			{Name: proto.String("PredictRequest"), NestedType: []*descriptorpb.DescriptorProto{mapEntry("InputsEntry")},
				Field: []*descriptorpb.FieldDescriptorProto{field("model_spec", 1, msg, false, ".tensorflow.ModelSpec"),
					field("inputs", 2, msg, true, ".tensorflow.PredictRequest.InputsEntry"), field("output_filter", 3, str, true, "")}},
			{Name: proto.String("PredictResponse"), NestedType: []*descriptorpb.DescriptorProto{mapEntry("OutputsEntry")},
				Field: []*descriptorpb.FieldDescriptorProto{field("outputs", 1, msg, true, ".tensorflow.PredictResponse.OutputsEntry"),
					field("model_spec", 2, msg, false, ".tensorflow.ModelSpec")}},
			// tf.Example (example.proto, feature.proto) and the calls on it
			// (input.proto, classification.proto, regression.proto,
			// inference.proto). A oneof's fields are declared here as plain
			// fields: they are encoded the same.
			{Name: proto.String("BytesList"), Field: []*descriptorpb.FieldDescriptorProto{field("value", 1, byt, true, "")}},
			{Name: proto.String("FloatList"), Field: []*descriptorpb.FieldDescriptorProto{field("value", 1, f32, true, "")}},
			{Name: proto.String("Int64List"), Field: []*descriptorpb.FieldDescriptorProto{field("value", 1, i64, true, "")}},
			{Name: proto.String("Feature"), Field: []*descriptorpb.FieldDescriptorProto{field("bytes_list", 1, msg, false, ".tensorflow.BytesList"),
				field("float_list", 2, msg, false, ".tensorflow.FloatList"), field("int64_list", 3, msg, false, ".tensorflow.Int64List")}},
			{Name: proto.String("Features"), NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("FeatureEntry"),
				Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, str, false, ""), field("value", 2, msg, false, ".tensorflow.Feature")},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}}},
				Field: []*descriptorpb.FieldDescriptorProto{field("feature", 1, msg, true, ".tensorflow.Features.FeatureEntry")}},
			{Name: proto.String("Example"), Field: []*descriptorpb.FieldDescriptorProto{field("features", 1, msg, false, ".tensorflow.Features")}},
			{Name: proto.String("ExampleList"), Field: []*descriptorpb.FieldDescriptorProto{field("examples", 1, msg, true, ".tensorflow.Example")}},
			{Name: proto.String("ExampleListWithContext"), Field: []*descriptorpb.FieldDescriptorProto{field("examples", 1, msg, true, ".tensorflow.Example"),
				field("context", 2, msg, false, ".tensorflow.Example")}},
			{Name: proto.String("Input"), Field: []*descriptorpb.FieldDescriptorProto{field("example_list", 1, msg, false, ".tensorflow.ExampleList"),
				field("example_list_with_context", 2, msg, false, ".tensorflow.ExampleListWithContext")}},
			{Name: proto.String("ClassificationRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("model_spec", 1, msg, false, ".tensorflow.ModelSpec"),
				field("input", 2, msg, false, ".tensorflow.Input")}},
			{Name: proto.String("RegressionRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("model_spec", 1, msg, false, ".tensorflow.ModelSpec"),
				field("input", 2, msg, false, ".tensorflow.Input")}},
			{Name: proto.String("InferenceTask"), Field: []*descriptorpb.FieldDescriptorProto{field("model_spec", 1, msg, false, ".tensorflow.ModelSpec"),
				field("method_name", 2, str, false, "")}},
			{Name: proto.String("MultiInferenceRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("tasks", 1, msg, true, ".tensorflow.InferenceTask"),
				field("input", 2, msg, false, ".tensorflow.Input")}},
			{Name: proto.String("Class"), Field: []*descriptorpb.FieldDescriptorProto{field("label", 1, str, false, ""), field("score", 2, f32, false, "")}},
			{Name: proto.String("Classifications"), Field: []*descriptorpb.FieldDescriptorProto{field("classes", 1, msg, true, ".tensorflow.Class")}},
			{Name: proto.String("ClassificationResult"), Field: []*descriptorpb.FieldDescriptorProto{field("classifications", 1, msg, true, ".tensorflow.Classifications")}},
			{Name: proto.String("ClassificationResponse"), Field: []*descriptorpb.FieldDescriptorProto{field("result", 1, msg, false, ".tensorflow.ClassificationResult"),
				field("model_spec", 2, msg, false, ".tensorflow.ModelSpec")}},
			{Name: proto.String("Regression"), Field: []*descriptorpb.FieldDescriptorProto{field("value", 1, f32, false, "")}},
			{Name: proto.String("RegressionResult"), Field: []*descriptorpb.FieldDescriptorProto{field("regressions", 1, msg, true, ".tensorflow.Regression")}},
			{Name: proto.String("RegressionResponse"), Field: []*descriptorpb.FieldDescriptorProto{field("result", 1, msg, false, ".tensorflow.RegressionResult"),
				field("model_spec", 2, msg, false, ".tensorflow.ModelSpec")}},
			{Name: proto.String("InferenceResult"), Field: []*descriptorpb.FieldDescriptorProto{field("model_spec", 1, msg, false, ".tensorflow.ModelSpec"),
				field("classification_result", 2, msg, false, ".tensorflow.ClassificationResult"),
				field("regression_result", 3, msg, false, ".tensorflow.RegressionResult")}},
			{Name: proto.String("MultiInferenceResponse"), Field: []*descriptorpb.FieldDescriptorProto{field("results", 1, msg, true, ".tensorflow.InferenceResult")}},
		},
	})
}()

// testFile builds the file descriptor fdp describes, its imports found
// among the files the protobuf module registers.
func testFile(fdp *descriptorpb.FileDescriptorProto) protoreflect.FileDescriptor {
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	return fd
}

// descField describes a field of a test message: its name, number, type,
// whether it is repeated, and the full name of its message or enum type.
func descField(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, repeated bool, typeName string) *descriptorpb.FieldDescriptorProto {
	label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	if repeated {
		label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	}
	f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label.Enum(), JsonName: proto.String(name)}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

// tfDataTypes are the DataType numbers of the OIP datatypes.
var tfDataTypes = map[string]int32{"FP32": 1, "FP64": 2, "INT32": 3, "UINT8": 4, "INT16": 5, "INT8": 6, "BYTES": 7,
	"INT64": 9, "BOOL": 10, "BF16": 14, "UINT16": 17, "FP16": 19, "UINT32": 22, "UINT64": 23}

// tfTensorProto is the TensorProto of t: its raw contents as tensor_content
// when t.raw, else its elements in the typed field of its dtype (always,
// for strings: TensorFlow writes no DT_STRING tensor_content).
func tfTensorProto(t pbTensor) *dynamicpb.Message {
	md := tfMessages.Messages().ByName("TensorProto")
	m := dynamicpb.NewMessage(md)
	set(m, "dtype", protoreflect.ValueOfEnum(protoreflect.EnumNumber(tfDataTypes[t.dt])))
	shape := dynamicpb.NewMessage(tfMessages.Messages().ByName("TensorShapeProto"))
	dims := shape.Mutable(shape.Descriptor().Fields().ByName("dim")).List()
	for _, d := range t.shape {
		dim := dynamicpb.NewMessage(shape.Descriptor().Messages().ByName("Dim"))
		set(dim, "size", protoreflect.ValueOfInt64(d))
		dims.Append(protoreflect.ValueOfMessage(dim))
	}
	set(m, "tensor_shape", protoreflect.ValueOfMessage(shape))
	if t.raw && t.dt != "BYTES" {
		set(m, "tensor_content", protoreflect.ValueOfBytes(t.rawContents()))
		return m
	}
	valField := map[string]string{"FP32": "float_val", "FP64": "double_val", "INT32": "int_val", "UINT8": "int_val",
		"INT16": "int_val", "INT8": "int_val", "UINT16": "int_val", "BYTES": "string_val", "INT64": "int64_val",
		"BOOL": "bool_val", "FP16": "half_val", "UINT32": "uint32_val", "UINT64": "uint64_val"}[t.dt]
	vals := m.Mutable(md.Fields().ByName(protoreflect.Name(valField))).List()
	for _, e := range t.data {
		var v protoreflect.Value
		switch x := e.(type) {
		case string:
			v = protoreflect.ValueOfBytes([]byte(x))
		case bool:
			v = protoreflect.ValueOfBool(x)
		case float64:
			switch valField {
			case "float_val":
				v = protoreflect.ValueOfFloat32(float32(x))
			case "double_val":
				v = protoreflect.ValueOfFloat64(x)
			case "int64_val":
				v = protoreflect.ValueOfInt64(int64(x))
			case "uint32_val":
				v = protoreflect.ValueOfUint32(uint32(x))
			case "uint64_val":
				v = protoreflect.ValueOfUint64(uint64(x))
			case "half_val":
				v = protoreflect.ValueOfInt32(int32(toHalf(x)))
			default:
				v = protoreflect.ValueOfInt32(int32(x))
			}
		}
		vals.Append(v)
	}
	return m
}

// predictMessage encodes a PredictRequest (or a PredictResponse) of model
// with the tensors, and version, when not empty, as ModelSpec.version.
func predictMessage(t testing.TB, response bool, model string, version int64, tensors ...pbTensor) []byte {
	t.Helper()
	name, mapField := "PredictRequest", "inputs"
	if response {
		name, mapField = "PredictResponse", "outputs"
	}
	m := dynamicpb.NewMessage(tfMessages.Messages().ByName(protoreflect.Name(name)))
	spec := dynamicpb.NewMessage(tfMessages.Messages().ByName("ModelSpec"))
	spec.Set(spec.Descriptor().Fields().ByName("name"), protoreflect.ValueOfString(model))
	if version != 0 {
		fd := spec.Descriptor().Fields().ByName("version")
		v := dynamicpb.NewMessage(fd.Message())
		v.Set(fd.Message().Fields().ByName("value"), protoreflect.ValueOfInt64(version))
		spec.Set(fd, protoreflect.ValueOfMessage(v))
	}
	m.Set(m.Descriptor().Fields().ByName("model_spec"), protoreflect.ValueOfMessage(spec))
	tmap := m.Mutable(m.Descriptor().Fields().ByName(protoreflect.Name(mapField))).Map()
	for _, tt := range tensors {
		tmap.Set(protoreflect.ValueOfString(tt.name).MapKey(), protoreflect.ValueOfMessage(tfTensorProto(tt)))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	return b
}

// byName is tensors in the order of their names, the order the parser
// reads a map in.
func byName(tensors []pbTensor) []pbTensor {
	return slices.SortedFunc(slices.Values(tensors), func(a, b pbTensor) int { return cmp.Compare(a.name, b.name) })
}

// A Predict call gives the records that the same tensors, in the order of
// their names, give in the OIP's JSON form.
func TestTFServingGRPCMatchesOIP(t *testing.T) {
	cases := append(slices.Clone(grpcCases), struct {
		name      string
		in, out   []pbTensor
		outFields []string
	}{name: "the narrower types, typed",
		in: []pbTensor{
			{name: "a", dt: "UINT8", shape: []int64{2}, data: []any{0.0, 255.0}},
			{name: "b", dt: "INT16", shape: []int64{2}, data: []any{-300.0, 300.0}},
			{name: "c", dt: "FP16", shape: []int64{2}, data: []any{0.5, -2.0}},
			{name: "d", dt: "UINT64", shape: []int64{2}, data: []any{1.0, 1e15}},
		},
		out: []pbTensor{{name: "y", dt: "INT8", shape: []int64{2, 1}, data: []any{-1.0, 1.0}}}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requireSameRecords(t, byName(tc.in), byName(tc.out), FormatTFServingGRPC,
				predictMessage(t, false, "m", 0, tc.in...), predictMessage(t, true, "m", 0, tc.out...))
		})
	}
}

func TestTFServingGRPC(t *testing.T) {
	x := pbTensor{name: "x", dt: "FP32", shape: []int64{2, 2}, data: []any{1.0, 2.0, 3.0, 4.0}}
	y := pbTensor{name: "y", dt: "FP32", shape: []int64{2}, data: []any{0.25, 0.75}}
	req, resp := predictMessage(t, false, "fraud", 3, x), predictMessage(t, true, "fraud", 3, y)
	both := []plainRecord{rec("0.25", "", "x_0=1", "x_1=2"), rec("0.75", "", "x_0=3", "x_1=4")}
	unanswered := []plainRecord{rec("null", "", "x_0=1", "x_1=2"), rec("null", "", "x_0=3", "x_1=4")}

	// TensorFlow's reading of typed values: one value fills the shape,
	// none is zeros, more than the shape are cut to it.
	one := pbTensor{name: "x", dt: "FP32", shape: []int64{2, 2}, data: []any{5.0}}
	none := pbTensor{name: "x", dt: "INT64", shape: []int64{1, 2}, data: []any{}}
	noStrings := pbTensor{name: "x", dt: "BYTES", shape: []int64{1}, data: []any{}}
	extra := pbTensor{name: "x", dt: "FP64", shape: []int64{1}, data: []any{1.0, 2.0}}
	huge := pbTensor{name: "x", dt: "FP32", shape: []int64{1 << 40, 2}, data: []any{5.0}}
	// Filled tensors share one budget per message.
	wide := func(name string) pbTensor {
		return pbTensor{name: name, dt: "FP32", shape: []int64{1, 40000}, data: []any{5.0}}
	}
	unknown := pbTensor{name: "x", dt: "FP32", shape: []int64{-1, 2}, data: []any{1.0, 2.0}}
	rawShort := pbTensor{name: "x", dt: "FP32", shape: []int64{1, 3}, data: []any{1.0, 2.0}, raw: true}
	noName := pbTensor{dt: "FP32", shape: []int64{1}, data: []any{1.0}}

	// A complex64 tensor (DT_COMPLEX64, 8) and a string tensor_content
	// are not read.
	complexTensor := tfTensorProto(pbTensor{name: "x", dt: "FP32", shape: []int64{1}, data: []any{1.0}})
	complexTensor.Set(complexTensor.Descriptor().Fields().ByName("dtype"), protoreflect.ValueOfEnum(8))
	stringContent := tfTensorProto(pbTensor{name: "x", dt: "BYTES", shape: []int64{1}, data: []any{}})
	stringContent.Set(stringContent.Descriptor().Fields().ByName("tensor_content"), protoreflect.ValueOfBytes([]byte{1, 2}))
	noShape := tfTensorProto(pbTensor{name: "x", dt: "INT32", data: []any{3.0}})
	noShape.Clear(noShape.Descriptor().Fields().ByName("tensor_shape"))
	withTensor := func(tp *dynamicpb.Message) []byte {
		m := dynamicpb.NewMessage(tfMessages.Messages().ByName("PredictRequest"))
		inputs := m.Mutable(m.Descriptor().Fields().ByName("inputs")).Map()
		inputs.Set(protoreflect.ValueOfString("x").MapKey(), protoreflect.ValueOfMessage(tp))
		b, err := proto.Marshal(m)
		require.NoError(t, err)
		return b
	}
	// The same input twice: the last counts, as in any protobuf map.
	dup := append(predictMessage(t, false, "fraud", 0, pbTensor{name: "x", dt: "FP32", shape: []int64{2, 1}, data: []any{9.0, 9.0}}), req...)

	runProtoCases(t, FormatTFServingGRPC, []protoCase{
		{"a call", req, resp, both, ""},
		{"no response", req, nil, unanswered, ""},
		{"the same input twice", dup, resp, both, ""},
		{"one value fills the shape", predictMessage(t, false, "m", 0, one), nil,
			[]plainRecord{rec("null", "", "x_0=5", "x_1=5"), rec("null", "", "x_0=5", "x_1=5")}, ""},
		{"no value is zeros", predictMessage(t, false, "m", 0, none), nil, []plainRecord{rec("null", "", "x_0=0", "x_1=0")}, ""},
		{"no string is empty", predictMessage(t, false, "m", 0, noStrings), nil, []plainRecord{rec("null", "", `x=""`)}, ""},
		{"values past the shape are cut", predictMessage(t, false, "m", 0, extra), nil, []plainRecord{rec("null", "", "x=1")}, ""},
		{"no tensor_shape is a scalar", withTensor(noShape), nil, []plainRecord{rec("null", "", "x=3")}, ""},
		{"no inputs", predictMessage(t, false, "m", 0), resp, nil, ReasonMissingField},
		{"cut short", req[:len(req)-1], resp, nil, ReasonInvalidProtobuf},
		{"not protobuf", []byte{0xff, 0xff, 0xff}, resp, nil, ReasonInvalidProtobuf},
		{"too few values to fill", predictMessage(t, false, "m", 0, huge), nil, nil, ReasonShapeMismatch},
		{"too many to fill in one message", predictMessage(t, false, "m", 0, wide("a"), wide("b")), nil, nil, ReasonShapeMismatch},
		{"a dimension of unknown size", predictMessage(t, false, "m", 0, unknown), nil, nil, ReasonTypeMismatch},
		{"tensor_content of the wrong size", predictMessage(t, false, "m", 0, rawShort), nil, nil, ReasonShapeMismatch},
		{"no name", predictMessage(t, false, "m", 0, noName), nil, nil, ReasonMissingField},
		{"a dtype not read", withTensor(complexTensor), nil, nil, ReasonTypeMismatch},
		{"a DT_STRING tensor_content", withTensor(stringContent), nil, nil, ReasonTypeMismatch},
		{"a response cut short", req, resp[:len(resp)-2], unanswered, ReasonInvalidResponse},
		{"a response without outputs", req, predictMessage(t, true, "m", 0), unanswered, ReasonMissingField},
		{"a response of another batch size", req, predictMessage(t, true, "m", 0, x, pbTensor{name: "a", dt: "FP32", shape: []int64{1}, data: []any{1.0}}),
			unanswered, ReasonShapeMismatch},
	})
}

func TestTFRequestModel(t *testing.T) {
	model, version := TFRequestModel(FormatTFServingGRPC, predictMessage(t, false, "fraud", 7, grpcCases[0].in...))
	require.Equal(t, "fraud", string(model))
	require.Equal(t, "7", string(version))
	model, version = TFRequestModel(FormatTFServingGRPC, predictMessage(t, false, "churn", 0))
	require.Equal(t, "churn", string(model))
	require.Nil(t, version)

	// A version label instead of a number.
	spec := dynamicpb.NewMessage(tfMessages.Messages().ByName("ModelSpec"))
	spec.Set(spec.Descriptor().Fields().ByName("name"), protoreflect.ValueOfString("ranker"))
	spec.Set(spec.Descriptor().Fields().ByName("version_label"), protoreflect.ValueOfString("stable"))
	req := dynamicpb.NewMessage(tfMessages.Messages().ByName("PredictRequest"))
	req.Set(req.Descriptor().Fields().ByName("model_spec"), protoreflect.ValueOfMessage(spec))
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	model, version = TFRequestModel(FormatTFServingGRPC, b)
	require.Equal(t, "ranker", string(model))
	require.Equal(t, "stable", string(version))

	for _, msg := range [][]byte{nil, {0xff}, {0x0a, 0x09, 'a'}, {0x0a, 0x02, 0x0a, 0x05}} {
		model, version := TFRequestModel(FormatTFServingGRPC, msg)
		require.Nil(t, model, "%x", msg)
		require.Nil(t, version, "%x", msg)
	}
}

func FuzzTFServingGRPC(f *testing.F) {
	for _, tc := range grpcCases {
		f.Add(predictMessage(f, false, "m", 3, tc.in...), predictMessage(f, true, "m", 0, tc.out...))
	}
	f.Add([]byte{0x12, 0x00}, []byte{})
	parsers := fuzzParsers()
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, p := range parsers {
			checkParse(t, p, FormatTFServingGRPC, req, resp)
		}
		TFRequestModel(FormatTFServingGRPC, req)
	})
}

func BenchmarkTFServingGRPC(b *testing.B) {
	in, out := grpcBenchTensors()
	benchmarkParse(b, FormatTFServingGRPC, predictMessage(b, false, "fraud", 1, in), predictMessage(b, true, "fraud", 1, out))
}
