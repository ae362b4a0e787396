package alertd

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// runDue returns the schedules due at now (dueSchedules) and reports them
// run (scheduleRan), as tickActions does when their actions went into the
// outbox.
func runDue(r *actionRunner, now time.Time) map[string]time.Time {
	due := r.dueSchedules(now)
	for n, slot := range due {
		r.scheduleRan(n, slot, now)
	}
	return due
}

// scheduled returns an action run every every, offset past each multiple.
func scheduled(name string, every, offset time.Duration) *alertconfig.Action {
	return &alertconfig.Action{Name: name, Trigger: alertconfig.ActionTrigger{
		Schedule: &alertconfig.ActionSchedule{Every: model.Duration(every), Offset: model.Duration(offset)}}}
}

// Schedules are in UTC from the Unix epoch: the days the clocks change
// somewhere have no missing or doubled slot. The slot in progress when an
// action appears passes without a run; the next runs. A restart keeps the
// last slot: the slots missed while alertd was down run once when it is
// back, and a restart within a slot runs nothing.
func TestActionScheduleSlots(t *testing.T) {
	dir := t.TempDir()
	open := func() *actionRunner {
		r, err := newActionRunner(dir, prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
		require.NoError(t, err)
		r.set([]*alertconfig.Action{scheduled("nightly", 24*time.Hour, 90*time.Minute)})
		return r
	}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return tm
	}
	r := open()
	// It appears on 2026-03-28 at 12:00 UTC: the slot of 01:30 that day
	// is not run.
	require.Empty(t, runDue(r, at("2026-03-28T12:00:00Z")))
	require.Empty(t, runDue(r, at("2026-03-29T01:29:59Z")))
	// 01:30 UTC on the day Berlin springs forward is 03:30 CEST: one run.
	require.Equal(t, map[string]time.Time{"nightly": at("2026-03-29T01:30:00Z")}, runDue(r, at("2026-03-29T01:30:00Z")))
	require.Empty(t, runDue(r, at("2026-03-29T01:31:00Z")), "once per slot")

	// A restart within the slot runs nothing again.
	r = open()
	require.Empty(t, runDue(r, at("2026-03-29T08:00:00Z")))

	// Down from 2026-10-24 until 2026-10-26 12:00 (Berlin falls back on
	// the 25th): the missed slots run once, as the latest.
	r = open()
	require.Equal(t, map[string]time.Time{"nightly": at("2026-10-26T01:30:00Z")}, runDue(r, at("2026-10-26T12:00:00Z")))
	require.Empty(t, runDue(r, at("2026-10-26T12:01:00Z")))
}

// A schedule changed by a reload, or an action removed and added back
// later, starts anew: the slot in progress passes without a run, as for a
// new action. It does not run at once because the new schedule's slot is
// later than the old one's.
func TestActionScheduleChanged(t *testing.T) {
	r, err := newActionRunner(t.TempDir(), prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
	require.NoError(t, err)
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	r.set([]*alertconfig.Action{scheduled("nightly", 24*time.Hour, 2*time.Hour)})
	require.Empty(t, runDue(r, day.Add(time.Hour)))
	require.Len(t, runDue(r, day.Add(2*time.Hour)), 1, "02:00")

	// At 10:00 it moves to 03:00: the next run is tomorrow at 03:00.
	r.set([]*alertconfig.Action{scheduled("nightly", 24*time.Hour, 3*time.Hour)})
	require.Empty(t, runDue(r, day.Add(10*time.Hour)), "a changed schedule ran at once")
	require.Empty(t, runDue(r, day.Add(26*time.Hour)), "02:00 is no slot any more")
	require.Equal(t, map[string]time.Time{"nightly": day.Add(27 * time.Hour)}, runDue(r, day.Add(27*time.Hour)))

	// Every hour now: the slot in progress passes, the next runs.
	r.set([]*alertconfig.Action{scheduled("nightly", time.Hour, 0)})
	require.Empty(t, runDue(r, day.Add(27*time.Hour+30*time.Minute)), "a changed schedule ran at once")
	require.Len(t, runDue(r, day.Add(28*time.Hour)), 1)

	// Removed for a week, then added back: a new action.
	r.set(nil)
	require.Empty(t, runDue(r, day.Add(30*time.Hour)))
	r.set([]*alertconfig.Action{scheduled("nightly", time.Hour, 0)})
	require.Empty(t, runDue(r, day.Add(8*24*time.Hour+30*time.Minute)), "an action added back ran at once")
	require.Len(t, runDue(r, day.Add(8*24*time.Hour+time.Hour)), 1)
}

// A state file written before alertd kept the slots' schedules still runs
// the slots missed while alertd was down.
func TestActionScheduleOldState(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "actions.json", `{"requests": [], "slots": {"nightly": "2026-06-01T02:00:00Z"}}`)
	r, err := newActionRunner(dir, prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
	require.NoError(t, err)
	r.set([]*alertconfig.Action{scheduled("nightly", 24*time.Hour, 2*time.Hour)})
	day := time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)
	require.Equal(t, map[string]time.Time{"nightly": day.Add(2 * time.Hour)}, runDue(r, day.Add(5*time.Hour)))
}

