package exporter

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/predclass"
	"github.com/modelmon/modelmon/internal/quality"
	"github.com/modelmon/modelmon/internal/statefile"
)

// LabelsOptions configure the join of ground-truth labels to predictions.
type LabelsOptions struct {
	// Enabled gives every captured prediction an id and accepts labels on
	// POST /v1/labels.
	Enabled bool
	// IDHeader is the request header carrying the prediction's id; a request
	// without one gets a generated id, returned in the same response header.
	IDHeader string
	// MaxPending and TTL bound the predictions waiting for their label.
	MaxPending int
	TTL        time.Duration
}

// labels is the sidecar's side of the label join: the store, the metrics of
// its outcomes, and the ids of requests.
type labels struct {
	store   *quality.Store
	header  []byte // lower case
	prefix  string // random per process, so generated ids don't repeat across restarts
	seq     atomic.Uint64
	path    string // snapshot file, or ""
	logger  *slog.Logger
	metrics *labelMetrics
	// The class cap reached, logged.
	tooManyClasses       *warning
	maxClasses           int
	tooManySegmentValues *warning
	// More classes than models[].segment_classes, logged.
	tooManySegmentClasses *warning
	// peers are the other replicas asked about labels this one does not
	// know.
	peers *peers
	// ttl is how long a prediction waits for its label.
	ttl time.Duration
	// onOutcome, when set, also gets each label joined (the shadow's
	// comparison against labels).
	onOutcome func(quality.Outcome)
	// config is the running configuration: the models' calibration bins
	// and label offsets.
	config func() *runtimeConfig
	// hasSlot reports whether a model has its own slot in the model
	// table, below limits.max_models, and so series under its own name;
	// one without has its predictions counted under __other__.
	hasSlot func(model string) bool
	// offsetsSet are the models applyOffset gave their offset under the
	// configuration offsetsOf.
	offsetMu   sync.Mutex
	offsetsOf  *runtimeConfig
	offsetsSet map[string]struct{}
}

// modelOf returns lb with the model it names as its predictions are
// stored: under the model's label value, cut and repaired as traffic's
// are. The store checks it when the label is joined, so a label held for
// its prediction is checked against the model the prediction came under,
// and not against __other__ (quality.Options.OverflowModel): a model that
// was past limits.max_models when the label came, or got there while it
// waited, may be named as itself, here or at a peer the label is sent to.
func (l *labels) modelOf(lb quality.Label) quality.Label {
	if lb.Model != "" {
		lb.Model = labelValue([]byte(lb.Model))
	}
	return lb
}

type labelMetrics struct {
	outcomes     *prometheus.CounterVec
	probOutcomes *prometheus.CounterVec
	brier        *prometheus.CounterVec
	logLoss      *prometheus.CounterVec
	// Calibration, by number of confidence bins and bin
	// (quality.ConfidenceBin).
	confOutcomes *prometheus.CounterVec
	confCorrect  *prometheus.CounterVec
	confSum      *prometheus.CounterVec
	correct      *prometheus.CounterVec
	matched      *prometheus.CounterVec
	regOutcomes  *prometheus.CounterVec // the numeric pairs of matched
	absErr       *prometheus.CounterVec
	sqErr        *prometheus.CounterVec
	// errMagnitude observes each absolute error, for the regression SLO
	// and quantiles: native always, classic buckets by model
	// (models[].error_buckets).
	errMagnitude *collector.ModelHistograms
	// The labels' offset, and the sums of their deviations from it and
	// of their squares, for R² (quality.Store.SetOffset).
	offset   *prometheus.GaugeVec
	devSum   *prometheus.CounterVec
	devSqSum *prometheus.CounterVec
	// By segment (models[].segments).
	segMatched *prometheus.CounterVec
	segRegOut  *prometheus.CounterVec // the numeric pairs of segMatched
	segCorrect *prometheus.CounterVec
	segAbsErr  *prometheus.CounterVec
	segSqErr   *prometheus.CounterVec
	// segErrMagnitude is errMagnitude by segment value, with the same
	// buckets: native alone unless models[].error_buckets.
	segErrMagnitude *collector.ModelHistograms
	// By segment and class (models[].segment_classes): predicted,
	// labelled, and right.
	segClassPredicted *prometheus.CounterVec
	segClassLabelled  *prometheus.CounterVec
	segClassCorrect   *prometheus.CounterVec
	delay             *prometheus.HistogramVec
	rejected          *prometheus.CounterVec
	overflow          *prometheus.CounterVec
}

