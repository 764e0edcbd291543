package rooms

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// stateMap is a room state: (type, state_key) -> event ID.
type stateMap = map[pdu.StateTuple]pdu.EventID

// known is an event the worker has seen, with the outcome of its checks.
type known struct {
	ev         *Event
	rejected   string
	softFailed bool
	outlier    bool
	// replaces, set when an accepted state event is placed, is the event
	// its (type, state_key) held in the state before it ("" for none); it
	// is stored so the state before the event can be read back.
	replaces *EventID
}

// noteReplaces records what k's state entry held in before; call it
// before before is updated with k.
func noteReplaces(k *known, before stateMap) {
	if !k.ev.IsState() || k.rejected != "" {
		return
	}
	r := before[k.ev.Tuple()]
	k.replaces = &r
}

// roomState is a room as its worker holds it in memory.
type roomState struct {
	version *pdu.Version
	create  *Event
	// extrem maps each forward extremity to the state after it. When there
	// is one extremity its map IS current (shared, updated in place).
	extrem  map[EventID]stateMap
	current stateMap
	// events caches parsed events: at least the current state, the
	// extremities and everything touched by the batch in progress.
	events map[EventID]*known
	// waiting maps a prev event whose state we lack to the outliers that
	// cite it; they are placed in the graph when it arrives.
	waiting map[EventID][]EventID
}

// maxCachedEvents bounds the per-room event cache beyond the current state
// and the extremities, which are always kept: past it, the rest is
// dropped (after the commit pipeline drains, since dropped events are
// re-read from storage). A parsed event costs a few kilobytes, so this
// keeps a busy room's cache to a few megabytes while trimming only once
// every thousand or so events.
const maxCachedEvents = 1000

func toStateMap(m storage.StateMap) stateMap {
	out := make(stateMap, len(m))
	for k, v := range m {
		out[pdu.StateTuple{Type: k.Type, StateKey: k.StateKey}] = EventID(v)
	}
	return out
}

func toStorageMap(m stateMap) storage.StateMap {
	out := make(storage.StateMap, len(m))
	for k, v := range m {
		out[storage.StateKey{Type: k.Type, StateKey: k.StateKey}] = string(v)
	}
	return out
}

