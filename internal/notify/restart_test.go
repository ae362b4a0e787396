package notify

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

func TestRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		persist bool
	}{
		{name: "the snapshot keeps a notified group from being sent again", persist: true},
		{name: "in memory only, the group is sent again", persist: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t)
			cfg := load(t, `
route:
  receiver: r
  group_wait: 30s
  group_interval: 1m
  repeat_interval: 1h
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)
			dir := ""
			if tc.persist {
				dir = t.TempDir()
			}
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				a := firing("alertname=A")
				first, err := New(Options{Config: cfg, StoragePath: dir, Registerer: prometheus.NewRegistry()})
				require.NoError(t, err)
				first.Run()
				require.NoError(t, first.Put(a))
				time.Sleep(31 * time.Second)
				synctest.Wait()
				require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
				first.Stop()
				first.Stop() // idempotent
				if tc.persist {
					require.FileExists(t, filepath.Join(dir, "nflog"))
				}

				time.Sleep(time.Minute)
				second := start(t, Options{Config: cfg, StoragePath: dir})
				require.NoError(t, second.Put(a)) // its source sends it again
				time.Sleep(5 * time.Minute)
				synctest.Wait()
				if !tc.persist {
					require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
					return
				}
				require.Empty(t, rcv.summaries(), "notified before the restart, unchanged, repeat_interval not passed")

				// The restarted group flushes every minute from 1m31s: the
				// first flush after repeat_interval sends it again.
				time.Sleep(time.Until(begin.Add(time.Hour + 30*time.Second)))
				synctest.Wait()
				require.Empty(t, rcv.summaries())
				time.Sleep(time.Minute)
				synctest.Wait()
				require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
			})
		})
	}
}

// The notification log's snapshot is written as alertd's other state
// files are (statefile.WriteFile): a write that fails, here on a full
// disk, leaves the last snapshot as it was and nothing beside it, where
// Alertmanager's left a temporary file of a random name at each attempt.
// Those an earlier alertd left are removed at the next start; other files
// named like the snapshot are not.
func TestSnapshotWriteFails(t *testing.T) {
	rcv := newReceiver(t)
	cfg := load(t, `
route:
  receiver: r
  group_wait: 30s
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)
	dir := t.TempDir()
	snapshot := filepath.Join(dir, "nflog")
	leftover := filepath.Join(dir, "nflog.5c3f0e2a9d71b6e4")
	kept := []string{filepath.Join(dir, "nflog.bak"), filepath.Join(dir, "nflog.tmp.old")}
	for _, p := range append([]string{leftover}, kept...) {
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
	}
	synctest.Test(t, func(t *testing.T) {
		logs := &prometheustest.SyncBuffer{}
		n, err := New(Options{Config: cfg, StoragePath: dir, Registerer: prometheus.NewRegistry(),
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		require.NoError(t, err)
		require.NoFileExists(t, leftover, "what a failed snapshot of an earlier alertd left is still there")
		for _, p := range kept {
			require.FileExists(t, p)
		}
		n.Run()
		require.NoError(t, n.Put(firing("alertname=A")))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())

		// Stop writes the snapshot, which fails.
		require.NoError(t, statefiletest.FailWrites(t, func() error { n.Stop(); return nil }, snapshot))
		require.Contains(t, logs.String(), `msg="Creating shutdown snapshot failed"`)
		require.Contains(t, logs.String(), "no space left on device")
	})
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"nflog.bak", "nflog.tmp.old", "outbox.db"}, names, "a failed snapshot left a file")
}