func newLabels(o LabelsOptions, storagePath string, now time.Time, reg prometheus.Registerer, overflow *prometheus.CounterVec, logger *slog.Logger) (*labels, error) {
	opts := quality.DefaultOptions()
	opts.OverflowModel = collector.OtherValue
	if o.MaxPending > 0 {
		opts.MaxEntries = o.MaxPending
	}
	if o.TTL > 0 {
		opts.TTL = o.TTL
	}
	if o.IDHeader == "" {
		o.IDHeader = "X-Request-Id"
	}
	var prefix [6]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		return nil, err
	}
	l := &labels{header: []byte(strings.ToLower(o.IDHeader)), prefix: hex.EncodeToString(prefix[:]), logger: logger, ttl: opts.TTL}
	if storagePath != "" {
		l.path = filepath.Join(storagePath, "labels.snapshot")
	}
	store, err := l.restore(opts, now)
	if err != nil {
		return nil, err
	}
	l.store = store
	f := promauto.With(reg)
	l.metrics = &labelMetrics{
		outcomes: f.NewCounterVec(prometheus.CounterOpts{Name: collector.PredictionOutcomeTotal,
			Help: "The total number of classification predictions joined to their label, by predicted and actual class."}, []string{"model", "predicted", "actual"}),
		probOutcomes: f.NewCounterVec(prometheus.CounterOpts{Name: collector.ProbabilityOutcomesTotal,
			Help: "The total number of classification predictions with class probabilities joined to their label."}, []string{"model"}),
		brier: f.NewCounterVec(prometheus.CounterOpts{Name: collector.BrierScoreTotal,
			Help: "The sum of the Brier scores (sum over classes of the squared probability error) of predictions with class probabilities."}, []string{"model"}),
		logLoss: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LogLossTotal,
			Help: "The sum of the log losses (minus the log of the probability of the actual class) of predictions with class probabilities."}, []string{"model"}),
		confOutcomes: f.NewCounterVec(prometheus.CounterOpts{Name: collector.ConfidenceOutcomesTotal,
			Help: "The total number of classification predictions joined to their label that gave their predicted class a probability (its confidence), by confidence bin: of bins equal bins (models[].calibration_bins, 10 by default), bin k holds (k/bins, (k+1)/bins]."}, []string{"model", "bins", "bin"}),
		confCorrect: f.NewCounterVec(prometheus.CounterOpts{Name: collector.ConfidenceCorrectTotal,
			Help: "The total number of those predictions whose label matched the predicted class, by confidence bin."}, []string{"model", "bins", "bin"}),
		confSum: f.NewCounterVec(prometheus.CounterOpts{Name: collector.ConfidenceTotal,
			Help: "The sum of the confidences of those predictions, by confidence bin: with the two counters before, the expected calibration error and the reliability diagram."}, []string{"model", "bins", "bin"}),
		correct: f.NewCounterVec(prometheus.CounterOpts{Name: collector.PredictionCorrectTotal,
			Help: "The total number of classification predictions whose label matched the predicted class, by class: the diagonal of the confusion matrix, which PromQL cannot take from the outcome counter."}, []string{"model", "class"}),
		matched: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LabelsMatchedTotal,
			Help: "The total number of labels joined to their prediction."}, []string{"model"}),
		regOutcomes: f.NewCounterVec(prometheus.CounterOpts{Name: collector.RegressionOutcomesTotal,
			Help: "The total number of regression predictions joined to their label, a number to a number: the count the error and deviation sums are over, which a model that also predicts classes has fewer of than labels joined."}, []string{"model"}),
		absErr: f.NewCounterVec(prometheus.CounterOpts{Name: collector.AbsoluteErrorTotal,
			Help: "The sum of the absolute errors of regression predictions joined to their label."}, []string{"model"}),
		sqErr: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SquaredErrorTotal,
			Help: "The sum of the squared errors of regression predictions joined to their label."}, []string{"model"}),
		errMagnitude: collector.NewModelHistograms(reg, prometheus.HistogramOpts{Name: collector.PredictionErrorMagnitude,
			Help:                        "The absolute errors |prediction - label| of regression predictions joined to their label, in the model's units: a native histogram (any scale), with classic buckets only for models that set models[].error_buckets. Its sum is " + collector.AbsoluteErrorTotal + ".",
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour,
		}),
		offset: f.NewGaugeVec(prometheus.GaugeOpts{Name: collector.LabelValueOffset,
			Help: "The offset c of the labels joined to regression predictions (models[].label_offset, else the mean prediction of the drift reference, else the first label joined): the value the deviation counters sum them from. It is fixed for the life of the process."}, []string{"model"}),
		devSum: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LabelDeviationTotal,
			Help: "The sum of the magnitudes of the deviations y - c of the labels joined to regression predictions from their offset, by sign (positive, negative: their sum is the first minus the second); with their squares, the labels' mean and the variance R² compares the squared errors to."}, []string{"model", "sign"}),
		devSqSum: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LabelDeviationSquared,
			Help: "The sum of the squares of the deviations y - c of the labels joined to regression predictions from their offset."}, []string{"model"}),
		segMatched: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentLabelsMatched,
			Help: "The total number of labels joined to their prediction, by segment (a feature of models[].segments) and its value."}, segmentLabels),
		segRegOut: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentRegOutcomes,
			Help: "The total number of regression predictions joined to their label, a number to a number, by segment and its value: the count the segment's error sums are over, which a model that also predicts classes has fewer of than labels joined."}, segmentLabels),
		segCorrect: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentCorrectTotal,
			Help: "The total number of classification predictions whose label matched the predicted class, by segment and its value."}, segmentLabels),
		segAbsErr: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentAbsoluteError,
			Help: "The sum of the absolute errors of regression predictions joined to their label, by segment and its value."}, segmentLabels),
		segSqErr: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentSquaredError,
			Help: "The sum of the squared errors of regression predictions joined to their label, by segment and its value."}, segmentLabels),
		segErrMagnitude: collector.NewModelHistograms(reg, prometheus.HistogramOpts{Name: collector.SegmentErrorMagnitude,
			Help:                        "The absolute errors |prediction - label| of regression predictions joined to their label, in the model's units, by segment and its value: a native histogram (any scale), with classic buckets only for models that set models[].error_buckets. Its sum is " + collector.SegmentAbsoluteError + ".",
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour,
		}, "segment", "segment_value"),
		segClassPredicted: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentClassPredictions,
			Help: "The total number of classification predictions joined to their label, by segment, its value and predicted class (models[].segment_classes: the model's first classes, then __other__)."}, segmentClassLabels),
		segClassLabelled: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentClassLabels,
			Help: "The total number of labels joined to a classification prediction, by segment, its value and actual class (models[].segment_classes)."}, segmentClassLabels),
		segClassCorrect: f.NewCounterVec(prometheus.CounterOpts{Name: collector.SegmentClassCorrect,
			Help: "The total number of classification predictions whose label matched the predicted class, by segment, its value and class (models[].segment_classes): with the two counters before, precision, recall and F1 per class and segment value."}, segmentClassLabels),
		delay: f.NewHistogramVec(prometheus.HistogramOpts{Name: collector.LabelDelay,
			Help:                        "The time from a prediction to its label, in seconds.",
			Buckets:                     []float64{1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400},
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour,
		}, []string{"model"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Name: collector.LabelsRejectedTotal,
			Help: "The total number of label records POST /v1/labels rejected as malformed, by reason."}, []string{"reason"}),
		overflow: overflow,
	}
	for _, r := range []string{rejectInvalidJSON, rejectUnknownField, rejectMissingID, rejectInvalidLabel, rejectInvalidTimestamp} {
		l.metrics.rejected.WithLabelValues(r)
	}
	overflow.WithLabelValues("class")
	l.peers = newPeers(l.prefix, reg, logger)
	l.tooManyClasses = newWarning(logger, "Too many classes: new ones are counted as class \"__other__\" in the quality metrics")
	l.tooManySegmentValues = newWarning(logger, "Too many values of a segment: new ones are counted as \"__other__\" in the segment quality metrics")
	l.tooManySegmentClasses = newWarning(logger, "More classes than models[].segment_classes: the others are counted as class \"__other__\" in the metrics by segment and class")
	l.maxClasses = opts.MaxClasses
	reg.MustRegister(&labelStats{store: store})
	return l, nil
}

