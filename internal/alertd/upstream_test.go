package alertd

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertmanagertest"
)

// gatedAPI is a reverse proxy in front of a real Alertmanager, at the URL
// its webhooks name: while the gate is shut, each GET /api/v2/alerts
// waits (an Alertmanager slow to answer, up to
// intake.alertmanager_api.timeout) until the gate opens or the request
// ends.
type gatedAPI struct {
	URL    string
	target atomic.Pointer[url.URL]
	// waiting counts the requests the shut gate has kept waiting.
	waiting atomic.Int64

	mu   sync.Mutex
	gate chan struct{} // closed while open
}

// newGatedAPI starts the proxy, open; setTarget says where the
// Alertmanager is.
func newGatedAPI(t *testing.T) *gatedAPI {
	t.Helper()
	g := &gatedAPI{gate: make(chan struct{})}
	close(g.gate)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(g.target.Load()) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/v2/alerts" {
			g.mu.Lock()
			gate := g.gate
			g.mu.Unlock()
			select {
			case <-gate:
			default:
				g.waiting.Add(1)
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.open) // before the server closes: nothing waits
	g.URL = srv.URL
	return g
}

func (g *gatedAPI) setTarget(t *testing.T, am *alertmanagertest.Server) {
	t.Helper()
	u, err := url.Parse(am.URL)
	require.NoError(t, err)
	g.target.Store(u)
}

// shut makes the requests that come from now on wait.
func (g *gatedAPI) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
		g.gate = make(chan struct{})
	default:
	}
}

// open lets the waiting requests and those to come through.
func (g *gatedAPI) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

// mentions reports whether a payload carries the alert of the model.
func mentions(p payload, m string) bool {
	return slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == m })
}

// suppressedUpstream reports whether the upstream stage suppresses an
// alert, rather than holding it while alertd asks its Alertmanager.
func suppressedUpstream(al alertJSON) bool {
	return al.State == "suppressed" && lastOf(al.History, "upstream").Action == "suppressed"
}

// waitPayload waits for a payload, among those received after the first
// from, that satisfies ok, and returns it.
func waitPayload(t *testing.T, h *hook, from int, ok func(payload) bool, msg string) payload {
	t.Helper()
	var got payload
	require.Eventually(t, func() bool {
		all := h.all()
		for _, p := range all[min(from, len(all)):] {
			if ok(p) {
				got = p
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "%s: got %v", msg, h.all())
	return got
}

// relayedNotified has a real Alertmanager behind api relay fraud and
// churn to alertd, and waits for alertd to notify both.
func relayedNotified(t *testing.T, a *testAlertd, h *hook, api *gatedAPI) *alertmanagertest.Server {
	t.Helper()
	am := alertmanagertest.StartBehind(t, relayConfig(a, true), api.URL)
	api.setTarget(t, am)
	postToAM(t, am, "fraud", "churn")
	waitPayload(t, h, 0, func(p payload) bool { return p.Status == "firing" && mentions(p, "fraud") && mentions(p, "churn") },
		"fraud and churn not notified")
	return am
}

// Asking an Alertmanager takes a while (up to
// intake.alertmanager_api.timeout). Meanwhile the alert a complete
// notification left out, which the Alertmanager may silence or may have
// resolved, is held: it is neither notified firing nor resolved, so a
// flush of its group in alertd's notifier in that window, for another
// alert, leaves it out. The answer, silenced, suppresses it; nothing
// about it is paged at all.
func TestAlertmanagerLeftOutHeldWhileAsked(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "intake:\n  alertmanager_api: {check_interval: 1h}\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	api := newGatedAPI(t)
	am := relayedNotified(t, a, h, api)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}

	api.shut()
	from := len(h.all())
	code, id := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "maintenance of fraud", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	postToAM(t, am, "ltv")
	// The notification that brought ltv left fraud out: alertd asks, and
	// waits for the answer.
	require.Eventually(t, func() bool { return api.waiting.Load() > 0 }, 30*time.Second, 20*time.Millisecond, "alertd did not ask")
	p := waitPayload(t, h, from, func(p payload) bool { return mentions(p, "ltv") }, "ltv not notified")
	require.False(t, mentions(p, "fraud"), "fraud, silenced in the Alertmanager, was notified while alertd asked: %+v", p)
	al := waitFor(t, a, fraud, inState("suppressed"), "not held")
	d := lastOf(al.History, "upstream")
	require.Equal(t, "held", d.Action)
	require.Contains(t, d.Reason, "left out of a later notification of its group")
	require.Contains(t, d.Reason, "held from notifications, neither firing nor resolved, until its API says whether it silences or inhibits it")
	for _, ga := range getV2(t, a, "") {
		if ga.Labels["model"] == "fraud" {
			require.Equal(t, "unprocessed", *ga.Status.State, "GET /api/v2/alerts shows it unprocessed")
		}
	}
	held, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "upstream")
	require.Zero(t, held, "a hold is not a suppression")

	api.open()
	al = waitFor(t, a, fraud, suppressedUpstream, "not suppressed")
	require.Contains(t, lastOf(al.History, "upstream").Reason, "silenced in the Alertmanager at "+api.URL+" by "+id)
	suppressed, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "upstream")
	require.Equal(t, 1.0, suppressed)
	require.Never(t, func() bool {
		all := h.all()
		return slices.ContainsFunc(all[from:], func(p payload) bool { return mentions(p, "fraud") })
	}, 2*time.Second, 50*time.Millisecond, "fraud was paged after the Alertmanager silenced it")
	require.Equal(t, "firing", relayed(t, a, "Relayed", "churn").State)
}

