package rooms

import (
	"context"

	"github.com/plexus-chat/plexus/rooms/internal/pdu"
	"github.com/plexus-chat/plexus/rooms/internal/stateres"
)

// resolve returns the resolution of several states (rooms v2 / v12 "State
// resolution"). The batch in progress must have been flushed: auth chains
// come from storage.
func (w *worker) resolve(ctx context.Context, states []stateMap) (stateMap, error) {
	if len(states) == 1 {
		return states[0], nil
	}
	if err := w.ensureStateEvents(ctx, states...); err != nil {
		return nil, err
	}
	// Only the conflicted events' auth chains can differ between the
	// states (an unconflicted event is in every state, so its chain is in
	// every full auth chain); preload those in one query, and let anything
	// else the algorithm asks for load lazily.
	var conflicted []string
	seen := map[EventID]bool{}
	for _, s := range states {
		for k, id := range s {
			if seen[id] {
				continue
			}
			for _, o := range states {
				if o[k] != id {
					seen[id] = true
					conflicted = append(conflicted, string(id))
					break
				}
			}
		}
	}
	if len(conflicted) > 0 {
		chain, err := w.s.deps.Store.AuthChain(ctx, conflicted)
		if err != nil {
			return nil, fatal(err)
		}
		ids := make([]EventID, len(chain))
		for i, c := range chain {
			ids[i] = EventID(c)
		}
		if err := w.fetch(ctx, ids); err != nil {
			return nil, err
		}
	}
	var loadErr error
	in := stateres.Input{
		Version: w.st.version,
		States:  make([]stateres.StateMap, len(states)),
		Events: func(id pdu.EventID) *pdu.Event {
			k, err := w.get(ctx, id)
			if err != nil {
				loadErr = err
				return nil
			}
			if k == nil {
				return nil
			}
			return k.ev
		},
		Rejected: func(id pdu.EventID) bool {
			k := w.st.events[id]
			return k != nil && rejectedOnAuthChain(k.rejected)
		},
	}
	for i, s := range states {
		in.States[i] = stateres.StateMap(s)
	}
	out, err := stateres.Resolve(in)
	if loadErr != nil {
		return nil, fatal(loadErr)
	}
	if err != nil {
		return nil, err
	}
	return stateMap(out), nil
}
