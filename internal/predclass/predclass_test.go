package predclass

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/predclass/predclasstest"
)

func TestOf(t *testing.T) {
	for _, c := range predclasstest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, ok := Of(c.Classes, c.Scores)
			if len(c.Scores) == 1 && !c.Vector {
				got, ok = Number(c.Classes, c.Scores[0])
			}
			require.Equal(t, c.Want, got)
			require.Equal(t, c.Want != "", ok)
		})
	}
}

func TestIsIndex(t *testing.T) {
	for _, x := range []float64{0, 1, 2, math.Copysign(0, -1)} {
		require.True(t, IsIndex(x, 3), "%v", x)
	}
	for _, x := range []float64{3, -1, 1.5, math.NaN(), math.Inf(1), math.Inf(-1), 1e300} {
		require.False(t, IsIndex(x, 3), "%v", x)
	}
	require.False(t, IsIndex(0, 0))
}

// TestOfEmptyClassName names a class "" when it is one of classes: ok, not
// the class's name, says whether a class is named.
func TestOfEmptyClassName(t *testing.T) {
	class, ok := Of([]string{""}, []float64{0.9})
	require.True(t, ok)
	require.Empty(t, class)
}
