package exporter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
)

func TestPushAPI(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, func(o *Options) { o.PushMaxBodySize = 4096 })
	url := "http://" + e.WebAddr() + "/v1/observations"

	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		status      int
		accepted    int
		rejected    []Rejection
		errContains string
	}{
		{
			name: "array, all valid", contentType: "application/json",
			body:   `[{"model":"a","version":"1","id":"x1","timestamp":"2026-11-25T10:00:00Z","features":{"f":1,"g":"red","h":true},"prediction":"yes","latency":0.1},{"model":"a","timestamp":1764064800.5,"features":{"f":2}}]`,
			status: 200, accepted: 2, rejected: []Rejection{},
		},
		{
			name: "ndjson, some invalid", contentType: "application/x-ndjson",
			body:   "{\"model\":\"a\",\"features\":{\"f\":1}}\n\n{\"model\":\"a\",\"extra\":1}\n{\"model\":\"a\",\"latency\":-1}\n{\"model\":\"a\",\"timestamp\":\"yesterday\"}\n{\"model\":\"a\",\"features\":{\"f\":[1]}}\n{\"model\":\"a\",\"prediction\":{\"p\":\"x\",\"q\":\"y\"}}\nnot json\n{\"model\":\"a\",\"prediction\":[0.1,0.9]}\n",
			status: 200, accepted: 2,
			rejected: []Rejection{
				{Index: 1, Reason: "unknown_field"}, {Index: 2, Reason: "invalid_latency"},
				{Index: 3, Reason: "invalid_timestamp"}, {Index: 4, Reason: "invalid_feature"},
				{Index: 5, Reason: "invalid_prediction"}, {Index: 6, Reason: "invalid_json"},
			},
		},
		{name: "all invalid", contentType: "application/json", body: `[{"x":1}]`, status: 400, rejected: []Rejection{{Index: 0, Reason: "unknown_field"}}},
		{name: "not an array", contentType: "application/json", body: `[{"model":"a"}`, status: 400, errContains: "invalid JSON array"},
		{name: "empty", contentType: "application/json", body: "  ", status: 400, errContains: "empty body"},
		{name: "too large", contentType: "application/json", body: "[" + strings.Repeat(`{"model":"a"},`, 400) + `{"model":"a"}]`, status: 413, errContains: "--push.max-body-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := do(t, "POST", url, tc.body, "Content-Type", tc.contentType)
			require.Equal(t, tc.status, st, body)
			var resp PushResponse
			require.NoError(t, json.Unmarshal([]byte(body), &resp), body)
			require.Equal(t, tc.accepted, resp.Accepted)
			if tc.errContains != "" {
				require.Contains(t, resp.Error, tc.errContains)
				return
			}
			require.Len(t, resp.Rejected, len(tc.rejected), body)
			for i, r := range tc.rejected {
				require.Equal(t, r.Index, resp.Rejected[i].Index)
				require.Equal(t, r.Reason, resp.Rejected[i].Reason, resp.Rejected[i].Error)
				require.NotEmpty(t, resp.Rejected[i].Error)
			}
		})
	}
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_observations_received_total", map[string]string{"model": "a"}))
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "a"}))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_observations_rejected_total", map[string]string{"reason": "unknown_field"}))
	st, _ := do(t, "GET", url, "")
	require.Equal(t, 405, st)
}

// A single observation or label may be a pretty-printed JSON object over
// several lines, as README's "a JSON array, a single object, or NDJSON"
// allows: it is one record, not one invalid record per line.
func TestPushSingleObjectOnSeveralLines(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, labelsOn)
	obs := "{\n  \"model\": \"m\",\n  \"id\": \"p1\",\n  \"features\": {\"f\": 1},\n  \"prediction\": \"yes\"\n}\n"
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations", obs, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	var resp PushResponse
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Equal(t, PushResponse{Accepted: 1, Rejected: []Rejection{}}, resp)

	st, body = do(t, "POST", "http://"+e.WebAddr()+"/v1/labels", "{\n  \"id\": \"p1\",\n  \"label\": \"yes\"\n}", "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	var lresp LabelsResponse
	require.NoError(t, json.Unmarshal([]byte(body), &lresp))
	require.Equal(t, []string{"matched"}, lresp.Results)
}

