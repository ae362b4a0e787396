package escalate

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkEngineTick ticks an engine of n open incidents, each waiting a
// day for its next step, of which one falls due per tick (Escalate), as
// alertd's loop ticks it every second with few steps due.
func BenchmarkEngineTick(b *testing.B) {
	p := Policy{Name: "p", Steps: []Step{
		{Notify: []string{"l1"}},
		{Wait: 24 * time.Hour},
		{Notify: []string{"l2"}},
		{Wait: 24 * time.Hour},
	}}
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("incidents=%d", n), func(b *testing.B) {
			e, err := New([]Policy{p}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("incident-%06d", i)
				if _, err := e.Open(t0, ids[i], Subject{}, []string{"a"}); err != nil {
					b.Fatal(err)
				}
			}
			for _, ef := range e.Tick(t0) {
				e.Done(ef.Key)
			}
			now := t0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Millisecond)
				if err := e.Escalate(now, ids[i%n], "due"); err != nil {
					b.Fatal(err)
				}
				for _, ef := range e.Tick(now) {
					e.Done(ef.Key)
				}
			}
		})
	}
}
