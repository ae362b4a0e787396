package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// seenRequest is a request as a model server received it.
type seenRequest struct {
	method, uri, host string
	header            http.Header
	body              []byte
}

// recordingServer is a model server on loopback that answers each model's
// predictions with a fixed body, and keeps what it received.
type recordingServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

// newRecordingServer answers a request for model m (the path's
// /v1/models/{m}:predict) with answers[m], or with what answer returns when
// it is set.
func newRecordingServer(t *testing.T, answers map[string]string, answer func(w http.ResponseWriter, r *http.Request) bool) *recordingServer {
	ms := &recordingServer{}
	ms.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ms.mu.Lock()
		ms.seen = append(ms.seen, seenRequest{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body})
		ms.mu.Unlock()
		if answer != nil && answer(w, r) {
			return
		}
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/models/"), ":predict")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answers[name])
	}))
	t.Cleanup(ms.Close)
	return ms
}

func (ms *recordingServer) received() []seenRequest {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]seenRequest(nil), ms.seen...)
}

// shadowOptions mirror every prediction to shadow.
func shadowOptions(shadow string, mod func(*ShadowOptions)) func(*Options) {
	return func(o *Options) {
		o.Shadow = ShadowOptions{Upstream: shadow, SampleRatio: 1, Timeout: 5 * time.Second, Concurrency: 2}
		if mod != nil {
			mod(&o.Shadow)
		}
	}
}

// predict posts body to the sidecar for model, with headers as name, value
// pairs, and returns the answer's status and body.
func predict(t *testing.T, e *Exporter, model, body string, headers ...string) (int, string) {
	t.Helper()
	return do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/"+model+":predict?trace=1", body,
		append([]string{"Content-Type", "application/json"}, headers...)...)
}

// The shadow model server gets the model's requests as they were sent, and
// its answers are compared with the model's: classes that differ, numbers
// by how far apart.
func TestShadowComparesPredictions(t *testing.T) {
	model := newRecordingServer(t, map[string]string{
		"fraud":  `{"predictions": ["legit", "fraud", "legit"]}`,
		"house":  `{"predictions": [1.0, 2.0, 3.0]}`,
		"churn":  `{"predictions": [0.9, 0.1, 0.6]}`,
		"digits": `{"predictions": [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]}`,
	}, nil)
	candidate := newRecordingServer(t, map[string]string{
		"fraud":  `{"predictions": ["legit", "legit", "legit"]}`,
		"house":  `{"predictions": [1.5, 1.0, 3.0]}`,
		"churn":  `{"predictions": [0.2, 0.3, 0.65]}`,
		"digits": `{"predictions": [[0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.3, 0.1, 0.6]]}`,
	}, nil)
	cfg := filepath.Join(t.TempDir(), "config.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: churn
    classes: [stay, leave]
  - name: digits
    classes: ["0", "1", "2"]
`), 0o644))
	e := startExporter(t, model.URL, func(o *Options) {
		o.ConfigFile = cfg
		shadowOptions(candidate.URL, nil)(o)
	})

	status, body := predict(t, e, "fraud", `{"instances": [[1], [2], [3]]}`, "Authorization", "Bearer s3cret", "X-Tenant", "a")
	require.Equal(t, 200, status)
	require.JSONEq(t, `{"predictions": ["legit", "fraud", "legit"]}`, body, "the client gets the model's answer")
	for _, m := range []string{"house", "churn", "digits"} {
		status, _ := predict(t, e, m, `{"instances": [[1], [2], [3]]}`)
		require.Equal(t, 200, status)
	}
	waitIdle(t, e)

	// The candidate got each request as the model did, but for its Host
	// (and in an order of its own: two are sent at once).
	mine, theirs := model.received(), candidate.received()
	require.Len(t, theirs, 4)
	require.Len(t, mine, 4)
	byURI := func(a, b seenRequest) int { return strings.Compare(a.uri, b.uri) }
	slices.SortFunc(mine, byURI)
	slices.SortFunc(theirs, byURI)
	for i := range mine {
		require.Equal(t, mine[i].method, theirs[i].method)
		require.Equal(t, mine[i].uri, theirs[i].uri)
		require.Equal(t, mine[i].body, theirs[i].body)
		for k, vs := range mine[i].header {
			require.Equal(t, vs, theirs[i].header[k], k)
		}
		require.Equal(t, strings.TrimPrefix(candidate.URL, "http://"), theirs[i].host)
	}
	fraud := theirs[slices.IndexFunc(theirs, func(r seenRequest) bool { return strings.Contains(r.uri, "fraud") })]
	require.Equal(t, []string{"Bearer s3cret"}, fraud.header["Authorization"])
	require.Equal(t, []string{"a"}, fraud.header["X-Tenant"])

	for _, tc := range []struct {
		model                        string
		compared, disagreed, abs, sq float64
	}{
		{"fraud", 3, 1, 0, 0},
		{"house", 3, 0, 1.5, 0.5*0.5 + 1*1},
		// Scores of the second class: leave, stay, leave against stay,
		// stay, leave.
		{"churn", 3, 1, 0.7 + 0.2 + 0.05, 0.49 + 0.04 + 0.0025},
		// Classes 1, 0, 2 against 1, 2, 2.
		{"digits", 3, 1, 0, 0},
	} {
		m := map[string]string{"model": tc.model}
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m), tc.model)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDuration+"_count", m), tc.model)
		require.Equal(t, tc.compared, metricValue(t, e, collector.ShadowPredictionsTotal, m), tc.model)
		require.Equal(t, tc.disagreed, metricValue(t, e, collector.ShadowDisagreementsTotal, m), tc.model)
		require.InDelta(t, tc.abs, metricValue(t, e, collector.ShadowAbsoluteDifferenceTotal, m), 1e-9, tc.model)
		require.InDelta(t, tc.sq, metricValue(t, e, collector.ShadowSquaredDifferenceTotal, m), 1e-9, tc.model)
		for _, reason := range collector.ShadowErrorReasons {
			require.Zero(t, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": tc.model, "reason": reason}))
		}
	}
	// Which classes the shadow would change, and into what.
	for _, tc := range []struct {
		model, predicted, shadow string
		want                     float64
	}{
		{"fraud", "legit", "legit", 2}, {"fraud", "fraud", "legit", 1}, {"fraud", "legit", "fraud", 0},
		{"digits", "1", "1", 1}, {"digits", "0", "2", 1}, {"digits", "2", "2", 1},
		{"churn", "leave", "stay", 1}, {"churn", "stay", "stay", 1}, {"churn", "leave", "leave", 1},
	} {
		require.Equal(t, tc.want, metricValue(t, e, collector.ShadowClassPairsTotal,
			map[string]string{"model": tc.model, "predicted": tc.predicted, "shadow_predicted": tc.shadow}), "%+v", tc)
	}
	require.NotContains(t, scrape(t, e, collector.ShadowClassPairsTotal)[collector.ShadowClassPairsTotal].text, `model="house"`, "a regression has no classes")
}

// A compressed request goes to the shadow as it was sent, and a compressed
// answer of the shadow is read.
func TestShadowCompressedBodies(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit", "fraud"]}`}, nil)
	candidate := newRecordingServer(t, nil, func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/json")
		w.Write(gzipped(t, `{"predictions": ["fraud", "fraud"]}`))
		return true
	})
	e := startExporter(t, model.URL, shadowOptions(candidate.URL, nil))

	body := gzipped(t, `{"instances": [{"amount": 1}, {"amount": 2}]}`)
	status, _ := predict(t, e, "fraud", string(body), "Content-Encoding", "gzip")
	require.Equal(t, 200, status)
	waitIdle(t, e)
	got := candidate.received()
	require.Len(t, got, 1)
	require.Equal(t, body, got[0].body)
	require.Equal(t, "gzip", got[0].header.Get("Content-Encoding"))
	m := map[string]string{"model": "fraud"}
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPredictionsTotal, m))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDisagreementsTotal, m))
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := io.WriteString(zw, s)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.Bytes()
}

