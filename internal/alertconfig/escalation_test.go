package alertconfig

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/escalate"
)

const escalationReceivers = `
route: {receiver: slack}
receivers: [{name: slack}, {name: l1}, {name: l2}]
`

func TestLoadEscalation(t *testing.T) {
	c, err := Load(escalationReceivers+`
escalation_policies:
  - name: model-critical
    matchers: ['priority="critical"', 'category=~"model_performance|data_quality"']
    ack_timeout: 30m
    steps:
      - notify: [l1]
      - wait: 10m
      - notify: [l2, slack]
      - wait: 20m
      - repeat: 2
      - action: rollback
  - name: everything else
    steps: [{notify: [slack]}]
`, "")
	require.NoError(t, err)
	require.Equal(t, []escalate.Policy{
		{
			Name:       "model-critical",
			Matchers:   []string{`priority="critical"`, `category=~"model_performance|data_quality"`},
			AckTimeout: 30 * time.Minute,
			Steps: []escalate.Step{
				{Notify: []string{"l1"}}, {Wait: 10 * time.Minute}, {Notify: []string{"l2", "slack"}},
				{Wait: 20 * time.Minute}, {Repeat: 2}, {Action: "rollback"},
			},
		},
		{Name: "everything else", Steps: []escalate.Step{{Notify: []string{"slack"}}}},
	}, c.EscalationPolicies())

	c, err = Load("", "")
	require.NoError(t, err)
	require.Empty(t, c.EscalationPolicies())
}

// Bad escalation policies name the policy, the field and the line.
func TestLoadBadEscalation(t *testing.T) {
	const head = escalationReceivers + "escalation_policies:\n"
	// The first policy line is line 5.
	for _, tc := range []struct{ name, in, err string }{
		{"unknown key", head + "  - name: p\n    steps: [{notify: [l1]}]\n    ack_timout: 5m\n", `line 7: unknown field "ack_timout"`},
		{"unknown step key", head + "  - name: p\n    steps:\n      - notfy: [l1]\n", `line 7: unknown field "notfy"`},
		{"bad wait", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - wait: 10 minutes\n",
			`line 8: escalation_policies[0].steps[1].wait: unknown unit " minutes" in duration "10 minutes"`},
		{"no name", head + "  - steps: [{notify: [l1]}]\n", "line 5: escalation_policies: entry 0 has no name"},
		{"empty entry", head + "  - \n", "line 5: escalation_policies: entry 0 is empty"},
		{"no steps", head + "  - name: p\n", `line 5: escalation_policies: entry 0 ("p"): steps: a policy needs at least one step`},
		{"empty steps", head + "  - name: p\n    steps: []\n", `line 6: escalation_policies: entry 0 ("p"): steps: a policy needs at least one step`},
		{"two keys in a step", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - {wait: 5m, action: x}\n",
			`line 8: escalation_policies: entry 0 ("p"): steps[1]: want exactly one of notify, wait, repeat and action, got 2`},
		{"empty step", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - {}\n",
			`line 8: escalation_policies: entry 0 ("p"): steps[1]: want exactly one of notify, wait, repeat and action, got 0`},
		{"notify nobody", head + "  - name: p\n    steps:\n      - notify: []\n",
			`line 7: escalation_policies: entry 0 ("p"): steps[0]: notify: no receivers`},
		{"undefined receiver", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - wait: 5m\n      - notify:\n        - l2\n        - l3\n",
			`line 11: escalation_policies: entry 0 ("p"): steps[2]: notify: undefined receiver "l3"`},
		{"repeat too often", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - wait: 5m\n      - repeat: 9\n",
			`line 9: escalation_policies: entry 0 ("p"): steps[2]: repeat: 9 out of range [1, 5]`},
		{"zero wait", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - wait: 0s\n      - notify: [l1]\n",
			`line 8: escalation_policies: entry 0 ("p"): steps[1]: wait: must be positive, got 0s`},
		{"zero repeat", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - wait: 5m\n      - repeat: 0\n",
			`line 9: escalation_policies: entry 0 ("p"): steps[2]: repeat: 0 out of range [1, 5]`},
		{"negative wait", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - wait: -5m\n",
			`line 8: escalation_policies[0].steps[1].wait: not a valid duration string: "-5m"`},
		{"repeat at once", head + "  - name: p\n    steps:\n      - notify: [l1]\n      - repeat: 2\n",
			`line 8: escalation_policies: entry 0 ("p"): steps[1]: repeat: needs a wait step before it`},
		{"bad matcher", head + "  - name: p\n    matchers:\n      - 'priority=\"critical\"'\n      - 'team=~\"(\"'\n    steps: [{notify: [l1]}]\n",
			"line 8: escalation_policies: entry 0 (\"p\"): matchers[1]: bad matchers \"team=~\\\"(\\\"\": invalid regular expression \"(\": error parsing regexp: missing closing ): `^(?:()$`"},
		{"negative ack timeout", head + "  - name: p\n    steps: [{notify: [l1]}]\n    ack_timeout: -5m\n",
			`line 7: escalation_policies[0].ack_timeout: not a valid duration string: "-5m"`},
		{"duplicate name", head + "  - name: p\n    steps: [{notify: [l1]}]\n  - name: p\n    steps: [{notify: [l2]}]\n",
			`line 7: escalation_policies: entry 1 ("p"): name is not unique`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in, "")
			require.EqualError(t, err, tc.err)
		})
	}
}

// Waits and acknowledgement timeouts are Prometheus durations: days and
// weeks too.
func TestLoadEscalationDurations(t *testing.T) {
	c, err := Load(escalationReceivers+`escalation_policies:
  - name: slow
    ack_timeout: 1d
    steps:
      - notify: [l1]
      - wait: 90m
      - notify: [l2]
      - wait: 1w
      - repeat: 1
`, "")
	require.NoError(t, err)
	p := c.EscalationPolicies()[0]
	require.Equal(t, 24*time.Hour, p.AckTimeout)
	require.Equal(t, 90*time.Minute, p.Steps[1].Wait)
	require.Equal(t, 7*24*time.Hour, p.Steps[3].Wait)
}
