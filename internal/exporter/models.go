package exporter

import (
	"bytes"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/quality"
)

// model holds one model's metric children, resolved once so the hot path only
// touches atomics, and its feature table for the parsers.
type model struct {
	name    string
	version atomic.Pointer[string]

	requests    prometheus.Counter
	predictions prometheus.Counter
	errors      map[string]prometheus.Counter
	inFlight    prometheus.Gauge
	reqSize     prometheus.Observer
	respSize    prometheus.Observer
	duration    prometheus.Observer
	// exemplarAt is when each classic bucket of duration last got an
	// exemplar, in Unix nanoseconds; see exemplarDue.
	exemplarAt [16]atomic.Int64
	dropped    map[string]prometheus.Counter
	parsed     [8]atomic.Pointer[prometheus.Counter] // by payload.Format

	metrics         *collector.Metrics
	tooManyFeatures *warning   // nil logs nothing
	tooManyClasses  *warning   // nil logs nothing
	mu              sync.Mutex // guards features, order, classes, score, predicted and paired
	features        map[string]*feature
	// order caches the features by position in the last record seen:
	// payloads repeat their columns in the same order, so a comparison
	// usually replaces a map lookup.
	order []*feature
	// drift is the model's drift detection, nil without a reference; learn
	// collects its first records while it has none yet.
	drift *driftState
	learn *learner
	// classes count the predictions by class, score observes numeric
	// ones; both made on first need.
	classes map[string]prometheus.Counter
	score   prometheus.Observer
	// scoreBuckets are score's classic buckets (models[].score_buckets),
	// nil for collector.ScoreBuckets.
	scoreBuckets []float64
	confidence   prometheus.Observer
	// confBins count the predictions by confidence bin, one counter per
	// bin of the number models[].calibration_bins gives (made with
	// confidence, and again when a reload changes it).
	confBins []prometheus.Counter
	// predicted are the classes classes may name, paired those
	// modelmon_shadow_class_pairs_total names (setClasses).
	predicted, paired classCap
}

// observeConfidenceLocked observes the probability a classification
// prediction gives its class in modelmon_prediction_class_probability, and
// counts it by confidence bin, of bins equal ones. The caller holds mu.
func (m *model) observeConfidenceLocked(p float64, bins int) {
	if !(p >= 0 && p <= 1) {
		return
	}
	if m.confidence == nil {
		m.confidence = m.metrics.PredictionClassProbability.WithLabelValues(m.name)
	}
	if len(m.confBins) != bins {
		// Every bin at 0 from the start, as the calibration counters'
		// bins they are joined with. Those of another number of bins
		// stay, under their own bins label.
		m.confBins = make([]prometheus.Counter, bins)
		for k := range m.confBins {
			m.confBins[k] = m.metrics.PredictionConfidenceBin.WithLabelValues(m.name, confidenceBinsLabels[bins], confidenceBinLabels[k])
		}
	}
	m.confidence.Observe(p)
	m.confBins[quality.ConfidenceBin(p, bins)].Inc()
}

// maxPredictedClasses caps the classes of modelmon_prediction_class_total
// and of modelmon_shadow_class_pairs_total per model, as the label join
// caps its classes.
const maxPredictedClasses = 50

// classCap is the classes of one model a metric names, at most
// maxPredictedClasses: those of models[].classes first, in their order
// (seed), then those seen first; any other is counted as __other__.
// Replicas given the same list then name the same classes whatever order
// traffic brings them in, as the label join's store does
// (quality.Store.SetClasses), and sum by (class) over the replicas adds a
// class's counts under one name. Its owner guards it.
type classCap struct {
	listed []string            // models[].classes, as last seeded
	order  []string            // the classes named, in order
	named  map[string]struct{} // the same, to look up
	first  int                 // the classes of listed named: order[:first]
}

// admit reports whether class is named, taking it while fewer than
// maxPredictedClasses are. A class itself named __other__ is counted as
// __other__, without taking a place.
func (c *classCap) admit(class string) bool {
	if _, ok := c.named[class]; ok || class == collector.OtherValue {
		return true
	}
	if len(c.order) >= maxPredictedClasses {
		return false
	}
	if c.named == nil {
		c.named = map[string]struct{}{}
	}
	c.order = append(c.order, class)
	c.named[class] = struct{}{}
	return true
}

