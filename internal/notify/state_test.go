package notify

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
)

// A flush's time is when its timer was due, which can come before the end
// of an alert the dispatcher already took as resolved (its endsAt passed by
// the time the flush ran). The resolve is still sent: the notification
// takes the alerts' state when Alertmanager's dedup stage took it, not at
// the flush's time, which gave it the firing notification's key and had
// the outbox drop it as sent (seen once in TestDatasourceRecovers).
func TestResolveFlushedBeforeItsEnd(t *testing.T) {
	rcv := newReceiver(t)
	n := start(t, Options{Config: load(t, `
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: hook
    webhook_configs: [{url: "{{URL}}", send_resolved: true}]`, rcv.URL)})
	stage := n.integrationStage("hook", n.pipeline.integration("hook", integrationWebhook, 0))
	flush := func(now time.Time, a *alert.Alert) {
		ctx := amnotify.WithGroupKey(context.Background(), "{}:{alertname=\"Down\"}")
		ctx = amnotify.WithGroupLabels(ctx, model.LabelSet{"alertname": "Down"})
		ctx = amnotify.WithRepeatInterval(ctx, time.Hour)
		ctx = amnotify.WithNow(ctx, now)
		_, _, err := stage.Exec(ctx, promslog.NewNopLogger(), a)
		require.NoError(t, err)
	}
	start := time.Now().Add(-time.Minute)
	flush(time.Now(), newAlert("alertname=Down", start, time.Now().Add(time.Hour)))
	require.Eventually(t, func() bool { return len(rcv.idempotencyKeys()) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"hook {alertname=\"Down\"} Down:firing"}, rcv.summaries())

	end := time.Now().Add(-10 * time.Millisecond) // resolved now
	flush(end.Add(-100*time.Millisecond), newAlert("alertname=Down", start, end))
	require.Eventually(t, func() bool { return len(rcv.idempotencyKeys()) == 2 }, 10*time.Second, 5*time.Millisecond, "the resolve was not sent")
	require.Equal(t, []string{"hook {alertname=\"Down\"} Down:resolved"}, rcv.summaries())
}
