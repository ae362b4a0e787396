package alertd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// maintenanceWindow keeps the alerts its matchers select from
// notifications while the time is within one of its time intervals
// (Alertmanager's), until it expires.
type maintenanceWindow struct {
	ID            string                      `json:"id"`
	Name          string                      `json:"name"`
	Matchers      []string                    `json:"matchers"`
	TimeIntervals []timeinterval.TimeInterval `json:"time_intervals"`
	ExpiresAt     *time.Time                  `json:"expires_at,omitempty"`
	// Source is "api" or "config"; config windows come and go with the
	// configuration file and are not stored.
	Source string `json:"source"`

	matchers amlabels.Matchers
}

// state is active (within a time interval), inactive or expired at now.
func (w *maintenanceWindow) state(now time.Time) string {
	if w.ExpiresAt != nil && !now.Before(*w.ExpiresAt) {
		return "expired"
	}
	for _, ti := range w.TimeIntervals {
		if ti.ContainsTime(now) {
			return "active"
		}
	}
	return "inactive"
}

// maintenance is the maintenance stage of the pipeline and the windows'
// store: API windows are kept in a file under --storage.path, so a restart
// keeps them.
type maintenance struct {
	mu      sync.Mutex
	path    string
	windows map[string]*maintenanceWindow
}

func newMaintenance(path string) (*maintenance, error) {
	m := &maintenance{path: path, windows: map[string]*maintenanceWindow{}}
	var stored []*maintenanceWindow
	if _, err := readJSON(path, &stored); err != nil {
		return nil, fmt.Errorf("couldn't read maintenance windows: %w", err)
	}
	for _, w := range stored {
		var err error
		if w.matchers, err = parseMatchers("a maintenance window", w.Matchers); err != nil {
			return nil, fmt.Errorf("couldn't read maintenance window %s from %s: %w", w.ID, path, err)
		}
		m.windows[w.ID] = w
	}
	return m, nil
}

// setConfig replaces the configuration's windows, keeping the API's.
func (m *maintenance) setConfig(cfgs []*alertconfig.MaintenanceWindow) error {
	next := map[string]*maintenanceWindow{}
	for _, c := range cfgs {
		ms, err := parseMatchers("a maintenance window", c.Matchers)
		if err != nil {
			return fmt.Errorf("maintenance window %q: %w", c.Name, err)
		}
		id := "config-" + model.LabelSet{"maintenance_window": model.LabelValue(c.Name)}.Fingerprint().String()
		next[id] = &maintenanceWindow{ID: id, Name: c.Name, Matchers: c.Matchers, TimeIntervals: c.TimeIntervals,
			ExpiresAt: c.ExpiresAt, Source: "config", matchers: ms}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, w := range m.windows {
		if w.Source == "config" {
			delete(m.windows, id)
		}
	}
	for id, w := range next {
		m.windows[id] = w
	}
	return nil
}

// Name implements Stage.
func (m *maintenance) Name() string { return "maintenance" }

// operatorDecision implements operatorStage: an escalation does not end a
// maintenance window.
func (m *maintenance) operatorDecision() {}

// Process implements Stage: an alert that an active window selects is
// suppressed; with several (they may overlap), all are named.
func (m *maintenance) Process(_ context.Context, now time.Time, a *Alert) Decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	var in []*maintenanceWindow
	for _, w := range m.windows {
		if w.matchers.Matches(a.Labels) && w.state(now) == "active" {
			in = append(in, w)
		}
	}
	if len(in) == 0 {
		return Decision{}
	}
	slices.SortFunc(in, func(a, b *maintenanceWindow) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	names := make([]string, 0, len(in))
	for _, w := range in {
		n := fmt.Sprintf("%q (%s", w.Name, w.ID)
		if w.ExpiresAt != nil {
			n += ", expires at " + w.ExpiresAt.UTC().Format(time.RFC3339)
		}
		names = append(names, n+")")
	}
	a.Suppressed = true
	what := "in maintenance window "
	if len(in) > 1 {
		what = "in maintenance windows "
	}
	return Decision{Action: "suppressed", Reason: what + strings.Join(names, ", ")}
}

// add stores a new API window.
func (m *maintenance) add(w *maintenanceWindow) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.windows[w.ID] = w
	return m.saveLocked()
}