// Whatever the shadow does, the client gets the model's answer, and the
// failure is counted by reason.
func TestShadowFailures(t *testing.T) {
	answer := `{"predictions": ["legit", "fraud"]}`
	model := newRecordingServer(t, map[string]string{"fraud": answer}, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "http://" + dead.Addr().String()
	dead.Close()

	for _, tc := range []struct {
		name, reason string
		respond      func(w http.ResponseWriter, r *http.Request)
	}{
		{"error status", collector.ErrorUpstream5xx, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "candidate broken", http.StatusInternalServerError)
		}},
		{"client error status", collector.ErrorUpstream4xx, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no such model", http.StatusNotFound)
		}},
		{"not JSON", collector.ShadowInvalidPayload, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>oops")
		}},
		{"no predictions", collector.ShadowInvalidPayload, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"status": "ok"}`)
		}},
		{"other count", collector.ShadowShapeMismatch, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"predictions": ["legit"]}`)
		}},
		{"slow", collector.ErrorTimeout, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}},
		{"dies mid-answer", collector.ErrorConnection, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, `{"predictions": [`)
			w.(http.Flusher).Flush()
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		}},
		{"down", collector.ErrorConnection, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := deadURL
			if tc.respond != nil {
				url = newRecordingServer(t, nil, func(w http.ResponseWriter, r *http.Request) bool {
					tc.respond(w, r)
					return true
				}).URL
			}
			e := startExporter(t, model.URL, shadowOptions(url, func(o *ShadowOptions) { o.Timeout = 200 * time.Millisecond }))
			status, body := predict(t, e, "fraud", `{"instances": [[1], [2]]}`)
			require.Equal(t, 200, status)
			require.JSONEq(t, answer, body)
			waitIdle(t, e)
			m := map[string]string{"model": "fraud"}
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, m))
			require.Equal(t, 1.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": tc.reason}))
			require.Zero(t, metricValue(t, e, collector.ShadowPredictionsTotal, m))
			require.Zero(t, metricValue(t, e, collector.PredictionErrorsTotal, map[string]string{"model": "fraud", "reason": tc.reason}),
				"the model's own requests did not fail")
		})
	}
}

