//lint:file-ignore SA1019 Grafana provisions the classic dashboard JSON (schema v1) from files in every version we support; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/modelmon/modelmon/collector"
)

// Options configure the dashboards.
type Options struct {
	// ExporterSelector holds the label matchers, without braces, that select
	// the sidecars' series in every query of the exporter's metrics. The
	// model and version variables are added to it where a metric has them.
	ExporterSelector string
	// AlertdSelector holds the label matchers that select alertd's own
	// series.
	AlertdSelector string
	// Tags are set on every dashboard, so that dashboard links find the
	// others.
	Tags []string
	// Refresh is the dashboards' refresh interval.
	Refresh string
}

// DefaultOptions returns the options of the shipped dashboards: the
// sidecars and alertd picked by the namespace and job variables, which match
// everything by default (a setup without a namespace label included).
func DefaultOptions() Options {
	return Options{
		ExporterSelector: `namespace=~"$namespace", job=~"$job"`,
		AlertdSelector:   `namespace=~"$namespace", job=~"$job"`,
		Tags:             []string{"modelmon"},
		Refresh:          "30s",
	}
}

// datasource is the reference every panel and variable uses: the data
// source picked in the datasource variable.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// query builds the label selectors of the exporter's metrics.
type query struct {
	target string
}

// sel returns metric{target, model=~"$model", matchers...}: a metric with a
// model label.
func (q query) sel(metric string, matchers ...string) string {
	return q.plain(metric, append([]string{`model=~"$model"`}, matchers...)...)
}

// plain returns metric{target, matchers...}: a metric without a model label.
func (q query) plain(metric string, matchers ...string) string {
	return metric + "{" + strings.Join(append([]string{q.target}, matchers...), ", ") + "}"
}

// info selects the modelmon_model_info series of the picked models and
// versions.
func (q query) info() string {
	return q.sel(collector.ModelInfoMetric, `version=~"$version"`)
}

// inVersion keeps the series of expr whose sidecar serves the picked
// version of their model. expr must keep the job, instance and model labels
// (a selector, a rate): the version is known per sidecar and model, from
// modelmon_model_info.
func (q query) inVersion(expr string) string {
	return expr + " and on (job, instance, model) " + q.info()
}

// rate returns rate(metric{…}[$__rate_interval]) of the picked models and
// versions.
func (q query) rate(metric string, matchers ...string) string {
	return q.rateOver(metric, "$__rate_interval", matchers...)
}

// rateOver is rate over window, a fixed one ("1h") or a variable.
func (q query) rateOver(metric, window string, matchers ...string) string {
	return q.inVersion(fmt.Sprintf("rate(%s[%s])", q.sel(metric, matchers...), window))
}

// byVersion adds the version label to expr, which must keep the job,
// instance and model labels, and keeps the picked versions only.
func (q query) byVersion(expr string) string {
	return expr + " * on (job, instance, model) group_left (version) " + q.info()
}

// modelFilter keeps the series of a recording rule (labelled by model only)
// whose model serves the picked version somewhere.
func (q query) modelFilter(expr string) string {
	return expr + " and on (model) " + q.info()
}

// nativeQuantile is the q-quantile of a native histogram summed by the
// given labels, falling back to the classic buckets for a Prometheus that
// does not ingest native histograms.
func (q query) nativeQuantile(quantile, metric, by string, matchers ...string) string {
	return q.nativeQuantileOver(quantile, metric, by, "$__rate_interval", matchers...)
}

// nativeQuantileOver is nativeQuantile over window: the last hour's
// quantile in a table, say.
func (q query) nativeQuantileOver(quantile, metric, by, window string, matchers ...string) string {
	native := fmt.Sprintf("histogram_quantile(%s, sum by (%s) (%s))", quantile, by, q.rateOver(metric, window, matchers...))
	classic := fmt.Sprintf("histogram_quantile(%s, sum by (%s, le) (%s))", quantile, by, q.rateOver(metric+"_bucket", window, matchers...))
	return native + "\n  or\n" + classic
}

// nativeMean is the mean of a histogram's observations per rate interval,
// summed by the given labels, falling back to the classic sum and count.
func (q query) nativeMean(metric, by string) string {
	native := fmt.Sprintf("histogram_avg(sum by (%s) (%s))", by, q.rate(metric))
	classic := fmt.Sprintf("sum by (%s) (%s)\n  /\nsum by (%s) (%s)", by, q.rate(metric+"_sum"), by, q.rate(metric+"_count"))
	return native + "\n  or\n" + classic
}

// shareOfModel is each value of label's share of a counter's rate within
// its model.
func (q query) shareOfModel(metric, label string) string {
	return fmt.Sprintf("sum by (model, %s) (%s)\n  / on (model) group_left\nsum by (model) (%s)", label, q.rate(metric), q.rate(metric))
}

// rateRatio is the ratio of two counters' rates, each summed by model.
func (q query) rateRatio(num, den string) string {
	return fmt.Sprintf("sum by (model) (%s)\n  /\nsum by (model) (%s)", q.rate(num), q.rate(den))
}

// shadowGain is a counter of the shadow's label metrics for source from
// minus for subtrahend, per labelled prediction compared with the shadow
// that it is over: per, a rate of the picked models and versions, by
// sidecar (shadowClassPairs, shadowNumericPairs).
func (q query) shadowGain(metric, from, subtrahend, per string) string {
	return fmt.Sprintf("(sum by (model) (%s) - sum by (model) (%s))\n  /\nsum by (model) (%s)",
		q.rate(metric, `source="`+from+`"`), q.rate(metric, `source="`+subtrahend+`"`), per)
}

