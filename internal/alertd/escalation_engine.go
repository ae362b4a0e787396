package alertd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/escalate"
	"github.com/modelmon/modelmon/internal/notify/notice"
)

// Escalation runs the escalation policies (package escalate) over the
// ledger's incidents. Once a second it brings the engine up to date with the
// ledger (incidents that opened, whose firing alerts changed, that closed),
// ticks it with alertd's clock and carries out what is due: notifications
// through the notifier's SendToReceiver, actions through runAction. The
// engine's state is written to --storage.path/escalation.json, so a restart
// resumes each chain where it was: at once after an operator's change,
// at most every escalationSaveInterval for the loop's own changes, and at
// shutdown. Escalation notifications come on top of the route's own.
//
// (escalation.go is something else: the release of a suppressed alert
// whose severity or priority rose.)

// escalationAttempts bounds the attempts of one effect: past them it is
// dropped with an error logged.
const escalationAttempts = 10

// escalationTimeout bounds the carrying out of one effect.
const escalationTimeout = 30 * time.Second

// escalationSaveInterval is how often, at most, the escalation loop writes
// the engine's state. The state is one file of every incident's chain, and
// a batch of n new incidents is n changes (each opened, each trigger
// carried out): written at each, that is n writes of a file of n entries.
// A crash loses at most this much of the loop's changes, which the next
// run redoes: an effect carried out then is carried out again under its
// key, which the outbox drops as delivered, and a step that fell due then
// has its next due time counted from the restart.
const escalationSaveInterval = 5 * time.Second

// escalator holds the escalation engine and what alertd keeps around it.
type escalator struct {
	mu     sync.Mutex
	engine *escalate.Engine
	// file keeps the engine's state; nil in memory only (a replay).
	file   *stateFile
	logger *slog.Logger
	// kick wakes the escalation loop after an operator's change.
	kick chan struct{}
	// saveInterval is escalationSaveInterval; tests change it.
	saveInterval time.Duration
	// written is the engine's count of changes (escalate.Engine.Changes)
	// in the file: a save while it is current encodes nothing, so the
	// loop's passes cost nothing while no chain moves. Guarded by mu.
	written uint64

	// policies is the number of policies configured.
	policies int
	// syncMu makes a sync's reading of the ledger's changes and its
	// telling the engine one step: a caller that syncs finds every
	// incident the ledger has told of known to the engine.
	syncMu sync.Mutex
	// forget are the incidents the ledger no longer lists that the
	// engine could not forget yet (their notifications are pending):
	// each sync tries again. Guarded by mu.
	forget map[string]bool

	escalations *prometheus.CounterVec
	// configured are the series of escalations of the configured
	// policies' levels; series are all those it has, the configured ones
	// and those of a policy or level a reload removed whose notification
	// is still pending. Both are guarded by mu.
	configured, series map[escalationSeries]bool
	acks               prometheus.Counter
	now                func() time.Time
	// send sends an escalation notification to a receiver (the
	// notifier's SendToReceiver). Tests make it fail.
	send func(ctx context.Context, receiver, key string, alerts []*amalert.Alert, extra map[string]string) error
}

// escalationSeries is a series of alertd_escalations_total.
type escalationSeries struct{ policy, level string }

// newEscalator returns an escalator whose state is kept in
// storage/escalation.json, or in memory only when storage is empty (a
// replay).
func newEscalator(storage string, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) (*escalator, error) {
	e, err := escalate.New(nil, escalate.Options{})
	if err != nil {
		return nil, err
	}
	x := &escalator{
		engine:       e,
		logger:       logger,
		kick:         make(chan struct{}, 1),
		saveInterval: escalationSaveInterval,
		now:          now,
		configured:   map[escalationSeries]bool{},
		forget:       map[string]bool{},
		series:       map[escalationSeries]bool{},
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_escalations_total",
			Help: "The total number of escalation steps that notified their receivers (trigger, escalate and repeat), by policy and level.",
		}, []string{"policy", "level"}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alertd_acknowledgements_total",
			Help: "The total number of acknowledgements of alerts and incidents operators gave through the API.",
		}),
	}
	if storage != "" {
		x.file = newStateFile(filepath.Join(storage, "escalation.json"))
		var st escalate.State
		ok, err := readJSON(x.file.path, &st)
		if err != nil {
			return nil, fmt.Errorf("couldn't read the escalation state: %w", err)
		}
		if ok {
			if err := e.Restore(st); err != nil {
				return nil, fmt.Errorf("couldn't restore the escalation state from %s: %w", x.file.path, err)
			}
			x.file.last, _ = json.Marshal(e.State())
			x.written = e.Changes()
		}
	}
	reg.MustRegister(x.escalations, x.acks, x)
	return x, nil
}

