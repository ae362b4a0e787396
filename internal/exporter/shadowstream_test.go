package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelmon/modelmon/collector"
)

// streamRequest is a ModelStreamInfer request of model with id (none when
// empty) and an input of k values: each k gives a request of another
// length.
func streamRequest(model, id string, k int) []byte {
	x := make([]float32, k)
	req := inferCall(model, "", inferTensor("x", []uint64{1, uint64(k)}, x...))
	if id != "" {
		req = protowire.AppendString(protowire.AppendTag(req, 3, protowire.BytesType), id)
	}
	return req
}

// lengthAnswer is an answer to req of one output, the length of req, so
// that it tells which request it answers; final as streamAnswer has it.
func lengthAnswer(req []byte, final int) []byte {
	return streamAnswer("", modelName(req), fieldString(req, 3), final, inferTensor("y", []uint64{1}, float32(len(req))))
}

// lengthModel answers each ModelStreamInfer request once, unflagged, with
// lengthAnswer, or, for the model "broken", an error of the inference; a
// StreamPredictions call with two answers, the last [0.25].
func lengthModel(method string, ss grpc.ServerStream) error {
	if method == torchStreamPredictions {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		for _, p := range []string{"[0.1]", "[0.25]"} {
			resp := appendField(nil, 1, []byte(p))
			if err := ss.SendMsg(&resp); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return nil
		}
		resp := lengthAnswer(req, -1)
		if modelName(req) == "broken" {
			resp = streamAnswer("the model crashed", "broken", fieldString(req, 3), -1)
		}
		if err := ss.SendMsg(&resp); err != nil {
			return err
		}
	}
}

// shadowStreamCall is a stream as a shadow received it.
type shadowStreamCall struct {
	method string
	md     metadata.MD
	msgs   [][]byte
}

// streamCandidate is a gRPC shadow on loopback whose calls serve answers,
// and which keeps what it received.
type streamCandidate struct {
	url string
	srv *grpc.Server
	mu  sync.Mutex
	got []*shadowStreamCall
}

// candidateServe takes each message a streamCandidate receives on a call
// (ctx the call's, call what it received so far) and answers it (send),
// and returns an error to end the call with it.
type candidateServe func(ctx context.Context, c *streamCandidate, call *shadowStreamCall, req []byte, send func([]byte) error) error

// newStreamCandidate starts a streamCandidate that serves its calls with
// serve.
func newStreamCandidate(t *testing.T, serve candidateServe) *streamCandidate {
	t.Helper()
	c := &streamCandidate{}
	c.url, c.srv = rawGRPCServerStop(t, func(method string, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		call := &shadowStreamCall{method: method, md: md}
		c.mu.Lock()
		c.got = append(c.got, call)
		c.mu.Unlock()
		send := func(msg []byte) error { return ss.SendMsg(&msg) }
		for {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			c.mu.Lock()
			call.msgs = append(call.msgs, req)
			c.mu.Unlock()
			if err := serve(ss.Context(), c, call, req, send); err != nil {
				return err
			}
		}
	})
	return c
}

func (c *streamCandidate) calls() []shadowStreamCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []shadowStreamCall
	for _, call := range c.got {
		out = append(out, shadowStreamCall{call.method, call.md, append([][]byte(nil), call.msgs...)})
	}
	return out
}

// streamShadowSidecar starts the sidecar in front of the gRPC model server
// at up, mirroring every prediction to the gRPC shadow at shadow.
func streamShadowSidecar(t *testing.T, up, shadow string, mod func(*Options)) *Exporter {
	t.Helper()
	return grpcSidecarFor(t, up, func(o *Options) {
		o.Shadow = ShadowOptions{GRPCUpstream: shadow, SampleRatio: 1, Timeout: 5 * time.Second, Concurrency: 2, MaxPending: 1000}
		if mod != nil {
			mod(o)
		}
	})
}

// streamAll sends reqs on a new stream of method, closes it, and reads its
// answers to the end.
func streamAll(t *testing.T, ctx context.Context, conn *grpc.ClientConn, method string, reqs ...[]byte) ([][]byte, error) {
	t.Helper()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	require.NoError(t, err)
	for _, req := range reqs {
		require.NoError(t, cs.SendMsg(&req))
	}
	require.NoError(t, cs.CloseSend())
	var got [][]byte
	for {
		var msg []byte
		if err := cs.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return got, err
		}
		got = append(got, msg)
	}
}

