package exporter

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"google.golang.org/grpc/encoding"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/modelmon/modelmon/collector"
)

// upstreamCall is what a model server of rawGRPCServer saw of a call.
type upstreamCall struct {
	method   string
	md       metadata.MD
	deadline time.Time
	hasDL    bool
}

// rawGRPCServer starts a grpc-go server on loopback whose every call
// handle answers, and returns its URL.
func rawGRPCServer(t testing.TB, handle func(method string, ss grpc.ServerStream) error, opts ...grpc.ServerOption) string {
	t.Helper()
	up, _ := rawGRPCServerStop(t, handle, opts...)
	return up
}

// rawGRPCServerStop is rawGRPCServer, and the server, to stop it.
func rawGRPCServerStop(t testing.TB, handle func(method string, ss grpc.ServerStream) error, opts ...grpc.ServerOption) (string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(append(opts, grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		return handle(method, ss)
	}))...)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String(), srv
}

// grpcSidecarFor starts the sidecar in front of the gRPC model server at up.
func grpcSidecarFor(t testing.TB, up string, mod func(*Options)) *Exporter {
	t.Helper()
	return startExporter(t, "http://127.0.0.1:1", func(o *Options) {
		o.Proxy.GRPCUpstream = up
		o.GRPCListenAddress = "127.0.0.1:0"
		if mod != nil {
			mod(o)
		}
	})
}

var passthroughMethod = "/inference.GRPCInferenceService/ModelMetadata"

// The client's deadline reaches the model server with the call, and a call
// the client gives up is given up at the model server too, for unary
// predictions, passthrough calls and streams alike.
func TestGRPCEdgeDeadlineAndCancel(t *testing.T) {
	seen := make(chan upstreamCall, 10)
	cancelled := make(chan string, 10)
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		dl, ok := ss.Context().Deadline()
		md, _ := metadata.FromIncomingContext(ss.Context())
		seen <- upstreamCall{method: method, md: md, deadline: dl, hasDL: ok}
		if string(msg) == "hang" || modelName(msg) == "hang" {
			<-ss.Context().Done()
			cancelled <- method
			return ss.Context().Err()
		}
		return ss.SendMsg(&msg)
	})
	// --proxy.timeout a minute, the client's deadline 3s: the model
	// server's deadline is the client's, late by the time the call took to
	// reach it, however loaded the machine, and far from the sidecar's own.
	e := grpcSidecarFor(t, up, func(o *Options) { o.Proxy.Timeout = time.Minute })
	conn := grpcClient(t, e.GRPCAddr())

	for _, method := range []string{modelInfer, passthroughMethod} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		want, _ := ctx.Deadline()
		req := inferCall("fraud", "")
		var resp []byte
		require.NoError(t, conn.Invoke(ctx, method, &req, &resp), method)
		cancel()
		c := <-seen
		require.True(t, c.hasDL, method)
		require.WithinDuration(t, want, c.deadline, 20*time.Second, method)
	}

	// Cancelled by the client: the model server's call is cancelled too.
	for _, method := range []string{modelInfer, passthroughMethod, modelStreamInfer} {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			req := inferCall("hang", "")
			var resp []byte
			errc <- conn.Invoke(ctx, method, &req, &resp)
		}()
		<-seen
		cancel()
		require.Equal(t, codes.Canceled, status.Code(<-errc), method)
		select {
		case m := <-cancelled:
			require.Equal(t, method, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the model server's call was not cancelled", method)
		}
	}
}

