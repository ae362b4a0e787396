package notify

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func TestPut(t *testing.T) {
	cfg := load(t, "intake:\n  resolve_timeout: 3m\n", "")
	synctest.Test(t, func(t *testing.T) {
		n, err := New(Options{Config: cfg}) // not running: Put only stores
		require.NoError(t, err)
		defer n.Stop()
		now := time.Now()
		stored := func(ls model.LabelSet) *alert.Alert {
			t.Helper()
			a, err := n.alerts.Get(ls.Fingerprint())
			require.NoError(t, err)
			return a
		}

		complete := alert.New(model.Alert{
			Labels:   model.LabelSet{"alertname": "Complete"},
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour),
		}, now.Add(-time.Minute), false)
		open := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "Open", "empty": ""}}, time.Time{}, false)
		ended := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "Ended"}, EndsAt: now.Add(-time.Minute)}, time.Time{}, false)
		noLabels := alert.New(model.Alert{StartsAt: now}, time.Time{}, false)
		backwards := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "Backwards"}, StartsAt: now, EndsAt: now.Add(-time.Hour)}, now, false)

		err = n.Put(complete, open, noLabels, nil, ended, backwards)
		require.EqualError(t, err, "invalid alert {}: at least one label pair required\n"+
			"invalid alert: nil\n"+
			`invalid alert {alertname="Backwards"}: start time must be before end time`)

		require.Same(t, complete, stored(complete.Labels), "a complete alert is stored as it is")

		got := stored(model.LabelSet{"alertname": "Open"})
		require.Equal(t, model.LabelSet{"alertname": "Open"}, got.Labels, "empty labels are dropped")
		require.Equal(t, now, got.StartsAt)
		require.Equal(t, now.Add(3*time.Minute), got.EndsAt, "resolve_timeout")
		require.True(t, got.Timeout)
		require.Equal(t, now, got.UpdatedAt)
		require.Equal(t, model.LabelValue(""), open.Labels["empty"], "the caller's alert is left alone")

		got = stored(ended.Labels)
		require.Equal(t, ended.EndsAt, got.StartsAt, "an alert sent resolved starts when it ends")
		require.False(t, got.Timeout)
	})
}