// seed makes listed (models[].classes) the first classes named, in their
// order; the classes named already follow, in theirs, while fewer than
// maxPredictedClasses are, and the others are __other__ from then on. It
// reports whether listed differs from the classes seeded last, nil before
// the first.
func (c *classCap) seed(listed []string) bool {
	if slices.Equal(c.listed, listed) {
		return false
	}
	seen := c.order
	c.listed, c.order, c.named = listed, nil, nil
	for _, class := range listed {
		c.admit(class)
	}
	c.first = len(c.order)
	for _, class := range seen {
		c.admit(class)
	}
	return true
}

// setClasses seeds the classes modelmon_prediction_class_total and
// modelmon_shadow_class_pairs_total name for the model with classes
// (models[].classes; classCap.seed), as it is made and on every reload. A
// reload that changes them deletes the model's series of both metrics,
// which start again at 0 as its counters by segment and class do
// (labels.applyClasses): a class it moves to __other__ (or out of it)
// leaves no series behind that reads as if still counted, and rate() and
// increase() take the restart for a counter reset. It reports whether it
// deleted any.
//
// The listed classes the model's cap names then have their
// modelmon_prediction_class_total series at 0 before any prediction of
// them, so that rate() and increase() see a class's first one (the
// series a prediction creates is at 1 in its first scrape). Not those of
// modelmon_shadow_class_pairs_total: pairs of classes are N² series.
func (m *model) setClasses(classes []string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.predicted.seed(classes)
	m.paired.seed(classes)
	if !changed {
		return false
	}
	m.classes = nil
	match := prometheus.Labels{"model": m.name}
	deleted := m.metrics.PredictionClass.DeletePartialMatch(match)+m.metrics.Shadow.ClassPairs.DeletePartialMatch(match) > 0
	for _, class := range m.predicted.order[:m.predicted.first] {
		if m.classes == nil {
			m.classes = make(map[string]prometheus.Counter, m.predicted.first)
		}
		m.classes[class] = m.metrics.PredictionClass.WithLabelValues(m.name, class)
	}
	return deleted
}

// countRecordLocked counts what rec predicts, as mc reads it: its class,
// its score or value, and the probability it gives its class. The caller
// holds mu.
func (m *model) countRecordLocked(mc modelConfig, rec *payload.Record) {
	var binary [2]float64
	pv, ok := readPrediction(mc.classes, rec, &binary)
	if !ok {
		return
	}
	x, isX := pv.numeric()
	if isX && !slices.Equal(m.scoreBuckets, mc.scoreBuckets) {
		// The configuration gave the model other buckets.
		m.score, m.scoreBuckets = nil, mc.scoreBuckets
	}
	m.countPredictionLocked(pv.classBytes, pv.class, pv.isClass, x, isX)
	if pv.hasConfidence {
		m.observeConfidenceLocked(pv.confidence, mc.confidenceBins())
	}
}

// countPredictionLocked counts a prediction in
// modelmon_prediction_class_total (its class: classBytes, else class, when
// isClass) or modelmon_prediction_score (number, when isNumber). The caller
// holds mu.
func (m *model) countPredictionLocked(classBytes []byte, class string, isClass bool, number float64, isNumber bool) {
	if isClass {
		var c prometheus.Counter
		var ok bool
		if classBytes != nil {
			c, ok = m.classes[string(classBytes)] // no allocation
		} else {
			c, ok = m.classes[class]
		}
		if !ok {
			c = m.newClassLocked(classBytes, class)
		}
		c.Inc()
	}
	if isNumber && number-number == 0 { // NaN and ±Inf would spoil the sum
		if m.score == nil {
			m.score = m.metrics.PredictionScore.For(m.name, m.scoreBuckets)
		}
		m.score.Observe(number)
	}
}