// setPolicies swaps in the configured policies; incidents keep their
// chain. The escalations of each level of each policy are created at 0;
// those of a policy or level gone go (retainLocked).
func (x *escalator) setPolicies(ps []escalate.Policy) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.engine.SetPolicies(ps); err != nil {
		return fmt.Errorf("escalation_policies: %w", err)
	}
	x.policies = len(ps)
	clear(x.configured)
	for _, p := range ps {
		levels := 0
		for _, s := range p.Steps {
			if s.Notify != nil {
				levels++
				x.configured[escalationSeries{p.Name, strconv.Itoa(levels)}] = true
			}
		}
	}
	x.retainLocked()
	return nil
}

// retainLocked creates the series of escalations of the configured levels
// at 0 and deletes those of a policy or level the configuration no longer
// has, as Prometheus wants the series of what is gone. An incident whose
// policy a reload removed stops escalating (escalate.Engine.SetPolicies),
// but a notification of its chain already due and not carried out yet (the
// outbox refused it: it is retried) still counts once sent: its series
// stays until the engine hears it done. Called with x.mu held.
func (x *escalator) retainLocked() {
	keep := maps.Clone(x.configured)
	for _, ef := range x.engine.Effects() {
		if ef.Notify != nil && chainEvent(ef.Notify.Event) {
			keep[escalationSeries{ef.Policy, strconv.Itoa(ef.Notify.Level)}] = true
		}
	}
	for s := range x.series {
		if !keep[s] {
			x.escalations.DeleteLabelValues(s.policy, s.level)
			delete(x.series, s)
		}
	}
	for s := range keep {
		if !x.series[s] {
			x.escalations.WithLabelValues(s.policy, s.level)
			x.series[s] = true
		}
	}
}

// count counts a chain notification sent to its level's receivers.
func (x *escalator) count(policy string, level int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := escalationSeries{policy, strconv.Itoa(level)}
	x.escalations.WithLabelValues(s.policy, s.level).Inc()
	x.series[s] = true
}

// save writes the engine's state if it changed and the escalator has a
// file, outside x.mu: the escalation loop, which sends the chains'
// notifications, goes on meanwhile (see stateFile). Called without x.mu
// held, after an operator's change.
func (x *escalator) save() { x.saveWith((*stateFile).save) }

// trySave is save for the escalation loop, which calls it at every change
// and every pass: it writes at most once per saveInterval, and while an
// operator's change is being written it does not wait; either way its own
// change goes with a later call (at the latest the next pass, within a
// second, or the save at shutdown). A pass that changed nothing since the
// last write encodes nothing.
func (x *escalator) trySave() {
	x.saveWith(func(f *stateFile, lock sync.Locker, snapshot func() any) error {
		return f.trySaveEvery(x.saveInterval, lock, snapshot)
	})
}

func (x *escalator) saveWith(save func(*stateFile, sync.Locker, func() any) error) {
	if x.file == nil {
		return
	}
	// changes is the count of changes of the state written, taken with
	// x.mu held; 0 when no snapshot was taken.
	var changes uint64
	err := save(x.file, &x.mu, func() any {
		if x.engine.Changes() == x.written {
			return nil
		}
		changes = x.engine.Changes()
		return x.engine.State()
	})
	if err != nil {
		// x.written stays: the next save encodes and writes it again.
		x.logger.Error("Failed to write the escalation state, will retry at the next change", "file", x.file.path, "err", err)
		return
	}
	x.mu.Lock()
	// Saves write in turn but may return in any order: the file holds
	// the later state.
	x.written = max(x.written, changes)
	x.mu.Unlock()
}