// A shadow that does not answer holds no client: requests past
// --shadow.concurrency sent and as many waiting are dropped and counted.
func TestShadowNeverHoldsTheClient(t *testing.T) {
	answer := `{"predictions": ["legit"]}`
	model := newRecordingServer(t, map[string]string{"fraud": answer}, nil)
	release := make(chan struct{})
	candidate := newRecordingServer(t, nil, func(w http.ResponseWriter, r *http.Request) bool {
		<-release
		io.WriteString(w, answer)
		return true
	})
	e := startExporter(t, model.URL, shadowOptions(candidate.URL, func(o *ShadowOptions) { o.Concurrency = 1 }))
	const n = 10
	for range n {
		// Each answer comes while the shadow holds the first request.
		status, body := predict(t, e, "fraud", `{"instances": [[1]]}`)
		require.Equal(t, 200, status)
		require.JSONEq(t, answer, body)
	}
	m := map[string]string{"model": "fraud"}
	require.Eventually(t, func() bool {
		return e.queue.enqueued.Load() == e.queue.handled.Load()
	}, 10*time.Second, time.Millisecond)
	dropped := metricValue(t, e, collector.ShadowDroppedTotal, m)
	require.GreaterOrEqual(t, dropped, float64(n-2), "one sent, one waiting")
	close(release)
	waitIdle(t, e)
	require.Equal(t, float64(n), dropped+metricValue(t, e, collector.ShadowRequestsTotal, m))
	require.Equal(t, metricValue(t, e, collector.ShadowRequestsTotal, m), metricValue(t, e, collector.ShadowPredictionsTotal, m))
}

// --shadow.sample-ratio mirrors about that share of the predictions.
func TestShadowSampleRatio(t *testing.T) {
	answer := `{"predictions": ["legit"]}`
	model := newRecordingServer(t, map[string]string{"fraud": answer}, nil)
	candidate := newRecordingServer(t, map[string]string{"fraud": answer}, nil)
	e := startExporter(t, model.URL, shadowOptions(candidate.URL, func(o *ShadowOptions) { o.SampleRatio = 0.25 }))
	const n = 400
	for range n {
		status, _ := predict(t, e, "fraud", `{"instances": [[1]]}`)
		require.Equal(t, 200, status)
	}
	waitIdle(t, e)
	// Binomial(400, 0.25): mean 100, standard deviation 8.7; five of them
	// either side fail one run in 1.7 million.
	got := metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "fraud"})
	require.InDelta(t, 100, got, 5*8.7, "mirrored %v of %d", got, n)
	require.Len(t, candidate.received(), int(got))
}

func TestShadowOptionsChecked(t *testing.T) {
	for _, tc := range []struct {
		o    ShadowOptions
		want string
	}{
		{ShadowOptions{Upstream: "ftp://x", SampleRatio: 1, Timeout: time.Second, Concurrency: 1}, "--shadow.upstream"},
		{ShadowOptions{Upstream: "http://x", SampleRatio: 1.5, Timeout: time.Second, Concurrency: 1}, "--shadow.sample-ratio"},
		{ShadowOptions{Upstream: "http://x", SampleRatio: -1, Timeout: time.Second, Concurrency: 1}, "--shadow.sample-ratio"},
		{ShadowOptions{Upstream: "http://x", SampleRatio: 1, Timeout: time.Second, Concurrency: -1}, "--shadow.concurrency"},
		{ShadowOptions{Upstream: "http://x", SampleRatio: 1, Timeout: -time.Second, Concurrency: 1}, "--shadow.timeout"},
		{ShadowOptions{Upstream: "http://x", SampleRatio: 1, Timeout: time.Second, Concurrency: 1, Models: []string{""}}, "--shadow.model"},
	} {
		o := DefaultOptions()
		o.Shadow = tc.o
		_, err := New(o)
		require.ErrorContains(t, err, tc.want, fmt.Sprint(tc.o))
	}
}

