package collector

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Buckets of the classic histograms. Every histogram also has a native
// histogram (bucket factor 1.1) for scrapers that negotiate it.
var (
	DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	OverheadBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01}
	SizeBuckets     = prometheus.ExponentialBuckets(64, 4, 11) // 64 B … 64 MiB
	// RewardBuckets suit rewards of 0 or 1 and of [0, 1], as bandits and
	// Seldon's routers give them, and tell the negative ones apart.
	RewardBuckets = []float64{-1, -0.5, 0, 0.25, 0.5, 0.75, 1}
	// ScoreBuckets suit a binary classifier's scores, probabilities in
	// [0, 1]; a regression's values take the native histogram.
	ScoreBuckets = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}
)

func histogramOpts(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name:                            name,
		Help:                            help,
		Buckets:                         buckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}
}

// Metrics is the sidecar's direct instrumentation of the traffic it proxies
// and the observations pushed to it. Hot paths resolve the children they need
// once per model and keep them.
type Metrics struct {
	Requests                   *prometheus.CounterVec
	Passthrough                prometheus.Counter
	PassthroughErrors          *prometheus.CounterVec
	UpstreamRetries            prometheus.Counter
	Predictions                *prometheus.CounterVec
	Errors                     *prometheus.CounterVec
	InFlight                   *prometheus.GaugeVec
	RequestSize                *prometheus.HistogramVec
	ResponseSize               *prometheus.HistogramVec
	Duration                   *prometheus.HistogramVec
	FirstByte                  *prometheus.HistogramVec
	Overhead                   prometheus.Histogram
	CaptureDropped             *prometheus.CounterVec
	PayloadsParsed             *prometheus.CounterVec
	PayloadErrors              *prometheus.CounterVec
	Generations                *prometheus.CounterVec
	GenerationTokens           *prometheus.CounterVec
	TimePerOutputToken         *prometheus.HistogramVec
	FeedbackReward             *prometheus.HistogramVec
	FeatureInvalid             *prometheus.CounterVec
	PredictionClass            *prometheus.CounterVec
	PredictionScore            *ModelHistograms
	PredictionClassProbability *prometheus.HistogramVec
	PredictionConfidenceBin    *prometheus.CounterVec
	LabelOverflow              *prometheus.CounterVec
	ObservationsReceived       *prometheus.CounterVec
	ObservationsRejected       *prometheus.CounterVec
	Shadow                     ShadowMetrics
}

// ShadowMetrics compare a shadow model server's answers with the model's,
// for the predictions mirrored to it (--shadow.upstream).
type ShadowMetrics struct {
	Requests           *prometheus.CounterVec
	Errors             *prometheus.CounterVec
	Retries            *prometheus.CounterVec
	Dropped            *prometheus.CounterVec
	Duration           *prometheus.HistogramVec
	FirstByte          *prometheus.HistogramVec
	TimePerOutputToken *prometheus.HistogramVec
	Predictions        *prometheus.CounterVec
	Disagreements      *prometheus.CounterVec
	AbsoluteDifference *prometheus.CounterVec
	SquaredDifference  *prometheus.CounterVec
	ClassPairs         *prometheus.CounterVec
	// With labels (--labels.enabled): both answers against the label.
	LabelsMatched *prometheus.CounterVec
	RegOutcomes   *prometheus.CounterVec // the numeric pairs of LabelsMatched
	Correct       *prometheus.CounterVec
	Discordant    *prometheus.CounterVec
	AbsoluteError *prometheus.CounterVec
	SquaredError  *prometheus.CounterVec
}

