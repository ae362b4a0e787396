package exporter

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/driftref"
	"github.com/modelmon/modelmon/internal/payload"
)

// writeReference writes n rows of training data: amount ~ N(100, 20),
// country from a fixed mix, and the model's score.
func writeReference(t *testing.T, n int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("amount,country,score\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%.3f,%s,%.3f\n", 100+20*rng.NormFloat64(), []string{"DE", "DE", "FR", "US"}[rng.IntN(4)], rng.Float64())
	}
	path := filepath.Join(t.TempDir(), "train.csv")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// pushRecords sends n observations of model whose amount is shifted by
// shift reference standard deviations.
func pushRecords(t *testing.T, e *Exporter, model string, n int, shift float64, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	var b strings.Builder
	for i := 0; i < n; i++ {
		rec := map[string]any{
			"model": model,
			"features": map[string]any{
				"amount":  100 + 20*(rng.NormFloat64()+shift),
				"country": []string{"DE", "DE", "FR", "US"}[rng.IntN(4)],
			},
			"prediction": rng.Float64(),
		}
		line, err := json.Marshal(rec)
		require.NoError(t, err)
		b.Write(line)
		b.WriteByte('\n')
	}
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations", b.String(), "Content-Type", "application/x-ndjson")
	require.Equal(t, 200, st, body)
}

func driftOptions(ref string) DriftOptions {
	det := drift.DefaultOptions()
	det.MinSamples = 50
	return DriftOptions{Reference: ref, PredictionColumn: "score", Windows: []time.Duration{5 * time.Minute, time.Hour}, Detector: det}
}

// With a reference, the sidecar counts values into the reference's bins,
// scores every window and decides drift per feature and for the dataset.
func TestDriftAgainstReference(t *testing.T) {
	up := modelServer(t)
	ref := writeReference(t, 5000)
	e := startExporter(t, up.URL, func(o *Options) { o.Drift = driftOptions(ref) })

	pushRecords(t, e, "clean", 1000, 0, 3)
	pushRecords(t, e, "shifted", 1000, 1, 4)
	// Out of the reference's range and an unseen category, in a model of
	// their own: one value of 1e9 alone moves Wasserstein by millions of
	// standard deviations, as it should.
	pushRecordsRaw(t, e, `{"model":"outlier","features":{"amount":1e9,"country":"XX"},"prediction":0.5}`)

	for _, w := range []string{"5m", "1h"} {
		require.Equal(t, 0.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "clean", "feature": "amount", "window": w, "method": "wasserstein"}), w)
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "shifted", "feature": "amount", "window": w, "method": "wasserstein"}), w)
		require.Equal(t, 0.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "shifted", "feature": "country", "window": w, "method": "jensenshannon"}), w)
		require.InDelta(t, 1.0, metricValue(t, e, "modelmon_feature_drift_wasserstein_normed", map[string]string{"model": "shifted", "feature": "amount", "window": w}), 0.15)
		require.Equal(t, 1000.0, metricValue(t, e, "modelmon_feature_drift_window_values", map[string]string{"model": "clean", "feature": "amount", "window": w}))
		require.Equal(t, 0.5, metricValue(t, e, "modelmon_dataset_drift_share", map[string]string{"model": "shifted", "window": w}))
	}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "outlier", "feature": "amount", "reason": "out_of_range"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "outlier", "feature": "country", "reason": "unseen_category"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": "clean", "source": "file"}))

	// The bin counters hold every value once, and the reference shares sum to 1.
	fams := scrape(t, e, "modelmon_feature_")
	require.Equal(t, 1000.0, sumSamples(fams["modelmon_feature_bin_total"].text, `model="clean"}`, `feature="amount"`))
	require.InDelta(t, 1.0, sumSamples(fams["modelmon_feature_reference_ratio"].text, `model="clean"}`, `feature="amount"`), 1e-9)
	require.Equal(t, 12, strings.Count(fams["modelmon_feature_bin_total"].text, `feature="amount",model="clean"`), "10 deciles and 2 out-of-range bins")
}

// Each model and window gets a model-level decision, its features'
// p-values corrected as the configuration's drift: says, and a reload
// changes the correction. amount and country are decided by Wasserstein
// and Jensen–Shannon here (5000 reference values): they take part with their
// KS and chi-squared p-values.
func TestDriftModelDecision(t *testing.T) {
	up := modelServer(t)
	dir := t.TempDir()
	ref := writeReference(t, 5000)
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("drift: {correction: fdr, correction_alpha: 0.1}\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Drift = driftOptions(ref) })

	pushRecords(t, e, "clean", 1000, 0, 3)
	pushRecords(t, e, "shifted", 1000, 0.5, 4)
	get := func(name, model, correction string) float64 {
		l := map[string]string{"model": model, "window": "1h"}
		if correction != "" {
			l["correction"] = correction
		}
		return metricValue(t, e, name, l)
	}
	for _, m := range []string{"clean", "shifted"} {
		require.Equal(t, 2.0, get("modelmon_model_drift_features", m, ""), "amount and country, not the prediction")
	}
	require.Equal(t, 1.0, get("modelmon_model_drifted", "shifted", "fdr"))
	require.Contains(t, []float64{0.05, 0.1}, get("modelmon_model_drift_threshold", "shifted", "fdr"))
	require.Equal(t, 0.05, get("modelmon_model_drift_threshold", "clean", "fdr"), "q/K: nothing rejected")
	fams := scrape(t, e, "modelmon_model_drifted")
	require.Contains(t, fams["modelmon_model_drifted"].text, `modelmon_model_drifted{correction="fdr",model="clean",window="1h"} 0`)

	// Without drift:, Bonferroni at --drift.alpha.
	require.NoError(t, os.WriteFile(cfg, nil, 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, 1.0, get("modelmon_model_drifted", "shifted", "bonferroni"))
	require.Equal(t, 0.025, get("modelmon_model_drift_threshold", "clean", "bonferroni"))
	require.Zero(t, get("modelmon_model_drift_threshold", "clean", "fdr"), "the old correction's series are gone")

	require.NoError(t, os.WriteFile(cfg, []byte("drift: {correction: none}\n"), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, 0.05, get("modelmon_model_drift_threshold", "clean", "none"))

	// A bad correction fails the reload and keeps the last.
	require.NoError(t, os.WriteFile(cfg, []byte("drift: {correction: holm}\n"), 0o644))
	require.ErrorContains(t, e.Reload(), `drift.correction: unknown correction "holm" (want one of bonferroni, fdr, none)`)
	require.Equal(t, 0.05, get("modelmon_model_drift_threshold", "clean", "none"))
}

// A model's own correction (models[].drift.correction and
// correction_alpha) decides for it, with --drift.reference's reference:
// each model's gauges carry its own correction label, a model without one
// the top-level drift's, and the keys a model leaves out are drift's. A
// reload changes them; a bad one fails with its line and keeps the last.
func TestDriftModelOwnCorrection(t *testing.T) {
	up := modelServer(t)
	ref := writeReference(t, 5000)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(clean string) {
		yml := "drift: {correction: bonferroni, correction_alpha: 0.02}\n" +
			"models:\n" +
			"  - name: clean\n" +
			"    drift:\n" +
			"      correction: " + clean + "\n" +
			"  - name: shifted\n" +
			"    drift: {correction: fdr, correction_alpha: 0.1}\n"
		require.NoError(t, os.WriteFile(cfg, []byte(yml), 0o644))
	}
	write("none")
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Drift = driftOptions(ref) })
	pushRecords(t, e, "clean", 1000, 0, 3)
	pushRecords(t, e, "shifted", 1000, 0.5, 4)
	pushRecords(t, e, "plain", 1000, 0, 5)
	// corrections returns each model's correction label of
	// modelmon_model_drift_threshold in the 1h window, and the threshold.
	corrections := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, m := range scrapeProto(t, e)["modelmon_model_drift_threshold"].GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["window"] == "1h" {
				out[l["model"]] = fmt.Sprintf("%s %g", l["correction"], m.GetGauge().GetValue())
			}
		}
		return out
	}
	// Two features: none at drift's 0.02 is 0.02; Bonferroni at 0.02 is
	// 0.01; shifted's fdr at 0.1 rejects one feature (0.05) or both (0.1).
	got := corrections()
	require.Contains(t, []string{"fdr 0.05", "fdr 0.1"}, got["shifted"])
	delete(got, "shifted")
	require.Equal(t, map[string]string{"clean": "none 0.02", "plain": "bonferroni 0.01"}, got)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_drifted", map[string]string{"model": "shifted", "window": "1h", "correction": "fdr"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_model_drifted", map[string]string{"model": "clean", "window": "1h", "correction": "none"}))

	write("fdr")
	require.NoError(t, e.Reload())
	require.Equal(t, "fdr 0.01", corrections()["clean"], "nothing rejected: 0.02/2")

	write("holm")
	require.EqualError(t, e.Reload(), "couldn't load configuration (--config.file=\""+cfg+"\"): "+cfg+`:5: models[0].drift.correction: unknown correction "holm" (want one of bonferroni, fdr, none)`)
	require.Equal(t, "fdr 0.01", corrections()["clean"], "the last kept")
}

