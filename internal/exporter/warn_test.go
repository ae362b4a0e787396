package exporter

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// testLogger returns a logger whose lines the test can read.
func testLogger() (*slog.Logger, *prometheustest.SyncBuffer) {
	buf := &prometheustest.SyncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

// A warning logs its first occurrence at once and the next ones at most once
// a minute, saying how many there were; between lines it allocates nothing.
func TestWarningIsThrottled(t *testing.T) {
	logger, logs := testLogger()
	w := newWarning(logger, "Something is off")
	attrs := func() []any { return []any{"model", "fraud", "max", 5} }
	w.warn(attrs)
	require.Equal(t, 1, strings.Count(logs.String(), "\n"))
	require.Contains(t, logs.String(), `level=WARN msg="Something is off" model=fraud max=5 times=1`)

	allocs := testing.AllocsPerRun(100, func() { w.warn(attrs) })
	require.Zero(t, allocs)
	require.Equal(t, 1, strings.Count(logs.String(), "\n"), "no second line within a minute")
	require.EqualValues(t, 101, w.times.Load(), "the occurrences since the line are counted for the next one")
}
