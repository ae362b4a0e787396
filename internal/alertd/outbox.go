package alertd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/notify"
	"github.com/modelmon/modelmon/internal/notify/slack"
	"github.com/modelmon/modelmon/internal/outbox"
)

// ResolveFunc resolves an incident on an operator's request (Slack's
// resolve button): by names who asked. Escalation implements it.
type ResolveFunc func(ctx context.Context, incidentID, by string) error

// SetResolve sets the function the resolve button calls; nil restores the
// default, which records the request in the ledger as an acknowledgement
// of the incident's alerts.
func (a *Alertd) SetResolve(f ResolveFunc) {
	if f == nil {
		a.resolveFn.Store(nil)
		return
	}
	a.resolveFn.Store(&f)
}

// resolve resolves an incident with the hook, or records the request.
func (a *Alertd) resolve(ctx context.Context, incidentID, by string) error {
	if f := a.resolveFn.Load(); f != nil {
		return (*f)(ctx, incidentID, by)
	}
	return a.recordResolve(ctx, incidentID, by)
}

// recordResolve is the default resolve: until escalation resolves
// incidents, the request acknowledges the incident's firing alerts, with a
// note that says so.
func (a *Alertd) recordResolve(_ context.Context, incidentID, by string) error {
	var fps []string
	for _, in := range a.ledger.incidentList(a.opts.Now()) {
		if in.ID == incidentID {
			fps = in.Firing
		}
	}
	if fps == nil {
		return fmt.Errorf("no open incident %q", incidentID)
	}
	now := a.opts.Now()
	for _, s := range fps {
		fp, err := model.FingerprintFromString(s)
		if err != nil {
			continue
		}
		if _, err := a.acknowledge(now, fp, by, "resolve requested for incident "+incidentID); err != nil && !errors.Is(err, errUnknownAlert) {
			return err
		}
	}
	return nil
}

