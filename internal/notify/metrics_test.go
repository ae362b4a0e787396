package notify

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestMetrics checks the alertd_ metrics exist from the start, with a
// child at 0 for each integration type and failure reason.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := New(Options{Config: load(t, "", ""), Registerer: reg})
	require.NoError(t, err)
	defer n.Stop()

	golden := filepath.Join("testdata", "metrics.prom")
	if *update {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		var b bytes.Buffer
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "alertd_") {
				_, err := expfmt.MetricFamilyToText(&b, mf)
				require.NoError(t, err)
			}
		}
		require.NoError(t, os.WriteFile(golden, b.Bytes(), 0o644))
	}
	f, err := os.Open(golden)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, testutil.GatherAndCompare(reg, f,
		"alertd_notifications_total",
		"alertd_notifications_failed_total",
		"alertd_notification_requests_total",
		"alertd_notification_requests_failed_total",
		"alertd_notification_latency_seconds",
	))

	// Alertmanager's own metrics keep their names.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, name := range []string{"alertmanager_dispatcher_aggregation_groups", "alertmanager_nflog_queries_total", "alertmanager_alerts_per_alert_limit"} {
		require.True(t, slices.Contains(names, name), "%s is not registered", name)
	}

	// Registering twice is an error, not a panic, and registers nothing.
	_, err = New(Options{Config: load(t, "", ""), Registerer: reg})
	require.ErrorContains(t, err, "couldn't register metrics: duplicate metrics collector registration attempted")
	after, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, after, len(mfs))
}
