package alertd

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// settableClock is a clock a test sets.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settableClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// openTestLedger opens a ledger in dir with its log in logs.
func openTestLedger(t *testing.T, dir string, clock *settableClock, mod func(*ledgerOptions)) (*ledger, *prometheustest.SyncBuffer) {
	t.Helper()
	logs := &prometheustest.SyncBuffer{}
	o := ledgerOptions{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: prometheus.NewRegistry(), Now: clock.now}
	if mod != nil {
		mod(&o)
	}
	l, err := openLedger(o)
	require.NoError(t, err)
	return l, logs
}

// script records events as they are, numbering them, and commits them.
func script(t *testing.T, l *ledger, events ...Event) {
	t.Helper()
	l.mu.Lock()
	for _, e := range events {
		l.record(pendingEvent{e: e, tta: -1, ttr: -1})
	}
	l.mu.Unlock()
	l.commit()
}

// The report of a scripted week, computed by hand:
//
//	A, B  fire at 01:00 on day 1 and page together (one page); A is
//	      acknowledged after 11m, resolves after 1h, a true positive; B
//	      resolves after 30m, a false positive.
//	C     fires on day 2, held, released and paged (suppressed, then
//	      confirmed), acknowledged after 32m, not actionable.
//	D     flaps: fires, suppressed (flap), resolves after 10m, twice; a
//	      true positive on day 3 (suppressed, then confirmed).
//	E     fires on day 3, silenced, resolves after 1h; no verdict.
//	F     fires and pages twice on day 3; no verdict.
//	G     fires and pages before the window: not counted.
func TestReportComputation(t *testing.T) {
	t0 := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const day = 24 * time.Hour
	ev := func(typ, fp string, when time.Duration, mod ...func(*Event)) Event {
		e := Event{Time: at(when), Event: typ, Fingerprint: fp, Labels: model.LabelSet{"alertname": model.LabelValue("Alert" + fp[15:])}}
		for _, m := range mod {
			m(&e)
		}
		return e
	}
	starts := func(d time.Duration) func(*Event) { return func(e *Event) { e.StartsAt = at(d) } }
	ends := func(s, d time.Duration) func(*Event) { return func(e *Event) { e.StartsAt, e.EndsAt = at(s), at(d) } }
	reason := func(r string) func(*Event) { return func(e *Event) { e.Reason = r } }
	page := func(p string) func(*Event) { return func(e *Event) { e.Page, e.Receiver = p, "pager" } }
	verdict := func(v string) func(*Event) { return func(e *Event) { e.Verdict = v } }
	const (
		a, b, c, d = "000000000000000a", "000000000000000b", "000000000000000c", "000000000000000d"
		e, f, g    = "000000000000000e", "000000000000000f", "0000000000000001"
	)
	events := []Event{
		ev(eventFired, g, -time.Hour, starts(-time.Hour)),
		ev(eventPaged, g, -time.Hour, page("p0")),

		ev(eventFired, a, time.Hour, starts(time.Hour)),
		ev(eventFired, b, time.Hour, starts(time.Hour)),
		ev(eventPaged, a, time.Hour+time.Minute, page("p1")),
		ev(eventPaged, b, time.Hour+time.Minute, page("p1")),
		ev(eventAcknowledged, a, time.Hour+11*time.Minute),
		ev(eventResolved, b, 90*time.Minute, ends(time.Hour, 90*time.Minute)),
		ev(eventResolved, a, 2*time.Hour, ends(time.Hour, 2*time.Hour)),
		ev(eventVerdict, a, 3*time.Hour, verdict(verdictTruePositive)),
		ev(eventVerdict, b, 3*time.Hour, verdict(verdictFalsePositive)),

		ev(eventFired, c, day, starts(day)),
		ev(eventSuppressed, c, day, reason("hold")),
		ev(eventReleased, c, day+2*time.Minute),
		ev(eventPaged, c, day+2*time.Minute, page("p2")),
		ev(eventAcknowledged, c, day+32*time.Minute),
		ev(eventAcknowledged, c, day+40*time.Minute), // only the first counts
		ev(eventVerdict, c, day+time.Hour, verdict(verdictNotActionable)),

		ev(eventFired, d, day+5*time.Hour, starts(day+5*time.Hour)),
		ev(eventSuppressed, d, day+5*time.Hour, reason("flap")),
		ev(eventResolved, d, day+5*time.Hour+10*time.Minute, ends(day+5*time.Hour, day+5*time.Hour+10*time.Minute)),
		ev(eventFired, d, day+6*time.Hour, starts(day+6*time.Hour)),
		ev(eventSuppressed, d, day+6*time.Hour, reason("flap")),
		ev(eventResolved, d, day+6*time.Hour+10*time.Minute, ends(day+6*time.Hour, day+6*time.Hour+10*time.Minute)),

		ev(eventVerdict, d, 2*day, verdict(verdictTruePositive)),
		ev(eventFired, e, 2*day+time.Hour, starts(2*day+time.Hour)),
		ev(eventSuppressed, e, 2*day+time.Hour, reason("silence")),
		ev(eventResolved, e, 2*day+2*time.Hour, ends(2*day+time.Hour, 2*day+2*time.Hour)),
		ev(eventFired, f, 2*day+3*time.Hour, starts(2*day+3*time.Hour)),
		ev(eventPaged, f, 2*day+3*time.Hour, page("p3")),
		ev(eventPaged, f, 2*day+4*time.Hour, page("p4")),
	}
	clock := &settableClock{t: t0}
	l, _ := openTestLedger(t, t.TempDir(), clock, nil)
	defer l.close()
	script(t, l, events...)

	rep, err := l.report(t0, t0.Add(3*day-time.Second))
	require.NoError(t, err)
	require.Equal(t, 4, rep.Pages.Total)
	require.Equal(t, []reportDays{{"2024-03-04", 1}, {"2024-03-05", 1}, {"2024-03-06", 2}}, rep.Pages.PerDay)
	require.Equal(t, 7, rep.AlertsFired)
	require.Equal(t, 4, rep.Suppressed.Total)
	require.Equal(t, map[string]int{"hold": 1, "flap": 2, "silence": 1}, rep.Suppressed.ByReason)
	require.Equal(t, 4, rep.Precision.PagedAlerts)
	require.Equal(t, 1, rep.Precision.TruePositive)
	require.Equal(t, 1, rep.Precision.FalsePositive)
	require.Equal(t, 1, rep.Precision.NotActionable)
	require.NotNil(t, rep.Precision.Ratio)
	require.InDelta(t, 1.0/3, *rep.Precision.Ratio, 1e-12)
	require.Equal(t, 2, rep.SuppressedConfirmed.Count)
	require.Equal(t, []string{c, d}, rep.SuppressedConfirmed.Fingerprints)
	require.Equal(t, 2, rep.Flaps.Suppressed)
	require.Equal(t, 12, rep.Flaps.StateChanges, "7 fired, 5 resolved")
	require.Equal(t, 2, rep.Acknowledged)
	require.NotNil(t, rep.MeanTimeToAcknowledge)
	require.InDelta(t, (660.0+1920)/2, *rep.MeanTimeToAcknowledge, 1e-9)
	require.Equal(t, 5, rep.Resolved)
	require.NotNil(t, rep.MeanTimeToResolve)
	require.InDelta(t, (3600.0+1800+600+600+3600)/5, *rep.MeanTimeToResolve, 1e-9)
	require.Equal(t, map[string]int{verdictTruePositive: 2, verdictFalsePositive: 1, verdictNotActionable: 1}, rep.Verdicts)

	// A window with nothing in it: no precision, no mean times.
	rep, err = l.report(t0.Add(10*day), t0.Add(11*day))
	require.NoError(t, err)
	require.Zero(t, rep.Pages.Total)
	require.Len(t, rep.Pages.PerDay, 2)
	require.Nil(t, rep.Precision.Ratio)
	require.Nil(t, rep.MeanTimeToAcknowledge)
	require.Nil(t, rep.MeanTimeToResolve)
	require.Empty(t, rep.SuppressedConfirmed.Fingerprints)
}

