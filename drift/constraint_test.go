package drift

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	p, err := BuildProfile([]Column{
		{Name: "age", Num: []float64{18, 30, 90, 20}},
		{Name: "income", Num: []float64{1, math.NaN(), 3, 2}},
		{Name: "city", Str: []string{"lima", "oslo", "lima", "paris"}},
	}, BuildOptions{TopK: 1})
	require.NoError(t, err)
	age, income, city := p.Features[0], p.Features[1], p.Features[2]
	// More categories than MaxCategories: the set is open.
	q, err := BuildProfile([]Column{{Name: "id", Str: []string{"a", "b", "c", ""}}}, BuildOptions{MaxCategories: 2})
	require.NoError(t, err)
	id := q.Features[0]
	for _, tc := range []struct {
		name string
		got  Violation
		want Violation
	}{
		{"in range", age.Check(45), ViolationNone},
		{"min", age.Check(18), ViolationNone},
		{"max", age.Check(90), ViolationNone},
		{"below", age.Check(17.9), ViolationOutOfRange},
		{"above", age.Check(90.5), ViolationOutOfRange},
		{"nan", age.Check(math.NaN()), ViolationNaN},
		{"inf", age.Check(math.Inf(-1)), ViolationInf},
		{"missing, not nullable", age.CheckMissing(), ViolationMissing},
		{"missing, nullable", income.CheckMissing(), ViolationNone},
		{"numeric string", age.CheckCategory(" 40 "), ViolationNone},
		{"non-number", age.CheckCategory("forty"), ViolationType},
		{"empty string is missing", age.CheckCategory(""), ViolationMissing},
		{"top category", city.CheckCategory("lima"), ViolationNone},
		{"rare category", city.CheckCategory("paris"), ViolationNone},
		{"unseen category", city.CheckCategory("rome"), ViolationUnseenCategory},
		{"number as category", city.Check(3), ViolationUnseenCategory},
		{"open set: no unseen", id.CheckCategory("zzz"), ViolationNone},
		{"nullable categorical", id.CheckCategory(""), ViolationNone},
	} {
		require.Equal(t, tc.want, tc.got, tc.name)
	}
	require.Equal(t, "out_of_range", ViolationOutOfRange.String())
	require.Equal(t, "unseen_category", ViolationUnseenCategory.String())
	require.Equal(t, "none", Violation(200).String())
	require.Len(t, Violations(), 6)
}
