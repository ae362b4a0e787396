package drift

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Rows gives the columns ReadCSV gives for the same values.
func TestRowsLikeCSV(t *testing.T) {
	csv := "age,country,zip\n31,DE,01234\n,FR,99999\n45.5,,01234\n"
	want, err := ReadCSV("x.csv", strings.NewReader(csv), ReadOptions{Categorical: []string{"zip"}})
	require.NoError(t, err)
	r, err := NewRows("x.parquet", []string{"age", "country", "zip"}, ReadOptions{Categorical: []string{"zip"}})
	require.NoError(t, err)
	for _, row := range [][]string{{"31", "DE", "01234"}, {"", "FR", "99999"}, {"45.5", "", "01234"}} {
		require.NoError(t, r.Add(row))
	}
	got, err := r.Columns()
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got)) // NaN for missing numbers
	require.Len(t, got, 3)
}

func TestRowsErrors(t *testing.T) {
	_, err := NewRows("x.parquet", []string{"a", "a"}, ReadOptions{})
	require.EqualError(t, err, `x.parquet: column "a": duplicate name`)
	_, err = NewRows("x.parquet", []string{"a"}, ReadOptions{Columns: []string{"b"}})
	require.EqualError(t, err, `x.parquet: missing column "b"`)
	r, err := NewRows("x.parquet", []string{"a", "b"}, ReadOptions{Numeric: []string{"a"}})
	require.NoError(t, err)
	_, err = r.Columns()
	require.EqualError(t, err, "x.parquet: no rows")
	require.EqualError(t, r.Add([]string{"1"}), "x.parquet: row 1: 1 values, want 2")
	require.NoError(t, r.Add([]string{"1", "x"}))
	require.EqualError(t, r.Add([]string{"abc", "x"}), `x.parquet: row 2: column "a": "abc" is not a number`)
}
