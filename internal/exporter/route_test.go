package exporter

import (
	"strings"
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
		{plain, "POST", "/openai/v1/completions", true, "", "", payload.FormatUnknown},
		{plain, "POST", "/api/generate", true, "", "", payload.FormatUnknown},
		{plain, "GET", "/healthz", false, "", "", payload.FormatUnknown},
		// Seldon Core 1: its ingress names the deployment; feedback is
		// not a prediction, unless prediction_paths lists it.
		{plain, "POST", "/seldon/prod/iris/api/v1.0/predictions", true, "iris", "", payload.FormatSeldon},
		{plain, "POST", "/api/v1.0/predictions", true, "", "", payload.FormatSeldon},
		{plain, "POST", "/api/v0.1/predictions", true, "", "", payload.FormatSeldon},
		{plain, "POST", "/seldon/prod/iris/extra/api/v1.0/predictions", true, "", "", payload.FormatSeldon},
		{plain, "POST", "/seldon/prod/iris/api/v1.0/feedback", false, "iris", "", payload.FormatUnknown},
		{plain, "POST", "/api/v1.0/feedback", false, "", "", payload.FormatUnknown},
		{listed, "POST", "/api/v1.0/feedback", true, "", "", payload.FormatUnknown},
		// The generate extension names its model, and is a prediction
		// only when prediction_paths lists it.
		{plain, "POST", "/v2/models/llm/generate_stream", false, "llm", "", payload.FormatUnknown},
		{listed, "POST", "/v2/models/llm/generate_stream", true, "llm", "", payload.FormatUnknown},
		{listed, "POST", "/v2/models/llm/versions/2/generate", false, "llm", "2", payload.FormatUnknown},
		{listed, "POST", "/v1/models/fraud:predict", true, "fraud", "", payload.FormatKServeV1},
		{listed, "GET", "/api/score", true, "", "", payload.FormatUnknown},
	} {
		r := parseRoute([]byte(tc.method), []byte(tc.path), tc.rc)
		llm := strings.HasSuffix(tc.path, "completions") || strings.HasPrefix(tc.path, "/api/generate") || strings.HasPrefix(tc.path, "/openai/")
		require.Equal(t, llm, r.bodyModel, "%s %s names its model in its body", tc.method, tc.path)
		require.Equal(t, tc.predict, r.predict, "%s %s predict", tc.method, tc.path)
		require.Equal(t, tc.model, string(r.model), "%s %s model", tc.method, tc.path)
		require.Equal(t, tc.version, string(r.version), "%s %s version", tc.method, tc.path)
		if tc.predict {
			require.Equal(t, tc.format, r.format, "%s %s format", tc.method, tc.path)
		}
	}
}

// The APIs of generative models name the model in the request's body: a
// vLLM or Ollama serving several models gets a series per model. A model
// header still wins; a body that names none, or can't be read, is the
// default model's.
func TestProxyModelFromBody(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, nil)
	proxy := "http://" + e.ProxyAddr()
	for _, tc := range []struct {
		path, body string
		header     []string
	}{
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"model":"llama-3-8b"}`, nil},
		{"/openai/v1/completions", `{"model":"llama-3-8b","prompt":"Hi"}`, nil},
		{"/api/generate", `{"model":"mistral","prompt":"Hi"}`, nil},
		{"/v1/chat/completions", `{"model":"mistral"}`, []string{"X-Model-Name", "pinned"}},
		{"/v1/chat/completions", `{"messages":[]}`, nil},
		{"/v1/chat/completions", `{"model":`, nil},
		{"/v1/chat/completions", `{"model":{"name":"x"}}`, nil},
	} {
		st, _ := do(t, "POST", proxy+tc.path, tc.body, tc.header...)
		require.Equal(t, 200, st)
	}
	for model, want := range map[string]float64{"llama-3-8b": 2, "mistral": 1, "pinned": 1, "default": 3} {
		require.Equal(t, want, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": model}), model)
	}
}
