package notify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/outbox"
)

func TestApplyConfig(t *testing.T) {
	rcv := newReceiver(t)
	before := load(t, `
route:
  receiver: a
  group_by: [alertname]
  group_wait: 30s
receivers:
  - name: a
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)
	after := load(t, `
route:
  receiver: b
  group_by: [alertname]
  group_wait: 30s
receivers:
  - name: b
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)

	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: before})
		require.NoError(t, n.Put(firing("alertname=A")))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{`a {alertname="A"} A:firing`}, rcv.summaries())

		// A configuration that can't be built leaves the running one.
		require.EqualError(t, n.ApplyConfig(&alertconfig.Config{Route: &amconfig.Route{Receiver: "missing"}, Receivers: before.Receivers}),
			`couldn't build notification pipeline: undefined receiver "missing" used in route`)
		require.EqualError(t, n.ApplyConfig(&alertconfig.Config{}), "couldn't build notification pipeline: no route configured")
		require.NoError(t, n.Put(firing("alertname=B")))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{`a {alertname="B"} B:firing`}, rcv.summaries())

		// The new routing takes the stored alerts, old enough to be sent
		// at once to the receiver that never had them.
		require.NoError(t, n.ApplyConfig(after))
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, []string{`b {alertname="A"} A:firing`, `b {alertname="B"} B:firing`}, rcv.summaries())

		// Applying it again rebuilds the groups, and the notification log
		// keeps them from being sent twice.
		require.NoError(t, n.ApplyConfig(after))
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Empty(t, rcv.summaries())

		n.Stop()
		require.ErrorIs(t, n.ApplyConfig(after), errStopped)
		require.ErrorIs(t, n.Put(firing("alertname=C")), errStopped)
	})
}

// outboxSeries returns the alertd_outbox_ series of g as
// "name{receiver/integration/entry}" with their values (counters and
// gauges; a histogram's count).
func outboxSeries(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "alertd_outbox_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			k := fmt.Sprintf("%s{%s/%s/%s}", mf.GetName(), ls["receiver"], ls["integration"], ls["entry"])
			out[k] += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

// lanesOf returns the receiver/integration/entry of the series of the
// metric name in outboxSeries' s.
func lanesOf(s map[string]float64, name string) []string {
	var out []string
	for k := range s {
		if lane, ok := strings.CutPrefix(k, name+"{"); ok {
			out = append(out, strings.TrimSuffix(lane, "}"))
		}
	}
	slices.Sort(out)
	return out
}

// A reload that removes a receiver, or a receiver's second webhook,
// deletes their outbox series, as Alertmanager deletes a removed
// receiver's notification metrics; a removed receiver whose webhook is
// down keeps its series while its notification waits for its retry, its
// queue depth showing it, until the retry finds the receiver gone and
// dead-letters it. Its dead letters gauge stays then, with the dead
// letter.
func TestApplyConfigDeletesRemovedReceiversSeries(t *testing.T) {
	rcv, down := newReceiver(t), newReceiver(t)
	down.setDown(true)
	before := load(t, strings.ReplaceAll(`
route:
  receiver: keep
  group_by: [alertname]
  group_wait: 1s
  routes:
    - receiver: busy
      matchers: [alertname="B"]
receivers:
  - name: keep
    webhook_configs: [{url: "{{URL}}"}, {url: "{{URL}}"}]
  - name: gone
    webhook_configs: [{url: "{{URL}}"}]
  - name: busy
    webhook_configs: [{url: "{{DOWN}}"}]`, "{{DOWN}}", down.URL), rcv.URL)
	after := load(t, `
route:
  receiver: keep
  group_by: [alertname]
  group_wait: 1s
receivers:
  - name: keep
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)

	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := start(t, Options{Config: before, Registerer: reg, Outbox: outbox.Options{InitialBackoff: time.Minute, MaxBackoff: time.Minute}})
		require.NoError(t, n.Put(firing("alertname=B")))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Positive(t, down.requestCount())
		s := outboxSeries(t, reg)
		require.Equal(t, 1.0, s["alertd_outbox_queue_depth{busy/webhook/0}"], "waits for its retry")
		all := []string{"busy/webhook/0", "gone/webhook/0", "keep/webhook/0", "keep/webhook/1"}
		require.Equal(t, all, lanesOf(s, "alertd_outbox_queue_depth"))

		require.NoError(t, n.ApplyConfig(after))
		s = outboxSeries(t, reg)
		lanes := []string{"busy/webhook/0", "keep/webhook/0"}
		for _, name := range []string{"alertd_outbox_queue_depth", "alertd_outbox_oldest_pending_age_seconds", "alertd_outbox_dead_letters", "alertd_outbox_deliveries_total"} {
			require.Equal(t, lanes, lanesOf(s, name), "%s: gone and keep's second webhook removed, busy pending", name)
		}
		for _, name := range []string{"alertd_outbox_messages_enqueued_total", "alertd_outbox_duplicates_total", "alertd_outbox_delivery_failures_total", "alertd_outbox_delivery_duration_seconds"} {
			require.Equal(t, []string{"busy/webhook/", "keep/webhook/"}, lanesOf(s, name), name)
		}
		require.Equal(t, 1.0, s["alertd_outbox_queue_depth{busy/webhook/0}"], "still waits")
		require.Equal(t, 1.0, s["alertd_outbox_deliveries_total{busy/webhook/0}"], "its retried attempt")

		time.Sleep(2 * time.Minute)
		synctest.Wait()
		require.Len(t, n.Outbox().DeadLetters(), 1)
		s = outboxSeries(t, reg)
		for _, name := range []string{"alertd_outbox_queue_depth", "alertd_outbox_oldest_pending_age_seconds", "alertd_outbox_deliveries_total"} {
			require.Equal(t, []string{"keep/webhook/0"}, lanesOf(s, name), "%s: busy's message dead-lettered", name)
		}
		require.Equal(t, lanes, lanesOf(s, "alertd_outbox_dead_letters"))
		require.Equal(t, 1.0, s["alertd_outbox_dead_letters{busy/webhook/0}"])
		require.Equal(t, []string{"keep/webhook/"}, lanesOf(s, "alertd_outbox_messages_enqueued_total"))
	})
}
