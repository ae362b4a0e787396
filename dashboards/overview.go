//lint:file-ignore SA1019 Grafana provisions the classic dashboard JSON (schema v1) from files in every version we support; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/modelmon/modelmon/collector"
)

// overview is the model overview: what the sidecar measures of the traffic
// it proxies.
func overview(opts Options) (dashboard.Dashboard, error) {
	q := query{target: opts.ExporterSelector}
	b := newDashboard(opts, "modelmon-model-overview", "modelmon / Model overview",
		"Traffic, latency, errors and payload capture of the models behind the modelmon sidecar.")
	b = exporterVariables(b).
		Annotation(versionChanges(q)).
		WithRow(dashboard.NewRowBuilder("Traffic")).
		WithPanel(defaultStat("Requests", "Prediction requests per second, all picked models.", "reqps").
			WithTarget(instantQuery(fmt.Sprintf("sum (%s)", q.rate(collector.RequestsTotal)), "requests/s"))).
		WithPanel(defaultStat("Failed requests", "Server-side failures (5xx, invalid responses, timeouts, connection errors) per request; the client's 4xx are apart.", "percentunit").
			Thresholds(thresholds("green", 0.05, "orange", 0.25, "red")).
			WithTarget(instantQuery(fmt.Sprintf("sum (%s)\n  /\nsum (%s)",
				q.rate(collector.PredictionErrorsTotal, `reason!="upstream_4xx"`), q.rate(collector.RequestsTotal)), "failed"))).
		WithPanel(defaultStat("p99 latency", "99th percentile of the prediction latency, from the native histogram.", "s").
			Thresholds(thresholds("green", 1.0, "red")).
			WithTarget(instantQuery(fmt.Sprintf("histogram_quantile(0.99, sum (%s))", q.rate(collector.PredictionDuration)), "p99"))).
		WithPanel(defaultStat("Captures dropped", "Payload captures not analysed per second (queue full, body too large): the requests were served, drift and quality miss them.", "short").
			Thresholds(thresholds("green", 0.001, "orange")).
			WithTarget(instantQuery(fmt.Sprintf("sum (%s)", q.rate(collector.CaptureDroppedTotal)), "dropped/s"))).
		WithPanel(defaultTimeseries("Requests by model and version", "Prediction requests per second.", "reqps").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, version) (%s)",
				q.byVersion(fmt.Sprintf("rate(%s[$__rate_interval])", q.sel(collector.RequestsTotal)))), "{{model}} {{version}}"))).
		WithPanel(stackedTimeseries("Requests by status", "Prediction requests per second that succeeded, and the failed ones by reason (timeout, connection, invalid_response, upstream_5xx, upstream_4xx).", "reqps").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s)\n  -\nsum by (model) (%s)",
				q.rate(collector.RequestsTotal), q.rate(collector.PredictionErrorsTotal)), "{{model}} ok")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, reason) (%s) > 0", q.rate(collector.PredictionErrorsTotal)), "{{model}} {{reason}}"))).
		WithPanel(defaultTimeseries("Errors by reason", "Failed prediction requests per request, by reason.", "percentunit").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, reason) (%s)\n  / ignoring (reason) group_left\nsum by (model) (%s)",
				q.rate(collector.PredictionErrorsTotal), q.rate(collector.RequestsTotal)), "{{model}} {{reason}}"))).
		WithPanel(defaultTimeseries("Predictions", "Predictions (instances) per second in parsed payloads and pushed observations; a batch request makes several.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s)", q.rate(collector.PredictionsTotal)), "{{model}}"))).
		WithPanel(stackedTimeseries("Other requests", "Requests that are not predictions (health checks, metadata) per second, passed through: those that succeeded, and the failed ones by reason. A model server that is down shows here even when no prediction comes in.", "reqps").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (rate(%s[$__rate_interval]))\n  -\nsum by (job) (rate(%s[$__rate_interval]))",
				q.plain(collector.PassthroughRequestsTotal), q.plain(collector.PassthroughErrorsTotal)), "{{job}} ok")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job, reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.PassthroughErrorsTotal)), "{{job}} {{reason}}"))).
		WithRow(dashboard.NewRowBuilder("Latency")).
		WithPanel(defaultTimeseries("Prediction latency", "Quantiles of the time from receiving a prediction request to having the model server's answer, from the native histogram (the classic buckets where the data source has no native histograms).", "s").
			WithTarget(prometheusQuery(q.nativeQuantile("0.5", collector.PredictionDuration, "model"), "{{model}} p50")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.PredictionDuration, "model"), "{{model}} p90")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.PredictionDuration, "model"), "{{model}} p99"))).
		WithPanel(defaultTimeseries("Time to first byte (streams)", "Quantiles of the time from receiving a prediction request to the first byte of its body, for answers streamed as they arrive (token streams, server-sent events): an LLM's time to first token. Empty for models that answer whole.", "s").
			WithTarget(prometheusQuery(q.nativeQuantile("0.5", collector.PredictionFirstByte, "model"), "{{model}} p50")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.PredictionFirstByte, "model"), "{{model}} p90")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.PredictionFirstByte, "model"), "{{model}} p99"))).
		WithPanel(defaultTimeseries("Latency distribution", "Share of prediction requests answered within 100ms and 1s, from the native histogram.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_fraction(0, 0.1, sum by (model) (%s))", q.rate(collector.PredictionDuration)), "{{model}} ≤ 100ms")).
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_fraction(0, 1, sum by (model) (%s))", q.rate(collector.PredictionDuration)), "{{model}} ≤ 1s"))).
		WithPanel(defaultTimeseries("Sidecar overhead", "Time the sidecar adds to a request, the model server's round trip excluded (p50, p99 over all models).", "s").
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_quantile(0.5, sum by (job) (rate(%s[$__rate_interval])))", q.plain(collector.ProxyOverhead)), "{{job}} p50")).
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_quantile(0.99, sum by (job) (rate(%s[$__rate_interval])))", q.plain(collector.ProxyOverhead)), "{{job}} p99"))).
		WithPanel(defaultTimeseries("Requests in flight", "Prediction requests waiting for the model server.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s)", q.inVersion(q.sel(collector.RequestsInFlight))), "{{model}}"))).
		WithRow(dashboard.NewRowBuilder("Payloads and capture")).
		WithPanel(defaultTimeseries("Captures dropped", "Captures not parsed per second, by reason: queue_full (the parsers fall behind), body_too_large (over --capture.max-body-size).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, reason) (%s)", q.rate(collector.CaptureDroppedTotal)), "{{model}} {{reason}}"))).
		WithPanel(defaultTimeseries("Capture queue", "Payloads waiting to be parsed, against the queue's capacity.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job, instance) (%s)", q.plain(collector.CaptureQueueLength)), "{{instance}} length")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job, instance) (%s)", q.plain(collector.CaptureQueueCapacity)), "{{instance}} capacity"))).
		WithPanel(defaultTimeseries("Payloads parsed", "Payloads parsed into records per second, by format.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, format) (%s)", q.rate(collector.PayloadsParsedTotal)), "{{model}} {{format}}"))).
		WithPanel(defaultTimeseries("Payload errors", "Payloads not (fully) parsed per second, by reason.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, reason) (%s) > 0", q.rate(collector.PayloadErrorsTotal)), "{{model}} {{reason}}"))).
		WithPanel(defaultTimeseries("Payload sizes", "90th percentile of request and response bodies, from the native histograms.", "bytes").
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_quantile(0.9, sum by (model) (%s))", q.rate(collector.RequestSizeBytes)), "{{model}} request")).
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_quantile(0.9, sum by (model) (%s))", q.rate(collector.ResponseSizeBytes)), "{{model}} response"))).
		WithPanel(defaultTimeseries("Payload log", "Events per second the payload log's receiver (--payload-log.url) accepted, by type, and those dropped, by reason: the requests were served, the payload log misses them. Empty without a payload log.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (type) (rate(%s[$__rate_interval]))", q.plain(collector.PayloadLogSentTotal)), "sent {{type}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.PayloadLogDroppedTotal)), "dropped {{reason}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.PayloadLogFailuresTotal)), "failed attempts {{reason}}"))).
		WithPanel(defaultTimeseries("Payload log backlog", "Bytes of payload events waiting to be sent, in memory (against its bound) and in the spool directory: growth means the receiver does not keep up.", "bytes").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (instance) (%s)", q.plain(collector.PayloadLogQueueBytes)), "{{instance}} queue")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (instance) (%s)", q.plain(collector.PayloadLogQueueMaxBytes)), "{{instance}} queue bound")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (instance) (%s)", q.plain(collector.PayloadLogSpoolBytes)), "{{instance}} spool"))).
		WithPanel(defaultTimeseries("Pushed observations", "Observations per second the push API (/v1/observations) accepted, by model, and those it rejected, by reason. Rejections are observations a pipeline posts that the sidecar cannot read: drift and quality miss them; fix what the pipeline sends (the response says which and why).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s)", q.rate(collector.ObservationsReceived)), "{{model}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (reason) (rate(%s[$__rate_interval])) > 0", q.plain(collector.ObservationsRejected)), "rejected {{reason}}"))).
		WithPanel(defaultTimeseries("Payload log delivery", "p99 of a payload log delivery attempt, events written to the spool per second, and batches sent in parts. A rising p99 or a steady spool rate means the receiver does not keep up (the spool fills, then events are dropped); splits mean it refuses whole batches (too large: lower --payload-log.batch-size, or fix what it refuses).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("histogram_quantile(0.99, sum by (le) (rate(%s[$__rate_interval])))", q.plain(collector.PayloadLogDuration+"_bucket")), "attempt p99 (s)")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum (rate(%s[$__rate_interval])) > 0", q.plain(collector.PayloadLogSpooledTotal)), "spooled/s")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum (rate(%s[$__rate_interval])) > 0", q.plain(collector.PayloadLogSplitsTotal)), "batch splits/s"))).
		WithPanel(defaultTimeseries("Label values over their cap", "Traffic-derived label values (models, features, classes) replaced by __other__ per second: raise the limits or look at the traffic.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (label) (rate(%s[$__rate_interval])) > 0", q.plain(collector.LabelOverflowTotal)), "{{label}}"))).
		WithRow(dashboard.NewRowBuilder("Predictions")).
		WithPanel(defaultTimeseries("Predicted classes", "Share of each model's classification predictions by predicted class: a shift in what the model predicts (say, twice the fraud rate) shows without labels or a reference.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(q.shareOfModel(collector.PredictionClassTotal, "class"), "{{model}} {{class}}"))).
		WithPanel(defaultTimeseries("Mean confidence", "Mean probability the classification predictions give the class they predict: a fall says the model meets inputs it is unsure of, before any label comes.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(q.nativeMean(collector.PredictionClassProbability, "model"), "{{model}}"))).
		WithPanel(defaultTimeseries("Mean prediction score", "Mean of the numeric predictions: a regression's values, a binary classifier's scores (the second class's probability).", "none").
			WithTarget(prometheusQuery(q.nativeMean(collector.PredictionScore, "model"), "{{model}}"))).
		WithPanel(defaultTimeseries("Prediction score quantiles", "Median and 90th percentile of the numeric predictions, from the native histogram.", "none").
			WithTarget(prometheusQuery(q.nativeQuantile("0.5", collector.PredictionScore, "model"), "{{model}} p50")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.PredictionScore, "model"), "{{model}} p90"))).
		WithRow(dashboard.NewRowBuilder("Shadow model server")).
		WithPanel(defaultTimeseries("Shadow disagreement", "Share of the predictions compared with the shadow model server (--shadow.upstream) whose class differs: what the candidate would change if it took the traffic. Empty without a shadow.", "percentunit").
			Min(0).
			WithTarget(prometheusQuery(q.rateRatio(collector.ShadowDisagreementsTotal, collector.ShadowPredictionsTotal), "{{model}}"))).
		WithPanel(defaultTimeseries("Shadow mean absolute difference", "Mean absolute difference between the model's and the shadow's numeric predictions (a regression's values, a binary classifier's scores).", "none").
			WithTarget(prometheusQuery(q.rateRatio(collector.ShadowAbsoluteDifferenceTotal, collector.ShadowPredictionsTotal), "{{model}}"))).
		WithPanel(defaultTimeseries("Shadow against labels", "With labels: the shadow's accuracy minus the model's over the predictions labelled with a class, and the model's mean absolute error minus the shadow's over those labelled with a number, on the same labelled predictions (positive: the candidate does better). rules/shadow.rules.yml gives the daily gain and McNemar's z of it.", "none").
			WithTarget(prometheusQuery(q.shadowGain(collector.ShadowCorrectTotal, collector.SourceShadow, collector.SourceModel,
				q.classPairs("rate", "$__rate_interval", collector.ShadowRegressionOutcomesTotal, collector.ShadowLabelsMatchedTotal)), "{{model}} accuracy gain")).
			WithTarget(prometheusQuery(q.shadowGain(collector.ShadowAbsoluteErrorTotal, collector.SourceModel, collector.SourceShadow,
				q.numericPairs("rate", "$__rate_interval", collector.ShadowRegressionOutcomesTotal, collector.ShadowLabelsMatchedTotal)), "{{model}} MAE gain"))).
		WithPanel(mergeTable(defaultTable("Shadow class pairs", "Compared classification predictions over the time range by the model's class and the shadow's: off the diagonal, the classes the candidate would change, and into what (__none__: a side that gave no class)."),
			map[string]string{"Value #A": "predictions"}).
			WithTarget(tableQuery(fmt.Sprintf("sum by (model, predicted, shadow_predicted) (%s)",
				q.inVersion(fmt.Sprintf("increase(%s[$__range])", q.sel(collector.ShadowClassPairsTotal)))), "A"))).
		WithPanel(defaultTimeseries("Shadow latency", "p99 of the shadow's round trip against the model's own, from the native histograms.", "s").
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.ShadowDuration, "model"), "{{model}} shadow p99")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.PredictionDuration, "model"), "{{model}} model p99"))).
		WithPanel(defaultTimeseries("Shadow streamed latency", "For streamed answers (token streams): p99 of the shadow's time to first byte against the model's, and p90 of the time per output token after the first against the model's, from the native histograms. Empty without streamed answers mirrored to a shadow.", "s").
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.ShadowFirstByte, "model"), "{{model}} shadow first byte p99")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.99", collector.PredictionFirstByte, "model"), "{{model}} model first byte p99")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.ShadowTimePerToken, "model"), "{{model}} shadow per token p90")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.GenerationTimePerToken, "model"), "{{model}} model per token p90"))).
		WithPanel(defaultTimeseries("Shadow requests not compared", "Mirrored requests per second whose answer was not compared, by reason, and those dropped because the shadow could not keep up.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, reason) (%s) > 0", q.rate(collector.ShadowErrorsTotal)), "{{model}} {{reason}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s) > 0", q.rate(collector.ShadowDroppedTotal)), "{{model}} dropped"))).
		WithPanel(defaultTimeseries("Shadow requests", "Requests mirrored to the shadow per second, and those sent to it a second time after their kept-alive connection ended before any answer. Retries that grow with the requests mean the shadow closes kept-alive connections early: raise its keep-alive timeout.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s)", q.rate(collector.ShadowRequestsTotal)), "{{model}}")).
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model) (%s) > 0", q.rate(collector.ShadowRetriesTotal)), "{{model}} retried"))).
		WithRow(dashboard.NewRowBuilder("Generative models")).
		WithPanel(defaultTimeseries("Why generations stopped", "Share of generative models' answers (LLMs) by finish reason: a rise of length means answers cut at max_tokens, of content_filter answers withheld. Empty for models that do not generate.", "percentunit").
			Min(0).Max(1).
			WithTarget(prometheusQuery(q.shareOfModel(collector.GenerationsTotal, "finish_reason"), "{{model}} {{finish_reason}}"))).
		WithPanel(defaultTimeseries("Time per output token (streams)", "Quantiles of the time per output token after the first of generative models' streamed answers, from the native histogram: with the time to first byte above, the latency of token streams.", "s").
			WithTarget(prometheusQuery(q.nativeQuantile("0.5", collector.GenerationTimePerToken, "model"), "{{model}} p50")).
			WithTarget(prometheusQuery(q.nativeQuantile("0.9", collector.GenerationTimePerToken, "model"), "{{model}} p90"))).
		WithPanel(defaultTimeseries("Tokens", "Tokens per second of the prompts (input) and the answers (output), as the answers report them (OpenAI's usage, TGI's details, Ollama's counts).", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (model, type) (%s)", q.rate(collector.GenerationTokensTotal)), "{{model}} {{type}}"))).
		WithRow(dashboard.NewRowBuilder("SLOs")).
		WithPanel(defaultTimeseries("SLO error budget left", "Share of each SLO's error budget left over its period (models[].slos, rules written by exporter alerts): 1 untouched, 0 spent, below 0 overspent. Empty without SLOs.", "percentunit").
			WithTarget(prometheusQuery(q.modelFilter(`modelmon:slo_error_budget_remaining:ratio{model=~"$model"}`), "{{model}} {{slo}}"))).
		WithPanel(defaultTimeseries("SLO burn rate (1h)", "How fast each SLO spends its error budget over the last hour: 1 spends it exactly over the period; 14.4 pages (with the 5-minute window), 6 over six hours too; 3 and 1 over a day and three days open a ticket. These are for a 30-day period (they scale with it), and no pair waits for more than 90 % of events to fail, so a low objective pages below them.", "none").
			WithTarget(prometheusQuery(q.modelFilter(`modelmon:slo_error_ratio:rate1h{model=~"$model"} / on (model, slo) (1 - modelmon:slo_objective{model=~"$model"})`), "{{model}} {{slo}}"))).
		WithRow(dashboard.NewRowBuilder("Models")).
		WithPanel(mergeTable(defaultTable("Models and versions", "The models the sidecars serve, their current version, and how many sidecars serve each."),
			map[string]string{"Value #A": "sidecars", "Value #B": "requests/s"}).
			WithTarget(tableQuery(fmt.Sprintf("count by (model, version) (%s)", q.info()), "A")).
			WithTarget(tableQuery(fmt.Sprintf("sum by (model, version) (%s)",
				q.byVersion(fmt.Sprintf("rate(%s[5m])", q.sel(collector.RequestsTotal)))), "B"))).
		WithPanel(defaultTimeseries("Sidecar collectors", "Scrape-time collectors that failed (0 is a failure) on each sidecar.", "short").
			Min(0).Max(1).
			WithTarget(prometheusQuery(fmt.Sprintf("min by (job, instance, collector) (%s)", q.plain("modelmon_scrape_collector_success")), "{{instance}} {{collector}}"))).
		WithPanel(defaultTimeseries("Sidecar configuration reloads", "Whether each sidecar's last configuration reload succeeded (0: it runs the previous configuration; its log says what was refused). Fix the configuration and reload again.", "short").
			Min(0).Max(1).
			WithTarget(prometheusQuery(fmt.Sprintf("min by (job, instance) (%s)", q.plain("modelmon_exporter_config_last_reload_successful")), "{{instance}}"))).
		WithPanel(defaultTimeseries("Model server retries", "Requests sent to the model server a second time, on another connection, after the kept-alive connection they went out on ended before any answer, per second. A rate that follows the traffic means the model server closes idle connections before the sidecar does: lower --proxy.idle-timeout below its keep-alive timeout.", "short").
			WithTarget(prometheusQuery(fmt.Sprintf("sum by (job) (rate(%s[$__rate_interval])) > 0", q.plain(collector.UpstreamRetriesTotal)), "{{job}}")))
	return b.Build()
}

// versionChanges annotates the time a model's version first shows in
// modelmon_model_info: a rollout.
func versionChanges(q query) *dashboard.AnnotationQueryBuilder {
	info := q.sel(collector.ModelInfoMetric)
	return dashboard.NewAnnotationQueryBuilder().
		Name("Model versions").
		Datasource(datasource()).
		Enable(true).
		IconColor("purple").
		Target(prometheus.NewDataqueryBuilder().
			Datasource(datasource()).
			Expr(fmt.Sprintf("count by (model, version) (%s)\n  unless\ncount by (model, version) (%s offset 2m)", info, info)).
			Range()).
		Step("1m").
		TitleFormat("{{model}} {{version}}").
		TextFormat("Model {{model}} serves version {{version}}.").
		TagKeys("model,version")
}
