package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp keeps one process-wide goroutine that updates the Date header,
		// and a worker pool cleaner that notices a stopped server only after its
		// 10s sleep.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// start runs a server with opts on 127.0.0.1:0 until the test ends and returns
// its base URL and a client for it.
func start(t *testing.T, opts options) (string, *http.Client) {
	t.Helper()
	if opts.ModelName == "" {
		opts.ModelName, opts.ModelVersion = "fraud", "v1"
	}
	s, err := newServer(opts)
	require.NoError(t, err)
	return serve(t, s)
}

// serve serves s on loopback until the test ends, and returns its base URL
// and a client.
func serve(t *testing.T, s *server) (string, *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		cancel()
		require.NoError(t, <-done)
	})
	return "http://" + ln.Addr().String(), client
}

// do sends a request and returns the status and the decoded JSON body.
func do(t *testing.T, client *http.Client, method, url, body string, header ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var m map[string]any
	if strings.TrimSpace(string(b)) != "" {
		require.NoError(t, json.Unmarshal(b, &m), "body %s", b)
	}
	return resp.StatusCode, m
}

// vec builds a feature vector from name/value pairs.
func vec(kv ...any) fraud.Vector {
	var x fraud.Vector
	for i := 0; i < len(kv); i += 2 {
		j, ok := fraud.Index(kv[i].(string))
		if !ok {
			panic(kv[i])
		}
		x[j] = float64(kv[i+1].(int))
	}
	return x
}

// probabilities returns what the model predicts for xs.
func probabilities(xs ...fraud.Vector) []float64 {
	ys := make([]float64, len(xs))
	for i := range xs {
		ys[i] = fraud.Probability(&xs[i])
	}
	return ys
}

// requireNumbers checks that got, a decoded JSON array, holds want as FP32.
func requireNumbers(t *testing.T, want []float64, got any) {
	t.Helper()
	a, ok := got.([]any)
	require.True(t, ok, "want an array, got %v", got)
	require.Len(t, a, len(want))
	for i := range want {
		require.InEpsilon(t, want[i], a[i], 1e-6, "prediction %d", i)
	}
}

