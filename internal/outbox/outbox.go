// Package outbox delivers notifications and actions durably: every message
// is stored (and fsync'd) before Enqueue returns, sent by the Sender of its
// integration, retried with exponential backoff and full jitter (honouring
// Retry-After) until it is delivered or dead-lettered, and never sent again
// once delivered for one idempotency key.
//
// # Storage
//
// Messages live in a bbolt file (Options.Path). Enqueue commits them before
// it returns. A delivered message's key is remembered for
// Options.Retention (default 7 days), so the same key enqueued again — a
// group notified again after a restart lost the notification log — is
// dropped instead of sent twice; Add tells the caller which messages it
// dropped, and what became of the first one of their key (pending,
// delivered, dead-lettered or discarded). Dead letters stay until they are
// redriven or discarded; a discarded one's key is remembered for the
// retention too (a tombstone), so that what an operator discarded on
// purpose is not sent when its sender decides on it again.
//
// # Delivery guarantee: at least once, deduplicated by key
//
// A message is marked delivered in the same file after its Sender returned
// success. A crash (SIGKILL, power loss) between the receiver accepting a
// request and that commit leaves the message pending, and it is sent once
// more after the restart: this is the at-least-once window, at most one
// resend per message and crash. To make that resend harmless every Sender
// puts Message.Key into the request, where the receiver can deduplicate:
// the Idempotency-Key header of webhooks, PagerDuty's dedup_key (a second
// trigger with the same key updates the same incident), and Slack's thread
// state keyed by incident.
//
// # Ordering and concurrency
//
// The messages of one receiver to one entry of an integration (its second
// webhook_configs entry, say: Message.Entry) form a lane: they are sent one
// at a time, in enqueue order, and a message waiting for its retry holds
// back the messages behind it. Lanes proceed in parallel, so a webhook that
// is down holds back neither other receivers, nor the same receiver's
// pager, nor its other webhooks.
package outbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// Message is one notification or action to deliver.
type Message struct {
	// Key is the idempotency key: a message whose key the outbox holds, or
	// has delivered or discarded within the retention, is not enqueued
	// again.
	Key string `json:"key"`
	// Receiver names the receiver or action the message is for.
	Receiver string `json:"receiver"`
	// Integration names the Sender that delivers it: "slack", "pagerduty",
	// "webhook", "alertmanager", "action".
	Integration string `json:"integration"`
	// Entry tells apart the receiver's integrations of one type: the index
	// of its webhook_configs entry, say. Each entry is a lane of its own.
	// Messages stored before they had an entry get it from
	// Options.EntryOf.
	Entry int `json:"entry"`
	// Payload is what the Sender needs; the outbox does not look into it.
	// It is stored and shown in the API: it must not hold secrets.
	Payload json.RawMessage `json:"payload"`
	// Created is when the message was enqueued.
	Created time.Time `json:"created"`
	// Attempts, NextAttempt and LastError say how delivery goes.
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
}

// Sender delivers the messages of one integration. An error that wraps
// RetryAfter says when to try again; one that wraps Permanent is not
// retried; any other is retried with backoff. Send must return once ctx is
// done; it is called for one message of a lane at a time, and for several
// lanes concurrently. Errors must not hold secrets: they are stored and
// shown in the API.
type Sender interface {
	Send(ctx context.Context, m *Message) error
}

// AttemptTimeouter is implemented by a Sender whose messages bound their
// own attempts (an action's configured timeout): each attempt of m gets
// AttemptTimeout(m), when positive, instead of Options.SendTimeout, so
// that a timeout configured longer than SendTimeout is not cut short.
type AttemptTimeouter interface {
	AttemptTimeout(m *Message) time.Duration
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, m *Message) error

// Send implements Sender.
func (f SenderFunc) Send(ctx context.Context, m *Message) error { return f(ctx, m) }

