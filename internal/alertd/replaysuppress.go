package alertd

import (
	"slices"
	"time"
)

// A replay evaluates at its step, and alertd looks again at its alerts
// every few seconds: a silence or maintenance window that begins or ends
// between two evaluations does, in a replay, at its own time. The replay
// looks again at the alerts then (Replay's change), so that escalation
// steps due after it in the same step see it, and what it releases is
// notified then.

// suppressionChanges returns the times in (from, to), in order, at which a
// silence or maintenance window begins or ends.
func (p *pipeline) suppressionChanges(from, to time.Time) []time.Time {
	if !from.Before(to) {
		return nil
	}
	out := append(p.silencer.changes(from, to), p.maintenance.changes(from, to)...)
	slices.SortFunc(out, time.Time.Compare)
	return slices.CompactFunc(out, time.Time.Equal)
}

// changes returns the starts and ends of silences in (from, to).
func (s *silencer) changes(from, to time.Time) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, sil := range s.items {
		for _, t := range []time.Time{sil.StartsAt, sil.EndsAt} {
			if t.After(from) && t.Before(to) {
				out = append(out, t)
			}
		}
	}
	return out
}

// changes returns the times in (from, to) at which a window becomes active
// or stops being: at its expiry, and at the whole minutes where its state
// changes. A time interval is made of whole minutes of its location's wall
// clock, and locations are a whole number of minutes off UTC, so a state
// holds from one whole minute to the next.
func (m *maintenance) changes(from, to time.Time) []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []time.Time
	for _, w := range m.items {
		if w.ExpiresAt != nil && w.ExpiresAt.After(from) && w.ExpiresAt.Before(to) {
			out = append(out, *w.ExpiresAt)
		}
		last := w.state(from)
		for t := from.Truncate(time.Minute).Add(time.Minute); t.Before(to) && last != "expired"; t = t.Add(time.Minute) {
			st := w.state(t)
			if st != last && st != "expired" { // its expiry is above
				out = append(out, t)
			}
			last = st
		}
	}
	return out
}
