package notify

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// errStopped is returned once Stop has been called.
var errStopped = errors.New("notifier is stopped")

// envelope is the outbox payload of a notification: what the integration's
// sender needs to build it again, at any later time, after a restart. It
// holds no secret: those stay in the configuration.
type envelope struct {
	// Index is the integration's index among the receiver's integrations
	// of its type.
	Index       int            `json:"index"`
	GroupKey    string         `json:"groupKey"`
	GroupLabels model.LabelSet `json:"groupLabels"`
	RouteLabels model.LabelSet `json:"routeLabels,omitempty"`
	Reason      string         `json:"notificationReason,omitempty"`
	// Alerts are the alerts sent; firing ones have no endsAt, so they do
	// not resolve while the message waits.
	Alerts []model.Alert `json:"alerts"`
	// FiringEndsAt is the endsAt of firing alerts forwarded to an
	// Alertmanager.
	FiringEndsAt time.Time         `json:"firingEndsAt,omitzero"`
	Extra        map[string]string `json:"extra,omitempty"`
}

// alerts returns e's alerts as Alertmanager's.
func (e *envelope) alerts() []*alert.Alert {
	out := make([]*alert.Alert, 0, len(e.Alerts))
	for _, a := range e.Alerts {
		out = append(out, alert.New(a, time.Time{}, false))
	}
	return out
}

// Fingerprints returns the fingerprints of the alerts a notification
// message of the outbox carries (a dead letter's, say); nil for another
// component's message, such as an action's.
func Fingerprints(m outbox.Message) []model.Fingerprint {
	var env envelope
	if !slices.Contains(integrations, m.Integration) || json.Unmarshal(m.Payload, &env) != nil {
		return nil
	}
	out := make([]model.Fingerprint, 0, len(env.Alerts))
	for _, a := range env.Alerts {
		out = append(out, a.Fingerprint())
	}
	return out
}

// notice builds the notification for a sender with tmpl.
func (e *envelope) notice(receiver, key string, tmpl *template.Template) *notice.Notice {
	as := e.alerts()
	d := tmpl.Data(receiver, e.GroupLabels, e.RouteLabels, e.Reason, as...)
	template.MarkRouteLabelsRendered(d)
	return &notice.Notice{Key: key, GroupKey: e.GroupKey, Data: d, Alerts: as, FiringEndsAt: e.FiringEndsAt, Extra: e.Extra}
}

