package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promModel "github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/driftcli"
	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/quality"
)

func labelsOn(o *Options) { o.Labels = LabelsOptions{Enabled: true} }

func postLabels(t *testing.T, e *Exporter, body string) (int, LabelsResponse) {
	t.Helper()
	st, b := do(t, "POST", "http://"+e.WebAddr()+"/v1/labels", body, "Content-Type", "application/x-ndjson")
	var resp LabelsResponse
	require.NoError(t, json.Unmarshal([]byte(b), &resp), b)
	return st, resp
}

// pushKnownOutcomes pushes predictions and then their labels with a known
// confusion matrix for model churn (predicted → actual: yes→yes ×3, yes→no
// ×1, no→no ×4, no→yes ×2) and known errors for model price (1, -2, 0.5:
// MAE 3.5/3, RMSE √(5.25/3)).
func pushKnownOutcomes(t *testing.T, e *Exporter) LabelsResponse {
	t.Helper()
	pairs := []struct{ p, a string }{{"yes", "yes"}, {"yes", "yes"}, {"yes", "yes"}, {"yes", "no"}, {"no", "no"}, {"no", "no"}, {"no", "no"}, {"no", "no"}, {"no", "yes"}, {"no", "yes"}}
	var obs, lbs []string
	for i, pr := range pairs {
		obs = append(obs, fmt.Sprintf(`{"model":"churn","id":"c%d","prediction":%q}`, i, pr.p))
		lbs = append(lbs, fmt.Sprintf(`{"id":"c%d","label":%q}`, i, pr.a))
	}
	for i, pa := range [][2]float64{{10, 9}, {3, 5}, {7.5, 7}} {
		obs = append(obs, fmt.Sprintf(`{"model":"price","id":"r%d","prediction":%v}`, i, pa[0]))
		lbs = append(lbs, fmt.Sprintf(`{"id":"r%d","label":%v}`, i, pa[1]))
	}
	pushRecordsRaw(t, e, obs...)
	st, resp := postLabels(t, e, strings.Join(lbs, "\n"))
	require.Equal(t, 200, st)
	return resp
}

// Labels joined to predictions give exactly the confusion matrix and the
// regression errors of the test's data.
func TestLabelsConfusionAndErrors(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, labelsOn)
	resp := pushKnownOutcomes(t, e)
	require.Equal(t, 13, resp.Accepted)
	for _, r := range resp.Results {
		require.Equal(t, "matched", r)
	}
	for _, c := range []struct {
		p, a string
		n    float64
	}{{"yes", "yes", 3}, {"yes", "no", 1}, {"no", "no", 4}, {"no", "yes", 2}} {
		require.Equal(t, c.n, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "churn", "predicted": c.p, "actual": c.a}), c)
	}
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "price"}))
	require.InDelta(t, 3.5, metricValue(t, e, "modelmon_prediction_absolute_error_total", map[string]string{"model": "price"}), 1e-12)
	require.InDelta(t, 5.25, metricValue(t, e, "modelmon_prediction_squared_error_total", map[string]string{"model": "price"}), 1e-12)
	require.InDelta(t, math.Sqrt(5.25/3), math.Sqrt(5.25/metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "price"})), 1e-12)
	require.Equal(t, 13.0, metricValue(t, e, "modelmon_label_delay_seconds_count", map[string]string{"model": "churn"})+metricValue(t, e, "modelmon_label_delay_seconds_count", map[string]string{"model": "price"}))
}

// A model that is never right (its labels swapped: yes→no, no→yes) and a
// class never predicted right (maybe, predicted once, wrongly) expose
// modelmon_prediction_correct_total at 0, so that accuracy, precision,
// recall and F1 read 0 in the quality rules instead of having no series, and
// ModelAccuracyLow and ModelF1Low fire. The class of an actual label no
// prediction named (never) gets its series too: its recall is 0.
func TestLabelsNeverRightReadZero(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, labelsOn)
	pairs := []struct{ p, a string }{{"yes", "no"}, {"yes", "no"}, {"no", "yes"}, {"maybe", "never"}}
	var obs, lbs []string
	for i, pr := range pairs {
		obs = append(obs, fmt.Sprintf(`{"model":"swapped","id":"s%d","prediction":%q}`, i, pr.p))
		lbs = append(lbs, fmt.Sprintf(`{"id":"s%d","label":%q}`, i, pr.a))
	}
	pushRecordsRaw(t, e, obs...)
	st, resp := postLabels(t, e, strings.Join(lbs, "\n"))
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched", "matched", "matched"}, resp.Results)
	got := joinFamilies(scrape(t, e, "modelmon_prediction_correct_total"))
	for _, class := range []string{"maybe", "never", "no", "yes"} {
		require.Contains(t, got, fmt.Sprintf(`modelmon_prediction_correct_total{class=%q,model="swapped"} 0`+"\n", class))
	}
}

// Labels before their prediction, twice, for unknown ids, or malformed: each
// counted by reason once; nothing double-counted.
func TestLabelsReasons(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, labelsOn)
	// Before its prediction: held, then matched when the prediction comes.
	_, resp := postLabels(t, e, `{"id":"early","label":"yes"}`)
	require.Equal(t, []string{"held"}, resp.Results)
	pushRecordsRaw(t, e, `{"model":"m","id":"early","prediction":"yes"}`, `{"model":"m","id":"once","prediction":"no"}`)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "m", "predicted": "yes", "actual": "yes"}))

	st, resp := postLabels(t, e, strings.Join([]string{
		`{"id":"once","label":"no"}`,
		`{"id":"once","label":"no"}`,      // twice
		`{"id":"once","label":"yes"}`,     // a third time, disagreeing
		`{"id":"never","label":"no"}`,     // unknown: held until its prediction never comes
		`{"id":"once","label":1.5}`,       // already matched
		`{"label":"no"}`,                  // malformed: no id
		`{"id":"x","label":{"a":1}}`,      // malformed: not a class or number
		`{"id":"x","label":"no","bad":1}`, // malformed: unknown field
		`not json`,
	}, "\n"))
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "duplicate", "duplicate", "held", "duplicate"}, resp.Results)
	require.Equal(t, []Rejection{
		{Index: 5, Reason: "missing_id"}, {Index: 6, Reason: "invalid_label"}, {Index: 7, Reason: "unknown_field"}, {Index: 8, Reason: "invalid_json"},
	}, stripErrors(resp.Rejected))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "m", "predicted": "no", "actual": "no"}), "matched once, not three times")
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "m"}))
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_labels_total", map[string]string{"reason": "duplicate"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_held_labels", map[string]string{}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_labels_rejected_total", map[string]string{"reason": "missing_id"}))
	st, _ = do(t, "GET", "http://"+e.WebAddr()+"/v1/labels", "")
	require.Equal(t, http.StatusMethodNotAllowed, st)
}

// A label that names its model joins a prediction of a model past
// limits.max_models, whose metrics count it as __other__.
func TestLabelsForModelOverCap(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 2\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { labelsOn(o); o.ConfigFile = cfg })
	long := strings.Repeat("x", 200) // its label value is cut to 128 bytes
	pushRecordsRaw(t, e, `{"model":"a","id":"a1","prediction":"yes"}`, `{"model":"`+long+`","id":"l1","prediction":"yes"}`,
		`{"model":"c","id":"c1","prediction":"yes"}`, `{"model":"a","id":"a2","prediction":"yes"}`)
	_, resp := postLabels(t, e, strings.Join([]string{
		`{"id":"a1","label":"yes","model":"a"}`,
		`{"id":"l1","label":"yes","model":"` + long + `"}`,
		`{"id":"c1","label":"yes","model":"c"}`,
		`{"id":"a2","label":"yes","model":"` + long + `"}`, // not a2's model
	}, "\n"))
	require.Equal(t, []string{"matched", "matched", "matched", "invalid"}, resp.Results)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "__other__"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": long[:128]}))
}

// A label held for its prediction joins it when it comes under
// __other__, past limits.max_models, whether its model was past the cap
// when the label came or got there while it waited.
func TestHeldLabelsForModelOverCap(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 2\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { labelsOn(o); o.ConfigFile = cfg })
	// x's label comes while the table has room for x.
	_, resp := postLabels(t, e, `{"id":"x1","label":"yes","model":"x"}`)
	require.Equal(t, []string{"held"}, resp.Results)
	pushRecordsRaw(t, e, `{"model":"a","id":"a1","prediction":"yes"}`, `{"model":"b","id":"b1","prediction":"yes"}`)
	// y's when it has none.
	_, resp = postLabels(t, e, `{"id":"y1","label":"yes","model":"y"}`+"\n"+`{"id":"a2","label":"yes","model":"y"}`)
	require.Equal(t, []string{"held", "held"}, resp.Results)
	pushRecordsRaw(t, e, `{"model":"x","id":"x1","prediction":"yes"}`, `{"model":"y","id":"y1","prediction":"yes"}`,
		`{"model":"a","id":"a2","prediction":"yes"}`) // not the model a2's label names
	other := map[string]string{"model": "__other__"}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_labels_matched_total", other))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_labels_total", map[string]string{"reason": "invalid"}))
	require.Zero(t, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "a"}))
}

func stripErrors(rs []Rejection) []Rejection {
	out := make([]Rejection, len(rs))
	for i, r := range rs {
		out[i] = Rejection{Index: r.Index, Reason: r.Reason}
	}
	return out
}

// A proxied request without an id gets one, returned in X-Request-Id; a
// label for it joins the prediction the sidecar parsed.
func TestLabelsGeneratedID(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, labelsOn)
	resp, err := http.Post("http://"+e.ProxyAddr()+"/v1/models/fraud:predict", "application/json", strings.NewReader(`{"instances":[{"amount":1}]}`))
	require.NoError(t, err)
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	require.NotEmpty(t, id)
	// A client's own id is kept, not replaced.
	req, err := http.NewRequest("POST", "http://"+e.ProxyAddr()+"/v1/models/fraud:predict", strings.NewReader(`{"instances":[{"amount":1},{"amount":2}]}`))
	require.NoError(t, err)
	req.Header.Set("X-Request-Id", "client-7")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Empty(t, resp.Header.Get("X-Request-Id"), "the model server's answer is passed through unchanged")
	waitIdle(t, e)

	_, lr := postLabels(t, e, fmt.Sprintf(`{"id":%q,"label":2}`+"\n"+`{"id":"client-7/1","label":2}`, id))
	require.Equal(t, []string{"matched", "matched"}, lr.Results)
	// The stub predicts 1 for every instance: |1-2| twice.
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_absolute_error_total", map[string]string{"model": "fraud"}))
}