// labelOffset returns the offset rc gives a model's regression labels
// (quality.Store.SetOffset), and where it comes from: models[].label_offset,
// else the mean of the prediction of the model's drift reference
// (models[].drift, else --drift.reference) when it is numeric. Both are
// the same for every replica and every start, and the second is near the
// labels' mean, as a regression's predictions are. A learned reference is
// not one: each replica learns its own.
func labelOffset(rc *runtimeConfig, model string) (c float64, from string, ok bool) {
	if c := rc.models[model].labelOffset; c != nil {
		return *c, "label_offset", true
	}
	if ref, _ := rc.driftReference(model); ref != nil {
		for _, f := range ref.profile.Features {
			if f.Prediction && f.Numeric != nil && f.Count > 0 {
				return f.Numeric.Mean, "drift_reference", true
			}
		}
	}
	return 0, "", false
}

// applyOffset gives the store the offset the running configuration gives
// model's labels (labelOffset), once per model and configuration, before
// its regression predictions are observed. A model whose labels this
// process already sums from another keeps it until the sidecar restarts:
// every sum of one process is of one offset, or the rules could not take
// the labels' mean and variance from them.
func (l *labels) applyOffset(model string) {
	rc := l.config()
	// Held while the store takes it, so that no other worker observes
	// the model's predictions before.
	l.offsetMu.Lock()
	defer l.offsetMu.Unlock()
	if l.offsetsOf != rc {
		l.offsetsOf, l.offsetsSet = rc, map[string]struct{}{}
	}
	if _, done := l.offsetsSet[model]; done {
		return
	}
	l.offsetsSet[model] = struct{}{}
	if c, from, ok := labelOffset(rc, model); ok && !l.store.SetOffset(model, c) {
		l.logger.Info("Label offset kept until the next start: the model's labels are summed from another already", "model", model, "from", from, "offset", c)
	}
}

// applyClasses makes each model's classes (models[].classes) the first of
// its classes in the store, in their order (quality.Store.SetClasses): the
// classes it counts by name by segment value (models[].segment_classes),
// and those it keeps below the cap of classes, are then the same on every
// replica, whatever order each sees them in. A model without them keeps
// the order the store first saw its classes in. prev is the configuration
// rc replaces, nil at start.
//
// A reload that changes a model's classes or segment_classes starts its
// counters by segment and class again at 0, as one that changes its
// error_buckets starts its histograms: a class the reload moves to
// __other__ (or out of it) then leaves no series behind that reads as if
// still counted, and the rules' rate() and increase() take the restart as
// a counter reset.
//
// The listed classes the store keeps (its first MaxClasses) have their
// modelmon_prediction_correct_total series at 0 from then on, before any
// label of them, so that increase() sees a class's first right
// prediction: a series a label creates reads 1 already when it is right.
// The precision, recall and F1 rules divide them by the outcome counter,
// which a class without labels has no series of, so a listed class
// never labelled still reads nothing there, not 0. Only those of a model
// with its own slot in the model table (hasSlot): one past
// limits.max_models has its predictions, and their labels, counted under
// __other__, and series under its own name would read 0 for ever. It gets
// them when a later reload or a restart gives it a slot, so the caller
// registers the configured models first.
func (l *labels) applyClasses(rc, prev *runtimeConfig) {
	maxClasses := l.store.Options().MaxClasses
	for _, name := range slices.Sorted(maps.Keys(rc.models)) {
		mc := rc.models[name]
		model := labelValue([]byte(name))
		if len(mc.classes) > 0 && l.store.SetClasses(model, mc.classes) {
			l.logger.Debug("Classes put first, in the order of models[].classes", "model", model, "classes", len(mc.classes))
		}
		// The classes SetClasses puts first: config.Load refuses an
		// empty class and one given twice. None for a model without a
		// slot of its own.
		listed := mc.classes
		if !l.hasSlot(model) {
			listed = nil
		}
		kept := 0
		for _, class := range listed {
			if kept == maxClasses {
				break
			}
			if class != quality.OtherClass {
				l.metrics.correct.WithLabelValues(model, class)
				kept++
			}
		}
		if prev == nil {
			continue
		}
		if pc, ok := prev.models[name]; ok && slices.Equal(pc.classes, mc.classes) && pc.segmentClasses == mc.segmentClasses {
			continue
		}
		m, match := l.metrics, prometheus.Labels{"model": model}
		if m.segClassPredicted.DeletePartialMatch(match)+m.segClassLabelled.DeletePartialMatch(match)+m.segClassCorrect.DeletePartialMatch(match) > 0 {
			l.logger.Info("Counters by segment and class started again: the model's classes or segment_classes changed", "model", model)
		}
	}
}

