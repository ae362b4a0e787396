package collector

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelmon/modelmon/drift"
)

func init() {
	Register("drift", true, NewDriftCollector)
}

// DriftModel is the drift state of one model at a scrape, copied out of the
// running windows so that scoring holds no lock of the hot path.
type DriftModel struct {
	Model    string
	Detector *drift.Detector
	// Source says where the reference came from: a file, or "learned".
	Source string
	// Windows label the spans of every feature's Counts, in order ("5m").
	Windows  []string
	Features []DriftFeature
	// Correction and CorrectionAlpha take the model-level decision
	// (drift.Detector.Model): empty is drift.DefaultCorrection, 0 the
	// detector's alpha.
	Correction      drift.Correction
	CorrectionAlpha float64
}

// DriftFeature is one feature's counts.
type DriftFeature struct {
	Feature *drift.Feature
	// Digest names the feature's reference profile (its bins and
	// reference counts): another digest, other bins.
	Digest string
	Totals drift.Totals
	Counts []drift.Counts // per window
}

// DriftSource is implemented by a Source whose models have a drift reference.
type DriftSource interface {
	// Drift returns the drift state of every model with a reference.
	Drift() []DriftModel
}

var (
	mfw = []string{"model", "feature", "window"}

	binTotalDesc = prometheus.NewDesc(FeatureBinTotal,
		"The total number of values of a feature that fell into each bin of its reference profile (coarse bins: deciles, or categories); missing values are in none.",
		[]string{"model", "feature", "bin"}, nil)
	refRatioDesc = prometheus.NewDesc(FeatureReferenceRatio,
		"The share of the reference (training) values of a feature in each bin.",
		[]string{"model", "feature", "bin"}, nil)
	refValuesDesc = prometheus.NewDesc(FeatureReferenceValues,
		"The number of non-missing values of a feature in the reference.",
		[]string{"model", "feature"}, nil)
	featureRefInfoDesc = prometheus.NewDesc(FeatureReferenceInfo,
		"Which reference profile a feature's bins and bin counters come from, by a digest of the feature's profile, and the feature's role in it (input, prediction, multivariate); always 1. When the digest changes (a reload or a restart with another reference), the counters start again under other bin edges.",
		[]string{"model", "feature", "digest", "role"}, nil)
	refInfoDesc = prometheus.NewDesc(DriftReferenceInfo,
		"Where a model's drift reference came from; always 1.",
		[]string{"model", "source"}, nil)
	windowValuesDesc = prometheus.NewDesc(FeatureDriftWindowValues,
		"The number of non-missing values of a feature in a drift window (a sliding window over the last 5m, 1h, … of this replica).",
		mfw, nil)
	detectableDesc = prometheus.NewDesc(FeatureDriftDetectable,
		"The smallest shift of a feature's distribution over its coarse bins, as PSI, that its drift window could detect: found four times in five by the chi-squared test at the drift alpha, given the window's and the reference's values. Above the PSI that matters (0.1, 0.2), the window has too few values to tell: silence is not 'no drift'.",
		mfw, nil)
	driftedDesc = prometheus.NewDesc(FeatureDrifted,
		"Whether a feature drifted in a window (1) or not (0), by the method that decides for it; only once the window holds enough values.",
		append(mfw, "method"), nil)
	thresholdDesc = prometheus.NewDesc(FeatureDriftThreshold,
		"The threshold of the deciding method: the score above which a distance drifts, or the p-value below which a test does; calibrated to the configured false-alarm rate.",
		append(mfw, "method"), nil)
	datasetShareDesc = prometheus.NewDesc(DatasetDriftShare,
		"The share of a model's features (the prediction left out) that drifted in a window.",
		[]string{"model", "window"}, nil)
	datasetDriftedDesc = prometheus.NewDesc(DatasetDrifted,
		"Whether the share of drifted features reached the dataset threshold in a window (1) or not (0).",
		[]string{"model", "window"}, nil)
	modelDriftedDesc = prometheus.NewDesc(ModelDrifted,
		"Whether a model drifted in a window (1) or not (0): whether any of its features' p-values is below the threshold corrected for testing them all (the correction label: bonferroni, fdr or none).",
		[]string{"model", "window", "correction"}, nil)
	modelThresholdDesc = prometheus.NewDesc(ModelDriftThreshold,
		"The p-value below which any one of a model's features makes the model drift in a window, corrected for testing them all: the level divided by the number of features tested (bonferroni), the Benjamini-Hochberg cut-off (fdr), or the level itself (none).",
		[]string{"model", "window", "correction"}, nil)
	modelFeaturesDesc = prometheus.NewDesc(ModelDriftFeatures,
		"The number of a model's features whose p-values its drift decision in a window corrects over: those scored, the prediction and the reconstruction error left out.",
		[]string{"model", "window"}, nil)

	// scoreDescs holds the gauge of each method's score, and pValueDescs the
	// gauge of its p-value where it has one: one gauge per statistic, as they
	// live on different scales.
	scoreDescs = map[drift.Method]*prometheus.Desc{
		drift.MethodPSI:         prometheus.NewDesc(FeatureDriftPSI, "The population stability index of a feature's window against its reference, over the coarse bins.", mfw, nil),
		drift.MethodJS:          prometheus.NewDesc(FeatureDriftJS, "The Jensen–Shannon distance (base 2, 0 to 1) of a feature's window against its reference.", mfw, nil),
		drift.MethodHellinger:   prometheus.NewDesc(FeatureDriftHellinger, "The Hellinger distance (0 to 1) of a feature's window against its reference.", mfw, nil),
		drift.MethodKS:          prometheus.NewDesc(FeatureDriftKS, "The two-sample Kolmogorov–Smirnov statistic of a numeric feature's window against its reference.", mfw, nil),
		drift.MethodWasserstein: prometheus.NewDesc(FeatureDriftWasserstein, "The Wasserstein-1 distance of a numeric feature's window from its reference, in reference standard deviations.", mfw, nil),
		drift.MethodMissing:     prometheus.NewDesc(FeatureDriftMissingDelta, "The change of a feature's missing rate in a window from its reference's (window minus reference).", mfw, nil),
	}
	pValueDescs = map[drift.Method]*prometheus.Desc{
		drift.MethodKS:        prometheus.NewDesc(FeatureDriftKSPValue, "The p-value of the Kolmogorov–Smirnov test of a numeric feature's window against its reference.", mfw, nil),
		drift.MethodChiSquare: prometheus.NewDesc(FeatureDriftChiSqPValue, "The p-value of the chi-squared test of a categorical feature's window against its reference.", mfw, nil),
		drift.MethodZ:         prometheus.NewDesc(FeatureDriftZPValue, "The p-value of the two-proportion z-test of a binary feature's window against its reference.", mfw, nil),
		drift.MethodMissing:   prometheus.NewDesc(FeatureDriftMissingP, "The p-value of the test that a feature's missing rate in a window equals its reference's.", mfw, nil),
	}
)

