package alertd

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	amalert "github.com/prometheus/alertmanager/alert"
	apiv2 "github.com/prometheus/alertmanager/api/v2"
	"github.com/prometheus/alertmanager/api/v2/models"
	amnotify "github.com/prometheus/alertmanager/notify"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	yamlv2 "go.yaml.in/yaml/v2"
)

// Alertmanager's API v2 beside the intake (POST /api/v2/alerts), so that
// what talks to an Alertmanager (amtool, Grafana's Alertmanager data
// source, scripts) talks to alertd: the alerts and their groups, the
// status, the receivers and the silences.

// getV2Alerts is Alertmanager's GET /api/v2/alerts: the alerts that fire,
// with their state (active, suppressed by any stage, or unprocessed while
// held for a check of the Alertmanager that relayed them), the silences and
// the alert that hold them, and the receivers their labels route to.
// Alertmanager's parameters filter: filter (matchers, repeated), receiver
// (a regular expression), and active, silenced and inhibited (true unless
// set to false; unprocessed is checked and ignored, as in Alertmanager).
// Resolved alerts are left out, as Alertmanager leaves them out.
func (a *Alertd) getV2Alerts(w http.ResponseWriter, r *http.Request) {
	alerts, err := a.queryV2Alerts(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out := models.GettableAlerts{}
	for _, al := range alerts {
		out = append(out, al.GettableAlert)
	}
	respondV2(w, out)
}

// getV2AlertGroups is Alertmanager's GET /api/v2/alerts/groups: the alerts
// of GET /api/v2/alerts (with its parameters) in the notification groups
// their routes sort them into, keyed as Alertmanager's dispatcher keys
// them. A group whose route is muted now by its mute_time_intervals, or
// outside its active_time_intervals, gives its alerts those intervals'
// names in mutedBy and the state suppressed, as in Alertmanager; muted=false
// leaves such groups out.
func (a *Alertd) getV2AlertGroups(w http.ResponseWriter, r *http.Request) {
	showMuted, err := boolParam(r.URL.Query(), "muted")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	alerts, err := a.queryV2Alerts(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := a.opts.Now()
	rt := a.routing.Load()
	// A group, as its alerts come: its route's group, the intervals that
	// mute it now, and its members.
	type v2Group struct {
		alertGroup
		mutedBy []string
		members []*amalert.Alert
		out     *models.AlertGroup
	}
	byKey := map[string]*v2Group{}
	for _, al := range alerts {
		for _, g := range rt.groups(al.labels) {
			// Routes with the same matchers are groups of their own,
			// as in Alertmanager, though their keys are the same.
			vg, ok := byKey[g.ID]
			if !ok {
				active, mute, err := amnotify.MutedByTimeIntervals(rt.intervals, g.route.RouteOpts.ActiveTimeIntervals, g.route.RouteOpts.MuteTimeIntervals, now)
				if err != nil {
					http.Error(w, fmt.Sprintf("couldn't check the time intervals of route %s: %v", g.route.Key(), err), http.StatusInternalServerError)
					return
				}
				vg = &v2Group{alertGroup: g, mutedBy: slices.Concat(active, mute), out: &models.AlertGroup{
					Labels: apiv2.ModelLabelSetToAPILabelSet(g.Labels), Receiver: &models.ReceiverReference{Name: new(g.Receiver)},
					Alerts: []*models.GettableAlert{}}}
				byKey[g.ID] = vg
			}
			ga := al.GettableAlert
			if len(vg.mutedBy) > 0 {
				ga = mutedV2Alert(ga, vg.mutedBy)
			}
			vg.out.Alerts = append(vg.out.Alerts, ga)
			vg.members = append(vg.members, al.source)
		}
	}
	out := models.AlertGroups{}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		vg := byKey[k]
		if len(vg.mutedBy) > 0 && !showMuted {
			continue
		}
		vg.out.RouteLabels = apiv2.ModelLabelSetToAPILabelSet(a.notify.RouteLabels(vg.route, vg.Labels, vg.members...))
		out = append(out, vg.out)
	}
	respondV2(w, out)
}

// mutedV2Alert returns a copy of ga muted by the named time intervals.
func mutedV2Alert(ga *models.GettableAlert, mutedBy []string) *models.GettableAlert {
	c, st := *ga, *ga.Status
	st.MutedBy, st.State = mutedBy, new(models.AlertStatusStateSuppressed)
	c.Status = &st
	return &c
}

// boolParam returns the query parameter name as a bool, true when unset.
func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false, got %q", name, v)
	}
	return b, nil
}