// Each request of a ModelStreamInfer call goes to the gRPC shadow on a
// stream of its own for the client's stream, in order, with the call's
// metadata; the shadow's answers are paired with them by id, else in
// order (the last of a decoupled answer's pieces), and compared with the
// model's; with labels, the shadow's predictions wait by the requests'
// ids. A request of a model --shadow.model does not name is not mirrored,
// and one the model failed is not compared. The client gets the model's
// answers, byte for byte.
func TestShadowGRPCStreamCompares(t *testing.T) {
	up := rawGRPCServer(t, lengthModel)
	candidate := newStreamCandidate(t, func(_ context.Context, _ *streamCandidate, call *shadowStreamCall, req []byte, send func([]byte) error) error {
		// Answers the two with ids once it has both, the second first, and
		// the first without one in two pieces, the first a decoy.
		switch n := len(call.msgs); n {
		case 1:
			return nil
		case 2:
			if err := send(lengthAnswer(req, 1)); err != nil {
				return err
			}
			return send(lengthAnswer(call.msgs[0], -1))
		case 3:
			decoy := streamAnswer("", modelName(req), "", 0, inferTensor("y", []uint64{1}, 1000))
			if err := send(decoy); err != nil {
				return err
			}
			return send(lengthAnswer(req, 1))
		}
		return send(lengthAnswer(req, -1))
	})
	e := streamShadowSidecar(t, up, candidate.url, func(o *Options) {
		o.Shadow.Models = []string{"price", "broken"}
		labelsOn(o)
	})
	reqs := [][]byte{
		streamRequest("price", "a", 1),
		streamRequest("house", "h", 2), // not mirrored
		streamRequest("price", "bb", 3),
		streamRequest("price", "", 4),
		streamRequest("broken", "", 5), // the model fails it
		streamRequest("price", "", 6),
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	got, err := streamAll(t, ctx, grpcClient(t, e.GRPCAddr()), modelStreamInfer, reqs...)
	require.NoError(t, err)
	want, err := streamAll(t, ctx, grpcClient(t, strings.TrimPrefix(up, "http://")), modelStreamInfer, reqs...)
	require.NoError(t, err)
	require.Equal(t, want, got, "the model's answers, byte for byte")
	waitIdle(t, e)

	calls := candidate.calls()
	require.Len(t, calls, 1, "one stream for the client's")
	require.Equal(t, modelStreamInfer, calls[0].method)
	require.Equal(t, [][]byte{reqs[0], reqs[2], reqs[3], reqs[4], reqs[5]}, calls[0].msgs, "in order, as sent")
	require.Equal(t, []string{"Bearer s3cret"}, calls[0].md.Get("authorization"))

	price := map[string]string{"model": "price"}
	require.Equal(t, 4.0, metricValue(t, e, collector.ShadowRequestsTotal, price))
	require.Equal(t, 4.0, metricValue(t, e, collector.ShadowPredictionsTotal, price))
	require.Equal(t, 4.0, metricValue(t, e, collector.ShadowDuration+"_count", price))
	require.Zero(t, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, price), "each answer paired with its request")
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "broken"}))
	require.Zero(t, metricValue(t, e, collector.ShadowPredictionsTotal, map[string]string{"model": "broken"}))
	for _, model := range []string{"price", "broken"} {
		for _, reason := range collector.ShadowErrorReasons {
			require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": model, "reason": reason}), reason)
		}
		require.Zero(t, metricValue(t, e, collector.ShadowDroppedTotal, map[string]string{"model": model}))
	}
	require.Zero(t, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "house"}))

	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPendingPredictions, nil), "those with ids")
	st, resp := postLabels(t, e, `{"id": "a", "label": 0}`+"\n"+`{"id": "bb", "label": 0}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, price))
	require.Equal(t, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, map[string]string{"model": "price", "source": "model"}),
		metricValue(t, e, collector.ShadowAbsoluteErrorTotal, map[string]string{"model": "price", "source": "shadow"}))
}

// A StreamPredictions call is mirrored on a call of its own, closed after
// its one request (TorchServe's server answers then); the last of the
// shadow's answers is compared with the model's last.
func TestShadowGRPCStreamPredictions(t *testing.T) {
	up := rawGRPCServer(t, lengthModel)
	type seen struct {
		method string
		req    []byte
	}
	calls := make(chan seen, 10)
	candidate := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		var req, more []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		if err := ss.RecvMsg(&more); !errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "one request, then the half-close")
		}
		calls <- seen{method, req}
		for _, p := range []string{"[0.5]", "[0.75]"} {
			resp := appendField(nil, 1, []byte(p))
			if err := ss.SendMsg(&resp); err != nil {
				return err
			}
		}
		return nil
	})
	e := streamShadowSidecar(t, up, candidate, nil)
	input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"instances": [[1, 2]]}`))
	req := appendField(appendField(nil, 1, []byte("resnet")), 3, input)
	got, err := streamAll(t, context.Background(), grpcClient(t, e.GRPCAddr()), torchStreamPredictions, req)
	require.NoError(t, err)
	require.Equal(t, [][]byte{appendField(nil, 1, []byte("[0.1]")), appendField(nil, 1, []byte("[0.25]"))}, got)
	waitIdle(t, e)

	require.Len(t, calls, 1)
	call := <-calls
	require.Equal(t, torchStreamPredictions, call.method)
	require.Equal(t, req, call.req)
	m := map[string]string{"model": "resnet"}
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, m))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDuration+"_count", m))
	require.InDelta(t, 0.5, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, m), 1e-6, "[0.25] and [0.75], the last answers")
}

