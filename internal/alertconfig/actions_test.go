package alertconfig

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/internal/actions"
)

func TestLoadActions(t *testing.T) {
	c, err := Load(`
actions:
  - name: retrain-fraud
    type: github_repository_dispatch
    repository: acme/models
    token_file: secrets/github
    inputs:
      model: '{{ .Labels.model }}'
    trigger:
      matchers: ['category="data_quality"', 'model=~"fraud|churn"']
    verify: {within: 30m, on_failure: rollback-fraud}
  - name: rollback-fraud
    type: gitlab_pipeline
    project: acme/ml
    trigger_token: glptt-s3cr3t
    cooldown: 0s
    approval: {required: true}
  - name: nightly
    type: airflow_dag_run
    url: http://airflow:8080
    dag_id: retrain
    trigger:
      schedule: {every: 24h, offset: 2h, labels: {model: fraud}}
  - name: hook
    type: webhook
    url: https://ci.example/hook
    secret: whs3cr3t
    daily_budget: 3
    payload: '{"model": {{ json .Labels.model }}}'
    verify: {within: 1h}
`, "/etc/alertd")
	require.NoError(t, err)
	require.Len(t, c.Actions, 4)
	r := c.Actions[0]
	require.Equal(t, "https://api.github.com", r.URL, "GitHub's API by default")
	require.Equal(t, "retrain-fraud", r.EventType, "event_type defaults to the name")
	require.Equal(t, "/etc/alertd/secrets/github", r.TokenFile, "relative to the configuration file")
	require.Equal(t, time.Hour, r.CooldownDuration())
	require.Equal(t, 10, r.DailyBudget)
	require.Equal(t, model.Duration(10*time.Second), r.Timeout)
	require.Len(t, r.Trigger.Parsed, 2)
	require.True(t, r.Trigger.Parsed.Matches(model.LabelSet{"category": "data_quality", "model": "churn"}))
	require.Equal(t, "rollback-fraud", r.Verify.OnFailure)
	require.NotNil(t, r.Target().Inputs["model"])

	g := c.Actions[1]
	require.Equal(t, "https://gitlab.com", g.URL)
	require.Equal(t, "main", g.Ref)
	require.Zero(t, g.CooldownDuration(), "0s disables the cooldown")
	require.True(t, g.Approval.Required)
	require.Equal(t, model.Duration(24*time.Hour), g.Approval.Timeout)

	n := c.Actions[2]
	require.Equal(t, model.Duration(24*time.Hour), n.Trigger.Schedule.Every)
	require.Equal(t, map[string]string{"model": "fraud"}, n.Trigger.Schedule.Labels)

	h := c.Actions[3]
	require.Equal(t, 3, h.DailyBudget)
	require.Equal(t, OnFailureEscalate, h.Verify.OnFailure, "escalate by default")
	require.Equal(t, actions.TypeWebhook, h.Target().Type)

	// Secrets never show when the configuration is written out.
	b, err := yaml.Marshal(c.Actions)
	require.NoError(t, err)
	require.NotContains(t, string(b), "glptt-s3cr3t")
	require.NotContains(t, string(b), "whs3cr3t")
}