func pushRecordsRaw(t *testing.T, e *Exporter, lines ...string) {
	t.Helper()
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations", strings.Join(lines, "\n"), "Content-Type", "application/x-ndjson")
	require.Equal(t, 200, st, body)
}

// sumSamples adds the values of the exposition lines containing every part.
func sumSamples(text string, parts ...string) float64 {
	var sum float64
next:
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		var v float64
		fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		sum += v
	}
	return sum
}

// Without a reference, the sidecar learns one from a model's first records,
// freezes it, writes it under --storage.path, and a restart restores it
// instead of learning again from data that may have drifted.
func TestDriftLearnedReferenceSurvivesRestart(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n"), 0o644))
	opts := func(o *Options) {
		o.ConfigFile = cfg
		o.StoragePath = storage
		o.Drift = driftOptions("")
		o.Drift.LearnSamples = 500
	}
	e := startExporter(t, up.URL, opts)
	pushRecords(t, e, "fraud", 499, 0, 5)
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": "fraud", "source": "learned"}))
	pushRecords(t, e, "fraud", 1, 0, 6)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": "fraud", "source": "learned"}))
	_, err := os.Stat(filepath.Join(storage, "drift", "fraud.profile.json"))
	require.NoError(t, err)

	// A second sidecar on the same storage starts with the reference.
	e2 := startExporter(t, up.URL, opts)
	require.Equal(t, 1.0, metricValue(t, e2, "modelmon_drift_reference_info", map[string]string{"model": "fraud", "source": "learned"}))
	pushRecords(t, e2, "fraud", 200, 2, 8)
	// 500 reference rows: KS decides, as Evidently does up to 1000.
	require.Equal(t, 1.0, metricValue(t, e2, "modelmon_feature_drifted", map[string]string{"model": "fraud", "feature": "amount", "window": "5m", "method": "ks"}),
		"drift against the restored reference, not a reference relearned from the shifted data")
}

// The sliding drift windows survive a restart under --storage.path: a
// second sidecar on the same storage goes on counting where the first left
// off (its cumulative counters start again), unless the reference changed.
func TestDriftWindowsSurviveRestart(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	ref := writeReference(t, 5000)
	opts := func(o *Options) {
		o.StoragePath = storage
		o.Drift = driftOptions(ref)
	}
	values := func(e *Exporter, window string) float64 {
		return metricValue(t, e, "modelmon_feature_drift_window_values", map[string]string{"model": "fraud", "feature": "amount", "window": window})
	}
	e := startExporter(t, up.URL, opts)
	pushRecords(t, e, "fraud", 300, 1, 9)
	require.Equal(t, 300.0, values(e, "1h"))
	require.NoError(t, e.Stop(t.Context()))
	_, err := os.Stat(filepath.Join(storage, "drift", "fraud.windows"))
	require.NoError(t, err)

	logger, logs := testLogger()
	e2 := startExporter(t, up.URL, func(o *Options) { opts(o); o.Logger = logger })
	pushRecords(t, e2, "fraud", 1, 0, 10)
	for _, w := range []string{"5m", "1h"} {
		require.Equal(t, 301.0, values(e2, w), w)
		require.Equal(t, 1.0, metricValue(t, e2, "modelmon_feature_drifted", map[string]string{"model": "fraud", "feature": "amount", "window": w, "method": "wasserstein"}),
			"%s: the shift before the restart still shows", w)
	}
	require.Equal(t, 1.0, sumSamples(scrape(t, e2, "modelmon_feature_bin_total")["modelmon_feature_bin_total"].text, `model="fraud"}`, `feature="amount"`),
		"the counters start again at zero")
	require.Contains(t, logs.String(), `msg="Restored drift windows" model=fraud`)
	require.NoError(t, e2.Stop(t.Context()))

	// Against another reference the windows start empty, and say why.
	logger, logs = testLogger()
	e3 := startExporter(t, up.URL, func(o *Options) { opts(o); o.Drift.Reference = writeReference(t, 4000); o.Logger = logger })
	pushRecords(t, e3, "fraud", 1, 0, 11)
	require.Equal(t, 1.0, values(e3, "1h"))
	require.Contains(t, logs.String(), `msg="Drift windows not restored: they start empty" model=fraud`)
	require.Contains(t, logs.String(), "they counted against another reference")

	// Nor from a damaged file, or with other windows.
	require.NoError(t, e3.Stop(t.Context()))
	path := filepath.Join(storage, "drift", "fraud.windows")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[len(data)/2] ^= 1
	require.NoError(t, os.WriteFile(path, data, 0o644))
	logger, logs = testLogger()
	e4 := startExporter(t, up.URL, func(o *Options) { opts(o); o.Logger = logger })
	pushRecords(t, e4, "fraud", 1, 0, 12)
	require.Equal(t, 1.0, values(e4, "1h"))
	require.Contains(t, logs.String(), "checksum mismatch")
	require.NoError(t, e4.Stop(t.Context()))
	logger, logs = testLogger()
	e5 := startExporter(t, up.URL, func(o *Options) {
		opts(o)
		o.Drift.Windows = []time.Duration{5 * time.Minute, 2 * time.Hour}
		o.Logger = logger
	})
	pushRecords(t, e5, "fraud", 1, 0, 13)
	require.Equal(t, 1.0, values(e5, "2h"))
	require.Contains(t, logs.String(), "window state of other bins or spans")
}

