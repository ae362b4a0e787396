package alertd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
)

// ReplaySilence is a silence given to a replay (`alertd replay
// --silences`): one created through the API of alertd or of an
// Alertmanager, which the configuration file does not hold. The replay
// applies it over its own [StartsAt, EndsAt) on the replay's clock, as
// alertd applied it then, through the silence stage that applies the
// configuration's silences. One with ExpireOnResolve ends, as in alertd,
// once every alert it selected while firing has resolved in the replay.
type ReplaySilence struct {
	ID string `json:"id"`
	// Matchers are in Alertmanager's syntax, whichever form the file had.
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	// ExpireOnResolve is alertd's expireOnResolve: the silence ends,
	// before EndsAt, once the alerts it selected while firing resolved.
	ExpireOnResolve bool `json:"expire_on_resolve,omitempty"`
	// Alerts are the fingerprints of the alerts the silence selected while
	// it was active and they fired, set by the replay: [] for none.
	Alerts []string `json:"alerts"`
	// ExpiredAt is when the replay ended an ExpireOnResolve silence
	// because its alerts had resolved; zero if it did not.
	ExpiredAt time.Time `json:"expired_at,omitzero"`

	matchers amlabels.Matchers
}

// replaySilenceJSON is a silence of a --silences file: as GET
// /api/v2/silences answers it (alertd's and Alertmanager's, and amtool
// silence query -o json), with matchers as objects; or as alertd keeps it
// in silences.json and lists it in GET /api/v1/silences, with matchers as
// strings in Alertmanager's syntax. Fields neither form needs are ignored:
// Alertmanager's releases add some.
type replaySilenceJSON struct {
	ID        string            `json:"id"`
	Matchers  []json.RawMessage `json:"matchers"`
	StartsAt  time.Time         `json:"startsAt"`
	EndsAt    time.Time         `json:"endsAt"`
	CreatedBy string            `json:"createdBy"`
	Comment   string            `json:"comment"`
	// Source is "config" for a silence of the configuration file in GET
	// /api/v1/silences.
	Source string `json:"source"`
	// ExpireOnResolve is in alertd's silences.json and its GET
	// /api/v1/silences and GET /api/v2/silences (there only when true);
	// an Alertmanager's answer has no such field.
	ExpireOnResolve bool `json:"expireOnResolve"`
}

// configSilencePrefix begins the ids alertd gives its configuration's
// silences (silencer.setConfig).
const configSilencePrefix = "config-"

