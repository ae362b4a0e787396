package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// call is one Send the fake sender saw.
type call struct {
	key      string
	at       time.Time
	attempts int // the message's count, this attempt included
}

// fakeSender answers each key's attempts with the queued errors, then nil.
// A key listed in block waits for its channel before answering.
type fakeSender struct {
	mu      sync.Mutex
	calls   []call
	replies map[string][]error
	block   map[string]chan struct{}
}

func newFakeSender() *fakeSender {
	return &fakeSender{replies: map[string][]error{}, block: map[string]chan struct{}{}}
}

func (f *fakeSender) Send(ctx context.Context, m *Message) error {
	f.mu.Lock()
	f.calls = append(f.calls, call{m.Key, time.Now(), m.Attempts})
	ch := f.block[m.Key]
	var err error
	if rs := f.replies[m.Key]; len(rs) > 0 {
		err, f.replies[m.Key] = rs[0], rs[1:]
	}
	f.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (f *fakeSender) fail(key string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[key] = append(f.replies[key], errs...)
}

func (f *fakeSender) got() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeSender) keys() []string {
	var ks []string
	for _, c := range f.got() {
		ks = append(ks, c.key)
	}
	return ks
}

// run opens an outbox at path with s as "webhook" sender and runs it until
// the test ends.
func run(t *testing.T, path string, s Sender, mod func(*Options)) *Outbox {
	ob, _ := runStoppable(t, path, s, mod)
	return ob
}

// runStoppable is run, and returns a stop that cancels Run's context and
// waits for Run to return.
func runStoppable(t *testing.T, path string, s Sender, mod func(*Options)) (*Outbox, func()) {
	t.Helper()
	o := Options{Path: path, Senders: map[string]Sender{"webhook": s}}
	if mod != nil {
		mod(&o)
	}
	ob, err := Open(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		ob.Run(ctx)
		close(done)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		stop()
		require.NoError(t, ob.Close())
	})
	return ob, stop
}

func msg(key string) *Message {
	return &Message{Key: key, Receiver: "team", Integration: "webhook", Payload: []byte(`{"n":"` + key + `"}`)}
}

func TestBackoffBounds(t *testing.T) {
	for _, tc := range []struct {
		attempts int
		want     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {9, 256 * time.Second}, {10, 5 * time.Minute}, {1000, 5 * time.Minute}} {
		require.Equal(t, time.Duration(0), Backoff(tc.attempts, time.Second, 5*time.Minute, 0), "attempts %d", tc.attempts)
		require.Equal(t, tc.want/2, Backoff(tc.attempts, time.Second, 5*time.Minute, 0.5), "attempts %d", tc.attempts)
		got := Backoff(tc.attempts, time.Second, 5*time.Minute, 0.999999)
		require.Less(t, got, tc.want, "attempts %d", tc.attempts)
		require.Greater(t, got, tc.want*99/100, "attempts %d", tc.attempts)
	}

	// A running outbox waits within the bounds between retries.
	synctest.Test(t, func(t *testing.T) {
		s := newFakeSender()
		fails := make([]error, 12)
		for i := range fails {
			fails[i] = errors.New("boom")
		}
		s.fail("a", fails...)
		ob := run(t, filepath.Join(t.TempDir(), "o.db"), s, nil)
		require.NoError(t, ob.Enqueue(msg("a")))
		time.Sleep(time.Hour)
		synctest.Wait()
		calls := s.got()
		require.Len(t, calls, 13)
		for i := 1; i < len(calls); i++ {
			bound := min(time.Second<<(i-1), 5*time.Minute)
			require.LessOrEqual(t, calls[i].at.Sub(calls[i-1].at), bound, "retry %d", i)
		}
		require.Empty(t, ob.DeadLetters())
		require.Equal(t, 0, ob.Stats().Pending)
	})
}

func TestRetryAfterPermanentAndMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeSender()
		s.fail("later", RetryAfter(42*time.Second, &StatusError{Code: 429}))
		s.fail("bad", Permanent(&StatusError{Code: 400, Body: "bad payload"}))
		gone := make([]error, 10000)
		for i := range gone {
			gone[i] = fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
		}
		s.fail("gone", gone...)
		reg := prometheus.NewRegistry()
		var mu sync.Mutex
		done := map[string]error{}
		ob := run(t, filepath.Join(t.TempDir(), "o.db"), s, func(o *Options) {
			o.Registerer = reg
			o.MaxAge = time.Hour
			o.OnDone = func(m Message, err error) {
				mu.Lock()
				defer mu.Unlock()
				done[m.Key] = err
			}
		})
		finished := func() map[string]error {
			mu.Lock()
			defer mu.Unlock()
			return maps.Clone(done)
		}
		start := time.Now()
		// Different receivers: lanes do not wait for each other.
		m1, m2, m3 := msg("later"), msg("bad"), msg("gone")
		m2.Receiver, m3.Receiver = "b", "c"
		require.NoError(t, ob.Enqueue(m1, m2, m3))
		synctest.Wait()

		require.Len(t, ob.DeadLetters(), 1, "a permanent failure is dead-lettered at once")
		dl := ob.DeadLetters()[0]
		require.Equal(t, "bad", dl.Key)
		require.Equal(t, 1, dl.Attempts)
		require.Equal(t, "unexpected status code 400: bad payload", dl.LastError)
		require.JSONEq(t, `{"n":"bad"}`, string(dl.Payload))

		time.Sleep(41 * time.Second)
		synctest.Wait()
		require.NotContains(t, finished(), "later")
		time.Sleep(time.Second)
		synctest.Wait()
		require.Contains(t, finished(), "later")
		require.NoError(t, finished()["later"])
		var laterCalls []time.Time
		for _, c := range s.got() {
			if c.key == "later" {
				laterCalls = append(laterCalls, c.at)
			}
		}
		require.Equal(t, []time.Time{start, start.Add(42 * time.Second)}, laterCalls, "Retry-After is honoured exactly")

		// The first attempt after MaxAge gives up; it comes at most
		// MaxBackoff after the previous one.
		time.Sleep(time.Hour + 5*time.Minute)
		synctest.Wait()
		require.Contains(t, finished(), "gone")
		require.ErrorContains(t, finished()["gone"], "gave up after 1h0m0s: dial: dial: connection refused")
		require.Len(t, ob.DeadLetters(), 2)

		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.failures.WithLabelValues("team", "webhook", ReasonRateLimited)))
		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.failures.WithLabelValues("b", "webhook", ReasonHTTP4xx)))
		require.Greater(t, testutil.ToFloat64(ob.metrics.failures.WithLabelValues("c", "webhook", ReasonConnection)), 10.0)
		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("c", "webhook", "0", resultDeadLettered)))
		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("team", "webhook", "0", resultDelivered)))
		require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP alertd_outbox_dead_letters The number of dead letters, by entry of the integration: messages given up on, waiting to be redriven.
