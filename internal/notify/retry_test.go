package notify

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/notify/notifytest"
	"github.com/modelmon/modelmon/internal/outbox"
)

func TestRetries(t *testing.T) {
	const config = `
route:
  receiver: r
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`

	t.Run("500 then 200 is delivered once", func(t *testing.T) {
		rcv := newReceiver(t, reply{http.StatusInternalServerError, "try later"})
		cfg := load(t, config, rcv.URL)
		synctest.Test(t, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			var got notifications
			n := start(t, Options{Config: cfg, Registerer: reg, OnNotify: got.add})
			require.NoError(t, n.Put(firing("alertname=A")))

			// The outbox retries within its initial backoff, under a second.
			time.Sleep(32 * time.Second)
			synctest.Wait()
			require.Equal(t, 2, rcv.requestCount())
			require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
			ns := got.get()
			require.Len(t, ns, 1)
			require.NoError(t, ns[0].Err)
			require.Equal(t, 1.0, value(t, reg, "alertd_notifications_total", "integration", "webhook"))
			require.Equal(t, 2.0, value(t, reg, "alertd_notification_requests_total", "integration", "webhook"))
			require.Equal(t, 1.0, value(t, reg, "alertd_notification_requests_failed_total", "integration", "webhook"))
			require.Equal(t, 0.0, value(t, reg, "alertd_notifications_failed_total", "integration", "webhook", "reason", "serverError"))
		})
	})

	t.Run("400 is dead-lettered at once with the body, redrive sends it again", func(t *testing.T) {
		rcv := newReceiver(t, reply{http.StatusBadRequest, "bad payload"})
		cfg := load(t, config, rcv.URL)
		synctest.Test(t, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			var got notifications
			n := start(t, Options{Config: cfg, Registerer: reg, OnNotify: got.add})
			require.NoError(t, n.Put(firing("alertname=A")))

			time.Sleep(35 * time.Second)
			synctest.Wait()
			require.Equal(t, 1, rcv.requestCount(), "a 4xx is not retried")
			ns := got.get()
			require.Len(t, ns, 1)
			require.ErrorContains(t, ns[0].Err, "unexpected status code 400: bad payload")
			require.Equal(t, "webhook[0]", ns[0].Integration)
			require.Equal(t, 1.0, value(t, reg, "alertd_notifications_total", "integration", "webhook"))
			require.Equal(t, 1.0, value(t, reg, "alertd_notifications_failed_total", "integration", "webhook", "reason", "clientError"))
			dead := n.Outbox().DeadLetters()
			require.Len(t, dead, 1)
			require.Equal(t, "unexpected status code 400: bad payload", dead[0].LastError)
			require.Equal(t, "r", dead[0].Receiver)

			// The outbox owns the notification now: the next flush finds
			// the group notified, and an operator redrives the dead letter
			// once the receiver is fixed.
			time.Sleep(time.Minute)
			synctest.Wait()
			require.Empty(t, rcv.summaries())
			require.NoError(t, n.Outbox().Redrive(dead[0].Key))
			synctest.Wait()
			require.Equal(t, []string{"r {} A:firing"}, rcv.summaries())
			require.NoError(t, got.get()[1].Err)
			require.Equal(t, 2.0, value(t, reg, "alertd_notifications_total", "integration", "webhook"))
			require.Empty(t, n.Outbox().DeadLetters())
		})
	})

	t.Run("dead receiver is retried past the flush, then dead-lettered with a reason and no secret, the others still work", func(t *testing.T) {
		live := newReceiver(t)
		dead := strings.Replace(deadURL(t), "http://", "http://user:s3cret@", 1) + "/hook?token=s3cret"
		cfg := load(t, `
route:
  receiver: live
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
  routes:
    - receiver: dead
      matchers: [alertname="Dead"]
receivers:
  - name: live
    webhook_configs: [{url: "{{URL}}"}]
  - name: dead
    webhook_configs: [{url: "`+dead+`"}]`, live.URL)
		synctest.Test(t, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			var got notifications
			n := start(t, Options{Config: cfg, Registerer: reg, OnNotify: got.add, Outbox: outbox.Options{MaxAge: time.Hour}})
			require.NoError(t, n.Put(firing("alertname=Dead")))

			// Retries go on after the flush's group_interval.
			time.Sleep(92 * time.Second)
			synctest.Wait()
			require.Empty(t, got.get())
			st := n.Outbox().Stats()
			require.Equal(t, 1, st.Pending)
			require.Equal(t, "dead", st.Lanes[0].Receiver)
			require.Contains(t, st.Lanes[0].LastError, "connection refused")
			require.NotContains(t, st.Lanes[0].LastError, "s3cret")
			require.Greater(t, value(t, reg, "alertd_notification_requests_failed_total", "integration", "webhook"), 5.0)

			require.NoError(t, n.Put(firing("alertname=Live")))
			time.Sleep(31 * time.Second)
			synctest.Wait()
			require.Equal(t, []string{`live {alertname="Live"} Live:firing`}, live.summaries())

			// After MaxAge, the next failure dead-letters it.
			time.Sleep(time.Hour + 5*time.Minute)
			synctest.Wait()
			var failed []Notification
			for _, x := range got.get() {
				if x.Receiver == "dead" {
					failed = append(failed, x)
				}
			}
			require.Len(t, failed, 1)
			require.ErrorContains(t, failed[0].Err, "connection refused")
			require.NotContains(t, failed[0].Err.Error(), "s3cret")
			require.Equal(t, 1.0, value(t, reg, "alertd_notifications_failed_total", "integration", "webhook", "reason", "other"))
			require.Len(t, n.Outbox().DeadLetters(), 1)
		})
	})
}

