package anomaly

import (
	"math"
	"time"
)

// CUSUM parameters, in units of the noise scale: the drift k that the sums
// forgive per point (half the smallest shift worth finding, one noise
// unit), the sum h that maps to Threshold, and the clip on each standardised
// point, so that a lone spike (the mad detector's job) cannot push the sums
// over h on its own.
const (
	cusumK    = 0.5
	cusumH    = 10
	cusumClip = 4
)

// CUSUM is the change-point detector: a two-sided tabular CUSUM (Page 1954)
// of the values standardised by the median and MAD of the last
// Options.Window points. A level shift of δ noise units crosses the
// threshold after about cusumH/(δ-cusumK) points; a trend change makes the
// standardised values grow steadily and crosses it too. The sums restart
// from 0 after each signal, so a change raises one alarm, and another every
// cusumH/(δ-cusumK) points only while the rolling median has not caught up
// with the new level.
type CUSUM struct {
	o      Options
	g      guard
	w      window
	hi, lo float64 // upper and lower cumulative sums
}

// NewCUSUM returns a change-point detector.
func NewCUSUM(o Options) *CUSUM {
	o.setDefaults()
	return &CUSUM{o: o, w: newWindow(o.Window)}
}

// Update implements Detector.
func (d *CUSUM) Update(t time.Time, v float64) Result {
	if r, ok := d.g.admit(t, v, "cusum"); !ok {
		return r
	}
	var r Result
	if d.w.len() == 0 {
		r = learning("cusum", math.NaN(), math.NaN(), math.NaN())
	} else {
		m := d.w.median()
		s := scale(&d.w, m)
		band := cusumClip * s
		if d.w.len() < min(d.o.MinHistory, d.o.Window) {
			r = learning("cusum", m, m-band, m+band)
		} else {
			z := d.step((v - m) / s)
			r = Result{
				Score:    squash(z, cusumH),
				Expected: m, Lower: m - band, Upper: m + band,
				Detector: "cusum", Reason: reasonChange,
			}
		}
	}
	d.w.push(v)
	return d.g.done(t, r)
}

// step adds the standardised value z to the sums and returns the larger.
func (d *CUSUM) step(z float64) float64 {
	z = math.Max(-cusumClip, math.Min(cusumClip, z))
	d.hi = math.Max(0, d.hi+z-cusumK)
	d.lo = math.Max(0, d.lo-z-cusumK)
	g := math.Max(d.hi, d.lo)
	if g >= cusumH {
		d.hi, d.lo = 0, 0 // signalled: restart, as a tabular CUSUM does
	}
	return g
}

// Reset implements Detector.
func (d *CUSUM) Reset() {
	d.w.reset()
	d.g = guard{}
	d.hi, d.lo = 0, 0
}

// Size returns the bytes the detector holds.
func (d *CUSUM) Size() int { return sizeofStruct(d) + d.w.bytes() }
