package classify

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// ModelOptions configure a Model. Zero fields take the defaults of
// DefaultModelOptions.
type ModelOptions struct {
	// Bits is the base-2 logarithm of the number of weights features are
	// hashed into, 4 to 24. Distinct features may share a weight; more bits
	// make that rarer.
	Bits int
	// LearningRate is the step of each update.
	LearningRate float64
	// L2 is the weight decay per update, towards 0 (the prior); zero takes
	// the default, so use a tiny value for next to no decay.
	L2 float64
	// Prior is the false-positive probability without evidence, in (0, 1).
	Prior float64
	// MinVerdicts is how many verdicts the model needs before it is
	// Confident.
	MinVerdicts int
	// TopFeatures is how many contributions an estimate lists.
	TopFeatures int
	// Location is where the hour-of-day and weekend features are read; UTC
	// if nil.
	Location *time.Location
}

// DefaultModelOptions returns the defaults: 4096 weights, learning rate 0.1,
// L2 1e-4, prior 0.5, confident after 20 verdicts, 5 features listed.
func DefaultModelOptions() ModelOptions {
	return ModelOptions{Bits: 12, LearningRate: 0.1, L2: 1e-4, Prior: 0.5, MinVerdicts: 20, TopFeatures: 5, Location: time.UTC}
}

func (o *ModelOptions) setDefaults() error {
	d := DefaultModelOptions()
	if o.Bits == 0 {
		o.Bits = d.Bits
	}
	if o.LearningRate == 0 {
		o.LearningRate = d.LearningRate
	}
	if o.L2 == 0 {
		o.L2 = d.L2
	}
	if o.Prior == 0 {
		o.Prior = d.Prior
	}
	if o.MinVerdicts == 0 {
		o.MinVerdicts = d.MinVerdicts
	}
	if o.TopFeatures == 0 {
		o.TopFeatures = d.TopFeatures
	}
	if o.Location == nil {
		o.Location = d.Location
	}
	switch {
	case o.Bits < 4 || o.Bits > 24:
		return fmt.Errorf("bits %d out of range [4, 24]", o.Bits)
	case !(o.LearningRate > 0 && o.LearningRate <= 1):
		return fmt.Errorf("learning rate %g out of range (0, 1]", o.LearningRate)
	case !(o.L2 >= 0 && o.L2*o.LearningRate < 1):
		return fmt.Errorf("l2 %g out of range [0, 1/learning rate)", o.L2)
	case !(o.Prior > 0 && o.Prior < 1):
		return fmt.Errorf("prior %g out of range (0, 1)", o.Prior)
	case o.MinVerdicts < 0:
		return fmt.Errorf("min verdicts %d is negative", o.MinVerdicts)
	case o.TopFeatures < 0:
		return fmt.Errorf("top features %d is negative", o.TopFeatures)
	}
	return nil
}

// Model estimates the probability that an alert is a false positive with an
// online logistic regression over hashed features of the alert (its labels,
// source, bucketed value, anomaly score, firing time and flaps, a recent
// deploy, time of day, the fingerprint's verdict history), learned from
// operator verdicts. Features that hash to the same weight share it.
//
// The intercept is fixed at the prior's log-odds and not learned: the base
// rate is carried by features such as the source and alertname, so verdicts
// about one kind of alert do not move the estimate for unrelated ones.
//
// A Model is not safe for concurrent use.
type Model struct {
	opts     ModelOptions
	bias     float64
	weights  []float64
	verdicts int
}

// NewModel returns a model without feedback, or an error for invalid options.
func NewModel(opts ModelOptions) (*Model, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("invalid model options: %w", err)
	}
	return &Model{opts: opts, bias: logit(opts.Prior), weights: make([]float64, 1<<opts.Bits)}, nil
}

// Contribution is one feature's share of an estimate: Weight is what it adds
// to the log-odds of a false positive (negative: evidence of a real problem).
type Contribution struct {
	Feature string
	Weight  float64
}

// Verdicts returns how many verdicts the model has learned from.
func (m *Model) Verdicts() int { return m.verdicts }

// Confident reports whether the model has seen MinVerdicts verdicts. Before
// that its estimates should inform, not decide.
func (m *Model) Confident() bool { return m.verdicts >= m.opts.MinVerdicts }