// Pending predictions survive a restart with --storage.path: labels posted
// to the new process join the predictions the old one captured.
func TestLabelsSurviveRestart(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	opts := func(o *Options) { o.Labels = LabelsOptions{Enabled: true}; o.StoragePath = storage }
	e1 := startExporter(t, up.URL, opts)
	pushRecordsRaw(t, e1, `{"model":"m","id":"a","prediction":"yes"}`, `{"model":"m","id":"b","prediction":"no"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e1.Stop(ctx))

	e2 := startExporter(t, up.URL, opts)
	require.Equal(t, 2.0, metricValue(t, e2, "modelmon_pending_predictions", map[string]string{}))
	_, resp := postLabels(t, e2, `{"id":"a","label":"yes"}`+"\n"+`{"id":"b","label":"yes"}`+"\n"+`{"id":"c","label":"yes"}`)
	require.Equal(t, []string{"matched", "matched", "held"}, resp.Results)
	require.Equal(t, 1.0, metricValue(t, e2, "modelmon_prediction_outcome_total", map[string]string{"model": "m", "predicted": "no", "actual": "yes"}))
}

// A held label whose 10 minutes run out while the sidecar is down ends at
// the next start as unknown_id, counted, as it would have without the
// restart.
func TestHeldLabelExpiresAcrossRestart(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	clock := &manualClock{t: time.Unix(1800000000, 0)}
	opts := func(o *Options) { o.Now = clock.Now; o.Labels = LabelsOptions{Enabled: true}; o.StoragePath = storage }
	e1 := startExporter(t, up.URL, opts)
	_, resp := postLabels(t, e1, `{"id":"early","label":"yes"}`)
	require.Equal(t, []string{"held"}, resp.Results)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e1.Stop(ctx))

	clock.Add(20 * time.Minute)
	e2 := startExporter(t, up.URL, opts)
	require.Eventually(t, func() bool {
		return metricValue(t, e2, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}) == 1
	}, 30*time.Second, 20*time.Millisecond, "expiry runs every 10 seconds")
}

// The shipped quality rules, evaluated by a real Prometheus scraping the
// sidecar, give exactly the accuracy, precision, recall, F1, MAE, RMSE and
// R² of the test's data.
func TestQualityRulesInPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	e := startExporter(t, up.URL, labelsOn)
	pushKnownOutcomes(t, e)
	// scikit-learn's r2_score example, with a negative label: y_true
	// [3, -0.5, 2, 7], y_pred [2.5, 0.0, 2, 8] give 0.948… (its docs).
	pushRecordsRaw(t, e, `{"model":"sk","id":"s0","prediction":2.5}`, `{"model":"sk","id":"s1","prediction":0.0}`,
		`{"model":"sk","id":"s2","prediction":2}`, `{"model":"sk","id":"s3","prediction":8}`)
	_, resp := postLabels(t, e, `{"id":"s0","label":3}`+"\n"+`{"id":"s1","label":-0.5}`+"\n"+`{"id":"s2","label":2}`+"\n"+`{"id":"s3","label":7}`)
	require.Equal(t, []string{"matched", "matched", "matched", "matched"}, resp.Results)
	// mix: the same four numbers, and two class predictions besides, one
	// right. MAE, RMSE, the labels' mean and R² are over the four numeric
	// pairs only, accuracy over the two classes.
	pushRecordsRaw(t, e, `{"model":"mix","id":"m0","prediction":2.5}`, `{"model":"mix","id":"m1","prediction":0.0}`,
		`{"model":"mix","id":"m2","prediction":2}`, `{"model":"mix","id":"m3","prediction":8}`,
		`{"model":"mix","id":"m4","prediction":"yes"}`, `{"model":"mix","id":"m5","prediction":"no"}`)
	_, resp = postLabels(t, e, strings.Join([]string{`{"id":"m0","label":3}`, `{"id":"m1","label":-0.5}`, `{"id":"m2","label":2}`,
		`{"id":"m3","label":7}`, `{"id":"m4","label":"yes"}`, `{"id":"m5","label":"yes"}`}, "\n"))
	require.Equal(t, slices.Repeat([]string{"matched"}, 6), resp.Results)
	require.Equal(t, 6.0, metricValue(t, e, "modelmon_labels_matched_total", map[string]string{"model": "mix"}))
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_prediction_regression_outcomes_total", map[string]string{"model": "mix"}))

	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	// By hand: yes→yes 3, yes→no 1, no→no 4, no→yes 2.
	pYes, rYes := 3.0/4, 3.0/5
	pNo, rNo := 4.0/6, 4.0/5
	requireQueries(t, prom, 1e-11, map[string]float64{
		`modelmon:accuracy:total{model="churn"}`:              7.0 / 10,
		`modelmon:precision:total{model="churn",class="yes"}`: pYes,
		`modelmon:recall:total{model="churn",class="yes"}`:    rYes,
		`modelmon:f1:total{model="churn",class="yes"}`:        2 * pYes * rYes / (pYes + rYes),
		`modelmon:precision:total{model="churn",class="no"}`:  pNo,
		`modelmon:recall:total{model="churn",class="no"}`:     rNo,
		`modelmon:f1:total{model="churn",class="no"}`:         2 * pNo * rNo / (pNo + rNo),
		`modelmon:mae:total{model="price"}`:                   3.5 / 3,
		`modelmon:rmse:total{model="price"}`:                  math.Sqrt(5.25 / 3),
		// price's labels 9, 5, 7: mean 7, total sum of squares 8.
		`modelmon:r2:total{model="price"}`: 1 - 5.25/8,
		`modelmon:r2:total{model="sk"}`:    0.9486081370449679,
		`modelmon:r2:total{model="mix"}`:   0.9486081370449679,
		`modelmon:mae:total{model="mix"}`:  0.5,
		`modelmon:rmse:total{model="mix"}`: math.Sqrt(1.5 / 4),
		// (3 − 0.5 + 2 + 7) / 4.
		`modelmon:label_mean:total{model="mix"}`: 2.875,
		`modelmon:accuracy:total{model="mix"}`:   0.5,
	})
}

// With two classes, a prediction that is one probability is the second
// class's: a binary classifier's score. A number outside [0, 1] stays a
// regression, and a score beside a named class is not read as one. A
// label 0 or 1 names the class at that index.
func TestLabelsBinaryScore(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    classes: [legit, fraud]\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })

	pushRecordsRaw(t, e,
		`{"model":"fraud","id":"f1","prediction":0.93}`,
		`{"model":"fraud","id":"f2","prediction":[0.25]}`,
		`{"model":"fraud","id":"f3","prediction":0.5}`,
		`{"model":"fraud","id":"f4","prediction":1.7}`,
		`{"model":"fraud","id":"f5","prediction":0.8}`)
	_, resp := postLabels(t, e, `{"id":"f1","label":"fraud"}`+"\n"+`{"id":"f2","label":"fraud"}`+"\n"+`{"id":"f3","label":"legit"}`+"\n"+`{"id":"f4","label":"fraud"}`+"\n"+`{"id":"f5","label":1}`)
	require.Equal(t, []string{"matched", "matched", "matched", "invalid", "matched"}, resp.Results, "f4 is a regression: a class can't be its label")
	outcome := func(predicted, actual string) float64 {
		return metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "fraud", "predicted": predicted, "actual": actual})
	}
	require.Equal(t, 2.0, outcome("fraud", "fraud"), "0.93, and 0.8 with the label 1: the index of fraud")
	require.Equal(t, 1.0, outcome("legit", "fraud"), "0.25")
	require.Equal(t, 1.0, outcome("legit", "legit"), "0.5: a tie goes to the first class")
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_prediction_probability_outcomes_total", map[string]string{"model": "fraud"}))
	// Brier: 2 × 0.07², 2 × 0.75², 2 × 0.5², 2 × 0.2².
	require.InDelta(t, 2*(0.07*0.07+0.75*0.75+0.25+0.04), metricValue(t, e, "modelmon_prediction_brier_score_total", map[string]string{"model": "fraud"}), 1e-12)
	// Confidences: 0.93 (bin 9), 0.75 and 0.8 (bin 7), 0.5 (bin 4).
	for bin, conf := range map[string]float64{"9": 0.93, "7": 0.75 + 0.8, "4": 0.5} {
		require.InDelta(t, conf, metricValue(t, e, "modelmon_prediction_confidence_total", map[string]string{"model": "fraud", "bins": "10", "bin": bin}), 1e-12, "bin %s", bin)
	}
}

// Hugging Face pipelines answer a class with its own score ({"label",
// "score"}), or, with top_k, every class with its score, sorted by score:
// the first gives a confidence, the second probabilities taken by name,
// with models[].classes or without.
func TestLabelsNamedScores(t *testing.T) {
	answers := map[string]string{
		"sentiment": `{"predictions": [{"label": "POSITIVE", "score": 0.98}]}`,
		"topk":      `{"predictions": [[{"label": "POSITIVE", "score": 0.7}, {"label": "NEGATIVE", "score": 0.3}]]}`,
		"ordered":   `{"predictions": [[{"label": "POSITIVE", "score": 0.6}, {"label": "NEGATIVE", "score": 0.4}]]}`,
		"mismatch":  `{"predictions": [[{"label": "POSITIVE", "score": 0.6}, {"label": "NEUTRAL", "score": 0.4}]]}`,
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/models/"), ":predict")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answers[name])
	}))
	t.Cleanup(up.Close)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: ordered
    classes: [NEGATIVE, POSITIVE]
  - name: mismatch
    classes: [NEGATIVE, POSITIVE]
`), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })
	for name := range answers {
		st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/"+name+":predict", `{"instances": ["a fine film"]}`, "X-Request-Id", name+"-1")
		require.Equal(t, 200, st)
	}
	waitIdle(t, e)
	_, resp := postLabels(t, e, `{"id":"sentiment-1","label":"POSITIVE"}`+"\n"+`{"id":"topk-1","label":"NEGATIVE"}`+"\n"+
		`{"id":"ordered-1","label":1}`+"\n"+`{"id":"mismatch-1","label":"POSITIVE"}`)
	require.Equal(t, []string{"matched", "matched", "matched", "matched"}, resp.Results, "ordered-1's 1 is POSITIVE, by models[].classes")

	m := func(name, model string, extra ...string) float64 {
		ls := map[string]string{"model": model}
		for i := 0; i+1 < len(extra); i += 2 {
			ls[extra[i]] = extra[i+1]
		}
		return metricValue(t, e, name, ls)
	}
	// sentiment: a confidence of 0.98, right, and no probabilities.
	require.Equal(t, 1.0, m("modelmon_prediction_confidence_outcomes_total", "sentiment", "bins", "10", "bin", "9"))
	require.Equal(t, 1.0, m("modelmon_prediction_confidence_correct_total", "sentiment", "bins", "10", "bin", "9"))
	require.InDelta(t, 0.98, m("modelmon_prediction_confidence_total", "sentiment", "bins", "10", "bin", "9"), 1e-4)
	require.Zero(t, m("modelmon_prediction_probability_outcomes_total", "sentiment"))
	// topk, without classes: NEGATIVE 0.3, POSITIVE 0.7 by name; predicted
	// POSITIVE, actually NEGATIVE. Brier 0.7² + 0.7², log loss -ln 0.3.
	require.Equal(t, 1.0, m("modelmon_prediction_outcome_total", "topk", "predicted", "POSITIVE", "actual", "NEGATIVE"))
	require.InDelta(t, 0.98, m("modelmon_prediction_brier_score_total", "topk"), 1e-12)
	require.InDelta(t, -math.Log(0.3), m("modelmon_prediction_log_loss_total", "topk"), 1e-12)
	require.Equal(t, 0.7, m("modelmon_prediction_confidence_total", "topk", "bins", "10", "bin", "6"))
	// ordered, by models[].classes: right at 0.6; Brier 0.4² + 0.4².
	require.Equal(t, 1.0, m("modelmon_prediction_outcome_total", "ordered", "predicted", "POSITIVE", "actual", "POSITIVE"))
	require.InDelta(t, 0.32, m("modelmon_prediction_brier_score_total", "ordered"), 1e-12)
	// mismatch names a class models[].classes lacks: no probabilities.
	require.Equal(t, 1.0, m("modelmon_prediction_outcome_total", "mismatch", "predicted", "POSITIVE", "actual", "POSITIVE"))
	require.Zero(t, m("modelmon_prediction_probability_outcomes_total", "mismatch"))

	// The push API reads the same shapes.
	pushRecordsRaw(t, e, `{"model":"sentiment","id":"sentiment-2","prediction":{"label":"NEGATIVE","score":0.65}}`,
		`{"model":"topk","id":"topk-2","prediction":[{"label":"NEGATIVE","score":0.45},{"label":"POSITIVE","score":0.55}]}`)
	_, resp = postLabels(t, e, `{"id":"sentiment-2","label":"POSITIVE"}`+"\n"+`{"id":"topk-2","label":"POSITIVE"}`)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	require.Equal(t, 1.0, m("modelmon_prediction_confidence_outcomes_total", "sentiment", "bins", "10", "bin", "6"))
	require.Zero(t, m("modelmon_prediction_confidence_correct_total", "sentiment", "bins", "10", "bin", "6"))
	require.InDelta(t, 0.98+2*0.45*0.45, m("modelmon_prediction_brier_score_total", "topk"), 1e-12)
}

