package alertd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/notify"
	"github.com/modelmon/modelmon/internal/notify/notice"
)

// The ledger's event types: the path of an alert, one event per step.
const (
	eventPending      = "pending"
	eventFired        = "fired"
	eventSuppressed   = "suppressed"
	eventReleased     = "released"
	eventGrouped      = "grouped"
	eventPaged        = "paged"
	eventAcknowledged = "acknowledged"
	eventResolved     = "resolved"
	eventVerdict      = "verdict"
	// eventSnapshot opens every segment: the ledger's state at that point,
	// so that pruning old segments loses no state. Reports skip it.
	eventSnapshot = "snapshot"
)

var eventTypes = []string{eventPending, eventFired, eventSuppressed, eventReleased, eventGrouped,
	eventPaged, eventAcknowledged, eventResolved, eventVerdict}

// Event is one line of the ledger: a step of an alert's path.
type Event struct {
	// Seq numbers events in the order they were recorded, across restarts.
	Seq         uint64         `json:"seq"`
	Time        time.Time      `json:"time"`
	Event       string         `json:"event"`
	Fingerprint string         `json:"fingerprint,omitempty"`
	Labels      model.LabelSet `json:"labels,omitempty"`
	Source      Source         `json:"source,omitempty"`
	Category    string         `json:"category,omitempty"`
	Priority    string         `json:"priority,omitempty"`
	// Value is the alert's value when known (rule alerts).
	Value *float64 `json:"value,omitempty"`
	// StartsAt is when the alert started firing (fired, resolved, and for
	// pending, when it became pending); EndsAt when it resolved.
	StartsAt time.Time `json:"startsAt,omitzero"`
	EndsAt   time.Time `json:"endsAt,omitzero"`
	// Reason is the stage that suppressed the alert, or how it resolved.
	Reason string `json:"reason,omitempty"`
	// Detail is the stage's explanation.
	Detail string `json:"detail,omitempty"`
	// Receiver and Integration a page went to; Page identifies the
	// notification, shared by the alerts it carried.
	Receiver    string `json:"receiver,omitempty"`
	Integration string `json:"integration,omitempty"`
	Page        string `json:"page,omitempty"`
	// Incident is the incident grouped into or paged for, with the group's
	// key and labels on grouped events, and the route's id when another
	// route has the same key (incident.Route).
	Incident    string         `json:"incident,omitempty"`
	GroupKey    string         `json:"groupKey,omitempty"`
	GroupLabels model.LabelSet `json:"groupLabels,omitempty"`
	Route       string         `json:"route,omitempty"`
	// Verdict, By and Note of feedback and acknowledgements.
	Verdict  string          `json:"verdict,omitempty"`
	By       string          `json:"by,omitempty"`
	Note     string          `json:"note,omitempty"`
	Snapshot *ledgerSnapshot `json:"snapshot,omitempty"`
}

// value returns the event's value, NaN when unknown.
func (e *Event) value() float64 {
	if e.Value == nil {
		return math.NaN()
	}
	return *e.Value
}

// The states of an alert in the ledger.
const (
	statePending  = "pending"
	stateFiring   = "firing"
	stateResolved = "resolved"
)

// alertState is what the ledger knows of an alert now: it decides which
// events are new, so that an alert received again after a restart is not
// recorded twice.
type alertState struct {
	Labels   model.LabelSet `json:"labels"`
	State    string         `json:"state"`
	StartsAt time.Time      `json:"startsAt,omitzero"`
	// Suppressed names the stages suppressing the firing alert.
	Suppressed []string `json:"suppressed,omitempty"`
	// Unconfirmed is set while a suppressed alert has not been paged or
	// confirmed as a true positive since.
	Unconfirmed bool `json:"unconfirmed,omitempty"`
	// Acked is set once the firing alert was acknowledged.
	Acked     bool      `json:"acked,omitempty"`
	Incidents []string  `json:"incidents,omitempty"`
	Updated   time.Time `json:"updated"`
	// local is set for pending alerts seen by this process: those that
	// stop pending without firing are forgotten.
	local bool
}

