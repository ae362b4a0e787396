package anomaly

import (
	"math"
	"time"
)

// maxSeason is the longest season, in points, the seasonal detector keeps:
// a week at 5-minute steps, or a day at 42-second steps. Longer seasons are
// not modelled, which bounds the memory to seasonCycles·maxSeason values.
const maxSeason = 2016

// seasonCycles is how many past cycles the seasonal expectation takes the
// median of: three, so that one past anomaly does not echo a cycle later.
const seasonCycles = 3

// seasonalZ is the robust z of the seasonal residual that maps to Threshold.
const seasonalZ = 5

// Seasonal is the seasonal detector. It estimates the sampling step from the
// first points (the median of the first 15 intervals), takes a day as the
// season (a week when a day has fewer than 24 points; none when the season
// would exceed maxSeason points, and the detector then keeps learning), and
// expects each point to be the median of the values one, two and three
// seasons before, moved by an offset for the change of level since. The
// residual is scored like the mad detector scores values: against the
// median and MAD of the last Options.Window residuals.
//
// The offset is the median of the residuals while Options.Window holds four
// seasons or more: a level shift is in the residuals for two seasons only,
// until the median of the three past values takes it in, so it never makes up
// half the window, and the offset never takes it in. With a shorter window
// (more than a quarter of a window per season: a day at 5-minute steps in the
// ensemble's 512 residuals, at 2-minute steps in the default 1,024) it did,
// within half a window; two seasons later the median of the past values took
// the shift in too, and the expectation counted it twice and alarmed again.
// Each of the three past values then gets its own offset instead: the median
// of the recent differences between a point and the value that many seasons
// before it (the last season and a half's, at most Options.Window/2 of them; a
// remedian). All three take a shift in within half their window (at most three
// quarters of a season); after that, the offset of the values j seasons before
// is stale only for the first half-window of the j-th season after the shift,
// when the values it moves have taken the shift in as well. A window shorter
// than two seasons keeps those spells apart, so at most one of the three
// values is off at a time and the median outvotes it; a season and a half
// leaves a quarter of a season between them. Where one offset is enough it is
// the steadier estimate: offsets per value on every series cost 11 more false
// pages on the six hourly NAB series (24-point seasons) in alertd's NAB replay
// (BENCHMARKS.md).
//
// Timestamps are taken as the steps they are meant to be: a point arriving
// after a gap fills the gap's slots (at most one season) with its own value,
// so the phase stays aligned with the clock.
type Seasonal struct {
	o      Options
	g      guard
	steps  stepEstimator
	period int       // season in points; 0 until the step is known
	hist   []float64 // ring of the last seasonCycles·period values
	n      int       // values pushed into hist
	// off[j] takes the differences v - (value j+1 seasons before), and
	// its median over at most a season and a half is that past value's
	// offset, when perLag (see Seasonal).
	off    [seasonCycles]remedian
	perLag bool
	res    window // recent residuals
	// z and s are the last scored point's residual in robust deviations
	// and the residual scale, for the ensemble.
	z, s float64
}

// NewSeasonal returns a seasonal detector.
func NewSeasonal(o Options) *Seasonal {
	o.setDefaults()
	d := &Seasonal{
		o:    o,
		hist: make([]float64, seasonCycles*maxSeason),
		res:  newWindow(o.Window),
	}
	for j := range d.off {
		d.off[j].meds = newWindow(max(o.Window/2/remedianBlock, 1))
	}
	return d
}

// Period returns the season in points, 0 while it is not known yet.
func (d *Seasonal) Period() int { return d.period }

// Update implements Detector.
func (d *Seasonal) Update(t time.Time, v float64) Result {
	if r, ok := d.g.admit(t, v, "seasonal"); !ok {
		return r
	}
	slots := 1
	if d.g.seen {
		dt := t.Sub(d.g.last)
		d.steps.add(dt)
		if d.period == 0 {
			if step := d.steps.step(); step > 0 {
				d.period = seasonFor(step)
				if d.perLag = 4*d.period > d.o.Window; d.perLag {
					for j := range d.off {
						d.off[j].meds.limit(max(3*d.period/2/remedianBlock, 1))
					}
				}
			}
		} else if step := d.steps.step(); step > 0 && dt > step*3/2 {
			slots = min(int((dt+step/2)/step), d.period)
		}
	}
	for range slots - 1 {
		d.push(v)
	}
	r := d.score(v)
	d.push(v)
	return d.g.done(t, r)
}

// expected returns the seasonal expectation for the next point, NaN while
// fewer than one season is held.
func (d *Seasonal) expected() float64 {
	p := d.period
	if p == 0 || d.n < p {
		return math.NaN()
	}
	var c [seasonCycles]float64
	k := 0
	for j := 1; j <= seasonCycles && d.n >= j*p; j++ {
		c[k] = d.at(j * p)
		if off := &d.off[j-1].meds; d.perLag && off.len() > 0 {
			c[k] += off.median()
		}
		k++
	}
	insertionSort(c[:k])
	e := c[k/2]
	if k%2 == 0 {
		e = (c[k/2-1] + c[k/2]) / 2
	}
	return e
}