// --proxy.timeout bounds a unary prediction call even when the client's
// deadline is later; a client deadline earlier than it ends the call at
// the client's deadline, at the model server too.
func TestGRPCEdgeTimeoutVsDeadline(t *testing.T) {
	ended := make(chan struct{}, 2)
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		<-ss.Context().Done()
		ended <- struct{}{}
		return ss.Context().Err()
	})
	modelEnded := func(what string) {
		t.Helper()
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Fatalf("the model server's call outlived %s", what)
		}
	}
	timeouts := map[string]string{"model": "fraud", "reason": "timeout"}
	req := inferCall("fraud", "")
	var resp []byte

	// The client waits a minute; the sidecar's status says its 300ms
	// ended the call (the client's gRPC library words its own deadline
	// "context deadline exceeded").
	e := grpcSidecarFor(t, up, func(o *Options) { o.Proxy.Timeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := grpcClient(t, e.GRPCAddr()).Invoke(ctx, modelInfer, &req, &resp)
	st, _ := status.FromError(err)
	require.Equal(t, codes.DeadlineExceeded, st.Code(), "%v", err)
	require.Equal(t, "modelmon: the model server did not answer in time", st.Message())
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", timeouts))
	modelEnded("--proxy.timeout")

	// The client waits 100ms, --proxy.timeout is a minute: the model
	// server's call ends, and counts as a timeout, long before the
	// sidecar's own timeout would have ended it.
	long := grpcSidecarFor(t, up, func(o *Options) { o.Proxy.Timeout = time.Minute })
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	err = grpcClient(t, long.GRPCAddr()).Invoke(short, modelInfer, &req, &resp)
	require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	modelEnded("the client's deadline")
	eventually(t, long, 1, "modelmon_prediction_errors_total", timeouts)
}

// A call whose client's own deadline (grpc-timeout) passes while it waits
// for the model server counts as a timeout: a unary prediction, a
// passthrough call the client had sent whole, a stream's request the model
// server had not answered at all. A call the client was still sending, or
// the model server had answered (a stream's request it was answering
// piece by piece), was ended by the client: no error, as for a client
// that goes away.
func TestGRPCEdgeClientDeadline(t *testing.T) {
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		for {
			var msg []byte
			if err := ss.RecvMsg(&msg); err != nil {
				break // the client's half-close, or its deadline
			}
			switch modelName(msg) {
			case "part": // decoupled: one answer of several, then no more
				a := streamAnswer("", "part", "p", 0, inferTensor("y", []uint64{1}, 1))
				if err := ss.SendMsg(&a); err != nil {
					return err
				}
			case "first":
				if err := ss.SendMsg(&msg); err != nil {
					return err
				}
			}
			if method != modelStreamInfer && method != "/test.Upload/Slow" {
				break // one message each way
			}
		}
		<-ss.Context().Done()
		return ss.Context().Err()
	})
	e := grpcSidecarFor(t, up, func(o *Options) { o.Proxy.Timeout = time.Minute })
	conn := grpcClient(t, e.GRPCAddr())
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	withID := func(model, id string) []byte {
		req := inferCall(model, "")
		req = protowire.AppendTag(req, 3, protowire.BytesType)
		return protowire.AppendString(req, id)
	}
	calls := []struct {
		method string
		msgs   [][]byte
		close  bool // half-close after the messages
	}{
		{modelInfer, [][]byte{inferCall("slow", "")}, true},
		{passthroughMethod, [][]byte{inferCall("slow", "")}, true},
		{modelStreamInfer, [][]byte{withID("hang", "h"), withID("part", "p")}, false},
		{"/test.Upload/Slow", [][]byte{[]byte("a")}, false}, // still sending
		{"/test.Watch/First", [][]byte{inferCall("first", "")}, true},
	}
	errs := make(chan error, len(calls))
	for _, c := range calls {
		go func() {
			// Long enough for every call to reach the model server first.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := conn.NewStream(ctx, desc, c.method)
			if err != nil {
				errs <- err
				return
			}
			for _, m := range c.msgs {
				if err := s.SendMsg(&m); err != nil {
					errs <- err
					return
				}
			}
			if c.close {
				_ = s.CloseSend()
			}
			for {
				var out []byte
				if err = s.RecvMsg(&out); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range calls {
		require.Equal(t, codes.DeadlineExceeded, status.Code(<-errs))
	}
	// Stopping waits for the calls to be accounted for.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.Stop(ctx))
	errors := func(model, reason string) float64 {
		if model == "" {
			return testutil.ToFloat64(e.metrics.PassthroughErrors.WithLabelValues(reason))
		}
		return testutil.ToFloat64(e.metrics.Errors.WithLabelValues(model, reason))
	}
	for _, tc := range []struct {
		model   string
		timeout float64
	}{{"slow", 1}, {"hang", 1}, {"part", 0}, {"", 1}} {
		require.Equal(t, tc.timeout, errors(tc.model, "timeout"), "model %q", tc.model)
		for _, r := range collector.ErrorReasons {
			if r != "timeout" {
				require.Zero(t, errors(tc.model, r), "model %q, %s", tc.model, r)
			}
		}
	}
	for _, m := range []string{"slow", "hang", "part"} {
		require.Zero(t, testutil.ToFloat64(e.metrics.InFlight.WithLabelValues(m)), m)
	}
}

// A call cancelled by its client the moment its deadline passed may be
// cancelled a moment before the deadline passes in the sidecar: a cancel
// within deadlineGrace of it is the deadline, one well before it is not.
func TestPastDeadline(t *testing.T) {
	bg := context.Background()
	at := func(d time.Duration, cancelled bool) context.Context {
		ctx, cancel := context.WithDeadline(bg, time.Now().Add(d))
		t.Cleanup(cancel)
		if cancelled {
			cancel()
		}
		return ctx
	}
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	require.True(t, pastDeadline(at(-time.Second, false)), "past it")
	require.True(t, pastDeadline(at(deadlineGrace/5, true)), "cancelled at it")
	require.False(t, pastDeadline(at(time.Hour, true)), "cancelled well before it")
	require.False(t, pastDeadline(at(time.Hour, false)), "running")
	require.False(t, pastDeadline(cancelled), "no deadline")
}

// A status with details, an answer's headers and trailers, binary and
// repeated metadata pass through both ways as the model server and the
// client sent them.
func TestGRPCEdgeStatusAndMetadata(t *testing.T) {
	detailed, err := status.New(codes.FailedPrecondition, "model not loaded").WithDetails(wrapperspb.String("fraud:7"))
	require.NoError(t, err)
	seen := make(chan metadata.MD, 10)
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		seen <- md
		switch modelName(msg) {
		case "detailed":
			ss.SetTrailer(metadata.Pairs("x-trace-bin", "\x00\x01\xff"))
			return detailed.Err()
		case "trailers-only":
			ss.SetTrailer(metadata.Pairs("x-why", "one", "x-why", "two"))
			return status.Error(codes.NotFound, "no such model")
		case "headers-then-error":
			if err := ss.SendHeader(metadata.Pairs("x-h", "1")); err != nil {
				return err
			}
			ss.SetTrailer(metadata.Pairs("x-t", "2"))
			return status.Error(codes.Unavailable, "draining")
		}
		if err := ss.SendHeader(metadata.MD{"x-bin-bin": {"\x00\xfe", "\x01"}, "x-rep": {"b", "a", "c"}}); err != nil {
			return err
		}
		ss.SetTrailer(metadata.Pairs("x-t-bin", "\xff\x00"))
		return ss.SendMsg(&msg)
	})
	e := grpcSidecarFor(t, up, nil)
	conn := grpcClient(t, e.GRPCAddr())

	for _, method := range []string{modelInfer, passthroughMethod} {
		out := metadata.MD{"x-key-bin": {"\x00\x01\x02\xff"}, "x-rep": {"3", "1", "2"}, "x-model-name": {"m"}}
		ctx := metadata.NewOutgoingContext(context.Background(), out)
		req := inferCall("ok", "")
		var resp []byte
		var header, trailer metadata.MD
		require.NoError(t, conn.Invoke(ctx, method, &req, &resp, grpc.Header(&header), grpc.Trailer(&trailer)), method)
		require.Equal(t, req, resp)
		md := <-seen
		require.Equal(t, []string{"\x00\x01\x02\xff"}, md.Get("x-key-bin"), method)
		require.Equal(t, []string{"3", "1", "2"}, md.Get("x-rep"), method)
		require.Equal(t, []string{"\x00\xfe", "\x01"}, header.Get("x-bin-bin"), method)
		require.Equal(t, []string{"b", "a", "c"}, header.Get("x-rep"), method)
		require.Equal(t, []string{"\xff\x00"}, trailer.Get("x-t-bin"), method)
		require.Equal(t, []string{"127.0.0.1:" + portOf(e.GRPCAddr())}, md.Get(":authority"), method)

		req = inferCall("detailed", "")
		err := conn.Invoke(ctx, method, &req, &resp, grpc.Trailer(&trailer))
		<-seen
		st, _ := status.FromError(err)
		require.Equal(t, codes.FailedPrecondition, st.Code(), method)
		require.Equal(t, "model not loaded", st.Message())
		require.Len(t, st.Details(), 1, method)
		require.True(t, proto.Equal(wrapperspb.String("fraud:7"), st.Details()[0].(proto.Message)), method)
		require.Equal(t, []string{"\x00\x01\xff"}, trailer.Get("x-trace-bin"), method)

		req = inferCall("trailers-only", "")
		header, trailer = nil, nil
		err = conn.Invoke(ctx, method, &req, &resp, grpc.Header(&header), grpc.Trailer(&trailer))
		<-seen
		require.Equal(t, codes.NotFound, status.Code(err), method)
		require.Equal(t, []string{"one", "two"}, trailer.Get("x-why"), method)

		req = inferCall("headers-then-error", "")
		header, trailer = nil, nil
		err = conn.Invoke(ctx, method, &req, &resp, grpc.Header(&header), grpc.Trailer(&trailer))
		<-seen
		require.Equal(t, codes.Unavailable, status.Code(err), method)
		require.Equal(t, "draining", status.Convert(err).Message(), method)
		require.Equal(t, []string{"1"}, header.Get("x-h"), method)
		require.Equal(t, []string{"2"}, trailer.Get("x-t"), method)
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// A model server that ends a unary call OK without an answer: the client
// gets what it would get calling the model server directly.
func TestGRPCEdgeOKWithoutAnswer(t *testing.T) {
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		return ss.RecvMsg(&msg)
	})
	e := grpcSidecarFor(t, up, nil)
	direct := grpcClient(t, up[len("http://"):])
	conn := grpcClient(t, e.GRPCAddr())
	for _, method := range []string{modelInfer, passthroughMethod} {
		req := inferCall("fraud", "")
		var resp []byte
		want := direct.Invoke(context.Background(), method, &req, &resp)
		got := conn.Invoke(context.Background(), method, &req, &resp)
		require.Equal(t, status.Code(want), status.Code(got), "%s: direct %v, through the sidecar %v", method, want, got)
		require.Equal(t, status.Convert(want).Message(), status.Convert(got).Message(), method)
	}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "fraud", "reason": "upstream_5xx"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "fraud"}))
}

