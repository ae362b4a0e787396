package classify

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func mustModel(t testing.TB, o ModelOptions) *Model {
	t.Helper()
	m, err := NewModel(o)
	require.NoError(t, err)
	return m
}

// patternA is a noisy latency alert that operators keep dismissing; patternB
// is unrelated: other labels, source, value, time of day.
func patterns() (a, b Alert, nowA, nowB time.Time) {
	a = Alert{
		Labels: map[string]string{"alertname": "ModelPredictionLatencyHigh", "model": "fraud", "severity": "warning"},
		Source: "rule", Value: 1.7, AnomalyScore: 2.2, StartsAt: monday10.Add(-3 * time.Minute), FlapCount: 5,
	}
	b = Alert{
		Labels: map[string]string{"alertname": "ModelAccuracyLow", "model": "churn", "severity": "critical"},
		Source: "prometheus", Value: 0.04, AnomalyScore: math.NaN(), StartsAt: monday10.Add(-2 * time.Hour),
	}
	return a, b, monday10, monday10.Add(8 * time.Hour)
}

func TestModelLearnsFromFeedback(t *testing.T) {
	m := mustModel(t, ModelOptions{})
	a, b, nowA, nowB := patterns()

	pA, top := m.FalsePositiveProbability(a, nowA)
	require.Equal(t, 0.5, pA, "no feedback: the prior")
	require.Empty(t, top)
	require.False(t, m.Confident())

	for range 50 {
		m.Observe(a, nowA, true)
	}
	pA, top = m.FalsePositiveProbability(a, nowA)
	pB, _ := m.FalsePositiveProbability(b, nowB)
	t.Logf("after 50 false positives: p(A)=%.3f p(B)=%.3f top=%v", pA, pB, top)
	require.Greater(t, pA, 0.8)
	require.InDelta(t, 0.5, pB, 0.05, "an unrelated pattern stays near the prior")
	require.True(t, m.Confident())
	require.Len(t, top, 5)
	var names []string
	for _, c := range top {
		require.Positive(t, c.Weight, "every listed feature argues for a false positive")
		names = append(names, c.Feature)
	}
	require.Contains(t, names, `alertname="ModelPredictionLatencyHigh"`)

	// Operators change their mind: the alert is real now.
	for range 50 {
		m.Observe(a, nowA, false)
	}
	pA2, top := m.FalsePositiveProbability(a, nowA)
	t.Logf("after 50 true positives: p(A)=%.3f top=%v", pA2, top)
	require.Less(t, pA2, 0.5)
	require.Equal(t, 100, m.Verdicts())

	// The fingerprint's own history is a feature too.
	a.PriorFalsePositives = 10
	pHist, _ := m.FalsePositiveProbability(a, nowA)
	require.Equal(t, pA2, pHist, "unlearned feature changes nothing")
}

func TestModelExplainsClassification(t *testing.T) {
	c, err := New([]Rule{{Matchers: []string{`alertname="ModelPredictionLatencyHigh"`}, Priority: PriorityMedium}}, Options{})
	require.NoError(t, err)
	a, _, now, _ := patterns()
	for range 30 {
		c.Observe(a, now, true)
	}
	d := c.Classify(a, now)
	require.Equal(t, 0, d.RuleIndex)
	require.True(t, d.Confident)
	require.Greater(t, d.FalsePositiveProbability, 0.8)
	require.NotEmpty(t, d.Explanation)
	s := d.String()
	require.True(t, strings.HasPrefix(s, `general/medium/investigate: rule 0 matched: alertname="ModelPredictionLatencyHigh"; default category general from no category label, action investigate from medium general; false positive p=0.`), s)
	require.Contains(t, s, `alertname="ModelPredictionLatencyHigh" +0.`)
}

func TestModelDeterministic(t *testing.T) {
	run := func() (*Model, float64, []Contribution) {
		m := mustModel(t, ModelOptions{})
		a, b, nowA, nowB := patterns()
		for i := range 40 {
			m.Observe(a, nowA.Add(time.Duration(i)*time.Minute), i%3 != 0)
			m.Observe(b, nowB, i%5 == 0)
		}
		p, top := m.FalsePositiveProbability(a, nowA)
		return m, p, top
	}
	m1, p1, top1 := run()
	m2, p2, top2 := run()
	require.Equal(t, p1, p2)
	require.Equal(t, top1, top2)
	require.Equal(t, m1.weights, m2.weights)
}

