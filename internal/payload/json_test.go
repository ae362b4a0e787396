package payload

import "testing"

func TestJSON(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name:       "one instance and a scalar",
			req:        `{"age": 42, "income": 52000.5, "city": "Oslo", "member": true, "referrer": null}`,
			resp:       `0.87`,
			wantFormat: FormatJSON,
			want:       []plainRecord{rec("0.87", "", "age=42", "income=52000.5", `city="Oslo"`, "member=true", "referrer=null")},
		},
		{
			name: "nested objects are flattened",
			req:  `{"user": {"age": 42, "geo": {"country": "NO"}}, "tags": ["a", "b"], "n": 1}`,
			resp: `{"prediction": "churn", "probabilities": [0.3, 0.7], "model_version": "v3"}`,
			want: []plainRecord{rec(`"churn"`, "0.3 0.7", "user.age=42", `user.geo.country="NO"`, `tags.0="a"`, `tags.1="b"`, "n=1")},
		},
		{
			name: "numeric strings stay strings",
			req:  `{"zip": "0150", "amount": "12.5"}`,
			resp: `"12"`,
			want: []plainRecord{rec(`"12"`, "", `zip="0150"`, `amount="12.5"`)},
		},
		{
			name: "array of objects and array response",
			req:  `[{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]`,
			resp: `[0.1, 0.2]`,
			want: []plainRecord{rec("0.1", "", "x=1", `y="a"`), rec("0.2", "", "x=2", `y="b"`)},
		},
		{
			name: "array of arrays",
			opts: Options{FeatureNames: []string{"x", "y"}},
			req:  `[[1, 2], [3, 4]]`,
			resp: `{"predictions": [1, 0]}`,
			want: []plainRecord{rec("1", "", "x=1", "y=2"), rec("0", "", "x=3", "y=4")},
		},
		{
			name: "vector for one instance",
			req:  `{"x": 1}`,
			resp: `[0.2, 0.5, 0.3]`,
			want: []plainRecord{rec("null", "0.2 0.5 0.3", "x=1")},
		},
		{
			name: "well-known keys",
			req:  `{"x": 1}`,
			resp: `{"Score": 0.42}`,
			want: []plainRecord{rec("0.42", "", "x=1")},
		},
		{
			name: "result key with one-element vector",
			req:  `{"x": 1}`,
			resp: `{"result": [7]}`,
			want: []plainRecord{rec("7", "", "x=1")},
		},
		{
			name: "single unknown field",
			req:  `{"x": 1}`,
			resp: `{"y_hat": 3.2}`,
			want: []plainRecord{rec("3.2", "", "x=1")},
		},
		{
			name: "columnar response for several instances",
			req:  `[{"x": 1}, {"x": 2}]`,
			resp: `{"predictions": ["a", "b"], "probabilities": [[0.9, 0.1], [0.2, 0.8]], "latency_ms": 3}`,
			want: []plainRecord{rec(`"a"`, "0.9 0.1", "x=1"), rec(`"b"`, "0.2 0.8", "x=2")},
		},
		{
			name: "bool prediction",
			req:  `{"x": 1}`,
			resp: `{"label": false}`,
			want: []plainRecord{rec("false", "", "x=1")},
		},
		{
			name:   "scalar response for several instances",
			req:    `[{"x": 1}, {"x": 2}]`,
			resp:   `1`,
			want:   []plainRecord{rec("null", "", "x=1"), rec("null", "", "x=2")},
			reason: ReasonShapeMismatch,
		},
		{
			name:   "columnar response without batched field",
			req:    `[{"x": 1}, {"x": 2}]`,
			resp:   `{"prediction": 1}`,
			want:   []plainRecord{rec("null", "", "x=1"), rec("null", "", "x=2")},
			reason: ReasonShapeMismatch,
		},
		{
			name:   "object without a prediction",
			req:    `{"x": 1}`,
			resp:   `{"a": "p", "b": "q"}`,
			want:   []plainRecord{rec("null", "", "x=1")},
			reason: ReasonMissingField,
		},
		{
			name:   "error object",
			req:    `{"x": 1}`,
			resp:   `{"error": "model not loaded"}`,
			want:   []plainRecord{rec("null", "", "x=1")},
			reason: ReasonInvalidResponse,
		},
		{
			name:   "scalar body",
			format: FormatJSON,
			req:    `42`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "empty key",
			req:    `{"": 1}`,
			want:   []plainRecord{rec("null", "", "=1")},
			reason: "",
		},
		{
			name:   "escaped keys and strings",
			req:    `{"caf\u00e9": "a\"b", "tab\tkey": "\u00e9"}`,
			resp:   `{"label": "\u00e9t\u00e9"}`,
			want:   []plainRecord{rec(`"été"`, "", `café="a\"b"`, "tab\tkey=\"é\"")},
			reason: "",
		},
	})
}
