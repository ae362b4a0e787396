// Package predclasstest holds the cases of the rule that names the class of
// a prediction given only by position, shared by the tests of the sidecar
// (internal/exporter) and of `exporter drift` (internal/driftcli), so that
// both read a prediction as the rule says.
package predclasstest

import "math"

// Case is one prediction given by position and the class it names.
type Case struct {
	Name    string
	Classes []string
	// Scores is the prediction: a probability vector, or one number. A
	// number is given as a vector of one when Vector is set.
	Scores []float64
	Vector bool
	// Want is the class the prediction names, "" none.
	Want string
}

var (
	three = []string{"cat", "dog", "bird"}
	two   = []string{"neg", "pos"}
	one   = []string{"only"}
	nan   = math.NaN()
	inf   = math.Inf(1)
)

// Cases are the cases, the corners first.
var Cases = []Case{
	{Name: "argmax", Classes: three, Scores: []float64{0.1, 0.7, 0.2}, Vector: true, Want: "dog"},
	{Name: "tie first two", Classes: three, Scores: []float64{0.4, 0.4, 0.2}, Vector: true, Want: "cat"},
	{Name: "tie last two", Classes: three, Scores: []float64{0.2, 0.4, 0.4}, Vector: true, Want: "dog"},
	{Name: "all equal", Classes: three, Scores: []float64{1, 1, 1}, Vector: true, Want: "cat"},
	{Name: "two classes tie", Classes: two, Scores: []float64{0.5, 0.5}, Vector: true, Want: "neg"},
	{Name: "NaN first", Classes: three, Scores: []float64{nan, 0.2, 0.8}, Vector: true, Want: ""},
	{Name: "NaN middle", Classes: three, Scores: []float64{0.2, nan, 0.8}, Vector: true, Want: ""},
	{Name: "NaN last", Classes: three, Scores: []float64{0.2, 0.8, nan}, Vector: true, Want: ""},
	{Name: "all NaN", Classes: three, Scores: []float64{nan, nan, nan}, Vector: true, Want: ""},
	{Name: "two classes NaN first", Classes: two, Scores: []float64{nan, 0.6}, Vector: true, Want: ""},
	{Name: "+Inf", Classes: three, Scores: []float64{0.1, inf, 0.2}, Vector: true, Want: "dog"},
	{Name: "-Inf logits", Classes: three, Scores: []float64{-inf, -inf, -1}, Vector: true, Want: "bird"},
	{Name: "all -Inf", Classes: three, Scores: []float64{-inf, -inf, -inf}, Vector: true, Want: "cat"},
	{Name: "+Inf twice", Classes: three, Scores: []float64{0, inf, inf}, Vector: true, Want: "dog"},
	{Name: "negative logits", Classes: three, Scores: []float64{-3, -1, -2}, Vector: true, Want: "dog"},
	{Name: "empty vector", Classes: three, Scores: []float64{}, Vector: true, Want: ""},
	{Name: "empty vector no classes", Classes: nil, Scores: []float64{}, Vector: true, Want: ""},
	{Name: "vector no classes", Classes: nil, Scores: []float64{0.2, 0.8}, Vector: true, Want: ""},
	{Name: "vector longer", Classes: three, Scores: []float64{0.1, 0.2, 0.3, 0.4}, Vector: true, Want: ""},
	{Name: "vector shorter", Classes: three, Scores: []float64{0.2, 0.8}, Vector: true, Want: ""},
	{Name: "vector of three two classes", Classes: two, Scores: []float64{0.2, 0.3, 0.5}, Vector: true, Want: ""},
	{Name: "index", Classes: three, Scores: []float64{2}, Want: "bird"},
	{Name: "index 0", Classes: three, Scores: []float64{0}, Want: "cat"},
	{Name: "index -0", Classes: three, Scores: []float64{math.Copysign(0, -1)}, Want: "cat"},
	{Name: "index out of range", Classes: three, Scores: []float64{3}, Want: ""},
	{Name: "index huge", Classes: three, Scores: []float64{1e300}, Want: ""},
	{Name: "negative index", Classes: three, Scores: []float64{-1}, Want: ""},
	{Name: "non-integer index", Classes: three, Scores: []float64{1.5}, Want: ""},
	{Name: "nearly integer index", Classes: three, Scores: []float64{1.0000000001}, Want: ""},
	{Name: "NaN number", Classes: three, Scores: []float64{nan}, Want: ""},
	{Name: "+Inf number", Classes: three, Scores: []float64{inf}, Want: ""},
	{Name: "number no classes", Classes: nil, Scores: []float64{0}, Want: ""},
	{Name: "index vector of one", Classes: three, Scores: []float64{2}, Vector: true, Want: "bird"},
	{Name: "two classes 1.0", Classes: two, Scores: []float64{1}, Want: "pos"},
	{Name: "two classes 0.0", Classes: two, Scores: []float64{0}, Want: "neg"},
	{Name: "two classes 0.7", Classes: two, Scores: []float64{0.7}, Want: "pos"},
	{Name: "two classes 0.3", Classes: two, Scores: []float64{0.3}, Want: "neg"},
	{Name: "two classes 0.5", Classes: two, Scores: []float64{0.5}, Want: "neg"},
	{Name: "two classes 1.5", Classes: two, Scores: []float64{1.5}, Want: ""},
	{Name: "two classes 2", Classes: two, Scores: []float64{2}, Want: ""},
	{Name: "two classes -0.2", Classes: two, Scores: []float64{-0.2}, Want: ""},
	{Name: "two classes NaN", Classes: two, Scores: []float64{nan}, Want: ""},
	{Name: "two classes +Inf", Classes: two, Scores: []float64{inf}, Want: ""},
	{Name: "two classes vector of one 0.7", Classes: two, Scores: []float64{0.7}, Vector: true, Want: "pos"},
	{Name: "two classes vector of one 1.5", Classes: two, Scores: []float64{1.5}, Vector: true, Want: ""},
	{Name: "one class index 0", Classes: one, Scores: []float64{0}, Want: "only"},
	{Name: "one class 0.3", Classes: one, Scores: []float64{0.3}, Want: ""},
	{Name: "one class vector of one 0.3", Classes: one, Scores: []float64{0.3}, Vector: true, Want: "only"},
	{Name: "one class vector of one NaN", Classes: one, Scores: []float64{nan}, Vector: true, Want: ""},
}