// A model server's models each have their own reference (models[].drift),
// loaded with the configuration: a reload keeps the windows of a reference
// whose file did not change, starts again those that changed, and refuses
// a reference it can't load.
func TestDriftModelReferences(t *testing.T) {
	up := modelServer(t)
	dir := t.TempDir()
	fraudRef := writeReference(t, 2000)
	require.NoError(t, os.Rename(fraudRef, filepath.Join(dir, "fraud.csv")))
	writeChurn := func(mean float64) { writeChurnReference(t, dir, rand.New(rand.NewPCG(3, 4)), 2000, mean) }
	writeChurn(24)
	cfg := filepath.Join(dir, "modelmon.yml")
	writeConfig := func(churn string) {
		require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: fraud
    drift: {reference: fraud.csv, prediction_column: score}
  - name: churn
`+churn), 0o644))
	}
	writeConfig("    drift: {reference: churn.csv}\n")
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Drift = driftOptions("") })

	pushRecords(t, e, "fraud", 200, 0, 20)
	pushRecordsRaw(t, e, `{"model":"churn","features":{"tenure":24.5,"plan":"pro"}}`, `{"model":"churn","features":{"tenure":80,"plan":"basic"}}`)
	pushRecordsRaw(t, e, `{"model":"other","features":{"tenure":1}}`)
	values := func(model, feature string) float64 {
		return metricValue(t, e, "modelmon_feature_drift_window_values", map[string]string{"model": model, "feature": feature, "window": "1h"})
	}
	info := func(model string) float64 {
		return metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": model, "source": "config"})
	}
	require.Equal(t, 200.0, values("fraud", "amount"))
	require.Equal(t, 2.0, values("churn", "tenure"))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "churn", "feature": "tenure", "reason": "out_of_range"}),
		"80 is beyond churn's own reference")
	require.Equal(t, 1.0, info("fraud"))
	require.Equal(t, 1.0, info("churn"))
	require.Zero(t, values("other", "tenure"), "no reference for a model not configured")

	// A reload with nothing changed keeps every window.
	require.NoError(t, e.Reload())
	require.Equal(t, 200.0, values("fraud", "amount"))
	require.Equal(t, 2.0, values("churn", "tenure"))

	// churn's training data changes: its windows start again, fraud's stay.
	writeChurn(36)
	later := time.Now().Add(2 * time.Second)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "churn.csv"), later, later))
	require.NoError(t, e.Reload())
	require.Zero(t, values("churn", "tenure"))
	require.Equal(t, 1.0, info("churn"))
	require.Equal(t, 200.0, values("fraud", "amount"))

	// A reference that can't be loaded fails the reload and changes nothing.
	writeConfig("    drift: {reference: missing.csv}\n")
	err := e.Reload()
	require.ErrorContains(t, err, `model "churn": couldn't load models[].drift.reference`)
	require.Equal(t, 1.0, info("churn"))

	// Without its own reference churn has none (no --drift.reference here).
	writeConfig("")
	require.NoError(t, e.Reload())
	require.Zero(t, info("churn"))
	require.Equal(t, 1.0, info("fraud"))
}

// featureRoles returns the role label of each feature of model in
// modelmon_feature_reference_info.
func featureRoles(t *testing.T, e *Exporter, model string) map[string]string {
	t.Helper()
	out := map[string]string{}
	re := regexp.MustCompile(`modelmon_feature_reference_info\{digest="[0-9a-f]{16}",feature="([^"]+)",model="([^"]+)",role="([^"]*)"\} 1`)
	for _, m := range re.FindAllStringSubmatch(scrape(t, e, collector.FeatureReferenceInfo)[collector.FeatureReferenceInfo].text, -1) {
		if m[2] == model {
			out[m[1]] = m[3]
		}
	}
	return out
}

// writeChurnReference writes dir/churn.csv: n rows of the churn model's
// training data, tenure about mean and plan basic or pro.
func writeChurnReference(t *testing.T, dir string, rng *rand.Rand, n int, mean float64) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tenure,plan\n")
	for range n {
		fmt.Fprintf(&b, "%.2f,%s\n", mean+5*rng.NormFloat64(), []string{"basic", "pro"}[rng.IntN(2)])
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "churn.csv"), []byte(b.String()), 0o644))
}

// writeFraudChurnConfig writes dir/modelmon.yml with the models fraud and
// churn, each on its training data in dir, and returns its path.
func writeFraudChurnConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: fraud
    drift: {reference: fraud.csv, prediction_column: score}
  - name: churn
    drift: {reference: churn.csv}
