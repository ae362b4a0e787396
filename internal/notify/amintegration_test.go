package notify

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// recorder is an HTTP server that keeps each request's path, headers and
// body, answering status with body.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	path   string
	header http.Header
	body   string
}

func newRecorder(t *testing.T, status int, body string) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{path: req.URL.Path, header: req.Header.Clone(), body: string(b)})
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// smtpSink is an SMTP server that takes every message and keeps it.
type smtpSink struct {
	addr string
	mu   sync.Mutex
	msgs []string
}

func newSMTPSink(t *testing.T) *smtpSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &smtpSink{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	reply("220 sink ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			reply("250 sink")
		case strings.HasPrefix(cmd, "DATA"):
			reply("354 go on")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, msg.String())
			s.mu.Unlock()
			reply("250 queued")
		case strings.HasPrefix(cmd, "QUIT"):
			reply("221 bye")
			return
		default: // MAIL, RCPT, RSET, NOOP
			reply("250 ok")
		}
	}
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// Alertmanager's other integrations, in its format and with its defaults
// from the global section, notify through Alertmanager's own notifiers:
// an e-mail to an SMTP server, Microsoft Teams, Discord and Opsgenie to
// local servers speaking their HTTP APIs, and Telegram to one speaking its
// Bot API.
func TestAlertmanagerIntegrations(t *testing.T) {
	smtp := newSMTPSink(t)
	teams := newRecorder(t, http.StatusOK, "1")
	discord := newRecorder(t, http.StatusNoContent, "")
	opsgenie := newRecorder(t, http.StatusAccepted, `{"result":"Request will be processed","took":0.1,"requestId":"r1"}`)
	telegram := newRecorder(t, http.StatusOK, `{"ok":true,"result":{"message_id":7,"chat":{"id":42,"type":"private"},"date":0,"text":"x"}}`)
	cfg, err := alertconfig.Load(`
global:
  evaluation_interval: 10s
  smtp_smarthost: `+smtp.addr+`
  smtp_from: alertd@example.org
  smtp_require_tls: false
  opsgenie_api_url: `+opsgenie.URL+`/
  opsgenie_api_key: s3cret-key
route:
  receiver: ml
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: ml
    email_configs: [{to: ml-oncall@example.org}]
    msteams_configs: [{webhook_url: "`+teams.URL+`/webhookb2/x"}]
    discord_configs: [{webhook_url: "`+discord.URL+`/api/webhooks/1/t"}]
    opsgenie_configs: [{responders: [{name: ml, type: team}]}]
    telegram_configs: [{api_url: "`+telegram.URL+`", bot_token: t0ken, chat_id: 42}]
`, "")
	require.NoError(t, err)
	require.Equal(t, time.Duration(10*time.Second), time.Duration(cfg.Global.EvaluationInterval), "Prometheus's keys beside Alertmanager's")
	n := start(t, Options{Config: cfg})
	require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))

	require.Eventually(t, func() bool {
		return len(smtp.messages()) > 0 && len(teams.requests()) > 0 && len(discord.requests()) > 0 && len(opsgenie.requests()) > 0 &&
			len(telegram.requests()) > 0
	}, 30*time.Second, 20*time.Millisecond, "email %d, teams %d, discord %d, opsgenie %d, telegram %d",
		len(smtp.messages()), len(teams.requests()), len(discord.requests()), len(opsgenie.requests()), len(telegram.requests()))

	mail := smtp.messages()[0]
	require.Contains(t, mail, "To: ml-oncall@example.org")
	require.Contains(t, mail, "From: alertd@example.org")
	require.Contains(t, mail, "Drift")

	var card struct{ Title, Text string }
	require.NoError(t, json.Unmarshal([]byte(teams.requests()[0].body), &card))
	require.Contains(t, card.Title, "Drift")

	var embeds struct{ Embeds []struct{ Title string } }
	require.NoError(t, json.Unmarshal([]byte(discord.requests()[0].body), &embeds))
	require.Contains(t, embeds.Embeds[0].Title, "Drift")

	og := opsgenie.requests()[0]
	require.Equal(t, "/v2/alerts", og.path)
	require.Equal(t, "GenieKey s3cret-key", og.header.Get("Authorization"), "the key from the global section")
	var ogAlert struct {
		Message, Alias string
		Responders     []struct{ Name, Type string }
	}
	require.NoError(t, json.Unmarshal([]byte(og.body), &ogAlert))
	require.Contains(t, ogAlert.Message, "Drift")
	require.NotEmpty(t, ogAlert.Alias, "the group key's hash, as Alertmanager sends it")
	require.Equal(t, "ml", ogAlert.Responders[0].Name)

	tg := telegram.requests()[0]
	require.Equal(t, "/bott0ken/sendMessage", tg.path)
	require.Contains(t, tg.body, "42")
	require.Contains(t, tg.body, "Drift")
}

