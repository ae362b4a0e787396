package exporter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promModel "github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/quality"
)

// replicas starts n sidecars with labels in front of one model server that
// answers every prediction with 1.5, and makes each of them, and a dead
// address, the others' peers (each is its own peer too, as a headless
// Service lists every pod).
func replicas(t *testing.T, n int) []*Exporter {
	t.Helper()
	up := priceModel(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, nil, 0o644))
	es := make([]*Exporter, n)
	peers := []string{deadAddr(t)}
	for i := range es {
		es[i] = startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg; o.Labels = LabelsOptions{Enabled: true} })
		peers = append(peers, es[i].WebAddr())
	}
	require.NoError(t, os.WriteFile(cfg, []byte("labels:\n  peers: ["+strings.Join(peers, ", ")+"]\n  timeout: 2s\n"), 0o644))
	for _, e := range es {
		require.NoError(t, e.Reload())
	}
	return es
}

// priceModel is a model server that answers every prediction with 1.5.
func priceModel(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/feedback") {
			io.WriteString(w, `{"meta": {}}`)
			return
		}
		io.WriteString(w, `{"predictions": [1.5]}`)
	}))
	t.Cleanup(up.Close)
	return up
}

// deadAddr is a loopback address of a peer that is down: it closes every
// connection at once. The port stays bound until the test ends; a port
// freed at once could be handed to one of the replicas the test starts
// next, which would then answer for the dead peer.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func predictVia(t *testing.T, e *Exporter, id string) {
	t.Helper()
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v1/models/price:predict", `{"instances": [[1]]}`, "X-Request-Id", id)
	require.Equal(t, 200, st)
	waitIdle(t, e)
}

