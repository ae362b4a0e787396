package config

import (
	"math"
	"os"
	"path/filepath"
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
			{Name: "absolute", Drift: &ModelDrift{Reference: "/etc/modelmon/absolute.json", Correction: "bonferroni"}},
			// A decision of its own, on --drift.reference or a learned one.
			{Name: "wide", Drift: &ModelDrift{Correction: "none", CorrectionAlpha: ptr(0.01)}},
		},
		Limits: Limits{MaxModels: 5, MaxFeatures: 50, MaxInstances: 100},
		Labels: Labels{Peers: []string{"dns+fraud-labels.ml.svc:9108", "10.0.0.7:9108"}, Scheme: "http", Timeout: model.Duration(2 * time.Second),
			HTTPClientConfig: func() promconfig.HTTPClientConfig {
				h := promconfig.DefaultHTTPClientConfig
				// Relative to the configuration file.
				h.BasicAuth = &promconfig.BasicAuth{Username: "modelmon", PasswordFile: "testdata/secrets/password"}
				return h
			}()},
		Drift: Drift{Correction: "fdr", CorrectionAlpha: ptr(0.1)},
	}, c)
	m, ok := c.Model("churn")
	require.True(t, ok)
	require.Equal(t, "churn", m.Name)
}

// A model's drift.correction and drift.correction_alpha win, each on its
// own, over the top-level drift's for that model; other models, and the
// keys a model leaves out, take the top-level ones.
func TestDriftCorrection(t *testing.T) {
	c, err := LoadFile("testdata/good.yml")
	require.NoError(t, err)
	for _, tc := range []struct {
		model, correction string
		alpha             *float64
	}{
		{"fraud", "fdr", ptr(0.1)}, // no drift of its own
		{"churn", "fdr", ptr(0.1)}, // a reference alone
		{"absolute", "bonferroni", ptr(0.1)},
		{"wide", "none", ptr(0.01)},
		{"unconfigured", "fdr", ptr(0.1)},
	} {
		corr, alpha := c.DriftCorrection(tc.model)
		require.Equal(t, tc.correction, corr, tc.model)
		require.Equal(t, tc.alpha, alpha, tc.model)
	}
	c, err = Load("models:\n  - name: a\n    drift: {correction_alpha: 0.2}\n")
	require.NoError(t, err)
	corr, alpha := c.DriftCorrection("a")
	require.Equal(t, "bonferroni", corr, "the default")
	require.Equal(t, ptr(0.2), alpha)
	corr, alpha = c.DriftCorrection("b")
	require.Equal(t, "bonferroni", corr)
	require.Nil(t, alpha, "--drift.alpha")
}

func ptr[T any](v T) *T { return &v }

