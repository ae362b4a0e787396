package notify

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// SendToReceiver reaches a receiver no route names, with the key and the
// extra labels in the payload, retries a 5xx and reports what failed.
func TestSendToReceiver(t *testing.T) {
	pager := newReceiver(t, reply{status: http.StatusServiceUnavailable})
	quiet := newReceiver(t)
	reg := prometheus.NewRegistry()
	n, err := New(Options{Config: load(t, `
route: {receiver: none}
receivers:
  - name: none
  - name: pager
    webhook_configs: [{url: '{{URL}}'}]
  - name: quiet
    webhook_configs: [{url: '`+quiet.URL+`', send_resolved: false}]
  - name: dead
    webhook_configs: [{url: '`+deadURL(t)+`'}]
`, pager.URL), Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a := firing("alertname=Down")
	require.NoError(t, n.SendToReceiver(ctx, "pager", "key-1", []*alert.Alert{a}, map[string]string{"event": "trigger", "level": "1"}))
	got := pager.next()
	require.Len(t, got, 1)
	require.Equal(t, "key-1", got[0].GroupKey)
	require.Equal(t, "firing", got[0].Status)
	require.Equal(t, "pager", got[0].Receiver)
	require.Equal(t, map[string]string{"event": "trigger", "level": "1"}, got[0].GroupLabels)
	require.Equal(t, 2, pager.requestCount(), "the 503 was retried")
	require.Equal(t, 1.0, value(t, reg, "alertd_notifications_total", "integration", "webhook"))

	resolved := newAlert("alertname=Down", time.Now().Add(-time.Hour), time.Now().Add(-time.Minute))
	require.NoError(t, n.SendToReceiver(ctx, "quiet", "key-2", []*alert.Alert{resolved}, nil))
	require.Empty(t, quiet.next(), "send_resolved: false")
	require.NoError(t, n.SendToReceiver(ctx, "pager", "key-3", []*alert.Alert{resolved}, nil))
	got = pager.next()
	require.Len(t, got, 1)
	require.Equal(t, "resolved", got[0].Status)

	require.EqualError(t, n.SendToReceiver(ctx, "nobody", "k", []*alert.Alert{a}, nil), `unknown receiver "nobody"`)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	require.Error(t, n.SendToReceiver(short, "dead", "k", []*alert.Alert{a}, nil))
	n.Stop()
	require.ErrorIs(t, n.SendToReceiver(ctx, "pager", "k", []*alert.Alert{a}, nil), errStopped)
}
