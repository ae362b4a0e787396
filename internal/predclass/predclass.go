// Package predclass names the class of a prediction that gives only
// positions (a probability vector, or one number) by a model's classes,
// models[].classes, in their order. It is the one rule the sidecar's label
// join, prediction metrics, live drift windows and learned references, and
// `exporter drift`, read such a prediction by.
package predclass

import "math"

// Of returns the class of classes that scores, a vector given only by
// position, predicts; ok is false when classes names none:
//
//   - as many numbers as classes are their probabilities (or scores, or
//     logits): the most probable class, the first of equal maxima, as
//     numpy's argmax and scikit-learn's predict take it; ±Inf are numbers
//     like others, but a NaN makes the vector name no class, as the
//     argmax of a vector holding one would depend on where it stands;
//   - otherwise a vector of one is that number (Number), as a payload's
//     [0.7] is 0.7;
//   - any other vector, and any vector when classes is empty, names none.
func Of(classes []string, scores []float64) (class string, ok bool) {
	switch {
	case len(classes) == 0:
		return "", false
	case len(scores) == len(classes):
		best := 0
		for k, x := range scores {
			if math.IsNaN(x) {
				return "", false
			}
			if x > scores[best] {
				best = k
			}
		}
		return classes[best], true
	case len(scores) == 1:
		return Number(classes, scores[0])
	}
	return "", false
}

// Number returns the class of classes that x, one number, predicts; ok is
// false when classes names none: with two classes, a number in [0, 1] is the
// second class's probability (a binary classifier's score,
// scikit-learn's predict_proba(X)[:, 1]), so 0.5 is the first class's as a
// tie is; otherwise a whole number in [0, len(classes)) is the position of
// its class (IsIndex). Neither NaN nor ±Inf names a class.
func Number(classes []string, x float64) (class string, ok bool) {
	switch {
	case len(classes) == 2 && x >= 0 && x <= 1:
		if x > 1-x {
			return classes[1], true
		}
		return classes[0], true
	case IsIndex(x, len(classes)):
		return classes[int(x)], true
	}
	return "", false
}

// IsIndex reports whether x is a position of n classes: a whole number in
// [0, n).
func IsIndex(x float64, n int) bool {
	return x == math.Trunc(x) && x >= 0 && x < float64(n)
}