// A pushed observation's timestamp is when the model made the prediction:
// the label delay runs from it.
func TestPushTimestampIsPredictionTime(t *testing.T) {
	e, clock := labelsExporter(t)
	pushRecordsRaw(t, e, `{"model":"m","id":"p1","prediction":"yes","timestamp":1799999400}`,
		`{"model":"m","id":"p2","prediction":"yes","timestamp":"2027-01-15T05:20:00Z"}`, // 1799990400: 2.5 hours before
		`{"model":"m","id":"p3","prediction":"yes"}`)
	clock.Add(time.Minute)
	_, resp := postLabels(t, e, `{"id":"p1","label":"yes"}`+"\n"+`{"id":"p2","label":"yes"}`+"\n"+`{"id":"p3","label":"yes"}`)
	require.Equal(t, []string{"matched", "expired", "matched"}, resp.Results)
	require.Equal(t, 660.0+60, metricValue(t, e, "modelmon_label_delay_seconds_sum", map[string]string{"model": "m"}))
}

// A prediction pushed with a timestamp ahead of the sidecar's clock (a
// model server's clock that is ahead, or a date mistyped) counts from when
// it arrived: pending predictions expire oldest first, by arrival, and it
// must not keep the ones behind it waiting past their TTL.
func TestPushFutureTimestampHoldsNoExpiry(t *testing.T) {
	e, clock := labelsExporter(t)
	pushRecordsRaw(t, e, `{"model":"m","id":"ahead","prediction":"yes","timestamp":"2100-01-01T00:00:00Z"}`,
		`{"model":"m","id":"p1","prediction":"yes"}`,
		`{"model":"m","id":"p2","prediction":"yes"}`)
	clock.Add(2 * time.Hour)
	pushRecordsRaw(t, e, `{"model":"m","id":"p3","prediction":"yes"}`)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_pending_predictions", nil), "p3 alone waits")
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_pending_predictions_removed_total", map[string]string{"reason": "expired"}))
	_, resp := postLabels(t, e, `{"id":"ahead","label":"yes"}`+"\n"+`{"id":"p3","label":"yes"}`)
	require.Equal(t, []string{"expired", "matched"}, resp.Results)
}

