package alertconfig

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/actions"
)

// Defaults of an action's guardrails.
const (
	DefaultActionCooldown        = time.Hour
	DefaultActionDailyBudget     = 10
	DefaultActionTimeout         = 10 * time.Second
	DefaultActionApprovalTimeout = 24 * time.Hour
	// OnFailureEscalate escalates the incident of an action whose alerts
	// did not resolve in time.
	OnFailureEscalate = "escalate"
)

// Action is a webhook into CI (retrain, deploy, rollback) that alerts,
// escalation steps or a schedule trigger, with guardrails: a cooldown per
// model, a daily budget, an optional human approval and a verification
// that the alert resolves afterwards.
type Action struct {
	// Name is unique; it names the action in metrics, the API and
	// idempotency keys.
	Name string `yaml:"name"`
	// Type is one of the presets of the actions package:
	// github_repository_dispatch, github_workflow_dispatch, gitlab_pipeline,
	// argo_workflow, airflow_dag_run, or webhook.
	Type string `yaml:"type"`
	// URL is the API's base URL; GitHub defaults to https://api.github.com
	// and GitLab to https://gitlab.com. A webhook's full URL.
	URL string `yaml:"url"`
	// Repository ("owner/name"), EventType (repository_dispatch, default
	// the action's name), Workflow (workflow_dispatch: file name or id)
	// and Ref (workflow_dispatch and GitLab; default main).
	Repository string `yaml:"repository"`
	EventType  string `yaml:"event_type"`
	Workflow   string `yaml:"workflow"`
	Ref        string `yaml:"ref"`
	// Project is GitLab's project id or path; TriggerToken its pipeline
	// trigger token (or TriggerTokenFile).
	Project          string           `yaml:"project"`
	TriggerToken     commoncfg.Secret `yaml:"trigger_token"`
	TriggerTokenFile string           `yaml:"trigger_token_file"`
	// Namespace and WorkflowTemplate name Argo's WorkflowTemplate.
	Namespace        string `yaml:"namespace"`
	WorkflowTemplate string `yaml:"workflow_template"`
	// DAGID names Airflow's DAG.
	DAGID string `yaml:"dag_id"`
	// Token is sent as a bearer token (or TokenFile); with Username, as
	// the password of basic auth (Airflow).
	Token     commoncfg.Secret `yaml:"token"`
	TokenFile string           `yaml:"token_file"`
	Username  string           `yaml:"username"`
	// Secret signs a webhook's body (or SecretFile).
	Secret     commoncfg.Secret `yaml:"secret"`
	SecretFile string           `yaml:"secret_file"`
	// Inputs are Go templates by key: GitHub's client_payload or workflow
	// inputs, GitLab's variables, Argo's parameters, Airflow's conf. They
	// see the alert's labels as {{ .Labels.model }}.
	Inputs map[string]string `yaml:"inputs"`
	// Payload is a Go template of a webhook's JSON body.
	Payload string `yaml:"payload"`
	// Trigger says which alerts and what schedule trigger the action.
	Trigger ActionTrigger `yaml:"trigger"`
	// Cooldown is the least time between two triggers for one model (the
	// model label); default 1h, 0s disables it.
	Cooldown *model.Duration `yaml:"cooldown"`
	// DailyBudget is the most triggers per UTC day; default 10.
	DailyBudget int `yaml:"daily_budget"`
	// Timeout bounds each request; default 10s.
	Timeout model.Duration `yaml:"timeout"`
	// Approval makes triggers wait for an operator.
	Approval ActionApproval `yaml:"approval"`
	// Verify, when set, checks that the triggering alerts resolve.
	Verify *ActionVerify `yaml:"verify"`

	target *actions.Target
}

// ActionTrigger selects what triggers an action besides escalation steps.
type ActionTrigger struct {
	// Matchers, in Alertmanager's syntax, select the alerts that trigger
	// the action when they fire unsuppressed. They see the alert's labels
	// and the classifier's category, priority and action annotations.
	Matchers []string `yaml:"matchers"`
	// Schedule triggers the action at fixed times.
	Schedule *ActionSchedule `yaml:"schedule"`

	// Parsed are the matchers, all of which must match.
	Parsed amlabels.Matchers `yaml:"-"`
}

// ActionSchedule runs an action every Every, Offset past each multiple of
// Every since the Unix epoch (every: 24h, offset: 2h is 02:00 UTC daily).
type ActionSchedule struct {
	Every  model.Duration `yaml:"every"`
	Offset model.Duration `yaml:"offset"`
	// Labels are the labels the templates and the cooldown see, e.g.
	// {model: fraud}.
	Labels map[string]string `yaml:"labels"`
}

