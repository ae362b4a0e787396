package alertd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/dispatch"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

var commoncfgZero = commoncfg.HTTPClientConfig{}

// replayStart is when the test history begins.
var replayStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// writeHistory writes series of one sample a minute from replayStart into
// a TSDB block under dir, as `promtool tsdb create-blocks-from` would.
func writeHistory(t *testing.T, dir string, series map[string][]float64) {
	t.Helper()
	writeHistoryFrom(t, dir, replayStart, series)
}

// writeHistoryFrom is writeHistory from start.
func writeHistoryFrom(t *testing.T, dir string, start time.Time, series map[string][]float64) {
	t.Helper()
	ctx := context.Background()
	w, err := tsdb.NewBlockWriter(promslog.NewNopLogger(), dir, (7 * 24 * time.Hour).Milliseconds())
	require.NoError(t, err)
	app := w.AppenderV2(ctx)
	for sel, vs := range series {
		name, modelName, _ := strings.Cut(sel, "/")
		ls := labels.FromStrings(model.MetricNameLabel, name, "model", modelName)
		for i, v := range vs {
			_, err := app.Append(0, ls, 0, start.Add(time.Duration(i)*time.Minute).UnixMilli(), v, nil, nil, storage.AppendV2Options{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	_, err = w.Flush(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Close())
}

// pattern builds a series of n minutes at base, with value v over the
// given [from, to) minute ranges.
func pattern(n int, base, v float64, ranges ...[2]int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = base
		for _, r := range ranges {
			if i >= r[0] && i < r[1] {
				out[i] = v
			}
		}
	}
	return out
}

// writeReplayConfig writes a configuration with one rule file.
func writeReplayConfig(t *testing.T, dir, name, extra, rules string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".rules.yml"), []byte(rules), 0o600))
	cfg := "global:\n  evaluation_interval: 1m\nrule_files: [" + name + ".rules.yml]\n" +
		"route:\n  receiver: oncall\n  group_by: [model]\nreceivers:\n  - name: oncall\n" + extra
	f := filepath.Join(dir, name+".yml")
	require.NoError(t, os.WriteFile(f, []byte(cfg), 0o600))
	return f
}

const replayRules = `groups:
  - name: g
    rules:
      - alert: ErrorsHigh
        expr: errors > 1
      - alert: LatencyHigh
        expr: latency > 1
`

// Replay reports every firing and its outcome, the pipeline's suppression
// applies on the replay's clock, alerts of one group form one incident,
// and two configurations compare firing by firing.
func TestReplay(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{
		// A 20-minute incident at 60, with latency joining it at 65; a
		// 2-minute blip at 120 and another at 150; on model b, errors
		// from 200 to 230, in a silence of config B.
		"errors/a":  pattern(300, 0, 5, [2]int{60, 80}, [2]int{120, 122}, [2]int{150, 152}),
		"latency/a": pattern(300, 0, 5, [2]int{65, 75}),
		"errors/b":  pattern(300, 0, 5, [2]int{200, 230}),
	})
	a := writeReplayConfig(t, dir, "a", "", replayRules)
	b := writeReplayConfig(t, dir, "b", `suppression:
  min_firing_duration: 5m
silences:
  - matchers: ['model="b"']
    starts_at: 2026-03-02T03:00:00Z
    ends_at: 2026-03-02T04:00:00Z
    created_by: test
    comment: maintenance of model b
`, replayRules)

	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	opts := ReplayOptions{From: replayStart, To: replayStart.Add(299 * time.Minute), Source: src}
	ctx := context.Background()

	ra, err := Replay(ctx, a, opts)
	require.NoError(t, err)
	require.Equal(t, 300, ra.Evaluations)
	outcomes := func(r *ReplayResult) []string {
		var out []string
		for _, f := range r.Firings {
			out = append(out, f.FiredAt.Sub(replayStart).String()+" "+string(f.Labels["alertname"])+"/"+string(f.Labels["model"])+" "+f.Outcome+" "+f.SuppressedBy)
		}
		return out
	}
	require.Equal(t, []string{
		"1h0m0s ErrorsHigh/a paged ",
		"1h5m0s LatencyHigh/a grouped ",
		"2h0m0s ErrorsHigh/a paged ",
		"2h30m0s ErrorsHigh/a paged ",
		"3h20m0s ErrorsHigh/b paged ",
	}, outcomes(ra))
	require.Equal(t, ReplaySummary{Alerts: 3, Firings: 5, Pages: 4, PagesDay: 19.26, Grouped: 1, Suppressed: map[string]int{}}, ra.Summary)
	first := ra.Firings[0]
	require.Equal(t, replayStart.Add(80*time.Minute), first.ResolvedAt, "resolved at the first evaluation without errors")
	require.Equal(t, first.FiredAt, first.NotifiedAt)
	require.Equal(t, first.Incident, ra.Firings[1].Incident, "same model, same incident")

	rb, err := Replay(ctx, b, opts)
	require.NoError(t, err)
	require.Equal(t, []string{
		"1h0m0s ErrorsHigh/a paged ",
		"1h5m0s LatencyHigh/a grouped ",
		"2h0m0s ErrorsHigh/a suppressed hold",
		"2h30m0s ErrorsHigh/a suppressed hold",
		"3h20m0s ErrorsHigh/b suppressed silence",
	}, outcomes(rb))
	require.Equal(t, replayStart.Add(65*time.Minute), rb.Firings[0].NotifiedAt, "released after the 5m hold")
	require.Contains(t, rb.Firings[4].Reason, "maintenance of model b")

	c := CompareReplays(ra, rb)
	require.Len(t, c.Changes, 3)
	require.Equal(t, ReplayChange{Fingerprint: ra.Firings[2].Fingerprint, Alert: ra.Firings[2].Labels.String(), FiredAt: replayStart.Add(2 * time.Hour), A: "paged", B: "suppressed (hold)"}, c.Changes[0])
	require.True(t, CompareReplays(rb, ra).MorePages())
	require.False(t, c.MorePages())

	var text bytes.Buffer
	require.NoError(t, c.WriteText(&text))
	for _, want := range []string{"pages", "  by hold", "  by silence", "3 firings changed outcome:", "suppressed (silence)"} {
		require.Contains(t, text.String(), want)
	}
	js, err := json.Marshal(c)
	require.NoError(t, err)
	require.Contains(t, string(js), `"outcome":"suppressed","suppressed_by":"hold"`)
}

