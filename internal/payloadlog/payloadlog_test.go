package payloadlog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// received is one request the receiver got.
type received struct {
	header http.Header
	body   string
}

// receiver is a CloudEvents sink on loopback. status decides the answer to
// each request from its number and body (200 when nil); gate, when set,
// holds requests until closed.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex // guards got and gate
	got    []received
	status atomic.Pointer[func(n int, body string) int]
	calls  atomic.Int64
	gate   chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := int(r.calls.Add(1))
		r.mu.Lock()
		gate := r.gate
		r.mu.Unlock()
		if gate != nil {
			<-gate
		}
		body, _ := io.ReadAll(req.Body)
		code := http.StatusOK
		if f := r.status.Load(); f != nil {
			code = (*f)(n, string(body))
		}
		if code == http.StatusOK {
			r.mu.Lock()
			r.got = append(r.got, received{req.Header.Clone(), string(body)})
			r.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setStatus(f func(n int) int) {
	r.answer(func(n int, _ string) int { return f(n) })
}

// answer sets the status of each request from its number and body.
func (r *receiver) answer(f func(n int, body string) int) { r.status.Store(&f) }

// ids are the ids of the events the receiver accepted, in order: Ce-Id in
// binary mode, each event's id in batched mode.
func (r *receiver) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, g := range r.got {
		if g.header.Get("Content-Type") == BatchContentType {
			out = append(out, batchIDs(g.body)...)
			continue
		}
		out = append(out, g.header.Get("Ce-Id"))
	}
	return out
}

// batchIDs are the ids of the events of a body in batched mode (none when
// it is not one).
func batchIDs(body string) []string {
	var evs []struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(body), &evs)
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// offerBehind offers evs to a Logger with one worker: the first goes alone
// and is held at the receiver's gate while the others are queued, then the
// gate opens. The others go in batches of BatchSize behind it: with 8,
// evs[1:9], evs[9:17], and so on.
//
// It may be called again once the receiver has answered every request.
func offerBehind(t *testing.T, r *receiver, l *Logger, evs []*Event) {
	t.Helper()
	gate := make(chan struct{})
	r.mu.Lock()
	r.gate = gate
	r.mu.Unlock()
	calls := r.calls.Load()
	l.Offer(evs[0])
	require.Eventually(t, func() bool { return r.calls.Load() == calls+1 }, 5*time.Second, time.Millisecond)
	for _, ev := range evs[1:] {
		l.Offer(ev)
	}
	close(gate)
}

func (r *receiver) waitFor(t *testing.T, n int) []string {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.ids()) >= n }, 20*time.Second, 5*time.Millisecond, "the receiver got %d events of %d", len(r.ids()), n)
	return r.ids()
}

func event(i int) *Event {
	return &Event{
		ID: "id-" + strconv.Itoa(i), Type: TypeRequest, Source: "http://pod-a:8081/",
		Time: time.Date(2026, 11, 27, 10, 0, 0, i, time.UTC), ContentType: "application/json",
		Extensions: map[string]string{"modelname": "fraud"},
		Data:       []byte(`{"instances":[[` + strconv.Itoa(i) + `]]}`),
	}
}

func events(from, to int) []*Event {
	var out []*Event
	for i := from; i < to; i++ {
		out = append(out, event(i))
	}
	return out
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "id-"+strconv.Itoa(i))
	}
	return out
}

func newLogger(t *testing.T, o Options) (*Logger, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if o.InitialBackoff == 0 {
		o.InitialBackoff = 5 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 20 * time.Millisecond
	}
	l, err := New(o)
	require.NoError(t, err)
	return l, reg
}

func closeNow(t *testing.T, l *Logger, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, l.Close(ctx))
}