# TYPE alertd_outbox_dead_letters gauge
alertd_outbox_dead_letters{entry="0",integration="webhook",receiver="b"} 1
alertd_outbox_dead_letters{entry="0",integration="webhook",receiver="c"} 1
alertd_outbox_dead_letters{entry="0",integration="webhook",receiver="team"} 0
# HELP alertd_outbox_queue_depth The number of messages waiting in the outbox for delivery, by entry of the integration.
# TYPE alertd_outbox_queue_depth gauge
alertd_outbox_queue_depth{entry="0",integration="webhook",receiver="b"} 0
alertd_outbox_queue_depth{entry="0",integration="webhook",receiver="c"} 0
alertd_outbox_queue_depth{entry="0",integration="webhook",receiver="team"} 0
`), "alertd_outbox_dead_letters", "alertd_outbox_queue_depth"))

		// Redrive: back to delivery with a fresh MaxAge clock.
		require.ErrorIs(t, ob.Redrive("nope"), ErrUnknownKey)
		s.mu.Lock()
		s.replies["gone"] = nil
		s.mu.Unlock()
		require.NoError(t, ob.Redrive("gone"))
		synctest.Wait()
		require.NoError(t, finished()["gone"])
		require.Len(t, ob.DeadLetters(), 1)
	})
}

func TestReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&StatusError{Code: 503}, ReasonHTTP5xx},
		{Permanent(&StatusError{Code: 404}), ReasonHTTP4xx},
		{&StatusError{Code: 429}, ReasonRateLimited},
		{RetryAfter(time.Second, errors.New("slow down")), ReasonRateLimited},
		{fmt.Errorf("post: %w", context.DeadlineExceeded), ReasonTimeout},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ReasonConnection},
		{errors.New("what"), ReasonOther},
	} {
		require.Equal(t, tc.want, Reason(tc.err), "%v", tc.err)
	}
}

// Messages of a lane go one at a time in enqueue order; other lanes do not
// wait for a blocked one.
func TestOrdering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeSender()
		release := make(chan struct{})
		s.block["a1"] = release
		s.fail("a2", errors.New("once"))
		ob := run(t, filepath.Join(t.TempDir(), "o.db"), s, nil)
		var ms []*Message
		for _, k := range []string{"a1", "a2", "a3"} {
			ms = append(ms, msg(k))
		}
		b1 := msg("b1")
		b1.Receiver = "other"
		require.NoError(t, ob.Enqueue(append(ms, b1)...))
		synctest.Wait()
		require.ElementsMatch(t, []string{"a1", "b1"}, s.keys(), "a2 waits for a1; b1 does not")
		close(release)
		time.Sleep(time.Minute)
		synctest.Wait()
		var a []string
		for _, k := range s.keys() {
			if k != "b1" {
				a = append(a, k)
			}
		}
		require.Equal(t, []string{"a1", "a2", "a2", "a3"}, a, "a3 waits for a2's retry")
	})
}

// A key is delivered once: again while held, after delivery, and after a
// restart; dead letters and state survive the restart too.
func TestIdempotencyAndReopen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("dead", Permanent(errors.New("no")))

		// Stored without running: nothing is sent, everything is kept.
		ob, err := Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(msg("k1"), msg("k2"), msg("k1")))
		require.NoError(t, ob.Enqueue(msg("k2")))
		require.Equal(t, 2, ob.Stats().Pending)
		require.NoError(t, ob.SetState("slack", "thread", []byte("1712.0001")))
		require.NoError(t, ob.Close())
		require.NoError(t, ob.Close())
		require.Error(t, ob.Enqueue(msg("k3")))

		ctx, cancel := context.WithCancel(context.Background())
		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		st := ob.Stats()
		require.Equal(t, 2, st.Pending)
		require.Equal(t, []LaneStats{{Receiver: "team", Integration: "webhook", Pending: 2, Oldest: st.Oldest}}, st.Lanes)
		v, ok := ob.State("slack", "thread")
		require.True(t, ok)
		require.Equal(t, "1712.0001", string(v))
		go ob.Run(ctx)
		require.NoError(t, ob.Enqueue(msg("k1"), msg("dead")))
		synctest.Wait()
		require.Equal(t, []string{"k1", "k2", "dead"}, s.keys())
		require.NoError(t, ob.Enqueue(msg("k1"), msg("k2"), msg("dead")))
		synctest.Wait()
		require.Len(t, s.keys(), 3, "delivered and dead keys are not enqueued again")
		cancel()
		synctest.Wait()
		require.NoError(t, ob.Close())

		// After a restart, still remembered; after the retention, forgotten.
		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}, Retention: time.Hour})
		require.NoError(t, err)
		require.Len(t, ob.DeadLetters(), 1)
		require.NoError(t, ob.Enqueue(msg("k1")))
		require.Equal(t, 0, ob.Stats().Pending)
		require.NoError(t, ob.Close())
		time.Sleep(2 * time.Hour)
		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}, Retention: time.Hour})
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(msg("k1")))
		require.Equal(t, 1, ob.Stats().Pending)
		_, ok = ob.State("slack", "thread")
		require.False(t, ok, "state is forgotten after the retention")
		require.Len(t, ob.DeadLetters(), 1, "dead letters stay until redriven")
		require.NoError(t, ob.Close())
	})
}

// Add says which messages it dropped and what became of the first of
// their key, also after a restart: a caller that enqueues again after a
// crash lost its own record of the first enqueue (alertd's actions) can
// tell the message was not stored again.
func TestAddReportsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("dead", Permanent(errors.New("no")))
		s.fail("retried", errors.New("502"))
		ob, stop := runStoppable(t, path, s, func(o *Options) { o.InitialBackoff, o.MaxBackoff = time.Hour, time.Hour })
		enqueued := time.Now()
		created := enqueued.Add(-time.Minute)
		retried := msg("retried")
		retried.Created = created
		dropped, err := ob.Add(msg("done"), msg("dead"), retried)
		require.NoError(t, err)
		require.Empty(t, dropped)
		synctest.Wait()
		time.Sleep(time.Second)
		delivered := enqueued

		check := func(ob *Outbox) {
			t.Helper()
			dropped, err := ob.Add(msg("done"), msg("dead"), msg("retried"), msg("new"), msg("new"))
			require.NoError(t, err)
			requireDropped(t, []Dropped{
				{Key: "done", State: HeldDelivered, Delivered: delivered},
				{Key: "dead", State: HeldDead, Created: enqueued, Attempts: 1, LastError: "no"},
				{Key: "retried", State: HeldPending, Created: created, Attempts: 1, LastError: "502"},
				{Key: "new", State: HeldPending, Created: time.Now()},
			}, dropped)
		}
		check(ob)
		require.Equal(t, []string{"done", "dead", "retried"}, s.keys(), "nothing dropped is sent")
		stop()
		require.NoError(t, ob.Close())

		ob = run(t, path, s, func(o *Options) { o.InitialBackoff, o.MaxBackoff = time.Hour, time.Hour })
		dropped, err = ob.Add(msg("new"))
		require.NoError(t, err)
		requireDropped(t, []Dropped{{Key: "new", State: HeldPending, Created: time.Now()}}, dropped)
	})
}

// The duplicates Add drops are counted by what became of the message held
// of their key, and Held tells what Add would report of a key without
// storing anything: alertd looks before it decides on an action again.
func TestHeldAndDuplicatesCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("dead", Permanent(errors.New("no")))
		s.fail("retried", errors.New("502"))
		reg := prometheus.NewRegistry()
		ob, stop := runStoppable(t, path, s, func(o *Options) {
			o.InitialBackoff, o.MaxBackoff, o.Registerer = time.Hour, time.Hour, reg
		})
		ob.InitializeFor("team", "webhook", 1)
		ob.InitializeFor("other", "webhook", 1)
		_, err := ob.Add(msg("done"), msg("dead"), msg("retried"))
		require.NoError(t, err)
		synctest.Wait()

		for _, key := range []string{"done", "dead", "retried", "new"} {
			_, ok, err := ob.Held(key)
			require.NoError(t, err)
			require.Equal(t, key != "new", ok, key)
		}
		require.Equal(t, 1, ob.Stats().Pending, "Held stores nothing: only the retried message waits")
		dropped, err := ob.Add(msg("done"), msg("dead"), msg("retried"), msg("new"), msg("new"), msg("done"))
		require.NoError(t, err)
		require.Len(t, dropped, 5)
		for _, d := range dropped {
			h, ok, err := ob.Held(d.Key)
			require.NoError(t, err)
			require.True(t, ok)
			requireDropped(t, []Dropped{d}, []Dropped{h})
		}
		require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP alertd_outbox_duplicates_total The total number of messages not stored because the outbox held their idempotency key already, by what became of the message held: pending, delivered (within the retention), dead_lettered or discarded (a dead letter discarded within the retention).
# TYPE alertd_outbox_duplicates_total counter
alertd_outbox_duplicates_total{integration="webhook",receiver="other",state="dead_lettered"} 0
alertd_outbox_duplicates_total{integration="webhook",receiver="other",state="delivered"} 0
alertd_outbox_duplicates_total{integration="webhook",receiver="other",state="discarded"} 0
alertd_outbox_duplicates_total{integration="webhook",receiver="other",state="pending"} 0
alertd_outbox_duplicates_total{integration="webhook",receiver="team",state="dead_lettered"} 1
alertd_outbox_duplicates_total{integration="webhook",receiver="team",state="delivered"} 2
alertd_outbox_duplicates_total{integration="webhook",receiver="team",state="discarded"} 0
alertd_outbox_duplicates_total{integration="webhook",receiver="team",state="pending"} 2
`), "alertd_outbox_duplicates_total"))

		// A failed Add counts nothing; a closed outbox answers no lookup.
		stop()
		require.NoError(t, ob.Close())
		_, err = ob.Add(msg("done"))
		require.Error(t, err)
		_, _, err = ob.Held("done")
		require.Error(t, err)
		require.Equal(t, 2.0, testutil.ToFloat64(ob.metrics.duplicates.WithLabelValues("team", "webhook", HeldDelivered)))
	})
}