// A shadow that dies mid-stream fails the requests waiting on its stream,
// and each later one, which opens another, as connection; the client's
// stream goes on, its answers the model's, byte for byte.
func TestShadowGRPCStreamShadowDies(t *testing.T) {
	up := rawGRPCServer(t, lengthModel)
	candidate := newStreamCandidate(t, func(ctx context.Context, c *streamCandidate, call *shadowStreamCall, req []byte, send func([]byte) error) error {
		if len(call.msgs) == 1 {
			return send(lengthAnswer(req, -1))
		}
		go c.srv.Stop() // gone, connections and all, before it answers
		<-ctx.Done()
		return ctx.Err()
	})
	e := streamShadowSidecar(t, up, candidate.url, nil)
	conn := grpcClient(t, e.GRPCAddr())
	cs, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, modelStreamInfer)
	require.NoError(t, err)
	price := map[string]string{"model": "price"}
	connection := map[string]string{"model": "price", "reason": collector.ErrorConnection}
	var reqs, got [][]byte
	for i := 1; i <= 5; i++ {
		req := streamRequest("price", "", i)
		reqs = append(reqs, req)
		require.NoError(t, cs.SendMsg(&req))
		var msg []byte
		require.NoError(t, cs.RecvMsg(&msg))
		got = append(got, msg)
		switch i {
		case 1:
			eventually(t, e, 1, collector.ShadowPredictionsTotal, price)
		default:
			eventually(t, e, float64(i-1), collector.ShadowErrorsTotal, connection)
		}
	}
	require.NoError(t, cs.CloseSend())
	var msg []byte
	require.ErrorIs(t, cs.RecvMsg(&msg), io.EOF)
	want, err := streamAll(t, context.Background(), grpcClient(t, strings.TrimPrefix(up, "http://")), modelStreamInfer, reqs...)
	require.NoError(t, err)
	require.Equal(t, want, got, "the model's answers, byte for byte")
	waitIdle(t, e)
	require.Equal(t, 5.0, metricValue(t, e, collector.ShadowRequestsTotal, price))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, price))
	require.Equal(t, 4.0, metricValue(t, e, collector.ShadowErrorsTotal, connection))
	require.Zero(t, metricValue(t, e, collector.PredictionErrorsTotal, map[string]string{"model": "price", "reason": collector.ErrorConnection}), "the model's own")
}

// A slow shadow holds no client: the client's stream is answered and ends
// while the shadow holds all its answers, which are compared once it
// gives them.
func TestShadowGRPCStreamSlowShadow(t *testing.T) {
	up := rawGRPCServer(t, lengthModel)
	release := make(chan struct{})
	candidate := newStreamCandidate(t, func(_ context.Context, _ *streamCandidate, _ *shadowStreamCall, req []byte, send func([]byte) error) error {
		<-release
		return send(lengthAnswer(req, -1))
	})
	e := streamShadowSidecar(t, up, candidate.url, func(o *Options) { o.Shadow.Timeout = time.Minute })
	var reqs [][]byte
	for i := 1; i <= 5; i++ {
		reqs = append(reqs, streamRequest("price", "", i))
	}
	start := time.Now()
	got, err := streamAll(t, context.Background(), grpcClient(t, e.GRPCAddr()), modelStreamInfer, reqs...)
	took := time.Since(start)
	require.NoError(t, err)
	want, err := streamAll(t, context.Background(), grpcClient(t, strings.TrimPrefix(up, "http://")), modelStreamInfer, reqs...)
	require.NoError(t, err)
	require.Equal(t, want, got, "the model's answers, byte for byte")
	price := map[string]string{"model": "price"}
	// Answered and ended while the shadow holds every answer, well within
	// --shadow.timeout: the client waited for none of it.
	require.Zero(t, metricValue(t, e, collector.ShadowPredictionsTotal, price), "the shadow holds them still")
	require.Less(t, took, 10*time.Second)
	require.Less(t, metricValue(t, e, collector.PredictionDuration+"_sum", price), 5.0)

	close(release)
	waitIdle(t, e)
	require.Equal(t, 5.0, metricValue(t, e, collector.ShadowPredictionsTotal, price))
	require.Zero(t, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, price))
}

// A shadow that reads a stream's requests and answers none holds at most
// maxStreamPending of them: the others are dropped and counted, the client
// gets every answer, and those held fail with the shadow's stream when it
// goes away.
func TestShadowGRPCStreamBounded(t *testing.T) {
	up := rawGRPCServer(t, lengthModel)
	var received atomic.Int64
	candidate, srv := rawGRPCServerStop(t, func(_ string, ss grpc.ServerStream) error {
		for {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				break
			}
			received.Add(1)
		}
		<-ss.Context().Done()
		return nil
	})
	e := streamShadowSidecar(t, up, candidate, func(o *Options) { o.Shadow.Timeout = time.Minute })
	const extra = 10
	reqs := make([][]byte, maxStreamPending+extra)
	for i := range reqs {
		reqs[i] = streamRequest("price", "", 1)
	}
	got, err := streamAll(t, context.Background(), grpcClient(t, e.GRPCAddr()), modelStreamInfer, reqs...)
	require.NoError(t, err)
	require.Len(t, got, len(reqs))
	price := map[string]string{"model": "price"}
	require.Equal(t, float64(extra), metricValue(t, e, collector.ShadowDroppedTotal, price))
	eventually(t, e, float64(maxStreamPending), collector.ShadowRequestsTotal, price)
	require.Eventually(t, func() bool { return received.Load() == maxStreamPending }, 10*time.Second, time.Millisecond)
	require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "price", "reason": collector.ErrorConnection}))

	srv.Stop()
	waitIdle(t, e)
	require.Equal(t, float64(maxStreamPending), metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "price", "reason": collector.ErrorConnection}))
	require.Equal(t, float64(extra), metricValue(t, e, collector.ShadowDroppedTotal, price))
	for _, reason := range collector.ErrorReasons {
		require.Zero(t, metricValue(t, e, collector.PredictionErrorsTotal, map[string]string{"model": "price", "reason": reason}), "the model's own")
	}
}

