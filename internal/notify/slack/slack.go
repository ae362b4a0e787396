// Package slack posts alertd's notifications to Slack with slack-go.
//
// In Web API mode (a bot token) the first notification of an incident (a
// notification group) posts one message with its priority, category,
// value, explanation, links and buttons; later notifications of the same
// incident (repeats, escalations, acknowledgements, the resolve) update that
// message (chat.update) and add a reply in its thread (chat.postMessage
// with thread_ts). The thread's channel and timestamp are kept in the
// outbox's store, so threading survives a restart. The buttons
// (acknowledge, resolve, false positive) post to alertd's
// /api/v1/slack/interactions, which Verifier authenticates.
//
// In incoming-webhook mode it posts only: no threads, no updates, no
// buttons.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	commoncfg "github.com/prometheus/common/config"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackutilsx"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// Store keeps the threads of incidents; the outbox implements it.
type Store interface {
	SetState(ns, key string, value []byte) error
	State(ns, key string) ([]byte, bool)
}

// stateNamespace is the Store namespace of threads.
const stateNamespace = "slack_threads"

// Button action ids, as the interactions endpoint receives them.
const (
	ActionAcknowledge   = "acknowledge"
	ActionResolve       = "resolve"
	ActionFalsePositive = "false_positive"
	// ActionApprove and ActionReject decide an action request awaiting
	// approval.
	ActionApprove = "approve_action"
	ActionReject  = "reject_action"
)

// maxButtonFingerprints bounds the alerts a button names, to stay under
// Slack's 2000 characters of a button value.
const maxButtonFingerprints = 50

// Notifier posts for one slack_configs entry.
type Notifier struct {
	conf   *alertconfig.SlackConfig
	tmpl   *template.Template
	client *http.Client
	api    *slack.Client
	store  Store
	// thread prefixes the keys of this entry's threads: receiver and index.
	thread string
}

// New returns a Notifier for conf, the idx-th Slack entry of receiver,
// keeping threads in store.
func New(conf *alertconfig.SlackConfig, receiver string, idx int, tmpl *template.Template, store Store) (*Notifier, error) {
	hc := commoncfg.DefaultHTTPClientConfig
	if conf.HTTPConfig != nil {
		hc = *conf.HTTPConfig
	}
	client, err := amnotify.NewClientWithTracing(hc, "slack")
	if err != nil {
		return nil, fmt.Errorf("couldn't create http client: %w", err)
	}
	if conf.Timeout > 0 {
		c := *client
		c.Timeout = time.Duration(conf.Timeout)
		client = &c
	}
	n := &Notifier{conf: conf, tmpl: tmpl, client: client, store: store, thread: fmt.Sprintf("%s\x00%d\x00", receiver, idx)}
	if conf.WebAPI() {
		api := *client
		api.Transport = retryAfterSeconds{next: client.Transport}
		n.api = slack.New(string(conf.Token), slack.OptionAPIURL(conf.APIURL), slack.OptionHTTPClient(&api))
	}
	return n, nil
}

// retryAfterSeconds rewrites the Retry-After of a 429 into the whole
// seconds slack-go reads. Slack sends seconds, but HTTP allows an
// HTTP-date too (RFC 9110 10.2.3), which slack-go fails to parse and
// returns as its strconv error: the attempt would count as a connection
// failure and retry with the backoff, whenever the date says. A date
// becomes the seconds from the response's Date (the server's clock) to
// it, rounded up; a value that is neither (or 0, or past) is removed, so
// that the 429 is retried with the backoff and counted as rate limited.
type retryAfterSeconds struct{ next http.RoundTripper }

func (rt retryAfterSeconds) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		return resp, err
	}
	if d := amnotify.ParseRetryAfter(resp.Header, time.Now()); d > 0 {
		resp.Header.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	} else {
		resp.Header.Del("Retry-After")
	}
	return resp, nil
}

