package drift

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"gonum.org/v1/gonum/stat/distuv"
)

// CalibratorOptions configure a Calibrator. Zero fields take their default.
type CalibratorOptions struct {
	// Alpha is the false-alarm level (default 0.05): the share of windows flagged
	// when nothing drifted.
	Alpha float64
	// Rounds is the number of simulated no-drift windows per threshold (default
	// 1999). At least log(0.1)/log(1-Alpha) are needed: 45 for Alpha = 0.05.
	Rounds int
	// Seed seeds the simulations. Each (feature, sample size) gets its own stream
	// derived from Seed, the feature's name and the size, so thresholds do not
	// depend on the order they are asked in, and replicas agree.
	Seed uint64
	// PerDecade is the number of grid sizes per power of ten (default 20).
	PerDecade int
}

// DefaultCalibratorOptions returns the defaults of CalibratorOptions.
func DefaultCalibratorOptions() CalibratorOptions {
	return CalibratorOptions{Alpha: 0.05, Rounds: 1999, PerDecade: 20}
}

// Calibrator computes, by simulation, the thresholds that give every method a
// false-alarm rate of at most α at a window's sample size.
//
// # Simulation
//
// For a feature with N reference values and a window of n values, each round
// draws a plausible truth — fine-bin shares from Dirichlet(reference counts), the
// distribution of the true shares given the reference (Haldane's prior), which
// has the reference's shares as mean and their sampling error as spread — then a
// window of n values from that truth, and computes every statistic between the
// window and the actual reference exactly as Detector.Score does. Keeping the
// actual reference calibrates the rate of this profile, not an average over
// references that might have been drawn; drawing the truth around it accounts for
// the reference's own sampling error, which matters when N is not much larger than
// n, and for rare events: with a missing rate of 0.2%, the threshold becomes a
// number of missing values that windows from a plausible truth rarely reach,
// whatever the z-test's p-value says. (An earlier design drew a pseudo-reference
// and a window and compared them with each other, a two-sample bootstrap: right
// on average over references, but with discrete statistics the rate of one given
// reference then ranged from 2% to 12%.)
//
// The truth may also put mass where the reference saw none: 1/(N+1) below the
// reference minimum and as much above the maximum (the expected mass beyond the
// extremes of N draws of a continuous variable), placed one average reference
// spacing out; for a categorical feature with no other bin, the Good–Turing mass
// max(f₁, 1)/(N+1) of unseen categories, f₁ the categories seen once. The missing
// rate's truth is drawn from Beta(missing + ½, count + ½) (Jeffreys' prior), so
// that a reference without missing values does not make one missing value a
// certain alarm in large windows. Windows are drawn value by value from sorted
// uniforms when n is small, bin by bin with binomial splitting when it is large.
//
// # Thresholds
//
// Of B simulated scores, the threshold of a distance is the k-th largest, and a
// window drifts when its score is larger. A no-drift window exceeds it at a rate
// that is Beta(k, B+1-k) over the simulation's randomness (Monte Carlo test; Besag
// and Clifford, "Generalized Monte Carlo significance tests", Biometrika 76(4),
// 1989): k = α(B+1) would make the rate α on average, half of the time above it.
// So k is the largest order that keeps the rate at most α with 90% confidence;
// with the defaults (α = 0.05, B = 1999) k = 88, an expected rate of 0.044. A test
// (KS, χ², Z, missing) keeps its p-value and drifts when p < min(α, q), q the k-th
// smallest simulated p-value: that is the test at level α, made stricter exactly
// when the simulation shows its p-value to be anti-conservative for this reference
// and window size (χ² with small expected counts, the z-test for a rare missing
// value). The binned KS p-value is conservative (the binned statistic is at most
// the exact one), so q ≥ α for it in practice.
//
// Why not max(fixed threshold, calibrated threshold): the fixed defaults (0.1)
// are effect sizes that ignore n. At small n the calibrated threshold is above
// them, and the fixed one alone would false-alarm far more often than α; at large n
// it is far below them, and taking the max would throw away the power to see a
// real but small shift. So the decision uses the calibrated threshold, and a user
// who only cares about effects above some size sets Options.Floor.
//
// # Sample-size grid
//
// Thresholds depend on n and are cached per feature for n on a geometric grid:
// round(10^(j/PerDecade)), 20 sizes per decade by default (…, 891, 1000, 1122,
// 1259, …), neighbours about 12% apart. A window of n values uses the largest grid
// size g ≤ n. Under no drift every distance concentrates as n grows (the
// f-divergences PSI, JS² and Hellinger² like χ²_{k-1}/n, KS and Wasserstein like
// 1/√n), so the threshold simulated at g is at least the one at n: rounding down
// keeps the rate at or below α, at the cost of a threshold up to 12%
// (f-divergences) or 6% (KS, Wasserstein) higher than needed. The argument is
// asymptotic; for the lattice-valued statistics of small windows it holds on
// average rather than at every n, which the false-alarm tests check. A test's
// p-value is already scaled to n, and only its correction q is taken at g. The
// missing-rate test uses the grid on the window's row count (values plus missing)
// the same way.
//
// A Calibrator is safe for concurrent use; a threshold's first computation (a few
// tens of milliseconds with the defaults) holds a lock.
type Calibrator struct {
	p    *Profile
	opts CalibratorOptions
	k    int // order statistic of the thresholds (see order)

	mu      sync.Mutex
	bins    map[calKey]*[nMethods]float64
	missing map[calKey]float64
}

