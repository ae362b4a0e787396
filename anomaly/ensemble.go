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
	surpriseQuantile = 0.98
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
	likZ     = 5
	likRaw   = 0.5 // z of the raw score fed to the likelihood: squash(z, likRaw)
	likWarm  = 100 // points before the long-run statistics are trusted
	// spatialTol and spatialZ: a value outside the range of every value
	// seen so far, widened by spatialTol of its width on each side, counts
	// as at least spatialZ units of surprise (score 0.9), as the spatial
	// anomaly of NAB's HTM detector does: a new extreme is news even when
	// the level window has forgotten the old ones.
	spatialTol  = 0.05
	spatialZ    = 3
	spatialWarm = 600 // points before the range is trusted
	// rangeKeep and rangeReach: the range leaves out the rangeKeep-1
	// highest and lowest values seen when they lie more than rangeReach
	// times the width of the rest beyond it (see extremes), so that one or
	// two enormous values do not stretch it for good. NAB scores the same
	// leaving out 1 to 3 values, with a reach of 3 or 10; a reach of 1
	// costs 0.16 on the standard profile.
	rangeKeep  = 3
	rangeReach = 3
	// peakDecay and peakPower: a point scores in full only when its
	// surprise is at least the decayed maximum of the recent surprises;
	// below it the score is scaled by (surprise/peak)^peakPower. The
	// first point of an anomaly scores, its echoes do not.
	peakDecay = 0.97
	peakPower = 4 // written out as q*q*q*q in score
	// peakCap: the peak learns each surprise clipped at peakCap, as a
	// Huber-type estimator caps what one observation can contribute
	// (Huber 1964), so one point damps the ones after it for at most
	// ln(peakCap)/-ln(peakDecay) ≈ 100 points (until the peak is back at
	// 1, a score of 0.5), however extreme it was. Beyond peakCap the score
	// is 0.9975 or more: more surprise no longer changes the verdict, so it
	// must not lengthen the damping either. Unclipped, a value 1e6 times
	// the noise scale (a surprise of 2e5) damped every point for about 400
	// points, and the first burst of a flat series (5e14 against its
	// floored scale) for over 1,000. A cap of 5 would end the damping
	// with the refractory period, but also lets through the echoes of
	// ordinary spikes (a surprise of 12, 34 points later) that NAB counts
	// as false positives.
	peakCap = 20
	// refractory and refractoryFactor: for refractory points after a
	// score at or above refractoryScore, scores are multiplied by
	// refractoryFactor, so one anomaly raises one alert.
	refractory       = 30
	refractoryScore  = 0.55
	refractoryFactor = 0.1
	// novWarm: after novWarm points, the level and seasonal surprise is
	// multiplied by the square root of the novelty of the pattern that
	// ends in this point (see novelty): a spike the series has made before
	// after the same few values is no news.
	novWarm = 200
)

// Ensemble is the default detector. It combines
//
//   - the level model of the mad detector (median and MAD of the last
//     Options.Window points),
//   - the seasonal model of the seasonal detector, which replaces the level
//     model on series where it explains the data clearly better,
//   - a likelihood term over the last few raw scores, which catches
//     changes (level shifts, trend and variance changes) that no single
//     point reveals,
//   - a range term: a value beyond every value seen so far (but for one
//     or two far beyond all the others) is odd,
//   - and a pattern-novelty gate on the level model (novelty): a point
//     the level model finds odd counts less when the series has already
//     made the same short pattern of values (a recurring burst is no
//     news, a change in the pattern of bursts is),
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

	lik likTerm // the likelihood term over the last raw scores

	nov novelty // the pattern-novelty gate

	block  float64 // maximum surprise of the current block
	nBlock int     // points in the current block

	ext  extremes // the extremes of all values seen, for the range
	seen int      // values seen

	novRaw float64
	peak   float64 // decayed maximum of recent surprises
	quiet  int     // points left in the refractory period
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
	d.novRaw = d.nov.add(d.lvl.rank(v))
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
	d.seen++
	d.ext.add(v)
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
	if d.nov.n > novWarm && r.Detector == "mad" {
		z *= math.Sqrt(d.novRaw)
	}
	half := levelZ * norm * width
	r.Lower, r.Upper = r.Expected-half, r.Expected+half

	if zz := d.lik.add(squash(z, likRaw)) / likZ; zz > z && d.lik.n > likWarm {
		z = zz
		r.Detector, r.Reason = "likelihood", reasonLikelihood
	}

	if d.seen > spatialWarm && d.ext.outside(v) {
		if z < spatialZ {
			z = spatialZ
			r.Detector, r.Reason = "range", reasonRange
		}
	}

	score := squash(z, 1)
	if z < d.peak {
		q := z / d.peak
		score *= q * q * q * q // (z/peak)^peakPower
	}
	d.peak = math.Max(d.peak*peakDecay, math.Min(z, peakCap))
	if d.quiet > 0 {
		d.quiet--
		score *= refractoryFactor
	} else if score >= refractoryScore {
		d.quiet = refractory
	}
	r.Score = score
	return r
}

