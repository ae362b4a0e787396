package payload

import "testing"

func TestOIP(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			// The Open Inference Protocol spec example: input1's shape [3] disagrees with
			// input0's batch size 2, so there are no records to build.
			name:       "spec example with mismatched batch sizes",
			wantFormat: FormatUnknown,
			req: `{
			  "id" : "42",
			  "inputs" : [
			    {"name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "data" : [ 1, 2, 3, 4 ]},
			    {"name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "data" : [ true ]}
			  ],
			  "outputs" : [{"name" : "output0"}]
			}`,
			reason: ReasonShapeMismatch,
		},
		{
			name: "two inputs",
			req: `{
			  "id" : "42",
			  "inputs" : [
			    {"name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "data" : [ 1, 2, 3, 4 ]},
			    {"name" : "input1", "shape" : [ 2 ], "datatype" : "BOOL", "data" : [ true, false ]}
			  ],
			  "outputs" : [{"name" : "output0"}]
			}`,
			resp: `{
			  "id" : "42",
			  "outputs" : [{"name" : "output0", "shape" : [ 2, 2 ], "datatype"  : "FP32", "data" : [ 1.0, 1.1, 2.0, 2.1 ]}]
			}`,
			wantFormat: FormatOIP,
			want: []plainRecord{
				rec("null", "1 1.1", "input0_0=1", "input0_1=2", "input1=true"),
				rec("null", "2 2.1", "input0_0=3", "input0_1=4", "input1=false"),
			},
		},
		{
			// KServe v2 sklearn-iris example (MLServer): nested data, INT64 labels.
			name: "sklearn iris",
			opts: Options{FeatureNames: []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}},
			req: `{
			  "inputs": [{
			    "name": "input-0", "shape": [2, 4], "datatype": "FP32",
			    "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
			  }]
			}`,
			resp: `{
			  "model_name": "sklearn-v2-iris", "model_version": null, "id": "823248cc-d770-4a51-9606-16803395569c",
			  "parameters": {"content_type": null, "headers": null},
			  "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "parameters": null, "data": [1, 1]}]
			}`,
			want: []plainRecord{
				rec("1", "", "sepal_length=6.8", "sepal_width=2.8", "petal_length=4.8", "petal_width=1.4"),
				rec("1", "", "sepal_length=6", "sepal_width=3.4", "petal_length=4.5", "petal_width=1.6"),
			},
		},
		{
			name: "single input named by position",
			req:  `{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}`,
			want: []plainRecord{rec("null", "", "x_0=1", "x_1=2", "x_2=3"), rec("null", "", "x_0=4", "x_1=5", "x_2=6")},
		},
		{
			name: "single input with one feature per instance",
			req:  `{"inputs": [{"name": "age", "shape": [3, 1], "datatype": "INT32", "data": [[31], [45], [62]]}]}`,
			resp: `{"outputs": [{"name": "out", "shape": [3, 1], "datatype": "FP32", "data": [0.1, 0.5, 0.9]}]}`,
			want: []plainRecord{rec("0.1", "", "age=31"), rec("0.5", "", "age=45"), rec("0.9", "", "age=62")},
		},
		{
			name: "rank 3 input is flattened per instance",
			req:  `{"inputs": [{"name": "img", "shape": [1, 2, 2], "datatype": "UINT8", "data": [[[1, 2], [3, 4]]]}]}`,
			want: []plainRecord{rec("null", "", "img_0=1", "img_1=2", "img_2=3", "img_3=4")},
		},
		{
			// MLServer pandas codec: one input per column, request-level content_type.
			name: "columns as inputs with parameters",
			req: `{
			  "parameters": {"content_type": "pd"},
			  "inputs": [
			    {"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [39, 50]},
			    {"name": "workclass", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": ["State-gov", "Private"]},
			    {"name": "score", "shape": [2], "datatype": "FP32", "data": [NaN, 0.5]}
			  ]
			}`,
			resp: `{"model_name": "income", "outputs": [{"name": "predict", "shape": [2, 1], "datatype": "BYTES", "parameters": {"content_type": "str"}, "data": [">50K", "<=50K"]}]}`,
			want: []plainRecord{
				rec(`">50K"`, "", "age=39", `workclass="State-gov"`, "score=NaN"),
				rec(`"<=50K"`, "", "age=50", `workclass="Private"`, "score=0.5"),
			},
		},
		{
			// skl2onnx classifiers on Triton have a label and a probabilities output.
			name: "label and probabilities outputs",
			req:  `{"inputs": [{"name": "float_input", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}`,
			resp: `{"model_name": "clf", "model_version": "1", "outputs": [
			  {"name": "output_label", "datatype": "INT64", "shape": [2], "data": [0, 2]},
			  {"name": "output_probability", "datatype": "FP32", "shape": [2, 3], "data": [0.7, 0.2, 0.1, 0.1, 0.1, 0.8]}
			]}`,
			want: []plainRecord{
				rec("0", "0.7 0.2 0.1", "float_input_0=1", "float_input_1=2"),
				rec("2", "0.1 0.1 0.8", "float_input_0=3", "float_input_1=4"),
			},
		},
		{
			name: "probabilities first, then label",
			req:  `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`,
			resp: `{"outputs": [
			  {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.3, 0.7]},
			  {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["yes"]}
			]}`,
			want: []plainRecord{rec(`"yes"`, "0.3 0.7", "x=1")},
		},
		{
			name: "Output option",
			opts: Options{Output: "output_probability"},
			req:  `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`,
			resp: `{"outputs": [
			  {"name": "output_label", "datatype": "INT64", "shape": [1], "data": [1]},
			  {"name": "output_probability", "datatype": "FP32", "shape": [1, 2], "data": [0.3, 0.7]}
			]}`,
			want: []plainRecord{rec("null", "0.3 0.7", "x=1")},
		},
		{
			name:   "Output option names an absent output",
			opts:   Options{Output: "nope"},
			req:    `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`,
			resp:   `{"outputs": [{"name": "y", "datatype": "FP32", "shape": [1], "data": [1]}]}`,
			want:   []plainRecord{rec("null", "", "x=1")},
			reason: ReasonMissingField,
		},
		{
			name: "BOOL as numbers and scalar shape",
			req:  `{"inputs": [{"name": "flag", "shape": [], "datatype": "BOOL", "data": [1]}]}`,
			resp: `{"outputs": [{"name": "y", "datatype": "BOOL", "shape": [1], "data": [false]}]}`,
			want: []plainRecord{rec("false", "", "flag=true")},
		},
		{
			name: "empty batch",
			req:  `{"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]}`,
			resp: `{"outputs": [{"name": "y", "datatype": "FP32", "shape": [0], "data": []}]}`,
		},
		{
			name:   "data shorter than shape",
			req:    `{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}`,
			reason: ReasonShapeMismatch,
		},
		{
			name:   "shape overflows",
			req:    `{"inputs": [{"name": "x", "shape": [4294967296, 4294967296, 0], "datatype": "FP32", "data": []}]}`,
			reason: ReasonShapeMismatch,
		},
		{
			name:   "negative dimension",
			req:    `{"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": [1, 2]}]}`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "unknown datatype",
			req:    `{"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}]}`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "object in data",
			req:    `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [{"a": 1}]}]}`,
			reason: ReasonTypeMismatch,
		},
		{
			// Triton's binary tensor extension: the data follows the JSON.
			name:   "binary data",
			format: FormatOIP,
			req:    `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}`,
			reason: ReasonMissingField,
		},
		{
			name:   "inputs not an array",
			format: FormatOIP,
			req:    `{"inputs": {"x": [1]}}`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "too many instances",
			opts:   Options{MaxInstances: 2},
			req:    `{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}`,
			reason: ReasonTooManyInstances,
		},
		{
			name:   "output batch size mismatch",
			req:    `{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}`,
			resp:   `{"outputs": [{"name": "y", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}`,
			want:   []plainRecord{rec("null", "", "x=1"), rec("null", "", "x=2")},
			reason: ReasonShapeMismatch,
		},
		{
			name:   "error response",
			req:    `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`,
			resp:   `{"error": "unexpected inference input 'x' for model 'm'"}`,
			want:   []plainRecord{rec("null", "", "x=1")},
			reason: ReasonInvalidResponse,
		},
		{
			name:    "MaxFeatures over several inputs",
			opts:    Options{MaxFeatures: 3},
			req:     `{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}, {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}`,
			want:    []plainRecord{rec("null", "", "a_0=1", "a_1=2", "b_0=3")},
			dropped: 1,
		},
	})
}