// wake asks the escalation loop to run now.
func (x *escalator) wake() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

var escalationIncidentsDesc = prometheus.NewDesc("alertd_escalation_incidents",
	"The number of incidents an escalation policy escalates that are not resolved, by state (active, acknowledged, snoozed), at scrape time.",
	[]string{"state"}, nil)

// Describe implements prometheus.Collector.
func (x *escalator) Describe(ch chan<- *prometheus.Desc) { ch <- escalationIncidentsDesc }

// Collect implements prometheus.Collector.
func (x *escalator) Collect(ch chan<- prometheus.Metric) {
	now := x.now()
	counts := map[escalate.Status]int{}
	x.mu.Lock()
	for _, in := range x.engine.Incidents() {
		if in.Policy != "" {
			counts[in.Status(now)]++
		}
	}
	x.mu.Unlock()
	for _, st := range escalate.Statuses {
		ch <- prometheus.MustNewConstMetric(escalationIncidentsDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

// runEscalation brings the engine up to date and carries out what is due
// every second, and at once when an operator changed something, until ctx
// is done; then it writes the state the loop has not written yet.
func (a *Alertd) runEscalation(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.stepEscalation(ctx, a.opts.Now())
		select {
		case <-ctx.Done():
			a.escalation.save()
			return
		case <-t.C:
		case <-a.escalation.kick:
		}
	}
}

// stepEscalation syncs the engine with the ledger, ticks it and carries out
// the effects due, one at a time, in order.
func (a *Alertd) stepEscalation(ctx context.Context, now time.Time) {
	a.syncEscalation(now)
	for _, ef := range a.escalation.tick(now) {
		if ctx.Err() != nil {
			return
		}
		a.carryOut(ctx, ef)
	}
	// What the pass changed since the last write, once the interval is
	// over: a pass that changed nothing writes nothing.
	a.escalation.trySave()
}

// syncEscalation tells the engine about the ledger's incidents and records
// its decisions in their alerts' histories. It looks at every incident the
// first time only; then at those that changed since (ledger.incidentChanges),
// so that the loop's pass each second costs what changed, not every open
// incident.
func (a *Alertd) syncEscalation(now time.Time) {
	x := a.escalation
	x.syncMu.Lock()
	var notes []escalationNote
	if list, gone, all := a.ledger.incidentChanges(now); all {
		notes = x.sync(now, list, a.store.subject)
	} else {
		notes = x.syncChanges(now, list, gone, a.store.subject)
	}
	x.syncMu.Unlock()
	a.noteEscalation(notes)
}

// tick ticks the engine at now and returns the effects due.
func (x *escalator) tick(now time.Time) []escalate.Effect {
	x.mu.Lock()
	effects := x.engine.Tick(now)
	x.mu.Unlock()
	x.trySave()
	return effects
}

// done reports an effect carried out (or given up on) to the engine.
func (x *escalator) done(key string) {
	x.mu.Lock()
	x.engine.Done(key)
	if len(x.series) > len(x.configured) {
		// The last pending notification of a removed policy or level
		// may be done: its series goes.
		x.retainLocked()
	}
	x.mu.Unlock()
	x.trySave()
}

// sync tells the engine about incidents: those that opened, whose firing
// alerts changed, and that closed (or that list no longer has). list holds
// the open incidents and those closed recently, as the ledger's
// incidentList returns them; subject says what policies match of one. It
// returns the decisions to record in the alerts' histories. alertd syncs
// with its ledger, a replay with the incidents it records.
func (x *escalator) sync(now time.Time, list []*incident, subject func(*incident) escalate.Subject) []escalationNote {
	var notes []escalationNote
	x.mu.Lock()
	seen := make(map[string]bool, len(list))
	for _, in := range list {
		seen[in.ID] = true
		notes = x.syncLocked(now, in, subject, notes)
	}
	// The ledger forgets incidents closed a day ago: so does the engine,
	// once their notifications went out. An incident the engine resolved
	// by hand is kept as long as the ledger has it, so that it is not
	// escalated again.
	clear(x.forget)
	for _, st := range x.engine.Incidents() {
		if !seen[st.ID] {
			x.forget[st.ID] = true
		}
	}
	x.forgetLocked(now)
	x.mu.Unlock()
	x.trySave()
	return notes
}

// syncChanges is sync for what changed of the list since the last sync:
// list holds the incidents that opened, whose firing alerts changed or
// that closed, gone the ids of those the list no longer holds
// (ledger.incidentChanges).
func (x *escalator) syncChanges(now time.Time, list []*incident, gone []string, subject func(*incident) escalate.Subject) []escalationNote {
	var notes []escalationNote
	x.mu.Lock()
	for _, in := range list {
		notes = x.syncLocked(now, in, subject, notes)
	}
	for _, id := range gone {
		x.forget[id] = true
	}
	x.forgetLocked(now)
	x.mu.Unlock()
	x.trySave()
	return notes
}

// syncLocked tells the engine about one incident of the list and appends
// the decisions to record to notes. Called with x.mu held.
func (x *escalator) syncLocked(now time.Time, in *incident, subject func(*incident) escalate.Subject, notes []escalationNote) []escalationNote {
	st, known := x.engine.Incident(in.ID)
	switch {
	case !known && in.ClosedAt == nil:
		policy, err := x.engine.Open(now, in.ID, subject(in), in.Firing)
		if err != nil {
			x.logger.Error("Failed to open an incident's escalation", "incident", in.ID, "err", err)
			return notes
		}
		d := Decision{Time: now, Stage: "escalate", Action: "escalating", Reason: fmt.Sprintf("incident %s escalated by policy %q", in.ID, policy)}
		if policy == "" {
			d.Action, d.Reason = "unmatched", fmt.Sprintf("no escalation policy matches incident %s", in.ID)
		}
		if policy != "" || x.policies > 0 {
			// Without policies, escalation has nothing to say.
			notes = append(notes, escalationNote{in.ID, in.Firing, d})
		}
	case !known || st.Resolved:
	case in.ClosedAt != nil:
		if err := x.engine.Resolve(now, in.ID, ""); err == nil && st.Policy != "" {
			notes = append(notes, escalationNote{in.ID, in.Alerts, Decision{Time: now, Stage: "escalate", Action: "resolved",
				Reason: fmt.Sprintf("incident %s closed: its alerts resolved; escalation stopped", in.ID)}})
		}
	default:
		expired, err := x.engine.AlertsChanged(now, in.ID, in.Firing)
		if err == nil && expired {
			notes = append(notes, escalationNote{in.ID, in.Firing, Decision{Time: now, Stage: "escalate", Action: "re-triggered",
				Reason: fmt.Sprintf("incident %s: an alert the acknowledgement did not cover fires; the acknowledgement expired", in.ID)}})
		}
	}
	return notes
}

// forgetLocked resolves and forgets the incidents in x.forget; those
// whose notifications are pending stay there for the next sync. Called
// with x.mu held.
func (x *escalator) forgetLocked(now time.Time) {
	for id := range x.forget {
		st, ok := x.engine.Incident(id)
		if ok && !st.Resolved {
			_ = x.engine.Resolve(now, id, "")
		}
		if !ok || x.engine.Forget(id) {
			delete(x.forget, id)
		}
	}
}

// escalationNote is a decision to record in the history of some alerts.
type escalationNote struct {
	// incident is the incident's id.
	incident string
	fps      []string
	d        Decision
}

// noteEscalation records decisions in the alerts' histories.
func (a *Alertd) noteEscalation(notes []escalationNote) {
	for _, n := range notes {
		a.store.note(fingerprints(n.fps), n.d)
	}
}

func fingerprints(fps []string) []model.Fingerprint {
	out := make([]model.Fingerprint, 0, len(fps))
	for _, s := range fps {
		if fp, err := model.FingerprintFromString(s); err == nil {
			out = append(out, fp)
		}
	}
	return out
}

// subject is what policies match of an incident: the labels of its first
// alert (from the ledger when the pipeline no longer holds it) and its
// classification.
func (s *store) subject(in *incident) escalate.Subject {
	sub := escalate.Subject{Labels: map[string]string{}}
	for k, v := range in.GroupLabels {
		sub.Labels[string(k)] = string(v)
	}
	if len(in.Alerts) == 0 {
		return sub
	}
	fp, err := model.FingerprintFromString(in.Alerts[0])
	if err != nil {
		return sub
	}
	al, ok := s.get(fp)
	if !ok {
		if ls := s.ledger.labels(in.Alerts[0]); ls != nil {
			for k, v := range ls {
				sub.Labels[string(k)] = string(v)
			}
		}
		return sub
	}
	for k, v := range al.Labels {
		sub.Labels[string(k)] = string(v)
	}
	if al.classification != nil {
		sub.Priority, sub.Category = string(al.Annotations[annotationPriority]), string(al.Annotations[annotationCategory])
	}
	return sub
}

// carryOut carries out one effect and reports it done, or leaves it for a
// retry.
func (a *Alertd) carryOut(ctx context.Context, ef escalate.Effect) {
	x := a.escalation
	ctx, cancel := context.WithTimeout(ctx, escalationTimeout)
	defer cancel()
	in := a.ledger.incident(ef.Incident)
	if in == nil {
		// Pruned from the ledger: carry it out with what is known.
		in = &incident{ID: ef.Incident}
	}
	now := a.opts.Now()
	var (
		err     error
		d       Decision
		fps     = in.Firing
		counted bool
	)
	switch {
	case ef.Action != nil:
		err = a.runIncidentAction(ctx, ef.Action.Name, in, ef.Key)
		d = actionDecision(now, in.ID, ef)
	case ef.Notify != nil:
		n := ef.Notify
		resolved := n.Event == escalate.EventResolve
		if resolved {
			fps = in.Alerts
		}
		chain := chainEvent(n.Event)
		if chain && a.store.allSuppressed(fps) {
			// A silence, maintenance window or hold keeps every alert
			// of the incident quiet: so does escalation.
			d = suppressedDecision(now, in.ID, n)
			break
		}
		alerts := a.incidentAlerts(in, fps, resolved, now)
		extra := map[string]string{
			// The incident's group: Slack threads and PagerDuty's
			// dedup_key follow it, so escalations join the route's.
			// Routes with the same matchers share it, as their own
			// notifications do; the incident tells them apart.
			notice.ExtraGroupKey: in.GroupKey,
			"incident":           in.ID, "policy": ef.Policy, "event": string(n.Event),
			"level": strconv.Itoa(n.Level), "step": strconv.Itoa(n.Step), "iteration": strconv.Itoa(ef.Iteration),
		}
		var errs []error
		for _, r := range n.Receivers {
			// One key per receiver: each is a message of its own.
			if e := x.send(ctx, r, ef.Key+"/"+r, alerts, extra); e != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r, e))
			}
		}
		err = errors.Join(errs...)
		counted = chain
		d = notifiedDecision(now, ef)
	}
	if err != nil {
		d.Action, d.Reason = "failed", d.Reason+": "+err.Error()
		if ef.Attempts < escalationAttempts {
			x.logger.Warn("Escalation failed, will retry", "incident", ef.Incident, "key", ef.Key, "attempts", ef.Attempts, "err", err)
			a.store.noteOnce(fingerprints(fps), d)
			return
		}
		x.logger.Error("Escalation failed, giving up", "incident", ef.Incident, "key", ef.Key, "attempts", ef.Attempts, "err", err)
		d.Reason += fmt.Sprintf("; gave up after %d attempts", ef.Attempts)
	}
	// Recorded and counted before the engine hears of it: whoever sees
	// the step done (GET /api/v1/incidents) finds it in the history.
	if counted && err == nil {
		x.count(ef.Policy, ef.Notify.Level)
	}
	a.store.note(fingerprints(fps), d)
	x.done(ef.Key)
}