// An anomaly detector replays over the history like the live one: its
// scores are queryable by rules at the same evaluation.
func TestReplayAnomalyDetector(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	vs := make([]float64, 600)
	for i := range vs {
		vs[i] = 100 + float64(i%7)
	}
	vs[500] = 400
	writeHistory(t, hist, map[string][]float64{"requests/a": vs})
	cfg := writeReplayConfig(t, dir, "anomaly", `anomaly_detectors:
  - name: traffic
    expr: requests
    interval: 1m
`, `groups:
  - name: g
    rules:
      - alert: TrafficAnomaly
        expr: alertd_anomaly_score{detector="traffic"} >= 0.5
`)
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	r, err := Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: replayStart.Add(599 * time.Minute), Source: src})
	require.NoError(t, err)
	require.NotEmpty(t, r.Firings)
	require.Equal(t, replayStart.Add(500*time.Minute), r.Firings[0].FiredAt, "%+v", r.Firings)
	require.Equal(t, OutcomePaged, r.Firings[0].Outcome)
	require.Equal(t, "a", string(r.Firings[0].Labels["model"]))
}

// Bad input: a range that ends before it starts, a missing TSDB, a bad
// configuration — each a clear error.
func TestReplayBadInput(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(10, 0, 0)})
	cfg := writeReplayConfig(t, dir, "a", "", replayRules)
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	_, err = Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: replayStart.Add(-time.Minute), Source: src})
	require.ErrorContains(t, err, "is before --from")
	_, _, err = OpenReplaySource(filepath.Join(dir, "nope"), "", 0, commoncfgZero)
	require.ErrorContains(t, err, "couldn't open the TSDB")
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("rule_files: [missing.yml]\nbogus: 1\n"), 0o600))
	_, err = Replay(context.Background(), bad, ReplayOptions{From: replayStart, To: replayStart, Source: src})
	require.ErrorContains(t, err, "bogus")
}

// Replaying from a real Prometheus's query API gives the same firings as
// replaying its TSDB directly.
func TestReplayRemote(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeHistory(t, data, map[string][]float64{
		"errors/a":  pattern(300, 0, 5, [2]int{60, 80}, [2]int{120, 122}),
		"latency/a": pattern(300, 0, 5, [2]int{65, 75}),
	})
	cfg := writeReplayConfig(t, dir, "a", "suppression:\n  min_firing_duration: 5m\n", replayRules)
	opts := ReplayOptions{From: replayStart, To: replayStart.Add(299 * time.Minute)}

	src, closeSrc, err := OpenReplaySource(data, "", 0, commoncfgZero)
	require.NoError(t, err)
	opts.Source = src
	local, err := Replay(context.Background(), cfg, opts)
	require.NoError(t, err)
	require.NoError(t, closeSrc())

	addr := prometheustest.FreeAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(promCfg, []byte("global: {}\n"), 0o600))
	prometheustest.StartProcess(t, "prometheus", prometheustest.Binary(t), "http://"+addr,
		"--config.file="+promCfg, "--storage.tsdb.path="+data, "--storage.tsdb.retention.time=100y",
		"--web.listen-address="+addr, "--log.level=warn")
	src, closeSrc, err = OpenReplaySource("", "http://"+addr, 30*time.Second, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	opts.Source = src
	remote, err := Replay(context.Background(), cfg, opts)
	require.NoError(t, err)
	require.Equal(t, local.Firings, remote.Firings)
	require.Equal(t, ReplaySummary{Alerts: 2, Firings: 3, Pages: 1, PagesDay: 4.82, Grouped: 1, Suppressed: map[string]int{"hold": 1}}, remote.Summary)
}

// The replay keeps the hysteresis of alertd_keep_firing_while: errors that
// hover around the threshold page three times without it, once with it, and
// the alerts carry no such annotation.
func TestReplayKeepFiringWhile(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Above 1 for minutes 60-70, 80-90 and 100-110, at 0.7 in between; 0
	// otherwise.
	errs := pattern(200, 0, 0.7, [2]int{60, 110})
	for _, r := range [][2]int{{60, 70}, {80, 90}, {100, 110}} {
		for i := r[0]; i < r[1]; i++ {
			errs[i] = 5
		}
	}
	writeHistory(t, hist, map[string][]float64{"errors/a": errs})
	rule := func(extra string) string {
		return "groups:\n  - name: g\n    rules:\n      - alert: ErrorsHigh\n        expr: errors > 1\n" + extra
	}
	plain := writeReplayConfig(t, dir, "plain", "", rule(""))
	hyst := writeReplayConfig(t, dir, "hyst", "", rule("        annotations:\n          summary: errors {{ $value }}\n          alertd_keep_firing_while: errors > 0.5\n"))
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	opts := ReplayOptions{From: replayStart, To: replayStart.Add(199 * time.Minute), Source: src}

	rp, err := Replay(context.Background(), plain, opts)
	require.NoError(t, err)
	require.Equal(t, 3, rp.Summary.Pages)
	rh, err := Replay(context.Background(), hyst, opts)
	require.NoError(t, err)
	require.Equal(t, 1, rh.Summary.Pages)
	require.Len(t, rh.Firings, 1)
	f := rh.Firings[0]
	require.Equal(t, replayStart.Add(60*time.Minute), f.FiredAt)
	require.Equal(t, replayStart.Add(110*time.Minute), f.ResolvedAt, "resolved when errors fell below 0.5")
}

// replayPolicy is an escalation policy for the replay tests: l1, then l2
// after {{WAIT}}, then both once again 15m later, then a rollback.
const replayPolicy = `  - name: l1
  - name: l2
escalation_policies:
  - name: pager
    steps:
      - notify: [l1]
      - wait: {{WAIT}}
      - notify: [l2]
      - wait: 15m
      - repeat: 1
      - action: rollback
`