// requireDropped compares what Add dropped, times by their instant.
func requireDropped(t *testing.T, want, got []Dropped) {
	t.Helper()
	norm := func(ds []Dropped) []Dropped {
		out := slices.Clone(ds)
		for i := range out {
			out[i].Created, out[i].Delivered, out[i].Discarded = out[i].Created.UTC().Round(0), out[i].Delivered.UTC().Round(0), out[i].Discarded.UTC().Round(0)
		}
		return out
	}
	require.Equal(t, norm(want), norm(got))
}

// On a stop, attempts in flight get the shutdown grace to finish and be
// recorded, so a graceful restart does not send them twice; one still going
// when it runs out is cancelled and stays pending; no new attempt starts.
func TestShutdownGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		answer := make(chan struct{})
		s.block["slow"] = answer
		s.block["stuck"] = make(chan struct{}) // never answers
		ob, stop := runStoppable(t, path, s, func(o *Options) { o.ShutdownGrace = 10 * time.Second })
		stuck := msg("stuck")
		stuck.Receiver = "other" // a lane of its own
		require.NoError(t, ob.Enqueue(msg("slow"), msg("next"), stuck))
		synctest.Wait()
		require.ElementsMatch(t, []string{"slow", "stuck"}, s.keys())

		began := time.Now()
		go func() {
			time.Sleep(3 * time.Second)
			close(answer) // slow answers within the grace
		}()
		stop()
		require.Equal(t, 10*time.Second, time.Since(began), "Run waits the grace for stuck, no longer")
		require.ElementsMatch(t, []string{"slow", "stuck"}, s.keys(), "next is not attempted after the stop")
		require.NoError(t, ob.Close())

		// After the restart: slow was recorded as delivered; stuck's
		// attempt did not count, and it goes again with next.
		s2 := newFakeSender()
		ob = run(t, path, s2, nil)
		synctest.Wait()
		require.ElementsMatch(t, []string{"next", "stuck"}, s2.keys())
		for _, c := range s2.got() {
			require.Equal(t, 1, c.attempts, "%s: the cancelled attempt was counted", c.key)
		}
		require.NoError(t, ob.Enqueue(msg("slow")))
		require.Zero(t, ob.Stats().Pending, "slow was delivered before the stop")
	})
}

