package exporter

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	promModel "github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
)

// classNames returns n class names, c00 on.
func classNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%02d", i)
	}
	return out
}

// classCounts returns model's series of modelmon_prediction_class_total by
// class, and of modelmon_shadow_class_pairs_total by "predicted/shadow".
func classCounts(t *testing.T, e *Exporter, model string) (predicted, pairs map[string]float64) {
	t.Helper()
	resp, err := http.Get("http://" + e.WebAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(promModel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	predicted, pairs = map[string]float64{}, map[string]float64{}
	for name, into := range map[string]map[string]float64{collector.PredictionClassTotal: predicted, collector.ShadowClassPairsTotal: pairs} {
		mf, ok := fams[name]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["model"] != model {
				continue
			}
			key := l["class"]
			if name == collector.ShadowClassPairsTotal {
				key = l["predicted"] + "/" + l["shadow_predicted"]
			}
			into[key] = m.GetCounter().GetValue()
		}
	}
	return predicted, pairs
}

// classAnswers starts a model server and a shadow that both answer with
// the classes last given to set, one prediction each, in their order.
func classAnswers(t *testing.T) (model, shadow *recordingServer, set func(classes []string)) {
	var body atomic.Pointer[[]byte]
	set = func(classes []string) {
		b, err := json.Marshal(map[string][]string{"predictions": classes})
		require.NoError(t, err)
		body.Store(&b)
	}
	answer := func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*body.Load())
		return true
	}
	return newRecordingServer(t, nil, answer), newRecordingServer(t, nil, answer), set
}

// predictClasses sends the sidecar one request of n instances for model
// topics and waits until its answer and the shadow's are counted.
func predictClasses(t *testing.T, e *Exporter, n int) {
	t.Helper()
	status, body := predict(t, e, "topics", `{"instances": [`+strings.TrimSuffix(strings.Repeat("[1],", n), ",")+`]}`)
	require.Equal(t, 200, status, body)
	waitIdle(t, e)
}

// wantClassCounts are the series classCounts returns when each of named
// was predicted once by the model and the shadow alike, and other more
// classes past the cap.
func wantClassCounts(named []string, other int) (predicted, pairs map[string]float64) {
	predicted, pairs = map[string]float64{}, map[string]float64{}
	for _, c := range named {
		predicted[c], pairs[c+"/"+c] = 1, 1
	}
	if other > 0 {
		predicted[collector.OtherValue] = float64(other)
		pairs[collector.OtherValue+"/"+collector.OtherValue] = float64(other)
	}
	return predicted, pairs
}

// Replicas that see a model's classes in opposite orders, more of them
// than the 50 modelmon_prediction_class_total and
// modelmon_shadow_class_pairs_total name per model, name the same ones
// when the model lists its classes (models[].classes): the first 50 of the
// list, the others as __other__, so that sum by (class) over the replicas
// adds up each class's counts under one name.
func TestClassCapsReplicasAgree(t *testing.T) {
	classes := classNames(maxPredictedClasses + 2)
	cfg := "models:\n  - name: topics\n    classes: [" + strings.Join(classes, ", ") + "]\n"
	reversed := slices.Clone(classes)
	slices.Reverse(reversed)
	wantPredicted, wantPairs := wantClassCounts(classes[:maxPredictedClasses], 2)
	for r, order := range [][]string{classes, reversed} {
		model, shadow, set := classAnswers(t)
		set(order)
		e := startWithConfig(t, model.URL, cfg, shadowOptions(shadow.URL, nil))
		predictClasses(t, e, len(order))
		predicted, pairs := classCounts(t, e, "topics")
		require.Equal(t, wantPredicted, predicted, "replica %d, classes seen from %s", r, order[0])
		require.Equal(t, wantPairs, pairs, "replica %d, classes seen from %s", r, order[0])
	}
}

