package rules

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// These tests step rule groups through time in the way Prometheus's own
// rules/alerting_test.go does: series loaded with promqltest's notation,
// then Group.Eval at base+i*interval. What they check is what alertd's
// pipeline receives through Notify, the ALERTS and ALERTS_FOR_STATE series,
// and the `for` state a new manager restores from storage.

var base = time.Unix(0, 0).UTC()

func at(d time.Duration) time.Time { return base.Add(d) }

// sent is one alert handed to Notify, and when.
type sent struct {
	at time.Time
	Alert
}

// harness evaluates the groups of one rule file on a storage, by hand.
type harness struct {
	t       *testing.T
	st      storage.Storage
	groups  []*promrules.Group
	sent    []sent
	now     time.Time
	started bool
}

func testEngine() *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute})
}

func newHarness(t *testing.T, st storage.Storage, ruleFile string, o Options) *harness {
	t.Helper()
	h := &harness{t: t, st: st}
	f := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(f, []byte(ruleFile), 0o600))
	o.Storage = st
	o.Engine = testEngine()
	o.ExternalURL = &url.URL{Scheme: "http", Host: "alertd.example:9109"}
	o.Notify = func(_ context.Context, _ string, alerts ...*Alert) {
		for _, a := range alerts {
			h.sent = append(h.sent, sent{at: h.now, Alert: *a})
		}
	}
	m := NewManager(o)
	groups, errs := m.LoadGroups(time.Minute, labels.FromStrings("cluster", "eu1"), o.ExternalURL.String(), nil, false, f)
	require.Empty(t, errs)
	for _, g := range groups {
		h.groups = append(h.groups, g)
	}
	return h
}

// eval evaluates every group at ts. The first evaluation is followed by
// restoring `for` state from storage, as a group's first iteration after
// start-up does (until then, rules write no ALERTS series).
func (h *harness) eval(ts time.Time) {
	h.now = ts
	for _, g := range h.groups {
		g.Eval(WithGroup(context.Background(), g), ts)
		if !h.started {
			g.RestoreForState(ts)
		}
	}
	h.started = true
}

// alert returns the rule's only active alert, or nil.
func (h *harness) alert(name string) *Alert {
	for _, g := range h.groups {
		for _, r := range g.AlertingRules() {
			if r.Name() != name {
				continue
			}
			as := r.ActiveAlerts()
			if len(as) == 0 {
				return nil
			}
			require.Len(h.t, as, 1)
			return as[0]
		}
	}
	h.t.Fatalf("no rule %q", name)
	return nil
}

// sentAt returns the alerts handed to Notify at ts.
func (h *harness) sentAt(ts time.Time) []sent {
	var out []sent
	for _, s := range h.sent {
		if s.at.Equal(ts) {
			out = append(out, s)
		}
	}
	return out
}

// query returns the value of a one-series instant query, or false if empty.
func (h *harness) query(q string, ts time.Time) (float64, bool) {
	h.t.Helper()
	qry, err := testEngine().NewInstantQuery(context.Background(), h.st, nil, q, ts)
	require.NoError(h.t, err)
	res := qry.Exec(context.Background())
	require.NoError(h.t, res.Err)
	v, err := res.Vector()
	require.NoError(h.t, err)
	if len(v) == 0 {
		return 0, false
	}
	require.Len(h.t, v, 1, q)
	return v[0].F, true
}

const driftRules = `
groups:
  - name: drift
    interval: 1m
    rules:
      - alert: FeatureDrift
        expr: modelmon_drift_psi > 0.2
        for: 3m
        labels:
          severity: warning
        annotations:
          summary: 'PSI of {{ $labels.feature }} is {{ $value | humanize }}'
          dashboard: '{{ $externalURL }}/graph'
          cluster: '{{ $externalLabels.cluster }}'
          baseline: '{{ with query "avg(modelmon_drift_psi)" }}{{ . | first | value | printf "%.2f" }}{{ end }}'
`

