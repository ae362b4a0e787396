package notify

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/provider"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// losingSource is the alert store as a dispatcher sees it, except that the
// first resolved update of each alert never reaches the dispatcher: what
// happens when the dispatcher's ingestion goroutines insert a firing update
// after the resolve that followed it.
type losingSource struct {
	provider.Alerts

	mu   sync.Mutex
	lost []string
}

func (s *losingSource) SlurpAndSubscribe(name string) ([]*alert.Alert, provider.AlertIterator) {
	initial, it := s.Alerts.SlurpAndSubscribe(name)
	ch, done := make(chan *provider.Alert), make(chan struct{})
	go func() {
		defer close(ch)
		for {
			select {
			case a, ok := <-it.Next():
				if !ok {
					return
				}
				if a.Data.Resolved() && s.lose(a.Data) {
					continue
				}
				select {
				case ch <- a:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return initial, &losingIterator{AlertIterator: provider.NewAlertIterator(ch, done, nil), inner: it}
}

// lose reports whether a's update is the first resolved one of its alert.
func (s *losingSource) lose(a *alert.Alert) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp := a.Fingerprint().String()
	for _, l := range s.lost {
		if l == fp {
			return false
		}
	}
	s.lost = append(s.lost, fp)
	return true
}

type losingIterator struct {
	provider.AlertIterator
	inner provider.AlertIterator
}

func (it *losingIterator) Close() {
	it.AlertIterator.Close()
	it.inner.Close()
}

// A resolve that an aggregation group missed is re-delivered from the alert
// store within reconcileInterval, and notified at the group's next flush;
// an alert whose group is up to date is never re-delivered.
func TestReconcileRedeliversMissedResolve(t *testing.T) {
	rcv := newReceiver(t)
	cfg := load(t, `
route:
  receiver: r
  group_by: [alertname]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 1h
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`, rcv.URL)
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n, err := New(Options{Config: cfg, Registerer: reg})
		require.NoError(t, err)
		n.source = &losingSource{Alerts: n.alerts}
		n.Run()
		defer n.Stop()

		a, b := firing("alertname=A"), firing("alertname=B")
		require.NoError(t, n.Put(a, b))
		time.Sleep(11 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{"r {alertname=\"A\"} A:firing", "r {alertname=\"B\"} B:firing"}, rcv.summaries())
		require.Zero(t, value(t, reg, "alertd_dispatcher_alerts_redelivered_total"), "the groups are up to date")

		// Both resolve; the dispatcher misses each resolve once.
		now := time.Now()
		ra, rb := newAlert("alertname=A", a.StartsAt, now), newAlert("alertname=B", b.StartsAt, now)
		require.NoError(t, n.Put(ra, rb))
		// The groups flush at 1m10s: by then the check has re-delivered both.
		time.Sleep(time.Until(now.Add(49 * time.Second)))
		synctest.Wait()
		require.Empty(t, rcv.summaries())
		require.Equal(t, 2.0, value(t, reg, "alertd_dispatcher_alerts_redelivered_total"))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, []string{"r {alertname=\"A\"} A:resolved", "r {alertname=\"B\"} B:resolved"}, rcv.summaries())

		// Nothing is left to re-deliver.
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, 2.0, value(t, reg, "alertd_dispatcher_alerts_redelivered_total"))
		require.Empty(t, rcv.summaries())
	})
}
