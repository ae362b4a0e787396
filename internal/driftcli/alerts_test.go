package driftcli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/modelmon/modelmon/classify"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/rules"
)

// writeQualityAlerts writes the rules `exporter alerts` makes of the
// configuration cfg into a temporary directory: it returns the directory
// and the rule file.
func writeQualityAlerts(t *testing.T, cfg string) (dir, file string) {
	t.Helper()
	c, err := config.Load(cfg)
	require.NoError(t, err)
	out, err := QualityAlerts(c)
	require.NoError(t, err)
	dir = t.TempDir()
	file = filepath.Join(dir, "alerts.yml")
	require.NoError(t, os.WriteFile(file, out, 0o644))
	return dir, file
}

// qualityEvalOrder has a test evaluate the shipped recording rules before
// the generated alerts at each step. The alerts' descriptions query the
// recording rules, whose value at a step depends on which group ran first,
// and promtool runs unlisted groups in random order: the descriptions read
// the step's or the step before's values by chance (690 labels in the last
// day instead of 700, one run in a few).
const qualityEvalOrder = "group_eval_order: [modelmon_quality, modelmon_quality_alerts]\n"

// testRules runs the unit tests in file with `promtool test rules` and with
// alertd's runner (`alertd test rules`), which evaluates the rules with
// alertd's own query function: the descriptions that query (the template's
// query function) must come out the same from both.
func testRules(t *testing.T, promtool, file string) {
	t.Helper()
	b, err := exec.Command(promtool, "test", "rules", file).CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "SUCCESS")
	var report bytes.Buffer
	passed, err := rules.RunTests([]string{file}, rules.TestOptions{Out: &report})
	require.NoError(t, err)
	require.True(t, passed, report.String())
}