// Labels posted to any replica join in the one that made the prediction:
// a replica asks its peers about the labels it does not know, keeps those
// none knew (held for their prediction), and never asks again about what
// a peer sent it.
func TestLabelsAcrossReplicas(t *testing.T) {
	es := replicas(t, 3)
	a, b, c := es[0], es[1], es[2]
	predictVia(t, a, "a-1")
	predictVia(t, b, "b-1")

	st, r := postLabels(t, c, `{"id":"a-1","label":1}`+"\n"+`{"id":"b-1","label":2.5}`+"\n"+`{"id":"later","label":3}`+"\n"+`{"label":3}`)
	require.Equal(t, 200, st)
	require.Equal(t, []string{"matched", "matched", "held"}, r.Results, "%+v", r)
	require.Len(t, r.Rejected, 1)
	price := map[string]string{"model": "price"}
	require.Equal(t, 1.0, metricValue(t, a, "modelmon_labels_matched_total", price), "joined where the prediction was")
	require.Equal(t, 0.5, metricValue(t, a, "modelmon_prediction_absolute_error_total", price))
	require.Equal(t, 1.0, metricValue(t, b, "modelmon_labels_matched_total", price))
	require.Equal(t, 1.0, metricValue(t, b, "modelmon_prediction_absolute_error_total", price))
	require.Zero(t, metricValue(t, c, "modelmon_labels_matched_total", price))
	require.Equal(t, 1.0, metricValue(t, c, "modelmon_held_labels", nil), "the label none knew waits here")
	require.Equal(t, 2.0, metricValue(t, c, "modelmon_labels_forwarded_total", map[string]string{"result": "found"}))
	require.Equal(t, 1.0, metricValue(t, c, "modelmon_labels_forwarded_total", map[string]string{"result": "not_found"}))
	require.Equal(t, 2.0, metricValue(t, c, "modelmon_label_peer_requests_total", map[string]string{"result": "success"}), "a and b; c found itself")
	require.Equal(t, 1.0, metricValue(t, c, "modelmon_label_peer_requests_total", map[string]string{"result": "error"}), "the dead peer")
	require.Equal(t, 3.0, metricValue(t, c, "modelmon_label_peers", nil), "a, b and the dead one: c knows itself now")
	for _, e := range []*Exporter{a, b} {
		require.Zero(t, metricValue(t, e, "modelmon_labels_forwarded_total", map[string]string{"result": "not_found"}), "what a peer sends is not sent on")
		require.Zero(t, metricValue(t, e, "modelmon_held_labels", nil), "nor held by the peers")
		require.Zero(t, metricValue(t, e, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}))
	}

	// A second label for a-1 is the duplicate a says it is; a replica that
	// knows the prediction asks no one.
	_, r = postLabels(t, c, `{"id":"a-1","label":1}`)
	require.Equal(t, []string{"duplicate"}, r.Results)
	require.Equal(t, 1.0, metricValue(t, a, "modelmon_labels_total", map[string]string{"reason": "duplicate"}))
	predictVia(t, a, "a-2")
	_, r = postLabels(t, a, `{"id":"a-2","label":1.5}`)
	require.Equal(t, []string{"matched"}, r.Results)
	require.Zero(t, metricValue(t, a, "modelmon_labels_forwarded_total", map[string]string{"result": "found"}))

	// The label held in c joins when its prediction comes to c.
	predictVia(t, c, "later")
	require.Equal(t, 1.0, metricValue(t, c, "modelmon_labels_matched_total", price))

	// A label held in c whose prediction is then made in b joins in b
	// when c asks the peers about it again, 30 s after it came.
	_, r = postLabels(t, c, `{"id":"soon","label":2}`)
	require.Equal(t, []string{"held"}, r.Results)
	predictVia(t, b, "soon")
	found := metricValue(t, c, "modelmon_labels_forwarded_total", map[string]string{"result": "found"})
	c.obs.labels.expire(time.Now().Add(20 * time.Second)) // not due yet: nothing is asked
	require.Equal(t, found, metricValue(t, c, "modelmon_labels_forwarded_total", map[string]string{"result": "found"}))
	c.obs.labels.expire(time.Now().Add(time.Minute))
	eventually(t, b, 2, "modelmon_labels_matched_total", price)
	eventually(t, c, 0, "modelmon_held_labels", nil)
	require.Equal(t, found+1, metricValue(t, c, "modelmon_labels_forwarded_total", map[string]string{"result": "found"}))
	require.Zero(t, metricValue(t, c, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}), "dropped in c uncounted")

	// A label held in c whose prediction is made in b only after c last
	// asked is asked of the peers once more when it has waited too long,
	// and joins in b; one that no replica ever sees a prediction for ends
	// as unknown_id in c.
	_, r = postLabels(t, c, `{"id":"early","label":2}`+"\n"+`{"id":"never","label":2}`)
	require.Equal(t, []string{"held", "held"}, r.Results)
	notFound := metricValue(t, c, "modelmon_labels_forwarded_total", map[string]string{"result": "not_found"})
	c.obs.labels.expire(time.Now().Add(9 * time.Minute)) // asked again: no one knows them yet
	eventually(t, c, notFound+2, "modelmon_labels_forwarded_total", map[string]string{"result": "not_found"})
	require.Equal(t, 2.0, metricValue(t, c, "modelmon_held_labels", nil))
	predictVia(t, b, "early")
	last := time.Now().Add(11 * time.Minute)
	c.obs.labels.expire(last) // past the 10 minutes a label is held
	eventually(t, b, 3, "modelmon_labels_matched_total", price)
	// The dead peer could not be asked about never, and may know it: its
	// end is put off, heldRetries times, and then it is unknown_id.
	eventually(t, c, 1, "modelmon_held_labels_peer_unreachable", nil)
	for _, at := range retryAskings(last) {
		waitForwarded(t, c)
		require.Equal(t, 1.0, metricValue(t, c, "modelmon_held_labels", nil))
		require.Zero(t, metricValue(t, c, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}))
		c.obs.labels.expire(at)
	}
	eventually(t, c, 1, "modelmon_labels_total", map[string]string{"reason": "unknown_id"})
	require.Equal(t, 1.0, metricValue(t, c, "modelmon_labels_peer_unreachable_total", nil))
	require.Zero(t, metricValue(t, c, "modelmon_held_labels", nil))
	require.Zero(t, metricValue(t, c, "modelmon_held_labels_peer_unreachable", nil))
	require.Equal(t, 1.0, metricValue(t, c, "modelmon_labels_matched_total", price))
}

