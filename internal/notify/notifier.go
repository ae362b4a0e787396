package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/eventrecorder"
	"github.com/prometheus/alertmanager/featurecontrol"
	"github.com/prometheus/alertmanager/nflog"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/provider"
	"github.com/prometheus/alertmanager/provider/mem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
	"github.com/modelmon/modelmon/internal/statefile"
)

// Alertmanager's defaults (cmd/alertmanager flags), which alertd keeps.
const (
	nflogRetention              = 120 * time.Hour
	maintenanceInterval         = 15 * time.Minute
	alertGCInterval             = 30 * time.Minute
	dispatchMaintenanceInterval = 30 * time.Second
	defaultResolveTimeout       = 5 * time.Minute
)

// reconcileInterval is how often reconcile compares the dispatcher's
// aggregation groups with the alert store.
const reconcileInterval = 5 * time.Second

// Options configure a Notifier.
type Options struct {
	// Config provides Route, Receivers and Intake.ResolveTimeout.
	Config *alertconfig.Config
	// ExternalURL goes in webhook payloads' externalURL. Nil leaves it empty.
	ExternalURL *url.URL
	// StoragePath is the directory of the notification log's snapshot
	// (<path>/nflog), so that a restart does not notify again about groups
	// already notified. Empty keeps the log in memory only.
	StoragePath string
	// Logger is used for all logs, scoped by the caller (component=notify);
	// Alertmanager's dispatcher, alert store and notification log add their
	// own component key, as in Alertmanager. Nil discards logs.
	Logger *slog.Logger
	// Registerer gets the alertd_notification* metrics and Alertmanager's
	// own dispatcher, notification log and alert store metrics (under their
	// alertmanager_ names). Nil registers nothing. Each Notifier needs a
	// registerer of its own: a conflict makes New fail.
	Registerer prometheus.Registerer
	// OnNotify, if set, is called once per notification of a group to one
	// integration, after its retries, with the alerts it carried and its
	// error (nil when delivered). It runs on the delivering goroutine,
	// concurrently for different groups; it must return quickly and must not
	// call ApplyConfig or Stop, which wait for notifications in flight.
	OnNotify func(n Notification)
	// OnMute, if set, is called at each flush of a group that a route's
	// time intervals mute (nothing of it is notified), on the flushing
	// goroutine; the same rules as for OnNotify apply.
	OnMute func(m Muted)
	// Mutes, if set, is asked at every flush whether an alert (by its
	// labels) is muted, as Alertmanager's silences are: muted alerts are
	// left out of notifications. It must be safe for concurrent use.
	Mutes func(labels model.LabelSet) bool
	// Outbox configures the durable outbox notifications go through: its
	// Path defaults to <StoragePath>/outbox.db (a temporary file without
	// StoragePath), its Senders are added to the notifier's own (webhook,
	// alertmanager, slack, pagerduty) for other components' messages, and
	// InitialBackoff, MaxBackoff, MaxAge, Retention, SendTimeout and Now
	// apply as documented there. Its OnDone, if set, is called after the
	// notifier's own, for every message, the other components' too (an
	// action dead-lettered after MaxAge). Registerer and Logger are set by
	// New.
	Outbox outbox.Options
}

// Notification is one notification of a group to one integration.
type Notification struct {
	// Receiver is the receiver's name.
	Receiver string
	// Integration is the integration's type and index in the receiver,
	// e.g. "webhook[0]".
	Integration string
	// GroupKey identifies the aggregation group, as in webhook payloads.
	GroupKey string
	// Alerts are the alerts sent, resolved ones included when the
	// integration sends them. Firing alerts have a zero EndsAt.
	Alerts []*alert.Alert
	// Err is why the notification failed after its retries; nil on success.
	Err error
	// Time is when the notification ended.
	Time time.Time
	// Key is its idempotency key.
	Key string
	// Extra are the annotations SendToReceiver was given (event,
	// incident, level …); nil for a route's notification.
	Extra map[string]string
}

