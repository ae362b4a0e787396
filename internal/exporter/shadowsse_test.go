package exporter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
)

// chatEvents are the server-sent events of an OpenAI-style streamed chat
// completion of three tokens that stopped for finish.
func chatEvents(finish string) []string {
	chunk := func(content, finish string) string {
		return `{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":` + finish + `}]}`
	}
	return []string{chunk("Hel", "null"), chunk("lo", "null"), chunk("!", `"`+finish+`"`),
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}`, "[DONE]"}
}

// sseBody is events as a text/event-stream body.
func sseBody(events []string) string {
	var b strings.Builder
	for _, ev := range events {
		b.WriteString("data: " + ev + "\n\n")
	}
	return b.String()
}

// writeEvents answers with events, chunked, one event a chunk, after
// calling before(i) ahead of event i; it ends the stream unless cut, in
// which case it stops after that many events, without the last chunk.
func writeEvents(c net.Conn, events []string, before func(i int), cut int) {
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i, ev := range events {
		if cut > 0 && i == cut {
			return
		}
		if before != nil {
			before(i)
		}
		ev = "data: " + ev + "\n\n"
		fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
	}
	io.WriteString(c, "0\r\n\r\n")
}

// bodyModelOf is the model a chat completion request names, "" when it
// names none.
func bodyModelOf(req *rawMessage) string {
	var v struct{ Model string }
	json.Unmarshal(req.body, &v) //nolint:errcheck
	return v.Model
}

// chat posts a streamed chat completion for model to the sidecar and
// returns the answer's status and body.
func chat(t *testing.T, e *Exporter, model string) (int, string) {
	t.Helper()
	return do(t, "POST", "http://"+e.ProxyAddr()+"/v1/chat/completions",
		`{"model":"`+model+`","messages":[{"role":"user","content":"Hi"}],"stream":true}`, "Content-Type", "application/json")
}

// waitParsed waits until n captures have been parsed (a streamed answer is
// captured once the sidecar has written its last byte, which may be after
// the client has read it), then until the shadow has compared what they
// mirrored.
func waitParsed(t *testing.T, e *Exporter, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return e.queue.handled.Load() >= n }, 10*time.Second, time.Millisecond)
	waitIdle(t, e)
}

// A prediction whose answer the model server streamed (an OpenAI-style
// chat completion's server-sent events) is mirrored to the shadow once its
// stream has ended, and the shadow's answer, streamed or whole, compared
// with the model's by why each stopped. The shadow's stream is timed to
// its last byte, to its first (its time to first token) and per output
// token; its whole answer has no first byte. The client gets the model's
// stream byte for byte.
func TestShadowStreamedPredictions(t *testing.T) {
	const pause = 300 * time.Millisecond
	model := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		writeEvents(c, chatEvents("stop"), nil, 0)
		return true
	})
	var sidecar atomic.Pointer[Exporter]
	candidate := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		// A pause before the first token, and one before the last two
		// once the sidecar has timed the first: they come pause after it
		// whatever the load.
		slow := func(i int) {
			switch i {
			case 0:
				time.Sleep(pause)
			case 2:
				observedOnce(t, sidecar.Load().shadow.metrics.FirstByte, bodyModelOf(req))
				time.Sleep(pause)
			}
		}
		switch bodyModelOf(req) {
		case "whole":
			body := `{"id":"chatcmpl-2","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3}}`
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		case "other":
			writeEvents(c, chatEvents("length"), slow, 0)
		default:
			writeEvents(c, chatEvents("stop"), slow, 0)
		}
		return true
	})
	e := startExporter(t, model.URL(), shadowOptions(candidate.URL(), nil))
	sidecar.Store(e)

	models := []string{"same", "other", "whole"}
	for _, name := range models {
		status, body := chat(t, e, name)
		require.Equal(t, 200, status)
		require.Equal(t, sseBody(chatEvents("stop")), body, "%s: the model's stream, byte for byte", name)
	}
	waitParsed(t, e, int64(len(models)))

	// The shadow got each request as the model server did (in an order
	// of its own: two are sent at once).
	byModel := func(got []*rawMessage) map[string]string {
		bodies := map[string]string{}
		for _, r := range got {
			bodies[bodyModelOf(r)] = r.start + "\n" + string(r.body)
		}
		return bodies
	}
	require.Len(t, candidate.received(), len(models))
	require.Equal(t, byModel(model.received()), byModel(candidate.received()))

	require.Zero(t, sumSamples(scrape(t, e, collector.ShadowErrorsTotal)[collector.ShadowErrorsTotal].text, collector.ShadowErrorsTotal+"{"), "every answer was compared")
	for _, tc := range []struct {
		model          string
		disagreed      float64
		shadowFinish   string
		streamed, tpot float64
	}{
		{"same", 0, "stop", 1, 1},
		{"other", 1, "length", 1, 1},
		{"whole", 0, "stop", 0, 0},
	} {
		m := map[string]string{"model": tc.model}
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m), tc.model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, m), tc.model)
		require.Equal(t, tc.disagreed, metricValue(t, e, collector.ShadowDisagreementsTotal, m), tc.model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowClassPairsTotal,
			map[string]string{"model": tc.model, "predicted": "stop", "shadow_predicted": tc.shadowFinish}), tc.model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDuration+"_count", m), tc.model)
		require.Equal(t, tc.streamed, metricValue(t, e, collector.ShadowFirstByte+"_count", m), tc.model)
		require.Equal(t, tc.tpot, metricValue(t, e, collector.ShadowTimePerToken+"_count", m), tc.model)
		// The model's own, which the shadow's stand beside.
		require.Equal(t, 1.0, metricValue(t, e, collector.PredictionFirstByte+"_count", m), tc.model)
	}

	// The first byte is when the first token came, not the headers, nor
	// the end; the time per output token is over the two after the first.
	same := map[string]string{"model": "same"}
	first := metricValue(t, e, collector.ShadowFirstByte+"_sum", same)
	whole := metricValue(t, e, collector.ShadowDuration+"_sum", same)
	require.GreaterOrEqual(t, first, pause.Seconds(), "not when the headers came")
	require.GreaterOrEqual(t, whole-first, pause.Seconds(), "not when the stream ended")
	tpot := metricValue(t, e, collector.ShadowTimePerToken+"_sum", same)
	require.InDelta(t, (whole-first)/2, tpot, 1e-9)
}

