package driftcli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/rules"
)

// sloTest checks the generated SLO rules with `promtool test rules` and
// alertd's runner alike. Evaluations fall 30 s after the samples, so that
// Prometheus 2's closed and Prometheus 3's left-open windows hold the same
// samples, and the error ratios are exact: errors over requests between the
// same two samples.
const sloTest = `rule_files: [ALERTS]
evaluation_interval: 30s
tests:
  # fraud (availability 0.999): 600 requests a minute; every one fails from
  # minute 121 to 150.
  - name: fast burn
    interval: 1m
    input_series:
      - series: 'modelmon_requests_total{model="fraud",instance="a"}'
        values: '0+600x300'
      - series: 'modelmon_prediction_errors_total{model="fraud",reason="upstream_5xx",instance="a"}'
        values: '0x120 600+600x29 18000x150'
      # Clients' bad requests, 5 % all along: their fault, not the
      # service's, so they spend none of the budget.
      - series: 'modelmon_prediction_errors_total{model="fraud",reason="upstream_4xx",instance="a"}'
        values: '0+30x300'
      - series: 'modelmon_model_info{model="fraud",version="v1",instance="a"}'
        values: '1x300'
    promql_expr_test:
      - expr: modelmon:slo_objective
        eval_time: 10m30s
        exp_samples:
          - labels: 'modelmon:slo_objective{model="fraud",slo="availability"}'
            value: 0.999
      # 18,000 errors of 179,400 requests (samples 0 to 299): 10.03 %
      # against a budget of 0.1 %.
      - expr: modelmon:slo_error_budget_remaining:ratio
        eval_time: 299m30s
        exp_samples:
          - labels: 'modelmon:slo_error_budget_remaining:ratio{model="fraud",slo="availability"}'
            value: -99.33444816053512
    alert_rule_test:
      - eval_time: 120m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      # Samples 66 to 125: 3,000 errors of 35,400 requests, the errors'
      # rate extrapolated to 59.5 minutes (a counter is not extrapolated
      # back past zero), the requests' to 60.
      - eval_time: 125m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: fraud, slo: availability, severity: page, category: availability}
            exp_annotations:
              summary: Model fraud spends its availability error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'fraud: 8.404% of its prediction requests failed over the alert''s long window, against an error budget of 0.1% over 30d (objective 0.999): at this rate the period''s error budget is gone within days.'
      # Half an hour after the outage the short windows are clean: resolved.
      - eval_time: 185m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []

  # slow (availability 0.999): 0.4 % of its requests fail all along, four
  # times the rate that spends the budget in 30 days: a ticket, no page.
  - name: slow burn
    interval: 1m
    input_series:
      - series: 'modelmon_requests_total{model="slow",instance="a"}'
        values: '0+600x300'
      - series: 'modelmon_prediction_errors_total{model="slow",reason="timeout",instance="a"}'
        values: '0+2.4x300'
    alert_rule_test:
      - eval_time: 150m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      - eval_time: 150m30s
        alertname: ModelSLOBurnRateElevated
        exp_alerts:
          - exp_labels: {model: slow, slo: availability, severity: ticket, category: availability}
            exp_annotations:
              summary: Model slow spends its availability error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnrateelevated
              description: 'slow: 0.4% of its prediction requests failed over the alert''s long window, against an error budget of 0.1% over 30d (objective 0.999): at this rate the period''s error budget is gone before the period ends.'

  # lat (99 % within 0.1 s): half take longer from minute 61.
  - name: latency
    interval: 1m
    input_series:
      - series: 'modelmon_prediction_duration_seconds_count{model="lat",instance="a"}'
        values: '0+600x300'
      - series: 'modelmon_prediction_duration_seconds_bucket{model="lat",le="0.1",instance="a"}'
        values: '0+600x60 36300+300x239'
    alert_rule_test:
      # The six-hour page needs 6 times the 1 % budget: with the 69 minutes
      # there are, 9 of them half slow: 2,700 of 41,400 (6.522 %); at 68,
      # 2,400 of 40,800 (5.88 %).
      - eval_time: 68m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      - eval_time: 69m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: lat, slo: latency, severity: page, category: performance}
            exp_annotations:
              summary: Model lat spends its latency error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'lat: 6.522% of its prediction requests took longer than 0.1s over the alert''s long window, against an error budget of 1% over 30d (objective 0.99): at this rate the period''s error budget is gone within days.'

  # low (availability 0.9): six clean hours, then every request fails from
  # minute 361. The hour's pair would need 14.4 times the 10 % budget, more
  # than every request; capped at 90 % it pages 54 minutes into the
  # outage. The six hours' pair (60 %) would take until about minute 576.
  - name: low objective outage
    interval: 1m
    input_series:
      - series: 'modelmon_requests_total{model="low",instance="a"}'
        values: '0+600x480'
      - series: 'modelmon_prediction_errors_total{model="low",reason="upstream_5xx",instance="a"}'
        values: '0x360 600+600x120'
    alert_rule_test:
      # Samples 354 to 413: 31,800 errors of 35,400 requests, the errors'
      # rate extrapolated to 59.5 minutes (not back past zero), the
      # requests' to 60: 89.08 %. A minute later, 90.76 %.
      - eval_time: 413m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      - eval_time: 414m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: low, slo: availability, severity: page, category: availability}
            exp_annotations:
              summary: Model low spends its availability error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'low: 90.76% of its prediction requests failed over the alert''s long window, against an error budget of 10% over 30d (objective 0.9): at this rate the period''s error budget is gone within days.'

  # acc (accuracy 0.9): 8 of 10 labelled predictions wrong. The one-hour
  # page would need 14.4 times a 10 % budget, more than all of them; the
  # six-hour one, 60 %, fires.
  - name: accuracy
    interval: 1m
    input_series:
      - series: 'modelmon_prediction_outcome_total{model="acc",predicted="yes",actual="no",instance="a"}'
        values: '0+80x300'
      - series: 'modelmon_prediction_outcome_total{model="acc",predicted="yes",actual="yes",instance="a"}'
        values: '0+20x300'
      - series: 'modelmon_prediction_correct_total{model="acc",class="yes",instance="a"}'
        values: '0+20x300'
    alert_rule_test:
      - eval_time: 30m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: acc, slo: accuracy, severity: page, category: accuracy}
            exp_annotations:
              summary: Model acc spends its accuracy error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'acc: 80% of its labelled predictions were wrong over the alert''s long window, against an error budget of 10% over 30d (objective 0.9): at this rate the period''s error budget is gone within days.'

  # reg (95 % of labelled numeric predictions off by at most 1; classic
  # buckets 0.5, 1, 2): 100 labels a minute, every one off by more than 1
  # from minute 61. The six hours' pair (6 × 5 % = 30 %) pages first: over
  # samples 0 to N, 100·N labels, 6,000 of them good, so 1 − 60/N, above
  # 0.3 from N = 86 (26 of 86 minutes bad: 30.23 %; at 85, 29.41 %). The
  # hour's pair (72 %) would wait for N = 103.
  - name: regression outage
    interval: 1m
    input_series:
      - series: 'modelmon_prediction_error_magnitude_count{model="reg",instance="a"}'
        values: '0+100x300'
      - series: 'modelmon_prediction_error_magnitude_bucket{model="reg",le="1",instance="a"}'
        values: '0+100x60 6000x240'
      - series: 'modelmon_model_info{model="reg",version="v1",instance="a"}'
        values: '1x300'
    promql_expr_test:
      - expr: modelmon:slo_objective{slo="regression"}
        eval_time: 10m30s
        exp_samples:
          - labels: 'modelmon:slo_objective{model="reg",slo="regression"}'
            value: 0.95
    alert_rule_test:
      - eval_time: 85m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      - eval_time: 86m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: reg, slo: regression, severity: page, category: accuracy}
            exp_annotations:
              summary: Model reg spends its regression error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'reg: 30.23% of its labelled numeric predictions were off by more than 1 over the alert''s long window, against an error budget of 5% over 30d (objective 0.95): at this rate the period''s error budget is gone within days.'

  # regslow (95 % within 1): 10 % off by more all along, twice the budget's
  # rate: above the three days' pair (5 %), below the day's (15 %) and the
  # pages' (30 %, 72 %): a ticket, no page.
  - name: regression slow burn
    interval: 1m
    input_series:
      - series: 'modelmon_prediction_error_magnitude_count{model="regslow",instance="a"}'
        values: '0+100x300'
      - series: 'modelmon_prediction_error_magnitude_bucket{model="regslow",le="1",instance="a"}'
        values: '0+90x300'
    alert_rule_test:
      - eval_time: 150m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      - eval_time: 150m30s
        alertname: ModelSLOBurnRateElevated
        exp_alerts:
          - exp_labels: {model: regslow, slo: regression, severity: ticket, category: accuracy}
            exp_annotations:
              summary: Model regslow spends its regression error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnrateelevated
              description: 'regslow: 10% of its labelled numeric predictions were off by more than 1 over the alert''s long window, against an error budget of 5% over 30d (objective 0.95): at this rate the period''s error budget is gone before the period ends.'

  # regok (95 % within 2): 3 % off by more, within the 5 % budget: no page,
  # no ticket. Its bucket at 2 is written 2.0, as Prometheus 3 writes it.
  - name: regression within its objective
    interval: 1m
    input_series:
      - series: 'modelmon_prediction_error_magnitude_count{model="regok",instance="a"}'
        values: '0+100x300'
      - series: 'modelmon_prediction_error_magnitude_bucket{model="regok",le="2.0",instance="a"}'
        values: '0+97x300'
    alert_rule_test:
      - eval_time: 299m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts: []
      - eval_time: 299m30s
        alertname: ModelSLOBurnRateElevated
        exp_alerts: []
`

