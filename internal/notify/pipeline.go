package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/labelset"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/alertmanager"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/notify/pagerduty"
	"github.com/modelmon/modelmon/internal/notify/slack"
	"github.com/modelmon/modelmon/internal/notify/webhook"
)

// pipeline is what one configuration builds: the routing tree, per
// receiver the stages that enqueue its notifications, and the integrations
// that deliver them.
type pipeline struct {
	route *dispatch.Route
	stage amnotify.Stage
	// intervals are the configuration's named time intervals, which the
	// routes' mute_time_intervals and active_time_intervals name.
	intervals *timeinterval.Intervener
	tmpl      *template.Template
	// receivers holds every receiver's integrations by type, in
	// configuration order.
	receivers map[string]map[string][]*integration
}

// integration delivers notifications to one configured integration.
type integration struct {
	kind         string
	idx          int
	sendResolved bool
	send         func(context.Context, *notice.Notice) error
}

// integration returns the idx-th integration of kind of a receiver, or nil.
func (p *pipeline) integration(receiver, kind string, idx int) *integration {
	if p == nil {
		return nil
	}
	is := p.receivers[receiver][kind]
	if idx < 0 || idx >= len(is) {
		return nil
	}
	return is[idx]
}

// build turns c's route and receivers into a pipeline. It starts nothing and
// touches no live state, so a failed reload leaves the running one intact.
func (n *Notifier) build(c *alertconfig.Config) (*pipeline, error) {
	if c == nil || c.Route == nil {
		return nil, errors.New("no route configured")
	}
	tmpl, err := template.FromGlobs(c.Templates)
	if err != nil {
		return nil, fmt.Errorf("couldn't parse the templates: %w", err)
	}
	tmpl.ExternalURL = n.externalURL

	route := dispatch.NewRoute(c.Route, nil)
	p := &pipeline{route: route, tmpl: tmpl, receivers: map[string]map[string][]*integration{},
		intervals: timeinterval.NewIntervener(c.Intervals())}
	for _, r := range c.Receivers {
		if r == nil || r.Name == "" {
			return nil, errors.New("receiver without a name")
		}
		if p.receivers[r.Name] != nil {
			return nil, fmt.Errorf("receiver %q is not unique", r.Name)
		}
		is, err := n.integrations(r, tmpl)
		if err != nil {
			return nil, fmt.Errorf("receiver %q: %w", r.Name, err)
		}
		p.receivers[r.Name] = is
	}
	used := map[string]bool{}
	var missing error
	route.Walk(func(r *dispatch.Route) {
		if p.receivers[r.RouteOpts.Receiver] == nil && missing == nil {
			missing = fmt.Errorf("undefined receiver %q used in route", r.RouteOpts.Receiver)
		}
		used[r.RouteOpts.Receiver] = true
	})
	if missing != nil {
		return nil, missing
	}

	stages := make(amnotify.RoutingStage, len(used))
	for name := range used {
		var fanout amnotify.FanoutStage
		for _, kind := range integrations {
			for _, in := range p.receivers[name][kind] {
				fanout = append(fanout, n.integrationStage(name, in))
			}
		}
		stages[name] = fanout
	}
	// As in Alertmanager, a group whose route is outside its
	// active_time_intervals or inside one of its mute_time_intervals is
	// not notified at that flush; the dispatcher puts the route's names in
	// the flush's context.
	var stage amnotify.Stage = amnotify.MultiStage{
		&timeStage{Stage: amnotify.NewTimeActiveStage(p.intervals, n.amMetrics), n: n, intervals: p.intervals, reason: amnotify.SuppressedReasonActiveTimeInterval},
		&timeStage{Stage: amnotify.NewTimeMuteStage(p.intervals, n.amMetrics), n: n, intervals: p.intervals, reason: amnotify.SuppressedReasonMuteTimeInterval},
		stages,
	}
	if n.mutes != nil {
		var mute amnotify.Stage = amnotify.NewMuteStage(muter(n.mutes), n.amMetrics)
		if c.Suppression.NotifyResolved {
			mute = resolvedPass{mute: mute, muted: n.mutes}
		}
		stage = amnotify.MultiStage{mute, stage}
	}
	p.stage = n.gate.wrap(stage)
	return p, nil
}

// resolvedPass lets resolved alerts past the mute stage: a receiver told
// an alert fired is told it resolved, though it was suppressed since
// (suppression.notify_resolved). The resolved alerts the mute stage would
// have muted are named in the context (mutedResolvedKey): each
// integration's dedupStage lets one of them through only when it owes the
// integration its resolution (owedResolutions), so nobody hears of the
// resolution of an alert that was suppressed all along.
type resolvedPass struct {
	mute  amnotify.Stage
	muted func(model.LabelSet) bool
}

