package classify

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/modelmon/modelmon/matcher"
)

// Rule classifies the alerts its matchers and conditions select. All set
// conditions must hold. It is meant to be embedded in alertd's configuration:
//
//	classification:
//	  rules:
//	    - name: drift in business hours
//	      matchers: ['alertname=~"ModelDrift.*"', 'severity!="info"']
//	      value_above: 0.25
//	      firing_for_at_least: 10m
//	      hours: "09:00-17:00"
//	      weekdays: [mon, tue, wed, thu, fri]
//	      location: Europe/Berlin
//	      category: model_performance
//	      priority: high
//	      action: retrain
type Rule struct {
	// Name shows up in reasons; optional.
	Name string `yaml:"name,omitempty"`
	// Matchers are in Alertmanager's syntax; each string may hold several,
	// and all must match.
	Matchers []string `yaml:"matchers,omitempty"`
	// ValueAbove and ValueBelow bound the alert's value, strictly. An alert
	// without a value (NaN) fails them.
	ValueAbove *float64 `yaml:"value_above,omitempty"`
	ValueBelow *float64 `yaml:"value_below,omitempty"`
	// AnomalyScoreAbove bounds the anomaly score, strictly; an alert
	// without one fails it.
	AnomalyScoreAbove *float64 `yaml:"anomaly_score_above,omitempty"`
	// FiringForAtLeast is the least time since the alert started.
	FiringForAtLeast time.Duration `yaml:"firing_for_at_least,omitempty"`
	// Hours is a time-of-day window "HH:MM-HH:MM" in Location, start
	// included and end excluded; it may wrap midnight ("22:00-06:00").
	Hours string `yaml:"hours,omitempty"`
	// Weekdays restricts the rule to these days in Location: monday or mon, ….
	Weekdays []string `yaml:"weekdays,omitempty"`
	// Location is an IANA time zone name for Hours and Weekdays; UTC if empty.
	Location string `yaml:"location,omitempty"`

	// Category, Priority and Action are the classes the rule gives; one left
	// empty takes its default (see the package documentation), but a rule
	// must set at least one.
	Category Category `yaml:"category,omitempty"`
	Priority Priority `yaml:"priority,omitempty"`
	Action   Action   `yaml:"action,omitempty"`
}

// Validate reports the first problem with r, without compiling it for use.
func (r *Rule) Validate() error {
	_, err := compileRule(r)
	return err
}

// compiledRule is a Rule ready to match.
type compiledRule struct {
	rule     Rule
	matchers []*matcher.Matcher
	from, to int // minutes after midnight; from == to == -1 when no window
	days     [7]bool
	anyDay   bool
	loc      *time.Location
}

var weekdayNames = map[string]time.Weekday{
	"sunday": time.Sunday, "sun": time.Sunday,
	"monday": time.Monday, "mon": time.Monday,
	"tuesday": time.Tuesday, "tue": time.Tuesday,
	"wednesday": time.Wednesday, "wed": time.Wednesday,
	"thursday": time.Thursday, "thu": time.Thursday,
	"friday": time.Friday, "fri": time.Friday,
	"saturday": time.Saturday, "sat": time.Saturday,
}

