package exporter

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	promconfig "github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
)

// inferTensor encodes an OIP tensor message with FP32 contents.
func inferTensor(name string, shape []uint64, data ...float32) []byte {
	var b, dims, contents []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, "FP32")
	for _, d := range shape {
		dims = protowire.AppendVarint(dims, d)
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, dims)
	var packed []byte
	for _, x := range data {
		packed = protowire.AppendFixed32(packed, math.Float32bits(x))
	}
	contents = protowire.AppendTag(contents, 6, protowire.BytesType)
	contents = protowire.AppendBytes(contents, packed)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendBytes(b, contents)
}

// typedTensor encodes an OIP tensor message of shape [1] holding one
// element of InferTensorContents field contents (8 bytes_contents, 4
// uint_contents), value v, already encoded.
func typedTensor(name, datatype string, contents protowire.Number, v []byte) []byte {
	var b, c []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, datatype)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, protowire.AppendVarint(nil, 1))
	c = protowire.AppendTag(c, contents, protowire.BytesType)
	c = protowire.AppendBytes(c, v)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendBytes(b, c)
}

// textTensor is a BYTES tensor of one string; countTensor a UINT32 one.
func textTensor(name, s string) []byte { return typedTensor(name, "BYTES", 8, []byte(s)) }
func countTensor(name string, n uint64) []byte {
	return typedTensor(name, "UINT32", 4, protowire.AppendVarint(nil, n))
}

// inferCall encodes a ModelInferRequest or ModelInferResponse: model,
// version and tensors (field 5).
func inferCall(model, version string, tensors ...[]byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, model)
	if version != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, version)
	}
	for _, t := range tensors {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, t)
	}
	return b
}

// modelName reads field 1 of a request, "" when it has none or is no
// protobuf.
func modelName(msg []byte) string { return fieldString(msg, 1) }

// fieldString reads the string field num of a message, "" when it has none.
func fieldString(msg []byte, num protowire.Number) string {
	for len(msg) > 0 {
		n0, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return ""
		}
		msg = msg[n:]
		if n0 == num && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(msg)
			return string(v)
		}
		if n = protowire.ConsumeFieldValue(n0, typ, msg); n < 0 {
			return ""
		}
		msg = msg[n:]
	}
	return ""
}

// grpcModelServer is a real gRPC server (grpc-go) speaking the OIP's
// service: ModelInfer answers one output per call, or fails as the model
// name asks; ModelStreamInfer answers as Triton does (tritonStream);
// /test.Echo/Chat echoes each message; any other call answers as
// ServerLive does, but /test.Echo/Missing, which fails NOT_FOUND.
func grpcModelServer(t testing.TB, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(append(opts, grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		switch method {
		case modelStreamInfer:
			return tritonStream(stream)
		case "/test.Echo/Chat":
			for {
				var msg []byte
				if err := stream.RecvMsg(&msg); err != nil {
					return nil
				}
				if err := stream.SendMsg(&msg); err != nil {
					return err
				}
			}
		case "/test.Echo/Missing":
			return status.Error(codes.NotFound, "no such model")
		case tfPredict:
			return tfServingPredict(stream)
		case tfClassify, tfRegress, tfMultiInference:
			return tfServingExamples(stream, method)
		case torchStreamPredictions:
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			if model, _ := payload.TorchServeRequestModel(req); string(model) == "bad" {
				return status.Error(codes.InvalidArgument, "no such input")
			}
			for _, tok := range []string{"Hel", "lo", "!"} {
				resp := appendField(nil, 1, []byte(tok))
				if err := stream.SendMsg(&resp); err != nil {
					return err
				}
			}
			return nil
		case torchPredictions:
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			resp := appendField(nil, 1, []byte("[0.5]")) // PredictionResponse.prediction
			return stream.SendMsg(&resp)
		case seldonPredict, seldonModelPredict:
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			resp := seldonMessage(nil, nil, 0.75) // ndarray [[0.75]]
			if payload.SeldonPuid(req) == nil {
				// Seldon's executor gives the answer a puid of its own.
				resp = append(appendField(nil, 2, appendField(nil, 1, []byte("exec-1"))), resp...)
			}
			return stream.SendMsg(&resp)
		case modelInfer:
		default:
			var msg []byte
			_ = stream.RecvMsg(&msg)
			out := []byte{0x08, 0x01} // ServerLiveResponse{live: true}
			return stream.SendMsg(&out)
		}
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		switch model := modelName(req); model {
		case "bad":
			return status.Error(codes.InvalidArgument, "unexpected input shape")
		case "broken":
			return status.Error(codes.Internal, "the model crashed")
		case "slow": // answers never: only the sidecar's timeout ends it
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		_ = stream.SetHeader(metadata.Pairs("x-served-by", "triton"))
		stream.SetTrailer(metadata.Pairs("x-queue-us", "12"))
		resp := inferCall(modelName(req), "", inferTensor("y", []uint64{1}, 0.75))
		return stream.SendMsg(&resp)
	}))...)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String()
}

// streamAnswer encodes a ModelStreamInferResponse: an error message, or a
// ModelInferResponse of model for request id with the tensors, flagged
// triton_final_response when final is 0 or 1 (-1: not flagged).
func streamAnswer(errMsg, model, id string, final int, tensors ...[]byte) []byte {
	resp := inferCall(model, "", tensors...)
	if id != "" {
		resp = protowire.AppendTag(resp, 3, protowire.BytesType)
		resp = protowire.AppendString(resp, id)
	}
	if final >= 0 {
		var value, entry []byte
		value = protowire.AppendTag(value, 1, protowire.VarintType)
		value = protowire.AppendVarint(value, uint64(final))
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, "triton_final_response")
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendBytes(entry, value)
		resp = protowire.AppendTag(resp, 4, protowire.BytesType)
		resp = protowire.AppendBytes(resp, entry)
	}
	var b []byte
	if errMsg != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, errMsg)
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, resp)
}

