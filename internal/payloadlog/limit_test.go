package payloadlog

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/readmetest"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// The batch limit, step by step: a 413 halves it and puts the first probe
// a wait later; refused probes keep it and double the wait up to its most;
// probes taken whole double it back to the batch size, one after another.
func TestBatchLimitSteps(t *testing.T) {
	b := newBatchLimit(16, time.Minute, 4*time.Minute)
	take := func(now time.Time, n, probe int) {
		t.Helper()
		gotN, gotProbe := b.take(now)
		require.Equal(t, [2]int{n, probe}, [2]int{gotN, gotProbe}, "take at %v", now.Sub(t0))
	}
	take(t0, 16, 0)

	require.Equal(t, 8, b.tooLarge(t0, 16, false))
	require.Equal(t, 0, b.tooLarge(t0, 16, false), "a batch taken before the limit fell: no lower, no longer wait")
	require.Equal(t, 4, b.tooLarge(t0, 8, false), "a batch at the limit refused: lower, and the wait doubles")
	take(t0.Add(2*time.Minute-time.Second), 4, 0)

	// The first probe, 2m after the last 413; while it is out, no other.
	now := t0.Add(2 * time.Minute)
	take(now, 8, 4)
	take(now, 4, 0)
	require.Equal(t, 0, b.tooLarge(now, 8, true), "a refused probe keeps the limit")
	require.False(t, b.probed(now, 4, 8, false))
	// Waits: 4m (the most), then 4m again.
	take(now.Add(4*time.Minute-time.Second), 4, 0)
	now = now.Add(4 * time.Minute)
	take(now, 8, 4)
	b.tooLarge(now, 8, true)
	b.probed(now, 4, 8, false)
	take(now.Add(4*time.Minute-time.Second), 4, 0)
	now = now.Add(4 * time.Minute)

	// A probe the queue had too few events for, or that was split for
	// another reason, tells nothing: the next batch probes again.
	take(now, 8, 4)
	require.False(t, b.probed(now, 4, 3, true))
	take(now, 8, 4)
	require.False(t, b.probed(now, 4, 8, false))

	// A probe taken whole raises the limit to its size; the next follows at
	// once, up to the batch size, where the limit is gone.
	take(now, 8, 4)
	require.True(t, b.probed(now, 4, 6, true))
	require.Equal(t, 6, b.current())
	take(now, 12, 6)
	require.True(t, b.probed(now, 6, 12, true))
	take(now, 16, 12)
	require.True(t, b.probed(now, 12, 16, true))
	take(now, 16, 0)
	require.Equal(t, 16, b.current())

	// The wait starts again from the first after the limit is gone.
	require.Equal(t, 8, b.tooLarge(now, 16, false))
	take(now.Add(time.Minute-time.Second), 8, 0)
	take(now.Add(time.Minute), 16, 8)

	// A probe that ends after another batch lowered the limit raises
	// nothing.
	require.Equal(t, 4, b.tooLarge(now.Add(time.Minute), 8, false))
	require.False(t, b.probed(now.Add(time.Minute), 8, 16, true))
	require.Equal(t, 4, b.current())
}

// clock is a clock a test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// request is a request the receiver answered: how many events it held
// (1 in binary mode), and the status.
type request struct{ events, code int }

// requestLog records the requests an answer function answers.
type requestLog struct {
	mu   sync.Mutex
	reqs []request
}

func (rl *requestLog) wrap(f func(n int, body string) int) func(int, string) int {
	return func(n int, body string) int {
		code := f(n, body)
		rl.mu.Lock()
		rl.reqs = append(rl.reqs, request{len(batchIDs(body)), code})
		rl.mu.Unlock()
		return code
	}
}

// take returns the requests recorded since the last call.
func (rl *requestLog) take() []request {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	out := rl.reqs
	rl.reqs = nil
	return out
}

// tooLargeOver answers 413 to a batch of more than most events.
func tooLargeOver(most *atomic.Int64) func(int, string) int {
	return func(_ int, body string) int {
		if int64(len(batchIDs(body))) > most.Load() {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusOK
	}
}

// settle waits until the Logger's workers hold no event and the queue is
// empty: what they made of the last answers (the batch limit, the next
// probe's time) is done.
func settle(t *testing.T, l *Logger) {
	t.Helper()
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.inFlight == 0 && len(l.queue) == 0
	}, 20*time.Second, time.Millisecond)
}

// send offers events as offerBehind does, and waits until the receiver
// has the events it takes of them and the workers are done with them.
func send(t *testing.T, r *receiver, l *Logger, from, to, accepted int) {
	t.Helper()
	offerBehind(t, r, l, events(from, to))
	r.waitFor(t, accepted)
	settle(t, l)
}

func requireBatchMax(t *testing.T, reg prometheus.Gatherer, n int) {
	t.Helper()
	want := fmt.Sprintf(`# HELP modelmon_payload_log_batch_max_events The most payload events a batch takes now: --payload-log.batch-size, or fewer for a while after the receiver refused a batch as too large (413).
# TYPE modelmon_payload_log_batch_max_events gauge
modelmon_payload_log_batch_max_events %d
`, n)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "modelmon_payload_log_batch_max_events"))
}

