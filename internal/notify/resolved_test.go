package notify

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/featurecontrol"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
)

// alertHash is the hash Alertmanager's own stages write into the
// notification log: an alert notified through its DedupStage and
// SetNotifiesStage is found there by alertHash.
func TestAlertHashIsAlertmanagers(t *testing.T) {
	log, err := nflog.New(nflog.Options{Retention: time.Hour, Metrics: prometheus.NewRegistry()})
	require.NoError(t, err)
	recv := &nflogpb.Receiver{GroupName: "hook", Integration: "webhook"}
	sets := []model.LabelSet{
		{"alertname": "A"},
		{"alertname": "A", "model": "fraud", "feature": "amount"},
		{"alertname": "B", "z": "", "a": "ü\xff", "_": "x y"},
	}
	var alerts []*alert.Alert
	for _, ls := range sets {
		alerts = append(alerts, alert.New(model.Alert{Labels: ls, StartsAt: time.Now()}, time.Now(), false))
	}
	ctx := amnotify.WithGroupKey(context.Background(), "{}:{}")
	ctx = amnotify.WithRepeatInterval(ctx, time.Hour)
	l := promslog.NewNopLogger()
	ctx, out, err := amnotify.NewDedupStage(resolvedSender(true), log, recv).Exec(ctx, l, alerts...)
	require.NoError(t, err)
	require.Len(t, out, len(alerts))
	_, _, err = amnotify.NewSetNotifiesStage(log, recv, featurecontrol.NoopFlags{}).Exec(ctx, l, out...)
	require.NoError(t, err)

	entries, err := log.Query(nflog.QGroupKey("{}:{}"), nflog.QReceiver(recv))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	var want []uint64
	for _, ls := range sets {
		want = append(want, alertHash(ls))
	}
	require.ElementsMatch(t, want, entries[0].FiringAlerts)
}
