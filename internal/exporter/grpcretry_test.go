package exporter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/metadata"

	"github.com/modelmon/modelmon/collector"
)

// refusingServer is a gRPC server on loopback, written frame by frame as
// grpc-go's own TestRetryStats writes one, that refuses the first call of
// each connection with RST_STREAM REFUSED_STREAM before reading it (as a
// server that takes no more streams does), and answers every other one
// with answer, then OK. grpc-go retries a refused call transparently,
// whatever its options.
type refusingServer struct {
	url    string
	answer []byte

	mu   sync.Mutex
	seen []seenCall // the calls answered, each message unframed
}

func refusingGRPCServer(t *testing.T, answer []byte) *refusingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &refusingServer{url: "http://" + ln.Addr().String(), answer: answer}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *refusingServer) received() []seenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenCall(nil), s.seen...)
}

func (s *refusingServer) serve(conn net.Conn) {
	defer conn.Close()
	if _, err := io.ReadFull(conn, make([]byte, len(http2.ClientPreface))); err != nil {
		return
	}
	w := bufio.NewWriter(conn)
	fr := http2.NewFramer(w, bufio.NewReader(conn))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	headers := func(sid uint32, end bool, kv ...string) {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for i := 0; i < len(kv); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: b.Bytes(), EndStream: end, EndHeaders: true})
	}
	_ = fr.WriteSettings()
	_ = w.Flush()
	var refused uint32
	calls := map[uint32]*seenCall{} // the calls taken, as they come
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if refused == 0 {
				refused = f.StreamID
				_ = fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
				break
			}
			c := &seenCall{method: f.PseudoValue("path"), md: metadata.MD{}}
			for _, hf := range f.RegularFields() {
				c.md.Append(hf.Name, hf.Value)
			}
			calls[f.StreamID] = c
		case *http2.DataFrame:
			c := calls[f.StreamID]
			if c == nil { // the refused call's
				continue
			}
			c.msg = append(c.msg, f.Data()...)
			if !f.StreamEnded() {
				continue
			}
			// The request is all there: one answer, then OK.
			delete(calls, f.StreamID)
			if len(c.msg) >= 5 {
				c.msg = c.msg[5:] // one message, not compressed
			}
			s.mu.Lock()
			s.seen = append(s.seen, *c)
			s.mu.Unlock()
			headers(f.StreamID, false, ":status", "200", "content-type", "application/grpc")
			msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(s.answer)))
			_ = fr.WriteData(f.StreamID, false, append(msg, s.answer...))
			headers(f.StreamID, true, "grpc-status", "0")
		}
		_ = w.Flush()
	}
}

// grpc-go sends a call the model server refused unread again on its own (a
// transparent retry, which no option turns off): the gRPC proxy counts it
// in modelmon_upstream_retries_total, as the HTTP proxy counts the
// requests it sends again, a prediction and a passthrough call alike. The
// client gets the model server's answer, and the call counts once.
func TestGRPCTransparentRetry(t *testing.T) {
	answer := inferCall("fraud", "", inferTensor("y", []uint64{1}, 0.25))
	for _, tc := range []struct {
		name   string
		method string
		check  func(t *testing.T, e *Exporter, calls int)
	}{
		{"prediction", modelInfer, func(t *testing.T, e *Exporter, calls int) {
			waitCaptured(t, e, int64(calls))
			fraud := map[string]string{"model": "fraud"}
			n := float64(calls)
			require.Equal(t, n, metricValue(t, e, collector.RequestsTotal, fraud))
			require.Equal(t, n, metricValue(t, e, collector.PredictionDuration+"_count", fraud))
			require.Equal(t, n, metricValue(t, e, collector.ProxyOverhead+"_count", nil))
			require.Equal(t, n, metricValue(t, e, collector.RequestSizeBytes+"_count", fraud))
			require.Equal(t, n, metricValue(t, e, collector.PredictionsTotal, fraud))
			require.Zero(t, metricValue(t, e, collector.RequestsInFlight, fraud))
			for _, reason := range collector.ErrorReasons {
				require.Zero(t, metricValue(t, e, collector.PredictionErrorsTotal, map[string]string{"model": "fraud", "reason": reason}), reason)
			}
		}},
		{"passthrough", passthroughMethod, func(t *testing.T, e *Exporter, calls int) {
			require.Equal(t, float64(calls), metricValue(t, e, collector.PassthroughRequestsTotal, nil))
			require.Zero(t, metricValue(t, e, collector.RequestsTotal, map[string]string{"model": "fraud"}))
			for _, reason := range collector.ErrorReasons {
				require.Zero(t, metricValue(t, e, collector.PassthroughErrorsTotal, map[string]string{"reason": reason}), reason)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := refusingGRPCServer(t, answer)
			e := grpcSidecarFor(t, up.url, nil)
			conn := grpcClient(t, e.GRPCAddr())
			req := inferCall("fraud", "", inferTensor("x", []uint64{1, 2}, 1, 2))
			for i := range 2 {
				ctx := metadata.AppendToOutgoingContext(context.Background(), "x-call", "call")
				var resp []byte
				require.NoError(t, conn.Invoke(ctx, tc.method, &req, &resp))
				require.Equal(t, answer, resp, "the model server's answer")
				got := up.received()
				require.Len(t, got, i+1, "the refused call never reached the model server")
				require.Equal(t, tc.method, got[i].method)
				require.Equal(t, req, got[i].msg, "the client's request")
				require.Equal(t, []string{"call"}, got[i].md.Get("x-call"))
				require.Equal(t, 1.0, metricValue(t, e, collector.UpstreamRetriesTotal, nil), "the first call only was refused")
				tc.check(t, e, i+1)
			}
		})
	}
}
