package quality

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConfusionMatrix joins a known confusion matrix and checks that accuracy,
// precision, recall and F1 computed from the outcome counts, as the recording
// rules do from modelmon_prediction_outcome_total, are the hand-computed ones.
func TestConfusionMatrix(t *testing.T) {
	// predicted → actual → count: TP 3, FP 1, FN 2, TN 4.
	matrix := map[string]map[string]int{
		"fraud": {"fraud": 3, "ok": 1},
		"ok":    {"fraud": 2, "ok": 4},
	}
	s := newStore(t, Options{})
	// The outcome counter, as the caller keeps it.
	count := map[[2]string]float64{}
	// The classes in the order the store first sees them.
	var seen []string
	index := func(c string) int {
		if !slices.Contains(seen, c) {
			seen = append(seen, c)
		}
		return slices.Index(seen, c)
	}
	n := 0
	for p, row := range matrix {
		for a, k := range row {
			for range k {
				id := fmt.Sprint(n)
				n++
				s.Observe(t0, pred(id, "m", p))
				pi := index(p)
				o, r := s.Label(t0.Add(90*time.Second), Label{ID: id, Model: "m", Value: Class(a)})
				require.Equal(t, ReasonMatched, r)
				require.Equal(t, Outcome{ID: id, Model: "m", Predicted: p, Actual: a, PredictedIndex: pi, ActualIndex: index(a), ActualClass: a, Correct: p == a, Delay: 90 * time.Second}, o)
				count[[2]string{o.Predicted, o.Actual}]++
			}
		}
	}
	tp, fp, fn, tn := count[[2]string{"fraud", "fraud"}], count[[2]string{"fraud", "ok"}], count[[2]string{"ok", "fraud"}], count[[2]string{"ok", "ok"}]
	accuracy := (tp + tn) / (tp + fp + fn + tn)
	precision := tp / (tp + fp)
	recall := tp / (tp + fn)
	f1 := 2 * precision * recall / (precision + recall)
	require.InDelta(t, 0.7, accuracy, 1e-12)
	require.InDelta(t, 0.75, precision, 1e-12)
	require.InDelta(t, 0.6, recall, 1e-12)
	require.InDelta(t, 2.0/3, f1, 1e-12)
	require.Equal(t, uint64(10), s.Stats().Labels[ReasonMatched])
}

// TestRegression checks MAE and RMSE from the error sums against
// scikit-learn's documented example (MAE 0.5, MSE 0.375).
func TestRegression(t *testing.T) {
	s := newStore(t, Options{})
	predicted := []float64{3, -0.5, 2, 7}
	actual := []float64{2.5, 0, 2, 8}
	var abs, sq float64
	for i := range predicted {
		id := fmt.Sprint(i)
		s.Observe(t0, Prediction{ID: id, Model: "r", Value: Number(predicted[i])})
		o, r := s.Label(t0, Label{ID: id, Value: Number(actual[i])})
		require.Equal(t, ReasonMatched, r)
		require.True(t, o.Regression)
		require.Equal(t, predicted[i], o.PredictedValue)
		require.Equal(t, actual[i], o.ActualValue)
		abs += o.AbsError
		sq += o.SquaredError
	}
	require.InDelta(t, 0.5, abs/4, 1e-12)
	require.InDelta(t, math.Sqrt(0.375), math.Sqrt(sq/4), 1e-12)
}

