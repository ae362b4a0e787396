package alertd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/common/model"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertmanagertest"
	"github.com/modelmon/modelmon/internal/exporter"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// routeConfig routes every alert, grouped by alertname, to the receiver
// "hook": a webhook at {{HOOK}} that also gets resolved alerts and, when
// {{AM}} is not empty, a real Alertmanager. Groups flush every second.
const routeConfig = `
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "{{HOOK}}"
        send_resolved: true
`

const amReceiver = `
    alertmanager_configs:
      - url: "{{AM}}"
`

// routes returns routeConfig for the hook and the Alertmanager (nil: none),
// followed by extra YAML.
func routes(h *hook, am *alertmanagertest.Server, extra string) string {
	c := strings.ReplaceAll(routeConfig, "{{HOOK}}", h.URL)
	if am != nil {
		c += strings.ReplaceAll(amReceiver, "{{AM}}", am.URL)
	}
	return c + extra
}

// emptyAlertmanager is an Alertmanager configuration that notifies nobody:
// the tests only ask its API what it holds.
const emptyAlertmanager = "route:\n  receiver: none\nreceivers:\n  - name: none\n"

// requireInAlertmanager waits until the real Alertmanager holds exactly one
// alert and checks it against what alertd sent.
func requireInAlertmanager(t *testing.T, am *alertmanagertest.Server, want payloadAlert) {
	t.Helper()
	var got models.GettableAlerts
	require.Eventually(t, func() bool {
		var err error
		got, err = am.Alerts(t.Context())
		return err == nil && len(got) == 1
	}, 30*time.Second, 20*time.Millisecond, "the alert never showed up in Alertmanager")
	a := got[0]
	require.Equal(t, models.LabelSet(want.Labels), a.Labels)
	require.Equal(t, models.LabelSet(want.Annotations), a.Annotations)
	// The Alertmanager API keeps times in milliseconds.
	require.True(t, want.StartsAt.Truncate(time.Millisecond).Equal(time.Time(*a.StartsAt)), "startsAt %s, want %s", a.StartsAt, want.StartsAt)
	require.Equal(t, want.GeneratorURL, a.GeneratorURL.String())
	require.Equal(t, want.Fingerprint, *a.Fingerprint)
	require.Equal(t, "active", *a.Status.State)
	require.True(t, time.Time(*a.EndsAt).After(time.Now()), "endsAt %s is not in the future", a.EndsAt)
}

// fingerprint is the fingerprint Alertmanager gives alerts with labels ls.
func fingerprint(ls map[string]string) string {
	s := model.LabelSet{}
	for k, v := range ls {
		s[model.LabelName(k)] = model.LabelValue(v)
	}
	return s.Fingerprint().String()
}