// Messages larger than grpc-go's default 4 MiB limit pass both ways, as
// --proxy.max-body-size allows.
func TestGRPCEdgeLargeMessages(t *testing.T) {
	const size = 6 << 20
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		return ss.SendMsg(&msg)
	}, grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	e := grpcSidecarFor(t, up, nil)
	conn := grpcClient(t, e.GRPCAddr())
	big := inferCall("fraud", "", textTensor("x", string(make([]byte, size))))
	for _, method := range []string{modelInfer, passthroughMethod} {
		var resp []byte
		require.NoError(t, conn.Invoke(context.Background(), method, &big, &resp, grpc.MaxCallRecvMsgSize(64<<20)), method)
		require.Equal(t, big, resp, method)
	}
}

// An answer larger than --proxy.max-body-size is one the model server
// should not have sent, as over HTTP: the client gets a clear
// RESOURCE_EXHAUSTED, counted as invalid_response, not as the client's
// error (upstream_4xx), for predictions, passthrough calls and streams.
func TestGRPCEdgeAnswerTooLarge(t *testing.T) {
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		big := make([]byte, 8<<10)
		return ss.SendMsg(&big)
	})
	e := grpcSidecarFor(t, up, func(o *Options) { o.Proxy.MaxBodySize = 4 << 10 })
	conn := grpcClient(t, e.GRPCAddr())
	req := inferCall("fraud", "")
	for _, method := range []string{modelInfer, passthroughMethod, modelStreamInfer} {
		var resp []byte
		err := conn.Invoke(context.Background(), method, &req, &resp)
		st, _ := status.FromError(err)
		require.Equal(t, codes.ResourceExhausted, st.Code(), "%s: %v", method, err)
		require.Equal(t, "modelmon: the model server's response is larger than --proxy.max-body-size", st.Message(), method)
	}
	fraud := map[string]string{"model": "fraud", "reason": "invalid_response"}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_errors_total", fraud))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "invalid_response"}))
	for _, r := range []string{"upstream_4xx", "upstream_5xx"} {
		require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "fraud", "reason": r}), r)
		require.Zero(t, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": r}), r)
	}
}

