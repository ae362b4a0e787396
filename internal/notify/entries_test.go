package notify

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// twoWebhooks loads a receiver r with two webhooks, tickets (entry 0)
// and audit (entry 1).
func twoWebhooks(t *testing.T, tickets, audit *receiver) *alertconfig.Config {
	t.Helper()
	return load(t, strings.ReplaceAll(`
route:
  receiver: r
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}, {url: "{{AUDIT}}"}]`, "{{AUDIT}}", audit.URL), tickets.URL)
}

// Each webhook_configs entry is delivered on its own, as in Alertmanager:
// while the receiver's first webhook answers 503, the second gets the
// notifications at once, and the first gets them, in order, once it is
// back.
func TestEntryDownHoldsBackNoOtherEntry(t *testing.T) {
	tickets, audit := newReceiver(t), newReceiver(t)
	tickets.setDown(true)
	cfg := twoWebhooks(t, tickets, audit)
	synctest.Test(t, func(t *testing.T) {
		var got notifications
		n := start(t, Options{Config: cfg, OnNotify: got.add})
		a := firing("alertname=A")
		require.NoError(t, n.Put(a))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{`r {alertname="A"} A:firing`}, audit.ordered())
		require.Positive(t, tickets.requestCount())

		time.Sleep(9 * time.Second)
		require.NoError(t, n.Put(newAlert("alertname=A", a.StartsAt, time.Now())))
		time.Sleep(51 * time.Second) // the next flush, at 1m30s
		synctest.Wait()
		require.Equal(t, []string{`r {alertname="A"} A:resolved`}, audit.ordered(), "not held back by tickets")
		require.Empty(t, tickets.ordered())
		st := n.Outbox().Stats()
		require.Equal(t, 2, st.Pending)
		require.Len(t, st.Lanes, 1)
		require.Equal(t, 0, st.Lanes[0].Entry)
		require.Equal(t, "unexpected status code 503: down", st.Lanes[0].LastError)

		tickets.setDown(false)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		require.Equal(t, []string{`r {alertname="A"} A:firing`, `r {alertname="A"} A:resolved`}, tickets.ordered(), "in order once back")
		require.Empty(t, audit.ordered())
		require.Zero(t, n.Outbox().Stats().Pending)
		var integrations []string
		for _, x := range got.get() {
			require.NoError(t, x.Err)
			integrations = append(integrations, x.Integration)
		}
		require.Equal(t, []string{"webhook[1]", "webhook[1]", "webhook[0]", "webhook[0]"}, integrations)
	})
}

// Messages pending for both webhooks when alertd stops are delivered
// after the restart, each webhook's in order, the one that is back
// without waiting for the one still down. Messages stored before they
// carried their entry (an older alertd) too: their entry comes from the
// payload.
func TestRestartWithEntriesPending(t *testing.T) {
	for _, tc := range []struct {
		name     string
		oldStore bool
	}{
		{name: "stored with entries"},
		{name: "stored without entries, by an older alertd", oldStore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tickets, audit := newReceiver(t), newReceiver(t)
			tickets.setDown(true)
			audit.setDown(true)
			cfg := twoWebhooks(t, tickets, audit)
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				first, err := New(Options{Config: cfg, StoragePath: dir, Registerer: prometheus.NewRegistry()})
				require.NoError(t, err)
				first.Run()
				a := firing("alertname=A")
				require.NoError(t, first.Put(a))
				time.Sleep(40 * time.Second)
				require.NoError(t, first.Put(newAlert("alertname=A", a.StartsAt, time.Now())))
				time.Sleep(51 * time.Second)
				synctest.Wait()
				st := first.Outbox().Stats()
				require.Equal(t, 4, st.Pending)
				require.Len(t, st.Lanes, 2, "both webhooks have messages pending")
				first.Stop()
				if tc.oldStore {
					stripEntries(t, filepath.Join(dir, "outbox.db"))
				}

				audit.setDown(false)
				second := start(t, Options{Config: cfg, StoragePath: dir})
				time.Sleep(5 * time.Minute)
				synctest.Wait()
				require.Equal(t, []string{`r {alertname="A"} A:firing`, `r {alertname="A"} A:resolved`}, audit.ordered())
				require.Empty(t, tickets.ordered())
				require.Equal(t, 2, second.Outbox().Stats().Pending)

				tickets.setDown(false)
				time.Sleep(10 * time.Minute)
				synctest.Wait()
				require.Equal(t, []string{`r {alertname="A"} A:firing`, `r {alertname="A"} A:resolved`}, tickets.ordered())
				require.Empty(t, audit.ordered(), "each delivered once")
				require.Zero(t, second.Outbox().Stats().Pending)
			})
		})
	}
}

// stripEntries rewrites the pending messages in the closed outbox file at
// path as an alertd that had no Message.Entry stored them.
func stripEntries(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("pending"))
		old := map[string][]byte{}
		require.NoError(t, b.ForEach(func(k, v []byte) error {
			old[string(k)] = bytes.Clone(v)
			return nil
		}))
		require.NotEmpty(t, old)
		for k, v := range old {
			var fields map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(v, &fields))
			require.Contains(t, fields, "entry")
			delete(fields, "entry")
			v, err := json.Marshal(fields)
			require.NoError(t, err)
			require.NoError(t, b.Put([]byte(k), v))
		}
		return nil
	}))
}
