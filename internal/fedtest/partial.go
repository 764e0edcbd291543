package fedtest

import (
	"database/sql"
	"errors"
	"testing"
)

// PartialState reports whether the server holds the room with a partial
// state (joined with omit_members, members not fetched yet).
func (s *Server) PartialState(t testing.TB, roomID string) bool {
	t.Helper()
	db := s.db(t)
	defer db.Close()
	var join string
	err := db.QueryRow(`SELECT join_event FROM partial_state_rooms WHERE room_id = $1`, roomID).Scan(&join)
	if errors.Is(err, sql.ErrNoRows) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}