// restore loads the snapshot left by the last run, if any, as at now.
func (l *labels) restore(opts quality.Options, now time.Time) (*quality.Store, error) {
	if l.path == "" {
		return quality.New(opts)
	}
	f, err := os.Open(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return quality.New(opts)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := quality.RestoreWith(f, now, opts)
	if err != nil {
		return nil, fmt.Errorf("couldn't restore pending predictions from %s: %w", l.path, err)
	}
	l.logger.Info("Restored pending predictions", "file", l.path, "pending", s.Len())
	return s, nil
}

// save writes the pending predictions for the next run, atomically.
func (l *labels) save() error {
	if l.path == "" {
		return nil
	}
	return statefile.WriteFile(l.path, l.store.Snapshot)
}

// newID returns a generated prediction id.
func (l *labels) newID() []byte {
	return strconv.AppendUint([]byte(l.prefix+"-"), l.seq.Add(1), 36)
}

// observe records the pending predictions of one payload (readPrediction
// says what each predicts): instance i of a batch of n > 1 gets the id
// "<id>/<i>". A named class with its own probability alone ({"label": …,
// "score": …}) carries that as its confidence, for calibration. The values
// of the model's segments (models[].segments) go with it.
func (l *labels) observe(now time.Time, model string, id []byte, mc modelConfig, recs []payload.Record) {
	l.observeAt(now, now, model, id, mc, recs)
}

// observeAt is observe for predictions made at, not now: a pushed
// observation's timestamp, from which its label's delay and its TTL run.
func (l *labels) observeAt(now, at time.Time, model string, id []byte, mc modelConfig, recs []payload.Record) {
	var binary [2]float64
	for i := range recs {
		pv, ok := readPrediction(mc.classes, &recs[i], &binary)
		if !ok {
			continue // nothing to join a label to
		}
		p := quality.Prediction{Model: model, Time: at, Segments: segmentsOf(mc.segments, recs[i].Features),
			Probabilities: pv.probs, Classes: pv.classes}
		if pv.isNumber {
			p.Value = quality.Number(pv.number)
			l.applyOffset(model)
		} else {
			p.Value = quality.Class(pv.className())
			if p.Probabilities == nil && recs[i].HasConfidence {
				p.Confidence, p.HasConfidence = recs[i].Confidence, true
			}
		}
		p.ID = string(id)
		if len(recs) > 1 {
			p.ID += "/" + strconv.Itoa(i)
		}
		if o, r := l.store.Observe(now, p); r == quality.ReasonMatched {
			l.record(o)
		}
	}
}

// predictionView is what a record predicts: a class, with the
// probabilities of the classes when it gives them, or a number.
type predictionView struct {
	// classBytes is a class the record names; class one derived from
	// its probabilities, or true or false.
	classBytes []byte
	class      string
	isClass    bool
	// number is a regression's value.
	number   float64
	isNumber bool
	// score is a binary classifier's score: its second class's probability.
	score    float64
	hasScore bool
	// probs are the probabilities of classes.
	probs   []float64
	classes []string
	// confidence is the probability the prediction gives its class.
	confidence    float64
	hasConfidence bool
}

// numeric returns the number a prediction gives: a binary classifier's
// score, else a regression's value; ok is false when it gives neither.
func (pv *predictionView) numeric() (x float64, ok bool) {
	if pv.hasScore {
		return pv.score, true
	}
	return pv.number, pv.isNumber
}

// className returns the predicted class.
func (pv *predictionView) className() string {
	if pv.classBytes != nil {
		return string(pv.classBytes)
	}
	return pv.class
}

// readPrediction reads what r predicts, for the label join and the
// prediction metrics. A prediction that is a vector of as many
// probabilities as classes has (models[].classes) carries them, and
// predicts the class predclass.Of gives it (the most probable, the first
// of equals; none for a vector holding a NaN) unless it names one itself. Scores the
// answer names (namedScores) are taken by name instead. With two classes, a
// prediction that is one probability is the second class's (a binary
// classifier's score, scikit-learn's predict_proba[:, 1]); binary holds its
// probabilities. ok is false for a record that predicts nothing. Nothing is
// allocated but what namedScores needs.
func readPrediction(classes []string, r *payload.Record, binary *[2]float64) (pv predictionView, ok bool) {
	sc, cls := r.Scores, classes
	if pos, ok := binaryScore(classes, *r); ok {
		*binary = [2]float64{1 - pos, pos}
		sc = binary[:] // the store keeps a copy
		pv.score, pv.hasScore = pos, true
	}
	if names := r.ScoreLabels; len(names) > 0 {
		sc, cls = namedScores(classes, sc, names)
	}
	if len(cls) > 0 && len(sc) == len(cls) {
		// A vector holding a NaN predicts no class (predclass.Of), but
		// keeps its probabilities, which the store refuses.
		pv.probs, pv.classes = sc, cls
		pv.class, pv.isClass = predclass.Of(cls, sc)
	}
	switch v := r.Prediction; v.Kind {
	case payload.KindNumber:
		if pv.probs == nil { // with probabilities, the number is not a regression
			pv.number, pv.isNumber = v.Num, true
		}
	case payload.KindString:
		pv.classBytes, pv.isClass = v.Str, true
		if !isLabelValue(v.Str) {
			// The class is a label value: one that is not valid UTF-8
			// would make client_golang panic, and a long one grow every
			// scrape.
			pv.class, pv.classBytes = labelValue(v.Str), nil
		}
	case payload.KindBool:
		pv.class, pv.isClass = strconv.FormatBool(v.Num != 0), true
	default:
		if pv.probs == nil {
			return pv, false
		}
	}
	switch {
	case pv.probs != nil && pv.isClass:
		// The probability it gives the class it predicts.
		for k, c := range pv.classes {
			if (pv.classBytes != nil && string(pv.classBytes) == c) || (pv.classBytes == nil && pv.class == c) {
				pv.confidence, pv.hasConfidence = pv.probs[k], true
				break
			}
		}
	case pv.isClass && r.HasConfidence:
		pv.confidence, pv.hasConfidence = r.Confidence, true
	}
	return pv, true
}

// segmentValueMissing is a segment's value when the record lacks its
// feature or gives it no value.
const segmentValueMissing = "__missing__"

// segmentsOf returns the segments of a record with features: each named
// feature's value, as text (a CSV cell's as written), or the range of its
// buckets.
func segmentsOf(segs []config.Segment, features []payload.Feature) []quality.Segment {
	if len(segs) == 0 {
		return nil
	}
	out := make([]quality.Segment, len(segs))
	for k, sg := range segs {
		out[k] = quality.Segment{Name: sg.Feature, Value: segmentValueMissing}
		for _, f := range features {
			if string(f.Name) != sg.Feature {
				continue
			}
			if len(sg.Buckets) > 0 {
				out[k].Value = bucketOf(sg.Buckets, f.Value)
				break
			}
			switch v := f.Value; v.Kind {
			case payload.KindString:
				if len(v.Str) > 0 {
					out[k].Value = labelValue(v.Str)
				}
			case payload.KindBool:
				out[k].Value = strconv.FormatBool(v.Num != 0)
			case payload.KindNumber:
				if v.Str != nil {
					// A number read from text without types (a CSV
					// cell) is that text: a segment value is a label
					// value, "007" and not 7, as a JSON string is.
					out[k].Value = labelValue(v.Str)
					break
				}
				out[k].Value = strconv.FormatFloat(v.Num, 'g', -1, 64)
			}
			break
		}
	}
	return out
}

// bucketOf is the range of buckets (upper bounds, increasing) a value falls
// in: "(-inf,b0]", "(b0,b1]", …, "(bn,+inf)"; segmentValueMissing for a
// value that is not a number (a string that does not read as one, NaN).
func bucketOf(buckets []float64, v payload.Value) string {
	x := v.Num
	switch v.Kind {
	case payload.KindNumber:
	case payload.KindString:
		var err error
		if x, err = strconv.ParseFloat(string(v.Str), 64); err != nil {
			return segmentValueMissing
		}
	default:
		return segmentValueMissing
	}
	if math.IsNaN(x) {
		return segmentValueMissing
	}
	i, _ := slices.BinarySearch(buckets, x) // the first bound ≥ x
	lower, upper := "-inf", "+inf)"
	if i > 0 {
		lower = strconv.FormatFloat(buckets[i-1], 'g', -1, 64)
	}
	if i < len(buckets) {
		upper = strconv.FormatFloat(buckets[i], 'g', -1, 64) + "]"
	}
	return "(" + lower + "," + upper
}

// namedScores orders scores whose classes the answer names (TF-Serving
// classify's pairs, Hugging Face's lists sorted by score) by class: in the
// order of classes (models[].classes) when it names exactly those, by name
// when classes is empty. Scores that name other classes, or one twice,
// give none.
func namedScores(classes []string, scores []float64, names [][]byte) ([]float64, []string) {
	if len(names) != len(scores) || (len(classes) > 0 && len(classes) != len(names)) {
		return nil, nil
	}
	if len(classes) == 0 {
		// The answer's names are the classes, label values.
		classes = make([]string, len(names))
		for k, n := range names {
			classes[k] = labelValue(n)
		}
		slices.Sort(classes)
	}
	out := make([]float64, len(classes))
	for k, c := range classes {
		j := slices.IndexFunc(names, func(n []byte) bool {
			if isLabelValue(n) {
				return string(n) == c
			}
			return labelValue(n) == c
		})
		if j < 0 || (k > 0 && c == classes[k-1]) {
			return nil, nil
		}
		out[k] = scores[j]
	}
	return out, classes
}

// segmentLabels are the labels of the per-segment quality metrics, and
// segmentClassLabels those of the metrics by segment and class.
var (
	segmentLabels      = []string{"model", "segment", "segment_value"}
	segmentClassLabels = []string{"model", "segment", "segment_value", "class"}
)

// recordSegments counts a joined label by each of its prediction's
// segments, and a classifier's by segment and class too when the model
// counts its classes by segment (models[].segment_classes).
func (l *labels) recordSegments(o quality.Outcome) {
	m := l.metrics
	if o.SegmentOverflow {
		m.overflow.WithLabelValues("segment").Inc()
		l.tooManySegmentValues.warn(func() []any { return []any{"model", o.Model, "max_segment_values", l.store.Options().MaxSegmentValues} })
	}
	if len(o.Segments) > 0 && !o.Regression {
		if n := l.config().models[o.Model].segmentClasses; n > 0 {
			l.recordSegmentClasses(o, n)
		}
	}
	// The model's error buckets, once for all its segments.
	var errorBuckets []float64
	if o.Regression && len(o.Segments) > 0 {
		errorBuckets = l.config().models[o.Model].errorBuckets
	}
	for _, sg := range o.Segments {
		m.segMatched.WithLabelValues(o.Model, sg.Name, sg.Value).Inc()
		// Created at 0 with segMatched, as regOutcomes is in record.
		regOutcomes := m.segRegOut.WithLabelValues(o.Model, sg.Name, sg.Value)
		if o.Regression {
			regOutcomes.Inc()
			m.segAbsErr.WithLabelValues(o.Model, sg.Name, sg.Value).Add(o.AbsError)
			m.segSqErr.WithLabelValues(o.Model, sg.Name, sg.Value).Add(o.SquaredError)
			m.segErrMagnitude.For(o.Model, errorBuckets, sg.Name, sg.Value).Observe(o.AbsError)
			continue
		}
		// Created at 0 on a miss too, so that accuracy is a ratio of the two.
		correct := m.segCorrect.WithLabelValues(o.Model, sg.Name, sg.Value)
		if o.Correct {
			correct.Inc()
		}
	}
}

// recordSegmentClasses counts a classifier's joined label by each of its
// segments and its predicted and actual class, the model's first n classes
// by name and the others as __other__ (overflow "segment_class"). The
// first n are the store's first (quality.Outcome.PredictedIndex): those
// of models[].classes, in order (applyClasses), then those it saw first.
// Its snapshot keeps the order: the same ones after a restart.
func (l *labels) recordSegmentClasses(o quality.Outcome, n int) {
	m := l.metrics
	predicted, actual := o.Predicted, o.Actual
	pOver, aOver := o.PredictedIndex >= n, o.ActualIndex >= n
	if pOver {
		predicted = quality.OtherClass
	}
	if aOver {
		actual = quality.OtherClass
	}
	if pOver || aOver {
		m.overflow.WithLabelValues("segment_class").Inc()
		l.tooManySegmentClasses.warn(func() []any { return []any{"model", o.Model, "segment_classes", n} })
	}
	// A class named apart is right when it is both the predicted and the
	// actual class; __other__ stands for several classes and never is,
	// as in modelmon_prediction_correct_total. (A class past the model's
	// cap, quality.Options.MaxClasses, is past n too.)
	right := o.Correct && !pOver && !aOver
	for _, sg := range o.Segments {
		// All three counters of both classes are created, at 0 on a
		// miss: the rules divide the right ones by the predicted
		// (precision) and labelled (recall) ones and by their sum (F1),
		// so a class never right there must read 0, not nothing.
		predP := m.segClassPredicted.WithLabelValues(o.Model, sg.Name, sg.Value, predicted)
		m.segClassLabelled.WithLabelValues(o.Model, sg.Name, sg.Value, predicted)
		m.segClassPredicted.WithLabelValues(o.Model, sg.Name, sg.Value, actual)
		labA := m.segClassLabelled.WithLabelValues(o.Model, sg.Name, sg.Value, actual)
		predP.Inc()
		labA.Inc()
		if !pOver {
			m.segClassCorrect.WithLabelValues(o.Model, sg.Name, sg.Value, predicted)
		}
		if !aOver {
			correct := m.segClassCorrect.WithLabelValues(o.Model, sg.Name, sg.Value, actual)
			if right {
				correct.Inc()
			}
		}
	}
}

// confidenceBinLabels are the bin label values of the calibration
// counters, and confidenceBinsLabels those of their bins label (the
// number of bins, models[].calibration_bins), by number.
var confidenceBinLabels, confidenceBinsLabels = func() (b, n [config.MaxCalibrationBins + 1]string) {
	for k := range b {
		b[k] = strconv.Itoa(k)
		n[k] = b[k]
	}
	return b, n
}()

// binaryScore returns the probability of the second of two classes that
// r's prediction is: one number in [0, 1], alone or a vector of one. A
// score beside a named class ({"label": …, "score": …}) is often that
// class's own probability, not the second class's: it is not one.
func binaryScore(classes []string, r payload.Record) (float64, bool) {
	var x float64
	switch {
	case len(classes) != 2:
		return 0, false
	case r.Prediction.Kind == payload.KindNumber && len(r.Scores) == 0:
		x = r.Prediction.Num
	case len(r.Scores) == 1 && r.Prediction.Kind != payload.KindString && r.Prediction.Kind != payload.KindBool:
		x = r.Scores[0]
	default:
		return 0, false
	}
	return x, x >= 0 && x <= 1 // NaN is neither
}

// record turns a joined label into metrics.
func (l *labels) record(o quality.Outcome) {
	if l.onOutcome != nil {
		l.onOutcome(o)
	}
	m := l.metrics
	m.matched.WithLabelValues(o.Model).Inc()
	// Created at 0 with matched, for a class too: the quality rules take
	// matched as the numeric pairs of a replica without this counter (a
	// sidecar from before it, during a rolling upgrade), so a sidecar
	// that has it must show it wherever it shows matched.
	regOutcomes := m.regOutcomes.WithLabelValues(o.Model)
	m.delay.WithLabelValues(o.Model).Observe(o.Delay.Seconds())
	l.recordSegments(o)
	if o.Regression {
		regOutcomes.Inc()
		m.absErr.WithLabelValues(o.Model).Add(o.AbsError)
		m.sqErr.WithLabelValues(o.Model).Add(o.SquaredError)
		m.errMagnitude.For(o.Model, l.config().models[o.Model].errorBuckets).Observe(o.AbsError)
		// The labels are summed less their offset, which is near their
		// mean: Σy² − (Σy)²/n loses every digit of their variance when
		// the mean is far larger than their spread (timestamps, prices),
		// Σ(y − c)² − (Σ(y − c))²/n only what c is off by. Counters only
		// go up: negative deviations are summed apart.
		m.offset.WithLabelValues(o.Model).Set(o.Offset)
		d := o.ActualValue - o.Offset
		pos, neg := m.devSum.WithLabelValues(o.Model, "positive"), m.devSum.WithLabelValues(o.Model, "negative")
		if d >= 0 {
			pos.Add(d)
		} else {
			neg.Add(-d)
		}
		m.devSqSum.WithLabelValues(o.Model).Add(d * d)
		return
	}
	if o.PredictedOverflow || o.ActualOverflow {
		m.overflow.WithLabelValues("class").Inc()
		l.tooManyClasses.warn(func() []any { return []any{"model", o.Model, "max_classes", l.maxClasses} })
	}
	m.outcomes.WithLabelValues(o.Model, o.Predicted, o.Actual).Inc()
	if o.HasProbabilities {
		m.probOutcomes.WithLabelValues(o.Model).Inc()
		m.brier.WithLabelValues(o.Model).Add(o.Brier)
		m.logLoss.WithLabelValues(o.Model).Add(o.LogLoss)
	}
	if o.HasConfidence {
		// In the model's bins when the label joins: a series says which
		// bins it counts in, so that a reload that changes them, or
		// replicas that differ, don't mix two bins of one name.
		n := l.config().models[o.Model].confidenceBins()
		bins, bin := confidenceBinsLabels[n], confidenceBinLabels[quality.ConfidenceBin(o.Confidence, n)]
		m.confOutcomes.WithLabelValues(o.Model, bins, bin).Inc()
		m.confSum.WithLabelValues(o.Model, bins, bin).Add(o.Confidence)
		// Created at 0 on a miss too: the calibration error subtracts
		// it from the confidence sum bin by bin.
		correct := m.confCorrect.WithLabelValues(o.Model, bins, bin)
		if o.Correct {
			correct.Inc()
		}
	}
	// Both classes' series are created at 0 on a miss too: the quality rules
	// divide them by the counts of the predicted (precision) and actual
	// (recall) class, and sum them for accuracy, so a class never predicted
	// right, or a model never right, must read 0, not nothing, for
	// ModelAccuracyLow, ModelF1Low and the accuracy SLO to fire.
	if !o.PredictedOverflow {
		m.correct.WithLabelValues(o.Model, o.Predicted)
	}
	if !o.ActualOverflow {
		m.correct.WithLabelValues(o.Model, o.Actual)
	}
	if o.Predicted == o.Actual && !o.PredictedOverflow && !o.ActualOverflow {
		m.correct.WithLabelValues(o.Model, o.Actual).Inc()
	}
}

// Reasons a label is rejected besides those of pushed observations, in
// modelmon_labels_rejected_total.
const (
	rejectMissingID    = "missing_id"
	rejectInvalidLabel = "invalid_label"
)

// labelRecord is one record of POST /v1/labels.
type labelRecord struct {
	ID        string          `json:"id"`
	Model     string          `json:"model"`
	Label     any             `json:"label"`
	Timestamp json.RawMessage `json:"timestamp"`
}

// labelFields are the names of a labelRecord's JSON fields.
var labelFields = jsonFields(reflect.TypeFor[labelRecord]())

// LabelsResponse is the body of every answer of POST /v1/labels. Results
// gives each accepted record's reason (matched, held, unknown_id, expired,
// evicted, duplicate, invalid), in order.
type LabelsResponse struct {
	Accepted int         `json:"accepted"`
	Results  []string    `json:"results"`
	Rejected []Rejection `json:"rejected"`
	Error    string      `json:"error,omitempty"`
}

type labelsHandler struct {
	l       *labels
	maxBody int64
	now     func() time.Time
}

func (h *labelsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	write := func(status int, resp LabelsResponse) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(resp)
	}
	empty := LabelsResponse{Results: []string{}, Rejected: []Rejection{}}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		empty.Error = "only POST is allowed"
		write(http.StatusMethodNotAllowed, empty)
		return
	}
	body, status, err := readBody(w, r, h.maxBody)
	if err != nil {
		empty.Error = err.Error()
		write(status, empty)
		return
	}
	raws, err := splitRecords(body, r.Header.Get("Content-Type"))
	if err != nil {
		h.l.metrics.rejected.WithLabelValues(rejectInvalidJSON).Inc()
		empty.Error = err.Error()
		write(http.StatusBadRequest, empty)
		return
	}
	// Labels a peer sends with those it did not know: joined here only
	// when the prediction is here, never sent on.
	from := r.Header.Get(peerHeader)
	if from == h.l.prefix {
		w.Header().Set(peerHeader, from)
		empty.Error = "this is the replica that sent the labels"
		write(http.StatusMisdirectedRequest, empty)
		return
	}
	askPeers := from == "" && h.l.peers.active()
	resp := empty
	now := h.now()
	// The labels this replica did not know, and their places in Results.
	var unknown []quality.Label
	var unknownAt []int
	for i, raw := range raws {
		lb, reason, err := decodeLabel(raw, now)
		if err != nil {
			h.l.metrics.rejected.WithLabelValues(reason).Inc()
			resp.Rejected = append(resp.Rejected, Rejection{Index: i, Reason: reason, Error: err.Error()})
			continue
		}
		resp.Accepted++
		var res quality.Reason
		switch {
		case from != "":
			res, _ = h.l.labelKnown(now, lb)
		case askPeers:
			var known bool
			if res, known = h.l.labelKnown(now, lb); !known {
				unknown, unknownAt = append(unknown, lb), append(unknownAt, len(resp.Results))
			}
		default:
			res = h.l.labelHere(now, lb)
		}
		resp.Results = append(resp.Results, res.String())
	}
	if len(unknown) > 0 {
		// Those no peer knew are kept here, and so are those the
		// sidecar's stop kept from being asked (the request ends then,
		// not at labels.timeout, so the web server's shutdown does not
		// wait for a peer that does not answer).
		found, _, _ := h.l.peers.ask(r.Context(), unknown)
		for k, f := range found {
			if f == "" {
				f = h.l.labelHere(now, unknown[k]).String()
			}
			resp.Results[unknownAt[k]] = f
		}
	}
	status = http.StatusOK
	if resp.Accepted == 0 && len(resp.Rejected) > 0 {
		status = http.StatusBadRequest
	}
	write(status, resp)
}

