package classify

import (
	"fmt"
	"slices"
	"strings"
)

// Category says what an alert is about.
type Category string

// The categories.
const (
	CategoryModelPerformance Category = "model_performance"
	CategoryDataQuality      Category = "data_quality"
	CategorySystemHealth     Category = "system_health"
	CategoryBusiness         Category = "business"
	CategoryGeneral          Category = "general"
)

// Priority says how urgent an alert is.
type Priority string

// The priorities, most urgent first.
const (
	PriorityCritical Priority = "critical"
	PriorityHigh     Priority = "high"
	PriorityMedium   Priority = "medium"
	PriorityLow      Priority = "low"
)

// Action says what should be done about an alert.
type Action string

// The actions.
const (
	ActionImmediateIntervention Action = "immediate_intervention"
	ActionInvestigate           Action = "investigate"
	ActionMonitor               Action = "monitor"
	ActionRetrain               Action = "retrain"
)

var (
	categories = []Category{CategoryModelPerformance, CategoryDataQuality, CategorySystemHealth, CategoryBusiness, CategoryGeneral}
	priorities = []Priority{PriorityCritical, PriorityHigh, PriorityMedium, PriorityLow}
	actions    = []Action{ActionImmediateIntervention, ActionInvestigate, ActionMonitor, ActionRetrain}
)

// Decision is the classification of one alert and why.
type Decision struct {
	Category Category
	Priority Priority
	Action   Action
	// RuleIndex is the index of the rule that matched, -1 when none did and
	// the defaults decided.
	RuleIndex int
	// FalsePositiveProbability is the learned model's estimate, in (0, 1).
	FalsePositiveProbability float64
	// Confident is false while the model has seen too few verdicts for the
	// estimate to mean much.
	Confident bool
	// Explanation lists the features that moved the estimate most.
	Explanation []Contribution
	// Reason says which rule or default decided the classes.
	Reason string
}

// String returns a one-line summary fit for an alert's history.
func (d Decision) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s/%s: %s; false positive p=%.2f", d.Category, d.Priority, d.Action, d.Reason, d.FalsePositiveProbability)
	if !d.Confident {
		b.WriteString(" (not confident)")
	}
	for i, c := range d.Explanation {
		if i == 0 {
			b.WriteString(" from ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %+.2f", c.Feature, c.Weight)
	}
	return b.String()
}

// categoryLabel maps values of the `category` label to categories; see the
// package documentation.
var categoryLabel = map[string]Category{
	"availability":      CategorySystemHealth,
	"performance":       CategorySystemHealth,
	"system_health":     CategorySystemHealth,
	"system":            CategorySystemHealth,
	"drift":             CategoryModelPerformance,
	"accuracy":          CategoryModelPerformance,
	"model_performance": CategoryModelPerformance,
	"model":             CategoryModelPerformance,
	"data_quality":      CategoryDataQuality,
	"data":              CategoryDataQuality,
	"business":          CategoryBusiness,
	"general":           CategoryGeneral,
}

// severityLabel maps values of the `severity` label to priorities.
var severityLabel = map[string]Priority{
	"critical":  PriorityCritical,
	"page":      PriorityCritical,
	"emergency": PriorityCritical,
	"error":     PriorityHigh,
	"high":      PriorityHigh,
	"major":     PriorityHigh,
	"warning":   PriorityMedium,
	"ticket":    PriorityMedium,
	"medium":    PriorityMedium,
	"info":      PriorityLow,
	"low":       PriorityLow,
	"none":      PriorityLow,
}

// Categories returns every category, in a fixed order.
func Categories() []Category { return slices.Clone(categories) }

// Priorities returns the priorities, most urgent first.
func Priorities() []Priority { return slices.Clone(priorities) }

// DefaultCategory returns the category an alert with these labels gets when
// no rule sets one (from its `category` label, see the package
// documentation), and why.
func DefaultCategory(labels map[string]string) (Category, string) {
	return defaultCategory(labels)
}

// defaultCategory derives the category from the alert's labels.
func defaultCategory(labels map[string]string) (Category, string) {
	v, ok := labels["category"]
	if !ok {
		return CategoryGeneral, "no category label"
	}
	if c, ok := categoryLabel[strings.ToLower(v)]; ok {
		return c, fmt.Sprintf("category=%q", v)
	}
	return CategoryGeneral, fmt.Sprintf("unknown category=%q", v)
}

// defaultPriority derives the priority from the alert's labels.
func defaultPriority(labels map[string]string) (Priority, string) {
	v, ok := labels["severity"]
	if !ok {
		return PriorityMedium, "no severity label"
	}
	if p, ok := severityLabel[strings.ToLower(v)]; ok {
		return p, fmt.Sprintf("severity=%q", v)
	}
	return PriorityMedium, fmt.Sprintf("unknown severity=%q", v)
}

// defaultAction derives the action from the category and priority.
func defaultAction(c Category, p Priority) Action {
	switch {
	case p == PriorityCritical:
		return ActionImmediateIntervention
	case p == PriorityLow:
		return ActionMonitor
	case c == CategoryModelPerformance && p == PriorityHigh:
		return ActionRetrain
	}
	return ActionInvestigate
}
