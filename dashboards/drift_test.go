package dashboards

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// driftVariables are the values the data drift dashboard's variables take
// in TestDriftDashboardPrediction: every model and version, the 5m window.
var driftVariables = map[string]string{
	"namespace": ".*", "job": "modelmon", "model": ".*", "version": ".*",
	"window": "5m", "feature": ".*", "__rate_interval": "1m",
}

// observations returns n pushed observations of model, as a JSON array:
// amount from..from+99 in turn, country DE and FR in turn, and the
// prediction of each, pred(i).
func observations(model string, n, from int, pred func(i int) float64) string {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"model":%q,"features":{"amount":%d,"country":%q},"prediction":%g}`,
			model, from+i%100, []string{"DE", "FR"}[i%2], pred(i))
	}
	b.WriteString("]")
	return b.String()
}

// writeFraudTraining writes fraud's training data into dir, 1,000 rows of
// amount 100..199, country DE and FR and score 0..0.9, each in turn, and a
// configuration whose model fraud takes its drift reference from it, score
// being the prediction. more is YAML that follows fraud's drift key: more
// of fraud's keys, more models. It returns the configuration's path.
func writeFraudTraining(t *testing.T, dir, more string) string {
	t.Helper()
	var train strings.Builder
	train.WriteString("amount,country,score\n")
	for i := range 1000 {
		fmt.Fprintf(&train, "%d,%s,%g\n", 100+i%100, []string{"DE", "FR"}[i%2], float64(i%10)/10)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fraud.csv"), []byte(train.String()), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: fraud
    drift: {reference: fraud.csv, prediction_column: score}
`+more), 0o644))
	return cfg
}

// driftPanel returns a function that evaluates the first query of the data
// drift dashboard's panel titled title (its query of refID ref for
// "title#ref") under prom, with driftVariables, and returns each series'
// value by its labels named by, joined by "/".
func driftPanel(t *testing.T, prom *prometheustest.Server) func(title string, by ...string) map[string]float64 {
	queries := dashboardQueries(t)
	return func(title string, by ...string) map[string]float64 {
		t.Helper()
		var expr string
		where := fmt.Sprintf("panel %q ", title)
		if title, ref, ok := strings.Cut(title, "#"); ok {
			where = fmt.Sprintf("panel %q (%s)", title, ref)
		}
		for _, q := range queries {
			if q.dashboard == "data-drift.json" && strings.HasPrefix(q.where, where) {
				expr = q.expr
				break
			}
		}
		require.NotEmpty(t, expr, "no panel %q", title)
		expr = variableRE.ReplaceAllStringFunc(expr, func(m string) string {
			sub := variableRE.FindStringSubmatch(m)
			v, ok := driftVariables[sub[1]+sub[2]]
			require.True(t, ok, "%s: no value for %s", title, m)
			return v
		})
		samples, err := prom.Query(expr)
		require.NoError(t, err)
		out := map[string]float64{}
		for _, s := range samples {
			var key []string
			for _, l := range by {
				key = append(key, s.Metric[l])
			}
			out[strings.Join(key, "/")] = s.Value
		}
		return out
	}
}