// With labels, both answers to a mirrored request are scored against its
// label, on the same inputs: right and wrong on each side and the pairs only
// one got right for classes, errors on each side for numbers.
func TestShadowScoredAgainstLabels(t *testing.T) {
	model := newRecordingServer(t, map[string]string{
		"fraud":  `{"predictions": ["a", "a", "b", "b"]}`,
		"house":  `{"predictions": [1, 2]}`,
		"broken": `{"predictions": ["a"]}`,
		"mix":    `{"predictions": [1, "a"]}`,
	}, nil)
	candidate := newRecordingServer(t, map[string]string{
		"fraud": `{"predictions": ["a", "b", "b", "a"]}`,
		"house": `{"predictions": [1.5, 4]}`,
		"mix":   `{"predictions": [1.5, "b"]}`,
	}, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "broken") {
			http.Error(w, "candidate broken", http.StatusInternalServerError)
			return true
		}
		return false
	})
	e := startExporter(t, model.URL, func(o *Options) {
		labelsOn(o)
		shadowOptions(candidate.URL, nil)(o)
	})
	for _, r := range []struct{ model, id, body string }{
		{"fraud", "r1", `{"instances": [[1], [2], [3], [4]]}`},
		{"house", "r2", `{"instances": [[1], [2]]}`},
		{"broken", "r3", `{"instances": [[1]]}`},
		{"mix", "r4", `{"instances": [[1], [2]]}`},
	} {
		status, _ := predict(t, e, r.model, r.body, "X-Request-Id", r.id)
		require.Equal(t, 200, status)
	}
	waitIdle(t, e)
	require.Equal(t, 8.0, metricValue(t, e, collector.ShadowPendingPredictions, nil), "fraud's 4, house's 2 and mix's 2; broken's shadow failed")

	// r1: both right, model only, neither, shadow only.
	st, resp := postLabels(t, e, `{"id": "r1/0", "label": "a"}
{"id": "r1/1", "label": "a"}
{"id": "r1/2", "label": "a"}
{"id": "r1/3", "label": "a"}
{"id": "r2/0", "label": 1}
{"id": "r2/1", "label": 3}
{"id": "r3", "label": "a"}
{"id": "r4/0", "label": 2}
{"id": "r4/1", "label": "a"}`)
	require.Equal(t, 200, st)
	require.Equal(t, slices.Repeat([]string{"matched"}, 9), resp.Results)

	fraud, house := map[string]string{"model": "fraud"}, map[string]string{"model": "house"}
	source := func(model, src string) map[string]string { return map[string]string{"model": model, "source": src} }
	require.Equal(t, 4.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, fraud))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowCorrectTotal, source("fraud", "model")))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowCorrectTotal, source("fraud", "shadow")))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowDiscordantTotal, fraud))
	require.Equal(t, 2.0, metricValue(t, e, collector.PredictionCorrectTotal, map[string]string{"model": "fraud", "class": "a"}), "the model's own quality is counted as before")

	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, house))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowRegressionOutcomesTotal, house))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, source("house", "model")))
	require.Equal(t, 1.5, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, source("house", "shadow")))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowSquaredErrorTotal, source("house", "model")))
	require.Equal(t, 1.25, metricValue(t, e, collector.ShadowSquaredErrorTotal, source("house", "shadow")))

	// mix: a number and a class, each scored; its errors are over the one
	// numeric pair, not over both labels.
	mix := map[string]string{"model": "mix"}
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, mix))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRegressionOutcomesTotal, mix))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, source("mix", "model")))
	require.Equal(t, 0.5, metricValue(t, e, collector.ShadowAbsoluteErrorTotal, source("mix", "shadow")))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowCorrectTotal, source("mix", "model")))
	require.Zero(t, metricValue(t, e, collector.ShadowCorrectTotal, source("mix", "shadow")))

	require.Zero(t, metricValue(t, e, collector.ShadowLabelsMatchedTotal, map[string]string{"model": "broken"}))
	require.Equal(t, 1.0, metricValue(t, e, collector.LabelsMatchedTotal, map[string]string{"model": "broken"}))
	require.Zero(t, metricValue(t, e, collector.ShadowPendingPredictions, nil))
}

// The shadow's predictions waiting for labels are bounded: past the TTL
// and beyond the maximum, the oldest go.
func TestShadowPendingBounded(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	sp := newShadowPending(3, time.Hour)
	a := shadowPrediction{class: "a", isClass: true}
	sp.add(t0, "m", []byte("1"), []shadowPrediction{a})
	sp.add(t0.Add(time.Minute), "m", []byte("2"), []shadowPrediction{a, a, {}})
	require.Equal(t, 3, sp.len(), "a record that predicts nothing is not kept")
	_, ok := sp.take("other", "2/0")
	require.False(t, ok, "another model's id")
	p, ok := sp.take("m", "2/0")
	require.True(t, ok)
	require.Equal(t, a, p)
	_, ok = sp.take("m", "2/0")
	require.False(t, ok, "taken once")

	sp.add(t0.Add(2*time.Minute), "m", []byte("3"), []shadowPrediction{a})
	sp.add(t0.Add(3*time.Minute), "m", []byte("4"), []shadowPrediction{a})
	require.Equal(t, 3, sp.len())
	_, ok = sp.take("m", "1")
	require.False(t, ok, "the oldest went beyond the maximum")

	sp.add(t0.Add(time.Hour+2*time.Minute+time.Second), "m", []byte("5"), []shadowPrediction{a})
	for _, id := range []string{"2/1", "3"} {
		_, ok = sp.take("m", id)
		require.False(t, ok, "%s is past the TTL", id)
	}
	for _, id := range []string{"4", "5"} {
		_, ok = sp.take("m", id)
		require.True(t, ok, id)
	}
}

