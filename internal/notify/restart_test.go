package notify

import (
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
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