// A pending message's retry state (attempts, next attempt) survives a
// restart, so a restart does not hammer a receiver that asked to wait.
func TestRetryStateSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("k", RetryAfter(time.Hour, errors.New("429")))
		ctx, cancel := context.WithCancel(context.Background())
		ob, err := Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		go ob.Run(ctx)
		require.NoError(t, ob.Enqueue(msg("k")))
		synctest.Wait()
		cancel()
		synctest.Wait()
		require.NoError(t, ob.Close())

		ob = run(t, path, s, nil)
		synctest.Wait()
		require.Len(t, s.got(), 1)
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Len(t, s.got(), 2)
		require.Equal(t, 0, ob.Stats().Pending)
	})
}

func TestEnqueueErrors(t *testing.T) {
	ob, err := Open(Options{Senders: map[string]Sender{"webhook": newFakeSender()}})
	require.NoError(t, err)
	defer ob.Close()
	require.EqualError(t, ob.Enqueue(&Message{Integration: "webhook"}), "outbox: a message needs an idempotency key")
	require.EqualError(t, ob.Enqueue(&Message{Key: "k", Integration: "fax"}), `outbox: no sender for integration "fax"`)
	require.EqualError(t, ob.Enqueue(&Message{Key: "k", Integration: "webhook", Entry: -1}), "outbox: negative entry -1")
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// entryMsg is msg for the entry-th webhook of receiver team, with the
// entry in its payload as alertd's notifications have it.
func entryMsg(key string, entry int) *Message {
	m := msg(key)
	m.Entry = entry
	m.Payload = fmt.Appendf(nil, `{"index":%d,"n":%q}`, entry, key)
	return m
}

// payloadEntry is an Options.EntryOf reading entryMsg's payload.
func payloadEntry(m Message) int {
	var p struct {
		Index int `json:"index"`
	}
	_ = json.Unmarshal(m.Payload, &p)
	return p.Index
}

// keysOf returns the keys s was called with that are in want's set, in
// call order.
func keysOf(s *fakeSender, want ...string) []string {
	var out []string
	for _, k := range s.keys() {
		if slices.Contains(want, k) {
			out = append(out, k)
		}
	}
	return out
}

// Each entry of a receiver's integration (two webhooks) is a lane: the
// second webhook gets its messages while the first is retried, and the
// first gets its own in order once it is back. The queue, its age, the
// dead letters and the attempts by result are by entry; InitializeFor
// creates them at 0 for each configured entry, and no more.
func TestEntriesAreLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeSender()
		down := &StatusError{Code: 503, Body: "down"}
		s.fail("t1", down, down, down)
		release := make(chan struct{})
		s.block["a1"] = release
		reg := prometheus.NewRegistry()
		ob := run(t, filepath.Join(t.TempDir(), "o.db"), s, func(o *Options) { o.Registerer = reg })
		ob.InitializeFor("team", "webhook", 3)
		ob.InitializeFor("pager", "pagerduty", 1)
		require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP alertd_outbox_deliveries_total The total number of delivery attempts, by entry of the integration and result: delivered, retried (failed, tried again later) or dead_lettered.
# TYPE alertd_outbox_deliveries_total counter
alertd_outbox_deliveries_total{entry="0",integration="pagerduty",receiver="pager",result="dead_lettered"} 0
alertd_outbox_deliveries_total{entry="0",integration="pagerduty",receiver="pager",result="delivered"} 0
alertd_outbox_deliveries_total{entry="0",integration="pagerduty",receiver="pager",result="retried"} 0
alertd_outbox_deliveries_total{entry="0",integration="webhook",receiver="team",result="dead_lettered"} 0
alertd_outbox_deliveries_total{entry="0",integration="webhook",receiver="team",result="delivered"} 0
alertd_outbox_deliveries_total{entry="0",integration="webhook",receiver="team",result="retried"} 0
alertd_outbox_deliveries_total{entry="1",integration="webhook",receiver="team",result="dead_lettered"} 0
alertd_outbox_deliveries_total{entry="1",integration="webhook",receiver="team",result="delivered"} 0
alertd_outbox_deliveries_total{entry="1",integration="webhook",receiver="team",result="retried"} 0
alertd_outbox_deliveries_total{entry="2",integration="webhook",receiver="team",result="dead_lettered"} 0
alertd_outbox_deliveries_total{entry="2",integration="webhook",receiver="team",result="delivered"} 0
alertd_outbox_deliveries_total{entry="2",integration="webhook",receiver="team",result="retried"} 0
# HELP alertd_outbox_dead_letters The number of dead letters, by entry of the integration: messages given up on, waiting to be redriven.
# TYPE alertd_outbox_dead_letters gauge
alertd_outbox_dead_letters{entry="0",integration="pagerduty",receiver="pager"} 0
alertd_outbox_dead_letters{entry="0",integration="webhook",receiver="team"} 0
alertd_outbox_dead_letters{entry="1",integration="webhook",receiver="team"} 0
alertd_outbox_dead_letters{entry="2",integration="webhook",receiver="team"} 0
`), "alertd_outbox_deliveries_total", "alertd_outbox_dead_letters"), "each configured entry, at 0")
		require.NoError(t, ob.Enqueue(entryMsg("t1", 0), entryMsg("a1", 1), entryMsg("t2", 0), entryMsg("a2", 1)))
		synctest.Wait()
		require.ElementsMatch(t, []string{"t1", "a1"}, s.keys(), "each entry's head goes at once; t2 and a2 wait behind theirs")

		st := ob.Stats()
		require.Equal(t, 4, st.Pending)
		require.Len(t, st.Lanes, 2)
		require.Equal(t, LaneStats{Receiver: "team", Integration: "webhook", Entry: 0, Pending: 2, Oldest: st.Oldest,
			LastError: "unexpected status code 503: down"}, st.Lanes[0])
		require.Equal(t, LaneStats{Receiver: "team", Integration: "webhook", Entry: 1, Pending: 2, Oldest: st.Oldest}, st.Lanes[1])
		require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP alertd_outbox_queue_depth The number of messages waiting in the outbox for delivery, by entry of the integration.
# TYPE alertd_outbox_queue_depth gauge
alertd_outbox_queue_depth{entry="0",integration="pagerduty",receiver="pager"} 0
alertd_outbox_queue_depth{entry="0",integration="webhook",receiver="team"} 2
alertd_outbox_queue_depth{entry="1",integration="webhook",receiver="team"} 2
alertd_outbox_queue_depth{entry="2",integration="webhook",receiver="team"} 0
`), "alertd_outbox_queue_depth"), "by entry")

		close(release)
		synctest.Wait()
		require.Equal(t, []string{"a1", "a2"}, keysOf(s, "a1", "a2"), "entry 1 is done while entry 0 retries")
		require.Equal(t, []string{"t1"}, keysOf(s, "t1", "t2"))

		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, []string{"t1", "t1", "t1", "t1", "t2"}, keysOf(s, "t1", "t2"), "entry 0 in order once it is back")
		require.Zero(t, ob.Stats().Pending)
		require.Equal(t, 2.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("team", "webhook", "0", resultDelivered)))
		require.Equal(t, 3.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("team", "webhook", "0", resultRetried)))
		require.Equal(t, 2.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("team", "webhook", "1", resultDelivered)))
		require.Zero(t, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("team", "webhook", "1", resultRetried)), "entry 1 never failed")
	})
}

