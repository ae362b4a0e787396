package alertd

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/classify"
)

// Source says where an alert came from.
type Source string

// The sources of alerts.
const (
	// SourceRule is an alerting rule evaluated by alertd.
	SourceRule Source = "rule"
	// SourcePrometheus is an alert a Prometheus (or anything speaking
	// Alertmanager's API v2) posted to /api/v2/alerts.
	SourcePrometheus Source = "prometheus"
	// SourceAlertmanager is an alert an Alertmanager delivered to the webhook
	// intake.
	SourceAlertmanager Source = "alertmanager"
	// SourceAlertd is an alert about alertd itself, such as its data source
	// being down.
	SourceAlertd Source = "alertd"
)

var sources = []Source{SourceRule, SourcePrometheus, SourceAlertmanager, SourceAlertd}

// Decision is one entry of an alert's history: which stage decided what, and
// why. Together they answer "why did (or didn't) this page me?".
type Decision struct {
	Time  time.Time `json:"time"`
	Stage string    `json:"stage"`
	// Action is what the stage did: received, restored (kept across a
	// restart), updated, resolved, suppressed, routed, notified, failed,
	// held.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// Alert is an alert in the pipeline: Alertmanager's alert model, plus its
// fingerprint, source, the value that triggered it when known, and the
// history of decisions taken about it.
type Alert struct {
	model.Alert
	// UpdatedAt is when alertd last received the alert; Timeout is set when
	// the source gave no end time and alertd set one (resolve_timeout).
	UpdatedAt   time.Time
	Timeout     bool
	Fingerprint model.Fingerprint
	Source      Source
	// Value is the rule expression's value at the last evaluation; NaN when
	// the source does not say.
	Value float64
	// Suppressed is set by a stage that keeps the alert from notifications;
	// the alert is still stored and shown.
	Suppressed bool
	History    []Decision
	// sourceAnnotations are the annotations as the source sent them, before
	// stages added theirs: changes are detected on these.
	sourceAnnotations model.LabelSet
	// classification is the classify stage's latest decision; nil when
	// classification is off.
	classification *classify.Decision
	// held is what the pipeline remembers of the alert's suppression in
	// its current firing episode, to release it when it escalates.
	held held
	// relayGroups are the notification groups of the Alertmanagers that
	// relayed the firing alert whose latest notification held it (see
	// relay.go); none once it resolved.
	relayGroups []string
	// relayFrom are the Alertmanagers and receivers that relayed the
	// firing alert, whose API alertd asks about it (upstream.go);
	// relayedAt is when a webhook last delivered it, firing or resolved
	// (zero after a restart). upstream is set while the Alertmanager that
	// relayed it silences or inhibits it there, and missed counts the
	// checks in a row that found it no longer firing there. All but
	// relayedAt and upstream are cleared once it resolves; upstream stays
	// when the checks found it resolved while suppressed, so that its
	// resolution is too. awaiting is set while a check of its
	// Alertmanager's API, about a notification that left it out, is
	// under way: it holds the alert (upstreamCheck).
	relayFrom []relaySource
	relayedAt time.Time
	upstream  *upstreamMark
	missed    int
	awaiting  *upstreamCheck
}

// Stage is one step of the alert pipeline. Stages run in order on every
// alert that enters or changes, before routing and notification. A stage
// returns its decision (Action empty: nothing to record); it may set
// a.Suppressed, in which case later stages still see the alert but it is
// not notified, and then returns the Action "suppressed". Stages must not
// keep a and are called from one goroutine at a time.
//
// The pipeline releases an alert a stage suppresses when it escalates in
// severity (see escalation.go), unless the stage implements operatorStage.
//
// Anomaly scoring, classification, false-positive suppression and escalation
// plug in here.
type Stage interface {
	Name() string
	Process(ctx context.Context, now time.Time, a *Alert) Decision
}

// maxHistory bounds each alert's history; the oldest decisions go first,
// except the first one (how the alert arrived).
const maxHistory = 64

// store keeps every current alert by fingerprint with its history, runs new
// and changed alerts through the stages, and hands them to the notifier.
type store struct {
	mu     sync.Mutex
	alerts map[model.Fingerprint]*Alert
	// families indexes the alerts by their labels without severity.
	families map[model.Fingerprint]map[model.Fingerprint]struct{}
	stages   []Stage
	// gen counts the changes to alerts (added, replaced, removed), for the
	// stages that index them (inhibit); pushedGen counts those received
	// from a Prometheus or an Alertmanager, for the file that keeps them
	// across restarts (pushed.go).
	gen, pushedGen uint64
	// inhibitor, when it has rules, looks again at the firing alerts when
	// an alert that inhibits others fires.
	inhibitor *inhibitor
	put       func(...*amalert.Alert) error
	route     func(model.LabelSet) []string
	// retention is how long resolved alerts stay visible.
	retention time.Duration
	now       func() time.Time

	received   *prometheus.CounterVec
	suppressed *prometheus.CounterVec

	// ledger, when set, durably records each alert's path (ledger.go);
	// groups names the notification groups of an alert's labels, the
	// incidents it is grouped into (incident.go).
	ledger *ledger
	groups func(model.LabelSet) []alertGroup
	// onFire, when set, is called with an alert that fires unsuppressed
	// (actions.go triggers actions); it runs with s.mu held.
	onFire func(now time.Time, a *Alert)
	// saves write the state files of stages that only mark their state
	// changed while s.mu is held (the flap stage's), and send the actions
	// triggered meanwhile; see commit.
	saves []func()
}

func newStore(reg prometheus.Registerer, put func(...*amalert.Alert) error, route func(model.LabelSet) []string, retention time.Duration, now func() time.Time) *store {
	s := &store{
		now:       now,
		alerts:    map[model.Fingerprint]*Alert{},
		families:  map[model.Fingerprint]map[model.Fingerprint]struct{}{},
		put:       put,
		route:     route,
		retention: retention,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_alerts_received_total",
			Help: "The total number of alerts that entered the pipeline, new or changed, by source.",
		}, []string{"source"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_alerts_suppressed_total",
			Help: "The total number of times a pipeline stage kept an alert from notifications, by the stage (silence, …).",
		}, []string{"reason"}),
	}
	for _, src := range sources {
		s.received.WithLabelValues(string(src))
	}
	reg.MustRegister(s.received, s.suppressed, s)
	return s
}