// at returns the value pushed lag pushes before the next one (lag ≥ 1).
func (d *Seasonal) at(lag int) float64 {
	size := seasonCycles * d.period
	i := (d.n - lag) % size
	return d.hist[i]
}

func (d *Seasonal) push(v float64) {
	if d.period == 0 {
		return
	}
	d.hist[d.n%(seasonCycles*d.period)] = v
	d.n++
}

func (d *Seasonal) score(v float64) Result {
	e := d.expected()
	if math.IsNaN(e) {
		return learning("seasonal", math.NaN(), math.NaN(), math.NaN())
	}
	for j := 1; d.perLag && j <= seasonCycles && d.n >= j*d.period; j++ {
		d.off[j-1].push(v - d.at(j*d.period))
	}
	res := v - e
	m := d.res.median()
	s := scale(&d.res, m)
	exp := e + m
	var r Result
	if d.res.len() < min(d.o.MinHistory, d.o.Window) {
		r = learning("seasonal", exp, exp-seasonalZ*s, exp+seasonalZ*s)
	} else {
		z := math.Abs(res-m) / s
		d.z, d.s = z, s
		r = Result{
			Score:    squash(z, seasonalZ),
			Expected: exp, Lower: exp - seasonalZ*s, Upper: exp + seasonalZ*s,
			Detector: "seasonal", Reason: reasonSeasonal,
		}
	}
	d.res.push(res)
	return r
}

// Reset implements Detector.
func (d *Seasonal) Reset() {
	d.g = guard{}
	d.steps = stepEstimator{}
	d.period, d.n, d.perLag = 0, 0, false
	d.z, d.s = 0, 0
	d.res.reset()
	for j := range d.off {
		d.off[j].meds.reset()
		d.off[j].n = 0
	}
}

// Size returns the bytes the detector holds.
func (d *Seasonal) Size() int {
	n := sizeofStruct(d) + 8*cap(d.hist) + d.res.bytes()
	for j := range d.off {
		n += d.off[j].meds.bytes()
	}
	return n
}

// seasonFor returns the season, in points, for sampling step step: a day,
// or a week when a day is fewer than 24 points; 0 when neither fits.
func seasonFor(step time.Duration) int {
	day := int((24*time.Hour + step/2) / step)
	switch {
	case day >= 24 && day <= maxSeason:
		return day
	case 7*day >= 24 && 7*day <= maxSeason:
		return 7 * day
	}
	return 0
}

// stepEstimator estimates the sampling step as the median of the first
// stepSamples intervals between points.
type stepEstimator struct {
	d [stepSamples]time.Duration
	n int
	s time.Duration
}

const stepSamples = 15

func (e *stepEstimator) add(dt time.Duration) {
	if e.n == stepSamples || dt <= 0 {
		return
	}
	// Insertion sort: no allocation, and at most stepSamples values.
	i := e.n
	for i > 0 && e.d[i-1] > dt {
		e.d[i] = e.d[i-1]
		i--
	}
	e.d[i] = dt
	e.n++
	if e.n == stepSamples {
		e.s = e.d[stepSamples/2]
	}
}

// step returns the estimate once stepSamples intervals were seen, else 0.
func (e *stepEstimator) step() time.Duration { return e.s }

// remedianBlock is how many values each block median of a remedian takes.
const remedianBlock = 8

// remedian is a robust running median over a long window at a small cost
// (Rousseeuw and Bassett, "The remedian", 1990): the median of the medians
// of the last blocks of remedianBlock values, kept in a window of block
// medians. A window of every value costs two binary searches a value: for
// the seasonal offsets, 2.5 times the seasonal detector's time per point
// and 1.7 times the ensemble's. The remedian sorts a block of 8 values
// every 8 values instead, and follows a level shift as the window does,
// once more than half its blocks hold the shifted values. With blocks of
// 16 or 32 values, one shift of 6 noise units in TestBlindAfterHugeSpike,
// at the seasonal detector's threshold (z 5.04 without the spike, 4.99
// with it), was no longer found after the spike.
type remedian struct {
	block [remedianBlock]float64 // the current block
	n     int                    // values in block
	meds  window                 // medians of the last blocks
}

// push takes the next value.
func (r *remedian) push(x float64) {
	r.block[r.n] = x
	if r.n++; r.n < remedianBlock {
		return
	}
	r.n = 0
	insertionSort(r.block[:])
	r.meds.push(r.block[remedianBlock/2-1]/2 + r.block[remedianBlock/2]/2)
}

// insertionSort sorts a few values in place without allocating.
func insertionSort(a []float64) {
	for i := 1; i < len(a); i++ {
		x := a[i]
		j := i
		for j > 0 && a[j-1] > x {
			a[j] = a[j-1]
			j--
		}
		a[j] = x
	}
}
