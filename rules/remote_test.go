package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
		{"thanos refused partial data 422", answer(422, thanosAborted422, "Cache-Control", "no-store"), nil, "the data source refused to answer with part of the data (a store failed, partial_response=false): execution: expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10901", true},
		{"thanos bad query 422", answer(422, thanosDuplicateSeries422, "Cache-Control", "no-store"), nil, "many-to-many matching not allowed", false},
		{"victoriametrics isPartial", answer(200, vmPartial), nil, "the data source answered with part of the data (isPartial: some of its storage nodes did not answer)", true},
		{"victoriametrics complete", answer(200, vmComplete), []float64{1}, "", false},
		{"victoriametrics bad query 422", answer(422, vmBadJoin422), nil, "duplicate time series on the right side of `* on(model)`", false},
		{"victoriametrics bad parameter 400", answer(400, vmError("400", `cannot parse "step" arg: cannot parse duration "-1s": duration cannot be negative`)), nil, `cannot parse "step"`, false},
		{"victoriametrics partial refused 503", answer(503, vmError("503", `cannot execute funcName="search_v7" on vmstorage "10.0.0.3:8401": cannot obtain connection from a pool: dial tcp4 10.0.0.3:8401: connect: connection refused`)), nil, "on vmstorage", true},
		{"victoriametrics 429", answer(429, vmError("429", "couldn't start executing the request in 10.000 seconds, since -search.maxConcurrentRequests=8 concurrent requests are executed")), nil, "-search.maxConcurrentRequests", true},
		{"victoriametrics 401", answer(401, vmError("401", "unauthorized")), nil, "unauthorized", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			r, err := NewRemote(srv.URL, RemoteOptions{Client: srv.Client(), Timeout: 5 * time.Second})
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
			require.Equal(t, tc.down, DownReason(err) != "", "a DownError: %v", err)
		})
	}
}