// receive takes alerts from one source into the pipeline. Alerts that are new
// or changed (state, annotations, end time moved by more than a refresh) are
// recorded in their history and go through the stages; every alert that is
// not suppressed is handed to the notifier, which deduplicates. It returns
// the first error of the notifier.
func (s *store) receive(ctx context.Context, now time.Time, src Source, in []*Alert, reason string) error {
	return s.take(ctx, now, src, in, "received", reason)
}

// take is receive with the action recorded for an alert the store did not
// hold: "received", or "restored" for one kept across a restart.
func (s *store) take(ctx context.Context, now time.Time, src Source, in []*Alert, arrived, reason string) error {
	s.mu.Lock()
	var out []*amalert.Alert
	// An alert that may inhibit others fired, or resolved.
	inhibits, uninhibits := false, false
	for _, a := range in {
		a.Fingerprint = a.Labels.Fingerprint()
		a.Source = src
		old, ok := s.alerts[a.Fingerprint]
		action, why := "", reason
		unsilenced := ""
		switch {
		case !ok:
			action = arrived
		case old.ResolvedAt(now) != a.ResolvedAt(now):
			if a.ResolvedAt(now) {
				action = "resolved"
			} else {
				action = "refired"
			}
		case !old.sourceAnnotations.Equal(a.Annotations):
			action = "updated"
		}
		a.sourceAnnotations = a.Annotations
		if ok {
			// Keep what earlier stages learnt; take the new labels,
			// annotations and times, as Alertmanager's merge does.
			a.History = old.History
			a.Suppressed = old.Suppressed
			a.classification = old.classification
			a.held = old.held
			if action == "" {
				// Unchanged: keep what the stages added.
				a.Annotations = old.Annotations
			}
			if action == "resolved" || action == "refired" {
				// A new firing episode escalates from where it starts.
				a.held = held{}
			}
			if old.StartsAt.Before(a.StartsAt) && !old.ResolvedAt(now) {
				a.StartsAt = old.StartsAt
			}
			if !old.ResolvedAt(now) {
				a.relayGroups = mergeOnce(old.relayGroups, a.relayGroups)
				a.relayFrom = mergeOnce(old.relayFrom, a.relayFrom)
				switch {
				case src != SourceAlertmanager:
				case a.relayedAt.IsZero():
					// Not a webhook's delivery: what the checks learnt
					// stands, and a check under way still holds it.
					a.relayedAt, a.upstream, a.missed, a.awaiting = old.relayedAt, old.upstream, old.missed, old.awaiting
				case old.upstream != nil:
					// Its Alertmanager notifies it again, so no longer
					// silences or inhibits it.
					unsilenced = "notified again by the Alertmanager that silenced or inhibited it, which no longer does"
				case old.awaiting != nil:
					// What the check would have learnt: it fires there.
					unsilenced = "notified again by its Alertmanager while its API was asked about it"
				}
			}
		} else {
			if since, ok := s.ruleFiringSince(now, a); ok {
				// A rule's alert that fired before a restart and never
				// resolved: Prometheus's rule manager fires it again
				// with a new start, after its `for` or the evaluations
				// of the for-state restore, however long it fired (a
				// hysteresis held it, say). It keeps its start, as
				// pushed alerts do, so that a min_firing_duration hold
				// it had served does not hold it again, and one it was
				// serving does not start over.
				a.StartsAt = since
				why += fmt.Sprintf("; firing since %s, before alertd restarted", since.UTC().Format(time.RFC3339Nano))
			}
			s.addFamily(a)
		}
		if a.ResolvedAt(now) {
			// What its Alertmanager silenced or inhibited it by stays,
			// unless it delivered the resolution: resolved there while
			// it did, the Alertmanager told nobody, and neither does
			// alertd (but for suppression.notify_resolved).
			a.relayGroups, a.relayFrom, a.missed, a.awaiting = nil, nil, 0, nil
		}
		s.alerts[a.Fingerprint] = a
		s.gen++
		if src.pushed() {
			s.pushedGen++
		}
		if action != "" && s.inhibitor != nil && s.inhibitor.isSource(a) {
			if a.ResolvedAt(now) {
				uninhibits = true
			} else {
				inhibits = true
			}
		}
		if action != "" {
			s.received.WithLabelValues(string(src)).Inc()
			a.record(Decision{Time: now, Stage: "intake", Action: action, Reason: why})
			s.ledger.observe(now, a)
			s.runStages(ctx, now, a, false)
			if !a.Suppressed && action != "resolved" {
				if rs := s.route(a.Labels); len(rs) > 0 {
					a.record(Decision{Time: now, Stage: "route", Action: "routed", Reason: fmt.Sprintf("matches the routes to %v", rs)})
				}
				s.firesUnsuppressed(now, a)
			}
		}
		if action == "" && unsilenced != "" && a.Suppressed {
			s.reconsider(ctx, now, a, unsilenced)
		}
		// A suppressed alert's resolution goes to the notifier too: it
		// may hold the alert from a send before the suppression, and its
		// mute stage decides (suppression.notify_resolved). So does its
		// new end time while it fires: the notifier's copy would
		// otherwise time out at the end it had when it was suppressed,
		// and its resolution be sent while it still fires.
		if !a.Suppressed || action == "resolved" || (ok && !a.ResolvedAt(now) && !a.EndsAt.Equal(old.EndsAt)) {
			out = append(out, amalert.New(a.Alert, a.UpdatedAt, a.Timeout))
		}
	}
	if inhibits {
		// The alerts it inhibits may have come before it, in this batch
		// or earlier: they are muted before their group is flushed.
		s.suppressWithLocked(ctx, now, s.inhibitor)
		out = slices.DeleteFunc(out, func(x *amalert.Alert) bool {
			return s.alerts[x.Fingerprint()].Suppressed && !x.Resolved()
		})
	}
	if uninhibits {
		// What it inhibited is notified now, not at the next release.
		out = append(out, s.releaseLocked(ctx, now)...)
	}
	s.mu.Unlock()
	s.commit()
	if len(out) == 0 {
		return nil
	}
	return s.put(out...)
}

