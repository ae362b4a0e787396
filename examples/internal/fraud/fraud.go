// Package fraud is the toy fraud model shared by the examples: the feature schema
// that the traffic generator samples from, and the fixed logistic regression that
// the stub model server answers with. Keeping both in one place means the traffic
// always matches what the model reads.
package fraud

import (
	"math"
	"strconv"
)

// NumFeatures is the number of features the model reads.
const NumFeatures = 20

// Kind says how a feature is distributed, which the traffic generator needs to
// sample plausible values.
type Kind int

const (
	// Continuous features are normal around Mean, clipped to [Min, Max].
	Continuous Kind = iota
	// Count features are like Continuous ones, rounded to whole numbers.
	Count
	// Binary features are 1 with probability Mean, else 0.
	Binary
)

// Feature describes one model input.
type Feature struct {
	Name string
	Kind Kind
	// Mean and Std describe the reference distribution; the model also
	// standardizes the raw value with them.
	Mean, Std float64
	// Min and Max bound sampled values.
	Min, Max float64
	// Weight is the logistic regression weight of the standardized value.
	Weight float64
}

// Bias is the intercept of the logistic regression.
const Bias = -3.2

// Features is the model's input schema, in positional order: an instance given as
// an array lists these features in this order, and feature i is also accepted
// under the name "f<i>".
var Features = [NumFeatures]Feature{
	{Name: "amount", Kind: Continuous, Mean: 120, Std: 90, Min: 0, Max: 5000, Weight: 0.9},
	{Name: "age", Kind: Count, Mean: 42, Std: 13, Min: 18, Max: 95, Weight: -0.3},
	{Name: "tenure_months", Kind: Count, Mean: 40, Std: 30, Min: 0, Max: 360, Weight: -0.5},
	{Name: "transactions_24h", Kind: Count, Mean: 3, Std: 2.5, Min: 0, Max: 100, Weight: 0.6},
	{Name: "avg_amount_30d", Kind: Continuous, Mean: 110, Std: 70, Min: 0, Max: 5000, Weight: -0.2},
	{Name: "distance_from_home_km", Kind: Continuous, Mean: 25, Std: 40, Min: 0, Max: 20000, Weight: 0.5},
	{Name: "hour_of_day", Kind: Count, Mean: 13, Std: 5, Min: 0, Max: 23, Weight: -0.1},
	{Name: "is_foreign", Kind: Binary, Mean: 0.06, Std: 0.24, Min: 0, Max: 1, Weight: 0.7},
	{Name: "card_present", Kind: Binary, Mean: 0.65, Std: 0.48, Min: 0, Max: 1, Weight: -0.6},
	{Name: "merchant_risk", Kind: Continuous, Mean: 0.2, Std: 0.12, Min: 0, Max: 1, Weight: 0.9},
	{Name: "device_age_days", Kind: Count, Mean: 300, Std: 250, Min: 0, Max: 5000, Weight: -0.4},
	{Name: "failed_logins_24h", Kind: Count, Mean: 0.3, Std: 0.8, Min: 0, Max: 50, Weight: 0.6},
	{Name: "chargebacks_1y", Kind: Count, Mean: 0.1, Std: 0.4, Min: 0, Max: 20, Weight: 0.8},
	{Name: "account_balance", Kind: Continuous, Mean: 2500, Std: 2000, Min: 0, Max: 1e6, Weight: -0.3},
	{Name: "credit_limit", Kind: Continuous, Mean: 5000, Std: 3000, Min: 500, Max: 1e5, Weight: -0.1},
	{Name: "utilization", Kind: Continuous, Mean: 0.3, Std: 0.2, Min: 0, Max: 1, Weight: 0.4},
	{Name: "velocity_1h", Kind: Count, Mean: 1, Std: 1.2, Min: 0, Max: 100, Weight: 0.6},
	{Name: "ip_risk", Kind: Continuous, Mean: 0.1, Std: 0.1, Min: 0, Max: 1, Weight: 0.8},
	{Name: "email_age_days", Kind: Count, Mean: 1200, Std: 900, Min: 0, Max: 10000, Weight: -0.3},
	{Name: "shipping_mismatch", Kind: Binary, Mean: 0.08, Std: 0.27, Min: 0, Max: 1, Weight: 0.7},
}

// Vector holds one instance's raw feature values in the order of Features.
// A feature the request did not send is 0.
type Vector [NumFeatures]float64

var index = func() map[string]int {
	m := make(map[string]int, 2*NumFeatures)
	for i, f := range Features {
		m[f.Name] = i
		m["f"+strconv.Itoa(i)] = i
	}
	return m
}()

// Index returns the position of the feature called name, which is either the
// feature's name in Features or "f<i>".
func Index(name string) (int, bool) {
	i, ok := index[name]
	return i, ok
}

// Probability returns the model's probability that x is fraudulent.
func Probability(x *Vector) float64 { return ShiftedProbability(x, 0) }

// ShiftedProbability is Probability with shift added to the intercept: a
// candidate model that flags more (shift > 0) or fewer transactions.
func ShiftedProbability(x *Vector, shift float64) float64 {
	z := Bias + shift
	for i := range x {
		f := &Features[i]
		z += f.Weight * (x[i] - f.Mean) / f.Std
	}
	return 1 / (1 + math.Exp(-z))
}

// Class returns the predicted class for probability p: 1 (fraud) from 0.5 up, else 0.
func Class(p float64) int64 {
	if p >= 0.5 {
		return 1
	}
	return 0
}
