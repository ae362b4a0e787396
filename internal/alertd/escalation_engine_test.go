package alertd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/assert"

	"github.com/modelmon/modelmon/escalate"
	"github.com/stretchr/testify/require"
)

// escalationRoutes routes every alert to "default", which notifies nobody.
// Each of l1, l2 and l3 is a real webhook receiver.
const escalationRoutes = `
route:
  receiver: default
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: default
  - name: l1
    webhook_configs: [{url: "{{L1}}"}]
  - name: l2
    webhook_configs: [{url: "{{L2}}"}]
  - name: l3
    webhook_configs: [{url: "{{L3}}"}]
`

// pagerPolicy escalates critical alerts: l1, then l2 10m later, then l3 10m
// after that.
const pagerPolicy = `
  - name: pager
    matchers: ['severity="critical"']
    steps:
      - notify: [l1]
      - wait: 10m
      - notify: [l2]
      - wait: 10m
      - notify: [l3]`

// escalationConfig is escalationRoutes with pagerPolicy. {{EXTRA}} goes in
// the policy.
const escalationConfig = `
global:
  evaluation_interval: 1s
rule_files: [rules.yml]
intake:
  resolve_timeout: 24h` + escalationRoutes + "escalation_policies:" + pagerPolicy + `
{{EXTRA}}
`

// escalationHooks are the receivers of escalationConfig.
type escalationHooks struct{ l1, l2, l3 *hook }

func newEscalationHooks(t *testing.T) escalationHooks {
	return escalationHooks{newHook(t), newHook(t), newHook(t)}
}

// config is escalationConfig with extra in the policy.
func (h escalationHooks) config(extra string) string {
	return h.urls(strings.ReplaceAll(escalationConfig, "{{EXTRA}}", extra))
}

// urls puts the hooks' URLs in cfg in place of {{L1}}, {{L2}} and {{L3}}.
func (h escalationHooks) urls(cfg string) string {
	return strings.NewReplacer("{{L1}}", h.l1.URL, "{{L2}}", h.l2.URL, "{{L3}}", h.l3.URL).Replace(cfg)
}

// start starts alertd on escalationConfig with extra in the policy, and
// no rules; mod, if not nil, changes its options.
func (h escalationHooks) start(t *testing.T, extra string, mod func(*Options)) *testAlertd {
	t.Helper()
	return startAlertd(t, h.config(extra), map[string]string{"rules.yml": "groups: []\n"}, mod)
}

func (h escalationHooks) checkWire(t *testing.T) {
	t.Helper()
	for _, x := range []*hook{h.l1, h.l2, h.l3} {
		x.checkWire(t)
	}
}

// events returns the escalation event of each payload the hook got.
func events(h *hook) []string {
	var out []string
	for _, p := range h.all() {
		out = append(out, p.CommonAnnotations["event"])
	}
	return out
}

// waitEscalationEvents waits until the hook got exactly these events.
func waitEscalationEvents(t *testing.T, h *hook, want ...string) {
	t.Helper()
	require.Eventually(t, func() bool { return slices.Equal(events(h), want) },
		30*time.Second, 10*time.Millisecond, "want %v, got %v", want, events(h))
}

// incidentWithEscalation is an incident of GET /api/v1/incidents with its
// escalation state.
type incidentWithEscalation struct {
	incident
	State      string          `json:"state"`
	Escalation *escalationJSON `json:"escalation"`
}

