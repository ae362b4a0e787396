package drift

import (
	"math"
	"math/rand/v2"
)

// binomial draws from Binomial(n, p): by inversion when n·min(p, 1-p) < 10, else by
// Hörmann's transformed rejection with squeeze (BTRS). Both are exact; the tests
// check them against the binomial probabilities.
func binomial(r *rand.Rand, n int64, p float64) int64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(r, n, 1-p)
	case float64(n)*p < 10:
		return binomialInversion(r, n, p)
	}
	return binomialBTRS(r, n, p)
}

// binomialInversion walks the probabilities P(0), P(1), … from a uniform draw,
// using P(x)/P(x-1) = ((n+1)/x - 1)·p/q (Kachitvichyanukul and Schmeiser's BINV).
func binomialInversion(r *rand.Rand, n int64, p float64) int64 {
	q := 1 - p
	s := p / q
	a := float64(n+1) * s
	f0 := math.Exp(float64(n) * math.Log1p(-p))
	for {
		u := r.Float64()
		f := f0
		var x int64
		for u > f {
			u -= f
			x++
			if x > n || f == 0 {
				break
			}
			f *= a/float64(x) - s
		}
		if x <= n && u <= f {
			return x
		}
	}
}

// binomialBTRS is algorithm BTRS of Hörmann, "The generation of binomial random
// variates", J. Stat. Comput. Simul. 46, 1993, for n·p ≥ 10 and p ≤ ½. The
// acceptance test log v ≤ log(m!(n-m)!/(k!(n-k)!)) + (k-m)·log(p/q) is written with
// Stirling's formula and its tail corrections, as TensorFlow's binomial sampler
// does: three logarithms instead of four log-gamma functions.
func binomialBTRS(r *rand.Rand, n int64, p float64) int64 {
	nf := float64(n)
	q := 1 - p
	spq := math.Sqrt(nf * p * q)
	b := 1.15 + 2.53*spq
	a := -0.0873 + 0.0248*b + 0.01*p
	c := nf*p + 0.5
	vr := 0.92 - 4.2/b
	alpha := (2.83 + 5.1/b) * spq
	rr := p / q
	m := math.Floor((nf + 1) * p)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + c)
		if k < 0 || k > nf {
			continue
		}
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		v = math.Log(v * alpha / (a/(us*us) + b))
		bound := (m+0.5)*math.Log((m+1)/(rr*(nf-m+1))) +
			(nf+1)*math.Log((nf-m+1)/(nf-k+1)) +
			(k+0.5)*math.Log(rr*(nf-k+1)/(k+1)) +
			stirlingTail(m) + stirlingTail(nf-m) - stirlingTail(k) - stirlingTail(nf-k)
		if v <= bound {
			return int64(k)
		}
	}
}

// stirlingTail is log(k!) - [(k+½)·log(k+1) - (k+1) + ½·log(2π)], the error of
// Stirling's formula: tabulated below 10, its asymptotic series above.
func stirlingTail(k float64) float64 {
	if k < 10 {
		return stirlingTails[int(k)]
	}
	k1 := k + 1
	k1sq := k1 * k1
	return (1.0/12 - (1.0/360-1.0/1260/k1sq)/k1sq) / k1
}

var stirlingTails = [10]float64{
	0.0810614667953272, 0.0413406959554092, 0.0276779256849983, 0.02079067210376509,
	0.0166446911898211, 0.0138761288230707, 0.0118967099458917, 0.0104112652619720,
	0.00925546218271273, 0.00833056343336287,
}

// multinomial fills out with a draw of n values over the probabilities p, by
// binomial splitting: bin i gets Binomial(left, p[i]/tail[i]) where tail[i] is
// the probability of bins i and after. Its cost grows with the number of bins,
// not with n.
func multinomial(r *rand.Rand, n int64, p, tail, out []float64) {
	left := n
	for i, pi := range p {
		if left == 0 || pi <= 0 {
			out[i] = 0
			continue
		}
		x := left
		if q := pi / tail[i]; q < 1 {
			x = binomial(r, left, q)
		}
		out[i] = float64(x)
		left -= x
	}
}

// tails returns the suffix sums of p.
func tails(p []float64) []float64 {
	t := make([]float64, len(p))
	var s float64
	for i := len(p) - 1; i >= 0; i-- {
		s += p[i]
		t[i] = s
	}
	return t
}

// gamma draws from Gamma(a, 1) by Marsaglia and Tsang's method, "A simple method for
// generating gamma variables", ACM Trans. Math. Softw. 26(3), 2000; for a < 1 as
// Gamma(a+1)·U^(1/a).
func gamma(r *rand.Rand, a float64) float64 {
	if a < 1 {
		return gamma(r, a+1) * math.Pow(r.Float64(), 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		x2 := x * x
		if u < 1-0.0331*x2*x2 || math.Log(u) < 0.5*x2+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// dirichlet fills out with a draw from Dirichlet(counts) over the bins with a
// positive count (the others get 0): the distribution of the true shares given
// the counts, under Haldane's prior.
func dirichlet(r *rand.Rand, counts, out []float64) {
	var s float64
	for i, c := range counts {
		out[i] = 0
		if c > 0 {
			out[i] = gamma(r, c)
			s += out[i]
		}
	}
	for i := range out {
		out[i] /= s
	}
}

// multinomialSpacings fills out with a draw of n values over the probabilities p
// (cumulative sums cum, the last 1) by walking n sorted uniforms, made from the
// normalised partial sums of n+1 exponential spacings (Devroye, "Non-Uniform Random
// Variate Generation", Springer, 1986, §V.3). Its cost grows with n, not with the
// number of bins; buf holds n+1 values.
func multinomialSpacings(r *rand.Rand, n int64, cum, out, buf []float64) {
	clear(out)
	e := buf[:n+1]
	var s float64
	for i := range e {
		e[i] = r.ExpFloat64()
		s += e[i]
	}
	var t float64
	j := 0
	last := len(cum) - 1
	bound := cum[0] * s
	for _, x := range e[:n] {
		t += x
		for t >= bound && j < last {
			j++
			bound = cum[j] * s
		}
		out[j]++
	}
}
