// Command alert-receiver is the demo's notification endpoint, standing in for
// the services alertd talks to, and prints one line for each thing it gets:
//
//   - POST / takes Alertmanager webhook payloads (version 4), as alertd and
//     Alertmanager send them: one line per alert.
//   - /api/ speaks the part of Slack's Web API that alertd's slack_configs use
//     (auth.test, chat.postMessage, chat.update), so a receiver with
//     api_url: http://<this>/api/ "posts to Slack" here: one line per message.
//   - POST /actions/<name> takes alertd's signed action webhooks (type
//     webhook): it checks the X-Modelmon-Signature with --action.secret,
//     refuses bad or replayed signatures with 401, answers a repeated
//     Idempotency-Key with 200 without acting again, and prints one line per
//     action it would run (a retrain, say).
//   - POST /events takes the sidecar's payload log (--payload-log.url):
//     CloudEvents in binary mode. It prints the first event of each type.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelmon/modelmon/internal/actions"
)

type payload struct {
	Version  string `json:"version"`
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
	} `json:"alerts"`
}

// actionRequest is the body of alertd's generic action webhook.
type actionRequest struct {
	Action         string            `json:"action"`
	Trigger        string            `json:"trigger"`
	IdempotencyKey string            `json:"idempotency_key"`
	Labels         map[string]string `json:"labels"`
	Inputs         map[string]string `json:"inputs"`
}

func main() {
	addr := flag.String("listen-address", "127.0.0.1:9110", "Address to receive webhooks on.")
	secret := flag.String("action.secret", "demo-secret", "Shared secret of alertd's signed action webhooks (an action's secret).")
	flag.Parse()
	http.HandleFunc("/", webhook)
	http.Handle("/api/", &slack{})
	http.Handle("/actions/", &actionReceiver{verifier: &actions.Verifier{Secret: *secret}, done: map[string]bool{}})
	http.Handle("/events", &eventSink{counts: map[string]int{}})
	log.Fatal(http.ListenAndServe(*addr, nil))
}

func printf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "%s "+format+"\n", append([]any{time.Now().Format(time.TimeOnly)}, args...)...)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a payload", http.StatusMethodNotAllowed)
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return b, true
}

// webhook prints Alertmanager webhook payloads.
func webhook(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		http.Error(w, "invalid payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, a := range p.Alerts {
		printf("webhook %-8s %s %s — %s", strings.ToUpper(a.Status), p.Receiver, labels(a.Labels), a.Annotations["summary"])
	}
}

// eventSink takes CloudEvents in binary mode: the attributes in Ce- headers,
// the data as the body.
type eventSink struct {
	mu     sync.Mutex
	counts map[string]int
}

func (e *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	typ, id := r.Header.Get("Ce-Type"), r.Header.Get("Ce-Id")
	if r.Header.Get("Ce-Specversion") != "1.0" || typ == "" || id == "" || r.Header.Get("Ce-Source") == "" {
		http.Error(w, "not a CloudEvent in binary mode: Ce-Specversion 1.0, Ce-Type, Ce-Id and Ce-Source are required", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[typ]++
	if e.counts[typ] == 1 {
		printf("payload log %s id=%s model=%s %s: %s", typ, id, r.Header.Get("Ce-Modelname"), r.Header.Get("Content-Type"), truncate(string(b), 80))
	}
	w.WriteHeader(http.StatusAccepted)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// slack is a Slack-compatible Web API: every message is accepted and printed.
type slack struct {
	mu sync.Mutex
	ts int
}

func (s *slack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	w.Header().Set("Content-Type", "application/json")
	switch method {
	case "auth.test":
		_, _ = io.WriteString(w, `{"ok":true,"user":"alertd","user_id":"U1","team":"demo","team_id":"T1"}`)
		return
	case "chat.postMessage", "chat.update":
	default:
		_, _ = io.WriteString(w, `{"ok":false,"error":"unknown_method"}`)
		return
	}
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	form, err := formOrJSON(r, b)
	if err != nil {
		_, _ = io.WriteString(w, `{"ok":false,"error":"invalid_form_data"}`)
		return
	}
	channel := form.Get("channel")
	if channel == "" {
		_, _ = io.WriteString(w, `{"ok":false,"error":"channel_not_found"}`)
		return
	}
	ts := form.Get("ts")
	if method == "chat.postMessage" {
		s.mu.Lock()
		s.ts++
		ts = fmt.Sprintf("%d.%06d", time.Now().Unix(), s.ts)
		s.mu.Unlock()
	}
	where := channel
	if t := form.Get("thread_ts"); t != "" {
		where += " thread " + t
	}
	printf("slack %s %s: %s", method, where, oneLine(form.Get("text")))
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": channel, "ts": ts})
}

// formOrJSON reads a Web API call's arguments, form-encoded or JSON.
func formOrJSON(r *http.Request, b []byte) (url.Values, error) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return url.ParseQuery(string(b))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	v := url.Values{}
	for k, x := range m {
		if s, ok := x.(string); ok {
			v.Set(k, s)
		}
	}
	return v, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// actionReceiver verifies alertd's signed action webhooks and "runs" each
// action once per idempotency key.
type actionReceiver struct {
	verifier *actions.Verifier

	mu   sync.Mutex
	done map[string]bool
}

func (a *actionReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/actions/")
	if err := a.verifier.Verify(r.Header, b, time.Now()); err != nil {
		printf("action %s REFUSED: %v", name, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var req actionRequest
	if err := json.Unmarshal(b, &req); err != nil {
		http.Error(w, "invalid payload: "+err.Error(), http.StatusBadRequest)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	a.mu.Lock()
	seen := a.done[key]
	a.done[key] = true
	a.mu.Unlock()
	if seen {
		printf("action %s already done (Idempotency-Key %s)", name, key)
		return
	}
	printf("action %s VERIFIED signature; would run %s for model=%s (trigger %s: %s %s), Idempotency-Key %s",
		name, req.Action, req.Labels["model"], req.Trigger, req.Labels["alertname"], labels(map[string]string{"feature": req.Labels["feature"], "category": req.Labels["category"], "action": req.Labels["action"]}), key)
	w.WriteHeader(http.StatusAccepted)
}

func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
