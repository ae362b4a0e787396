package exporter

import (
	"context"
	"crypto/x509"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelmon/modelmon/collector"
)

// seenCall is a unary call as a gRPC shadow received it.
type seenCall struct {
	method string
	md     metadata.MD
	msg    []byte
}

// grpcCandidate is a gRPC shadow model server on loopback that answers
// each unary call with what answer returns, and keeps what it received.
type grpcCandidate struct {
	url  string
	mu   sync.Mutex
	seen []seenCall
}

func newGRPCCandidate(t *testing.T, answer func(ctx context.Context, method string, req []byte) ([]byte, error), opts ...grpc.ServerOption) *grpcCandidate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &grpcCandidate{url: "http://" + ln.Addr().String()}
	srv := grpc.NewServer(append(opts, grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(stream.Context())
		c.mu.Lock()
		c.seen = append(c.seen, seenCall{method, md, req})
		c.mu.Unlock()
		resp, err := answer(stream.Context(), method, req)
		if err != nil {
			return err
		}
		return stream.SendMsg(&resp)
	}))...)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c
}

func (c *grpcCandidate) received() []seenCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]seenCall(nil), c.seen...)
}

// inferAnswer answers a ModelInfer call with one FP32 output of value v.
func inferAnswer(v float32) func(context.Context, string, []byte) ([]byte, error) {
	return func(_ context.Context, _ string, req []byte) ([]byte, error) {
		return inferCall(modelName(req), "", inferTensor("y", []uint64{1}, v)), nil
	}
}

// grpcShadowSidecar starts grpcModelServer and the sidecar in front of it,
// its HTTP proxy in front of httpUp, mirroring every gRPC prediction to
// the gRPC shadow at shadow; mod, if not nil, changes the options.
func grpcShadowSidecar(t *testing.T, httpUp, shadow string, mod func(*Options)) *Exporter {
	t.Helper()
	up := grpcModelServer(t)
	return startExporter(t, httpUp, func(o *Options) {
		o.Proxy.GRPCUpstream = up
		o.GRPCListenAddress = "127.0.0.1:0"
		o.Shadow = ShadowOptions{GRPCUpstream: shadow, SampleRatio: 1, Timeout: 5 * time.Second, Concurrency: 2}
		if mod != nil {
			mod(o)
		}
	})
}

// waitCaptured waits until the sidecar has captured n predictions so far,
// every one parsed and its mirrored call compared: a gRPC client has the
// answer before its call is captured.
func waitCaptured(t *testing.T, e *Exporter, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return e.queue.enqueued.Load() >= n }, 10*time.Second, time.Millisecond)
	waitIdle(t, e)
}

