package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/notify/notifytest"
	"github.com/modelmon/modelmon/internal/notify/slack"
)

// classified is an alert as the classify stage leaves it.
func classified(name, model_ string, startsAt time.Time) *alert.Alert {
	return alert.New(model.Alert{
		Labels: model.LabelSet{"alertname": model.LabelValue(name), "model": model.LabelValue(model_), "severity": "page"},
		Annotations: model.LabelSet{
			"summary": "Feature amount drifted", "category": "data_quality", "priority": "high", "action": "investigate",
			"false_positive_probability": "0.120", "explanation": "PSI 0.41 > 0.2 for 3 windows", "value": "0.41",
			"runbook_url": "https://runbooks.example/drift", "dashboard_url": "https://grafana.example/d/drift",
		},
		StartsAt: startsAt, EndsAt: startsAt.Add(24 * time.Hour),
		GeneratorURL: "http://alertd.example/graph?g0.expr=psi",
	}, time.Time{}, false)
}

// blockTexts returns the texts of a Slack message's blocks by type, and
// its buttons' action ids and values.
func blockTexts(t *testing.T, blocks []map[string]any) (texts map[string][]string, buttons map[string]string) {
	t.Helper()
	texts, buttons = map[string][]string{}, map[string]string{}
	text := func(o any) string {
		m, _ := o.(map[string]any)
		s, _ := m["text"].(string)
		return s
	}
	for _, b := range blocks {
		typ := b["type"].(string)
		if s := text(b["text"]); s != "" {
			texts[typ] = append(texts[typ], s)
		}
		for _, f := range asSlice(b["fields"]) {
			texts[typ+".fields"] = append(texts[typ+".fields"], text(f))
		}
		for _, e := range asSlice(b["elements"]) {
			m := e.(map[string]any)
			if m["type"] == "button" {
				buttons[m["action_id"].(string)] = m["value"].(string)
			} else {
				texts[typ] = append(texts[typ], text(m))
			}
		}
	}
	return texts, buttons
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func TestSlackWebAPI(t *testing.T) {
	sl := notifytest.NewSlack(t)
	cfg := load(t, `
route:
  receiver: team
  group_by: [alertname, model]
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: team
    slack_configs:
      - api_url: "{{URL}}/api"
        token: xoxb-t0ken
        channel: "ml-alerts"
        signing_secret: s1gn`, sl.URL)
	externalURL, err := url.Parse("http://alertd.example:9109")
	require.NoError(t, err)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		// Slack rate-limits the first post: it comes again after Retry-After.
		sl.Fail(notifytest.Reply{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "7"}})
		reg := prometheus.NewRegistry()
		n := start(t, Options{Config: cfg, ExternalURL: externalURL, StoragePath: dir, Registerer: reg})
		t0 := time.Now()
		a := classified("Drift", "fraud", t0)
		require.NoError(t, n.Put(a))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Empty(t, sl.Calls(), "rate limited")
		time.Sleep(7 * time.Second)
		synctest.Wait()
		calls := sl.Calls()
		require.Len(t, calls, 1)
		c := calls[0]
		require.Equal(t, "chat.postMessage", c.Method)
		require.Equal(t, "Bearer xoxb-t0ken", c.Token)
		require.Equal(t, "ml-alerts", c.Channel)
		require.Equal(t, "[FIRING:1] Drift model=fraud", c.Text)
		require.Empty(t, c.ThreadTS)
		texts, buttons := blockTexts(t, c.Blocks)
		require.Equal(t, []string{"[FIRING:1] Drift model=fraud"}, texts["header"])
		require.Equal(t, []string{
			"*Status*\nfiring (1 firing, 0 resolved)", "*Priority*\nhigh", "*Category*\ndata_quality", "*Value*\n0.41",
			"*Action*\ninvestigate", "*False-positive probability*\n0.120",
		}, texts["section.fields"])
		require.Equal(t, []string{"Feature amount drifted", "*Why it is anomalous*\nPSI 0.41 &gt; 0.2 for 3 windows"}, texts["section"])
		require.Equal(t, []string{"<https://grafana.example/d/drift|Dashboard> · <https://runbooks.example/drift|Runbook> · <http://alertd.example:9109/api/v1/alerts?fingerprint=" +
			a.Fingerprint().String() + "|Alert in alertd>"}, texts["context"])
		require.Len(t, buttons, 3)
		var v slack.ButtonValue
		require.NoError(t, json.Unmarshal([]byte(buttons[slack.ActionAcknowledge]), &v))
		require.Equal(t, slack.ButtonValue{GroupKey: `{}:{alertname="Drift", model="fraud"}`, Receiver: "team", Fingerprints: []string{a.Fingerprint().String()}}, v)
		require.Equal(t, buttons[slack.ActionAcknowledge], buttons[slack.ActionResolve])
		require.Equal(t, buttons[slack.ActionAcknowledge], buttons[slack.ActionFalsePositive])
		require.Equal(t, 1.0, value(t, reg, "alertd_outbox_delivery_failures_total", "receiver", "team", "integration", "slack", "reason", "rate_limited"))

		// A second alert of the incident: the message is updated and the
		// change goes in its thread.
		b := classified("Drift", "fraud", time.Now())
		bl := b.Labels.Clone()
		bl["feature"] = "amount"
		b = alert.New(model.Alert{Labels: bl, Annotations: b.Annotations, StartsAt: b.StartsAt, EndsAt: b.EndsAt}, time.Time{}, false)
		require.NoError(t, n.Put(b))
		time.Sleep(time.Minute)
		synctest.Wait()
		calls = sl.Calls()[1:]
		require.Len(t, calls, 2)
		require.Equal(t, "chat.update", calls[0].Method)
		require.Equal(t, "Cml-alerts", calls[0].Channel, "the channel id chat.postMessage returned")
		require.Equal(t, "1000.000001", calls[0].TS)
		require.Equal(t, "[FIRING:2] Drift model=fraud", calls[0].Text)
		require.Equal(t, "chat.postMessage", calls[1].Method)
		require.Equal(t, "1000.000001", calls[1].ThreadTS)
		require.Equal(t, "Update: 2 firing, 0 resolved (Drift firing).", calls[1].Text)

		// alertd restarts; the resolve still goes in the same thread.
		n.Stop()
		// Its sources send the alerts again, resolved; put before Run so
		// the dispatcher loads both at once.
		n, err = New(Options{Config: cfg, ExternalURL: externalURL, StoragePath: dir})
		require.NoError(t, err)
		t.Cleanup(n.Stop)
		require.NoError(t, n.Put(alert.New(model.Alert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: time.Now()}, time.Time{}, false),
			alert.New(model.Alert{Labels: b.Labels, Annotations: b.Annotations, StartsAt: b.StartsAt, EndsAt: time.Now()}, time.Time{}, false)))
		n.Run()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		calls = sl.Calls()[3:]
		require.Len(t, calls, 2)
		require.Equal(t, "chat.update", calls[0].Method)
		require.Equal(t, "1000.000001", calls[0].TS)
		require.Equal(t, "[RESOLVED:0] Drift model=fraud", calls[0].Text)
		_, buttons = blockTexts(t, calls[0].Blocks)
		require.Empty(t, buttons, "a resolved incident has no buttons")
		require.Equal(t, "1000.000001", calls[1].ThreadTS)
		require.Equal(t, "Resolved: 2 alerts resolved.", calls[1].Text)

		// It fires again later: a new incident, a new message.
		require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		calls = sl.Calls()[5:]
		require.Len(t, calls, 1)
		require.Equal(t, "chat.postMessage", calls[0].Method)
		require.Empty(t, calls[0].ThreadTS)
	})
}

