package alertd

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
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

// defaultMaintenanceRetention is how long an expired maintenance window is
// kept after it ends: as long as a silence (defaultSilenceRetention), the
// other thing operators make to keep alerts quiet.
const defaultMaintenanceRetention = defaultSilenceRetention

// maintenance is the maintenance stage of the pipeline and the windows'
// store: API windows are kept in a file under --storage.path, so a restart
// keeps them, and forgotten --maintenance.retention after they expire (gc),
// counted from their expires_at as silences' retention is from their end.
type maintenance struct {
	*itemSet[maintenanceWindow, *maintenanceWindow]
}

func newMaintenance(path string) (*maintenance, error) {
	set, err := openItemSet[maintenanceWindow]("maintenance window", path)
	if err != nil {
		return nil, err
	}
	return &maintenance{set}, nil
}

func (w *maintenanceWindow) itemID() string   { return w.ID }
func (w *maintenanceWindow) fromConfig() bool { return w.Source == "config" }

func (w *maintenanceWindow) endsAt() (time.Time, bool) {
	if w.ExpiresAt == nil {
		return time.Time{}, false
	}
	return *w.ExpiresAt, true
}

func (w *maintenanceWindow) expire(now time.Time) {
	if w.ExpiresAt == nil || now.Before(*w.ExpiresAt) {
		w.ExpiresAt = &now
	}
}

func (w *maintenanceWindow) compile() (err error) {
	w.matchers, err = parseMatchers("a maintenance window", w.Matchers)
	return err
}

// byName orders windows by name.
func byName(a, b *maintenanceWindow) int { return strings.Compare(a.Name, b.Name) }

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
	m.itemSet.setConfig(slices.Collect(maps.Values(next)))
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
	for _, w := range m.items {
		if w.matchers.Matches(a.Labels) && w.state(now) == "active" {
			in = append(in, w)
		}
	}
	if len(in) == 0 {
		return Decision{}
	}
	slices.SortFunc(in, func(a, b *maintenanceWindow) int {
		return cmp.Or(byName(a, b), strings.Compare(a.ID, b.ID))
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
	for _, mw := range a.maintenance.list(byName) {
		out = append(out, windowJSON{mw, mw.state(now)})
	}
	respond(w, out)
}

// deleteMaintenanceWindow expires a window now.
func (a *Alertd) deleteMaintenanceWindow(w http.ResponseWriter, r *http.Request) {
	a.deleteItem(w, r, "maintenance window", "id", a.maintenance.expire)
}