// newClassLocked returns the counter of a class not counted yet, or of
// __other__ for a class past the model's first maxPredictedClasses
// (predicted).
func (m *model) newClassLocked(classBytes []byte, class string) prometheus.Counter {
	// A copy, so that what the class points to (a record, the
	// configuration) does not escape to the heap with it.
	name := strings.Clone(class)
	if classBytes != nil {
		name = string(classBytes)
	}
	if !m.predicted.admit(name) {
		m.metrics.LabelOverflow.WithLabelValues("class").Inc()
		if m.tooManyClasses != nil {
			m.tooManyClasses.warn(func() []any { return []any{"model", m.name, "class", name, "max_classes", maxPredictedClasses} })
		}
		return m.metrics.PredictionClass.WithLabelValues(m.name, collector.OtherValue)
	}
	if m.classes == nil {
		m.classes = map[string]prometheus.Counter{}
	}
	c := m.metrics.PredictionClass.WithLabelValues(m.name, name)
	m.classes[name] = c
	return c
}

// parsedCounter returns the modelmon_payloads_parsed_total child of format f,
// resolved once.
func (m *model) parsedCounter(f payload.Format) prometheus.Counter {
	if int(f) >= len(m.parsed) {
		return m.metrics.PayloadsParsed.WithLabelValues(m.name, f.String())
	}
	if c := m.parsed[f].Load(); c != nil {
		return *c
	}
	c := m.metrics.PayloadsParsed.WithLabelValues(m.name, f.String())
	m.parsed[f].Store(&c)
	return c
}

// finishReasons are the finish_reason label values of
// modelmon_generations_total: the reasons OpenAI, vLLM and TGI give. Any other
// is "other", so that the label stays bounded; an answer that gives none is
// "unknown".
var finishReasons = [...]string{
	"stop", "length", "tool_calls", "function_call", "content_filter", // OpenAI
	"abort",                      // vLLM
	"eos_token", "stop_sequence", // TGI
}

// countGeneration counts a generative model's answer: why it stopped (the
// prediction of its single record), the tokens it reports and, for a
// streamed answer of two tokens or more, the time per output token after
// the first: (last byte − first byte) / (output tokens − 1), as vLLM
// defines it.
func (m *model) countGeneration(g payload.Generation, recs []payload.Record, t answerTiming) {
	reason := "unknown"
	if len(recs) == 1 && recs[0].Prediction.Kind == payload.KindString {
		reason = "other"
		for _, r := range finishReasons {
			if string(recs[0].Prediction.Str) == r {
				reason = r
				break
			}
		}
	}
	m.metrics.Generations.WithLabelValues(m.name, reason).Inc()
	if g.InputTokens >= 0 {
		m.metrics.GenerationTokens.WithLabelValues(m.name, "input").Add(float64(g.InputTokens))
	}
	if g.OutputTokens >= 0 {
		m.metrics.GenerationTokens.WithLabelValues(m.name, "output").Add(float64(g.OutputTokens))
	}
	if tpot, ok := timePerOutputToken(g, t); ok {
		m.metrics.TimePerOutputToken.WithLabelValues(m.name).Observe(tpot)
	}
}

// timePerOutputToken is the time per output token after the first of a
// streamed generation, in seconds: (last byte − first byte) / (output
// tokens − 1), for one that reports two tokens or more (ok).
func timePerOutputToken(g payload.Generation, t answerTiming) (float64, bool) {
	if g.OutputTokens < 2 || t.firstByte <= 0 || t.elapsed < t.firstByte {
		return 0, false
	}
	return (t.elapsed - t.firstByte).Seconds() / float64(g.OutputTokens-1), true
}

// feature is one input column of a model, as seen in traffic.
type feature struct {
	name    string // the label value
	raw     []byte // the name as it came in traffic
	invalid map[string]prometheus.Counter
	ds      *driftState // the drift state idx refers to
	idx     int         // index in ds's profile, or -1
}