// A reload that changes a model's classes puts the new list first, the
// classes seen already after it while they fit, and starts both metrics'
// series of the model again at 0: the class it moved to __other__ leaves
// no series behind, and the listed ones at 0. One that keeps them keeps
// the series.
func TestClassCapsReload(t *testing.T) {
	listed := classNames(maxPredictedClasses)
	seen := append([]string{"x"}, listed[:maxPredictedClasses-1]...) // the cap full, c49 not among them
	model, shadow, set := classAnswers(t)
	set(seen)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(yml string) {
		require.NoError(t, os.WriteFile(cfg, []byte(yml), 0o644))
	}
	write("models:\n  - name: topics\n")
	e := startExporter(t, model.URL, func(o *Options) {
		o.ConfigFile = cfg
		shadowOptions(shadow.URL, nil)(o)
	})
	predictClasses(t, e, len(seen))
	wantPredicted, wantPairs := wantClassCounts(seen, 0)
	predicted, pairs := classCounts(t, e, "topics")
	require.Equal(t, wantPredicted, predicted)
	require.Equal(t, wantPairs, pairs)

	reload := func() {
		t.Helper()
		st, body := do(t, "POST", "http://"+e.WebAddr()+"/-/reload", "")
		require.Equal(t, 200, st, body)
	}
	withClasses := "models:\n  - name: topics\n    classes: [" + strings.Join(listed, ", ") + "]\n"
	write(withClasses)
	reload()
	predicted, pairs = classCounts(t, e, "topics")
	require.Equal(t, zeros(listed...), predicted, "started again, the listed classes at 0")
	require.Empty(t, pairs, "started again")

	// x, seen first before the reload, is now past the 50 listed.
	set([]string{"x", "c49"})
	predictClasses(t, e, 2)
	wantPredicted, wantPairs = wantClassCounts([]string{"c49"}, 1)
	for _, c := range listed[:maxPredictedClasses-1] {
		wantPredicted[c] = 0
	}
	predicted, pairs = classCounts(t, e, "topics")
	require.Equal(t, wantPredicted, predicted)
	require.Equal(t, wantPairs, pairs)

	write(withClasses + "    calibration_bins: 5\n")
	reload()
	predicted, pairs = classCounts(t, e, "topics")
	require.Equal(t, wantPredicted, predicted, "the classes unchanged, the series kept")
	require.Equal(t, wantPairs, pairs, "the classes unchanged, the series kept")
}

// modelSeries returns the values of model's series of family by the value
// of label.
func modelSeries(t *testing.T, e *Exporter, family, model, label string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range scrapeProto(t, e)[family].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		if l["model"] == model {
			out[l[label]] = m.GetCounter().GetValue()
		}
	}
	return out
}

// zeros maps each of classes to 0.
func zeros(classes ...string) map[string]float64 {
	out := map[string]float64{}
	for _, c := range classes {
		out[c] = 0
	}
	return out
}

// A model's listed classes (models[].classes) have their
// modelmon_prediction_class_total and modelmon_prediction_correct_total
// series at 0 before any traffic, the first 50 of them, so that rate() and
// increase() see each class's first prediction and first right one; again
// after a reload that changes them, which starts the first metric's
// series of the model again. modelmon_shadow_class_pairs_total's pairs are
// not made up front.
func TestClassCountersCreatedAtZero(t *testing.T) {
	listed := classNames(maxPredictedClasses + 2)
	model, shadow, set := classAnswers(t)
	set([]string{"c00"})
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(classes []string) {
		yml := "models:\n  - name: topics\n    classes: [" + strings.Join(classes, ", ") + "]\n  - name: other\n"
		require.NoError(t, os.WriteFile(cfg, []byte(yml), 0o644))
	}
	write(listed)
	e := startExporter(t, model.URL, func(o *Options) {
		o.ConfigFile = cfg
		labelsOn(o)
		shadowOptions(shadow.URL, nil)(o)
	})
	named := zeros(listed[:maxPredictedClasses]...)
	predicted, pairs := classCounts(t, e, "topics")
	require.Equal(t, named, predicted, "before any traffic")
	require.Empty(t, pairs)
	require.Equal(t, named, modelSeries(t, e, collector.PredictionCorrectTotal, "topics", "class"), "before any label")
	require.Empty(t, modelSeries(t, e, collector.PredictionClassTotal, "other", "class"), "a model without classes")

	write([]string{"b", "a"})
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/-/reload", "")
	require.Equal(t, 200, st, body)
	predicted, pairs = classCounts(t, e, "topics")
	require.Equal(t, zeros("a", "b"), predicted, "started again, the new classes at 0")
	require.Empty(t, pairs)
	// Not started again: the accuracy rules add it up with the outcome
	// counter, which keeps counting.
	require.Equal(t, zeros(append([]string{"a", "b"}, listed[:maxPredictedClasses]...)...),
		modelSeries(t, e, collector.PredictionCorrectTotal, "topics", "class"))

	pushRecordsRaw(t, e, `{"model":"topics","id":"p1","prediction":"a"}`)
	st, resp := postLabels(t, e, `{"id":"p1","label":"a"}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched"}, resp.Results)
	waitIdle(t, e)
	predicted, _ = classCounts(t, e, "topics")
	require.Equal(t, map[string]float64{"a": 1, "b": 0}, predicted)
	require.Equal(t, 1.0, modelSeries(t, e, collector.PredictionCorrectTotal, "topics", "class")["a"])
}

// A configured model with classes that gets no model slot of its own
// (traffic models took limits.max_models before a reload added it) has no
// series under its name, not even its listed classes at 0: its
// predictions count under __other__, and series of it would never move.
// Once it has a slot (a reload that raises the cap, a restart that
// registers the configured models first), its listed classes are at 0.
func TestClassCountersNotCreatedPastMaxModels(t *testing.T) {
	model, _, set := classAnswers(t)
	set([]string{"x"})
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 2\n"), 0o644))
	e := startExporter(t, model.URL, func(o *Options) { o.ConfigFile = cfg; labelsOn(o) })
	pushRecordsRaw(t, e, `{"model":"a","id":"a1","prediction":"x"}`, `{"model":"b","id":"b1","prediction":"x"}`)

	withTopics := "models:\n  - name: topics\n    classes: [x, y]\n"
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 2\n"+withTopics), 0o644))
	require.NoError(t, e.Reload())
	for _, mf := range scrapeProto(t, e) {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				require.False(t, lp.GetName() == "model" && lp.GetValue() == "topics", "%s has a series of topics: %v", mf.GetName(), m.GetLabel())
			}
		}
	}
	pushRecordsRaw(t, e, `{"model":"topics","id":"t1","prediction":"x"}`)
	st, resp := postLabels(t, e, `{"id":"t1","label":"x"}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched"}, resp.Results)
	require.Equal(t, 1.0, metricValue(t, e, collector.PredictionsTotal, map[string]string{"model": collector.OtherValue}))
	require.Equal(t, map[string]float64{"x": 1}, modelSeries(t, e, collector.PredictionClassTotal, collector.OtherValue, "class"))
	require.Equal(t, map[string]float64{"x": 1}, modelSeries(t, e, collector.PredictionCorrectTotal, collector.OtherValue, "class"))
	require.Empty(t, modelSeries(t, e, collector.PredictionClassTotal, "topics", "class"))
	require.Empty(t, modelSeries(t, e, collector.PredictionCorrectTotal, "topics", "class"))

	// A reload that raises the cap gives it its slot (__other__ holds
	// one already), and its listed classes their series at 0.
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 4\n"+withTopics), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, zeros("x", "y"), modelSeries(t, e, collector.PredictionClassTotal, "topics", "class"))
	require.Equal(t, zeros("x", "y"), modelSeries(t, e, collector.PredictionCorrectTotal, "topics", "class"))

	// A restart registers the configured models before any traffic.
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 2\n"+withTopics), 0o644))
	e2 := startExporter(t, model.URL, func(o *Options) { o.ConfigFile = cfg; labelsOn(o) })
	require.Equal(t, zeros("x", "y"), modelSeries(t, e2, collector.PredictionClassTotal, "topics", "class"))
	require.Equal(t, zeros("x", "y"), modelSeries(t, e2, collector.PredictionCorrectTotal, "topics", "class"))
}

// modelVersions returns modelmon_model_info's version of each model.
func modelVersions(t *testing.T, e *Exporter) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range scrapeProto(t, e)[collector.ModelInfoMetric].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		out[l["model"]] = l["version"]
	}
	return out
}