// The decisions alertd records in the histories of an incident's alerts
// when it carries out an effect, and a replay in the incident's history.

// actionDecision: the action of an escalation step ran.
func actionDecision(now time.Time, id string, ef escalate.Effect) Decision {
	return Decision{Time: now, Stage: "escalate", Action: "action", Reason: fmt.Sprintf("ran action %q for incident %s (%s)", ef.Action.Name, id, ef.Reason)}
}

// suppressedDecision: a notification of the chain was not sent, as every
// alert of the incident is suppressed.
func suppressedDecision(now time.Time, id string, n *escalate.Notify) Decision {
	return Decision{Time: now, Stage: "escalate", Action: "suppressed",
		Reason: fmt.Sprintf("not sent to %s (%s, level %d): every alert of incident %s is suppressed", strings.Join(n.Receivers, ", "), n.Event, n.Level, id)}
}

// notifiedDecision: a notification went to the receivers of its level.
func notifiedDecision(now time.Time, ef escalate.Effect) Decision {
	n := ef.Notify
	return Decision{Time: now, Stage: "escalate", Action: "notified",
		Reason: fmt.Sprintf("sent to %s (%s, level %d): %s", strings.Join(n.Receivers, ", "), n.Event, n.Level, ef.Reason)}
}

// incidentAckDecision: an operator acknowledged the incident (POST
// /api/v1/incidents/{id}/acknowledge); why is incidentRequest.reason.
func incidentAckDecision(now time.Time, id, why string) Decision {
	return Decision{Time: now, Stage: "escalate", Action: "acknowledged", Reason: fmt.Sprintf("incident %s acknowledged%s", id, why)}
}

