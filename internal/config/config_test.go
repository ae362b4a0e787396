package config

import (
	"math"
	"testing"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func TestLoadGood(t *testing.T) {
	c, err := LoadFile("testdata/good.yml")
	require.NoError(t, err)
	require.Equal(t, &Config{
		DefaultModel:    "fraud",
		ModelHeader:     "X-Model",
		VersionHeader:   "X-Version",
		PredictionPaths: []string{"/score", "/api/**"},
		Models: []Model{
			{Name: "fraud", Version: "v3", Format: "kserve_v1", FeatureNames: []string{"amount", "age"}, CalibrationBins: 15, Segments: []Segment{{Feature: "country"}, {Feature: "amount", Buckets: []float64{100, 1000}}}, SegmentClasses: 2},
			// Relative to the configuration file.
			{Name: "churn", Drift: &ModelDrift{Reference: "testdata/profiles/churn.csv", PredictionColumn: "churned"}, LabelOffset: ptr(2.5e5),
				ErrorBuckets: []float64{1000, 5000, 20000}, SLOs: &SLOs{Regression: 0.95, RegressionThreshold: 5000}},
			{Name: "absolute", Drift: &ModelDrift{Reference: "/etc/modelmon/absolute.json"}},
		},
		Limits: Limits{MaxModels: 5, MaxFeatures: 50, MaxInstances: 100},
		Labels: Labels{Peers: []string{"dns+fraud-labels.ml.svc:9108", "10.0.0.7:9108"}, Scheme: "http", Timeout: model.Duration(2 * time.Second),
			HTTPClientConfig: func() promconfig.HTTPClientConfig {
				h := promconfig.DefaultHTTPClientConfig
				// Relative to the configuration file.
				h.BasicAuth = &promconfig.BasicAuth{Username: "modelmon", PasswordFile: "testdata/secrets/password"}
				return h
			}()},
	}, c)
	m, ok := c.Model("churn")
	require.True(t, ok)
	require.Equal(t, "churn", m.Name)
}

func ptr[T any](v T) *T { return &v }

func TestLoadDefaults(t *testing.T) {
	for _, s := range []string{"", "# nothing\n", "default_model: x\n"} {
		c, err := Load(s)
		require.NoError(t, err)
		require.Equal(t, DefaultConfig.Limits, c.Limits, "fields the file leaves out keep their defaults")
		require.Equal(t, "X-Model-Name", c.ModelHeader)
	}
}

func TestLoadBad(t *testing.T) {
	for _, tc := range []struct{ file, err string }{
		{"bad-unknown-field.yml", `testdata/bad-unknown-field.yml:2: unknown field "bogus"`},
		{"bad-unknown-nested-field.yml", `testdata/bad-unknown-nested-field.yml:3: unknown field "formt"`},
		// Prometheus's client configuration is held to its keys as well.
		{"bad-unknown-http-config.yml", `testdata/bad-unknown-http-config.yml:6: unknown field "pasword"`},
		{"bad-format.yml", `testdata/bad-format.yml:3: models[0]: unknown format "protobuf" (want one of auto, kserve_v1, oip_v2, mlflow, seldon_v1, json)`},
		{"bad-model-name.yml", `testdata/bad-model-name.yml:2: models[0]: name is required`},
		{"bad-duplicate-model.yml", `testdata/bad-duplicate-model.yml:1: models[1]: model "a" is configured twice`},
		{"bad-segment-alert.yml", `testdata/bad-segment-alert.yml:3: models[0].alerts.max_segment_accuracy_gap needs models[0].segments`},
		{"bad-segment-class-alert.yml", `testdata/bad-segment-class-alert.yml:4: models[0].alerts.max_segment_precision_gap needs models[0].segment_classes`},
		{"bad-segment-class-samples.yml", `testdata/bad-segment-class-samples.yml:5: models[0].alerts.min_segment_class_samples must not be negative, got -1`},
		{"bad-segment-recall-gap.yml", `testdata/bad-segment-recall-gap.yml:5: models[0].alerts.max_segment_recall_gap must be between 0 and 1, got 1.2`},
		{"bad-segments.yml", `testdata/bad-segments.yml:3: models[0].segments: "country" is empty or given twice`},
		{"bad-importance.yml", `testdata/bad-importance.yml:3: models[0].feature_importance: "amount" must name a feature and be a finite number ≥ 0, got -1`},
		{"bad-segment-classes.yml", `testdata/bad-segment-classes.yml:4: models[0].segment_classes must be between 0 and 10, got 11`},
		{"bad-segment-classes-segments.yml", `testdata/bad-segment-classes-segments.yml:3: models[0].segment_classes needs models[0].segments`},
		{"bad-segment-field.yml", `testdata/bad-segment-field.yml:5: unknown field "bucket"`},
		{"bad-segment-buckets.yml", `testdata/bad-segment-buckets.yml:4: models[0].segments[0].buckets: must be finite and increasing, got [3 2]`},
		{"bad-label-offset.yml", `testdata/bad-label-offset.yml:3: models[0].label_offset must be a finite number, got +Inf`},
		{"bad-calibration-bins.yml", `testdata/bad-calibration-bins.yml:3: models[0].calibration_bins must be between 2 and 100, got 1`},
		{"bad-score-buckets.yml", `testdata/bad-score-buckets.yml:3: models[0].score_buckets: must be finite and increasing, got [1000 1000]`},
		{"bad-error-buckets.yml", `testdata/bad-error-buckets.yml:3: models[0].error_buckets: must not be negative (an absolute error never is), got [-1 0 1]`},
		// The regression SLO reads the classic bucket at its threshold; either
		// of the two keys may be the wrong one, so the model is blamed.
		{"bad-regression-threshold.yml", `testdata/bad-regression-threshold.yml:2: models[0].slos.regression_threshold 2500 is not a bucket of models[0].error_buckets ([1000 5000 20000])`},
		{"bad-drift-reference.yml", `testdata/bad-drift-reference.yml:3: models[0].drift.reference is required`},
		{"bad-drift-format.yml", `testdata/bad-drift-format.yml:3: models[0].drift.reference: unknown format ".xlsx": want .json (a profile), .csv, .jsonl or .parquet`},
		{"bad-drift-prediction.yml", `testdata/bad-drift-prediction.yml:3: models[0].drift.prediction_column is for training data: a profile (.json) marks its prediction itself`},
		{"bad-max-models.yml", `testdata/bad-max-models.yml:2: limits.max_models must be at least 1, got 0`},
		{"bad-type.yml", "testdata/bad-type.yml:2: cannot unmarshal !!str `many` into int"},
		{"bad-path.yml", `testdata/bad-path.yml:1: prediction_paths: "score" must start with /`},
		{"bad-syntax.yml", `testdata/bad-syntax.yml:1: did not find expected ',' or ']'`},
		{"bad-peer.yml", `testdata/bad-peer.yml:2: labels.peers[0]: "fraud-labels" is not host:port or dns+host:port`},
		{"bad-scheme.yml", `testdata/bad-scheme.yml:2: labels.scheme must be http or https, got "ftp"`},
		{"bad-alerts.yml", `testdata/bad-alerts.yml:3: models[0].alerts.min_accuracy must be between 0 and 1, got 1.5`},
		{"bad-calibration-samples.yml", `testdata/bad-calibration-samples.yml:3: models[0].alerts.min_calibration_samples must not be negative, got -5`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := LoadFile("testdata/" + tc.file)
			require.EqualError(t, err, tc.err)
		})
	}
	_, err := LoadFile("testdata/missing.yml")
	require.ErrorContains(t, err, "no such file")
}

// The sampling error behind DefaultMinSegmentClassSamples, from the
// binomial distribution: over that many labels of a class whose recall is
// 0.5, where a proportion spreads most, the recall reads 0.3 or less, 0.2
// below, in fewer than 1 hour in 20,000.
func TestMinSegmentClassSamplesTail(t *testing.T) {
	n := DefaultMinSegmentClassSamples
	lf := func(k int) float64 { v, _ := math.Lgamma(float64(k + 1)); return v }
	tail := 0.0
	for k := 0; 10*k <= 3*n; k++ {
		tail += math.Exp(lf(n) - lf(k) - lf(n-k) - float64(n)*math.Ln2)
	}
	require.Less(t, tail, 1.0/20000)
	require.InDelta(t, 3.9e-5, tail, 0.1e-5)
}

func FuzzLoad(f *testing.F) {
	for _, s := range []string{"", "default_model: a\n", "models:\n  - name: a\n    format: json\n", "limits: {max_models: 3}\n", "[", "a: b: c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Load(s)
		if err == nil {
			require.NoError(t, c.Validate())
		}
	})
}