// The receiver gets each event as CloudEvents' binary mode puts it: the
// attributes in Ce- headers, the data as the body, byte for byte.
func TestDeliver(t *testing.T) {
	r := newReceiver(t)
	l, reg := newLogger(t, Options{URL: r.URL + "/events"})
	ev := event(7)
	ev.Extensions["inferenceservicename"] = "fraud-isvc"
	resp := &Event{ID: "id-7", Type: TypeResponse, Source: ev.Source, Time: ev.Time, ContentType: "application/json", Data: []byte(`{"predictions":[0.9]}`)}
	l.Offer(ev)
	l.Offer(resp)
	r.waitFor(t, 2)
	closeNow(t, l, time.Second)

	byType := map[string]received{}
	for _, g := range r.got {
		byType[g.header.Get("Ce-Type")] = g
	}
	req := byType[TypeRequest]
	require.Equal(t, `{"instances":[[7]]}`, req.body)
	require.Equal(t, "1.0", req.header.Get("Ce-Specversion"))
	require.Equal(t, "id-7", req.header.Get("Ce-Id"))
	require.Equal(t, "http://pod-a:8081/", req.header.Get("Ce-Source"))
	require.Equal(t, "2026-11-27T10:00:00.000000007Z", req.header.Get("Ce-Time"))
	require.Equal(t, "application/json", req.header.Get("Content-Type"))
	require.Equal(t, "fraud", req.header.Get("Ce-Modelname"))
	require.Equal(t, "fraud-isvc", req.header.Get("Ce-Inferenceservicename"))
	require.Equal(t, `{"predictions":[0.9]}`, byType[TypeResponse].body)
	require.Equal(t, "id-7", byType[TypeResponse].header.Get("Ce-Id"), "a request and its response share the id")
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("response")))
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Positive(t, n)
}

// A failing receiver (5xx, 429, a dead port) is retried with backoff, each
// failure counted by reason, and every event arrives in the end; with one
// worker, in order.
func TestRetry(t *testing.T) {
	r := newReceiver(t)
	r.setStatus(func(n int) int {
		switch {
		case n <= 3:
			return http.StatusServiceUnavailable
		case n <= 5:
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1})
	for i := range 20 {
		l.Offer(event(i))
	}
	require.Equal(t, ids(0, 20), r.waitFor(t, 20))
	closeNow(t, l, time.Second)
	require.Equal(t, 3.0, testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_5xx")))
	require.Equal(t, 2.0, testutil.ToFloat64(l.metrics.failures.WithLabelValues("rate_limited")))
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
}

// A receiver that is down (connection refused) and comes back later gets
// everything offered meanwhile.
func TestReceiverDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	l, _ := newLogger(t, Options{URL: "http://" + addr + "/"})
	for i := range 10 {
		l.Offer(event(i))
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(l.metrics.failures.WithLabelValues("connection")) >= 3
	}, 10*time.Second, 5*time.Millisecond)

	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	r := &receiver{}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.got = append(r.got, received{header: req.Header.Clone()})
		r.mu.Unlock()
	})}}
	srv.Start()
	defer srv.Close()
	require.ElementsMatch(t, ids(0, 10), r.waitFor(t, 10))
	closeNow(t, l, time.Second)
}

// A 4xx other than 408 and 429 is the receiver refusing the event: it is
// dropped and counted, not retried.
func TestRejected(t *testing.T) {
	r := newReceiver(t)
	r.setStatus(func(n int) int {
		if n == 1 {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1})
	l.Offer(event(0))
	l.Offer(event(1))
	require.Equal(t, []string{"id-1"}, r.waitFor(t, 1))
	closeNow(t, l, time.Second)
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_4xx")))
	require.EqualValues(t, 2, r.calls.Load())
}

// Without a spool, a full queue drops and counts; Offer never waits.
func TestQueueFull(t *testing.T) {
	r := newReceiver(t)
	r.gate = make(chan struct{})
	size := int64(len(event(0).Data))
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, MaxQueueBytes: 5 * size})
	l.Offer(event(0)) // taken by the worker, held at the receiver
	require.Eventually(t, func() bool { return r.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	// The receiver holds its gate shut until after: an Offer that waited
	// for room in the queue would wait for ever.
	offered := make(chan struct{})
	go func() {
		defer close(offered)
		for i := 1; i <= 10; i++ {
			l.Offer(event(i))
		}
	}()
	select {
	case <-offered:
	case <-time.After(10 * time.Second):
		close(r.gate)
		t.Fatal("Offer waited for room in the queue")
	}
	require.Equal(t, 5.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropQueueFull)))
	close(r.gate)
	require.Equal(t, ids(0, 6), r.waitFor(t, 6))
	closeNow(t, l, time.Second)
}

