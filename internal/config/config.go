// Package config holds the sidecar's configuration file: its YAML types, the
// strict loader, and the reload coordinator shared by both binaries.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/collector"
)

// Config is the sidecar's configuration file (--config.file). Everything in
// it can change on reload; listeners, the upstream and queue sizes are flags.
type Config struct {
	// DefaultModel names the model when a request names none (no KServe or
	// Open Inference Protocol path, no model header).
	DefaultModel string `yaml:"default_model"`
	// ModelHeader and VersionHeader name request headers that carry the model
	// name and version; the path wins over the header.
	ModelHeader   string `yaml:"model_header"`
	VersionHeader string `yaml:"version_header"`
	// PredictionPaths are path patterns ("*" matches within a segment, a final
	// "**" matches the rest) of requests that are predictions. Empty means
	// every POST except KServe's :explain and the OIP repository API.
	PredictionPaths []string `yaml:"prediction_paths"`
	Models          []Model  `yaml:"models"`
	Limits          Limits   `yaml:"limits"`
	Labels          Labels   `yaml:"labels"`
	Drift           Drift    `yaml:"drift"`
}

// Drift configures the model-level drift decision of every model with a
// drift reference (modelmon_model_drifted): the model drifts when any of its
// features' p-values is below a threshold corrected for testing them all.
type Drift struct {
	// Correction is bonferroni (the default, as in Alibi Detect), fdr
	// (Benjamini–Hochberg) or none; empty is the default.
	Correction string `yaml:"correction"`
	// CorrectionAlpha is the level the correction keeps, in (0, 1): the
	// chance that a model that did not drift is flagged (bonferroni), the
	// expected share of the flagged features that did not drift (fdr), or
	// each feature's level (none). Nil: --drift.alpha.
	CorrectionAlpha *float64 `yaml:"correction_alpha"`
}

// Corrections are the accepted values of Drift.Correction, default first.
var Corrections = []string{"bonferroni", "fdr", "none"}

// Labels configures the label join across the replicas of a model: a
// label a replica receives for a prediction it does not know is asked of
// its peers, so that labels can be posted to any replica (through the
// model's Service) and still join where the prediction was made.
type Labels struct {
	// Peers are the other replicas' web listeners: host:port, or
	// dns+host:port for every address the name resolves to (a headless
	// Service's pods). The replica itself may be among them.
	Peers []string `yaml:"peers"`
	// Scheme is the peers' scheme: http (the default) or https.
	Scheme string `yaml:"scheme"`
	// Timeout bounds each request to a peer (default 5s).
	Timeout model.Duration `yaml:"timeout"`
	// HTTPClientConfig says how to reach the peers (TLS, basic auth,
	// authorization), as a Prometheus scrape configuration says it.
	HTTPClientConfig promconfig.HTTPClientConfig `yaml:"http_config"`
}

// Model configures one model the sidecar serves.
type Model struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
	// Format is the payload format: auto, kserve_v1, oip_v2, mlflow, seldon_v1 or json.
	Format string `yaml:"format"`
	// FeatureNames name positional inputs (instances given as arrays).
	FeatureNames []string `yaml:"feature_names"`
	// IDPath is a dot-separated path to the prediction's id in the request
	// body, or else the response body (e.g. "id" for the Open Inference
	// Protocol); when the body has it, it wins over the id header.
	IDPath string `yaml:"id_path"`
	// Classes name the entries of a prediction that is a vector of class
	// probabilities, in order; they make Brier score, log loss and
	// calibration possible. With two, a prediction that is one probability
	// is the second class's. They are the model's first classes, in order,
	// on every replica: those SegmentClasses counts by name, and those the
	// sidecar keeps below its cap of classes.
	Classes []string `yaml:"classes"`
	// CalibrationBins is the number of equal-width bins of confidence the
	// model's calibration is counted in (the expected calibration error,
	// the reliability diagram, the accuracy estimated without labels): 0
	// for DefaultCalibrationBins, else from MinCalibrationBins to
	// MaxCalibrationBins.
	CalibrationBins int `yaml:"calibration_bins"`
	// LabelOffset is the offset of a regression's labels: the value the
	// sidecar sums them from, Σ(y − c) and Σ(y − c)², for R². Near the
	// labels' mean, it keeps their variance exact however large the mean;
	// nil: the mean prediction of the model's drift reference, else the
	// first label the sidecar joins (kept across restarts with
	// --storage.path).
	LabelOffset *float64 `yaml:"label_offset"`
	// Alerts are the model's quality thresholds, which `exporter alerts`
	// turns into Prometheus alerting rules.
	Alerts *QualityAlerts `yaml:"alerts"`
	// SLOs are the model's service level objectives, which `exporter
	// alerts` turns into recording rules and multiwindow, multi-burn-rate
	// alerting rules.
	SLOs *SLOs `yaml:"slos"`
	// Drift gives the model a drift reference of its own, instead of
	// --drift.reference, and a model-level drift decision of its own,
	// instead of the top-level drift's.
	Drift *ModelDrift `yaml:"drift"`
	// Segments name input features by whose values the model's joined
	// labels are also counted (accuracy, MAE and RMSE per country, say),
	// at most MaxSegments of them.
	Segments []Segment `yaml:"segments"`
	// SegmentClasses, when above 0, also counts a classifier's joined labels
	// by segment value and class (predicted, labelled and right: precision,
	// recall and F1 per class and segment value), for the model's first
	// SegmentClasses classes: those of Classes, in order, then those the
	// sidecar saw first; the others are counted as __other__. At most
	// MaxSegmentClasses; 0 (the default) counts none.
	SegmentClasses int `yaml:"segment_classes"`
	// ScoreBuckets are the classic buckets' upper bounds, increasing, of
	// the model's modelmon_prediction_score, instead of
	// collector.ScoreBuckets (0.1 … 1, for a binary classifier's scores):
	// a regression's values in its own range. At most MaxScoreBuckets.
	ScoreBuckets []float64 `yaml:"score_buckets"`
	// ErrorBuckets are the classic buckets' upper bounds, increasing and
	// not negative, of the model's modelmon_prediction_error_magnitude
	// (the absolute errors of its regression predictions, in its own
	// units) and of its modelmon_segment_prediction_error_magnitude (the
	// same by segment value); without them both have the native histogram
	// alone. At most MaxErrorBuckets.
	ErrorBuckets []float64 `yaml:"error_buckets"`
	// FeatureImportance weighs the model's features (by name; any scale,
	// say the mean absolute SHAP values), for the drift impact: a feature's
	// drift weighted by its share of the importance.
	FeatureImportance map[string]float64 `yaml:"feature_importance"`
}

