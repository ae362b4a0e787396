package alertd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// silence keeps the alerts its matchers select from notifications between
// its start and end, as Alertmanager's silences do.
type silence struct {
	ID        string    `json:"id"`
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	// Source is "api" or "config"; config silences come and go with the
	// configuration file and are not stored.
	Source string `json:"source"`

	matchers amlabels.Matchers
}

// state is pending, active or expired at now.
func (s *silence) state(now time.Time) string {
	switch {
	case now.Before(s.StartsAt):
		return "pending"
	case now.Before(s.EndsAt):
		return "active"
	}
	return "expired"
}

// parseSilenceMatchers parses a silence's matchers.
func parseSilenceMatchers(in []string) (amlabels.Matchers, error) {
	return parseMatchers("a silence", in)
}

// parseMatchers parses the matchers of what (a silence, a maintenance
// window) in Alertmanager's syntax; each string may hold several.
func parseMatchers(what string, in []string) (amlabels.Matchers, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%s needs at least one matcher", what)
	}
	var out amlabels.Matchers
	for _, s := range in {
		ms, err := amlabels.ParseMatchers(s)
		if err != nil {
			return nil, fmt.Errorf("invalid matcher %q: %w", s, err)
		}
		out = append(out, ms...)
	}
	// As Alertmanager: a silence must not match every alert.
	if out.Matches(model.LabelSet{}) {
		return nil, errors.New("matchers must not match the empty label set: at least one needs a non-empty value")
	}
	return out, nil
}

// silencer is the silence stage of the pipeline, and the silences' store:
// API silences are kept in a file under --storage.path, so a restart
// keeps them.
type silencer struct {
	mu       sync.Mutex
	path     string
	silences map[string]*silence
}

func newSilencer(path string) (*silencer, error) {
	s := &silencer{path: path, silences: map[string]*silence{}}
	var stored []*silence
	if _, err := readJSON(path, &stored); err != nil {
		return nil, fmt.Errorf("couldn't read silences: %w", err)
	}
	for _, sil := range stored {
		var err error
		if sil.matchers, err = parseSilenceMatchers(sil.Matchers); err != nil {
			return nil, fmt.Errorf("couldn't read silence %s from %s: %w", sil.ID, path, err)
		}
		s.silences[sil.ID] = sil
	}
	return s, nil
}

// setConfig replaces the configuration's silences, keeping the API's.
func (s *silencer) setConfig(cfgs []*alertconfig.Silence) error {
	next := map[string]*silence{}
	for _, c := range cfgs {
		ms, err := parseSilenceMatchers(c.Matchers)
		if err != nil {
			return err
		}
		sil := &silence{Matchers: c.Matchers, StartsAt: c.StartsAt, EndsAt: c.EndsAt,
			CreatedBy: c.CreatedBy, Comment: c.Comment, Source: "config", matchers: ms}
		b, _ := json.Marshal(sil)
		sum := model.LabelSet{"silence": model.LabelValue(b)}.Fingerprint()
		sil.ID = "config-" + sum.String()
		next[sil.ID] = sil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sil := range s.silences {
		if sil.Source == "config" {
			delete(s.silences, id)
		}
	}
	for id, sil := range next {
		s.silences[id] = sil
	}
	return nil
}

// Name implements Stage.
func (s *silencer) Name() string { return "silence" }

// operatorDecision implements operatorStage: an escalation does not lift a
// silence.
func (s *silencer) operatorDecision() {}

// Process implements Stage: an alert matched by an active silence is
// suppressed; with several, the one ending last is named.
func (s *silencer) Process(_ context.Context, now time.Time, a *Alert) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	var by *silence
	for _, sil := range s.silences {
		if sil.state(now) != "active" || !sil.matchers.Matches(a.Labels) {
			continue
		}
		if by == nil || sil.EndsAt.After(by.EndsAt) || (sil.EndsAt.Equal(by.EndsAt) && sil.ID < by.ID) {
			by = sil
		}
	}
	if by == nil {
		return Decision{}
	}
	a.Suppressed = true
	reason := fmt.Sprintf("silenced by %s until %s", by.ID, by.EndsAt.UTC().Format(time.RFC3339))
	if by.CreatedBy != "" {
		reason += ", created by " + by.CreatedBy
	}
	if by.Comment != "" {
		reason += ": " + by.Comment
	}
	return Decision{Action: "suppressed", Reason: reason}
}

// mutes reports whether an active silence selects these labels at now; the
// notifier asks it at every flush.
func (s *silencer) mutes(now time.Time, ls model.LabelSet) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sil := range s.silences {
		if sil.state(now) == "active" && sil.matchers.Matches(ls) {
			return true
		}
	}
	return false
}

