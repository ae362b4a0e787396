package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	promconfig "github.com/prometheus/common/config"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/quality"
)

// peerHeader marks a POST /v1/labels that a replica sends its peers with
// the labels it did not know. Its value names the replica that sent it (its
// labels' id prefix): a replica that finds its own name answers
// http.StatusMisdirectedRequest, and is not asked again.
const peerHeader = "Modelmon-Labels-From"

// maxPeerForwards bounds the batches of labels from Seldon feedback that
// are being asked of the peers at once; past it, a batch is kept here.
const maxPeerForwards = 4

// peers asks a model's other replicas (the configuration's labels.peers)
// about the labels this replica receives for predictions it does not know,
// so that a label joins in the replica that made its prediction whichever
// replica it is posted to.
type peers struct {
	self    string // this replica's name, its labels' id prefix
	logger  *slog.Logger
	resolve func(ctx context.Context, host string) ([]string, error)

	mu     sync.Mutex
	cfg    config.Labels
	client *http.Client
	isSelf map[string]bool // addresses that answered with our name

	forwards chan struct{} // semaphore of maxPeerForwards
	// ctx ends every request to the peers when the sidecar stops (stop);
	// background counts the labels being asked about in the background
	// (forward), which stop waits for.
	ctx        context.Context
	cancel     context.CancelFunc
	background sync.WaitGroup

	requests  *prometheus.CounterVec
	forwarded *prometheus.CounterVec
	peerCount prometheus.Gauge
	// unreachable counts the held labels that ended as unknown_id with a
	// peer still not asked about them (expire).
	unreachable prometheus.Counter
	failing     *warning
}

func newPeers(self string, reg prometheus.Registerer, logger *slog.Logger) *peers {
	f := promauto.With(reg)
	ctx, cancel := context.WithCancel(context.Background())
	ps := &peers{self: self, logger: logger, resolve: net.DefaultResolver.LookupHost, isSelf: map[string]bool{},
		forwards: make(chan struct{}, maxPeerForwards), ctx: ctx, cancel: cancel,
		requests: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LabelPeerRequestsTotal,
			Help: "The total number of requests that asked the other replicas (labels.peers) about labels this one did not know, by result: success, or error (unreachable, timed out, an answer that is not 200)."}, []string{"result"}),
		forwarded: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LabelsForwardedTotal,
			Help: "The total number of labels this replica did not know and asked its peers about, by result: found (a peer knew the prediction and counted the label), or not_found (kept here, held for its prediction)."}, []string{"result"}),
		peerCount: f.NewGauge(prometheus.GaugeOpts{Name: collector.LabelPeers,
			Help: "The number of peers (labels.peers, resolved, this replica left out) asked the last time."}),
		unreachable: f.NewCounter(prometheus.CounterOpts{Name: collector.LabelsPeerUnreachableTotal,
			Help: fmt.Sprintf("The total number of held labels that ended as unknown_id while a peer could still not be asked about them, after their end was put off %d times: labels that peer may have joined.", heldRetries)}),
		failing: newWarning(logger, "Could not ask a peer about labels: the labels it would have joined are held here, asked about again, and end as unknown_id if it stays unreachable"),
	}
	for _, r := range []string{"success", "error"} {
		ps.requests.WithLabelValues(r)
	}
	for _, r := range []string{"found", "not_found"} {
		ps.forwarded.WithLabelValues(r)
	}
	return ps
}

// configure takes the peers of a (re)loaded configuration.
func (ps *peers) configure(cfg config.Labels) error {
	client, err := promconfig.NewClientFromConfig(cfg.HTTPClientConfig, "modelmon_labels_peers")
	if err != nil {
		return fmt.Errorf("labels.http_config: %w", err)
	}
	ps.mu.Lock()
	old := ps.client
	ps.cfg, ps.client = cfg, client
	ps.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	return nil
}

// close closes the connections to the peers that are idle: at shutdown,
// so that a peer's server, and this replica's own (it may be among the
// peers), do not wait for them to go (an HTTP/2 server waits a second).
func (ps *peers) close() {
	ps.mu.Lock()
	client := ps.client
	ps.mu.Unlock()
	if client != nil {
		client.CloseIdleConnections()
	}
}

