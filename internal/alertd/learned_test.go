package alertd

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Once operators' verdicts have made the classifier confident, an alert it
// finds a likely false positive is held, with the features that weighed;
// it is released when it still fires after max_hold. Before the model is
// confident nothing is held.
func TestLearnedSuppression(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, classifyConfig+`
suppression:
  learned: {threshold: 0.6, max_hold: 3s}
`), map[string]string{"rules.yml": "groups: []\n"}, nil)

	// Not confident yet: paged, whatever the probability.
	postAlert(t, a, `{"alertname":"FeatureDrift","model":"fraud","feature":"age"}`)
	h.wait(t, "FeatureDrift", "firing", 30*time.Second)
	drift := waitAlert(t, a, model.LabelSet{"alertname": "FeatureDrift", "model": "fraud", "feature": "age"})
	require.NotContains(t, actions(drift.History), "learned/suppressed")
	postAlert(t, a, `{"alertname":"LatencyHigh","service":"checkout"}`)
	lat := waitAlert(t, a, model.LabelSet{"alertname": "LatencyHigh", "service": "checkout"})
	for i := range 15 {
		code, body := post(t, a.URL+"/api/v1/alerts/"+drift.Fingerprint+"/feedback", "application/json",
			fmt.Sprintf(`{"verdict":"false_positive","by":"alice","note":"#%d"}`, i))
		require.Equal(t, http.StatusOK, code, body)
		code, body = post(t, a.URL+"/api/v1/alerts/"+lat.Fingerprint+"/feedback", "application/json", `{"verdict":"true_positive"}`)
		require.Equal(t, http.StatusOK, code, body)
	}

	// Confident now: a drift alert like the first is held, a latency alert
	// like the real one is not.
	amount := model.LabelSet{"alertname": "FeatureDrift", "model": "fraud", "feature": "amount"}
	postAlert(t, a, `{"alertname":"FeatureDrift","model":"fraud","feature":"amount"}`)
	postAlert(t, a, `{"alertname":"LatencyHigh","service":"search"}`)
	al := waitFor(t, a, amount, func(al alertJSON) bool { return slices.Contains(actions(al.History), "learned/suppressed") }, "not held")
	var held Decision
	for _, d := range al.History {
		if d.Stage == "learned" && d.Action == "suppressed" {
			held = d
		}
	}
	p := fpProbability(t, al)
	require.Greater(t, p, 0.6)
	require.True(t, strings.HasPrefix(held.Reason, fmt.Sprintf("likely false positive (p=%.2f): ", p)), held.Reason)
	require.Contains(t, held.Reason, `alertname="FeatureDrift" +`, "the reason names the features that weighed")
	search := waitAlert(t, a, model.LabelSet{"alertname": "LatencyHigh", "service": "search"})
	require.NotContains(t, actions(search.History), "learned/suppressed")
	n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "learned")
	require.Equal(t, 1.0, n)

	// Still firing after max_hold: released and paged.
	al = waitFor(t, a, amount, inState("firing"), "not released after max_hold")
	acts := actions(al.History)
	i, j := slices.Index(acts, "learned/suppressed"), slices.Index(acts, "learned/released")
	require.True(t, i >= 0 && j > i, "%v", acts)
	require.Equal(t, fmt.Sprintf("likely false positive (p=%.2f), but still firing after 3s (max_hold)", p), al.History[j].Reason)
	require.Equal(t, "pipeline/released", acts[j+1])
	require.Eventually(t, func() bool {
		for _, p := range h.matching("FeatureDrift", "firing") {
			for _, pa := range p.Alerts {
				if pa.Labels["feature"] == "amount" {
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the released alert was not paged")
}