// The SLO rules generated from a configuration pass promtool, and, run by
// `promtool test rules` and by alertd's runner, page on a fast burn of the
// error budget within minutes, open a ticket on a slow one, resolve once
// the short windows are clean, and record the budget left; the regression
// SLO pages a total failure, tickets a slow burn and leaves a model within
// its objective alone.
func TestSLORules(t *testing.T) {
	dir, alerts := writeQualityAlerts(t, `
models:
  - name: fraud
    slos: {availability: 0.999}
  - name: slow
    slos: {availability: 0.999}
  - name: lat
    slos: {latency: 0.99, latency_threshold: 0.1}
  - name: acc
    slos: {accuracy: 0.9}
  - name: low
    slos: {availability: 0.9}
  - name: reg
    error_buckets: [0.5, 1, 2]
    slos: {regression: 0.95, regression_threshold: 1}
  - name: regslow
    error_buckets: [0.5, 1, 2]
    slos: {regression: 0.95, regression_threshold: 1}
  - name: regok
    error_buckets: [0.5, 1, 2]
    slos: {regression: 0.95, regression_threshold: 2}
`)
	testFile := filepath.Join(dir, "slo_test.yml")
	require.NoError(t, os.WriteFile(testFile, bytes.ReplaceAll([]byte(sloTest), []byte("ALERTS"), []byte(alerts)), 0o644))

	var report bytes.Buffer
	passed, err := rules.RunTests([]string{testFile}, rules.TestOptions{Out: &report})
	require.NoError(t, err)
	require.True(t, passed, report.String())

	promtool := prometheustest.Promtool(t)
	b, err := exec.Command(promtool, "check", "rules", alerts).CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "SUCCESS: 88 rules found")
	b, err = exec.Command(promtool, "test", "rules", testFile).CombinedOutput()
	require.NoError(t, err, string(b))
}