func escalatedIncidents(t *testing.T, a *testAlertd) []incidentWithEscalation {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/incidents")
	require.Equal(t, http.StatusOK, code, r.Error)
	var d struct {
		Incidents []incidentWithEscalation `json:"incidents"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &d))
	return d.Incidents
}

// waitIncident waits for the only incident, a probe's aside, to satisfy ok
// and returns it.
func waitIncident(t *testing.T, a *testAlertd, ok func(incidentWithEscalation) bool, msg string) incidentWithEscalation {
	t.Helper()
	var got incidentWithEscalation
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		is := slices.DeleteFunc(escalatedIncidents(t, a), func(in incidentWithEscalation) bool {
			return in.Escalation != nil && in.Escalation.Policy == "probe"
		})
		if assert.Len(c, is, 1) && assert.NotNil(c, is[0].Escalation, "%+v", is[0]) && assert.Truef(c, ok(is[0]), "%+v", is[0]) {
			got = is[0]
		}
	}, 30*time.Second, 10*time.Millisecond, msg)
	return got
}

// settled is an incident whose escalation has nothing left to carry out.
func settled(level int) func(incidentWithEscalation) bool {
	return func(in incidentWithEscalation) bool {
		return in.Escalation.Level == level && in.Escalation.Pending == 0
	}
}

// probePolicy escalates the alerts of escalationProbe to the receiver
// "default", which notifies nobody.
const probePolicy = `
  - name: probe
    matchers: ['severity="probe"']
    steps:
      - notify: [default]`

// escalationProbe waits until the escalation loop has carried out every
// step due when it was called, alertd's clock having been set: a test
// then checks once that a step that must not be taken was not. The
// policies must include probePolicy.
//
// The probe is an incident of its own (alertname name) that probePolicy
// escalates. The loop takes one tick at a time and carries out all its
// steps before the next: the tick that notifies the probe, opened after
// the call, is at the clock's time or later, so it took any step of
// another incident due then, or one before did. Its steps come in no set
// order, so the probe is resolved and waited for too: that notification
// comes from a later tick, once that one's steps were all carried out,
// and alertd_escalations_total counted each (it counts a step before it
// is done).
func escalationProbe(t *testing.T, a *testAlertd, name string) {
	t.Helper()
	postAlertJSON(t, a, `{"labels":{"alertname":"`+name+`","severity":"probe"}}`)
	probe := func(ok func(incidentWithEscalation) bool, msg string) incidentWithEscalation {
		t.Helper()
		var got incidentWithEscalation
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for _, in := range escalatedIncidents(t, a) {
				if in.Escalation != nil && in.Escalation.Policy == "probe" && in.GroupLabels["alertname"] == model.LabelValue(name) {
					if assert.Truef(c, ok(in), "%+v", in) {
						got = in
					}
					return
				}
			}
			assert.Fail(c, "no probe incident")
		}, 30*time.Second, 10*time.Millisecond, msg)
		return got
	}
	in := probe(settled(1), "the probe was never escalated")
	code, body := postIncident(t, a, in.ID, "resolve", `{"by":"probe"}`)
	require.Equal(t, http.StatusOK, code, body)
	resolved := func(in incidentWithEscalation) bool {
		return in.Escalation.Status == "resolved" && in.Escalation.Pending == 0
	}
	probe(resolved, "the probe's resolution was never carried out")
}

// escalated returns alertd_escalations_total of the pager policy's level.
func escalated(t *testing.T, a *testAlertd, level int) float64 {
	t.Helper()
	n, ok := metric(t, a.Registry(), "alertd_escalations_total", "policy", "pager", "level", strconv.Itoa(level))
	require.True(t, ok)
	return n
}

// postIncident posts to an incident's escalation endpoint and returns the
// status and body.
func postIncident(t *testing.T, a *testAlertd, id, action, body string) (int, string) {
	t.Helper()
	return post(t, a.URL+"/api/v1/incidents/"+id+"/"+action, "application/json", body)
}

// Must show: alertd stops after level 1 was notified and before level 2 is
// due, and restarts on the same storage. Level 2 is notified once, at its
// time, and level 1 not again; an acknowledgement stops the chain before
// level 3; the resolution reaches both levels notified, acknowledged as the
// incident is.
func TestEscalationRestartMidChain(t *testing.T) {
	t.Parallel()
	h := newEscalationHooks(t)
	clock := &testClock{}
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", h.config(probePolicy))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	first := start(t, dir, o, logs)

	labels := model.LabelSet{"alertname": "ModelDown", "severity": "critical"}
	alert := fmt.Sprintf(`{"labels":{"alertname":"ModelDown","severity":"critical"},"startsAt":%q}`, clock.Now().UTC().Format(time.RFC3339Nano))
	postAlertJSON(t, first, alert)
	waitEscalationEvents(t, h.l1, "trigger")
	p := h.l1.all()[0]
	require.Equal(t, "firing", p.Status)
	require.Equal(t, "l1", p.Receiver)
	esc := map[string]string{}
	for _, k := range []string{"incident", "policy", "event", "level", "step", "iteration"} {
		esc[k] = p.CommonAnnotations[k]
	}
	require.Equal(t, map[string]string{"incident": p.CommonAnnotations["incident"], "policy": "pager", "event": "trigger", "level": "1", "step": "0", "iteration": "0"}, esc)
	require.Len(t, p.Alerts, 1)
	require.Equal(t, labelsMap(labels), p.Alerts[0].Labels)
	// Stop once the notification is recorded as done.
	in := waitIncident(t, first, settled(1), "level 1 never settled")
	require.Equal(t, p.CommonAnnotations["incident"], in.ID)
	require.Equal(t, "pager", in.Escalation.Policy)
	require.Equal(t, "active", in.Escalation.Status)
	require.Equal(t, 2, in.Escalation.Step, "next: notify l2")
	require.Equal(t, []string{"l1"}, in.Escalation.Notified)
	dueL2 := *in.Escalation.NextStepAt
	require.WithinDuration(t, in.OpenedAt.Add(10*time.Minute), dueL2, 2*time.Second)
	require.Empty(t, h.l2.all())
	require.NoError(t, first.Stop())

	// Restart 5 minutes later, before level 2 is due. Prometheus posts
	// the alert again.
	clock.skip(5 * time.Minute)
	a := start(t, dir, o, logs)
	postAlertJSON(t, a, alert)
	in = waitIncident(t, a, settled(1), "the escalation was not restored")
	require.Equal(t, dueL2, *in.Escalation.NextStepAt, "the due time is stored, not recomputed")
	escalationProbe(t, a, "AfterRestart")
	require.Zero(t, escalated(t, a, 1), "level 1 notified again after the restart")
	require.Zero(t, escalated(t, a, 2), "level 2 notified before it was due")
	require.Empty(t, h.l2.all(), "level 2 notified before it was due")
	require.Len(t, h.l1.all(), 1, "level 1 notified again after the restart")

	// Level 2 falls due: notified once; level 1 not again.
	clock.skip(5*time.Minute + time.Second)
	waitEscalationEvents(t, h.l2, "escalate")
	p = h.l2.all()[0]
	require.Equal(t, "2", p.CommonAnnotations["level"])
	require.Equal(t, in.ID, p.CommonAnnotations["incident"])
	in = waitIncident(t, a, settled(2), "level 2 never settled")
	require.Equal(t, []string{"l1", "l2"}, in.Escalation.Notified)
	escalationProbe(t, a, "AfterLevel2")
	require.Zero(t, escalated(t, a, 1), "level 1 notified again")
	require.Equal(t, 1.0, escalated(t, a, 2), "level 2 notified twice")
	require.Len(t, h.l2.all(), 1, "level 2 notified twice")
	require.Len(t, h.l1.all(), 1, "level 1 notified again")
	n, _ := metric(t, a.Registry(), "alertd_escalation_incidents", "state", "active")
	require.Equal(t, 1.0, n)

	// Acknowledged: both levels are told, and level 3 never comes.
	code, body := postIncident(t, a, in.ID, "acknowledge", `{"by":"alice","note":"on it"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"status":"acknowledged"`)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge")
	waitEscalationEvents(t, h.l2, "escalate", "acknowledge")
	in = waitIncident(t, a, func(in incidentWithEscalation) bool { return in.Escalation.Pending == 0 }, "")
	require.Equal(t, "acknowledged", in.Escalation.Status)
	require.Equal(t, "alice", in.Escalation.AcknowledgedBy)
	require.Nil(t, in.Escalation.NextStepAt)
	require.True(t, in.Acknowledged, "the ledger has the incident acknowledged")
	n, _ = metric(t, a.Registry(), "alertd_acknowledgements_total")
	require.Equal(t, 1.0, n)
	n, _ = metric(t, a.Registry(), "alertd_escalation_incidents", "state", "acknowledged")
	require.Equal(t, 1.0, n)
	clock.skip(15 * time.Minute)
	escalationProbe(t, a, "WhileAcknowledged")
	require.Zero(t, escalated(t, a, 3), "level 3 was notified while acknowledged")
	require.Empty(t, h.l3.all(), "level 3 was notified while acknowledged")

	// The alert resolves: the incident closes, and both levels notified
	// hear of it though it is acknowledged.
	postAlertJSON(t, a, fmt.Sprintf(`{"labels":{"alertname":"ModelDown","severity":"critical"},"startsAt":%q,"endsAt":%q}`,
		clock.Now().Add(-30*time.Minute).UTC().Format(time.RFC3339Nano), clock.Now().UTC().Format(time.RFC3339Nano)))
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "resolve")
	waitEscalationEvents(t, h.l2, "escalate", "acknowledge", "resolve")
	in = waitIncident(t, a, func(in incidentWithEscalation) bool { return in.Escalation.Status == "resolved" }, "never resolved")
	require.Equal(t, "closed", in.State)
	require.Empty(t, h.l3.all())
	h.checkWire(t)

	// Each step is in the alert's history.
	al := waitAlert(t, a, labels)
	var escalations []string
	for _, d := range al.History {
		if d.Stage == "escalate" {
			escalations = append(escalations, d.Action+": "+d.Reason)
		}
	}
	require.Equal(t, []string{
		`notified: sent to l2 (escalate, level 2): step 3 of policy "pager": level 2`,
		"acknowledged: incident " + in.ID + " acknowledged by alice: on it",
		"notified: sent to l1, l2 (acknowledge, level 2): acknowledged by alice",
		"resolved: incident " + in.ID + " closed: its alerts resolved; escalation stopped",
		"notified: sent to l1, l2 (resolve, level 2): resolved",
	}, escalations)
}

func labelsMap(ls model.LabelSet) map[string]string {
	out := map[string]string{}
	for k, v := range ls {
		out[string(k)] = string(v)
	}
	return out
}

// The incident endpoints: an acknowledgement with a timeout, snooze,
// unacknowledge, a manual resolve, an alert's acknowledgement
// acknowledging its incident, and what they refuse.
func TestEscalationAPI(t *testing.T) {
	t.Parallel()
	h := newEscalationHooks(t)
	clock := &testClock{}
	a := h.start(t, "    ack_timeout: 30m"+probePolicy, clock.options())

	postAlertJSON(t, a, `{"labels":{"alertname":"Drift","severity":"critical"}}`)
	waitEscalationEvents(t, h.l1, "trigger")
	in := waitIncident(t, a, settled(1), "never escalated")
	id := in.ID

	for _, tc := range []struct{ action, body, want string }{
		{"acknowledge", `{"by":"a","bogus":1}`, `couldn't parse the request: json: unknown field "bogus"`},
		{"acknowledge", `{"until":"2030-01-01T00:00:00Z"}`, "until and duration are for snoozes"},
		{"unacknowledge", ``, "incident " + id + ": incident is not acknowledged"},
		{"snooze", `{}`, "incident " + id + ": want one of until and duration"},
		{"snooze", `{"duration":"5x"}`, "incident " + id + `: invalid duration: cannot parse "5x" to a valid duration`},
		{"snooze", `{"duration":"1m","until":"2030-01-01T00:00:00Z"}`, "incident " + id + ": want one of until and duration, got both"},
		{"snooze", `{"until":"2000-01-01T00:00:00Z"}`, "incident " + id + ": snooze until 2000-01-01T00:00:00Z: not in the future"},
	} {
		code, body := postIncident(t, a, id, tc.action, tc.body)
		require.NotEqual(t, http.StatusOK, code, "%s %s", tc.action, tc.body)
		require.Equal(t, tc.want, strings.TrimSpace(body), "%s %s", tc.action, tc.body)
	}
	code, body := postIncident(t, a, "nope", "acknowledge", "")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, `no incident "nope"`, strings.TrimSpace(body))

	// Acknowledging an alert acknowledges its incident; the ack times out
	// after 30m and the chain starts over.
	fp := model.LabelSet{"alertname": "Drift", "severity": "critical"}.Fingerprint().String()
	code, body = post(t, a.URL+"/api/v1/alerts/"+fp+"/acknowledge", "application/json", `{"by":"bob"}`)
	require.Equal(t, http.StatusOK, code, body)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge")
	in = waitIncident(t, a, func(in incidentWithEscalation) bool { return in.Escalation.Status == "acknowledged" }, "not acknowledged")
	require.Equal(t, "bob", in.Escalation.AcknowledgedBy)
	require.WithinDuration(t, in.Escalation.AcknowledgedAt.Add(30*time.Minute), *in.Escalation.AcknowledgedUntil, time.Millisecond)
	clock.skip(30*time.Minute + time.Second)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "trigger")
	in = waitIncident(t, a, settled(1), "not re-triggered")
	require.Equal(t, "active", in.Escalation.Status)
	require.Equal(t, 1, in.Escalation.Iteration)

	// Snoozed for an hour: level 2, due 10m after the re-trigger, waits;
	// then the chain starts over.
	code, body = postIncident(t, a, id, "snooze", `{"duration":"1h","by":"carol"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"status":"snoozed"`)
	require.Contains(t, body, `"snoozedBy":"carol"`)
	n, _ := metric(t, a.Registry(), "alertd_escalation_incidents", "state", "snoozed")
	require.Equal(t, 1.0, n)
	clock.skip(30 * time.Minute)
	escalationProbe(t, a, "WhileSnoozed")
	require.Zero(t, escalated(t, a, 2), "level 2 notified while snoozed")
	require.Empty(t, h.l2.all(), "level 2 notified while snoozed")
	clock.skip(31 * time.Minute)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "trigger", "trigger")

	// Acknowledged and taken back: the chain starts over at once.
	code, body = postIncident(t, a, id, "acknowledge", `{"by":"dave"}`)
	require.Equal(t, http.StatusOK, code, body)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "trigger", "trigger", "acknowledge")
	code, body = postIncident(t, a, id, "unacknowledge", `{"by":"dave"}`)
	require.Equal(t, http.StatusOK, code, body)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "trigger", "trigger", "acknowledge", "trigger")
	clock.skip(10*time.Minute + time.Second)
	waitEscalationEvents(t, h.l2, "escalate")

	// Resolved by hand while the alert fires: the chain stops, both
	// levels are told, and the incident stays open in the ledger.
	code, body = postIncident(t, a, id, "resolve", `{"by":"erin","note":"fixed the feed"}`)
	require.Equal(t, http.StatusOK, code, body)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "trigger", "trigger", "acknowledge", "trigger", "resolve")
	waitEscalationEvents(t, h.l2, "escalate", "resolve")
	in = waitIncident(t, a, func(in incidentWithEscalation) bool { return in.Escalation.Pending == 0 }, "")
	require.Equal(t, "resolved", in.Escalation.Status)
	require.Equal(t, "erin", in.Escalation.ResolvedBy)
	require.Equal(t, "open", in.State)
	clock.skip(time.Hour)
	escalationProbe(t, a, "AfterResolve")
	require.Zero(t, escalated(t, a, 3), "level 3 notified after the resolve")
	require.Empty(t, h.l3.all(), "level 3 notified after the resolve")
	code, body = postIncident(t, a, id, "acknowledge", ``)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "incident "+id+": incident is resolved", strings.TrimSpace(body))
	al := waitAlert(t, a, model.LabelSet{"alertname": "Drift", "severity": "critical"})
	var resolvedBy []string
	for _, d := range al.History {
		if d.Stage == "escalate" && d.Action == "resolved" {
			resolvedBy = append(resolvedBy, d.Reason)
		}
	}
	require.Equal(t, []string{"incident " + id + " resolved by erin: fixed the feed"}, resolvedBy)
	n, _ = metric(t, a.Registry(), "alertd_acknowledgements_total")
	require.Equal(t, 2.0, n)
	h.checkWire(t)
}

