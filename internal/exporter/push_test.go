package exporter

import (
	"encoding/json"
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
