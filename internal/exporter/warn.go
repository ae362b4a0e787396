package exporter

import (
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// warnInterval is the shortest time between two lines of one warning.
const warnInterval = time.Minute

// warning is a condition that traffic can repeat on every request (a model
// server that fails, a full capture queue, a label at its cap), logged so
// that an operator reading the logs learns of it and of what to change: the
// first time at once, then at most once a minute, with how many times it
// happened since the last line. The metrics count every occurrence.
type warning struct {
	logger *slog.Logger
	msg    string
	times  atomic.Int64
	every  rate.Sometimes
}

func newWarning(logger *slog.Logger, msg string) *warning {
	return &warning{logger: logger, msg: msg, every: rate.Sometimes{Interval: warnInterval}}
}

// warn records an occurrence and, when a line is due, logs it with the
// attributes attrs returns. Between lines it costs a counter and a lock, and
// allocates nothing: it runs on the paths of failing and dropped requests.
func (w *warning) warn(attrs func() []any) {
	w.times.Add(1)
	w.every.Do(func() {
		w.logger.Warn(w.msg, append(attrs(), "times", w.times.Swap(0))...)
	})
}