// TestProbabilities checks the Brier score and log loss against
// scikit-learn's log_loss example (0.21616…) and the hand-computed Brier
// score Σₖ (pₖ − yₖ)² of the same rows: 0.02, 0.02, 0.08, 0.245.
func TestProbabilities(t *testing.T) {
	s := newStore(t, Options{})
	classes := []string{"ham", "spam"}
	rows := []struct {
		actual string
		probs  []float64
		brier  float64
	}{
		{"spam", []float64{0.1, 0.9}, 0.02},
		{"ham", []float64{0.9, 0.1}, 0.02},
		{"ham", []float64{0.8, 0.2}, 0.08},
		{"spam", []float64{0.35, 0.65}, 0.245},
	}
	var brier, logLoss float64
	for i, row := range rows {
		id := fmt.Sprint(i)
		predicted := classes[0]
		if row.probs[1] > row.probs[0] {
			predicted = classes[1]
		}
		s.Observe(t0, Prediction{ID: id, Model: "m", Value: Class(predicted), Probabilities: row.probs, Classes: classes})
		o, r := s.Label(t0, Label{ID: id, Value: Class(row.actual)})
		require.Equal(t, ReasonMatched, r)
		require.True(t, o.HasProbabilities)
		require.InDelta(t, row.brier, o.Brier, 1e-12)
		require.True(t, o.HasConfidence)
		require.Equal(t, max(row.probs[0], row.probs[1]), o.Confidence, "the probability of the class predicted")
		require.Equal(t, predicted == row.actual, o.Correct)
		brier += o.Brier
		logLoss += o.LogLoss
	}
	require.InDelta(t, 0.365/4, brier/4, 1e-12)
	require.InDelta(t, 0.21616187468057912, logLoss/4, 1e-12)
}

// A prediction's confidence is the probability it gave the class it
// predicted, even when that is not the most probable one (a threshold);
// a predicted class its probabilities do not list has none.
func TestConfidence(t *testing.T) {
	s := newStore(t, Options{})
	classes := []string{"ham", "spam"}
	s.Observe(t0, Prediction{ID: "a", Model: "m", Value: Class("spam"), Probabilities: []float64{0.7, 0.3}, Classes: classes})
	s.Observe(t0, Prediction{ID: "b", Model: "m", Value: Class("eggs"), Probabilities: []float64{0.7, 0.3}, Classes: classes})
	s.Observe(t0, Prediction{ID: "c", Model: "m", Value: Class("spam")})
	o, _ := s.Label(t0, Label{ID: "a", Value: Class("ham")})
	require.True(t, o.HasConfidence)
	require.Equal(t, 0.3, o.Confidence)
	require.False(t, o.Correct)
	o, _ = s.Label(t0, Label{ID: "b", Value: Class("eggs")})
	require.True(t, o.HasProbabilities)
	require.False(t, o.HasConfidence)
	o, _ = s.Label(t0, Label{ID: "c", Value: Class("spam")})
	require.False(t, o.HasConfidence, "no probabilities")
}

// A class prediction that gives only its own class's probability ({"label":
// …, "score": …}) has that confidence, kept to within 1/65535, and no
// probabilities.
func TestConfidenceAlone(t *testing.T) {
	s := newStore(t, Options{})
	s.Observe(t0, Prediction{ID: "a", Model: "m", Value: Class("POSITIVE"), Confidence: 0.98, HasConfidence: true})
	s.Observe(t0, Prediction{ID: "b", Model: "m", Value: Class("NEGATIVE"), Confidence: 1, HasConfidence: true})
	o, r := s.Label(t0, Label{ID: "a", Value: Class("POSITIVE")})
	require.Equal(t, ReasonMatched, r)
	require.True(t, o.HasConfidence)
	require.False(t, o.HasProbabilities)
	require.InDelta(t, 0.98, o.Confidence, 1.0/65535/2)
	require.True(t, o.Correct)
	o, _ = s.Label(t0, Label{ID: "b", Value: Class("POSITIVE")})
	require.Equal(t, 1.0, o.Confidence)
	require.False(t, o.Correct)

	for _, p := range []Prediction{
		{ID: "c", Model: "m", Value: Class("x"), Confidence: 1.5, HasConfidence: true},
		{ID: "d", Model: "m", Value: Class("x"), Confidence: math.NaN(), HasConfidence: true},
		{ID: "e", Model: "m", Value: Number(3), Confidence: 0.5, HasConfidence: true},
	} {
		_, r := s.Observe(t0, p)
		require.Equal(t, ReasonInvalidPrediction, r, p.ID)
	}
}

