package alertd

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// intakeConfig keeps posted alerts and routes them nowhere.
const intakeConfig = "global:\n  evaluation_interval: 1s\n"

// POST /api/v2/alerts and the webhook intake answer malformed input with
// 4xx and the reasons, keep the valid alerts of a mixed batch, and count
// what they reject.
func TestIntakeBadInput(t *testing.T) {
	t.Parallel()
	a := startAlertd(t, intakeConfig, nil, func(o *Options) { o.MaxAlertsBody = 1024 })
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }

	for _, tc := range []struct {
		name     string
		endpoint string
		method   string
		body     string
		code     int
		want     string // the whole answer
		invalid  float64
	}{
		{
			name: "malformed JSON", endpoint: endpointV2Alerts, body: `[{"labels":`,
			code: 400, want: "couldn't parse alerts: unexpected end of JSON input\n", invalid: 1,
		},
		{
			name: "not a list", endpoint: endpointV2Alerts, body: `{"labels":{"alertname":"x"}}`,
			code: 400, want: "couldn't parse alerts: json: cannot unmarshal object into Go value of type models.PostableAlerts\n", invalid: 1,
		},
		{
			name: "label value not a string", endpoint: endpointV2Alerts, body: `[{"labels":{"alertname":1}}]`,
			code: 400, want: "couldn't parse alerts: json: cannot unmarshal number into Go struct field Alert.labels of type string\n", invalid: 1,
		},
		{
			name: "empty labels", endpoint: endpointV2Alerts, body: `[{"labels":{}}]`,
			code: 400, want: "alert 0 ({}): at least one label pair required\n", invalid: 1,
		},
		{
			name: "only empty label values", endpoint: endpointV2Alerts, body: `[{"labels":{"alertname":""}}]`,
			code: 400, want: "alert 0 ({}): at least one label pair required\n", invalid: 1,
		},
		{
			name: "invalid label name", endpoint: endpointV2Alerts, body: `[{"labels":{"alertname":"x","0bad":"y"}}]`,
			code: 400, want: "alert 0 ({0bad=\"y\", alertname=\"x\"}): invalid label set: invalid name \"0bad\"\n", invalid: 1,
		},
		{
			name: "invalid annotation name", endpoint: endpointV2Alerts, body: `[{"labels":{"alertname":"x"},"annotations":{"a-b":"c"}}]`,
			code: 400, want: "alert 0 ({alertname=\"x\"}): invalid annotations: invalid name \"a-b\"\n", invalid: 1,
		},
		{
			name: "endsAt before startsAt", endpoint: endpointV2Alerts,
			body: `[{"labels":{"alertname":"x"},"startsAt":"` + ts(0) + `","endsAt":"` + ts(-time.Minute) + `"}]`,
			code: 400, want: "alert 0 ({alertname=\"x\"}): start time must be before end time\n", invalid: 1,
		},
		{
			name: "bad time", endpoint: endpointV2Alerts, body: `[{"labels":{"alertname":"x"},"startsAt":"yesterday"}]`,
			code: 400, want: "couldn't parse alerts: parsing time \"yesterday\" as \"2006-01-02\": cannot parse \"yesterday\" as \"2006\"\n", invalid: 1,
		},
		{
			name: "null entries", endpoint: endpointV2Alerts, body: `[null,{"labels":{"alertname":"AfterNull"}},null,{"labels":{}}]`,
			code: 400, want: "alert 0: null\nalert 2: null\nalert 3 ({}): at least one label pair required\n", invalid: 3,
		},
		{
			name: "mixed batch", endpoint: endpointV2Alerts,
			body: `[{"labels":{"alertname":"Good1"}},{"labels":{}},{"labels":{"alertname":"Good2","model":"fraud"}},{"labels":{"alertname":"x","1":"y"}}]`,
			code: 400, want: "alert 1 ({}): at least one label pair required\nalert 3 ({1=\"y\", alertname=\"x\"}): invalid label set: invalid name \"1\"\n", invalid: 2,
		},
		{
			name: "body too large", endpoint: endpointV2Alerts, body: `[{"labels":{"alertname":"` + strings.Repeat("x", 1024) + `"}}]`,
			code: 413, want: "request body larger than 1024 bytes\n", invalid: 1,
		},
		{
			name: "PUT", endpoint: endpointV2Alerts, method: http.MethodPut,
			code: 405, want: "this endpoint requires a POST request\n", invalid: 1,
		},
		{
			name: "webhook: malformed JSON", endpoint: endpointWebhook, body: `{"version":"4","alerts":[`,
			code: 400, want: "couldn't parse webhook payload: unexpected EOF\n", invalid: 1,
		},
		{
			name: "webhook: wrong version", endpoint: endpointWebhook, body: `{"version":"3","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"x"}}]}`,
			code: 400, want: "unsupported webhook payload version \"3\": want \"4\"\n", invalid: 1,
		},
		{
			name: "webhook: no version", endpoint: endpointWebhook, body: `{"alerts":[]}`,
			code: 400, want: "unsupported webhook payload version \"\": want \"4\"\n", invalid: 1,
		},
		{
			name: "webhook: no alerts", endpoint: endpointWebhook, body: `{"version":"4"}`,
			code: 400, want: "webhook payload has no alerts\n", invalid: 1,
		},
		{
			name: "webhook: invalid alert", endpoint: endpointWebhook,
			body: `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"FromAM"}},{"status":"firing","labels":{}}]}`,
			code: 400, want: "alert 1 ({}): at least one label pair required\n", invalid: 1,
		},
		{
			name: "webhook: null alert", endpoint: endpointWebhook, body: `{"version":"4","status":"firing","alerts":[null]}`,
			code: 400, want: "alert 0 ({}): at least one label pair required\n", invalid: 1,
		},
		{
			name: "webhook: too large", endpoint: endpointWebhook, body: `{"version":"4","alerts":[{"labels":{"alertname":"` + strings.Repeat("x", 1024) + `"}}]}`,
			code: 413, want: "request body larger than 1024 bytes\n", invalid: 1,
		},
		{
			name: "webhook: PUT", endpoint: endpointWebhook, method: http.MethodPut, body: `{}`,
			code: 405, want: "this endpoint requires a POST request\n", invalid: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, ok := metric(t, a.Registry(), "alertd_intake_alerts_invalid_total", "endpoint", tc.endpoint)
			require.True(t, ok)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequestWithContext(t.Context(), method, a.URL+tc.endpoint, strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body := readAll(t, resp)
			require.Equal(t, tc.code, resp.StatusCode, body)
			require.Equal(t, tc.want, body)
			if tc.code == http.StatusMethodNotAllowed {
				allow := http.MethodPost
				if tc.endpoint == endpointV2Alerts {
					allow = "GET, POST" // GET lists the alerts (apiv2.go)
				}
				require.Equal(t, allow, resp.Header.Get("Allow"))
			}
			after, _ := metric(t, a.Registry(), "alertd_intake_alerts_invalid_total", "endpoint", tc.endpoint)
			require.Equal(t, tc.invalid, after-before)
		})
	}

	// The valid alerts of rejected batches were kept, with their source.
	byName := map[string]alertJSON{}
	for _, al := range a.alerts(t) {
		byName[string(al.Labels["alertname"])] = al
	}
	require.Len(t, byName, 4, "alerts: %v", byName)
	for name, src := range map[string]Source{"Good1": SourcePrometheus, "Good2": SourcePrometheus, "AfterNull": SourcePrometheus, "FromAM": SourceAlertmanager} {
		al, ok := byName[name]
		require.True(t, ok, name)
		require.Equal(t, src, al.Source, name)
		require.Equal(t, "firing", al.State, name)
		require.Equal(t, []string{"intake/received", "route/routed", "incident/grouped"}, actions(al.History), name)
		require.Equal(t, "matches the routes to [none]", al.History[1].Reason, name)
	}
	require.Equal(t, model.LabelSet{"alertname": "Good2", "model": "fraud"}, byName["Good2"].Labels)
	// Without endsAt a pushed alert lasts resolve_timeout (5m by default).
	require.WithinDuration(t, time.Now().Add(5*time.Minute), byName["Good1"].EndsAt, time.Minute)

	code, _ := get(t, a.URL+"/-/healthy")
	require.Equal(t, http.StatusOK, code)
}

