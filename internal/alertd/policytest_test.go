package alertd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A policy test runs the configuration's rules and suppression stages over
// its series and checks the firings and their outcomes, one to one.
func TestPolicyTests(t *testing.T) {
	requirePolicyReport(t, "testdata/policy/pass.yml", true, "Unit Testing:  testdata/policy/pass.yml\n  SUCCESS\n\n")
	requirePolicyReport(t, "testdata/policy/fail.yml", false, `Unit Testing:  testdata/policy/fail.yml
  FAILED:
    name: the blip pages,
        exp: {alertname="ErrorsHigh", model="a"} fired_at: 40m, outcome: paged, not among the firings:
            {alertname="ErrorsHigh", model="a"} fired_at: 10m, resolved_at: 30m, outcome: paged
            {alertname="ErrorsHigh", model="a"} fired_at: 40m, resolved_at: 42m, outcome: suppressed, suppressed_by: hold
    name: the blip pages,
        got an unexpected firing: {alertname="ErrorsHigh", model="a"} fired_at: 40m, resolved_at: 42m, outcome: suppressed, suppressed_by: hold
    name: the blip pages,
        summary pages: exp 2, got 1

`)
}

// requirePolicyReport runs one policy test file and checks whether it
// passed and its report, verbatim.
func requirePolicyReport(t *testing.T, file string, pass bool, want string) {
	t.Helper()
	var out bytes.Buffer
	passed, err := RunPolicyTests(context.Background(), []string{file}, &out, nil)
	require.NoError(t, err)
	require.Equal(t, pass, passed, out.String())
	require.Equal(t, want, out.String())
}

// exp_escalations checks the steps of the escalation policies, one to one,
// on the replay's clock: two levels, a wait and a repeat, a chain cut short
// by the resolution, none for a suppressed alert; a failure says what was
// expected and lists what escalated.
func TestPolicyTestsEscalation(t *testing.T) {
	requirePolicyReport(t, "testdata/policy/escalation-pass.yml", true, "Unit Testing:  testdata/policy/escalation-pass.yml\n  SUCCESS\n\n")
	requirePolicyReport(t, "testdata/policy/escalation-fail.yml", false, `Unit Testing:  testdata/policy/escalation-fail.yml
  FAILED:
    name: ml-lead is paged after 10 minutes,
        exp: at: 25m, event: escalate, level: 2, receivers: [ml-lead], not among the escalations:
            {alertname="ErrorsHigh", model="a"} at: 15m, policy: model-errors, event: trigger, level: 1, receivers: [ml-oncall], iteration: 0
            {alertname="ErrorsHigh", model="a"} at: 25m, policy: model-errors, event: resolve, level: 1, receivers: [ml-oncall], iteration: 0
    name: ml-lead is paged after 10 minutes,
        got an unexpected escalation: {alertname="ErrorsHigh", model="a"} at: 25m, policy: model-errors, event: resolve, level: 1, receivers: [ml-oncall], iteration: 0
    name: ml-lead is paged after 10 minutes,
        summary escalations: exp 2, got 1
    name: an acknowledgement of another model's incident,
        acknowledgement at 20m of {model="b"} acknowledged no open escalated incident

`)
}

func TestPolicyTestsBadInput(t *testing.T) {
	dir := t.TempDir()
	demo, err := filepath.Abs("testdata/policy/alertd.yml") // without escalation policies
	require.NoError(t, err)
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", "config: x.yml\ntests: []\nwho: me\n", "field who not found"},
		{"no config", "tests: []\n", "config is required"},
		{"bad series", "config: ../../testdata/policy/alertd.yml\ntests:\n  - input_series: [{series: 'errors{', values: '1'}]\n", `input series "errors{"`},
		{"bad outcome", "config: alertd.yml\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n    exp_firings: [{alertname: A, outcome: lost}]\n", `outcome "lost": paged, grouped, suppressed or unrouted`},
		{"bad event", "config: alertd.yml\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n    exp_escalations: [{at: 1m, event: acknowledged}]\n", `exp_escalations[0]: event "acknowledged": trigger, escalate, repeat, acknowledge, resolve or action`},
		{"acknowledgement without policies", "config: " + demo + "\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n    acknowledgements: [{at: 1m, by: alice}]\n", "acknowledgements need escalation policies"},
		{"no event", "config: alertd.yml\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n    exp_escalations: [{at: 1m, level: 1}]\n", "exp_escalations[0]: event is required"},
		{"action of a notification", "config: alertd.yml\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n    exp_escalations: [{event: trigger, action: rollback}]\n", `action "rollback": only for event action, not trigger`},
		{"missing config", "config: nope.yml\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n", "nope.yml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, tc.name+".yml")
			require.NoError(t, os.WriteFile(f, []byte(tc.body), 0o644))
			var out bytes.Buffer
			passed, err := RunPolicyTests(context.Background(), []string{f}, &out, nil)
			require.False(t, passed)
			require.ErrorContains(t, err, tc.want)
			require.Contains(t, out.String(), "FAILED")
		})
	}
}