// alertAckDecision: an operator acknowledged an alert of the incidents
// (POST /api/v1/alerts/{fingerprint}/acknowledge).
func alertAckDecision(now time.Time, ids []string, by string) Decision {
	return Decision{Time: now, Stage: "escalate", Action: "acknowledged",
		Reason: fmt.Sprintf("incident %s acknowledged with the alert by %s: escalation stopped", strings.Join(ids, ", "), whoAcked(by))}
}

// chainEvent reports whether a notification is a step of the chain
// (trigger, escalate, repeat), which suppression keeps quiet, rather than
// news of an acknowledgement or a resolution, which it does not.
func chainEvent(ev escalate.Event) bool {
	return ev == escalate.EventTrigger || ev == escalate.EventEscalate || ev == escalate.EventRepeat
}

// allSuppressed reports whether every one of these alerts the pipeline
// holds is suppressed, and there is at least one: the chain's
// notifications of their incident are not sent then.
func (s *store) allSuppressed(fps []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, fp := range fingerprints(fps) {
		al, ok := s.alerts[fp]
		if !ok {
			continue
		}
		if !al.Suppressed {
			return false
		}
		n++
	}
	return n > 0
}

// incidentAlerts returns the incident's alerts to notify, from the pipeline
// or else the ledger; resolved ones end at now at the latest. With no
// alert left, it stands in one with the incident's group labels.
func (a *Alertd) incidentAlerts(in *incident, fps []string, resolved bool, now time.Time) []*amalert.Alert {
	var out []*amalert.Alert
	for _, s := range fps {
		fp, err := model.FingerprintFromString(s)
		if err != nil {
			continue
		}
		var m model.Alert
		if al, ok := a.store.get(fp); ok {
			m = al.Alert
		} else if ls := a.ledger.labels(s); ls != nil {
			m = model.Alert{Labels: ls, StartsAt: in.OpenedAt}
		} else {
			continue
		}
		if resolved && (m.EndsAt.IsZero() || m.EndsAt.After(now)) {
			m.EndsAt = now
		}
		if !resolved && !m.EndsAt.IsZero() && !m.EndsAt.After(now) {
			continue
		}
		out = append(out, amalert.New(m, now, false))
	}
	if len(out) == 0 && len(in.GroupLabels) > 0 {
		m := model.Alert{Labels: in.GroupLabels.Clone(), StartsAt: in.OpenedAt}
		if resolved {
			m.EndsAt = now
		}
		if m.StartsAt.IsZero() || m.StartsAt.After(now) {
			m.StartsAt = now
		}
		out = append(out, amalert.New(m, now, false))
	}
	return out
}

