package cliargs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJoinDashValues(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"profile", "--input", "-", "--output", "-"}, []string{"profile", "--input=-", "--output=-"}},
		{[]string{"--input=-", "-"}, []string{"--input=-", "-"}},
		{[]string{"-", "--x"}, []string{"-", "--x"}},
		{[]string{"-v", "-"}, []string{"-v", "-"}},
		{[]string{"--a", "--", "--b", "-"}, []string{"--a", "--", "--b", "-"}},
	} {
		require.Equal(t, tc.want, JoinDashValues(tc.in), "%q", tc.in)
	}
}
