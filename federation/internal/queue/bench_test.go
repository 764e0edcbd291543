package queue

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// BenchmarkQueue measures PDUs delivered per second through the queue to
// an in-process Sender that accepts at once: 8 rooms enqueuing in
// parallel, each event for 4 destinations. What it measures is the
// queue's own cost, database writes included: the enqueue, and per
// transaction the take, the event read and the delete, with concurrent
// writes sharing commits.
func BenchmarkQueue(b *testing.B) {
	for _, backend := range storagetest.Backends {
		b.Run(backend, func(b *testing.B) {
			h := newHarness(b, backend, Config{Now: time.Now})
			const rooms = 8
			dests := []string{"a.test", "b.test", "c.test", "d.test"}
			perRoom := (b.N + rooms - 1) / rooms
			ids := make([][]string, rooms)
			for r := range ids {
				ids[r] = h.storeEvents(b, fmt.Sprintf("!r%d:hs1.test", r), perRoom)
			}
			h.start()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for r := range rooms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, id := range ids[r] {
						if err := h.q.EnqueuePDU(h.ctx, dests, fmt.Sprintf("!r%d:hs1.test", r), id); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			for _, d := range dests {
				h.waitFor("an empty backlog", func() bool { p, _ := h.q.Backlog(d); return p == 0 })
			}
			elapsed := time.Since(start)
			b.StopTimer()
			delivered := 0
			for _, d := range dests {
				delivered += len(h.sender.pduNumbers(b, d))
			}
			if delivered != rooms*perRoom*len(dests) {
				b.Fatalf("delivered %d PDUs, want %d", delivered, rooms*perRoom*len(dests))
			}
			b.ReportMetric(float64(delivered)/elapsed.Seconds(), "PDUs/s")
			b.ReportMetric(float64(rooms*perRoom)/elapsed.Seconds(), "events/s")
		})
	}
}