// stripEntry rewrites the pending messages and dead letters of the closed
// outbox file at path as they were stored before messages had an entry.
func stripEntry(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPending, bucketDead} {
			b := tx.Bucket(name)
			old := map[string][]byte{}
			require.NoError(t, b.ForEach(func(k, v []byte) error {
				old[string(k)] = bytes.Clone(v)
				return nil
			}))
			for k, v := range old {
				var fields map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(v, &fields))
				require.Contains(t, fields, "entry")
				delete(fields, "entry")
				v, err := json.Marshal(fields)
				require.NoError(t, err)
				require.NoError(t, b.Put([]byte(k), v))
			}
		}
		return nil
	}))
}

// Messages stored before messages had an entry (all entries of an
// integration in one lane) still deliver: EntryOf puts each in its
// entry's lane, ahead of that entry's newer messages, and a redriven dead
// letter goes to its entry too. Without EntryOf they are entry 0.
func TestStoredWithoutEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "o.db")
		s := newFakeSender()
		s.fail("dead1", Permanent(errors.New("no")))
		ob, stop := runStoppable(t, path, s, nil)
		require.NoError(t, ob.Enqueue(entryMsg("dead1", 1)))
		synctest.Wait()
		require.Len(t, ob.DeadLetters(), 1)
		stop()
		require.NoError(t, ob.Close())
		ob, err := Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(entryMsg("old0", 0), entryMsg("old1", 1), entryMsg("old1b", 1)))
		require.NoError(t, ob.Close())
		stripEntry(t, path)

		// Without EntryOf: one lane, entry 0, as before.
		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		st := ob.Stats()
		require.Len(t, st.Lanes, 1)
		require.Equal(t, 0, st.Lanes[0].Entry)
		require.Equal(t, 3, st.Lanes[0].Pending)
		require.Equal(t, 1, st.Lanes[0].DeadLetters)
		require.NoError(t, ob.Close())

		s = newFakeSender()
		s.fail("old0", RetryAfter(time.Hour, errors.New("503")))
		ob = run(t, path, s, func(o *Options) { o.EntryOf = payloadEntry })
		require.NoError(t, ob.Enqueue(entryMsg("new1", 1), entryMsg("new0", 0)))
		synctest.Wait()
		require.Equal(t, []string{"old1", "old1b", "new1"}, keysOf(s, "old1", "old1b", "new1"), "entry 1 in order, old first, while entry 0 waits")
		require.Equal(t, []string{"old0"}, keysOf(s, "old0", "new0"))
		require.NoError(t, ob.Redrive("dead1"))
		synctest.Wait()
		require.Equal(t, []string{"dead1"}, keysOf(s, "dead1"), "the redriven dead letter goes to entry 1, not behind old0")

		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, []string{"old0", "old0", "new0"}, keysOf(s, "old0", "new0"))
		require.Zero(t, ob.Stats().Pending)
	})
}

// storedEntries returns the entry field of each pending message and dead
// letter in the closed outbox file at path, by key; nil for a record
// without one.
func storedEntries(t *testing.T, path string) map[string]*int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	out := map[string]*int{}
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPending, bucketDead} {
			require.NoError(t, tx.Bucket(name).ForEach(func(_, v []byte) error {
				var r struct {
					Key   string `json:"key"`
					Entry *int   `json:"entry"`
				}
				require.NoError(t, json.Unmarshal(v, &r))
				out[r.Key] = r.Entry
				return nil
			}))
		}
		return nil
	}))
	return out
}

// Records stored before messages had an entry are written back with the
// entry EntryOf gives them when the outbox is opened: the next open reads
// them as stored and asks EntryOf nothing, and an outbox opened without
// EntryOf finds their entries too. Opened without EntryOf, they stay as
// they were, for a later open with it.
func TestStoredWithoutEntryRewrittenOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("dead1", Permanent(errors.New("no")))
		ob, stop := runStoppable(t, path, s, nil)
		require.NoError(t, ob.Enqueue(entryMsg("dead1", 1)))
		synctest.Wait()
		require.Len(t, ob.DeadLetters(), 1)
		stop()
		require.NoError(t, ob.Close())
		ob, err := Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		require.NoError(t, ob.Enqueue(entryMsg("old0", 0), entryMsg("old1", 1)))
		require.NoError(t, ob.Close())
		stripEntry(t, path)

		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		require.NoError(t, ob.Close())
		require.Equal(t, map[string]*int{"dead1": nil, "old0": nil, "old1": nil}, storedEntries(t, path), "left as stored without EntryOf")

		var asked []string
		entryOf := func(m Message) int {
			asked = append(asked, m.Key)
			return payloadEntry(m)
		}
		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}, EntryOf: entryOf})
		require.NoError(t, err)
		require.NoError(t, ob.Close())
		require.ElementsMatch(t, []string{"dead1", "old0", "old1"}, asked)
		zero, one := 0, 1
		require.Equal(t, map[string]*int{"dead1": &one, "old0": &zero, "old1": &one}, storedEntries(t, path), "written back with their entries")

		asked = nil
		for _, o := range []Options{
			{Path: path, Senders: map[string]Sender{"webhook": s}, EntryOf: entryOf},
			{Path: path, Senders: map[string]Sender{"webhook": s}},
		} {
			ob, err = Open(o)
			require.NoError(t, err)
			st := ob.Stats()
			require.Len(t, st.Lanes, 2)
			require.Equal(t, LaneStats{Receiver: "team", Integration: "webhook", Entry: 0, Pending: 1, Oldest: st.Lanes[0].Oldest}, st.Lanes[0])
			require.Equal(t, LaneStats{Receiver: "team", Integration: "webhook", Entry: 1, Pending: 1, Oldest: st.Lanes[1].Oldest, DeadLetters: 1}, st.Lanes[1])
			require.NoError(t, ob.Close())
		}
		require.Empty(t, asked, "the second open reads the entries as stored")
	})
}

