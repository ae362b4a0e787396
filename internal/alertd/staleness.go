package alertd

import (
	"context"
	"errors"
	"math"
	"sync"

	promhistogram "github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
)

// scrapeStaleness marks stale, at the reload that removes their job, the
// series the job's targets wrote. Prometheus's scrape manager writes
// staleness markers for a target that leaves its job (a few scrape
// intervals later, in case it comes back), but not for the targets of a job
// removed from the configuration: it cancels the scrape pool's context
// before its loops write them. The job's series, its `up` among them, would
// then stay in queries for the five minutes of lookback, and an absent()
// alert on them fire only after that.
//
// It sits between the scrape manager and the TSDB and remembers, per
// target, the series of its last committed scrape, as the scrape loop's own
// cache does. The scrape manager passes the target in the appender's
// context (scrape.Options.PassMetadataInContext). Series are known by what
// was written, not by label matching, so those whose labels a target does
// not set (honor_labels) are marked too.
type scrapeStaleness struct {
	next storage.AppendableV2

	mu      sync.Mutex
	targets map[*scrape.Target]*targetSeries
}

// targetSeries are the series a target's last committed scrape wrote.
type targetSeries struct {
	// size is len(series), read under scrapeStaleness.mu.
	size int

	mu     sync.Mutex
	commit uint64
	series map[storage.SeriesRef]seenSeries
}

// seenSeries is a series and the commit that last wrote it.
type seenSeries struct {
	lset   labels.Labels
	commit uint64
}

func newScrapeStaleness(next storage.AppendableV2) *scrapeStaleness {
	return &scrapeStaleness{next: next, targets: map[*scrape.Target]*targetSeries{}}
}

// AppenderV2 implements storage.AppendableV2.
func (s *scrapeStaleness) AppenderV2(ctx context.Context) storage.AppenderV2 {
	app := s.next.AppenderV2(ctx)
	t, ok := scrape.TargetFromContext(ctx)
	if !ok {
		return app
	}
	// Room for as many series as the last scrape wrote.
	n := 0
	s.mu.Lock()
	if ts, ok := s.targets[t]; ok {
		n = ts.size
	}
	s.mu.Unlock()
	return &stalenessAppender{AppenderV2: app, s: s, target: t, written: make([]writtenSeries, 0, n)}
}

// committed records the series a commit of target wrote; a commit that
// wrote none (the scrape loop's own staleness markers, after the target
// left its job) changes nothing.
func (s *scrapeStaleness) committed(target *scrape.Target, written []writtenSeries) {
	if len(written) == 0 {
		return
	}
	s.mu.Lock()
	ts, ok := s.targets[target]
	if !ok {
		ts = &targetSeries{series: make(map[storage.SeriesRef]seenSeries, len(written))}
		s.targets[target] = ts
	}
	s.mu.Unlock()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.commit++
	for _, w := range written {
		ts.series[w.ref] = seenSeries{lset: w.lset, commit: ts.commit}
	}
	for ref, v := range ts.series {
		if v.commit != ts.commit {
			delete(ts.series, ref)
		}
	}
	s.mu.Lock()
	ts.size = len(ts.series)
	s.mu.Unlock()
}

// markStale appends a staleness marker at t (milliseconds) to every series
// the last scrape of targets wrote, and forgets the targets. It returns the
// number of series marked. A series with a sample at or after t (a
// scraped timestamp in the future) keeps it and gets no marker.
func (s *scrapeStaleness) markStale(ctx context.Context, targets []*scrape.Target, t int64) (int, error) {
	var marked []*targetSeries
	s.mu.Lock()
	for _, target := range targets {
		if ts, ok := s.targets[target]; ok {
			marked = append(marked, ts)
			delete(s.targets, target)
		}
	}
	s.mu.Unlock()
	if len(marked) == 0 {
		return 0, nil
	}
	app := s.next.AppenderV2(ctx)
	n := 0
	for _, ts := range marked {
		ts.mu.Lock()
		for ref, v := range ts.series {
			// An error is about this series only (out of order, or gone
			// from the head): the appender goes on with the others.
			if _, err := app.Append(ref, v.lset, 0, t, math.Float64frombits(value.StaleNaN), nil, nil, storage.AOptions{}); err == nil {
				n++
			}
		}
		ts.mu.Unlock()
	}
	return n, app.Commit()
}

// forget drops what is remembered of targets the scrape manager no longer
// has (active, by job): targets that left their job get their markers from
// the scrape loop itself. A target that committed its first scrape after
// active was taken is forgotten too, and remembered again at its next.
func (s *scrapeStaleness) forget(active map[string][]*scrape.Target) {
	keep := map[*scrape.Target]bool{}
	for _, targets := range active {
		for _, t := range targets {
			keep[t] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for target := range s.targets {
		if !keep[target] {
			delete(s.targets, target)
		}
	}
}

// writtenSeries is a series an appender wrote.
type writtenSeries struct {
	ref  storage.SeriesRef
	lset labels.Labels
}

// stalenessAppender records the series one scrape of a target writes.
type stalenessAppender struct {
	storage.AppenderV2
	s       *scrapeStaleness
	target  *scrape.Target
	written []writtenSeries
}

// Append implements storage.AppenderV2.
func (a *stalenessAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *promhistogram.Histogram, fh *promhistogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if err != nil && !written(err) {
		return ref, err
	}
	switch {
	case fh != nil:
		v = fh.Sum
	case h != nil:
		v = h.Sum
	}
	if !value.IsStaleNaN(v) {
		a.written = append(a.written, writtenSeries{ref: ref, lset: ls})
	}
	return ref, err
}

// written tells an error of an append that wrote the sample: some of its
// exemplars were not.
func written(err error) bool {
	var partial *storage.AppendPartialError
	return errors.As(err, &partial)
}

// Commit implements storage.AppenderV2.
func (a *stalenessAppender) Commit() error {
	if err := a.AppenderV2.Commit(); err != nil {
		return err
	}
	a.s.committed(a.target, a.written)
	return nil
}
