package outbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
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
		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("c", "webhook", resultDeadLettered)))
		require.Equal(t, 1.0, testutil.ToFloat64(ob.metrics.deliveries.WithLabelValues("team", "webhook", resultDelivered)))
		require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP alertd_outbox_dead_letters The number of dead letters: messages given up on, waiting to be redriven.
# TYPE alertd_outbox_dead_letters gauge
alertd_outbox_dead_letters{integration="webhook",receiver="b"} 1
alertd_outbox_dead_letters{integration="webhook",receiver="c"} 1
alertd_outbox_dead_letters{integration="webhook",receiver="team"} 0
# HELP alertd_outbox_queue_depth The number of messages waiting in the outbox for delivery.
# TYPE alertd_outbox_queue_depth gauge
alertd_outbox_queue_depth{integration="webhook",receiver="b"} 0
alertd_outbox_queue_depth{integration="webhook",receiver="c"} 0
alertd_outbox_queue_depth{integration="webhook",receiver="team"} 0
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
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