// commit writes what the stages recorded while s.mu was held: the
// ledger's events, then the stages' state files, and puts the actions
// they triggered into the outbox (actionRunner.commit). Called without
// s.mu held, so that a slow disk holds up the caller, not the pipeline.
func (s *store) commit() {
	s.ledger.commit()
	for _, save := range s.saves {
		save()
	}
}

// ruleFiringSince returns when a rule's alert the store does not hold
// started firing, if the ledger has it firing since before its start: it
// fired before alertd restarted, and did not resolve since (the restart's
// reconcile has not resolved it). Called with s.mu held.
func (s *store) ruleFiringSince(now time.Time, a *Alert) (time.Time, bool) {
	if a.Source != SourceRule || a.ResolvedAt(now) {
		return time.Time{}, false
	}
	since, ok := s.ledger.firingSince(a.Fingerprint.String())
	if !ok || !since.Before(a.StartsAt) {
		return time.Time{}, false
	}
	return since, true
}

// runStages runs the stages over a, recording their decisions. With
// again (a suppressed alert looked at once more), a decision that repeats
// the stage's previous one is not recorded or counted again. An alert that
// escalated since a stage first suppressed it is released, unless an
// operator's silence or maintenance window holds it; runStages then
// returns why. Called with s.mu held.
func (s *store) runStages(ctx context.Context, now time.Time, a *Alert, again bool) (escalated string) {
	a.Suppressed = false
	var counted []Decision
	byOperator, byStage := false, false
	for _, st := range s.stages {
		before := a.Suppressed
		d := st.Process(ctx, now, a)
		if d.Action == "" {
			continue
		}
		d.Time, d.Stage = now, st.Name()
		if d.Action == "held" {
			// Until the stage knows more (upstream): no escalation
			// releases it meanwhile.
			byOperator = true
		}
		if d.Action == "suppressed" {
			_, op := st.(operatorStage)
			switch {
			case op:
				byOperator = true
			case a.held.escalated != "":
				// Released on escalation earlier in this firing
				// episode: the stage no longer holds it.
				a.Suppressed = before
				d.Action, d.Reason = "overridden", d.Reason+"; "+a.held.escalated
			default:
				byStage = true
			}
		}
		if again && a.lastDecision(d.Stage).sameAs(d) {
			continue
		}
		a.record(d)
		if d.Action == "suppressed" {
			counted = append(counted, d)
		}
	}
	if byStage {
		if !a.held.set {
			a.held = held{set: true, priority: string(a.Annotations[annotationPriority]), severity: string(a.Labels[severityLabel])}
		}
		if !byOperator {
			if why := s.escalation(a, now); why != "" {
				a.held.escalated = why
				a.Suppressed = false
				a.record(Decision{Time: now, Stage: "pipeline", Action: "released", Reason: why})
				escalated = why
			}
		}
	}
	if a.Suppressed {
		for _, d := range counted {
			s.suppressed.WithLabelValues(d.Stage).Inc()
			s.ledger.suppressed(now, a, d.Stage, d.Reason)
		}
	}
	return escalated
}