// Valid alerts posted to either intake go through the pipeline: firing,
// then resolved by a later post, with their history.
func TestIntakeLifecycle(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)

	code, body := post(t, a.URL+endpointV2Alerts, "application/json",
		`[{"labels":{"alertname":"Pushed","model":"fraud"},"annotations":{"summary":"pushed by a test"},"startsAt":"`+startsAt.Format(time.RFC3339Nano)+`","generatorURL":"http://prometheus.example/graph"}]`)
	require.Equal(t, http.StatusOK, code, body)
	p := h.wait(t, "Pushed", "firing", 30*time.Second)
	require.Len(t, p.Alerts, 1)
	require.Equal(t, payloadAlert{
		Status:       "firing",
		Labels:       map[string]string{"alertname": "Pushed", "model": "fraud"},
		Annotations:  map[string]string{"summary": "pushed by a test"},
		StartsAt:     startsAt,
		GeneratorURL: "http://prometheus.example/graph",
		Fingerprint:  fingerprint(map[string]string{"alertname": "Pushed", "model": "fraud"}),
	}, payload{Alerts: p.Alerts}.UTC().Alerts[0])

	// The delivery is written into the history once the receiver has
	// answered, which may be a moment after it got the payload.
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "Pushed", SourcePrometheus)
		return ok && slices.Contains(actions(al.History), "notify/notified")
	}, 30*time.Second, 20*time.Millisecond)

	// Alertmanager's webhook says it resolved.
	endsAt := time.Now().UTC().Truncate(time.Millisecond)
	code, body = post(t, a.URL+endpointWebhook, "application/json", `{"version":"4","status":"resolved","receiver":"x","groupKey":"{}:{}","alerts":[
		{"status":"resolved","labels":{"alertname":"Pushed","model":"fraud"},"annotations":{"summary":"pushed by a test"},
		 "startsAt":"`+startsAt.Format(time.RFC3339Nano)+`","endsAt":"`+endsAt.Format(time.RFC3339Nano)+`"}]}`)
	require.Equal(t, http.StatusOK, code, body)
	p = h.wait(t, "Pushed", "resolved", 30*time.Second)
	require.Equal(t, "resolved", p.Alerts[0].Status)
	require.True(t, endsAt.Equal(p.Alerts[0].EndsAt), "endsAt %s, want %s", p.Alerts[0].EndsAt, endsAt)

	var al alertJSON
	require.Eventually(t, func() bool {
		var ok bool
		al, ok = a.alert(t, "Pushed", SourceAlertmanager)
		return ok && len(al.History) >= 6
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, "resolved", al.State)
	require.Equal(t, []string{"intake/received", "route/routed", "incident/grouped", "notify/notified", "intake/resolved", "notify/notified"}, actions(al.History))
	require.Contains(t, al.History[0].Reason, "posted to /api/v2/alerts by 127.0.0.1:")
	require.Contains(t, al.History[4].Reason, "posted to /api/v1/webhook/alertmanager by 127.0.0.1:")
	h.checkWire(t)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
