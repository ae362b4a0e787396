package quality

// Reason is the bounded result of Observe or Label, usable as a metric label.
type Reason uint8

// Reasons returned by Label, and recorded in Stats.Labels as each label's
// final reason.
const (
	// ReasonMatched: the label was joined to its prediction.
	ReasonMatched Reason = iota
	// ReasonUnknownID: no prediction with this id was seen recently, or a held
	// label's prediction never came.
	ReasonUnknownID
	// ReasonExpired: the prediction expired (TTL) before the label came.
	ReasonExpired
	// ReasonEvicted: the prediction was evicted (MaxEntries) before the label came.
	ReasonEvicted
	// ReasonDuplicate: the prediction was already matched, or a label for the
	// id is already held.
	ReasonDuplicate
	// ReasonInvalid: the label is malformed (empty id or class, NaN or
	// infinite number), of the wrong kind for its prediction, or names another model.
	ReasonInvalid
	// ReasonHeld: no final reason yet; the label waits for its prediction.
	// Label returns it; Stats never counts it.
	ReasonHeld

	// ReasonPending: Observe stored the prediction.
	ReasonPending
	// ReasonDuplicatePrediction: Observe ignored a prediction whose id is
	// pending or recently removed; the first one is kept.
	ReasonDuplicatePrediction
	// ReasonInvalidPrediction: Observe ignored a malformed prediction (empty id
	// or model, NaN number, probabilities not matching their classes).
	ReasonInvalidPrediction

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonMatched:             "matched",
	ReasonUnknownID:           "unknown_id",
	ReasonExpired:             "expired",
	ReasonEvicted:             "evicted",
	ReasonDuplicate:           "duplicate",
	ReasonInvalid:             "invalid",
	ReasonHeld:                "held",
	ReasonPending:             "pending",
	ReasonDuplicatePrediction: "duplicate_prediction",
	ReasonInvalidPrediction:   "invalid_prediction",
}

// String returns the reason's metric label value, such as "unknown_id".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// LabelReasons returns the final reasons a label can have, for pre-creating
// counters.
func LabelReasons() []Reason {
	return []Reason{ReasonMatched, ReasonUnknownID, ReasonExpired, ReasonEvicted, ReasonDuplicate, ReasonInvalid}
}