// v2Gettable is an alert of GET /api/v2/alerts, with its labels as alertd
// holds them.
type v2Gettable struct {
	*models.GettableAlert
	labels model.LabelSet
	source *amalert.Alert
}

// queryV2Alerts returns the alerts that Alertmanager's parameters in r
// select, ordered by fingerprint; an error is the request's.
func (a *Alertd) queryV2Alerts(r *http.Request) ([]v2Gettable, error) {
	q := r.URL.Query()
	var show [3]bool // active, silenced, inhibited
	for i, name := range []string{"active", "silenced", "inhibited"} {
		var err error
		if show[i], err = boolParam(q, name); err != nil {
			return nil, err
		}
	}
	if _, err := boolParam(q, "unprocessed"); err != nil { // checked, and ignored as Alertmanager ignores it
		return nil, err
	}
	filter, err := parseMatcherList(q["filter"])
	if err != nil {
		return nil, err
	}
	var receiver *regexp.Regexp
	if v := q.Get("receiver"); v != "" {
		if receiver, err = regexp.Compile("^(?:" + v + ")$"); err != nil {
			return nil, fmt.Errorf("bad receiver regular expression %q: %v", v, err)
		}
	}

	now := a.opts.Now()
	var out []v2Gettable
	for _, al := range a.store.v2Alerts(now, a.silencer) {
		if !filter.Matches(al.Labels) {
			continue
		}
		if receiver != nil && !slices.ContainsFunc(al.receivers, receiver.MatchString) {
			continue
		}
		state := amalert.AlertStateActive
		switch {
		case al.awaiting != nil && len(al.silencedBy) == 0 && len(al.inhibitedBy) == 0:
			// Held until the Alertmanager that relayed it says whether
			// it silences or inhibits it: not processed yet, as
			// Alertmanager says of an alert its silences and
			// inhibitions have not seen.
			state = amalert.AlertStateUnprocessed
		case al.Suppressed:
			state = amalert.AlertStateSuppressed
		}
		if (state == amalert.AlertStateActive && !show[0]) || (len(al.silencedBy) > 0 && !show[1]) || (len(al.inhibitedBy) > 0 && !show[2]) {
			continue
		}
		src := amalert.New(al.Alert.Alert, al.UpdatedAt, al.Timeout)
		ga := apiv2.AlertToOpenAPIAlert(src, amalert.AlertStatus{State: state, SilencedBy: al.silencedBy, InhibitedBy: al.inhibitedBy}, al.receivers, nil)
		out = append(out, v2Gettable{ga, al.Labels, src})
	}
	// In Alertmanager's order: by fingerprint.
	slices.SortFunc(out, func(x, y v2Gettable) int { return strings.Compare(*x.Fingerprint, *y.Fingerprint) })
	return out, nil
}

// getV2Status is Alertmanager's GET /api/v2/status: alertd runs no
// cluster, and its configuration is shown with its secrets hidden.
func (a *Alertd) getV2Status(w http.ResponseWriter, _ *http.Request) {
	original := ""
	if cfg := a.cfg.Load(); cfg != nil {
		if b, err := yamlv2.Marshal(cfg); err == nil {
			original = string(b)
		}
	}
	respondV2(w, &models.AlertmanagerStatus{
		Cluster: &models.ClusterStatus{Status: new(models.ClusterStatusStatusDisabled), Peers: []*models.PeerStatus{}},
		Config:  &models.AlertmanagerConfig{Original: &original},
		Uptime:  dateTime(a.startedAt),
		VersionInfo: &models.VersionInfo{
			Branch: new(version.Branch), BuildDate: new(version.BuildDate), BuildUser: new(version.BuildUser),
			GoVersion: new(runtime.Version()), Revision: new(version.Revision), Version: new(version.Version),
		},
	})
}

// v2Alert is a firing alert with what GET /api/v2/alerts says of it.
type v2Alert struct {
	Alert
	receivers, silencedBy, inhibitedBy []string
}

// v2Alerts returns copies of the alerts that fire at now, with the
// receivers their labels route to, the silences that select them and the
// alert that inhibits them.
func (s *store) v2Alerts(now time.Time, sil *silencer) []v2Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []v2Alert
	for _, a := range s.alerts {
		if a.ResolvedAt(now) {
			continue
		}
		v := v2Alert{Alert: *a, receivers: s.route(a.Labels), silencedBy: sil.silencedBy(now, a.Labels)}
		v.History = nil
		if s.inhibitor != nil {
			if src, _ := s.inhibitor.source(now, a); src != nil {
				v.inhibitedBy = []string{src.Fingerprint.String()}
			}
		}
		out = append(out, v)
	}
	return out
}

