package exporter

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// modelServer answers like a KServe / OIP / MLflow server: one prediction per
// instance, or the status named in the X-Status header.
func modelServer(t testing.TB) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if st := r.Header.Get("X-Status"); st != "" {
			var code int
			fmt.Sscan(st, &code)
			w.WriteHeader(code)
			io.WriteString(w, `{"error":"as asked"}`)
			return
		}
		if r.Method != http.MethodPost {
			io.WriteString(w, `{"ready":true}`)
			return
		}
		n := 1
		var req struct {
			Instances []json.RawMessage `json:"instances"`
			Inputs    []struct {
				Shape []int `json:"shape"`
			} `json:"inputs"`
		}
		if json.Unmarshal(body, &req) == nil {
			switch {
			case len(req.Instances) > 0:
				n = len(req.Instances)
			case len(req.Inputs) > 0 && len(req.Inputs[0].Shape) > 0:
				n = req.Inputs[0].Shape[0]
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/chat/completions" {
			io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v2/") {
			data := strings.TrimSuffix(strings.Repeat("0.5,", n), ",")
			fmt.Fprintf(w, `{"model_name":"m","outputs":[{"name":"p","shape":[%d],"datatype":"FP32","data":[%s]}]}`, n, data)
			return
		}
		preds := strings.TrimSuffix(strings.Repeat("1,", n), ",")
		fmt.Fprintf(w, `{"predictions":[%s]}`, preds)
	}))
	t.Cleanup(s.Close)
	return s
}

func do(t testing.TB, method, url, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// A scripted sequence of requests gives exactly the exposition in
// testdata/exposition.prom.
func TestExpositionGolden(t *testing.T) {
	up := modelServer(t)
	clock := &stepClock{t: time.Unix(1700000000, 0)}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modelmon.yml")
	// scored has a drift reference from training data whose prediction is
	// its column score: small integers and few rows, so that its bins and
	// digests are exact on every platform.
	var train strings.Builder
	train.WriteString("amount,country,score\n")
	for i := range 40 {
		fmt.Fprintf(&train, "%d,%s,%d\n", 10+i%4, []string{"DE", "FR"}[i%2], i%2)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "scored.csv"), []byte(train.String()), 0o644))
	require.NoError(t, os.WriteFile(cfg, []byte("default_model: fraud\nmodels:\n  - name: fraud\n    version: v7\n"+
		"  - name: scored\n    drift: {reference: scored.csv, prediction_column: score}\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) {
		o.Now = clock.Now
		o.ConfigFile = cfg
	})
	proxy := "http://" + e.ProxyAddr()
	trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	for i := 0; i < 3; i++ {
		st, _ := do(t, "POST", proxy+"/v1/models/fraud:predict", `{"instances":[{"amount":12.5,"country":"DE"}]}`, "traceparent", trace)
		require.Equal(t, 200, st)
	}
	st, _ := do(t, "POST", proxy+"/v1/models/fraud:predict", `{"instances":[{"amount":1,"country":"FR"},{"amount":2,"country":null},{"amount":3},{"amount":4,"country":"DE"}]}`)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", proxy+"/v2/models/churn/versions/3/infer",
		`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", proxy+"/v1/models/fraud:predict", `{"instances":[{"amount":NaN},{"amount":Infinity}]}`)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", proxy+"/v1/models/fraud:predict", `{"instances":[{"amount":1`)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", proxy+"/v1/models/fraud:predict", `{}`, "X-Status", "500")
	require.Equal(t, 500, st)
	st, _ = do(t, "POST", proxy+"/v1/models/fraud:predict", `{}`, "X-Status", "400")
	require.Equal(t, 400, st)
	st, _ = do(t, "POST", proxy+"/predict", `{"amount":3,"country":"DE"}`, "X-Model-Name", "scorer", "X-Model-Version", "2024-06")
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", proxy+"/v1/chat/completions", `{"model":"llm","messages":[{"role":"user","content":"Hi"}],"max_tokens":16}`, "X-Model-Name", "llm")
	require.Equal(t, 200, st)
	st, _ = do(t, "GET", proxy+"/v2/health/ready", "")
	require.Equal(t, 200, st)
	st, _ = do(t, "GET", proxy+"/v2/models/fraud", "", "X-Status", "503")
	require.Equal(t, 503, st)
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations",
		`[{"model":"fraud","features":{"amount":5},"prediction":1,"latency":0.02},{"model":"fraud","bogus":1},{"model":"fraud","features":{"amount":null},"prediction":[0.2,0.8]}]`)
	require.Equal(t, 200, st, body)
	waitIdle(t, e)

	// Build info names the Go version and scrape durations are real time:
	// both are left out.
	got := joinFamilies(scrape(t, e, "modelmon_"), "modelmon_scrape_collector_duration_seconds",
		"modelmon_exporter_build_info")
	writeGolden(t, "testdata/exposition.prom", got)
}