// retryAskings returns the times after the last asking of a held label,
// at last, at which the peers are asked about it again when a peer could
// not be asked then, nor at any of these times before.
func retryAskings(last time.Time) []time.Time {
	var out []time.Time
	for k := range heldRetries {
		last = last.Add(heldReaskAfter << k)
		out = append(out, last)
	}
	return out
}

// waitForwarded waits until the labels e asks its peers about in the
// background have come back, and what came of them is done.
func waitForwarded(t *testing.T, e *Exporter) {
	t.Helper()
	ps := e.obs.labels.peers
	require.Eventually(t, func() bool { return len(ps.forwards) == 0 }, 10*time.Second, time.Millisecond)
}

// flakyPeer is a loopback address in front of a replica's web listener
// that can be taken down: it then closes every connection at once, as
// deadAddr does, until it is brought back.
type flakyPeer struct {
	addr string
	down atomic.Bool
}

func newFlakyPeer(t *testing.T, to *Exporter) *flakyPeer {
	t.Helper()
	p := &flakyPeer{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: to.WebAddr()})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	p.addr = s.Listener.Addr().String()
	return p
}

// replicaBehindFlakyPeer starts replica b, and the options of a replica
// with --storage.path whose one peer is b behind a flaky peer.
func replicaBehindFlakyPeer(t *testing.T, up string) (b *Exporter, bp *flakyPeer, opts func(*Options)) {
	t.Helper()
	b = startExporter(t, up, func(o *Options) { o.Labels = LabelsOptions{Enabled: true} })
	bp = newFlakyPeer(t, b)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("labels:\n  peers: ["+bp.addr+"]\n  timeout: 2s\n"), 0o644))
	return b, bp, func(o *Options) {
		o.ConfigFile = cfg
		o.StoragePath = filepath.Join(dir, "storage")
		o.Labels = LabelsOptions{Enabled: true}
	}
}

// A held label whose last asking finds a peer down is held on, and asked
// again later: when the peer is back, the label joins there, where its
// prediction was made, rather than end as unknown_id where it was posted.
func TestHeldLabelWaitsForAPeerThatIsDown(t *testing.T) {
	up := priceModel(t)
	b, bp, opts := replicaBehindFlakyPeer(t, up.URL)
	a := startExporter(t, up.URL, opts)
	_, r := postLabels(t, a, `{"id":"x","label":2}`)
	require.Equal(t, []string{"held"}, r.Results, "b does not know x yet")
	bp.down.Store(true)
	predictVia(t, b, "x")

	last := time.Now().Add(11 * time.Minute)
	a.obs.labels.expire(last)
	waitForwarded(t, a)
	require.Equal(t, 1.0, metricValue(t, a, "modelmon_held_labels", nil))
	require.Equal(t, 1.0, metricValue(t, a, "modelmon_held_labels_peer_unreachable", nil))
	require.Zero(t, metricValue(t, a, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}))
	failed := metricValue(t, a, "modelmon_label_peer_requests_total", map[string]string{"result": "error"})
	require.Equal(t, 1.0, failed, "at the last asking")

	at := retryAskings(last)
	a.obs.labels.expire(at[0].Add(-time.Second)) // not due yet: no one is asked
	waitForwarded(t, a)
	require.Equal(t, failed, metricValue(t, a, "modelmon_label_peer_requests_total", map[string]string{"result": "error"}))
	a.obs.labels.expire(at[0]) // b is still down
	waitForwarded(t, a)
	require.Equal(t, failed+1, metricValue(t, a, "modelmon_label_peer_requests_total", map[string]string{"result": "error"}))
	require.Equal(t, 1.0, metricValue(t, a, "modelmon_held_labels_peer_unreachable", nil))

	bp.down.Store(false)
	a.obs.labels.expire(at[1])
	price := map[string]string{"model": "price"}
	eventually(t, b, 1, "modelmon_labels_matched_total", price)
	require.Equal(t, 0.5, metricValue(t, b, "modelmon_prediction_absolute_error_total", price))
	eventually(t, a, 0, "modelmon_held_labels", nil)
	require.Zero(t, metricValue(t, a, "modelmon_held_labels_peer_unreachable", nil))
	require.Zero(t, metricValue(t, a, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}))
	require.Zero(t, metricValue(t, a, "modelmon_labels_peer_unreachable_total", nil))
	require.Equal(t, 1.0, metricValue(t, a, "modelmon_labels_forwarded_total", map[string]string{"result": "found"}))
}