// Bins take their upper edge, as scikit-learn's calibration_curve does
// (np.searchsorted on the inner edges): 0.3, which 10 × 0.3 puts just
// above 3, is in bin 2.
func TestConfidenceBin(t *testing.T) {
	for p, want := range map[float64]int{0: 0, 0.05: 0, 0.1: 0, 0.10000001: 1, 0.3: 2, 0.55: 5, 0.6: 5, 0.7: 6, 0.9: 8, 0.95: 9, 1: 9} {
		require.Equal(t, want, ConfidenceBin(p, 10), "p=%v", p)
	}
	// Fifteen bins of 1/15: 2/15 closes bin 1, and 0.2 = 3/15 bin 2.
	for p, want := range map[float64]int{0: 0, 1.0 / 15: 0, 0.07: 1, 2.0 / 15: 1, 0.2: 2, 0.5: 7, 14.0 / 15: 13, 0.94: 14, 1: 14} {
		require.Equal(t, want, ConfidenceBin(p, 15), "p=%v", p)
	}
}

// ConfidenceBin is the bin whose edges, k/bins and (k+1)/bins as float64
// computes them, hold p, for any number of bins: at the edges, and a
// float64 either side of them, where p·bins rounds the other way.
func TestConfidenceBinEdges(t *testing.T) {
	slow := func(p float64, bins int) int {
		k := 0
		for k < bins-1 && p > float64(k+1)/float64(bins) {
			k++
		}
		return k
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for bins := 1; bins <= 100; bins++ {
		ps := []float64{0, 1, -0.5, 1.5, math.Inf(1), math.Inf(-1), math.NaN()}
		for k := 0; k <= bins; k++ {
			edge := float64(k) / float64(bins)
			ps = append(ps, edge, math.Nextafter(edge, 2), math.Nextafter(edge, -1))
		}
		for range 100 {
			ps = append(ps, rng.Float64())
		}
		for _, p := range ps {
			require.Equal(t, slow(p, bins), ConfidenceBin(p, bins), "p=%v bins=%d", p, bins)
		}
	}
}

// A numeric label for a prediction with class probabilities is the index
// of its class; any other number stays a mismatch.
func TestNumericLabelIndexesClasses(t *testing.T) {
	s := newStore(t, Options{})
	classes := []string{"legit", "fraud"}
	for _, id := range []string{"a", "b", "c", "d"} {
		s.Observe(t0, Prediction{ID: id, Model: "m", Value: Class("fraud"), Probabilities: []float64{0.1, 0.9}, Classes: classes})
	}
	s.Observe(t0, Prediction{ID: "e", Model: "m", Value: Class("fraud")})
	o, r := s.Label(t0, Label{ID: "a", Value: Number(1)})
	require.Equal(t, ReasonMatched, r)
	require.Equal(t, "fraud", o.Actual)
	require.True(t, o.Correct)
	o, r = s.Label(t0, Label{ID: "b", Value: Number(0)})
	require.Equal(t, ReasonMatched, r)
	require.Equal(t, "legit", o.Actual)
	require.InDelta(t, -math.Log(0.1), o.LogLoss, 1e-12)
	for id, x := range map[string]float64{"c": 2, "d": 0.5, "e": 1} {
		_, r = s.Label(t0, Label{ID: id, Value: Number(x)})
		require.Equal(t, ReasonInvalid, r, "%s: %v", id, x)
	}
}

func TestScoreProbabilitiesClipping(t *testing.T) {
	for _, tc := range []struct {
		name           string
		probs          []float64
		actual         string
		brier, logLoss float64
	}{
		{"certain and right", []float64{1, 0}, "a", 0, -math.Log(1 - 1e-15)},
		{"certain and wrong", []float64{1, 0}, "b", 2, -math.Log(1e-15)},
		{"actual not listed", []float64{0.5, 0.5}, "c", 1.5, -math.Log(1e-15)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brier, logLoss := scoreProbabilities(tc.probs, []string{"a", "b"}, tc.actual)
			require.InDelta(t, tc.brier, brier, 1e-12)
			require.InDelta(t, tc.logLoss, logLoss, 1e-18)
			require.False(t, math.IsInf(logLoss, 0))
		})
	}
}

