package payload

import "testing"

func TestMLflow(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			// MLflow serving docs: dataframe_split.
			name: "dataframe_split",
			req: `{"dataframe_split": {
			  "columns": ["feature1", "feature2", "feature3", "feature4"],
			  "data": [[1, 2, 3, 4], [5, 6, 7, 8]]
			}}`,
			resp:       `{"predictions": [0, 1]}`,
			wantFormat: FormatMLflow,
			want: []plainRecord{
				rec("0", "", "feature1=1", "feature2=2", "feature3=3", "feature4=4"),
				rec("1", "", "feature1=5", "feature2=6", "feature3=7", "feature4=8"),
			},
		},
		{
			name: "dataframe_split with index and numeric column labels",
			req:  `{"dataframe_split": {"index": [7], "columns": [0, "b", null], "data": [[1.5, "x", true]]}}`,
			resp: `{"predictions": [{"label": "yes", "proba": 0.9}]}`,
			want: []plainRecord{rec(`"yes"`, "", "0=1.5", `b="x"`, "2=true")},
		},
		{
			name: "dataframe_records",
			req: `{"dataframe_records": [
			  {"fixed acidity": 7.4, "volatile acidity": 0.7, "alcohol": 9.4},
			  {"fixed acidity": 7.8, "volatile acidity": 0.88, "alcohol": 9.8}
			], "params": {"threshold": 0.5}}`,
			resp:       `{"predictions": [5.03, 5.12]}`,
			wantFormat: FormatMLflow,
			want: []plainRecord{
				rec("5.03", "", "fixed acidity=7.4", "volatile acidity=0.7", "alcohol=9.4"),
				rec("5.12", "", "fixed acidity=7.8", "volatile acidity=0.88", "alcohol=9.8"),
			},
		},
		{
			// MLflow local deployment docs: tensor input.
			name:   "inputs list",
			format: FormatMLflow,
			req:    `{"inputs": [[1, 2], [3, 4], [5, 6]]}`,
			resp:   `{"predictions": [[0.1, 0.9], [0.6, 0.4], [0.5, 0.5]]}`,
			want: []plainRecord{
				rec("null", "0.1 0.9", "0=1", "1=2"),
				rec("null", "0.6 0.4", "0=3", "1=4"),
				rec("null", "0.5 0.5", "0=5", "1=6"),
			},
		},
		{
			name:   "inputs dict",
			format: FormatMLflow,
			req:    `{"inputs": {"a": [1, 2], "b": ["x", "y"]}}`,
			resp:   `{"predictions": {"class": ["p", "q"], "score": [0.7, 0.2]}}`,
			want:   []plainRecord{rec(`"p"`, "", "a=1", `b="x"`), rec(`"q"`, "", "a=2", `b="y"`)},
		},
		{
			name:   "instances",
			format: FormatMLflow,
			req:    `{"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}`,
			resp:   `{"predictions": ["yes", "no"]}`,
			want:   []plainRecord{rec(`"yes"`, "", "a=1", `b="x"`), rec(`"no"`, "", "a=2", `b="y"`)},
		},
		{
			name:   "DataFrame output as records",
			format: FormatMLflow,
			req:    `{"dataframe_records": [{"a": 1}, {"a": 2}]}`,
			resp:   `{"predictions": [{"p0": 0.1, "p1": 0.9}, {"p0": 0.8, "p1": 0.2}]}`,
			want:   []plainRecord{rec("null", "0.1 0.9", "a=1"), rec("null", "0.8 0.2", "a=2")},
		},
		{
			// MLflow 1.x: pandas split orient without a wrapper, and a bare array response.
			name:       "MLflow 1.x split orient",
			req:        `{"columns": ["x", "y"], "data": [[1, 2], [3, 4]]}`,
			resp:       `[10.5, 11.5]`,
			wantFormat: FormatMLflow,
			want:       []plainRecord{rec("10.5", "", "x=1", "y=2"), rec("11.5", "", "x=3", "y=4")},
		},
		{
			name:   "MLflow 1.x records orient",
			format: FormatMLflow,
			req:    `[{"x": 1}, {"x": 3}]`,
			resp:   `[0, 1]`,
			want:   []plainRecord{rec("0", "", "x=1"), rec("1", "", "x=3")},
		},
		{
			name:   "row length differs from columns",
			req:    `{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}`,
			reason: ReasonShapeMismatch,
		},
		{
			name:   "row is not an array",
			req:    `{"dataframe_split": {"columns": ["a"], "data": [1]}}`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "split without data",
			req:    `{"dataframe_split": {"columns": ["a"]}}`,
			reason: ReasonMissingField,
		},
		{
			name:   "no known field",
			format: FormatMLflow,
			req:    `{"rows": [1]}`,
			reason: ReasonMissingField,
		},
		{
			// MLflow's scoring server error body.
			name:   "error response",
			req:    `{"dataframe_records": [{"a": 1}]}`,
			resp:   `{"error_code": "BAD_REQUEST", "message": "Invalid input. Expected column 'b'."}`,
			want:   []plainRecord{rec("null", "", "a=1")},
			reason: ReasonInvalidResponse,
		},
	})
}
