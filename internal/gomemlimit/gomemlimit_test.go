package gomemlimit

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/stretchr/testify/require"
)

func parse(t *testing.T, args ...string) *Flags {
	t.Helper()
	app := kingpin.New("test", "")
	f := &Flags{}
	for _, fl := range f.Flags() {
		app.Flag(fl.Name, fl.Help).Default(fl.Default).SetValue(fl.Value)
	}
	_, err := app.Parse(args)
	require.NoError(t, err)
	return f
}

func TestFlags(t *testing.T) {
	f := parse(t)
	require.Equal(t, Flags{Enabled: true, Ratio: 0.9}, *f, "Prometheus's defaults")
	require.NoError(t, f.Validate())
	f = parse(t, "--no-auto-gomemlimit", "--auto-gomemlimit.ratio=0.5", "--auto-gomemlimit.refresh-interval=1m")
	require.False(t, f.Enabled)
	require.NoError(t, f.Validate())
	for _, bad := range [][]string{{"--auto-gomemlimit.ratio=0"}, {"--auto-gomemlimit.ratio=1.5"}, {"--auto-gomemlimit.ratio=-1"},
		{"--auto-gomemlimit.refresh-interval=-1s"}} {
		require.Error(t, parse(t, bad...).Validate(), "%v", bad)
	}
}

// Apply sets the runtime's limit in proportion to the ratio, and leaves it
// alone when disabled. The limit detected is the cgroup's or, without
// one, the machine's memory, so the process's limit is no more than that.
func TestApply(t *testing.T) {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skipf("GOMEMLIMIT=%s is set in the environment, and takes precedence", v)
	}
	if v, ok := os.LookupEnv("AUTOMEMLIMIT"); ok {
		t.Skipf("AUTOMEMLIMIT=%s is set in the environment", v)
	}
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	logger := slog.New(slog.DiscardHandler)

	half, err := (&Flags{Enabled: true, Ratio: 0.5}).Apply(context.Background(), logger)
	require.NoError(t, err)
	require.Equal(t, half, debug.SetMemoryLimit(-1))
	require.Positive(t, half)
	require.Less(t, half, int64(math.MaxInt64))
	quarter, err := (&Flags{Enabled: true, Ratio: 0.25}).Apply(context.Background(), logger)
	require.NoError(t, err)
	require.InDelta(t, float64(half)/2, float64(quarter), 2, "the same limit detected, at half the ratio")

	debug.SetMemoryLimit(12345678)
	got, err := (&Flags{Enabled: false, Ratio: 0.9}).Apply(context.Background(), logger)
	require.NoError(t, err)
	require.Equal(t, int64(12345678), got, "disabled, the limit is left as it is")

	_, err = (&Flags{Enabled: true, Ratio: 2}).Apply(context.Background(), logger)
	require.Error(t, err)
}