// sizedInferCall is a ModelInfer request of model exactly size bytes long.
func sizedInferCall(t testing.TB, model string, size int) []byte {
	t.Helper()
	for pad := 0; pad < size; pad++ {
		if req := inferCall(model, "", inferTensor("x", []uint64{1, 1}, 1), textTensor("pad", strings.Repeat("x", pad))); len(req) == size {
			return req
		} else if len(req) > size {
			break
		}
	}
	t.Fatalf("no ModelInfer request of %s is %d bytes long", model, size)
	return nil
}

// A model server that refuses a request over its own receive limit sends
// RESOURCE_EXHAUSTED in the words grpc-go's client uses for an answer over
// ours ("grpc: received message larger than max (1024 vs. 512)"): it is the
// model server's status, passed to the client as sent and counted as
// upstream_4xx, not an answer too large (invalid_response), even when the
// request is as long as --proxy.max-body-size and its length is our limit.
func TestGRPCEdgeModelServerRefusesRequest(t *testing.T) {
	up := rawGRPCServer(t, func(_ string, ss grpc.ServerStream) error {
		var msg []byte
		return ss.RecvMsg(&msg) // over 512 bytes: grpc-go's RESOURCE_EXHAUSTED
	}, grpc.MaxRecvMsgSize(512))
	const limit = 1024
	e := grpcSidecarFor(t, up, func(o *Options) { o.Proxy.MaxBodySize = limit })
	conn := grpcClient(t, e.GRPCAddr())
	for _, size := range []int{limit, 600} {
		req := sizedInferCall(t, "fraud", size)
		var resp []byte
		err := conn.Invoke(context.Background(), modelInfer, &req, &resp)
		st, _ := status.FromError(err)
		require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
		require.Equal(t, fmt.Sprintf("grpc: received message larger than max (%d vs. 512)", size), st.Message(), "the model server's own")
	}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "fraud", "reason": "upstream_4xx"}))
	require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "fraud", "reason": "invalid_response"}))
}

