package rooms

import (
	"context"
	"errors"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// txn accumulates one storage batch: the events a worker accepted, its new
// extremities and the change to current state.
type txn struct {
	w       *worker
	gen     uint64 // the worker generation that built it
	batch   storage.Batch
	stored  []*Stored
	current storage.StateMap // accumulated change to current state
	// extremChanged says the batch must rewrite the extremities.
	extremChanged bool
	// ids maps the events in the batch to their index in batch.Events and
	// stored, to spot reads of uncommitted events and re-adds.
	ids map[EventID]int
	// unsigned are local events of the batch still to be signed (by seal).
	unsigned []*pdu.Unsigned
	// changes is current, with its events, for the CurrentStateListener
	// (made by seal).
	changes []StateChange
}

func newTxn(w *worker) *txn {
	return &txn{w: w, gen: w.gen, current: storage.StateMap{}, ids: map[EventID]int{}}
}

func (t *txn) empty() bool {
	return len(t.batch.Events) == 0 && len(t.batch.MissingPrevs) == 0 && !t.extremChanged && t.batch.CreateVersion == "" &&
		t.batch.PartialState == nil && t.batch.CompleteState == nil
}

// add queues an event for the batch and returns its Stored record, whose
// StreamPos is filled in by commit.
func (t *txn) add(k *known, state *storage.StateSpec) *Stored {
	ev := k.ev
	rec := storage.EventRecord{
		EventID:        string(ev.ID()),
		RoomID:         string(ev.RoomID()),
		Type:           ev.Type(),
		StateKey:       ev.StateKey(),
		Depth:          ev.Depth(),
		OriginServerTS: ev.OriginServerTS(),
		JSON:           ev.JSON(),
		PrevEvents:     idStrings(ev.PrevEvents()),
		AuthEvents:     idStrings(ev.AuthEvents()),
		Rejected:       k.rejected,
		SoftFailed:     k.softFailed,
		Outlier:        k.outlier,
	}
	if k.replaces != nil && state != nil {
		r := string(*k.replaces)
		rec.ReplacesState = &r
	}
	s := &Stored{Event: ev}
	if i, ok := t.ids[ev.ID()]; ok {
		// Added as an outlier earlier in this batch and placed since: its
		// missing prev came later in the same batch. Keep one row, moved
		// after that prev (storage reads a base state from earlier rows),
		// and update the caller's Stored in place.
		s = t.stored[i]
		t.batch.Events = append(t.batch.Events[:i], t.batch.Events[i+1:]...)
		t.stored = append(t.stored[:i], t.stored[i+1:]...)
		for id, j := range t.ids {
			if j > i {
				t.ids[id] = j - 1
			}
		}
	}
	s.Rejected, s.SoftFailed, s.Outlier = k.rejected, k.softFailed, k.outlier
	t.batch.Events = append(t.batch.Events, storage.PersistEvent{Record: rec, State: state})
	t.stored = append(t.stored, s)
	t.ids[ev.ID()] = len(t.batch.Events) - 1
	if d := ev.Depth(); d > t.batch.MaxDepth {
		t.batch.MaxDepth = d
	}
	return s
}

// setCurrent records a change to the room's current state.
func (t *txn) setCurrent(d stateMap) {
	for k, v := range d {
		t.current[storage.StateKey{Type: k.Type, StateKey: k.StateKey}] = string(v)
	}
}

// seal fixes the parts of the batch that come from the worker's
// in-memory state; it runs on the worker goroutine before the batch leaves
// it.
func (t *txn) seal() {
	w := t.w
	b := &t.batch
	if len(t.unsigned) > 0 {
		pdu.SignAll(t.unsigned, w.s.cfg.Signer)
		t.unsigned = nil
		// The records were taken before signing: refresh their bytes.
		for i := range b.Events {
			b.Events[i].Record.JSON = t.stored[i].Event.JSON()
		}
	}
	b.RoomID = string(w.roomID)
	if t.extremChanged && w.st != nil {
		b.Extremities = make([]string, 0, len(w.st.extrem))
		for id := range w.st.extrem {
			b.Extremities = append(b.Extremities, string(id))
		}
	}
	if len(t.current) > 0 {
		b.CurrentDelta = t.current
		t.noteChanges()
	}
}

// noteChanges lists the batch's change to current state with its events
// for the CurrentStateListener. The events are looked up now, on the
// worker goroutine that owns the cache, which always holds the current
// state's events.
func (t *txn) noteChanges() {
	if _, ok := t.w.s.deps.Listener.(CurrentStateListener); !ok {
		return
	}
	t.changes = make([]StateChange, 0, len(t.current))
	for k, id := range t.current {
		c := StateChange{Type: k.Type, StateKey: k.StateKey, EventID: EventID(id)}
		if id != "" && t.w.st != nil {
			if kn := t.w.st.events[c.EventID]; kn != nil {
				c.Event = kn.ev
			}
		}
		t.changes = append(t.changes, c)
	}
}

// flush commits the batch in progress now, in the middle of a request,
// after everything already handed to the commit loop. The txn is reset.
func (t *txn) flush(ctx context.Context) error {
	if t.empty() {
		return nil
	}
	t.w.barrier()
	if t.w.failedGen.Load() == t.gen {
		return errors.New("rooms: an earlier commit of this room failed")
	}
	t.seal()
	if err := t.write(ctx); err != nil {
		return err
	}
	// No trimming here: the event being placed, and others of this
	// request, may not be current state or extremities yet.
	*t = *newTxn(t.w)
	return nil
}

// write stores a sealed batch and tells the listener; it runs on the
// commit loop (or on the worker after a barrier).
func (t *txn) write(ctx context.Context) error {
	if t.empty() {
		return nil
	}
	w := t.w
	b := &t.batch
	start := time.Now()
	if err := w.s.deps.Store.Commit(ctx, b); err != nil {
		return err
	}
	elapsed := time.Since(start).Seconds()
	var notify []*Stored
	for i := range b.Events {
		t.stored[i].StreamPos = b.Events[i].Record.StreamPos
		notify = append(notify, t.stored[i])
	}
	w.s.metrics.observeCommit(notify, w.s.cfg.Signer.Server, elapsed)
	if len(notify) > 0 {
		w.s.deps.Listener.EventsStored(w.roomID, notify)
	}
	if l, ok := w.s.deps.Listener.(CurrentStateListener); ok && len(t.changes) > 0 {
		l.CurrentStateChanged(w.roomID, t.changes)
	}
	return nil
}

func idStrings(ids []EventID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}