func decodeLabel(raw json.RawMessage, now time.Time) (quality.Label, string, error) {
	if err := isObject(raw); err != nil {
		return quality.Label{}, rejectInvalidJSON, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var rec labelRecord
	if err := dec.Decode(&rec); err != nil {
		if strings.Contains(err.Error(), "unknown field") {
			return quality.Label{}, rejectUnknownField, err
		}
		return quality.Label{}, rejectInvalidJSON, err
	}
	if err := exactFields(raw, labelFields); err != nil {
		return quality.Label{}, rejectUnknownField, err
	}
	if rec.ID == "" {
		return quality.Label{}, rejectMissingID, errors.New("id is required")
	}
	lb := quality.Label{ID: rec.ID, Model: rec.Model, Time: now}
	switch v := rec.Label.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return quality.Label{}, rejectInvalidLabel, fmt.Errorf("label %s is not a finite number", v)
		}
		lb.Value = quality.Number(f)
	case string:
		if v == "" {
			return quality.Label{}, rejectInvalidLabel, errors.New("label is an empty class")
		}
		if len(v) > maxLabelValueLen {
			v = labelValue([]byte(v)) // cut as a prediction's class is
		}
		lb.Value = quality.Class(v)
	case bool:
		lb.Value = quality.Class(strconv.FormatBool(v))
	default:
		return quality.Label{}, rejectInvalidLabel, fmt.Errorf("label must be a class (string or boolean) or a number, got %T", rec.Label)
	}
	if len(rec.Timestamp) > 0 {
		t, err := parseTimestamp(rec.Timestamp)
		if err != nil {
			return quality.Label{}, rejectInvalidTimestamp, err
		}
		lb.Time = t
	}
	return lb, "", nil
}