// TestLifecycleFor walks an alert through pending, firing (with resends that
// refresh endsAt) and resolved (re-sent for 15 minutes, then dropped), and
// checks the ALERTS series and the templated annotations along the way.
func TestLifecycleFor(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_drift_psi{model="m", feature="age"} 0.05x5 0.3x10 0.05x30
	`)
	h := newHarness(t, st, driftRules, Options{})
	for i := 0; i <= 40; i++ {
		h.eval(at(time.Duration(i) * time.Minute))
		switch i {
		case 5:
			require.Nil(t, h.alert("FeatureDrift"))
		case 6, 7, 8:
			a := h.alert("FeatureDrift")
			require.Equal(t, promrules.StatePending, a.State, "minute %d", i)
			require.Equal(t, at(6*time.Minute), a.ActiveAt)
			require.Empty(t, h.sentAt(at(time.Duration(i)*time.Minute)), "pending alerts are not sent")
			v, ok := h.query(`ALERTS{alertname="FeatureDrift", alertstate="pending"}`, at(time.Duration(i)*time.Minute))
			require.True(t, ok)
			require.Equal(t, 1.0, v)
			v, ok = h.query(`ALERTS_FOR_STATE{alertname="FeatureDrift"}`, at(time.Duration(i)*time.Minute))
			require.True(t, ok)
			require.Equal(t, float64(at(6*time.Minute).Unix()), v, "ALERTS_FOR_STATE holds ActiveAt")
		case 9:
			s := h.sentAt(at(9 * time.Minute))
			require.Len(t, s, 1, "fires after `for`")
			require.Equal(t, promrules.StateFiring, s[0].State)
			require.Equal(t, at(9*time.Minute), s[0].FiredAt)
			require.Equal(t, at(9*time.Minute+4*time.Minute), s[0].ValidUntil, "endsAt is 4 × max(interval, resend delay) ahead")
			require.Equal(t, labels.FromStrings("__name__", "", "alertname", "FeatureDrift", "feature", "age", "model", "m", "severity", "warning").WithoutEmpty(), s[0].Labels)
			require.Equal(t, "PSI of age is 300m", s[0].Annotations.Get("summary"))
			require.Equal(t, "http://alertd.example:9109/graph", s[0].Annotations.Get("dashboard"))
			require.Equal(t, "eu1", s[0].Annotations.Get("cluster"))
			require.Equal(t, "0.30", s[0].Annotations.Get("baseline"))
			v, ok := h.query(`ALERTS{alertname="FeatureDrift", alertstate="firing"}`, at(9*time.Minute))
			require.True(t, ok)
			require.Equal(t, 1.0, v)
		case 10:
			require.Empty(t, h.sentAt(at(10*time.Minute)), "not re-sent before the resend delay has passed")
		case 11:
			s := h.sentAt(at(11 * time.Minute))
			require.Len(t, s, 1, "re-sent once the resend delay has passed")
			require.Equal(t, at(11*time.Minute+4*time.Minute), s[0].ValidUntil, "each resend refreshes endsAt")
			require.Equal(t, at(9*time.Minute), s[0].FiredAt, "startsAt stays")
		case 17:
			s := h.sentAt(at(17 * time.Minute))
			require.Len(t, s, 1)
			require.Equal(t, at(17*time.Minute), s[0].ResolvedAt, "resolved on the first evaluation without the condition")
			require.Equal(t, promrules.StateInactive, s[0].State)
			_, ok := h.query(`ALERTS{alertname="FeatureDrift"}`, at(17*time.Minute))
			require.False(t, ok, "ALERTS goes stale when the alert resolves")
		}
	}
	// Resolved alerts are re-sent for 15 minutes (at most every resend
	// delay, which needs a minute to have passed), then forgotten.
	var resolvedSends []time.Duration
	for _, s := range h.sent {
		if !s.ResolvedAt.IsZero() {
			resolvedSends = append(resolvedSends, s.at.Sub(base))
		}
	}
	require.Equal(t, []time.Duration{17 * time.Minute, 19 * time.Minute, 21 * time.Minute, 23 * time.Minute, 25 * time.Minute, 27 * time.Minute, 29 * time.Minute, 31 * time.Minute}, resolvedSends)
}

// TestLifecycleKeepFiringFor checks that keep_firing_for holds a firing alert
// after its condition goes away, and that the alert resolves after it.
func TestLifecycleKeepFiringFor(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="m"} 0x4 0.5x3 0x20
	`)
	h := newHarness(t, st, `
groups:
  - name: errors
    interval: 1m
    rules:
      - alert: ModelErrors
        expr: modelmon_prediction_errors_ratio > 0.1
        keep_firing_for: 5m
        annotations:
          summary: '{{ $labels.model }}: {{ $value | humanizePercentage }} errors'
`, Options{})
	for i := 0; i <= 20; i++ {
		ts := at(time.Duration(i) * time.Minute)
		h.eval(ts)
		a := h.alert("ModelErrors")
		switch {
		case i < 5:
			require.Nil(t, a, "minute %d", i)
		case i == 5:
			require.Equal(t, promrules.StateFiring, a.State, "no `for`: fires at once")
			require.Equal(t, "m: 50% errors", a.Annotations.Get("summary"))
		case i >= 9 && i < 14:
			require.Equal(t, promrules.StateFiring, a.State, "kept firing at minute %d", i)
			require.Equal(t, at(9*time.Minute), a.KeepFiringSince)
		case i == 14:
			require.Nil(t, a, "resolved once keep_firing_for has passed")
			s := h.sentAt(ts)
			require.Len(t, s, 1)
			require.Equal(t, ts, s[0].ResolvedAt)
		}
	}
}