// thread is where an incident's messages are.
type thread struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// Send posts n.
func (s *Notifier) Send(ctx context.Context, n *notice.Notice) error {
	blocks, text, err := s.message(n)
	if err != nil {
		return outbox.Permanent(err)
	}
	if s.api == nil {
		return s.postWebhook(ctx, &slack.WebhookMessage{Channel: s.conf.Channel, Text: slackutilsx.EscapeMessage(text), Blocks: &slack.Blocks{BlockSet: blocks}})
	}
	key := s.thread + notice.Hash(n.ThreadKey())
	var th thread
	if b, ok := s.store.State(stateNamespace, key); ok && json.Unmarshal(b, &th) == nil {
		// Update the incident's message first: done twice it is the same,
		// so a retry after a failed reply repeats nothing visible.
		_, _, _, err := s.api.UpdateMessageContext(ctx, th.Channel, th.TS, slack.MsgOptionText(text, true), slack.MsgOptionBlocks(blocks...))
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && se.Err == "message_not_found" {
			// Deleted in Slack: start a new message.
			_ = s.store.SetState(stateNamespace, key, nil)
			return s.post(ctx, key, n, blocks, text)
		}
		if err != nil {
			return classify(err)
		}
		_, _, err = s.api.PostMessageContext(ctx, th.Channel, slack.MsgOptionTS(th.TS), slack.MsgOptionText(replyText(n), true))
		if err != nil {
			return classify(err)
		}
		if n.Resolved() {
			_ = s.store.SetState(stateNamespace, key, nil)
		}
		return nil
	}
	return s.post(ctx, key, n, blocks, text)
}

// postWebhook posts msg to the incoming webhook. It does what slack-go's
// PostWebhookCustomHTTPContext does but keeps the answer's body: an
// incoming webhook names its error there (a 404 channel_not_found, a 403
// invalid_token, a 400 invalid_blocks), which the error must say.
func (s *Notifier) postWebhook(ctx context.Context, msg *slack.WebhookMessage) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return outbox.Permanent(fmt.Errorf("couldn't encode message: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, string(s.conf.WebhookURL), bytes.NewReader(body))
	if err != nil {
		return outbox.Permanent(notice.TransportError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return notice.TransportError(err)
	}
	defer amnotify.Drain(resp)
	return notice.CheckResponse(resp, time.Now())
}

// post starts an incident's message and remembers its thread.
func (s *Notifier) post(ctx context.Context, key string, n *notice.Notice, blocks []slack.Block, text string) error {
	ch, ts, err := s.api.PostMessageContext(ctx, s.conf.Channel, slack.MsgOptionText(text, true), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return classify(err)
	}
	if n.Resolved() {
		return nil
	}
	b, _ := json.Marshal(thread{Channel: ch, TS: ts})
	// Posted: a failure to remember the thread must not post it again.
	_ = s.store.SetState(stateNamespace, key, b)
	return nil
}

// Thread returns the channel and timestamp of the message of the incident
// with the given thread key (tests and debugging).
func (s *Notifier) Thread(threadKey string) (channel, ts string, ok bool) {
	var th thread
	b, ok := s.store.State(stateNamespace, s.thread+notice.Hash(threadKey))
	if !ok || json.Unmarshal(b, &th) != nil {
		return "", "", false
	}
	return th.Channel, th.TS, true
}

// classify turns slack-go's errors into the outbox's: rate limits retry
// after the time Slack asks, server errors and Slack's transient errors
// retry, anything else fails for good. URLs are redacted: an incoming
// webhook's URL is its secret.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		rl *slack.RateLimitedError
		sc slack.StatusCodeError
		se slack.SlackErrorResponse
	)
	switch {
	case errors.As(err, &rl):
		return outbox.RetryAfter(rl.RetryAfter, &outbox.StatusError{Code: http.StatusTooManyRequests, Body: "rate limited by Slack"})
	case errors.As(err, &sc):
		e := &outbox.StatusError{Code: sc.Code, Body: sc.Status}
		if sc.Code >= 500 || sc.Code == http.StatusRequestTimeout {
			return e
		}
		if sc.Code == http.StatusTooManyRequests {
			return outbox.RetryAfter(0, e)
		}
		return outbox.Permanent(e)
	case errors.As(err, &se):
		e := fmt.Errorf("slack: %s", se.Err)
		switch se.Err {
		case "ratelimited", "rate_limited":
			return outbox.RetryAfter(0, e)
		case "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org":
			return e
		}
		return outbox.Permanent(e)
	}
	return notice.TransportError(err)
}

// annotation returns an annotation common to the alerts, or else the
// first firing alert's.
func annotation(d *template.Data, k string) string {
	if v := d.CommonAnnotations[k]; v != "" {
		return v
	}
	for _, a := range d.Alerts {
		if a.Status == "firing" && a.Annotations[k] != "" {
			return a.Annotations[k]
		}
	}
	if len(d.Alerts) > 0 {
		return d.Alerts[0].Annotations[k]
	}
	return ""
}

