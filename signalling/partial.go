package signalling

import "github.com/plexus-chat/plexus/rooms"

// StateCompleted implements rooms.StateListener: a room joined with a
// partial state has its members now, which the membership index reads.
func (f *Feed) StateCompleted(room rooms.RoomID) { f.index.StateCompleted(string(room)) }
