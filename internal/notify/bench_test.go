package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// BenchmarkPut puts a batch of 100 alerts, as one rule evaluation may, into
// a running Notifier that groups them by model.
func BenchmarkPut(b *testing.B) {
	cfg := load(b, `
route:
  receiver: none
  group_by: [alertname, model]
receivers:
  - name: none`, "")
	n, err := New(Options{Config: cfg})
	require.NoError(b, err)
	n.Run()
	defer n.Stop()

	now := time.Now()
	batch := func(complete bool) []*alert.Alert {
		as := make([]*alert.Alert, 100)
		for i := range as {
			m := model.Alert{
				Labels: model.LabelSet{
					"alertname": "FeatureDrift",
					"model":     model.LabelValue(fmt.Sprintf("model-%d", i%10)),
					"feature":   model.LabelValue(fmt.Sprintf("feature-%d", i)),
					"severity":  "warning",
				},
				Annotations: model.LabelSet{"summary": "PSI above 0.2"},
			}
			var updated time.Time
			if complete {
				m.StartsAt, m.EndsAt, updated = now, now.Add(4*time.Minute), now
			}
			as[i] = alert.New(m, updated, false)
		}
		return as
	}
	for _, bc := range []struct {
		name   string
		alerts []*alert.Alert
	}{
		{"complete", batch(true)},
		{"defaults", batch(false)}, // times filled in: a copy per alert
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := n.Put(bc.alerts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
