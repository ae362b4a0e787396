package driftcli

import (
	"cmp"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/config"
)

// sloWindows are the windows the error ratios are recorded over: those of
// the burn-rate alerts below.
var sloWindows = []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"}

// burnAlert is one pair of windows of a multiwindow, multi-burn-rate alert
// (Google's SRE workbook, chapter 5): it fires when the error ratio over
// both windows is above the rate that spends budget of the error budget in
// long.
type burnAlert struct {
	long, short model.Duration
	budget      float64 // the share of the period's error budget spent over long
	page        bool
}

// burnAlerts are the workbook's: 2 % of the budget in an hour or 5 % in six
// hours pages, 10 % in a day or in three days is a ticket. Over 30 days these
// are burn rates of 14.4, 6, 3 and 1.
var burnAlerts = []burnAlert{
	{model.Duration(time.Hour), model.Duration(5 * time.Minute), 0.02, true},
	{model.Duration(6 * time.Hour), model.Duration(30 * time.Minute), 0.05, true},
	{model.Duration(24 * time.Hour), model.Duration(2 * time.Hour), 0.10, false},
	{model.Duration(72 * time.Hour), model.Duration(6 * time.Hour), 0.10, false},
}

// maxErrorRatio caps a pair's threshold. An error ratio is at most 1, so a
// pair can fire only while burn rate × (1 − objective) stays below 1: the
// most a burn rate can be is 1/(1 − objective), every event bad (Datadog's
// "max burn rate"). Past that the workbook's pair is dead: at 30 days the
// hour's 14.4 is out of reach from an objective of 0.93 down, the six
// hours' 6 from 0.83, and longer periods raise both. Sloth writes such
// rules as they come (slok/sloth#341), Datadog refuses them; here the pair
// keeps its windows and fires on an outage instead, once 90 % of the
// events fail over both, which a total outage reaches 90 % of the way
// into the long window (54 minutes into the hour). Not 1, nor just under
// it: rate() extrapolates at the window's edges, an error series that
// starts with the outage loses its first increase, and a replica or a
// cache may still answer a few. The cap touches no threshold below 0.9,
// so none of an objective of 0.94 or more over 30 days (the hour's
// 14.4 × 0.06 is 0.864).
const maxErrorRatio = 0.9

// sloRule is a recording or an alerting rule.
type sloRule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// sloObjective is one objective of one model.
type sloObjective struct {
	name      string  // the slo label: availability, latency, accuracy, regression
	objective float64 // the share of good events
	// errorRatio is the share of bad events over a window, by model.
	errorRatio func(window string) string
	bad        string // what the bad events are, for annotations
	category   string // the alerts' category label
}