// MaxSegments bounds Model.Segments: every segment multiplies the series
// of the per-segment quality metrics by its values.
const MaxSegments = 5

// MaxSegmentClasses bounds Model.SegmentClasses. Each of the three
// counters by segment value and class has at most MaxSegments × 21 values
// (20 and __other__) × (MaxSegmentClasses + 1 for __other__) series per
// model: 1,155.
const MaxSegmentClasses = 10

// MaxSegmentBuckets bounds Segment.Buckets: with the bucket above the last
// edge and the missing values, a segment then has at most 20 values, the
// values each segment keeps before __other__.
const MaxSegmentBuckets = 18

// MaxScoreBuckets bounds Model.ScoreBuckets, as every bucket is a series.
const MaxScoreBuckets = 40

// MaxErrorBuckets bounds Model.ErrorBuckets, as every bucket is a series:
// one per model, and one per segment value of the histogram by segment,
// MaxSegments × 21 values, 4,515 series per model with the _sum and _count.
const MaxErrorBuckets = 40

// Bounds and default of Model.CalibrationBins. Each bin is a series of
// four counters per model; over 100 bins, most hold too few predictions
// for their accuracy to mean anything.
const (
	DefaultCalibrationBins = 10
	MinCalibrationBins     = 2
	MaxCalibrationBins     = 100
)

// Segment is a feature the model's joined labels are also counted by: its
// values as written (a country, a device type), or, with Buckets, the range
// of a numeric feature's value.
type Segment struct {
	Feature string `yaml:"feature"`
	// Buckets are the upper bounds, increasing, of the ranges a value falls
	// into: (-inf, b0], (b0, b1], …, (bn, +inf).
	Buckets []float64 `yaml:"buckets"`
}

// UnmarshalYAML reads a segment as a feature's name, or as {feature,
// buckets}.
func (s *Segment) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*s = Segment{}
		return node.Decode(&s.Feature)
	}
	// Node.Decode does not check fields (KnownFields is the decoder's):
	// check them here, in the decoder's words (a TypeError keeps its line).
	for i := 0; i+1 < len(node.Content); i += 2 {
		if k := node.Content[i]; k.Value != "feature" && k.Value != "buckets" {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: field %s not found in type config.Segment", k.Line, k.Value)}}
		}
	}
	type plain Segment
	var p plain
	if err := node.Decode(&p); err != nil {
		return err
	}
	*s = Segment(p)
	return nil
}

// MarshalYAML writes a segment without buckets as its feature's name.
func (s Segment) MarshalYAML() (any, error) {
	if len(s.Buckets) == 0 {
		return s.Feature, nil
	}
	type plain Segment
	return plain(s), nil
}

// ModelDrift is a model's own drift reference, and its own model-level
// drift decision: each of Correction and CorrectionAlpha, when set, wins
// over the top-level Drift's for this model (Config.DriftCorrection). A
// model with a correction of its own and no reference takes
// --drift.reference's, or learns one.
type ModelDrift struct {
	// Reference is a profile (.json, as `exporter profile` writes it) or
	// training data (.csv, .jsonl, .ndjson) profiled when the configuration
	// loads; a relative path is relative to the configuration file. It is
	// required unless Correction or CorrectionAlpha is set.
	Reference string `yaml:"reference"`
	// PredictionColumn names the column of training data that holds the
	// model's output.
	PredictionColumn string `yaml:"prediction_column"`
	// Correction is the model's Drift.Correction; empty: drift's.
	Correction string `yaml:"correction"`
	// CorrectionAlpha is the model's Drift.CorrectionAlpha; nil: drift's.
	CorrectionAlpha *float64 `yaml:"correction_alpha"`
}