func TestKServeV1(t *testing.T) {
	url, client := start(t, options{})
	for _, tc := range []struct {
		name, body string
		want       []fraud.Vector
	}{
		{
			name: "named features",
			body: `{"instances":[{"amount":500,"age":30,"unknown":"ignored"},{"f0":500,"f1":30}]}`,
			want: []fraud.Vector{vec("amount", 500, "age", 30), vec("amount", 500, "age", 30)},
		},
		{
			name: "positional features",
			body: `{"instances":[[100,40,12],[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]]}`,
			want: []fraud.Vector{vec("f0", 100, "f1", 40, "f2", 12), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
		},
		{
			name: "booleans and null",
			body: `{"instances":[{"is_foreign":true,"card_present":false,"age":null}]}`,
			want: []fraud.Vector{vec("is_foreign", 1)},
		},
		{
			name: "missing features are 0",
			body: `{"instances":[{}]}`,
			want: []fraud.Vector{{}},
		},
		{
			name: "TensorFlow Serving inputs",
			body: `{"inputs":[{"amount":7}]}`,
			want: []fraud.Vector{vec("amount", 7)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := do(t, client, http.MethodPost, url+"/v1/models/fraud:predict", tc.body)
			require.Equal(t, http.StatusOK, status, resp)
			requireNumbers(t, probabilities(tc.want...), resp["predictions"])
		})
	}

	status, resp := do(t, client, http.MethodGet, url+"/v1/models/fraud", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, map[string]any{"name": "fraud", "ready": true}, resp)
	status, resp = do(t, client, http.MethodGet, url+"/v1/models", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, map[string]any{"models": []any{"fraud"}}, resp)
}

func TestOIP(t *testing.T) {
	url, client := start(t, options{})
	twoRows := []fraud.Vector{vec("amount", 10, "age", 20), vec("amount", 900, "age", 60)}
	for _, tc := range []struct {
		name, path, body string
		header           []string
		wantID           string
		want             []fraud.Vector
	}{
		{
			name: "feature columns",
			path: "/v2/models/fraud/infer",
			body: `{"id":"req-1","inputs":[
				{"name":"amount","shape":[2],"datatype":"FP64","data":[10,900]},
				{"name":"age","shape":[2],"datatype":"INT64","data":[20,60]}]}`,
			wantID: "req-1",
			want:   twoRows,
		},
		{
			name: "feature columns [N, 1] with nested data and a version",
			path: "/v2/models/fraud/versions/v1/infer",
			body: `{"id":"req-2","inputs":[
				{"name":"amount","shape":[2,1],"datatype":"FP32","data":[[10],[900]]},
				{"name":"f1","shape":[2,1],"datatype":"INT32","data":[[20],[60]]}]}`,
			wantID: "req-2",
			want:   twoRows,
		},
		{
			name:   "one [N, F] tensor, flat",
			path:   "/v2/models/fraud/infer",
			body:   `{"inputs":[{"name":"input-0","shape":[2,2],"datatype":"FP32","data":[10,20,900,60]}]}`,
			header: []string{"X-Request-Id", "from-header"},
			wantID: "from-header",
			want:   twoRows,
		},
		{
			name:   "one [F] tensor",
			path:   "/v2/models/fraud/infer",
			body:   `{"id":"esc\"aped","inputs":[{"name":"x","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}`,
			wantID: `esc"aped`,
			want:   []fraud.Vector{{1, 0, 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := do(t, client, http.MethodPost, url+tc.path, tc.body, tc.header...)
			require.Equal(t, http.StatusOK, status, resp)
			require.Equal(t, "fraud", resp["model_name"])
			require.Equal(t, "v1", resp["model_version"])
			require.Equal(t, tc.wantID, resp["id"])
			outputs := resp["outputs"].([]any)
			require.Len(t, outputs, 1)
			out := outputs[0].(map[string]any)
			require.Equal(t, "predict", out["name"])
			require.Equal(t, "FP32", out["datatype"])
			require.Equal(t, []any{float64(len(tc.want))}, out["shape"])
			requireNumbers(t, probabilities(tc.want...), out["data"])
		})
	}

	// Without an id in the body or the header, ids are generated.
	body := `{"inputs":[{"name":"amount","shape":[1],"datatype":"FP64","data":[1]}]}`
	_, first := do(t, client, http.MethodPost, url+"/v2/models/fraud/infer", body)
	_, second := do(t, client, http.MethodPost, url+"/v2/models/fraud/infer", body)
	require.NotEmpty(t, first["id"])
	require.NotEqual(t, first["id"], second["id"])

	for path, want := range map[string]map[string]any{
		"/v2/health/live":                    {"live": true},
		"/v2/health/ready":                   {"ready": true},
		"/v2/models/fraud/ready":             {"name": "fraud", "ready": true},
		"/v2/models/fraud/versions/v1/ready": {"name": "fraud", "ready": true},
	} {
		status, resp := do(t, client, http.MethodGet, url+path, "")
		require.Equal(t, http.StatusOK, status, path)
		require.Equal(t, want, resp, path)
	}
	status, resp := do(t, client, http.MethodGet, url+"/v2/models/fraud", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "fraud", resp["name"])
	require.Equal(t, []any{"v1"}, resp["versions"])
	require.Len(t, resp["inputs"], fraud.NumFeatures)
}

func TestOIPClassOutput(t *testing.T) {
	url, client := start(t, options{ModelName: "m", ModelVersion: "7", Output: outputClass})
	body := `{"inputs":[{"name":"amount","shape":[2],"datatype":"FP64","data":[120,4000]},
		{"name":"merchant_risk","shape":[2],"datatype":"FP64","data":[0.2,0.9]}]}`
	status, resp := do(t, client, http.MethodPost, url+"/v2/models/m/versions/7/infer", body)
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, "7", resp["model_version"])
	out := resp["outputs"].([]any)[0].(map[string]any)
	require.Equal(t, "INT64", out["datatype"])
	require.Equal(t, []any{0.0, 1.0}, out["data"])

	status, resp = do(t, client, http.MethodPost, url+"/v1/models/m:predict", `{"instances":[[4000],[120]]}`)
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, []any{1.0, 0.0}, resp["predictions"])
}

