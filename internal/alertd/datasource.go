package alertd

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	promrules "github.com/prometheus/prometheus/rules"

	"github.com/modelmon/modelmon/rules"
)

// datasourceDownAlert is the name of alertd's alert about its data source.
const datasourceDownAlert = "AlertdDatasourceDown"

// downEval is a rule, or an anomaly detector, whose latest evaluation
// failed because the data source is down (rules.DownError): it did not
// answer, asked to wait, or answered with part of the data.
type downEval struct {
	// key names it across evaluations: group file, group and rule name
	// and labels, or the detector's name.
	key string
	// name is how the data source alert names it.
	name   string
	reason string
	err    error
	// evaluated is when that evaluation ran.
	evaluated time.Time
	// rule is the alerting rule, nil for a recording rule or a detector.
	rule *promrules.AlertingRule
}

// downEvals returns the rules and anomaly detectors whose latest
// evaluation failed because the data source is down, in the order of
// their groups and files, detectors last. Each is as of its own latest
// evaluation, so rules that do not touch a failed store (a Thanos store, a
// vmstorage node) and answer in between do not hide those that do.
func (a *Alertd) downEvals() []downEval {
	if a.rules == nil {
		return nil // not built yet
	}
	var out []downEval
	for _, g := range a.rules.RuleGroups() {
		for _, r := range g.Rules() {
			err := r.LastError()
			reason := rules.DownReason(err)
			if reason == "" {
				continue
			}
			d := downEval{
				key:  g.File() + "\xff" + g.Name() + "\xff" + r.Name() + "\xff" + r.Labels().String(),
				name: r.Name(), reason: reason, err: err, evaluated: r.GetEvaluationTimestamp(),
			}
			d.rule, _ = r.(*promrules.AlertingRule)
			out = append(out, d)
		}
	}
	for _, r := range a.runners() {
		at, err := r.lastEval()
		if reason := rules.DownReason(err); reason != "" {
			out = append(out, downEval{key: "\xffdetector\xff" + r.cfg.Name, name: "detector " + r.cfg.Name, reason: reason, err: err, evaluated: at})
		}
	}
	return out
}

// maxNamedEvals is how many failing rules the data source alert names.
const maxNamedEvals = 5

// checkDatasource runs every few seconds. A rule whose latest evaluation
// failed because the remote data source cannot be queried, or answers only
// part of the data (a Thanos store or a VictoriaMetrics storage node
// missing), cannot tell whether its alerts still hold; instead of letting
// them time out into a false "resolved", alertd keeps that rule's firing
// alerts firing (recorded in their history). While any rule or detector is
// so, alertd raises its own alert. Once a rule evaluates again, it takes
// over its alerts; once none fails so, the own alert resolves.
func (a *Alertd) checkDatasource(now time.Time) {
	if a.remote == nil {
		return
	}
	down := a.downEvals()
	// When each began failing, as first seen here; forgotten once it
	// evaluates again.
	since := make(map[string]time.Time, len(down))
	first := 0 // the earliest failure, which speaks for all
	for i, d := range down {
		s, ok := a.downSince[d.key]
		if !ok {
			s = cmp.Or(d.evaluated, now)
		}
		since[d.key] = s
		if s.Before(since[down[first].key]) {
			first = i
		}
	}
	a.downSince = since

	own := &Alert{Value: 0}
	own.Labels = model.LabelSet{
		model.AlertNameLabel: datasourceDownAlert,
		"severity":           "critical",
		"category":           "availability",
		"datasource":         model.LabelValue(redactURL(a.datasourceURL(a.cfg.Load()))),
	}
	own.GeneratorURL = a.opts.ExternalURL.String() + "/api/v1/rules"
	ctx := context.Background()
	if len(down) == 0 {
		// Resolve the own alert once, if it was firing.
		for _, al := range a.store.active(SourceAlertd, now) {
			if al.Labels[model.AlertNameLabel] == datasourceDownAlert {
				own.StartsAt = al.StartsAt
				own.EndsAt = now
				_ = a.store.receive(ctx, now, SourceAlertd, []*Alert{own}, "the data source answers again")
			}
		}
		return
	}
	hold := 4 * max(a.opts.ResendDelay, time.Duration(a.cfg.Load().Global.EvaluationInterval))
	why, until := downWhy(down[first].reason)
	names := make([]string, 0, maxNamedEvals)
	for _, d := range down[:min(len(down), maxNamedEvals)] {
		names = append(names, d.name)
	}
	failing := strings.Join(names, ", ")
	if len(down) > maxNamedEvals {
		failing += fmt.Sprintf(" and %d more", len(down)-maxNamedEvals)
	}
	own.StartsAt = since[down[first].key]
	own.Annotations = model.LabelSet{
		"summary": "alertd cannot query its data source",
		"description": model.LabelValue(fmt.Sprintf("Queries to %s fail since %s: %v. Rule alerts are held in their last state until %s. Failing: %s.",
			redactURL(a.datasourceURL(a.cfg.Load())), own.StartsAt.UTC().Format(time.RFC3339), down[first].err, until, failing)),
	}
	own.EndsAt = now.Add(hold)
	if err := a.store.receive(ctx, now, SourceAlertd, []*Alert{own}, why); err != nil {
		a.logger.Error("Failed to raise the data source alert", "err", err)
	}

	// Hold the firing alerts of the rules that failed, each for its own
	// reason; those of rules that evaluate are theirs to resolve.
	active := map[model.Fingerprint]*Alert{}
	for _, al := range a.store.active(SourceRule, now) {
		active[al.Fingerprint] = al
	}
	var held []*Alert
	notes := map[string][]model.Fingerprint{}
	for _, d := range down {
		if d.rule == nil {
			continue
		}
		for _, ra := range d.rule.ActiveAlerts() {
			if ra.State != promrules.StateFiring {
				continue
			}
			al, ok := active[labelSet(ra.Labels).Fingerprint()]
			if !ok {
				continue
			}
			delete(active, al.Fingerprint)
			al.EndsAt = now.Add(hold)
			held = append(held, al)
			a.metrics.datasourceHeld.WithLabelValues(d.reason).Inc()
			why, _ := downWhy(d.reason)
			note := fmt.Sprintf("kept firing: %s since %s (%v)", why, since[d.key].UTC().Format(time.RFC3339), d.err)
			notes[note] = append(notes[note], al.Fingerprint)
		}
	}
	if len(held) == 0 {
		return
	}
	if err := a.store.receive(ctx, now, SourceRule, held, ""); err != nil {
		a.logger.Error("Failed to hold rule alerts", "err", err)
	}
	for note, fps := range notes {
		a.store.noteOnce(fps, Decision{Time: now, Stage: "datasource", Action: "held", Reason: note})
	}
}

// downWhy says, for the data source alert and held alerts, what a reason
// of rules.DownError means and until when alerts are held.
func downWhy(reason string) (why, until string) {
	if reason == rules.ReasonPartialResponse {
		// A Thanos store or VictoriaMetrics storage node is missing: the
		// data source answers, but rules would fire or resolve on part of
		// the data.
		return "the data source answers only part of the data", "it answers in full"
	}
	return "the data source does not answer", "it answers"
}

// datasourceUp tells whether no rule or detector's latest evaluation
// failed because the data source is down.
func (a *Alertd) datasourceUp() bool {
	return len(a.downEvals()) == 0
}
