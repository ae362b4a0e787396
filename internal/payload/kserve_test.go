package payload

import "testing"

func TestKServeV1(t *testing.T) {
	iris := Options{FeatureNames: []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}}
	runParseCases(t, []parseCase{
		{
			// KServe sklearn-iris quickstart.
			name:       "sklearn iris",
			opts:       iris,
			req:        `{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}`,
			resp:       `{"predictions": [1, 1]}`,
			wantFormat: FormatKServeV1,
			want: []plainRecord{
				rec("1", "", "sepal_length=6.8", "sepal_width=2.8", "petal_length=4.8", "petal_width=1.4"),
				rec("1", "", "sepal_length=6", "sepal_width=3.4", "petal_length=4.5", "petal_width=1.6"),
			},
		},
		{
			name:   "fewer feature names than positions",
			opts:   Options{FeatureNames: []string{"a"}},
			format: FormatKServeV1,
			req:    `{"instances": [[1, 2, 3]]}`,
			resp:   `{"predictions": [0.5]}`,
			want:   []plainRecord{rec("0.5", "", "a=1", "1=2", "2=3")},
		},
		{
			// TF-Serving REST example, half_plus_three model.
			name: "scalar instances",
			req:  `{"instances": [1.0, 2.0, 5.0]}`,
			resp: `{"predictions": [3.5, 4.0, 5.5]}`,
			want: []plainRecord{rec("3.5", "", "0=1"), rec("4", "", "0=2"), rec("5.5", "", "0=5")},
		},
		{
			// TF-Serving row format with several named inputs.
			name: "named instances with tensors",
			req: `{
			 "instances": [
			   {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
			   {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}
			 ]
			}`,
			resp: `{"predictions": [{"label": "a", "scores": [0.9, 0.1]}, {"label": "b", "scores": [0.2, 0.8]}]}`,
			want: []plainRecord{
				rec(`"a"`, "0.9 0.1", `tag="foo"`, "signal.0=1", "signal.1=2", "signal.2=3", "signal.3=4", "signal.4=5",
					"sensor.0.0=1", "sensor.0.1=2", "sensor.1.0=3", "sensor.1.1=4"),
				rec(`"b"`, "0.2 0.8", `tag="bar"`, "signal.0=3", "signal.1=4", "signal.2=1", "signal.3=2", "signal.4=5",
					"sensor.0.0=4", "sensor.0.1=5", "sensor.1.0=6", "sensor.1.1=8"),
			},
		},
		{
			// The same request in TF-Serving's columnar format, with columnar outputs.
			name: "columnar inputs and outputs",
			req: `{
			 "inputs": {
			   "tag": ["foo", "bar"],
			   "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
			   "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]
			 }
			}`,
			resp:       `{"outputs": {"classes": ["x", "y"], "probabilities": [[0.7, 0.3], [0.4, 0.6]]}}`,
			wantFormat: FormatKServeV1,
			want: []plainRecord{
				rec(`"x"`, "0.7 0.3", `tag="foo"`, "signal.0=1", "signal.1=2", "signal.2=3", "signal.3=4", "signal.4=5",
					"sensor.0.0=1", "sensor.0.1=2", "sensor.1.0=3", "sensor.1.1=4"),
				rec(`"y"`, "0.4 0.6", `tag="bar"`, "signal.0=3", "signal.1=4", "signal.2=1", "signal.3=2", "signal.4=5",
					"sensor.0.0=4", "sensor.0.1=5", "sensor.1.0=6", "sensor.1.1=8"),
			},
		},
		{
			name: "columnar inputs with different batch sizes",
			req:  `{"inputs": {"a": [1, 2], "b": [1, 2, 3]}}`,
			want: nil, reason: ReasonShapeMismatch,
		},
		{
			name: "inputs as a list",
			req:  `{"signature_name": "serving_default", "inputs": [[0.1, 0.2], [0.3, 0.4]]}`,
			resp: `{"outputs": [[0.9], [0.1]]}`,
			want: []plainRecord{rec("0.9", "", "0=0.1", "1=0.2"), rec("0.1", "", "0=0.3", "1=0.4")},
		},
		{
			name: "single instance columnar outputs",
			req:  `{"inputs": {"x": [[1, 2]]}}`,
			resp: `{"outputs": {"scores": [[0.25, 0.75]], "classes": [["no", "yes"]]}}`,
			want: []plainRecord{rec("null", "0.25 0.75", "x.0=1", "x.1=2")},
		},
		{
			name: "object instances and predict_proba",
			req: `{"instances": [
			  {"age": 39, "workclass": "State-gov", "hours_per_week": 40, "native_country": null, "married": false},
			  {"age": 50, "workclass": "Self-emp-not-inc", "hours_per_week": 13, "native_country": "United-States", "married": true}
			]}`,
			resp: `{"predictions": [[0.83, 0.17], [0.41, 0.59]]}`,
			want: []plainRecord{
				rec("null", "0.83 0.17", "age=39", `workclass="State-gov"`, "hours_per_week=40", "native_country=null", "married=false"),
				rec("null", "0.41 0.59", "age=50", `workclass="Self-emp-not-inc"`, "hours_per_week=13", `native_country="United-States"`, "married=true"),
			},
		},
		{
			name: "binary input and string predictions",
			req:  `{"instances": [{"image_bytes": {"b64": "aW1hZ2UgYnl0ZXM="}, "key": "1"}]}`,
			resp: `{"predictions": [{"key": "1", "label": "cat", "probability": 0.93}]}`,
			want: []plainRecord{rec(`"cat"`, "", `image_bytes.b64="aW1hZ2UgYnl0ZXM="`, `key="1"`)},
		},
		{
			name: "object prediction without known keys",
			req:  `{"instances": [[1], [2]]}`,
			resp: `{"predictions": [{"p_no": 0.8, "p_yes": 0.2, "model": "m1"}, {"p_no": 0.3, "p_yes": 0.7, "model": "m1"}]}`,
			want: []plainRecord{rec("null", "0.8 0.2", "0=1"), rec("null", "0.3 0.7", "0=2")},
		},
		{
			name: "Output option picks an object field",
			opts: Options{Output: "p_yes"},
			req:  `{"instances": [[1], [2]]}`,
			resp: `{"predictions": [{"p_no": 0.8, "p_yes": 0.2}, {"p_no": 0.3, "p_yes": 0.7}]}`,
			want: []plainRecord{rec("0.2", "", "0=1"), rec("0.7", "", "0=2")},
		},
		{
			name:   "Output option field absent",
			opts:   Options{Output: "missing"},
			req:    `{"instances": [[1]]}`,
			resp:   `{"predictions": [{"p_no": 0.8}]}`,
			want:   []plainRecord{rec("null", "", "0=1")},
			reason: ReasonMissingField,
		},
		{
			// TF-Serving classify API: examples plus shared context; results are [label, score] pairs.
			name: "classify examples with context",
			req: `{
			  "signature_name": "tensorflow/serving/classify",
			  "context": {"country": "NZ"},
			  "examples": [{"age": 30, "caption": "seaside"}, {"age": 45, "caption": "mountains"}]
			}`,
			resp: `{"result": [[["sea", 0.8], ["hill", 0.2]], [["sea", 0.1], ["hill", 0.9]]]}`,
			want: []plainRecord{
				rec(`"sea"`, "0.8 0.2", "age=30", `caption="seaside"`, `country="NZ"`),
				rec(`"hill"`, "0.1 0.9", "age=45", `caption="mountains"`, `country="NZ"`),
			},
		},
		{
			// TF-Serving REST example: regress on half_plus_three.
			name: "regress examples",
			req:  `{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}`,
			resp: `{"results": [3.5, 4.0]}`,
			want: []plainRecord{rec("3.5", "", "x=1"), rec("4", "", "x=2")},
		},
		{
			name: "regression output of shape [N,1]",
			req:  `{"instances": [[1, 2], [3, 4]]}`,
			resp: `{"predictions": [[0.25], [0.5]]}`,
			want: []plainRecord{rec("0.25", "", "0=1", "1=2"), rec("0.5", "", "0=3", "1=4")},
		},
		{
			name: "no response",
			req:  `{"instances": [[1]]}`,
			want: []plainRecord{rec("null", "", "0=1")},
		},
		{
			name:   "predictions count mismatch keeps features",
			req:    `{"instances": [[1], [2]]}`,
			resp:   `{"predictions": [1, 0, 1]}`,
			want:   []plainRecord{rec("null", "", "0=1"), rec("null", "", "0=2")},
			reason: ReasonShapeMismatch,
		},
		{
			// TF-Serving error body.
			name:   "error response",
			req:    `{"instances": [1.0, 5.0]}`,
			resp:   `{ "error": "Servable not found for request: Latest(half)" }`,
			want:   []plainRecord{rec("null", "", "0=1"), rec("null", "", "0=5")},
			reason: ReasonInvalidResponse,
		},
		{
			name:   "response without predictions",
			req:    `{"instances": [1.0]}`,
			resp:   `{"model_name": "m"}`,
			want:   []plainRecord{rec("null", "", "0=1")},
			reason: ReasonMissingField,
		},
		{
			name:   "instances not an array",
			format: FormatKServeV1,
			req:    `{"instances": {"a": 1}}`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "no instances",
			format: FormatKServeV1,
			req:    `{"data": [1]}`,
			reason: ReasonMissingField,
		},
		{
			name:   "body is an array",
			format: FormatKServeV1,
			req:    `[1]`,
			reason: ReasonTypeMismatch,
		},
	})
}
