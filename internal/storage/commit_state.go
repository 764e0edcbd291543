package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
)

// states assigns each batch event the state group after it, writing new
// groups where the state changed.
func (w *commitTx) states(ctx context.Context) error {
	w.groups = make(map[string]groupRef, len(w.b.Events))
	for i := range w.b.Events {
		ev := &w.b.Events[i]
		if ev.State == nil { // an outlier, or a rejected event stored without state
			w.groups[ev.Record.EventID] = groupRef{}
			continue
		}
		ref, err := w.stateFor(ctx, ev.State)
		if err != nil {
			return fmt.Errorf("event %s: %w", ev.Record.EventID, err)
		}
		ev.Record.StateGroup = ref.id
		w.groups[ev.Record.EventID] = ref
	}
	if w.sink != nil {
		// Nothing later in this batch reads these groups back.
		w.sink.groups = append(w.sink.groups, w.groupArgs...)
		w.sink.entries = append(w.sink.entries, w.entryArgs...)
		w.groupArgs, w.entryArgs = nil, nil
		return nil
	}
	return w.flushGroups(ctx)
}

// stateFor returns the group for spec, writing a new one unless the delta
// is empty.
func (w *commitTx) stateFor(ctx context.Context, spec *StateSpec) (groupRef, error) {
	var base groupRef
	if spec.BaseEvent != "" {
		var err error
		if base, err = w.baseGroup(ctx, spec.BaseEvent); err != nil {
			return groupRef{}, err
		}
		if len(spec.Delta) == 0 {
			return base, nil // same state: share the group
		}
	}

	w.db.lastGroup++
	ref := groupRef{id: w.db.lastGroup}
	switch {
	case base.id == 0:
		// No base: the delta is the whole state, a snapshot.
		w.bufferGroup(ref, 0, spec.Delta, false)
	case base.chainLen+1 > maxDeltaChain:
		// Writing another delta would make reads walk too far: write the
		// full state instead. Reading the base may need groups buffered
		// earlier in this batch, so those go to the database first.
		if err := w.flushGroups(ctx); err != nil {
			return groupRef{}, err
		}
		full, err := w.db.loadGroup(ctx, w.db.wstmts, w.tx, w.src, base.id)
		if err != nil {
			return groupRef{}, fmt.Errorf("load base group %d: %w", base.id, err)
		}
		state := maps.Clone(full)
		for k, id := range spec.Delta {
			if id == "" {
				delete(state, k)
			} else {
				state[k] = id
			}
		}
		w.bufferGroup(ref, 0, state, false)
		w.src.put(ref.id, state) // the next snapshot in this chain starts here
	default:
		ref.chainLen = base.chainLen + 1
		w.bufferGroup(ref, base.id, spec.Delta, true)
	}
	return ref, nil
}

// baseGroup finds the group after eventID: in this batch, or stored.
func (w *commitTx) baseGroup(ctx context.Context, eventID string) (groupRef, error) {
	ref, ok := w.groups[eventID]
	if !ok {
		ref, ok = w.db.recent.get(eventID)
	}
	if !ok {
		s, err := w.stmt(ctx, `SELECT e.state_group, COALESCE(g.chain_len, 0)
			FROM events e LEFT JOIN state_groups g ON g.id = e.state_group
			WHERE e.event_id = ?`)
		if err != nil {
			return groupRef{}, err
		}
		err = s.QueryRowContext(ctx, eventID).Scan(&ref.id, &ref.chainLen)
		if errors.Is(err, sql.ErrNoRows) {
			return groupRef{}, fmt.Errorf("base event %s: %w", eventID, ErrNotFound)
		}
		if err != nil {
			return groupRef{}, fmt.Errorf("base event %s: %w", eventID, err)
		}
	}
	if ref.id == 0 {
		return groupRef{}, fmt.Errorf("base event %s has no state (outlier or rejected): %w", eventID, ErrNotFound)
	}
	return ref, nil
}

// bufferGroup queues a group row and its entries. A snapshot (prev 0)
// leaves removed keys out; a delta records them with a NULL event ID.
func (w *commitTx) bufferGroup(ref groupRef, prev int64, entries StateMap, delta bool) {
	var prevArg any
	if prev != 0 {
		prevArg = prev
	}
	w.groupArgs = append(w.groupArgs, ref.id, w.b.RoomID, prevArg, ref.chainLen)
	for k, id := range entries {
		var idArg any = id
		if id == "" {
			if !delta {
				continue
			}
			idArg = nil
		}
		w.entryArgs = append(w.entryArgs, ref.id, k.Type, k.StateKey, idArg)
	}
}

var (
	insertStateGroups = &bulkInsert{
		head: `INSERT INTO state_groups (id, room_id, prev_group, chain_len) VALUES `,
		cols: 4,
	}
	insertStateEntries = &bulkInsert{
		head: `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES `,
		cols: 4,
	}
)

func (w *commitTx) flushGroups(ctx context.Context) error {
	if err := insertStateGroups.exec(ctx, w.db.wstmts, w.tx, w.groupArgs); err != nil {
		return err
	}
	if err := insertStateEntries.exec(ctx, w.db.wstmts, w.tx, w.entryArgs); err != nil {
		return err
	}
	w.groupArgs, w.entryArgs = w.groupArgs[:0], w.entryArgs[:0]
	return nil
}
