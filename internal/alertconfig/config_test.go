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
	"github.com/modelmon/modelmon/classify"
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
	require.Equal(t, model.Duration(8*time.Hour+5*time.Minute), c.Intake.AlertmanagerResolveTimeout)
}

// intake.alertmanager_api checks every minute by default; 0 turns the
// checks off, and the HTTP settings are Prometheus's.
func TestLoadAlertmanagerAPI(t *testing.T) {
	for _, in := range []string{"", "intake: {resolve_timeout: 1m}\n", "intake: {alertmanager_api: {timeout: 10s}}\n"} {
		c, err := Load(in, "")
		require.NoError(t, err, in)
		require.Equal(t, model.Duration(time.Minute), c.Intake.AlertmanagerAPI.CheckInterval, in)
		require.Equal(t, model.Duration(10*time.Second), c.Intake.AlertmanagerAPI.Timeout, in)
		require.True(t, c.Intake.AlertmanagerAPI.HTTPClientConfig.FollowRedirects, in)
	}
	c, err := Load("intake:\n  alertmanager_api:\n    check_interval: 0s\n    basic_auth: {username: alertd, password_file: pw}\n", "/etc/alertd")
	require.NoError(t, err)
	require.Zero(t, c.Intake.AlertmanagerAPI.CheckInterval, "0 turns the checks off")
	require.Equal(t, "alertd", c.Intake.AlertmanagerAPI.HTTPClientConfig.BasicAuth.Username)
	require.Equal(t, "/etc/alertd/pw", c.Intake.AlertmanagerAPI.HTTPClientConfig.BasicAuth.PasswordFile)

	_, err = Load("intake: {alertmanager_api: {timeout: 0s}}\n", "")
	require.ErrorContains(t, err, "intake: alertmanager_api: timeout must be positive")
	_, err = Load("intake: {alertmanager_api: {check_interval: -1s}}\n", "")
	require.Error(t, err)
	_, err = Load("intake: {alertmanager_api: {bogus: 1}}\n", "")
	require.ErrorContains(t, err, "unknown field \"bogus\"")

	// Credentials go only to the Alertmanagers listed, never to the URL a
	// webhook delivery names.
	_, err = Load("intake:\n  alertmanager_api:\n    basic_auth: {username: alertd, password: pw}\n", "")
	require.ErrorContains(t, err, "intake: alertmanager_api: with credentials, urls must list the Alertmanagers they may go to")
	_, err = Load("intake:\n  alertmanager_api:\n    authorization: {credentials: tok}\n", "")
	require.ErrorContains(t, err, "urls must list")
	c, err = Load("intake:\n  alertmanager_api:\n    urls: ['http://am:9093/']\n    basic_auth: {username: alertd, password: pw}\n", "")
	require.NoError(t, err)
	api := c.Intake.AlertmanagerAPI
	require.True(t, api.Allows("http://am:9093"))
	require.True(t, api.Allows("http://am:9093/"))
	require.False(t, api.Allows("http://evil:9093"))
	require.True(t, DefaultAlertmanagerAPI.Allows("http://any:9093"), "without urls, any")
	_, err = Load("intake: {alertmanager_api: {urls: ['am:9093']}}\n", "")
	require.ErrorContains(t, err, `intake: alertmanager_api: urls[0] "am:9093" is not an http(s) URL`)
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
		{"undefined receiver", "route:\n  receiver: a\n  routes:\n    - receiver: a\n      routes: [{receiver: a}, {receiver: b}]\nreceivers: [{name: a}]\n", "line 5: route: undefined receiver \"b\" used in route"},
		{"duplicate receiver", "route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n", "line 2: receivers: receiver \"a\" is not unique"},
		{"root mute intervals", "time_intervals: [{name: n, time_intervals: [{}]}]\nroute: {receiver: a, mute_time_intervals: [n]}\nreceivers: [{name: a}]\n", "route: root route must not have any mute time intervals"},
		{"root active intervals", "time_intervals: [{name: n, time_intervals: [{}]}]\nroute: {receiver: a, active_time_intervals: [n]}\nreceivers: [{name: a}]\n", "route: root route must not have any active time intervals"},
		{"undefined interval", "route: {receiver: a, routes: [{receiver: a, mute_time_intervals: [nights]}]}\nreceivers: [{name: a}]\n", "line 1: route: undefined time interval \"nights\" used in mute_time_intervals"},
		{"undefined active interval", "time_intervals: [{name: days, time_intervals: [{}]}]\nroute: {receiver: a, routes: [{receiver: a, active_time_intervals: [days, nights]}]}\nreceivers: [{name: a}]\n", "line 2: route: undefined time interval \"nights\" used in active_time_intervals"},
		{"duplicate interval", "time_intervals: [{name: n, time_intervals: [{}]}]\nmute_time_intervals: [{name: n, time_intervals: [{}]}]\nroute: {receiver: a}\nreceivers: [{name: a}]\n", "line 2: mute_time_intervals: time interval \"n\" is not unique"},
		{"bad interval", "time_intervals: [{name: n, time_intervals: [{weekdays: [someday]}]}]\nroute: {receiver: a}\nreceivers: [{name: a}]\n", "line 1: time_intervals: entry 0: someday is not a valid weekday"},
		{"no route", "receivers: [{name: a}]\n", "route: no route provided for the receivers"},
		{"bad datasource", "datasource: {url: 'ftp://x'}\n", "line 1: datasource: invalid url \"ftp://x\": want http(s)://host[:port]"},
		{"bad am url", "route: {receiver: a}\nreceivers: [{name: a, alertmanager_configs: [{url: nope}]}]\n", "line 2: receivers[0].alertmanager_configs[0].url: alertmanager_configs: invalid url \"nope\": want http(s)://host[:port]"},
		{"bad smarthost", "route: {receiver: a}\nreceivers:\n  - name: a\n    email_configs:\n      - to: a@example.org\n        smarthost: nohost\n",
			"line 6: receivers[0].email_configs[0].smarthost: address nohost: missing port in address"},
		{"bad route matcher", "route:\n  receiver: a\n  routes:\n    - receiver: a\n    - receiver: a\n      matchers: ['a=\"b\"', 'model=~\"(\"']\nreceivers: [{name: a}]\n",
			"line 6: route.routes[1].matchers[1]: error parsing regexp: missing closing ): `^(?:()$`"},
		{"two values fail alike", "route: {receiver: a}\nreceivers:\n  - {name: a, email_configs: [{to: a@example.org, smarthost: nohost}]}\n  - {name: b, email_configs: [{to: a@example.org, smarthost: nohost}]}\n",
			"line 3: receivers[0].email_configs[0].smarthost: address nohost: missing port in address"},
		{"duplicate job", "scrape_configs:\n  - job_name: a\n  - job_name: a\n", "line 3: scrape_configs: found multiple scrape configs with job name \"a\""},
		{"anomaly without name", "anomaly_detectors: [{expr: up}]\n", "line 1: anomaly_detectors: entry 0 has no name"},
		{"anomaly duplicate", "anomaly_detectors:\n  - {name: a, expr: up}\n  - {name: a, expr: up}\n", "line 3: anomaly_detectors: name \"a\" is not unique"},
		{"anomaly bad expr", "anomaly_detectors: [{name: a, expr: 'up{'}]\n", "line 1: anomaly_detectors: \"a\": invalid expr: 1:4: parse error: unexpected end of input inside braces"},
		{"anomaly bad algorithm", "anomaly_detectors: [{name: a, expr: up, algorithm: nope}]\n", "line 1: anomaly_detectors: \"a\": unknown algorithm \"nope\" (have " + fmt.Sprint(anomaly.Algorithms()) + ")"},
		{"anomaly bad label", "anomaly_detectors: [{name: a, expr: up, labels: {detector: x}}]\n", "line 1: anomaly_detectors: \"a\": invalid label name \"detector\""},
		{"bad timeout", "global: {scrape_interval: 5s, scrape_timeout: 10s}\n", "line 1: global: global scrape timeout greater than scrape interval"},
		{"am integration without key", "route: {receiver: a}\nreceivers:\n  - name: a\n  - name: b\n    opsgenie_configs:\n      - message: hi\n",
			"line 6: receivers[1].opsgenie_configs[0]: receivers: no global OpsGenie API Key set either inline or in a file"},
		{"bad relabel regex", "route: {receiver: a}\nreceivers: [{name: a}]\nscrape_configs:\n  - job_name: a\n    relabel_configs: [{action: keep, regex: '('}]\n",
			"line 5: scrape_configs[0].relabel_configs[0].regex: error parsing regexp: missing closing ): `^(?s:()$`"},
		{"empty template", "templates: ['']\n", "line 1: templates: entry 0 is empty"},
		{"bad template glob", "templates: ['[']\n", "line 1: templates: invalid pattern \"[\": syntax error in pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in, "")
			require.EqualError(t, err, tc.err)
		})
	}
}