func TestLoadDefaults(t *testing.T) {
	for _, s := range []string{"", "# nothing\n", "default_model: x\n"} {
		c, err := Load(s)
		require.NoError(t, err)
		require.Equal(t, DefaultConfig.Limits, c.Limits, "fields the file leaves out keep their defaults")
		require.Equal(t, "X-Model-Name", c.ModelHeader)
		require.Equal(t, Drift{Correction: "bonferroni"}, c.Drift)
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
		{"bad-model-other.yml", `testdata/bad-model-other.yml:2: models[0]: "__other__" is the name the models past limits.max_models are counted under`},
		{"bad-duplicate-model.yml", `testdata/bad-duplicate-model.yml:1: models[1]: model "a" is configured twice`},
		{"bad-segment-alert.yml", `testdata/bad-segment-alert.yml:3: models[0].alerts.max_segment_accuracy_gap needs models[0].segments`},
		{"bad-segment-class-alert.yml", `testdata/bad-segment-class-alert.yml:4: models[0].alerts.max_segment_precision_gap needs models[0].segment_classes`},
		{"bad-segment-class-samples.yml", `testdata/bad-segment-class-samples.yml:5: models[0].alerts.min_segment_class_samples must not be negative, got -1`},
		{"bad-segment-recall-gap.yml", `testdata/bad-segment-recall-gap.yml:5: models[0].alerts.max_segment_recall_gap must be between 0 and 1, got 1.2`},
		{"bad-segments.yml", `testdata/bad-segments.yml:3: models[0].segments: "country" is empty or given twice`},
		{"bad-classes.yml", `testdata/bad-classes.yml:3: models[0].classes: "fraud" is empty or given twice`},
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
		{"bad-drift-correction.yml", `testdata/bad-drift-correction.yml:2: drift.correction: unknown correction "holm" (want one of bonferroni, fdr, none)`},
		{"bad-drift-correction-alpha.yml", `testdata/bad-drift-correction-alpha.yml:3: drift.correction_alpha must be between 0 and 1 (both excluded), got 0`},
		{"bad-model-drift-correction.yml", `testdata/bad-model-drift-correction.yml:5: models[0].drift.correction: unknown correction "holm" (want one of bonferroni, fdr, none)`},
		{"bad-model-drift-correction-alpha.yml", `testdata/bad-model-drift-correction-alpha.yml:6: models[1].drift.correction_alpha must be between 0 and 1 (both excluded), got 1.5`},
		// A correction alone is a drift of its own; a prediction column is not.
		{"bad-model-drift-prediction-alone.yml", `testdata/bad-model-drift-prediction-alone.yml:3: models[0].drift.reference is required`},
		{"bad-max-models.yml", `testdata/bad-max-models.yml:2: limits.max_models must be at least 1, got 0`},
		{"bad-type.yml", "testdata/bad-type.yml:2: limits.max_features: cannot unmarshal !!str `many` into int"},
		{"bad-path.yml", `testdata/bad-path.yml:1: prediction_paths: "score" must start with /`},
		{"bad-syntax.yml", `testdata/bad-syntax.yml:1: did not find expected ',' or ']'`},
		{"bad-peer.yml", `testdata/bad-peer.yml:2: labels.peers[0]: "fraud-labels" is not host:port or dns+host:port`},
		{"bad-scheme.yml", `testdata/bad-scheme.yml:2: labels.scheme must be http or https, got "ftp"`},
		{"bad-alerts.yml", `testdata/bad-alerts.yml:3: models[0].alerts.min_accuracy must be between 0 and 1, got 1.5`},
		{"bad-min-samples.yml", `testdata/bad-min-samples.yml:3: models[0].alerts.min_samples must not be negative, got -1`},
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

// The sampling error behind DefaultMinSamples. Accuracy, from the
// binomial distribution: over that many labels, a model whose accuracy is
// 0.95 reads below 0.85 in fewer than 1 hour in 20,000, one whose accuracy
// fell to 0.75 still reads below it in 99 hours in 100, and over 5 labels
// one wrong label (0.8) comes in 1 hour in 4.4. F1 = 2J/(1+J), J the share
// right of the pairs the class is in, at least n/2 of them: an F1 of 0.9
// reads below 0.7 in fewer than 1 hour in 500,000. RMSE, from the χ²
// distribution of n normal errors' squares, for even n a Poisson sum: over
// n labels it reads 30 % above σ in 1 hour in 50,000, over 6 in 1 hour in 8.
func TestMinSamplesTail(t *testing.T) {
	n := DefaultMinSamples
	lf := func(k int) float64 { v, _ := math.Lgamma(float64(k + 1)); return v }
	// below is P(X < k) for X binomial over n trials of p.
	below := func(n, k int, p float64) float64 {
		sum := 0.0
		for i := range k {
			sum += math.Exp(lf(n) - lf(i) - lf(n-i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
		}
		return sum
	}
	// Fewer than 85 right of 100, and 0.8 or less over 5.
	require.Less(t, below(n, 85*n/100, 0.95), 1.0/20000)
	require.InDelta(t, 3.7e-5, below(n, 85*n/100, 0.95), 0.1e-5)
	require.Greater(t, below(n, 85*n/100, 0.75), 0.985)
	require.InDelta(t, 1/4.4, below(5, 5, 0.95), 0.002)
	require.InDelta(t, 1.0/1200, below(n, 80*n/100, 0.9), 0.0001)

	// F1 < 0.7 ⟺ J < 0.7/1.3: fewer than 26.9 right of 50 pairs.
	j := func(f1 float64) float64 { return f1 / (2 - f1) }
	pairs := n / 2
	require.Less(t, below(pairs, int(math.Ceil(j(0.7)*float64(pairs))), j(0.9)), 1.0/500000)

	// P(χ²_n > x) = P(Poisson(x/2) < n/2) for even n.
	chi2Above := func(n int, x float64) float64 {
		sum := 0.0
		for i := range n / 2 {
			sum += math.Exp(float64(i)*math.Log(x/2) - x/2 - lf(i))
		}
		return sum
	}
	require.InDelta(t, 1.0/50000, chi2Above(n, float64(n)*1.3*1.3), 0.1e-5)
	require.InDelta(t, 1.0/8, chi2Above(6, 6*1.3*1.3), 0.01)
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

// A value its own type refuses while the file is decoded (Prometheus's
// durations, URLs, TLS versions, client and TLS configurations) is reported
// with the file, its line and its key, as the values Validate refuses are:
// yaml.v3 gives such errors no line. Of values that fail alike, the first.
// A value of the wrong YAML type is reported with its key too.
func TestLoadBadValue(t *testing.T) {
	for _, tc := range []struct{ name, in, line, key, reason string }{
		{"negative duration", "labels:\n  timeout: -1s\n", "2", "labels.timeout", `not a valid duration string: "-1s"`},
		{"duration unit", "models:\n  - name: a\n  - name: b\n    slos: {availability: 0.99, period: 5x}\n", "4", "models[1].slos.period", `unknown unit "x" in duration "5x"`},
		{"duration in a block", "models:\n  - name: a\n    slos:\n      availability: 0.99\n      period: 30 days\n", "5", "models[0].slos.period", `unknown unit " days" in duration "30 days"`},
		{"url", "labels:\n  http_config:\n    proxy_url: '%zz'\n", "3", "labels.http_config.proxy_url", `parse "%zz": invalid URL escape "%zz"`},
		{"oauth2 proxy url", "labels:\n  http_config:\n    oauth2:\n      client_id: a\n      client_secret: b\n      token_url: http://idp/token\n      proxy_url: '%zz'\n", "7", "labels.http_config.oauth2.proxy_url", `parse "%zz": invalid URL escape "%zz"`},
		{"tls version", "labels:\n  http_config:\n    tls_config: {min_version: TLS99}\n", "3", "labels.http_config.tls_config.min_version", "unknown TLS version: TLS99"},
		{"tls config", "labels:\n  http_config:\n    tls_config:\n      ca: x\n      ca_file: y\n", "3", "labels.http_config.tls_config", "at most one of ca, ca_file & ca_ref must be configured"},
		{"http config", "labels:\n  http_config:\n    basic_auth: {username: a, password: b}\n    authorization: {credentials: c}\n", "2", "labels.http_config", "at most one of basic_auth, oauth2 & authorization must be configured"},
		// yaml.v3's own type errors have a line; the key is found there.
		{"int", "models:\n  - name: a\n    calibration_bins: many\n", "3", "models[0].calibration_bins", "cannot unmarshal !!str `many` into int"},
		{"float list", "models:\n  - name: a\n    segments: [{feature: x, buckets: nope}]\n", "3", "models[0].segments[0].buckets", "cannot unmarshal !!str `nope` into []float64"},
		{"bool", "labels:\n  http_config:\n    follow_redirects: maybe\n", "3", "labels.http_config.follow_redirects", "cannot unmarshal !!str `maybe` into bool"},
		{"long value", "limits: {max_models: manymanymany}\n", "1", "limits.max_models", "cannot unmarshal !!str `manyman...` into int"},
		{"in a collection on its line", "models:\n  - name: [a]\n", "2", "models[0].name", "cannot unmarshal !!seq into string"},
		// The decoder stops at the first of values that fail alike.
		{"alike in two sections", "labels:\n  timeout: 5x\nmodels: [{name: a, slos: {period: 5x}}]\n", "2", "labels.timeout", `unknown unit "x" in duration "5x"`},
		{"alike in two entries", "models:\n  - {name: a, slos: {period: 5x}}\n  - {name: b, slos: {period: 5x}}\n", "2", "models[0].slos.period", `unknown unit "x" in duration "5x"`},
		{"oauth2", "labels:\n  http_config:\n    oauth2:\n      client_id: a\n      token_url: http://idp/token\n      client_secret: b\n      client_secret_file: c\n", "3", "labels.http_config.oauth2", "at most one of oauth2 client_secret, client_secret_file & client_secret_ref must be configured using grant-type=client_credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "modelmon.yml")
			require.NoError(t, os.WriteFile(file, []byte(tc.in), 0o600))
			_, err := LoadFile(file)
			require.EqualError(t, err, file+":"+tc.line+": "+tc.key+": "+tc.reason)
		})
	}
}