// With a spool, what doesn't fit goes to disk and is sent from there, in
// order behind the queue; the files go once sent.
func TestSpool(t *testing.T) {
	r := newReceiver(t)
	r.gate = make(chan struct{})
	dir := t.TempDir()
	size := int64(len(event(0).Data))
	l, reg := newLogger(t, Options{URL: r.URL, Workers: 1, MaxQueueBytes: 5 * size, SpoolDir: dir, SegmentBytes: 300})
	l.Offer(event(0))
	require.Eventually(t, func() bool { return r.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	for i := 1; i < 100; i++ {
		l.Offer(event(i))
	}
	require.Equal(t, 94.0, testutil.ToFloat64(l.metrics.spooled))
	files, err := filepath.Glob(filepath.Join(dir, "*.spool"))
	require.NoError(t, err)
	require.Greater(t, len(files), 5, "several spool files")
	close(r.gate)
	require.Equal(t, ids(0, 100), r.waitFor(t, 100))
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*.spool"))
		return len(files) == 0
	}, 5*time.Second, 5*time.Millisecond, "sent spool files are removed")
	closeNow(t, l, time.Second)
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropQueueFull)))
	requireSpoolEmpty(t, dir, reg)
}

// requireSpoolEmpty checks that the spool's files are all gone, and that
// its gauge says so.
func requireSpoolEmpty(t *testing.T, dir string, reg prometheus.Gatherer) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.spool"))
	require.NoError(t, err)
	require.Empty(t, files)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader("# HELP modelmon_payload_log_spool_bytes The bytes of the spool directory's files of payload events not yet sent.\n# TYPE modelmon_payload_log_spool_bytes gauge\nmodelmon_payload_log_spool_bytes 0\n"), "modelmon_payload_log_spool_bytes"))
}

// A receiver down across a restart: the queue is spooled at shutdown, and
// the next run sends everything, once each.
func TestSpoolRestart(t *testing.T) {
	// The receiver the first run sees is down; the second run's is up. (One
	// receiver brought up between the runs could still be handling a
	// request the first run's Close cut short, answer it 200, and get its
	// event again from the spool: at least once is what the spool promises.)
	downRecv := newReceiver(t)
	downRecv.setStatus(func(int) int { return http.StatusBadGateway })
	r := newReceiver(t)
	dir := t.TempDir()
	size := int64(len(event(0).Data))
	l, _ := newLogger(t, Options{URL: downRecv.URL, MaxQueueBytes: 20 * size, SpoolDir: dir, SegmentBytes: 1000})
	for i := range 50 {
		l.Offer(event(i))
	}
	closeNow(t, l, 50*time.Millisecond)
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropShutdown)))
	l.Offer(event(99))
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropShutdown)), "offered after Close")
	require.Empty(t, downRecv.ids())

	l2, _ := newLogger(t, Options{URL: r.URL, MaxQueueBytes: 20 * size, SpoolDir: dir})
	got := r.waitFor(t, 50)
	require.ElementsMatch(t, ids(0, 50), got)
	l2.Offer(event(50))
	r.waitFor(t, 51)
	closeNow(t, l2, time.Second)
	require.Len(t, r.ids(), 51, "nothing twice")
}