type calKey struct {
	feature int
	n       int64
}

// Thresholds are a feature's calibrated thresholds at one grid size.
type Thresholds struct {
	// N is the grid size the binned methods were simulated at, Rows the one the
	// missing-rate test was.
	N, Rows int64
	Alpha   float64
	Rounds  int
	// Value holds the threshold of each applicable method: a score for the
	// distances, a p-value for the tests.
	Value map[Method]float64
}

// NewCalibrator returns a Calibrator for the features of p.
func NewCalibrator(p *Profile, opts CalibratorOptions) (*Calibrator, error) {
	if p == nil || p.index == nil {
		return nil, errors.New("profile not validated")
	}
	d := DefaultCalibratorOptions()
	if opts.Alpha == 0 {
		opts.Alpha = d.Alpha
	}
	if opts.Rounds == 0 {
		opts.Rounds = d.Rounds
	}
	if opts.PerDecade == 0 {
		opts.PerDecade = d.PerDecade
	}
	if !(opts.Alpha > 0 && opts.Alpha < 1) {
		return nil, fmt.Errorf("alpha must be in (0, 1), got %v", opts.Alpha)
	}
	if opts.PerDecade < 1 {
		return nil, fmt.Errorf("grid sizes per decade must be at least 1, got %d", opts.PerDecade)
	}
	k := order(opts.Alpha, opts.Rounds)
	if k < 1 {
		// k = 1 needs (1-α)^B ≤ 1 - confidence.
		need := int(math.Ceil(math.Log(1-confidence) / math.Log(1-opts.Alpha)))
		return nil, fmt.Errorf("%d rounds are too few for alpha %v: need at least %d", opts.Rounds, opts.Alpha, need)
	}
	return &Calibrator{p: p, opts: opts, k: k, bins: map[calKey]*[nMethods]float64{}, missing: map[calKey]float64{}}, nil
}

// Alpha is the false-alarm level c calibrates for.
func (c *Calibrator) Alpha() float64 { return c.opts.Alpha }

// Grid returns the largest grid size at most n, or 0 if n < 1.
func (c *Calibrator) Grid(n int64) int64 {
	if n < 1 {
		return 0
	}
	pd := float64(c.opts.PerDecade)
	size := func(j int) int64 { return int64(math.Round(math.Pow(10, float64(j)/pd))) }
	j := int(math.Floor(pd * math.Log10(float64(n))))
	for j > 0 && size(j) > n {
		j--
	}
	for size(j+1) <= n {
		j++
	}
	return size(j)
}

