package main

import (
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
)

// addCommands registers the exporter's subcommands other than serve and
// returns what runs each, by its full command name. A command returns the
// process's exit code.
func addCommands(app *kingpin.Application) map[string]func(*slog.Logger) int {
	return map[string]func(*slog.Logger) int{}
}