// --shadow.model mirrors only the models it names: a candidate for one
// model of a server that serves several.
func TestShadowModels(t *testing.T) {
	answers := map[string]string{"fraud": `{"predictions": ["legit"]}`, "house": `{"predictions": [1]}`}
	model, candidate := newRecordingServer(t, answers, nil), newRecordingServer(t, answers, nil)
	e := startExporter(t, model.URL, shadowOptions(candidate.URL, func(o *ShadowOptions) { o.Models = []string{"fraud"} }))
	for _, m := range []string{"fraud", "house", "fraud"} {
		status, _ := predict(t, e, m, `{"instances": [[1]]}`)
		require.Equal(t, 200, status)
	}
	waitIdle(t, e)
	got := candidate.received()
	require.Len(t, got, 2)
	for _, r := range got {
		require.Contains(t, r.uri, "/fraud:predict")
	}
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "fraud"}))
	require.Zero(t, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "house"}))
}

// --shadow.model mirrors the model it names past limits.max_models too,
// whose predictions count under __other__ with the others past it: the
// user named it. Its shadow metrics carry __other__, and the others past
// the cap are not mirrored. So is a model whose name is cut to a label
// value.
func TestShadowModelPastMaxModels(t *testing.T) {
	long := strings.Repeat("x", 200) // its label value is cut to 128 bytes
	answers := map[string]string{"a": `{"predictions": ["legit"]}`, "b": `{"predictions": ["legit"]}`,
		"fraud": `{"predictions": ["legit"]}`, "house": `{"predictions": ["legit"]}`, long: `{"predictions": ["legit"]}`}
	model, candidate := newRecordingServer(t, answers, nil), newRecordingServer(t, answers, nil)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 3\n"), 0o644))
	e := startExporter(t, model.URL, func(o *Options) {
		o.ConfigFile = cfg
		shadowOptions(candidate.URL, func(s *ShadowOptions) { s.Models = []string{"fraud", long, "b"} })(o)
	})
	// a and b, then long (cut), take the three places; fraud and house
	// come under __other__.
	for _, m := range []string{"a", "b", long, "fraud", "house", "fraud"} {
		status, _ := predict(t, e, m, `{"instances": [[1]]}`)
		require.Equal(t, 200, status)
	}
	waitIdle(t, e)
	var got []string
	for _, r := range candidate.received() {
		got = append(got, strings.TrimSuffix(strings.TrimPrefix(r.uri, "/v1/models/"), ":predict?trace=1"))
	}
	require.ElementsMatch(t, []string{"b", long, "fraud", "fraud"}, got)
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "__other__"}))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPredictionsTotal, map[string]string{"model": "__other__"}))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": long[:128]}))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "b"}))
}

