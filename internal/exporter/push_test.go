package exporter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmeReasons returns the reasons README.md lists, in backquotes between
// parentheses, after the metric family with a reason label named by after.
func readmeReasons(t *testing.T, after string) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(b)
	i := strings.Index(text, after)
	require.GreaterOrEqual(t, i, 0, "README.md names %s", after)
	text = text[i+len(after):]
	open, end := strings.Index(text, "("), strings.Index(text, ")")
	require.True(t, open >= 0 && end > open, "README.md lists the reasons of %s in parentheses", after)
	var reasons []string
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(text[open:end], -1) {
		reasons = append(reasons, m[1])
	}
	return reasons
}

// Every reason README gives for rejecting a pushed record is one a record
// can be rejected for, and is exposed from the start at 0. A record without
// a model is not rejected: it is default_model's, as a proxied request that
// names none.
func TestPushRejectionReasonsAsDocumented(t *testing.T) {
	e := startWithConfig(t, modelServer(t).URL, "default_model: fraud\n", nil)
	url := "http://" + e.WebAddr() + "/v1/observations"
	reasons := readmeReasons(t, "`modelmon_observations_rejected_total{reason}`")
	for _, r := range reasons {
		require.Zero(t, metricValue(t, e, "modelmon_observations_rejected_total", map[string]string{"reason": r}))
	}
	got := scrape(t, e, "modelmon_observations_rejected_total")["modelmon_observations_rejected_total"]
	require.NotNil(t, got)
	require.Equal(t, len(reasons), strings.Count(got.text, "\nmodelmon_observations_rejected_total{"), got.text)

	records := map[string]string{
		"invalid_json":       `{"model":1}`,
		"unknown_field":      `{"extra":1}`,
		"invalid_timestamp":  `{"timestamp":"yesterday"}`,
		"invalid_latency":    `{"latency":-1}`,
		"invalid_feature":    `{"features":{"f":[1]}}`,
		"invalid_prediction": `{"prediction":{"p":"x","q":"y"}}`,
	}
	documented := slices.Clone(reasons)
	slices.Sort(documented)
	var provoked []string
	for r, rec := range records {
		st, body := do(t, "POST", url, rec, "Content-Type", "application/json")
		require.Equal(t, 400, st, body)
		var resp PushResponse
		require.NoError(t, json.Unmarshal([]byte(body), &resp))
		require.Equal(t, []Rejection{{Index: 0, Reason: r}}, stripErrors(resp.Rejected), body)
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_observations_rejected_total", map[string]string{"reason": r}))
		provoked = append(provoked, r)
	}
	slices.Sort(provoked)
	require.Equal(t, documented, provoked, "README's reasons are those a record can be rejected for")

	st, body := do(t, "POST", url, `[{"features":{"f":1}},{"model":"","features":{"f":2}}]`, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	require.JSONEq(t, `{"accepted":2,"rejected":[]}`, body)
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_observations_received_total", map[string]string{"model": "fraud"}))
}

// A body that starts with a UTF-8 byte order mark (a file saved by
// PowerShell, or Notepad, posted with curl --data-binary @file) is read
// as without it, as RFC 8259 lets a parser do; a record that is not JSON
// gets the decoder's error, not "got a number".
func TestPushByteOrderMarkAndNotJSON(t *testing.T) {
	e := startExporter(t, modelServer(t).URL, labelsOn)
	url := "http://" + e.WebAddr() + "/v1/observations"
	const bom = "\ufeff"
	for body, ct := range map[string]string{
		bom + `[{"model":"a"},{"model":"a"}]`:              "application/json",
		bom + `{"model":"a"}`:                              "application/json",
		bom + "{\"model\":\"a\"}\r\n{\"model\":\"a\"}\r\n": "application/x-ndjson",
	} {
		st, got := do(t, "POST", url, body, "Content-Type", ct)
		require.Equal(t, 200, st, got)
		require.Contains(t, got, `"rejected":[]`, body)
	}
	require.Equal(t, 5.0, metricValue(t, e, "modelmon_observations_received_total", map[string]string{"model": "a"}))

	st, got := do(t, "POST", url, "a=b", "Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, 400, st, got)
	require.JSONEq(t, `{"accepted":0,"rejected":[{"index":0,"reason":"invalid_json","error":"invalid character 'a' looking for beginning of value"}]}`, got)

	st, lresp := postLabels(t, e, bom+`{"id":"p1","label":"x"}`)
	require.Equal(t, 200, st)
	require.Empty(t, lresp.Rejected)
	require.Equal(t, []string{"held"}, lresp.Results)
}

// A record that is null, or any other JSON value than an object, is
// rejected with its index, not taken as an empty record: encoding/json
// decodes null into a struct as nothing, which made it an observation of
// the default model.
func TestPushRecordNotAnObject(t *testing.T) {
	e := startExporter(t, modelServer(t).URL, labelsOn)
	url := "http://" + e.WebAddr() + "/v1/observations"
	st, body := do(t, "POST", url, `[{"model":"a"},null,1,"x",[],true]`, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	var resp PushResponse
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Equal(t, 1, resp.Accepted)
	require.Equal(t, []Rejection{
		{Index: 1, Reason: "invalid_json", Error: "a record must be a JSON object, got null"},
		{Index: 2, Reason: "invalid_json", Error: "a record must be a JSON object, got a number"},
		{Index: 3, Reason: "invalid_json", Error: "a record must be a JSON object, got a string"},
		{Index: 4, Reason: "invalid_json", Error: "a record must be a JSON object, got an array"},
		{Index: 5, Reason: "invalid_json", Error: "a record must be a JSON object, got a boolean"},
	}, resp.Rejected)

	for b, index := range map[string]string{"null": "0", "{\"model\":\"a\"}\nnull\n": "1"} {
		_, body = do(t, "POST", url, b, "Content-Type", "application/x-ndjson")
		require.Contains(t, body, `"rejected":[{"index":`+index+`,"reason":"invalid_json","error":"a record must be a JSON object, got null"}]`, b)
	}
	require.Zero(t, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "default"}))
	require.Equal(t, 7.0, metricValue(t, e, "modelmon_observations_rejected_total", map[string]string{"reason": "invalid_json"}))

	st, lresp := postLabels(t, e, "{\"id\":\"p1\",\"label\":\"x\"}\nnull")
	require.Equal(t, 200, st)
	require.Equal(t, []Rejection{{Index: 1, Reason: "invalid_json", Error: "a record must be a JSON object, got null"}}, lresp.Rejected)
}

// pushBody is a JSON array of n observations as a model server pushes them:
// ten features, a prediction, an id and a timestamp each.
func pushBody(n int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"model":"fraud","version":"v3","id":"req-%d","timestamp":"2026-11-25T10:00:00Z",`+
			`"features":{"amount":%d.5,"country":"DE","new_customer":true,"age":41,"tenure":3.25,`+
			`"channel":"web","score_a":0.125,"score_b":0.5,"items":7,"premium":false},"prediction":0.93,"latency":0.012}`, i, i%500)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// BenchmarkPushHandle measures the push API's handler on a batch of 100
// observations, from the request to the answer, without the network.
func BenchmarkPushHandle(b *testing.B) {
	e := startExporter(b, "http://model.internal:8080", nil)
	h := &pushHandler{maxBody: e.opts.PushMaxBodySize, models: e.models, obs: e.obs, now: e.opts.Now}
	body := pushBody(100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/observations", bytes.NewReader(body)))
		if w.Code != http.StatusOK {
			b.Fatal(w.Body.String())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/record")
}

// Field names match exactly: encoding/json alone matches them regardless
// of case, which read "Model" as model and "FEATURES" as features though
// README says unknown fields are errors. Names inside features, and keys
// written with escapes, are as sent.
func TestPushFieldNamesAreExact(t *testing.T) {
	e := startExporter(t, modelServer(t).URL, labelsOn)
	url := "http://" + e.WebAddr() + "/v1/observations"
	st, body := do(t, "POST", url, `[{"Model":"a"},{"model":"a","FEATURES":{"f":1}},{"model":"a","features":{"F":1,"[\"x\"]":2},"prediction":[{"label":"a","score":0.9}]},`+
		`{"model":"a","features":{"g":{"Model":1}}},{"mod\u0065l":"a","id":"p1","prediction":"yes"},{"model":"a","Latency":1}]`, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	var resp PushResponse
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Equal(t, 2, resp.Accepted, body)
	require.Equal(t, []Rejection{
		{Index: 0, Reason: "unknown_field", Error: `json: unknown field "Model"`},
		{Index: 1, Reason: "unknown_field", Error: `json: unknown field "FEATURES"`},
		{Index: 3, Reason: "invalid_feature", Error: `feature "g": want a number, string, boolean or null, got map[string]interface {}`},
		{Index: 5, Reason: "unknown_field", Error: `json: unknown field "Latency"`},
	}, resp.Rejected)
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_observations_received_total", map[string]string{"model": "a"}))

	st, lresp := postLabels(t, e, `{"ID":"p1","label":"yes"}`+"\n"+`{"id":"p1","Label":"yes"}`+"\n"+`{"id":"p1","label":"yes","MODEL":"a"}`)
	require.Equal(t, 400, st)
	require.Equal(t, []Rejection{
		{Index: 0, Reason: "unknown_field", Error: `json: unknown field "ID"`},
		{Index: 1, Reason: "unknown_field", Error: `json: unknown field "Label"`},
		{Index: 2, Reason: "unknown_field", Error: `json: unknown field "MODEL"`},
	}, lresp.Rejected)
}

// exactFields agrees with decoding the object's keys: it refuses a record
// exactly when one of its keys, unescaped, is not a field.
func FuzzExactFields(f *testing.F) {
	for _, s := range []string{`{"model":"a"}`, `{"Model":"a"}`, `{"model":"a,\"Model\":{","id":"x"}`, `{"id":"\\","model":"a"}`,
		`{"features":{"Model":[{"x":"}"}]},"prediction":[{"FEATURES":1}]}`, `{"mod\u0065l":"a"}`, `{"model":"a","id\\":1}`, `{}`, ` { "id" : [ ] , "ID" : 1 } `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var keys map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &keys) != nil || keys == nil {
			return
		}
		want := true
		for k := range keys {
			want = want && slices.Contains(observationFields, k)
		}
		err := exactFields([]byte(s), observationFields)
		require.Equal(t, want, err == nil, "%s: %v", s, err)
	})
}

// BenchmarkPushDecode measures the decoding of one pushed observation, and
// the part of it that checks its field names are exact.
func BenchmarkPushDecode(b *testing.B) {
	var raws []json.RawMessage
	if err := json.Unmarshal(pushBody(1), &raws); err != nil {
		b.Fatal(err)
	}
	raw := raws[0]
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := decodeObservation(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("exact_fields", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := exactFields(raw, observationFields); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// answering is a model server that answers every request with body.
func answering(t testing.TB, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

// proxiedAndPushed returns the exposition of the families a prediction, its
// features and its label count in, after the proxy reads a JSON request
// {"f": feature} and its answer, with the id p1, and after a sidecar of its
// own is pushed the same; both are then sent the label "b" for p1. The
// model is m, of format json.
func proxiedAndPushed(t *testing.T, feature, answer string) (proxied, pushed string) {
	t.Helper()
	const cfg = "models:\n  - name: m\n    format: json\n"
	proxyOnly := []string{"modelmon_prediction_duration_seconds", "modelmon_prediction_time_to_first_byte_seconds",
		"modelmon_prediction_errors_total", "modelmon_label_delay_seconds"}
	collect := func(e *Exporter) string {
		_, resp := postLabels(t, e, `{"id":"p1","label":"b"}`)
		require.Len(t, resp.Results, 1)
		fams := scrape(t, e, "modelmon_")
		var skip []string
		for n := range fams {
			if !strings.HasPrefix(n, "modelmon_prediction") && !strings.HasPrefix(n, "modelmon_label") &&
				n != "modelmon_feature_values_invalid_total" && n != "modelmon_payload_errors_total" || slices.Contains(proxyOnly, n) {
				skip = append(skip, n)
			}
		}
		return "label: " + resp.Results[0] + "\n" + joinFamilies(fams, skip...)
	}
	e := startWithConfig(t, answering(t, answer).URL, cfg, labelsOn)
	st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/predict", `{"f":`+feature+`}`, "X-Model-Name", "m", "X-Request-Id", "p1", "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	waitIdle(t, e)
	proxied = collect(e)

	e = startWithConfig(t, modelServer(t).URL, cfg, labelsOn)
	st, body = do(t, "POST", "http://"+e.WebAddr()+"/v1/observations", `{"model":"m","id":"p1","features":{"f":`+feature+`},"prediction":`+answer+`}`, "Content-Type", "application/json")
	require.Equal(t, 200, st, body)
	return proxied, collect(e)
}

// A number too large for a float64 (1e999) is infinite, as the proxy reads
// it: a feature counts as inf and a prediction is read, rather than the
// record being rejected. A latency of 1e999 is invalid_latency.
func TestPushOutOfRangeNumbers(t *testing.T) {
	for _, tc := range []struct{ feature, answer string }{
		{"1e999", "0.5"},
		{"-1e999", "1e999"},
		{"1", "[1e999, 0.5]"},
		{"1e-999", `{"label":"x","score":1e999}`},
	} {
		t.Run(tc.feature+" "+tc.answer, func(t *testing.T) {
			proxied, pushed := proxiedAndPushed(t, tc.feature, tc.answer)
			require.Contains(t, proxied, `modelmon_predictions_total{model="m"} 1`)
			require.Equal(t, proxied, pushed)
		})
	}
	e := startExporter(t, modelServer(t).URL, nil)
	st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations", `{"model":"m","features":{"f":1e999},"latency":1e999}`, "Content-Type", "application/json")
	require.Equal(t, 400, st)
	require.JSONEq(t, `{"accepted":0,"rejected":[{"index":0,"reason":"invalid_latency","error":"latency must be a finite number of seconds ≥ 0, got 1e999"}]}`, body)
}

// NaN, Infinity and -Infinity inside a pushed prediction that is an object,
// or a list of them, are numbers, as the proxy reads them in a model's
// answer: the class scores and the confidence they are count as the
// proxy's do, not as strings that are no score.
func TestPushNonFiniteInObjectPrediction(t *testing.T) {
	for _, answer := range []string{
		`{"label":"x","score":NaN}`,
		`{"label":"x","score":Infinity}`,
		`[{"label":"a","score":NaN},{"label":"b","score":0.7}]`,
		`[{"label":"a","score":-Infinity},{"label":"b","score":0.2}]`,
		`{"prediction":"b","probabilities":[NaN,0.6],"labels":["a","b"]}`,
		`{"prediction":NaN,"note":"NaN \"Infinity\""}`,
	} {
		t.Run(answer, func(t *testing.T) {
			proxied, pushed := proxiedAndPushed(t, "1", answer)
			require.Contains(t, proxied, `modelmon_predictions_total{model="m"} 1`)
			require.Equal(t, proxied, pushed)
		})
	}
}
