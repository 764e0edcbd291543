package rooms

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// incoming is a remote event on its way to the worker. Steps 1 to 3 of
// the receive pipeline depend on nothing but the bytes and the keys, so
// when the room version is known they run before the event reaches the
// worker, on all cores, and the serial worker only does what needs the
// room.
type incoming struct {
	data    []byte
	checked bool   // steps 1-3 done: ev or err is set
	ev      *Event // parsed, signature-checked, redacted if its hash was bad
	err     error
	// redacted: the content hash did not match and ev is the redacted form.
	redacted bool
	// prefetched: the worker looked the event up in storage along with the
	// rest of its transaction; absent from the cache means not stored.
	prefetched bool
}

// prefetch loads whichever of a transaction's events are already stored,
// in one query, so the duplicate check costs no query per event.
func (w *worker) prefetch(ctx context.Context, in []*incoming) {
	ids := make([]EventID, 0, len(in))
	for _, x := range in {
		if x.ev != nil && x.ev.Version() == w.st.version {
			ids = append(ids, x.ev.ID())
		}
	}
	if err := w.fetch(ctx, ids); err != nil {
		return // each event then looks itself up and meets the error
	}
	for _, x := range in {
		if x.ev != nil && x.ev.Version() == w.st.version {
			x.prefetched = true
		}
	}
}

// precheck runs steps 1-3 for a batch in parallel.
func (s *Service) precheck(v *pdu.Version, in []*incoming) {
	workers := min(runtime.GOMAXPROCS(0), len(in))
	if workers <= 1 {
		for _, x := range in {
			s.check(v, x)
		}
		return
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(in); i = int(next.Add(1) - 1) {
				s.check(v, in[i])
			}
		}()
	}
	wg.Wait()
}

// check runs steps 1-3 of "Checks performed on receipt of a PDU": drop on
// bad format or signature, redact on a bad content hash.
func (s *Service) check(v *pdu.Version, x *incoming) {
	x.checked = true
	ev, err := pdu.ParseEvent(x.data, v)
	if err != nil {
		x.err = err
		return
	}
	if err := pdu.VerifySignatures(ev, s.deps.Keys); err != nil {
		x.err = err
		return
	}
	if !ev.CheckContentHash() {
		s.log.Info("content hash mismatch; redacting", "event", ev.ID())
		ev = ev.Redacted()
		x.redacted = true
	}
	x.ev = ev
}