// NewMetrics creates the sidecar's traffic metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: RequestsTotal,
			Help: "The total number of prediction requests proxied to the model server, failed ones included.",
		}, []string{"model"}),
		Passthrough: f.NewCounter(prometheus.CounterOpts{
			Name: PassthroughRequestsTotal,
			Help: "The total number of proxied requests that are not predictions (health checks, metadata), passed through untouched.",
		}),
		PassthroughErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: PassthroughErrorsTotal,
			Help: "The total number of proxied requests that are not predictions and failed, by reason.",
		}, []string{"reason"}),
		UpstreamRetries: f.NewCounter(prometheus.CounterOpts{
			Name: UpstreamRetriesTotal,
			Help: "The total number of requests sent to the model server a second time: HTTP ones on another connection, after the kept-alive connection they went out on ended before any answer (idempotent methods, requests with an Idempotency-Key or X-Idempotency-Key header, and requests none of which had been sent), gRPC calls the model server refused unread, which grpc-go sent again on its own.",
		}),
		Predictions: f.NewCounterVec(prometheus.CounterOpts{
			Name: PredictionsTotal,
			Help: "The total number of predictions (instances in a batch) seen in parsed payloads and pushed observations.",
		}, []string{"model"}),
		Errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: PredictionErrorsTotal,
			Help: "The total number of prediction requests that failed, by reason.",
		}, []string{"model", "reason"}),
		InFlight: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: RequestsInFlight,
			Help: "The number of prediction requests waiting for the model server.",
		}, []string{"model"}),
		RequestSize: f.NewHistogramVec(histogramOpts(RequestSizeBytes,
			"The size of prediction request bodies in bytes.", SizeBuckets), []string{"model"}),
		ResponseSize: f.NewHistogramVec(histogramOpts(ResponseSizeBytes,
			"The size of prediction response bodies in bytes.", SizeBuckets), []string{"model"}),
		Duration: f.NewHistogramVec(histogramOpts(PredictionDuration,
			"The time from receiving a prediction request to having the model server's response, in seconds; pushed observations report their own.",
			DurationBuckets), []string{"model"}),
		FirstByte: f.NewHistogramVec(histogramOpts(PredictionFirstByte,
			"The time from receiving a prediction request to the first byte of the model server's response body, in seconds, for responses streamed to the client as they arrive (chunked, until the connection closes, or larger than the capture limit): token streams, server-sent events.",
			DurationBuckets), []string{"model"}),
		Overhead: f.NewHistogram(histogramOpts(ProxyOverhead,
			"The time the sidecar adds to a proxied request, excluding the model server's round trip, in seconds.",
			OverheadBuckets)),
		CaptureDropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: CaptureDroppedTotal,
			Help: "The total number of payload captures dropped instead of parsed, by reason; the requests themselves were served.",
		}, []string{"model", "reason"}),
		PayloadsParsed: f.NewCounterVec(prometheus.CounterOpts{
			Name: PayloadsParsedTotal,
			Help: "The total number of captured payloads parsed into records, by format.",
		}, []string{"model", "format"}),
		PayloadErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: PayloadErrorsTotal,
			Help: "The total number of captured payloads that could not be (fully) parsed, by reason.",
		}, []string{"model", "reason"}),
		Generations: f.NewCounterVec(prometheus.CounterOpts{
			Name: GenerationsTotal,
			Help: "The total number of generative models' answers (LLMs: OpenAI-style completions, the OIP generate extension, TGI) read from captured payloads, whole or streamed, by why the generation stopped.",
		}, []string{"model", "finish_reason"}),
		GenerationTokens: f.NewCounterVec(prometheus.CounterOpts{
			Name: GenerationTokensTotal,
			Help: "The total number of tokens of the prompts (type input) and the answers (type output) of generative models, as their answers report them.",
		}, []string{"model", "type"}),
		TimePerOutputToken: f.NewHistogramVec(histogramOpts(GenerationTimePerToken,
			"The time per output token after the first of generative models' streamed answers, in seconds: (last byte − first byte) / (output tokens − 1), for answers that report two tokens or more and came in more than one piece (read, or gRPC message).",
			DurationBuckets), []string{"model"}),
		FeedbackReward: f.NewHistogramVec(histogramOpts(FeedbackReward,
			"The rewards of the feedback requests (Seldon Core 1's feedback API) read from captured payloads, 0 for a feedback without one; its count is the number of feedback requests read. Rewards below 0 make the sum go down: take the mean reward from the native histogram (histogram_avg), or rate() the classic sum only when rewards are never negative.",
			RewardBuckets), []string{"model"}),
		FeatureInvalid: f.NewCounterVec(prometheus.CounterOpts{
			Name: FeatureValuesInvalid,
			Help: "The total number of invalid feature values seen in parsed payloads and pushed observations, by reason.",
		}, []string{"model", "feature", "reason"}),
		PredictionClass: f.NewCounterVec(prometheus.CounterOpts{
			Name: PredictionClassTotal,
			Help: "The total number of classification predictions in parsed payloads and pushed observations, by predicted class.",
		}, []string{"model", "class"}),
		PredictionScore: NewModelHistograms(reg, histogramOpts(PredictionScore,
			"The numeric predictions in parsed payloads and pushed observations: a regression's values, a binary classifier's scores (the second class's probability).",
			ScoreBuckets)),
		PredictionClassProbability: f.NewHistogramVec(histogramOpts(PredictionClassProbability,
			"The probability each classification prediction that gives one gives the class it predicts (its confidence), in parsed payloads and pushed observations: a fall in it flags inputs the model is unsure of, without labels.",
			ScoreBuckets), []string{"model"}),
		PredictionConfidenceBin: f.NewCounterVec(prometheus.CounterOpts{
			Name: PredictionConfidenceBinTotal,
			Help: "The total number of classification predictions that give the class they predict a probability, labelled or not, by confidence bin: the bins of the calibration counters, of bins equal bins (models[].calibration_bins), bin k holding (k/bins, (k+1)/bins]. With the accuracy labels have shown in each bin, they estimate the accuracy of predictions whose labels have not come yet.",
		}, []string{"model", "bins", "bin"}),
		LabelOverflow: f.NewCounterVec(prometheus.CounterOpts{
			Name: LabelOverflowTotal,
			Help: "The total number of times a new label value was replaced by " + OtherValue + " because its label reached its cap.",
		}, []string{"label"}),
		ObservationsReceived: f.NewCounterVec(prometheus.CounterOpts{
			Name: ObservationsReceived,
			Help: "The total number of observations accepted by the push API.",
		}, []string{"model"}),
		ObservationsRejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: ObservationsRejected,
			Help: "The total number of observations the push API rejected, by reason.",
		}, []string{"reason"}),
	}
	m.Shadow = ShadowMetrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowRequestsTotal,
			Help: "The total number of prediction requests mirrored to the shadow model server (--shadow.upstream), failed ones included.",
		}, []string{"model"}),
		Errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowErrorsTotal,
			Help: "The total number of mirrored requests whose shadow answer could not be compared, by reason.",
		}, []string{"model", "reason"}),
		Retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowRetriesTotal,
			Help: "The total number of mirrored requests sent to the shadow model server a second time: HTTP ones on another connection, after the kept-alive connection they went out on ended before any answer (as " + UpstreamRetriesTotal + " counts the model server's), gRPC calls the shadow refused unread, which grpc-go sent again on its own.",
		}, []string{"model"}),
		Dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowDroppedTotal,
			Help: "The total number of prediction requests sampled for the shadow model server but not sent or not compared, because --shadow.concurrency requests were already waiting for it, a gRPC stream had 1024 requests waiting for it, or the capture queue's bytes were taken.",
		}, []string{"model"}),
		Duration: f.NewHistogramVec(histogramOpts(ShadowDuration,
			"The time the shadow model server took to answer a mirrored request, to the last byte of a streamed answer, in seconds.",
			DurationBuckets), []string{"model"}),
		FirstByte: f.NewHistogramVec(histogramOpts(ShadowFirstByte,
			"The time from sending a mirrored request to the first byte of the shadow model server's streamed answer, in seconds: the first byte of the body of an HTTP response it streamed (chunked, until the connection closes, or larger than the capture limit), the first of a decoupled model's several answers to a request of a gRPC ModelStreamInfer stream, the first answer of a StreamPredictions call: token streams, server-sent events.",
			DurationBuckets), []string{"model"}),
		TimePerOutputToken: f.NewHistogramVec(histogramOpts(ShadowTimePerToken,
			"The time per output token after the first of the shadow model server's streamed generative answers, in seconds: (last byte − first byte) / (output tokens − 1), for answers that report two tokens or more and came in more than one piece (read, or gRPC message).",
			DurationBuckets), []string{"model"}),
		Predictions: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowPredictionsTotal,
			Help: "The total number of predictions compared between the model and the shadow model server.",
		}, []string{"model"}),
		Disagreements: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowDisagreementsTotal,
			Help: "The total number of compared predictions whose class differs between the model and the shadow model server, or that one of them gives as a class and the other not.",
		}, []string{"model"}),
		AbsoluteDifference: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowAbsoluteDifferenceTotal,
			Help: "The sum of the absolute differences between the model's and the shadow model server's numeric predictions (a regression's values, a binary classifier's scores).",
		}, []string{"model"}),
		SquaredDifference: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowSquaredDifferenceTotal,
			Help: "The sum of the squared differences between the model's and the shadow model server's numeric predictions.",
		}, []string{"model"}),
		ClassPairs: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowClassPairsTotal,
			Help: "The total number of compared classification predictions by the model's class and the shadow model server's (" + NoClass + " for a side that gave none): which classes the candidate would change, and into what.",
		}, []string{"model", "predicted", "shadow_predicted"}),
		LabelsMatched: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowLabelsMatchedTotal,
			Help: "The total number of ground-truth labels joined to predictions compared with the shadow model server: both answers are scored against them.",
		}, []string{"model"}),
		RegOutcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowRegressionOutcomesTotal,
			Help: "The total number of labels joined to numeric predictions compared with the shadow model server whose shadow answer was a number too: the count both sides' error sums are over, which a model that also predicts classes has fewer of than labels joined.",
		}, []string{"model"}),
		Correct: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowCorrectTotal,
			Help: "The total number of classification predictions compared with the shadow model server whose label joined and that were right, by which answered (source model or shadow).",
		}, []string{"model", "source"}),
		Discordant: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowDiscordantTotal,
			Help: "The total number of labelled classification predictions compared with the shadow model server that exactly one of the model and the shadow got right: the pairs McNemar's test counts.",
		}, []string{"model"}),
		AbsoluteError: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowAbsoluteErrorTotal,
			Help: "The sum of the absolute errors against their labels of the numeric predictions compared with the shadow model server, by which answered (source model or shadow).",
		}, []string{"model", "source"}),
		SquaredError: f.NewCounterVec(prometheus.CounterOpts{
			Name: ShadowSquaredErrorTotal,
			Help: "The sum of the squared errors against their labels of the numeric predictions compared with the shadow model server, by which answered (source model or shadow).",
		}, []string{"model", "source"}),
	}
	for _, l := range []string{"model", "feature"} {
		m.LabelOverflow.WithLabelValues(l)
	}
	for _, r := range ErrorReasons {
		m.PassthroughErrors.WithLabelValues(r)
	}
	return m
}