// labelStats exposes the store's counters at scrape time.
type labelStats struct{ store *quality.Store }

var (
	labelsTotalDesc = prometheus.NewDesc(collector.LabelsTotal,
		"The total number of labels received, by what became of them: matched, unknown_id, expired, evicted, duplicate, invalid (labels held for their prediction count once decided).",
		[]string{"reason"}, nil)
	pendingDesc = prometheus.NewDesc(collector.PendingPredictions,
		"The number of predictions waiting for their label.", nil, nil)
	heldDesc = prometheus.NewDesc(collector.HeldLabels,
		"The number of labels waiting for their prediction.", nil, nil)
	heldUnreachableDesc = prometheus.NewDesc(collector.HeldLabelsPeerUnreachable,
		fmt.Sprintf("The number of held labels, of modelmon_held_labels, whose time is over but that wait on because a peer could not be asked about them at their last asking: they are asked again, up to %d times, before they end as unknown_id.", heldRetries), nil, nil)
	pendingRemovedDesc = prometheus.NewDesc(collector.PendingRemovedTotal,
		"The total number of predictions removed before their label came, by reason: expired (TTL) or evicted (the store was full).",
		[]string{"reason"}, nil)
)

func (s *labelStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- labelsTotalDesc
	ch <- pendingDesc
	ch <- heldDesc
	ch <- heldUnreachableDesc
	ch <- pendingRemovedDesc
}

func (s *labelStats) Collect(ch chan<- prometheus.Metric) {
	st := s.store.Stats()
	for _, r := range quality.LabelReasons() {
		ch <- prometheus.MustNewConstMetric(labelsTotalDesc, prometheus.CounterValue, float64(st.Labels[r]), r.String())
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(st.Held))
	ch <- prometheus.MustNewConstMetric(heldUnreachableDesc, prometheus.GaugeValue, float64(st.HeldRetrying))
	ch <- prometheus.MustNewConstMetric(pendingRemovedDesc, prometheus.CounterValue, float64(st.Expired), "expired")
	ch <- prometheus.MustNewConstMetric(pendingRemovedDesc, prometheus.CounterValue, float64(st.Evicted), "evicted")
}
