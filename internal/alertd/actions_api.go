package alertd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/common/model"
)

// actionJSON is an action as GET /api/v1/actions shows it: its
// configuration without secrets (only which ones are set), and today's use
// of its budget.
type actionJSON struct {
	Name             string          `json:"name"`
	Type             string          `json:"type"`
	URL              string          `json:"url"`
	Repository       string          `json:"repository,omitempty"`
	EventType        string          `json:"eventType,omitempty"`
	Workflow         string          `json:"workflow,omitempty"`
	Ref              string          `json:"ref,omitempty"`
	Project          string          `json:"project,omitempty"`
	Namespace        string          `json:"namespace,omitempty"`
	WorkflowTemplate string          `json:"workflowTemplate,omitempty"`
	DAGID            string          `json:"dagId,omitempty"`
	Credentials      []string        `json:"credentials"`
	Matchers         []string        `json:"matchers"`
	Schedule         *scheduleJSON   `json:"schedule,omitempty"`
	Cooldown         model.Duration  `json:"cooldown"`
	DailyBudget      int             `json:"dailyBudget"`
	UsedToday        int             `json:"usedToday"`
	Approval         bool            `json:"approvalRequired"`
	ApprovalTimeout  *model.Duration `json:"approvalTimeout,omitempty"`
	Verify           *verifyJSON     `json:"verify,omitempty"`
}

type scheduleJSON struct {
	Every  model.Duration    `json:"every"`
	Offset model.Duration    `json:"offset"`
	Labels map[string]string `json:"labels,omitempty"`
}

type verifyJSON struct {
	Within    model.Duration `json:"within"`
	OnFailure string         `json:"onFailure"`
}

// getActions lists the configured actions, without their secrets.
func (a *Alertd) getActions(w http.ResponseWriter, _ *http.Request) {
	now := a.opts.Now()
	out := []actionJSON{}
	for _, c := range a.actions.configs() {
		j := actionJSON{Name: c.Name, Type: c.Type, URL: redactURL(c.URL), Repository: c.Repository, EventType: c.EventType,
			Workflow: c.Workflow, Ref: c.Ref, Project: c.Project, Namespace: c.Namespace, WorkflowTemplate: c.WorkflowTemplate,
			DAGID: c.DAGID, Credentials: []string{}, Matchers: c.Trigger.Matchers, Cooldown: model.Duration(c.CooldownDuration()),
			DailyBudget: c.DailyBudget, UsedToday: a.actions.usedToday(c.Name, now), Approval: c.Approval.Required}
		for _, s := range []struct{ key, v string }{{"token", string(c.Token)}, {"token_file", c.TokenFile}, {"trigger_token", string(c.TriggerToken)},
			{"trigger_token_file", c.TriggerTokenFile}, {"secret", string(c.Secret)}, {"secret_file", c.SecretFile}} {
			if s.v != "" {
				j.Credentials = append(j.Credentials, s.key)
			}
		}
		if j.Matchers == nil {
			j.Matchers = []string{}
		}
		if s := c.Trigger.Schedule; s != nil {
			j.Schedule = &scheduleJSON{Every: s.Every, Offset: s.Offset, Labels: s.Labels}
		}
		if c.Approval.Required {
			t := c.Approval.Timeout
			j.ApprovalTimeout = &t
		}
		if v := c.Verify; v != nil {
			j.Verify = &verifyJSON{Within: v.Within, OnFailure: v.OnFailure}
		}
		out = append(out, j)
	}
	respond(w, map[string]any{"actions": out})
}

// getActionRequests lists the action requests, newest first; ?action= and
// ?state= filter.
func (a *Alertd) getActionRequests(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	out := []*actionRequest{}
	for _, req := range a.actions.list() {
		if (q.Get("action") == "" || q.Get("action") == req.Action) && (q.Get("state") == "" || q.Get("state") == req.State) {
			out = append(out, req)
		}
	}
	respond(w, map[string]any{"requests": out})
}

// decisionRequest is the body of the approve and reject endpoints.
type decisionRequest struct {
	By string `json:"by"`
}

// postActionDecision approves or rejects a request awaiting approval.
func (a *Alertd) postActionDecision(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		var req decisionRequest
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, fmt.Sprintf("couldn't parse the decision: %v", err), http.StatusBadRequest)
			return
		}
		id := r.PathValue("id")
		f := a.rejectAction
		if approve {
			f = a.approveAction
		}
		if err := f(id, req.By); err != nil {
			http.Error(w, err.Error(), decisionStatus(err))
			return
		}
		got, _ := a.actions.get(id)
		respond(w, got)
	}
}

// decisionStatus is the HTTP status of a failed approval or rejection: an
// unknown request is a 404, one that does not await approval a 409.
func decisionStatus(err error) int {
	switch {
	case errors.Is(err, errNoAction):
		return http.StatusNotFound
	case errors.Is(err, errApproval):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