// The alerting rules generated from a configuration pass promtool, and,
// run by `promtool test rules` on the shipped quality recording rules, fire
// exactly when a threshold is crossed.
func TestQualityAlerts(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	dir, alerts := writeQualityAlerts(t, `
models:
  - name: churn
    alerts: {min_accuracy: 0.85, for: 10m, severity: page}
  - name: price
    alerts: {max_mae: 2, max_rmse: 3, min_r2: 0.5}
  - name: risk
    alerts: {max_calibration_error: 0.1}
  - name: rare
    alerts: {max_calibration_error: 0.1, min_calibration_samples: 2000}
  - name: shop
    segments: [country]
    alerts: {max_segment_accuracy_gap: 0.1}
  - name: shopmix
    segments: [country]
    alerts: {max_segment_accuracy_gap: 0.1}
  - name: candidate
    alerts: {max_shadow_disagreement: 0.05}
  - name: late
    alerts: {min_estimated_accuracy: 0.8}
  - name: fewshadow
    alerts: {max_shadow_disagreement: 0.05, min_shadow_samples: 1000}
  - name: quiet
`)
	b, err := exec.Command(promtool, "check", "rules", alerts).CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "SUCCESS: 11 rules found")

	quality, err := filepath.Abs("../../deploy/prometheus/quality.rules.yml")
	require.NoError(t, err)
	// churn: 7 of 10 right every minute (accuracy 0.7 < 0.85);
	// price: absolute error 1 per label (MAE 1 < 2), squared 1 (RMSE 1 < 3).
	test := `rule_files: [` + quality + `, ` + alerts + `]
` + qualityEvalOrder + `evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'modelmon_prediction_outcome_total{model="churn",predicted="yes",actual="yes",instance="a"}'
        values: '0+7x120'
      - series: 'modelmon_prediction_outcome_total{model="churn",predicted="yes",actual="no",instance="a"}'
        values: '0+3x120'
      - series: 'modelmon_prediction_correct_total{model="churn",class="yes",instance="a"}'
        values: '0+7x120'
      - series: 'modelmon_prediction_absolute_error_total{model="price",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_prediction_squared_error_total{model="price",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_labels_matched_total{model="price",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_prediction_regression_outcomes_total{model="price",instance="a"}'
        values: '0+10x120'
      # price's labels: 10 a minute, 5 of 1 and 5 of 3 (mean 2, variance
      # 1), against squared errors of 1 each: R² = 1 − 10/10 = 0 < 0.5.
      # The sidecar sums them from its first label, 1.
      - series: 'modelmon_label_value_offset{model="price",instance="a"}'
        values: '1x120'
      - series: 'modelmon_label_deviation_total{model="price",sign="positive",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_label_deviation_total{model="price",sign="negative",instance="a"}'
        values: '0+0x120'
      - series: 'modelmon_label_deviation_squared_total{model="price",instance="a"}'
        values: '0+20x120'
      # risk: every minute 20 predictions at confidence 0.9 (bin 8), 12
      # of them right: calibration error |0.6 − 0.9| = 0.3 > 0.1, over
      # 1,200 an hour. rare: the same error over 1,200, below its 2,000.
      - series: 'modelmon_prediction_confidence_outcomes_total{model="risk",bin="8",instance="a"}'
        values: '0+20x120'
      - series: 'modelmon_prediction_confidence_correct_total{model="risk",bin="8",instance="a"}'
        values: '0+12x120'
      - series: 'modelmon_prediction_confidence_total{model="risk",bin="8",instance="a"}'
        values: '0+18x120'
      - series: 'modelmon_prediction_confidence_outcomes_total{model="rare",bin="8",instance="a"}'
        values: '0+20x120'
      - series: 'modelmon_prediction_confidence_correct_total{model="rare",bin="8",instance="a"}'
        values: '0+12x120'
      - series: 'modelmon_prediction_confidence_total{model="rare",bin="8",instance="a"}'
        values: '0+18x120'
      # shop: 15 of 20 right every minute overall (0.75); DE 5 of 10
      # (0.5: 0.25 below), FR 10 of 10, and IT 0 of 1, too few (60 an hour).
      - series: 'modelmon_prediction_outcome_total{model="shop",predicted="a",actual="a",instance="a"}'
        values: '0+20x120'
      - series: 'modelmon_prediction_correct_total{model="shop",class="a",instance="a"}'
        values: '0+15x120'
      - series: 'modelmon_segment_labels_matched_total{model="shop",segment="country",segment_value="DE",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_segment_prediction_correct_total{model="shop",segment="country",segment_value="DE",instance="a"}'
        values: '0+5x120'
      - series: 'modelmon_segment_labels_matched_total{model="shop",segment="country",segment_value="FR",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_segment_prediction_correct_total{model="shop",segment="country",segment_value="FR",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_segment_labels_matched_total{model="shop",segment="country",segment_value="IT",instance="a"}'
        values: '0+1x120'
      - series: 'modelmon_segment_prediction_correct_total{model="shop",segment="country",segment_value="IT",instance="a"}'
        values: '0+0x120'
      # shopmix predicts numbers and classes: 15 of 20 class pairs right
      # every minute overall (0.75). DE: 15 of 20 too, and 20 numeric
      # pairs besides; over its 40 labels joined, its accuracy read 0.375,
      # 0.375 below. US: 0 of 1 class pair and 5 numeric pairs a minute,
      # 60 class pairs an hour, too few, though 360 labels joined.
      - series: 'modelmon_prediction_outcome_total{model="shopmix",predicted="a",actual="a",instance="a"}'
        values: '0+20x120'
      - series: 'modelmon_prediction_correct_total{model="shopmix",class="a",instance="a"}'
        values: '0+15x120'
      - series: 'modelmon_segment_labels_matched_total{model="shopmix",segment="country",segment_value="DE",instance="a"}'
        values: '0+40x120'
      - series: 'modelmon_segment_prediction_regression_outcomes_total{model="shopmix",segment="country",segment_value="DE",instance="a"}'
        values: '0+20x120'
      - series: 'modelmon_segment_prediction_correct_total{model="shopmix",segment="country",segment_value="DE",instance="a"}'
        values: '0+15x120'
      - series: 'modelmon_segment_labels_matched_total{model="shopmix",segment="country",segment_value="US",instance="a"}'
        values: '0+6x120'
      - series: 'modelmon_segment_prediction_regression_outcomes_total{model="shopmix",segment="country",segment_value="US",instance="a"}'
        values: '0+5x120'
      - series: 'modelmon_segment_prediction_correct_total{model="shopmix",segment="country",segment_value="US",instance="a"}'
        values: '0+0x120'
      # candidate: 2 of 10 compared predictions a minute disagree (0.2 >
      # 0.05, 600 an hour); fewshadow the same, below its 1,000.
      - series: 'modelmon_shadow_predictions_total{model="candidate",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_shadow_disagreements_total{model="candidate",instance="a"}'
        values: '0+2x120'
      - series: 'modelmon_shadow_predictions_total{model="fewshadow",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_shadow_disagreements_total{model="fewshadow",instance="a"}'
        values: '0+2x120'
      # late: labels show bin 7 right 6 times in 10 and bin 9 9 in 10;
      # the last hour's predictions, 20 a minute in bin 7 and 5 in bin 9,
      # are estimated (20 x 0.6 + 5 x 0.9) / 25 = 0.66 < 0.8.
      - series: 'modelmon_prediction_confidence_outcomes_total{model="late",bin="7",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_prediction_confidence_correct_total{model="late",bin="7",instance="a"}'
        values: '0+6x120'
      - series: 'modelmon_prediction_confidence_outcomes_total{model="late",bin="9",instance="a"}'
        values: '0+10x120'
      - series: 'modelmon_prediction_confidence_correct_total{model="late",bin="9",instance="a"}'
        values: '0+9x120'
      - series: 'modelmon_prediction_confidence_predictions_total{model="late",bin="7",instance="a"}'
        values: '0+20x120'
      - series: 'modelmon_prediction_confidence_predictions_total{model="late",bin="9",instance="a"}'
        values: '0+5x120'
    alert_rule_test:
      - eval_time: 70m
        alertname: ModelShadowDisagreementHigh
        exp_alerts:
          - exp_labels: {alertname: ModelShadowDisagreementHigh, model: candidate, severity: warning, category: accuracy}
            exp_annotations:
              summary: The shadow of model candidate predicts another class for more than 0.05 of its predictions.
              description: 'candidate: 200m over the last hour.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelshadowdisagreementhigh
      - eval_time: 70m
        alertname: ModelEstimatedAccuracyLow
        exp_alerts:
          - exp_labels: {alertname: ModelEstimatedAccuracyLow, model: late, severity: warning, category: accuracy}
            exp_annotations:
              summary: Accuracy of model late estimated from its confidence below 0.8, before its labels say so.
              description: 'late: 660m over 1500 predictions in the last hour, in confidence bins with 1400 labels in the last day.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelestimatedaccuracylow
      - eval_time: 70m
        alertname: ModelSegmentAccuracyLow
        exp_alerts:
          - exp_labels: {alertname: ModelSegmentAccuracyLow, model: shop, severity: warning, segment: country, segment_value: DE, category: accuracy}
            exp_annotations:
              summary: Accuracy of model shop more than 0.1 below its overall accuracy for a segment.
              description: 'shop where country is DE: accuracy -250m from the model''s over the last hour.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsegmentaccuracylow
      - eval_time: 5m
        alertname: ModelAccuracyLow
        exp_alerts: []
      - eval_time: 70m
        alertname: ModelAccuracyLow
        exp_alerts:
          - exp_labels: {alertname: ModelAccuracyLow, model: churn, severity: page, category: accuracy}
            exp_annotations:
              summary: Accuracy of model churn below 0.85.
              description: 'churn: 700m over 600 class labels in the last hour.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelaccuracylow
      - eval_time: 70m
        alertname: ModelMAEHigh
        exp_alerts: []
      - eval_time: 70m
        alertname: ModelRMSEHigh
        exp_alerts: []
      - eval_time: 70m
        alertname: ModelR2Low
        exp_alerts:
          - exp_labels: {alertname: ModelR2Low, model: price, severity: warning, category: accuracy}
            exp_annotations:
              summary: 'R² of model price below 0.5: it explains less of its labels'' variance.'
              description: 'price: 0 over 600 numeric labels in the last hour.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelr2low
      - eval_time: 70m
        alertname: ModelCalibrationErrorHigh
        exp_alerts:
          - exp_labels: {alertname: ModelCalibrationErrorHigh, model: risk, severity: warning, category: accuracy}
            exp_annotations:
              summary: 'Expected calibration error of model risk above 0.1: its confidence no longer says how often it is right.'
              description: 'risk: 300m over the last hour.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelcalibrationerrorhigh
`
	testFile := filepath.Join(dir, "alerts_test.yml")
	require.NoError(t, os.WriteFile(testFile, []byte(test), 0o644))
	testRules(t, promtool, testFile)
}

