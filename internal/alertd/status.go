package alertd

import (
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promrules "github.com/prometheus/prometheus/rules"
)

// alertJSON is an alert in GET /api/v1/alerts: Prometheus's fields (labels,
// annotations, state, activeAt, value) with Alertmanager's (startsAt,
// endsAt, fingerprint, generatorURL), its source and its history.
type alertJSON struct {
	Labels       model.LabelSet `json:"labels"`
	Annotations  model.LabelSet `json:"annotations"`
	State        string         `json:"state"`
	ActiveAt     *time.Time     `json:"activeAt,omitempty"`
	StartsAt     time.Time      `json:"startsAt"`
	EndsAt       time.Time      `json:"endsAt"`
	Value        string         `json:"value"`
	Fingerprint  string         `json:"fingerprint"`
	Source       Source         `json:"source"`
	GeneratorURL string         `json:"generatorURL,omitempty"`
	History      []Decision     `json:"history"`
}

func formatValue(v float64) string {
	return model.SampleValue(v).String()
}

// apiAlerts lists the alerts alertd holds (firing, suppressed, recently
// resolved) and the rules' pending alerts, which are not yet in the
// pipeline. ?state= and ?fingerprint= (the link in notifications) filter.
func (a *Alertd) apiAlerts(w http.ResponseWriter, r *http.Request) {
	now := a.opts.Now()
	want := r.URL.Query().Get("state")
	fp := r.URL.Query().Get("fingerprint")
	out := []alertJSON{}
	add := func(j alertJSON) {
		if (want == "" || want == j.State) && (fp == "" || fp == j.Fingerprint) {
			out = append(out, j)
		}
	}
	for _, al := range a.store.snapshot() {
		state := "firing"
		switch {
		case al.ResolvedAt(now):
			state = "resolved"
		case al.Suppressed:
			state = "suppressed"
		}
		add(alertJSON{
			Labels: al.Labels, Annotations: al.Annotations, State: state,
			StartsAt: al.StartsAt, EndsAt: al.EndsAt, Value: formatValue(al.Value),
			Fingerprint: al.Fingerprint.String(), Source: al.Source, GeneratorURL: al.GeneratorURL,
			History: al.History,
		})
	}
	for _, rule := range a.rules.AlertingRules() {
		for _, ra := range rule.ActiveAlerts() {
			if ra.State != promrules.StatePending {
				continue
			}
			ls := labelSet(ra.Labels)
			activeAt := ra.ActiveAt
			add(alertJSON{
				Labels: ls, Annotations: labelSet(ra.Annotations), State: "pending",
				ActiveAt: &activeAt, Value: formatValue(ra.Value), Fingerprint: ls.Fingerprint().String(),
				Source: SourceRule, GeneratorURL: generatorURL(a.opts.ExternalURL, rule.Query().String()),
				History: []Decision{{Time: ra.ActiveAt, Stage: "rule", Action: "pending",
					Reason: "the expression holds; the alert fires once it has held for " + model.Duration(rule.HoldDuration()).String()}},
			})
		}
	}
	respond(w, map[string]any{"alerts": out})
}

type ruleJSON struct {
	Type           string         `json:"type"`
	Name           string         `json:"name"`
	Query          string         `json:"query"`
	Duration       float64        `json:"duration,omitempty"`
	KeepFiringFor  float64        `json:"keepFiringFor,omitempty"`
	Labels         labels.Labels  `json:"labels"`
	Annotations    *labels.Labels `json:"annotations,omitempty"`
	State          string         `json:"state,omitempty"`
	Alerts         []ruleAlert    `json:"alerts,omitempty"`
	Health         string         `json:"health"`
	LastError      string         `json:"lastError,omitempty"`
	EvaluationTime float64        `json:"evaluationTime"`
	LastEvaluation time.Time      `json:"lastEvaluation"`
}

type ruleAlert struct {
	Labels      labels.Labels `json:"labels"`
	Annotations labels.Labels `json:"annotations"`
	State       string        `json:"state"`
	ActiveAt    *time.Time    `json:"activeAt,omitempty"`
	Value       string        `json:"value"`
}

type groupJSON struct {
	Name           string     `json:"name"`
	File           string     `json:"file"`
	Interval       float64    `json:"interval"`
	Limit          int        `json:"limit"`
	Rules          []ruleJSON `json:"rules"`
	EvaluationTime float64    `json:"evaluationTime"`
	LastEvaluation time.Time  `json:"lastEvaluation"`
}

// apiRules lists rule groups as Prometheus's /api/v1/rules does: each rule
// with its health, last error and evaluation time; alerting rules with their
// state and active alerts. ?type=alert|record filters.
func (a *Alertd) apiRules(w http.ResponseWriter, r *http.Request) {
	typ := r.URL.Query().Get("type")
	groups := []groupJSON{}
	for _, g := range a.rules.RuleGroups() {
		gj := groupJSON{
			Name: g.Name(), File: g.File(), Interval: g.Interval().Seconds(), Limit: g.Limit(),
			Rules: []ruleJSON{}, EvaluationTime: g.GetEvaluationTime().Seconds(), LastEvaluation: g.GetLastEvaluation(),
		}
		for _, rule := range g.Rules() {
			rj := ruleJSON{
				Name: rule.Name(), Query: rule.Query().String(), Labels: rule.Labels(),
				Health: string(rule.Health()), EvaluationTime: rule.GetEvaluationDuration().Seconds(),
				LastEvaluation: rule.GetEvaluationTimestamp(),
			}
			if err := rule.LastError(); err != nil {
				rj.LastError = err.Error()
			}
			switch rule := rule.(type) {
			case *promrules.AlertingRule:
				if typ == "record" {
					continue
				}
				ann := rule.Annotations()
				rj.Type, rj.Annotations = "alerting", &ann
				rj.Duration, rj.KeepFiringFor = rule.HoldDuration().Seconds(), rule.KeepFiringFor().Seconds()
				rj.State = rule.State().String()
				rj.Alerts = []ruleAlert{}
				for _, al := range rule.ActiveAlerts() {
					activeAt := al.ActiveAt
					rj.Alerts = append(rj.Alerts, ruleAlert{
						Labels: al.Labels, Annotations: al.Annotations, State: al.State.String(),
						ActiveAt: &activeAt, Value: formatValue(al.Value),
					})
				}
			case *promrules.RecordingRule:
				if typ == "alert" {
					continue
				}
				rj.Type = "recording"
			}
			gj.Rules = append(gj.Rules, rj)
		}
		groups = append(groups, gj)
	}
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].File != groups[j].File {
			return groups[i].File < groups[j].File
		}
		return groups[i].Name < groups[j].Name
	})
	respond(w, map[string]any{"groups": groups})
}

// labelSet converts Prometheus labels to Alertmanager's label set.
func labelSet(ls labels.Labels) model.LabelSet {
	out := make(model.LabelSet, ls.Len())
	ls.Range(func(l labels.Label) { out[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return out
}