// Muted is a flush of a group that its route's time intervals muted.
type Muted struct {
	// Receiver is the route's receiver; GroupKey identifies the group.
	Receiver, GroupKey string
	// Reason is mute_time_interval (now is inside TimeIntervals, the
	// route's mute_time_intervals that hold now) or active_time_interval
	// (now is outside all of TimeIntervals, its active_time_intervals).
	Reason        string
	TimeIntervals []string
	// Alerts are the group's alerts that were not notified.
	Alerts []*alert.Alert
	// Time is the flush's.
	Time time.Time
}

// Notifier routes alerts through Alertmanager's routing tree into
// aggregation groups and notifies each group's receiver, as Alertmanager
// does: group_wait, group_interval, repeat_interval, send_resolved and
// continue behave the same, and the notification log keeps unchanged groups
// from being notified again before repeat_interval. Each notification goes
// into the durable outbox, which delivers it, retries it with backoff for
// up to a day (across restarts) and dead-letters what fails for good.
//
// Create it with New, then call Run. Put, ApplyConfig and Stop are safe for
// concurrent use.
type Notifier struct {
	logger      *slog.Logger
	externalURL *url.URL
	onNotify    func(Notification)
	onMute      func(Muted)
	mutes       func(model.LabelSet) bool
	snapshot    string

	metrics     *metrics
	amMetrics   *amnotify.Metrics
	dispMetrics *dispatch.DispatcherMetrics
	flags       featurecontrol.Flagger
	recorder    eventrecorder.Recorder
	nflog       *nflog.Log
	alerts      *mem.Alerts
	// source is what dispatchers subscribe to: alerts, except in tests.
	source     provider.Alerts
	gate       gate
	outbox     *outbox.Outbox
	outboxStop context.CancelFunc
	outboxDone chan struct{}
	// live is the running pipeline, which the outbox's senders deliver
	// with.
	live atomic.Pointer[pipeline]

	resolveTimeout atomic.Int64 // time.Duration
	stopped        atomic.Bool

	mu       sync.Mutex // serializes Run, ApplyConfig and Stop; guards below
	pipeline *pipeline
	// dispatcher is set under mu, and atomic for reconcile, which must not
	// take mu: Stop holds it while waiting for reconcile's goroutine.
	dispatcher atomic.Pointer[dispatch.Dispatcher]
	running    bool
	stopc      chan struct{}
	wg         sync.WaitGroup
}