func TestSLOConfig(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`{availability: 1}`, "models[0].slos.availability must be at least 0 and below 1, got 1"},
		{`{latency: 0.99}`, "models[0].slos: latency and latency_threshold go together"},
		{`{latency: 0.99, latency_threshold: 0.2}`, "models[0].slos.latency_threshold 0.2 is not a bucket of modelmon_prediction_duration_seconds"},
		{`{accuracy: 0.9, period: 1h}`, "models[0].slos.period must be at least 1d, got 1h"},
		{`{regression: 0.95}`, "models[0].slos: regression and regression_threshold go together"},
		{`{regression_threshold: 2}`, "models[0].slos: regression and regression_threshold go together"},
		{`{regression: 1, regression_threshold: 2}`, "models[0].slos.regression must be at least 0 and below 1, got 1"},
		{`{regression: 0.95, regression_threshold: -2}`, "models[0].slos.regression_threshold must be a positive finite number, got -2"},
		{`{regression: 0.95, regression_threshold: .inf}`, "models[0].slos.regression_threshold must be a positive finite number, got +Inf"},
		{`{regression: 0.95, regression_threshold: .nan}`, "models[0].slos.regression_threshold must be a positive finite number, got NaN"},
		// With classic buckets, the threshold must be one of them.
		{"{regression: 0.95, regression_threshold: 3}\n    error_buckets: [1, 2, 5]", "models[0].slos.regression_threshold 3 is not a bucket of models[0].error_buckets ([1 2 5])"},
		{"{regression: 0.95, regression_threshold: 2}\n    error_buckets: [2, 1]", "models[0].error_buckets: must be finite and increasing, got [2 1]"},
	} {
		_, err := config.Load("models:\n  - name: m\n    slos: " + tc.yaml + "\n")
		require.ErrorContains(t, err, tc.want, tc.yaml)
	}
	// Without classic buckets any threshold will do: the native histogram
	// has every scale.
	for _, yaml := range []string{`{regression: 0.95, regression_threshold: 3}`, "{regression: 0.95, regression_threshold: 5}\n    error_buckets: [1, 2, 5]"} {
		_, err := config.Load("models:\n  - name: m\n    slos: " + yaml + "\n")
		require.NoError(t, err, yaml)
	}
}

