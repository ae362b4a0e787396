// Package gomemlimit sets the Go runtime's soft memory limit (GOMEMLIMIT)
// from the container's memory limit, else the machine's memory, with the
// flags and defaults of Prometheus's --auto-gomemlimit: near the limit the
// garbage collector works harder, instead of the process growing into its
// container's limit and being killed. The CPU side needs nothing: Go's
// runtime sets GOMAXPROCS from the container's CPU limit by itself.
package gomemlimit

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Flags are the values of --auto-gomemlimit and its settings.
type Flags struct {
	Enabled bool
	Ratio   float64
	Refresh time.Duration
}

// Flag is a command-line flag of the limit, for a binary to register
// (kingpin's FlagClause.SetValue takes Value).
type Flag struct {
	Name, Help, Default string
	Value               flag.Value
}

// Flags are --auto-gomemlimit, --auto-gomemlimit.ratio and
// --auto-gomemlimit.refresh-interval, setting f.
func (f *Flags) Flags() []Flag {
	return []Flag{
		{"auto-gomemlimit", "Set GOMEMLIMIT, the Go runtime's soft memory limit, from the container's memory limit (cgroup), else the machine's memory; a GOMEMLIMIT environment variable takes precedence.",
			"true", (*boolValue)(&f.Enabled)},
		{"auto-gomemlimit.ratio", "The share of the detected memory limit that GOMEMLIMIT is set to, in (0, 1].",
			"0.9", (*floatValue)(&f.Ratio)},
		{"auto-gomemlimit.refresh-interval", "How often to detect the memory limit again and update GOMEMLIMIT, for limits that change at run time (a Vertical Pod Autoscaler's); 0 detects it once at start.",
			"0s", (*durationValue)(&f.Refresh)},
	}
}

type boolValue bool

func (b *boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	*b = boolValue(v)
	return err
}
func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true } // --auto-gomemlimit, --no-auto-gomemlimit

type floatValue float64

func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	*v = floatValue(f)
	return err
}
func (v *floatValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	*v = durationValue(d)
	return err
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

// Validate checks the flags' values.
func (f *Flags) Validate() error {
	if f.Ratio <= 0 || f.Ratio > 1 {
		return fmt.Errorf("--auto-gomemlimit.ratio must be in (0, 1], not %g", f.Ratio)
	}
	if f.Refresh < 0 {
		return fmt.Errorf("--auto-gomemlimit.refresh-interval must not be negative, not %s", f.Refresh)
	}
	return nil
}

// Apply sets GOMEMLIMIT as the flags say, and keeps refreshing it until
// ctx ends when they ask for that. It returns the limit set (that of the
// runtime when disabled or when the environment sets it).
func (f *Flags) Apply(ctx context.Context, logger *slog.Logger) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if !f.Enabled {
		return debug.SetMemoryLimit(-1), nil // reads it
	}
	return memlimit.Set(
		memlimit.WithRatio(f.Ratio),
		memlimit.WithRefreshInterval(ctx, f.Refresh),
		memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)),
		memlimit.WithLogger(logger.With("component", "automemlimit")),
	)
}
