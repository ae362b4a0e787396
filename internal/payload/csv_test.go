package payload

import (
	"strings"
	"testing"
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