// A timestamp of null is none, as encoding/json takes null for any other
// field (Python's None: a record built with timestamp=None); one beyond
// the times the sidecar holds (Unix nanoseconds: 1678 to 2262), as Unix
// milliseconds are read as seconds, is rejected with an error saying so,
// rather than taken as a time that wraps around.
func TestPushTimestampNullAndOutOfRange(t *testing.T) {
	e, clock := labelsExporter(t)
	url := "http://" + e.WebAddr() + "/v1/observations"
	st, body := do(t, "POST", url, `[{"model":"m","id":"p1","prediction":"yes","timestamp":null},`+
		`{"model":"m","id":"p2","prediction":"yes","timestamp":1800000000000},`+
		`{"model":"m","id":"p3","prediction":"yes","timestamp":1e300},`+
		`{"model":"m","id":"p4","prediction":"yes","timestamp":"9999-12-31T23:59:59Z"}]`, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	var resp PushResponse
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Equal(t, 1, resp.Accepted)
	require.Equal(t, []Rejection{
		{Index: 1, Reason: "invalid_timestamp", Error: "timestamp 1800000000000 is out of range: want Unix seconds, below 9223372036 (the year 2262), not milliseconds"},
		{Index: 2, Reason: "invalid_timestamp", Error: "timestamp 1e300 is out of range: want Unix seconds, below 9223372036 (the year 2262), not milliseconds"},
		{Index: 3, Reason: "invalid_timestamp", Error: `timestamp "9999-12-31T23:59:59Z" is out of range: want a time from 1678 to 2262`},
	}, resp.Rejected)

	clock.Add(time.Minute)
	st, lresp := postLabels(t, e, `{"id":"p1","label":"yes","timestamp":null}`+"\n"+`{"id":"p1","label":"yes","timestamp":1800000060000}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched"}, lresp.Results)
	require.Equal(t, []Rejection{{Index: 1, Reason: "invalid_timestamp",
		Error: "timestamp 1800000060000 is out of range: want Unix seconds, below 9223372036 (the year 2262), not milliseconds"}}, lresp.Rejected)
	require.Equal(t, 60.0, metricValue(t, e, "modelmon_label_delay_seconds_sum", map[string]string{"model": "m"}))
}

// Traffic-derived labels are capped: 10,000 distinct feature names and 100
// model names give a bounded number of series and count the overflow.
func TestLabelExplosion(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("limits:\n  max_models: 5\n  max_features: 50\n"), 0o644))
	logger, logs := testLogger()
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Logger = logger })
	proxy := "http://" + e.ProxyAddr()

	var b strings.Builder
	b.WriteString(`{"instances":[{`)
	for i := 0; i < 10000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"feature_%d":null`, i)
	}
	b.WriteString(`}]}`)
	st, _ := do(t, "POST", proxy+"/v1/models/wide:predict", b.String())
	require.Equal(t, 200, st)
	for i := 0; i < 100; i++ {
		st, _ := do(t, "POST", fmt.Sprintf("%s/v1/models/m%d:predict", proxy, i), `{"instances":[[1]]}`)
		require.Equal(t, 200, st)
	}
	waitIdle(t, e)

	fams := scrape(t, e, "modelmon_")
	invalid := fams["modelmon_feature_values_invalid_total"].text
	require.LessOrEqual(t, strings.Count(invalid, "\nmodelmon_feature_values_invalid_total{"), 51)
	require.Contains(t, invalid, `feature="__other__"`)
	require.Equal(t, 96.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "__other__"}))
	require.Greater(t, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "feature"}), 0.0)
	require.Equal(t, 96.0, metricValue(t, e, "modelmon_label_overflow_total", map[string]string{"label": "model"}))
	require.LessOrEqual(t, strings.Count(fams["modelmon_requests_total"].text, "\nmodelmon_requests_total{"), 6)
	// The operator reads it in the logs once, not once per request.
	require.Equal(t, 1, strings.Count(logs.String(), `msg="Too many models`), logs.String())
	require.Contains(t, logs.String(), `model=m4 max_models=5 times=1`)
	require.Equal(t, 1, strings.Count(logs.String(), `msg="Too many features`))
	require.Contains(t, logs.String(), `model=wide feature=feature_50 max_features=50 times=1`)
}

// Malformed payloads never affect the request; each is counted by reason.
func TestMalformedPayloads(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, nil)
	proxy := "http://" + e.ProxyAddr()
	for _, body := range []string{
		`{"instances":[{"a":1`, // truncated
		`{"instances":[1,2,]}`, // malformed
		`not json at all`,
		``,
		`{"instances":"nope"}`,
		`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`,
	} {
		st, _ := do(t, "POST", proxy+"/v1/models/m:predict", body)
		require.Equal(t, 200, st, "the model server answers, whatever monitoring makes of the body")
	}
	waitIdle(t, e)
	fams := scrape(t, e, "modelmon_payload_errors_total")
	text := fams["modelmon_payload_errors_total"].text
	var total float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "modelmon_payload_errors_total{") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			total += v
		}
	}
	require.Equal(t, 6.0, total, text)
	require.Equal(t, 6.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "m"}))
}

