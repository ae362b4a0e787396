package alertd

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/driftcli"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// segmentRecall is what the recording rules of
// deploy/prometheus/quality.rules.yml make of a fraud model that catches 1
// of 4 frauds in DE against 1 of 2 overall: the series the generated
// ModelSegmentRecallLow reads, and those its description queries.
const segmentRecall = `modelmon:segment_recall:1h{model="fraud",segment="country",segment_value="DE",class="fraud"} 0.25
modelmon:recall:1h{model="fraud",class="fraud"} 0.5
modelmon:segment_class_labels:increase1h{model="fraud",segment="country",segment_value="DE",class="fraud"} 240
`

// The alerts `exporter alerts` writes, loaded into alertd: the description
// of ModelSegmentRecallLow runs two queries with Prometheus's template
// `query` function, which go to the rules' own query function, the
// embedded engine over what alertd scraped or the --datasource.url
// Prometheus, and the notification carries their results.
func TestGeneratedAlertsQueryInTemplates(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(`
models:
  - name: fraud
    segments: [country]
    segment_classes: 2
    alerts: {max_segment_recall_gap: 0.2}
`)
	require.NoError(t, err)
	alerts, err := driftcli.QualityAlerts(cfg)
	require.NoError(t, err)
	const description = "fraud where country is DE: recall of class fraud 250m over 240 labels of it in the last hour, against 500m for the model."

	for _, tc := range []struct {
		name   string
		remote bool
	}{{"embedded", false}, {"remote", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := newExposition(t, segmentRecall)
			h := newHook(t)
			extra, mod := "scrape_configs:\n  - job_name: modelmon\n    static_configs:\n      - targets: ['"+target.Addr+"']\n", func(*Options) {}
			if tc.remote {
				prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{target.Addr}})
				extra, mod = "", func(o *Options) { o.DatasourceURL = prom.URL }
			}
			startAlertd(t, routes(h, nil, extra), map[string]string{"rules.yml": string(alerts)}, mod)

			p := h.wait(t, "ModelSegmentRecallLow", "firing", 60*time.Second)
			require.Len(t, p.Alerts, 1)
			require.Equal(t, map[string]string{
				"summary":     "Recall of a class of model fraud more than 0.2 below the model's for a segment.",
				"description": description,
				"runbook_url": "https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsegmentrecalllow",
			}, p.Alerts[0].Annotations)
			require.Equal(t, "accuracy", p.Alerts[0].Labels["category"])
		})
	}
}

