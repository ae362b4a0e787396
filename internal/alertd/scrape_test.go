package alertd

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// The embedded scrape behaves as Prometheus's: a target that does not
// answer has up 0, an OpenMetrics target is read as such, honor_labels and
// metric_relabel_configs apply, and a target removed from its job on reload
// gets staleness markers, so an alert on absent() fires within a few scrape
// intervals instead of after the five minutes of lookback. (A whole job
// removed gets them at once: TestScrapeJobRemovedGoesStale.)
func TestEmbeddedScrape(t *testing.T) {
	t.Parallel()
	om := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
		fmt.Fprint(w, "# TYPE demo_requests counter\ndemo_requests_total{job=\"inner\"} 7\ndemo_requests_created{job=\"inner\"} 1.7e9\n# TYPE demo_dropped gauge\ndemo_dropped 1\n# EOF\n")
	}))
	t.Cleanup(om.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	cfg := func(withOM bool) string {
		c := `
scrape_configs:
  - job_name: dead
    static_configs: [{targets: ["` + dead + `"]}]
`
		target := dead
		if withOM {
			target = strings.TrimPrefix(om.URL, "http://")
		}
		c += `  - job_name: om
    honor_labels: true
    static_configs: [{targets: ["` + target + `"]}]
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: demo_dropped
        action: drop
`
		return c
	}
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, cfg(true)), map[string]string{"rules.yml": `
groups:
  - name: scrape
    interval: 200ms
    rules:
      - alert: TargetDown
        expr: up == 0
      - alert: RequestsGone
        expr: absent(demo_requests_total{job="inner"})
`}, nil)
	h.wait(t, "TargetDown", "firing", 30*time.Second)
	require.Eventually(t, func() bool {
		v, err := a.query(t.Context(), `demo_requests_total{job="inner",exported_job=""}`, time.Now())
		return err == nil && len(v) == 1 && v[0].F == 7
	}, 30*time.Second, 50*time.Millisecond)
	v, err := a.query(t.Context(), `demo_dropped`, time.Now())
	require.NoError(t, err)
	require.Empty(t, v, "metric_relabel_configs drop")
	v, err = a.query(t.Context(), `up{job="om"}`, time.Now())
	require.NoError(t, err)
	require.Len(t, v, 1)
	require.Equal(t, 1.0, v[0].F)
	// Absent before the first scrape, present after it.
	h.wait(t, "RequestsGone", "resolved", 30*time.Second)
	fired := len(h.matching("RequestsGone", "firing"))

	writeFile(t, a.Dir, "alertd.yml", routes(h, nil, cfg(false)))
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, func() bool {
		v, err := a.query(t.Context(), `demo_requests_total`, time.Now())
		return err == nil && len(v) == 0
	}, time.Minute, 50*time.Millisecond, "series not stale")
	require.Eventually(t, func() bool { return len(h.matching("RequestsGone", "firing")) > fired },
		time.Minute, 50*time.Millisecond, "no staleness marker: absent only after the lookback")
}

// A scrape job removed by a reload has its series marked stale at the
// reload, up included: an instant query right after it returns nothing,
// where without markers the last samples would be found for the five
// minutes of lookback. (Prometheus's own scrape manager writes none for a
// removed job: it cancels the job's scrape pool before its loops write
// them.) The series a target writes under labels of its own
// (honor_labels) are marked too, those it no longer exposes are not marked
// twice, the jobs that stay are not touched, and a job that comes back is
// scraped as before.
func TestScrapeJobRemovedGoesStale(t *testing.T) {
	t.Parallel()
	gone := newExposition(t, "# TYPE demo_requests counter\ndemo_requests_total{job=\"inner\"} 7\n# TYPE demo_queue gauge\ndemo_queue 3\n")
	kept := newExposition(t, "# TYPE demo_temperature gauge\ndemo_temperature 20\n")
	cfg := func(withGone bool) string {
		c := "scrape_configs:\n  - job_name: kept\n    static_configs: [{targets: [\"" + kept.Addr + "\"]}]\n"
		if withGone {
			c += "  - job_name: gone\n    honor_labels: true\n    static_configs: [{targets: [\"" + gone.Addr + "\"]}]\n"
		}
		return c
	}
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, cfg(true)), map[string]string{"rules.yml": "groups: []\n"}, nil)
	present := func(expr string) bool {
		v, err := a.query(t.Context(), expr, time.Now())
		require.NoError(t, err)
		return len(v) > 0
	}
	for _, expr := range []string{`up{job="gone"} == 1`, `demo_requests_total{job="inner"}`, `demo_queue{job="gone"}`, `up{job="kept"} == 1`, `demo_temperature`} {
		require.Eventually(t, func() bool { return present(expr) }, 30*time.Second, 20*time.Millisecond, expr)
	}

	// A series the target stops exposing is marked by the scrape loop
	// itself, and not again at the reload.
	gone.set("# TYPE demo_requests counter\ndemo_requests_total{job=\"inner\"} 8\n")
	require.Eventually(t, func() bool { return !present(`demo_queue`) }, 30*time.Second, 20*time.Millisecond)

	writeFile(t, a.Dir, "alertd.yml", routes(h, nil, cfg(false)))
	code, body := post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	for _, expr := range []string{`up{job="gone"}`, `scrape_samples_scraped{job="gone"}`, `demo_requests_total`} {
		require.False(t, present(expr), "%s is not stale right after the reload", expr)
	}
	require.True(t, present(`up{job="kept"} == 1`))
	require.True(t, present(`demo_temperature`))
	// up and the four other series of the scrape's report, and
	// demo_requests_total.
	require.Contains(t, a.logs.String(), `msg="Marked the series of removed scrape jobs stale" jobs=gone series=6`)

	writeFile(t, a.Dir, "alertd.yml", routes(h, nil, cfg(true)))
	code, body = post(t, a.URL+"/-/reload", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Eventually(t, func() bool { return present(`demo_requests_total{job="inner"}`) && present(`up{job="gone"} == 1`) },
		30*time.Second, 20*time.Millisecond, "the job came back but is not scraped")
}

// A job whose scrape_timeout is longer than its scrape_interval is refused
// when the configuration is loaded, as Prometheus refuses it.
func TestScrapeTimeoutAboveInterval(t *testing.T) {
	t.Parallel()
	_, err := alertconfig.Load(`
scrape_configs:
  - job_name: slow
    scrape_interval: 5s
    scrape_timeout: 10s
    static_configs: [{targets: ["localhost:9100"]}]
`, "")
	require.ErrorContains(t, err, "scrape timeout greater than scrape interval")
}