// DriftCorrection returns the correction and level of the named model's
// drift decision: those of its models[].drift, each where set, else the
// top-level drift's. A nil alpha is --drift.alpha.
func (c *Config) DriftCorrection(model string) (correction string, alpha *float64) {
	correction, alpha = c.Drift.Correction, c.Drift.CorrectionAlpha
	if m, ok := c.Model(model); ok && m.Drift != nil {
		if m.Drift.Correction != "" {
			correction = m.Drift.Correction
		}
		if m.Drift.CorrectionAlpha != nil {
			alpha = m.Drift.CorrectionAlpha
		}
	}
	return correction, alpha
}

// DefaultMinSamples is the default of QualityAlerts.MinSamples. Over 100
// labels, a model whose accuracy is 0.95 reads below 0.85 (84 right or
// fewer, exact binomial) in fewer than 1 hour in 20,000, while one whose
// accuracy fell to 0.75 reads below it in 99 hours in 100; over 5, one
// wrong label reads 0.8, which the model of 0.95 gives in 1 hour in 4.4.
// The closer the threshold to what the model holds, the more labels it
// takes: a model of 0.9 reads below 0.8 over 100 in 1 hour in 1,200.
// A class's F1 is 2J/(1+J), J the share right of the pairs the class is
// in (predicted, labelled or both), which 100 of its predictions and
// labels are at least 50 of: over 50, an F1 of 0.9 reads below 0.7 in
// fewer than 1 hour in 500,000. Over 100 numeric labels with normal
// errors, the RMSE reads 30 % above the model's in 1 hour in 50,000
// (n·MSE/σ² is χ² with n degrees of freedom), over 6 in 1 hour in 8; the
// MAE's relative standard error, 0.76/√n, is about the RMSE's. It bounds
// the predictions the estimated accuracy and the label coverage are over
// too, without a minimum of their own: the coverage is a share of the
// hour's predictions, as accuracy is of its labels, and the estimate a
// mean of values in [0, 1] (each bin's accuracy), which spreads no more
// than a share with the same mean over as many; and a model has about as
// many predictions an hour as labels or more, so the minimum that suits
// its labels never leaves these two unchecked. The estimate's bins'
// accuracies are over the last day's labels, and a bin counts with at
// least as many: the estimate, Σ w·a over the bins' shares w of the
// predictions, then errs by them no more than accuracy over as many
// labels (Σ w²·a(1 − a)/n ≤ ā(1 − ā)/n).
const DefaultMinSamples = 100

// DefaultMinCalibrationSamples is the default of
// QualityAlerts.MinCalibrationSamples. Simulated for a perfectly
// calibrated model with confidences uniform in [0.5, 1], its expected
// calibration error in the default ten bins is 0.022 on average and under
// 0.04 in 95 % of trials over 1,000 predictions; over 100, 0.070 and 0.11.
const DefaultMinCalibrationSamples = 1000

// DefaultMinSegmentSamples is the default of QualityAlerts.MinSegmentSamples:
// over 200 labels, the accuracy of a segment whose true accuracy is 0.9 has
// a standard error of 0.021, so a gap of 0.1 is nearly five of them, and
// the hundred segment values that five segments can have stay quiet when
// nothing is wrong.
const DefaultMinSegmentSamples = 200

// DefaultMinSegmentClassSamples is the default of
// QualityAlerts.MinSegmentClassSamples: over 100 labels of a class (for
// recall) or predictions of it (for precision), a proportion of 0.5, where
// sampling error is largest, has a standard error of 0.05, so a gap of 0.2
// is four of them: a recall of 0.5 reads 0.3 or less over 100 labels in
// fewer than 1 hour in 20,000. It is below DefaultMinSegmentSamples as a
// class has only its share of a segment value's labels: the fraud class at
// 2 % of a country's would need 10,000 labels an hour there to reach 200.
const DefaultMinSegmentClassSamples = 100

// DefaultMinShadowSamples is the default of QualityAlerts.MinShadowSamples:
// over 200 compared predictions, a disagreement rate of 0.05 has a standard
// error of 0.015.
const DefaultMinShadowSamples = 200