// Without a spool, Close sends what is queued while its context allows,
// and counts the rest as dropped at shutdown.
func TestCloseDrains(t *testing.T) {
	r := newReceiver(t)
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 2})
	for i := range 30 {
		l.Offer(event(i))
	}
	closeNow(t, l, 5*time.Second)
	require.ElementsMatch(t, ids(0, 30), r.ids())
	closeNow(t, l, time.Second) // a second Close does nothing

	r2 := newReceiver(t)
	r2.setStatus(func(int) int { return http.StatusServiceUnavailable })
	l2, _ := newLogger(t, Options{URL: r2.URL, Workers: 2})
	for i := range 30 {
		l2.Offer(event(i))
	}
	closeNow(t, l2, 50*time.Millisecond)
	require.Equal(t, 30.0, testutil.ToFloat64(l2.metrics.dropped.WithLabelValues(DropShutdown)))
}

// A full spool drops and counts.
func TestSpoolFull(t *testing.T) {
	r := newReceiver(t)
	r.gate = make(chan struct{})
	defer close(r.gate)
	rec, err := encode(event(1)) // event(0)'s time is shorter
	require.NoError(t, err)
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, MaxQueueBytes: 1, SpoolDir: t.TempDir(), MaxSpoolBytes: int64(3*len(rec) + 2)})
	for i := range 10 {
		l.Offer(event(i))
	}
	require.Equal(t, 3.0, testutil.ToFloat64(l.metrics.spooled))
	require.Equal(t, 7.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropSpoolFull)))
	closeNow(t, l, 10*time.Millisecond)
}

// A spool file cut short by a crash gives the events before the cut, and
// counts the damage.
func TestSpoolDamaged(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for i := range 5 {
		rec, err := encode(event(i))
		require.NoError(t, err)
		b = append(b, rec...)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.spool", 3)), b[:len(b)-4], 0o600))
	r := newReceiver(t)
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, SpoolDir: dir})
	require.Equal(t, ids(0, 4), r.waitFor(t, 4))
	l.Offer(event(9))
	r.waitFor(t, 5)
	closeNow(t, l, time.Second)
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropSpoolError)))
	files, _ := filepath.Glob(filepath.Join(dir, "*.spool"))
	require.Empty(t, files)
	// New files continue the numbering.
	require.GreaterOrEqual(t, l.nextSeq, uint64(4))
}

func TestEncodeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x.spool")
	var b []byte
	for i := range 3 {
		rec, err := encode(event(i))
		require.NoError(t, err)
		b = append(b, rec...)
	}
	require.NoError(t, os.WriteFile(f, b, 0o600))
	evs, err := readSegment(f)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	for i, ev := range evs {
		require.Equal(t, event(i), ev)
	}
}

// BenchmarkDeliver sends events to a receiver on loopback, one request
// each, with the default four workers: events/s is what the payload log
// sustains to a receiver that answers at once.
func BenchmarkDeliver(b *testing.B) {
	benchmarkDeliver(b, 1)
}