// Joined labels are also counted by the values of the model's segments
// (models[].segments): accuracy per country for a classifier, MAE and RMSE
// per device for a regressor, over its numeric pairs for a model that also
// predicts classes; a missing value is __missing__, and values beyond the
// cap __other__.
func TestLabelsBySegment(t *testing.T) {
	e := startWithConfig(t, modelServer(t).URL, `models:
  - name: fraud
    segments: [country, new_customer]
  - name: price
    segments: [device, {feature: rooms, buckets: [2, 4]}]
  - name: mix
    segments: [device]
`, func(o *Options) { o.Labels = LabelsOptions{Enabled: true} })
	pushRecordsRaw(t, e,
		`{"model":"fraud","id":"f1","features":{"country":"DE","new_customer":true},"prediction":"fraud"}`,
		`{"model":"fraud","id":"f2","features":{"country":"DE","new_customer":false},"prediction":"legit"}`,
		`{"model":"fraud","id":"f3","features":{"country":"FR","new_customer":false},"prediction":"fraud"}`,
		`{"model":"fraud","id":"f4","features":{"new_customer":true},"prediction":"legit"}`,
		`{"model":"price","id":"p1","features":{"device":"app","rooms":2},"prediction":10}`,
		`{"model":"price","id":"p2","features":{"device":"app","rooms":3.5},"prediction":7}`,
		`{"model":"price","id":"p3","features":{"device":"web","rooms":7},"prediction":3}`,
		// mix on the app: scikit-learn's r2_score example's four numbers
		// (absolute errors 0.5, 0.5, 0, 1), and two classes besides.
		`{"model":"mix","id":"m1","features":{"device":"app"},"prediction":2.5}`,
		`{"model":"mix","id":"m2","features":{"device":"app"},"prediction":0.0}`,
		`{"model":"mix","id":"m3","features":{"device":"app"},"prediction":2}`,
		`{"model":"mix","id":"m4","features":{"device":"app"},"prediction":8}`,
		`{"model":"mix","id":"m5","features":{"device":"app"},"prediction":"yes"}`,
		`{"model":"mix","id":"m6","features":{"device":"app"},"prediction":"no"}`)
	_, resp := postLabels(t, e, strings.Join([]string{
		`{"id":"f1","label":"fraud"}`, `{"id":"f2","label":"fraud"}`, `{"id":"f3","label":"fraud"}`, `{"id":"f4","label":"legit"}`,
		`{"id":"p1","label":12}`, `{"id":"p2","label":6}`, `{"id":"p3","label":3}`,
		`{"id":"m1","label":3}`, `{"id":"m2","label":-0.5}`, `{"id":"m3","label":2}`, `{"id":"m4","label":7}`,
		`{"id":"m5","label":"yes"}`, `{"id":"m6","label":"yes"}`}, "\n"))
	require.Equal(t, slices.Repeat([]string{"matched"}, 13), resp.Results)

	seg := func(name, model, segment, value string) float64 {
		return metricValue(t, e, name, map[string]string{"model": model, "segment": segment, "segment_value": value})
	}
	for _, tc := range []struct {
		segment, value   string
		matched, correct float64
	}{
		{"country", "DE", 2, 1}, {"country", "FR", 1, 1}, {"country", "__missing__", 1, 1},
		{"new_customer", "true", 2, 2}, {"new_customer", "false", 2, 1},
	} {
		require.Equal(t, tc.matched, seg("modelmon_segment_labels_matched_total", "fraud", tc.segment, tc.value), "%s=%s", tc.segment, tc.value)
		require.Equal(t, tc.correct, seg("modelmon_segment_prediction_correct_total", "fraud", tc.segment, tc.value), "%s=%s", tc.segment, tc.value)
	}
	require.Contains(t, scrape(t, e, "modelmon_segment_prediction_correct_total")["modelmon_segment_prediction_correct_total"].text,
		`modelmon_segment_prediction_correct_total{model="fraud",segment="country",segment_value="DE"} 1`)
	require.Equal(t, 2.0, seg("modelmon_segment_labels_matched_total", "price", "device", "app"))
	require.Equal(t, 2.0, seg("modelmon_segment_prediction_regression_outcomes_total", "price", "device", "app"))
	require.Equal(t, 3.0, seg("modelmon_segment_prediction_absolute_error_total", "price", "device", "app"), "|10-12| + |7-6|")
	require.Equal(t, 5.0, seg("modelmon_segment_prediction_squared_error_total", "price", "device", "app"))
	require.Zero(t, seg("modelmon_segment_prediction_absolute_error_total", "price", "device", "web"))
	require.Equal(t, 1.0, seg("modelmon_segment_labels_matched_total", "price", "device", "web"))
	require.Equal(t, 1.0, seg("modelmon_segment_prediction_regression_outcomes_total", "price", "device", "web"))
	// mix: 6 labels joined on the app, 4 of them numbers.
	require.Equal(t, 6.0, seg("modelmon_segment_labels_matched_total", "mix", "device", "app"))
	require.Equal(t, 4.0, seg("modelmon_segment_prediction_regression_outcomes_total", "mix", "device", "app"))
	require.Equal(t, 2.0, seg("modelmon_segment_prediction_absolute_error_total", "mix", "device", "app"))
	require.Equal(t, 1.5, seg("modelmon_segment_prediction_squared_error_total", "mix", "device", "app"))
	require.Equal(t, 1.0, seg("modelmon_segment_prediction_correct_total", "mix", "device", "app"), "yes right, no wrong")
	// Rooms by range: 2 in (-inf,2], 3.5 in (2,4], 7 in (4,+inf).
	require.Equal(t, 2.0, seg("modelmon_segment_prediction_absolute_error_total", "price", "rooms", "(-inf,2]"))
	require.Equal(t, 1.0, seg("modelmon_segment_prediction_absolute_error_total", "price", "rooms", "(2,4]"))
	require.Equal(t, 1.0, seg("modelmon_segment_labels_matched_total", "price", "rooms", "(4,+inf)"))

	// Values beyond the cap (20) are __other__, and counted as overflow.
	var lines, labels []string
	for i := range 25 {
		lines = append(lines, fmt.Sprintf(`{"model":"price","id":"q%d","features":{"device":"d%d"},"prediction":1}`, i, i))
		labels = append(labels, fmt.Sprintf(`{"id":"q%d","label":1}`, i))
	}
	pushRecordsRaw(t, e, lines...)
	postLabels(t, e, strings.Join(labels, "\n"))
	require.Equal(t, 7.0, seg("modelmon_segment_labels_matched_total", "price", "device", "__other__"), "app, web and 18 more fill the 20")
	require.Equal(t, 7.0, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "segment"}))
	// The numeric pairs are counted under the same capped values.
	require.Equal(t, 7.0, seg("modelmon_segment_prediction_regression_outcomes_total", "price", "device", "__other__"))
	fams := scrape(t, e, "modelmon_segment_")
	priceDevice := func(name string) int {
		return strings.Count(fams[name].text, `{model="price",segment="device",`)
	}
	require.Equal(t, 21, priceDevice("modelmon_segment_labels_matched_total"), "20 values and __other__")
	require.Equal(t, 21, priceDevice("modelmon_segment_prediction_regression_outcomes_total"))

	// The shipped rules, in a real Prometheus scraping the sidecar.
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	requireQueries(t, prom, 1e-12, map[string]float64{
		`modelmon:segment_accuracy:total{model="fraud",segment="country",segment_value="DE"}`:        0.5,
		`modelmon:segment_accuracy:total{model="fraud",segment="new_customer",segment_value="true"}`: 1,
		`modelmon:segment_accuracy_gap:total{model="fraud",segment="country",segment_value="DE"}`:    0.5 - 0.75,
		`modelmon:segment_labels:total{model="fraud",segment="country",segment_value="__missing__"}`: 1,
		`modelmon:segment_mae:total{model="price",segment="device",segment_value="app"}`:             1.5,
		`modelmon:segment_rmse:total{model="price",segment="device",segment_value="app"}`:            math.Sqrt(2.5),
		// Over mix's 4 numeric pairs, not its 6 labels: 2/6 and √(1.5/6) before.
		`modelmon:segment_mae:total{model="mix",segment="device",segment_value="app"}`:  0.5,
		`modelmon:segment_rmse:total{model="mix",segment="device",segment_value="app"}`: math.Sqrt(1.5 / 4),
		// And its accuracy over its 2 class pairs, the model's: 1/6 and a
		// gap of -1/3 before.
		`modelmon:segment_class_outcomes:total{model="mix",segment="device",segment_value="app"}`: 2,
		`modelmon:segment_accuracy:total{model="mix",segment="device",segment_value="app"}`:       0.5,
		`modelmon:segment_accuracy_gap:total{model="mix",segment="device",segment_value="app"}`:   0,
	})
}

// With models[].segment_classes, a classifier's joined labels are also
// counted by segment value and class, predicted, labelled and right: the
// recall of fraud in one country, which the segment's accuracy hides. The
// model's first classes are counted by name, the others as __other__
// (counted as overflow); a model without it has none of these series.
func TestLabelsBySegmentClass(t *testing.T) {
	e := startWithConfig(t, modelServer(t).URL, `models:
  - name: fraud
    segments: [country]
    segment_classes: 2
  - name: plain
    segments: [country]
`, labelsOn)
	// predicted → actual by country. DE: legit→legit ×3, legit→fraud ×2,
	// fraud→fraud ×1, fraud→legit ×1, chargeback→fraud ×1; FR:
	// legit→legit ×2, fraud→fraud ×2. legit and fraud come first, so
	// chargeback, the third class, is __other__.
	pairs := []struct{ country, p, a string }{
		{"DE", "legit", "legit"}, {"DE", "legit", "legit"}, {"DE", "legit", "legit"},
		{"DE", "legit", "fraud"}, {"DE", "legit", "fraud"}, {"DE", "fraud", "fraud"}, {"DE", "fraud", "legit"},
		{"DE", "chargeback", "fraud"},
		{"FR", "legit", "legit"}, {"FR", "legit", "legit"}, {"FR", "fraud", "fraud"}, {"FR", "fraud", "fraud"},
	}
	var obs, lbs []string
	for i, pr := range pairs {
		for _, model := range []string{"fraud", "plain"} {
			obs = append(obs, fmt.Sprintf(`{"model":%q,"id":"%s%d","features":{"country":%q},"prediction":%q}`, model, model, i, pr.country, pr.p))
			lbs = append(lbs, fmt.Sprintf(`{"id":"%s%d","label":%q}`, model, i, pr.a))
		}
	}
	pushRecordsRaw(t, e, obs...)
	_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
	require.Equal(t, slices.Repeat([]string{"matched"}, 2*len(pairs)), resp.Results)

	fams := scrape(t, e, "modelmon_segment_class_")
	series := func(name string) map[string]float64 {
		out := map[string]float64{}
		require.Contains(t, fams, name)
		text := fams[name].text
		for _, line := range strings.Split(text, "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			require.Contains(t, line, `model="fraud",segment="country",`, "plain has no segment_classes")
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			require.NoError(t, err)
			out[strings.TrimPrefix(line[:i], name)] = v
		}
		return out
	}
	key := func(country, class string) string {
		return fmt.Sprintf(`{class=%q,model="fraud",segment="country",segment_value=%q}`, class, country)
	}
	require.Equal(t, map[string]float64{
		key("DE", "legit"): 5, key("DE", "fraud"): 2, key("DE", "__other__"): 1,
		key("FR", "legit"): 2, key("FR", "fraud"): 2,
	}, series("modelmon_segment_class_predictions_total"))
	require.Equal(t, map[string]float64{
		key("DE", "legit"): 4, key("DE", "fraud"): 4, key("DE", "__other__"): 0,
		key("FR", "legit"): 2, key("FR", "fraud"): 2,
	}, series("modelmon_segment_class_labels_total"))
	// __other__ stands for several classes: never right, and without a
	// series, as in modelmon_prediction_correct_total.
	require.Equal(t, map[string]float64{
		key("DE", "legit"): 3, key("DE", "fraud"): 1,
		key("FR", "legit"): 2, key("FR", "fraud"): 2,
	}, series("modelmon_segment_class_correct_total"))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "segment_class"}))

	// The shipped rules, in a real Prometheus scraping the sidecar. By
	// hand: fraud in DE was predicted twice, once right, and was the label
	// 4 times; in FR right both times. The model's recall of fraud is 3/6.
	prometheustest.Binary(t)
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	requireQueries(t, prom, 1e-12, map[string]float64{
		`modelmon:recall:total{model="fraud",class="fraud"}`:                                                 3.0 / 6,
		`modelmon:segment_recall:total{model="fraud",segment="country",segment_value="DE",class="fraud"}`:    1.0 / 4,
		`modelmon:segment_precision:total{model="fraud",segment="country",segment_value="DE",class="fraud"}`: 1.0 / 2,
		`modelmon:segment_f1:total{model="fraud",segment="country",segment_value="DE",class="fraud"}`:        2 * (0.5 * 0.25) / (0.5 + 0.25),
		`modelmon:segment_recall:total{model="fraud",segment="country",segment_value="FR",class="fraud"}`:    1,
		`modelmon:segment_recall:total{model="fraud",segment="country",segment_value="DE",class="legit"}`:    3.0 / 4,
		`modelmon:segment_precision:total{model="fraud",segment="country",segment_value="DE",class="legit"}`: 3.0 / 5,
		`count(modelmon:segment_recall:total{model="fraud",class="__other__"}) or vector(0)`:                 0,
	})
}

