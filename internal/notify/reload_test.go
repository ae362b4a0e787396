package notify

import (
	"testing"
	"testing/synctest"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
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