// grpcTooLarge takes grpc-go's own words for a message over our limit, in
// each of its three forms, and no other status: not another code, not
// another limit (a server's own, in the same words), not the limit as the
// size, not other words.
func TestGRPCTooLarge(t *testing.T) {
	const limit = 1024
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (2048 vs. 1024)"), true},
		{status.Error(codes.ResourceExhausted, "grpc: message after decompression larger than max (1025 vs. 1024)"), true},
		{status.Error(codes.ResourceExhausted, "grpc: received message after decompression larger than max 1024"), true},
		{status.Error(codes.Internal, "grpc: received message larger than max (2048 vs. 1024)"), false},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (1024 vs. 512)"), false},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (2048 vs. 10240)"), false},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (2048 vs. 1024) or so"), false},
		{status.Error(codes.ResourceExhausted, "grpc: received message after decompression larger than max 10240"), false},
		{status.Error(codes.ResourceExhausted, "quota of 1024 requests exceeded"), false},
		{errors.New("grpc: received message larger than max (2048 vs. 1024)"), false},
		{nil, false},
	} {
		require.Equal(t, tc.want, grpcTooLarge(tc.err, limit), "%v", tc.err)
	}
}

// Client-streaming and bidirectional calls: the model server answers after
// the client's half-close; a model server that goes away mid-stream ends
// the stream for the client with UNAVAILABLE, counted as a connection
// failure.
func TestGRPCEdgeStreams(t *testing.T) {
	opened := make(chan struct{})
	up, srv := rawGRPCServerStop(t, func(method string, ss grpc.ServerStream) error {
		switch method {
		case "/test.Sum/Add":
			var n int
			for {
				var msg []byte
				if err := ss.RecvMsg(&msg); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				n += len(msg)
			}
			for range 3 { // after the client's half-close
				out := []byte{byte(n)}
				if err := ss.SendMsg(&out); err != nil {
					return err
				}
			}
			return nil
		case "/test.Die/Now":
			out := []byte("first")
			if err := ss.SendMsg(&out); err != nil {
				return err
			}
			close(opened)
			<-ss.Context().Done()
			return nil
		}
		return status.Error(codes.Unimplemented, "unknown")
	})
	e := grpcSidecarFor(t, up, nil)
	conn := grpcClient(t, e.GRPCAddr())
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	s, err := conn.NewStream(context.Background(), desc, "/test.Sum/Add")
	require.NoError(t, err)
	for _, m := range []string{"ab", "cde"} {
		msg := []byte(m)
		require.NoError(t, s.SendMsg(&msg))
	}
	require.NoError(t, s.CloseSend())
	for range 3 {
		var out []byte
		require.NoError(t, s.RecvMsg(&out))
		require.Equal(t, []byte{5}, out)
	}
	var out []byte
	require.ErrorIs(t, s.RecvMsg(&out), io.EOF)

	s, err = conn.NewStream(context.Background(), desc, "/test.Die/Now")
	require.NoError(t, err)
	require.NoError(t, s.RecvMsg(&out))
	require.Equal(t, "first", string(out))
	<-opened
	srv.Stop()
	err = s.RecvMsg(&out)
	st, _ := status.FromError(err)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", err)
	require.Equal(t, "modelmon: the model server closed the connection before a complete response", st.Message())
	eventually(t, e, 1, "modelmon_passthrough_errors_total", map[string]string{"reason": "connection"})
	require.Zero(t, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "upstream_5xx"}))
}

