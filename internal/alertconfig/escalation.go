package alertconfig

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/escalate"
)

// EscalationPolicy escalates the incidents it selects through a chain of
// steps (see package escalate):
//
//	escalation_policies:
//	  - name: model-critical
//	    matchers: ['priority="critical"', 'category=~"model_performance|data_quality"']
//	    ack_timeout: 30m
//	    steps:
//	      - notify: [ml-oncall]
//	      - wait: 10m
//	      - notify: [ml-lead]
//	      - wait: 20m
//	      - repeat: 2
//	      - action: rollback
type EscalationPolicy struct {
	// Name is unique among the policies.
	Name string `yaml:"name"`
	// Matchers are in Alertmanager's syntax; each string may hold several.
	// They see the labels of the alert that opened the incident, and its
	// classified priority and category as if they were labels. None match
	// every incident.
	Matchers []string `yaml:"matchers,omitempty"`
	// Steps run in order.
	Steps []EscalationStep `yaml:"steps"`
	// AckTimeout, when set, re-triggers an acknowledged incident not
	// resolved that long after the acknowledgement.
	AckTimeout model.Duration `yaml:"ack_timeout,omitempty"`
}

// EscalationStep is one step of a chain; exactly one key is set.
type EscalationStep struct {
	// Notify names receivers of the receivers section.
	Notify []string `yaml:"notify,omitempty"`
	// Wait makes the next step due this long later.
	Wait model.Duration `yaml:"wait,omitempty"`
	// Repeat runs the chain again from its first step, at most this many
	// times (escalate.MaxRepeat).
	Repeat int `yaml:"repeat,omitempty"`
	// Action names an action to run.
	Action string `yaml:"action,omitempty"`

	// zero names the keys given a zero value (wait: 0s, repeat: 0),
	// which would otherwise read as absent.
	zero []string
}

// UnmarshalYAML records the keys given a zero value, so that validation
// says "wait: must be positive" rather than that the step has no key.
func (s *EscalationStep) UnmarshalYAML(unmarshal func(any) error) error {
	type plain EscalationStep
	if err := unmarshal((*plain)(s)); err != nil {
		return err
	}
	var keys map[string]any
	if err := unmarshal(&keys); err != nil {
		return err
	}
	s.zero = nil
	if _, ok := keys["wait"]; ok && s.Wait == 0 {
		s.zero = append(s.zero, "wait")
	}
	if _, ok := keys["repeat"]; ok && s.Repeat == 0 {
		s.zero = append(s.zero, "repeat")
	}
	return nil
}

// Policy returns the policy for package escalate.
func (p *EscalationPolicy) Policy() escalate.Policy {
	out := escalate.Policy{Name: p.Name, Matchers: p.Matchers, AckTimeout: time.Duration(p.AckTimeout)}
	for _, s := range p.Steps {
		out.Steps = append(out.Steps, escalate.Step{Notify: s.Notify, Wait: time.Duration(s.Wait), Repeat: s.Repeat, Action: s.Action})
	}
	return out
}

// EscalationPolicies returns the configured policies for package escalate.
func (c *Config) EscalationPolicies() []escalate.Policy {
	out := make([]escalate.Policy, 0, len(c.Escalation))
	for _, p := range c.Escalation {
		out = append(out, p.Policy())
	}
	return out
}

// validateEscalation checks the policies as package escalate does, and that
// they notify receivers that exist. Called after validateRouting.
func (c *Config) validateEscalation() error {
	receivers := map[string]bool{}
	for _, r := range c.Receivers {
		receivers[r.Name] = true
	}
	names := map[string]bool{}
	for i, p := range c.Escalation {
		if p == nil {
			return errorAt(fmt.Errorf("escalation_policies: entry %d is empty", i), "escalation_policies", i)
		}
		what := fmt.Sprintf("escalation_policies: entry %d (%q)", i, p.Name)
		for j, s := range p.Steps {
			for _, k := range s.zero {
				err := fmt.Errorf("%s: steps[%d]: wait: must be positive, got 0s", what, j)
				if k == "repeat" {
					err = fmt.Errorf("%s: steps[%d]: repeat: 0 out of range [1, %d]", what, j, escalate.MaxRepeat)
				}
				return errorAt(err, "escalation_policies", i, "steps", j, k)
			}
		}
		ep := p.Policy()
		if err := ep.Validate(); err != nil {
			var fe *escalate.FieldError
			if !errors.As(err, &fe) {
				return errorAt(fmt.Errorf("%s: %w", what, err), "escalation_policies", i)
			}
			path := []any{"escalation_policies", i}
			switch {
			case fe.Field == "name":
				return errorAt(fmt.Errorf("escalation_policies: entry %d has no name", i), path...)
			case fe.Index >= 0:
				path = append(path, fe.Field, fe.Index)
			case fe.Field != "steps" || p.Steps != nil:
				path = append(path, fe.Field)
			}
			return errorAt(fmt.Errorf("%s: %w", what, err), path...)
		}
		if names[p.Name] {
			return errorAt(fmt.Errorf("%s: name is not unique", what), "escalation_policies", i, "name")
		}
		names[p.Name] = true
		for j, s := range p.Steps {
			for k, r := range s.Notify {
				if !receivers[r] {
					return errorAt(fmt.Errorf("%s: steps[%d]: notify: undefined receiver %q", what, j, r),
						"escalation_policies", i, "steps", j, "notify", k)
				}
			}
		}
	}
	return nil
}