// A real Prometheus scrapes a target the test controls; alertd evaluates its
// rule against that Prometheus, and notifies a webhook and a real
// Alertmanager when it fires and when it resolves.
func TestRemoteDatasource(t *testing.T) {
	t.Parallel()
	target := newExposition(t, "# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 5\n")
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{target.Addr}})
	am := alertmanagertest.Start(t, emptyAlertmanager)
	h := newHook(t)
	const expr = `queue_depth > 3`
	a := startAlertd(t, routes(h, am, ""), map[string]string{"rules.yml": `
groups:
  - name: queue
    rules:
      - alert: QueueTooDeep
        expr: ` + expr + `
        labels:
          severity: page
        annotations:
          summary: "Queue {{ $labels.queue }} on {{ $labels.instance }} holds {{ $value }} items"
          runbook_url: https://runbooks.example/queue
`}, func(o *Options) { o.DatasourceURL = prom.URL })

	p := h.wait(t, "QueueTooDeep", "firing", 60*time.Second)
	al, ok := a.alert(t, "QueueTooDeep", SourceRule)
	require.True(t, ok)
	labels := map[string]string{"alertname": "QueueTooDeep", "instance": target.Addr, "job": "modelmon", "queue": "orders", "severity": "page"}
	annotations := map[string]string{
		"summary":     "Queue orders on " + target.Addr + " holds 5 items",
		"runbook_url": "https://runbooks.example/queue",
	}
	alert := payloadAlert{
		Status:       "firing",
		Labels:       labels,
		Annotations:  annotations,
		StartsAt:     al.StartsAt.UTC(),
		GeneratorURL: generator(expr),
		Fingerprint:  fingerprint(labels),
	}
	require.Equal(t, payload{
		Version:            "4",
		GroupKey:           `{}:{alertname="QueueTooDeep"}`,
		Status:             "firing",
		Receiver:           "hook",
		NotificationReason: "first notification",
		RouteLabels:        map[string]string{},
		GroupLabels:        map[string]string{"alertname": "QueueTooDeep"},
		CommonLabels:       labels,
		CommonAnnotations:  annotations,
		ExternalURL:        externalURL.String(),
		Alerts:             []payloadAlert{alert},
	}.UTC(), p.UTC())
	require.WithinDuration(t, time.Now(), al.StartsAt, time.Minute)
	requireInAlertmanager(t, am, alert)

	// The condition no longer holds: the webhook gets the resolved alert,
	// Alertmanager stops listing it.
	target.set("# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 1\n")
	p = h.wait(t, "QueueTooDeep", "resolved", 60*time.Second)
	require.Len(t, p.Alerts, 1)
	r := p.Alerts[0]
	require.Equal(t, "resolved", r.Status)
	require.True(t, r.EndsAt.After(alert.StartsAt), "endsAt %s not after startsAt %s", r.EndsAt, alert.StartsAt)
	require.False(t, r.EndsAt.After(time.Now()), "endsAt %s is in the future", r.EndsAt)
	r.EndsAt, alert.Status = time.Time{}, "resolved"
	require.Equal(t, alert, payload{Alerts: []payloadAlert{r}}.UTC().Alerts[0])
	require.Equal(t, `{}:{alertname="QueueTooDeep"}`, p.GroupKey)
	require.Equal(t, labels, p.CommonLabels)
	require.Eventually(t, func() bool {
		got, err := am.Alerts(t.Context())
		return err == nil && len(got) == 0
	}, 30*time.Second, 20*time.Millisecond, "the alert never resolved in Alertmanager")

	al, ok = a.alert(t, "QueueTooDeep", SourceRule)
	require.True(t, ok)
	require.Equal(t, "resolved", al.State)
	acts := actions(al.History)
	require.Equal(t, []string{"intake/received", "route/routed"}, acts[:2])
	require.Contains(t, acts, "notify/notified")
	require.Contains(t, acts, "intake/resolved")
	v, ok := metric(t, a.Registry(), "alertd_datasource_up")
	require.True(t, ok)
	require.Equal(t, 1.0, v)
	h.checkWire(t)
}

// failingModelServer is a model server that fails every prediction.
func failingModelServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"model not loaded"}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The embedded engine scrapes a real sidecar in front of a failing model
// server; the rule on modelmon_prediction_errors_total fires and reaches the
// webhook and a real Alertmanager.
func TestEmbeddedScrapesSidecar(t *testing.T) {
	t.Parallel()
	addrs := []string{"127.0.0.1:0"}
	webCfg := ""
	e, err := exporter.New(exporter.Options{
		ProxyListenAddress:     "127.0.0.1:0",
		Proxy:                  exporter.ProxyOptions{Upstream: failingModelServer(t), Timeout: 5 * time.Second},
		Web:                    &toolkit.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &webCfg},
		DisableExporterMetrics: true,
	})
	require.NoError(t, err)
	require.NoError(t, e.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, e.Stop(ctx))
	})
	for range 3 {
		code, _ := post(t, "http://"+e.ProxyAddr()+"/v1/models/fraud:predict", "application/json", `{"instances":[[1,2]]}`)
		require.Equal(t, http.StatusServiceUnavailable, code)
	}

	am := alertmanagertest.Start(t, emptyAlertmanager)
	h := newHook(t)
	const expr = `sum by (model) (modelmon_prediction_errors_total{reason="upstream_5xx"}) > 0`
	a := startAlertd(t, routes(h, am, `
scrape_configs:
  - job_name: sidecars
    scrape_interval: 1s
    static_configs:
      - targets: ["`+e.WebAddr()+`"]
`), map[string]string{"rules.yml": `
groups:
  - name: serving
    rules:
      - alert: ModelServingErrors
        expr: ` + expr + `
        labels:
          severity: page
        annotations:
          summary: "Model {{ $labels.model }} failed {{ $value }} predictions"
`}, nil)

	p := h.wait(t, "ModelServingErrors", "firing", 60*time.Second)
	al, ok := a.alert(t, "ModelServingErrors", SourceRule)
	require.True(t, ok)
	labels := map[string]string{"alertname": "ModelServingErrors", "model": "fraud", "severity": "page"}
	annotations := map[string]string{"summary": "Model fraud failed 3 predictions"}
	alert := payloadAlert{
		Status:       "firing",
		Labels:       labels,
		Annotations:  annotations,
		StartsAt:     al.StartsAt.UTC(),
		GeneratorURL: generator(expr),
		Fingerprint:  fingerprint(labels),
	}
	require.Equal(t, payload{
		Version:            "4",
		GroupKey:           `{}:{alertname="ModelServingErrors"}`,
		Status:             "firing",
		Receiver:           "hook",
		NotificationReason: "first notification",
		RouteLabels:        map[string]string{},
		GroupLabels:        map[string]string{"alertname": "ModelServingErrors"},
		CommonLabels:       labels,
		CommonAnnotations:  annotations,
		ExternalURL:        externalURL.String(),
		Alerts:             []payloadAlert{alert},
	}.UTC(), p.UTC())
	requireInAlertmanager(t, am, alert)
	require.Equal(t, "3", al.Value)
	h.checkWire(t)

	// The scraped series are in the embedded TSDB.
	code, r := apiGet(t, a.URL+`/api/v1/query?query=`+url.QueryEscape(`up{job="sidecars"}`))
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"`+e.WebAddr()+`","job":"sidecars"},"value":[0,"1"]}]}`,
		zeroTimestamps(t, r.Data))
}

// A real Prometheus lists alertd under alerting.alertmanagers: its alert
// enters alertd's pipeline with source "prometheus" and a history, and
// reaches the webhook.
func TestPrometheusSendsAlerts(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	dir := t.TempDir()
	ruleFile := filepath.Join(dir, "prometheus.rules.yml")
	require.NoError(t, os.WriteFile(ruleFile, []byte(`