func TestSlackIncomingWebhook(t *testing.T) {
	sl := notifytest.NewSlack(t)
	cfg := load(t, `
route:
  receiver: team
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: team
    slack_configs:
      - webhook_url: "{{URL}}/services/T000/B000/s3cret"
        title: '{{ .CommonLabels.alertname | toUpper }} on {{ .CommonLabels.model }}'`, sl.URL)
	synctest.Test(t, func(t *testing.T) {
		sl.Fail(notifytest.Reply{Status: http.StatusInternalServerError, Body: "oops"})
		n := start(t, Options{Config: cfg})
		require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
		time.Sleep(32 * time.Second)
		synctest.Wait()
		calls := sl.Calls()
		require.Len(t, calls, 1, "a 500 is retried")
		require.Equal(t, "webhook", calls[0].Method)
		require.Equal(t, "DRIFT on fraud", calls[0].Text)
		_, buttons := blockTexts(t, calls[0].Blocks)
		require.Empty(t, buttons, "no buttons without the Web API")

		require.NoError(t, n.Put(classified("Drift", "credit", time.Now())))
		time.Sleep(time.Minute)
		synctest.Wait()
		calls = sl.Calls()
		require.Len(t, calls, 2)
		require.Empty(t, calls[1].ThreadTS, "incoming webhooks post only")
	})

	// A Slack that is down: the error names no webhook URL.
	cfg = load(t, "route: {receiver: team, group_wait: 1s}\nreceivers:\n  - name: team\n    slack_configs: [{webhook_url: \"{{URL}}/services/T/B/s3cret\"}]\n", deadURL(t))
	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: cfg})
		require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		st := n.Outbox().Stats()
		require.Equal(t, 1, st.Pending)
		require.Contains(t, st.Lanes[0].LastError, "connection refused")
		require.NotContains(t, st.Lanes[0].LastError, "s3cret")
	})
}

