package anomaly

import "math"

// window keeps the last n values of a series twice: in arrival order (a ring)
// and sorted, so that the median is an index and the median absolute
// deviation a binary search. Push costs two binary searches and one memmove
// of at most n values, with no allocation: both slices are allocated once,
// at construction. For n ≤ 1024 that is cheaper than two heaps with lazy
// deletion and exact, unlike streaming quantile sketches.
type window struct {
	ring   []float64 // arrival order; ring[head] is the oldest once full
	sorted []float64 // the same values, ascending; len is the count held
	head   int
	// Running sums of (x - shift) and its square over the values held,
	// for the standard deviation; shift is the first value pushed, which
	// keeps the sums small and cancellation mild.
	shift, sum, sum2 float64
	// scale caches scale's answer for scaleEvery pushes; age counts the
	// pushes since it was computed (scaleEvery or more: stale).
	scale float64
	age   int
	// stale is set when the running sums lost precision (see std).
	stale bool
}

func newWindow(n int) window {
	return window{ring: make([]float64, n), sorted: make([]float64, 0, n), age: scaleEvery}
}

// len returns how many values the window holds.
func (w *window) len() int { return len(w.sorted) }

// full reports whether the window holds its capacity.
func (w *window) full() bool { return len(w.sorted) == len(w.ring) }

// limit makes the window hold at most n values (n ≥ 1), at most what it
// was allocated for, until reset. The window must be empty.
func (w *window) limit(n int) { w.ring = w.ring[:min(n, cap(w.ring))] }

// reset empties the window, keeping its memory, and lifts limit.
func (w *window) reset() {
	w.ring = w.ring[:cap(w.ring)]
	w.sorted = w.sorted[:0]
	w.head = 0
	w.sum, w.sum2 = 0, 0
	w.stale = false
	w.age = scaleEvery
}

// std returns the standard deviation of the values held (0 when fewer
// than two).
//
// The running sums lose precision when the values move far from shift (a
// level shift of many standard deviations) or when a value that dominated
// them is evicted (a huge spike leaving the window), and overflow on values
// beyond about 1e154. When the variance they give has lost more than half
// of its bits, or is not finite, they are summed afresh around the median:
// O(n), but only after such an event.
func (w *window) std() float64 {
	n := float64(len(w.sorted))
	if n < 2 {
		return 0
	}
	m := w.sum / n
	v := w.sum2/n - m*m
	if w.stale || !(v >= m*m*0x1p-26) || math.IsInf(v, 0) {
		w.resum()
		m = w.sum / n
		v = w.sum2/n - m*m
	}
	if math.IsInf(w.sum2, 1) {
		return w.scaledStd()
	}
	return math.Sqrt(math.Max(0, v*n/(n-1)))
}

// resum recomputes the running sums exactly, around the median.
func (w *window) resum() {
	w.stale = false
	w.shift = w.median()
	w.sum, w.sum2 = 0, 0
	for _, x := range w.sorted {
		dx := x - w.shift
		w.sum += dx
		w.sum2 += dx * dx
	}
}

// scaledStd is the two-pass standard deviation with the deviations scaled
// by the largest one, for values whose squares overflow. Its result is at
// most math.MaxFloat64.
func (w *window) scaledStd() float64 {
	s := w.sorted
	n := float64(len(s))
	var m float64
	for _, x := range s {
		m += x / n
	}
	k := math.Max(math.Abs(s[0]-m), math.Abs(s[len(s)-1]-m))
	if k == 0 || math.IsNaN(k) {
		return 0
	}
	if math.IsInf(k, 0) { // the spread itself overflows
		return math.MaxFloat64
	}
	var v float64
	for _, x := range s {
		d := (x - m) / k
		v += d * d
	}
	return math.Min(k*math.Sqrt(v/(n-1)), math.MaxFloat64)
}

// What winsorisedStd winsorises: the k = len/winsorPer most extreme
// values on each side (two of a full default window of 1,024 values, one of
// the ensemble's 512 seasonal residuals, none of fewer than 512), and of
// those only the part beyond winsorReach times the distance of the next
// value from the median.
//
// A value then counts as at most winsorReach times as far out as the
// (k+1)-th most extreme: for Gaussian noise about 9 deviations, which adds
// a few per cent to the standard deviation of 512 values or more, where
// one value 1e6 deviations out added a factor of 30,000. A burst that
// recurs more often than k times a window, or an outlier within reach of
// the others (a heavy tail), still widens it as before, as it should: a
// series that is often spiky needs a bigger spike to alert. Winsorising
// the k extremes in full costs alertd's NAB replay 13 more false pages
// (see BENCHMARKS.md): a heavy-tailed series' moderate outliers then no
// longer widen its scale. winsorReach 3 costs 5; 5 costs 2, but a huge
// spike then leaves the scale of the 512 seasonal residuals 20% too wide
// to find a shift of 6 deviations.
const (
	winsorPer   = 512
	winsorReach = 3
)