func TestMLflow(t *testing.T) {
	url, client := start(t, options{})
	rows := []fraud.Vector{vec("amount", 500, "age", 30), vec("amount", 20, "age", 70)}
	for _, tc := range []struct {
		name, body string
		want       []fraud.Vector
	}{
		{
			name: "dataframe_split",
			body: `{"dataframe_split":{"index":[0,1],"columns":["amount","age","note"],"data":[[500,30,"a"],[20,70,"b"]]}}`,
			want: rows,
		},
		{
			name: "dataframe_split without columns",
			body: `{"dataframe_split":{"data":[[500,30],[20,70]]}}`,
			want: rows,
		},
		{
			name: "dataframe_records",
			body: `{"dataframe_records":[{"amount":500,"age":30},{"amount":20,"age":70}]}`,
			want: rows,
		},
		{
			name: "instances",
			body: `{"instances":[[500,30],{"amount":20,"age":70}]}`,
			want: rows,
		},
		{
			name: "inputs as rows",
			body: `{"inputs":[[500,30],[20,70]]}`,
			want: rows,
		},
		{
			name: "inputs as columns",
			body: `{"inputs":{"amount":[500,20],"age":[30,70],"note":"ignored"}}`,
			want: rows,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := do(t, client, http.MethodPost, url+"/invocations", tc.body)
			require.Equal(t, http.StatusOK, status, resp)
			requireNumbers(t, probabilities(tc.want...), resp["predictions"])
		})
	}
	status, _ := do(t, client, http.MethodGet, url+"/ping", "")
	require.Equal(t, http.StatusOK, status)
}

