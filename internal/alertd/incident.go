package alertd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/common/model"
)

// incidentClosedRetention is how long closed incidents stay listed.
const incidentClosedRetention = 24 * time.Hour

// incident groups the related alerts one notification group of a route
// holds: it opens when the group's first alert fires unsuppressed, holds
// the group's firing alerts and closes when they have all resolved. Its
// GroupKey is the notifier's group key (Alertmanager's aggregation group),
// so a notification of the group to its receiver is a page of the
// incident.
//
// Alertmanager's group key is its route's path of matchers and the group
// labels: routes with the same matchers under the same path, such as two
// continue: true siblings sending the same alerts to two receivers, give
// their groups the same key, though they are two aggregation groups (its
// notification log tells them apart by receiver). The incident of such a
// route carries the route's id (Route.ID(), unique in the tree), and the
// ledger files it under the route's id and the group labels instead (key):
// each route has its own incident, and its own escalation chain.
type incident struct {
	ID          string         `json:"id"`
	GroupKey    string         `json:"groupKey"`
	GroupLabels model.LabelSet `json:"groupLabels"`
	Receiver    string         `json:"receiver"`
	// Route is the id of the incident's route when another route has the
	// same key; empty otherwise, as in incidents opened before it existed.
	Route string `json:"route,omitempty"`
	// Alerts are the fingerprints of every alert grouped into it; Firing
	// those still firing.
	Alerts         []string   `json:"alerts"`
	Firing         []string   `json:"firing"`
	OpenedAt       time.Time  `json:"openedAt"`
	ClosedAt       *time.Time `json:"closedAt,omitempty"`
	Acknowledged   bool       `json:"acknowledged"`
	AcknowledgedAt *time.Time `json:"acknowledgedAt,omitempty"`
	AcknowledgedBy string     `json:"acknowledgedBy,omitempty"`
	// Pages counts its delivered notifications with firing alerts.
	Pages    int    `json:"pages"`
	LastPage string `json:"lastPage,omitempty"`
}

// key is what the ledger files the incident under: its group key, or for
// a route another one shares its key with, the route's id and the group
// labels.
func (in *incident) key() string { return incidentKey(in.GroupKey, in.Route, in.GroupLabels) }

// incidentKey is the key of the incident of a group: Alertmanager's group
// key, unless route (the route's id) is set.
func incidentKey(groupKey, route string, groupLabels model.LabelSet) string {
	if route == "" {
		return groupKey
	}
	return fmt.Sprintf("%s:%s", route, groupLabels)
}

// routeKey returns Alertmanager's key of the incident's route
// (Route.Key(), the path of matchers): its group key without the group
// labels; "" when the group key is not of that form (or unknown).
func (in *incident) routeKey() string { return routeKeyOf(in.GroupKey, in.GroupLabels) }

// routeKeyOf returns the route key in a group key (alertGroup.Key).
func routeKeyOf(groupKey string, groupLabels model.LabelSet) string {
	k, ok := strings.CutSuffix(groupKey, ":"+groupLabels.String())
	if !ok {
		return ""
	}
	return k
}

func (in *incident) clone() *incident {
	c := *in
	c.Alerts, c.Firing = slices.Clone(in.Alerts), slices.Clone(in.Firing)
	return &c
}

// incidents are the open and recently closed incidents, by id and open
// ones by key. They change only through ledger events, so replaying the
// ledger rebuilds them.
type incidents struct {
	byID  map[string]*incident
	byKey map[string]*incident // open ones, by incident.key
	// open are the open incidents by group key and receiver
	// (openKey), so that find looks at those of one group only: a batch
	// of alerts opening thousands of groups costs linear time, not
	// quadratic.
	open map[string]map[string]*incident
	// changed are the ids of the incidents opened, whose firing alerts
	// changed, that closed or were pruned since the escalation loop last
	// asked (changes); resync says it has to look at every incident, as
	// at first. closed are the closed incidents, by the time they closed,
	// for changes to tell when they leave list.
	changed map[string]bool
	resync  bool
	closed  []closedIncident
}