// runIncidentAction runs a named action of an escalation step for an
// incident, on its firing alerts; key is the effect's, so a retried
// effect runs the action once.
func (a *Alertd) runIncidentAction(ctx context.Context, name string, in *incident, key string) error {
	var alerts []*Alert
	for _, fp := range fingerprints(in.Firing) {
		if al, ok := a.store.get(fp); ok {
			alerts = append(alerts, al)
		}
	}
	err := a.runAction(ctx, name, alerts, key)
	if errors.Is(err, errActionRefused) {
		// A guardrail's refusal is recorded; retrying will not change it.
		return nil
	}
	return err
}

// escalate moves the incident's chain on now (Engine.Escalate), syncing
// first so an incident opened since the last tick is known.
func (x *escalator) escalate(now time.Time, id, why string) error {
	x.mu.Lock()
	err := x.engine.Escalate(now, id, why)
	x.mu.Unlock()
	x.save()
	x.wake()
	return err
}

// escalateIncidents moves on the escalation of the open incidents of
// these alerts now, as if their current wait had ended: an action that
// failed its verification calls it.
func (a *Alertd) escalateIncidents(_ context.Context, alerts []*Alert, reason string) error {
	now := a.opts.Now()
	ids := map[string]bool{}
	for _, in := range a.ledger.incidentList(now) {
		if in.ClosedAt != nil {
			continue
		}
		for _, al := range alerts {
			if slices.Contains(in.Firing, al.Fingerprint.String()) {
				ids[in.ID] = true
			}
		}
	}
	if len(ids) == 0 {
		return errors.New("the alerts belong to no open incident")
	}
	a.syncEscalation(now)
	var errs []error
	for id := range ids {
		errs = append(errs, a.escalation.escalate(now, id, reason))
	}
	return errors.Join(errs...)
}