// winsorisedStd returns the standard deviation of the values held after
// winsorising them (Tukey and McLaughlin 1963; Wilcox, "Introduction to
// Robust Estimation and Hypothesis Testing", 3.3), with the replacement
// values bounded as above: the plain standard deviation lets one value 1e6
// times the noise scale inflate it about 30,000 times for a whole window,
// and every detector using it stays blind for as long. It is the standard
// deviation when there are fewer than winsorPer values.
//
// It takes the running sums, less the 2k most extreme values, plus what
// they are replaced by: O(k). When what is left has lost more than half of
// its bits to the values taken out (an enormous value is among them), it
// sums the winsorised values afresh: O(n), but only while such a value is
// in the window.
func (w *window) winsorisedStd() float64 {
	s := w.sorted
	n := len(s)
	k := n / winsorPer
	if k == 0 {
		return w.std()
	}
	// Values below lo and above hi (k at most on each side) are replaced
	// by lo and hi. The bounds never lie beyond the extremes, so that
	// they are finite even when m-s[k] overflows.
	m := w.median()
	lo := math.Max(s[0], m-winsorReach*(m-s[k]))
	hi := math.Min(s[n-1], m+winsorReach*(s[n-1-k]-m))
	w.std() // refreshes the running sums when they lost precision
	if math.IsInf(w.sum2, 0) {
		return w.winsorisedStdDirect(lo, hi)
	}
	var d1, d2 float64 // what the replacements change in the sums
	for i := range k {
		for _, x := range [2]float64{s[i], s[n-1-i]} {
			a, b := x-w.shift, math.Max(lo, math.Min(hi, x))-w.shift
			d1 += b - a
			d2 += b*b - a*a
		}
	}
	fn := float64(n)
	sum2 := w.sum2 + d2
	mean := (w.sum + d1) / fn
	v := sum2/fn - mean*mean
	if !(v*fn >= w.sum2*0x1p-26) || !(v >= mean*mean*0x1p-26) {
		return w.winsorisedStdDirect(lo, hi)
	}
	return math.Sqrt(v * fn / (fn - 1))
}

// winsorisedStdDirect is winsorisedStd summed afresh: the two-pass
// standard deviation of the values held, clamped to [lo, hi], around the
// median, with the deviations scaled by the largest one so that their
// squares cannot overflow. Its result is at most math.MaxFloat64.
func (w *window) winsorisedStdDirect(lo, hi float64) float64 {
	m := w.median()
	c := math.Max(m-lo, hi-m)
	if c == 0 || math.IsNaN(c) {
		return 0
	}
	if math.IsInf(c, 0) { // the spread itself overflows
		return math.MaxFloat64
	}
	var sum, sum2 float64
	for _, x := range w.sorted {
		d := (math.Max(lo, math.Min(hi, x)) - m) / c
		sum += d
		sum2 += d * d
	}
	fn := float64(len(w.sorted))
	v := (sum2 - sum*sum/fn) / (fn - 1)
	return math.Min(c*math.Sqrt(math.Max(0, v)), math.MaxFloat64)
}

// push adds x, evicting the oldest value once the window is full. x must not
// be NaN.
func (w *window) push(x float64) {
	s := w.sorted
	if len(s) == 0 {
		w.shift = x
	}
	w.age++
	dx := x - w.shift
	w.sum += dx
	w.sum2 += dx * dx
	if len(s) < len(w.ring) {
		w.ring[len(s)] = x
		i := search(s, x)
		s = s[:len(s)+1]
		copy(s[i+1:], s[i:])
		s[i] = x
		w.sorted = s
		return
	}
	old := w.ring[w.head]
	do := old - w.shift
	w.sum -= do
	w.sum2 -= do * do
	if do*do > w.sum2*0x1p26 {
		// The evicted value dominated the sums: what is left of them has
		// lost most of its bits (std sums afresh).
		w.stale = true
	}
	w.ring[w.head] = x
	w.head++
	if w.head == len(w.ring) {
		w.head = 0
	}
	// Remove old and insert x with a single shift of the values between
	// their positions.
	i := search(s, old) // s[i] == old
	j := search(s, x)
	switch {
	case j > i: // x goes right of old: shift (i, j) left by one
		copy(s[i:j-1], s[i+1:j])
		s[j-1] = x
	default: // x goes at or left of old: shift [j, i) right by one
		copy(s[j+1:i+1], s[j:i])
		s[j] = x
	}
}