// An incident no policy matches is not escalated, and says so.
func TestEscalationUnmatched(t *testing.T) {
	t.Parallel()
	h := newEscalationHooks(t)
	a := h.start(t, probePolicy, nil)
	postAlertJSON(t, a, `{"labels":{"alertname":"Minor","severity":"warning"}}`)
	in := waitIncident(t, a, func(in incidentWithEscalation) bool { return true }, "")
	require.Empty(t, in.Escalation.Policy)
	al := waitFor(t, a, model.LabelSet{"alertname": "Minor", "severity": "warning"}, func(al alertJSON) bool {
		return lastOf(al.History, "escalate").Action == "unmatched"
	}, "")
	require.Equal(t, "no escalation policy matches incident "+in.ID, lastOf(al.History, "escalate").Reason)
	escalationProbe(t, a, "AfterUnmatched")
	require.Zero(t, escalated(t, a, 1), "an incident no policy matches was escalated")
	require.Empty(t, h.l1.all(), "an incident no policy matches was escalated")
	n, _ := metric(t, a.Registry(), "alertd_escalation_incidents", "state", "active")
	require.Equal(t, 0.0, n)
}

// On the wall clock, the resolution of an acknowledged incident reaches
// every level notified as a resolved notification.
func TestEscalationResolveWhileAcknowledged(t *testing.T) {
	t.Parallel()
	h := newEscalationHooks(t)
	a := h.start(t, "", nil)
	postAlertJSON(t, a, `{"labels":{"alertname":"Latency","severity":"critical"}}`)
	waitEscalationEvents(t, h.l1, "trigger")
	in := waitIncident(t, a, settled(1), "never escalated")
	code, body := postIncident(t, a, in.ID, "acknowledge", `{"by":"alice"}`)
	require.Equal(t, http.StatusOK, code, body)
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge")
	postAlertJSON(t, a, fmt.Sprintf(`{"labels":{"alertname":"Latency","severity":"critical"},"endsAt":%q}`, time.Now().UTC().Format(time.RFC3339Nano)))
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge", "resolve")
	got := h.l1.all()
	require.Equal(t, []string{"firing", "firing", "resolved"}, []string{got[0].Status, got[1].Status, got[2].Status})
	require.Equal(t, "resolved", got[2].Alerts[0].Status)
	h.checkWire(t)
}