func TestErrors(t *testing.T) {
	url, client := start(t, options{})
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"invalid JSON", "POST", "/v1/models/fraud:predict", `{"instances":[`, 400, "invalid JSON: "},
		{"empty body", "POST", "/invocations", ``, 400, "invalid JSON: "},
		{"missing instances", "POST", "/v1/models/fraud:predict", `{"x":1}`, 400, `missing "instances"`},
		{"instances not an array", "POST", "/v1/models/fraud:predict", `{"instances":{}}`, 400, `"instances": want an array`},
		{"empty instances", "POST", "/v1/models/fraud:predict", `{"instances":[]}`, 400, `"instances" is empty`},
		{"scalar instance", "POST", "/v1/models/fraud:predict", `{"instances":[1]}`, 400, "instances[0]: want an object or an array, got number"},
		{"string feature", "POST", "/v1/models/fraud:predict", `{"instances":[{"age":"old"}]}`, 400, `instances[0]: feature "age": want a number, got string`},
		{"NaN feature", "POST", "/v1/models/fraud:predict", `{"instances":[[NaN]]}`, 400, "instances[0]: value 0: not a finite number"},
		{"too many values", "POST", "/v1/models/fraud:predict", `{"instances":[[` + strings.Repeat("1,", 20) + `1]]}`, 400, "instances[0]: 21 values, the model takes at most 20"},
		{"OIP no inputs", "POST", "/v2/models/fraud/infer", `{}`, 400, `"inputs": want an array`},
		{"OIP bad datatype", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[1],"datatype":"BYTES","data":["x"]}]}`, 400, `input "amount": unsupported datatype "BYTES"`},
		{"OIP shape mismatch", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[3],"datatype":"FP64","data":[1,2]}]}`, 400, `input "amount": shape [3] holds 3 values, data has 2`},
		{"OIP bad shape", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[-1],"datatype":"FP64","data":[1]}]}`, 400, `input "amount": "shape": want integers from 0 to 16777216`},
		{"OIP rows differ", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[1],"datatype":"FP64","data":[1]},{"name":"age","shape":[2],"datatype":"FP64","data":[1,2]}]}`, 400, `input "age": 2 rows, other inputs have 1`},
		{"OIP tensor and column", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[1],"datatype":"FP64","data":[1]},{"name":"t","shape":[1,2],"datatype":"FP64","data":[1,2]}]}`, 400, `input "t" is not a feature, so it must be the only input`},
		{"OIP wide tensor", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"t","shape":[1,21],"datatype":"FP64","data":[` + strings.Repeat("1,", 20) + `1]}]}`, 400, `input "t": 21 features, the model takes at most 20`},
		{"OIP empty batch", "POST", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[0],"datatype":"FP64","data":[]}]}`, 400, "no instances"},
		{"MLflow no field", "POST", "/invocations", `{"rows":[]}`, 400, `request has none of "dataframe_split", "dataframe_records", "instances" or "inputs"`},
		{"MLflow two fields", "POST", "/invocations", `{"instances":[[1]],"inputs":[[1]]}`, 400, `request has both "instances" and "inputs"`},
		{"MLflow split row length", "POST", "/invocations", `{"dataframe_split":{"columns":["amount"],"data":[[1,2]]}}`, 400, "dataframe_split.data[0]: 2 values for 1 columns"},
		{"MLflow split no data", "POST", "/invocations", `{"dataframe_split":{"columns":["amount"]}}`, 400, `"dataframe_split.data": want an array`},
		{"MLflow column lengths", "POST", "/invocations", `{"inputs":{"amount":[1,2],"age":[3]}}`, 400, "inputs.age: 1 values, other columns have 2"},
		{"unknown model v1", "POST", "/v1/models/other:predict", `{"instances":[[1]]}`, 404, `model "other" not found`},
		{"unknown model v2", "POST", "/v2/models/other/infer", `{}`, 404, `model "other" not found`},
		{"unknown version", "POST", "/v2/models/fraud/versions/v9/infer", `{}`, 404, `model "fraud" version "v9" not found`},
		{"unknown verb", "POST", "/v1/models/fraud:explain", `{}`, 404, "not found"},
		{"unknown path", "GET", "/metrics", ``, 404, "not found"},
		{"GET predict", "GET", "/v1/models/fraud:predict", ``, 405, "method not allowed"},
		{"POST health", "POST", "/v2/health/ready", `{}`, 405, "method not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := do(t, client, tc.method, url+tc.path, tc.body)
			require.Equal(t, tc.status, status, resp)
			msg, _ := resp["error"].(string)
			if strings.HasSuffix(tc.want, ": ") {
				require.True(t, strings.HasPrefix(msg, tc.want), msg)
				require.Less(t, len(msg), 80, "a short message")
			} else {
				require.Equal(t, tc.want, msg)
			}
		})
	}
}

func TestErrorRate(t *testing.T) {
	failures := func(rate float64) []int {
		url, client := start(t, options{ErrorRate: rate})
		var failed []int
		for i := range 200 {
			status, resp := do(t, client, http.MethodPost, url+"/v1/models/fraud:predict", `{"instances":[[1]]}`)
			if status == http.StatusInternalServerError {
				require.Equal(t, "injected failure", resp["error"])
				failed = append(failed, i)
				continue
			}
			require.Equal(t, http.StatusOK, status)
		}
		return failed
	}
	require.Empty(t, failures(0))
	require.Len(t, failures(1), 200)
	first := failures(0.25)
	require.InDelta(t, 50, len(first), 15)
	require.Equal(t, first, failures(0.25), "the same requests fail on every run")

	// Requests that are invalid fail with 400 before any failure is injected.
	url, client := start(t, options{ErrorRate: 1})
	status, _ := do(t, client, http.MethodPost, url+"/v1/models/fraud:predict", `{`)
	require.Equal(t, http.StatusBadRequest, status)
}

func TestFaultHeader(t *testing.T) {
	url, client := start(t, options{})
	for _, tc := range []struct {
		name, path, body, fault string
		status                  int
		want                    string
	}{
		{"500", "/v1/models/fraud:predict", `{"instances":[[1]]}`, "500", 500, "injected failure"},
		{"503 over OIP", "/v2/models/fraud/infer", `{"inputs":[{"name":"amount","shape":[1],"datatype":"FP64","data":[1]}]}`, "503", 503, "injected failure"},
		{"429 over MLflow", "/invocations", `{"instances":[[1]]}`, "429", 429, "injected failure"},
		{"not a status", "/v1/models/fraud:predict", `{"instances":[[1]]}`, "boom", 400, `X-Fault-Abort: want an HTTP status from 400 to 599, got "boom"`},
		{"not an error", "/v1/models/fraud:predict", `{"instances":[[1]]}`, "200", 400, `X-Fault-Abort: want an HTTP status from 400 to 599, got "200"`},
		{"invalid body first", "/v1/models/fraud:predict", `{"instances":[]}`, "500", 400, `"instances" is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := do(t, client, http.MethodPost, url+tc.path, tc.body, "X-Fault-Abort", tc.fault)
			require.Equal(t, tc.status, status, resp)
			require.Equal(t, tc.want, resp["error"])
		})
	}

	// Without the header, the same request succeeds.
	status, resp := do(t, client, http.MethodPost, url+"/v1/models/fraud:predict", `{"instances":[[1]]}`)
	require.Equal(t, http.StatusOK, status, resp)
}