// Whatever the shadow's stream does, the client gets the model's stream
// whole and the shadow's failure is counted by reason: one that goes
// quiet past --shadow.timeout as timeout (one that keeps talking is read
// for longer), one that dies mid-stream as connection, an error event as
// invalid_payload, and one that outgrows what could be parsed (unframed
// past --capture.max-body-size, or past --proxy.max-body-size at all) as
// invalid_response. A long stream of events is compared by its head and
// tail, as the model's is parsed.
//
// The shadow's streams are driven by what the sidecar did, not by timers
// racing the timeout: "steady" sends its body in 80 pieces, one every 10ms,
// twice the timeout in all, and "quiet" its first event, then nothing until
// the sidecar has counted it as timeout. Only a piece more than the timeout
// late, 40 times their interval, makes a stream look quiet.
func TestShadowStreamFailures(t *testing.T) {
	const (
		timeout = 400 * time.Millisecond
		every   = 10 * time.Millisecond // between the pieces of a stream
		// never bounds how long "quiet" waits for the sidecar, which it
		// does only when the sidecar is broken.
		never = 5 * timeout
	)
	var sidecar atomic.Pointer[Exporter]
	model := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		writeEvents(c, chatEvents("stop"), nil, 0)
		return true
	})
	many := func(n int) []string {
		events := make([]string, n)
		for i := range events {
			events[i] = `{"choices":[{"index":0,"delta":{"content":"` + strings.Repeat("x", 100) + `"},"finish_reason":null}]}`
		}
		return append(events, chatEvents("stop")...)
	}
	candidate := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		switch bodyModelOf(req) {
		case "quiet":
			writeEvents(c, chatEvents("stop"), func(i int) {
				if i != 1 {
					return
				}
				timedOut := sidecar.Load().shadow.metrics.Errors.WithLabelValues("quiet", collector.ErrorTimeout)
				for deadline := time.Now().Add(never); testutil.ToFloat64(timedOut) == 0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			}, 0)
		case "steady":
			// Longer than --shadow.timeout in all, never near that long
			// quiet.
			const pieces = int(2 * timeout / every)
			body := sseBody(chatEvents("stop"))
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
			for i := range pieces {
				time.Sleep(every)
				piece := body[i*len(body)/pieces : (i+1)*len(body)/pieces]
				fmt.Fprintf(c, "%x\r\n%s\r\n", len(piece), piece)
			}
			io.WriteString(c, "0\r\n\r\n")
		case "dies":
			writeEvents(c, chatEvents("stop"), nil, 2)
			return false
		case "error":
			writeEvents(c, append(chatEvents("stop")[:2], `{"error":"the model ran out of memory"}`), nil, 0)
		case "unframed":
			body := `{"predictions":"` + strings.Repeat("x", 8<<10) + `"}`
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		case "huge":
			writeEvents(c, many(1000), nil, 0) // over 100 KiB
		case "long":
			writeEvents(c, many(100), nil, 0) // over 10 KiB: spliced, and compared
		}
		return true
	})
	e := startExporter(t, model.URL(), func(o *Options) {
		shadowOptions(candidate.URL(), func(o *ShadowOptions) { o.Timeout, o.Concurrency = timeout, 8 })(o)
		o.CaptureMaxBodySize = 4 << 10
		o.Proxy.MaxBodySize = 64 << 10
	})
	sidecar.Store(e)
	cases := []struct{ model, reason string }{
		{"quiet", collector.ErrorTimeout},
		{"steady", ""},
		{"dies", collector.ErrorConnection},
		{"error", collector.ShadowInvalidPayload},
		{"unframed", collector.ErrorInvalidResponse},
		{"huge", collector.ErrorInvalidResponse},
		{"long", ""},
	}
	for _, tc := range cases {
		status, body := chat(t, e, tc.model)
		require.Equal(t, 200, status)
		require.Equal(t, sseBody(chatEvents("stop")), body, tc.model)
	}
	waitParsed(t, e, int64(len(cases)))
	// Each failure of the shadow by its reason, and none of the model's:
	// the others are at 0.
	samples := func(name string) []string {
		fam := scrape(t, e, name)[name]
		if fam == nil {
			return nil
		}
		var out []string
		for line := range strings.Lines(fam.text) {
			if !strings.HasPrefix(line, "#") && !strings.HasSuffix(strings.TrimSpace(line), " 0") {
				out = append(out, strings.TrimSpace(line))
			}
		}
		return out
	}
	var failed []string
	for _, tc := range cases {
		if tc.reason != "" {
			failed = append(failed, fmt.Sprintf("%s{model=%q,reason=%q} 1", collector.ShadowErrorsTotal, tc.model, tc.reason))
		}
	}
	require.ElementsMatch(t, failed, samples(collector.ShadowErrorsTotal))
	for _, line := range samples(collector.PredictionErrorsTotal) {
		require.True(t, strings.HasSuffix(line, " 0"), "the model's own requests did not fail: %s", line)
	}
	for _, tc := range cases {
		m := map[string]string{"model": tc.model}
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m), tc.model)
		compared := 0.0
		if tc.reason == "" {
			compared = 1
		}
		require.Equal(t, compared, metricValue(t, e, collector.ShadowPredictionsTotal, m), tc.model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowFirstByte+"_count", m), "%s: its first token came", tc.model)
	}
	require.Zero(t, metricValue(t, e, collector.ShadowDisagreementsTotal, map[string]string{"model": "long"}),
		"the tail of a long stream says how it finished")
}