`), 0o644))
	return cfg
}

// modelmon_feature_reference_info tells which feature is the prediction, by
// its role label, whatever its name: its column in the training data
// (prediction_column: score) or __prediction__ in a learned profile. The
// reconstruction error is multivariate, every other feature an input, and
// a reference without a prediction column has no prediction.
func TestFeatureReferenceRoles(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(9, 10))
	var b strings.Builder
	b.WriteString("a,b,c,country,score\n")
	for range 2000 {
		a := rng.NormFloat64()
		fmt.Fprintf(&b, "%.4f,%.4f,%.4f,%s,%.3f\n", a, 2*a+0.3*rng.NormFloat64(), -a+0.3*rng.NormFloat64(), []string{"DE", "FR"}[rng.IntN(2)], rng.Float64())
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fraud.csv"), []byte(b.String()), 0o644))
	writeChurnReference(t, dir, rng, 500, 24)
	cfg := writeFraudChurnConfig(t, dir)
	e := startExporter(t, modelServer(t).URL, func(o *Options) {
		o.ConfigFile = cfg
		o.Drift = driftOptions("")
		o.Drift.LearnSamples = 100
	})
	pushRecords(t, e, "learned", 100, 0, 11)

	require.Equal(t, map[string]string{"a": "input", "b": "input", "c": "input", "country": "input",
		"score": "prediction", drift.ReconstructionError: "multivariate"}, featureRoles(t, e, "fraud"))
	require.Equal(t, map[string]string{"tenure": "input", "plan": "input"}, featureRoles(t, e, "churn"))
	require.Equal(t, map[string]string{"amount": "input", "country": "input", PredictionColumn: "prediction"}, featureRoles(t, e, "learned"))
}

// A reload (POST /-/reload, as SIGHUP) reads --drift.reference again, as it
// reads the configuration file's references: a file written again alike
// keeps the windows, a changed one starts them again on the new reference,
// and a bad one fails the reload and keeps the running reference.
func TestDriftReferenceFlagReload(t *testing.T) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "train.csv")
	writeRef := func(mean float64, at time.Time) {
		var b strings.Builder
		b.WriteString("amount,country,score\n")
		// One source each, so that country and score stay the same when
		// amount changes.
		amount, country, score := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(3, 4)), rand.New(rand.NewPCG(5, 6))
		for range 2000 {
			fmt.Fprintf(&b, "%.3f,%s,%.3f\n", mean+20*amount.NormFloat64(), []string{"DE", "DE", "FR", "US"}[country.IntN(4)], score.Float64())
		}
		require.NoError(t, os.WriteFile(ref, []byte(b.String()), 0o644))
		require.NoError(t, os.Chtimes(ref, at, at))
	}
	start := time.Now()
	writeRef(100, start)
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = driftOptions(ref) })
	reload := func() (int, string) { return do(t, "POST", "http://"+e.WebAddr()+"/-/reload", "") }
	values := func() float64 {
		return metricValue(t, e, collector.FeatureDriftWindowValues, map[string]string{"model": "m", "feature": "amount", "window": "1h"})
	}
	invalid := func() float64 {
		return metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": "m", "feature": "amount", "reason": "out_of_range"})
	}
	// digests returns each feature's modelmon_feature_reference_info digest.
	digests := func() map[string]string {
		out := map[string]string{}
		re := regexp.MustCompile(`modelmon_feature_reference_info\{digest="([0-9a-f]{16})",feature="([^"]+)",model="m",role="[a-z]+"\} 1`)
		for _, m := range re.FindAllStringSubmatch(scrape(t, e, collector.FeatureReferenceInfo)[collector.FeatureReferenceInfo].text, -1) {
			out[m[2]] = m[1]
		}
		return out
	}
	pushRecordsRaw(t, e, `{"model":"m","features":{"amount":100,"country":"DE"}}`, `{"model":"m","features":{"amount":150,"country":"DE"}}`)
	require.Equal(t, 2.0, values())
	require.Zero(t, invalid(), "150 is within the first reference")
	first := digests()
	require.Len(t, first, 3, "amount, country and score")

	st, body := reload()
	require.Equal(t, 200, st, body)
	require.Equal(t, 2.0, values(), "nothing changed")
	writeRef(100, start.Add(2*time.Second))
	st, body = reload()
	require.Equal(t, 200, st, body)
	require.Equal(t, 2.0, values(), "the same reference, written again")
	require.Equal(t, first, digests(), "and the same digests")

	writeRef(300, start.Add(4*time.Second))
	st, body = reload()
	require.Equal(t, 200, st, body)
	require.Zero(t, values(), "a new reference, new windows")
	second := digests()
	require.NotEqual(t, first["amount"], second["amount"], "amount's bins changed")
	require.Equal(t, first["country"], second["country"], "country's did not")
	require.Equal(t, first["score"], second["score"])
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": "m", "source": "file"}))
	pushRecordsRaw(t, e, `{"model":"m","features":{"amount":150,"country":"DE"}}`)
	require.Equal(t, 1.0, invalid(), "150 is below the new reference")

	require.NoError(t, os.WriteFile(ref, []byte("amount,country,score\n"), 0o644))
	st, body = reload()
	require.Equal(t, 500, st)
	require.Contains(t, body, `couldn't load --drift.reference="`+ref+`": train.csv: no rows after the header`)
	require.Zero(t, metricValue(t, e, "modelmon_exporter_config_last_reload_successful", map[string]string{}))
	pushRecordsRaw(t, e, `{"model":"m","features":{"amount":150,"country":"DE"}}`)
	require.Equal(t, 2.0, invalid(), "the running reference stays")
	require.Equal(t, 2.0, values())
}

// A feature's digest follows its own profile only, and the reconstruction
// error's the principal components behind it too: a profile loaded again
// (as after a restart) gives the same digests.
func TestFeatureDigest(t *testing.T) {
	dir := t.TempDir()
	ref := agreeReference(t, 2000)
	p, _, err := driftref.Load(ref, "score")
	require.NoError(t, err)
	saved := filepath.Join(dir, "profile.json")
	f, err := os.Create(saved)
	require.NoError(t, err)
	require.NoError(t, p.Save(f))
	require.NoError(t, f.Close())
	q, _, err := driftref.Load(saved, "")
	require.NoError(t, err)
	require.NotNil(t, p.Multivariate)
	dc, err := newDriftConfig(DriftOptions{}, "")
	require.NoError(t, err)
	a, err := dc.newReference(p)
	require.NoError(t, err)
	b, err := dc.newReference(q)
	require.NoError(t, err)
	require.Equal(t, a.features, b.features)
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(a.features))), len(p.Features), "one digest per feature")

	q.Multivariate.Mean[0] += 1e-9
	c, err := dc.newReference(q)
	require.NoError(t, err)
	for i, f := range q.Features {
		if f.Name == drift.ReconstructionError {
			require.NotEqual(t, a.features[i], c.features[i], f.Name)
		} else {
			require.Equal(t, a.features[i], c.features[i], f.Name)
		}
	}
}

// Training data whose most frequent category is named "__other__", like the
// other bin, give one bin of that label, which counts those values and the
// other categories': the bin counters and reference shares have one series
// per bin, and the scrape succeeds.
func TestDriftCategoryNamedOther(t *testing.T) {
	var b strings.Builder
	b.WriteString("amount,channel\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "%d,%s\n", 90+i%20, []string{"__other__", "__other__", "web", "app", "shop"}[i%5])
	}
	ref := filepath.Join(t.TempDir(), "train.csv")
	require.NoError(t, os.WriteFile(ref, []byte(b.String()), 0o644))
	opts := driftOptions(ref)
	opts.PredictionColumn = ""
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = opts })
	pushRecordsRaw(t, e, `{"model":"m","features":{"amount":95,"channel":"__other__"}}`, `{"model":"m","features":{"amount":95,"channel":"web"}}`,
		`{"model":"m","features":{"amount":95,"channel":"tv"}}`)
	fams := scrape(t, e, "modelmon_feature_")
	other := `bin="__other__",feature="channel",model="m"}`
	require.Equal(t, 1, strings.Count(fams[collector.FeatureBinTotal].text, other))
	require.Equal(t, 2.0, sumSamples(fams[collector.FeatureBinTotal].text, other), `"__other__" and the unseen "tv"`)
	require.Equal(t, 0.4, sumSamples(fams[collector.FeatureReferenceRatio].text, other))
	require.Equal(t, 1.0, metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": "m", "feature": "channel", "reason": "unseen_category"}), "tv only")
}