// The replay runs escalation policies over its incidents on its clock:
// each step at its time, repeats, the resolution to every level notified,
// no step after it; the report lists and counts them, and a comparison
// shows the steps that moved.
func TestReplayEscalation(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Model a fails for 40 minutes from 60, model b for 5 from 200.
	writeHistory(t, hist, map[string][]float64{
		"errors/a": pattern(300, 0, 5, [2]int{60, 100}),
		"errors/b": pattern(300, 0, 5, [2]int{200, 205}),
	})
	a := writeReplayConfig(t, dir, "a", strings.ReplaceAll(replayPolicy, "{{WAIT}}", "10m"), replayRules)
	b := writeReplayConfig(t, dir, "b", strings.ReplaceAll(replayPolicy, "{{WAIT}}", "20m"), replayRules)
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	opts := ReplayOptions{From: replayStart, To: replayStart.Add(299 * time.Minute), Source: src}
	ctx := context.Background()

	steps := func(r *ReplayResult) []string {
		var out []string
		for _, e := range r.Escalations {
			s := fmt.Sprintf("%s %s %s level %d step %d iteration %d %v", e.At.Sub(replayStart), e.Labels["model"], e.Event, e.Level, e.Step, e.Iteration, e.Receivers)
			if e.Action != "" {
				s += " " + e.Action
			}
			out = append(out, s)
		}
		return out
	}
	ra, err := Replay(ctx, a, opts)
	require.NoError(t, err)
	require.Equal(t, []string{
		"1h0m0s a trigger level 1 step 0 iteration 0 [l1]",
		"1h10m0s a escalate level 2 step 2 iteration 0 [l2]",
		"1h25m0s a repeat level 1 step 0 iteration 1 [l1]",
		"1h35m0s a repeat level 2 step 2 iteration 1 [l2]",
		// Resolved at 1h40m, before the rollback was due (1h50m).
		"1h40m0s a resolve level 2 step 4 iteration 1 [l1 l2]",
		"3h20m0s b trigger level 1 step 0 iteration 0 [l1]",
		// Resolved before level 2: only l1 hears of it.
		"3h25m0s b resolve level 1 step 2 iteration 0 [l1]",
	}, steps(ra))
	e := ra.Escalations[0]
	require.Equal(t, ra.Firings[0].Incident, e.Incident, "the incident of the firing that opened it")
	require.Equal(t, "pager", e.Policy)
	require.Equal(t, `step 1 of policy "pager": level 1`, e.Reason)
	require.Equal(t, 5, ra.Summary.Escalations, "resolutions are not counted")
	require.Equal(t, map[int]int{1: 3, 2: 2}, ra.Summary.EscalationsByLevel)
	require.Equal(t, 2, ra.Summary.Pages, "escalation adds no firings")

	rb, err := Replay(ctx, b, opts)
	require.NoError(t, err)
	require.Equal(t, []string{
		"1h0m0s a trigger level 1 step 0 iteration 0 [l1]",
		"1h20m0s a escalate level 2 step 2 iteration 0 [l2]",
		"1h35m0s a repeat level 1 step 0 iteration 1 [l1]",
		"1h40m0s a resolve level 1 step 2 iteration 1 [l1 l2]",
		"3h20m0s b trigger level 1 step 0 iteration 0 [l1]",
		"3h25m0s b resolve level 1 step 2 iteration 0 [l1]",
	}, steps(rb))

	c := CompareReplays(ra, rb)
	require.Empty(t, c.Changes, "the same firings, the same outcomes")
	inc := ra.Firings[0].Incident
	at := func(m int) time.Time { return replayStart.Add(time.Duration(m) * time.Minute) }
	require.Equal(t, []ReplayEscalationChange{
		{Incident: inc, At: at(70), Event: "escalate", A: "level 2: l2", B: "none"},
		{Incident: inc, At: at(80), Event: "escalate", A: "none", B: "level 2: l2"},
		{Incident: inc, At: at(85), Event: "repeat", A: "level 1: l1", B: "none"},
		{Incident: inc, At: at(95), Event: "repeat", A: "level 2: l2", B: "level 1: l1"},
		{Incident: inc, At: at(100), Event: "resolve", A: "level 2: l1, l2", B: "level 1: l1, l2"},
	}, c.EscalationChanges)

	var text bytes.Buffer
	require.NoError(t, c.WriteText(&text))
	for _, want := range []string{
		`\nescalations +5 +4\n  at level 1 +3 +3\n  at level 2 +2 +1\n`,
		`\n0 firings changed outcome\.\n`,
		`\n5 escalation steps changed:\nat +incident +event +A +B\n`,
		`\n2026-03-02T01:35:00Z +\{\}:\{model="a"\} +repeat +level 2: l2 +level 1: l1\n`,
	} {
		require.Regexp(t, want, text.String())
	}
	js, err := json.Marshal(c)
	require.NoError(t, err)
	require.Contains(t, string(js), `"event":"trigger","level":1,"step":0,"iteration":0,"receivers":["l1"]`)
	require.Contains(t, string(js), `"escalations":5,"escalations_by_level":{"1":3,"2":2}`)
	require.Contains(t, string(js), `"escalation_changes":[`)
}