// closedIncident is an incident that closed at at.
type closedIncident struct {
	at time.Time
	id string
}

func openKey(groupKey, receiver string) string { return groupKey + "\x00" + receiver }

func newIncidents() *incidents {
	return &incidents{byID: map[string]*incident{}, byKey: map[string]*incident{}, open: map[string]map[string]*incident{},
		changed: map[string]bool{}, resync: true}
}

func (is *incidents) add(in *incident) {
	if old := is.byID[in.ID]; old != nil {
		is.forget(old)
	}
	is.byID[in.ID] = in
	is.changed[in.ID] = true
	if in.ClosedAt != nil {
		is.closing(in)
	}
	if in.ClosedAt == nil {
		is.byKey[in.key()] = in
		k := openKey(in.GroupKey, in.Receiver)
		if is.open[k] == nil {
			is.open[k] = map[string]*incident{}
		}
		is.open[k][in.ID] = in
	}
}

// forget takes in out of the index of open incidents.
func (is *incidents) forget(in *incident) {
	k := openKey(in.GroupKey, in.Receiver)
	if is.open[k][in.ID] == in {
		delete(is.open[k], in.ID)
		if len(is.open[k]) == 0 {
			delete(is.open, k)
		}
	}
}

// incidentID is the id of the incident with this key (incident.key)
// opened at t.
func incidentID(key string, t time.Time) string {
	h := sha256.Sum256([]byte(key + "\x00" + t.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:8])
}

// group adds an alert to the incident of a grouped event, opening it. An
// open incident the event files under another key (find) moves there.
func (is *incidents) group(e *Event) {
	in := is.byID[e.Incident]
	if in == nil {
		in = &incident{ID: e.Incident, GroupKey: e.GroupKey, GroupLabels: e.GroupLabels, Receiver: e.Receiver, Route: e.Route, OpenedAt: e.Time}
		is.add(in)
	} else if k := incidentKey(e.GroupKey, e.Route, e.GroupLabels); in.ClosedAt == nil && e.GroupKey != "" && k != in.key() {
		if is.byKey[in.key()] == in {
			delete(is.byKey, in.key())
		}
		in.Route = e.Route
		is.byKey[k] = in
	}
	if !slices.Contains(in.Alerts, e.Fingerprint) {
		in.Alerts = append(in.Alerts, e.Fingerprint)
	}
	if !slices.Contains(in.Firing, e.Fingerprint) {
		in.Firing = append(in.Firing, e.Fingerprint)
		is.changed[in.ID] = true
	}
}

// paged counts a page of an incident once per notification.
func (is *incidents) paged(e *Event) {
	if in := is.byID[e.Incident]; in != nil && in.LastPage != e.Page {
		in.Pages++
		in.LastPage = e.Page
	}
}

func (is *incidents) acknowledge(id string, e *Event) {
	in := is.byID[id]
	if in == nil || in.ClosedAt != nil || in.Acknowledged {
		return
	}
	t := e.Time
	in.Acknowledged, in.AcknowledgedAt, in.AcknowledgedBy = true, &t, e.By
}

// resolve removes a resolved alert from an incident's firing alerts and
// closes it when none is left.
func (is *incidents) resolve(id, fp string, t time.Time) {
	in := is.byID[id]
	if in == nil || in.ClosedAt != nil {
		return
	}
	in.Firing = slices.DeleteFunc(in.Firing, func(f string) bool { return f == fp })
	is.changed[id] = true
	if len(in.Firing) == 0 {
		in.ClosedAt = &t
		is.closing(in)
		if is.byKey[in.key()] == in {
			delete(is.byKey, in.key())
		}
		is.forget(in)
	}
}