groups:
  - name: prom
    rules:
      - alert: PrometheusSays
        expr: vector(1)
        labels:
          severity: warn
        annotations:
          summary: "Sent by a real Prometheus with value {{ $value }}"
`), 0o644))
	prom := prometheustest.Start(t, prometheustest.Options{
		RuleFiles:     []string{ruleFile},
		Alertmanagers: []string{a.Addr()},
		Args:          []string{"--rules.alert.resend-delay=1s"},
	})

	p := h.wait(t, "PrometheusSays", "firing", 60*time.Second)
	var al alertJSON
	require.Eventually(t, func() bool {
		var ok bool
		al, ok = a.alert(t, "PrometheusSays", SourcePrometheus)
		return ok && len(al.History) >= 4
	}, 30*time.Second, 20*time.Millisecond)
	labels := map[string]string{"alertname": "PrometheusSays", "severity": "warn"}
	annotations := map[string]string{"summary": "Sent by a real Prometheus with value 1"}
	require.Equal(t, model.LabelSet{"alertname": "PrometheusSays", "severity": "warn"}, al.Labels)
	require.Equal(t, model.LabelSet{"summary": "Sent by a real Prometheus with value 1"}, al.Annotations)
	require.Equal(t, "firing", al.State)
	require.Equal(t, "NaN", al.Value)
	require.Contains(t, al.GeneratorURL, "/graph?g0.expr=vector%281%29&g0.tab=1")
	// Prometheus sends endsAt four resend delays ahead.
	require.True(t, al.EndsAt.After(time.Now()), "endsAt %s", al.EndsAt)
	require.Equal(t, []string{"intake/received", "route/routed", "incident/grouped", "notify/notified"}, actions(al.History)[:4])
	require.Contains(t, al.History[0].Reason, "posted to /api/v2/alerts by 127.0.0.1:")
	require.Contains(t, al.History[0].Reason, "(Prometheus/2.")
	require.Equal(t, "sent to hook via webhook[0]", al.History[3].Reason)

	require.Equal(t, payload{
		Version:            "4",
		GroupKey:           `{}:{alertname="PrometheusSays"}`,
		Status:             "firing",
		Receiver:           "hook",
		NotificationReason: "first notification",
		RouteLabels:        map[string]string{},
		GroupLabels:        map[string]string{"alertname": "PrometheusSays"},
		CommonLabels:       labels,
		CommonAnnotations:  annotations,
		ExternalURL:        externalURL.String(),
		Alerts: []payloadAlert{{
			Status:       "firing",
			Labels:       labels,
			Annotations:  annotations,
			StartsAt:     al.StartsAt.UTC(),
			GeneratorURL: al.GeneratorURL,
			Fingerprint:  fingerprint(labels),
		}},
	}.UTC(), p.UTC())

	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"alertd_alerts_received_total", []string{"source", "prometheus"}},
		{"alertd_intake_alerts_total", []string{"endpoint", "/api/v2/alerts"}},
	} {
		v, ok := metric(t, a.Registry(), m.name, m.labels...)
		require.True(t, ok, m.name)
		require.GreaterOrEqual(t, v, 1.0, m.name)
	}
	v, _ := metric(t, a.Registry(), "alertd_intake_alerts_invalid_total", "endpoint", "/api/v2/alerts")
	require.Zero(t, v)
	// Prometheus counts its alerts as sent and none failed. (It may drop
	// some it evaluates before discovering alertd.)
	am := `{alertmanager="http://` + a.Addr() + `/api/v2/alerts"}`
	code, body := get(t, prom.URL+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.GreaterOrEqual(t, sample(t, body, "prometheus_notifications_sent_total"+am), 1.0)
	require.Zero(t, sample(t, body, "prometheus_notifications_errors_total"+am))
	h.checkWire(t)
}

// While the remote data source is down, alertd keeps the rule's firing
// alert firing (no resolved notification), records "held" in its history,
// and raises AlertdDatasourceDown.
func TestDatasourceDown(t *testing.T) {
	t.Parallel()
	prom := prometheustest.Start(t, prometheustest.Options{})
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": `
groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels:
          severity: info