// ReadReplaySilences reads the silences of `alertd replay --silences` for a
// replay of [from, to]: a JSON list of silences as GET /api/v2/silences
// answers it (alertd's, Alertmanager's, amtool silence query -o json), as
// alertd keeps them in <storage.path>/silences.json, or GET
// /api/v1/silences's answer, whose data is that list. Each silence is read
// by its matchers: objects ({name, value, isRegex, isEqual}) as the API v2
// answers them, strings as alertd keeps them. Their times are taken as
// they are: a silence expired or updated before its end has its final end.
// Silences that do not overlap the range are left out, so that one file
// can serve replays of different ranges, and so are the silences of
// alertd's configuration file (their ids begin with "config-"): the
// replayed configuration's own apply instead.
func ReadReplaySilences(r io.Reader, from, to time.Time) ([]ReplaySilence, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var list []json.RawMessage
	switch t := bytes.TrimSpace(b); {
	case len(t) > 0 && t[0] == '[':
		err = json.Unmarshal(t, &list)
	case len(t) > 0 && t[0] == '{':
		var v1 struct {
			Data json.RawMessage `json:"data"`
		}
		if err = json.Unmarshal(t, &v1); err == nil {
			if len(v1.Data) == 0 {
				err = errors.New("an object without data")
			} else {
				err = json.Unmarshal(v1.Data, &list)
			}
		}
	default:
		err = errors.New("not a JSON list or object")
	}
	if err != nil {
		return nil, fmt.Errorf("neither a list of silences (GET /api/v2/silences, silences.json) nor GET /api/v1/silences's answer: %w", err)
	}
	var out []ReplaySilence
	seen := map[string]bool{}
	for i, raw := range list {
		var sj replaySilenceJSON
		if err := json.Unmarshal(raw, &sj); err != nil {
			var id struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &id) == nil && id.ID != "" {
				return nil, fmt.Errorf("silence %s: %w", id.ID, err)
			}
			return nil, fmt.Errorf("silence %d of the list: %w", i+1, err)
		}
		if sj.ID == "" {
			return nil, fmt.Errorf("silence %d of the list has no id", i+1)
		}
		if seen[sj.ID] {
			return nil, fmt.Errorf("silence %s is in the list twice", sj.ID)
		}
		seen[sj.ID] = true
		if sj.Source == "config" || strings.HasPrefix(sj.ID, configSilencePrefix) {
			continue
		}
		s, err := sj.replay()
		if err != nil {
			return nil, fmt.Errorf("silence %s: %w", sj.ID, err)
		}
		if s.EndsAt.After(from) && !s.StartsAt.After(to) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b ReplaySilence) int {
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// replay checks the silence and returns it for a replay.
func (sj *replaySilenceJSON) replay() (ReplaySilence, error) {
	s := ReplaySilence{ID: sj.ID, StartsAt: sj.StartsAt, EndsAt: sj.EndsAt, CreatedBy: sj.CreatedBy, Comment: sj.Comment,
		ExpireOnResolve: sj.ExpireOnResolve}
	switch {
	case sj.StartsAt.IsZero() || sj.EndsAt.IsZero():
		return s, errors.New("a silence needs startsAt and endsAt")
	case sj.EndsAt.Before(sj.StartsAt):
		return s, fmt.Errorf("endsAt %s is before startsAt %s", sj.EndsAt.Format(time.RFC3339), sj.StartsAt.Format(time.RFC3339))
	}
	for _, raw := range sj.Matchers {
		var str string
		if err := json.Unmarshal(raw, &str); err == nil {
			s.Matchers = append(s.Matchers, str)
			continue
		}
		var m models.Matcher
		if err := json.Unmarshal(raw, &m); err != nil {
			return s, fmt.Errorf("matcher %s is neither a string nor an object of GET /api/v2/silences", raw)
		}
		if m.Name == nil || m.Value == nil || m.IsRegex == nil {
			return s, fmt.Errorf("matcher %s needs name, value and isRegex", raw)
		}
		am, err := matcherFromV2(&m)
		if err != nil {
			return s, fmt.Errorf("invalid matcher %s: %w", raw, err)
		}
		s.Matchers = append(s.Matchers, am.String())
	}
	var err error
	s.matchers, err = parseSilenceMatchers(s.Matchers)
	return s, err
}

// addReplaySilences adds the silences of --silences to a replay's silence
// stage, as API silences: they apply there, begin and end
// (suppressionChanges, suppressBegun) as the configuration's do, and
// those with ExpireOnResolve end when their alerts resolve
// (pipeline.expireResolvedSilences) as alertd's do.
func (s *silencer) addReplaySilences(sils []ReplaySilence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range sils {
		s.items[rs.ID] = &silence{ID: rs.ID, Matchers: rs.Matchers, StartsAt: rs.StartsAt, EndsAt: rs.EndsAt,
			CreatedBy: rs.CreatedBy, Comment: rs.Comment, Source: "api", ExpireOnResolve: rs.ExpireOnResolve,
			matchers: rs.matchers}
	}
}

// replaySilences records which alerts each silence of --silences selected
// while it was active and they fired.
type replaySilences struct {
	sils []ReplaySilence
	seen []map[model.Fingerprint]bool
}

// newReplaySilences copies sils, so that each replay records its own.
func newReplaySilences(sils []ReplaySilence) *replaySilences {
	r := &replaySilences{sils: make([]ReplaySilence, len(sils)), seen: make([]map[model.Fingerprint]bool, len(sils))}
	for i, s := range sils {
		s.Alerts = []string{}
		r.sils[i], r.seen[i] = s, map[model.Fingerprint]bool{}
	}
	return r
}

// observe records the firing alerts of the store that the silences active
// at now select. The replay calls it at each look at its alerts: at each
// evaluation, and at each time a silence begins or ends.
func (r *replaySilences) observe(now time.Time, s *store) {
	var active []int
	for i := range r.sils {
		if sil := &r.sils[i]; !now.Before(sil.StartsAt) && now.Before(sil.EndsAt) && sil.ExpiredAt.IsZero() {
			active = append(active, i)
		}
	}
	if len(active) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for fp, a := range s.alerts {
		if a.ResolvedAt(now) {
			continue
		}
		for _, i := range active {
			if !r.seen[i][fp] && r.sils[i].matchers.Matches(a.Labels) {
				r.seen[i][fp] = true
				r.sils[i].Alerts = append(r.sils[i].Alerts, fp.String())
			}
		}
	}
}

// expired records the silences the replay ended at now because their
// alerts resolved.
func (r *replaySilences) expired(sils []silence, now time.Time) {
	for _, sil := range sils {
		for i := range r.sils {
			if r.sils[i].ID == sil.ID {
				r.sils[i].ExpiredAt = now
			}
		}
	}
}

// result returns the silences with the alerts each selected, sorted.
func (r *replaySilences) result() []ReplaySilence {
	for i := range r.sils {
		slices.Sort(r.sils[i].Alerts)
	}
	return r.sils
}
