package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// faultReceiver is a webhook receiver that is down until up is called,
// then answers 500s, then 429s with Retry-After, then 200, and holds the
// response to one accepted request until released, so that alertd can be
// killed while that request is in flight. It counts every request and
// deduplicates by Idempotency-Key, as a receiver should.
type faultReceiver struct {
	addr string
	srv  *http.Server

	mu        sync.Mutex
	errors500 int // still to answer
	errors429 int
	holdAt    int // the accepted request whose answer is held (1-based)
	held      chan struct{}
	release   chan struct{}
	requests  int
	n500      int
	n429      int
	accepted  int
	byKey     map[string]int    // accepted requests per key
	content   map[string]string // key → "alert:status"
}

func newFaultReceiver(t *testing.T) *faultReceiver {
	return &faultReceiver{
		addr: prometheustest.FreeAddr(t), byKey: map[string]int{}, content: map[string]string{},
		held: make(chan struct{}), release: make(chan struct{}),
	}
}

// up starts listening; until then connections are refused.
func (f *faultReceiver) up(t *testing.T, errors500, errors429, holdAt int) {
	f.mu.Lock()
	f.errors500, f.errors429, f.holdAt = errors500, errors429, holdAt
	f.mu.Unlock()
	ln, err := net.Listen("tcp", f.addr)
	require.NoError(t, err)
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() {
		f.unhold()
		_ = f.srv.Close()
	})
}

func (f *faultReceiver) unhold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