func TestLoadSuppression(t *testing.T) {
	c, err := Load(`
classification: {rules: []}
suppression:
  deploy: {hold: 15m, categories: [model_performance, data_quality]}
  learned: {threshold: 0.8}
maintenance_windows:
  - name: nightly retrain
    matchers: ['model="fraud"', 'category=~"drift|accuracy"']
    time_intervals:
      - times: [{start_time: "02:00", end_time: "04:00"}]
        weekdays: ['monday:friday']
        location: Europe/Berlin
      - days_of_month: ['1']
    expires_at: 2030-01-01T00:00:00Z
`, "")
	require.NoError(t, err)
	d := c.Suppression.Deploy
	require.Equal(t, model.Duration(15*time.Minute), d.Hold)
	require.Equal(t, "model", d.ModelLabel, "model_label defaults to model")
	require.Equal(t, []classify.Category{classify.CategoryModelPerformance, classify.CategoryDataQuality}, d.Categories)
	require.Equal(t, 0.8, c.Suppression.Learned.Threshold)
	require.Equal(t, model.Duration(4*time.Hour), c.Suppression.Learned.MaxHold, "max_hold defaults to 4h")
	require.Len(t, c.MaintenanceWindows, 1)
	w := c.MaintenanceWindows[0]
	require.Equal(t, "nightly retrain", w.Name)
	require.Len(t, w.TimeIntervals, 2)
	require.Equal(t, "Europe/Berlin", w.TimeIntervals[0].Location.String())
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	require.True(t, w.TimeIntervals[0].ContainsTime(time.Date(2025, 6, 3, 3, 0, 0, 0, berlin)), "Tuesday 03:00 in Berlin")
	require.False(t, w.TimeIntervals[0].ContainsTime(time.Date(2025, 6, 7, 3, 0, 0, 0, berlin)), "Saturday")
	require.Equal(t, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), w.ExpiresAt.UTC())

	c, err = Load("", "")
	require.NoError(t, err)
	require.Zero(t, c.Suppression.Learned.MaxHold, "off: no defaults")
	require.Zero(t, c.Suppression.Deploy.Hold)
}