// ModelHistograms are one histogram family by model, and by further labels
// if any, whose classic buckets a model's configuration may set:
// modelmon_prediction_score's (models[].score_buckets, else ScoreBuckets)
// and modelmon_prediction_error_magnitude's and
// modelmon_segment_prediction_error_magnitude's (models[].error_buckets,
// else the native histogram alone).
type ModelHistograms struct {
	vec  *prometheus.HistogramVec // with opts' buckets
	opts prometheus.HistogramOpts
	// labels are the variable labels after model.
	labels []string

	mu  sync.RWMutex
	own map[string]ownHistograms // by model
}

// ownHistograms are a model's histograms with buckets of its own, the
// model a constant label.
type ownHistograms struct {
	buckets []float64
	vec     *prometheus.HistogramVec
}

// NewModelHistograms registers the histograms of opts, labelled by model
// and then by labels, with reg (nil: none). opts.Buckets are the buckets
// of models that give none; without them and with a native bucket factor,
// those models have the native histogram alone. A model's own buckets are
// collected beside the vector's children, as the same metric family, so
// the collector is unchecked: its histograms' buckets differ.
func NewModelHistograms(reg prometheus.Registerer, opts prometheus.HistogramOpts, labels ...string) *ModelHistograms {
	s := &ModelHistograms{
		vec:  prometheus.NewHistogramVec(opts, append([]string{"model"}, labels...)),
		opts: opts, labels: labels, own: map[string]ownHistograms{},
	}
	if reg != nil {
		reg.MustRegister(s)
	}
	return s
}