// title is the configured template, or "[FIRING:2] ModelDrift
// model=fraud" without one or when it renders blank: the header block
// needs a text, and Slack refuses a message with an empty one
// (invalid_blocks).
func (s *Notifier) title(d *template.Data) (string, error) {
	if s.conf.Title != "" {
		t, err := s.tmpl.ExecuteTextString(s.conf.Title, d)
		if err != nil {
			return "", fmt.Errorf("couldn't render title: %w", err)
		}
		if strings.TrimSpace(t) != "" {
			return t, nil
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s:%d] %s", strings.ToUpper(d.Status), len(d.Alerts.Firing()), d.CommonLabels["alertname"])
	keys := make([]string, 0, len(d.GroupLabels))
	for k := range d.GroupLabels {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, d.GroupLabels[k])
	}
	return b.String(), nil
}

// message builds the incident's message: title, the classifier's
// annotations, the explanation, links, and in Web API mode with a signing
// secret the buttons.
func (s *Notifier) message(n *notice.Notice) ([]slack.Block, string, error) {
	d := n.Data
	title, err := s.title(d)
	if err != nil {
		return nil, "", err
	}
	var body string
	if s.conf.Text != "" {
		body, err = s.tmpl.ExecuteTextString(s.conf.Text, d)
		if err != nil {
			return nil, "", fmt.Errorf("couldn't render text: %w", err)
		}
	} else {
		for _, k := range []string{"summary", "description"} {
			if v := annotation(d, k); v != "" {
				body += escape(v) + "\n"
			}
		}
	}
	mrkdwn := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	blocks := []slack.Block{slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, truncate(title, 150), false, false))}
	var fields []*slack.TextBlockObject
	for _, f := range []struct{ name, key string }{
		{"Priority", "priority"}, {"Category", "category"}, {"Value", "value"},
		{"Action", "action"}, {"False-positive probability", "false_positive_probability"},
	} {
		if v := annotation(d, f.key); v != "" {
			// Slack refuses a field over 2000 characters (invalid_blocks).
			fields = append(fields, mrkdwn(cut(fmt.Sprintf("*%s*\n%s", f.name, escape(v)), 2000)))
		}
	}
	status := fmt.Sprintf("*Status*\n%s (%d firing, %d resolved)", d.Status, len(d.Alerts.Firing()), len(d.Alerts.Resolved()))
	if e := n.Extra[notice.ExtraEvent]; e != "" {
		status += ", " + escape(e)
	}
	if l := n.Extra[notice.ExtraLevel]; l != "" {
		status += ", level " + escape(l)
	}
	fields = append([]*slack.TextBlockObject{mrkdwn(cut(status, 2000))}, fields...)
	var text *slack.TextBlockObject
	if strings.TrimSpace(body) != "" {
		text = mrkdwn(cut(strings.TrimSpace(body), 3000))
	}
	blocks = append(blocks, slack.NewSectionBlock(text, fields[:min(len(fields), 10)], nil))
	if e := annotation(d, "explanation"); e != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn("*Why it is anomalous*\n"+cut(escape(e), 2900)), nil, nil))
	}
	var links []string
	if u := annotation(d, "dashboard_url"); u != "" {
		links = append(links, link(u, "Dashboard"))
	} else if u := annotation(d, "dashboard"); u != "" {
		links = append(links, link(u, "Dashboard"))
	}
	if u := annotation(d, "runbook_url"); u != "" {
		links = append(links, link(u, "Runbook"))
	} else if u := annotation(d, "runbook"); u != "" {
		links = append(links, link(u, "Runbook"))
	}
	if d.ExternalURL != "" && len(d.Alerts) > 0 {
		links = append(links, link(strings.TrimRight(d.ExternalURL, "/")+"/api/v1/alerts?fingerprint="+d.Alerts[0].Fingerprint, "Alert in alertd"))
	}
	if id := n.Extra[notice.ExtraIncident]; id != "" {
		links = append(links, "incident "+escape(id))
	}
	if len(links) > 0 {
		blocks = append(blocks, slack.NewContextBlock("links", mrkdwn(strings.Join(links, " · "))))
	}
	if id := n.Extra[notice.ExtraActionRequest]; id != "" && n.Event() == notice.EventApproval {
		if s.api != nil && s.conf.SigningSecret != "" {
			b, _ := json.Marshal(ButtonValue{GroupKey: n.ThreadKey(), Request: id})
			blocks = append(blocks, slack.NewActionBlock("alertd_approval",
				slack.NewButtonBlockElement(ActionApprove, string(b), slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
				slack.NewButtonBlockElement(ActionReject, string(b), slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false)).WithStyle(slack.StyleDanger),
			))
		}
		return blocks, title, nil
	}
	if s.api != nil && s.conf.SigningSecret != "" && !n.Resolved() {
		v := ButtonValue{GroupKey: n.ThreadKey(), Receiver: d.Receiver, Incident: n.Extra[notice.ExtraIncident]}
		for _, a := range d.Alerts {
			if len(v.Fingerprints) < maxButtonFingerprints {
				v.Fingerprints = append(v.Fingerprints, a.Fingerprint)
			}
		}
		b, _ := json.Marshal(v)
		for len(b) > 2000 && len(v.Fingerprints) > 0 {
			v.Fingerprints = v.Fingerprints[:len(v.Fingerprints)/2]
			b, _ = json.Marshal(v)
		}
		blocks = append(blocks, slack.NewActionBlock("alertd_actions",
			slack.NewButtonBlockElement(ActionAcknowledge, string(b), slack.NewTextBlockObject(slack.PlainTextType, "Acknowledge", false, false)).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement(ActionResolve, string(b), slack.NewTextBlockObject(slack.PlainTextType, "Resolve", false, false)),
			slack.NewButtonBlockElement(ActionFalsePositive, string(b), slack.NewTextBlockObject(slack.PlainTextType, "False positive", false, false)).WithStyle(slack.StyleDanger),
		))
	}
	return blocks, title, nil
}

