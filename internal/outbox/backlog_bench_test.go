package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkBacklog stores n notifications of one lane, each in its own
// Enqueue from 8 goroutines (as alertd's aggregation groups flush), and
// delivers them to a sender that accepts at once: the outbox's own cost
// of a batch of n new groups, one fsync'd commit per enqueue and per
// delivery. pages_written/msg is what the commits wrote per message.
//
//	go test -run '^$' -bench Backlog -benchtime 1x ./internal/outbox/
func BenchmarkBacklog(b *testing.B) {
	payload := []byte(`{"alerts":[{"labels":{"alertname":"` + strings.Repeat("x", 900) + `"}}]}`)
	for _, n := range []int{1000, 5000, 20000} {
		b.Run(fmt.Sprintf("messages=%d", n), func(b *testing.B) {
			var pages, msgs int64
			for b.Loop() {
				b.StopTimer()
				var delivered atomic.Int64
				done := make(chan struct{})
				ob, err := Open(Options{
					Path:    filepath.Join(b.TempDir(), "outbox.db"),
					Senders: map[string]Sender{"webhook": SenderFunc(func(context.Context, *Message) error { return nil })},
					OnDone: func(Message, error) {
						if delivered.Add(1) == int64(n) {
							close(done)
						}
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				ran := make(chan struct{})
				go func() {
					ob.Run(ctx)
					close(ran)
				}()
				st := ob.db.Stats()
				before := st.TxStats.GetWrite()
				b.StartTimer()
				var wg sync.WaitGroup
				for g := range 8 {
					wg.Go(func() {
						for i := g; i < n; i += 8 {
							if err := ob.Enqueue(&Message{Key: fmt.Sprint(i), Receiver: "hook", Integration: "webhook", Payload: payload}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				<-done
				b.StopTimer()
				st = ob.db.Stats()
				pages += st.TxStats.GetWrite() - before
				msgs += int64(n)
				cancel()
				<-ran
				if err := ob.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(pages)/float64(msgs), "pages_written/msg")
		})
	}
}
