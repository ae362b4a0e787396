package alertd

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

const classifyConfig = `
classification:
  rules:
    - name: drift
      matchers: ['alertname="FeatureDrift"']
      category: model_performance
      priority: high
      action: retrain
`

// postAlert posts one firing alert to /api/v2/alerts.
func postAlert(t *testing.T, a *testAlertd, labels string) {
	t.Helper()
	code, body := post(t, a.URL+"/api/v2/alerts", "application/json", `[{"labels":`+labels+`}]`)
	require.Equal(t, http.StatusOK, code, body)
}

// waitAlert waits for the alert with these labels and returns it.
func waitAlert(t *testing.T, a *testAlertd, ls model.LabelSet) alertJSON {
	t.Helper()
	var got alertJSON
	require.Eventually(t, func() bool {
		for _, al := range a.alerts(t) {
			if al.Labels.Equal(ls) {
				got = al
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	return got
}

func fpProbability(t *testing.T, al alertJSON) float64 {
	t.Helper()
	p, err := strconv.ParseFloat(string(al.Annotations[annotationFP]), 64)
	require.NoError(t, err)
	return p
}

// With a classification section, every alert gets category, priority,
// action and false-positive probability annotations (rules first, then
// defaults) and a "classify" decision; operators' false-positive verdicts
// raise the probability for alerts like it, and what was learnt survives a
// restart.
func TestClassifyAndFeedback(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, classifyConfig))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)

	postAlert(t, a, `{"alertname":"FeatureDrift","model":"fraud","feature":"age"}`)
	drift := waitAlert(t, a, model.LabelSet{"alertname": "FeatureDrift", "model": "fraud", "feature": "age"})
	require.Equal(t, model.LabelValue("model_performance"), drift.Annotations[annotationCategory])
	require.Equal(t, model.LabelValue("high"), drift.Annotations[annotationPriority])
	require.Equal(t, model.LabelValue("retrain"), drift.Annotations[annotationAction])
	require.Equal(t, model.LabelValue("0.500"), drift.Annotations[annotationFP], "no feedback yet: the prior")
	require.Contains(t, actions(drift.History), "classify/classified")
	p := h.wait(t, "FeatureDrift", "firing", 30*time.Second)
	require.Equal(t, "retrain", p.CommonAnnotations["action"], "notifications carry the classification")

	// Defaults when no rule matches: from the category and severity labels.
	postAlert(t, a, `{"alertname":"SidecarDown","category":"availability","severity":"critical"}`)
	down := waitAlert(t, a, model.LabelSet{"alertname": "SidecarDown", "category": "availability", "severity": "critical"})
	require.Equal(t, model.LabelValue("system_health"), down.Annotations[annotationCategory])
	require.Equal(t, model.LabelValue("critical"), down.Annotations[annotationPriority])
	require.Equal(t, model.LabelValue("immediate_intervention"), down.Annotations[annotationAction])
	for priority, want := range map[string]float64{"critical": 1, "high": 1, "medium": 0, "low": 0, "none": 0} {
		v, ok := metric(t, a.Registry(), "alertd_alerts", "state", "firing", "priority", priority)
		require.True(t, ok, priority)
		require.Equal(t, want, v, "firing alerts of priority %s", priority)
	}

	// Operators say the drift alert is noise, again and again, and that
	// the latency alert is real.
	postAlert(t, a, `{"alertname":"LatencyHigh","service":"checkout"}`)
	lat := waitAlert(t, a, model.LabelSet{"alertname": "LatencyHigh", "service": "checkout"})
	for i := range 30 {
		code, body := post(t, a.URL+"/api/v1/alerts/"+drift.Fingerprint+"/feedback", "application/json",
			fmt.Sprintf(`{"verdict":"false_positive","by":"alice","note":"seasonal, #%d"}`, i))
		require.Equal(t, http.StatusOK, code, body)
		code, body = post(t, a.URL+"/api/v1/alerts/"+lat.Fingerprint+"/feedback", "application/json", `{"verdict":"true_positive","by":"bob"}`)
		require.Equal(t, http.StatusOK, code, body)
	}
	drift = waitAlert(t, a, drift.Labels)
	require.Contains(t, actions(drift.History), "feedback/false_positive")
	require.Contains(t, drift.History[len(drift.History)-1].Reason, "false_positive by alice: seasonal")
	n, _ := metric(t, a.Registry(), "alertd_feedback_total", "verdict", "false_positive")
	require.Equal(t, 30.0, n)

	// New alerts like them (another feature, another service) are now
	// likely a false positive, and likely real.
	postAlert(t, a, `{"alertname":"FeatureDrift","model":"fraud","feature":"amount"}`)
	amount := waitAlert(t, a, model.LabelSet{"alertname": "FeatureDrift", "model": "fraud", "feature": "amount"})
	require.Greater(t, fpProbability(t, amount), 0.7)
	require.Contains(t, amount.History[slices.Index(actions(amount.History), "classify/classified")].Reason, `alertname="FeatureDrift"`, "the decision names the features that weighed")
	postAlert(t, a, `{"alertname":"LatencyHigh","service":"search"}`)
	search := waitAlert(t, a, model.LabelSet{"alertname": "LatencyHigh", "service": "search"})
	require.Less(t, fpProbability(t, search), 0.3)

	// Restart on the same storage: what was learnt stays.
	require.NoError(t, a.Stop())
	b := start(t, dir, o, logs)
	postAlert(t, b, `{"alertname":"FeatureDrift","model":"fraud","feature":"income"}`)
	income := waitAlert(t, b, model.LabelSet{"alertname": "FeatureDrift", "model": "fraud", "feature": "income"})
	require.Greater(t, fpProbability(t, income), 0.7)
}

// Bad feedback gets a clear error and changes nothing.
func TestFeedbackBadInput(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, classifyConfig), map[string]string{"rules.yml": "groups: []\n"}, nil)
	postAlert(t, a, `{"alertname":"X"}`)
	x := waitAlert(t, a, model.LabelSet{"alertname": "X"})
	for _, tc := range []struct {
		name, fp, body string
		code           int
		want           string
	}{
		{"unknown alert", "0123456789abcdef", `{"verdict":"false_positive"}`, http.StatusNotFound, "no alert with fingerprint 0123456789abcdef\n"},
		{"bad fingerprint", "xyz", `{"verdict":"false_positive"}`, http.StatusBadRequest, "invalid fingerprint \"xyz\": want 16 hex digits\n"},
		{"bad verdict", x.Fingerprint, `{"verdict":"maybe"}`, http.StatusBadRequest, "invalid verdict \"maybe\": want one of [true_positive false_positive not_actionable]\n"},
		{"unknown field", x.Fingerprint, `{"verdict":"false_positive","score":1}`, http.StatusBadRequest, "couldn't parse feedback: json: unknown field \"score\"\n"},
		{"malformed", x.Fingerprint, `{"verdict":`, http.StatusBadRequest, "couldn't parse feedback: unexpected EOF\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, a.URL+"/api/v1/alerts/"+tc.fp+"/feedback", "application/json", tc.body)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.want, body)
		})
	}
	n, _ := metric(t, a.Registry(), "alertd_feedback_total", "verdict", "false_positive")
	require.Zero(t, n)
}