// ledgerSnapshot is the ledger's state at the start of a segment.
type ledgerSnapshot struct {
	Alerts    map[string]*alertState `json:"alerts"`
	Incidents []*incident            `json:"incidents"`
}

// segment is one file of the ledger.
type segment struct {
	path      string
	firstSeq  uint64
	size      int64 // bytes durably written
	firstTime time.Time
	lastTime  time.Time
	created   time.Time
}

// pendingEvent is an event recorded but not yet written, with the metric
// updates to apply once it is durable.
type pendingEvent struct {
	e         Event
	newPage   bool
	confirmed bool
	tta, ttr  float64 // seconds; negative: none
}

// ledgerOptions configure a ledger.
type ledgerOptions struct {
	Dir       string
	Retention time.Duration
	// MaxSegmentSize and MaxSegmentAge rotate the segment being written.
	MaxSegmentSize int64
	MaxSegmentAge  time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	Now            func() time.Time
}

// ledger is the durable history of alerts: an append-only store of JSON
// lines under --storage.path/ledger, in segments rotated by size and age,
// written and fsync'd once per batch (an intake request, a notification,
// a pipeline pass), and pruned by retention. It keeps in memory only the
// state of current alerts and incidents, rebuilt from the segments when
// alertd starts; reports read the segments.
type ledger struct {
	opts   ledgerOptions
	logger *slog.Logger

	// wmu serializes writers (commit, rotation, pruning, close); mu guards
	// the state and the events not yet written. Take wmu before mu.
	wmu      sync.Mutex
	mu       sync.Mutex
	seq      uint64
	alerts   map[string]*alertState
	inc      *incidents
	buf      []pendingEvent
	segments []*segment
	file     *os.File
	closed   bool

	pages       prometheus.Counter
	events      *prometheus.CounterVec
	confirmed   prometheus.Counter
	tta, ttr    prometheus.Histogram
	writeErrors prometheus.Counter
}

// The ledger's defaults.
const (
	defaultLedgerRetention = 90 * 24 * time.Hour
	defaultSegmentSize     = 64 << 20
	defaultSegmentAge      = 24 * time.Hour
	// maxBuffered bounds the events kept for a retry while writes fail.
	maxBuffered = 100_000
)

// durationBuckets are the buckets of time to acknowledge and to resolve.
var durationBuckets = []float64{30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 259200, 604800}

// openLedger opens the ledger in o.Dir, replaying its segments to rebuild
// the state. A torn or corrupt last line (a crash in the middle of a
// write) is cut off with a warning; corrupt lines elsewhere are skipped
// with a warning.
func openLedger(o ledgerOptions) (*ledger, error) {
	if o.Retention <= 0 {
		o.Retention = defaultLedgerRetention
	}
	if o.MaxSegmentSize <= 0 {
		o.MaxSegmentSize = defaultSegmentSize
	}
	if o.MaxSegmentAge <= 0 {
		o.MaxSegmentAge = defaultSegmentAge
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f := promauto.With(o.Registerer)
	native := func(opts prometheus.HistogramOpts) prometheus.HistogramOpts {
		opts.Buckets = durationBuckets
		opts.NativeHistogramBucketFactor = 1.1
		return opts
	}
	l := &ledger{
		opts:   o,
		logger: o.Logger,
		alerts: map[string]*alertState{},
		inc:    newIncidents(),
		pages: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_pages_total",
			Help: "The total number of pages: delivered notifications of an incident that carried firing alerts, counted once per notification whatever the number of alerts, since alertd started.",
		}),
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_alert_events_total",
			Help: "The total number of events written to the alert ledger since alertd started, by event.",
		}, []string{"event"}),
		confirmed: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_suppressed_confirmed_total",
			Help: "The total number of suppressed alerts later paged or confirmed as true positives by an operator, since alertd started.",
		}),
		tta: f.NewHistogram(native(prometheus.HistogramOpts{
			Name: "alertd_time_to_acknowledge_seconds",
			Help: "Time from an alert firing to its first acknowledgement, observed when acknowledged.",
		})),
		ttr: f.NewHistogram(native(prometheus.HistogramOpts{
			Name: "alertd_time_to_resolve_seconds",
			Help: "Time from an alert firing to its resolution, observed when resolved.",
		})),
		writeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_ledger_write_errors_total",
			Help: "The total number of failed writes (or fsyncs) of the alert ledger; the events are retried at the next write.",
		}),
	}
	for _, t := range eventTypes {
		l.events.WithLabelValues(t)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create the ledger directory: %w", err)
	}
	if err := l.replay(); err != nil {
		return nil, err
	}
	if err := l.openHead(); err != nil {
		return nil, err
	}
	return l, nil
}

