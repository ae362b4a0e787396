package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"
)

// errorRules fire above 10 % errors. ErrorsHysteresis keeps firing down to
// 5 %; Errors, without the annotation, is what Prometheus evaluates.
const errorRules = `
groups:
  - name: errors
    interval: 1m
    rules:
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.10
      - alert: ErrorsHysteresis
        expr: modelmon_prediction_errors_ratio > 0.10
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.model }}: {{ $value | humanizePercentage }} errors'
          alertd_keep_firing_while: modelmon_prediction_errors_ratio > 0.05
`

// firing returns the models of the rule's firing alerts, with their values.
func (h *harness) firing(name string) map[string]float64 {
	out := map[string]float64{}
	for _, g := range h.groups {
		for _, r := range g.AlertingRules() {
			if r.Name() != name {
				continue
			}
			for _, a := range r.ActiveAlerts() {
				if a.State == promrules.StateFiring {
					out[a.Labels.Get("model")] = a.Value
				}
			}
		}
	}
	return out
}

// firedAt returns when each firing notification of the rule's alerts for
// model began (their startsAt), once each.
func (h *harness) firedAt(name, model string) []time.Duration {
	var out []time.Duration
	for _, s := range h.sent {
		if s.Labels.Get("alertname") != name || s.Labels.Get("model") != model || !s.ResolvedAt.IsZero() {
			continue
		}
		if d := s.FiredAt.Sub(base); len(out) == 0 || out[len(out)-1] != d {
			out = append(out, d)
		}
	}
	return out
}

func TestKeepFiringWhile(t *testing.T) {
	// Model a crosses 10 % at minute 2, dips to 7 % (between the two
	// thresholds) twice, and ends at 3 %. Model b crosses once and drops
	// straight to 3 %. Model c never crosses 10 %: 7 % alone fires nothing.
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="a"} 0 0 0.12 0.12 0.12 0.07 0.07 0.12 0.07 0.07 0.03 0.03 0.03
			modelmon_prediction_errors_ratio{model="b"} 0 0 0.12 0.03 0.03 0.03 0.03 0.03 0.03 0.03 0.03 0.03 0.03
			modelmon_prediction_errors_ratio{model="c"} 0.07 0.07 0.07 0.07 0.07 0.07 0.07 0.07 0.07 0.07 0.07 0.07 0.07
	`)
	h := newHarness(t, st, errorRules, Options{})
	for i := 0; i <= 12; i++ {
		ts := at(time.Duration(i) * time.Minute)
		h.eval(ts)
		got := h.firing("ErrorsHysteresis")
		switch {
		case i < 2:
			require.Empty(t, got, "minute %d", i)
		case i == 2:
			require.Equal(t, map[string]float64{"a": 0.12, "b": 0.12}, got)
		case i < 10:
			// b resolves at 3 %; a stays firing at 7 %, with that value.
			want := 0.07
			if i == 2 || i == 3 || i == 4 || i == 7 {
				want = 0.12
			}
			require.Equal(t, map[string]float64{"a": want}, got, "minute %d", i)
		default:
			require.Empty(t, got, "minute %d: resolved below 5 %%", i)
		}
	}
	// One firing of a from minute 2 to 10 with the annotation; three
	// without (2, 7, and none at 5, 6, 8 and 9).
	require.Equal(t, []time.Duration{2 * time.Minute}, h.firedAt("ErrorsHysteresis", "a"))
	require.Equal(t, []time.Duration{2 * time.Minute, 7 * time.Minute}, h.firedAt("Errors", "a"))
	for _, s := range h.sent {
		if s.Labels.Get("alertname") == "ErrorsHysteresis" && s.Labels.Get("model") == "a" && s.ResolvedAt.Equal(at(10*time.Minute)) {
			require.Equal(t, "page", s.Labels.Get("severity"))
			return
		}
	}
	t.Fatal("a's resolution at minute 10 was not sent")
}

// TestKeepFiringWhilePending checks that only firing alerts are held: one
// still pending when its expression stops returning it goes, as in
// Prometheus.
func TestKeepFiringWhilePending(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="a"} 0.12 0.12 0.07 0.07 0.07 0.07 0.07 0.07
	`)
	h := newHarness(t, st, `
groups:
  - name: errors
    rules:
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.10
        for: 3m
        annotations:
          alertd_keep_firing_while: modelmon_prediction_errors_ratio > 0.05
`, Options{})
	for i := 0; i <= 7; i++ {
		h.eval(at(time.Duration(i) * time.Minute))
		if i < 2 {
			require.Equal(t, promrules.StatePending, h.alert("Errors").State)
		} else {
			require.Nil(t, h.alert("Errors"), "minute %d", i)
		}
	}
	require.Empty(t, h.sent)
}

