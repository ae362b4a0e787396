package alertd

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// holdStage keeps alerts that have fired for less than the configured
// minimum from notifications; the pipeline releases them once they have
// fired long enough and still do. Alerts that resolve within the hold are
// never paged. It is for pushed alerts that have no `for` of their own.
type holdStage struct {
	mu  sync.Mutex
	min time.Duration
}

func (h *holdStage) set(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.min = d
}

// Name implements Stage.
func (h *holdStage) Name() string { return "hold" }

// Process implements Stage.
func (h *holdStage) Process(_ context.Context, now time.Time, a *Alert) Decision {
	h.mu.Lock()
	d := h.min
	h.mu.Unlock()
	if d <= 0 || a.ResolvedAt(now) {
		return Decision{}
	}
	if fired := now.Sub(a.StartsAt); fired < d {
		a.Suppressed = true
		return Decision{Action: "suppressed", Reason: fmt.Sprintf("held until it has fired for %s (min_firing_duration)", model.Duration(d))}
	}
	return Decision{}
}

// flapStage detects alerts that keep firing and resolving, with hysteresis
// as Nagios does: an alert starts flapping when it changed state at least
// start_changes times within the window, and stops when the changes in the
// window fall to stop_changes or fewer. A flapping alert that fires is kept
// from notifications; the pipeline releases it when it stops flapping.
// Its state changes are kept under --storage.path, so a restart keeps a
// flap window. Process runs with the store's lock held: it only marks the
// state changed, and the store has it written once the lock is released
// (save, store.commit), so that a slow disk does not stall the pipeline.
type flapStage struct {
	mu    sync.Mutex
	cfg   alertconfig.Flapping
	file  *stateFile
	state map[model.Fingerprint]*flapState
	// dirty is set when state changed since it was last written.
	dirty bool
	// failing is set while writes fail, so that a failure is logged
	// once, not at every commit that retries it.
	failing bool
	logger  *slog.Logger
}

type flapState struct {
	Changes  []time.Time `json:"changes"`
	Resolved bool        `json:"resolved"`
	Flapping bool        `json:"flapping"`
}

func newFlapStage(path string, logger *slog.Logger) (*flapStage, error) {
	f := &flapStage{file: newStateFile(path), state: map[model.Fingerprint]*flapState{}, logger: logger}
	if _, err := readJSON(path, &f.state); err != nil {
		return nil, fmt.Errorf("couldn't read flap state: %w", err)
	}
	return f, nil
}

func (f *flapStage) set(c alertconfig.Flapping) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = c
}

// Name implements Stage.
func (f *flapStage) Name() string { return "flap" }

// Process implements Stage.
func (f *flapStage) Process(_ context.Context, now time.Time, a *Alert) Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg.StartChanges <= 0 {
		return Decision{}
	}
	resolved := a.ResolvedAt(now)
	st, ok := f.state[a.Fingerprint]
	if !ok {
		st = &flapState{Resolved: resolved}
		f.state[a.Fingerprint] = st
	}
	changed := false
	if ok && st.Resolved != resolved {
		st.Changes = append(st.Changes, now)
		st.Resolved = resolved
		changed = true
	}
	window := time.Duration(f.cfg.Window)
	keep := st.Changes[:0]
	for _, t := range st.Changes {
		if now.Sub(t) <= window {
			keep = append(keep, t)
		}
	}
	st.Changes = keep
	n := len(st.Changes)
	switch {
	case !st.Flapping && n >= f.cfg.StartChanges:
		st.Flapping, changed = true, true
	case st.Flapping && n <= f.cfg.StopChanges:
		st.Flapping, changed = false, true
	}
	if n == 0 && resolved && !st.Flapping {
		delete(f.state, a.Fingerprint)
		changed = true
	}
	if changed {
		f.dirty = true
	}
	if st.Flapping && !resolved {
		a.Suppressed = true
		return Decision{Action: "suppressed", Reason: fmt.Sprintf("flapping: %d state changes in the last %s (starts at %d, stops at %d or fewer)",
			n, model.Duration(window), f.cfg.StartChanges, f.cfg.StopChanges)}
	}
	return Decision{}
}

// count returns the state changes of the alert within the window.
func (f *flapStage) count(fp model.Fingerprint) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.state[fp]; ok {
		return len(st.Changes)
	}
	return 0
}

// save writes the flap state if it changed since the last write; a write
// that fails, or that another's in progress put off, is done at the next
// call. The store calls it after each pass of the stages, once its lock is
// released (store.commit), and its release runs every few seconds.
// Called without f.mu held.
func (f *flapStage) save() {
	err := f.file.trySave(&f.mu, func() any {
		if !f.dirty {
			return nil
		}
		f.dirty = false
		return f.state
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err != nil:
		f.dirty = true
		if !f.failing {
			f.logger.Error("Failed to save the flap state, will retry after the next alerts", "file", f.file.path, "err", err)
		}
		f.failing = true
	case f.failing && !f.dirty:
		f.logger.Info("Saved the flap state again", "file", f.file.path)
		f.failing = false
	}
}

// flapPath is where the flap state is kept.
func flapPath(storage string) string { return filepath.Join(storage, "flapping.json") }