// ModelInfer calls are mirrored to the gRPC shadow with their method,
// message and metadata, and its answers compared with the model's as an
// HTTP shadow's are; the client gets the model's answer.
func TestShadowGRPCComparesPredictions(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    classes: [legit, fraud]\n"), 0o644))
	candidate := newGRPCCandidate(t, inferAnswer(0.25))
	httpModel := newRecordingServer(t, map[string]string{"house": `{"predictions": [1]}`}, nil)
	e := grpcShadowSidecar(t, httpModel.URL, candidate.url, func(o *Options) { o.ConfigFile = cfg })
	conn := grpcClient(t, e.GRPCAddr())

	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer s3cret", "x-tenant", "a", "trace-bin", string([]byte{0, 1, 0xff}))
	req := inferCall("fraud", "7", inferTensor("x", []uint64{1, 2}, 1.5, 2.5))
	for range 3 {
		var resp []byte
		require.NoError(t, conn.Invoke(ctx, modelInfer, &req, &resp))
		require.Equal(t, inferCall("fraud", "", inferTensor("y", []uint64{1}, 0.75)), resp, "the model's answer, byte for byte")
	}
	// Without --shadow.upstream, HTTP predictions are not mirrored.
	status, _ := predict(t, e, "house", `{"instances": [[1]]}`)
	require.Equal(t, 200, status)
	waitCaptured(t, e, 4)

	got := candidate.received()
	require.Len(t, got, 3)
	for _, c := range got {
		require.Equal(t, modelInfer, c.method)
		require.Equal(t, req, c.msg, "the request message as the model server got it")
		require.Equal(t, []string{"Bearer s3cret"}, c.md.Get("authorization"))
		require.Equal(t, []string{"a"}, c.md.Get("x-tenant"))
		require.Equal(t, []string{string([]byte{0, 1, 0xff})}, c.md.Get("trace-bin"))
		require.Equal(t, []string{strings.TrimPrefix(candidate.url, "http://")}, c.md.Get(":authority"), "the shadow's own authority")
		require.Len(t, c.md.Get("user-agent"), 1, "grpc-go's own, once")
	}

	fraud := map[string]string{"model": "fraud"}
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowRequestsTotal, fraud))
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowDuration+"_count", fraud))
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowPredictionsTotal, fraud))
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowDisagreementsTotal, fraud), "0.75 is fraud, 0.25 legit")
	require.InDelta(t, 1.5, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, fraud), 1e-9)
	require.InDelta(t, 0.75, metricValue(t, e, collector.ShadowSquaredDifferenceTotal, fraud), 1e-9)
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowClassPairsTotal,
		map[string]string{"model": "fraud", "predicted": "fraud", "shadow_predicted": "legit"}))
	for _, reason := range collector.ShadowErrorReasons {
		require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": reason}), reason)
	}
	require.Zero(t, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "house"}))
	require.Len(t, httpModel.received(), 1)
}

// TensorFlow Serving's Predict calls are mirrored too, and parsed as
// tfserving_grpc on both sides.
func TestShadowGRPCTFServingPredict(t *testing.T) {
	candidate := newGRPCCandidate(t, func(_ context.Context, method string, _ []byte) ([]byte, error) {
		if method != tfPredict {
			return nil, status.Error(codes.Unimplemented, method)
		}
		return tfPredictMessage(1, "", 0, "y", []int64{1}, 0.25), nil
	})
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, nil)
	req := tfPredictMessage(2, "mnist", 3, "x", []int64{1, 2}, 1, 2)
	var resp []byte
	require.NoError(t, grpcClient(t, e.GRPCAddr()).Invoke(context.Background(), tfPredict, &req, &resp))
	require.Equal(t, tfPredictMessage(1, "", 0, "y", []int64{1}, 0.75), resp)
	waitCaptured(t, e, 1)

	got := candidate.received()
	require.Len(t, got, 1)
	require.Equal(t, tfPredict, got[0].method)
	require.Equal(t, req, got[0].msg)
	mnist := map[string]string{"model": "mnist"}
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, mnist))
	require.Zero(t, metricValue(t, e, collector.ShadowDisagreementsTotal, mnist), "a regression's values differ, not its classes")
	require.InDelta(t, 0.5, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, mnist), 1e-9)
}

