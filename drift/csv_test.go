package drift

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadCSV(t *testing.T) {
	in := "\ufeffage,city,zip,income,flag,bool\n" +
		"31,paris,02134,1e3,1,True\n" +
		"NA,\"oslo, norway\",75001,,0,false\n" +
		" 45 ,paris,10115,null,1,\n" +
		"52,,02134,NaN,yes,TRUE\n"
	cols, err := ReadCSV("train.csv", strings.NewReader(in), ReadOptions{Categorical: []string{"zip"}})
	require.NoError(t, err)
	require.Len(t, cols, 6)
	require.Equal(t, "age", cols[0].Name, "byte order mark removed")
	requireNums(t, []float64{31, math.NaN(), 45, 52}, cols[0].Num)
	require.Equal(t, []string{"paris", "oslo, norway", "paris", ""}, cols[1].Str)
	require.Equal(t, []string{"02134", "75001", "10115", "02134"}, cols[2].Str, "forced categorical keeps the text")
	requireNums(t, []float64{1000, math.NaN(), math.NaN(), math.NaN()}, cols[3].Num)
	require.Equal(t, []string{"1", "0", "1", "yes"}, cols[4].Str, "one non-number makes a column categorical")
	requireNums(t, []float64{1, 0, math.NaN(), 1}, cols[5].Num) // booleans are 1 and 0, as the sidecar reads JSON's

	cols, err = ReadCSV("train.csv", strings.NewReader("a;b\n1;x\n"), ReadOptions{Comma: ';', Columns: []string{"b"}})
	require.NoError(t, err)
	require.Len(t, cols, 1)
	require.Equal(t, []string{"x"}, cols[0].Str)
}

func requireNums(t *testing.T, want, got []float64) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		if math.IsNaN(want[i]) {
			require.True(t, math.IsNaN(got[i]), "value %d: %v", i, got[i])
		} else {
			require.Equal(t, want[i], got[i], "value %d", i)
		}
	}
}

func TestReadCSVErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		opts ReadOptions
		err  string
	}{
		{"empty file", "", ReadOptions{}, "train.csv: empty file"},
		{"header only", "a,b\n", ReadOptions{}, "train.csv: no rows after the header"},
		{"ragged short", "id,name,city,zip,age\n" + strings.Repeat("1,a,b,c,2\n", 15) + "1,a,b,c\n", ReadOptions{},
			`train.csv:17: column "age": ragged row (4 fields, want 5)`},
		{"ragged long", "a,b\n1,2\n1,2,3\n", ReadOptions{}, "train.csv:3: ragged row (3 fields, want 2)"},
		{"missing column", "a,b\n1,2\n", ReadOptions{Columns: []string{"a", "c"}}, `train.csv:1: missing column "c"`},
		{"missing forced column", "a,b\n1,2\n", ReadOptions{Numeric: []string{"x"}}, `train.csv:1: missing column "x"`},
		{"not a number", "a,age\nx,1\ny,2\nz,old\n", ReadOptions{Numeric: []string{"age"}}, `train.csv:4: column "age": "old" is not a number`},
		{"quoted multi-line record", "a,age\n\"x\ny\",old\n", ReadOptions{Numeric: []string{"age"}}, `train.csv:3: column "age": "old" is not a number`},
		{"empty name", "a,,c\n1,2,3\n", ReadOptions{}, "train.csv:1: column 2: empty name"},
		{"pandas index", ",a,b\n0,1,2\n", ReadOptions{}, "train.csv:1: column 1: empty name (an index, as pandas' to_csv writes by default? write the file with index=False)"},
		{"invalid name", "a,\xff\n1,2\n", ReadOptions{}, `train.csv:1: column 2: name "\xff" is not valid UTF-8`},
		{"duplicate name", "a,b,a\n1,2,3\n", ReadOptions{}, `train.csv:1: column "a": duplicate name`},
		{"semicolons", "a;b\n1,5;2\n", ReadOptions{}, `train.csv:1: one column named "a;b": fields must be separated by commas, not ";"`},
		{"tabs", "a\tb\n1\t2\n", ReadOptions{}, `train.csv:1: one column named "a\tb": fields must be separated by commas, not "\t"`},
		{"bare quote", "a,b\n1,x\"y\n", ReadOptions{}, "train.csv:2:4: bare \" in non-quoted-field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadCSV("train.csv", strings.NewReader(tc.in), tc.opts)
			require.EqualError(t, err, tc.err)
		})
	}
}