// segmentName is the file name of the segment starting at seq.
func segmentName(seq uint64) string { return fmt.Sprintf("%020d.jsonl", seq) }

// replay reads every segment in order and rebuilds the state.
func (l *ledger) replay() error {
	names, err := filepath.Glob(filepath.Join(l.opts.Dir, "*.jsonl"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for i, name := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".jsonl"), 10, 64)
		if err != nil {
			l.logger.Warn("Skipping a file of the ledger directory that is not a segment", "file", name)
			continue
		}
		seg := &segment{path: name, firstSeq: first}
		last := i == len(names)-1
		good, err := readSegment(name, -1, l.logger, func(e *Event) {
			l.seq = max(l.seq, e.Seq)
			seg.observe(e.Time)
			l.apply(e)
		})
		if err != nil {
			return fmt.Errorf("couldn't read the ledger: %w", err)
		}
		seg.size = good
		if fi, err := os.Stat(name); err == nil {
			if fi.Size() > good && last {
				// A crash in the middle of a write: cut the torn
				// tail off so that appends start on a line of their own.
				l.logger.Warn("Cutting off a torn or corrupt end of the ledger", "file", name, "offset", good, "bytes", fi.Size()-good)
				if err := os.Truncate(name, good); err != nil {
					return fmt.Errorf("couldn't repair the ledger: %w", err)
				}
			}
			seg.created = fi.ModTime()
			if !seg.firstTime.IsZero() {
				seg.created = seg.firstTime
			}
		}
		l.segments = append(l.segments, seg)
	}
	return nil
}

func (s *segment) observe(t time.Time) {
	if s.firstTime.IsZero() || t.Before(s.firstTime) {
		s.firstTime = t
	}
	if t.After(s.lastTime) {
		s.lastTime = t
	}
}

// readSegment calls f with each event of the file, up to limit bytes (-1:
// all), and returns the offset after the last good line. Corrupt lines are
// skipped with a warning; an incomplete last line is left out.
func readSegment(path string, limit int64, logger *slog.Logger, f func(*Event)) (int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var r io.Reader = fh
	if limit >= 0 {
		r = io.LimitReader(fh, limit)
	}
	br := bufio.NewReaderSize(r, 1<<16)
	var off, good int64
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			var e Event
			if jerr := json.Unmarshal(bytes.TrimSpace(line), &e); jerr != nil || e.Event == "" {
				if jerr == nil {
					jerr = errors.New("no event type")
				}
				logger.Warn("Skipping a corrupt line of the ledger", "file", path, "line", n, "err", jerr)
			} else {
				f(&e)
				good = off
			}
		} else if len(line) > 0 {
			logger.Warn("Skipping an incomplete last line of the ledger", "file", path, "line", n, "bytes", len(line))
		}
		if errors.Is(err, io.EOF) {
			return good, nil
		}
		if err != nil {
			return good, err
		}
	}
}

// openHead opens the last segment for appending, or starts a new one.
func (l *ledger) openHead() error {
	if n := len(l.segments); n > 0 {
		seg := l.segments[n-1]
		if seg.size < l.opts.MaxSegmentSize && l.opts.Now().Sub(seg.created) < l.opts.MaxSegmentAge {
			f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return fmt.Errorf("couldn't open the ledger: %w", err)
			}
			l.file = f
			return nil
		}
	}
	l.mu.Lock()
	snap := l.snapshotLocked()
	l.mu.Unlock()
	return l.startSegment(snap)
}

