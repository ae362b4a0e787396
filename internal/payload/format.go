package payload

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/valyala/fastjson"
)

// Format is a payload dialect.
type Format uint8

// The payload formats. Parse takes FormatUnknown to mean "detect from the request body".
const (
	// FormatUnknown detects the format from the request body's shape.
	FormatUnknown Format = iota
	// FormatKServeV1 is the KServe v1 / TensorFlow Serving REST protocol:
	// {"instances":[...]} or {"inputs":...} → {"predictions":[...]} or {"outputs":...}.
	FormatKServeV1
	// FormatOIP is the Open Inference Protocol (KServe v2, Triton, MLServer):
	// {"inputs":[{"name","shape","datatype","data"}]} → {"outputs":[...]}.
	FormatOIP
	// FormatMLflow is the MLflow scoring server's /invocations: dataframe_split,
	// dataframe_records, instances or inputs → {"predictions":...} or a bare array.
	FormatMLflow
	// FormatJSON is plain JSON: an object of features or an array of them → a scalar,
	// an array, or an object with a well-known key such as "prediction".
	FormatJSON
	// FormatOIPGRPC is the Open Inference Protocol over gRPC: a ModelInfer
	// call's ModelInferRequest and ModelInferResponse messages, protobuf
	// (oipgrpc.go). It is chosen by the transport, not by configuration.
	FormatOIPGRPC
	// FormatTFServingGRPC is TensorFlow Serving's gRPC API: a Predict call's
	// PredictRequest and PredictResponse messages, protobuf (tfgrpc.go).
	// It too is chosen by the transport.
	FormatTFServingGRPC
	// FormatTFServingClassifyGRPC, FormatTFServingRegressGRPC and
	// FormatTFServingMultiInferenceGRPC are TensorFlow Serving's gRPC calls
	// on tf.Examples: Classify, Regress and MultiInference (tfexample.go).
	FormatTFServingClassifyGRPC
	FormatTFServingRegressGRPC
	FormatTFServingMultiInferenceGRPC
	// FormatSeldon is Seldon Core 1's protocol, a SeldonMessage each way:
	// {"data": {"names", "ndarray" or "tensor"}} or {"jsonData": …}
	// (seldon.go).
	FormatSeldon
	// FormatSeldonGRPC is the same over gRPC: a Predict call's
	// SeldonMessage protobufs (seldongrpc.go), chosen by the transport.
	FormatSeldonGRPC
	// FormatTorchServeGRPC is TorchServe's gRPC Predictions call
	// (torchgrpc.go), chosen by the transport.
	FormatTorchServeGRPC
)

var formatNames = [...]string{
	FormatUnknown:  "unknown",
	FormatKServeV1: "kserve_v1",
	FormatOIP:      "oip_v2",
	FormatMLflow:   "mlflow",
	FormatJSON:     "json",
	FormatOIPGRPC:  "oip_grpc",

	FormatTFServingGRPC: "tfserving_grpc",

	FormatTFServingClassifyGRPC:       "tfserving_grpc_classify",
	FormatTFServingRegressGRPC:        "tfserving_grpc_regress",
	FormatTFServingMultiInferenceGRPC: "tfserving_grpc_multi_inference",
	FormatSeldon:                      "seldon_v1",
	FormatSeldonGRPC:                  "seldon_grpc",
	FormatTorchServeGRPC:              "torchserve_grpc",
}

// String returns the configuration name of f: "kserve_v1", "oip_v2", "mlflow", "seldon_v1", "json" or "unknown";
// "oip_grpc", "tfserving_grpc", "tfserving_grpc_…", "seldon_grpc" and
// "torchserve_grpc" for the gRPC formats, which configuration does not take.
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return "unknown"
}

// ParseFormat is the inverse of Format.String, for configuration. It ignores case and
// also accepts "auto" and "" for FormatUnknown.
func ParseFormat(s string) (Format, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "auto" {
		return FormatUnknown, nil
	}
	for f, name := range formatNames {
		if s == name && !Format(f).GRPC() {
			return Format(f), nil
		}
	}
	return FormatUnknown, fmt.Errorf("unknown payload format %q (want one of kserve_v1, oip_v2, mlflow, seldon_v1, json, auto)", s)
}

// GRPC reports whether f is one of the gRPC formats, which the transport
// chooses.
func (f Format) GRPC() bool {
	return f >= FormatOIPGRPC && f <= FormatTFServingMultiInferenceGRPC || f == FormatSeldonGRPC || f == FormatTorchServeGRPC
}