// A Retry-After far beyond --outbox.max-age (a year, from a misconfigured
// proxy, or a date far ahead) is honoured up to the message's max age,
// not longer: the lane is held back no longer than it would be by a
// receiver that is down, and its last attempt comes at the max age.
func TestRetryAfterBoundedByMaxAge(t *testing.T) {
	pd := notifytest.NewPagerDuty(t)
	cfg := load(t, `
route:
  receiver: pager
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1m
receivers:
  - name: pager
    pagerduty_configs: [{url: "{{URL}}", routing_key: k}]`, pd.URL)
	synctest.Test(t, func(t *testing.T) {
		pd.Fail(notifytest.Reply{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "31536000"}})
		n := start(t, Options{Config: cfg, Outbox: outbox.Options{MaxAge: time.Hour}})
		require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Equal(t, 1, pd.Requests())
		require.NoError(t, n.Put(classified("Skew", "fraud", time.Now())))

		time.Sleep(time.Hour)
		synctest.Wait()
		require.Empty(t, n.Outbox().DeadLetters())
		evs := pd.Events()
		require.Len(t, evs, 2, "both sent once the max age of the first is reached")
		require.Equal(t, "[FIRING:1] Drift: Feature amount drifted", evs[0]["payload"].(map[string]any)["summary"])
	})
}

// A 301, 302 or 303 to a POST makes Go's client (as any browser) follow
// with a GET, without the body: the receiver gets nothing, and whatever
// answers the GET (a 200 login page, a health check) must not count as
// delivered. Such a notification is dead-lettered, saying where it was
// redirected (scheme and host only: a path may be a secret, as Slack's
// webhook URLs are). A 307 or 308 repeats the POST with its body.
func TestRedirectedPost(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			// The URL redirected to answers 200 to anything, as a login
			// page does; it keeps the methods and bodies it got.
			var (
				mu     sync.Mutex
				posted []string
			)
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				posted = append(posted, r.Method+" "+strconv.Itoa(len(b)))
			}))
			t.Cleanup(target.Close)
			redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				http.Redirect(w, r, target.URL+"/s3cret/path", code)
			}))
			t.Cleanup(redirect.Close)
			cfg := load(t, `
route:
  receiver: r
  group_wait: 1s
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}/hook"}]`, redirect.URL)
			synctest.Test(t, func(t *testing.T) {
				var got notifications
				n := start(t, Options{Config: cfg, OnNotify: got.add})
				require.NoError(t, n.Put(firing("alertname=A")))
				time.Sleep(2 * time.Second)
				synctest.Wait()
				ns := got.get()
				require.Len(t, ns, 1)
				mu.Lock()
				require.Len(t, posted, 1)
				method := posted[0][:strings.Index(posted[0], " ")]
				mu.Unlock()
				if code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect {
					require.Equal(t, http.MethodPost, method)
					require.NoError(t, ns[0].Err)
					return
				}
				require.Equal(t, http.MethodGet, method)
				require.EqualError(t, ns[0].Err, fmt.Sprintf("redirected (%d) to %s, which the client followed with a GET without the notification: configure the URL it redirects to", code, target.URL))
				require.Len(t, n.Outbox().DeadLetters(), 1)
			})
		})
	}
}