// incident returns a copy of the ledger's incident with this id, or nil.
func (l *ledger) incident(id string) *incident {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if in := l.inc.byID[id]; in != nil {
		return in.clone()
	}
	return nil
}

// labels returns the labels the ledger has of an alert, or nil.
func (l *ledger) labels(fp string) model.LabelSet {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.alerts[fp]; st != nil {
		return st.Labels.Clone()
	}
	return nil
}

// acknowledgeIncident records an operator's acknowledgement of an incident:
// one acknowledged event per firing alert, for that incident only.
func (l *ledger) acknowledgeIncident(now time.Time, in *incident, alert func(fp string) *Alert, by, note string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fp := range in.Firing {
		al := alert(fp)
		if al == nil {
			st := l.alerts[fp]
			if st == nil {
				continue
			}
			f, err := model.FingerprintFromString(fp)
			if err != nil {
				continue
			}
			al = &Alert{Alert: model.Alert{Labels: st.Labels}, Fingerprint: f, Value: math.NaN()}
		}
		e := newEvent(now, eventAcknowledged, al)
		e.By, e.Note, e.Incident = by, note, in.ID
		tta := -1.0
		if st := l.alerts[fp]; st != nil && st.State == stateFiring && !st.Acked {
			tta = max(0, now.Sub(st.StartsAt).Seconds())
		}
		l.record(pendingEvent{e: e, tta: tta, ttr: -1})
	}
}