type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err of a delivery the receiver asked to retry after d
// (HTTP 429 or 503 with Retry-After).
func RetryAfter(d time.Duration, err error) error { return &retryAfterError{after: d, err: err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err of a delivery that will never succeed (HTTP 400).
func Permanent(err error) error { return &permanentError{err: err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// StatusError is a delivery the receiver answered with an unsuccessful HTTP
// status. Senders return it (wrapped in RetryAfter or Permanent as fits) so
// that failures are counted by status class.
type StatusError struct {
	Code int
	// Body is the start of the response body, for the error message.
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("unexpected status code %d", e.Code)
	}
	return fmt.Sprintf("unexpected status code %d: %s", e.Code, e.Body)
}

// ErrUnknownKey is returned by Redrive and Discard for a key that is no
// dead letter.
var ErrUnknownKey = errors.New("no dead letter with this key")

// Defaults of Options.
const (
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultMaxAge         = 24 * time.Hour
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultSendTimeout    = 30 * time.Second
	DefaultShutdownGrace  = 5 * time.Second
)

// Options configure an Outbox.
type Options struct {
	// Path is the file the outbox keeps its messages in. Empty keeps them
	// in a temporary file removed by Close: nothing survives a restart.
	Path string
	// Senders deliver messages by integration.
	Senders map[string]Sender
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// InitialBackoff is the longest wait before the first retry; each
	// failure doubles it up to MaxBackoff, and the wait is drawn uniformly
	// below it (full jitter). Defaults 1s and 5m.
	InitialBackoff, MaxBackoff time.Duration
	// MaxAge is how long a message is retried before it becomes a dead
	// letter; default 24h.
	MaxAge time.Duration
	// Retention is how long the keys of delivered messages and discarded
	// dead letters (and sender state) are remembered; default 7 days.
	Retention time.Duration
	// SendTimeout bounds each attempt; default 30s. A Sender that is an
	// AttemptTimeouter sets its messages' own.
	SendTimeout time.Duration
	// ShutdownGrace is how long the attempts in flight when Run's context
	// ends may go on, so that a graceful stop does not cut off a delivery
	// the receiver is already answering, which would then be sent again
	// after the restart. Those still going then are cancelled and stay
	// pending. Default 5s.
	ShutdownGrace time.Duration
	// Registerer gets the alertd_outbox_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger logs failed attempts and dead letters; nil discards.
	Logger *slog.Logger
	// OnDone, if set, is called once per message after it was delivered
	// (nil error) or dead-lettered, on the delivering goroutine.
	OnDone func(m Message, err error)
	// EntryOf, if set, gives the Entry of a message read from the file
	// that was stored before messages had one (all entries of an
	// integration then shared a lane); its Sender's payload may tell.
	// Open writes such messages back with it, once. Without it they are
	// entry 0, and left as stored.
	EntryOf func(m Message) int
}

// record is a message as the outbox stores it.
type record struct {
	Message
	Seq uint64 `json:"seq"`
	// Since starts the MaxAge clock: when the message was enqueued or last
	// redriven.
	Since  time.Time `json:"since"`
	DeadAt time.Time `json:"dead_at,omitzero"`
}

// laneKey identifies a lane: one entry of a receiver's integration.
type laneKey struct {
	receiver, integration string
	entry                 int
}

func laneKeyOf(m *Message) laneKey { return laneKey{m.Receiver, m.Integration, m.Entry} }

// lane holds the pending messages of one entry of a receiver's
// integration, in enqueue order.
type lane struct {
	key     laneKey
	queue   []*record
	running bool
	// tlsErr is the TLS error last logged of the lane, which its retries
	// log at debug only, until it changes or a delivery succeeds: a
	// certificate problem lasts until someone fixes it, and a line per
	// retry for the max age would bury it.
	tlsErr string
}

// Buckets of the bbolt file.
var (
	bucketPending   = []byte("pending")   // seq → record
	bucketKeys      = []byte("keys")      // key → seq of a pending message
	bucketDelivered = []byte("delivered") // key → delivery time (unix ns)
	bucketDead      = []byte("dead")      // key → record
	bucketDiscarded = []byte("discarded") // key → tombstone
	bucketState     = []byte("state")     // namespace → key → stateEntry
)

// Outbox holds messages until they are delivered.
type Outbox struct {
	opts    Options
	db      *bolt.DB
	tmpDir  string
	logger  *slog.Logger
	metrics *metrics
	rand    func() float64
	// group commits concurrent enqueues together (commit).
	group groupCommit

	mu     sync.Mutex
	lanes  map[laneKey]*lane
	dead   map[string]*record
	runCtx context.Context
	// sendCtx is the attempts' context: it outlives runCtx by the
	// shutdown grace.
	sendCtx context.Context
	running bool
	closed  bool
	wg      sync.WaitGroup
}

// Open opens (or creates) the outbox file and loads the pending messages
// and dead letters. Call Run to deliver, Close to release the file.
func Open(o Options) (*Outbox, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.InitialBackoff)
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ob := &Outbox{opts: o, logger: o.Logger, rand: rand.Float64, lanes: map[laneKey]*lane{}, dead: map[string]*record{}}
	path := o.Path
	if path == "" {
		dir, err := os.MkdirTemp("", "outbox")
		if err != nil {
			return nil, fmt.Errorf("couldn't create the outbox: %w", err)
		}
		ob.tmpDir, path = dir, filepath.Join(dir, "outbox.db")
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create the outbox's directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		ob.removeTmp()
		return nil, fmt.Errorf("couldn't open the outbox %q: %w", path, err)
	}
	ob.db = db
	if err := ob.load(); err != nil {
		_ = db.Close()
		ob.removeTmp()
		return nil, fmt.Errorf("couldn't load the outbox %q: %w", path, err)
	}
	ob.metrics = newMetrics(ob)
	if err := ob.metrics.register(o.Registerer); err != nil {
		_ = db.Close()
		ob.removeTmp()
		return nil, err
	}
	ob.gc()
	return ob, nil
}

func (o *Outbox) removeTmp() {
	if o.tmpDir != "" {
		_ = os.RemoveAll(o.tmpDir)
	}
}

// load creates the buckets and reads the pending messages and dead
// letters. Records stored before messages had an entry are written back
// with the entry EntryOf gives them, in the same transaction, so that the
// fix-up happens once and not at every start.
func (o *Outbox) load() error {
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPending, bucketKeys, bucketDelivered, bucketDead, bucketDiscarded, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// A bucket must not change while ForEach walks it: the fixed
		// records are written after.
		type fix struct {
			bucket, key []byte
			r           *record
		}
		var fixed []fix
		// Keys come in seq order: big-endian.
		if err := tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			r, old, err := o.decode(v)
			if err != nil {
				return err
			}
			if old {
				fixed = append(fixed, fix{bucketPending, bytes.Clone(k), r})
			}
			l := o.laneOf(r)
			l.queue = append(l.queue, r)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			r, old, err := o.decode(v)
			if err != nil {
				return err
			}
			if old {
				fixed = append(fixed, fix{bucketDead, bytes.Clone(k), r})
			}
			o.dead[string(k)] = r
			return nil
		}); err != nil {
			return err
		}
		for _, f := range fixed {
			v, err := json.Marshal(f.r)
			if err != nil {
				return err
			}
			if err := tx.Bucket(f.bucket).Put(f.key, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// decode reads a stored record. One stored before messages had an entry
// gets it from Options.EntryOf, so that it joins its entry's lane ahead of
// the messages enqueued since, in order; old reports that it did, and load
// writes it back with its entry. Without EntryOf such a record is entry 0
// and stays as stored, so that an outbox opened later with EntryOf still
// finds its entry.
func (o *Outbox) decode(v []byte) (r *record, old bool, err error) {
	r = &record{}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, false, err
	}
	var has struct {
		Entry *int `json:"entry"`
	}
	if err := json.Unmarshal(v, &has); err != nil {
		return nil, false, err
	}
	if has.Entry == nil && o.opts.EntryOf != nil {
		r.Entry = o.opts.EntryOf(r.Message)
		return r, true, nil
	}
	return r, false, nil
}

// laneOf returns r's lane, creating it. Called with o.mu held (or before
// the outbox is shared).
func (o *Outbox) laneOf(r *record) *lane {
	k := laneKeyOf(&r.Message)
	l := o.lanes[k]
	if l == nil {
		l = &lane{key: k}
		o.lanes[k] = l
	}
	return l
}

func seqKey(seq uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, seq)
	return b
}

// Enqueue stores messages for delivery; it returns once they are stored
// and synced to disk. Messages whose key is already held, dead-lettered,
// or delivered or discarded (within the retention) are dropped; Add
// reports them.
func (o *Outbox) Enqueue(ms ...*Message) error {
	_, err := o.Add(ms...)
	return err
}

// What the outbox holds of a key, the values of Dropped.State.
const (
	HeldPending   = "pending"
	HeldDelivered = "delivered"
	HeldDead      = "dead_letter"
	// HeldDiscarded is a dead letter discarded (Discard) within the
	// retention: never to be sent.
	HeldDiscarded = "discarded"
)

// Dropped is a message Add did not store because the outbox holds its key
// already: a caller that repeats a send after a crash (the message stored,
// the caller's own record of it lost) learns what became of the first.
type Dropped struct {
	Key string
	// State is HeldPending (waiting for delivery), HeldDelivered,
	// HeldDead or HeldDiscarded.
	State string
	// Created is when the message held was enqueued (Message.Created),
	// zero for a delivered one, of which the outbox keeps the time of
	// delivery only (Delivered). Discarded is when a discarded one was.
	Created, Delivered, Discarded time.Time
	// Attempts and LastError are the held message's, as last stored (a
	// discarded one's as it was dead-lettered).
	Attempts  int
	LastError string
}

// Add is Enqueue, and returns the messages it dropped, in order: those
// whose key the outbox holds (pending or dead-lettered) or delivered or
// discarded within the retention, and a key given twice, the second time.
func (o *Outbox) Add(ms ...*Message) ([]Dropped, error) {
	for _, m := range ms {
		if m.Key == "" {
			return nil, errors.New("outbox: a message needs an idempotency key")
		}
		if _, ok := o.opts.Senders[m.Integration]; !ok {
			return nil, fmt.Errorf("outbox: no sender for integration %q", m.Integration)
		}
		if m.Entry < 0 {
			return nil, fmt.Errorf("outbox: negative entry %d", m.Entry)
		}
	}
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return nil, errors.New("outbox: closed")
	}
	now := o.opts.Now()
	var (
		added   []*record
		dropped []Dropped
		// dups are the messages dropped, for their labels.
		dups []*Message
	)
	err := o.commit(func(tx *bolt.Tx) error {
		added, dropped, dups = added[:0], dropped[:0], dups[:0]
		pending, keys := tx.Bucket(bucketPending), tx.Bucket(bucketKeys)
		for _, m := range ms {
			k := []byte(m.Key)
			if d, ok := held(tx, m.Key); ok {
				o.logger.Debug("Message already held or delivered, dropped", "receiver", m.Receiver, "integration", m.Integration, "key", m.Key, "state", d.State)
				dropped, dups = append(dropped, d), append(dups, m)
				continue
			}
			seq, err := pending.NextSequence()
			if err != nil {
				return err
			}
			r := &record{Message: *m, Seq: seq}
			if r.Created.IsZero() {
				r.Created = now
			}
			r.Since, r.Attempts, r.NextAttempt, r.LastError = now, 0, time.Time{}, ""
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := pending.Put(seqKey(seq), b); err != nil {
				return err
			}
			if err := keys.Put(k, seqKey(seq)); err != nil {
				return err
			}
			added = append(added, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: couldn't store messages: %w", err)
	}
	for i, m := range dups {
		o.metrics.duplicates.WithLabelValues(m.Receiver, m.Integration, heldLabel(dropped[i].State)).Inc()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range added {
		o.logger.Debug("Message enqueued", "receiver", r.Receiver, "integration", r.Integration, "key", r.Key)
		l := o.laneOf(r)
		l.queue = append(l.queue, r)
		o.metrics.enqueued.WithLabelValues(r.Receiver, r.Integration).Inc()
		o.startLocked(l)
	}
	return dropped, nil
}

// groupCommit lets concurrent writers share a commit: alertd's aggregation
// groups flush in goroutines of their own, and a batch of n new groups is
// n enqueues at once, each of which would otherwise wait for its own
// fsync'd commit in turn.
type groupCommit struct {
	mu sync.Mutex
	// running is set while a writer commits; queue holds the writes that
	// came meanwhile, for its next commit.
	running bool
	queue   []*groupWrite
}

type groupWrite struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// commit runs fn in a read-write transaction and returns once that is
// committed (synced to disk), as db.Update does. When no commit is in
// progress it commits at once; writes that come while one is share the
// next, which the writer in progress runs for them. fn may run more than
// once (again on its own when another write of its commit failed): it must
// start from scratch each time. Unlike bbolt's DB.Batch, a lone write does
// not wait for company.
func (o *Outbox) commit(fn func(*bolt.Tx) error) error {
	g := &o.group
	w := &groupWrite{fn: fn, err: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.running {
		g.mu.Unlock()
		return <-w.err
	}
	g.running = true
	for len(g.queue) > 0 {
		ws := g.queue
		g.queue = nil
		g.mu.Unlock()
		o.commitAll(ws)
		g.mu.Lock()
	}
	g.running = false
	g.mu.Unlock()
	return <-w.err
}

// commitAll commits ws in one transaction, or, if one of them fails, each
// in its own, so that one write's error fails it alone.
func (o *Outbox) commitAll(ws []*groupWrite) {
	if len(ws) > 1 {
		err := o.db.Update(func(tx *bolt.Tx) error {
			for _, w := range ws {
				if err := w.fn(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			for _, w := range ws {
				w.err <- nil
			}
			return
		}
	}
	for _, w := range ws {
		w.err <- o.db.Update(w.fn)
	}
}

// Held returns what the outbox holds of a key, as Add would report a
// message with that key it dropped, and whether it holds the key at all
// (pending, dead-lettered, or delivered or discarded within the
// retention). It only
// reads: a caller about to decide on a message again (after a crash lost
// its record of the first) can learn that it was stored before deciding.
func (o *Outbox) Held(key string) (Dropped, bool, error) {
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return Dropped{}, false, errors.New("outbox: closed")
	}
	var (
		d  Dropped
		ok bool
	)
	err := o.db.View(func(tx *bolt.Tx) error {
		d, ok = held(tx, key)
		return nil
	})
	if err != nil {
		return Dropped{}, false, fmt.Errorf("outbox: couldn't look up key %q: %w", key, err)
	}
	return d, ok, nil
}

// held returns what the outbox holds of a key, read in tx.
func held(tx *bolt.Tx, key string) (Dropped, bool) {
	d := Dropped{Key: key}
	var v []byte
	if seq := tx.Bucket(bucketKeys).Get([]byte(key)); seq != nil {
		d.State, v = HeldPending, tx.Bucket(bucketPending).Get(seq)
	} else if v = tx.Bucket(bucketDead).Get([]byte(key)); v != nil {
		d.State = HeldDead
	} else if v = tx.Bucket(bucketDiscarded).Get([]byte(key)); v != nil {
		d.State = HeldDiscarded
		var tb tombstone
		if json.Unmarshal(v, &tb) == nil {
			d.Discarded, d.Created, d.Attempts, d.LastError = time.Unix(0, tb.At), tb.Created, tb.Attempts, tb.LastError
		}
		return d, true
	} else if at := tx.Bucket(bucketDelivered).Get([]byte(key)); at != nil {
		d.State = HeldDelivered
		if ns, err := strconv.ParseInt(string(at), 10, 64); err == nil {
			d.Delivered = time.Unix(0, ns)
		}
		return d, true
	} else {
		return Dropped{}, false
	}
	var r record
	if v != nil && json.Unmarshal(v, &r) == nil {
		d.Created, d.Attempts, d.LastError = r.Created, r.Attempts, r.LastError
	}
	return d, true
}

// startLocked starts l's worker if Run is running and it has none.
func (o *Outbox) startLocked(l *lane) {
	if !o.running || l.running || len(l.queue) == 0 {
		return
	}
	l.running = true
	o.wg.Add(1)
	go o.work(o.runCtx, o.sendCtx, l)
}

// Run delivers messages until ctx is done, then lets the attempts in flight
// finish within the shutdown grace and waits for them; it starts no new
// ones. Calls after the first, or after Close, do nothing.
func (o *Outbox) Run(ctx context.Context) {
	o.mu.Lock()
	if o.running || o.closed {
		o.mu.Unlock()
		return
	}
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	o.running, o.runCtx, o.sendCtx = true, ctx, sendCtx
	for _, l := range o.lanes {
		o.startLocked(l)
	}
	o.mu.Unlock()

	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			o.gc()
		case <-ctx.Done():
			grace := time.AfterFunc(o.opts.ShutdownGrace, cancelSend)
			o.wg.Wait()
			grace.Stop()
			o.mu.Lock()
			o.running = false
			o.mu.Unlock()
			return
		}
	}
}

// work delivers l's messages in order until it is empty or ctx is done. Its
// attempts run under sendCtx.
func (o *Outbox) work(ctx, sendCtx context.Context, l *lane) {
	defer o.wg.Done()
	for {
		o.mu.Lock()
		if len(l.queue) == 0 || ctx.Err() != nil {
			l.running = false
			o.mu.Unlock()
			return
		}
		r := l.queue[0]
		wait := r.NextAttempt.Sub(o.opts.Now())
		o.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		o.attempt(sendCtx, l, r)
	}
}

// attempt sends r once and records the outcome.
func (o *Outbox) attempt(sendCtx context.Context, l *lane, r *record) {
	m := r.Message
	m.Attempts++
	m.Payload = slices.Clone(r.Payload)
	labels := []string{r.Receiver, r.Integration}
	entry := strconv.Itoa(r.Entry)
	var err error
	start := time.Now()
	if s, ok := o.opts.Senders[r.Integration]; ok {
		timeout := o.opts.SendTimeout
		if t, ok := s.(AttemptTimeouter); ok {
			if d := t.AttemptTimeout(&m); d > 0 {
				timeout = d
			}
		}
		actx, cancel := context.WithTimeout(sendCtx, timeout)
		err = s.Send(actx, &m)
		cancel()
	} else {
		err = Permanent(fmt.Errorf("no sender for integration %q", r.Integration))
	}
	if err != nil && sendCtx.Err() != nil && !IsPermanent(err) {
		// The shutdown grace ran out: this attempt does not count, the
		// message stays as it was and is sent after the restart. Unless
		// its Sender said it must not be sent again (Permanent): an
		// action whose request was sent in full, which the receiver may
		// have acted on, is dead-lettered rather than sent twice.
		return
	}
	o.metrics.duration.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
	now := o.opts.Now()

	upd := *r
	upd.Attempts = m.Attempts
	final := err
	switch {
	case err == nil:
		o.logger.Debug("Message delivered", "receiver", r.Receiver, "integration", r.Integration, "key", r.Key, "attempts", upd.Attempts)
		o.mu.Lock()
		l.tlsErr = ""
		o.mu.Unlock()
		o.metrics.deliveries.WithLabelValues(r.Receiver, r.Integration, entry, resultDelivered).Inc()
		o.finish(l, &upd, nil, now)
		return
	case IsPermanent(err):
	case now.Sub(r.Since) >= o.opts.MaxAge:
		final = fmt.Errorf("gave up after %s: %w", o.opts.MaxAge, err)
	default:
		o.metrics.deliveries.WithLabelValues(r.Receiver, r.Integration, entry, resultRetried).Inc()
		o.metrics.failures.WithLabelValues(r.Receiver, r.Integration, Reason(err)).Inc()
		wait := o.backoff(m.Attempts)
		var ra *retryAfterError
		if errors.As(err, &ra) && ra.after > 0 {
			// Honoured up to the message's max age, not beyond: a
			// Retry-After of a year (a misconfigured proxy, a date far
			// ahead) would hold back the lane for that long. The attempt
			// at the max age is the last.
			wait = min(ra.after, max(0, r.Since.Add(o.opts.MaxAge).Sub(now)))
		}
		upd.NextAttempt, upd.LastError = now.Add(wait), err.Error()
		o.logRetry(l, r, upd.Attempts, wait, err)
		if perr := o.db.Update(func(tx *bolt.Tx) error { return putRecord(tx.Bucket(bucketPending), &upd) }); perr != nil {
			o.logger.Error("Failed to store a message's retry state", "key", r.Key, "err", perr)
		}
		o.mu.Lock()
		*r = upd
		o.mu.Unlock()
		return
	}
	upd.LastError = final.Error()
	o.metrics.deliveries.WithLabelValues(r.Receiver, r.Integration, entry, resultDeadLettered).Inc()
	o.metrics.failures.WithLabelValues(r.Receiver, r.Integration, Reason(err)).Inc()
	o.logger.Error("Delivery failed for good, message dead-lettered", "receiver", r.Receiver, "integration", r.Integration,
		"entry", r.Entry, "key", r.Key, "attempts", upd.Attempts, "err", final)
	upd.DeadAt = now
	o.finish(l, &upd, final, now)
}

// logRetry logs a failed attempt that will be retried. A TLS error is
// logged once per lane, at error, saying what to fix; its retries log at
// debug until the error changes or a message of the lane is delivered.
func (o *Outbox) logRetry(l *lane, r *record, attempts int, wait time.Duration, err error) {
	args := []any{"receiver", r.Receiver, "integration", r.Integration, "entry", r.Entry, "key", r.Key, "attempts", attempts, "retry_in", wait, "err", err}
	if Reason(err) != ReasonTLS {
		o.mu.Lock()
		l.tlsErr = ""
		o.mu.Unlock()
		o.logger.Warn("Delivery failed, will retry", args...)
		return
	}
	o.mu.Lock()
	logged := l.tlsErr == err.Error()
	l.tlsErr = err.Error()
	o.mu.Unlock()
	if logged {
		o.logger.Debug("Delivery failed on TLS again, will retry", args...)
		return
	}
	o.logger.Error("Delivery failed: the receiver's TLS certificate is not trusted or its TLS handshake failed; retrying until it is fixed (the receiver's certificate, or tls_config), logged once until the error changes", args...)
}

func putRecord(b *bolt.Bucket, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put(seqKey(r.Seq), v)
}

// finish removes r from its lane: delivered (err nil) or dead-lettered.
func (o *Outbox) finish(l *lane, r *record, failed error, now time.Time) {
	perr := o.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPending).Delete(seqKey(r.Seq)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketKeys).Delete([]byte(r.Key)); err != nil {
			return err
		}
		if failed == nil {
			return tx.Bucket(bucketDelivered).Put([]byte(r.Key), []byte(strconv.FormatInt(now.UnixNano(), 10)))
		}
		v, jerr := json.Marshal(r)
		if jerr != nil {
			return jerr
		}
		return tx.Bucket(bucketDead).Put([]byte(r.Key), v)
	})
	if perr != nil {
		// Not stored: after a restart the message is sent again, with the
		// same key.
		o.logger.Error("Failed to record a message's delivery", "key", r.Key, "err", perr)
	}
	o.mu.Lock()
	switch i := slices.IndexFunc(l.queue, func(x *record) bool { return x.Seq == r.Seq }); {
	case i == 0:
		// The lane's head, as a rule: dropped without moving the rest
		// of the lane up, which for a lane of n messages would move
		// O(n²) of them.
		l.queue[0] = nil
		l.queue = l.queue[1:]
	case i > 0:
		l.queue = slices.Delete(l.queue, i, i+1)
	}
	if failed != nil {
		o.dead[r.Key] = r
	}
	if len(l.queue) == 0 && o.metrics.gauges.retired[l.key] {
		o.pruneLocked(l.key)
	}
	o.mu.Unlock()
	if o.opts.OnDone != nil {
		m := r.Message
		m.Payload = slices.Clone(r.Payload)
		o.opts.OnDone(m, failed)
	}
}

// backoff is the wait before the retry after the given number of attempts:
// uniform in [0, min(MaxBackoff, InitialBackoff·2^(attempts-1))).
func (o *Outbox) backoff(attempts int) time.Duration {
	return Backoff(attempts, o.opts.InitialBackoff, o.opts.MaxBackoff, o.rand())
}

// Backoff is the wait before the retry after the given number of attempts,
// with full jitter: rnd (in [0, 1)) times min(maxWait, initial·2^(attempts-1)).
func Backoff(attempts int, initial, maxWait time.Duration, rnd float64) time.Duration {
	d := initial
	for i := 1; i < attempts && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return time.Duration(rnd * float64(d))
}

// DeadLetters returns the messages given up on, oldest first.
func (o *Outbox) DeadLetters() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Message, 0, len(o.dead))
	for _, r := range o.dead {
		m := r.Message
		m.Payload = slices.Clone(r.Payload)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// claimDead takes the dead letter of key out of o.dead, so that a
// concurrent Redrive or Discard of it finds no such key; unclaim puts it
// back when storing the change failed.
func (o *Outbox) claimDead(key string) (*record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.dead[key]
	if !ok {
		return nil, fmt.Errorf("outbox: no dead letter with key %q: %w", key, ErrUnknownKey)
	}
	delete(o.dead, key)
	return r, nil
}

func (o *Outbox) unclaim(r *record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead[r.Key] = r
}

// Redrive moves a dead letter back to delivery, at the end of its lane,
// with its attempts and MaxAge clock reset. An unknown key's error wraps
// ErrUnknownKey.
func (o *Outbox) Redrive(key string) error {
	r, err := o.claimDead(key)
	if err != nil {
		return err
	}
	upd := *r
	upd.Attempts, upd.NextAttempt, upd.DeadAt, upd.Since = 0, time.Time{}, time.Time{}, o.opts.Now()
	err = o.db.Update(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		seq, err := pending.NextSequence()
		if err != nil {
			return err
		}
		upd.Seq = seq
		if err := putRecord(pending, &upd); err != nil {
			return err
		}
		if err := tx.Bucket(bucketKeys).Put([]byte(key), seqKey(seq)); err != nil {
			return err
		}
		return tx.Bucket(bucketDead).Delete([]byte(key))
	})
	if err != nil {
		o.unclaim(r)
		return fmt.Errorf("outbox: couldn't redrive %q: %w", key, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.laneOf(&upd)
	l.queue = append(l.queue, &upd)
	o.startLocked(l)
	return nil
}

// tombstone is what the outbox keeps of a discarded dead letter, for the
// retention: when it was discarded, and what Held reports of it.
type tombstone struct {
	// At is when it was discarded (unix ns), from when the retention
	// counts.
	At        int64     `json:"at"`
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
}

// Discard removes a dead letter for good, from the file as well, and
// returns it: an operator's way to drop one that will never be delivered,
// such as one of a receiver or action a reload removed, which a redrive
// would only dead-letter again. Its key is remembered for the retention
// as a delivered one is (a tombstone, in the same commit): a message with
// the same key enqueued meanwhile — its sender deciding on it again after
// a crash lost its own record — is dropped (Add, Held: HeldDiscarded), not
// sent against the operator's decision; a redrive of it is ErrUnknownKey.
// It is counted in alertd_outbox_dead_letters_discarded_total; the last
// dead letter of a lane the configuration no longer has (Retain) takes
// the lane's remaining series with it, unless the lane holds pending
// messages. An unknown key's error wraps ErrUnknownKey.
func (o *Outbox) Discard(key string) (Message, error) {
	r, err := o.claimDead(key)
	if err != nil {
		return Message{}, err
	}
	err = o.db.Update(func(tx *bolt.Tx) error {
		v, err := json.Marshal(tombstone{At: o.opts.Now().UnixNano(), Created: r.Created, Attempts: r.Attempts, LastError: r.LastError})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketDiscarded).Put([]byte(key), v); err != nil {
			return err
		}
		return tx.Bucket(bucketDead).Delete([]byte(key))
	})
	if err != nil {
		o.unclaim(r)
		return Message{}, fmt.Errorf("outbox: couldn't discard %q: %w", key, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.metrics.discarded.WithLabelValues(r.Receiver, r.Integration).Inc()
	if k := laneKeyOf(&r.Message); o.metrics.gauges.retired[k] {
		o.pruneLocked(k)
	}
	m := r.Message
	m.Payload = slices.Clone(r.Payload)
	return m, nil
}

// LaneStats describes the messages of one lane: one entry of a receiver's
// integration.
type LaneStats struct {
	Receiver    string `json:"receiver"`
	Integration string `json:"integration"`
	Entry       int    `json:"entry"`
	Pending     int    `json:"pending"`
	// Oldest is when the oldest pending message was enqueued; zero if none.
	Oldest      time.Time `json:"oldest,omitzero"`
	DeadLetters int       `json:"dead_letters"`
	// LastError is the last error of the message at the head of the lane.
	LastError string `json:"last_error,omitempty"`
}

// Stats describes the outbox.
type Stats struct {
	Pending     int         `json:"pending"`
	Oldest      time.Time   `json:"oldest,omitzero"`
	DeadLetters int         `json:"dead_letters"`
	Lanes       []LaneStats `json:"receivers"`
}

// Stats returns the pending messages and dead letters by lane, sorted by
// receiver, integration and entry.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	byLane := map[laneKey]*LaneStats{}
	get := func(k laneKey) *LaneStats {
		s := byLane[k]
		if s == nil {
			s = &LaneStats{Receiver: k.receiver, Integration: k.integration, Entry: k.entry}
			byLane[k] = s
		}
		return s
	}
	var st Stats
	for k, l := range o.lanes {
		if len(l.queue) == 0 {
			continue
		}
		s := get(k)
		s.Pending = len(l.queue)
		s.LastError = l.queue[0].LastError
		for _, r := range l.queue {
			if s.Oldest.IsZero() || r.Created.Before(s.Oldest) {
				s.Oldest = r.Created
			}
		}
		st.Pending += s.Pending
		if st.Oldest.IsZero() || s.Oldest.Before(st.Oldest) {
			st.Oldest = s.Oldest
		}
	}
	for _, r := range o.dead {
		get(laneKeyOf(&r.Message)).DeadLetters++
		st.DeadLetters++
	}
	for _, s := range byLane {
		st.Lanes = append(st.Lanes, *s)
	}
	sort.Slice(st.Lanes, func(i, j int) bool {
		a, b := st.Lanes[i], st.Lanes[j]
		if a.Receiver != b.Receiver {
			return a.Receiver < b.Receiver
		}
		if a.Integration != b.Integration {
			return a.Integration < b.Integration
		}
		return a.Entry < b.Entry
	})
	return st
}

// stateEntry is a value senders keep, with when it was set.
type stateEntry struct {
	At    int64  `json:"at"`
	Value []byte `json:"value"`
}

// SetState durably stores value under key in namespace ns, for senders
// that keep state between messages (Slack's thread of an incident). A nil
// value deletes it. Values are forgotten Retention after they were set.
func (o *Outbox) SetState(ns, key string, value []byte) error {
	return o.commit(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketState).CreateBucketIfNotExists([]byte(ns))
		if err != nil {
			return err
		}
		if value == nil {
			return b.Delete([]byte(key))
		}
		v, err := json.Marshal(stateEntry{At: o.opts.Now().UnixNano(), Value: value})
		if err != nil {
			return err
		}
		return b.Put([]byte(key), v)
	})
}

// State returns the value stored under key in namespace ns.
func (o *Outbox) State(ns, key string) ([]byte, bool) {
	var out []byte
	_ = o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState).Bucket([]byte(ns))
		if b == nil {
			return nil
		}
		var e stateEntry
		if v := b.Get([]byte(key)); v != nil && json.Unmarshal(v, &e) == nil {
			out = e.Value
		}
		return nil
	})
	return out, out != nil
}