// An incident's acknowledgement acknowledges that incident in the ledger,
// not the others its alerts are in, and survives a replay of the ledger.
func TestLedgerIncidentAcknowledgement(t *testing.T) {
	now := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	clock := &settableClock{t: now}
	dir := t.TempDir()
	l, _ := openTestLedger(t, dir, clock, nil)
	ls := model.LabelSet{"alertname": "Disk"}
	fp := ls.Fingerprint().String()
	script(t, l,
		Event{Time: now, Event: eventFired, Fingerprint: fp, Labels: ls, StartsAt: now},
		Event{Time: now, Event: eventGrouped, Fingerprint: fp, Incident: "a", GroupKey: "ka"},
		Event{Time: now, Event: eventGrouped, Fingerprint: fp, Incident: "b", GroupKey: "kb"},
	)
	l.acknowledgeIncident(now.Add(time.Minute), l.incident("a"), func(string) *Alert { return nil }, "alice", "on it")
	l.commit()
	check := func(l *ledger) {
		t.Helper()
		require.True(t, l.incident("a").Acknowledged)
		require.Equal(t, "alice", l.incident("a").AcknowledgedBy)
		require.False(t, l.incident("b").Acknowledged)
	}
	check(l)
	require.NoError(t, l.close())
	l, _ = openTestLedger(t, dir, clock, nil)
	defer l.close()
	check(l)
	acks := 0
	require.NoError(t, l.read(now, now.Add(time.Hour), func(e *Event) {
		if e.Event == eventAcknowledged {
			acks++
			require.Equal(t, "a", e.Incident)
			require.Equal(t, ls, e.Labels)
		}
	}))
	require.Equal(t, 1, acks)
}