// tritonStream answers a ModelStreamInfer call as Triton does, by the
// model each request names: "llm" is decoupled and streams three pieces of
// text as Triton's vLLM backend does with its additional outputs, the
// last flagged final with its finish reason; "token" is decoupled and
// streams two tokens, then an empty last answer flagged final; "silent" is decoupled and answers
// nothing; "broken" answers an error of the inference; "misfit" and
// "queued" are rejected before inference, as a request whose inputs do
// not fit and one that finds the queue full are; "down" ends the call
// with UNAVAILABLE; any other model answers once, unflagged.
func tritonStream(stream grpc.ServerStream) error {
	for {
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return nil
		}
		model, id := modelName(req), fieldString(req, 3)
		var answers [][]byte
		switch model {
		case "llm":
			answers = [][]byte{
				streamAnswer("", model, id, 0, textTensor("text_output", "Hel"), countTensor("num_output_tokens", 1)),
				streamAnswer("", model, id, 0, textTensor("text_output", "lo"), countTensor("num_output_tokens", 1)),
				streamAnswer("", model, id, 1, textTensor("text_output", "!"), textTensor("finish_reason", "length"), countTensor("num_output_tokens", 1)),
			}
		case "token":
			answers = [][]byte{
				streamAnswer("", model, id, 0, inferTensor("token", []uint64{1}, 101)),
				streamAnswer("", model, id, 0, inferTensor("token", []uint64{1}, 102)),
				streamAnswer("", model, id, 1),
			}
		case "silent":
		case "broken":
			answers = [][]byte{streamAnswer("the model crashed", model, id, -1)}
		case "misfit", "queued":
			// Triton's stream handler rejects a request it does not take
			// with its id alone: no model name, no final flag.
			msg := "unexpected shape for input 'x' for model '" + model + "'. Expected [-1,3], got [1,2]."
			if model == "queued" {
				msg = "Exceeds maximum queue size"
			}
			var b []byte
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, msg)
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), id))
			answers = [][]byte{b}
		case "down":
			return status.Error(codes.Unavailable, "the model is being unloaded")
		default:
			answers = [][]byte{streamAnswer("", model, id, -1, inferTensor("y", []uint64{1}, 0.25))}
		}
		for _, a := range answers {
			if err := stream.SendMsg(&a); err != nil {
				return err
			}
		}
	}
}

// tfServingPredict answers a Predict call as TensorFlow Serving does: one
// output "y" of the request's batch size, or, for the model "bad", the
// status TensorFlow Serving gives a request that does not fit the
// signature.
func tfServingPredict(stream grpc.ServerStream) error {
	var req []byte
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	model, _ := payload.TFRequestModel(payload.FormatTFServingGRPC, req)
	if string(model) == "bad" {
		return status.Error(codes.InvalidArgument, "input size does not match signature")
	}
	resp := tfPredictMessage(1, "", 0, "y", []int64{1}, 0.75)
	return stream.SendMsg(&resp)
}

// tfServingExamples answers a Classify, Regress or MultiInference call
// with the results of two examples, as TensorFlow Serving does: each
// classified "no" 0.25, "yes" 0.75, and regressed 0.5.
func tfServingExamples(stream grpc.ServerStream, method string) error {
	var req []byte
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	resp := tfExamplesAnswer(method, 0.75, 0.5)
	return stream.SendMsg(&resp)
}

// tfExamplesAnswer encodes the answer to a Classify, Regress or
// MultiInference call (by method) on two examples: each classified "no"
// 1-yes and "yes" yes, and regressed value.
func tfExamplesAnswer(method string, yes, value float32) []byte {
	var classes, regressions []byte
	for range 2 {
		no := appendField(nil, 1, []byte("no"))
		no = protowire.AppendFixed32(protowire.AppendTag(no, 2, protowire.Fixed32Type), math.Float32bits(1-yes))
		y := appendField(nil, 1, []byte("yes"))
		y = protowire.AppendFixed32(protowire.AppendTag(y, 2, protowire.Fixed32Type), math.Float32bits(yes))
		classes = appendField(classes, 1, appendField(appendField(nil, 1, no), 1, y)) // Classifications
		v := protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), math.Float32bits(value))
		regressions = appendField(regressions, 1, v) // Regression
	}
	switch method {
	case tfClassify:
		return appendField(nil, 1, classes) // ClassificationResponse.result
	case tfRegress:
		return appendField(nil, 1, regressions)
	}
	// MultiInferenceResponse.results: a classification, then a regression
	return appendField(appendField(nil, 1, appendField(nil, 2, classes)), 1, appendField(nil, 3, regressions))
}

// seldonMessage encodes a SeldonMessage: with shape, data.tensor of the
// values under names; else data.ndarray, a row of one value for each.
func seldonMessage(names []string, shape []int32, values ...float64) []byte {
	var data []byte
	for _, n := range names {
		data = appendField(data, 1, []byte(n))
	}
	if len(shape) > 0 {
		var dims, vals []byte
		for _, d := range shape {
			dims = protowire.AppendVarint(dims, uint64(d))
		}
		for _, v := range values {
			vals = protowire.AppendFixed64(vals, math.Float64bits(v))
		}
		data = appendField(data, 2, appendField(appendField(nil, 1, dims), 2, vals)) // tensor
	} else {
		var rows []byte
		for _, v := range values {
			number := protowire.AppendFixed64(protowire.AppendTag(nil, 2, protowire.Fixed64Type), math.Float64bits(v)) // Value.number_value
			row := appendField(nil, 6, appendField(nil, 1, number))                                                    // Value.list_value
			rows = appendField(rows, 1, row)                                                                           // ListValue.values
		}
		data = appendField(data, 3, rows) // ndarray
	}
	return appendField(nil, 3, data) // SeldonMessage.data
}

// tfExamplesRequest encodes a ClassificationRequest or RegressionRequest
// (or, multi, a MultiInferenceRequest) of model and version with two
// tf.Examples, each with a float feature "x" and a string feature "city".
func tfExamplesRequest(model string, version int64, multi bool) []byte {
	var list []byte
	for _, x := range []float32{1.5, 2.5} {
		float := appendField(nil, 2, appendField(nil, 1, protowire.AppendFixed32(nil, math.Float32bits(x)))) // Feature.float_list
		city := appendField(nil, 1, appendField(nil, 1, []byte("Oslo")))                                     // Feature.bytes_list
		features := appendField(nil, 1, appendField(appendField(nil, 1, []byte("x")), 2, float))
		features = appendField(features, 1, appendField(appendField(nil, 1, []byte("city")), 2, city))
		list = appendField(list, 1, appendField(nil, 1, features)) // ExampleList.examples: Example.features
	}
	spec := appendField(nil, 1, []byte(model))
	if version != 0 {
		spec = appendField(spec, 2, appendVarintField(nil, 1, uint64(version)))
	}
	var b []byte
	if multi {
		b = appendField(nil, 1, appendField(nil, 1, spec)) // tasks: InferenceTask.model_spec
	} else {
		b = appendField(nil, 1, spec) // model_spec
	}
	return appendField(b, 2, appendField(nil, 1, list)) // input: Input.example_list
}

// tfPredictMessage encodes a PredictRequest (mapField 2) or a
// PredictResponse (1) naming model and version, with one DT_FLOAT tensor
// name of shape, its values packed in float_val.
func tfPredictMessage(mapField protowire.Number, model string, version int64, name string, shape []int64, values ...float32) []byte {
	var dims, packed []byte
	for _, d := range shape {
		dims = appendField(dims, 2, appendVarintField(nil, 1, uint64(d))) // Dim.size
	}
	for _, v := range values {
		packed = protowire.AppendFixed32(packed, math.Float32bits(v))
	}
	tensor := appendVarintField(nil, 1, 1)  // dtype DT_FLOAT
	tensor = appendField(tensor, 2, dims)   // tensor_shape
	tensor = appendField(tensor, 5, packed) // float_val
	var b []byte
	if model != "" {
		spec := appendField(nil, 1, []byte(model))
		if version != 0 {
			spec = appendField(spec, 2, appendVarintField(nil, 1, uint64(version))) // Int64Value
		}
		b = appendField(b, 1, spec) // model_spec
	}
	return appendField(b, mapField, appendField(appendField(nil, 1, []byte(name)), 2, tensor))
}