// An Alertmanager that answers that it no longer holds the alert the
// notification left out: held meanwhile, it resolves, and its receivers
// are told, as they were before alertd asked.
func TestAlertmanagerLeftOutHeldThenResolved(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "intake:\n  alertmanager_api: {check_interval: 1h}\n"), map[string]string{"rules.yml": "groups: []\n"}, nil)
	api := newGatedAPI(t)
	// send_resolved: false, so that the Alertmanager leaves the resolved
	// alert out instead of sending it resolved.
	am := alertmanagertest.StartBehind(t, relayConfig(a, false), api.URL)
	api.setTarget(t, am)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}
	postToAM(t, am, "fraud", "churn")
	waitPayload(t, h, 0, func(p payload) bool { return p.Status == "firing" && mentions(p, "fraud") && mentions(p, "churn") },
		"fraud and churn not notified")

	api.shut()
	from := len(h.all())
	postToAM(t, am, "resolved:fraud", "ltv")
	require.Eventually(t, func() bool { return api.waiting.Load() > 0 }, 30*time.Second, 20*time.Millisecond, "alertd did not ask")
	p := waitPayload(t, h, from, func(p payload) bool { return mentions(p, "ltv") }, "ltv not notified")
	require.False(t, mentions(p, "fraud"), "fraud was notified while alertd asked: %+v", p)
	require.Equal(t, "held", lastOf(waitFor(t, a, fraud, inState("suppressed"), "not held").History, "upstream").Action)

	api.open()
	al := waitFor(t, a, fraud, inState("resolved"), "not resolved")
	require.Contains(t, lastOf(al.History, "intake").Reason, "; its API no longer lists it firing for the receiver")
	waitPayload(t, h, from, func(p payload) bool {
		return slices.ContainsFunc(p.Alerts, func(x payloadAlert) bool { return x.Labels["model"] == "fraud" && x.Status == "resolved" })
	}, "fraud's resolution not notified")
}

// A restart while alertd asks loses nothing: the held alert is kept held
// in pushed_alerts.json, the restarted alertd asks again, and the
// answer, silenced, suppresses it. Nothing about it is paged.
func TestAlertmanagerLeftOutHeldAcrossRestart(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, "intake:\n  alertmanager_api: {check_interval: 1h}\n"))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)
	api := newGatedAPI(t)
	am := relayedNotified(t, a, h, api)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}

	api.shut()
	from := len(h.all())
	code, id := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "maintenance", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	postToAM(t, am, "ltv")
	require.Eventually(t, func() bool { return api.waiting.Load() > 0 }, 30*time.Second, 20*time.Millisecond, "alertd did not ask")
	waitFor(t, a, fraud, inState("suppressed"), "not held")

	require.NoError(t, a.Stop())
	asked := api.waiting.Load()
	b := start(t, dir, o, logs)
	al := waitFor(t, b, fraud, inState("suppressed"), "not restored held")
	require.Contains(t, actions(al.History), "intake/restored")
	require.Equal(t, "held", lastOf(al.History, "upstream").Action)
	require.Eventually(t, func() bool { return api.waiting.Load() > asked }, 30*time.Second, 20*time.Millisecond, "the restarted alertd did not ask")

	api.open()
	al = waitFor(t, b, fraud, suppressedUpstream, "not suppressed")
	require.Contains(t, lastOf(al.History, "upstream").Reason, "silenced in the Alertmanager at "+api.URL+" by "+id)
	require.Never(t, func() bool {
		all := h.all()
		return slices.ContainsFunc(all[from:], func(p payload) bool { return mentions(p, "fraud") })
	}, 2*time.Second, 50*time.Millisecond, "fraud was paged after the Alertmanager silenced it")
}

// An alert silenced in its Alertmanager fires on there: alertd keeps it
// firing, suppressed, past intake.alertmanager_resolve_timeout, as its
// checks move its end on. With suppression.notify_resolved, the
// notifier's copy of the alert must not time out meanwhile, or the
// receivers told it fired would be told it resolved while it fires.
// When it truly resolves there, they are told once.
func TestAlertmanagerSilencedUpstreamResolutionNotifiedOnce(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "suppression:\n  notify_resolved: true\n"+
		"intake:\n  resolve_timeout: 1s\n  alertmanager_resolve_timeout: 3s\n  alertmanager_api: {check_interval: 200ms}\n"),
		map[string]string{"rules.yml": "groups: []\n"}, nil)
	am := relayingAM(t, a, true)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}

	postToAM(t, am, "fraud")
	h.wait(t, "Relayed", "firing", 30*time.Second)
	code, _ := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "on it", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	waitFor(t, a, fraud, inState("suppressed"), "not suppressed")
	// Twice alertmanager_resolve_timeout, and a flush.
	require.Never(t, func() bool { return h.notifications("Relayed", "resolved") > 0 }, 7*time.Second, 50*time.Millisecond,
		"its resolution was notified while it fires, silenced, in the Alertmanager")
	require.Equal(t, "suppressed", waitFor(t, a, fraud, inState("suppressed"), "not suppressed").State)

	postToAM(t, am, "resolved:fraud")
	al := waitFor(t, a, fraud, inState("resolved"), "not resolved")
	require.Contains(t, lastOf(al.History, "intake").Reason, "no longer fires in the Alertmanager at "+am.URL+" for receiver alertd")
	h.wait(t, "Relayed", "resolved", 30*time.Second)
	require.Never(t, func() bool { return h.notifications("Relayed", "resolved") > 1 }, 3*time.Second, 50*time.Millisecond,
		"its resolution was notified more than once")
}