// startSegment creates the next segment, opening with a snapshot of the
// state. Called with wmu held (or before the ledger is shared).
func (l *ledger) startSegment(snap Event) error {
	seg := &segment{path: filepath.Join(l.opts.Dir, segmentName(snap.Seq)), firstSeq: snap.Seq, created: snap.Time}
	f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("couldn't create a ledger segment: %w", err)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		f.Close()
		return err
	}
	b = append(b, '\n')
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("couldn't write a ledger segment: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("couldn't write a ledger segment: %w", err)
	}
	syncDir(l.opts.Dir)
	if l.file != nil {
		l.file.Close()
	}
	l.file = f
	seg.size = int64(len(b))
	seg.observe(snap.Time)
	l.mu.Lock()
	l.segments = append(l.segments, seg)
	l.mu.Unlock()
	return nil
}

// syncDir makes a new file's directory entry durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// snapshotLocked returns a snapshot event of the state. Called with mu held.
func (l *ledger) snapshotLocked() Event {
	l.seq++
	snap := &ledgerSnapshot{Alerts: make(map[string]*alertState, len(l.alerts)), Incidents: l.inc.all()}
	for fp, st := range l.alerts {
		c := *st
		snap.Alerts[fp] = &c
	}
	return Event{Seq: l.seq, Time: l.opts.Now(), Event: eventSnapshot, Snapshot: snap}
}

// apply changes the state by one event, the same way when recording and
// when replaying. Called with mu held.
func (l *ledger) apply(e *Event) {
	if e.Event == eventSnapshot {
		if e.Snapshot != nil {
			l.alerts = e.Snapshot.Alerts
			if l.alerts == nil {
				l.alerts = map[string]*alertState{}
			}
			l.inc = newIncidents()
			for _, in := range e.Snapshot.Incidents {
				l.inc.add(in)
			}
		}
		return
	}
	st := l.alerts[e.Fingerprint]
	if st == nil {
		st = &alertState{Labels: e.Labels}
	}
	if e.Labels != nil {
		st.Labels = e.Labels
	}
	st.Updated = e.Time
	keep := true
	switch e.Event {
	case eventPending:
		st.State, st.StartsAt = statePending, e.StartsAt
	case eventFired:
		st.State, st.StartsAt, st.Suppressed, st.Incidents, st.Acked = stateFiring, e.StartsAt, nil, nil, false
	case eventSuppressed:
		if !slices.Contains(st.Suppressed, e.Reason) {
			st.Suppressed = append(st.Suppressed, e.Reason)
		}
		st.Unconfirmed = true
	case eventReleased:
		st.Suppressed = nil
	case eventGrouped:
		if !slices.Contains(st.Incidents, e.Incident) {
			st.Incidents = append(st.Incidents, e.Incident)
		}
		l.inc.group(e)
	case eventPaged:
		st.Unconfirmed = false
		l.inc.paged(e)
	case eventAcknowledged:
		if st.State == stateFiring {
			st.Acked = true
		}
		if e.Incident != "" {
			// An incident's acknowledgement (escalation_engine.go)
			// acknowledges that incident only.
			l.inc.acknowledge(e.Incident, e)
			break
		}
		for _, id := range st.Incidents {
			l.inc.acknowledge(id, e)
		}
	case eventVerdict:
		if e.Verdict == verdictTruePositive {
			st.Unconfirmed = false
		}
	case eventResolved:
		for _, id := range st.Incidents {
			l.inc.resolve(id, e.Fingerprint, e.Time)
		}
		st.State, st.Suppressed, st.Incidents = stateResolved, nil, nil
		// A resolved alert is forgotten, unless a suppression of it
		// may still be confirmed.
		keep = st.Unconfirmed
	}
	if st.State == "" && !st.Unconfirmed {
		// Nothing to remember of an alert the ledger has no state of.
		keep = false
	}
	if keep {
		l.alerts[e.Fingerprint] = st
	} else {
		delete(l.alerts, e.Fingerprint)
	}
}

// newEvent returns an event about a. Called with mu held.
func newEvent(now time.Time, typ string, a *Alert) Event {
	e := Event{Time: now, Event: typ, Fingerprint: a.Fingerprint.String(), Labels: a.Labels, Source: a.Source,
		Category: string(a.Annotations[annotationCategory]), Priority: string(a.Annotations[annotationPriority])}
	if !math.IsNaN(a.Value) && !math.IsInf(a.Value, 0) {
		v := a.Value
		e.Value = &v
	}
	return e
}

