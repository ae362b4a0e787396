// Package quality joins delayed ground-truth labels to the predictions they
// belong to, in the pod and in bounded memory, and turns each join into an
// Outcome from which the sidecar derives model-quality counters (confusion
// counts, absolute and squared error sums, Brier score and log loss sums, label
// delay).
//
// It is a pure library: no network, no logging, no goroutines and no wall
// clock. Every method takes now, and every decision comes back with a bounded
// Reason that may be used as a metric label.
//
// # Flow
//
// Store.Observe records a pending prediction under its id. Store.Label joins a
// label to it, returning the Outcome and ReasonMatched, or says why it could
// not: unknown_id, expired, evicted, duplicate or invalid. A label whose
// prediction has not been captured yet is held in a small early-label buffer
// (ReasonHeld) and joined by the Observe that brings its prediction; if none
// comes in time it is dropped and counted as unknown_id. Stats reports the final
// reason of every label, including those resolved later, so that
//
//	matched + unknown_id + expired + evicted + duplicate + invalid = labels sent
//
// once no label is held.
//
// # Bounds
//
// Pending predictions are bounded by Options.MaxEntries (the oldest is evicted)
// and Options.TTL (expired lazily, and by Expire in bounded batches). The ids
// of the last Options.MaxRecent removed predictions are remembered with why
// they were removed, so a late label can be told apart from an unknown one.
// Class values are capped per model at Options.MaxClasses; further values
// become OtherClass and the Outcome says so. They are kept in the order the
// store first saw them, unless Store.SetClasses puts a known list first. Segment values
// (Prediction.Segments: the values of features the model's quality is also
// counted by) are capped likewise, per segment, at Options.MaxSegmentValues,
// and a model keeps at most MaxSegmentNames segments.
//
// Each pending prediction costs a 56-byte slot in a slice (no per-entry
// allocation but its id), its id string, and one entry in the id map: about
// 135 bytes with 16-byte ids at 1,000,000 entries, which TestMemoryPerEntry
// holds under 200. Probabilities, when present, add 56 bytes plus 8 per
// class; segments 56 bytes plus 8 per segment.
// Remembered ids cost about 60 bytes each on top (6 MB at the default
// MaxRecent); class values are stored once per model.
//
// # Persistence
//
// Store.Snapshot and Restore save and load pending predictions, held labels,
// the recently-removed ids and the models' label offsets (Store.SetOffset)
// across restarts; the format is described at Snapshot.
package quality
