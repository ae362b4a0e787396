package anomaly

import (
	"math"
	"time"
	"unsafe"
)

// guard holds what every detector does before scoring a point: it drops
// points that are not finite or not after the last one, and remembers the
// last answer so that a dropped point gets its band.
type guard struct {
	last   time.Time
	seen   bool
	result Result
}

// admit reports whether the point (t, v) should be scored. When it should
// not, r is the answer for it: score 0, the last band, and the reason.
func (g *guard) admit(t time.Time, v float64, name string) (r Result, ok bool) {
	var reason string
	switch {
	case math.IsNaN(v):
		reason = "value is NaN, skipped"
	case math.IsInf(v, 0):
		reason = "value is not finite, skipped"
	case g.seen && t.Equal(g.last):
		reason = "timestamp repeats the previous one, skipped"
	case g.seen && t.Before(g.last):
		reason = "timestamp is before the previous one, skipped"
	default:
		return Result{}, true
	}
	r = g.result
	if !g.seen {
		r = Result{Expected: math.NaN(), Lower: math.NaN(), Upper: math.NaN(), Learning: true}
	}
	r.Score = 0
	r.Detector = name
	r.Reason = reason
	return r, false
}

// done records t and the answer given for it.
func (g *guard) done(t time.Time, r Result) Result {
	g.last, g.seen, g.result = t, true, r
	return r
}

// learning returns the answer for a point scored without enough history.
func learning(name string, expected, lower, upper float64) Result {
	return Result{Learning: true, Expected: expected, Lower: lower, Upper: upper, Detector: name, Reason: "learning"}
}

// squash maps a non-negative surprise z (a robust z-score, a CUSUM
// statistic in noise units) onto [0, 1): z0 maps to 0.5, and the map keeps
// order, so no resolution is lost at the top where thresholds are set.
func squash(z, z0 float64) float64 {
	if !(z > 0) { // also NaN
		return 0
	}
	q := z / z0
	if q > 1e9 {
		// q*q/(1+q*q) rounds to 1 from here on, and q*q overflows to
		// +Inf, and Inf/Inf is NaN, from about 1e154 (also z = +Inf).
		return 1
	}
	return q * q / (1 + q*q)
}

// Threshold is the score at or above which a point is an anomaly worth an
// alert. Each detector scales its surprise so that the threshold means about
// the same for all of them; the bands in Result are the values that would
// score exactly Threshold.
const Threshold = 0.5

// scale returns the noise scale of w around its median m: the largest of
// the MAD and the 10–90 % spread (each scaled to a normal standard
// deviation) and the standard deviation. For Gaussian noise the three
// agree; the spread keeps quantised series whose MAD is 0 usable, and the
// standard deviation keeps spiky series (mostly flat, with bursts) from
// scoring every burst at infinity. The standard deviation is winsorised
// (winsorisedStd), since it is the one of the three that a single value
// can inflate without bound: as the MAD in Twitter's S-H-ESD, the scale
// must not be set by the outliers it is meant to find. A relative floor
// keeps a constant series from dividing by zero.
//
// The scale moves slowly with the window, so it is recomputed every
// scaleEvery pushes (and whenever the window holds fewer than 2·scaleEvery
// values) and cached in between: that halves the cost of a point.
func scale(w *window, m float64) float64 {
	if w.age < scaleEvery && w.len() >= 2*scaleEvery {
		return w.scale
	}
	w.scale, w.age = computeScale(w, m), 0
	return w.scale
}

// scaleEvery is how many pushes a cached scale is used for.
const scaleEvery = 8

func computeScale(w *window, m float64) float64 {
	s := 1.4826 * w.mad(m)
	if n := w.len(); n >= 10 {
		s = math.Max(s, (w.quantile(0.9)-w.quantile(0.1))/2.5631)
	}
	s = math.Max(s, w.winsorisedStd())
	return math.Max(s, 1e-9*math.Max(1, math.Abs(m)))
}

// Reasons are fixed strings, so that Update does not allocate; the numbers
// behind them are in Result's Expected, Lower and Upper.
const (
	reasonLevel      = "distance from the rolling median, in robust deviations"
	reasonSeasonal   = "distance from the value one season ago, in robust deviations of the seasonal residual"
	reasonChange     = "level shift or trend change: CUSUM of standardised values"
	reasonLikelihood = "run of unusual points: mean recent score far above its long-run level"
	reasonRange      = "outside the range of all values seen so far"
)

// sizeofStruct returns the size of *p itself, without what it points to.
func sizeofStruct[T any](p *T) int { return int(unsafe.Sizeof(*p)) }