// A receiver that Alertmanager would refuse is refused, and a dead one is
// retried by the outbox like alertd's own.
func TestAlertmanagerIntegrationErrors(t *testing.T) {
	_, err := alertconfig.Load("route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: x@example.org}]}]\n", "")
	require.ErrorContains(t, err, "no global SMTP smarthost set")
	_, err = alertconfig.Load("global: {resolve_timeout: 1m}\n", "")
	require.ErrorContains(t, err, "resolve_timeout is intake.resolve_timeout")

	teams := newRecorder(t, http.StatusInternalServerError, "down")
	cfg, err := alertconfig.Load(`
route: {receiver: ml, group_wait: 0s}
receivers:
  - name: ml
    msteams_configs: [{webhook_url: "`+teams.URL+`/webhookb2/x"}]
`, "")
	require.NoError(t, err)
	n := start(t, Options{Config: cfg})
	require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
	require.Eventually(t, func() bool { return len(teams.requests()) >= 2 }, 30*time.Second, 20*time.Millisecond, "a 500 is retried")
	st := n.Outbox().Stats()
	require.Equal(t, 1, st.Pending)
	require.Contains(t, st.Lanes[0].LastError, "500")
}

// A 301, 302 or 303 turns the notification's POST into a GET without its
// body; Alertmanager's notifiers would count the 200 of the page it lands
// on (a login page) as delivered. As alertd's own notifiers do, they fail
// it for good: their redirects are not followed, and the 302 is the
// error. The configuration as loaded keeps its follow_redirects.
func TestAlertmanagerIntegrationsRedirectToGet(t *testing.T) {
	login := newRecorder(t, http.StatusOK, "<html>login</html>")
	moved := httptest.NewServer(http.RedirectHandler(login.URL+"/login", http.StatusFound))
	t.Cleanup(moved.Close)
	cfg, err := alertconfig.Load(`
route: {receiver: ml, group_wait: 0s}
receivers:
  - name: ml
    msteams_configs: [{webhook_url: "`+moved.URL+`/webhookb2/x"}]
    discord_configs: [{webhook_url: "`+moved.URL+`/api/webhooks/1/t"}]
`, "")
	require.NoError(t, err)
	n := start(t, Options{Config: cfg})
	require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
	require.Eventually(t, func() bool { return len(n.Outbox().DeadLetters()) == 2 }, 30*time.Second, 20*time.Millisecond,
		"dead letters: %v, page requests: %d", n.Outbox().DeadLetters(), len(login.requests()))
	for _, d := range n.Outbox().DeadLetters() {
		require.Contains(t, d.LastError, "unexpected status code 302", d.Integration)
	}
	require.Empty(t, login.requests(), "the redirect is not followed")
	require.True(t, cfg.Receivers[0].AlertmanagerIntegrations.MSTeamsConfigs[0].HTTPConfig.FollowRedirects)
}