// Reset implements Detector.
func (d *Ensemble) Reset() {
	d.g = guard{}
	d.lvl.reset()
	d.seas.Reset()
	d.hist.reset()
	d.seasAbs, d.lvlAbs = 0, 0
	d.lik = likTerm{}
	d.nov = novelty{}
	d.peak, d.quiet = 0, 0
	d.block, d.nBlock = 0, 0
	d.ext, d.seen = extremes{}, 0
}

// extremes keeps the rangeKeep highest and lowest values seen, for the
// range term.
//
// The range it gives is that of all values seen but for the rangeKeep-1
// most extreme on each side when they lie more than rangeReach times the
// width of the rest (the core: from the rangeKeep-th lowest to the
// rangeKeep-th highest) beyond it. Before, one value 1e6 times a series'
// noise scale stretched the range of all values seen for good, and the
// range term flagged nothing again, not even a level rising slowly past
// every value seen (which the level model takes in as it rises). As the
// standard deviation in the noise scale is winsorised (winsorisedStd), the
// range is now that of the values seen bar one or two far beyond all the
// others. A value within reach of the core, such as the top of a heavy
// tail, stays in it, and so does a new level: after rangeKeep values at
// it, it is the core's edge.
type extremes struct {
	hi [rangeKeep]float64 // the highest values seen, descending
	lo [rangeKeep]float64 // the lowest values seen, ascending
	n  int                // values held in hi and lo (at most rangeKeep)
}

// add takes the next value.
func (x *extremes) add(v float64) {
	if x.n < rangeKeep {
		x.n++
		x.hi[x.n-1], x.lo[x.n-1] = math.Inf(-1), math.Inf(1)
	}
	for i := range x.n { // insert into hi, dropping the last
		if v > x.hi[i] {
			copy(x.hi[i+1:x.n], x.hi[i:x.n-1])
			x.hi[i] = v
			break
		}
	}
	for i := range x.n {
		if v < x.lo[i] {
			copy(x.lo[i+1:x.n], x.lo[i:x.n-1])
			x.lo[i] = v
			break
		}
	}
}

// bounds returns the range: the lowest and highest values seen within
// rangeReach times the core's width of it.
func (x *extremes) bounds() (lo, hi float64) {
	if x.n == 0 {
		return math.NaN(), math.NaN()
	}
	lo, hi = x.lo[x.n-1], x.hi[x.n-1]
	reach := rangeReach * (hi - lo)
	for i := range x.n - 1 {
		if x.hi[i]-hi <= reach {
			hi = x.hi[i]
			break
		}
	}
	for i := range x.n - 1 {
		if lo-x.lo[i] <= reach {
			lo = x.lo[i]
			break
		}
	}
	return lo, hi
}

// outside reports whether v lies beyond the range widened by spatialTol of
// its width on each side.
func (x *extremes) outside(v float64) bool {
	lo, hi := x.bounds()
	tol := spatialTol * (hi - lo)
	return v > hi+tol || v < lo-tol
}

// likTerm compares the mean of the last likShort inputs with the long-run
// mean and deviation of that mean (exponentially weighted).
type likTerm struct {
	short  [likShort]float64
	sum    float64
	n      int
	mu, v2 float64
}

// add takes the next input and returns how many long-run deviations the
// short mean lies above its long-run mean (0 when below).
func (l *likTerm) add(raw float64) float64 {
	i := l.n % likShort
	l.sum += raw - l.short[i]
	l.short[i] = raw
	l.n++
	avg := l.sum / float64(min(l.n, likShort))
	if l.n == 1 {
		l.mu, l.v2 = avg, 0
	}
	z := (avg - l.mu) / (math.Sqrt(l.v2) + 1e-3)
	dx := avg - l.mu
	l.mu += likAlpha * dx
	l.v2 = (1 - likAlpha) * (l.v2 + likAlpha*dx*dx)
	return math.Max(z, 0)
}

// Size returns the bytes the detector holds.
func (d *Ensemble) Size() int {
	return sizeofStruct(d) - sizeofStruct(&d.seas) + d.seas.Size() + d.lvl.bytes() + d.hist.bytes()
}
