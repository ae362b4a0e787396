package exporter

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/modelmon/modelmon/collector"
)

// eventually waits for a metric to reach want: a streamed request is
// accounted for once the sidecar has written its last byte, which may be
// after the client has read it.
func eventually(t *testing.T, e *Exporter, want float64, name string, labels map[string]string) {
	t.Helper()
	require.Eventually(t, func() bool { return metricValue(t, e, name, labels) == want }, 10*time.Second, 5*time.Millisecond,
		"%s%v never reached %v (now %v)", name, labels, want, metricValue(t, e, name, labels))
}

// A body of unknown length reaches the client piece by piece as the model
// server sends it (server-sent events, token streams), not once it is whole.
func TestProxyStreamsServerSentEvents(t *testing.T) {
	next := make(chan struct{})
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 1; i <= 3; i++ {
			<-next
			ev := fmt.Sprintf("data: {\"token\":%d}\n\n", i)
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
		}
		<-next
		io.WriteString(c, "0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)

	resp, err := http.Post("http://"+e.ProxyAddr()+"/v2/models/llm/generate_stream", "application/json", strings.NewReader(`{"text_input":"hi"}`))
	require.NoError(t, err, "the headers come before any of the body")
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	require.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	br := bufio.NewReader(resp.Body)
	for i := 1; i <= 3; i++ {
		next <- struct{}{} // the model server sends one event, and waits
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("data: {\"token\":%d}\n", i), line, "event %d arrives while the stream is still open", i)
		_, err = br.ReadString('\n')
		require.NoError(t, err)
	}
	next <- struct{}{}
	rest, err := io.ReadAll(br)
	require.NoError(t, err, "the stream ends cleanly")
	require.Empty(t, rest)
	eventually(t, e, 1, "modelmon_passthrough_requests_total", nil)
}

// A prediction whose answer comes chunked is streamed, and still captured,
// parsed and counted like any other.
func TestProxyStreamedPredictionIsCaptured(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"f\r\n{\"predictions\":\r\n8\r\n[0.1,0.9\r\n2\r\n]}\r\n0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	for range 3 {
		st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/fraud:predict", `{"instances":[[1,2],[3,4]]}`)
		require.Equal(t, 200, st)
		require.Equal(t, `{"predictions":[0.1,0.9]}`, body)
	}
	fraud := map[string]string{"model": "fraud"}
	eventually(t, e, 3, "modelmon_requests_total", fraud)
	eventually(t, e, 6, "modelmon_predictions_total", fraud)
	eventually(t, e, 3, "modelmon_response_size_bytes_count", fraud)
	eventually(t, e, 3*25, "modelmon_response_size_bytes_sum", fraud)
	eventually(t, e, 3, "modelmon_prediction_duration_seconds_count", fraud)
	eventually(t, e, 0, "modelmon_requests_in_flight", fraud)
	require.Len(t, up.received(), 3)
}

// A streamed prediction's time to first byte is when its first piece of body
// came, not when its headers did, nor when it ended; an answer read whole has
// none. An OIP generate_stream is a prediction of the model its path names
// once prediction_paths lists it.
//
// The rest of the stream is sent pause after the sidecar has timed its first
// piece, so that it ends pause after that whatever the load.
func TestProxyStreamTimeToFirstByte(t *testing.T) {
	const pause = 300 * time.Millisecond
	var sidecar atomic.Pointer[Exporter]
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		if strings.Contains(req.start, "/whole:") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n{\"predictions\":[0.5]}\n")
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		time.Sleep(pause)
		io.WriteString(c, "6\r\ndata: \r\n")
		observedOnce(t, sidecar.Load().metrics.FirstByte, "llm")
		time.Sleep(pause)
		io.WriteString(c, "2\r\nx\n\r\n0\r\n\r\n")
		return true
	})
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("prediction_paths: [/v2/models/*/generate_stream]\n"), 0o644))
	e := startExporter(t, up.URL(), func(o *Options) { o.ConfigFile = cfg })
	sidecar.Store(e)
	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v2/models/llm/generate_stream", `{"text_input":"hi"}`)
	require.Equal(t, 200, st)
	require.Equal(t, "data: x\n", body)
	st, _ = do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/whole:predict", `{"instances":[[1]]}`)
	require.Equal(t, 200, st)

	llm := map[string]string{"model": "llm"}
	eventually(t, e, 1, "modelmon_prediction_duration_seconds_count", llm)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", llm))
	first := metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_sum", llm)
	whole := metricValue(t, e, "modelmon_prediction_duration_seconds_sum", llm)
	require.GreaterOrEqual(t, first, pause.Seconds(), "not when the headers came")
	require.GreaterOrEqual(t, whole-first, pause.Seconds(), "not when the stream ended")

	eventually(t, e, 1, "modelmon_prediction_duration_seconds_count", map[string]string{"model": "whole"})
	require.Zero(t, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", map[string]string{"model": "whole"}))
}

