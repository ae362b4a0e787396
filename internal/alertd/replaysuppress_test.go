package alertd

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// A silence or maintenance window that begins while an alert fires stops,
// in a replay as in alertd, the chain of its incident from its start: the
// steps due then are not sent (escalate: suppressed in the incident's
// history). When it ends while the alert still fires the chain goes on
// with the steps due after. The firing paged before it began, and keeps
// that outcome. With a step of 5m, the suppression begins and ends between
// evaluations, and still applies from its own times; so does a silence of
// --silences.
func TestReplaySuppressionBeginsWhileFiring(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Model a fails from 60m to 120m.
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(200, 0, 5, [2]int{60, 120})})
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	at := func(m int) time.Time { return replayStart.Add(time.Duration(m) * time.Minute) }
	clock := func(m int) string { return at(m).Format("15:04") }

	for _, tc := range []struct {
		name string
		// wait is the policy's wait between l1 and l2; from and to bound
		// the suppression, in minutes after replayStart.
		wait     string
		step     time.Duration
		from, to int
		stage    string
		want     []string
	}{
		{
			// l1 at 60, l2 at 70 (as the silence starts), l1 again at
			// 85 (in it), l2 again at 95 (after it), the rollback at
			// 110, the resolution at 120.
			name: "silence", wait: "10m", step: time.Minute, from: 70, to: 90, stage: "silence",
			want: []string{
				`1h0m0s notified: sent to l1 (trigger, level 1)`,
				`1h10m0s suppressed: not sent to l2 (escalate, level 2)`,
				`1h25m0s suppressed: not sent to l1 (repeat, level 1)`,
				`1h35m0s notified: sent to l2 (repeat, level 2)`,
				`1h50m0s action: ran action "rollback"`,
				`2h0m0s notified: sent to l1, l2 (resolve, level 2)`,
			},
		},
		{
			name: "maintenance window", wait: "10m", step: time.Minute, from: 70, to: 90, stage: "maintenance",
			want: []string{
				`1h0m0s notified: sent to l1 (trigger, level 1)`,
				`1h10m0s suppressed: not sent to l2 (escalate, level 2)`,
				`1h25m0s suppressed: not sent to l1 (repeat, level 1)`,
				`1h35m0s notified: sent to l2 (repeat, level 2)`,
				`1h50m0s action: ran action "rollback"`,
				`2h0m0s notified: sent to l1, l2 (resolve, level 2)`,
			},
		},
		{
			// Evaluations at 60, 65, 70, …: l2 falls due at 67, after
			// the silence began at 66; l2 again at 89, after it ended
			// at 88.
			name: "silence between evaluations", wait: "7m", step: 5 * time.Minute, from: 66, to: 88, stage: "silence",
			want: []string{
				`1h0m0s notified: sent to l1 (trigger, level 1)`,
				`1h7m0s suppressed: not sent to l2 (escalate, level 2)`,
				`1h22m0s suppressed: not sent to l1 (repeat, level 1)`,
				`1h29m0s notified: sent to l2 (repeat, level 2)`,
				`1h44m0s action: ran action "rollback"`,
				`2h0m0s notified: sent to l1, l2 (resolve, level 2)`,
			},
		},
		{
			// A silence of --silences, created through the API, takes
			// the same path.
			name: "silence of --silences between evaluations", wait: "7m", step: 5 * time.Minute, from: 66, to: 88, stage: "silences file",
			want: []string{
				`1h0m0s notified: sent to l1 (trigger, level 1)`,
				`1h7m0s suppressed: not sent to l2 (escalate, level 2)`,
				`1h22m0s suppressed: not sent to l1 (repeat, level 1)`,
				`1h29m0s notified: sent to l2 (repeat, level 2)`,
				`1h44m0s action: ran action "rollback"`,
				`2h0m0s notified: sent to l1, l2 (resolve, level 2)`,
			},
		},
		{
			name: "maintenance window between evaluations", wait: "7m", step: 5 * time.Minute, from: 66, to: 88, stage: "maintenance",
			want: []string{
				`1h0m0s notified: sent to l1 (trigger, level 1)`,
				`1h7m0s suppressed: not sent to l2 (escalate, level 2)`,
				`1h22m0s suppressed: not sent to l1 (repeat, level 1)`,
				`1h29m0s notified: sent to l2 (repeat, level 2)`,
				`1h44m0s action: ran action "rollback"`,
				`2h0m0s notified: sent to l1, l2 (resolve, level 2)`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := strings.ReplaceAll(replayPolicy, "{{WAIT}}", tc.wait)
			var sils []ReplaySilence
			switch tc.stage {
			case "silences file":
				var err error
				sils, err = ReadReplaySilences(strings.NewReader(fmt.Sprintf(
					`[{"id":"4a1b2c3d","matchers":[{"name":"model","value":"a","isRegex":false}],"startsAt":%q,"endsAt":%q,"createdBy":"bob","comment":"","status":{"state":"expired"},"updatedAt":%[1]q}]`,
					at(tc.from).Format(time.RFC3339), at(tc.to).Format(time.RFC3339))), replayStart, at(199))
				require.NoError(t, err)
			case "silence":
				extra += fmt.Sprintf("silences:\n  - matchers: ['model=\"a\"']\n    starts_at: %s\n    ends_at: %s\n    created_by: bob\n",
					at(tc.from).Format(time.RFC3339), at(tc.to).Format(time.RFC3339))
			default:
				extra += fmt.Sprintf("maintenance_windows:\n  - name: upgrade\n    matchers: ['model=\"a\"']\n"+
					"    time_intervals: [{times: [{start_time: %q, end_time: %q}]}]\n", clock(tc.from), clock(tc.to))
			}
			cfg := writeReplayConfig(t, t.TempDir(), "c", extra, replayRules)
			r, err := Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: at(199), Step: tc.step, Source: src, Silences: sils})
			require.NoError(t, err)

			require.Len(t, r.Firings, 1)
			f := r.Firings[0]
			require.Equal(t, OutcomePaged, f.Outcome, "it paged before the suppression began")
			require.Equal(t, at(60), f.FiredAt)
			require.Equal(t, at(120), f.ResolvedAt)

			require.Len(t, r.Incidents, 1)
			in := r.Incidents[0]
			var got []string
			for _, d := range in.History {
				require.Equal(t, "escalate", d.Stage)
				if d.Action == "escalating" || d.Action == "resolved" {
					continue
				}
				// The reasons up to their colon: what was (not) sent.
				why, _, _ := strings.Cut(d.Reason, ":")
				if d.Action == "action" {
					why, _, _ = strings.Cut(d.Reason, " for ")
				}
				got = append(got, fmt.Sprintf("%s %s: %s", d.Time.Sub(replayStart), d.Action, why))
			}
			require.Equal(t, tc.want, got)
			for _, d := range in.History {
				if d.Action == "suppressed" {
					require.True(t, strings.HasSuffix(d.Reason, ": every alert of incident "+in.ID+" is suppressed"), d.Reason)
				}
			}
			// The report's escalations leave out what was not sent.
			var sent []string
			for _, e := range r.Escalations {
				sent = append(sent, fmt.Sprintf("%s %s %v", e.At.Sub(replayStart), e.Event, e.Receivers))
			}
			want := []string{"1h0m0s trigger [l1]", "1h35m0s repeat [l2]", "1h50m0s action []", "2h0m0s resolve [l1 l2]"}
			if tc.wait == "7m" {
				want = []string{"1h0m0s trigger [l1]", "1h29m0s repeat [l2]", "1h44m0s action []", "2h0m0s resolve [l1 l2]"}
			}
			require.Equal(t, want, sent)
			require.Equal(t, 2, r.Summary.Escalations, "the trigger and the repeat after the suppression")
		})
	}
}

