package alertd

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The query API answers bad parameters and failing queries with
// Prometheus's error envelope, status and errorType.
func TestQueryAPIBadInput(t *testing.T) {
	t.Parallel()
	a := startAlertd(t, intakeConfig, nil, nil)
	for _, tc := range []struct {
		name   string
		path   string
		code   int
		typ    string
		errMsg string
	}{
		{"bad PromQL", "/api/v1/query?query=" + url.QueryEscape("sum(up"), 400, "bad_data",
			"invalid parameter \"query\": 1:7: parse error: unclosed left parenthesis"},
		{"empty query", "/api/v1/query?query=", 400, "bad_data",
			"invalid parameter \"query\": unknown position: parse error: no expression found in input"},
		{"bad time", "/api/v1/query?query=up&time=yesterday", 400, "bad_data",
			"invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"},
		{"bad timeout", "/api/v1/query?query=up&timeout=soon", 400, "bad_data",
			"invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration"},
		// As Prometheus's API: no unit below milliseconds.
		{"timeout in ns", "/api/v1/query?query=up&timeout=1ns", 400, "bad_data",
			"invalid parameter \"timeout\": cannot parse \"1ns\" to a valid duration"},
		{"timeout", "/api/v1/query?query=up&timeout=0.000000001", 503, "timeout",
			"query timed out in query execution"},
		{"execution error", "/api/v1/query?query=" + url.QueryEscape(`label_replace(vector(1), "a", "$1", "b", "(")`), 422, "execution",
			"invalid regular expression in label_replace(): ("},
		{"range: no start", "/api/v1/query_range?query=up&end=100&step=1", 400, "bad_data",
			"invalid parameter \"start\": missing"},
		{"range: bad end", "/api/v1/query_range?query=up&start=0&end=later&step=1", 400, "bad_data",
			"invalid parameter \"end\": cannot parse \"later\" to a valid timestamp"},
		{"range: end before start", "/api/v1/query_range?query=up&start=100&end=10&step=1", 400, "bad_data",
			"end timestamp must not be before start time"},
		{"range: bad step", "/api/v1/query_range?query=up&start=0&end=100&step=often", 400, "bad_data",
			"invalid parameter \"step\": cannot parse \"often\" to a valid duration"},
		{"range: no step", "/api/v1/query_range?query=up&start=0&end=100", 400, "bad_data",
			"invalid parameter \"step\": cannot parse \"\" to a valid duration"},
		{"range: zero step", "/api/v1/query_range?query=up&start=0&end=100&step=0", 400, "bad_data",
			"zero or negative query resolution step widths are not accepted. Try a positive integer"},
		{"range: negative step", "/api/v1/query_range?query=up&start=0&end=100&step=-1", 400, "bad_data",
			"zero or negative query resolution step widths are not accepted. Try a positive integer"},
		{"range: too many points", "/api/v1/query_range?query=up&start=0&end=100000&step=1", 400, "bad_data",
			"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"},
		{"range: bad PromQL", "/api/v1/query_range?query=" + url.QueryEscape("rate(up)") + "&start=0&end=100&step=1", 400, "bad_data",
			"invalid parameter \"query\": 1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"},
		{"range: timeout", "/api/v1/query_range?query=up&start=0&end=100&step=1&timeout=0.000000001", 503, "timeout",
			"query timed out in query execution"},
		{"series: no match", "/api/v1/series", 400, "bad_data",
			"no match[] parameter provided"},
		{"series: bad match", "/api/v1/series?match[]=" + url.QueryEscape("up{"), 400, "bad_data",
			"invalid parameter \"match[]\": 1:4: parse error: unexpected end of input inside braces"},
		{"series: bad start", "/api/v1/series?match[]=up&start=x", 400, "bad_data",
			"invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"},
		{"labels: bad match", "/api/v1/labels?match[]=" + url.QueryEscape(`{__name__=~"("}`), 400, "bad_data",
			"invalid parameter \"match[]\": 1:2: parse error: error parsing regexp: missing closing ): `(`"},
		{"label values: bad end", "/api/v1/label/job/values?end=x", 400, "bad_data",
			"invalid parameter \"end\": cannot parse \"x\" to a valid timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r := apiGet(t, a.URL+tc.path)
			require.Equal(t, tc.code, code, r.Error)
			require.Equal(t, apiResponse{Status: "error", ErrorType: tc.typ, Error: tc.errMsg}, r)
		})
	}
	code, _ := get(t, a.URL+"/-/healthy")
	require.Equal(t, http.StatusOK, code)
}