// QualityAlerts are thresholds on a model's quality over the last hour,
// computed by the recording rules of deploy/prometheus/quality.rules.yml.
// A zero threshold is not checked.
type QualityAlerts struct {
	// MinAccuracy, MinF1, MaxMAE, MaxRMSE and MinR2 are checked over an
	// hour with at least MinSamples labels joined (default
	// DefaultMinSamples) that the figure is over: the class labels for
	// accuracy; the class's predictions plus its labels for its F1, its
	// denominator (2·right / (predicted + actual)), so that a model that
	// floods a rare class with wrong predictions has its F1 checked though
	// the class has few labels; the numeric labels for MAE, RMSE and R².
	// With fewer, one wrong label in a quiet hour crosses the threshold.
	// 1 checks every hour with a label. MinSamples also guards
	// MinEstimatedAccuracy and MinLabelCoverage, counting the hour's
	// predictions that each is over, and, for MinEstimatedAccuracy, the
	// last day's labels of each confidence bin it applies.
	MinAccuracy float64 `yaml:"min_accuracy"`
	MinSamples  int     `yaml:"min_samples"`
	// MinEstimatedAccuracy bounds the accuracy estimated without labels
	// from the last hour's predictions' confidence: the early warning while
	// labels are late. The estimate is over the confidence bins with at
	// least MinSamples labels in the last day, and is checked when those
	// bins hold at least 90 % of the hour's predictions and at least
	// MinSamples of them.
	MinEstimatedAccuracy float64 `yaml:"min_estimated_accuracy"`
	MinF1                float64 `yaml:"min_f1"`
	MaxMAE               float64 `yaml:"max_mae"`
	MaxRMSE              float64 `yaml:"max_rmse"`
	MinR2                float64 `yaml:"min_r2"`
	// MinLabelCoverage bounds the labels joined in the last hour per
	// prediction in it, checked over an hour with at least MinSamples
	// predictions.
	MinLabelCoverage float64 `yaml:"min_label_coverage"`
	// MaxCalibrationError bounds the expected calibration error of the
	// predictions that give their class a probability, checked over an
	// hour with at least MinCalibrationSamples of them (default
	// DefaultMinCalibrationSamples): with fewer, a calibrated model's
	// error is large from sampling alone.
	MaxCalibrationError   float64 `yaml:"max_calibration_error"`
	MinCalibrationSamples int     `yaml:"min_calibration_samples"`
	// MaxSegmentAccuracyGap bounds how far a segment's accuracy (a value of
	// a feature in models[].segments) may fall below the model's, checked
	// over an hour for segment values with at least MinSegmentSamples
	// class labels (default DefaultMinSegmentSamples): the labels its
	// accuracy is over, not those joined to numbers.
	MaxSegmentAccuracyGap float64 `yaml:"max_segment_accuracy_gap"`
	MinSegmentSamples     int     `yaml:"min_segment_samples"`
	// MaxSegmentRecallGap and MaxSegmentPrecisionGap bound how far a
	// class's recall and precision in a segment value (counted by class
	// with models[].segment_classes) may fall below the model's for the
	// same class, checked over an hour where the segment value has at
	// least MinSegmentClassSamples labels of the class (recall) or
	// predictions of it (precision), default
	// DefaultMinSegmentClassSamples: a class has fewer of those than the
	// segment value has labels.
	MaxSegmentRecallGap    float64 `yaml:"max_segment_recall_gap"`
	MaxSegmentPrecisionGap float64 `yaml:"max_segment_precision_gap"`
	MinSegmentClassSamples int     `yaml:"min_segment_class_samples"`
	// MaxShadowDisagreement bounds the share of the predictions compared
	// with a shadow model server (--shadow.upstream) whose class differs,
	// checked over an hour with at least MinShadowSamples of them
	// (default DefaultMinShadowSamples).
	MaxShadowDisagreement float64 `yaml:"max_shadow_disagreement"`
	MinShadowSamples      int     `yaml:"min_shadow_samples"`
	// For is how long a threshold must be crossed before the alert fires
	// (Prometheus's for); Severity is the alert's severity label.
	For      string `yaml:"for"`
	Severity string `yaml:"severity"`
}

// SLOs are a model's service level objectives over a period: the share of
// good events each aims at. A zero objective is not set.
type SLOs struct {
	// Availability is the share of prediction requests answered without
	// an error (modelmon_prediction_errors_total).
	Availability float64 `yaml:"availability"`
	// Latency is the share of prediction requests answered within
	// LatencyThreshold seconds, one of the classic buckets of
	// modelmon_prediction_duration_seconds.
	Latency          float64 `yaml:"latency"`
	LatencyThreshold float64 `yaml:"latency_threshold"`
	// Accuracy is the share of labelled classification predictions that
	// were right (counted when their label joins).
	Accuracy float64 `yaml:"accuracy"`
	// Regression is the share of labelled regression predictions whose
	// absolute error is at most RegressionThreshold, in the model's units
	// (counted when their label joins): one of Model.ErrorBuckets when
	// the model has them, else any positive number, read from the native
	// histogram of modelmon_prediction_error_magnitude.
	Regression          float64 `yaml:"regression"`
	RegressionThreshold float64 `yaml:"regression_threshold"`
	// Period is the SLO's period, over which the error budget is spent
	// (default DefaultSLOPeriod).
	Period model.Duration `yaml:"period"`
	// PageSeverity and TicketSeverity are the severity labels of the fast
	// and the slow burn alerts (default "page" and "ticket").
	PageSeverity   string `yaml:"page_severity"`
	TicketSeverity string `yaml:"ticket_severity"`
}

// DefaultSLOPeriod is an SLO's period when it gives none.
const DefaultSLOPeriod = model.Duration(30 * 24 * time.Hour)

// Limits bound the label values that come from traffic.
type Limits struct {
	MaxModels    int `yaml:"max_models"`
	MaxFeatures  int `yaml:"max_features"`
	MaxInstances int `yaml:"max_instances"`
}

// DefaultConfig is the configuration used without --config.file, and the
// base every loaded file is laid over.
var DefaultConfig = Config{
	ModelHeader:   "X-Model-Name",
	VersionHeader: "X-Model-Version",
	Limits: Limits{
		MaxModels:    20,
		MaxFeatures:  200,
		MaxInstances: 10000,
	},
	Labels: Labels{Scheme: "http", Timeout: model.Duration(5 * time.Second), HTTPClientConfig: promconfig.DefaultHTTPClientConfig},
	Drift:  Drift{Correction: "bonferroni"},
}