// A shadow that holds its stream holds no client: the client's stream is
// passed on piece by piece as the model server sends it, and its requests
// mirrored past --shadow.concurrency sent and as many waiting are dropped
// and counted.
func TestShadowStreamNeverHoldsTheClient(t *testing.T) {
	next := make(chan struct{})
	var gated sync.Once
	model := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		var wait func(int)
		// The first stream sends each event once the client has read the
		// one before.
		gated.Do(func() { wait = func(int) { <-next } })
		writeEvents(c, chatEvents("stop"), wait, 0)
		return true
	})
	release := make(chan struct{})
	candidate := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		writeEvents(c, chatEvents("stop"), func(i int) {
			if i == 1 {
				<-release
			}
		}, 0)
		return true
	})
	e := startExporter(t, model.URL(), shadowOptions(candidate.URL(), func(o *ShadowOptions) { o.Concurrency = 1 }))
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the sidecar stops

	resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"llama","messages":[],"stream":true}`))
	require.NoError(t, err)
	br := bufio.NewReader(resp.Body)
	for i, ev := range chatEvents("stop") {
		next <- struct{}{} // the model server sends one event, and waits
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "data: "+ev+"\n", line, "event %d arrives while the stream is still open", i)
		_, err = br.ReadString('\n')
		require.NoError(t, err)
	}
	rest, err := io.ReadAll(br)
	require.NoError(t, err)
	require.Empty(t, rest)
	resp.Body.Close()

	const n = 10
	for range n - 1 {
		// Each stream ends while the shadow holds the first.
		status, body := chat(t, e, "llama")
		require.Equal(t, 200, status)
		require.Equal(t, sseBody(chatEvents("stop")), body)
	}
	m := map[string]string{"model": "llama"}
	require.Eventually(t, func() bool { return e.queue.handled.Load() == n }, 10*time.Second, time.Millisecond)
	dropped := metricValue(t, e, collector.ShadowDroppedTotal, m)
	require.GreaterOrEqual(t, dropped, float64(n-2), "one sent, one waiting")
	releaseOnce.Do(func() { close(release) })
	waitIdle(t, e)
	require.Equal(t, float64(n), dropped+metricValue(t, e, collector.ShadowRequestsTotal, m))
	require.Equal(t, metricValue(t, e, collector.ShadowRequestsTotal, m), metricValue(t, e, collector.ShadowPredictionsTotal, m))
}

// observedOnce waits until vec, a histogram by model, has an observation
// for model, for at most 10s, and fails t if it never has: a model server
// that streams waits for its first piece to be read before it sends the
// next. It may run in a model server's handler, off the test's goroutine,
// so it marks t failed (Errorf) and returns, rather than stop it.
func observedOnce(t testing.TB, vec *prometheus.HistogramVec, model string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var m dto.Metric
		if vec.WithLabelValues(model).(prometheus.Metric).Write(&m) == nil && m.GetHistogram().GetSampleCount() > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Errorf("%s{model=%q} had no observation after 10s: the sidecar never took the piece the model server waits on", histogramName(vec), model)
}

// histogramName returns the name of vec's family, as its Desc says it.
func histogramName(vec *prometheus.HistogramVec) string {
	ch := make(chan *prometheus.Desc, 1)
	vec.Describe(ch)
	_, name, _ := strings.Cut((<-ch).String(), `fqName: "`)
	name, _, _ = strings.Cut(name, `"`)
	return name
}