// stop ends the requests to the peers in flight, and no more are made: at
// shutdown, so that a peer that does not answer holds up neither the web
// server's shutdown (a POST /v1/labels asking it) nor the last snapshot
// (labels asked about in the background). The labels they were about are
// kept here, as those a peer could not be asked about are. wait waits for
// those asked about in the background.
func (ps *peers) stop() {
	ps.mu.Lock() // no forward starts after it (run)
	defer ps.mu.Unlock()
	ps.cancel()
}

// stopped reports whether the sidecar is stopping: a request to a peer that
// fails then was ended by stop, and is neither the peer's failure nor the
// peers' answer about its labels.
func (ps *peers) stopped() bool { return ps.ctx.Err() != nil }

// run runs f in the background, for wait to wait for, and reports whether
// it did: not once the sidecar is stopping.
func (ps *peers) run(f func()) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped() {
		return false
	}
	ps.background.Go(f)
	return true
}

// wait waits, after stop, for the labels being asked about in the
// background to come back: at once, as their requests have ended.
func (ps *peers) wait() { ps.background.Wait() }

// active reports whether there are peers to ask.
func (ps *peers) active() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.cfg.Peers) > 0
}

// addresses resolves the peers: a dns+ name to all its addresses; those
// known to be this replica left out. resolved is false when a name did not
// resolve: its addresses, which may be peers, are missing.
func (ps *peers) addresses(ctx context.Context, cfg config.Labels) (addrs []string, resolved bool) {
	resolved = true
	var out []string
	for _, p := range cfg.Peers {
		name, ok := strings.CutPrefix(p, "dns+")
		if !ok {
			out = append(out, p)
			continue
		}
		host, port, _ := net.SplitHostPort(name) // validated with the configuration
		ips, err := ps.resolve(ctx, host)
		if err != nil {
			ps.failed(p, err)
			resolved = false
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	kept := out[:0]
	for _, a := range out {
		if !ps.isSelf[a] {
			kept = append(kept, a)
		}
	}
	return kept, resolved
}

// failed counts and logs a peer that could not be asked, but not one that
// was not asked because the sidecar is stopping.
func (ps *peers) failed(peer string, err error) {
	if ps.stopped() {
		return
	}
	ps.requests.WithLabelValues("error").Inc()
	ps.failing.warn(func() []any { return []any{"peer", peer, "err", err} })
}

// peerLabel is a label as a peer's POST /v1/labels takes it, with the time
// this replica received it.
type peerLabel struct {
	ID        string `json:"id"`
	Model     string `json:"model,omitempty"`
	Label     any    `json:"label"`
	Timestamp string `json:"timestamp"`
}

// Labels are asked of the peers in batches of at most peerBatch labels
// and about peerBatchBytes of NDJSON, well within the body limit of the
// peers' /v1/labels and of the answer read back.
const (
	peerBatch      = 1000
	peerBatchBytes = 1 << 20
)

// ask asks every peer about lbs, until ctx is done or the sidecar stops. It
// returns, for each label, what a peer that knew its prediction made of it
// (matched, duplicate, expired, …), or "" when none did. Only the first
// asked labels were asked of every peer that could be: one after them
// with "" was not asked of all, as the sidecar stopped first (stop). Of
// those, only the first reached were asked of every peer, this replica
// left out: one after them with "" was not asked of a peer that failed
// (down, timed out, a dns+ name that did not resolve), which may know it.
func (ps *peers) ask(ctx context.Context, lbs []quality.Label) (found []string, asked, reached int) {
	ps.mu.Lock()
	cfg, client := ps.cfg, ps.client
	ps.mu.Unlock()
	found = make([]string, len(lbs))
	if len(cfg.Peers) == 0 || len(lbs) == 0 {
		return found, len(lbs), len(lbs)
	}
	if ps.stopped() {
		return found, 0, 0
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(ps.ctx, stop)() // the sidecar's stop ends the requests too
	rctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Timeout))
	addrs, all := ps.addresses(rctx, cfg) // once a call, for all its batches
	cancel()
	skip := map[string]bool{} // failed, or this replica: not asked again in this call
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for start := 0; start < len(lbs) && !ps.stopped(); {
		end := start
		body.Reset()
		for ; end < len(lbs) && end-start < peerBatch && body.Len() < peerBatchBytes; end++ {
			lb := lbs[end]
			pl := peerLabel{ID: lb.ID, Model: lb.Model, Label: lb.Value.Class, Timestamp: lb.Time.UTC().Format(time.RFC3339Nano)}
			if lb.Value.Numeric {
				pl.Label = lb.Value.Number
			}
			_ = enc.Encode(pl) // of strings and finite numbers: it can't fail
		}
		if ps.askAll(ctx, client, cfg, addrs, body.Bytes(), found[start:end], skip) {
			all = false // and the peer that failed is skipped from now on
		}
		if !ps.stopped() {
			asked = end
			if all {
				reached = end
			}
		}
		start = end
	}
	ps.mu.Lock()
	others := 0
	for _, a := range addrs {
		if !ps.isSelf[a] {
			others++
		}
	}
	ps.mu.Unlock()
	ps.peerCount.Set(float64(others))
	for i, f := range found {
		switch {
		case f != "":
			ps.forwarded.WithLabelValues("found").Inc()
		case i < asked:
			ps.forwarded.WithLabelValues("not_found").Inc()
		}
	}
	return found, asked, reached
}

// askAll posts one batch of labels to every peer at addrs at once but
// those to skip, and fills found, one entry per label of the batch, with
// the first result of a peer that knew it. A peer that gives no results
// (it failed, or is this replica) joins skip, so that a peer down or hung
// costs one timeout per call, not one per batch. failed reports whether a
// peer that is not this replica gave none.
func (ps *peers) askAll(ctx context.Context, client *http.Client, cfg config.Labels, addrs []string, body []byte, found []string, skip map[string]bool) (failed bool) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Timeout))
	defer cancel()
	answers := make([][]string, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		if !skip[addr] {
			wg.Go(func() { answers[i] = ps.askOne(ctx, client, cfg.Scheme, addr, body, len(found)) })
		}
	}
	wg.Wait()
	ps.mu.Lock()
	for i, addr := range addrs {
		if answers[i] == nil && !skip[addr] {
			skip[addr] = true
			failed = failed || !ps.isSelf[addr]
		}
	}
	ps.mu.Unlock()
	for _, results := range answers {
		for k, r := range results {
			if found[k] == "" && r != quality.ReasonUnknownID.String() {
				found[k] = r
			}
		}
	}
	return failed
}