// New builds a Notifier from o: the alert store, the notification log
// (loaded from its snapshot under StoragePath) and the pipeline for
// o.Config. It starts nothing but the alert store's garbage collection, so
// call Stop even if Run is never called.
func New(o Options) (*Notifier, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ExternalURL == nil {
		o.ExternalURL = defaultExternalURL
	}
	n := &Notifier{
		logger:      o.Logger,
		externalURL: o.ExternalURL,
		onNotify:    o.OnNotify,
		onMute:      o.OnMute,
		mutes:       o.Mutes,
		metrics:     newMetrics(),
		// Alertmanager's RetryStage needs its metrics; they stay
		// unregistered, the alertd_ ones above count the same things.
		amMetrics: amnotify.NewMetrics(nil, featurecontrol.NoopFlags{}),
		flags:     featurecontrol.NoopFlags{},
		recorder:  eventrecorder.NopRecorder(),
		stopc:     make(chan struct{}),
	}
	reg := &collectingRegisterer{}
	if o.StoragePath != "" {
		if err := os.MkdirAll(o.StoragePath, 0o777); err != nil {
			return nil, fmt.Errorf("couldn't create storage directory: %w", err)
		}
		n.snapshot = filepath.Join(o.StoragePath, "nflog")
		removeStaleSnapshots(n.snapshot, o.Logger)
	}
	var err error
	n.nflog, err = nflog.New(nflog.Options{
		SnapshotFile: n.snapshot,
		Retention:    nflogRetention,
		Logger:       o.Logger.With("component", "nflog"),
		Metrics:      reg,
	})
	if err != nil {
		return nil, fmt.Errorf("couldn't load notification log: %w", err)
	}
	ob := o.Outbox
	if ob.Path == "" && o.StoragePath != "" {
		ob.Path = filepath.Join(o.StoragePath, "outbox.db")
	}
	senders := map[string]outbox.Sender{}
	for k, s := range ob.Senders {
		senders[k] = s
	}
	for _, kind := range integrations {
		senders[kind] = newSender(n, kind)
	}
	ob.Senders, ob.Registerer = senders, reg
	if done := ob.OnDone; done != nil {
		ob.OnDone = func(m outbox.Message, err error) {
			n.done(m, err)
			done(m, err)
		}
	} else {
		ob.OnDone = n.done
	}
	ob.EntryOf = entryOf(ob.EntryOf)
	ob.Logger = o.Logger.With("component", "outbox")
	n.outbox, err = outbox.Open(ob)
	if err != nil {
		return nil, err
	}
	n.pipeline, err = n.build(o.Config)
	if err != nil {
		_ = n.outbox.Close()
		return nil, fmt.Errorf("couldn't build notification pipeline: %w", err)
	}
	n.live.Store(n.pipeline)
	n.initializeOutbox(n.pipeline)
	n.setResolveTimeout(o.Config)
	n.dispMetrics = dispatch.NewDispatcherMetrics(false, reg, n.flags)
	n.alerts, err = mem.NewAlerts(context.Background(), alertGCInterval, 0, nil, o.Logger, n.recorder, reg, n.flags)
	if err != nil {
		_ = n.outbox.Close()
		return nil, fmt.Errorf("couldn't create alert store: %w", err)
	}
	n.source = n.alerts
	if err := reg.register(o.Registerer, n.metrics.collectors()...); err != nil {
		n.alerts.Close()
		_ = n.outbox.Close()
		return nil, err
	}
	return n, nil
}

// initializeOutbox pre-creates the outbox metrics of p's integrations and
// deletes those of the receivers' integrations and entries p does not have
// (once their pending messages are delivered or dead-lettered).
// Alertmanager drops a removed receiver's notification metrics too (by
// resetting them all in Metrics.InitializeFor, with receiver names in
// metrics enabled); deleting only the removed ones keeps the others'
// counters from resetting.
func (n *Notifier) initializeOutbox(p *pipeline) {
	for name, kinds := range p.receivers {
		for kind, is := range kinds {
			if len(is) > 0 {
				n.outbox.InitializeFor(name, kind, len(is))
			}
		}
	}
	n.outbox.Retain(func(receiver, integration string, entry int) bool {
		return !slices.Contains(integrations, integration) || entry < len(p.receivers[receiver][integration])
	})
}

// Outbox returns the outbox notifications go through, for the API (dead
// letters, redrive) and for components with senders of their own.
func (n *Notifier) Outbox() *outbox.Outbox { return n.outbox }