// Thresholds returns the thresholds of feature for a window of n non-missing
// values out of rows, simulating them on first use.
func (c *Calibrator) Thresholds(feature string, n, rows int64) (Thresholds, error) {
	i, ok := c.p.index[feature]
	if !ok {
		return Thresholds{}, fmt.Errorf("unknown feature %q", feature)
	}
	f := c.p.Features[i]
	g, gr := c.Grid(n), c.Grid(rows)
	t := Thresholds{N: g, Rows: gr, Alpha: c.opts.Alpha, Rounds: c.opts.Rounds, Value: map[Method]float64{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g > 0 && f.Count > 0 {
		v := c.binsAt(i, f, g)
		for _, m := range Applicable(f) {
			if m != MethodMissing {
				t.Value[m] = v[m.index()]
			}
		}
	}
	if gr > 0 {
		t.Value[MethodMissing] = c.missingAt(i, f, gr)
	}
	return t, nil
}

// binsAt returns the thresholds of the binned methods at grid size g, by method
// index. The caller holds c.mu.
func (c *Calibrator) binsAt(i int, f *Feature, g int64) *[nMethods]float64 {
	key := calKey{i, g}
	if v, ok := c.bins[key]; ok {
		return v
	}
	rng := rand.New(c.source(f, g, 1))
	b := c.opts.Rounds
	nb := f.nbins

	// The reference's shares, and the window's with the mass the reference could
	// not see (see Calibrator).
	// The truth of each round: shares drawn from Dirichlet(reference counts),
	// scaled by keep, plus the mass unseen[j] the reference could not see.
	N := float64(f.Count)
	unseen := make([]float64, nb)
	keep := 1.0
	var lo, hi float64 // where out-of-range values land
	if f.Kind == Numeric {
		e := f.Numeric.Edges
		u := 1 / (N + 1)
		unseen[0], unseen[nb-1], keep = u, u, 1-2*u
		lo = e[0] - (e[1]-e[0])/math.Max(f.refFine[1], 1)
		hi = f.Numeric.Max + (e[len(e)-1]-e[len(e)-2])/math.Max(f.refFine[nb-2], 1)
	} else if f.Categorical.Other == 0 {
		var f1 float64
		for _, cat := range f.Categorical.Categories {
			if cat.Count == 1 {
				f1++
			}
		}
		u := math.Max(f1, 1) / (N + 1)
		unseen[nb-1], keep = u, 1-u
	}
	truth := make([]float64, nb)
	pCur, tCur := make([]float64, nb), make([]float64, nb)
	// Small windows are drawn value by value, large ones bin by bin.
	var spacings []float64
	if g <= 20*int64(nb) {
		spacings = make([]float64, g+1)
	}
	ref := f.reference()
	cur := Counts{Bins: make([]float64, nb)}
	sc := newScratch(f)
	var sims [nMethods][]float64
	for j := range sims {
		sims[j] = make([]float64, 0, b)
	}
	var m measure
	for range b {
		dirichlet(rng, f.refFine, truth)
		if spacings != nil {
			var t float64
			for j := range nb {
				t += truth[j]*keep + unseen[j]
				tCur[j] = t // cumulative sums
			}
			multinomialSpacings(rng, g, tCur, cur.Bins, spacings)
		} else {
			var t float64
			for j := nb - 1; j >= 0; j-- {
				pCur[j] = truth[j]*keep + unseen[j]
				t += pCur[j]
				tCur[j] = t // tails
			}
			multinomial(rng, g, pCur, tCur, cur.Bins)
		}
		if f.Kind == Numeric {
			cur.Below, cur.Above = cur.Bins[0]*lo, cur.Bins[nb-1]*hi
			cur.Low, cur.High = cur.Bins[1]*f.Numeric.Tails[0], cur.Bins[nb-2]*f.Numeric.Tails[1]
		}
		measureAll(f, &ref, &cur, sc, &m)
		for j := range nMethods {
			if !m.ok[j] || j == iMissing {
				continue
			}
			if Methods()[j].HasPValue() {
				sims[j] = append(sims[j], m.p[j])
			} else {
				sims[j] = append(sims[j], m.score[j])
			}
		}
	}
	v := new([nMethods]float64)
	for j := range nMethods {
		v[j] = math.NaN()
		if len(sims[j]) == b {
			v[j] = c.threshold(Methods()[j], sims[j])
		}
	}
	c.bins[key] = v
	return v
}

// missingAt returns the p-value threshold of the missing-rate test for windows of
// gr rows. The caller holds c.mu.
func (c *Calibrator) missingAt(i int, f *Feature, gr int64) float64 {
	key := calKey{i, gr}
	if v, ok := c.missing[key]; ok {
		return v
	}
	rows := f.Count + f.Missing
	a, b := float64(f.Missing)+0.5, float64(f.Count)+0.5
	rng := rand.New(c.source(f, gr, 2))
	sims := make([]float64, c.opts.Rounds)
	for j := range sims {
		ga := gamma(rng, a)
		truth := ga / (ga + gamma(rng, b)) // Beta(missing+½, count+½)
		mc := binomial(rng, gr, truth)
		_, sims[j] = ZTest(float64(f.Missing), float64(rows), float64(mc), float64(gr))
	}
	v := c.threshold(MethodMissing, sims)
	c.missing[key] = v
	return v
}

// confidence is the probability that a calibrated threshold's false-alarm rate is at
// most α, over the randomness of the simulation.
const confidence = 0.9

// order returns the largest k such that, for B simulated scores, the rate at which
// a no-drift window exceeds the k-th largest, which is Beta(k, B+1-k), is above
// alpha with probability at most 1 - confidence; 0 if there is none.
func order(alpha float64, b int) int {
	for k := int(math.Floor(alpha * float64(b+1))); k >= 1; k-- {
		if (distuv.Beta{Alpha: float64(k), Beta: float64(b + 1 - k)}).Survival(alpha) <= 1-confidence {
			return k
		}
	}
	return 0
}

// threshold turns simulated scores or p-values into a threshold (see Calibrator).
func (c *Calibrator) threshold(m Method, sims []float64) float64 {
	slices.Sort(sims)
	if m.HasPValue() {
		return math.Min(c.opts.Alpha, sims[c.k-1])
	}
	return sims[len(sims)-c.k]
}

// source returns the random stream of one simulation.
func (c *Calibrator) source(f *Feature, n int64, kind uint64) *rand.PCG {
	h := fnv.New64a()
	h.Write([]byte(f.Name))
	return rand.NewPCG(c.opts.Seed^h.Sum64(), uint64(n)<<2|kind)
}
