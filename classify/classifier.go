package classify

import (
	"fmt"
	"strings"
	"time"
)

// Options configure a Classifier.
type Options struct {
	// Model is the learned false-positive model, for instance one alertd
	// restored from disk; nil starts a new one with DefaultModelOptions.
	Model *Model
}

// Classifier classifies alerts by rules, then defaults, and estimates their
// false-positive probability with a Model. It is not safe for concurrent use.
type Classifier struct {
	rules []*compiledRule
	model *Model
}

// New returns a classifier for rules, evaluated in order, or the first rule's
// error, naming it.
func New(rules []Rule, opts Options) (*Classifier, error) {
	c := &Classifier{model: opts.Model}
	for i := range rules {
		cr, err := compileRule(&rules[i])
		if err != nil {
			return nil, fmt.Errorf("rule %d%s: %w", i, nameSuffix(rules[i].Name), err)
		}
		c.rules = append(c.rules, cr)
	}
	if c.model == nil {
		m, err := NewModel(DefaultModelOptions())
		if err != nil {
			return nil, err
		}
		c.model = m
	}
	return c, nil
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", name)
}

// Model returns the classifier's learned model, for persisting it.
func (c *Classifier) Model() *Model { return c.model }

// Observe passes an operator's verdict on a to the learned model.
func (c *Classifier) Observe(a Alert, now time.Time, falsePositive bool) {
	c.model.Observe(a, now, falsePositive)
}

// Classify returns the classes of a at now and its false-positive
// probability. The first matching rule decides; classes it leaves empty, or
// all of them when no rule matches, come from the defaults.
func (c *Classifier) Classify(a Alert, now time.Time) Decision {
	d := Decision{RuleIndex: -1}
	for i, r := range c.rules {
		ok, why := r.match(a, now)
		if !ok {
			continue
		}
		d.RuleIndex = i
		d.Category, d.Priority, d.Action = r.rule.Category, r.rule.Priority, r.rule.Action
		d.Reason = fmt.Sprintf("rule %d%s matched", i, nameSuffix(r.rule.Name))
		if why != "" {
			d.Reason += ": " + why
		}
		break
	}
	var defaults []string
	if d.Category == "" {
		var why string
		d.Category, why = defaultCategory(a.Labels)
		defaults = append(defaults, fmt.Sprintf("category %s from %s", d.Category, why))
	}
	if d.Priority == "" {
		var why string
		d.Priority, why = defaultPriority(a.Labels)
		defaults = append(defaults, fmt.Sprintf("priority %s from %s", d.Priority, why))
	}
	if d.Action == "" {
		d.Action = defaultAction(d.Category, d.Priority)
		defaults = append(defaults, fmt.Sprintf("action %s from %s %s", d.Action, d.Priority, d.Category))
	}
	if len(defaults) > 0 {
		if d.Reason == "" {
			d.Reason = "no rule matched"
		}
		d.Reason += "; default " + strings.Join(defaults, ", ")
	}
	d.FalsePositiveProbability, d.Explanation = c.model.FalsePositiveProbability(a, now)
	d.Confident = c.model.Confident()
	return d
}