// A rule file that does not parse stops New with an error naming the file
// and the line.
func TestNewBadRuleFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		rules string
		want  string // {{FILE}} is the rule file's path
	}{
		{
			name: "bad PromQL",
			rules: `groups:
  - name: g
    rules:
      - alert: Broken
        expr: sum(up
`,
			want: `couldn't load rule files: {{FILE}}: 5:15: group "g", rule 1, "Broken": could not parse expression: 1:7: parse error: unclosed left parenthesis`,
		},
		{
			name: "unknown field",
			rules: `groups:
  - name: g
    rules:
      - alert: Broken
        expr: up == 0
        severity: page
`,
			want: `couldn't load rule files: {{FILE}}: yaml: unmarshal errors:
  line 6: field severity not found in type rulefmt.Rule`,
		},
		{
			// rulefmt knows no line for template errors, only the rule.
			name: "bad template",
			rules: `groups:
  - name: g
    rules:
      - alert: Broken
        expr: up == 0
        annotations:
          summary: "{{ $labels.instance "
`,
			want: `couldn't load rule files: {{FILE}}: group "g", rule 1, "Broken": annotation "summary": template: __alert_Broken:1: unclosed action`,
		},
		{
			// Both positions, record's and alert's, as rulefmt gives them.
			name: "record and alert",
			rules: `groups:
  - name: g
    rules:
      - record: a
        alert: b
        expr: "1"
`,
			want: `couldn't load rule files: {{FILE}}: 4:17: 5:16: group "g", rule 1, "b": only one of 'record' and 'alert' must be set`,
		},
		{
			// Prometheus's rulefmt reports a YAML syntax error twice;
			// rules.Check keeps one.
			name: "not YAML",
			rules: `groups:
  - name: g
    rules: [
`,
			want: `couldn't load rule files: {{FILE}}: yaml: line 3: did not find expected node content`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "alertd.yml", "rule_files: [rules.yml]\n")
			file := writeFile(t, dir, "rules.yml", tc.rules)
			o, _ := newOptions(t, dir)
			a, err := New(o)
			require.Nil(t, a)
			require.EqualError(t, err, strings.ReplaceAll(tc.want, "{{FILE}}", file))
		})
	}
}

// A reload with a broken rule file keeps the running rules evaluating and
// sets alertd_config_last_reload_successful to 0; fixing it reloads.
func TestReloadBrokenRuleFile(t *testing.T) {
	t.Parallel()
	good := `groups:
  - name: g
    rules:
      - record: job:one
        expr: vector(1)
`
	a := startAlertd(t, intakeConfig+"rule_files: [rules.yml]\n", map[string]string{"rules.yml": good}, nil)
	lastEval := func() time.Time {
		gs := a.rules(t)
		require.Len(t, gs, 1)
		return gs[0].LastEvaluation
	}
	require.Eventually(t, func() bool { return !lastEval().IsZero() }, 30*time.Second, 20*time.Millisecond)
	ok, _ := metric(t, a.Registry(), "alertd_config_last_reload_successful")
	require.Equal(t, 1.0, ok)

	file := filepath.Join(a.Dir, "rules.yml")
	writeFile(t, a.Dir, "rules.yml", strings.Replace(good, "vector(1)", "vector(", 1))
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, `failed to reload config: couldn't load rule files: `+file+`: 5:15: group "g", rule 1, "job:one": could not parse expression: 1:8: parse error: unclosed left parenthesis`+"\n", body)
	ok, _ = metric(t, a.Registry(), "alertd_config_last_reload_successful")
	require.Zero(t, ok)

	// The old rule still evaluates.
	before := lastEval()
	require.Eventually(t, func() bool { return lastEval().After(before) }, 30*time.Second, 20*time.Millisecond)
	gs := a.rules(t)
	require.Len(t, gs[0].Rules, 1)
	require.Equal(t, "vector(1)", gs[0].Rules[0].Query)
	require.Equal(t, "ok", gs[0].Rules[0].Health)

	// SIGHUP's path, Reload, reports the same; fixing the file reloads.
	require.Error(t, a.Reload())
	writeFile(t, a.Dir, "rules.yml", strings.Replace(good, "vector(1)", "vector(2)", 1))
	require.NoError(t, a.Reload())
	ok, _ = metric(t, a.Registry(), "alertd_config_last_reload_successful")
	require.Equal(t, 1.0, ok)
	require.Equal(t, "vector(2)", a.rules(t)[0].Rules[0].Query)
}

