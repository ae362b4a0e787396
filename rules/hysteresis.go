package rules

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// KeepFiringWhile is the annotation that gives an alerting rule hysteresis:
// once one of its alerts fires, it keeps firing while this PromQL expression
// returns the alert's series, even after the rule's own expression has
// stopped returning it. The rule fires on `expr` and resolves when neither
// returns the series, which is a separate resolve threshold:
//
//	expr: modelmon_prediction_errors_ratio > 0.10
//	annotations:
//	  alertd_keep_firing_while: modelmon_prediction_errors_ratio > 0.05
//
// It is an annotation, not a field of the rule, so that rule files stay
// valid for promtool and Prometheus (which ignore it and fire without the
// hysteresis). alertd leaves it out of the alerts it sends.
const KeepFiringWhile = "alertd_keep_firing_while"

// groupKey is the context key of the evaluation of a rule group.
type groupKey struct{}

// evaluation is one evaluation of a rule group (one g.Eval).
type evaluation struct {
	g *promrules.Group
	// asked holds the alerting rules whose own expression was queried in
	// it, by name and labels.
	mu    sync.Mutex
	asked map[string]bool
}

// WithGroup returns ctx for evaluating g (g.Eval): it lets the query function
// of Hysteresis find the rule it evaluates for, and TemplateQuery tell a
// template's query from the rule's. Each evaluation needs its own.
func WithGroup(ctx context.Context, g *promrules.Group) context.Context {
	return context.WithValue(ctx, groupKey{}, &evaluation{g: g, asked: map[string]bool{}})
}

// templateKey is the context key of TemplateQuery's answer, where a query
// function has already asked it.
type templateKey struct{}

// TemplateQuery tells whether q, asked of the rule manager's query function
// with ctx, is a query of an alerting rule's label and annotation templates
// (Prometheus's `query` template function) rather than the rule's own
// expression. Prometheus's AlertingRule.Eval queries its expression first,
// then expands its templates with the same context, whose origin
// (promrules.FromOriginContext) names the rule: within one evaluation
// (WithGroup), the rule's first query of its expression is its own and
// every other query is a template's, one that repeats the expression
// included. Without WithGroup, only a query of another expression is a
// template's. alertd_keep_firing_while's query is Hysteresis's own and
// never passes here.
//
// It is to be asked once per query, as it records the rule's own: a query
// function that asks it passes its answer to those it calls with
// withTemplateQuery.
func TemplateQuery(ctx context.Context, q string) bool {
	if v, ok := ctx.Value(templateKey{}).(bool); ok {
		return v
	}
	d := promrules.FromOriginContext(ctx)
	if d.Kind != promrules.KindAlerting {
		return false
	}
	if d.Query != q {
		return true
	}
	e, _ := ctx.Value(groupKey{}).(*evaluation)
	if e == nil {
		return false
	}
	key := d.Name + "\xff" + d.Labels.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.asked[key] {
		return true
	}
	e.asked[key] = true
	return false
}

// isTemplateQuery reports what the rule manager's query function found of
// a query passed down with ctx (withTemplateQuery), without asking
// TemplateQuery again: false for a query that did not come through it.
func isTemplateQuery(ctx context.Context) bool {
	v, _ := ctx.Value(templateKey{}).(bool)
	return v
}

// withTemplateQuery returns ctx for the query functions a query function
// calls, with its answer of TemplateQuery.
func withTemplateQuery(ctx context.Context, template bool) context.Context {
	return context.WithValue(ctx, templateKey{}, template)
}

// EvalIterationFunc is Prometheus's evaluation of a group's iteration, with
// the group in the context (WithGroup).
func EvalIterationFunc(ctx context.Context, g *promrules.Group, evalTimestamp time.Time) {
	promrules.DefaultEvalIterationFunc(WithGroup(ctx, g), g, evalTimestamp)
}

// Hysteresis wraps the query function of alerting rules that carry the
// KeepFiringWhile annotation. When such a rule's expression no longer returns
// the series of one of its firing alerts, the series is taken from the
// annotation's expression instead, if that returns it (with its value), so
// that Prometheus's rule keeps the alert firing. Series are matched by their
// labels, leaving out the metric name and the labels the rule itself sets.
//
// Rules are found through the group in the context (WithGroup); without one,
// queries pass through unchanged.
type Hysteresis struct {
	// Query answers the queries.
	Query promrules.QueryFunc
	// Storage holds the ALERTS series of earlier runs, so that an alert that
	// was firing when alertd stopped, and is held by the annotation at the
	// start, keeps firing. Nil: nothing is restored.
	Storage storage.Queryable
	// OutageTolerance is how old the last ALERTS sample of an earlier run
	// may be for the alert to be restored (Prometheus's
	// --rules.alert.for-outage-tolerance).
	OutageTolerance time.Duration
	Logger          *slog.Logger

	mtx sync.Mutex
	// restored are, by rule, the alerts that were firing when alertd stopped
	// and that the annotation holds until they fire again: after a restart
	// they are pending, as Prometheus's alerts are, and only firing alerts
	// are held otherwise.
	restored map[string]map[uint64]bool
}

