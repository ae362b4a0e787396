package quality

import (
	"math"
	"time"
)

// OtherClass is reported instead of class values beyond Options.MaxClasses.
const OtherClass = "__other__"

// Value is a predicted or actual value: a class name for classification, or a
// number for regression.
type Value struct {
	Class   string
	Number  float64
	Numeric bool
}

// Class returns the Value of a class name.
func Class(name string) Value { return Value{Class: name} }

// Number returns the Value of a number.
func Number(x float64) Value { return Value{Number: x, Numeric: true} }

func (v Value) valid() bool {
	if v.Numeric {
		return !math.IsNaN(v.Number) && !math.IsInf(v.Number, 0)
	}
	return v.Class != ""
}

// Prediction is a captured prediction waiting for its label.
type Prediction struct {
	ID    string
	Model string
	Value Value
	// Probabilities optionally gives the predicted probability of each class
	// in Classes (same length), for Brier score and log loss.
	Probabilities []float64
	Classes       []string
	// Confidence, when HasConfidence, is the probability in [0, 1] that a
	// class prediction without Probabilities gave its class ({"label":
	// …, "score": …}), for calibration. It is kept to within 1/65535.
	Confidence    float64
	HasConfidence bool
	// Segments are the segments the model's quality is also counted by (a
	// feature and its value, say the country), each named at most once.
	// Each segment's distinct values are capped by Options.MaxSegmentValues,
	// beyond which they are OtherClass; a model keeps at most
	// MaxSegmentNames segment names, and further ones are left out.
	Segments []Segment
	// Time is when the prediction was captured; zero, or a time after
	// now, means now.
	Time time.Time
}

// Segment is a value of a feature that a model's quality is also counted
// by.
type Segment struct {
	Name, Value string
}

// MaxSegmentNames bounds the distinct segment names a model keeps.
const MaxSegmentNames = 16

// Label is the ground truth for the prediction with the same ID.
type Label struct {
	ID string
	// Model, when set, must be the prediction's model (but see
	// Options.OverflowModel).
	Model string
	// Value is the actual class or number. For a prediction with class
	// probabilities, a whole number is the index of a class.
	Value Value
	// Time is when the outcome became known; zero means now.
	Time time.Time
}

// Outcome is a label joined to its prediction.
type Outcome struct {
	// ID is the prediction's id.
	ID    string
	Model string
	// Regression is true for numeric predictions; then PredictedValue,
	// ActualValue, AbsError and SquaredError are set, else Predicted and Actual.
	Regression bool
	// Predicted and Actual are class values capped by Options.MaxClasses:
	// beyond the cap they are OtherClass and the matching Overflow is true.
	Predicted, Actual                 string
	PredictedOverflow, ActualOverflow bool
	// PredictedIndex and ActualIndex are the positions of Predicted and
	// Actual among the model's class values, in the order the store first
	// saw them (as predicted or as labels, 0 the first; OtherClass takes
	// the next position when first needed). Snapshots keep the order: a
	// cap tighter than MaxClasses that keeps the classes below it keeps
	// the same ones across restarts.
	PredictedIndex, ActualIndex int
	// ActualClass is the actual class as the label gives it (a class's
	// index read as its name), not capped.
	ActualClass                 string
	PredictedValue, ActualValue float64
	AbsError, SquaredError      float64
	// Offset, for a regression, is the model's label offset
	// (Store.SetOffset): the constant the labels' sums are taken from,
	// ActualValue − Offset and its square, for their variance (R²).
	Offset float64
	// HasProbabilities is true when the prediction carried probabilities; then
	// Brier is Σₖ (pₖ − yₖ)² over its classes with y one-hot on the actual
	// class, and LogLoss is −ln p(actual), p clipped to [1e-15, 1−1e-15]. An
	// actual class missing from the prediction's classes has p = 0. This is
	// Brier's original multi-class score: for two classes it is twice
	// scikit-learn's brier_score_loss.
	HasProbabilities bool
	Brier, LogLoss   float64
	// HasConfidence is true when the prediction gave a probability to the
	// class it predicted; then Confidence is that probability: with Correct,
	// what calibration (expected calibration error, reliability diagrams)
	// is computed from.
	HasConfidence bool
	Confidence    float64
	// Correct, for a class prediction, is whether Predicted is Actual.
	Correct bool
	// Segments are the prediction's segments (Prediction.Segments), their
	// values capped: SegmentOverflow is true when one was beyond the cap.
	Segments        []Segment
	SegmentOverflow bool
	// Delay is the label's time minus the prediction's time, 0 if negative.
	Delay time.Duration
}

const (
	probMin = 1e-15
	probMax = 1 - 1e-15
)

// DefaultConfidenceBins is the number of equal-width bins a prediction's
// confidence is sorted into when none is given, as the expected
// calibration error and reliability diagrams commonly take it.
const DefaultConfidenceBins = 10

// ConfidenceBin returns the bin of confidence p among bins equal-width bins
// (bins ≥ 1): bin k holds (k/bins, (k+1)/bins], and bin 0 holds 0 as well,
// as scikit-learn's calibration_curve bins (np.searchsorted on the inner
// edges, computed as float64(k)/bins). Values outside [0, 1] go to the end
// bins.
func ConfidenceBin(p float64, bins int) int {
	n := float64(bins)
	// A first guess from p·bins, then moved to the bin whose edges, as
	// computed, hold p: p·bins and k/bins round differently.
	k := min(max(int(math.Ceil(p*n))-1, 0), bins-1)
	for k > 0 && !(p > float64(k)/n) {
		k--
	}
	for k < bins-1 && p > float64(k+1)/n {
		k++
	}
	return k
}

// classAt returns the class at index x of classes, when x is one.
func classAt(classes []string, x float64) (string, bool) {
	if x != math.Trunc(x) || x < 0 || x >= float64(len(classes)) {
		return "", false // NaN too
	}
	return classes[int(x)], true
}

// probabilityOf returns the probability probs gives class, and whether
// classes lists it.
func probabilityOf(probs []float64, classes []string, class string) (float64, bool) {
	for k, c := range classes {
		if c == class {
			return probs[k], true
		}
	}
	return 0, false
}

// scoreProbabilities returns the Brier score and log loss of probs over
// classes for the actual class.
func scoreProbabilities(probs []float64, classes []string, actual string) (brier, logLoss float64) {
	pActual := 0.0
	found := false
	for k, p := range probs {
		y := 0.0
		if !found && classes[k] == actual {
			y, pActual, found = 1, p, true
		}
		d := p - y
		brier += d * d
	}
	if !found {
		brier++ // (0 − 1)² for the actual class the prediction did not list
	}
	pActual = min(max(pActual, probMin), probMax)
	return brier, -math.Log(pActual)
}