// NaN and infinities reaching a drift window through the proxy are counted as
// invalid values, and never enter the window's bins or sums.
func TestDriftWindowIgnoresNonFinite(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, func(o *Options) { o.Drift = driftOptions(writeReference(t, 2000)) })
	var b strings.Builder
	b.WriteString(`{"instances":[`)
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&b, `{"amount":%d,"country":"DE"},`, 90+i%20)
	}
	b.WriteString(`{"amount":NaN,"country":"FR"},{"amount":Infinity,"country":"FR"},{"amount":-Infinity},{"amount":null,"country":"US"}]}`)
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/nan:predict", b.String())
	require.Equal(t, 200, st)
	waitIdle(t, e)
	for reason, want := range map[string]float64{"nan": 1, "inf": 2} {
		require.Equal(t, want, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "nan", "feature": "amount", "reason": reason}), reason)
	}
	require.Equal(t, 60.0, metricValue(t, e, "modelmon_feature_drift_window_values", map[string]string{"model": "nan", "feature": "amount", "window": "5m"}))
	w := metricValue(t, e, "modelmon_feature_drift_wasserstein_normed", map[string]string{"model": "nan", "feature": "amount", "window": "5m"})
	require.False(t, math.IsNaN(w) || math.IsInf(w, 0), "the window's score stays finite: %v", w)
	require.Less(t, w, 1.0)
	fams := scrape(t, e, "modelmon_feature_bin_total")
	require.Equal(t, 60.0, sumSamples(fams["modelmon_feature_bin_total"].text, `feature="amount"`, `model="nan"}`))
}

// A method set for a feature decides its drift instead of Evidently's choice.
func TestDriftMethodOverride(t *testing.T) {
	up := modelServer(t)
	opts := driftOptions(writeReference(t, 5000))
	opts.Detector.Methods = map[string]drift.Method{"amount": drift.MethodPSI}
	e := startExporter(t, up.URL, func(o *Options) { o.Drift = opts })
	pushRecords(t, e, "m", 1000, 1, 9)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "m", "feature": "amount", "window": "5m", "method": "psi"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "m", "feature": "amount", "window": "5m", "method": "wasserstein"}), "no series for the method that does not decide")
	require.Greater(t, metricValue(t, e, "modelmon_feature_drift_threshold", map[string]string{"model": "m", "feature": "amount", "window": "5m", "method": "psi"}), 0.0)
}

// The configured feature importance is exposed for the drift impact, and a
// reload changes it.
func TestFeatureImportance(t *testing.T) {
	e := startWithConfig(t, modelServer(t).URL, `models:
  - name: fraud
    feature_importance: {amount: 0.6, age: 0.3, country: 0.1}
  - name: churn
`, nil)
	imp := func(model, feature string) float64 {
		return metricValue(t, e, collector.FeatureImportance, map[string]string{"model": model, "feature": feature})
	}
	require.Equal(t, 0.6, imp("fraud", "amount"))
	require.Equal(t, 0.1, imp("fraud", "country"))
	require.NotContains(t, scrape(t, e, collector.FeatureImportance)[collector.FeatureImportance].text, `model="churn"`)

	require.NoError(t, os.WriteFile(e.opts.ConfigFile, []byte(`models:
  - name: fraud
    feature_importance: {amount: 2, age: 1}
`), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, 2.0, imp("fraud", "amount"))
	require.Zero(t, imp("fraud", "country"), "gone with the reload")
}

// A reference of features that go together (b = 2a + noise, c = −a +
// noise) gets a multivariate drift feature: each record's PCA
// reconstruction error. A model whose b no longer follows a (shuffled: b
// keeps its distribution) drifts in it and in no feature of its own; one
// whose features still go together drifts in none. A record without any
// of the PCA's features adds no error and no missing value.
func TestDriftMultivariate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	row := func() [3]float64 {
		a := rng.NormFloat64()
		return [3]float64{a, 2*a + 0.3*rng.NormFloat64(), -a + 0.3*rng.NormFloat64()}
	}
	var b strings.Builder
	b.WriteString("a,b,c,score\n")
	for range 5000 {
		r := row()
		fmt.Fprintf(&b, "%.4f,%.4f,%.4f,%.3f\n", r[0], r[1], r[2], rng.Float64())
	}
	ref := filepath.Join(t.TempDir(), "train.csv")
	require.NoError(t, os.WriteFile(ref, []byte(b.String()), 0o644))
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = driftOptions(ref) })

	push := func(model string, shuffle bool) {
		rows := make([][3]float64, 1000)
		for i := range rows {
			rows[i] = row()
		}
		if shuffle {
			rng.Shuffle(len(rows), func(i, j int) { rows[i][1], rows[j][1] = rows[j][1], rows[i][1] })
		}
		lines := make([]string, len(rows))
		for i, r := range rows {
			lines[i] = fmt.Sprintf(`{"model":%q,"features":{"a":%v,"b":%v,"c":%v},"prediction":0.5}`, model, r[0], r[1], r[2])
		}
		pushRecordsRaw(t, e, lines...)
	}
	push("together", false)
	push("broken", true)
	pushRecordsRaw(t, e, `{"model":"together","features":{"other":1},"prediction":0.5}`)

	drifted := func(model, feature string) float64 {
		fams := scrape(t, e, "modelmon_feature_drifted")
		return sumSamples(fams["modelmon_feature_drifted"].text, `feature="`+feature+`"`, `model="`+model+`"`, `window="1h"`)
	}
	require.Equal(t, 1.0, drifted("broken", drift.ReconstructionError))
	require.Zero(t, drifted("together", drift.ReconstructionError))
	for _, f := range []string{"a", "b", "c"} {
		require.Zero(t, drifted("broken", f), f)
		require.Zero(t, drifted("together", f), f)
	}
	require.Equal(t, 1000.0, metricValue(t, e, "modelmon_feature_drift_window_values", map[string]string{"model": "together", "feature": drift.ReconstructionError, "window": "1h"}))
	require.Zero(t, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "together", "feature": drift.ReconstructionError, "reason": "missing"}))
	require.Zero(t, metricValue(t, e, "modelmon_dataset_drift_share", map[string]string{"model": "broken", "window": "1h"}), "a verdict of its own, not a feature in the share")
}