// The classes a model counts by segment value (models[].segment_classes)
// are its first, in the order the sidecar first saw them, and stay so
// across a restart with --storage.path, as the predictions waiting for
// their labels do: a restart does not hand the slot to whichever class
// comes first after it.
func TestLabelsBySegmentClassSurviveRestart(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    segments: [country]\n    segment_classes: 1\n"), 0o644))
	opts := func(o *Options) { o.Labels = LabelsOptions{Enabled: true}; o.StoragePath = storage; o.ConfigFile = cfg }
	e1 := startExporter(t, up.URL, opts)
	pushRecordsRaw(t, e1, `{"model":"fraud","id":"a","features":{"country":"DE"},"prediction":"legit"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e1.Stop(ctx))

	e2 := startExporter(t, up.URL, opts)
	pushRecordsRaw(t, e2, `{"model":"fraud","id":"b","features":{"country":"DE"},"prediction":"fraud"}`)
	_, resp := postLabels(t, e2, `{"id":"b","label":"fraud"}`+"\n"+`{"id":"a","label":"legit"}`)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	seg := func(name, class string) float64 {
		return metricValue(t, e2, name, map[string]string{"model": "fraud", "segment": "country", "segment_value": "DE", "class": class})
	}
	require.Equal(t, 1.0, seg("modelmon_segment_class_correct_total", "legit"), "the prediction from before the restart, joined after it")
	require.Equal(t, 1.0, seg("modelmon_segment_class_predictions_total", "__other__"), "fraud came second")
	require.Equal(t, 1.0, seg("modelmon_segment_class_labels_total", "__other__"))
	require.Zero(t, seg("modelmon_segment_class_predictions_total", "fraud"))
}

// segmentClassCounts returns model fraud's counts by class in segment
// value country="DE" of the three counters by segment and class, by
// counter (predicted, labelled, correct).
func segmentClassCounts(t *testing.T, e *Exporter) map[string]map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.WebAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(promModel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	out := map[string]map[string]float64{}
	for short, name := range map[string]string{"predicted": collector.SegmentClassPredictions, "labelled": collector.SegmentClassLabels, "correct": collector.SegmentClassCorrect} {
		out[short] = map[string]float64{}
		for _, m := range fams[name].GetMetric() {
			ls := map[string]string{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			if ls["model"] == "fraud" && ls["segment"] == "country" && ls["segment_value"] == "DE" {
				out[short][ls["class"]] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// pushJoined pushes one prediction of model fraud in country DE per pair
// (id, predicted class), in order, then a label per pair (id, actual
// class), and requires every label joined.
func pushJoined(t *testing.T, e *Exporter, predictions, labels [][2]string) {
	t.Helper()
	var obs, lbs []string
	for _, p := range predictions {
		obs = append(obs, fmt.Sprintf(`{"model":"fraud","id":%q,"features":{"country":"DE"},"prediction":%q}`, p[0], p[1]))
	}
	for _, l := range labels {
		lbs = append(lbs, fmt.Sprintf(`{"id":%q,"label":%q}`, l[0], l[1]))
	}
	if len(obs) > 0 {
		pushRecordsRaw(t, e, obs...)
	}
	if len(lbs) > 0 {
		_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
		require.Equal(t, slices.Repeat([]string{"matched"}, len(lbs)), resp.Results)
	}
}

// Replicas that see a model's classes in opposite orders count the same
// ones by name by segment value when the model lists its classes
// (models[].classes): the first segment_classes of the list, the others
// as __other__, so that sum by (segment, segment_value, class) over the
// replicas adds up each class's counts under one name.
func TestLabelsBySegmentClassReplicasAgree(t *testing.T) {
	const cfg = `models:
  - name: fraud
    classes: [legit, fraud, chargeback]
    segments: [country]
    segment_classes: 2
`
	up := modelServer(t)
	replicas := []*Exporter{startWithConfig(t, up.URL, cfg, labelsOn), startWithConfig(t, up.URL, cfg, labelsOn)}
	orders := [][]string{{"chargeback", "fraud", "legit"}, {"legit", "fraud", "chargeback"}}
	for r, e := range replicas {
		var pairs [][2]string
		for i, c := range orders[r] {
			pairs = append(pairs, [2]string{fmt.Sprint(i), c})
		}
		pushJoined(t, e, pairs, pairs)
		require.Equal(t, map[string]map[string]float64{
			"predicted": {"legit": 1, "fraud": 1, "__other__": 1},
			"labelled":  {"legit": 1, "fraud": 1, "__other__": 1},
			"correct":   {"legit": 1, "fraud": 1},
		}, segmentClassCounts(t, e), "replica %d, classes seen in the order %v", r, orders[r])
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "segment_class"}))
	}
}

// A restart with --storage.path keeps the listed classes first: the
// predictions waiting for their labels keep their classes, and a store
// saved before the model listed its classes (the order the sidecar saw
// them in) takes the list's order when restored.
func TestLabelsBySegmentClassListedSurviveRestart(t *testing.T) {
	up := modelServer(t)
	const listed = "models:\n  - name: fraud\n    classes: [legit, fraud]\n    segments: [country]\n    segment_classes: 1\n"
	for name, before := range map[string]string{
		"listed":     listed,
		"not listed": "models:\n  - name: fraud\n    segments: [country]\n    segment_classes: 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			storage := t.TempDir()
			cfg := filepath.Join(t.TempDir(), "modelmon.yml")
			require.NoError(t, os.WriteFile(cfg, []byte(before), 0o644))
			opts := func(o *Options) { o.Labels = LabelsOptions{Enabled: true}; o.StoragePath = storage; o.ConfigFile = cfg }
			e1 := startExporter(t, up.URL, opts)
			pushJoined(t, e1, [][2]string{{"a", "fraud"}}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, e1.Stop(ctx))

			require.NoError(t, os.WriteFile(cfg, []byte(listed), 0o644))
			e2 := startExporter(t, up.URL, opts)
			pushJoined(t, e2, [][2]string{{"b", "legit"}, {"c", "fraud"}}, [][2]string{{"a", "fraud"}, {"b", "legit"}, {"c", "legit"}})
			require.Equal(t, map[string]map[string]float64{
				"predicted": {"legit": 1, "__other__": 2},
				"labelled":  {"legit": 2, "__other__": 1},
				"correct":   {"legit": 1},
			}, segmentClassCounts(t, e2))
		})
	}
}

// A reload that changes a model's classes puts the new list first and
// starts its counters by segment and class again at 0: the class it moved
// to __other__ leaves no series behind.
func TestLabelsBySegmentClassReload(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(classes string) {
		require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    classes: "+classes+"\n    segments: [country]\n    segment_classes: 1\n"), 0o644))
	}
	write("[legit, fraud]")
	e := startExporter(t, modelServer(t).URL, func(o *Options) { labelsOn(o); o.ConfigFile = cfg })
	pushJoined(t, e, [][2]string{{"a", "legit"}, {"b", "fraud"}}, [][2]string{{"a", "legit"}})
	require.Equal(t, map[string]map[string]float64{
		"predicted": {"legit": 1},
		"labelled":  {"legit": 1},
		"correct":   {"legit": 1},
	}, segmentClassCounts(t, e))

	write("[fraud, legit]")
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/-/reload", "")
	require.Equal(t, 200, st, body)
	require.Equal(t, map[string]map[string]float64{"predicted": {}, "labelled": {}, "correct": {}}, segmentClassCounts(t, e), "started again")
	// b, predicted before the reload, is fraud, now named.
	pushJoined(t, e, [][2]string{{"c", "legit"}}, [][2]string{{"b", "fraud"}, {"c", "legit"}})
	require.Equal(t, map[string]map[string]float64{
		"predicted": {"fraud": 1, "__other__": 1},
		"labelled":  {"fraud": 1, "__other__": 1},
		"correct":   {"fraud": 1},
	}, segmentClassCounts(t, e))
}

// Wherever the sidecar shows labels joined, it shows the numeric pairs
// among them under the same labels, at 0 for a class label: for the model,
// by segment value, and for the shadow. The quality rules take the labels
// joined as the numeric pairs of a replica that has no such series, a
// sidecar from before them in a rolling upgrade, so a missing one must
// mean that and not "no number yet".
func TestRegressionOutcomesBesideLabelsMatched(t *testing.T) {
	answers := map[string]string{"fraud": `{"predictions": ["a", "b"]}`, "house": `{"predictions": [1, 2]}`}
	model, candidate := newRecordingServer(t, answers, nil), newRecordingServer(t, answers, nil)
	e := startWithConfig(t, model.URL, `models:
  - name: fraud
    segments: [country]
  - name: house
    segments: [country]
`, func(o *Options) {
		labelsOn(o)
		shadowOptions(candidate.URL, nil)(o)
	})
	for _, r := range []struct{ model, id string }{{"fraud", "r1"}, {"house", "r2"}} {
		status, _ := predict(t, e, r.model, `{"instances": [{"country": "DE"}, {"country": "FR"}]}`, "X-Request-Id", r.id)
		require.Equal(t, 200, status)
	}
	waitIdle(t, e)
	_, resp := postLabels(t, e, `{"id": "r1/0", "label": "a"}
{"id": "r1/1", "label": "a"}
{"id": "r2/0", "label": 1}
{"id": "r2/1", "label": 3}`)
	require.Equal(t, slices.Repeat([]string{"matched"}, 4), resp.Results)

	resp2, err := http.Get("http://" + e.WebAddr() + "/metrics")
	require.NoError(t, err)
	defer resp2.Body.Close()
	parser := expfmt.NewTextParser(promModel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp2.Body)
	require.NoError(t, err)
	// series returns the samples of a family by their labels.
	series := func(name string) map[string]float64 {
		out := map[string]float64{}
		for _, m := range fams[name].GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			out[strings.Join(ls, ",")] = m.GetCounter().GetValue()
		}
		return out
	}
	for _, tc := range []struct {
		matched, numeric string
		want             map[string]float64
	}{
		{collector.LabelsMatchedTotal, collector.RegressionOutcomesTotal,
			map[string]float64{"model=fraud": 0, "model=house": 2}},
		{collector.SegmentLabelsMatched, collector.SegmentRegOutcomes, map[string]float64{
			"model=fraud,segment=country,segment_value=DE": 0, "model=fraud,segment=country,segment_value=FR": 0,
			"model=house,segment=country,segment_value=DE": 1, "model=house,segment=country,segment_value=FR": 1,
		}},
		{collector.ShadowLabelsMatchedTotal, collector.ShadowRegressionOutcomesTotal,
			map[string]float64{"model=fraud": 0, "model=house": 2}},
	} {
		require.Equal(t, tc.want, series(tc.numeric), tc.numeric)
		require.ElementsMatch(t, slices.Collect(maps.Keys(series(tc.matched))), slices.Collect(maps.Keys(tc.want)), tc.matched)
	}
}

// requireQueries waits until each PromQL expression gives its value, within
// tol, in the real Prometheus prom.
func requireQueries(t *testing.T, prom *prometheustest.Server, tol float64, want map[string]float64) {
	t.Helper()
	for expr, want := range want {
		var mu sync.Mutex
		var got float64
		var err error
		require.Eventually(t, func() bool {
			g, e := prom.QueryScalar(expr)
			mu.Lock()
			defer mu.Unlock()
			got, err = g, e
			return err == nil && math.Abs(got-want) <= tol
		}, 60*time.Second, 250*time.Millisecond, "%s: want %v, got %v", expr, want, lastQuery(func() string {
			// Read when the failure is written, not when Eventually is called.
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprintf("%v (err %v)", got, err)
		}))
	}
}

// lastQuery formats as what it returns, when it is formatted.
type lastQuery func() string

func (f lastQuery) String() string { return f() }

func TestNamedScores(t *testing.T) {
	names := func(ns ...string) [][]byte {
		var out [][]byte
		for _, n := range ns {
			out = append(out, []byte(n))
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		classes     []string
		scores      []float64
		names       [][]byte
		want        []float64
		wantClasses []string
	}{
		{"by configured classes", []string{"neg", "pos"}, []float64{0.9, 0.1}, names("pos", "neg"), []float64{0.1, 0.9}, []string{"neg", "pos"}},
		{"by name", nil, []float64{0.5, 0.2, 0.3}, names("c", "a", "b"), []float64{0.2, 0.3, 0.5}, []string{"a", "b", "c"}},
		{"a class twice", nil, []float64{0.5, 0.5}, names("a", "a"), nil, nil},
		{"other classes", []string{"neg", "pos"}, []float64{0.9, 0.1}, names("pos", "meh"), nil, nil},
		{"fewer classes", []string{"neg", "pos", "meh"}, []float64{0.9, 0.1}, names("pos", "neg"), nil, nil},
		{"fewer names", nil, []float64{0.9, 0.1}, names("pos"), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, classes := namedScores(tc.classes, tc.scores, tc.names)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantClasses, classes)
		})
	}
}

func TestBinaryScore(t *testing.T) {
	two := []string{"legit", "fraud"}
	num := func(x float64) payload.Value { return payload.Value{Kind: payload.KindNumber, Num: x} }
	for _, tc := range []struct {
		name    string
		classes []string
		r       payload.Record
		want    float64
		ok      bool
	}{
		{"a number", two, payload.Record{Prediction: num(0.93)}, 0.93, true},
		{"a vector of one", two, payload.Record{Scores: []float64{0.25}}, 0.25, true},
		{"0 and 1", two, payload.Record{Prediction: num(1)}, 1, true},
		{"out of range", two, payload.Record{Prediction: num(1.7)}, 0, false},
		{"NaN", two, payload.Record{Prediction: num(math.NaN())}, 0, false},
		{"three classes", []string{"a", "b", "c"}, payload.Record{Prediction: num(0.5)}, 0, false},
		{"no classes", nil, payload.Record{Prediction: num(0.5)}, 0, false},
		{"a vector of two", two, payload.Record{Scores: []float64{0.2, 0.8}}, 0, false},
		{"a score beside a named class", two, payload.Record{Prediction: payload.Value{Kind: payload.KindString, Str: []byte("legit")}, Scores: []float64{0.99}}, 0, false},
		{"nothing", two, payload.Record{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := binaryScore(tc.classes, tc.r)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.want, got)
			}
		})
	}
}

// The shipped calibration rules, evaluated by a real Prometheus scraping
// the sidecar, give torchmetrics' published expected calibration error of
// its MulticlassCalibrationError example, and, on random predictions, the
// one the test computes from the raw data by itself.
func TestCalibrationRulesInPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: tm\n    classes: [\"0\", \"1\", \"2\"]\n  - name: rnd\n    classes: [a, b]\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })

	// torchmetrics' example: MulticlassCalibrationError(num_classes=3,
	// n_bins=3, norm='l1') gives 0.2000. Its confidences, 0.55, 0.55, 0.60
	// and 0.90, fall in the same groups in our ten bins as in its three.
	var obs, lbs []string
	for i, row := range []struct {
		probs  string
		target string
	}{
		{"[0.25, 0.20, 0.55]", "0"},
		{"[0.55, 0.05, 0.40]", "1"},
		{"[0.10, 0.30, 0.60]", "2"},
		{"[0.90, 0.05, 0.05]", "0"},
	} {
		obs = append(obs, fmt.Sprintf(`{"model":"tm","id":"tm-%d","prediction":%s}`, i, row.probs))
		lbs = append(lbs, fmt.Sprintf(`{"id":"tm-%d","label":%q}`, i, row.target))
	}

	// Random binary predictions, calibrated or not, against a reference
	// computed here: bins by sorting each confidence against the edges k/10
	// from the top, accuracy and mean confidence per bin, and the gaps
	// weighted by the bins' shares.
	rng := rand.New(rand.NewPCG(7, 11))
	var n, right, conf [10]float64
	const total = 300
	for i := range total {
		pa := math.Round(rng.Float64()*1000) / 1000
		predicted, c := "a", pa
		if pa < 0.5 {
			predicted, c = "b", 1-pa
		}
		actual := "a"
		if rng.Float64() < 0.3 { // right 70 % of the time, whatever the confidence
			actual = "b"
		}
		obs = append(obs, fmt.Sprintf(`{"model":"rnd","id":"r-%d","prediction":[%v, %v]}`, i, pa, 1-pa))
		lbs = append(lbs, fmt.Sprintf(`{"id":"r-%d","label":%q}`, i, actual))
		bin := 9
		for bin > 0 && c <= float64(bin)/10 {
			bin--
		}
		n[bin]++
		conf[bin] += c
		if predicted == actual {
			right[bin]++
		}
	}
	var ece float64
	for k := range n {
		if n[k] > 0 {
			ece += n[k] / total * math.Abs(right[k]/n[k]-conf[k]/n[k])
		}
	}
	pushRecordsRaw(t, e, obs...)
	_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
	require.Len(t, resp.Results, total+4)
	for _, r := range resp.Results {
		require.Equal(t, "matched", r)
	}

	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	requireQueries(t, prom, 1e-9, map[string]float64{
		`modelmon:calibration_error:total{model="tm"}`:                      0.2,
		`modelmon:calibration_accuracy:total{model="tm",bin="5"}`:           1.0 / 3,
		`modelmon:calibration_confidence:total{model="tm",bin="5"}`:         (0.55 + 0.55 + 0.60) / 3,
		`modelmon:calibration_accuracy:total{model="tm",bin="8"}`:           1,
		`modelmon:prediction_confidence_outcomes:total{model="tm",bin="8"}`: 1,
		`modelmon:calibration_error:total{model="rnd"}`:                     ece,
	})
	require.Greater(t, ece, 0.05, "the random model is not calibrated: its confidence is not its 70 %% accuracy")
}

// A model's calibration counts in the bins models[].calibration_bins
// gives: over fifteen, the shipped rules in a real Prometheus give the
// expected calibration error computed here as scikit-learn's
// calibration_curve bins (np.searchsorted on the inner edges k/15: bin k
// holds (k/15, (k+1)/15]), which is not the ten bins' one of the same
// predictions. A reload to other bins starts series of their own (the
// bins label), and the error over both is their mean weighted by
// predictions: no bin index counts two ranges.
func TestCalibrationBinsInPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(bins int) {
		require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("models:\n  - name: cal\n    classes: [a, b]\n    calibration_bins: %d\n", bins)), 0o644))
	}
	write(15)
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })

	// binned holds, per bin, the predictions, the right ones and their
	// confidences' sum; add bins one as calibration_curve does, and gaps
	// sums |right − confidence| over the bins.
	type binned struct{ n, right, conf []float64 }
	newBinned := func(bins int) binned {
		return binned{make([]float64, bins), make([]float64, bins), make([]float64, bins)}
	}
	add := func(b binned, c float64, ok bool) {
		inner := make([]float64, len(b.n)-1)
		for k := range inner {
			inner[k] = float64(k+1) / float64(len(b.n))
		}
		k := sort.SearchFloat64s(inner, c) // np.searchsorted(bins[1:-1], c), side left
		b.n[k]++
		b.conf[k] += c
		if ok {
			b.right[k]++
		}
	}
	gaps := func(b binned) (sum float64) {
		for k := range b.n {
			sum += math.Abs(b.right[k] - b.conf[k])
		}
		return sum
	}
	rng := rand.New(rand.NewPCG(15, 10))
	send := func(from, to int, bs ...binned) {
		var obs, lbs []string
		for i := from; i < to; i++ {
			pa := math.Round(rng.Float64()*1000) / 1000
			predicted, c := "a", pa
			if pa < 0.5 {
				predicted, c = "b", 1-pa
			}
			actual := predicted
			if rng.Float64() < 0.25 {
				actual = map[string]string{"a": "b", "b": "a"}[predicted]
			}
			obs = append(obs, fmt.Sprintf(`{"model":"cal","id":"c-%d","prediction":[%v, %v]}`, i, pa, 1-pa))
			lbs = append(lbs, fmt.Sprintf(`{"id":"c-%d","label":%q}`, i, actual))
			for _, b := range bs {
				add(b, c, predicted == actual)
			}
		}
		pushRecordsRaw(t, e, obs...)
		_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
		for _, r := range resp.Results {
			require.Equal(t, "matched", r)
		}
	}
	fifteen, ten := newBinned(15), newBinned(10)
	const total = 400
	send(0, total, fifteen, ten)
	ece15, ece10 := gaps(fifteen)/total, gaps(ten)/total
	t.Logf("expected calibration error: %.6f in 15 bins, %.6f in 10", ece15, ece10)
	require.Greater(t, math.Abs(ece15-ece10), 0.005, "the number of bins matters to these predictions")
	const counted = "modelmon_prediction_confidence_predictions_total"
	require.Equal(t, 15, strings.Count(scrape(t, e, counted)[counted].text, `bins="15"`), "every bin, at 0 too")

	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	want := map[string]float64{`modelmon:calibration_error:total{model="cal"}`: ece15}
	for k := range fifteen.n {
		if fifteen.n[k] > 0 {
			sel := fmt.Sprintf(`{model="cal",bins="15",bin="%d"}`, k)
			want[`modelmon:calibration_accuracy:total`+sel] = fifteen.right[k] / fifteen.n[k]
			want[`modelmon:prediction_confidence_outcomes:total`+sel] = fifteen.n[k]
		}
	}
	requireQueries(t, prom, 1e-9, want)

	// Ten bins from here on: 200 more predictions, in series of their own.
	write(10)
	require.NoError(t, e.Reload())
	later := newBinned(10)
	send(total, total+200, later)
	requireQueries(t, prom, 1e-9, map[string]float64{
		`modelmon:calibration_error:total{model="cal"}`:                             (gaps(fifteen) + gaps(later)) / (total + 200),
		`sum(modelmon:prediction_confidence_outcomes:total{model="cal",bins="15"})`: total,
		`sum(modelmon:prediction_confidence_outcomes:total{model="cal",bins="10"})`: 200,
	})
}

// labelsExporter starts an exporter with labels on (a TTL of an hour) in
// front of a model server, on a clock the test moves.
func labelsExporter(t *testing.T) (*Exporter, *manualClock) {
	t.Helper()
	up := modelServer(t)
	clock := &manualClock{t: time.Unix(1800000000, 0)}
	e := startExporter(t, up.URL, func(o *Options) {
		o.Now = clock.Now
		o.Labels = LabelsOptions{Enabled: true, TTL: time.Hour}
	})
	return e, clock
}

// manualClock is a clock the test moves.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A label after its prediction's TTL is counted as expired, not matched.
func TestLabelsAfterExpiry(t *testing.T) {
	e, clock := labelsExporter(t)
	pushRecordsRaw(t, e, `{"model":"m","id":"old","prediction":"yes"}`, `{"model":"m","id":"new","prediction":"yes"}`)
	clock.Add(30 * time.Minute)
	_, resp := postLabels(t, e, `{"id":"new","label":"yes"}`)
	require.Equal(t, []string{"matched"}, resp.Results)
	clock.Add(2 * time.Hour)
	_, resp = postLabels(t, e, `{"id":"old","label":"yes"}`)
	require.Equal(t, []string{"expired"}, resp.Results)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_labels_total", map[string]string{"reason": "expired"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_labels_total", map[string]string{"reason": "matched"}))
	require.Equal(t, 1800.0, metricValue(t, e, "modelmon_label_delay_seconds_sum", map[string]string{"model": "m"}))
}

// With models[].classes, a vector prediction is class probabilities: the
// most probable class is the prediction, and Brier score and log loss are
// summed. With models[].id_path, the id comes from the body (the OIP
// request's "id").
func TestLabelsProbabilitiesAndBodyID(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: risk\n    classes: [no, yes]\n  - name: churn\n    id_path: id\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })

	pushRecordsRaw(t, e, `{"model":"risk","id":"p1","prediction":[0.2,0.8]}`, `{"model":"risk","id":"p2","prediction":[0.9,0.1]}`)
	_, resp := postLabels(t, e, `{"id":"p1","label":"yes"}`+"\n"+`{"id":"p2","label":"yes"}`)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "risk", "predicted": "yes", "actual": "yes"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "risk", "predicted": "no", "actual": "yes"}))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_probability_outcomes_total", map[string]string{"model": "risk"}))
	// Brier: (0.2² + 0.2²) + (0.9² + 0.9²); log loss: -ln 0.8 - ln 0.1.
	require.InDelta(t, 0.08+1.62, metricValue(t, e, "modelmon_prediction_brier_score_total", map[string]string{"model": "risk"}), 1e-12)
	require.InDelta(t, -math.Log(0.8)-math.Log(0.1), metricValue(t, e, "modelmon_prediction_log_loss_total", map[string]string{"model": "risk"}), 1e-12)
	// Confidence: 0.8 (bin 7, right) and 0.9 (bin 8, wrong, its right
	// counter at 0 so that the calibration error can subtract it).
	bin := func(b string) map[string]string { return map[string]string{"model": "risk", "bins": "10", "bin": b} }
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_confidence_outcomes_total", bin("7")))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_confidence_correct_total", bin("7")))
	require.Equal(t, 0.8, metricValue(t, e, "modelmon_prediction_confidence_total", bin("7")))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_confidence_outcomes_total", bin("8")))
	require.Equal(t, 0.9, metricValue(t, e, "modelmon_prediction_confidence_total", bin("8")))
	require.Contains(t, scrape(t, e, "modelmon_prediction_confidence_correct_total")["modelmon_prediction_confidence_correct_total"].text, `modelmon_prediction_confidence_correct_total{bin="8",bins="10",model="risk"} 0`)

	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v2/models/churn/infer",
		`{"id":"req-9","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`, "X-Request-Id", "header-id")
	require.Equal(t, 200, st)
	waitIdle(t, e)
	_, resp = postLabels(t, e, `{"id":"req-9","label":0.25}`+"\n"+`{"id":"header-id","label":0.25}`)
	require.Equal(t, []string{"matched", "held"}, resp.Results, "the body's id wins over the header")
	require.Equal(t, 0.25, metricValue(t, e, "modelmon_prediction_absolute_error_total", map[string]string{"model": "churn"}))
}

// At --labels.max-pending=1000000 the sidecar keeps 1,000,000 predictions,
// evicts the rest, and their memory stays within 200 bytes each.
func TestLabelsMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 1,100,000 predictions")
	}
	up := modelServer(t)
	recs := []payload.Record{{Prediction: payload.Value{Kind: payload.KindString, Str: []byte("yes")}}}
	now := time.Now()
	id := make([]byte, 0, 16)
	perEntry := 0.0
	// The heap can shrink while the store fills, when memory that earlier
	// tests of the process still held is freed (go test -count=N): then
	// the figure means nothing, and it is measured again.
	for attempt := 1; perEntry <= 0 && attempt <= 3; attempt++ {
		e := startExporter(t, up.URL, func(o *Options) { o.Labels = LabelsOptions{Enabled: true, MaxPending: 1_000_000} })
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < 1_100_000; i++ {
			id = strconv.AppendInt(append(id[:0], "req-"...), int64(i), 10)
			e.obs.labels.observe(now, "m", id, modelConfig{}, recs)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		require.Equal(t, 1_000_000.0, metricValue(t, e, "modelmon_pending_predictions", map[string]string{}))
		require.Equal(t, 100_000.0, metricValue(t, e, "modelmon_pending_predictions_removed_total", map[string]string{"reason": "evicted"}))
		perEntry = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / 1_000_000
		t.Logf("attempt %d: heap per pending prediction: %.1f bytes", attempt, perEntry)
	}
	require.Positive(t, perEntry, "the heap shrank in every attempt")
	require.Less(t, perEntry, 200.0)
}

// Classes past the cap of a model are counted as __other__, and the log says
// so once.
func TestLabelsClassOverflow(t *testing.T) {
	up := modelServer(t)
	logger, logs := testLogger()
	e := startExporter(t, up.URL, func(o *Options) { labelsOn(o); o.Logger = logger })
	var obs, lbs []string
	for i := range 60 {
		obs = append(obs, fmt.Sprintf(`{"model":"wide","id":"w%d","prediction":"c%d"}`, i, i))
		lbs = append(lbs, fmt.Sprintf(`{"id":"w%d","label":"c%d"}`, i, i))
	}
	pushRecordsRaw(t, e, obs...)
	st, _ := postLabels(t, e, strings.Join(lbs, "\n"))
	require.Equal(t, 200, st)
	require.Positive(t, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "class"}))
	require.Positive(t, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "wide", "predicted": "__other__", "actual": "__other__"}))
	require.Equal(t, 1, strings.Count(logs.String(), `msg="Too many classes`), logs.String())
	require.Contains(t, logs.String(), `model=wide max_classes=50 times=1`)
}

