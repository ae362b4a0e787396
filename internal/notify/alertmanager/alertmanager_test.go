package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/notify/test"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/alertmanagertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The notifier's HTTP client keeps idle connections.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

func newNotifier(t *testing.T, u string) *Notifier {
	t.Helper()
	hc := commoncfg.DefaultHTTPClientConfig
	n, err := New(&alertconfig.AlertmanagerConfig{URL: u, Timeout: model.Duration(10 * time.Second), HTTPConfig: &hc}, nil)
	require.NoError(t, err)
	return n
}

func TestNotifyPayload(t *testing.T) {
	type request struct {
		path, userAgent, contentType string
		alerts                       models.PostableAlerts
	}
	var (
		mu   sync.Mutex
		last request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := request{path: r.URL.Path, userAgent: r.Header.Get("User-Agent"), contentType: r.Header.Get("Content-Type")}
		if err := json.NewDecoder(r.Body).Decode(&req.alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		last = req
	}))
	defer srv.Close()
	received := func() request {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	n := newNotifier(t, srv.URL+"/am/")

	now := time.Now().Truncate(time.Millisecond)
	start := now.Add(-time.Hour)
	mk := func(name string, endsAt time.Time) *alert.Alert {
		return alert.New(model.Alert{
			Labels:       model.LabelSet{"alertname": model.LabelValue(name), "model": "fraud"},
			Annotations:  model.LabelSet{"summary": "drift"},
			StartsAt:     start,
			EndsAt:       endsAt,
			GeneratorURL: "http://alertd/graph?g0.expr=psi",
		}, time.Time{}, false)
	}
	ctx := notify.WithRepeatInterval(t.Context(), time.Hour)
	ctx = notify.WithNow(ctx, now)
	ctx, cancel := context.WithDeadline(ctx, now.Add(5*time.Minute))
	defer cancel()

	// As the dispatcher hands them over: firing alerts without endsAt.
	resolvedAt := now.Add(-time.Minute)
	v := n.Notify(ctx, mk("Firing", time.Time{}), mk("Resolved", resolvedAt))
	require.NoError(t, v.Err())
	req := received()
	require.Equal(t, "/am"+AlertsPath, req.path)
	require.Equal(t, "application/json", req.contentType)
	require.True(t, strings.HasPrefix(req.userAgent, "alertd/"), req.userAgent)
	got := req.alerts
	require.Len(t, got, 2)
	for _, a := range got {
		require.Equal(t, "fraud", a.Labels["model"])
		require.Equal(t, models.LabelSet{"summary": "drift"}, a.Annotations)
		require.Equal(t, "http://alertd/graph?g0.expr=psi", a.GeneratorURL.String())
		require.True(t, start.Equal(time.Time(a.StartsAt)), "startsAt %s", a.StartsAt)
	}
	require.Equal(t, "Firing", got[0].Labels["alertname"])
	// Kept firing for two rounds of repeat_interval plus group_interval.
	require.True(t, now.Add(2*(time.Hour+5*time.Minute)).Equal(time.Time(got[0].EndsAt)), "endsAt %s", got[0].EndsAt)
	require.Equal(t, "Resolved", got[1].Labels["alertname"])
	require.True(t, resolvedAt.Equal(time.Time(got[1].EndsAt)), "endsAt %s", got[1].EndsAt)

	// Outside a dispatcher's flush, the Alertmanager's resolve_timeout applies.
	require.NoError(t, n.Notify(t.Context(), mk("Firing", time.Time{})).Err())
	got = received().alerts
	require.True(t, time.Time(got[0].EndsAt).IsZero(), "endsAt %s", got[0].EndsAt)
}

func TestRetry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.Split(r.URL.Path, "/")[1])
		if err != nil {
			http.Error(w, err.Error(), http.StatusTeapot)
			return
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "details")
	}))
	defer srv.Close()
	a := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "A"}, StartsAt: time.Now()}, time.Time{}, false)

	for code, retry := range test.RetryTests(append(test.DefaultRetryCodes(), http.StatusTooManyRequests)) {
		if code < 200 {
			continue // informational: not a final answer
		}
		v := newNotifier(t, fmt.Sprintf("%s/%d", srv.URL, code)).Notify(t.Context(), a)
		require.Equal(t, retry, v.ShouldRetry(), "status %d", code)
		if code/100 == 2 {
			require.NoError(t, v.Err(), "status %d", code)
			continue
		}
		require.ErrorContains(t, v.Err(), fmt.Sprintf("unexpected status code %d", code))
		require.Equal(t, notify.GetFailureReasonFromStatusCode(code), v.Reason(), "status %d", code)
	}
}

func TestErrorBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		header  http.Header
		body    string
		retry   bool
		delay   time.Duration
		reason  notify.Reason
		wantErr string
	}{
		{
			name: "client error with the body", status: http.StatusBadRequest, body: "start time must be before end time\n",
			reason: notify.ClientErrorReason, wantErr: "unexpected status code 400: start time must be before end time",
		},
		{
			name: "long body cut", status: http.StatusBadRequest, body: strings.Repeat("x", 5000),
			reason: notify.ClientErrorReason, wantErr: "unexpected status code 400: " + strings.Repeat("x", maxErrorBody),
		},
		{
			name: "rate limited with Retry-After", status: http.StatusTooManyRequests, header: http.Header{"Retry-After": {"3"}},
			retry: true, delay: 3 * time.Second, reason: notify.RateLimitedReason, wantErr: "unexpected status code 429",
		},
		{
			name: "server error", status: http.StatusBadGateway, body: "upstream down",
			retry: true, reason: notify.ServerErrorReason, wantErr: "unexpected status code 502: upstream down",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			a := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "A"}, StartsAt: time.Now()}, time.Time{}, false)
			v := newNotifier(t, srv.URL).Notify(t.Context(), a)
			require.EqualError(t, v.Err(), tc.wantErr)
			require.Equal(t, tc.retry, v.ShouldRetry())
			require.Equal(t, tc.delay, v.Delay())
			require.Equal(t, tc.reason, v.Reason())
		})
	}
}

func TestNoSecretInErrors(t *testing.T) {
	ctx, u, done := test.GetContextWithCancelingURL()
	defer done()
	u.User = url.UserPassword("user", "s3cret")
	u.RawQuery = "token=s3cret"
	test.AssertNotifyLeaksNoSecret(ctx, t, newNotifier(t, u.String()), "s3cret")

	_, err := New(&alertconfig.AlertmanagerConfig{URL: "ftp://user:s3cret@host"}, nil)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

// TestRealAlertmanager checks a real Alertmanager accepts what Notify sends,
// and that its own rejections come back with their explanation.
func TestRealAlertmanager(t *testing.T) {
	am := alertmanagertest.Start(t, "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	n := newNotifier(t, am.URL)
	ctx := notify.WithRepeatInterval(t.Context(), time.Hour)

	ok := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "A"}, StartsAt: time.Now()}, time.Time{}, false)
	require.NoError(t, n.Notify(ctx, ok).Err())
	alerts, err := am.Alerts(t.Context())
	require.NoError(t, err)
	require.Len(t, alerts, 1)

	// Alertmanager validates alerts: an end before the start is refused.
	bad := alert.New(model.Alert{Labels: model.LabelSet{"alertname": "B"}, StartsAt: time.Now(), EndsAt: time.Now().Add(-time.Hour)}, time.Time{}, false)
	v := n.Notify(ctx, bad)
	require.ErrorContains(t, v.Err(), "unexpected status code 400")
	require.ErrorContains(t, v.Err(), "start time must be before end time")
	require.False(t, v.ShouldRetry())
}