// A query of an alert's template that fails shows in the annotation as
// Prometheus shows it, is counted, and is no rule's failure: with a remote
// data source that answers the rule's own query but not the template's
// (a 502 from the frontend and a partial answer, which would mark the data
// source down were they the rule's, and a query the real Prometheus behind
// it rejects), the rule is healthy, its alert fires and the data source
// stays up; the log says the partial answer does not mark it down.
func TestTemplateQueryFailureLeavesDatasourceUp(t *testing.T) {
	t.Parallel()
	var unanswered atomic.Int64
	frontend := promFrontend(t, func(w http.ResponseWriter, _ *http.Request, query string) bool {
		switch {
		case strings.Contains(query, "template_unanswered"):
			unanswered.Add(1)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return true
		case strings.Contains(query, "template_partial"):
			writePartialAnswer(w)
			return true
		}
		return false
	})

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": alwaysFiringRules + `        annotations:
          unanswered: '{{ with query "template_unanswered" }}{{ . | first | value }}{{ end }}'
          rejected: '{{ with query "rate(up)" }}{{ . | first | value }}{{ end }}'
          partial: '{{ with query "template_partial" }}{{ . | first | value }}{{ end }}'
`}, func(o *Options) { o.DatasourceURL = frontend.URL })
	p := h.wait(t, "AlwaysFiring", "firing", 60*time.Second)
	require.Len(t, p.Alerts, 1)
	require.Equal(t, `<error expanding template: error executing template __alert_AlwaysFiring: template: __alert_AlwaysFiring:1:120: executing "__alert_AlwaysFiring" at <query "template_unanswered">: error calling query: remote query: server_error: server error: 502>`,
		p.Alerts[0].Annotations["unanswered"])
	require.Contains(t, p.Alerts[0].Annotations["rejected"], `<error expanding template: `)
	require.Contains(t, p.Alerts[0].Annotations["rejected"], `error calling query: remote query: bad_data: invalid parameter "query"`)
	require.Contains(t, p.Alerts[0].Annotations["partial"], `<error expanding template: `)
	require.Contains(t, p.Alerts[0].Annotations["partial"], `the data source answered with part of the data (isPartial`)

	// Many evaluations, each with both template queries failing: once
	// one that starts after the sixth unanswered query has finished
	// (Prometheus sets a group's last evaluation when it ends), the data
	// source is still up.
	require.Eventually(t, func() bool { return unanswered.Load() > 5 }, 30*time.Second, 10*time.Millisecond,
		"the templates' queries were not run in several evaluations")
	since := time.Now()
	require.Eventually(t, func() bool {
		gs := a.rules(t)
		require.Len(t, gs, 1)
		return gs[0].LastEvaluation.After(since)
	}, 30*time.Second, 10*time.Millisecond, "the rules were not evaluated again")
	up, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, up, "a template's query marked the data source down")
	failing, _ := metric(t, a.Registry(), "alertd_datasource_failing_rules")
	require.Zero(t, failing, "a template's query marked the data source down")
	require.Empty(t, h.matching(datasourceDownAlert, ""))
	rule := findRule(t, a.rules(t), "AlwaysFiring")
	require.Equal(t, "ok", rule.Health)
	require.Empty(t, rule.LastError)
	al, ok := a.alert(t, "AlwaysFiring", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State)
	require.Contains(t, a.logs.String(), `msg="Data source answered a template's query with part of the data; the template fails to expand, the data source does not count as down" component=datasource query=template_partial`)
	require.NotContains(t, a.logs.String(), "counts as down")

	failed, ok := metric(t, a.Registry(), "alertd_template_queries_failed_total")
	require.True(t, ok)
	require.GreaterOrEqual(t, failed, 3*float64(unanswered.Load()-1))
	// Every template query failed (read between two evaluations).
	require.Eventually(t, func() bool {
		failed, _ := metric(t, a.Registry(), "alertd_template_queries_failed_total")
		queries, _ := metric(t, a.Registry(), "alertd_template_queries_total")
		return queries == failed
	}, 10*time.Second, 5*time.Millisecond)
}

// A group with a query_offset evaluates its rule's expression at the
// evaluation time minus the offset and runs its templates' queries at the
// evaluation time, as Prometheus's rule manager does (AlertingRule.Eval
// expands templates at ts, queries the expression at ts - queryOffset;
// vmalert runs both at its delayed time): once the series changes, the
// annotation shows the new value from its query and the value the rule saw
// in $value, until the change is older than the offset. In both modes:
// the embedded engine over what alertd scrapes, and a real Prometheus.
func TestTemplateQueryAtEvaluationTime(t *testing.T) {
	t.Parallel()
	const rules = `
groups:
  - name: offset
    interval: 100ms
    query_offset: 4s
    rules:
      - alert: ValueSeen
        expr: template_offset_value
        annotations:
          seen: 'rule {{ $value }} template {{ with query "template_offset_value" }}{{ . | first | value }}{{ end }}'
`
	for _, tc := range []struct {
		name   string
		remote bool
	}{{"embedded", false}, {"remote", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := newExposition(t, "template_offset_value 1\n")
			h := newHook(t)
			extra, mod := "scrape_configs:\n  - job_name: modelmon\n    scrape_interval: 100ms\n    static_configs:\n      - targets: ['"+target.Addr+"']\n", func(*Options) {}
			if tc.remote {
				prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{target.Addr}, ScrapeInterval: 100 * time.Millisecond})
				extra, mod = "", func(o *Options) { o.DatasourceURL = prom.URL }
			}
			a := startAlertd(t, routes(h, nil, extra), map[string]string{"rules.yml": rules}, mod)
			seen := func() string {
				r := findRule(t, a.rules(t), "ValueSeen")
				if len(r.Alerts) != 1 {
					return ""
				}
				s := r.Alerts[0].Annotations.Get("seen")
				if strings.HasSuffix(s, "template ") {
					// The template's query found no sample: a scrape
					// every 100 ms on a loaded machine can fail, and
					// Prometheus then marks the series stale until the
					// next one. Not an annotation this test is about.
					return ""
				}
				return s
			}
			var got []string
			wait := func(want string) {
				t.Helper()
				require.Eventually(t, func() bool {
					s := seen()
					if s != "" && (len(got) == 0 || got[len(got)-1] != s) {
						got = append(got, s)
					}
					return s == want
				}, 30*time.Second, 10*time.Millisecond, "annotations seen: %q", got)
			}
			wait("rule 1 template 1")
			target.set("template_offset_value 2\n")
			wait("rule 1 template 2")
			wait("rule 2 template 2")
			require.Equal(t, []string{"rule 1 template 1", "rule 1 template 2", "rule 2 template 2"}, got)
			// The template's query repeats the rule's expression, and is
			// the template's all the same.
			n, _ := metric(t, a.Registry(), "alertd_template_queries_total")
			require.Positive(t, n)
		})
	}
}