// A message whose write fails (the disk fills partway through the commit)
// is refused, and the outbox keeps what it held: bbolt commits whole or
// not at all, and flushes each commit to the disk before Enqueue returns
// (NoSync off). So a restart finds the messages enqueued before it.
func TestFailedEnqueueLeavesTheLast(t *testing.T) {
	statefiletest.WithFileLimit(t, func(limit func(int64)) {
		path := filepath.Join(t.TempDir(), "o.db")
		opts := Options{Path: path, Senders: map[string]Sender{"webhook": newFakeSender()}}
		ob, err := Open(opts)
		require.NoError(t, err)
		require.False(t, ob.db.NoSync, "each commit is flushed to the disk")
		require.NoError(t, ob.Enqueue(msg("k1")))
		fi, err := os.Stat(path)
		require.NoError(t, err)

		// Larger than the file: the commit must grow it.
		big := msg("big")
		big.Payload = fmt.Appendf(nil, `{"n":%q}`, strings.Repeat("x", 4*int(fi.Size())))
		limit(fi.Size())
		err = ob.Enqueue(big)
		limit(-1)
		require.ErrorContains(t, err, "file too large")
		require.NoError(t, ob.Enqueue(msg("k2")))
		require.NoError(t, ob.Close())

		ob, err = Open(opts)
		require.NoError(t, err)
		defer ob.Close()
		require.Equal(t, 2, ob.Stats().Pending, "k1 and k2, not the message that failed")
		require.NoError(t, ob.Enqueue(big))
		require.Equal(t, 3, ob.Stats().Pending)
	})
}

// lanesIn returns, by metric, the lanes (receiver/integration/entry, the
// entry empty for the metrics by receiver and integration alone) that
// reg's alertd_outbox_ series carry, with the last series' value.
func lanesIn(t *testing.T, reg *prometheus.Registry) map[string]map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "alertd_outbox_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			if out[mf.GetName()] == nil {
				out[mf.GetName()] = map[string]float64{}
			}
			out[mf.GetName()][ls["receiver"]+"/"+ls["integration"]+"/"+ls["entry"]] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

// requireLanes checks which lanes have series of each metric.
func requireLanes(t *testing.T, reg *prometheus.Registry, want map[string][]string, msg string) {
	t.Helper()
	got := map[string][]string{}
	for name, lanes := range lanesIn(t, reg) {
		got[name] = slices.Sorted(maps.Keys(lanes))
	}
	require.Equal(t, want, got, msg)
}

// Retain deletes the series of the lanes the configuration no longer has
// (a removed receiver, a receiver's second webhook), and of their receiver
// and integration once none of its lanes is left; a lane with a pending
// message keeps its series, its queue gauges showing the message, until it
// is delivered or dead-lettered. Its dead letter keeps its dead letters
// gauge. InitializeFor brings a lane back at 0.
func TestRetainDeletesRemovedLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeSender()
		down := &StatusError{Code: 503, Body: "down"}
		s.fail("b1", down, Permanent(errors.New("receiver not configured")))
		reg := prometheus.NewRegistry()
		ob := run(t, filepath.Join(t.TempDir(), "o.db"), s, func(o *Options) {
			o.Registerer = reg
			o.Senders["action"] = s
		})
		ob.InitializeFor("team", "webhook", 2)
		ob.InitializeFor("gone", "webhook", 1)
		ob.InitializeFor("busy", "webhook", 1)
		ob.InitializeFor("deploy", "action", 1)
		b1 := msg("b1")
		b1.Receiver = "busy"
		require.NoError(t, ob.Enqueue(b1))
		synctest.Wait()

		lanes := func(entry bool, ls ...string) []string {
			var out []string
			for _, l := range ls {
				if !entry {
					l = l[:strings.LastIndex(l, "/")+1]
				}
				out = append(out, l)
			}
			return out
		}
		all := func(byEntry, byIntegration, gauges, dead []string) map[string][]string {
			return map[string][]string{
				"alertd_outbox_messages_enqueued_total":      byIntegration,
				"alertd_outbox_duplicates_total":             byIntegration,
				"alertd_outbox_delivery_failures_total":      byIntegration,
				"alertd_outbox_delivery_duration_seconds":    byIntegration,
				"alertd_outbox_dead_letters_discarded_total": byIntegration,
				"alertd_outbox_deliveries_total":             byEntry,
				"alertd_outbox_queue_depth":                  gauges,
				"alertd_outbox_oldest_pending_age_seconds":   gauges,
				"alertd_outbox_dead_letters":                 dead,
			}
		}
		kept := []string{"busy/webhook/0", "deploy/action/0", "team/webhook/0"}
		before := append(slices.Clone(kept), "gone/webhook/0", "team/webhook/1")
		slices.Sort(before)
		requireLanes(t, reg, all(before, slices.Compact(lanes(false, before...)), before, before), "all configured")

		// The action's lanes are another caller's: kept.
		ob.Retain(func(receiver, integration string, entry int) bool {
			return integration != "webhook" || receiver == "team" && entry == 0
		})
		requireLanes(t, reg, all(kept, lanes(false, kept...), kept, kept),
			"gone's lane and team's second webhook gone; busy waits for its retry")
		require.Equal(t, 1.0, lanesIn(t, reg)["alertd_outbox_queue_depth"]["busy/webhook/0"], "busy's message shows")

		time.Sleep(time.Minute)
		synctest.Wait()
		require.Len(t, ob.DeadLetters(), 1)
		left := []string{"deploy/action/0", "team/webhook/0"}
		requireLanes(t, reg, all(left, lanes(false, left...), left, kept), "busy's message dead-lettered: only its dead letters show")
		require.Equal(t, 1.0, lanesIn(t, reg)["alertd_outbox_dead_letters"]["busy/webhook/0"])

		ob.InitializeFor("gone", "webhook", 1)
		back := []string{"deploy/action/0", "gone/webhook/0", "team/webhook/0"}
		requireLanes(t, reg, all(back, lanes(false, back...), back, []string{"busy/webhook/0", "deploy/action/0", "gone/webhook/0", "team/webhook/0"}),
			"gone is configured again")
	})
}