// A generative model's answers, streamed as server-sent events or whole, are
// predictions parsed like any other: the finish reason is the prediction, and
// none is a payload error. Its error event is one.
func TestProxyGenerativeAnswers(t *testing.T) {
	chunk := func(content, finish string) string {
		return `{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":` + finish + `}]}`
	}
	var sidecar atomic.Pointer[Exporter]
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		events := []string{chunk("Hel", "null"), chunk("lo", "null"), chunk("", `"length"`),
			`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}`, "[DONE]"}
		switch {
		case strings.Contains(req.start, "/whole"):
			body := `{"id":"chatcmpl-2","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			return true
		case strings.Contains(req.start, "/api/generate"):
			events = nil
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
			for _, line := range []string{`{"model":"llama","response":"Hi","done":false}`, `{"model":"llama","response":"","done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":1}`} {
				fmt.Fprintf(c, "%x\r\n%s\n\r\n", len(line)+1, line)
			}
			io.WriteString(c, "0\r\n\r\n")
			return true
		case strings.Contains(req.start, "/generate_stream"):
			events = []string{`{"model_name":"t5","model_version":"1","text_output":"Hel"}`, `{"model_name":"t5","model_version":"1","text_output":"lo"}`}
			if strings.Contains(string(req.body), "fail") {
				events = append(events, `{"error":"the model ran out of memory"}`)
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i, ev := range events {
			if i == 1 && strings.Contains(req.start, "/v1/chat/completions ") {
				// The chat streams: its first token is read before the
				// next is sent.
				observedOnce(t, sidecar.Load().metrics.FirstByte, "llama")
			}
			ev = "data: " + ev + "\n\n"
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
		}
		io.WriteString(c, "0\r\n\r\n")
		return true
	})
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
default_model: llama
prediction_paths: [/v1/chat/completions, /v1/chat/completions/whole, /v2/models/*/generate_stream, /api/generate]
`), 0o644))
	e := startExporter(t, up.URL(), func(o *Options) { o.ConfigFile = cfg })
	sidecar.Store(e)
	proxy := "http://" + e.ProxyAddr()

	st, body := do(t, "POST", proxy+"/v1/chat/completions", `{"model":"llama","messages":[{"role":"user","content":"Hi"}],"stream":true}`)
	require.Equal(t, 200, st)
	require.True(t, strings.HasPrefix(body, "data: "+chunk("Hel", "null")+"\n\n"), body)
	st, _ = do(t, "POST", proxy+"/v1/chat/completions/whole", `{"model":"llama","messages":[{"role":"user","content":"Hi"}]}`)
	require.Equal(t, 200, st)
	for _, in := range []string{`{"text_input":"Hi"}`, `{"text_input":"fail"}`} {
		st, _ = do(t, "POST", proxy+"/v2/models/t5/generate_stream", in)
		require.Equal(t, 200, st)
	}

	// Ollama's own API streams JSON lines.
	st, _ = do(t, "POST", proxy+"/api/generate", `{"model":"llama","prompt":"Hi"}`)
	require.Equal(t, 200, st)

	llama, t5 := map[string]string{"model": "llama"}, map[string]string{"model": "t5"}
	eventually(t, e, 3, "modelmon_payloads_parsed_total", map[string]string{"model": "llama", "format": "json"})
	eventually(t, e, 2, "modelmon_payloads_parsed_total", map[string]string{"model": "t5", "format": "json"})
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_predictions_total", llama))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", t5))
	for _, m := range []string{"llama", "t5"} {
		for _, reason := range []string{"invalid_response", "missing_field"} {
			want := 0.0
			if m == "t5" && reason == "invalid_response" {
				want = 1 // the stream that ended in an error event
			}
			require.Equal(t, want, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": m, "reason": reason}), "%s %s", m, reason)
		}
	}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_count", llama), "the streamed ones")

	// Why each answer stopped, and the tokens the OpenAI-style ones report.
	for _, g := range []struct {
		model, reason string
		want          float64
	}{{"llama", "length", 1}, {"llama", "stop", 2}, {"t5", "unknown", 1}, {"t5", "other", 0}} {
		require.Equal(t, g.want, metricValue(t, e, "modelmon_generations_total", map[string]string{"model": g.model, "finish_reason": g.reason}), "%v", g)
	}
	require.Equal(t, 9.0+9+4, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": "llama", "type": "input"}))
	require.Equal(t, 2.0+3+1, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": "llama", "type": "output"}))
	require.Zero(t, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": "t5", "type": "output"}))
	// Time per output token: the streamed chat (two tokens, in pieces); not
	// the whole one (no first byte), Ollama's (one token) or t5's (no
	// count).
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_generation_time_per_output_token_seconds_count", llama))
	require.Zero(t, metricValue(t, e, "modelmon_generation_time_per_output_token_seconds_count", t5))
}

// The time per output token is the time from the first byte of a streamed
// answer to its last over the tokens after the first.
//
// The last tokens are sent pause after the sidecar has timed the first, so
// that the time per output token is pause/3 at least whatever the load; it
// is at most the sidecar's own (latency − time to first byte) / 3, which it
// would exceed over fewer tokens.
func TestProxyTimePerOutputToken(t *testing.T) {
	const pause = 300 * time.Millisecond
	var sidecar atomic.Pointer[Exporter]
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i, ev := range []string{
			`{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{"content":"bcd"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		} {
			if i > 0 {
				observedOnce(t, sidecar.Load().metrics.FirstByte, "llm")
				time.Sleep(pause) // three more tokens in this time
			}
			ev = "data: " + ev + "\n\n"
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
		}
		io.WriteString(c, "0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	sidecar.Store(e)
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/chat/completions", `{"model":"llm","messages":[],"stream":true}`)
	require.Equal(t, 200, st)
	llm := map[string]string{"model": "llm"}
	eventually(t, e, 1, "modelmon_generation_time_per_output_token_seconds_count", llm)
	eventually(t, e, 1, "modelmon_prediction_duration_seconds_count", llm)
	tpot := metricValue(t, e, "modelmon_generation_time_per_output_token_seconds_sum", llm)
	first := metricValue(t, e, "modelmon_prediction_time_to_first_byte_seconds_sum", llm)
	whole := metricValue(t, e, "modelmon_prediction_duration_seconds_sum", llm)
	require.GreaterOrEqual(t, tpot, pause.Seconds()/3, "the last tokens pause after the first")
	require.LessOrEqual(t, tpot, (whole-first)/3+1e-9, "over three tokens, not one")
}

// --proxy.timeout bounds each wait of a stream, not the whole of it: a model
// server that keeps talking may stream for longer, one that goes quiet is cut
// off and counted.
//
// The model server's streams are driven by what the sidecar did, not by
// timers racing the timeout: "talks" sends a piece every 10ms until it has
// streamed for twice the timeout, and "quiet" four pieces, then
// nothing until the sidecar has counted it as timeout, then four more. Only
// a piece more than the timeout late, 60 times their interval, makes a
// stream look quiet.
func TestProxyStreamTimeouts(t *testing.T) {
	const (
		timeout = 600 * time.Millisecond
		every   = 10 * time.Millisecond // between the pieces of a stream
		// never bounds how long "quiet" waits for the sidecar, which it
		// does only when the sidecar is broken.
		never = 5 * timeout
	)
	var sidecar atomic.Pointer[Exporter]
	var talked atomic.Int64 // the pieces "talks" sent
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
		piece := func() {
			time.Sleep(every)
			io.WriteString(c, "1\r\nx\r\n")
		}
		if strings.Contains(req.start, "/quiet:") {
			for range 4 {
				piece()
			}
			timedOut := sidecar.Load().metrics.Errors.WithLabelValues("quiet", collector.ErrorTimeout)
			for deadline := time.Now().Add(never); testutil.ToFloat64(timedOut) == 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			for range 4 {
				piece()
			}
		} else {
			for start := time.Now(); time.Since(start) <= 2*timeout; talked.Add(1) {
				piece()
			}
		}
		io.WriteString(c, "0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), func(o *Options) { o.Proxy.Timeout = timeout })
	sidecar.Store(e)

	start := time.Now()
	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/talks:predict", `{}`)
	require.Equal(t, 200, st)
	require.Equal(t, strings.Repeat("x", int(talked.Load())), body)
	require.Greater(t, time.Since(start), timeout, "the stream outlived --proxy.timeout")
	eventually(t, e, 1, "modelmon_requests_total", map[string]string{"model": "talks"})
	require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "talks", "reason": "timeout"}))

	resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/quiet:predict", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, "the status was sent before the model server went quiet")
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the client sees the stream cut short")
	require.Equal(t, "xxxx", string(b))
	eventually(t, e, 1, "modelmon_prediction_errors_total", map[string]string{"model": "quiet", "reason": "timeout"})
	eventually(t, e, 0, "modelmon_requests_in_flight", map[string]string{"model": "quiet"})
}

// A model server that dies in the middle of a stream: the client sees it cut
// short, the error is counted, and the sidecar serves on.
func TestProxyStreamUpstreamDies(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		if strings.Contains(req.start, "/dies:") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/dies:predict", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, "hello", string(b))
	eventually(t, e, 1, "modelmon_prediction_errors_total", map[string]string{"model": "dies", "reason": "connection"})
	eventually(t, e, 0, "modelmon_requests_in_flight", map[string]string{"model": "dies"})

	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/fine:predict", `{}`)
	require.Equal(t, 200, st)
	require.Equal(t, "ok", body)

	// A request that is not a prediction, cut short alike: a passthrough
	// error.
	resp, err = http.Get("http://" + e.ProxyAddr() + "/events/dies:")
	require.NoError(t, err)
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, "hello", string(b))
	eventually(t, e, 1, "modelmon_passthrough_errors_total", map[string]string{"reason": "connection"})
}

// --proxy.max-body-size holds for answers too: one that says it is larger
// gets a 502 before anything is sent, a stream that grows larger is cut off.
// Both are counted as invalid responses.
func TestProxyResponseOverMaxBodySize(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		if strings.Contains(req.start, "/says:") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"+strings.Repeat("x", 5000))
			return true
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range 5 {
			io.WriteString(c, "3e8\r\n"+strings.Repeat("y", 1000)+"\r\n")
		}
		io.WriteString(c, "0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), func(o *Options) { o.Proxy.MaxBodySize = 4096 })

	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/says:predict", `{}`)
	require.Equal(t, 502, st)
	require.Equal(t, "modelmon: the model server's response is larger than --proxy.max-body-size\n", body)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "says", "reason": "invalid_response"}))

	resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/grows:predict", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the stream is cut off")
	require.LessOrEqual(t, len(b), 4096)
	eventually(t, e, 1, "modelmon_prediction_errors_total", map[string]string{"model": "grows", "reason": "invalid_response"})
}

// A client that hangs up in the middle of a stream: the request leaves the
// in-flight gauge, nothing is counted against the model server, and the
// upstream connection is closed rather than reused half read.
func TestProxyStreamClientGoesAway(t *testing.T) {
	closed := make(chan struct{})
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for {
			if _, err := io.WriteString(c, "1\r\nz\r\n"); err != nil {
				close(closed)
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	e := startExporter(t, up.URL(), nil)
	c, err := net.Dial("tcp", e.ProxyAddr())
	require.NoError(t, err)
	io.WriteString(c, "POST /v1/models/gone:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK\r\n", line)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_in_flight", map[string]string{"model": "gone"}), "a stream is in flight until it ends")
	c.Close()

	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection stayed open after the client left")
	}
	eventually(t, e, 0, "modelmon_requests_in_flight", map[string]string{"model": "gone"})
	for _, reason := range []string{"timeout", "connection", "invalid_response"} {
		require.Zero(t, metricValue(t, e, "modelmon_prediction_errors_total", map[string]string{"model": "gone", "reason": reason}))
	}
}

// Every way an HTTP/1.1 answer can be framed reaches the client whole, and
// the connection to the model server is used again when its framing allows.
func TestProxyAnswerFraming(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]string{} // path → the upstream connection that answered it
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		path := strings.Fields(req.start)[1]
		mu.Lock()
		conns[path] = c.RemoteAddr().String()
		mu.Unlock()
		switch path {
		case "/hints":
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		case "/head":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
		case "/nocontent":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
		case "/notmodified":
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
		case "/trailer":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n")
		case "/untilclose":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
			return false
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
		}
		return true
	})
	e := startExporter(t, up.URL(), nil)
	for _, tc := range []struct {
		method, path, status, body string
		reused                     bool
	}{
		{"GET", "/hints", "HTTP/1.1 200 OK", "final", true},
		{"HEAD", "/head", "HTTP/1.1 200 OK", "", true},
		{"GET", "/nocontent", "HTTP/1.1 204 No Content", "", true},
		{"GET", "/notmodified", "HTTP/1.1 304 Not Modified", "", true},
		{"GET", "/trailer", "HTTP/1.1 200 OK", "abc", true},
		{"GET", "/untilclose", "HTTP/1.1 200 OK", "all of it", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if tc.method == "HEAD" {
				// The answer has no body, and the length of the one a GET
				// would have.
				c, err := net.Dial("tcp", e.ProxyAddr())
				require.NoError(t, err)
				defer c.Close()
				io.WriteString(c, "HEAD "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\nGET /next"+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
				br := bufio.NewReader(c)
				var head []string
				for {
					line, err := br.ReadString('\n')
					require.NoError(t, err)
					if line == "\r\n" {
						break
					}
					head = append(head, strings.TrimRight(line, "\r\n"))
				}
				require.Equal(t, []string{tc.status, "Content-Length: 1000"}, head)
				next, err := readRaw(br)
				require.NoError(t, err)
				require.Equal(t, "next", string(next.body), "the next answer follows right after the head")
				return
			}
			resp := rawRoundTrip(t, e.ProxyAddr(), tc.method+" "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			require.Equal(t, tc.status, resp.start)
			require.Equal(t, tc.body, string(resp.body))
			for _, h := range resp.headers {
				require.False(t, strings.HasPrefix(strings.ToLower(h), "content-type:"), "the model server sent no Content-Type, and none is added: %s", h)
			}
			next := rawRoundTrip(t, e.ProxyAddr(), "GET /next"+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			require.Equal(t, "next", string(next.body))
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, tc.reused, conns[tc.path] == conns["/next"+tc.path], "the upstream connection is reused: %v", tc.reused)
		})
	}
}

// An answer of known length over --capture.max-body-size is streamed with
// its length, not held in memory; its capture is dropped and counted.
func TestProxyLargeAnswerKeepsItsLength(t *testing.T) {
	body := strings.Repeat("0123456789", 300)
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	e := startExporter(t, up.URL(), func(o *Options) { o.CaptureMaxBodySize = 1024 })
	for range 2 {
		resp := rawRoundTrip(t, e.ProxyAddr(), "POST /v1/models/big:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
		require.Equal(t, "HTTP/1.1 200 OK", resp.start)
		require.Equal(t, []string{"Content-Type: application/json", "Content-Length: 3000"}, resp.headers)
		require.Equal(t, body, string(resp.body))
	}
	big := map[string]string{"model": "big"}
	eventually(t, e, 2, "modelmon_capture_dropped_total", map[string]string{"model": "big", "reason": "body_too_large"})
	eventually(t, e, 2*3000, "modelmon_response_size_bytes_sum", big)
	require.Len(t, up.received(), 2)
}

// A generative model's stream that outgrows --capture.max-body-size (a long
// answer, a reasoning model's) is still parsed: its head, with the start of
// the answer, and its tail, with how it finished and the tokens it took,
// are captured, each cut at a whole event or line. A long stream of
// another kind is dropped as too large, as before. The client gets every
// byte either way.
func TestProxyLongGenerativeStream(t *testing.T) {
	chunk := func(i int, finish string) string {
		return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama","choices":[{"index":0,"delta":{"content":"token %d "},"finish_reason":%s}]}`, i, finish)
	}
	var sse, ndjson, plain strings.Builder
	for i := range 400 {
		fmt.Fprintf(&sse, "data: %s\r\n\r\n", chunk(i, "null"))
		fmt.Fprintf(&ndjson, `{"model":"llama","response":"token %d ","done":false}`+"\n", i)
		fmt.Fprintf(&plain, "[%d, 0.123456789, 0.987654321, 0.5555555555] ", i)
	}
	sse.WriteString("data: " + chunk(400, `"length"`) + "\r\n\r\n")
	sse.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":401}}` + "\r\n\r\ndata: [DONE]\r\n\r\n")
	ndjson.WriteString(`{"model":"llama","response":"","done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":400}` + "\n")
	bodies := map[string]struct{ ctype, body string }{
		"/v1/chat/completions":   {"text/event-stream; charset=utf-8", sse.String()},
		"/api/generate":          {"application/x-ndjson", ndjson.String()},
		"/v1/models/big:predict": {"application/json", plain.String()},
	}
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		path := strings.Fields(req.start)[1]
		b := bodies[path]
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", b.ctype)
		// In pieces of all sizes, so that boundaries fall anywhere.
		for rest, n := b.body, 1; len(rest) > 0; n = n*7%1000 + 1 {
			piece := rest[:min(n, len(rest))]
			rest = rest[len(piece):]
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(piece), piece)
		}
		io.WriteString(c, "0\r\n\r\n")
		return true
	})
	e := startExporter(t, up.URL(), func(o *Options) { o.CaptureMaxBodySize = 4096 })
	proxy := "http://" + e.ProxyAddr()
	for path, b := range bodies {
		st, body := do(t, "POST", proxy+path, `{"model":"llama","prompt":"Hi","stream":true}`)
		require.Equal(t, 200, st)
		require.Equal(t, b.body, body, "%s: every byte", path)
		require.Greater(t, len(body), 4*4096)
	}

	llama := map[string]string{"model": "llama"}
	eventually(t, e, 2, "modelmon_payloads_parsed_total", map[string]string{"model": "llama", "format": "json"})
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_capture_dropped_total", map[string]string{"model": "llama", "reason": "body_too_large"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "llama", "reason": "invalid_response"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_generations_total", map[string]string{"model": "llama", "finish_reason": "length"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_generations_total", map[string]string{"model": "llama", "finish_reason": "stop"}))
	require.Equal(t, 12.0+5, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": "llama", "type": "input"}))
	require.Equal(t, 401.0+400, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": "llama", "type": "output"}))
	require.Equal(t, float64(len(sse.String())+len(ndjson.String())), metricValue(t, e, "modelmon_response_size_bytes_sum", llama), "the size of all of it")
	eventually(t, e, 1, "modelmon_capture_dropped_total", map[string]string{"model": "big", "reason": "body_too_large"})
}

// A spliced stream keeps at most --capture.max-body-size: the head up to
// its last whole piece within half of it, and the whole pieces of the last
// bytes.
func TestStreamSplice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		framing framing
		piece   func(i int) string
	}{
		{"events", framingEvents, func(i int) string { return fmt.Sprintf("data: %d\n\n", i) }},
		{"events with CRLF", framingEvents, func(i int) string { return fmt.Sprintf("event: x\r\ndata: %d\r\n\r\n", i) }},
		{"lines", framingLines, func(i int) string { return fmt.Sprintf(`{"n":%d}`+"\n", i) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, max := range []int{64, 100, 257} {
				s := &stream{keep: true, keepMax: max, framing: tc.framing}
				var all []string
				for i := range 500 {
					all = append(all, tc.piece(i))
				}
				whole := strings.Join(all, "")
				for rest, n := whole, 1; len(rest) > 0; n = n%13 + 1 {
					piece := rest[:min(n, len(rest))]
					rest = rest[len(piece):]
					s.keepPiece([]byte(piece))
				}
				got := string(s.captured())
				require.LessOrEqual(t, len(got), max)
				// A run of whole pieces from the start, then one to the end.
				i := 0
				for i < len(all) && strings.HasPrefix(got, all[i]) {
					got = got[len(all[i]):]
					i++
				}
				require.Less(t, i, len(all))
				j := len(all)
				for j > i && strings.HasSuffix(got, all[j-1]) {
					got = got[:len(got)-len(all[j-1])]
					j--
				}
				require.Empty(t, got, "max %d: only whole pieces", max)
				require.Less(t, j, len(all), "max %d: the last piece is kept", max)
				require.Greater(t, i, 0, "max %d: the first piece is kept", max)
			}
		})
	}
}

