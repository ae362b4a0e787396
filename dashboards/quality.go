//lint:file-ignore SA1019 Grafana provisions the classic dashboard JSON (schema v1) from files in every version we support; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/modelmon/modelmon/collector"
)

// Recording rules the quality dashboard reads: deploy/prometheus/quality.rules.yml
// (modelmon:<quantity>:1h over the last hour, :total since each sidecar
// started) and rules/labels.rules.yml.
const (
	labelCoverage1h = "model:modelmon_labels_matched_per_prediction:ratio_rate1h"
	labelCoverage1d = "model:modelmon_labels_matched_per_prediction:ratio_rate1d"
)

// rule names a recording rule of deploy/prometheus/quality.rules.yml.
func rule(quantity, window string) string {
	return "modelmon:" + quantity + ":" + window
}

// defaultMinSamples is the default of the quality dashboard's min_samples
// variable: config.DefaultMinSamples, the default of the models'
// alerts.min_samples, which ModelEstimatedAccuracyLow counts a confidence
// bin with.
const defaultMinSamples = "100"

// minSamplesVariable is the least labels a confidence bin must have had in
// the last day to count in the estimated accuracy, as min_samples is for
// ModelEstimatedAccuracyLow: a text box, so that a model with its own
// min_samples is looked at with it.
func minSamplesVariable() *dashboard.TextBoxVariableBuilder {
	return dashboard.NewTextBoxVariableBuilder("min_samples").
		Label("Min labels per bin").
		Description("The least labels a confidence bin must have had in the last day to count in the accuracy estimated without labels: the model's alerts.min_samples, which ModelEstimatedAccuracyLow counts a bin with (100 by default). 1 counts every bin a label reached, as modelmon:estimated_accuracy:1h does.").
		DefaultValue(dashboard.StringOrMap{String: cog.ToPtr(defaultMinSamples)}).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr(defaultMinSamples)},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(defaultMinSamples)},
		})
}

// estimatedAccuracy returns the last hour's accuracy estimated from the
// predictions' confidence, and the share of the hour's predictions it
// rests on, as ModelEstimatedAccuracyLow (`exporter alerts`) takes them:
// over the confidence bins with at least $min_samples labels in the last
// day. modelmon:estimated_accuracy:1h counts a bin of 1 or 2 labels too,
// whose accuracy, 0, 0.5 or 1, it gives every prediction in the bin: the
// panel would disagree with the alert.
func estimatedAccuracy(q query) (estimate, coverage string) {
	sel := func(name string) string { return name + `{model=~"$model"}` }
	hour := sel(rule("prediction_confidence_predictions", "increase1h"))
	counted := sel(rule("prediction_confidence_outcomes", "increase1d")) + " >= $min_samples"
	covered := fmt.Sprintf("sum by (model) (\n  %s\n    and on (model, bins, bin)\n  %s\n)", hour, counted)
	estimate = fmt.Sprintf("sum by (model) (\n  %s\n    * on (model, bins, bin)\n  (%s and on (model, bins, bin) %s)\n)\n  /\n%s",
		hour, sel(rule("calibration_accuracy", "1d")), counted, covered)
	// A model whose bins are all thin has its coverage 0, not none.
	coverage = fmt.Sprintf("sum by (model) (\n  %s\n    and on (model, bins, bin)\n  %s\n  or\n  0 * %s\n)\n  /\nsum by (model) (%s)", hour, counted, hour, hour)
	return q.modelFilter(estimate), q.modelFilter(coverage)
}

