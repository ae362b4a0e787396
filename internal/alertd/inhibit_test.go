package alertd

import (
	"context"
	"testing"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// inhibitRules parses inhibit_rules as alertd's configuration does.
func inhibitRules(t *testing.T, y string) []*alertconfig.InhibitRule {
	t.Helper()
	var rs []*alertconfig.InhibitRule
	require.NoError(t, yaml.UnmarshalStrict([]byte(y), &rs))
	return rs
}

// Alertmanager's semantics: the source must fire and have the target's
// values of the equal labels (missing on both sides is equal); an alert
// both sides select is not inhibited by another both sides select; a
// suppressed source inhibits too; the deprecated match forms work.
func TestInhibitor(t *testing.T) {
	now := time.Unix(1800000000, 0)
	s := newStore(prometheus.NewRegistry(), func(...*amalert.Alert) error { return nil }, func(model.LabelSet) []string { return nil }, time.Hour, func() time.Time { return now })
	in := newInhibitor(s)
	in.set(inhibitRules(t, `
- name: critical-over-warning
  source_matchers: [severity="critical"]
  target_matchers: [severity="warning"]
  equal: [model, region]
- source_match: {alertname: ModelDown}
  target_match_re: {alertname: "Model.*"}
  equal: [model]
`))
	add := func(ls model.LabelSet, resolved, suppressed bool) {
		a := &Alert{Alert: model.Alert{Labels: ls, StartsAt: now.Add(-time.Minute)}, Fingerprint: ls.Fingerprint(), Suppressed: suppressed}
		if resolved {
			a.EndsAt = now.Add(-time.Second)
		}
		s.alerts[a.Fingerprint] = a
		s.gen++
	}
	add(model.LabelSet{"alertname": "ErrorsCritical", "severity": "critical", "model": "fraud"}, false, true)
	add(model.LabelSet{"alertname": "ErrorsCritical", "severity": "critical", "model": "churn"}, true, false)
	add(model.LabelSet{"alertname": "ModelDown", "model": "price"}, false, false)
	add(model.LabelSet{"alertname": "ModelDown", "model": "rank"}, false, false)

	for _, tc := range []struct {
		name   string
		labels model.LabelSet
		reason string // "" when not inhibited
	}{
		{"by a firing source, suppressed itself", model.LabelSet{"alertname": "ErrorsHigh", "severity": "warning", "model": "fraud"},
			`inhibited by ErrorsCritical {alertname="ErrorsCritical", model="fraud", severity="critical"}, firing, under inhibit rule critical-over-warning`},
		{"not by a resolved one", model.LabelSet{"alertname": "ErrorsHigh", "severity": "warning", "model": "churn"}, ""},
		{"not when an equal label differs", model.LabelSet{"alertname": "ErrorsHigh", "severity": "warning", "model": "fraud", "region": "eu"}, ""},
		{"not a critical one", model.LabelSet{"alertname": "ErrorsHigh", "severity": "critical", "model": "fraud"}, ""},
		{"by the deprecated forms", model.LabelSet{"alertname": "ModelLatencyHigh", "model": "price"},
			`inhibited by ModelDown {alertname="ModelDown", model="price"}, firing, under inhibit rule #1`},
		{"not an alert both sides select, by another both select", model.LabelSet{"alertname": "ModelDown", "model": "price", "replica": "b"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Alert{Alert: model.Alert{Labels: tc.labels}, Fingerprint: tc.labels.Fingerprint()}
			d := in.Process(context.Background(), now, a)
			if tc.reason == "" {
				require.False(t, a.Suppressed, d.Reason)
				require.Empty(t, d.Action)
				return
			}
			require.True(t, a.Suppressed)
			require.Equal(t, "suppressed", d.Action)
			require.Equal(t, tc.reason, d.Reason)
		})
	}

	// An alert does not inhibit itself.
	self := s.alerts[model.LabelSet{"alertname": "ModelDown", "model": "rank"}.Fingerprint()]
	require.Empty(t, in.Process(context.Background(), now, self).Action)
}

// Configured inhibit_rules mute the alerts they target while a source
// fires, whether the source came first, with them, or after them (then
// they are muted from then on), and release them when it resolves.
func TestInhibitRules(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
inhibit_rules:
  - name: critical-over-warning
    source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [model]
`), map[string]string{"rules.yml": "groups: []\n"}, nil)

	// Source and target in one request.
	postAlerts(t, a, `[{"labels":{"alertname":"ErrorsHigh","severity":"warning","model":"fraud"}},
		{"labels":{"alertname":"ErrorsCritical","severity":"critical","model":"fraud"}}]`)
	warning := model.LabelSet{"alertname": "ErrorsHigh", "severity": "warning", "model": "fraud"}
	got := waitAlert(t, a, warning)
	require.Equal(t, "suppressed", got.State)
	last := got.History[len(got.History)-1]
	require.Equal(t, "inhibit", last.Stage)
	require.Contains(t, last.Reason, "inhibited by ErrorsCritical")
	h.wait(t, "ErrorsCritical", "firing", 30*time.Second)

	// Another model's warning is not inhibited; once its model's critical
	// alert fires, it is.
	postAlert(t, a, `{"alertname":"DriftWarning","severity":"warning","model":"churn"}`)
	h.wait(t, "DriftWarning", "firing", 30*time.Second)
	postAlert(t, a, `{"alertname":"ErrorsCritical","severity":"critical","model":"churn"}`)
	require.Eventually(t, func() bool {
		return waitAlert(t, a, model.LabelSet{"alertname": "DriftWarning", "severity": "warning", "model": "churn"}).State == "suppressed"
	}, 10*time.Second, 10*time.Millisecond)
	n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "inhibit")
	require.Equal(t, 2.0, n)
	require.Empty(t, h.matching("ErrorsHigh", ""), "the inhibited warning was never notified")

	// The source resolves: the warning is released and notified.
	postAlerts(t, a, `[{"labels":{"alertname":"ErrorsCritical","severity":"critical","model":"fraud"},"endsAt":"`+time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)+`"}]`)
	h.wait(t, "ErrorsHigh", "firing", 30*time.Second)
	got = waitAlert(t, a, warning)
	require.Equal(t, "firing", got.State)
	require.Contains(t, actions(got.History), "pipeline/released")
}

// The pipeline's side: a target that comes with its source is not handed
// to the notifier, and the source's resolve hands it over at once.
func TestInhibitInTheStore(t *testing.T) {
	now := time.Unix(1800000000, 0)
	var put [][]string
	s := newStore(prometheus.NewRegistry(), func(as ...*amalert.Alert) error {
		var names []string
		for _, a := range as {
			names = append(names, string(a.Labels[model.AlertNameLabel]))
		}
		put = append(put, names)
		return nil
	}, func(model.LabelSet) []string { return nil }, time.Hour, func() time.Time { return now })
	s.inhibitor = newInhibitor(s)
	s.inhibitor.set(inhibitRules(t, "- {source_matchers: [severity=critical], target_matchers: [severity=warning], equal: [model]}\n"))
	s.setStages([]Stage{s.inhibitor})
	critical := model.LabelSet{"alertname": "ErrorsCritical", "severity": "critical", "model": "fraud"}
	warning := model.LabelSet{"alertname": "ErrorsHigh", "severity": "warning", "model": "fraud"}
	alert := func(ls model.LabelSet, ends time.Time) *Alert {
		return &Alert{Alert: model.Alert{Labels: ls, StartsAt: now, EndsAt: ends}, UpdatedAt: now}
	}
	ctx := context.Background()
	require.NoError(t, s.receive(ctx, now, SourcePrometheus, []*Alert{alert(warning, now.Add(time.Hour)), alert(critical, now.Add(time.Hour))}, ""))
	require.Equal(t, [][]string{{"ErrorsCritical"}}, put, "the warning came first in the batch, and is held back")
	require.True(t, s.isSuppressed(warning.Fingerprint()))

	now = now.Add(time.Minute)
	require.NoError(t, s.receive(ctx, now, SourcePrometheus, []*Alert{alert(critical, now)}, ""))
	require.Equal(t, []string{"ErrorsCritical", "ErrorsHigh"}, put[len(put)-1], "the resolve and the released warning together")
	require.False(t, s.isSuppressed(warning.Fingerprint()))
}