// An alert that fires in a silence is released when the silence ends,
// between two evaluations: its firing pages then, and its incident's
// chain starts then, as alertd's loop would within seconds.
func TestReplaySilenceEndsBetweenEvaluations(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(200, 0, 5, [2]int{60, 120})})
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	at := func(m int) time.Time { return replayStart.Add(time.Duration(m) * time.Minute) }
	extra := strings.ReplaceAll(replayPolicy, "{{WAIT}}", "10m") +
		fmt.Sprintf("silences:\n  - matchers: ['model=\"a\"']\n    starts_at: %s\n    ends_at: %s\n",
			at(55).Format(time.RFC3339), at(73).Format(time.RFC3339))
	cfg := writeReplayConfig(t, dir, "c", extra, replayRules)
	r, err := Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: at(199), Step: 5 * time.Minute, Source: src})
	require.NoError(t, err)

	require.Len(t, r.Firings, 1)
	f := r.Firings[0]
	require.Equal(t, OutcomePaged, f.Outcome)
	require.Equal(t, at(60), f.FiredAt)
	require.Equal(t, at(73), f.NotifiedAt, "released as the silence ended, not at the next evaluation")
	require.Len(t, r.Incidents, 1)
	require.Equal(t, at(73), r.Incidents[0].OpenedAt)
	require.NotEmpty(t, r.Escalations)
	e := r.Escalations[0]
	require.Equal(t, "trigger", e.Event)
	require.Equal(t, at(73), e.At)
	require.Equal(t, at(83), r.Escalations[1].At, "level 2 10m after")
}