// startWithConfig starts a sidecar in front of up with the configuration
// file yml, and mod's further options.
func startWithConfig(t testing.TB, up string, yml string, mod func(*Options)) *Exporter {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(yml), 0o644))
	return startExporter(t, up, func(o *Options) {
		o.ConfigFile = cfg
		if mod != nil {
			mod(o)
		}
	})
}

// A model's score_buckets give its modelmon_prediction_score classic
// buckets in its own range (a regression's prices), beside the other models'
// 0.1 … 1, in one family; a reload that changes them starts the model's
// histogram again.
func TestPredictionScoreBuckets(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(price string) {
		require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n  - name: price\n"+price), 0o644))
	}
	write("    score_buckets: [100, 1000, 10000]\n")
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.ConfigFile = cfg })
	pushRecordsRaw(t, e, `{"model":"price","prediction":50}`, `{"model":"price","prediction":500}`,
		`{"model":"price","prediction":5000}`, `{"model":"price","prediction":50000}`, `{"model":"fraud","prediction":0.3}`)
	buckets := func() string { return scrape(t, e, "modelmon_prediction_score")["modelmon_prediction_score"].text }
	got := buckets()
	for _, line := range []string{
		`modelmon_prediction_score_bucket{model="price",le="100"} 1`,
		`modelmon_prediction_score_bucket{model="price",le="1000"} 2`,
		`modelmon_prediction_score_bucket{model="price",le="10000"} 3`,
		`modelmon_prediction_score_bucket{model="price",le="+Inf"} 4`,
		`modelmon_prediction_score_sum{model="price"} 55550`,
		`modelmon_prediction_score_bucket{model="fraud",le="0.3"} 1`,
		`modelmon_prediction_score_bucket{model="fraud",le="0.2"} 0`,
	} {
		require.Contains(t, got, line+"\n")
	}
	require.NotContains(t, got, `{model="price",le="0.5"}`)
	require.Equal(t, 1, strings.Count(got, "# TYPE modelmon_prediction_score histogram"), "one family")

	// Other buckets: the histogram starts again with them.
	write("    score_buckets: [1, 10]\n")
	require.NoError(t, e.Reload())
	pushRecordsRaw(t, e, `{"model":"price","prediction":5}`)
	got = buckets()
	require.Contains(t, got, `modelmon_prediction_score_bucket{model="price",le="10"} 1`+"\n")
	require.Contains(t, got, `modelmon_prediction_score_count{model="price"} 1`+"\n")
	require.NotContains(t, got, `{model="price",le="1000"}`)

	// None: the default buckets.
	write("")
	require.NoError(t, e.Reload())
	pushRecordsRaw(t, e, `{"model":"price","prediction":0.5}`)
	got = buckets()
	require.Contains(t, got, `modelmon_prediction_score_bucket{model="price",le="0.5"} 1`+"\n")
	require.NotContains(t, got, `{model="price",le="10"}`)
}