// A held label that a peer down for good would have joined ends as
// unknown_id once its end has been put off heldRetries times, counted as
// such; the times it was put off are kept across a restart, so the grace
// does not start over.
func TestHeldLabelEndsWhenAPeerStaysDown(t *testing.T) {
	up := priceModel(t)
	b, bp, opts := replicaBehindFlakyPeer(t, up.URL)
	a := startExporter(t, up.URL, opts)
	_, r := postLabels(t, a, `{"id":"x","label":2}`)
	require.Equal(t, []string{"held"}, r.Results)
	bp.down.Store(true)
	predictVia(t, b, "x")

	last := time.Now().Add(11 * time.Minute)
	at := retryAskings(last)
	a.obs.labels.expire(last)
	for _, t1 := range at[:2] {
		waitForwarded(t, a)
		a.obs.labels.expire(t1)
	}
	waitForwarded(t, a)
	stopSoon(t, a)
	require.Equal(t, 1, a.obs.labels.store.Stats().HeldRetrying, "as saved")

	next := startExporter(t, up.URL, opts)
	require.Equal(t, 1.0, metricValue(t, next, "modelmon_held_labels_peer_unreachable", nil), "restored")
	for _, t1 := range at[2:] {
		require.Zero(t, metricValue(t, next, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}))
		next.obs.labels.expire(t1)
		waitForwarded(t, next)
	}
	require.Equal(t, 1.0, metricValue(t, next, "modelmon_labels_total", map[string]string{"reason": "unknown_id"}), "after 5 more askings, 2 of them before the restart")
	require.Equal(t, 1.0, metricValue(t, next, "modelmon_labels_peer_unreachable_total", nil))
	require.Zero(t, metricValue(t, next, "modelmon_held_labels", nil))
	require.Zero(t, metricValue(t, next, "modelmon_held_labels_peer_unreachable", nil))
	require.Zero(t, metricValue(t, b, "modelmon_labels_matched_total", map[string]string{"model": "price"}))
}

// A peer that leaves the peers keeps no label waiting: a held label none
// of the peers left knows at its last asking ends as unknown_id then.
func TestHeldLabelDoesNotWaitForAPeerThatLeft(t *testing.T) {
	ps := newPeers("me", prometheus.NewRegistry(), promslog.NewNopLogger())
	ps.resolve = func(context.Context, string) ([]string, error) { return nil, nil } // the headless Service lists no pod
	require.NoError(t, ps.configure(config.Labels{Peers: []string{"dns+modelmon-labels.ml.svc:9108"}, Timeout: promModel.Duration(time.Second)}))
	found, asked, reached := ps.ask(context.Background(), []quality.Label{{ID: "x", Value: quality.Class("cat")}})
	require.Equal(t, []string{""}, found)
	require.Equal(t, 1, asked)
	require.Equal(t, 1, reached, "every peer there is was asked")

	ps.resolve = func(context.Context, string) ([]string, error) { return nil, errors.New("server misbehaving") }
	_, asked, reached = ps.ask(context.Background(), []quality.Label{{ID: "x", Value: quality.Class("cat")}})
	require.Equal(t, 1, asked)
	require.Zero(t, reached, "a name that does not resolve may hide a peer that knows it")
}

// While maxPeerForwards batches are out, the held labels due to be asked
// again wait for the next tick rather than miss their turn.
func TestHeldLabelsWaitForBusyPeers(t *testing.T) {
	es := replicas(t, 2)
	a, b := es[0], es[1]
	_, r := postLabels(t, b, `{"id":"x","label":1}`)
	require.Equal(t, []string{"held"}, r.Results)
	predictVia(t, a, "x")
	l := b.obs.labels
	for range cap(l.peers.forwards) {
		l.peers.forwards <- struct{}{}
	}
	l.expire(time.Now().Add(time.Minute))
	for range cap(l.peers.forwards) {
		<-l.peers.forwards
	}
	require.Equal(t, 1.0, metricValue(t, b, "modelmon_held_labels", nil))
	l.expire(time.Now().Add(time.Minute))
	eventually(t, a, 1, "modelmon_labels_matched_total", map[string]string{"model": "price"})
	eventually(t, b, 0, "modelmon_held_labels", nil)
}

