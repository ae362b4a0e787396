package alertd

import (
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
