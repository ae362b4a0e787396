package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A batch of alerts that opens thousands of groups opens an incident for
// each. Finding an alert's incident used to look at every incident alertd
// knew for each new group: a batch of 30,000 alerts, one group each, took
// over 30 seconds, holding the ledger (and every other intake) meanwhile.
// BenchmarkIncidentsFind measures that cost; this checks what it returns.
func TestIntakeManyGroupsInOneBatch(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	cfg := fmt.Sprintf(`global:
  evaluation_interval: 1s
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1h
receivers:
  - name: hook
    webhook_configs: [{url: %q}]
`, h.URL)
	a := startAlertd(t, cfg, nil, nil)

	const n = 2000
	alerts := make([]map[string]any, n)
	for i := range alerts {
		alerts[i] = map[string]any{"labels": map[string]string{"alertname": fmt.Sprintf("Many%05d", i)}}
	}
	body, err := json.Marshal(alerts)
	require.NoError(t, err)
	code, resp := post(t, a.URL+"/api/v2/alerts", "application/json", string(body))
	require.Equal(t, http.StatusOK, code, resp)

	code, resp = get(t, a.URL+"/api/v1/incidents")
	require.Equal(t, http.StatusOK, code)
	var got struct {
		Data struct {
			Incidents []json.RawMessage `json:"incidents"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &got))
	require.Len(t, got.Data.Incidents, n, "an incident for each group")
}

// incidentsOpen returns incidents with n open, each of its own group
// (alertname OpenNNNNN) to the receiver hook.
func incidentsOpen(n int) *incidents {
	is := newIncidents()
	for i := range n {
		key := fmt.Sprintf("{}:{alertname=\"Open%05d\"}", i)
		is.add(&incident{ID: fmt.Sprintf("open%05d", i), GroupKey: key, Receiver: "hook", OpenedAt: time.Unix(0, 0)})
	}
	return is
}

// Finding the incident of a group that has none costs the same whatever
// the number of other groups' open incidents: a batch opening n groups
// takes linear time, not quadratic.
func BenchmarkIncidentsFind(b *testing.B) {
	for _, open := range []int{100, 10000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			is := incidentsOpen(open)
			g := alertGroup{Key: `{}:{alertname="New"}`, Receiver: "hook", ID: `{}:{alertname="New"}`}
			groups := []alertGroup{g}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if is.find(g, groups, nil) != nil {
					b.Fatal("a new group found an incident")
				}
			}
		})
	}
}

// Finding the incidents a notification of a group is for (ledger.paged,
// once per notification) costs the same whatever the number of other
// groups' open incidents: a batch of n new groups notified takes linear
// time, not quadratic.
func BenchmarkIncidentsForGroup(b *testing.B) {
	for _, open := range []int{100, 10000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			is := incidentsOpen(open)
			key := fmt.Sprintf("{}:{alertname=\"Open%05d\"}", open/2)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if len(is.forGroup(key, "hook")) != 1 {
					b.Fatal("not the group's incident")
				}
			}
		})
	}
}