func benchmarkDeliver(b *testing.B, batch int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	l, err := New(Options{URL: srv.URL, MaxQueueBytes: 1 << 30, BatchSize: batch})
	if err != nil {
		b.Fatal(err)
	}
	ev := event(1)
	b.ReportAllocs()
	b.ResetTimer()
	// The timed part ends when every event is sent: ns/op is the time per
	// event delivered.
	for range b.N {
		l.Offer(ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if sent := testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")); int(sent) != b.N {
		b.Fatalf("%v of %d sent", sent, b.N)
	}
}

// With BatchSize, the queued events go in CloudEvents' batched JSON mode:
// an array of events in the JSON format, JSON data as it is, other data in
// base64; a batch that failed with a 5xx is sent again whole, not split.
func TestBatch(t *testing.T) {
	r := newReceiver(t)
	r.setStatus(func(n int) int {
		if n == 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, BatchSize: 8})
	evs := events(0, 20)
	evs[5].ContentType, evs[5].Data = "application/octet-stream", []byte{0xff, 0x00, 'x'}
	offerBehind(t, r, l, evs)
	r.waitFor(t, 20)
	closeNow(t, l, 10*time.Second)
	require.Len(t, r.got, 4, "batches of 1, 8, 8 and 3 events")
	require.EqualValues(t, 5, r.calls.Load())
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.splits))

	var got []map[string]any
	for i, g := range r.got {
		require.Equal(t, BatchContentType, g.header.Get("Content-Type"))
		var batch []map[string]any
		require.NoError(t, json.Unmarshal([]byte(g.body), &batch), g.body)
		require.LessOrEqual(t, len(batch), 8)
		if i == 0 {
			require.Len(t, batch, 1, "the first event went alone")
		}
		got = append(got, batch...)
	}
	require.Len(t, got, 20, "every event once, the failed batch again whole")
	for i, ev := range got {
		require.Equal(t, "id-"+strconv.Itoa(i), ev["id"], "in order")
		require.Equal(t, "1.0", ev["specversion"])
		require.Equal(t, TypeRequest, ev["type"])
		require.Equal(t, "http://pod-a:8081/", ev["source"])
		require.Equal(t, "fraud", ev["modelname"])
		if i == 5 {
			require.Equal(t, base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 'x'}), ev["data_base64"])
			require.Nil(t, ev["data"])
			continue
		}
		require.Equal(t, map[string]any{"instances": []any{[]any{float64(i)}}}, ev["data"])
	}
	require.Equal(t, 20.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
	require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_5xx")))
}

// rejecting answers 400 to a request holding an event bad reports, 200 to
// the others.
func rejecting(bad func(id string) bool) func(int, string) int {
	return func(_ int, body string) int {
		if slices.ContainsFunc(batchIDs(body), bad) {
			return http.StatusBadRequest
		}
		return http.StatusOK
	}
}

// A batch the receiver rejects (400) is sent again in halves, split again
// while refused: only the events it refuses alone are dropped, the others
// arrive once each, in order. With a spool, its files go once each of their
// events is sent or dropped.
func TestBatchRejected(t *testing.T) {
	for _, c := range []struct {
		name string
		bad  []string
	}{
		{"one event", []string{"id-13"}},
		{"several events", []string{"id-1", "id-8", "id-9", "id-10", "id-19"}},
		{"every event", ids(0, 20)},
	} {
		for _, spool := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/spool=%t", c.name, spool), func(t *testing.T) {
				r := newReceiver(t)
				r.answer(rejecting(func(id string) bool { return slices.Contains(c.bad, id) }))
				o := Options{URL: r.URL, Workers: 1, BatchSize: 8}
				if spool {
					o.SpoolDir, o.MaxQueueBytes = t.TempDir(), 1 // every event goes through the spool
				}
				l, reg := newLogger(t, o)
				offerBehind(t, r, l, events(0, 20))
				var want []string
				for _, id := range ids(0, 20) {
					if !slices.Contains(c.bad, id) {
						want = append(want, id)
					}
				}
				require.Eventually(t, func() bool {
					return testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)) == float64(len(c.bad))
				}, 20*time.Second, 5*time.Millisecond)
				r.waitFor(t, len(want))
				closeNow(t, l, 10*time.Second)

				require.Equal(t, want, r.ids(), "the others once each, in order")
				require.Equal(t, float64(len(c.bad)), testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
				require.Equal(t, float64(len(want)), testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
				require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropShutdown)))
				require.Positive(t, testutil.ToFloat64(l.metrics.splits))
				require.Positive(t, testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_4xx")))
				if spool {
					require.Equal(t, 20.0, testutil.ToFloat64(l.metrics.spooled))
					requireSpoolEmpty(t, o.SpoolDir, reg)
				}
			})
		}
	}
}