// A silence that begins while an alert fires quiets the chain of its
// incident from its start, whether it was created then or ahead of its
// start (pending until then): the alert is suppressed by the silence, and
// the level due in it is not notified (escalate: suppressed in the
// alert's history). When the silence ends while the alert still fires,
// the alert is released and the chain goes on with the next level.
func TestEscalationSilenceBeginsWhileFiring(t *testing.T) {
	t.Parallel()
	for _, ahead := range []bool{false, true} {
		t.Run(fmt.Sprintf("ahead=%v", ahead), func(t *testing.T) {
			t.Parallel()
			h := newEscalationHooks(t)
			clock := &testClock{}
			a := h.start(t, "", clock.options())
			labels := model.LabelSet{"alertname": "ModelDown", "severity": "critical"}
			start := clock.Now()
			ts := func(d time.Duration) string { return start.Add(d).UTC().Format(time.RFC3339Nano) }
			postAlertJSON(t, a, fmt.Sprintf(`{"labels":{"alertname":"ModelDown","severity":"critical"},"startsAt":%q}`, ts(0)))
			waitEscalationEvents(t, h.l1, "trigger")
			in := waitIncident(t, a, settled(1), "level 1 never settled")

			// A silence from 5m to 15m; level 2 is due at 10m.
			silence := func(startsAt string) {
				code, body := post(t, a.URL+"/api/v1/silences", "application/json",
					fmt.Sprintf(`{"matchers":["alertname=\"ModelDown\""],%s"endsAt":%q,"createdBy":"bob"}`, startsAt, ts(15*time.Minute)))
				require.Equal(t, http.StatusOK, code, body)
			}
			if ahead {
				silence(fmt.Sprintf(`"startsAt":%q,`, ts(5*time.Minute)))
				require.Equal(t, "firing", waitAlert(t, a, labels).State, "the silence has not begun")
				clock.skip(5 * time.Minute)
			} else {
				clock.skip(5 * time.Minute)
				silence("")
			}
			al := waitFor(t, a, labels, inState("suppressed"), "the silence did not suppress the firing alert as it began")
			require.Equal(t, "suppressed", lastOf(al.History, "silence").Action)
			require.Contains(t, lastOf(al.History, "silence").Reason, "created by bob")

			clock.skip(5*time.Minute + time.Second)
			waitIncident(t, a, settled(2), "level 2 never fell due")
			al = waitFor(t, a, labels, func(al alertJSON) bool { return lastOf(al.History, "escalate").Action == "suppressed" },
				"level 2 was not suppressed")
			require.Equal(t, "not sent to l2 (escalate, level 2): every alert of incident "+in.ID+" is suppressed",
				lastOf(al.History, "escalate").Reason)
			require.Empty(t, h.l2.all(), "level 2 was notified in the silence")

			// The silence ends at 15m: released, and level 3 at 20m.
			clock.skip(5 * time.Minute)
			al = waitFor(t, a, labels, inState("firing"), "not released when the silence ended")
			require.Equal(t, "released", lastOf(al.History, "pipeline").Action)
			clock.skip(5 * time.Minute)
			waitEscalationEvents(t, h.l3, "escalate")
			require.Empty(t, h.l2.all())
			require.Equal(t, []string{"trigger"}, events(h.l1))
			h.checkWire(t)
		})
	}
}