// Whatever the gRPC shadow does, the client gets the model's answer, and
// the failure is counted by reason: its status as the gRPC proxy counts
// the model server's, UNAVAILABLE and a shadow that is down as connection,
// no answer in time as timeout.
func TestShadowGRPCFailures(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "http://" + dead.Addr().String()
	dead.Close()

	for _, tc := range []struct {
		name, reason string
		answer       func(ctx context.Context, method string, req []byte) ([]byte, error)
	}{
		{"down", collector.ErrorConnection, nil},
		{"unavailable", collector.ErrorConnection, func(context.Context, string, []byte) ([]byte, error) {
			return nil, status.Error(codes.Unavailable, "the model is being loaded")
		}},
		{"internal", collector.ErrorUpstream5xx, func(context.Context, string, []byte) ([]byte, error) {
			return nil, status.Error(codes.Internal, "the candidate crashed")
		}},
		{"invalid argument", collector.ErrorUpstream4xx, func(context.Context, string, []byte) ([]byte, error) {
			return nil, status.Error(codes.InvalidArgument, "unexpected input shape")
		}},
		{"not found", collector.ErrorUpstream4xx, func(context.Context, string, []byte) ([]byte, error) {
			return nil, status.Error(codes.NotFound, "no such model")
		}},
		{"slow", collector.ErrorTimeout, func(ctx context.Context, _ string, req []byte) ([]byte, error) {
			<-ctx.Done() // the sidecar gave up
			return nil, ctx.Err()
		}},
		{"no protobuf", collector.ShadowInvalidPayload, func(context.Context, string, []byte) ([]byte, error) {
			return []byte{0xff, 0xff, 0xff, 0x01}, nil
		}},
		{"other count", collector.ShadowShapeMismatch, func(_ context.Context, _ string, req []byte) ([]byte, error) {
			return inferCall(modelName(req), "", inferTensor("y", []uint64{2}, 0.5, 0.5)), nil
		}},
		{"too large", collector.ErrorInvalidResponse, func(_ context.Context, _ string, req []byte) ([]byte, error) {
			return inferCall(modelName(req), "", inferTensor("y", []uint64{1}, 0.5), textTensor("pad", strings.Repeat("x", 2048))), nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := deadURL
			if tc.answer != nil {
				url = newGRPCCandidate(t, tc.answer).url
			}
			e := grpcShadowSidecar(t, "http://127.0.0.1:1", url, func(o *Options) {
				o.Shadow.Timeout = 200 * time.Millisecond
				o.CaptureMaxBodySize = 1024
			})
			req := inferCall("fraud", "", inferTensor("x", []uint64{1, 2}, 1, 2))
			var resp []byte
			require.NoError(t, grpcClient(t, e.GRPCAddr()).Invoke(context.Background(), modelInfer, &req, &resp))
			require.Equal(t, inferCall("fraud", "", inferTensor("y", []uint64{1}, 0.75)), resp)
			waitCaptured(t, e, 1)
			m := map[string]string{"model": "fraud"}
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m))
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": tc.reason}))
			require.Zero(t, metricValue(t, e, collector.ShadowPredictionsTotal, m))
			for _, reason := range collector.ErrorReasons {
				require.Zero(t, metricValue(t, e, collector.PredictionErrorsTotal, map[string]string{"model": "fraud", "reason": reason}),
					"the model's own calls did not fail")
			}
		})
	}
}

// A gRPC shadow that refuses a mirrored request over its own receive
// limit answers RESOURCE_EXHAUSTED in grpc-go's words for a message too
// large, its limit in them: its own status, upstream_4xx, not an answer
// over --capture.max-body-size (invalid_response), even for a request as
// long as that limit.
func TestShadowGRPCRefusesRequest(t *testing.T) {
	candidate := newGRPCCandidate(t, inferAnswer(0.25), grpc.MaxRecvMsgSize(512))
	const limit = 1024
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, func(o *Options) { o.CaptureMaxBodySize = limit })
	conn := grpcClient(t, e.GRPCAddr())
	for _, size := range []int{limit, 600} {
		req := sizedInferCall(t, "fraud", size)
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp))
	}
	waitCaptured(t, e, 2)
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": collector.ErrorUpstream4xx}))
	require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": collector.ErrorInvalidResponse}))
}

// grpc-go retries a mirrored call the shadow refused unread, on its own
// (a transparent retry, which no option turns off): it is counted in
// modelmon_shadow_retries_total, as the HTTP shadow's retries are, and the
// answer to the retry is compared.
func TestShadowGRPCTransparentRetry(t *testing.T) {
	candidate := refusingGRPCServer(t, inferCall("fraud", "", inferTensor("y", []uint64{1}, 0.25)))
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, nil)
	conn := grpcClient(t, e.GRPCAddr())
	fraud := map[string]string{"model": "fraud"}
	for i := range 2 {
		req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp))
		waitCaptured(t, e, int64(i+1))
		got := candidate.received()
		require.Len(t, got, i+1, "the refused call never reached the shadow")
		require.Equal(t, modelInfer, got[i].method)
		require.Equal(t, req, got[i].msg)
		require.Equal(t, float64(i+1), metricValue(t, e, collector.ShadowPredictionsTotal, fraud), "compared")
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRetriesTotal, fraud), "the first call only was refused")
	}
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowRequestsTotal, fraud))
	for _, reason := range collector.ShadowErrorReasons {
		require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": reason}), reason)
	}
}