// ActionApproval makes an action wait for an operator's approval.
type ActionApproval struct {
	Required bool `yaml:"required"`
	// Timeout expires a request nobody decided on; default 24h.
	Timeout model.Duration `yaml:"timeout"`
	// Receivers are told of each request awaiting approval; a Slack
	// receiver with a signing secret shows Approve and Reject buttons.
	Receivers []string `yaml:"receivers"`
}

// ActionVerify checks that the alerts that triggered an action resolve
// within Within of the trigger.
type ActionVerify struct {
	Within model.Duration `yaml:"within"`
	// OnFailure is "escalate" (the default) or the name of another action
	// to run, such as a rollback.
	OnFailure string `yaml:"on_failure"`
}

// Target returns the action's target, built by validation.
func (a *Action) Target() *actions.Target { return a.target }

// CooldownDuration returns the cooldown.
func (a *Action) CooldownDuration() time.Duration {
	if a.Cooldown == nil {
		return DefaultActionCooldown
	}
	return time.Duration(*a.Cooldown)
}

var actionNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// actionFields are the preset-specific fields, with the types that use
// them; a field set for another type is an error.
var actionFields = []struct {
	key   string
	set   func(*Action) bool
	types []string
}{
	{"repository", func(a *Action) bool { return a.Repository != "" }, []string{actions.TypeGitHubRepositoryDispatch, actions.TypeGitHubWorkflowDispatch}},
	{"event_type", func(a *Action) bool { return a.EventType != "" }, []string{actions.TypeGitHubRepositoryDispatch}},
	{"workflow", func(a *Action) bool { return a.Workflow != "" }, []string{actions.TypeGitHubWorkflowDispatch}},
	{"ref", func(a *Action) bool { return a.Ref != "" }, []string{actions.TypeGitHubWorkflowDispatch, actions.TypeGitLabPipeline}},
	{"project", func(a *Action) bool { return a.Project != "" }, []string{actions.TypeGitLabPipeline}},
	{"trigger_token", func(a *Action) bool { return a.TriggerToken != "" }, []string{actions.TypeGitLabPipeline}},
	{"trigger_token_file", func(a *Action) bool { return a.TriggerTokenFile != "" }, []string{actions.TypeGitLabPipeline}},
	{"namespace", func(a *Action) bool { return a.Namespace != "" }, []string{actions.TypeArgoWorkflow}},
	{"workflow_template", func(a *Action) bool { return a.WorkflowTemplate != "" }, []string{actions.TypeArgoWorkflow}},
	{"dag_id", func(a *Action) bool { return a.DAGID != "" }, []string{actions.TypeAirflowDAGRun}},
	{"username", func(a *Action) bool { return a.Username != "" }, []string{actions.TypeAirflowDAGRun}},
	{"token", func(a *Action) bool { return a.Token != "" }, []string{actions.TypeGitHubRepositoryDispatch, actions.TypeGitHubWorkflowDispatch, actions.TypeArgoWorkflow, actions.TypeAirflowDAGRun, actions.TypeWebhook}},
	{"token_file", func(a *Action) bool { return a.TokenFile != "" }, []string{actions.TypeGitHubRepositoryDispatch, actions.TypeGitHubWorkflowDispatch, actions.TypeArgoWorkflow, actions.TypeAirflowDAGRun, actions.TypeWebhook}},
	{"secret", func(a *Action) bool { return a.Secret != "" }, []string{actions.TypeWebhook}},
	{"secret_file", func(a *Action) bool { return a.SecretFile != "" }, []string{actions.TypeWebhook}},
	{"payload", func(a *Action) bool { return a.Payload != "" }, []string{actions.TypeWebhook}},
}