// The data drift dashboard finds the prediction by the role label of
// modelmon_feature_reference_info, whatever its name: a reference from
// training data names it after its column (score), a learned one
// __prediction__. Under a real Prometheus scraping a real sidecar whose
// models' amount and prediction drifted and country did not, the
// prediction's panel shows both models' prediction, and the panels of the
// inputs leave it out: one drifted feature each, not two.
func TestDriftDashboardPrediction(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the exporter under Prometheus")
	}
	prometheustest.Binary(t)
	bin, err := buildBinaries()
	require.NoError(t, err)

	// fraud's traffic has amount and the prediction shifted, country as
	// in training. learned learns its reference from its first 100
	// records, alike, then gets the same shift.
	cfg := writeFraudTraining(t, t.TempDir(), `    feature_importance: {amount: 1, country: 0.5}
  - name: learned
`)
	proxy, web := freeAddr(t), freeAddr(t)
	start(t, filepath.Join(bin, "exporter"), web, "--config.file="+cfg,
		"--proxy.upstream=http://"+freeAddr(t), "--proxy.listen-address="+proxy, "--web.listen-address="+web,
		"--drift.learn-samples=100", "--drift.min-samples=50")
	inTraining := func(i int) float64 { return float64(i%10) / 10 }
	shifted := func(int) float64 { return 0.9 }
	for _, body := range []string{
		observations("learned", 100, 100, inTraining),
		observations("fraud", 200, 500, shifted),
		observations("learned", 200, 500, shifted),
	} {
		require.Equal(t, 200, post(t, "http://"+web+"/v1/observations", "application/json", body))
	}

	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{web}})
	panel := driftPanel(t, prom)
	keys := func(m map[string]float64) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}

	// The sidecar scores at scrape time: wait until every model's amount
	// drifted in what Prometheus scraped.
	require.Eventually(t, func() bool {
		v, err := prom.Query(`max by (model) (modelmon_feature_drifted{feature="amount", window="5m"}) == 1`)
		return err == nil && len(v) == 2
	}, 60*time.Second, 200*time.Millisecond, "amount did not drift in Prometheus")

	prediction := panel("Prediction drift (PSI)", "model", "feature")
	require.Equal(t, []string{"fraud/score", "learned/__prediction__"}, keys(prediction))
	for k, v := range prediction {
		require.Greater(t, v, 0.2, k)
	}
	require.Equal(t, map[string]float64{"fraud": 1, "learned": 1}, panel("Drifted features", "model"),
		"amount drifted, country did not, and the prediction is no input")
	require.Equal(t, []string{"fraud/amount", "fraud/country", "learned/amount", "learned/country"},
		keys(panel("Top drifting features", "model", "feature")))
	require.Equal(t, []string{"fraud/amount", "fraud/country"}, keys(panel("Drift impact", "model", "feature")))
	// Panels of every feature keep the prediction.
	require.Equal(t, []string{"fraud/amount", "fraud/country", "fraud/score", "learned/__prediction__", "learned/amount", "learned/country"},
		keys(panel("Feature drift (PSI)", "model", "feature")))
}

// The model-level decision's panels aggregate it over the replicas as
// ModelDrift does, whatever the correction each takes. Under a real
// Prometheus scraping two real sidecars of fraud in the middle of a rollout
// that changes drift.correction, one whose traffic moved amount (new, fdr)
// and one whose traffic is as in training (old, bonferroni), half the
// replicas find the model drifted, not all of the fdr ones and none of the
// bonferroni ones; the corrections are counted beside the reference. Each
// tests K = 2 features (amount and country, the prediction left out):
// Bonferroni's threshold is 0.05/2, and Benjamini–Hochberg's with one
// p-value below its cut-off 0.05·1/2.
func TestDriftDashboardModel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the exporter under Prometheus")
	}
	prometheustest.Binary(t)
	bin, err := buildBinaries()
	require.NoError(t, err)

	var webs []string
	for _, r := range []struct{ correction, body string }{
		{"fdr", observations("fraud", 200, 500, func(int) float64 { return 0.9 })},
		{"bonferroni", observations("fraud", 200, 100, func(i int) float64 { return float64(i%10) / 10 })},
	} {
		cfg := writeFraudTraining(t, t.TempDir(), "drift: {correction: "+r.correction+"}\n")
		proxy, web := freeAddr(t), freeAddr(t)
		start(t, filepath.Join(bin, "exporter"), web, "--config.file="+cfg,
			"--proxy.upstream=http://"+freeAddr(t), "--proxy.listen-address="+proxy, "--web.listen-address="+web,
			"--drift.min-samples=50")
		require.Equal(t, 200, post(t, "http://"+web+"/v1/observations", "application/json", r.body))
		webs = append(webs, web)
	}

	prom := prometheustest.Start(t, prometheustest.Options{Targets: webs})
	require.Eventually(t, func() bool {
		v, err := prom.Query(`count(modelmon_model_drifted{window="5m"})`)
		return err == nil && len(v) == 1 && v[0].Value == 2
	}, 60*time.Second, 200*time.Millisecond, "Prometheus did not scrape both replicas' decisions")

	panel := driftPanel(t, prom)
	require.Equal(t, map[string]float64{"fraud/5m": 0.5}, panel("Model drifted", "model", "window"), "one replica of two")
	threshold := panel("Model drift threshold", "model", "window")
	require.Len(t, threshold, 1)
	require.InEpsilon(t, 0.05/2, threshold["fraud/5m"], 1e-12)
	require.Equal(t, map[string]float64{"fraud/5m": 2}, panel("Features tested", "model", "window"))
	require.Equal(t, map[string]float64{"fraud": 0.25}, panel("Dataset drift share", "model"),
		"one input of two drifted on one replica: a share of 1/2 there, 0 on the other")
	require.Equal(t, map[string]float64{"fraud/bonferroni": 1, "fraud/fdr": 1}, panel("Reference#B", "model", "correction"),
		"one replica of each correction")
}
