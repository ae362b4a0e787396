package collector

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

type fakeSource struct {
	models []ModelInfo
	queue  QueueStats
}

func (f fakeSource) Models() []ModelInfo      { return f.models }
func (f fakeSource) CaptureQueue() QueueStats { return f.queue }

func TestModelAndCaptureCollectors(t *testing.T) {
	src := fakeSource{
		models: []ModelInfo{{Name: "churn", Version: "3"}, {Name: "fraud", Version: "v7"}},
		queue:  QueueStats{Length: 2, Capacity: 10, Bytes: 300, MaxBytes: 1000},
	}
	e, err := NewExporter(map[string]bool{"model": true, "capture": true}, src, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"capture", "model"}, e.Names())
	want := `
# HELP modelmon_capture_queue_bytes The bytes of captured payloads waiting to be parsed.
# TYPE modelmon_capture_queue_bytes gauge
modelmon_capture_queue_bytes 300
# HELP modelmon_capture_queue_length The number of captured payloads waiting to be parsed.
# TYPE modelmon_capture_queue_length gauge
modelmon_capture_queue_length 2
# HELP modelmon_model_info Information about a model the sidecar serves; always 1. The version label is the version last seen in its traffic or configuration.
# TYPE modelmon_model_info gauge
modelmon_model_info{model="churn",version="3"} 1
modelmon_model_info{model="fraud",version="v7"} 1
# HELP modelmon_scrape_collector_success Whether a collector succeeded at this scrape (1) or failed (0).
# TYPE modelmon_scrape_collector_success gauge
modelmon_scrape_collector_success{collector="capture"} 1
modelmon_scrape_collector_success{collector="model"} 1
`
	require.NoError(t, testutil.CollectAndCompare(e, strings.NewReader(want),
		"modelmon_capture_queue_bytes", "modelmon_capture_queue_length", "modelmon_model_info", "modelmon_scrape_collector_success"))
}

type failing struct{ err error }

func (f failing) Update(context.Context, chan<- prometheus.Metric) error { return f.err }

// A failing collector marks itself failed; one with no data does not; the
// scrape goes on either way.
func TestCollectorFailure(t *testing.T) {
	e := &Exporter{
		collectors: map[string]Collector{"broken": failing{errors.New("boom")}, "empty": failing{ErrNoData}},
		logger:     nopLogger(),
		timeout:    1e9,
	}
	want := `
# HELP modelmon_scrape_collector_success Whether a collector succeeded at this scrape (1) or failed (0).
# TYPE modelmon_scrape_collector_success gauge
modelmon_scrape_collector_success{collector="broken"} 0
modelmon_scrape_collector_success{collector="empty"} 1
`
	require.NoError(t, testutil.CollectAndCompare(e, strings.NewReader(want), "modelmon_scrape_collector_success"))
}

func TestRegisteredAndDisabled(t *testing.T) {
	names := map[string]bool{}
	for _, r := range Registered() {
		names[r.Name] = r.EnabledByDefault
	}
	require.Equal(t, map[string]bool{"model": true, "capture": true, "drift": true}, names)
	e, err := NewExporter(map[string]bool{"model": false, "capture": true}, fakeSource{}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"capture"}, e.Names())
	require.Panics(t, func() { Register("model", true, NewModelCollector) })
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.Requests.WithLabelValues("a").Inc()
	m.Duration.WithLabelValues("a").Observe(0.1)
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
