package payload

// Kind is the type of a Value.
type Kind uint8

// The kinds of Value.
const (
	// KindMissing is null, or a value that is absent.
	KindMissing Kind = iota
	// KindNumber is a number in Value.Num, including NaN and ±Inf.
	KindNumber
	// KindString is a string in Value.Str. Numeric strings stay strings
	// (in JSON; a CSV cell that reads as a number is a KindNumber that
	// keeps its text).
	KindString
	// KindBool is a boolean in Value.Num as 0 or 1.
	KindBool
)

var kindNames = [...]string{KindMissing: "missing", KindNumber: "number", KindString: "string", KindBool: "bool"}

// String returns "missing", "number", "string" or "bool".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "missing"
}

// Value is a scalar feature value or prediction.
type Value struct {
	Kind Kind
	Num  float64 // KindNumber, or KindBool as 0/1
	// Str is a KindString's text. A KindNumber read from text that has no
	// types of its own (a CSV cell) keeps that text here too, for a
	// categorical feature, whose "007" is not 7; other numbers have none.
	// It points into the Parser's memory.
	Str []byte
}

// Feature is a named input value of one instance.
type Feature struct {
	Name  []byte // points into the Parser's memory or Options.FeatureNames
	Value Value
}

// Record is one instance of a batch: its features and, if a response was parsed, its prediction.
type Record struct {
	Features []Feature
	// Prediction is the scalar prediction (a class label or a regression value),
	// KindMissing if there is none.
	Prediction Value
	// Scores is the prediction when it is a numeric vector (class probabilities,
	// multiple outputs), else nil.
	Scores []float64
	// ScoreLabels, when the answer names the class of each score (TF-Serving
	// classify's [label, score] pairs, a list of {"label", "score"} objects),
	// holds those names, one per score; else nil. The scores need not be in a
	// fixed class order then: Hugging Face pipelines sort them by score.
	ScoreLabels [][]byte
	// Confidence is the probability the model gives its Prediction, a
	// named class, when it gives only that one ({"label": "POSITIVE",
	// "score": 0.98}, as Hugging Face pipelines answer by default);
	// HasConfidence reports that it did.
	Confidence    float64
	HasConfidence bool
}

// Batch holds the records parsed from one request/response pair. It is meant to be
// reused across Parse calls: Reset keeps the capacity of its buffers.
type Batch struct {
	Format  Format // the format the payload was parsed as, after detection
	Records []Record
	// DroppedFeatures counts features not recorded because a record reached
	// Options.MaxFeatures, or because generated feature names outgrew their budget.
	DroppedFeatures int
	// Generation describes the response when it was a generative model's
	// answer (generate.go); its zero value when it was not.
	Generation Generation

	feats  []Feature // backing store of every Record.Features
	scores []float64 // backing store of every Record.Scores
	labels [][]byte  // backing store of every Record.ScoreLabels
}

// Reset empties b and keeps the capacity of its buffers.
func (b *Batch) Reset() {
	b.Format = FormatUnknown
	b.Records = b.Records[:0]
	b.DroppedFeatures = 0
	b.Generation = Generation{}
	b.feats = b.feats[:0]
	b.scores = b.scores[:0]
	b.labels = b.labels[:0]
}

// clearPredictions removes all predictions, after a response turned out to be unusable.
func (b *Batch) clearPredictions() {
	for i := range b.Records {
		r := &b.Records[i]
		r.Prediction, r.Scores, r.ScoreLabels = Value{}, nil, nil
		r.Confidence, r.HasConfidence = 0, false
	}
	b.scores = b.scores[:0]
	b.labels = b.labels[:0]
}

// Generation is what a generative model's answer tells of itself besides its
// text: the prediction of its record is why it stopped (its finish reason).
type Generation struct {
	// Answered reports that the response was a generative model's answer,
	// whole or streamed, and was read.
	Answered bool
	// InputTokens and OutputTokens are the tokens of the prompt and of the
	// answer as the answer reports them (OpenAI's usage, TGI's details); -1
	// when it does not.
	InputTokens, OutputTokens int64
}
