package classify

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func ptr(f float64) *float64 { return &f }

// monday10 is Monday 2026-11-23 10:30 UTC.
var monday10 = time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)

func alertOf(labels ...string) Alert {
	a := Alert{Labels: map[string]string{}, Value: math.NaN(), AnomalyScore: math.NaN()}
	for i := 0; i+1 < len(labels); i += 2 {
		a.Labels[labels[i]] = labels[i+1]
	}
	return a
}

func TestRules(t *testing.T) {
	rules := []Rule{
		// 0: value above, by regex on alertname.
		{Name: "big drift", Matchers: []string{`alertname=~"ModelDrift.*"`}, ValueAbove: ptr(0.25),
			Category: CategoryModelPerformance, Priority: PriorityHigh, Action: ActionRetrain},
		// 1: same alerts otherwise: order decides.
		{Matchers: []string{`alertname=~"ModelDrift.*"`}, Category: CategoryModelPerformance, Priority: PriorityLow},
		// 2: anomaly score, several matchers in one string.
		{Matchers: []string{`{team="payments", severity!="info"}`}, AnomalyScoreAbove: ptr(4),
			Category: CategoryBusiness, Priority: PriorityCritical, Action: ActionImmediateIntervention},
		// 3: firing for at least 10m.
		{Matchers: []string{`alertname="ModelLatencyHigh"`}, FiringForAtLeast: 10 * time.Minute, Priority: PriorityHigh},
		// 4: business hours on weekdays, Berlin.
		{Matchers: []string{`alertname="ModelLabelsMissing"`}, Hours: "09:00-17:00", Weekdays: []string{"mon", "Tuesday", "wed", "thu", "fri"},
			Location: "Europe/Berlin", Priority: PriorityHigh, Action: ActionInvestigate},
		// 5: overnight window wrapping midnight.
		{Matchers: []string{`alertname="ModelLabelsMissing"`}, Hours: "22:00-06:00", Priority: PriorityLow},
		// 6: value window.
		{Matchers: []string{`alertname="Revenue"`}, ValueAbove: ptr(-1), ValueBelow: ptr(1), Category: CategoryBusiness},
		// 7: negative regex and a missing label.
		{Matchers: []string{`env!~"prod|staging"`, `owner=""`}, Category: CategoryGeneral, Priority: PriorityLow, Action: ActionMonitor},
	}
	c, err := New(rules, Options{})
	require.NoError(t, err)

	with := func(a Alert, f func(*Alert)) Alert { f(&a); return a }
	prod := func(l ...string) Alert { return alertOf(append([]string{"env", "prod"}, l...)...) }
	for _, tc := range []struct {
		name   string
		a      Alert
		now    time.Time
		rule   int
		want   [3]string
		reason string
	}{
		{"value above", with(prod("alertname", "ModelDriftHigh"), func(a *Alert) { a.Value = 0.3 }), monday10, 0,
			[3]string{"model_performance", "high", "retrain"}, `rule 0 ("big drift") matched: alertname=~"ModelDrift.*", value 0.3 > 0.25`},
		{"value at bound is not above", with(prod("alertname", "ModelDriftHigh"), func(a *Alert) { a.Value = 0.25 }), monday10, 1,
			[3]string{"model_performance", "low", "monitor"}, `rule 1 matched: alertname=~"ModelDrift.*"; default action monitor from low model_performance`},
		{"NaN value fails value_above", prod("alertname", "ModelDriftHigh"), monday10, 1,
			[3]string{"model_performance", "low", "monitor"}, ""},
		{"anomaly score", with(prod("team", "payments", "severity", "warning"), func(a *Alert) { a.AnomalyScore = 4.5 }), monday10, 2,
			[3]string{"business", "critical", "immediate_intervention"}, `rule 2 matched: team="payments", severity!="info", anomaly score 4.5 > 4`},
		{"anomaly score low", with(prod("team", "payments", "severity", "warning"), func(a *Alert) { a.AnomalyScore = 3 }), monday10, -1,
			[3]string{"general", "medium", "investigate"}, ""},
		{"firing long enough", with(prod("alertname", "ModelLatencyHigh", "category", "performance"), func(a *Alert) { a.StartsAt = monday10.Add(-15 * time.Minute) }), monday10, 3,
			[3]string{"system_health", "high", "investigate"},
			`rule 3 matched: alertname="ModelLatencyHigh", firing for 15m0s ≥ 10m0s; default category system_health from category="performance", action investigate from high system_health`},
		{"not firing long enough", with(prod("alertname", "ModelLatencyHigh"), func(a *Alert) { a.StartsAt = monday10.Add(-5 * time.Minute) }), monday10, -1,
			[3]string{"general", "medium", "investigate"}, ""},
		{"business hours in Berlin", prod("alertname", "ModelLabelsMissing"), monday10, 4,
			[3]string{"general", "high", "investigate"}, `rule 4 matched: alertname="ModelLabelsMissing", at Mon 11:30 Europe/Berlin; default category general from no category label`},
		{"after hours in Berlin", prod("alertname", "ModelLabelsMissing"), monday10.Add(6 * time.Hour), -1,
			[3]string{"general", "medium", "investigate"}, ""},
		{"weekend in Berlin", prod("alertname", "ModelLabelsMissing"), monday10.Add(-48 * time.Hour), -1,
			[3]string{"general", "medium", "investigate"}, ""},
		{"overnight before midnight", prod("alertname", "ModelLabelsMissing"), monday10.Add(12 * time.Hour), 5,
			[3]string{"general", "low", "monitor"}, ""},
		{"overnight after midnight", prod("alertname", "ModelLabelsMissing"), monday10.Add(-5 * time.Hour), 5,
			[3]string{"general", "low", "monitor"}, ""},
		{"value window", with(prod("alertname", "Revenue"), func(a *Alert) { a.Value = 0 }), monday10, 6,
			[3]string{"business", "medium", "investigate"}, ""},
		{"outside value window", with(prod("alertname", "Revenue"), func(a *Alert) { a.Value = 1 }), monday10, -1,
			[3]string{"general", "medium", "investigate"}, ""},
		{"negative regex, missing label", alertOf("env", "dev"), monday10, 7,
			[3]string{"general", "low", "monitor"}, ""},
		{"negative regex excludes", alertOf("env", "staging"), monday10, -1,
			[3]string{"general", "medium", "investigate"}, "no rule matched; default category general from no category label, priority medium from no severity label, action investigate from medium general"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Classify(tc.a, tc.now)
			require.Equal(t, tc.rule, d.RuleIndex, d.Reason)
			require.Equal(t, tc.want, [3]string{string(d.Category), string(d.Priority), string(d.Action)}, d.Reason)
			if tc.reason != "" {
				require.Equal(t, tc.reason, d.Reason)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		category, severity string
		want               [3]string
	}{
		{"availability", "page", [3]string{"system_health", "critical", "immediate_intervention"}},
		{"performance", "warning", [3]string{"system_health", "medium", "investigate"}},
		{"drift", "critical", [3]string{"model_performance", "critical", "immediate_intervention"}},
		{"drift", "error", [3]string{"model_performance", "high", "retrain"}},
		{"drift", "ticket", [3]string{"model_performance", "medium", "investigate"}},
		{"data_quality", "info", [3]string{"data_quality", "low", "monitor"}},
		{"Business", "high", [3]string{"business", "high", "investigate"}},
		{"cosmic_rays", "whatever", [3]string{"general", "medium", "investigate"}},
		{"", "", [3]string{"general", "medium", "investigate"}},
	} {
		c, err := New(nil, Options{})
		require.NoError(t, err)
		a := alertOf("category", tc.category, "severity", tc.severity)
		if tc.category == "" {
			a = alertOf()
		}
		d := c.Classify(a, monday10)
		require.Equal(t, -1, d.RuleIndex)
		require.Equal(t, tc.want, [3]string{string(d.Category), string(d.Priority), string(d.Action)}, "%s/%s: %s", tc.category, tc.severity, d.Reason)
		cat, _ := DefaultCategory(a.Labels)
		require.Equal(t, d.Category, cat, "DefaultCategory agrees with the classifier's default")
		require.Contains(t, Categories(), cat)
	}
	d := (&Classifier{model: mustModel(t, ModelOptions{})}).Classify(alertOf("category", "cosmic_rays", "severity", "whatever"), monday10)
	require.Equal(t, `no rule matched; default category general from unknown category="cosmic_rays", priority medium from unknown severity="whatever", action investigate from medium general`, d.Reason)
}

func TestRuleValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule Rule
		err  string
	}{
		{"malformed matcher", Rule{Matchers: []string{`alertname=~"("`}, Priority: PriorityLow},
			"rule 0: bad matchers \"alertname=~\\\"(\\\"\": invalid regular expression \"(\": error parsing regexp: missing closing ): `^(?:()$`"},
		{"bad operator", Rule{Name: "x", Matchers: []string{`severity~"x"`}, Priority: PriorityLow},
			`rule 0 ("x"): bad matchers "severity~\"x\"": expected an operator (=, !=, =~, !~) after "severity"`},
		{"no classes", Rule{Matchers: []string{`a="b"`}}, "rule 0: rule sets none of category, priority and action"},
		{"unknown category", Rule{Category: "misc"}, `rule 0: unknown category "misc", want one of [model_performance data_quality system_health business general]`},
		{"unknown priority", Rule{Priority: "p1"}, `rule 0: unknown priority "p1", want one of [critical high medium low]`},
		{"unknown action", Rule{Action: "panic"}, `rule 0: unknown action "panic", want one of [immediate_intervention investigate monitor retrain]`},
		{"empty value window", Rule{ValueAbove: ptr(2), ValueBelow: ptr(1), Priority: PriorityLow}, "rule 0: value_above (2) must be less than value_below (1)"},
		{"NaN bound", Rule{AnomalyScoreAbove: ptr(math.NaN()), Priority: PriorityLow}, "rule 0: anomaly_score_above is NaN"},
		{"negative duration", Rule{FiringForAtLeast: -time.Second, Priority: PriorityLow}, "rule 0: firing_for_at_least is negative: -1s"},
		{"hours without dash", Rule{Hours: "9-17", Priority: PriorityLow}, `rule 0: invalid hours "9-17": "9" is not HH:MM`},
		{"hours no separator", Rule{Hours: "09:00", Priority: PriorityLow}, `rule 0: invalid hours "09:00": want HH:MM-HH:MM`},
		{"hours out of range", Rule{Hours: "09:00-25:00", Priority: PriorityLow}, `rule 0: invalid hours "09:00-25:00": "25:00" is not HH:MM`},
		{"hours minutes", Rule{Hours: "09:60-10:00", Priority: PriorityLow}, `rule 0: invalid hours "09:60-10:00": "09:60" is not HH:MM`},
		{"empty window", Rule{Hours: "09:00-09:00", Priority: PriorityLow}, `rule 0: invalid hours "09:00-09:00": empty window`},
		{"weekday", Rule{Weekdays: []string{"funday"}, Priority: PriorityLow}, `rule 0: unknown weekday "funday"`},
		{"location", Rule{Location: "Mars/Olympus", Priority: PriorityLow}, `rule 0: invalid location "Mars/Olympus": unknown time zone Mars/Olympus`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New([]Rule{tc.rule}, Options{})
			require.EqualError(t, err, tc.err)
			require.Error(t, tc.rule.Validate())
		})
	}
	require.NoError(t, (&Rule{Hours: "22:00-24:00", Priority: PriorityLow}).Validate())
}