// The sidecar tells a connection to the model server lost during a call
// (the client gets UNAVAILABLE "closed the connection", counted as
// connection) from an UNAVAILABLE the model server sent on a working one,
// whatever its words: one that reads like grpc-go's own for a lost
// connection passes through as sent, the model server's failure
// (upstream_5xx), for a unary prediction, a passthrough call and a stream.
func TestGRPCEdgeConnectionLostOrStatus(t *testing.T) {
	words := map[string]string{
		"a": "error reading from server: EOF",
		"b": "transport is closing",
		"c": "connection error: desc = \"transport: authentication handshake failed: EOF\"",
	}
	hanging := make(chan struct{}, 1)
	up, srv := rawGRPCServerStop(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		name := modelName(msg)
		if name == "hang" {
			hanging <- struct{}{}
			<-ss.Context().Done()
			return ss.Context().Err()
		}
		return status.Error(codes.Unavailable, words[name])
	})
	e := grpcSidecarFor(t, up, nil)
	conn := grpcClient(t, e.GRPCAddr())
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	call := func(method, model string) error {
		s, err := conn.NewStream(context.Background(), desc, method)
		require.NoError(t, err)
		req := inferCall(model, "")
		require.NoError(t, s.SendMsg(&req))
		require.NoError(t, s.CloseSend())
		var out []byte
		return s.RecvMsg(&out)
	}
	for _, method := range []string{modelInfer, passthroughMethod, modelStreamInfer} {
		for model, msg := range words {
			err := call(method, model)
			require.Equal(t, codes.Unavailable, status.Code(err), "%s %s: %v", method, model, err)
			require.Equal(t, msg, status.Convert(err).Message(), method)
		}
	}
	for model := range words {
		eventually(t, e, 2, "modelmon_prediction_errors_total", map[string]string{"model": model, "reason": "upstream_5xx"})
		require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": model, "reason": "connection"}))
	}
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "upstream_5xx"}))
	require.Zero(t, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "connection"}))

	// The model server goes away during a prediction.
	errc := make(chan error, 1)
	go func() { errc <- call(modelInfer, "hang") }()
	<-hanging
	srv.Stop()
	err := <-errc
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Equal(t, "modelmon: the model server closed the connection before a complete response", status.Convert(err).Message())
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "hang", "reason": "connection"}))
	require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "hang", "reason": "upstream_5xx"}))
}

