package alertd

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

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
	require.Empty(t, r.dueSchedules(at("2026-03-28T12:00:00Z")))
	require.Empty(t, r.dueSchedules(at("2026-03-29T01:29:59Z")))
	// 01:30 UTC on the day Berlin springs forward is 03:30 CEST: one run.
	require.Equal(t, map[string]time.Time{"nightly": at("2026-03-29T01:30:00Z")}, r.dueSchedules(at("2026-03-29T01:30:00Z")))
	require.Empty(t, r.dueSchedules(at("2026-03-29T01:31:00Z")), "once per slot")

	// A restart within the slot runs nothing again.
	r = open()
	require.Empty(t, r.dueSchedules(at("2026-03-29T08:00:00Z")))

	// Down from 2026-10-24 until 2026-10-26 12:00 (Berlin falls back on
	// the 25th): the missed slots run once, as the latest.
	r = open()
	require.Equal(t, map[string]time.Time{"nightly": at("2026-10-26T01:30:00Z")}, r.dueSchedules(at("2026-10-26T12:00:00Z")))
	require.Empty(t, r.dueSchedules(at("2026-10-26T12:01:00Z")))
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
	require.Empty(t, r.dueSchedules(day.Add(time.Hour)))
	require.Len(t, r.dueSchedules(day.Add(2*time.Hour)), 1, "02:00")

	// At 10:00 it moves to 03:00: the next run is tomorrow at 03:00.
	r.set([]*alertconfig.Action{scheduled("nightly", 24*time.Hour, 3*time.Hour)})
	require.Empty(t, r.dueSchedules(day.Add(10*time.Hour)), "a changed schedule ran at once")
	require.Empty(t, r.dueSchedules(day.Add(26*time.Hour)), "02:00 is no slot any more")
	require.Equal(t, map[string]time.Time{"nightly": day.Add(27 * time.Hour)}, r.dueSchedules(day.Add(27*time.Hour)))

	// Every hour now: the slot in progress passes, the next runs.
	r.set([]*alertconfig.Action{scheduled("nightly", time.Hour, 0)})
	require.Empty(t, r.dueSchedules(day.Add(27*time.Hour+30*time.Minute)), "a changed schedule ran at once")
	require.Len(t, r.dueSchedules(day.Add(28*time.Hour)), 1)

	// Removed for a week, then added back: a new action.
	r.set(nil)
	require.Empty(t, r.dueSchedules(day.Add(30*time.Hour)))
	r.set([]*alertconfig.Action{scheduled("nightly", time.Hour, 0)})
	require.Empty(t, r.dueSchedules(day.Add(8*24*time.Hour+30*time.Minute)), "an action added back ran at once")
	require.Len(t, r.dueSchedules(day.Add(8*24*time.Hour+time.Hour)), 1)
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
	require.Equal(t, map[string]time.Time{"nightly": day.Add(2 * time.Hour)}, r.dueSchedules(day.Add(5*time.Hour)))
}
