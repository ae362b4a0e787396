package alertconfig

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	yamlv2 "go.yaml.in/yaml/v2"
)

func TestLoadSlackAndPagerDuty(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "token"), []byte("xoxb-from-file\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "signing"), []byte("s1gn1ng"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pd"), []byte("R0UT1NG"), 0o600))
	f := filepath.Join(dir, "alertd.yml")
	require.NoError(t, os.WriteFile(f, []byte(`
route: {receiver: team}
receivers:
  - name: team
    slack_configs:
      - token_file: token
        channel: "#ml-alerts"
        signing_secret_file: signing
      - webhook_url: https://hooks.slack.com/services/T/B/XYZ
        send_resolved: false
        title: '{{ .CommonLabels.alertname | toUpper }}'
    pagerduty_configs:
      - routing_key_file: pd
      - routing_key: inline-key
        url: http://127.0.0.1:8080/v2/enqueue
        severity: warning
        severity_by_priority: {critical: critical}
`), 0o600))
	c, err := LoadFile(f)
	require.NoError(t, err)
	r := c.Receivers[0]
	require.Len(t, r.SlackConfigs, 2)
	s := r.SlackConfigs[0]
	require.Equal(t, DefaultSlackAPIURL, s.APIURL)
	require.Equal(t, commoncfg.Secret("xoxb-from-file"), s.Token, "token_file is read at load, trimmed")
	require.Equal(t, commoncfg.Secret("s1gn1ng"), s.SigningSecret)
	require.True(t, s.WebAPI())
	require.True(t, s.SendResolved(), "send_resolved defaults to true")
	require.Equal(t, model.Duration(10*time.Second), s.Timeout)
	require.False(t, r.SlackConfigs[1].WebAPI())
	require.False(t, r.SlackConfigs[1].SendResolved())

	p := r.PagerDutyConfigs[0]
	require.Equal(t, DefaultPagerDutyURL, p.URL)
	require.Equal(t, commoncfg.Secret("R0UT1NG"), p.RoutingKey)
	require.Equal(t, "error", p.Severity)
	require.Equal(t, map[string]string{"critical": "critical", "high": "error", "medium": "warning", "low": "info"}, p.SeverityByPriority)
	require.True(t, p.SendResolved())
	require.Equal(t, "warning", r.PagerDutyConfigs[1].Severity)
	require.Equal(t, map[string]string{"critical": "critical"}, r.PagerDutyConfigs[1].SeverityByPriority)

	// The configuration as served hides every secret.
	out, err := yamlv2.Marshal(c.Receivers)
	require.NoError(t, err)
	for _, secret := range []string{"xoxb-from-file", "s1gn1ng", "R0UT1NG", "inline-key", "XYZ"} {
		require.NotContains(t, string(out), secret)
	}
	require.Contains(t, string(out), "<secret>")
}

func TestLoadBadReceivers(t *testing.T) {
	const head = "route: {receiver: r}\nreceivers:\n  - name: r\n"
	for _, tc := range []struct{ name, in, err string }{
		{"slack unknown field", head + "    slack_configs:\n      - token: x\n        chanel: '#a'\n", "line 6: unknown field \"chanel\""},
		{"slack no mode", head + "    slack_configs:\n      - channel: '#a'\n", "line 5: receivers: \"r\": slack_configs[0]: one of token, token_file (Web API), webhook_url or webhook_url_file (incoming webhook) must be configured"},
		{"slack both modes", head + "    slack_configs:\n      - token: xoxb-s3cret\n        webhook_url: https://hooks.example/s3cret\n", "line 5: receivers: \"r\": slack_configs[0]: one of token (Web API) and webhook_url (incoming webhook) must be configured, not both"},
		{"slack token without channel", head + "    slack_configs:\n      - token: xoxb-s3cret\n", "line 5: receivers: \"r\": slack_configs[0]: channel is required with a token"},
		{"slack token and file", head + "    slack_configs:\n      - token: xoxb-s3cret\n        token_file: /nope\n        channel: '#a'\n", "line 6: receivers: \"r\": slack_configs[0]: at most one of token and token_file must be configured"},
		{"slack missing file", head + "    slack_configs:\n      - token_file: /nonexistent/s3cret\n        channel: '#a'\n", "line 5: receivers: \"r\": slack_configs[0]: couldn't read token_file: open /nonexistent/s3cret: no such file or directory"},
		{"slack bad webhook", head + "    slack_configs:\n      - webhook_url: 'ftp://s3cret'\n", "line 5: receivers: \"r\": slack_configs[0]: invalid webhook_url: want http(s)://host[:port]/path"},
		{"slack bad template", head + "    slack_configs:\n      - webhook_url: https://x/s3cret\n        text: '{{ .Foo '\n", "line 6: receivers: \"r\": slack_configs[0]: invalid text template: template: text:1: unclosed action"},
		{"pagerduty no key", head + "    pagerduty_configs:\n      - severity: critical\n", "line 5: receivers: \"r\": pagerduty_configs[0]: one of routing_key and routing_key_file must be configured"},
		{"pagerduty bad severity", head + "    pagerduty_configs:\n      - routing_key: s3cret\n        severity: page\n", "line 6: receivers: \"r\": pagerduty_configs[0]: invalid severity \"page\", want one of [critical error warning info]"},
		{"pagerduty bad mapping", head + "    pagerduty_configs:\n      - routing_key: s3cret\n        severity_by_priority:\n          high: urgent\n", "line 7: receivers: \"r\": pagerduty_configs[0]: severity_by_priority: invalid severity \"urgent\" for \"high\", want one of [critical error warning info]"},
		{"pagerduty bad url", head + "    pagerduty_configs:\n      - routing_key: s3cret\n        url: nope\n", "line 6: receivers: \"r\": pagerduty_configs[0]: url: invalid url \"nope\": want http(s)://host[:port]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in, "")
			require.EqualError(t, err, tc.err)
			require.NotContains(t, err.Error(), "s3cret\"", "no secret in errors")
		})
	}
}
