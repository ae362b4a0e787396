package driftcli

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/deploy/kubernetes"
	"github.com/modelmon/modelmon/internal/config"
)

// The category labels of the generated alerts, from those the shipped rules
// in rules/ set, which alertd's classifier maps to its categories (classify
// package): accuracy → model_performance, data_quality → data_quality,
// availability and performance → system_health.
const (
	categoryAccuracy     = "accuracy"
	categoryDataQuality  = "data_quality"
	categoryAvailability = "availability"
	categoryPerformance  = "performance"
)

// runbookURL is the runbook_url of an alert: its section of
// docs/runbooks.md, whose GitHub anchor is the heading in lowercase, as for
// the shipped rules (scripts/checkrules.sh checks both).
func runbookURL(alert string) string {
	return "https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#" + strings.ToLower(alert)
}

// QualityAlerts returns a Prometheus rule file with an alerting rule for each
// quality threshold of each model in cfg (models[].alerts), on the recording
// rules of deploy/prometheus/quality.rules.yml over the last hour, and the
// rules of the models' SLOs (models[].slos, SLORules) in a second group.
// Every alert carries severity and category labels and a runbook_url, as
// the shipped rules do.
func QualityAlerts(cfg *config.Config) ([]byte, error) {
	type rule struct {
		Alert       string            `yaml:"alert"`
		Expr        string            `yaml:"expr"`
		For         string            `yaml:"for,omitempty"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	var rules []rule
	models := append([]config.Model(nil), cfg.Models...)
	sort.Slice(models, func(i, j int) bool { return models[i].Name < models[j].Name })
	for _, m := range models {
		a := m.Alerts
		if a == nil {
			continue
		}
		sev := a.Severity
		if sev == "" {
			sev = "warning"
		}
		// Prometheus expands an alert's labels and annotations as templates:
		// the model's name goes in as text.
		name := templateText(m.Name)
		add := func(alert, category, expr, summary string) {
			rules = append(rules, rule{
				Alert: alert, Expr: expr, For: a.For,
				Labels: map[string]string{"severity": sev, "category": category, "model": name},
				Annotations: map[string]string{
					"summary":     summary,
					"description": "{{ $labels.model }}: {{ $value | humanize }} over the last hour.",
					"runbook_url": runbookURL(alert),
				},
			})
		}
		sel := fmt.Sprintf(`{model=%q}`, m.Name)
		f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
		// Accuracy, F1, MAE, RMSE and R² are checked over an hour with at
		// least MinSamples labels that the figure is over (config's
		// DefaultMinSamples says why): in a quiet hour one wrong label
		// crosses any threshold.
		samples := " >= " + strconv.Itoa(cmp.Or(a.MinSamples, config.DefaultMinSamples))
		// over describes an alert's value with the count of the noun it is
		// over, a query by the model's name.
		over := func(query, noun string) {
			args := slices.Repeat([]string{"$labels.model"}, strings.Count(query, "%q"))
			rules[len(rules)-1].Annotations["description"] = "{{ $labels.model }}: {{ $value | humanize }} over " + counted(query, noun, args...) + " in the last hour."
		}
		const (
			classLabelCount   = `sum(modelmon:prediction_outcome:increase1h{model=%q})`
			numericLabelCount = `sum(modelmon:prediction_regression_outcomes:increase1h{model=%q})`
		)
		classLabels := "\n  and on (model) sum by (model) (modelmon:prediction_outcome:increase1h" + sel + ")" + samples
		numericLabels := "\n  and on (model) sum by (model) (modelmon:prediction_regression_outcomes:increase1h" + sel + ")" + samples
		if a.MinAccuracy > 0 {
			add("ModelAccuracyLow", categoryAccuracy, "modelmon:accuracy:1h"+sel+" < "+f(a.MinAccuracy)+classLabels, "Accuracy of model "+name+" below "+f(a.MinAccuracy)+".")
			over(classLabelCount, "class label")
		}
		// The estimated accuracy is over the hour's predictions in the
		// confidence bins whose accuracy the last day's labels measured, a
		// bin counting only with at least MinSamples labels in the day: over
		// 1 or 2 labels a bin's accuracy is 0, 0.5 or 1, and the estimate
		// applies it to all the hour's predictions in the bin. With each
		// bin's over n labels or more, the estimate Σ w·a (w the bins'
		// shares of the predictions) errs by its calibration no more than
		// accuracy does over n labels: its variance, Σ w²·a(1 − a)/n, is at
		// most ā(1 − ā)/n. It is checked when those bins hold at least 90 %
		// of the hour's predictions and MinSamples in number: a mean of
		// values in [0, 1] spreads no more than accuracy over as many labels.
		// Bins are mostly thin because few predictions fall in them, so
		// leaving them out costs little coverage.
		if a.MinEstimatedAccuracy > 0 {
			const (
				hour   = "modelmon:prediction_confidence_predictions:increase1h"
				labels = "modelmon:prediction_confidence_outcomes:increase1d"
			)
			// The hour's predictions by bin, in the bins that count.
			covered := "sum by (model) (" +
				"\n      " + hour + sel +
				"\n        and on (model, bins, bin)" +
				"\n      " + labels + sel + samples +
				"\n  )"
			add("ModelEstimatedAccuracyLow", categoryAccuracy, "sum by (model) ("+
				"\n      "+hour+sel+
				"\n        * on (model, bins, bin)"+
				"\n      (modelmon:calibration_accuracy:1d"+sel+" and on (model, bins, bin) "+labels+sel+samples+")"+
				"\n  )"+
				"\n    / "+covered+
				"\n    < "+f(a.MinEstimatedAccuracy)+
				"\n  and on (model) "+covered+
				"\n    / sum by (model) ("+hour+sel+") >= 0.9"+
				"\n  and on (model) "+covered+samples,
				"Accuracy of model "+name+" estimated from its confidence below "+f(a.MinEstimatedAccuracy)+", before its labels say so.")
			rules[len(rules)-1].Annotations["description"] = "{{ $labels.model }}: {{ $value | humanize }} over " +
				counted(`sum(`+hour+`{model=%q} and on (bins, bin) `+labels+`{model=%q}`+samples+`)`, "prediction", "$labels.model", "$labels.model") +
				" in the last hour, in confidence bins with " +
				counted(`sum(`+labels+`{model=%q}`+samples+` and on (bins, bin) `+hour+`{model=%q})`, "label", "$labels.model", "$labels.model") +
				" in the last day."
		}
		// A class's F1, 2·right / (predicted + actual), is over its
		// predictions and its labels: the guard counts both, its
		// denominator, so that a model that floods a class with wrong
		// predictions is caught though the class has few labels in the
		// hour (its F1 then is small whatever they say). Each side is
		// summed by its own label before it is renamed class, so that
		// `or` keeps both sides of a class (their other labels differ).
		// The description gives both counts, 0 for a side the class has no
		// series on (never predicted, or never a label).
		if a.MinF1 > 0 {
			add("ModelF1Low", categoryAccuracy, "modelmon:f1:1h"+sel+" < "+f(a.MinF1)+
				"\n  and on (model, class) sum by (model, class) ("+
				"\n      label_replace(sum by (model, predicted) (modelmon:prediction_outcome:increase1h"+sel+`), "class", "$1", "predicted", "(.*)")`+
				"\n    or"+
				"\n      label_replace(sum by (model, actual) (modelmon:prediction_outcome:increase1h"+sel+`), "class", "$1", "actual", "(.*)")`+
				"\n  )"+samples,
				"F1 of class {{ $labels.class }} of model "+name+" below "+f(a.MinF1)+".")
			rules[len(rules)-1].Annotations["description"] = "{{ $labels.model }}: F1 of class {{ $labels.class }} {{ $value | humanize }} over " +
				counted(`sum(modelmon:prediction_outcome:increase1h{model=%q, predicted=%q}) or vector(0)`, "prediction", "$labels.model", "$labels.class") + " and " +
				counted(`sum(modelmon:prediction_outcome:increase1h{model=%q, actual=%q}) or vector(0)`, "label", "$labels.model", "$labels.class") + " of it in the last hour."
		}
		if a.MaxMAE > 0 {
			add("ModelMAEHigh", categoryAccuracy, "modelmon:mae:1h"+sel+" > "+f(a.MaxMAE)+numericLabels, "Mean absolute error of model "+name+" above "+f(a.MaxMAE)+".")
			over(numericLabelCount, "numeric label")
		}
		if a.MaxRMSE > 0 {
			add("ModelRMSEHigh", categoryAccuracy, "modelmon:rmse:1h"+sel+" > "+f(a.MaxRMSE)+numericLabels, "RMSE of model "+name+" above "+f(a.MaxRMSE)+".")
			over(numericLabelCount, "numeric label")
		}
		if a.MinR2 > 0 {
			add("ModelR2Low", categoryAccuracy, "modelmon:r2:1h"+sel+" < "+f(a.MinR2)+numericLabels, "R² of model "+name+" below "+f(a.MinR2)+": it explains less of its labels' variance.")
			over(numericLabelCount, "numeric label")
		}
		if a.MaxCalibrationError > 0 {
			add("ModelCalibrationErrorHigh", categoryAccuracy, "modelmon:calibration_error:1h"+sel+" > "+f(a.MaxCalibrationError)+
				"\n  and on (model) sum by (model) (modelmon:prediction_confidence_outcomes:increase1h"+sel+") >= "+
				strconv.Itoa(cmp.Or(a.MinCalibrationSamples, config.DefaultMinCalibrationSamples)),
				"Expected calibration error of model "+name+" above "+f(a.MaxCalibrationError)+": its confidence no longer says how often it is right.")
		}
		if a.MaxSegmentAccuracyGap > 0 {
			add("ModelSegmentAccuracyLow", categoryAccuracy, "modelmon:segment_accuracy_gap:1h"+sel+" < -"+f(a.MaxSegmentAccuracyGap)+
				"\n  and on (model, segment, segment_value) modelmon:segment_class_outcomes:increase1h"+sel+" >= "+
				strconv.Itoa(cmp.Or(a.MinSegmentSamples, config.DefaultMinSegmentSamples)),
				"Accuracy of model "+name+" more than "+f(a.MaxSegmentAccuracyGap)+" below its overall accuracy for a segment.")
			rules[len(rules)-1].Annotations["description"] = "{{ $labels.model }} where {{ $labels.segment }} is {{ $labels.segment_value }}: accuracy {{ $value | humanize }} from the model's over the last hour."
		}
		// A class's recall and precision in a segment value against the
		// model's for the same class (modelmon:recall:1h,
		// modelmon:precision:1h, over all its class pairs). The value is the
		// segment value's, and the description queries the model's and the
		// counts beside it. A class never predicted in a segment value has no
		// precision there, so no precision alert; its recall there is 0.
		segmentClass := func(alert, quantity, kind string, gap float64, summary, noun string) {
			least := strconv.Itoa(cmp.Or(a.MinSegmentClassSamples, config.DefaultMinSegmentClassSamples))
			add(alert, categoryAccuracy, "modelmon:segment_"+quantity+":1h"+sel+
				"\n  < on (model, class) group_left () (modelmon:"+quantity+":1h"+sel+" - "+f(gap)+")"+
				"\n  and on (model, segment, segment_value, class) modelmon:segment_class_"+kind+":increase1h"+sel+" >= "+least, summary)
			rules[len(rules)-1].Annotations["description"] = "{{ $labels.model }} where {{ $labels.segment }} is {{ $labels.segment_value }}: " + quantity +
				" of class {{ $labels.class }} {{ $value | humanize }} over " +
				counted(`modelmon:segment_class_`+kind+`:increase1h{model=%q, segment=%q, segment_value=%q, class=%q}`, noun, "$labels.model", "$labels.segment", "$labels.segment_value", "$labels.class") +
				" of it in the last hour, against " +
				queried(`modelmon:`+quantity+`:1h{model=%q, class=%q}`, "$labels.model", "$labels.class") + " for the model."
		}
		if a.MaxSegmentRecallGap > 0 {
			segmentClass("ModelSegmentRecallLow", "recall", "labels", a.MaxSegmentRecallGap,
				"Recall of a class of model "+name+" more than "+f(a.MaxSegmentRecallGap)+" below the model's for a segment.", "label")
		}
		if a.MaxSegmentPrecisionGap > 0 {
			segmentClass("ModelSegmentPrecisionLow", "precision", "predictions", a.MaxSegmentPrecisionGap,
				"Precision of a class of model "+name+" more than "+f(a.MaxSegmentPrecisionGap)+" below the model's for a segment.", "prediction")
		}
		if a.MaxShadowDisagreement > 0 {
			compared := "sum by (model) (increase(modelmon_shadow_predictions_total" + sel + "[1h]))"
			add("ModelShadowDisagreementHigh", categoryAccuracy, "sum by (model) (increase(modelmon_shadow_disagreements_total"+sel+"[1h])) / "+compared+" > "+f(a.MaxShadowDisagreement)+
				"\n  and on (model) "+compared+" >= "+strconv.Itoa(cmp.Or(a.MinShadowSamples, config.DefaultMinShadowSamples)),
				"The shadow of model "+name+" predicts another class for more than "+f(a.MaxShadowDisagreement)+" of its predictions.")
		}
		// Label coverage is a share of the hour's predictions, checked when
		// they are at least MinSamples, as the estimated accuracy is.
		if a.MinLabelCoverage > 0 {
			predictions := `sum by (model) (increase(modelmon_predictions_total` + sel + `[1h]))`
			add("ModelLabelCoverageLow", categoryDataQuality, `sum by (model) (increase(modelmon_labels_matched_total`+sel+`[1h])) / `+predictions+` < `+f(a.MinLabelCoverage)+
				"\n  and on (model) "+predictions+samples,
				"Share of predictions of model "+name+" with a label below "+f(a.MinLabelCoverage)+".")
			over(`sum(increase(modelmon_predictions_total{model=%q}[1h]))`, "prediction")
		}
	}
	if rules == nil {
		rules = []rule{}
	}
	groups := []map[string]any{{"name": "modelmon_quality_alerts", "rules": rules}}
	if slos := SLORules(cfg); len(slos) > 0 {
		groups = append(groups, map[string]any{"name": "modelmon_slos", "rules": slos})
	}
	doc := map[string]any{"groups": groups}
	var b bytes.Buffer
	b.WriteString("# Generated by `exporter alerts` from the models' alerts and slos in the configuration.\n# The quality alerts read the recording rules of deploy/prometheus/quality.rules.yml;\n# the SLOs' rules read the sidecars' metrics.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// templateText returns s as the text of a Prometheus alert template, which
// Prometheus would otherwise expand: a model named "a{{b" made the rule file
// fail `promtool check rules` (function "b" not defined).
func templateText(s string) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	return "{{ " + strconv.Quote(s) + " }}"
}

// queried returns the template text of the value of a query when the
// alert's annotations are expanded, humanized, or nothing when it has none:
// format is PromQL with a %q for each of args, template expressions such
// as $labels.model.
func queried(format string, args ...string) string {
	return withQuery(format, args, "{{ . | first | value | humanize }}")
}

// counted is queried for a count of noun, which follows it, plural but
// for a count of 1: "1 label", "240 labels".
func counted(format, noun string, args ...string) string {
	return withQuery(format, args, "{{ $n := printf \"%.0f\" (. | first | value) }}{{ $n }} "+noun+"{{ if ne $n \"1\" }}s{{ end }}")
}

// withQuery is the template text that runs the query format (with args)
// and, when it has a result, expands show on it.
func withQuery(format string, args []string, show string) string {
	return "{{ with printf " + strconv.Quote(format) + " " + strings.Join(args, " ") + " | query }}" + show + "{{ end }}"
}

// AlertsCommand is `exporter alerts`.
type AlertsCommand struct {
	Config string
	Output string
	// Format is "rules" (a Prometheus rule file) or "prometheusrule" (a
	// PrometheusRule for Prometheus Operator, named Name, in Namespace if
	// set).
	Format    string
	Name      string
	Namespace string
}

// The formats of `exporter alerts`.
const (
	AlertsFormatRules          = "rules"
	AlertsFormatPrometheusRule = "prometheusrule"
)

// Run writes the alerting rules of the configuration's quality thresholds.
func (c *AlertsCommand) Run(env Env) int {
	env = env.withDefaults()
	cfg, err := config.LoadFile(c.Config)
	if err != nil {
		return env.fail("alerts", err)
	}
	out, err := QualityAlerts(cfg)
	if err != nil {
		return env.fail("alerts", err)
	}
	switch c.Format {
	case "", AlertsFormatRules:
	case AlertsFormatPrometheusRule:
		if out, err = kubernetes.PrometheusRuleOf(cmp.Or(c.Name, "modelmon-alerts"), c.Namespace, out); err != nil {
			return env.fail("alerts", err)
		}
	default:
		return env.fail("alerts", fmt.Errorf("unknown format %q (want rules or prometheusrule)", c.Format))
	}
	// Through a temporary file, as the other commands write theirs: a
	// Prometheus that reloads meanwhile never reads half a rule file.
	if err := writeOutput(env, cmp.Or(c.Output, "-"), func(w io.Writer) error {
		_, err := w.Write(out)
		return err
	}); err != nil {
		return env.fail("alerts", err)
	}
	return 0
}