// quality is the model quality dashboard: predictions joined to their
// ground-truth labels.
func quality(opts Options) (dashboard.Dashboard, error) {
	q := query{target: opts.ExporterSelector}
	model := `model=~"$model"`
	// recorded selects a recording rule (labelled by model, summed over the
	// replicas) of the picked models that serve the picked version, and
	// matchers.
	recorded := func(name string, matchers ...string) string {
		return q.modelFilter(name + "{" + strings.Join(append([]string{model}, matchers...), ", ") + "}")
	}
	// overRange computes a ratio of two counters over the dashboard's time
	// range, from the raw series.
	overRange := func(num, den string) string {
		return fmt.Sprintf("sum by (model) (%s)\n  /\nsum by (model) (%s)",
			q.inVersion(fmt.Sprintf("increase(%s[$__range])", q.sel(num))), q.inVersion(fmt.Sprintf("increase(%s[$__range])", q.sel(den))))
	}
	// perNumericPair divides an error sum over the dashboard's time range
	// by the numeric pairs it is over, as modelmon:mae:1h does: a model that
	// predicts classes too has fewer than labels joined.
	perNumericPair := func(sum string) string {
		return fmt.Sprintf("sum by (model) (%s)\n  /\nsum by (model) (%s)",
			q.inVersion(fmt.Sprintf("increase(%s[$__range])", q.sel(sum))),
			q.numericPairs("increase", "$__range", collector.RegressionOutcomesTotal, collector.LabelsMatchedTotal))
	}
	// segmentValue are the labels of a quantity by segment value.
	const segmentValue = "model, segment, segment_value"
	windows := func(quantity, legend string) []*dashboardQuery {
		return []*dashboardQuery{
			{recorded(rule(quantity, "1h")), legend + " (1h)"},
			{recorded(rule(quantity, "total")), legend + " (since start)"},
		}
	}
	b := newDashboard(opts, "modelmon-model-quality", "modelmon / Model quality",
		"Accuracy, precision, recall, F1 and regression errors of the predictions joined to their ground-truth labels, from the recording rules of deploy/prometheus/quality.rules.yml and rules/labels.rules.yml.")
	estimate, coverage := estimatedAccuracy(q)
	b = exporterVariables(b).
		WithVariable(minSamplesVariable()).
		Annotation(versionChanges(q)).
		WithRow(dashboard.NewRowBuilder("Classification")).
		WithPanel(defaultStat("Accuracy (1h)", "Share of the predictions joined to a label over the last hour that were right (modelmon:accuracy:1h).", "percentunit").
			Min(0).Max(1).
			WithTarget(instantQuery(recorded(rule("accuracy", "1h")), "{{model}}"))).
		WithPanel(defaultStat("Accuracy (time range)", "Accuracy over the dashboard's time range, from the raw counters.", "percentunit").
			Min(0).Max(1).
			WithTarget(instantQuery(overRange(collector.PredictionCorrectTotal, collector.PredictionOutcomeTotal), "{{model}}"))).
		WithPanel(defaultStat("Macro F1 (1h)", "Mean over classes of the F1 score over the last hour.", "percentunit").
			Min(0).Max(1).
			WithTarget(instantQuery("avg by (model) ("+recorded(rule("f1", "1h"))+")", "{{model}}"))).
		WithPanel(defaultStat("Label coverage (1h)", "Labels joined per prediction over the last hour.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("red", 0.1, "orange", 0.5, "green")).
			WithTarget(instantQuery(recorded(labelCoverage1h), "{{model}}"))).
		WithPanel(withQueries(defaultTimeseries("Accuracy", "Accuracy over the last hour and since each sidecar started.", "percentunit").Min(0).Max(1),
			windows("accuracy", "{{model}}"))).
		WithPanel(withQueries(defaultTimeseries("Accuracy estimated without labels", "The last hour's accuracy estimated from the predictions' confidence and the calibration the last day's labels have shown (CBPE, deploy/prometheus/quality.rules.yml), over the confidence bins with at least min_samples labels in the day (the variable), as ModelEstimatedAccuracyLow takes it; beside it the accuracy of the labels joined in the hour, and the share of the hour's predictions in those bins, which the alert wants at 90 % or more (and min_samples predictions). Labels that come late leave the hour's own accuracy unknown; the estimate moves first when inputs get harder.", "percentunit").Min(0).Max(1),
			[]*dashboardQuery{
				{estimate, "{{model}} estimated (1h)"},
				{recorded(rule("accuracy", "1h")), "{{model}} labelled (1h)"},
				{coverage, "{{model}} coverage (1h)"},
			})).
		WithPanel(withQueries(defaultTimeseries("F1 (macro)", "Mean over classes of the F1 score, over the last hour and since start.", "percentunit").Min(0).Max(1),
			[]*dashboardQuery{
				{"avg by (model) (" + recorded(rule("f1", "1h")) + ")", "{{model}} (1h)"},
				{"avg by (model) (" + recorded(rule("f1", "total")) + ")", "{{model}} (since start)"},
			})).
		WithPanel(defaultTimeseries("Precision by class (1h)", "Of the predictions of a class over the last hour, the share that were right.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(recorded(rule("precision", "1h")), "{{model}} {{class}}"))).
		WithPanel(defaultTimeseries("Recall by class (1h)", "Of the labels of a class over the last hour, the share predicted right.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(recorded(rule("recall", "1h")), "{{model}} {{class}}"))).
		WithPanel(defaultTimeseries("F1 by class (1h)", "Harmonic mean of precision and recall per class, over the last hour.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(recorded(rule("f1", "1h")), "{{model}} {{class}}"))).
		WithPanel(mergeTable(defaultTable("Confusion matrix (1h)", "Predictions joined to their label over the last hour, by predicted and actual class."),
			map[string]string{"Value #A": "predictions"}).
			WithTarget(tableQuery(fmt.Sprintf("sum by (model, predicted, actual) (%s)", recorded(rule("prediction_outcome", "increase1h"))), "A"))).
		WithPanel(withQueries(defaultTimeseries("Brier score", "Mean Brier score of the predictions with class probabilities (lower is better).", "none"),
			windows("brier_score", "{{model}}"))).
		WithPanel(withQueries(defaultTimeseries("Log loss", "Mean log loss of the predictions with class probabilities (lower is better).", "none"),
			windows("log_loss", "{{model}}"))).
		WithPanel(withQueries(defaultTimeseries("Expected calibration error", "Of the predictions that gave their predicted class a probability (their confidence): the gap between confidence and accuracy in equal bins of confidence (ten, or the model's calibration_bins), weighted by the bins' sizes (0 is perfectly calibrated; lower is better).", "percentunit").Min(0),
			windows("calibration_error", "{{model}}"))).
		WithPanel(mergeTable(defaultTable("Reliability diagram (1h)", "Per bin of confidence over the last hour (of bins equal bins, ten unless the model's calibration_bins says otherwise, bin k holds (k/bins, (k+1)/bins]): the predictions, their mean confidence and the share that were right. A calibrated model is right as often as it is confident."),
			map[string]string{"Value #A": "predictions", "Value #B": "mean confidence", "Value #C": "accuracy"}).
			WithTarget(tableQuery(recorded(rule("prediction_confidence_outcomes", "increase1h")), "A")).
			WithTarget(tableQuery(recorded(rule("calibration_confidence", "1h")), "B")).
			WithTarget(tableQuery(recorded(rule("calibration_accuracy", "1h")), "C"))).
		WithRow(dashboard.NewRowBuilder("Regression")).
		WithPanel(withQueries(defaultTimeseries("Mean absolute error", "MAE of the predictions joined to a numeric label.", "none"),
			append(windows("mae", "{{model}}"), &dashboardQuery{perNumericPair(collector.AbsoluteErrorTotal), "{{model}} (time range)"}))).
		WithPanel(withQueries(defaultTimeseries("Root mean squared error", "RMSE of the predictions joined to a numeric label.", "none"),
			append(windows("rmse", "{{model}}"), &dashboardQuery{"sqrt(" + perNumericPair(collector.SquaredErrorTotal) + ")", "{{model}} (time range)"}))).
		WithPanel(defaultTimeseries("Absolute error quantiles", "Quantiles (p50, p90, p99) of the absolute error of the predictions joined to a numeric label, in the model's units, from the native histogram modelmon_prediction_error_magnitude (else the classic buckets of models[].error_buckets): the tail the mean hides, and what a regression SLO's threshold is set against.", "none").
			Min(0).
			WithTarget(prometheusQuery(q.nativeQuantile("0.5", collector.PredictionErrorMagnitude, "model"), "{{model}} p50")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.PredictionErrorMagnitude, "model"), "{{model}} p90")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.PredictionErrorMagnitude, "model"), "{{model}} p99"))).
		WithPanel(withQueries(defaultTimeseries("R²", "Coefficient of determination of the predictions joined to a numeric label: the share of the labels' variance the model explains (1 is perfect; 0 is no better than always predicting their mean; below 0, worse).", "none").Max(1),
			windows("r2", "{{model}}"))).
		WithRow(dashboard.NewRowBuilder("Segments")).
		WithPanel(mergeTable(defaultTable("Quality by segment (1h)", "Per value of each feature in models[].segments, over the last hour: the class labels joined and their accuracy (classifiers) and its gap to the model's (negative: worse than overall), and the numeric labels joined and their MAE and RMSE (regressors). A model that predicts both has each over its own labels.").
			Span(24),
			map[string]string{"Value #A": "class labels", "Value #B": "accuracy", "Value #C": "accuracy gap", "Value #D": "numeric labels", "Value #E": "MAE", "Value #F": "RMSE"}).
			WithTarget(tableQuery(recorded(rule("segment_class_outcomes", "increase1h")), "A")).
			WithTarget(tableQuery(recorded(rule("segment_accuracy", "1h")), "B")).
			WithTarget(tableQuery(recorded(rule("segment_accuracy_gap", "1h")), "C")).
			WithTarget(tableQuery(recorded(rule("segment_regression_outcomes", "increase1h")), "D")).
			WithTarget(tableQuery(recorded(rule("segment_mae", "1h")), "E")).
			WithTarget(tableQuery(recorded(rule("segment_rmse", "1h")), "F"))).
		WithPanel(mergeTable(defaultTable("Absolute error quantiles by segment (1h)", "Per value of each feature in models[].segments, over the last hour: the median, p90 and p99 of the absolute error of the predictions joined to a numeric label, in the model's units, from the native histogram modelmon_segment_prediction_error_magnitude (else the classic buckets of models[].error_buckets), largest p90 first: the values whose tail is long while their MAE looks like the others'.").
			Span(24).
			SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("p90").Desc(true)}),
			map[string]string{"Value #A": "p50", "Value #B": "p90", "Value #C": "p99"}).
			WithTarget(tableQuery(q.nativeQuantileOver("0.5", collector.SegmentErrorMagnitude, segmentValue, "1h"), "A")).
			WithTarget(tableQuery(q.nativeQuantileOver("0.9", collector.SegmentErrorMagnitude, segmentValue, "1h"), "B")).
			WithTarget(tableQuery(q.nativeQuantileOver("0.99", collector.SegmentErrorMagnitude, segmentValue, "1h"), "C"))).
		WithPanel(mergeTable(defaultTable("Classes by segment (1h)", "With models[].segment_classes, per class and value of each feature in models[].segments, over the last hour: the predictions of the class and its labels, and the precision, recall and F1 they give, worst F1 first (the rows of ModelSegmentRecallLow and ModelSegmentPrecisionLow). A class never predicted in a value has no precision there, one never its label no recall; __other__, the classes past segment_classes, is left out.").
			Span(24).
			SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("F1").Desc(false)}).
			OverrideByRegexp("^(precision|recall|F1)$", []dashboard.DynamicConfigValue{{Id: "unit", Value: "percentunit"}, {Id: "min", Value: 0}, {Id: "max", Value: 1}}),
			map[string]string{"Value #A": "predictions", "Value #B": "labels", "Value #C": "precision", "Value #D": "recall", "Value #E": "F1"}).
			WithTarget(tableQuery(recorded(rule("segment_class_predictions", "increase1h"), `class!="__other__"`), "A")).
			WithTarget(tableQuery(recorded(rule("segment_class_labels", "increase1h"), `class!="__other__"`), "B")).
			WithTarget(tableQuery(recorded(rule("segment_precision", "1h")), "C")).
			WithTarget(tableQuery(recorded(rule("segment_recall", "1h")), "D")).
			WithTarget(tableQuery(recorded(rule("segment_f1", "1h")), "E"))).
		WithRow(dashboard.NewRowBuilder("Labels")).
		WithPanel(defaultTimeseries("Label coverage", "Labels joined per prediction over the last hour and the last day; the default alert fires when the hour falls below half the day.", "percentunit").
			Min(0).
			WithTarget(prometheusQuery(recorded(labelCoverage1h), "{{model}} (1h)")).
			WithTarget(prometheusQuery(recorded(labelCoverage1d), "{{model}} (1d)")).
			WithTarget(prometheusQuery(recorded(rule("label_coverage", "total")), "{{model}} (since start)"))).
		WithPanel(defaultTimeseries("Label delay", "Time from a prediction to its label (p50, p90), from the native histogram.", "s").
			WithTarget(prometheusQuery(q.nativeQuantile("0.5", collector.LabelDelay, "model"), "{{model}} p50")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.LabelDelay, "model"), "{{model}} p90"))).
		WithPanel(stackedTimeseries("Labels by outcome", "Labels per second by what became of them: matched, duplicate, unknown_id, expired, evicted, invalid.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.LabelsTotal)), "{{reason}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.LabelsRejectedTotal)), "malformed: {{reason}}"))).
		WithPanel(defaultTimeseries("Predictions waiting for a label", "Predictions the sidecars keep for their label, and labels held for their prediction (those past their time that wait because a peer could not be asked apart).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (%s)", q.plain(collector.PendingPredictions)), "{{job}} pending predictions")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (%s)", q.plain(collector.HeldLabels)), "{{job}} held labels")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (%s) > 0", q.plain(collector.ShadowPendingPredictions)), "{{job}} shadow's pending predictions")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (%s) > 0", q.plain(collector.HeldLabelsPeerUnreachable)), "{{job}} held labels waiting for an unreachable peer")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job, reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.PendingRemovedTotal)), "{{job}} removed ({{reason}})/s"))).
		WithPanel(defaultTimeseries("Labels asked of other replicas", "Labels per second that the replica they were posted to did not know, and asked its peers about (labels.peers): found in a peer, or kept (not_found); and failed requests to peers, and the labels that ended unknown_id while a peer still could not be asked.", "short").
			Min(0).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job, result) (rate(%s[$__rate_interval]))", q.plain(collector.LabelsForwardedTotal)), "{{job}} {{result}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (rate(%s[$__rate_interval])) > 0", q.plain(collector.LabelPeerRequestsTotal, `result="error"`)), "{{job}} peer errors/s")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (rate(%s[$__rate_interval])) > 0", q.plain(collector.LabelsPeerUnreachableTotal)), "{{job}} unknown_id with a peer unreachable/s"))).
		WithRow(dashboard.NewRowBuilder("Feedback")).
		WithPanel(defaultTimeseries("Mean reward", "Mean reward of Seldon Core 1's feedback requests (0 for one without a reward), from the native histogram modelmon_feedback_reward.", "none").
			WithTarget(prometheusQuery(q.nativeMean(collector.FeedbackReward, "model"), "{{model}}"))).
		WithPanel(defaultTimeseries("Feedback requests", "Seldon Core 1's feedback requests read per second.", "reqps").
			Min(0).
			WithTarget(prometheusQuery(q.nativeCount(collector.FeedbackReward, "model"), "{{model}}")))
	return b.Build()
}

// dashboardQuery is a range query and its legend.
type dashboardQuery struct {
	expr, legend string
}

// withQueries adds range queries to a time series panel.
func withQueries(p *timeseries.PanelBuilder, qs []*dashboardQuery) *timeseries.PanelBuilder {
	for _, dq := range qs {
		p = p.WithTarget(prometheusQuery(dq.expr, dq.legend))
	}
	return p
}