// validateActions checks the actions, sets their defaults, resolves
// secret files against dir and builds their targets.
func (c *Config) validateActions(dir string) error {
	names := map[string]bool{}
	for i, a := range c.Actions {
		if a == nil {
			return errorAt(fmt.Errorf("actions: entry %d is empty", i), "actions", i)
		}
		if a.Name == "" {
			return errorAt(fmt.Errorf("actions: entry %d has no name", i), "actions", i)
		}
		what := fmt.Sprintf("actions: %q", a.Name)
		at := func(err error, path ...any) error {
			return errorAt(fmt.Errorf("%s: %w", what, err), append([]any{"actions", i}, path...)...)
		}
		if !actionNameRE.MatchString(a.Name) {
			return at(fmt.Errorf("invalid name: want letters, digits, '_', '.' and '-'"), "name")
		}
		if names[a.Name] {
			return at(errors.New("name is not unique"), "name")
		}
		names[a.Name] = true
		if !slices.Contains(actions.Types(), a.Type) {
			return at(fmt.Errorf("unknown type %q, want one of %v", a.Type, actions.Types()), "type")
		}
		for k, r := range a.Approval.Receivers {
			if !slices.ContainsFunc(c.Receivers, func(rc *Receiver) bool { return rc != nil && rc.Name == r }) {
				return at(fmt.Errorf("approval: receivers: undefined receiver %q", r), "approval", "receivers", k)
			}
		}
		for _, f := range actionFields {
			if f.set(a) && !slices.Contains(f.types, a.Type) {
				return at(fmt.Errorf("%s is not used by type %s", f.key, a.Type), f.key)
			}
		}
		if err := a.validatePreset(at); err != nil {
			return err
		}
		for _, s := range []struct {
			key, file string
			secret    commoncfg.Secret
			path      *string
		}{{"token", "token_file", a.Token, &a.TokenFile}, {"secret", "secret_file", a.Secret, &a.SecretFile}, {"trigger_token", "trigger_token_file", a.TriggerToken, &a.TriggerTokenFile}} {
			if s.secret != "" && *s.path != "" {
				return at(fmt.Errorf("at most one of %s and %s must be configured", s.key, s.file), s.file)
			}
			if dir != "" && *s.path != "" && !filepath.IsAbs(*s.path) {
				*s.path = filepath.Join(dir, *s.path)
			}
		}
		if err := a.validateGuardrails(at); err != nil {
			return err
		}
		t, err := a.buildTarget()
		if err != nil {
			key := "inputs"
			if a.Payload != "" && strings.HasPrefix(err.Error(), "payload") {
				key = "payload"
			}
			return at(err, key)
		}
		a.target = t
	}
	for i, a := range c.Actions {
		if a.Verify == nil || a.Verify.OnFailure == OnFailureEscalate {
			continue
		}
		if a.Verify.OnFailure == a.Name || !names[a.Verify.OnFailure] {
			return errorAt(fmt.Errorf("actions: %q: verify: on_failure must be %q or the name of another action, not %q", a.Name, OnFailureEscalate, a.Verify.OnFailure),
				"actions", i, "verify", "on_failure")
		}
	}
	return nil
}