// For returns the histogram of model and values (of the further labels),
// with buckets (nil: the family's). A model's histograms whose buckets
// change start again empty, all its values' together. It is safe for
// concurrent use, and a model whose buckets did not change only reads
// under the lock.
func (s *ModelHistograms) For(model string, buckets []float64, values ...string) prometheus.Observer {
	if len(buckets) == 0 {
		s.mu.RLock()
		_, owned := s.own[model]
		s.mu.RUnlock()
		if !owned {
			return s.shared(model, values)
		}
	} else {
		s.mu.RLock()
		o, ok := s.own[model]
		s.mu.RUnlock()
		if ok && slices.Equal(o.buckets, buckets) {
			return o.vec.WithLabelValues(values...)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(buckets) == 0 {
		delete(s.own, model)
		return s.shared(model, values)
	}
	if o, ok := s.own[model]; ok && slices.Equal(o.buckets, buckets) {
		return o.vec.WithLabelValues(values...)
	}
	s.vec.DeletePartialMatch(prometheus.Labels{"model": model})
	opts := s.opts
	opts.Buckets = slices.Clone(buckets)
	opts.ConstLabels = prometheus.Labels{"model": model}
	o := ownHistograms{buckets: opts.Buckets, vec: prometheus.NewHistogramVec(opts, s.labels)}
	s.own[model] = o
	return o.vec.WithLabelValues(values...)
}

// shared returns the histogram of model and values with the family's
// buckets.
func (s *ModelHistograms) shared(model string, values []string) prometheus.Observer {
	if len(values) == 0 {
		return s.vec.WithLabelValues(model)
	}
	return s.vec.WithLabelValues(append([]string{model}, values...)...)
}

// Describe implements prometheus.Collector: it describes nothing, which
// makes the collector unchecked.
func (s *ModelHistograms) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (s *ModelHistograms) Collect(ch chan<- prometheus.Metric) {
	s.vec.Collect(ch)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, o := range s.own {
		o.vec.Collect(ch)
	}
}
