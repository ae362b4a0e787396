package alertd

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// A scripted run with alertd's features on, in remote mode, exposes the
// families, types, help and label sets in testdata/exposition.prom: a rule
// that fires and pages, a posted alert a silence suppresses, a verdict,
// deployments, an anomaly detector, the outbox, an escalation policy and
// an action. `make checkmetrics` lints it with promtool, and
// TestMetricsCovered (internal/readmetest) checks that every family the
// README's metrics tables name is in it or in another linted exposition.
// alertd runs on real time, so every value is masked (0); other tests
// check the values.
func TestExpositionGolden(t *testing.T) {
	t.Parallel()
	prom := prometheustest.Start(t, prometheustest.Options{})
	h := newHook(t)
	clock := &testClock{}
	a := startAlertd(t, routes(h, nil, `
anomaly_detectors:
  - name: sawtooth
    expr: vector(time() % 5)
    algorithm: mad
    interval: 1s
    min_history: 2
    history: 0s
escalation_policies:
  - name: pager
    matchers: ['alertname="AlwaysFiring"']
    steps:
      - notify: [hook]
actions:
  - name: retrain
    type: webhook
    url: http://127.0.0.1:1/
    secret: s
    trigger:
      matchers: ['action="retrain"']
`), map[string]string{"rules.yml": `
groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`}, func(o *Options) {
		o.DatasourceURL = prom.URL
		o.Now = clock.Now
	})

	// The detector has scored the series, with its band. (First: the
	// runner waits on real timers for the next interval by the clock, and
	// the clock skips a minute below.)
	for _, name := range []string{"alertd_anomaly_score", "alertd_anomaly_expected", "alertd_anomaly_band_lower", "alertd_anomaly_band_upper"} {
		require.Eventually(t, func() bool {
			_, ok := metric(t, a.Registry(), name, "detector", "sawtooth")
			return ok
		}, 60*time.Second, 20*time.Millisecond, "the anomaly detector never gave %s", name)
	}

	// A rule's alert fires and pages; an operator confirms it, and a
	// minute later the precision is computed again.
	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)
	firing, ok := a.alert(t, "AlwaysFiring", SourceRule)
	require.True(t, ok)
	require.Eventually(t, func() bool {
		n, _ := metric(t, a.Registry(), "alertd_pages_total")
		return n > 0
	}, 30*time.Second, 20*time.Millisecond)
	code, body := post(t, a.URL+"/api/v1/alerts/"+firing.Fingerprint+"/feedback", "application/json", `{"verdict":"true_positive","by":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	clock.skip(time.Minute)
	require.Eventually(t, func() bool {
		_, ok := metric(t, a.Registry(), "alertd_alert_precision_ratio")
		return ok
	}, 30*time.Second, 20*time.Millisecond, "alertd_alert_precision_ratio was never computed")

	// A posted alert a silence keeps from notifications.
	createSilence(t, a, `{"matchers":["alertname=\"Noisy\""],"duration":"1h","createdBy":"alice","comment":"noisy"}`)
	postAlert(t, a, `{"alertname":"Noisy","model":"fraud"}`)
	require.Eventually(t, func() bool {
		n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "silence")
		return n == 1
	}, 30*time.Second, 20*time.Millisecond)

	// Deployments: a change that failed and the one that restored it.
	now := clock.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, body := range []string{
		fmt.Sprintf(`{"model":"fraud","version":"v2","environment":"prod","commit_time":%q,"time":%q,"outcome":"failure"}`, ts(-2*time.Hour), ts(-time.Hour)),
		fmt.Sprintf(`{"model":"fraud","version":"v3","environment":"prod","commit_time":%q,"time":%q}`, ts(-time.Hour), ts(-30*time.Minute)),
	} {
		code, resp := post(t, a.URL+"/api/v1/deployments", "application/json", body)
		require.Equal(t, http.StatusOK, code, resp)
	}

	writeGolden(t, "testdata/exposition.prom", maskedExposition(t, a))
}

// maskedExposition is the text exposition of alertd's own families (those
// of the Prometheus and Alertmanager parts it embeds keep their projects'
// names, and some of those promtool flags), sorted by name, with every
// value 0, the build's labels "masked" and the test's directory "DIR".
func maskedExposition(t *testing.T, a *testAlertd) string {
	t.Helper()
	mfs, err := a.Registry().Gather()
	require.NoError(t, err)
	slices.SortFunc(mfs, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	var b bytes.Buffer
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "alertd_") {
			continue
		}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				v := strings.ReplaceAll(lp.GetValue(), a.Dir, "DIR")
				if name == "alertd_build_info" {
					v = "masked"
				}
				lp.Value = &v
			}
			zero(m)
		}
		_, err := expfmt.MetricFamilyToText(&b, mf)
		require.NoError(t, err)
	}
	return b.String()
}

// zero sets every value of m to 0.
func zero(m *dto.Metric) {
	var z float64
	var n uint64
	switch {
	case m.Gauge != nil:
		m.Gauge.Value = &z
	case m.Counter != nil:
		m.Counter.Value, m.Counter.CreatedTimestamp, m.Counter.Exemplar = &z, nil, nil
	case m.Untyped != nil:
		m.Untyped.Value = &z
	case m.Histogram != nil:
		hg := m.Histogram
		hg.SampleSum, hg.SampleCount, hg.SampleCountFloat, hg.CreatedTimestamp = &z, &n, nil, nil
		for _, bk := range hg.Bucket {
			bk.CumulativeCount, bk.CumulativeCountFloat, bk.Exemplar = &n, nil, nil
		}
	case m.Summary != nil:
		m.Summary.SampleSum, m.Summary.SampleCount, m.Summary.CreatedTimestamp = &z, &n, nil
		for _, q := range m.Summary.Quantile {
			q.Value = &z
		}
	}
	m.TimestampMs = nil
}

// writeGolden compares got with the golden file at path, which go test
// -update rewrites.
func writeGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test -update")
	require.Equal(t, string(want), got, fmt.Sprintf("exposition differs from %s (go test -update rewrites it)", path))
}
