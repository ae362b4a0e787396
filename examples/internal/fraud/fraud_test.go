package fraud

import (
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIndex(t *testing.T) {
	for i, f := range Features {
		got, ok := Index(f.Name)
		require.True(t, ok, f.Name)
		require.Equal(t, i, got)
		got, ok = Index("f" + strconv.Itoa(i))
		require.True(t, ok)
		require.Equal(t, i, got)
	}
	for _, name := range []string{"", "f20", "f-1", "Amount", "F0"} {
		_, ok := Index(name)
		require.False(t, ok, name)
	}
}

func TestProbability(t *testing.T) {
	var mean Vector
	for i, f := range Features {
		mean[i] = f.Mean
	}
	// At the reference mean every standardized feature is 0.
	require.InDelta(t, 1/(1+math.Exp(-Bias)), Probability(&mean), 1e-12)

	// A larger amount raises the probability; a longer tenure lowers it.
	high := mean
	high[0] *= 3
	require.Greater(t, Probability(&high), Probability(&mean))
	loyal := mean
	loyal[2] *= 3
	require.Less(t, Probability(&loyal), Probability(&mean))

	for _, x := range []Vector{{}, high, loyal} {
		p := Probability(&x)
		require.True(t, p > 0 && p < 1, p)
	}
}

func TestClass(t *testing.T) {
	require.Equal(t, int64(0), Class(0.4999))
	require.Equal(t, int64(1), Class(0.5))
	require.Equal(t, int64(1), Class(0.9))
}

func TestSchema(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Features {
		require.False(t, seen[f.Name], "duplicate feature %q", f.Name)
		seen[f.Name] = true
		require.Positive(t, f.Std, f.Name)
		require.Less(t, f.Min, f.Max, f.Name)
		require.True(t, f.Mean >= f.Min && f.Mean <= f.Max, f.Name)
	}
}
