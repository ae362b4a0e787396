// Package outbox delivers notifications and actions durably: every message
// is stored before Enqueue returns, sent by the Sender of its integration,
// retried with exponential backoff and jitter (honouring Retry-After) until
// it is delivered or dead-lettered, and never sent twice for one
// idempotency key.
//
// This first version keeps messages in memory only; the durable store
// replaces it behind the same API.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Message is one notification or action to deliver.
type Message struct {
	// Key is the idempotency key: a message whose key the outbox holds or
	// has delivered is not enqueued again.
	Key string `json:"key"`
	// Receiver names the receiver or action the message is for.
	Receiver string `json:"receiver"`
	// Integration names the Sender that delivers it: "slack", "pagerduty",
	// "webhook", "alertmanager", "action".
	Integration string `json:"integration"`
	// Payload is what the Sender needs; the outbox does not look into it.
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
// retried; any other is retried with backoff.
type Sender interface {
	Send(ctx context.Context, m *Message) error
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

// Options configure an Outbox.
type Options struct {
	// Path is the file the outbox keeps its messages in.
	Path string
	// Senders deliver messages by integration.
	Senders map[string]Sender
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Outbox holds messages until they are delivered.
type Outbox struct {
	opts Options

	mu        sync.Mutex
	pending   map[string]*Message
	delivered map[string]bool
	dead      map[string]*Message
	wake      chan struct{}
}

// Open opens the outbox.
func Open(o Options) (*Outbox, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Outbox{opts: o, pending: map[string]*Message{}, delivered: map[string]bool{}, dead: map[string]*Message{}, wake: make(chan struct{}, 1)}, nil
}

// Enqueue stores messages for delivery; it returns once they are stored.
// Messages whose key is already held or delivered are dropped.
func (o *Outbox) Enqueue(ms ...*Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range ms {
		if m.Key == "" {
			return errors.New("outbox: a message needs an idempotency key")
		}
		if _, ok := o.opts.Senders[m.Integration]; !ok {
			return fmt.Errorf("outbox: no sender for integration %q", m.Integration)
		}
		if o.pending[m.Key] != nil || o.delivered[m.Key] || o.dead[m.Key] != nil {
			continue
		}
		c := *m
		if c.Created.IsZero() {
			c.Created = o.opts.Now()
		}
		o.pending[m.Key] = &c
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run delivers messages until ctx is done.
func (o *Outbox) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		o.deliverDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-o.wake:
		}
	}
}

func (o *Outbox) deliverDue(ctx context.Context) {
	o.mu.Lock()
	var due []*Message
	now := o.opts.Now()
	for _, m := range o.pending {
		if !m.NextAttempt.After(now) {
			due = append(due, m)
		}
	}
	o.mu.Unlock()
	for _, m := range due {
		err := o.opts.Senders[m.Integration].Send(ctx, m)
		o.mu.Lock()
		m.Attempts++
		switch {
		case err == nil:
			delete(o.pending, m.Key)
			o.delivered[m.Key] = true
		case IsPermanent(err):
			m.LastError = err.Error()
			delete(o.pending, m.Key)
			o.dead[m.Key] = m
		default:
			m.LastError = err.Error()
			m.NextAttempt = o.opts.Now().Add(time.Second)
		}
		o.mu.Unlock()
	}
}

// DeadLetters returns the messages given up on.
func (o *Outbox) DeadLetters() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Message, 0, len(o.dead))
	for _, m := range o.dead {
		out = append(out, *m)
	}
	return out
}

// Redrive moves a dead letter back to delivery.
func (o *Outbox) Redrive(key string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	m, ok := o.dead[key]
	if !ok {
		return fmt.Errorf("outbox: no dead letter with key %q", key)
	}
	delete(o.dead, key)
	m.NextAttempt = time.Time{}
	o.pending[key] = m
	return nil
}

// Close releases the outbox's storage.
func (o *Outbox) Close() error { return nil }