type driftCollector struct {
	src    Source
	logger *slog.Logger
}

// NewDriftCollector returns a Collector exposing the bin counters, reference
// shares and per-window drift scores and decisions of every model with a
// drift reference.
func NewDriftCollector(logger *slog.Logger, src Source) (Collector, error) {
	return &driftCollector{src: src, logger: logger}, nil
}

// Update implements Collector.
func (c *driftCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	ds, ok := c.src.(DriftSource)
	if !ok {
		return ErrNoData
	}
	models := ds.Drift()
	if len(models) == 0 {
		return ErrNoData
	}
	for _, m := range models {
		if err := c.model(ctx, m, ch); err != nil {
			return err
		}
	}
	return nil
}

// model exposes one model's drift. Scoring a window size for the first time
// calibrates its thresholds by simulation (tens of milliseconds a feature),
// so it stops at the scrape's deadline; the next scrape goes on from the
// thresholds already cached.
func (c *driftCollector) model(ctx context.Context, m DriftModel, ch chan<- prometheus.Metric) error {
	ch <- prometheus.MustNewConstMetric(refInfoDesc, prometheus.GaugeValue, 1, m.Model, m.Source)
	results := make([][]drift.Result, len(m.Windows))
	for _, f := range m.Features {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("drift of model %q: scrape deadline reached while calibrating: %w", m.Model, err)
		}
		name := f.Feature.Name
		for i, b := range f.Feature.Bins() {
			if i < len(f.Totals.Bins) {
				ch <- prometheus.MustNewConstMetric(binTotalDesc, prometheus.CounterValue, float64(f.Totals.Bins[i]), m.Model, name, b.Label)
			}
			ch <- prometheus.MustNewConstMetric(refRatioDesc, prometheus.GaugeValue, b.Share, m.Model, name, b.Label)
		}
		ch <- prometheus.MustNewConstMetric(refValuesDesc, prometheus.GaugeValue, float64(f.Feature.Count), m.Model, name)
		if f.Digest != "" {
			ch <- prometheus.MustNewConstMetric(featureRefInfoDesc, prometheus.GaugeValue, 1, m.Model, name, f.Digest, featureRole(f.Feature))
		}
		for k, w := range m.Windows {
			if k >= len(f.Counts) {
				break
			}
			r, err := m.Detector.Score(name, f.Counts[k])
			if err != nil {
				c.logger.Debug("Could not score drift", "model", m.Model, "feature", name, "window", w, "err", err)
				continue
			}
			results[k] = append(results[k], r)
			ch <- prometheus.MustNewConstMetric(windowValuesDesc, prometheus.GaugeValue, float64(r.N), m.Model, name, w)
			if r.DetectablePSI != nil {
				ch <- prometheus.MustNewConstMetric(detectableDesc, prometheus.GaugeValue, *r.DetectablePSI, m.Model, name, w)
			}
			if !r.Ready {
				continue
			}
			for method, v := range r.Scores {
				if d, ok := scoreDescs[method]; ok {
					ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, m.Model, name, w)
				}
			}
			for method, t := range r.Tests {
				if d, ok := pValueDescs[method]; ok && t.PValue != nil {
					ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, *t.PValue, m.Model, name, w)
				}
			}
			ch <- prometheus.MustNewConstMetric(driftedDesc, prometheus.GaugeValue, boolValue(r.Drifted), m.Model, name, w, string(r.Method))
			ch <- prometheus.MustNewConstMetric(thresholdDesc, prometheus.GaugeValue, r.Threshold, m.Model, name, w, string(r.Method))
		}
	}
	for k, w := range m.Windows {
		d := m.Detector.Dataset(results[k])
		if d.Features == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(datasetShareDesc, prometheus.GaugeValue, d.Share, m.Model, w)
		ch <- prometheus.MustNewConstMetric(datasetDriftedDesc, prometheus.GaugeValue, boolValue(d.Drift), m.Model, w)
		md := m.Detector.Model(results[k], m.Correction, m.CorrectionAlpha)
		if md.Features == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(modelDriftedDesc, prometheus.GaugeValue, boolValue(md.Drift), m.Model, w, string(md.Correction))
		ch <- prometheus.MustNewConstMetric(modelThresholdDesc, prometheus.GaugeValue, md.Threshold, m.Model, w, string(md.Correction))
		ch <- prometheus.MustNewConstMetric(modelFeaturesDesc, prometheus.GaugeValue, float64(md.Features), m.Model, w)
	}
	return nil
}

// featureRole returns the role label of a feature: the prediction and the
// reconstruction error are those the dataset's drift share leaves out
// (drift.Detector.Dataset), each for its own reason.
func featureRole(f *drift.Feature) string {
	switch {
	case f.Prediction:
		return RolePrediction
	case f.Name == drift.ReconstructionError:
		return RoleMultivariate
	}
	return RoleInput
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