// A class's recall and precision in a segment value against the model's
// for the same class, on the shipped recording rules: the fraud model
// catches 6 of its 12 frauds a minute (recall 0.5) and is right in 6 of its
// 7 fraud predictions (precision 0.857). In DE it catches 1 of 4 (0.25) and
// is right in 1 of 2 (0.5): more than 0.2 below both, over 240 fraud labels
// and 120 fraud predictions an hour. In ES it never predicts fraud, 2 frauds
// a minute: recall 0 over 120 labels, and no precision to alert on. In IT,
// 1 fraud a minute, never caught: recall 0 too, over 60 labels, too few for
// the default 100. fraudfew is DE alone with a minimum of 250.
func TestSegmentClassAlerts(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	dir, alerts := writeQualityAlerts(t, `
models:
  - name: fraud
    segments: [country]
    segment_classes: 2
    alerts: {max_segment_recall_gap: 0.2, max_segment_precision_gap: 0.2}
  - name: fraudfew
    segments: [country]
    segment_classes: 2
    alerts: {max_segment_recall_gap: 0.2, max_segment_precision_gap: 0.2, min_segment_class_samples: 250}
`)
	b, err := exec.Command(promtool, "check", "rules", alerts).CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "SUCCESS: 4 rules found")

	quality, err := filepath.Abs("../../deploy/prometheus/quality.rules.yml")
	require.NoError(t, err)
	var series strings.Builder
	add := func(metric, labels string, perMinute int) {
		fmt.Fprintf(&series, "      - series: '%s{%s,instance=\"a\"}'\n        values: '0+%dx120'\n", metric, labels, perMinute)
	}
	// Per minute, predicted → actual. DE: legit→legit 20, legit→fraud 3,
	// fraud→fraud 1, fraud→legit 1. FR: legit→legit 20, fraud→fraud 5.
	// IT: legit→legit 5, legit→fraud 1. ES: legit→legit 10, legit→fraud 2.
	for _, o := range []struct {
		predicted, actual string
		n                 int
	}{{"legit", "legit", 55}, {"fraud", "legit", 1}, {"fraud", "fraud", 6}, {"legit", "fraud", 6}} {
		add("modelmon_prediction_outcome_total", fmt.Sprintf(`model="fraud",predicted=%q,actual=%q`, o.predicted, o.actual), o.n)
	}
	add("modelmon_prediction_correct_total", `model="fraud",class="legit"`, 55)
	add("modelmon_prediction_correct_total", `model="fraud",class="fraud"`, 6)
	for _, c := range []struct {
		country, class             string
		predicted, labels, correct int
	}{
		{"DE", "fraud", 2, 4, 1}, {"DE", "legit", 23, 21, 20},
		{"FR", "fraud", 5, 5, 5}, {"FR", "legit", 20, 20, 20},
		{"IT", "fraud", 0, 1, 0}, {"IT", "legit", 6, 5, 5},
		{"ES", "fraud", 0, 2, 0}, {"ES", "legit", 12, 10, 10},
	} {
		l := fmt.Sprintf(`model="fraud",segment="country",segment_value=%q,class=%q`, c.country, c.class)
		add("modelmon_segment_class_predictions_total", l, c.predicted)
		add("modelmon_segment_class_labels_total", l, c.labels)
		add("modelmon_segment_class_correct_total", l, c.correct)
	}
	add("modelmon_prediction_outcome_total", `model="fraudfew",predicted="fraud",actual="fraud"`, 6)
	add("modelmon_prediction_outcome_total", `model="fraudfew",predicted="fraud",actual="legit"`, 1)
	add("modelmon_prediction_outcome_total", `model="fraudfew",predicted="legit",actual="fraud"`, 6)
	add("modelmon_prediction_correct_total", `model="fraudfew",class="fraud"`, 6)
	l := `model="fraudfew",segment="country",segment_value="DE",class="fraud"`
	add("modelmon_segment_class_predictions_total", l, 2)
	add("modelmon_segment_class_labels_total", l, 4)
	add("modelmon_segment_class_correct_total", l, 1)

	test := `rule_files: [` + quality + `, ` + alerts + `]
` + qualityEvalOrder + `evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
` + series.String() + `    alert_rule_test:
      # 20 fraud labels in DE in the first 5 minutes: too few.
      - eval_time: 5m
        alertname: ModelSegmentRecallLow
        exp_alerts: []
      - eval_time: 70m
        alertname: ModelSegmentRecallLow
        exp_alerts:
          - exp_labels: {model: fraud, severity: warning, segment: country, segment_value: DE, class: fraud, category: accuracy}
            exp_annotations:
              summary: Recall of a class of model fraud more than 0.2 below the model's for a segment.
              description: 'fraud where country is DE: recall of class fraud 250m over 240 labels of it in the last hour, against 500m for the model.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsegmentrecalllow
          - exp_labels: {model: fraud, severity: warning, segment: country, segment_value: ES, class: fraud, category: accuracy}
            exp_annotations:
              summary: Recall of a class of model fraud more than 0.2 below the model's for a segment.
              description: 'fraud where country is ES: recall of class fraud 0 over 120 labels of it in the last hour, against 500m for the model.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsegmentrecalllow
      - eval_time: 70m
        alertname: ModelSegmentPrecisionLow
        exp_alerts:
          - exp_labels: {model: fraud, severity: warning, segment: country, segment_value: DE, class: fraud, category: accuracy}
            exp_annotations:
              summary: Precision of a class of model fraud more than 0.2 below the model's for a segment.
              description: 'fraud where country is DE: precision of class fraud 500m over 120 predictions of it in the last hour, against 857.1m for the model.'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsegmentprecisionlow
`
	testFile := filepath.Join(dir, "alerts_test.yml")
	require.NoError(t, os.WriteFile(testFile, []byte(test), 0o644))
	testRules(t, promtool, testFile)
}

