package alertd

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Only pushed alerts still firing at the start are restored: one whose end
// passed while alertd was down, a rule's (restored from the TSDB) and an
// invalid one are not, and leave the file at the next save. A file that is
// not JSON is an error, and the next save replaces it.
func TestPushedFileRestore(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var put []*amalert.Alert
	s := newStore(prometheus.NewRegistry(), func(as ...*amalert.Alert) error { put = append(put, as...); return nil },
		func(model.LabelSet) []string { return nil }, time.Hour, func() time.Time { return now })
	path := filepath.Join(t.TempDir(), "pushed_alerts.json")
	f := newPushedFile(path, s)

	alert := func(name string, src Source, endsAt time.Time) pushedAlert {
		return pushedAlert{Alert: model.Alert{Labels: model.LabelSet{"alertname": model.LabelValue(name)},
			StartsAt: now.Add(-time.Hour), EndsAt: endsAt}, Source: src, UpdatedAt: now.Add(-time.Minute), Timeout: true,
			Received: &Decision{Time: now.Add(-time.Hour), Stage: "intake", Action: "received", Reason: "posted"}}
	}
	invalid := alert("", SourcePrometheus, now.Add(time.Hour))
	invalid.Labels = model.LabelSet{}
	require.NoError(t, writeJSON(path, pushedState{Alerts: []pushedAlert{
		alert("Firing", SourceAlertmanager, now.Add(time.Hour)),
		alert("Ended", SourceAlertmanager, now.Add(-time.Second)),
		alert("Rule", SourceRule, now.Add(time.Hour)),
		invalid,
	}}))
	n, err := f.restore(t.Context(), now)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, put, 1)
	require.Equal(t, model.LabelSet{"alertname": "Firing"}, put[0].Labels)
	require.True(t, put[0].Timeout)
	snap := s.snapshot()
	require.Len(t, snap, 1)
	require.Equal(t, SourceAlertmanager, snap[0].Source)
	require.True(t, now.Add(time.Hour).Equal(snap[0].EndsAt))
	require.Equal(t, []string{"intake/received", "intake/restored"}, actions(snap[0].History))

	require.NoError(t, f.save(now))
	var st pushedState
	_, err = readJSON(path, &st)
	require.NoError(t, err)
	require.Len(t, st.Alerts, 1)
	require.Equal(t, model.LabelSet{"alertname": "Firing"}, st.Alerts[0].Labels)

	require.NoError(t, os.WriteFile(path, []byte(`{"alerts":[`), 0o644))
	g := newPushedFile(path, s)
	_, err = g.restore(t.Context(), now)
	require.ErrorContains(t, err, "pushed_alerts.json")
	require.NoError(t, g.save(now), "the file is written again after a failed restore")
	_, err = readJSON(path, &st)
	require.NoError(t, err)
}

// The loop saves the pushed alerts every tick: a save with nothing changed
// since the last write neither writes nor copies and sorts the alerts (it
// allocates nothing), and the file holds them by fingerprint.
func TestPushedFileSaveUnchanged(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := newStore(prometheus.NewRegistry(), func(...*amalert.Alert) error { return nil },
		func(model.LabelSet) []string { return nil }, time.Hour, func() time.Time { return now })
	f := newPushedFile(filepath.Join(t.TempDir(), "pushed_alerts.json"), s)
	var written []pushedState
	f.write = func(path string, v any) error {
		written = append(written, v.(pushedState))
		return writeJSON(path, v)
	}
	push := func(names ...string) {
		t.Helper()
		var as []*Alert
		for _, n := range names {
			as = append(as, &Alert{Alert: model.Alert{Labels: model.LabelSet{"alertname": model.LabelValue(n)},
				StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}, Value: math.NaN()})
		}
		require.NoError(t, s.take(t.Context(), now, SourcePrometheus, as, "received", "posted"))
	}
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("A%d", i))
	}
	push(names...)

	require.NoError(t, f.save(now))
	require.Len(t, written, 1)
	require.Len(t, written[0].Alerts, 200)
	require.True(t, slices.IsSortedFunc(written[0].Alerts, func(x, y pushedAlert) int {
		return cmp.Compare(x.Labels.Fingerprint(), y.Labels.Fingerprint())
	}), "the alerts are sorted by fingerprint")

	allocs := testing.AllocsPerRun(10, func() { require.NoError(t, f.save(now.Add(time.Second))) })
	require.Len(t, written, 1, "nothing changed: nothing written")
	require.Zero(t, allocs, "nothing changed: the alerts are not copied and sorted")

	push("B")
	require.NoError(t, f.save(now.Add(2*time.Second)))
	require.Len(t, written, 2)
	require.Len(t, written[1].Alerts, 201)
}
