package notify

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notifytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Integrations' HTTP clients keep idle connections, as Alertmanager's do.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// payload is the webhook payload as a receiver decodes it.
type payload = notifytest.Payload

// receiver is a real webhook receiver. It answers 503 while down, else
// the queued statuses in turn, then 200, and closes every connection so
// that no idle connection keeps a synctest bubble from advancing its
// clock.
type receiver struct {
	URL string

	mu       sync.Mutex
	requests int
	got      []payload
	keys     []string // Idempotency-Key of each accepted payload
	read     int
	replies  []reply
	down     bool
}

type reply struct {
	status int
	body   string
}

func newReceiver(t *testing.T, replies ...reply) *receiver {
	t.Helper()
	r := &receiver{replies: replies}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var p payload
		if err := json.Unmarshal(b, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.requests++
		rep := reply{status: http.StatusOK}
		if r.down {
			rep = reply{http.StatusServiceUnavailable, "down"}
		} else if len(r.replies) > 0 {
			rep, r.replies = r.replies[0], r.replies[1:]
		}
		if rep.status/100 == 2 {
			r.got = append(r.got, p)
			r.keys = append(r.keys, req.Header.Get("Idempotency-Key"))
		}
		r.mu.Unlock()
		w.Header().Set("Connection", "close")
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// setDown makes r answer 503 (true) or answer again (false).
func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// next returns the payloads accepted since the last call.
func (r *receiver) next() []payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got[r.read:]
	r.read = len(r.got)
	return got
}

// summaries returns next's payloads as sorted strings.
func (r *receiver) summaries() []string {
	var s []string
	for _, p := range r.next() {
		s = append(s, p.String())
	}
	slices.Sort(s)
	return s
}

// ordered returns next's payloads as strings, in the order received.
func (r *receiver) ordered() []string {
	var s []string
	for _, p := range r.next() {
		s = append(s, p.String())
	}
	return s
}

// idempotencyKeys returns the Idempotency-Key headers of the accepted
// payloads, in order.
func (r *receiver) idempotencyKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys)
}

func (r *receiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// deadURL returns a URL where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr
}

// load parses an alertd configuration, with {{URL}} replaced by url.
func load(t testing.TB, yml, url string) *alertconfig.Config {
	t.Helper()
	c, err := alertconfig.Load(strings.ReplaceAll(yml, "{{URL}}", url), "")
	require.NoError(t, err)
	return c
}

// firing returns an alert that started now and ends in a day, from
// "name=value,…" labels.
func firing(labels string) *alert.Alert {
	return newAlert(labels, time.Now(), time.Now().Add(24*time.Hour))
}

func newAlert(labels string, startsAt, endsAt time.Time) *alert.Alert {
	ls := model.LabelSet{}
	for kv := range strings.SplitSeq(labels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return alert.New(model.Alert{Labels: ls, StartsAt: startsAt, EndsAt: endsAt}, time.Time{}, false)
}

// notifications collects what OnNotify reports.
type notifications struct {
	mu  sync.Mutex
	all []Notification
}

func (n *notifications) add(x Notification) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.all = append(n.all, x)
}

func (n *notifications) get() []Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.all)
}

// value returns the value of the counter name{labels} in g, failing the
// test if it is not exposed.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("%s%v is not exposed", name, want)
	return 0
}