// An alert that matches two routes (continue: true) is in an incident of
// each, as in alertd's ledger: its firing pages once, and each incident
// escalates.
func TestReplayContinueRoutes(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(200, 0, 5, [2]int{60, 100})})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.rules.yml"), []byte(replayRules), 0o600))
	cfg := filepath.Join(dir, "c.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`global: {evaluation_interval: 1m}
rule_files: [c.rules.yml]
route:
  receiver: oncall
  group_by: [model]
  routes:
    - {receiver: slack, matchers: ['model="a"'], continue: true}
    - {receiver: pager, matchers: ['model=~"a|b"']}
receivers: [{name: oncall}, {name: slack}, {name: pager}]
escalation_policies:
  - name: p
    steps: [{notify: [oncall]}]
`), 0o600))
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	r, err := Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: replayStart.Add(199 * time.Minute), Source: src})
	require.NoError(t, err)
	require.Len(t, r.Firings, 1)
	require.Equal(t, OutcomePaged, r.Firings[0].Outcome)
	require.Equal(t, 1, r.Summary.Pages)
	var incidents []string
	for _, e := range r.Escalations {
		if e.Event == "trigger" {
			incidents = append(incidents, e.Incident)
		}
	}
	require.Len(t, incidents, 2, "an incident in each route's group: %v", r.Escalations)
	require.NotEqual(t, incidents[0], incidents[1])
	require.Contains(t, incidents, r.Firings[0].Incident, "the firing's incident is its first route's")
}

// Acknowledgements stop a replay's chains as they stop alertd's: from a
// file, as policy tests write them, and from the ledger's acknowledged
// events; the policy's ack_timeout re-triggers a chain, and one that finds
// no open escalated incident is counted, not an error. With a comparison,
// both configurations take the same.
func TestReplayAcknowledgements(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Model a fails for 40 minutes from 60, model b for 10 from 200.
	writeHistory(t, hist, map[string][]float64{
		"errors/a": pattern(300, 0, 5, [2]int{60, 100}),
		"errors/b": pattern(300, 0, 5, [2]int{200, 210}),
	})
	policy := strings.ReplaceAll(replayPolicy, "{{WAIT}}", "10m")
	a := writeReplayConfig(t, dir, "a", strings.Replace(policy, "    steps:", "    ack_timeout: 20m\n    steps:", 1), replayRules)
	b := writeReplayConfig(t, dir, "b", policy, replayRules)
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	from, to := replayStart, replayStart.Add(299*time.Minute)
	ctx := context.Background()
	steps := func(r *ReplayResult) []string {
		var out []string
		for _, e := range r.Escalations {
			out = append(out, fmt.Sprintf("%s %s %s level %d iteration %d %v", e.At.Sub(replayStart), e.Labels["model"], e.Event, e.Level, e.Iteration, e.Receivers))
		}
		return out
	}

	// A file: durations after --from, RFC 3339 and Unix seconds; out of
	// the range is left out.
	acksFile := filepath.Join(dir, "acks.yml")
	require.NoError(t, os.WriteFile(acksFile, []byte(`acknowledgements:
  - {at: 65m, labels: {model: a}, by: alice}
  - {at: 2026-03-02T02:30:00Z, labels: {model: a}, by: bob}   # nothing open: unmatched
  - {at: `+fmt.Sprint(replayStart.Add(202*time.Minute).Unix())+`, labels: {model: b}}
  - {at: 2026-03-03T00:00:00Z, by: carol}                     # after --to
`), 0o600))
	acks, err := LoadReplayAcknowledgements(acksFile, from, to)
	require.NoError(t, err)
	require.Len(t, acks, 3)
	opts := ReplayOptions{From: from, To: to, Source: src, Acknowledgements: acks}
	ra, err := Replay(ctx, a, opts)
	require.NoError(t, err)
	require.Equal(t, []string{
		"1h0m0s a trigger level 1 iteration 0 [l1]",
		// Acknowledged before level 2 was due: l1 hears of it.
		"1h5m0s a acknowledge level 1 iteration 0 [l1]",
		// No resolve within ack_timeout: the chain starts over.
		"1h25m0s a trigger level 1 iteration 1 [l1]",
		"1h35m0s a escalate level 2 iteration 1 [l2]",
		"1h40m0s a resolve level 2 iteration 1 [l1 l2]",
		"3h20m0s b trigger level 1 iteration 0 [l1]",
		"3h22m0s b acknowledge level 1 iteration 0 [l1]",
		"3h30m0s b resolve level 1 iteration 0 [l1]",
	}, steps(ra))
	require.Equal(t, 4, ra.Summary.Escalations)
	require.Equal(t, 2, ra.Summary.AcknowledgementsApplied)
	require.Equal(t, 1, ra.Summary.AcknowledgementsUnmatched)
	require.Equal(t, []string{ra.Firings[0].Incident}, ra.Acknowledgements[0].Incidents)
	require.Empty(t, ra.Acknowledgements[1].Incidents)
	require.Equal(t, "bob", ra.Acknowledgements[1].By)

	// Without ack_timeout the acknowledgement holds until the resolve.
	rb, err := Replay(ctx, b, opts)
	require.NoError(t, err)
	require.Equal(t, []string{
		"1h0m0s a trigger level 1 iteration 0 [l1]",
		"1h5m0s a acknowledge level 1 iteration 0 [l1]",
		"1h40m0s a resolve level 1 iteration 0 [l1]",
		"3h20m0s b trigger level 1 iteration 0 [l1]",
		"3h22m0s b acknowledge level 1 iteration 0 [l1]",
		"3h30m0s b resolve level 1 iteration 0 [l1]",
	}, steps(rb))
	require.Equal(t, 2, rb.Summary.AcknowledgementsApplied, "the same acknowledgements")
	require.Empty(t, opts.Acknowledgements[0].Incidents, "the caller's acknowledgements are left as they were")
	var text bytes.Buffer
	require.NoError(t, CompareReplays(ra, rb).WriteText(&text))
	require.Regexp(t, `\nacknowledgements applied +2 +2\nacknowledgements unmatched +1 +1\n`, text.String())

	// A configuration without escalation policies acknowledges nothing,
	// and says so.
	plain := writeReplayConfig(t, dir, "plain", "", replayRules)
	rp, err := Replay(ctx, plain, opts)
	require.NoError(t, err)
	require.Equal(t, 0, rp.Summary.AcknowledgementsApplied)
	require.Equal(t, 3, rp.Summary.AcknowledgementsUnmatched)

	// The ledger: an acknowledgement of alert a, and one of b's incident
	// (an event for each of its firing alerts, here one).
	storage := filepath.Join(dir, "storage")
	now := replayStart
	l, err := openLedger(ledgerOptions{Dir: ledgerPath(storage), Now: func() time.Time { return now }})
	require.NoError(t, err)
	alertOf := func(m string) *Alert {
		ls := model.LabelSet{model.AlertNameLabel: "ErrorsHigh", "model": model.LabelValue(m)}
		return &Alert{Alert: model.Alert{Labels: ls}, Fingerprint: ls.Fingerprint(), Value: math.NaN()}
	}
	l.acknowledge(replayStart.Add(65*time.Minute), alertOf("a"), "alice", "on it")
	l.acknowledgeIncident(replayStart.Add(202*time.Minute), &incident{ID: "real-b", Firing: []string{alertOf("b").Fingerprint.String()}},
		func(string) *Alert { return alertOf("b") }, "bob", "")
	// Before the range: left out.
	l.acknowledge(replayStart.Add(-time.Hour), alertOf("a"), "carol", "")
	l.commit()
	require.NoError(t, l.close())
	acks, err = LedgerAcknowledgements(storage, from, to, nil)
	require.NoError(t, err)
	require.Len(t, acks, 2)
	require.Equal(t, "real-b", acks[1].LedgerIncident)
	opts.Acknowledgements = acks
	rl, err := Replay(ctx, a, opts)
	require.NoError(t, err)
	require.Equal(t, steps(ra), steps(rl), "the humans' acknowledgements, replayed")
	require.Equal(t, 2, rl.Summary.AcknowledgementsApplied)
	require.Equal(t, 0, rl.Summary.AcknowledgementsUnmatched)
	js, err := json.Marshal(rl)
	require.NoError(t, err)
	require.Contains(t, string(js), `"acknowledgements_applied":2,"acknowledgements_unmatched":0`)
	require.Contains(t, string(js), `"by":"bob","alerts":["`+alertOf("b").Fingerprint.String()+`"],"ledger_incident":"real-b","scope":"alerts","incidents":["`, "no grouped event of real-b: its alerts' incidents")

	_, err = LedgerAcknowledgements(filepath.Join(dir, "nope"), from, to, nil)
	require.ErrorContains(t, err, "no alert ledger")
	require.NoError(t, os.WriteFile(acksFile, []byte("- {at: yesterday}\n"), 0o600))
	_, err = LoadReplayAcknowledgements(acksFile, from, to)
	require.ErrorContains(t, err, `line 1: at "yesterday": a duration after the start, RFC 3339 or Unix seconds`)
	require.NoError(t, os.WriteFile(acksFile, []byte(`[{"at": "1h", "labels": {"model": "a"}, "who": "x"}]`), 0o600))
	_, err = LoadReplayAcknowledgements(acksFile, from, to)
	require.ErrorContains(t, err, "field who not found")
}

// Two sibling routes with the same matchers share Alertmanager's group key
// but are an incident each in a replay too, each escalated on its own: the
// replay keys their incidents by the route's id (Route.ID()) and the group
// labels.
func TestReplaySiblingRoutes(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(200, 0, 5, [2]int{60, 100})})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.rules.yml"), []byte(replayRules), 0o600))
	cfg := filepath.Join(dir, "c.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`global: {evaluation_interval: 1m}
rule_files: [c.rules.yml]
route:
  receiver: oncall
  group_by: [model]
  routes:
    - {receiver: slack, matchers: ['model="a"'], continue: true}
    - {receiver: pager, matchers: ['model="a"'], continue: true}
receivers: [{name: oncall}, {name: slack}, {name: pager}, {name: l1}, {name: l2}]
escalation_policies:
  - name: p
    steps: [{notify: [l1]}, {wait: 10m}, {notify: [l2]}]
`), 0o600))
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	acks := []ReplayAcknowledgement{{At: replayStart.Add(65 * time.Minute), Labels: model.LabelSet{"model": "a"}, By: "alice"}}
	r, err := Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: replayStart.Add(199 * time.Minute), Source: src, Acknowledgements: acks})
	require.NoError(t, err)
	require.Len(t, r.Firings, 1)
	require.Equal(t, OutcomePaged, r.Firings[0].Outcome)
	require.Equal(t, 1, r.Summary.Pages)
	slackKey, pagerKey := `{}/{model="a"}/0:{model="a"}`, `{}/{model="a"}/1:{model="a"}`
	require.Equal(t, slackKey, r.Firings[0].Incident, "the firing's incident is its first route's")
	byIncident := map[string][]string{}
	for _, e := range r.Escalations {
		byIncident[e.Incident] = append(byIncident[e.Incident], e.Event)
	}
	require.Equal(t, map[string][]string{slackKey: {"trigger", "acknowledge", "resolve"}, pagerKey: {"trigger", "acknowledge", "resolve"}}, byIncident,
		"acknowledged before level 2, each chain stops: %+v", r.Escalations)
	require.Len(t, r.Acknowledgements, 1)
	require.ElementsMatch(t, []string{slackKey, pagerKey}, r.Acknowledgements[0].Incidents)

	// Unacknowledged, each chain reaches level 2.
	r, err = Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: replayStart.Add(199 * time.Minute), Source: src})
	require.NoError(t, err)
	clear(byIncident)
	for _, e := range r.Escalations {
		byIncident[e.Incident] = append(byIncident[e.Incident], fmt.Sprintf("%s %d", e.Event, e.Level))
	}
	require.Equal(t, map[string][]string{slackKey: {"trigger 1", "escalate 2", "resolve 2"}, pagerKey: {"trigger 1", "escalate 2", "resolve 2"}}, byIncident)
	require.Equal(t, 4, r.Summary.Escalations)
}

// An incident's acknowledgement in the ledger stops, in a replay, the chain
// of that incident's route only: of two sibling routes (continue: true,
// the same matchers) sending the alert to two receivers, the one acknowledged
// stops, the other reaches level 2, as in alertd. The route comes from the
// ledger's grouped events, or from the snapshot opening a later segment.
// When the replayed configuration has no such route, it falls back to
// every incident the alerts fire in, and says so. An alert's
// acknowledgement stops both, as the API does; a file's, with a receiver,
// that receiver's only.
func TestReplayLedgerIncidentAcknowledgementRoute(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(200, 0, 5, [2]int{60, 100})})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.rules.yml"), []byte(replayRules), 0o600))
	config := func(name, second string) string {
		f := filepath.Join(dir, name+".yml")
		require.NoError(t, os.WriteFile(f, []byte(`global: {evaluation_interval: 1m}
rule_files: [c.rules.yml]
route:
  receiver: oncall
  group_by: [model]
  routes:
    - {receiver: slack, matchers: ['model="a"'], continue: true}
    - {receiver: `+second+`, matchers: ['model="a"'], continue: true}
receivers: [{name: oncall}, {name: slack}, {name: `+second+`}, {name: l1}, {name: l2}]
escalation_policies:
  - name: p
    steps: [{notify: [l1]}, {wait: 10m}, {notify: [l2]}]
`), 0o600))
		return f
	}
	cfg, renamed := config("c", "pager"), config("renamed", "pagerduty")
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	from, to := replayStart, replayStart.Add(199*time.Minute)
	ctx := context.Background()
	slackKey, pagerKey := `{}/{model="a"}/0:{model="a"}`, `{}/{model="a"}/1:{model="a"}`
	chains := func(r *ReplayResult) map[string][]string {
		out := map[string][]string{}
		for _, e := range r.Escalations {
			out[e.Incident] = append(out[e.Incident], fmt.Sprintf("%s %d", e.Event, e.Level))
		}
		return out
	}
	stopped := []string{"trigger 1", "acknowledge 1", "resolve 1"}
	escalated := []string{"trigger 1", "escalate 2", "resolve 2"}

	// alertd's ledger: the alert fires at 60m in an incident of each
	// route; at 65m someone acknowledges the pager route's incident. A
	// segment a commit: the acknowledgement's segment knows the incident
	// from its snapshot.
	c, err := alertconfig.LoadFile(cfg)
	require.NoError(t, err)
	rt := newRouting(dispatch.NewRoute(c.Route, nil), nil)
	storage := filepath.Join(dir, "storage")
	now := replayStart
	l, err := openLedger(ledgerOptions{Dir: ledgerPath(storage), MaxSegmentSize: 1, Now: func() time.Time { return now }})
	require.NoError(t, err)
	ls := model.LabelSet{model.AlertNameLabel: "ErrorsHigh", "model": "a"}
	al := &Alert{Alert: model.Alert{Labels: ls}, Fingerprint: ls.Fingerprint(), Value: math.NaN()}
	now = replayStart.Add(60 * time.Minute)
	ids := l.group(now, al, rt.groups(ls))
	require.Len(t, ids, 2)
	l.commit()
	now = replayStart.Add(65 * time.Minute)
	l.acknowledgeIncident(now, l.inc.byID[ids[1]].clone(), func(string) *Alert { return al }, "bob", "")
	l.commit()
	// An alert's acknowledgement, later: of every incident it is in.
	now = replayStart.Add(66 * time.Minute)
	l.acknowledge(now, al, "carol", "")
	l.commit()
	require.NoError(t, l.close())
	segs, err := filepath.Glob(filepath.Join(ledgerPath(storage), "*.jsonl"))
	require.NoError(t, err)
	require.Greater(t, len(segs), 2, "a segment a commit")

	all, err := LedgerAcknowledgements(storage, from, to, nil)
	require.NoError(t, err)
	require.Len(t, all, 2)
	ack := all[0]
	require.Equal(t, ids[1], ack.LedgerIncident)
	require.Equal(t, `{}/{model="a"}`, ack.RouteKey)
	require.Equal(t, "pager", ack.Receiver)
	require.Equal(t, `{}/{model="a"}/1`, ack.Route)
	require.Empty(t, all[1].LedgerIncident)
	require.Empty(t, all[1].RouteKey)

	// The incident's acknowledgement: the pager route's chain stops, the
	// slack route's escalates.
	r, err := Replay(ctx, cfg, ReplayOptions{From: from, To: to, Source: src, Acknowledgements: all[:1]})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{slackKey: escalated, pagerKey: stopped}, chains(r))
	require.Equal(t, []string{pagerKey}, r.Acknowledgements[0].Incidents)
	require.Equal(t, AckScopeRoute, r.Acknowledgements[0].Scope)
	js, err := json.Marshal(r.Acknowledgements[0])
	require.NoError(t, err)
	require.Contains(t, string(js), `"ledger_incident":"`+ids[1]+`","route_key":"{}/{model=\"a\"}","receiver":"pager","route":"{}/{model=\"a\"}/1","group_key":"{}/{model=\"a\"}:{model=\"a\"}","scope":"route","incidents":["{}/{model=\"a\"}/1:{model=\"a\"}"]`)

	// With a configuration that renamed the pager receiver, that route is
	// gone: as before, every incident of the alert.
	rb, err := Replay(ctx, renamed, ReplayOptions{From: from, To: to, Source: src, Acknowledgements: all[:1]})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{slackKey: stopped, pagerKey: stopped}, chains(rb))
	require.Equal(t, AckScopeAlerts, rb.Acknowledgements[0].Scope)
	require.ElementsMatch(t, []string{slackKey, pagerKey}, rb.Acknowledgements[0].Incidents)
	require.Equal(t, AckScopeRoute, r.Acknowledgements[0].Scope, "each replay sets its own")
	require.Equal(t, 0, r.Summary.AcknowledgementsRouteMissing)
	require.Equal(t, 1, rb.Summary.AcknowledgementsRouteMissing)
	var text bytes.Buffer
	require.NoError(t, CompareReplays(r, rb).WriteText(&text))
	require.Regexp(t, `\nacknowledgements applied +1 +1\nacknowledgements unmatched +0 +0\n  incident route gone, by alerts +0 +1\n`, text.String())
	js, err = json.Marshal(rb.Summary)
	require.NoError(t, err)
	require.Contains(t, string(js), `"acknowledgements_route_missing":1`)
	require.Empty(t, all[0].Scope, "the caller's acknowledgements are left as they were")

	// A ledger that did not record the route falls back too.
	unknown := all[0]
	unknown.RouteKey, unknown.Receiver, unknown.Route = "", "", ""
	r, err = Replay(ctx, cfg, ReplayOptions{From: from, To: to, Source: src, Acknowledgements: []ReplayAcknowledgement{unknown}})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{slackKey: stopped, pagerKey: stopped}, chains(r))
	require.Equal(t, AckScopeAlerts, r.Acknowledgements[0].Scope)

	// The alert's acknowledgement (1m later, both still escalated at
	// level 1): every incident it is in.
	r, err = Replay(ctx, cfg, ReplayOptions{From: from, To: to, Source: src, Acknowledgements: all[1:]})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{slackKey: stopped, pagerKey: stopped}, chains(r))
	require.Empty(t, r.Acknowledgements[0].Scope)
	// Each incident's history says it, as alertd's alert acknowledgement
	// does.
	require.Len(t, r.Incidents, 2)
	for _, in := range r.Incidents {
		require.Contains(t, in.History, Decision{Time: replayStart.Add(66 * time.Minute), Stage: "escalate", Action: "acknowledged",
			Reason: "incident " + in.ID + " acknowledged with the alert by carol: escalation stopped"})
		require.Equal(t, "carol", in.Escalation.AcknowledgedBy)
	}

	// A file's acknowledgement may name a receiver.
	acksFile := filepath.Join(dir, "acks.yml")
	require.NoError(t, os.WriteFile(acksFile, []byte("- {at: 65m, labels: {model: a}, receiver: slack, by: alice}\n"), 0o600))
	fileAcks, err := LoadReplayAcknowledgements(acksFile, from, to)
	require.NoError(t, err)
	r, err = Replay(ctx, cfg, ReplayOptions{From: from, To: to, Source: src, Acknowledgements: fileAcks})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{slackKey: stopped, pagerKey: escalated}, chains(r))
	require.Equal(t, []string{slackKey}, r.Acknowledgements[0].Incidents)
}

// A replay writes the escalator's decisions into each incident's history,
// in the words alertd records them live (stage escalate): the policy that
// escalates it, each notification with its level and receivers, an
// acknowledgement and who gave it, and its resolution; with its escalation
// state as GET /api/v1/incidents shows it: the level reached, who was
// notified, and why the chain stopped.
func TestReplayIncidentHistory(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Model a fails from 60m to 100m and is acknowledged at 75m, after
	// level 2; model b fails from 200m to 205m, nobody acknowledges it.
	writeHistory(t, hist, map[string][]float64{
		"errors/a": pattern(300, 0, 5, [2]int{60, 100}),
		"errors/b": pattern(300, 0, 5, [2]int{200, 205}),
	})
	cfg := writeReplayConfig(t, dir, "c", strings.ReplaceAll(replayPolicy, "{{WAIT}}", "10m"), replayRules)
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	at := func(m int) time.Time { return replayStart.Add(time.Duration(m) * time.Minute) }
	acks := []ReplayAcknowledgement{{At: at(75), Labels: model.LabelSet{"model": "a"}, By: "alice"}}
	r, err := Replay(context.Background(), cfg, ReplayOptions{From: replayStart, To: at(299), Source: src, Acknowledgements: acks})
	require.NoError(t, err)

	require.Len(t, r.Incidents, 2)
	a, b := r.Incidents[0], r.Incidents[1]
	history := func(in ReplayIncident) []string {
		var out []string
		for _, d := range in.History {
			require.Equal(t, "escalate", d.Stage)
			out = append(out, fmt.Sprintf("%s %s: %s", d.Time.Sub(replayStart), d.Action, d.Reason))
		}
		return out
	}
	require.Equal(t, r.Firings[0].Incident, a.Incident, "the firing's incident")
	require.Equal(t, "a", string(a.Labels["model"]))
	require.Equal(t, "oncall", a.Receiver)
	require.Equal(t, at(60), a.OpenedAt)
	require.Equal(t, at(100), a.ClosedAt)
	id := a.ID
	require.Equal(t, []string{
		"1h0m0s escalating: incident " + id + ` escalated by policy "pager"`,
		`1h0m0s notified: sent to l1 (trigger, level 1): step 1 of policy "pager": level 1`,
		`1h10m0s notified: sent to l2 (escalate, level 2): step 3 of policy "pager": level 2`,
		"1h15m0s acknowledged: incident " + id + " acknowledged by alice",
		`1h15m0s notified: sent to l1, l2 (acknowledge, level 2): acknowledged by alice`,
		"1h40m0s resolved: incident " + id + " closed: its alerts resolved; escalation stopped",
		`1h40m0s notified: sent to l1, l2 (resolve, level 2): resolved`,
	}, history(a))
	require.NotNil(t, a.Escalation)
	require.Equal(t, "pager", a.Escalation.Policy)
	require.Equal(t, "resolved", a.Escalation.Status)
	require.Equal(t, 2, a.Escalation.Level)
	require.Equal(t, []string{"l1", "l2"}, a.Escalation.Notified)
	require.Equal(t, "alice", a.Escalation.AcknowledgedBy)
	require.Equal(t, at(75), *a.Escalation.AcknowledgedAt)
	require.Equal(t, at(100), *a.Escalation.ResolvedAt)

	require.Equal(t, []string{
		"3h20m0s escalating: incident " + b.ID + ` escalated by policy "pager"`,
		`3h20m0s notified: sent to l1 (trigger, level 1): step 1 of policy "pager": level 1`,
		"3h25m0s resolved: incident " + b.ID + " closed: its alerts resolved; escalation stopped",
		`3h25m0s notified: sent to l1 (resolve, level 1): resolved`,
	}, history(b))
	require.Equal(t, 1, b.Escalation.Level, "resolved before level 2")
	require.Empty(t, b.Escalation.AcknowledgedBy)

	// The JSON report: the replay's fields, the API's words.
	js, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(js), `"incidents":[{"id":"`+id+`","incident":"{}:{model=\"a\"}","labels":{"alertname":"ErrorsHigh","model":"a"},"receiver":"oncall","opened_at":"2026-03-02T01:00:00Z","closed_at":"2026-03-02T01:40:00Z","escalation":{"policy":"pager","status":"resolved","step":`)
	require.Contains(t, string(js), `"level":2,"iteration":0,"notified":["l1","l2"],"acknowledged_by":"alice","acknowledged_at":"2026-03-02T01:15:00Z","resolved_at":"2026-03-02T01:40:00Z","pending":0}`)
	require.Contains(t, string(js), `"history":[{"time":"2026-03-02T01:00:00Z","stage":"escalate","action":"escalating","reason":"incident `+id)
	requireSnakeCase(t, js)
}

// requireSnakeCase fails unless every key of the JSON report's objects is
// snake_case, except those of labels, which are the alerts' label names,
// and of maps keyed by data (the summary's counts by stage and level).
func requireSnakeCase(t *testing.T, js []byte) {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(js, &v))
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				require.Regexp(t, snake, k, "key %q of %s", k, path)
				if k == "labels" || k == "suppressed" || k == "escalations_by_level" {
					continue
				}
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("report", v)
}

// Of sibling routes with the same matchers and the same receiver, an
// incident's acknowledgement from the ledger stops, in a replay, the chain
// of the route whose id (Route.ID()) the ledger recorded. A ledger of an
// older alertd recorded no ids: it filed the groups of such siblings that
// have the same group key (the first and third routes here) under one
// incident, which the first route keeps after an upgrade
// (incidents.find), and the second's, grouping by other labels, under its
// own. The replay tells them apart by the group key, then by position: it
// acknowledges the first route's incident, or the second's, not all three.
func TestReplayLedgerAcknowledgementSameReceiverSiblings(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	writeHistory(t, hist, map[string][]float64{"errors/a": pattern(200, 0, 5, [2]int{60, 100})})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.rules.yml"), []byte(replayRules), 0o600))
	cfg := filepath.Join(dir, "c.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`global: {evaluation_interval: 1m}
rule_files: [c.rules.yml]
route:
  receiver: oncall
  group_by: [model]
  routes:
    - {receiver: pager, matchers: ['model="a"'], continue: true}
    - {receiver: pager, matchers: ['model="a"'], group_by: [model, alertname], continue: true}
    - {receiver: pager, matchers: ['model="a"'], repeat_interval: 1h, continue: true}
receivers: [{name: oncall}, {name: pager}, {name: l1}, {name: l2}]
escalation_policies:
  - name: p
    steps: [{notify: [l1]}, {wait: 10m}, {notify: [l2]}]
`), 0o600))
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	from, to := replayStart, replayStart.Add(199*time.Minute)
	keys := []string{`{}/{model="a"}/0:{model="a"}`, `{}/{model="a"}/1:{alertname="ErrorsHigh", model="a"}`, `{}/{model="a"}/2:{model="a"}`}
	stopped := []string{"trigger 1", "acknowledge 1", "resolve 1"}
	escalated := []string{"trigger 1", "escalate 2", "resolve 2"}
	// only is what the replay escalates when the i-th route's chain alone
	// stops.
	only := func(i int) map[string][]string {
		out := map[string][]string{}
		for j, k := range keys {
			out[k] = escalated
			if j == i {
				out[k] = stopped
			}
		}
		return out
	}

	c, err := alertconfig.LoadFile(cfg)
	require.NoError(t, err)
	rt := newRouting(dispatch.NewRoute(c.Route, nil), nil)
	ls := model.LabelSet{model.AlertNameLabel: "ErrorsHigh", "model": "a"}
	al := &Alert{Alert: model.Alert{Labels: ls}, Fingerprint: ls.Fingerprint(), Value: math.NaN()}
	// ledger writes alertd's ledger: the alert fires at 60m in the
	// groups, and at 65m someone acknowledges the i-th incident.
	n := 0
	ledger := func(groups []alertGroup, i int) []ReplayAcknowledgement {
		n++
		storage := filepath.Join(dir, fmt.Sprint("storage", n))
		now := replayStart
		l, err := openLedger(ledgerOptions{Dir: ledgerPath(storage), Now: func() time.Time { return now }})
		require.NoError(t, err)
		now = replayStart.Add(60 * time.Minute)
		ids := l.group(now, al, groups)
		l.commit()
		now = replayStart.Add(65 * time.Minute)
		l.acknowledgeIncident(now, l.inc.byID[ids[i]].clone(), func(string) *Alert { return al }, "bob", "")
		l.commit()
		require.NoError(t, l.close())
		acks, err := LedgerAcknowledgements(storage, from, to, nil)
		require.NoError(t, err)
		require.Len(t, acks, 1)
		require.Equal(t, `{}/{model="a"}`, acks[0].RouteKey)
		require.Equal(t, "pager", acks[0].Receiver)
		return acks
	}
	replay := func(acks []ReplayAcknowledgement) *ReplayResult {
		r, err := Replay(context.Background(), cfg, ReplayOptions{From: from, To: to, Source: src, Acknowledgements: acks})
		require.NoError(t, err)
		require.Equal(t, AckScopeRoute, r.Acknowledgements[0].Scope)
		return r
	}
	chains := func(r *ReplayResult) map[string][]string {
		out := map[string][]string{}
		for _, e := range r.Escalations {
			out[e.Incident] = append(out[e.Incident], fmt.Sprintf("%s %d", e.Event, e.Level))
		}
		return out
	}

	// This alertd's ledger: each route's incident, by its id.
	for i := range keys {
		acks := ledger(rt.groups(ls), i)
		require.Equal(t, fmt.Sprintf(`{}/{model="a"}/%d`, i), acks[0].Route)
		r := replay(acks)
		require.Equal(t, only(i), chains(r), "route %d", i)
		require.Equal(t, []string{keys[i]}, r.Acknowledgements[0].Incidents)
	}

	// An older alertd's: no route ids, and one incident for the first
	// and third routes' groups (the same group key): its ledger has the
	// grouped events of the first two.
	old := rt.groups(ls)
	for i := range old {
		old[i].Route, old[i].ID = "", old[i].Key
	}
	for i, want := range []int{0, 1} {
		acks := ledger(old[:2], i)
		require.Empty(t, acks[0].Route)
		require.Equal(t, old[i].Key, acks[0].GroupKey)
		r := replay(acks)
		require.Equal(t, only(want), chains(r), "the older alertd's incident %d", i)
		require.Equal(t, []string{keys[want]}, r.Acknowledgements[0].Incidents)
	}
	js, err := json.Marshal(ledger(old[:2], 0)[0])
	require.NoError(t, err)
	require.Contains(t, string(js), `"route_key":"{}/{model=\"a\"}","receiver":"pager","group_key":"{}/{model=\"a\"}:{model=\"a\"}"`)
}
