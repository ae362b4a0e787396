package escalate

import (
	"errors"
	"fmt"
	"time"

	"github.com/modelmon/modelmon/matcher"
)

// MaxRepeat bounds a repeat step, as Grafana OnCall bounds its "Repeat
// escalation" step (5 times at most): a chain nobody answers should not page
// for ever.
const MaxRepeat = 5

// Step is one step of a policy's chain; exactly one of its fields is set.
type Step struct {
	// Notify notifies these receivers; each notify step is one level of
	// the chain, numbered from 1.
	Notify []string `json:"notify,omitempty"`
	// Wait makes the next step due this long after this one.
	Wait time.Duration `json:"wait,omitempty"`
	// Repeat runs the chain again from its first step, at most this many
	// times per run; then the chain goes on past it.
	Repeat int `json:"repeat,omitempty"`
	// Action asks the caller to run the action with this name.
	Action string `json:"action,omitempty"`
}

// String returns the step as it is configured, e.g. "wait: 10m0s".
func (s Step) String() string {
	switch {
	case s.Notify != nil:
		return fmt.Sprintf("notify: %v", s.Notify)
	case s.Wait != 0:
		return fmt.Sprintf("wait: %s", s.Wait)
	case s.Repeat != 0:
		return fmt.Sprintf("repeat: %d", s.Repeat)
	case s.Action != "":
		return fmt.Sprintf("action: %s", s.Action)
	}
	return "empty step"
}

// Policy is an escalation chain and the incidents it escalates.
type Policy struct {
	// Name identifies the policy in effects, keys and state; unique.
	Name string `json:"name"`
	// Matchers are in Alertmanager's syntax, each string may hold several,
	// and all must match. They see the labels of the alert that opened the
	// incident and, when it was classified, its priority and category in
	// place of labels of those names. No matchers match every incident.
	Matchers []string `json:"matchers,omitempty"`
	// Steps run in order.
	Steps []Step `json:"steps"`
	// AckTimeout, when above 0, re-triggers an acknowledged incident not
	// resolved this long after the acknowledgement.
	AckTimeout time.Duration `json:"ackTimeout,omitempty"`
}

// FieldError is a problem with one field of a policy: Field is "name",
// "matchers", "steps" or "ack_timeout", Index the entry of matchers or steps
// at fault, or -1.
type FieldError struct {
	Field string
	Index int
	Err   error
}

func (e *FieldError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("%s[%d]: %v", e.Field, e.Index, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Validate reports the first problem with p, as a *FieldError.
func (p *Policy) Validate() error {
	_, err := compile(p)
	return err
}

// policy is a Policy ready to run.
type policy struct {
	Policy
	matchers []*matcher.Matcher
	// levels is the level of each notify step, 0 for the others.
	levels []int
}

func compile(p *Policy) (*policy, error) {
	c := &policy{Policy: *p, levels: make([]int, len(p.Steps))}
	if p.Name == "" {
		return nil, &FieldError{Field: "name", Index: -1, Err: errors.New("missing")}
	}
	for i, s := range p.Matchers {
		ms, err := matcher.ParseMatchers(s)
		if err != nil {
			return nil, &FieldError{Field: "matchers", Index: i, Err: err}
		}
		c.matchers = append(c.matchers, ms...)
	}
	if len(p.Steps) == 0 {
		return nil, &FieldError{Field: "steps", Index: -1, Err: errors.New("a policy needs at least one step")}
	}
	level, waited := 0, false
	for i, s := range p.Steps {
		set := 0
		for _, ok := range []bool{s.Notify != nil, s.Wait != 0, s.Repeat != 0, s.Action != ""} {
			if ok {
				set++
			}
		}
		fail := func(format string, args ...any) error {
			return &FieldError{Field: "steps", Index: i, Err: fmt.Errorf(format, args...)}
		}
		if set != 1 {
			return nil, fail("want exactly one of notify, wait, repeat and action, got %d", set)
		}
		switch {
		case s.Notify != nil:
			if len(s.Notify) == 0 {
				return nil, fail("notify: no receivers")
			}
			for j, r := range s.Notify {
				if r == "" {
					return nil, fail("notify: receiver %d has no name", j)
				}
			}
			level++
			c.levels[i] = level
		case s.Wait != 0:
			if s.Wait < 0 {
				return nil, fail("wait: must be positive, got %s", s.Wait)
			}
			waited = true
		case s.Repeat != 0:
			if s.Repeat < 0 || s.Repeat > MaxRepeat {
				return nil, fail("repeat: %d out of range [1, %d]", s.Repeat, MaxRepeat)
			}
			if !waited {
				// Without a wait the chain would run again at once,
				// every level paged N times in the same instant.
				return nil, fail("repeat: needs a wait step before it")
			}
		}
	}
	if p.AckTimeout < 0 {
		return nil, &FieldError{Field: "ack_timeout", Index: -1, Err: fmt.Errorf("must not be negative, got %s", p.AckTimeout)}
	}
	return c, nil
}

// Subject is what policies match an incident on: the labels of the alert
// that opened it and its classification, when it has one.
type Subject struct {
	Labels   map[string]string
	Priority string
	Category string
}

// value returns the field name of s: the classification's priority and
// category when set, else the label.
func (s Subject) value(name string) string {
	switch {
	case name == "priority" && s.Priority != "":
		return s.Priority
	case name == "category" && s.Category != "":
		return s.Category
	}
	return s.Labels[name]
}

func (p *policy) matches(s Subject) bool {
	for _, m := range p.matchers {
		if !m.Matches(s.value(m.Name)) {
			return false
		}
	}
	return true
}