// A configured model that gets no model slot of its own (traffic models
// took limits.max_models before a reload added it) does not give its
// version to __other__, whose version is that of the traffic counted
// there: modelmon_model_info would say __other__ runs the configured
// model's version. Once a reload that raises the cap gives it a slot, or
// a restart, its configured version applies, though the configuration
// did not change it.
func TestModelVersionNotSetPastMaxModels(t *testing.T) {
	model, _, set := classAnswers(t)
	set([]string{"x"})
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 2\n"), 0o644))
	e := startExporter(t, model.URL, func(o *Options) { o.ConfigFile = cfg })
	pushRecordsRaw(t, e, `{"model":"a","version":"1","prediction":"x"}`, `{"model":"b","prediction":"x"}`)

	topics := func(max int, version string) []byte {
		return fmt.Appendf(nil, "limits:\n  max_models: %d\nmodels:\n  - name: topics\n    version: %s\n", max, version)
	}
	require.NoError(t, os.WriteFile(cfg, topics(2, "v2"), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, map[string]string{"a": "1", "b": "", collector.OtherValue: ""}, modelVersions(t, e))

	// Its traffic, counted under __other__, names __other__'s version; a
	// reload that changes its configured one leaves that.
	pushRecordsRaw(t, e, `{"model":"topics","version":"t9","prediction":"x"}`)
	require.NoError(t, os.WriteFile(cfg, topics(2, "v3"), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, map[string]string{"a": "1", "b": "", collector.OtherValue: "t9"}, modelVersions(t, e))

	// A reload that raises the cap gives it its slot and its version.
	require.NoError(t, os.WriteFile(cfg, topics(4, "v3"), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, map[string]string{"a": "1", "b": "", collector.OtherValue: "t9", "topics": "v3"}, modelVersions(t, e))

	// A restart registers the configured models before any traffic.
	require.NoError(t, os.WriteFile(cfg, topics(2, "v3"), 0o644))
	e2 := startExporter(t, model.URL, func(o *Options) { o.ConfigFile = cfg })
	require.Equal(t, map[string]string{"topics": "v3"}, modelVersions(t, e2))
}