func TestDelay(t *testing.T) {
	const delay = 500 * time.Millisecond
	url, client := start(t, options{Delay: delay})
	begin := time.Now()
	status, _ := do(t, client, http.MethodPost, url+"/v1/models/fraud:predict", `{"instances":[[1]]}`)
	require.Equal(t, http.StatusOK, status)
	require.GreaterOrEqual(t, time.Since(begin), delay)
}

// Health checks are not delayed: one is answered while a prediction waits
// out a delay of an hour, which the server's shutdown then cuts short.
func TestDelayNotHealthChecks(t *testing.T) {
	s, err := newServer(options{ModelName: "fraud", ModelVersion: "v1", Delay: time.Hour})
	require.NoError(t, err)
	handle, entered := s.http.Handler, make(chan struct{})
	s.http.Handler = func(ctx *fasthttp.RequestCtx) {
		if strings.HasSuffix(string(ctx.Path()), ":predict") {
			close(entered)
		}
		handle(ctx)
	}
	predicted := make(chan error, 1)
	t.Cleanup(func() { require.NoError(t, <-predicted) }) // after the shutdown
	url, client := serve(t, s)
	go func() {
		resp, err := client.Post(url+"/v1/models/fraud:predict", "application/json", strings.NewReader(`{"instances":[[1]]}`))
		if err == nil {
			err = resp.Body.Close()
		}
		predicted <- err
	}()
	<-entered
	status, _ := do(t, client, http.MethodGet, url+"/v2/health/ready", "")
	require.Equal(t, http.StatusOK, status)
	select {
	case err := <-predicted:
		t.Fatalf("the prediction was answered (%v) before its delay", err)
	default:
	}
}

func TestNewServerOptions(t *testing.T) {
	valid := options{ModelName: "fraud", ModelVersion: "v1"}
	for name, mutate := range map[string]func(*options){
		"empty name":        func(o *options) { o.ModelName = "" },
		"name with a colon": func(o *options) { o.ModelName = "a:b" },
		"version with /":    func(o *options) { o.ModelVersion = "a/b" },
		"negative rate":     func(o *options) { o.ErrorRate = -0.1 },
		"rate above 1":      func(o *options) { o.ErrorRate = 1.5 },
		"negative delay":    func(o *options) { o.Delay = -time.Second },
		"unknown output":    func(o *options) { o.Output = "logits" },
	} {
		opts := valid
		mutate(&opts)
		_, err := newServer(opts)
		require.Error(t, err, name)
	}
	_, err := newServer(valid)
	require.NoError(t, err)
}

// A server cancelled before its Serve goroutine ran stops, and its port
// takes no more connections.
func TestServeCancelledAtOnce(t *testing.T) {
	s, err := newServer(options{ModelName: "fraud", ModelVersion: "v1"})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.serve(ctx, ln))
	_, err = net.Dial("tcp", ln.Addr().String())
	require.Error(t, err, "the listener was left open")
}