func (f *faultReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var p struct {
		Version string `json:"version"`
		Status  string `json:"status"`
		Alerts  []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	if json.Unmarshal(body, &p) != nil || p.Version != "4" || len(p.Alerts) != 1 {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.requests++
	switch {
	case f.errors500 > 0:
		f.errors500--
		f.n500++
		f.mu.Unlock()
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	case f.errors429 > 0:
		f.errors429--
		f.n429++
		f.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	}
	// Accepted: the receiver has the notification, whether or not alertd
	// hears the answer.
	f.accepted++
	f.byKey[key]++
	f.content[key] = p.Alerts[0].Labels["id"] + ":" + p.Alerts[0].Status
	hold := f.accepted == f.holdAt
	f.mu.Unlock()
	if hold {
		close(f.held)
		<-f.release
	}
	w.WriteHeader(http.StatusOK)
}

// delivered returns the distinct keys accepted and the "id:status"
// notifications they carried.
func (f *faultReceiver) delivered() (keys int, notifications map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	notifications = map[string]int{}
	for k := range f.byKey {
		notifications[f.content[k]]++
	}
	return len(f.byKey), notifications
}

// alertdProc is one run of the alertd binary.
type alertdProc struct {
	cmd  *exec.Cmd
	logs *prometheustest.SyncBuffer
	url  string
}

func startAlertdBinary(t *testing.T, bin string, args ...string) *alertdProc {
	t.Helper()
	web := prometheustest.FreeAddr(t)
	p := &alertdProc{logs: &prometheustest.SyncBuffer{}, url: "http://" + web}
	p.cmd = exec.Command(bin, append([]string{"--web.listen-address=" + web}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("alertd log:\n%s", p.logs.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "alertd did not become ready")
	return p
}

// kill sends SIGKILL: no shutdown, no snapshot.
func (p *alertdProc) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	_ = p.cmd.Wait()
}

// push posts the alerts with ids 0..n-1, firing or resolved at endsAt.
func (p *alertdProc) push(t *testing.T, n int, startsAt, endsAt time.Time) {
	t.Helper()
	var as []map[string]any
	for i := range n {
		as = append(as, map[string]any{
			"labels":   map[string]string{"alertname": "Fault", "id": fmt.Sprintf("a%02d", i)},
			"startsAt": startsAt.Format(time.RFC3339Nano), "endsAt": endsAt.Format(time.RFC3339Nano),
		})
	}
	b, err := json.Marshal(as)
	require.NoError(t, err)
	resp, err := http.Post(p.url+"/api/v2/alerts", "application/json", strings.NewReader(string(b)))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
}

// outbox returns GET /api/v1/outbox's pending and dead letter counts.
func (p *alertdProc) outbox(t *testing.T) (pending, dead int) {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/outbox")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Pending     int `json:"pending"`
			DeadLetters int `json:"deadLetters"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return -1, -1
	}
	return r.Data.Pending, r.Data.DeadLetters
}

// TestNotificationFaults is the fault test of notification delivery: a
// webhook receiver that is down, then answers 500s and 429s with
// Retry-After, then 200, while alertd is killed with SIGKILL twice — once
// with every notification waiting in the outbox, once with a request in
// flight — and restarted on the same storage. Every notification (20
// alerts firing, then resolved) must arrive, each idempotency key at most
// once more than once: the at-least-once window of the request in flight.
func TestNotificationFaults(t *testing.T) {
	const n = 20
	bin := buildBinary(t)
	dir := t.TempDir()
	rcv := newFaultReceiver(t)
	t.Cleanup(func() {
		if t.Failed() {
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			t.Logf("receiver: %d requests, %d accepted, by key: %v, content: %v", rcv.requests, rcv.accepted, rcv.byKey, rcv.content)
		}
	})
	cfg := filepath.Join(dir, "alertd.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
route:
  receiver: hook
  group_by: ['...']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs: [{url: "http://%s/hook"}]
`, rcv.addr)), 0o600))
	args := []string{"--config.file=" + cfg, "--storage.path=" + filepath.Join(dir, "data"),
		"--outbox.initial-backoff=200ms", "--outbox.max-backoff=2s", "--log.level=debug"}
	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	firingUntil := startsAt.Add(24 * time.Hour)

	// 1. The receiver is down: all notifications wait in the outbox.
	a := startAlertdBinary(t, bin, args...)
	a.push(t, n, startsAt, firingUntil)
	require.Eventually(t, func() bool { p, _ := a.outbox(t); return p == n }, 60*time.Second, 50*time.Millisecond,
		"every notification is stored while the receiver is down")

	// 2. Killed with everything pending; the receiver comes up failing.
	a.kill(t)
	rcv.up(t, 8, 8, 5)
	a = startAlertdBinary(t, bin, args...)
	a.push(t, n, startsAt, firingUntil) // as Prometheus resends its alerts

	// 3. Killed while the receiver holds its answer to an accepted request.
	select {
	case <-rcv.held:
	case <-time.After(90 * time.Second):
		t.Fatal("no request got through the 500s and 429s")
	}
	a.kill(t)
	rcv.unhold()
	a = startAlertdBinary(t, bin, args...)
	a.push(t, n, startsAt, firingUntil)
	require.Eventually(t, func() bool {
		keys, _ := rcv.delivered()
		p, _ := a.outbox(t)
		return keys == n && p == 0
	}, 90*time.Second, 50*time.Millisecond, "every firing notification is delivered")

	// 4. All resolve.
	a.push(t, n, startsAt, time.Now().UTC())
	require.Eventually(t, func() bool {
		keys, _ := rcv.delivered()
		p, _ := a.outbox(t)
		return keys == 2*n && p == 0
	}, 90*time.Second, 50*time.Millisecond, "every resolved notification is delivered")

	keys, notifications := rcv.delivered()
	rcv.mu.Lock()
	requests, n500, n429, accepted := rcv.requests, rcv.n500, rcv.n429, rcv.accepted
	duplicates := 0
	for _, c := range rcv.byKey {
		duplicates += c - 1
	}
	rcv.mu.Unlock()
	_, dead := a.outbox(t)
	t.Logf("notifications: %d expected, %d distinct idempotency keys delivered, %d lost", 2*n, keys, 2*n-keys)
	t.Logf("receiver: %d requests = %d × 500 + %d × 429 + %d accepted; %d duplicate deliveries (deduplicated by Idempotency-Key); %d dead letters",
		requests, n500, n429, accepted, duplicates, dead)
	require.Equal(t, 2*n, keys)
	for i := range n {
		for _, st := range []string{"firing", "resolved"} {
			require.Equal(t, 1, notifications[fmt.Sprintf("a%02d:%s", i, st)], "a%02d %s", i, st)
		}
	}
	require.Equal(t, 8, n500)
	require.Equal(t, 8, n429)
	require.LessOrEqual(t, duplicates, 1, "at most the request in flight at the kill is delivered twice")
	require.Zero(t, dead)
}