// Templates of the configuration's templates files, as alertmanager.yml's,
// are there for the notifications' own.
func TestTemplateFiles(t *testing.T) {
	sl := notifytest.NewSlack(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "team.tmpl"),
		[]byte(`{{ define "team.title" }}[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ len .Alerts }}){{ end }}`), 0o644))
	cfg, err := alertconfig.Load(strings.ReplaceAll(`
templates: ['*.tmpl']
route:
  receiver: team
  group_wait: 1s
receivers:
  - name: team
    slack_configs:
      - webhook_url: "{{URL}}/services/T000/B000/s3cret"
        title: '{{ template "team.title" . }}'`, "{{URL}}", sl.URL), dir)
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "*.tmpl")}, cfg.Templates, "relative to the configuration file")
	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: cfg})
		require.NoError(t, n.Put(classified("Drift", "fraud", time.Now())))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		calls := sl.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, "[FIRING] Drift (1)", calls[0].Text)
	})
}

func TestPagerDuty(t *testing.T) {
	pd := notifytest.NewPagerDuty(t)
	cfg := load(t, `
route:
  receiver: pager
  group_by: [alertname, model]
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: pager
    pagerduty_configs:
      - url: "{{URL}}"
        routing_key: R0UT1NG`, pd.URL)
	externalURL, err := url.Parse("http://alertd.example:9109")
	require.NoError(t, err)
	synctest.Test(t, func(t *testing.T) {
		pd.Fail(notifytest.Reply{Status: http.StatusInternalServerError},
			notifytest.Reply{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "20"}})
		reg := prometheus.NewRegistry()
		n := start(t, Options{Config: cfg, ExternalURL: externalURL, Registerer: reg})
		t0 := time.Now()
		a := classified("Drift", "fraud", t0)
		require.NoError(t, n.Put(a))
		time.Sleep(31 * time.Second)
		synctest.Wait()
		require.Equal(t, 2, pd.Requests(), "500 retried at once-ish, then 429")
		require.Empty(t, pd.Events())
		time.Sleep(20 * time.Second)
		synctest.Wait()
		evs := pd.Events()
		require.Len(t, evs, 1)
		groupKey := `{}:{alertname="Drift", model="fraud"}`
		e := evs[0]
		require.Equal(t, "R0UT1NG", e["routing_key"])
		require.Equal(t, "trigger", e["event_action"])
		require.Equal(t, notice.Hash(groupKey), e["dedup_key"])
		require.Equal(t, "alertd", e["client"])
		require.Equal(t, "http://alertd.example:9109", e["client_url"])
		p := e["payload"].(map[string]any)
		require.Equal(t, "[FIRING:1] Drift model=fraud: Feature amount drifted", p["summary"])
		require.Equal(t, "fraud", p["source"])
		require.Equal(t, "error", p["severity"], "priority high maps to error")
		require.Equal(t, t0.UTC().Format(time.RFC3339), p["timestamp"])
		require.Equal(t, "fraud", p["component"])
		require.Equal(t, "data_quality", p["class"])
		d := p["custom_details"].(map[string]any)
		require.Equal(t, 1.0, d["firing"])
		require.Equal(t, "high", d["priority"])
		require.Equal(t, "PSI 0.41 > 0.2 for 3 windows", d["explanation"])
		require.Equal(t, map[string]any{"alertname": "Drift", "model": "fraud"}, d["group_labels"])
		links := e["links"].([]any)
		require.Equal(t, map[string]any{"href": "http://alertd.example:9109/api/v1/alerts?fingerprint=" + a.Fingerprint().String(), "text": "Alert in alertd"}, links[1])
		require.Equal(t, map[string]any{"href": "https://runbooks.example/drift", "text": "Runbook"}, links[2])
		require.Equal(t, 1.0, value(t, reg, "alertd_outbox_delivery_failures_total", "receiver", "pager", "integration", "pagerduty", "reason", "http_5xx"))
		require.Equal(t, 1.0, value(t, reg, "alertd_outbox_delivery_failures_total", "receiver", "pager", "integration", "pagerduty", "reason", "rate_limited"))

		// Resolved: same dedup key, no payload.
		require.NoError(t, n.Put(alert.New(model.Alert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: t0, EndsAt: time.Now()}, time.Time{}, false)))
		time.Sleep(time.Minute)
		synctest.Wait()
		evs = pd.Events()
		require.Len(t, evs, 2)
		require.Equal(t, "resolve", evs[1]["event_action"])
		require.Equal(t, notice.Hash(groupKey), evs[1]["dedup_key"])
		require.NotContains(t, evs[1], "payload")

		// A 400 is not retried: it is dead-lettered, without the key.
		pd.Fail(notifytest.Reply{Status: http.StatusBadRequest, Body: `{"status":"invalid event","message":"Event object is invalid"}`})
		require.NoError(t, n.Put(classified("Drift", "credit", time.Now())))
		time.Sleep(time.Minute)
		synctest.Wait()
		dead := n.Outbox().DeadLetters()
		require.Len(t, dead, 1)
		require.Equal(t, `unexpected status code 400: {"status":"invalid event","message":"Event object is invalid"}`, dead[0].LastError)
		require.NotContains(t, string(dead[0].Payload), "R0UT1NG", "the payload stored and shown holds no secret")
	})
}

