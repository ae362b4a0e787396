package payload

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// MLflow's scoring server takes CSV as pandas reads it: a header row, then a
// row per instance.
func TestMLflowCSV(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name:   "header and rows",
			format: FormatMLflow,
			req:    "amount,country,new,note\n12.5,DE,True,\n3,\"FR, Paris\",false,x\n",
			resp:   `{"predictions": [0.1, 0.9]}`,
			want: []plainRecord{
				rec("0.1", "", "amount=12.5", `country="DE"`, "new=true", "note=null"),
				rec("0.9", "", "amount=3", `country="FR, Paris"`, "new=false", `note="x"`),
			},
		},
		{
			// pandas' markers of a missing value are missing, NaN included,
			// as `exporter drift` reads CSV; other text is a string.
			name:   "missing values",
			format: FormatMLflow,
			req:    "a,b,c,d,e\nNA,null,NaN,None,n.a.\n#N/A,<NA>,nan,NULL,NAN\n",
			resp:   `[1, 2]`,
			want: []plainRecord{
				rec("1", "", "a=null", "b=null", "c=null", "d=null", `e="n.a."`),
				rec("2", "", "a=null", "b=null", "c=null", "d=null", "e=NaN"),
			},
		},
		{name: "one column", format: FormatMLflow, req: "x\n1\n2\n", resp: `[5, 6]`, want: []plainRecord{rec("5", "", "x=1"), rec("6", "", "x=2")}},
		{name: "a row of another width", format: FormatMLflow, req: "a,b\n1,2\n3\n", reason: ReasonInvalidJSON},
		{name: "too many rows", format: FormatMLflow, opts: Options{MaxInstances: 2}, req: "a\n1\n2\n3\n", reason: ReasonTooManyInstances},
		{name: "CSV at another path is not read", format: FormatKServeV1, req: "a,b\n1,2\n", reason: ReasonInvalidJSON},
		{name: "not CSV either", format: FormatMLflow, req: strings.Repeat("\"", 3), reason: ReasonInvalidJSON},
		{name: "truncated JSON, a header without rows", format: FormatMLflow, req: `[1, 2, 3`, reason: ReasonInvalidJSON},
	})
}

// A CSV cell that reads as a number is a number that keeps its text: CSV
// has no types, and a categorical column's "007" is not 7 (csvNumbers). A
// JSON number has no text.
func TestMLflowCSVNumbersKeepTheirText(t *testing.T) {
	p := NewParser(Options{})
	var b Batch
	require.NoError(t, p.Parse(FormatMLflow, []byte("zip,x,city,nan\n007,1e3,DE,NAN\n"), nil, &b))
	require.Len(t, b.Records, 1)
	want := []struct {
		kind Kind
		num  float64
		text string
	}{{KindNumber, 7, "007"}, {KindNumber, 1000, "1e3"}, {KindString, 0, "DE"}, {KindNumber, math.NaN(), "NAN"}}
	for i, f := range b.Records[0].Features {
		require.Equal(t, want[i].kind, f.Value.Kind, string(f.Name))
		if want[i].kind == KindNumber {
			require.Equal(t, math.IsNaN(want[i].num), math.IsNaN(f.Value.Num), string(f.Name))
			if !math.IsNaN(want[i].num) {
				require.Equal(t, want[i].num, f.Value.Num, string(f.Name))
			}
		}
		require.Equal(t, want[i].text, string(f.Value.Str), string(f.Name))
	}

	b.Reset()
	require.NoError(t, p.Parse(FormatMLflow, []byte(`{"dataframe_split": {"columns": ["zip"], "data": [[7]]}}`), nil, &b))
	require.Equal(t, KindNumber, b.Records[0].Features[0].Value.Kind)
	require.Nil(t, b.Records[0].Features[0].Value.Str)
}