// The learner keeps its columns row by row: a feature a record lacks is
// missing in that row, one first seen late is missing in the rows before,
// and a column is categorical from its first string on, its numbers
// written as strings in their rows. So a learned reference can be built
// from records that do not all carry every feature, and its multivariate
// drift from features that go together.
func TestLearnerAlignsColumns(t *testing.T) {
	num := func(x float64) payload.Value { return payload.Value{Kind: payload.KindNumber, Num: x} }
	str := func(s string) payload.Value { return payload.Value{Kind: payload.KindString, Str: []byte(s)} }
	rec := func(pred float64, fs ...any) *payload.Record {
		r := &payload.Record{Prediction: num(pred)}
		for i := 0; i < len(fs); i += 2 {
			r.Features = append(r.Features, payload.Feature{Name: []byte(fs[i].(string)), Value: fs[i+1].(payload.Value)})
		}
		return r
	}
	l := &learner{cols: map[string]*learnColumn{}}
	l.add(rec(0.1, "a", num(1), "k", num(7)), nil)
	l.add(rec(0.2, "k", str("x")), nil)
	l.add(rec(0.3, "a", num(3), "late", num(5)), nil)
	l.add(rec(0.4, "a", num(4), "k", num(math.Inf(1))), nil)
	l.add(rec(0.5, "a", num(5), "k", num(math.NaN())), nil)
	cols, pred, _ := l.columns()
	cols = append(cols, *pred)
	byName := map[string]drift.Column{}
	for _, c := range cols {
		byName[c.Name] = c
		require.Equal(t, 5, c.Len(), c.Name)
	}
	require.Equal(t, 1.0, byName["a"].Num[0])
	require.True(t, math.IsNaN(byName["a"].Num[1]))
	require.Equal(t, []string{"7", "x", ""}, byName["k"].Str[:3])
	require.True(t, math.IsNaN(byName["late"].Num[0]))
	require.Equal(t, []float64{0.1, 0.2, 0.3, 0.4, 0.5}, byName[PredictionColumn].Num)
	p, err := drift.BuildProfile(cols, drift.BuildOptions{Prediction: PredictionColumn})
	require.NoError(t, err)
	// An infinity or a NaN sent as a number for a categorical feature is
	// missing in the profile, as `exporter profile` counts JSON Lines'
	// bare Infinity and NaN, not a category "+Inf".
	k, ok := p.Feature("k")
	require.True(t, ok)
	require.Equal(t, int64(3), k.Missing)
	require.Equal(t, int64(2), k.Count)

	rng := rand.New(rand.NewPCG(8, 9))
	l = &learner{cols: map[string]*learnColumn{}}
	for range 500 {
		a := rng.NormFloat64()
		l.add(rec(0.5, "a", num(a), "b", num(2*a+0.3*rng.NormFloat64()), "c", num(-a+0.3*rng.NormFloat64())), nil)
	}
	p, err = l.profile()
	require.NoError(t, err)
	require.NotNil(t, p.Multivariate)
	require.Equal(t, []string{"a", "b", "c"}, p.Multivariate.Features)
}

// trainRow is a row of writeReference's training data.
type trainRow struct {
	Amount  float64 `parquet:"amount"`
	Country string  `parquet:"country"`
	Score   float64 `parquet:"score"`
}

// --drift.reference and models[].drift.reference take training data in
// Parquet as in CSV: the same rows give the same profile, and the sidecar
// scores drift against it.
func TestReferenceParquet(t *testing.T) {
	csvPath := writeReference(t, 2000)
	data, err := os.ReadFile(csvPath)
	require.NoError(t, err)
	var rows []trainRow
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n")[1:] {
		f := strings.Split(line, ",")
		amount, err := strconv.ParseFloat(f[0], 64)
		require.NoError(t, err)
		score, err := strconv.ParseFloat(f[2], 64)
		require.NoError(t, err)
		rows = append(rows, trainRow{amount, f[1], score})
	}
	pqPath := filepath.Join(t.TempDir(), "train.parquet")
	out, err := os.Create(pqPath)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[trainRow](out)
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, out.Close())

	want, _, err := driftref.Load(csvPath, "score")
	require.NoError(t, err)
	got, _, err := driftref.Load(pqPath, "score")
	require.NoError(t, err)
	require.Equal(t, want, got)

	// As --drift.reference, and as a model's own in the configuration.
	cfg := filepath.Join(filepath.Dir(pqPath), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    drift: {reference: train.parquet, prediction_column: score}\n"), 0o644))
	for _, o := range []func(*Options){
		func(o *Options) { o.Drift = driftOptions(pqPath) },
		func(o *Options) { o.ConfigFile = cfg; o.Drift = driftOptions("") },
	} {
		e := startExporter(t, modelServer(t).URL, o)
		pushRecords(t, e, "fraud", 500, 1.5, 3)
		waitIdle(t, e)
		require.Eventually(t, func() bool {
			return metricValue(t, e, "modelmon_feature_drift_psi", map[string]string{"model": "fraud", "feature": "amount", "window": "1h"}) > 0.2
		}, 10*time.Second, 10*time.Millisecond)
	}
}

// CheckConfig (--config.check) loads --drift.reference as start-up does,
// beside the configuration file and its models' references: a missing or
// bad file, a missing prediction column or a --drift.method for a feature
// no reference has is the error start-up would stop on, naming the flag.
func TestCheckConfigDriftReference(t *testing.T) {
	dir := t.TempDir()
	ref := writeReference(t, 500)
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"features": [`), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n"), 0o644))
	missing := filepath.Join(dir, "missing.csv")
	methods := drift.DefaultOptions()
	methods.Methods = map[string]drift.Method{"nope": drift.MethodPSI}
	checkConfigCases(t, []checkConfigCase{
		{"good", Options{ConfigFile: cfg, Drift: DriftOptions{Reference: ref, PredictionColumn: "score"}}, ""},
		{"no configuration file", Options{Drift: DriftOptions{Reference: ref}}, ""},
		{"missing", Options{ConfigFile: cfg, Drift: DriftOptions{Reference: missing}},
			fmt.Sprintf(`couldn't load --drift.reference=%q: stat %s: no such file or directory`, missing, missing)},
		{"not a profile", Options{Drift: DriftOptions{Reference: bad}},
			fmt.Sprintf(`couldn't load --drift.reference=%q: %s: line 1: invalid profile: unexpected end of JSON input`, bad, bad)},
		{"no prediction column", Options{Drift: DriftOptions{Reference: ref, PredictionColumn: "label"}},
			fmt.Sprintf(`couldn't load --drift.reference=%q: missing prediction column "label"`, ref)},
		{"a method for another feature", Options{Drift: DriftOptions{Reference: ref, Detector: methods}},
			`--drift.method: no drift reference has a feature "nope"`},
	})
}

