package drift

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// normalCDF is Φ.
func normalCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// normalBins returns the probabilities of N(mu, 1) over the bins cut by edges
// (below the first edge, between edges, above the last), times scale.
func normalBins(edges []float64, mu, scale float64) []float64 {
	out := make([]float64, len(edges)+1)
	prev := 0.0
	for i, e := range edges {
		c := normalCDF(e - mu)
		out[i] = (c - prev) * scale
		prev = c
	}
	out[len(edges)] = (1 - prev) * scale
	return out
}

// grid returns the edges lo, lo+step, …, hi.
func grid(lo, hi, step float64) []float64 {
	var out []float64
	for i := 0; ; i++ {
		e := lo + float64(i)*step
		if e > hi+step/2 {
			return out
		}
		out = append(out, e)
	}
}

// sampler draws from a named distribution.
type sampler struct {
	name string
	draw func(r *rand.Rand) float64
}

var samplers = []sampler{
	{"normal", func(r *rand.Rand) float64 { return r.NormFloat64() }},
	{"normal shifted 0.3", func(r *rand.Rand) float64 { return r.NormFloat64() + 0.3 }},
	{"normal scaled 1.5", func(r *rand.Rand) float64 { return 1.5 * r.NormFloat64() }},
	{"lognormal", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64()) }},
	{"exponential", func(r *rand.Rand) float64 { return r.ExpFloat64() }},
	{"cauchy", func(r *rand.Rand) float64 { return math.Tan(math.Pi * (r.Float64() - 0.5)) }},
	{"student t3", func(r *rand.Rand) float64 {
		z := r.NormFloat64()
		var c float64
		for range 3 {
			x := r.NormFloat64()
			c += x * x
		}
		return z / math.Sqrt(c/3)
	}},
	{"poisson-like counts", func(r *rand.Rand) float64 { return math.Floor(r.ExpFloat64() * 3) }},
	{"zero-inflated amount", func(r *rand.Rand) float64 {
		if r.Float64() < 0.4 {
			return 0
		}
		return math.Round(math.Exp(3+r.NormFloat64())*100) / 100
	}},
}

func draw(r *rand.Rand, s sampler, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = s.draw(r)
	}
	return x
}

// numericProfile builds a one-feature profile of x named "x".
func numericProfile(t testing.TB, x []float64) *Profile {
	t.Helper()
	p, err := BuildProfile([]Column{{Name: "x", Num: x}}, BuildOptions{})
	require.NoError(t, err)
	return p
}

// windowOf counts x into a fresh window of f at t0 and returns its counts.
func windowOf(t testing.TB, f *Feature, x []float64) Counts {
	t.Helper()
	w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Hour}})
	require.NoError(t, err)
	for _, v := range x {
		w.Add(t0, v)
	}
	return w.Counts(t0, 0)
}

var t0 = time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)

// heavy reports whether the slow statistical tests should shrink.
func heavy() bool { return !testing.Short() && !raceEnabled }
