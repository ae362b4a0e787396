package escalate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPolicyValidate(t *testing.T) {
	notify := Step{Notify: []string{"l1"}}
	wait := Step{Wait: time.Minute}
	for _, tc := range []struct {
		name string
		p    Policy
		err  string
	}{
		{"good", Policy{Name: "p", Matchers: []string{`priority="critical"`}, Steps: []Step{notify, wait, {Repeat: 5}, {Action: "retrain"}}, AckTimeout: time.Hour}, ""},
		{"only an action", Policy{Name: "p", Steps: []Step{{Action: "retrain"}}}, ""},
		{"no name", Policy{Steps: []Step{notify}}, "name: missing"},
		{"no steps", Policy{Name: "p"}, "steps: a policy needs at least one step"},
		{"bad matcher", Policy{Name: "p", Matchers: []string{`a="b"`, `c=~"("`}, Steps: []Step{notify}},
			"matchers[1]: bad matchers \"c=~\\\"(\\\"\": invalid regular expression \"(\": error parsing regexp: missing closing ): `^(?:()$`"},
		{"empty step", Policy{Name: "p", Steps: []Step{notify, {}}}, "steps[1]: want exactly one of notify, wait, repeat and action, got 0"},
		{"two kinds", Policy{Name: "p", Steps: []Step{{Notify: []string{"a"}, Wait: time.Minute}}}, "steps[0]: want exactly one of notify, wait, repeat and action, got 2"},
		{"no receivers", Policy{Name: "p", Steps: []Step{{Notify: []string{}}}}, "steps[0]: notify: no receivers"},
		{"empty receiver", Policy{Name: "p", Steps: []Step{{Notify: []string{"a", ""}}}}, "steps[0]: notify: receiver 1 has no name"},
		{"negative wait", Policy{Name: "p", Steps: []Step{notify, {Wait: -time.Second}}}, "steps[1]: wait: must be positive, got -1s"},
		{"repeat too often", Policy{Name: "p", Steps: []Step{notify, wait, {Repeat: 6}}}, "steps[2]: repeat: 6 out of range [1, 5]"},
		{"negative repeat", Policy{Name: "p", Steps: []Step{notify, wait, {Repeat: -1}}}, "steps[2]: repeat: -1 out of range [1, 5]"},
		{"repeat without wait", Policy{Name: "p", Steps: []Step{notify, {Repeat: 2}, wait}}, "steps[1]: repeat: needs a wait step before it"},
		{"negative ack timeout", Policy{Name: "p", Steps: []Step{notify}, AckTimeout: -time.Minute}, "ack_timeout: must not be negative, got -1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tc.err)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
		})
	}
	_, err := New([]Policy{{Name: "a", Steps: []Step{notify}}, {Name: "a", Steps: []Step{notify}}}, Options{})
	require.EqualError(t, err, `policy 1 ("a"): name is not unique`)
	_, err = New([]Policy{{Name: "a"}}, Options{})
	require.EqualError(t, err, `policy 0 ("a"): steps: a policy needs at least one step`)
}

// Policies match the labels of the alert that opened the incident and its
// classification; the first that matches wins.
func TestMatch(t *testing.T) {
	steps := []Step{{Notify: []string{"r"}}}
	e, err := New([]Policy{
		{Name: "critical", Matchers: []string{`priority="critical"`}, Steps: steps},
		{Name: "ml", Matchers: []string{`category=~"model_performance|data_quality"`, `team="ml"`}, Steps: steps},
		{Name: "fallback", Matchers: []string{`severity!="info"`}, Steps: steps},
	}, Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		s    Subject
		want string
	}{
		{"classified critical", Subject{Labels: map[string]string{"priority": "low"}, Priority: "critical"}, "critical"},
		{"a priority label without classification", Subject{Labels: map[string]string{"priority": "critical"}}, "critical"},
		{"category and label", Subject{Labels: map[string]string{"team": "ml"}, Priority: "high", Category: "data_quality"}, "ml"},
		{"category but not team", Subject{Labels: map[string]string{"team": "web"}, Category: "data_quality"}, "fallback"},
		{"nothing", Subject{Labels: map[string]string{"severity": "info"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := e.Match(tc.s)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.want != "", ok)
		})
	}
}

func TestKey(t *testing.T) {
	k := Key("inc", "p", 0, 1, EventTrigger)
	require.Len(t, k, 32)
	require.Equal(t, k, Key("inc", "p", 0, 1, EventTrigger))
	for _, other := range []string{
		Key("inc2", "p", 0, 1, EventTrigger), Key("inc", "q", 0, 1, EventTrigger), Key("inc", "p", 1, 1, EventTrigger),
		Key("inc", "p", 0, 2, EventTrigger), Key("inc", "p", 0, 1, EventEscalate),
		// Fields are length-prefixed: no two tuples run together.
		Key("in", "cp", 0, 1, EventTrigger),
	} {
		require.NotEqual(t, k, other)
	}
}