func TestSendToReceiver(t *testing.T) {
	rcv := newReceiver(t)
	pd := notifytest.NewPagerDuty(t)
	cfg := load(t, strings.ReplaceAll(`
route:
  receiver: team
receivers:
  - name: team
  - name: escalation
    webhook_configs: [{url: "{{URL}}"}]
    pagerduty_configs: [{url: "{{PD}}", routing_key: k}]`, "{{PD}}", pd.URL), rcv.URL)
	synctest.Test(t, func(t *testing.T) {
		var got notifications
		n := start(t, Options{Config: cfg, OnNotify: got.add})
		a := classified("Drift", "fraud", time.Now())
		groupKey := `{}:{alertname="Drift"}`
		extra := map[string]string{"event": "escalate", "incident": "inc1", "level": "2", "group_key": groupKey}
		ctx := context.Background()
		require.EqualError(t, n.SendToReceiver(ctx, "nobody", "k", []*alert.Alert{a}, extra), `unknown receiver "nobody"`)
		require.NoError(t, n.SendToReceiver(ctx, "escalation", "inc1/2", []*alert.Alert{a}, extra))
		synctest.Wait()
		ps := rcv.next()
		require.Len(t, ps, 1)
		require.Equal(t, groupKey, ps[0].GroupKey)
		require.Equal(t, "escalation", ps[0].Receiver)
		require.Equal(t, "firing", ps[0].Alerts[0].Status)
		require.True(t, ps[0].Alerts[0].EndsAt.IsZero())
		for k, v := range map[string]string{"event": "escalate", "incident": "inc1", "level": "2"} {
			require.Equal(t, v, ps[0].Alerts[0].Annotations[k])
		}
		require.NotContains(t, ps[0].Alerts[0].Annotations, "group_key")
		require.Equal(t, []string{"inc1/2/webhook[0]"}, rcv.idempotencyKeys())
		evs := pd.Events()
		require.Len(t, evs, 1)
		require.Equal(t, "trigger", evs[0]["event_action"])
		require.Equal(t, notice.Hash(groupKey), evs[0]["dedup_key"], "the route's incident in PagerDuty")
		require.Equal(t, "inc1", evs[0]["payload"].(map[string]any)["custom_details"].(map[string]any)["incident"])
		ns := got.get()
		require.Len(t, ns, 2)
		require.Equal(t, "escalate", ns[0].Extra["event"])

		// The same key again sends nothing; an acknowledgement does.
		require.NoError(t, n.SendToReceiver(ctx, "escalation", "inc1/2", []*alert.Alert{a}, extra))
		extra["event"] = "acknowledge"
		require.NoError(t, n.SendToReceiver(ctx, "escalation", "inc1/ack", []*alert.Alert{a}, extra))
		synctest.Wait()
		require.Len(t, rcv.next(), 1)
		evs = pd.Events()
		require.Len(t, evs, 2)
		require.Equal(t, "acknowledge", evs[1]["event_action"])
		require.Equal(t, notice.Hash(groupKey), evs[1]["dedup_key"])
		require.NotContains(t, evs[1], "payload")
	})
}