// The times a replay looks again at its alerts between evaluations: a
// silence's start and end, a window's whole minutes where it begins or
// ends in its location (Kathmandu is 5h45m ahead of UTC), and its expiry,
// each once, in order; none outside the open range.
func TestSuppressionChanges(t *testing.T) {
	p, err := newPipeline(t.TempDir(), prometheus.NewRegistry(), promslog.NewNopLogger(), func(...*amalert.Alert) error { return nil },
		func(model.LabelSet) []string { return nil }, time.Hour, time.Now)
	require.NoError(t, err)
	var tis []timeinterval.TimeInterval
	require.NoError(t, yaml.UnmarshalStrict([]byte(`
- times: [{start_time: "06:00", end_time: "06:10"}, {start_time: "06:20", end_time: "07:00"}]
  location: Asia/Kathmandu
`), &tis))
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	at := func(h, m, s int) time.Time {
		return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
	}
	expires := at(1, 0, 30)
	require.NoError(t, p.apply(&alertconfig.Config{
		Silences: []*alertconfig.Silence{
			{Matchers: []string{`model="a"`}, StartsAt: at(0, 10, 15), EndsAt: at(0, 40, 0)},
			// The same end: one change.
			{Matchers: []string{`model="b"`}, StartsAt: day.Add(-time.Hour), EndsAt: at(0, 40, 0)},
		},
		MaintenanceWindows: []*alertconfig.MaintenanceWindow{{Name: "w", Matchers: []string{`model="a"`}, TimeIntervals: tis, ExpiresAt: &expires}},
	}))
	// 06:00 in Kathmandu is 00:15 UTC.
	require.Equal(t, []time.Time{at(0, 10, 15), at(0, 15, 0), at(0, 25, 0), at(0, 35, 0), at(0, 40, 0), at(1, 0, 30)},
		p.suppressionChanges(day, at(2, 0, 0)))
	require.Equal(t, []time.Time{at(0, 25, 0)}, p.suppressionChanges(at(0, 15, 0), at(0, 35, 0)), "open at both ends")
	require.Empty(t, p.suppressionChanges(at(0, 16, 0), at(0, 16, 0)))
	require.Empty(t, p.suppressionChanges(at(1, 1, 0), at(3, 0, 0)), "expired")
}