// last returns the value pushed k pushes ago (k = 0 is the newest). k must be
// below len.
func (w *window) last(k int) float64 {
	n := len(w.ring)
	var newest int
	if w.full() {
		newest = w.head - 1
	} else {
		newest = len(w.sorted) - 1
	}
	i := newest - k
	for i < 0 {
		i += n
	}
	return w.ring[i]
}

// median returns the median of the values held (the mean of the two middle
// ones for an even count), NaN when empty.
func (w *window) median() float64 {
	s := w.sorted
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	// Halved first: the sum of two values near ±MaxFloat64 overflows,
	// and halving is exact, so this rounds as (a+b)/2 does.
	return s[n/2-1]/2 + s[n/2]/2
}

// quantile returns the value of rank q·(n-1), interpolated, NaN when empty.
func (w *window) quantile(q float64) float64 {
	s := w.sorted
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	r := q * float64(n-1)
	i := int(r)
	if i >= n-1 {
		return s[n-1]
	}
	f := r - float64(i)
	if d := s[i+1] - s[i]; !math.IsInf(d, 0) {
		return s[i] + f*d
	}
	// Values of opposite sign near ±MaxFloat64: their difference overflows.
	return s[i]*(1-f) + s[i+1]*f
}

// mad returns the median absolute deviation of the values held around m
// (usually the median), with the same even-count convention as median.
func (w *window) mad(m float64) float64 {
	n := len(w.sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return w.kthDeviation(m, n/2)
	}
	return (w.kthDeviation(m, n/2-1) + w.kthDeviation(m, n/2)) / 2
}

// kthDeviation returns the k-th smallest (0-based) of |s[i] - m|. The
// deviations are two sorted sequences, L (m - s[p-1], m - s[p-2], …) and R
// (s[p] - m, s[p+1] - m, …) with p the first index where s[p] ≥ m, so the
// k-th smallest is a binary search on how many of the k+1 smallest come from
// L: O(log n).
func (w *window) kthDeviation(m float64, k int) float64 {
	s := w.sorted
	n := len(s)
	p := search(s, m)
	l := func(j int) float64 { return m - s[p-1-j] }
	r := func(j int) float64 { return s[p+j] - m }
	nl, nr := p, n-p
	take := k + 1
	lo, hi := max(0, take-nr), min(nl, take)
	for lo < hi {
		i := (lo + hi) / 2 // take i from L and take-i from R
		j := take - i
		if j > 0 && l(i) < r(j-1) {
			lo = i + 1
		} else {
			hi = i
		}
	}
	i, j := lo, take-lo
	d := math.Inf(-1)
	if i > 0 {
		d = l(i - 1)
	}
	if j > 0 {
		d = math.Max(d, r(j-1))
	}
	return d
}

// bytes returns the memory the window holds.
func (w *window) bytes() int { return 8 * (cap(w.ring) + cap(w.sorted)) }

// search returns the first index i with s[i] >= x, or len(s): the same as
// sort.SearchFloat64s, without the closure call per step.
// It halves a base pointer instead of narrowing [lo, hi), so the compiler
// can use a conditional move rather than a hard-to-predict branch.
func search(s []float64, x float64) int {
	n := len(s)
	if n == 0 {
		return 0
	}
	base := 0
	for n > 1 {
		half := n / 2
		if s[base+half-1] < x {
			base += half
		}
		n -= half
	}
	if s[base] < x {
		base++
	}
	return base
}

// rank returns the fraction of the values held that are below x, with ties
// counted half (0.5 when empty).
func (w *window) rank(x float64) float64 {
	s := w.sorted
	n := len(s)
	if n == 0 {
		return 0.5
	}
	i := search(s, x)
	j := i
	for j < n && s[j] == x && j-i < 64 {
		j++
	}
	return (float64(i) + float64(j-i)/2) / float64(n)
}