// numericPairs is fn ("increase" or "rate") over window of a counter of
// numeric label/prediction pairs (pairs), by sidecar, of the picked models
// and versions, as the quality rules take it: a sidecar without the
// counter, from before it in a rolling upgrade, has its labels joined
// (matched) instead, and so has one that has not had it as long as the
// labels joined within the window (upgraded in place).
func (q query) numericPairs(fn, window, pairs, matched string) string {
	return q.inVersion(fmt.Sprintf("(\n  %s(%s[%s])\n    and count_over_time(%s[%s]) >= count_over_time(%s[%s])\n  or\n  %s(%s[%s])\n)",
		fn, q.sel(pairs), window, q.sel(pairs), window, q.sel(matched), window, fn, q.sel(matched), window))
}

// classPairs is fn over window of the class label/prediction pairs, by
// sidecar, of the picked models and versions, as the quality rules take
// them: the labels joined (matched) less the numeric pairs (pairs), or all
// of them on a sidecar without the numeric pairs' counter.
func (q query) classPairs(fn, window, pairs, matched string) string {
	m := fmt.Sprintf("%s(%s[%s])", fn, q.sel(matched), window)
	return q.inVersion(fmt.Sprintf("(\n  %s - %s(%s[%s])\n  or\n  %s\n)", m, fn, q.sel(pairs), window, m))
}

// nativeCount is the rate of a histogram's observations summed by the
// given labels, falling back to the classic count.
func (q query) nativeCount(metric, by string) string {
	native := fmt.Sprintf("histogram_count(sum by (%s) (%s))", by, q.rate(metric))
	classic := fmt.Sprintf("sum by (%s) (%s)", by, q.rate(metric+"_count"))
	return native + "\n  or\n" + classic
}

// prometheusQuery is a range query with a legend.
func prometheusQuery(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		Expr(expr).
		LegendFormat(legend)
}

// instantQuery is an instant query, for stats, bar gauges and tables.
func instantQuery(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheusQuery(expr, legend).Instant()
}

// tableQuery is an instant query in table format, refID naming its value
// column ("Value #A").
func tableQuery(expr, refID string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		Expr(expr).
		Instant().
		Format(prometheus.PromQueryFormatTable).
		RefId(refID)
}

// thresholds returns absolute thresholds: base color below the first step.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: cog.ToPtr(steps[i].(float64)), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

func defaultTimeseries(title, description, unit string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Height(8).
		Span(12).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		DrawStyle(common.GraphDrawStyleLine).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// stackedTimeseries stacks its series, for parts of a whole (requests by
// outcome, alerts by state).
func stackedTimeseries(title, description, unit string) *timeseries.PanelBuilder {
	return defaultTimeseries(title, description, unit).
		FillOpacity(40).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
}

func defaultStat(title, description, unit string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Height(4).
		Span(6).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea)
}

func defaultBarGauge(title, description, unit string) *bargauge.PanelBuilder {
	return bargauge.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Height(8).
		Span(12).
		Orientation(common.VizOrientationHorizontal).
		DisplayMode(common.BarGaugeDisplayModeGradient).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
}

func defaultTable(title, description string) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Height(8).
		Span(12)
}

func defaultHeatmap(title, description string) *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Height(10).
		Span(24)
}

// mergeTable joins the table-format queries of a panel into one row per
// label set and names their value columns.
func mergeTable(p *table.PanelBuilder, columns map[string]string) *table.PanelBuilder {
	rename := map[string]any{}
	for k, v := range columns {
		rename[k] = v
	}
	return p.
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
			"renameByName":  rename,
		}})
}

// datasourceVariable picks the Prometheus-compatible data source: a
// Prometheus, Thanos, Mimir or VictoriaMetrics, or alertd itself, which
// answers PromQL over its embedded TSDB.
func datasourceVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").
		Label("Data source").
		Type("prometheus")
}

// queryVariable is a multi-value variable from label_values(…), matching
// everything by default.
func queryVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return labelValuesVariable(name, label, query).
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		}).
		Multi(true).
		IncludeAll(true).
		AllValue(".*")
}

// singleVariable is a variable from label_values(…) that takes one value.
func singleVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return labelValuesVariable(name, label, query).
		Multi(false).
		IncludeAll(false)
}

// labelValuesVariable is what queryVariable and singleVariable share: the
// query, refreshed when the time range changes, values sorted.
func labelValuesVariable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Datasource(datasource()).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// exporterVariables are the variables of the sidecar dashboards: data
// source, namespace, job, model and version, each narrowing the next.
func exporterVariables(b *dashboard.DashboardBuilder) *dashboard.DashboardBuilder {
	info := collector.ModelInfoMetric
	return b.
		WithVariable(datasourceVariable()).
		WithVariable(queryVariable("namespace", "Namespace", fmt.Sprintf("label_values(%s, namespace)", info))).
		WithVariable(queryVariable("job", "Job", fmt.Sprintf(`label_values(%s{namespace=~"$namespace"}, job)`, info))).
		WithVariable(queryVariable("model", "Model", fmt.Sprintf(`label_values(%s{namespace=~"$namespace", job=~"$job"}, model)`, info))).
		WithVariable(queryVariable("version", "Version", fmt.Sprintf(`label_values(%s{namespace=~"$namespace", job=~"$job", model=~"$model"}, version)`, info)))
}

// newDashboard sets what every modelmon dashboard shares: uid, tags, time,
// refresh, links to the others.
func newDashboard(opts Options, uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags(opts.Tags).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh(opts.Refresh).
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		Link(dashboard.NewDashboardLinkBuilder("modelmon").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags(opts.Tags).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
}