// record numbers an event, applies it and buffers it for the next commit.
// Called with mu held.
func (l *ledger) record(p pendingEvent) {
	if l.closed {
		return
	}
	l.seq++
	p.e.Seq = l.seq
	l.apply(&p.e)
	if len(l.buf) >= maxBuffered {
		l.buf = slices.Delete(l.buf, 0, 1)
	}
	l.buf = append(l.buf, p)
}

// observe records an alert that fires (fired) or stopped firing (resolved)
// unless the ledger already has it in that state. It returns the event
// recorded, if any.
func (l *ledger) observe(now time.Time, a *Alert) string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.alerts[a.Fingerprint.String()]
	switch resolved := a.ResolvedAt(now); {
	case !resolved && (st == nil || st.State != stateFiring):
		e := newEvent(now, eventFired, a)
		e.StartsAt = a.StartsAt
		l.record(pendingEvent{e: e, tta: -1, ttr: -1})
		return eventFired
	case resolved && st != nil && st.State == stateFiring:
		e := newEvent(now, eventResolved, a)
		e.StartsAt, e.EndsAt = st.StartsAt, a.EndsAt
		l.record(pendingEvent{e: e, tta: -1, ttr: max(0, a.EndsAt.Sub(st.StartsAt).Seconds())})
		return eventResolved
	}
	return ""
}

// firingSince returns when an alert the ledger has as firing started,
// false if it does not have it firing.
func (l *ledger) firingSince(fp string) (time.Time, bool) {
	if l == nil {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.alerts[fp]
	if st == nil || st.State != stateFiring || st.StartsAt.IsZero() {
		return time.Time{}, false
	}
	return st.StartsAt, true
}

// suppressed records that a stage keeps a firing alert from notifications,
// unless it already did.
func (l *ledger) suppressed(now time.Time, a *Alert, stage, detail string) {
	if l == nil || a.ResolvedAt(now) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.alerts[a.Fingerprint.String()]; st != nil && slices.Contains(st.Suppressed, stage) {
		return
	}
	e := newEvent(now, eventSuppressed, a)
	e.Reason, e.Detail = stage, detail
	l.record(pendingEvent{e: e, tta: -1, ttr: -1})
}

// unsuppressed records that a firing alert the ledger has as suppressed is
// no longer (released).
func (l *ledger) unsuppressed(now time.Time, a *Alert) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.alerts[a.Fingerprint.String()]; st != nil && len(st.Suppressed) > 0 {
		e := newEvent(now, eventReleased, a)
		e.Detail = "no stage suppresses it any more"
		l.record(pendingEvent{e: e, tta: -1, ttr: -1})
	}
}

// pendingAlert is a rule's alert in the pending state.
type pendingAlert struct {
	Labels   model.LabelSet
	ActiveAt time.Time
	Value    float64
}

// pending records rule alerts that became pending, and forgets those this
// process saw pending that no longer are and did not fire.
func (l *ledger) pending(now time.Time, ps []pendingAlert) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := make(map[string]bool, len(ps))
	for _, p := range ps {
		fp := p.Labels.Fingerprint()
		seen[fp.String()] = true
		if st := l.alerts[fp.String()]; st != nil && st.State != stateResolved {
			continue
		}
		e := newEvent(now, eventPending, &Alert{Alert: model.Alert{Labels: p.Labels}, Fingerprint: fp, Source: SourceRule, Value: p.Value})
		e.StartsAt = p.ActiveAt
		l.record(pendingEvent{e: e, tta: -1, ttr: -1})
		if st := l.alerts[fp.String()]; st != nil {
			st.local = true
		}
	}
	for fp, st := range l.alerts {
		if st.State == statePending && st.local && !seen[fp] {
			delete(l.alerts, fp)
		}
	}
}

