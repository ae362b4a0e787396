package drift

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type field struct {
	name  string
	kind  Kind
	value string
}

func readRecords(t *testing.T, opts ReadOptions, records ...[]field) ([]Column, error) {
	t.Helper()
	r := NewRecords("x.parquet", opts)
	for _, rec := range records {
		for _, f := range rec {
			if err := r.Set(f.name, f.kind, f.value); err != nil {
				return nil, err
			}
		}
		r.End()
	}
	return r.Columns()
}

// Records give the columns ReadJSONL gives for the same records flattened:
// columns in the order their names first appear, an absent name missing,
// and the nulls of a list some records have ("tags" beside "tags.0") no
// column of their own.
func TestRecordsLikeJSONL(t *testing.T) {
	jsonl := `{"age": 31, "tags": ["a", "b"], "user": {"vip": true}}
{"age": null, "tags": null, "user": {"vip": false}, "code": 7}
{"tags": ["c"], "user": null, "note": null}
{"age": 45.5, "tags": [], "user": {"vip": true}, "code": 8}
`
	want, err := ReadJSONL("x.jsonl", strings.NewReader(jsonl), ReadOptions{})
	require.NoError(t, err)
	got, err := readRecords(t, ReadOptions{},
		[]field{{"age", "", "31"}, {"tags.0", "", "a"}, {"tags.1", "", "b"}, {"user.vip", "", "1"}},
		[]field{{"age", "", ""}, {"tags", "", ""}, {"user.vip", "", "0"}, {"code", "", "7"}},
		[]field{{"tags.0", "", "c"}, {"user", "", ""}, {"note", "", ""}},
		[]field{{"age", "", "45.5"}, {"user.vip", "", "1"}, {"code", "", "8"}},
	)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got)) // NaN for missing numbers
	require.Equal(t, "[age tags.0 tags.1 user.vip code note]", fmt.Sprint(names(got)))
}

func names(cols []Column) []string {
	var out []string
	for _, c := range cols {
		out = append(out, c.Name)
	}
	return out
}

// A column's kind is the one Set gives when it makes it, unless
// ReadOptions force another; "" decides from the values.
func TestRecordsKinds(t *testing.T) {
	recs := [][]field{
		{{"zip", Categorical, "01234"}, {"n", Numeric, "1"}, {"x", "", "2"}},
		{{"zip", Numeric, "99999"}, {"n", Numeric, ""}, {"x", "", "3"}},
	}
	cols, err := readRecords(t, ReadOptions{}, recs...)
	require.NoError(t, err)
	require.Equal(t, []string{"01234", "99999"}, cols[0].Str)
	require.Len(t, cols[1].Num, 2)
	require.Equal(t, []float64{2, 3}, cols[2].Num)

	cols, err = readRecords(t, ReadOptions{Numeric: []string{"zip"}, Categorical: []string{"x"}}, recs...)
	require.NoError(t, err)
	require.Equal(t, []float64{1234, 99999}, cols[0].Num)
	require.Equal(t, []string{"2", "3"}, cols[2].Str)

	_, err = readRecords(t, ReadOptions{}, []field{{"n", Numeric, "1"}}, []field{{"n", Numeric, "abc"}})
	require.EqualError(t, err, `x.parquet: row 2: column "n": "abc" is not a number`)
}

func TestRecordsErrors(t *testing.T) {
	_, err := readRecords(t, ReadOptions{})
	require.EqualError(t, err, "x.parquet: no rows")
	_, err = readRecords(t, ReadOptions{}, []field{{"m.a", "", "1"}, {"m.a", "", "2"}})
	require.EqualError(t, err, `x.parquet: row 1: column "m.a": duplicate key`)
	_, err = readRecords(t, ReadOptions{Columns: []string{"b"}}, []field{{"a", "", "1"}})
	require.EqualError(t, err, `x.parquet: missing column "b"`)
	_, err = readRecords(t, ReadOptions{Categorical: []string{"b"}}, []field{{"a", "", "1"}})
	require.EqualError(t, err, `x.parquet: missing column "b"`)

	// Only the columns asked for are made, in the order asked.
	cols, err := readRecords(t, ReadOptions{Columns: []string{"c", "a"}}, []field{{"a", "", "1"}, {"b", "", "2"}, {"c", "", "x"}})
	require.NoError(t, err)
	require.Equal(t, []string{"c", "a"}, names(cols))
}

// Data makes at most MaxColumns columns: a list of more elements, or keys
// that differ from record to record, fail naming the first column past
// the limit. Columns not asked for do not count.
func TestMaxColumns(t *testing.T) {
	array := func(n int) string {
		return `{"id": 1, "emb": [` + strings.Repeat("0.5, ", n-1) + "0.5]}\n"
	}
	cols, err := ReadJSONL("x.jsonl", strings.NewReader(array(MaxColumns-1)), ReadOptions{})
	require.NoError(t, err)
	require.Len(t, cols, MaxColumns)
	_, err = ReadJSONL("x.jsonl", strings.NewReader(array(MaxColumns)), ReadOptions{})
	require.EqualError(t, err, `x.jsonl:1: column "emb.9999": more than 10000 columns: each key, and each element of an array, list or map, is one`)
	cols, err = ReadJSONL("x.jsonl", strings.NewReader(array(3*MaxColumns)), ReadOptions{Columns: []string{"emb.20000"}})
	require.NoError(t, err)
	require.Len(t, cols, 1)

	var lines strings.Builder
	for i := range MaxColumns + 1 {
		fmt.Fprintf(&lines, "{\"k%d\": 1}\n", i)
	}
	_, err = ReadJSONL("x.jsonl", strings.NewReader(lines.String()), ReadOptions{})
	require.EqualError(t, err, `x.jsonl:10001: column "k10000": more than 10000 columns: each key, and each element of an array, list or map, is one`)

	r := NewRecords("x.parquet", ReadOptions{})
	for i := range MaxColumns {
		require.NoError(t, r.Set("m."+strconv.Itoa(i), Numeric, "1"))
	}
	require.EqualError(t, r.Set("m.x", Numeric, "1"), `x.parquet: row 1: column "m.x": more than 10000 columns: each key, and each element of an array, list or map, is one`)
}