func TestProbabilityClassListsBounded(t *testing.T) {
	s := newStore(t, Options{})
	for i := range maxClassSets + 2 {
		s.Observe(t0, Prediction{ID: fmt.Sprint(i), Model: "m", Value: Class("a"), Probabilities: []float64{1}, Classes: []string{fmt.Sprint("a", i)}})
	}
	require.Equal(t, uint64(2), s.Stats().ProbabilitiesDropped)
	o, r := s.Label(t0, Label{ID: fmt.Sprint(maxClassSets + 1), Value: Class("a")})
	require.Equal(t, ReasonMatched, r)
	require.False(t, o.HasProbabilities)
}

// The sampling error behind config.DefaultMinCalibrationSamples: a
// perfectly calibrated model (right with the probability it gives), with
// confidences uniform in [0.5, 1], binned by ConfidenceBin. Over 1,000
// predictions its expected calibration error stays small; over 100 it
// often passes 0.1 by chance, which is why the alert waits for 1,000.
func TestCalibrationErrorSamplingNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	ece := func(n int) float64 {
		var count, right, conf [DefaultConfidenceBins]float64
		for range n {
			c := 0.5 + rng.Float64()/2
			k := ConfidenceBin(c, DefaultConfidenceBins)
			count[k]++
			conf[k] += c
			if rng.Float64() < c {
				right[k]++
			}
		}
		e := 0.0
		for k := range count {
			e += math.Abs(right[k] - conf[k])
		}
		return e / float64(n)
	}
	const trials = 1000
	var big, small []float64
	for range trials {
		big = append(big, ece(1000))
		small = append(small, ece(100))
	}
	slices.Sort(big)
	mean := 0.0
	for _, x := range big {
		mean += x / trials
	}
	require.InDelta(t, 0.022, mean, 0.004, "mean over 1,000")
	require.Less(t, big[trials*95/100], 0.045, "95th percentile over 1,000")
	require.Less(t, big[trials-1], 0.1, "never 0.1 over 1,000")
	over := 0
	for _, x := range small {
		if x > 0.1 {
			over++
		}
	}
	require.InDelta(t, 0.11, float64(over)/trials, 0.04, "share above 0.1 over 100")
}

// Segments come back with their outcome, a class outcome says whether it
// was right, and a model keeps at most MaxSegmentNames segment names.
func TestSegments(t *testing.T) {
	s := newStore(t, Options{})
	var many []Segment
	for i := range MaxSegmentNames + 1 {
		many = append(many, Segment{Name: fmt.Sprint("f", i), Value: "v"})
	}
	s.Observe(t0, Prediction{ID: "a", Model: "m", Value: Class("fraud"), Segments: many})
	s.Observe(t0, Prediction{ID: "b", Model: "m", Value: Class("fraud"), Segments: []Segment{{Name: "f16", Value: "v"}, {Name: "f0", Value: "w"}}})
	o, _ := s.Label(t0, Label{ID: "a", Value: Class("fraud")})
	require.True(t, o.Correct)
	require.Equal(t, many[:MaxSegmentNames], o.Segments, "the 17th name is left out")
	o, _ = s.Label(t0, Label{ID: "b", Value: Class("legit")})
	require.False(t, o.Correct)
	require.Equal(t, []Segment{{Name: "f0", Value: "w"}}, o.Segments)
}
