package anomaly

import (
	"math"
	"time"
)

// Ensemble parameters. They were chosen on the NAB data in
// ../shared/bench/nab (see BENCHMARKS.md), each from a few round values,
// and are the same for every series: nothing depends on a series' name or
// labels.
const (
	// levelZ is the robust z of the level and seasonal residuals that counts
	// as one unit of surprise.
	levelZ = 5
	// seasonalRatio: the seasonal model replaces the level model when its
	// mean absolute residual is below this fraction of the level model's.
	seasonalRatio = 0.7
	// surpriseQuantile: surprise is divided by this quantile of the
	// series' own recent surprises (when above 1), so a series that is
	// always spiky needs a bigger spike to alert than a calm one.
	surpriseQuantile = 0.96
	histBlock        = 4
	// likShort and likAlpha: the likelihood term compares the mean raw
	// score of the last likShort points with the long-run mean and
	// deviation of that mean (exponentially weighted, time constant
	// 1/likAlpha points), like Numenta's anomaly likelihood; likZ of its
	// z-score counts as one unit of surprise. It finds anomalies that are
	// a run of moderately odd points (variance changes, slow shifts,
	// trend changes) rather than one extreme point.
	likShort = 10
	likAlpha = 0.001
	likZ     = 8
	likWarm  = 300 // points before the long-run statistics are trusted
	// peakDecay and peakPower: a point scores in full only when its
	// surprise is at least the decayed maximum of the recent surprises;
	// below it the score is scaled by (surprise/peak)^peakPower. The
	// first point of an anomaly scores, its echoes do not.
	peakDecay = 0.97
	peakPower = 4 // written out as q*q*q*q in score
	// refractory and refractoryFactor: for refractory points after a
	// score at or above refractoryScore, scores are multiplied by
	// refractoryFactor, so one anomaly raises one alert.
	refractory       = 30
	refractoryScore  = 0.55
	refractoryFactor = 0.1
)

// Ensemble is the default detector. It combines
//
//   - the level model of the mad detector (median and MAD of the last
//     Options.Window points),
//   - the seasonal model of the seasonal detector, which replaces the level
//     model on series where it explains the data clearly better,
//   - and a likelihood term over the last few raw scores, which catches
//     changes (level shifts, trend and variance changes) that no single
//     point reveals,
//
// into one surprise, normalised by the series' own history of surprises,
// and maps it to [0, 1]. It then keeps the first point of an anomaly and
// damps the ones that follow (a decayed peak and a short refractory period),
// since an alert wants one page per incident, not one per point.
type Ensemble struct {
	o    Options
	g    guard
	lvl  window   // recent values
	seas Seasonal // the seasonal detector, fed the same points
	hist window   // recent surprises

	seasAbs, lvlAbs float64 // EW mean absolute residuals of both models

	short    [likShort]float64 // ring of the last raw scores
	shortSum float64
	nShort   int
	mu, v2   float64 // EW mean and variance of the short mean

	block  float64 // maximum surprise of the current block
	nBlock int     // points in the current block

	peak  float64 // decayed maximum of recent surprises
	quiet int     // points left in the refractory period
}

// NewEnsemble returns the ensemble detector.
func NewEnsemble(o Options) *Ensemble {
	o.setDefaults()
	so := o
	so.Window = max(o.Window/2, 1)
	return &Ensemble{
		o:    o,
		lvl:  newWindow(o.Window),
		seas: *NewSeasonal(so),
		hist: newWindow(max(o.Window/histBlock, 1)),
	}
}

// Update implements Detector.
func (d *Ensemble) Update(t time.Time, v float64) Result {
	if r, ok := d.g.admit(t, v, "ensemble"); !ok {
		return r
	}
	sr := d.seas.Update(t, v)
	var r Result
	if n := d.lvl.len(); n < min(d.o.MinHistory, d.o.Window) {
		r = learning("ensemble", math.NaN(), math.NaN(), math.NaN())
		if n > 0 {
			m := d.lvl.median()
			s := scale(&d.lvl, m)
			r.Expected, r.Lower, r.Upper = m, m-levelZ*s, m+levelZ*s
		}
	} else {
		r = d.score(v, sr)
	}
	d.lvl.push(v)
	return d.g.done(t, r)
}

func (d *Ensemble) score(v float64, sr Result) Result {
	m := d.lvl.median()
	s := scale(&d.lvl, m)
	zl := math.Abs(v-m) / s
	z := zl / levelZ
	r := Result{Expected: m, Detector: "mad", Reason: reasonLevel}
	width := s // the model's noise scale, for the band
	if !sr.Learning {
		zs := d.seas.z
		ss := d.seas.s
		d.seasAbs += 0.01 * (math.Min(zs, 10)*ss - d.seasAbs)
		d.lvlAbs += 0.01 * (math.Min(zl, 10)*s - d.lvlAbs)
		if d.seasAbs < seasonalRatio*d.lvlAbs {
			z = zs / seasonalZ
			r.Expected, r.Detector, r.Reason = sr.Expected, "seasonal", reasonSeasonal
			width = ss
		}
	}

	// Normalise by the series' own recent surprises.
	norm := 1.0
	if d.hist.len() > 0 {
		norm = math.Max(d.hist.quantile(surpriseQuantile), 1)
	}
	d.block = math.Max(d.block, z)
	if d.nBlock++; d.nBlock == histBlock {
		d.hist.push(d.block)
		d.block, d.nBlock = 0, 0
	}
	z /= norm
	half := levelZ * norm * width
	r.Lower, r.Upper = r.Expected-half, r.Expected+half

	if zz := d.likelihood(squash(z, 1)) / likZ; zz > z && d.nShort > likWarm {
		z = zz
		r.Detector, r.Reason = "likelihood", reasonLikelihood
	}

	score := squash(z, 1)
	if z < d.peak {
		q := z / d.peak
		score *= q * q * q * q // (z/peak)^peakPower
	}
	d.peak = math.Max(d.peak*peakDecay, z)
	if d.quiet > 0 {
		d.quiet--
		score *= refractoryFactor
	} else if score >= refractoryScore {
		d.quiet = refractory
	}
	r.Score = score
	return r
}

// likelihood adds raw to the short window and returns how many long-run
// deviations the short window's mean lies above its long-run mean (0 when
// below).
func (d *Ensemble) likelihood(raw float64) float64 {
	i := d.nShort % likShort
	d.shortSum += raw - d.short[i]
	d.short[i] = raw
	d.nShort++
	avg := d.shortSum / float64(min(d.nShort, likShort))
	if d.nShort == 1 {
		d.mu, d.v2 = avg, 0
	}
	z := (avg - d.mu) / (math.Sqrt(d.v2) + 1e-3)
	dx := avg - d.mu
	d.mu += likAlpha * dx
	d.v2 = (1 - likAlpha) * (d.v2 + likAlpha*dx*dx)
	return math.Max(z, 0)
}

// Reset implements Detector.
func (d *Ensemble) Reset() {
	d.g = guard{}
	d.lvl.reset()
	d.seas.Reset()
	d.hist.reset()
	d.seasAbs, d.lvlAbs = 0, 0
	d.short, d.shortSum, d.nShort = [likShort]float64{}, 0, 0
	d.mu, d.v2, d.peak, d.quiet = 0, 0, 0, 0
	d.block, d.nBlock = 0, 0
}

// Size returns the bytes the detector holds.
func (d *Ensemble) Size() int {
	return sizeofStruct(d) - sizeofStruct(&d.seas) + d.seas.Size() + d.lvl.bytes() + d.hist.bytes()
}