// Accuracy, F1, MAE, RMSE and R² are checked over hours with at least
// min_samples labels that the figure is over, 100 by default. In a quiet
// hour, night has 5 labels, one wrong (accuracy 0.8, and class no's F1
// 2/3), and nightprice 4, each off by 3 (MAE and RMSE 3, R² -8): none of
// their alerts fires, while the same labels every minute, 300 and 240 in
// the hour, fire (day, dayprice), and so do the quiet ones with
// min_samples 1 (nightall, nightpriceall). dayfew is day with a minimum of
// 1,000. flood predicts fraud 305 times in the hour for 5 frauds labelled:
// its F1 of fraud, 10/310, fires, as the guard counts the class's
// predictions with its labels, 310, which reach its minimum of 308 where
// neither does alone. Label coverage and the estimated accuracy are
// checked over hours with at least min_samples predictions, their
// denominator: nightcover has 5 predictions in a quiet hour and 1 label
// (coverage 0.2), nightlate 5 predictions where the labels show 0.6 right
// (estimated accuracy 0.6); neither fires, while the same every minute do
// (daycover, daylate), and so do the quiet ones with min_samples 1. A
// confidence bin counts in the estimate only with at least min_samples
// labels in the day: thinlate's 300 predictions an hour are in a bin whose
// one label was wrong (estimated accuracy 0 over all of them, before the
// guard), thinlateall the same with min_samples 1; mixlate has 19 of its
// 20 predictions a minute in a bin of 700 labels, 9 in 10 right, and 1 in
// a bin whose one label was wrong: 0.9 over the first bin alone, 95 % of
// the predictions, where the thin bin made it 0.855, below its 0.88.
func TestQualityAlertsMinSamples(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	dir, alerts := writeQualityAlerts(t, `
models:
  - name: night
    alerts: {min_accuracy: 0.85, min_f1: 0.7}
  - name: nightall
    alerts: {min_accuracy: 0.85, min_f1: 0.7, min_samples: 1}
  - name: day
    alerts: {min_accuracy: 0.85, min_f1: 0.7}
  - name: dayfew
    alerts: {min_accuracy: 0.85, min_f1: 0.7, min_samples: 1000}
  - name: flood
    alerts: {min_f1: 0.7, min_samples: 308}
  - name: nightprice
    alerts: {max_mae: 2, max_rmse: 2.5, min_r2: 0.5}
  - name: nightpriceall
    alerts: {max_mae: 2, max_rmse: 2.5, min_r2: 0.5, min_samples: 1}
  - name: dayprice
    alerts: {max_mae: 2, max_rmse: 2.5, min_r2: 0.5}
  - name: nightcover
    alerts: {min_label_coverage: 0.5}
  - name: nightcoverall
    alerts: {min_label_coverage: 0.5, min_samples: 1}
  - name: daycover
    alerts: {min_label_coverage: 0.5}
  - name: nightlate
    alerts: {min_estimated_accuracy: 0.8}
  - name: nightlateall
    alerts: {min_estimated_accuracy: 0.8, min_samples: 1}
  - name: daylate
    alerts: {min_estimated_accuracy: 0.8}
  - name: thinlate
    alerts: {min_estimated_accuracy: 0.8}
  - name: thinlateall
    alerts: {min_estimated_accuracy: 0.8, min_samples: 1}
  - name: mixlate
    alerts: {min_estimated_accuracy: 0.88}
`)
	b, err := exec.Command(promtool, "check", "rules", alerts).CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "SUCCESS: 27 rules found")

	quality, err := filepath.Abs("../../deploy/prometheus/quality.rules.yml")
	require.NoError(t, err)
	// The values of a counter of labels, each adding one of steps: busy
	// counts them all every minute; quiet counts them once, one every 5
	// minutes from minute 31, all in the hour to 70m, and then nothing.
	busy := func(steps ...int) string {
		sum := 0
		for _, s := range steps {
			sum += s
		}
		return fmt.Sprintf("0+%dx120", sum)
	}
	quiet := func(steps ...int) string {
		v, values := 0, "0x30"
		for i, s := range steps {
			v += s
			repeat := 4
			if i == len(steps)-1 {
				repeat = 90 - 5*i
			}
			values += fmt.Sprintf(" %dx%d", v, repeat)
		}
		return values
	}
	var series strings.Builder
	add := func(metric, labels, values string) {
		fmt.Fprintf(&series, "      - series: '%s{%s,instance=\"a\"}'\n        values: '%s'\n", metric, labels, values)
	}
	ones := func(n int) []int { return slices.Repeat([]int{1}, n) }
	// n labels of a classifier, predicted → actual.
	type pair struct {
		predicted, actual string
		n                 int
	}
	// A classifier's labels, counted by count; the right ones are also
	// counted by class.
	classifier := func(model string, count func(...int) string, pairs ...pair) {
		for _, p := range pairs {
			add("modelmon_prediction_outcome_total", fmt.Sprintf(`model=%q,predicted=%q,actual=%q`, model, p.predicted, p.actual), count(ones(p.n)...))
			if p.predicted == p.actual {
				add("modelmon_prediction_correct_total", fmt.Sprintf(`model=%q,class=%q`, model, p.predicted), count(ones(p.n)...))
			}
		}
	}
	// 3 yes right, 1 no right, 1 no that was yes: accuracy 0.8; F1 of
	// no 2·1/(2 + 1), of yes 2·3/(3 + 4).
	fiveLabels := []pair{{"yes", "yes", 3}, {"no", "no", 1}, {"no", "yes", 1}}
	classifier("night", quiet, fiveLabels...)
	classifier("nightall", quiet, fiveLabels...)
	classifier("day", busy, fiveLabels...)
	classifier("dayfew", busy, fiveLabels...)
	classifier("flood", busy, pair{"legit", "legit", 20}, pair{"fraud", "legit", 5})
	classifier("flood", quiet, pair{"fraud", "fraud", 5})
	// A regressor's 4 labels, 1, 3, 1 and 3 (mean 2, variance 1), each
	// predicted off by 3: MAE and RMSE 3, R² 1 − 9 = -8. The sidecar sums
	// them less its first label, 1.
	regressor := func(model string, count func(...int) string) {
		l := fmt.Sprintf(`model=%q`, model)
		add("modelmon_prediction_regression_outcomes_total", l, count(1, 1, 1, 1))
		add("modelmon_labels_matched_total", l, count(1, 1, 1, 1))
		add("modelmon_prediction_absolute_error_total", l, count(3, 3, 3, 3))
		add("modelmon_prediction_squared_error_total", l, count(9, 9, 9, 9))
		add("modelmon_label_value_offset", l, "1x120")
		add("modelmon_label_deviation_total", l+`,sign="positive"`, count(0, 2, 0, 2))
		add("modelmon_label_deviation_total", l+`,sign="negative"`, "0x120")
		add("modelmon_label_deviation_squared_total", l, count(0, 4, 0, 4))
	}
	regressor("nightprice", quiet)
	regressor("nightpriceall", quiet)
	regressor("dayprice", busy)
	// 5 predictions, 1 label joined: coverage 0.2.
	for _, c := range []struct {
		model string
		count func(...int) string
	}{{"nightcover", quiet}, {"nightcoverall", quiet}, {"daycover", busy}} {
		l := fmt.Sprintf(`model=%q`, c.model)
		add("modelmon_predictions_total", l, c.count(1, 1, 1, 1, 1))
		add("modelmon_labels_matched_total", l, c.count(1))
	}
	// 5 predictions in confidence bin 7, where the last day's labels, 10 a
	// minute, were right 6 times in 10: estimated accuracy 0.6.
	for _, c := range []struct {
		model string
		count func(...int) string
	}{{"nightlate", quiet}, {"nightlateall", quiet}, {"daylate", busy}} {
		l := fmt.Sprintf(`model=%q,bin="7"`, c.model)
		add("modelmon_prediction_confidence_outcomes_total", l, busy(10))
		add("modelmon_prediction_confidence_correct_total", l, busy(6))
		add("modelmon_prediction_confidence_predictions_total", l, c.count(1, 1, 1, 1, 1))
	}
	// 1 label in the day, wrong, in confidence bin 5.
	thin := func(model string) {
		l := fmt.Sprintf(`model=%q,bin="5"`, model)
		add("modelmon_prediction_confidence_outcomes_total", l, quiet(1))
		add("modelmon_prediction_confidence_correct_total", l, "0x120")
	}
	for _, model := range []string{"thinlate", "thinlateall"} {
		thin(model)
		add("modelmon_prediction_confidence_predictions_total", fmt.Sprintf(`model=%q,bin="5"`, model), busy(5))
	}
	thin("mixlate")
	add("modelmon_prediction_confidence_predictions_total", `model="mixlate",bin="5"`, busy(1))
	add("modelmon_prediction_confidence_outcomes_total", `model="mixlate",bin="9"`, busy(10))
	add("modelmon_prediction_confidence_correct_total", `model="mixlate",bin="9"`, busy(9))
	add("modelmon_prediction_confidence_predictions_total", `model="mixlate",bin="9"`, busy(19))

	alert := func(name, model, summary, description string, labels ...string) string {
		return fmt.Sprintf(`          - exp_labels: {model: %s, severity: warning, category: accuracy%s}
            exp_annotations:
              summary: '%s'
              description: '%s'
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#%s
`, model, strings.Join(labels, ""), summary, description, strings.ToLower(name))
	}
	test := `rule_files: [` + quality + `, ` + alerts + `]
` + qualityEvalOrder + `evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
` + series.String() + `    alert_rule_test:
      - eval_time: 70m
        alertname: ModelAccuracyLow
        exp_alerts:
` + alert("ModelAccuracyLow", "nightall", "Accuracy of model nightall below 0.85.", "nightall: 800m over 5 class labels in the last hour.") +
		alert("ModelAccuracyLow", "day", "Accuracy of model day below 0.85.", "day: 800m over 300 class labels in the last hour.") + `
      - eval_time: 70m
        alertname: ModelF1Low
        exp_alerts:
` + alert("ModelF1Low", "nightall", "F1 of class no of model nightall below 0.7.", "nightall: F1 of class no 666.7m over 2 predictions and 1 label of it in the last hour.", ", class: no") +
		alert("ModelF1Low", "day", "F1 of class no of model day below 0.7.", "day: F1 of class no 666.7m over 120 predictions and 60 labels of it in the last hour.", ", class: no") +
		alert("ModelF1Low", "flood", "F1 of class fraud of model flood below 0.7.", "flood: F1 of class fraud 32.26m over 305 predictions and 5 labels of it in the last hour.", ", class: fraud")
	labels := map[string]string{"nightpriceall": "4", "dayprice": "240"}
	for _, a := range []struct{ name, summary, value string }{
		{"ModelMAEHigh", "Mean absolute error of model %s above 2.", "3"},
		{"ModelRMSEHigh", "RMSE of model %s above 2.5.", "3"},
		{"ModelR2Low", "R² of model %s below 0.5: it explains less of its labels'' variance.", "-8"},
	} {
		test += `
      - eval_time: 70m
        alertname: ` + a.name + `
        exp_alerts:
`
		for _, model := range []string{"nightpriceall", "dayprice"} {
			test += alert(a.name, model, fmt.Sprintf(a.summary, model), model+": "+a.value+" over "+labels[model]+" numeric labels in the last hour.")
		}
	}
	test += `
      - eval_time: 70m
        alertname: ModelLabelCoverageLow
        exp_alerts:
`
	predictions := map[string]string{"nightcoverall": "5", "daycover": "300", "nightlateall": "5", "daylate": "300"}
	for _, model := range []string{"nightcoverall", "daycover"} {
		test += strings.Replace(alert("ModelLabelCoverageLow", model, "Share of predictions of model "+model+" with a label below 0.5.", model+": 200m over "+predictions[model]+" predictions in the last hour."),
			"category: accuracy", "category: data_quality", 1)
	}
	test += `
      - eval_time: 70m
        alertname: ModelEstimatedAccuracyLow
        exp_alerts:
`
	for _, model := range []string{"nightlateall", "daylate"} {
		test += alert("ModelEstimatedAccuracyLow", model, "Accuracy of model "+model+" estimated from its confidence below 0.8, before its labels say so.",
			model+": 600m over "+predictions[model]+" predictions in the last hour, in confidence bins with 700 labels in the last day.")
	}
	test += alert("ModelEstimatedAccuracyLow", "thinlateall", "Accuracy of model thinlateall estimated from its confidence below 0.8, before its labels say so.",
		"thinlateall: 0 over 300 predictions in the last hour, in confidence bins with 1 label in the last day.")
	testFile := filepath.Join(dir, "alerts_test.yml")
	require.NoError(t, os.WriteFile(testFile, []byte(test), 0o644))
	testRules(t, promtool, testFile)
}