// A class of a reference's prediction that the model's models[].classes
// lacks (a typo on one side) is refused at load, as `exporter profile`
// refuses it: the model's probability vectors and class indexes, named by
// those classes, would never be it, and every prediction of it would
// drift. Whether the reference is the model's own or --drift.reference.
func TestCheckConfigDriftReferenceClasses(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("amount,label\n")
	for i := range 300 {
		fmt.Fprintf(&b, "%d,%s\n", 90+i%20, []string{"cat", "dog", "dog"}[i%3])
	}
	train := filepath.Join(dir, "train.csv")
	require.NoError(t, os.WriteFile(train, []byte(b.String()), 0o644))
	config := func(name, model string) string {
		cfg := filepath.Join(dir, name+".yml")
		require.NoError(t, os.WriteFile(cfg, []byte("models:\n"+model), 0o644))
		return cfg
	}
	own := config("own", "  - name: fraud\n    classes: [cat, dgo]\n    drift: {reference: train.csv, prediction_column: label}\n")
	flag := config("flag", "  - name: fraud\n    classes: [dgo, cat]\n")
	good := config("good", "  - name: fraud\n    classes: [cat, dog, bird]\n    drift: {reference: train.csv, prediction_column: label}\n")
	checkConfigCases(t, []checkConfigCase{
		{"own reference", Options{ConfigFile: own},
			fmt.Sprintf(`couldn't load configuration (--config.file=%q): model "fraud": models[].drift.reference: the prediction "label" has the class "dog", which models[].classes lacks (cat, dgo): the model's probability vectors and class indexes would never name it`, own)},
		{"--drift.reference", Options{ConfigFile: flag, Drift: DriftOptions{Reference: train, PredictionColumn: "label"}},
			fmt.Sprintf(`couldn't load configuration (--config.file=%q): model "fraud": --drift.reference: the prediction "label" has the class "dog", which models[].classes lacks (dgo, cat): the model's probability vectors and class indexes would never name it`, flag)},
		{"classes the data lack", Options{ConfigFile: good}, ""},
	})
}

// A classifier's prediction is counted into its reference's classes by
// name. A probability vector or a class index names no class: it is read
// in the order of models[].classes (the most probable class, as the label
// join reads it), whatever order the reference lists its categories in
// (by count); without classes it is not guessed by position but counted
// as unscorable (reason unnamed_class), with one log line, and stays out
// of the window.
func TestDriftPredictionClassOrder(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("amount,label\n")
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 1000 {
		// dog, the second class of models[].classes, is the reference's
		// first category: it is the more frequent.
		fmt.Fprintf(&b, "%.3f,%s\n", 100+20*rng.NormFloat64(), []string{"cat", "dog", "dog"}[i%3])
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.csv"), []byte(b.String()), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: named
    classes: [cat, dog]
    drift: {reference: train.csv, prediction_column: label}
  - name: unnamed
    drift: {reference: train.csv, prediction_column: label}
`), 0o644))
	logger, logs := testLogger()
	e := startExporter(t, modelServer(t).URL, func(o *Options) {
		o.ConfigFile = cfg
		o.Drift = driftOptions("")
		o.Logger = logger
	})
	for _, model := range []string{"named", "unnamed"} {
		pushRecordsRaw(t, e,
			`{"model":"`+model+`","features":{"amount":100},"prediction":[0.9,0.1]}`, // cat
			`{"model":"`+model+`","features":{"amount":100},"prediction":[0.2,0.8]}`, // dog
			`{"model":"`+model+`","features":{"amount":100},"prediction":[0.3,0.7]}`, // dog
			`{"model":"`+model+`","features":{"amount":100},"prediction":0}`,         // cat, by index
			`{"model":"`+model+`","features":{"amount":100},"prediction":"dog"}`,     // by name
		)
	}
	bin := func(model, class string) float64 {
		return metricValue(t, e, "modelmon_feature_bin_total", map[string]string{"model": model, "feature": "label", "bin": class})
	}
	invalid := func(model, reason string) float64 {
		return metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": model, "feature": "label", "reason": reason})
	}
	require.Equal(t, 2.0, bin("named", "cat"))
	require.Equal(t, 3.0, bin("named", "dog"))
	require.Zero(t, bin("named", drift.OtherLabel))
	require.Zero(t, invalid("named", collector.InvalidMissing))
	require.Zero(t, invalid("named", collector.InvalidUnnamedClass))

	require.Zero(t, bin("unnamed", "cat"))
	require.Equal(t, 1.0, bin("unnamed", "dog"), "the class it named")
	require.Zero(t, bin("unnamed", drift.OtherLabel), "an index is no new class")
	require.Equal(t, 4.0, invalid("unnamed", collector.InvalidUnnamedClass))
	require.Zero(t, invalid("unnamed", collector.InvalidMissing))
	require.Zero(t, invalid("unnamed", collector.InvalidUnseenCategory))
	require.Equal(t, 1, strings.Count(logs.String(), "Prediction names no class of the drift reference"), logs.String())
	require.Contains(t, logs.String(), "model=unnamed")
}

// --drift.prediction-column is the default of models[].drift.prediction_column,
// as a Prometheus global setting is of a job's: a model's training data
// with that column and no prediction_column of its own has its prediction
// there (before, the column was profiled as an input and counted in the
// dataset's drift), one without the column has none, and a model's own
// prediction_column wins.
func TestDriftPredictionColumnDefault(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 12))
	var b strings.Builder
	b.WriteString("amount,country,score\n")
	for range 500 {
		fmt.Fprintf(&b, "%.3f,%s,%.3f\n", 100+20*rng.NormFloat64(), []string{"DE", "FR"}[rng.IntN(2)], rng.Float64())
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fraud.csv"), []byte(b.String()), 0o644))
	writeChurnReference(t, dir, rng, 500, 24)
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: fraud
    drift: {reference: fraud.csv}
  - name: churn
    drift: {reference: churn.csv}
  - name: own
    drift: {reference: fraud.csv, prediction_column: amount}
`), 0o644))
	e := startExporter(t, modelServer(t).URL, func(o *Options) {
		o.ConfigFile = cfg
		o.Drift = driftOptions("") // --drift.prediction-column=score
	})
	require.Equal(t, map[string]string{"amount": "input", "country": "input", "score": "prediction"}, featureRoles(t, e, "fraud"))
	require.Equal(t, map[string]string{"tenure": "input", "plan": "input"}, featureRoles(t, e, "churn"))
	require.Equal(t, map[string]string{"amount": "prediction", "country": "input", "score": "input"}, featureRoles(t, e, "own"))
}

