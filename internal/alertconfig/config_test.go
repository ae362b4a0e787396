package alertconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/anomaly"
)

func TestLoadFileGood(t *testing.T) {
	c, err := LoadFile("testdata/good.yml")
	require.NoError(t, err)
	require.Equal(t, model.Duration(5*time.Second), c.Global.EvaluationInterval)
	require.Equal(t, model.Duration(5*time.Second), c.Global.ScrapeTimeout, "scrape_timeout is capped by scrape_interval")
	abs, err := filepath.Abs("testdata/rules/*.yml")
	require.NoError(t, err)
	got, err := filepath.Abs(c.RuleFiles[0])
	require.NoError(t, err)
	require.Equal(t, abs, got, "rule files are relative to the config file")
	require.Len(t, c.ScrapeConfigs, 1)
	require.Equal(t, model.Duration(5*time.Second), c.ScrapeConfigs[0].ScrapeInterval)
	require.Equal(t, "hook", c.Route.Receiver)
	require.Equal(t, "http://127.0.0.1:5001/", string(c.Receivers[0].WebhookConfigs[0].URL))
	require.True(t, c.Receivers[1].AlertmanagerConfigs[0].SendResolved())
	require.Equal(t, model.Duration(10*time.Second), c.Receivers[1].AlertmanagerConfigs[0].Timeout)
	require.Equal(t, model.Duration(5*time.Minute), c.Intake.ResolveTimeout)
}

func TestLoadAnomalyDefaults(t *testing.T) {
	c, err := Load("global: {evaluation_interval: 30s}\nanomaly_detectors: [{name: a, expr: up}]\n", "")
	require.NoError(t, err)
	d := c.AnomalyDetectors[0]
	require.Equal(t, model.Duration(30*time.Second), d.Interval)
	require.Equal(t, anomaly.Default, d.Algorithm)
	require.Equal(t, model.Duration(24*time.Hour), *d.History)
	require.Equal(t, 1000, d.MaxSeries)
	require.True(t, *d.ResetOnNewVersion)
}

func TestLoadEmpty(t *testing.T) {
	c, err := Load("", "")
	require.NoError(t, err)
	require.Equal(t, "none", c.Route.Receiver)
	require.Equal(t, model.Duration(time.Minute), c.Global.EvaluationInterval)
	require.Equal(t, model.Duration(30*time.Second), c.Datasource.Timeout)
}

func TestLoadBad(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{"unknown fields", "foo: 1\nroute:\n  bogus: 2\n", "line 1: unknown field \"foo\"\nline 3: unknown field \"bogus\""},
		{"root matchers", "route: {receiver: a, matchers: ['x=\"1\"']}\nreceivers: [{name: a}]\n", "route: root route must not have any matchers"},
		{"undefined receiver", "route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]\n", "route: undefined receiver \"b\" used in route"},
		{"duplicate receiver", "route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n", "receivers: receiver \"a\" is not unique"},
		{"no route", "receivers: [{name: a}]\n", "route: no route provided for the receivers"},
		{"bad datasource", "datasource: {url: 'ftp://x'}\n", "datasource: invalid url \"ftp://x\": want http(s)://host[:port]"},
		{"bad am url", "route: {receiver: a}\nreceivers: [{name: a, alertmanager_configs: [{url: nope}]}]\n", "alertmanager_configs: invalid url \"nope\": want http(s)://host[:port]"},
		{"duplicate job", "scrape_configs: [{job_name: a}, {job_name: a}]\n", "scrape_configs: found multiple scrape configs with job name \"a\""},
		{"anomaly without name", "anomaly_detectors: [{expr: up}]\n", "anomaly_detectors: entry 0 has no name"},
		{"anomaly duplicate", "anomaly_detectors: [{name: a, expr: up}, {name: a, expr: up}]\n", "anomaly_detectors: name \"a\" is not unique"},
		{"anomaly bad expr", "anomaly_detectors: [{name: a, expr: 'up{'}]\n", "anomaly_detectors: \"a\": invalid expr: 1:4: parse error: unexpected end of input inside braces"},
		{"anomaly bad algorithm", "anomaly_detectors: [{name: a, expr: up, algorithm: nope}]\n", "anomaly_detectors: \"a\": unknown algorithm \"nope\" (have " + fmt.Sprint(anomaly.Algorithms()) + ")"},
		{"anomaly bad label", "anomaly_detectors: [{name: a, expr: up, labels: {detector: x}}]\n", "anomaly_detectors: \"a\": invalid label name \"detector\""},
		{"bad timeout", "global: {scrape_interval: 5s, scrape_timeout: 10s}\n", "global scrape timeout greater than scrape interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in, "")
			require.EqualError(t, err, tc.err)
		})
	}
}

func TestLoadFileNamesFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "alertd.yml")
	require.NoError(t, writeFile(f, "route:\n  receiver: x\n  bogus: 1\nreceivers: [{name: x}]\n"))
	_, err := LoadFile(f)
	require.EqualError(t, err, f+":3: unknown field \"bogus\"")
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
