package alertd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/escalate"
)

// The escalation endpoints act on an incident:
//
//	POST /api/v1/incidents/{id}/acknowledge    {"by", "note"}: stops the chain
//	POST /api/v1/incidents/{id}/unacknowledge  {"by", "note"}: re-triggers it
//	POST /api/v1/incidents/{id}/resolve        {"by", "note"}: stops it, notifies the resolution
//	POST /api/v1/incidents/{id}/snooze         {"by", "note", "until" | "duration"}
//
// Bodies are optional but for snooze; unknown fields are errors. Each
// answers with the incident's escalation state, as GET /api/v1/incidents
// shows it.

// incidentRequest is the body of the escalation endpoints.
type incidentRequest struct {
	By   string `json:"by"`
	Note string `json:"note"`
	// Until or Duration (seconds or a Prometheus duration) end a snooze.
	Until    *time.Time `json:"until,omitempty"`
	Duration string     `json:"duration,omitempty"`
}

// incidentRequestOf reads the body of an escalation request and the ledger's
// incident it is about. It answers the request itself on error.
func (a *Alertd) incidentRequestOf(w http.ResponseWriter, r *http.Request, snooze bool) (*incident, incidentRequest, bool) {
	var req incidentRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, fmt.Sprintf("couldn't parse the request: %v", err), http.StatusBadRequest)
		return nil, req, false
	}
	if !snooze && (req.Until != nil || req.Duration != "") {
		http.Error(w, "until and duration are for snoozes", http.StatusBadRequest)
		return nil, req, false
	}
	id := r.PathValue("id")
	in := a.ledger.incident(id)
	if in == nil {
		http.Error(w, fmt.Sprintf("no incident %q", id), http.StatusNotFound)
		return nil, req, false
	}
	return in, req, true
}

// escalationError answers an error of the engine.
func escalationError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, escalate.ErrUnknownIncident):
		http.Error(w, fmt.Sprintf("incident %s: %v", id, err), http.StatusNotFound)
	case errors.Is(err, escalate.ErrResolved), errors.Is(err, escalate.ErrNotAcknowledged):
		http.Error(w, fmt.Sprintf("incident %s: %v", id, err), http.StatusConflict)
	default:
		http.Error(w, fmt.Sprintf("incident %s: %v", id, err), http.StatusBadRequest)
	}
}

// reason is what a request says in histories: " by alice: note".
func (req incidentRequest) reason() string {
	s := " by " + whoAcked(req.By)
	if req.Note != "" {
		s += ": " + req.Note
	}
	return s
}

// postIncidentAcknowledge acknowledges an open incident: its escalation
// stops (until the policy's ack_timeout, or an alert it does not cover
// fires), the receivers notified so far are told, and the ledger records
// the acknowledgement of its firing alerts.
func (a *Alertd) postIncidentAcknowledge(w http.ResponseWriter, r *http.Request) {
	in, req, ok := a.incidentRequestOf(w, r, false)
	if !ok {
		return
	}
	if in.ClosedAt != nil {
		http.Error(w, fmt.Sprintf("incident %s: %v", in.ID, escalate.ErrResolved), http.StatusConflict)
		return
	}
	now := a.opts.Now()
	a.syncEscalation(now)
	x := a.escalation
	x.mu.Lock()
	err := x.engine.Acknowledge(now, in.ID, req.By)
	x.mu.Unlock()
	x.save()
	if err != nil {
		escalationError(w, in.ID, err)
		return
	}
	x.acks.Inc()
	a.ledger.acknowledgeIncident(now, in, func(fp string) *Alert {
		f, err := model.FingerprintFromString(fp)
		if err != nil {
			return nil
		}
		al, _ := a.store.get(f)
		return al
	}, req.By, req.Note)
	a.ledger.commit()
	a.store.note(fingerprints(in.Firing), incidentAckDecision(now, in.ID, req.reason()))
	x.wake()
	respond(w, map[string]any{"incident": in.ID, "escalation": x.view(in.ID, now)})
}

// postIncidentUnacknowledge takes an incident's acknowledgement back: its
// escalation starts over from the first step.
func (a *Alertd) postIncidentUnacknowledge(w http.ResponseWriter, r *http.Request) {
	a.changeEscalation(w, r, false, "unacknowledged", func(x *escalate.Engine, now time.Time, id string, req incidentRequest) error {
		return x.Unacknowledge(now, id, req.By)
	})
}

// postIncidentResolve resolves an incident by hand: its escalation stops
// and the receivers notified so far are told, whether its alerts still
// fire or not.
func (a *Alertd) postIncidentResolve(w http.ResponseWriter, r *http.Request) {
	a.changeEscalation(w, r, false, "resolved", func(x *escalate.Engine, now time.Time, id string, req incidentRequest) error {
		return x.Resolve(now, id, whoAcked(req.By))
	})
}

// postIncidentSnooze stops an incident's escalation until a time, or for a
// duration; it starts over from the first step then, unless acknowledged.
func (a *Alertd) postIncidentSnooze(w http.ResponseWriter, r *http.Request) {
	a.changeEscalation(w, r, true, "snoozed", func(x *escalate.Engine, now time.Time, id string, req incidentRequest) error {
		var until time.Time
		switch {
		case req.Until != nil && req.Duration != "":
			return errors.New("want one of until and duration, got both")
		case req.Until != nil:
			until = *req.Until
		case req.Duration != "":
			d, err := parseDuration(req.Duration)
			if err != nil {
				return fmt.Errorf("invalid duration: %w", err)
			}
			until = now.Add(d)
		default:
			return errors.New("want one of until and duration")
		}
		return x.Snooze(now, id, until, req.By)
	})
}

// changeEscalation applies an operator's change to an incident's escalation,
// records it in its alerts' histories and answers with the new state.
func (a *Alertd) changeEscalation(w http.ResponseWriter, r *http.Request, snooze bool, action string,
	change func(x *escalate.Engine, now time.Time, id string, req incidentRequest) error) {
	in, req, ok := a.incidentRequestOf(w, r, snooze)
	if !ok {
		return
	}
	now := a.opts.Now()
	a.syncEscalation(now)
	x := a.escalation
	x.mu.Lock()
	err := change(x.engine, now, in.ID, req)
	st, _ := x.engine.Incident(in.ID)
	x.mu.Unlock()
	x.save()
	if err != nil {
		escalationError(w, in.ID, err)
		return
	}
	why := fmt.Sprintf("incident %s %s%s", in.ID, action, req.reason())
	if action == "snoozed" {
		why = fmt.Sprintf("incident %s snoozed until %s%s", in.ID, st.SnoozedUntil.UTC().Format(time.RFC3339), req.reason())
	}
	fps := in.Firing
	if action == "resolved" {
		fps = in.Alerts
	}
	a.store.note(fingerprints(fps), Decision{Time: now, Stage: "escalate", Action: action, Reason: why})
	x.wake()
	respond(w, map[string]any{"incident": in.ID, "escalation": x.view(in.ID, now)})
}