// --drift.method applies to every reference that has its feature, the
// configuration's too, and leaves a model whose reference lacks it to the
// default choice: models of different features can share the flag (before,
// a model without the feature failed the load, and a learned reference
// without it was never learned). A --drift.method whose feature no
// reference has is a typo, and fails the load naming the flag.
func TestDriftMethodAcrossReferences(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Rename(writeReference(t, 2000), filepath.Join(dir, "fraud.csv")))
	writeChurnReference(t, dir, rand.New(rand.NewPCG(13, 14)), 2000, 24)
	cfg := writeFraudChurnConfig(t, dir)
	opts := func(o *Options) {
		o.ConfigFile = cfg
		o.Drift = driftOptions("")
		o.Drift.Detector.Methods = map[string]drift.Method{"amount": drift.MethodPSI}
		o.Drift.LearnSamples = 100
	}
	e := startExporter(t, modelServer(t).URL, opts)
	pushRecords(t, e, "fraud", 100, 0, 15)
	pushRecordsRaw(t, e, `{"model":"churn","features":{"tenure":24.5,"plan":"pro"}}`)
	pushRecordsRaw(t, e, slices.Repeat([]string{`{"model":"learned","features":{"x":1.5,"y":"a"},"prediction":0.5}`}, 100)...)
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "fraud", "feature": "amount", "window": "1h", "method": "psi"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_feature_drifted", map[string]string{"model": "churn", "feature": "tenure", "window": "1h", "method": "wasserstein"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_drift_reference_info", map[string]string{"model": "learned", "source": "learned"}))

	err := CheckConfig(Options{ConfigFile: cfg, Drift: DriftOptions{Detector: drift.Options{Methods: map[string]drift.Method{"amuont": drift.MethodPSI}}}})
	require.ErrorContains(t, err, `--drift.method: no drift reference has a feature "amuont"`)
}

// A learned reference reads a classifier's probability vectors and class
// indexes by models[].classes, as the live windows then read them: its
// prediction is the classes, so that live predictions of the same
// classes fall in their bins, not in __other__ nor as unnamed. Without
// classes a vector is not guessed: counted as unnamed_class while the
// reference is learned and left out of it (not a missing value of it),
// as the live windows leave it out; and a model that gives only such
// vectors learns no prediction.
func TestDriftLearnedPredictionClasses(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: vector
    classes: [cat, dog, bird]
  - name: index
    classes: [cat, dog, bird]
  - name: unnamed
  - name: mixed
`), 0o644))
	logger, logs := testLogger()
	e := startExporter(t, modelServer(t).URL, func(o *Options) {
		o.ConfigFile = cfg
		o.Drift = driftOptions("")
		o.Drift.LearnSamples = 100
		o.Logger = logger
	})
	vectors := []string{"[0.7,0.2,0.1]", "[0.1,0.8,0.1]", "[0.2,0.1,0.7]", "[0.6,0.3,0.1]"} // cat, dog, bird, cat
	records := func(model string, pred func(i int) string) []string {
		var out []string
		for i := range 100 {
			out = append(out, fmt.Sprintf(`{"model":%q,"features":{"amount":%d},"prediction":%s}`, model, 90+i%20, pred(i)))
		}
		return out
	}
	pushRecordsRaw(t, e, records("vector", func(i int) string { return vectors[i%4] })...)
	pushRecordsRaw(t, e, records("index", func(i int) string { return []string{"0", "1", "2", "0"}[i%4] })...)
	pushRecordsRaw(t, e, records("unnamed", func(i int) string { return vectors[i%4] })...)
	pushRecordsRaw(t, e, records("mixed", func(i int) string { return []string{`"cat"`, `"dog"`, vectors[2], vectors[3]}[i%4] })...)

	ratio := func(model, bin string) float64 {
		return metricValue(t, e, collector.FeatureReferenceRatio, map[string]string{"model": model, "feature": PredictionColumn, "bin": bin})
	}
	invalid := func(model, reason string) float64 {
		return metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": model, "feature": PredictionColumn, "reason": reason})
	}
	for _, model := range []string{"vector", "index"} {
		require.Equal(t, "prediction", featureRoles(t, e, model)[PredictionColumn], model)
		require.InDelta(t, 0.5, ratio(model, "cat"), 1e-9, model)
		require.InDelta(t, 0.25, ratio(model, "dog"), 1e-9, model)
		require.InDelta(t, 0.25, ratio(model, "bird"), 1e-9, model)
		// Live predictions of the same classes, as vectors and by index.
		pushRecordsRaw(t, e,
			`{"model":"`+model+`","features":{"amount":100},"prediction":[0.1,0.1,0.8]}`,
			`{"model":"`+model+`","features":{"amount":100},"prediction":1}`,
		)
		bin := func(class string) float64 {
			return metricValue(t, e, collector.FeatureBinTotal, map[string]string{"model": model, "feature": PredictionColumn, "bin": class})
		}
		require.Equal(t, 1.0, bin("bird"), model)
		require.Equal(t, 1.0, bin("dog"), model)
		require.Zero(t, bin(drift.OtherLabel), model)
		for _, reason := range []string{collector.InvalidUnnamedClass, collector.InvalidUnseenCategory, collector.InvalidMissing} {
			require.Zero(t, invalid(model, reason), "%s: %s", model, reason)
		}
	}

	_, ok := featureRoles(t, e, "unnamed")[PredictionColumn]
	require.False(t, ok, "vectors without classes name no prediction to learn")
	require.Equal(t, "input", featureRoles(t, e, "unnamed")["amount"])
	require.Equal(t, 100.0, invalid("unnamed", collector.InvalidUnnamedClass))

	// The classes named, and nothing missing: the vectors are left out.
	require.Equal(t, "prediction", featureRoles(t, e, "mixed")[PredictionColumn])
	require.InDelta(t, 0.5, ratio("mixed", "cat"), 1e-9)
	require.InDelta(t, 0.5, ratio("mixed", "dog"), 1e-9)
	require.Equal(t, 50.0, invalid("mixed", collector.InvalidUnnamedClass))
	pushRecordsRaw(t, e, slices.Repeat([]string{`{"model":"mixed","features":{"amount":100},"prediction":"cat"}`}, 100)...)
	require.Zero(t, metricValue(t, e, collector.FeatureDriftMissingDelta, map[string]string{"model": "mixed", "feature": PredictionColumn, "window": "1h"}),
		"the reference has no missing predictions")
	require.Equal(t, 1, strings.Count(logs.String(), "Prediction names no class of the drift reference"), logs.String())
}

// checkConfigCase is a case of CheckConfig: the error it returns for o, ""
// for none.
type checkConfigCase struct {
	name string
	o    Options
	err  string
}

// checkConfigCases runs CheckConfig for each case in a subtest.
func checkConfigCases(t *testing.T, cases []checkConfigCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckConfig(tc.o)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tc.err)
		})
	}
}