// Bad suppression and maintenance window settings name the field and the
// line.
func TestLoadBadSuppression(t *testing.T) {
	const win = "maintenance_windows:\n  - name: w\n    matchers: ['a=\"b\"']\n"
	for _, tc := range []struct{ name, in, err string }{
		{"unknown deploy key", "suppression:\n  deploy: {hold: 1m, hodl: 2m}\n", "line 2: unknown field \"hodl\""},
		{"bad hold", "suppression:\n  deploy:\n    hold: 15 minutes\n", "line 3: suppression.deploy.hold: unknown unit \" minutes\" in duration \"15 minutes\""},
		{"bad max_hold", "suppression:\n  learned: {threshold: 0.5, max_hold: 4hours}\n", "line 2: suppression.learned.max_hold: unknown unit \"hours\" in duration \"4hours\""},
		{"unknown category", "suppression:\n  deploy:\n    categories:\n      - model_performance\n      - modell\n",
			"line 5: suppression: deploy: categories[1]: unknown category \"modell\", want one of [model_performance data_quality system_health business general]"},
		{"negative hold", "suppression:\n  deploy: {hold: -1m}\n", "line 2: suppression.deploy.hold: not a valid duration string: \"-1m\""},
		{"threshold above 1", "classification: {}\nsuppression:\n  learned:\n    threshold: 1.5\n", "line 4: suppression: learned: threshold 1.5 out of range (0, 1] (0 disables it)"},
		{"negative threshold", "classification: {}\nsuppression:\n  learned:\n    threshold: -0.1\n", "line 4: suppression: learned: threshold -0.1 out of range (0, 1] (0 disables it)"},
		{"learned without classification", "suppression:\n  learned:\n    threshold: 0.8\n",
			"line 3: suppression: learned: needs a classification section, whose false-positive probability it acts on"},
		{"unknown learned key", "suppression:\n  learned:\n    treshold: 0.8\n", "line 3: unknown field \"treshold\""},
		{"window without name", "maintenance_windows:\n  - matchers: ['a=\"b\"']\n", "line 2: maintenance_windows: entry 0 has no name"},
		{"window unknown key", win + "    time_intervals: [{}]\n    until: tomorrow\n", "line 5: unknown field \"until\""},
		{"inhibit unknown key", "inhibit_rules:\n  - source_matchers: ['severity=\"critical\"']\n    target_matcher: ['severity=\"warning\"']\n", "line 3: unknown field \"target_matcher\""},
		{"inhibit bad matcher", "inhibit_rules:\n  - source_matchers: ['severity=~\"(\"']\n", "line 2: inhibit_rules: entry 0: error parsing regexp: missing closing ): `^(?:()$`"},
		{"inhibit bad equal", "inhibit_rules:\n  - source_matchers: ['a=\"b\"']\n    equal: ['not a label']\n", "line 2: inhibit_rules: entry 0: invalid label name \"not a label\" in equal list"},
		{"window bad matcher", "maintenance_windows:\n  - name: w\n    matchers:\n      - 'a=\"b\"'\n      - 'c=~\"(\"'\n    time_intervals: [{}]\n",
			"line 5: maintenance_windows: entry 0 (\"w\"): matchers[1]: invalid matcher \"c=~\\\"(\\\"\": error parsing regexp: missing closing ): `^(?:()$`"},
		{"window matches everything", "maintenance_windows:\n  - name: w\n    matchers: ['a=\"\"']\n    time_intervals: [{}]\n",
			"line 3: maintenance_windows: entry 0 (\"w\"): matchers must not match the empty label set: at least one needs a non-empty value"},
		{"silence matches everything", "silences:\n  - matchers: ['a=~\".*\"']\n    ends_at: 2099-01-01T00:00:00Z\n",
			"line 2: silences: entry 0: matchers must not match the empty label set: at least one needs a non-empty value"},
		{"silence without matchers", "silences:\n  - ends_at: 2099-01-01T00:00:00Z\n  - matchers: []\n    ends_at: 2099-01-01T00:00:00Z\n",
			"line 2: silences: entry 0 has no matchers"},
		{"silence bad matcher", "silences:\n  - matchers:\n      - 'a=\"b\"'\n      - 'c=~\"(\"'\n    ends_at: 2099-01-01T00:00:00Z\n",
			"line 4: silences: entry 0: invalid matcher \"c=~\\\"(\\\"\": error parsing regexp: missing closing ): `^(?:()$`"},
		{"silence without end", "silences:\n  - matchers: ['a=\"b\"']\n    ends_at: 2099-01-01T00:00:00Z\n  - matchers: ['a=\"b\"']\n",
			"line 4: silences: entry 1: ends_at must be set and after starts_at"},
		{"flapping thresholds", "suppression:\n  flapping:\n    start_changes: 3\n    stop_changes: 5\n",
			"line 4: suppression: flapping: stop_changes (5) must be below start_changes (3)"},
		{"intake bad url", "intake:\n  alertmanager_api:\n    urls:\n      - http://am:9093\n      - am:9093\n",
			"line 5: intake.alertmanager_api.urls[1]: intake: alertmanager_api: urls[1] \"am:9093\" is not an http(s) URL"},
		{"window without intervals", win, "line 2: maintenance_windows: entry 0 (\"w\"): needs at least one time interval"},
		{"window bad time", win + "    time_intervals:\n      - weekdays: [monday]\n      - times: [{start_time: '25:00', end_time: '26:00'}]\n",
			"line 6: maintenance_windows: entry 0 (\"w\"): time_intervals[1]: couldn't parse timestamp 25:00, invalid format"},
		{"window bad weekday", win + "    time_intervals:\n      - weekdays: [someday]\n",
			"line 5: maintenance_windows: entry 0 (\"w\"): time_intervals[0]: someday is not a valid weekday"},
		{"window unknown interval key", win + "    time_intervals:\n      - weekday: [monday]\n",
			"line 5: maintenance_windows: entry 0 (\"w\"): time_intervals[0]: unknown field \"weekday\""},
		{"window bad location", win + "    time_intervals:\n      - location: Mars/Olympus\n",
			"line 5: maintenance_windows: entry 0 (\"w\"): time_intervals[0]: unknown time zone Mars/Olympus"},
		{"duplicate windows", win + "    time_intervals: [{}]\n  - name: w\n    matchers: ['c=\"d\"']\n    time_intervals: [{}]\n",
			"line 5: maintenance_windows: entry 1 (\"w\"): name is not unique"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.in, "")
			require.EqualError(t, err, tc.err)
		})
	}
}

