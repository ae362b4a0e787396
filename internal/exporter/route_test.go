package exporter

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/payload"
)

func TestParseRoute(t *testing.T) {
	plain, err := newRuntimeConfig(&config.Config{})
	require.NoError(t, err)
	listed, err := newRuntimeConfig(&config.Config{PredictionPaths: []string{"/v2/models/*/generate_stream", "/api/**"}})
	require.NoError(t, err)
	for _, tc := range []struct {
		rc             *runtimeConfig
		method, path   string
		predict        bool
		model, version string
		format         payload.Format
	}{
		{plain, "POST", "/v1/models/fraud:predict", true, "fraud", "", payload.FormatKServeV1},
		{plain, "POST", "/v1/models/fraud:explain", false, "fraud", "", payload.FormatUnknown},
		// TF-Serving's versions, labels and other verbs.
		{plain, "POST", "/v1/models/fraud/versions/7:predict", true, "fraud", "7", payload.FormatKServeV1},
		{plain, "POST", "/v1/models/fraud/labels/stable:predict", true, "fraud", "stable", payload.FormatKServeV1},
		{plain, "POST", "/v1/models/fraud:classify", true, "fraud", "", payload.FormatKServeV1},
		{plain, "POST", "/v1/models/fraud/versions/7:regress", true, "fraud", "7", payload.FormatKServeV1},
		{plain, "POST", "/v1/models/a/b:predict", true, "", "", payload.FormatUnknown},
		{plain, "GET", "/v1/models/fraud/versions/7", false, "", "", payload.FormatUnknown},
		// TorchServe.
		{plain, "POST", "/predictions/resnet", true, "resnet", "", payload.FormatUnknown},
		{plain, "POST", "/predictions/resnet/2.0", true, "resnet", "2.0", payload.FormatUnknown},
		{plain, "GET", "/predictions/resnet", false, "resnet", "", payload.FormatUnknown},
		{plain, "POST", "/predictions/", true, "", "", payload.FormatUnknown},
		{plain, "POST", "/v2/models/fraud/versions/3/infer", true, "fraud", "3", payload.FormatOIP},
		{plain, "POST", "/v2/models/fraud/infer", true, "fraud", "", payload.FormatOIP},
		{plain, "POST", "/v2/models/a/b/infer", false, "", "", payload.FormatUnknown},
		{plain, "POST", "/v2/models/fraud/ready", false, "", "", payload.FormatUnknown},
		{plain, "POST", "/v2/repository/models/fraud/load", false, "", "", payload.FormatUnknown},
		{plain, "POST", "/invocations", true, "", "", payload.FormatMLflow},
		{plain, "POST", "/v1/chat/completions", true, "", "", payload.FormatUnknown},
		{plain, "GET", "/healthz", false, "", "", payload.FormatUnknown},
		// The generate extension names its model, and is a prediction
		// only when prediction_paths lists it.
		{plain, "POST", "/v2/models/llm/generate_stream", false, "llm", "", payload.FormatUnknown},
		{listed, "POST", "/v2/models/llm/generate_stream", true, "llm", "", payload.FormatUnknown},
		{listed, "POST", "/v2/models/llm/versions/2/generate", false, "llm", "2", payload.FormatUnknown},
		{listed, "POST", "/v1/models/fraud:predict", true, "fraud", "", payload.FormatKServeV1},
		{listed, "GET", "/api/score", true, "", "", payload.FormatUnknown},
	} {
		r := parseRoute([]byte(tc.method), []byte(tc.path), tc.rc)
		require.Equal(t, tc.predict, r.predict, "%s %s predict", tc.method, tc.path)
		require.Equal(t, tc.model, string(r.model), "%s %s model", tc.method, tc.path)
		require.Equal(t, tc.version, string(r.version), "%s %s version", tc.method, tc.path)
		if tc.predict {
			require.Equal(t, tc.format, r.format, "%s %s format", tc.method, tc.path)
		}
	}
}