// A rejected batch whose parts Close cuts short settles what it has sent or
// dropped and keeps the rest: requeued (and dropped at shutdown without a
// spool), or left in its spool file, which goes only once all of its events
// are sent or dropped.
func TestBatchRejectedClose(t *testing.T) {
	for _, spool := range []bool{false, true} {
		t.Run(fmt.Sprintf("spool=%t", spool), func(t *testing.T) {
			r := newReceiver(t)
			// [1..8] and [1..4] are refused for id-3: [1 2] go, [3 4] is
			// refused, [3] dropped, [4] goes; [5..8] is held until Close
			// gives up on it.
			held, release := make(chan struct{}), make(chan struct{})
			defer close(release)
			var once sync.Once
			reject := rejecting(func(id string) bool { return id == "id-3" })
			r.answer(func(n int, body string) int {
				if got := batchIDs(body); len(got) == 4 && got[0] == "id-5" {
					once.Do(func() { close(held) })
					<-release
					return http.StatusServiceUnavailable
				}
				return reject(n, body)
			})
			o := Options{URL: r.URL, Workers: 1, BatchSize: 8}
			if spool {
				o.SpoolDir, o.MaxQueueBytes = t.TempDir(), 1
			}
			l, _ := newLogger(t, o)
			offerBehind(t, r, l, events(0, 9))
			<-held
			closeNow(t, l, 50*time.Millisecond)

			require.Equal(t, []string{"id-0", "id-1", "id-2", "id-4"}, r.ids())
			require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
			require.Equal(t, 4.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
			if !spool {
				require.Equal(t, 4.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropShutdown)), "[5..8]")
				return
			}
			require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropShutdown)))
			files, err := filepath.Glob(filepath.Join(o.SpoolDir, "*.spool"))
			require.NoError(t, err)
			require.Len(t, files, 1, "event 0's file went, the batch's stays")
			evs, err := readSegment(files[0])
			require.NoError(t, err)
			var got []string
			for _, ev := range evs {
				got = append(got, ev.ID)
			}
			require.Equal(t, ids(1, 9), got, "at least once: the file's events come again at the next start")
		})
	}
}

// A receiver that answers 413 to batches of more than 3 events gets every
// event in smaller parts, once each, in order; nothing is dropped, and the
// batches after the refusals are small enough.
func TestBatchTooLarge(t *testing.T) {
	r := newReceiver(t)
	r.answer(func(_ int, body string) int {
		if len(batchIDs(body)) > 3 {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusOK
	})
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, BatchSize: 8})
	offerBehind(t, r, l, events(0, 20))
	r.waitFor(t, 20)
	closeNow(t, l, 10*time.Second)
	require.Equal(t, ids(0, 20), r.ids())
	require.Equal(t, 20.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
	// [1..8] is split, and so are its halves of 4; the refusals leave
	// batches of at most 2, which the receiver takes whole: [9..16] is
	// not sent to be refused.
	require.Equal(t, 3.0, testutil.ToFloat64(l.metrics.splits))
	require.Equal(t, 3.0, testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_4xx")))
	require.Equal(t, 2, l.limit.current())
}

// BenchmarkDeliverBatch is BenchmarkDeliver with batches of up to 100.
func BenchmarkDeliverBatch(b *testing.B) {
	benchmarkDeliver(b, 100)
}

// Once the spool is sent, traffic goes to memory again, not to the spool.
func TestSpoolDrainsBackToMemory(t *testing.T) {
	r := newReceiver(t)
	var down atomic.Bool
	down.Store(true)
	r.setStatus(func(int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	size := int64(len(event(0).Data))
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, MaxQueueBytes: 200 * size, SpoolDir: t.TempDir()})
	for i := range 300 {
		l.Offer(event(i))
	}
	require.Positive(t, testutil.ToFloat64(l.metrics.spooled))
	// The receiver comes back while traffic goes on.
	down.Store(false)
	for i := 300; i < 500; i++ {
		l.Offer(event(i))
		time.Sleep(100 * time.Microsecond)
	}
	r.waitFor(t, 500)
	// Sent: the next events stay in memory.
	spooled := testutil.ToFloat64(l.metrics.spooled)
	for i := 500; i < 550; i++ {
		l.Offer(event(i))
		r.waitFor(t, i+1)
	}
	require.Equal(t, spooled, testutil.ToFloat64(l.metrics.spooled), "events went to the spool after it was sent")
	closeNow(t, l, time.Second)
	require.ElementsMatch(t, ids(0, 550), r.ids())
}

// Loading the last spool file ends spilling at once: the events that come
// next go to memory, behind the file's.
func TestLoadLastSegmentEndsSpilling(t *testing.T) {
	r := newReceiver(t)
	r.gate = make(chan struct{})
	defer close(r.gate)
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, MaxQueueBytes: 1, SpoolDir: t.TempDir()})
	l.Offer(event(0)) // to the spool: the queue holds nothing
	require.Eventually(t, func() bool { return r.calls.Load() == 1 }, 5*time.Second, time.Millisecond, "the worker took the event from the spool")
	l.mu.Lock()
	spilling := l.spilling
	l.mu.Unlock()
	require.False(t, spilling)
	closeNow(t, l, 10*time.Millisecond)
}

