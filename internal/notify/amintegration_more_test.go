package notify

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeAPI is an HTTP server standing in for a service's API: it answers
// each request with the reply routed to its method and path ("POST
// /v1/messages"), 404 to any other, and keeps them all.
type fakeAPI struct {
	*httptest.Server
	routes map[string]reply
	mu     sync.Mutex
	calls  []call
}

// call is a request a fakeAPI received.
type call struct {
	method, host, path string
	query              url.Values
	header             http.Header
	body               string
}

// newFakeAPI starts a fakeAPI, over TLS with httptest's certificate (for
// example.com) if tls is set.
func newFakeAPI(t *testing.T, routes map[string]reply, tls bool) *fakeAPI {
	t.Helper()
	f := &fakeAPI{routes: routes}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, call{method: r.Method, host: r.Host, path: r.URL.Path, query: r.URL.Query(), header: r.Header.Clone(), body: string(b)})
		f.mu.Unlock()
		rep, ok := f.routes[r.Method+" "+r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch {
		case strings.HasPrefix(rep.body, "{"):
			w.Header().Set("Content-Type", "application/json")
		case strings.HasPrefix(rep.body, "<"):
			w.Header().Set("Content-Type", "text/xml")
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	if tls {
		f.StartTLS()
	} else {
		f.Start()
	}
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// newTunnel starts an HTTP proxy that tunnels every CONNECT, whatever host
// it names, to addr: a notifier whose endpoint is fixed (Pushover's) then
// reaches a local server, with the real host in its requests.
func newTunnel(t *testing.T, addr string) *httptest.Server {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		mu.Lock()
		conns = append(conns, up, down)
		mu.Unlock()
		_, _ = io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n")
		wg.Go(func() { _, _ = io.Copy(up, buf); up.Close() })
		wg.Go(func() { _, _ = io.Copy(down, up); down.Close() })
	}))
	t.Cleanup(func() {
		p.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// Alertmanager's integrations that TestAlertmanagerIntegrations leaves out
// notify through Alertmanager's own notifiers to local servers speaking
// their services' APIs, which answer as the services do on success. Each
// integration's requests carry the alert and its credentials, and its
// notification is delivered.
func TestMoreAlertmanagerIntegrations(t *testing.T) {
	for _, tc := range []struct {
		name string
		// receiver is the receiver's integration, {{URL}} being the fake
		// API's URL and, with tls, {{PROXY}} a tunnel to it and {{CA}} the
		// file of its certificate.
		receiver string
		tls      bool
		routes   map[string]reply
		check    func(t *testing.T, calls []call)
	}{
		{
			name:     "victorops",
			receiver: `victorops_configs: [{api_url: "{{URL}}/integrations/generic/20131114/alert", api_key: fake-api-key, routing_key: ml-team}]`,
			routes: map[string]reply{
				"POST /integrations/generic/20131114/alert/fake-api-key/ml-team": {http.StatusOK, `{"result":"success","entity_id":"e1"}`},
			},
			check: func(t *testing.T, calls []call) {
				var msg map[string]string
				require.NoError(t, json.Unmarshal([]byte(calls[0].body), &msg))
				require.Equal(t, "CRITICAL", msg["message_type"])
				require.Contains(t, msg["entity_display_name"], "Drift")
				require.Contains(t, msg["state_message"], "Feature amount drifted")
				require.NotEmpty(t, msg["entity_id"], "the group key's hash")
			},
		},
		{
			// Pushover's endpoint is fixed: the notifier goes to it through
			// a proxy tunnelling to the fake, which trusts httptest's
			// certificate for example.com.
			name:     "pushover",
			receiver: `pushover_configs: [{user_key: fake-user-key, token: fake-app-token, http_config: {proxy_url: "{{PROXY}}", tls_config: {ca_file: "{{CA}}", server_name: example.com}}}]`,
			tls:      true,
			routes: map[string]reply{
				"POST /1/messages.json": {http.StatusOK, `{"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b","receipt":"r1"}`},
			},
			check: func(t *testing.T, calls []call) {
				c := calls[0]
				require.Equal(t, "api.pushover.net", c.host)
				require.Equal(t, "fake-app-token", c.query.Get("token"))
				require.Equal(t, "fake-user-key", c.query.Get("user"))
				require.Contains(t, c.query.Get("title"), "Drift")
				require.Contains(t, c.query.Get("message"), "Feature amount drifted")
				require.Equal(t, "2", c.query.Get("priority"), "emergency while firing")
			},
		},
		{
			name:     "webex",
			receiver: `webex_configs: [{api_url: "{{URL}}/v1/messages", room_id: fake-room, http_config: {authorization: {credentials: fake-bot-token}}}]`,
			routes: map[string]reply{
				"POST /v1/messages": {http.StatusOK, `{"id":"m1","roomId":"fake-room","roomType":"group"}`},
			},
			check: func(t *testing.T, calls []call) {
				require.Equal(t, "Bearer fake-bot-token", calls[0].header.Get("Authorization"))
				var msg struct{ Markdown, RoomID string }
				require.NoError(t, json.Unmarshal([]byte(calls[0].body), &msg))
				require.Equal(t, "fake-room", msg.RoomID)
				require.Contains(t, msg.Markdown, "alertname = Drift")
			},
		},
		{
			name:     "mattermost",
			receiver: `mattermost_configs: [{webhook_url: "{{URL}}/hooks/fake-hook", channel: ml-alerts}]`,
			routes: map[string]reply{
				"POST /hooks/fake-hook": {http.StatusOK, "ok"},
			},
			check: func(t *testing.T, calls []call) {
				var msg struct {
					Channel     string
					Attachments []struct{ Title, Text string }
				}
				require.NoError(t, json.Unmarshal([]byte(calls[0].body), &msg))
				require.Equal(t, "ml-alerts", msg.Channel)
				require.Contains(t, msg.Attachments[0].Title, "Drift")
				require.Contains(t, msg.Attachments[0].Text, "Feature amount drifted")
			},
		},
		{
			name:     "rocketchat",
			receiver: `rocketchat_configs: [{api_url: "{{URL}}", token: fake-token, token_id: fake-user-id, channel: "#ml"}]`,
			routes: map[string]reply{
				"POST /api/v1/chat.postMessage": {http.StatusOK, `{"success":true,"channel":"#ml","message":{"_id":"m1"}}`},
			},
			check: func(t *testing.T, calls []call) {
				require.Equal(t, "fake-token", calls[0].header.Get("X-Auth-Token"))
				require.Equal(t, "fake-user-id", calls[0].header.Get("X-User-Id"))
				var msg struct {
					Channel     string
					Attachments []struct{ Title string }
				}
				require.NoError(t, json.Unmarshal([]byte(calls[0].body), &msg))
				require.Equal(t, "#ml", msg.Channel)
				require.Contains(t, msg.Attachments[0].Title, "Drift")
			},
		},
		{
			// Jira looks for the group's open issue first, then creates one.
			name:     "jira",
			receiver: `jira_configs: [{api_url: "{{URL}}/rest/api/2", project: ML, issue_type: Bug, http_config: {basic_auth: {username: alertd@example.org, password: fake-api-token}}}]`,
			routes: map[string]reply{
				"POST /rest/api/2/search": {http.StatusOK, `{"startAt":0,"maxResults":2,"total":0,"issues":[]}`},
				"POST /rest/api/2/issue":  {http.StatusCreated, `{"id":"10001","key":"ML-1","self":"https://jira.example.org/rest/api/2/issue/10001"}`},
			},
			check: func(t *testing.T, calls []call) {
				search, create := calls[0], calls[1]
				require.Equal(t, "/rest/api/2/search", search.path)
				var query struct{ JQL string }
				require.NoError(t, json.Unmarshal([]byte(search.body), &query))
				require.Contains(t, query.JQL, `project="ML" and labels="ALERT{`)
				require.Equal(t, "/rest/api/2/issue", create.path)
				require.Equal(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("alertd@example.org:fake-api-token")), create.header.Get("Authorization"))
				var issue struct {
					Fields struct {
						Project   struct{ Key string }
						Issuetype struct{ Name string }
						Summary   string
						Labels    []string
					}
				}
				require.NoError(t, json.Unmarshal([]byte(create.body), &issue))
				require.Equal(t, "ML", issue.Fields.Project.Key)
				require.Equal(t, "Bug", issue.Fields.Issuetype.Name)
				require.Contains(t, issue.Fields.Summary, "Drift")
				require.Contains(t, issue.Fields.Labels[0], "ALERT{", "the label a later search finds it by")
			},
		},
		{
			name:     "incidentio",
			receiver: `incidentio_configs: [{url: "{{URL}}/v2/alert_events/alertmanager/fake-source", alert_source_token: fake-source-token}]`,
			routes: map[string]reply{
				"POST /v2/alert_events/alertmanager/fake-source": {http.StatusAccepted, `{"status":"success","message":"Event accepted for processing","deduplication_key":"k1"}`},
			},
			check: func(t *testing.T, calls []call) {
				require.Equal(t, "Bearer fake-source-token", calls[0].header.Get("Authorization"))
				var msg struct {
					Version, GroupKey, Status string
					Alerts                    []struct{ Labels map[string]string }
				}
				require.NoError(t, json.Unmarshal([]byte(calls[0].body), &msg))
				require.Equal(t, "1", msg.Version)
				require.NotEmpty(t, msg.GroupKey)
				require.Equal(t, "firing", msg.Status)
				require.Equal(t, "Drift", msg.Alerts[0].Labels["alertname"])
			},
		},
		{
			// SNS signs with SigV4 and takes the Query API's form; the
			// endpoint is api_url.
			name:     "sns",
			receiver: `sns_configs: [{api_url: "{{URL}}", topic_arn: "arn:aws:sns:us-east-1:123456789012:ml-alerts", sigv4: {region: us-east-1, access_key: AKIDEXAMPLE, secret_key: fake-secret-key}}]`,
			routes: map[string]reply{
				"POST /": {http.StatusOK, `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m1</MessageId></PublishResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></PublishResponse>`},
			},
			check: func(t *testing.T, calls []call) {
				auth := calls[0].header.Get("Authorization")
				require.True(t, strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), auth)
				require.Contains(t, auth, "/us-east-1/sns/aws4_request")
				form, err := url.ParseQuery(calls[0].body)
				require.NoError(t, err)
				require.Equal(t, "Publish", form.Get("Action"))
				require.Equal(t, "arn:aws:sns:us-east-1:123456789012:ml-alerts", form.Get("TopicArn"))
				require.Contains(t, form.Get("Subject"), "Drift")
				require.Contains(t, form.Get("Message"), "Feature amount drifted")
			},
		},
		{
			// WeChat trades the secret for an access token, then sends.
			name:     "wechat",
			receiver: `wechat_configs: [{api_url: "{{URL}}/cgi-bin/", api_secret: fake-secret, corp_id: fake-corp, to_user: "@all", agent_id: "1000002"}]`,
			routes: map[string]reply{
				"GET /cgi-bin/gettoken":      {http.StatusOK, `{"errcode":0,"errmsg":"ok","access_token":"fake-access-token","expires_in":7200}`},
				"POST /cgi-bin/message/send": {http.StatusOK, `{"errcode":0,"errmsg":"ok"}`},
			},
			check: func(t *testing.T, calls []call) {
				token, send := calls[0], calls[1]
				require.Equal(t, "/cgi-bin/gettoken", token.path)
				require.Equal(t, "fake-corp", token.query.Get("corpid"))
				require.Equal(t, "fake-secret", token.query.Get("corpsecret"))
				require.Equal(t, "/cgi-bin/message/send", send.path)
				require.Equal(t, "fake-access-token", send.query.Get("access_token"))
				var msg struct {
					ToUser  string `json:"touser"`
					AgentID string `json:"agentid"`
					MsgType string `json:"msgtype"`
					Text    struct{ Content string }
				}
				require.NoError(t, json.Unmarshal([]byte(send.body), &msg))
				require.Equal(t, "@all", msg.ToUser)
				require.Equal(t, "1000002", msg.AgentID)
				require.Equal(t, "text", msg.MsgType)
				require.Contains(t, msg.Text.Content, "Drift")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(t, tc.routes, tc.tls)
			receiver := tc.receiver
			if tc.tls {
				ca := filepath.Join(t.TempDir(), "ca.pem")
				require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600))
				proxy := newTunnel(t, api.Listener.Addr().String())
				receiver = strings.NewReplacer("{{PROXY}}", proxy.URL, "{{CA}}", ca).Replace(receiver)
			}
			var got notifications
			cfg := load(t, `
route: {receiver: ml, group_wait: 0s, group_interval: 1s}
receivers:
  - name: ml
    `+receiver+"\n", api.URL)
			n := start(t, Options{Config: cfg, OnNotify: got.add})
			require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))

			// Delivered: the notifier took the fake's answer for success,
			// having called each of its routes once and nothing else.
			require.Eventually(t, func() bool { return len(got.get()) > 0 }, 30*time.Second, 20*time.Millisecond)
			nf := got.get()[0]
			require.NoError(t, nf.Err, "requests: %+v", api.requests())
			require.Equal(t, tc.name, strings.TrimSuffix(nf.Integration, "[0]"))
			calls := api.requests()
			var routes []string
			for _, c := range calls {
				routes = append(routes, c.method+" "+c.path)
			}
			slices.Sort(routes)
			require.Equal(t, slices.Sorted(maps.Keys(tc.routes)), routes, "each route once, and no other request")
			tc.check(t, calls)
		})
	}
}