// A streamed answer that came in one read (a whole completion, chunked or
// until the connection closes, the model server's framing aside) has a
// time to first byte, when its body came, but no time per output token,
// which would be about 0 whatever the tokens it reports: that needs its
// last byte to come in a later read than its first. The model, through
// the proxy, and the shadow are timed alike.
func TestShadowStreamInOnePiece(t *testing.T) {
	const pause = 50 * time.Millisecond
	events := []string{
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}`,
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" there, you"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":5}}`,
		"[DONE]",
	}
	var sidecar atomic.Pointer[Exporter]
	answer := func(firstByte func(*Exporter) *prometheus.HistogramVec) func(*rawMessage, net.Conn) bool {
		return func(req *rawMessage, c net.Conn) bool {
			const chunked = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
			switch model := bodyModelOf(req); model {
			case "once":
				// One write, headers and all: one event a chunk.
				var b strings.Builder
				b.WriteString(chunked)
				for _, ev := range events {
					ev = "data: " + ev + "\n\n"
					fmt.Fprintf(&b, "%x\r\n%s\r\n", len(ev), ev)
				}
				b.WriteString("0\r\n\r\n")
				io.WriteString(c, b.String())
			case "close":
				// One write, until the connection closes.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"+sseBody(events))
				return false
			default:
				// Its first token, read before the others are sent.
				writeEvents(c, events, func(i int) {
					if i == 1 {
						observedOnce(t, firstByte(sidecar.Load()), model)
						time.Sleep(pause)
					}
				}, 0)
			}
			return true
		}
	}
	model := newRawUpstream(t, answer(func(e *Exporter) *prometheus.HistogramVec { return e.metrics.FirstByte }))
	candidate := newRawUpstream(t, answer(func(e *Exporter) *prometheus.HistogramVec { return e.shadow.metrics.FirstByte }))
	e := startExporter(t, model.URL(), shadowOptions(candidate.URL(), nil))
	sidecar.Store(e)

	models := []string{"pieces", "once", "close"}
	for _, name := range models {
		status, body := chat(t, e, name)
		require.Equal(t, 200, status)
		require.Equal(t, sseBody(events), body, name)
	}
	waitParsed(t, e, int64(len(models)))

	for _, tc := range []struct {
		model string
		tpot  float64
	}{
		{"pieces", 1},
		{"once", 0},
		{"close", 0},
	} {
		m := map[string]string{"model": tc.model}
		require.Equal(t, 5.0, metricValue(t, e, "modelmon_generation_tokens_total", map[string]string{"model": tc.model, "type": "output"}), tc.model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, m), "%s: compared", tc.model)
		for _, name := range []string{collector.PredictionFirstByte, collector.ShadowFirstByte} {
			require.Equal(t, 1.0, metricValue(t, e, name+"_count", m), "%s: %s, of its body", tc.model, name)
		}
		for _, name := range []string{collector.GenerationTimePerToken, collector.ShadowTimePerToken} {
			require.Equal(t, tc.tpot, metricValue(t, e, name+"_count", m), "%s: %s", tc.model, name)
		}
	}
	pieces := map[string]string{"model": "pieces"}
	for _, name := range []string{collector.GenerationTimePerToken, collector.ShadowTimePerToken} {
		require.GreaterOrEqual(t, metricValue(t, e, name+"_sum", pieces), pause.Seconds()/4, "%s: (last − first) / (5 − 1)", name)
	}
}