// A gRPC health service passes through, Check and Watch, counted as
// passthrough calls, and an unknown service's UNIMPLEMENTED comes back as
// the model server sent it, counted as the caller's error (upstream_4xx),
// as an HTTP model server's 404 for an unknown path is, not the model
// server's.
func TestGRPCEdgeHealthAndUnknown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	e := grpcSidecarFor(t, "http://"+ln.Addr().String(), nil)
	conn, err := grpc.NewClient("passthrough:///"+e.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, r.Status)
	w, err := hc.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first, err := w.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.Status)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	next, err := w.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.Status)

	var resp []byte
	empty := []byte{}
	raw := grpcClient(t, e.GRPCAddr())
	direct := grpcClient(t, ln.Addr().String())
	want := direct.Invoke(context.Background(), "/no.Such/Method", &empty, &resp)
	got := raw.Invoke(context.Background(), "/no.Such/Method", &empty, &resp)
	require.Equal(t, status.Convert(want).Proto().String(), status.Convert(got).Proto().String())
	got = raw.Invoke(context.Background(), modelInfer, &empty, &resp)
	require.Equal(t, codes.Unimplemented, status.Code(got), "%v", got)
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "upstream_4xx"}))
	require.Zero(t, metricValue(t, e, "modelmon_passthrough_errors_total", map[string]string{"reason": "upstream_5xx"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "default", "reason": "upstream_4xx"}))
	require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "default", "reason": "upstream_5xx"}))
}

// countingCompressor is gzip under another name, counting its uses: which
// legs of a call through the sidecar carry compressed messages.
type countingCompressor struct{ compress, decompress *atomic.Int64 }

var testCompressor = countingCompressor{new(atomic.Int64), new(atomic.Int64)}

func init() { encoding.RegisterCompressor(testCompressor) }

func (countingCompressor) Name() string { return "modelmon-test" }
func (c countingCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	c.compress.Add(1)
	return gzip.NewWriter(w), nil
}
func (c countingCompressor) Decompress(r io.Reader) (io.Reader, error) {
	c.decompress.Add(1)
	return gzip.NewReader(r)
}

// Compression is per leg, as grpc-go does it: a client's compressed
// request reaches the model server uncompressed, and the answer goes back
// compressed the way the client's request was, whatever the model server
// did; a model server's compressed answer goes back uncompressed to a
// client that sent its request so.
func TestGRPCEdgeCompression(t *testing.T) {
	up := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var msg []byte
		if err := ss.RecvMsg(&msg); err != nil {
			return err
		}
		if modelName(msg) == "compressed" {
			if err := grpc.SetSendCompressor(ss.Context(), "modelmon-test"); err != nil {
				return err
			}
		}
		return ss.SendMsg(&msg)
	})
	e := grpcSidecarFor(t, up, nil)
	conn := grpcClient(t, e.GRPCAddr())
	for _, tc := range []struct {
		model                string
		opts                 []grpc.CallOption
		compress, decompress int64
	}{
		// The client's request, and the sidecar's answer; the model
		// server's answer is not.
		{"plain", []grpc.CallOption{grpc.UseCompressor("modelmon-test")}, 2, 2},
		// The model server's answer only.
		{"compressed", nil, 1, 1},
	} {
		for _, method := range []string{modelInfer, passthroughMethod} {
			testCompressor.compress.Store(0)
			testCompressor.decompress.Store(0)
			req := inferCall(tc.model, "")
			var resp []byte
			require.NoError(t, conn.Invoke(context.Background(), method, &req, &resp, tc.opts...))
			require.Equal(t, req, resp)
			require.Equal(t, tc.compress, testCompressor.compress.Load(), "%s %s", tc.model, method)
			require.Equal(t, tc.decompress, testCompressor.decompress.Load(), "%s %s", tc.model, method)
		}
	}
}

// A stream's request past --proxy.max-body-size, after the first, ends
// the call RESOURCE_EXHAUSTED, as the first does.
func TestGRPCEdgeStreamRequestTooLarge(t *testing.T) {
	e, _ := grpcSidecar(t, func(o *Options) { o.Proxy.MaxBodySize = 4 << 10 })
	conn := grpcClient(t, e.GRPCAddr())
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	for _, method := range []string{"/test.Echo/Chat", modelStreamInfer} {
		s, err := conn.NewStream(context.Background(), desc, method)
		require.NoError(t, err)
		small := inferCall("fraud", "")
		require.NoError(t, s.SendMsg(&small))
		var out []byte
		require.NoError(t, s.RecvMsg(&out), method)
		big := make([]byte, 8<<10)
		require.NoError(t, s.SendMsg(&big))
		err = s.RecvMsg(&out)
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%s: %v", method, err)
	}
}
