package drift

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadJSONL(t *testing.T) {
	in := `{"age": 31, "city": "paris", "user": {"vip": true, "tags": ["a", "b"]}, "score": "0.5"}

{"age": null, "city": "oslo", "user": {"vip": false}, "code": 7}
{"age": 1e2, "city": "", "score": 1.5, "code": "x7"}
`
	cols, err := ReadJSONL("train.jsonl", strings.NewReader(in), ReadOptions{})
	require.NoError(t, err)
	names := []string{}
	for _, c := range cols {
		names = append(names, c.Name)
	}
	require.Equal(t, []string{"age", "city", "user.vip", "user.tags.0", "user.tags.1", "score", "code"}, names)
	requireNums(t, []float64{31, math.NaN(), 100}, cols[0].Num)
	require.Equal(t, []string{"paris", "oslo", ""}, cols[1].Str)
	requireNums(t, []float64{1, 0, math.NaN()}, cols[2].Num)
	require.Equal(t, []string{"a", "", ""}, cols[3].Str)
	requireNums(t, []float64{0.5, math.NaN(), 1.5}, cols[5].Num) // numeric strings are numbers
	require.Equal(t, []string{"", "7", "x7"}, cols[6].Str, "numbers in a categorical column as the sidecar formats them")

	cols, err = ReadJSONL("train.jsonl", strings.NewReader(in), ReadOptions{Columns: []string{"code", "age"}})
	require.NoError(t, err)
	require.Equal(t, "code", cols[0].Name)
	require.Equal(t, "age", cols[1].Name)
}

// A null where other lines have an object (or an array) means the object's
// members are missing on that line, before or after the lines that have it;
// it makes no feature of its own.
func TestReadJSONLNullObject(t *testing.T) {
	in := `{"id": 1, "user": null, "tags": null}
{"id": 2, "user": {"age": 31, "country": "FR", "address": null}, "tags": ["a"]}
{"id": 3, "user": {"age": 40, "country": "DE", "address": {"zip": "SW1A"}}}
{"id": 4, "user": null, "tags": ["b", "c"]}
{"id": 5, "user": {"age": null, "country": "FR", "address": null}, "tags": null, "note": null, "empty": ""}
`
	cols, err := ReadJSONL("batch.jsonl", strings.NewReader(in), ReadOptions{})
	require.NoError(t, err)
	names := []string{}
	for _, c := range cols {
		names = append(names, c.Name)
	}
	// A column that is only ever null or "", with no members, stays: it is
	// a feature whose values are all missing.
	require.Equal(t, []string{"id", "user.age", "user.country", "tags.0", "user.address.zip", "tags.1", "note", "empty"}, names)
	requireNums(t, []float64{math.NaN(), 31, 40, math.NaN(), math.NaN()}, cols[1].Num)
	require.Equal(t, []string{"", "FR", "DE", "", "FR"}, cols[2].Str)
	require.Equal(t, []string{"", "a", "", "b", ""}, cols[3].Str)
	require.Equal(t, []string{"", "", "SW1A", "", ""}, cols[4].Str)

	// Asked for by name, the null column is kept.
	cols, err = ReadJSONL("batch.jsonl", strings.NewReader(in), ReadOptions{Columns: []string{"user", "user.age"}})
	require.NoError(t, err)
	require.Len(t, cols, 2)
	require.Equal(t, "user", cols[0].Name)

	// A scalar where other lines have an object is a value: the column stays.
	cols, err = ReadJSONL("batch.jsonl", strings.NewReader(`{"user": "bob"}`+"\n"+`{"user": {"age": 3}}`+"\n"), ReadOptions{})
	require.NoError(t, err)
	require.Len(t, cols, 2)
	require.Equal(t, "user", cols[0].Name)
	// "user-id" sorts between "user" and "user.age".
	cols, err = ReadJSONL("batch.jsonl", strings.NewReader(`{"user": null, "user-id": 1}`+"\n"+`{"user": {"age": 3}}`+"\n"), ReadOptions{})
	require.NoError(t, err)
	require.Len(t, cols, 2)
	require.Equal(t, "user-id", cols[0].Name)
	require.Equal(t, "user.age", cols[1].Name)
}

func TestReadJSONLErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		opts ReadOptions
		err  string
	}{
		{"empty file", "", ReadOptions{}, "train.jsonl: empty file"},
		{"blank lines", "\n  \n", ReadOptions{}, "train.jsonl: no rows"},
		{"syntax", "{\"a\": 1}\n{\"a\": 1}\n{\"a\": x}\n", ReadOptions{}, "train.jsonl:3:7: invalid character 'x' looking for beginning of value"},
		{"truncated", "{\"a\": [1, 2\n", ReadOptions{}, "train.jsonl:1:12: unexpected end of JSON input"},
		// Offsets count the line as written, before NaN and Infinity.
		{"syntax after NaN", "{\"a\": NaN, \"b\": x}\n", ReadOptions{}, "train.jsonl:1:17: invalid character 'x' looking for beginning of value"},
		{"truncated after Infinity", "{\"a\": [-Infinity, Infinity, 2\n", ReadOptions{}, "train.jsonl:1:30: unexpected end of JSON input"},
		{"not Python's word", "{\"a\": Nan}\n", ReadOptions{}, "train.jsonl:1:7: invalid character 'N' looking for beginning of value"},
		{"not an object", "1\n", ReadOptions{}, "train.jsonl:1: not a JSON object"},
		{"array", "[1, 2]\n", ReadOptions{}, "train.jsonl:1: a JSON array, not an object: JSON Lines has one object per line"},
		{"array of objects", "{\"a\": 1}\n[{\"a\": 1},\n{\"a\": 2}]\n", ReadOptions{}, "train.jsonl:2: a JSON array, not an object: JSON Lines has one object per line"},
		{"pretty-printed array", "[\n  {\n    \"a\": 1\n  }\n]\n", ReadOptions{}, "train.jsonl:1: a JSON array, not an object: JSON Lines has one object per line"},
		{"pretty-printed object", "{\n  \"a\": 1\n}\n", ReadOptions{}, "train.jsonl:1: an object split over several lines: JSON Lines has one object per line"},
		{"trailing data", "{\"a\": 1} 2\n", ReadOptions{}, "train.jsonl:1:10: invalid character '2' after top-level value"},
		{"duplicate key", "{\"a\": 1, \"a\": 2}\n", ReadOptions{}, `train.jsonl:1: column "a": duplicate key`},
		{"not a number", "{\"age\": 1}\n{\"age\": 2}\n\n{\"age\": 3}\n{\"age\": \"abc\"}\n", ReadOptions{Numeric: []string{"age"}}, `train.jsonl:5: column "age": "abc" is not a number`},
		{"missing column", "{\"a\": 1}\n", ReadOptions{Columns: []string{"b"}}, `train.jsonl: missing column "b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadJSONL("train.jsonl", strings.NewReader(tc.in), tc.opts)
			require.EqualError(t, err, tc.err)
		})
	}
}

// NaN, Infinity and -Infinity, as Python's json.dumps writes them (and so
// pandas' missing values), are read as the push API reads them: numbers,
// NaN and ±Inf (not missing: a "nan" or "inf" to the checks), as is a
// number too large for a float64, in a categorical column too, where they
// are strings NonFinite reads, not the text "NaN" of a string, and a
// profile counts them as missing. Within strings, and as keys, they are
// text.
func TestReadJSONLNonFinite(t *testing.T) {
	in := `{"x": NaN, "city": "paris", "s": "NaN", "NaN": 1}
{"x": Infinity, "city": NaN, "s": "Infinity", "NaN": 2}
{"x": -Infinity, "city": "oslo", "s": "x", "NaN": 3}
{"x": 1e999, "city": -Infinity, "s": "y", "NaN": 4}
{"x": null, "city": null, "s": "z", "NaN": 5}
{"x": 2.5, "city": 7, "s": "", "NaN": 6}
`
	cols, err := ReadJSONL("batch.jsonl", strings.NewReader(in), ReadOptions{})
	require.NoError(t, err)
	require.Len(t, cols, 4)
	x := cols[0]
	require.Equal(t, "x", x.Name)
	require.True(t, math.IsNaN(x.Num[0]) && !IsNA(x.Num[0]), "NaN is a NaN, not a missing value")
	require.Equal(t, []float64{math.Inf(1), math.Inf(-1), math.Inf(1)}, x.Num[1:4])
	require.True(t, IsNA(x.Num[4]), "null is missing")
	require.Equal(t, 2.5, x.Num[5])
	city := cols[1].Str
	require.Equal(t, []string{"paris", "oslo", "", "7"}, []string{city[0], city[2], city[4], city[5]})
	for i, want := range map[int]float64{1: math.NaN(), 3: math.Inf(-1)} {
		v, ok := NonFinite(city[i])
		require.True(t, ok, "a number, not the text %q", city[i])
		require.Equal(t, math.Float64bits(want), math.Float64bits(v))
	}
	require.Equal(t, []string{"NaN", "Infinity", "x", "y", "z", ""}, cols[2].Str)
	for _, s := range cols[2].Str {
		_, ok := NonFinite(s)
		require.False(t, ok, "a string is text")
	}
	require.Equal(t, "NaN", cols[3].Name)

	p, err := BuildProfile(cols, BuildOptions{})
	require.NoError(t, err)
	f, ok := p.Feature("city")
	require.True(t, ok)
	require.Equal(t, int64(3), f.Missing, "null, NaN and -Infinity")
	for _, c := range f.Categorical.Categories {
		require.Contains(t, []string{"paris", "oslo", "7"}, c.Value)
	}
}
