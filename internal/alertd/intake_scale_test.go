package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A batch of alerts that opens thousands of groups is answered in about
// linear time. Finding an alert's incident looked at every incident
// alertd knew for each new group, so that a batch of 30,000 alerts, one
// group each, took over 30 seconds and one of 60,000 over seven minutes,
// holding the ledger (and every other intake) meanwhile.
func TestIntakeManyGroupsInOneBatch(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("times 30,000 alerts; too slow to mean anything under -race or -short")
	}
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

	const n = 30000
	alerts := make([]map[string]any, n)
	for i := range alerts {
		alerts[i] = map[string]any{"labels": map[string]string{"alertname": fmt.Sprintf("Many%05d", i)}}
	}
	body, err := json.Marshal(alerts)
	require.NoError(t, err)
	start := time.Now()
	code, resp := post(t, a.URL+"/api/v2/alerts", "application/json", string(body))
	took := time.Since(start)
	require.Equal(t, http.StatusOK, code, resp)
	t.Logf("posting %d alerts of %d groups took %s", n, n, took)
	// Some 6s on a shared 2-core machine; over 30s before.
	require.Less(t, took, 30*time.Second, "posting %d alerts of %d groups", n, n)

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
