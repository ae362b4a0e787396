package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/alertd"
)

// replayArgs are the flags of `alertd replay`.
type replayArgs struct {
	config, compare      string
	from, to             string
	step                 time.Duration
	storagePath, tsdbDir string
	datasource           string
	lookback             time.Duration
	output               string
	failOnMorePages      bool
	failOnMoreEsc        bool
	acks                 string
	acksFromLedger       bool
	silences             string
}

// runReplay replays one configuration, or two to compare, and prints the
// report. It returns the exit code.
func runReplay(ctx context.Context, args replayArgs, logger *slog.Logger) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "alertd: error:", err)
		return 1
	}
	now := time.Now()
	from, err := parseReplayTime(args.from, time.Time{})
	if err != nil {
		return fail(fmt.Errorf("bad --from: %w", err))
	}
	to, err := parseReplayTime(args.to, now)
	if err != nil {
		return fail(fmt.Errorf("bad --to: %w", err))
	}
	cfg, err := alertconfig.LoadFile(args.config)
	if err != nil {
		return fail(err)
	}
	url := args.datasource
	if url == "" {
		url = cfg.Datasource.URL
	}
	dir := args.tsdbDir
	if dir == "" {
		dir = filepath.Join(args.storagePath, "tsdb")
	}
	src, closeSrc, err := alertd.OpenReplaySource(dir, url, time.Duration(cfg.Datasource.Timeout), cfg.Datasource.HTTPClientConfig)
	if err != nil {
		return fail(err)
	}
	defer closeSrc()
	// The same acknowledgements apply to both configurations.
	var acks []alertd.ReplayAcknowledgement
	if args.acks != "" {
		if acks, err = alertd.LoadReplayAcknowledgements(args.acks, from, to); err != nil {
			return fail(fmt.Errorf("couldn't load acknowledgements (--acknowledgements=%q): %w", args.acks, err))
		}
	}
	if args.acksFromLedger {
		l, err := alertd.LedgerAcknowledgements(args.storagePath, from, to, logger)
		if err != nil {
			return fail(fmt.Errorf("couldn't read acknowledgements from the ledger (--storage.path=%q): %w", args.storagePath, err))
		}
		acks = append(acks, l...)
	}
	// And the same silences.
	var sils []alertd.ReplaySilence
	if args.silences != "" {
		if sils, err = loadReplaySilences(args.silences, from, to); err != nil {
			return fail(fmt.Errorf("couldn't load silences (--silences=%q): %w", args.silences, err))
		}
	}
	opts := alertd.ReplayOptions{From: from, To: to, Step: args.step, LookbackDelta: args.lookback, Source: src,
		Acknowledgements: acks, Silences: sils, Logger: logger}
	a, err := alertd.Replay(ctx, args.config, opts)
	if err != nil {
		return fail(fmt.Errorf("replaying %s: %w", args.config, err))
	}
	var b *alertd.ReplayResult
	if args.compare != "" {
		if b, err = alertd.Replay(ctx, args.compare, opts); err != nil {
			return fail(fmt.Errorf("replaying %s: %w", args.compare, err))
		}
	}
	c := alertd.CompareReplays(a, b)
	if args.output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(c)
	} else {
		err = c.WriteText(os.Stdout)
	}
	if err != nil {
		return fail(err)
	}
	code := 0
	if args.failOnMorePages && c.MorePages() {
		fmt.Fprintf(os.Stderr, "alertd: %s pages %d times, more than %s's %d\n", args.compare, b.Summary.Pages, args.config, a.Summary.Pages)
		code = 3
	}
	if args.failOnMoreEsc && c.MoreEscalations() {
		fmt.Fprintf(os.Stderr, "alertd: %s's escalation policies notify %d times, more than %s's %d\n", args.compare, b.Summary.Escalations, args.config, a.Summary.Escalations)
		code = 3
	}
	return code
}

// loadReplaySilences reads the silences of the file path, or of stdin for
// "-", so that `curl …/api/v2/silences | alertd replay --silences -` works.
func loadReplaySilences(path string, from, to time.Time) ([]alertd.ReplaySilence, error) {
	if path == "-" {
		return alertd.ReadReplaySilences(os.Stdin, from, to)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return alertd.ReadReplaySilences(f, from, to)
}

// parseReplayTime reads RFC 3339 or Unix seconds; empty is def, which
// must then be set.
func parseReplayTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		if def.IsZero() {
			return time.Time{}, fmt.Errorf("a time is required")
		}
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix seconds", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}