// add stores a new API silence.
func (s *silencer) add(sil *silence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silences[sil.ID] = sil
	return s.saveLocked()
}

// expire ends a silence now. It reports whether the silence exists.
func (s *silencer) expire(id string, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sil, ok := s.silences[id]
	if !ok {
		return false, nil
	}
	if sil.Source == "config" {
		return true, errors.New("silence comes from the configuration file: remove it there")
	}
	if now.Before(sil.EndsAt) {
		sil.EndsAt = now
		if now.Before(sil.StartsAt) {
			sil.StartsAt = now
		}
	}
	return true, s.saveLocked()
}

// list returns the silences, sorted by end time and id.
func (s *silencer) list() []silence {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]silence, 0, len(s.silences))
	for _, sil := range s.silences {
		out = append(out, *sil)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].EndsAt.Equal(out[j].EndsAt) {
			return out[i].EndsAt.Before(out[j].EndsAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// gc forgets API silences expired longer than retention ago.
func (s *silencer) gc(now time.Time, retention time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for id, sil := range s.silences {
		if sil.Source == "api" && now.Sub(sil.EndsAt) > retention {
			delete(s.silences, id)
			changed = true
		}
	}
	if changed {
		_ = s.saveLocked()
	}
}

// saveLocked writes the API silences atomically. Called with s.mu held.
func (s *silencer) saveLocked() error {
	var stored []*silence
	for _, sil := range s.silences {
		if sil.Source == "api" {
			stored = append(stored, sil)
		}
	}
	slices.SortFunc(stored, func(a, b *silence) int { return strings.Compare(a.ID, b.ID) })
	if err := writeJSON(s.path, stored); err != nil {
		return fmt.Errorf("couldn't save silences: %w", err)
	}
	return nil
}

// silencesPath is where API silences are kept.
func silencesPath(storage string) string { return filepath.Join(storage, "silences.json") }

// silenceRequest is the body of POST /api/v1/silences.
type silenceRequest struct {
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	Duration  string    `json:"duration"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
}

// postSilence creates a silence: matchers in Alertmanager's syntax, from
// startsAt (default now) until endsAt or for duration.
func (a *Alertd) postSilence(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req silenceRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse silence: %v", err), http.StatusBadRequest)
		return
	}
	now := a.opts.Now()
	ms, err := parseSilenceMatchers(req.Matchers)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if req.StartsAt.IsZero() {
		req.StartsAt = now
	}
	switch {
	case req.Duration != "" && !req.EndsAt.IsZero():
		http.Error(w, "give endsAt or duration, not both", http.StatusBadRequest)
		return
	case req.Duration != "":
		d, err := model.ParseDuration(req.Duration)
		if err != nil {
			http.Error(w, fmt.Sprintf("invalid duration %q: %v", req.Duration, err), http.StatusBadRequest)
			return
		}
		req.EndsAt = req.StartsAt.Add(time.Duration(d))
	case req.EndsAt.IsZero():
		http.Error(w, "a silence needs endsAt or duration", http.StatusBadRequest)
		return
	}
	if !req.EndsAt.After(req.StartsAt) || !req.EndsAt.After(now) {
		http.Error(w, "endsAt must be after startsAt and in the future", http.StatusBadRequest)
		return
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	sil := &silence{ID: hex.EncodeToString(id), Matchers: req.Matchers, StartsAt: req.StartsAt, EndsAt: req.EndsAt,
		CreatedBy: req.CreatedBy, Comment: req.Comment, Source: "api", matchers: ms}
	if err := a.silencer.add(sil); err != nil {
		a.logger.Error("Failed to save silences", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Alerts firing now that it matches are suppressed at once.
	if err := a.store.resuppress(r.Context(), now); err != nil {
		a.logger.Error("Failed to apply the new silence", "err", err)
	}
	respond(w, map[string]string{"silenceID": sil.ID})
}

// getSilences lists silences with their state.
func (a *Alertd) getSilences(w http.ResponseWriter, _ *http.Request) {
	now := a.opts.Now()
	type silenceJSON struct {
		silence
		State string `json:"state"`
	}
	out := []silenceJSON{}
	for _, s := range a.silencer.list() {
		out = append(out, silenceJSON{s, s.state(now)})
	}
	respond(w, out)
}

// deleteSilence expires a silence.
func (a *Alertd) deleteSilence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ok, err := a.silencer.expire(id, a.opts.Now())
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("no silence %q", id), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		respond(w, map[string]string{"silenceID": id})
	}
}