// suppressWith runs stages, one at a time, over the firing alerts that
// nothing suppresses, as time passes: those a stage suppresses now (a
// silence or maintenance window that began) are marked suppressed, which
// mutes them in the notifier and quiets their incidents' escalation.
func (s *store) suppressWith(ctx context.Context, now time.Time, sts ...Stage) {
	defer s.commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range sts {
		s.suppressWithLocked(ctx, now, st)
	}
}

// suppressWithLocked is suppressWith with s.mu held; the caller commits.
func (s *store) suppressWithLocked(ctx context.Context, now time.Time, st Stage) {
	for _, a := range s.alerts {
		if a.Suppressed || a.ResolvedAt(now) {
			continue
		}
		d := st.Process(ctx, now, a)
		if !a.Suppressed || d.Action != "suppressed" {
			a.Suppressed = false
			continue
		}
		d.Time, d.Stage = now, st.Name()
		a.record(d)
		s.suppressed.WithLabelValues(d.Stage).Inc()
		s.ledger.suppressed(now, a, d.Stage, d.Reason)
	}
}

// firesUnsuppressed records an alert that fires and no stage suppresses:
// released if the ledger had it suppressed, and grouped into the incidents
// of its notification groups. Called with s.mu held.
func (s *store) firesUnsuppressed(now time.Time, a *Alert) {
	if s.onFire != nil && !a.ResolvedAt(now) {
		s.onFire(now, a)
	}
	if s.ledger == nil || a.ResolvedAt(now) {
		return
	}
	s.ledger.unsuppressed(now, a)
	var groups []alertGroup
	if s.groups != nil {
		groups = s.groups(a.Labels)
	}
	for _, id := range s.ledger.group(now, a, groups) {
		d := Decision{Time: now, Stage: "incident", Action: "grouped", Reason: "grouped into incident " + id}
		if !slices.ContainsFunc(a.History, d.sameAs) {
			a.record(d)
		}
	}
}