// Formats are the accepted values of a model's format.
var Formats = []string{"auto", "kserve_v1", "oip_v2", "mlflow", "seldon_v1", "json"}

// Default returns a copy of DefaultConfig.
func Default() *Config {
	c := DefaultConfig
	return &c
}

// Validate checks the configuration as a whole.
func (c *Config) Validate() error {
	if c.Limits.MaxModels < 1 {
		return fmt.Errorf("limits.max_models must be at least 1, got %d", c.Limits.MaxModels)
	}
	if c.Limits.MaxFeatures < 1 {
		return fmt.Errorf("limits.max_features must be at least 1, got %d", c.Limits.MaxFeatures)
	}
	if c.Limits.MaxInstances < 1 {
		return fmt.Errorf("limits.max_instances must be at least 1, got %d", c.Limits.MaxInstances)
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		if m.Name == "" {
			return fmt.Errorf("models[%d]: name is required", i)
		}
		if m.Name == collector.OtherValue {
			// The name the sidecar counts the models past
			// limits.max_models under: such a model would never have
			// series of its own.
			return fmt.Errorf("models[%d]: %q is the name the models past limits.max_models are counted under", i, m.Name)
		}
		if seen[m.Name] {
			return fmt.Errorf("models[%d]: model %q is configured twice", i, m.Name)
		}
		seen[m.Name] = true
		if m.Format != "" && !contains(Formats, m.Format) {
			return fmt.Errorf("models[%d]: unknown format %q (want one of %s)", i, m.Format, strings.Join(Formats, ", "))
		}
		if a := m.Alerts; a != nil {
			for name, v := range map[string]float64{"min_accuracy": a.MinAccuracy, "min_estimated_accuracy": a.MinEstimatedAccuracy, "min_f1": a.MinF1, "min_label_coverage": a.MinLabelCoverage, "max_calibration_error": a.MaxCalibrationError, "max_segment_accuracy_gap": a.MaxSegmentAccuracyGap, "max_segment_recall_gap": a.MaxSegmentRecallGap, "max_segment_precision_gap": a.MaxSegmentPrecisionGap, "min_r2": a.MinR2, "max_shadow_disagreement": a.MaxShadowDisagreement} {
				if v < 0 || v > 1 {
					return fmt.Errorf("models[%d].alerts.%s must be between 0 and 1, got %v", i, name, v)
				}
			}
			if a.MinSamples < 0 {
				return fmt.Errorf("models[%d].alerts.min_samples must not be negative, got %d", i, a.MinSamples)
			}
			if a.MinCalibrationSamples < 0 {
				return fmt.Errorf("models[%d].alerts.min_calibration_samples must not be negative, got %d", i, a.MinCalibrationSamples)
			}
			if a.MinSegmentSamples < 0 {
				return fmt.Errorf("models[%d].alerts.min_segment_samples must not be negative, got %d", i, a.MinSegmentSamples)
			}
			if a.MinSegmentClassSamples < 0 {
				return fmt.Errorf("models[%d].alerts.min_segment_class_samples must not be negative, got %d", i, a.MinSegmentClassSamples)
			}
			if a.MinShadowSamples < 0 {
				return fmt.Errorf("models[%d].alerts.min_shadow_samples must not be negative, got %d", i, a.MinShadowSamples)
			}
			if a.MaxSegmentAccuracyGap > 0 && len(m.Segments) == 0 {
				return fmt.Errorf("models[%d].alerts.max_segment_accuracy_gap needs models[%d].segments", i, i)
			}
			if m.SegmentClasses == 0 {
				switch {
				case a.MaxSegmentRecallGap > 0:
					return fmt.Errorf("models[%d].alerts.max_segment_recall_gap needs models[%d].segment_classes", i, i)
				case a.MaxSegmentPrecisionGap > 0:
					return fmt.Errorf("models[%d].alerts.max_segment_precision_gap needs models[%d].segment_classes", i, i)
				}
			}
			if a.MaxMAE < 0 || a.MaxRMSE < 0 {
				return fmt.Errorf("models[%d].alerts: max_mae and max_rmse must not be negative", i)
			}
			if a.For != "" {
				if _, err := model.ParseDuration(a.For); err != nil {
					return fmt.Errorf("models[%d].alerts.for: %w", i, err)
				}
			}
		}
		if err := checkBuckets(m.ErrorBuckets, MaxErrorBuckets); err != nil {
			return fmt.Errorf("models[%d].error_buckets: %w", i, err)
		}
		if len(m.ErrorBuckets) > 0 && m.ErrorBuckets[0] < 0 {
			return fmt.Errorf("models[%d].error_buckets: must not be negative (an absolute error never is), got %v", i, m.ErrorBuckets)
		}
		if o := m.SLOs; o != nil {
			for name, v := range map[string]float64{"availability": o.Availability, "latency": o.Latency, "accuracy": o.Accuracy, "regression": o.Regression} {
				if v < 0 || v >= 1 {
					return fmt.Errorf("models[%d].slos.%s must be at least 0 and below 1, got %v", i, name, v)
				}
			}
			if (o.Latency > 0) != (o.LatencyThreshold > 0) {
				return fmt.Errorf("models[%d].slos: latency and latency_threshold go together", i)
			}
			if o.LatencyThreshold > 0 && !slices.Contains(collector.DurationBuckets, o.LatencyThreshold) {
				return fmt.Errorf("models[%d].slos.latency_threshold %v is not a bucket of %s (%v)", i, o.LatencyThreshold, collector.PredictionDuration, collector.DurationBuckets)
			}
			if t := o.RegressionThreshold; t < 0 || math.IsNaN(t) || math.IsInf(t, 0) {
				return fmt.Errorf("models[%d].slos.regression_threshold must be a positive finite number, got %v", i, t)
			}
			if (o.Regression > 0) != (o.RegressionThreshold > 0) {
				return fmt.Errorf("models[%d].slos: regression and regression_threshold go together", i)
			}
			// The SLO reads the classic bucket at the threshold where the
			// model has classic buckets: it must be one.
			if o.RegressionThreshold > 0 && len(m.ErrorBuckets) > 0 && !slices.Contains(m.ErrorBuckets, o.RegressionThreshold) {
				return fmt.Errorf("models[%d].slos.regression_threshold %v is not a bucket of models[%d].error_buckets (%v)", i, o.RegressionThreshold, i, m.ErrorBuckets)
			}
			if o.Period != 0 && time.Duration(o.Period) < 24*time.Hour {
				return fmt.Errorf("models[%d].slos.period must be at least 1d, got %s", i, o.Period)
			}
		}
		if len(m.Segments) > MaxSegments {
			return fmt.Errorf("models[%d].segments: at most %d features, got %d", i, MaxSegments, len(m.Segments))
		}
		for k, sg := range m.Segments {
			if sg.Feature == "" || slices.ContainsFunc(m.Segments[:k], func(o Segment) bool { return o.Feature == sg.Feature }) {
				return fmt.Errorf("models[%d].segments: %q is empty or given twice", i, sg.Feature)
			}
			if err := checkBuckets(sg.Buckets, MaxSegmentBuckets); err != nil {
				return fmt.Errorf("models[%d].segments[%d].buckets: %w", i, k, err)
			}
		}
		for k, c := range m.Classes {
			if c == "" || slices.Contains(m.Classes[:k], c) {
				return fmt.Errorf("models[%d].classes: %q is empty or given twice", i, c)
			}
		}
		if n := m.SegmentClasses; n < 0 || n > MaxSegmentClasses {
			return fmt.Errorf("models[%d].segment_classes must be between 0 and %d, got %d", i, MaxSegmentClasses, n)
		}
		if m.SegmentClasses > 0 && len(m.Segments) == 0 {
			return fmt.Errorf("models[%d].segment_classes needs models[%d].segments", i, i)
		}
		if b := m.CalibrationBins; b != 0 && (b < MinCalibrationBins || b > MaxCalibrationBins) {
			return fmt.Errorf("models[%d].calibration_bins must be between %d and %d, got %d", i, MinCalibrationBins, MaxCalibrationBins, b)
		}
		if c := m.LabelOffset; c != nil && (math.IsNaN(*c) || math.IsInf(*c, 0)) {
			return fmt.Errorf("models[%d].label_offset must be a finite number, got %v", i, *c)
		}
		if err := checkBuckets(m.ScoreBuckets, MaxScoreBuckets); err != nil {
			return fmt.Errorf("models[%d].score_buckets: %w", i, err)
		}
		var importance float64
		for _, f := range slices.Sorted(maps.Keys(m.FeatureImportance)) {
			v := m.FeatureImportance[f]
			if f == "" || !(v >= 0) || math.IsInf(v, 0) {
				return fmt.Errorf("models[%d].feature_importance: %q must name a feature and be a finite number ≥ 0, got %v", i, f, v)
			}
			importance += v
		}
		if len(m.FeatureImportance) > 0 && importance == 0 {
			return fmt.Errorf("models[%d].feature_importance: every feature is 0", i)
		}
		if d := m.Drift; d != nil {
			ownDecision := d.Correction != "" || d.CorrectionAlpha != nil
			switch ext := strings.ToLower(filepath.Ext(d.Reference)); {
			case d.Reference == "" && (d.PredictionColumn != "" || !ownDecision):
				return fmt.Errorf("models[%d].drift.reference is required", i)
			case d.Reference == "":
			case ext == ".json" && d.PredictionColumn != "":
				return fmt.Errorf("models[%d].drift.prediction_column is for training data: a profile (.json) marks its prediction itself", i)
			case !slices.Contains([]string{".json", ".csv", ".jsonl", ".ndjson", ".parquet"}, ext):
				return fmt.Errorf("models[%d].drift.reference: unknown format %q: want .json (a profile), .csv, .jsonl or .parquet", i, ext)
			}
			if err := validateCorrection(fmt.Sprintf("models[%d].drift", i), d.Correction, d.CorrectionAlpha); err != nil {
				return err
			}
		}
	}
	if len(c.Models) > c.Limits.MaxModels {
		return fmt.Errorf("%d models configured but limits.max_models is %d", len(c.Models), c.Limits.MaxModels)
	}
	for _, p := range c.PredictionPaths {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("prediction_paths: %q must start with /", p)
		}
	}
	if err := c.Drift.validate(); err != nil {
		return err
	}
	return c.Labels.validate()
}