// appendField appends the length-delimited field num to b.
func appendField(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// appendVarintField appends the varint field num to b.
func appendVarintField(b []byte, num protowire.Number, x uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), x)
}

// grpcSidecar starts grpcModelServer and the sidecar in front of it, with
// mod, if not nil, changing the options; up is the model server's URL.
func grpcSidecar(t testing.TB, mod func(*Options)) (e *Exporter, up string) {
	t.Helper()
	up = grpcModelServer(t)
	return startExporter(t, "http://127.0.0.1:1", func(o *Options) {
		o.Proxy.GRPCUpstream = up
		o.GRPCListenAddress = "127.0.0.1:0"
		if mod != nil {
			mod(o)
		}
	}), up
}

func grpcClient(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// gRPC clients call through the sidecar as they would call the model
// server: answers, statuses, headers and trailers pass unchanged, streams
// stream, and ModelInfer calls are predictions, counted, timed and parsed.
func TestGRPCProxy(t *testing.T) {
	e, _ := grpcSidecar(t, func(o *Options) {
		o.Proxy.Timeout = 300 * time.Millisecond
	})
	conn := grpcClient(t, e.GRPCAddr())
	ctx := context.Background()

	req := inferCall("fraud", "7", inferTensor("x", []uint64{1, 2}, 1.5, 2.5))
	for range 3 {
		var resp []byte
		var header, trailer metadata.MD
		require.NoError(t, conn.Invoke(ctx, modelInfer, &req, &resp, grpc.Header(&header), grpc.Trailer(&trailer)))
		require.Equal(t, inferCall("fraud", "", inferTensor("y", []uint64{1}, 0.75)), resp, "the answer, byte for byte")
		require.Equal(t, []string{"triton"}, header.Get("x-served-by"))
		require.Equal(t, []string{"12"}, trailer.Get("x-queue-us"))
	}
	fraud := map[string]string{"model": "fraud"}
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_requests_total", fraud))
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_prediction_duration_seconds_count", fraud))
	eventually(t, e, 3, "modelmon_payloads_parsed_total", map[string]string{"model": "fraud", "format": "oip_grpc"})
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_predictions_total", fraud))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "fraud", "version": "7"}))

	// Statuses pass through, and count as the model server's errors.
	for _, tc := range []struct {
		model  string
		code   codes.Code
		msg    string
		reason string
	}{
		{"bad", codes.InvalidArgument, "unexpected input shape", "upstream_4xx"},
		{"broken", codes.Internal, "the model crashed", "upstream_5xx"},
		{"slow", codes.DeadlineExceeded, "modelmon: the model server did not answer in time", "timeout"},
	} {
		in := inferCall(tc.model, "", inferTensor("x", []uint64{1, 1}, 1))
		var resp []byte
		err := conn.Invoke(ctx, modelInfer, &in, &resp)
		st, _ := status.FromError(err)
		require.Equal(t, tc.code, st.Code(), "%v", err)
		require.Equal(t, tc.msg, st.Message())
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": tc.model, "reason": tc.reason}))
	}

	// A request the parser can't read still goes through, named by the
	// default model, and is counted as a payload error.
	garbage := []byte{0xff, 0xff, 0xff, 0x01}
	var answer []byte
	require.NoError(t, conn.Invoke(ctx, modelInfer, &garbage, &answer))
	eventually(t, e, 1, "modelmon_payload_errors_total", map[string]string{"model": "default", "reason": "invalid_protobuf"})

	// Other calls pass through, streams included.
	var live []byte
	empty := []byte{}
	require.NoError(t, conn.Invoke(ctx, "/inference.GRPCInferenceService/ServerLive", &empty, &live))
	require.Equal(t, []byte{0x08, 0x01}, live)
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/test.Echo/Chat")
	require.NoError(t, err)
	for i := range 3 {
		msg := inferCall("llm", "", inferTensor("x", []uint64{1, 1}, float32(i)))
		require.NoError(t, stream.SendMsg(&msg))
		var echo []byte
		require.NoError(t, stream.RecvMsg(&echo), "each message comes back before the stream ends")
		require.Equal(t, msg, echo)
	}
	require.NoError(t, stream.CloseSend())
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
	for _, r := range collector.ErrorReasons {
		require.Zero(t, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": r}), r)
	}

	// One the model server fails counts as a passthrough error; one the
	// client gives up does not.
	err = conn.Invoke(ctx, "/test.Echo/Missing", &empty, &live)
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	cancelled, cancel := context.WithCancel(ctx)
	stream, err = conn.NewStream(cancelled, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/test.Echo/Chat")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&empty))
	require.NoError(t, stream.RecvMsg(&live))
	cancel()
	eventually(t, e, 4, "modelmon_passthrough_requests_total", nil)
	// The count of a call is taken when it starts; its outcome once it
	// ends, which for the cancelled stream nothing shows. Stopping waits
	// for every call's handler to return (GracefulStop), so its outcome
	// has been counted, or not, by then.
	stopCtx, stopCancel := context.WithTimeout(ctx, 10*time.Second)
	defer stopCancel()
	require.NoError(t, e.Stop(stopCtx))
	passthroughErrors := func(reason string) float64 {
		return testutil.ToFloat64(e.metrics.PassthroughErrors.WithLabelValues(reason))
	}
	require.Equal(t, 1.0, passthroughErrors("upstream_4xx"))
	for _, r := range collector.ErrorReasons {
		if r != "upstream_4xx" {
			require.Zero(t, passthroughErrors(r), r)
		}
	}
}

// TensorFlow Serving's Predict calls are predictions too: the model and
// version come from the request's model_spec, the call is counted, timed
// and parsed (format tfserving_grpc), and its status counts as ModelInfer's
// does.
func TestGRPCTFServingPredict(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	ctx := context.Background()
	req := tfPredictMessage(2, "mnist", 3, "x", []int64{2, 2}, 1, 2, 3, 4)
	var resp []byte
	var header metadata.MD
	require.NoError(t, conn.Invoke(ctx, tfPredict, &req, &resp, grpc.Header(&header)))
	require.Equal(t, tfPredictMessage(1, "", 0, "y", []int64{1}, 0.75), resp, "the answer, byte for byte")

	mnist := map[string]string{"model": "mnist"}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", mnist))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_duration_seconds_count", mnist))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "mnist", "version": "3"}))
	// The answer has one prediction for two instances: the request's
	// records are kept, the answer counted as a payload error.
	eventually(t, e, 1, "modelmon_payloads_parsed_total", map[string]string{"model": "mnist", "format": "tfserving_grpc"})
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", mnist))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "mnist", "reason": "shape_mismatch"}))
	require.Zero(t, metricValue(t, e, "modelmon_passthrough_requests_total", nil))

	bad := tfPredictMessage(2, "bad", 0, "x", []int64{1, 1}, 1)
	err := conn.Invoke(ctx, tfPredict, &bad, &resp)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "bad", "reason": "upstream_4xx"}))
}