// TestCSVProfile reads a CSV and builds its profile end to end.
func TestCSVProfile(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("amount,country,churned\n")
	for i := range 500 {
		c := []string{"FR", "NO", "PE"}[i%3]
		sb.WriteString(strings.Join([]string{string(rune('0' + i%10)), c, []string{"no", "yes"}[i%2]}, ",") + "\n")
	}
	cols, err := ReadCSV("t.csv", strings.NewReader(sb.String()), ReadOptions{})
	require.NoError(t, err)
	p, err := BuildProfile(cols, BuildOptions{Prediction: "churned"})
	require.NoError(t, err)
	require.Equal(t, Numeric, p.Features[0].Kind)
	require.Equal(t, int64(10), p.Features[0].Unique)
	require.Equal(t, Categorical, p.Features[1].Kind)
	require.True(t, p.Features[2].Prediction)
	require.Equal(t, MethodKS, Choose(p.Features[0]))
	require.Equal(t, MethodChiSquare, Choose(p.Features[1]))
	require.Equal(t, MethodZ, Choose(p.Features[2]))
}

// CSV has no null: the values pandas.read_csv reads as NaN by default are
// missing there, NaN included, in numeric and in categorical columns, and a
// missing numeric value is NA. JSON has null: there null, "" and an absent
// key are missing, and a string is a string, so "NA" is a category and "NaN"
// in a numeric column is a NaN, not NA.
func TestReadMissingMarkers(t *testing.T) {
	markers := []string{"", "NA", "N/A", "n/a", "#N/A", "#N/A N/A", "#NA", "<NA>", "NULL", "null", "None",
		"NaN", "-NaN", "nan", "-nan", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN"}
	for _, m := range markers {
		require.True(t, IsCSVMissing(m), "%q", m)
	}
	for _, s := range []string{"na", "NAN", "none", " NA", "n.a.", "?", "Inf", "0"} {
		require.False(t, IsCSVMissing(s), "%q", s)
	}

	var csv strings.Builder
	csv.WriteString("x,city\n")
	for i, m := range markers {
		fmt.Fprintf(&csv, "%d,paris\n%q,%q\n", i, m, m)
	}
	csv.WriteString("NAN,oslo\n")
	cols, err := ReadCSV("train.csv", strings.NewReader(csv.String()), ReadOptions{})
	require.NoError(t, err)
	x, city := cols[0].Num, cols[1].Str
	require.NotNil(t, x, "every marker is missing: x stays numeric")
	for i := range markers {
		require.Equal(t, float64(i), x[2*i])
		require.True(t, IsNA(x[2*i+1]), "%q: %v", markers[i], x[2*i+1])
		require.Empty(t, city[2*i+1], "%q", markers[i])
	}
	require.True(t, math.IsNaN(x[len(x)-1]) && !IsNA(x[len(x)-1]), "NAN, not pandas' marker, is a NaN")

	cols, err = ReadJSONL("train.jsonl", strings.NewReader(`{"x": 1, "y": 1, "city": "NA"}
{"x": null, "y": "NaN", "city": "null"}
{"x": "", "city": null}
`), ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"x", "y", "city"}, []string{cols[0].Name, cols[1].Name, cols[2].Name})
	require.Equal(t, 1.0, cols[0].Num[0])
	require.True(t, IsNA(cols[0].Num[1]) && IsNA(cols[0].Num[2]), "null and \"\" are missing")
	require.True(t, math.IsNaN(cols[1].Num[1]) && !IsNA(cols[1].Num[1]), `"NaN" is a NaN`)
	require.True(t, IsNA(cols[1].Num[2]), "an absent key is missing")
	require.Equal(t, []string{"NA", "null", ""}, cols[2].Str, "strings are strings")

	cols, err = ReadJSONL("train.jsonl", strings.NewReader("{\"x\": 1}\n{\"x\": \"NA\"}\n"), ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"1", "NA"}, cols[0].Str, `"NA" makes a column categorical`)
}
