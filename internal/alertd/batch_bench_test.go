package alertd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toolkit "github.com/prometheus/exporter-toolkit/web"
)

// batchConfig routes every alert to the webhook at {{URL}}, one group per
// alertname, flushed at once, and escalates every incident to the same
// webhook: a batch of n new alerts makes 2n notifications and n chains.
const batchConfig = `
global:
  evaluation_interval: 1s
intake:
  resolve_timeout: 24h
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs: [{url: "{{URL}}"}]
escalation_policies:
  - name: all
    matchers: ['severity="page"']
    steps:
      - notify: [hook]
      - wait: 1h
      - notify: [hook]
`

// countingHook is a webhook receiver that only counts the requests it
// accepts.
func countingHook(tb testing.TB) (string, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n.Add(1)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL, &n
}

// batchAlerts is a body for POST /api/v2/alerts of n alerts, one group
// each.
func batchAlerts(tb testing.TB, n int) []byte {
	alerts := make([]map[string]any, n)
	for i := range alerts {
		alerts[i] = map[string]any{"labels": map[string]string{"alertname": fmt.Sprintf("Batch%05d", i), "severity": "page"}}
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// batchAlertd is an alertd on batchConfig with its storage in a
// temporary directory, started and not yet stopped.
type batchAlertd struct {
	*Alertd
	url string
	// escalationWrites and escalationBytes count the writes of
	// escalation.json.
	escalationWrites, escalationBytes atomic.Int64
}

func startBatchAlertd(tb testing.TB, hookURL string) *batchAlertd {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alertd.yml"), []byte(strings.ReplaceAll(batchConfig, "{{URL}}", hookURL)), 0o644); err != nil {
		tb.Fatal(err)
	}
	addrs, webCfg := []string{"127.0.0.1:0"}, ""
	a, err := New(Options{
		ConfigFile:     filepath.Join(dir, "alertd.yml"),
		Web:            &toolkit.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &webCfg},
		ExternalURL:    externalURL,
		StoragePath:    filepath.Join(dir, "data"),
		ResendDelay:    time.Second,
		ForGracePeriod: time.Second,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	b := &batchAlertd{Alertd: a}
	f := a.escalation.file
	write := f.write
	f.write = func(path string, w func(io.Writer) error) error {
		return write(path, func(out io.Writer) error {
			var buf bytes.Buffer
			if err := w(&buf); err != nil {
				return err
			}
			b.escalationWrites.Add(1)
			b.escalationBytes.Add(int64(buf.Len()))
			_, err := out.Write(buf.Bytes())
			return err
		})
	}
	if err := a.Start(); err != nil {
		tb.Fatal(err)
	}
	b.url = "http://" + a.Addr()
	return b
}

// idle reports whether alertd is done with a batch of n alerts: the hook
// got the route's and the escalation's notification of each, the outbox
// holds nothing, and escalation.json holds the engine's state, with no
// effect left to carry out.
func (b *batchAlertd) idle(got int64, n int) bool {
	if got < int64(2*n) || b.notify.Outbox().Stats().Pending > 0 {
		return false
	}
	x := b.escalation
	x.file.mu.Lock()
	defer x.file.mu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.engine.Effects()) > 0 {
		return false
	}
	st, err := json.Marshal(x.engine.State())
	return err == nil && bytes.Equal(st, x.file.last)
}

// BenchmarkBatchSettle measures what one POST /api/v2/alerts of n new
// alerts, each its own group and incident, costs alertd in the background:
// the time from the post until it is idle (every notification, the route's
// and the escalation's, delivered to a webhook on loopback, the outbox
// empty, the escalation state on disk), and the writes of escalation.json
// meanwhile.
//
//	go test -run '^$' -bench BatchSettle -benchtime 1x ./internal/alertd/
func BenchmarkBatchSettle(b *testing.B) {
	for _, n := range []int{1000, 5000, 20000} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			if testing.Short() && n > 1000 {
				// make benchcheck: the smallest batch shows the benchmark
				// works; the larger take minutes.
				b.Skip("-short: 1,000 groups only")
			}
			body := batchAlerts(b, n)
			var writes, written int64
			for b.Loop() {
				b.StopTimer()
				hookURL, got := countingHook(b)
				a := startBatchAlertd(b, hookURL)
				b.StartTimer()
				resp, err := http.Post(a.url+"/api/v2/alerts", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("POST /api/v2/alerts: %s", resp.Status)
				}
				for !a.idle(got.Load(), n) {
					time.Sleep(10 * time.Millisecond)
				}
				b.StopTimer()
				writes += a.escalationWrites.Load()
				written += a.escalationBytes.Load()
				if err := a.Stop(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(writes)/float64(b.N), "escalation_writes/op")
			b.ReportMetric(float64(written)/float64(b.N)/1e6, "escalation_MB/op")
		})
	}
}
