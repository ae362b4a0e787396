package exporter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/metadata"
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