// A Thanos store's limits abort a query with partial_response=false as a
// store that is down does (gRPC Aborted), but the store answered: the
// query is too big, and it fails that rule only, counted under
// reason="query", with the data source up. A store that refuses for
// having too many requests pending is overloaded: that stays a refusal of
// partial data, which marks the data source down.
func TestRemoteThanosStoreLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		down       bool
		errHas     string
	}{
		{"store gateway bytes limit", thanosBytesLimit422, false, "exceeded bytes limit while fetching postings: limit 1 violated (got 8)"},
		{"store gateway series limit", thanosSeriesLimit422, false, "exceeded series limit: limit 10000 violated (got 12345)"},
		{"sidecar samples limit", thanosSamplesLimit422, false, "failed to send samples: limit 100000 violated (got 100080)"},
		{"pending requests", thanosPendingRequests422, true, "too many pending series requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(answer(http.StatusUnprocessableEntity, tc.body, "Cache-Control", "no-store"))
			defer srv.Close()
			r, err := NewRemote(srv.URL, RemoteOptions{Client: srv.Client(), Timeout: 5 * time.Second})
			require.NoError(t, err)
			_, err = r.Query(context.Background(), "up", time.Unix(1700000000, 0))
			require.ErrorContains(t, err, tc.errHas)
			up, _, _, _ := r.Status()
			require.Equal(t, !tc.down, up, "data source up")
			var pe *PartialError
			require.Equal(t, tc.down, errors.As(err, &pe), "a PartialError: %v", err)
			if tc.down {
				require.Equal(t, ReasonPartialResponse, DownReason(err))
				require.EqualValues(t, 1, r.Failed(ReasonPartialResponse))
				require.Zero(t, r.Failed(ReasonQuery))
				return
			}
			require.Empty(t, DownReason(err))
			require.EqualValues(t, 1, r.Failed(ReasonQuery))
			require.Zero(t, r.Failed(ReasonPartialResponse))
			require.ErrorContains(t, err, "remote query: a Thanos store refused the query for its limits; select fewer series or a shorter range: execution: expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: ")
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

	r, err := NewRemote(slow.URL, RemoteOptions{Client: slow.Client(), Timeout: timeout})
	require.NoError(t, err)
	_, err = r.Query(context.Background(), "up", time.Now())
	require.ErrorContains(t, err, "query timed out")
	up, _, _, _ := r.Status()
	require.True(t, up, "a query timeout is the rule's error")

	r, err = NewRemote(hung.URL, RemoteOptions{Client: hung.Client(), Timeout: timeout})
	require.NoError(t, err)
	_, err = r.Query(context.Background(), "up", time.Now())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	up, _, _, _ = r.Status()
	require.False(t, up, "a server that does not answer is down")
}

// clock is a settable time for a Remote under test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A Thanos Query (pkg/api's RespondError, a json.Encoder) with a store
// down, asked with partial_response=false: the proxy aborted the Series
// call, and the query fails 422 execution with the store's error.
const thanosAborted422 = `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10901 LabelSets: {prometheus=\"monitoring/k8s\", prometheus_replica=\"prometheus-k8s-0\"} MinTime: 1699996400000 MaxTime: 9223372036854775807: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:10901: connect: connection refused\""}` + "\n"

// A Thanos Query asked with partial_response=false, whose store refused the
// query for its limits: the proxy aborts the query as for a store that is
// down (pkg/store/proxy.go, status.Error(codes.Aborted, warning); the
// warning is the store's error, "receive series from <store>: ...",
// pkg/store/proxy_heap.go), with the store's limiter's error
// (pkg/store/limiter.go, Limiter.Reserve: "limit %v violated (got %v)").
// Since Thanos v0.32.0 (#6171, #6325) a store gateway sends it with gRPC
// code ResourceExhausted.
//
// thanosBytesLimit422 is the answer in Thanos's own e2e test
// (test/e2e/store_gateway_test.go, TestStoreGatewayBytesLimit, a store
// gateway with --store.grpc.downloaded-bytes-limit=1B), as its CI printed
// it in thanos-io/thanos#6325 (May 2023, v0.32.0 in development).
const thanosBytesLimit422 = `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: store-limit-store-gw-1:9091 LabelSets: {ext1=\"value1\", replica=\"1\"},{ext1=\"value1\", replica=\"2\"},{ext1=\"value2\", replica=\"3\"} MinTime: 1683016297853 MaxTime: 1683023497853: rpc error: code = ResourceExhausted desc = fetch series for block 01GZDQPDKDF7ENV3KQ8MS7SAPZ: expanded matching posting: get postings: rpc error: code = ResourceExhausted desc = exceeded bytes limit while fetching postings: limit 1 violated (got 8)"}` + "\n"

// thanosSeriesLimit422 is a store gateway's --store.limits.request-series
// as pkg/store/bucket.go words it on Thanos's main branch (commit
// 00015d550f0f): blockSeriesClient.ExpandPostings returns
// httpgrpc.Errorf(codes.ResourceExhausted, "exceeded series limit: %s"),
// BucketStore.Series wraps it "fetch postings for block %s" (earlier
// releases: "fetch series for block %s", as above) and sends it with that
// code.
const thanosSeriesLimit422 = `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10905 LabelSets: {prometheus=\"monitoring/k8s\", prometheus_replica=\"prometheus-k8s-0\"} MinTime: 1699000000000 MaxTime: 1699996400000: rpc error: code = ResourceExhausted desc = fetch postings for block 01HF3V8PQ2N6Y1B0D2V7F5ZK8M: rpc error: code = ResourceExhausted desc = exceeded series limit: limit 10000 violated (got 12345)"}` + "\n"

// thanosSamplesLimit422 is a sidecar's --store.limits.request-samples
// (pkg/store/limiter.go, limitedServer.Send: "failed to send samples: %w";
// the limit counts 120 samples a chunk).
const thanosSamplesLimit422 = `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10901 LabelSets: {prometheus=\"monitoring/k8s\", prometheus_replica=\"prometheus-k8s-0\"} MinTime: 1699996400000 MaxTime: 9223372036854775807: rpc error: code = Unknown desc = failed to send samples: limit 100000 violated (got 100080)"}` + "\n"

// thanosPendingRequests422 is a store's --store.limits.pending-requests
// (pkg/store/limiter.go, limitedStoreServer.Series): overloaded, not a
// limit of the query.
const thanosPendingRequests422 = `{"status":"error","errorType":"execution","error":"expanding series: proxy Series(): rpc error: code = Aborted desc = receive series from Addr: 127.0.0.1:10901 LabelSets: {prometheus=\"monitoring/k8s\", prometheus_replica=\"prometheus-k8s-0\"} MinTime: 1699996400000 MaxTime: 9223372036854775807: rpc error: code = ResourceExhausted desc = too many pending series requests: 8 >= 8"}` + "\n"

// A Thanos Query's 422 execution error about the query itself.
const thanosDuplicateSeries422 = `{"status":"error","errorType":"execution","error":"found duplicate series for the match group {model=\"a\"} on the right hand-side of the operation: [{__name__=\"model_info\", model=\"a\", version=\"1\"}, {__name__=\"model_info\", model=\"a\", version=\"2\"}];many-to-many matching not allowed: matching labels must be unique on one side"}` + "\n"

// A VictoriaMetrics vmselect's answer to an instant query
// (app/vmselect/prometheus/query_response.qtpl), with vmstorage nodes that
// did not answer, and with all of them.
const (
	vmPartial  = `{"status":"success","isPartial":true,"data":{"resultType":"vector","result":[{"metric": {"__name__":"up","job":"model"},"value": [1700000000,"1"]}]},"stats":{"seriesFetched": "1","executionTimeMsec": 0}}`
	vmComplete = `{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[{"metric": {"__name__":"up","job":"model"},"value": [1700000000,"1"]}]},"stats":{"seriesFetched": "1","executionTimeMsec": 0}}`
)

// vmError is a VictoriaMetrics error answer, byte for byte
// (lib/httpserver's PrometheusErrorResponse, written with stripspace): the
// errorType is the HTTP status code it answers with.
func vmError(code, msg string) string {
	return fmt.Sprintf(`{"status":"error","errorType":"%s","error":%q}`, code, msg)
}

// vmBadJoin422 is a vmselect's answer to an instant query with a
// many-to-many match (app/vmselect/prometheus QueryHandler's "error when
// executing query", promql's "cannot evaluate"), as SendPrometheusError
// sends an error without a status of its own: 422, typed "422".
const vmBadJoin422 = `{"status":"error","errorType":"422","error":"error when executing query=\"model_errors_total * on(model) model_info\" for (time=1699999970000, step=300000): cannot evaluate \"model_errors_total * on(model) model_info\": duplicate time series on the right side of ` + "`* on(model)`" + `: {model=\"a\", version=\"1\"} and {model=\"a\", version=\"2\"}"}`

// vectorOne is an instant query's answer of one sample with value 1.
const vectorOne = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]}}`

// A 429 or 503 with Retry-After keeps the next queries from being sent
// until then, as Prometheus's remote write honours it: they fail with
// that reason, and the data source is down meanwhile. A Retry-After in
// seconds or as an HTTP date counts; a 503 without one (Prometheus's query
// timeout) keeps nothing away, and neither does a date that has passed.
// A Retry-After longer than five minutes is cut to five.
func TestRemoteRetryAfter(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		code       int
		retryAfter string
		wait       time.Duration // 0: the next query is sent
	}{
		{"429 seconds", http.StatusTooManyRequests, "120", 120 * time.Second},
		{"503 HTTP date", http.StatusServiceUnavailable, start.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"503 without Retry-After", http.StatusServiceUnavailable, "", 0},
		{"date passed", http.StatusTooManyRequests, start.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"garbage", http.StatusTooManyRequests, "soon", 0},
		{"an hour is cut to five minutes", http.StatusTooManyRequests, "3600", 5 * time.Minute},
		{"500 is not asked to wait", http.StatusInternalServerError, "120", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					if tc.retryAfter != "" {
						w.Header().Set("Retry-After", tc.retryAfter)
					}
					http.Error(w, "slow down", tc.code)
					return
				}
				answer(200, vectorOne)(w, r)
			}))
			defer srv.Close()
			c := &clock{now: start}
			r, err := NewRemote(srv.URL, RemoteOptions{Client: srv.Client(), Timeout: 5 * time.Second})
			require.NoError(t, err)
			r.now = c.Now

			_, err = r.Query(context.Background(), "up", start)
			require.ErrorContains(t, err, strconv.Itoa(tc.code))
			up, _, _, _ := r.Status()
			require.False(t, up)
			if tc.wait == 0 {
				_, err = r.Query(context.Background(), "up", start)
				require.NoError(t, err)
				require.EqualValues(t, 2, n.Load())
				return
			}

			c.Add(tc.wait - time.Second)
			_, err = r.Query(context.Background(), "up", start)
			var we *WaitError
			require.ErrorAs(t, err, &we)
			require.Equal(t, start.Add(tc.wait), we.Until)
			require.Contains(t, we.Status, strconv.Itoa(tc.code))
			require.EqualError(t, err, fmt.Sprintf("remote query: not sent: the data source answered %s with Retry-After, and is not queried before %s",
				we.Status, start.Add(tc.wait).Format(time.RFC3339)))
			_, err = r.QueryRange(context.Background(), "up", start, start, time.Minute)
			require.ErrorAs(t, err, &we)
			require.EqualValues(t, 1, n.Load(), "a query was sent during the wait")
			up, _, _, downErr := r.Status()
			require.False(t, up)
			require.ErrorAs(t, downErr, &we)

			c.Add(time.Second)
			_, err = r.Query(context.Background(), "up", start)
			require.NoError(t, err)
			require.EqualValues(t, 2, n.Load())
			up, _, _, _ = r.Status()
			require.True(t, up)
		})
	}
}

// A reload that keeps the URL keeps the wait a Retry-After asked for; one
// that moves to another data source forgets it.
func TestRemoteRetryAfterUpdate(t *testing.T) {
	t.Parallel()
	busy := httptest.NewServer(answer(http.StatusTooManyRequests, "slow down", "Retry-After", "60"))
	defer busy.Close()
	other := httptest.NewServer(answer(200, vectorOne))
	defer other.Close()
	r, err := NewRemote(busy.URL, RemoteOptions{Timeout: 5 * time.Second})
	require.NoError(t, err)
	_, err = r.Query(context.Background(), "up", time.Now())
	require.ErrorContains(t, err, "429")

	require.NoError(t, r.Update(busy.URL, nil, 10*time.Second))
	_, err = r.Query(context.Background(), "up", time.Now())
	var we *WaitError
	require.ErrorAs(t, err, &we)

	require.NoError(t, r.Update(other.URL, nil, 10*time.Second))
	_, err = r.Query(context.Background(), "up", time.Now())
	require.NoError(t, err)
}

// An answer over MaxAnswerBytes fails the query, and only it: the data
// source answered. One of exactly MaxAnswerBytes is read. A Content-Length
// over the limit fails before the body is read.
func TestRemoteAnswerTooLarge(t *testing.T) {
	t.Parallel()
	// padded serves vectorOne padded with JSON whitespace to size bytes,
	// streamed without a Content-Length.
	padded := func(size int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			head, tail := `{"status":"success",`, vectorOne[len(`{"status":"success",`):]
			fmt.Fprint(w, head)
			pad := []byte(strings.Repeat(" ", 1<<20))
			for left := size - len(head) - len(tail); left > 0; left -= len(pad) {
				if _, err := w.Write(pad[:min(left, len(pad))]); err != nil {
					return
				}
			}
			fmt.Fprint(w, tail)
		}
	}
	declared := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(MaxAnswerBytes+1))
		fmt.Fprint(w, vectorOne) // the connection breaks after it
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		tooBig  bool
	}{
		{"exactly the limit", padded(MaxAnswerBytes), false},
		{"a byte over", padded(MaxAnswerBytes + 1), true},
		{"Content-Length over", declared, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			// Reading 64 MiB under the race detector, beside the other
			// parallel tests, took more than 30 s on a loaded 2-core
			// machine: the timeout is not what this test is about.
			r, err := NewRemote(srv.URL, RemoteOptions{Timeout: 3 * time.Minute})
			require.NoError(t, err)
			v, err := r.Query(context.Background(), "up", time.Unix(1700000000, 0))
			if !tc.tooBig {
				require.NoError(t, err)
				require.Len(t, v, 1)
				return
			}
			require.EqualError(t, err, "remote query: the answer is larger than 64 MiB; select fewer series or a shorter range")
			up, _, _, _ := r.Status()
			require.True(t, up, "a too large answer is the query's error")
		})
	}
}

// Samples reads a day whose answer is too large in halves, and halves of
// halves, and returns the samples in order.
func TestRemoteSamplesSplitsLargeAnswers(t *testing.T) {
	t.Parallel()
	end := time.Unix(1700000000, 0)
	var mu sync.Mutex
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		q := r.Form.Get("query") // up[<ms>ms]
		ms, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(q, "up["), "ms]"), 10, 64)
		require.NoError(t, err, q)
		mu.Lock()
		ranges = append(ranges, q)
		n := len(ranges)
		mu.Unlock()
		if time.Duration(ms)*time.Millisecond > 6*time.Hour {
			w.Header().Set("Content-Length", strconv.Itoa(MaxAnswerBytes+1))
			return
		}
		at, err := strconv.ParseFloat(r.Form.Get("time"), 64)
		require.NoError(t, err)
		// One sample at the end of the range.
		answer(200, fmt.Sprintf(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[%.3f,"%d"]]}]}}`, at, n))(w, r)
	}))
	defer srv.Close()
	r, err := NewRemote(srv.URL, RemoteOptions{Timeout: 5 * time.Second})
	require.NoError(t, err)
	got, err := r.Samples(context.Background(), "up", end.Add(-24*time.Hour), end)
	require.NoError(t, err)
	require.Len(t, got, 1)
	var ts []int64
	for _, s := range got {
		for _, p := range s.Floats {
			ts = append(ts, p.T)
		}
	}
	h := func(n int) int64 { return end.Add(time.Duration(n-24) * time.Hour).UnixMilli() }
	require.Equal(t, []int64{h(6), h(12), h(18), h(24)}, ts)
	require.Equal(t, []string{"up[86400000ms]", "up[43200000ms]", "up[21600000ms]", "up[21600000ms]", "up[43200000ms]", "up[21600000ms]", "up[21600000ms]"}, ranges)
}