// FalsePositiveProbability returns the probability that a is a false positive
// at now, strictly within (0, 1), and the features that contributed most, by
// the magnitude of their contribution (ties by name).
func (m *Model) FalsePositiveProbability(a Alert, now time.Time) (float64, []Contribution) {
	fs := features(a, now, m.opts.Location)
	z := m.bias
	var top []Contribution
	for _, f := range fs {
		c := m.weights[m.slot(f.name)] * f.x
		z += c
		if c != 0 {
			top = append(top, Contribution{Feature: f.name, Weight: c})
		}
	}
	slices.SortFunc(top, func(a, b Contribution) int {
		if c := cmp.Compare(math.Abs(b.Weight), math.Abs(a.Weight)); c != 0 {
			return c
		}
		return cmp.Compare(a.Feature, b.Feature)
	})
	if len(top) > m.opts.TopFeatures {
		top = top[:m.opts.TopFeatures]
	}
	return sigmoid(z), top
}

// Observe learns from an operator's verdict on a at now: falsePositive true
// when the alert should not have fired.
func (m *Model) Observe(a Alert, now time.Time, falsePositive bool) {
	fs := features(a, now, m.opts.Location)
	z := m.bias
	for _, f := range fs {
		z += m.weights[m.slot(f.name)] * f.x
	}
	y := 0.0
	if falsePositive {
		y = 1
	}
	g := sigmoid(z) - y
	lr := m.opts.LearningRate
	if decay := 1 - lr*m.opts.L2; decay != 1 {
		for i := range m.weights {
			m.weights[i] *= decay
		}
	}
	for _, f := range fs {
		m.weights[m.slot(f.name)] -= lr * g * f.x
	}
	m.verdicts++
}

// slot hashes a feature name (FNV-1a) into a weight index.
func (m *Model) slot(name string) int {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return int(h & uint32(len(m.weights)-1))
}

// maxLogit bounds the log-odds so that the probability stays strictly within
// (0, 1) in float64.
const maxLogit = 30

func sigmoid(z float64) float64 {
	if math.IsNaN(z) {
		z = 0
	}
	z = math.Max(-maxLogit, math.Min(maxLogit, z))
	return 1 / (1 + math.Exp(-z))
}

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

// modelJSON is the persisted form of a Model: its options, the verdict count
// and the non-zero weights by slot.
type modelJSON struct {
	Version      int             `json:"version"`
	Bits         int             `json:"bits"`
	LearningRate float64         `json:"learning_rate"`
	L2           float64         `json:"l2"`
	Prior        float64         `json:"prior"`
	MinVerdicts  int             `json:"min_verdicts"`
	TopFeatures  int             `json:"top_features"`
	Location     string          `json:"location"`
	Verdicts     int             `json:"verdicts"`
	Weights      map[int]float64 `json:"weights"`
}

// MarshalJSON implements json.Marshaler, so that alertd can persist the
// model.
func (m *Model) MarshalJSON() ([]byte, error) {
	w := map[int]float64{}
	for i, v := range m.weights {
		if v != 0 {
			w[i] = v
		}
	}
	return json.Marshal(modelJSON{
		Version: 1, Bits: m.opts.Bits, LearningRate: m.opts.LearningRate, L2: m.opts.L2, Prior: m.opts.Prior,
		MinVerdicts: m.opts.MinVerdicts, TopFeatures: m.opts.TopFeatures, Location: m.opts.Location.String(),
		Verdicts: m.verdicts, Weights: w,
	})
}

// UnmarshalJSON implements json.Unmarshaler; it replaces m entirely.
func (m *Model) UnmarshalJSON(b []byte) error {
	var j modelJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("couldn't decode model: %w", err)
	}
	if j.Version != 1 {
		return fmt.Errorf("unsupported model version %d", j.Version)
	}
	if j.Bits == 0 {
		return errors.New("model has no bits")
	}
	loc, err := time.LoadLocation(j.Location)
	if err != nil {
		return fmt.Errorf("invalid model location %q: %w", j.Location, err)
	}
	n, err := NewModel(ModelOptions{Bits: j.Bits, LearningRate: j.LearningRate, L2: j.L2, Prior: j.Prior,
		MinVerdicts: j.MinVerdicts, TopFeatures: j.TopFeatures, Location: loc})
	if err != nil {
		return err
	}
	if j.Verdicts < 0 {
		return fmt.Errorf("negative verdict count %d", j.Verdicts)
	}
	n.verdicts = j.Verdicts
	for i, v := range j.Weights {
		if i < 0 || i >= len(n.weights) {
			return fmt.Errorf("weight slot %d out of range [0, %d)", i, len(n.weights))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("weight %d is not finite", i)
		}
		n.weights[i] = v
	}
	*m = *n
	return nil
}