// Predictions are counted by predicted class, read as the label join reads
// them, numeric ones (a regression's values, a binary classifier's scores)
// go to a histogram, and so does the probability each gives its class;
// none of it needs labels.
func TestPredictionClassAndScore(t *testing.T) {
	e := startWithConfig(t, modelServer(t).URL, `models:
  - name: fraud
    classes: [legit, fraud]
  - name: animals
    classes: [cat, dog, eel]
`, nil)
	pushRecordsRaw(t, e,
		`{"model":"fraud","prediction":0.93}`, `{"model":"fraud","prediction":0.2}`, `{"model":"fraud","prediction":"fraud"}`,
		`{"model":"animals","prediction":[0.2,0.5,0.3]}`, `{"model":"animals","prediction":{"label":"cat","score":0.9}}`,
		`{"model":"price","prediction":12.5}`, `{"model":"price","prediction":-3}`, `{"model":"price","prediction":"NaN"}`)
	class := func(model, c string) float64 {
		return metricValue(t, e, "modelmon_prediction_class_total", map[string]string{"model": model, "class": c})
	}
	require.Equal(t, 2.0, class("fraud", "fraud"), "0.93 and the named class")
	require.Equal(t, 1.0, class("fraud", "legit"), "0.2")
	require.Equal(t, 1.0, class("animals", "dog"))
	require.Equal(t, 1.0, class("animals", "cat"))
	score := func(model, suffix string) float64 {
		return metricValue(t, e, "modelmon_prediction_score"+suffix, map[string]string{"model": model})
	}
	require.Equal(t, 2.0, score("fraud", "_count"), "the scores, not the named class")
	require.InDelta(t, 1.13, score("fraud", "_sum"), 1e-12)
	require.Equal(t, 2.0, score("price", "_count"))
	require.Equal(t, 9.5, score("price", "_sum"))
	require.Zero(t, score("animals", "_count"), "no numeric prediction")
	require.Zero(t, class("price", "12.5"), "a regression has no class")
	// The probability each gives its class: 0.93 and 0.8 (legit at 0.2);
	// dog's 0.5 and cat's 0.9; the named class alone gives none.
	conf := func(model, suffix string) float64 {
		return metricValue(t, e, "modelmon_prediction_class_probability"+suffix, map[string]string{"model": model})
	}
	require.Equal(t, 2.0, conf("fraud", "_count"))
	require.InDelta(t, 1.73, conf("fraud", "_sum"), 1e-12)
	require.Equal(t, 2.0, conf("animals", "_count"))
	require.InDelta(t, 1.4, conf("animals", "_sum"), 1e-12)
	require.Zero(t, conf("price", "_count"))

	// Beyond 50 classes a model's new ones are __other__, and counted.
	var lines []string
	for i := range 55 {
		lines = append(lines, fmt.Sprintf(`{"model":"words","prediction":"w%d"}`, i))
	}
	pushRecordsRaw(t, e, lines...)
	require.Equal(t, 5.0, class("words", "__other__"))
	require.Equal(t, 5.0, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "class"}))
}

// With --storage.snapshot-interval the pending predictions are written
// while the sidecar runs: a sidecar that starts on the same storage after a
// crash (here, while the first still runs and has saved nothing at
// shutdown) joins labels to them.
func TestPendingPredictionsSurviveACrash(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	opts := func(o *Options) {
		o.StoragePath = storage
		o.SnapshotInterval = 50 * time.Millisecond
		o.Labels = LabelsOptions{Enabled: true}
	}
	e := startExporter(t, up.URL, opts)
	pushRecordsRaw(t, e, `{"model":"fraud","id":"before-crash","prediction":"fraud"}`)
	require.Eventually(t, func() bool {
		f, err := os.Open(filepath.Join(storage, "labels.snapshot"))
		if err != nil {
			return false
		}
		defer f.Close()
		s, err := quality.Restore(f, time.Now())
		return err == nil && s.Len() == 1
	}, 10*time.Second, 20*time.Millisecond, "no snapshot with the prediction")

	after := startExporter(t, up.URL, opts)
	_, resp := postLabels(t, after, `{"id":"before-crash","label":"fraud"}`)
	require.Equal(t, []string{"matched"}, resp.Results)
}

// A segment's value from a CSV request (MLflow's text/csv) is the cell's
// text as written, "007" and not 7, as a JSON string's is: a segment value
// is a label value, and CSV has no types to say the column is numbers.
func TestLabelsSegmentFromCSV(t *testing.T) {
	e := startWithConfig(t, csvUpstream(t).URL, `models:
  - name: m
    segments: [zip, {feature: amount, buckets: [10]}]
`, func(o *Options) { o.Labels = LabelsOptions{Enabled: true} })
	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/invocations", "amount,zip\n5,007\n20,1.50\n",
		"Content-Type", "text/csv", "X-Model-Name", "m", "X-Request-Id", "c1")
	require.Equal(t, 200, st, body)
	waitIdle(t, e)
	_, resp := postLabels(t, e, `{"id":"c1/0","label":0.5}`+"\n"+`{"id":"c1/1","label":0.5}`)
	require.Equal(t, []string{"matched", "matched"}, resp.Results)
	seg := func(segment, value string) float64 {
		return metricValue(t, e, "modelmon_segment_labels_matched_total", map[string]string{"model": "m", "segment": segment, "segment_value": value})
	}
	require.Equal(t, 1.0, seg("zip", "007"))
	require.Equal(t, 1.0, seg("zip", "1.50"))
	require.Zero(t, seg("zip", "7"))
	// Buckets read the number.
	require.Equal(t, 1.0, seg("amount", "(-inf,10]"))
	require.Equal(t, 1.0, seg("amount", "(10,+inf)"))
}