// A gRPC shadow that does not answer holds no client: calls past
// --shadow.concurrency sent and as many waiting are dropped and counted.
func TestShadowGRPCNeverHoldsTheClient(t *testing.T) {
	release := make(chan struct{})
	candidate := newGRPCCandidate(t, func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		<-release
		return inferCall(modelName(req), "", inferTensor("y", []uint64{1}, 0.75)), nil
	})
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, func(o *Options) { o.Shadow.Concurrency = 1 })
	conn := grpcClient(t, e.GRPCAddr())
	const n = 10
	req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
	for range n {
		// Each answer comes while the shadow holds the first call.
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp))
	}
	m := map[string]string{"model": "fraud"}
	require.Eventually(t, func() bool {
		return e.queue.enqueued.Load() == n && e.queue.handled.Load() == n
	}, 10*time.Second, time.Millisecond)
	dropped := metricValue(t, e, collector.ShadowDroppedTotal, m)
	require.GreaterOrEqual(t, dropped, float64(n-2), "one sent, one waiting")
	close(release)
	waitIdle(t, e)
	require.Equal(t, float64(n), dropped+metricValue(t, e, collector.ShadowRequestsTotal, m))
	require.Equal(t, metricValue(t, e, collector.ShadowRequestsTotal, m), metricValue(t, e, collector.ShadowPredictionsTotal, m))
}

// --shadow.sample-ratio and --shadow.model choose the gRPC calls mirrored
// as they choose HTTP predictions.
func TestShadowGRPCSampling(t *testing.T) {
	candidate := newGRPCCandidate(t, inferAnswer(0.75))
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, func(o *Options) {
		o.Shadow.SampleRatio = 0.25
		o.Shadow.Models = []string{"fraud"}
	})
	conn := grpcClient(t, e.GRPCAddr())
	const n = 400
	for i := range n {
		model := "fraud"
		if i%10 == 0 {
			model = "house"
		}
		req := inferCall(model, "", inferTensor("x", []uint64{1, 1}, 1))
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp))
	}
	waitCaptured(t, e, n)
	// Binomial(360, 0.25): mean 90, standard deviation 8.2; five of them
	// either side fail one run in 1.7 million.
	got := metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "fraud"})
	require.InDelta(t, 90, got, 5*8.2, "mirrored %v of %d", got, n-n/10)
	require.Len(t, candidate.received(), int(got), "house's calls are not mirrored")
	require.Zero(t, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "house"}))
}

// --shadow.model mirrors the gRPC calls of the model it names past
// limits.max_models too, as it does its HTTP predictions.
func TestShadowGRPCModelPastMaxModels(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 1\n"), 0o644))
	candidate := newGRPCCandidate(t, inferAnswer(0.75))
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, func(o *Options) {
		o.ConfigFile = cfg
		o.Shadow.Models = []string{"fraud"}
	})
	conn := grpcClient(t, e.GRPCAddr())
	for _, model := range []string{"house", "fraud", "churn"} { // fraud and churn past the cap
		req := inferCall(model, "", inferTensor("x", []uint64{1, 1}, 1))
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp))
	}
	waitCaptured(t, e, 3)
	got := candidate.received()
	require.Len(t, got, 1)
	require.Equal(t, "fraud", modelName(got[0].msg))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "__other__"}))
}