// A Prometheus that keeps only the native histogram (no _bucket series)
// gets the latency SLO from histogram_fraction. Run by alertd's runner:
// promtool 2.42 takes no native histograms in input series.
func TestSLORulesNativeHistogram(t *testing.T) {
	dir, alerts := writeQualityAlerts(t, "models:\n  - name: lat\n    slos: {latency: 0.99, latency_threshold: 0.1}\n")
	// Schema 0: bucket -4 is (0.03125, 0.0625], below 0.1; bucket -2 is
	// (0.125, 0.25], above. Half of 600 requests a minute in each.
	test := `rule_files: [` + alerts + `]
evaluation_interval: 30s
tests:
  - interval: 1m
    input_series:
      - series: 'modelmon_prediction_duration_seconds{model="lat",instance="a"}'
        values: '{{schema:0 count:0 sum:0 offset:-4 buckets:[0 0 0]}}+{{schema:0 count:600 sum:75 offset:-4 buckets:[300 0 300]}}x60'
    promql_expr_test:
      - expr: modelmon:slo_error_ratio:rate5m
        eval_time: 10m30s
        exp_samples:
          - labels: 'modelmon:slo_error_ratio:rate5m{model="lat",slo="latency"}'
            value: 0.5
    alert_rule_test:
      - eval_time: 10m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: lat, slo: latency, severity: page, category: performance}
            exp_annotations:
              summary: Model lat spends its latency error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'lat: 50% of its prediction requests took longer than 0.1s over the alert''s long window, against an error budget of 1% over 30d (objective 0.99): at this rate the period''s error budget is gone within days.'
`
	testFile := filepath.Join(dir, "native_test.yml")
	require.NoError(t, os.WriteFile(testFile, []byte(test), 0o644))
	var report bytes.Buffer
	passed, err := rules.RunTests([]string{testFile}, rules.TestOptions{Out: &report})
	require.NoError(t, err)
	require.True(t, passed, report.String())
}

// A model without error_buckets has the native histogram of its errors
// alone, and its regression SLO comes from histogram_fraction. Exact
// predictions go to the zero bucket, [-z, z]: the fraction is taken from
// -Inf, or a model whose every error in the window is 0 would have half
// of them counted as off (histogram_fraction from 0 cuts a zero bucket in
// half when there are no other buckets). Run by alertd's runner: promtool
// 2.42 takes no native histograms in input series.
func TestSLORegressionNativeHistogram(t *testing.T) {
	dir, alerts := writeQualityAlerts(t, `models:
  - name: half
    slos: {regression: 0.95, regression_threshold: 1}
  - name: exact
    slos: {regression: 0.95, regression_threshold: 1}
`)
	// half: schema 0, bucket -1 is (0.25, 0.5], below 1; bucket 2 is
	// (2, 4], above. Half of 100 labels a minute in each. exact: every
	// error 0, in the zero bucket of client_golang's width.
	test := `rule_files: [` + alerts + `]
evaluation_interval: 30s
tests:
  - interval: 1m
    input_series:
      - series: 'modelmon_prediction_error_magnitude{model="half",instance="a"}'
        values: '{{schema:0 count:0 sum:0 offset:-1 buckets:[0 0 0 0]}}+{{schema:0 count:100 sum:175 offset:-1 buckets:[50 0 0 50]}}x60'
      - series: 'modelmon_prediction_error_magnitude{model="exact",instance="a"}'
        values: '{{schema:3 count:0 sum:0 z_bucket:0 z_bucket_w:2.938735877055719e-39}}+{{schema:3 count:100 sum:0 z_bucket:100 z_bucket_w:2.938735877055719e-39}}x60'
    promql_expr_test:
      - expr: modelmon:slo_error_ratio:rate5m
        eval_time: 10m30s
        exp_samples:
          - labels: 'modelmon:slo_error_ratio:rate5m{model="half",slo="regression"}'
            value: 0.5
          - labels: 'modelmon:slo_error_ratio:rate5m{model="exact",slo="regression"}'
            value: 0
    alert_rule_test:
      - eval_time: 10m30s
        alertname: ModelSLOBurnRateHigh
        exp_alerts:
          - exp_labels: {model: half, slo: regression, severity: page, category: accuracy}
            exp_annotations:
              summary: Model half spends its regression error budget too fast.
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsloburnratehigh
              description: 'half: 50% of its labelled numeric predictions were off by more than 1 over the alert''s long window, against an error budget of 5% over 30d (objective 0.95): at this rate the period''s error budget is gone within days.'
`
	testFile := filepath.Join(dir, "native_test.yml")
	require.NoError(t, os.WriteFile(testFile, []byte(test), 0o644))
	var report bytes.Buffer
	passed, err := rules.RunTests([]string{testFile}, rules.TestOptions{Out: &report})
	require.NoError(t, err)
	require.True(t, passed, report.String())
	// Without classic buckets there is no _bucket series to read first.
	b, err := os.ReadFile(alerts)
	require.NoError(t, err)
	require.NotContains(t, string(b), "modelmon_prediction_error_magnitude_bucket")
}

