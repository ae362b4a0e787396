package alertd

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/stretchr/testify/require"
)

// Maintenance windows follow Alertmanager's time intervals on the days the
// clocks change: times are wall-clock minutes in the interval's location,
// end exclusive. A window in the hour that does not exist is shorter that
// day; one in the hour that happens twice applies in both. The windows are
// the same after a restart (they are stored with their location) as before.
func TestMaintenanceWindowDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }

	windows := map[string]string{
		"berlin-night":  `[{"times":[{"start_time":"01:30","end_time":"02:30"}],"location":"Europe/Berlin"}]`,
		"berlin-autumn": `[{"times":[{"start_time":"00:00","end_time":"02:30"}],"location":"Europe/Berlin"}]`,
		"ny-night":      `[{"times":[{"start_time":"01:30","end_time":"02:30"}],"location":"America/New_York"}]`,
		"weekend-overnight": `[{"times":[{"start_time":"22:00","end_time":"24:00"}],"weekdays":["saturday"],"location":"Europe/Berlin"},
			{"times":[{"start_time":"00:00","end_time":"02:00"}],"weekdays":["sunday"],"location":"Europe/Berlin"}]`,
	}
	path := filepath.Join(t.TempDir(), "maintenance_windows.json")
	m, err := newMaintenance(path)
	require.NoError(t, err)
	for name, raw := range windows {
		var tis []timeinterval.TimeInterval
		d := json.NewDecoder(bytes.NewReader([]byte(raw)))
		d.DisallowUnknownFields()
		require.NoError(t, d.Decode(&tis), name)
		w := &maintenanceWindow{ID: name, Name: name, Matchers: []string{`a="b"`}, TimeIntervals: tis, Source: "api"}
		require.NoError(t, w.compile())
		require.NoError(t, m.add(w))
	}
	restarted, err := newMaintenance(path)
	require.NoError(t, err)

	for _, tc := range []struct {
		window string
		now    time.Time
		state  string
		what   string
	}{
		// Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
		{"berlin-night", time.Date(2026, 3, 29, 1, 29, 0, 0, berlin), "inactive", "before the start"},
		{"berlin-night", time.Date(2026, 3, 29, 1, 30, 0, 0, berlin), "active", "the start is inclusive"},
		{"berlin-night", utc(2026, 3, 29, 0, 59), "active", "01:59 CET"},
		{"berlin-night", utc(2026, 3, 29, 1, 0), "inactive", "03:00 CEST: 02:00 to 02:30 never comes, the window is 30 minutes that day"},
		{"berlin-night", time.Date(2026, 3, 30, 2, 29, 0, 0, berlin), "active", "the next day, whole again"},
		{"berlin-night", time.Date(2026, 3, 30, 2, 30, 0, 0, berlin), "inactive", "the end is exclusive"},
		// Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00 to
		// 03:00 happens twice.
		{"berlin-night", utc(2026, 10, 24, 23, 30), "active", "01:30 CEST"},
		{"berlin-night", utc(2026, 10, 25, 0, 29), "active", "02:29 CEST"},
		{"berlin-night", utc(2026, 10, 25, 0, 30), "inactive", "02:30 CEST"},
		{"berlin-night", utc(2026, 10, 25, 1, 0), "active", "02:00 CET, the second time"},
		{"berlin-night", utc(2026, 10, 25, 1, 29), "active", "02:29 CET"},
		{"berlin-night", utc(2026, 10, 25, 1, 30), "inactive", "02:30 CET"},
		{"berlin-autumn", utc(2026, 10, 25, 0, 29), "active", "ending in the repeated hour: 02:29 CEST"},
		{"berlin-autumn", utc(2026, 10, 25, 0, 45), "inactive", "02:45 CEST: past the end the first time"},
		{"berlin-autumn", utc(2026, 10, 25, 1, 15), "active", "02:15 CET: within it again the second time"},
		{"berlin-autumn", utc(2026, 10, 25, 1, 30), "inactive", "02:30 CET"},
		// New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
		{"ny-night", utc(2026, 3, 8, 6, 30), "active", "01:30 EST"},
		{"ny-night", utc(2026, 3, 8, 6, 59), "active", "01:59 EST"},
		{"ny-night", utc(2026, 3, 8, 7, 0), "inactive", "03:00 EDT"},
		// New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00 to
		// 02:00 happens twice.
		{"ny-night", utc(2026, 11, 1, 5, 30), "active", "01:30 EDT"},
		{"ny-night", utc(2026, 11, 1, 5, 59), "active", "01:59 EDT"},
		{"ny-night", utc(2026, 11, 1, 6, 0), "inactive", "01:00 EST: the clock went back before the start"},
		{"ny-night", utc(2026, 11, 1, 6, 30), "active", "01:30 EST: the start again"},
		{"ny-night", utc(2026, 11, 1, 7, 0), "active", "02:00 EST"},
		{"ny-night", utc(2026, 11, 1, 7, 30), "inactive", "02:30 EST"},
		// A weekly window across midnight, as two intervals: Saturday
		// 22:00 to Sunday 02:00, on the night the clocks go back.
		{"weekend-overnight", time.Date(2026, 10, 24, 21, 59, 0, 0, berlin), "inactive", "Saturday 21:59"},
		{"weekend-overnight", time.Date(2026, 10, 24, 22, 0, 0, 0, berlin), "active", "Saturday 22:00"},
		{"weekend-overnight", time.Date(2026, 10, 24, 23, 59, 0, 0, berlin), "active", "Saturday 23:59"},
		{"weekend-overnight", time.Date(2026, 10, 25, 0, 0, 0, 0, berlin), "active", "Sunday 00:00: 24:00 ends Saturday's, Sunday's begins"},
		{"weekend-overnight", utc(2026, 10, 24, 23, 59), "active", "Sunday 01:59 CEST"},
		{"weekend-overnight", utc(2026, 10, 25, 0, 0), "inactive", "Sunday 02:00 CEST: the end is exclusive"},
		{"weekend-overnight", time.Date(2026, 10, 31, 22, 0, 0, 0, time.UTC), "active", "next Saturday 23:00 CET"},
		{"weekend-overnight", time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC), "inactive", "Sunday 02:00 CET"},
		{"weekend-overnight", time.Date(2026, 10, 26, 0, 30, 0, 0, berlin), "inactive", "Monday 00:30"},
	} {
		t.Run(tc.window+" "+tc.what, func(t *testing.T) {
			for _, set := range []*maintenance{m, restarted} {
				w, ok := set.items[tc.window]
				require.True(t, ok)
				require.Equal(t, tc.state, w.state(tc.now), "%s (%s)", tc.what, tc.now.In(w.TimeIntervals[0].Location.Location))
			}
		})
	}
}