// Bad actions name the field and the line.
func TestLoadBadActions(t *testing.T) {
	const gh = "actions:\n  - name: a\n    type: github_repository_dispatch\n    repository: acme/models\n    token: x\n"
	for _, tc := range []struct{ name, in, err string }{
		{"unknown key", gh + "    tokne: y\n", "line 6: unknown field \"tokne\""},
		{"no name", "actions:\n  - type: webhook\n", "line 2: actions: entry 0 has no name"},
		{"bad name", "actions:\n  - name: 're train'\n    type: webhook\n", "line 2: actions: \"re train\": invalid name: want letters, digits, '_', '.' and '-'"},
		{"duplicate", gh + "  - name: a\n    type: webhook\n    url: http://x\n    secret: s\n", "line 6: actions: \"a\": name is not unique"},
		{"unknown type", "actions:\n  - name: a\n    type: jenkins\n",
			"line 3: actions: \"a\": unknown type \"jenkins\", want one of [github_repository_dispatch github_workflow_dispatch gitlab_pipeline argo_workflow airflow_dag_run webhook]"},
		{"field of another type", gh + "    dag_id: x\n", "line 6: actions: \"a\": dag_id is not used by type github_repository_dispatch"},
		{"no repository", "actions:\n  - name: a\n    type: github_workflow_dispatch\n    token: x\n    workflow: w.yml\n",
			"line 2: actions: \"a\": type github_workflow_dispatch needs repository"},
		{"bad repository", "actions:\n  - name: a\n    type: github_repository_dispatch\n    repository: acme\n    token: x\n",
			"line 4: actions: \"a\": invalid repository \"acme\": want owner/name"},
		{"no token", "actions:\n  - name: a\n    type: github_repository_dispatch\n    repository: acme/m\n",
			"line 2: actions: \"a\": type github_repository_dispatch needs token or token_file"},
		{"token and file", gh + "    token_file: /t\n", "line 6: actions: \"a\": at most one of token and token_file must be configured"},
		{"gitlab without trigger token", "actions:\n  - name: a\n    type: gitlab_pipeline\n    project: '1'\n",
			"line 2: actions: \"a\": type gitlab_pipeline needs trigger_token or trigger_token_file"},
		{"argo without url", "actions:\n  - name: a\n    type: argo_workflow\n    namespace: ml\n    workflow_template: t\n",
			"line 2: actions: \"a\": type argo_workflow needs a url"},
		{"bad url", "actions:\n  - name: a\n    type: webhook\n    url: ftp://x\n    secret: s\n",
			"line 4: actions: \"a\": invalid url \"ftp://x\": want http(s)://host[:port][/path]"},
		{"unsigned webhook", "actions:\n  - name: a\n    type: webhook\n    url: http://x\n",
			"line 2: actions: \"a\": type webhook needs secret or secret_file to sign its requests"},
		{"bad matcher", gh + "    trigger:\n      matchers: ['model=~\"(\"']\n",
			"line 7: actions: \"a\": trigger: matchers[0]: invalid matcher \"model=~\\\"(\\\"\": error parsing regexp: missing closing ): `^(?:()$`"},
		{"matches everything", gh + "    trigger:\n      matchers: ['model=~\".*\"']\n",
			"line 7: actions: \"a\": trigger: matchers must not match the empty label set: at least one needs a non-empty value"},
		{"short schedule", gh + "    trigger:\n      schedule: {every: 30s}\n", "line 7: actions: \"a\": trigger: schedule: every must be at least 1m"},
		{"bad offset", gh + "    trigger:\n      schedule:\n        every: 1h\n        offset: 2h\n",
			"line 9: actions: \"a\": trigger: schedule: offset must be at least 0s and less than every (1h)"},
		{"bad duration", gh + "    cooldown: 1 hour\n", "line 6: actions[0].cooldown: unknown unit \" hour\" in duration \"1 hour\""},
		{"negative budget", gh + "    daily_budget: -1\n", "line 6: actions: \"a\": daily_budget must not be negative (0 takes the default, 10)"},
		{"verify without within", gh + "    verify: {on_failure: escalate}\n", "line 6: actions: \"a\": verify: within must be set and positive"},
		{"verify unknown action", gh + "    verify:\n      within: 30m\n      on_failure: rollback\n",
			"line 8: actions: \"a\": verify: on_failure must be \"escalate\" or the name of another action, not \"rollback\""},
		{"bad input template", gh + "    inputs:\n      model: '{{ .Labels.model '\n",
			"line 7: actions: \"a\": inputs: \"model\": template: model:1: unclosed action"},
		{"too many inputs", gh + "    inputs: {a: x, b: x, c: x, d: x, e: x, f: x, g: x, h: x, i: x, j: x, k: x}\n",
			"line 6: actions: \"a\": inputs has 11 keys; GitHub's client_payload takes at most 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in, "")
			require.EqualError(t, err, tc.err)
		})
	}
}

func TestLoadActionsSecretFileRelative(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "alertd.yml")
	require.NoError(t, writeFile(f, "actions:\n  - name: a\n    type: webhook\n    url: http://x\n    secret_file: hook.secret\n"))
	c, err := LoadFile(f)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "hook.secret"), c.Actions[0].SecretFile)
}
