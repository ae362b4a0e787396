package alertd

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"testing"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// openTSDB opens a TSDB in a temporary directory, closed when tb ends.
func openTSDB(tb testing.TB) *tsdb.DB {
	tb.Helper()
	db, err := tsdb.Open(tb.TempDir(), slog.New(slog.DiscardHandler), nil, tsdb.DefaultOptions(), nil)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, db.Close()) })
	return db
}

// scrapeOnce appends one sample per series as a scrape of target at t and
// commits, or rolls back.
func scrapeOnce(tb testing.TB, s *scrapeStaleness, target *scrape.Target, t int64, v float64, commit bool, series ...labels.Labels) {
	tb.Helper()
	app := s.AppenderV2(scrape.ContextWithTarget(context.Background(), target))
	for _, ls := range series {
		_, err := app.Append(0, ls, 0, t, v, nil, nil, storage.AOptions{})
		require.NoError(tb, err)
	}
	if commit {
		require.NoError(tb, app.Commit())
	} else {
		require.NoError(tb, app.Rollback())
	}
}

// lastValues returns the last sample of each series of the TSDB, by series.
func lastValues(t *testing.T, db *tsdb.DB) map[string]float64 {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	out := map[string]float64{}
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			out[ss.At().Labels().Get("__name__")] = v
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return out
}

// The series of a target's last committed scrape are those marked: not
// those of an earlier scrape, nor of one rolled back, nor those the scrape
// loop marked stale itself; other targets, and those forgotten, are left
// alone.
func TestScrapeStalenessMarksLastScrape(t *testing.T) {
	t.Parallel()
	db := openTSDB(t)
	s := newScrapeStaleness(db)
	gone := scrape.NewTarget(labels.FromStrings("job", "gone", "instance", "a:9100"), &config.ScrapeConfig{JobName: "gone"}, nil, nil)
	other := scrape.NewTarget(labels.FromStrings("job", "kept", "instance", "b:9100"), &config.ScrapeConfig{JobName: "kept"}, nil, nil)
	forgotten := scrape.NewTarget(labels.FromStrings("job", "gone", "instance", "c:9100"), &config.ScrapeConfig{JobName: "gone"}, nil, nil)
	series := func(name string) labels.Labels { return labels.FromStrings("__name__", name, "job", "gone") }

	scrapeOnce(t, s, gone, 1000, 1, true, series("up"), series("dropped"), series("renamed"))
	scrapeOnce(t, s, gone, 2000, 1, true, series("up"), series("renamed"))
	scrapeOnce(t, s, gone, 2500, math.Float64frombits(value.StaleNaN), true, series("dropped")) // the loop's own marker
	scrapeOnce(t, s, gone, 3000, 2, false, series("up"), series("rolled_back"))
	scrapeOnce(t, s, other, 2000, 1, true, labels.FromStrings("__name__", "kept", "job", "kept"))
	scrapeOnce(t, s, forgotten, 2000, 1, true, series("forgotten"))
	s.forget(map[string][]*scrape.Target{"gone": {gone}, "kept": {other}})

	n, err := s.markStale(context.Background(), []*scrape.Target{gone, forgotten}, 4000)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	last := lastValues(t, db)
	require.True(t, value.IsStaleNaN(last["up"]))
	require.True(t, value.IsStaleNaN(last["renamed"]))
	require.True(t, value.IsStaleNaN(last["dropped"]))
	require.NotContains(t, last, "rolled_back")
	require.Equal(t, 1.0, last["kept"])
	require.Equal(t, 1.0, last["forgotten"])

	// Marked targets are forgotten: nothing is marked twice.
	n, err = s.markStale(context.Background(), []*scrape.Target{gone}, 5000)
	require.NoError(t, err)
	require.Zero(t, n)
}

// A scrape of 1,000 series through scrapeStaleness into the TSDB head, as
// the scrape loop writes it (series refs from its cache after the first).
func BenchmarkScrapeStaleness(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		b.Run(fmt.Sprintf("wrapped=%v", wrapped), func(b *testing.B) {
			db := openTSDB(b)
			var appendable storage.AppendableV2 = db
			if wrapped {
				appendable = newScrapeStaleness(db)
			}
			target := scrape.NewTarget(labels.FromStrings("job", "bench", "instance", "a:9100"), &config.ScrapeConfig{JobName: "bench"}, nil, nil)
			ctx := scrape.ContextWithTarget(context.Background(), target)
			series := make([]labels.Labels, 1000)
			refs := make([]storage.SeriesRef, len(series))
			for i := range series {
				series[i] = labels.FromStrings("__name__", "bench_metric", "job", "bench", "i", fmt.Sprint(i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				app := appendable.AppenderV2(ctx)
				for i, ls := range series {
					ref, err := app.Append(refs[i], ls, 0, int64(n+1)*15000, float64(n), nil, nil, storage.AOptions{})
					if err != nil {
						b.Fatal(err)
					}
					refs[i] = ref
				}
				if err := app.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