// expire ends a window now. It reports whether the window exists.
func (m *maintenance) expire(id string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.windows[id]
	if !ok {
		return false, nil
	}
	if w.Source == "config" {
		return true, errors.New("maintenance window comes from the configuration file: remove it there")
	}
	if w.ExpiresAt == nil || now.Before(*w.ExpiresAt) {
		w.ExpiresAt = &now
	}
	return true, m.saveLocked()
}

// list returns the windows, sorted by name and id.
func (m *maintenance) list() []maintenanceWindow {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]maintenanceWindow, 0, len(m.windows))
	for _, w := range m.windows {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b maintenanceWindow) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// gc forgets API windows expired longer than retention ago.
func (m *maintenance) gc(now time.Time, retention time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for id, w := range m.windows {
		if w.Source == "api" && w.ExpiresAt != nil && now.Sub(*w.ExpiresAt) > retention {
			delete(m.windows, id)
			changed = true
		}
	}
	if changed {
		_ = m.saveLocked()
	}
}

// saveLocked writes the API windows atomically. Called with m.mu held.
func (m *maintenance) saveLocked() error {
	stored := []*maintenanceWindow{}
	for _, w := range m.windows {
		if w.Source == "api" {
			stored = append(stored, w)
		}
	}
	slices.SortFunc(stored, func(a, b *maintenanceWindow) int { return strings.Compare(a.ID, b.ID) })
	if err := writeJSON(m.path, stored); err != nil {
		return fmt.Errorf("couldn't save maintenance windows: %w", err)
	}
	return nil
}

// maintenancePath is where API maintenance windows are kept.
func maintenancePath(storage string) string {
	return filepath.Join(storage, "maintenance_windows.json")
}

// maintenanceRequest is the body of POST /api/v1/maintenance_windows: the
// fields of the configuration's maintenance_windows entries.
type maintenanceRequest struct {
	Name          string            `json:"name"`
	Matchers      []string          `json:"matchers"`
	TimeIntervals []json.RawMessage `json:"time_intervals"`
	ExpiresAt     *time.Time        `json:"expires_at"`
}

// postMaintenanceWindow creates a maintenance window and returns its id.
func (a *Alertd) postMaintenanceWindow(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req maintenanceRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse maintenance window: %v", err), http.StatusBadRequest)
		return
	}
	now := a.opts.Now()
	if req.Name == "" {
		http.Error(w, `missing field "name"`, http.StatusBadRequest)
		return
	}
	ms, err := parseMatchers("a maintenance window", req.Matchers)
	if err != nil {
		http.Error(w, "matchers: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.TimeIntervals) == 0 {
		http.Error(w, "time_intervals: a maintenance window needs at least one time interval", http.StatusBadRequest)
		return
	}
	tis := make([]timeinterval.TimeInterval, 0, len(req.TimeIntervals))
	for i, raw := range req.TimeIntervals {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		var ti timeinterval.TimeInterval
		if err := d.Decode(&ti); err != nil {
			http.Error(w, fmt.Sprintf("time_intervals[%d]: %v", i, err), http.StatusBadRequest)
			return
		}
		tis = append(tis, ti)
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(now) {
		http.Error(w, "expires_at must be in the future", http.StatusBadRequest)
		return
	}
	mw := &maintenanceWindow{ID: newID(), Name: req.Name, Matchers: req.Matchers, TimeIntervals: tis,
		ExpiresAt: req.ExpiresAt, Source: "api", matchers: ms}
	if err := a.maintenance.add(mw); err != nil {
		a.logger.Error("Failed to save maintenance windows", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Alerts firing now that it selects are suppressed at once.
	a.store.suppressWith(r.Context(), now, a.maintenance)
	respond(w, map[string]string{"id": mw.ID})
}

// getMaintenanceWindows lists the windows with their state at now.
func (a *Alertd) getMaintenanceWindows(w http.ResponseWriter, _ *http.Request) {
	now := a.opts.Now()
	type windowJSON struct {
		maintenanceWindow
		State string `json:"state"`
	}
	out := []windowJSON{}
	for _, mw := range a.maintenance.list() {
		out = append(out, windowJSON{mw, mw.state(now)})
	}
	respond(w, out)
}

// deleteMaintenanceWindow expires a window now.
func (a *Alertd) deleteMaintenanceWindow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ok, err := a.maintenance.expire(id, a.opts.Now())
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("no maintenance window %q", id), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		respond(w, map[string]string{"id": id})
	}
}