// With labels, the gRPC shadow's predictions wait for their labels as the
// HTTP shadow's do, and both answers are scored against them.
func TestShadowGRPCScoredAgainstLabels(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    classes: [legit, fraud]\n"), 0o644))
	candidate := newGRPCCandidate(t, inferAnswer(0.25))
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, func(o *Options) {
		o.ConfigFile = cfg
		labelsOn(o)
	})
	conn := grpcClient(t, e.GRPCAddr())
	for _, id := range []string{"r1", "r2"} {
		// The id in the request's metadata.
		ctx := metadata.AppendToOutgoingContext(context.Background(), string(e.proxy.labels.header), id)
		req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
		var resp []byte
		require.NoError(t, conn.Invoke(ctx, modelInfer, &req, &resp))
	}
	waitCaptured(t, e, 2)
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPendingPredictions, nil))

	st, resp := postLabels(t, e, `{"id": "r1", "label": "fraud"}`+"\n"+`{"id": "r2", "label": "legit"}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	fraud := map[string]string{"model": "fraud"}
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, fraud))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowCorrectTotal, map[string]string{"model": "fraud", "source": "model"}))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowCorrectTotal, map[string]string{"model": "fraud", "source": "shadow"}))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowDiscordantTotal, fraud))
	require.Zero(t, metricValue(t, e, collector.ShadowPendingPredictions, nil))
}

// An https gRPC shadow is verified with the --shadow.* TLS flags, as the
// model server with the --proxy.upstream-* ones; one that can't be
// verified counts as a connection failure.
func TestShadowGRPCTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	certFile, keyFile := ca.issue(t, dir, "candidate.internal", x509.ExtKeyUsageServerAuth, nil)
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	require.NoError(t, err)
	candidate := newGRPCCandidate(t, inferAnswer(0.25), grpc.Creds(creds))
	url := strings.Replace(candidate.url, "http://", "https://", 1)
	m := map[string]string{"model": "fraud"}
	for _, tc := range []struct {
		name     string
		tls      promconfig.TLSConfig
		compared float64
	}{
		{"verified", promconfig.TLSConfig{CAFile: ca.file, ServerName: "candidate.internal"}, 1},
		{"an unknown CA", promconfig.TLSConfig{ServerName: "candidate.internal"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := grpcShadowSidecar(t, "http://127.0.0.1:1", url, func(o *Options) { o.Shadow.TLS = tc.tls })
			req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
			var resp []byte
			require.NoError(t, grpcClient(t, e.GRPCAddr()).Invoke(context.Background(), modelInfer, &req, &resp))
			waitCaptured(t, e, 1)
			require.Equal(t, tc.compared, metricValue(t, e, collector.ShadowPredictionsTotal, m))
			if tc.compared == 0 {
				require.Equal(t, 1.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": "connection"}))
			}
		})
	}
}

func TestShadowGRPCOptionsChecked(t *testing.T) {
	up := grpcModelServer(t)
	for _, tc := range []struct {
		grpcUpstream, shadow, want string
	}{
		{"", "http://127.0.0.1:1", "--shadow.grpc-upstream=\"http://127.0.0.1:1\" mirrors the gRPC proxy's calls: it needs --proxy.grpc-upstream"},
		{up, "ftp://127.0.0.1:1", "--shadow.grpc-upstream=\"ftp://127.0.0.1:1\" must be an http:// or https:// URL with a host"},
		{up, "http://127.0.0.1:1/x", "--shadow.grpc-upstream=\"http://127.0.0.1:1/x\" must not have a path"},
	} {
		o := withLoopback("http://127.0.0.1:1", Options{})
		o.Proxy.GRPCUpstream = tc.grpcUpstream
		o.Shadow = ShadowOptions{GRPCUpstream: tc.shadow, SampleRatio: 1, Timeout: time.Second, Concurrency: 1, MaxPending: 1}
		e, err := New(o)
		if e != nil && e.proxy.grpc != nil {
			e.proxy.grpc.conn.Close()
		}
		require.EqualError(t, err, tc.want)
	}
}

// A call's method and metadata read back as they were, but for what
// grpc-go sets itself.
func TestShadowCallRoundTrip(t *testing.T) {
	md := metadata.MD{
		":authority": {"model:8001"}, "content-type": {"application/grpc"}, "user-agent": {"grpc-go/1.84.0"},
		"grpc-accept-encoding": {"gzip"}, "te": {"trailers"},
		"authorization": {"Bearer s3cret"}, "x-tenant": {"a", "b"}, "trace-bin": {string([]byte{0, '\n', 0xff})}, "empty": {""},
	}
	b := appendShadowCall(nil, modelInfer, md)
	method, got, err := readShadowCall(b)
	require.NoError(t, err)
	require.Equal(t, modelInfer, method)
	require.Equal(t, metadata.MD{"authorization": {"Bearer s3cret"}, "x-tenant": {"a", "b"}, "trace-bin": {string([]byte{0, '\n', 0xff})}, "empty": {""}}, got)
	for i := range len(b) {
		// Cut short, it reads as fewer values or not at all.
		if _, _, err := readShadowCall(b[:i]); err != nil {
			require.ErrorIs(t, err, errShadowCall)
		}
	}
	_, _, err = readShadowCall(nil)
	require.ErrorIs(t, err, errShadowCall)
}

// Every unary prediction call the gRPC proxy parses is mirrored, the
// README says: TensorFlow Serving's Classify, Regress and MultiInference,
// Seldon Core 1's Predict of both its services, TorchServe's Predictions
// too, not ModelInfer and Predict alone. Each reaches the shadow as the
// model server got it, method, message and metadata, and the two answers
// are compared in the call's format: classes by pairs, values by their
// differences.
func TestShadowGRPCEveryUnaryCall(t *testing.T) {
	torchInput := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"instances": [[1, 2]]}`))
	seldonReq := append(appendField(nil, 2, appendField(nil, 1, []byte("req-1"))), seldonMessage([]string{"a", "b"}, []int32{1, 2}, 1.5, 2.5)...)
	for _, tc := range []struct {
		name, method, model string
		req, answer         []byte
		md                  []string // beside authorization and x-tenant
		// predictions and disagreements compared; pairs of classes (model,
		// shadow) and how many; the sums of absolute and squared
		// differences.
		predictions, disagreements float64
		pairs                      map[[2]string]float64
		abs, sq                    float64
	}{
		{
			name: "tf classify", method: tfClassify, model: "churn",
			req: tfExamplesRequest("churn", 4, false), answer: tfExamplesAnswer(tfClassify, 0.25, 0),
			predictions: 2, disagreements: 2, pairs: map[[2]string]float64{{"yes", "no"}: 2},
		},
		{
			name: "tf regress", method: tfRegress, model: "price",
			req: tfExamplesRequest("price", 4, false), answer: tfExamplesAnswer(tfRegress, 0, 0.75),
			predictions: 2, abs: 2 * 0.25, sq: 2 * 0.0625,
		},
		{
			// The classification comes first: it is the prediction, and
			// the regressed values, though they differ too, are not.
			name: "tf multi inference", method: tfMultiInference, model: "both",
			req: tfExamplesRequest("both", 4, true), answer: tfExamplesAnswer(tfMultiInference, 0.25, 0.75),
			predictions: 2, disagreements: 2, pairs: map[[2]string]float64{{"yes", "no"}: 2},
		},
		{
			name: "seldon", method: seldonPredict, model: "iris", md: []string{"seldon", "iris"},
			req: seldonReq, answer: seldonMessage(nil, nil, 0.25),
			predictions: 1, abs: 0.5, sq: 0.25,
		},
		{
			name: "seldon model", method: seldonModelPredict, model: "iris", md: []string{"seldon", "iris"},
			req: seldonReq, answer: seldonMessage(nil, nil, 0.25),
			predictions: 1, abs: 0.5, sq: 0.25,
		},
		{
			name: "torchserve", method: torchPredictions, model: "resnet",
			req:         appendField(appendField(appendField(nil, 1, []byte("resnet")), 2, []byte("2.0")), 3, torchInput),
			answer:      appendField(nil, 1, []byte("[0.25]")), // PredictionResponse.prediction
			predictions: 1, abs: 0.25, sq: 0.0625,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			candidate := newGRPCCandidate(t, func(_ context.Context, method string, _ []byte) ([]byte, error) {
				if method != tc.method {
					return nil, status.Error(codes.Unimplemented, method)
				}
				return tc.answer, nil
			})
			e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, nil)
			md := append([]string{"authorization", "Bearer s3cret", "x-tenant", "a"}, tc.md...)
			ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
			var resp []byte
			require.NoError(t, grpcClient(t, e.GRPCAddr()).Invoke(ctx, tc.method, &tc.req, &resp))
			require.NotEqual(t, tc.answer, resp, "the client gets the model's answer")
			waitCaptured(t, e, 1)

			got := candidate.received()
			require.Len(t, got, 1)
			require.Equal(t, tc.method, got[0].method)
			require.Equal(t, tc.req, got[0].msg, "the request message as the model server got it")
			for i := 0; i < len(md); i += 2 {
				require.Equal(t, []string{md[i+1]}, got[0].md.Get(md[i]), md[i])
			}

			m := map[string]string{"model": tc.model}
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m))
			for _, reason := range collector.ShadowErrorReasons {
				require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": tc.model, "reason": reason}), reason)
			}
			require.Equal(t, tc.predictions, metricValue(t, e, collector.ShadowPredictionsTotal, m))
			require.Equal(t, tc.disagreements, metricValue(t, e, collector.ShadowDisagreementsTotal, m))
			require.InDelta(t, tc.abs, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, m), 1e-6)
			require.InDelta(t, tc.sq, metricValue(t, e, collector.ShadowSquaredDifferenceTotal, m), 1e-6)
			for pair, n := range tc.pairs {
				require.Equal(t, n, metricValue(t, e, collector.ShadowClassPairsTotal,
					map[string]string{"model": tc.model, "predicted": pair[0], "shadow_predicted": pair[1]}), "%v", pair)
			}
			if tc.pairs == nil {
				require.Zero(t, metricValue(t, e, collector.ShadowClassPairsTotal, nil), "values, not classes")
			}
		})
	}
}

