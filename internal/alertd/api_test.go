package alertd

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// apiConfig scrapes a test target every second and evaluates a recording
// rule and two alerting rules on it.
const apiConfig = `
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: queues
    static_configs:
      - targets: ["{{TARGET}}"]
        labels:
          team: ml
`

const apiRules = `
groups:
  - name: recording
    rules:
      - record: job:queue_depth:sum
        expr: sum by (job) (queue_depth)
  - name: alerts
    rules:
      - alert: QueueDeep
        expr: job:queue_depth:sum > 3
        labels:
          severity: page
        annotations:
          summary: "{{ $value }} items queued"
      - alert: QueueStuck
        expr: job:queue_depth:sum > 0
        for: 1h
`

// The query API answers in Prometheus's JSON format over what alertd
// scraped and recorded: Prometheus's own client decodes every endpoint, and
// the raw answers have Prometheus's shape.
func TestQueryAPI(t *testing.T) {
	t.Parallel()
	target := newExposition(t, "# TYPE queue_depth gauge\nqueue_depth{queue=\"a\"} 5\nqueue_depth{queue=\"b\"} 2\n")
	a := startAlertd(t, strings.ReplaceAll(apiConfig, "{{TARGET}}", target.Addr), map[string]string{"rules.yml": apiRules}, nil)
	client, err := api.NewClient(api.Config{Address: a.URL})
	require.NoError(t, err)
	prom := v1.NewAPI(client)
	ctx := t.Context()

	// Wait for the recording rule's result, evaluated on scraped samples.
	require.Eventually(t, func() bool {
		v, _, _, err := prom.Query(ctx, "job:queue_depth:sum", time.Now())
		return err == nil && len(v.(model.Vector)) == 1 && v.(model.Vector)[0].Value == 7
	}, 30*time.Second, 20*time.Millisecond, "the recording rule's result never became queryable")

	// Instant query: the raw answer, and as the client decodes it.
	code, r := apiGet(t, a.URL+"/api/v1/query?query="+url.QueryEscape(`queue_depth`))
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "success", r.Status)
	require.JSONEq(t, `{"resultType":"vector","result":[
		{"metric":{"__name__":"queue_depth","instance":"`+target.Addr+`","job":"queues","queue":"a","team":"ml"},"value":[0,"5"]},
		{"metric":{"__name__":"queue_depth","instance":"`+target.Addr+`","job":"queues","queue":"b","team":"ml"},"value":[0,"2"]}]}`,
		zeroTimestamps(t, r.Data))
	code, r = apiGet(t, a.URL+"/api/v1/query?query="+url.QueryEscape(`job:queue_depth:sum`))
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"resultType":"vector","result":[{"metric":{"__name__":"job:queue_depth:sum","job":"queues"},"value":[0,"7"]}]}`,
		zeroTimestamps(t, r.Data))
	// A scalar at a given time, as [time, "value"].
	code, r = apiGet(t, a.URL+"/api/v1/query?query=1%2B1&time=1700000000.5")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"resultType":"scalar","result":[1700000000.5,"2"]}`, string(r.Data))
	// The ALERTS series of a pending alert.
	require.Eventually(t, func() bool {
		v, _, _, err := prom.Query(ctx, `ALERTS{alertname="QueueStuck"}`, time.Now())
		return err == nil && len(v.(model.Vector)) == 1 &&
			v.(model.Vector)[0].Metric.Equal(model.Metric{"__name__": "ALERTS", "alertname": "QueueStuck", "alertstate": "pending", "job": "queues"})
	}, 30*time.Second, 20*time.Millisecond, "no ALERTS series for the pending alert")

	// Range query.
	end := time.Now()
	m, _, _, err := prom.QueryRange(ctx, "queue_depth", v1.Range{Start: end.Add(-10 * time.Second), End: end, Step: time.Second})
	require.NoError(t, err)
	matrix := m.(model.Matrix)
	require.Len(t, matrix, 2)
	require.Equal(t, model.LabelValue("a"), matrix[0].Metric["queue"])
	require.NotEmpty(t, matrix[0].Values)
	for _, p := range matrix[0].Values {
		require.Equal(t, model.SampleValue(5), p.Value)
	}
	code, r = apiGet(t, a.URL+"/api/v1/query_range?query=2&start=100&end=102&step=1")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"resultType":"matrix","result":[{"metric":{},"values":[[100,"2"],[101,"2"],[102,"2"]]}]}`, string(r.Data))

	// Series, label names, label values.
	series, _, _, err := prom.Series(ctx, []string{`queue_depth`, `{__name__="job:queue_depth:sum"}`}, time.Now().Add(-time.Hour), time.Now())
	require.NoError(t, err)
	require.ElementsMatch(t, []model.LabelSet{
		{"__name__": "job:queue_depth:sum", "job": "queues"},
		{"__name__": "queue_depth", "instance": model.LabelValue(target.Addr), "job": "queues", "queue": "a", "team": "ml"},
		{"__name__": "queue_depth", "instance": model.LabelValue(target.Addr), "job": "queues", "queue": "b", "team": "ml"},
	}, series)
	names, _, _, err := prom.LabelNames(ctx, nil, time.Time{}, time.Time{})
	require.NoError(t, err)
	for _, n := range []model.LabelName{"__name__", "alertname", "alertstate", "instance", "job", "queue", "team"} {
		require.Contains(t, names, n)
	}
	require.True(t, slices.IsSorted(names))
	names, _, _, err = prom.LabelNames(ctx, []string{"queue_depth"}, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, model.LabelNames{"__name__", "instance", "job", "queue", "team"}, names)
	values, _, _, err := prom.LabelValues(ctx, "queue", nil, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, model.LabelValues{"a", "b"}, values)
	values, _, _, err = prom.LabelValues(ctx, "__name__", []string{`{job="queues"}`}, time.Time{}, time.Time{})
	require.NoError(t, err)
	for _, n := range []model.LabelValue{"ALERTS", "ALERTS_FOR_STATE", "job:queue_depth:sum", "queue_depth", "scrape_samples_scraped", "up"} {
		require.Contains(t, values, n)
	}
	code, r = apiGet(t, a.URL+"/api/v1/label/queue/values?match[]=queue_depth")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `["a","b"]`, string(r.Data))
	code, r = apiGet(t, a.URL+"/api/v1/label/nothing/values")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[]`, string(r.Data))

	// Build information.
	bi, err := prom.Buildinfo(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, bi.GoVersion)
	code, r = apiGet(t, a.URL+"/api/v1/status/buildinfo")
	require.Equal(t, http.StatusOK, code)
	var fields map[string]string
	require.NoError(t, json.Unmarshal(r.Data, &fields))
	require.ElementsMatch(t, []string{"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}, keysOf(fields))
}

// GET /api/v1/rules lists the groups with health, last error and
// evaluation times; GET /api/v1/alerts lists firing and pending alerts with
// their state and history.
func TestRulesAndAlertsAPI(t *testing.T) {
	t.Parallel()
	target := newExposition(t, "# TYPE queue_depth gauge\nqueue_depth{queue=\"a\"} 5\n")
	a := startAlertd(t, strings.ReplaceAll(apiConfig, "{{TARGET}}", target.Addr), map[string]string{"rules.yml": apiRules}, nil)
	client, err := api.NewClient(api.Config{Address: a.URL})
	require.NoError(t, err)
	prom := v1.NewAPI(client)
	ctx := t.Context()

	var deep alertJSON
	require.Eventually(t, func() bool {
		var ok bool
		deep, ok = a.alert(t, "QueueDeep", SourceRule)
		return ok
	}, 30*time.Second, 20*time.Millisecond, "QueueDeep never fired")

	// Both alerting rules run in one group evaluation; read the rules once
	// the evaluation that fired QueueDeep has also reached QueueStuck.
	var rules v1.RulesResult
	require.Eventually(t, func() bool {
		var err error
		rules, err = prom.Rules(ctx, nil)
		require.NoError(t, err)
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if ar, ok := r.(v1.AlertingRule); ok && ar.Name == "QueueStuck" {
					return ar.State == "pending"
				}
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "QueueStuck never went pending")
	require.Len(t, rules.Groups, 2)
	g := rules.Groups[0]
	require.Equal(t, "alerts", g.Name)
	require.Equal(t, a.Dir+"/rules.yml", g.File)
	require.Equal(t, 1.0, g.Interval)
	require.Len(t, g.Rules, 2)
	ar := g.Rules[0].(v1.AlertingRule)
	require.Equal(t, "QueueDeep", ar.Name)
	require.Equal(t, "job:queue_depth:sum > 3", ar.Query)
	require.Equal(t, v1.RuleHealth(v1.RuleHealthGood), ar.Health)
	require.Empty(t, ar.LastError)
	require.Equal(t, "firing", ar.State)
	require.Equal(t, model.LabelSet{"severity": "page"}, ar.Labels)
	require.Equal(t, model.LabelSet{"summary": "{{ $value }} items queued"}, ar.Annotations)
	require.Len(t, ar.Alerts, 1)
	require.Equal(t, v1.AlertStateFiring, ar.Alerts[0].State)
	require.Equal(t, model.LabelSet{"alertname": "QueueDeep", "job": "queues", "severity": "page"}, ar.Alerts[0].Labels)
	require.Equal(t, model.LabelSet{"summary": "5 items queued"}, ar.Alerts[0].Annotations)
	require.Positive(t, ar.EvaluationTime)
	require.WithinDuration(t, time.Now(), ar.LastEvaluation, 10*time.Second)
	stuck := g.Rules[1].(v1.AlertingRule)
	require.Equal(t, "pending", stuck.State)
	require.Equal(t, 3600.0, stuck.Duration)
	rec := rules.Groups[1]
	require.Equal(t, "recording", rec.Name)
	rr := rec.Rules[0].(v1.RecordingRule)
	require.Equal(t, "job:queue_depth:sum", rr.Name)
	require.Equal(t, v1.RuleHealth(v1.RuleHealthGood), rr.Health)

	// Filter by type, as Prometheus does.
	code, r := apiGet(t, a.URL+"/api/v1/rules?type=record")
	require.Equal(t, http.StatusOK, code)
	var d struct {
		Groups []groupJSON `json:"groups"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	require.Len(t, d.Groups, 2)
	require.Empty(t, d.Groups[0].Rules)
	require.Len(t, d.Groups[1].Rules, 1)
	// Groups carry their evaluation time and last evaluation too.
	for _, g := range a.rules(t) {
		require.Positive(t, g.EvaluationTime, g.Name)
		require.WithinDuration(t, time.Now(), g.LastEvaluation, 10*time.Second, g.Name)
		require.Zero(t, g.Limit, g.Name)
	}

	// Alerts: the client decodes them; alertd adds state and history.
	alerts, err := prom.Alerts(ctx)
	require.NoError(t, err)
	states := map[string]v1.AlertState{}
	for _, al := range alerts.Alerts {
		states[string(al.Labels["alertname"])] = al.State
	}
	require.Equal(t, map[string]v1.AlertState{"QueueDeep": v1.AlertStateFiring, "QueueStuck": v1.AlertStatePending}, states)

	require.Equal(t, model.LabelSet{"alertname": "QueueDeep", "job": "queues", "severity": "page"}, deep.Labels)
	require.Equal(t, model.LabelSet{"summary": "5 items queued"}, deep.Annotations)
	require.Equal(t, "firing", deep.State)
	require.Equal(t, "5", deep.Value)
	require.Equal(t, SourceRule, deep.Source)
	require.Equal(t, generator("job:queue_depth:sum > 3"), deep.GeneratorURL)
	require.Equal(t, deep.Labels.Fingerprint().String(), deep.Fingerprint)
	require.Equal(t, []string{"intake/received", "route/routed", "incident/grouped"}, actions(deep.History))
	require.Equal(t, "from alerting rule evaluating job:queue_depth:sum > 3", deep.History[0].Reason)

	code, r = apiGet(t, a.URL+"/api/v1/alerts?state=pending")
	require.Equal(t, http.StatusOK, code)
	var pending struct {
		Alerts []alertJSON `json:"alerts"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &pending))
	require.Len(t, pending.Alerts, 1)
	p := pending.Alerts[0]
	require.Equal(t, "pending", p.State)
	require.Equal(t, model.LabelSet{"alertname": "QueueStuck", "job": "queues"}, p.Labels)
	require.NotNil(t, p.ActiveAt)
	require.Equal(t, []string{"rule/pending"}, actions(p.History))
	require.Equal(t, "the expression holds; the alert fires once it has held for 1h", p.History[0].Reason)

	// The rule's alert resolves when the target goes: the resolved alert
	// stays listed with its history.
	target.set("# TYPE queue_depth gauge\nqueue_depth{queue=\"a\"} 1\n")
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "QueueDeep", SourceRule)
		return ok && al.State == "resolved"
	}, 30*time.Second, 20*time.Millisecond)
	deep, _ = a.alert(t, "QueueDeep", SourceRule)
	require.Equal(t, []string{"intake/received", "route/routed", "incident/grouped", "intake/resolved"}, actions(deep.History))
	require.NotContains(t, deep.Annotations, "priority", "no classification is configured")
	v, _ := metric(t, a.Registry(), "alertd_alerts", "state", "resolved", "priority", "none")
	require.Equal(t, 1.0, v)
	v, ok := metric(t, a.Registry(), "alertd_alerts", "state", "firing", "priority", "none")
	require.True(t, ok)
	require.Zero(t, v)
}