// replyText is the thread reply of a later notification.
func replyText(n *notice.Notice) string {
	d := n.Data
	switch n.Event() {
	case notice.EventResolve:
		if id := n.Extra[notice.ExtraActionRequest]; id != "" {
			// alertd closes an approval request once it is decided
			// or expired; the description says which.
			return truncate(fmt.Sprintf("Request %s no longer awaits approval: %s.", id, annotation(d, "description")), 2000)
		}
		return fmt.Sprintf("Resolved: %d alerts resolved.", len(d.Alerts.Resolved()))
	case notice.EventAcknowledge:
		return "Acknowledged."
	case notice.EventEscalate:
		if l := n.Extra[notice.ExtraLevel]; l != "" {
			return fmt.Sprintf("Escalated to level %s: %d alerts firing.", l, len(d.Alerts.Firing()))
		}
		return fmt.Sprintf("Escalated: %d alerts firing.", len(d.Alerts.Firing()))
	}
	names := make([]string, 0, len(d.Alerts))
	for _, a := range d.Alerts {
		names = append(names, a.Labels["alertname"]+" "+a.Status)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return fmt.Sprintf("Update: %d firing, %d resolved (%s).", len(d.Alerts.Firing()), len(d.Alerts.Resolved()), truncate(strings.Join(names, ", "), 2000))
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// escape escapes the characters Slack reads as control sequences in
// mrkdwn and in a message's text (&, <, >), as its formatting guide asks
// of text from elsewhere: values from alerts must not mention a channel
// (<!channel>) or a user, nor turn into a link. The text template's output
// is the user's mrkdwn and is left as it is.
func escape(s string) string { return slackutilsx.EscapeMessage(s) }

// link is the mrkdwn link <u|text>. Slack ends the URL at the first | or
// > and the link at the first >, so a URL from an alert holding them
// (runbook?q=a|b, <!channel>) would cut the link short and show, or
// parse, the rest as text: they, < and the characters Slack does not
// take in a URL (spaces, control characters) are percent-encoded, which
// leaves the address the same; & is escaped (&amp;) as in all mrkdwn, and
// Slack unescapes it; the text is escaped as any text.
func link(u, text string) string {
	var b strings.Builder
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c == '|' || c == '<' || c == '>' || c <= ' ' || c == 0x7f:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return "<" + escape(b.String()) + "|" + escape(text) + ">"
}

// cut is truncate for mrkdwn that escape escaped: it does not leave part
// of an escape (&amp;) before the ellipsis.
func cut(s string, n int) string {
	t := truncate(s, n)
	if t == s {
		return s
	}
	head := strings.TrimSuffix(t, "…")
	if i := strings.LastIndexByte(head, '&'); i >= 0 && len(head)-i < len("&amp;") && !strings.Contains(head[i:], ";") {
		head = head[:i]
	}
	return head + "…"
}

// ButtonValue is the value of the buttons: what alertd acts on.
type ButtonValue struct {
	GroupKey string `json:"g"`
	// Receiver is the message's receiver: routes with the same matchers
	// notify the same group key to theirs, each for an incident of its own.
	Receiver     string   `json:"rc,omitempty"`
	Incident     string   `json:"i,omitempty"`
	Fingerprints []string `json:"f"`
	// Request is the action request Approve and Reject decide.
	Request string `json:"r,omitempty"`
}