func copyState(m stateMap) stateMap {
	out := make(stateMap, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// diffState returns the entries of to that differ from from, with "" for
// keys only in from.
func diffState(from, to stateMap) stateMap {
	d := stateMap{}
	for k, v := range to {
		if from[k] != v {
			d[k] = v
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			d[k] = ""
		}
	}
	return d
}

// stateSpec tells storage the state after ev as a delta on the state after
// base: the differences from baseState to before (baseState nil: they are
// the same state), plus ev itself when it is a state event that takes
// effect.
func stateSpec(base EventID, baseState, before stateMap, ev *Event, takesEffect bool) *storage.StateSpec {
	spec := &storage.StateSpec{BaseEvent: string(base)}
	if baseState != nil {
		spec.Delta = toStorageMap(diffState(baseState, before))
	}
	if takesEffect && ev.IsState() {
		if spec.Delta == nil {
			spec.Delta = storage.StateMap{}
		}
		spec.Delta[storage.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = string(ev.ID())
	}
	return spec
}

// sameMap reports whether a and b are the same map, not merely equal.
func sameMap(a, b stateMap) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// load reads the room into memory if it is not there.
func (w *worker) load(ctx context.Context) error {
	if w.st != nil {
		return nil
	}
	// A reload follows a failure; let in-flight commits settle first.
	w.barrier()
	store := w.s.deps.Store
	info, err := store.Room(ctx, string(w.roomID))
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrUnknownRoom, w.roomID)
	}
	if err != nil {
		return err
	}
	v, ok := pdu.LookupVersion(info.Version)
	if !ok {
		return fmt.Errorf("rooms: room %s has unsupported version %q", w.roomID, info.Version)
	}
	st := &roomState{
		version: v,
		extrem:  map[EventID]stateMap{},
		current: toStateMap(info.Current),
		events:  map[EventID]*known{},
		waiting: map[EventID][]EventID{},
	}
	w.st = st
	w.s.versions.Store(w.roomID, v)
	for _, x := range info.Extremities {
		s, err := store.StateAfter(ctx, x)
		if err != nil {
			w.st = nil
			return fmt.Errorf("rooms: state after extremity %s: %w", x, err)
		}
		st.extrem[EventID(x)] = toStateMap(s)
	}
	if len(st.extrem) == 1 {
		for _, s := range st.extrem {
			st.current = s
		}
	}
	ids := make([]EventID, 0, len(st.current)+len(st.extrem))
	for _, id := range st.current {
		ids = append(ids, id)
	}
	for id := range st.extrem {
		ids = append(ids, id)
	}
	if err := w.fetch(ctx, ids); err != nil {
		w.st = nil
		return err
	}
	if k := st.events[st.current[pdu.StateTuple{Type: pdu.TypeCreate}]]; k != nil {
		st.create = k.ev
	}
	if st.create == nil {
		w.st = nil
		return fmt.Errorf("rooms: room %s has no create event in its current state", w.roomID)
	}
	missing, err := store.MissingPrevs(ctx, string(w.roomID))
	if err != nil {
		w.st = nil
		return err
	}
	for _, m := range missing {
		st.waiting[EventID(m.EventID)] = append(st.waiting[EventID(m.EventID)], EventID(m.ReferencedBy))
	}
	return nil
}

// fetch makes sure the given events are in the cache, loading the absent
// ones from storage in one query. Events not stored are simply absent.
func (w *worker) fetch(ctx context.Context, ids []EventID) error {
	st := w.st
	var need []string
	for _, id := range ids {
		if _, ok := st.events[id]; !ok && id != "" {
			need = append(need, string(id))
		}
	}
	if len(need) == 0 {
		return nil
	}
	recs, err := w.s.deps.Store.Events(ctx, need)
	if err != nil {
		return fatal(err)
	}
	for id, rec := range recs {
		ev, err := pdu.ParseStored(rec.JSON, st.version, EventID(id))
		if err != nil {
			return err
		}
		st.events[EventID(id)] = &known{ev: ev, rejected: rec.Rejected, softFailed: rec.SoftFailed, outlier: rec.Outlier}
	}
	return nil
}

// get returns a cached or stored event, or nil.
func (w *worker) get(ctx context.Context, id EventID) (*known, error) {
	if k, ok := w.st.events[id]; ok {
		return k, nil
	}
	if err := w.fetch(ctx, []EventID{id}); err != nil {
		return nil, err
	}
	return w.st.events[id], nil
}

// trimCache drops cached events that are neither current state nor
// extremities once the cache outgrows its bound.
func (w *worker) trimCache() {
	st := w.st
	if len(st.events) <= len(st.current)+len(st.extrem)+maxCachedEvents {
		return
	}
	keep := make(map[EventID]bool, len(st.current)+len(st.extrem))
	for _, id := range st.current {
		keep[id] = true
	}
	for id := range st.extrem {
		keep[id] = true
	}
	for id := range st.events {
		if !keep[id] {
			delete(st.events, id)
		}
	}
}

// getter adapts a state map to the auth rules' lookup; the create event is
// always visible, as room version 12 requires.
func (w *worker) getter(s stateMap) func(pdu.StateTuple) *pdu.Event {
	return func(t pdu.StateTuple) *pdu.Event {
		if t.Type == pdu.TypeCreate && t.StateKey == "" {
			return w.st.create
		}
		id, ok := s[t]
		if !ok {
			return nil
		}
		if k := w.st.events[id]; k != nil {
			return k.ev
		}
		return nil
	}
}

// ensureStateEvents loads every event of the given states into the cache,
// so getters over them never miss.
func (w *worker) ensureStateEvents(ctx context.Context, states ...stateMap) error {
	var ids []EventID
	for _, s := range states {
		if sameMap(s, w.st.current) {
			// The current state's events are always cached (load, append,
			// advance and trimCache keep them): skip the walk, which would
			// cost a lookup per member of a large room on every event.
			continue
		}
		for _, id := range s {
			if _, ok := w.st.events[id]; !ok {
				ids = append(ids, id)
			}
		}
	}
	return w.fetch(ctx, ids)
}

// sortedExtremities returns the extremities deepest first, ties by ID, so
// prev_events are chosen deterministically.
func (w *worker) sortedExtremities() []EventID {
	ids := make([]EventID, 0, len(w.st.extrem))
	for id := range w.st.extrem {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		di, dj := w.depthOf(ids[i]), w.depthOf(ids[j])
		if di != dj {
			return di > dj
		}
		return ids[i] < ids[j]
	})
	return ids
}

func (w *worker) depthOf(id EventID) int64 {
	if k := w.st.events[id]; k != nil {
		return k.ev.Depth()
	}
	return 0
}
