package syncer

import "context"

// StateCompleted is told that a room joined with a partial state (members
// omitted from the send_join answer) has its full state now. The members
// were stored as outliers, which the tailer does not index, so the tailer
// reads them from the room's current state next time it runs.
func (x *Index) StateCompleted(room string) {
	x.mu.Lock()
	x.completed = append(x.completed, room)
	x.mu.Unlock()
	x.Poke()
}

// loadCompleted indexes the members of the rooms StateCompleted named.
func (x *Index) loadCompleted(ctx context.Context) {
	x.mu.Lock()
	rooms := x.completed
	x.completed = nil
	x.mu.Unlock()
	for _, room := range rooms {
		if err := x.loadRoom(ctx, room, true); err != nil {
			x.log.Error("reading the members of a completed room failed", "room", room, "err", err)
		}
	}
}