// alertd_escalations_total has a series at 0 for each level of each
// configured policy. A reload that removes a policy or a level deletes its
// series, unless a notification of it is still pending: the incident of a
// removed policy stops escalating, but its level 1, which the outbox
// refused, is retried and counted, and its series goes once it is sent.
// Re-adding the policy brings its series back at 0.
func TestEscalationSeriesFollowReloads(t *testing.T) {
	t.Parallel()
	h := newEscalationHooks(t)
	policies := map[string]string{
		"pager": pagerPolicy,
		"other two levels": `
  - name: other
    matchers: ['severity="warning"']
    steps:
      - notify: [l3]
      - wait: 10m
      - notify: [l2]`,
		"other one level": `
  - name: other
    matchers: ['severity="warning"']
    steps:
      - notify: [l3]`,
	}
	config := func(names ...string) string {
		c := h.urls(escalationRoutes + "escalation_policies:")
		for _, n := range names {
			c += policies[n]
		}
		return c + "\n"
	}
	clock := &testClock{}
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", config("pager", "other two levels"))
	o, logs := newOptions(t, dir)
	o.Now = clock.Now
	// The outbox refuses the notifications to l1, as on a full disk,
	// while refuse is set.
	var (
		refuse  atomic.Bool
		refused atomic.Int64
	)
	a := startWith(t, dir, o, logs, func(a *Alertd) {
		send := a.escalation.send
		a.escalation.send = func(ctx context.Context, receiver, key string, alerts []*amalert.Alert, extra map[string]string) error {
			if receiver == "l1" && refuse.Load() {
				refused.Add(1)
				return errNoSpace
			}
			return send(ctx, receiver, key, alerts, extra)
		}
	})
	reload := func(names ...string) {
		t.Helper()
		writeFile(t, dir, "alertd.yml", config(names...))
		code, body := post(t, a.URL+"/-/reload", "", "")
		require.Equal(t, http.StatusOK, code, body)
	}
	requireSeries := func(want map[string]float64) {
		t.Helper()
		for _, s := range []string{"pager/1", "pager/2", "pager/3", "other/1", "other/2"} {
			policy, level, _ := strings.Cut(s, "/")
			v, ok := metric(t, a.Registry(), "alertd_escalations_total", "policy", policy, "level", level)
			w, exposed := want[s]
			require.Equal(t, exposed, ok, "alertd_escalations_total{policy=%q,level=%q} exposed", policy, level)
			require.Equal(t, w, v, "alertd_escalations_total{policy=%q,level=%q}", policy, level)
		}
	}
	requireSeries(map[string]float64{"pager/1": 0, "pager/2": 0, "pager/3": 0, "other/1": 0, "other/2": 0})

	// An incident of pager: its level 1 is refused, and stays pending.
	refuse.Store(true)
	postAlertJSON(t, a, fmt.Sprintf(`{"labels":{"alertname":"ModelDown","severity":"critical"},"startsAt":%q}`, clock.Now().UTC().Format(time.RFC3339Nano)))
	require.Eventually(t, func() bool { return refused.Load() > 0 }, 30*time.Second, 10*time.Millisecond, "level 1 was never sent")
	in := waitIncident(t, a, func(in incidentWithEscalation) bool { return in.Escalation.Pending == 1 }, "level 1 is not pending")
	require.Equal(t, "pager", in.Escalation.Policy)

	// pager goes, and other's level 2: their series go, but for pager's
	// level 1, still pending.
	reload("other one level")
	requireSeries(map[string]float64{"pager/1": 0, "other/1": 0})

	// The outbox takes level 1 at its retry: it is sent, counted, and its
	// series goes with it.
	refuse.Store(false)
	clock.skip(11 * time.Second)
	waitEscalationEvents(t, h.l1, "trigger")
	waitIncident(t, a, func(in incidentWithEscalation) bool { return in.Escalation.Pending == 0 }, "level 1 was never done")
	requireSeries(map[string]float64{"other/1": 0})

	// Added again, pager and other's level 2 start at 0.
	reload("pager", "other two levels")
	requireSeries(map[string]float64{"pager/1": 0, "pager/2": 0, "pager/3": 0, "other/1": 0, "other/2": 0})
	h.checkWire(t)
}