// find returns the open incident of g, one of the groups of an alert, or
// nil. It is the one filed under g's key, if of g's group key and
// receiver. Failing that, it is an incident opened before an upgrade or a
// reload changed how its route's incidents are keyed (a sibling with the
// same matchers came, went or moved): an open one of g's group key and
// receiver that none of the alert's groups owns, the oldest first. taken
// are the incidents of the alert's groups before g: two routes never share
// an incident.
func (is *incidents) find(g alertGroup, groups []alertGroup, taken []string) *incident {
	owns := func(h alertGroup, in *incident) bool {
		return in.GroupKey == h.Key && in.Receiver == h.Receiver
	}
	if in := is.byKey[g.ID]; in != nil && owns(g, in) {
		return in
	}
	var found *incident
	for _, in := range is.open[openKey(g.Key, g.Receiver)] {
		if in.ClosedAt != nil || !owns(g, in) || slices.Contains(taken, in.ID) ||
			slices.ContainsFunc(groups, func(h alertGroup) bool { return h.ID == in.key() && owns(h, in) }) {
			continue
		}
		if found == nil || in.OpenedAt.Before(found.OpenedAt) || (in.OpenedAt.Equal(found.OpenedAt) && in.ID < found.ID) {
			found = in
		}
	}
	return found
}

// forGroup returns the ids of the open incidents of Alertmanager's group
// key whose receiver is receiver ("": any), oldest first, or else the id
// of the one of them closed last. Sibling routes with the same matchers
// and receiver have incidents with the same group key and receiver: a
// notification of the group (Alertmanager's notification log does not
// tell them apart either) is one of each.
func (is *incidents) forGroup(key, receiver string) []string {
	var open []*incident
	if receiver != "" {
		// Once per notification sent: the index, not every incident
		// alertd knows, or a batch of n new groups costs O(n²).
		for _, in := range is.open[openKey(key, receiver)] {
			open = append(open, in)
		}
	}
	var last *incident
	for _, in := range is.byID {
		if receiver != "" && len(open) > 0 {
			break
		}
		if in.GroupKey != key || (receiver != "" && in.Receiver != receiver) {
			continue
		}
		if in.ClosedAt == nil {
			open = append(open, in)
		} else if last == nil || in.ClosedAt.After(*last.ClosedAt) {
			last = in
		}
	}
	if len(open) == 0 {
		if last != nil {
			return []string{last.ID}
		}
		return nil
	}
	sort.Slice(open, func(i, j int) bool {
		if !open[i].OpenedAt.Equal(open[j].OpenedAt) {
			return open[i].OpenedAt.Before(open[j].OpenedAt)
		}
		return open[i].ID < open[j].ID
	})
	ids := make([]string, len(open))
	for i, in := range open {
		ids[i] = in.ID
	}
	return ids
}

// prune forgets incidents closed before t.
func (is *incidents) prune(t time.Time) {
	for id, in := range is.byID {
		if in.ClosedAt != nil && in.ClosedAt.Before(t) {
			delete(is.byID, id)
			is.changed[id] = true
		}
	}
}

// closing files a closed incident in closed, by the time it closed.
func (is *incidents) closing(in *incident) {
	c := closedIncident{at: *in.ClosedAt, id: in.ID}
	i, _ := slices.BinarySearchFunc(is.closed, c, func(a, b closedIncident) int { return a.at.Compare(b.at) })
	is.closed = slices.Insert(is.closed, i, c)
}

// changes returns what changed of list(now) since the last call: copies
// of the incidents listed that opened, whose firing alerts changed or that
// closed, newest first, and the ids of those no longer listed (closed more
// than incidentClosedRetention ago, or pruned). With all, the caller has
// to look at every incident (the first call, or a snapshot replaced
// them): list holds list(now) then, and gone is nil. The escalation loop
// syncs with it every second, at the cost of what changed, not of every
// incident.
func (is *incidents) changes(now time.Time) (list []*incident, gone []string, all bool) {
	listed := func(in *incident) bool {
		return in.ClosedAt == nil || now.Sub(*in.ClosedAt) <= incidentClosedRetention
	}
	n := 0
	for ; n < len(is.closed) && now.Sub(is.closed[n].at) > incidentClosedRetention; n++ {
		if !is.resync {
			gone = append(gone, is.closed[n].id)
		}
	}
	is.closed = slices.Delete(is.closed, 0, n)
	if is.resync {
		is.resync = false
		is.changed = map[string]bool{}
		return is.list(now), nil, true
	}
	if len(is.changed) == 0 && len(gone) == 0 {
		return nil, nil, false
	}
	for id := range is.changed {
		if in := is.byID[id]; in != nil && listed(in) {
			list = append(list, in.clone())
		} else {
			gone = append(gone, id)
		}
	}
	// A new map, not clear: clearing or ranging over a map costs what it
	// once held, and the first sync's held every incident.
	is.changed = map[string]bool{}
	sortNewestFirst(list)
	slices.Sort(gone)
	return slices.Clip(list), slices.Compact(gone), false
}