func (d *Drift) validate() error {
	return validateCorrection("drift", d.Correction, d.CorrectionAlpha)
}

// validateCorrection checks the correction and correction_alpha of the
// drift decision at path (drift, models[i].drift).
func validateCorrection(path, correction string, alpha *float64) error {
	if correction != "" && !contains(Corrections, correction) {
		return fmt.Errorf("%s.correction: unknown correction %q (want one of %s)", path, correction, strings.Join(Corrections, ", "))
	}
	if a := alpha; a != nil && !(*a > 0 && *a < 1) {
		return fmt.Errorf("%s.correction_alpha must be between 0 and 1 (both excluded), got %v", path, *a)
	}
	return nil
}

func (l *Labels) validate() error {
	if l.Scheme != "http" && l.Scheme != "https" {
		return fmt.Errorf("labels.scheme must be http or https, got %q", l.Scheme)
	}
	if l.Timeout <= 0 {
		return fmt.Errorf("labels.timeout must be positive, got %s", l.Timeout)
	}
	for i, p := range l.Peers {
		host, port, err := net.SplitHostPort(strings.TrimPrefix(p, "dns+"))
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("labels.peers[%d]: %q is not host:port or dns+host:port", i, p)
		}
	}
	if err := l.HTTPClientConfig.Validate(); err != nil {
		return fmt.Errorf("labels.http_config: %w", err)
	}
	return nil
}

