package fedtest

import (
	"testing"
)

// CountPlaced is how many events of a room the server has placed in its
// graph (stored, not outliers, not rejected): a cheap progress check for
// benchmarks, where reading the whole Graph on every poll would cost more
// than the work being measured.
func (s *Server) CountPlaced(t testing.TB, roomID string) int {
	t.Helper()
	db := s.db(t)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM events WHERE room_id = $1 AND rejected = '' AND NOT outlier`, roomID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// PID is the process ID of the running server, 0 when it is stopped: for
// reading its CPU time or attaching a profiler.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
