package rules

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// answer serves body with code and the given headers, as a Prometheus-
// compatible API (or whatever stands in front of it) would.
func answer(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if !strings.HasPrefix(body, "<") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

// promError is Prometheus's error envelope.
func promError(typ, msg string) string {
	return fmt.Sprintf(`{"status":"error","errorType":%q,"error":%q}`, typ, msg)
}

// What each answer of a remote API means to the rules: a value, an error of
// the rule (the API answered: the query is wrong, too big or too slow), or
// the data source down (it did not answer as a Prometheus API), which makes
// alertd hold firing alerts. The status codes are those Prometheus's
// web/api/v1 sends for each errorType (bad_data 400, execution 422, timeout
// 503, canceled 499, internal 500, unavailable 503), and what proxies and
// load balancers in front of it send.
func TestRemoteAnswers(t *testing.T) {
	t.Parallel()
	const proxy502 = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    []float64 // values of the vector, when the query succeeds
		errHas  string    // the rule's error, when it fails
		down    bool
	}{
		{"vector", answer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1700000000,"2.5"]}]}}`), []float64{2.5}, "", false},
		{"scalar", answer(200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}`), []float64{3}, "", false},
		{"NaN and infinities", answer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1700000000,"NaN"]},{"metric":{"a":"2"},"value":[1700000000,"+Inf"]},{"metric":{"a":"3"},"value":[1700000000,"-Inf"]}]}}`), []float64{math.NaN(), math.Inf(1), math.Inf(-1)}, "", false},
		{"warnings and infos", answer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]},"warnings":["PromQL warning: encountered a mix of histograms and floats"],"infos":["PromQL info: metric might not be a counter"]}`), []float64{1}, "", false},
		{"thanos partial response", answer(200, `{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["fetch series for {__name__=\"up\"}: receive series from store: rpc error: code = Unavailable"]}`), []float64{}, "", false},
		{"matrix for an instant query", answer(200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`), nil, "rule queries must return a vector or scalar, got matrix", false},
		{"native histogram", answer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1700000000,{"count":"2","sum":"3","buckets":[[0,"0","1","2"]]}]}]}}`), nil, "native histogram results are not supported", false},
		{"bad_data 400", answer(400, promError("bad_data", `1:5: parse error: unexpected "}"`)), nil, `1:5: parse error`, false},
		{"execution 422", answer(422, promError("execution", "query processing would load too many samples into memory in query execution")), nil, "too many samples", false},
		{"timeout 503", answer(503, promError("timeout", "query timed out in expression evaluation")), nil, "query timed out in expression evaluation", false},
		{"canceled 499", answer(499, promError("canceled", "query was canceled in expression evaluation")), nil, "query was canceled", false},
		{"internal 500", answer(500, promError("internal", "expanding series: store unreachable")), nil, "expanding series: store unreachable", true},
		{"unavailable 503", answer(503, promError("unavailable", "TSDB not ready")), nil, "TSDB not ready", true},
		{"status error in a 200", answer(200, promError("execution", "many-to-many matching not allowed")), nil, "many-to-many", false},
		{"proxy's HTML 502", answer(502, proxy502), nil, "502", true},
		{"load balancer's HTML 503", answer(503, "<html><body>503 Service Temporarily Unavailable</body></html>"), nil, "503", true},
		{"login page with 200", answer(200, "<!DOCTYPE html><html><body>Sign in</body></html>"), nil, "invalid character", true},
		{"string", answer(200, `{"status":"success","data":{"resultType":"string","result":[1700000000,"x"]}}`), nil, "unexpected value type", true},
		{"429 with Retry-After", answer(429, "too many requests", "Retry-After", "30"), nil, "429", true},
		{"401", answer(401, "unauthorized"), nil, "401", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			r, err := NewRemote(srv.URL, srv.Client(), 5*time.Second)
			require.NoError(t, err)
			v, err := r.Query(context.Background(), "up", time.Unix(1700000000, 0))
			if tc.errHas != "" {
				require.ErrorContains(t, err, tc.errHas)
			} else {
				require.NoError(t, err)
				got := make([]float64, 0, len(v))
				for _, s := range v {
					got = append(got, s.F)
				}
				require.Len(t, got, len(tc.want))
				for i := range got {
					if math.IsNaN(tc.want[i]) {
						require.True(t, math.IsNaN(got[i]))
						continue
					}
					require.Equal(t, tc.want[i], got[i])
				}
			}
			up, _, _, _ := r.Status()
			require.Equal(t, !tc.down, up, "data source up")
		})
	}
}

// A query slower than datasource.timeout: Prometheus gets the timeout as
// the query's `timeout` parameter and answers 503 errorType timeout when it
// is over, which fails that rule only. alertd waits for that answer a little
// longer than the timeout; only a server that does not answer at all then
// marks the data source down.
func TestRemoteSlowQuery(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		d, err := time.ParseDuration(r.Form.Get("timeout"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// As Prometheus: the engine's deadline starts when the query does.
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		answer(http.StatusServiceUnavailable, promError("timeout", "query timed out in expression evaluation"))(w, r)
	}))
	defer slow.Close()
	hung := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		// The request's context ends with the connection once the body is read.
		_ = r.ParseForm()
		<-r.Context().Done()
	}))
	defer hung.Close()

	r, err := NewRemote(slow.URL, slow.Client(), timeout)
	require.NoError(t, err)
	_, err = r.Query(context.Background(), "up", time.Now())
	require.ErrorContains(t, err, "query timed out")
	up, _, _, _ := r.Status()
	require.True(t, up, "a query timeout is the rule's error")

	r, err = NewRemote(hung.URL, hung.Client(), timeout)
	require.NoError(t, err)
	_, err = r.Query(context.Background(), "up", time.Now())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	up, _, _, _ = r.Status()
	require.False(t, up, "a server that does not answer is down")
}