// laneJSON is an entry of a receiver's integration (the second of its
// webhook_configs, say) in GET /api/v1/outbox.
type laneJSON struct {
	Receiver         string  `json:"receiver"`
	Integration      string  `json:"integration"`
	Entry            int     `json:"entry"`
	Pending          int     `json:"pending"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	DeadLetters      int     `json:"deadLetters"`
	LastError        string  `json:"lastError,omitempty"`
}

// getOutbox reports the notifications waiting for delivery: how many, how
// old the oldest is, and per entry of a receiver's integration.
func (a *Alertd) getOutbox(w http.ResponseWriter, _ *http.Request) {
	st := a.notify.Outbox().Stats()
	now := a.opts.Now()
	age := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return max(0, now.Sub(t).Seconds())
	}
	lanes := []laneJSON{}
	for _, l := range st.Lanes {
		lanes = append(lanes, laneJSON{Receiver: l.Receiver, Integration: l.Integration, Entry: l.Entry, Pending: l.Pending,
			OldestAgeSeconds: age(l.Oldest), DeadLetters: l.DeadLetters, LastError: l.LastError})
	}
	respond(w, map[string]any{"pending": st.Pending, "oldestAgeSeconds": age(st.Oldest), "deadLetters": st.DeadLetters, "receivers": lanes})
}

// deadLetterJSON is a dead letter in the API. The payload holds the
// alerts and the group, never the integration's secrets (they stay in the
// configuration), and errors have their URLs redacted.
type deadLetterJSON struct {
	Key         string          `json:"key"`
	Receiver    string          `json:"receiver"`
	Integration string          `json:"integration"`
	Created     time.Time       `json:"created"`
	Attempts    int             `json:"attempts"`
	LastError   string          `json:"lastError"`
	Payload     json.RawMessage `json:"payload"`
}

// getDeadLetters lists the notifications given up on, oldest first.
func (a *Alertd) getDeadLetters(w http.ResponseWriter, _ *http.Request) {
	out := []deadLetterJSON{}
	for _, m := range a.notify.Outbox().DeadLetters() {
		out = append(out, deadLetterJSON{Key: m.Key, Receiver: m.Receiver, Integration: m.Integration, Created: m.Created,
			Attempts: m.Attempts, LastError: m.LastError, Payload: m.Payload})
	}
	respond(w, map[string]any{"deadLetters": out})
}

// deadLetterFailed answers a request about the dead letter of key with
// the error err, if any: 404 for a key the outbox holds no dead letter of.
func deadLetterFailed(w http.ResponseWriter, key string, err error) bool {
	switch {
	case errors.Is(err, outbox.ErrUnknownKey):
		http.Error(w, fmt.Sprintf("no dead letter with key %q", key), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		return false
	}
	return true
}

// postRedrive sends a dead letter again.
func (a *Alertd) postRedrive(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := a.notify.Outbox().Redrive(key); deadLetterFailed(w, key, err) {
		return
	}
	respond(w, map[string]any{"key": key, "redriven": true})
}

// deleteDeadLetter discards a dead letter: it is never delivered, and its
// series go with the last one of a receiver or action the configuration no
// longer has. It answers with the letter as GET lists it, and records the
// discard in the history of the alerts the letter was for.
func (a *Alertd) deleteDeadLetter(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	m, err := a.notify.Outbox().Discard(key)
	if deadLetterFailed(w, key, err) {
		return
	}
	user, _, _ := r.BasicAuth()
	a.logger.Info("Dead letter discarded", "key", key, "receiver", m.Receiver, "integration", m.Integration,
		"entry", m.Entry, "user", user, "remote_addr", r.RemoteAddr)
	by := r.RemoteAddr
	if user != "" {
		by = user
	}
	now := a.opts.Now()
	if m.Integration == integrationAction {
		a.actions.discarded(m, by, now)
	} else if fps := notify.Fingerprints(m); len(fps) > 0 {
		a.store.note(fps, Decision{Time: now, Stage: "notify", Action: "discarded",
			Reason: fmt.Sprintf("dead letter to %s via %s[%d] discarded by %s, never to be sent", m.Receiver, m.Integration, m.Entry, by)})
	}
	respond(w, deadLetterJSON{Key: m.Key, Receiver: m.Receiver, Integration: m.Integration, Created: m.Created,
		Attempts: m.Attempts, LastError: m.LastError, Payload: m.Payload})
}

// slackSigningSecrets are the signing secrets of the configured Slack
// integrations.
func (a *Alertd) slackSigningSecrets() []string {
	var out []string
	if cfg := a.cfg.Load(); cfg != nil {
		for _, r := range cfg.Receivers {
			for _, sc := range r.SlackConfigs {
				if sc.SigningSecret != "" {
					out = append(out, string(sc.SigningSecret))
				}
			}
		}
	}
	return out
}

// maxSlackBody bounds the body of an interaction request.
const maxSlackBody = 1 << 20

// postSlackInteraction handles Slack's requests when a button of an
// incident's message is pressed: acknowledge acknowledges its alerts,
// false_positive gives them that verdict, resolve calls the resolve hook.
// The request must carry a valid signature under a configured signing
// secret, be at most 5 minutes old and not be a replay.
func (a *Alertd) postSlackInteraction(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSlackBody))
	if err != nil {
		http.Error(w, "couldn't read the request", http.StatusBadRequest)
		return
	}
	secrets := a.slackSigningSecrets()
	if len(secrets) == 0 {
		http.Error(w, "no slack_configs with a signing_secret", http.StatusNotFound)
		return
	}
	now := a.opts.Now()
	if err := a.slackVerifier.Verify(r.Header, body, secrets, now); err != nil {
		a.metrics.slackRejected.Inc()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	actions, err := slack.ParseInteraction(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, act := range actions {
		by := "slack:" + act.User
		switch act.Name {
		case slack.ActionAcknowledge, slack.ActionFalsePositive:
			for _, s := range act.Fingerprints {
				fp, err := model.FingerprintFromString(s)
				if err != nil {
					continue
				}
				if act.Name == slack.ActionAcknowledge {
					_, err = a.acknowledge(now, fp, by, "from Slack")
				} else {
					_, err = a.feedback(now, fp, verdictFalsePositive, by, "from Slack")
				}
				if err != nil && !errors.Is(err, errUnknownAlert) {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
		case slack.ActionApprove, slack.ActionReject:
			decide := a.approveAction
			if act.Name == slack.ActionReject {
				decide = a.rejectAction
			}
			if err := decide(act.Request, by); err != nil {
				http.Error(w, err.Error(), decisionStatus(err))
				return
			}
		case slack.ActionResolve:
			id := act.Incident
			if id == "" {
				id = a.ledger.incidentFor(act.GroupKey, act.Receiver)
			}
			if id == "" {
				http.Error(w, "no incident for this message", http.StatusNotFound)
				return
			}
			if err := a.resolve(r.Context(), id, by); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}