// TestKeepFiringWhileSeriesGone checks that an alert whose series goes away
// altogether resolves: the annotation holds it only while it returns the
// series.
func TestKeepFiringWhileSeriesGone(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="a"} 0.12 0.07 _ _ _ _ _ _ _
	`)
	h := newHarness(t, st, errorRules, Options{})
	for i := 0; i <= 8; i++ {
		h.eval(at(time.Duration(i) * time.Minute))
		got := h.firing("ErrorsHysteresis")
		// The sample at minute 1 is looked back to for less than 5 minutes.
		if i <= 5 {
			require.Contains(t, got, "a", "minute %d", i)
		} else {
			require.Empty(t, got, "minute %d", i)
		}
	}
}

// TestKeepFiringWhileRestart restarts the rule manager while alerts are held
// between the thresholds, and checks that they keep firing, for rules
// without `for` and for rules whose `for` state Prometheus restores; and
// that an alert that was not firing is not made to fire by the restart.
func TestKeepFiringWhileRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		forDur  string
		grace   time.Duration
		firing  time.Duration // when the held alert fires after the restart at 9m
		startAt time.Duration // its startsAt after the restart
	}{
		// No `for`: the alert is new at the restart and fires at once.
		{"no for", "0s", 0, 9 * time.Minute, 9 * time.Minute},
		// `for` restored: pending at the restart, fires at the next
		// evaluation, as its ALERTS_FOR_STATE says it fired long ago.
		{"for restored", "2m", time.Minute, 10 * time.Minute, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := promqltest.LoadedStorage(t, `
				load 1m
					modelmon_prediction_errors_ratio{model="a"} 0.12x4 0.07x19 0.03x5
					modelmon_prediction_errors_ratio{model="c"} 0.07x30
			`)
			ruleFile := fmt.Sprintf(`
groups:
  - name: errors
    interval: 1m
    rules:
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.10
        for: %s
        annotations:
          alertd_keep_firing_while: modelmon_prediction_errors_ratio > 0.05
`, tc.forDur)
			before := newHarness(t, st, ruleFile, Options{ForGracePeriod: tc.grace})
			for i := 0; i <= 8; i++ {
				before.eval(at(time.Duration(i) * time.Minute))
			}
			require.Equal(t, map[string]float64{"a": 0.07}, before.firing("Errors"), "held before the restart")

			after := newHarness(t, st, ruleFile, Options{ForGracePeriod: tc.grace})
			for ts := 9 * time.Minute; ts <= 26*time.Minute; ts += time.Minute {
				after.eval(at(ts))
				got := after.firing("Errors")
				switch {
				case ts < tc.firing:
					require.Empty(t, got, "at %s", ts)
					require.NotNil(t, after.alert("Errors"), "pending at %s", ts)
				case ts < 25*time.Minute:
					require.Equal(t, map[string]float64{"a": 0.07}, got, "at %s", ts)
				default:
					require.Empty(t, got, "at %s: resolved below 5 %%", ts)
				}
			}
			require.Equal(t, []time.Duration{tc.startAt}, after.firedAt("Errors", "a"))
			require.Empty(t, after.firedAt("Errors", "c"))
		})
	}
}

// TestKeepFiringWhileRestartResolved checks that an alert that had resolved
// before the restart (its ALERTS series ends in a stale marker) is not
// restored, though its series is between the thresholds again.
func TestKeepFiringWhileRestartResolved(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="a"} 0.12x2 0.03x3 0.07x20
	`)
	before := newHarness(t, st, errorRules, Options{})
	for i := 0; i <= 6; i++ {
		before.eval(at(time.Duration(i) * time.Minute))
	}
	require.Empty(t, before.firing("ErrorsHysteresis"))
	after := newHarness(t, st, errorRules, Options{})
	for i := 7; i <= 10; i++ {
		after.eval(at(time.Duration(i) * time.Minute))
		require.Empty(t, after.firing("ErrorsHysteresis"), "minute %d", i)
	}
}