func TestModelJSONRoundTrip(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	m := mustModel(t, ModelOptions{Bits: 10, Prior: 0.3, Location: berlin, MinVerdicts: 5})
	a, b, nowA, nowB := patterns()
	for i := range 20 {
		m.Observe(a, nowA, true)
		m.Observe(b, nowB, i%2 == 0)
	}
	data, err := json.Marshal(m)
	require.NoError(t, err)

	var back Model
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, m.opts.Bits, back.opts.Bits)
	require.Equal(t, m.opts.Location.String(), back.opts.Location.String())
	require.Equal(t, m.weights, back.weights)
	require.Equal(t, m.bias, back.bias)
	require.Equal(t, m.verdicts, back.verdicts)
	for _, x := range []struct {
		a   Alert
		now time.Time
	}{{a, nowA}, {b, nowB}} {
		p1, t1 := m.FalsePositiveProbability(x.a, x.now)
		p2, t2 := back.FalsePositiveProbability(x.a, x.now)
		require.Equal(t, p1, p2)
		require.Equal(t, t1, t2)
	}
	again, err := json.Marshal(&back)
	require.NoError(t, err)
	require.JSONEq(t, string(data), string(again))

	c, err := New(nil, Options{Model: &back})
	require.NoError(t, err)
	require.Same(t, &back, c.Model())

	for _, tc := range []struct{ in, err string }{
		{`{"version":"1"}`, "couldn't decode model: json: cannot unmarshal string into Go struct field modelJSON.version of type int"},
		{`{"version":2}`, "unsupported model version 2"},
		{`{"version":1}`, "model has no bits"},
		{`{"version":1,"bits":40,"location":"UTC"}`, "invalid model options: bits 40 out of range [4, 24]"},
		{`{"version":1,"bits":4,"location":"UTC","weights":{"16":1}}`, "weight slot 16 out of range [0, 16)"},
		{`{"version":1,"bits":4,"location":"Nowhere/Else"}`, `invalid model location "Nowhere/Else": unknown time zone Nowhere/Else`},
		{`{"version":1,"bits":4,"location":"UTC","verdicts":-1}`, "negative verdict count -1"},
	} {
		var m Model
		require.EqualError(t, json.Unmarshal([]byte(tc.in), &m), tc.err, tc.in)
	}
}

func TestModelOptions(t *testing.T) {
	for _, tc := range []struct {
		o   ModelOptions
		err string
	}{
		{ModelOptions{Bits: 3}, "invalid model options: bits 3 out of range [4, 24]"},
		{ModelOptions{LearningRate: -1}, "invalid model options: learning rate -1 out of range (0, 1]"},
		{ModelOptions{LearningRate: math.NaN()}, "invalid model options: learning rate NaN out of range (0, 1]"},
		{ModelOptions{Prior: 1}, "invalid model options: prior 1 out of range (0, 1)"},
		{ModelOptions{L2: -1}, "invalid model options: l2 -1 out of range [0, 1/learning rate)"},
		{ModelOptions{MinVerdicts: -1}, "invalid model options: min verdicts -1 is negative"},
	} {
		_, err := NewModel(tc.o)
		require.EqualError(t, err, tc.err)
	}
	m := mustModel(t, ModelOptions{Prior: 0.2})
	p, _ := m.FalsePositiveProbability(Alert{}, monday10)
	require.InDelta(t, 0.2, p, 1e-15)
}

// TestModelProbabilityBounded feeds random alerts, NaN and infinite values
// included, and checks every estimate is a number strictly within (0, 1).
func TestModelProbabilityBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, -0.5, 1e300, -1e-300, math.MaxFloat64}
	pick := func() float64 {
		if r.IntN(2) == 0 {
			return odd[r.IntN(len(odd))]
		}
		return r.NormFloat64() * 100
	}
	m := mustModel(t, ModelOptions{Bits: 4, LearningRate: 1}) // collisions and big steps
	for i := range 2000 {
		a := Alert{
			Labels:              map[string]string{"alertname": string(rune('A' + r.IntN(3)))},
			Source:              "rule",
			Value:               pick(),
			AnomalyScore:        pick(),
			StartsAt:            monday10.Add(-time.Duration(r.IntN(1e6)) * time.Second),
			FlapCount:           r.IntN(20) - 5,
			RecentDeploy:        r.IntN(2) == 0,
			PriorFalsePositives: r.IntN(100) - 3,
			PriorTruePositives:  r.IntN(100),
		}
		now := monday10.Add(time.Duration(r.IntN(1e6)) * time.Second)
		p, top := m.FalsePositiveProbability(a, now)
		require.True(t, p > 0 && p < 1, "step %d: p=%v", i, p)
		for _, c := range top {
			require.False(t, math.IsNaN(c.Weight) || math.IsInf(c.Weight, 0), "step %d: %v", i, c)
		}
		// Always the same verdict: the weights run away, p must not reach 1.
		m.Observe(a, now, true)
	}
	for _, w := range m.weights {
		require.False(t, math.IsNaN(w) || math.IsInf(w, 0))
	}
}
