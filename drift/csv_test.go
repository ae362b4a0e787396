package drift

import (
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
