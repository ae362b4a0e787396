package alertd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// AckTime is when an acknowledgement of a policy test or of a replay's
// acknowledgements file happens: a duration after the start (of the test,
// or --from), or a time, RFC 3339 or Unix seconds.
type AckTime struct {
	after time.Duration
	// at, when set, is the time itself.
	at time.Time
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *AckTime) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Value != "" {
		// A duration first: "0" is one, not Unix 0.
		if d, err := model.ParseDuration(n.Value); err == nil {
			*t = AckTime{after: time.Duration(d)}
			return nil
		}
		if at, err := parseTime(n.Value, time.Time{}); err == nil {
			*t = AckTime{at: at}
			return nil
		}
	}
	return fmt.Errorf("line %d: at %q: a duration after the start, RFC 3339 or Unix seconds", n.Line, n.Value)
}

// timeFrom returns the time of t for a test or replay starting at start.
func (t AckTime) timeFrom(start time.Time) time.Time {
	if !t.at.IsZero() {
		return t.at
	}
	return start.Add(t.after)
}

// replay returns the acknowledgement for a test or replay starting at
// start.
func (a PolicyAcknowledgement) replay(start time.Time) ReplayAcknowledgement {
	ls := model.LabelSet{}
	for k, v := range a.Labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ReplayAcknowledgement{At: a.At.timeFrom(start), Labels: ls, Receiver: a.Receiver, By: a.By}
}

// replayAcknowledgementsFile is a file of --acknowledgements in its
// object form.
type replayAcknowledgementsFile struct {
	Acknowledgements []PolicyAcknowledgement `yaml:"acknowledgements"`
}

// LoadReplayAcknowledgements reads a file of acknowledgements for a replay
// of [from, to] (`alertd replay --acknowledgements`), written as policy
// tests' acknowledgements: YAML or JSON, a list of them or an object
// with the list under acknowledgements. A duration is after from.
// Acknowledgements outside the range are left out, so that one file can
// serve replays of different ranges.
func LoadReplayAcknowledgements(path string, from, to time.Time) ([]ReplayAcknowledgement, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var list []PolicyAcknowledgement
	if len(doc.Content) > 0 {
		var derr error
		if doc.Content[0].Kind == yaml.SequenceNode {
			derr = decodeStrict(b, &list)
		} else {
			var f replayAcknowledgementsFile
			derr = decodeStrict(b, &f)
			list = f.Acknowledgements
		}
		if derr != nil {
			return nil, fmt.Errorf("%s: %w", path, derr)
		}
	}
	var acks []ReplayAcknowledgement
	for _, pa := range list {
		if a := pa.replay(from); !a.At.Before(from) && !a.At.After(to) {
			acks = append(acks, a)
		}
	}
	return acks, nil
}

// decodeStrict decodes YAML into v, refusing unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// LedgerAcknowledgements returns the acknowledgements operators gave over
// [from, to], from the `acknowledged` events of the alert ledger under the
// storage directory (`alertd replay --acknowledgements.from-ledger`). It
// reads the segments only, so alertd may keep running. Each acknowledges
// its alerts, by fingerprint: an alert's acknowledgement is one, and an
// incident's, recorded as an event per firing alert at one time, is one
// of all those alerts, with the incident's route as the ledger knew it
// then (its grouped events, or the snapshot opening a segment).
func LedgerAcknowledgements(storage string, from, to time.Time, logger *slog.Logger) ([]ReplayAcknowledgement, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir := ledgerPath(storage)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("no alert ledger: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	// Segments are named by their first sequence number: in order.
	sort.Strings(names)
	var acks []ReplayAcknowledgement
	// routes are the incidents' routes, kept as the ledger keeps its
	// incidents: a snapshot holds them all (pruned ones are gone), and
	// a grouped event sets an incident's.
	routes := map[string]*incident{}
	for _, name := range names {
		_, err := readSegment(name, -1, logger, func(e *Event) {
			switch {
			case e.Event == eventSnapshot && e.Snapshot != nil:
				clear(routes)
				for _, in := range e.Snapshot.Incidents {
					routes[in.ID] = &incident{GroupKey: in.GroupKey, GroupLabels: in.GroupLabels, Receiver: in.Receiver, Route: in.Route}
				}
				return
			case e.Event == eventGrouped && e.Incident != "" && e.GroupKey != "":
				routes[e.Incident] = &incident{GroupKey: e.GroupKey, GroupLabels: e.GroupLabels, Receiver: e.Receiver, Route: e.Route}
				return
			}
			if e.Event != eventAcknowledged || e.Time.Before(from) || e.Time.After(to) {
				return
			}
			if n := len(acks); n > 0 && e.Incident != "" {
				if last := &acks[n-1]; last.LedgerIncident == e.Incident && last.At.Equal(e.Time) && last.By == e.By {
					last.Alerts = append(last.Alerts, e.Fingerprint)
					last.Labels = sharedLabels(last.Labels, e.Labels)
					return
				}
			}
			a := ReplayAcknowledgement{At: e.Time, Labels: e.Labels, By: e.By,
				Alerts: []string{e.Fingerprint}, LedgerIncident: e.Incident}
			if in := routes[e.Incident]; e.Incident != "" && in != nil {
				if k := in.routeKey(); k != "" {
					a.RouteKey, a.Receiver, a.Route, a.GroupKey = k, in.Receiver, in.Route, in.GroupKey
				}
			}
			acks = append(acks, a)
		})
		if errors.Is(err, os.ErrNotExist) {
			continue // pruned in between
		}
		if err != nil {
			return nil, fmt.Errorf("couldn't read the ledger: %w", err)
		}
	}
	slices.SortStableFunc(acks, func(a, b ReplayAcknowledgement) int { return a.At.Compare(b.At) })
	return acks, nil
}

// sharedLabels returns the labels a and b have in common.
func sharedLabels(a, b model.LabelSet) model.LabelSet {
	out := model.LabelSet{}
	for k, v := range a {
		if b[k] == v {
			out[k] = v
		}
	}
	return out
}