// A model's models[].format names its HTTP bodies' format: its gRPC
// calls are still read in the format their method gives.
func TestGRPCIgnoresModelFormat(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: mnist\n    format: kserve_v1\n"), 0o644))
	e, _ := grpcSidecar(t, func(o *Options) { o.ConfigFile = cfg })
	conn := grpcClient(t, e.GRPCAddr())
	req := tfPredictMessage(2, "mnist", 3, "x", []int64{1, 2}, 1, 2)
	var resp []byte
	require.NoError(t, conn.Invoke(context.Background(), tfPredict, &req, &resp))
	eventually(t, e, 1, "modelmon_payloads_parsed_total", map[string]string{"model": "mnist", "format": "tfserving_grpc"})
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "mnist"}))
	require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "mnist", "reason": "invalid_json"}))
}

// TensorFlow Serving's calls on tf.Examples, Classify, Regress and
// MultiInference, are predictions: one per example, with the features of
// each and its class or value.
func TestGRPCTFServingExamples(t *testing.T) {
	e, _ := grpcSidecar(t, labelsOn)
	conn := grpcClient(t, e.GRPCAddr())
	for _, tc := range []struct {
		method, model, format string
	}{
		{tfClassify, "churn", "tfserving_grpc_classify"},
		{tfRegress, "price", "tfserving_grpc_regress"},
		{tfMultiInference, "both", "tfserving_grpc_multi_inference"},
	} {
		req := tfExamplesRequest(tc.model, 4, tc.method == tfMultiInference)
		var resp []byte
		ctx := metadata.AppendToOutgoingContext(context.Background(), string(e.proxy.labels.header), tc.model+"-1")
		require.NoError(t, conn.Invoke(ctx, tc.method, &req, &resp), tc.method)

		m := map[string]string{"model": tc.model}
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", m), tc.method)
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": tc.model, "version": "4"}), tc.method)
		eventually(t, e, 1, "modelmon_payloads_parsed_total", map[string]string{"model": tc.model, "format": tc.format})
		require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", m), tc.method)
		require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", m), tc.method)
	}
	require.Zero(t, metricValue(t, e, "modelmon_passthrough_requests_total", nil))

	// The examples' predictions join their labels (instance i of the batch
	// is <id>/<i>): the class of the best score, the regressed value.
	waitIdle(t, e) // every prediction waits for its label
	st, r := postLabels(t, e, `{"id":"churn-1/1","label":"yes"}`+"\n"+`{"id":"price-1/0","label":0.5}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched"}, r.Results, "%+v", r)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_correct_total", map[string]string{"model": "churn", "class": "yes"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_prediction_absolute_error_total", map[string]string{"model": "price"}))
}

// Seldon Core 1's Predict calls are predictions: the deployment the
// "seldon" metadata names is the model, the request's meta.puid the id.
func TestGRPCSeldonPredict(t *testing.T) {
	e, _ := grpcSidecar(t, labelsOn)
	conn := grpcClient(t, e.GRPCAddr())
	meta := appendField(nil, 2, appendField(nil, 1, []byte("req-1"))) // SeldonMessage.meta.puid
	req := append(meta, seldonMessage([]string{"a", "b"}, []int32{1, 2}, 1.5, 2.5)...)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "seldon", "iris", "namespace", "prod")
	for _, method := range []string{seldonPredict, seldonModelPredict} {
		var resp []byte
		require.NoError(t, conn.Invoke(ctx, method, &req, &resp), method)
		require.Equal(t, seldonMessage(nil, nil, 0.75), resp, "the answer, byte for byte")
	}
	iris := map[string]string{"model": "iris"}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_requests_total", iris))
	eventually(t, e, 2, "modelmon_payloads_parsed_total", map[string]string{"model": "iris", "format": "seldon_grpc"})
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", iris))
	require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", iris))

	waitIdle(t, e) // every prediction waits for its label
	st, r := postLabels(t, e, `{"id":"req-1","label":0.5}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched"}, r.Results)
	require.Equal(t, 0.25, metricValue(t, e, "modelmon_prediction_absolute_error_total", iris))

	// SendFeedback passes through, its reward is counted, and its truth
	// labels the prediction its response's meta.puid names.
	predict := append(appendField(nil, 2, appendField(nil, 1, []byte("req-2"))), seldonMessage(nil, nil, 1)...)
	var resp []byte
	require.NoError(t, conn.Invoke(ctx, seldonPredict, &predict, &resp))
	response := append(appendField(nil, 2, appendField(nil, 1, []byte("req-2"))), resp...)
	feedback := appendField(appendField(nil, 2, response), 4, seldonMessage(nil, nil, 1.5)) // Feedback.response, .truth
	feedback = protowire.AppendFixed32(protowire.AppendTag(feedback, 3, protowire.Fixed32Type), math.Float32bits(0.5))
	require.NoError(t, conn.Invoke(ctx, seldonSendFeedback, &feedback, &resp))
	eventually(t, e, 2, "modelmon_labels_matched_total", iris)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
	require.Equal(t, 0.25+0.75, metricValue(t, e, "modelmon_prediction_absolute_error_total", iris))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feedback_reward_count", iris))
	require.Equal(t, 0.5, metricValue(t, e, "modelmon_feedback_reward_sum", iris))

	// A request without a puid takes the one Seldon gives its answer, and
	// no id of the sidecar's comes back.
	var header metadata.MD
	anonymous := seldonMessage(nil, nil, 2)
	require.NoError(t, conn.Invoke(ctx, seldonPredict, &anonymous, &resp, grpc.Header(&header)))
	require.Empty(t, header.Get(strings.ToLower(string(e.proxy.labels.header))), "%v", header)
	waitIdle(t, e)
	st, r = postLabels(t, e, `{"id":"exec-1","label":1}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched"}, r.Results)
}

// Without the label join, SendFeedback still gives its reward, and a
// message that is not a Feedback counts as a payload error.
func TestGRPCSeldonFeedbackReward(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	ctx := metadata.AppendToOutgoingContext(context.Background(), "seldon", "bandit")
	for _, msg := range [][]byte{
		protowire.AppendFixed32(protowire.AppendTag(nil, 3, protowire.Fixed32Type), math.Float32bits(1)),
		appendField(nil, 4, seldonMessage(nil, nil, 1)), // a truth alone: a reward of 0
		{0x1d, 0x00}, // a reward cut short
	} {
		var resp []byte
		require.NoError(t, conn.Invoke(ctx, seldonSendFeedback, &msg, &resp))
	}
	bandit := map[string]string{"model": "bandit"}
	eventually(t, e, 1, "modelmon_payload_errors_total", map[string]string{"model": "bandit", "reason": "invalid_protobuf"})
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_feedback_reward_count", bandit))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feedback_reward_sum", bandit))
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
}

// TorchServe's Predictions calls are predictions: the model and version
// come from the request, its "data" input is the body.
func TestGRPCTorchServePredictions(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"instances": [[1, 2]]}`))
	req := appendField(appendField(appendField(nil, 1, []byte("resnet")), 2, []byte("2.0")), 3, input)
	var resp []byte
	require.NoError(t, conn.Invoke(context.Background(), torchPredictions, &req, &resp))
	require.Equal(t, appendField(nil, 1, []byte("[0.5]")), resp, "the answer, byte for byte")
	resnet := map[string]string{"model": "resnet"}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", resnet))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "resnet", "version": "2.0"}))
	eventually(t, e, 1, "modelmon_payloads_parsed_total", map[string]string{"model": "resnet", "format": "torchserve_grpc"})
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_predictions_total", resnet))
	require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", resnet))
}

