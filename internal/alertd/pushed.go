package alertd

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/model"
)

// Alerts evaluated by alertd's rules come back after a restart from the
// TSDB (for-state restoration); alerts pushed by a Prometheus or relayed by
// an Alertmanager only when their source sends them again. A Prometheus
// does so within a minute, but an Alertmanager only at its route's
// repeat_interval (4h by default): without the file below, the restart's
// grace period ran out first, their incidents were closed and they came
// back hours later as new ones. alertd keeps the firing pushed alerts in
// <storage.path>/pushed_alerts.json and restores them at start with the
// end time they had, so they resolve when they would have without the
// restart.

// pushedAlertsPath is where the pushed alerts are kept across restarts.
func pushedAlertsPath(storage string) string {
	return filepath.Join(storage, "pushed_alerts.json")
}

// pushed reports whether alerts of the source are posted to alertd, rather
// than evaluated or raised by it.
func (src Source) pushed() bool {
	return src == SourcePrometheus || src == SourceAlertmanager
}

// pushedState is the content of pushed_alerts.json.
type pushedState struct {
	Alerts []pushedAlert `json:"alerts"`
}

// pushedAlert is a firing pushed alert as kept across restarts: what its
// source sent (the annotations without those the stages add), when alertd
// last received it, whether alertd set its end time, and how it first
// arrived. The stages decide about it again when it is restored.
type pushedAlert struct {
	model.Alert
	Source    Source    `json:"source"`
	UpdatedAt time.Time `json:"updatedAt"`
	Timeout   bool      `json:"timeout,omitempty"`
	// Received is the first decision of the alert's history, which says
	// where it came from.
	Received *Decision `json:"received,omitempty"`
	// RelayGroups are the Alertmanager notification groups whose latest
	// notification held it (relay.go); files written before have none.
	RelayGroups []string `json:"relayGroups,omitempty"`
	// RelayFrom are the Alertmanagers and receivers that relayed it, and
	// Upstream what their API last said when one silences or inhibits it
	// (upstream.go); files written before have neither.
	RelayFrom []relaySource `json:"relayFrom,omitempty"`
	Upstream  *upstreamMark `json:"upstream,omitempty"`
	// Awaiting is the check of its Alertmanager's API that held it when
	// alertd stopped: the next start asks again (upstream.resume).
	Awaiting *upstreamCheck `json:"awaiting,omitempty"`
}

// pushedFile writes the store's firing pushed alerts to a file when they
// change, and reads them back at start.
type pushedFile struct {
	path  string
	store *store
	// mu serialises writes, which share a temporary file; saved is the
	// store's pushedGen last written.
	mu    sync.Mutex
	saved uint64
	dirty bool
	// write is writeJSON; tests count the writes.
	write func(path string, v any) error
}

func newPushedFile(path string, s *store) *pushedFile {
	return &pushedFile{path: path, store: s, write: writeJSON}
}

// save writes the firing pushed alerts if they changed since the last
// write. The loop calls it every tick, the webhook intake after each
// delivery (an Alertmanager does not send its alerts again for hours) and
// Stop once more. A call with nothing changed returns without copying or
// sorting the alerts: the loop's tick after a batch of n alerts would
// otherwise sort n alerts every tick while nothing happens.
func (f *pushedFile) save(now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, gen, changed := f.store.pushedAlerts(now, f.saved, f.dirty)
	if !changed {
		return nil
	}
	if err := f.write(f.path, st); err != nil {
		return fmt.Errorf("couldn't write the pushed alerts: %w", err)
	}
	f.saved, f.dirty = gen, false
	return nil
}

// restore reads the alerts kept by the last run and hands those still
// firing at now to the store, as their source would by sending them again,
// with the action "restored". It returns how many it restored. An alert
// whose end time passed while alertd was down is not restored: if its
// source still has it firing it posts it again within the restart's grace
// period, or the ledger resolves it then, as before the file existed.
func (f *pushedFile) restore(ctx context.Context, now time.Time) (int, error) {
	f.mu.Lock()
	// The next save writes the file again, without what is not restored
	// (or, when it can't be read, in its place).
	f.dirty = true
	f.mu.Unlock()
	var st pushedState
	ok, err := readJSON(f.path, &st)
	if err != nil || !ok {
		return 0, err
	}
	bySource := map[Source][]*Alert{}
	n := 0
	for _, p := range st.Alerts {
		if !p.Source.pushed() || !p.EndsAt.After(now) {
			continue
		}
		if err := p.Validate(); err != nil {
			continue
		}
		a := &Alert{Alert: p.Alert, UpdatedAt: p.UpdatedAt, Timeout: p.Timeout, Value: math.NaN(), relayGroups: p.RelayGroups,
			relayFrom: p.RelayFrom, upstream: p.Upstream, awaiting: p.Awaiting}
		if p.Received != nil {
			a.History = []Decision{*p.Received}
		}
		bySource[p.Source] = append(bySource[p.Source], a)
		n++
	}
	reason := "kept in " + filepath.Base(f.path) + " while alertd restarted"
	var errs []error
	for _, src := range []Source{SourcePrometheus, SourceAlertmanager} {
		if as := bySource[src]; len(as) > 0 {
			if err := f.store.take(ctx, now, src, as, "restored", reason); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("couldn't hand the restored alerts to the notifier: %w", errs[0])
	}
	return n, nil
}

// pushedAlerts returns the pushed alerts firing at now, by fingerprint,
// and the count of changes to pushed alerts they reflect, unless that
// count is still saved and force is false: then it reports false and
// copies nothing. An alert whose end time passes changes nothing: it
// leaves the file with the next change, and a restart does not restore it.
func (s *store) pushedAlerts(now time.Time, saved uint64, force bool) (pushedState, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pushedGen == saved && !force {
		return pushedState{}, saved, false
	}
	type keyed struct {
		fp model.Fingerprint
		a  *Alert
	}
	var firing []keyed
	for fp, a := range s.alerts {
		if a.Source.pushed() && !a.ResolvedAt(now) {
			firing = append(firing, keyed{fp, a})
		}
	}
	// The store's key is the fingerprint of the labels: sorted by it, not
	// by a fingerprint computed in each comparison.
	slices.SortFunc(firing, func(x, y keyed) int { return cmp.Compare(x.fp, y.fp) })
	st := pushedState{Alerts: make([]pushedAlert, 0, len(firing))}
	for _, k := range firing {
		a := k.a
		p := pushedAlert{Alert: a.Alert, Source: a.Source, UpdatedAt: a.UpdatedAt, Timeout: a.Timeout, RelayGroups: a.relayGroups,
			RelayFrom: a.relayFrom, Upstream: a.upstream, Awaiting: a.awaiting}
		p.Annotations = a.sourceAnnotations
		if len(a.History) > 0 {
			d := a.History[0]
			p.Received = &d
		}
		st.Alerts = append(st.Alerts, p)
	}
	return st, s.pushedGen, true
}
