package anomaly

import (
	"math"
	"time"
)

// madZ is the robust z-score that the mad detector maps to Threshold: far
// enough out that Gaussian noise crosses it about once in two million points,
// and heavy-tailed noise still rarely.
const madZ = 5

// MAD is the robust level detector: it scores how far a point lies from the
// median of the last Options.Window points, in units of their median
// absolute deviation (scaled to a standard deviation). The point itself is
// not in the window it is compared with, so a single spike scores in full.
type MAD struct {
	o Options
	g guard
	w window
}

// NewMAD returns a robust level detector.
func NewMAD(o Options) *MAD {
	o.setDefaults()
	return &MAD{o: o, w: newWindow(o.Window)}
}

// Update implements Detector.
func (d *MAD) Update(t time.Time, v float64) Result {
	if r, ok := d.g.admit(t, v, "mad"); !ok {
		return r
	}
	var r Result
	if d.w.len() == 0 {
		r = learning("mad", math.NaN(), math.NaN(), math.NaN())
	} else {
		m := d.w.median()
		s := scale(&d.w, m)
		if d.w.len() < min(d.o.MinHistory, d.o.Window) {
			r = learning("mad", m, m-madZ*s, m+madZ*s)
		} else {
			z := math.Abs(v-m) / s
			r = Result{
				Score:    squash(z, madZ),
				Expected: m, Lower: m - madZ*s, Upper: m + madZ*s,
				Detector: "mad",
				Reason:   reasonLevel,
			}
		}
	}
	d.w.push(v)
	return d.g.done(t, r)
}

// Reset implements Detector.
func (d *MAD) Reset() {
	d.w.reset()
	d.g = guard{}
}

// Size returns the bytes the detector holds.
func (d *MAD) Size() int { return sizeofStruct(d) + d.w.bytes() }
