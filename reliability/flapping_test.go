package reliability

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flappingUpstream is a model server that goes down and comes back on the
// same address: up for up, then down (listener closed, connections reset)
// for down, until stop.
func flappingUpstream(t *testing.T, addr string, up, down time.Duration) (stop func(), cycles *atomic.Int32) {
	t.Helper()
	cycles = &atomic.Int32{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				// The port is briefly held after a close: try again.
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
					continue
				}
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"predictions":[0.1]}`))
			})}
			go func() { _ = srv.Serve(l) }()
			select {
			case <-done:
				_ = srv.Close()
				return
			case <-time.After(up):
			}
			_ = srv.Close() // closes the listener and every connection
			cycles.Add(1)
			select {
			case <-done:
				return
			case <-time.After(down):
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }, cycles
}

// Requests through the sidecar under load while the model server flaps:
// nothing crashes, every request gets an answer — the model's, or a 502
// or 504 from the sidecar — and every failure the clients saw is counted
// in modelmon_prediction_errors_total. The figures are RELIABILITY.md's
// "The sidecar under load, the model server flapping".
func TestSidecarUpstreamFlapping(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binaries under load")
	}
	bin := t.TempDir()
	build(t, bin, "exporter")
	upstream, proxy, web := freeAddr(t), freeAddr(t), freeAddr(t)
	stop, cycles := flappingUpstream(t, upstream, 300*time.Millisecond, 200*time.Millisecond)
	defer stop()
	run(t, "http://"+web+"/-/ready", filepath.Join(bin, "exporter"),
		"--proxy.upstream=http://"+upstream, "--proxy.listen-address="+proxy, "--web.listen-address="+web,
		"--proxy.timeout=2s", "--log.level=warn")

	// The load runs for duration, in which the model server goes down about
	// 10 times, and then on until it went down at least minCycles times:
	// on a loaded machine its timers may fire late, so a count in a fixed
	// window would be a guess. limit only stops a broken test.
	const workers, duration, minCycles, limit = 8, 5 * time.Second, 5, 2 * time.Minute
	var ok, badGateway, gatewayTimeout, other, transport atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	hard, cancelHard := context.WithTimeout(context.Background(), limit)
	defer cancelHard()
	begin := time.Now()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	body := `{"instances":[[1.5,2,3]]}`
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for hard.Err() == nil && (ctx.Err() == nil || cycles.Load() < minCycles) {
				resp, err := client.Post("http://"+proxy+"/v1/models/fraud:predict", "application/json", strings.NewReader(body))
				if err != nil {
					transport.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusBadGateway:
					badGateway.Add(1)
				case http.StatusGatewayTimeout:
					gatewayTimeout.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin).Round(time.Millisecond)
	stop()

	require.Zero(t, transport.Load(), "every request gets an answer from the sidecar")
	require.Zero(t, other.Load(), "the model's answer, a 502 or a 504")
	require.GreaterOrEqual(t, cycles.Load(), int32(minCycles), "the model server went down and up")
	require.Positive(t, ok.Load())
	require.Positive(t, badGateway.Load()+gatewayTimeout.Load(), "some requests met the model server down")

	// Every failure the clients saw is counted; the sidecar is still up.
	resp, err := http.Get("http://" + web + "/-/healthy")
	require.NoError(t, err)
	resp.Body.Close()
	page := scrape(t, "http://"+web+"/metrics")
	total := ok.Load() + badGateway.Load() + gatewayTimeout.Load()
	require.Equal(t, float64(total), sum(page, "modelmon_requests_total"), "every request counted")
	require.Equal(t, float64(badGateway.Load()+gatewayTimeout.Load()), sum(page, "modelmon_prediction_errors_total"), "every failure counted")

	failed := badGateway.Load() + gatewayTimeout.Load()
	t.Logf("%d requests in %s by %d clients while the model server went down %d times: %d answered by the model, %d × 502, %d × 504, all %d failures counted",
		total, elapsed, workers, cycles.Load(), ok.Load(), badGateway.Load(), gatewayTimeout.Load(), failed)
}