// SendToReceiver enqueues a notification of alerts to every integration of
// the named receiver, outside the routing tree: escalation calls it. key is
// the notification's idempotency key (each integration's message gets
// key/<integration>[<index>]), so calling it again with the same key sends
// nothing new. extra are annotations of the notification — event (trigger,
// acknowledge, resolve, escalate), incident, level — added to every
// alert's annotations, and group_key, the group (incident) the
// notification belongs to: Slack threads and PagerDuty dedup keys follow
// it, so escalations join the route's thread and incident. Firing alerts'
// endsAt are dropped, so they do not resolve while the message waits.
func (n *Notifier) SendToReceiver(ctx context.Context, receiver, key string, alerts []*alert.Alert, extra map[string]string) error {
	if n.stopped.Load() {
		return errStopped
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" {
		return errors.New("a notification needs an idempotency key")
	}
	if len(alerts) == 0 {
		return errors.New("a notification needs alerts")
	}
	p := n.live.Load()
	kinds, ok := p.receivers[receiver]
	if !ok {
		return fmt.Errorf("unknown receiver %q", receiver)
	}
	now := time.Now()
	env := envelope{GroupKey: extra[notice.ExtraGroupKey], GroupLabels: model.LabelSet{}, Reason: "escalation", Extra: extra}
	if env.GroupKey == "" {
		env.GroupKey = key
	}
	for _, a := range alerts {
		m := a.Alert
		m.Annotations = m.Annotations.Clone()
		if m.Annotations == nil {
			m.Annotations = model.LabelSet{}
		}
		for k, v := range extra {
			if k != notice.ExtraGroupKey {
				m.Annotations[model.LabelName(k)] = model.LabelValue(v)
			}
		}
		if !a.ResolvedAt(now) {
			m.EndsAt = time.Time{}
		}
		env.Alerts = append(env.Alerts, m)
	}
	var ms []*outbox.Message
	for _, kind := range integrations {
		for _, in := range kinds[kind] {
			e := env
			e.Index = in.idx
			if kind == integrationAlertmanager {
				e.FiringEndsAt = now.Add(4 * time.Hour)
			}
			payload, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("couldn't encode notification: %w", err)
			}
			ms = append(ms, &outbox.Message{
				Key:         fmt.Sprintf("%s/%s[%d]", key, kind, in.idx),
				Receiver:    receiver,
				Integration: kind,
				Entry:       in.idx,
				Payload:     payload,
			})
		}
	}
	return n.outbox.Enqueue(ms...)
}

func (n *Notifier) setResolveTimeout(c *alertconfig.Config) {
	d := time.Duration(c.Intake.ResolveTimeout)
	if d <= 0 {
		d = defaultResolveTimeout
	}
	n.resolveTimeout.Store(int64(d))
}

// Run starts the notification log's maintenance and the dispatcher, which
// takes the alerts already put. It returns once the dispatcher has loaded
// them. Calls after the first, or after Stop, do nothing.
func (n *Notifier) Run() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running || n.stopped.Load() {
		return
	}
	n.running = true
	n.wg.Go(func() {
		n.nflog.Maintenance(maintenanceInterval, n.snapshot, n.stopc, n.maintain)
	})
	ctx, cancel := context.WithCancel(context.Background())
	n.outboxStop, n.outboxDone = cancel, make(chan struct{})
	go func() {
		defer close(n.outboxDone)
		n.outbox.Run(ctx)
	}()
	n.startDispatcher(n.pipeline)
	n.wg.Go(func() {
		t := time.NewTicker(reconcileInterval)
		defer t.Stop()
		var behind map[model.Fingerprint]time.Time
		for {
			select {
			case <-n.stopc:
				return
			case <-t.C:
				behind = n.reconcile(behind)
			}
		}
	})
}

// maintain is the notification log's maintenance, which Maintenance runs
// every maintenanceInterval and once more as it stops: as Alertmanager's,
// it forgets expired entries and writes the snapshot, but with
// statefile.WriteFile. Alertmanager's writes to a temporary file of a
// random name that a failed write (a full disk) leaves behind, one more at
// each attempt, and renames it over the last snapshot without flushing it
// to the disk, so a crash soon after can leave an empty one. It also
// writes with the log's lock held, which the notification pipeline takes
// to record each notification; the snapshot is taken into memory instead,
// and written without it.
func (n *Notifier) maintain() (int64, error) {
	if _, err := n.nflog.GC(); err != nil {
		return 0, err
	}
	if n.snapshot == "" {
		return 0, nil
	}
	var b bytes.Buffer
	size, err := n.nflog.Snapshot(&b)
	if err != nil {
		return size, err
	}
	return size, statefile.WriteFile(n.snapshot, func(w io.Writer) error {
		_, err := w.Write(b.Bytes())
		return err
	})
}