// A reload of a configuration with a value its type refuses answers with
// the file, the line and the key (of the first, when two fail alike), as
// check-config does, and keeps the running configuration.
func TestReloadBadConfigValue(t *testing.T) {
	t.Parallel()
	a := startAlertd(t, intakeConfig, nil, nil)
	file := filepath.Join(a.Dir, "alertd.yml")
	writeFile(t, a.Dir, "alertd.yml", intakeConfig+"suppression:\n  flapping:\n    window: 5x\n  min_firing_duration: 5x\n")
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, `failed to reload config: couldn't load configuration (--config.file="`+file+`"): `+file+`:5: suppression.flapping.window: unknown unit "x" in duration "5x"`+"\n", body)
	ok, _ := metric(t, a.Registry(), "alertd_config_last_reload_successful")
	require.Zero(t, ok)
}

// A template that fails when the alert is evaluated does not stop the
// alert: as in Prometheus, the annotation carries the error.
func TestTemplateErrorAtEvaluation(t *testing.T) {
	t.Parallel()
	a := startAlertd(t, intakeConfig+"rule_files: [rules.yml]\n", map[string]string{"rules.yml": `groups:
  - name: g
    rules:
      - alert: BadTemplate
        expr: label_replace(vector(1), "model", "fraud", "", "")
        annotations:
          summary: "Model {{ $labels.model }} took {{ $labels.model | humanizeDuration }}"
          ok: "value {{ $value }}"
`}, nil)
	var al alertJSON
	require.Eventually(t, func() bool {
		var ok bool
		al, ok = a.alert(t, "BadTemplate", SourceRule)
		return ok
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, "firing", al.State)
	require.Equal(t, "value 1", string(al.Annotations["ok"]))
	require.Equal(t, `<error expanding template: error executing template __alert_BadTemplate: template: __alert_BadTemplate:1:162: executing "__alert_BadTemplate" at <humanizeDuration>: error calling humanizeDuration: strconv.ParseFloat: parsing "fraud": invalid syntax>`,
		string(al.Annotations["summary"]))
	rule := findRule(t, a.rules(t), "BadTemplate")
	require.Equal(t, "ok", rule.Health)
}

// A rule whose query times out reports health "err" with the error and
// counts the failure; alertd keeps running.
func TestRuleQueryTimeout(t *testing.T) {
	t.Parallel()
	a := startAlertd(t, intakeConfig+"rule_files: [rules.yml]\n", map[string]string{"rules.yml": `groups:
  - name: slow
    rules:
      - alert: NeverEvaluated
        expr: vector(1)
      - record: job:never
        expr: vector(1)
`}, func(o *Options) { o.QueryTimeout = time.Nanosecond })
	group := filepath.Join(a.Dir, "rules.yml") + ";slow"
	var failures float64
	require.Eventually(t, func() bool {
		failures, _ = metric(t, a.Registry(), "prometheus_rule_evaluation_failures_total", "rule_group", group)
		return failures >= 2
	}, 30*time.Second, 20*time.Millisecond)
	gs := a.rules(t)
	require.Len(t, gs, 1)
	for _, r := range gs[0].Rules {
		require.Equal(t, "err", r.Health, r.Name)
		require.Equal(t, "query timed out in query execution", r.LastError, r.Name)
		require.False(t, r.LastEvaluation.IsZero(), r.Name)
	}
	require.Eventually(t, func() bool {
		v, _ := metric(t, a.Registry(), "prometheus_rule_evaluation_failures_total", "rule_group", group)
		return v > failures
	}, 30*time.Second, 20*time.Millisecond, "failures stopped being counted")
	require.Empty(t, a.alerts(t))
	code, _ := get(t, a.URL+"/-/healthy")
	require.Equal(t, http.StatusOK, code)
}

// A silence of the configuration file that would select every alert is an
// error of the file, which check-config reports; a reload with one keeps
// the whole running configuration, routes included.
func TestReloadSilenceMatchingEverything(t *testing.T) {
	t.Parallel()
	old, next := newHook(t), newHook(t)
	a := startAlertd(t, routes(old, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	bad := routes(next, nil, `
silences:
  - matchers: ['team=~".*"']
    ends_at: 2099-01-01T00:00:00Z
`)
	file := writeFile(t, a.Dir, "alertd.yml", bad)
	_, _, err := CheckConfig(file)
	require.ErrorContains(t, err, "matchers must not match the empty label set", "check-config refuses what alertd refuses")

	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code, body)
	require.Contains(t, body, "matchers must not match the empty label set")
	ok, _ := metric(t, a.Registry(), "alertd_config_last_reload_successful")
	require.Zero(t, ok)

	// The old routes still deliver, to the old receiver only.
	postAlert(t, a, `{"alertname":"AfterBadReload"}`)
	old.wait(t, "AfterBadReload", "firing", 30*time.Second)
	require.Zero(t, next.notifications("AfterBadReload", "firing"), "nothing of the rejected file is live")
}