// TestRuleYAML decodes rules the way alertd's configuration embeds them.
func TestRuleYAML(t *testing.T) {
	const in = `
rules:
  - name: drift in business hours
    matchers: ['alertname=~"ModelDrift.*"', 'severity!="info"']
    value_above: 0.25
    firing_for_at_least: 10m
    hours: "09:00-17:00"
    weekdays: [mon, tue, wed, thu, fri]
    location: Europe/Berlin
    category: model_performance
    priority: high
    action: retrain
`
	var cfg struct {
		Rules []Rule `yaml:"rules"`
	}
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&cfg))
	require.Equal(t, []Rule{{
		Name: "drift in business hours", Matchers: []string{`alertname=~"ModelDrift.*"`, `severity!="info"`},
		ValueAbove: ptr(0.25), FiringForAtLeast: 10 * time.Minute, Hours: "09:00-17:00",
		Weekdays: []string{"mon", "tue", "wed", "thu", "fri"}, Location: "Europe/Berlin",
		Category: CategoryModelPerformance, Priority: PriorityHigh, Action: ActionRetrain,
	}}, cfg.Rules)
	require.NoError(t, cfg.Rules[0].Validate())

	c, err := New(cfg.Rules, Options{})
	require.NoError(t, err)
	d := c.Classify(Alert{}, time.Time{}) // the zero alert: nothing matches, nothing breaks
	require.Equal(t, -1, d.RuleIndex)
	require.Equal(t, 0.5, d.FalsePositiveProbability)
}