// A bucketed segment's value is the range its number falls in.
func TestBucketOf(t *testing.T) {
	buckets := []float64{0, 10.5, 100}
	for _, tc := range []struct {
		v    payload.Value
		want string
	}{
		{payload.Value{Kind: payload.KindNumber, Num: -3}, "(-inf,0]"},
		{payload.Value{Kind: payload.KindNumber, Num: 0}, "(-inf,0]"},
		{payload.Value{Kind: payload.KindNumber, Num: 0.1}, "(0,10.5]"},
		{payload.Value{Kind: payload.KindNumber, Num: 10.5}, "(0,10.5]"},
		{payload.Value{Kind: payload.KindNumber, Num: 100}, "(10.5,100]"},
		{payload.Value{Kind: payload.KindNumber, Num: 1e9}, "(100,+inf)"},
		{payload.Value{Kind: payload.KindNumber, Num: math.Inf(1)}, "(100,+inf)"},
		{payload.Value{Kind: payload.KindNumber, Num: math.Inf(-1)}, "(-inf,0]"},
		{payload.Value{Kind: payload.KindString, Str: []byte("42")}, "(10.5,100]"},
		{payload.Value{Kind: payload.KindNumber, Num: math.NaN()}, segmentValueMissing},
		{payload.Value{Kind: payload.KindString, Str: []byte("many")}, segmentValueMissing},
		{payload.Value{Kind: payload.KindBool, Num: 1}, segmentValueMissing},
		{payload.Value{}, segmentValueMissing},
	} {
		require.Equal(t, tc.want, bucketOf(buckets, tc.v), "%+v", tc.v)
	}
}

// R² of labels with a large mean, next to their spread (prices around a
// million, Unix timestamps): two replicas each join labels 10⁸ + N(0, 1),
// one model's and another's of −10⁸ + N(0, 1), predicted with errors of
// N(0, 0.5). The shipped rules, in a real Prometheus scraping both,
// give the R² computed here exactly (math/big) to 1e-9, as they give it
// for small labels: summing y and y² lost every digit of the labels'
// variance to the mean's square.
func TestR2LargeLabelsInPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	replicas := []*Exporter{startExporter(t, up.URL, labelsOn), startExporter(t, up.URL, labelsOn)}
	rng := rand.New(rand.NewPCG(8, 1))
	want := map[string]float64{}
	for _, tc := range []struct {
		model string
		mean  float64
	}{{"ts", 1e8}, {"neg", -1e8}, {"house", 1e6}} {
		// Σy, Σy², Σe² and n, exactly.
		prec := uint(400)
		sum, sumSq, sse := new(big.Float).SetPrec(prec), new(big.Float).SetPrec(prec), new(big.Float).SetPrec(prec)
		n := 0
		for r, e := range replicas {
			var obs, lbs []string
			for i := range 500 {
				y := tc.mean + rng.NormFloat64()
				p := y + rng.NormFloat64()/2
				id := fmt.Sprintf("%s-%d-%d", tc.model, r, i)
				obs = append(obs, fmt.Sprintf(`{"model":%q,"id":%q,"prediction":%v}`, tc.model, id, p))
				lbs = append(lbs, fmt.Sprintf(`{"id":%q,"label":%v}`, id, y))
				by, bd := new(big.Float).SetPrec(prec).SetFloat64(y), new(big.Float).SetPrec(prec).SetFloat64(p)
				bd.Sub(bd, by)
				sum.Add(sum, by)
				sumSq.Add(sumSq, new(big.Float).SetPrec(prec).Mul(by, by))
				sse.Add(sse, bd.Mul(bd, bd))
				n++
			}
			pushRecordsRaw(t, e, obs...)
			_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
			require.Equal(t, slices.Repeat([]string{"matched"}, 500), resp.Results)
		}
		// SST = Σy² − (Σy)²/n, and R² = 1 − SSE/SST, in 400 bits.
		sst := new(big.Float).SetPrec(prec).Mul(sum, sum)
		sst.Quo(sst, new(big.Float).SetPrec(prec).SetInt64(int64(n)))
		sst.Sub(sumSq, sst)
		r2, _ := new(big.Float).SetPrec(prec).Sub(big.NewFloat(1), new(big.Float).SetPrec(prec).Quo(sse, sst)).Float64()
		want[fmt.Sprintf(`modelmon:r2:total{model=%q}`, tc.model)] = r2
	}
	t.Logf("R²: %v", want)
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{replicas[0].WebAddr(), replicas[1].WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	requireQueries(t, prom, 1e-9, want)
}

// A regression's labels are summed less their offset: models[].label_offset,
// else the first label joined. A process keeps the offset it sums from,
// over a reload that changes label_offset, and a restart with
// --storage.path keeps the first label's; a configured one wins at start.
func TestLabelOffsetAcrossReloadAndRestart(t *testing.T) {
	up := modelServer(t)
	storage := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	write := func(offset string) {
		require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: price\n    label_offset: "+offset+"\n"), 0o644))
	}
	write("250000")
	opts := func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true}; o.StoragePath = storage }
	e1 := startExporter(t, up.URL, opts)
	join := func(e *Exporter, model, id string, prediction, label float64) {
		t.Helper()
		pushRecordsRaw(t, e, fmt.Sprintf(`{"model":%q,"id":%q,"prediction":%v}`, model, id, prediction))
		_, resp := postLabels(t, e, fmt.Sprintf(`{"id":%q,"label":%v}`, id, label))
		require.Equal(t, []string{"matched"}, resp.Results)
	}
	sums := func(e *Exporter, model string) [4]float64 {
		t.Helper()
		m := map[string]string{"model": model}
		return [4]float64{
			metricValue(t, e, "modelmon_label_value_offset", m),
			metricValue(t, e, "modelmon_label_deviation_total", map[string]string{"model": model, "sign": "positive"}),
			metricValue(t, e, "modelmon_label_deviation_total", map[string]string{"model": model, "sign": "negative"}),
			metricValue(t, e, "modelmon_label_deviation_squared_total", m),
		}
	}
	join(e1, "price", "p1", 250001, 250010)
	join(e1, "price", "p2", 250001, 249990)
	join(e1, "free", "f1", 6, 7)
	join(e1, "free", "f2", 6, 9)
	require.Equal(t, [4]float64{250000, 10, 10, 200}, sums(e1, "price"), "the configured offset")
	require.Equal(t, [4]float64{7, 2, 0, 4}, sums(e1, "free"), "the first label")

	write("300000")
	require.NoError(t, e1.Reload())
	join(e1, "price", "p3", 250001, 250020)
	require.Equal(t, [4]float64{250000, 30, 10, 600}, sums(e1, "price"), "kept over the reload")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e1.Stop(ctx))

	e2 := startExporter(t, up.URL, opts)
	join(e2, "price", "p4", 300001, 300003)
	join(e2, "free", "f3", 6, 5)
	require.Equal(t, [4]float64{300000, 3, 0, 9}, sums(e2, "price"), "the configured offset at start")
	require.Equal(t, [4]float64{7, 0, 2, 4}, sums(e2, "free"), "the first label's, from the snapshot")
}

// Without label_offset, a model whose drift reference has a numeric
// prediction sums its labels from that prediction's mean: the same for
// every replica and every start. --drift.reference's serves every model
// without a reference of its own; a learned one is none.
func TestLabelOffsetFromDriftReference(t *testing.T) {
	dir := t.TempDir()
	train := func(name string, prices ...float64) string {
		rows := "rooms,price\n"
		for i, p := range prices {
			rows += fmt.Sprintf("%d,%v\n", i+1, p)
		}
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(rows), 0o644))
		return path
	}
	own := train("own.csv", 100, 300)
	shared := train("shared.csv", 1e6, 1e6+10, 1e6+20)
	e := startWithConfig(t, modelServer(t).URL, "models:\n  - name: own\n    drift: {reference: "+own+", prediction_column: price}\n  - name: given\n    label_offset: 5\n    drift: {reference: "+own+", prediction_column: price}\n",
		func(o *Options) {
			o.Labels = LabelsOptions{Enabled: true}
			o.Drift.Reference, o.Drift.PredictionColumn = shared, "price"
		})
	for i, m := range []string{"own", "given", "other"} {
		pushRecordsRaw(t, e, fmt.Sprintf(`{"model":%q,"id":"x%d","features":{"rooms":2},"prediction":250}`, m, i))
		_, resp := postLabels(t, e, fmt.Sprintf(`{"id":"x%d","label":260}`, i))
		require.Equal(t, []string{"matched"}, resp.Results)
	}
	for model, want := range map[string]float64{"own": 200, "given": 5, "other": 1e6 + 10} {
		require.Equal(t, want, metricValue(t, e, "modelmon_label_value_offset", map[string]string{"model": model}), model)
		require.Equal(t, (260-want)*(260-want), metricValue(t, e, "modelmon_label_deviation_squared_total", map[string]string{"model": model}), model)
	}
}

// regressionPairs are predictions and their labels whose absolute errors
// are exact in binary: 0, 0.25, 0.5, 1, 1.5 and 4.
var regressionPairs = [][2]float64{{10, 10}, {10, 10.25}, {3, 3.5}, {7, 6}, {2, 3.5}, {0, -4}}

// pushRegressionPairs pushes regressionPairs as model's predictions, under
// ids prefix0 …, and then their labels; with exact, each prediction's
// label is the prediction itself.
func pushRegressionPairs(t *testing.T, e *Exporter, model, prefix string, exact bool) {
	t.Helper()
	var obs, lbs []string
	for i, pa := range regressionPairs {
		label := pa[1]
		if exact {
			label = pa[0]
		}
		obs = append(obs, fmt.Sprintf(`{"model":%q,"id":"%s%d","prediction":%v}`, model, prefix, i, pa[0]))
		lbs = append(lbs, fmt.Sprintf(`{"id":"%s%d","label":%v}`, prefix, i, label))
	}
	pushRecordsRaw(t, e, obs...)
	_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
	require.Equal(t, slices.Repeat([]string{"matched"}, len(regressionPairs)), resp.Results)
}

// scrapeProto fetches the exposition as protobuf, the format that carries
// native histograms, and parses it with expfmt.
func scrapeProto(t *testing.T, e *Exporter) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.WebAddr()+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	fams := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); errors.Is(err, io.EOF) {
			return fams
		} else {
			require.NoError(t, err)
		}
		fams[mf.GetName()] = mf
	}
}

// nativeBuckets returns a native histogram's positive buckets by index,
// from its spans and deltas.
func nativeBuckets(h *dto.Histogram) map[int]uint64 {
	out := map[int]uint64{}
	idx, k := 0, 0
	var count int64
	for i, sp := range h.GetPositiveSpan() {
		if i == 0 {
			idx = int(sp.GetOffset())
		} else {
			idx += int(sp.GetOffset())
		}
		for range sp.GetLength() {
			count += h.GetPositiveDelta()[k]
			if count > 0 {
				out[idx] = uint64(count)
			}
			idx, k = idx+1, k+1
		}
	}
	return out
}

