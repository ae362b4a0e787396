package exporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// A real Prometheus scrapes the sidecar; PromQL over its HTTP API returns the
// number of requests the test sent, from the counters and from the native
// latency histogram.
func TestScrapedByPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	e := startExporter(t, up.URL, nil)
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, NativeHistograms: true})

	const n = 37
	proxy := "http://" + e.ProxyAddr()
	for i := 0; i < n; i++ {
		st, _ := do(t, "POST", proxy+"/v1/models/fraud:predict", `{"instances":[{"amount":1},{"amount":2}]}`)
		require.Equal(t, 200, st)
	}
	st, _ := do(t, "POST", proxy+"/v1/models/fraud:predict", `{}`, "X-Status", "503")
	require.Equal(t, 503, st)
	waitIdle(t, e)

	prom.WaitFor(t, `sum(modelmon_requests_total{job="modelmon"})`, n+1, 30*time.Second)
	prom.WaitFor(t, `sum(modelmon_predictions_total)`, 2*n, 30*time.Second)
	prom.WaitFor(t, `sum(modelmon_prediction_errors_total{reason="upstream_5xx"})`, 1, 30*time.Second)
	prom.WaitFor(t, `histogram_count(sum(modelmon_prediction_duration_seconds))`, n+1, 30*time.Second)
	prom.WaitFor(t, `up{job="modelmon"}`, 1, 30*time.Second)
}