// How a mirrored stream's request fails, by reason, as a unary call's: the
// shadow's error answers as the gRPC proxy counts the model server's
// (streamErrorCode), its status ending the stream, an answer larger than
// --capture.max-body-size, no answer in time, and a stream it ended
// without answering (nothing to compare with the model's answer).
func TestShadowGRPCStreamFailures(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		serve        candidateServe
	}{
		{"inference error", collector.ErrorUpstream5xx, func(_ context.Context, _ *streamCandidate, _ *shadowStreamCall, req []byte, send func([]byte) error) error {
			return send(streamAnswer("the candidate crashed", "price", fieldString(req, 3), -1))
		}},
		{"rejected", collector.ErrorUpstream4xx, func(_ context.Context, _ *streamCandidate, _ *shadowStreamCall, req []byte, send func([]byte) error) error {
			// As Triton rejects a request it does not take: its id alone.
			var b []byte
			b = protowire.AppendString(protowire.AppendTag(b, 1, protowire.BytesType), "unexpected shape for input 'x'")
			b = protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType),
				protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), fieldString(req, 3)))
			return send(b)
		}},
		{"status", collector.ErrorUpstream5xx, func(context.Context, *streamCandidate, *shadowStreamCall, []byte, func([]byte) error) error {
			return status.Error(codes.Internal, "the candidate crashed")
		}},
		{"unavailable", collector.ErrorConnection, func(context.Context, *streamCandidate, *shadowStreamCall, []byte, func([]byte) error) error {
			return status.Error(codes.Unavailable, "the candidate is loading")
		}},
		{"too large", collector.ErrorInvalidResponse, func(_ context.Context, _ *streamCandidate, _ *shadowStreamCall, req []byte, send func([]byte) error) error {
			return send(streamAnswer("", "price", fieldString(req, 3), -1, textTensor("pad", strings.Repeat("x", 2048))))
		}},
		{"slow", collector.ErrorTimeout, func(ctx context.Context, _ *streamCandidate, _ *shadowStreamCall, _ []byte, _ func([]byte) error) error {
			<-ctx.Done() // the sidecar gave up
			return ctx.Err()
		}},
		{"silent", collector.ShadowInvalidPayload, func(context.Context, *streamCandidate, *shadowStreamCall, []byte, func([]byte) error) error {
			return nil // ends the call well at the half-close, unanswered
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rawGRPCServer(t, lengthModel)
			candidate := newStreamCandidate(t, tc.serve)
			e := streamShadowSidecar(t, up, candidate.url, func(o *Options) {
				if tc.reason == collector.ErrorTimeout {
					o.Shadow.Timeout = 200 * time.Millisecond
				}
				o.CaptureMaxBodySize = 1024
			})
			req := streamRequest("price", "r1", 1)
			got, err := streamAll(t, context.Background(), grpcClient(t, e.GRPCAddr()), modelStreamInfer, req)
			require.NoError(t, err)
			require.Equal(t, [][]byte{lengthAnswer(req, -1)}, got)
			waitIdle(t, e)
			price := map[string]string{"model": "price"}
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, price))
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "price", "reason": tc.reason}))
			require.Zero(t, metricValue(t, e, collector.ShadowPredictionsTotal, price))
			for _, reason := range collector.ErrorReasons {
				require.Zero(t, metricValue(t, e, collector.PredictionErrorsTotal, map[string]string{"model": "price", "reason": reason}), "the model's own")
			}
		})
	}
}

// llmAnswers are a decoupled vLLM model's answers to a ModelStreamInfer
// request of model with id, as Triton streams them: n pieces of text, one
// output token each, the last flagged final with its finish reason.
func llmAnswers(model, id string, n int, finish string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		if i == n-1 {
			out[i] = streamAnswer("", model, id, 1, textTensor("text_output", "!"), textTensor("finish_reason", finish), countTensor("num_output_tokens", 1))
			break
		}
		out[i] = streamAnswer("", model, id, 0, textTensor("text_output", "x"), countTensor("num_output_tokens", 1))
	}
	return out
}

