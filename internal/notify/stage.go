package notify

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/alert"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
)

// errStopped is returned once Stop has been called.
var errStopped = errors.New("notifier is stopped")

// delivery records what RetryStage did through one integration during one
// notification: the attempts, the alerts they carried and the reason of the
// failure that counts, chosen as RetryStage chooses it.
type delivery struct {
	attempts int
	sent     []*alert.Alert
	err      error
	reason   amnotify.Reason
}

type deliveryKey struct{}

// observe records one attempt's verdict. Like RetryStage, a retryable failure
// seen after the context ended only counts if nothing failed before and it
// has a specific reason.
func (d *delivery) observe(ctx context.Context, v amnotify.NotifyVerdict, alerts []*alert.Alert) {
	d.attempts++
	d.sent = alerts
	err := v.Err()
	if err == nil {
		return
	}
	if !v.ShouldRetry() || ctx.Err() == nil || (d.err == nil && v.Reason() != amnotify.DefaultReason) {
		d.err, d.reason = err, v.Reason()
	}
}

// failureReason is the reason label for a notification that ended with an
// error while ctx was in force.
func (d *delivery) failureReason(ctx context.Context) string {
	switch {
	case d.err != nil:
		return d.reason.String()
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return amnotify.ContextDeadlineExceededReason.String()
	case errors.Is(ctx.Err(), context.Canceled):
		return amnotify.ContextCanceledReason.String()
	}
	return amnotify.DefaultReason.String()
}

// instrumented wraps an integration's notifier to measure each attempt and
// report it to the delivery in the context.
type instrumented struct {
	notifier       amnotify.Notifier
	requests       prometheus.Counter
	requestsFailed prometheus.Counter
	latency        prometheus.Observer
}

func newInstrumented(n amnotify.Notifier, integration string, m *metrics) *instrumented {
	return &instrumented{
		notifier:       n,
		requests:       m.requests.WithLabelValues(integration),
		requestsFailed: m.requestsFailed.WithLabelValues(integration),
		latency:        m.latency.WithLabelValues(integration),
	}
}

// Notify implements notify.Notifier.
func (n *instrumented) Notify(ctx context.Context, alerts ...*alert.Alert) amnotify.NotifyVerdict {
	start := time.Now()
	v := n.notifier.Notify(ctx, alerts...)
	n.latency.Observe(time.Since(start).Seconds())
	n.requests.Inc()
	if v.Err() != nil {
		n.requestsFailed.Inc()
	}
	if d, ok := ctx.Value(deliveryKey{}).(*delivery); ok {
		d.observe(ctx, v, alerts)
	}
	return v
}

// deliverStage runs Alertmanager's RetryStage for one integration, then
// counts the notification and reports it to OnNotify.
type deliverStage struct {
	retry         *amnotify.RetryStage
	receiver      string
	integration   string // e.g. webhook[0]
	kind          string // e.g. webhook
	notifications prometheus.Counter
	failed        *prometheus.CounterVec
	onNotify      func(Notification)
}

// Exec implements notify.Stage.
func (s *deliverStage) Exec(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
	d := &delivery{}
	out, res, err := s.retry.Exec(context.WithValue(ctx, deliveryKey{}, d), l, alerts...)
	if d.attempts == 0 && err == nil {
		// Nothing to send: only resolved alerts and send_resolved is false.
		return out, res, nil
	}
	s.notifications.Inc()
	if err != nil {
		s.failed.WithLabelValues(s.kind, d.failureReason(ctx)).Inc()
	}
	if s.onNotify != nil {
		sent := d.sent
		if sent == nil {
			sent = alerts
		}
		groupKey, _ := amnotify.GroupKey(ctx)
		s.onNotify(Notification{
			Receiver:    s.receiver,
			Integration: s.integration,
			GroupKey:    groupKey,
			Alerts:      sent,
			Err:         err,
			Time:        time.Now(),
		})
	}
	return out, res, err
}

// gate lets Stop wait for the notifications in flight: the dispatcher's
// Stop cancels them but does not wait for its aggregation groups.
type gate struct {
	mu      sync.RWMutex
	stopped bool
}

// wrap returns s, run only while the gate is open.
func (g *gate) wrap(s amnotify.Stage) amnotify.Stage {
	return amnotify.StageFunc(func(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.stopped {
			return ctx, nil, errStopped
		}
		return s.Exec(ctx, l, alerts...)
	})
}

// close waits for the stages in flight and refuses new ones.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
}
