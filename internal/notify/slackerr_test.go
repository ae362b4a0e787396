package notify

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

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