// The absolute error of each numeric prediction joined to its numeric
// label goes to modelmon_prediction_error_magnitude: as a native
// histogram for every model, with classic buckets only for a model that
// gives models[].error_buckets; a class joined to its class goes to none.
// Its count is the numeric pairs and its sum the absolute error counter's.
// A reload that changes a model's buckets starts its histogram again.
func TestErrorMagnitudeHistogram(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: price\n    error_buckets: [0.5, 1, 2]\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; labelsOn(o) })
	pushRegressionPairs(t, e, "price", "p", false)
	pushRegressionPairs(t, e, "plain", "q", false)
	pushRecordsRaw(t, e, `{"model":"price","id":"c","prediction":"yes"}`)
	_, resp := postLabels(t, e, `{"id":"c","label":"yes"}`)
	require.Equal(t, []string{"matched"}, resp.Results)

	// By hand, from the pairs.
	var sum float64
	classic := map[float64]uint64{0.5: 0, 1: 0, 2: 0}
	native := map[int]uint64{}
	var zero uint64
	for _, pa := range regressionPairs {
		d := math.Abs(pa[0] - pa[1])
		sum += d
		for le := range classic {
			if d <= le {
				classic[le]++
			}
		}
		if d == 0 {
			zero++
			continue
		}
		// Schema 3 (bucket factor 1.1 gives 2^(1/8)): bucket i holds
		// (2^((i-1)/8), 2^(i/8)].
		native[int(math.Ceil(math.Log2(d)*8))]++
	}
	require.Equal(t, 7.25, sum)
	require.Equal(t, map[float64]uint64{0.5: 3, 1: 4, 2: 5}, classic)

	fams := scrapeProto(t, e)
	mf := fams[collector.PredictionErrorMagnitude]
	require.NotNil(t, mf)
	require.Equal(t, dto.MetricType_HISTOGRAM, mf.GetType())
	byModel := map[string]*dto.Histogram{}
	for _, m := range mf.GetMetric() {
		require.Len(t, m.GetLabel(), 1)
		require.Equal(t, "model", m.GetLabel()[0].GetName())
		byModel[m.GetLabel()[0].GetValue()] = m.GetHistogram()
	}
	require.Len(t, byModel, 2, "one histogram per model that predicts numbers")
	for model, h := range byModel {
		require.Equal(t, uint64(len(regressionPairs)), h.GetSampleCount(), model)
		require.Equal(t, sum, h.GetSampleSum(), model)
		require.Equal(t, sum, metricValue(t, e, collector.AbsoluteErrorTotal, map[string]string{"model": model}), model)
		require.Equal(t, int32(3), h.GetSchema(), model)
		require.Equal(t, zero, h.GetZeroCount(), model)
		require.Equal(t, native, nativeBuckets(h), model)
	}
	got := map[float64]uint64{}
	for _, b := range byModel["price"].GetBucket() {
		got[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	require.Equal(t, classic, got, "price's own buckets")
	require.Empty(t, byModel["plain"].GetBucket(), "no classic buckets without error_buckets")

	// The text format has the classic buckets alone: price's, and plain's
	// +Inf.
	text := joinFamilies(scrape(t, e, collector.PredictionErrorMagnitude))
	require.Contains(t, text, `modelmon_prediction_error_magnitude_bucket{model="price",le="1"} 4`+"\n")
	require.Contains(t, text, `modelmon_prediction_error_magnitude_bucket{model="plain",le="+Inf"} 6`+"\n")
	require.NotContains(t, text, `modelmon_prediction_error_magnitude_bucket{model="plain",le="1"}`)

	// Without its buckets, price's histogram starts again, native alone.
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: price\n"), 0o644))
	require.NoError(t, e.Reload())
	pushRecordsRaw(t, e, `{"model":"price","id":"r","prediction":1}`)
	_, resp = postLabels(t, e, `{"id":"r","label":3}`)
	require.Equal(t, []string{"matched"}, resp.Results)
	for _, m := range scrapeProto(t, e)[collector.PredictionErrorMagnitude].GetMetric() {
		if m.GetLabel()[0].GetValue() == "price" {
			require.Equal(t, uint64(1), m.GetHistogram().GetSampleCount())
			require.Empty(t, m.GetHistogram().GetBucket())
			require.Equal(t, map[int]uint64{8: 1}, nativeBuckets(m.GetHistogram()), "2 = 2^(8/8)")
		}
	}
}

// Each numeric prediction's absolute error also goes to
// modelmon_segment_prediction_error_magnitude, by each segment value of
// the prediction, with the model's buckets: native for every model,
// classic only with models[].error_buckets. Its count and sum per value are
// the segment's numeric pairs and absolute error counter; a class joined to
// its class goes to none; the values are capped as the other segment
// metrics' are (20, then __other__); a reload that changes the model's
// buckets starts all its values' histograms again.
func TestSegmentErrorMagnitudeHistogram(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: price
    segments: [device]
    error_buckets: [0.5, 1, 2]
  - name: plain
    segments: [device]
`), 0o644))
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.ConfigFile = cfg; labelsOn(o) })
	// The first three pairs on the app, the others on the web.
	device := func(i int) string { return []string{"app", "web"}[i/3] }
	for _, model := range []string{"price", "plain"} {
		var obs, lbs []string
		for i, pa := range regressionPairs {
			obs = append(obs, fmt.Sprintf(`{"model":%q,"id":"%s%d","features":{"device":%q},"prediction":%v}`, model, model, i, device(i), pa[0]))
			lbs = append(lbs, fmt.Sprintf(`{"id":"%s%d","label":%v}`, model, i, pa[1]))
		}
		obs = append(obs, fmt.Sprintf(`{"model":%q,"id":"%sc","features":{"device":"kiosk"},"prediction":"yes"}`, model, model))
		lbs = append(lbs, fmt.Sprintf(`{"id":"%sc","label":"yes"}`, model))
		pushRecordsRaw(t, e, obs...)
		_, resp := postLabels(t, e, strings.Join(lbs, "\n"))
		require.Equal(t, slices.Repeat([]string{"matched"}, len(regressionPairs)+1), resp.Results)
	}

	// By hand, from the pairs, per device.
	type want struct {
		count   uint64
		sum     float64
		zero    uint64
		native  map[int]uint64
		classic map[float64]uint64
	}
	byDevice := map[string]*want{}
	for i, pa := range regressionPairs {
		w := byDevice[device(i)]
		if w == nil {
			w = &want{native: map[int]uint64{}, classic: map[float64]uint64{0.5: 0, 1: 0, 2: 0}}
			byDevice[device(i)] = w
		}
		d := math.Abs(pa[0] - pa[1])
		w.count++
		w.sum += d
		for le := range w.classic {
			if d <= le {
				w.classic[le]++
			}
		}
		if d == 0 {
			w.zero++
			continue
		}
		w.native[int(math.Ceil(math.Log2(d)*8))]++ // schema 3
	}
	require.Equal(t, map[float64]uint64{0.5: 3, 1: 3, 2: 3}, byDevice["app"].classic)
	require.Equal(t, map[float64]uint64{0.5: 0, 1: 1, 2: 2}, byDevice["web"].classic)

	histograms := func() map[string]*dto.Histogram {
		mf := scrapeProto(t, e)[collector.SegmentErrorMagnitude]
		require.NotNil(t, mf)
		require.Equal(t, dto.MetricType_HISTOGRAM, mf.GetType())
		out := map[string]*dto.Histogram{}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			require.Len(t, l, 3)
			require.Equal(t, "device", l["segment"])
			out[l["model"]+" "+l["segment_value"]] = m.GetHistogram()
		}
		return out
	}
	got := histograms()
	require.Len(t, got, 4, "app and web of both models, no kiosk: it joined a class")
	for _, model := range []string{"price", "plain"} {
		for dev, w := range byDevice {
			h := got[model+" "+dev]
			require.NotNil(t, h, "%s %s", model, dev)
			require.Equal(t, w.count, h.GetSampleCount(), "%s %s", model, dev)
			require.Equal(t, w.sum, h.GetSampleSum(), "%s %s", model, dev)
			labels := map[string]string{"model": model, "segment": "device", "segment_value": dev}
			require.Equal(t, w.sum, metricValue(t, e, collector.SegmentAbsoluteError, labels), "%s %s", model, dev)
			require.Equal(t, float64(w.count), metricValue(t, e, collector.SegmentRegOutcomes, labels), "%s %s", model, dev)
			require.Equal(t, int32(3), h.GetSchema())
			require.Equal(t, w.zero, h.GetZeroCount(), "%s %s", model, dev)
			require.Equal(t, w.native, nativeBuckets(h), "%s %s", model, dev)
			classic := map[float64]uint64{}
			for _, b := range h.GetBucket() {
				classic[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			if model == "price" {
				require.Equal(t, w.classic, classic, "price's own buckets, %s", dev)
			} else {
				require.Empty(t, classic, "no classic buckets without error_buckets")
			}
		}
	}
	// The text format has the classic buckets alone: price's, and plain's
	// +Inf.
	text := joinFamilies(scrape(t, e, collector.SegmentErrorMagnitude))
	require.Contains(t, text, `modelmon_segment_prediction_error_magnitude_bucket{model="price",segment="device",segment_value="web",le="1"} 1`+"\n")
	require.Contains(t, text, `modelmon_segment_prediction_error_magnitude_bucket{model="plain",segment="device",segment_value="web",le="+Inf"} 3`+"\n")
	require.NotContains(t, text, `modelmon_segment_prediction_error_magnitude_bucket{model="plain",segment="device",segment_value="web",le="1"}`)

	// Values beyond the cap (20) are __other__: plain has app, web and
	// kiosk, and 17 more of 25 new ones; the last 8 are __other__.
	var obs, lbs []string
	for i := range 25 {
		obs = append(obs, fmt.Sprintf(`{"model":"plain","id":"q%d","features":{"device":"d%d"},"prediction":1}`, i, i))
		lbs = append(lbs, fmt.Sprintf(`{"id":"q%d","label":3}`, i))
	}
	pushRecordsRaw(t, e, obs...)
	postLabels(t, e, strings.Join(lbs, "\n"))
	got = histograms()
	plain := 0
	for k := range got {
		if strings.HasPrefix(k, "plain ") {
			plain++
		}
	}
	require.Equal(t, 20, plain, "19 values that joined a number, kiosk's class aside, and __other__")
	require.Equal(t, uint64(8), got["plain __other__"].GetSampleCount())
	require.Equal(t, 16.0, got["plain __other__"].GetSampleSum())

	// Without its buckets, each of price's histograms starts again, native
	// alone.
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: price\n    segments: [device]\n  - name: plain\n    segments: [device]\n"), 0o644))
	require.NoError(t, e.Reload())
	pushRecordsRaw(t, e, `{"model":"price","id":"r","features":{"device":"app"},"prediction":1}`)
	_, resp := postLabels(t, e, `{"id":"r","label":3}`)
	require.Equal(t, []string{"matched"}, resp.Results)
	got = histograms()
	require.Equal(t, uint64(1), got["price app"].GetSampleCount())
	require.Empty(t, got["price app"].GetBucket())
	require.Equal(t, map[int]uint64{8: 1}, nativeBuckets(got["price app"]), "2 = 2^(8/8)")
	require.NotContains(t, got, "price web", "gone with the buckets, until its next label")
	require.Equal(t, uint64(3), got["plain web"].GetSampleCount(), "plain's kept")
}

// The regression SLO's error ratio, in a real Prometheus scraping the
// sidecar, evaluating the rules `exporter alerts` writes: the share of
// labelled numeric predictions off by more than the threshold. A
// Prometheus that keeps native histograms takes it from
// histogram_fraction for every model, and gives a model whose every
// prediction is exact 0; one that does not reads the classic bucket of a
// model that has error_buckets, and has none for a model without.
func TestRegressionSLOInPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	yml := `models:
  - name: price
    error_buckets: [0.5, 1, 2]
    slos: {regression: 0.9, regression_threshold: 1}
  - name: plain
    slos: {regression: 0.9, regression_threshold: 1}
  - name: exact
    slos: {regression: 0.9, regression_threshold: 1}
`
	e := startWithConfig(t, up.URL, yml, labelsOn)
	cfg, err := config.Load(yml)
	require.NoError(t, err)
	alerts, err := driftcli.QualityAlerts(cfg)
	require.NoError(t, err)
	ruleFile := filepath.Join(t.TempDir(), "slo.rules.yml")
	require.NoError(t, os.WriteFile(ruleFile, alerts, 0o644))

	// A first round, which the windows' first samples hold, then a second
	// alike, which rate() sees.
	push := func(round string) {
		pushRegressionPairs(t, e, "price", "p"+round, false)
		pushRegressionPairs(t, e, "plain", "q"+round, false)
		pushRegressionPairs(t, e, "exact", "x"+round, true)
	}
	push("a")
	native := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{ruleFile}, NativeHistograms: true})
	classic := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{ruleFile}})
	n := float64(len(regressionPairs))
	native.WaitFor(t, `histogram_count(modelmon_prediction_error_magnitude{model="plain"})`, n, 30*time.Second)
	classic.WaitFor(t, `modelmon_prediction_error_magnitude_count{model="price"}`, n, 30*time.Second)
	push("b")

	// By hand: the pairs off by more than 1.
	var bad float64
	for _, pa := range regressionPairs {
		if math.Abs(pa[0]-pa[1]) > 1 {
			bad++
		}
	}
	require.Equal(t, 2.0, bad)
	ratio := bad / n
	const budget = 1 - 0.9
	requireQueries(t, native, 1e-12, map[string]float64{
		`modelmon:slo_error_ratio:rate5m{model="price",slo="regression"}`:           ratio,
		`modelmon:slo_error_ratio:rate5m{model="plain",slo="regression"}`:           ratio,
		`modelmon:slo_error_ratio:rate5m{model="exact",slo="regression"}`:           0,
		`modelmon:slo_error_budget_remaining:ratio{model="price",slo="regression"}`: 1 - ratio/budget,
	})
	requireQueries(t, classic, 1e-12, map[string]float64{
		`modelmon:slo_error_ratio:rate5m{model="price",slo="regression"}`: ratio,
	})
	got, err := classic.Query(`modelmon:slo_error_ratio:rate5m{model=~"plain|exact"}`)
	require.NoError(t, err)
	require.Empty(t, got, "without classic buckets nor native histograms there is nothing to read")
}
