package alertd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
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
	// Annotations are what Alertmanager's API (v0.35) lets a silence
	// carry besides its comment: a ticket, a change id. Stores written
	// before they were kept have none.
	Annotations map[string]string `json:"annotations,omitempty"`
	// UpdatedAt is when the silence was created, last updated in place or
	// expired; zero for the configuration's, and in stores written before
	// it was kept.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// Source is "api" or "config"; config silences come and go with the
	// configuration file and are not stored.
	Source string `json:"source"`
	// ExpireOnResolve ends the silence, before EndsAt, once every alert it
	// silenced has resolved: an acknowledgement that lasts as long as the
	// problem does (Alertmanager's users ask for it, alertmanager#1860).
	ExpireOnResolve bool `json:"expireOnResolve,omitempty"`
	// SilencedAt is when an ExpireOnResolve silence was first seen
	// selecting a firing alert; it ends only after that.
	SilencedAt time.Time `json:"silencedAt,omitzero"`

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
	out, err := parseMatcherList(in)
	if err != nil {
		return nil, err
	}
	// As Alertmanager: a silence must not match every alert.
	if out.Matches(model.LabelSet{}) {
		return nil, errors.New("matchers must not match the empty label set: at least one needs a non-empty value")
	}
	return out, nil
}

// parseMatcherList parses matchers in Alertmanager's syntax, each string
// holding one or several; none is none.
func parseMatcherList(in []string) (amlabels.Matchers, error) {
	var out amlabels.Matchers
	for _, s := range in {
		ms, err := amlabels.ParseMatchers(s)
		if err != nil {
			return nil, fmt.Errorf("invalid matcher %q: %w", s, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}

// defaultSilenceRetention is how long an expired silence is kept after it
// ends: Alertmanager's --data.retention default, so that GET
// /api/v2/silences lists the last days' silences as an Alertmanager's does.
const defaultSilenceRetention = 120 * time.Hour

// silencer is the silence stage of the pipeline, and the silences' store:
// API silences are kept in a file under --storage.path, so a restart
// keeps them, and forgotten --silences.retention after they end (gc, as
// Alertmanager's Silences.GC). The retention is counted from each
// silence's endsAt when gc runs, not stored with it, so a file written
// before the flag existed is read as it is and a changed flag applies to
// every silence.
type silencer struct {
	*itemSet[silence, *silence]
}

func newSilencer(path string) (*silencer, error) {
	set, err := openItemSet[silence]("silence", path)
	if err != nil {
		return nil, err
	}
	return &silencer{set}, nil
}

func (s *silence) itemID() string            { return s.ID }
func (s *silence) fromConfig() bool          { return s.Source == "config" }
func (s *silence) endsAt() (time.Time, bool) { return s.EndsAt, true }

func (s *silence) expire(now time.Time) {
	if now.Before(s.EndsAt) {
		s.EndsAt, s.UpdatedAt = now, now
		if now.Before(s.StartsAt) {
			s.StartsAt = now
		}
	}
}

func (s *silence) compile() (err error) {
	s.matchers, err = parseSilenceMatchers(s.Matchers)
	return err
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
	s.itemSet.setConfig(slices.Collect(maps.Values(next)))
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
	for _, sil := range s.items {
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
	return len(s.silencedBy(now, ls)) > 0
}

// silencedBy returns the ids of the active silences that select these
// labels at now, sorted.
func (s *silencer) silencedBy(now time.Time, ls model.LabelSet) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, sil := range s.items {
		if sil.state(now) == "active" && sil.matchers.Matches(ls) {
			ids = append(ids, sil.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// expiringOnResolve returns the active ExpireOnResolve silences.
func (s *silencer) expiringOnResolve(now time.Time) []silence {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []silence
	for _, sil := range s.items {
		if sil.ExpireOnResolve && sil.state(now) == "active" {
			out = append(out, *sil)
		}
	}
	return out
}

// markSilenced records that the silence selects a firing alert.
func (s *silencer) markSilenced(id string, now time.Time) error {
	s.mu.Lock()
	sil, ok := s.items[id]
	if !ok || !sil.SilencedAt.IsZero() {
		s.mu.Unlock()
		return nil
	}
	sil.SilencedAt = now
	s.mu.Unlock()
	return s.save()
}

// expireResolvedSilences ends the ExpireOnResolve silences that selected a
// firing alert and select none now; it runs with the pipeline's release,
// every few seconds.
func (a *Alertd) expireResolvedSilences(now time.Time) {
	expired, err := a.pipeline.expireResolvedSilences(now)
	if err != nil {
		a.logger.Error("Failed to save silences", "err", err)
	}
	for _, sil := range expired {
		a.logger.Info("Silence expired: every alert it silenced has resolved", "silence", sil.ID, "created_by", sil.CreatedBy)
	}
}

// expireResolvedSilences ends the ExpireOnResolve silences that selected a
// firing alert and select none now, and returns those it ended. A silence
// records when it first selects a firing alert (SilencedAt); one that has
// not yet waits for its alerts until its end. alertd runs it with its
// release; a replay at each evaluation and each change of its silences,
// so that both end a silence alike.
func (p *pipeline) expireResolvedSilences(now time.Time) ([]silence, error) {
	var (
		expired []silence
		errs    []error
	)
	for _, sil := range p.silencer.expiringOnResolve(now) {
		if p.store.anyFiring(now, sil.matchers) {
			if err := p.silencer.markSilenced(sil.ID, now); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if sil.SilencedAt.IsZero() {
			continue // nothing fired yet
		}
		ok, err := p.silencer.expire(sil.ID, now)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			expired = append(expired, sil)
		}
	}
	return expired, errors.Join(errs...)
}

// silencesPath is where API silences are kept.
func silencesPath(storage string) string { return filepath.Join(storage, "silences.json") }

// silenceRequest is the body of POST /api/v1/silences.
type silenceRequest struct {
	// ID, when given, names the silence to update: see silencer.set.
	ID        string    `json:"id"`
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	Duration  string    `json:"duration"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	// Annotations replace the updated silence's, as in Alertmanager.
	Annotations map[string]string `json:"annotations"`
	// ExpireOnResolve ends the silence once the alerts it silenced
	// resolve; unset, an update keeps the updated silence's (Alertmanager's
	// clients drop the field of alertd's GET /api/v2 answers when they
	// post a silence back).
	ExpireOnResolve *bool `json:"expireOnResolve"`
}

// postSilence creates a silence: matchers in Alertmanager's syntax, from
// startsAt (default now) until endsAt or for duration. With the id of a
// silence, it updates that one as POST /api/v2/silences does.
func (a *Alertd) postSilence(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req silenceRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse silence: %v", err), http.StatusBadRequest)
		return
	}
	sil, code, err := a.setSilence(r.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	respond(w, map[string]string{"silenceID": sil.ID})
}

// setSilence checks req and creates or updates its silence (silencer.set),
// for POST /api/v1/silences and Alertmanager's POST /api/v2/silences; an
// error comes with the status to answer.
func (a *Alertd) setSilence(ctx context.Context, req silenceRequest) (*silence, int, error) {
	now := a.opts.Now()
	ms, err := parseSilenceMatchers(req.Matchers)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if req.StartsAt.IsZero() {
		req.StartsAt = now
	}
	switch {
	case req.Duration != "" && !req.EndsAt.IsZero():
		return nil, http.StatusBadRequest, errors.New("give endsAt or duration, not both")
	case req.Duration != "":
		d, err := model.ParseDuration(req.Duration)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("invalid duration %q: %v", req.Duration, err)
		}
		req.EndsAt = req.StartsAt.Add(time.Duration(d))
	case req.EndsAt.IsZero():
		return nil, http.StatusBadRequest, errors.New("a silence needs endsAt or duration")
	}
	if !req.EndsAt.After(req.StartsAt) || !req.EndsAt.After(now) {
		return nil, http.StatusBadRequest, errors.New("endsAt must be after startsAt and in the future")
	}
	if len(req.Annotations) == 0 {
		req.Annotations = nil
	}
	sil := &silence{ID: req.ID, Matchers: req.Matchers, StartsAt: req.StartsAt, EndsAt: req.EndsAt,
		CreatedBy: req.CreatedBy, Comment: req.Comment, Annotations: req.Annotations, matchers: ms}
	err = a.silencer.set(sil, req.ExpireOnResolve, now)
	switch {
	case errors.Is(err, errSilenceNotFound):
		return nil, http.StatusNotFound, err
	case errors.Is(err, errFromConfig):
		return nil, http.StatusBadRequest, errors.New("a silence of the configuration file can't be changed through the API")
	case err != nil:
		a.logger.Error("Failed to save silences", "err", err)
		return nil, http.StatusInternalServerError, err
	}
	// Alerts firing now that it matches are suppressed at once.
	if err := a.store.resuppress(ctx, now); err != nil {
		a.logger.Error("Failed to apply the new silence", "err", err)
	}
	return sil, 0, nil
}

// errSilenceNotFound is the error of updating a silence that does not exist.
var errSilenceNotFound = errors.New("silence not found")

// set stores sil at now as Alertmanager's Silences.Set does. With the id
// of a silence that canUpdate lets it replace, sil takes its place and
// keeps its id. Otherwise sil is a new silence with a new id, starting no
// earlier than now, and the silence whose id it had, if any, is expired:
// its history stays. expireOnResolve, when not nil, sets sil's
// ExpireOnResolve; nil keeps the updated silence's.
func (s *silencer) set(sil *silence, expireOnResolve *bool, now time.Time) error {
	if err := s.update(sil, expireOnResolve, now); err != nil {
		return err
	}
	return s.save()
}

// update is set in memory: the caller saves.
func (s *silencer) update(sil *silence, expireOnResolve *bool, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.items[sil.ID]
	switch {
	case sil.ID != "" && !ok:
		return fmt.Errorf("%w: %q", errSilenceNotFound, sil.ID)
	case ok && prev.fromConfig():
		return errFromConfig
	}
	sil.Source, sil.UpdatedAt = "api", now
	if ok {
		sil.ExpireOnResolve = prev.ExpireOnResolve
	}
	if expireOnResolve != nil {
		sil.ExpireOnResolve = *expireOnResolve
	}
	if ok && canUpdate(prev, sil, now) {
		// The same silence: what it has seen fire still counts.
		sil.SilencedAt = prev.SilencedAt
		s.items[sil.ID] = sil
		return nil
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	sil.ID = hex.EncodeToString(id)
	if sil.StartsAt.Before(now) {
		sil.StartsAt = now
	}
	if ok {
		prev.expire(now) // unless it has ended already
	}
	s.items[sil.ID] = sil
	return nil
}

// canUpdate reports whether next may replace prev in place at now, keeping
// its id, by Alertmanager's rules (silence.canUpdate in v0.35): the same
// matchers, in the same order; a pending silence may change anything else
// but may not start before now; an active one keeps its start (to the
// second) and may not end before now; an expired one is never changed.
func canUpdate(prev, next *silence, now time.Time) bool {
	if !slices.EqualFunc(prev.matchers, next.matchers, func(a, b *amlabels.Matcher) bool {
		return a.Type == b.Type && a.Name == b.Name && a.Value == b.Value
	}) {
		return false
	}
	switch prev.state(now) {
	case "pending":
		return !next.StartsAt.Before(now)
	case "active":
		return prev.StartsAt.Unix() == next.StartsAt.Unix() && !next.EndsAt.Before(now)
	}
	return false
}

// getSilences lists silences with their state, in the order of GET
// /api/v2/silences (compareSilences): active ones first, the next to end
// first; then pending ones, the next to start first; then expired ones,
// the last to end first; ties by id.
func (a *Alertd) getSilences(w http.ResponseWriter, _ *http.Request) {
	now := a.opts.Now()
	type silenceJSON struct {
		silence
		State string `json:"state"`
	}
	sils := a.silencer.list(byEnd)
	slices.SortStableFunc(sils, func(x, y silence) int { return compareSilences(&x, &y, now) })
	out := []silenceJSON{}
	for _, s := range sils {
		out = append(out, silenceJSON{s, s.state(now)})
	}
	respond(w, out)
}

// deleteSilence expires a silence.
func (a *Alertd) deleteSilence(w http.ResponseWriter, r *http.Request) {
	a.deleteItem(w, r, "silence", "silenceID", a.silencer.expire)
}
