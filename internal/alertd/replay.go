package alertd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/modelmon/modelmon/escalate"
	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/rules"
)

// ReplayOptions configure a replay of a configuration over history.
type ReplayOptions struct {
	// From and To bound the replayed range; both are evaluated.
	From, To time.Time
	// Step is the evaluation interval; 0 takes the configuration's global
	// evaluation_interval.
	Step time.Duration
	// Source holds the history: an embedded TSDB opened read-only, or a
	// remote-read client. Its Queriers are kept open for the whole replay.
	Source storage.Queryable
	// LookbackDelta is the engine's lookback; 0 is Prometheus's 5m.
	LookbackDelta time.Duration
	// Acknowledgements are operators' acknowledgements of the replay's
	// incidents, at their times: a policy test's, to test what an
	// acknowledgement stops and what its ack_timeout re-triggers, or
	// those of --acknowledgements and the ledger, so that a replay's
	// chains stop where people would stop them. One that finds no open
	// escalated incident is no error: it acknowledges none.
	Acknowledgements []ReplayAcknowledgement
	// Silences are silences created through the API of alertd or of an
	// Alertmanager (--silences), which the configuration file does not
	// hold: each applies over its own interval, with the configuration's.
	Silences []ReplaySilence
	Logger   *slog.Logger
}

// ReplayAcknowledgement acknowledges, at At, the open incidents escalated
// by a policy whose opening alert has Labels (a subset of its labels), of
// Receiver's routes when set, as By would through alertd's API; or, when
// Alerts is set, the open escalated incidents those alerts are in, as
// acknowledging the alerts would. An incident's acknowledgement from the
// ledger (LedgerIncident) acknowledges only the incidents those alerts are
// in of the acknowledged incident's route (RouteKey, Receiver, Route), as
// the API acknowledged that incident only; when the replayed
// configuration has no such route it falls back to every incident they
// are in (Scope).
type ReplayAcknowledgement struct {
	At time.Time `json:"at"`
	// Labels are, for one from the ledger, the acknowledged alert's (those
	// its alerts share for an incident's).
	Labels model.LabelSet `json:"labels"`
	By     string         `json:"by"`
	// Alerts are the fingerprints of the alerts acknowledged, and
	// LedgerIncident the incident acknowledged, as the ledger recorded
	// them.
	Alerts         []string `json:"alerts,omitempty"`
	LedgerIncident string   `json:"ledger_incident,omitempty"`
	// RouteKey and Receiver are, for an incident's acknowledgement from
	// the ledger, the acknowledged incident's route: Alertmanager's route
	// key (Route.Key(), the path of matchers) and receiver, with Route,
	// the route's id (Route.ID()), when a sibling had the same key. Empty
	// when the ledger did not record them. A file's acknowledgement may
	// set Receiver alone: it acknowledges incidents of that receiver only.
	RouteKey string `json:"route_key,omitempty"`
	Receiver string `json:"receiver,omitempty"`
	Route    string `json:"route,omitempty"`
	// GroupKey is, for an incident's acknowledgement from the ledger,
	// the acknowledged incident's group key: without Route (a ledger of
	// an alertd that kept no route ids) it tells the incidents of sibling
	// routes with the same key and receiver apart when they group by
	// different labels.
	GroupKey string `json:"group_key,omitempty"`
	// Scope is, for an incident's acknowledgement from the ledger, which
	// incidents the replay acknowledged: AckScopeRoute or AckScopeAlerts.
	// Set by a replay with escalation policies.
	Scope string `json:"scope,omitempty"`
	// Incidents are the incidents it acknowledged, set by the replay.
	Incidents []string `json:"incidents"`
}

// The scopes of an incident's acknowledgement from the ledger.
const (
	// AckScopeRoute: the replay's incidents of the acknowledged incident's
	// route that its alerts are in.
	AckScopeRoute = "route"
	// AckScopeAlerts: every incident its alerts are in, as an alert's
	// acknowledgement, because the replayed configuration has no route of
	// that key and receiver (or the ledger did not record the route).
	AckScopeAlerts = "alerts"
)