// A batch of new incidents is one change of the escalation state per
// incident opened and per trigger carried out. The loop writes the state
// at most once per interval, not at each change: with the interval longer
// than the test, the batch's n chains cost at most the loop's first write,
// and the shutdown writes the rest, so a restart resumes every chain where
// it was, each due time as stored.
func TestEscalationBatchWritesStateOnce(t *testing.T) {
	t.Parallel()
	const n = 300
	h := newEscalationHooks(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", h.config(""))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	var writes atomic.Int64
	first := startWith(t, dir, o, logs, func(a *Alertd) {
		a.escalation.saveInterval = time.Hour
		f := a.escalation.file
		write := f.write
		f.write = func(path string, w func(io.Writer) error) error {
			writes.Add(1)
			return write(path, w)
		}
	})
	alerts := make([]string, n)
	for i := range alerts {
		alerts[i] = fmt.Sprintf(`{"labels":{"alertname":"Batch%03d","severity":"critical"}}`, i)
	}
	postAlertJSON(t, first, strings.Join(alerts, ","))
	require.Eventually(t, func() bool { return len(h.l1.all()) == n }, 60*time.Second, 10*time.Millisecond, "every incident's trigger")
	due := map[string]time.Time{}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		is := escalatedIncidents(t, first)
		if !assert.Len(c, is, n) {
			return
		}
		for _, in := range is {
			if assert.NotNil(c, in.Escalation) && assert.True(c, settled(1)(in), "%+v", in.Escalation) {
				due[in.ID] = *in.Escalation.NextStepAt
			}
		}
	}, 30*time.Second, 10*time.Millisecond, "every chain settled at level 1")
	require.LessOrEqual(t, writes.Load(), int64(1), "the batch's changes wrote escalation.json %d times", writes.Load())
	require.NoError(t, first.Stop())
	require.Equal(t, int64(2), writes.Load(), "the shutdown writes what the loop did not")

	a := start(t, dir, o, logs)
	is := escalatedIncidents(t, a)
	require.Len(t, is, n)
	for _, in := range is {
		require.NotNil(t, in.Escalation, in.ID)
		require.Equal(t, []string{"l1"}, in.Escalation.Notified, in.ID)
		require.Equal(t, due[in.ID], *in.Escalation.NextStepAt, "%s: the due time is stored, not recomputed", in.ID)
	}
	require.Never(t, func() bool { return len(h.l1.all()) > n }, time.Second, 20*time.Millisecond, "a trigger sent again")
}