`}, func(o *Options) { o.DatasourceURL = prom.URL })

	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, v)

	prom.Stop()
	down := h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
	require.Len(t, down.Alerts, 1)
	labels := map[string]string{
		"alertname":  datasourceDownAlert,
		"severity":   "critical",
		"category":   "availability",
		"datasource": prom.URL,
	}
	require.Equal(t, labels, down.Alerts[0].Labels)
	require.Equal(t, "alertd cannot query its data source", down.Alerts[0].Annotations["summary"])
	require.Contains(t, down.Alerts[0].Annotations["description"], "Queries to "+prom.URL+" fail since ")
	require.Contains(t, down.Alerts[0].Annotations["description"], "connection refused")
	require.Equal(t, externalURL.String()+"/api/v1/rules", down.Alerts[0].GeneratorURL)
	require.Equal(t, fingerprint(labels), down.Alerts[0].Fingerprint)

	own, ok := a.alert(t, datasourceDownAlert, SourceAlertd)
	require.True(t, ok)
	require.Equal(t, "firing", own.State)
	v, _ = metric(t, a.Registry(), "alertd_datasource_up")
	require.Zero(t, v)

	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "AlwaysFiring", SourceRule)
		return ok && al.State == "firing" && slices.Contains(actions(al.History), "datasource/held")
	}, 30*time.Second, 20*time.Millisecond, "the rule's alert was never held")

	// Several evaluation intervals and more than the alert's original
	// validity (4 resend delays) pass: still firing, never resolved.
	require.Never(t, func() bool {
		return len(h.matching("AlwaysFiring", "resolved")) > 0
	}, 6*time.Second, 100*time.Millisecond, "a resolved notification went out while the data source was down")
	al, ok := a.alert(t, "AlwaysFiring", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State)
	require.True(t, al.EndsAt.After(time.Now()), "endsAt %s", al.EndsAt)
	held, _ := metric(t, a.Registry(), "alertd_datasource_held_alerts_total", "reason", "unavailable")
	require.GreaterOrEqual(t, held, 1.0)

	// The rule reports why it cannot evaluate, and alertd is fine.
	rule := findRule(t, a.rules(t), "AlwaysFiring")
	require.Equal(t, "err", rule.Health)
	require.Contains(t, rule.LastError, "connection refused")
	code, _ := get(t, a.URL+"/-/healthy")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, a.URL+"/-/ready")
	require.Equal(t, http.StatusOK, code)
	h.checkWire(t)
}

// sample returns the value of series in a text exposition.
func sample(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	t.Fatalf("%s is not exposed", series)
	return 0
}

// findRule returns the rule named name.
func findRule(t *testing.T, groups []groupJSON, name string) ruleJSON {
	t.Helper()
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Name == name {
				return r
			}
		}
	}
	t.Fatalf("no rule %s in %v", name, groups)
	return ruleJSON{}
}
