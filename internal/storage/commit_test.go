package storage

import (
	"strings"
	"testing"
)

// TestValidateBatch covers the malformed batches Commit refuses before any
// I/O; these are the same for every backend.
func TestValidateBatch(t *testing.T) {
	ok := func() EventRecord { return rec(room, "$e", "m.room.message", 2, nil, nil) }
	state := &StateSpec{BaseEvent: "$base"}
	tests := []struct {
		name    string
		b       Batch
		wantErr string // "" = valid
	}{
		{"valid", Batch{RoomID: room, Events: []PersistEvent{{Record: ok(), State: state}}}, ""},
		{"no room", Batch{}, "no room ID"},
		{"event without ID", Batch{RoomID: room, Events: []PersistEvent{{Record: EventRecord{RoomID: room, JSON: []byte("{}")}, State: state}}}, "has no ID"},
		{"event of another room", Batch{RoomID: "!x:test", Events: []PersistEvent{{Record: ok(), State: state}}}, "is in room"},
		{"no JSON", Batch{RoomID: room, Events: []PersistEvent{{Record: func() EventRecord { r := ok(); r.JSON = nil; return r }(), State: state}}}, "no JSON"},
		{"accepted event without state", Batch{RoomID: room, Events: []PersistEvent{{Record: ok()}}}, "needs state"},
		{"outlier with state", Batch{RoomID: room, Events: []PersistEvent{{Record: func() EventRecord { r := ok(); r.Outlier = true; return r }(), State: state}}}, "outlier $e has state"},
		{"rejected without state", Batch{RoomID: room, Events: []PersistEvent{{Record: func() EventRecord { r := ok(); r.Rejected = "x"; return r }()}}}, ""},
		{"rejected in its own state", Batch{RoomID: room, Events: []PersistEvent{{
			Record: func() EventRecord { r := ok(); r.Rejected = "x"; return r }(),
			State:  &StateSpec{BaseEvent: "$base", Delta: StateMap{{"t", ""}: "$e"}},
		}}}, "in its own state"},
		{"same event twice", Batch{RoomID: room, Events: []PersistEvent{{Record: ok(), State: state}, {Record: ok(), State: state}}}, "twice"},
		{"missing prev of another room", Batch{RoomID: room, MissingPrevs: []MissingPrev{{RoomID: "!x:test", EventID: "$p"}}}, "missing prev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateBatch(&tc.b)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
