package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/actions"
)

func TestSlack(t *testing.T) {
	srv := httptest.NewServer(&slack{})
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/auth.test")
	require.NoError(t, err)
	var auth map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&auth))
	resp.Body.Close()
	require.Equal(t, true, auth["ok"])

	post := func(method string, form url.Values) map[string]any {
		t.Helper()
		resp, err := http.PostForm(srv.URL+"/api/"+method, form)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		return m
	}
	got := post("chat.postMessage", url.Values{"channel": {"#ml-oncall"}, "text": {"[FIRING:1] ModelFeatureDrift"}})
	require.Equal(t, true, got["ok"])
	ts, _ := got["ts"].(string)
	require.NotEmpty(t, ts, "a timestamp, so that alertd can thread and update")

	got = post("chat.update", url.Values{"channel": {"#ml-oncall"}, "ts": {ts}, "text": {"[RESOLVED] ModelFeatureDrift"}})
	require.Equal(t, map[string]any{"ok": true, "channel": "#ml-oncall", "ts": ts}, got)

	require.Equal(t, map[string]any{"ok": false, "error": "channel_not_found"}, post("chat.postMessage", url.Values{"text": {"x"}}))
	require.Equal(t, map[string]any{"ok": false, "error": "unknown_method"}, post("chat.delete", url.Values{}))
}

func TestActions(t *testing.T) {
	const secret = "s3cret"
	srv := httptest.NewServer(&actionReceiver{verifier: &actions.Verifier{Secret: secret}, done: map[string]bool{}})
	defer srv.Close()

	body := []byte(`{"action":"retrain-fraud","trigger":"alert","labels":{"model":"fraud","alertname":"ModelFeatureDrift"}}`)
	send := func(key, sec string, at time.Time) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/actions/retrain-fraud", bytes.NewReader(body))
		require.NoError(t, err)
		ts, sig := actions.Sign(sec, body, at)
		req.Header.Set(actions.HeaderTimestamp, ts)
		req.Header.Set(actions.HeaderSignature, sig)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	require.Equal(t, http.StatusAccepted, send("k1", secret, now))
	require.Equal(t, http.StatusUnauthorized, send("k1", secret, now), "an exact replay")
	require.Equal(t, http.StatusOK, send("k1", secret, now.Add(-time.Second)), "a retry, signed anew: done already")
	require.Equal(t, http.StatusUnauthorized, send("k2", "wrong", now))
	require.Equal(t, http.StatusUnauthorized, send("k3", secret, now.Add(-time.Hour)), "too old")

	resp, err := http.Post(srv.URL+"/actions/retrain-fraud", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "unsigned")
}

func TestEvents(t *testing.T) {
	sink := &eventSink{counts: map[string]int{}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	send := func(header map[string]string) int {
		t.Helper()
		req, err := http.NewRequest("POST", srv.URL, strings.NewReader(`{"instances":[[1]]}`))
		require.NoError(t, err)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	ce := map[string]string{"Ce-Specversion": "1.0", "Ce-Type": "org.kubeflow.serving.inference.request", "Ce-Id": "1", "Ce-Source": "http://pod/"}
	require.Equal(t, http.StatusAccepted, send(ce))
	require.Equal(t, http.StatusAccepted, send(ce))
	require.Equal(t, http.StatusBadRequest, send(map[string]string{"Ce-Id": "1"}))
	require.Equal(t, map[string]int{"org.kubeflow.serving.inference.request": 2}, sink.counts)
}