// A value its own type refuses while the file is decoded (durations, byte
// sizes, regexps, matchers, URLs, label names, TLS versions, times, host
// and port, in Prometheus's, Alertmanager's and alertd's sections) is
// reported with the file, its line and its key; of values that fail alike,
// the first, where the decoder stops. So is a value of the wrong YAML type.
func TestLoadBadValue(t *testing.T) {
	const route = "route: {receiver: a}\nreceivers:\n  - name: a\n"
	for _, tc := range []struct{ name, in, line, key, reason string }{
		{"global duration", "global:\n  scrape_interval: -1s\n", "2", "global.scrape_interval", `not a valid duration string: "-1s"`},
		{"scrape duration", "scrape_configs:\n  - job_name: a\n    scrape_timeout: 5x\n", "3", "scrape_configs[0].scrape_timeout", `unknown unit "x" in duration "5x"`},
		{"byte size", "scrape_configs:\n  - job_name: a\n    body_size_limit: 10QB\n", "3", "scrape_configs[0].body_size_limit", "units: unknown unit QB in 10QB"},
		{"relabel regexp", "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - {target_label: x, regex: '('}\n", "4", "scrape_configs[0].relabel_configs[0].regex", "error parsing regexp: missing closing ): `^(?s:()$`"},
		{"relabel action", "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: nope\n", "4", "scrape_configs[0].relabel_configs[0].action", `unknown relabel action "nope"`},
		{"scrape proxy url", "scrape_configs:\n  - job_name: a\n    proxy_url: '%zz'\n", "3", "scrape_configs[0].proxy_url", `parse "%zz": invalid URL escape "%zz"`},
		{"datasource duration", "datasource:\n  url: http://prometheus:9090\n  timeout: 5x\n", "3", "datasource.timeout", `unknown unit "x" in duration "5x"`},
		{"datasource tls version", "datasource:\n  url: http://prometheus:9090\n  tls_config: {max_version: TLS99}\n", "3", "datasource.tls_config.max_version", "unknown TLS version: TLS99"},
		{"intake duration", "intake:\n  alertmanager_api:\n    check_interval: 1 minute\n", "3", "intake.alertmanager_api.check_interval", `unknown unit " minute" in duration "1 minute"`},
		{"anomaly duration", "anomaly_detectors:\n  - {name: a, expr: up, history: -1h}\n", "2", "anomaly_detectors[0].history", `not a valid duration string: "-1h"`},
		{"silence time", "silences:\n  - matchers: ['a=\"b\"']\n    starts_at: yesterday\n", "3", "silences[0].starts_at", `parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		{"suppression duration", "suppression:\n  flapping: {window: 5x}\n", "2", "suppression.flapping.window", `unknown unit "x" in duration "5x"`},
		{"route duration", "route:\n  receiver: a\n  group_wait: 5x\nreceivers: [{name: a}]\n", "3", "route.group_wait", `unknown unit "x" in duration "5x"`},
		{"route label name", "route:\n  receiver: a\n  group_by: [alertname, 'a b']\nreceivers: [{name: a}]\n", "3", "route.group_by[1]", `invalid label name "a b" in group_by list`},
		{"route matcher", "route:\n  receiver: a\n  matchers: ['a=~\"(\"']\nreceivers: [{name: a}]\n", "3", "route.matchers[0]", "error parsing regexp: missing closing ): `^(?:()$`"},
		{"route regexp", "route:\n  receiver: a\n  match_re: {a: '('}\nreceivers: [{name: a}]\n", "3", "route.match_re.a", "error parsing regexp: missing closing ): `^(?:()$`"},
		{"webhook url", route + "    webhook_configs:\n      - url: '%zz'\n", "5", "receivers[0].webhook_configs[0].url", `invalid URL: parse "%zz": invalid URL escape "%zz"`},
		{"secret url", route + "    discord_configs:\n      - webhook_url: '%zz'\n", "5", "receivers[0].discord_configs[0].webhook_url", `parse "%zz": invalid URL escape "%zz"`},
		{"smarthost", route + "    email_configs:\n      - {to: a@example.org, smarthost: nohost}\n", "5", "receivers[0].email_configs[0].smarthost", "address nohost: missing port in address"},
		{"receiver duration", route + "    slack_configs:\n      - {token: x, timeout: 5x}\n", "5", "receivers[0].slack_configs[0].timeout", `unknown unit "x" in duration "5x"`},
		{"global url", "global:\n  slack_api_url: '%zz'\n", "2", "global.slack_api_url", `parse "%zz": invalid URL escape "%zz"`},
		{"action duration", "actions:\n  - {name: a, type: webhook, url: 'http://x', cooldown: 5x}\n", "2", "actions[0].cooldown", `unknown unit "x" in duration "5x"`},
		{"escalation duration", route + "escalation_policies:\n  - name: p\n    steps:\n      - {notify: [a], wait: 5x}\n", "7", "escalation_policies[0].steps[0].wait", `unknown unit "x" in duration "5x"`},
		// yaml.v2's own type errors have a line; the key is found there.
		{"int", "anomaly_detectors:\n  - {name: a, expr: up, min_history: many}\n", "2", "anomaly_detectors[0].min_history", "cannot unmarshal !!str `many` into int"},
		{"uint", route + "    webhook_configs:\n      - {url: 'http://x', max_alerts: -1}\n", "5", "receivers[0].webhook_configs[0].max_alerts", "cannot unmarshal !!int `-1` into uint64"},
		{"bool", "anomaly_detectors:\n  - name: a\n    expr: up\n    reset_on_new_version: maybe\n", "4", "anomaly_detectors[0].reset_on_new_version", "cannot unmarshal !!str `maybe` into bool"},
		{"alike in two sections", "datasource: {url: 'http://x', timeout: 5x}\nintake: {resolve_timeout: 5x}\n", "1", "datasource.timeout", `unknown unit "x" in duration "5x"`},
		{"alike in two entries", "anomaly_detectors:\n  - {name: a, expr: up, interval: 5x}\n  - {name: b, expr: up, interval: 5x}\n", "2", "anomaly_detectors[0].interval", `unknown unit "x" in duration "5x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "alertd.yml")
			require.NoError(t, os.WriteFile(file, []byte(tc.in), 0o600))
			_, err := LoadFile(file)
			require.EqualError(t, err, file+":"+tc.line+": "+tc.key+": "+tc.reason)
		})
	}
}

// A template file that does not parse fails the load, naming it.
func TestLoadBadTemplateFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.tmpl"), []byte(`{{ define "x" }}{{ .Nope`), 0o644))
	_, err := Load("templates: ['*.tmpl']\n", dir)
	require.ErrorContains(t, err, "templates: ")
	require.ErrorContains(t, err, "bad.tmpl")
}

func TestLoadFileNamesFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "alertd.yml")
	require.NoError(t, writeFile(f, "route:\n  receiver: x\n  bogus: 1\nreceivers: [{name: x}]\n"))
	_, err := LoadFile(f)
	require.EqualError(t, err, f+":3: unknown field \"bogus\"")
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// Files of Alertmanager's integrations are relative to the configuration
// file, once, even when integrations share the global http_config.
func TestAlertmanagerIntegrationFiles(t *testing.T) {
	c, err := Load(`
global:
  opsgenie_api_key: k
  http_config: {tls_config: {ca_file: ca.pem}}
route: {receiver: a}
receivers:
  - name: a
    opsgenie_configs: [{}, {}]
    email_configs: [{to: x@example.org, smarthost: 'smtp:25', from: a@example.org, tls_config: {ca_file: smtp-ca.pem}}]
`, "conf")
	require.NoError(t, err)
	abs, err := filepath.Abs("conf")
	require.NoError(t, err)
	r := c.Receivers[0]
	for _, og := range r.OpsGenieConfigs {
		require.Equal(t, filepath.Join(abs, "ca.pem"), og.HTTPConfig.TLSConfig.CAFile)
	}
	require.Equal(t, filepath.Join(abs, "smtp-ca.pem"), r.EmailConfigs[0].TLSConfig.CAFile)
}
