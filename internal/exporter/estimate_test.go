package exporter

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/quality"
)

// Accuracy is estimated without labels from the predictions' confidence
// and the calibration the labels have shown, as NannyML's CBPE does. A
// calibrated model (right with the probability it gives) makes 3,000
// predictions with confidence uniform in [0.5, 1], all labelled, then
// 3,000 on harder inputs, uniform in [0.5, 0.8], whose labels have not
// come. The labels' accuracy is the first part's; the estimate, in a real
// Prometheus from the shipped recording rules, is the accuracy of all
// 6,000, within sampling error.
func TestEstimatedAccuracy(t *testing.T) {
	e := startExporter(t, modelServer(t).URL, labelsOn)
	r := rand.New(rand.NewPCG(11, 12))
	var bins, labelled, right [quality.DefaultConfidenceBins]float64
	var correct, correctLabelled float64
	const n = 3000
	for phase, top := range []float64{1, 0.8} {
		var obs, lbs []string
		for i := range n {
			c := 0.5 + r.Float64()*(top-0.5)
			pred, other := "yes", "no"
			if r.IntN(2) == 0 {
				pred, other = other, pred
			}
			label := other
			if r.Float64() < c {
				label = pred
				correct++
			}
			id := fmt.Sprintf("p%d-%d", phase, i)
			obs = append(obs, fmt.Sprintf(`{"model":"churn","id":%q,"prediction":{"label":%q,"score":%v}}`, id, pred, c))
			b := quality.ConfidenceBin(c, quality.DefaultConfidenceBins)
			bins[b]++
			if phase == 0 {
				lbs = append(lbs, fmt.Sprintf(`{"id":%q,"label":%q}`, id, label))
				labelled[b]++
				if label == pred {
					right[b]++
					correctLabelled++
				}
			}
		}
		pushRecordsRaw(t, e, obs...)
		if len(lbs) > 0 {
			st, _ := postLabels(t, e, strings.Join(lbs, "\n"))
			require.Equal(t, 200, st)
		}
	}
	// The rule, worked here: each bin's predictions at the accuracy the
	// labels showed in it.
	var est float64
	for b := range bins {
		if labelled[b] > 0 {
			est += bins[b] * right[b] / labelled[b]
		}
	}
	est /= 2 * n
	truth, realized := correct/(2*n), correctLabelled/n
	t.Logf("accuracy: all %.4f, estimated %.4f, labelled %.4f", truth, est, realized)
	require.InDelta(t, truth, est, 0.02, "the estimate is the accuracy of all predictions")
	require.Greater(t, realized-truth, 0.04, "the labels alone overstate it")

	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{e.WebAddr()}, RuleFiles: []string{"../../deploy/prometheus/quality.rules.yml"}})
	requireQueries(t, prom, 1e-9, map[string]float64{
		`modelmon:estimated_accuracy:total{model="churn"}`:          est,
		`modelmon:estimated_accuracy_coverage:total{model="churn"}`: 1,
		`modelmon:accuracy:total{model="churn"}`:                    realized,
	})
}
