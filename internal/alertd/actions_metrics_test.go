package alertd

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// actionSeries returns the alertd_actions_* series of an action, by name
// and labels, with their values.
func actionSeries(t *testing.T, g prometheus.Gatherer, action string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "alertd_actions_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			mine := false
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
				mine = mine || l.GetName() == "action" && l.GetValue() == action
			}
			if mine {
				out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// reload rewrites alertd's configuration and reloads it.
func reload(t *testing.T, a *testAlertd, cfg string) {
	t.Helper()
	writeFile(t, a.Dir, "alertd.yml", cfg)
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
}

// The alertd_actions_* series of an action a reload removes are deleted,
// as Prometheus wants the series of what is gone; the kept action's stay,
// and an action added back gets them again at 0.
func TestActionSeriesFollowReloads(t *testing.T) {
	t.Parallel()
	cfg := func(names ...string) string {
		s := "actions:\n"
		for _, n := range names {
			s += fmt.Sprintf("  - name: %s\n    type: webhook\n    url: http://127.0.0.1:1/\n    secret: s\n    trigger:\n      matchers: ['action=%q']\n", n, n)
		}
		return s
	}
	a := startAlertd(t, cfg("retrain", "deploy"), nil, nil)
	kept := actionSeries(t, a.Registry(), "retrain")
	removed := actionSeries(t, a.Registry(), "deploy")
	require.Len(t, kept, 18, "%v", kept)
	require.Len(t, removed, 18, "%v", removed)

	reload(t, a, cfg("retrain"))
	require.Empty(t, actionSeries(t, a.Registry(), "deploy"), "the removed action's series are still exposed")
	require.Equal(t, kept, actionSeries(t, a.Registry(), "retrain"))

	reload(t, a, cfg("retrain", "deploy"))
	require.Equal(t, removed, actionSeries(t, a.Registry(), "deploy"), "the action added back has not its series at 0")
	require.Equal(t, kept, actionSeries(t, a.Registry(), "retrain"))
}

// openWork is an actions alertd whose drift alert left two requests
// open: pending, of action approved, awaiting approval, and verified, of
// action verified, delivered and awaiting its verification. Its third
// action, retrain, the alert does not trigger; kept is the configuration
// of that one alone.
type openWork struct {
	a                 *testAlertd
	clock             *testClock
	kept              string
	ls                model.LabelSet
	pending, verified actionRequest
}

// startOpenWork starts an openWork.
func startOpenWork(t *testing.T) openWork {
	t.Helper()
	w := openWork{clock: &testClock{}}
	ci := newFakeCI(t, nil, w.clock.Now)
	w.kept = classifyDrift + "actions:" + `
  - name: retrain
    type: webhook
    url: ` + ci.URL + `/hooks/retrain
    secret: hook-secret
    trigger:
      matchers: ['action="retrain"']
`
	removed := `
  - name: approved
    type: webhook
    url: ` + ci.URL + `/hooks/approved
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
    approval: {required: true, timeout: 2h}
  - name: verified
    type: webhook
    url: ` + ci.URL + `/hooks/verified
    secret: hook-secret
    trigger:
      matchers: ['category="data_quality"']
    verify: {within: 1h, on_failure: escalate}
`
	w.a = startActionsAlertd(t, w.clock, func(string) string { return w.kept + removed }, nil)
	var al string
	w.ls, al = driftAlert("fraud", "amount")
	postAlertJSON(t, w.a, al)
	w.pending = waitRequest(t, w.a, "approved", w.ls, inRequestState(stateAwaitingApproval), "not awaiting approval")
	w.verified = waitRequest(t, w.a, "verified", w.ls, func(r actionRequest) bool { return r.State == stateDelivered && r.Verification == verifyPending }, "not delivered")
	return w
}

// An action a reload removes keeps its series while it has open work that
// still counts in them, and loses them when that ends: a request awaiting
// approval until it is rejected (alertd_actions_refused_total), one
// awaiting its verification until that fails
// (alertd_actions_verification_total).
func TestActionSeriesKeptForOpenWork(t *testing.T) {
	t.Parallel()
	w := startOpenWork(t)
	a, clock, ls := w.a, w.clock, w.ls
	before := actionSeries(t, a.Registry(), "verified")
	require.Equal(t, 1.0, before["alertd_actions_triggered_total{action=verified,trigger=alert}"])

	reload(t, a, w.kept)
	require.NotEmpty(t, actionSeries(t, a.Registry(), "approved"), "deleted while a request awaits approval")
	require.Equal(t, before, actionSeries(t, a.Registry(), "verified"), "deleted while a request awaits its verification")
	retrain := actionSeries(t, a.Registry(), "retrain")
	require.NotEmpty(t, retrain)

	code, body := post(t, a.URL+"/api/v1/actions/requests/"+w.pending.ID+"/reject", "application/json", `{"by":"bob"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Empty(t, actionSeries(t, a.Registry(), "approved"), "the rejection ended the removed action's open work")
	require.Equal(t, before, actionSeries(t, a.Registry(), "verified"))

	clock.skip(time.Hour + time.Second)
	waitRequest(t, a, "verified", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not settle")
	require.Empty(t, actionSeries(t, a.Registry(), "verified"), "the verification ended the removed action's open work")
	require.Equal(t, retrain, actionSeries(t, a.Registry(), "retrain"))
}

// An action removed from the configuration while alertd is down, whose
// open work actions.json kept, is retired at the start: its series, made
// again when that work ends and counts, are deleted then. Here a request
// awaiting approval, rejected after the restart, and one awaiting its
// verification, which fails after it.
func TestActionSeriesRetiredAtStart(t *testing.T) {
	t.Parallel()
	w := startOpenWork(t)
	a, clock, ls, pending, verified := w.a, w.clock, w.ls, w.pending, w.verified
	require.Eventually(t, func() bool {
		var open []string
		for _, req := range savedState(t, a.Dir).Requests {
			if req.State == stateAwaitingApproval || req.Verification == verifyPending {
				open = append(open, req.ID)
			}
		}
		return slices.Equal(open, []string{pending.ID, verified.ID}) || slices.Equal(open, []string{verified.ID, pending.ID})
	}, 30*time.Second, 10*time.Millisecond, "the open requests are not saved")
	require.NoError(t, a.Stop())

	// Restarted on the same storage without the two actions: their open
	// work counts when it ends, and their series go with it.
	writeFile(t, a.Dir, "alertd.yml", w.kept)
	b := restartActionsAlertd(t, clock, a.Dir, nil)
	require.Empty(t, actionSeries(t, b.Registry(), "approved"))
	require.Empty(t, actionSeries(t, b.Registry(), "verified"))
	retrain := actionSeries(t, b.Registry(), "retrain")
	require.Len(t, retrain, 18, "%v", retrain)

	code, body := post(t, b.URL+"/api/v1/actions/requests/"+pending.ID+"/reject", "application/json", `{"by":"bob"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Empty(t, actionSeries(t, b.Registry(), "approved"), "the rejection ended the removed action's open work")

	clock.skip(time.Hour + time.Second)
	waitRequest(t, b, "verified", ls, func(r actionRequest) bool { return r.Verification == verifyFailed }, "the verification did not settle")
	require.Empty(t, actionSeries(t, b.Registry(), "verified"), "the verification ended the removed action's open work")
	require.Equal(t, retrain, actionSeries(t, b.Registry(), "retrain"))
}