// A receiver whose limit was lowered for a while gets batches as large as
// --payload-log.batch-size again once it takes them: a minute after the
// 413, a batch twice the limit is tried, taken whole, and the next twice
// that, up to the batch size.
func TestBatchLimitRecovers(t *testing.T) {
	r := newReceiver(t)
	var most atomic.Int64
	most.Store(3)
	var reqs requestLog
	r.answer(reqs.wrap(tooLargeOver(&most)))
	c := &clock{t: t0}
	l, reg := newLogger(t, Options{URL: r.URL, Workers: 1, BatchSize: 8, Now: c.Now})
	requireBatchMax(t, reg, 8)

	send(t, r, l, 0, 13, 13)
	require.Equal(t, []request{
		{1, 200},
		{8, 413}, {4, 413}, {2, 200}, {2, 200}, {4, 413}, {2, 200}, {2, 200},
		{2, 200}, {2, 200},
	}, reqs.take())
	requireBatchMax(t, reg, 2)

	// The receiver takes more now; the limit holds for a minute.
	most.Store(100)
	c.Add(time.Minute - time.Second)
	send(t, r, l, 13, 18, 18)
	require.Equal(t, []request{{1, 200}, {2, 200}, {2, 200}}, reqs.take())
	requireBatchMax(t, reg, 2)

	// Then a batch of 4 probes (the first event alone, the queue empty
	// behind it, is no probe), taken whole; one of 8 at once, and the
	// limit is gone.
	c.Add(time.Second)
	send(t, r, l, 18, 40, 40)
	require.Equal(t, []request{{1, 200}, {4, 200}, {8, 200}, {8, 200}, {1, 200}}, reqs.take())
	requireBatchMax(t, reg, 8)

	closeNow(t, l, time.Second)
	readmetest.Load(t).RequireGathered(t, reg)
	require.Equal(t, ids(0, 40), r.ids())
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
}

// A receiver whose limit lasts sees a probe a minute after the first 413,
// then 2 minutes after that, then every 4 (MaxProbeWait here); each costs
// one refused request, and the limit stays.
func TestBatchLimitProbeBackoff(t *testing.T) {
	r := newReceiver(t)
	var most atomic.Int64
	most.Store(3)
	var reqs requestLog
	r.answer(reqs.wrap(tooLargeOver(&most)))
	c := &clock{t: t0}
	l, reg := newLogger(t, Options{URL: r.URL, Workers: 1, BatchSize: 8, Now: c.Now, MaxProbeWait: 4 * time.Minute})

	send(t, r, l, 0, 13, 13)
	require.Len(t, reqs.take(), 10)
	requireBatchMax(t, reg, 2)

	next := 0
	burst := func(advance time.Duration) []request {
		t.Helper()
		c.Add(advance)
		send(t, r, l, 13+5*next, 18+5*next, 18+5*next)
		next++
		return reqs.take()
	}
	noProbe := []request{{1, 200}, {2, 200}, {2, 200}}
	probe := []request{{1, 200}, {4, 413}, {2, 200}, {2, 200}}
	for i, step := range []struct {
		advance time.Duration
		want    []request
	}{
		{time.Minute - time.Second, noProbe},
		{time.Second, probe}, // t0+1m
		{2*time.Minute - time.Second, noProbe},
		{time.Second, probe}, // t0+3m
		{4*time.Minute - time.Second, noProbe},
		{time.Second, probe}, // t0+7m
		{4*time.Minute - time.Second, noProbe},
		{time.Second, probe}, // t0+11m: the wait stays at its most
	} {
		require.Equal(t, step.want, burst(step.advance), "step %d", i)
		requireBatchMax(t, reg, 2)
	}
	closeNow(t, l, time.Second)
	require.Equal(t, ids(0, 13+5*next), r.ids())
	require.Equal(t, 0.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
	require.Equal(t, float64(3+4), testutil.ToFloat64(l.metrics.failures.WithLabelValues("http_4xx")))
}

// A 413 to a batch of small events because one of them is too large alone
// does not lower the limit: the split shows the others go in batches as
// large, and only that event is dropped. A receiver that also has a limit
// lowers it with the next batch too large for it.
func TestBatchTooLargeOneEvent(t *testing.T) {
	for _, c := range []struct {
		name  string
		most  int
		want  []request
		limit int
	}{
		{"no other limit", 100, []request{
			{1, 200},
			{8, 413}, {4, 200}, {4, 413}, {2, 413}, {1, 413}, {1, 200}, {2, 200},
			{8, 200},
		}, 8},
		{"a limit of 4", 4, []request{
			{1, 200},
			{8, 413}, {4, 200}, {4, 413}, {2, 413}, {1, 413}, {1, 200}, {2, 200},
			{8, 413}, {4, 200}, {4, 200},
		}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t)
			var reqs requestLog
			r.answer(reqs.wrap(func(_ int, body string) int {
				got := batchIDs(body)
				if len(got) > c.most || strings.Contains(body, `"id-5"`) {
					return http.StatusRequestEntityTooLarge
				}
				return http.StatusOK
			}))
			l, reg := newLogger(t, Options{URL: r.URL, Workers: 1, BatchSize: 8})
			send(t, r, l, 0, 17, 16)
			require.Equal(t, c.want, reqs.take())
			requireBatchMax(t, reg, c.limit)
			closeNow(t, l, time.Second)
			var want []string
			for _, id := range ids(0, 17) {
				if id != "id-5" {
					want = append(want, id)
				}
			}
			require.Equal(t, want, r.ids())
			require.Equal(t, 1.0, testutil.ToFloat64(l.metrics.dropped.WithLabelValues(DropRejected)))
		})
	}
}
