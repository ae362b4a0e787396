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
	// Offline and Online are the classes `exporter drift` and the sidecar
	// name today ("" none, "<panic>" a panic).
	Offline, Online string
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
	{Name: "argmax", Classes: three, Scores: []float64{0.1, 0.7, 0.2}, Vector: true, Offline: "dog", Online: "dog"},
	{Name: "tie first two", Classes: three, Scores: []float64{0.4, 0.4, 0.2}, Vector: true, Offline: "cat", Online: "cat"},
	{Name: "tie last two", Classes: three, Scores: []float64{0.2, 0.4, 0.4}, Vector: true, Offline: "dog", Online: "dog"},
	{Name: "all equal", Classes: three, Scores: []float64{1, 1, 1}, Vector: true, Offline: "cat", Online: "cat"},
	{Name: "two classes tie", Classes: two, Scores: []float64{0.5, 0.5}, Vector: true, Offline: "neg", Online: "neg"},
	{Name: "NaN first", Classes: three, Scores: []float64{nan, 0.2, 0.8}, Vector: true, Offline: "cat", Online: "cat"},
	{Name: "NaN middle", Classes: three, Scores: []float64{0.2, nan, 0.8}, Vector: true, Offline: "bird", Online: "bird"},
	{Name: "NaN last", Classes: three, Scores: []float64{0.2, 0.8, nan}, Vector: true, Offline: "dog", Online: "dog"},
	{Name: "all NaN", Classes: three, Scores: []float64{nan, nan, nan}, Vector: true, Offline: "cat", Online: "cat"},
	{Name: "two classes NaN first", Classes: two, Scores: []float64{nan, 0.6}, Vector: true, Offline: "neg", Online: "neg"},
	{Name: "+Inf", Classes: three, Scores: []float64{0.1, inf, 0.2}, Vector: true, Offline: "dog", Online: "dog"},
	{Name: "-Inf logits", Classes: three, Scores: []float64{-inf, -inf, -1}, Vector: true, Offline: "bird", Online: "bird"},
	{Name: "all -Inf", Classes: three, Scores: []float64{-inf, -inf, -inf}, Vector: true, Offline: "cat", Online: "cat"},
	{Name: "+Inf twice", Classes: three, Scores: []float64{0, inf, inf}, Vector: true, Offline: "dog", Online: "dog"},
	{Name: "negative logits", Classes: three, Scores: []float64{-3, -1, -2}, Vector: true, Offline: "dog", Online: "dog"},
	{Name: "empty vector", Classes: three, Scores: []float64{}, Vector: true, Offline: "", Online: ""},
	{Name: "empty vector no classes", Classes: nil, Scores: []float64{}, Vector: true, Offline: "<panic>", Online: ""},
	{Name: "vector no classes", Classes: nil, Scores: []float64{0.2, 0.8}, Vector: true, Offline: "", Online: ""},
	{Name: "vector longer", Classes: three, Scores: []float64{0.1, 0.2, 0.3, 0.4}, Vector: true, Offline: "", Online: ""},
	{Name: "vector shorter", Classes: three, Scores: []float64{0.2, 0.8}, Vector: true, Offline: "", Online: ""},
	{Name: "vector of three two classes", Classes: two, Scores: []float64{0.2, 0.3, 0.5}, Vector: true, Offline: "", Online: ""},
	{Name: "index", Classes: three, Scores: []float64{2}, Offline: "bird", Online: "bird"},
	{Name: "index 0", Classes: three, Scores: []float64{0}, Offline: "cat", Online: "cat"},
	{Name: "index -0", Classes: three, Scores: []float64{math.Copysign(0, -1)}, Offline: "cat", Online: "cat"},
	{Name: "index out of range", Classes: three, Scores: []float64{3}, Offline: "", Online: ""},
	{Name: "index huge", Classes: three, Scores: []float64{1e300}, Offline: "", Online: ""},
	{Name: "negative index", Classes: three, Scores: []float64{-1}, Offline: "", Online: ""},
	{Name: "non-integer index", Classes: three, Scores: []float64{1.5}, Offline: "", Online: ""},
	{Name: "nearly integer index", Classes: three, Scores: []float64{1.0000000001}, Offline: "", Online: ""},
	{Name: "NaN number", Classes: three, Scores: []float64{nan}, Offline: "", Online: ""},
	{Name: "+Inf number", Classes: three, Scores: []float64{inf}, Offline: "", Online: ""},
	{Name: "number no classes", Classes: nil, Scores: []float64{0}, Offline: "", Online: ""},
	{Name: "index vector of one", Classes: three, Scores: []float64{2}, Vector: true, Offline: "bird", Online: ""},
	{Name: "two classes 1.0", Classes: two, Scores: []float64{1}, Offline: "pos", Online: "pos"},
	{Name: "two classes 0.0", Classes: two, Scores: []float64{0}, Offline: "neg", Online: "neg"},
	{Name: "two classes 0.7", Classes: two, Scores: []float64{0.7}, Offline: "pos", Online: "pos"},
	{Name: "two classes 0.3", Classes: two, Scores: []float64{0.3}, Offline: "neg", Online: "neg"},
	{Name: "two classes 0.5", Classes: two, Scores: []float64{0.5}, Offline: "neg", Online: "neg"},
	{Name: "two classes 1.5", Classes: two, Scores: []float64{1.5}, Offline: "", Online: ""},
	{Name: "two classes 2", Classes: two, Scores: []float64{2}, Offline: "", Online: ""},
	{Name: "two classes -0.2", Classes: two, Scores: []float64{-0.2}, Offline: "", Online: ""},
	{Name: "two classes NaN", Classes: two, Scores: []float64{nan}, Offline: "", Online: ""},
	{Name: "two classes +Inf", Classes: two, Scores: []float64{inf}, Offline: "", Online: ""},
	{Name: "two classes vector of one 0.7", Classes: two, Scores: []float64{0.7}, Vector: true, Offline: "pos", Online: "pos"},
	{Name: "two classes vector of one 1.5", Classes: two, Scores: []float64{1.5}, Vector: true, Offline: "", Online: ""},
	{Name: "one class index 0", Classes: one, Scores: []float64{0}, Offline: "only", Online: "only"},
	{Name: "one class 0.3", Classes: one, Scores: []float64{0.3}, Offline: "", Online: ""},
	{Name: "one class vector of one 0.3", Classes: one, Scores: []float64{0.3}, Vector: true, Offline: "", Online: "only"},
	{Name: "one class vector of one NaN", Classes: one, Scores: []float64{nan}, Vector: true, Offline: "", Online: "only"},
}