// A due slot stays due, in memory and in the state file, until it is
// reported run: a crash before its action is in the outbox leaves it due
// after the restart, with the same slot (so the same idempotency key).
// One the outbox refused is retried 1, 2, 4 … passes later, at most the
// max wait, and slots missed meanwhile run once, as the latest.
func TestActionScheduleDueUntilRun(t *testing.T) {
	dir := t.TempDir()
	open := func() *actionRunner {
		r, err := newActionRunner(dir, prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
		require.NoError(t, err)
		r.set([]*alertconfig.Action{scheduled("hourly", time.Hour, 0)})
		r.retryMaxWait = 4
		return r
	}
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	r := open()
	require.Empty(t, runDue(r, day.Add(30*time.Minute)))
	due := map[string]time.Time{"hourly": day.Add(time.Hour)}
	require.Equal(t, due, r.dueSchedules(day.Add(time.Hour)))
	require.Equal(t, due, r.dueSchedules(day.Add(time.Hour+time.Second)), "not run: still due")

	// A crash before its action is in the outbox: due after the restart.
	r = open()
	require.Equal(t, due, r.dueSchedules(day.Add(time.Hour+time.Minute)))

	// The outbox refuses it: the passes it waits double, up to 4.
	var ran []int
	for pass := range 40 {
		now := day.Add(time.Hour + time.Duration(pass)*15*time.Second)
		if len(r.dueSchedules(now)) == 1 {
			ran = append(ran, pass)
			r.scheduleRefused("hourly", errNoSpace, now)
		}
	}
	require.Equal(t, []int{0, 1, 3, 7, 11, 15, 19, 23, 27, 31, 35, 39}, ran)
	require.Equal(t, 11.0, testutil.ToFloat64(r.enqueueRetries.WithLabelValues("hourly", triggerSchedule)), "every attempt after the first refusal")

	// Past the next slot: one run, of the latest slot; then none until
	// the next.
	var got map[string]time.Time
	for pass := range 10 {
		if got = r.dueSchedules(day.Add(2*time.Hour + time.Duration(pass)*15*time.Second)); len(got) > 0 {
			break
		}
	}
	require.Equal(t, map[string]time.Time{"hourly": day.Add(2 * time.Hour)}, got)
	r.scheduleRan("hourly", got["hourly"], day.Add(2*time.Hour))
	require.Empty(t, r.dueSchedules(day.Add(2*time.Hour+time.Minute)))
	require.Empty(t, open().dueSchedules(day.Add(2*time.Hour+time.Minute)), "the run slot was not saved")
	require.Empty(t, r.schedRetries, "a run ends the retries")
}