// reconcile resolves the alerts the ledger has as firing that the pipeline
// does not hold: after a restart, those that were not received again.
func (l *ledger) reconcile(now time.Time, held func(model.Fingerprint) bool) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var fps []string
	for fp, st := range l.alerts {
		if st.State != stateFiring {
			continue
		}
		f, err := model.FingerprintFromString(fp)
		if err == nil && held(f) {
			continue
		}
		fps = append(fps, fp)
	}
	slices.Sort(fps)
	for _, fp := range fps {
		st := l.alerts[fp]
		e := Event{Time: now, Event: eventResolved, Fingerprint: fp, Labels: st.Labels, StartsAt: st.StartsAt, EndsAt: now,
			Reason: "not received again after alertd restarted"}
		l.record(pendingEvent{e: e, tta: -1, ttr: max(0, now.Sub(st.StartsAt).Seconds())})
	}
}

// paged records a delivered notification that carried firing alerts: one
// page, one paged event per firing alert and incident. An escalation's
// notification names its incident; a route's is one of the incidents of
// its group key and receiver, one of each for sibling routes with the same
// matchers and receiver (forGroup).
func (l *ledger) paged(n notify.Notification) {
	if l == nil || n.Err != nil {
		return
	}
	var firing []model.Alert
	for _, al := range n.Alerts {
		if al.EndsAt.IsZero() || al.EndsAt.After(n.Time) {
			firing = append(firing, al.Alert)
		}
	}
	if len(firing) == 0 {
		return
	}
	page := model.LabelSet{"group": model.LabelValue(n.GroupKey), "receiver": model.LabelValue(n.Receiver),
		"integration": model.LabelValue(n.Integration), "time": model.LabelValue(n.Time.Format(time.RFC3339Nano))}.Fingerprint().String()
	l.mu.Lock()
	defer l.mu.Unlock()
	var incidents []string
	if id := n.Extra[notice.ExtraIncident]; id != "" && l.inc.byID[id] != nil {
		incidents = []string{id}
	} else if incidents = l.inc.forGroup(n.GroupKey, n.Receiver); len(incidents) == 0 {
		// A receiver renamed by a reload: the group's, as before.
		incidents = l.inc.forGroup(n.GroupKey, "")
		incidents = incidents[:min(len(incidents), 1)]
	}
	if len(incidents) == 0 {
		incidents = []string{""}
	}
	first := true
	for _, al := range firing {
		fp := al.Labels.Fingerprint()
		a := &Alert{Alert: al, Fingerprint: fp, Value: math.NaN()}
		for _, incident := range incidents {
			e := newEvent(n.Time, eventPaged, a)
			e.Receiver, e.Integration, e.Page, e.Incident = n.Receiver, n.Integration, page, incident
			st := l.alerts[fp.String()]
			l.record(pendingEvent{e: e, newPage: first, confirmed: st != nil && st.Unconfirmed, tta: -1, ttr: -1})
			first = false
		}
	}
}

// acknowledge records an operator's acknowledgement of an alert and
// returns the open incidents it acknowledges.
func (l *ledger) acknowledge(now time.Time, a *Alert, by, note string) []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := newEvent(now, eventAcknowledged, a)
	e.By, e.Note = by, note
	tta := -1.0
	st := l.alerts[a.Fingerprint.String()]
	var ids []string
	if st != nil && st.State == stateFiring {
		ids = slices.Clone(st.Incidents)
		if !st.Acked {
			tta = max(0, now.Sub(st.StartsAt).Seconds())
		}
	}
	l.record(pendingEvent{e: e, tta: tta, ttr: -1})
	return ids
}

// verdict records an operator's verdict on an alert.
func (l *ledger) verdict(now time.Time, a *Alert, verdict, by, note string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := newEvent(now, eventVerdict, a)
	e.Verdict, e.By, e.Note = verdict, by, note
	st := l.alerts[a.Fingerprint.String()]
	l.record(pendingEvent{e: e, confirmed: verdict == verdictTruePositive && st != nil && st.Unconfirmed, tta: -1, ttr: -1})
}