// sweep records, in the ledger, the alerts whose end time passed without
// the source sending them again (timed out), and resolves there the alerts
// the pipeline no longer holds once reconcile is set (after a restart's
// grace period).
func (s *store) sweep(now time.Time, reconcile bool) {
	if s.ledger == nil {
		return
	}
	s.mu.Lock()
	for _, a := range s.alerts {
		if a.ResolvedAt(now) && s.ledger.observe(now, a) == eventResolved {
			a.record(Decision{Time: now, Stage: "pipeline", Action: "resolved", Reason: "its end time passed without an update"})
		}
	}
	if reconcile {
		s.ledger.reconcile(now, func(fp model.Fingerprint) bool { _, ok := s.alerts[fp]; return ok })
	}
	s.mu.Unlock()
	s.commit()
}

// release looks again at the suppressed alerts that still fire: those no
// stage suppresses any more (a silence or hold expired) are released to the
// notifier. It runs every few seconds.
func (s *store) release(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	out := s.releaseLocked(ctx, now)
	s.mu.Unlock()
	s.commit()
	if len(out) == 0 {
		return nil
	}
	return s.put(out...)
}

// releaseLocked is release with s.mu held: it returns what to notify, and
// the caller commits.
func (s *store) releaseLocked(ctx context.Context, now time.Time) []*amalert.Alert {
	var out []*amalert.Alert
	for _, a := range s.alerts {
		if !a.Suppressed || a.ResolvedAt(now) {
			continue
		}
		if s.reconsider(ctx, now, a, "no stage suppresses it any more") {
			out = append(out, amalert.New(a.Alert, a.UpdatedAt, a.Timeout))
		}
	}
	return out
}

// reconsider runs the stages again over a suppressed alert that fires.
// If none suppresses it any more, it records why it was released (unless
// an escalation released it), routes it and reports true; the caller
// hands it to the notifier. Called with s.mu held.
func (s *store) reconsider(ctx context.Context, now time.Time, a *Alert, why string) bool {
	escalated := s.runStages(ctx, now, a, true)
	if a.Suppressed {
		return false
	}
	if escalated == "" {
		a.record(Decision{Time: now, Stage: "pipeline", Action: "released", Reason: why})
	}
	if rs := s.route(a.Labels); len(rs) > 0 {
		a.record(Decision{Time: now, Stage: "route", Action: "routed", Reason: fmt.Sprintf("matches the routes to %v", rs)})
	}
	s.firesUnsuppressed(now, a)
	return true
}

// resuppress runs the stages again over firing alerts that are not
// suppressed, after a new silence: those it now selects are marked
// suppressed (the notifier's mute stage keeps them out of notifications).
func (s *store) resuppress(ctx context.Context, now time.Time) error {
	defer s.commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.alerts {
		if a.Suppressed || a.ResolvedAt(now) {
			continue
		}
		s.runStages(ctx, now, a, true)
	}
	return nil
}

// lastDecision returns the alert's latest decision of the stage.
func (a *Alert) lastDecision(stage string) Decision {
	for i := len(a.History) - 1; i >= 0; i-- {
		if a.History[i].Stage == stage {
			return a.History[i]
		}
	}
	return Decision{}
}

// sameAs reports whether two decisions say the same thing, whenever taken.
func (d Decision) sameAs(o Decision) bool {
	return d.Stage == o.Stage && d.Action == o.Action && d.Reason == o.Reason
}

// ResolvedAt says whether the alert is resolved at now.
func (a *Alert) ResolvedAt(now time.Time) bool {
	return !a.EndsAt.IsZero() && !a.EndsAt.After(now)
}

func (a *Alert) record(d Decision) {
	if len(a.History) >= maxHistory {
		a.History = slices.Delete(a.History, 1, 2)
	}
	a.History = append(a.History, d)
}

// anyFiring reports whether an alert the matchers select fires at now.
func (s *store) anyFiring(now time.Time, ms amlabels.Matchers) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.alerts {
		if !a.ResolvedAt(now) && ms.Matches(a.Labels) {
			return true
		}
	}
	return false
}

// get returns a copy of the alert with this fingerprint.
func (s *store) get(fp model.Fingerprint) (*Alert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alerts[fp]
	if !ok {
		return nil, false
	}
	c := *a
	c.History = slices.Clone(a.History)
	return &c, true
}