// What the gRPC proxy does not mirror: Seldon's SendFeedback (of either
// service), calls that pass through, and a prediction the model server
// answered with an error status or not in time. Only the last call, a
// ModelInfer the model answers, reaches the shadow.
func TestShadowGRPCNotMirrored(t *testing.T) {
	candidate := newGRPCCandidate(t, inferAnswer(0.25))
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, func(o *Options) { o.Proxy.Timeout = 200 * time.Millisecond })
	conn := grpcClient(t, e.GRPCAddr())
	seldon := metadata.AppendToOutgoingContext(context.Background(), "seldon", "iris")

	// Feedback, whose reward the parser reads.
	reward := protowire.AppendFixed32(protowire.AppendTag(nil, 3, protowire.Fixed32Type), math.Float32bits(1))
	for _, method := range []string{seldonSendFeedback, seldonModelFeedback} {
		var resp []byte
		require.NoError(t, conn.Invoke(seldon, method, &reward, &resp), method)
	}
	// A passthrough call.
	var live []byte
	require.NoError(t, conn.Invoke(context.Background(), "/inference.GRPCInferenceService/ServerLive", &[]byte{}, &live))
	// Predictions the model server failed, or did not answer in time.
	for _, tc := range []struct {
		method string
		req    []byte
		code   codes.Code
	}{
		{modelInfer, inferCall("bad", "", inferTensor("x", []uint64{1, 1}, 1)), codes.InvalidArgument},
		{modelInfer, inferCall("broken", "", inferTensor("x", []uint64{1, 1}, 1)), codes.Internal},
		{modelInfer, inferCall("slow", "", inferTensor("x", []uint64{1, 1}, 1)), codes.DeadlineExceeded},
		{tfPredict, tfPredictMessage(2, "bad", 0, "x", []int64{1, 1}, 1), codes.InvalidArgument},
	} {
		var resp []byte
		err := conn.Invoke(context.Background(), tc.method, &tc.req, &resp)
		require.Equal(t, tc.code, status.Code(err), "%v", err)
	}
	eventually(t, e, 1, collector.PredictionErrorsTotal, map[string]string{"model": "slow", "reason": collector.ErrorTimeout})

	// The feedback is captured, and so is the last.
	req := inferCall("fraud", "", inferTensor("x", []uint64{1, 1}, 1))
	var resp []byte
	require.NoError(t, conn.Invoke(context.Background(), modelInfer, &req, &resp))
	waitCaptured(t, e, 3)
	eventually(t, e, 2, "modelmon_feedback_reward_count", map[string]string{"model": "iris"})

	got := candidate.received()
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, modelInfer, got[0].method)
	require.Equal(t, req, got[0].msg)
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "fraud"}))
	for _, model := range []string{"iris", "bad", "broken", "slow", "unknown"} {
		require.Zero(t, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": model}), model)
		require.Zero(t, metricValue(t, e, collector.ShadowDroppedTotal, map[string]string{"model": model}), model)
	}
}