// Exec implements amnotify.Stage.
func (s resolvedPass) Exec(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
	var firing, resolved []*alert.Alert
	muted := map[model.Fingerprint]bool{}
	for _, a := range alerts {
		switch {
		case !a.Resolved():
			firing = append(firing, a)
		case s.muted(a.Labels):
			muted[a.Fingerprint()] = true
			fallthrough
		default:
			resolved = append(resolved, a)
		}
	}
	ctx, kept, err := s.mute.Exec(ctx, l, firing...)
	if err != nil {
		return ctx, nil, err
	}
	// Set even when empty: it tells the dedup stages to keep account of
	// the resolutions they owe.
	ctx = context.WithValue(ctx, mutedResolvedKey{}, muted)
	return ctx, append(kept, resolved...), nil
}

// mutedResolvedKey is the context key of the fingerprints of the resolved
// alerts that resolvedPass let past the mute stage.
type mutedResolvedKey struct{}

// owedKey is the key, in an integration's notification log entry of a
// group, of the alerts it was told fire and not yet told resolved: the
// resolutions suppression.notify_resolved owes it. An alert muted since it
// was notified drops out of the entry's firing alerts at the group's next
// notification, so the log alone forgets it was told.
const owedKey = "alertd_owed_resolutions"

// owedResolutions returns the hashes (alertHash) of the alerts whose
// resolution e's integration is owed: those it was told fire, in e or
// before (under owedKey), and not told resolved since.
func owedResolutions(e *nflogpb.Entry) map[uint64]bool {
	owed := map[uint64]bool{}
	if e == nil {
		return owed
	}
	for _, h := range e.FiringAlerts {
		owed[h] = true
	}
	if v, ok := nflog.NewStore(e).GetStr(owedKey); ok {
		for _, f := range strings.Split(v, ",") {
			if h, err := strconv.ParseUint(f, 16, 64); err == nil {
				owed[h] = true
			}
		}
	}
	return owed
}

// recordOwed keeps, in the notification log entry the flush of ctx will
// write, the resolutions owed after it: those owed before, and the alerts
// it tells fire, but those it tells resolved.
func recordOwed(ctx context.Context, owed map[uint64]bool) {
	store, ok := amnotify.NflogStore(ctx)
	if !ok {
		return
	}
	firing, _ := amnotify.FiringAlerts(ctx)
	resolved, _ := amnotify.ResolvedAlerts(ctx)
	next := maps.Clone(owed)
	for _, h := range firing {
		next[h] = true
	}
	for _, h := range resolved {
		delete(next, h)
	}
	if len(next) == 0 {
		store.Delete(owedKey)
		return
	}
	hs := make([]string, 0, len(next))
	for _, h := range slices.Sorted(maps.Keys(next)) {
		hs = append(hs, strconv.FormatUint(h, 16))
	}
	store.SetStr(owedKey, strings.Join(hs, ","))
}

