package quality

import (
	"fmt"
	"time"
)

// Options bounds a Store. Zero fields take the values of DefaultOptions.
type Options struct {
	// MaxEntries is the maximum number of pending predictions. When full, the
	// oldest is evicted.
	MaxEntries int
	// TTL is how long a prediction waits for its label before it expires.
	TTL time.Duration
	// MaxClasses caps the distinct class values per model (predicted and actual
	// together). Further values are reported as OtherClass.
	MaxClasses int
	// MaxRecent is how many removed (matched, expired, evicted) ids are
	// remembered to classify late labels.
	MaxRecent int
	// MaxEarly is the maximum number of labels held while waiting for their
	// prediction. Use a negative value to disable holding.
	MaxEarly int
	// EarlyTTL is how long a label is held waiting for its prediction.
	EarlyTTL time.Duration
	// ExpireBatch bounds the number of entries one call to Expire removes.
	ExpireBatch int
	// MaxSegmentValues caps the distinct values of each segment per model
	// (Prediction.Segments). Further values are reported as OtherClass.
	MaxSegmentValues int
	// OverflowModel, when set, is the model under which predictions of
	// several models come once there are too many to name apart (the
	// sidecar's __other__). A label's model is checked when the label is
	// joined, so a held one against the model its prediction came under;
	// against a prediction of OverflowModel it is not checked at all, as
	// the prediction's own model is not known. It is not saved in
	// snapshots.
	OverflowModel string
}

// DefaultOptions returns the default Options.
func DefaultOptions() Options {
	return Options{
		MaxEntries:  1_000_000,
		TTL:         24 * time.Hour,
		MaxClasses:  50,
		MaxRecent:   100_000,
		MaxEarly:    10_000,
		EarlyTTL:    10 * time.Minute,
		ExpireBatch: 10_000,

		MaxSegmentValues: 20,
	}
}

// maxCount bounds every count so that slot indexes fit in an int32.
const maxCount = 1 << 30

func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o.MaxEntries == 0 {
		o.MaxEntries = d.MaxEntries
	}
	if o.TTL == 0 {
		o.TTL = d.TTL
	}
	if o.MaxClasses == 0 {
		o.MaxClasses = d.MaxClasses
	}
	if o.MaxRecent == 0 {
		o.MaxRecent = d.MaxRecent
	}
	if o.MaxEarly == 0 {
		o.MaxEarly = d.MaxEarly
	}
	if o.EarlyTTL == 0 {
		o.EarlyTTL = d.EarlyTTL
	}
	if o.ExpireBatch == 0 {
		o.ExpireBatch = d.ExpireBatch
	}
	if o.MaxSegmentValues == 0 {
		o.MaxSegmentValues = d.MaxSegmentValues
	}
	if o.MaxEarly < 0 {
		o.MaxEarly = 0
	}
	switch {
	case o.MaxEntries < 0 || o.MaxEntries > maxCount:
		return o, fmt.Errorf("max entries %d out of range [1, %d]", o.MaxEntries, maxCount)
	case o.TTL < 0:
		return o, fmt.Errorf("negative ttl %s", o.TTL)
	case o.MaxClasses < 0 || o.MaxClasses > maxCount:
		return o, fmt.Errorf("max classes %d out of range [1, %d]", o.MaxClasses, maxCount)
	case o.MaxRecent < 0 || o.MaxRecent > maxCount:
		return o, fmt.Errorf("max recent %d out of range [1, %d]", o.MaxRecent, maxCount)
	case o.MaxEarly > maxCount:
		return o, fmt.Errorf("max early %d out of range [0, %d]", o.MaxEarly, maxCount)
	case o.EarlyTTL < 0:
		return o, fmt.Errorf("negative early ttl %s", o.EarlyTTL)
	case o.ExpireBatch < 0:
		return o, fmt.Errorf("negative expire batch %d", o.ExpireBatch)
	case o.MaxSegmentValues < 0 || o.MaxSegmentValues > maxCount:
		return o, fmt.Errorf("max segment values %d out of range [1, %d]", o.MaxSegmentValues, maxCount)
	}
	return o, nil
}
