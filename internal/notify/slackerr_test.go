package notify

import (
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/notify/notifytest"
)

// Slack's errors are dead-lettered at once with what Slack said: the Web
// API answers 200 {"ok":false,"error":…}, an incoming webhook a 4xx whose
// body is the error's name.
func TestSlackErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		conf  string
		reply notifytest.Reply
		want  string
	}{
		"web api ok false": {
			conf:  `{api_url: "{{URL}}/api", token: xoxb-t0ken, channel: ml}`,
			reply: notifytest.Reply{Status: http.StatusOK, Header: map[string]string{"Content-Type": "application/json"}, Body: `{"ok":false,"error":"channel_not_found"}`},
			want:  "slack: channel_not_found",
		},
		"incoming webhook 404": {
			conf:  `{webhook_url: "{{URL}}/services/T/B/s3cret"}`,
			reply: notifytest.Reply{Status: http.StatusNotFound, Body: "channel_not_found"},
			want:  "unexpected status code 404: channel_not_found",
		},
		"incoming webhook 403": {
			conf:  `{webhook_url: "{{URL}}/services/T/B/s3cret"}`,
			reply: notifytest.Reply{Status: http.StatusForbidden, Body: "invalid_token"},
			want:  "unexpected status code 403: invalid_token",
		},
		"incoming webhook 400": {
			conf:  `{webhook_url: "{{URL}}/services/T/B/s3cret"}`,
			reply: notifytest.Reply{Status: http.StatusBadRequest, Body: "invalid_blocks"},
			want:  "unexpected status code 400: invalid_blocks",
		},
	} {
		t.Run(name, func(t *testing.T) {
			sl := notifytest.NewSlack(t)
			cfg := load(t, "route: {receiver: team, group_wait: 1s}\nreceivers:\n  - name: team\n    slack_configs: ["+tc.conf+"]\n", sl.URL)
			synctest.Test(t, func(t *testing.T) {
				sl.Fail(tc.reply)
				n := start(t, Options{Config: cfg})
				require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
				time.Sleep(2 * time.Second)
				synctest.Wait()
				dead := n.Outbox().DeadLetters()
				require.Len(t, dead, 1)
				require.Equal(t, tc.want, dead[0].LastError)
				require.Empty(t, sl.Calls())
			})
		})
	}
}

// Annotations longer than Slack takes in a block are cut to fit, so that
// the message is not refused (invalid_blocks) and dead-lettered.
func TestSlackLongAnnotations(t *testing.T) {
	for name, conf := range map[string]string{
		"web api":          `{api_url: "{{URL}}/api", token: xoxb-t0ken, channel: ml}`,
		"incoming webhook": `{webhook_url: "{{URL}}/services/T/B/s3cret"}`,
	} {
		t.Run(name, func(t *testing.T) {
			sl := notifytest.NewSlack(t)
			cfg := load(t, "route: {receiver: team, group_wait: 1s}\nreceivers:\n  - name: team\n    slack_configs: ["+conf+"]\n", sl.URL)
			synctest.Test(t, func(t *testing.T) {
				n := start(t, Options{Config: cfg})
				a := classified(strings.Repeat("Drift", 40), "fraud", time.Now())
				for _, k := range []model.LabelName{"value", "action", "priority", "category", "summary", "explanation"} {
					a.Annotations[k] = model.LabelValue(strings.Repeat("é", 5000))
				}
				require.NoError(t, n.Put(a))
				time.Sleep(2 * time.Second)
				synctest.Wait()
				if dead := n.Outbox().DeadLetters(); len(dead) > 0 {
					t.Fatalf("dead-lettered: %s", dead[0].LastError)
				}
				calls := sl.Calls()
				require.Len(t, calls, 1)
				texts, _ := blockTexts(t, calls[0].Blocks)
				require.Len(t, texts["section.fields"], 6)
				for _, f := range texts["section.fields"][1:5] { // Priority, Category, Value, Action
					require.Equal(t, 2000, utf8.RuneCountInString(f), "cut to Slack's 2000 characters")
					require.True(t, strings.HasSuffix(f, "é…"))
				}
			})
		})
	}
}

// A title template that renders blank (a label the alerts lack) would
// make the header block empty, which Slack refuses (invalid_blocks): the
// default title stands in for it, and the message is posted.
func TestSlackBlankTitle(t *testing.T) {
	for name, conf := range map[string]string{
		"web api":          `{api_url: "{{URL}}/api", token: xoxb-t0ken, channel: ml, title: "{{ .CommonLabels.team }} "}`,
		"incoming webhook": `{webhook_url: "{{URL}}/services/T/B/s3cret", title: "{{ .CommonLabels.team }} "}`,
	} {
		t.Run(name, func(t *testing.T) {
			sl := notifytest.NewSlack(t)
			cfg := load(t, "route: {receiver: team, group_wait: 1s}\nreceivers:\n  - name: team\n    slack_configs: ["+conf+"]\n", sl.URL)
			synctest.Test(t, func(t *testing.T) {
				n := start(t, Options{Config: cfg})
				require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
				time.Sleep(2 * time.Second)
				synctest.Wait()
				if dead := n.Outbox().DeadLetters(); len(dead) > 0 {
					t.Fatalf("dead-lettered: %s", dead[0].LastError)
				}
				calls := sl.Calls()
				require.Len(t, calls, 1)
				texts, _ := blockTexts(t, calls[0].Blocks)
				require.Equal(t, []string{"[FIRING:1] Drift"}, texts["header"])
				require.Equal(t, "[FIRING:1] Drift", calls[0].Text)
			})
		})
	}
}

