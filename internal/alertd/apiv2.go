package alertd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	yamlv2 "go.yaml.in/yaml/v2"
)

// The read side of Alertmanager's API v2, so that what reads an
// Alertmanager (amtool, Grafana's Alertmanager data source, scripts) reads
// alertd: GET /api/v2/alerts and GET /api/v2/status.

// getV2Alerts is Alertmanager's GET /api/v2/alerts: the alerts that fire,
// with their state (active, or suppressed by any stage), the silences and
// the alert that hold them, and the receivers their labels route to.
// Alertmanager's parameters filter: filter (matchers, repeated), receiver
// (a regular expression), and active, silenced, inhibited and unprocessed
// (true unless set to false). Resolved alerts are left out, as
// Alertmanager leaves them out.
func (a *Alertd) getV2Alerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	flag := func(name string) (bool, error) {
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
	var show [3]bool // active, silenced, inhibited
	for i, name := range []string{"active", "silenced", "inhibited"} {
		var err error
		if show[i], err = flag(name); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	if _, err := flag("unprocessed"); err != nil { // alertd processes what it receives at once
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var filter amlabels.Matchers
	for _, f := range q["filter"] {
		ms, err := amlabels.ParseMatchers(f)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad matcher %q: %v", f, err), http.StatusBadRequest)
			return
		}
		filter = append(filter, ms...)
	}
	var receiver *regexp.Regexp
	if v := q.Get("receiver"); v != "" {
		var err error
		if receiver, err = regexp.Compile("^(?:" + v + ")$"); err != nil {
			http.Error(w, fmt.Sprintf("bad receiver regular expression %q: %v", v, err), http.StatusBadRequest)
			return
		}
	}

	now := a.opts.Now()
	out := models.GettableAlerts{}
	for _, al := range a.store.v2Alerts(now, a.silencer) {
		if !filter.Matches(al.Labels) {
			continue
		}
		if receiver != nil && !slices.ContainsFunc(al.receivers, receiver.MatchString) {
			continue
		}
		state := "active"
		if al.Suppressed {
			state = "suppressed"
		}
		if (state == "active" && !show[0]) || (len(al.silencedBy) > 0 && !show[1]) || (len(al.inhibitedBy) > 0 && !show[2]) {
			continue
		}
		receivers := make([]*models.ReceiverReference, 0, len(al.receivers))
		for _, name := range al.receivers {
			receivers = append(receivers, &models.ReceiverReference{Name: &name})
		}
		ga := &models.GettableAlert{
			Annotations: labelSetModel(al.Annotations),
			EndsAt:      dateTime(al.EndsAt),
			Fingerprint: ptr(al.Fingerprint.String()),
			Receivers:   receivers,
			StartsAt:    dateTime(al.StartsAt),
			Status: &models.AlertStatus{
				State:       &state,
				SilencedBy:  nonNil(al.silencedBy),
				InhibitedBy: nonNil(al.inhibitedBy),
				MutedBy:     []string{},
			},
			UpdatedAt: dateTime(al.UpdatedAt),
			Alert:     models.Alert{Labels: labelSetModel(al.Labels), GeneratorURL: strfmt.URI(al.GeneratorURL)},
		}
		out = append(out, ga)
	}
	// In Alertmanager's order: by fingerprint.
	slices.SortFunc(out, func(x, y *models.GettableAlert) int {
		switch {
		case *x.Fingerprint < *y.Fingerprint:
			return -1
		case *x.Fingerprint > *y.Fingerprint:
			return 1
		}
		return 0
	})
	respondV2(w, out)
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
		Cluster: &models.ClusterStatus{Status: ptr(models.ClusterStatusStatusDisabled), Peers: []*models.PeerStatus{}},
		Config:  &models.AlertmanagerConfig{Original: &original},
		Uptime:  dateTime(a.startedAt),
		VersionInfo: &models.VersionInfo{
			Branch: ptr(version.Branch), BuildDate: ptr(version.BuildDate), BuildUser: ptr(version.BuildUser),
			GoVersion: ptr(runtime.Version()), Revision: ptr(version.Revision), Version: ptr(version.Version),
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

func labelSetModel(ls model.LabelSet) models.LabelSet {
	out := make(models.LabelSet, len(ls))
	for k, v := range ls {
		out[string(k)] = string(v)
	}
	return out
}

func dateTime(t time.Time) *strfmt.DateTime {
	d := strfmt.DateTime(t)
	return &d
}

func ptr[T any](v T) *T { return &v }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// respondV2 writes v as the bare JSON body Alertmanager's API v2 answers
// with (no envelope).
func respondV2(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