// escalationJSON is an incident's escalation state in GET /api/v1/incidents.
type escalationJSON struct {
	// Policy is empty when none matches the incident.
	Policy string `json:"policy,omitempty"`
	// Status is active, acknowledged, snoozed or resolved.
	Status string `json:"status"`
	// Step is the index of the chain's next step, Level the highest level
	// notified in the current run of the chain, Iteration the runs before.
	Step      int `json:"step"`
	Level     int `json:"level"`
	Iteration int `json:"iteration"`
	// NextStepAt is when the next step is due, while the chain runs.
	NextStepAt        *time.Time `json:"nextStepAt,omitempty"`
	Notified          []string   `json:"notified"`
	AcknowledgedBy    string     `json:"acknowledgedBy,omitempty"`
	AcknowledgedAt    *time.Time `json:"acknowledgedAt,omitempty"`
	AcknowledgedUntil *time.Time `json:"acknowledgedUntil,omitempty"`
	SnoozedBy         string     `json:"snoozedBy,omitempty"`
	SnoozedUntil      *time.Time `json:"snoozedUntil,omitempty"`
	ResolvedBy        string     `json:"resolvedBy,omitempty"`
	ResolvedAt        *time.Time `json:"resolvedAt,omitempty"`
	// Pending counts the notifications and actions not carried out yet.
	Pending int `json:"pending"`
}

// view returns the escalation state of an incident, nil if the engine does
// not know it.
func (x *escalator) view(id string, now time.Time) *escalationJSON {
	if x == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.viewLocked(id, now)
}

// viewLocked is view, called with x.mu held.
func (x *escalator) viewLocked(id string, now time.Time) *escalationJSON {
	in, ok := x.engine.Incident(id)
	pending := x.engine.Pending(id)
	if !ok {
		return nil
	}
	t := func(v time.Time) *time.Time {
		if v.IsZero() {
			return nil
		}
		return &v
	}
	st := in.Status(now)
	v := &escalationJSON{Policy: in.Policy, Status: string(st), Step: in.Step, Level: in.Level, Iteration: in.Iteration,
		Notified: in.Notified, Pending: pending,
		AcknowledgedBy: in.AckedBy, AcknowledgedAt: t(in.AckedAt), AcknowledgedUntil: t(in.AckUntil),
		ResolvedBy: in.ResolvedBy, ResolvedAt: t(in.ResolvedAt)}
	if v.Notified == nil {
		v.Notified = []string{}
	}
	if now.Before(in.SnoozedUntil) {
		v.SnoozedBy, v.SnoozedUntil = in.SnoozedBy, t(in.SnoozedUntil)
	}
	if st == escalate.StatusActive {
		v.NextStepAt = t(in.NextAt)
	}
	return v
}

// acknowledgeIncidents acknowledges, in the engine, the incidents an
// alert's acknowledgement acknowledged in the ledger, and records it.
func (a *Alertd) acknowledgeIncidents(now time.Time, fp model.Fingerprint, ids []string, by string) {
	x := a.escalation
	if x == nil {
		return
	}
	x.acks.Inc()
	if len(ids) == 0 {
		return
	}
	a.syncEscalation(now)
	x.mu.Lock()
	var acked []string
	for _, id := range ids {
		in, ok := x.engine.Incident(id)
		if !ok || in.Policy == "" || in.Acked || in.Resolved {
			continue
		}
		if err := x.engine.Acknowledge(now, id, by); err == nil {
			acked = append(acked, id)
		}
	}
	x.mu.Unlock()
	x.save()
	if len(acked) > 0 {
		a.store.note([]model.Fingerprint{fp}, alertAckDecision(now, acked, by))
		x.wake()
	}
}

func whoAcked(by string) string {
	if by == "" {
		return "someone"
	}
	return by
}

// resolveIncident resolves an incident's escalation on an operator's
// request (Slack's resolve button): the chain stops and every level
// notified hears of it. An incident no policy escalates has its request
// recorded instead.
func (a *Alertd) resolveIncident(ctx context.Context, id, by string) error {
	now := a.opts.Now()
	a.syncEscalation(now)
	x := a.escalation
	x.mu.Lock()
	err := x.engine.Resolve(now, id, whoAcked(by))
	x.mu.Unlock()
	x.save()
	if errors.Is(err, escalate.ErrUnknownIncident) {
		return a.recordResolve(ctx, id, by)
	}
	x.wake()
	return err
}
