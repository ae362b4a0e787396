//lint:file-ignore SA1019 Grafana provisions the classic dashboard JSON (schema v1) from files in every version we support; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"

	"github.com/modelmon/modelmon/collector"
)

// drift is the data drift dashboard: each feature's drift against its
// reference in the window picked, as the sidecar scores it.
func drift(opts Options) (dashboard.Dashboard, error) {
	q := query{target: opts.ExporterSelector}
	window := `window="$window"`
	features := `feature=~"$feature"`
	// The prediction is named after its column in the training data
	// (score, churned) or __prediction__ in a learned profile: each
	// sidecar says which feature it is, by the role label of its
	// reference info, and the queries join on that instead of a name.
	prediction := q.sel(collector.FeatureReferenceInfo, `role="`+collector.RolePrediction+`"`)
	isPrediction := func(expr string) string {
		return expr + " and on (job, instance, model, feature) " + prediction
	}
	notPrediction := func(expr string) string {
		return expr + " unless on (job, instance, model, feature) " + prediction
	}
	// avgFeature averages the series of a per-replica statistic over the
	// replicas of a model: each sidecar scores its own traffic.
	avgFeature := func(series string) string {
		return fmt.Sprintf("avg by (model, feature) (%s)", q.inVersion(series))
	}
	perFeature := func(metric string, matchers ...string) string {
		return avgFeature(q.sel(metric, matchers...))
	}
	// importance is each feature's configured importance, the same on
	// every replica.
	importance := fmt.Sprintf("max by (model, feature) (%s)", q.sel(collector.FeatureImportance, features))
	// The model-level decision, taken by each replica on its own traffic:
	// the share of the replicas whose model drifted, as ModelDrift
	// (rules/drift.rules.yml) aggregates it; the strictest threshold and
	// the most features over the replicas. Over all the model's replicas,
	// whatever their correction: a rollout that changes drift.correction
	// runs both side by side, and grouping by it would show each group's
	// share apart and start new series when it ends. The corrections
	// themselves are counted beside the reference.
	modelDrifted := fmt.Sprintf("avg by (model, window) (%s)", q.inVersion(q.sel(collector.ModelDrifted, window)))
	modelThreshold := fmt.Sprintf("min by (model, window) (%s)", q.inVersion(q.sel(collector.ModelDriftThreshold, window)))
	corrections := fmt.Sprintf("count by (model, correction) (%s)", q.inVersion(q.sel(collector.ModelDriftThreshold, window)))
	modelFeatures := fmt.Sprintf("max by (model, window) (%s)", q.inVersion(q.sel(collector.ModelDriftFeatures, window)))
	b := newDashboard(opts, "modelmon-data-drift", "modelmon / Data drift",
		"Drift of each feature and of the prediction against the reference profile, per window, as the modelmon sidecar scores it.")
	b = exporterVariables(b).
		WithVariable(singleVariable("window", "Window", fmt.Sprintf("label_values(%s, window)", q.sel(collector.DatasetDriftShare)))).
		WithVariable(queryVariable("feature", "Feature", fmt.Sprintf("label_values(%s, feature)", q.sel(collector.FeatureDriftWindowValues)))).
		Annotation(versionChanges(q)).
		WithRow(dashboard.NewRowBuilder("Dataset")).
		WithPanel(defaultStat("Dataset drift share", "Share of the features (the prediction left out) that drifted in the window; the dataset drifts at half.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("green", 0.3, "orange", 0.5, "red")).
			WithTarget(instantQuery(fmt.Sprintf("avg by (model) (%s)", q.inVersion(q.sel(collector.DatasetDriftShare, window))), "{{model}}"))).
		WithPanel(defaultStat("Model drifted", "Share of the model's replicas, whatever their correction, that find it drifted in the window: any of its features' p-values below the threshold corrected for testing them all (drift.correction: bonferroni by default, fdr or none). ModelDrift fires at half of them over the 1h window for 30 minutes.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("green", 0.5, "red")).
			WithTarget(instantQuery(modelDrifted, "{{model}}"))).
		WithPanel(defaultStat("Drifted features", "Features whose drift decision is positive in the window, on any replica.", "short").
			Thresholds(thresholds("green", 1.0, "orange")).
			WithTarget(instantQuery(fmt.Sprintf("count by (model) (max by (model, feature) (%s) == 1)",
				q.inVersion(notPrediction(q.sel(collector.FeatureDrifted, window)))), "{{model}}"))).
		WithPanel(defaultStat("Prediction drift (PSI)", "Population stability index of the model's output in the window: below 0.1 no significant change, above 0.2 a significant shift.", "none").
			Thresholds(thresholds("green", 0.1, "orange", 0.2, "red")).
			WithTarget(instantQuery(avgFeature(isPrediction(q.sel(collector.FeatureDriftPSI, window))), "{{model}}"))).
		// The second line of stats is three wide.
		WithPanel(defaultStat("Reference", "Where each model's reference profile came from (file, learned), and the correction its decision takes (drift.correction), each with its number of replicas: two corrections of one model mean a rollout that changes it.", "none").
			Span(8).
			WithTarget(instantQuery(fmt.Sprintf("count by (model, source) (%s)", q.sel(collector.DriftReferenceInfo)), "{{model}}: {{source}}").RefId("A")).
			WithTarget(instantQuery(corrections, "{{model}}: {{correction}}").RefId("B"))).
		WithPanel(defaultStat("Model drift threshold", "The p-value below which any one feature makes the model drift in the window, corrected for testing K features: α/K (bonferroni), the Benjamini–Hochberg cut-off (fdr) or α (none); the lowest over the replicas, whatever their correction.", "none").
			Span(8).
			Decimals(4).
			WithTarget(instantQuery(modelThreshold, "{{model}}"))).
		WithPanel(defaultStat("Features tested", "K, the features whose p-values the model's decision corrects over in the window: those scored, the prediction and the reconstruction error left out; the most over the replicas.", "short").
			Span(8).
			WithTarget(instantQuery(modelFeatures, "{{model}}"))).
		WithPanel(defaultTimeseries("Dataset drift share", "Share of drifted features over time; at 0.5 the dataset drifts.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("transparent", 0.5, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine)).
			WithTarget(prometheusQuery(fmt.Sprintf("avg by (model) (%s)", q.inVersion(q.sel(collector.DatasetDriftShare, window))), "{{model}}"))).
		WithPanel(defaultTimeseries("Model drifted", "Share of the replicas that find the model drifted over time, its features' p-values corrected for testing them all; ModelDrift fires when it stays at 0.5 or above over the 1h window for 30 minutes.", "percentunit").
			Min(0).Max(1).
			Thresholds(thresholds("transparent", 0.5, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine)).
			WithTarget(prometheusQuery(modelDrifted, "{{model}}"))).
		WithPanel(defaultTimeseries("Dataset drifted", "The dataset drift decision (1: drifted).", "none").
			Min(0).Max(1).
			WithTarget(prometheusQuery(fmt.Sprintf("max by (model) (%s)", q.inVersion(q.sel(collector.DatasetDrifted, window))), "{{model}}"))).
		WithPanel(defaultTimeseries("Model drift threshold", "The corrected p-value threshold of the model's decision (the lowest over the replicas): α/K falls as more features are tested (bonferroni); the Benjamini–Hochberg cut-off rises as more features' p-values are small (fdr).", "none").
			Min(0).
			WithTarget(prometheusQuery(modelThreshold, "{{model}}"))).
		WithRow(dashboard.NewRowBuilder("Features")).
		WithPanel(defaultHeatmap("Feature drift (PSI) over time", "Each feature's population stability index in the window, one row per feature: below 0.1 no significant change, 0.1–0.2 a moderate shift, above 0.2 a significant one.").
			Calculate(false).
			Color(heatmap.NewHeatmapColorOptionsBuilder().
				Mode(heatmap.HeatmapColorModeScheme).
				Scheme("Oranges").
				Scale(heatmap.HeatmapColorScaleExponential).
				Exponent(0.5).
				Steps(64).
				Min(0)).
			YAxis(heatmap.NewYAxisConfigBuilder().AxisPlacement(common.AxisPlacementLeft)).
			WithTarget(prometheusQuery(perFeature(collector.FeatureDriftPSI, window, features), "{{model}} / {{feature}}"))).
		WithPanel(defaultBarGauge("Top drifting features", "The ten features with the highest PSI in the window.", "none").
			Min(0).
			Thresholds(thresholds("green", 0.1, "orange", 0.2, "red")).
			WithTarget(instantQuery(fmt.Sprintf("topk(10, %s)", avgFeature(notPrediction(q.sel(collector.FeatureDriftPSI, window, features)))), "{{model}} / {{feature}}"))).
		WithPanel(defaultBarGauge("Drift impact", "The ten features with the highest PSI weighted by their share of the model's importance (models[].feature_importance): the drift that matters most to the model's output. Empty without importances.", "none").
			Min(0).
			WithTarget(instantQuery(fmt.Sprintf("topk(10,\n  %s\n    * on (model, feature) group_left ()\n  (%s / on (model) group_left () sum by (model) (%s))\n)",
				avgFeature(notPrediction(q.sel(collector.FeatureDriftPSI, window, features))), importance, importance), "{{model}} / {{feature}}"))).
		WithPanel(mergeTable(defaultTable("Feature drift", "Each feature's statistics in the window (mean over replicas) and its drift decision by the deciding method, whose threshold is calibrated to the false-alarm rate."),
			map[string]string{"Value #A": "PSI", "Value #B": "Jensen–Shannon", "Value #C": "Hellinger", "Value #D": "drifted", "Value #E": "values"}).
			WithTarget(tableQuery(perFeature(collector.FeatureDriftPSI, window, features), "A")).
			WithTarget(tableQuery(perFeature(collector.FeatureDriftJS, window, features), "B")).
			WithTarget(tableQuery(perFeature(collector.FeatureDriftHellinger, window, features), "C")).
			WithTarget(tableQuery(fmt.Sprintf("max by (model, feature, method) (%s)", q.inVersion(q.sel(collector.FeatureDrifted, window, features))), "D")).
			WithTarget(tableQuery(fmt.Sprintf("sum by (model, feature) (%s)", q.inVersion(q.sel(collector.FeatureDriftWindowValues, window, features))), "E"))).
		WithPanel(defaultTimeseries("Feature drift (PSI)", "Each feature's PSI in the window; the default alerts fire above 0.1 and 0.2 for 30 minutes.", "none").
			Thresholds(thresholds("transparent", 0.1, "orange", 0.2, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine)).
			WithTarget(prometheusQuery(perFeature(collector.FeatureDriftPSI, window, features), "{{model}} / {{feature}}"))).
		WithPanel(defaultTimeseries("Kolmogorov–Smirnov statistic", "Numeric features' KS statistic in the window.", "none").
			WithTarget(prometheusQuery(perFeature(collector.FeatureDriftKS, window, features), "{{model}} / {{feature}}"))).
		WithPanel(defaultTimeseries("Values in the window", "Values each window holds; a window needs --drift.min-samples before it is scored.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, feature) (%s)", q.inVersion(q.sel(collector.FeatureDriftWindowValues, window, features))), "{{model}} / {{feature}}"))).
		WithPanel(defaultTimeseries("Smallest detectable shift (PSI)", "The smallest shift of each feature, as PSI, its window could detect (four times in five at the drift alpha): above 0.1 or 0.2 the window holds too few values to tell, and a quiet PSI is not 'no drift'.", "none").
			Thresholds(thresholds("transparent", 0.1, "orange", 0.2, "red")).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine)).
			WithTarget(prometheusQuery(perFeature(collector.FeatureDriftDetectable, window, features), "{{model}} / {{feature}}"))).
		WithRow(dashboard.NewRowBuilder("Data quality")).
		WithPanel(defaultTimeseries("Invalid values", "Feature values per second that are missing, NaN, infinite, out of the reference's range or an unseen category.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, feature, reason) (%s) > 0", q.rate(collector.FeatureValuesInvalid, features)), "{{model}} / {{feature}} {{reason}}"))).
		WithPanel(defaultTimeseries("Missing rate change", "Change of each feature's missing-value rate in the window against the reference.", "percentunit").
			WithTarget(prometheusQuery(perFeature(collector.FeatureDriftMissingDelta, window, features), "{{model}} / {{feature}}")))
	return b.Build()
}
