package payload

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFormatString(t *testing.T) {
	for _, f := range []Format{FormatUnknown, FormatKServeV1, FormatOIP, FormatMLflow, FormatJSON} {
		got, err := ParseFormat(f.String())
		require.NoError(t, err)
		require.Equal(t, f, got)
	}
	require.Equal(t, "unknown", Format(200).String())
	for _, s := range []string{"", "auto", " AUTO "} {
		f, err := ParseFormat(s)
		require.NoError(t, err)
		require.Equal(t, FormatUnknown, f)
	}
	f, err := ParseFormat("OIP_v2")
	require.NoError(t, err)
	require.Equal(t, FormatOIP, f)
	_, err = ParseFormat("protobuf")
	require.EqualError(t, err, `unknown payload format "protobuf" (want one of kserve_v1, oip_v2, mlflow, seldon_v1, json, auto)`)
	// The gRPC forms are the transport's to choose, not configuration's.
	require.Equal(t, "oip_grpc", FormatOIPGRPC.String())
	require.Equal(t, "tfserving_grpc", FormatTFServingGRPC.String())
	for _, f := range []string{"oip_grpc", "tfserving_grpc", "tfserving_grpc_classify", "tfserving_grpc_regress", "tfserving_grpc_multi_inference"} {
		_, err = ParseFormat(f)
		require.Error(t, err, f)
	}
}

func TestDetectPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Format
	}{
		{"/v1/models/sklearn-iris:predict", FormatKServeV1},
		{"/v1/models/half_plus_three/versions/123:predict", FormatKServeV1},
		{"/v1/models/half_plus_three/labels/stable:regress", FormatKServeV1},
		{"/v1/models/m:classify?x=1", FormatKServeV1},
		{"/serving/team-a/v1/models/m:predict", FormatKServeV1},
		{"/v1/models/m:explain", FormatUnknown},
		{"/v1/models/:predict", FormatUnknown},
		{"/v1/models/m", FormatUnknown},
		{"/v2/models/mymodel/infer", FormatOIP},
		{"/v2/models/mymodel/versions/v10/infer", FormatOIP},
		{"/v2/models/mymodel/versions//infer", FormatUnknown},
		{"/v2/models//infer", FormatUnknown},
		{"/v2/models/mymodel/ready", FormatUnknown},
		{"/v2/models/mymodel", FormatUnknown},
		{"/v2/models/mymodel/generate", FormatUnknown},
		{"/invocations", FormatMLflow},
		{"/invocations?format=pandas-split", FormatMLflow},
		{"/predict", FormatUnknown},
		{"", FormatUnknown},
		{"/", FormatUnknown},
	} {
		t.Run(tc.path, func(t *testing.T) {
			require.Equal(t, tc.want, DetectPath([]byte(tc.path)))
		})
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name, req string
		want      Format
		reason    Reason
	}{
		{"oip", `{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}`, FormatOIP, ""},
		{"oip datatype not first", `{"id": "1", "inputs": [{"data": [1], "shape": [1], "name": "x", "datatype": "FP32"}]}`, FormatOIP, ""},
		{"tf inputs list", `{"inputs": [[1, 2]]}`, FormatKServeV1, ""},
		{"tf inputs list of objects", `{"inputs": [{"a": 1}]}`, FormatKServeV1, ""},
		{"tf inputs object", `{"inputs": {"a": [1]}}`, FormatKServeV1, ""},
		{"instances", `{"instances": [[1]]}`, FormatKServeV1, ""},
		{"examples", `{"examples": [{"x": 1}]}`, FormatKServeV1, ""},
		{"dataframe_split", `{"dataframe_split": {"columns": ["a"], "data": [[1]]}}`, FormatMLflow, ""},
		{"dataframe_records", `{"dataframe_records": [{"a": 1}]}`, FormatMLflow, ""},
		{"pandas split orient", `{"columns": ["a"], "data": [[1]]}`, FormatMLflow, ""},
		{"plain object", `{"a": 1, "instances": 3}`, FormatJSON, ""},
		{"array of objects", `[{"a": 1}]`, FormatJSON, ""},
		{"array of arrays", `[[1, 2]]`, FormatJSON, ""},
		{"empty array", `[]`, FormatJSON, ""},
		{"array of numbers", `[1, 2]`, FormatUnknown, ReasonUnknownFormat},
		{"number", `3`, FormatUnknown, ReasonUnknownFormat},
		{"string", `"x"`, FormatUnknown, ReasonUnknownFormat},
		{"null", `null`, FormatUnknown, ReasonUnknownFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			err := NewParser(Options{}).Parse(FormatUnknown, []byte(tc.req), nil, &b)
			require.Equal(t, tc.reason, reasonOf(t, err))
			require.Equal(t, tc.want, b.Format)
		})
	}
}