// A full queue drops captures and counts them; every request is served.
func TestCaptureQueueFull(t *testing.T) {
	up := modelServer(t)
	// A byte budget smaller than any capture: every capture is dropped.
	logger, logs := testLogger()
	e := startExporter(t, up.URL, func(o *Options) { o.CaptureMaxBytes = 10; o.Logger = logger })
	proxy := "http://" + e.ProxyAddr()
	for i := 0; i < 20; i++ {
		st, _ := do(t, "POST", proxy+"/v1/models/q:predict", `{"instances":[[1]]}`)
		require.Equal(t, 200, st)
	}
	require.Equal(t, 20.0, metricValue(t, e, "modelmon_capture_dropped_total", map[string]string{"model": "q", "reason": "queue_full"}))
	require.Equal(t, 20.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "q"}))
	require.Equal(t, 1, strings.Count(logs.String(), `msg="Capture queue full`), logs.String())
	require.Contains(t, logs.String(), `model=q queue_size=4096 max_queue_bytes=10 times=1`)

	// With no worker reading, the second capture finds the queue full.
	q := newQueue(1, 1<<20, 1<<20, promslog.NewNopLogger())
	m := e.models.get([]byte("direct"), 100)
	q.offer(m, 0, bodyEncodings{}, answerTiming{}, []byte("{}"), nil, nil, nil, false)
	q.offer(m, 0, bodyEncodings{}, answerTiming{}, []byte("{}"), nil, nil, nil, false)
	require.Equal(t, 1, q.stats().Length)
	require.EqualValues(t, 2, q.stats().Bytes)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_capture_dropped_total", map[string]string{"model": "direct", "reason": "queue_full"}))
}

// A bad configuration on reload keeps the running one and says so in a metric.
func TestReload(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("default_model: one\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg })
	web := "http://" + e.WebAddr()
	proxy := "http://" + e.ProxyAddr()

	do(t, "POST", proxy+"/score", `{"a":1}`)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "one"}))

	require.NoError(t, os.WriteFile(cfg, []byte("default_model: two\nbogus: 1\n"), 0o644))
	st, body := do(t, "POST", web+"/-/reload", "")
	require.Equal(t, 500, st)
	require.Contains(t, body, `modelmon.yml:2: unknown field "bogus"`)
	// So is a value its type refuses, with its key.
	require.NoError(t, os.WriteFile(cfg, []byte("default_model: two\nlabels:\n  timeout: -1s\n"), 0o644))
	st, body = do(t, "POST", web+"/-/reload", "")
	require.Equal(t, 500, st)
	require.Contains(t, body, `modelmon.yml:3: labels.timeout: not a valid duration string: "-1s"`)
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_exporter_config_last_reload_successful", map[string]string{}))
	do(t, "POST", proxy+"/score", `{"a":1}`)
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "one"}), "the old configuration is still in force")

	require.NoError(t, os.WriteFile(cfg, []byte("default_model: two\n"), 0o644))
	st, body = do(t, "POST", web+"/-/reload", "")
	require.Equal(t, 200, st, body)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_exporter_config_last_reload_successful", map[string]string{}))
	do(t, "POST", proxy+"/score", `{"a":1}`)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "two"}))

	st, _ = do(t, "GET", web+"/-/healthy", "")
	require.Equal(t, 200, st)
	st, _ = do(t, "GET", web+"/-/ready", "")
	require.Equal(t, 200, st)
}

// A reload keeps the version traffic has shown since the configuration's,
// unless it changes the configured version.
func TestReloadKeepsTrafficVersion(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: m\n    version: v1\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg })
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "m", "version": "v1"}))
	pushRecordsRaw(t, e, `{"model":"m","version":"v2","prediction":1}`)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "m", "version": "v2"}))
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: m\n    version: v1\n    classes: [a, b]\n"), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "m", "version": "v2"}))
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: m\n    version: v3\n"), 0o644))
	require.NoError(t, e.Reload())
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "m", "version": "v3"}))
}

// Names that are not valid UTF-8, or are very long, never reach client_golang
// as they are (it panics on invalid label values): they are repaired and cut.
func TestTrafficLabelValuesAreSanitised(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, nil)
	long := strings.Repeat("m", 300)
	// A raw 0xff byte in the path and in a header, which no HTTP client library sends.
	for _, req := range []string{
		"POST /v1/models/bad\xffname:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\n{\"instances\":[{\"f\\xff\":1}]}",
		"POST /score HTTP/1.1\r\nHost: x\r\nX-Model-Name: hdr\xfe\r\nX-Model-Version: v\xff1\r\nContent-Length: 21\r\n\r\n{\"f\\u00ff\\udc00\":null}",
		"POST /v1/models/" + long + ":predict HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\n{\"instances\":[[1]]}",
	} {
		resp := rawRoundTrip(t, e.ProxyAddr(), req)
		require.Equal(t, "HTTP/1.1 200 OK", resp.start)
	}
	waitIdle(t, e)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "bad\uFFFDname"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "hdr\uFFFD"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": long[:128]}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_model_info", map[string]string{"model": "hdr\uFFFD", "version": "v\uFFFD1"}))
}

