package classify

import (
	"testing"
)

func BenchmarkClassify(b *testing.B) {
	rules := []Rule{
		{Matchers: []string{`alertname=~"ModelDrift.*"`}, ValueAbove: ptr(0.25), Category: CategoryModelPerformance, Priority: PriorityHigh},
		{Matchers: []string{`{team="payments", severity!="info"}`}, AnomalyScoreAbove: ptr(4), Priority: PriorityCritical},
		{Matchers: []string{`alertname="ModelLabelsMissing"`}, Hours: "09:00-17:00", Priority: PriorityHigh},
	}
	c, err := New(rules, Options{})
	if err != nil {
		b.Fatal(err)
	}
	a, _, now, _ := patterns()
	for range 30 {
		c.Observe(a, now, true)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(a, now)
	}
}
