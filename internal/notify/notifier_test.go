package notify

import (
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// start runs a Notifier for the rest of the (synctest) test.
func start(t *testing.T, o Options) *Notifier {
	t.Helper()
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	n, err := New(o)
	require.NoError(t, err)
	n.Run()
	t.Cleanup(n.Stop)
	return n
}

// step happens at a time after the start of a test: first the payloads
// received since the previous step are compared with want, then alerts
// are put.
type step struct {
	at   time.Duration
	want []string // payload summaries, see payload.String
	// put fires alerts ("name=value,…" labels) with an endsAt a day ahead;
	// putOpen fires them without endsAt; resolve ends alerts fired before.
	put, putOpen, resolve []string
	// suppressed, if set, is alertd_notifications_suppressed_total by
	// reason so far.
	suppressed map[string]float64
}

func TestGrouping(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		steps  []step
	}{
		{
			name: "group_wait batches a group's alerts",
			config: `
route:
  receiver: team
  group_by: [team]
  group_wait: 30s
  group_interval: 5m
receivers:
  - name: team
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, put: []string{"alertname=A,team=ml"}},
				{at: 10 * time.Second, put: []string{"alertname=B,team=ml", "alertname=C,team=infra"}},
				{at: 31 * time.Second, want: []string{`team {team="ml"} A:firing B:firing`}},
				{at: 41 * time.Second, want: []string{`team {team="infra"} C:firing`}},
			},
		},
		{
			// The synctest clock starts at midnight UTC: the first two
			// minutes are in first-minutes, and later flushes are not.
			name: "mute_time_intervals and active_time_intervals keep a route's groups quiet",
			config: `
time_intervals:
  - name: first-minutes
    time_intervals: [{times: [{start_time: "00:00", end_time: "00:02"}]}]
mute_time_intervals:
  - name: never
    time_intervals: [{months: [february], days_of_month: ["30"]}]
route:
  receiver: team
  group_wait: 30s
  group_interval: 1m
  routes:
    - matchers: [team="ml"]
      receiver: team
      mute_time_intervals: [first-minutes, never]
    - matchers: [team="infra"]
      receiver: team
      active_time_intervals: [first-minutes]
    - matchers: [team="data"]
      receiver: team
      active_time_intervals: [never]
receivers:
  - name: team
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, put: []string{"alertname=A,team=ml", "alertname=B,team=infra", "alertname=C,team=data"}},
				{at: 31 * time.Second, want: []string{"team {} B:firing"}},
				// Each flush of a muted group counts its alerts: A's and
				// C's at 30s and 1m30s.
				{at: 2*time.Minute + 29*time.Second, suppressed: map[string]float64{"mute_time_interval": 2, "active_time_interval": 2}},
				// At 2m30s the mute interval is over, and the route outside
				// its active interval sends nothing new.
				{at: 2*time.Minute + 31*time.Second, want: []string{"team {} A:firing"},
					suppressed: map[string]float64{"mute_time_interval": 2, "active_time_interval": 4}},
				{at: 10 * time.Minute},
			},
		},
		{
			name: "group_interval sends changes, not before",
			config: `
route:
  receiver: team
  group_wait: 30s
  group_interval: 5m
receivers:
  - name: team
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, put: []string{"alertname=A"}},
				{at: 31 * time.Second, want: []string{"team {} A:firing"}},
				{at: time.Minute, put: []string{"alertname=B"}},
				{at: 5*time.Minute + 29*time.Second},
				{at: 5*time.Minute + 31*time.Second, want: []string{"team {} A:firing B:firing"}},
			},
		},
		{
			name: "repeat_interval sends an unchanged group again",
			config: `
route:
  receiver: team
  group_wait: 30s
  group_interval: 1m
  repeat_interval: 3m
receivers:
  - name: team
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, put: []string{"alertname=A"}},
				{at: 31 * time.Second, want: []string{"team {} A:firing"}},
				// Flushes at 1m30s, 2m30s and 3m30s find it unchanged, and
				// at 3m30s only exactly repeat_interval has passed.
				{at: 4*time.Minute + 29*time.Second},
				{at: 4*time.Minute + 31*time.Second, want: []string{"team {} A:firing"}},
			},
		},
		{
			name: "send_resolved sends resolved alerts, continue sends to both",
			config: `
route:
  receiver: quiet
  group_wait: 30s
  group_interval: 1m
  routes:
    - receiver: loud
      continue: true
    - receiver: quiet
receivers:
  - name: loud
    webhook_configs: [{url: "{{URL}}"}]
  - name: quiet
    webhook_configs: [{url: "{{URL}}", send_resolved: false}]`,
			steps: []step{
				{at: 0, put: []string{"alertname=A", "alertname=B"}},
				{at: 31 * time.Second, want: []string{"loud {} A:firing B:firing", "quiet {} A:firing B:firing"}},
				{at: 45 * time.Second, resolve: []string{"alertname=A"}},
				{at: 91 * time.Second, want: []string{"loud {} A:resolved B:firing"}},
				{at: 105 * time.Second, resolve: []string{"alertname=B"}},
				{at: 151 * time.Second, want: []string{"loud {} B:resolved"}},
			},
		},
		{
			name: "matchers in Alertmanager syntax, continue, default receiver",
			config: `
route:
  receiver: default
  group_wait: 30s
  routes:
    - receiver: pager
      matchers: ['severity=~"page|critical"']
      continue: true
    - receiver: ml
      matchers: [team="ml", 'alertname!~"Test.*"']
receivers:
  - name: default
    webhook_configs: [{url: "{{URL}}"}]
  - name: pager
    webhook_configs: [{url: "{{URL}}"}]
  - name: ml
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, put: []string{
					"alertname=A,severity=page,team=ml",
					"alertname=B,severity=critical,team=infra",
					"alertname=C,team=ml",
					"alertname=TestD,team=ml",
					"alertname=E,severity=info",
				}},
				{at: 31 * time.Second, want: []string{
					"default {} E:firing TestD:firing",
					"ml {} A:firing C:firing",
					"pager {} A:firing B:firing",
				}},
			},
		},
		{
			name: "group_by '...' makes a group of each alert",
			config: `
route:
  receiver: r
  group_by: ['...']
  group_wait: 30s
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, put: []string{"alertname=A,x=1", "alertname=A,x=2"}},
				{at: 31 * time.Second, want: []string{`r {alertname="A", x="1"} A:firing`, `r {alertname="A", x="2"} A:firing`}},
			},
		},
		{
			name: "intake resolve_timeout resolves alerts put without endsAt",
			config: `
intake:
  resolve_timeout: 2m
route:
  receiver: r
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: r
    webhook_configs: [{url: "{{URL}}"}]`,
			steps: []step{
				{at: 0, putOpen: []string{"alertname=A"}},
				{at: 31 * time.Second, want: []string{"r {} A:firing"}},
				{at: 91 * time.Second},
				{at: 151 * time.Second, want: []string{"r {} A:resolved"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t)
			cfg := load(t, tc.config, rcv.URL)
			synctest.Test(t, func(t *testing.T) {
				n := start(t, Options{Config: cfg})
				begin := time.Now()
				starts := map[string]time.Time{}
				for _, s := range tc.steps {
					time.Sleep(time.Until(begin.Add(s.at)))
					synctest.Wait()
					require.Equal(t, s.want, rcv.summaries(), "at %s", s.at)
					for reason, want := range s.suppressed {
						require.Equal(t, want, testutil.ToFloat64(n.metrics.suppressed.WithLabelValues(reason)), "%s at %s", reason, s.at)
					}
					var alerts []*alert.Alert
					for _, l := range s.put {
						starts[l] = time.Now()
						alerts = append(alerts, firing(l))
					}
					for _, l := range s.putOpen {
						starts[l] = time.Now()
						alerts = append(alerts, newAlert(l, time.Now(), time.Time{}))
					}
					for _, l := range s.resolve {
						alerts = append(alerts, newAlert(l, starts[l], time.Now()))
					}
					require.NoError(t, n.Put(alerts...))
				}
			})
		})
	}
}