// Whatever the stream and however it is read, its capture is at most
// --capture.max-body-size: the stream itself when it fits, else a head of
// it that ends at a boundary and a tail that starts at one.
func FuzzStreamSplice(f *testing.F) {
	f.Add([]byte("data: 1\n\ndata: 2\n\ndata: 3\n\n"), uint16(12), uint8(3), false)
	f.Add([]byte("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"), uint16(10), uint8(1), true)
	f.Add([]byte("event: x\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n"), uint16(16), uint8(7), false)
	f.Fuzz(func(t *testing.T, body []byte, maxBody uint16, step uint8, lines bool) {
		capture := int(maxBody%4096) + 1
		fr := framingEvents
		if lines {
			fr = framingLines
		}
		s := &stream{keep: true, keepMax: capture, framing: fr}
		for rest, n := body, int(step)%17+1; len(rest) > 0; n = n*5%17 + 1 {
			piece := rest[:min(n, len(rest))]
			rest = rest[len(piece):]
			s.keepPiece(piece)
		}
		got := s.captured()
		if len(body) <= capture {
			require.Equal(t, string(body), string(got))
			return
		}
		require.LessOrEqual(t, len(got), capture)
		for h := 0; h <= len(got); h++ {
			tailAt := len(body) - (len(got) - h)
			if tailAt < h || !bytes.HasPrefix(body, got[:h]) || !bytes.HasSuffix(body, got[h:]) {
				continue
			}
			if (h == 0 || lastBoundary(body[:h], fr) == h) && (tailAt == len(body) || lastBoundary(body[:tailAt], fr) == tailAt) {
				return
			}
		}
		t.Fatalf("capture %d: %q is no head and tail of %q cut at boundaries", capture, got, body)
	})
}

func TestFramingOf(t *testing.T) {
	for _, tc := range []struct {
		contentType, encoding string
		want                  framing
	}{
		{"text/event-stream", "", framingEvents},
		{"Text/Event-Stream; charset=utf-8", "identity", framingEvents},
		{"application/x-ndjson", "", framingLines},
		{"application/jsonl", "", framingLines},
		{"text/event-stream", "gzip", framingNone},
		{"application/json", "", framingNone},
		{"", "", framingNone},
	} {
		var h fasthttp.ResponseHeader
		if tc.contentType != "" {
			h.SetContentType(tc.contentType)
		}
		if tc.encoding != "" {
			h.Set("Content-Encoding", tc.encoding)
		}
		require.Equal(t, tc.want, framingOf(&h), "%q %q", tc.contentType, tc.encoding)
	}
}