// With a route prefix every endpoint is served under it, and the root
// redirects there.
func TestRoutePrefix(t *testing.T) {
	t.Parallel()
	a := startAlertd(t, intakeConfig, nil, func(o *Options) { o.RoutePrefix = "/alertd/" })
	base := a.URL + "/alertd"
	for _, path := range []string{"/-/healthy", "/-/ready", "/metrics", "/api/v1/status/buildinfo", "/api/v1/alerts", "/api/v1/rules", "/api/v1/query?query=1", "/"} {
		code, body := get(t, base+path)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
	code, body := post(t, base+"/api/v2/alerts", "application/json", `[{"labels":{"alertname":"UnderPrefix"}}]`)
	require.Equal(t, http.StatusOK, code, body)
	code, _ = post(t, base+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code)

	client, err := api.NewClient(api.Config{Address: base})
	require.NoError(t, err)
	alerts, err := v1.NewAPI(client).Alerts(t.Context())
	require.NoError(t, err)
	require.Len(t, alerts.Alerts, 1)
	require.Equal(t, model.LabelValue("UnderPrefix"), alerts.Alerts[0].Labels["alertname"])

	// Every link of the landing page is under the prefix and answers.
	_, landing := get(t, base+"/")
	links := regexp.MustCompile(`href="([^"]+)"`).FindAllStringSubmatch(landing, -1)
	require.NotEmpty(t, links)
	for _, m := range links {
		link := html.UnescapeString(m[1])
		if strings.HasPrefix(link, "http") || strings.Contains(link, "seconds=") {
			continue // pprof.me, and the 60-second CPU profile
		}
		require.True(t, strings.HasPrefix(link, "/alertd/"), "landing page link %q is not under the prefix", link)
		code, body := get(t, a.URL+link)
		require.Equal(t, http.StatusOK, code, "landing page link %s: %s", link, body)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/", "/api/v1/alerts", "/metrics"} {
		resp, err := noRedirect.Get(a.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusFound, resp.StatusCode, path)
		require.Equal(t, "/alertd/", resp.Header.Get("Location"), path)
	}
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
