package notifytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// Reply is a scripted answer of a fake service: a status, headers and body.
type Reply struct {
	Status int
	Header map[string]string
	Body   string
}

// SlackCall is one request to the fake Slack.
type SlackCall struct {
	// Method is the Web API method ("chat.postMessage", "chat.update") or
	// "webhook" for an incoming webhook.
	Method string
	// Token is the bearer token sent (Web API).
	Token    string
	Channel  string
	Text     string
	ThreadTS string
	TS       string // of chat.update
	// Blocks are the message's blocks as JSON.
	Blocks []map[string]any
}

// Slack is a local server speaking Slack's Web API (auth.test,
// chat.postMessage, chat.update under /api/) and incoming webhooks (under
// /services/). It answers the queued replies first, then success; posted
// messages get timestamps 1000.000001, 1000.000002 ….
type Slack struct {
	URL string

	mu      sync.Mutex
	calls   []SlackCall
	replies []Reply
	ts      int
}

// NewSlack starts a fake Slack for the test.
func NewSlack(t testing.TB) *Slack {
	s := &Slack{}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Fail queues replies to the next requests.
func (s *Slack) Fail(rs ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies = append(s.replies, rs...)
}

// Calls returns the requests answered with success so far.
func (s *Slack) Calls() []SlackCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *Slack) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.replies) > 0 {
		rep := s.replies[0]
		s.replies = s.replies[1:]
		for k, v := range rep.Header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
		return
	}
	var c SlackCall
	switch {
	case len(r.URL.Path) > len("/services/") && r.URL.Path[:len("/services/")] == "/services/":
		var m struct {
			Channel  string           `json:"channel"`
			Text     string           `json:"text"`
			ThreadTS string           `json:"thread_ts"`
			Blocks   []map[string]any `json:"blocks"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c = SlackCall{Method: "webhook", Channel: m.Channel, Text: m.Text, ThreadTS: m.ThreadTS, Blocks: m.Blocks}
		if err := validSlackBlocks(m.Blocks); err != nil {
			http.Error(w, "invalid_blocks", http.StatusBadRequest)
			return
		}
		s.calls = append(s.calls, c)
		_, _ = io.WriteString(w, "ok")
		return
	case r.URL.Path == "/api/auth.test":
		_, _ = io.WriteString(w, `{"ok":true,"user":"alertd","user_id":"U1","team":"T","team_id":"T1"}`)
		return
	case r.URL.Path == "/api/chat.postMessage" || r.URL.Path == "/api/chat.update":
		form, err := url.ParseQuery(string(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c = SlackCall{Method: r.URL.Path[len("/api/"):], Channel: form.Get("channel"), Text: form.Get("text"),
			ThreadTS: form.Get("thread_ts"), TS: form.Get("ts"), Token: r.Header.Get("Authorization")}
		if bl := form.Get("blocks"); bl != "" {
			if err := json.Unmarshal([]byte(bl), &c.Blocks); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		if err := validSlackBlocks(c.Blocks); err != nil {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_blocks", "errors": []string{err.Error()}})
			return
		}
		if c.Token == "" {
			c.Token = "Bearer " + form.Get("token")
		}
		ts := c.TS
		if c.Method == "chat.postMessage" {
			s.ts++
			ts = fmt.Sprintf("1000.%06d", s.ts)
		}
		s.calls = append(s.calls, c)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C" + c.Channel, "ts": ts})
		return
	}
	http.NotFound(w, r)
}

// validSlackBlocks checks the limits of Slack's Block Kit that Slack
// refuses a message for (invalid_blocks): at most 50 blocks; a header's
// text not blank and at most 150 characters; a section's text at most
// 3000, and at most 10 fields of at most 2000 each; a context at most 10
// elements; a button's text at most 75 characters and its value at most
// 2000.
func validSlackBlocks(blocks []map[string]any) error {
	if len(blocks) > 50 {
		return fmt.Errorf("%d blocks, more than 50", len(blocks))
	}
	text := func(o any) string {
		m, _ := o.(map[string]any)
		s, _ := m["text"].(string)
		return s
	}
	over := func(what, s string, n int) error {
		if c := utf8.RuneCountInString(s); c > n {
			return fmt.Errorf("%s of %d characters, more than %d", what, c, n)
		}
		return nil
	}
	for i, b := range blocks {
		var errs []error
		switch b["type"] {
		case "header":
			// A text object's text is 1 character at least.
			if strings.TrimSpace(text(b["text"])) == "" {
				errs = append(errs, errors.New("header text must be more than 0 characters"))
			}
			errs = append(errs, over("header text", text(b["text"]), 150))
		case "section":
			errs = append(errs, over("section text", text(b["text"]), 3000))
			fields, _ := b["fields"].([]any)
			if len(fields) > 10 {
				errs = append(errs, fmt.Errorf("%d fields, more than 10", len(fields)))
			}
			for _, f := range fields {
				errs = append(errs, over("field", text(f), 2000))
			}
		case "context":
			if els, _ := b["elements"].([]any); len(els) > 10 {
				errs = append(errs, fmt.Errorf("%d context elements, more than 10", len(els)))
			}
		case "actions":
			els, _ := b["elements"].([]any)
			for _, e := range els {
				m, _ := e.(map[string]any)
				v, _ := m["value"].(string)
				errs = append(errs, over("button text", text(m["text"]), 75), over("button value", v, 2000))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
	}
	return nil
}

// PagerDuty is a local server speaking PagerDuty's Events API v2 at
// /v2/enqueue. It refuses an event PagerDuty would refuse (invalid or
// larger than MaxPagerDutyEvent) with its 400,
// else answers the queued replies first, then 202.
type PagerDuty struct {
	URL string

	mu      sync.Mutex
	events  []map[string]any
	replies []Reply
	tries   int
}

// NewPagerDuty starts a fake PagerDuty for the test.
func NewPagerDuty(t testing.TB) *PagerDuty {
	p := &PagerDuty{}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL + "/v2/enqueue"
	return p
}

// Fail queues replies to the next requests.
func (p *PagerDuty) Fail(rs ...Reply) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replies = append(p.replies, rs...)
}

// Events returns the events accepted so far, decoded.
func (p *PagerDuty) Events() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// Requests returns how many requests it got.
func (p *PagerDuty) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tries
}

func (p *PagerDuty) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	if r.URL.Path != "/v2/enqueue" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var e map[string]any
	b, err := io.ReadAll(r.Body)
	if err == nil && len(b) > MaxPagerDutyEvent {
		err = fmt.Errorf("event of %d bytes, more than %d", len(b), MaxPagerDutyEvent)
	}
	if err == nil {
		err = json.Unmarshal(b, &e)
	}
	if err == nil {
		err = validPagerDutyEvent(e)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tries++
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": []string{err.Error()}})
		return
	}
	if len(p.replies) > 0 {
		rep := p.replies[0]
		p.replies = p.replies[1:]
		for k, v := range rep.Header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
		return
	}
	p.events = append(p.events, e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": fmt.Sprint(e["dedup_key"])})
}

// MaxPagerDutyEvent is the Events API's limit of an event, 512 KB (its
// "Size Limits"), taken as 512,000 bytes as Alertmanager does. PagerDuty
// does not document the status it refuses a larger event with; the fake
// answers 400 as for any invalid event.
const MaxPagerDutyEvent = 512000

// pagerDutySeverities are the severities the Events API v2 accepts.
var pagerDutySeverities = []string{"critical", "error", "warning", "info"}

// validPagerDutyEvent checks e as the Events API v2 does before it
// accepts an event (400 "Event object is invalid" otherwise): a routing
// key, an event_action of trigger, acknowledge or resolve, a dedup_key of
// at most 255 characters, and for a trigger a payload with a summary of
// 1 to 1024 characters, a source and one of the four severities.
func validPagerDutyEvent(e map[string]any) error {
	if k, _ := e["routing_key"].(string); k == "" {
		return errors.New("'routing_key' is missing or blank")
	}
	action, _ := e["event_action"].(string)
	if !slices.Contains([]string{"trigger", "acknowledge", "resolve"}, action) {
		return fmt.Errorf("'event_action' is invalid: %q", action)
	}
	if k, _ := e["dedup_key"].(string); utf8.RuneCountInString(k) > 255 {
		return errors.New("'dedup_key' is longer than 255 characters")
	}
	if action != "trigger" {
		return nil
	}
	p, _ := e["payload"].(map[string]any)
	if p == nil {
		return errors.New("'payload' is missing")
	}
	s, _ := p["summary"].(string)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return errors.New("'payload.summary' is missing or blank")
	case n > 1024 || !utf8.ValidString(s):
		return fmt.Errorf("'payload.summary' is invalid (%d characters)", n)
	}
	if src, _ := p["source"].(string); src == "" {
		return errors.New("'payload.source' is missing or blank")
	}
	if sev, _ := p["severity"].(string); !slices.Contains(pagerDutySeverities, sev) {
		return fmt.Errorf("'payload.severity' is invalid: %q", sev)
	}
	return nil
}