// Slack reads <, > and & in mrkdwn as its control sequences: a label value
// carried into an annotation ("<!channel>", "<@U123>") would notify the
// whole channel or a user, and "p < 0.05 … > 0.2" would turn into a
// broken link. Values from alerts are escaped (&lt; &gt; &amp;), as
// Slack's formatting guide asks, in the blocks, the notification text and
// the thread replies; an escape is never cut by the truncation.
func TestSlackEscapesMrkdwn(t *testing.T) {
	sl := notifytest.NewSlack(t)
	cfg := load(t, "route: {receiver: team, group_wait: 1s, group_interval: 1m, group_by: [alertname]}\nreceivers:\n  - name: team\n    slack_configs: [{api_url: \"{{URL}}/api\", token: xoxb-t0ken, channel: ml}]\n", sl.URL)
	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: cfg})
		a := classified("<!channel>", "fraud", time.Now())
		a.Annotations["summary"] = "<!channel> p < 0.05 & psi > 0.2"
		a.Annotations["value"] = "<@U123>"
		a.Annotations["explanation"] = model.LabelValue(strings.Repeat("x", 2897) + "&&")
		require.NoError(t, n.Put(a))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Empty(t, n.Outbox().DeadLetters())
		calls := sl.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, "[FIRING:1] &lt;!channel&gt;", calls[0].Text)
		texts, _ := blockTexts(t, calls[0].Blocks)
		require.Equal(t, []string{"[FIRING:1] <!channel>"}, texts["header"], "plain_text is not parsed")
		require.Equal(t, []string{"&lt;!channel&gt; p &lt; 0.05 &amp; psi &gt; 0.2", "*Why it is anomalous*\n" + strings.Repeat("x", 2897) + "…"}, texts["section"])
		require.Contains(t, texts["section.fields"], "*Value*\n&lt;@U123&gt;")

		b := classified("<!channel>", "fraud", time.Now())
		b.Labels["feature"] = "amount"
		require.NoError(t, n.Put(b))
		time.Sleep(time.Minute)
		synctest.Wait()
		calls = sl.Calls()
		require.Len(t, calls, 3)
		require.Equal(t, "Update: 2 firing, 0 resolved (&lt;!channel&gt; firing).", calls[2].Text)
	})
}

// Slack ends a link's URL at the first | or > and the link at the first
// >: a runbook or dashboard URL from an alert holding them would cut the
// link short and post the rest as mrkdwn, notifying the channel. They are
// percent-encoded in the URL (the same address), & is escaped, and the
// whole link stays one link.
func TestSlackEscapesLinks(t *testing.T) {
	sl := notifytest.NewSlack(t)
	cfg := load(t, "route: {receiver: team, group_wait: 1s}\nreceivers:\n  - name: team\n    slack_configs: [{api_url: \"{{URL}}/api\", token: xoxb-t0ken, channel: ml}]\n", sl.URL)
	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: cfg})
		a := classified("Drift", "fraud", time.Now())
		a.Annotations["runbook_url"] = "https://runbooks.example/drift?q=a|b&x=1><!channel>"
		a.Annotations["dashboard_url"] = "https://grafana.example/d/drift?var=a b|Fake>"
		require.NoError(t, n.Put(a))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Empty(t, n.Outbox().DeadLetters())
		calls := sl.Calls()
		require.Len(t, calls, 1)
		texts, _ := blockTexts(t, calls[0].Blocks)
		require.Equal(t, []string{"<https://grafana.example/d/drift?var=a%20b%7CFake%3E|Dashboard> · " +
			"<https://runbooks.example/drift?q=a%7Cb&amp;x=1%3E%3C!channel%3E|Runbook>"}, texts["context"])
	})
}

// Slack's Web API sends Retry-After in seconds, but HTTP allows an
// HTTP-date too (RFC 9110 10.2.3), which slack-go cannot parse: a date is
// honoured, from the response's Date (Slack's clock), and a value that is
// neither retries with the backoff; both count as rate limited.
func TestSlackRetryAfterForms(t *testing.T) {
	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		header map[string]string
		// wait is how long after the 429 the post comes again.
		wait time.Duration
	}{
		"http-date": {header: map[string]string{"Date": date.Format(http.TimeFormat), "Retry-After": date.Add(20 * time.Second).Format(http.TimeFormat)}, wait: 20 * time.Second},
		"garbage":   {header: map[string]string{"Retry-After": "soon"}, wait: 0},
	} {
		t.Run(name, func(t *testing.T) {
			sl := notifytest.NewSlack(t)
			cfg := load(t, "route: {receiver: team, group_wait: 1s}\nreceivers:\n  - name: team\n    slack_configs: [{api_url: \"{{URL}}/api\", token: xoxb-t0ken, channel: ml}]\n", sl.URL)
			synctest.Test(t, func(t *testing.T) {
				sl.Fail(notifytest.Reply{Status: http.StatusTooManyRequests, Header: tc.header})
				reg := prometheus.NewRegistry()
				n := start(t, Options{Config: cfg, Registerer: reg})
				require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
				time.Sleep(time.Second + tc.wait - 500*time.Millisecond)
				synctest.Wait()
				if tc.wait > 0 {
					require.Empty(t, sl.Calls(), "waits for the date")
				}
				// The backoff's first retry comes within --outbox.initial-backoff (1s).
				time.Sleep(1500 * time.Millisecond)
				synctest.Wait()
				require.Empty(t, n.Outbox().DeadLetters())
				require.Len(t, sl.Calls(), 1)
				require.Equal(t, 1.0, value(t, reg, "alertd_outbox_delivery_failures_total", "receiver", "team", "integration", "slack", "reason", "rate_limited"))
				require.Equal(t, 0.0, value(t, reg, "alertd_outbox_delivery_failures_total", "receiver", "team", "integration", "slack", "reason", "connection"))
			})
		})
	}
}