// The shadow gets the request target the model server got, an empty
// query's "?" too, over http and https.
func TestShadowTargetAsSent(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	var mu sync.Mutex
	var tlsURIs []string
	secure, cliCert, cliKey := mtlsServer(t, dir, ca, "candidate.internal", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tlsURIs = append(tlsURIs, r.RequestURI)
		mu.Unlock()
		io.WriteString(w, `{"predictions": ["fraud"]}`)
	}))
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, nil)
	plain := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["fraud"]}`}, nil)
	for _, shadow := range []string{plain.URL, secure.URL} {
		e := startExporter(t, model.URL, shadowOptions(shadow, func(s *ShadowOptions) {
			s.TLS = promconfig.TLSConfig{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey, ServerName: "candidate.internal"}
			if !strings.HasPrefix(shadow, "https") {
				s.TLS = promconfig.TLSConfig{}
			}
		}))
		status, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/fraud:predict?", `{"instances": [[1]]}`)
		require.Equal(t, 200, status)
		waitIdle(t, e)
		require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, map[string]string{"model": "fraud"}), shadow)
	}
	for _, got := range model.received() {
		require.Equal(t, "/v1/models/fraud:predict?", got.uri)
	}
	require.Equal(t, "/v1/models/fraud:predict?", plain.received()[0].uri)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"/v1/models/fraud:predict?"}, tlsURIs)
}

// An https shadow is verified against --shadow.ca-file under
// --shadow.server-name and gets the client certificate of
// --shadow.cert-file, as the model server does with the --proxy.upstream-*
// flags; a shadow that can't be verified is counted as a failure and the
// client still gets the model's answer.
func TestShadowHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	candidate, cliCert, cliKey := mtlsServer(t, dir, ca, "candidate.internal", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions": ["fraud"]}`)
	}))
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["legit"]}`}, nil)
	m := map[string]string{"model": "fraud"}
	for _, tc := range []struct {
		name     string
		tls      promconfig.TLSConfig
		compared float64
	}{
		{"verified", promconfig.TLSConfig{CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey, ServerName: "candidate.internal"}, 1},
		{"an unknown CA", promconfig.TLSConfig{CertFile: cliCert, KeyFile: cliKey, ServerName: "candidate.internal"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startExporter(t, model.URL, shadowOptions(candidate.URL, func(s *ShadowOptions) { s.TLS = tc.tls }))
			status, body := predict(t, e, "fraud", `{"instances": [{"amount": 1}]}`)
			require.Equal(t, 200, status)
			require.Equal(t, `{"predictions": ["legit"]}`, body)
			waitIdle(t, e)
			require.Equal(t, tc.compared, metricValue(t, e, collector.ShadowPredictionsTotal, m))
			if tc.compared == 0 {
				require.Equal(t, 1.0, metricValue(t, e, collector.ShadowErrorsTotal, map[string]string{"model": "fraud", "reason": "connection"}))
			} else {
				require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDisagreementsTotal, m))
			}
		})
	}
	_, err := New(withLoopback(model.URL, Options{Shadow: ShadowOptions{Upstream: "https://127.0.0.1:1", SampleRatio: 1, Timeout: time.Second, Concurrency: 1, MaxPending: 1,
		TLS: promconfig.TLSConfig{CertFile: cliCert}}}))
	require.ErrorContains(t, err, "--shadow.cert-file and --shadow.key-file go together")
}

// With --storage.path, the shadow's predictions waiting for their labels
// survive a restart, and a crash after a snapshot: labels posted after it
// score both answers exactly as without the restart.
func TestShadowPendingSurvivesRestart(t *testing.T) {
	model := newRecordingServer(t, map[string]string{
		"fraud": `{"predictions": ["a", "a", "b", "b"]}`,
		"house": `{"predictions": [1, 2]}`,
	}, nil)
	candidate := newRecordingServer(t, map[string]string{
		"fraud": `{"predictions": ["a", "b", "b", "a"]}`,
		"house": `{"predictions": [1.5, 4]}`,
	}, nil)
	const labels = `{"id": "r1/0", "label": "a"}
{"id": "r1/1", "label": "a"}
{"id": "r1/2", "label": "a"}
{"id": "r1/3", "label": "a"}
{"id": "r2/0", "label": 1}
{"id": "r2/1", "label": 3}`
	scored := []string{collector.ShadowLabelsMatchedTotal, collector.ShadowRegressionOutcomesTotal, collector.ShadowCorrectTotal,
		collector.ShadowDiscordantTotal, collector.ShadowAbsoluteErrorTotal, collector.ShadowSquaredErrorTotal}

	// run mirrors the predictions, restarts the sidecar as told, posts the
	// labels, and returns how the shadow was scored against them.
	run := func(restart string) string {
		storage := t.TempDir()
		opts := func(o *Options) {
			labelsOn(o)
			shadowOptions(candidate.URL, nil)(o)
			o.StoragePath = storage
		}
		e := startExporter(t, model.URL, opts)
		for _, r := range []struct{ model, id, body string }{
			{"fraud", "r1", `{"instances": [[1], [2], [3], [4]]}`},
			{"house", "r2", `{"instances": [[1], [2]]}`},
		} {
			status, _ := predict(t, e, r.model, r.body, "X-Request-Id", r.id)
			require.Equal(t, 200, status)
		}
		waitIdle(t, e)
		switch restart {
		case "stop":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, e.Stop(ctx))
			e = startExporter(t, model.URL, opts)
		case "crash":
			// What --storage.snapshot-interval writes; the first sidecar
			// runs on and saves nothing more before the second starts.
			e.snapshot()
			e = startExporter(t, model.URL, opts)
		}
		require.Equal(t, 6.0, metricValue(t, e, collector.ShadowPendingPredictions, nil), restart)
		st, resp := postLabels(t, e, labels)
		require.Equal(t, 200, st)
		require.Equal(t, []string{"matched", "matched", "matched", "matched", "matched", "matched"}, resp.Results, restart)
		require.Zero(t, metricValue(t, e, collector.ShadowPendingPredictions, nil), restart)
		fams := scrape(t, e, "modelmon_shadow_")
		for name := range fams {
			if !slices.Contains(scored, name) {
				delete(fams, name)
			}
		}
		return joinFamilies(fams)
	}

	want := run("")
	for _, sample := range []string{ // as TestShadowScoredAgainstLabels has them
		`modelmon_shadow_labels_matched_total{model="fraud"} 4`,
		`modelmon_shadow_prediction_regression_outcomes_total{model="house"} 2`,
		`modelmon_shadow_prediction_correct_total{model="fraud",source="shadow"} 2`,
		`modelmon_shadow_prediction_discordant_total{model="fraud"} 2`,
		`modelmon_shadow_prediction_squared_error_total{model="house",source="shadow"} 1.25`,
	} {
		require.Contains(t, want, sample+"\n")
	}
	require.Equal(t, want, run("stop"))
	require.Equal(t, want, run("crash"))
}

// At restore, the shadow's predictions past --labels.ttl as at the
// sidecar's clock are dropped, and the oldest beyond --shadow.max-pending,
// as they would be live.
func TestShadowPendingRestoredWithinBounds(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["a", "a", "a"]}`}, nil)
	candidate := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["a", "b", "a"]}`}, nil)
	storage := t.TempDir()
	clock := &manualClock{t: time.Unix(1800000000, 0)}
	opts := func(max int) func(*Options) {
		return func(o *Options) {
			o.Now = clock.Now
			o.Labels = LabelsOptions{Enabled: true, TTL: time.Hour}
			shadowOptions(candidate.URL, func(s *ShadowOptions) { s.MaxPending = max })(o)
			o.StoragePath = storage
		}
	}
	e := startExporter(t, model.URL, opts(100))
	for _, id := range []string{"old", "new"} {
		status, _ := predict(t, e, "fraud", `{"instances": [[1], [2], [3]]}`, "X-Request-Id", id)
		require.Equal(t, 200, status)
		waitIdle(t, e)
		clock.Add(30 * time.Minute)
	}
	require.Equal(t, 6.0, metricValue(t, e, collector.ShadowPendingPredictions, nil))
	restart := func(max int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, e.Stop(ctx))
		e = startExporter(t, model.URL, opts(max))
	}

	// An hour and 10 minutes after "old", 40 minutes after "new": old's
	// are past the TTL.
	clock.Add(10 * time.Minute)
	restart(100)
	require.Equal(t, 3.0, metricValue(t, e, collector.ShadowPendingPredictions, nil))
	// With room for 2, new/0 goes: new/1 and new/2 are left.
	restart(2)
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowPendingPredictions, nil))
	_, resp := postLabels(t, e, `{"id": "old/0", "label": "a"}
{"id": "new/0", "label": "a"}
{"id": "new/1", "label": "a"}
{"id": "new/2", "label": "a"}`)
	require.Equal(t, []string{"expired", "matched", "matched", "matched"}, resp.Results)
	fraud := map[string]string{"model": "fraud"}
	require.Equal(t, 3.0, metricValue(t, e, collector.LabelsMatchedTotal, fraud))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowLabelsMatchedTotal, fraud))
	require.Equal(t, 2.0, metricValue(t, e, collector.ShadowCorrectTotal, map[string]string{"model": "fraud", "source": "model"}))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowCorrectTotal, map[string]string{"model": "fraud", "source": "shadow"}))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowDiscordantTotal, fraud))
}

// A snapshot of the shadow's pending predictions that can't be read stops
// the sidecar's start with an error naming it, as the label store's does,
// rather than losing the shadow's side of the labels to come.
func TestShadowPendingSnapshotUnreadable(t *testing.T) {
	var good bytes.Buffer
	sp := newShadowPending(10, time.Hour)
	sp.add(time.Now(), "fraud", []byte("r1"), []shadowPrediction{{class: "a", isClass: true}})
	require.NoError(t, sp.snapshot(&good))

	for _, tc := range []struct {
		name  string
		write func(path string) error
		want  string
	}{
		{"not a snapshot", func(path string) error { return os.WriteFile(path, []byte("{}\n"), 0o644) },
			"corrupt shadow pending snapshot: missing header"},
		{"truncated", func(path string) error { return os.WriteFile(path, good.Bytes()[:good.Len()-1], 0o644) },
			"corrupt shadow pending snapshot: checksum mismatch"},
		{"unreadable", func(path string) error { return os.Mkdir(path, 0o755) },
			"couldn't read shadow pending snapshot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storage := t.TempDir()
			path := filepath.Join(storage, shadowPendingFile)
			require.NoError(t, tc.write(path))
			o := DefaultOptions()
			o.Labels.Enabled = true
			o.StoragePath = storage
			o.Shadow.Upstream = "http://127.0.0.1:1"
			_, err := New(o)
			require.ErrorContains(t, err, "couldn't restore the shadow's pending predictions from "+path+": ")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A snapshot whose write fails midway (here, a disk that is full) leaves the
// last one whole, and a restart reads back what that one held. The label
// join's and the shadow's are written one after the other, so a crash can
// come between them, leaving the shadow's older than the label join's: a
// restart then scores the shadow on the labels of the predictions both
// files hold, and loses only the shadow's side of those its file missed, as
// a crash before both writes would.
func TestPendingSnapshotsSurviveAFailedWrite(t *testing.T) {
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["a"]}`}, nil)
	candidate := newRecordingServer(t, map[string]string{"fraud": `{"predictions": ["b"]}`}, nil)
	storage := t.TempDir()
	opts := func(o *Options) {
		labelsOn(o)
		shadowOptions(candidate.URL, nil)(o)
		o.StoragePath = storage
	}
	labelsFile, shadowFile := filepath.Join(storage, "labels.snapshot"), filepath.Join(storage, shadowPendingFile)
	read := func() (labels, shadow []byte) {
		t.Helper()
		labels, err := os.ReadFile(labelsFile)
		require.NoError(t, err)
		shadow, err = os.ReadFile(shadowFile)
		require.NoError(t, err)
		return labels, shadow
	}

	e := startExporter(t, model.URL, opts)
	predictID := func(id string) {
		t.Helper()
		status, _ := predict(t, e, "fraud", `{"instances": [[1]]}`, "X-Request-Id", id)
		require.Equal(t, 200, status)
		waitIdle(t, e)
	}
	predictID("r1")
	require.NoError(t, e.savePending())
	labels1, shadow1 := read()

	predictID("r2")
	// Both writes fail on a full disk: the last snapshots are left as they
	// were, with nothing temporary beside them.
	err := statefiletest.FailWrites(t, e.savePending, labelsFile, shadowFile)
	require.ErrorContains(t, err, "couldn't save pending predictions: ")
	require.ErrorContains(t, err, "couldn't save the shadow's pending predictions: ")
	require.ErrorContains(t, err, "no space left on device")

	// A sidecar that starts after a crash now reads r1 back, not r2.
	after := startExporter(t, model.URL, opts)
	require.Equal(t, 1.0, metricValue(t, after, collector.PendingPredictions, nil))
	require.Equal(t, 1.0, metricValue(t, after, collector.ShadowPendingPredictions, nil))

	// The label join's is written, the shadow's is not: as a crash between
	// the two writes leaves them.
	err = statefiletest.FailWrites(t, e.savePending, shadowFile)
	require.ErrorContains(t, err, "couldn't save the shadow's pending predictions: ")
	require.NotContains(t, err.Error(), "couldn't save pending predictions: ")
	labels, shadow := read()
	require.NotEqual(t, labels1, labels)
	require.Equal(t, shadow1, shadow)
	after = startExporter(t, model.URL, opts)
	require.Equal(t, 2.0, metricValue(t, after, collector.PendingPredictions, nil))
	require.Equal(t, 1.0, metricValue(t, after, collector.ShadowPendingPredictions, nil))
	_, resp := postLabels(t, after, `{"id": "r1", "label": "a"}`+"\n"+`{"id": "r2", "label": "a"}`)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	fraud := map[string]string{"model": "fraud"}
	require.Equal(t, 2.0, metricValue(t, after, collector.LabelsMatchedTotal, fraud))
	require.Equal(t, 1.0, metricValue(t, after, collector.ShadowLabelsMatchedTotal, fraud), "r1's shadow prediction; r2's was lost")
	require.Equal(t, 1.0, metricValue(t, after, collector.ShadowCorrectTotal, map[string]string{"model": "fraud", "source": "model"}))
	require.Zero(t, metricValue(t, after, collector.ShadowCorrectTotal, map[string]string{"model": "fraud", "source": "shadow"}))
	require.Zero(t, metricValue(t, after, collector.ShadowPendingPredictions, nil))
}