// ReplayResult is what one configuration would have done over a range:
// every firing of every alert, and what the pipeline did with it.
type ReplayResult struct {
	Config      string    `json:"config"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Step        string    `json:"step"`
	Evaluations int       `json:"evaluations"`
	// Firings are the alerts' firing episodes, in start order.
	Firings []ReplayFiring `json:"firings"`
	// Escalations are the steps the escalation policies ran over the
	// incidents, in time order; none without policies.
	Escalations []ReplayEscalation `json:"escalations,omitempty"`
	// Incidents are, with escalation policies, the incidents of the
	// replay, in the order they opened, each with the escalator's
	// decisions about it as alertd explains them live.
	Incidents []ReplayIncident `json:"incidents,omitempty"`
	// Acknowledgements are ReplayOptions.Acknowledgements, with the
	// incidents each acknowledged.
	Acknowledgements []ReplayAcknowledgement `json:"acknowledgements,omitempty"`
	// Silences are ReplayOptions.Silences, with the alerts each selected.
	Silences []ReplaySilence `json:"silences,omitempty"`
	Summary  ReplaySummary   `json:"summary"`
}

// The outcomes of a firing.
const (
	// OutcomePaged: the firing opened an incident, and a notification
	// went to a receiver.
	OutcomePaged = "paged"
	// OutcomeGrouped: the firing joined an incident that already paged;
	// the receiver heard of it in an update of that incident.
	OutcomeGrouped = "grouped"
	// OutcomeSuppressed: a stage kept the firing from notifications for
	// all of its life.
	OutcomeSuppressed = "suppressed"
	// OutcomeUnrouted: no route sends the alert to a receiver.
	OutcomeUnrouted = "unrouted"
)

// ReplayFiring is one firing episode of an alert: from the evaluation it
// fired (after its `for`) to the one it resolved.
type ReplayFiring struct {
	Fingerprint string         `json:"fingerprint"`
	Labels      model.LabelSet `json:"labels"`
	FiredAt     time.Time      `json:"fired_at"`
	// ResolvedAt is zero when the alert still fired at the end of the range.
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	Outcome    string    `json:"outcome"`
	// NotifiedAt is when the pipeline handed the firing to the notifier
	// (later than FiredAt when a hold released it).
	NotifiedAt time.Time `json:"notified_at,omitzero"`
	// Incident names the incident a paged or grouped firing belongs to:
	// its key, the group key of the firing's first route or, when another
	// route has the same matchers under the same path (so the same group
	// key), that route's id (Alertmanager's Route.ID()) and group labels.
	Incident string `json:"incident,omitempty"`
	// SuppressedBy is the last stage that suppressed the firing, and Reason
	// its words.
	SuppressedBy string `json:"suppressed_by,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// ReplayEscalation is a step an escalation policy ran over an incident of
// the replay: a notification alertd would have sent, or an action it would
// have run (recorded, not run). Its fields are the annotations escalation
// notifications carry.
type ReplayEscalation struct {
	// Incident is the incident's key, as a firing's incident; Labels
	// are those of the alert that opened it, which the policy matched.
	Incident string         `json:"incident"`
	Labels   model.LabelSet `json:"labels"`
	// At is when the step fell due, on the replay's clock.
	At     time.Time `json:"at"`
	Policy string    `json:"policy"`
	// Event is trigger, escalate, repeat or resolve for a notification,
	// action for an action step.
	Event string `json:"event"`
	// Level is the notified level, for a resolve the highest notified.
	Level int `json:"level,omitempty"`
	// Step is the index of the step in the policy, Iteration the runs of
	// the chain before this one (repeats).
	Step      int      `json:"step"`
	Iteration int      `json:"iteration"`
	Receivers []string `json:"receivers,omitempty"`
	Action    string   `json:"action,omitempty"`
	Reason    string   `json:"reason"`
}

// ReplayIncident is an incident of a replay with escalation policies, and
// what the escalator decided about it, in the words alertd uses live: its
// History holds the decisions alertd records in the histories of the
// incident's alerts (stage escalate: escalating or unmatched, notified,
// suppressed, action, acknowledged, re-triggered, resolved), and its
// Escalation is its escalation state as GET /api/v1/incidents shows it.
type ReplayIncident struct {
	// ID is the incident's id, as the decisions' reasons name it;
	// Incident its key, as firings and escalations name it.
	ID       string `json:"id"`
	Incident string `json:"incident"`
	// Labels are those of the alert that opened it, Receiver its route's.
	Labels   model.LabelSet `json:"labels"`
	Receiver string         `json:"receiver"`
	OpenedAt time.Time      `json:"opened_at"`
	// ClosedAt is zero when it was still open at the end of the range.
	ClosedAt time.Time `json:"closed_at,omitzero"`
	// Escalation is its escalation state after the last decision, or at
	// the end of the range if the escalator still knew it then: the
	// policy, the level reached, who was notified, and why the chain
	// stopped (acknowledged, resolved).
	Escalation *ReplayEscalationState `json:"escalation,omitempty"`
	History    []Decision             `json:"history"`
}

// ReplayEscalationState is an incident's escalation state in a replay
// report: the escalation of GET /api/v1/incidents (escalationJSON), field
// for field, with the report's snake_case names. The API keeps its
// camelCase, which scripts and the incidents page read.
type ReplayEscalationState struct {
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
	NextStepAt        *time.Time `json:"next_step_at,omitempty"`
	Notified          []string   `json:"notified"`
	AcknowledgedBy    string     `json:"acknowledged_by,omitempty"`
	AcknowledgedAt    *time.Time `json:"acknowledged_at,omitempty"`
	AcknowledgedUntil *time.Time `json:"acknowledged_until,omitempty"`
	SnoozedBy         string     `json:"snoozed_by,omitempty"`
	SnoozedUntil      *time.Time `json:"snoozed_until,omitempty"`
	ResolvedBy        string     `json:"resolved_by,omitempty"`
	ResolvedAt        *time.Time `json:"resolved_at,omitempty"`
	// Pending counts the notifications and actions not carried out yet.
	Pending int `json:"pending"`
}

// ReplaySummary counts a replay's firings by outcome, and its escalation
// notifications.
type ReplaySummary struct {
	Alerts     int            `json:"alerts"`
	Firings    int            `json:"firings"`
	Pages      int            `json:"pages"`
	PagesDay   float64        `json:"pages_per_day"`
	Grouped    int            `json:"grouped"`
	Suppressed map[string]int `json:"suppressed"`
	Unrouted   int            `json:"unrouted"`
	// Escalations counts the notifications of the chains' levels
	// (trigger, escalate and repeat; not resolutions or actions), and
	// EscalationsByLevel by level.
	Escalations        int         `json:"escalations"`
	EscalationsByLevel map[int]int `json:"escalations_by_level,omitempty"`
	// AcknowledgementsApplied counts the acknowledgements that
	// acknowledged an incident, AcknowledgementsUnmatched those that found
	// no open, escalated, unacknowledged incident.
	AcknowledgementsApplied   int `json:"acknowledgements_applied"`
	AcknowledgementsUnmatched int `json:"acknowledgements_unmatched"`
	// AcknowledgementsRouteMissing counts the incidents' acknowledgements
	// from the ledger whose route the configuration does not have: they
	// acknowledged every incident of their alerts (AckScopeAlerts).
	AcknowledgementsRouteMissing int `json:"acknowledgements_route_missing"`
	// SilencesApplied counts the silences of ReplayOptions.Silences that
	// selected a firing alert while they were active, SilencesUnmatched
	// those that selected none.
	SilencesApplied   int `json:"silences_applied"`
	SilencesUnmatched int `json:"silences_unmatched"`
}

// replayAlertsResend is how long Prometheus keeps sending a resolved alert;
// replay does the same so the pipeline sees every resolution.
const replayResolvedResend = 15 * time.Minute

// Replay runs the configuration in file — its anomaly detectors, rules,
// classification, suppression and escalation policies — over the range of
// opts, with the clock stepped through it, and reports every firing and
// its outcome, and every escalation step. Nothing is sent and no action
// runs: notifications and actions are recorded. State that stages keep
// (silences, flapping, the learned model) starts empty in a scratch
// directory; the configuration's silences and maintenance windows, and
// those of opts.Silences, apply from their times on, to alerts that fire
// already too, as in alertd.
func Replay(ctx context.Context, file string, opts ReplayOptions) (*ReplayResult, error) {
	cfg, err := alertconfig.LoadFile(file)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	step := opts.Step
	if step <= 0 {
		step = time.Duration(cfg.Global.EvaluationInterval)
	}
	if step <= 0 {
		return nil, errors.New("the step must be positive")
	}
	if opts.To.Before(opts.From) {
		return nil, fmt.Errorf("--to (%s) is before --from (%s)", opts.To.Format(time.RFC3339), opts.From.Format(time.RFC3339))
	}
	if opts.Source == nil {
		return nil, errors.New("no source of history")
	}
	lookback := opts.LookbackDelta
	if lookback <= 0 {
		lookback = 5 * time.Minute
	}

	scratch, err := os.MkdirTemp("", "alertd-replay-")
	if err != nil {
		return nil, fmt.Errorf("couldn't create a scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)

	// Scratch storage for what alertd writes itself (anomaly scores,
	// ALERTS, ALERTS_FOR_STATE), read together with the history.
	dbOpts := tsdb.DefaultOptions()
	span := opts.To.Sub(opts.From) + 48*time.Hour
	dbOpts.MinBlockDuration = span.Milliseconds()
	dbOpts.MaxBlockDuration = span.Milliseconds()
	dbOpts.RetentionDuration = 0
	dbOpts.WALSegmentSize = -1
	db, err := tsdb.Open(scratch+"/tsdb", slog.New(slog.DiscardHandler), nil, dbOpts, nil)
	if err != nil {
		return nil, fmt.Errorf("couldn't open scratch storage: %w", err)
	}
	defer db.Close()

	src, err := newHeldQueryable(opts.Source, opts.From.Add(-historyLookback(cfg, lookback)), opts.To)
	if err != nil {
		return nil, fmt.Errorf("couldn't read the history: %w", err)
	}
	defer src.Close()
	queryable := mergeQueryable{src, db}

	engine := promql.NewEngine(promql.EngineOpts{
		Logger:               opts.Logger,
		MaxSamples:           DefaultOptions().QueryMaxSamples,
		Timeout:              time.Minute,
		LookbackDelta:        lookback,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	defer engine.Close()
	query := promrules.EngineQueryFunc(engine, queryable)
	queryRange := func(ctx context.Context, q string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
		return rangeQuery(ctx, engine, queryable, q, start, end, step)
	}

	reg := prometheus.NewRegistry()
	rec := newReplayRecorder(newRouting(dispatch.NewRoute(cfg.Route, nil), nil))
	now := opts.From
	clock := func() time.Time { return now }
	p, err := newPipeline(scratch, reg, opts.Logger, rec.put, rec.routing.receivers, time.Hour, clock)
	if err != nil {
		return nil, err
	}
	rec.store = p.store
	if err := p.apply(cfg); err != nil {
		return nil, err
	}
	sils := newReplaySilences(opts.Silences)
	p.silencer.addReplaySilences(sils.sils)
	esc, err := newReplayEscalation(cfg, reg, opts.Logger, clock, rec, opts.Acknowledgements)
	if err != nil {
		return nil, err
	}

	files, err := rules.Files(cfg.RuleFiles)
	if err != nil {
		return nil, err
	}
	// The rules' own queries keep the hysteresis of rules.KeepFiringWhile.
	hyst := &rules.Hysteresis{Query: query, Logger: opts.Logger}
	m := promrules.NewManager(&promrules.ManagerOptions{
		QueryFunc:    hyst.QueryFunc,
		AppendableV2: db,
		Queryable:    queryable,
		Context:      ctx,
		NotifyFunc:   func(context.Context, string, ...*promrules.Alert) {},
		Logger:       opts.Logger,
	})
	groupMap, errs := m.LoadGroups(step, cfg.Global.ExternalLabels, "", nil, false, files...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	groups := slices.Collect(maps.Values(groupMap))
	slices.SortFunc(groups, func(a, b *promrules.Group) int {
		return strings.Compare(a.File()+"\x00"+a.Name(), b.File()+"\x00"+b.Name())
	})
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*promrules.AlertingRule); ok {
				ar.SetRestored(true)
			}
		}
	}

	am := newAnomalyMetrics(reg)
	type detector struct {
		r    *anomalyRunner
		next time.Time
	}
	var detectors []*detector
	for _, dc := range cfg.AnomalyDetectors {
		detectors = append(detectors, &detector{
			r:    newAnomalyRunner(dc, query, queryRange, db, am, opts.Logger),
			next: opts.From,
		})
	}

	watchDeploys := cfg.Suppression.Deploy.Hold > 0
	res := &ReplayResult{Config: file, From: opts.From, To: opts.To, Step: model.Duration(step).String()}
	resend := max(DefaultOptions().ResendDelay, step)
	// expireSilences ends the expireOnResolve silences whose alerts
	// resolved, as alertd's loop does after its release.
	expireSilences := func(t time.Time) error {
		ended, err := p.expireResolvedSilences(t)
		sils.expired(ended, t)
		return err
	}
	// change looks again at the alerts at a time between evaluations that
	// a silence or maintenance window begins or ends, as alertd's loop
	// does within seconds: what it releases is notified then, and the
	// escalation steps due after it see it.
	change := func(t time.Time) error {
		if err := p.store.release(ctx, t); err != nil {
			return err
		}
		if err := expireSilences(t); err != nil {
			return err
		}
		p.suppressBegun(ctx, t)
		sils.observe(t, p.store)
		rec.step(t)
		esc.step(t)
		return nil
	}
	prev := opts.From
	for now = opts.From; !now.After(opts.To); prev, now = now, now.Add(step) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Evaluations++
		if err := esc.before(now, p.suppressionChanges(prev, now), change); err != nil {
			return nil, err
		}
		for _, d := range detectors {
			if now.Before(d.next) {
				continue
			}
			d.next = now.Add(d.r.interval())
			if err := d.r.eval(ctx, now); err != nil {
				return nil, fmt.Errorf("anomaly detector %q at %s: %w", d.r.cfg.Name, now.Format(time.RFC3339), err)
			}
		}
		if watchDeploys {
			// As alertd watches modelmon_model_info, so deploy holds
			// apply in the replay too.
			if vec, err := query(ctx, modelInfoQuery, now); err == nil {
				if _, err := p.deployments.observe(now, vec); err != nil {
					return nil, err
				}
			}
		}
		for _, g := range groups {
			g.Eval(rules.WithGroup(ctx, g), now)
			for _, r := range g.Rules() {
				if err := r.LastError(); err != nil {
					return nil, fmt.Errorf("rule %q at %s: %w", r.Name(), now.Format(time.RFC3339), err)
				}
			}
			for _, r := range g.AlertingRules() {
				// What the rule would send: firing alerts, and resolved
				// ones for a while, as Prometheus's sendAlerts does.
				var in []*Alert
				r.ForEachActiveAlert(func(ra *promrules.Alert) {
					if ra.State == promrules.StatePending {
						return
					}
					if !ra.ResolvedAt.IsZero() && now.Sub(ra.ResolvedAt) > replayResolvedResend {
						return
					}
					in = append(in, fromRuleAlert(ra, now, now.Add(4*resend)))
				})
				if len(in) > 0 {
					if err := p.store.receive(ctx, now, SourceRule, in, "from alerting rule "+r.Name()); err != nil {
						return nil, err
					}
				}
			}
		}
		if err := p.store.release(ctx, now); err != nil {
			return nil, err
		}
		if err := expireSilences(now); err != nil {
			return nil, err
		}
		// As alertd's loop after its release: a silence or window that
		// begins now suppresses the alerts firing since before.
		p.suppressBegun(ctx, now)
		sils.observe(now, p.store)
		rec.step(now)
		esc.step(now)
		p.store.gc(now)
	}
	rec.finish()
	res.Firings = rec.firings
	res.Escalations, res.Acknowledgements, res.Incidents = esc.steps(), esc.acknowledged(), esc.incidentHistories(opts.To)
	if esc == nil {
		// Without escalation policies there is nothing to acknowledge.
		res.Acknowledgements = sortedAcks(opts.Acknowledgements)
	}
	res.Silences = sils.result()
	res.Summary = summarize(res.Firings, res.Escalations, res.Acknowledgements, res.Silences, opts.To.Sub(opts.From))
	return res, nil
}

// historyLookback is how far before the range the replay reads: the
// longest anomaly detector history, and at least a day for range
// selectors and `for` state.
func historyLookback(cfg *alertconfig.Config, lookback time.Duration) time.Duration {
	d := 24 * time.Hour
	for _, dc := range cfg.AnomalyDetectors {
		if dc.History != nil {
			d = max(d, time.Duration(*dc.History)+time.Duration(dc.Interval))
		}
	}
	return d + lookback
}

// fromRuleAlert turns an alerting rule's alert into a pipeline alert, as
// Prometheus's rules.SendAlerts turns it into a notifier alert: startsAt
// is when it fired, endsAt its resolution or validUntil.
func fromRuleAlert(ra *promrules.Alert, now, validUntil time.Time) *Alert {
	al := &Alert{Source: SourceRule, Value: ra.Value}
	al.Labels = labelSet(ra.Labels)
	// The rule's hysteresis is configuration, not news for receivers.
	al.Annotations = labelSet(ra.Annotations)
	delete(al.Annotations, rules.KeepFiringWhile)
	al.StartsAt = ra.FiredAt
	if !ra.ResolvedAt.IsZero() {
		al.EndsAt = ra.ResolvedAt
	} else {
		al.EndsAt = validUntil
	}
	al.UpdatedAt = now
	return al
}

// replayRecorder stands in for the notifier: it records each firing's
// outcome, and groups notified firings into incidents by their routes'
// group_by labels, as Alertmanager's dispatcher groups them and alertd's
// ledger opens incidents: one for each route the alert matches.
type replayRecorder struct {
	routing *routing
	store   *store
	// sent are the fingerprints handed to the notifier since the last step.
	sent map[model.Fingerprint]bool
	// open are the firings that fire now, by fingerprint.
	open map[model.Fingerprint]*ReplayFiring
	// incidents are the incidents notified firings open and join, kept as
	// alertd's ledger keeps its own; incidentOf names the incidents of each
	// open firing that has some, and openedBy the labels of the alert that
	// opened each incident.
	incidents  *incidents
	incidentOf map[model.Fingerprint][]string
	openedBy   map[string]model.LabelSet
	firings    []ReplayFiring
}

func newReplayRecorder(r *routing) *replayRecorder {
	return &replayRecorder{
		routing:    r,
		sent:       map[model.Fingerprint]bool{},
		open:       map[model.Fingerprint]*ReplayFiring{},
		incidents:  newIncidents(),
		incidentOf: map[model.Fingerprint][]string{},
		openedBy:   map[string]model.LabelSet{},
	}
}

// put receives what the pipeline hands to the notifier; step tells firing
// from resolved on the replay's clock.
func (r *replayRecorder) put(alerts ...*amalert.Alert) error {
	for _, a := range alerts {
		r.sent[a.Fingerprint()] = true
	}
	return nil
}

// step looks at the pipeline's alerts after an evaluation at now: new
// firings open, notified ones get their outcome, resolved ones close.
func (r *replayRecorder) step(now time.Time) {
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	for fp, a := range r.store.alerts {
		f := r.open[fp]
		if f != nil && !f.FiredAt.Equal(a.StartsAt) {
			// Resolved and fired again between two looks.
			r.close(fp, a.StartsAt)
			f = nil
		}
		if a.ResolvedAt(now) {
			if f != nil {
				r.close(fp, a.EndsAt)
			}
			continue
		}
		if f == nil {
			f = &ReplayFiring{Fingerprint: fp.String(), Labels: a.Labels.Clone(), FiredAt: a.StartsAt}
			r.open[fp] = f
		}
		if f.Outcome != "" {
			continue
		}
		if r.sent[fp] && !a.Suppressed {
			f.NotifiedAt = now
			f.SuppressedBy, f.Reason = "", ""
			// As alertd's ledger: an incident in each group of the
			// alert's routes. It paged when it opened one, and its
			// incident is its first route's.
			f.Outcome = OutcomeUnrouted
			for i, g := range r.routing.groups(a.Labels) {
				if i == 0 {
					f.Outcome, f.Incident = OutcomeGrouped, g.ID
				}
				if in := r.incidents.byKey[g.ID]; in != nil {
					r.join(now, fp, g, in.ID)
					continue
				}
				f.Outcome = OutcomePaged
				id := incidentID(g.ID, now)
				r.openedBy[id] = a.Labels.Clone()
				r.join(now, fp, g, id)
			}
			continue
		}
		if a.Suppressed {
			// The first stage, in pipeline order, of the latest
			// suppressions: a silence before the hold it overlaps.
			var at time.Time
			for i := len(a.History) - 1; i >= 0; i-- {
				d := a.History[i]
				if !at.IsZero() && !d.Time.Equal(at) {
					break
				}
				if d.Action == "suppressed" {
					f.SuppressedBy, f.Reason, at = d.Stage, d.Reason, d.Time
				}
			}
		}
	}
	for fp := range r.open {
		if _, ok := r.store.alerts[fp]; !ok {
			r.close(fp, now)
		}
	}
	clear(r.sent)
	// Closed incidents are kept as long as alertd lists them.
	r.incidents.prune(now.Add(-incidentClosedRetention))
	for id := range r.openedBy {
		if r.incidents.byID[id] == nil {
			delete(r.openedBy, id)
		}
	}
}

// join records a notified firing in the incident id of its group, opening
// the incident if need be, as the ledger's grouped events do.
func (r *replayRecorder) join(now time.Time, fp model.Fingerprint, g alertGroup, id string) {
	r.incidents.group(&Event{Time: now, Fingerprint: fp.String(), Incident: id, GroupKey: g.Key, GroupLabels: g.Labels, Receiver: g.Receiver, Route: g.Route})
	r.incidentOf[fp] = append(r.incidentOf[fp], id)
}

// close ends the open firing of fp at t, and its incident with the last
// of its firings. Called with the store locked.
func (r *replayRecorder) close(fp model.Fingerprint, t time.Time) {
	f := r.open[fp]
	delete(r.open, fp)
	f.ResolvedAt = t
	for _, id := range r.incidentOf[fp] {
		r.incidents.resolve(id, fp.String(), t)
	}
	delete(r.incidentOf, fp)
	r.done(f)
}

// done records a firing whose life is over (or the range is).
func (r *replayRecorder) done(f *ReplayFiring) {
	if f.Outcome == "" {
		f.Outcome = OutcomeSuppressed
	}
	r.firings = append(r.firings, *f)
}

// finish records the firings still open at the end of the range.
func (r *replayRecorder) finish() {
	for _, f := range r.open {
		r.done(f)
	}
	clear(r.open)
	sort.Slice(r.firings, func(i, j int) bool {
		a, b := r.firings[i], r.firings[j]
		if !a.FiredAt.Equal(b.FiredAt) {
			return a.FiredAt.Before(b.FiredAt)
		}
		return a.Fingerprint < b.Fingerprint
	})
}

// summarize counts firings by outcome, the escalation notifications of
// the chains' levels, the acknowledgements and the silences.
func summarize(fs []ReplayFiring, es []ReplayEscalation, acks []ReplayAcknowledgement, sils []ReplaySilence, span time.Duration) ReplaySummary {
	s := ReplaySummary{Suppressed: map[string]int{}}
	alerts := map[string]bool{}
	for _, f := range fs {
		alerts[f.Fingerprint] = true
		s.Firings++
		switch f.Outcome {
		case OutcomePaged:
			s.Pages++
		case OutcomeGrouped:
			s.Grouped++
		case OutcomeSuppressed:
			s.Suppressed[f.SuppressedBy]++
		case OutcomeUnrouted:
			s.Unrouted++
		}
	}
	s.Alerts = len(alerts)
	for _, e := range es {
		if chainEvent(escalate.Event(e.Event)) {
			if s.EscalationsByLevel == nil {
				s.EscalationsByLevel = map[int]int{}
			}
			s.Escalations++
			s.EscalationsByLevel[e.Level]++
		}
	}
	for _, a := range acks {
		if len(a.Incidents) > 0 {
			s.AcknowledgementsApplied++
		} else {
			s.AcknowledgementsUnmatched++
		}
		if a.Scope == AckScopeAlerts {
			s.AcknowledgementsRouteMissing++
		}
	}
	for _, sil := range sils {
		if len(sil.Alerts) > 0 {
			s.SilencesApplied++
		} else {
			s.SilencesUnmatched++
		}
	}
	if days := span.Hours() / 24; days > 0 {
		s.PagesDay = math.Round(float64(s.Pages)/days*100) / 100
	}
	return s
}

// heldQueryable serves every Querier from one querier over the whole
// replayed range, opened once: a read-only TSDB loads its blocks and
// write-ahead log for each querier it opens.
type heldQueryable struct {
	q storage.Querier
}

func newHeldQueryable(src storage.Queryable, from, to time.Time) (*heldQueryable, error) {
	q, err := src.Querier(from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, err
	}
	return &heldQueryable{q: q}, nil
}

// Querier implements storage.Queryable.
func (h *heldQueryable) Querier(int64, int64) (storage.Querier, error) {
	return nopCloseQuerier{h.q}, nil
}

// Close closes the held querier.
func (h *heldQueryable) Close() error { return h.q.Close() }

type nopCloseQuerier struct{ storage.Querier }

func (nopCloseQuerier) Close() error { return nil }

// mergeQueryable reads several queryables as one.
type mergeQueryable []storage.Queryable

// Querier implements storage.Queryable.
func (m mergeQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	qs := make([]storage.Querier, 0, len(m))
	for _, q := range m {
		qr, err := q.Querier(mint, maxt)
		if err != nil {
			for _, o := range qs {
				o.Close()
			}
			return nil, err
		}
		qs = append(qs, qr)
	}
	return storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge), nil
}
