package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/stat/distuv"
)

// TestBinomial checks the sampler against the binomial probabilities (gonum's
// distuv.Binomial.Prob) with a χ² goodness-of-fit test, on both of its algorithms
// and both sides of p = ½.
func TestBinomial(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	draws := 200_000
	if !heavy() {
		draws = 40_000
	}
	for _, tc := range []struct {
		n int64
		p float64
	}{
		{1, 0.3}, {10, 0.5}, {40, 0.1}, {1000, 0.004}, // inversion
		{100, 0.3}, {1000, 0.02}, {50_000, 0.005}, {1_000_000, 0.4}, {200, 0.9}, // BTRS, and 1-p
	} {
		counts := map[int64]float64{}
		var sum, sumsq float64
		for range draws {
			x := binomial(r, tc.n, tc.p)
			require.True(t, x >= 0 && x <= tc.n)
			counts[x]++
			sum += float64(x)
			sumsq += float64(x) * float64(x)
		}
		mean := sum / float64(draws)
		sd := math.Sqrt(float64(tc.n) * tc.p * (1 - tc.p))
		require.InDelta(t, float64(tc.n)*tc.p, mean, 5*sd/math.Sqrt(float64(draws)), "n=%d p=%v mean", tc.n, tc.p)
		// χ² over the values with an expected count ≥ 5, the rest pooled.
		b := distuv.Binomial{N: float64(tc.n), P: tc.p}
		var stat, pooledObs, pooledExp float64
		k := 0
		for x := int64(0); x <= tc.n; x++ {
			e := b.Prob(float64(x)) * float64(draws)
			if e < 5 {
				pooledObs += counts[x]
				pooledExp += e
				continue
			}
			o := counts[x]
			stat += (o - e) * (o - e) / e
			k++
			if float64(x) > float64(tc.n)*tc.p+10*sd {
				break
			}
		}
		if pooledExp > 0 {
			stat += (pooledObs - pooledExp) * (pooledObs - pooledExp) / pooledExp
			k++
		}
		p := chiSquareP(stat, k-1)
		require.Greater(t, p, 1e-4, "n=%d p=%v: χ²=%v with %d dof", tc.n, tc.p, stat, k-1)
	}
}

func TestMultinomial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := []float64{0, 0.1, 0.2, 0, 0.3, 0.4, 0}
	out := make([]float64, len(p))
	mean := make([]float64, len(p))
	const rounds = 20_000
	cum := make([]float64, len(p))
	for i := range p {
		cum[i] = sum(p[:i+1])
	}
	buf := make([]float64, 1001)
	for _, spacings := range []bool{false, true} {
		clear(mean)
		for range rounds {
			if spacings {
				multinomialSpacings(r, 1000, cum, out, buf)
			} else {
				multinomial(r, 1000, p, tails(p), out)
			}
			require.Equal(t, 1000.0, sum(out))
			for i, x := range out {
				mean[i] += x / rounds
			}
		}
		for i := range p {
			require.InDelta(t, 1000*p[i], mean[i], 0.5, "spacings %v bin %d", spacings, i)
		}
	}
}

// TestGamma checks the sampler against gonum's Gamma CDF with a one-sample
// Kolmogorov–Smirnov test, below and above shape 1.
func TestGamma(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	n := 20_000
	if !heavy() {
		n = 5_000
	}
	for _, a := range []float64{0.5, 1, 3.7, 250} {
		x := make([]float64, n)
		for i := range x {
			x[i] = gamma(r, a)
		}
		slices.Sort(x)
		g := distuv.Gamma{Alpha: a, Beta: 1}
		var d float64
		for i, v := range x {
			c := g.CDF(v)
			d = max(d, math.Abs(c-float64(i)/float64(n)), math.Abs(c-float64(i+1)/float64(n)))
		}
		require.Greater(t, kolmogorovQ(math.Sqrt(float64(n))*d), 1e-3, "a=%v D=%v", a, d)
	}
	out := make([]float64, 4)
	dirichlet(r, []float64{5, 0, 10, 1}, out)
	require.InDelta(t, 1, sum(out), 1e-12)
	require.Equal(t, 0.0, out[1])
}

func BenchmarkBinomial(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		n    int64
		p    float64
	}{{"inversion", 1000, 0.005}, {"btrs", 50_000, 0.005}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				binomial(r, tc.n, tc.p)
			}
		})
	}
}