// A receiver that refuses every event (a schema it rejects, wrong
// credentials) costs one request an event once a split has shown it, not
// the 2n-1 of splitting each batch of n down to single events: the next
// batches go event by event, each dropped only when refused alone. The
// first event it takes ends that; the rest of its batch, and the batches
// after, go whole.
func TestRefusingEverything(t *testing.T) {
	r := newReceiver(t)
	var bad atomic.Pointer[func(id string) bool]
	refuse := func(f func(id string) bool) { bad.Store(&f) }
	var reqs requestLog
	r.answer(reqs.wrap(rejecting(func(id string) bool { return (*bad.Load())(id) })))
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 1, BatchSize: 8})

	refuse(func(string) bool { return true })
	send(t, r, l, 0, 33, 0)
	got := reqs.take()
	require.Len(t, got, 1+15+3*8, "[0] alone, [1..8] split down to single events, then 24 events alone")
	for i, req := range got {
		require.Equal(t, http.StatusBadRequest, req.code)
		if i > 15 {
			require.Equal(t, 1, req.events)
		}
	}
	require.Equal(t, 33.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
	require.Equal(t, 40.0, testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_4xx")))
	require.Equal(t, 7.0+3, testutil.ToFloat64(l.metrics.splits), "7 halvings, 3 batches sent event by event")

	// The receiver takes events again, but for the first three: [33]
	// alone, refused; [34..41] event by event until 36 is taken, then
	// [37..41] together. The batches after go whole.
	refuse(func(id string) bool { return slices.Contains(ids(33, 36), id) })
	send(t, r, l, 33, 42, 6)
	require.Equal(t, []request{{1, 400}, {1, 400}, {1, 400}, {1, 200}, {5, 200}}, reqs.take())
	send(t, r, l, 42, 59, 23)
	require.Equal(t, []request{{1, 200}, {8, 200}, {8, 200}}, reqs.take())

	closeNow(t, l, time.Second)
	require.Equal(t, ids(36, 59), r.ids())
	require.Equal(t, 36.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
	require.Equal(t, 23.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
	require.Equal(t, 11.0, testutil.ToFloat64(l.metrics.splits))
}

// With several workers, a receiver that refuses every event still costs
// about one request an event, not two.
func TestRefusingEverythingWorkers(t *testing.T) {
	r := newReceiver(t)
	r.answer(rejecting(func(string) bool { return true }))
	l, _ := newLogger(t, Options{URL: r.URL, Workers: 4, BatchSize: 8, MaxQueueBytes: 1 << 30})
	for _, ev := range events(0, 400) {
		l.Offer(ev)
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)) == 400
	}, 20*time.Second, 5*time.Millisecond)
	closeNow(t, l, time.Second)
	require.LessOrEqual(t, r.calls.Load(), int64(480), "each worker's batches before the first split ends may be split, the rest go alone")
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.sent.WithLabelValues("request")))
}