// SLORules returns the recording and alerting rules of the models' SLOs
// (models[].slos): per model and objective, the error ratio over the
// burn-rate windows (modelmon:slo_error_ratio:rate<window>), the objective
// (modelmon:slo_objective) and the error budget left over the period
// (modelmon:slo_error_budget_remaining:ratio), and the alerts
// ModelSLOBurnRateHigh (page) and ModelSLOBurnRateElevated (ticket).
func SLORules(cfg *config.Config) []sloRule {
	models := append([]config.Model(nil), cfg.Models...)
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
	var rules []sloRule
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	// Thresholds and budgets to 12 digits: 1 - 0.999 is 0.0010000000000000009.
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 12, 64) }
	for _, m := range models {
		s := m.SLOs
		if s == nil {
			continue
		}
		sel := fmt.Sprintf(`{model=%q}`, m.Name)
		ratio := func(bad, badSel, total string) func(string) string {
			return func(w string) string {
				return fmt.Sprintf("sum by (model) (rate(%s%s[%s]))\n/\nsum by (model) (rate(%s%s[%s]))", bad, badSel, w, total, sel, w)
			}
		}
		var objs []sloObjective
		if s.Availability > 0 {
			// A 4xx is the client's error, not the service's (as the
			// serving rules count it): it spends no availability budget.
			objs = append(objs, sloObjective{"availability", s.Availability,
				ratio(collector.PredictionErrorsTotal, fmt.Sprintf(`{model=%q, reason!="upstream_4xx"}`, m.Name), collector.RequestsTotal),
				"of its prediction requests failed", categoryAvailability})
		}
		if s.Latency > 0 {
			objs = append(objs, sloObjective{"latency", s.Latency,
				bucketErrorRatio(collector.PredictionDuration, m.Name, s.LatencyThreshold, true, "0"),
				"of its prediction requests took longer than " + f(s.LatencyThreshold) + "s", categoryPerformance})
		}
		if s.Accuracy > 0 {
			objs = append(objs, sloObjective{"accuracy", s.Accuracy, func(w string) string {
				return fmt.Sprintf("1 - (\n  sum by (model) (rate(%s%s[%s]))\n  /\n  sum by (model) (rate(%s%s[%s]))\n)",
					collector.PredictionCorrectTotal, sel, w, collector.PredictionOutcomeTotal, sel, w)
			}, "of its labelled predictions were wrong", categoryAccuracy})
		}
		if s.Regression > 0 {
			// From -Inf, not 0: exact predictions go to the native
			// histogram's zero bucket, [-z, z], which histogram_fraction
			// cuts in half from 0 when no error in the window is above
			// it. Counted when the labels join, as accuracy is.
			objs = append(objs, sloObjective{"regression", s.Regression,
				bucketErrorRatio(collector.PredictionErrorMagnitude, m.Name, s.RegressionThreshold, len(m.ErrorBuckets) > 0, "-Inf"),
				"of its labelled numeric predictions were off by more than " + f(s.RegressionThreshold), categoryAccuracy})
		}
		period := time.Duration(cmp.Or(s.Period, config.DefaultSLOPeriod))
		periodText := model.Duration(period).String()
		for _, o := range objs {
			labels := map[string]string{"model": m.Name, "slo": o.name}
			osel := fmt.Sprintf(`{model=%q, slo=%q}`, m.Name, o.name)
			budget := 1 - o.objective
			for _, w := range sloWindows {
				rules = append(rules, sloRule{Record: "modelmon:slo_error_ratio:rate" + w, Expr: o.errorRatio(w), Labels: labels})
			}
			rules = append(rules,
				sloRule{Record: "modelmon:slo_objective", Expr: fmt.Sprintf("0 * group by (model) (%s%s) + %s", collector.ModelInfoMetric, sel, f(o.objective)), Labels: labels},
				sloRule{Record: "modelmon:slo_error_budget_remaining:ratio",
					Expr: fmt.Sprintf("1 - (\n%s\n) / %s", o.errorRatio(periodText), g(budget)), Labels: labels})
			for _, page := range []bool{true, false} {
				name, sev, when := "ModelSLOBurnRateHigh", cmp.Or(s.PageSeverity, "page"), "at this rate the period's error budget is gone within days"
				if !page {
					name, sev, when = "ModelSLOBurnRateElevated", cmp.Or(s.TicketSeverity, "ticket"), "at this rate the period's error budget is gone before the period ends"
				}
				expr := ""
				for _, b := range burnAlerts {
					if b.page != page {
						continue
					}
					rate := b.budget * float64(period) / float64(b.long)
					threshold := g(min(rate*budget, maxErrorRatio))
					if expr != "" {
						expr += "\nor\n"
					}
					expr += fmt.Sprintf("(\n  modelmon:slo_error_ratio:rate%s%s > %s\n  and\n  modelmon:slo_error_ratio:rate%s%s > %s\n)",
						b.long, osel, threshold, b.short, osel, threshold)
				}
				rules = append(rules, sloRule{
					Alert:  name,
					Expr:   expr,
					Labels: map[string]string{"severity": sev, "category": o.category, "model": templateText(m.Name), "slo": o.name},
					Annotations: map[string]string{
						"runbook_url": runbookURL(name),
						"summary":     fmt.Sprintf("Model %s spends its %s error budget too fast.", templateText(m.Name), o.name),
						"description": fmt.Sprintf("{{ $labels.model }}: {{ $value | humanizePercentage }} %s over the alert's long window, against an error budget of %s%% over %s (objective %s): %s.",
							o.bad, g(budget*100), periodText, f(o.objective), when),
					},
				})
			}
		}
	}
	return rules
}

// bucketErrorRatio returns the error ratio of an objective on a histogram
// of metric, by model: the share of model's observations above threshold
// over a window. With classic buckets, one of which is threshold, it is
// read from that bucket where Prometheus keeps them; else, or where
// Prometheus keeps only the native histogram, from histogram_fraction
// between lower and threshold (interpolated within the bucket the
// threshold falls in).
func bucketErrorRatio(metric, model string, threshold float64, classic bool, lower string) func(window string) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	sel := fmt.Sprintf(`{model=%q}`, model)
	// Prometheus 3 writes le="1" as le="1.0"; 2 as it came.
	le := fmt.Sprintf(`{model=%q, le=%q}`, model, f(threshold))
	if threshold == math.Trunc(threshold) {
		le = fmt.Sprintf(`{model=%q, le=~"%s|%s\\.0"}`, model, f(threshold), f(threshold))
	}
	return func(w string) string {
		native := fmt.Sprintf("(\n  1 - histogram_fraction(%s, %s, sum by (model) (rate(%s%s[%s])))\n)", lower, f(threshold), metric, sel, w)
		if !classic {
			return native
		}
		return fmt.Sprintf("(\n  1 - (\n    sum by (model) (rate(%s_bucket%s[%s]))\n    /\n    sum by (model) (rate(%s_count%s[%s]))\n  )\n)\nor\n%s",
			metric, le, w, metric, sel, w, native)
	}
}