// llmModel answers each ModelStreamInfer request with llmAnswers, 3
// pieces, and a StreamPredictions call with 3 answers, at once.
func llmModel(method string, ss grpc.ServerStream) error {
	for {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return nil
		}
		answers := llmAnswers(modelName(req), fieldString(req, 3), 3, "length")
		if method == torchStreamPredictions {
			answers = torchAnswers(3, "length")
		}
		for _, a := range answers {
			if err := ss.SendMsg(&a); err != nil {
				return err
			}
		}
		if method == torchStreamPredictions {
			return nil
		}
	}
}

// torchAnswers are the n answers of a TorchServe StreamPredictions call of
// a generative model: a token each, the last a completion that stopped for
// finish after n tokens.
func torchAnswers(n int, finish string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = appendField(nil, 1, []byte(`"x"`))
	}
	out[n-1] = appendField(nil, 1, []byte(fmt.Sprintf(`{"choices":[{"index":0,"text":"x","finish_reason":%q}],"usage":{"prompt_tokens":2,"completion_tokens":%d}}`, finish, n)))
	return out
}

// --shadow.timeout bounds each request's wait for the shadow's next answer
// on a mirrored stream, as each piece of a streamed HTTP answer, not the
// stream: a shadow that streams its answers to a request (an LLM's tokens)
// for longer than the timeout, never that long quiet, is compared, its
// latency to its last answer, over ModelStreamInfer and StreamPredictions
// alike; one that goes quiet for longer mid-stream counts as timeout. A
// request that waits too long for its first answer while the shadow
// streams another's (one at a time, as a model instance does) counts as
// timeout alone: the stream and the answers coming on it go on, its own
// later answers known by its id. Without ids, answers could no longer be
// paired: the stream ends, and all that wait on it count as timeout.
//
// The shadow's streams are driven by what the sidecar did, not by timers
// racing the timeout: a long stream goes on, a piece every 10ms, until
// the sidecar has counted b, sent after it, as timeout (so it lasted
// longer than the timeout), and a quiet one is quiet until the sidecar
// gives up on it. Only a piece more than the timeout late, 150 times
// their interval, makes a stream look quiet.
func TestShadowGRPCStreamTimeoutBetweenAnswers(t *testing.T) {
	const (
		timeout = 1500 * time.Millisecond
		every   = 10 * time.Millisecond // between the pieces of a stream
		// never bounds how long the shadow streams or stays quiet waiting
		// for the sidecar, which it does only when the sidecar is broken.
		never = 5 * timeout
	)
	var sidecar atomic.Pointer[Exporter]
	bTimedOut := func() bool {
		e := sidecar.Load()
		return e != nil && testutil.ToFloat64(e.shadow.metrics.Errors.WithLabelValues("llm", collector.ErrorTimeout)) > 0
	}
	llamaCame := make(chan struct{})
	up := rawGRPCServer(t, llmModel)
	candidate := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		ctx := ss.Context()
		wait := func(d time.Duration) {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		for {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				return nil
			}
			model, id := modelName(req), fieldString(req, 3)
			// answers are n pieces, the last final; the count feeds the
			// tokens the last reports.
			answers := func(n int) [][]byte {
				if method == torchStreamPredictions {
					return torchAnswers(n, "length")
				}
				return llmAnswers(model, id, n, "length")
			}
			// stream sends a piece every `every` until done, the sidecar
			// ends the call, or never has passed, then the last of them.
			stream := func(done func() bool) error {
				deadline := time.Now().Add(never)
				n := 1
				for ; !done() && ctx.Err() == nil && time.Now().Before(deadline); n++ {
					piece := answers(2)[0]
					if err := ss.SendMsg(&piece); err != nil {
						return err
					}
					wait(every)
				}
				last := answers(n)[n-1]
				return ss.SendMsg(&last)
			}
			var err error
			switch {
			case model == "llama":
				close(llamaCame)
				err = stream(bTimedOut)
			case model == "llm" && id == "a":
				err = stream(bTimedOut)
			case model == "anon":
				// The first, till the sidecar ends the stream: the second
				// is never answered.
				err = stream(func() bool { return false })
			case model == "quiet":
				first := answers(2)[0]
				if err = ss.SendMsg(&first); err == nil {
					wait(never) // the sidecar gives up first
					err = stream(func() bool { return true })
				}
			default: // b, given up on by now
				err = stream(func() bool { return true })
			}
			if err != nil || method == torchStreamPredictions {
				return err
			}
		}
	})
	e := streamShadowSidecar(t, up, candidate, func(o *Options) { o.Shadow.Timeout = timeout })
	sidecar.Store(e)
	conn := grpcClient(t, e.GRPCAddr())

	// llama goes to the shadow before b does: it too streams until b has
	// waited the timeout.
	input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"prompt": "Hi", "max_tokens": 4}`))
	_, err := streamAll(t, context.Background(), conn, torchStreamPredictions, appendField(appendField(nil, 1, []byte("llama")), 3, input))
	require.NoError(t, err)
	select {
	case <-llamaCame:
	case <-time.After(10 * time.Second):
		t.Fatal("the shadow never got llama's request")
	}
	for _, reqs := range [][][]byte{
		{streamRequest("llm", "a", 1), streamRequest("llm", "b", 2)},
		{streamRequest("quiet", "q", 1)},
		{streamRequest("anon", "", 1), streamRequest("anon", "", 2)},
	} {
		_, err := streamAll(t, context.Background(), conn, modelStreamInfer, reqs...)
		require.NoError(t, err)
	}
	waitIdle(t, e)

	for _, tc := range []struct {
		model                        string
		requests, compared, timedOut float64
	}{
		{"llm", 2, 1, 1}, // b waited for a's answers
		{"llama", 1, 1, 0},
		{"quiet", 1, 0, 1},
		{"anon", 2, 0, 2},
	} {
		m := map[string]string{"model": tc.model}
		require.Equal(t, tc.requests, metricValue(t, e, collector.ShadowRequestsTotal, m), tc.model)
		require.Equal(t, tc.compared, metricValue(t, e, collector.ShadowPredictionsTotal, m), tc.model)
		require.Equal(t, tc.timedOut, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": tc.model, "reason": collector.ErrorTimeout}), tc.model)
		for _, reason := range collector.ShadowErrorReasons {
			if reason != collector.ErrorTimeout {
				require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": tc.model, "reason": reason}), "%s: %s", tc.model, reason)
			}
		}
		require.Equal(t, tc.compared, metricValue(t, e, collector.ShadowDuration+"_count", m), tc.model)
		if tc.compared > 0 {
			require.Greater(t, metricValue(t, e, collector.ShadowDuration+"_sum", m), timeout.Seconds(), "%s: to its last answer", tc.model)
		}
	}
}

// sidecarTimes are the histograms, by model, by which the sidecar times a
// model server's answers: the model's own, through the proxy
// (proxyTimes), or the shadow's (shadowTimes). They are read when needed:
// the sidecar starts after the model servers it stands in front of.
type sidecarTimes func() (firstByte, duration *prometheus.HistogramVec)

func proxyTimes(e *atomic.Pointer[Exporter]) sidecarTimes {
	return func() (*prometheus.HistogramVec, *prometheus.HistogramVec) {
		m := e.Load().metrics
		return m.FirstByte, m.Duration
	}
}

func shadowTimes(e *atomic.Pointer[Exporter]) sidecarTimes {
	return func() (*prometheus.HistogramVec, *prometheus.HistogramVec) {
		m := e.Load().shadow.metrics
		return m.FirstByte, m.Duration
	}
}

// sendApart sends answers, the several answers of a token each to req, a
// request of a streaming call of method, on ss so that the sidecar takes
// the second 2·pause after the first whatever the load: the first; then,
// once the sidecar has taken it, the others 2·pause later, at once. Over
// three answers the time per output token, (last − first) / (3 − 1), is
// then pause at least, and about 0 had it run from the second: no timer
// of the model server races the sidecar's clock.
//
// The sidecar has taken a StreamPredictions call's first answer once it
// has timed it as the call's first byte. On ModelStreamInfer, whose time
// to first byte waits for a second answer, it has once it has timed an
// answer it read after it on the same stream: the one to the next request
// ss receives, answered once with reply.
func sendApart(t testing.TB, ss grpc.ServerStream, method string, req []byte, answers [][]byte, pause time.Duration, times sidecarTimes, reply func(next []byte) []byte) error {
	send := func(msgs ...[]byte) error {
		for _, msg := range msgs {
			if err := ss.SendMsg(&msg); err != nil {
				return err
			}
		}
		return nil
	}
	if err := send(answers[0]); err != nil {
		return err
	}
	firstByte, duration := times()
	if method == torchStreamPredictions {
		observedOnce(t, firstByte, modelName(req))
	} else {
		var next []byte
		if err := ss.RecvMsg(&next); err != nil {
			return err
		}
		if err := send(reply(next)); err != nil {
			return err
		}
		observedOnce(t, duration, modelName(next))
	}
	select {
	case <-time.After(2 * pause):
	case <-ss.Context().Done():
		return nil
	}
	return send(answers[1:]...)
}

// A mirrored stream's answers are timed as the model's own are on the
// gRPC proxy: the time to the first of a decoupled model's several answers
// to a request, and to a StreamPredictions call's first answer, is the
// shadow's time to first byte, and a generative answer's time per output
// token after the first runs from it to the last answer, over the tokens
// its answers add up to (num_output_tokens) or its last reports. A request
// answered once has no time to first byte.
//
// The bounds hold whatever the load: the shadow sends its second answer
// 2·pause after the sidecar has taken its first (sendApart; on
// ModelStreamInfer, told by the answer to tabular on the same stream), and
// its third right away, so the time per output token is pause at least, and
// about 0 had it run from the second. On ModelStreamInfer it is
// the sidecar's own times, (latency − time to first byte) / (3 − 1),
// exactly; on StreamPredictions, whose latency runs to the call's end, at
// most that.
func TestShadowGRPCStreamTokenLatency(t *testing.T) {
	const firstPause, pause = 300 * time.Millisecond, 100 * time.Millisecond
	var sidecar atomic.Pointer[Exporter]
	up := rawGRPCServer(t, llmModel)
	candidate := rawGRPCServer(t, func(method string, ss grpc.ServerStream) error {
		for {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				return nil
			}
			answers := llmAnswers(modelName(req), fieldString(req, 3), 3, "stop")
			if method == torchStreamPredictions {
				answers = torchAnswers(3, "stop")
			}
			select {
			case <-time.After(firstPause):
			case <-ss.Context().Done():
				return nil
			}
			// On ModelStreamInfer, tabular, answered once, follows llm's
			// first answer.
			err := sendApart(t, ss, method, req, answers, pause, shadowTimes(&sidecar), func(tab []byte) []byte { return lengthAnswer(tab, -1) })
			if err != nil || method == torchStreamPredictions {
				return err
			}
		}
	})
	e := streamShadowSidecar(t, up, candidate, nil)
	sidecar.Store(e)
	conn := grpcClient(t, e.GRPCAddr())
	_, err := streamAll(t, context.Background(), conn, modelStreamInfer, streamRequest("llm", "a", 1), streamRequest("tabular", "b", 2))
	require.NoError(t, err)
	input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"prompt": "Hi", "max_tokens": 3}`))
	_, err = streamAll(t, context.Background(), conn, torchStreamPredictions, appendField(appendField(nil, 1, []byte("llama")), 3, input))
	require.NoError(t, err)
	waitIdle(t, e)

	for _, model := range []string{"llm", "llama"} {
		m := map[string]string{"model": model}
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, m), model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDisagreementsTotal, m), "%s: stop against length", model)
		// As the model's own, through the proxy.
		require.Equal(t, 1.0, metricValue(t, e, collector.PredictionFirstByte+"_count", m), model)
		require.Equal(t, 1.0, metricValue(t, e, collector.GenerationTimePerToken+"_count", m), model)

		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowFirstByte+"_count", m), model)
		ttfb := metricValue(t, e, collector.ShadowFirstByte+"_sum", m)
		latency := metricValue(t, e, collector.ShadowDuration+"_sum", m)
		require.GreaterOrEqual(t, ttfb, firstPause.Seconds(), model)
		require.Less(t, ttfb, latency, "%s: the first answer, not the last", model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowTimePerToken+"_count", m), model)
		tpot := metricValue(t, e, collector.ShadowTimePerToken+"_sum", m)
		require.GreaterOrEqual(t, tpot, pause.Seconds(), "%s: (last − first) / (3 − 1), the second 2·pause after the first", model)
		if model == "llm" {
			require.InDelta(t, (latency-ttfb)/2, tpot, 1e-9, "%s: from the first answer to the last, over 3 − 1 tokens", model)
		} else {
			require.LessOrEqual(t, tpot, (latency-ttfb)/2+1e-9, "%s: from the first answer", model)
		}
	}
	tabular := map[string]string{"model": "tabular"}
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, tabular))
	require.Zero(t, metricValue(t, e, collector.ShadowFirstByte+"_count", tabular), "answered once")
	require.Zero(t, metricValue(t, e, collector.ShadowTimePerToken+"_count", tabular))
}