// alertHash is the hash by which the notification log records an alert
// (Alertmanager's notify.hashAlert, unexported): xxhash of its label
// names and values, sorted by name, each followed by 0xff. Snapshots of
// the log written by any Alertmanager version depend on it staying so.
func alertHash(ls model.LabelSet) uint64 {
	names := make(model.LabelNames, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	slices.Sort(names)
	d := xxhash.New()
	for _, n := range names {
		d.WriteString(string(n))
		d.Write([]byte{0xff})
		d.WriteString(string(ls[n]))
		d.Write([]byte{0xff})
	}
	return d.Sum64()
}

// timeStage counts, logs and reports (Options.OnMute) the flushes that
// Alertmanager's TimeActiveStage or TimeMuteStage mutes: they say so only in
// metrics of their own, which alertd does not register.
type timeStage struct {
	amnotify.Stage
	n         *Notifier
	intervals *timeinterval.Intervener // the stage's
	reason    string                   // amnotify.SuppressedReason…
}

// Exec implements amnotify.Stage.
func (s *timeStage) Exec(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
	ctx, out, err := s.Stage.Exec(ctx, l, alerts...)
	if err != nil || len(alerts) == 0 || len(out) > 0 {
		return ctx, out, err
	}
	s.n.metrics.suppressed.WithLabelValues(s.reason).Add(float64(len(alerts)))
	m := Muted{Reason: s.reason, Alerts: alerts}
	m.TimeIntervals, _ = amnotify.MuteTimeIntervalNames(ctx)
	if s.reason == amnotify.SuppressedReasonActiveTimeInterval {
		m.TimeIntervals, _ = amnotify.ActiveTimeIntervalNames(ctx)
	} else if now, ok := amnotify.Now(ctx); ok {
		// Only the mute intervals that hold now mute it.
		if _, holding, err := s.intervals.Mutes(m.TimeIntervals, now); err == nil {
			m.TimeIntervals = holding
		}
	}
	m.Receiver, _ = amnotify.ReceiverName(ctx)
	m.GroupKey, _ = amnotify.GroupKey(ctx)
	m.Time, _ = amnotify.Now(ctx)
	l.Debug("Notification muted by the route's time intervals", "reason", s.reason, "time_intervals", m.TimeIntervals,
		"receiver", m.Receiver, "group_key", m.GroupKey, "alerts", len(alerts))
	if s.n.onMute != nil {
		s.n.onMute(m)
	}
	return ctx, out, err
}

// RouteLabels renders the labels of route r (its labels, which may be
// templates) for a group of alerts with groupLabels, with the running
// configuration's templates, as Alertmanager's dispatcher renders them for
// its notifications and its API; a label that fails to render is left
// out. A route without labels has none.
func (n *Notifier) RouteLabels(r *dispatch.Route, groupLabels model.LabelSet, alerts ...*alert.Alert) model.LabelSet {
	out := model.LabelSet{}
	p := n.live.Load()
	if r == nil || len(r.RouteOpts.Labels) == 0 || p == nil {
		return out
	}
	data := p.tmpl.Data(r.RouteOpts.Receiver, groupLabels, r.RouteOpts.Labels, amnotify.ReasonUnknown.String(), alerts...)
	render := p.tmpl.RouteLabelRenderer(data)
	for name := range r.RouteOpts.Labels {
		if v, err := render(string(name)); err == nil {
			out[name] = model.LabelValue(v)
		}
	}
	return out
}

// muter adapts Options.Mutes to Alertmanager's Muter.
type muter func(model.LabelSet) bool

// Mutes implements amnotify.Muter.
func (m muter) Mutes(_ context.Context, ls labelset.LabelSet) bool { return m(ls.LabelSet) }

// integrations builds r's integrations by type.
func (n *Notifier) integrations(r *alertconfig.Receiver, tmpl *template.Template) (map[string][]*integration, error) {
	out := map[string][]*integration{}
	add := func(kind string, sendResolved bool, send func(context.Context, *notice.Notice) error) {
		out[kind] = append(out[kind], &integration{kind: kind, idx: len(out[kind]), sendResolved: sendResolved, send: send})
	}
	for i, wh := range r.WebhookConfigs {
		nf, err := webhook.New(wh, tmpl)
		if err != nil {
			return nil, fmt.Errorf("webhook_configs[%d]: %w", i, err)
		}
		add(integrationWebhook, wh.SendResolved(), nf.Send)
	}
	for i, am := range r.AlertmanagerConfigs {
		nf, err := alertmanager.New(am, n.logger.With("receiver", r.Name, "integration", fmt.Sprintf("alertmanager[%d]", i)))
		if err != nil {
			return nil, fmt.Errorf("alertmanager_configs[%d]: %w", i, err)
		}
		add(integrationAlertmanager, am.SendResolved(), nf.Send)
	}
	for i, sc := range r.SlackConfigs {
		nf, err := slack.New(sc, r.Name, i, tmpl, n.outbox)
		if err != nil {
			return nil, fmt.Errorf("slack_configs[%d]: %w", i, err)
		}
		add(integrationSlack, sc.SendResolved(), nf.Send)
	}
	for i, pc := range r.PagerDutyConfigs {
		nf, err := pagerduty.New(pc)
		if err != nil {
			return nil, fmt.Errorf("pagerduty_configs[%d]: %w", i, err)
		}
		add(integrationPagerDuty, pc.SendResolved(), nf.Send)
	}
	if err := n.alertmanagerIntegrations(r, tmpl, add); err != nil {
		return nil, err
	}
	return out, nil
}

// integrationStage is one integration's pipeline: skip what was already
// notified (nflog), enqueue into the outbox, then log what was enqueued.
func (n *Notifier) integrationStage(receiver string, in *integration) amnotify.Stage {
	recv := &nflogpb.Receiver{GroupName: receiver, Integration: in.kind, Idx: uint32(in.idx)}
	return amnotify.MultiStage{
		&dedupStage{n: n, dedup: amnotify.NewDedupStage(resolvedSender(in.sendResolved), n.nflog, recv), recv: recv, group: groupRecordPrefix(receiver, in.kind, in.idx)},
		&enqueueStage{n: n, receiver: receiver, kind: in.kind, idx: in.idx, sendResolved: in.sendResolved},
		amnotify.NewSetNotifiesStage(n.nflog, recv, n.flags),
	}
}

// resolvedSender tells the dedup stage whether resolved alerts are sent.
type resolvedSender bool

// SendResolved implements amnotify.ResolvedSender.
func (r resolvedSender) SendResolved() bool { return bool(r) }

// alertmanagerEndsAt is the endsAt of firing alerts forwarded in the
// notification ctx belongs to.
func alertmanagerEndsAt(ctx context.Context) (t time.Time) { return alertmanager.EndsAt(ctx) }

// defaultExternalURL stands in for a nil Options.ExternalURL.
var defaultExternalURL = &url.URL{}