// Seldon's feedback that reaches a replica other than the prediction's is
// asked of the peers too, in the background.
func TestSeldonFeedbackAcrossReplicas(t *testing.T) {
	es := replicas(t, 2)
	predictVia(t, es[0], "s-1")
	st, _ := do(t, "POST", "http://"+es[1].ProxyAddr()+"/api/v1.0/feedback", `{"truth": {"data": {"ndarray": [[2]]}}}`, "X-Request-Id", "s-1")
	require.Equal(t, 200, st)
	waitIdle(t, es[1])
	eventually(t, es[0], 1, "modelmon_labels_matched_total", map[string]string{"model": "price"})
	require.Equal(t, 0.5, metricValue(t, es[0], "modelmon_prediction_absolute_error_total", map[string]string{"model": "price"}))
	require.Zero(t, metricValue(t, es[1], "modelmon_held_labels", nil))
}

// hangingPeer is a peer that takes every request and answers none before
// the test ends. asked gets a value for each request it takes.
func hangingPeer(t *testing.T) (addr string, asked <-chan struct{}) {
	t.Helper()
	got := make(chan struct{}, 16)
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		got <- struct{}{}
		<-release
	}))
	t.Cleanup(s.Close) // after release: Close waits for the handlers
	t.Cleanup(func() { close(release) })
	return s.Listener.Addr().String(), got
}

// waitAsked waits until the hanging peer has taken a request.
func waitAsked(t *testing.T, asked <-chan struct{}) {
	t.Helper()
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatal("the peer was never asked")
	}
}

// stopSoon stops e well before the peers' labels.timeout of a minute: a
// Stop that waited for it would fail.
func stopSoon(t *testing.T, e *Exporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, e.Stop(ctx))
}

// hangingPeerOptions configures replicas with --storage.path whose one
// peer (labels.peers, asked for a minute) is the hanging peer at addr,
// from the configuration's first (re)load, or, with later, from the
// returned function's call.
func hangingPeerOptions(t *testing.T, addr string, later bool) (opts func(*Options), configure func()) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "modelmon.yml")
	configure = func() {
		require.NoError(t, os.WriteFile(cfg, []byte("labels:\n  peers: ["+addr+"]\n  timeout: 1m\n"), 0o644))
	}
	if later {
		require.NoError(t, os.WriteFile(cfg, nil, 0o644))
	} else {
		configure()
	}
	return func(o *Options) {
		o.ConfigFile = cfg
		o.StoragePath = filepath.Join(dir, "storage")
		o.Labels = LabelsOptions{Enabled: true}
	}, configure
}

// Stop ends the asking of the peers in the background (about Seldon's
// feedback, and held labels asked again) at once, not at labels.timeout,
// and waits for it: the labels it was about stay held, uncounted, in the
// snapshot, and join in the next process when their predictions come.
func TestStopCutsShortLabelsAskedOfPeersInTheBackground(t *testing.T) {
	peer, asked := hangingPeer(t)
	up := modelServer(t)
	opts, configure := hangingPeerOptions(t, peer, true)
	e := startExporter(t, up.URL, opts)
	_, r := postLabels(t, e, `{"id":"held","label":2}`)
	require.Equal(t, []string{"held"}, r.Results)
	configure()
	require.NoError(t, e.Reload())
	e.obs.labels.expire(time.Now().Add(time.Minute)) // held 30 s: asked again
	waitAsked(t, asked)
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/api/v1.0/feedback", `{"truth": {"data": {"ndarray": [[3]]}}}`, "X-Request-Id", "fed")
	require.Equal(t, 200, st)
	waitAsked(t, asked)

	stopSoon(t, e)
	stats := e.obs.labels.store.Stats()
	require.Equal(t, 2, stats.Held, "held and fed, as saved")
	require.Zero(t, stats.Labels[quality.ReasonUnknownID])
	ps := e.obs.labels.peers
	require.Zero(t, testutil.ToFloat64(ps.requests.WithLabelValues("error")), "the peer did not fail: the sidecar stopped")
	require.Zero(t, testutil.ToFloat64(ps.forwarded.WithLabelValues("not_found")), "nor did it answer")

	next := startExporter(t, up.URL, opts)
	require.Equal(t, 2.0, metricValue(t, next, "modelmon_held_labels", nil))
	predictVia(t, next, "held")
	predictVia(t, next, "fed")
	price := map[string]string{"model": "price"}
	require.Equal(t, 2.0, metricValue(t, next, "modelmon_labels_matched_total", price))
	require.Equal(t, 3.0, metricValue(t, next, "modelmon_prediction_absolute_error_total", price), "|2-1| + |3-1|")
}