// validatePreset checks the fields the type needs and sets its defaults.
func (a *Action) validatePreset(at func(error, ...any) error) error {
	if a.URL == "" {
		a.URL = actions.DefaultURL(a.Type)
	}
	if a.URL == "" {
		return at(fmt.Errorf("type %s needs a url", a.Type))
	}
	if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return at(fmt.Errorf("invalid url %q: want http(s)://host[:port][/path]", a.URL), "url")
	}
	need := func(key, v string) error {
		if v == "" {
			return at(fmt.Errorf("type %s needs %s", a.Type, key))
		}
		return nil
	}
	needToken := func() error {
		if a.Token == "" && a.TokenFile == "" {
			return at(fmt.Errorf("type %s needs token or token_file", a.Type))
		}
		return nil
	}
	var errs []error
	switch a.Type {
	case actions.TypeGitHubRepositoryDispatch, actions.TypeGitHubWorkflowDispatch:
		errs = append(errs, need("repository", a.Repository))
		if owner, repo, ok := strings.Cut(a.Repository, "/"); a.Repository != "" && (!ok || owner == "" || repo == "" || strings.Contains(repo, "/")) {
			errs = append(errs, at(fmt.Errorf("invalid repository %q: want owner/name", a.Repository), "repository"))
		}
		errs = append(errs, needToken())
		if a.Type == actions.TypeGitHubRepositoryDispatch {
			if a.EventType == "" {
				a.EventType = a.Name
			}
			if len(a.EventType) > 100 {
				errs = append(errs, at(errors.New("event_type must be 100 characters or fewer"), "event_type"))
			}
			if len(a.Inputs) > actions.GitHubMaxClientPayload {
				errs = append(errs, at(fmt.Errorf("inputs has %d keys; GitHub's client_payload takes at most %d", len(a.Inputs), actions.GitHubMaxClientPayload), "inputs"))
			}
		} else {
			errs = append(errs, need("workflow", a.Workflow))
		}
	case actions.TypeGitLabPipeline:
		errs = append(errs, need("project", a.Project))
		if a.TriggerToken == "" && a.TriggerTokenFile == "" {
			errs = append(errs, at(errors.New("type gitlab_pipeline needs trigger_token or trigger_token_file")))
		}
	case actions.TypeArgoWorkflow:
		errs = append(errs, need("namespace", a.Namespace), need("workflow_template", a.WorkflowTemplate))
	case actions.TypeAirflowDAGRun:
		errs = append(errs, need("dag_id", a.DAGID))
		if a.Username != "" {
			errs = append(errs, needToken())
		}
	case actions.TypeWebhook:
		if a.Secret == "" && a.SecretFile == "" {
			errs = append(errs, at(errors.New("type webhook needs secret or secret_file to sign its requests")))
		}
	}
	if a.Ref == "" && (a.Type == actions.TypeGitHubWorkflowDispatch || a.Type == actions.TypeGitLabPipeline) {
		a.Ref = "main"
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// validateGuardrails checks the trigger, guardrails and verification and
// sets their defaults.
func (a *Action) validateGuardrails(at func(error, ...any) error) error {
	a.Trigger.Parsed = nil
	for j, m := range a.Trigger.Matchers {
		ms, err := amlabels.ParseMatchers(m)
		if err != nil {
			return at(fmt.Errorf("trigger: matchers[%d]: invalid matcher %q: %w", j, m, err), "trigger", "matchers", j)
		}
		a.Trigger.Parsed = append(a.Trigger.Parsed, ms...)
	}
	if len(a.Trigger.Matchers) > 0 && a.Trigger.Parsed.Matches(nil) {
		return at(errors.New("trigger: matchers must not match the empty label set: at least one needs a non-empty value"), "trigger", "matchers")
	}
	if s := a.Trigger.Schedule; s != nil {
		if time.Duration(s.Every) < time.Minute {
			return at(errors.New("trigger: schedule: every must be at least 1m"), "trigger", "schedule")
		}
		if s.Offset < 0 || s.Offset >= s.Every {
			return at(fmt.Errorf("trigger: schedule: offset must be at least 0s and less than every (%s)", s.Every), "trigger", "schedule", "offset")
		}
		for k := range s.Labels {
			if !model.UTF8Validation.IsValidLabelName(k) {
				return at(fmt.Errorf("trigger: schedule: invalid label name %q", k), "trigger", "schedule", "labels")
			}
		}
	}
	if a.Cooldown != nil && *a.Cooldown < 0 {
		return at(errors.New("cooldown must not be negative"), "cooldown")
	}
	if a.DailyBudget < 0 {
		return at(errors.New("daily_budget must not be negative (0 takes the default, 10)"), "daily_budget")
	}
	if a.DailyBudget == 0 {
		a.DailyBudget = DefaultActionDailyBudget
	}
	if a.Timeout == 0 {
		a.Timeout = model.Duration(DefaultActionTimeout)
	}
	if a.Approval.Timeout == 0 {
		a.Approval.Timeout = model.Duration(DefaultActionApprovalTimeout)
	}
	if v := a.Verify; v != nil {
		if v.Within <= 0 {
			return at(errors.New("verify: within must be set and positive"), "verify")
		}
		if v.OnFailure == "" {
			v.OnFailure = OnFailureEscalate
		}
	}
	return nil
}

// buildTarget parses the templates into the action's target.
func (a *Action) buildTarget() (*actions.Target, error) {
	t := &actions.Target{Name: a.Name, Type: a.Type, URL: a.URL, Repository: a.Repository, EventType: a.EventType,
		Workflow: a.Workflow, Ref: a.Ref, Project: a.Project, Namespace: a.Namespace, WorkflowTemplate: a.WorkflowTemplate, DAGID: a.DAGID}
	if a.Inputs != nil {
		t.Inputs = make(map[string]*template.Template, len(a.Inputs))
		for _, k := range slices.Sorted(maps.Keys(a.Inputs)) {
			if k == "" {
				return nil, errors.New("inputs: empty key")
			}
			tmpl, err := actions.ParseTemplate(k, a.Inputs[k])
			if err != nil {
				return nil, fmt.Errorf("inputs: %q: %w", k, err)
			}
			t.Inputs[k] = tmpl
		}
	}
	if a.Payload != "" {
		tmpl, err := actions.ParseTemplate("payload", a.Payload)
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		t.Payload = tmpl
	}
	return t, nil
}