func TestWebhookPayload(t *testing.T) {
	rcv := newReceiver(t)
	cfg := load(t, `
route:
  receiver: team-ml
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
receivers:
  - name: team-ml
    webhook_configs:
      - url: "{{URL}}/hook"
        max_alerts: 2`, rcv.URL)
	externalURL, err := url.Parse("http://alertd.example:9099/alertd")
	require.NoError(t, err)

	synctest.Test(t, func(t *testing.T) {
		var got notifications
		n := start(t, Options{Config: cfg, ExternalURL: externalURL, OnNotify: got.add})
		t0 := time.Now()
		mk := func(instance, runbook string, endsAt time.Time) *alert.Alert {
			return alert.New(model.Alert{
				Labels:       model.LabelSet{"alertname": "Drift", "instance": model.LabelValue(instance), "severity": "page"},
				Annotations:  model.LabelSet{"summary": "feature drift", "runbook": model.LabelValue(runbook)},
				StartsAt:     t0,
				EndsAt:       endsAt,
				GeneratorURL: "http://alertd.example:9099/alertd/graph?g0.expr=psi",
			}, time.Time{}, false)
		}
		a, b, c := mk("a", "r1", t0.Add(time.Hour)), mk("b", "r2", t0.Add(time.Hour)), mk("c", "r3", t0.Add(time.Hour))
		require.NoError(t, n.Put(c, a, b))

		time.Sleep(31 * time.Second)
		synctest.Wait()
		ps := rcv.next()
		require.Len(t, ps, 1)
		p := ps[0]
		require.Equal(t, "4", p.Version)
		require.Equal(t, `{}:{alertname="Drift"}`, p.GroupKey)
		require.Equal(t, "team-ml", p.Receiver)
		require.Equal(t, "firing", p.Status)
		require.Equal(t, map[string]string{"alertname": "Drift"}, p.GroupLabels)
		require.Equal(t, map[string]string{"alertname": "Drift", "severity": "page"}, p.CommonLabels)
		require.Equal(t, map[string]string{"summary": "feature drift"}, p.CommonAnnotations)
		require.Equal(t, "http://alertd.example:9099/alertd", p.ExternalURL)
		require.Equal(t, uint64(1), p.TruncatedAlerts)
		require.Len(t, p.Alerts, 2)
		for i, want := range []*alert.Alert{a, b} {
			got := p.Alerts[i]
			require.Equal(t, "firing", got.Status)
			require.Equal(t, map[string]string{"alertname": "Drift", "instance": string(want.Labels["instance"]), "severity": "page"}, got.Labels)
			require.Equal(t, map[string]string{"summary": "feature drift", "runbook": string(want.Annotations["runbook"])}, got.Annotations)
			require.True(t, t0.Equal(got.StartsAt), "startsAt %s", got.StartsAt)
			require.True(t, got.EndsAt.IsZero(), "a firing alert has no endsAt in webhooks, got %s", got.EndsAt)
			require.Equal(t, "http://alertd.example:9099/alertd/graph?g0.expr=psi", got.GeneratorURL)
			require.Equal(t, want.Fingerprint().String(), got.Fingerprint)
		}

		ns := got.get()
		require.Len(t, ns, 1)
		require.Equal(t, "team-ml", ns[0].Receiver)
		require.Equal(t, "webhook[0]", ns[0].Integration)
		require.Equal(t, p.GroupKey, ns[0].GroupKey)
		require.Len(t, ns[0].Alerts, 3, "OnNotify gets the alerts before the webhook truncates them")
		require.NoError(t, ns[0].Err)
		require.Equal(t, t0.Add(30*time.Second), ns[0].Time)

		// One alert resolves: the group is still firing.
		resolvedAt := time.Now()
		require.NoError(t, n.Put(mk("a", "r1", resolvedAt)))
		time.Sleep(time.Minute)
		synctest.Wait()
		ps = rcv.next()
		require.Len(t, ps, 1)
		p = ps[0]
		require.Equal(t, "firing", p.Status)
		require.Equal(t, uint64(1), p.TruncatedAlerts)
		require.Equal(t, "resolved", p.Alerts[0].Status)
		require.Equal(t, "a", p.Alerts[0].Labels["instance"])
		require.True(t, resolvedAt.Equal(p.Alerts[0].EndsAt), "endsAt %s", p.Alerts[0].EndsAt)
		require.Equal(t, "firing", p.Alerts[1].Status)

		// All resolve: the resolved alert already sent is gone from the group.
		require.NoError(t, n.Put(mk("b", "r2", time.Now()), mk("c", "r3", time.Now())))
		time.Sleep(time.Minute)
		synctest.Wait()
		ps = rcv.next()
		require.Len(t, ps, 1)
		p = ps[0]
		require.Equal(t, "resolved", p.Status)
		require.Equal(t, uint64(0), p.TruncatedAlerts)
		require.Len(t, p.Alerts, 2)
		require.Equal(t, []string{"b", "c"}, []string{p.Alerts[0].Labels["instance"], p.Alerts[1].Labels["instance"]})
	})
}