// commit writes the buffered events to the segment being written and
// fsyncs it; the metrics count them once they are durable. On failure they
// stay buffered for the next commit.
func (l *ledger) commit() {
	if l == nil {
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	if len(l.buf) == 0 || l.file == nil {
		l.mu.Unlock()
		return
	}
	batch := l.buf
	l.buf = nil
	head := l.segments[len(l.segments)-1]
	var snap *Event
	if head.size >= l.opts.MaxSegmentSize || l.opts.Now().Sub(head.created) >= l.opts.MaxSegmentAge {
		s := l.snapshotLocked()
		snap = &s
	}
	l.mu.Unlock()

	var b bytes.Buffer
	for _, p := range batch {
		line, err := json.Marshal(p.e)
		if err != nil {
			l.logger.Error("Failed to encode a ledger event", "event", p.e.Event, "err", err)
			continue
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	_, err := l.file.Write(b.Bytes())
	if err == nil {
		err = l.file.Sync()
	}
	if err != nil {
		l.writeErrors.Inc()
		l.logger.Error("Failed to write the alert ledger, will retry", "file", head.path, "events", len(batch), "err", err)
		// Cut a partial write off, so the retry starts on a new line.
		_ = l.file.Truncate(head.size)
		l.mu.Lock()
		l.buf = append(batch, l.buf...)
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	head.size += int64(b.Len())
	for _, p := range batch {
		head.observe(p.e.Time)
	}
	l.mu.Unlock()
	for _, p := range batch {
		l.events.WithLabelValues(p.e.Event).Inc()
		if p.newPage {
			l.pages.Inc()
		}
		if p.confirmed {
			l.confirmed.Inc()
		}
		if p.tta >= 0 {
			l.tta.Observe(p.tta)
		}
		if p.ttr >= 0 {
			l.ttr.Observe(p.ttr)
		}
	}
	if snap != nil {
		if err := l.startSegment(*snap); err != nil {
			l.writeErrors.Inc()
			l.logger.Error("Failed to rotate the alert ledger, will keep writing the current segment", "err", err)
		}
	}
}

// prune deletes the segments whose newest event is older than the
// retention, never the one being written, and forgets closed incidents
// and confirmed-or-not suppressions older than that.
func (l *ledger) prune(now time.Time) {
	if l == nil {
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	cutoff := now.Add(-l.opts.Retention)
	var drop []*segment
	keep := l.segments[:0]
	for i, seg := range l.segments {
		if i < len(l.segments)-1 && seg.lastTime.Before(cutoff) {
			drop = append(drop, seg)
			continue
		}
		keep = append(keep, seg)
	}
	l.segments = keep
	for fp, st := range l.alerts {
		if st.State == stateResolved && st.Updated.Before(cutoff) {
			delete(l.alerts, fp)
		}
	}
	l.inc.prune(now.Add(-incidentClosedRetention))
	l.mu.Unlock()
	for _, seg := range drop {
		if err := os.Remove(seg.path); err != nil {
			l.logger.Error("Failed to delete an old ledger segment", "file", seg.path, "err", err)
			continue
		}
		l.logger.Debug("Deleted an old ledger segment", "file", seg.path)
	}
}

// read calls f, in order, with the events of [from, to].
func (l *ledger) read(from, to time.Time, f func(*Event)) error {
	l.mu.Lock()
	type part struct {
		path string
		size int64
	}
	var parts []part
	for _, seg := range l.segments {
		if seg.lastTime.Before(from) || seg.firstTime.After(to) {
			continue
		}
		parts = append(parts, part{seg.path, seg.size})
	}
	l.mu.Unlock()
	for _, p := range parts {
		_, err := readSegment(p.path, p.size, l.logger, func(e *Event) {
			if e.Event == eventSnapshot || e.Time.Before(from) || e.Time.After(to) {
				return
			}
			f(e)
		})
		if errors.Is(err, os.ErrNotExist) {
			continue // pruned in between
		}
		if err != nil {
			return fmt.Errorf("couldn't read the ledger: %w", err)
		}
	}
	return nil
}

// close writes what is buffered and closes the segment.
func (l *ledger) close() error {
	if l == nil {
		return nil
	}
	l.commit()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	return err
}

// ledgerPath is the ledger's directory under --storage.path.
func ledgerPath(storage string) string { return filepath.Join(storage, "ledger") }