// Every event of an escalation chain reaches PagerDuty as one of the three
// event actions the Events API v2 accepts: a repeat of the chain and an
// action's approval request page (trigger) like a first notification.
func TestPagerDutyEscalationEvents(t *testing.T) {
	pd := notifytest.NewPagerDuty(t)
	cfg := load(t, `
route:
  receiver: team
receivers:
  - name: team
  - name: pager
    pagerduty_configs: [{url: "{{URL}}", routing_key: k}]`, pd.URL)
	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: cfg})
		a := classified("Drift", "fraud", time.Now())
		groupKey := `{}:{alertname="Drift"}`
		ctx := context.Background()
		for _, ev := range []string{"trigger", "escalate", "repeat", "acknowledge", "approval", "resolve"} {
			extra := map[string]string{"event": ev, "incident": "inc1", "level": "1", "group_key": groupKey}
			require.NoError(t, n.SendToReceiver(ctx, "pager", "inc1/"+ev, []*alert.Alert{a}, extra))
			synctest.Wait()
		}
		require.Empty(t, n.Outbox().DeadLetters())
		var actions []string
		for _, e := range pd.Events() {
			actions = append(actions, e["event_action"].(string))
			require.Equal(t, notice.Hash(groupKey), e["dedup_key"])
		}
		require.Equal(t, []string{"trigger", "trigger", "trigger", "acknowledge", "trigger", "resolve"}, actions)
	})
}

