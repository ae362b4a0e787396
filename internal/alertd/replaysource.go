package alertd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/modelmon/modelmon/rules"
)

// OpenReplaySource opens the history a replay reads: the TSDB in dir,
// read-only (alertd may keep running on it), or, with remoteURL, a
// Prometheus-compatible remote-read endpoint (Prometheus's
// /api/v1/read). The closer releases it.
func OpenReplaySource(dir, remoteURL string, timeout time.Duration, httpCfg commoncfg.HTTPClientConfig) (storage.Queryable, func() error, error) {
	if remoteURL != "" {
		client, err := commoncfg.NewClientFromConfig(httpCfg, "alertd_replay")
		if err != nil {
			return nil, nil, fmt.Errorf("couldn't configure the data source: %w", err)
		}
		r, err := rules.NewRemote(remoteURL, rules.RemoteOptions{Client: client, Timeout: timeout})
		if err != nil {
			return nil, nil, err
		}
		return &cachingQueryable{q: remoteQueryable{r}}, func() error { return nil }, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, fmt.Errorf("couldn't open the TSDB: %w", err)
	}
	sandbox, err := os.MkdirTemp("", "alertd-replay-sandbox-")
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); errors.Is(err, fs.ErrNotExist) {
		// Blocks without a write-ahead log, as promtool tsdb
		// create-blocks-from writes them: read them through a shadow
		// directory with an empty one.
		if dir, err = shadowTSDB(dir, sandbox); err != nil {
			os.RemoveAll(sandbox)
			return nil, nil, err
		}
	}
	db, err := tsdb.OpenDBReadOnly(dir, sandbox, slog.New(slog.DiscardHandler))
	if err != nil {
		os.RemoveAll(sandbox)
		return nil, nil, fmt.Errorf("couldn't open the TSDB in %s: %w", dir, err)
	}
	return db, func() error {
		defer os.RemoveAll(sandbox)
		return db.Close()
	}, nil
}

// remoteQueryable reads raw samples through a Prometheus-compatible query
// API.
type remoteQueryable struct{ r *rules.Remote }

// Querier implements storage.Queryable.
func (q remoteQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &remoteQuerier{Querier: storage.NoopQuerier(), r: q.r, mint: mint, maxt: maxt}, nil
}

// remoteQuerier selects series through the query API; it has no label
// names or values, which rules do not need.
type remoteQuerier struct {
	storage.Querier
	r          *rules.Remote
	mint, maxt int64
}

// Select implements storage.Querier.
func (q *remoteQuerier) Select(ctx context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	// The range selector's window is left-open: start a millisecond early.
	got, err := q.r.Samples(ctx, "{"+strings.Join(parts, ",")+"}", time.UnixMilli(q.mint-1), time.UnixMilli(q.maxt))
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	out := make([]storage.Series, 0, len(got))
	for _, s := range got {
		out = append(out, promqlSeries(s))
	}
	slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return newListSeriesSet(out...)
}

// cachingQueryable reads each selection once over the whole replayed
// range and serves it from memory after: a replay asks the same
// selections at every step, and a remote read is a round trip.
type cachingQueryable struct {
	q storage.Queryable

	mu    sync.Mutex
	cache map[string][]storage.Series
}

// Querier implements storage.Queryable.
func (c *cachingQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := c.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &cachingQuerier{Querier: q, c: c}, nil
}

type cachingQuerier struct {
	storage.Querier
	c *cachingQueryable
}

// Select implements storage.Querier: the first selection of a set of
// matchers reads and keeps all of its samples.
func (q *cachingQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	key := fmt.Sprint(ms)
	q.c.mu.Lock()
	defer q.c.mu.Unlock()
	if q.c.cache == nil {
		q.c.cache = map[string][]storage.Series{}
	}
	if s, ok := q.c.cache[key]; ok {
		return newListSeriesSet(s...)
	}
	set := q.Querier.Select(ctx, true, hints, ms...)
	var out []storage.Series
	for set.Next() {
		s := set.At()
		samples, err := storage.ExpandSamplesWithoutReplacingNaNs(s.Iterator(nil), nil)
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		out = append(out, storage.NewListSeries(s.Labels(), samples))
	}
	if err := set.Err(); err != nil {
		return storage.ErrSeriesSet(err)
	}
	q.c.cache[key] = out
	return newListSeriesSet(out...)
}

// listSeriesSet iterates over series held in memory.
type listSeriesSet struct {
	series []storage.Series
	i      int
}

func newListSeriesSet(s ...storage.Series) storage.SeriesSet { return &listSeriesSet{series: s, i: -1} }

func (l *listSeriesSet) Next() bool                        { l.i++; return l.i < len(l.series) }
func (l *listSeriesSet) At() storage.Series                { return l.series[l.i] }
func (l *listSeriesSet) Err() error                        { return nil }
func (l *listSeriesSet) Warnings() annotations.Annotations { return nil }

// promqlSeries turns a series of float points into a storage.Series.
func promqlSeries(s *promql.Series) storage.Series {
	return promql.NewStorageSeries(*s)
}

// shadowTSDB links the blocks of dir into a new directory under parent,
// with an empty write-ahead log, and returns it. Files are hard-linked,
// or copied across file systems; the TSDB reads block directories, not
// links to them.
func shadowTSDB(dir, parent string) (string, error) {
	shadow := filepath.Join(parent, "shadow")
	if err := os.MkdirAll(filepath.Join(shadow, "wal"), 0o755); err != nil {
		return "", err
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." || rel == "lock" {
			return err
		}
		to := filepath.Join(shadow, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if os.Link(path, to) == nil {
			return nil
		}
		return copyFile(path, to)
	})
	if err != nil {
		return "", fmt.Errorf("couldn't open the TSDB: %w", err)
	}
	return shadow, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