// TestKeepFiringWhileQueryError checks that a failing keep_firing_while
// expression fails the rule's evaluation, leaving its alerts as they were
// instead of resolving them.
func TestKeepFiringWhileQueryError(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="a"} 0.12 0.07 0.07
			modelmon_prediction_errors_ratio{model="b"} 0.01 0.01 0.01
	`)
	h := newHarness(t, st, `
groups:
  - name: errors
    rules:
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.10
        annotations:
          alertd_keep_firing_while: modelmon_prediction_errors_ratio + on() modelmon_prediction_errors_ratio
`, Options{})
	h.eval(at(0))
	require.Equal(t, promrules.StateFiring, h.alert("Errors").State)
	h.eval(at(time.Minute))
	var err error
	for _, g := range h.groups {
		for _, r := range g.Rules() {
			err = r.LastError()
		}
	}
	require.ErrorContains(t, err, KeepFiringWhile)
	require.Equal(t, promrules.StateFiring, h.alert("Errors").State, "kept as it was")
}

// TestKeepFiringWhileWithoutGroup checks that a query without the group in
// its context passes through: rules evaluated elsewhere behave as in
// Prometheus.
func TestKeepFiringWhileWithoutGroup(t *testing.T) {
	calls := 0
	h := &Hysteresis{Query: func(context.Context, string, time.Time) (promql.Vector, error) {
		calls++
		return promql.Vector{}, nil
	}}
	ctx := promrules.NewOriginContext(context.Background(), promrules.RuleDetail{Name: "X", Query: "up", Kind: promrules.KindAlerting})
	_, err := h.QueryFunc(ctx, "up", at(0))
	require.NoError(t, err)
	require.Equal(t, 1, calls)
}

func TestCheckKeepFiringWhile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(f, []byte(`
groups:
  - name: errors
    rules:
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.10
        annotations:
          alertd_keep_firing_while: modelmon_prediction_errors_ratio >
`), 0o600))
	n, errs := Check([]string{f})
	require.Equal(t, 1, n)
	require.Len(t, errs, 1)
	require.True(t, strings.Contains(errs[0].Error(), `group "errors", rule "Errors": annotation alertd_keep_firing_while:`), errs[0].Error())
}

// TestKeepFiringWhileRestartTwoRules restarts while one of two rules of the
// same name (a warning and a critical one) fires: the restart restores the
// warning's alert, and does not make the critical one fire on it.
func TestKeepFiringWhileRestartTwoRules(t *testing.T) {
	st := promqltest.LoadedStorage(t, `
		load 1m
			modelmon_prediction_errors_ratio{model="a"} 0.12x4 0.17x20
	`)
	ruleFile := `
groups:
  - name: errors
    interval: 1m
    rules:
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.10
        labels: {severity: warning}
        annotations:
          alertd_keep_firing_while: modelmon_prediction_errors_ratio > 0.05
      - alert: Errors
        expr: modelmon_prediction_errors_ratio > 0.20
        labels: {severity: critical}
        annotations:
          alertd_keep_firing_while: modelmon_prediction_errors_ratio > 0.15
`
	severities := func(h *harness) []string {
		var out []string
		for _, g := range h.groups {
			for _, r := range g.AlertingRules() {
				for _, a := range r.ActiveAlerts() {
					if a.State == promrules.StateFiring {
						out = append(out, a.Labels.Get("severity"))
					}
				}
			}
		}
		return out
	}
	before := newHarness(t, st, ruleFile, Options{})
	for i := 0; i <= 6; i++ {
		before.eval(at(time.Duration(i) * time.Minute))
	}
	require.Equal(t, []string{"warning"}, severities(before))
	after := newHarness(t, st, ruleFile, Options{})
	for i := 7; i <= 10; i++ {
		after.eval(at(time.Duration(i) * time.Minute))
		require.Equal(t, []string{"warning"}, severities(after), "minute %d", i)
	}
}