// firingAlert is a firing alert with these labels, started at t.
func firingAlert(ls model.LabelSet, t time.Time) *Alert {
	a := &Alert{Alert: model.Alert{Labels: ls, StartsAt: t}, Fingerprint: ls.Fingerprint(), Source: SourcePrometheus, Value: math.NaN()}
	return a
}

// A crash in the middle of a write leaves a torn last line: it is cut off
// with a warning, what was before it is kept, and writing goes on on a
// line of its own. A corrupt line in the middle is skipped with a warning.
func TestLedgerTruncatedLine(t *testing.T) {
	t0 := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	clock := &settableClock{t: t0}
	dir := t.TempDir()
	l, _ := openTestLedger(t, dir, clock, nil)
	x := firingAlert(model.LabelSet{"alertname": "X"}, t0)
	require.Equal(t, eventFired, l.observe(t0, x))
	l.suppressed(t0, x, "hold", "held")
	l.commit()
	require.NoError(t, l.close())

	segs, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.NoError(t, err)
	require.Len(t, segs, 1)
	good, err := os.Stat(segs[0])
	require.NoError(t, err)
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"seq":4,"time":"2024-03-04T00:00:01Z","event":"resol`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	l, logs := openTestLedger(t, dir, clock, nil)
	require.Contains(t, logs.String(), "Skipping an incomplete last line of the ledger")
	require.Contains(t, logs.String(), "Cutting off a torn or corrupt end of the ledger")
	fi, err := os.Stat(segs[0])
	require.NoError(t, err)
	require.Equal(t, good.Size(), fi.Size(), "the torn line was cut off")
	// What was written before is known: X fires, held.
	require.Empty(t, l.observe(t0, x), "X was recorded as firing again")
	l.suppressed(t0, x, "hold", "held")
	resolved := *x
	resolved.EndsAt = t0.Add(time.Minute)
	clock.set(t0.Add(time.Minute))
	require.Equal(t, eventResolved, l.observe(t0.Add(time.Minute), &resolved))
	l.commit()
	require.NoError(t, l.close())

	// A corrupt line in the middle is skipped.
	b, err := os.ReadFile(segs[0])
	require.NoError(t, err)
	lines := splitLines(b)
	require.Len(t, lines, 4, "snapshot, fired, suppressed, resolved")
	corrupt := append(append(append([]byte{}, lines[0]...), lines[1]...), []byte("not json\n")...)
	for _, ln := range lines[2:] {
		corrupt = append(corrupt, ln...)
	}
	require.NoError(t, os.WriteFile(segs[0], corrupt, 0o644))
	l, logs = openTestLedger(t, dir, clock, nil)
	defer l.close()
	require.Contains(t, logs.String(), "Skipping a corrupt line of the ledger")
	var got []string
	require.NoError(t, l.read(t0, t0.Add(time.Hour), func(e *Event) { got = append(got, e.Event) }))
	require.Equal(t, []string{eventFired, eventSuppressed, eventResolved}, got)
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

// Segments rotate by size, each opening with a snapshot of the state, so
// that pruning old segments by retention loses no state: an alert that
// fired long ago and still fires is not recorded again after a restart.
func TestLedgerRotationAndRetention(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &settableClock{t: t0}
	dir := t.TempDir()
	small := func(o *ledgerOptions) { o.MaxSegmentSize, o.Retention = 1, 90*24*time.Hour }
	l, _ := openTestLedger(t, dir, clock, small)
	old := firingAlert(model.LabelSet{"alertname": "Old"}, t0)
	require.Equal(t, eventFired, l.observe(t0, old))
	l.commit()
	later := t0.Add(100 * 24 * time.Hour)
	clock.set(later)
	for i := range 3 {
		a := firingAlert(model.LabelSet{"alertname": "New", "i": model.LabelValue(rune('a' + i))}, later)
		require.Equal(t, eventFired, l.observe(later, a))
		l.commit()
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.Len(t, segs, 5, "one segment per commit, and the first")
	l.prune(later)
	segs, _ = filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.Len(t, segs, 4, "the segment of 100 days ago is gone")
	require.NoError(t, l.close())

	l, logs := openTestLedger(t, dir, clock, small)
	defer l.close()
	require.NotContains(t, logs.String(), "level=WARN")
	require.Empty(t, l.observe(later, old), "the old alert still fires: not recorded again")
	var n int
	require.NoError(t, l.read(t0, later, func(*Event) { n++ }))
	require.Equal(t, 3, n, "the old alert's fired event is past retention")
}

// The "rule" stage suppresses what a rule's matchers select when the value
// meets its condition, until it expires.
func TestSuppressionRuleStage(t *testing.T) {
	now := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	s, err := newSuppressions(filepath.Join(t.TempDir(), "s.json"))
	require.NoError(t, err)
	ms, err := parseSilenceMatchers([]string{`alertname="Drift"`})
	require.NoError(t, err)
	cond, err := parseCondition("value < 0.3")
	require.NoError(t, err)
	require.NoError(t, s.add(&suppressionRule{ID: "r1", Matchers: []string{`alertname="Drift"`}, Condition: "value < 0.3",
		ExpiresAt: now.Add(time.Hour), CreatedBy: "alice", matchers: ms, cond: cond}))
	for _, tc := range []struct {
		name   string
		ls     model.LabelSet
		value  float64
		at     time.Time
		reason string
	}{
		{"below", model.LabelSet{"alertname": "Drift"}, 0.2, now, "suppressed by rule r1 until 2024-03-04T01:00:00Z (value 0.2 < 0.3), created by alice"},
		{"above", model.LabelSet{"alertname": "Drift"}, 0.5, now, ""},
		{"unknown value", model.LabelSet{"alertname": "Drift"}, math.NaN(), now, ""},
		{"other alert", model.LabelSet{"alertname": "Other"}, 0.1, now, ""},
		{"expired", model.LabelSet{"alertname": "Drift"}, 0.2, now.Add(time.Hour), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := firingAlert(tc.ls, now)
			a.Value = tc.value
			d := s.Process(context.Background(), tc.at, a)
			require.Equal(t, tc.reason != "", a.Suppressed)
			require.Equal(t, tc.reason, d.Reason)
		})
	}
	// Rules survive a restart.
	s2, err := newSuppressions(s.file.path)
	require.NoError(t, err)
	require.Len(t, s2.list(byEnd), 1)
	require.True(t, s2.list(byEnd)[0].selects(model.LabelSet{"alertname": "Drift"}, 0.1))
}

func TestParseConditionAndJustAbove(t *testing.T) {
	for _, s := range []string{"value<1", " value >= -2.5 ", "value <= 1e3", "value > 0"} {
		_, err := parseCondition(s)
		require.NoError(t, err, s)
	}
	for s, want := range map[string]string{
		"value = 1":   `invalid condition "value = 1": want "value OP NUMBER" with OP one of <, <=, >, >=`,
		"score < 1":   `invalid condition "score < 1": want "value OP NUMBER" with OP one of <, <=, >, >=`,
		"value < abc": `invalid condition "value < abc": "abc" is not a number`,
		"value < NaN": `invalid condition "value < NaN": "NaN" is not a number`,
	} {
		_, err := parseCondition(s)
		require.EqualError(t, err, want)
	}
	for v, want := range map[float64]float64{0.27: 0.28, 0.2: 0.21, 123: 130, 0: 0.01, 1: 1.1, -0.27: -0.26, 0.3: 0.31, 9.99: 10} {
		require.Equal(t, want, justAbove(v), "justAbove(%v)", v)
	}
}

// A proposal after a false positive: the alertname and identifying labels
// (not the pod), deterministically ordered, with a condition just above
// the largest value operators called noise for that pattern.
func TestProposal(t *testing.T) {
	now := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	clock := &settableClock{t: now}
	l, _ := openTestLedger(t, t.TempDir(), clock, nil)
	defer l.close()
	a := &Alertd{ledger: l, opts: Options{LedgerRetention: defaultLedgerRetention}}
	v := func(x float64) *float64 { return &x }
	ls := func(pod string) model.LabelSet {
		return model.LabelSet{"alertname": "Drift", "model": "fraud", "feature": "age", "pod": model.LabelValue(pod)}
	}
	script(t, l,
		Event{Time: now.Add(-2 * time.Hour), Event: eventVerdict, Fingerprint: ls("p1").Fingerprint().String(), Labels: ls("p1"), Verdict: verdictFalsePositive, Value: v(0.27)},
		Event{Time: now.Add(-time.Hour), Event: eventVerdict, Fingerprint: ls("p2").Fingerprint().String(), Labels: ls("p2"), Verdict: verdictTruePositive, Value: v(0.9)},
		Event{Time: now.Add(-time.Hour), Event: eventVerdict, Fingerprint: "0000000000000001", Labels: model.LabelSet{"alertname": "Other"}, Verdict: verdictFalsePositive, Value: v(5)},
	)
	al := firingAlert(ls("p3"), now)
	al.Value = 0.22
	p := a.proposal(al, now)
	require.Equal(t, []string{`alertname="Drift"`, `feature="age"`, `model="fraud"`}, p.Matchers)
	require.Equal(t, "value < 0.28", p.Condition)
	require.Equal(t, "1w", p.Duration)

	// Without known values, no condition.
	al = firingAlert(model.LabelSet{"alertname": "Pushed", "instance": "a:1", "job": "x"}, now)
	p = a.proposal(al, now)
	require.Equal(t, []string{`alertname="Pushed"`, `job="x"`}, p.Matchers)
	require.Empty(t, p.Condition)
}

// A ledger write that fails partway (the disk fills) leaves the segment as
// it was, the part written cut off, and its events are written at the next
// commit: the ledger already did so, and a restart reads them all back.
func TestLedgerFailedWrite(t *testing.T) {
	statefiletest.WithFileLimit(t, func(limit func(int64)) {
		t0 := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
		clock := &settableClock{t: t0}
		dir := t.TempDir()
		l, logs := openTestLedger(t, dir, clock, nil)
		x := firingAlert(model.LabelSet{"alertname": "X"}, t0)
		require.Equal(t, eventFired, l.observe(t0, x))
		l.commit()
		segs, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		require.NoError(t, err)
		require.Len(t, segs, 1)
		before, err := os.ReadFile(segs[0])
		require.NoError(t, err)

		l.suppressed(t0, x, "hold", "held")
		limit(int64(len(before)) + 10)
		l.commit()
		limit(-1)
		require.Contains(t, logs.String(), "Failed to write the alert ledger, will retry")
		require.Contains(t, logs.String(), "file too large")
		after, err := os.ReadFile(segs[0])
		require.NoError(t, err)
		require.Equal(t, string(before), string(after), "what the failed write wrote is cut off")

		l.commit()
		require.NoError(t, l.close())
		var events []string
		l2, _ := openTestLedger(t, dir, clock, nil)
		require.NoError(t, l2.read(t0, t0, func(e *Event) { events = append(events, e.Event) }))
		require.NoError(t, l2.close())
		require.Equal(t, []string{eventFired, eventSuppressed}, events)
	})
}