// DetectPath guesses the format from a request path:
// …/v1/models/{name}[/versions/{v}|/labels/{l}]:predict (also :classify and :regress) is
// FormatKServeV1, …/v2/models/{name}[/versions/{v}]/infer is FormatOIP and …/invocations is
// FormatMLflow, and Seldon Core 1's …/api/v1.0/predictions (and v0.1) is FormatSeldon. A query string is ignored, and so is any prefix an ingress adds before
// "/v1/models/" or "/v2/models/". Anything else is FormatUnknown.
func DetectPath(path []byte) Format {
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if bytes.HasSuffix(path, []byte("/invocations")) {
		return FormatMLflow
	}
	if IsSeldonPredictions(path) {
		return FormatSeldon
	}
	if i := bytes.LastIndex(path, []byte("/v1/models/")); i >= 0 {
		rest := path[i+len("/v1/models/"):]
		for _, verb := range [...]string{":predict", ":classify", ":regress"} {
			if bytes.HasSuffix(rest, []byte(verb)) && len(rest) > len(verb) && rest[0] != '/' && rest[0] != ':' {
				return FormatKServeV1
			}
		}
		return FormatUnknown
	}
	if i := bytes.LastIndex(path, []byte("/v2/models/")); i >= 0 {
		rest := path[i+len("/v2/models/"):]
		name, rest, ok := bytes.Cut(rest, []byte("/"))
		if !ok || len(name) == 0 {
			return FormatUnknown
		}
		if string(rest) == "infer" {
			return FormatOIP
		}
		if v, ok := bytes.CutPrefix(rest, []byte("versions/")); ok {
			if version, tail, ok := bytes.Cut(v, []byte("/")); ok && len(version) > 0 && string(tail) == "infer" {
				return FormatOIP
			}
		}
	}
	return FormatUnknown
}

// topKeys are the request fields that select a format. Unknown keys are features in FormatJSON.
type topKeys struct {
	instances, inputs, examples, context *fastjson.Value
	split, records                       *fastjson.Value // MLflow dataframe_split, dataframe_records
	columns, data                        *fastjson.Value // MLflow 1.x pandas "split" orient; Seldon's "data" too
	seldonOther                          bool            // Seldon's "jsonData", "strData" or "binData"
}

func scanTopKeys(o *fastjson.Object) topKeys {
	var k topKeys
	o.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "instances":
			k.instances = v
		case "inputs":
			k.inputs = v
		case "examples":
			k.examples = v
		case "context":
			k.context = v
		case "dataframe_split":
			k.split = v
		case "dataframe_records":
			k.records = v
		case "columns":
			k.columns = v
		case "data":
			k.data = v
		case "jsonData", "strData", "binData":
			k.seldonOther = true
		}
	})
	return k
}

// detect guesses the format of a parsed request body from its top-level shape.
func detect(root *fastjson.Value) Format {
	switch root.Type() {
	case fastjson.TypeObject:
		k := scanTopKeys(root.GetObject())
		switch {
		case isOIPInputs(k.inputs):
			return FormatOIP
		case k.split != nil && k.split.Type() == fastjson.TypeObject,
			k.records != nil && k.records.Type() == fastjson.TypeArray,
			k.columns != nil && k.columns.Type() == fastjson.TypeArray && k.data != nil && k.data.Type() == fastjson.TypeArray:
			return FormatMLflow
		case k.seldonOther, isSeldonData(k.data):
			return FormatSeldon
		case k.instances != nil && k.instances.Type() == fastjson.TypeArray,
			k.inputs != nil && (k.inputs.Type() == fastjson.TypeArray || k.inputs.Type() == fastjson.TypeObject),
			k.examples != nil && k.examples.Type() == fastjson.TypeArray:
			return FormatKServeV1
		}
		return FormatJSON
	case fastjson.TypeArray:
		a := root.GetArray()
		if len(a) == 0 {
			return FormatJSON
		}
		if t := a[0].Type(); t == fastjson.TypeObject || t == fastjson.TypeArray {
			return FormatJSON
		}
	}
	return FormatUnknown
}

// isOIPInputs reports whether v looks like OIP inputs: an array whose first element is an object with "datatype".
func isOIPInputs(v *fastjson.Value) bool {
	if v == nil || v.Type() != fastjson.TypeArray {
		return false
	}
	a := v.GetArray()
	return len(a) > 0 && a[0].Type() == fastjson.TypeObject && a[0].GetObject().Get("datatype") != nil
}

// isSeldonData reports whether v is Seldon's DefaultData: an object with
// "ndarray", "tensor" or "tftensor".
func isSeldonData(v *fastjson.Value) bool {
	if v == nil || v.Type() != fastjson.TypeObject {
		return false
	}
	o := v.GetObject()
	return o.Get("ndarray") != nil || o.Get("tensor") != nil || o.Get("tftensor") != nil
}

// seldonPredictions are the paths of Seldon Core 1's prediction API, of
// its executor and of its Python wrapper, after any prefix (its ingress's
// /seldon/{namespace}/{deployment}).
var seldonPredictions = [][]byte{[]byte("/api/v1.0/predictions"), []byte("/api/v0.1/predictions")}

// IsSeldonPredictions reports whether path, without its query, is Seldon
// Core 1's prediction API.
func IsSeldonPredictions(path []byte) bool {
	for _, s := range seldonPredictions {
		if bytes.HasSuffix(path, s) {
			return true
		}
	}
	return false
}