// The classes a model answers and the segment values of its features
// become label values as model names do: valid UTF-8 and at most 128
// bytes. A class that was not valid UTF-8 made client_golang panic in the
// parser, which lost the payload, and a long one (a generative model's
// text, a pushed prediction) made a series of that size. Labels name the
// class as cut, or as sent: they join either way.
func TestTrafficClassesAndSegmentsAreLabelValues(t *testing.T) {
	long := strings.Repeat("y", 300)
	answers := map[string]string{
		"r1": "{\"predictions\":[\"a\xff\"]}",
		"r2": `{"predictions":["` + long + `"]}`,
	}
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		var body string
		for _, h := range req.headers {
			if id, ok := strings.CutPrefix(h, "X-Request-Id: "); ok {
				body = answers[id]
			}
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	logger, logs := testLogger()
	e := startWithConfig(t, up.URL(), "models:\n  - name: m\n    segments: [seg]\n", func(o *Options) {
		o.Logger = logger
		o.Labels = LabelsOptions{Enabled: true}
	})
	for id, seg := range map[string]string{"r1": "s\xff", "r2": long} {
		body := `{"instances":[{"seg":"` + seg + `"}]}`
		req := fmt.Sprintf("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s", id, len(body), body)
		require.Equal(t, "HTTP/1.1 200 OK", rawRoundTrip(t, e.ProxyAddr(), req).start)
	}
	pushRecordsRaw(t, e, `{"model":"m","id":"p1","prediction":"`+long+`","features":{"seg":"`+long+`"}}`)
	waitIdle(t, e)
	require.NotContains(t, logs.String(), "panic")
	require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "m", "reason": "internal_error"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_class_total", map[string]string{"model": "m", "class": "a\uFFFD"}))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_prediction_class_total", map[string]string{"model": "m", "class": long[:128]}))

	_, resp := postLabels(t, e, `{"id":"r1","label":"a\ufffd"}`+"\n"+`{"id":"r2","label":"`+long[:128]+`"}`+"\n"+`{"id":"p1","label":"`+long+`"}`)
	require.Equal(t, []string{"matched", "matched", "matched"}, resp.Results)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_segment_labels_matched_total", map[string]string{"model": "m", "segment": "seg", "segment_value": "s\uFFFD"}))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_segment_labels_matched_total", map[string]string{"model": "m", "segment": "seg", "segment_value": long[:128]}))
	for _, f := range scrape(t, e, "modelmon_") {
		for _, line := range strings.Split(f.text, "\n") {
			require.NotContains(t, line, long[:129])
		}
	}
}

// MLflow's scoring server takes CSV; the sidecar reads it like the JSON
// forms.
func TestMLflowCSVThroughTheProxy(t *testing.T) {
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"predictions\": [0.1, 0.9]}")
		return true
	})
	e := startExporter(t, up.URL(), nil)
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/invocations", "amount,country\n12.5,DE\n3,FR\n", "Content-Type", "text/csv", "X-Model-Name", "churn")
	require.Equal(t, 200, st)
	waitIdle(t, e)
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "churn"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_payloads_parsed_total", map[string]string{"model": "churn", "format": "mlflow"}))
}