// A summary longer than PagerDuty's 1024 characters is cut at a
// character, not inside one: PagerDuty gets valid UTF-8 of at most 1024
// characters, ending with an ellipsis.
func TestPagerDutySummaryTruncation(t *testing.T) {
	ev := pagerDutyEvent(t, "", "fraud", func(a *alert.Alert) {
		a.Annotations["summary"] = model.LabelValue(strings.Repeat("🔥", 2000))
	})
	s := ev["payload"].(map[string]any)["summary"].(string)
	require.True(t, utf8.ValidString(s))
	require.NotContains(t, s, "\uFFFD")
	require.Equal(t, 1024, utf8.RuneCountInString(s))
	require.True(t, strings.HasPrefix(s, "[FIRING:1] Drift: 🔥🔥"), s[:40])
	require.True(t, strings.HasSuffix(s, "🔥…"))
}

// pagerDutyEvent puts one drift alert of model, changed by edit, into a
// notifier whose one receiver pages a local PagerDuty (with route's
// settings, e.g. "group_by: [model]"), and returns the one event PagerDuty
// got once the group flushed. A dead letter fails the test.
func pagerDutyEvent(t *testing.T, route, model_ string, edit func(*alert.Alert)) map[string]any {
	t.Helper()
	pd := notifytest.NewPagerDuty(t)
	cfg := load(t, `
route:
  receiver: pager
  group_wait: 1s
  `+route+`
receivers:
  - name: pager
    pagerduty_configs: [{url: "{{URL}}", routing_key: k}]`, pd.URL)
	var ev map[string]any
	synctest.Test(t, func(t *testing.T) {
		n := start(t, Options{Config: cfg})
		a := classified("Drift", model_, time.Now())
		edit(a)
		require.NoError(t, n.Put(a))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if dead := n.Outbox().DeadLetters(); len(dead) > 0 {
			t.Fatalf("dead-lettered: %s", dead[0].LastError)
		}
		evs := pd.Events()
		require.Len(t, evs, 1)
		ev = evs[0]
	})
	return ev
}

// An event larger than PagerDuty's 512 KB is refused (400) and would be
// dead-lettered: as Alertmanager does, its custom_details are replaced by
// a note saying why, so the incident still pages.
func TestPagerDutyEventSizeLimit(t *testing.T) {
	ev := pagerDutyEvent(t, "group_by: [model]", "fraud", func(a *alert.Alert) {
		a.Annotations["description"] = model.LabelValue(strings.Repeat("x", 600<<10))
		a.Annotations["explanation"] = a.Annotations["description"]
	})
	p := ev["payload"].(map[string]any)
	require.Equal(t, "[FIRING:1] Drift model=fraud: Feature amount drifted", p["summary"])
	require.Equal(t, map[string]any{"error": "Custom details have been removed because the original event exceeds the maximum size of 512kB"}, p["custom_details"])
}

// An event still over 512 KB without its custom_details (a huge
// runbook_url among the links, a huge model label in source and
// component) would be refused and dead-lettered, as Alertmanager's is:
// it goes without its links and with those fields cut to 1024
// characters, and says so.
func TestPagerDutyEventSizeLimitWithoutDetails(t *testing.T) {
	huge := strings.Repeat("x", 600<<10)
	for name, tc := range map[string]struct {
		model, runbook string
		source         string
	}{
		"runbook_url": {model: "fraud", runbook: "https://runbooks.example/" + huge, source: "fraud"},
		"model label": {model: huge, runbook: "https://runbooks.example/drift", source: strings.Repeat("x", 1023) + "…"},
	} {
		t.Run(name, func(t *testing.T) {
			ev := pagerDutyEvent(t, "", tc.model, func(a *alert.Alert) {
				a.Annotations["runbook_url"] = model.LabelValue(tc.runbook)
			})
			require.Nil(t, ev["links"])
			p := ev["payload"].(map[string]any)
			require.Equal(t, "[FIRING:1] Drift: Feature amount drifted", p["summary"])
			require.Equal(t, tc.source, p["source"])
			require.Equal(t, tc.source, p["component"])
			require.Equal(t, map[string]any{
				"error":     "Custom details have been removed because the original event exceeds the maximum size of 512kB",
				"truncated": "Links have been removed, and source, component, group and class cut to 1024 characters, because the event without custom details still exceeds 512kB",
			}, p["custom_details"])
		})
	}
}