// A pair's threshold is burn rate × (1 − objective), capped at an error
// ratio of 0.9 where that is out of reach or nearly so (objectives of
// 0.93 or less over 30 days, or lower ones over longer periods). The cap
// changes no threshold below it: 0.999's are the workbook's.
func TestSLOThresholds(t *testing.T) {
	thresholdRE := regexp.MustCompile(`modelmon:slo_error_ratio:rate(\w+)\{[^}]*\} > (\S+)`)
	for _, tc := range []struct {
		slos         string
		page, ticket [2]string // the thresholds of the 1h and 6h, 1d and 3d pairs
	}{
		{`{availability: 0.999}`, [2]string{"0.0144", "0.006"}, [2]string{"0.003", "0.001"}},
		{`{availability: 0.95}`, [2]string{"0.72", "0.3"}, [2]string{"0.15", "0.05"}},
		{`{availability: 0.94}`, [2]string{"0.864", "0.36"}, [2]string{"0.18", "0.06"}},
		// 14.4 × 0.1 is 1.44; 6 × 0.1, 0.6, stays.
		{`{availability: 0.9}`, [2]string{"0.9", "0.6"}, [2]string{"0.3", "0.1"}},
		{`{availability: 0.5}`, [2]string{"0.9", "0.9"}, [2]string{"0.9", "0.5"}},
		// Over 90 days the hour's burn rate is 43.2: 2.16 for 0.95.
		{`{availability: 0.95, period: 90d}`, [2]string{"0.9", "0.9"}, [2]string{"0.45", "0.15"}},
		{`{availability: 0.999, period: 365d}`, [2]string{"0.1752", "0.073"}, [2]string{"0.0365", "0.0121666666667"}},
	} {
		c, err := config.Load("models:\n  - name: m\n    slos: " + tc.slos + "\n")
		require.NoError(t, err)
		got := map[string][]string{}
		for _, r := range SLORules(c) {
			for _, m := range thresholdRE.FindAllStringSubmatch(r.Expr, -1) {
				got[r.Alert] = append(got[r.Alert], m[1]+" > "+m[2])
			}
		}
		require.Equal(t, map[string][]string{
			"ModelSLOBurnRateHigh":     {"1h > " + tc.page[0], "5m > " + tc.page[0], "6h > " + tc.page[1], "30m > " + tc.page[1]},
			"ModelSLOBurnRateElevated": {"1d > " + tc.ticket[0], "2h > " + tc.ticket[0], "3d > " + tc.ticket[1], "6h > " + tc.ticket[1]},
		}, got, tc.slos)
	}

	// The whole page expression of a 0.999 objective, as before the cap.
	c, err := config.Load("models:\n  - name: m\n    slos: {availability: 0.999}\n")
	require.NoError(t, err)
	var page string
	for _, r := range SLORules(c) {
		if r.Alert == "ModelSLOBurnRateHigh" {
			page = r.Expr
		}
	}
	require.Equal(t, `(
  modelmon:slo_error_ratio:rate1h{model="m", slo="availability"} > 0.0144
  and
  modelmon:slo_error_ratio:rate5m{model="m", slo="availability"} > 0.0144
)
or
(
  modelmon:slo_error_ratio:rate6h{model="m", slo="availability"} > 0.006
  and
  modelmon:slo_error_ratio:rate30m{model="m", slo="availability"} > 0.006
)`, page)
}