// Every request asks the stores that can answer partial data to fail
// instead (Thanos's partial_response, VictoriaMetrics's
// deny_partial_response), unless the data source URL says otherwise; the
// URL's own parameters go with every request, also the GET client_golang
// falls back to when POST is refused.
func TestRemoteRequestParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		refusePost  bool
		want        url.Values
	}{
		{"defaults", "", false, url.Values{"partial_response": {"false"}, "deny_partial_response": {"1"}}},
		{"URL allows partial responses", "?partial_response=true&deny_partial_response=0", false,
			url.Values{"partial_response": {"true"}, "deny_partial_response": {"0"}}},
		{"URL parameters on GET", "?nocache=1", true,
			url.Values{"partial_response": {"false"}, "deny_partial_response": {"1"}, "nocache": {"1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got url.Values
			var method string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.refusePost && r.Method == http.MethodPost {
					http.Error(w, "use GET", http.StatusMethodNotAllowed)
					return
				}
				method = r.Method
				got = r.URL.Query()
				answer(200, vectorOne)(w, r)
			}))
			defer srv.Close()
			r, err := NewRemote(srv.URL+tc.query, RemoteOptions{Timeout: 5 * time.Second})
			require.NoError(t, err)
			_, err = r.Query(context.Background(), "up", time.Unix(1700000000, 0))
			require.NoError(t, err)
			for k, v := range tc.want {
				require.Equal(t, v, got[k], k)
			}
			if tc.refusePost {
				require.Equal(t, http.MethodGet, method)
				require.Equal(t, "up", got.Get("query"))
			}
		})
	}
}