// A held label whose last asking of the peers, at the end of its time,
// the stop cuts short is held again, for the snapshot, rather than ending
// as unknown_id without the peers' answer.
func TestStopKeepsHeldLabelsAtTheirLastAsking(t *testing.T) {
	peer, asked := hangingPeer(t)
	opts, configure := hangingPeerOptions(t, peer, true)
	e := startExporter(t, modelServer(t).URL, opts)
	_, r := postLabels(t, e, `{"id":"late","label":2}`)
	require.Equal(t, []string{"held"}, r.Results)
	configure()
	require.NoError(t, e.Reload())
	e.obs.labels.expire(time.Now().Add(11 * time.Minute)) // past its 10 minutes: taken to be asked a last time
	waitAsked(t, asked)
	require.Zero(t, e.obs.labels.store.Stats().Held)

	stopSoon(t, e)
	stats := e.obs.labels.store.Stats()
	require.Equal(t, 1, stats.Held, "held again, as saved")
	require.Zero(t, stats.Labels[quality.ReasonUnknownID])
}

// A POST /v1/labels asking a peer that does not answer holds up Stop no
// longer than the stop ends the request to the peer: the client is
// answered that the label is held here, and it is, after a restart too.
func TestStopAnswersLabelsRequestAskingAPeer(t *testing.T) {
	peer, asked := hangingPeer(t)
	up := modelServer(t)
	opts, _ := hangingPeerOptions(t, peer, false)
	e := startExporter(t, up.URL, opts)
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+e.WebAddr()+"/v1/labels", "application/x-ndjson", strings.NewReader(`{"id":"p-1","label":2}`))
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answers <- answer{resp.StatusCode, b, err}
	}()
	waitAsked(t, asked)

	stopSoon(t, e)
	a := <-answers // Stop has waited for the request
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	var lr LabelsResponse
	require.NoError(t, json.Unmarshal(a.body, &lr))
	require.Equal(t, []string{"held"}, lr.Results)
	require.Zero(t, testutil.ToFloat64(e.obs.labels.peers.requests.WithLabelValues("error")))

	next := startExporter(t, up.URL, opts)
	require.Equal(t, 1.0, metricValue(t, next, "modelmon_held_labels", nil))
	predictVia(t, next, "p-1")
	require.Equal(t, 1.0, metricValue(t, next, "modelmon_labels_matched_total", map[string]string{"model": "price"}))
}

// A dns+ peer is every address its name resolves to, and a name that does
// not resolve is counted as an error, and said to leave peers out.
func TestPeerAddresses(t *testing.T) {
	ps := newPeers("me", prometheus.NewRegistry(), promslog.NewNopLogger())
	ps.resolve = func(_ context.Context, host string) ([]string, error) {
		if host == "modelmon-labels.ml.svc" {
			return []string{"10.0.0.1", "10.0.0.2", "fd00::3"}, nil
		}
		return nil, errors.New("no such host")
	}
	ps.isSelf["10.0.0.2:9108"] = true
	cfg := config.Labels{Peers: []string{"dns+modelmon-labels.ml.svc:9108", "static:9108", "dns+gone:9108"}}
	addrs, resolved := ps.addresses(context.Background(), cfg)
	require.Equal(t, []string{"10.0.0.1:9108", "[fd00::3]:9108", "static:9108"}, addrs)
	require.False(t, resolved, "gone did not resolve")
	require.Equal(t, 1.0, testutil.ToFloat64(ps.requests.WithLabelValues("error")))
	addrs, resolved = ps.addresses(context.Background(), config.Labels{Peers: cfg.Peers[:2]})
	require.Len(t, addrs, 3)
	require.True(t, resolved)
}