// TorchServe's StreamPredictions call is one prediction: its answers pass
// through as they come, the first one's time is the time to first byte,
// and the call is timed and parsed when it ends.
func TestGRPCTorchServeStreamPredictions(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	desc := &grpc.StreamDesc{ServerStreams: true}
	call := func(model string) ([]string, error) {
		input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"prompt": "Hi", "max_tokens": 3}`))
		req := appendField(appendField(nil, 1, []byte(model)), 3, input)
		cs, err := conn.NewStream(context.Background(), desc, torchStreamPredictions)
		require.NoError(t, err)
		require.NoError(t, cs.SendMsg(&req))
		require.NoError(t, cs.CloseSend())
		var got []string
		for {
			var msg []byte
			if err := cs.RecvMsg(&msg); err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				return got, err
			}
			got = append(got, string(msg))
		}
	}
	got, err := call("llama")
	require.NoError(t, err)
	want := []string{string(appendField(nil, 1, []byte("Hel"))), string(appendField(nil, 1, []byte("lo"))), string(appendField(nil, 1, []byte("!")))}
	require.Equal(t, want, got, "the answers, byte for byte")
	llama := map[string]string{"model": "llama"}
	eventually(t, e, 1, "modelmon_prediction_duration_seconds_count", llama)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", llama))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", llama))
	eventually(t, e, 1, "modelmon_payloads_parsed_total", map[string]string{"model": "llama", "format": "torchserve_grpc"})
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_predictions_total", llama))
	require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", llama), "a text answer gives no prediction, and no error")
	require.Zero(t, metricValue(t, e, "modelmon_passthrough_requests_total", nil))

	_, err = call("bad")
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	eventually(t, e, 1, "modelmon_prediction_errors_total", map[string]string{"model": "bad", "reason": "upstream_4xx"})
}

// Each request of Triton's ModelStreamInfer call is a prediction: counted
// when it goes to the model server, and timed, sized and parsed with its
// last answer when that reaches the client, whether the model answers once
// or, decoupled, many times or not at all. Answers pass through unchanged.
func TestGRPCModelStreamInfer(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	withID := func(model, id string) []byte {
		req := inferCall(model, "", inferTensor("x", []uint64{1, 2}, 1, 2))
		if id != "" {
			req = protowire.AppendTag(req, 3, protowire.BytesType)
			req = protowire.AppendString(req, id)
		}
		return req
	}

	stream, err := conn.NewStream(context.Background(), desc, modelStreamInfer)
	require.NoError(t, err)
	answers := 0
	for _, req := range [][]byte{withID("llm", "a"), withID("tabular", ""), withID("llm", "b"), withID("silent", "s"), withID("broken", "e"), withID("tabular", ""), withID("token", "t"),
		withID("misfit", "m"), withID("queued", "q")} {
		require.NoError(t, stream.SendMsg(&req))
	}
	require.NoError(t, stream.CloseSend())
	var llmBytes int
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		if strings.Contains(string(msg), "llm") {
			llmBytes += len(msg)
		}
		answers++
	}
	require.Equal(t, 3+1+3+0+1+1+3+1+1, answers)

	for _, tc := range []struct {
		model               string
		requests, durations float64
		parsed, respBytes   float64
	}{
		{"llm", 2, 2, 2, float64(llmBytes)},
		{"tabular", 2, 2, 2, -1},
		{"silent", 1, 0, 0, -1},
		{"broken", 1, 1, 0, -1},
		{"token", 1, 1, 1, -1},
	} {
		m := map[string]string{"model": tc.model}
		require.Equal(t, tc.requests, metricValue(t, e, "modelmon_requests_total", m), tc.model)
		require.Equal(t, tc.durations, metricValue(t, e, "modelmon_prediction_duration_seconds_count", m), tc.model)
		require.Equal(t, 0.0, metricValue(t, e, "modelmon_requests_in_flight", m), tc.model)
		eventually(t, e, tc.parsed, "modelmon_payloads_parsed_total", map[string]string{"model": tc.model, "format": "oip_grpc"})
		if tc.respBytes >= 0 {
			require.Equal(t, tc.respBytes, metricValue(t, e, "modelmon_response_size_bytes_sum", m), "the size of all its answers")
		}
	}
	llm := map[string]string{"model": "llm"}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", llm), "the first of many answers")
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", map[string]string{"model": "token"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", map[string]string{"model": "tabular"}), "a single answer")
	// The last answer with outputs is the prediction: one record each. An
	// LLM's text is none: its finish reason is, and the tokens its answers
	// add up to are counted.
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", llm))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_generations_total", map[string]string{"model": "llm", "finish_reason": "length"}))
	require.Equal(t, 6.0, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": "llm", "type": "output"}))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_generation_time_per_output_token_seconds_count", llm))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "token"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "broken", "reason": "upstream_5xx"}))
	// Triton gives a stream's errors no status: a request it rejected is
	// the client's error, unless the server could not take it now.
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "misfit", "reason": "upstream_4xx"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "misfit", "reason": "upstream_5xx"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "queued", "reason": "upstream_5xx"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil), "predictions, not passed through")

	// A call the model server ends with an error status ends the requests
	// still waiting for an answer with it.
	stream, err = conn.NewStream(context.Background(), desc, modelStreamInfer)
	require.NoError(t, err)
	for _, req := range [][]byte{withID("silent", "s2"), withID("down", "d")} {
		require.NoError(t, stream.SendMsg(&req))
	}
	var msg []byte
	err = stream.RecvMsg(&msg)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Equal(t, "the model is being unloaded", status.Convert(err).Message())
	for _, model := range []string{"silent", "down"} {
		eventually(t, e, 1, "modelmon_prediction_errors_total", map[string]string{"model": model, "reason": "upstream_5xx"})
		require.Equal(t, 0.0, metricValue(t, e, "modelmon_requests_in_flight", map[string]string{"model": model}))
	}

	// A client that goes away mid-call leaves nothing in flight, and no
	// error of the model server's.
	ctx, cancel := context.WithCancel(context.Background())
	stream, err = conn.NewStream(ctx, desc, modelStreamInfer)
	require.NoError(t, err)
	req := withID("silent", "gone")
	require.NoError(t, stream.SendMsg(&req))
	eventually(t, e, 3, "modelmon_requests_total", map[string]string{"model": "silent"})
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_in_flight", map[string]string{"model": "silent"}))
	cancel()
	eventually(t, e, 0, "modelmon_requests_in_flight", map[string]string{"model": "silent"})
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "silent", "reason": "upstream_5xx"}))
}

// A gRPC model server that is down, or a request over the size limit, gets
// the client a clear gRPC error, counted; the sidecar stays up.
func TestGRPCProxyFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close()
	e := startExporter(t, "http://127.0.0.1:1", func(o *Options) {
		o.Proxy.GRPCUpstream = "http://" + dead
		o.GRPCListenAddress = "127.0.0.1:0"
		o.Proxy.MaxBodySize = 1 << 10
	})
	conn := grpcClient(t, e.GRPCAddr())
	req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
	var resp []byte
	err = conn.Invoke(context.Background(), modelInfer, &req, &resp)
	st, _ := status.FromError(err)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", err)
	require.Equal(t, "modelmon: could not reach the model server", st.Message())
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "fraud", "reason": "connection"}))
	empty := []byte{}
	err = conn.Invoke(context.Background(), "/inference.GRPCInferenceService/ServerLive", &empty, &resp)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "connection"}))

	big := inferCall("fraud", "", inferTensor("x", []uint64{1, 400}, make([]float32, 400)...))
	err = conn.Invoke(context.Background(), modelInfer, &big, &resp)
	st, _ = status.FromError(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)

	// A ModelStreamInfer call the model server can't take counts its first
	// request, failed as a ModelInfer call is.
	stream, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, modelStreamInfer)
	require.NoError(t, err)
	llm := inferCall("llm", "", textTensor("text_input", "Hello"))
	require.NoError(t, stream.SendMsg(&llm))
	err = stream.RecvMsg(&resp)
	st, _ = status.FromError(err)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", err)
	require.Equal(t, "modelmon: could not reach the model server", st.Message())
	llmLabels := map[string]string{"model": "llm"}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", llmLabels))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "llm", "reason": "connection"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_requests_in_flight", llmLabels))

	// One over --proxy.max-body-size ends the call as ModelInfer's does.
	stream, err = conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, modelStreamInfer)
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&big))
	err = stream.RecvMsg(&resp)
	st, _ = status.FromError(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "fraud"}))
}

func TestGRPCProxyBadUpstream(t *testing.T) {
	for _, up := range []string{"ftp://127.0.0.1:8001", "127.0.0.1:8001", "http://127.0.0.1:8001/x"} {
		_, err := New(Options{Proxy: ProxyOptions{Upstream: "http://127.0.0.1:8080", GRPCUpstream: up}})
		require.ErrorContains(t, err, "--proxy.grpc-upstream", up)
	}
}

// Each gRPC status stands for the HTTP status of gRPC's own mapping, so
// that it counts as the caller's error or the model server's; but for
// UNIMPLEMENTED, a method the model server does not have, which stands for
// 404 as an unknown path does.
func TestGRPCHTTPStatus(t *testing.T) {
	for code, want := range map[codes.Code]int{
		codes.OK: 200, codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400,
		codes.DeadlineExceeded: 504, codes.NotFound: 404, codes.AlreadyExists: 409,
		codes.PermissionDenied: 403, codes.ResourceExhausted: 429, codes.FailedPrecondition: 400,
		codes.Aborted: 409, codes.OutOfRange: 400, codes.Unimplemented: 404, codes.Internal: 500,
		codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401, codes.Code(99): 500,
	} {
		require.Equal(t, want, grpcHTTPStatus(code), "%v", code)
	}
}

// A ModelStreamInfer call keeps what it follows bounded: at most
// maxStreamPending requests, and streamBudget times --capture.max-body-size
// of their messages, past which the oldest are closed as they stand; a
// request larger than the capture is followed, and its capture dropped.
func TestGRPCModelStreamInferBounds(t *testing.T) {
	const capture = 16 << 10
	e, _ := grpcSidecar(t, func(o *Options) { o.CaptureMaxBodySize = capture })
	conn := grpcClient(t, e.GRPCAddr())
	request := func(model string, features int) []byte {
		return inferCall(model, "", inferTensor("x", []uint64{1, uint64(features)}, make([]float32, features)...))
	}
	silent := map[string]string{"model": "silent"}

	// Many small requests a decoupled model never answers.
	stream, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, modelStreamInfer)
	require.NoError(t, err)
	small := request("silent", 1)
	for range maxStreamPending + 10 {
		require.NoError(t, stream.SendMsg(&small))
	}
	eventually(t, e, maxStreamPending+10, "modelmon_requests_total", silent)
	require.Less(t, maxStreamPending, streamBudget*capture/len(small))
	require.Equal(t, float64(maxStreamPending), metricValue(t, e, "modelmon_requests_in_flight", silent))

	// Fewer large ones fill the budget first.
	big := request("silent", 1000)
	require.Less(t, len(big), capture)
	stream2, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, modelStreamInfer)
	require.NoError(t, err)
	for range 30 {
		require.NoError(t, stream2.SendMsg(&big))
	}
	eventually(t, e, maxStreamPending+10+30, "modelmon_requests_total", silent)
	require.Greater(t, 30, streamBudget*capture/len(big))
	require.Equal(t, float64(maxStreamPending+streamBudget*capture/len(big)), metricValue(t, e, "modelmon_requests_in_flight", silent))

	// A request over the capture is followed, not captured.
	huge := request("tabular", 5000)
	require.NoError(t, stream.SendMsg(&huge))
	var answer []byte
	require.NoError(t, stream.RecvMsg(&answer))
	// The sidecar accounts for an answer once the client has it.
	tabular := map[string]string{"model": "tabular"}
	eventually(t, e, 1, "modelmon_prediction_duration_seconds_count", tabular)
	eventually(t, e, 1, "modelmon_capture_dropped_total", map[string]string{"model": "tabular", "reason": "body_too_large"})

	require.NoError(t, stream.CloseSend())
	require.NoError(t, stream2.CloseSend())
	for _, s := range []grpc.ClientStream{stream, stream2} {
		require.ErrorIs(t, s.RecvMsg(&answer), io.EOF)
	}
	eventually(t, e, 0, "modelmon_requests_in_flight", silent)
}

// The messages every ModelStreamInfer call keeps for the capture take from
// --capture.max-queue-bytes, as the captures waiting for the parser do: many
// calls can't hold more than it together, a request that finds no room is
// followed but not captured (queue_full), and what a call kept is given
// back when its requests close.
func TestGRPCModelStreamInferQueueBudget(t *testing.T) {
	big := inferCall("silent", "", inferTensor("x", []uint64{1, 1000}, make([]float32, 1000)...))
	e, _ := grpcSidecar(t, func(o *Options) {
		o.CaptureMaxBodySize = 16 << 10
		o.CaptureMaxBytes = int64(3*len(big) + len(big)/2)
	})
	conn := grpcClient(t, e.GRPCAddr())
	newStream := func() grpc.ClientStream {
		s, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, modelStreamInfer)
		require.NoError(t, err)
		return s
	}
	silent := map[string]string{"model": "silent"}

	// Two calls to a decoupled model that never answers: the first keeps
	// three requests, the second finds no room for its own.
	holding, other := newStream(), newStream()
	for range 3 {
		require.NoError(t, holding.SendMsg(&big))
	}
	eventually(t, e, 3, "modelmon_requests_total", silent)
	require.NoError(t, other.SendMsg(&big))
	eventually(t, e, 4, "modelmon_requests_total", silent)
	require.Equal(t, float64(3*len(big)), metricValue(t, e, "modelmon_capture_queue_bytes", nil))

	// An answered request of the second call is followed and counted,
	// its capture dropped as the queue's would be.
	tabular := map[string]string{"model": "tabular"}
	req := inferCall("tabular", "", inferTensor("x", []uint64{1, 1000}, make([]float32, 1000)...))
	var answer []byte
	require.NoError(t, other.SendMsg(&req))
	require.NoError(t, other.RecvMsg(&answer))
	eventually(t, e, 1, "modelmon_capture_dropped_total", map[string]string{"model": "tabular", "reason": "queue_full"})
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_duration_seconds_count", tabular))
	parsed := map[string]string{"model": "tabular", "format": "oip_grpc"}
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_payloads_parsed_total", parsed))

	// The first call ends: what it kept is free again, and the next
	// answered request is captured and parsed.
	require.NoError(t, holding.CloseSend())
	require.ErrorIs(t, holding.RecvMsg(&answer), io.EOF)
	eventually(t, e, 0, "modelmon_capture_queue_bytes", nil)
	require.NoError(t, other.SendMsg(&req))
	require.NoError(t, other.RecvMsg(&answer))
	eventually(t, e, 1, "modelmon_payloads_parsed_total", parsed)
	require.NoError(t, other.CloseSend())
	require.ErrorIs(t, other.RecvMsg(&answer), io.EOF)
	eventually(t, e, 0, "modelmon_requests_in_flight", silent)
	eventually(t, e, 0, "modelmon_capture_queue_bytes", nil)
}

// When --proxy.shutdown-delay starts, gRPC clients get a GOAWAY, as HTTP
// clients get their connections closed: they connect again (through the
// Service, elsewhere), and the sidecar takes those new connections until the
// delay ends. Calls and streams in flight go on.
func TestGRPCDrain(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	ctx := context.Background()
	req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
	var resp []byte
	require.NoError(t, conn.Invoke(ctx, modelInfer, &req, &resp))
	// The call went over a ready connection, but the ClientConn may report
	// its state a moment after.
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		require.True(t, conn.WaitForStateChange(wait, s), "the connection is %s, not ready", s)
	}
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/test.Echo/Chat")
	require.NoError(t, err)
	msg := []byte("one")
	require.NoError(t, stream.SendMsg(&msg))
	require.NoError(t, stream.RecvMsg(&resp))

	delay, endDelay := context.WithCancel(ctx)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		e.drain(delay, time.Minute)
	}()
	require.True(t, conn.WaitForStateChange(wait, connectivity.Ready), "the connection got a GOAWAY")

	// The stream opened before goes on.
	msg = []byte("two")
	require.NoError(t, stream.SendMsg(&msg))
	require.NoError(t, stream.RecvMsg(&resp))
	require.Equal(t, "two", string(resp))
	// A new call connects again, and is served.
	require.NoError(t, conn.Invoke(ctx, modelInfer, &req, &resp))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "fraud"}))
	other := grpcClient(t, e.GRPCAddr())
	require.NoError(t, other.Invoke(ctx, modelInfer, &req, &resp), "a new client during the delay")

	require.NoError(t, stream.CloseSend())
	require.ErrorIs(t, stream.RecvMsg(&resp), io.EOF)
	endDelay()
	<-drained
	stopCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	require.NoError(t, e.Stop(stopCtx))
	require.Error(t, other.Invoke(ctx, modelInfer, &req, &resp), "stopped after the delay")
}

// A ModelInfer call straight to a gRPC model server and through the
// sidecar, one at a time, everything in this process: the difference is
// what the gRPC proxy adds to a call (its capture and parse included, in
// the parser goroutine).
func BenchmarkGRPCModelInfer(b *testing.B) {
	direct, sidecar, req := grpcBenchSetup(b)
	for _, target := range []struct{ name, addr string }{{"direct", direct}, {"sidecar", sidecar}} {
		b.Run(target.name, func(b *testing.B) {
			conn := grpcClient(b, target.addr)
			var resp []byte
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := conn.Invoke(ctx, modelInfer, &req, &resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// grpcBenchSetup starts a gRPC model server and the sidecar in front of it,
// and returns their addresses and a ModelInfer request of 20 features.
func grpcBenchSetup(b *testing.B) (direct, sidecar string, req []byte) {
	e, up := grpcSidecar(b, nil)
	data := make([]float32, 20)
	for i := range data {
		data[i] = float32(i) + 0.5
	}
	return strings.TrimPrefix(up, "http://"), e.GRPCAddr(), inferCall("fraud", "", inferTensor("x", []uint64{1, 20}, data...))
}

// BenchmarkGRPCModelStreamInfer is one request and its answer on an open
// ModelStreamInfer call, direct and through the sidecar: what following a
// stream's predictions adds to each.
func BenchmarkGRPCModelStreamInfer(b *testing.B) {
	direct, sidecar, req := grpcBenchSetup(b)
	// "echo" is a stream passed through, not followed, for comparison.
	for _, target := range []struct{ name, addr, method string }{
		{"direct", direct, modelStreamInfer},
		{"sidecar", sidecar, modelStreamInfer},
		{"sidecar_echo", sidecar, "/test.Echo/Chat"},
	} {
		b.Run(target.name, func(b *testing.B) {
			stream, err := grpcClient(b, target.addr).NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, target.method)
			require.NoError(b, err)
			var resp []byte
			b.ReportAllocs()
			for b.Loop() {
				if err := stream.SendMsg(&req); err != nil {
					b.Fatal(err)
				}
				if err := stream.RecvMsg(&resp); err != nil {
					b.Fatal(err)
				}
			}
			require.NoError(b, stream.CloseSend())
		})
	}
}

// A ModelInfer call's id is its prediction id for ground-truth labels; a
// call without one gets an id in the answer's metadata, as an HTTP
// prediction gets it in a header.
func TestGRPCLabels(t *testing.T) {
	e, _ := grpcSidecar(t, func(o *Options) {
		labelsOn(o)
	})
	conn := grpcClient(t, e.GRPCAddr())
	req := inferCall("price", "", inferTensor("x", []uint64{1, 1}, 3))
	withID := protowire.AppendString(protowire.AppendTag(append([]byte{}, req...), 3, protowire.BytesType), "order-17")
	var resp []byte
	require.NoError(t, conn.Invoke(context.Background(), modelInfer, &withID, &resp))
	var header metadata.MD
	require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp, grpc.Header(&header)))
	ids := header.Get(strings.ToLower(string(e.proxy.labels.header)))
	require.Len(t, ids, 1, "the generated id comes back in the answer's metadata: %v", header)

	eventually(t, e, 2, "modelmon_payloads_parsed_total", map[string]string{"model": "price", "format": "oip_grpc"})
	waitIdle(t, e) // every prediction waits for its label
	st, r := postLabels(t, e, `{"id":"order-17","label":0.5}`+"\n"+`{"id":"`+ids[0]+`","label":1}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched"}, r.Results)
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "price"}))

	// A TensorFlow Serving Predict request has no id field: the id header
	// of its metadata, or a new id in the answer's.
	predict := tfPredictMessage(2, "rank", 0, "x", []int64{1, 1}, 3)
	ctx := metadata.AppendToOutgoingContext(context.Background(), string(e.proxy.labels.header), "query-4")
	require.NoError(t, conn.Invoke(ctx, tfPredict, &predict, &resp))
	header = nil
	require.NoError(t, conn.Invoke(context.Background(), tfPredict, &predict, &resp, grpc.Header(&header)))
	ids = header.Get(strings.ToLower(string(e.proxy.labels.header)))
	require.Len(t, ids, 1, "the generated id comes back in the answer's metadata: %v", header)
	eventually(t, e, 2, "modelmon_payloads_parsed_total", map[string]string{"model": "rank", "format": "tfserving_grpc"})
	waitIdle(t, e) // every prediction waits for its label
	st, r = postLabels(t, e, `{"id":"query-4","label":0.75}`+"\n"+`{"id":"`+ids[0]+`","label":0.75}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched"}, r.Results)
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "rank"}))
}

// Calls whose messages the client compresses, with gzip or Triton's
// deflate, pass through and are parsed.
func TestGRPCCompressed(t *testing.T) {
	e, _ := grpcSidecar(t, nil)
	conn := grpcClient(t, e.GRPCAddr())
	req := inferCall("fraud", "", inferTensor("x", []uint64{1, 2}, 1.5, 2.5))
	for _, c := range []string{"gzip", "deflate"} {
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp, grpc.UseCompressor(c)), c)
		require.Equal(t, inferCall("fraud", "", inferTensor("y", []uint64{1}, 0.75)), resp, c)
	}
	eventually(t, e, 2, "modelmon_payloads_parsed_total", map[string]string{"model": "fraud", "format": "oip_grpc"})
}

// A server stream's headers reach the client as soon as the model server
// sends them, before its first message.
func TestGRPCStreamHeadersFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	release := make(chan struct{})
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in []byte
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		if err := stream.SendHeader(metadata.Pairs("x-stream", "open")); err != nil {
			return err
		}
		select {
		case <-release:
		case <-stream.Context().Done():
			return nil
		}
		out := []byte("tokens")
		return stream.SendMsg(&out)
	}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	e := startExporter(t, "http://127.0.0.1:1", func(o *Options) {
		o.Proxy.GRPCUpstream = "http://" + ln.Addr().String()
		o.GRPCListenAddress = "127.0.0.1:0"
	})
	conn := grpcClient(t, e.GRPCAddr())
	stream, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/inference.GRPCInferenceService/ModelStreamInfer")
	require.NoError(t, err)
	msg := []byte("prompt")
	require.NoError(t, stream.SendMsg(&msg))
	require.NoError(t, stream.CloseSend())
	md, err := stream.Header()
	require.NoError(t, err)
	require.Equal(t, []string{"open"}, md.Get("x-stream"), "before any message")
	close(release)
	var out []byte
	require.NoError(t, stream.RecvMsg(&out))
	require.Equal(t, "tokens", string(out))
}

// An https:// gRPC upstream is verified with the --proxy.upstream-* flags,
// the CA file and the server name; a certificate it can't verify is a
// connection failure with a clear message.
func TestGRPCProxyTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	certFile, keyFile := ca.issue(t, dir, "model.internal", x509.ExtKeyUsageServerAuth, nil)
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	require.NoError(t, err)
	up := strings.Replace(grpcModelServer(t, grpc.Creds(creds)), "http://", "https://", 1)
	req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
	for _, tc := range []struct {
		name string
		tls  promconfig.TLSConfig
		fail string
	}{
		{"verified", promconfig.TLSConfig{CAFile: ca.file, ServerName: "model.internal"}, ""},
		{"an unknown CA", promconfig.TLSConfig{ServerName: "model.internal"}, "modelmon: the TLS handshake with the model server failed"},
		{"the wrong name", promconfig.TLSConfig{CAFile: ca.file}, "modelmon: the TLS handshake with the model server failed"},
		{"insecure", promconfig.TLSConfig{InsecureSkipVerify: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startExporter(t, "http://127.0.0.1:1", func(o *Options) {
				o.Proxy.GRPCUpstream = up
				o.GRPCListenAddress = "127.0.0.1:0"
				o.Proxy.TLS = tc.tls
			})
			var resp []byte
			err := grpcClient(t, e.GRPCAddr()).Invoke(context.Background(), modelInfer, &req, &resp)
			if tc.fail == "" {
				require.NoError(t, err)
				return
			}
			st, _ := status.FromError(err)
			require.Equal(t, codes.Unavailable, st.Code(), "%v", err)
			require.Equal(t, tc.fail, st.Message())
			require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "fraud", "reason": "connection"}))
		})
	}
}

// Triton's stream errors carry no status: the answer's form and Triton's
// own messages tell the request's errors from the model server's.
func TestStreamErrorCode(t *testing.T) {
	for _, tc := range []struct {
		rejected bool
		msg      string
		want     codes.Code
	}{
		{false, "in ensemble 'llm', Error generating stream: CUDA out of memory", codes.Internal},
		{false, "unexpected shape for input 'x'", codes.Internal}, // the model's own answer
		{true, "unexpected shape for input 'x' for model 'm'. Expected [-1,3], got [1,2].", codes.InvalidArgument},
		{true, "Request for unknown model: 'm' is not found", codes.InvalidArgument},
		{true, "expected 2 inputs but got 1 inputs for model 'm'", codes.InvalidArgument},
		{true, "'m' version 3 is not at ready state", codes.Unavailable},
		{true, "Exceeds maximum queue size", codes.Unavailable},
		{true, "GRPC server is shutting down and has stopped accepting new requests.", codes.Unavailable},
		{true, "Request for unknown model: 'm' has no available versions", codes.Unavailable},
	} {
		r := payload.StreamResponse{Error: []byte(tc.msg), Rejected: tc.rejected}
		require.Equal(t, tc.want, streamErrorCode(r), tc.msg)
	}
}
