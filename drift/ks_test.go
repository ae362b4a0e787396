package drift

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKSExactScipy compares with scipy 1.10.1's ks_2samp(a, b, method="exact").
func TestKSExactScipy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a, b  []float64
		d, p  float64
		delta float64
	}{
		{"disjoint", []float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10}, 1, 0.007936507936507936, 1e-12},
		{"interleaved", []float64{0.1, 0.4, 0.7, 1.2, 2.0, 2.5}, []float64{0.3, 0.9, 1.5, 1.6, 2.2, 3.1, 3.3}, 0.38095238095238093, 0.6223776223776224, 1e-12},
		{"ties", []float64{1, 2, 2, 3, 5, 8}, []float64{2, 3, 3, 4, 6, 9, 9, 10}, 0.375, 0.6373626373626372, 1e-12},
		{"25 and 25", []float64{0.61, 0.29, 0.06, 0.59, -1.73, -0.74, 0.51, -0.56, 0.39, 1.64, 0.05, -0.06, 0.64, -0.82, 0.37, 1.77, 1.09, -1.28, 2.36, 1.31, 1.05, -0.32, -0.4, 1.06, -2.47},
			[]float64{2.2, 1.66, 1.38, 0.2, 0.36, 0.0, 0.96, 1.56, 0.44, 1.5, -0.3, 0.66, 2.31, 3.29, -0.27, -0.37, 0.38, 0.7, 0.19, -0.41, -0.49, 0.98, 1.21, 0.65, 1.14},
			0.28, 0.2850421476958367, 1e-9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, p := KSExact(tc.a, tc.b)
			require.InDelta(t, tc.d, d, 1e-12)
			require.InDelta(t, tc.p, p, tc.delta)
			d2, p2 := KSExact(tc.b, tc.a)
			require.Equal(t, d, d2, "symmetric")
			require.InDelta(t, p, p2, 1e-12)
		})
	}
}

// TestKSExactEnumeration checks the exact p-value against brute force: every way
// to label n+m distinct points as a or b is equally likely under the null, so
// P(D ≥ d) is the share of labellings whose statistic is at least d.
func TestKSExactEnumeration(t *testing.T) {
	for _, nm := range [][2]int{{1, 1}, {2, 3}, {3, 3}, {4, 6}, {5, 7}} {
		n, m := nm[0], nm[1]
		var all [][]float64 // D of every labelling
		var ds []float64
		for mask := 0; mask < 1<<(n+m); mask++ {
			if popcount(mask) != n {
				continue
			}
			var a, b []float64
			for i := range n + m {
				if mask&(1<<i) != 0 {
					a = append(a, float64(i))
				} else {
					b = append(b, float64(i))
				}
			}
			all = append(all, a, b)
			d, _ := KSExact(a, b)
			ds = append(ds, d)
		}
		for i, d := range ds {
			var ge int
			for _, e := range ds {
				if e >= d-1e-12 {
					ge++
				}
			}
			_, p := KSExact(all[2*i], all[2*i+1])
			require.InDelta(t, float64(ge)/float64(len(ds)), p, 1e-12, "n=%d m=%d d=%v", n, m, d)
		}
	}
}

func popcount(x int) int {
	c := 0
	for ; x != 0; x &= x - 1 {
		c++
	}
	return c
}

// TestKolmogorovQ compares with scipy 1.10.1's kstwobign.sf.
func TestKolmogorovQ(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{
		{0.3, 0.9999906941986655}, {0.5, 0.9639452436648751}, {1.0, 0.26999967167735456}, {1.5, 0.022217962616525127},
		{0, 1}, {5, 0},
	} {
		require.InDelta(t, tc.want, kolmogorovQ(tc.x), 1e-10, "x=%v", tc.x)
	}
}

// TestKSPValueAsymptotic checks the asymptotic p-value against the exact one (two
// independent computations) at sizes where both apply.
func TestKSPValueAsymptotic(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, nm := range [][2]int{{50, 60}, {200, 300}, {800, 1000}} {
		for _, shift := range []float64{0, 0.1, 0.2} {
			a, b := make([]float64, nm[0]), make([]float64, nm[1])
			for i := range a {
				a[i] = r.NormFloat64()
			}
			for i := range b {
				b[i] = r.NormFloat64() + shift
			}
			d, exact := KSExact(a, b)
			asym := KSPValue(d, float64(nm[0]), float64(nm[1]))
			require.InDelta(t, exact, asym, 0.01+0.05*exact, "n=%v d=%v", nm, d)
		}
	}
}

func TestKSBinned(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, cur []float64
		d        float64
	}{
		// CDFs (¼, ½, ¾, 1) and (0, 0, ½, 1): largest gap ½ at the second edge.
		{"hand-computed", []float64{1, 1, 1, 1}, []float64{0, 0, 2, 2}, 0.5},
		{"identical", []float64{3, 0, 5}, []float64{6, 0, 10}, 0},
		{"disjoint", []float64{3, 5, 0, 0}, []float64{0, 0, 7, 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, p := KS(tc.ref, tc.cur)
			require.InDelta(t, tc.d, d, 1e-12)
			d2, _ := KS(tc.cur, tc.ref)
			require.InDelta(t, d, d2, 1e-12, "symmetric")
			if tc.d == 0 {
				require.Equal(t, 1.0, p)
			}
		})
	}
}

// TestKSNormalShift checks the population value of KS between N(0,1) and N(μ,1),
// 2Φ(μ/2) - 1, on large samples.
func TestKSNormalShift(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	n := 100_000
	if !heavy() {
		n = 20_000
	}
	for _, mu := range []float64{0, 0.2, 0.5, 1} {
		a, b := make([]float64, n), make([]float64, n)
		for i := range a {
			a[i], b[i] = r.NormFloat64(), r.NormFloat64()+mu
		}
		d, _ := KSExact(a, b)
		require.InDelta(t, 2*normalCDF(mu/2)-1, d, 2/math.Sqrt(float64(n)), "μ=%v", mu)
	}
}

// TestKSStreamingError is the guarantee of BuildProfile: the KS statistic from a
// window's fine bins is within 1/200 (plus rounding) of KSExact on the raw data,
// for references and windows of up to 100,000 values from several distributions.
// It also reports the largest error seen.
func TestKSStreamingError(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	sizes := [][2]int{{1_000, 1_000}, {20_000, 5_000}, {100_000, 100_000}}
	if !heavy() {
		sizes = sizes[:2]
	}
	var worst float64
	for _, ref := range samplers {
		for _, cur := range samplers {
			if ref.name != cur.name && cur.name != "normal shifted 0.3" && cur.name != "cauchy" {
				continue
			}
			for _, nm := range sizes {
				t.Run(fmt.Sprintf("%s vs %s %v", ref.name, cur.name, nm), func(t *testing.T) {
					a, b := draw(r, ref, nm[0]), draw(r, cur, nm[1])
					p := numericProfile(t, a)
					f := p.Features[0]
					c := windowOf(t, f, b)
					db, _ := KS(f.refFine, c.Bins)
					d, _ := KSExact(a, b)
					require.LessOrEqual(t, db, d+1e-12, "binned never exceeds exact")
					require.InDelta(t, d, db, 0.005+1e-9)
					worst = max(worst, d-db)
				})
			}
		}
	}
	t.Logf("largest |KS binned - KS exact|: %.5f", worst)
}
