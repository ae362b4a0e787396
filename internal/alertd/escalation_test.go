package alertd

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// An alert a stage holds is released when it escalates: when an alert
// with the same labels but a higher severity fires (both are released), or
// when its classified priority rises. A silence or a maintenance window,
// an operator's decision, still holds an escalated alert.
func TestEscalationReleases(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	a := startAlertd(t, routes(h, nil, `
intake:
  resolve_timeout: 24h
suppression:
  deploy: {hold: 1h}
classification:
  rules:
    - name: slow for long
      matchers: ['alertname="Slow"']
      firing_for_at_least: 30m
      priority: critical
`), map[string]string{"rules.yml": "groups: []\n"}, clock.options())
	postDeployment(t, a, `{"model":"fraud","version":"v2"}`)
	createSilence(t, a, `{"matchers":["alertname=\"Silenced\""],"duration":"24h"}`)
	createWindow(t, a, `{"name":"w","matchers":["alertname=\"InWindow\""],"time_intervals":[{}]}`)

	for _, name := range []string{"Errors", "Silenced", "InWindow"} {
		postAlert(t, a, `{"alertname":"`+name+`","model":"fraud","severity":"warning"}`)
		al := waitFor(t, a, model.LabelSet{"alertname": model.LabelValue(name), "model": "fraud", "severity": "warning"},
			inState("suppressed"), "not held by the deploy")
		require.Equal(t, "suppressed", lastOf(al.History, "deploy").Action)
	}
	postAlert(t, a, `{"alertname":"Slow","model":"fraud","severity":"warning"}`)
	slow := model.LabelSet{"alertname": "Slow", "model": "fraud", "severity": "warning"}
	al := waitFor(t, a, slow, inState("suppressed"), "not held by the deploy")
	require.Equal(t, model.LabelValue("medium"), al.Annotations[annotationPriority])

	// The same alert fires as critical: both are released.
	for _, name := range []string{"Errors", "Silenced", "InWindow"} {
		postAlert(t, a, `{"alertname":"`+name+`","model":"fraud","severity":"critical"}`)
	}
	crit := waitFor(t, a, model.LabelSet{"alertname": "Errors", "model": "fraud", "severity": "critical"}, inState("firing"), "the escalation was held")
	require.Equal(t, Decision{Time: lastOf(crit.History, "pipeline").Time, Stage: "pipeline", Action: "released", Reason: "escalated from warning to critical (severity)"},
		lastOf(crit.History, "pipeline"))
	warn := waitFor(t, a, model.LabelSet{"alertname": "Errors", "model": "fraud", "severity": "warning"}, inState("firing"), "the escalated alert was not released")
	require.Equal(t, `escalated from warning to critical (severity): {alertname="Errors", model="fraud", severity="critical"} fires`, lastOf(warn.History, "pipeline").Reason)
	p := h.wait(t, "Errors", "firing", 30*time.Second)
	require.Eventually(t, func() bool {
		ps := h.matching("Errors", "firing")
		return len(ps[len(ps)-1].Alerts) == 2
	}, 30*time.Second, 20*time.Millisecond, "both were not paged: %+v", p)

	// A silence or a maintenance window still holds them.
	for _, name := range []string{"Silenced", "InWindow"} {
		for _, sev := range []string{"warning", "critical"} {
			al := waitFor(t, a, model.LabelSet{"alertname": model.LabelValue(name), "model": "fraud", "severity": model.LabelValue(sev)},
				inState("suppressed"), "")
			require.NotContains(t, actions(al.History), "pipeline/released")
		}
	}

	// Its priority rises (the rule for alerts firing for 30m): released.
	clock.skip(30 * time.Minute)
	al = waitFor(t, a, slow, inState("firing"), "a rise in priority did not release it")
	require.Equal(t, "escalated from medium to critical (priority)", lastOf(al.History, "pipeline").Reason)
	require.Equal(t, model.LabelValue("critical"), al.Annotations[annotationPriority])
	h.wait(t, "Slow", "firing", 30*time.Second)
	// Stages no longer hold it in this firing episode.
	postAlertJSON(t, a, `{"labels":{"alertname":"Slow","model":"fraud","severity":"warning"},"annotations":{"summary":"changed"}}`)
	al = waitFor(t, a, slow, func(al alertJSON) bool { return al.Annotations["summary"] == "changed" }, "")
	require.Equal(t, "firing", al.State)
	d := lastOf(al.History, "deploy")
	require.Equal(t, "overridden", d.Action)
	require.True(t, strings.HasSuffix(d.Reason, "; escalated from medium to critical (priority)"), d.Reason)

	require.Empty(t, slices.Concat(h.matching("Silenced", ""), h.matching("InWindow", "")))
	h.checkWire(t)
}