// isSuppressed reports whether the alert with this fingerprint is held by a
// stage; the notifier asks at every flush.
func (s *store) isSuppressed(fp model.Fingerprint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alerts[fp]
	return ok && a.Suppressed
}

// setStages replaces the pipeline's stages.
func (s *store) setStages(st []Stage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stages = st
}

// note records a decision about the alerts with these fingerprints, if
// still stored.
func (s *store) note(fps []model.Fingerprint, d Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fp := range fps {
		if a, ok := s.alerts[fp]; ok {
			a.record(d)
		}
	}
}

// noteInOrder is note for a decision recorded after what it caused may
// have been (an action's delivery after its trigger): it goes before the
// latest decisions made after its time.
func (s *store) noteInOrder(fps []model.Fingerprint, d Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fp := range fps {
		a, ok := s.alerts[fp]
		if !ok {
			continue
		}
		a.record(d)
		h := a.History
		for i := len(h) - 1; i > 1 && h[i-1].Time.After(d.Time); i-- {
			h[i-1], h[i] = h[i], h[i-1]
		}
	}
}

// snapshot returns copies of the stored alerts, sorted by start time and
// fingerprint, with history.
func (s *store) snapshot() []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Alert, 0, len(s.alerts))
	for _, a := range s.alerts {
		c := *a
		c.History = slices.Clone(a.History)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartsAt.Equal(out[j].StartsAt) {
			return out[i].StartsAt.Before(out[j].StartsAt)
		}
		return out[i].Fingerprint < out[j].Fingerprint
	})
	return out
}

// active returns copies of the alerts of a source that are firing at now.
func (s *store) active(src Source, now time.Time) []*Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Alert
	for _, a := range s.alerts {
		if a.Source == src && !a.ResolvedAt(now) {
			c := *a
			c.History = nil
			out = append(out, &c)
		}
	}
	return out
}

// gc forgets alerts resolved longer than the retention ago.
func (s *store) gc(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fp, a := range s.alerts {
		if a.ResolvedAt(now) && now.Sub(a.EndsAt) > s.retention {
			delete(s.alerts, fp)
			s.gen++
			s.removeFamily(a)
		}
	}
}

var alertsDesc = prometheus.NewDesc("alertd_alerts",
	"The number of alerts alertd holds, by state (firing, suppressed, and resolved within the retention) and the priority it classified them with (none if unclassified). Pending rule alerts are in ALERTS{alertstate=\"pending\"}.",
	[]string{"state", "priority"}, nil)

// alertStates are the states of alertd_alerts.
var alertStates = []string{"firing", "suppressed", "resolved"}

// Describe implements prometheus.Collector.
func (s *store) Describe(ch chan<- *prometheus.Desc) { ch <- alertsDesc }

// Collect implements prometheus.Collector: alerts by state and priority at
// scrape time, every combination present so that rates and absences read
// right.
func (s *store) Collect(ch chan<- prometheus.Metric) {
	c := s.counts(s.now())
	for _, st := range alertStates {
		for _, p := range alertPriorities {
			ch <- prometheus.MustNewConstMetric(alertsDesc, prometheus.GaugeValue, float64(c[[2]string{st, p}]), st, p)
		}
	}
}

// alertPriorities are the priority label values of alertd_alerts: the
// classifier's, and none.
var alertPriorities = append(stringsOf(classify.Priorities()), "none")

func stringsOf[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

// counts returns the number of stored alerts by state and priority at now.
// A priority annotation the classifier would not give counts as none.
func (s *store) counts(now time.Time) map[[2]string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := map[[2]string]int{}
	for _, a := range s.alerts {
		state := "firing"
		switch {
		case a.ResolvedAt(now):
			state = "resolved"
		case a.Suppressed:
			state = "suppressed"
		}
		p := string(a.Annotations[annotationPriority])
		if !slices.Contains(alertPriorities, p) {
			p = "none"
		}
		c[[2]string{state, p}]++
	}
	return c
}

// noteOnce records a decision about the alerts with these fingerprints
// unless it is already their latest one (same stage and action).
func (s *store) noteOnce(fps []model.Fingerprint, d Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fp := range fps {
		a, ok := s.alerts[fp]
		if !ok {
			continue
		}
		if n := len(a.History); n > 0 && a.History[n-1].Stage == d.Stage && a.History[n-1].Action == d.Action {
			continue
		}
		a.record(d)
	}
}