func dateTime(t time.Time) *strfmt.DateTime {
	d := strfmt.DateTime(t)
	return &d
}

// respondV2 writes v as the bare JSON body Alertmanager's API v2 answers
// with (no envelope).
func respondV2(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// getV2Receivers is Alertmanager's GET /api/v2/receivers: the configured
// receivers' names.
func (a *Alertd) getV2Receivers(w http.ResponseWriter, _ *http.Request) {
	out := []*models.Receiver{}
	if cfg := a.cfg.Load(); cfg != nil {
		for _, r := range cfg.Receivers {
			out = append(out, &models.Receiver{Name: new(r.Name)})
		}
	}
	respondV2(w, out)
}

// getV2Silences is Alertmanager's GET /api/v2/silences, as in v0.35:
// every silence, from the API or the configuration, with its state.
// filter (one matcher each, repeated) keeps the silences that have each of
// its matchers among theirs, with the same name, type and value; active,
// pending and expired (true unless set to false) keep the silences in that
// state. They come active first, the next to end first; then pending, the
// next to start first; then expired, the last to end first
// (Alertmanager's SortSilences); ties by id.
func (a *Alertd) getV2Silences(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	show := map[string]bool{}
	for _, state := range []string{"active", "pending", "expired"} {
		v, err := boolParam(q, state)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		show[state] = v
	}
	var filter amlabels.Matchers
	for _, f := range q["filter"] {
		m, err := amlabels.ParseMatcher(f)
		if err != nil {
			http.Error(w, fmt.Sprintf("invalid filter %q: %v", f, err), http.StatusBadRequest)
			return
		}
		filter = append(filter, m)
	}
	now := a.opts.Now()
	var sils []silence
	for _, s := range a.silencer.list(byEnd) {
		if show[s.state(now)] && hasMatchers(s.matchers, filter) {
			sils = append(sils, s)
		}
	}
	slices.SortStableFunc(sils, func(x, y silence) int { return compareSilences(&x, &y, now) })
	out := []v2Silence{}
	for _, s := range sils {
		out = append(out, v2Silence{gettableSilence(&s, now), s.ExpireOnResolve})
	}
	respondV2(w, out)
}

// hasMatchers reports whether have holds each of want with the same name,
// type and value (Alertmanager's silence.HasLabelMatchers).
func hasMatchers(have, want amlabels.Matchers) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h *amlabels.Matcher) bool {
			return h.Name == w.Name && h.Type == w.Type && h.Value == w.Value
		}) {
			return false
		}
	}
	return true
}

// silenceStateOrder is the order of Alertmanager's SortSilences.
var silenceStateOrder = map[string]int{"active": 1, "pending": 2, "expired": 3}

// compareSilences orders silences as Alertmanager's SortSilences does:
// active by end, pending by start, expired by end, the latest first. Its
// API v1 listed them in the same order, so GET /api/v1/silences does too.
func compareSilences(x, y *silence, now time.Time) int {
	sx, sy := x.state(now), y.state(now)
	if sx != sy {
		return cmp.Compare(silenceStateOrder[sx], silenceStateOrder[sy])
	}
	switch sx {
	case "active":
		return x.EndsAt.Compare(y.EndsAt)
	case "pending":
		return x.StartsAt.Compare(y.StartsAt)
	}
	return y.EndsAt.Compare(x.EndsAt)
}

// getV2Silence is Alertmanager's GET /api/v2/silence/{silenceID}.
func (a *Alertd) getV2Silence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, s := range a.silencer.list(byEnd) {
		if s.ID == id {
			respondV2(w, v2Silence{gettableSilence(&s, a.opts.Now()), s.ExpireOnResolve})
			return
		}
	}
	http.Error(w, fmt.Sprintf("silence %q not found", id), http.StatusNotFound)
}

// v2Silence is a silence as GET /api/v2/silences and GET
// /api/v2/silence/{silenceID} answer it: Alertmanager's model, and
// alertd's expireOnResolve when it is set, so that a client that reads a
// silence back, changes it and posts it whole keeps it. Only a silence
// that has it carries the field, so the others answer as Alertmanager's
// do; Alertmanager's models (go-openapi's, which amtool and Alertmanager's
// Go client decode with) ignore fields they do not know.
type v2Silence struct {
	*models.GettableSilence
	ExpireOnResolve bool
}