// Model returns the configuration of the named model, if any.
func (c *Config) Model(name string) (Model, bool) {
	for _, m := range c.Models {
		if m.Name == name {
			return m, true
		}
	}
	return Model{}, false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Load parses a configuration from s. Unknown fields are errors.
func Load(s string) (*Config, error) {
	return load([]byte(s), "")
}

// LoadFile parses the configuration file at path. Errors name the file, and
// the line where they have one.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return load(b, path)
}

var yamlLineRE = regexp.MustCompile(`line (\d+): (.*)`)
var unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

func load(b []byte, file string) (*Config, error) {
	cfg, err := decode(b, file)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		// The message names the field; its line is found in the document.
		line, _ := Blame(b, err.Error(), func(b []byte) error {
			cfg, err := decode(b, "")
			if err != nil {
				return err
			}
			return cfg.Validate()
		})
		return nil, Prefix(file, line, err.Error())
	}
	return cfg, nil
}

// decode reads the document b of file over the defaults, unchecked.
func decode(b []byte, file string) (*Config, error) {
	cfg, err := decodeYAML(b)
	if err != nil {
		return nil, yamlError(file, b, err)
	}
	if file != "" {
		// Files the peers' client configuration names are relative to
		// this one, as in Prometheus's configuration.
		cfg.Labels.HTTPClientConfig.SetDirectory(filepath.Dir(file))
		for _, m := range cfg.Models {
			if m.Drift != nil && m.Drift.Reference != "" && !filepath.IsAbs(m.Drift.Reference) {
				m.Drift.Reference = filepath.Join(filepath.Dir(file), m.Drift.Reference)
			}
		}
	}
	return cfg, nil
}

// decodeYAML reads the document b strictly over the defaults.
func decodeYAML(b []byte) (*Config, error) {
	// Decoding over the defaults keeps every field the file leaves out.
	// (An UnmarshalYAML method would lose KnownFields: yaml.v3 does not pass
	// it on to Node.Decode.)
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return cfg, nil
}

// yamlError rewrites the error of decodeYAML for the document b of file as
// "file:line: message", one per line. yaml.v3 gives no line for a value
// whose own UnmarshalYAML refuses it (a bad duration, URL or TLS version in
// Prometheus's types): its error comes through as it is, and Blame finds
// that value, its line and its key, in the document instead.
func yamlError(file string, b []byte, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return LineErrors(file, b, te.Errors)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if line, path := Blame(b, err.Error(), func(b []byte) error { _, err := decodeYAML(b); return err }); line != "" {
		return Prefix(file, line, path+": "+msg)
	}
	// A syntax error says its line: "line 3: did not find expected key".
	return LineErrors(file, b, []string{msg})
}

// LineErrors turns YAML decoder messages about the document b ("line 3:
// field x not found in type y", "line 4: cannot unmarshal !!str `x` into
// int", from yaml.v2 or yaml.v3) into "file:3: unknown field "x"" and
// "file:4: limits.max_models: cannot unmarshal …", one per line.
func LineErrors(file string, b []byte, msgs []string) error {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil {
		doc = yaml.Node{}
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		line := ""
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			line, m = sm[1], sm[2]
		}
		if sm := unknownFieldRE.FindStringSubmatch(m); sm != nil {
			m = fmt.Sprintf("unknown field %q", sm[1])
		} else if sm := cannotUnmarshalRE.FindStringSubmatch(m); sm != nil && line != "" {
			if path := pathAt(&doc, line, sm[1], sm[2]); path != "" {
				m = path + ": " + m
			}
		}
		out = append(out, Prefix(file, line, m).Error())
	}
	return errors.New(strings.Join(out, "\n"))
}

