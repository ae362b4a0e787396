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
	var out bytes.Buffer
	passed, err := RunPolicyTests(context.Background(), []string{"testdata/policy/pass.yml"}, &out, nil)
	require.NoError(t, err)
	require.True(t, passed, out.String())
	require.Equal(t, "Unit Testing:  testdata/policy/pass.yml\n  SUCCESS\n\n", out.String())

	out.Reset()
	passed, err = RunPolicyTests(context.Background(), []string{"testdata/policy/fail.yml"}, &out, nil)
	require.NoError(t, err)
	require.False(t, passed)
	require.Equal(t, `Unit Testing:  testdata/policy/fail.yml
  FAILED:
    name: the blip pages,
        exp: {alertname="ErrorsHigh", model="a"} fired_at: 40m, outcome: paged, not among the firings:
            {alertname="ErrorsHigh", model="a"} fired_at: 10m, resolved_at: 30m, outcome: paged
            {alertname="ErrorsHigh", model="a"} fired_at: 40m, resolved_at: 42m, outcome: suppressed, suppressed_by: hold
    name: the blip pages,
        got an unexpected firing: {alertname="ErrorsHigh", model="a"} fired_at: 40m, resolved_at: 42m, outcome: suppressed, suppressed_by: hold
    name: the blip pages,
        summary pages: exp 2, got 1

`, out.String())
}

func TestPolicyTestsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", "config: x.yml\ntests: []\nwho: me\n", "field who not found"},
		{"no config", "tests: []\n", "config is required"},
		{"bad series", "config: ../../testdata/policy/alertd.yml\ntests:\n  - input_series: [{series: 'errors{', values: '1'}]\n", `input series "errors{"`},
		{"bad outcome", "config: alertd.yml\ntests:\n  - input_series: [{series: 'e', values: '1'}]\n    exp_firings: [{alertname: A, outcome: lost}]\n", `outcome "lost": paged, grouped, suppressed or unrouted`},
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