// Seldon Core 1's prediction API through the sidecar: the deployment its
// ingress path names is the model, each row of "ndarray" an instance named
// by "names", the response's meta.puid the prediction id (id_path). Its
// feedback API passes through, not a prediction, and its truth joins the
// predictions it names as labels.
func TestSeldonThroughTheProxy(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/feedback") {
			io.WriteString(w, `{"data": {"tensor": {"shape": [0], "values": []}}, "meta": {}}`)
			return
		}
		io.WriteString(w, `{"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.9, 0.05, 0.05], [0.01, 0.2, 0.79]]}, "meta": {"puid": "p-1"}}`)
	}))
	t.Cleanup(up.Close)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: iris\n    id_path: meta.puid\n    classes: [setosa, versicolor, virginica]\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })
	base := "http://" + e.ProxyAddr() + "/seldon/prod/iris/api/v1.0/"

	st, _ := do(t, "POST", base+"predictions",
		`{"data": {"names": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "ndarray": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]}}`)
	require.Equal(t, 200, st)
	waitIdle(t, e)
	iris := map[string]string{"model": "iris"}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", iris))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", iris))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_payloads_parsed_total", map[string]string{"model": "iris", "format": "seldon_v1"}))

	// Seldon's client sends the request, the answer it got and the truth.
	st, _ = do(t, "POST", base+"feedback", `{"request": {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]}},
		"response": {"meta": {"puid": "p-1"}, "data": {"ndarray": [[0.9, 0.05, 0.05], [0.01, 0.2, 0.79]]}},
		"reward": 0.5, "truth": {"data": {"ndarray": [["setosa"], ["versicolor"]]}}}`)
	require.Equal(t, 200, st)
	// A reward alone is no label, and a body that is not JSON is no
	// feedback; without a puid the id header names the prediction.
	st, _ = do(t, "POST", base+"feedback", `{"response": {"meta": {"puid": "p-1"}}, "reward": 1}`)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", base+"feedback", `{"truth": `)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", base+"feedback", `{"truth": {"data": {"ndarray": [["setosa"]]}}}`, "X-Request-Id", "later-1")
	require.Equal(t, 200, st)
	waitIdle(t, e)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", iris), "feedback is not a prediction")
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "iris", "reason": "invalid_json"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_held_labels", nil), "the label waits for prediction later-1")
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_labels_matched_total", iris))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "iris", "predicted": "setosa", "actual": "setosa"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "iris", "predicted": "virginica", "actual": "versicolor"}))
	require.Zero(t, metricValue(t, e, "modelmon_labels_rejected_total", map[string]string{"reason": "invalid_label"}))
	require.Zero(t, metricValue(t, e, "modelmon_labels_rejected_total", map[string]string{"reason": "invalid_json"}))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_labels_total", map[string]string{"reason": "matched"}))
	// Every feedback read counts its reward, 0 when it has none.
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_feedback_reward_count", iris))
	require.Equal(t, 1.5, metricValue(t, e, "modelmon_feedback_reward_sum", iris))
}

// Seldon's opaque messages: an image in "binData" (as JSON, or as the form
// `curl -F binData=@cat.png` sends, which its Python wrapper takes) or a
// text in "strData" is one prediction without features, whatever the
// answer: a class, another image, a text. None is a payload error, and
// the class a form's image is answered with joins its label.
func TestSeldonOpaqueMessages(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch body, _ := io.ReadAll(r.Body); {
		case strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data"):
			io.WriteString(w, `{"data": {"names": ["class"], "ndarray": ["cat"]}, "meta": {"puid": "form-1"}}`)
		case strings.Contains(string(body), "strData"):
			io.WriteString(w, `{"strData": "le renard brun rapide", "meta": {"puid": "str-1"}}`)
		default:
			io.WriteString(w, `{"binData": "iVBORw0KGgo=", "meta": {"puid": "bin-1"}}`)
		}
	}))
	t.Cleanup(up.Close)
	e := startWithConfig(t, up.URL, "models:\n  - name: vision\n    id_path: meta.puid\n", func(o *Options) { o.Labels = LabelsOptions{Enabled: true} })
	url := "http://" + e.ProxyAddr() + "/seldon/prod/vision/api/v1.0/predictions"

	st, _ := do(t, "POST", url, `{"binData": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "meta": {}}`)
	require.Equal(t, 200, st)
	st, _ = do(t, "POST", url, `{"strData": "The quick brown fox"}`)
	require.Equal(t, 200, st)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	part, err := mw.CreateFormFile("binData", "cat.png")
	require.NoError(t, err)
	part.Write([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	require.NoError(t, mw.Close())
	st, _ = do(t, "POST", url, form.String(), "Content-Type", mw.FormDataContentType())
	require.Equal(t, 200, st)
	waitIdle(t, e)

	vision := map[string]string{"model": "vision"}
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_requests_total", vision))
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_predictions_total", vision), "one instance each")
	require.Equal(t, 3.0, metricValue(t, e, "modelmon_payloads_parsed_total", map[string]string{"model": "vision", "format": "seldon_v1"}))
	if errs := scrape(t, e, "modelmon_payload_errors_total")["modelmon_payload_errors_total"]; errs != nil {
		require.NotContains(t, errs.text, `model="vision"`)
	}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_class_total", map[string]string{"model": "vision", "class": "cat"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_pending_predictions", nil), "only the answered class waits for a label")

	_, resp := postLabels(t, e, `{"id":"form-1","label":"cat"}`+"\n"+`{"id":"bin-1","label":"cat"}`)
	require.Equal(t, []string{"matched", "held"}, resp.Results, "an image answered with an image predicts nothing to join: its label waits in vain")
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_prediction_outcome_total", map[string]string{"model": "vision", "predicted": "cat", "actual": "cat"}))
}