// removeStaleSnapshots removes the temporary files that Alertmanager's
// snapshot writes left beside the snapshot when they failed (see
// maintain): the snapshot's name, a dot and a random hexadecimal number.
func removeStaleSnapshots(snapshot string, logger *slog.Logger) {
	entries, _ := os.ReadDir(filepath.Dir(snapshot))
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), filepath.Base(snapshot)+".")
		if !ok || !e.Type().IsRegular() || len(suffix) < 8 || len(suffix) > 16 || strings.Trim(suffix, "0123456789abcdef") != "" {
			continue
		}
		p := filepath.Join(filepath.Dir(snapshot), e.Name())
		if err := os.Remove(p); err != nil {
			logger.Warn("Failed to remove what a failed notification log snapshot left", "file", p, "err", err)
			continue
		}
		logger.Info("Removed what a failed notification log snapshot left", "file", p)
	}
}

// reconcile re-delivers to the dispatcher every alert that one of its
// aggregation groups holds an older version of than the alert store, in
// this check and in the one before (behind, which it returns for the next),
// with the same latest version. Alertmanager's dispatcher ingests alert
// updates with several goroutines, so two updates of one alert that come
// together can be inserted out of order, and the group then keeps the older
// one: a resolve that came right after a firing update would not be
// notified until the alert's endsAt, or ever. Putting the store's version
// again, long after both, sets the group right. An update the dispatcher is
// still ingesting is behind for one check at most; normally nothing is,
// and the check builds no groups.
func (n *Notifier) reconcile(behind map[model.Fingerprint]time.Time) map[model.Fingerprint]time.Time {
	d := n.dispatcher.Load()
	if d == nil {
		return nil
	}
	var stale []*alert.Alert
	next := map[model.Fingerprint]time.Time{}
	_, _, err := d.Groups(context.Background(), func(*dispatch.Route) bool { return true },
		func(a *alert.Alert, _ time.Time) (alert.AlertStatus, bool) {
			fp := a.Fingerprint()
			if _, ok := next[fp]; ok {
				return alert.AlertStatus{}, false
			}
			cur, err := n.alerts.Get(fp)
			if err != nil || !cur.UpdatedAt.After(a.UpdatedAt) {
				return alert.AlertStatus{}, false
			}
			next[fp] = cur.UpdatedAt
			if t, ok := behind[fp]; ok && t.Equal(cur.UpdatedAt) {
				stale = append(stale, cur)
			}
			return alert.AlertStatus{}, false // nothing to build
		})
	if err != nil || len(stale) == 0 {
		return next
	}
	if err := n.alerts.Put(context.Background(), stale...); err != nil {
		n.logger.Error("Failed to re-deliver alerts to the dispatcher", "alerts", len(stale), "err", err)
		return next
	}
	n.metrics.redelivered.Add(float64(len(stale)))
	n.logger.Info("Aggregation groups held older versions of alerts than the alert store; re-delivered the latest",
		"alerts", len(stale), "first", stale[0].String())
	for _, a := range stale {
		delete(next, a.Fingerprint())
	}
	return next
}

// startDispatcher runs a dispatcher for p, waits for it to load the stored
// alerts and makes it n's.
func (n *Notifier) startDispatcher(p *pipeline) {
	d := dispatch.NewDispatcher(n.source, p.route, p.stage, p.intervals, timeout, dispatchMaintenanceInterval,
		nil, n.logger, n.recorder, n.dispMetrics, p.tmpl)
	go d.Run(time.Now())
	d.WaitForLoading()
	n.dispatcher.Store(d)
}

// timeout gives a flush's notifications until the next flush, and at least
// notify.MinTimeout, as Alertmanager does.
func timeout(d time.Duration) time.Duration {
	return max(d, amnotify.MinTimeout)
}