// Discard removes a dead letter for good: gone from DeadLetters and the
// gauge (Held says it was discarded), counted, and still gone after a
// restart on the same file; an unknown key, or one discarded already, is
// ErrUnknownKey.
func TestDiscard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("dead", Permanent(errors.New("no")))
		s.fail("kept", Permanent(errors.New("no")))
		reg := prometheus.NewRegistry()
		ob, stop := runStoppable(t, path, s, func(o *Options) { o.Registerer = reg })
		ob.InitializeFor("team", "webhook", 1)
		require.NoError(t, ob.Enqueue(msg("dead"), msg("kept")))
		synctest.Wait()
		require.Len(t, ob.DeadLetters(), 2)
		require.Equal(t, 2.0, lanesIn(t, reg)["alertd_outbox_dead_letters"]["team/webhook/0"])

		m, err := ob.Discard("dead")
		require.NoError(t, err)
		require.Equal(t, "dead", m.Key)
		require.JSONEq(t, `{"n":"dead"}`, string(m.Payload))
		require.Equal(t, []string{"kept"}, keysOfMessages(ob.DeadLetters()))
		h, held, err := ob.Held("dead")
		require.NoError(t, err)
		require.True(t, held)
		require.Equal(t, HeldDiscarded, h.State)
		got := lanesIn(t, reg)
		require.Equal(t, 1.0, got["alertd_outbox_dead_letters"]["team/webhook/0"])
		require.Equal(t, 1.0, got["alertd_outbox_dead_letters_discarded_total"]["team/webhook/"])
		for _, key := range []string{"dead", "nope"} {
			_, err = ob.Discard(key)
			require.ErrorIs(t, err, ErrUnknownKey, key)
		}
		require.ErrorIs(t, ob.Redrive("dead"), ErrUnknownKey)
		stop()
		require.NoError(t, ob.Close())

		ob, err = Open(Options{Path: path, Senders: map[string]Sender{"webhook": s}})
		require.NoError(t, err)
		require.Equal(t, []string{"kept"}, keysOfMessages(ob.DeadLetters()), "the discard is stored")
		require.Equal(t, 1, ob.Stats().DeadLetters)
		require.NoError(t, ob.Close())
	})
}

// A discarded dead letter's key is remembered as a delivered one is: a
// message with that key, enqueued again (its sender deciding on it anew
// after a crash lost its own record), is dropped and counted as a
// duplicate of a discarded key, Held says so, and a redrive finds no dead
// letter; also after a restart on the same file. It is forgotten the
// retention after the discard, not after the message was enqueued.
func TestDiscardedKeyRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		s.fail("dead", Permanent(errors.New("no")))
		reg := prometheus.NewRegistry()
		retention := func(o *Options) { o.Retention, o.Registerer = time.Hour, reg }
		ob, stop := runStoppable(t, path, s, retention)
		ob.InitializeFor("team", "webhook", 1)
		created := time.Now()
		require.NoError(t, ob.Enqueue(msg("dead")))
		synctest.Wait()
		require.Len(t, ob.DeadLetters(), 1)
		time.Sleep(50 * time.Minute)
		discarded := time.Now()
		_, err := ob.Discard("dead")
		require.NoError(t, err)

		want := []Dropped{{Key: "dead", State: HeldDiscarded, Created: created, Discarded: discarded, Attempts: 1, LastError: "no"}}
		check := func(ob *Outbox) {
			t.Helper()
			h, ok, err := ob.Held("dead")
			require.NoError(t, err)
			require.True(t, ok, "Held forgot the discarded key")
			requireDropped(t, want, []Dropped{h})
			dropped, err := ob.Add(msg("dead"))
			require.NoError(t, err)
			requireDropped(t, want, dropped)
			synctest.Wait()
			require.Equal(t, []string{"dead"}, s.keys(), "a discarded key is sent again")
			require.Zero(t, ob.Stats().Pending)
			require.Empty(t, ob.DeadLetters())
			require.ErrorIs(t, ob.Redrive("dead"), ErrUnknownKey)
		}
		check(ob)
		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.duplicates.WithLabelValues("team", "webhook", HeldDiscarded)))
		stop()
		require.NoError(t, ob.Close())

		// After a restart, 80 minutes after the message was enqueued and
		// 30 after the discard: still remembered.
		time.Sleep(30 * time.Minute)
		reg = prometheus.NewRegistry()
		ob, stop = runStoppable(t, path, s, retention)
		check(ob)
		stop()
		require.NoError(t, ob.Close())

		// The retention after the discard: forgotten, and sent.
		time.Sleep(31 * time.Minute)
		reg = prometheus.NewRegistry()
		ob = run(t, path, s, retention)
		_, ok, err := ob.Held("dead")
		require.NoError(t, err)
		require.False(t, ok, "the discarded key outlived the retention")
		dropped, err := ob.Add(msg("dead"))
		require.NoError(t, err)
		require.Empty(t, dropped)
		synctest.Wait()
		require.Equal(t, []string{"dead", "dead"}, s.keys())
	})
}