// sortNewestFirst sorts incidents newest first, then by id.
func sortNewestFirst(list []*incident) {
	sort.Slice(list, func(i, j int) bool {
		if !list[i].OpenedAt.Equal(list[j].OpenedAt) {
			return list[i].OpenedAt.After(list[j].OpenedAt)
		}
		return list[i].ID < list[j].ID
	})
}

// all returns copies of the incidents, newest first.
func (is *incidents) all() []*incident {
	out := make([]*incident, 0, len(is.byID))
	for _, in := range is.byID {
		out = append(out, in.clone())
	}
	sortNewestFirst(out)
	return out
}

// alertGroup is a notification group an alert falls in: the key
// Alertmanager's dispatcher gives its aggregation group, its labels and
// the route's receiver, and the key of its incident.
type alertGroup struct {
	Key      string
	Labels   model.LabelSet
	Receiver string
	// Route is the route's id (Route.ID()) when another route of the tree
	// has the same key (Route.Key()), as sibling routes with the same
	// matchers do; empty otherwise. ID is the key of the group's incident
	// (incidentKey): Key, or with Route, the route's id and the labels,
	// unique in the tree.
	Route string
	ID    string
	// route is the route that makes the group.
	route *dispatch.Route
}

// matchGroups returns the groups of the routes an alert's labels match,
// keyed as Alertmanager's dispatcher keys aggregation groups.
func (a *Alertd) matchGroups(ls model.LabelSet) []alertGroup {
	return a.routing.Load().groups(ls)
}

// groups returns the groups of the routes in r that ls matches.
func (r *routing) groups(ls model.LabelSet) []alertGroup {
	if r == nil {
		return nil
	}
	var out []alertGroup
	for _, m := range r.tree.Match(ls) {
		gl := model.LabelSet{}
		for ln, lv := range ls {
			if _, ok := m.RouteOpts.GroupBy[ln]; ok || m.RouteOpts.GroupByAll {
				gl[ln] = lv
			}
		}
		g := alertGroup{Key: fmt.Sprintf("%s:%s", m.Key(), gl), Labels: gl, Receiver: m.RouteOpts.Receiver, route: m}
		if r.shared[m.Key()] {
			g.Route = m.ID()
		}
		g.ID = incidentKey(g.Key, g.Route, gl)
		out = append(out, g)
	}
	return out
}

// group records an alert that fires unsuppressed in the incident of each
// of its groups, opening incidents as needed, and returns their ids.
func (l *ledger) group(now time.Time, a *Alert, groups []alertGroup) []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fp := a.Fingerprint.String()
	var ids []string
	for _, g := range groups {
		in := l.inc.find(g, groups, ids)
		if in != nil && in.key() == g.ID && slices.Contains(in.Firing, fp) {
			ids = append(ids, in.ID)
			continue
		}
		// A grouped event of an incident found under another key files
		// it under g's.
		e := newEvent(now, eventGrouped, a)
		e.GroupKey, e.GroupLabels, e.Receiver, e.Route = g.Key, g.Labels, g.Receiver, g.Route
		if in != nil {
			e.Incident = in.ID
		} else {
			e.Incident = incidentID(g.ID, now)
		}
		l.record(pendingEvent{e: e, tta: -1, ttr: -1})
		ids = append(ids, e.Incident)
	}
	return ids
}

// incidentList returns the open incidents and those closed within
// incidentClosedRetention of now.
func (l *ledger) incidentList(now time.Time) []*incident {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inc.list(now)
}