// Seldon's rewards are counted without the label join, and a feedback that
// is not one is counted as a payload error, as a prediction's would be.
func TestSeldonRewardsWithoutLabels(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data": {"tensor": {"shape": [0], "values": []}}, "meta": {}}`)
	}))
	t.Cleanup(up.Close)
	e := startExporter(t, up.URL, nil)
	base := "http://" + e.ProxyAddr() + "/seldon/prod/bandit/api/v1.0/feedback"
	for _, body := range []string{`{"reward": 1}`, `{"reward": 0}`, `{"reward": -0.5, "truth": {"data": {"ndarray": [[1]]}}}`, `{"reward": "1"}`,
		`{"reward": "NaN"}`, `{"reward": 1, "truth": [1]}`} {
		st, _ := do(t, "POST", base, body)
		require.Equal(t, 200, st)
	}
	// A GET is no feedback.
	st, _ := do(t, "GET", base, "")
	require.Equal(t, 200, st)
	waitIdle(t, e)
	bandit := map[string]string{"model": "bandit"}
	require.Equal(t, 4.0, metricValue(t, e, "modelmon_feedback_reward_count", bandit))
	require.Equal(t, 1.5, metricValue(t, e, "modelmon_feedback_reward_sum", bandit))
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "bandit", "reason": "type_mismatch"}))
	require.Zero(t, metricValue(t, e, "modelmon_requests_total", bandit), "feedback is not a prediction")
	require.Equal(t, 7.0, metricValue(t, e, "modelmon_passthrough_requests_total", nil))
	requireMetricsDocumented(t, e)
}

// Python's json module writes NaN, Infinity and -Infinity (pandas' missing
// values are NaN): a pushed record with them is kept, and the values are
// counted as invalid (nan, inf) as the proxy counts them, not the whole
// record rejected.
func TestPushNonFiniteValues(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, nil)
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations",
		`[{"model":"m","features":{"a":NaN,"b":Infinity,"c":-Infinity,"d":"NaN Infinity"},"prediction":[NaN,0.5]},`+
			`{"model":"m","features":{"a":1},"prediction":NaN},`+
			`{"model":"m","latency":NaN}]`, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	var resp PushResponse
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Equal(t, 2, resp.Accepted, body)
	require.Equal(t, []Rejection{{Index: 2, Reason: "invalid_latency"}}, stripErrors(resp.Rejected))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "m", "feature": "a", "reason": "nan"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "m", "feature": "b", "reason": "inf"}))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "m", "feature": "c", "reason": "inf"}))
	require.Equal(t, 0.0, metricValue(t, e, "modelmon_feature_values_invalid_total", map[string]string{"model": "m", "feature": "d", "reason": "nan"}), "a string stays a string")
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "m"}))
}