// tokenModel answers each ModelStreamInfer request of a generative model
// as its name says, pause after it came: "stream", three answers of one
// token each, the last flagged final, sent apart (sendApart, by times,
// the next request answered in between); "whole", one answer of three
// tokens flagged final (vLLM's, not streamed); "plain", one of three
// tokens unflagged (a model that is not decoupled); "cut", one of three
// tokens flagged not final, and none more before the call ends.
func tokenModel(t testing.TB, pause time.Duration, times sidecarTimes) func(string, grpc.ServerStream) error {
	answersTo := func(req []byte) [][]byte {
		model, id := modelName(req), fieldString(req, 3)
		once := func(final int) [][]byte {
			return [][]byte{streamAnswer("", model, id, final, textTensor("text_output", "xyz"),
				textTensor("finish_reason", "length"), countTensor("num_output_tokens", 3))}
		}
		switch model {
		case "stream":
			return llmAnswers(model, id, 3, "length")
		case "whole":
			return once(1)
		case "plain":
			return once(-1)
		case "cut":
			return once(0)
		}
		return nil
	}
	return func(method string, ss grpc.ServerStream) error {
		for {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				return nil
			}
			select {
			case <-time.After(pause):
			case <-ss.Context().Done():
				return nil
			}
			answers := answersTo(req)
			var err error
			switch {
			case len(answers) > 1:
				err = sendApart(t, ss, method, req, answers, pause, times, func(next []byte) []byte { return answersTo(next)[0] })
			case len(answers) == 1:
				err = ss.SendMsg(&answers[0])
			}
			if err != nil {
				return err
			}
		}
	}
}

