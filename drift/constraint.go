package drift

import (
	"math"
	"strconv"
	"strings"
)

// Violation is why a live value breaks the constraints its feature's reference
// implies: the range [Min, Max], the set of categories, and nullability (a feature
// with no missing value in the reference is not nullable).
type Violation uint8

// The kinds of Violation. ViolationNone is the zero value.
const (
	ViolationNone Violation = iota
	// ViolationMissing is a missing value of a feature that is not nullable.
	ViolationMissing
	// ViolationNaN is a NaN value.
	ViolationNaN
	// ViolationInf is a +Inf or -Inf value.
	ViolationInf
	// ViolationOutOfRange is a numeric value below Min or above Max.
	ViolationOutOfRange
	// ViolationUnseenCategory is a category the reference did not have.
	ViolationUnseenCategory
	// ViolationType is a string that is not a number, given to a numeric feature.
	ViolationType

	violationKinds = iota
)

var violationNames = [violationKinds]string{
	ViolationNone: "none", ViolationMissing: "missing", ViolationNaN: "nan", ViolationInf: "inf",
	ViolationOutOfRange: "out_of_range", ViolationUnseenCategory: "unseen_category", ViolationType: "type",
}

// Violations lists the kinds of Violation, ViolationNone excluded, for
// pre-creating their counters.
func Violations() []Violation {
	return []Violation{ViolationMissing, ViolationNaN, ViolationInf, ViolationOutOfRange, ViolationUnseenCategory, ViolationType}
}

// String returns the reason label: "missing", "nan", "inf", "out_of_range",
// "unseen_category", "type", or "none".
func (v Violation) String() string {
	if int(v) < len(violationNames) {
		return violationNames[v]
	}
	return "none"
}

// Check returns the violation of a numeric value. For a categorical feature, v is
// checked as the category strconv.FormatFloat(v, 'g', -1, 64) after the NaN and Inf
// checks.
func (f *Feature) Check(v float64) Violation {
	switch {
	case math.IsNaN(v):
		return ViolationNaN
	case math.IsInf(v, 0):
		return ViolationInf
	case f.Kind == Categorical:
		return f.CheckCategory(strconv.FormatFloat(v, 'g', -1, 64))
	case f.Count == 0 || v < f.Numeric.Min || v > f.Numeric.Max:
		return ViolationOutOfRange
	}
	return ViolationNone
}

// CheckCategory returns the violation of a string value. "" is missing. For a
// numeric feature the string is parsed as a number; one that does not parse is a
// ViolationType.
func (f *Feature) CheckCategory(s string) Violation {
	if s == "" {
		return f.CheckMissing()
	}
	if f.Kind == Numeric {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return ViolationType
		}
		return f.Check(v)
	}
	if _, ok := f.category(s); ok || !f.Categorical.Closed {
		return ViolationNone
	}
	return ViolationUnseenCategory
}

// CheckMissing returns ViolationMissing if f is not nullable, else ViolationNone.
func (f *Feature) CheckMissing() Violation {
	if f.Nullable() {
		return ViolationNone
	}
	return ViolationMissing
}
