package alertd

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify"
)

// siblingConfig sends critical alerts to slack and to pager through two
// sibling routes with the same matchers, and escalates them: l1, then l2
// 10m later.
const siblingConfig = `
global:
  evaluation_interval: 1s
rule_files: [rules.yml]
intake:
  resolve_timeout: 24h
route:
  receiver: default
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  routes:
    - {receiver: slack, matchers: ['severity="critical"'], continue: true}
    - {receiver: pager, matchers: ['severity="critical"'], continue: true}
receivers:
  - name: default
  - name: slack
    webhook_configs: [{url: "{{SLACK}}"}]
  - name: pager
    webhook_configs: [{url: "{{PAGER}}"}]
  - name: l1
    webhook_configs: [{url: "{{L1}}"}]
  - name: l2
    webhook_configs: [{url: "{{L2}}"}]
escalation_policies:
  - name: p
    matchers: ['severity="critical"']
    steps:
      - notify: [l1]
      - wait: 10m
      - notify: [l2]
`

// incidentsOfHook returns the incident annotation of each payload the hook
// got.
func incidentsOfHook(h *hook) []string {
	var out []string
	for _, p := range h.all() {
		out = append(out, p.CommonAnnotations["incident"])
	}
	return out
}

// Two sibling routes with the same matchers are two of Alertmanager's
// aggregation groups with one group key: an alert they both take is in an
// incident of each, with its receiver, paged by its receiver's
// notifications, and escalated on its own; Alertmanager's API lists both
// groups.
func TestSiblingRoutesIncidents(t *testing.T) {
	t.Parallel()
	slack, pager, l1, l2 := newHook(t), newHook(t), newHook(t), newHook(t)
	clock := &testClock{}
	cfg := strings.NewReplacer("{{SLACK}}", slack.URL, "{{PAGER}}", pager.URL, "{{L1}}", l1.URL, "{{L2}}", l2.URL).Replace(siblingConfig)
	a := startAlertd(t, cfg, map[string]string{"rules.yml": "groups: []\n"}, clock.options())

	ls := model.LabelSet{"alertname": "Latency", "severity": "critical"}
	fp := ls.Fingerprint().String()
	postAlertJSON(t, a, `{"labels":{"alertname":"Latency","severity":"critical"}}`)
	ps, pp := slack.wait(t, "Latency", "firing", 30*time.Second), pager.wait(t, "Latency", "firing", 30*time.Second)
	key := `{}/{severity="critical"}:{alertname="Latency"}`
	require.Equal(t, key, ps.GroupKey, "Alertmanager's group key")
	require.Equal(t, key, pp.GroupKey, "one group key for both routes")

	var incs []incidentWithEscalation
	require.Eventually(t, func() bool {
		incs = escalatedIncidents(t, a)
		return len(incs) == 2 && incs[0].Escalation != nil && settled(1)(incs[0]) && incs[1].Escalation != nil && settled(1)(incs[1])
	}, 30*time.Second, 10*time.Millisecond, "want two escalated incidents, got %+v", incs)
	slices.SortFunc(incs, func(x, y incidentWithEscalation) int { return strings.Compare(x.Receiver, y.Receiver) })
	pagerInc, slackInc := incs[0], incs[1]
	require.Equal(t, "pager", pagerInc.Receiver)
	require.Equal(t, "slack", slackInc.Receiver)
	require.NotEqual(t, pagerInc.ID, slackInc.ID)
	for _, in := range incs {
		require.Equal(t, key, in.GroupKey, "the group key users see is Alertmanager's")
		require.Equal(t, model.LabelSet{"alertname": "Latency"}, in.GroupLabels)
		require.Equal(t, []string{fp}, in.Firing)
		require.Equal(t, "p", in.Escalation.Policy)
	}
	require.Equal(t, `{}/{severity="critical"}/0`, slackInc.Route, "the route's id, as Alertmanager's Route.ID()")
	require.Equal(t, `{}/{severity="critical"}/1`, pagerInc.Route)
	var grouped []string
	for _, d := range waitAlert(t, a, ls).History {
		if d.Stage == "incident" && d.Action == "grouped" {
			grouped = append(grouped, d.Reason)
		}
	}
	require.ElementsMatch(t, []string{"grouped into incident " + slackInc.ID, "grouped into incident " + pagerInc.ID}, grouped)

	// Each chain triggers level 1 for its incident.
	waitEscalationEvents(t, l1, "trigger", "trigger")
	require.ElementsMatch(t, []string{slackInc.ID, pagerInc.ID}, incidentsOfHook(l1))

	// A route's notification is a page of its own route's incident; an
	// escalation's, of the incident it escalates.
	var paged []Event
	require.Eventually(t, func() bool {
		paged = ledgerEvents(t, a, "fingerprint="+fp+"&event="+eventPaged)
		return len(paged) == 4
	}, 30*time.Second, 10*time.Millisecond, "want 4 paged events, got %+v", paged)
	byReceiver := map[string][]string{}
	for _, e := range paged {
		byReceiver[e.Receiver] = append(byReceiver[e.Receiver], e.Incident)
	}
	require.Equal(t, []string{slackInc.ID}, byReceiver["slack"])
	require.Equal(t, []string{pagerInc.ID}, byReceiver["pager"])
	require.ElementsMatch(t, []string{slackInc.ID, pagerInc.ID}, byReceiver["l1"])

	// Acknowledging slack's incident stops its chain only: pager's
	// escalates to level 2.
	code, body := postIncident(t, a, slackInc.ID, "acknowledge", `{"by":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	waitEscalationEvents(t, l1, "trigger", "trigger", "acknowledge")
	require.Equal(t, slackInc.ID, incidentsOfHook(l1)[2])
	clock.skip(10*time.Minute + time.Second)
	waitEscalationEvents(t, l2, "escalate")
	require.Equal(t, []string{pagerInc.ID}, incidentsOfHook(l2))
	for _, in := range escalatedIncidents(t, a) {
		switch in.ID {
		case slackInc.ID:
			require.True(t, in.Acknowledged)
			require.Equal(t, "acknowledged", in.Escalation.Status)
		case pagerInc.ID:
			require.False(t, in.Acknowledged)
			require.Equal(t, 2, in.Escalation.Level)
		}
	}

	// Alertmanager's API lists the two aggregation groups.
	groups := getV2Groups(t, a, "")
	var receivers []string
	for _, g := range groups {
		receivers = append(receivers, *g.Receiver.Name)
		require.Len(t, g.Alerts, 1)
	}
	require.ElementsMatch(t, []string{"slack", "pager"}, receivers)

	// The alert resolves: both incidents close.
	postAlertJSON(t, a, fmt.Sprintf(`{"labels":{"alertname":"Latency","severity":"critical"},"endsAt":%q}`, clock.Now().UTC().Format(time.RFC3339Nano)))
	require.Eventually(t, func() bool {
		closed := 0
		for _, in := range incidentsOf(t, a) {
			if in.ClosedAt != nil {
				closed++
			}
		}
		return closed == 2
	}, 30*time.Second, 10*time.Millisecond, "the incidents never closed")

	// l2 hears of pager's resolution, once its level 2 was notified: slack's
	// acknowledged incident, opened with pager's, would have escalated to
	// l2 in the tick that escalated pager's, before the resolution, and
	// l2's notifications leave one outbox lane in order.
	require.Eventually(t, func() bool { return slices.Contains(events(l2), "resolve") }, 30*time.Second, 10*time.Millisecond,
		"l2 never heard of the resolution")
	require.Equal(t, []string{"escalate", "resolve"}, events(l2), "slack's acknowledged incident escalated")
	require.Equal(t, []string{pagerInc.ID, pagerInc.ID}, incidentsOfHook(l2), "slack's acknowledged incident escalated")
	n, _ := metric(t, a.Registry(), "alertd_escalations_total", "policy", "p", "level", "2")
	require.Equal(t, 1.0, n, "slack's acknowledged incident escalated")
	for _, h := range []*hook{slack, pager, l1, l2} {
		h.checkWire(t)
	}
}

// testRouting returns the routing of a configuration's route.
func testRouting(t *testing.T, cfg string) *routing {
	t.Helper()
	c, err := alertconfig.Load(cfg, "")
	require.NoError(t, err)
	return newRouting(dispatch.NewRoute(c.Route, nil), nil)
}

// Only routes whose key another route has carry their id, and their
// incidents are keyed by it; the others keep Alertmanager's group key.
func TestRoutingGroupKeys(t *testing.T) {
	r := testRouting(t, `
route:
  receiver: team
  group_by: [alertname]
  routes:
    - {receiver: slack, matchers: ['model="a"'], continue: true}
    - {receiver: pager, matchers: ['model="a"'], continue: true}
    - {receiver: team, matchers: ['model=~"a|b"'], continue: true}
    - receiver: team
      matchers: ['env="prod"']
      routes: [{receiver: slack, matchers: ['model="a"']}]
receivers: [{name: team}, {name: slack}, {name: pager}]
`)
	type group struct{ key, route, id, receiver string }
	var got []group
	for _, g := range r.groups(model.LabelSet{"alertname": "Drift", "model": "a", "env": "prod"}) {
		got = append(got, group{g.Key, g.Route, g.ID, g.Receiver})
	}
	require.Equal(t, []group{
		{`{}/{model="a"}:{alertname="Drift"}`, `{}/{model="a"}/0`, `{}/{model="a"}/0:{alertname="Drift"}`, "slack"},
		{`{}/{model="a"}:{alertname="Drift"}`, `{}/{model="a"}/1`, `{}/{model="a"}/1:{alertname="Drift"}`, "pager"},
		{`{}/{model=~"a|b"}:{alertname="Drift"}`, "", `{}/{model=~"a|b"}:{alertname="Drift"}`, "team"},
		{`{}/{env="prod"}/{model="a"}:{alertname="Drift"}`, "", `{}/{env="prod"}/{model="a"}:{alertname="Drift"}`, "slack"},
	}, got)
}

// Sibling routes with the same matchers and receiver: with group_by
// labels that tell their groups apart, Alertmanager's keys do; with the
// same group labels, the ledger keys each route's incident by its id, and
// a notification of the group, which Alertmanager's notification log
// does not tell apart either, is a page of both.
func TestSiblingRoutesSharedReceiver(t *testing.T) {
	r := testRouting(t, `
route:
  receiver: team
  routes:
    - {receiver: team, matchers: ['model="a"'], group_by: [model], continue: true}
    - {receiver: team, matchers: ['model="a"'], group_by: [model, feature], continue: true}
receivers: [{name: team}]
`)
	now := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	l, _ := openTestLedger(t, t.TempDir(), &settableClock{t: now}, nil)
	defer l.close()
	fire := func(ls model.LabelSet) (*Alert, []string) {
		t.Helper()
		a := &Alert{Alert: model.Alert{Labels: ls, StartsAt: now}, Fingerprint: ls.Fingerprint(), Value: math.NaN()}
		l.observe(now, a)
		return a, l.group(now, a, r.groups(ls))
	}
	byID := func(id string) *incident {
		for _, in := range l.incidentList(now) {
			if in.ID == id {
				return in
			}
		}
		return nil
	}

	// Distinct group labels: distinct group keys, as in Alertmanager.
	_, ids := fire(model.LabelSet{"alertname": "Drift", "model": "a", "feature": "amount"})
	require.Len(t, ids, 2)
	require.Equal(t, `{}/{model="a"}:{model="a"}`, byID(ids[0]).GroupKey)
	require.Equal(t, `{}/{model="a"}:{feature="amount", model="a"}`, byID(ids[1]).GroupKey)

	// The same group labels: one group key and receiver, two incidents.
	ls := model.LabelSet{"alertname": "Down", "model": "a"}
	a, ids := fire(ls)
	require.Len(t, ids, 2)
	require.NotEqual(t, ids[0], ids[1])
	key := `{}/{model="a"}:{model="a"}`
	for i, id := range ids {
		in := byID(id)
		require.Equal(t, key, in.GroupKey)
		require.Equal(t, "team", in.Receiver)
		require.Equal(t, fmt.Sprintf(`{}/{model="a"}/%d`, i), in.Route)
	}
	_, again := fire(ls)
	require.Equal(t, ids, again, "grouped again into the same incidents")

	l.paged(notify.Notification{Receiver: "team", Integration: "webhook[0]", GroupKey: key, Time: now,
		Alerts: []*amalert.Alert{{Alert: a.Alert}}})
	for _, id := range ids {
		require.Equal(t, 1, byID(id).Pages, "incident %s", id)
	}
}

// An incident opened before the upgrade for sibling routes with the same
// matchers was one for both, filed under the group key with the first
// route's receiver: after it, that route keeps it (moved to its own key,
// across restarts), and the other route opens its own.
func TestSiblingRoutesLedgerUpgrade(t *testing.T) {
	r := testRouting(t, `
route:
  receiver: default
  group_by: [alertname]
  routes:
    - {receiver: slack, matchers: ['model="a"'], continue: true}
    - {receiver: pager, matchers: ['model="a"'], continue: true}
receivers: [{name: default}, {name: slack}, {name: pager}]
`)
	now := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	clock := &settableClock{t: now}
	dir := t.TempDir()
	l, _ := openTestLedger(t, dir, clock, nil)
	ls := model.LabelSet{"alertname": "Drift", "model": "a"}
	fp := ls.Fingerprint().String()
	key := `{}/{model="a"}:{alertname="Drift"}`
	old := incidentID(key, now)
	// What alertd recorded before: one incident, the first route's
	// receiver.
	script(t, l,
		Event{Time: now, Event: eventFired, Fingerprint: fp, Labels: ls, StartsAt: now},
		Event{Time: now, Event: eventGrouped, Fingerprint: fp, Labels: ls, Incident: old, GroupKey: key,
			GroupLabels: model.LabelSet{"alertname": "Drift"}, Receiver: "slack"},
	)
	require.NoError(t, l.close())

	l, _ = openTestLedger(t, dir, clock, nil)
	later := now.Add(time.Minute)
	a := &Alert{Alert: model.Alert{Labels: ls, StartsAt: now}, Fingerprint: ls.Fingerprint(), Value: math.NaN()}
	ids := l.group(later, a, r.groups(ls))
	l.commit()
	require.Len(t, ids, 2)
	require.Equal(t, old, ids[0], "the first route keeps the incident opened before the upgrade")
	require.Equal(t, incidentID(`{}/{model="a"}/1:{alertname="Drift"}`, later), ids[1])
	check := func(l *ledger) {
		t.Helper()
		require.Equal(t, `{}/{model="a"}/0`, l.incident(old).Route)
		require.Equal(t, "slack", l.incident(old).Receiver)
		require.Equal(t, `{}/{model="a"}/1`, l.incident(ids[1]).Route)
		require.Equal(t, "pager", l.incident(ids[1]).Receiver)
		require.Equal(t, ids, l.group(later, a, r.groups(ls)), "found again, with nothing new to record")
		require.Empty(t, l.buf)
	}
	check(l)
	require.NoError(t, l.close())
	l, _ = openTestLedger(t, dir, clock, nil)
	defer l.close()
	check(l)

	// A reload swaps the siblings: each route keeps its incident, moved
	// to its new id.
	r = testRouting(t, `
route:
  receiver: default
  group_by: [alertname]
  routes:
    - {receiver: pager, matchers: ['model="a"'], continue: true}
    - {receiver: slack, matchers: ['model="a"'], continue: true}
receivers: [{name: default}, {name: slack}, {name: pager}]
`)
	require.Equal(t, []string{ids[1], ids[0]}, l.group(later, a, r.groups(ls)))
	l.commit()
	require.Equal(t, `{}/{model="a"}/1`, l.incident(old).Route)
	require.Equal(t, `{}/{model="a"}/0`, l.incident(ids[1]).Route)
	require.Equal(t, []string{ids[1], ids[0]}, l.group(later, a, r.groups(ls)))
	require.Empty(t, l.buf)
	require.Len(t, l.incidentList(later), 2)

	// Both close when the alert resolves.
	resolved := *a
	resolved.EndsAt = later
	l.observe(later.Add(time.Second), &resolved)
	for _, id := range ids {
		require.NotNil(t, l.incident(id).ClosedAt, "incident %s", id)
	}
}