// notificationKey is the idempotency key of a route's notification: a
// digest of the receiver, the integration, the group, the alerts sent with
// their state at stateAt and their start, and which repeat_interval since
// the group's first alert started it falls in at now. A flush that sends the same again — after a
// restart lost the notification log, or a reload — gets the same key, and
// the outbox drops it; a repeat after repeat_interval falls in the next
// interval and gets a new one.
func notificationKey(receiver, integration string, idx int, groupKey string, alerts []*alert.Alert, now, stateAt time.Time, repeat time.Duration) string {
	type entry struct {
		fp       model.Fingerprint
		resolved bool
		startsAt int64
	}
	es := make([]entry, 0, len(alerts))
	var first time.Time
	for _, a := range alerts {
		es = append(es, entry{a.Fingerprint(), a.ResolvedAt(stateAt), a.StartsAt.UnixNano()})
		if first.IsZero() || a.StartsAt.Before(first) {
			first = a.StartsAt
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].fp < es[j].fp })
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s[%d]\x00%s\x00", receiver, integration, idx, groupKey)
	var b [8]byte
	for _, e := range es {
		binary.BigEndian.PutUint64(b[:], uint64(e.fp))
		h.Write(b[:])
		if e.resolved {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
		binary.BigEndian.PutUint64(b[:], uint64(e.startsAt))
		h.Write(b[:])
	}
	var epoch int64
	if repeat > 0 && now.After(first) {
		epoch = int64(now.Sub(first) / repeat)
	}
	binary.BigEndian.PutUint64(b[:], uint64(epoch))
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// notifiedNamespace is the outbox state namespace of the groups whose
// firing alerts were notified and not yet resolved, by integration.
const notifiedNamespace = "notified_groups"

// groupRecordPrefix prefixes the notified-group records of an integration.
func groupRecordPrefix(receiver, kind string, idx int) string {
	return fmt.Sprintf("%s\x00%s[%d]\x00", receiver, kind, idx)
}

// dedupStage is Alertmanager's DedupStage, backed by the outbox file for
// one case. The notification log is written to disk every 15 minutes and
// on shutdown, so after a crash it may not know a group it notified; when
// that group then flushes with only resolved alerts, DedupStage, finding no
// entry, skips it ("the receiver doesn't know about them") and the resolve
// would be lost. The outbox file records, durably, which groups were
// notified firing: such a flush is sent.
type dedupStage struct {
	n     *Notifier
	dedup *amnotify.DedupStage
	recv  *nflogpb.Receiver // dedup's
	group string
}

// stateTimeKey is the context key of the time at which the flush's alerts
// are firing or resolved (withStateTime).
type stateTimeKey struct{}

// withStateTime records, after Alertmanager's DedupStage has split the
// alerts into firing and resolved by the wall clock, the time at which the
// later stages take their state: then. The flush's own time (notify.Now)
// is when its timer was due, which may come before an alert that the
// dispatcher already took as resolved ends; taken then, a resolve would be
// sent as the firing notification it follows, with that one's key, and
// the outbox would drop it as sent.
func withStateTime(ctx context.Context) context.Context {
	return context.WithValue(ctx, stateTimeKey{}, time.Now())
}

// stateTime is the time recorded by withStateTime, else now.
func stateTime(ctx context.Context, now time.Time) time.Time {
	if t, ok := ctx.Value(stateTimeKey{}).(time.Time); ok && t.After(now) {
		return t
	}
	return now
}

// Exec implements notify.Stage.
func (s *dedupStage) Exec(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
	gkey, _ := amnotify.GroupKey(ctx)
	muted, owing := ctx.Value(mutedResolvedKey{}).(map[model.Fingerprint]bool)
	var owed map[uint64]bool
	if owing {
		// suppression.notify_resolved: a muted alert's resolution goes
		// only to an integration told it fired.
		entries, err := s.n.nflog.Query(nflog.QGroupKey(gkey), nflog.QReceiver(s.recv))
		if err != nil && !errors.Is(err, nflog.ErrNotFound) {
			return ctx, nil, err
		}
		var last *nflogpb.Entry
		if len(entries) > 0 {
			last = entries[0]
		}
		owed = owedResolutions(last)
		alerts = slices.DeleteFunc(slices.Clone(alerts), func(a *alert.Alert) bool {
			return muted[a.Fingerprint()] && !owed[alertHash(a.Labels)]
		})
		if len(alerts) == 0 {
			return ctx, nil, nil
		}
	}
	ctx, out, err := s.dedup.Exec(ctx, l, alerts...)
	ctx = withStateTime(ctx)
	if owing && err == nil {
		recordOwed(ctx, owed)
	}
	if err != nil || len(out) > 0 {
		return ctx, out, err
	}
	firing, _ := amnotify.FiringAlerts(ctx)
	reason, _ := amnotify.NotificationReason(ctx)
	if len(firing) > 0 || reason != amnotify.ReasonDoNotNotify {
		return ctx, out, err
	}
	if _, notified := s.n.outbox.State(notifiedNamespace, s.group+gkey); !notified {
		return ctx, out, err
	}
	l.Debug("Group notified before a restart lost the notification log: sending its resolve", "aggrGroup", gkey)
	return amnotify.WithNotificationReason(ctx, amnotify.ReasonAllAlertsResolved), alerts, nil
}

// enqueueStage replaces Alertmanager's RetryStage: it hands a flush's
// notification to the outbox, which delivers and retries it durably. What
// the notification log records after it is what was enqueued.
type enqueueStage struct {
	n            *Notifier
	receiver     string
	kind         string
	idx          int
	sendResolved bool
}

// Exec implements notify.Stage.
func (s *enqueueStage) Exec(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
	if len(alerts) == 0 {
		return ctx, alerts, nil
	}
	sent := alerts
	if !s.sendResolved {
		firing, ok := amnotify.FiringAlerts(ctx)
		if !ok {
			return ctx, nil, errors.New("firing alerts missing")
		}
		if len(firing) == 0 {
			// Nothing to send; the log still records the resolved ones.
			return ctx, alerts, nil
		}
		sent = nil
		for _, a := range alerts {
			if a.Status() != model.AlertResolved {
				sent = append(sent, a)
			}
		}
	}
	groupKey, _ := amnotify.GroupKey(ctx)
	groupLabels, _ := amnotify.GroupLabels(ctx)
	routeLabels, _ := amnotify.RouteLabels(ctx)
	reason, ok := amnotify.NotificationReason(ctx)
	if !ok {
		reason = amnotify.ReasonUnknown
	}
	now, ok := amnotify.Now(ctx)
	if !ok {
		now = time.Now()
	}
	repeat, _ := amnotify.RepeatInterval(ctx)
	at := stateTime(ctx, now)
	env := envelope{Index: s.idx, GroupKey: groupKey, GroupLabels: groupLabels, RouteLabels: routeLabels, Reason: reason.String()}
	for _, a := range sent {
		m := a.Alert
		if !a.ResolvedAt(at) {
			m.EndsAt = time.Time{}
		}
		env.Alerts = append(env.Alerts, m)
	}
	if s.kind == integrationAlertmanager {
		env.FiringEndsAt = alertmanagerEndsAt(ctx)
	}
	payload, err := json.Marshal(env)
	if err != nil {
		return ctx, nil, fmt.Errorf("couldn't encode notification: %w", err)
	}
	m := &outbox.Message{
		Key:         notificationKey(s.receiver, s.kind, s.idx, groupKey, sent, now, at, repeat),
		Receiver:    s.receiver,
		Integration: s.kind,
		Entry:       s.idx,
		Payload:     payload,
	}
	if err := s.n.outbox.Enqueue(m); err != nil {
		l.Error("Failed to enqueue notification", "receiver", s.receiver, "integration", fmt.Sprintf("%s[%d]", s.kind, s.idx), "err", err)
		return ctx, nil, err
	}
	// Remember (durably) whether the group has firing alerts notified, for
	// dedupStage after a crash.
	firing := false
	for _, a := range sent {
		firing = firing || !a.ResolvedAt(at)
	}
	rec := groupRecordPrefix(s.receiver, s.kind, s.idx) + groupKey
	if _, had := s.n.outbox.State(notifiedNamespace, rec); firing || had {
		var v []byte
		if firing {
			v = []byte{1}
		}
		if err := s.n.outbox.SetState(notifiedNamespace, rec, v); err != nil {
			l.Warn("Failed to record the group as notified", "aggrGroup", groupKey, "err", err)
		}
	}
	return ctx, alerts, nil
}

// sender delivers the outbox's messages of one integration type with the
// integration the running configuration has for them, measuring each
// attempt.
type sender struct {
	n              *Notifier
	kind           string
	requests       prometheus.Counter
	requestsFailed prometheus.Counter
	latency        prometheus.Observer
}

func newSender(n *Notifier, kind string) *sender {
	return &sender{
		n: n, kind: kind,
		requests:       n.metrics.requests.WithLabelValues(kind),
		requestsFailed: n.metrics.requestsFailed.WithLabelValues(kind),
		latency:        n.metrics.latency.WithLabelValues(kind),
	}
}

// Send implements outbox.Sender.
func (s *sender) Send(ctx context.Context, m *outbox.Message) error {
	var env envelope
	if err := json.Unmarshal(m.Payload, &env); err != nil {
		return outbox.Permanent(fmt.Errorf("couldn't decode notification: %w", err))
	}
	p := s.n.live.Load()
	in := p.integration(m.Receiver, s.kind, env.Index)
	if in == nil {
		return outbox.Permanent(fmt.Errorf("receiver %q, %s[%d]: %w", m.Receiver, s.kind, env.Index, notice.ErrNotConfigured))
	}
	start := time.Now()
	err := in.send(ctx, env.notice(m.Receiver, m.Key, p.tmpl))
	s.latency.Observe(time.Since(start).Seconds())
	s.requests.Inc()
	if err != nil {
		s.requestsFailed.Inc()
	}
	return err
}

// entryOf returns the outbox's EntryOf: a notification stored before
// messages carried their entry has it in its payload (the envelope's
// index, which the sender delivers by), so it keeps its place in its
// entry's lane. Other components' messages are left to next, if any.
func entryOf(next func(outbox.Message) int) func(outbox.Message) int {
	return func(m outbox.Message) int {
		var env envelope
		if slices.Contains(integrations, m.Integration) && json.Unmarshal(m.Payload, &env) == nil {
			return env.Index
		}
		if next != nil {
			return next(m)
		}
		return 0
	}
}

// done is the outbox's OnDone: it counts the notification and reports it
// to OnNotify.
func (n *Notifier) done(m outbox.Message, err error) {
	var env envelope
	if json.Unmarshal(m.Payload, &env) != nil {
		return
	}
	if !slices.Contains(integrations, m.Integration) {
		return // another component's message (actions)
	}
	n.metrics.notifications.WithLabelValues(m.Integration).Inc()
	if err != nil {
		n.metrics.failed.WithLabelValues(m.Integration, failureReason(err)).Inc()
	}
	if n.onNotify != nil {
		n.onNotify(Notification{
			Receiver:    m.Receiver,
			Integration: fmt.Sprintf("%s[%d]", m.Integration, env.Index),
			GroupKey:    env.GroupKey,
			Alerts:      env.alerts(),
			Err:         err,
			Time:        time.Now(),
			Key:         m.Key,
			Extra:       env.Extra,
		})
	}
}

// failureReason maps the outbox's failure reasons to Alertmanager's, the
// values of alertd_notifications_failed_total's reason label.
func failureReason(err error) string {
	switch outbox.Reason(err) {
	case outbox.ReasonHTTP4xx:
		return amnotify.ClientErrorReason.String()
	case outbox.ReasonHTTP5xx:
		return amnotify.ServerErrorReason.String()
	case outbox.ReasonRateLimited:
		return amnotify.RateLimitedReason.String()
	case outbox.ReasonTimeout:
		return amnotify.ContextDeadlineExceededReason.String()
	}
	return amnotify.DefaultReason.String()
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
