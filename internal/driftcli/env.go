package driftcli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Exit codes of the commands.
const (
	// ExitOK is success; for drift, also "no drift" or drift without
	// --fail-on-drift (--fail-on-model-drift for the model's).
	ExitOK = 0
	// ExitDrift is drift --fail-on-drift finding the dataset drifted, or
	// --fail-on-model-drift the model.
	ExitDrift = 1
	// ExitError is any error: bad flags, unreadable or invalid input, a failed
	// write; for drift, also a feature whose current data broke
	// (Report.Errors), after the report is written.
	ExitError = 2
)

// Env is what a command reads and writes besides its files. Nil fields read
// nothing and discard what is written to them.
type Env struct {
	// Prog prefixes error messages (default "exporter"), which read like
	// "exporter drift: train.csv:17: column \"age\": ragged row (4 fields, want 5)".
	Prog string
	// Stdin is read for the file name "-".
	Stdin io.Reader
	// Stdout receives the output written to "-" and drift's report.
	Stdout io.Writer
	// Stderr receives error messages and one-line summaries.
	Stderr io.Writer
	// Logger receives warnings, such as a column of the current data the
	// reference lacks.
	Logger *slog.Logger
}

func (e Env) withDefaults() Env {
	if e.Prog == "" {
		e.Prog = "exporter"
	}
	if e.Stdin == nil {
		e.Stdin = strings.NewReader("")
	}
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	return e
}

// fail prints err as "<prog> <command>: <err>" and returns ExitError.
func (e Env) fail(command string, err error) int {
	fmt.Fprintf(e.Stderr, "%s %s: %v\n", e.Prog, command, err)
	return ExitError
}

// splitList splits comma-separated values, as flags like --numeric a,b take
// them (the flags are also repeatable), dropping blanks.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