// askOne posts the n labels of body to one peer, and returns its n
// results: nil when it could not answer, or is this replica.
func (ps *peers) askOne(ctx context.Context, client *http.Client, scheme, addr string, body []byte, n int) []string {
	fail := func(err error) []string {
		ps.failed(addr, err)
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+"/v1/labels", bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set(peerHeader, ps.self)
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusMisdirectedRequest && resp.Header.Get(peerHeader) == ps.self:
		ps.mu.Lock()
		ps.isSelf[addr] = true
		ps.mu.Unlock()
		return nil
	case err != nil:
		return fail(err)
	case resp.StatusCode != http.StatusOK:
		return fail(fmt.Errorf("answered %s: %s", resp.Status, bytes.TrimSpace(b)))
	}
	var lr LabelsResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		return fail(fmt.Errorf("answered what is not a labels response: %w", err))
	}
	if len(lr.Results) != n {
		return fail(fmt.Errorf("answered %d results for %d labels", len(lr.Results), n))
	}
	ps.requests.WithLabelValues("success").Inc()
	return lr.Results
}

// labelHere joins lb in this replica's store: what a label none of the
// peers knew comes to (held for its prediction, most likely).
func (l *labels) labelHere(now time.Time, lb quality.Label) quality.Reason {
	o, res := l.store.Label(now, l.modelOf(lb))
	if res == quality.ReasonMatched {
		l.record(o)
	}
	return res
}

// labelKnown joins lb when this replica knows its prediction, and reports
// whether it did.
func (l *labels) labelKnown(now time.Time, lb quality.Label) (quality.Reason, bool) {
	o, res, known := l.store.LabelIfKnown(now, l.modelOf(lb))
	if res == quality.ReasonMatched {
		l.record(o)
	}
	return res, known
}

// peerAnswer is what came of asking the peers about a label (forward).
type peerAnswer uint8

const (
	// answerFound: a peer knew its prediction, and counted the label.
	answerFound peerAnswer = iota
	// answerNotFound: every peer was asked, and none knew it.
	answerNotFound
	// answerUnreached: none of the peers that answered knew it, but one
	// could not be asked (down, timed out, its dns+ name did not
	// resolve), and may know it.
	answerUnreached
	// answerUnasked: the peers were not asked (maxPeerForwards batches
	// were out), or the sidecar's stop cut the asking short.
	answerUnasked
)