// The shadow's counters of a model it mirrors are exported at 0 from the
// start, as the model's own are (newModel), so that rate() and increase()
// see its first mirrored request: a model of the configuration before any
// traffic, another once traffic or the push API names it, each failure
// reason of modelmon_shadow_errors_total. A model --shadow.model does not
// name has none, nor does any model without a shadow.
func TestShadowCountersStartAtZero(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n  - name: price\n"), 0o644))
	model := newRecordingServer(t, map[string]string{"fraud": `{"predictions": [1]}`}, nil)
	counters := []string{collector.ShadowRequestsTotal, collector.ShadowPredictionsTotal, collector.ShadowDisagreementsTotal,
		collector.ShadowDroppedTotal, collector.ShadowRetriesTotal}
	// series are the samples of the shadow's counters of model.
	series := func(t *testing.T, e *Exporter, model string) []string {
		t.Helper()
		fams := scrape(t, e, "modelmon_shadow_")
		var out []string
		for _, name := range append(counters, collector.ShadowErrorsTotal) {
			fam := fams[name]
			if fam == nil {
				continue
			}
			for line := range strings.Lines(fam.text) {
				if !strings.HasPrefix(line, "#") && strings.Contains(line, `model="`+model+`"`) {
					out = append(out, strings.TrimSpace(line))
				}
			}
		}
		return out
	}
	zeros := func(model string) []string {
		var out []string
		for _, name := range counters {
			out = append(out, fmt.Sprintf("%s{model=%q} 0", name, model))
		}
		for _, reason := range collector.ShadowErrorReasons {
			out = append(out, fmt.Sprintf("%s{model=%q,reason=%q} 0", collector.ShadowErrorsTotal, model, reason))
		}
		return out
	}

	e := startExporter(t, model.URL, func(o *Options) {
		o.ConfigFile = cfg
		shadowOptions(model.URL, func(s *ShadowOptions) { s.Models = []string{"fraud", "llm"} })(o)
	})
	require.ElementsMatch(t, zeros("fraud"), series(t, e, "fraud"), "configured and mirrored")
	require.Empty(t, series(t, e, "price"), "configured, not mirrored")
	require.Empty(t, series(t, e, "llm"), "not known yet")
	pushRecordsRaw(t, e, `{"model":"llm","prediction":1}`, `{"model":"chat","prediction":1}`)
	require.ElementsMatch(t, zeros("llm"), series(t, e, "llm"), "known, and mirrored")
	require.Empty(t, series(t, e, "chat"), "known, not mirrored")

	st, _ := predict(t, e, "fraud", `{"instances": [[1]]}`)
	require.Equal(t, 200, st)
	waitIdle(t, e)
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowRequestsTotal, map[string]string{"model": "fraud"}))
	require.Equal(t, 1.0, metricValue(t, e, collector.ShadowPredictionsTotal, map[string]string{"model": "fraud"}))

	// Without a shadow, none.
	e = startExporter(t, model.URL, func(o *Options) { o.ConfigFile = cfg })
	require.Empty(t, series(t, e, "fraud"))
}