// The escalation loop saves at every pass: a pass that changed nothing
// since the last write neither encodes nor writes the state, an
// operator's change is written before it returns, and a restart finds
// the state as last changed.
func TestEscalationUnchangedStateNotEncoded(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	var writes, encodings int
	newX := func() *escalator {
		x, err := newEscalator(dir, prometheus.NewRegistry(), promslog.NewNopLogger(), func() time.Time { return now })
		require.NoError(t, err)
		x.saveInterval = 0
		require.NoError(t, x.setPolicies([]escalate.Policy{{Name: "pager",
			Steps: []escalate.Step{{Notify: []string{"l1"}}, {Wait: time.Hour}, {Notify: []string{"l2"}}}}}))
		write, marshal := x.file.write, x.file.marshal
		x.file.write = func(path string, w func(io.Writer) error) error { writes++; return write(path, w) }
		x.file.marshal = func(v any) ([]byte, error) { encodings++; return marshal(v) }
		return x
	}
	x := newX()
	list := []*incident{{ID: "i1", Firing: []string{"a"}}, {ID: "i2", Firing: []string{"b"}}}
	subject := func(*incident) escalate.Subject { return escalate.Subject{} }
	pass := func(x *escalator) []escalate.Effect {
		x.sync(now, list, subject)
		efs := x.tick(now)
		for _, ef := range efs {
			x.done(ef.Key)
		}
		x.trySave()
		return efs
	}
	require.Len(t, pass(x), 2, "the triggers")
	require.Positive(t, writes)
	w, e := writes, encodings
	for range 10 {
		now = now.Add(time.Second)
		require.Empty(t, pass(x))
	}
	require.Equal(t, w, writes, "nothing changed: nothing written")
	require.Equal(t, e, encodings, "nothing changed: nothing encoded")

	require.NoError(t, x.escalate(now, "i1", "test"))
	require.Equal(t, w+1, writes, "an operator's change is written before it returns")
	x.save()
	require.Equal(t, w+1, writes, "the shutdown's save has nothing left to write")

	y := newX()
	require.Equal(t, x.engine.State(), y.engine.State())
	w, e = writes, encodings
	y.trySave()
	require.Equal(t, w, writes)
	require.Equal(t, e, encodings, "the state read at start is not encoded again")
	require.Len(t, pass(y), 1, "the escalation of i1")
	require.Greater(t, writes, w, "a change after the restart is written")
}