// A ModelStreamInfer request answered by one message, whatever the tokens
// it reports, was not streamed, as an HTTP answer read whole is not: it
// has no time to first byte, and no time per output token (which would be
// 0, its first answer its last). A stream of several answers has both,
// the time per output token pause at least, as the sidecar took its
// answers (sendApart). The model, through the proxy, and the shadow are
// timed alike.
func TestShadowGRPCStreamAnsweredOnce(t *testing.T) {
	const pause = 50 * time.Millisecond
	var sidecar atomic.Pointer[Exporter]
	up := rawGRPCServer(t, tokenModel(t, pause, proxyTimes(&sidecar)))
	candidate := rawGRPCServer(t, tokenModel(t, pause, shadowTimes(&sidecar)))
	e := streamShadowSidecar(t, up, candidate, nil)
	sidecar.Store(e)
	conn := grpcClient(t, e.GRPCAddr())
	_, err := streamAll(t, context.Background(), conn, modelStreamInfer,
		streamRequest("stream", "s", 1), streamRequest("whole", "w", 1), streamRequest("plain", "p", 1), streamRequest("cut", "c", 1))
	require.NoError(t, err)
	waitIdle(t, e)

	for _, tc := range []struct {
		model    string
		streamed float64
	}{
		{"stream", 1},
		{"whole", 0},
		{"plain", 0},
		{"cut", 0},
	} {
		m := map[string]string{"model": tc.model}
		eventually(t, e, 3, "modelmon_generation_tokens_total", map[string]string{"model": tc.model, "type": "output"})
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, m), "%s: compared", tc.model)
		for _, name := range []string{collector.PredictionFirstByte, collector.GenerationTimePerToken, collector.ShadowFirstByte, collector.ShadowTimePerToken} {
			require.Equal(t, tc.streamed, metricValue(t, e, name+"_count", m), "%s: %s", tc.model, name)
		}
	}
	stream := map[string]string{"model": "stream"}
	for _, name := range []string{collector.GenerationTimePerToken, collector.ShadowTimePerToken} {
		require.GreaterOrEqual(t, metricValue(t, e, name+"_sum", stream), pause.Seconds(), "%s: (last − first) / (3 − 1), the second 2·pause after the first", name)
	}
	for _, name := range []string{collector.PredictionFirstByte, collector.ShadowFirstByte} {
		require.GreaterOrEqual(t, metricValue(t, e, name+"_sum", stream), pause.Seconds(), "%s: the first answer", name)
	}
}

