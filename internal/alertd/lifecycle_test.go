package alertd

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// histogram returns the sample count and sum of the histogram name with
// these label pairs.
func histogram(t *testing.T, a *testAlertd, name string, labelPairs ...string) (uint64, float64) {
	t.Helper()
	mfs, err := a.Registry().Gather()
	require.NoError(t, err)
	want := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		want[labelPairs[i]] = labelPairs[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue samples
				}
			}
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
	}
	t.Fatalf("no %s%v", name, labelPairs)
	return 0, 0
}

// Deploy events posted to the API give the delivery metrics on /metrics.
func TestLifecycleMetricsFromDeployments(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	a := startActionsAlertd(t, clock, func(string) string { return "" }, nil)
	now := clock.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	const day = 24 * time.Hour
	for _, body := range []string{
		// D1: lead time 2h.
		fmt.Sprintf(`{"model":"fraud","version":"v1","environment":"prod","commit_time":%q,"time":%q}`, ts(-10*day-2*time.Hour), ts(-10*day)),
		// D2: failed; restored by D3 30m later.
		fmt.Sprintf(`{"model":"fraud","version":"v2","environment":"prod","commit_time":%q,"time":%q,"outcome":"failure"}`, ts(-5*day-time.Hour), ts(-5*day)),
		// D3: lead time 1h30m; rolled back by R1: a failure, restored
		// after 4d-30m = 343800s.
		fmt.Sprintf(`{"model":"fraud","version":"v2","environment":"prod","commit_time":%q,"time":%q}`, ts(-5*day-time.Hour), ts(-5*day+30*time.Minute)),
		// R1: the rollback, not a change.
		fmt.Sprintf(`{"model":"fraud","version":"v1","environment":"prod","time":%q,"kind":"rollback"}`, ts(-day)),
	} {
		code, resp := post(t, a.URL+"/api/v1/deployments", "application/json", body)
		require.Equal(t, http.StatusOK, code, resp)
	}
	// Changes in the 30-day window: D1, D2, D3; successful: D1, D3.
	v, ok := metric(t, a.Registry(), "alertd_deployment_frequency_per_day", "model", "fraud", "environment", "prod")
	require.True(t, ok)
	require.InDelta(t, 2.0/30, v, 1e-12)
	// Failed: D2 (outcome), D3 (rolled back): 2 of 3.
	v, _ = metric(t, a.Registry(), "alertd_change_failure_ratio", "model", "fraud", "environment", "prod")
	require.InDelta(t, 2.0/3, v, 1e-12)
	n, sum := histogram(t, a, "alertd_deployment_lead_time_seconds", "model", "fraud", "environment", "prod")
	require.Equal(t, uint64(2), n)
	require.Equal(t, 7200.0+5400, sum)
	n, sum = histogram(t, a, "alertd_time_to_restore_seconds", "model", "fraud", "environment", "prod")
	require.Equal(t, uint64(2), n)
	require.Equal(t, 1800.0+343800, sum)
	v, _ = metric(t, a.Registry(), "alertd_deployments_total", "source", "api")
	require.Equal(t, 4.0, v)

	// The same over HTTP, in the text exposition.
	_, all := get(t, a.URL+"/metrics")
	var lines []string
	for _, l := range strings.Split(all, "\n") {
		if strings.Contains(l, "deployment") || strings.Contains(l, "change_failure") || strings.Contains(l, "time_to_restore") {
			lines = append(lines, l)
		}
	}
	text := strings.Join(lines, "\n")
	for _, line := range []string{
		`alertd_change_failure_ratio{environment="prod",model="fraud"} 0.6666666666666666`,
		`alertd_deployment_lead_time_seconds_bucket{environment="prod",model="fraud",le="3600"} 0`,
		`alertd_deployment_lead_time_seconds_bucket{environment="prod",model="fraud",le="7200"} 2`,
		`alertd_time_to_restore_seconds_bucket{environment="prod",model="fraud",le="1800"} 1`,
		`alertd_time_to_restore_seconds_count{environment="prod",model="fraud"} 2`,
	} {
		require.Contains(t, text, line)
	}
	require.True(t, strings.Contains(text, "# TYPE alertd_deployment_frequency_per_day gauge"))
}
