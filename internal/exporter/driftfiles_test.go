package exporter

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// A write of the drift windows that fails midway (here, on a full disk)
// leaves the last file whole, with nothing temporary beside it, and a
// sidecar that starts after it goes on from what that file held.
func TestDriftWindowsSurviveAFailedWrite(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	ref := writeReference(t, 5000)
	opts := func(o *Options) {
		o.StoragePath = storage
		o.Drift = driftOptions(ref)
	}
	values := func(e *Exporter) float64 {
		return metricValue(t, e, "modelmon_feature_drift_window_values", map[string]string{"model": "fraud", "feature": "amount", "window": "1h"})
	}
	path := filepath.Join(storage, "drift", "fraud.windows")

	e := startExporter(t, up.URL, opts)
	pushRecords(t, e, "fraud", 300, 0, 9)
	require.NoError(t, e.saveDrift())
	pushRecords(t, e, "fraud", 100, 0, 10)
	err := statefiletest.FailWrites(t, e.saveDrift, path)
	require.ErrorContains(t, err, `model "fraud": `)
	require.ErrorContains(t, err, "no space left on device")

	// What a crash now leaves: the 300 values of the last whole file.
	after := startExporter(t, up.URL, opts)
	pushRecords(t, after, "fraud", 1, 0, 11)
	require.Equal(t, 301.0, values(after))
}

// A learned reference whose write fails (here, on a full disk) leaves no
// file, torn or whole, and nothing temporary: the model goes without drift
// scores, as with any failure to learn, and a sidecar that starts after it
// learns again rather than failing on half a profile.
func TestDriftLearnedReferenceFailedWrite(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n"), 0o644))
	opts := func(o *Options) {
		o.ConfigFile = cfg
		o.StoragePath = storage
		o.Drift = driftOptions("")
		o.Drift.LearnSamples = 500
	}
	learned := func(e *Exporter) float64 {
		return metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": "fraud", "source": "learned"})
	}
	path := filepath.Join(storage, "drift", "fraud.profile.json")

	logger, logs := testLogger()
	e := startExporter(t, up.URL, func(o *Options) { opts(o); o.Logger = logger })
	pushRecords(t, e, "fraud", 499, 0, 5)
	require.NoError(t, statefiletest.FailWrites(t, func() error {
		pushRecords(t, e, "fraud", 1, 0, 6) // the 500th: it learns
		return nil
	}, path))
	require.Contains(t, logs.String(), `msg="Could not learn a drift reference" component=drift model=fraud records=500`)
	require.Contains(t, logs.String(), "no space left on device")
	require.Zero(t, learned(e))

	after := startExporter(t, up.URL, opts)
	pushRecords(t, after, "fraud", 499, 0, 7)
	require.Zero(t, learned(after), "it learns again")
	pushRecords(t, after, "fraud", 1, 0, 8)
	require.Equal(t, 1.0, learned(after))
	require.FileExists(t, path)
}