// An answer with warnings is used, counted and logged at warning level;
// the same warnings of the same query again are not logged again until
// they change or the query answers without them.
func TestRemoteWarnings(t *testing.T) {
	t.Parallel()
	var warnings atomic.Value
	warnings.Store(`["receive series from store-1: rpc error: code = Unavailable"]`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws := warnings.Load().(string)
		answer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]},"warnings":`+ws+`}`)(w, r)
	}))
	defer srv.Close()
	var logs strings.Builder
	r, err := NewRemote(srv.URL, RemoteOptions{Timeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	query := func() {
		t.Helper()
		v, err := r.Query(context.Background(), "sum(up)", time.Unix(1700000000, 0))
		require.NoError(t, err)
		require.Len(t, v, 1)
	}
	query()
	query()
	require.EqualValues(t, 2, r.Warned())
	require.Equal(t, 1, strings.Count(logs.String(), "level=WARN"), logs.String())
	require.Contains(t, logs.String(), `msg="Data source answered with warnings; the result may be incomplete" query=sum(up) warnings="receive series from store-1: rpc error: code = Unavailable"`)

	warnings.Store(`["receive series from store-2: rpc error: code = Unavailable"]`)
	query()
	require.Equal(t, 2, strings.Count(logs.String(), "level=WARN"))

	warnings.Store(`[]`)
	query()
	warnings.Store(`["receive series from store-2: rpc error: code = Unavailable"]`)
	query()
	require.EqualValues(t, 4, r.Warned())
	require.Equal(t, 3, strings.Count(logs.String(), "level=WARN"))
}

// alertd_datasource_up follows the most recently started request that
// finished, not the one that finished last: a slow old request does not
// overturn what a newer one found. Real loopback requests overlap: the
// slow one is held by the server until the fast one is done.
func TestRemoteStatusFollowsLatestStarted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		slowOK, fastOK bool
		wantUp         bool
	}{
		{"old failure after a newer success", false, true, true},
		{"old success after a newer failure", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			arrived, release := make(chan struct{}), make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				require.NoError(t, r.ParseForm())
				ok := tc.fastOK
				if r.Form.Get("query") == "slow" {
					close(arrived)
					<-release
					ok = tc.slowOK
				}
				if !ok {
					http.Error(w, "bad gateway", http.StatusBadGateway)
					return
				}
				answer(200, vectorOne)(w, r)
			}))
			defer srv.Close()
			r, err := NewRemote(srv.URL, RemoteOptions{Timeout: 30 * time.Second})
			require.NoError(t, err)

			slowDone := make(chan error)
			go func() {
				_, err := r.Query(context.Background(), "slow", time.Now())
				slowDone <- err
			}()
			<-arrived
			_, err = r.Query(context.Background(), "fast", time.Now())
			require.Equal(t, tc.fastOK, err == nil, err)
			up, _, _, _ := r.Status()
			require.Equal(t, tc.fastOK, up)

			close(release)
			err = <-slowDone
			require.Equal(t, tc.slowOK, err == nil, err)
			up, _, lastSuccess, _ := r.Status()
			require.Equal(t, tc.wantUp, up, "the older request overturned the newer one")
			require.False(t, lastSuccess.IsZero(), "a success is a success, whenever it finished")
		})
	}
}

// A 429 with Retry-After that the previous data source sends after a
// reload moved to another one does not keep queries from the new one.
func TestRemoteRetryAfterOfReplacedAddress(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		answer(http.StatusTooManyRequests, "slow down", "Retry-After", "60")(w, r)
	}))
	defer old.Close()
	next := httptest.NewServer(answer(200, vectorOne))
	defer next.Close()
	r, err := NewRemote(old.URL, RemoteOptions{Timeout: 30 * time.Second})
	require.NoError(t, err)
	done := make(chan error)
	go func() {
		_, err := r.Query(context.Background(), "up", time.Now())
		done <- err
	}()
	<-arrived
	require.NoError(t, r.Update(next.URL, nil, 30*time.Second))
	close(release)
	require.ErrorContains(t, <-done, "429")
	_, err = r.Query(context.Background(), "up", time.Now())
	require.NoError(t, err)
}

// An answer that lacks part of the data fails the query and marks the data
// source down, whoever sends it: a VictoriaMetrics isPartial answer
// (instant or range), or Thanos refusing partial data. It is counted under
// its reason and logged once until the query is answered in full. A Thanos
// 422 about the query is that query's error. A URL that asks
// VictoriaMetrics for partial answers (deny_partial_response=0) gets them,
// as answers with a warning.
func TestRemotePartialAnswers(t *testing.T) {
	t.Parallel()
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := body.Load().(string)
		code := http.StatusOK
		if strings.Contains(b, `"status":"error"`) {
			code = http.StatusUnprocessableEntity
		}
		answer(code, b)(w, r)
	}))
	defer srv.Close()
	var logs strings.Builder
	r, err := NewRemote(srv.URL, RemoteOptions{Timeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	require.NoError(t, err)
	query := func(b string) error {
		t.Helper()
		body.Store(b)
		_, err := r.Query(context.Background(), "up", time.Unix(1700000000, 0))
		return err
	}
	up := func() bool {
		up, _, _, _ := r.Status()
		return up
	}

	var pe *PartialError
	require.ErrorAs(t, query(vmPartial), &pe)
	require.Nil(t, pe.Err)
	require.False(t, up())
	_, _, _, last := r.Status()
	require.Equal(t, ReasonPartialResponse, DownReason(last))
	require.Error(t, query(vmPartial))
	require.Equal(t, 1, strings.Count(logs.String(), "level=WARN"), logs.String())
	require.Contains(t, logs.String(), `msg="Data source answered with part of the data; the query fails and the data source counts as down" query=up err="the data source answered with part of the data (isPartial: some of its storage nodes did not answer); the answer is not used"`)

	require.NoError(t, query(vmComplete))
	require.True(t, up())
	require.Error(t, query(vmPartial))
	require.Equal(t, 2, strings.Count(logs.String(), "level=WARN"), "a partial answer after a full one is logged again")

	body.Store(`{"status":"success","isPartial":true,"data":{"resultType":"matrix","result":[{"metric": {"__name__":"up"},"values": [[1700000000,"1"],[1700000060,"1"]]}]},"stats":{"seriesFetched": "1","executionTimeMsec": 1}}`)
	_, err = r.QueryRange(context.Background(), "up", time.Unix(1700000000, 0), time.Unix(1700000060, 0), time.Minute)
	require.ErrorAs(t, err, &pe)

	require.ErrorAs(t, query(thanosAborted422), &pe)
	require.ErrorContains(t, pe.Err, "code = Aborted")
	require.False(t, up())
	require.ErrorContains(t, query(thanosDuplicateSeries422), "many-to-many")
	require.True(t, up(), "a bad query is not the data source's fault")

	require.EqualValues(t, 7, r.Queries())
	require.EqualValues(t, 5, r.Failed(ReasonPartialResponse))
	require.EqualValues(t, 1, r.Failed(ReasonQuery))
	require.Zero(t, r.Failed(ReasonUnavailable))
	require.Zero(t, r.Warned())

	allow, err := NewRemote(srv.URL+"?deny_partial_response=0", RemoteOptions{Timeout: 5 * time.Second})
	require.NoError(t, err)
	body.Store(vmPartial)
	v, err := allow.Query(context.Background(), "up", time.Unix(1700000000, 0))
	require.NoError(t, err)
	require.Len(t, v, 1)
	up2, _, _, _ := allow.Status()
	require.True(t, up2)
	require.EqualValues(t, 1, allow.Warned())
}

// A query that is not a rule's, a template's or an auxiliary one
// (deployment detection's), that gets part of the data fails (a template
// fails to expand, not the rule) and does not mark the data source down:
// its log says so, an auxiliary query's names its use, and it is kept
// apart from the rule's query of the same expression, so that both
// failing at every evaluation log once each, not in turn.
func TestRemotePartialAnswerOfOtherQueries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) context.Context
		log  string
	}{
		{
			name: "template",
			ctx:  func(ctx context.Context) context.Context { return withTemplateQuery(ctx, true) },
			log:  `msg="Data source answered a template's query with part of the data; the template fails to expand, the data source does not count as down" query=up err="the data source answered with part of the data (isPartial: some of its storage nodes did not answer); the answer is not used"`,
		},
		{
			name: "auxiliary",
			ctx:  func(ctx context.Context) context.Context { return WithAuxiliary(ctx, "deployment detection") },
			log:  `msg="Data source answered an auxiliary query with part of the data; the query fails, the data source does not count as down" use="deployment detection" query=up err="the data source answered with part of the data (isPartial: some of its storage nodes did not answer); the answer is not used"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(answer(http.StatusOK, vmPartial))
			defer srv.Close()
			var logs strings.Builder
			r, err := NewRemote(srv.URL, RemoteOptions{Timeout: 5 * time.Second,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			require.NoError(t, err)
			for range 3 {
				_, err := r.Query(context.Background(), "up", time.Unix(1700000000, 0))
				require.Error(t, err)
				_, err = r.Query(tc.ctx(context.Background()), "up", time.Unix(1700000000, 0))
				require.Error(t, err)
			}
			require.Equal(t, 2, strings.Count(logs.String(), "level=WARN"), logs.String())
			require.Contains(t, logs.String(), tc.log)
			require.Equal(t, 1, strings.Count(logs.String(), "counts as down"), logs.String())
		})
	}
}
