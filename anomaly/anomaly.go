// Package anomaly scores time series for anomalies online: each detector is
// fed one (timestamp, value) at a time, keeps bounded memory per series, and
// answers with a score in [0, 1] and its explanation (the expected value and
// band, and which detector decided).
//
// The algorithms (Algorithms, New):
//
//   - "mad": robust level — distance from the rolling median in MADs (MAD).
//   - "seasonal": distance from the median of the same phase one, two and
//     three days before, in robust deviations of that residual (Seasonal).
//   - "cusum": level shifts and trend changes — a two-sided CUSUM of the
//     standardised values (CUSUM).
//   - "ensemble", the default: level and seasonal models plus a likelihood
//     term for runs of odd points, a range term for new extremes and a
//     pattern-novelty gate that discounts recurring bursts, normalised by
//     the series' own history and damped after each alert (Ensemble).
//
// Every detector keeps fixed-size buffers allocated at construction (Size
// reports them) and does not allocate in Update. Scores share one scale:
// Threshold (0.5) means "alert".
//
// The package is pure: no network, no goroutines, no global state, no wall
// clock; time is the sample's timestamp.
package anomaly

import (
	"fmt"
	"slices"
	"time"
)

// Result is a detector's answer for one point.
type Result struct {
	// Score is the anomaly score in [0, 1]: 0 ordinary, 1 as anomalous as
	// the detector can say.
	Score float64
	// Learning is set while the detector has too little history to score;
	// Score is then 0.
	Learning bool
	// Expected is the value the detector expected at this time, Lower and
	// Upper the band it considers ordinary. NaN when it has no estimate.
	Expected, Lower, Upper float64
	// Detector names the detector that produced the score (for an ensemble,
	// the member that decided), and Reason says why in words.
	Detector string
	Reason   string
}

// Detector scores one series. Update is fed points in time order; points
// with a NaN value, a timestamp equal to or before the last one, or a value
// that is not finite are absorbed without disturbing the state (they get the
// last result's band, Score 0, and a Reason saying why). A Detector is not
// safe for concurrent use.
type Detector interface {
	// Update takes the next point and scores it, using this point and
	// earlier ones only.
	Update(t time.Time, v float64) Result
	// Reset forgets all history, as for a new model version.
	Reset()
}

// Options configure detectors. Zero fields take DefaultOptions' values.
type Options struct {
	// MinHistory is how many points a detector needs before it scores.
	MinHistory int
	// Window is how many recent points the level detectors keep (the
	// seasonal residuals: Window/2 in the ensemble). Memory grows with it:
	// about 16 bytes a point per window.
	Window int
}

// DefaultOptions returns the options detectors use when none are given.
func DefaultOptions() Options {
	return Options{MinHistory: 150, Window: 1024}
}

func (o *Options) setDefaults() {
	d := DefaultOptions()
	if o.MinHistory <= 0 {
		o.MinHistory = d.MinHistory
	}
	if o.Window <= 0 {
		o.Window = d.Window
	}
}

// Size returns the bytes d holds for its series (its struct and buffers),
// or 0 for a detector that does not report it.
func Size(d Detector) int {
	if s, ok := d.(interface{ Size() int }); ok {
		return s.Size()
	}
	return 0
}

// Default is the name of the default algorithm: the best on the Numenta
// Anomaly Benchmark.
const Default = "ensemble"

// constructors maps each algorithm name to its constructor. Each detector's
// file adds its line here.
func constructors() map[string]func(Options) Detector {
	return map[string]func(Options) Detector{
		"mad":      func(o Options) Detector { return NewMAD(o) },
		"seasonal": func(o Options) Detector { return NewSeasonal(o) },
		"cusum":    func(o Options) Detector { return NewCUSUM(o) },
		"ensemble": func(o Options) Detector { return NewEnsemble(o) },
	}
}

// Algorithms lists the algorithm names New accepts, sorted.
func Algorithms() []string {
	cs := constructors()
	out := make([]string, 0, len(cs))
	for n := range cs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// New returns a detector running the named algorithm.
func New(name string, o Options) (Detector, error) {
	f, ok := constructors()[name]
	if !ok {
		return nil, fmt.Errorf("unknown anomaly algorithm %q (have %v)", name, Algorithms())
	}
	o.setDefaults()
	return f(o), nil
}