// The last dead letter of a receiver a reload removed takes the series
// left of it when it is discarded, also when the receiver was removed
// before a restart; the discard is not left as a series of its own.
func TestDiscardDeletesRemovedLanesSeries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := newFakeSender()
		reg := prometheus.NewRegistry()
		ob, stop := runStoppable(t, path, s, func(o *Options) { o.Registerer = reg })
		ob.InitializeFor("team", "webhook", 1)
		ob.InitializeFor("gone", "webhook", 1)
		ob.InitializeFor("old", "webhook", 1)
		for k, receiver := range map[string]string{"g1": "gone", "g2": "gone", "o1": "old"} {
			s.fail(k, Permanent(errors.New("no")))
			m := msg(k)
			m.Receiver = receiver
			require.NoError(t, ob.Enqueue(m))
		}
		synctest.Wait()
		require.Len(t, ob.DeadLetters(), 3)
		ob.Retain(func(receiver, _ string, _ int) bool { return receiver == "team" })
		names := func() map[string][]string {
			out := map[string][]string{}
			for name, lanes := range lanesIn(t, reg) {
				for l := range lanes {
					if !strings.HasPrefix(l, "team/") {
						out[name] = append(out[name], l)
					}
				}
			}
			return out
		}
		require.Equal(t, map[string][]string{"alertd_outbox_dead_letters": {"gone/webhook/0", "old/webhook/0"}}, sorted(names()), "only the dead letters are left")

		_, err := ob.Discard("g1")
		require.NoError(t, err)
		require.Equal(t, map[string][]string{"alertd_outbox_dead_letters": {"gone/webhook/0", "old/webhook/0"}}, sorted(names()), "one dead letter of gone left")
		require.Equal(t, 1.0, lanesIn(t, reg)["alertd_outbox_dead_letters"]["gone/webhook/0"])
		_, err = ob.Discard("g2")
		require.NoError(t, err)
		require.Equal(t, map[string][]string{"alertd_outbox_dead_letters": {"old/webhook/0"}}, names(), "the last discarded: nothing of gone is left")
		stop()
		require.NoError(t, ob.Close())

		// Removed before a restart: Retain at the start retires the lane
		// of its dead letter.
		reg = prometheus.NewRegistry()
		ob = run(t, path, s, func(o *Options) { o.Registerer = reg })
		ob.InitializeFor("team", "webhook", 1)
		ob.Retain(func(receiver, _ string, _ int) bool { return receiver == "team" })
		require.Equal(t, map[string][]string{"alertd_outbox_dead_letters": {"old/webhook/0"}}, names())
		_, err = ob.Discard("o1")
		require.NoError(t, err)
		require.Empty(t, names(), "nothing of old is left after the restart")
		require.Contains(t, lanesIn(t, reg)["alertd_outbox_dead_letters_discarded_total"], "team/webhook/", "a configured receiver's counter stays")
	})
}

func sorted(m map[string][]string) map[string][]string {
	for _, v := range m {
		slices.Sort(v)
	}
	return m
}

func keysOfMessages(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Key)
	}
	return out
}

// An attempt the shutdown grace cut short whose Sender says it must not be
// sent again (Permanent: an action's request sent in full, which the
// receiver may have acted on) is dead-lettered, not sent again after the
// restart; one that may be sent again stays pending.
func TestShutdownPermanentDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "o.db")
		s := SenderFunc(func(ctx context.Context, m *Message) error {
			<-ctx.Done()
			if m.Key == "sent" {
				return Permanent(fmt.Errorf("outcome unknown: %w", ctx.Err()))
			}
			return ctx.Err()
		})
		ob, stop := runStoppable(t, path, s, func(o *Options) { o.ShutdownGrace = time.Second })
		other := msg("other")
		other.Receiver = "other"
		require.NoError(t, ob.Enqueue(msg("sent"), other))
		synctest.Wait()
		stop()
		dl := ob.DeadLetters()
		require.Len(t, dl, 1)
		require.Equal(t, "sent", dl[0].Key)
		require.Equal(t, "outcome unknown: context canceled", dl[0].LastError)
		require.Equal(t, 1, ob.Stats().Pending, "other stays pending, sent after the restart")
	})
}

// Writes that come while a commit is in progress share the next: one
// transaction, one sync to disk, for a batch of enqueues, each returning
// once it is committed. One that fails fails alone: the others are
// committed each on its own.
func TestGroupCommit(t *testing.T) {
	for _, failing := range []int{-1, 3} {
		t.Run(fmt.Sprintf("failing=%d", failing), func(t *testing.T) {
			ob, err := Open(Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Senders: map[string]Sender{"webhook": newFakeSender()}})
			require.NoError(t, err)
			defer ob.Close()
			entered, release := make(chan struct{}), make(chan struct{})
			// On a failure, the commit in progress ends before Close.
			var once sync.Once
			defer once.Do(func() { close(release) })
			first := make(chan error, 1)
			go func() {
				first <- ob.commit(func(*bolt.Tx) error {
					close(entered)
					<-release
					return nil
				})
			}()
			<-entered
			const n = 10
			var (
				mu   sync.Mutex
				txs  = map[int]map[*bolt.Tx]bool{}
				errs = make([]error, n)
				wg   sync.WaitGroup
			)
			for i := range n {
				txs[i] = map[*bolt.Tx]bool{}
				wg.Go(func() {
					errs[i] = ob.commit(func(tx *bolt.Tx) error {
						mu.Lock()
						txs[i][tx] = true
						mu.Unlock()
						if i == failing {
							return errors.New("refused")
						}
						return tx.Bucket(bucketState).Put([]byte(fmt.Sprint(i)), []byte("v"))
					})
				})
			}
			require.Eventually(t, func() bool {
				ob.group.mu.Lock()
				defer ob.group.mu.Unlock()
				return len(ob.group.queue) == n
			}, 10*time.Second, time.Millisecond, "the writes wait for the commit in progress")
			once.Do(func() { close(release) })
			wg.Wait()
			require.NoError(t, <-first)
			all := map[*bolt.Tx]bool{}
			for i := range n {
				for tx := range txs[i] {
					all[tx] = true
				}
				if i == failing {
					require.EqualError(t, errs[i], "refused")
					continue
				}
				require.NoError(t, errs[i], i)
			}
			stored := 0
			require.NoError(t, ob.db.View(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketState).ForEach(func(k, v []byte) error {
					stored++
					return nil
				})
			}))
			if failing < 0 {
				require.Len(t, all, 1, "one transaction")
				require.Equal(t, n, stored)
			} else {
				require.Equal(t, n-1, stored, "the failing write alone is not stored")
			}
		})
	}
}