func newModel(name string, m *collector.Metrics) *model {
	md := &model{
		name:        name,
		metrics:     m,
		requests:    m.Requests.WithLabelValues(name),
		predictions: m.Predictions.WithLabelValues(name),
		errors:      map[string]prometheus.Counter{},
		inFlight:    m.InFlight.WithLabelValues(name),
		reqSize:     m.RequestSize.WithLabelValues(name),
		respSize:    m.ResponseSize.WithLabelValues(name),
		duration:    m.Duration.WithLabelValues(name),
		dropped:     map[string]prometheus.Counter{},
		features:    map[string]*feature{},
	}
	for _, r := range collector.ErrorReasons {
		md.errors[r] = m.Errors.WithLabelValues(name, r)
	}
	for _, r := range collector.DropReasons {
		md.dropped[r] = m.CaptureDropped.WithLabelValues(name, r)
	}
	empty := ""
	md.version.Store(&empty)
	return md
}

// exemplarInterval is the shortest time between two exemplars of one bucket
// of a model's latency histogram.
const exemplarInterval = 100 * time.Millisecond

// exemplarDue reports whether a request of d seconds that ended at now should
// give its trace id to the latency histogram as an exemplar. A bucket shows
// only its latest exemplar, and client_golang builds a new one on every call
// (validated labels, a timestamp, a protobuf message: several microseconds
// and a dozen allocations), so under load almost all of that work would be
// replaced before the next scrape. One exemplar per bucket per
// exemplarInterval keeps every bucket's exemplar at most that much older than
// its latest traced request, and the first request into a bucket always
// gets one.
func (m *model) exemplarDue(d float64, now time.Time) bool {
	i := sort.SearchFloat64s(collector.DurationBuckets, d) // the bucket that counts d
	if i >= len(m.exemplarAt) {
		i = len(m.exemplarAt) - 1
	}
	t := now.UnixNano()
	last := m.exemplarAt[i].Load()
	return t-last >= int64(exemplarInterval) && m.exemplarAt[i].CompareAndSwap(last, t)
}

// setVersionNamed sets the version a prediction names: version (by its
// path or message), else hdr (the version header); neither leaves it.
func (m *model) setVersionNamed(version, hdr []byte) {
	if len(version) == 0 {
		version = hdr
	}
	if len(version) > 0 {
		m.setVersion(version)
	}
}

// setVersion records the model version seen last. It allocates only when the
// version changes.
func (m *model) setVersion(v []byte) {
	if len(v) == 0 {
		return
	}
	if cur := m.version.Load(); *cur == string(v) {
		return
	}
	s := labelValue(v)
	m.version.Store(&s)
}

// maxLabelValueLen bounds label values that come from traffic.
const maxLabelValueLen = 128

