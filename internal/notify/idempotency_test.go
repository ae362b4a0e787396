package notify

import (
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// A crash loses the notification log's snapshot (written every 15 minutes
// and on Stop): the restarted notifier flushes the group again, with the
// same idempotency key, and the outbox drops it. A repeat after
// repeat_interval gets a new key.
func TestIdempotencyAcrossLostNotificationLog(t *testing.T) {
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
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		a := firing("alertname=A")
		first, err := New(Options{Config: cfg, StoragePath: dir, Registerer: prometheus.NewRegistry()})
		require.NoError(t, err)
		first.Run()
		require.NoError(t, first.Put(a))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
		keys := rcv.idempotencyKeys()
		require.Len(t, keys, 1)
		require.Len(t, keys[0], 32)
		first.Stop()
		require.NoError(t, os.Remove(filepath.Join(dir, "nflog")), "as if killed before the snapshot")

		second := start(t, Options{Config: cfg, StoragePath: dir})
		require.NoError(t, second.Put(a))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		require.Empty(t, rcv.summaries(), "same group, alerts and interval: same key, not sent again")

		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, []string{"r {} A:firing"}, rcv.summaries(), "the repeat is a new notification")
		keys = rcv.idempotencyKeys()
		require.Len(t, keys, 2)
		require.NotEqual(t, keys[0], keys[1])
	})
}

// A group notified firing before a crash lost the notification log still
// gets its resolve when the first thing the restarted notifier sees of it
// is the resolved alert (Alertmanager's DedupStage alone would skip it).
func TestResolveAfterLostNotificationLog(t *testing.T) {
	rcv := newReceiver(t)
	cfg := load(t, `
route:
  receiver: r
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		a := firing("alertname=A")
		first, err := New(Options{Config: cfg, StoragePath: dir, Registerer: prometheus.NewRegistry()})
		require.NoError(t, err)
		first.Run()
		require.NoError(t, first.Put(a))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
		first.Stop()
		require.NoError(t, os.Remove(filepath.Join(dir, "nflog")), "as if killed before the snapshot")

		second, err := New(Options{Config: cfg, StoragePath: dir})
		require.NoError(t, err)
		t.Cleanup(second.Stop)
		require.NoError(t, second.Put(newAlert("alertname=A", a.StartsAt, time.Now())))
		second.Run()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{"r {} A:resolved"}, rcv.summaries())

		// Resolved and notified: a group never notified is not.
		require.NoError(t, second.Put(newAlert("alertname=B", time.Now().Add(-time.Minute), time.Now())))
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		require.Empty(t, rcv.summaries())
	})
}
