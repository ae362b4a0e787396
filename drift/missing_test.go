package drift

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestZTest(t *testing.T) {
	// By hand: p̂ = 110/200 = 0.55, se = √(0.55·0.45·(1/100+1/100)) = 0.0703562…,
	// z = 0.1/se = 1.42133…, p = erfc(z/√2) = 0.155218…
	z, p := ZTest(50, 100, 60, 100)
	require.InDelta(t, 1.4213381090374024, z, 1e-12)
	require.InDelta(t, 0.1552184896846842, p, 1e-12)
	// It is χ² on the 2×2 table: scipy 1.10.1 chi2_contingency([[50, 50], [60, 40]],
	// correction=False) gives 2.0202020202020203 and the same p-value.
	stat, p2, _ := ChiSquare([]float64{50, 50}, []float64{60, 40})
	require.InDelta(t, 2.0202020202020203, z*z, 1e-12)
	require.InDelta(t, stat, z*z, 1e-12)
	require.InDelta(t, p, p2, 1e-12)

	z, p = ZTest(0, 100, 0, 50)
	require.Equal(t, 0.0, z)
	require.Equal(t, 1.0, p)
	z, p = ZTest(5, 100, 10, 200)
	require.Equal(t, 0.0, z)
	require.Equal(t, 1.0, p)
	z, _ = ZTest(60, 100, 50, 100)
	require.InDelta(t, -1.4213381090374024, z, 1e-12, "antisymmetric")
	z, _ = ZTest(5, 4, 1, 1)
	require.True(t, math.IsNaN(z))
}

func TestMissingRate(t *testing.T) {
	diff, p := MissingRate(10, 1000, 10, 1000)
	require.Equal(t, 0.0, diff)
	require.Equal(t, 1.0, p)
	diff, p = MissingRate(10, 1000, 50, 500)
	require.InDelta(t, 0.09, diff, 1e-12)
	require.Less(t, p, 1e-10)
	diff, p = MissingRate(0, 1000, 0, 100)
	require.Equal(t, 0.0, diff)
	require.Equal(t, 1.0, p)
}
