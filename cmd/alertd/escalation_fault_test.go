package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pagerReceiver is a webhook receiver that takes a while to answer, and
// records when it accepted each request, by Idempotency-Key, and which
// alert's escalation it was.
type pagerReceiver struct {
	url   string
	delay time.Duration

	mu       sync.Mutex
	accepted int
	first    map[string]time.Time // key → first accepted
	alert    map[string]string    // key → alertname
}

func newPagerReceiver(t *testing.T, delay time.Duration) *pagerReceiver {
	p := &pagerReceiver{delay: delay, first: map[string]time.Time{}, alert: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.url = "http://" + ln.Addr().String() + "/hook"
	return p
}

func (p *pagerReceiver) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
		CommonAnnotations map[string]string `json:"commonAnnotations"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Alerts) != 1 || body.CommonAnnotations["event"] != "trigger" {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	time.Sleep(p.delay)
	key := r.Header.Get("Idempotency-Key")
	p.mu.Lock()
	p.accepted++
	if _, ok := p.first[key]; !ok {
		p.first[key] = time.Now()
		p.alert[key] = body.Alerts[0].Labels["alertname"]
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// triggered returns when each alert's trigger was first accepted, by
// alertname, the keys per alertname, and the requests accepted.
func (p *pagerReceiver) triggered() (at map[string]time.Time, keys map[string]int, accepted int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, keys = map[string]time.Time{}, map[string]int{}
	for k, t := range p.first {
		a := p.alert[k]
		keys[a]++
		if old, ok := at[a]; !ok || t.Before(old) {
			at[a] = t
		}
	}
	return at, keys, p.accepted
}

// escalations returns each open incident's next step's due time and the
// receivers notified, by the alertname of its group.
func (p *alertdProc) escalations(t *testing.T) map[string]incidentEscalation {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/incidents?state=open")
	require.NoError(t, err)
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Incidents []struct {
				GroupLabels map[string]string   `json:"groupLabels"`
				Escalation  *incidentEscalation `json:"escalation"`
			} `json:"incidents"`
		} `json:"data"`
	}
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	out := map[string]incidentEscalation{}
	for _, in := range r.Data.Incidents {
		if in.Escalation != nil {
			out[in.GroupLabels["alertname"]] = *in.Escalation
		}
	}
	return out
}

type incidentEscalation struct {
	NextStepAt time.Time `json:"nextStepAt"`
	Notified   []string  `json:"notified"`
	Pending    int       `json:"pending"`
}

// TestEscalationCrash kills alertd with SIGKILL while its escalation loop
// works through a batch of new incidents, and restarts it on the same
// storage. The loop writes escalation.json at most every 5s (and at
// shutdown, which a SIGKILL skips): what the crash loses of it is redone.
// Every incident's trigger reaches the pager, under one key per incident,
// each key at most once more than once (the outbox's window: the request
// in flight); the chains whose trigger was accepted well before the kill
// (the write interval and a margin) keep their next step's due time, as
// stored, not counted from the restart.
func TestEscalationCrash(t *testing.T) {
	const (
		n = 300
		// kept is how long before the kill a trigger must have been
		// accepted for the crash to keep its chain: the write interval
		// (escalationSaveInterval) and a margin.
		kept = 5*time.Second + 3*time.Second
		wait = time.Hour
	)
	bin := buildBinary(t)
	dir := t.TempDir()
	// 50ms an answer: the triggers take some 20s, the loop writes the
	// state several times meanwhile.
	pager := newPagerReceiver(t, 50*time.Millisecond)
	cfg := filepath.Join(dir, "alertd.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
intake:
  resolve_timeout: 24h
route:
  receiver: default
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1h
receivers:
  - name: default
  - name: pager
    webhook_configs: [{url: %q}]
escalation_policies:
  - name: page
    matchers: ['severity="page"']
    steps:
      - notify: [pager]
      - wait: %s
      - notify: [pager]
`, pager.url, wait)), 0o600))
	args := []string{"--config.file=" + cfg, "--storage.path=" + filepath.Join(dir, "data")}
	var alerts []string
	for i := range n {
		alerts = append(alerts, fmt.Sprintf(`{"labels":{"alertname":"Crash%03d","severity":"page"}}`, i))
	}
	push := func(p *alertdProc) {
		t.Helper()
		resp, err := http.Post(p.url+"/api/v2/alerts", "application/json", strings.NewReader("["+strings.Join(alerts, ",")+"]"))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	}

	a := startAlertdBinary(t, bin, args...)
	push(a)
	// Killed once 20 triggers are older than kept, with many still to
	// send.
	var killedAt time.Time
	require.Eventually(t, func() bool {
		at, _, _ := pager.triggered()
		old := 0
		for _, t := range at {
			if time.Since(t) > kept {
				old++
			}
		}
		return old >= 20
	}, 60*time.Second, 10*time.Millisecond, "not 20 triggers sent")
	before, _, _ := pager.triggered()
	killedAt = time.Now()
	a.kill(t)
	require.Less(t, len(before), n, "every trigger sent before the kill: nothing left to crash in")

	a = startAlertdBinary(t, bin, args...)
	restartedAt := time.Now()
	push(a) // as Prometheus resends its alerts
	var got map[string]incidentEscalation
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		// Carried out is in the outbox; then the pager has it.
		at, _, _ := pager.triggered()
		if !assert.Len(c, at, n, "triggers") {
			return
		}
		got = a.escalations(t)
		if !assert.Len(c, got, n) {
			return
		}
		for name, e := range got {
			assert.Equal(c, []string{"pager"}, e.Notified, name)
			assert.Zero(c, e.Pending, name)
		}
	}, 90*time.Second, 50*time.Millisecond, "every chain triggered")

	_, keys, accepted := pager.triggered()
	for name, k := range keys {
		require.Equal(t, 1, k, "%s triggered under %d keys", name, k)
	}
	require.LessOrEqual(t, accepted, n+1, "at most the request in flight at the kill is sent twice")
	kept0 := 0
	for name, t0 := range before {
		if killedAt.Sub(t0) < kept {
			continue
		}
		kept0++
		next := got[name].NextStepAt
		// Counted from the restart, it would be due after the kill's
		// time and the wait.
		require.True(t, next.Before(killedAt.Add(wait)), "%s: next step due at %s, counted from the restart (%s): its chain was not kept",
			name, next, restartedAt)
	}
	t.Logf("%d triggers before the kill, %d of them more than %s before: their chains kept", len(before), kept0, kept)
	require.Positive(t, kept0)
}