// --format=prometheusrule wraps the same rules in a PrometheusRule for
// Prometheus Operator; its groups are the rule file's that have rules, and
// they pass promtool.
func TestAlertsPrometheusRule(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    slos: {availability: 0.999}\n"), 0o644))
	res := run(t, &AlertsCommand{Config: cfg, Format: AlertsFormatPrometheusRule, Name: "fraud-slos", Namespace: "ml"}, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	var pr monitoringv1.PrometheusRule
	require.NoError(t, k8syaml.UnmarshalStrict([]byte(res.stdout), &pr))
	require.Equal(t, "PrometheusRule", pr.Kind)
	require.Equal(t, "fraud-slos", pr.Name)
	require.Equal(t, "ml", pr.Namespace)
	require.Len(t, pr.Spec.Groups, 1)
	require.Equal(t, "modelmon_slos", pr.Spec.Groups[0].Name)
	require.Len(t, pr.Spec.Groups[0].Rules, 11)

	b, err := k8syaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	require.NoError(t, err)
	rules := filepath.Join(dir, "rules.yml")
	require.NoError(t, os.WriteFile(rules, b, 0o644))
	out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS: 11 rules found")

	// --output writes the file whole, through a temporary file, and nothing
	// to stdout; the same rules as on stdout.
	stdout := res.stdout
	file := filepath.Join(dir, "prometheusrule.yaml")
	res = run(t, &AlertsCommand{Config: cfg, Format: AlertsFormatPrometheusRule, Name: "fraud-slos", Namespace: "ml", Output: file}, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Empty(t, res.stdout)
	written, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, stdout, string(written))
	left, err := filepath.Glob(filepath.Join(dir, "*.tmp*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary file left")

	res = run(t, &AlertsCommand{Config: cfg, Format: "helm"}, "")
	require.NotEqual(t, ExitOK, res.code)
	require.Contains(t, res.stderr, `unknown format "helm" (want rules or prometheusrule)`)
}

// Model names with quotes, backslashes, unicode and template delimiters
// give rules promtool accepts, whose alerts carry the names as they are:
// Prometheus expands alert labels and annotations as templates.
func TestQualityAlertsOddNames(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	dir, alerts := writeQualityAlerts(t, `
models:
  - name: 'x{{y'
    alerts: {min_accuracy: 0.85}
    slos: {availability: 0.999}
  - name: 'fr"aud\ü {{ $value }}'
    segments: [country]
    segment_classes: 2
    alerts: {min_accuracy: 0.85, min_f1: 0.7, max_mae: 2, max_segment_recall_gap: 0.2}
  - name: "日本 model's }}"
    alerts: {min_accuracy: 0.85}
`)
	b, err := exec.Command(promtool, "check", "rules", alerts).CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "SUCCESS: 17 rules found")

	test := `rule_files: [` + alerts + `]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'modelmon:accuracy:1h{model="x{{y"}'
        values: '0.5x5'
      - series: 'modelmon:prediction_outcome:increase1h{model="x{{y", predicted="a", actual="a"}'
        values: '600x5'
      - series: 'modelmon:accuracy:1h{model="fr\"aud\\ü {{ $value }}"}'
        values: '0.5x5'
      # The labels accuracy and F1 are over, which F1's description
      # queries by the alert's labels.
      - series: 'modelmon:prediction_outcome:increase1h{model="fr\"aud\\ü {{ $value }}", predicted="fraud", actual="fraud"}'
        values: '60x5'
      - series: 'modelmon:prediction_outcome:increase1h{model="fr\"aud\\ü {{ $value }}", predicted="legit", actual="fraud"}'
        values: '180x5'
      - series: 'modelmon:f1:1h{model="fr\"aud\\ü {{ $value }}", class="fraud"}'
        values: '0.4x5'
      # The description queries the model's recall and the labels by the
      # alert's labels, the model's name among them.
      - series: 'modelmon:segment_recall:1h{model="fr\"aud\\ü {{ $value }}", segment="country", segment_value="D\"E", class="fraud"}'
        values: '0.25x5'
      - series: 'modelmon:segment_class_labels:increase1h{model="fr\"aud\\ü {{ $value }}", segment="country", segment_value="D\"E", class="fraud"}'
        values: '240x5'
      - series: 'modelmon:recall:1h{model="fr\"aud\\ü {{ $value }}", class="fraud"}'
        values: '0.5x5'
    alert_rule_test:
      - eval_time: 5m
        alertname: ModelAccuracyLow
        exp_alerts:
          - exp_labels: {severity: warning, model: "fr\"aud\\ü {{ $value }}", category: accuracy}
            exp_annotations:
              summary: "Accuracy of model fr\"aud\\ü {{ $value }} below 0.85."
              description: "fr\"aud\\ü {{ $value }}: 500m over 240 class labels in the last hour."
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelaccuracylow
          - exp_labels: {severity: warning, model: "x{{y", category: accuracy}
            exp_annotations:
              summary: "Accuracy of model x{{y below 0.85."
              description: "x{{y: 500m over 600 class labels in the last hour."
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelaccuracylow
      - eval_time: 5m
        alertname: ModelF1Low
        exp_alerts:
          - exp_labels: {severity: warning, model: "fr\"aud\\ü {{ $value }}", class: fraud, category: accuracy}
            exp_annotations:
              summary: "F1 of class fraud of model fr\"aud\\ü {{ $value }} below 0.7."
              description: "fr\"aud\\ü {{ $value }}: F1 of class fraud 400m over 60 predictions and 240 labels of it in the last hour."
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelf1low
      - eval_time: 5m
        alertname: ModelSegmentRecallLow
        exp_alerts:
          - exp_labels: {severity: warning, model: "fr\"aud\\ü {{ $value }}", segment: country, segment_value: "D\"E", class: fraud, category: accuracy}
            exp_annotations:
              summary: "Recall of a class of model fr\"aud\\ü {{ $value }} more than 0.2 below the model's for a segment."
              description: "fr\"aud\\ü {{ $value }} where country is D\"E: recall of class fraud 250m over 240 labels of it in the last hour, against 500m for the model."
              runbook_url: https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#modelsegmentrecalllow
`
	file := filepath.Join(dir, "test.yml")
	require.NoError(t, os.WriteFile(file, []byte(test), 0o644))
	testRules(t, promtool, file)
}

// testdata/alerts.yml, the configuration `make checkrules` generates alerts
// from, sets every threshold and objective (each field of models[].alerts
// and models[].slos), and each alert `exporter alerts` writes from it
// carries a category label that alertd's classifier knows, as the shipped
// rules do, and a runbook_url to its own section of docs/runbooks.md.
func TestQualityAlertsEveryThreshold(t *testing.T) {
	cfg, err := config.LoadFile("testdata/alerts.yml")
	require.NoError(t, err)
	require.Len(t, cfg.Models, 1)
	m := cfg.Models[0]
	for _, v := range []any{*m.Alerts, *m.SLOs} {
		rv := reflect.ValueOf(v)
		for i := range rv.NumField() {
			require.False(t, rv.Field(i).IsZero(), "testdata/alerts.yml leaves %s.%s unset", rv.Type().Name(), rv.Type().Field(i).Name)
		}
	}

	out, err := QualityAlerts(cfg)
	require.NoError(t, err)
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(out, &file))
	runbooks, err := os.ReadFile("../../docs/runbooks.md")
	require.NoError(t, err)
	sections := strings.Split(string(runbooks), "\n")
	alerts := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			c, why := classify.DefaultCategory(r.Labels)
			require.NotEqual(t, classify.CategoryGeneral, c, "%s: %s", r.Alert, why)
			require.Equal(t, "https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#"+strings.ToLower(r.Alert), r.Annotations["runbook_url"], r.Alert)
			require.True(t, slices.Contains(sections, "## "+r.Alert), "docs/runbooks.md has no section for %s", r.Alert)
		}
	}
	// 12 quality alerts, and a page and a ticket for each of 4 objectives.
	require.Equal(t, 12+2*4, alerts)
}