// Put adds alerts to the store, as Alertmanager's POST /api/v2/alerts does:
// a missing StartsAt becomes now (or EndsAt), a missing EndsAt becomes now
// plus Intake.ResolveTimeout with Timeout set, a missing UpdatedAt becomes
// now and empty labels are dropped. Invalid alerts are skipped and reported
// in the error; the valid ones are still added. Put keeps alerts that need
// no change, so callers must not modify them afterwards.
func (n *Notifier) Put(alerts ...*alert.Alert) error {
	if n.stopped.Load() {
		return errStopped
	}
	var (
		now  = time.Now()
		rt   = time.Duration(n.resolveTimeout.Load())
		out  []*alert.Alert // nil while alerts can be passed as they are
		errs []error
	)
	for i, a := range alerts {
		b, err := prepare(a, now, rt)
		if (err != nil || b != a) && out == nil {
			out = make([]*alert.Alert, i, len(alerts))
			copy(out, alerts[:i])
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out != nil {
			out = append(out, b)
		}
	}
	if out == nil {
		out = alerts
	}
	if err := n.alerts.Put(context.Background(), out...); err != nil {
		return fmt.Errorf("couldn't store alerts: %w", err)
	}
	return errors.Join(errs...)
}

// prepare returns a, or a completed copy of it, and an error if it is invalid.
func prepare(a *alert.Alert, now time.Time, resolveTimeout time.Duration) (*alert.Alert, error) {
	if a == nil {
		return nil, errors.New("invalid alert: nil")
	}
	empty := hasEmptyValue(a.Labels)
	if !empty && !a.StartsAt.IsZero() && !a.EndsAt.IsZero() && !a.UpdatedAt.IsZero() {
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("invalid alert %s: %w", a.Labels, err)
		}
		return a, nil
	}
	m := a.Alert
	if empty {
		m.Labels = make(model.LabelSet, len(a.Labels))
		for k, v := range a.Labels {
			if v != "" {
				m.Labels[k] = v
			}
		}
	}
	if m.StartsAt.IsZero() {
		m.StartsAt = now
		if !m.EndsAt.IsZero() {
			m.StartsAt = m.EndsAt
		}
	}
	timedOut := a.Timeout
	if m.EndsAt.IsZero() {
		m.EndsAt = now.Add(resolveTimeout)
		timedOut = true
	}
	updated := a.UpdatedAt
	if updated.IsZero() {
		updated = now
	}
	if err := alert.Validate(&m); err != nil {
		return nil, fmt.Errorf("invalid alert %s: %w", m.Labels, err)
	}
	return alert.New(m, updated, timedOut), nil
}

func hasEmptyValue(ls model.LabelSet) bool {
	for _, v := range ls {
		if v == "" {
			return true
		}
	}
	return false
}

// ApplyConfig switches to c's route and receivers and its resolve timeout.
// As in Alertmanager's reloader, everything that can fail is built first:
// on error the running configuration stays. Then the running dispatcher
// is stopped, cancelling notifications in flight, and a new one takes the
// stored alerts; the notification log keeps groups that were notified from
// being notified again.
func (n *Notifier) ApplyConfig(c *alertconfig.Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped.Load() {
		return errStopped
	}
	p, err := n.build(c)
	if err != nil {
		return fmt.Errorf("couldn't build notification pipeline: %w", err)
	}
	n.pipeline = p
	n.live.Store(p)
	n.initializeOutbox(p)
	n.setResolveTimeout(c)
	if n.running {
		n.dispatcher.Load().Stop()
		n.startDispatcher(p)
	}
	n.logger.Debug("Notification pipeline reloaded")
	return nil
}

// Stop stops the dispatcher, cancelling notifications in flight, waits for
// them and the background goroutines to end, and writes the notification
// log's snapshot. Later calls do nothing.
func (n *Notifier) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped.Swap(true) {
		return
	}
	if d := n.dispatcher.Load(); d != nil {
		d.Stop()
	}
	n.gate.close()
	close(n.stopc) // the maintenance writes the snapshot as it ends
	n.wg.Wait()
	n.alerts.Close()
	if n.outboxStop != nil {
		// Attempts in flight get the outbox's shutdown grace to finish;
		// those still going then are cancelled and stay pending.
		n.outboxStop()
		<-n.outboxDone
	}
	if err := n.outbox.Close(); err != nil {
		n.logger.Error("Failed to close the outbox", "err", err)
	}
}