// forward asks the peers, in the background, about labels this replica did
// not know, and passes on what came of each, in the order of lbs: all of
// them unasked, at once, with maxPeerForwards batches already out or the
// sidecar stopping. done runs before the sidecar saves its last snapshot
// (peers.wait).
func (l *labels) forward(lbs []quality.Label, done func(answers []peerAnswer)) {
	ps := l.peers
	unasked := func() []peerAnswer {
		answers := make([]peerAnswer, len(lbs))
		for i := range answers {
			answers[i] = answerUnasked
		}
		return answers
	}
	select {
	case ps.forwards <- struct{}{}:
	default:
		done(unasked())
		return
	}
	started := ps.run(func() {
		defer func() { <-ps.forwards }()
		results, asked, reached := ps.ask(ps.ctx, lbs)
		answers := make([]peerAnswer, len(lbs))
		for i, f := range results {
			switch {
			case f != "":
				answers[i] = answerFound
			case i < reached:
				answers[i] = answerNotFound
			case i < asked:
				answers[i] = answerUnreached
			default:
				answers[i] = answerUnasked
			}
		}
		done(answers)
	})
	if !started {
		<-ps.forwards
		done(unasked())
	}
}

// configurePeers takes the peers of a (re)loaded configuration. With
// peers, the held labels that wait too long are asked of them once more
// (expire).
func (l *labels) configurePeers(cfg config.Labels) error {
	if err := l.peers.configure(cfg); err != nil {
		return err
	}
	l.store.SetHandOff(len(cfg.Peers) > 0)
	return nil
}

// heldReaskAfter is how long a label is held before the peers are first
// asked about it again (labels.expire).
const heldReaskAfter = 30 * time.Second

// heldRetries bounds the times the end of a held label is put off because
// a peer could not be asked about it at its last asking (expire). It is
// asked again heldReaskAfter later, then each time after twice as long as
// the time before (30 s, 1, 2, 4 and 8 minutes: about a quarter of an hour
// in all), long enough for a peer to restart, short enough that a peer
// gone for good does not keep the held labels, which share
// quality.Options.MaxEarly with the new ones, for long.
const heldRetries = 5

// expire removes the pending predictions past --labels.ttl and the held
// labels past theirs. With peers, a held label's prediction may have been
// made in another replica after the label came. So the peers are asked
// about it again while it waits: at 30 s held, then each time its time
// held has doubled (HeldDue), and a peer that now knows it joins it. They
// are asked once more at its end, and a label none of them knows then
// ends as unknown_id. One they could not be asked about then (they were
// busy, or the sidecar stopped) is held again, for the next tick; so is
// one that a peer could not be asked about (down, timed out), as that
// peer may know it, but up to heldRetries times, further apart each time.
// A peer that is no longer among the peers (labels.peers, or what its dns+ name resolves
// to) is not asked, so no label waits for it.
func (l *labels) expire(now time.Time) {
	l.store.Expire(now)
	if !l.peers.active() || l.peers.stopped() {
		return
	}
	if taken := l.store.TakeExpiredHeld(now, 4*peerBatch); len(taken) > 0 {
		lbs := make([]quality.Label, len(taken))
		for i, h := range taken {
			lbs[i] = h.Label
		}
		l.forward(lbs, func(answers []peerAnswer) {
			var back []quality.HeldLabel
			unknown, unreachable := 0, 0
			for i, a := range answers {
				h := taken[i]
				switch {
				case a == answerNotFound:
					unknown++
				case a == answerUnreached && h.Retries >= heldRetries:
					unknown++
					unreachable++
				case a == answerUnreached:
					h.Retries++
					h.Retry = now.Add(heldReaskAfter << (h.Retries - 1))
					back = append(back, h)
				case a == answerUnasked:
					back = append(back, h) // for the next tick or the last snapshot
				}
			}
			l.store.CountUnknown(unknown)
			l.peers.unreachable.Add(float64(unreachable))
			for _, o := range l.store.ReturnHeld(now, back) {
				l.record(o)
			}
		})
	}
	if len(l.peers.forwards) == cap(l.peers.forwards) {
		return // the peers are busy: the labels due are asked at the next tick
	}
	if lbs := l.store.HeldDue(now, heldReaskAfter, 4*peerBatch); len(lbs) > 0 {
		// Those not found, or not asked, stay held.
		l.forward(lbs, func(answers []peerAnswer) {
			var found []quality.Label
			for i, a := range answers {
				if a == answerFound {
					found = append(found, lbs[i])
				}
			}
			l.store.ForgetHeld(found)
		})
	}
}