// incidentChanges returns what changed of incidentList(now) since the
// last call (incidents.changes).
func (l *ledger) incidentChanges(now time.Time) (list []*incident, gone []string, all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inc.changes(now)
}

// list returns copies of the open incidents and those closed within
// incidentClosedRetention of now, newest first.
func (is *incidents) list(now time.Time) []*incident {
	return slices.DeleteFunc(is.all(), func(in *incident) bool {
		return in.ClosedAt != nil && now.Sub(*in.ClosedAt) > incidentClosedRetention
	})
}

// getIncidents lists the open and recently closed incidents; ?state=open
// or ?state=closed filters.
func (a *Alertd) getIncidents(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state != "" && state != "open" && state != "closed" {
		respondError(w, badData(fmt.Errorf("invalid parameter \"state\": %q: want open or closed", state)))
		return
	}
	type incidentJSON struct {
		*incident
		State    string `json:"state"`
		LastPage string `json:"lastPage,omitempty"` // shadows the internal field
		// Escalation is its escalation state (escalation_engine.go).
		Escalation *escalationJSON `json:"escalation,omitempty"`
	}
	out := []incidentJSON{}
	now := a.opts.Now()
	for _, in := range a.ledger.incidentList(now) {
		st := "open"
		if in.ClosedAt != nil {
			st = "closed"
		}
		if state == "" || state == st {
			out = append(out, incidentJSON{incident: in, State: st, Escalation: a.escalation.view(in.ID, now)})
		}
	}
	respond(w, map[string]any{"incidents": out})
}

// ackRequest is the body of POST /api/v1/alerts/{fingerprint}/acknowledge.
type ackRequest struct {
	By   string `json:"by"`
	Note string `json:"note"`
}

// postAcknowledge records an operator's acknowledgement of an alert in its
// history and the ledger; the incidents it is in are acknowledged too.
func (a *Alertd) postAcknowledge(w http.ResponseWriter, r *http.Request) {
	fp, err := model.FingerprintFromString(r.PathValue("fingerprint"))
	if err != nil {
		http.Error(w, fmt.Sprintf("invalid fingerprint %q: want 16 hex digits", r.PathValue("fingerprint")), http.StatusBadRequest)
		return
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req ackRequest
	// An empty body acknowledges anonymously.
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, fmt.Sprintf("couldn't parse acknowledgement: %v", err), http.StatusBadRequest)
		return
	}
	now := a.opts.Now()
	ids, err := a.acknowledge(now, fp, req.By, req.Note)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if ids == nil {
		ids = []string{}
	}
	respond(w, map[string]any{"fingerprint": fp.String(), "acknowledgedAt": now, "by": req.By, "incidents": ids})
}

// errUnknownAlert is the error about an alert alertd does not hold.
var errUnknownAlert = errors.New("no alert with fingerprint")

// acknowledge records an operator's acknowledgement of the alert fp in its
// history and the ledger, and returns the incidents it acknowledges. The
// API and Slack's acknowledge button call it.
func (a *Alertd) acknowledge(now time.Time, fp model.Fingerprint, by, note string) ([]string, error) {
	al, ok := a.store.get(fp)
	if !ok {
		return nil, fmt.Errorf("%w %s", errUnknownAlert, fp)
	}
	ids := a.ledger.acknowledge(now, al, by, note)
	a.ledger.commit()
	reason := "acknowledged"
	if by != "" {
		reason += " by " + by
	}
	if note != "" {
		reason += ": " + note
	}
	if len(ids) > 0 {
		reason += " (incident " + strings.Join(ids, ", ") + ")"
	}
	a.store.note([]model.Fingerprint{fp}, Decision{Time: now, Stage: "acknowledge", Action: "acknowledged", Reason: reason})
	a.acknowledgeIncidents(now, fp, ids, by)
	return ids, nil
}

// incidentFor returns the id of the oldest open incident of
// Alertmanager's group key and a receiver ("": any), or of the last one
// closed; "" if none.
func (l *ledger) incidentFor(groupKey, receiver string) string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ids := l.inc.forGroup(groupKey, receiver); len(ids) > 0 {
		return ids[0]
	}
	return ""
}