// A StreamPredictions call answered by one message, a whole completion
// that reports three tokens, has its first answer as its time to first
// byte, as every call's, but no time per output token (which would be 0,
// its first answer its last); one of several answers has both, the time
// per output token pause at least, as the sidecar took its answers
// (sendApart). The model, through the proxy, and the shadow are timed
// alike.
func TestShadowTorchStreamAnsweredOnce(t *testing.T) {
	const pause = 50 * time.Millisecond
	var sidecar atomic.Pointer[Exporter]
	answer := func(times sidecarTimes) func(string, grpc.ServerStream) error {
		return func(method string, ss grpc.ServerStream) error {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				return nil
			}
			select {
			case <-time.After(pause):
			case <-ss.Context().Done():
				return nil
			}
			answers := torchAnswers(3, "stop")
			if modelName(req) == "whole" {
				last := answers[2] // of three tokens, alone
				return ss.SendMsg(&last)
			}
			return sendApart(t, ss, method, req, answers, pause, times, nil)
		}
	}
	e := streamShadowSidecar(t, rawGRPCServer(t, answer(proxyTimes(&sidecar))), rawGRPCServer(t, answer(shadowTimes(&sidecar))), nil)
	sidecar.Store(e)
	conn := grpcClient(t, e.GRPCAddr())
	input := appendField(appendField(nil, 1, []byte("data")), 2, []byte(`{"prompt": "Hi", "max_tokens": 3}`))
	for _, model := range []string{"stream", "whole"} {
		_, err := streamAll(t, context.Background(), conn, torchStreamPredictions, appendField(appendField(nil, 1, []byte(model)), 3, input))
		require.NoError(t, err)
	}
	waitIdle(t, e)

	for _, tc := range []struct {
		model    string
		streamed float64
	}{
		{"stream", 1},
		{"whole", 0},
	} {
		m := map[string]string{"model": tc.model}
		eventually(t, e, 3, "modelmon_generation_tokens_total", map[string]string{"model": tc.model, "type": "output"})
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, m), "%s: compared", tc.model)
		for _, name := range []string{collector.PredictionFirstByte, collector.ShadowFirstByte} {
			require.Equal(t, 1.0, metricValue(t, e, name+"_count", m), "%s: %s", tc.model, name)
			require.GreaterOrEqual(t, metricValue(t, e, name+"_sum", m), pause.Seconds(), "%s: %s, the first answer", tc.model, name)
		}
		for _, name := range []string{collector.GenerationTimePerToken, collector.ShadowTimePerToken} {
			require.Equal(t, tc.streamed, metricValue(t, e, name+"_count", m), "%s: %s", tc.model, name)
		}
	}
	stream := map[string]string{"model": "stream"}
	for _, name := range []string{collector.GenerationTimePerToken, collector.ShadowTimePerToken} {
		require.GreaterOrEqual(t, metricValue(t, e, name+"_sum", stream), pause.Seconds(), "%s: (last − first) / (3 − 1), the second 2·pause after the first", name)
	}
}