// With labels, a mirrored call's predictions wait by the id the call's own
// predictions take, however it gets one: a Seldon call without a puid the
// one the model's answer carries (not the shadow's), a TorchServe call
// without an id header the one the sidecar gives it.
func TestShadowGRPCLabelsByCallID(t *testing.T) {
	candidate := newGRPCCandidate(t, func(_ context.Context, method string, _ []byte) ([]byte, error) {
		if method == torchPredictions {
			return appendField(nil, 1, []byte("[0.25]")), nil
		}
		// A puid of the shadow's own.
		return append(appendField(nil, 2, appendField(nil, 1, []byte("shadow-1"))), seldonMessage(nil, nil, 0.25)...), nil
	})
	e := grpcShadowSidecar(t, "http://127.0.0.1:1", candidate.url, labelsOn)
	conn := grpcClient(t, e.GRPCAddr())

	seldonReq := seldonMessage(nil, nil, 2)
	var resp []byte
	require.NoError(t, conn.Invoke(metadata.AppendToOutgoingContext(context.Background(), "seldon", "iris"), seldonPredict, &seldonReq, &resp))
	input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"instances": [[1, 2]]}`))
	torchReq := appendField(appendField(nil, 1, []byte("resnet")), 3, input)
	var header metadata.MD
	require.NoError(t, conn.Invoke(context.Background(), torchPredictions, &torchReq, &resp, grpc.Header(&header)))
	ids := header.Get(string(e.proxy.labels.header))
	require.Len(t, ids, 1, "%v", header)
	waitCaptured(t, e, 2)
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPendingPredictions, nil))

	st, r := postLabels(t, e, `{"id": "exec-1", "label": 1}`+"\n"+`{"id": "`+ids[0]+`", "label": 1}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched"}, r.Results)
	for _, tc := range []struct {
		name          string
		model, shadow float64 // absolute errors
	}{
		{"iris", 0.25, 0.75},
		{"resnet", 0.5, 0.75},
	} {
		m := map[string]string{"model": tc.name}
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, m), tc.name)
		require.InDelta(t, tc.model, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, map[string]string{"model": tc.name, "source": "model"}), 1e-9, tc.name)
		require.InDelta(t, tc.shadow, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, map[string]string{"model": tc.name, "source": "shadow"}), 1e-9, tc.name)
	}
	require.Zero(t, metricValue(t, e, collector.ShadowPendingPredictions, nil))
}