// Many labels are asked of the peers in batches, each within the peers'
// body limit.
func TestLabelsAcrossReplicasInBatches(t *testing.T) {
	es := replicas(t, 2)
	const n = 2*peerBatch + 500
	var obs, lbs []string
	for i := range n {
		obs = append(obs, fmt.Sprintf(`{"model":"churn","id":"c%d","prediction":"yes"}`, i))
		lbs = append(lbs, fmt.Sprintf(`{"id":"c%d","label":"yes"}`, i))
	}
	pushRecordsRaw(t, es[0], obs...)
	st, r := postLabels(t, es[1], strings.Join(lbs, "\n"))
	require.Equal(t, 200, st)
	require.Len(t, r.Results, n)
	for i, res := range r.Results {
		require.Equal(t, "matched", res, "label %d", i)
	}
	require.Equal(t, float64(n), metricValue(t, es[0], "modelmon_prediction_correct_total", map[string]string{"model": "churn", "class": "yes"}))
	require.Equal(t, 3.0, metricValue(t, es[1], "modelmon_label_peer_requests_total", map[string]string{"result": "success"}), "three batches to the one peer")
	require.Equal(t, 1.0, metricValue(t, es[1], "modelmon_label_peer_requests_total", map[string]string{"result": "error"}), "the dead peer, asked once in the call")
}

// Replicas whose web listeners have TLS and basic auth reach each other as
// labels.scheme and labels.http_config say, as Prometheus's scrape
// configuration does; a wrong password is a peer error, and the label is
// kept where it was posted.
func TestLabelsAcrossReplicasTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	certFile, keyFile := ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	webCfg := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  modelmon: "+string(hash)+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "password"), []byte("s3cret\n"), 0o600))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, nil, 0o644))
	up := modelServer(t)
	a := startExporter(t, up.URL, func(o *Options) {
		*o.Web.WebConfigFile = webCfg
		o.ConfigFile = cfg
		o.Labels = LabelsOptions{Enabled: true}
	})
	b := startExporter(t, up.URL, func(o *Options) {
		*o.Web.WebConfigFile = webCfg
		o.ConfigFile = cfg
		o.Labels = LabelsOptions{Enabled: true}
	})
	peersConfig := func(password string) {
		require.NoError(t, os.WriteFile(cfg, []byte(`labels:
  peers: [`+a.WebAddr()+`, `+b.WebAddr()+`]
  scheme: https
  http_config:
    basic_auth: {username: modelmon, password: `+password+`}
    tls_config: {ca_file: `+ca.file+`}
`), 0o644))
		require.NoError(t, a.Reload())
		require.NoError(t, b.Reload())
	}
	peersConfig("s3cret")

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	defer client.CloseIdleConnections()
	post := func(e *Exporter, path, body string) []byte {
		req, err := http.NewRequest("POST", "https://"+e.WebAddr()+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.SetBasicAuth("modelmon", "s3cret")
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		return b
	}
	results := func(body []byte) []string {
		var lr LabelsResponse
		require.NoError(t, json.Unmarshal(body, &lr))
		return lr.Results
	}
	post(a, "/v1/observations", `{"model":"churn","id":"p-1","prediction":"yes"}`+"\n"+`{"model":"churn","id":"p-2","prediction":"no"}`)
	require.Equal(t, []string{"matched"}, results(post(b, "/v1/labels", `{"id":"p-1","label":"yes"}`)))

	peersConfig("wrong")
	require.Equal(t, []string{"held"}, results(post(b, "/v1/labels", `{"id":"p-2","label":"no"}`)), "a answers 401: the label stays in b")
	require.Equal(t, 1.0, testutil.ToFloat64(b.obs.labels.peers.requests.WithLabelValues("error")))
}

// Peers without the label join are said to be of no use.
func TestPeersWithoutLabels(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("labels:\n  peers: [10.0.0.1:9108]\n"), 0o644))
	var logs strings.Builder
	var mu sync.Mutex
	startExporter(t, modelServer(t).URL, func(o *Options) {
		o.ConfigFile = cfg
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	})
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, logs.String(), "labels.peers is set, but without --labels.enabled")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