func compileRule(r *Rule) (*compiledRule, error) {
	c := &compiledRule{rule: *r, from: -1, to: -1, anyDay: true, loc: time.UTC}
	for _, s := range r.Matchers {
		ms, err := matcher.ParseMatchers(s)
		if err != nil {
			return nil, err
		}
		c.matchers = append(c.matchers, ms...)
	}
	for _, b := range []struct {
		name string
		v    *float64
	}{{"value_above", r.ValueAbove}, {"value_below", r.ValueBelow}, {"anomaly_score_above", r.AnomalyScoreAbove}} {
		if b.v != nil && math.IsNaN(*b.v) {
			return nil, fmt.Errorf("%s is NaN", b.name)
		}
	}
	if r.ValueAbove != nil && r.ValueBelow != nil && *r.ValueAbove >= *r.ValueBelow {
		return nil, fmt.Errorf("value_above (%g) must be less than value_below (%g)", *r.ValueAbove, *r.ValueBelow)
	}
	if r.FiringForAtLeast < 0 {
		return nil, fmt.Errorf("firing_for_at_least is negative: %s", r.FiringForAtLeast)
	}
	if r.Hours != "" {
		from, to, err := parseHours(r.Hours)
		if err != nil {
			return nil, err
		}
		c.from, c.to = from, to
	}
	for _, d := range r.Weekdays {
		wd, ok := weekdayNames[strings.ToLower(d)]
		if !ok {
			return nil, fmt.Errorf("unknown weekday %q", d)
		}
		c.days[wd], c.anyDay = true, false
	}
	if r.Location != "" {
		loc, err := time.LoadLocation(r.Location)
		if err != nil {
			return nil, fmt.Errorf("invalid location %q: %w", r.Location, err)
		}
		c.loc = loc
	}
	if r.Category != "" && !slices.Contains(categories, r.Category) {
		return nil, fmt.Errorf("unknown category %q, want one of %v", r.Category, categories)
	}
	if r.Priority != "" && !slices.Contains(priorities, r.Priority) {
		return nil, fmt.Errorf("unknown priority %q, want one of %v", r.Priority, priorities)
	}
	if r.Action != "" && !slices.Contains(actions, r.Action) {
		return nil, fmt.Errorf("unknown action %q, want one of %v", r.Action, actions)
	}
	if r.Category == "" && r.Priority == "" && r.Action == "" {
		return nil, errors.New("rule sets none of category, priority and action")
	}
	return c, nil
}

// parseHours parses "HH:MM-HH:MM" into minutes after midnight.
func parseHours(s string) (from, to int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("invalid hours %q: want HH:MM-HH:MM", s)
	}
	if from, err = parseClock(strings.TrimSpace(a)); err == nil {
		to, err = parseClock(strings.TrimSpace(b))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("invalid hours %q: %w", s, err)
	}
	if from == to {
		return 0, 0, fmt.Errorf("invalid hours %q: empty window", s)
	}
	return from, to, nil
}

// parseClock parses "HH:MM", 00:00 to 24:00.
func parseClock(s string) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	if _, err := fmt.Sscanf(s, "%2d:%2d", &h, &m); err != nil || h < 0 || m < 0 || m > 59 || h > 24 || h == 24 && m != 0 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return h*60 + m, nil
}

// match reports whether the rule selects a at now, and if so why.
func (c *compiledRule) match(a Alert, now time.Time) (bool, string) {
	var why []string
	for _, m := range c.matchers {
		if !m.Matches(a.Labels[m.Name]) {
			return false, ""
		}
		why = append(why, m.String())
	}
	r := &c.rule
	if r.ValueAbove != nil {
		if !(a.Value > *r.ValueAbove) {
			return false, ""
		}
		why = append(why, fmt.Sprintf("value %g > %g", a.Value, *r.ValueAbove))
	}
	if r.ValueBelow != nil {
		if !(a.Value < *r.ValueBelow) {
			return false, ""
		}
		why = append(why, fmt.Sprintf("value %g < %g", a.Value, *r.ValueBelow))
	}
	if r.AnomalyScoreAbove != nil {
		if !(a.AnomalyScore > *r.AnomalyScoreAbove) {
			return false, ""
		}
		why = append(why, fmt.Sprintf("anomaly score %g > %g", a.AnomalyScore, *r.AnomalyScoreAbove))
	}
	if r.FiringForAtLeast > 0 {
		d := a.firingFor(now)
		if d < r.FiringForAtLeast {
			return false, ""
		}
		why = append(why, fmt.Sprintf("firing for %s ≥ %s", d.Round(time.Second), r.FiringForAtLeast))
	}
	if c.from >= 0 || !c.anyDay {
		t := now.In(c.loc)
		if !c.anyDay && !c.days[t.Weekday()] {
			return false, ""
		}
		if c.from >= 0 {
			m := t.Hour()*60 + t.Minute()
			in := c.from <= m && m < c.to
			if c.from > c.to { // wraps midnight
				in = m >= c.from || m < c.to
			}
			if !in {
				return false, ""
			}
		}
		why = append(why, fmt.Sprintf("at %s %s", t.Format("Mon 15:04"), c.loc))
	}
	return true, strings.Join(why, ", ")
}