// cannotUnmarshalRE matches the decoders' type errors: the value's tag, and
// the value itself when it is a scalar (cut to 7 bytes and "..." past 10).
var cannotUnmarshalRE = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into ")

// pathAt returns the path ("models[0].calibration_bins") of the one value
// of the document doc on line with the tag and, for a scalar, the value
// (as the decoders quote it) of a type error; "" when there is not one such
// value, as when a flow mapping holds two alike on the line.
func pathAt(doc *yaml.Node, line, tag, value string) string {
	var paths []string
	var walk func(n *yaml.Node, path string)
	match := func(n *yaml.Node, path string) {
		if strconv.Itoa(n.Line) != line || n.ShortTag() != tag {
			return
		}
		if n.Kind == yaml.ScalarNode {
			if v, ok := strings.CutSuffix(value, "..."); !(n.Value == value || ok && len(n.Value) > 10 && strings.HasPrefix(n.Value, v)) {
				return
			}
		}
		paths = append(paths, path)
	}
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := strings.TrimPrefix(path+"."+n.Content[i].Value, ".")
				match(n.Content[i+1], p)
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				match(c, p)
				walk(c, p)
			}
		}
	}
	walk(doc, "")
	// A collection that starts on the line of a value in it ("- name: [a]")
	// was decoded, or the decoder would not have reached the value.
	paths = slices.DeleteFunc(paths, func(p string) bool {
		return slices.ContainsFunc(paths, func(q string) bool {
			return strings.HasPrefix(q, p+".") || strings.HasPrefix(q, p+"[")
		})
	})
	if len(paths) != 1 {
		return ""
	}
	return paths[0]
}

// Prefix returns msg as an error that starts with the file and line, where
// known.
func Prefix(file, line, msg string) error {
	switch {
	case file != "" && line != "":
		return fmt.Errorf("%s:%s: %s", file, line, msg)
	case file != "":
		return fmt.Errorf("%s: %s", file, msg)
	case line != "":
		return fmt.Errorf("line %s: %s", line, msg)
	}
	return errors.New(msg)
}

// checkBuckets checks that bucket bounds are at most max, finite and
// increasing.
func checkBuckets(b []float64, max int) error {
	if len(b) > max {
		return fmt.Errorf("at most %d, got %d", max, len(b))
	}
	for j, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || (j > 0 && v <= b[j-1]) {
			return fmt.Errorf("must be finite and increasing, got %v", b)
		}
	}
	return nil
}

// Blame finds the value of the YAML document b that decode fails on with
// the error message msg: the deepest one without which decode no longer
// fails so, preferring at each level a value without which it succeeds to
// one without which it fails otherwise (a name other values need, say), and
// a collection to a scalar without which it succeeds as well; of values
// that fail alike, the first, where the decoder stops. It returns the line
// of that value's key (of the value, in a sequence) and its path
// ("receivers[0].email_configs[0].smarthost"); "" when the document has no
// such value.
func Blame(b []byte, msg string, decode func([]byte) error) (line, path string) {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return "", ""
	}
	// outcome is 0 when decode fails with msg, 1 when it fails otherwise,
	// 2 when it succeeds.
	outcome := func() int {
		out, err := yaml.Marshal(&doc)
		switch {
		case err != nil:
			return 0
		case decode(out) == nil:
			return 2
		}
		if err = decode(out); err.Error() == msg {
			return 0
		}
		return 1
	}
	if outcome() != 0 {
		return "", ""
	}
	n := doc.Content[0]
	for n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		step := 1
		if n.Kind == yaml.MappingNode {
			step = 2
		}
		all, best := n.Content, 0
		var found []int // the values whose removal has the best outcome
		for i := 0; i < len(all); i += step {
			n.Content = slices.Delete(slices.Clone(all), i, i+step)
			switch o := outcome(); {
			case o > best:
				found, best = []int{i}, o
			case o == best && o > 0:
				found = append(found, i)
			}
		}
		n.Content = all
		if best == 0 {
			// The same failure is in more than one value: the decoder
			// stops at the first, which ends the shortest part of the
			// collection that still fails so. The values after it go, so
			// that they no longer fail so at the levels below.
			for i := step; i < len(all); i += step {
				if n.Content = all[:i]; outcome() == 0 {
					found = []int{i - step}
					break
				}
			}
			if len(found) == 0 {
				n.Content = all
			}
		}
		if len(found) > 1 {
			// Without a key that names or switches on its object, the
			// object goes too: the value that holds more is the one.
			found = slices.DeleteFunc(found, func(i int) bool { return all[i+step-1].Kind == yaml.ScalarNode })
		}
		if len(found) != 1 {
			break
		}
		next := found[0]
		line = strconv.Itoa(all[next].Line)
		if step == 2 {
			path = strings.TrimPrefix(path+"."+all[next].Value, ".")
		} else {
			path = fmt.Sprintf("%s[%d]", path, next)
		}
		n = all[next+step-1]
	}
	return line, path
}