// MarshalJSON implements json.Marshaler. The embedded model's own
// MarshalJSON would be promoted and leave out ExpireOnResolve.
func (s v2Silence) MarshalJSON() ([]byte, error) {
	b, err := s.GettableSilence.MarshalJSON()
	if err != nil || !s.ExpireOnResolve {
		return b, err
	}
	// b is a non-empty object: the model always writes its id.
	return append(b[:len(b)-1], `,"expireOnResolve":true}`...), nil
}

// gettableSilence is s in Alertmanager's model. Its update time is when it
// was created, last updated in place or expired, or, for a silence of the
// configuration file, its start.
func gettableSilence(s *silence, now time.Time) *models.GettableSilence {
	updated := s.UpdatedAt
	if updated.IsZero() {
		updated = s.StartsAt
	}
	matchers := models.Matchers{}
	for _, m := range s.matchers {
		matchers = append(matchers, &models.Matcher{
			Name: new(m.Name), Value: new(m.Value),
			IsRegex: new(m.Type == amlabels.MatchRegexp || m.Type == amlabels.MatchNotRegexp),
			IsEqual: new(m.Type == amlabels.MatchEqual || m.Type == amlabels.MatchRegexp),
		})
	}
	return &models.GettableSilence{
		ID:        new(s.ID),
		Status:    &models.SilenceStatus{State: new(s.state(now))},
		UpdatedAt: dateTime(updated),
		Silence: models.Silence{
			Comment: new(s.Comment), CreatedBy: new(s.CreatedBy), Annotations: models.LabelSet(s.Annotations),
			StartsAt: dateTime(s.StartsAt), EndsAt: dateTime(s.EndsAt), Matchers: matchers,
		},
	}
}

// postV2Silence is Alertmanager's POST /api/v2/silences: it creates the
// silence as POST /api/v1/silences does and answers its id. With the id
// of an existing silence, it updates that one in place, or expires it and
// creates a new one, by Alertmanager's rules (silencer.set). Besides
// Alertmanager's model it takes alertd's expireOnResolve, which GET
// answers with; an update without it keeps the silence's, so that
// Alertmanager's clients, which drop it, do not clear it.
func (a *Alertd) postV2Silence(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		http.Error(w, fmt.Sprintf("couldn't read silence: %v", err), http.StatusBadRequest)
		return
	}
	var (
		ps    models.PostableSilence
		extra struct {
			ExpireOnResolve *bool `json:"expireOnResolve"`
		}
	)
	if err := json.Unmarshal(body, &ps); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse silence: %v", err), http.StatusBadRequest)
		return
	}
	if err := json.Unmarshal(body, &extra); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse silence: %v", err), http.StatusBadRequest)
		return
	}
	if err := ps.Validate(strfmt.Default); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := silenceRequest{ID: ps.ID, StartsAt: time.Time(*ps.StartsAt), EndsAt: time.Time(*ps.EndsAt), CreatedBy: *ps.CreatedBy, Comment: *ps.Comment,
		Annotations: ps.Annotations, ExpireOnResolve: extra.ExpireOnResolve}
	for _, m := range ps.Matchers {
		am, err := matcherFromV2(m)
		if err != nil {
			http.Error(w, fmt.Sprintf("invalid matcher %s: %v", *m.Name, err), http.StatusBadRequest)
			return
		}
		req.Matchers = append(req.Matchers, am.String())
	}
	sil, code, err := a.setSilence(r.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	respondV2(w, map[string]string{"silenceID": sil.ID})
}

// matcherFromV2 is the matcher m of Alertmanager's API v2, whose name,
// value and isRegex are set; isEqual unset is true, as before Alertmanager
// v0.22 added it.
func matcherFromV2(m *models.Matcher) (*amlabels.Matcher, error) {
	typ := amlabels.MatchEqual
	switch regex, equal := *m.IsRegex, m.IsEqual == nil || *m.IsEqual; {
	case regex && equal:
		typ = amlabels.MatchRegexp
	case regex:
		typ = amlabels.MatchNotRegexp
	case !equal:
		typ = amlabels.MatchNotEqual
	}
	return amlabels.NewMatcher(typ, *m.Name, *m.Value)
}

// deleteV2Silence is Alertmanager's DELETE /api/v2/silence/{silenceID}:
// it expires the silence.
func (a *Alertd) deleteV2Silence(w http.ResponseWriter, r *http.Request) {
	ok, err := a.silencer.expire(r.PathValue("id"), a.opts.Now())
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("silence %q not found", r.PathValue("id")), http.StatusNotFound)
	case errors.Is(err, errFromConfig):
		http.Error(w, "a silence of the configuration file can't be expired through the API", http.StatusBadRequest)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