// TestLifecycleTemplateError checks that an annotation failing at
// evaluation does not stop the alert: as in Prometheus, it carries the error.
func TestLifecycleTemplateError(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_drift_psi{model="m", feature="age"} 1x5
	`)
	h := newHarness(t, st, `
groups:
  - name: g
    rules:
      - alert: Broken
        expr: modelmon_drift_psi > 0.2
        annotations:
          summary: '{{ with query "modelmon_drift_psi[" }}{{ . }}{{ end }}'
`, Options{})
	h.eval(at(0))
	s := h.sentAt(at(0))
	require.Len(t, s, 1)
	require.Contains(t, s[0].Annotations.Get("summary"), "error expanding template")
}

const restoreRules = `
groups:
  - name: accuracy
    interval: 1m
    rules:
      - alert: AccuracyLow
        expr: modelmon_accuracy_ratio < 0.9
        for: 10m
`

// TestLifecycleRestore restarts the rule manager (a new one over the same
// storage) while an alert is pending, and checks when it fires: with
// Prometheus's outage tolerance and grace period.
func TestLifecycleRestore(t *testing.T) {
	for _, tc := range []struct {
		name      string
		grace     time.Duration
		restartAt time.Duration
		firesAt   time.Duration
	}{
		// Pending for 8 of 10 minutes, down for 1: fires 2 minutes after
		// the restart, not 10.
		{"resumes where it was", time.Minute, 9 * time.Minute, 11 * time.Minute},
		// With Prometheus's default 10m grace period an alert whose `for`
		// is at least that long gets the grace period after a restart.
		{"grace period", DefaultForGracePeriod, 9 * time.Minute, 19 * time.Minute},
		// Down longer than the outage tolerance (1h): starts over.
		{"outage beyond tolerance", time.Minute, 8*time.Minute + 2*time.Hour, 18*time.Minute + 2*time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := promqltest.LoadedStorage(t, `
				load 1m
					modelmon_accuracy_ratio{model="m"} 0.5x200
			`)
			before := newHarness(t, st, restoreRules, Options{ForGracePeriod: tc.grace})
			for i := 0; i <= 8; i++ {
				before.eval(at(time.Duration(i) * time.Minute))
			}
			require.Equal(t, promrules.StatePending, before.alert("AccuracyLow").State)

			after := newHarness(t, st, restoreRules, Options{ForGracePeriod: tc.grace})
			for ts := tc.restartAt; ts <= tc.firesAt+time.Minute; ts += time.Minute {
				after.eval(at(ts))
				a := after.alert("AccuracyLow")
				if ts < tc.firesAt {
					require.Equal(t, promrules.StatePending, a.State, "at %s", ts)
					require.Empty(t, after.sentAt(at(ts)))
					continue
				}
				require.Equal(t, promrules.StateFiring, a.State, "at %s", ts)
				if ts == tc.firesAt {
					s := after.sentAt(at(ts))
					require.Len(t, s, 1)
					require.Equal(t, at(tc.firesAt), s[0].FiredAt)
				}
			}
		})
	}
}