// QueryFunc is the query function to give the rule manager.
func (h *Hysteresis) QueryFunc(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
	res, err := h.Query(ctx, q, t)
	if err != nil {
		return res, err
	}
	d := promrules.FromOriginContext(ctx)
	if d.Kind != promrules.KindAlerting || TemplateQuery(ctx, q) {
		// Not an alerting rule's expression: a template's query, say.
		return res, nil
	}
	e, _ := ctx.Value(groupKey{}).(*evaluation)
	if e == nil {
		return res, nil
	}
	r := findRule(e.g, d)
	if r == nil {
		return res, nil
	}
	keep := r.Annotations().Get(KeepFiringWhile)
	if keep == "" {
		return res, nil
	}
	own := ruleLabelNames(r)
	in := make(map[uint64]bool, len(res))
	for _, s := range res {
		in[identity(s.Metric, own)] = true
	}
	want := map[uint64]bool{}
	firing := map[uint64]bool{}
	for _, a := range r.ActiveAlerts() {
		if a.State != promrules.StateFiring {
			continue
		}
		id := identity(a.Labels, own)
		firing[id] = true
		if !in[id] {
			want[id] = true
		}
	}

	// A rule is evaluated by one goroutine at a time (its group's), so its
	// restored set is only read and written here; the lock guards the map.
	key := d.Name + "\xff" + d.Labels.String() + "\xff" + d.Query
	h.mtx.Lock()
	restored := h.restored[key]
	h.mtx.Unlock()
	if r.GetEvaluationTimestamp().IsZero() && h.Storage != nil {
		ids, err := h.firingBefore(ctx, r, own, t)
		if err != nil {
			h.logger().Warn("Couldn't read which alerts were firing before the restart", "alertname", r.Name(), "err", err)
		}
		for _, id := range ids {
			if restored == nil {
				restored = map[uint64]bool{}
			}
			restored[id] = true
		}
	}
	for id := range restored {
		if firing[id] {
			// Firing again: held as any firing alert is.
			delete(restored, id)
		} else if !in[id] {
			want[id] = true
		}
	}
	if len(want) > 0 {
		kv, err := h.Query(ctx, keep, t)
		if err != nil {
			// The rule's evaluation fails and its alerts stay as they are,
			// as with an error in its own expression.
			return nil, fmt.Errorf("%s: %w", KeepFiringWhile, err)
		}
		for _, s := range kv {
			id := identity(s.Metric, own)
			if want[id] {
				res = append(res, s)
				delete(want, id)
				h.logger().Debug("Alert kept firing", "alertname", r.Name(), "labels", s.Metric, "value", s.F, "keep_firing_while", keep)
			}
		}
		// Restored alerts no longer held go as Prometheus's pending alerts go.
		for id := range want {
			delete(restored, id)
		}
	}
	h.mtx.Lock()
	if len(restored) == 0 {
		delete(h.restored, key)
	} else {
		if h.restored == nil {
			h.restored = map[string]map[uint64]bool{}
		}
		h.restored[key] = restored
	}
	h.mtx.Unlock()
	return res, nil
}

func (h *Hysteresis) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// firingBefore returns the identities of the rule's alerts whose ALERTS
// series, firing, was still written at its last sample within the outage
// tolerance before t: those that fired when the rule manager stopped (an
// alert that resolved has a stale marker last).
func (h *Hysteresis) firingBefore(ctx context.Context, r *promrules.AlertingRule, own map[string]bool, t time.Time) ([]uint64, error) {
	tol := h.OutageTolerance
	if tol <= 0 {
		tol = DefaultOutageTolerance
	}
	mint, maxt := t.Add(-tol).UnixMilli(), t.UnixMilli()
	q, err := h.Storage.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, "ALERTS"),
		labels.MustNewMatcher(labels.MatchEqual, labels.AlertName, r.Name()),
		labels.MustNewMatcher(labels.MatchEqual, "alertstate", promrules.StateFiring.String()),
	}
	// The rule's own labels tell its alerts from those of another rule of
	// the same name (a warning and a critical one), where they are not
	// templates.
	r.Labels().Range(func(l labels.Label) {
		if !strings.Contains(l.Value, "{{") {
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value))
		}
	})
	set := q.Select(ctx, false, &storage.SelectHints{Start: mint, End: maxt}, ms...)
	var ids []uint64
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		last := math.NaN()
		it = s.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			_, last = it.At()
		}
		if it.Err() != nil {
			return ids, it.Err()
		}
		if math.IsNaN(last) || value.IsStaleNaN(last) {
			continue
		}
		b := labels.NewBuilder(s.Labels())
		b.Del("alertstate")
		ids = append(ids, identity(b.Labels(), own))
	}
	return ids, set.Err()
}

// findRule returns the alerting rule of g that d describes.
func findRule(g *promrules.Group, d promrules.RuleDetail) *promrules.AlertingRule {
	for _, r := range g.AlertingRules() {
		if r.Name() == d.Name && labels.Equal(r.Labels(), d.Labels) && r.Query().String() == d.Query {
			return r
		}
	}
	return nil
}

// ruleLabelNames are the names of the labels the rule sets on its alerts.
func ruleLabelNames(r *promrules.AlertingRule) map[string]bool {
	own := map[string]bool{model.MetricNameLabel: true, labels.AlertName: true}
	r.Labels().Range(func(l labels.Label) { own[l.Name] = true })
	return own
}

// identity is the hash of the labels an alert's series is known by: its
// labels without the metric name, alertname and the rule's own labels, which
// the rule sets alike on every alert (and may set from the series).
func identity(ls labels.Labels, own map[string]bool) uint64 {
	b := labels.NewScratchBuilder(ls.Len())
	ls.Range(func(l labels.Label) {
		if !own[l.Name] {
			b.Add(l.Name, l.Value)
		}
	})
	return b.Labels().Hash()
}
