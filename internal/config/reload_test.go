package config

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestReloaderKeepsRunningConfigOnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	var running *string
	next := "one"
	var loadErr error
	r := NewReloader(reg, "test", func() (*string, error) {
		if loadErr != nil {
			return nil, loadErr
		}
		s := next
		return &s, nil
	}, func(s *string) error { running = s; return nil }, func() float64 { return 42 }, nil)

	require.NoError(t, r.Reload())
	require.Equal(t, "one", *running)
	require.Equal(t, 1.0, testutil.ToFloat64(r.success))
	require.Equal(t, 42.0, testutil.ToFloat64(r.stamp))

	loadErr = errors.New("broken file")
	next = "two"
	require.EqualError(t, r.Reload(), "broken file")
	require.Equal(t, "one", *running, "the running configuration stays")
	require.Equal(t, 0.0, testutil.ToFloat64(r.success))
	require.Equal(t, 42.0, testutil.ToFloat64(r.stamp))

	loadErr = nil
	require.NoError(t, r.Reload())
	require.Equal(t, "two", *running)
	require.Equal(t, 1.0, testutil.ToFloat64(r.success))
}