// labelValue turns traffic bytes into a label value: valid UTF-8 (client_golang
// panics on anything else) and at most maxLabelValueLen bytes.
func labelValue(b []byte) string {
	if len(b) > maxLabelValueLen {
		b = b[:maxLabelValueLen] // a rune cut in half becomes U+FFFD below
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// isLabelValue reports whether labelValue would return b unchanged.
func isLabelValue(b []byte) bool {
	return len(b) <= maxLabelValueLen && utf8.Valid(b)
}

// feature returns the named feature, or the overflow feature once the model
// has max features, unless its drift reference has a feature of that name.
// The caller holds m.mu.
func (m *model) featureLocked(name []byte, max int) *feature {
	if f, ok := m.features[string(name)]; ok {
		return f
	}
	if m.drift != nil {
		if _, ok := m.drift.index[string(name)]; ok {
			// A feature of the reference is counted into its drift window
			// whatever the cap: the profile bounds these names.
			return m.featureNamedLocked(string(name))
		}
	}
	n := labelValue(name)
	if f, ok := m.features[n]; ok {
		return f // a name that was cut or repaired on its way to a label
	}
	if len(m.features) >= max {
		m.metrics.LabelOverflow.WithLabelValues("feature").Inc()
		if m.tooManyFeatures != nil {
			m.tooManyFeatures.warn(func() []any { return []any{"model", m.name, "feature", n, "max_features", max} })
		}
		n = collector.OtherValue
		if f, ok := m.features[n]; ok {
			return f
		}
	}
	f := &feature{name: n, raw: []byte(n), invalid: map[string]prometheus.Counter{}, idx: -1}
	m.features[n] = f
	return f
}

// featureNamedLocked returns the feature named name, counted against no cap:
// it names a column of the model's reference. The caller holds m.mu.
func (m *model) featureNamedLocked(name string) *feature {
	if f, ok := m.features[name]; ok {
		return f
	}
	f := &feature{name: name, raw: []byte(name), invalid: map[string]prometheus.Counter{}, idx: -1}
	m.features[name] = f
	return f
}

// featureAtLocked returns the feature named name at position i of a record,
// through the positional cache. The caller holds m.mu.
func (m *model) featureAtLocked(i int, name []byte, max int) *feature {
	if i < len(m.order) && bytes.Equal(m.order[i].raw, name) {
		return m.order[i]
	}
	f := m.featureLocked(name, max)
	if i < len(m.order) {
		m.order[i] = f
	} else if i == len(m.order) && i < max {
		m.order = append(m.order, f)
	}
	return f
}

func (f *feature) countInvalid(m *model, reason string) {
	c, ok := f.invalid[reason]
	if !ok {
		c = m.metrics.FeatureInvalid.WithLabelValues(m.name, f.name, reason)
		f.invalid[reason] = c
	}
	c.Inc()
}

// models is the table of models seen in traffic. Reads are lock-free: the map
// is replaced, never changed, when a model is added.
type models struct {
	metrics *collector.Metrics
	mu      sync.Mutex
	m       atomic.Pointer[map[string]*model]
	// onNew prepares a model before it is published; nil does nothing.
	onNew func(*model)
	// The label caps reached, logged.
	tooManyModels, tooManyFeatures, tooManyClasses *warning
}

func newModels(m *collector.Metrics, logger *slog.Logger) *models {
	t := &models{
		metrics:         m,
		tooManyModels:   newWarning(logger, "Too many models: requests for new ones are counted under model=\"__other__\"; raise limits.max_models if they are real"),
		tooManyFeatures: newWarning(logger, "Too many features: new ones are counted under feature=\"__other__\"; raise limits.max_features if they are real"),
		tooManyClasses:  newWarning(logger, "Too many predicted classes: new ones are counted under class=\"__other__\""),
	}
	empty := map[string]*model{}
	t.m.Store(&empty)
	return t
}

// get returns the named model, creating it while fewer than max models exist
// and returning the overflow model after that.
func (t *models) get(name []byte, max int) *model {
	if md, ok := (*t.m.Load())[string(name)]; ok {
		return md
	}
	return t.add(string(name), max)
}

func (t *models) add(name string, max int) *model {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.m.Load()
	if md, ok := cur[name]; ok {
		return md
	}
	name = labelValue([]byte(name))
	if md, ok := cur[name]; ok {
		return md
	}
	if len(cur) >= max {
		t.metrics.LabelOverflow.WithLabelValues("model").Inc()
		t.tooManyModels.warn(func() []any { return []any{"model", name, "max_models", max} })
		name = collector.OtherValue
		if md, ok := cur[name]; ok {
			return md
		}
	}
	next := make(map[string]*model, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	md := newModel(name, t.metrics)
	md.tooManyFeatures = t.tooManyFeatures
	md.tooManyClasses = t.tooManyClasses
	if t.onNew != nil {
		t.onNew(md)
	}
	next[name] = md
	t.m.Store(&next)
	return md
}

// has reports whether name, a label value, has its own model, not the
// overflow model's.
func (t *models) has(name string) bool {
	_, ok := (*t.m.Load())[name]
	return ok && name != collector.OtherValue
}

// all returns every model.
func (t *models) all() []*model {
	cur := *t.m.Load()
	out := make([]*model, 0, len(cur))
	for _, md := range cur {
		out = append(out, md)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// list returns every model with its current version, sorted by name.
func (t *models) list() []collector.ModelInfo {
	cur := *t.m.Load()
	out := make([]collector.ModelInfo, 0, len(cur))
	for _, md := range cur {
		out = append(out, collector.ModelInfo{Name: md.name, Version: *md.version.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