// gc forgets the keys delivered or discarded, and the state set, before
// the retention.
func (o *Outbox) gc() {
	cutoff := o.opts.Now().Add(-o.opts.Retention).UnixNano()
	err := o.db.Update(func(tx *bolt.Tx) error {
		if err := prune(tx.Bucket(bucketDelivered), func(v []byte) bool {
			t, err := strconv.ParseInt(string(v), 10, 64)
			return err != nil || t < cutoff
		}); err != nil {
			return err
		}
		if err := prune(tx.Bucket(bucketDiscarded), func(v []byte) bool {
			var tb tombstone
			return json.Unmarshal(v, &tb) != nil || tb.At < cutoff
		}); err != nil {
			return err
		}
		state := tx.Bucket(bucketState)
		return state.ForEachBucket(func(ns []byte) error {
			return prune(state.Bucket(ns), func(v []byte) bool {
				var e stateEntry
				return json.Unmarshal(v, &e) != nil || e.At < cutoff
			})
		})
	})
	if err != nil {
		o.logger.Error("Failed to prune the outbox", "err", err)
	}
}

// prune deletes the entries of b whose value old says is old (or
// unreadable). A bucket must not change while ForEach walks it: they are
// deleted after.
func prune(b *bolt.Bucket, old func(v []byte) bool) error {
	var keys [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		if old(v) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for Run's attempts in flight to end (cancel Run's context
// first) and releases the outbox's storage. Later calls do nothing.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	o.wg.Wait()
	err := o.db.Close()
	o.removeTmp()
	return err
}

// Failure reasons, the values of the reason label.
const (
	ReasonTimeout     = "timeout"
	ReasonConnection  = "connection"
	ReasonHTTP4xx     = "http_4xx"
	ReasonHTTP5xx     = "http_5xx"
	ReasonRateLimited = "rate_limited"
	// ReasonTLS is a TLS handshake that failed: a certificate the client
	// does not trust (unknown authority, expired, another host's), or the
	// server refusing the handshake. Retried, as a certificate can be
	// fixed, but told apart from a connection that failed.
	ReasonTLS   = "tls"
	ReasonOther = "other"
)

var reasons = []string{ReasonTimeout, ReasonConnection, ReasonHTTP4xx, ReasonHTTP5xx, ReasonRateLimited, ReasonTLS, ReasonOther}

// Reasons returns the failure reasons Reason gives, for callers that
// pre-create their series.
func Reasons() []string { return slices.Clone(reasons) }

// Reason classifies a delivery error into one of the bounded failure
// reasons.
func Reason(err error) string {
	var (
		ra *retryAfterError
		se *StatusError
		ne net.Error
		oe *net.OpError
	)
	switch {
	case errors.As(err, &se) && se.Code == 429, errors.As(err, &ra):
		return ReasonRateLimited
	case se != nil && se.Code >= 500:
		return ReasonHTTP5xx
	case se != nil && se.Code >= 400:
		return ReasonHTTP4xx
	case IsTLS(err):
		return ReasonTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.As(err, &oe), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return ReasonConnection
	}
	return ReasonOther
}

// IsTLS reports whether err is a failed TLS handshake: a certificate that
// did not verify (crypto/tls's CertificateVerificationError, or one of
// x509's errors), an alert the server sent during the handshake (it
// refused the client's certificate, say), or an answer that was no TLS at
// all (an http:// server behind an https:// URL).
func IsTLS(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
		ae tls.AlertError
		rh tls.RecordHeaderError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		errors.As(err, &ae) || errors.As(err, &rh) {
		return true
	}
	// crypto/tls reports an alert the peer sent as a net.OpError of Op
	// "remote error" around an unexported type.
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}
